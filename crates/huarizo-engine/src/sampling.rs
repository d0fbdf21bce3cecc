//! Choosing the next token from logits: greedy, or llama.cpp's default sampler chain
//! (penalties → top-k → top-p → min-p → temperature → draw), reproducible from a seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How to pick tokens. `temperature <= 0` is greedy (argmax of the raw logits).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 or below means greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = all).
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the most likely one (0 = none).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recent tokens by this (1 = off).
    pub repeat_penalty: f32,
    /// Subtract this from the logit of every token seen recently (0 = off).
    pub presence_penalty: f32,
    /// Subtract this × its count from the logit of every token seen recently (0 = off).
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    /// Seed of the random draw.
    pub seed: u64,
}

impl Default for SamplingParams {
    /// llama.cpp's defaults.
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        }
    }
}

/// A stateful sampler: its random stream advances with every draw.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler whose random stream starts from `params.seed`.
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = StdRng::seed_from_u64(params.seed);
        Sampler {
            params,
            rng,
            candidates: Vec::new(),
        }
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from `logits`, given the tokens of the sequence so far
    /// (`history`, for the penalties).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let p = &self.params;
        let penalised =
            p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
        if p.temperature <= 0.0 && !penalised {
            return argmax(logits);
        }
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if penalised {
            let recent = &history[history.len().saturating_sub(p.penalty_last_n)..];
            let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
            for &t in recent {
                *counts.entry(t).or_default() += 1;
            }
            for (&t, &n) in &counts {
                if let Some(c) = self.candidates.get_mut(t as usize) {
                    if c.1 > 0.0 {
                        c.1 /= p.repeat_penalty;
                    } else {
                        c.1 *= p.repeat_penalty;
                    }
                    c.1 -= n as f32 * p.frequency_penalty + p.presence_penalty;
                }
            }
        }
        if p.temperature <= 0.0 {
            return self
                .candidates
                .iter()
                .fold((0u32, f32::NEG_INFINITY), |best, &c| {
                    if c.1 > best.1 {
                        c
                    } else {
                        best
                    }
                })
                .0;
        }
        // Sort by logit, descending (ties by id for reproducibility).
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < self.candidates.len() {
            self.candidates
                .select_nth_unstable_by(p.top_k - 1, by_logit);
            self.candidates.truncate(p.top_k);
        }
        self.candidates.sort_unstable_by(by_logit);
        let probs = softmax_of(&self.candidates, 1.0);
        let mut keep = self.candidates.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, &pr) in probs.iter().enumerate() {
                cum += pr;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p;
            keep = keep.min(probs.iter().take_while(|&&pr| pr >= floor).count().max(1));
        }
        self.candidates.truncate(keep.max(1));
        let probs = softmax_of(&self.candidates, p.temperature);
        let mut r: f32 = self.rng.gen::<f32>();
        for (c, pr) in self.candidates.iter().zip(&probs) {
            if r < *pr {
                return c.0;
            }
            r -= pr;
        }
        self.candidates.last().map_or(0, |c| c.0)
    }
}

/// Index of the largest logit (the first of equals).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax_of(c: &[(u32, f32)], temperature: f32) -> Vec<f32> {
    let max = c.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = c
        .iter()
        .map(|x| ((x.1 - max) / temperature).exp())
        .collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// `log Σ exp(logits)`, the log-softmax normaliser (exponentials summed in f64).
pub fn log_sum_exp(logits: &[f32]) -> f32 {
    huarizo_model::log_sum_exp(logits)
}

/// Log-probability of `token` under the raw logits (log-softmax); the same value
/// [`top_logprobs`] gives it.
pub fn token_logprob(logits: &[f32], token: u32) -> f32 {
    let lse = log_sum_exp(logits);
    logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |&l| l - lse)
}

/// The `k` most likely tokens with their log-probabilities under the raw logits.
pub fn top_logprobs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    top_logprobs_with(logits, k, log_sum_exp(logits))
}

/// [`top_logprobs`] with the normaliser `lse` already computed. One pass over the logits
/// keeping the best `k` (most likely first, ties by id), so scoring every prompt position
/// allocates only `k` entries, not the vocabulary.
pub fn top_logprobs_with(logits: &[f32], k: usize, lse: f32) -> Vec<(u32, f32)> {
    let k = k.min(logits.len());
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return best;
    }
    // `a` ranks before `b`: larger logit, then smaller id.
    let before = |a: (u32, f32), b: (u32, f32)| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)).is_gt();
    for (i, &l) in logits.iter().enumerate() {
        let c = (i as u32, l);
        if best.len() == k && !before(c, best[k - 1]) {
            continue;
        }
        let at = best.partition_point(|&x| before(x, c));
        best.insert(at, c);
        best.truncate(k);
    }
    best.into_iter().map(|(i, l)| (i, l - lse)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, 2.0], &[]), 1);
    }

    #[test]
    fn same_seed_same_draws_and_top_k_one_is_greedy() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..Default::default()
        };
        let draws = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draws(&params), draws(&params));
        let distinct: std::collections::HashSet<_> = draws(&params).into_iter().collect();
        assert!(distinct.len() > 1);
        let top1 = SamplingParams { top_k: 1, ..params };
        assert!(draws(&top1).iter().all(|&t| t == argmax(&logits)));
    }

    #[test]
    fn repeat_penalty_moves_away_from_seen_tokens() {
        let params = SamplingParams {
            temperature: 0.0,
            repeat_penalty: 2.0,
            ..Default::default()
        };
        let mut s = Sampler::new(params);
        assert_eq!(s.sample(&[1.0, 3.0, 2.0], &[1]), 2);
    }

    #[test]
    fn top_logprobs_break_ties_by_id_and_cap_at_the_vocabulary() {
        let lp = top_logprobs(&[1.0, 3.0, 3.0, 2.0, 3.0], 4);
        assert_eq!(lp.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2, 4, 3]);
        assert_eq!(top_logprobs(&[0.5, 0.25], 10).len(), 2);
        assert!(top_logprobs(&[0.5], 0).is_empty());
    }

    #[test]
    fn top_logprobs_are_normalised_and_sorted() {
        let lp = top_logprobs(&[0.0, 2.0, 1.0], 2);
        assert_eq!(lp.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2]);
        let total: f32 = [0.0f32, 2.0, 1.0].iter().map(|l| (l - 2.0f32).exp()).sum();
        assert!((lp[0].1 - (1.0 / total).ln()).abs() < 1e-5);
    }
}
