//! The two merge loops: BPE by merge rank (llama.cpp's `llm_tokenizer_bpe_session`) and
//! SentencePiece by token score (`llm_tokenizer_spm_session`). Both start from one
//! symbol per UTF-8 character and merge neighbours through a priority queue, skipping
//! queue entries whose symbols changed since they were pushed.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::ops::Range;

use super::unicode::utf8_len;

/// A symbol in the linked list: a byte span of the word, emptied when merged away.
#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// One symbol per UTF-8 character of `text` (a truncated last character stays whole).
fn symbols(text: &[u8]) -> Vec<Symbol> {
    let mut out = Vec::with_capacity(text.len());
    let mut offs = 0;
    while offs < text.len() {
        let len = utf8_len(text[offs]).min(text.len() - offs);
        let i = out.len();
        out.push(Symbol {
            start: offs,
            len,
            prev: i.checked_sub(1),
            next: None,
        });
        offs += len;
        if offs < text.len() {
            out[i].next = Some(i + 1);
        }
    }
    out
}

/// Merges `right` into `left` and relinks the list.
fn absorb(syms: &mut [Symbol], left: usize, right: usize) {
    syms[left].len += syms[right].len;
    syms[right].len = 0;
    syms[left].next = syms[right].next;
    if let Some(n) = syms[right].next {
        syms[n].prev = Some(left);
    }
}

/// The surviving symbols' spans, in order.
fn spans(syms: &[Symbol]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = if syms.is_empty() { None } else { Some(0) };
    while let Some(k) = i {
        if syms[k].len > 0 {
            out.push(syms[k].start..syms[k].start + syms[k].len);
        }
        i = syms[k].next;
    }
    out
}

/// BPE merge ranks, `tokenizer.ggml.merges` order (earlier = merged first).
#[derive(Debug, Default)]
pub(super) struct Merges {
    /// Key: left bytes, 0xFF, right bytes (0xFF never occurs in UTF-8).
    ranks: HashMap<Box<[u8]>, u32>,
}

fn pair_key(buf: &mut Vec<u8>, left: &[u8], right: &[u8]) {
    buf.clear();
    buf.extend_from_slice(left);
    buf.push(0xFF);
    buf.extend_from_slice(right);
}

impl Merges {
    /// Parses `"left right"` lines, split at the first space after the first byte; the
    /// first occurrence of a pair keeps its rank. Lines without a space are skipped.
    pub fn new(lines: &[String]) -> Merges {
        let mut ranks = HashMap::with_capacity(lines.len());
        let mut key = Vec::new();
        for (rank, line) in lines.iter().enumerate() {
            let b = line.as_bytes();
            let Some(sp) = b.iter().skip(1).position(|&c| c == b' ').map(|p| p + 1) else {
                continue;
            };
            pair_key(&mut key, &b[..sp], &b[sp + 1..]);
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            ranks.entry(key.clone().into_boxed_slice()).or_insert(rank);
        }
        Merges { ranks }
    }

    fn rank(&self, buf: &mut Vec<u8>, left: &[u8], right: &[u8]) -> Option<u32> {
        pair_key(buf, left, right);
        self.ranks.get(buf.as_slice()).copied()
    }

    /// Merges `word` pair by pair, lowest rank first (ties: leftmost first); returns
    /// the spans of the resulting symbols.
    pub fn apply(&self, word: &[u8]) -> Vec<Range<usize>> {
        let mut syms = symbols(word);
        // Reverse((rank, left, right, size)): pops the lowest rank, then the leftmost.
        let mut queue: BinaryHeap<Reverse<(u32, usize, usize, usize)>> = BinaryHeap::new();
        let mut buf = Vec::new();
        let push = |syms: &[Symbol],
                    queue: &mut BinaryHeap<_>,
                    buf: &mut Vec<u8>,
                    l: Option<usize>,
                    r: Option<usize>| {
            let (Some(l), Some(r)) = (l, r) else { return };
            let (a, b) = (syms[l], syms[r]);
            let left = &word[a.start..a.start + a.len];
            let right = &word[b.start..b.start + b.len];
            if let Some(rank) = self.rank(buf, left, right) {
                queue.push(Reverse((rank, l, r, a.len + b.len)));
            }
        };
        for i in 1..syms.len() {
            push(&syms, &mut queue, &mut buf, Some(i - 1), Some(i));
        }
        while let Some(Reverse((_, l, r, size))) = queue.pop() {
            // Stale: one side was merged since (llama.cpp compares the texts; a symbol
            // only changes by growing or emptying, so the lengths tell the same).
            if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != size {
                continue;
            }
            absorb(&mut syms, l, r);
            push(&syms, &mut queue, &mut buf, syms[l].prev, Some(l));
            push(&syms, &mut queue, &mut buf, Some(l), syms[l].next);
        }
        spans(&syms)
    }
}

/// A SentencePiece bigram in the queue: highest score first, then leftmost.
#[derive(Debug)]
struct SpmBigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for SpmBigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for SpmBigram {}
impl PartialOrd for SpmBigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for SpmBigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// SentencePiece merging of `text`: neighbours whose concatenation is a token merge,
/// highest score first. `lookup` gives a token's score if the bytes are a token.
pub(super) fn spm_merge(text: &[u8], lookup: impl Fn(&[u8]) -> Option<f32>) -> Vec<Range<usize>> {
    let mut syms = symbols(text);
    let mut queue = BinaryHeap::new();
    let push =
        |syms: &[Symbol], queue: &mut BinaryHeap<SpmBigram>, l: Option<usize>, r: Option<usize>| {
            let (Some(l), Some(r)) = (l, r) else { return };
            let size = syms[l].len + syms[r].len;
            // The right symbol follows the left one, so the pair is a contiguous span.
            if let Some(score) = lookup(&text[syms[l].start..syms[l].start + size]) {
                queue.push(SpmBigram {
                    score,
                    left: l,
                    right: r,
                    size,
                });
            }
        };
    for i in 1..syms.len() {
        push(&syms, &mut queue, Some(i - 1), Some(i));
    }
    while let Some(SpmBigram {
        left, right, size, ..
    }) = queue.pop()
    {
        if syms[left].len == 0 || syms[right].len == 0 || syms[left].len + syms[right].len != size {
            continue;
        }
        absorb(&mut syms, left, right);
        push(&syms, &mut queue, syms[left].prev, Some(left));
        push(&syms, &mut queue, Some(left), syms[left].next);
    }
    spans(&syms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpe_merges_by_rank() {
        let m = Merges::new(&["a b".into(), "b c".into(), "ab c".into()]);
        let spans = m.apply(b"abc");
        assert_eq!(spans, vec![0..3]);
        let spans = m.apply(b"bca");
        assert_eq!(spans, vec![0..2, 2..3]);
    }

    #[test]
    fn spm_prefers_high_scores() {
        let score = |t: &[u8]| match t {
            b"ab" => Some(1.0),
            b"bc" => Some(2.0),
            _ => None,
        };
        assert_eq!(spm_merge(b"abc", score), vec![0..1, 1..3]);
    }
}
