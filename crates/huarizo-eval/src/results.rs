//! lm-evaluation-harness's results JSON (`results`, `groups`, `group_subtasks`,
//! `configs`, `versions`, `n-shot`, `higher_is_better`, `n-samples`, `config`), and the
//! table printed after a run.

use crate::tasks::TaskResult;
use serde_json::{json, Map, Value};

/// A finished evaluation of one model.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Model as given on the command line.
    pub model: String,
    /// The model file.
    pub model_path: String,
    /// sha256 of the model file.
    pub model_sha256: String,
    /// `general.architecture`, weights and storage types, for the leaderboard.
    pub model_info: Value,
    /// Results of every leaf task.
    pub tasks: Vec<TaskResult>,
    /// Groups: name and member tasks (a composite BIG-bench task, `bigbench-lite`).
    pub groups: Vec<(String, Vec<String>)>,
    /// Per task: its configuration (source, prompt format, metric).
    pub configs: Map<String, Value>,
    /// Seed of few-shot sampling.
    pub seed: u64,
    /// Item limit per task.
    pub limit: Option<usize>,
    /// Wall time.
    pub seconds: f64,
    /// Tokens scored or generated.
    pub tokens: usize,
}

fn metric_entries(out: &mut Map<String, Value>, t: &TaskResult) {
    if let Some(n) = t.normalized {
        out.insert("normalized_score,none".into(), json!(n));
    }
    for m in &t.metrics {
        out.insert(format!("{},none", m.name), json!(m.value));
        out.insert(
            format!("{}_stderr,none", m.name),
            m.stderr.map_or(json!("N/A"), |s| json!(s)),
        );
    }
}

impl Evaluation {
    /// Values of a group's members: a leaf task's `value`, or a member group's mean
    /// (so a composite task counts once in `bigbench-lite`, as in BIG-bench).
    fn member_values(&self, group: &str, value: &dyn Fn(&TaskResult) -> Option<f64>) -> Vec<f64> {
        let Some((_, members)) = self.groups.iter().find(|(g, _)| g == group) else {
            return Vec::new();
        };
        members
            .iter()
            .filter_map(|m| match self.tasks.iter().find(|t| &t.name == m) {
                Some(t) => value(t),
                None => {
                    let v = self.member_values(m, value);
                    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
                }
            })
            .collect()
    }

    /// Mean of a group's members' normalized scores (BIG-bench's
    /// `normalized_aggregate_score`; the BIG-bench Lite score for `bigbench-lite`).
    pub fn group_normalized(&self, group: &str) -> Option<f64> {
        let v = self.member_values(group, &|t| t.normalized);
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Per group: name, metric, mean of its members' first metric (each member weighted
    /// alike), member count.
    pub fn group_scores(&self) -> Vec<(String, String, f64, usize)> {
        self.groups
            .iter()
            .filter_map(|(g, _)| {
                let metric = self.first_metric(g)?;
                let v = self.member_values(g, &|t| {
                    t.metrics
                        .first()
                        .filter(|m| m.name == metric)
                        .map(|m| m.value)
                });
                if v.is_empty() {
                    return None;
                }
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                Some((g.clone(), metric, mean, v.len()))
            })
            .collect()
    }

    /// The metric of a group's first leaf.
    fn first_metric(&self, group: &str) -> Option<String> {
        let (_, members) = self.groups.iter().find(|(g, _)| g == group)?;
        let m = members.first()?;
        match self.tasks.iter().find(|t| &t.name == m) {
            Some(t) => t.metrics.first().map(|x| x.name.clone()),
            None => self.first_metric(m),
        }
    }

    /// The results JSON.
    pub fn to_json(&self) -> Value {
        let mut results = Map::new();
        let mut versions = Map::new();
        let mut n_shot = Map::new();
        let mut higher = Map::new();
        let mut n_samples = Map::new();
        for t in &self.tasks {
            let mut entry = Map::new();
            entry.insert("alias".into(), json!(t.name));
            metric_entries(&mut entry, t);
            results.insert(t.name.clone(), Value::Object(entry));
            versions.insert(t.name.clone(), json!(1.0));
            n_shot.insert(t.name.clone(), json!(t.n_shot));
            higher.insert(
                t.name.clone(),
                Value::Object(
                    t.metrics
                        .iter()
                        .map(|m| (m.name.clone(), json!(m.higher_is_better)))
                        .collect(),
                ),
            );
            n_samples.insert(
                t.name.clone(),
                json!({"original": t.n_original, "effective": t.n_effective}),
            );
        }
        let mut groups = Map::new();
        let mut group_subtasks = Map::new();
        for (g, metric, mean, n) in self.group_scores() {
            let normalized = self.group_normalized(&g);
            groups.insert(
                g.clone(),
                json!({"alias": g, format!("{metric},none"): mean, format!("{metric}_stderr,none"): "N/A",
                       "normalized_aggregate_score,none": normalized, "n_tasks": n}),
            );
        }
        for (g, members) in &self.groups {
            group_subtasks.insert(g.clone(), json!(members));
        }
        json!({
            "results": results,
            "groups": groups,
            "group_subtasks": group_subtasks,
            "configs": self.configs,
            "versions": versions,
            "n-shot": n_shot,
            "higher_is_better": higher,
            "n-samples": n_samples,
            "config": {
                "model": "huarizo",
                "model_args": format!("pretrained={}", self.model_path),
                "model_name": self.model,
                "model_sha256": self.model_sha256,
                "model_info": self.model_info,
                "batch_size": "auto",
                "limit": self.limit,
                "random_seed": self.seed,
                "fewshot_seed": self.seed,
            },
            "date": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            "total_evaluation_time_seconds": format!("{:.2}", self.seconds),
            "huarizo": {
                "version": env!("CARGO_PKG_VERSION"),
                "tokens": self.tokens,
                "tokens_per_second": self.tokens as f64 / self.seconds.max(1e-9),
            },
        })
    }

    /// lm-eval's Markdown table: task, n-shot, metric, value ± stderr.
    pub fn table(&self) -> String {
        let mut s =
            String::from("|Task|n-shot|Metric|Value| |Stderr|\n|---|--:|---|--:|---|--:|\n");
        for t in &self.tasks {
            for m in &t.metrics {
                s.push_str(&format!(
                    "|{}|{}|{}|{:.4}|±|{}|\n",
                    t.name,
                    t.n_shot,
                    m.name,
                    m.value,
                    m.stderr.map_or("N/A".to_string(), |e| format!("{e:.4}"))
                ));
            }
        }
        for (g, metric, mean, n) in self.group_scores() {
            s.push_str(&format!("|{g} (mean of {n})| |{metric}|{mean:.4}| | |\n"));
            if let Some(norm) = self.group_normalized(&g) {
                s.push_str(&format!(
                    "|{g} (mean of {n})| |normalized_aggregate_score|{norm:.2}| | |\n"
                ));
            }
        }
        s
    }
}
