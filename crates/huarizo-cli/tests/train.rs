//! `huarizo train` through the built binary, on SmolLM2-135M-Instruct Q4_1: a LoRA
//! fine-tune teaches the model an answer format it does not use (held-out loss and
//! greedy answers with `--lora`), an interrupted run resumes to the same adapter, and bad
//! data gets errors naming the file and line.

use serde_json::Value;
use std::path::{Path, PathBuf};
mod common;
use common::{huarizo, smollm2};

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("huarizo-train-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const WORDS: [&str; 20] = [
    "apple", "river", "stone", "cloud", "tiger", "garden", "mirror", "candle", "forest", "window",
    "bridge", "pencil", "rocket", "silver", "winter", "planet", "butter", "castle", "dragon",
    "harbor",
];

/// `n` questions with their answers in the format `<<answer>>`, from a small generator.
fn questions(n: usize, mut seed: u64) -> Vec<(String, String)> {
    let mut next = move |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    (0..n)
        .map(|_| match next(3) {
            0 => {
                let (a, b) = (2 + next(48), 2 + next(48));
                (format!("What is {a} plus {b}?"), format!("<<{}>>", a + b))
            }
            1 => {
                let w = WORDS[next(20) as usize];
                (
                    format!("How many letters are in the word {w}?"),
                    format!("<<{}>>", w.len()),
                )
            }
            _ => {
                let w = WORDS[next(20) as usize];
                (
                    format!("Write the word {w} in capital letters."),
                    format!("<<{}>>", w.to_uppercase()),
                )
            }
        })
        .collect()
}

fn write_chat_jsonl(path: &Path, items: &[(String, String)]) {
    let lines: Vec<String> = items
        .iter()
        .map(|(q, a)| {
            serde_json::json!({"messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": a},
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn in_format(text: &str) -> bool {
    let t = text.trim();
    t.starts_with("<<")
        && t.ends_with(">>")
        && t.len() > 4
        && !t[2..t.len() - 2].contains(['<', '>'])
}

fn greedy(model: &str, lora: Option<&Path>, prompt: &str) -> String {
    let mut args = vec!["run", "-m", model, "--temp", "0", "-n", "16"];
    let lora_s;
    if let Some(l) = lora {
        lora_s = l.to_string_lossy().into_owned();
        args.extend(["--lora", &lora_s]);
    }
    args.push(prompt);
    let out = huarizo(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lora_fine_tune_teaches_smollm2_a_new_answer_format() {
    let dir = scratch("format");
    let (train, eval) = (dir.join("train.jsonl"), dir.join("eval.jsonl"));
    write_chat_jsonl(&train, &questions(160, 1));
    let held_out = questions(20, 2);
    write_chat_jsonl(&eval, &held_out);
    let out_dir = dir.join("run");
    let model = smollm2();
    let out = huarizo(&[
        "train",
        "lora",
        "-m",
        &model,
        "--data",
        train.to_str().unwrap(),
        "--eval-data",
        eval.to_str().unwrap(),
        "--steps",
        "12",
        "--batch",
        "8",
        "--seq-len",
        "128",
        "--lr",
        "1e-3",
        "--rank",
        "8",
        "--save-every",
        "0",
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "adapter.gguf",
        "adapter_config.json",
        "adapter_model.safetensors",
        "metrics.json",
        "loss.png",
    ] {
        assert!(out_dir.join(f).exists(), "{f} was not written");
    }
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("metrics.json")).unwrap()).unwrap();
    let start = metrics["eval_loss_start"].as_f64().unwrap();
    let end = metrics["eval_loss_end"].as_f64().unwrap();
    assert_eq!(metrics["train_loss"].as_array().unwrap().len(), 12);
    let adapter = out_dir.join("adapter.gguf");
    let (mut base_ok, mut tuned_ok) = (0, 0);
    for (q, _) in &held_out {
        base_ok += usize::from(in_format(&greedy(&model, None, q)));
        tuned_ok += usize::from(in_format(&greedy(&model, Some(&adapter), q)));
    }
    eprintln!(
        "held-out loss {start:.3} -> {end:.3} ({:.0}% lower); answers in the <<…>> format: \
         base {base_ok}/{n}, with the adapter {tuned_ok}/{n}; {:.0} tokens/s",
        100.0 * (1.0 - end / start),
        metrics["tokens_per_second"].as_f64().unwrap(),
        n = held_out.len(),
    );
    assert!(end <= 0.7 * start, "held-out loss {start} -> {end}");
    assert!(
        tuned_ok * 10 >= held_out.len() * 8,
        "{tuned_ok}/{} in format",
        held_out.len()
    );
    assert!(
        base_ok * 10 <= held_out.len(),
        "the base model already answers in the format"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn interrupted_training_resumes_to_the_adapter_of_an_uninterrupted_run() {
    let dir = scratch("resume");
    let data = dir.join("train.jsonl");
    write_chat_jsonl(&data, &questions(24, 3));
    let model = smollm2();
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "lora",
            "-m",
            &model,
            "--data",
            data.to_str().unwrap(),
            "--steps",
            "4",
            "--batch",
            "2",
            "--seq-len",
            "64",
            "--lr",
            "1e-3",
            "--rank",
            "2",
            "--dropout",
            "0.1",
            "--save-every",
            "1",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = huarizo(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let (straight, resumed) = (dir.join("straight"), dir.join("resumed"));
    run(&straight, &[]);
    run(&resumed, &["--stop-after", "2"]);
    assert!(
        !resumed.join("adapter.gguf").exists(),
        "a stopped run writes no adapter"
    );
    run(&resumed, &["--resume"]);
    let a = std::fs::read(straight.join("adapter.gguf")).unwrap();
    let b = std::fs::read(resumed.join("adapter.gguf")).unwrap();
    assert!(a == b, "the resumed run ends with a different adapter");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_training_data_is_reported_by_file_and_line() {
    let dir = scratch("bad");
    let model = smollm2();
    let good = r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}"#;
    let bad_file = dir.join("bad.jsonl");
    std::fs::write(&bad_file, format!("{good}\n{good}\n{{not json\n{good}\n")).unwrap();
    let train = |data: &Path, extra: &[&str]| {
        let out_dir = dir.join("out");
        let mut args = vec![
            "train",
            "lora",
            "-m",
            &model,
            "--data",
            data.to_str().unwrap(),
            "--steps",
            "1",
            "--batch",
            "1",
            "--seq-len",
            "64",
            "--eval-fraction",
            "0.3",
            "--save-every",
            "0",
            "-o",
            out_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        huarizo(&args)
    };
    let out = train(&bad_file, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.jsonl:3"),
        "the error names the line: {err}"
    );
    let out = train(&bad_file, &["--skip-bad-lines"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("bad.jsonl:3"),
        "the warning names the line: {err}"
    );

    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let out = train(&empty, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.to_lowercase().contains("empty") || err.contains("no example"),
        "{err}"
    );

    let long = dir.join("long.jsonl");
    let words = "word ".repeat(200);
    std::fs::write(
        &long,
        format!("{{\"prompt\": \"Say\", \"completion\": \"{words}\"}}\n"),
    )
    .unwrap();
    let out = train(&long, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("long.jsonl:1") && err.contains("64"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_model_trained_from_scratch_beats_the_unigram_baseline_and_runs() {
    let dir = scratch("scratch");
    // The news reports in ../shared/seeds when present, else a text the test writes.
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/seeds");
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(&seeds) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            text.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
    }
    if text.len() < 10_000 {
        for (q, a) in questions(1500, 9) {
            text.push_str(&format!("{q} The answer is {a}.\n"));
        }
    }
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, &text).unwrap();
    let out_dir = dir.join("run");
    let out = huarizo(&[
        "train",
        "scratch",
        "--data",
        corpus.to_str().unwrap(),
        "--vocab",
        "768",
        "--layers",
        "2",
        "--width",
        "128",
        "--heads",
        "4",
        "--ff",
        "384",
        "--context",
        "128",
        "--seq-len",
        "64",
        "--batch",
        "8",
        "--steps",
        "60",
        "--lr",
        "2e-3",
        "--warmup",
        "5",
        "--save-every",
        "0",
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("metrics.json")).unwrap()).unwrap();
    let end = metrics["eval_loss_end"].as_f64().unwrap();
    let unigram: f64 = err
        .split("unigram baseline ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no unigram baseline in: {err}"));
    eprintln!("from scratch: held-out loss {end:.3} vs unigram {unigram:.3}");
    assert!(
        end < unigram - 0.2,
        "held-out loss {end} is not below the unigram {unigram}"
    );
    let model = out_dir.join("model.gguf");
    let run = huarizo(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "--raw",
        "--temp",
        "0",
        "-n",
        "8",
        "The",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
