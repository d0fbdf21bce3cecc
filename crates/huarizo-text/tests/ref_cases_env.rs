//! Bulk comparison with llama.cpp on a case file named by `HUARIZO_TOKEN_CASES`:
//! `{"<model path relative to $HUARIZO_TESTDATA>": [{"text": …, "--": ids, "-p": ids,
//! "a-": ids, "ap": ids}, …]}` (keys: add_special `a`, parse_special `p`). Ignored by
//! default; produce such a file with llama-cpp-python like `scripts/ref_tokens.py` and
//! run `HUARIZO_TOKEN_CASES=cases.json cargo test --release -p huarizo-text --test
//! ref_cases_env -- --ignored --nocapture`.

use std::path::PathBuf;

use huarizo_formats::GgufFile;
use huarizo_text::Tokenizer;
use serde_json::Value;

#[test]
#[ignore = "needs HUARIZO_TOKEN_CASES"]
fn token_cases_from_env_match_llama_cpp() {
    let cases_path =
        std::env::var("HUARIZO_TOKEN_CASES").expect("set HUARIZO_TOKEN_CASES to a case file");
    let root = std::env::var_os("HUARIZO_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                .join(".cache/huarizo/testdata")
        });
    let all: Value = serde_json::from_str(&std::fs::read_to_string(cases_path).unwrap()).unwrap();
    let mut failures = Vec::new();
    for (model, cases) in all.as_object().unwrap() {
        let file = GgufFile::open(&root.join(model)).unwrap();
        let tok = Tokenizer::from_gguf(&file).unwrap();
        let mut bad = 0;
        for case in cases.as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            for (key, add, parse) in [
                ("--", false, false),
                ("-p", false, true),
                ("a-", true, false),
                ("ap", true, true),
            ] {
                let want: Vec<u32> = case[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect();
                let got = tok.encode(text, add, parse);
                if got != want {
                    bad += 1;
                    failures.push(format!(
                        "{model}: {text:?} ({key})\n  want {want:?}\n  got  {got:?}"
                    ));
                }
            }
        }
        eprintln!(
            "{model}: {} cases, {bad} mismatches",
            cases.as_array().unwrap().len() * 4
        );
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
