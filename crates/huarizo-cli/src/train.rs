//! `huarizo train lora|continue`: build on a model with new data (LoRA adapters on the
//! frozen, possibly quantized base).

use crate::commands::resolve;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use huarizo_engine::{
    train_bpe, write_random_model, BpeTrainOptions, Engine, EngineOptions, GgmlType, LoraAdapter,
    LoraConfig, LoraTarget, ScratchConfig,
};
use huarizo_train::data::load_text_format;
use huarizo_train::full::{unigram_loss, FullModel};
use huarizo_train::lora::{write_adapter_files, LoraModel};
use huarizo_train::{
    load_jsonl, load_text, split_holdout, train, BadLinePolicy, DataOptions, Example, RunLength,
    TextFormat, TrainOptions,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `huarizo train`'s subcommands.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(subcommand)]
    kind: TrainKind,
}

#[derive(Subcommand, Debug)]
enum TrainKind {
    /// Fine-tune a LoRA adapter on JSONL data: chat `{"messages": [...]}` (loss on the
    /// assistant turns), `{"prompt", "completion"}` (loss on the completion) or `{"text"}`.
    Lora {
        /// Training data (JSONL).
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Continued pretraining on raw text files (every token trained): a LoRA adapter, or
    /// every weight with --full (writes OUTPUT/model.gguf).
    Continue {
        /// Text files.
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        /// Train every weight (f32) instead of an adapter.
        #[arg(long)]
        full: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// A new LLaMA-architecture model trained from random weights on text files, with its
    /// own byte-level BPE tokenizer (writes OUTPUT/model.gguf, which llama.cpp also runs).
    Scratch {
        /// Text files (the tokenizer is trained on them too).
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        /// Decoder blocks.
        #[arg(long, default_value_t = 4)]
        layers: usize,
        /// Embedding width.
        #[arg(long, default_value_t = 256)]
        width: usize,
        /// Attention heads.
        #[arg(long, default_value_t = 4)]
        heads: usize,
        /// Key/value heads (grouped-query attention when fewer than --heads).
        #[arg(long = "kv-heads", default_value_t = 4)]
        kv_heads: usize,
        /// MLP width.
        #[arg(long, default_value_t = 768)]
        ff: usize,
        /// Context length of the new model (training uses --seq-len).
        #[arg(long, default_value_t = 512)]
        context: usize,
        /// Tokenizer vocabulary size.
        #[arg(long, default_value_t = 4096)]
        vocab: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// Flags every kind of training shares.
#[derive(Args, Debug)]
struct CommonArgs {
    /// The base model: a GGUF path, a Hugging Face folder, `hf:owner/repo` or an alias.
    #[arg(short = 'm', long = "model", default_value = huarizo_hub::DEFAULT_MODEL)]
    model: String,
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    threads: usize,
    /// Output folder: adapter.gguf, adapter_config.json, adapter_model.safetensors,
    /// metrics.json, loss.png, checkpoint/.
    #[arg(short = 'o', long = "output")]
    out: PathBuf,
    /// Held-out data in the same format (default: a --eval-fraction split of --data).
    #[arg(long = "eval-data")]
    eval_data: Option<PathBuf>,
    /// Share of the training data held out when there is no --eval-data.
    #[arg(long = "eval-fraction", default_value_t = 0.1)]
    eval_fraction: f64,
    /// Adapter rank r.
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// Adapter α (the update is scaled by α / r).
    #[arg(long, default_value_t = 16.0)]
    alpha: f32,
    /// Dropout on the adapter's input.
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Adapted layers, comma-separated: q, k, v, o, gate, up, down (or q_proj, …).
    #[arg(long, default_value = "q,k,v,o,gate,up,down", value_delimiter = ',')]
    targets: Vec<String>,
    /// Passes over the training data.
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<usize>,
    /// Optimizer steps (instead of --epochs).
    #[arg(long)]
    steps: Option<usize>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// Final learning rate of the cosine schedule, as a fraction of --lr.
    #[arg(long = "min-lr-ratio", default_value_t = 0.1)]
    min_lr_ratio: f64,
    /// Sequences per micro-batch (a batch holds up to batch × seq-len tokens).
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Longest sequence in tokens.
    #[arg(long = "seq-len", default_value_t = 512)]
    seq_len: usize,
    /// Micro-batches per optimizer step.
    #[arg(long = "grad-accum", default_value_t = 1)]
    grad_accum: usize,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// AdamW weight decay.
    #[arg(long = "weight-decay", default_value_t = 0.0)]
    weight_decay: f64,
    /// Gradient-norm clipping (0: off).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Evaluate every N steps (0: at start and end only).
    #[arg(long = "eval-every", default_value_t = 0)]
    eval_every: usize,
    /// Save a checkpoint every N steps (0: at the end only).
    #[arg(long = "save-every", default_value_t = 50)]
    save_every: usize,
    /// Seed of the adapter's initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue an interrupted run from OUTPUT/checkpoint/.
    #[arg(long)]
    resume: bool,
    /// Skip malformed JSONL lines (with a warning naming each) instead of stopping.
    #[arg(long = "skip-bad-lines")]
    skip_bad_lines: bool,
    /// Cut examples longer than --seq-len instead of failing.
    #[arg(long)]
    truncate: bool,
    /// Stop (with a checkpoint) after this many steps, as if interrupted.
    #[arg(long = "stop-after", hide = true)]
    stop_after: Option<usize>,
}

/// Runs `huarizo train …`.
pub fn run(args: &TrainArgs) -> Result<()> {
    match &args.kind {
        TrainKind::Lora { data, common } => {
            lora(
                common,
                |fmt, opts| Ok(load_jsonl(data, fmt, opts)?.examples),
            )
        }
        TrainKind::Continue {
            data,
            full: false,
            common,
        } => lora(common, |fmt, opts| text_files(data, fmt, opts)),
        TrainKind::Continue {
            data,
            full: true,
            common,
        } => {
            let path = resolve(&common.model)?;
            full(common, &path, |fmt, opts| text_files(data, fmt, opts))
        }
        TrainKind::Scratch {
            data,
            layers,
            width,
            heads,
            kv_heads,
            ff,
            context,
            vocab,
            common,
        } => {
            let cfg = ScratchConfig {
                n_layer: *layers,
                n_embd: *width,
                n_head: *heads,
                n_head_kv: *kv_heads,
                n_ff: *ff,
                n_ctx: *context,
                rope_base: 10000.0,
            };
            cfg.validate()?;
            std::fs::create_dir_all(&common.out)
                .with_context(|| format!("creating {}", common.out.display()))?;
            let init = common.out.join("init.gguf");
            if !(common.resume && init.exists()) {
                eprintln!(
                    "training a {vocab}-token byte-level BPE tokenizer on {} file(s)",
                    data.len()
                );
                let tokenizer = train_bpe(
                    data,
                    &BpeTrainOptions {
                        vocab_size: *vocab,
                        min_frequency: 2,
                        special_tokens: vec!["<|endoftext|>".into()],
                    },
                )?;
                write_random_model(&cfg, tokenizer, "huarizo-scratch", common.seed, &init)?;
            }
            full(common, &init, |fmt, opts| text_files(data, fmt, opts))
        }
    }
}

fn text_files(data: &[PathBuf], fmt: TextFormat<'_>, opts: &DataOptions) -> Result<Vec<Example>> {
    let mut all = Vec::new();
    for path in data {
        all.extend(load_text(path, fmt.tokenizer, opts.max_len)?.examples);
    }
    Ok(all)
}

/// The engine, the training and held-out sets and the loop's options of a run.
struct Prepared {
    engine: Engine,
    path: PathBuf,
    train_set: Vec<Example>,
    eval_set: Vec<Example>,
    options: TrainOptions,
    interrupt: Arc<AtomicBool>,
}

fn prepare(
    args: &CommonArgs,
    path: &std::path::Path,
    load: impl Fn(TextFormat<'_>, &DataOptions) -> Result<Vec<Example>>,
) -> Result<Prepared> {
    let engine = Engine::load(
        path,
        &EngineOptions {
            n_threads: args.threads,
            ..Default::default()
        },
    )?;
    let (tokenizer, template) = load_text_format(path)?;
    let format = TextFormat {
        tokenizer: &tokenizer,
        template: &template,
    };
    let n_ctx = engine.config().n_ctx_train;
    let max_len = if n_ctx > 0 {
        args.seq_len.min(n_ctx)
    } else {
        args.seq_len
    };
    let opts = DataOptions {
        max_len,
        truncate: args.truncate,
        bad_lines: if args.skip_bad_lines {
            BadLinePolicy::Skip
        } else {
            BadLinePolicy::Stop
        },
    };
    let examples = load(format, &opts)?;
    let (train_set, eval_set) = match &args.eval_data {
        Some(eval_path) => (examples, load_jsonl(eval_path, format, &opts)?.examples),
        None => split_holdout(examples, args.eval_fraction, args.seed)?,
    };
    let length = match (args.epochs, args.steps) {
        (_, Some(0)) | (Some(0), _) => bail!("--steps and --epochs must be at least 1"),
        (_, Some(n)) => RunLength::Steps(n),
        (Some(e), None) => RunLength::Epochs(e),
        (None, None) => RunLength::Epochs(1),
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    let options = TrainOptions {
        length,
        lr: args.lr,
        min_lr_ratio: args.min_lr_ratio,
        batch_size: args.batch,
        seq_len: max_len,
        grad_accum: args.grad_accum,
        warmup_steps: args.warmup,
        weight_decay: args.weight_decay,
        clip_norm: args.clip,
        eval_every: args.eval_every,
        save_every: args.save_every,
        seed: args.seed,
        out_dir: args.out.clone(),
        resume: args.resume,
        progress: true,
        stop_at_step: args.stop_after,
        interrupt: Some(Arc::clone(&interrupt)),
    };
    Ok(Prepared {
        engine,
        path: path.to_path_buf(),
        train_set,
        eval_set,
        options,
        interrupt,
    })
}

/// Trains every weight of the model at `path`; writes OUTPUT/model.gguf.
fn full(
    args: &CommonArgs,
    path: &std::path::Path,
    load: impl Fn(TextFormat<'_>, &DataOptions) -> Result<Vec<Example>>,
) -> Result<()> {
    let p = prepare(args, path, load)?;
    let mut model = FullModel::new(&p.engine)?;
    eprintln!(
        "training all {} weights of {} on {} sequences ({} tokens), evaluating on {}",
        model.params.n_params(),
        p.path.display(),
        p.train_set.len(),
        p.train_set.iter().map(Example::n_trained).sum::<usize>(),
        p.eval_set.len()
    );
    let report = train(&mut model, &p.train_set, &p.eval_set, &p.options)?;
    if p.interrupt.load(Ordering::Relaxed) || !report.finished {
        eprintln!(
            "stopped after step {}; continue with the same command and --resume",
            report.metrics.steps
        );
        return Ok(());
    }
    let out = args.out.join("model.gguf");
    p.engine
        .write_with_params(&model.params, GgmlType::F32, &out)?;
    let m = &report.metrics;
    let unigram = unigram_loss(&p.train_set, &p.eval_set, p.engine.config().n_vocab);
    let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    eprintln!(
        "done: {} steps, eval loss {} → {} (unigram baseline {unigram:.4}), {:.1} tokens/s, \
         peak memory {:.0} MiB; wrote {}",
        m.steps,
        fmt(m.eval_loss_start),
        fmt(m.eval_loss_end),
        m.tokens_per_second,
        m.peak_rss_bytes as f64 / (1 << 20) as f64,
        out.display()
    );
    Ok(())
}

fn lora(
    args: &CommonArgs,
    load: impl Fn(TextFormat<'_>, &DataOptions) -> Result<Vec<Example>>,
) -> Result<()> {
    let path = resolve(&args.model)?;
    let Prepared {
        engine,
        train_set,
        eval_set,
        options: topts,
        interrupt,
        ..
    } = prepare(args, &path, load)?;
    let mut targets = Vec::new();
    for name in &args.targets {
        let t = LoraTarget::parse(name.trim()).with_context(|| {
            format!("--targets: unknown layer {name:?} (q, k, v, o, gate, up, down)")
        })?;
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    targets.sort();
    let adapter = LoraAdapter::new(
        engine.config(),
        LoraConfig {
            rank: args.rank,
            alpha: args.alpha,
            dropout: args.dropout,
            targets,
        },
        args.seed,
    )?;
    eprintln!(
        "training a rank-{} LoRA ({} parameters) on {} sequences ({} trained tokens), \
         evaluating on {}",
        args.rank,
        adapter.n_params(),
        train_set.len(),
        train_set.iter().map(Example::n_trained).sum::<usize>(),
        eval_set.len()
    );
    let mut model = LoraModel::new(&engine, adapter);
    let report = train(&mut model, &train_set, &eval_set, &topts)?;
    if interrupt.load(Ordering::Relaxed) || !report.finished {
        eprintln!(
            "stopped after step {}; continue with the same command and --resume",
            report.metrics.steps
        );
        return Ok(());
    }
    write_adapter_files(&engine, &model.adapter, &args.model, &args.out)?;
    let m = &report.metrics;
    let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    eprintln!(
        "done: {} steps, eval loss {} → {}, {:.1} tokens/s, peak memory {:.0} MiB",
        m.steps,
        fmt(m.eval_loss_start),
        fmt(m.eval_loss_end),
        m.tokens_per_second,
        m.peak_rss_bytes as f64 / (1 << 20) as f64
    );
    eprintln!(
        "wrote {0}/adapter.gguf (huarizo run --lora, llama.cpp --lora), {0}/adapter_config.json \
         and adapter_model.safetensors (PEFT), {0}/metrics.json, {0}/loss.png",
        args.out.display()
    );
    Ok(())
}
