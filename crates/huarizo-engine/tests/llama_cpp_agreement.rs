//! The whole engine (tokenizer, decoder, greedy sampling) against llama.cpp on SmolLM2:
//! the prompts must tokenize to llama.cpp's ids, and the greedy continuations must equal
//! llama.cpp's for the first 16 tokens on every prompt (issue 2 asks for 11 of 12; huarizo
//! computes SmolLM2's logits bit for bit as llama.cpp does, so all 12 match). References: tests/reference (made by
//! scripts/ref_llama_cpp.py, one from an AVX-512 build of llama.cpp and one from an AVX2
//! build, each checked in the matching order); the model comes from scripts/fetch-testdata.sh.

use huarizo_engine::{
    set_ggml_isa, Engine, EngineOptions, GenerateParams, GgmlIsa, SamplingParams,
};
use std::ops::ControlFlow;
use std::path::PathBuf;

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn smollm2_prompts_and_greedy_tokens_match_llama_cpp() {
    let engine = Engine::load(
        &huarizo_testdata::file("smollm2.gguf"),
        &EngineOptions {
            n_threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    for file in ["smollm2.json", "smollm2.avx2.json"] {
        check(&engine, file);
    }
}

fn check(engine: &Engine, file: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/reference")
        .join(file);
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    set_ggml_isa(GgmlIsa::parse(reference["ggml_isa"].as_str().unwrap()).unwrap());
    let records = reference["records"].as_array().unwrap();
    let mut exact = 0;
    for rec in records {
        let prompt = rec["prompt"].as_str().unwrap();
        let tokens = engine.tokenize_prompt(prompt);
        assert_eq!(
            tokens,
            ids(&rec["prompt_tokens"]),
            "prompt tokens of {prompt:?}"
        );
        let want = ids(&rec["tokens"]);
        let mut state = engine.new_state(512);
        let params = GenerateParams {
            sampling: SamplingParams::greedy(),
            max_tokens: 16,
            stop_at_eog: false,
            ..Default::default()
        };
        let g = engine
            .generate(&mut state, &mut Vec::new(), &tokens, &params, |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
        if g.tokens[..] == want[..16] {
            exact += 1;
        } else {
            eprintln!(
                "{prompt:?}: huarizo {:?} vs llama.cpp {:?}",
                g.tokens,
                &want[..16]
            );
        }
    }
    eprintln!(
        "{file}: {exact}/{} prompts exact for 16 tokens",
        records.len()
    );
    assert!(
        exact == records.len(),
        "only {exact}/{} prompts match llama.cpp",
        records.len()
    );
}
