//! The decoder against llama.cpp on the three real models: from llama.cpp's own prompt
//! tokens (tests/reference/*.json, made by scripts/ref_llama_cpp.py), huarizo's greedy
//! tokens must equal llama.cpp's for the first 16 steps on ≥ 11 of 12 prompts, and its top-1
//! token must agree at ≥ 98% of positions when fed llama.cpp's continuation.
//!
//! Each model has two references, one from a llama.cpp built for AVX-512 (`<model>.json`)
//! and one from a build for AVX2 (`<model>.avx2.json`); huarizo is run in the matching
//! order ([`huarizo_model::set_ggml_isa`]) for each, and its logits at the reference's
//! top-5 tokens must be llama.cpp's bit for bit.

use huarizo_model::{set_ggml_isa, GgmlIsa, Logits, Model, State, ThreadPool};
use std::path::PathBuf;
use std::sync::Mutex;

/// The ISA choice is process-wide: one reference check runs at a time.
static ISA: Mutex<()> = Mutex::new(());

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Checks a model against its reference `file` (under tests/reference) and returns (exact
/// prompts, prompts, agreeing positions, positions, largest difference of a top-5 logit).
fn check(model: &Model, file: &str) -> (usize, usize, usize, usize, f32) {
    let pool = ThreadPool::new(2);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/reference/{file}"));
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let isa = GgmlIsa::parse(reference["ggml_isa"].as_str().unwrap()).unwrap();
    set_ggml_isa(isa);
    let name = format!("{file} ({isa:?})");
    let records = reference["records"].as_array().unwrap();
    let (mut exact, mut agree, mut total) = (0, 0, 0);
    let mut max_diff = 0f32;
    for rec in records {
        let prompt = ids(&rec["prompt_tokens"]);
        let want = ids(&rec["tokens"]);

        let mut state = State::new(&model.config, 512);
        let mut next = argmax(
            model
                .forward(&pool, &mut state, &prompt, Logits::Last)
                .unwrap(),
        );
        let mut got = vec![next];
        while got.len() < 16 {
            next = argmax(
                model
                    .forward(&pool, &mut state, &[next], Logits::Last)
                    .unwrap(),
            );
            got.push(next);
        }
        if got[..] == want[..16] {
            exact += 1;
        } else {
            eprintln!(
                "{name} {:?}:\n  huarizo   {got:?}\n  llama.cpp {:?}",
                rec["prompt"],
                &want[..16]
            );
        }

        // Teacher-forced along llama.cpp's continuation, one token at a time as the
        // reference was made.
        let mut state = State::new(&model.config, 512);
        let mut logits = model
            .forward(&pool, &mut state, &prompt, Logits::Last)
            .unwrap()
            .to_vec();
        for (i, &w) in want.iter().enumerate() {
            total += 1;
            for pair in rec["top5"][i].as_array().unwrap() {
                let (id, value) = (pair[0].as_u64().unwrap(), pair[1].as_f64().unwrap());
                let diff = (logits[id as usize] - value as f32).abs();
                if diff > max_diff {
                    eprintln!(
                        "{name} {:?} step {i}: logit difference {diff}",
                        rec["prompt"]
                    );
                }
                max_diff = max_diff.max(diff);
            }
            let got = argmax(&logits);
            if got == w {
                agree += 1;
            } else {
                let top = &rec["top5"][i];
                eprintln!(
                    "{name} {:?} step {i}: huarizo {got} llama.cpp top5 {top}",
                    rec["prompt"]
                );
            }
            logits.copy_from_slice(
                model
                    .forward(&pool, &mut state, &[w], Logits::Last)
                    .unwrap(),
            );
        }
    }
    eprintln!(
        "{name}: {exact}/{} prompts exact for 16 tokens; top-1 agreement {agree}/{total}; \
         largest top-5 logit difference {max_diff}",
        records.len()
    );
    (exact, records.len(), agree, total, max_diff)
}

/// Asserts at least `min_exact` prompts with the 16-token greedy prefix equal and a top-1
/// agreement rate of at least `min_agree` (issue 2 asks for 11/12 and 0.98; huarizo
/// reproduces llama.cpp's arithmetic, so the floors are the measured 12/12 and 1.0).
fn assert_agreement(
    result: (usize, usize, usize, usize, f32),
    min_exact: usize,
    min_agree: f64,
    max_logit_diff: f32,
) {
    let (exact, n, agree, total, max_diff) = result;
    assert!(
        max_diff <= max_logit_diff,
        "logits differ from llama.cpp's by {max_diff} (allowed {max_logit_diff})"
    );
    assert!(
        exact >= min_exact,
        "only {exact}/{n} prompts exact (floor {min_exact})"
    );
    let rate = agree as f64 / total as f64;
    assert!(
        rate >= min_agree,
        "top-1 agreement {agree}/{total} < {min_agree}"
    );
}

/// Checks `model_file` against both of its references (AVX-512 and AVX2 builds): 12/12
/// prompts and 384/384 positions on each, and top-5 logits bit-identical except where
/// `avx512_diff` allows a measured difference.
fn check_both(model_file: &str, name: &str, avx512_diff: f32, avx2_diff: f32) {
    let _one_at_a_time = ISA.lock().unwrap_or_else(|e| e.into_inner());
    let model = Model::load(&huarizo_testdata::file(model_file)).unwrap();
    assert_agreement(check(&model, &format!("{name}.json")), 12, 1.0, avx512_diff);
    assert_agreement(
        check(&model, &format!("{name}.avx2.json")),
        12,
        1.0,
        avx2_diff,
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_both("smollm2.gguf", "smollm2", 0.0, 0.0);
}

#[test]
fn qwen2_matches_llama_cpp() {
    check_both("qwen.gguf", "qwen", 0.0, 0.0);
}

#[test]
fn gemma3_matches_llama_cpp() {
    // Against the AVX-512 build, one prompt ("1, 2, 3, 4, 5, 6,", 17 tokens) differs by up
    // to 0.37 in its top-5 logits from the first step on (all tokens still agree); the
    // same prompt is bit-identical against the AVX2 build. Finding the AVX-512-only path
    // behind it needs an AVX-512 machine. Against the AVX2 build, the fibonacci prompt
    // (19 tokens) differs from its 9th one-token step on (position 27; up to 1.8 in a top-5
    // logit, all tokens still agree), while the same positions are bit-identical when the
    // context goes in as one batch: a single-token path of Gemma's (K/V of positions
    // 19–26) is not yet llama.cpp's order on AVX2.
    check_both("gemma3.gguf", "gemma3", 0.4, 2.0);
}
