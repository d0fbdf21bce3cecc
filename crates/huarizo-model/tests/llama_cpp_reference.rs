//! The decoder against llama.cpp on the three real models: from llama.cpp's own prompt
//! tokens (tests/reference/*.json, made by scripts/ref_llama_cpp.py), huarizo's greedy
//! tokens must equal llama.cpp's for the first 16 steps on ≥ 11 of 12 prompts, and its top-1
//! token must agree at ≥ 98% of positions when fed llama.cpp's continuation.
//!
//! Each model has two references with every prompt row's logits, one from a llama.cpp built
//! for AVX-512 (`<model>.json`) and one from a build for AVX2 (`<model>.avx2.json`), and one
//! with the prompt's last row's only (`<model>.last.json`, AVX-512); huarizo is run in the matching
//! order ([`huarizo_model::set_ggml_isa`]) for each, and its logits at the reference's
//! top-5 tokens must be llama.cpp's bit for bit.

use huarizo_model::{
    set_arithmetic, set_ggml_isa, Arithmetic, GgmlIsa, Logits, Model, State, ThreadPool,
};
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

/// Checks a model against its reference `file` (under tests/reference), in the reference
/// build's orders with the quantized products summed as `arithmetic` says, and returns
/// (exact prompts, prompts, agreeing positions, positions, largest difference of a top-5
/// logit).
fn check(model: &Model, file: &str, arithmetic: Arithmetic) -> (usize, usize, usize, usize, f32) {
    check_with(model, file, arithmetic, Logits::Last)
}

/// The last row of the logits of `prompt` computed with `which` (llama-cpp-python's
/// `logits_all` computes the output product for every prompt row, which for F32 weights
/// is a batched product in another order than one row's).
fn prompt_logits(
    model: &Model,
    pool: &ThreadPool,
    state: &mut State,
    prompt: &[u32],
    which: Logits,
) -> Vec<f32> {
    let all = model.forward(pool, state, prompt, which).unwrap();
    all[all.len() - model.config.n_vocab..].to_vec()
}

/// [`check`] with the prompt's logits computed as `prompt_rows` says.
fn check_with(
    model: &Model,
    file: &str,
    arithmetic: Arithmetic,
    prompt_rows: Logits,
) -> (usize, usize, usize, usize, f32) {
    let pool = ThreadPool::new(2);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/reference/{file}"));
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let isa = GgmlIsa::parse(reference["ggml_isa"].as_str().unwrap()).unwrap();
    set_ggml_isa(isa);
    set_arithmetic(arithmetic);
    let name = format!("{file} ({isa:?}, {})", arithmetic.name());
    let records = reference["records"].as_array().unwrap();
    let (mut exact, mut agree, mut total) = (0, 0, 0);
    let mut max_diff = 0f32;
    for rec in records {
        let prompt = ids(&rec["prompt_tokens"]);
        let want = ids(&rec["tokens"]);

        let mut state = State::new(&model.config, 512);
        let mut next = argmax(&prompt_logits(
            model,
            &pool,
            &mut state,
            &prompt,
            prompt_rows,
        ));
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
        let mut logits = prompt_logits(model, &pool, &mut state, &prompt, prompt_rows);
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
/// `avx512_diff` allows a measured difference. Then, in the opt-in block-sum order
/// (`HUARIZO_ARITHMETIC=block-sums`) against the AVX-512 reference: at least
/// `block_sums_exact` prompts (the measured figure; llama.cpp's own AVX2 build matches its
/// AVX-512 build on 8, 10 and 8 of 12 for SmolLM2, Qwen and Gemma), 98% of positions, and
/// top-5 logits within `block_sums_diff` (about 1.5× the measured largest difference).
fn check_both(
    model_file: &str,
    name: &str,
    avx512_diff: f32,
    avx2_diff: f32,
    (block_sums_exact, block_sums_diff): (usize, f32),
) {
    let _one_at_a_time = ISA.lock().unwrap_or_else(|e| e.into_inner());
    let model = Model::load(&huarizo_testdata::file(model_file)).unwrap();
    let file = format!("{name}.json");
    // These references hold every prompt row's logits (`logits_all`), so every row runs
    // through the last layer; `.last.json` holds the last row's only, as llama.cpp
    // computes a prompt for generation.
    let all = |file: &str| check_with(&model, file, Arithmetic::Ggml, Logits::All);
    assert_agreement(all(&file), 12, 1.0, avx512_diff);
    assert_agreement(all(&format!("{name}.avx2.json")), 12, 1.0, avx2_diff);
    assert_agreement(
        check(&model, &format!("{name}.last.json"), Arithmetic::Ggml),
        12,
        1.0,
        0.0,
    );
    let block_sums = check(&model, &file, Arithmetic::BlockSums);
    assert_agreement(block_sums, block_sums_exact, 0.98, block_sums_diff);
}

#[test]
fn smollm2_matches_llama_cpp() {
    // Block sums measured: 8/12, 378/384, largest difference 1.05.
    check_both("smollm2.gguf", "smollm2", 0.0, 0.0, (8, 1.6));
}

#[test]
fn qwen2_matches_llama_cpp() {
    // Block sums measured: 11/12, 381/384, largest difference 0.46.
    check_both("qwen.gguf", "qwen", 0.0, 0.0, (11, 0.7));
}

#[test]
fn gemma3_matches_llama_cpp() {
    // Exact on both builds since q is scaled before its f16 rounding, as llama.cpp's Gemma
    // graph does (before, the "1, 2, 3, 4, 5, 6," prompt differed by 0.37 against the
    // AVX-512 build and the fibonacci prompt by 1.8 against the AVX2 build).
    // Block sums measured: 8/12, 377/384, largest difference 1.76.
    check_both("gemma3.gguf", "gemma3", 0.0, 0.0, (8, 2.6));
}

/// Checks `file` (tests/reference/<name>_batch.<isa>.json, made by
/// scripts/ref_batch_logits.py): each batch of a text's first tokens goes in at once, as
/// llama-perplexity evaluates a chunk, and the logits at llama.cpp's top-5 tokens of every
/// position must be llama.cpp's bit for bit.
fn check_batches(model: &Model, file: &str) {
    let pool = ThreadPool::new(2);
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/reference/{file}"));
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    set_ggml_isa(GgmlIsa::parse(reference["ggml_isa"].as_str().unwrap()).unwrap());
    for batch in reference["batches"].as_array().unwrap() {
        let tokens = ids(&batch["tokens"]);
        let mut state = State::new(&model.config, tokens.len());
        let logits = model
            .forward(&pool, &mut state, &tokens, Logits::All)
            .unwrap()
            .to_vec();
        let n_vocab = logits.len() / tokens.len();
        let mut max_diff = 0f32;
        for (pos, top) in batch["top5"].as_array().unwrap().iter().enumerate() {
            for pair in top.as_array().unwrap() {
                let (id, value) = (pair[0].as_u64().unwrap(), pair[1].as_f64().unwrap());
                max_diff = max_diff.max((logits[pos * n_vocab + id as usize] - value as f32).abs());
            }
        }
        assert_eq!(
            max_diff,
            0.0,
            "{file}: a batch of {} tokens differs from llama.cpp's by {max_diff}",
            tokens.len()
        );
    }
}

#[test]
fn gemma3_batches_match_llama_cpp() {
    // Batches of 64 and 256 tokens, as llama-perplexity evaluates chunks of --ctx 64 and
    // 256 (with q scaled after its f16 rounding, the 64-token batch differed from layer 6
    // on, where some q/16 are f16 subnormals).
    let _one_at_a_time = ISA.lock().unwrap_or_else(|e| e.into_inner());
    let model = Model::load(&huarizo_testdata::file("gemma3.gguf")).unwrap();
    check_batches(&model, "gemma3_batch.avx2.json");
}

/// The full-precision path ([`huarizo_model::Precision::F32`]: every weight widened to F32
/// at load, activations in f32) against transformers in float32 on the same weights
/// (tests/reference/<name>.transformers.json, made by scripts/ref_transformers.py), the
/// way the default path is checked against llama.cpp: at least `min_exact` of 12 prompts
/// with the same 16 greedy tokens, at least `min_agree` of positions with the same top-1
/// token along transformers' continuation, and top-5 logits within `max_diff` (about 1.5×
/// the measured largest difference; the weights as stored differ by up to 1.35).
fn check_transformers(
    model_file: &str,
    name: &str,
    min_exact: usize,
    min_agree: f64,
    max_diff: f32,
) {
    let _one_at_a_time = ISA.lock().unwrap_or_else(|e| e.into_inner());
    let file = huarizo_formats::GgufFile::open(&huarizo_testdata::file(model_file)).unwrap();
    let model = Model::from_gguf(huarizo_model::widen_to_f32(file).unwrap()).unwrap();
    let result = check(
        &model,
        &format!("{name}.transformers.json"),
        Arithmetic::Ggml,
    );
    assert_agreement(result, min_exact, min_agree, max_diff);
}

#[test]
fn smollm2_f32_matches_llama_cpp_on_an_f32_copy() {
    // tests/reference/smollm2_f32.json: llama-cpp-python (AVX-512 build) on the file
    // converted to F32, made by scripts/ref_llama_cpp.py. F32 products take ggml's
    // `vec_dot_f32` order for one activation row and tinyBLAS's for more.
    let _one_at_a_time = ISA.lock().unwrap_or_else(|e| e.into_inner());
    let file = huarizo_formats::GgufFile::open(&huarizo_testdata::file("smollm2.gguf")).unwrap();
    let model = Model::from_gguf(huarizo_model::widen_to_f32(file).unwrap()).unwrap();
    let result = check_with(&model, "smollm2_f32.json", Arithmetic::Ggml, Logits::All);
    assert_agreement(result, 12, 1.0, 0.0);
    // Without `logits_all` the last layer's feed-forward is a batch of one row, in
    // `vec_dot_f32`'s order (the prompt's first logits differ from the file above by
    // up to 7.6e-6).
    let result = check(&model, "smollm2_f32.last.json", Arithmetic::Ggml);
    assert_agreement(result, 12, 1.0, 0.0);
}

#[test]
fn smollm2_f32_matches_transformers() {
    // Measured: 12/12, 384/384, largest difference 0.014 (weights as stored, for
    // comparison: 10/12, 375/384, 1.35).
    check_transformers("smollm2.gguf", "smollm2", 12, 1.0, 0.022);
}

#[test]
fn qwen2_f32_matches_transformers() {
    // Measured: 12/12, 384/384, largest difference 0.047 (as stored: 9/12, 376/384, 0.46).
    // The German prompt's step 6 is a near-tie in transformers itself (8.2519 against
    // 8.2461): with ggml's f32 dot products summed in AVX2's order instead of AVX-512's,
    // huarizo took the other token there (11/12).
    check_transformers("qwen.gguf", "qwen", 11, 0.99, 0.07);
}

#[test]
fn gemma3_f32_matches_transformers() {
    // Measured: 12/12, 384/384, largest difference 0.032 (as stored: 8/12, 378/384, 1.57).
    check_transformers("gemma3.gguf", "gemma3", 12, 1.0, 0.048);
}
