//! The `huarizo` command line: run, chat, tokenize, info, pull, bench, quantize and the
//! quality tools (perplexity, kld, imatrix), over the engine.
//! Errors print as `huarizo: …` on stderr and exit with code 1.

mod bench;
mod commands;
mod convert;
mod eval;
mod kld;
mod leaderboard;
mod lineage;
mod quality;
mod quantize;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Run open LLaMA-family models on the CPU.
#[derive(Parser, Debug)]
#[command(name = "huarizo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the model comes from and how to run it.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A GGUF path, a Hugging Face checkpoint folder, `hf:owner/repo[:file]`, or an alias (smollm2-135m-instruct,
    /// gemma3-270m, qwen2.5-coder-0.5b-instruct).
    #[arg(short = 'm', long = "model", default_value = huarizo_hub::DEFAULT_MODEL)]
    pub model: String,
    /// Threads to compute with (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Context size in tokens (capped at the model's trained context).
    #[arg(long = "ctx", default_value_t = 4096)]
    pub ctx: usize,
    /// A LoRA adapter (GGUF, as `huarizo train` writes it or llama.cpp reads it) applied
    /// beside the weights.
    #[arg(long = "lora")]
    pub lora: Option<std::path::PathBuf>,
    /// How the KV cache keeps keys and values: f16 (llama.cpp's default and arithmetic) or
    /// q8_0 (half the memory, faster attention at depth, huarizo's own arithmetic).
    #[arg(long = "cache-type", default_value = "f16", value_parser = parse_cache_type)]
    pub cache_type: huarizo_engine::CacheType,
    /// The weights' precision in the products: file (as stored, activations quantized per
    /// block: llama.cpp's arithmetic, the default) or f32 (every weight widened to F32 at
    /// load, activations in f32: 4 bytes per weight, slower, closer to transformers).
    #[arg(long = "precision", default_value = "file", value_parser = parse_precision)]
    pub precision: huarizo_engine::Precision,
}

/// A `--cache-type` value.
pub fn parse_cache_type(s: &str) -> Result<huarizo_engine::CacheType, String> {
    use huarizo_engine::CacheType;
    parse_named(s, "KV cache type", &CacheType::ALL, |t| t.name())
}

/// A `--precision` value.
pub fn parse_precision(s: &str) -> Result<huarizo_engine::Precision, String> {
    use huarizo_engine::Precision;
    parse_named(s, "precision", &Precision::ALL, |p| p.name())
}

/// The member of `all` whose name is `s` (case-insensitive), or an error that lists the
/// names.
fn parse_named<T: Copy>(
    s: &str,
    what: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, String> {
    let names: Vec<_> = all.iter().map(|&t| name(t)).collect();
    all.iter()
        .copied()
        .find(|&t| name(t).eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("unknown {what} {s:?}; supported: {}", names.join(", ")))
}

/// Sampling flags shared by `run` and `chat`.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 is greedy.
    #[arg(long, alias = "temp", default_value_t = 0.8)]
    pub temperature: f32,
    /// Top-k (0 = off).
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    /// Top-p (1 = off).
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0 = off).
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Presence penalty (0 = off).
    #[arg(long = "presence-penalty", default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Frequency penalty (0 = off).
    #[arg(long = "frequency-penalty", default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Random seed (default: a fresh one each run).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop before this string (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a continuation of a prompt.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Feed the prompt as plain text, without the chat template.
        #[arg(long)]
        raw: bool,
        /// Tokens to generate.
        #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
        n: usize,
        /// Print one JSON object (prompt tokens, tokens, text, top log-probabilities).
        #[arg(long)]
        json: bool,
        /// Record the top K log-probabilities of each generated token (with --json).
        #[arg(long, default_value_t = 0)]
        logprobs: usize,
        /// The prompt.
        prompt: String,
    },
    /// Chat in the terminal (one user turn per line of standard input).
    Chat {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        /// Most tokens per reply.
        #[arg(short = 'n', long = "n-predict", default_value_t = 1024)]
        n: usize,
    },
    /// Print the token ids of a text as a JSON array.
    Tokenize {
        #[command(flatten)]
        model: ModelArgs,
        /// Add BOS/EOS as the model says and parse special-token text.
        #[arg(long = "add-special")]
        add_special: bool,
        /// The text.
        text: String,
    },
    /// Describe a model: architecture, sizes, tensor types, tokenizer, template.
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Fetch a model into the cache and print its local path.
    Pull {
        /// The model to fetch.
        model: String,
    },
    /// Serve the model over an OpenAI-compatible HTTP API with a web chat page at `/`.
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port (0 picks a free one; the address is printed on stderr).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Requests decoded together (slots, one KV cache of --ctx tokens each).
        #[arg(long, short = 'P', default_value_t = 4)]
        parallel: usize,
        /// Requests allowed to wait for a slot; more get 429 at once.
        #[arg(long, default_value_t = 64)]
        queue: usize,
        /// Require `Authorization: Bearer KEY` on every endpoint but /health.
        #[arg(long = "api-key", env = "HUARIZO_API_KEY")]
        api_key: Option<String>,
        /// The model's name in the API (default: the -m argument).
        #[arg(long)]
        alias: Option<String>,
    },
    /// Measure prompt-processing and generation speed (llama-bench's tests and table).
    Bench(bench::BenchArgs),
    /// Was model B built on model A? Evidence layer by layer and a verdict
    /// (`huarizo lineage scan DIR…` tables many models).
    Lineage(lineage::LineageArgs),
    /// Score a model on lm-evaluation-harness-compatible tasks (BIG-bench JSON tasks, …).
    Eval(eval::EvalArgs),
    /// Rank models by their mean score over results files of `eval -o`, as Markdown and
    /// a self-contained HTML page.
    Leaderboard(leaderboard::LeaderboardArgs),
    /// Write a model as a Hugging Face checkpoint folder (`--to hf DIR`) or a GGUF file
    /// (`--to gguf FILE`), weights in F32, F16 or BF16.
    Convert(convert::ConvertArgs),
    /// Merge a LoRA adapter into its base model and write a GGUF file.
    Export(quantize::ExportArgs),
    /// Build on a model with new data: `train lora` (JSONL) or `train continue` (text).
    Train(train::TrainArgs),
    /// Rewrite a model with every weight matrix in another type (q8_0, f16, q4_0, …),
    /// as llama-quantize does.
    Quantize(quantize::QuantizeArgs),
    /// Perplexity of a model over a text, as llama-perplexity computes it (chunks of
    /// --ctx tokens, the second half of each scored).
    Perplexity(quality::PerplexityArgs),
    /// KL divergence of a quantized model from its base over a text, as
    /// llama-perplexity --kl-divergence reports it.
    Kld(kld::KldArgs),
    /// Collect an importance matrix (llama-imatrix's GGUF format) for quantization.
    Imatrix(quality::ImatrixArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            model,
            sampling,
            raw,
            n,
            json,
            logprobs,
            prompt,
        } => commands::run(&model, &sampling, raw, n, json, logprobs, &prompt),
        Command::Chat {
            model,
            sampling,
            system,
            n,
        } => commands::chat(&model, &sampling, system.as_deref(), n),
        Command::Tokenize {
            model,
            add_special,
            text,
        } => commands::tokenize(&model, add_special, &text),
        Command::Info { model } => commands::info(&model),
        Command::Pull { model } => commands::pull(&model),
        Command::Serve {
            model,
            host,
            port,
            parallel,
            queue,
            api_key,
            alias,
        } => commands::serve(&model, host, port, parallel, queue, api_key, alias),
        Command::Bench(args) => bench::bench(&args),
        Command::Quantize(args) => quantize::quantize(&args),
        Command::Perplexity(args) => quality::perplexity(&args),
        Command::Kld(args) => kld::kld(&args),
        Command::Imatrix(args) => quality::imatrix(&args),
        Command::Train(args) => train::run(&args),
        Command::Export(args) => quantize::export(&args),
        Command::Convert(args) => convert::convert(&args),
        Command::Lineage(args) => lineage::lineage(&args),
        Command::Eval(args) => eval::eval(&args),
        Command::Leaderboard(args) => leaderboard::leaderboard(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("huarizo: {}", describe(&err));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, each cause once: a cause whose text the message already holds
/// (library errors often repeat their source) is not printed again.
fn describe(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
