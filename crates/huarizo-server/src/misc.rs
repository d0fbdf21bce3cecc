//! The small endpoints: the web page, health, metrics, models, tokenize, detokenize,
//! the OpenAPI description, and the 404/405 answers.

use crate::error::ApiError;
use crate::params::parse_body;
use crate::Shared;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const OPENAPI_JSON: &str = include_str!("../assets/openapi.json");

/// Identifies the build in responses.
pub fn fingerprint() -> &'static str {
    concat!("huarizo-", env!("CARGO_PKG_VERSION"))
}

pub async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

pub async fn health(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "model": state.options.model_id,
        "slots": state.options.parallel,
    }))
}

pub async fn metrics(State(state): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

pub async fn models(State(state): State<Shared>) -> Json<Value> {
    let c = state.engine.config();
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.options.model_id,
            "object": "model",
            "created": state.created,
            "owned_by": "huarizo",
            "meta": {
                "architecture": format!("{:?}", c.arch).to_lowercase(),
                "n_vocab": c.n_vocab,
                "n_ctx_train": c.n_ctx_train,
                "n_ctx": state.n_ctx,
                "n_embd": c.n_embd,
                "n_layer": c.n_layer,
            },
        }],
    }))
}

/// llama.cpp's `{"content", "add_special", "parse_special"}` or vLLM's
/// `{"prompt", "add_special_tokens"}` (what lm-evaluation-harness's remote tokenizer sends).
#[derive(Deserialize)]
struct TokenizeRequest {
    content: Option<String>,
    prompt: Option<String>,
    add_special: Option<bool>,
    add_special_tokens: Option<bool>,
    parse_special: Option<bool>,
}

pub async fn tokenize(State(state): State<Shared>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: TokenizeRequest = parse_body(&body)?;
    let text = req
        .content
        .or(req.prompt)
        .ok_or_else(|| ApiError::param("content", "content (or prompt) is required"))?;
    let add = req.add_special.or(req.add_special_tokens).unwrap_or(false);
    // Special-token text becomes the special token, as in prompts given as text.
    let parse = req.parse_special.unwrap_or(true);
    let tokens = state.engine.tokenizer().encode(&text, add, parse);
    Ok(Json(json!({ "tokens": tokens, "count": tokens.len() })))
}

/// What lm-evaluation-harness's remote tokenizer (and vLLM's route of that name) reads.
pub async fn tokenizer_info(State(state): State<Shared>) -> Json<Value> {
    let t = state.engine.tokenizer();
    let text = |id: Option<u32>| id.map(|i| String::from_utf8_lossy(t.token_bytes(i)).into_owned());
    Json(json!({
        "tokenizer_class": format!("{:?}", t.kind()),
        "vocab_size": t.n_vocab(),
        "bos_token": text(t.bos()),
        "eos_token": text(t.eos()),
        "pad_token": text(t.pad()),
        "unk_token": text(t.unk()),
        "add_bos_token": t.add_bos(),
        "add_eos_token": t.add_eos(),
        "chat_template": state.engine.chat_template_source(),
    }))
}

#[derive(Deserialize)]
struct DetokenizeRequest {
    tokens: Vec<i64>,
}

pub async fn detokenize(State(state): State<Shared>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: DetokenizeRequest = parse_body(&body)?;
    let n_vocab = state.engine.config().n_vocab;
    let mut ids = Vec::with_capacity(req.tokens.len());
    for &t in &req.tokens {
        if !(0..n_vocab as i64).contains(&t) {
            return Err(ApiError::param(
                "tokens",
                format!("token ids must be in 0..{n_vocab}, got {t}"),
            ));
        }
        ids.push(t as u32);
    }
    let text = state.engine.tokenizer().decode(&ids);
    Ok(Json(json!({ "content": text, "prompt": text })))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
