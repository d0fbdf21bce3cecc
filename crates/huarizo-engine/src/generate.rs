//! The generation loop: process the prompt, then sample token by token until an
//! end-of-generation token, a stop string or the token limit, streaming text as it becomes
//! complete UTF-8 and cannot be part of a stop string any more.

use crate::sampling::{top_logprobs, Sampler, SamplingParams};
use crate::stream::{Pushed, TextStream};
use crate::{Engine, EngineError};
use huarizo_model::{Logits, State};
use std::ops::ControlFlow;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Generation ends before the first occurrence of any of these.
    pub stop: Vec<String>,
    /// Log-probabilities of the k most likely tokens at each step (0 = none).
    pub top_logprobs: usize,
    /// Stop at end-of-generation tokens (false: keep going until `max_tokens`).
    pub stop_at_eog: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            sampling: SamplingParams::default(),
            max_tokens: 256,
            stop: Vec::new(),
            top_logprobs: 0,
            stop_at_eog: true,
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
    /// The caller asked to stop.
    Cancelled,
}

/// One streamed step.
#[derive(Debug)]
pub struct TokenEvent<'a> {
    /// The token sampled.
    pub token: u32,
    /// Text that became final with this token (may be empty).
    pub text: &'a str,
}

/// The result of [`Engine::generate`].
#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated token ids (an end-of-generation token is not included).
    pub tokens: Vec<u32>,
    /// Generated text, cut before any stop string.
    pub text: String,
    /// For each generated token, the top log-probabilities `(id, logprob)`.
    pub top_logprobs: Vec<Vec<(u32, f32)>>,
    /// Why it ended.
    pub finish: FinishReason,
    /// Prompt tokens processed (not counting a reused prefix).
    pub prompt_tokens_processed: usize,
}

impl Engine {
    /// Tokenizes a plain-text prompt as llama.cpp does (special tokens added per the model's
    /// flags, special-token text parsed).
    pub fn tokenize_prompt(&self, text: &str) -> Vec<u32> {
        let mut ids = self.tokenizer().encode(text, true, true);
        // A template that writes BOS itself plus the tokenizer's own BOS would double it.
        if let Some(bos) = self.tokenizer().bos() {
            if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
                ids.remove(0);
            }
        }
        ids
    }

    /// Generates a continuation of the token sequence `sequence` in `state`, where
    /// `history` lists the tokens `state` holds. The longest prefix `history` shares with
    /// `sequence` is kept and only the rest is processed (a multi-turn chat re-sends the
    /// whole conversation and pays only for the new turn). On return `history` again lists
    /// what `state` holds. `on_token` sees each step and may stop generation by returning
    /// `ControlFlow::Break`.
    pub fn generate(
        &self,
        state: &mut State,
        history: &mut Vec<u32>,
        sequence: &[u32],
        params: &GenerateParams,
        mut on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
    ) -> Result<Generation, EngineError> {
        if sequence.is_empty() {
            return Err(EngineError::Request("the prompt is empty".into()));
        }
        if sequence.len() > state.n_ctx {
            return Err(EngineError::Request(format!(
                "the prompt has {} tokens but the context holds {} (try a larger --ctx)",
                sequence.len(),
                state.n_ctx
            )));
        }
        let common = history
            .iter()
            .zip(sequence)
            .take_while(|(a, b)| a == b)
            .count()
            .min(state.n_past)
            .min(sequence.len() - 1);
        state.truncate(common);
        history.truncate(common);
        let todo = &sequence[common..];
        let mut logits = self.forward(state, todo, Logits::Last)?.to_vec();
        history.extend_from_slice(todo);

        let mut sampler = Sampler::new(params.sampling.clone());
        let mut out = Generation {
            tokens: Vec::new(),
            text: String::new(),
            top_logprobs: Vec::new(),
            finish: FinishReason::Length,
            prompt_tokens_processed: todo.len(),
        };
        let mut text = TextStream::new(params.stop.clone());
        for _ in 0..params.max_tokens {
            let token = sampler.sample(&logits, history);
            if params.top_logprobs > 0 {
                out.top_logprobs
                    .push(top_logprobs(&logits, params.top_logprobs));
            }
            if params.stop_at_eog && self.tokenizer().is_eog(token) {
                if params.top_logprobs > 0 {
                    out.top_logprobs.pop();
                }
                out.finish = FinishReason::Stop;
                break;
            }
            out.tokens.push(token);
            match text.push(self.tokenizer().token_bytes(token)) {
                Pushed::Stopped(tail) => {
                    let _ = on_token(TokenEvent { token, text: &tail });
                    out.text = text.text();
                    out.finish = FinishReason::Stop;
                    return Ok(out);
                }
                Pushed::Text(chunk) => {
                    if on_token(TokenEvent {
                        token,
                        text: &chunk,
                    })
                    .is_break()
                    {
                        out.finish = FinishReason::Cancelled;
                        break;
                    }
                }
            }
            if state.n_past >= state.n_ctx {
                out.finish = FinishReason::Length;
                break;
            }
            logits.copy_from_slice(self.forward(state, &[token], Logits::Last)?);
            history.push(token);
        }
        out.text = text.text();
        if out.finish != FinishReason::Cancelled {
            let rest = text.flush();
            if !rest.is_empty() {
                let _ = on_token(TokenEvent {
                    token: *out.tokens.last().unwrap_or(&0),
                    text: &rest,
                });
            }
        }
        Ok(out)
    }
}
