//! `huarizo leaderboard`: models ranked by their mean score over lm-evaluation-harness
//! results files, as Markdown and as one self-contained HTML page.
//!
//! The rules, which the page's notes repeat:
//! - **Columns** ("tasks" on the board): every group in no other group, and every task in
//!   no group. A group without a score of its own (an lm-eval group that does not
//!   aggregate) gives way to its members.
//! - **Scores** are on a 0–100 scale: a group's `normalized_aggregate_score`, else a task's
//!   `normalized_score` (BIG-bench's normalized scores, already 0–100), else the primary
//!   metric ×100, the first present of [`PRIMARY_METRICS`], else the first other metric.
//!   Lower-is-better metrics (perplexities, bits per byte) are shown as they are and left
//!   out of the mean.
//! - **Rows**: one per model. Files with the same `model_sha256` merge into one row (the
//!   union of their columns; where both score a column, the later file's value is kept and
//!   a note says so).
//! - **Rank**: by the mean over the columns every model has a score for, highest first;
//!   ties and models without a mean go by name.
//!
//! This module does no I/O: the caller reads the files and writes the pages.

use crate::EvalError;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The metrics a task's score is taken from, in order of preference (`metric,filter`).
pub const PRIMARY_METRICS: [&str; 8] = [
    "acc_norm,none",
    "acc,none",
    "exact_match,strict-match",
    "exact_match,flexible-extract",
    "exact_match,none",
    "multiple_choice_grade,none",
    "exact_str_match,none",
    "word_perplexity,none",
];

/// Metrics where lower is better, for files without a `higher_is_better` entry.
const LOWER_IS_BETTER: [&str; 4] = [
    "perplexity",
    "word_perplexity",
    "byte_perplexity",
    "bits_per_byte",
];

/// One model's score in one column.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// The value shown: 0–100 where higher is better, the metric as it is otherwise.
    pub value: f64,
    /// Where the value comes from: `normalized_aggregate_score`, `acc_norm ×100`, …
    pub metric: String,
    /// Whether higher is better (only such columns count towards the mean).
    pub higher_is_better: bool,
    /// Items scored (n-samples' `effective`, summed over a group's tasks), if known.
    pub items: Option<u64>,
}

/// A results file behind a row.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceFile {
    /// The file as given.
    pub path: PathBuf,
    /// `config.limit`: at most this many items per task (a fraction below 1 is a share of
    /// each task, as in lm-eval).
    pub limit: Option<f64>,
    /// Items scored over all tasks of the file (n-samples' `effective`).
    pub items: u64,
    /// Tasks with an item count.
    pub tasks: usize,
}

/// One model as the results files describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// `config.model_name` (the file name of a GGUF path), else the top-level
    /// `model_name`, else the `pretrained=` part of `config.model_args` (or all of it),
    /// else the results file's name.
    pub model: String,
    /// `config.model_sha256`, if the file has one.
    pub sha256: Option<String>,
    /// Weights (`config.model_info.params`).
    pub params: Option<u64>,
    /// Size of the model file (`config.model_info.bytes`).
    pub bytes: Option<u64>,
    /// Storage types by share of weights (`config.model_info.types`), dominant first.
    pub types: Vec<(String, u64)>,
    /// The file's quantization as its `general.file_type` names it (`Q4_K_M`), if given.
    pub file_type: Option<String>,
    /// Column name to score.
    pub scores: BTreeMap<String, Score>,
    /// The files read (more than one after a merge).
    pub files: Vec<SourceFile>,
}

/// A column of the board.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// Task or group name.
    pub name: String,
    /// The metrics its scores come from (one, unless the files differ).
    pub metrics: Vec<String>,
    /// Whether higher is better for every model's score.
    pub higher_is_better: bool,
    /// Models without a score here.
    pub missing: Vec<String>,
}

impl Column {
    /// Whether the column counts towards the mean: every model has it, higher is better.
    pub fn in_mean(&self) -> bool {
        self.higher_is_better && self.missing.is_empty()
    }
}

/// A ranked model.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// 1 for the best; none without a mean.
    pub rank: Option<usize>,
    /// Mean over the columns in the mean (none if there are no such columns).
    pub mean: Option<f64>,
    /// The model and its scores.
    pub entry: Entry,
}

/// Models ranked by mean score.
#[derive(Clone, Debug, PartialEq)]
pub struct Leaderboard {
    /// The page's title.
    pub title: String,
    /// Columns: those in the mean first, then those some model lacks, then lower-is-better
    /// ones; by name within each.
    pub columns: Vec<Column>,
    /// Models, best first.
    pub rows: Vec<Row>,
    /// What merging files of the same model did.
    pub merges: Vec<String>,
}

/// The parts of a results file the board reads.
struct Doc<'a> {
    results: &'a Map<String, Value>,
    groups: Option<&'a Map<String, Value>>,
    subtasks: BTreeMap<&'a str, Vec<&'a str>>,
    higher: Option<&'a Map<String, Value>>,
    n_samples: Option<&'a Map<String, Value>>,
}

/// `root[key]` as an object: `None` if absent or null, an error naming the field if it is
/// something else.
fn object<'a>(root: &'a Value, key: &str) -> Result<Option<&'a Map<String, Value>>, String> {
    match root.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("`{key}` is not an object")),
    }
}

/// Whether a results key is a metric (`name,filter`, not a standard error).
fn is_metric_key(key: &str) -> bool {
    key.split_once(',')
        .is_some_and(|(m, _)| !m.ends_with("_stderr"))
}

/// `acc_norm,none` → `acc_norm`; `exact_match,strict-match` → `exact_match (strict-match)`.
fn metric_label(key: &str) -> String {
    match key.split_once(',') {
        Some((m, "none")) => m.to_string(),
        Some((m, f)) => format!("{m} ({f})"),
        None => key.to_string(),
    }
}

impl<'a> Doc<'a> {
    fn new(root: &'a Value) -> Result<Doc<'a>, String> {
        if !root.is_object() {
            return Err("not a JSON object (not an lm-eval results file?)".into());
        }
        let results =
            object(root, "results")?.ok_or("no `results` object (not an lm-eval results file?)")?;
        if let Some((name, _)) = results.iter().find(|(_, v)| !v.is_object()) {
            return Err(format!("`results.{name}` is not an object"));
        }
        let mut subtasks = BTreeMap::new();
        for (group, members) in object(root, "group_subtasks")?.into_iter().flatten() {
            let list = members
                .as_array()
                .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
                .ok_or_else(|| format!("`group_subtasks.{group}` is not a list of task names"))?;
            subtasks.insert(group.as_str(), list);
        }
        Ok(Doc {
            results,
            groups: object(root, "groups")?,
            subtasks,
            higher: object(root, "higher_is_better")?,
            n_samples: object(root, "n-samples")?,
        })
    }

    fn members(&self, name: &str) -> &[&'a str] {
        self.subtasks.get(name).map_or(&[], Vec::as_slice)
    }

    fn is_group(&self, name: &str) -> bool {
        !self.members(name).is_empty() || self.groups.is_some_and(|g| g.contains_key(name))
    }

    /// Groups in no other group, and tasks in no group.
    fn top_level(&self) -> BTreeSet<&'a str> {
        let members: BTreeSet<&str> = self.subtasks.values().flatten().copied().collect();
        let groups = self.groups.into_iter().flat_map(|g| g.keys());
        self.results
            .keys()
            .chain(groups)
            .map(String::as_str)
            .chain(self.subtasks.keys().copied())
            .filter(|n| !members.contains(n))
            .collect()
    }

    /// The columns `name` gives: itself if it has a score, else (a group) its members'.
    /// Each name is looked at once (`seen`), so cyclic or repeated members are harmless.
    fn columns(
        &self,
        name: &'a str,
        seen: &mut BTreeSet<&'a str>,
        out: &mut BTreeMap<String, Score>,
    ) {
        if !seen.insert(name) {
            return;
        }
        if let Some(s) = self.score(name) {
            out.insert(name.to_string(), s);
        } else if self.is_group(name) {
            for m in self.members(name) {
                self.columns(m, seen, out);
            }
        }
    }

    /// The score of a task or group, from its `groups` entry or else its `results` entry.
    fn score(&self, name: &'a str) -> Option<Score> {
        let from_groups = self.groups.and_then(|g| g.get(name));
        [from_groups, self.results.get(name)]
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .find_map(|o| self.score_of(name, o))
    }

    fn score_of(&self, name: &'a str, entry: &Map<String, Value>) -> Option<Score> {
        let number = |k: &str| entry.get(k).and_then(Value::as_f64);
        for key in ["normalized_aggregate_score,none", "normalized_score,none"] {
            if let Some(value) = number(key) {
                return Some(Score {
                    value,
                    metric: metric_label(key),
                    higher_is_better: true,
                    items: self.items(name, &mut BTreeSet::new()),
                });
            }
        }
        let key = PRIMARY_METRICS
            .iter()
            .copied()
            .find(|k| number(k).is_some())
            .or_else(|| {
                entry
                    .iter()
                    .find(|(k, v)| is_metric_key(k) && v.is_number())
                    .map(|(k, _)| k.as_str())
            })?;
        let raw = number(key)?;
        let higher_is_better = self.higher_is_better(name, key);
        let (value, metric) = if higher_is_better {
            (raw * 100.0, format!("{} ×100", metric_label(key)))
        } else {
            (raw, metric_label(key))
        };
        Some(Score {
            value,
            metric,
            higher_is_better,
            items: self.items(name, &mut BTreeSet::new()),
        })
    }

    /// `higher_is_better[task][metric]`, else whether the metric is a known lower-is-better
    /// one.
    fn higher_is_better(&self, name: &str, key: &str) -> bool {
        let metric = key.split(',').next().unwrap_or(key);
        self.higher
            .and_then(|h| h.get(name))
            .and_then(|t| t.get(metric))
            .and_then(Value::as_bool)
            .unwrap_or(!LOWER_IS_BETTER.contains(&metric))
    }

    /// Items scored in a task, or summed over a group's tasks (each task counted once).
    fn items(&self, name: &'a str, seen: &mut BTreeSet<&'a str>) -> Option<u64> {
        if !seen.insert(name) {
            return None;
        }
        let own = self
            .n_samples
            .and_then(|n| n.get(name))
            .and_then(|s| s.get("effective"))
            .and_then(Value::as_u64);
        if own.is_some() {
            return own;
        }
        self.members(name)
            .iter()
            .filter_map(|m| self.items(m, seen))
            .reduce(|a, b| a + b)
    }
}

/// The model's name: see [`Entry::model`].
fn model_name(root: &Value, path: &Path) -> String {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let config = root.get("config");
    let pretrained = |args: &str| {
        args.split(',')
            .find_map(|kv| kv.trim().strip_prefix("pretrained="))
            .map(str::to_string)
            .unwrap_or_else(|| args.to_string())
    };
    let args = config.and_then(|c| c.get("model_args"));
    text(config.and_then(|c| c.get("model_name")))
        .map(|n| gguf_file_name(&n))
        .or_else(|| text(root.get("model_name")))
        .or_else(|| text(args).map(|a| pretrained(&a)))
        .or_else(|| text(args.and_then(|a| a.get("pretrained"))))
        .unwrap_or_else(|| {
            path.file_stem()
                .unwrap_or(path.as_os_str())
                .to_string_lossy()
                .into_owned()
        })
}

/// A path to a GGUF file (`huarizo eval -m /models/x.gguf`) → its file name; any other
/// name (an alias, `hf:owner/repo:file`) as it is.
fn gguf_file_name(name: &str) -> String {
    let path = Path::new(name);
    let is_path = !name.starts_with("hf:") && path.components().count() > 1;
    let is_gguf = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    match path.file_name() {
        Some(file) if is_path && is_gguf => file.to_string_lossy().into_owned(),
        _ => name.to_string(),
    }
}

/// `config.model_info.types`: `[[type, weights], …]`, entries of other shapes skipped.
fn storage_types(info: Option<&Value>) -> Vec<(String, u64)> {
    let Some(list) = info.and_then(|i| i.get("types")).and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|t| Some((t.get(0)?.as_str()?.to_string(), t.get(1)?.as_u64()?)))
        .collect()
}

impl Entry {
    /// Reads one results file's text; `path` names it in errors and notes.
    ///
    /// # Errors
    /// [`EvalError::File`] naming the file and the field if the text is not JSON, has no
    /// `results` object or no numeric metric in it, or one of `results`, `groups`,
    /// `group_subtasks`, `higher_is_better` and `n-samples` has the wrong shape.
    pub fn parse(path: &Path, text: &str) -> Result<Entry, EvalError> {
        let fail = |message: String| EvalError::File {
            path: path.to_path_buf(),
            message,
        };
        let root: Value =
            serde_json::from_str(text).map_err(|e| fail(format!("not valid JSON: {e}")))?;
        let doc = Doc::new(&root).map_err(fail)?;
        let mut scores = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for name in doc.top_level() {
            doc.columns(name, &mut seen, &mut scores);
        }
        if scores.is_empty() {
            return Err(fail("`results` holds no numeric metric".into()));
        }
        let config = root.get("config");
        let info = config.and_then(|c| c.get("model_info"));
        let info_number = |k: &str| info.and_then(|i| i.get(k)).and_then(Value::as_u64);
        let samples = doc.n_samples.into_iter().flatten();
        let counts: Vec<u64> = samples
            .filter_map(|(_, s)| s.get("effective").and_then(Value::as_u64))
            .collect();
        Ok(Entry {
            model: model_name(&root, path),
            sha256: config
                .and_then(|c| c.get("model_sha256"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            params: info_number("params"),
            bytes: info_number("bytes"),
            types: storage_types(info),
            file_type: info
                .and_then(|i| i.get("file_type"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && *s != "?")
                .map(str::to_string),
            scores,
            files: vec![SourceFile {
                path: path.to_path_buf(),
                limit: config.and_then(|c| c.get("limit")).and_then(Value::as_f64),
                items: counts.iter().sum(),
                tasks: counts.len(),
            }],
        })
    }

    /// The quantization: the file type the GGUF declares, else the storage type of most
    /// weights, if known.
    pub fn quantization(&self) -> Option<&str> {
        self.file_type
            .as_deref()
            .or_else(|| self.types.first().map(|(t, _)| t.as_str()))
    }

    /// The first 12 hex digits of the sha256, if known.
    pub fn sha256_short(&self) -> Option<&str> {
        self.sha256.as_deref().map(|s| s.get(..12).unwrap_or(s))
    }

    /// Takes in a later file of the same model: its columns replace this one's. Returns a
    /// note per column whose value changed.
    fn absorb(&mut self, later: Entry) -> Vec<String> {
        let mut notes = Vec::new();
        let file = later
            .files
            .first()
            .map(|f| f.path.display().to_string())
            .unwrap_or_default();
        for (column, score) in later.scores {
            if let Some(old) = self.scores.get(&column) {
                if old.value != score.value {
                    notes.push(format!(
                        "{}: {column} is {:.2} from {file} (an earlier file had {:.2}).",
                        self.model, score.value, old.value
                    ));
                }
            }
            self.scores.insert(column, score);
        }
        self.params = self.params.or(later.params);
        self.bytes = self.bytes.or(later.bytes);
        if self.types.is_empty() {
            self.types = later.types;
        }
        self.files.extend(later.files);
        notes
    }
}

/// Merges entries with the same sha256, in order; returns the merged entries and notes.
fn merge(entries: Vec<Entry>) -> (Vec<Entry>, Vec<String>) {
    let mut out: Vec<Entry> = Vec::new();
    let mut notes = Vec::new();
    for e in entries {
        let same = out
            .iter_mut()
            .find(|p| p.sha256.is_some() && p.sha256 == e.sha256);
        match same {
            Some(prev) => notes.extend(prev.absorb(e)),
            None => out.push(e),
        }
    }
    let mut merged: Vec<String> = out
        .iter()
        .filter(|e| e.files.len() > 1)
        .map(|e| {
            let files: Vec<String> = e
                .files
                .iter()
                .map(|f| f.path.display().to_string())
                .collect();
            format!(
                "{}: {} merged (same sha256; a later file's value wins).",
                e.model,
                files.join(", ")
            )
        })
        .collect();
    merged.extend(notes);
    (out, merged)
}

/// The columns of the board, in display order.
fn columns(entries: &[Entry]) -> Vec<Column> {
    let names: BTreeSet<&String> = entries.iter().flat_map(|e| e.scores.keys()).collect();
    let mut columns: Vec<Column> = names
        .into_iter()
        .map(|name| {
            let scores: Vec<&Score> = entries.iter().filter_map(|e| e.scores.get(name)).collect();
            let mut metrics: Vec<String> = Vec::new();
            for s in &scores {
                if !metrics.contains(&s.metric) {
                    metrics.push(s.metric.clone());
                }
            }
            Column {
                name: name.clone(),
                metrics,
                higher_is_better: scores.iter().all(|s| s.higher_is_better),
                missing: entries
                    .iter()
                    .filter(|e| !e.scores.contains_key(name))
                    .map(|e| e.model.clone())
                    .collect(),
            }
        })
        .collect();
    columns.sort_by_key(|c| (!c.in_mean(), !c.higher_is_better));
    columns
}

impl Leaderboard {
    /// Ranks the models of `entries` (one per results file, in the order given).
    pub fn new(title: &str, entries: Vec<Entry>) -> Leaderboard {
        let (entries, merges) = merge(entries);
        let columns = columns(&entries);
        let in_mean: Vec<&str> = columns
            .iter()
            .filter(|c| c.in_mean())
            .map(|c| c.name.as_str())
            .collect();
        let mut rows: Vec<Row> = entries
            .into_iter()
            .map(|entry| {
                let values: Vec<f64> = in_mean
                    .iter()
                    .filter_map(|c| entry.scores.get(*c).map(|s| s.value))
                    .collect();
                let mean =
                    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
                Row {
                    rank: None,
                    mean,
                    entry,
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            let by_mean = match (a.mean, b.mean) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (x, y) => y.is_some().cmp(&x.is_some()),
            };
            by_mean.then_with(|| a.entry.model.cmp(&b.entry.model))
        });
        for (i, r) in rows.iter_mut().enumerate() {
            r.rank = r.mean.map(|_| i + 1);
        }
        Leaderboard {
            title: title.to_string(),
            columns,
            rows,
            merges,
        }
    }

    /// The notes below the table: how the mean is taken, merges.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let in_mean: Vec<&str> = self
            .columns
            .iter()
            .filter(|c| c.in_mean())
            .map(|c| c.name.as_str())
            .collect();
        if in_mean.is_empty() {
            notes.push("No task has a score for every model, so there is no mean; models are listed by name.".into());
        } else {
            notes.push(format!(
                "Mean: the mean over the {} {} every model has a score for ({}). Ranked by mean, ties by name.",
                in_mean.len(),
                if in_mean.len() == 1 { "task" } else { "tasks" },
                in_mean.join(", ")
            ));
        }
        for c in self.columns.iter().filter(|c| !c.in_mean()) {
            let mut why = Vec::new();
            if !c.higher_is_better {
                why.push(format!("{}: lower is better", c.metrics.join(" or ")));
            }
            if !c.missing.is_empty() {
                why.push(format!("no score for {}", c.missing.join(", ")));
            }
            notes.push(format!("Not in the mean: {} ({}).", c.name, why.join("; ")));
        }
        notes.extend(self.merges.iter().cloned());
        notes
    }

    /// Per column: name and where its scores come from.
    pub fn metric_notes(&self) -> Vec<String> {
        self.columns
            .iter()
            .map(|c| {
                let scale = if c.higher_is_better {
                    "0–100"
                } else {
                    "as measured, lower is better"
                };
                format!("{}: {} ({scale}).", c.name, c.metrics.join(" or "))
            })
            .collect()
    }

    /// Per file: the model, its sha256, items scored and the item limit.
    pub fn file_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for row in &self.rows {
            let e = &row.entry;
            for f in &e.files {
                let mut s = format!("{}: {}", f.path.display(), e.model);
                if let Some(sha) = e.sha256_short() {
                    let _ = write!(s, " (sha256 {sha}…)");
                }
                if let Some(b) = e.bytes {
                    let _ = write!(s, ", {}", human_bytes(b));
                }
                if f.tasks > 0 {
                    let _ = write!(s, ", {} items in {} tasks", thousands(f.items), f.tasks);
                }
                match f.limit {
                    Some(l) if l > 0.0 && l < 1.0 => {
                        let _ = write!(s, ", limited to {:.0}% of each task", l * 100.0);
                    }
                    Some(l) if l >= 1.0 => {
                        let _ = write!(s, ", limited to {l:.0} items per task");
                    }
                    _ => {}
                }
                s.push('.');
                notes.push(s);
            }
        }
        notes
    }

    /// The board as Markdown: title, table, notes, metrics and files.
    pub fn markdown(&self) -> String {
        let mut s = format!("# {}\n\n", md_cell(&self.title));
        s.push_str("| Rank | Model | Params | Quantization | Mean |");
        for c in &self.columns {
            let _ = write!(s, " {} |", md_cell(&c.name));
        }
        s.push_str("\n|---:|---|---:|---|---:|");
        s.push_str(&"---:|".repeat(self.columns.len()));
        s.push('\n');
        for row in &self.rows {
            let e = &row.entry;
            let _ = write!(
                s,
                "| {} | {} | {} | {} | {} |",
                row.rank.map_or("–".into(), |r| r.to_string()),
                md_cell(&e.model),
                e.params.map_or("–".into(), human_count),
                md_cell(e.quantization().unwrap_or("–")),
                fixed(row.mean)
            );
            for c in &self.columns {
                let _ = write!(s, " {} |", fixed(e.scores.get(&c.name).map(|x| x.value)));
            }
            s.push('\n');
        }
        for (heading, items) in [
            ("Notes", self.notes()),
            ("Metrics", self.metric_notes()),
            ("Files", self.file_notes()),
        ] {
            let _ = write!(s, "\n## {heading}\n\n");
            for n in items {
                let _ = writeln!(s, "- {}", md_line(&n));
            }
        }
        s
    }

    /// The board as one self-contained HTML page: the table (sortable by any header),
    /// one bar chart per column, the notes. No external resources; all text from the
    /// files is escaped.
    pub fn html(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{}</title><style>{STYLE}</style></head><body>"#,
            esc(&self.title)
        );
        let _ = write!(s, "<h1>{}</h1>", esc(&self.title));
        let n_mean = self.columns.iter().filter(|c| c.in_mean()).count();
        let mean = match n_mean {
            0 => "no mean".to_string(),
            n => format!("mean over {}", plural(n, "task")),
        };
        let _ = write!(
            s,
            r#"<p class="sub">{} · {} · {mean}</p>"#,
            plural(self.rows.len(), "model"),
            plural(self.columns.len(), "task"),
        );
        s.push_str(&self.html_table());
        s.push_str(r#"<p class="hint">Click a column header to sort.</p><ul class="notes">"#);
        for n in self.notes() {
            let _ = write!(s, "<li>{}</li>", esc(&n));
        }
        s.push_str("</ul><h2>Per task</h2><div class=\"charts\">");
        for c in &self.columns {
            s.push_str(&self.chart(c));
        }
        s.push_str("</div>");
        for (heading, items) in [
            ("Metrics", self.metric_notes()),
            ("Files", self.file_notes()),
        ] {
            let _ = write!(s, "<h2>{heading}</h2><ul class=\"notes\">");
            for n in items {
                let _ = write!(s, "<li>{}</li>", esc(&n));
            }
            s.push_str("</ul>");
        }
        let _ = writeln!(s, "<script>{SCRIPT}</script></body></html>");
        s
    }

    fn html_table(&self) -> String {
        let mut s = String::from(r#"<div class="wrap"><table id="board"><thead><tr>"#);
        let header = |s: &mut String, label: &str, kind: &str, first: &str, title: &str| {
            let _ = write!(
                s,
                r#"<th data-type="{kind}" data-first="{first}" title="{}" tabindex="0">{}</th>"#,
                esc(title),
                esc(label)
            );
        };
        header(&mut s, "Rank", "num", "asc", "rank by mean");
        header(&mut s, "Model", "text", "asc", "model name");
        header(&mut s, "Params", "num", "desc", "weights");
        header(
            &mut s,
            "Quantization",
            "text",
            "asc",
            "dominant storage type",
        );
        header(
            &mut s,
            "Mean",
            "num",
            "desc",
            "mean over the tasks every model has",
        );
        for c in &self.columns {
            let (first, scale) = if c.higher_is_better {
                ("desc", "0–100")
            } else {
                ("asc", "lower is better")
            };
            let mut title = format!("{} ({scale})", c.metrics.join(" or "));
            if !c.in_mean() {
                title.push_str("; not in the mean");
            }
            header(&mut s, &c.name, "num", first, &title);
        }
        s.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            s.push_str(&self.html_row(row));
        }
        s.push_str("</tbody></table></div>");
        s
    }

    fn html_row(&self, row: &Row) -> String {
        let e = &row.entry;
        let mut s = String::from("<tr>");
        let _ = write!(
            s,
            r#"<td class="num" data-v="{}">{}</td>"#,
            row.rank.map(|r| r.to_string()).unwrap_or_default(),
            row.rank.map_or("–".into(), |r| r.to_string())
        );
        let sha = e
            .sha256
            .as_deref()
            .map(|full| format!(" title=\"sha256 {}\"", esc(full)))
            .unwrap_or_default();
        let _ = write!(
            s,
            r#"<td class="model" data-v="{0}"{sha}><span class="name">{0}</span>{1}</td>"#,
            esc(&e.model),
            e.sha256_short()
                .map(|h| format!(r#"<span class="sha">{}</span>"#, esc(h)))
                .unwrap_or_default()
        );
        let params_title = match (e.params, e.bytes) {
            (Some(p), Some(b)) => format!("{} weights, {} file", thousands(p), human_bytes(b)),
            (Some(p), None) => format!("{} weights", thousands(p)),
            (None, Some(b)) => format!("{} file", human_bytes(b)),
            (None, None) => String::new(),
        };
        let _ = write!(
            s,
            r#"<td class="num" data-v="{}" title="{}">{}</td>"#,
            e.params.map(|p| p.to_string()).unwrap_or_default(),
            esc(&params_title),
            e.params.map_or("–".into(), human_count)
        );
        let _ = write!(
            s,
            r#"<td data-v="{0}" title="{1}">{2}</td>"#,
            esc(e.quantization().unwrap_or("")),
            esc(&type_mix(&e.types)),
            esc(e.quantization().unwrap_or("–"))
        );
        let _ = write!(
            s,
            r#"<td class="num mean" data-v="{}">{}</td>"#,
            row.mean.map(|m| m.to_string()).unwrap_or_default(),
            fixed(row.mean)
        );
        for c in &self.columns {
            s.push_str(&score_cell(e.scores.get(&c.name)));
        }
        s.push_str("</tr>");
        s
    }

    /// A horizontal bar chart of one column: one bar per model, in rank order.
    fn chart(&self, column: &Column) -> String {
        let values: Vec<Option<f64>> = self
            .rows
            .iter()
            .map(|r| r.entry.scores.get(&column.name).map(|s| s.value))
            .collect();
        let top = if column.higher_is_better {
            100.0
        } else {
            4.0 * nice_ceiling(values.iter().flatten().fold(0.0, |a: f64, &b| a.max(b)) / 4.0)
        };
        let (w, label_w, right, row_h, top_pad) = (460.0, 170.0, 48.0, 24.0, 8.0);
        let plot_w = w - label_w - right;
        let h = top_pad + row_h * values.len() as f64 + 22.0;
        let x = |v: f64| label_w + plot_w * (v.clamp(0.0, top) / top);
        let mut svg = format!(
            r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{}">"#,
            esc(&column.name)
        );
        let axis_y = top_pad + row_h * values.len() as f64;
        for i in 0..=4 {
            let t = top * i as f64 / 4.0;
            let _ = write!(
                svg,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{top_pad}" y2="{axis_y}" stroke="#e3e6ea"/><text x="{0:.1}" y="{1:.1}" class="tick">{2}</text>"##,
                x(t),
                axis_y + 16.0,
                tick(t)
            );
        }
        for (i, (row, v)) in self.rows.iter().zip(&values).enumerate() {
            let y = top_pad + row_h * i as f64;
            let name = &row.entry.model;
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" class="label"><title>{}</title>{}</text>"#,
                label_w - 8.0,
                y + row_h / 2.0 + 4.0,
                esc(name),
                esc(&truncate(name, 22))
            );
            match v {
                Some(v) => {
                    let _ = write!(
                        svg,
                        r#"<rect x="{label_w}" y="{:.1}" width="{:.1}" height="{:.1}" rx="2" fill="{}"><title>{}: {:.2}</title></rect><text x="{:.1}" y="{:.1}" class="value">{:.2}</text>"#,
                        y + 4.0,
                        (x(*v) - label_w).max(0.5),
                        row_h - 8.0,
                        PALETTE[i % PALETTE.len()],
                        esc(name),
                        v,
                        x(*v) + 4.0,
                        y + row_h / 2.0 + 4.0,
                        v
                    );
                }
                None => {
                    let _ = write!(
                        svg,
                        r#"<text x="{:.1}" y="{:.1}" class="value none">no score</text>"#,
                        label_w + 4.0,
                        y + row_h / 2.0 + 4.0
                    );
                }
            }
        }
        svg.push_str("</svg>");
        let scale = if column.higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        };
        format!(
            r#"<figure class="chart"><figcaption><b>{}</b><span>{} · {scale}</span></figcaption>{svg}</figure>"#,
            esc(&column.name),
            esc(&column.metrics.join(" or "))
        )
    }
}

/// One score cell: the value over a bar of its share of 100 (higher-is-better scores).
fn score_cell(score: Option<&Score>) -> String {
    let Some(s) = score else {
        return r#"<td class="num missing" data-v="" title="no score">–</td>"#.into();
    };
    let mut title = s.metric.clone();
    if let Some(n) = s.items {
        let _ = write!(title, ", {} items", thousands(n));
    }
    let bar = if s.higher_is_better {
        format!(r#" style="--p:{:.1}%""#, s.value.clamp(0.0, 100.0))
    } else {
        String::new()
    };
    let class = if s.higher_is_better { "num bar" } else { "num" };
    format!(
        r#"<td class="{class}"{bar} data-v="{}" title="{}">{:.2}</td>"#,
        s.value,
        esc(&title),
        s.value
    )
}

/// Bar colours, by rank.
const PALETTE: [&str; 8] = [
    "#2f6fb0", "#e07b39", "#3a9a5b", "#c4455a", "#7b5ea7", "#8c6d46", "#d16ba5", "#5f7d8c",
];

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1180px;margin:28px auto;padding:0 20px;color:#1f2328;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e3e6ea;padding-bottom:4px}
.sub{color:#59636e;margin:0 0 16px}.hint{color:#8a939c;font-size:12px;margin:4px 0}
.wrap{overflow-x:auto}
table{border-collapse:collapse;font-size:14px;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;border-bottom:1px solid #e3e6ea;text-align:left;white-space:nowrap}
th{background:#f6f8fa;font-weight:600;cursor:pointer;user-select:none;border-bottom:2px solid #d0d7de;position:relative}
th:hover{background:#eaeef2}th[aria-sort=ascending]::after{content:' ▲';font-size:10px}th[aria-sort=descending]::after{content:' ▼';font-size:10px}
td.num{text-align:right}tbody tr:hover{background:#f6f8fa}
td.model .name{font-weight:600}td.model .sha{display:block;color:#8a939c;font:11px ui-monospace,monospace}
td.mean{font-weight:700;background:#eef4fb}
td.bar{background-image:linear-gradient(#8fb6de,#8fb6de);background-repeat:no-repeat;background-size:var(--p) 3px;background-position:0 calc(100% - 2px)}
td.missing{color:#b0b7be}
ul.notes{color:#3d444d;font-size:13px;padding-left:20px;line-height:1.5}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(470px,1fr));gap:14px}
figure.chart{margin:0;padding:10px 12px;border:1px solid #e3e6ea;border-radius:8px}
figcaption{font-size:14px;margin-bottom:4px}figcaption b{display:block}figcaption span{color:#59636e;font-size:12px}
svg{max-width:100%;height:auto;font-family:inherit}
svg .label{font-size:12px;text-anchor:end;fill:#1f2328}svg .value{font-size:11px;fill:#3d444d}svg .none{fill:#b0b7be;font-style:italic}
svg .tick{font-size:10px;text-anchor:middle;fill:#8a939c}";

const SCRIPT: &str = "(function(){var t=document.getElementById('board');var b=t.tBodies[0];
var hs=t.tHead.rows[0].cells;
function sort(i){var h=hs[i];var num=h.dataset.type==='num';
var dir=h.getAttribute('aria-sort')==='ascending'?'desc':h.getAttribute('aria-sort')==='descending'?'asc':h.dataset.first;
for(var k=0;k<hs.length;k++)hs[k].removeAttribute('aria-sort');
h.setAttribute('aria-sort',dir==='asc'?'ascending':'descending');
var rows=Array.prototype.slice.call(b.rows);
rows.sort(function(a,c){var x=a.cells[i].dataset.v,y=c.cells[i].dataset.v;
if(x===''||y==='')return (x==='')-(y==='');
var d=num?parseFloat(x)-parseFloat(y):x.localeCompare(y);return dir==='asc'?d:-d;});
rows.forEach(function(r){b.appendChild(r);});}
for(var i=0;i<hs.length;i++)(function(i){hs[i].addEventListener('click',function(){sort(i);});
hs[i].addEventListener('keydown',function(e){if(e.key==='Enter'||e.key===' '){e.preventDefault();sort(i);}});})(i);})();";

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Text for a Markdown table cell: no pipes or line breaks to break the row.
fn md_cell(s: &str) -> String {
    md_line(s).replace('|', "\\|")
}

/// Text on one Markdown line.
fn md_line(s: &str) -> String {
    s.split(['\n', '\r']).collect::<Vec<_>>().join(" ")
}

/// A value with 2 decimals, or `–`.
fn fixed(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2}"))
}

/// `134515008` → `135M`, `1543714304` → `1.54B` (3 significant digits).
fn human_count(n: u64) -> String {
    scaled(n, &["", "K", "M", "B", "T"])
}

/// `270000000` → `270 MB`.
fn human_bytes(n: u64) -> String {
    scaled(n, &[" B", " kB", " MB", " GB", " TB"])
}

/// `n` in steps of 1000 with 3 significant digits, and its unit.
fn scaled(n: u64, units: &[&str]) -> String {
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 999.5 && unit + 1 < units.len() {
        v /= 1000.0;
        unit += 1;
    }
    let digits = if unit == 0 || v >= 99.95 {
        0
    } else if v >= 9.995 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{}", units[unit])
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `Q8_0 96.1%, F32 3.9%`.
fn type_mix(types: &[(String, u64)]) -> String {
    let total: u64 = types.iter().map(|(_, n)| n).sum();
    types
        .iter()
        .map(|(t, n)| format!("{t} {:.1}%", 100.0 * *n as f64 / total.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The smallest 1, 2, 2.5 or 5 × 10ᵏ at or above `v` (1 for `v` ≤ 0).
fn nice_ceiling(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// An axis label: at most 3 decimals, trailing zeros dropped.
fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// At most `n` characters, with `…` if cut.
fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// huarizo's shape: BIG-bench Lite with a composite task (a group in a group), an
    /// lm-eval-style task with acc and acc_norm, a perplexity task, a limit.
    const SMOLLM2: &str = r#"{
      "results": {
        "bigbench:emoji_movie": {"alias": "bigbench:emoji_movie", "normalized_score,none": 12.5,
          "multiple_choice_grade,none": 0.3, "multiple_choice_grade_stderr,none": 0.05},
        "bigbench:logical_deduction:three_objects": {"alias": "x", "normalized_score,none": 10.0,
          "multiple_choice_grade,none": 0.4, "multiple_choice_grade_stderr,none": "N/A"},
        "bigbench:logical_deduction:five_objects": {"alias": "y", "normalized_score,none": 12.0,
          "multiple_choice_grade,none": 0.3, "multiple_choice_grade_stderr,none": "N/A"},
        "arc_easy": {"alias": "arc_easy", "acc,none": 0.6, "acc_stderr,none": 0.01,
          "acc_norm,none": 0.55, "acc_norm_stderr,none": 0.01},
        "wikitext": {"alias": "wikitext", "word_perplexity,none": 30.0,
          "byte_perplexity,none": 1.8, "bits_per_byte,none": 0.85}
      },
      "groups": {
        "bigbench:logical_deduction": {"alias": "bigbench:logical_deduction",
          "multiple_choice_grade,none": 0.35, "normalized_aggregate_score,none": 11.0, "n_tasks": 2},
        "bigbench-lite": {"alias": "bigbench-lite", "multiple_choice_grade,none": 0.325,
          "normalized_aggregate_score,none": 11.75, "n_tasks": 2}
      },
      "group_subtasks": {
        "bigbench:logical_deduction": ["bigbench:logical_deduction:three_objects",
          "bigbench:logical_deduction:five_objects"],
        "bigbench-lite": ["bigbench:emoji_movie", "bigbench:logical_deduction"]
      },
      "higher_is_better": {
        "arc_easy": {"acc": true, "acc_norm": true},
        "wikitext": {"word_perplexity": false, "byte_perplexity": false, "bits_per_byte": false}
      },
      "n-samples": {
        "bigbench:emoji_movie": {"original": 100, "effective": 50},
        "bigbench:logical_deduction:three_objects": {"original": 300, "effective": 50},
        "bigbench:logical_deduction:five_objects": {"original": 500, "effective": 50},
        "arc_easy": {"original": 2376, "effective": 50},
        "wikitext": {"original": 62, "effective": 62}
      },
      "config": {"model": "huarizo", "model_args": "pretrained=/m/smollm2.gguf",
        "model_name": "smollm2-135m",
        "model_sha256": "aaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "model_info": {"architecture": "llama", "name": "SmolLM2", "params": 134515008,
          "bytes": 144811840, "types": [["Q8_0", 134000000], ["F32", 515008]],
          "n_layer": 30, "n_embd": 576},
        "limit": 50},
      "total_evaluation_time_seconds": "12.50"
    }"#;

    /// lm-eval's own shape: no model_name or model_info, empty group_subtasks lists, no
    /// higher_is_better for the perplexity task.
    const PYTHIA: &str = r#"{
      "results": {
        "arc_easy": {"alias": "arc_easy", "acc,none": 0.5, "acc_stderr,none": 0.01,
          "acc_norm,none": 0.45, "acc_norm_stderr,none": 0.01},
        "wikitext": {"alias": "wikitext", "word_perplexity,none": 20.0,
          "word_perplexity_stderr,none": "N/A", "bits_per_byte,none": 0.7}
      },
      "group_subtasks": {"arc_easy": [], "wikitext": []},
      "n-samples": {"arc_easy": {"original": 2376, "effective": 2376},
        "wikitext": {"original": 62, "effective": 62}},
      "config": {"model": "hf", "model_args": "pretrained=EleutherAI/pythia-160m,dtype=float32",
        "limit": null}
    }"#;

    /// huarizo, without a normalized score for its group, and acc without acc_norm.
    const GEMMA3: &str = r#"{
      "results": {
        "bigbench:emoji_movie": {"alias": "bigbench:emoji_movie",
          "multiple_choice_grade,none": 0.4},
        "arc_easy": {"alias": "arc_easy", "acc,none": 0.5, "acc_stderr,none": 0.01}
      },
      "groups": {"bigbench-lite": {"alias": "bigbench-lite", "multiple_choice_grade,none": 0.4,
        "normalized_aggregate_score,none": null, "n_tasks": 1}},
      "group_subtasks": {"bigbench-lite": ["bigbench:emoji_movie"]},
      "config": {"model_name": "gemma3-270m",
        "model_sha256": "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
        "model_info": {"params": 268098176, "bytes": 536000000,
          "types": [["F16", 268000000], ["F32", 98176]]}}
    }"#;

    fn entry(name: &str, text: &str) -> Entry {
        Entry::parse(Path::new(name), text).unwrap()
    }

    fn board() -> Leaderboard {
        Leaderboard::new(
            "Small models",
            vec![
                entry("pythia.json", PYTHIA),
                entry("smollm2.json", SMOLLM2),
                entry("gemma3.json", GEMMA3),
            ],
        )
    }

    #[test]
    fn columns_are_top_level_groups_and_ungrouped_tasks() {
        let e = entry("smollm2.json", SMOLLM2);
        let names: Vec<&str> = e.scores.keys().map(String::as_str).collect();
        assert_eq!(names, ["arc_easy", "bigbench-lite", "wikitext"]);
        let lite = &e.scores["bigbench-lite"];
        assert_eq!(lite.value, 11.75);
        assert_eq!(lite.metric, "normalized_aggregate_score");
        assert_eq!(lite.items, Some(150), "summed through the nested group");
        let arc = &e.scores["arc_easy"];
        assert!((arc.value - 55.0).abs() < 1e-9, "acc_norm before acc");
        assert_eq!(arc.metric, "acc_norm ×100");
        let wiki = &e.scores["wikitext"];
        assert_eq!((wiki.value, wiki.higher_is_better), (30.0, false));
        assert_eq!(wiki.metric, "word_perplexity");
        assert_eq!(e.model, "smollm2-135m");
        assert_eq!(e.sha256_short(), Some("aaaaaaaaaaaa"));
        assert_eq!(e.quantization(), Some("Q8_0"));
        assert_eq!((e.params, e.bytes), (Some(134515008), Some(144811840)));
        let f = &e.files[0];
        assert_eq!((f.limit, f.items, f.tasks), (Some(50.0), 262, 5));
    }

    #[test]
    fn lm_eval_files_name_the_model_from_model_args() {
        let e = entry("runs/pythia.json", PYTHIA);
        assert_eq!(e.model, "EleutherAI/pythia-160m");
        assert_eq!(
            (e.sha256.as_deref(), e.params, e.quantization()),
            (None, None, None)
        );
        assert!(
            !e.scores["wikitext"].higher_is_better,
            "known lower-is-better"
        );
        let path = r#"{"results": {"t": {"acc,none": 1}},
            "config": {"model_name": "/m/dir/SmolLM2.Q8_0.gguf"}}"#;
        assert_eq!(entry("p.json", path).model, "SmolLM2.Q8_0.gguf");
        let hf = r#"{"results": {"t": {"acc,none": 1}},
            "config": {"model_name": "hf:o/r:f.gguf"}}"#;
        assert_eq!(entry("p.json", hf).model, "hf:o/r:f.gguf");
        let bare = entry(
            "runs/bare.json",
            r#"{"results": {"t": {"acc,none": 0.25}}}"#,
        );
        assert_eq!(bare.model, "bare");
        assert_eq!(bare.scores["t"].value, 25.0);
    }

    #[test]
    fn null_normalized_aggregate_falls_back_to_the_metric() {
        let e = entry("gemma3.json", GEMMA3);
        let lite = &e.scores["bigbench-lite"];
        assert!((lite.value - 40.0).abs() < 1e-9);
        assert_eq!(lite.metric, "multiple_choice_grade ×100");
        assert_eq!(e.scores["arc_easy"].metric, "acc ×100");
    }

    #[test]
    fn groups_without_a_score_give_way_to_their_members() {
        let e = entry(
            "lb.json",
            r#"{"results": {"leaderboard": {"alias": "leaderboard"},
                 "t1": {"acc,none": 0.2}, "t2": {"exact_match,strict-match": 0.1,
                 "exact_match,flexible-extract": 0.3},
                 "mmlu": {"alias": "mmlu"}, "mmlu_a": {"acc,none": 0.9}},
               "groups": {"mmlu": {"acc,none": 0.3, "acc_stderr,none": 0.01}},
               "group_subtasks": {"leaderboard": ["t1", "t2", "mmlu"], "t1": [], "t2": [],
                 "mmlu": ["mmlu_a"], "mmlu_a": []}}"#,
        );
        let names: Vec<&str> = e.scores.keys().map(String::as_str).collect();
        assert_eq!(names, ["mmlu", "t1", "t2"]);
        assert!((e.scores["mmlu"].value - 30.0).abs() < 1e-9);
        assert_eq!(e.scores["t2"].metric, "exact_match (strict-match) ×100");
        assert!((e.scores["t2"].value - 10.0).abs() < 1e-9);
    }

    #[test]
    fn ranks_by_the_mean_over_columns_every_model_has() {
        let b = board();
        let order: Vec<(usize, &str, Option<f64>)> = b
            .rows
            .iter()
            .map(|r| {
                (
                    r.rank.unwrap(),
                    r.entry.model.as_str(),
                    r.mean.map(|m| m.round()),
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                (1, "smollm2-135m", Some(55.0)),
                (2, "gemma3-270m", Some(50.0)),
                (3, "EleutherAI/pythia-160m", Some(45.0)),
            ]
        );
        let cols: Vec<(&str, bool)> = b
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.in_mean()))
            .collect();
        assert_eq!(
            cols,
            [
                ("arc_easy", true),
                ("bigbench-lite", false),
                ("wikitext", false)
            ]
        );
        assert_eq!(b.columns[1].missing, ["EleutherAI/pythia-160m"]);
        assert_eq!(b.columns[2].missing, ["gemma3-270m"]);
        let notes = b.notes();
        assert_eq!(
            notes,
            [
                "Mean: the mean over the 1 task every model has a score for (arc_easy). Ranked by mean, ties by name.",
                "Not in the mean: bigbench-lite (no score for EleutherAI/pythia-160m).",
                "Not in the mean: wikitext (word_perplexity: lower is better; no score for gemma3-270m).",
            ]
        );
    }

    #[test]
    fn ties_go_by_name_and_no_common_column_means_no_mean() {
        let one = |name: &str, task: &str, v: f64| {
            let text = format!(
                r#"{{"results": {{"{task}": {{"acc,none": {v}}}}}, "config": {{"model_name": "{name}"}}}}"#
            );
            entry("f.json", &text)
        };
        let b = Leaderboard::new("t", vec![one("b", "x", 0.5), one("a", "x", 0.5)]);
        let names: Vec<&str> = b.rows.iter().map(|r| r.entry.model.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let b = Leaderboard::new("t", vec![one("b", "x", 0.5), one("a", "y", 0.9)]);
        assert!(b.rows.iter().all(|r| r.mean.is_none() && r.rank.is_none()));
        assert!(b.markdown().contains("| – | a | – | – | – |"));
        let names: Vec<&str> = b.rows.iter().map(|r| r.entry.model.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(b.notes()[0].starts_with("No task has a score for every model"));
    }

    #[test]
    fn files_of_the_same_model_merge_and_the_later_value_wins() {
        let later = r#"{"results": {"arc_easy": {"acc_norm,none": 0.56},
            "hellaswag": {"acc_norm,none": 0.4}},
          "config": {"model_name": "smollm2 again",
            "model_sha256": "aaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}}"#;
        let b = Leaderboard::new(
            "t",
            vec![
                entry("smollm2.json", SMOLLM2),
                entry("pythia.json", PYTHIA),
                entry("more.json", later),
            ],
        );
        assert_eq!(b.rows.len(), 2);
        let top = &b.rows[0];
        assert_eq!(top.entry.model, "smollm2-135m");
        assert_eq!(top.entry.files.len(), 2);
        assert!((top.mean.unwrap() - 56.0).abs() < 1e-9);
        assert!((top.entry.scores["hellaswag"].value - 40.0).abs() < 1e-9);
        let notes = b.notes();
        assert!(
            notes.contains(&"smollm2-135m: smollm2.json, more.json merged (same sha256; a later file's value wins).".to_string()),
            "{notes:?}"
        );
        assert!(
            notes.contains(
                &"smollm2-135m: arc_easy is 56.00 from more.json (an earlier file had 55.00)."
                    .to_string()
            ),
            "{notes:?}"
        );
    }

    #[test]
    fn markdown_has_the_ranked_table_and_notes() {
        let md = board().markdown();
        let want = "# Small models

| Rank | Model | Params | Quantization | Mean | arc_easy | bigbench-lite | wikitext |
|---:|---|---:|---|---:|---:|---:|---:|
| 1 | smollm2-135m | 135M | Q8_0 | 55.00 | 55.00 | 11.75 | 30.00 |
| 2 | gemma3-270m | 268M | F16 | 50.00 | 50.00 | 40.00 | – |
| 3 | EleutherAI/pythia-160m | – | – | 45.00 | 45.00 | – | 20.00 |
";
        assert!(md.starts_with(want), "{md}");
        for line in [
            "- arc_easy: acc_norm ×100 or acc ×100 (0–100).",
            "- bigbench-lite: normalized_aggregate_score or multiple_choice_grade ×100 (0–100).",
            "- wikitext: word_perplexity (as measured, lower is better).",
            "- smollm2.json: smollm2-135m (sha256 aaaaaaaaaaaa…), 145 MB, 262 items in 5 tasks, limited to 50 items per task.",
            "- pythia.json: EleutherAI/pythia-160m, 2,438 items in 2 tasks.",
        ] {
            assert!(md.contains(line), "{line}\n{md}");
        }
    }

    #[test]
    fn html_is_self_contained_with_a_chart_per_column() {
        let html = board().html();
        assert!(html.starts_with("<!doctype html>"));
        assert_eq!(html.matches("<figure").count(), 3);
        assert_eq!(html.matches("<th ").count(), 8);
        assert_eq!(html.matches("<tr>").count(), 4);
        for forbidden in ["http:", "https:", "src=", "<link", "@import", "url("] {
            assert!(!html.contains(forbidden), "{forbidden}");
        }
        assert!(html.contains(r#"data-v="55"#), "numeric sort keys");
        assert!(html.contains("aria-sort"), "the sorting script");
        assert!(html.contains("3 models · 3 tasks · mean over 1 task"));
    }

    #[test]
    fn html_escapes_text_from_the_files() {
        let text = r#"{"results": {"<b>t</b>": {"acc,none": 0.5}},
          "config": {"model_name": "<img src=x onerror=alert(1)> & \"q\"",
            "model_info": {"types": [["<i>Q</i>", 1]]}}}"#;
        let b = Leaderboard::new("<script>x</script>", vec![entry("evil.json", text)]);
        let html = b.html();
        for raw in ["<img", "<b>t", "<i>Q", "<script>x", "\"q\""] {
            assert!(!html.contains(raw), "{raw}");
        }
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot;"));
        assert!(html.contains("&lt;b&gt;t&lt;/b&gt;"));
        let md = b.markdown();
        assert!(
            md.contains("| 1 | <img src=x onerror=alert(1)> & \"q\" |"),
            "{md}"
        );
    }

    #[test]
    fn markdown_cells_keep_pipes_and_newlines_out() {
        let text = r#"{"results": {"t": {"acc,none": 0.5}}, "config": {"model_name": "a|b\nc"}}"#;
        let md = Leaderboard::new("t", vec![entry("f.json", text)]).markdown();
        assert!(md.contains("| 1 | a\\|b c | – |"), "{md}");
    }

    #[test]
    fn malformed_files_name_the_file_and_the_field() {
        let cases = [
            ("{", "bad.json: not valid JSON: EOF while parsing"),
            ("[]", "bad.json: not a JSON object"),
            (r#"{"groups": {}}"#, "bad.json: no `results` object"),
            (r#"{"results": 3}"#, "bad.json: `results` is not an object"),
            (
                r#"{"results": {"t": 1}}"#,
                "bad.json: `results.t` is not an object",
            ),
            (
                r#"{"results": {"t": {"acc,none": 1}}, "group_subtasks": {"g": "t"}}"#,
                "bad.json: `group_subtasks.g` is not a list of task names",
            ),
            (
                r#"{"results": {"t": {"acc,none": 1}}, "n-samples": []}"#,
                "bad.json: `n-samples` is not an object",
            ),
            (
                r#"{"results": {"t": {"alias": "t"}}}"#,
                "bad.json: `results` holds no numeric metric",
            ),
        ];
        for (text, want) in cases {
            let err = Entry::parse(Path::new("bad.json"), text).unwrap_err();
            assert!(err.to_string().starts_with(want), "{text}: {err}");
        }
    }

    #[test]
    fn cyclic_groups_do_not_recurse_forever() {
        let e = entry(
            "cycle.json",
            r#"{"results": {"t": {"acc,none": 0.5}},
               "group_subtasks": {"a": ["b"], "b": ["a", "t"], "top": ["a"]}}"#,
        );
        let names: Vec<&str> = e.scores.keys().map(String::as_str).collect();
        assert_eq!(names, ["t"]);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_count(134_515_008), "135M");
        assert_eq!(human_count(1_543_714_304), "1.54B");
        assert_eq!(human_count(7_241_732_096), "7.24B");
        assert_eq!(human_count(12_345_678_901), "12.3B");
        assert_eq!(human_count(999_600), "1.00M");
        assert_eq!(human_count(512), "512");
        assert_eq!(human_bytes(144_811_840), "145 MB");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(nice_ceiling(30.0), 50.0);
        assert_eq!(nice_ceiling(8.5), 10.0);
        assert_eq!(nice_ceiling(0.2125), 0.25);
        assert_eq!(nice_ceiling(0.85), 1.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(tick(25.0), "25");
        assert_eq!(tick(0.1 + 0.2), "0.3");
        assert_eq!(tick(0.0), "0");
    }
}
