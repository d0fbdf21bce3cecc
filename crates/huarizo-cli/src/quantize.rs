//! `huarizo quantize`: rewrite a model with its weight matrices in another type, as
//! `llama-quantize --allow-requantize --pure INPUT OUTPUT TYPE` does.

use anyhow::{anyhow, Result};
use huarizo_engine::requantize::{
    parse_target, requantize, Action, RequantizeOptions, TensorReport,
};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `huarizo quantize`.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// The model to requantize: a GGUF path, `hf:owner/repo[:file]`, or an alias.
    pub input: String,
    /// The GGUF file to write (replaced atomically; it may be the input).
    pub output: PathBuf,
    /// Type for the weight matrices, case-insensitive: f32, f16, bf16, q4_0, q4_1, q5_0,
    /// q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k. Norms and biases stay as they are.
    #[arg(value_name = "TYPE")]
    pub ty: String,
    /// Threads to quantize with (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
}

/// `huarizo quantize`.
pub fn quantize(args: &QuantizeArgs) -> Result<()> {
    let target = parse_target(&args.ty).map_err(|e| anyhow!(e))?;
    let input = huarizo_hub::resolve(&args.input, &huarizo_hub::ResolveOptions::default())?;
    let start = Instant::now();
    let summary = requantize(
        &input,
        &args.output,
        &RequantizeOptions {
            target,
            n_threads: args.threads,
        },
        print_progress,
    )?;
    let fallbacks = match summary.fallbacks.len() {
        0 => String::new(),
        n => format!(", {n} fell back to another type (marked above)"),
    };
    println!(
        "{}: {} tensors, {} requantized to {target}{fallbacks}; {} → {} in {:.1} s",
        args.output.display(),
        summary.tensors,
        summary.requantized,
        mib(summary.input_bytes),
        mib(summary.output_bytes),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One line per tensor on stderr: `[ 12/272] blk.0.attn_q.weight  576×576  Q4_1 → Q8_0`.
fn print_progress(r: &TensorReport) {
    let width = r.count.to_string().len();
    let shape: Vec<String> = r.shape.iter().map(u64::to_string).collect();
    let what = match r.action {
        Action::Requantized => format!("{} → {}", r.from, r.to),
        Action::Fallback => format!(
            "{} → {} (fallback: rows of {} are not whole blocks of the target)",
            r.from,
            r.to,
            r.shape.first().copied().unwrap_or(1)
        ),
        Action::AlreadyTarget => format!("{} (already the target, copied)", r.to),
        Action::Kept => format!("{} (kept)", r.to),
    };
    eprintln!(
        "[{:>width$}/{}] {:<28} {:>12}  {what}",
        r.index + 1,
        r.count,
        r.name,
        shape.join("×"),
    );
}

/// `bytes` as `"93.8 MiB"`.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Arguments of `huarizo export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The base model: a GGUF path, a Hugging Face folder, `hf:owner/repo[:file]`, or an
    /// alias.
    #[arg(short = 'm', long = "model", default_value = huarizo_hub::DEFAULT_MODEL)]
    pub model: String,
    /// The LoRA adapter to merge (GGUF, as `huarizo train` writes it).
    #[arg(long)]
    pub lora: PathBuf,
    /// The GGUF file to write.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Type for the weight matrices (f16, q8_0, q4_k, …; see `huarizo quantize`).
    #[arg(long = "type", default_value = "f16")]
    pub ty: String,
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
}

/// `huarizo export`: the base model with a LoRA adapter merged into its weights.
pub fn export(args: &ExportArgs) -> Result<()> {
    let target = parse_target(&args.ty).map_err(|e| anyhow!(e))?;
    let input = huarizo_hub::resolve(&args.model, &huarizo_hub::ResolveOptions::default())?;
    let file = huarizo_engine::open_model_file(&input)?;
    let config = huarizo_engine::Config::from_gguf(&file)
        .map_err(|e| anyhow!("{}: {e}", input.display()))?;
    let adapter = huarizo_engine::read_gguf_lora(&args.lora, &config)?;
    let start = Instant::now();
    let summary = huarizo_engine::requantize::requantize_merged(
        &file,
        &args.output,
        &RequantizeOptions {
            target,
            n_threads: args.threads,
        },
        &adapter,
        print_progress,
    )?;
    println!(
        "{}: {} tensors, {} adapted by {} merged, weights as {target}; {} in {:.1} s",
        args.output.display(),
        summary.tensors,
        adapter.tensors.len(),
        args.lora.display(),
        mib(summary.output_bytes),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
