//! A model written as a Hugging Face checkpoint: `config.json` and the weights as
//! safetensors (one file, or shards plus `model.safetensors.index.json` above a size),
//! each tensor dequantized, given back its Hugging Face name, layout and content (LLaMA's
//! q/k rows un-permuted, Gemma's norms `w` rather than `1 + w`) and stored as F32, F16 or
//! BF16. The tokenizer files are `huarizo-text`'s to write.

use std::collections::BTreeMap;
use std::path::Path;

use huarizo_formats::{write_safetensors, GgmlType, GgufFile, SafeTensorOut, WriteError};
use serde_json::json;

use super::config::hf_config;
use super::load::{minus_one, unpermute_rows, INDEX_FILE, SINGLE_FILE};
use super::names::{hf_name, is_norm};
use crate::arch::Arch;
use crate::config::Config;
use crate::error::ModelError;
use crate::weights;

/// Shard size above which the weights are split: 2 GB, as `save_pretrained` defaults
/// to 5 GB and the Hub suggests a few GB per file.
pub const DEFAULT_SHARD_BYTES: u64 = 2_000_000_000;

/// How to write a checkpoint.
#[derive(Clone, Debug)]
pub struct HfExportOptions {
    /// Type of the written weights: F32, F16 or BF16.
    pub dtype: GgmlType,
    /// Largest shard, in bytes of tensor data; one shard when everything fits.
    pub shard_bytes: u64,
}

impl Default for HfExportOptions {
    fn default() -> Self {
        HfExportOptions {
            dtype: GgmlType::F32,
            shard_bytes: DEFAULT_SHARD_BYTES,
        }
    }
}

/// What [`export_hf`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HfExportSummary {
    /// The safetensors files, in order.
    pub files: Vec<String>,
    /// Tensors written.
    pub n_tensors: usize,
    /// Bytes of tensor data.
    pub data_bytes: u64,
}

fn dtype_name(t: GgmlType) -> Option<&'static str> {
    match t {
        GgmlType::F32 => Some("float32"),
        GgmlType::F16 => Some("float16"),
        GgmlType::BF16 => Some("bfloat16"),
        _ => None,
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ModelError + 'a {
    move |error| ModelError::Io {
        op,
        path: path.to_owned(),
        error,
    }
}

impl From<WriteError> for ModelError {
    fn from(e: WriteError) -> ModelError {
        ModelError::Invalid(format!("writing safetensors: {e}"))
    }
}

/// Writes the model in `file` (whose hyperparameters are `config`) into folder `dir`
/// (created if needed) as `config.json` plus safetensors weights.
pub fn export_hf(
    file: &GgufFile,
    config: &Config,
    dir: &Path,
    opts: &HfExportOptions,
) -> Result<HfExportSummary, ModelError> {
    let dtype_str = dtype_name(opts.dtype).ok_or_else(|| {
        ModelError::Invalid(format!(
            "cannot write Hugging Face weights as {} (supported: F32, F16, BF16)",
            opts.dtype.name()
        ))
    })?;
    std::fs::create_dir_all(dir).map_err(io("creating the folder", dir))?;
    let arch = config.arch;
    let tied = file.tensor("output.weight").is_none();

    // Tensors in file order, with their Hugging Face names and shapes.
    let mut out = Vec::new();
    for t in file.tensors() {
        let Some(name) = hf_name(arch, &t.name) else {
            return Err(ModelError::Invalid(format!(
                "tensor {} has no Hugging Face name for a {} model",
                t.name,
                arch.name()
            )));
        };
        let shape: Vec<u64> = t.shape.iter().rev().copied().collect();
        out.push((
            t.clone(),
            SafeTensorOut {
                name,
                dtype: opts.dtype,
                shape,
            },
        ));
    }
    // Shards: consecutive tensors up to the size limit.
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0u64;
    for (i, (_, o)) in out.iter().enumerate() {
        let n = o.n_bytes() as u64;
        if size > 0 && size + n > opts.shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += n;
        shards.last_mut().expect("one shard at least").push(i);
    }
    let n_shards = shards.len();
    let names: Vec<String> = if n_shards == 1 {
        vec![SINGLE_FILE.to_string()]
    } else {
        (1..=n_shards)
            .map(|k| format!("model-{k:05}-of-{n_shards:05}.safetensors"))
            .collect()
    };
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let mut weight_map = serde_json::Map::new();
    let mut data_bytes = 0u64;
    for (shard, fname) in shards.iter().zip(&names) {
        let tensors: Vec<SafeTensorOut> = shard.iter().map(|&i| out[i].1.clone()).collect();
        let path = dir.join(fname);
        write_safetensors::<ModelError>(&path, &tensors, &metadata, |k, buf| {
            let (info, o) = &out[shard[k]];
            let mut values = weights::dequantize(file, info)?;
            if arch == Arch::Gemma3 && is_norm(&info.name) {
                minus_one(&mut values);
            }
            let mut bytes = encode(opts.dtype, &values);
            if arch == Arch::Llama
                && (info.name.ends_with("attn_q.weight") || info.name.ends_with("attn_k.weight"))
            {
                let heads = if info.name.ends_with("attn_q.weight") {
                    config.n_head
                } else {
                    config.n_head_kv
                };
                bytes = unpermute_rows(&bytes, o.shape[0] as usize, heads).ok_or_else(|| {
                    ModelError::Invalid(format!(
                        "tensor {}: rows do not split into {heads} heads",
                        info.name
                    ))
                })?;
            }
            buf.extend_from_slice(&bytes);
            Ok(())
        })?;
        for o in &tensors {
            weight_map.insert(o.name.clone(), json!(fname));
            data_bytes += o.n_bytes() as u64;
        }
    }
    if n_shards > 1 {
        let index = json!({"metadata": {"total_size": data_bytes}, "weight_map": weight_map});
        write_json(&dir.join(INDEX_FILE), &index)?;
    } else {
        // A stale index from an earlier sharded export would shadow model.safetensors.
        let _ = std::fs::remove_file(dir.join(INDEX_FILE));
    }
    write_json(
        &dir.join("config.json"),
        &hf_config(config, file, tied, dtype_str)?,
    )?;
    Ok(HfExportSummary {
        files: names,
        n_tensors: out.len(),
        data_bytes,
    })
}

/// `values` as little-endian bytes of `t` (F32, F16 or BF16; round to nearest even).
fn encode(t: GgmlType, values: &[f32]) -> Vec<u8> {
    match t {
        GgmlType::F16 => values
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), ModelError> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    text.push('\n');
    std::fs::write(path, text).map_err(io("writing", path))
}
