//! `huarizo convert`: write a model (GGUF file, Hugging Face folder, `hf:` name or alias)
//! as a Hugging Face checkpoint folder (`--to hf DIR`) or as a GGUF file (`--to gguf
//! FILE`), weights in F32, F16 or BF16.

use anyhow::{bail, Context, Result};
use huarizo_engine::requantize::{requantize_file, RequantizeOptions};
use huarizo_engine::{export_hf_checkpoint, GgmlType, HfExportOptions, DEFAULT_SHARD_BYTES};
use std::path::PathBuf;

/// The output format of `huarizo convert`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A Hugging Face checkpoint folder: config.json, safetensors, tokenizer files.
    Hf,
    /// One GGUF file with full metadata.
    Gguf,
}

/// Arguments of `huarizo convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The model: a GGUF path, a Hugging Face folder, `hf:owner/repo[:file]`, or an alias.
    #[arg(short = 'm', long = "model", default_value = huarizo_hub::DEFAULT_MODEL)]
    pub model: String,
    /// Output format.
    #[arg(long = "to", value_enum)]
    pub to: Target,
    /// The folder (`--to hf`) or file (`--to gguf`) to write.
    pub output: PathBuf,
    /// Weight type: F32, F16 or BF16 (default F32 for `--to hf`, F16 for `--to gguf`).
    #[arg(long = "type")]
    pub ty: Option<String>,
    /// `--to hf`: largest safetensors shard in bytes; larger models are split, with
    /// model.safetensors.index.json.
    #[arg(long = "shard-size", default_value_t = DEFAULT_SHARD_BYTES)]
    pub shard_size: u64,
    /// Threads (`--to gguf`; default all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
}

fn float_type(s: &str) -> Result<GgmlType> {
    match s.to_ascii_uppercase().as_str() {
        "F32" => Ok(GgmlType::F32),
        "F16" => Ok(GgmlType::F16),
        "BF16" => Ok(GgmlType::BF16),
        _ => bail!(
            "--type {s}: expected F32, F16 or BF16 (use `huarizo quantize` for quantized types)"
        ),
    }
}

/// `huarizo convert`.
pub fn convert(args: &ConvertArgs) -> Result<()> {
    let path = crate::commands::resolve(&args.model)?;
    let file = huarizo_engine::open_model_file(&path)?;
    match args.to {
        Target::Hf => {
            let dtype = float_type(args.ty.as_deref().unwrap_or("F32"))?;
            if args.shard_size == 0 {
                bail!("--shard-size must be at least 1 byte");
            }
            let summary = export_hf_checkpoint(
                &file,
                &args.output,
                &HfExportOptions {
                    dtype,
                    shard_bytes: args.shard_size,
                },
            )
            .with_context(|| format!("writing {}", args.output.display()))?;
            println!(
                "{}: {} tensors as {} in {} ({:.1} MiB), config.json, tokenizer.json, tokenizer_config.json, generation_config.json",
                args.output.display(),
                summary.n_tensors,
                dtype.name(),
                summary.files.join(", "),
                summary.data_bytes as f64 / (1 << 20) as f64
            );
        }
        Target::Gguf => {
            let target = float_type(args.ty.as_deref().unwrap_or("F16"))?;
            let summary = requantize_file(
                &file,
                &args.output,
                &RequantizeOptions::single_type(target, args.threads)?,
                |_| {},
            )?;
            println!(
                "{}: {} tensors, weight matrices as {}, {:.1} MiB",
                args.output.display(),
                summary.tensors,
                target.name(),
                summary.output_bytes as f64 / (1 << 20) as f64
            );
        }
    }
    Ok(())
}
