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
    for m in &t.metrics {
        out.insert(format!("{},none", m.name), json!(m.value));
        out.insert(
            format!("{}_stderr,none", m.name),
            m.stderr.map_or(json!("N/A"), |s| json!(s)),
        );
    }
}

impl Evaluation {
    /// Mean of each group's members' first metric (every member weighted alike).
    pub fn group_scores(&self) -> Vec<(String, String, f64, usize)> {
        self.groups
            .iter()
            .filter_map(|(g, members)| {
                let scores: Vec<(&str, f64)> = self
                    .tasks
                    .iter()
                    .filter(|t| members.contains(&t.name))
                    .filter_map(|t| t.metrics.first().map(|m| (m.name.as_str(), m.value)))
                    .collect();
                if scores.is_empty() {
                    return None;
                }
                let name = scores[0].0.to_string();
                let mean = scores.iter().map(|s| s.1).sum::<f64>() / scores.len() as f64;
                Some((g.clone(), name, mean, scores.len()))
            })
            .collect()
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
            groups.insert(
                g.clone(),
                json!({"alias": g, format!("{metric},none"): mean, format!("{metric}_stderr,none"): "N/A", "n_tasks": n}),
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
        }
        s
    }
}
