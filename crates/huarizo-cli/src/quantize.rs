//! `huarizo quantize`: rewrite a model with its weight matrices quantized as
//! `llama-quantize --allow-requantize [--pure] [--imatrix FILE] INPUT OUTPUT TYPE` does.

use anyhow::{anyhow, bail, Result};
use huarizo_engine::requantize::{
    requantize_file, Action, FileType, RequantizeOptions, TensorReport,
};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `huarizo quantize`.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// The model to quantize: a GGUF file, a Hugging Face folder, `hf:owner/repo[:file]`,
    /// or an alias.
    pub input: String,
    /// The GGUF file to write (replaced atomically; it may be the input).
    pub output: PathBuf,
    /// The file type, case-insensitive, llama-quantize's names: q4_0, q4_1, q5_0, q5_1,
    /// q8_0, q2_k, q2_k_s, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k,
    /// f16, bf16, f32 (q3_k, q4_k, q5_k mean the _m mixes). Also as `--type`.
    #[arg(value_name = "TYPE")]
    pub ty: Option<String>,
    /// The file type (as the positional TYPE).
    #[arg(long = "type", value_name = "TYPE")]
    pub type_flag: Option<String>,
    /// Every weight matrix in the type's base type, without llama.cpp's mix of more bits
    /// for the output, `attn_v` and `ffn_down`.
    #[arg(long)]
    pub pure: bool,
    /// An importance matrix (`huarizo imatrix` or llama-imatrix, GGUF or legacy `.dat`):
    /// the quantization error is weighted by each column's importance.
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// Threads to quantize with (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
}

impl QuantizeArgs {
    /// The file type asked for, positional or `--type` (exactly one).
    fn file_type(&self) -> Result<FileType> {
        let name = match (&self.ty, &self.type_flag) {
            (Some(_), Some(_)) => bail!("give the type once: as TYPE or as --type, not both"),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => bail!("no quantization type given (e.g. `--type q4_k_m`)"),
        };
        FileType::parse(name).map_err(|e| anyhow!(e))
    }
}

/// `huarizo quantize`.
pub fn quantize(args: &QuantizeArgs) -> Result<()> {
    let ftype = args.file_type()?;
    let input = huarizo_hub::resolve(&args.input, &huarizo_hub::ResolveOptions::default())?;
    let importance = match &args.imatrix {
        Some(path) => Some(std::sync::Arc::new(read_importance(path)?)),
        None => None,
    };
    let file = huarizo_engine::open_model_file(&input)?;
    let start = Instant::now();
    let summary = requantize_file(
        &file,
        &args.output,
        &RequantizeOptions {
            ftype,
            pure: args.pure,
            importance,
            n_threads: args.threads,
        },
        print_progress,
    )?;
    let fallbacks = match summary.fallbacks.len() {
        0 => String::new(),
        n => format!(", {n} fell back to another type (marked above)"),
    };
    println!(
        "{}: {} tensors, {} quantized as {ftype}{}{fallbacks}; {} → {} in {:.1} s",
        args.output.display(),
        summary.tensors,
        summary.requantized + summary.fallbacks.len(),
        if args.pure { " (pure)" } else { "" },
        mib(summary.input_bytes),
        mib(summary.output_bytes),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The column importance in the importance matrix at `path`, checked finite (as
/// llama-quantize checks it), with a line about it on stderr.
fn read_importance(path: &std::path::Path) -> Result<huarizo_engine::requantize::Importance> {
    let m = huarizo_engine::read_imatrix(path)?;
    if let Some((name, _)) = m
        .entries
        .iter()
        .find(|(_, v)| v.iter().any(|x| !x.is_finite()))
    {
        bail!(
            "{}: the importance of `{name}` has a non-finite value",
            path.display()
        );
    }
    eprintln!(
        "{}: importance of {} weight matrices, {} chunks of {} tokens from {}",
        path.display(),
        m.entries.len(),
        m.chunks,
        m.chunk_size,
        if m.datasets.is_empty() {
            "an unnamed text".to_owned()
        } else {
            m.datasets.join(", ")
        }
    );
    Ok(m.entries)
}

/// One line per tensor on stderr: `[ 12/272] blk.0.attn_q.weight  576×576  Q4_1 → Q8_0`.
fn print_progress(r: &TensorReport) {
    let width = r.count.to_string().len();
    let shape: Vec<String> = r.shape.iter().map(u64::to_string).collect();
    let what = match r.action {
        Action::Requantized => format!("{} → {}{}", r.from, r.to, weighted(r)),
        Action::Fallback => format!(
            "{} → {}{} (fallback: rows of {} are not whole blocks of the mix's type)",
            r.from,
            r.to,
            weighted(r),
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

/// `" (imatrix)"` when importance weights guided the tensor's quantization.
fn weighted(r: &TensorReport) -> &'static str {
    if r.importance {
        " (imatrix)"
    } else {
        ""
    }
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
    let ftype = FileType::parse(&args.ty).map_err(|e| anyhow!(e))?;
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
            ftype,
            pure: false,
            importance: None,
            n_threads: args.threads,
        },
        &adapter,
        print_progress,
    )?;
    println!(
        "{}: {} tensors, {} adapted by {} merged, weights as {ftype}; {} in {:.1} s",
        args.output.display(),
        summary.tensors,
        adapter.tensors.len(),
        args.lora.display(),
        mib(summary.output_bytes),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
