//! A Hugging Face checkpoint folder as a GGUF-shaped view: `config.json` becomes the
//! architecture keys, the safetensors tensors (one file, or shards listed by
//! `model.safetensors.index.json`) keep their memory maps under GGUF names.
//!
//! Two tensors differ in content between the formats, as llama.cpp's converter has them:
//! LLaMA's `q_proj`/`k_proj` rows are permuted (Hugging Face rotates the two halves of a
//! head, GGUF `llama` rotates adjacent pairs), and Gemma's RMS-norm weights are `w` in
//! Hugging Face and `1 + w` in GGUF. Those tensors (a few MB) are rewritten into one
//! anonymous map; every other tensor is read in place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};
use serde_json::Value as Json;

use super::config::gguf_metadata;
use super::names::{gguf_name, hf_name, is_norm, HfName};
use crate::arch::Arch;
use crate::config::Config;
use crate::error::ModelError;
use huarizo_formats::{GgmlType, GgufFile, PartTensor, SafetensorsFile, Value};

/// The file that lists the shards of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The weights of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

/// Is `dir` a Hugging Face checkpoint folder (a folder with a `config.json`)?
pub fn is_hf_folder(dir: &Path) -> bool {
    dir.is_dir() && dir.join("config.json").is_file()
}

/// Reads and parses a JSON file of the checkpoint.
pub fn read_json(path: &Path) -> Result<Json, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|error| ModelError::Io {
        op: "reading",
        path: path.to_owned(),
        error,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::HfConfig {
        path: path.to_owned(),
        key: String::new(),
        reason: format!("not valid JSON: {e}"),
    })
}

/// The safetensors files of a checkpoint, and for a sharded one the shard each tensor is
/// listed under (tensor name → file name).
type Shards = (Vec<PathBuf>, Option<HashMap<String, String>>);

/// The [`Shards`] of the checkpoint in `dir`.
fn shard_files(dir: &Path) -> Result<Shards, ModelError> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let json = read_json(&index)?;
        let map = json
            .get("weight_map")
            .and_then(Json::as_object)
            .ok_or_else(|| ModelError::HfConfig {
                path: index.clone(),
                key: "weight_map".into(),
                reason: "missing or not an object".into(),
            })?;
        let mut listed = HashMap::new();
        let mut files = Vec::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| ModelError::HfConfig {
                path: index.clone(),
                key: format!("weight_map.{tensor}"),
                reason: format!("expected a file name, got {file}"),
            })?;
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(ModelError::HfConfig {
                    path: index.clone(),
                    key: format!("weight_map.{tensor}"),
                    reason: format!("{file:?} is not a file name inside the folder"),
                });
            }
            if !files.iter().any(|f| f == file) {
                files.push(file.to_string());
            }
            listed.insert(tensor.clone(), file.to_string());
        }
        files.sort();
        return Ok((files.iter().map(|f| dir.join(f)).collect(), Some(listed)));
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok((vec![single], None));
    }
    Err(ModelError::HfTensor {
        path: dir.to_owned(),
        tensor: String::new(),
        reason: format!("no {SINGLE_FILE} and no {INDEX_FILE} in the folder"),
    })
}

/// Tensors rewritten from their checkpoint form, collected into one anonymous map.
#[derive(Default)]
struct Owned {
    bytes: Vec<u8>,
    tensors: Vec<PartTensor>,
}

/// Opens the checkpoint folder `dir` as a GGUF-shaped view with metadata from
/// `config.json` followed by `extra` (e.g. the tokenizer keys `huarizo-text` reads
/// from `tokenizer.json`). Tensors keep their type (F32, F16, BF16) and are checked
/// against the config (every expected tensor present, shapes as the config implies,
/// each tensor where the index says); errors name the file and tensor or key.
pub fn open_folder(dir: &Path, extra: Vec<(String, Value)>) -> Result<GgufFile, ModelError> {
    let config_path = dir.join("config.json");
    let config = read_json(&config_path)?;
    let (arch, mut metadata) = gguf_metadata(&config_path, &config)?;
    let meta_u64 = |key: &str| {
        metadata
            .iter()
            .find(|(k, _)| k == &format!("{}.{key}", arch.name()))
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(0) as usize
    };
    let n_head = meta_u64("attention.head_count");
    let n_head_kv = meta_u64("attention.head_count_kv");

    let (files, listed) = shard_files(dir)?;
    let mut maps: Vec<Mmap> = Vec::with_capacity(files.len() + 1);
    let mut parts = Vec::new();
    let mut owned = Owned::default();
    let mut first_type = None;
    // GGUF name → (file, checkpoint name), for errors found after renaming.
    let mut origin: HashMap<String, (PathBuf, String)> = HashMap::new();
    for path in &files {
        let st = SafetensorsFile::open(path)?;
        let shard = path.file_name().map(|n| n.to_string_lossy().into_owned());
        for t in st.tensors() {
            if let Some(listed) = &listed {
                let at = listed.get(&t.name);
                if at != shard.as_ref() {
                    return Err(ModelError::HfTensor {
                        path: path.clone(),
                        tensor: t.name.clone(),
                        reason: format!(
                            "found here, but {INDEX_FILE} lists it {}",
                            at.map_or("nowhere".to_string(), |f| format!("in {f}"))
                        ),
                    });
                }
            }
            let name = match gguf_name(arch, &t.name) {
                HfName::Gguf(n) => n,
                HfName::Ignored => continue,
                HfName::Unknown => {
                    return Err(ModelError::HfTensor {
                        path: path.clone(),
                        tensor: t.name.clone(),
                        reason: format!("not a tensor of a {} model huarizo knows", arch.name()),
                    })
                }
            };
            if t.shape.is_empty() || t.shape.len() > 2 {
                return Err(ModelError::HfTensor {
                    path: path.clone(),
                    tensor: t.name.clone(),
                    reason: format!("shape {:?}: expected 1 or 2 dimensions", t.shape),
                });
            }
            let shape: Vec<u64> = t.shape.iter().rev().copied().collect();
            if let Some((other, _)) = origin.insert(name.clone(), (path.clone(), t.name.clone())) {
                return Err(ModelError::HfTensor {
                    path: path.clone(),
                    tensor: t.name.clone(),
                    reason: format!(
                        "a second tensor named {name} in GGUF terms (the first is in {})",
                        other.display()
                    ),
                });
            }
            first_type.get_or_insert(t.dtype);
            let data = st.data(t);
            let rewrite = if arch == Arch::Gemma3 && is_norm(&name) {
                Some(plus_one(t.dtype, data))
            } else if arch == Arch::Llama
                && (name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight"))
            {
                let heads = if name.ends_with("attn_q.weight") {
                    n_head
                } else {
                    n_head_kv
                };
                Some(
                    permute_rows(data, t.shape[0] as usize, heads).ok_or_else(|| {
                        ModelError::HfTensor {
                            path: path.clone(),
                            tensor: t.name.clone(),
                            reason: format!(
                                "{} rows do not split into {heads} heads of even width",
                                t.shape[0]
                            ),
                        }
                    })?,
                )
            } else {
                None
            };
            match rewrite {
                Some(bytes) => {
                    let ggml_type = if arch == Arch::Gemma3 && is_norm(&name) {
                        GgmlType::F32
                    } else {
                        t.dtype
                    };
                    owned.tensors.push(PartTensor {
                        name,
                        shape,
                        ggml_type,
                        map: usize::MAX, // set once the owned map exists
                        start: owned.bytes.len(),
                    });
                    owned.bytes.extend_from_slice(&bytes);
                }
                None => parts.push(PartTensor {
                    name,
                    shape,
                    ggml_type: t.dtype,
                    map: maps.len(),
                    start: t.start,
                }),
            }
        }
        if let Some(listed) = &listed {
            // Tensors the index places in this shard must be in it.
            let names: std::collections::HashSet<&str> =
                st.tensors().iter().map(|t| t.name.as_str()).collect();
            if let Some((missing, _)) = listed
                .iter()
                .filter(|(_, f)| Some(*f) == shard.as_ref())
                .find(|(n, _)| !names.contains(n.as_str()))
            {
                return Err(ModelError::HfTensor {
                    path: path.clone(),
                    tensor: missing.clone(),
                    reason: format!("{INDEX_FILE} lists it in this file, which does not hold it"),
                });
            }
        }
        maps.push(st.into_parts().0);
    }
    if !owned.tensors.is_empty() {
        let mut anon =
            MmapMut::map_anon(owned.bytes.len().max(1)).map_err(|error| ModelError::Io {
                op: "allocating memory for rewritten tensors",
                path: dir.to_owned(),
                error,
            })?;
        anon[..owned.bytes.len()].copy_from_slice(&owned.bytes);
        let map = anon.make_read_only().map_err(|error| ModelError::Io {
            op: "protecting rewritten tensors",
            path: dir.to_owned(),
            error,
        })?;
        let index = maps.len();
        maps.push(map);
        parts.extend(
            owned
                .tensors
                .into_iter()
                .map(|t| PartTensor { map: index, ..t }),
        );
    }

    let file_type = match first_type {
        Some(GgmlType::F16) => 1u32,
        Some(GgmlType::BF16) => 32,
        _ => 0,
    };
    if !metadata.iter().any(|(k, _)| k == "general.name") {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        metadata.push(("general.name".into(), Value::String(name)));
    }
    metadata.push(("general.file_type".into(), Value::U32(file_type)));
    let known: std::collections::HashSet<String> =
        metadata.iter().map(|(k, _)| k.clone()).collect();
    metadata.extend(extra.into_iter().filter(|(k, _)| !known.contains(k)));
    parts.sort_by_key(|t| tensor_order(&t.name));
    let file = GgufFile::from_parts(dir, metadata, parts, maps)?;
    check_tensors(dir, &file, &origin)?;
    Ok(file)
}

/// Sort key putting tensors in GGUF's usual order: embeddings, layers by number, head.
fn tensor_order(name: &str) -> (usize, usize, String) {
    match name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
        Some((n, rest)) => (1, n.parse().unwrap_or(usize::MAX), rest.to_string()),
        None if name.starts_with("token_embd") => (0, 0, name.to_string()),
        None => (2, 0, name.to_string()),
    }
}

/// Checks every tensor the config implies is present with the shape it implies, so
/// that errors name the checkpoint's file and tensor rather than GGUF names.
fn check_tensors(
    dir: &Path,
    file: &GgufFile,
    origin: &HashMap<String, (PathBuf, String)>,
) -> Result<(), ModelError> {
    let c = Config::from_gguf(file).map_err(|e| match e {
        ModelError::MissingTensor { name } => ModelError::HfTensor {
            path: dir.to_owned(),
            tensor: hf_name(Arch::Llama, &name).unwrap_or(name),
            reason: "missing".into(),
        },
        other => other,
    })?;
    let (e, v) = (c.n_embd as u64, c.n_vocab as u64);
    let (h, hkv, d, dv, ff) = (
        c.n_head as u64,
        c.n_head_kv as u64,
        c.head_dim as u64,
        c.head_dim_v as u64,
        c.n_ff as u64,
    );
    if let Some(vocab) = file
        .get(&format!("{}.vocab_size", c.arch.name()))
        .and_then(Value::as_u64)
    {
        if vocab != v {
            let (path, tensor) = &origin["token_embd.weight"];
            return Err(ModelError::HfTensor {
                path: path.clone(),
                tensor: tensor.clone(),
                reason: format!("{v} rows, but config.json has vocab_size = {vocab}"),
            });
        }
    }
    let mut expect: Vec<(String, Vec<u64>, bool)> = vec![
        ("token_embd.weight".into(), vec![e, v], true),
        ("output_norm.weight".into(), vec![e], true),
        ("output.weight".into(), vec![e, v], false),
    ];
    let spec = c.spec;
    for il in 0..c.n_layer {
        let rows: [(&str, Vec<u64>, bool); 16] = [
            ("attn_norm.weight", vec![e], true),
            ("attn_q.weight", vec![e, h * d], true),
            ("attn_k.weight", vec![e, hkv * d], true),
            ("attn_v.weight", vec![e, hkv * dv], true),
            ("attn_output.weight", vec![h * dv, e], true),
            ("attn_q.bias", vec![h * d], false),
            ("attn_k.bias", vec![hkv * d], false),
            ("attn_v.bias", vec![hkv * dv], false),
            ("attn_q_norm.weight", vec![d], spec.qk_norm),
            ("attn_k_norm.weight", vec![d], spec.qk_norm),
            ("post_attention_norm.weight", vec![e], spec.post_norms),
            ("ffn_norm.weight", vec![e], true),
            ("ffn_gate.weight", vec![e, ff], true),
            ("ffn_up.weight", vec![e, ff], true),
            ("ffn_down.weight", vec![ff, e], true),
            ("post_ffw_norm.weight", vec![e], spec.post_norms),
        ];
        expect.extend(
            rows.into_iter()
                .map(|(n, s, r)| (format!("blk.{il}.{n}"), s, r)),
        );
    }
    for (name, shape, required) in &expect {
        match (file.tensor(name), origin.get(name)) {
            (Some(t), Some((path, tensor))) if &t.shape != shape => {
                let rev = |s: &[u64]| s.iter().rev().copied().collect::<Vec<_>>();
                return Err(ModelError::HfTensor {
                    path: path.clone(),
                    tensor: tensor.clone(),
                    reason: format!(
                        "shape {:?}, but config.json implies {:?}",
                        rev(&t.shape),
                        rev(shape)
                    ),
                });
            }
            (None, _) if *required => {
                return Err(ModelError::HfTensor {
                    path: dir.to_owned(),
                    tensor: hf_name(c.arch, name).unwrap_or_else(|| name.clone()),
                    reason: format!(
                        "missing (config.json has num_hidden_layers = {})",
                        c.n_layer
                    ),
                })
            }
            _ => {}
        }
    }
    let known: std::collections::HashSet<&str> =
        expect.iter().map(|(n, _, _)| n.as_str()).collect();
    if let Some(t) = file
        .tensors()
        .iter()
        .find(|t| !known.contains(t.name.as_str()))
    {
        let (path, tensor) = origin
            .get(&t.name)
            .cloned()
            .unwrap_or_else(|| (dir.to_owned(), t.name.clone()));
        return Err(ModelError::HfTensor {
            path,
            tensor,
            reason: format!(
                "not used by a {} model of num_hidden_layers = {}",
                c.arch.name(),
                c.n_layer
            ),
        });
    }
    Ok(())
}

/// `1 + w` for an RMS-norm weight `w` of type `ty`, as little-endian f32 bytes.
fn plus_one(ty: GgmlType, data: &[u8]) -> Vec<u8> {
    let mut w = vec![0.0f32; data.len() / ty.type_size()];
    huarizo_kernels::dequantize_row(ty, data, &mut w);
    w.iter().flat_map(|x| (1.0 + x).to_le_bytes()).collect()
}

/// `1 + w` undone: `w` of an RMS-norm weight stored as `1 + w`.
pub(super) fn minus_one(values: &mut [f32]) {
    values.iter_mut().for_each(|x| *x -= 1.0);
}

/// LLaMA's q/k row permutation from Hugging Face to GGUF order: within each of `heads`
/// heads of width D, row `j·D/2 + i` (half j, index i) moves to `2i + j`. `data` holds
/// `rows` rows of equal byte length. `None` if the rows do not split into heads of even
/// width.
pub(crate) fn permute_rows(data: &[u8], rows: usize, heads: usize) -> Option<Vec<u8>> {
    permute(data, rows, heads, false)
}

/// The inverse of [`permute_rows`]: GGUF order back to Hugging Face order.
pub(crate) fn unpermute_rows(data: &[u8], rows: usize, heads: usize) -> Option<Vec<u8>> {
    permute(data, rows, heads, true)
}

fn permute(data: &[u8], rows: usize, heads: usize, inverse: bool) -> Option<Vec<u8>> {
    if heads == 0
        || rows == 0
        || !rows.is_multiple_of(heads)
        || !(rows / heads).is_multiple_of(2)
        || !data.len().is_multiple_of(rows)
    {
        return None;
    }
    let (d, row) = (rows / heads, data.len() / rows);
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..d / 2 {
                let hf = h * d + j * d / 2 + i;
                let gg = h * d + 2 * i + j;
                let (src, dst) = if inverse { (gg, hf) } else { (hf, gg) };
                out[dst * row..(dst + 1) * row].copy_from_slice(&data[src * row..(src + 1) * row]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_matches_llama_cpp_and_inverts() {
        // 2 heads of width 4, one byte per row: HF rows [a0 a1 b0 b1] per head (halves a, b)
        // become interleaved [a0 b0 a1 b1].
        let hf: Vec<u8> = vec![0, 1, 2, 3, 4, 5, 6, 7];
        let gg = permute_rows(&hf, 8, 2).unwrap();
        assert_eq!(gg, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        assert_eq!(unpermute_rows(&gg, 8, 2).unwrap(), hf);
        assert!(permute_rows(&hf, 8, 3).is_none());
        assert!(permute_rows(&hf, 8, 8).is_none(), "heads of odd width");
    }
}
