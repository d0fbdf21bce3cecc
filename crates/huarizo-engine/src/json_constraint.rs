//! JSON / JSON-schema constrained decoding on top of `llguidance`.
//!
//! Used for the OpenAI `response_format` modes `{"type":"json_object"}` and
//! `{"type":"json_schema", ...}`. Per decoding step the caller does:
//!
//! ```text
//! constraint.mask(&mut logits)?;      // disallowed tokens -> -inf
//! let tok = sample(&logits);
//! constraint.accept(tok)?;            // advance
//! if constraint.is_complete() { stop } // document closed, nothing may follow
//! ```
//!
//! Design notes:
//! * The vocabulary is given as raw bytes per token (GPT-2 byte-unicode already
//!   decoded by the caller). Special tokens are prefixed internally with the
//!   0xFF marker byte, so they can never be produced as JSON text; EOS tokens
//!   are always treated as special and are only allowed once the document is
//!   complete (for a JSON object the document is complete right after the
//!   closing `}`; [`JsonConstraint::is_complete`] is then true and the caller
//!   should stop without sampling EOS).
//! * Untrusted schemas never panic: llguidance catches panics internally and
//!   the compile step is additionally wrapped in `catch_unwind` (this needs
//!   `panic = "unwind"`, the default). A client supplied `x-guidance` key is
//!   replaced by our own options.
//! * The tokenizer is treated as non-canonical: llguidance allows any
//!   tokenization of the forced bytes (e.g. property names), not just the one
//!   the model's tokenizer would produce.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use anyhow::{anyhow, bail, ensure, Result};
use llguidance::api::{StopReason, TopLevelGrammar};
use llguidance::toktrie::{
    ApproximateTokEnv, SimpleVob, TokRxInfo, TokTrie, TokenId, TokenizerEnv,
};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};

/// Whitespace policy between JSON tokens (never before the first `{` or after the
/// final `}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whitespace {
    /// Compact JSON only (`{"a":1,"b":[2,3]}`).
    Compact,
    /// Up to `max_run` bytes of JSON whitespace (space, `\n`, `\r`, `\t`) at each
    /// place where JSON allows whitespace. Bounded so a model cannot loop on spaces.
    Flexible {
        /// Longest allowed whitespace run (>= 1).
        max_run: usize,
    },
}

impl Default for Whitespace {
    /// Flexible, up to 24 bytes per run: enough for pretty-printing (newline plus
    /// indentation) a few levels deep.
    fn default() -> Self {
        Whitespace::Flexible { max_run: 24 }
    }
}

/// Built once per model: the vocabulary as raw token bytes plus the llguidance
/// tokenizer state (token trie and precomputed lexer slices). Cheap to clone and
/// `Send + Sync`, so one instance can serve all requests.
#[derive(Clone)]
pub struct ConstraintVocab {
    factory: Arc<ParserFactory>,
    vocab_size: usize,
    eos_tokens: Arc<[TokenId]>,
}

impl ConstraintVocab {
    /// Builds the vocabulary.
    ///
    /// * `token_bytes[i]`: raw bytes of token `i` (what detokenization emits for it).
    ///   Must be exactly what the server appends to the output for that token.
    /// * `special[i]`: true for control tokens (chat markers, BOS/EOS, ...); they are
    ///   never allowed inside the JSON text.
    /// * `eos_tokens`: end-of-generation tokens (at least one); allowed only when
    ///   the document is complete.
    pub fn new(
        token_bytes: Vec<Vec<u8>>,
        special: Vec<bool>,
        eos_tokens: Vec<u32>,
    ) -> Result<Self> {
        let n = token_bytes.len();
        ensure!(n > 0, "empty vocabulary");
        ensure!(n < u32::MAX as usize, "vocabulary too large");
        ensure!(
            special.len() == n,
            "special flags ({}) and tokens ({}) differ in length",
            special.len(),
            n
        );
        ensure!(!eos_tokens.is_empty(), "at least one EOS token is required");
        if let Some(&bad) = eos_tokens.iter().find(|&&t| t as usize >= n) {
            bail!("EOS token {bad} is outside the vocabulary of {n} tokens");
        }
        let words: Vec<Vec<u8>> = token_bytes
            .into_iter()
            .enumerate()
            .map(|(i, mut b)| {
                let is_special = special[i] || eos_tokens.contains(&(i as u32));
                if is_special && !b.is_empty() && b[0] != TokTrie::SPECIAL_TOKEN_MARKER {
                    b.insert(0, TokTrie::SPECIAL_TOKEN_MARKER);
                }
                b
            })
            .collect();
        let info = TokRxInfo::new(n as u32, eos_tokens[0]);
        let factory = catch_unwind(AssertUnwindSafe(|| -> Result<ParserFactory> {
            let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos_tokens);
            let env: Arc<dyn TokenizerEnv + Sync> = Arc::new(ApproximateTokEnv::new(trie));
            let mut f = ParserFactory::new_simple(&env)?;
            f.quiet();
            Ok(f)
        }))
        .map_err(|_| anyhow!("llguidance panicked while building the token trie"))??;
        Ok(Self {
            factory: Arc::new(factory),
            vocab_size: n,
            eos_tokens: eos_tokens.into(),
        })
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn token_bytes(&self, t: TokenId) -> &[u8] {
        self.factory.tok_env().tok_trie().token(t)
    }
}

/// Nesting tracker over the emitted bytes, used by [`JsonConstraint::mask_closing`].
#[derive(Debug, Clone, Copy, Default)]
struct Nesting {
    depth: i32,
    in_string: bool,
    escape: bool,
    /// The last byte (outside strings) belongs to a number/literal that may go on.
    in_scalar: bool,
}

impl Nesting {
    /// Feeds bytes; returns the number of structural commas among them.
    fn feed(&mut self, bytes: &[u8]) -> i64 {
        let mut commas = 0;
        for &b in bytes {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else {
                self.in_scalar = b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-');
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => self.depth -= 1,
                    b',' => commas += 1,
                    _ => {}
                }
            }
        }
        commas
    }

    /// How many things are still open (containers, string, escape).
    fn open(&self) -> i32 {
        self.depth + self.in_string as i32 + self.escape as i32
    }
}

/// One request's constraint: a JSON document, optionally matching a JSON schema.
pub struct JsonConstraint {
    matcher: Matcher,
    vocab: ConstraintVocab,
    nesting: Nesting,
    /// Mask computed in `new`, valid until the first `accept`.
    first_mask: Option<SimpleVob>,
}

impl JsonConstraint {
    /// Creates the constraint with the default [`Whitespace`] policy.
    /// `schema = None` means any JSON object (`json_object` mode).
    pub fn new(vocab: &ConstraintVocab, schema: Option<&Value>) -> Result<Self> {
        Self::with_whitespace(vocab, schema, Whitespace::default())
    }

    /// Creates the constraint. Errors (never panics) on schemas that are invalid
    /// or use features llguidance does not support (e.g. `not`, `if/then/else`,
    /// `uniqueItems`, `contains`, remote `$ref`, `oneOf` that is not provably an
    /// `anyOf`, unknown `format`s, lookaround in `pattern`).
    pub fn with_whitespace(
        vocab: &ConstraintVocab,
        schema: Option<&Value>,
        ws: Whitespace,
    ) -> Result<Self> {
        let mut schema = match schema {
            None => json!({ "type": "object" }),
            Some(Value::Object(o)) => Value::Object(o.clone()),
            Some(Value::Bool(true)) => json!({}),
            Some(Value::Bool(false)) => bail!("invalid JSON schema: `false` matches nothing"),
            Some(_) => bail!("invalid JSON schema: the schema must be a JSON object"),
        };
        let opts = match ws {
            Whitespace::Compact => json!({ "whitespace_flexible": false }),
            Whitespace::Flexible { max_run } => json!({
                "whitespace_flexible": true,
                "whitespace_pattern": format!("[\\x20\\x0A\\x0D\\x09]{{1,{}}}", max_run.max(1)),
            }),
        };
        if let Value::Object(o) = &mut schema {
            // Only the top-level key is honoured by llguidance; a client-provided one
            // is replaced so clients cannot change whitespace/leniency options.
            o.insert("x-guidance".to_string(), opts);
        }
        let grammar = TopLevelGrammar::from_json_schema(schema);
        let factory = &vocab.factory;
        let parser = catch_unwind(AssertUnwindSafe(|| factory.create_parser(grammar)))
            .map_err(|_| anyhow!("unsupported JSON schema (schema compiler panicked)"))?
            .map_err(|e| {
                anyhow!(
                    "unsupported or invalid JSON schema: {}",
                    short(&e.to_string())
                )
            })?;
        let mut matcher = Matcher::new(Ok(parser));
        // The first mask also catches schemas that compile but admit no document
        // (e.g. a `$ref` cycle); it is kept for the first `mask` call.
        let first_mask = matcher
            .compute_mask()
            .map_err(|e| anyhow!("JSON schema admits no document: {}", short(&e.to_string())))?;
        Ok(Self {
            matcher,
            vocab: vocab.clone(),
            nesting: Nesting::default(),
            first_mask: Some(first_mask),
        })
    }

    /// Sets the logits of all tokens that cannot continue a valid document to
    /// `-inf`. EOS is allowed only when the document so far is complete. Entries
    /// beyond the vocabulary (padded logits) are always disallowed.
    ///
    /// Errors if the constraint is in an error state (the request should then
    /// be aborted).
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let allowed = self.allowed()?;
        apply(&allowed, logits);
        Ok(())
    }

    /// Like [`mask`](Self::mask), but additionally keeps only the allowed tokens
    /// that leave the fewest open strings/arrays/objects (ties: not extending a
    /// number/literal, then fewest commas, i.e. new items), never pure
    /// whitespace unless nothing else is allowed, and only EOS once EOS is
    /// allowed. Use it for the last tokens of the budget (see
    /// [`estimate_closing_tokens`](Self::estimate_closing_tokens)) to steer the
    /// output to a closed, valid document instead of a truncated one. A
    /// heuristic: the model's logits still choose among the kept tokens.
    /// Cost: one extra pass over the allowed tokens (up to ~1 ms at 49k tokens,
    /// ~5-10 ms at 152k-262k tokens while inside a string).
    pub fn mask_closing(&mut self, logits: &mut [f32]) -> Result<()> {
        let mut allowed = self.allowed()?;
        closing_filter(&self.vocab, self.nesting, &mut allowed);
        apply(&allowed, logits);
        Ok(())
    }

    /// Estimates how many tokens [`mask_closing`](Self::mask_closing) needs to
    /// finish the document from the current state, by a dry run on a copy
    /// (deterministic pseudo-random choice among the kept tokens each step).
    /// Errors if it does not finish within `limit` tokens. Cost: one closing
    /// mask per counted token (~1-3 ms in total for typical schemas), so call it
    /// once per request, right after `new`, and switch to `mask_closing` when
    /// the remaining budget drops to about `estimate + 16` (`2 * estimate + 16`
    /// is safer for deeply nested schemas).
    pub fn estimate_closing_tokens(&self, limit: usize) -> Result<usize> {
        let mut m = self.matcher.clone();
        let mut nesting = self.nesting;
        let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
        for n in 0..=limit {
            if m.is_stopped() {
                if let Some(e) = m.get_error() {
                    bail!("JSON constraint failed: {}", short(&e));
                }
                return Ok(n);
            }
            let mut allowed = m
                .compute_mask()
                .map_err(|e| anyhow!("JSON constraint failed: {}", short(&e.to_string())))?;
            if self.vocab.eos_tokens.iter().any(|&e| allowed.is_allowed(e)) {
                return Ok(n + 1);
            }
            closing_filter(&self.vocab, nesting, &mut allowed);
            // pseudo-random pick among the kept tokens (a fixed choice can loop
            // forever, e.g. `-0.000...` when the grammar needs a nonzero digit)
            let kept = allowed.to_list();
            ensure!(!kept.is_empty(), "no token allowed");
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let t = kept[(rng % kept.len() as u64) as usize];
            m.consume_token(t)
                .map_err(|e| anyhow!("JSON constraint failed: {}", short(&e.to_string())))?;
            nesting.feed(self.vocab.token_bytes(t));
        }
        bail!("document cannot be closed within {limit} tokens")
    }

    /// Advances the constraint by the sampled token. Errors (leaving the state
    /// unchanged) if the token was not allowed by the last mask.
    pub fn accept(&mut self, token: u32) -> Result<()> {
        ensure!(
            (token as usize) < self.vocab.vocab_size,
            "token {token} is outside the vocabulary"
        );
        let is_eos = self.vocab.eos_tokens.contains(&token);
        self.first_mask = None;
        if self.matcher.is_stopped() {
            if let Some(e) = self.matcher.get_error() {
                bail!("JSON constraint failed: {}", short(&e));
            }
            ensure!(
                is_eos,
                "JSON document is already complete; only EOS may follow"
            );
            return Ok(());
        }
        let n = self
            .matcher
            .try_consume_tokens(&[token])
            .map_err(|e| anyhow!("JSON constraint failed: {}", short(&e.to_string())))?;
        ensure!(
            n == 1,
            "token {token} is not allowed by the JSON constraint"
        );
        if !is_eos {
            self.nesting.feed(self.vocab.token_bytes(token));
        }
        Ok(())
    }

    /// True when the document is complete and nothing more may follow (after
    /// the final `}` of an object, or after EOS was accepted). The caller stops.
    pub fn is_complete(&self) -> bool {
        matches!(
            self.matcher.stop_reason(),
            StopReason::NoExtension | StopReason::EndOfSentence
        )
    }

    /// True when the output so far is a complete valid document (EOS would be
    /// allowed), even if it could still be extended (e.g. a top-level number).
    /// Useful to decide whether output cut by `max_tokens` is still valid.
    pub fn is_accepting(&mut self) -> bool {
        self.is_complete() || self.matcher.is_accepting().unwrap_or(false)
    }

    fn allowed(&mut self) -> Result<SimpleVob> {
        if let Some(m) = &self.first_mask {
            return Ok(m.clone());
        }
        if let Some(e) = self.matcher.get_error() {
            bail!("JSON constraint failed: {}", short(&e));
        }
        self.matcher
            .compute_mask_or_eos()
            .map_err(|e| anyhow!("JSON constraint failed: {}", short(&e.to_string())))
    }
}

/// Keeps only the allowed tokens that best move towards closing the document
/// (see [`JsonConstraint::mask_closing`]).
fn closing_filter(vocab: &ConstraintVocab, nesting: Nesting, allowed: &mut SimpleVob) {
    if let Some(&eos) = vocab.eos_tokens.iter().find(|&&e| allowed.is_allowed(e)) {
        allowed.set_all(false);
        allowed.allow_token(eos);
        return;
    }
    let mut best = i64::MAX;
    let mut scores: Vec<(u32, i64)> = Vec::new();
    allowed.iter_set_entries(|t| {
        let bytes = vocab.token_bytes(t as u32);
        let mut n = nesting;
        let commas = n.feed(bytes);
        // Whitespace between JSON tokens never makes progress: only as a last
        // resort. Otherwise fewest open things; then prefer ending a value over
        // extending a number/literal (digits could go on forever), and that over
        // starting new items (`}` beats `},`).
        let ws_only = !n.in_string && bytes.iter().all(|b| b.is_ascii_whitespace());
        let s = if ws_only {
            i64::MAX
        } else {
            ((n.open() as i64) << 16) + 0x100 * n.in_scalar as i64 + commas.min(0xff)
        };
        best = best.min(s);
        scores.push((t as u32, s));
    });
    for (t, s) in scores {
        if s > best {
            allowed.disallow_token(t);
        }
    }
}

/// Writes -inf to every logit whose bit is not set in `allowed`.
fn apply(allowed: &SimpleVob, logits: &mut [f32]) {
    let words = allowed.as_slice();
    let n = allowed.len().min(logits.len());
    for (w, chunk) in logits[..n].chunks_mut(32).enumerate() {
        let bits = words[w];
        if bits == u32::MAX {
            continue;
        }
        for (b, l) in chunk.iter_mut().enumerate() {
            if bits & (1 << b) == 0 {
                *l = f32::NEG_INFINITY;
            }
        }
    }
    for l in &mut logits[n..] {
        *l = f32::NEG_INFINITY;
    }
}

/// llguidance's verbose errors may include parser state; keep messages short
/// and on one line.
fn short(s: &str) -> String {
    const MAX: usize = 400;
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.len() <= MAX {
        return one_line;
    }
    let mut end = MAX;
    while !one_line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &one_line[..end])
}

/// A [`JsonConstraint`] with a token budget: when the tokens left come close to what
/// closing the document needs, only closing tokens are allowed, so that output cut by
/// `max_tokens` still parses when the budget allows it at all.
pub struct JsonOutput {
    inner: JsonConstraint,
    budget: usize,
    used: usize,
    reserve: usize,
}

impl JsonOutput {
    /// The constraint for a generation of at most `budget` tokens.
    pub fn new(vocab: &ConstraintVocab, schema: Option<&Value>, budget: usize) -> Result<Self> {
        let inner = JsonConstraint::new(vocab, schema)?;
        let estimate = inner.estimate_closing_tokens(4096).unwrap_or(0);
        Ok(JsonOutput {
            inner,
            budget,
            used: 0,
            reserve: 2 * estimate + 16,
        })
    }
}

impl crate::TokenConstraint for JsonOutput {
    fn mask(&mut self, logits: &mut [f32]) -> std::result::Result<(), String> {
        let left = self.budget.saturating_sub(self.used);
        let r = if left <= self.reserve {
            self.inner.mask_closing(logits)
        } else {
            self.inner.mask(logits)
        };
        r.map_err(|e| format!("structured output: {e}"))
    }

    fn accept(&mut self, token: u32) -> std::result::Result<(), String> {
        self.used += 1;
        self.inner
            .accept(token)
            .map_err(|e| format!("structured output: {e}"))
    }

    fn is_complete(&self) -> bool {
        self.inner.is_complete()
    }
}

/// Forces `prefix` token by token, then a JSON document (as [`JsonOutput`]), then `suffix`:
/// how a tool call (`<tool_call>\n{…}\n</tool_call>`) is made mandatory.
pub struct FramedJson {
    prefix: Vec<u32>,
    json: JsonOutput,
    suffix: Vec<u32>,
    /// Tokens of prefix + suffix accepted so far.
    forced: usize,
}

impl FramedJson {
    /// The constraint: `prefix`, a document valid against `schema`, `suffix`.
    pub fn new(
        vocab: &ConstraintVocab,
        prefix: Vec<u32>,
        schema: &Value,
        suffix: Vec<u32>,
        budget: usize,
    ) -> Result<Self> {
        let room = budget.saturating_sub(prefix.len() + suffix.len());
        Ok(FramedJson {
            json: JsonOutput::new(vocab, Some(schema), room)?,
            prefix,
            suffix,
            forced: 0,
        })
    }

    fn in_json(&self) -> bool {
        self.forced >= self.prefix.len() && !self.json.inner.is_complete()
    }

    /// The token that must come next, outside the JSON part.
    fn next_forced(&self) -> Option<u32> {
        if self.forced < self.prefix.len() {
            self.prefix.get(self.forced).copied()
        } else {
            self.suffix.get(self.forced - self.prefix.len()).copied()
        }
    }
}

impl crate::TokenConstraint for FramedJson {
    fn mask(&mut self, logits: &mut [f32]) -> std::result::Result<(), String> {
        if self.in_json() {
            return crate::TokenConstraint::mask(&mut self.json, logits);
        }
        let keep = self.next_forced();
        for (i, l) in logits.iter_mut().enumerate() {
            if Some(i as u32) != keep {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn accept(&mut self, token: u32) -> std::result::Result<(), String> {
        if self.in_json() {
            return crate::TokenConstraint::accept(&mut self.json, token);
        }
        match self.next_forced() {
            Some(t) if t == token => {
                self.forced += 1;
                Ok(())
            }
            _ => Err(format!(
                "structured output: token {token} is not the forced one"
            )),
        }
    }

    fn is_complete(&self) -> bool {
        self.forced >= self.prefix.len() + self.suffix.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_vocab() -> ConstraintVocab {
        // all single bytes + a few multi-byte tokens + an EOS control token
        let mut toks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for s in ["{\"", "\":", "\"}", "true", "null", "  "] {
            toks.push(s.as_bytes().to_vec());
        }
        toks.push(b"<|eos|>".to_vec());
        let n = toks.len();
        let mut special = vec![false; n];
        special[n - 1] = true;
        ConstraintVocab::new(toks, special, vec![(n - 1) as u32]).unwrap()
    }

    fn run(c: &mut JsonConstraint, vocab: &ConstraintVocab, text: &str) -> Result<()> {
        for &b in text.as_bytes() {
            let mut l = vec![0.0f32; vocab.vocab_size()];
            c.mask(&mut l)?;
            ensure!(l[b as usize].is_finite(), "byte {:?} masked", b as char);
            c.accept(b as u32)?;
        }
        Ok(())
    }

    #[test]
    fn json_object_mode() {
        let v = tiny_vocab();
        let mut c = JsonConstraint::new(&v, None).unwrap();
        let eos = (v.vocab_size() - 1) as u32;
        let mut l = vec![0.0f32; v.vocab_size()];
        c.mask(&mut l).unwrap();
        assert!(
            l[b'{' as usize].is_finite()
                && !l[b'[' as usize].is_finite()
                && !l[eos as usize].is_finite()
        );
        run(&mut c, &v, "{\"a\": [1, true, {\"b\": null}]").unwrap();
        assert!(!c.is_complete());
        run(&mut c, &v, "}").unwrap();
        assert!(c.is_complete());
        let mut l = vec![0.0f32; v.vocab_size() + 7];
        c.mask(&mut l).unwrap();
        let allowed: Vec<usize> = (0..l.len()).filter(|&i| l[i].is_finite()).collect();
        assert_eq!(allowed, vec![eos as usize]);
        c.accept(eos).unwrap();
        assert!(c.accept(b'x' as u32).is_err());
    }

    #[test]
    fn rejects_bad_token_without_breaking() {
        let v = tiny_vocab();
        let mut c = JsonConstraint::new(&v, None).unwrap();
        assert!(c.accept(b'x' as u32).is_err());
        assert!(c.accept(999_999).is_err());
        run(&mut c, &v, "{}").unwrap();
        assert!(c.is_complete());
    }

    #[test]
    fn schema_errors_do_not_panic() {
        let v = tiny_vocab();
        for s in [
            json!(5),
            json!(false),
            json!({"type": "object", "not": {"type": "string"}}),
            json!({"type": "string", "format": "no-such-format"}),
            json!({"$ref": "http://example.com/x.json"}),
            json!({"$ref": "#/$defs/missing"}),
            json!({"type": "strin"}),
            json!({"type": "string", "pattern": "(?=a)b"}),
            json!({"type": "string", "pattern": "(("}),
            json!({"type": "integer", "minimum": 5, "maximum": 2}),
            json!({"properties": 7}),
            json!({"x-guidance": {"lenient": true}, "not": {}}),
            json!({"type": "array", "uniqueItems": true}),
            json!({"type": "array", "contains": {"type": "integer"}}),
            json!({"if": {"type": "string"}, "then": {"minLength": 2}}),
            json!({"type": "object", "propertyNames": {"pattern": "^a"}}),
            json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
            json!({"$ref": "#/$defs/n", "$defs": {"n": {"$ref": "#/$defs/n"}}}),
        ] {
            let r = JsonConstraint::new(&v, Some(&s));
            assert!(r.is_err(), "{s} should be rejected");
            eprintln!("{s} -> {}", r.err().unwrap());
        }
    }

    #[test]
    fn whitespace_bound() {
        let v = tiny_vocab();
        let s =
            json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]});
        let mut c =
            JsonConstraint::with_whitespace(&v, Some(&s), Whitespace::Flexible { max_run: 3 })
                .unwrap();
        run(&mut c, &v, "{   \"a\"").unwrap();
        assert!(run(&mut c, &v, "    ").is_err());
        let mut c = JsonConstraint::with_whitespace(&v, Some(&s), Whitespace::Compact).unwrap();
        assert!(run(&mut c, &v, "{ ").is_err());
        let mut c = JsonConstraint::with_whitespace(&v, Some(&s), Whitespace::Compact).unwrap();
        run(&mut c, &v, "{\"a\":12}").unwrap();
        assert!(c.is_complete());
    }

    #[test]
    fn top_level_number_needs_eos() {
        let v = tiny_vocab();
        let eos = (v.vocab_size() - 1) as u32;
        let mut c = JsonConstraint::new(&v, Some(&json!({"type": "integer"}))).unwrap();
        run(&mut c, &v, "42").unwrap();
        assert!(!c.is_complete() && c.is_accepting());
        let mut l = vec![0.0f32; v.vocab_size()];
        c.mask_closing(&mut l).unwrap();
        assert_eq!(
            (0..l.len())
                .filter(|&i| l[i].is_finite())
                .collect::<Vec<_>>(),
            vec![eos as usize]
        );
        c.accept(eos).unwrap();
        assert!(c.is_complete());
    }

    #[test]
    fn closing_finishes_schema_document() {
        let v = tiny_vocab();
        let s = json!({
            "type": "object",
            "properties": {
                "n": {"type": "number", "minimum": -1, "maximum": 1},
                "s": {"type": "string"},
                "a": {"type": "array", "items": {"type": "integer"}}
            },
            "required": ["n", "s", "a"],
            "additionalProperties": false
        });
        let mut c = JsonConstraint::new(&v, Some(&s)).unwrap();
        run(&mut c, &v, "{\"n\": -0.0").unwrap();
        let est = c.estimate_closing_tokens(500).unwrap();
        assert!(est > 10, "{est}");
        let mut out = String::new();
        for _ in 0..500 {
            let mut l = vec![0.0f32; v.vocab_size()];
            c.mask_closing(&mut l).unwrap();
            // worst case for a fixed choice: always the last allowed token
            let t = (0..l.len()).rev().find(|&i| l[i].is_finite()).unwrap() as u32;
            c.accept(t).unwrap();
            out.push_str(&String::from_utf8_lossy(v.token_bytes(t)));
            if c.is_complete() {
                break;
            }
        }
        assert!(c.is_complete(), "{out}");
        let doc: Value = serde_json::from_str(&format!("{{\"n\": -0.0{out}")).unwrap();
        assert!(doc["a"].is_array(), "{doc}");
    }

    #[test]
    fn send_sync() {
        fn s<T: Send + Sync>() {}
        fn snd<T: Send>() {}
        s::<ConstraintVocab>();
        snd::<JsonConstraint>();
    }
}
