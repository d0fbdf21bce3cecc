//! LoRA adapters on disk: as a GGUF LoRA the way llama.cpp's `--lora` reads it
//! (`general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, tensors
//! `blk.N.<weight>.weight.lora_a` of ggml shape `[n_in, r]` and `.lora_b` of `[r, n_out]`),
//! and as a PEFT adapter (`adapter_config.json`, `adapter_model.safetensors`) in Hugging
//! Face's row order.

use super::lora::{hf_row_order, LoraAdapter, LoraConfig, LoraTarget, LoraTensor};
use crate::config::Config;
use crate::error::ModelError;
use huarizo_formats::{write_safetensors, GgmlType, GgufFile, GgufWriter, SafeTensorOut, Value};
use std::collections::BTreeMap;
use std::path::Path;

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes `adapter` as a GGUF LoRA for a model of family `arch` (the base file's
/// `general.architecture`).
pub fn write_gguf_lora(adapter: &LoraAdapter, arch: &str, path: &Path) -> Result<u64, ModelError> {
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", Value::String(arch.into()))
        .metadata("general.type", Value::String("adapter".into()))
        .metadata("adapter.type", Value::String("lora".into()))
        .metadata("adapter.lora.alpha", Value::F32(adapter.config.alpha))
        .metadata("huarizo.lora.dropout", Value::F32(adapter.config.dropout));
    let r = adapter.config.rank as u64;
    for t in &adapter.tensors {
        let base = format!("blk.{}.{}.weight", t.layer, t.target.gguf_name());
        w.tensor(
            format!("{base}.lora_a"),
            vec![t.n_in as u64, r],
            GgmlType::F32,
            f32_bytes(&t.a),
        )?;
        w.tensor(
            format!("{base}.lora_b"),
            vec![r, t.n_out as u64],
            GgmlType::F32,
            f32_bytes(&t.b),
        )?;
    }
    Ok(w.write_to(path)?)
}

/// Reads a GGUF LoRA for a model of shape `model`. Tensors may be F32, F16 or BF16; a
/// missing `adapter.lora.alpha` means α = r (scale 1), as in llama.cpp.
pub fn read_gguf_lora(path: &Path, model: &Config) -> Result<LoraAdapter, ModelError> {
    let file = GgufFile::open(path)?;
    let bad = |msg: String| ModelError::Adapter(format!("{}: {msg}", path.display()));
    match file.get("general.type") {
        Some(Value::String(s)) if s == "adapter" => {}
        _ => {
            return Err(bad(
                "not an adapter (general.type is not \"adapter\")".into()
            ))
        }
    }
    if !matches!(file.get("adapter.type"), Some(Value::String(s)) if s == "lora") {
        return Err(bad(
            "not a LoRA adapter (adapter.type is not \"lora\")".into()
        ));
    }
    let mut tensors = Vec::new();
    let mut rank = None;
    let mut targets = Vec::new();
    for info in file.tensors() {
        let Some(base) = info.name.strip_suffix(".lora_a") else {
            if info.name.ends_with(".lora_b") {
                continue;
            }
            return Err(bad(format!("unexpected tensor {}", info.name)));
        };
        let parts: Vec<&str> = base.split('.').collect();
        let (layer, target) = match parts.as_slice() {
            ["blk", l, name, "weight"] => (
                l.parse::<usize>()
                    .map_err(|_| bad(format!("tensor {}: bad layer number", info.name)))?,
                LoraTarget::parse(name)
                    .ok_or_else(|| bad(format!("tensor {}: not an adaptable layer", info.name)))?,
            ),
            _ => {
                return Err(bad(format!(
                    "tensor {}: not blk.N.<layer>.weight",
                    info.name
                )))
            }
        };
        let b_name = format!("{base}.lora_b");
        let b_info = file
            .tensor(&b_name)
            .ok_or_else(|| bad(format!("{} has no {b_name}", info.name)))?;
        let (n_in, n_out) = target.shape(model);
        let r = match info.shape.as_slice() {
            [i, r] if *i as usize == n_in => *r as usize,
            _ => {
                return Err(bad(format!(
                    "tensor {}: shape {:?}, expected [{n_in}, rank]",
                    info.name, info.shape
                )))
            }
        };
        if b_info.shape != [r as u64, n_out as u64] {
            return Err(bad(format!(
                "tensor {b_name}: shape {:?}, expected [{r}, {n_out}]",
                b_info.shape
            )));
        }
        if *rank.get_or_insert(r) != r {
            return Err(bad("tensors of different ranks".into()));
        }
        let read = |i: &huarizo_formats::TensorInfo| -> Result<Vec<f32>, ModelError> {
            if !matches!(i.ggml_type, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
                return Err(bad(format!(
                    "tensor {}: type {}, expected F32, F16 or BF16",
                    i.name,
                    i.ggml_type.name()
                )));
            }
            crate::weights::dequantize(&file, i)
        };
        if !targets.contains(&target) {
            targets.push(target);
        }
        tensors.push(LoraTensor {
            layer,
            target,
            n_in,
            n_out,
            a: read(info)?,
            b: read(b_info)?,
        });
    }
    let rank = rank.ok_or_else(|| bad("no LoRA tensors".into()))?;
    let alpha = match file.get("adapter.lora.alpha") {
        Some(v) => v
            .as_f64()
            .map(|a| a as f32)
            .filter(|a| *a != 0.0)
            .unwrap_or(rank as f32),
        None => rank as f32,
    };
    let dropout = file
        .get("huarizo.lora.dropout")
        .and_then(Value::as_f64)
        .unwrap_or(0.0) as f32;
    targets.sort();
    tensors.sort_by_key(|t| (t.layer, t.target));
    let adapter = LoraAdapter {
        config: LoraConfig {
            rank,
            alpha,
            dropout,
            targets,
        },
        tensors,
    };
    adapter.validate(model).map_err(|e| bad(e.to_string()))?;
    Ok(adapter)
}

/// The PEFT name of a tensor's A (`which = "A"`) or B.
fn peft_name(t: &LoraTensor, which: &str) -> String {
    format!(
        "base_model.model.model.layers.{}.{}.{}.lora_{which}.weight",
        t.layer,
        t.target.hf_block(),
        t.target.hf_name()
    )
}

/// Writes `adapter` into folder `dir` as a PEFT adapter: `adapter_config.json` and
/// `adapter_model.safetensors` (F32, B rows in Hugging Face order). `base_model` names
/// the base model in the config.
pub fn write_peft(
    adapter: &LoraAdapter,
    model: &Config,
    base_model: &str,
    dir: &Path,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|error| ModelError::Io {
        op: "creating the adapter folder",
        path: dir.to_path_buf(),
        error,
    })?;
    let c = &adapter.config;
    let mut targets: Vec<&str> = c.targets.iter().map(|t| t.hf_name()).collect();
    targets.sort_unstable();
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": c.rank,
        "lora_alpha": c.alpha,
        "lora_dropout": c.dropout,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "layers_to_transform": null,
        "revision": null,
    });
    crate::hf::write_json(&dir.join("adapter_config.json"), &config)?;
    let mut outs = Vec::new();
    for t in &adapter.tensors {
        outs.push(SafeTensorOut {
            name: peft_name(t, "A"),
            dtype: GgmlType::F32,
            shape: vec![c.rank as u64, t.n_in as u64],
        });
        outs.push(SafeTensorOut {
            name: peft_name(t, "B"),
            dtype: GgmlType::F32,
            shape: vec![t.n_out as u64, c.rank as u64],
        });
    }
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors::<ModelError>(
        &dir.join("adapter_model.safetensors"),
        &outs,
        &meta,
        |i, buf| {
            let t = &adapter.tensors[i / 2];
            let values = if i.is_multiple_of(2) {
                t.a.clone()
            } else {
                hf_row_order(model, t.target, &t.b, true)
            };
            buf.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            Ok(())
        },
    )?;
    Ok(())
}
