//! Reads the `tokenizer.ggml.*` keys of a GGUF file into a [`VocabSpec`]. No defaults
//! are applied here: an absent optional key stays `None`.

use huarizo_formats::{GgufFile, Value};

use super::{TextError, VocabSpec};

fn wrong(key: &'static str, expected: &'static str, v: &Value) -> TextError {
    TextError::WrongType {
        key,
        expected,
        got: v.type_name().to_string(),
    }
}

fn string(f: &GgufFile, key: &'static str) -> Result<Option<String>, TextError> {
    match f.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| wrong(key, "string", v)),
    }
}

fn boolean(f: &GgufFile, key: &'static str) -> Result<Option<bool>, TextError> {
    match f.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| wrong(key, "bool", v)),
    }
}

/// A token id: any non-negative integer. A value beyond `u32` cannot be a valid id and
/// is read as `u32::MAX`, which the builder treats as out of range (llama.cpp ignores
/// such ids too).
fn id(f: &GgufFile, key: &'static str) -> Result<Option<u32>, TextError> {
    match f.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(x) => Ok(Some(u32::try_from(x).unwrap_or(u32::MAX))),
            // A negative id (-1) means "none" in some converters.
            None if v.as_i64().is_some() => Ok(None),
            None => Err(wrong(key, "integer token id", v)),
        },
    }
}

fn array<'a>(f: &'a GgufFile, key: &'static str) -> Result<Option<&'a [Value]>, TextError> {
    match f.get(key) {
        None => Ok(None),
        Some(v) => v.as_array().map(Some).ok_or_else(|| wrong(key, "array", v)),
    }
}

fn elements<T>(
    f: &GgufFile,
    key: &'static str,
    expected: &'static str,
    conv: impl Fn(&Value) -> Option<T>,
) -> Result<Option<Vec<T>>, TextError> {
    let Some(items) = array(f, key)? else {
        return Ok(None);
    };
    items
        .iter()
        .enumerate()
        .map(|(index, v)| {
            conv(v).ok_or_else(|| TextError::WrongElement {
                key,
                index,
                expected,
                got: v.type_name().to_string(),
            })
        })
        .collect::<Result<Vec<T>, _>>()
        .map(Some)
}

/// The [`VocabSpec`] stored in `f`.
pub(super) fn vocab_spec(f: &GgufFile) -> Result<VocabSpec, TextError> {
    const MODEL: &str = "tokenizer.ggml.model";
    const TOKENS: &str = "tokenizer.ggml.tokens";
    let model = string(f, MODEL)?.ok_or(TextError::MissingKey { key: MODEL })?;
    let tokens = elements(f, TOKENS, "string", |v| v.as_str().map(str::to_string))?
        .ok_or(TextError::MissingKey { key: TOKENS })?;
    let as_string = |v: &Value| v.as_str().map(str::to_string);
    let as_i32 = |v: &Value| v.as_i64().and_then(|x| i32::try_from(x).ok());
    Ok(VocabSpec {
        model,
        pre: string(f, "tokenizer.ggml.pre")?,
        name: f
            .get("general.name")
            .and_then(Value::as_str)
            .map(str::to_string),
        tokens,
        scores: elements(
            f,
            "tokenizer.ggml.scores",
            "float32 or int32",
            Value::as_f32,
        )?,
        token_types: elements(f, "tokenizer.ggml.token_type", "int32", as_i32)?,
        merges: elements(f, "tokenizer.ggml.merges", "string", as_string)?,
        bos: id(f, "tokenizer.ggml.bos_token_id")?,
        eos: id(f, "tokenizer.ggml.eos_token_id")?,
        eot: id(f, "tokenizer.ggml.eot_token_id")?,
        eom: id(f, "tokenizer.ggml.eom_token_id")?,
        unk: id(f, "tokenizer.ggml.unknown_token_id")?,
        sep: id(f, "tokenizer.ggml.seperator_token_id")?,
        pad: id(f, "tokenizer.ggml.padding_token_id")?,
        fim_pad: id(f, "tokenizer.ggml.fim_pad_token_id")?,
        fim_rep: id(f, "tokenizer.ggml.fim_rep_token_id")?,
        fim_sep: id(f, "tokenizer.ggml.fim_sep_token_id")?,
        add_bos: boolean(f, "tokenizer.ggml.add_bos_token")?,
        add_eos: boolean(f, "tokenizer.ggml.add_eos_token")?,
        add_space_prefix: boolean(f, "tokenizer.ggml.add_space_prefix")?,
    })
}
