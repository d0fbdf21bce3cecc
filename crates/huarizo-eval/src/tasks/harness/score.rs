//! Running a task's items and scoring them with lm-eval's metrics: `acc`, `acc_norm`
//! (log-likelihood over the choice's length in characters), `acc_bytes`, TruthfulQA's
//! `mc2` mass, `exact_match` after filters, and the perplexities.

use super::config::{FilterStep, MetricConfig, OutputType};
use super::{HarnessTask, Item, DEFAULT_MAX_GEN_TOKS};
use crate::error::EvalError;
use crate::metrics::{mean_metric, Metric};
use crate::tasks::py_random::PyRandom;
use crate::tasks::{SampleLog, TaskResult};
use crate::{Evaluator, GenerateUntil, Loglikelihood, Rolling};
use regex_lite::Regex;

/// Metrics each output type can report.
pub fn known_metrics(t: OutputType) -> &'static [&'static str] {
    match t {
        OutputType::MultipleChoice => &["acc", "acc_norm", "acc_bytes", "mc1", "mc2"],
        OutputType::GenerateUntil => &["exact_match"],
        OutputType::Loglikelihood => &["perplexity", "acc"],
        OutputType::LoglikelihoodRolling => {
            &["word_perplexity", "byte_perplexity", "bits_per_byte"]
        }
    }
}

/// Whether `metric` is one `t` reports.
pub fn metric_fits(metric: &str, t: OutputType) -> bool {
    known_metrics(t).contains(&metric)
}

/// Metrics aggregated over the corpus rather than averaged per document.
pub fn is_corpus_metric(metric: &str) -> bool {
    matches!(
        metric,
        "perplexity" | "word_perplexity" | "byte_perplexity" | "bits_per_byte"
    )
}

/// Validates a filter step.
pub fn check_filter_step(step: &FilterStep) -> Result<(), String> {
    match step.function.as_str() {
        "regex" => {
            let p = step
                .regex_pattern
                .as_deref()
                .ok_or("regex: regex_pattern missing")?;
            Regex::new(p).map_err(|e| format!("regex_pattern {p:?}: {e}"))?;
            Ok(())
        }
        "take_first" | "lowercase" | "uppercase" | "remove_whitespace" => Ok(()),
        other => Err(format!(
            "unknown filter function {other:?} (known: regex, take_first, lowercase, uppercase, remove_whitespace)"
        )),
    }
}

/// lm-eval's `RegexFilter`: the `group_select`-th match (a group's text when the
/// pattern has groups, the first non-empty one when it has several), stripped; the
/// fallback when nothing matches.
fn regex_filter(step: &FilterStep, text: &str) -> String {
    let fallback = step.fallback.clone().unwrap_or_else(|| "[invalid]".into());
    let Some(re) = step
        .regex_pattern
        .as_deref()
        .and_then(|p| Regex::new(p).ok())
    else {
        return fallback;
    };
    let groups = re.captures_len() - 1;
    let matches: Vec<String> = re
        .captures_iter(text)
        .map(|c| match groups {
            0 => c.get(0).map_or("", |m| m.as_str()).to_string(),
            1 => c.get(1).map_or("", |m| m.as_str()).to_string(),
            _ => (1..=groups)
                .filter_map(|g| c.get(g).map(|m| m.as_str()))
                .find(|s| !s.is_empty())
                .unwrap_or(&fallback)
                .to_string(),
        })
        .collect();
    if matches.is_empty() {
        return fallback;
    }
    let sel = step.group_select.unwrap_or(0);
    let idx = if sel < 0 {
        matches.len() as i64 + sel
    } else {
        sel
    };
    match usize::try_from(idx).ok().and_then(|i| matches.get(i)) {
        Some(m) => m.trim().to_string(),
        None => fallback,
    }
}

fn apply_filter(steps: &[FilterStep], text: &str) -> String {
    let mut out = text.to_string();
    for s in steps {
        out = match s.function.as_str() {
            "regex" => regex_filter(s, &out),
            "lowercase" => out.to_lowercase(),
            "uppercase" => out.to_uppercase(),
            "remove_whitespace" => out.trim_start().to_string(),
            _ => out,
        };
    }
    out
}

/// lm-eval's `exact_match` (after Hugging Face evaluate's): regexes removed in order,
/// then case and ASCII punctuation dropped if asked, then equality.
fn exact_match(m: &MetricConfig, prediction: &str, reference: &str) -> bool {
    let clean = |s: &str| {
        let mut s = s.to_string();
        for r in &m.regexes_to_ignore {
            if let Ok(re) = Regex::new(r) {
                s = re.replace_all(&s, "").into_owned();
            }
        }
        if m.ignore_case {
            s = s.to_lowercase();
        }
        if m.ignore_punctuation {
            s.retain(|c| !c.is_ascii_punctuation());
        }
        s
    };
    clean(prediction) == clean(reference)
}

/// `np.argmax`: the first maximum.
fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// lm-eval's bootstrap standard error of a corpus metric: 100,000 resamples in chunks
/// of 1,000, chunk `i` drawn by `random.Random(i).choices`, then the sample standard
/// deviation of the replicates.
pub fn bootstrap_stderr(f: &dyn Fn(&[f64]) -> f64, xs: &[f64], iters: usize) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let chunk = iters.min(1000);
    let mut reps = Vec::with_capacity(iters);
    let mut sample = vec![0.0; xs.len()];
    for i in 0..iters / chunk {
        let mut rng = PyRandom::new(i as u64);
        for _ in 0..chunk {
            for s in sample.iter_mut() {
                *s = xs[(rng.random() * xs.len() as f64) as usize];
            }
            reps.push(f(&sample));
        }
    }
    crate::metrics::mean_stderr(&reps).map(|se| se * (reps.len() as f64).sqrt())
}

/// Runs a task's items on the evaluator and scores them.
pub fn evaluate(
    ev: &Evaluator,
    task: &HarnessTask,
    name: &str,
    items: &[Item],
    n_shot: usize,
    n_original: usize,
) -> Result<TaskResult, EvalError> {
    let c = &task.config;
    let metric_list: Vec<MetricConfig> = if c.metric_list.is_empty() {
        default_metrics(c.output_type)
    } else {
        c.metric_list.clone()
    };
    let mut samples = Vec::with_capacity(items.len());
    let mut metrics = Vec::new();
    match c.output_type {
        OutputType::MultipleChoice => {
            let reqs: Vec<Loglikelihood> = items
                .iter()
                .flat_map(|it| {
                    it.requests.iter().map(|(ctx, cont)| Loglikelihood {
                        context: ctx.clone(),
                        continuation: cont.clone(),
                    })
                })
                .collect();
            let answers = ev.loglikelihood(&reqs)?;
            let mut at = 0;
            let mut per_metric: Vec<Vec<f64>> = vec![Vec::new(); metric_list.len()];
            for it in items {
                let n = it.requests.len();
                let got = &answers[at..at + n];
                at += n;
                let lls: Vec<f64> = got.iter().map(|a| a.logprob).collect();
                let pred = argmax(&lls);
                let hit = |p: usize| f64::from(u8::from(it.gold.contains(&p)));
                for (k, m) in metric_list.iter().enumerate() {
                    let v = match m.metric.as_str() {
                        "acc" | "mc1" if task.hooks.mc2 => mc2(&lls, &it.gold),
                        "acc" | "mc1" => hit(pred),
                        "acc_norm" => {
                            let normed: Vec<f64> = lls
                                .iter()
                                .zip(&it.choices)
                                .map(|(l, ch)| l / ch.chars().count().max(1) as f64)
                                .collect();
                            hit(argmax(&normed))
                        }
                        "acc_bytes" => {
                            let normed: Vec<f64> = lls
                                .iter()
                                .zip(&it.choices)
                                .map(|(l, ch)| l / ch.len().max(1) as f64)
                                .collect();
                            hit(argmax(&normed))
                        }
                        "mc2" => mc2(&lls, &it.gold),
                        _ => f64::NAN,
                    };
                    per_metric[k].push(v);
                }
                samples.push(SampleLog {
                    doc_id: it.doc_id,
                    prompt: it.prompt.clone(),
                    choices: it.requests.iter().map(|(_, c)| c.clone()).collect(),
                    choice_scores: (0..n).map(hit).collect(),
                    logprobs: lls,
                    is_greedy: got.iter().map(|a| a.is_greedy).collect(),
                    chosen: Some(pred),
                    generated: None,
                    target: it.gold.iter().map(|g| it.choices[*g].clone()).collect(),
                    score: per_metric[0].last().copied().unwrap_or(f64::NAN),
                });
            }
            for (m, xs) in metric_list.iter().zip(&per_metric) {
                metrics.push(mean_metric(
                    &m.metric,
                    xs,
                    m.higher_is_better.unwrap_or(true),
                ));
            }
        }
        OutputType::GenerateUntil => {
            let g = c.generation_kwargs.clone().unwrap_or_default();
            let until = g
                .until
                .map(|u| u.to_vec())
                .unwrap_or_else(|| vec![c.fewshot_delimiter.clone()]);
            let reqs: Vec<GenerateUntil> = items
                .iter()
                .map(|it| GenerateUntil {
                    context: it.prompt.clone(),
                    until: until.clone(),
                    max_tokens: g.max_gen_toks.unwrap_or(DEFAULT_MAX_GEN_TOKS),
                })
                .collect();
            let outs = ev.generate(&reqs)?;
            let filters: Vec<(String, Vec<FilterStep>)> = if c.filter_list.is_empty() {
                vec![("none".into(), Vec::new())]
            } else {
                c.filter_list
                    .iter()
                    .map(|f| (f.name.clone(), f.filter.clone()))
                    .collect()
            };
            for (fname, steps) in &filters {
                for m in &metric_list {
                    let xs: Vec<f64> = items
                        .iter()
                        .zip(&outs)
                        .map(|(it, out)| {
                            let pred = apply_filter(steps, out);
                            let ok = it.target.iter().any(|t| exact_match(m, &pred, t));
                            f64::from(u8::from(ok))
                        })
                        .collect();
                    let mut metric =
                        mean_metric(&m.metric, &xs, m.higher_is_better.unwrap_or(true));
                    metric.filter = fname.clone();
                    metrics.push(metric);
                }
            }
            let steps = &filters[0].1;
            for (it, out) in items.iter().zip(&outs) {
                let pred = apply_filter(steps, out);
                let score = metric_list.first().map_or(f64::NAN, |m| {
                    f64::from(u8::from(it.target.iter().any(|t| exact_match(m, &pred, t))))
                });
                samples.push(SampleLog {
                    doc_id: it.doc_id,
                    prompt: it.prompt.clone(),
                    choices: Vec::new(),
                    choice_scores: Vec::new(),
                    logprobs: Vec::new(),
                    is_greedy: Vec::new(),
                    chosen: None,
                    generated: Some(out.clone()),
                    target: it.target.clone(),
                    score,
                });
            }
        }
        OutputType::Loglikelihood => {
            let reqs: Vec<Loglikelihood> = items
                .iter()
                .map(|it| Loglikelihood {
                    context: it.requests[0].0.clone(),
                    continuation: it.requests[0].1.clone(),
                })
                .collect();
            let answers = ev.loglikelihood(&reqs)?;
            let lls: Vec<f64> = answers.iter().map(|a| a.logprob).collect();
            for m in &metric_list {
                match m.metric.as_str() {
                    "perplexity" => {
                        let f = |xs: &[f64]| (-crate::metrics::mean(xs)).exp();
                        metrics.push(Metric {
                            name: "perplexity".into(),
                            value: f(&lls),
                            stderr: bootstrap_stderr(&f, &lls, 100_000),
                            higher_is_better: false,
                            filter: "none".into(),
                        });
                    }
                    _ => {
                        let xs: Vec<f64> = answers
                            .iter()
                            .map(|a| f64::from(u8::from(a.is_greedy)))
                            .collect();
                        metrics.push(mean_metric("acc", &xs, true));
                    }
                }
            }
            for (it, a) in items.iter().zip(&answers) {
                samples.push(SampleLog {
                    doc_id: it.doc_id,
                    prompt: it.prompt.clone(),
                    choices: vec![it.requests[0].1.clone()],
                    choice_scores: Vec::new(),
                    logprobs: vec![a.logprob],
                    is_greedy: vec![a.is_greedy],
                    chosen: None,
                    generated: None,
                    target: it.target.clone(),
                    score: a.logprob,
                });
            }
        }
        OutputType::LoglikelihoodRolling => {
            let reqs: Vec<Rolling> = items
                .iter()
                .map(|it| Rolling {
                    text: it.target[0].clone(),
                })
                .collect();
            let answers = ev.rolling(&reqs)?;
            let ll: f64 = answers.iter().map(|a| a.logprob).sum();
            let words: usize = items.iter().map(|it| count_words(&it.target[0])).sum();
            let bytes: usize = items.iter().map(|it| it.target[0].len()).sum();
            for m in &metric_list {
                let value = match m.metric.as_str() {
                    "word_perplexity" => (-ll / words as f64).exp(),
                    "byte_perplexity" => (-ll / bytes as f64).exp(),
                    _ => -(ll / bytes as f64) / std::f64::consts::LN_2,
                };
                metrics.push(Metric {
                    name: m.metric.clone(),
                    value,
                    stderr: None,
                    higher_is_better: false,
                    filter: "none".into(),
                });
            }
            for (it, a) in items.iter().zip(&answers) {
                samples.push(SampleLog {
                    doc_id: it.doc_id,
                    prompt: String::new(),
                    choices: Vec::new(),
                    choice_scores: Vec::new(),
                    logprobs: vec![a.logprob],
                    is_greedy: Vec::new(),
                    chosen: None,
                    generated: None,
                    target: Vec::new(),
                    score: a.logprob,
                });
            }
        }
    }
    Ok(TaskResult {
        name: name.to_string(),
        metrics,
        n_shot,
        n_original,
        n_effective: items.len(),
        normalized: None,
        samples,
    })
}

/// TruthfulQA's mc2: probabilities of the choices (true answers first, up to the first
/// false one) normalized over all choices; the mass on the true ones.
fn mc2(lls: &[f64], gold: &[usize]) -> f64 {
    let max = lls.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let p: Vec<f64> = lls.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = p.iter().sum();
    gold.iter().map(|&g| p[g]).sum::<f64>() / total
}

/// lm-eval's word count: `len(re.split(r"\s+", text))` (edge whitespace counts).
pub fn count_words(text: &str) -> usize {
    let mut n = 1;
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_space {
                n += 1;
            }
            in_space = true;
        } else {
            in_space = false;
        }
    }
    n
}

fn default_metrics(t: OutputType) -> Vec<MetricConfig> {
    let names: &[&str] = match t {
        OutputType::MultipleChoice => &["acc"],
        OutputType::GenerateUntil => &["exact_match"],
        OutputType::Loglikelihood => &["perplexity", "acc"],
        OutputType::LoglikelihoodRolling => {
            &["word_perplexity", "byte_perplexity", "bits_per_byte"]
        }
    };
    names
        .iter()
        .map(|n| MetricConfig {
            metric: n.to_string(),
            aggregation: None,
            higher_is_better: None,
            ignore_case: false,
            ignore_punctuation: false,
            regexes_to_ignore: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(pattern: &str, select: i64) -> FilterStep {
        FilterStep {
            function: "regex".into(),
            regex_pattern: Some(pattern.into()),
            group_select: Some(select),
            fallback: None,
        }
    }

    #[test]
    fn gsm8k_filters_and_exact_match() {
        let strict = step(r"#### (\-?[0-9\.\,]+)", 0);
        let flexible = step(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", -1);
        let out = "She has 3 apples and buys 1,200 more.\n#### 1,203";
        assert_eq!(regex_filter(&strict, out), "1,203");
        assert_eq!(regex_filter(&flexible, out), "1,203");
        assert_eq!(regex_filter(&strict, "no answer"), "[invalid]");
        assert_eq!(regex_filter(&flexible, "it is 7"), "7");
        let m = MetricConfig {
            metric: "exact_match".into(),
            aggregation: None,
            higher_is_better: None,
            ignore_case: true,
            ignore_punctuation: false,
            regexes_to_ignore: vec![
                ",".into(),
                "\\$".into(),
                "(?s).*#### ".into(),
                "\\.$".into(),
            ],
        };
        assert!(exact_match(&m, "1,203", "Work...\nmore lines\n#### 1203"));
        assert!(!exact_match(&m, "1,204", "#### 1203"));
    }

    #[test]
    fn words_and_mc2() {
        assert_eq!(count_words(" a b "), 4);
        assert_eq!(count_words(" Hello world.\n\nThis is  a test. "), 8);
        let p = mc2(&[(0.5f64).ln(), (0.25f64).ln(), (0.25f64).ln()], &[0, 1]);
        assert!((p - 0.75).abs() < 1e-12);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }
}
