//! `POST /v1/completions`: raw prompts (text, token ids, or lists of either), with `echo`
//! and the legacy log-probability shape (`tokens`, `token_logprobs`, `top_logprobs`,
//! `text_offset`) that lm-evaluation-harness reads to score log-likelihoods.

use crate::chat::{finish_name, StreamOptions};
use crate::error::ApiError;
use crate::params::{self, parse_body, piece, SamplingFields, MAX_N, MAX_TOP_LOGPROBS};
use crate::worker::{Events, Job};
use crate::Shared;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use huarizo_engine::{Event, FinishReason, GenerateParams, TokenLogprob};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::time::Instant;

#[derive(Deserialize, Debug)]
struct CompletionRequest {
    #[allow(dead_code)]
    model: Option<String>,
    prompt: Option<Value>,
    max_tokens: Option<i64>,
    echo: Option<bool>,
    logprobs: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    sampling: SamplingFields,
}

/// One prompt: its text (for echo) and tokens.
struct Prompt {
    text: String,
    tokens: Vec<u32>,
    /// The tokenizer added a BOS the text does not show.
    added_bos: bool,
}

fn parse_prompts(state: &Shared, prompt: Option<&Value>) -> Result<Vec<Prompt>, ApiError> {
    let engine = &state.engine;
    let n_vocab = engine.config().n_vocab;
    let from_text = |s: &str| {
        let tokens = engine.tokenize_prompt(s);
        let added_bos = engine
            .tokenizer()
            .bos()
            .is_some_and(|b| tokens.first() == Some(&b))
            && !s.starts_with(&piece(engine, tokens[0]));
        Prompt {
            text: s.to_string(),
            tokens,
            added_bos,
        }
    };
    let from_ids = |v: &[Value], at: &str| -> Result<Prompt, ApiError> {
        let mut tokens = Vec::with_capacity(v.len());
        for x in v {
            match x.as_u64() {
                Some(id) if (id as usize) < n_vocab => tokens.push(id as u32),
                _ => {
                    return Err(ApiError::param(
                        at,
                        format!("token ids must be integers in 0..{n_vocab}, got {x}"),
                    ))
                }
            }
        }
        Ok(Prompt {
            text: engine.tokenizer().decode(&tokens),
            tokens,
            added_bos: false,
        })
    };
    let prompts = match prompt {
        None | Some(Value::Null) => {
            return Err(ApiError::param("prompt", "prompt is required"));
        }
        Some(Value::String(s)) => vec![from_text(s)],
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(ApiError::param("prompt", "prompt must not be an empty list"))
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|s| from_text(s.as_str().unwrap_or_default()))
            .collect(),
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            vec![from_ids(items, "prompt")?]
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_array) => items
            .iter()
            .enumerate()
            .map(|(i, v)| from_ids(v.as_array().map_or(&[][..], |a| a), &format!("prompt[{i}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::param(
                "prompt",
                "prompt must be a string, a list of strings, a list of token ids or a list of such lists",
            ))
        }
    };
    if prompts.len() > MAX_N * 4 {
        return Err(ApiError::param(
            "prompt",
            format!("at most {} prompts per request", MAX_N * 4),
        ));
    }
    if let Some(i) = prompts.iter().position(|p| p.tokens.is_empty()) {
        return Err(ApiError::param(
            "prompt",
            format!("prompt {i} is empty (no tokens)"),
        ));
    }
    Ok(prompts)
}

struct Ctx {
    id: String,
    prompts: Vec<Prompt>,
    n: usize,
    echo: bool,
    logprobs: Option<usize>,
    include_usage: bool,
}

pub async fn completions(State(state): State<Shared>, body: Bytes) -> Response {
    let start = Instant::now();
    match prepare(&state, &body) {
        Ok((events, ctx, stream)) => {
            if stream {
                stream_response(state, events, ctx, start).into_response()
            } else {
                collect(state, events, ctx, start).await.into_response()
            }
        }
        Err(e) => e.into_response(),
    }
}

fn prepare(state: &Shared, body: &[u8]) -> Result<(Events, Ctx, bool), ApiError> {
    let req: CompletionRequest = parse_body(body)?;
    let prompts = parse_prompts(state, req.prompt.as_ref())?;
    let n = req.sampling.n()?;
    if prompts.len() * n > MAX_N * 4 {
        return Err(ApiError::param(
            "n",
            format!("prompts × n must be at most {}", MAX_N * 4),
        ));
    }
    let echo = req.echo.unwrap_or(false);
    let logprobs = match req.logprobs {
        None => None,
        Some(k) if (0..=MAX_TOP_LOGPROBS as i64).contains(&k) => Some(k as usize),
        Some(k) => {
            return Err(ApiError::param(
                "logprobs",
                format!("logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {k}"),
            ))
        }
    };
    let stop = req.sampling.stop_list()?;
    let seed = params::fresh_seed();
    let max = Some(req.max_tokens.unwrap_or(16));
    let mut jobs = Vec::new();
    for p in &prompts {
        let budget = params::completion_budget(p.tokens.len(), max, state.n_ctx, 0)?;
        for i in 0..n {
            jobs.push(Job {
                prompt: p.tokens.clone(),
                params: GenerateParams {
                    sampling: req.sampling.sampling(i, seed)?,
                    max_tokens: budget,
                    stop: stop.clone(),
                    top_logprobs: logprobs.unwrap_or(0),
                    stop_at_eog: true,
                },
                prompt_logprobs: if echo { logprobs } else { None },
                logprobs: logprobs.is_some(),
                constraint: None,
            });
        }
    }
    let events = state.queue.submit(jobs)?;
    Ok((
        events,
        Ctx {
            id: params::response_id("cmpl", &state.metrics),
            prompts,
            n,
            echo,
            logprobs,
            include_usage: req
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        },
        req.stream.unwrap_or(false),
    ))
}

/// The legacy log-probability lists of one choice.
#[derive(Default)]
struct Legacy {
    tokens: Vec<String>,
    token_logprobs: Vec<Value>,
    top_logprobs: Vec<Value>,
    text_offset: Vec<usize>,
    /// Characters of text so far (for the next offset).
    offset: usize,
}

impl Legacy {
    fn push(&mut self, state: &Shared, token: u32, lp: Option<&TokenLogprob>, width: usize) {
        self.tokens.push(piece(&state.engine, token));
        self.text_offset.push(self.offset);
        self.offset += width;
        match lp {
            None => {
                self.token_logprobs.push(Value::Null);
                self.top_logprobs.push(Value::Null);
            }
            Some(lp) => {
                self.token_logprobs.push(json!(lp.logprob));
                let mut top = Map::new();
                for &(id, l) in &lp.top {
                    top.entry(piece(&state.engine, id)).or_insert(json!(l));
                }
                self.top_logprobs.push(Value::Object(top));
            }
        }
    }

    fn json(&self) -> Value {
        json!({
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        })
    }
}

/// Characters a generated token adds to the text (an end token adds none).
fn token_width(state: &Shared, token: u32) -> usize {
    if state.engine.tokenizer().is_eog(token) {
        0
    } else {
        piece(&state.engine, token).chars().count()
    }
}

/// Adds the echoed prompt's tokens to `legacy`.
fn push_prompt(state: &Shared, legacy: &mut Legacy, p: &Prompt, lps: &[Option<TokenLogprob>]) {
    for (j, &t) in p.tokens.iter().enumerate() {
        let width = if j == 0 && p.added_bos {
            0
        } else {
            piece(&state.engine, t).chars().count()
        };
        legacy.push(state, t, lps.get(j).and_then(Option::as_ref), width);
    }
}

#[derive(Default)]
struct Choice {
    text: String,
    legacy: Legacy,
    finish: Option<FinishReason>,
}

async fn collect(
    state: Shared,
    mut events: Events,
    ctx: Ctx,
    start: Instant,
) -> Result<Json<Value>, ApiError> {
    let total = ctx.prompts.len() * ctx.n;
    let mut choices: Vec<Choice> = (0..total).map(|_| Choice::default()).collect();
    for (i, c) in choices.iter_mut().enumerate() {
        if ctx.echo {
            c.text = ctx.prompts[i / ctx.n].text.clone();
        }
    }
    let (mut prompt_tokens, mut completion_tokens, mut done, mut first) = (0, 0, 0, true);
    while done < total {
        let Some((i, ev)) = events.recv().await else {
            return Err(ApiError::internal("the generation worker stopped"));
        };
        let p = &ctx.prompts[i / ctx.n];
        match ev {
            Event::PromptLogprobs(lps) => {
                push_prompt(&state, &mut choices[i].legacy, p, &lps);
            }
            Event::Token {
                token,
                text,
                logprob,
            } => {
                if first {
                    state.metrics.ttft.observe(start.elapsed().as_secs_f64());
                    first = false;
                }
                let c = &mut choices[i];
                c.text.push_str(&text);
                if ctx.logprobs.is_some() {
                    let width = token_width(&state, token);
                    c.legacy.push(&state, token, logprob.as_ref(), width);
                }
            }
            Event::Done {
                finish,
                prompt_tokens: pt,
                completion_tokens: ct,
                ..
            } => {
                choices[i].finish = Some(finish);
                if i % ctx.n == 0 {
                    prompt_tokens += pt;
                }
                completion_tokens += ct;
                done += 1;
            }
            Event::Error(m) => return Err(ApiError::invalid(m)),
        }
    }
    state.metrics.latency.observe(start.elapsed().as_secs_f64());
    let choices: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "index": i,
                "text": c.text,
                "logprobs": if ctx.logprobs.is_some() { c.legacy.json() } else { Value::Null },
                "finish_reason": finish_name(c.finish.unwrap_or(FinishReason::Stop)),
            })
        })
        .collect();
    Ok(Json(json!({
        "id": ctx.id,
        "object": "text_completion",
        "created": crate::unix_now(),
        "model": state.options.model_id,
        "system_fingerprint": crate::misc::fingerprint(),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })))
}

fn stream_response(
    state: Shared,
    mut events: Events,
    ctx: Ctx,
    start: Instant,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let total = ctx.prompts.len() * ctx.n;
    let created = crate::unix_now();
    let mut pending: std::collections::VecDeque<SseEvent> = Default::default();
    let (mut done, mut finished, mut first) = (0, false, true);
    let (mut prompt_tokens, mut completion_tokens) = (0, 0);
    let mut offsets = vec![0usize; total];
    if ctx.echo && ctx.logprobs.is_none() {
        for i in 0..total {
            pending.push_back(chunk(
                &ctx.id,
                created,
                &state,
                i,
                &ctx.prompts[i / ctx.n].text,
                Value::Null,
                None,
            ));
        }
    }
    let s = futures_util::stream::poll_fn(move |cx| {
        use std::task::Poll;
        loop {
            if let Some(ev) = pending.pop_front() {
                return Poll::Ready(Some(Ok(ev)));
            }
            if finished {
                return Poll::Ready(None);
            }
            let (i, ev) = match events.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    finished = true;
                    let err = ApiError::internal("the generation worker stopped");
                    pending.push_back(SseEvent::default().data(err.body().to_string()));
                    continue;
                }
                Poll::Ready(Some(x)) => x,
            };
            let p = &ctx.prompts[i / ctx.n];
            match ev {
                Event::PromptLogprobs(lps) => {
                    let mut legacy = Legacy::default();
                    push_prompt(&state, &mut legacy, p, &lps);
                    offsets[i] = legacy.offset;
                    pending.push_back(chunk(
                        &ctx.id,
                        created,
                        &state,
                        i,
                        &p.text,
                        legacy.json(),
                        None,
                    ));
                }
                Event::Token {
                    token,
                    text,
                    logprob,
                } => {
                    if first {
                        state.metrics.ttft.observe(start.elapsed().as_secs_f64());
                        first = false;
                    }
                    let lp = if ctx.logprobs.is_some() {
                        let mut legacy = Legacy {
                            offset: offsets[i],
                            ..Legacy::default()
                        };
                        let width = token_width(&state, token);
                        legacy.push(&state, token, logprob.as_ref(), width);
                        offsets[i] = legacy.offset;
                        legacy.json()
                    } else {
                        Value::Null
                    };
                    pending.push_back(chunk(&ctx.id, created, &state, i, &text, lp, None));
                }
                Event::Done {
                    finish,
                    prompt_tokens: pt,
                    completion_tokens: ct,
                    ..
                } => {
                    pending.push_back(chunk(
                        &ctx.id,
                        created,
                        &state,
                        i,
                        "",
                        Value::Null,
                        Some(finish),
                    ));
                    if i % ctx.n == 0 {
                        prompt_tokens += pt;
                    }
                    completion_tokens += ct;
                    done += 1;
                    if done == total {
                        if ctx.include_usage {
                            let c = json!({
                                "id": ctx.id, "object": "text_completion", "created": created,
                                "model": state.options.model_id, "choices": [],
                                "usage": {
                                    "prompt_tokens": prompt_tokens,
                                    "completion_tokens": completion_tokens,
                                    "total_tokens": prompt_tokens + completion_tokens,
                                },
                            });
                            pending.push_back(SseEvent::default().data(c.to_string()));
                        }
                        pending.push_back(SseEvent::default().data("[DONE]"));
                        finished = true;
                        state.metrics.latency.observe(start.elapsed().as_secs_f64());
                    }
                }
                Event::Error(m) => {
                    pending.push_back(
                        SseEvent::default().data(ApiError::invalid(m).body().to_string()),
                    );
                    pending.push_back(SseEvent::default().data("[DONE]"));
                    finished = true;
                }
            }
        }
    });
    Sse::new(s)
}

fn chunk(
    id: &str,
    created: u64,
    state: &Shared,
    index: usize,
    text: &str,
    logprobs: Value,
    finish: Option<FinishReason>,
) -> SseEvent {
    let c = json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": state.options.model_id,
        "choices": [{
            "index": index,
            "text": text,
            "logprobs": logprobs,
            "finish_reason": finish.map(finish_name),
        }],
    });
    SseEvent::default().data(c.to_string())
}
