//! lm-evaluation-harness's results JSON (`results`, `groups`, `group_subtasks`,
//! `configs`, `versions`, `n-shot`, `higher_is_better`, `n-samples`, `config`), and the
//! table printed after a run.

use crate::suite::GroupDef;
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
    /// Groups: name and member tasks (a composite BIG-bench task, `bigbench-lite`,
    /// `mmlu`).
    pub groups: Vec<GroupDef>,
    /// Per task: its configuration (source, prompt format, metric).
    pub configs: Map<String, Value>,
    /// Each task's version.
    pub versions: Map<String, Value>,
    /// Seed of few-shot sampling, when one was given.
    pub seed: Option<u64>,
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
        out.insert(m.key(), json!(m.value));
        out.insert(m.stderr_key(), m.stderr.map_or(json!("N/A"), |s| json!(s)));
    }
}

impl Evaluation {
    /// Values of a group's members: a leaf task's `value`, or a member group's mean
    /// (so a composite task counts once in `bigbench-lite`, as in BIG-bench).
    fn member_values(&self, group: &str, value: &dyn Fn(&TaskResult) -> Option<f64>) -> Vec<f64> {
        let Some(def) = self.groups.iter().find(|d| d.name == group) else {
            return Vec::new();
        };
        def.members
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

    /// Leaf tasks under a group, through member groups.
    fn leaves(&self, group: &str) -> Vec<&TaskResult> {
        let Some(def) = self.groups.iter().find(|d| d.name == group) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in &def.members {
            match self.tasks.iter().find(|t| &t.name == m) {
                Some(t) => out.push(t),
                None => out.extend(self.leaves(m)),
            }
        }
        out
    }

    /// A size-weighted group (lm-eval's `weight_by_size`): the item-weighted mean of its
    /// leaves' metric and the pooled standard error.
    fn weighted(&self, group: &str, metric: &str) -> Option<(f64, Option<f64>, usize)> {
        let mut parts = Vec::new();
        for t in self.leaves(group) {
            let m = t.metrics.iter().find(|m| m.name == metric)?;
            parts.push((m.value, m.stderr, t.n_effective as f64));
        }
        let total: f64 = parts.iter().map(|p| p.2).sum();
        if parts.is_empty() || total == 0.0 {
            return None;
        }
        let mean = parts.iter().map(|p| p.0 * p.2).sum::<f64>() / total;
        let k = parts.len() as f64;
        let stderr = parts
            .iter()
            .map(|p| p.1.map(|se| (p.2 - 1.0) * se * se * p.2))
            .sum::<Option<f64>>()
            .filter(|_| total > k)
            .map(|v| (v / (total - k) / total).sqrt());
        Some((mean, stderr, parts.len()))
    }

    /// Per group: name, metric, value, its standard error, member count. Size-weighted
    /// groups average every leaf item alike (MMLU); others average their members alike
    /// (BIG-bench).
    pub fn group_stats(&self) -> Vec<(String, String, f64, Option<f64>, usize)> {
        self.groups
            .iter()
            .filter_map(|d| {
                let metric = self.first_metric(&d.name)?;
                if d.weight_by_size {
                    let (v, se, n) = self.weighted(&d.name, &metric)?;
                    return Some((d.name.clone(), metric, v, se, n));
                }
                let (g, m, v, n) = self.group_mean(&d.name, metric)?;
                Some((g, m, v, None, n))
            })
            .collect()
    }

    /// Per group: name, metric, value, member count (see [`Evaluation::group_stats`]).
    pub fn group_scores(&self) -> Vec<(String, String, f64, usize)> {
        self.group_stats()
            .into_iter()
            .map(|(g, m, v, _, n)| (g, m, v, n))
            .collect()
    }

    fn group_mean(&self, g: &str, metric: String) -> Option<(String, String, f64, usize)> {
        {
            {
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
                Some((g.to_string(), metric, mean, v.len()))
            }
        }
    }

    /// The metric of a group's first leaf.
    fn first_metric(&self, group: &str) -> Option<String> {
        let def = self.groups.iter().find(|d| d.name == group)?;
        let m = def.members.first()?;
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
            versions.insert(
                t.name.clone(),
                self.versions.get(&t.name).cloned().unwrap_or(json!(1.0)),
            );
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
        for (g, metric, mean, se, n) in self.group_stats() {
            let mut entry = json!({"alias": g, format!("{metric},none"): mean,
                                   format!("{metric}_stderr,none"): se.map_or(json!("N/A"), |s| json!(s)),
                                   "n_tasks": n});
            if let Some(norm) = self.group_normalized(&g) {
                entry["normalized_aggregate_score,none"] = json!(norm);
            }
            groups.insert(g.clone(), entry.clone());
            results.insert(g.clone(), entry);
        }
        for d in &self.groups {
            group_subtasks.insert(d.name.clone(), json!(d.members));
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
                    if m.filter == "none" {
                        m.name.clone()
                    } else {
                        m.key()
                    },
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
