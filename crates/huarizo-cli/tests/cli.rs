//! The command-line contract, driven through the built `huarizo` binary: bad model files
//! give a one-line error naming the file and the fault with exit code 1; `tokenize`,
//! `run --json` and `bench --json` print the documented shapes.

mod common;
use common::{fails_with, huarizo, smollm2};

/// A minimal GGUF v3 header declaring architecture `arch` and one F32 tensor of 32×32
/// whose data the file holds only `data_len` bytes of.
fn gguf(arch: &str, data_len: usize) -> Vec<u8> {
    let s = |x: &str| [&(x.len() as u64).to_le_bytes()[..], x.as_bytes()].concat();
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata keys
    b.extend(s("general.architecture"));
    b.extend(8u32.to_le_bytes());
    b.extend(s(arch));
    b.extend(s("w"));
    b.extend(2u32.to_le_bytes());
    b.extend(32u64.to_le_bytes());
    b.extend(32u64.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.resize(b.len().next_multiple_of(32) + data_len, 0);
    b
}

#[test]
fn bad_model_files_fail_with_the_file_and_fault_named() {
    let dir = std::env::temp_dir().join(format!("huarizo-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let real = std::fs::read(smollm2()).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("magic.gguf", b"GGML\x03\0\0\0".to_vec(), "magic"),
        (
            "version.gguf",
            [&b"GGUF"[..], &9u32.to_le_bytes()].concat(),
            "version",
        ),
        ("truncated.gguf", real[..1_000_000].to_vec(), "remaining"),
        ("past-end.gguf", gguf("llama", 100), "past the end"),
        (
            "arch.gguf",
            gguf("mamba", 4096),
            "unsupported architecture \"mamba\"",
        ),
    ];
    for (name, bytes, fault) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = huarizo(&["run", "-m", path.to_str().unwrap(), "-n", "1", "hi"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.starts_with("huarizo: ") && err.contains(name) && err.contains(fault),
            "{name}: {err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tokenize_and_run_json_print_the_documented_shapes() {
    let model = smollm2();
    let out = huarizo(&["tokenize", "-m", &model, "The capital of France is"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[504,3575,282,4649,314]"
    );

    let out = huarizo(&[
        "run",
        "-m",
        &model,
        "--raw",
        "--temperature",
        "0",
        "-n",
        "4",
        "--json",
        "--logprobs",
        "2",
        "The capital of France is",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["prompt_tokens"],
        serde_json::json!([504, 3575, 282, 4649, 314])
    );
    assert_eq!(v["tokens"].as_array().unwrap().len(), 4);
    assert!(v["text"].as_str().unwrap().starts_with(" Paris"));
    let top = v["top_logprobs"].as_array().unwrap();
    assert_eq!(top.len(), 4);
    assert_eq!(top[0][0]["id"], v["tokens"][0]);
    assert!(top[0][0]["logprob"].as_f64().unwrap() <= 0.0);
}

/// `bench --json` prints llama-bench's JSON: one object per test, with the raw samples.
/// Checks the shape only, not the speed.
#[test]
fn bench_json_prints_llama_bench_shape() {
    let model = smollm2();
    let out = huarizo(&[
        "bench", "-m", &model, "-t", "1", "-p", "8", "-n", "4", "-d", "0,4", "-r", "2", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tests = v.as_array().unwrap();
    let shape: Vec<(u64, u64, u64)> = tests
        .iter()
        .map(|t| {
            (
                t["n_prompt"].as_u64().unwrap(),
                t["n_gen"].as_u64().unwrap(),
                t["n_depth"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shape, [(8, 0, 0), (8, 0, 4), (0, 4, 0), (0, 4, 4)]);
    for t in tests {
        assert_eq!(t["model_filename"], model.as_str());
        assert!(t["model_type"].as_str().unwrap().starts_with("llama "));
        assert!(t["model_size"].as_u64().unwrap() > 50_000_000);
        assert!(t["model_n_params"].as_u64().unwrap() > 100_000_000);
        assert_eq!(t["n_threads"], 1);
        let samples = t["samples_ts"].as_array().unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(t["samples_ns"].as_array().unwrap().len(), 2);
        let mean = samples.iter().map(|x| x.as_f64().unwrap()).sum::<f64>() / 2.0;
        let avg = t["avg_ts"].as_f64().unwrap();
        assert!(avg > 0.0 && (avg - mean).abs() <= 1e-9 * avg, "{t}");
        assert!(t["stddev_ts"].as_f64().unwrap() >= 0.0);
        assert_eq!((&t["type_k"], &t["type_v"]), (&"f16".into(), &"f16".into()));
    }

    let out = huarizo(&["bench", "-m", &model, "-p", "4", "-n", "0", "-r", "1"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("| model "), "{table}");
    assert!(
        table.contains("| pp4 |") || table.contains(" pp4 |"),
        "{table}"
    );
    assert!(table.contains(" ± "), "{table}");
    assert!(!table.contains("type_k"), "{table}");

    // An 8-bit KV cache: llama-bench's type_k and type_v, in the JSON and as columns.
    let out = huarizo(&[
        "bench",
        "-m",
        &model,
        "-p",
        "4",
        "-n",
        "2",
        "-d",
        "4",
        "-r",
        "1",
        "--cache-type",
        "q8_0",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for t in v.as_array().unwrap() {
        assert_eq!(
            (&t["type_k"], &t["type_v"]),
            (&"q8_0".into(), &"q8_0".into())
        );
    }
    let out = huarizo(&[
        "bench",
        "-m",
        &model,
        "-p",
        "4",
        "-n",
        "0",
        "-r",
        "1",
        "--cache-type",
        "q8_0",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("| type_k | type_v |") && table.contains("| q8_0   | q8_0   |"),
        "{table}"
    );
    let out = huarizo(&["run", "-m", &model, "--cache-type", "q4_0", "hi"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown KV cache type \"q4_0\"; supported: f16, q8_0"),
        "{err}"
    );
}

#[test]
fn run_stops_before_a_stop_string() {
    let model = smollm2();
    let out = huarizo(&[
        "run",
        "-m",
        &model,
        "--raw",
        "--temperature",
        "0",
        "-n",
        "20",
        "--stop",
        " 9",
        "1, 2, 3, 4, 5, 6,",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // llama.cpp's greedy continuation is " 7, 8, 9, 10, …"; the text ends before " 9".
    assert_eq!(String::from_utf8_lossy(&out.stdout), " 7, 8,\n");
}

#[test]
fn quantize_refuses_a_missing_input_a_bad_type_and_an_unwritable_output() {
    let dir = std::env::temp_dir().join(format!("huarizo-cli-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.gguf");
    let out = out.to_str().unwrap();
    let model = smollm2();
    let unwritable = dir.join("no-such-folder/out.gguf");
    let cases: [(&[&str], &str); 4] = [
        (
            &["quantize", "/nonexistent/model.gguf", out, "q8_0"],
            "/nonexistent/model.gguf",
        ),
        (
            &["quantize", &model, out, "q9_0"],
            "unknown quantization type `q9_0`; supported: Q4_0, Q4_1",
        ),
        (
            &["quantize", &model, out, "--type", "Q2_K_S"],
            "Q2_K_S needs an importance matrix (--imatrix) for its Q2_K tensors, and there \
             is none for `blk.10.ffn_down.weight`",
        ),
        (
            &["quantize", &model, unwritable.to_str().unwrap(), "Q8_0"],
            "no-such-folder/out.gguf: creating a temporary file",
        ),
    ];
    for (args, fault) in cases {
        fails_with(args, fault);
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn lineage_reports_on_odd_files_and_refuses_bad_ones() {
    let dir = std::env::temp_dir().join(format!("huarizo-cli-lineage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // An architecture huarizo does not run still gets a report (JSON, verdict unrelated).
    let odd = dir.join("mamba.gguf");
    std::fs::write(&odd, gguf("mamba", 32 * 32 * 4)).unwrap();
    let out = huarizo(&["lineage", "--json", &smollm2(), odd.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"]["verdict"], "unrelated");
    assert!(report["invariants_note"]
        .as_str()
        .unwrap()
        .contains("configuration"));
    // A truncated file is an error naming it; so is a scan of a folder without models and
    // a third model.
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, gguf("llama", 100)).unwrap();
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let s = smollm2();
    let cases: [(Vec<&str>, &str); 3] = [
        (vec!["lineage", &s, cut.to_str().unwrap()], "cut.gguf"),
        (
            vec!["lineage", "scan", empty.to_str().unwrap()],
            "no GGUF files",
        ),
        (vec!["lineage", &s, &s, &s], "two models"),
    ];
    for (args, needle) in cases {
        let out = huarizo(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn eval_refuses_bad_tasks_without_writing_results() {
    let dir = std::env::temp_dir().join(format!("huarizo-cli-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let typo = dir.join("task.json");
    std::fs::write(
        &typo,
        r#"{"name":"t","metrics":["multiple_choice_grad"],"preferred_score":"multiple_choice_grad","examples":[{"input":"a","target":"b"}]}"#,
    )
    .unwrap();
    let out_file = dir.join("results.json");
    std::fs::write(
        dir.join("data.jsonl"),
        "{\"q\": \"a\", \"a\": \"b\"}\n{\"q\": oops}\n",
    )
    .unwrap();
    let yaml = dir.join("task.yaml");
    std::fs::write(
        &yaml,
        "task: t\ndataset_path: json\ndataset_kwargs: {data_files: {test: data.jsonl}}\n\
         doc_to_text: '{{q}}'\ndoc_to_target: a\n",
    )
    .unwrap();
    let s = smollm2();
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec![
                "eval",
                "-m",
                &s,
                "--tasks",
                yaml.to_str().unwrap(),
                "-o",
                out_file.to_str().unwrap(),
            ],
            "data.jsonl: line 2: not valid JSON",
        ),
        (
            vec![
                "eval",
                "-m",
                &s,
                "--tasks",
                typo.to_str().unwrap(),
                "-o",
                out_file.to_str().unwrap(),
            ],
            "unknown metric \"multiple_choice_grad\"",
        ),
        (
            vec![
                "eval",
                "-m",
                &s,
                "--tasks",
                "arc_challeng",
                "-o",
                out_file.to_str().unwrap(),
            ],
            "unknown task \"arc_challeng\"",
        ),
    ];
    for (args, needle) in cases {
        let out = huarizo(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{err}");
        assert!(err.contains("task.") || needle.contains("arc"), "{err}");
        assert!(!out_file.exists(), "no results file for a failed run");
    }
}

#[test]
fn leaderboard_writes_markdown_and_html_and_refuses_bad_files() {
    let dir = std::env::temp_dir().join(format!("huarizo-cli-leaderboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let a = file(
        "a.json",
        r#"{"results": {"t": {"acc,none": 0.25}}, "config": {"model_name": "model-a"}}"#,
    );
    let b = file(
        "b.json",
        r#"{"results": {"t": {"acc,none": 0.75}}, "config": {"model_name": "model-b"}}"#,
    );
    let out = huarizo(&["leaderboard", &a, &b]);
    assert_eq!(out.status.code(), Some(0));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.starts_with("# huarizo leaderboard\n"), "{md}");
    assert!(
        md.contains("| 1 | model-b | – | – | 75.00 | 75.00 |"),
        "{md}"
    );
    assert!(
        md.contains("| 2 | model-a | – | – | 25.00 | 25.00 |"),
        "{md}"
    );

    let (md_path, html_path) = (dir.join("board.md"), dir.join("board.html"));
    let out = huarizo(&[
        "leaderboard",
        &a,
        &b,
        "--title",
        "Two <models>",
        "--md",
        md_path.to_str().unwrap(),
        "--html",
        html_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "--md writes the file instead");
    let md = std::fs::read_to_string(&md_path).unwrap();
    assert!(md.starts_with("# Two <models>\n"), "{md}");
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<h1>Two &lt;models&gt;</h1>"), "{html}");

    let bad = file("bad.json", r#"{"groups": {}}"#);
    let missing = dir.join("missing.json").to_string_lossy().into_owned();
    for (path, needle) in [(&bad, "no `results` object"), (&missing, "cannot read")] {
        let out = huarizo(&["leaderboard", &a, path]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(path.as_str()) && err.contains(needle), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let out = huarizo(&["leaderboard"]);
    assert_eq!(out.status.code(), Some(2), "at least one results file");
}

#[test]
fn convert_to_hf_and_back_and_run_from_the_folder() {
    let dir = std::env::temp_dir().join(format!("huarizo-cli-convert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let folder = dir.join("hf");
    let folder_s = folder.to_str().unwrap();
    let model = smollm2();
    let ok = |args: &[&str]| {
        let r = huarizo(args);
        let err = String::from_utf8_lossy(&r.stderr).into_owned();
        assert_eq!(r.status.code(), Some(0), "{args:?}: {err}");
        String::from_utf8_lossy(&r.stdout).into_owned()
    };
    let out = ok(&[
        "convert", "-m", &model, "--to", "hf", folder_s, "--type", "bf16",
    ]);
    assert!(out.contains("272 tensors as BF16"), "{out}");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(folder.join(f).is_file(), "{f}");
    }
    // The folder works wherever a model is taken.
    let prompt = "The capital of France is";
    let ids_gguf = ok(&["tokenize", "-m", &model, prompt]);
    assert_eq!(ok(&["tokenize", "-m", folder_s, prompt]), ids_gguf);
    let info = ok(&["info", "-m", folder_s]);
    assert!(info.contains("llama"), "{info}");
    let run = ok(&[
        "run",
        "-m",
        folder_s,
        "--raw",
        "--temperature",
        "0",
        "-n",
        "4",
        "-t",
        "2",
        prompt,
    ]);
    assert!(!run.trim().is_empty());
    // And back to GGUF.
    let back = dir.join("back.gguf");
    let out = ok(&[
        "convert",
        "-m",
        folder_s,
        "--to",
        "gguf",
        back.to_str().unwrap(),
        "--type",
        "f16",
    ]);
    assert!(out.contains("as F16"), "{out}");
    assert_eq!(
        ok(&["tokenize", "-m", back.to_str().unwrap(), prompt]),
        ids_gguf
    );

    // Bad input: a config missing a key, a bad --type: one line naming file and key.
    let config = folder.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"num_hidden_layers\"", "\"n_layers\""),
    )
    .unwrap();
    let cases: [(&[&str], &str); 2] = [
        (
            &["info", "-m", folder_s],
            "config.json: key `num_hidden_layers`: missing",
        ),
        (
            &[
                "convert", "-m", &model, "--to", "hf", folder_s, "--type", "q4_0",
            ],
            "--type q4_0: expected F32, F16 or BF16",
        ),
    ];
    for (args, fault) in cases {
        fails_with(args, fault);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `--precision f32` widens the weights in memory exactly as `convert --type F32` writes
/// them: generation and log-probabilities equal those of the converted file bit for bit.
/// An unknown precision is refused with the supported names.
#[test]
fn precision_f32_equals_the_model_converted_to_f32() {
    let dir = std::env::temp_dir().join(format!("huarizo-cli-f32-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let model = smollm2();
    let f32_file = dir.join("f32.gguf");
    let ok = |args: &[&str]| {
        let r = huarizo(args);
        let err = String::from_utf8_lossy(&r.stderr).into_owned();
        assert_eq!(r.status.code(), Some(0), "{args:?}: {err}");
        String::from_utf8_lossy(&r.stdout).into_owned()
    };
    let f32_path = f32_file.to_str().unwrap();
    ok(&[
        "convert", "-m", &model, "--to", "gguf", f32_path, "--type", "f32",
    ]);
    let run = |m: &str, extra: &[&str]| {
        let mut args = vec![
            "run",
            "-m",
            m,
            "--raw",
            "--temperature",
            "0",
            "-n",
            "12",
            "-t",
            "2",
            "--json",
            "--logprobs",
            "4",
        ];
        args.extend_from_slice(extra);
        args.push("Die Hauptstadt von Deutschland ist");
        ok(&args)
    };
    let widened = run(&model, &["--precision", "f32"]);
    assert_eq!(widened, run(f32_path, &[]));
    // The widened weights compute differently from the stored ones (8-bit activations).
    assert_ne!(widened, run(&model, &[]));
    // A usage error, as clap reports them (exit code 2).
    let out = huarizo(&["run", "-m", &model, "--precision", "f16", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown precision \"f16\"; supported: file, f32"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
