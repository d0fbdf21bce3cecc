//! `config.json` against GGUF metadata: the keys llama.cpp's converter writes for a
//! family, read from a Hugging Face config ([`gguf_metadata`]), and a config that
//! transformers loads, written from a loaded [`Config`] ([`hf_config`]).
//!
//! Each field is required or optional with the default transformers uses; a value this
//! decoder cannot honour (an activation, a soft-cap, a RoPE scaling it does not run) is
//! an error naming the key, not a silent approximation.

use std::path::Path;

use serde_json::{json, Map, Value as Json};

use crate::arch::Arch;
use crate::config::{Config, RopeScaling};
use crate::error::ModelError;
use huarizo_formats::{GgufFile, Value};

/// Sliding-window layers per global layer in Gemma 3, which [`crate::arch`] assumes.
const GEMMA3_PATTERN: usize = 6;
/// RoPE base of Gemma 3's sliding-window layers, which [`crate::arch`] assumes.
const GEMMA3_ROPE_LOCAL: f64 = 10_000.0;

/// Reads fields of one `config.json`, naming it in errors.
struct Fields<'a> {
    path: &'a Path,
    obj: &'a Map<String, Json>,
}

impl<'a> Fields<'a> {
    fn err(&self, key: &str, reason: impl Into<String>) -> ModelError {
        ModelError::HfConfig {
            path: self.path.to_owned(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Json> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn u64_opt(&self, key: &str) -> Result<Option<u64>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected a non-negative integer, got {v}"))),
        }
    }

    fn u64_req(&self, key: &str) -> Result<u64, ModelError> {
        self.u64_opt(key)?
            .ok_or_else(|| self.err(key, "missing (required)"))
    }

    fn f64_opt(&self, key: &str) -> Result<Option<f64>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected a number, got {v}"))),
        }
    }

    fn str_opt(&self, key: &str) -> Result<Option<&'a str>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected a string, got {v}"))),
        }
    }
}

/// The family of a checkpoint, from `architectures[0]`, else `model_type`.
fn family(f: &Fields<'_>) -> Result<Arch, ModelError> {
    let by_class = |c: &str| match c {
        "LlamaForCausalLM" | "MistralForCausalLM" | "YiForCausalLM" => Some(Arch::Llama),
        "Qwen2ForCausalLM" => Some(Arch::Qwen2),
        "Gemma3ForCausalLM" => Some(Arch::Gemma3),
        _ => None,
    };
    let by_type = |t: &str| match t {
        "llama" | "mistral" | "Yi" | "yi" => Some(Arch::Llama),
        "qwen2" => Some(Arch::Qwen2),
        "gemma3_text" => Some(Arch::Gemma3),
        _ => None,
    };
    let class = f
        .get("architectures")
        .and_then(Json::as_array)
        .and_then(|a| a.first())
        .and_then(Json::as_str);
    let model_type = f.str_opt("model_type")?;
    class
        .and_then(by_class)
        .or_else(|| model_type.and_then(by_type))
        .ok_or_else(|| {
            f.err(
                "architectures",
                format!(
                    "architecture {:?} (model_type {:?}) is not supported (supported: \
                     LlamaForCausalLM, MistralForCausalLM, YiForCausalLM, Qwen2ForCausalLM, \
                     Gemma3ForCausalLM)",
                    class.unwrap_or("absent"),
                    model_type.unwrap_or("absent")
                ),
            )
        })
}

/// The GGUF metadata (architecture keys, `general.*`) of the checkpoint whose
/// `config.json` is `config`, read from `path`. Returns the family too.
pub fn gguf_metadata(
    path: &Path,
    config: &Json,
) -> Result<(Arch, Vec<(String, Value)>), ModelError> {
    let obj = config.as_object().ok_or_else(|| ModelError::HfConfig {
        path: path.to_owned(),
        key: String::new(),
        reason: "not a JSON object".into(),
    })?;
    let f = Fields { path, obj };
    let arch = family(&f)?;
    let a = arch.name();
    let mut meta: Vec<(String, Value)> = Vec::new();
    let mut put = |k: &str, v: Value| meta.push((format!("{a}.{k}"), v));
    let u32v = |f: &Fields<'_>, key: &str, n: u64| {
        u32::try_from(n)
            .map(Value::U32)
            .map_err(|_| f.err(key, format!("{n} is out of range")))
    };

    let n_layer = f.u64_req("num_hidden_layers")?;
    let n_embd = f.u64_req("hidden_size")?;
    let n_ff = f.u64_req("intermediate_size")?;
    let n_head = f.u64_req("num_attention_heads")?;
    let n_head_kv = f.u64_opt("num_key_value_heads")?.unwrap_or(n_head);
    if n_head == 0 {
        return Err(f.err("num_attention_heads", "is 0"));
    }
    put("block_count", u32v(&f, "num_hidden_layers", n_layer)?);
    put("embedding_length", u32v(&f, "hidden_size", n_embd)?);
    put("feed_forward_length", u32v(&f, "intermediate_size", n_ff)?);
    put(
        "attention.head_count",
        u32v(&f, "num_attention_heads", n_head)?,
    );
    put(
        "attention.head_count_kv",
        u32v(&f, "num_key_value_heads", n_head_kv)?,
    );
    if let Some(n) = f.u64_opt("max_position_embeddings")? {
        put("context_length", u32v(&f, "max_position_embeddings", n)?);
    }
    let eps = f
        .f64_opt("rms_norm_eps")?
        .unwrap_or(if arch == Arch::Gemma3 { 1e-6 } else { 1e-5 });
    put("attention.layer_norm_rms_epsilon", Value::F32(eps as f32));
    if let Some(head_dim) = f.u64_opt("head_dim")? {
        put("attention.key_length", u32v(&f, "head_dim", head_dim)?);
        put("attention.value_length", u32v(&f, "head_dim", head_dim)?);
        put("rope.dimension_count", u32v(&f, "head_dim", head_dim)?);
    } else {
        put(
            "rope.dimension_count",
            u32v(&f, "hidden_size", n_embd / n_head)?,
        );
    }
    if let Some(n) = f.u64_opt("vocab_size")? {
        put("vocab_size", u32v(&f, "vocab_size", n)?);
    }

    // RoPE: transformers 4 writes top-level `rope_theta` / `rope_scaling`; transformers 5
    // nests them in `rope_parameters` (for Gemma 3 split into `full_attention` and
    // `sliding_attention`).
    let params = f.get("rope_parameters").and_then(Json::as_object);
    let (full, sliding) = match params {
        Some(p) if p.contains_key("full_attention") => (
            p.get("full_attention").and_then(Json::as_object),
            p.get("sliding_attention").and_then(Json::as_object),
        ),
        Some(p) => (Some(p), None),
        None => (None, None),
    };
    let theta = match full.and_then(|p| p.get("rope_theta")) {
        Some(v) => Some(v.as_f64().ok_or_else(|| {
            f.err(
                "rope_parameters.rope_theta",
                format!("expected a number, got {v}"),
            )
        })?),
        None => f.f64_opt("rope_theta")?,
    };
    put(
        "rope.freq_base",
        Value::F32(theta.unwrap_or(10_000.0) as f32),
    );
    let scaling = match full {
        Some(p) => Some(p),
        None => f.get("rope_scaling").and_then(Json::as_object),
    };
    if let Some(s) = scaling {
        let kind = s
            .get("rope_type")
            .or_else(|| s.get("type"))
            .and_then(Json::as_str)
            .unwrap_or("default");
        match kind {
            "default" => {}
            "linear" => {
                let factor = s.get("factor").and_then(Json::as_f64).ok_or_else(|| {
                    f.err("rope_scaling.factor", "missing for linear RoPE scaling")
                })?;
                put("rope.scaling.type", Value::String("linear".into()));
                put("rope.scaling.factor", Value::F32(factor as f32));
            }
            other => {
                return Err(f.err(
                    "rope_scaling",
                    format!("RoPE scaling {other:?} is not supported for Hugging Face checkpoints (supported: default, linear)"),
                ))
            }
        }
    }

    let act_key = if arch == Arch::Gemma3 {
        "hidden_activation"
    } else {
        "hidden_act"
    };
    let act = f.str_opt(act_key)?.or(f.str_opt("hidden_act")?);
    let want = if arch == Arch::Gemma3 {
        "gelu_pytorch_tanh"
    } else {
        "silu"
    };
    if let Some(act) = act {
        if act != want {
            return Err(f.err(
                act_key,
                format!("activation {act:?} is not supported for {a} (expected {want:?})"),
            ));
        }
    }

    match arch {
        Arch::Gemma3 => {
            if let Some(w) = f.u64_opt("sliding_window")? {
                put("attention.sliding_window", u32v(&f, "sliding_window", w)?);
            }
            if let Some(p) = f.u64_opt("sliding_window_pattern")? {
                if p as usize != GEMMA3_PATTERN {
                    return Err(f.err("sliding_window_pattern", format!("{p} is not supported (huarizo runs Gemma 3's pattern {GEMMA3_PATTERN})")));
                }
            }
            if let Some(types) = f.get("layer_types").and_then(Json::as_array) {
                for (il, t) in types.iter().enumerate() {
                    let global = (il + 1) % GEMMA3_PATTERN == 0;
                    let want = if global {
                        "full_attention"
                    } else {
                        "sliding_attention"
                    };
                    if t.as_str() != Some(want) {
                        return Err(f.err("layer_types", format!("layer {il} is {t}, but huarizo runs Gemma 3's pattern (every {GEMMA3_PATTERN}th layer global): expected {want:?}")));
                    }
                }
            }
            let local = match sliding.and_then(|p| p.get("rope_theta")) {
                Some(v) => v.as_f64(),
                None => f.f64_opt("rope_local_base_freq")?,
            };
            if let Some(local) = local {
                if local != GEMMA3_ROPE_LOCAL {
                    return Err(f.err(
                        "rope_local_base_freq",
                        format!(
                            "{local} is not supported (huarizo runs Gemma 3's {GEMMA3_ROPE_LOCAL})"
                        ),
                    ));
                }
            }
            if let Some(q) = f.f64_opt("query_pre_attn_scalar")? {
                let head_dim = f.u64_opt("head_dim")?.unwrap_or(n_embd / n_head) as f64;
                if q != head_dim {
                    return Err(f.err("query_pre_attn_scalar", format!("{q} is not supported (huarizo scales q·k by 1/sqrt(head_dim = {head_dim}))")));
                }
            }
            for key in ["final_logit_softcapping", "attn_logit_softcapping"] {
                if let Some(v) = f.f64_opt(key)? {
                    return Err(f.err(key, format!("soft-capping ({v}) is not supported")));
                }
            }
        }
        Arch::Llama | Arch::Qwen2 => {
            let sliding = f.get("use_sliding_window").and_then(Json::as_bool) == Some(true)
                || (arch == Arch::Llama && f.u64_opt("sliding_window")?.is_some());
            if sliding {
                return Err(f.err(
                    "sliding_window",
                    format!("sliding-window attention is not supported for {a}"),
                ));
            }
        }
    }

    meta.insert(0, ("general.architecture".into(), Value::String(a.into())));
    if let Some(name) = f.str_opt("_name_or_path")?.filter(|s| !s.is_empty()) {
        meta.push(("general.name".into(), Value::String(name.into())));
    }
    Ok((arch, meta))
}

/// A float as JSON with the digits of its `f32` value (so `1e-6f32` is written
/// `1e-06`-style, not `9.999999974752427e-07`), which reads back as the same `f32`.
fn f32_json(x: f32) -> Json {
    let v: f64 = x.to_string().parse().unwrap_or(x as f64);
    json!(v)
}

/// An id-valued metadata key as JSON (`null` when absent).
fn id(file: &GgufFile, key: &str) -> Json {
    file.get(key)
        .and_then(Value::as_u64)
        .map_or(Json::Null, |v| json!(v))
}

/// The `config.json` of `config` (a model loaded from `file`), as transformers reads it;
/// `tied` says whether the output head is the embedding matrix, `dtype` names the weights'
/// type (`float32`, `float16`, `bfloat16`).
pub fn hf_config(
    config: &Config,
    file: &GgufFile,
    tied: bool,
    dtype: &str,
) -> Result<Json, ModelError> {
    let c = config;
    let mut o = Map::new();
    let (class, model_type) = match c.arch {
        Arch::Llama => ("LlamaForCausalLM", "llama"),
        Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        Arch::Gemma3 => ("Gemma3ForCausalLM", "gemma3_text"),
    };
    if file.tensor("rope_freqs.weight").is_some() {
        return Err(ModelError::Invalid(
            "rope_freqs.weight (llama3-style RoPE scaling) cannot be written as a Hugging Face config yet".into(),
        ));
    }
    o.insert("architectures".into(), json!([class]));
    o.insert("model_type".into(), json!(model_type));
    o.insert("hidden_size".into(), json!(c.n_embd));
    o.insert("intermediate_size".into(), json!(c.n_ff));
    o.insert("num_hidden_layers".into(), json!(c.n_layer));
    o.insert("num_attention_heads".into(), json!(c.n_head));
    o.insert("num_key_value_heads".into(), json!(c.n_head_kv));
    o.insert("head_dim".into(), json!(c.head_dim));
    o.insert("max_position_embeddings".into(), json!(c.n_ctx_train));
    o.insert("rms_norm_eps".into(), f32_json(c.rms_eps));
    o.insert("rope_theta".into(), f32_json(c.rope_base));
    o.insert(
        "rope_scaling".into(),
        match c.rope_scaling {
            RopeScaling::None => Json::Null,
            RopeScaling::Linear { factor } => {
                json!({"rope_type": "linear", "factor": f32_json(factor)})
            }
        },
    );
    o.insert("vocab_size".into(), json!(c.n_vocab));
    o.insert("tie_word_embeddings".into(), json!(tied));
    o.insert(
        "bos_token_id".into(),
        id(file, "tokenizer.ggml.bos_token_id"),
    );
    o.insert(
        "eos_token_id".into(),
        id(file, "tokenizer.ggml.eos_token_id"),
    );
    o.insert(
        "pad_token_id".into(),
        id(file, "tokenizer.ggml.padding_token_id"),
    );
    o.insert("attention_dropout".into(), json!(0.0));
    o.insert("torch_dtype".into(), json!(dtype));
    o.insert("use_cache".into(), json!(true));
    match c.arch {
        Arch::Llama => {
            o.insert("hidden_act".into(), json!("silu"));
            o.insert(
                "attention_bias".into(),
                json!(file.tensor("blk.0.attn_q.bias").is_some()),
            );
            o.insert("mlp_bias".into(), json!(false));
        }
        Arch::Qwen2 => {
            o.insert("hidden_act".into(), json!("silu"));
            o.insert("use_sliding_window".into(), json!(false));
            o.insert("sliding_window".into(), Json::Null);
            o.insert("max_window_layers".into(), json!(c.n_layer));
        }
        Arch::Gemma3 => {
            o.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
            o.insert("query_pre_attn_scalar".into(), json!(c.head_dim));
            o.insert("rope_local_base_freq".into(), f32_json(c.rope_base_swa));
            o.insert("sliding_window".into(), json!(c.sliding_window));
            o.insert("sliding_window_pattern".into(), json!(GEMMA3_PATTERN));
            let types: Vec<&str> = (0..c.n_layer)
                .map(|il| {
                    if c.is_swa_layer(il) {
                        "sliding_attention"
                    } else {
                        "full_attention"
                    }
                })
                .collect();
            o.insert("layer_types".into(), json!(types));
            o.insert("final_logit_softcapping".into(), Json::Null);
            o.insert("attn_logit_softcapping".into(), Json::Null);
            o.insert("attention_bias".into(), json!(false));
        }
    }
    Ok(Json::Object(o))
}
