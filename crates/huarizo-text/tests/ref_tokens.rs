//! The three test models against llama.cpp itself: `tests/fixtures/ref_tokens.json`
//! (made by `scripts/ref_tokens.py` through llama-cpp-python) holds llama_tokenize's
//! ids for varied strings under every add_special/parse_special combination, the
//! pieces of those ids, and the end-of-generation set.

use std::path::PathBuf;

use huarizo_formats::GgufFile;
use huarizo_text::Tokenizer;
use serde_json::Value;

fn testdata() -> PathBuf {
    let root = std::env::var_os("HUARIZO_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                .join(".cache/huarizo/testdata")
        });
    assert!(
        root.is_dir(),
        "{} is missing: run scripts/fetch-testdata.sh",
        root.display()
    );
    root
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn check_model(name: &str) {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/ref_tokens.json")).unwrap();
    let want = &fixture["models"][name];
    let path = testdata().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-testdata.sh",
        path.display()
    );
    let file = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();

    assert_eq!(
        tok.n_vocab() as u64,
        want["n_vocab"].as_u64().unwrap(),
        "{name}: n_vocab"
    );
    assert_eq!(
        tok.bos().map(u64::from),
        want["bos"].as_u64(),
        "{name}: bos"
    );
    assert_eq!(
        tok.eos().map(u64::from),
        want["eos"].as_u64(),
        "{name}: eos"
    );
    assert_eq!(
        tok.add_bos(),
        want["add_bos"].as_bool().unwrap(),
        "{name}: add_bos"
    );
    assert_eq!(
        tok.add_eos(),
        want["add_eos"].as_bool().unwrap(),
        "{name}: add_eos"
    );
    assert_eq!(
        tok.eog_tokens().collect::<Vec<_>>(),
        ids(&want["eog"]),
        "{name}: end-of-generation ids"
    );

    let mut failures = Vec::new();
    let cases = want["cases"].as_array().unwrap();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        for (key, add_special, parse_special) in [
            ("--", false, false),
            ("-p", false, true),
            ("a-", true, false),
            ("ap", true, true),
        ] {
            let expected = ids(&case[key]);
            let got = tok.encode(text, add_special, parse_special);
            if got != expected {
                failures.push(format!(
                    "{text:?} add_special={add_special} parse_special={parse_special}\n  want {expected:?}\n  got  {got:?}"
                ));
            }
        }
    }
    for (id, hex) in want["pieces"].as_object().unwrap() {
        let id: u32 = id.parse().unwrap();
        let hex = hex.as_str().unwrap();
        let expected: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        if tok.token_bytes(id) != expected.as_slice() {
            failures.push(format!(
                "piece of {id}: want {expected:?}, got {:?}",
                tok.token_bytes(id)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} mismatches with llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model("smollm2.gguf");
}

#[test]
fn qwen_matches_llama_cpp() {
    check_model("qwen.gguf");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model("gemma3.gguf");
}
