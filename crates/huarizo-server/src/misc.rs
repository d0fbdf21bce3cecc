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

#[derive(Deserialize)]
struct TokenizeRequest {
    content: String,
    add_special: Option<bool>,
}

pub async fn tokenize(State(state): State<Shared>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: TokenizeRequest = parse_body(&body)?;
    let add = req.add_special.unwrap_or(false);
    let tokens = state.engine.tokenizer().encode(&req.content, add, add);
    Ok(Json(json!({ "tokens": tokens })))
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
    Ok(Json(
        json!({ "content": state.engine.tokenizer().decode(&ids) }),
    ))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
