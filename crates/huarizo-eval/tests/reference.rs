//! huarizo eval against lm-evaluation-harness running llama.cpp's arithmetic
//! (llama-cpp-python's low-level API) on the same GGUF, item by item: the prompts and
//! choices of four BIG-bench JSON tasks and of the arc- and hellaswag-style fixture
//! datasets, scored by both. The fixtures tests/reference/eval_<model>.json are made by
//! `tests/eval/make_reference.sh <model>` (huarizo eval --log-samples, then
//! tests/eval/lm_eval_llama_cpp.py, then tests/eval/make_reference.py).

use huarizo_engine::{Engine, EngineOptions};
use huarizo_eval::{Evaluator, Loglikelihood, RunOptions};
use std::collections::BTreeMap;
use std::path::Path;

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Per task: items, per-choice |Δ| (nats), same choice, huarizo right, reference right.
#[derive(Default, Debug)]
struct Agreement {
    items: usize,
    diffs: Vec<f64>,
    same: usize,
    ours_right: usize,
    ref_right: usize,
}

fn check(model: &str) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../tests/reference/eval_{model}.json"));
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    let items = reference["items"].as_array().unwrap();
    let engine = Engine::load(
        &huarizo_testdata::file(&format!("{model}.gguf")),
        &EngineOptions { n_threads: 0 },
    )
    .unwrap();
    let ev = Evaluator::new(&engine, RunOptions::default());
    let mut requests = Vec::new();
    for it in items {
        for c in it["choices"].as_array().unwrap() {
            requests.push(Loglikelihood {
                context: it["prompt"].as_str().unwrap().to_string(),
                continuation: c.as_str().unwrap().to_string(),
            });
        }
    }
    let got = ev.loglikelihood(&requests).unwrap();
    let mut at = 0;
    let mut tasks: BTreeMap<String, Agreement> = BTreeMap::new();
    for it in items {
        let lp_ref: Vec<f64> = it["reference_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let ours: Vec<f64> = got[at..at + lp_ref.len()]
            .iter()
            .map(|r| r.logprob)
            .collect();
        at += lp_ref.len();
        let scores: Vec<f64> = it["choice_scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let a = tasks
            .entry(it["task"].as_str().unwrap().to_string())
            .or_default();
        a.items += 1;
        a.diffs
            .extend(ours.iter().zip(&lp_ref).map(|(x, y)| (x - y).abs()));
        a.same += usize::from(argmax(&ours) == argmax(&lp_ref));
        a.ours_right += usize::from(scores[argmax(&ours)] > 0.0);
        a.ref_right += usize::from(scores[argmax(&lp_ref)] > 0.0);
    }
    let mut all: Vec<f64> = Vec::new();
    let (mut items_n, mut same_n) = (0, 0);
    for (task, a) in &tasks {
        let mut d = a.diffs.clone();
        d.sort_by(f64::total_cmp);
        eprintln!(
            "{model} {task}: {} items, |Δ| median {:.4} max {:.4} nats, within 0.05: {:.1}%, same choice {}/{}, acc {:.3} vs {:.3}",
            a.items,
            d[d.len() / 2],
            d[d.len() - 1],
            100.0 * d.iter().filter(|&&x| x <= 0.05).count() as f64 / d.len() as f64,
            a.same,
            a.items,
            a.ours_right as f64 / a.items as f64,
            a.ref_right as f64 / a.items as f64,
        );
        // The fixture sets (4–6 items) move a whole item per disagreement.
        let gap = (a.ours_right as f64 - a.ref_right as f64).abs() / a.items as f64;
        assert!(
            a.items < 20 || gap <= MAX_ACC_GAP + 1e-9,
            "{model} {task}: accuracy differs by {gap}"
        );
        all.extend(&a.diffs);
        items_n += a.items;
        same_n += a.same;
    }
    all.sort_by(f64::total_cmp);
    let within = all.iter().filter(|&&x| x <= 0.05).count() as f64 / all.len() as f64;
    eprintln!(
        "{model}: {} choices, {:.1}% within 0.05 nats, max {:.4}; same choice {same_n}/{items_n}",
        all.len(),
        100.0 * within,
        all[all.len() - 1]
    );
    let median = all[all.len() / 2];
    assert!(
        same_n as f64 >= MIN_SAME * items_n as f64,
        "{model}: same choice on {same_n} of {items_n}"
    );
    assert!(
        median <= MAX_MEDIAN,
        "{model}: median per-choice difference {median} nats"
    );
}

// The agreement measured with llama-cpp-python 0.3.36 (2026-12-02), as a floor against
// regressions. It is short of issue 5's bar (0.05 nats per item, 98% same choice, 1
// point): this llama.cpp build's logits drift from huarizo's (and from its own
// one-token-at-a-time logits) after about ten positions; see docs/EVAL.md.
/// Largest median |Δ| per choice (nats); measured 0.10 (SmolLM2), 0.05 (Qwen).
const MAX_MEDIAN: f64 = 0.2;
/// Least share of items where both pick the same choice; measured 0.97 (SmolLM2), 0.98
/// (Qwen).
const MIN_SAME: f64 = 0.9;
/// Largest accuracy gap per task of 20 items or more; measured 0.04 (SmolLM2,
/// strategyqa), 0.05 (Qwen, logical_deduction:three_objects).
const MAX_ACC_GAP: f64 = 0.06;

/// Both models in one test: two engines in parallel test threads would share the two
/// cores and spin against each other.
#[test]
fn smollm2_and_qwen_match_lm_eval_on_llama_cpp() {
    check("smollm2");
    check("qwen");
}
