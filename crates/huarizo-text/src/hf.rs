//! Hugging Face tokenizer files against GGUF's `tokenizer.ggml.*` keys.
//!
//! [`tokenizer_metadata`] reads a checkpoint's `tokenizer.json` (a `tokenizers` BPE
//! model), `tokenizer_config.json` (special tokens, `add_bos_token`, chat template) and
//! `config.json`'s vocabulary size into the keys llama.cpp's converter writes, so that
//! [`Tokenizer::from_gguf`](crate::Tokenizer::from_gguf) builds the tokenizer unchanged:
//! byte-level BPE becomes `gpt2` with the `tokenizer.ggml.pre` its pre-tokenizer stands
//! for, SentencePiece-style BPE (`byte_fallback`) becomes `llama` with scores that keep
//! the merge order. [`write_tokenizer_files`] does the reverse for an export.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use huarizo_formats::{GgufFile, Value};
use serde_json::{json, Map, Value as Json};

/// Why a Hugging Face tokenizer could not be read or written; names the file and field.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct HfTokenizerError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong, naming the field.
    pub reason: String,
}

fn err(path: &Path, reason: impl Into<String>) -> HfTokenizerError {
    HfTokenizerError {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// llama.cpp's token types.
mod ty {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// Score of control and user-defined tokens (never merge results), as llama.cpp's
/// converter writes it.
const SPECIAL_SCORE: f32 = -1000.0;

const QWEN2_REGEX: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3_REGEX: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// Byte-level pre-tokenizers: the GGUF `pre` names (the first is written when reading)
/// and the `tokenizers` pre-tokenizer that splits text the same way.
fn pre_tokenizers() -> Vec<(&'static [&'static str], Json)> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    vec![
        (
            &["smollm", "starcoder", "refact", "codeshell"][..],
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        ),
        (&["gpt-2", "phi-2", "mpt", "olmo"][..], byte_level(true)),
        (
            &["qwen2", "deepseek-r1-qwen"][..],
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level(false)]}),
        ),
        (
            &["llama-bpe", "llama3", "llama-v3"][..],
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), byte_level(false)]}),
        ),
    ]
}

/// What of a pre-tokenizer decides the split: per step, its type, regex and switches
/// (offsets and prefix-space flags of `ByteLevel` do not split differently here).
fn pre_signature(p: &Json) -> Vec<String> {
    let steps: Vec<&Json> = match p.get("type").and_then(Json::as_str) {
        Some("Sequence") => p
            .get("pretokenizers")
            .and_then(Json::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        _ => vec![p],
    };
    steps
        .iter()
        .map(|s| {
            let field = |k: &str| s.get(k).map(|v| v.to_string()).unwrap_or_default();
            let pattern = s
                .get("pattern")
                .map(|p| p.get("Regex").or(p.get("String")).unwrap_or(p).to_string())
                .unwrap_or_default();
            format!(
                "{}|{}|{}|{}|{}",
                field("type"),
                pattern,
                field("individual_digits"),
                field("use_regex"),
                field("behavior")
            )
        })
        .collect()
}

fn read_json(path: &Path) -> Result<Json, HfTokenizerError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| err(path, format!("not valid JSON: {e}")))
}

/// A special-token field of `tokenizer_config.json`: a string or `{"content": …}`.
fn token_text(v: &Json) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(Json::as_str))
}

/// The `tokenizer.ggml.*` keys (and `tokenizer.chat_template`) of the checkpoint in
/// `dir`. `tokenizer.json` is required; `tokenizer_config.json`, `chat_template.jinja`
/// and `config.json` are read when present.
pub fn tokenizer_metadata(dir: &Path) -> Result<Vec<(String, Value)>, HfTokenizerError> {
    let tj_path = dir.join("tokenizer.json");
    let tj = read_json(&tj_path)?;
    let model = tj
        .get("model")
        .ok_or_else(|| err(&tj_path, "missing field `model`"))?;
    let kind = model.get("type").and_then(Json::as_str).unwrap_or("BPE");
    if kind != "BPE" {
        return Err(err(
            &tj_path,
            format!("model.type {kind:?} is not supported (supported: BPE)"),
        ));
    }
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| err(&tj_path, "model.vocab is missing or not an object"))?;
    let spm = model.get("byte_fallback").and_then(Json::as_bool) == Some(true);

    // Tokens by id: the vocabulary, then the added tokens over it.
    let mut by_id: HashMap<u32, (String, i32)> = HashMap::new();
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| {
                err(
                    &tj_path,
                    format!("model.vocab[{text:?}]: id {id} is not a token id"),
                )
            })?;
        let t = if spm && is_byte_token(text) {
            ty::BYTE
        } else {
            ty::NORMAL
        };
        by_id.insert(id, (text.clone(), t));
    }
    if let Some(added) = tj.get("added_tokens").and_then(Json::as_array) {
        for (i, a) in added.iter().enumerate() {
            let (Some(id), Some(text)) = (
                a.get("id")
                    .and_then(Json::as_u64)
                    .and_then(|i| u32::try_from(i).ok()),
                a.get("content").and_then(Json::as_str),
            ) else {
                return Err(err(
                    &tj_path,
                    format!("added_tokens[{i}]: needs an integer `id` and a string `content`"),
                ));
            };
            let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
            let t = if special {
                ty::CONTROL
            } else {
                ty::USER_DEFINED
            };
            by_id.insert(id, (text.to_string(), t));
        }
    }
    let config_vocab = dir
        .join("config.json")
        .is_file()
        .then(|| read_json(&dir.join("config.json")))
        .transpose()?
        .and_then(|c| c.get("vocab_size").and_then(Json::as_u64));
    let max_id = by_id.keys().max().map_or(0, |&m| m as u64 + 1);
    let n = max_id.max(config_vocab.unwrap_or(0));
    if n > 16 << 20 {
        return Err(err(
            &tj_path,
            format!("vocabulary of {n} tokens is implausibly large"),
        ));
    }
    let mut tokens = Vec::with_capacity(n as usize);
    let mut types = Vec::with_capacity(n as usize);
    for i in 0..n as u32 {
        match by_id.remove(&i) {
            Some((text, t)) => {
                tokens.push(text);
                types.push(t);
            }
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(ty::UNUSED);
            }
        }
    }
    let index: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();

    let mut meta: Vec<(String, Value)> = Vec::new();
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    if spm {
        meta.push(("tokenizer.ggml.model".into(), Value::String("llama".into())));
        meta.push(("tokenizer.ggml.pre".into(), Value::String("default".into())));
        if let Some(unk) = model
            .get("unk_token")
            .and_then(Json::as_str)
            .and_then(|u| index.get(u))
        {
            types[*unk as usize] = ty::UNKNOWN;
            meta.push(("tokenizer.ggml.unknown_token_id".into(), Value::U32(*unk)));
        }
        // Scores: a token's priority is the rank of the first merge that makes it, which
        // keeps the order `tokenizers` applies merges in; tokens no merge makes keep
        // their id order below every merge result.
        let merges = merge_pairs(&tj_path, model)?;
        let mut rank: Vec<Option<usize>> = vec![None; tokens.len()];
        for (r, (a, b)) in merges.iter().enumerate() {
            if let Some(&id) = index.get(format!("{a}{b}").as_str()) {
                rank[id as usize].get_or_insert(r);
            }
        }
        let n_merges = merges.len();
        let scores: Vec<Value> = (0..tokens.len())
            .map(|i| {
                Value::F32(match types[i] {
                    ty::CONTROL | ty::USER_DEFINED | ty::UNUSED => SPECIAL_SCORE,
                    ty::BYTE | ty::UNKNOWN => 0.0,
                    _ => -(rank[i].unwrap_or(n_merges + i) as f32),
                })
            })
            .collect();
        meta.push(("tokenizer.ggml.scores".into(), Value::Array(scores)));
        let prepend = tj
            .get("normalizer")
            .is_some_and(|n| contains_type(n, "Prepend"));
        meta.push((
            "tokenizer.ggml.add_space_prefix".into(),
            Value::Bool(prepend),
        ));
    } else {
        let pre = tj.get("pre_tokenizer").unwrap_or(&Json::Null);
        let sig = pre_signature(pre);
        let name = pre_tokenizers()
            .into_iter()
            .find(|(_, p)| pre_signature(p) == sig)
            .map(|(names, _)| names[0])
            .ok_or_else(|| {
                err(&tj_path, format!(
                    "pre_tokenizer {pre} is not one huarizo knows (supported: byte-level BPE as in SmolLM/StarCoder, GPT-2, Qwen2, LLaMA 3)"
                ))
            })?;
        meta.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
        meta.push(("tokenizer.ggml.pre".into(), Value::String(name.into())));
        let merges = merge_pairs(&tj_path, model)?;
        meta.push((
            "tokenizer.ggml.merges".into(),
            strings(
                merges
                    .into_iter()
                    .map(|(a, b)| format!("{a} {b}"))
                    .collect(),
            ),
        ));
    }

    // Special tokens and switches from tokenizer_config.json, else config.json's ids.
    let tc_path = dir.join("tokenizer_config.json");
    let tc = if tc_path.is_file() {
        read_json(&tc_path)?
    } else {
        json!({})
    };
    let config = if dir.join("config.json").is_file() {
        read_json(&dir.join("config.json"))?
    } else {
        json!({})
    };
    let mut special = |key: &str, field: &str| -> Result<(), HfTokenizerError> {
        let id = match tc.get(field).filter(|v| !v.is_null()) {
            Some(v) => {
                let text = token_text(v).ok_or_else(|| {
                    err(
                        &tc_path,
                        format!("`{field}`: expected a token string, got {v}"),
                    )
                })?;
                Some(*index.get(text).ok_or_else(|| {
                    err(
                        &tc_path,
                        format!("`{field}`: {text:?} is not a token of tokenizer.json"),
                    )
                })?)
            }
            None => config
                .get(format!("{field}_id"))
                .and_then(|v| v.as_u64().or_else(|| v.as_array()?.first()?.as_u64()))
                .and_then(|i| u32::try_from(i).ok()),
        };
        if let Some(id) = id {
            meta.retain(|(k, _)| k != key);
            meta.push((key.to_string(), Value::U32(id)));
        }
        Ok(())
    };
    special("tokenizer.ggml.bos_token_id", "bos_token")?;
    special("tokenizer.ggml.eos_token_id", "eos_token")?;
    special("tokenizer.ggml.unknown_token_id", "unk_token")?;
    special("tokenizer.ggml.padding_token_id", "pad_token")?;
    let post_bos = tj
        .get("post_processor")
        .and_then(|p| p.get("single"))
        .and_then(Json::as_array)
        .and_then(|s| s.first())
        .is_some_and(|first| first.get("SpecialToken").is_some());
    let add_bos = tc
        .get("add_bos_token")
        .and_then(Json::as_bool)
        .unwrap_or(post_bos);
    meta.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos)));
    if let Some(add_eos) = tc.get("add_eos_token").and_then(Json::as_bool) {
        meta.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(add_eos)));
    }
    meta.push(("tokenizer.ggml.tokens".into(), strings(tokens)));
    meta.push((
        "tokenizer.ggml.token_type".into(),
        Value::Array(types.into_iter().map(Value::I32).collect()),
    ));
    if let Some(template) = chat_template(dir, &tc, &tc_path)? {
        meta.push(("tokenizer.chat_template".into(), Value::String(template)));
    }
    Ok(meta)
}

/// The chat template: `chat_template.jinja`, else `tokenizer_config.json`'s
/// `chat_template` (a string, or a list of named templates of which `default`).
fn chat_template(
    dir: &Path,
    tc: &Json,
    tc_path: &Path,
) -> Result<Option<String>, HfTokenizerError> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| err(&jinja, format!("cannot read: {e}")));
    }
    match tc.get("chat_template") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Array(list)) => Ok(list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template").and_then(Json::as_str))
            .map(str::to_string)),
        Some(other) => Err(err(
            tc_path,
            format!("`chat_template`: expected a string, got {other}"),
        )),
    }
}

/// `model.merges` as pairs: `"a b"` strings (tokenizers < 0.20) or `[a, b]` arrays.
fn merge_pairs(path: &Path, model: &Json) -> Result<Vec<(String, String)>, HfTokenizerError> {
    let Some(list) = model.get("merges").and_then(Json::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let pair = match m {
                Json::String(s) => s
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string())),
                Json::Array(a) if a.len() == 2 => a[0]
                    .as_str()
                    .zip(a[1].as_str())
                    .map(|(x, y)| (x.to_string(), y.to_string())),
                _ => None,
            };
            pair.ok_or_else(|| {
                err(
                    path,
                    format!("model.merges[{i}]: expected \"a b\" or [a, b], got {m}"),
                )
            })
        })
        .collect()
}

fn is_byte_token(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && u8::from_str_radix(&t[3..5], 16).is_ok()
}

fn contains_type(v: &Json, wanted: &str) -> bool {
    match v {
        Json::Object(o) => {
            o.get("type").and_then(Json::as_str) == Some(wanted)
                || o.values().any(|x| contains_type(x, wanted))
        }
        Json::Array(a) => a.iter().any(|x| contains_type(x, wanted)),
        _ => false,
    }
}

/// Reads the `tokenizer.ggml.*` keys of `f` as plain data.
struct Vocab {
    model: String,
    pre: String,
    tokens: Vec<String>,
    types: Vec<i32>,
    scores: Vec<f32>,
    merges: Vec<String>,
}

fn vocab(f: &GgufFile) -> Result<Vocab, HfTokenizerError> {
    let path = f.path();
    let s = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_string);
    let arr = |k: &str| f.get(k).and_then(Value::as_array).unwrap_or(&[]);
    let model =
        s("tokenizer.ggml.model").ok_or_else(|| err(path, "missing tokenizer.ggml.model"))?;
    let tokens: Vec<String> = arr("tokenizer.ggml.tokens")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    if tokens.is_empty() {
        return Err(err(
            path,
            "tokenizer.ggml.tokens is missing or empty (was it released?)",
        ));
    }
    let n = tokens.len();
    let mut types: Vec<i32> = arr("tokenizer.ggml.token_type")
        .iter()
        .map(|v| v.as_i64().unwrap_or(1) as i32)
        .collect();
    types.resize(n, ty::NORMAL);
    let mut scores: Vec<f32> = arr("tokenizer.ggml.scores")
        .iter()
        .map(|v| v.as_f32().unwrap_or(0.0))
        .collect();
    scores.resize(n, 0.0);
    let merges = arr("tokenizer.ggml.merges")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    Ok(Vocab {
        model,
        pre: s("tokenizer.ggml.pre").unwrap_or_else(|| "default".into()),
        tokens,
        types,
        scores,
        merges,
    })
}

/// Writes `tokenizer.json`, `tokenizer_config.json` and `generation_config.json` for the
/// model in `f` into `dir`: a `tokenizers` BPE model that splits and merges as the GGUF
/// tokenizer does (byte-level with the matching pre-tokenizer for `gpt2`; byte-fallback
/// BPE with merges ordered by score for `llama`), the special tokens, and the chat
/// template.
pub fn write_tokenizer_files(f: &GgufFile, dir: &Path) -> Result<(), HfTokenizerError> {
    let v = vocab(f)?;
    let id = |k: &str| {
        f.get(k)
            .and_then(Value::as_u64)
            .filter(|&i| (i as usize) < v.tokens.len())
    };
    let flag = |k: &str| f.get(k).and_then(Value::as_bool);
    let (bos, eos, unk, pad) = (
        id("tokenizer.ggml.bos_token_id"),
        id("tokenizer.ggml.eos_token_id"),
        id("tokenizer.ggml.unknown_token_id"),
        id("tokenizer.ggml.padding_token_id"),
    );
    let spm = v.model == "llama";
    let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(spm);
    let add_eos = flag("tokenizer.ggml.add_eos_token").unwrap_or(false);
    let add_space_prefix = flag("tokenizer.ggml.add_space_prefix").unwrap_or(spm);

    let mut vocab_map = Map::new();
    for (i, t) in v.tokens.iter().enumerate() {
        vocab_map.entry(t.clone()).or_insert(json!(i));
    }
    let added: Vec<Json> = v
        .tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(v.types[*i], ty::CONTROL | ty::USER_DEFINED))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": v.types[i] == ty::CONTROL})
        })
        .collect();
    let tok_text = |i: Option<u64>| i.map(|i| v.tokens[i as usize].clone());
    let post_processor = match (add_bos, tok_text(bos)) {
        (true, Some(b)) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": b, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": b, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {b.clone(): {"id": b, "ids": [bos], "tokens": [b]}}
        }),
        _ if spm => Json::Null,
        _ => {
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false})
        }
    };
    let tokenizer = match v.model.as_str() {
        "gpt2" => {
            let pre = pre_tokenizers()
                .into_iter()
                .find(|(names, _)| names.contains(&v.pre.as_str()))
                .map(|(_, p)| p)
                .ok_or_else(|| {
                    err(f.path(), format!("tokenizer.ggml.pre = {:?} has no Hugging Face pre-tokenizer in huarizo's table", v.pre))
                })?;
            json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": added,
                "normalizer": null,
                "pre_tokenizer": pre,
                "post_processor": post_processor,
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                          "ignore_merges": false, "vocab": vocab_map, "merges": v.merges}
            })
        }
        "llama" => {
            let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
            let normalizer = if add_space_prefix {
                json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, replace]})
            } else {
                replace
            };
            let mut decoders = vec![
                json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
            ];
            if add_space_prefix {
                decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            json!({
                "version": "1.0", "truncation": null, "padding": null,
                "added_tokens": added,
                "normalizer": normalizer,
                "pre_tokenizer": null,
                "post_processor": post_processor,
                "decoder": {"type": "Sequence", "decoders": decoders},
                "model": {"type": "BPE", "dropout": null, "unk_token": tok_text(unk),
                          "continuing_subword_prefix": null, "end_of_word_suffix": null,
                          "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                          "vocab": vocab_map, "merges": spm_merges(&v)}
            })
        }
        other => {
            return Err(err(f.path(), format!("tokenizer.ggml.model = {other:?} cannot be written as a Hugging Face tokenizer (supported: gpt2, llama)")))
        }
    };
    let mut config = json!({
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "bos_token": tok_text(bos),
        "eos_token": tok_text(eos),
        "unk_token": tok_text(unk),
        "pad_token": tok_text(pad),
        "clean_up_tokenization_spaces": false,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    if let Some(t) = f.get("tokenizer.chat_template").and_then(Value::as_str) {
        config["chat_template"] = json!(t);
    }
    let generation = json!({"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad});
    write(&dir.join("tokenizer.json"), &tokenizer)?;
    write(&dir.join("tokenizer_config.json"), &config)?;
    write(&dir.join("generation_config.json"), &generation)
}

/// Merges for a SentencePiece vocabulary: every split of a normal token into two
/// vocabulary pieces, ordered by the token's score (highest first), then by the pieces'
/// ids, as `tokenizers`' SentencePiece converter orders them.
/// Written as `[a, b]` pairs, since SentencePiece pieces may hold spaces.
fn spm_merges(v: &Vocab) -> Vec<[&str; 2]> {
    let index: HashMap<&str, usize> = v
        .tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(v.types[*i], ty::NORMAL | ty::BYTE | ty::UNKNOWN))
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut merges: Vec<(f32, usize, usize, [&str; 2])> = Vec::new();
    for (i, t) in v.tokens.iter().enumerate() {
        if v.types[i] != ty::NORMAL {
            continue;
        }
        for (k, _) in t.char_indices().skip(1) {
            let (a, b) = t.split_at(k);
            if let (Some(&ia), Some(&ib)) = (index.get(a), index.get(b)) {
                merges.push((v.scores[i], ia, ib, [a, b]));
            }
        }
    }
    merges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    merges.into_iter().map(|m| m.3).collect()
}

fn write(path: &Path, value: &Json) -> Result<(), HfTokenizerError> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    text.push('\n');
    std::fs::write(path, text).map_err(|e| err(path, format!("cannot write: {e}")))
}
