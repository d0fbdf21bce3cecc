//! Packing examples into batches: per epoch the examples are shuffled (seeded by the run's
//! seed and the epoch number alone, so any epoch's order can be recomputed on resume) and
//! taken in that order into batches of at most `batch_size × seq_len` tokens. Each example
//! stays whole and is run as its own sequence; packing only means that many short
//! examples share one batch.

use crate::data::Example;
use crate::rng::{derive_seed, SplitMix64};

/// Packs examples of the given lengths.
#[derive(Clone, Debug)]
pub struct Packer {
    /// Length in tokens of each example. // (N)
    lens: Vec<usize>,
    /// Token budget of one batch (`batch_size × seq_len`).
    budget: usize,
    seed: u64,
}

impl Packer {
    /// A packer of `examples` into batches of at most `batch_size × seq_len` tokens.
    pub fn new(examples: &[Example], batch_size: usize, seq_len: usize, seed: u64) -> Packer {
        Packer {
            lens: examples.iter().map(Example::len).collect(),
            budget: batch_size.max(1) * seq_len.max(1),
            seed,
        }
    }

    /// Token budget of one batch.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The batches of epoch `epoch` (0-based), as lists of example indices. An example
    /// longer than the budget (possible only when it exceeds `seq_len`) gets a batch of
    /// its own.
    pub fn epoch(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.lens.len()).collect();
        SplitMix64::new(derive_seed(self.seed, &[0x5348_5546, epoch])).shuffle(&mut order);
        pack_in_order(&order, &self.lens, self.budget)
    }

    /// Optimizer steps in epoch `epoch` with `grad_accum` batches per step (the last step
    /// of an epoch may have fewer).
    pub fn steps_in_epoch(&self, epoch: u64, grad_accum: usize) -> usize {
        self.epoch(epoch).len().div_ceil(grad_accum.max(1))
    }

    /// Optimizer steps of `epochs` whole epochs.
    pub fn steps_for_epochs(&self, epochs: usize, grad_accum: usize) -> usize {
        (0..epochs as u64)
            .map(|e| self.steps_in_epoch(e, grad_accum))
            .sum()
    }
}

/// Greedy packing of examples in `order`: a batch is closed when the next example would
/// take it over `budget` tokens.
pub fn pack_in_order(order: &[usize], lens: &[usize], budget: usize) -> Vec<Vec<usize>> {
    let mut batches = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut used = 0usize;
    for &i in order {
        if !cur.is_empty() && used + lens[i] > budget {
            batches.push(std::mem::take(&mut cur));
            used = 0;
        }
        cur.push(i);
        used += lens[i];
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
}

/// The examples of a batch of indices, cloned into one list.
pub fn gather(examples: &[Example], batch: &[usize]) -> Vec<Example> {
    batch.iter().map(|&i| examples[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(len: usize) -> Example {
        Example {
            tokens: vec![1; len],
            labels: vec![1; len],
        }
    }

    #[test]
    fn batches_respect_budget_and_keep_every_example_once() {
        let examples: Vec<Example> = [3, 9, 4, 1, 7, 2, 8, 5, 6, 10].map(ex).to_vec();
        let p = Packer::new(&examples, 2, 8, 42);
        for epoch in 0..3 {
            let batches = p.epoch(epoch);
            let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
            seen.sort();
            assert_eq!(seen, (0..10).collect::<Vec<_>>());
            for b in &batches {
                let total: usize = b.iter().map(|&i| examples[i].len()).sum();
                assert!(total <= 16, "batch {b:?} has {total} tokens");
            }
        }
        // Deterministic given the seed, different across epochs and seeds.
        assert_eq!(p.epoch(1), Packer::new(&examples, 2, 8, 42).epoch(1));
        assert_ne!(p.epoch(0), p.epoch(1));
        assert_ne!(p.epoch(0), Packer::new(&examples, 2, 8, 43).epoch(0));
    }

    #[test]
    fn short_examples_share_a_batch_and_long_ones_stand_alone() {
        assert_eq!(
            pack_in_order(&[0, 1, 2, 3], &[2, 2, 2, 20], 6),
            vec![vec![0, 1, 2], vec![3]]
        );
        assert_eq!(
            pack_in_order(&[3, 0, 1, 2], &[2, 2, 2, 20], 6),
            vec![vec![3], vec![0, 1, 2]]
        );
    }

    #[test]
    fn steps_count_with_gradient_accumulation() {
        let examples: Vec<Example> = (0..10).map(|_| ex(4)).collect();
        // One example per batch (budget 4): 10 batches, 3 per step -> 4 steps per epoch.
        let p = Packer::new(&examples, 1, 4, 0);
        assert_eq!(p.epoch(0).len(), 10);
        assert_eq!(p.steps_in_epoch(0, 3), 4);
        assert_eq!(p.steps_for_epochs(2, 3), 8);
    }
}
