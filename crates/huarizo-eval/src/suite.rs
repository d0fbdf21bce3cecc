//! Task names to tasks, and a whole evaluation run: `bigbench:NAME` (a BIG-bench JSON
//! task; `truthful_qa` is its multiple-choice `task_mc.json`), `bigbench-lite` (the JSON
//! tasks of BIG-bench Lite), the Open LLM Leaderboard tasks by lm-eval's names,
//! `perplexity:FILE`, or a path to a `task.json` or an lm-eval task YAML.

use crate::error::EvalError;
use crate::results::Evaluation;
use crate::tasks::bigbench::BigBenchTask;
use crate::tasks::harness::{self, builtin, HarnessTask};
use crate::tasks::{bigbench_eval, TaskResult};
use crate::Evaluator;
use serde_json::{json, Map};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// BIG-bench Lite (BIG-bench's `bigbench_lite` list, 24 tasks).
pub const BIGBENCH_LITE: &[&str] = &[
    "auto_debugging",
    "bbq_lite_json",
    "code_line_description",
    "conceptual_combinations",
    "conlang_translation",
    "emoji_movie",
    "formal_fallacies_syllogisms_negation",
    "hindu_knowledge",
    "known_unknowns",
    "language_identification",
    "linguistics_puzzles",
    "logic_grid_puzzle",
    "logical_deduction",
    "misconceptions_russian",
    "novel_concepts",
    "operators",
    "parsinlu_reading_comprehension",
    "play_dialog_same_or_different",
    "repeat_copy_logic",
    "strange_stories",
    "strategyqa",
    "symbol_interpretation",
    "vitaminc_fact_verification",
    "winowhy",
];

/// What a task is.
#[derive(Clone, Debug)]
pub enum TaskKind {
    /// A BIG-bench JSON task file.
    BigBench(PathBuf),
    /// An lm-evaluation-harness task (built in, or from a YAML/JSON file).
    Harness(Box<HarnessTask>),
    /// Perplexity of a text file (one document).
    Perplexity(PathBuf),
}

/// A resolved task.
#[derive(Clone, Debug)]
pub struct TaskSource {
    /// The name results are reported under.
    pub name: String,
    /// What it is.
    pub kind: TaskKind,
    /// The group it was asked for in, if any.
    pub group: Option<String>,
}

/// A group of tasks (or groups) reported together.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupDef {
    /// Its name.
    pub name: String,
    /// Member tasks and groups.
    pub members: Vec<String>,
    /// Weight members by item count (lm-eval's `weight_by_size`, MMLU) rather than
    /// alike (BIG-bench).
    pub weight_by_size: bool,
}

/// Tasks and groups to run.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Leaf tasks, in order.
    pub tasks: Vec<TaskSource>,
    /// Groups named on the command line (composite BIG-bench tasks are added at run
    /// time).
    pub groups: Vec<GroupDef>,
}

/// Where BIG-bench's tasks are (fetched on first use by the caller's function).
pub type BigBenchRoot<'a> = dyn Fn() -> Result<PathBuf, String> + 'a;

/// Where a Hub dataset (`allenai/ai2_arc`) is on disk, fetched by the caller's function.
pub type DataRoot<'a> = dyn Fn(&str, Option<&str>) -> Result<PathBuf, String> + 'a;

fn bigbench_file(root: &Path, name: &str) -> Result<PathBuf, EvalError> {
    let dir = root.join(name);
    for file in ["task.json", "task_mc.json"] {
        if dir.join(file).is_file() {
            return Ok(dir.join(file));
        }
    }
    if dir.join("task.py").is_file() {
        return Err(EvalError::UnknownTask {
            name: format!("bigbench:{name}"),
            hint: "a programmatic BIG-bench task (task.py), not a JSON task".into(),
        });
    }
    Err(EvalError::UnknownTask {
        name: format!("bigbench:{name}"),
        hint: format!("no such task in {}", root.display()),
    })
}

/// Adds a built-in lm-eval task or group (recursively) to the plan.
fn add_builtin(
    plan: &mut Plan,
    name: &str,
    group: Option<&str>,
    data: &DataRoot,
) -> Result<bool, EvalError> {
    if let Some(members) = builtin::group(name) {
        for m in &members {
            add_builtin(plan, m, Some(name), data)?;
        }
        plan.groups.push(GroupDef {
            name: name.to_string(),
            members,
            weight_by_size: builtin::weight_by_size(name),
        });
        return Ok(true);
    }
    match builtin::task(name, data) {
        None => Ok(false),
        Some(task) => {
            plan.tasks.push(TaskSource {
                name: name.to_string(),
                kind: TaskKind::Harness(Box::new(task?)),
                group: group.map(str::to_string),
            });
            Ok(true)
        }
    }
}

/// Resolves comma-separated task names: `bigbench:TASK`, `bigbench-lite`, lm-eval's
/// leaderboard tasks and groups (`arc_challenge`, `mmlu`, …), `perplexity:FILE`, or a
/// path to a BIG-bench `task.json` or an lm-eval task YAML/JSON.
pub fn resolve(names: &str, bigbench: &BigBenchRoot, data: &DataRoot) -> Result<Plan, EvalError> {
    let mut plan = Plan::default();
    let root = std::cell::OnceCell::new();
    let root = || -> Result<PathBuf, EvalError> {
        root.get_or_init(bigbench)
            .clone()
            .map_err(EvalError::Engine)
    };
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if let Some(task) = name.strip_prefix("bigbench:") {
            plan.tasks.push(TaskSource {
                name: name.to_string(),
                kind: TaskKind::BigBench(bigbench_file(&root()?, task)?),
                group: None,
            });
        } else if name == "bigbench-lite" {
            let root = root()?;
            for task in BIGBENCH_LITE {
                plan.tasks.push(TaskSource {
                    name: format!("bigbench:{task}"),
                    kind: TaskKind::BigBench(bigbench_file(&root, task)?),
                    group: Some(name.to_string()),
                });
            }
        } else if let Some(file) = name.strip_prefix("perplexity:") {
            let path = PathBuf::from(file);
            if !path.is_file() {
                return Err(EvalError::File {
                    path,
                    message: "no such text file".into(),
                });
            }
            plan.tasks.push(TaskSource {
                name: name.to_string(),
                kind: TaskKind::Perplexity(path),
                group: None,
            });
        } else if add_builtin(&mut plan, name, None, data)? {
        } else if Path::new(name).is_dir() {
            // A BIG-bench task folder (task.json inside).
            plan.tasks.push(TaskSource {
                name: name.to_string(),
                kind: TaskKind::BigBench(PathBuf::from(name)),
                group: None,
            });
        } else if Path::new(name).is_file() {
            let path = PathBuf::from(name);
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let is_harness =
                matches!(ext, "yaml" | "yml") || (ext == "json" && !looks_like_bigbench(&path));
            let kind = if is_harness {
                let task = HarnessTask::from_file(&path, data)?;
                TaskKind::Harness(Box::new(task))
            } else {
                TaskKind::BigBench(path)
            };
            let name = match &kind {
                TaskKind::Harness(t) => t.config.task.clone(),
                _ => name.to_string(),
            };
            plan.tasks.push(TaskSource {
                name,
                kind,
                group: None,
            });
        } else {
            return Err(EvalError::UnknownTask {
                name: name.to_string(),
                hint: format!(
                    "use bigbench:TASK, bigbench-lite, perplexity:FILE, a path to a task.json or task YAML, or one of {}",
                    builtin::names().join(", ")
                ),
            });
        }
    }
    if plan.tasks.is_empty() {
        return Err(EvalError::UnknownTask {
            name: names.to_string(),
            hint: "no task given".into(),
        });
    }
    Ok(plan)
}

/// A JSON file is a BIG-bench task when it has BIG-bench's `examples` or `subtasks`
/// layout (or `canary`), an lm-eval task when it has `task`.
fn looks_like_bigbench(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return true;
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v.get("task").is_none() || v.get("examples").is_some(),
        Err(_) => true,
    }
}

/// How to run a suite.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Examples in each prompt (default: BIG-bench 0; lm-eval tasks their own count).
    pub shots: Option<usize>,
    /// Most items per task.
    pub limit: Option<usize>,
    /// Few-shot and choice-order seed (default: BIG-bench's 42, lm-eval's 1234).
    pub seed: Option<u64>,
}

/// What [`run`] produced: leaf results, groups, per-task configs.
pub struct RunOutput {
    /// Every leaf task's result.
    pub results: Vec<TaskResult>,
    /// Groups and their member tasks.
    pub groups: Vec<GroupDef>,
    /// Each task's configuration.
    pub configs: Map<String, serde_json::Value>,
    /// Each task's version.
    pub versions: Map<String, serde_json::Value>,
}

fn harness_config(task: &HarnessTask, shots: usize, seed: u64) -> serde_json::Value {
    let c = &task.config;
    json!({
        "task": c.task,
        "source": task.origin,
        "data": task.source.describe(),
        "format": "lm-eval",
        "dataset_path": c.dataset_path,
        "dataset_name": c.dataset_name,
        "output_type": c.output_type_name(),
        "description": c.description,
        "target_delimiter": c.target_delimiter,
        "fewshot_delimiter": c.fewshot_delimiter,
        "num_fewshot": shots,
        "fewshot_seed": seed,
        "metric_list": c.metric_list.iter().map(|m| json!({"metric": m.metric})).collect::<Vec<_>>(),
        "metadata": c.metadata,
    })
}

/// Loads and runs every task; composite BIG-bench tasks become groups.
pub fn run(ev: &Evaluator, plan: &Plan, options: &SuiteOptions) -> Result<RunOutput, EvalError> {
    let mut results = Vec::new();
    let mut groups: Vec<GroupDef> = Vec::new();
    let mut configs = Map::new();
    let mut versions = Map::new();
    for src in &plan.tasks {
        match &src.kind {
            TaskKind::Harness(task) => {
                let seed = options.seed.unwrap_or(harness::DEFAULT_FEWSHOT_SEED);
                let shots = task.shots(options.shots);
                let (items, n_original) = task.items(shots, options.limit, seed)?;
                let r = harness::score::evaluate(ev, task, &src.name, &items, shots, n_original)?;
                configs.insert(src.name.clone(), harness_config(task, shots, seed));
                versions.insert(src.name.clone(), task.config.version());
                results.push(r);
            }
            TaskKind::Perplexity(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| EvalError::File {
                    path: path.clone(),
                    message: format!("not readable as UTF-8 text: {e}"),
                })?;
                results.push(perplexity(ev, &src.name, &text)?);
                configs.insert(
                    src.name.clone(),
                    json!({"task": src.name, "source": path.display().to_string(),
                           "output_type": "loglikelihood_rolling", "num_fewshot": 0}),
                );
                versions.insert(src.name.clone(), json!(1.0));
            }
            TaskKind::BigBench(path) => {
                let seed = options.seed.unwrap_or(42);
                let task = BigBenchTask::load(path, None, seed as u32)?;
                let shots = options.shots.unwrap_or(0);
                let mut members = Vec::new();
                for leaf in &task.leaves {
                    let mut r = bigbench_eval::evaluate_leaf(ev, leaf, shots, options.limit)?;
                    // Report under the name asked for (`bigbench:winowhy`, `bigbench:x:sub`).
                    r.name = match leaf.name.split_once(':') {
                        Some((_, sub)) => format!("{}:{sub}", src.name),
                        None => src.name.clone(),
                    };
                    configs.insert(
                        r.name.clone(),
                        json!({
                            "task": r.name,
                            "source": path.display().to_string(),
                            "format": "bigbench-json",
                            "output_type": if leaf.is_multiple_choice() { "multiple_choice" } else { "generate_until" },
                            "metric_list": [leaf.preferred_score],
                            "num_fewshot": shots,
                            "fewshot_seed": seed,
                        }),
                    );
                    versions.insert(r.name.clone(), json!(1.0));
                    members.push(r.name.clone());
                    results.push(r);
                }
                if members.len() > 1 {
                    groups.push(GroupDef {
                        name: src.name.clone(),
                        members: members.clone(),
                        weight_by_size: false,
                    });
                }
                if let Some(g) = &src.group {
                    // A composite task joins the outer group as one member (its own group).
                    let member = if members.len() > 1 {
                        src.name.clone()
                    } else {
                        members[0].clone()
                    };
                    match groups.iter_mut().find(|d| &d.name == g) {
                        Some(d) => d.members.push(member),
                        None => groups.push(GroupDef {
                            name: g.clone(),
                            members: vec![member],
                            weight_by_size: false,
                        }),
                    }
                }
            }
        }
    }
    groups.extend(plan.groups.iter().cloned());
    Ok(RunOutput {
        results,
        groups,
        configs,
        versions,
    })
}

/// Perplexity of one text: word and byte perplexity and bits per byte.
fn perplexity(ev: &Evaluator, name: &str, text: &str) -> Result<TaskResult, EvalError> {
    use crate::metrics::Metric;
    let r = ev.rolling(&[crate::Rolling {
        text: text.to_string(),
    }])?;
    let ll = r[0].logprob;
    let words = harness::score::count_words(text) as f64;
    let bytes = text.len().max(1) as f64;
    let metric = |name: &str, value: f64| Metric {
        name: name.into(),
        value,
        stderr: None,
        higher_is_better: false,
        filter: "none".into(),
    };
    Ok(TaskResult {
        name: name.to_string(),
        metrics: vec![
            metric("word_perplexity", (-ll / words).exp()),
            metric("byte_perplexity", (-ll / bytes).exp()),
            metric("bits_per_byte", -(ll / bytes) / std::f64::consts::LN_2),
            metric("token_perplexity", (-ll / r[0].tokens.max(1) as f64).exp()),
        ],
        n_shot: 0,
        n_original: 1,
        n_effective: 1,
        normalized: None,
        samples: Vec::new(),
    })
}

/// A whole run, timed, as an [`Evaluation`].
pub fn evaluate(
    ev: &Evaluator,
    model: &str,
    model_path: &Path,
    model_sha256: &str,
    model_info: serde_json::Value,
    plan: &Plan,
    options: &SuiteOptions,
) -> Result<Evaluation, EvalError> {
    let start = Instant::now();
    let RunOutput {
        results: tasks,
        groups,
        configs,
        versions,
    } = run(ev, plan, options)?;
    Ok(Evaluation {
        model: model.to_string(),
        model_path: model_path.display().to_string(),
        model_sha256: model_sha256.to_string(),
        model_info,
        tasks,
        groups,
        configs,
        versions,
        seed: options.seed,
        limit: options.limit,
        seconds: start.elapsed().as_secs_f64(),
        tokens: ev.tokens(),
    })
}
