//! Evidence layer 3: the tokenizers. Vocabulary and merge overlap, whether shared tokens
//! keep their ids, and the special tokens.

use crate::checkpoint::Checkpoint;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// One special token of each model.
#[derive(Clone, Debug, Serialize)]
pub struct SpecialToken {
    /// `bos`, `eos`, …
    pub kind: &'static str,
    /// The token's text in A, if A has one.
    pub a: Option<String>,
    /// The token's text in B.
    pub b: Option<String>,
}

/// The tokenizer layer of the report.
#[derive(Clone, Debug, Serialize)]
pub struct TokenizerReport {
    /// Tokenizer kind of A (`gpt2`, `llama`, …) and its pre-tokenizer.
    pub kind_a: String,
    /// Tokenizer kind of B.
    pub kind_b: String,
    /// Vocabulary sizes.
    pub vocab_a: usize,
    /// Vocabulary size of B.
    pub vocab_b: usize,
    /// Tokens (as stored) present in both.
    pub shared_tokens: usize,
    /// |A ∩ B| / |A ∪ B| of the token strings.
    pub vocab_jaccard: f64,
    /// The same for BPE merges, when both have merges.
    pub merges_jaccard: Option<f64>,
    /// Of the shared tokens, the fraction with the same id in both.
    pub same_id_fraction: f64,
    /// Special tokens side by side.
    pub specials: Vec<SpecialToken>,
    /// Same tokens in the same order (and same merges): token ids mean the same in both.
    pub identical: bool,
}

fn jaccard(a: &[&str], b: &[&str]) -> (usize, f64) {
    let sa: HashSet<&str> = a.iter().copied().collect();
    let sb: HashSet<&str> = b.iter().copied().collect();
    let inter = sa.intersection(&sb).count();
    let union = sa.len() + sb.len() - inter;
    (
        inter,
        if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        },
    )
}

fn special(c: &Checkpoint, key: &str, tokens: &[&str]) -> Option<String> {
    let id = c.file.get(key)?.as_u64()? as usize;
    tokens.get(id).map(|s| s.to_string())
}

/// Compares the tokenizers stored in `a` and `b`.
pub fn compare(a: &Checkpoint, b: &Checkpoint) -> TokenizerReport {
    let ta = a.strings("tokenizer.ggml.tokens").unwrap_or_default();
    let tb = b.strings("tokenizer.ggml.tokens").unwrap_or_default();
    let ma = a.strings("tokenizer.ggml.merges");
    let mb = b.strings("tokenizer.ggml.merges");
    let (shared_tokens, vocab_jaccard) = jaccard(&ta, &tb);
    let merges_jaccard = match (&ma, &mb) {
        (Some(x), Some(y)) => Some(jaccard(x, y).1),
        _ => None,
    };
    let ids_b: HashMap<&str, usize> = tb.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut same = 0usize;
    let mut shared = 0usize;
    for (i, t) in ta.iter().enumerate() {
        if let Some(&j) = ids_b.get(t) {
            shared += 1;
            same += usize::from(i == j);
        }
    }
    let kinds = ["bos", "eos", "unknown", "padding", "eot"];
    let specials = kinds
        .iter()
        .map(|k| {
            let key = format!("tokenizer.ggml.{k}_token_id");
            SpecialToken {
                kind: k,
                a: special(a, &key, &ta),
                b: special(b, &key, &tb),
            }
        })
        .filter(|s| s.a.is_some() || s.b.is_some())
        .collect();
    let kind = |c: &Checkpoint| {
        let model = c
            .string("tokenizer.ggml.model")
            .unwrap_or_else(|| "?".into());
        match c.string("tokenizer.ggml.pre") {
            Some(pre) => format!("{model} ({pre})"),
            None => model,
        }
    };
    let identical = !ta.is_empty() && ta == tb && ma == mb;
    TokenizerReport {
        kind_a: kind(a),
        kind_b: kind(b),
        vocab_a: ta.len(),
        vocab_b: tb.len(),
        shared_tokens,
        vocab_jaccard,
        merges_jaccard,
        same_id_fraction: if shared == 0 {
            0.0
        } else {
            same as f64 / shared as f64
        },
        specials,
        identical,
    }
}

/// Pairs of ids `(id in A, id in B)` of the tokens both vocabularies store with the same
/// text, in A's id order.
pub fn shared_ids(a: &Checkpoint, b: &Checkpoint) -> Vec<(usize, usize)> {
    let ta = a.strings("tokenizer.ggml.tokens").unwrap_or_default();
    let tb = b.strings("tokenizer.ggml.tokens").unwrap_or_default();
    let ids_b: HashMap<&str, usize> = tb.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    ta.iter()
        .enumerate()
        .filter_map(|(i, t)| ids_b.get(t).map(|&j| (i, j)))
        .collect()
}
