//! BIG-bench JSON tasks: prompts byte-identical to BIG-bench's own formatting (checked
//! against docs/notes/bigbench_render.py, a standard-library port of json_task.py and
//! numpy's generator, cross-checked there against numpy on 34,440 real prompts), scoring
//! on SmolLM2, lm-eval's results JSON, and clear errors for bad task files.

use huarizo_engine::{Engine, EngineOptions};
use huarizo_eval::suite::{self, SuiteOptions};
use huarizo_eval::tasks::bigbench::BigBenchTask;
use huarizo_eval::{EvalError, Evaluator, RunOptions};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bigbench")
}

fn renderer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/notes/bigbench_render.py")
}

#[test]
fn prompts_are_bigbench_s_byte_for_byte() {
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for task in ["toy_mc", "toy_gen", "toy_composite"] {
        for shots in [0usize, 1, 2] {
            let jsonl = out_dir.join(format!("{task}-{shots}.jsonl"));
            let status = Command::new("python3")
                .arg(renderer())
                .arg(fixtures().join(task))
                .args(["--shots", &shots.to_string(), "--show", "0", "--jsonl"])
                .arg(&jsonl)
                .stdout(std::process::Stdio::null())
                .status()
                .expect("python3 runs");
            assert!(status.success());
            let want: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let t = BigBenchTask::load(&fixtures().join(task), None, 42).unwrap();
            let got: Vec<_> = t
                .leaves
                .iter()
                .flat_map(|l| l.queries(shots).unwrap())
                .collect();
            assert_eq!(got.len(), want.len(), "{task} {shots}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.input, w["input"].as_str().unwrap(), "{task} {shots}");
                assert_eq!(g.example as u64, w["example_index"].as_u64().unwrap());
                let targets: Vec<&str> = w["target"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap())
                    .collect();
                assert_eq!(g.target, targets);
                assert_eq!(g.task, w["task"].as_str().unwrap());
            }
        }
    }
}

#[test]
fn smollm2_scores_tasks_into_lm_eval_results() {
    let model = huarizo_testdata::file("smollm2.gguf");
    let engine = Engine::load(
        &model,
        &EngineOptions {
            n_threads: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let ev = Evaluator::new(&engine, RunOptions::default());
    let names = ["toy_mc", "toy_gen", "toy_composite"]
        .map(|t| fixtures().join(t).display().to_string())
        .join(",");
    let no_bigbench = || -> Result<PathBuf, String> { Err("not needed".into()) };
    let no_data =
        |_: &str, _: Option<&str>| -> Result<PathBuf, String> { Err("not needed".into()) };
    let mut plan = suite::resolve(&names, &no_bigbench, &no_data).unwrap();
    for s in &mut plan.tasks {
        s.group = Some("toy-suite".into());
    }
    let options = SuiteOptions {
        shots: Some(1),
        limit: None,
        seed: Some(42),
    };
    let e = suite::evaluate(
        &ev,
        "smollm2",
        &model,
        "0",
        serde_json::json!({}),
        &plan,
        &options,
    )
    .unwrap();
    // Multiple choice: the grade is the chosen choice's target score.
    let mc = &e.tasks[0];
    assert_eq!(mc.metrics[0].name, "multiple_choice_grade");
    for s in &mc.samples {
        let best = s
            .logprobs
            .iter()
            .enumerate()
            .fold((0, f64::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
            .0;
        assert_eq!(s.chosen, Some(best));
        assert!(s.logprobs.iter().all(|&l| l < 0.0));
    }
    // Generative: exact_str_match over post-processed answers.
    assert_eq!(e.tasks[1].metrics[0].name, "exact_str_match");
    assert!(e.tasks[1].samples.iter().all(|s| s.generated.is_some()));
    // The composite task is a group of its two subtasks, and one member of the outer
    // group (as a composite task counts once in bigbench-lite).
    let groups = e.group_scores();
    assert_eq!(groups.len(), 2, "{groups:?}");
    let composite = groups
        .iter()
        .find(|g| g.0.ends_with("toy_composite"))
        .unwrap();
    assert_eq!(composite.3, 2);
    // The outer group's raw mean takes the members scored by its first metric (the MC
    // leaf and the composite task); its normalized score takes all three.
    let outer_raw = groups.iter().find(|g| g.0 == "toy-suite").unwrap();
    assert_eq!(outer_raw.3, 2);
    // BIG-bench's normalized score: 100·(grade − chance)/(1 − chance); the groups average
    // their members'.
    let chance = (1.0 / 3.0 * 3.0 + 1.5 / 4.0 + 0.5) / 5.0;
    let want = 100.0 * (mc.metrics[0].value - chance) / (1.0 - chance);
    assert!((mc.normalized.unwrap() - want).abs() < 1e-9);
    let parts = [
        e.tasks[0].normalized.unwrap(),
        e.tasks[1].normalized.unwrap(),
        e.group_normalized(&composite.0).unwrap(),
    ];
    let outer = e.group_normalized("toy-suite").unwrap();
    assert!((outer - parts.iter().sum::<f64>() / 3.0).abs() < 1e-9);
    let j = e.to_json();
    for key in [
        "results",
        "groups",
        "group_subtasks",
        "configs",
        "versions",
        "n-shot",
        "higher_is_better",
        "n-samples",
        "config",
    ] {
        assert!(j.get(key).is_some(), "{key}");
    }
    let name = &mc.name;
    let r = &j["results"][name];
    assert!(r["multiple_choice_grade,none"].is_number());
    assert!(r["multiple_choice_grade_stderr,none"].is_number());
    assert_eq!(j["n-shot"][name], 1);
    assert_eq!(j["n-samples"][name]["effective"], 5);
}

#[test]
fn bad_task_files_are_clear_errors() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad-tasks");
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("not-json.json", "{\"name\": ", "not JSON"),
        (
            "unknown-metric.json",
            r#"{"name":"x","metrics":["accuracy"],"preferred_score":"accuracy","examples":[{"input":"a","target":"b"}]}"#,
            "unknown metric \"accuracy\"",
        ),
        (
            "no-target.json",
            r#"{"name":"x","metrics":["exact_str_match"],"preferred_score":"exact_str_match","examples":[{"input":"a"}]}"#,
            "examples[0]",
        ),
        (
            "bad-scores.json",
            r#"{"name":"x","metrics":["multiple_choice_grade"],"preferred_score":"multiple_choice_grade","examples":[{"input":"a","target_scores":{"b":"yes"}}]}"#,
            "target_scores",
        ),
    ];
    for (file, text, needle) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let err = BigBenchTask::load(&path, None, 42).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, EvalError::File { .. }), "{msg}");
        assert!(msg.contains(file) && msg.contains(needle), "{msg}");
    }
    let missing = BigBenchTask::load(&dir.join("absent.json"), None, 42).unwrap_err();
    assert!(missing.to_string().contains("absent.json"));
}
