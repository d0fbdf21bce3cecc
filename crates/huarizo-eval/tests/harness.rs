//! lm-evaluation-harness tasks: huarizo builds the same prompts and continuations as
//! lm-eval 0.4.13 for the Open LLM Leaderboard tasks (few-shot draws included), reading
//! the fixture datasets in the Hub's layouts (JSON lines and Parquet).
//!
//! `fixtures/harness/lm_eval_requests.json` was written by lm-eval itself:
//! `python tests/eval/lm_eval_requests.py crates/huarizo-eval/tests/fixtures/harness`
//! (in the venv of `scripts/test-venv.sh`); the datasets by
//! `tests/eval/make_harness_fixtures.py`.

use huarizo_eval::suite;
use huarizo_eval::tasks::harness::builtin;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/harness")
}

fn local(id: &str, _config: Option<&str>) -> Result<PathBuf, String> {
    let dir = fixtures().join(id);
    dir.is_dir()
        .then_some(dir)
        .ok_or_else(|| format!("no fixture for {id}"))
}

#[test]
fn prompts_and_continuations_match_lm_eval() {
    let text = std::fs::read_to_string(fixtures().join("lm_eval_requests.json")).unwrap();
    let reference: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(reference.len(), 8);
    for (name, want) in &reference {
        let task = builtin::task(name, &local).unwrap().unwrap();
        let shots = want["shots"].as_u64().unwrap() as usize;
        assert_eq!(task.shots(Some(shots)), shots, "{name}");
        let (items, _) = task.items(shots, None, 1234).unwrap();
        let want_items = want["items"].as_array().unwrap();
        assert_eq!(items.len(), want_items.len(), "{name}");
        for (item, w) in items.iter().zip(want_items) {
            let got: Vec<Value> = if task.config.output_type_name() == "generate_until" {
                let until = task
                    .config
                    .generation_kwargs
                    .as_ref()
                    .and_then(|g| g.until.as_ref())
                    .map(|u| u.to_vec())
                    .unwrap();
                vec![serde_json::json!([item.prompt, until])]
            } else {
                item.requests
                    .iter()
                    .map(|(c, k)| serde_json::json!([c, k]))
                    .collect()
            };
            assert_eq!(
                &got,
                w.as_array().unwrap(),
                "{name} document {}",
                item.doc_id
            );
        }
    }
}

#[test]
fn groups_resolve_and_bad_task_files_name_the_field() {
    let no_bigbench = || -> Result<PathBuf, String> { Err("not needed".into()) };
    let plan = suite::resolve("mmlu_stem,truthfulqa_mc2", &no_bigbench, &local).unwrap();
    assert_eq!(plan.tasks.len(), 20);
    assert_eq!(plan.groups[0].name, "mmlu_stem");
    assert!(plan.groups[0].weight_by_size);

    let dir = std::env::temp_dir().join(format!("huarizo-harness-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"2+2?\", \"a\": \"4\"}\n").unwrap();
    let bad = [
        ("typo.yaml", "task: t\ndataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\ndoc_to_txt: '{{q}}'\ndoc_to_target: a\n", "doc_to_txt"),
        ("metric.yaml", "task: t\ndataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\ndoc_to_text: '{{q}}'\ndoc_to_target: a\nmetric_list: [{metric: bleu}]\n", "bleu"),
        ("func.yaml", "task: t\ndoc_to_text: !function utils.doc_to_text\n", "!function"),
        ("nodata.yaml", "task: t\ndataset_path: json\ndataset_kwargs: {data_files: {test: missing.jsonl}}\ndoc_to_text: '{{q}}'\ndoc_to_target: a\n", "missing.jsonl"),
    ];
    for (file, yaml, needle) in bad {
        let path = dir.join(file);
        std::fs::write(&path, yaml).unwrap();
        let err = match suite::resolve(path.to_str().unwrap(), &no_bigbench, &local) {
            Err(e) => e.to_string(),
            Ok(plan) => match &plan.tasks[0].kind {
                suite::TaskKind::Harness(t) => t.items(0, None, 1234).unwrap_err().to_string(),
                _ => panic!("{file}: not a harness task"),
            },
        };
        assert!(err.contains(file) && err.contains(needle), "{file}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
