//! `huarizo perplexity` and `huarizo imatrix`: llama-perplexity's and llama-imatrix's
//! measurements over a text cut into chunks (see `huarizo_engine::perplexity`).

use anyhow::{Context, Result};
use huarizo_engine::perplexity::{score_chunk, ChunkPlan, NllSums};
use huarizo_engine::{Engine, EngineOptions, ImatrixCollector, Logits};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The text and chunking flags shared by `perplexity`, `kld` and `imatrix`.
#[derive(clap::Args, Debug, Clone)]
pub struct TextArgs {
    /// The text to score (UTF-8; at least 2·ctx tokens).
    #[arg(short = 'f', long = "text")]
    pub text: PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx", default_value_t = 512)]
    pub ctx: usize,
    /// Evaluate at most N chunks (default: all the text holds).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// How the KV cache keeps keys and values (f16 or q8_0; for `kld`, the quantized
    /// model's runs only: the base always runs with f16).
    #[arg(long = "cache-type", default_value = "f16", value_parser = crate::parse_cache_type)]
    pub cache_type: huarizo_engine::CacheType,
    /// The weights' precision in the products: file or f32 (for `kld`, the quantized
    /// model's runs only: the base always runs as its file stores it).
    #[arg(long = "precision", default_value = "file", value_parser = crate::parse_precision)]
    pub precision: huarizo_engine::Precision,
}

/// Flags of `huarizo perplexity`.
#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    /// The model: a GGUF path, a Hugging Face folder, `hf:owner/repo[:file]`, or an alias.
    #[arg(short = 'm', long = "model", default_value = huarizo_hub::DEFAULT_MODEL)]
    pub model: String,
    #[command(flatten)]
    pub text: TextArgs,
    /// Print one JSON object instead of llama-perplexity's lines.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `huarizo imatrix`.
#[derive(clap::Args, Debug)]
pub struct ImatrixArgs {
    /// The model: a GGUF path, a Hugging Face folder, `hf:owner/repo[:file]`, or an alias.
    #[arg(short = 'm', long = "model", default_value = huarizo_hub::DEFAULT_MODEL)]
    pub model: String,
    #[command(flatten)]
    pub text: TextArgs,
    /// The importance matrix file to write (llama-imatrix's GGUF format).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Also collect the output matrix (`output.weight`; a tied embedding is never
    /// collected, as in llama-imatrix).
    #[arg(long = "process-output")]
    pub process_output: bool,
}

impl TextArgs {
    /// Loads the model `spec` names with these flags' threads, cache type and precision.
    pub(crate) fn load(&self, spec: &str) -> Result<Engine> {
        load_engine(spec, self.threads, self.cache_type, self.precision)
    }
}

/// Loads the model `spec` names.
pub(crate) fn load_engine(
    spec: &str,
    threads: usize,
    cache_type: huarizo_engine::CacheType,
    precision: huarizo_engine::Precision,
) -> Result<Engine> {
    let path = crate::commands::resolve(spec)?;
    let options = EngineOptions {
        n_threads: threads,
        precision,
    };
    let mut engine = Engine::load(&path, &options)?;
    engine.set_cache_type(cache_type)?;
    Ok(engine)
}

/// Reads the text file and plans its chunks for `engine`.
pub(crate) fn plan(engine: &Engine, args: &TextArgs) -> Result<ChunkPlan> {
    let text = read_text(&args.text)?;
    let what = args.text.display().to_string();
    let plan = ChunkPlan::new(engine, &text, &what, args.ctx, args.chunks)?;
    eprintln!(
        "{what}: {} tokens, {} chunks of {} (positions {}..{} scored per chunk)",
        plan.tokens.len(),
        plan.n_chunk,
        plan.n_ctx,
        plan.first(),
        plan.n_ctx - 2
    );
    Ok(plan)
}

fn read_text(path: &Path) -> Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the text {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Prints `[i]ppl,` as llama-perplexity does, unless `quiet`.
fn print_running(quiet: bool, i: usize, sums: &NllSums) -> Result<()> {
    if !quiet {
        let mut out = std::io::stdout().lock();
        write!(out, "[{}]{:.4},", i + 1, sums.ppl())?;
        out.flush()?;
    }
    Ok(())
}

/// Prints llama-perplexity's closing line.
fn print_final(sums: &NllSums) {
    println!();
    match sums.ppl_stderr() {
        Some(err) => println!("Final estimate: PPL = {:.4} +/- {:.5}", sums.ppl(), err),
        None => println!(
            "Final estimate: PPL = {:.4} (the uncertainty is undefined: the log-probabilities do not vary)",
            sums.ppl()
        ),
    }
}

/// `huarizo perplexity`.
pub fn perplexity(args: &PerplexityArgs) -> Result<()> {
    let engine = args.text.load(&args.model)?;
    let plan = plan(&engine, &args.text)?;
    let n_vocab = engine.config().n_vocab;
    let start = Instant::now();
    let mut sums = NllSums::default();
    let mut running = Vec::with_capacity(plan.n_chunk);
    for i in 0..plan.n_chunk {
        let logits = engine.chunk_logits(&plan, i)?;
        score_chunk(&logits, plan.targets(i), n_vocab, &mut sums);
        running.push(sums.ppl());
        print_running(args.json, i, &sums)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    if args.json {
        let obj = json!({
            "ppl": sums.ppl(),
            "ppl_stderr": sums.ppl_stderr(),
            "n_ctx": plan.n_ctx,
            "chunks": plan.n_chunk,
            "tokens": plan.tokens.len(),
            "scored_tokens": sums.count,
            "running_ppl": running,
            "seconds": seconds,
        });
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        print_final(&sums);
    }
    eprintln!(
        "{} chunks in {seconds:.1} s ({:.0} tokens/s)",
        plan.n_chunk,
        (plan.n_chunk * plan.n_ctx) as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// `huarizo imatrix`.
pub fn imatrix(args: &ImatrixArgs) -> Result<()> {
    let engine = args.text.load(&args.model)?;
    let plan = plan(&engine, &args.text)?;
    let untied = engine.gguf().tensor("output.weight").is_some();
    if args.process_output && !untied {
        eprintln!(
            "note: the output matrix is the tied token embedding, which llama-imatrix does not \
             collect; --process-output has no effect"
        );
    }
    let mut collector = ImatrixCollector::new(engine.config(), args.process_output && untied);
    let n_vocab = engine.config().n_vocab;
    let start = Instant::now();
    let mut sums = NllSums::default();
    for i in 0..plan.n_chunk {
        let mut state = engine.new_state(plan.n_ctx);
        let logits = engine.forward_traced(
            &mut state,
            &plan.chunk(i),
            Logits::All,
            &mut |name, layer, values| collector.observe(name, layer, values),
        )?;
        let first = plan.first() * n_vocab;
        let scored = &logits[first..first + plan.n_scored() * n_vocab];
        score_chunk(scored, plan.targets(i), n_vocab, &mut sums);
        print_running(false, i, &sums)?;
    }
    print_final(&sums);
    let datasets = [args.text.text.display().to_string()];
    collector
        .write_gguf(
            &args.output,
            &datasets,
            plan.n_chunk as u32,
            plan.n_ctx as u32,
        )
        .with_context(|| format!("writing the importance matrix {}", args.output.display()))?;
    eprintln!(
        "{}: {} entries from {} chunks of {} tokens in {:.1} s",
        args.output.display(),
        collector.weight_sums().len(),
        plan.n_chunk,
        plan.n_ctx,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
