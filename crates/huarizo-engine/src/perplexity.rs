//! llama-perplexity's method: the text is tokenized once (BOS per the model's add-BOS
//! flag), cut into `n_chunk = n_tokens / n_ctx` chunks of `n_ctx` tokens whose first token
//! becomes BOS when the model adds BOS, each chunk is evaluated from an empty cache, and
//! the positions `n_ctx/2 .. n_ctx-2` are scored on the token that follows them (the first
//! half only gives the scored tokens some context).
//!
//! Dimension letters: N chunk positions (`n_ctx`), S scored positions (`N - 1 - N/2`),
//! V vocabulary.

use crate::{Engine, EngineError, Logits};

/// The tokens of a text cut into llama-perplexity's chunks.
#[derive(Clone, Debug)]
pub struct ChunkPlan {
    /// The whole text's tokens (BOS first when the model adds BOS).
    pub tokens: Vec<u32>,
    /// Tokens per chunk.
    pub n_ctx: usize,
    /// Chunks to evaluate (at most `tokens.len() / n_ctx`).
    pub n_chunk: usize,
    /// The token that replaces each chunk's first token (the model's BOS, when it adds one).
    pub bos: Option<u32>,
}

impl ChunkPlan {
    /// Tokenizes `text` as llama-perplexity does (special tokens added, special-token text
    /// not parsed) and plans `n_chunk` chunks of `n_ctx` tokens, at most `max_chunks` when
    /// given. `what` names the text in errors. Fails, as llama.cpp does, when the text has
    /// fewer than `2·n_ctx` tokens, or when `n_ctx` is below 4 or above the model's
    /// trained context.
    pub fn new(
        engine: &Engine,
        text: &str,
        what: &str,
        n_ctx: usize,
        max_chunks: Option<usize>,
    ) -> Result<ChunkPlan, EngineError> {
        let trained = engine.config().n_ctx_train;
        if n_ctx < 4 || (trained > 0 && n_ctx > trained) {
            return Err(EngineError::Request(format!(
                "--ctx {n_ctx} is out of range: it must be at least 4 and at most the model's \
                 trained context ({trained})"
            )));
        }
        let tokenizer = engine.tokenizer();
        let tokens = tokenizer.encode(text, true, false);
        if tokens.len() < 2 * n_ctx {
            return Err(EngineError::Request(format!(
                "{what}: the text tokenizes to only {} tokens; a context of {n_ctx} needs at \
                 least {} (try a smaller --ctx or a longer text)",
                tokens.len(),
                2 * n_ctx
            )));
        }
        let n_chunk_max = tokens.len() / n_ctx;
        let n_chunk = max_chunks.map_or(n_chunk_max, |m| m.min(n_chunk_max));
        if n_chunk == 0 {
            return Err(EngineError::Request(
                "--chunks 0 leaves nothing to score".into(),
            ));
        }
        let bos = if tokenizer.add_bos() {
            tokenizer.bos()
        } else {
            None
        };
        Ok(ChunkPlan {
            tokens,
            n_ctx,
            n_chunk,
            bos,
        })
    }

    /// The first scored position of a chunk (`n_ctx / 2`).
    pub fn first(&self) -> usize {
        self.n_ctx / 2
    }

    /// Positions scored per chunk (`n_ctx - 1 - n_ctx/2`).
    pub fn n_scored(&self) -> usize {
        self.n_ctx - 1 - self.first()
    }

    /// The tokens of chunk `i` (`N`) as evaluated: the first replaced by BOS when the
    /// model adds BOS.
    pub fn chunk(&self, i: usize) -> Vec<u32> {
        let mut toks = self.tokens[i * self.n_ctx..(i + 1) * self.n_ctx].to_vec();
        if let Some(bos) = self.bos {
            toks[0] = bos;
        }
        toks
    }

    /// The tokens predicted at the scored positions of chunk `i` (`S`): the text's own
    /// tokens at positions `first+1 ..= n_ctx-1` (never the BOS substitute).
    pub fn targets(&self, i: usize) -> &[u32] {
        let start = i * self.n_ctx + self.first() + 1;
        &self.tokens[start..start + self.n_scored()]
    }
}

impl Engine {
    /// Evaluates chunk `i` of `plan` from an empty cache and returns the logits of its
    /// scored positions, `(S, V)`.
    pub fn chunk_logits(&self, plan: &ChunkPlan, i: usize) -> Result<Vec<f32>, EngineError> {
        let mut state = self.new_state(plan.n_ctx);
        let logits = self.forward(&mut state, &plan.chunk(i), Logits::All)?;
        let v = self.config().n_vocab;
        let (first, n) = (plan.first(), plan.n_scored());
        Ok(logits[first * v..(first + n) * v].to_vec())
    }
}

/// `log p(tok)` under `logits` (`V`), as llama.cpp's `log_softmax`: the maximum in f32, the
/// sum of `exp(logit - max)` in f64.
pub fn token_logprob(logits: &[f32], tok: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    f64::from(logits[tok as usize] - max) - sum.ln()
}

/// Running sums of negative log-likelihoods.
#[derive(Clone, Copy, Debug, Default)]
pub struct NllSums {
    /// Σ nll.
    pub sum: f64,
    /// Σ nll².
    pub sum2: f64,
    /// Tokens scored.
    pub count: usize,
}

impl NllSums {
    /// Adds one token's negative log-likelihood.
    pub fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.sum2 += nll * nll;
        self.count += 1;
    }

    /// Perplexity so far, `exp(mean nll)`.
    pub fn ppl(&self) -> f64 {
        (self.sum / self.count.max(1) as f64).exp()
    }

    /// llama-perplexity's uncertainty of the perplexity: `ppl · sqrt(var(nll) / (n-1))`,
    /// None when the variance is not positive (llama.cpp then prints an error instead).
    pub fn ppl_stderr(&self) -> Option<f64> {
        let n = self.count as f64;
        let mean = self.sum / n;
        let var = self.sum2 / n - mean * mean;
        (self.count > 1 && var > 0.0).then(|| (var / (n - 1.0)).sqrt() * self.ppl())
    }
}

/// Adds the scored positions of one chunk to `sums`: `logits` is `(S, V)`, `targets` `S`.
pub fn score_chunk(logits: &[f32], targets: &[u32], n_vocab: usize, sums: &mut NllSums) {
    for (row, &tok) in logits.chunks_exact(n_vocab).zip(targets) {
        sums.add(-token_logprob(row, tok));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprob_of_uniform_logits_is_minus_ln_v() {
        let lp = token_logprob(&[3.0; 8], 5);
        assert!((lp + 8f64.ln()).abs() < 1e-12, "{lp}");
    }

    #[test]
    fn stderr_follows_llama_cpp() {
        let mut s = NllSums::default();
        for v in [1.0, 2.0, 3.0, 4.0] {
            s.add(v);
        }
        // mean 2.5, var 1.25, sqrt(1.25/3) · e^2.5
        let want = (1.25f64 / 3.0).sqrt() * 2.5f64.exp();
        assert!((s.ppl_stderr().unwrap() - want).abs() < 1e-9);
        assert!((s.ppl() - 2.5f64.exp()).abs() < 1e-9);
    }
}
