//! Tokenizers that match llama.cpp token for token: byte-level BPE
//! (`tokenizer.ggml.model = "gpt2"`, with the pre-tokenizer `tokenizer.ggml.pre` names)
//! and SentencePiece (`"llama"`, as in LLaMA 1/2 and Gemma 3), plus Gemma 4's
//! SentencePiece-style BPE (`"gemma4"`).
//!
//! A [`Tokenizer`] is built from plain data, a [`VocabSpec`]; [`Tokenizer::from_gguf`]
//! only reads the `tokenizer.ggml.*` keys into one. Building applies llama.cpp's
//! `llama_vocab::load` rules: defaults per model kind, special ids out of range ignored,
//! end-of-generation tokens found by text, control attributes fixed up. Encoding follows
//! `llama_tokenize`: special-token texts are cut out first (always the user-defined
//! ones, control ones only with `parse_special`), the rest is pre-tokenized and merged.
//!
//! Other vocabularies (WordPiece `bert`, Unigram `t5`, `rwkv`, `plamo2`, …) are refused
//! with [`TextError::UnsupportedModel`].

mod gguf;
mod merge;
mod pretok;
mod unicode;
#[rustfmt::skip]
mod unicode_tables;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use merge::Merges;
use pretok::{PreSpec, Splitter};

/// Why a tokenizer could not be built. Every variant names the metadata key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A required key is absent.
    #[error("missing metadata key {key}")]
    MissingKey {
        /// The GGUF key.
        key: &'static str,
    },
    /// A key holds the wrong type.
    #[error("metadata key {key}: expected {expected}, got {got}")]
    WrongType {
        /// The GGUF key.
        key: &'static str,
        /// What llama.cpp reads there.
        expected: &'static str,
        /// The GGUF type found.
        got: String,
    },
    /// An array element holds the wrong type.
    #[error("metadata key {key}[{index}]: expected {expected}, got {got}")]
    WrongElement {
        /// The GGUF key.
        key: &'static str,
        /// Index of the element.
        index: usize,
        /// What llama.cpp reads there.
        expected: &'static str,
        /// The GGUF type found.
        got: String,
    },
    /// A per-token array is shorter than the token list.
    #[error("metadata key {key} has {got} entries for {expected} tokens")]
    TooShort {
        /// The GGUF key.
        key: &'static str,
        /// Number of tokens.
        expected: usize,
        /// Entries found.
        got: usize,
    },
    /// `tokenizer.ggml.tokens` is empty.
    #[error("metadata key tokenizer.ggml.tokens is empty")]
    EmptyVocab,
    /// A tokenizer kind we do not implement.
    #[error("tokenizer.ggml.model = {model:?} is not supported (supported: gpt2, llama, gemma4)")]
    UnsupportedModel {
        /// The value of `tokenizer.ggml.model`.
        model: String,
    },
    /// A BPE pre-tokenizer we do not implement.
    #[error("tokenizer.ggml.pre = {pre:?} is not supported (supported: {supported})")]
    UnsupportedPre {
        /// The value of `tokenizer.ggml.pre`.
        pre: String,
        /// The names we accept.
        supported: &'static str,
    },
    /// A pre-tokenizer expression our regex subset cannot run (a bug in the table).
    #[error("tokenizer.ggml.pre = {pre:?}: {reason}")]
    BadPreRegex {
        /// The value of `tokenizer.ggml.pre`.
        pre: String,
        /// What the regex compiler said.
        reason: String,
    },
}

/// The tokenizer's algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Byte-pair encoding by merge rank (llama.cpp `LLAMA_VOCAB_TYPE_BPE`).
    Bpe,
    /// SentencePiece BPE by token score with byte fallback (`LLAMA_VOCAB_TYPE_SPM`).
    Spm,
}

impl fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenizerKind::Bpe => "BPE",
            TokenizerKind::Spm => "SPM",
        })
    }
}

/// Everything a tokenizer is built from: the `tokenizer.ggml.*` metadata as plain data.
/// `None` means "key absent": llama.cpp's default for the model kind applies.
#[derive(Clone, Debug, Default)]
pub struct VocabSpec {
    /// `tokenizer.ggml.model`: `"gpt2"`, `"llama"`, `"gemma4"`, ….
    pub model: String,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer (absent: `"default"`).
    pub pre: Option<String>,
    /// `general.name`: llama.cpp keys a Phi-3 quirk on it.
    pub name: Option<String>,
    /// `tokenizer.ggml.tokens`, by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (SentencePiece merge priorities).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined,
    /// 5 unused, 6 byte (absent: all normal).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: `"left right"` pairs, highest priority first.
    pub merges: Option<Vec<String>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`.
    pub eot: Option<u32>,
    /// `tokenizer.ggml.eom_token_id`.
    pub eom: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<u32>,
    /// `tokenizer.ggml.seperator_token_id` (sic).
    pub sep: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<u32>,
    /// `tokenizer.ggml.fim_pad_token_id` (an end-of-generation token).
    pub fim_pad: Option<u32>,
    /// `tokenizer.ggml.fim_rep_token_id` (an end-of-generation token).
    pub fim_rep: Option<u32>,
    /// `tokenizer.ggml.fim_sep_token_id` (an end-of-generation token).
    pub fim_sep: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece: prepend a space).
    pub add_space_prefix: Option<bool>,
}

/// llama.cpp's token attributes (`llama_token_attr`), the bits we use.
mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;

    /// `tokenizer.ggml.token_type` value to attribute (unknown values: none).
    pub fn from_type(t: i32) -> u16 {
        match t {
            1 => NORMAL,
            2 => UNKNOWN,
            3 => CONTROL,
            4 => USER_DEFINED,
            5 => UNUSED,
            6 => BYTE,
            _ => 0,
        }
    }
}

/// Token texts llama.cpp treats as end of generation (`special_eog_ids`).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Texts llama.cpp uses to find the EOT token when no id is given.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// FIM prefix/suffix/middle: only found to be marked control (they are not EOG).
const FIM_OTHER_TEXTS: &[&[&str]] = &[
    &[
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
    ],
    &[
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
    ],
    &[
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
    ],
];

/// How BPE words are prepared and merged.
#[derive(Debug)]
struct BpeConfig {
    merges: Merges,
    splitters: Vec<Splitter>,
    spec: PreSpec,
    /// GPT-2 byte → character.
    byte_chars: [char; 256],
    /// GPT-2 character (below U+0144) → byte, or -1.
    char_bytes: Vec<i16>,
    /// Is this Gemma 4 (a whole run of newlines that is a token stays whole)?
    gemma4: bool,
}

/// A piece of the input: raw text (a byte range) or a special token cut out of it.
#[derive(Clone, Copy, Debug)]
enum Fragment {
    Text(usize, usize),
    Token(u32),
}

/// A tokenizer built from GGUF metadata; see the module docs.
pub struct Tokenizer {
    kind: TokenizerKind,
    pre: Option<String>,
    texts: Vec<String>,
    attrs: Vec<u16>,
    scores: Vec<f32>,
    to_id: HashMap<Box<[u8]>, u32>,
    bpe: Option<BpeConfig>,
    /// Control, user-defined and unknown tokens, longest text first.
    special: Vec<u32>,
    /// `token_to_piece(id, special = true)` for every id.
    pieces: Pieces,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    sep: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    eog: BTreeSet<u32>,
}

/// Byte strings by index, stored end to end: one allocation for a whole vocabulary's pieces
/// (a vector per piece took 30 bytes of headers and allocator overhead for each of a
/// 262,144-token vocabulary's few-byte pieces).
#[derive(Clone, Default)]
struct Pieces {
    bytes: Vec<u8>,
    /// Where piece i ends in `bytes` (it starts where piece i − 1 ends).
    ends: Vec<usize>,
}

impl Pieces {
    fn collect(pieces: impl Iterator<Item = Vec<u8>>) -> Pieces {
        let mut all = Pieces::default();
        for piece in pieces {
            all.bytes.extend_from_slice(&piece);
            all.ends.push(all.bytes.len());
        }
        all.bytes.shrink_to_fit();
        all.ends.shrink_to_fit();
        all
    }

    /// Piece `i`, or empty past the end.
    fn get(&self, i: usize) -> &[u8] {
        match self.ends.get(i) {
            Some(&end) => &self.bytes[i.checked_sub(1).map_or(0, |j| self.ends[j])..end],
            None => &[],
        }
    }
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("pre", &self.pre)
            .field("n_vocab", &self.texts.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .field("eog", &self.eog)
            .finish_non_exhaustive()
    }
}

/// C `isspace` on one byte (the "C" locale).
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// First occurrence of `needle` in `hay`.
fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let p = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?
            + i;
        if &hay[p + 1..p + needle.len()] == rest {
            return Some(p);
        }
        i = p + 1;
    }
    None
}

impl Tokenizer {
    /// Builds the tokenizer the way llama.cpp's `llama_vocab::load` does.
    pub fn from_spec(spec: VocabSpec) -> Result<Tokenizer, TextError> {
        let n = spec.tokens.len();
        if n == 0 {
            return Err(TextError::EmptyVocab);
        }
        let in_range = |id: u32| (id as usize) < n;

        // Model kind, its defaults, the pre-tokenizer.
        let (kind, mut pre_name) = match spec.model.as_str() {
            "llama" => (TokenizerKind::Spm, None),
            "gpt2" => (TokenizerKind::Bpe, spec.pre.clone()),
            "gemma4" => (TokenizerKind::Bpe, Some("gemma4".to_string())),
            other => {
                return Err(TextError::UnsupportedModel {
                    model: other.to_string(),
                })
            }
        };
        let (mut bos, mut eos, mut unk) = match (kind, spec.model.as_str()) {
            (TokenizerKind::Spm, _) => (Some(1), Some(2), Some(0)),
            (_, "gemma4") => (None, None, None),
            _ => (Some(11), Some(11), None),
        };
        let (mut add_bos, mut add_eos, mut add_space_prefix) = match kind {
            TokenizerKind::Spm => (true, false, true),
            TokenizerKind::Bpe => (false, false, false),
        };
        let bpe_spec = match kind {
            TokenizerKind::Spm => None,
            TokenizerKind::Bpe => {
                let spec_pre = pretok::pre_spec(pre_name.as_deref()).ok_or_else(|| {
                    TextError::UnsupportedPre {
                        pre: pre_name.clone().unwrap_or_default(),
                        supported: pretok::SUPPORTED_PRE,
                    }
                })?;
                add_bos = spec_pre.add_bos;
                if spec_pre.no_bos {
                    bos = None;
                }
                Some(spec_pre)
            }
        };
        if pre_name.is_none() && kind == TokenizerKind::Bpe {
            pre_name = Some("default".to_string());
        }
        if let Some(v) = spec.add_space_prefix {
            add_space_prefix = v;
        }

        // Tokens, scores, attributes.
        let mut texts = spec.tokens;
        for (i, t) in texts.iter_mut().enumerate() {
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
        }
        let scores = match spec.scores {
            Some(s) if s.len() < n => {
                return Err(TextError::TooShort {
                    key: "tokenizer.ggml.scores",
                    expected: n,
                    got: s.len(),
                })
            }
            Some(mut s) => {
                s.truncate(n);
                s
            }
            None => vec![0.0; n],
        };
        let mut attrs = match spec.token_types {
            Some(t) if t.len() < n => {
                return Err(TextError::TooShort {
                    key: "tokenizer.ggml.token_type",
                    expected: n,
                    got: t.len(),
                })
            }
            Some(t) => t[..n].iter().map(|&t| attr::from_type(t)).collect(),
            None => vec![attr::NORMAL; n],
        };
        let mut to_id: HashMap<Box<[u8]>, u32> = HashMap::with_capacity(n);
        for (i, t) in texts.iter().enumerate() {
            // A later duplicate wins, as in llama.cpp's `token_to_id[word] = i`.
            to_id.insert(t.as_bytes().into(), i as u32);
        }

        // Special ids: a given id out of range keeps the default.
        let pick = |given: Option<u32>, default: Option<u32>| match given {
            Some(id) if in_range(id) => Some(id),
            _ => default.filter(|&d| in_range(d)),
        };
        bos = pick(spec.bos, bos);
        eos = pick(spec.eos, eos);
        unk = pick(spec.unk, unk);
        let sep = pick(spec.sep, None);
        let pad = pick(spec.pad, None);
        let mut eot = pick(spec.eot, None);
        let mut eom = pick(spec.eom, None);
        let mut fim_pad = pick(spec.fim_pad, None);
        let mut fim_rep = pick(spec.fim_rep, None);
        let mut fim_sep = pick(spec.fim_sep, None);
        if let Some(v) = spec.add_bos {
            add_bos = v;
        }
        if let Some(v) = spec.add_eos {
            add_eos = v;
        }
        let gemma4 = bpe_spec.is_some_and(|s| s.group == "gemma4");
        if gemma4 {
            add_bos = true;
        }

        // Find unset EOT/EOM/FIM ids by text (lowest id first) and mark them control.
        let find_by_text = |slot: &mut Option<u32>, names: &[&str], attrs: &mut [u16]| {
            if slot.is_none() {
                if let Some(id) = names
                    .iter()
                    .filter_map(|t| to_id.get(t.as_bytes()).copied())
                    .min()
                {
                    *slot = Some(id);
                    attrs[id as usize] |= attr::CONTROL;
                }
            }
        };
        find_by_text(&mut eot, EOT_TEXTS, &mut attrs);
        find_by_text(&mut eom, &["<|eom_id|>"], &mut attrs);
        for names in FIM_OTHER_TEXTS {
            find_by_text(&mut None, names, &mut attrs);
        }
        find_by_text(&mut fim_pad, FIM_PAD_TEXTS, &mut attrs);
        find_by_text(&mut fim_rep, FIM_REP_TEXTS, &mut attrs);
        find_by_text(&mut fim_sep, FIM_SEP_TEXTS, &mut attrs);

        // End-of-generation set.
        let mut eog: BTreeSet<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for t in EOG_TEXTS {
            if let Some(&id) = to_id.get(t.as_bytes()) {
                eog.insert(id);
                attrs[id as usize] |= attr::CONTROL;
            }
        }
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = to_id.get(t.as_bytes()) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        let eog_has = |eog: &BTreeSet<u32>, text: &str| {
            eog.iter().copied().find(|&id| texts[id as usize] == text)
        };
        // gpt-oss / solar-open: "<|end|>" ends a message, not the generation.
        if let Some(end) = eog_has(&eog, "<|end|>") {
            let has = |t: &str| eog_has(&eog, t).is_some();
            let call = has("<|call|>") || has("<|calls|>");
            if call && (has("<|return|>") || has("<|flush|>")) {
                eog.remove(&end);
                attrs[end as usize] = attr::USER_DEFINED;
            }
        }
        // Gemma 4 / PLaMo: "</s>" is an ordinary token there.
        if let Some(s) = eog_has(&eog, "</s>") {
            if eog_has(&eog, "<|tool_response>").is_some()
                || eog_has(&eog, "<|plamo:eos|>").is_some()
            {
                eog.remove(&s);
                attrs[s as usize] = attr::NORMAL;
            }
        }

        // Special-token cache: longest text first (ties: lower id first).
        let mut special: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        special.sort_by_key(|&id| std::cmp::Reverse(texts[id as usize].len()));

        let bpe = match bpe_spec {
            None => None,
            Some(spec_pre) => {
                let lines = spec.merges.ok_or(TextError::MissingKey {
                    key: "tokenizer.ggml.merges",
                })?;
                let splitters = spec_pre
                    .exprs
                    .iter()
                    .map(|e| Splitter::new(e))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|reason| TextError::BadPreRegex {
                        pre: pre_name.clone().unwrap_or_default(),
                        reason,
                    })?;
                Some(BpeConfig {
                    merges: Merges::new(&lines),
                    splitters,
                    spec: spec_pre,
                    byte_chars: unicode::byte_to_char_table(),
                    char_bytes: {
                        let mut rev = vec![-1i16; 0x144];
                        for (b, &c) in unicode::byte_to_char_table().iter().enumerate() {
                            rev[c as usize] = b as i16;
                        }
                        rev
                    },
                    gemma4,
                })
            }
        };

        let mut tok = Tokenizer {
            kind,
            pre: pre_name,
            texts,
            attrs,
            scores,
            to_id,
            bpe,
            special,
            pieces: Pieces::default(),
            bos,
            eos,
            eot,
            eom,
            unk,
            pad,
            sep,
            add_bos,
            add_eos,
            add_space_prefix,
            eog,
        };
        tok.pieces = Pieces::collect((0..n as u32).map(|id| tok.piece(id)));

        // Phi-3: special tokens swallow the white space after them (except these three).
        let name = spec.name.unwrap_or_default().to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &tok.special {
                tok.attrs[id as usize] |= attr::RSTRIP;
            }
            for (t, on) in [
                ("</s>", true),
                ("<unk>", false),
                ("<s>", false),
                ("<|endoftext|>", false),
            ] {
                if let Some(&id) = tok.to_id.get(t.as_bytes()) {
                    let a = &mut tok.attrs[id as usize];
                    *a = if on {
                        *a | attr::RSTRIP
                    } else {
                        *a & !attr::RSTRIP
                    };
                }
            }
        }
        Ok(tok)
    }

    /// Reads the `tokenizer.ggml.*` keys of `f` and builds the tokenizer.
    pub fn from_gguf(f: &huarizo_formats::GgufFile) -> Result<Tokenizer, TextError> {
        Tokenizer::from_spec(gguf::vocab_spec(f)?)
    }

    /// The algorithm.
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// The BPE pre-tokenizer name (`tokenizer.ggml.pre`, `"default"` if absent); `None`
    /// for SentencePiece.
    pub fn pre(&self) -> Option<&str> {
        self.pre.as_deref()
    }

    /// Number of tokens.
    pub fn n_vocab(&self) -> usize {
        self.texts.len()
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token (given or found by text, e.g. `<|im_end|>`).
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// End-of-message token (`<|eom_id|>`).
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }

    /// Unknown token.
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// Padding token.
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// Separator token.
    pub fn sep(&self) -> Option<u32> {
        self.sep
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos && self.eos.is_some()
    }

    /// Does generation stop at `id`? EOS, EOT, EOM, the FIM pad/repo/file-separator
    /// tokens, and tokens llama.cpp recognises by text (`<|im_end|>`, `<|endoftext|>`,
    /// `<end_of_turn>`, `<|eot_id|>`, …).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The end-of-generation tokens, ascending.
    pub fn eog_tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }

    /// Is `id` a control token (BOS, EOS, `<|im_start|>`, …)? Out of range: false.
    pub fn is_control(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|a| a & attr::CONTROL != 0)
    }

    /// The vocabulary text of `id` as stored (`Ġworld`, `▁world`, `<0x0A>`, `<bos>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// The id whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.to_id.get(text.as_bytes()).copied()
    }

    /// The bytes `id` stands for: llama.cpp's `common_token_to_piece(id, special =
    /// true)`. Byte-level BPE undoes the GPT-2 byte mapping, SentencePiece turns `▁`
    /// into a space and `<0xAB>` into the byte 0xAB, control and user-defined tokens
    /// give their text, unused/undefined tokens give nothing. A piece may be part of a
    /// UTF-8 character. Out of range: empty.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize)
    }

    /// The concatenated [`token_bytes`](Self::token_bytes) of `ids`, decoded lossily
    /// (invalid UTF-8 becomes U+FFFD). Special tokens render as their text, and no
    /// space is stripped or cleaned up: the same as printing each piece in turn.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Tokenizes `text` like llama.cpp's `llama_tokenize(vocab, text, add_special,
    /// parse_special)`: `add_special` adds BOS/EOS as the model asks
    /// ([`add_bos`](Self::add_bos), [`add_eos`](Self::add_eos)); `parse_special` lets
    /// the text of control tokens (`<|im_start|>`) become those tokens. User-defined
    /// tokens always match as single tokens; control tokens without `parse_special` are
    /// tokenized as plain text.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let fragments = self.partition(text, parse_special);
        let mut out = Vec::new();
        match &self.bpe {
            None => {
                if add_special && self.add_bos {
                    out.extend(self.bos);
                }
                let mut prev_special = true;
                for f in fragments {
                    match f {
                        Fragment::Text(s, e) => {
                            let mut piece = String::with_capacity(e - s + 1);
                            if self.add_space_prefix && prev_special {
                                piece.push(' ');
                            }
                            piece.push_str(&text[s..e]);
                            self.spm_tokenize(&piece.replace(' ', "\u{2581}"), &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            Some(bpe) => {
                if add_special && self.add_bos {
                    out.extend(self.bos);
                }
                for f in fragments {
                    match f {
                        Fragment::Text(s, e) if bpe.spec.escape_whitespace => {
                            self.bpe_tokenize(bpe, &text[s..e].replace(' ', "\u{2581}"), &mut out)
                        }
                        Fragment::Text(s, e) => self.bpe_tokenize(bpe, &text[s..e], &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// Cuts special tokens out of `text` (llama.cpp's `tokenizer_st_partition`): each
    /// special token in turn, longest first, splits every remaining text fragment at
    /// all its occurrences.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let bytes = text.as_bytes();
        let mut frags = Vec::new();
        if bytes.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(0, bytes.len()));
        // Most special tokens never occur: check their first four bytes against the
        // text's 4-byte windows before searching.
        let windows: HashSet<[u8; 4]> =
            bytes.windows(4).map(|w| [w[0], w[1], w[2], w[3]]).collect();
        for &id in &self.special {
            let a = self.attrs[id as usize];
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let tok = self.texts[id as usize].as_bytes();
            if tok.len() > bytes.len()
                || (tok.len() >= 4 && !windows.contains(&[tok[0], tok[1], tok[2], tok[3]]))
            {
                continue;
            }
            if !frags.iter().any(
                |f| matches!(*f, Fragment::Text(s, e) if find_bytes(&bytes[s..e], tok).is_some()),
            ) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(s, e) = f else {
                    next.push(f);
                    continue;
                };
                let mut cur = s;
                while let Some(m) = find_bytes(&bytes[cur..e], tok).map(|p| p + cur) {
                    let mut left_end = m;
                    if a & attr::LSTRIP != 0 {
                        while left_end > cur && is_c_space(bytes[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > cur {
                        next.push(Fragment::Text(cur, left_end));
                    }
                    next.push(Fragment::Token(id));
                    cur = m + tok.len();
                    if a & attr::RSTRIP != 0 {
                        while cur < e && is_c_space(bytes[cur]) {
                            cur += 1;
                        }
                    }
                }
                if cur < e {
                    next.push(Fragment::Text(cur, e));
                }
            }
            frags = next;
        }
        frags
    }

    /// The byte-fallback token of `b` (`<0xAB>`, else the one-byte token), else UNK.
    fn byte_token(&self, b: u8) -> Option<u32> {
        let hex = format!("<0x{b:02X}>");
        self.to_id
            .get(hex.as_bytes())
            .or_else(|| self.to_id.get(&[b][..]))
            .copied()
            .or(self.unk)
    }

    /// SentencePiece on one escaped fragment.
    fn spm_tokenize(&self, text: &str, out: &mut Vec<u32>) {
        let bytes = text.as_bytes();
        let lookup = |t: &[u8]| self.to_id.get(t).map(|&id| self.scores[id as usize]);
        for span in merge::spm_merge(bytes, lookup) {
            match self.to_id.get(&bytes[span.clone()]) {
                Some(&id) => out.push(id),
                None => out.extend(bytes[span].iter().filter_map(|&b| self.byte_token(b))),
            }
        }
    }

    /// Byte-level BPE on one fragment: pre-tokenize, byte-map each word, merge.
    fn bpe_tokenize(&self, bpe: &BpeConfig, text: &str, out: &mut Vec<u32>) {
        let cpts = unicode::code_points(text);
        let mut chars = text.chars();
        let mut word = String::new();
        for len in pretok::split_words(&cpts, &bpe.splitters) {
            word.clear();
            for c in chars.by_ref().take(len) {
                if bpe.spec.byte_encode {
                    let mut buf = [0u8; 4];
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        word.push(bpe.byte_chars[b as usize]);
                    }
                } else {
                    word.push(c);
                }
            }
            let w = word.as_bytes();
            let whole = self.to_id.get(w).copied().filter(|_| {
                bpe.spec.ignore_merges || (bpe.gemma4 && word.bytes().all(|b| b == b'\n'))
            });
            if let Some(id) = whole {
                out.push(id);
                continue;
            }
            for span in bpe.merges.apply(w) {
                let sym = &w[span];
                if let Some(&id) = self.to_id.get(sym) {
                    out.push(id);
                    continue;
                }
                // Not a token: each byte of the (mapped) text on its own, if it is one.
                for &b in sym {
                    let id = if bpe.spec.byte_encode {
                        self.to_id.get(&[b][..]).copied()
                    } else {
                        self.to_id.get(format!("<0x{b:02X}>").as_bytes()).copied()
                    };
                    out.extend(id);
                }
            }
        }
    }

    /// llama.cpp's `token_to_piece(id, lstrip = 0, special = true)`.
    fn piece(&self, id: u32) -> Vec<u8> {
        let text = &self.texts[id as usize];
        let a = self.attrs[id as usize];
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if a & attr::NORMAL != 0 {
            return match &self.bpe {
                Some(bpe) if bpe.spec.byte_encode => self.unmap_bytes(bpe, text),
                _ => text.replace('\u{2581}', " ").into_bytes(),
            };
        }
        if a & attr::BYTE != 0 {
            // "<0xAB>" → 0xAB (llama.cpp's strtol gives 0 for garbage).
            let b = text
                .get(3..5)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or(0);
            return vec![b];
        }
        Vec::new()
    }

    /// Undoes the GPT-2 byte mapping (llama.cpp's `llama_decode_text`); a character
    /// outside the mapping becomes `[UNK_BYTE_0x…]` as there.
    fn unmap_bytes(&self, bpe: &BpeConfig, text: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        for c in text.chars() {
            match bpe.char_bytes.get(c as usize).copied().filter(|&b| b >= 0) {
                Some(b) => out.push(b as u8),
                None => {
                    out.extend_from_slice(b"[UNK_BYTE_0x");
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).as_bytes() {
                        out.extend_from_slice(format!("{b:02x}").as_bytes());
                    }
                    out.extend_from_slice(text.as_bytes());
                    out.push(b']');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spm() -> Tokenizer {
        let tokens = [
            "<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "▁hi", "<0x21>", "<|x|>",
        ];
        Tokenizer::from_spec(VocabSpec {
            model: "llama".into(),
            tokens: tokens.iter().map(|s| s.to_string()).collect(),
            scores: Some(vec![0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -1.5, -0.5, 0.0, 0.0]),
            token_types: Some(vec![2, 3, 3, 1, 1, 1, 1, 1, 6, 3]),
            ..VocabSpec::default()
        })
        .unwrap()
    }

    #[test]
    fn pieces_come_back_by_index() {
        let words: [&[u8]; 4] = [b"ab", b"", b"\xff c", b"d"];
        let pieces = Pieces::collect(words.iter().map(|w| w.to_vec()));
        for (i, w) in words.iter().enumerate() {
            assert_eq!(pieces.get(i), *w);
        }
        assert_eq!(pieces.get(4), b"");
        assert_eq!(Pieces::default().get(0), b"");
    }

    #[test]
    fn spm_merges_and_falls_back_to_bytes() {
        let t = spm();
        assert_eq!(t.encode("hi!", true, false), vec![1, 7, 8]);
        assert_eq!(t.decode(&[1, 7, 8]), "<s> hi!");
        assert_eq!(t.token_bytes(8), b"!");
    }

    #[test]
    fn control_tokens_need_parse_special() {
        let t = spm();
        assert_eq!(t.encode("<|x|>", false, true), vec![9]);
        assert_ne!(t.encode("<|x|>", false, false), vec![9]);
    }

    #[test]
    fn unsupported_model_names_itself() {
        let err = Tokenizer::from_spec(VocabSpec {
            model: "bert".into(),
            tokens: vec!["a".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("\"bert\""), "{err}");
    }

    #[test]
    fn bad_metadata_is_an_error_or_ignored_never_a_panic() {
        let tokens: Vec<String> = ["", "a", "b", "ab"].iter().map(|s| s.to_string()).collect();
        // Short per-token arrays are errors naming the key.
        let short = VocabSpec {
            model: "llama".into(),
            tokens: tokens.clone(),
            scores: Some(vec![0.0]),
            ..Default::default()
        };
        assert!(Tokenizer::from_spec(short)
            .unwrap_err()
            .to_string()
            .contains("tokenizer.ggml.scores"));
        // Out-of-range ids fall back to the defaults, odd types and merges are ignored.
        let odd = VocabSpec {
            model: "gpt2".into(),
            tokens,
            token_types: Some(vec![99, -1, 1, 1]),
            merges: Some(vec!["nospace".into(), " ".into(), "a b".into()]),
            bos: Some(1_000_000),
            eos: Some(u32::MAX),
            ..Default::default()
        };
        let t = Tokenizer::from_spec(odd).unwrap();
        assert_eq!(t.bos(), None);
        assert_eq!(t.token_text(0), Some("[EMPTY_0]"));
        assert_eq!(t.encode("ab", true, true), vec![3]);
        assert!(t.token_bytes(7).is_empty());
        assert_eq!(t.decode(&[3, 99]), "ab");
    }

    #[test]
    fn unsupported_pre_names_itself() {
        let spec = VocabSpec {
            model: "gpt2".into(),
            pre: Some("bloom".into()),
            tokens: vec!["a".into()],
            merges: Some(vec![]),
            ..Default::default()
        };
        let err = Tokenizer::from_spec(spec).unwrap_err();
        assert!(err.to_string().contains("\"bloom\""), "{err}");
    }

    #[test]
    fn missing_merges_is_an_error() {
        let err = Tokenizer::from_spec(VocabSpec {
            model: "gpt2".into(),
            tokens: vec!["a".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("tokenizer.ggml.merges"), "{err}");
    }
}
