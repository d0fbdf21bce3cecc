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

/// A user's own task files (YAML and JSON) and the perplexity of a text file, run on
/// SmolLM2: each metric agrees with the per-item log-likelihoods it is computed from.
#[test]
fn user_tasks_and_perplexity_on_smollm2() {
    use huarizo_engine::{Engine, EngineOptions};
    use huarizo_eval::{Evaluator, Rolling, RunOptions};

    let dir = std::env::temp_dir().join(format!("huarizo-user-task-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("qa.jsonl"),
        "{\"q\": \"The capital of France is\", \"options\": [\"Paris\", \"a banana\", \"Berlin\"], \"gold\": 0}\n\
         {\"q\": \"Two plus two is\", \"options\": [\"seven\", \"four\"], \"gold\": 1}\n\
         {\"q\": \"The sky on a clear day is\", \"options\": [\"green\", \"blue\", \"plaid\"], \"gold\": 1}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("mc.yaml"),
        "task: my_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: qa.jsonl\n\
         output_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: options\ndoc_to_target: gold\n\
         metric_list:\n  - metric: acc\n  - metric: acc_norm\n  - metric: acc_bytes\n",
    )
    .unwrap();
    // A YAML that includes another and overrides a key (lm-eval's `include:`).
    std::fs::write(
        dir.join("mc_norm.yaml"),
        "include: mc.yaml\ntask: my_mc_norm\nmetric_list: [{metric: acc_norm}]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ll.json"),
        r#"{"task": "my_ll", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": "qa.jsonl"}},
            "output_type": "loglikelihood", "doc_to_text": "{{q}}", "doc_to_target": "{{' ' + options[gold]}}",
            "metric_list": [{"metric": "perplexity"}, {"metric": "acc"}]}"#,
    )
    .unwrap();
    let text = "Once upon a time there was a little cat.\nIt liked milk and naps in the sun. ";
    std::fs::write(dir.join("story.txt"), text).unwrap();
    let no_bigbench = || -> Result<PathBuf, String> { Err("not needed".into()) };
    let names = format!(
        "{},{},{},perplexity:{}",
        dir.join("mc.yaml").display(),
        dir.join("mc_norm.yaml").display(),
        dir.join("ll.json").display(),
        dir.join("story.txt").display()
    );
    let plan = suite::resolve(&names, &no_bigbench, &local).unwrap();
    let engine = Engine::load(
        &huarizo_testdata::file("smollm2.gguf"),
        &EngineOptions {
            n_threads: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let ev = Evaluator::new(&engine, RunOptions::default());
    let out = suite::run(
        &ev,
        &plan,
        &suite::SuiteOptions {
            shots: None,
            limit: None,
            seed: None,
        },
    )
    .unwrap();
    let [mc, mc_norm, ll, ppl] = &out.results[..] else {
        panic!("four tasks expected");
    };
    assert_eq!(mc_norm.name, "my_mc_norm");
    assert_eq!(mc_norm.metrics.len(), 1);
    assert_eq!(mc.name, "my_mc");
    let metric = |t: &huarizo_eval::tasks::TaskResult, name: &str| {
        t.metrics.iter().find(|m| m.name == name).unwrap().value
    };
    // acc, acc_norm and acc_bytes from each item's log-likelihoods.
    let (mut acc, mut norm, mut bytes) = (0.0, 0.0, 0.0);
    let gold = [0, 1, 1];
    for (s, g) in mc.samples.iter().zip(gold) {
        assert!(
            s.choices.iter().all(|c| c.starts_with(' ')),
            "{:?}",
            s.choices
        );
        let best = |f: &dyn Fn(usize) -> f64| {
            (0..s.logprobs.len()).fold(0, |b, i| if f(i) > f(b) { i } else { b })
        };
        acc += f64::from(u8::from(best(&|i| s.logprobs[i]) == g));
        let chars = |i: usize| s.choices[i].trim_start().chars().count() as f64;
        norm += f64::from(u8::from(best(&|i| s.logprobs[i] / chars(i)) == g));
        let blen = |i: usize| s.choices[i].trim_start().len() as f64;
        bytes += f64::from(u8::from(best(&|i| s.logprobs[i] / blen(i)) == g));
    }
    assert!((metric(mc, "acc") - acc / 3.0).abs() < 1e-12);
    assert!((metric(mc, "acc_norm") - norm / 3.0).abs() < 1e-12);
    assert_eq!(metric(mc_norm, "acc_norm"), metric(mc, "acc_norm"));
    assert!((metric(mc, "acc_bytes") - bytes / 3.0).abs() < 1e-12);
    assert!(
        metric(mc, "acc") >= 2.0 / 3.0,
        "SmolLM2 knows at least two of these"
    );
    // perplexity = exp(−mean log-likelihood of the gold continuation).
    let lls: Vec<f64> = ll.samples.iter().map(|s| s.logprobs[0]).collect();
    let want = (-lls.iter().sum::<f64>() / 3.0).exp();
    assert!((metric(ll, "perplexity") - want).abs() < 1e-9 * want);
    // Perplexity of the file: word count as lm-eval's (edge whitespace counts).
    let r = ev.rolling(&[Rolling { text: text.into() }]).unwrap()[0];
    let words = 18.0;
    assert!((metric(ppl, "word_perplexity") - (-r.logprob / words).exp()).abs() < 1e-9);
    let bpb = -(r.logprob / text.len() as f64) / std::f64::consts::LN_2;
    assert!((metric(ppl, "bits_per_byte") - bpb).abs() < 1e-12);
    std::fs::remove_dir_all(&dir).unwrap();
}
