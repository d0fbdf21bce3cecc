//! The three request types of lm-evaluation-harness, and their answers.

use serde::{Deserialize, Serialize};

/// Log-probability of `continuation` after `context`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Loglikelihood {
    /// What the model reads first.
    pub context: String,
    /// What is scored.
    pub continuation: String,
}

/// The answer to a [`Loglikelihood`] request.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoglikelihoodResult {
    /// Sum of the continuation tokens' log-probabilities (nats).
    pub logprob: f64,
    /// Every continuation token is the model's most likely token at its position.
    pub is_greedy: bool,
    /// Tokens in the continuation.
    pub tokens: usize,
}

/// Log-probability of a whole document (perplexity), in windows of the model's context.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rolling {
    /// The document.
    pub text: String,
}

/// The answer to a [`Rolling`] request.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RollingResult {
    /// Sum of every token's log-probability (nats).
    pub logprob: f64,
    /// Tokens scored.
    pub tokens: usize,
}

/// Greedy generation after `context` until one of `until` or `max_tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GenerateUntil {
    /// The prompt.
    pub context: String,
    /// Stop sequences (not included in the answer).
    pub until: Vec<String>,
    /// Most tokens to generate.
    pub max_tokens: usize,
}
