//! BIG-bench JSON tasks (`task.json`), read and prompted exactly as BIG-bench 1.0.0's
//! `bigbench/api/json_task.py` does: examples de-duplicated, choices appended to the
//! input in a seeded permutation, few-shot examples drawn with numpy's legacy generator
//! (seed 42), composite tasks expanded into their subtask folders. The prompt renderer
//! docs/notes/bigbench_render.py implements the same semantics in Python for checking.

use super::numpy_rng::LegacyRandomState;
use crate::error::EvalError;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// json_task.py's metric families.
const GENERATIVE_METRICS: &[&str] = &[
    "bleu",
    "bleurt",
    "exact_str_match",
    "case_insensitive_str_match",
    "sequence_f1",
    "numeric_match_with_0_1_relative_error",
    "rouge",
];
const MULTIPLE_CHOICE_METRICS: &[&str] = &[
    "multiple_choice_grade",
    "calibration_multiple_choice_brier_score",
    "expected_calibration_error",
    "weighted_log_probabilities",
    "weighted_probabilities",
    "macro_f1",
];
const SCORING_METRICS: &[&str] = &["log_likelihood"];
/// Metrics huarizo computes.
pub const SUPPORTED_METRICS: &[&str] = &["multiple_choice_grade", "exact_str_match"];
/// json_task.py's output regex when a task gives neither regex nor stop string.
pub const DEFAULT_REGEX: &str = r"[^\.\?\!\;\n]+";
/// json_task.py's seed.
pub const DEFAULT_SEED: u32 = 42;

/// One prompt BIG-bench sends to the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The (sub)task's full name, `parent:child`.
    pub task: String,
    /// Index among the de-duplicated examples.
    pub example: usize,
    /// The prompt.
    pub input: String,
    /// Accepted answers (generative) or the best choice.
    pub target: Vec<String>,
    /// Choices in `target_scores` order, with their scores (multiple choice).
    pub choices: Vec<(String, f64)>,
}

/// A leaf task: examples formatted, ready to be queried.
#[derive(Clone, Debug)]
pub struct LeafTask {
    /// `parent:child` name.
    pub name: String,
    /// Metrics the task asks for.
    pub metrics: Vec<String>,
    /// The metric BIG-bench reports as the task's score.
    pub preferred_score: String,
    /// Formatted examples (input with prefixes and choices, targets, choices).
    examples: Vec<Formatted>,
    task_prefix: String,
    separator: String,
    /// Regex whose first match is the answer (generative), if any.
    pub output_regex: Option<String>,
    /// Generation stops at this string, if given.
    pub stop_string: Option<String>,
    max_examples: Option<usize>,
    seed: u32,
}

#[derive(Clone, Debug, PartialEq)]
struct Formatted {
    input: String,
    target: Vec<String>,
    choices: Vec<(String, f64)>,
}

/// A task: one leaf or a tree of subtasks.
#[derive(Clone, Debug)]
pub struct BigBenchTask {
    /// Name.
    pub name: String,
    /// The leaves, in BIG-bench's order (subfolders sorted by path).
    pub leaves: Vec<LeafTask>,
}

fn bad(path: &Path, message: impl Into<String>) -> EvalError {
    EvalError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_json(path: &Path) -> Result<Map<String, Value>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, e.to_string()))?;
    match serde_json::from_str(&text).map_err(|e| bad(path, format!("not JSON: {e}")))? {
        Value::Object(m) => Ok(m),
        _ => Err(bad(path, "a task.json must be a JSON object")),
    }
}

/// The `task.json` folders directly under `dir`, sorted by path (json_utils.py).
fn subtask_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("task.json"))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn string_field(
    m: &Map<String, Value>,
    key: &str,
    default: &str,
    path: &Path,
) -> Result<String, EvalError> {
    match m.get(key) {
        None => Ok(default.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(bad(
            path,
            format!("field {key:?} must be a string, not {other}"),
        )),
    }
}

/// Python truthiness of a JSON value (json_task.py tests `if append_choices_to_input`).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `json_task.py`'s `default_format_fn` for one example.
fn format_example(
    ex: &Map<String, Value>,
    i: usize,
    prefixes: (&str, &str, &str),
    append_choices: bool,
    seed: u32,
    path: &Path,
) -> Result<Formatted, EvalError> {
    let (input_prefix, output_prefix, choice_prefix) = prefixes;
    let field = |k: &str| format!("examples[{i}].{k}");
    let mut input = match ex.get("input") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(bad(path, format!("{} must be a string", field("input")))),
    };
    let mut choices = Vec::new();
    let mut target: Option<Vec<String>> = match ex.get("target") {
        None => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(path, format!("{} must hold strings", field("target"))))?,
        ),
        Some(_) => {
            return Err(bad(
                path,
                format!("{} must be a string or a list", field("target")),
            ))
        }
    };
    if let Some(ts) = ex.get("target_scores") {
        let Value::Object(ts) = ts else {
            return Err(bad(
                path,
                format!("{} must be an object", field("target_scores")),
            ));
        };
        for (k, v) in ts {
            let score = v
                .as_f64()
                .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
                .ok_or_else(|| {
                    bad(
                        path,
                        format!("{}[{k:?}] must be a number", field("target_scores")),
                    )
                })?;
            choices.push((k.clone(), score));
        }
        if choices.is_empty() {
            return Err(bad(path, format!("{} is empty", field("target_scores"))));
        }
        if append_choices {
            let mut sorted: Vec<&str> = choices.iter().map(|(c, _)| c.as_str()).collect();
            sorted.sort();
            let mut rng = LegacyRandomState::new(seed);
            let order = rng.permutation(sorted.len());
            let permuted: Vec<&str> = order.iter().map(|&j| sorted[j]).collect();
            input = format!("{input}{choice_prefix}{}", permuted.join(choice_prefix));
        }
        if target.is_none() {
            let max = choices
                .iter()
                .map(|c| c.1)
                .fold(f64::NEG_INFINITY, f64::max);
            let min = choices.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
            if (choices.len() == 1 && max == 0.0) || (choices.len() > 1 && max <= min) {
                return Err(bad(
                    path,
                    format!("{}: no correct choice", field("target_scores")),
                ));
            }
            let best = choices.iter().find(|c| c.1 == max).expect("max is a score");
            target = Some(vec![best.0.clone()]);
        }
    }
    let target = target.ok_or_else(|| {
        bad(
            path,
            format!("{} needs a target or target_scores", field("")),
        )
    })?;
    Ok(Formatted {
        input: format!("{input_prefix}{input}{output_prefix}"),
        target,
        choices,
    })
}

impl LeafTask {
    fn from_json(
        data: &Map<String, Value>,
        parent: Option<&str>,
        path: &Path,
        max_examples: Option<usize>,
        seed: u32,
    ) -> Result<LeafTask, EvalError> {
        let own = string_field(data, "name", "", path)?;
        let name = match parent {
            Some(p) => format!("{p}:{own}"),
            None => own,
        };
        let metrics: Vec<String> = match data.get("metrics") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(path, "field \"metrics\" must list strings"))?,
            _ => return Err(bad(path, "field \"metrics\" is missing or not a list")),
        };
        for m in &metrics {
            let known = GENERATIVE_METRICS.contains(&m.as_str())
                || MULTIPLE_CHOICE_METRICS.contains(&m.as_str())
                || SCORING_METRICS.contains(&m.as_str());
            if !known {
                return Err(bad(
                    path,
                    format!("field \"metrics\": unknown metric {m:?}"),
                ));
            }
        }
        let preferred_score = string_field(data, "preferred_score", "", path)?;
        if preferred_score.is_empty() {
            return Err(bad(path, "field \"preferred_score\" is missing"));
        }
        let input_prefix = string_field(data, "example_input_prefix", "\nQ: ", path)?;
        let output_prefix = string_field(data, "example_output_prefix", "\nA: ", path)?;
        let choice_prefix = string_field(data, "choice_prefix", "\n  choice: ", path)?;
        let append = data.get("append_choices_to_input").is_none_or(truthy);
        let separator = string_field(data, "few_shot_example_separator", "\n", path)?;
        let task_prefix = match data.get("task_prefix") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let Some(Value::Array(examples)) = data.get("examples") else {
            return Err(bad(path, "field \"examples\" is missing or not a list"));
        };
        // De-duplicate by the serialized example (json.dumps in BIG-bench: key order
        // counts), first occurrence wins; a set keeps 50k-example tasks linear.
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<&Value> = examples
            .iter()
            .filter(|ex| seen.insert(serde_json::to_string(ex).unwrap_or_default()))
            .collect();
        let examples = distinct
            .iter()
            .enumerate()
            .map(|(i, ex)| match ex {
                Value::Object(m) => format_example(
                    m,
                    i,
                    (&input_prefix, &output_prefix, &choice_prefix),
                    append,
                    seed,
                    path,
                ),
                _ => Err(bad(path, format!("examples[{i}] must be an object"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output_regex = data
            .get("output_regex")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let stop_string = data
            .get("stop_string")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let output_regex = match (&output_regex, &stop_string) {
            (None, None) => Some(DEFAULT_REGEX.to_string()),
            _ => output_regex,
        };
        Ok(LeafTask {
            name,
            metrics,
            preferred_score,
            examples,
            task_prefix,
            separator,
            output_regex,
            stop_string,
            max_examples,
            seed,
        })
    }

    /// Whether the task is scored by choices (else by generation).
    pub fn is_multiple_choice(&self) -> bool {
        self.metrics
            .iter()
            .any(|m| MULTIPLE_CHOICE_METRICS.contains(&m.as_str()))
    }

    /// BIG-bench's low score of multiple_choice_grade: the mean over every example of the
    /// mean of its choices' scores (what choosing at random earns). 0 for generative tasks.
    pub fn chance_level(&self) -> f64 {
        let per: Vec<f64> = self
            .examples
            .iter()
            .filter(|e| !e.choices.is_empty())
            .map(|e| e.choices.iter().map(|c| c.1).sum::<f64>() / e.choices.len() as f64)
            .collect();
        if per.is_empty() || !self.is_multiple_choice() {
            0.0
        } else {
            per.iter().sum::<f64>() / per.len() as f64
        }
    }

    /// Examples the task evaluates.
    pub fn num_examples(&self) -> usize {
        match self.max_examples {
            Some(m) if m > 0 => m.min(self.examples.len()),
            _ => self.examples.len(),
        }
    }

    /// The prompts of a `shots`-shot evaluation (json_task.py's `make_nshot_dataset`).
    pub fn queries(&self, shots: usize) -> Result<Vec<Query>, String> {
        let mut rng = LegacyRandomState::new(self.seed);
        let n = self.examples.len();
        let max = self.num_examples();
        let order: Vec<usize> = if shots == 0 {
            if max < n {
                rng.choice_without_replacement(n, max)
            } else {
                (0..n).collect()
            }
        } else {
            if n < shots + 1 {
                return Err(format!(
                    "{}: {n} examples are too few for {shots} shots",
                    self.name
                ));
            }
            // json_task.py always passes its example count here, so the query order is
            // a draw (a permutation when every example is used).
            rng.choice_without_replacement(n, max)
        };
        let mut out = Vec::with_capacity(order.len());
        for qi in order {
            let ex = &self.examples[qi];
            let mut input = ex.input.clone();
            if shots > 0 {
                let valid: Vec<usize> = (0..n).filter(|&j| self.examples[j] != *ex).collect();
                let picks = rng.choice_without_replacement(valid.len(), shots);
                let context: Vec<String> = picks
                    .iter()
                    .map(|&p| {
                        let shot = &self.examples[valid[p]];
                        let t = rng.choice_one(shot.target.len());
                        format!("{}{}", shot.input, shot.target[t])
                    })
                    .collect();
                input = format!(
                    "{}{}{}",
                    context.join(&self.separator),
                    self.separator,
                    input
                );
            }
            out.push(Query {
                task: self.name.clone(),
                example: qi,
                input: format!("{}{input}", self.task_prefix),
                target: ex.target.clone(),
                choices: ex.choices.clone(),
            });
        }
        Ok(out)
    }
}

impl BigBenchTask {
    /// Loads a task from its folder (or its `task.json`). `max_examples` caps the
    /// examples evaluated (split evenly over subtasks, as BIG-bench does); `seed` is
    /// BIG-bench's random seed ([`DEFAULT_SEED`]).
    pub fn load(
        path: &Path,
        max_examples: Option<usize>,
        seed: u32,
    ) -> Result<BigBenchTask, EvalError> {
        let json = if path.is_dir() {
            path.join("task.json")
        } else {
            path.to_path_buf()
        };
        let data = read_json(&json)?;
        let name = string_field(&data, "name", "", &json)?;
        let mut leaves = Vec::new();
        if data.contains_key("examples") {
            leaves.push(LeafTask::from_json(&data, None, &json, max_examples, seed)?);
        } else {
            let dir = json.parent().unwrap_or(Path::new("."));
            let subs = subtask_files(dir);
            if subs.is_empty() {
                return Err(bad(
                    &json,
                    "the task has neither \"examples\" nor subtask folders",
                ));
            }
            let per = match max_examples {
                Some(m) => {
                    let per = m / subs.len();
                    if per < 1 {
                        return Err(bad(
                            &json,
                            format!("max_examples {m} is below the {} subtasks", subs.len()),
                        ));
                    }
                    Some(per)
                }
                None => None,
            };
            for sub in subs {
                let d = read_json(&sub)?;
                leaves.push(LeafTask::from_json(&d, Some(&name), &sub, per, seed)?);
            }
        }
        Ok(BigBenchTask { name, leaves })
    }
}
