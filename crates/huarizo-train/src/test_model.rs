//! A tiny model with analytic gradients for the tests: a bigram softmax,
//! `logits = mask · W[token] + b`, where `mask` is inverted dropout (p = 0.1) drawn from
//! the step's seed and the position.

use crate::data::Example;
use crate::rng::derive_seed;
use crate::trainer::TrainModel;

pub struct Bigram {
    pub vocab: usize,
    pub w: Vec<f32>,  // (V, V)
    pub b: Vec<f32>,  // (V)
    pub gw: Vec<f32>, // (V, V)
    pub gb: Vec<f32>, // (V)
    /// Fail on this call of `accumulate_grads` (1-based), to simulate a crash.
    pub fail_at_call: Option<usize>,
    pub calls: usize,
}

impl Bigram {
    pub fn new(vocab: usize) -> Bigram {
        let w = (0..vocab * vocab)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.01)
            .collect();
        Bigram {
            vocab,
            w,
            b: vec![0.0; vocab],
            gw: vec![0.0; vocab * vocab],
            gb: vec![0.0; vocab],
            fail_at_call: None,
            calls: 0,
        }
    }

    /// Loss of one example; with `grad`, adds its gradients.
    fn run(&mut self, e: &Example, seed: Option<u64>, grad: bool) -> (f64, usize) {
        let v = self.vocab;
        let (mut sum, mut n) = (0.0f64, 0usize);
        for (i, (&t, &y)) in e.tokens.iter().zip(&e.labels).enumerate() {
            if y < 0 {
                continue;
            }
            let mask = match seed {
                Some(s) if derive_seed(s, &[i as u64, t as u64]).is_multiple_of(10) => 0.0,
                Some(_) => 1.0 / 0.9,
                None => 1.0,
            };
            let row = t as usize * v;
            let logits: Vec<f32> = (0..v).map(|j| mask * self.w[row + j] + self.b[j]).collect();
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
            let z: f32 = exps.iter().sum();
            sum += f64::from(z.ln() + max - logits[y as usize]);
            n += 1;
            if grad {
                for (j, e) in exps.iter().enumerate() {
                    let d = e / z - if j == y as usize { 1.0 } else { 0.0 };
                    self.gw[row + j] += mask * d;
                    self.gb[j] += d;
                }
            }
        }
        (sum, n)
    }
}

impl TrainModel for Bigram {
    fn n_tensors(&self) -> usize {
        2
    }
    fn tensor(&mut self, i: usize) -> (&mut [f32], &[f32]) {
        match i {
            0 => (&mut self.w, &self.gw),
            _ => (&mut self.b, &self.gb),
        }
    }
    fn tensor_name(&self, i: usize) -> String {
        ["bigram.weight", "bigram.bias"][i].to_string()
    }
    fn zero_grads(&mut self) {
        self.gw.fill(0.0);
        self.gb.fill(0.0);
    }
    fn accumulate_grads(&mut self, batch: &[Example], seed: u64) -> anyhow::Result<(f64, usize)> {
        self.calls += 1;
        if self.fail_at_call == Some(self.calls) {
            anyhow::bail!("simulated crash");
        }
        let (mut s, mut n) = (0.0, 0);
        for (k, e) in batch.iter().enumerate() {
            let (a, b) = self.run(e, Some(derive_seed(seed, &[k as u64])), true);
            s += a;
            n += b;
        }
        Ok((s, n))
    }
    fn eval_loss(&mut self, batch: &[Example]) -> anyhow::Result<(f64, usize)> {
        let (mut s, mut n) = (0.0, 0);
        for e in batch {
            let (a, b) = self.run(e, None, false);
            s += a;
            n += b;
        }
        Ok((s, n))
    }
}

/// Sequences following `next = (3·t + 1) mod V` most of the time, of varied lengths.
pub fn bigram_data(n: usize, vocab: usize, seed: u64) -> Vec<Example> {
    let mut r = crate::rng::SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let len = 3 + r.below(10) as usize;
            let mut t = r.below(vocab as u64) as u32;
            let mut tokens = vec![t];
            for _ in 1..len {
                t = if r.below(10) == 0 {
                    r.below(vocab as u64) as u32
                } else {
                    (3 * t + 1) % vocab as u32
                };
                tokens.push(t);
            }
            let target = vec![true; tokens.len()];
            Example::from_targets(tokens, &target)
        })
        .collect()
}
