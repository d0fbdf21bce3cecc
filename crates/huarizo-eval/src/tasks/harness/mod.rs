//! lm-evaluation-harness tasks: a task YAML's prompt templates, few-shot sampling and
//! metrics, run on huarizo's requests so that the prompts, continuations and numbers
//! are lm-eval's. The Open LLM Leaderboard tasks are built in ([`builtin`]); any task
//! YAML (or JSON with the same keys) that needs no Python functions runs as well.

pub mod builtin;
pub mod config;
pub mod data;
pub mod parquet;
pub mod render;
pub mod score;

use crate::error::EvalError;
use crate::suite::DataRoot;
use crate::tasks::py_random::PyRandom;
use config::{Field, OutputType, TaskConfig};
use data::DataSource;
use render::{Rendered, Renderer};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// lm-eval's few-shot seed (`fewshot_random_seed`).
pub const DEFAULT_FEWSHOT_SEED: u64 = 1234;

/// lm-eval's `max_gen_toks`.
pub const DEFAULT_MAX_GEN_TOKS: usize = 256;

/// A built-in task's `process_docs`.
pub type ProcessDocs = fn(&Value) -> Result<Value, String>;

/// Python functions of built-in tasks, in Rust.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hooks {
    /// `process_docs`: rewrites each document before anything reads it.
    pub process_docs: Option<ProcessDocs>,
    /// TruthfulQA's `process_results_mc2`: the probability mass on the true answers.
    pub mc2: bool,
}

/// A task ready to load its data.
#[derive(Clone, Debug)]
pub struct HarnessTask {
    /// The configuration.
    pub config: TaskConfig,
    /// Where its documents are.
    pub source: DataSource,
    /// Python functions, for built-in tasks.
    pub hooks: Hooks,
    /// Where the configuration came from (a file, or `built-in`).
    pub origin: String,
}

/// One document, ready to be asked.
#[derive(Clone, Debug)]
pub struct Item {
    /// Position in the evaluated split.
    pub doc_id: usize,
    /// The document (after `process_docs`).
    pub doc: Value,
    /// The prompt (for tasks whose choices are in the context: the few-shot prefix).
    pub prompt: String,
    /// Log-likelihood requests (context, continuation): one per choice, or one.
    pub requests: Vec<(String, String)>,
    /// Choices of a multiple-choice task.
    pub choices: Vec<String>,
    /// Index of the correct choice(s).
    pub gold: Vec<usize>,
    /// Accepted answers (generation) or the scored text (perplexity).
    pub target: Vec<String>,
}

fn field_error(origin: &str, field: &str, doc_id: usize, message: String) -> EvalError {
    EvalError::File {
        path: PathBuf::from(origin),
        message: format!("{field} of document {doc_id}: {message}"),
    }
}

impl HarnessTask {
    /// Reads a task YAML or JSON file. Relative data paths are relative to the file.
    pub fn from_file(path: &Path, data_root: &DataRoot) -> Result<HarnessTask, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let bad = |message: String| EvalError::File {
            path: path.to_path_buf(),
            message,
        };
        if text.contains("!function") {
            return Err(bad(
                "`!function` names Python code, which huarizo cannot run; the built-in tasks \
                 (arc_challenge, hellaswag, mmlu, truthfulqa_mc1/mc2, winogrande, gsm8k) have \
                 theirs in Rust"
                    .into(),
            ));
        }
        let merged = read_with_includes(path, &text, 0)?;
        let config: TaskConfig = serde_json::from_value(merged).map_err(|e| bad(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let source = source_of(&config, base, data_root).map_err(bad)?;
        let task = HarnessTask {
            config,
            source,
            hooks: Hooks::default(),
            origin: path.display().to_string(),
        };
        task.check()?;
        Ok(task)
    }

    /// Checks what can be checked before reading data.
    pub fn check(&self) -> Result<(), EvalError> {
        let bad = |message: String| EvalError::File {
            path: PathBuf::from(&self.origin),
            message,
        };
        let c = &self.config;
        if c.repeats.is_some_and(|r| r != 1) {
            return Err(bad(
                "repeats: only 1 is supported (greedy decoding repeats itself)".into(),
            ));
        }
        if c.doc_to_text.is_none() && c.output_type != OutputType::LoglikelihoodRolling {
            return Err(bad("doc_to_text: missing".into()));
        }
        if c.doc_to_target.is_none() {
            return Err(bad("doc_to_target: missing".into()));
        }
        if c.output_type == OutputType::MultipleChoice && c.doc_to_choice.is_none() {
            return Err(bad(
                "doc_to_choice: missing (output_type is multiple_choice)".into(),
            ));
        }
        if let Some(g) = &c.generation_kwargs {
            if g.do_sample == Some(true) || g.temperature.is_some_and(|t| t > 0.0) {
                return Err(bad("generation_kwargs: only greedy decoding is supported (do_sample: false, temperature: 0)".into()));
            }
        }
        for m in &c.metric_list {
            if !score::metric_fits(&m.metric, c.output_type) {
                return Err(bad(format!(
                    "metric_list: unknown metric {:?} for output_type {:?} (known: {})",
                    m.metric,
                    c.output_type,
                    score::known_metrics(c.output_type).join(", ")
                )));
            }
            if let Some(a) = &m.aggregation {
                if a != "mean" && !score::is_corpus_metric(&m.metric) {
                    return Err(bad(format!(
                        "metric_list: aggregation {a:?} of {:?}: only mean is supported",
                        m.metric
                    )));
                }
            }
            for r in &m.regexes_to_ignore {
                regex_lite::Regex::new(r)
                    .map_err(|e| bad(format!("metric_list: regexes_to_ignore {r:?}: {e}")))?;
            }
        }
        for f in &c.filter_list {
            for step in &f.filter {
                score::check_filter_step(step)
                    .map_err(|e| bad(format!("filter_list {:?}: {e}", f.name)))?;
            }
        }
        Ok(())
    }

    /// Examples per prompt: the task's own count when it fixes 0, else `requested`,
    /// else the task's count, else 0 (lm-eval's rule).
    pub fn shots(&self, requested: Option<usize>) -> usize {
        match (self.config.num_fewshot, requested) {
            (Some(0), _) => 0,
            (_, Some(n)) => n,
            (Some(n), None) => n,
            (None, None) => 0,
        }
    }

    fn load_split(&self, split: &str) -> Result<Option<Vec<Value>>, EvalError> {
        // Data errors name the task file too (the data file is in the message).
        let loaded = self.source.load(split).map_err(|e| match e {
            EvalError::File { path, message } => EvalError::File {
                path: PathBuf::from(&self.origin),
                message: format!("split {split}: {}: {message}", path.display()),
            },
            other => other,
        })?;
        let Some(docs) = loaded else {
            return Ok(None);
        };
        match self.hooks.process_docs {
            None => Ok(Some(docs)),
            Some(f) => docs
                .iter()
                .enumerate()
                .map(|(i, d)| f(d).map_err(|e| field_error(&self.origin, "process_docs", i, e)))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    }

    /// The evaluated documents: the test split, else the validation split (a task that
    /// names neither reads the dataset's `test`, else `validation`, split).
    pub fn eval_docs(&self) -> Result<Vec<Value>, EvalError> {
        let c = &self.config;
        let defaults = [Some("test".to_string()), Some("validation".to_string())];
        let splits = if c.test_split.is_none() && c.validation_split.is_none() {
            [&defaults[0], &defaults[1]]
        } else {
            [&c.test_split, &c.validation_split]
        };
        for split in splits.into_iter().flatten() {
            if let Some(d) = self.load_split(split)? {
                return Ok(d);
            }
        }
        Err(self.missing(
            "test_split or validation_split",
            &[&self.config.test_split, &self.config.validation_split],
        ))
    }

    /// The few-shot documents: `fewshot_split`, else training, validation, test.
    fn fewshot_docs(&self) -> Result<Vec<Value>, EvalError> {
        let c = &self.config;
        let order: Vec<&Option<String>> = if c.fewshot_split.is_some() {
            vec![&c.fewshot_split]
        } else {
            vec![&c.training_split, &c.validation_split, &c.test_split]
        };
        for split in order.iter().copied().flatten() {
            if let Some(d) = self.load_split(split)? {
                return Ok(d);
            }
        }
        Err(self.missing(
            "few-shot examples (fewshot_split or training_split)",
            &order,
        ))
    }

    fn missing(&self, what: &str, splits: &[&Option<String>]) -> EvalError {
        let names: Vec<&str> = splits.iter().filter_map(|s| s.as_deref()).collect();
        EvalError::File {
            path: PathBuf::from(&self.origin),
            message: format!(
                "{what}: no data for split(s) [{}] in {}",
                names.join(", "),
                self.source.describe()
            ),
        }
    }

    /// Builds every item's prompt and requests as lm-eval does: `description`, then
    /// `shots` examples (each `text + target_delimiter + answer + fewshot_delimiter`),
    /// then the document's text; continuations are `target_delimiter + choice`.
    pub fn items(
        &self,
        shots: usize,
        limit: Option<usize>,
        seed: u64,
    ) -> Result<(Vec<Item>, usize), EvalError> {
        let docs = self.eval_docs()?;
        let n_original = docs.len();
        let take = limit.map_or(docs.len(), |l| l.min(docs.len()));
        let fewshot = if shots > 0 {
            self.fewshot_docs()?
        } else {
            Vec::new()
        };
        let c = &self.config;
        if shots > 0 && fewshot.len() < shots + usize::from(c.fewshot_split == c.test_split) {
            return Err(EvalError::File {
                path: PathBuf::from(&self.origin),
                message: format!(
                    "{shots} shots asked but only {} few-shot documents in {}",
                    fewshot.len(),
                    self.source.describe()
                ),
            });
        }
        let r = Renderer::default();
        let mut rng = PyRandom::new(seed);
        // lm-eval passes the evaluated document to the sampler (to leave it out of its
        // own shots) only when few-shot and test splits are the same (None == None too).
        let exclude_self = c.fewshot_split == c.test_split;
        let mut items = Vec::with_capacity(take);
        for (doc_id, doc) in docs.into_iter().take(take).enumerate() {
            let shot_docs: Vec<&Value> = if shots == 0 {
                Vec::new()
            } else if c.first_n_sampler() {
                fewshot.iter().take(shots).collect()
            } else {
                let n = shots + usize::from(exclude_self);
                let picked = rng.sample(fewshot.len(), n);
                picked
                    .into_iter()
                    .map(|i| &fewshot[i])
                    .filter(|d| !exclude_self || **d != doc)
                    .take(shots)
                    .collect()
            };
            items.push(self.item(&r, doc_id, doc, &shot_docs)?);
        }
        Ok((items, n_original))
    }

    fn text_of(&self, r: &Renderer, doc: &Value, doc_id: usize) -> Result<Rendered, EvalError> {
        let c = &self.config;
        let field = c
            .doc_to_text
            .clone()
            .unwrap_or(Field::Template(String::new()));
        r.text(&field, doc, c.doc_to_choice.is_some())
            .map_err(|e| field_error(&self.origin, "doc_to_text", doc_id, e))
    }

    fn target_of(&self, r: &Renderer, doc: &Value, doc_id: usize) -> Result<Rendered, EvalError> {
        let c = &self.config;
        let field = c
            .doc_to_target
            .clone()
            .unwrap_or(Field::Template(String::new()));
        r.target(&field, doc, c.doc_to_choice.is_some())
            .map_err(|e| field_error(&self.origin, "doc_to_target", doc_id, e))
    }

    fn choices_of(
        &self,
        r: &Renderer,
        doc: &Value,
        doc_id: usize,
    ) -> Result<Vec<String>, EvalError> {
        match &self.config.doc_to_choice {
            None => Ok(Vec::new()),
            Some(f) => r
                .choices(f, doc)
                .map_err(|e| field_error(&self.origin, "doc_to_choice", doc_id, e)),
        }
    }

    /// A choice by index, or an error naming the document.
    fn choice_at(
        &self,
        choices: &[String],
        i: i64,
        field: &str,
        doc_id: usize,
    ) -> Result<String, EvalError> {
        usize::try_from(i)
            .ok()
            .and_then(|i| choices.get(i))
            .cloned()
            .ok_or_else(|| {
                field_error(
                    &self.origin,
                    field,
                    doc_id,
                    format!("index {i} but {} choices", choices.len()),
                )
            })
    }

    /// An example's rendering in the prompt: its text (for choices-in-context tasks, the
    /// correct context), the delimiter, its answer.
    fn shot(&self, r: &Renderer, doc: &Value) -> Result<String, EvalError> {
        let c = &self.config;
        let text = self.text_of(r, doc, usize::MAX)?;
        let text = match text {
            Rendered::Index(i) if c.doc_to_choice.is_some() => {
                let choices = self.choices_of(r, doc, usize::MAX)?;
                self.choice_at(&choices, i, "doc_to_text", usize::MAX)?
            }
            other => other.to_text(),
        };
        let answer = match self.target_of(r, doc, usize::MAX)? {
            Rendered::List(v) => v.first().cloned().unwrap_or_default(),
            Rendered::Text(s) => s,
            Rendered::Index(i) if c.doc_to_choice.is_some() => {
                let choices = self.choices_of(r, doc, usize::MAX)?;
                self.choice_at(&choices, i, "doc_to_target", usize::MAX)?
            }
            Rendered::Index(i) => i.to_string(),
        };
        Ok(format!(
            "{text}{}{answer}{}",
            c.target_delimiter, c.fewshot_delimiter
        ))
    }

    fn item(
        &self,
        r: &Renderer,
        doc_id: usize,
        doc: Value,
        shots: &[&Value],
    ) -> Result<Item, EvalError> {
        let c = &self.config;
        let mut prefix = r
            .template(&c.description, &doc)
            .map_err(|e| field_error(&self.origin, "description", doc_id, e))?;
        for s in shots {
            prefix.push_str(&self.shot(r, s)?);
        }
        let delim = &c.target_delimiter;
        let mut item = Item {
            doc_id,
            prompt: String::new(),
            requests: Vec::new(),
            choices: Vec::new(),
            gold: Vec::new(),
            target: Vec::new(),
            doc: Value::Null,
        };
        match c.output_type {
            OutputType::MultipleChoice => {
                let choices = self.choices_of(r, &doc, doc_id)?;
                if choices.is_empty() {
                    return Err(field_error(
                        &self.origin,
                        "doc_to_choice",
                        doc_id,
                        "no choices".into(),
                    ));
                }
                let text = self.text_of(r, &doc, doc_id)?;
                if let Rendered::Index(gold) = text {
                    // Choices are contexts; the continuation is shared (winogrande).
                    let cont = self.target_of(r, &doc, doc_id)?.to_text();
                    let g = self
                        .choice_at(&choices, gold, "doc_to_text", doc_id)
                        .map(|_| gold as usize)?;
                    item.gold = vec![g];
                    item.requests = choices
                        .iter()
                        .map(|ch| (format!("{prefix}{ch}"), format!("{delim}{cont}")))
                        .collect();
                    item.prompt = prefix;
                } else {
                    let prompt = format!("{prefix}{}", text.to_text());
                    item.gold = match self.target_of(r, &doc, doc_id)? {
                        Rendered::Index(i) => {
                            vec![self
                                .choice_at(&choices, i, "doc_to_target", doc_id)
                                .map(|_| i as usize)?]
                        }
                        Rendered::Text(s) => {
                            vec![choices.iter().position(|ch| *ch == s).ok_or_else(|| {
                                field_error(
                                    &self.origin,
                                    "doc_to_target",
                                    doc_id,
                                    format!("{s:?} is not one of the choices"),
                                )
                            })?]
                        }
                        Rendered::List(v) => v
                            .iter()
                            .map(|s| {
                                s.parse::<usize>()
                                    .ok()
                                    .filter(|&i| i < choices.len())
                                    .or_else(|| choices.iter().position(|ch| ch == s))
                                    .ok_or_else(|| {
                                        field_error(
                                            &self.origin,
                                            "doc_to_target",
                                            doc_id,
                                            format!("{s:?} is not one of the choices"),
                                        )
                                    })
                            })
                            .collect::<Result<_, _>>()?,
                    };
                    if self.hooks.mc2 {
                        item.gold = mc2_true(&doc)
                            .map_err(|e| field_error(&self.origin, "mc2_targets", doc_id, e))?;
                    }
                    item.requests = choices
                        .iter()
                        .map(|ch| (prompt.clone(), format!("{delim}{ch}")))
                        .collect();
                    item.prompt = prompt;
                }
                item.choices = choices;
            }
            OutputType::GenerateUntil | OutputType::Loglikelihood => {
                let text = self.text_of(r, &doc, doc_id)?.to_text();
                item.prompt = format!("{prefix}{text}");
                item.target = match self.target_of(r, &doc, doc_id)? {
                    Rendered::List(v) => v,
                    other => vec![other.to_text()],
                };
                if c.output_type == OutputType::Loglikelihood {
                    let cont = item.target.first().cloned().unwrap_or_default();
                    item.requests = vec![(item.prompt.clone(), cont)];
                }
            }
            OutputType::LoglikelihoodRolling => {
                item.target = vec![self.target_of(r, &doc, doc_id)?.to_text()];
            }
        }
        item.doc = doc;
        Ok(item)
    }
}

/// A task file's keys as JSON, with lm-eval's `include:` resolved: the included file
/// (relative to this one) first, this file's keys over it.
fn read_with_includes(path: &Path, text: &str, depth: usize) -> Result<Value, EvalError> {
    let bad = |message: String| EvalError::File {
        path: path.to_path_buf(),
        message,
    };
    let is_json = path.extension().is_some_and(|e| e == "json");
    let value: Value = if is_json {
        serde_json::from_str(text).map_err(|e| bad(e.to_string()))?
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| bad(e.to_string()))?
    };
    let Value::Object(mut map) = value else {
        return Err(bad("a task file must be a mapping of keys".into()));
    };
    let Some(include) = map.remove("include") else {
        return Ok(Value::Object(map));
    };
    let Some(rel) = include.as_str() else {
        return Err(bad("include: must be a file path".into()));
    };
    if depth >= 8 {
        return Err(bad("include: more than 8 levels (a cycle?)".into()));
    }
    let inc = path.parent().unwrap_or(Path::new(".")).join(rel);
    let inc_text = std::fs::read_to_string(&inc)
        .map_err(|e| bad(format!("include: {}: {e}", inc.display())))?;
    if inc_text.contains("!function") {
        return Err(bad(format!(
            "include: {} names Python code (`!function`)",
            inc.display()
        )));
    }
    let Value::Object(mut base) = read_with_includes(&inc, &inc_text, depth + 1)? else {
        return Err(bad(format!("include: {} is not a mapping", inc.display())));
    };
    base.extend(map);
    Ok(Value::Object(base))
}

/// TruthfulQA mc2's true answers: the choices before the first label 0.
fn mc2_true(doc: &Value) -> Result<Vec<usize>, String> {
    let labels = doc
        .pointer("/mc2_targets/labels")
        .and_then(Value::as_array)
        .ok_or("labels missing")?;
    let split = labels
        .iter()
        .position(|l| l.as_i64() == Some(0))
        .unwrap_or(labels.len());
    Ok((0..split).collect())
}

/// Where a configuration's data is: `dataset_kwargs.data_files` (relative to `base`), a
/// local folder, or a Hub dataset id located by `data_root`.
pub fn source_of(
    config: &TaskConfig,
    base: &Path,
    data_root: &DataRoot,
) -> Result<DataSource, String> {
    let files = config
        .dataset_kwargs
        .as_ref()
        .map(|k| &k.data_files)
        .filter(|f| !f.is_empty());
    if let Some(files) = files {
        let map = files
            .iter()
            .map(|(split, f)| {
                let paths = f
                    .to_vec()
                    .into_iter()
                    .map(|p| {
                        let p = PathBuf::from(p);
                        if p.is_absolute() {
                            p
                        } else {
                            base.join(p)
                        }
                    })
                    .collect();
                (split.clone(), paths)
            })
            .collect();
        return Ok(DataSource::Files(map));
    }
    let path = config
        .dataset_path
        .as_deref()
        .ok_or("dataset_path: missing (a folder, a Hub dataset id, or json with dataset_kwargs.data_files)")?;
    if matches!(path, "json" | "parquet" | "csv" | "text") {
        return Err(format!(
            "dataset_path: {path:?} needs dataset_kwargs.data_files"
        ));
    }
    let local = base.join(path);
    let root = if local.is_dir() {
        local
    } else {
        data_root(path, config.dataset_name.as_deref())
            .map_err(|e| format!("dataset_path {path:?}: {e}"))?
    };
    Ok(DataSource::Folder {
        root,
        config: config.dataset_name.clone(),
    })
}
