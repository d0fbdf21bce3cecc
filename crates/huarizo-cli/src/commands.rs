//! One function per subcommand.

use crate::{ModelArgs, SamplingArgs};
use anyhow::{Context, Result};
use huarizo_engine::{ChatMessage, Engine, EngineOptions, GenerateParams, SamplingParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;

pub(crate) fn resolve(model: &str) -> Result<PathBuf> {
    Ok(huarizo_hub::resolve(
        model,
        &huarizo_hub::ResolveOptions::default(),
    )?)
}

fn load(args: &ModelArgs) -> Result<Engine> {
    let path = resolve(&args.model)?;
    let mut engine = Engine::load(
        &path,
        &EngineOptions {
            n_threads: args.threads,
            precision: args.precision,
        },
    )?;
    if let Some(lora) = &args.lora {
        engine.load_lora(lora)?;
    }
    engine.set_cache_type(args.cache_type)?;
    Ok(engine)
}

fn sampling(args: &SamplingArgs) -> SamplingParams {
    SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        presence_penalty: args.presence_penalty,
        frequency_penalty: args.frequency_penalty,
        penalty_last_n: 64,
        seed: args.seed.unwrap_or_else(fresh_seed),
    }
}

/// A seed from the clock, for runs that name none (as llama.cpp does).
fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `huarizo run`.
pub fn run(
    margs: &ModelArgs,
    sargs: &SamplingArgs,
    raw: bool,
    n: usize,
    json_out: bool,
    logprobs: usize,
    prompt: &str,
) -> Result<()> {
    let engine = load(margs)?;
    let text = if raw {
        prompt.to_string()
    } else {
        engine.render_chat(
            &[ChatMessage {
                role: "user".into(),
                content: prompt.into(),
            }],
            true,
        )?
    };
    let prompt_tokens = engine.tokenize_prompt(&text);
    let mut state = engine.new_state(margs.ctx);
    let params = GenerateParams {
        sampling: sampling(sargs),
        max_tokens: n,
        stop: sargs.stop.clone(),
        top_logprobs: logprobs,
        stop_at_eog: true,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_err = None;
    let generation = engine.generate(
        &mut state,
        &mut Vec::new(),
        &prompt_tokens,
        &params,
        |event| {
            if !json_out {
                if let Err(e) = out
                    .write_all(event.text.as_bytes())
                    .and_then(|_| out.flush())
                {
                    write_err = Some(e);
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        },
    )?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    if json_out {
        let top: Vec<Vec<serde_json::Value>> = generation
            .top_logprobs
            .iter()
            .map(|step| {
                step.iter()
                    .map(|&(id, lp)| json!({"id": id, "logprob": lp}))
                    .collect()
            })
            .collect();
        let obj = json!({
            "prompt_tokens": prompt_tokens,
            "tokens": generation.tokens,
            "text": generation.text,
            "top_logprobs": top,
        });
        writeln!(out, "{obj}")?;
    } else {
        writeln!(out)?;
    }
    Ok(())
}

/// `huarizo chat`.
pub fn chat(margs: &ModelArgs, sargs: &SamplingArgs, system: Option<&str>, n: usize) -> Result<()> {
    let engine = load(margs)?;
    let interactive = std::io::stdin().is_terminal();
    let mut messages: Vec<ChatMessage> = Vec::new();
    if let Some(s) = system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: s.into(),
        });
    }
    let mut state = engine.new_state(margs.ctx);
    let mut history = Vec::new();
    let params = GenerateParams {
        sampling: sampling(sargs),
        max_tokens: n,
        stop: sargs.stop.clone(),
        top_logprobs: 0,
        stop_at_eog: true,
    };
    if interactive {
        eprintln!(
            "huarizo chat: {} — type a message, Ctrl-D to quit.",
            margs.model
        );
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush().ok();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading standard input")?;
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        messages.push(ChatMessage {
            role: "user".into(),
            content: line.into(),
        });
        let rendered = engine.render_chat(&messages, true)?;
        let tokens = engine.tokenize_prompt(&rendered);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let generation = engine.generate(&mut state, &mut history, &tokens, &params, |event| {
            let _ = out.write_all(event.text.as_bytes());
            let _ = out.flush();
            ControlFlow::Continue(())
        })?;
        writeln!(out)?;
        messages.push(ChatMessage {
            role: "assistant".into(),
            content: generation.text.trim().to_string(),
        });
    }
    Ok(())
}

/// `huarizo tokenize`.
pub fn tokenize(margs: &ModelArgs, add_special: bool, text: &str) -> Result<()> {
    let path = resolve(&margs.model)?;
    let tokenizer = huarizo_engine::load_tokenizer(&path)?;
    let ids = tokenizer.encode(text, add_special, add_special);
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

/// `huarizo info`.
pub fn info(margs: &ModelArgs) -> Result<()> {
    let path = resolve(&margs.model)?;
    let engine = Engine::load(
        &path,
        &EngineOptions {
            n_threads: 1,
            ..Default::default()
        },
    )?;
    let c = engine.config();
    let gguf = engine.gguf();
    let params = huarizo_engine::Config::param_count(gguf);
    let mut mix: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for t in gguf.tensors() {
        let e = mix.entry(t.ggml_type.name()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes as u64;
    }
    let total_bytes: u64 = mix.values().map(|v| v.1).sum();
    let name = gguf
        .get("general.name")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    println!("file:          {}", path.display());
    println!("name:          {name}");
    println!("architecture:  {}", c.arch.name());
    println!("parameters:    {} ({:.1} M)", params, params as f64 / 1e6);
    println!(
        "size:          {} bytes ({:.1} MiB)",
        total_bytes,
        total_bytes as f64 / 1048576.0
    );
    println!("layers:        {}", c.n_layer);
    println!("embedding:     {}", c.n_embd);
    println!(
        "heads:         {} (kv {}), head dim {}",
        c.n_head, c.n_head_kv, c.head_dim
    );
    println!("ffn:           {}", c.n_ff);
    println!("context:       {} (trained)", c.n_ctx_train);
    println!("rope base:     {}", c.rope_base);
    if let Some(w) = c.sliding_window {
        println!("sliding window: {w}");
    }
    println!("tensor types:");
    for (ty, (count, bytes)) in &mix {
        println!("  {ty:<6} {count:>4} tensors  {bytes:>12} bytes");
    }
    let tok = engine.tokenizer();
    println!("tokenizer:     {} ({} tokens)", tok.kind(), tok.n_vocab());
    println!(
        "chat template: {}",
        if engine.has_chat_template() {
            "present"
        } else {
            "absent (built-in fallback)"
        }
    );
    Ok(())
}

/// `huarizo pull`.
pub fn pull(model: &str) -> Result<()> {
    let path = resolve(model)?;
    println!("{}", path.display());
    Ok(())
}

/// `huarizo serve`.
pub fn serve(
    margs: &ModelArgs,
    host: String,
    port: u16,
    parallel: usize,
    queue: usize,
    api_key: Option<String>,
    alias: Option<String>,
) -> Result<()> {
    let engine = load(margs)?;
    let options = huarizo_server::ServeOptions {
        host,
        port,
        parallel,
        ctx: margs.ctx,
        queue,
        api_key: api_key.filter(|k| !k.is_empty()),
        model_id: alias.unwrap_or_else(|| model_id(&margs.model)),
    };
    huarizo_server::serve(engine, options)
}

/// The model's name in the API: an alias as given, a file by its name without extension.
fn model_id(model: &str) -> String {
    let path = std::path::Path::new(model);
    match path.file_stem() {
        Some(stem) if path.is_file() => stem.to_string_lossy().into_owned(),
        _ => model.to_string(),
    }
}
