//! Requests to tokens, as lm-evaluation-harness encodes them: a context's trailing spaces
//! move to the continuation, the continuation's tokens are those of `context +
//! continuation` past the context's own tokens (so merges across the boundary count as
//! the continuation's), and a model that wants a BOS token gets one in front.

use huarizo_engine::Tokenizer;

/// The token that starts every sequence: BOS when the model adds one, else the end of
/// text token (lm-eval's `prefix_token_id`).
pub fn prefix_token(tok: &Tokenizer) -> Option<u32> {
    if tok.add_bos() {
        tok.bos()
    } else {
        tok.eos().or(tok.bos())
    }
}

/// Tokens of `text` without special tokens (BOS is handled by the callers).
pub fn encode(tok: &Tokenizer, text: &str) -> Vec<u32> {
    tok.encode(text, false, false)
}

/// `(context tokens, continuation tokens)` of a loglikelihood request. The context
/// starts with BOS when the model adds one; an empty context is the prefix token alone.
pub fn encode_pair(tok: &Tokenizer, context: &str, continuation: &str) -> (Vec<u32>, Vec<u32>) {
    let trimmed = context.trim_end_matches(' ');
    let n_spaces = context.len() - trimmed.len();
    let (context, continuation) = if n_spaces > 0 {
        (
            trimmed,
            format!("{}{continuation}", &context[trimmed.len()..]),
        )
    } else {
        (context, continuation.to_string())
    };
    let mut ctx: Vec<u32> = Vec::new();
    if let Some(bos) = tok.bos().filter(|_| tok.add_bos()) {
        ctx.push(bos);
    }
    if context.is_empty() {
        if ctx.is_empty() {
            ctx.extend(prefix_token(tok));
        }
        return (ctx, encode(tok, &continuation));
    }
    let whole = encode(tok, &format!("{context}{continuation}"));
    let context_only = encode(tok, context);
    let split = context_only.len().min(whole.len());
    ctx.extend_from_slice(&whole[..split]);
    (ctx, whole[split..].to_vec())
}

/// lm-eval's rolling windows over `tokens` for a model that reads `max_len` tokens:
/// `(input tokens, index of the first scored one)`. Every token is scored once; the first
/// window starts with the prefix token, later ones with as much preceding text as fits.
pub fn rolling_windows(tokens: &[u32], prefix: u32, max_len: usize) -> Vec<(Vec<u32>, usize)> {
    let max_len = max_len.max(1);
    let mut out = Vec::new();
    if tokens.is_empty() {
        return out;
    }
    let first = max_len.min(tokens.len());
    let mut window = vec![prefix];
    window.extend_from_slice(&tokens[..first]);
    out.push((window, 1));
    let mut predicted = first;
    while predicted < tokens.len() {
        let n = (tokens.len() - predicted).min(max_len);
        let end = predicted + n;
        let start = end.saturating_sub(max_len + 1);
        // Input tokens[start..end-1] predicts tokens[end-n..end]: context is
        // tokens[start..end-n].
        out.push((tokens[start..end].to_vec(), end - n - start));
        predicted = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rolling_windows;

    #[test]
    fn rolling_windows_score_every_token_once_with_full_context() {
        let tokens: Vec<u32> = (10..31).collect(); // 21 tokens
        let w = rolling_windows(&tokens, 1, 8);
        let scored: Vec<u32> = w.iter().flat_map(|(t, from)| t[*from..].to_vec()).collect();
        assert_eq!(scored, tokens);
        assert_eq!(w[0].0[0], 1);
        for (t, _) in &w[1..] {
            assert_eq!(t.len(), 9, "max_len inputs plus the last scored token");
        }
    }
}
