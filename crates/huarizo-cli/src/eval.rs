//! `huarizo eval`: lm-evaluation-harness-compatible tasks on one model.

use anyhow::{Context, Result};
use huarizo_engine::{Engine, EngineOptions};
use huarizo_eval::cache::ResultCache;
use huarizo_eval::suite::{self, SuiteOptions};
use huarizo_eval::{Evaluator, RunOptions};
use serde_json::json;
use std::path::PathBuf;

/// Flags of `huarizo eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The model (GGUF path, `hf:` name or alias).
    #[arg(short = 'm', long = "model", default_value = huarizo_hub::DEFAULT_MODEL)]
    pub model: String,
    /// Comma-separated tasks: lm-eval's leaderboard tasks and groups (`arc_challenge`,
    /// `hellaswag`, `mmlu`, `truthfulqa_mc1`, `truthfulqa_mc2`, `winogrande`, `gsm8k`,
    /// `leaderboard-v1`), `bigbench:TASK`, `bigbench-lite`, `perplexity:FILE`, or a path
    /// to a BIG-bench task.json or an lm-eval task YAML/JSON.
    #[arg(long, required = true)]
    pub tasks: String,
    /// Examples in each prompt (default: BIG-bench 0; lm-eval tasks the leaderboard's
    /// count; a task that fixes 0, as TruthfulQA does, keeps 0).
    #[arg(long)]
    pub shots: Option<usize>,
    /// Folder holding Hub datasets by id (`DIR/allenai/ai2_arc/…`), in the Hub's file
    /// layout; a dataset not found there is fetched from the Hugging Face Hub.
    #[arg(long = "data-dir", env = "HUARIZO_DATA")]
    pub data_dir: Option<PathBuf>,
    /// Score at most N items per task.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of few-shot sampling and choice order (default: BIG-bench's 42, lm-eval's
    /// 1234).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write lm-eval's results JSON here.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Write every scored item (prompt, choices, log-probabilities) as JSON lines here.
    #[arg(long = "log-samples")]
    pub log_samples: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Sequences scored together.
    #[arg(long, default_value_t = 8)]
    pub slots: usize,
    /// Do not reuse or record answers in the on-disk cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Runs `huarizo eval`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let opts = huarizo_hub::ResolveOptions::default();
    let bigbench = || huarizo_hub::datasets::bigbench_tasks(&opts).map_err(|e| e.to_string());
    let data = |id: &str, config: Option<&str>| -> Result<PathBuf, String> {
        if let Some(dir) = &args.data_dir {
            let local = dir.join(id);
            if local.is_dir() {
                return Ok(local);
            }
        }
        huarizo_hub::hf::dataset(id, config, &opts).map_err(|e| match &args.data_dir {
            Some(dir) => format!("not in {} and not fetched: {e}", dir.display()),
            None => format!("{e} (or pass --data-dir DIR holding {id}/ in the Hub layout)"),
        })
    };
    let sources = suite::resolve(&args.tasks, &bigbench, &data)?;
    let path = crate::commands::resolve(&args.model)?;
    let sha = huarizo_hub::sha256_file(&path)?;
    let engine = Engine::load(
        &path,
        &EngineOptions {
            n_threads: args.threads,
            ..Default::default()
        },
    )?;
    let c = engine.config();
    let info = json!({
        "architecture": engine.gguf().get("general.architecture").and_then(|v| v.as_str()).unwrap_or("?"),
        "name": engine.gguf().get("general.name").and_then(|v| v.as_str()),
        "params": engine.gguf().tensors().iter().map(|t| t.n_elements()).sum::<u64>(),
        "bytes": std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        "types": storage_types(&engine),
        "file_type": engine.gguf().get("general.file_type").and_then(|v| v.as_u64()).map(crate::bench::ftype_name),
        "n_layer": c.n_layer,
        "ggml_isa": huarizo_engine::ggml_isa().name(),
        "arithmetic": huarizo_engine::arithmetic().name(),
        "n_embd": c.n_embd,
    });
    let mut ev = Evaluator::new(
        &engine,
        RunOptions {
            n_slots: args.slots,
            progress: true,
            label: "eval".into(),
        },
    );
    if !args.no_cache {
        let file = opts
            .models_dir()?
            .join("eval-cache")
            // Results depend on the llama.cpp build whose arithmetic huarizo follows, and on
            // whether it sums by whole blocks instead.
            .join(format!(
                "{}-{}{}.jsonl",
                &sha[..16],
                huarizo_engine::ggml_isa().name(),
                match huarizo_engine::arithmetic() {
                    huarizo_engine::Arithmetic::Ggml => "",
                    huarizo_engine::Arithmetic::BlockSums => "-block-sums",
                }
            ));
        let cache = ResultCache::open(&file)
            .with_context(|| format!("opening the results cache {}", file.display()))?;
        if !cache.is_empty() {
            eprintln!(
                "resuming: {} answers cached in {}",
                cache.len(),
                file.display()
            );
        }
        ev = ev.with_cache(cache);
    }
    let options = SuiteOptions {
        shots: args.shots,
        limit: args.limit,
        seed: args.seed,
    };
    let result = suite::evaluate(&ev, &args.model, &path, &sha, info, &sources, &options)?;
    if let Some(out) = &args.output {
        let text = serde_json::to_string_pretty(&result.to_json())?;
        write_atomic(out, text.as_bytes())?;
    }
    if let Some(out) = &args.log_samples {
        let mut text = String::new();
        for t in &result.tasks {
            for s in &t.samples {
                let mut v = serde_json::to_value(s)?;
                v["task"] = json!(t.name);
                text.push_str(&v.to_string());
                text.push('\n');
            }
        }
        write_atomic(out, text.as_bytes())?;
    }
    print!("{}", result.table());
    eprintln!(
        "{} tokens in {:.1} s ({:.0} tokens/s)",
        result.tokens,
        result.seconds,
        result.tokens as f64 / result.seconds.max(1e-9)
    );
    Ok(())
}

/// Storage types by share of weights.
fn storage_types(engine: &Engine) -> serde_json::Value {
    let mut by: Vec<(String, u64)> = Vec::new();
    for t in engine.gguf().tensors() {
        let name = t.ggml_type.name().to_string();
        match by.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 += t.n_elements(),
            None => by.push((name, t.n_elements())),
        }
    }
    by.sort_by_key(|e| std::cmp::Reverse(e.1));
    json!(by)
}

/// Writes through a temporary file, so that a results file is complete or absent.
fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
