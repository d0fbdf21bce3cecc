//! Scoring BIG-bench JSON tasks as json_task.py does. Multiple choice: every choice's
//! log-probability after the prompt; the example scores the `target_scores` value of the
//! most likely choice (the first on ties), and `multiple_choice_grade` is the mean.
//! Generative: 30 greedily generated tokens post-processed as BIG-bench does (cut to 30
//! characters, just after the stop string, then the output regex's first match);
//! `exact_str_match` scores 1 when the answer equals one of the targets.
//!
//! Two choices differ from BIG-bench's own reference model, as lm-evaluation-harness
//! makes them: a prompt's trailing space is scored with the choice (lm-eval's pair
//! encoding; BIG-bench's GPT-2 tokenizes prompt and choice apart), and generation is
//! greedy (BIG-bench's reference samples with top-k 40). Ties between choices go to the
//! first (BIG-bench breaks exact ties by a hash; log-probabilities practically never tie).

use super::bigbench::{LeafTask, Query};
use super::{SampleLog, TaskResult};
use crate::error::EvalError;
use crate::metrics::mean_metric;
use crate::{Evaluator, GenerateUntil, Loglikelihood};

/// Tokens generated for a generative example, and the characters kept of them: the
/// `max_length` BIG-bench's evaluation sets (30).
pub const MAX_LENGTH: usize = 30;

/// BIG-bench's `postprocess_output` (model_utils.py): cut to `max_length` characters,
/// then just after the first stop string (kept; one at the very start is not cut), then
/// the first match of the output regex ("" when none matches).
pub fn postprocess(
    text: &str,
    max_length: usize,
    stop: Option<&str>,
    regex: Option<&regex_lite::Regex>,
) -> String {
    let mut out: String = text.chars().take(max_length).collect();
    if let Some(s) = stop.filter(|s| !s.is_empty()) {
        if let Some(at) = out.find(s).filter(|&at| at > 0) {
            out.truncate(at + s.len());
        }
    }
    match regex {
        Some(re) => re
            .find(&out)
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
        None => out,
    }
}

/// Evaluates one leaf task with `shots` examples in each prompt.
pub fn evaluate_leaf(
    ev: &Evaluator,
    leaf: &LeafTask,
    shots: usize,
    limit: Option<usize>,
) -> Result<TaskResult, EvalError> {
    let mut queries: Vec<Query> = leaf.queries(shots).map_err(EvalError::Engine)?;
    let original = queries.len();
    if let Some(l) = limit {
        queries.truncate(l);
    }
    let mut samples = Vec::with_capacity(queries.len());
    let mut metrics = Vec::new();
    if leaf.is_multiple_choice() {
        let requests: Vec<Loglikelihood> = queries
            .iter()
            .flat_map(|q| {
                q.choices.iter().map(|(c, _)| Loglikelihood {
                    context: q.input.clone(),
                    continuation: c.clone(),
                })
            })
            .collect();
        let results = ev.loglikelihood(&requests)?;
        let mut at = 0;
        let mut grades = Vec::with_capacity(queries.len());
        for q in &queries {
            let r = &results[at..at + q.choices.len()];
            at += q.choices.len();
            let best = r
                .iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |b, (i, x)| {
                    if x.logprob > b.1 {
                        (i, x.logprob)
                    } else {
                        b
                    }
                })
                .0;
            let grade = q.choices[best].1;
            grades.push(grade);
            samples.push(SampleLog {
                doc_id: q.example,
                prompt: q.input.clone(),
                choices: q.choices.iter().map(|c| c.0.clone()).collect(),
                choice_scores: q.choices.iter().map(|c| c.1).collect(),
                logprobs: r.iter().map(|x| x.logprob).collect(),
                is_greedy: r.iter().map(|x| x.is_greedy).collect(),
                chosen: Some(best),
                generated: None,
                target: q.target.clone(),
                score: grade,
            });
        }
        metrics.push(mean_metric("multiple_choice_grade", &grades, true));
    } else {
        let regex = match &leaf.output_regex {
            Some(r) => Some(regex_lite::Regex::new(r).map_err(|e| {
                EvalError::Engine(format!("{}: output_regex {r:?}: {e}", leaf.name))
            })?),
            None => None,
        };
        let requests: Vec<GenerateUntil> = queries
            .iter()
            .map(|q| GenerateUntil {
                context: q.input.clone(),
                // The stop string is applied afterwards, as BIG-bench applies it.
                until: Vec::new(),
                max_tokens: MAX_LENGTH,
            })
            .collect();
        let outputs = ev.generate(&requests)?;
        let mut matches = Vec::new();
        for (q, out) in queries.iter().zip(outputs) {
            let answer = postprocess(
                &out,
                MAX_LENGTH,
                leaf.stop_string.as_deref(),
                regex.as_ref(),
            );
            let hit = q.target.iter().any(|t| t == &answer);
            let score = f64::from(u8::from(hit));
            matches.push(score);
            samples.push(SampleLog {
                doc_id: q.example,
                prompt: q.input.clone(),
                choices: Vec::new(),
                choice_scores: Vec::new(),
                logprobs: Vec::new(),
                is_greedy: Vec::new(),
                chosen: None,
                generated: Some(answer),
                target: q.target.clone(),
                score,
            });
        }
        metrics.push(mean_metric("exact_str_match", &matches, true));
    }
    let low = leaf.chance_level();
    let normalized = metrics
        .first()
        .map(|m| 100.0 * (m.value - low) / (1.0 - low).max(f64::EPSILON));
    Ok(TaskResult {
        name: leaf.name.clone(),
        normalized,
        metrics,
        n_shot: shots,
        n_original: original,
        n_effective: samples.len(),
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::postprocess;

    #[test]
    fn postprocess_is_bigbench_s() {
        let re = regex_lite::Regex::new(super::super::bigbench::DEFAULT_REGEX).unwrap();
        assert_eq!(
            postprocess(" Paris.\nQ: next", 30, None, Some(&re)),
            " Paris"
        );
        // The stop string is kept, except at the very start.
        assert_eq!(postprocess("42 and more", 30, Some(" and"), None), "42 and");
        assert_eq!(postprocess(" and 42", 30, Some(" and"), None), " and 42");
        // Thirty characters at most.
        assert_eq!(postprocess(&"x".repeat(50), 30, None, None).len(), 30);
        assert_eq!(postprocess("!!!", 30, None, Some(&re)), "");
    }
}
