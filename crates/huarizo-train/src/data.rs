//! Training data: JSONL files (chat, prompt/completion or plain text records) and raw text
//! files turned into token sequences with per-position targets, plus a held-out split.
//!
//! Every piece of text is tokenized as the engine tokenizes a prompt
//! (`Tokenizer::encode(text, add_special = false, parse_special = true)`, so the
//! `<|im_start|>` of a rendered template becomes its special token), and BOS is put in
//! front when the tokenizer asks for it and the text does not start with it already.
//! Prompt and answer are tokenized separately: that is exactly what the model sees when it
//! generates (the prompt is tokenized alone, the answer's tokens follow it).

use crate::rng::SplitMix64;
use huarizo_engine::{ChatMessage, ChatTemplate, Tokenizer, TrainSeq};
use std::path::Path;

/// One training sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// The input tokens. // (T)
    pub tokens: Vec<u32>,
    /// `labels[i]` is the token position `i` must predict (`tokens[i + 1]`) where it is
    /// trained, or -1 where position `i` carries no loss. // (T)
    pub labels: Vec<i32>,
}

impl Example {
    /// An example from `tokens` and, per token, whether it is a trained target (a token
    /// the model must learn to predict from the tokens before it). The first token can
    /// never be a target; the last position predicts nothing.
    pub fn from_targets(tokens: Vec<u32>, is_target: &[bool]) -> Example {
        debug_assert_eq!(tokens.len(), is_target.len());
        let labels = (0..tokens.len())
            .map(|i| match tokens.get(i + 1) {
                Some(&next) if is_target[i + 1] => next as i32,
                _ => -1,
            })
            .collect();
        Example { tokens, labels }
    }

    /// Number of positions that carry a loss.
    pub fn n_trained(&self) -> usize {
        self.labels.iter().filter(|&&l| l >= 0).count()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Cuts the example to its first `max_len` tokens; the new last position predicts
    /// nothing (its target was cut off).
    pub fn truncate(&mut self, max_len: usize) {
        if self.tokens.len() > max_len {
            self.tokens.truncate(max_len);
            self.labels.truncate(max_len);
            if let Some(last) = self.labels.last_mut() {
                *last = -1;
            }
        }
    }
}

/// What to do with a JSONL line that cannot be read (malformed JSON, unknown shape, a
/// message without role or content, a template that fails on it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadLinePolicy {
    /// Fail with an error naming the file and line.
    #[default]
    Stop,
    /// Warn on stderr (`file:line: reason`), skip the line and count it.
    Skip,
}

/// Options of the loaders.
#[derive(Clone, Copy, Debug)]
pub struct DataOptions {
    /// Longest allowed example in tokens (the model's context or `--seq-len`).
    pub max_len: usize,
    /// Cut longer examples to `max_len` instead of failing.
    pub truncate: bool,
    /// What to do with unreadable lines.
    pub bad_lines: BadLinePolicy,
}

/// Why the data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line that is not valid JSON, has none of the known shapes, or fails the chat
    /// template.
    #[error("{path}:{line}: {message}")]
    BadLine {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An example longer than allowed.
    #[error(
        "{path}:{line}: example is {len} tokens long, longer than the maximum of {max} \
         (the model's context or --seq-len); shorten it or pass --truncate to cut it"
    )]
    TooLong {
        /// The file.
        path: String,
        /// 1-based line number (for raw text: 1).
        line: usize,
        /// The example's length in tokens.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// No example has a trained token.
    #[error("{path}: no training example (no line has a token to learn: {detail})")]
    Empty {
        /// The file.
        path: String,
        /// Counts of what was found instead.
        detail: String,
    },
    /// An invalid argument (e.g. a holdout fraction outside [0, 1)).
    #[error("{0}")]
    Invalid(String),
}

/// Examples read from one file.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    /// The examples, in file order; each has at least one trained position.
    pub examples: Vec<Example>,
    /// Lines skipped under [`BadLinePolicy::Skip`].
    pub skipped_lines: usize,
    /// Lines dropped because nothing in them is trained (e.g. no assistant message).
    pub untrained_lines: usize,
    /// Examples cut to the maximum length (with `truncate`).
    pub truncated: usize,
}

impl Dataset {
    /// Total number of trained positions.
    pub fn n_trained(&self) -> usize {
        self.examples.iter().map(Example::n_trained).sum()
    }
}

/// The tokenizer and chat template examples are built with.
#[derive(Clone, Copy)]
pub struct TextFormat<'a> {
    /// The model's tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// The model's chat template (for `messages` records).
    pub template: &'a ChatTemplate,
}

/// The tokenizer and chat template of the model at `path` (a GGUF file or a Hugging Face
/// checkpoint folder), without loading weights. A model without its own template gets the
/// engine's fallback: Gemma's for `gemma3`, else ChatML.
pub fn load_text_format(path: &Path) -> anyhow::Result<(Tokenizer, ChatTemplate)> {
    use anyhow::Context;
    let file = huarizo_engine::open_model_file(path)?;
    let tokenizer =
        Tokenizer::from_gguf(&file).with_context(|| format!("{}: tokenizer", path.display()))?;
    let text = |id: Option<u32>| {
        id.map(|i| String::from_utf8_lossy(tokenizer.token_bytes(i)).into_owned())
            .unwrap_or_default()
    };
    let template = match file
        .get("tokenizer.chat_template")
        .and_then(huarizo_engine::Value::as_str)
    {
        Some(source) => ChatTemplate::new(source, &text(tokenizer.bos()), &text(tokenizer.eos()))
            .with_context(|| format!("{}: tokenizer.chat_template", path.display()))?,
        None => match file
            .get("general.architecture")
            .and_then(huarizo_engine::Value::as_str)
        {
            Some("gemma3") => ChatTemplate::gemma(),
            _ => ChatTemplate::chatml(),
        },
    };
    Ok((tokenizer, template))
}

/// Reads a JSONL file (see [`parse_jsonl`]).
pub fn load_jsonl(
    path: &Path,
    format: TextFormat<'_>,
    opts: &DataOptions,
) -> Result<Dataset, DataError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: name.clone(),
        source,
    })?;
    parse_jsonl(&name, &text, format, opts)
}

/// Parses JSONL `text` (from file `name`, used in messages). Each non-blank line is one of
/// `{"messages": [{"role": …, "content": …}, …]}` (rendered through the chat template;
/// trained on the assistant messages and the end-of-turn token after each),
/// `{"prompt": …, "completion": …}` (trained on the completion and an appended EOS) or
/// `{"text": …}` (trained on every token).
pub fn parse_jsonl(
    name: &str,
    text: &str,
    format: TextFormat<'_>,
    opts: &DataOptions,
) -> Result<Dataset, DataError> {
    let mut out = Dataset::default();
    let mut n_lines = 0usize;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        n_lines += 1;
        let mut example = match parse_line(line, format) {
            Ok(e) => e,
            Err(message) => match opts.bad_lines {
                BadLinePolicy::Stop => {
                    return Err(DataError::BadLine {
                        path: name.to_string(),
                        line: line_no,
                        message,
                    })
                }
                BadLinePolicy::Skip => {
                    eprintln!("huarizo: warning: {name}:{line_no}: {message}; line skipped");
                    out.skipped_lines += 1;
                    continue;
                }
            },
        };
        if example.len() > opts.max_len {
            if !opts.truncate {
                return Err(DataError::TooLong {
                    path: name.to_string(),
                    line: line_no,
                    len: example.len(),
                    max: opts.max_len,
                });
            }
            example.truncate(opts.max_len);
            out.truncated += 1;
        }
        if example.n_trained() == 0 {
            out.untrained_lines += 1;
            continue;
        }
        out.examples.push(example);
    }
    if out.examples.is_empty() {
        return Err(DataError::Empty {
            path: name.to_string(),
            detail: format!(
                "{n_lines} non-blank lines, {} skipped as unreadable, {} without a trained token",
                out.skipped_lines, out.untrained_lines
            ),
        });
    }
    Ok(out)
}

/// One JSONL record, or why it cannot be read.
fn parse_line(line: &str, format: TextFormat<'_>) -> Result<Example, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "expected a JSON object".to_string())?;
    if let Some(messages) = obj.get("messages") {
        let messages = parse_messages(messages)?;
        return chat_example(&messages, format);
    }
    if obj.contains_key("prompt") || obj.contains_key("completion") {
        let prompt = string_field(obj, "prompt")?;
        let completion = string_field(obj, "completion")?;
        return Ok(prompt_completion_example(
            prompt,
            completion,
            format.tokenizer,
        ));
    }
    if obj.contains_key("text") {
        let text = string_field(obj, "text")?;
        let mut b = Builder::new(format.tokenizer);
        b.push_text(text, true);
        return Ok(b.finish());
    }
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    Err(format!(
        "unknown record shape (keys {keys:?}); expected \"messages\", \"prompt\"+\"completion\" or \"text\""
    ))
}

fn string_field<'v>(
    obj: &'v serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<&'v str, String> {
    match obj.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(format!("\"{key}\" must be a string")),
        None => Err(format!("missing \"{key}\"")),
    }
}

fn parse_messages(value: &serde_json::Value) -> Result<Vec<ChatMessage>, String> {
    let list = value
        .as_array()
        .ok_or_else(|| "\"messages\" must be a list".to_string())?;
    if list.is_empty() {
        return Err("\"messages\" is empty".into());
    }
    list.iter()
        .enumerate()
        .map(|(k, m)| {
            let obj = m
                .as_object()
                .ok_or_else(|| format!("messages[{k}] must be an object"))?;
            let role = string_field(obj, "role").map_err(|e| format!("messages[{k}]: {e}"))?;
            let content =
                string_field(obj, "content").map_err(|e| format!("messages[{k}]: {e}"))?;
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

/// Accumulates tokens with their target flags.
struct Builder<'t> {
    tokenizer: &'t Tokenizer,
    tokens: Vec<u32>,
    target: Vec<bool>,
}

impl<'t> Builder<'t> {
    fn new(tokenizer: &'t Tokenizer) -> Self {
        Builder {
            tokenizer,
            tokens: Vec::new(),
            target: Vec::new(),
        }
    }

    /// Appends the tokens of `text`, each a target when `trained`. BOS goes first when the
    /// tokenizer asks for it and the text does not start with it.
    fn push_text(&mut self, text: &str, trained: bool) {
        let ids = self.tokenizer.encode(text, false, true);
        self.push_ids(&ids, trained);
    }

    fn push_ids(&mut self, ids: &[u32], trained: bool) {
        if self.tokens.is_empty() && !ids.is_empty() && self.tokenizer.add_bos() {
            if let Some(bos) = self.tokenizer.bos() {
                if ids.first() != Some(&bos) {
                    self.tokens.push(bos);
                    self.target.push(false);
                }
            }
        }
        self.tokens.extend_from_slice(ids);
        self.target.extend(std::iter::repeat_n(trained, ids.len()));
    }

    fn finish(self) -> Example {
        Example::from_targets(self.tokens, &self.target)
    }
}

fn prompt_completion_example(prompt: &str, completion: &str, tokenizer: &Tokenizer) -> Example {
    let mut b = Builder::new(tokenizer);
    b.push_text(prompt, false);
    b.push_text(completion, true);
    if let Some(eos) = tokenizer.eos() {
        b.push_ids(&[eos], true);
    }
    b.finish()
}

/// A conversation rendered through the template, trained on what each assistant message
/// adds: for assistant message `k`, the text of `messages[..=k]` minus the text of
/// `messages[..k]` with the generation prompt (the assistant header). Of that part, tokens
/// after its last end-of-generation token (the `\n` after ChatML's `<|im_end|>`) are not
/// trained: the model stops at the end-of-turn token and never generates them.
fn chat_example(messages: &[ChatMessage], format: TextFormat<'_>) -> Result<Example, String> {
    let render = |msgs: &[ChatMessage], gen: bool| {
        format
            .template
            .render(msgs, gen)
            .map_err(|e| format!("chat template: {e}"))
    };
    let mut b = Builder::new(format.tokenizer);
    let mut done = String::new();
    for (k, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let prompt = render(&messages[..k], true)?;
        let through = render(&messages[..=k], false)?;
        let context = prompt.strip_prefix(done.as_str()).ok_or_else(|| {
            format!("the chat template's rendering of messages[..{k}] does not extend that of the earlier messages, so the assistant turns cannot be told apart")
        })?;
        let answer = through.strip_prefix(prompt.as_str()).ok_or_else(|| {
            format!("the chat template's rendering through assistant messages[{k}] does not start with its rendering of the messages before it plus the assistant header, so the assistant turn cannot be told apart")
        })?;
        b.push_text(context, false);
        let ids = format.tokenizer.encode(answer, false, true);
        let end = ids
            .iter()
            .rposition(|&t| format.tokenizer.is_eog(t))
            .map_or(ids.len(), |p| p + 1);
        b.push_ids(&ids[..end], true);
        b.push_ids(&ids[end..], false);
        done = through;
    }
    let all = render(messages, false)?;
    let rest = all.strip_prefix(done.as_str()).ok_or_else(|| {
        "the chat template's rendering of the whole conversation does not extend that of its last assistant turn".to_string()
    })?;
    b.push_text(rest, false);
    Ok(b.finish())
}

/// Reads a raw text file for continued pretraining (see [`text_examples`]).
pub fn load_text(path: &Path, tokenizer: &Tokenizer, seq_len: usize) -> Result<Dataset, DataError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: name.clone(),
        source,
    })?;
    let examples = text_examples(&text, tokenizer, seq_len);
    if examples.is_empty() {
        return Err(DataError::Empty {
            path: name,
            detail: "the text has fewer than 2 tokens".into(),
        });
    }
    Ok(Dataset {
        examples,
        ..Dataset::default()
    })
}

/// Tokenizes the whole `text` (with BOS when the tokenizer asks for it) and cuts it into
/// examples of `seq_len` tokens (the last one may be shorter). Every token of the stream
/// but the first is predicted exactly once: the last position of a piece is trained to
/// predict the first token of the next piece.
pub fn text_examples(text: &str, tokenizer: &Tokenizer, seq_len: usize) -> Vec<Example> {
    let mut b = Builder::new(tokenizer);
    b.push_text(text, true);
    let stream = b.tokens;
    let seq_len = seq_len.max(1);
    let mut out = Vec::new();
    for start in (0..stream.len()).step_by(seq_len) {
        let end = (start + seq_len).min(stream.len());
        let tokens = stream[start..end].to_vec();
        let labels: Vec<i32> = (start..end)
            .map(|i| stream.get(i + 1).map_or(-1, |&t| t as i32))
            .collect();
        let e = Example { tokens, labels };
        if e.n_trained() > 0 {
            out.push(e);
        }
    }
    out
}

/// Splits off a held-out evaluation set: `ceil(fraction × n)` examples drawn with `seed`
/// (at least one when `fraction > 0`, never all of them). Returns `(train, eval)`, each in
/// the original order.
pub fn split_holdout(
    examples: Vec<Example>,
    fraction: f64,
    seed: u64,
) -> Result<(Vec<Example>, Vec<Example>), DataError> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(DataError::Invalid(format!(
            "holdout fraction must be in [0, 1), got {fraction}"
        )));
    }
    let n = examples.len();
    let n_eval = if fraction == 0.0 {
        0
    } else {
        ((fraction * n as f64).ceil() as usize).max(1)
    };
    if n_eval >= n && n_eval > 0 {
        return Err(DataError::Invalid(format!(
            "holding out {n_eval} of {n} examples leaves none to train on; give an eval file or more data"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let mut is_eval = vec![false; n];
    for &i in &order[..n_eval] {
        is_eval[i] = true;
    }
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for (e, held) in examples.into_iter().zip(is_eval) {
        if held {
            eval.push(e);
        } else {
            train.push(e);
        }
    }
    Ok((train, eval))
}

/// The engine's view of a batch: each example as a [`TrainSeq`].
pub fn train_seqs(batch: &[Example]) -> Vec<TrainSeq<'_>> {
    batch
        .iter()
        .map(|e| TrainSeq {
            tokens: &e.tokens,
            labels: &e.labels,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2's tokenizer and ChatML template, or `None` (the test is skipped) when the
    /// test model has not been fetched.
    fn smollm() -> Option<(Tokenizer, ChatTemplate)> {
        let path = huarizo_testdata::dir().join("smollm2.gguf");
        if !path.exists() {
            eprintln!(
                "skipped: {} is missing: run scripts/fetch-testdata.sh",
                path.display()
            );
            return None;
        }
        Some(load_text_format(&path).unwrap())
    }

    fn opts(max_len: usize) -> DataOptions {
        DataOptions {
            max_len,
            truncate: false,
            bad_lines: BadLinePolicy::Stop,
        }
    }

    /// The trained targets as decoded runs of consecutive target tokens.
    fn trained_runs(e: &Example, tok: &Tokenizer) -> Vec<String> {
        let mut runs = Vec::new();
        let mut cur: Vec<u32> = Vec::new();
        for (i, &l) in e.labels.iter().enumerate() {
            if l >= 0 {
                assert_eq!(l as u32, e.tokens[i + 1], "label {i} is not the next token");
                cur.push(l as u32);
            } else if !cur.is_empty() {
                runs.push(tok.decode(&std::mem::take(&mut cur)));
            }
        }
        if !cur.is_empty() {
            runs.push(tok.decode(&cur));
        }
        runs
    }

    #[test]
    fn chat_loss_is_on_assistant_tokens_and_end_of_turn_only() {
        let Some((tok, tmpl)) = smollm() else { return };
        let format = TextFormat {
            tokenizer: &tok,
            template: &tmpl,
        };
        let line = r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello there!"}, {"role": "user", "content": "How are you?"}, {"role": "assistant", "content": "Fine, thanks.\nAnd you?"}]}"#;
        let ds = parse_jsonl("chat.jsonl", line, format, &opts(4096)).unwrap();
        let e = &ds.examples[0];
        assert_eq!(
            trained_runs(e, &tok),
            [
                "Hello there!<|im_end|>",
                "Fine, thanks.\nAnd you?<|im_end|>"
            ]
        );
        // The sequence is the rendered conversation, special tokens as single tokens.
        let messages =
            parse_messages(&serde_json::from_str::<serde_json::Value>(line).unwrap()["messages"])
                .unwrap();
        let rendered = tmpl.render(&messages, false).unwrap();
        assert_eq!(tok.decode(&e.tokens), rendered);
        let im_start = tok.token_id("<|im_start|>").unwrap();
        assert_eq!(e.tokens.iter().filter(|&&t| t == im_start).count(), 5);
        // No assistant header, user or system text is trained.
        let im_end = tok.token_id("<|im_end|>").unwrap();
        assert_eq!(e.labels.iter().filter(|&&l| l == im_end as i32).count(), 2);
        assert_eq!(
            e.labels.iter().filter(|&&l| l == im_start as i32).count(),
            0
        );
    }

    #[test]
    fn chat_masking_holds_for_every_test_model_template() {
        // SmolLM2 (ChatML with a default system prompt), Qwen2.5 (ChatML), Gemma 3
        // (`<start_of_turn>model`, `<end_of_turn>`, BOS written by the template).
        for name in ["smollm2.gguf", "qwen.gguf", "gemma3.gguf"] {
            let path = huarizo_testdata::dir().join(name);
            if !path.exists() {
                eprintln!("skipped: {} is missing", path.display());
                continue;
            }
            let (tok, tmpl) = load_text_format(&path).unwrap();
            let format = TextFormat {
                tokenizer: &tok,
                template: &tmpl,
            };
            let line = r#"{"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another?"}, {"role": "assistant", "content": "Green, or red."}]}"#;
            let e = &parse_jsonl(name, line, format, &opts(4096))
                .unwrap()
                .examples[0];
            let runs = trained_runs(e, &tok);
            assert_eq!(runs.len(), 2, "{name}: {runs:?}");
            for (run, content) in runs.iter().zip(["Blue.", "Green, or red."]) {
                let eot = run
                    .strip_prefix(content)
                    .unwrap_or_else(|| panic!("{name}: {run:?}"));
                let ids = tok.encode(eot, false, true);
                assert!(
                    ids.len() == 1 && tok.is_eog(ids[0]),
                    "{name}: run {run:?} ends with {eot:?}"
                );
            }
            if let Some(bos) = tok.bos().filter(|_| tok.add_bos()) {
                assert_eq!(e.tokens[0], bos, "{name}");
                assert_eq!(e.tokens.iter().filter(|&&t| t == bos).count(), 1, "{name}");
            }
        }
    }

    #[test]
    fn prompt_completion_and_text_records() {
        let Some((tok, tmpl)) = smollm() else { return };
        let format = TextFormat {
            tokenizer: &tok,
            template: &tmpl,
        };
        let text = "{\"prompt\": \"2 + 2 =\", \"completion\": \" 4\"}\n\n{\"text\": \"The cat sat on the mat.\"}\n";
        let ds = parse_jsonl("pc.jsonl", text, format, &opts(4096)).unwrap();
        assert_eq!(ds.examples.len(), 2);
        let eos = tok.token_text(tok.eos().unwrap()).unwrap().to_string();
        assert_eq!(trained_runs(&ds.examples[0], &tok), [format!(" 4{eos}")]);
        let t = &ds.examples[1];
        assert_eq!(t.n_trained(), t.len() - 1);
        assert_eq!(tok.decode(&t.tokens), "The cat sat on the mat.");
        assert_eq!(*t.labels.last().unwrap(), -1);
    }

    #[test]
    fn bad_lines_name_file_and_line_under_both_policies() {
        let Some((tok, tmpl)) = smollm() else { return };
        let format = TextFormat {
            tokenizer: &tok,
            template: &tmpl,
        };
        let text = [
            r#"{"text": "this line is fine"}"#,
            "",
            r#"{"text": "also fine"#,
            r#"{"input": "x"}"#,
            r#"{"messages": [{"role": "user", "content": "a"}, {"content": "b"}]}"#,
            r#"{"prompt": "p", "completion": 3}"#,
            r#"{"text": "and so is the last one"}"#,
        ]
        .join("\n");
        let err = parse_jsonl("data.jsonl", &text, format, &opts(100)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("data.jsonl:3: not valid JSON"), "{msg}");
        let skip = DataOptions {
            bad_lines: BadLinePolicy::Skip,
            ..opts(100)
        };
        let ds = parse_jsonl("data.jsonl", &text, format, &skip).unwrap();
        assert_eq!(ds.skipped_lines, 4);
        assert_eq!(ds.examples.len(), 2);
        for (bad, expect) in [
            (r#"{"input": "x"}"#, "data.jsonl:1: unknown record shape"),
            (r#"[1, 2]"#, "data.jsonl:1: expected a JSON object"),
            (
                r#"{"messages": [{"role": "user", "content": "a"}, {"content": "b"}]}"#,
                "data.jsonl:1: messages[1]: missing \"role\"",
            ),
            (
                r#"{"messages": [{"role": "user"}]}"#,
                "data.jsonl:1: messages[0]: missing \"content\"",
            ),
            (
                r#"{"prompt": "p", "completion": 3}"#,
                "data.jsonl:1: \"completion\" must be a string",
            ),
        ] {
            let msg = parse_jsonl("data.jsonl", bad, format, &opts(100))
                .unwrap_err()
                .to_string();
            assert!(msg.starts_with(expect), "{msg}");
        }
    }

    #[test]
    fn empty_datasets_are_clear_errors() {
        let Some((tok, tmpl)) = smollm() else { return };
        let format = TextFormat {
            tokenizer: &tok,
            template: &tmpl,
        };
        let no_assistant = r#"{"messages": [{"role": "user", "content": "Hi"}]}"#;
        let msg = parse_jsonl("e.jsonl", no_assistant, format, &opts(100))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("e.jsonl: no training example")
                && msg.contains("1 without a trained token"),
            "{msg}"
        );
        let msg = parse_jsonl("e.jsonl", "\n\n", format, &opts(100))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("0 non-blank lines"), "{msg}");
        let skip = DataOptions {
            bad_lines: BadLinePolicy::Skip,
            ..opts(100)
        };
        let msg = parse_jsonl("e.jsonl", "oops\n", format, &skip)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("1 skipped as unreadable"), "{msg}");
    }

    #[test]
    fn too_long_examples_fail_or_are_truncated() {
        let Some((tok, tmpl)) = smollm() else { return };
        let format = TextFormat {
            tokenizer: &tok,
            template: &tmpl,
        };
        let text = "{\"text\": \"a short one\"}\n{\"text\": \"one two three four five six seven eight nine ten\"}\n";
        let err = parse_jsonl("long.jsonl", text, format, &opts(5)).unwrap_err();
        match &err {
            DataError::TooLong { line, len, max, .. } => {
                assert_eq!((*line, *max), (2, 5));
                assert!(*len > 5);
            }
            other => panic!("{other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.starts_with("long.jsonl:2: example is")
                && msg.contains("maximum of 5")
                && msg.contains("--truncate"),
            "{msg}"
        );
        let cut = DataOptions {
            truncate: true,
            ..opts(5)
        };
        let ds = parse_jsonl("long.jsonl", text, format, &cut).unwrap();
        assert_eq!(ds.truncated, 1);
        assert_eq!(ds.examples[1].len(), 5);
        assert_eq!(ds.examples[1].n_trained(), 4);
    }

    #[test]
    fn raw_text_is_cut_into_sequences_predicting_every_token_once() {
        let Some((tok, _)) = smollm() else { return };
        let text = "It was the best of times, it was the worst of times, it was the age of wisdom.";
        let stream = tok.encode(text, false, true);
        let examples = text_examples(text, &tok, 4);
        // A last piece of one token predicts nothing and is dropped.
        let kept = if stream.len() % 4 == 1 {
            stream.len() - 1
        } else {
            stream.len()
        };
        assert_eq!(examples.len(), kept.div_ceil(4));
        let tokens: Vec<u32> = examples.iter().flat_map(|e| e.tokens.clone()).collect();
        assert_eq!(tokens, stream[..kept]);
        let labels: Vec<i32> = examples.iter().flat_map(|e| e.labels.clone()).collect();
        let expect: Vec<i32> = stream[1..]
            .iter()
            .map(|&t| t as i32)
            .chain([-1])
            .take(kept)
            .collect();
        assert_eq!(labels, expect);
        assert!(examples.iter().all(|e| e.len() <= 4));
    }

    #[test]
    fn holdout_split_is_seeded_and_disjoint() {
        let examples: Vec<Example> = (0..20u32)
            .map(|i| Example::from_targets(vec![i, i + 1], &[false, true]))
            .collect();
        let (train, eval) = split_holdout(examples.clone(), 0.1, 9).unwrap();
        assert_eq!((train.len(), eval.len()), (18, 2));
        let (train2, eval2) = split_holdout(examples.clone(), 0.1, 9).unwrap();
        assert_eq!((&train, &eval), (&train2, &eval2));
        assert!(eval.iter().all(|e| !train.contains(e)));
        assert_ne!(split_holdout(examples.clone(), 0.1, 10).unwrap().1, eval);
        let (all, none) = split_holdout(examples.clone(), 0.0, 9).unwrap();
        assert_eq!((all.len(), none.len()), (20, 0));
        assert!(split_holdout(examples.clone(), 1.0, 9).is_err());
        assert!(split_holdout(examples[..1].to_vec(), 0.5, 9).is_err());
    }

    #[test]
    fn example_targets_and_truncation() {
        let mut e = Example::from_targets(vec![5, 6, 7, 8], &[false, false, true, true]);
        assert_eq!(e.labels, [-1, 7, 8, -1]);
        e.truncate(3);
        assert_eq!(
            (e.tokens.as_slice(), e.labels.as_slice()),
            (&[5, 6, 7][..], &[-1, 7, -1][..])
        );
    }
}
