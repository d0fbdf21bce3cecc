//! `POST /v1/chat/completions`: messages through the model's chat template, plain or
//! streamed, with log-probabilities, structured output and tool calls.

use crate::error::ApiError;
use crate::params::{self, chat_logprob, parse_body, SamplingFields, MAX_TOP_LOGPROBS};
use crate::worker::{Events, Job};
use crate::{structured, tools, Shared};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use huarizo_engine::{Event, FinishReason, GenerateParams};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Instant;

#[derive(Deserialize, Debug)]
struct ChatRequest {
    #[allow(dead_code)]
    model: Option<String>,
    messages: Value,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
    response_format: Option<Value>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    #[serde(flatten)]
    sampling: SamplingFields,
}

/// `stream_options`.
#[derive(Deserialize, Debug, Default)]
pub struct StreamOptions {
    /// Send a last chunk with the usage counts.
    pub include_usage: Option<bool>,
}

const ROLES: [&str; 5] = ["system", "user", "assistant", "tool", "developer"];

/// Checks the messages and flattens content parts into strings for the template. An
/// assistant turn that only calls tools gets empty content (templates concatenate it); when
/// the template knows nothing of `tool_calls`, the calls are written into the content in the
/// `<tool_call>` form the model is asked to produce.
fn normalize_messages(messages: &Value, template_has_tools: bool) -> Result<Value, ApiError> {
    let list = messages
        .as_array()
        .ok_or_else(|| ApiError::param("messages", "messages must be a list of message objects"))?;
    if list.is_empty() {
        return Err(ApiError::param("messages", "messages must not be empty"));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let obj = m.as_object().ok_or_else(|| {
            ApiError::param(&format!("messages[{i}]"), "each message must be an object")
        })?;
        let role = obj.get("role").and_then(Value::as_str).ok_or_else(|| {
            ApiError::param(
                &format!("messages[{i}].role"),
                "each message needs a string role",
            )
        })?;
        if !ROLES.contains(&role) {
            return Err(ApiError::param(
                &format!("messages[{i}].role"),
                format!(
                    "unknown role {role:?}; expected one of {}",
                    ROLES.join(", ")
                ),
            ));
        }
        let mut msg = obj.clone();
        if role == "developer" {
            msg.insert("role".into(), "system".into());
        }
        let content = match obj.get("content") {
            None | Some(Value::Null) => {
                if role == "assistant" && obj.contains_key("tool_calls") {
                    if template_has_tools {
                        Value::String(String::new())
                    } else {
                        Value::String(tools::render_tool_calls(&obj["tool_calls"]))
                    }
                } else {
                    return Err(ApiError::param(
                        &format!("messages[{i}].content"),
                        "message content is missing",
                    ));
                }
            }
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.get("type").and_then(Value::as_str), p.get("text")) {
                        (Some("text"), Some(Value::String(t))) => text.push_str(t),
                        (Some(kind), _) if kind != "text" => {
                            return Err(ApiError::param(
                                &format!("messages[{i}].content[{j}]"),
                                format!(
                                    "content parts of type {kind:?} are not supported (text only)"
                                ),
                            ))
                        }
                        _ => {
                            return Err(ApiError::param(
                                &format!("messages[{i}].content[{j}]"),
                                "a content part must be {\"type\": \"text\", \"text\": \"…\"}",
                            ))
                        }
                    }
                }
                Value::String(text)
            }
            Some(_) => {
                return Err(ApiError::param(
                    &format!("messages[{i}].content"),
                    "content must be a string or a list of text parts",
                ))
            }
        };
        msg.insert("content".into(), content);
        out.push(Value::Object(msg));
    }
    Ok(Value::Array(out))
}

/// Checks `tools`: a list of `{"type": "function", "function": {"name", …}}`.
fn check_tools(tools: &Value) -> Result<(), ApiError> {
    let list = tools
        .as_array()
        .ok_or_else(|| ApiError::param("tools", "tools must be a list"))?;
    for (i, t) in list.iter().enumerate() {
        let ok = t.get("type").and_then(Value::as_str) == Some("function")
            && t.pointer("/function/name")
                .and_then(Value::as_str)
                .is_some();
        if !ok {
            return Err(ApiError::param(
                &format!("tools[{i}]"),
                "each tool must be {\"type\": \"function\", \"function\": {\"name\": …}}",
            ));
        }
    }
    Ok(())
}

pub async fn chat_completions(State(state): State<Shared>, body: Bytes) -> Response {
    let start = Instant::now();
    match prepare(&state, &body) {
        Ok((events, ctx)) => {
            if ctx.stream {
                stream(state, events, ctx, start).into_response()
            } else {
                collect(state, events, ctx, start).await.into_response()
            }
        }
        Err(e) => e.into_response(),
    }
}

struct ChatContext {
    id: String,
    n: usize,
    stream: bool,
    include_usage: bool,
    logprobs: bool,
    with_tools: bool,
}

fn prepare(state: &Shared, body: &[u8]) -> Result<(Events, ChatContext), ApiError> {
    let req: ChatRequest = parse_body(body)?;
    let engine = &state.engine;
    let template_has_tools = engine.chat_template_source().contains("tool_calls");
    let messages = normalize_messages(&req.messages, template_has_tools)?;
    let tool_choice_none = req.tool_choice.as_ref().and_then(Value::as_str) == Some("none");
    let tools = match &req.tools {
        Some(t) if !t.is_null() => {
            check_tools(t)?;
            (!tool_choice_none && t.as_array().is_some_and(|a| !a.is_empty())).then(|| t.clone())
        }
        _ => None,
    };
    // "required", or one named function: the reply is forced to be a call.
    let forced_tools: Option<Vec<Value>> = match (&req.tool_choice, &tools) {
        (None | Some(Value::Null), _) => None,
        (Some(Value::String(s)), _) if s == "auto" || s == "none" => None,
        (Some(Value::String(s)), Some(t)) if s == "required" => t.as_array().cloned(),
        (Some(Value::Object(o)), Some(t)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::param("tool_choice", "tool_choice must name a function: {\"type\": \"function\", \"function\": {\"name\": …}}")
                })?;
            let chosen: Vec<Value> = t
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| x.pointer("/function/name").and_then(Value::as_str) == Some(name))
                .cloned()
                .collect();
            if chosen.is_empty() {
                return Err(ApiError::param(
                    "tool_choice",
                    format!("tool_choice names {name:?}, which is not among the tools"),
                ));
            }
            Some(chosen)
        }
        (Some(_), None) => return Err(ApiError::param("tool_choice", "tool_choice needs tools")),
        (Some(_), _) => {
            return Err(ApiError::param(
                "tool_choice",
                "tool_choice must be \"auto\", \"none\", \"required\" or a named function",
            ))
        }
    };
    let extra = match &tools {
        Some(t) => json!({ "tools": t }),
        None => Value::Null,
    };
    let text = engine
        .render_chat_json(&messages, true, &extra)
        .map_err(|e| ApiError::invalid(format!("the chat template failed: {e}")))?;
    let prompt = engine.tokenize_prompt(&text);
    let max = req.max_completion_tokens.or(req.max_tokens);
    let budget = params::completion_budget(prompt.len(), max, state.n_ctx, 1)?;
    let n = req.sampling.n()?;
    let stop = req.sampling.stop_list()?;
    let top = match req.top_logprobs {
        None => 0,
        Some(k) if (0..=MAX_TOP_LOGPROBS as i64).contains(&k) => k as usize,
        Some(k) => {
            return Err(ApiError::param(
                "top_logprobs",
                format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, got {k}"),
            ))
        }
    };
    let logprobs = req.logprobs.unwrap_or(false);
    if top > 0 && !logprobs {
        return Err(ApiError::param(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        ));
    }
    let format = structured::ResponseFormat::parse(req.response_format.as_ref())?;
    let seed = params::fresh_seed();
    let mut jobs = Vec::with_capacity(n);
    for i in 0..n {
        jobs.push(Job {
            prompt: prompt.clone(),
            params: GenerateParams {
                sampling: req.sampling.sampling(i, seed)?,
                max_tokens: budget,
                stop: stop.clone(),
                top_logprobs: top,
                stop_at_eog: true,
            },
            prompt_logprobs: None,
            logprobs,
            constraint: match &forced_tools {
                Some(t) => Some(
                    state
                        .engine
                        .tool_call_constraint(t, budget)
                        .map_err(|e| ApiError::param("tools", e.to_string()))?,
                ),
                None => format.constraint(state, budget)?,
            },
        });
    }
    let events = state.queue.submit(jobs)?;
    let stream = req.stream.unwrap_or(false);
    Ok((
        events,
        ChatContext {
            id: params::response_id("chatcmpl", &state.metrics),
            n,
            stream,
            include_usage: req
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            logprobs,
            with_tools: tools.is_some(),
        },
    ))
}

pub fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length => "length",
    }
}

#[derive(Default)]
struct Choice {
    text: String,
    logprobs: Vec<Value>,
    finish: Option<FinishReason>,
}

struct Usage {
    prompt: usize,
    cached: usize,
    completion: usize,
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt,
        "completion_tokens": u.completion,
        "total_tokens": u.prompt + u.completion,
        "prompt_tokens_details": { "cached_tokens": u.cached },
    })
}

async fn collect(
    state: Shared,
    mut events: Events,
    ctx: ChatContext,
    start: Instant,
) -> Result<Json<Value>, ApiError> {
    let mut choices: Vec<Choice> = (0..ctx.n).map(|_| Choice::default()).collect();
    let mut usage = Usage {
        prompt: 0,
        cached: 0,
        completion: 0,
    };
    let mut done = 0;
    let mut first = true;
    while done < ctx.n {
        let Some((i, ev)) = events.recv().await else {
            return Err(ApiError::internal("the generation worker stopped"));
        };
        match ev {
            Event::Token {
                token,
                text,
                logprob,
            } => {
                if state.engine.tokenizer().is_eog(token) {
                    continue; // the end token, reported only for completions' logprobs
                }
                if first {
                    state.metrics.ttft.observe(start.elapsed().as_secs_f64());
                    first = false;
                }
                choices[i].text.push_str(&text);
                if let Some(lp) = logprob {
                    choices[i].logprobs.push(chat_logprob(&state.engine, &lp));
                }
            }
            Event::Done {
                finish,
                prompt_tokens,
                cached_tokens,
                completion_tokens,
            } => {
                choices[i].finish = Some(finish);
                usage.prompt = prompt_tokens;
                usage.cached = cached_tokens;
                usage.completion += completion_tokens;
                done += 1;
            }
            Event::Error(message) => return Err(ApiError::invalid(message)),
            Event::PromptLogprobs(_) => {}
        }
    }
    state.metrics.latency.observe(start.elapsed().as_secs_f64());
    let choices: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let finish = finish_name(c.finish.unwrap_or(FinishReason::Stop));
            let mut message = json!({ "role": "assistant", "content": c.text });
            let mut finish = finish.to_string();
            if ctx.with_tools {
                if let Some((content, calls)) = tools::parse_tool_calls(&c.text) {
                    message["content"] = content.map_or(Value::Null, Value::String);
                    message["tool_calls"] = calls;
                    finish = "tool_calls".into();
                }
            }
            json!({
                "index": i,
                "message": message,
                "logprobs": if ctx.logprobs { json!({ "content": c.logprobs }) } else { Value::Null },
                "finish_reason": finish,
            })
        })
        .collect();
    Ok(Json(json!({
        "id": ctx.id,
        "object": "chat.completion",
        "created": crate::unix_now(),
        "model": state.options.model_id,
        "system_fingerprint": crate::misc::fingerprint(),
        "choices": choices,
        "usage": usage_json(&usage),
    })))
}

fn stream(
    state: Shared,
    events: Events,
    ctx: ChatContext,
    start: Instant,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let created = crate::unix_now();
    let chunk = {
        let (id, model) = (ctx.id.clone(), state.options.model_id.clone());
        move |choices: Value, usage: Option<Value>| {
            let mut c = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": crate::misc::fingerprint(),
                "choices": choices,
            });
            if let Some(u) = usage {
                c["usage"] = u;
            }
            SseEvent::default().data(c.to_string())
        }
    };
    struct St {
        events: Events,
        pending: std::collections::VecDeque<SseEvent>,
        done: usize,
        finished: bool,
        first: bool,
        usage: Usage,
        held: Vec<String>,
    }
    let mut st = St {
        events,
        pending: (0..ctx.n)
            .map(|i| {
                chunk(
                    json!([{ "index": i, "delta": { "role": "assistant", "content": "" },
                             "logprobs": null, "finish_reason": null }]),
                    None,
                )
            })
            .collect(),
        done: 0,
        finished: false,
        first: true,
        usage: Usage {
            prompt: 0,
            cached: 0,
            completion: 0,
        },
        held: vec![String::new(); ctx.n],
    };
    let s = futures_util::stream::poll_fn(move |cx| {
        use std::task::Poll;
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Poll::Ready(Some(Ok(ev)));
            }
            if st.finished {
                return Poll::Ready(None);
            }
            let (i, ev) = match st.events.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    st.finished = true;
                    let err = ApiError::internal("the generation worker stopped");
                    st.pending
                        .push_back(SseEvent::default().data(err.body().to_string()));
                    continue;
                }
                Poll::Ready(Some(x)) => x,
            };
            match ev {
                Event::Token {
                    token,
                    text,
                    logprob,
                } => {
                    if state.engine.tokenizer().is_eog(token) {
                        continue;
                    }
                    if st.first {
                        state.metrics.ttft.observe(start.elapsed().as_secs_f64());
                        st.first = false;
                    }
                    if ctx.with_tools {
                        st.held[i].push_str(&text);
                        continue;
                    }
                    let lp = match (&logprob, ctx.logprobs) {
                        (Some(lp), true) => json!({ "content": [chat_logprob(&state.engine, lp)] }),
                        _ => Value::Null,
                    };
                    if text.is_empty() && lp.is_null() {
                        continue;
                    }
                    st.pending.push_back(chunk(
                        json!([{ "index": i, "delta": { "content": text },
                                 "logprobs": lp, "finish_reason": null }]),
                        None,
                    ));
                }
                Event::Done {
                    finish,
                    prompt_tokens,
                    cached_tokens,
                    completion_tokens,
                } => {
                    let mut finish = finish_name(finish).to_string();
                    if ctx.with_tools {
                        let text = std::mem::take(&mut st.held[i]);
                        let mut delta = json!({ "content": text });
                        if let Some((content, calls)) = tools::parse_tool_calls(&text) {
                            let calls: Vec<Value> = calls
                                .as_array()
                                .into_iter()
                                .flatten()
                                .enumerate()
                                .map(|(k, c)| {
                                    let mut c = c.clone();
                                    c["index"] = k.into();
                                    c
                                })
                                .collect();
                            delta = json!({ "content": content, "tool_calls": calls });
                            finish = "tool_calls".into();
                        }
                        st.pending.push_back(chunk(
                            json!([{ "index": i, "delta": delta, "logprobs": null, "finish_reason": null }]),
                            None,
                        ));
                    }
                    st.pending.push_back(chunk(
                        json!([{ "index": i, "delta": {}, "logprobs": null, "finish_reason": finish }]),
                        None,
                    ));
                    st.usage.prompt = prompt_tokens;
                    st.usage.cached = cached_tokens;
                    st.usage.completion += completion_tokens;
                    st.done += 1;
                    if st.done == ctx.n {
                        if ctx.include_usage {
                            st.pending
                                .push_back(chunk(json!([]), Some(usage_json(&st.usage))));
                        }
                        st.pending.push_back(SseEvent::default().data("[DONE]"));
                        st.finished = true;
                        state.metrics.latency.observe(start.elapsed().as_secs_f64());
                    }
                }
                Event::Error(message) => {
                    st.pending.push_back(
                        SseEvent::default().data(ApiError::invalid(message).body().to_string()),
                    );
                    st.pending.push_back(SseEvent::default().data("[DONE]"));
                    st.finished = true;
                }
                Event::PromptLogprobs(_) => {}
            }
        }
    });
    Sse::new(s)
}
