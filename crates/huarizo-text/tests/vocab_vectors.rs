//! llama.cpp's tokenizer test vectors (`models/ggml-vocab-*.gguf` with `.inp`/`.out`),
//! run the way `tests/test-tokenizer-0.cpp` runs them: `add_special = false`,
//! `parse_special = false`, every line must match.

use std::path::PathBuf;

use huarizo_formats::GgufFile;
use huarizo_text::{TextError, Tokenizer};

/// Vocabularies with vectors that we do not tokenize, and why.
const UNSUPPORTED: &[(&str, &str)] = &[(
    "ggml-vocab-bert-bge.gguf",
    "WordPiece (tokenizer.ggml.model = bert) is out of scope",
)];

fn models_dir() -> PathBuf {
    let root = std::env::var_os("HUARIZO_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"))
                .join(".cache/huarizo/testdata")
        });
    let dir = root.join("llama.cpp-models");
    assert!(
        dir.is_dir(),
        "{} is missing: run scripts/fetch-testdata.sh",
        dir.display()
    );
    dir
}

/// The test strings: the `.inp` file split at `\n__ggml_vocab_test__\n`.
fn read_inputs(raw: &str) -> Vec<&str> {
    const SEP: &str = "\n__ggml_vocab_test__\n";
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        match rest.find(SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => {
                out.push(rest);
                break;
            }
        }
    }
    out
}

#[test]
fn llama_cpp_vocab_vectors() {
    let dir = models_dir();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".gguf.inp"))
        .collect();
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "no .inp files in {}: run scripts/fetch-testdata.sh",
        dir.display()
    );

    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for inp in inputs {
        let gguf_path = inp.with_extension("");
        let name = gguf_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let file = GgufFile::open(&gguf_path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tok = match Tokenizer::from_gguf(&file) {
            Ok(t) => t,
            Err(e @ TextError::UnsupportedModel { .. })
                if UNSUPPORTED.iter().any(|(n, _)| *n == name) =>
            {
                summary.push(format!("{name}: unsupported ({e})"));
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
        };
        assert!(
            !UNSUPPORTED.iter().any(|(n, _)| *n == name),
            "{name} is listed as unsupported but loads"
        );
        let raw = std::fs::read_to_string(&inp).unwrap();
        let out = std::fs::read_to_string(inp.with_extension("out")).unwrap();
        let texts = read_inputs(&raw);
        let expected: Vec<Vec<u32>> = out
            .lines()
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert_eq!(
            texts.len(),
            expected.len(),
            "{name}: .inp and .out disagree on the number of tests"
        );
        let mut passed = 0;
        for (text, want) in texts.iter().zip(&expected) {
            let got = tok.encode(text, false, false);
            if &got == want {
                passed += 1;
            } else {
                failures.push(format!("{name}: {text:?}\n  want {want:?}\n  got  {got:?}"));
            }
        }
        summary.push(format!(
            "{name} ({} {}): {passed}/{}",
            tok.kind(),
            tok.pre().unwrap_or("-"),
            texts.len()
        ));
    }
    eprintln!("{}", summary.join("\n"));
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
