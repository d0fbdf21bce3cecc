//! The quality tools of issue 8 through the built binary: `perplexity` and `kld` against
//! llama.cpp's figures on SmolLM2 (tests/reference/quality_smollm2.json, written by
//! scripts/ref_perplexity.py), `imatrix` written and read back, and bad input failing
//! with a one-line error and exit code 1.

use std::path::PathBuf;
mod common;
use common::{fails_with, huarizo, huarizo_with_env, repo_root as root};

fn testdata(name: &str) -> String {
    huarizo_testdata::file(name).to_string_lossy().into_owned()
}

fn text() -> String {
    root()
        .join("tests/quality/lighthouse.txt")
        .to_string_lossy()
        .into_owned()
}

fn reference() -> serde_json::Value {
    let path = root().join("tests/reference/quality_smollm2.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("huarizo-quality-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `args` in the summation order of the llama.cpp build that made the reference
/// (`HUARIZO_GGML_ISA`), expects success, and parses stdout as JSON.
fn json_of(args: &[&str]) -> serde_json::Value {
    let isa = reference()["ggml_isa"].as_str().unwrap().to_string();
    let out = huarizo_with_env(args, &[("HUARIZO_GGML_ISA", &isa)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {err}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {err}"))
}

fn close(got: f64, want: f64, rel: f64, what: &str) {
    assert!(
        (got - want).abs() <= rel * want.abs(),
        "{what}: huarizo {got}, llama.cpp {want} (tolerance {rel})"
    );
}

#[test]
fn perplexity_matches_llama_cpp() {
    let r = reference();
    let got = json_of(&[
        "perplexity",
        "-m",
        &testdata("smollm2.gguf"),
        "--text",
        &text(),
        "--ctx",
        "256",
        "--json",
    ]);
    assert_eq!(got["chunks"], r["chunks"]);
    assert_eq!(got["tokens"], r["tokens"]);
    assert_eq!(got["scored_tokens"], r["scored_tokens"]);
    close(
        got["ppl"].as_f64().unwrap(),
        r["ppl"].as_f64().unwrap(),
        1e-3,
        "PPL",
    );
    close(
        got["ppl_stderr"].as_f64().unwrap(),
        r["ppl_stderr"].as_f64().unwrap(),
        1e-2,
        "PPL uncertainty",
    );
}

#[test]
fn kld_matches_llama_cpp_and_refuses_another_vocabulary() {
    let dir = temp_dir("kld");
    let quant = dir.join("smollm2-q8_0.gguf");
    let q = quant.to_str().unwrap();
    let out = huarizo(&["quantize", &testdata("smollm2.gguf"), q, "q8_0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = &reference()["kld"];
    let got = json_of(&[
        "kld",
        &testdata("smollm2.gguf"),
        q,
        "--text",
        &text(),
        "--ctx",
        "256",
        "--json",
    ]);
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k}"));
    close(f(&got, "ppl_base"), f(r, "ppl_base"), 1e-3, "PPL(base)");
    close(f(&got, "ppl_quant"), f(r, "ppl_quant"), 1e-3, "PPL(Q)");
    close(f(&got, "mean_kld"), f(r, "mean_kld"), 0.05, "mean KLD");
    close(f(&got, "max_kld"), f(r, "max_kld"), 0.05, "max KLD");
    close(f(&got, "rms_delta_p"), f(r, "rms_delta_p"), 0.05, "RMS Δp");
    close(
        f(&got, "same_top_p"),
        f(r, "same_top_p"),
        0.01,
        "same top p",
    );
    assert!(f(&got, "kld_stderr") > 0.0);

    let out = huarizo(&[
        "kld",
        &testdata("smollm2.gguf"),
        &testdata("gemma3.gguf"),
        "--text",
        &text(),
        "--ctx",
        "256",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("do not share a vocabulary"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn imatrix_is_written_in_llama_cpp_format_and_read_back() {
    let dir = temp_dir("imatrix");
    let out_path = dir.join("smollm2.imatrix.gguf");
    let out = huarizo(&[
        "imatrix",
        "-m",
        &testdata("smollm2.gguf"),
        "--text",
        &text(),
        "--ctx",
        "256",
        "--chunks",
        "2",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Final estimate: PPL = "));

    let m = huarizo_engine::read_imatrix(&out_path).unwrap();
    // SmolLM2-135M: 30 blocks × 7 matrices, E = 576, F = 1536; its output is tied.
    assert_eq!(m.entries.len(), 30 * 7);
    assert_eq!((m.chunks, m.chunk_size), (2, 256));
    assert_eq!(m.datasets, [text()]);
    for (name, width) in [
        ("blk.0.attn_q.weight", 576),
        ("blk.29.attn_v.weight", 576),
        ("blk.3.attn_output.weight", 576),
        ("blk.7.ffn_up.weight", 576),
        ("blk.7.ffn_down.weight", 1536),
    ] {
        let v = m.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(v.len(), width, "{name}");
        assert!(v.iter().all(|x| x.is_finite() && *x >= 0.0), "{name}");
        assert!(v.iter().any(|x| *x > 0.0), "{name}");
    }
    assert_eq!(m.get("blk.0.attn_q.weight"), m.get("blk.0.attn_k.weight"));
    assert!(m.get("output.weight").is_none());

    // The raw file: in_sum2 [576, 1] and counts [1, 1] holding the tokens seen.
    let file = huarizo_engine::GgufFile::open(&out_path).unwrap();
    let sums = file.tensor("blk.0.attn_q.weight.in_sum2").unwrap();
    assert_eq!(sums.shape, [576, 1]);
    let counts = file.tensor("blk.0.attn_q.weight.counts").unwrap();
    assert_eq!(counts.shape, [1, 1]);
    assert_eq!(file.tensor_data(counts), 512f32.to_le_bytes());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_fails_with_a_clear_error() {
    let dir = temp_dir("bad");
    let short = dir.join("short.txt");
    std::fs::write(&short, "Only a few words here.").unwrap();
    let missing = dir.join("missing.txt");
    let model = testdata("smollm2.gguf");
    let o = dir.join("x.gguf");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "perplexity",
                "-m",
                &model,
                "--text",
                missing.to_str().unwrap(),
            ],
            "missing.txt",
        ),
        (
            vec![
                "perplexity",
                "-m",
                &model,
                "--text",
                short.to_str().unwrap(),
            ],
            "tokenizes to only",
        ),
        (
            vec!["kld", &model, &model, "--text", short.to_str().unwrap()],
            "tokenizes to only",
        ),
        (
            vec![
                "imatrix",
                "-m",
                &model,
                "--text",
                missing.to_str().unwrap(),
                "-o",
                o.to_str().unwrap(),
            ],
            "missing.txt",
        ),
        (
            vec![
                "perplexity",
                "-m",
                &model,
                "--text",
                short.to_str().unwrap(),
                "--ctx",
                "1",
            ],
            "--ctx 1",
        ),
    ];
    for (args, want) in cases {
        fails_with(&args, want);
    }
    assert!(!o.exists());
    std::fs::remove_dir_all(&dir).ok();
}
