//! Chat templates: turn a conversation into the prompt text a model was trained on.
//!
//! A GGUF file carries its chat template as Jinja source (`tokenizer.chat_template`),
//! written for Hugging Face transformers' `apply_chat_template`. This module renders it
//! with [minijinja], configured to behave like the Python side: the environment
//! transformers builds (`trim_blocks`, `lstrip_blocks`, loop controls), its globals
//! (`raise_exception`, `strftime_now`), its `tojson` (Python's `json.dumps`, no HTML
//! escaping), Python's string/list/dict methods (`.strip()`, `.items()`, …) and Python's
//! way of printing values (`True`, `None`, `['a', 'b']`). Templates get no loader: they
//! cannot include, import or extend anything, so rendering never touches files.
//!
//! It must not tokenize: the result is text, and the caller decides how to encode it
//! (usually `parse_special = true`, without adding BOS again if the template wrote it).
//!
//! The acceptance test (`tests/chat_templates.rs`) renders llama.cpp's template corpus
//! and compares each result byte for byte with Python jinja2's.

mod pygen;
mod pyjson;
mod pyrepr;
mod strftime;

use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Rest, Serde};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

/// The name the template source is registered under in its private environment; it
/// shows up in error messages (`… (in chat_template:12)`).
const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (or `tool`, for templates that know it).
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Why a template could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The source is not a template minijinja can compile (syntax error, unknown tag).
    #[error("chat template does not compile: {0}")]
    Compile(#[source] Error),
    /// The template called `raise_exception(message)`, e.g. to reject a role it does
    /// not support.
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    /// Rendering failed (undefined variable, type error, unknown filter, …).
    #[error("chat template failed to render: {0}")]
    Render(#[source] Error),
    /// `render_with` was given something that is not a JSON object where one is needed.
    #[error("chat template input: {0}")]
    Input(String),
}

/// What `strftime_now` reads.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// The system clock, in UTC.
    System,
    /// A fixed instant (Unix seconds, UTC), for reproducible renders.
    Fixed(i64),
}

impl Clock {
    fn now(self) -> i64 {
        match self {
            Clock::Fixed(t) => t,
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        }
    }
}

/// A compiled chat template plus the special tokens it is rendered with.
#[derive(Clone)]
pub struct ChatTemplate {
    /// The environment holding the one compiled template (absent only if a built-in
    /// template failed to compile, which a unit test rules out).
    env: Arc<Environment<'static>>,
    source: Arc<str>,
    bos_token: String,
    eos_token: String,
    clock: Clock,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("clock", &self.clock)
            .finish()
    }
}

/// ChatML, as used by Qwen, SmolLM and many fine-tunes.
const CHATML: &str = "\
{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\\n' -}}
{%- endif -%}";

/// Gemma's turn format (as in Gemma 2/3's own templates): `assistant` becomes `model`,
/// a leading system message is prepended to the first user turn, roles must alternate.
const GEMMA: &str = "\
{{- bos_token -}}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = '' -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}
    {%- endif -%}
    {%- if message['role'] == 'assistant' -%}
        {%- set role = 'model' -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{- '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') -}}
    {{- message['content'] | trim -}}
    {{- '<end_of_turn>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<start_of_turn>model\\n' -}}
{%- endif -%}";

impl ChatTemplate {
    /// Compiles `source` (Jinja, as found in `tokenizer.chat_template`) once;
    /// `bos_token`/`eos_token` are the strings the template sees under those names.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let clock = Clock::System;
        let env = build_env(source, clock).map_err(TemplateError::Compile)?;
        Ok(ChatTemplate {
            env: Arc::new(env),
            source: Arc::from(source),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            clock,
        })
    }

    /// The built-in ChatML template (`<|im_start|>role\ncontent<|im_end|>\n` per
    /// message, then `<|im_start|>assistant\n`), for models without a template.
    pub fn chatml() -> Self {
        Self::builtin(CHATML, "", "<|im_end|>")
    }

    /// The built-in Gemma template (`<start_of_turn>user\n…<end_of_turn>\n`, `model` for
    /// the assistant, a system message folded into the first user turn).
    pub fn gemma() -> Self {
        Self::builtin(GEMMA, "<bos>", "<eos>")
    }

    fn builtin(source: &str, bos_token: &str, eos_token: &str) -> Self {
        Self::new(source, bos_token, eos_token).unwrap_or_else(|_| ChatTemplate {
            // Unreachable (see the `builtins_compile` test); rendering would report the
            // missing template rather than panic.
            env: Arc::new(Environment::new()),
            source: Arc::from(source),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
            clock: Clock::System,
        })
    }

    /// The same template with `strftime_now` frozen at `unix_seconds` (UTC), so renders
    /// are reproducible (tests, golden files). By default it reads the system clock
    /// (UTC; transformers uses local time).
    pub fn with_fixed_time(self, unix_seconds: i64) -> Self {
        let clock = Clock::Fixed(unix_seconds);
        match build_env(&self.source, clock) {
            Ok(env) => ChatTemplate {
                env: Arc::new(env),
                clock,
                ..self
            },
            // The source compiled before, so it compiles again.
            Err(_) => self,
        }
    }

    /// The template source this was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with the header
    /// of an assistant turn, ready for generation. `tools` and the like stay undefined.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let ctx = minijinja::context! {
            messages => Value::from(Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        self.render_value(ctx)
    }

    /// Renders a JSON list of message objects (which may carry `tool_calls`,
    /// `reasoning_content`, content parts, …). `extra` is a JSON object (or `null`) of
    /// further template variables such as `tools`, `date_string` or `enable_thinking`;
    /// it may override `bos_token`/`eos_token`, but not `messages` or
    /// `add_generation_prompt`.
    pub fn render_with(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
        extra: &serde_json::Value,
    ) -> Result<String, TemplateError> {
        if !messages.is_array() {
            return Err(TemplateError::Input(format!(
                "messages must be a JSON list, got {}",
                json_kind(messages)
            )));
        }
        let mut ctx = serde_json::Map::new();
        ctx.insert("bos_token".into(), self.bos_token.clone().into());
        ctx.insert("eos_token".into(), self.eos_token.clone().into());
        match extra {
            serde_json::Value::Null => {}
            serde_json::Value::Object(m) => {
                ctx.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            other => {
                return Err(TemplateError::Input(format!(
                    "extra variables must be a JSON object, got {}",
                    json_kind(other)
                )))
            }
        }
        ctx.insert("messages".into(), messages.clone());
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        self.render_value(Value::from(Serde(&ctx)))
    }

    fn render_value(&self, ctx: Value) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(TemplateError::Render)?;
        tmpl.render(ctx).map_err(|e| match raised_message(&e) {
            Some(msg) => TemplateError::Raised(msg),
            None => TemplateError::Render(e),
        })
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Python's `str()` of a template value (`repr` inside lists and dicts), as
/// [`python_environment`] prints values.
pub fn python_str(value: &Value) -> String {
    pyrepr::py_str(value)
}

/// The environment lm-evaluation-harness renders task templates in
/// (`jinja2.Environment(undefined=StrictUndefined, keep_trailing_newline=True)`), rebuilt
/// in minijinja: undefined names are errors, values print as Python's `str()` does, and
/// strings, lists and dicts have Python's methods (`strip`, `split`, `index`, …).
pub fn python_environment() -> Environment<'static> {
    let mut env = Environment::new();
    if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_unknown_method_callback(pyrepr::unknown_method);
    env.set_formatter(pyrepr::format_output);
    env.add_filter("string", pyrepr::string_filter);
    env
}

/// The environment transformers builds for chat templates, rebuilt in minijinja, with
/// `source` compiled into it.
fn build_env(source: &str, clock: Clock) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    // jinja2.Environment(trim_blocks=True, lstrip_blocks=True); keep_trailing_newline
    // stays False as in jinja2.
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    // jinja2's default `Undefined`: prints as "", iterates as empty, fails on use.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_unknown_method_callback(pyrepr::unknown_method);
    env.set_formatter(pyrepr::format_output);
    env.add_filter("tojson", tojson);
    env.add_filter("string", pyrepr::string_filter);
    pygen::register(&mut env);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", move |fmt: &str| {
        strftime::strftime(clock.now(), fmt)
    });
    env.add_template_owned(TEMPLATE_NAME, rewrite_generation_tags(source))?;
    Ok(env)
}

/// transformers' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, without jinja2's HTML escaping.
fn tojson(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let mut opts = pyjson::Options::default();
    // Positional order of transformers' signature after the value.
    let names = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > names.len() {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments",
        ));
    }
    for (name, v) in names.iter().zip(args.iter()) {
        opts.set(name, v)?;
    }
    for name in names {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            opts.set(name, &v)?;
        }
    }
    kwargs.assert_all_used()?;
    // Marked safe like jinja2's Markup result; irrelevant without auto-escaping.
    pyjson::dumps(value, &opts).map(Value::from_safe_string)
}

/// Carried as the source of the error `raise_exception` returns, so the message can be
/// told apart from other render errors.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(_state: &State, message: Option<Value>) -> Result<Value, Error> {
    let msg = match message {
        Some(v) => pyrepr::py_str(&v),
        None => String::new(),
    };
    Err(Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(Raised(msg)))
}

fn raised_message(e: &Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Raised>() {
            return Some(r.0.clone());
        }
        cur = err.source();
    }
    None
}

/// transformers' `AssistantTracker` extension adds a `{% generation %}…{% endgeneration %}`
/// block that renders its body unchanged (it only records where assistant text went).
/// minijinja has no custom tags, so the pair becomes `{% if true %}…{% endif %}`, which
/// renders the same and keeps the tags' whitespace control (`-`, `+`, trim/lstrip).
fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(pos) = rest.find("{%") {
        out.push_str(&rest[..pos + 2]);
        rest = &rest[pos + 2..];
        let ctl_len = usize::from(rest.starts_with(['-', '+']));
        let body = &rest[ctl_len..];
        let trimmed = body.trim_start();
        let ws_len = body.len() - trimmed.len();
        let replaced = [("generation", "if true"), ("endgeneration", "endif")]
            .into_iter()
            .find_map(|(kw, with)| {
                let after = trimmed.strip_prefix(kw)?.trim_start();
                let closes = ["%}", "-%}", "+%}"].iter().any(|c| after.starts_with(c));
                closes.then_some((kw.len(), with))
            });
        if let Some((kw_len, with)) = replaced {
            out.push_str(&rest[..ctl_len + ws_len]);
            out.push_str(with);
            rest = &rest[ctl_len + ws_len + kw_len..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello!"),
            ChatMessage::new("user", "Bye"),
        ]
    }

    #[test]
    fn builtins_compile() {
        for src in [CHATML, GEMMA] {
            assert!(build_env(src, Clock::System).is_ok());
        }
    }

    #[test]
    fn chatml_renders() {
        let got = ChatTemplate::chatml()
            .render(&conversation(), true)
            .unwrap();
        assert_eq!(
            got,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn gemma_folds_system_into_first_user_turn() {
        let got = ChatTemplate::gemma().render(&conversation(), true).unwrap();
        assert_eq!(
            got,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n\
             <start_of_turn>model\nHello!<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
        let bad = [ChatMessage::new("assistant", "x")];
        assert!(matches!(
            ChatTemplate::gemma().render(&bad, false),
            Err(TemplateError::Raised(m)) if m.starts_with("Conversation roles must alternate")
        ));
    }

    #[test]
    fn python_methods_and_values() {
        let t = ChatTemplate::new(
            "{{ '  a b '.strip().split(' ') }}|{{ true }}|{{ none }}|{{ {'k': [1, 'x']} | tojson }}\
             |{{ x is defined }}{% for k, v in {'a': 1}.items() %}|{{ k }}={{ v }}{% endfor %}",
            "<s>",
            "</s>",
        )
        .unwrap();
        assert_eq!(
            t.render(&[], false).unwrap(),
            "['a', 'b']|True|None|{\"k\": [1, \"x\"]}|False|a=1"
        );
    }

    #[test]
    fn raise_exception_is_typed() {
        let t = ChatTemplate::new("{{ raise_exception('no ' + 'system') }}", "", "").unwrap();
        match t.render(&[], false) {
            Err(TemplateError::Raised(m)) => assert_eq!(m, "no system"),
            other => panic!("expected Raised, got {other:?}"),
        }
    }

    #[test]
    fn no_file_access() {
        for src in [
            "{% include 'x' %}",
            "{% import 'x' as y %}",
            "{% extends 'x' %}",
        ] {
            let r = ChatTemplate::new(src, "", "").and_then(|t| t.render(&[], false));
            assert!(r.is_err(), "{src} should fail");
        }
    }

    #[test]
    fn strftime_now_fixed() {
        let t = ChatTemplate::new("{{ strftime_now('%d %b %Y %H:%M') }}", "", "")
            .unwrap()
            .with_fixed_time(1_721_995_200);
        assert_eq!(t.render(&[], false).unwrap(), "26 Jul 2024 12:00");
    }

    #[test]
    fn generation_tags_rewritten() {
        assert_eq!(
            rewrite_generation_tags("a{%- generation %}b{% endgeneration -%}c{% generations %}"),
            "a{%- if true %}b{% endif -%}c{% generations %}"
        );
    }

    #[test]
    fn render_with_extra() {
        let t = ChatTemplate::new(
            "{{ date_string }}{% for m in messages %}|{{ m.role }}{% endfor %}{{ tools | length }}",
            "",
            "",
        )
        .unwrap();
        let msgs = serde_json::json!([{"role": "user", "content": "x"}]);
        let extra = serde_json::json!({"date_string": "26 Jul 2024", "tools": [{"a": 1}]});
        assert_eq!(
            t.render_with(&msgs, true, &extra).unwrap(),
            "26 Jul 2024|user1"
        );
        assert!(matches!(
            t.render_with(&serde_json::json!({}), true, &extra),
            Err(TemplateError::Input(_))
        ));
    }
}
