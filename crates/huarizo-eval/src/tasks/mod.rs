//! Tasks: what is asked of the model and how the answers are scored.

pub mod bigbench;
pub mod bigbench_eval;
pub mod harness;
pub mod numpy_rng;
pub mod py_random;

use crate::metrics::Metric;
use serde::Serialize;

/// One scored item, for `--log-samples` style output and reference comparisons.
#[derive(Clone, Debug, Serialize)]
pub struct SampleLog {
    /// The item's index in the task.
    pub doc_id: usize,
    /// The prompt.
    pub prompt: String,
    /// Choices, for multiple choice.
    pub choices: Vec<String>,
    /// Each choice's score if chosen (BIG-bench `target_scores`; 1/0 for a gold index).
    pub choice_scores: Vec<f64>,
    /// Log-probability of each choice.
    pub logprobs: Vec<f64>,
    /// Whether each choice is the greedy continuation.
    pub is_greedy: Vec<bool>,
    /// Index of the chosen choice.
    pub chosen: Option<usize>,
    /// The generated answer, for generative tasks.
    pub generated: Option<String>,
    /// Accepted answers.
    pub target: Vec<String>,
    /// The item's score.
    pub score: f64,
}

/// A task's scores.
#[derive(Clone, Debug, Serialize)]
pub struct TaskResult {
    /// Task name.
    pub name: String,
    /// Metrics.
    pub metrics: Vec<Metric>,
    /// Examples in each prompt.
    pub n_shot: usize,
    /// Items the task has.
    pub n_original: usize,
    /// Items scored (after `--limit`).
    pub n_effective: usize,
    /// BIG-bench's normalized score, `100·(score − low)/(high − low)`: low is chance for
    /// multiple choice, 0 for exact_str_match; high is 1.
    pub normalized: Option<f64>,
    /// Per item.
    pub samples: Vec<SampleLog>,
}
