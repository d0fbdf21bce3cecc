//! huarizo-server is `huarizo serve`: an OpenAI-compatible HTTP API (chat completions,
//! completions, models, tokenize, metrics) and a web chat page, over one engine whose
//! requests are decoded together by the engine's continuous-batching scheduler on one
//! worker thread. It must not compute anything itself: every token comes from
//! `huarizo-engine`, and no request can name a file or path on the server.

#![deny(missing_docs)]

mod chat;
mod completions;
mod error;
mod metrics;
mod misc;
mod params;
mod structured;
mod tools;
mod worker;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use error::ApiError;
use huarizo_engine::Engine;
use std::net::SocketAddr;
use std::sync::Arc;

pub use huarizo_engine::SchedulerOptions;

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address to bind (loopback by default).
    pub host: String,
    /// Port (0 picks a free one).
    pub port: u16,
    /// Requests decoded at once (slots).
    pub parallel: usize,
    /// Context positions per request.
    pub ctx: usize,
    /// Requests allowed to wait for a slot; more are refused with 429.
    pub queue: usize,
    /// Bearer token every endpoint but `/health` requires.
    pub api_key: Option<String>,
    /// The model's name in the API (`/v1/models`).
    pub model_id: String,
}

/// What every handler shares.
pub(crate) struct AppState {
    pub engine: Arc<Engine>,
    pub options: ServeOptions,
    pub n_ctx: usize,
    pub queue: worker::Queue,
    pub metrics: Arc<metrics::Metrics>,
    pub created: u64,
}

pub(crate) type Shared = Arc<AppState>;

/// Loads nothing itself: serves `engine` until the process is stopped. Prints
/// `huarizo: listening on http://HOST:PORT` on stderr once ready.
pub fn serve(engine: Engine, options: ServeOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve_async(engine, options))
}

async fn serve_async(engine: Engine, options: ServeOptions) -> anyhow::Result<()> {
    let engine = Arc::new(engine);
    let metrics = Arc::new(metrics::Metrics::default());
    let sched = SchedulerOptions {
        n_slots: options.parallel.max(1),
        n_ctx: options.ctx,
        max_batch_tokens: 512,
    };
    let (queue, n_ctx, cache_bytes) =
        worker::start(engine.clone(), sched, options.queue, metrics.clone())?;
    let state = Arc::new(AppState {
        engine,
        n_ctx,
        queue,
        metrics,
        created: unix_now(),
        options: options.clone(),
    });
    let app = router(state.clone());
    let addr: SocketAddr = format!("{}:{}", options.host, options.port)
        .parse()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(&(options.host.as_str(), options.port))
                .map_err(anyhow::Error::from)
                .and_then(|mut a| {
                    a.next()
                        .ok_or_else(|| anyhow::anyhow!("cannot resolve {}", options.host))
                })
        })
        .map_err(|e| anyhow::anyhow!("bad --host {}: {e}", options.host))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    eprintln!(
        "huarizo: {} slots × {} tokens of context ({:.1} MiB of KV cache), queue {}",
        options.parallel.max(1),
        n_ctx,
        cache_bytes as f64 / (1024.0 * 1024.0),
        options.queue
    );
    eprintln!("huarizo: listening on http://{local}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(misc::index))
        .route("/health", get(misc::health))
        .route("/metrics", get(misc::metrics))
        .route("/openapi.json", get(misc::openapi))
        .route("/v1/models", get(misc::models))
        .route("/models", get(misc::models))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/chat/completions", post(chat::chat_completions))
        .route("/v1/completions", post(completions::completions))
        .route("/completions", post(completions::completions))
        .route("/tokenize", post(misc::tokenize))
        .route("/detokenize", post(misc::detokenize))
        .route("/tokenizer_info", get(misc::tokenizer_info))
        .fallback(misc::not_found)
        .method_not_allowed_fallback(misc::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(8 * 1024 * 1024))
        .with_state(state)
}

/// `--api-key`: every endpoint but `/health` (and the static page at `/`, which holds no
/// data and asks for the key itself) needs `Authorization: Bearer KEY`.
async fn authorize(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.options.api_key {
        let path = req.uri().path();
        let open = path == "/health" || (path == "/" && req.method() == Method::GET);
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !open && !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Counts every response by route and status for `/metrics`.
async fn count(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let route = match path {
        "/" | "/health" | "/metrics" | "/openapi.json" | "/tokenize" | "/detokenize"
        | "/tokenizer_info" => path,
        "/v1/models" | "/models" => "/v1/models",
        "/v1/chat/completions" | "/chat/completions" => "/v1/chat/completions",
        "/v1/completions" | "/completions" => "/v1/completions",
        _ => "other",
    }
    .to_string();
    let resp = next.run(req).await;
    state.metrics.count_response(&route, resp.status().as_u16());
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
