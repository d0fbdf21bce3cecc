//! Request fields both completion endpoints share: parsing, range checks and the
//! translation into the engine's generation settings.

use crate::error::ApiError;
use crate::metrics::Metrics;
use huarizo_engine::{Engine, SamplingParams, TokenLogprob};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Most choices one request may ask for.
pub const MAX_N: usize = 16;
/// Most alternatives per token in log-probabilities.
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Most stop strings.
pub const MAX_STOP: usize = 16;

/// Parses a JSON body, turning serde's complaint into a 400.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid(
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

/// `stop`: one string or a list.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// The sampling and limit fields of both endpoints (OpenAI's, plus llama.cpp's `top_k`,
/// `min_p`, `repeat_penalty`).
#[derive(Deserialize, Debug, Default)]
pub struct SamplingFields {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub n: Option<i64>,
}

fn in_range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<(), ApiError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(ApiError::param(
            name,
            format!("{name} must be between {lo} and {hi}, got {x}"),
        )),
        _ => Ok(()),
    }
}

impl SamplingFields {
    /// The engine's sampling settings (llama.cpp's defaults for what is not given) for
    /// choice `index`, whose seed is the request's seed plus `index`.
    pub fn sampling(&self, index: usize, fresh_seed: u64) -> Result<SamplingParams, ApiError> {
        in_range("temperature", self.temperature, 0.0, 2.0)?;
        in_range("top_p", self.top_p, 0.0, 1.0)?;
        in_range("min_p", self.min_p, 0.0, 1.0)?;
        in_range("repeat_penalty", self.repeat_penalty, 0.0, 10.0)?;
        in_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        in_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        let d = SamplingParams::default();
        let top_k = match self.top_k {
            None => d.top_k,
            Some(k) if (0..=1_000_000).contains(&k) => k as usize,
            Some(k) => {
                return Err(ApiError::param(
                    "top_k",
                    format!("top_k must be ≥ 0, got {k}"),
                ))
            }
        };
        let seed = self.seed.map_or(fresh_seed, |s| s as u64);
        Ok(SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.unwrap_or(d.top_p),
            top_k,
            min_p: self.min_p.unwrap_or(d.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            penalty_last_n: d.penalty_last_n,
            seed: seed.wrapping_add(index as u64),
        })
    }

    /// Stop strings (at most [`MAX_STOP`], none empty).
    pub fn stop_list(&self) -> Result<Vec<String>, ApiError> {
        let list = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if list.len() > MAX_STOP {
            return Err(ApiError::param(
                "stop",
                format!("at most {MAX_STOP} stop strings, got {}", list.len()),
            ));
        }
        Ok(list.into_iter().filter(|s| !s.is_empty()).collect())
    }

    /// Choices per prompt, 1 to [`MAX_N`].
    pub fn n(&self) -> Result<usize, ApiError> {
        match self.n {
            None => Ok(1),
            Some(n) if (1..=MAX_N as i64).contains(&n) => Ok(n as usize),
            Some(n) => Err(ApiError::param(
                "n",
                format!("n must be between 1 and {MAX_N}, got {n}"),
            )),
        }
    }
}

/// Checks that prompt and completion fit the context; returns the completion budget
/// (`requested`, or all the room left when not given).
pub fn completion_budget(
    prompt_len: usize,
    requested: Option<i64>,
    n_ctx: usize,
    min: i64,
) -> Result<usize, ApiError> {
    if let Some(m) = requested {
        if m < min {
            return Err(ApiError::param(
                "max_tokens",
                format!("max_tokens must be at least {min}, got {m}"),
            ));
        }
    }
    if prompt_len > n_ctx || (prompt_len == n_ctx && requested != Some(0)) {
        return Err(ApiError::context(format!(
            "the prompt has {prompt_len} tokens but the context holds {n_ctx}; \
             shorten the prompt (or start the server with a larger --ctx)"
        )));
    }
    let room = n_ctx - prompt_len;
    match requested {
        None => Ok(room),
        Some(m) if m as u64 <= room as u64 => Ok(m as usize),
        Some(m) => Err(ApiError::context(format!(
            "this server's context holds {n_ctx} tokens, but {} were requested \
             ({prompt_len} in the prompt, {m} for the completion); lower max_tokens",
            prompt_len as u64 + m as u64
        ))),
    }
}

/// A seed for requests that give none.
pub fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (std::process::id() as u64).rotate_left(32)
}

/// A token as text (invalid UTF-8 replaced), as the API shows it.
pub fn piece(engine: &Engine, id: u32) -> String {
    String::from_utf8_lossy(engine.tokenizer().token_bytes(id)).into_owned()
}

/// A chat-style log-probability entry.
pub fn chat_logprob(engine: &Engine, lp: &TokenLogprob) -> serde_json::Value {
    let entry = |id: u32, logprob: f32| {
        serde_json::json!({
            "token": piece(engine, id),
            "logprob": logprob,
            "bytes": engine.tokenizer().token_bytes(id),
        })
    };
    let mut e = entry(lp.token, lp.logprob);
    e["top_logprobs"] = lp.top.iter().map(|&(id, l)| entry(id, l)).collect();
    e
}

/// An id for a response.
pub fn response_id(prefix: &str, metrics: &Metrics) -> String {
    let n = metrics
        .steps
        .load(std::sync::atomic::Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ fresh_seed();
    format!("{prefix}-{n:016x}")
}
