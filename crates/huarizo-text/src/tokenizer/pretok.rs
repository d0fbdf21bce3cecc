//! BPE pre-tokenizers: the regex lists of llama.cpp's `llm_tokenizer_bpe` and the way
//! `unicode_regex_split` applies them.
//!
//! Each expression splits every chunk the previous one produced; text a match does not
//! cover stays a chunk of its own. llama.cpp runs four expressions through hand-written
//! splitters (GPT-2, LLaMA 3, Qwen2, Qwen3.5) whose edge cases differ slightly from the
//! regexes they stand for (e.g. `\s+(?!\S)` at the end of a chunk); we mirror those
//! splitters. The rest run through `std::regex` on a "collapsed" text (every non-ASCII
//! code point replaced by a byte for its category); [`MiniRegex`] reproduces that for
//! the subset of syntax the supported pre-tokenizers use: classes, `\s`, `\p{..}`,
//! quantifiers and `$`, but no alternation or look-around.

use super::unicode::{cat, flags, Flags};

/// One compiled expression of a pre-tokenizer.
#[derive(Debug, Clone)]
pub(super) enum Splitter {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// LLaMA 3: `(?i:'s|..)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    Llama3,
    /// Qwen2: as LLaMA 3 with single digits (`\p{N}`).
    Qwen2,
    /// Qwen3.5: as Qwen2 with marks joining letters (`[\p{L}\p{M}]+`).
    Qwen35,
    /// `[^\n]+|[\n]+` (Gemma 4).
    Newlines,
    /// Anything else, through the small regex engine.
    Regex(MiniRegex),
}

const GPT2: &str = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN35: &str = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// Pre-tokenizer properties beyond the expressions (llama.cpp's per-`pre` switches).
#[derive(Debug, Clone, Copy)]
pub(super) struct PreSpec {
    /// The name llama.cpp groups it under (for `Debug` and errors).
    pub group: &'static str,
    /// Expressions in order, spelled exactly as in llama.cpp.
    pub exprs: &'static [&'static str],
    /// A word that is already a token skips the merges (`ignore_merges`).
    pub ignore_merges: bool,
    /// Default of `add_bos` when `tokenizer.ggml.add_bos_token` is absent.
    pub add_bos: bool,
    /// Words go through the GPT-2 byte mapping (false: raw UTF-8, `<0xXX>` fallback).
    pub byte_encode: bool,
    /// Spaces become `▁` before splitting (SPM-style BPE).
    pub escape_whitespace: bool,
    /// The BOS id is forced to none (ChatGLM).
    pub no_bos: bool,
}

const fn pre(group: &'static str, exprs: &'static [&'static str]) -> PreSpec {
    PreSpec {
        group,
        exprs,
        ignore_merges: false,
        add_bos: false,
        byte_encode: true,
        escape_whitespace: false,
        no_bos: false,
    }
}

const DEFAULT_EXPRS: &[&str] = &[
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    GPT2,
    "\\p{N}+",
    "[0-9][0-9][0-9]",
];
const LLAMA3_EXPRS: &[&str] = &[LLAMA3];
const QWEN2_EXPRS: &[&str] = &[QWEN2];
const GPT2_EXPRS: &[&str] = &[GPT2];
const STARCODER_EXPRS: &[&str] = &["\\p{N}", GPT2];
const FALCON_EXPRS: &[&str] = &["[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2, "[0-9][0-9][0-9]"];
const DEEPSEEK_LLM_EXPRS: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
    "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
    "\\s+$",
    "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+",
    "\\p{N}+",
];
const DEEPSEEK_CODER_EXPRS: &[&str] = &[
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+",
    "\\p{N}",
];
const NEWLINES_EXPRS: &[&str] = &["[^\\n]+|[\\n]+"];

/// The pre-tokenizer llama.cpp picks for `tokenizer.ggml.pre` (absent: "default");
/// `None` if we do not support the name (or llama.cpp does not know it).
pub(super) fn pre_spec(pre_name: Option<&str>) -> Option<PreSpec> {
    let name = pre_name.unwrap_or("default");
    let spec = match name {
        "default" => pre("default", DEFAULT_EXPRS),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => PreSpec {
            ignore_merges: true,
            add_bos: true,
            ..pre("llama3", LLAMA3_EXPRS)
        },
        "dbrx" => pre("dbrx", LLAMA3_EXPRS),
        "smaug-bpe" => pre("smaug", LLAMA3_EXPRS),
        "deepseek-llm" => pre("deepseek-llm", DEEPSEEK_LLM_EXPRS),
        "deepseek-coder" => pre("deepseek-coder", DEEPSEEK_CODER_EXPRS),
        "falcon" => pre("falcon", FALCON_EXPRS),
        "mpt" => pre("mpt", GPT2_EXPRS),
        "olmo" => pre("olmo", GPT2_EXPRS),
        "trillion" => pre("trillion", GPT2_EXPRS),
        "granite-docling" => pre("granite-docling", GPT2_EXPRS),
        "jais" => pre("jais", GPT2_EXPRS),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "exaone4" | "jina-v1-en" | "jina-v2-code"
        | "roberta-bpe" => pre("gpt2", GPT2_EXPRS),
        "starcoder" => pre("starcoder", STARCODER_EXPRS),
        "refact" => pre("refact", STARCODER_EXPRS),
        "command-r" => pre("command-r", STARCODER_EXPRS),
        "smollm" => pre("smollm", STARCODER_EXPRS),
        "codeshell" => pre("codeshell", STARCODER_EXPRS),
        "exaone" => pre("exaone", STARCODER_EXPRS),
        "minerva-7b" => pre("minerva", STARCODER_EXPRS),
        "mellum2" => pre("mellum2", STARCODER_EXPRS),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => pre("qwen2", QWEN2_EXPRS),
        "stablelm2" => pre("stablelm2", QWEN2_EXPRS),
        "hunyuan" => pre("hunyuan", QWEN2_EXPRS),
        "solar-open" => pre("solar-open", QWEN2_EXPRS),
        "qwen35" => pre("qwen35", &[QWEN35]),
        "chatglm-bpe" => PreSpec {
            no_bos: true,
            ..pre("chatglm4", LLAMA3_EXPRS)
        },
        "glm4" | "glm5" => PreSpec {
            no_bos: true,
            ignore_merges: true,
            ..pre("chatglm4", LLAMA3_EXPRS)
        },
        "gemma4" | "granite-embed-multi-311m" => PreSpec {
            byte_encode: false,
            escape_whitespace: true,
            ..pre("gemma4", NEWLINES_EXPRS)
        },
        _ => return None,
    };
    Some(spec)
}

/// The `pre` names [`pre_spec`] accepts, for error messages.
pub(super) const SUPPORTED_PRE: &str = "default, llama3/llama-bpe (and aliases), dbrx, smaug-bpe, \
deepseek-llm, deepseek-coder, falcon, mpt, olmo, gpt-2 (and aliases), starcoder, refact, \
command-r, smollm, codeshell, exaone, minerva-7b, mellum2, qwen2 (and aliases), stablelm2, hunyuan, \
solar-open, qwen35, chatglm-bpe, glm4, gemma4";

impl Splitter {
    /// Compiles one expression; `Err` carries the reason for the error message.
    pub fn new(expr: &str) -> Result<Splitter, String> {
        Ok(match expr {
            GPT2 => Splitter::Gpt2,
            LLAMA3 => Splitter::Llama3,
            QWEN2 => Splitter::Qwen2,
            QWEN35 => Splitter::Qwen35,
            "[^\\n]+|[\\n]+" => Splitter::Newlines,
            _ => Splitter::Regex(MiniRegex::new(expr)?),
        })
    }

    /// Splits each chunk (a length in code points) of `cpts` into smaller chunks.
    pub fn split(&self, cpts: &[u32], chunks: &[usize]) -> Vec<usize> {
        let mut out = Vec::with_capacity(chunks.len());
        let mut start = 0;
        for &len in chunks {
            let chunk = &cpts[start..start + len];
            match self {
                Splitter::Gpt2 => split_gpt2(chunk, &mut out),
                Splitter::Llama3 => split_llama3_family(chunk, Family::Llama3, &mut out),
                Splitter::Qwen2 => split_llama3_family(chunk, Family::Qwen2, &mut out),
                Splitter::Qwen35 => split_llama3_family(chunk, Family::Qwen35, &mut out),
                Splitter::Newlines => split_newlines(chunk, &mut out),
                Splitter::Regex(re) => re.split(chunk, &mut out),
            }
            start += len;
        }
        out
    }
}

/// Splits `text` by `splitters` in turn; returns the pieces as code-point ranges.
pub(super) fn split_words(cpts: &[u32], splitters: &[Splitter]) -> Vec<usize> {
    let mut chunks = vec![cpts.len()];
    if cpts.is_empty() {
        return Vec::new();
    }
    for s in splitters {
        chunks = s.split(cpts, &chunks);
    }
    chunks
}

/// A chunk with llama.cpp's bounds-checked accessors.
struct Chunk<'a> {
    cpts: &'a [u32],
    flags: Vec<Flags>,
}

/// Stands for llama.cpp's `OUT_OF_RANGE` code point.
const OUT: u32 = u32::MAX;

impl<'a> Chunk<'a> {
    fn new(cpts: &'a [u32]) -> Self {
        Chunk {
            cpts,
            flags: cpts.iter().map(|&c| flags(c)).collect(),
        }
    }
    fn cpt(&self, pos: usize) -> u32 {
        self.cpts.get(pos).copied().unwrap_or(OUT)
    }
    fn flags(&self, pos: usize) -> Flags {
        self.flags.get(pos).copied().unwrap_or(Flags::NONE)
    }
    fn len(&self) -> usize {
        self.cpts.len()
    }
}

/// Collects piece lengths, skipping empty ones (llama.cpp's `_add_token`).
struct Pieces<'o> {
    out: &'o mut Vec<usize>,
    prev_end: usize,
}

impl Pieces<'_> {
    /// Ends the current piece at `end`; returns its length.
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev_end;
        if len > 0 {
            self.out.push(len);
        }
        self.prev_end = end;
        len
    }
}

/// `'s|'t|'re|'ve|'m|'ll|'d` at `pos`, case-sensitive or not; the match length.
fn contraction(c: &Chunk, pos: usize, fold: bool) -> Option<usize> {
    if c.cpt(pos) != '\'' as u32 || pos + 1 >= c.len() {
        return None;
    }
    let low = |x: u32| {
        if fold && (b'A' as u32..=b'Z' as u32).contains(&x) {
            x + 32
        } else {
            x
        }
    };
    let n1 = low(c.cpt(pos + 1));
    if [b's', b't', b'm', b'd'].iter().any(|&b| n1 == b as u32) {
        return Some(2);
    }
    if pos + 2 < c.len() {
        let n2 = low(c.cpt(pos + 2));
        let pair = |a: u8, b: u8| n1 == a as u32 && n2 == b as u32;
        if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
            return Some(3);
        }
    }
    None
}

/// Shared tail of the custom splitters: white-space runs. Returns the new position.
fn whitespace_run(c: &Chunk, pos: usize, newline_rule: bool, p: &mut Pieces) -> usize {
    let mut n = 0;
    let mut last_rn_end = 0;
    while c.flags(pos + n).whitespace {
        let x = c.cpt(pos + n);
        if x == '\r' as u32 || x == '\n' as u32 {
            last_rn_end = pos + n + 1;
        }
        n += 1;
    }
    // \s*[\r\n]+
    if newline_rule && last_rn_end > 0 {
        p.add(last_rn_end);
        return last_rn_end;
    }
    // \s+(?!\S): keep the last blank for the next word, unless the chunk ends here.
    if n > 1 && c.cpt(pos + n) != OUT {
        let end = pos + n - 1;
        p.add(end);
        return end;
    }
    // \s+
    if n > 0 {
        p.add(pos + n);
        return pos + n;
    }
    // no match: one code point on its own
    p.add(pos + 1);
    pos + 1
}

fn split_gpt2(cpts: &[u32], out: &mut Vec<usize>) {
    let c = Chunk::new(cpts);
    let mut p = Pieces { out, prev_end: 0 };
    let mut pos = 0;
    while pos < c.len() {
        if let Some(n) = contraction(&c, pos, false) {
            pos += p.add(pos + n);
            continue;
        }
        let cpt = c.cpt(pos);
        let lead_space = cpt == ' ' as u32;
        let mut f2 = if lead_space {
            c.flags(pos + 1)
        } else {
            c.flags(pos)
        };
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
        let classes: [fn(Flags) -> bool; 3] = [
            |f| f.is_letter(),
            |f| f.is_number(),
            |f| !(f.whitespace || f.is_letter() || f.is_number()) && f.exists(),
        ];
        if let Some(class) = classes.iter().find(|class| class(f2)) {
            pos += lead_space as usize;
            while class(f2) {
                pos += 1;
                f2 = c.flags(pos);
            }
            p.add(pos);
            continue;
        }
        pos = whitespace_run(&c, pos, false, &mut p);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Llama3,
    Qwen2,
    Qwen35,
}

fn split_llama3_family(cpts: &[u32], family: Family, out: &mut Vec<usize>) {
    let c = Chunk::new(cpts);
    let mut p = Pieces { out, prev_end: 0 };
    let marks = family == Family::Qwen35;
    let wordish = |f: Flags| f.is_letter() || (marks && f.is_mark());
    let mut pos = 0;
    while pos < c.len() {
        if let Some(n) = contraction(&c, pos, true) {
            pos += p.add(pos + n);
            continue;
        }
        let cpt = c.cpt(pos);
        let f = c.flags(pos);
        // [^\r\n\p{L}\p{N}]?\p{L}+   (Qwen3.5: [\p{L}\p{M}]+)
        if !(cpt == '\r' as u32 || cpt == '\n' as u32 || f.is_number())
            && (wordish(f) || wordish(c.flags(pos + 1)))
        {
            pos += 1;
            while wordish(c.flags(pos)) {
                pos += 1;
            }
            p.add(pos);
            continue;
        }
        // \p{N}{1,3} (LLaMA 3) or \p{N}
        if f.is_number() {
            if family == Family::Llama3 {
                let mut ini = pos;
                while c.flags(pos).is_number() {
                    pos += 1;
                    if pos - ini >= 3 {
                        p.add(pos);
                        ini = pos;
                    }
                }
                p.add(pos);
            } else {
                pos += 1;
                p.add(pos);
            }
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`   (Qwen3.5 also excludes \p{M})
        let other =
            |g: Flags| !(g.whitespace || g.is_letter() || g.is_number() || (marks && g.is_mark()));
        let mut f2 = if cpt == ' ' as u32 {
            c.flags(pos + 1)
        } else {
            f
        };
        if other(f2) && f.exists() {
            pos += (cpt == ' ' as u32) as usize;
            while other(f2) && f2.exists() {
                pos += 1;
                f2 = c.flags(pos);
            }
            while c.cpt(pos) == '\r' as u32 || c.cpt(pos) == '\n' as u32 {
                pos += 1;
            }
            p.add(pos);
            continue;
        }
        pos = whitespace_run(&c, pos, true, &mut p);
    }
}

fn split_newlines(cpts: &[u32], out: &mut Vec<usize>) {
    let mut pos = 0;
    while pos < cpts.len() {
        let nl = cpts[pos] == '\n' as u32;
        let start = pos;
        while pos < cpts.len() && (cpts[pos] == '\n' as u32) == nl {
            pos += 1;
        }
        out.push(pos - start);
    }
}

/// One item of a character class.
#[derive(Debug, Clone)]
enum ClassItem {
    /// Inclusive code-point range (after llama.cpp's white-space substitution).
    Range(u32, u32),
    /// `\p{..}`: a general category.
    Category(u8),
    /// `\s`.
    Space,
}

/// A set of code points, possibly negated.
#[derive(Debug, Clone)]
struct Class {
    negated: bool,
    items: Vec<ClassItem>,
}

impl Class {
    fn matches(&self, cpt: u32, f: Flags) -> bool {
        // std::regex sees non-ASCII white space as \v (llama.cpp substitutes it).
        let eff = if cpt >= 0x80 && f.whitespace {
            0x0B
        } else {
            cpt
        };
        let hit = self.items.iter().any(|it| match *it {
            ClassItem::Range(a, b) => (a..=b).contains(&eff),
            ClassItem::Category(k) => f.category == k && eff == cpt,
            ClassItem::Space => f.whitespace,
        });
        hit != self.negated
    }
}

#[derive(Debug, Clone)]
enum Node {
    /// A class repeated `min..=max` times, greedily.
    Repeat {
        class: Class,
        min: usize,
        max: usize,
    },
    /// `$`: end of the chunk.
    End,
}

/// A backtracking matcher for the regex subset llama.cpp's non-custom pre-tokenizer
/// expressions use, with std::regex-on-collapsed-text semantics: `\s` is llama.cpp's
/// white space, `\p{X}` is a category, matching is leftmost and greedy.
#[derive(Debug, Clone)]
pub(super) struct MiniRegex {
    nodes: Vec<Node>,
}

impl MiniRegex {
    /// Parses `expr`; unsupported syntax is an error naming the offending character.
    pub fn new(expr: &str) -> Result<MiniRegex, String> {
        let chars: Vec<char> = expr.chars().collect();
        let mut nodes = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let class = match chars[i] {
                '[' => {
                    let (class, next) = parse_bracket(&chars, i + 1)?;
                    i = next;
                    class
                }
                '\\' => {
                    let (item, next) = parse_escape(&chars, i + 1)?;
                    i = next;
                    Class {
                        negated: false,
                        items: vec![item],
                    }
                }
                '$' => {
                    nodes.push(Node::End);
                    i += 1;
                    continue;
                }
                c @ ('(' | ')' | '|' | '.' | '^' | '*' | '+' | '?' | '{' | '}') => {
                    return Err(format!("unsupported regex syntax '{c}' in {expr:?}"));
                }
                c => {
                    i += 1;
                    Class {
                        negated: false,
                        items: vec![ClassItem::Range(c as u32, c as u32)],
                    }
                }
            };
            let (min, max, next) = parse_quantifier(&chars, i)?;
            i = next;
            nodes.push(Node::Repeat { class, min, max });
        }
        Ok(MiniRegex { nodes })
    }

    /// Greedy backtracking match of `nodes[k..]` at `pos`; the end of the match.
    fn match_at(&self, k: usize, syms: &[(u32, Flags)], pos: usize) -> Option<usize> {
        let Some(node) = self.nodes.get(k) else {
            return Some(pos);
        };
        match node {
            Node::End => (pos == syms.len()).then_some(pos),
            Node::Repeat { class, min, max } => {
                let mut n = 0;
                while n < *max
                    && pos + n < syms.len()
                    && class.matches(syms[pos + n].0, syms[pos + n].1)
                {
                    n += 1;
                }
                if n < *min {
                    return None;
                }
                (*min..=n)
                    .rev()
                    .find_map(|take| self.match_at(k + 1, syms, pos + take))
            }
        }
    }

    /// `std::regex_iterator` over one chunk: matches and the gaps between them.
    fn split(&self, cpts: &[u32], out: &mut Vec<usize>) {
        let syms: Vec<(u32, Flags)> = cpts.iter().map(|&c| (c, flags(c))).collect();
        let mut done = 0;
        let mut from = 0;
        while from < syms.len() {
            let found = (from..syms.len()).find_map(|s| self.match_at(0, &syms, s).map(|e| (s, e)));
            let Some((s, e)) = found else { break };
            if e == s {
                // Empty match (no supported expression has one); step over it.
                from = s + 1;
                continue;
            }
            if s > done {
                out.push(s - done);
            }
            out.push(e - s);
            done = e;
            from = e;
        }
        if done < syms.len() {
            out.push(syms.len() - done);
        }
    }
}

fn parse_escape(chars: &[char], i: usize) -> Result<(ClassItem, usize), String> {
    let c = *chars.get(i).ok_or("regex ends in a backslash")?;
    Ok(match c {
        's' => (ClassItem::Space, i + 1),
        'r' => (ClassItem::Range(13, 13), i + 1),
        'n' => (ClassItem::Range(10, 10), i + 1),
        't' => (ClassItem::Range(9, 9), i + 1),
        'p' if chars.get(i + 1) == Some(&'{') => {
            let close = chars[i..]
                .iter()
                .position(|&c| c == '}')
                .ok_or("unclosed \\p{")?
                + i;
            let name: String = chars[i + 2..close].iter().collect();
            let k = match name.as_str() {
                "N" => cat::NUMBER,
                "L" => cat::LETTER,
                "P" => cat::PUNCTUATION,
                "M" => cat::MARK,
                "S" => cat::SYMBOL,
                _ => return Err(format!("unsupported category \\p{{{name}}}")),
            };
            (ClassItem::Category(k), close + 1)
        }
        c if c.is_ascii_punctuation() => (ClassItem::Range(c as u32, c as u32), i + 1),
        c => return Err(format!("unsupported escape \\{c}")),
    })
}

/// Parses a bracket expression starting after `[`; returns the class and the index
/// after `]`.
fn parse_bracket(chars: &[char], mut i: usize) -> Result<(Class, usize), String> {
    let mut class = Class {
        negated: false,
        items: Vec::new(),
    };
    if chars.get(i) == Some(&'^') {
        class.negated = true;
        i += 1;
    }
    loop {
        let c = *chars.get(i).ok_or("unclosed '['")?;
        if c == ']' {
            return Ok((class, i + 1));
        }
        let (item, next) = if c == '\\' {
            parse_escape(chars, i + 1)?
        } else {
            (ClassItem::Range(c as u32, c as u32), i + 1)
        };
        i = next;
        // a range `x-y` (a '-' before ']' is literal)
        if let ClassItem::Range(lo, _) = item {
            if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
                let (hi, next) = if chars[i + 1] == '\\' {
                    parse_escape(chars, i + 2)?
                } else {
                    (
                        ClassItem::Range(chars[i + 1] as u32, chars[i + 1] as u32),
                        i + 2,
                    )
                };
                let ClassItem::Range(hi, _) = hi else {
                    return Err("class range ends in a class".into());
                };
                class.items.push(ClassItem::Range(lo, hi));
                i = next;
                continue;
            }
        }
        class.items.push(item);
    }
}

fn parse_quantifier(chars: &[char], i: usize) -> Result<(usize, usize, usize), String> {
    Ok(match chars.get(i) {
        Some('?') => (0, 1, i + 1),
        Some('+') => (1, usize::MAX, i + 1),
        Some('*') => (0, usize::MAX, i + 1),
        Some('{') => {
            let close = chars[i..]
                .iter()
                .position(|&c| c == '}')
                .ok_or("unclosed '{'")?
                + i;
            let body: String = chars[i + 1..close].iter().collect();
            let num = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("bad repeat {{{body}}}"))
            };
            let (min, max) = match body.split_once(',') {
                None => (num(&body)?, num(&body)?),
                Some((a, "")) => (num(a)?, usize::MAX),
                Some((a, b)) => (num(a)?, num(b)?),
            };
            (min, max, close + 1)
        }
        _ => (1, 1, i),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(exprs: &[&str], text: &str) -> Vec<String> {
        let splitters: Vec<Splitter> = exprs.iter().map(|e| Splitter::new(e).unwrap()).collect();
        let cpts: Vec<u32> = text.chars().map(u32::from).collect();
        let mut start = 0;
        split_words(&cpts, &splitters)
            .into_iter()
            .map(|n| {
                let s: String = cpts[start..start + n]
                    .iter()
                    .map(|&c| char::from_u32(c).unwrap())
                    .collect();
                start += n;
                s
            })
            .collect()
    }

    #[test]
    fn gpt2_splits_words_and_keeps_trailing_blank() {
        assert_eq!(
            pieces(GPT2_EXPRS, "Hello  world's 123!"),
            ["Hello", " ", " world", "'s", " 123", "!"]
        );
        assert_eq!(pieces(GPT2_EXPRS, "a   "), ["a", "   "]);
    }

    #[test]
    fn llama3_groups_digits_by_three() {
        assert_eq!(
            pieces(LLAMA3_EXPRS, "1234567 ok\n\n x"),
            ["123", "456", "7", " ok", "\n\n", " x"]
        );
    }

    #[test]
    fn mini_regex_isolates_matches() {
        assert_eq!(pieces(&["\\p{N}"], "ab12c"), ["ab", "1", "2", "c"]);
        assert_eq!(pieces(&["\\s+$"], "a  "), ["a", "  "]);
        assert_eq!(pieces(&["[0-9][0-9][0-9]"], "12345"), ["123", "45"]);
        assert!(MiniRegex::new("a|b").is_err());
    }
}
