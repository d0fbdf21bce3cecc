//! Task names to tasks, and a whole evaluation run: `bigbench:NAME` (a BIG-bench JSON
//! task; `truthful_qa` is its multiple-choice `task_mc.json`), `bigbench-lite` (the JSON
//! tasks of BIG-bench Lite), or a path to a `task.json`.

use crate::error::EvalError;
use crate::results::Evaluation;
use crate::tasks::bigbench::BigBenchTask;
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

/// A resolved task.
#[derive(Clone, Debug)]
pub struct TaskSource {
    /// The name results are reported under.
    pub name: String,
    /// The task file.
    pub path: PathBuf,
    /// The group it was asked for in, if any.
    pub group: Option<String>,
}

/// Where BIG-bench's tasks are (fetched on first use by the caller's function).
pub type BigBenchRoot<'a> = dyn Fn() -> Result<PathBuf, String> + 'a;

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

/// Resolves comma-separated task names.
pub fn resolve(names: &str, bigbench: &BigBenchRoot) -> Result<Vec<TaskSource>, EvalError> {
    let mut out = Vec::new();
    let root = std::cell::OnceCell::new();
    let root = || -> Result<PathBuf, EvalError> {
        root.get_or_init(bigbench)
            .clone()
            .map_err(EvalError::Engine)
    };
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if let Some(task) = name.strip_prefix("bigbench:") {
            out.push(TaskSource {
                name: name.to_string(),
                path: bigbench_file(&root()?, task)?,
                group: None,
            });
        } else if name == "bigbench-lite" {
            let root = root()?;
            for task in BIGBENCH_LITE {
                out.push(TaskSource {
                    name: format!("bigbench:{task}"),
                    path: bigbench_file(&root, task)?,
                    group: Some(name.to_string()),
                });
            }
        } else if Path::new(name).exists() {
            out.push(TaskSource {
                name: name.to_string(),
                path: PathBuf::from(name),
                group: None,
            });
        } else {
            return Err(EvalError::UnknownTask {
                name: name.to_string(),
                hint: "use bigbench:TASK, bigbench-lite, or a path to a task.json".into(),
            });
        }
    }
    if out.is_empty() {
        return Err(EvalError::UnknownTask {
            name: names.to_string(),
            hint: "no task given".into(),
        });
    }
    Ok(out)
}

/// How to run a suite.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Examples in each prompt (BIG-bench: 0 by default).
    pub shots: Option<usize>,
    /// Most items per task.
    pub limit: Option<usize>,
    /// Few-shot and choice-order seed (BIG-bench's is 42).
    pub seed: u64,
}

/// What [`run`] produced: leaf results, groups (name, members), per-task configs.
pub struct RunOutput {
    /// Every leaf task's result.
    pub results: Vec<TaskResult>,
    /// Groups and their member tasks.
    pub groups: Vec<(String, Vec<String>)>,
    /// Each task's configuration.
    pub configs: Map<String, serde_json::Value>,
}

/// Loads and runs every task; composite tasks and `bigbench-lite` become groups.
pub fn run(
    ev: &Evaluator,
    sources: &[TaskSource],
    options: &SuiteOptions,
) -> Result<RunOutput, EvalError> {
    let mut results = Vec::new();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut configs = Map::new();
    for src in sources {
        let task = BigBenchTask::load(&src.path, None, options.seed as u32)?;
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
                    "source": src.path.display().to_string(),
                    "format": "bigbench-json",
                    "output_type": if leaf.is_multiple_choice() { "multiple_choice" } else { "generate_until" },
                    "metric_list": [leaf.preferred_score],
                    "num_fewshot": shots,
                    "fewshot_seed": options.seed,
                }),
            );
            members.push(r.name.clone());
            results.push(r);
        }
        if members.len() > 1 {
            groups.push((src.name.clone(), members.clone()));
        }
        if let Some(g) = &src.group {
            // A composite task joins the outer group as one member (its own group).
            let member = if members.len() > 1 {
                src.name.clone()
            } else {
                members[0].clone()
            };
            match groups.iter_mut().find(|(n, _)| n == g) {
                Some((_, m)) => m.push(member),
                None => groups.push((g.clone(), vec![member])),
            }
        }
    }
    Ok(RunOutput {
        results,
        groups,
        configs,
    })
}

/// A whole run, timed, as an [`Evaluation`].
pub fn evaluate(
    ev: &Evaluator,
    model: &str,
    model_path: &Path,
    model_sha256: &str,
    model_info: serde_json::Value,
    sources: &[TaskSource],
    options: &SuiteOptions,
) -> Result<Evaluation, EvalError> {
    let start = Instant::now();
    let RunOutput {
        results: tasks,
        groups,
        configs,
    } = run(ev, sources, options)?;
    Ok(Evaluation {
        model: model.to_string(),
        model_path: model_path.display().to_string(),
        model_sha256: model_sha256.to_string(),
        model_info,
        tasks,
        groups,
        configs,
        seed: options.seed,
        limit: options.limit,
        seconds: start.elapsed().as_secs_f64(),
        tokens: ev.tokens(),
    })
}
