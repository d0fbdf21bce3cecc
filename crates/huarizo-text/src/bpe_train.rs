//! Training a byte-level BPE tokenizer for a model trained from scratch.
//!
//! [`train_bpe`] runs the `tokenizers` crate's BPE trainer on the user's text files and
//! returns the `tokenizer.ggml.*` metadata of a GGUF model, by way of the Hugging Face
//! files [`train_bpe_to_dir`] writes and [`hf::tokenizer_metadata`] reads.
//!
//! The tokenizer is GPT-2's: the `ByteLevel` pre-tokenizer with its regex
//! (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`), no
//! prefix space, no normalizer, and all 256 byte symbols in the vocabulary so that any
//! text encodes. It becomes `tokenizer.ggml.model = "gpt2"` with
//! `tokenizer.ggml.pre = "gpt-2"`, which llama.cpp (`LLAMA_VOCAB_PRE_TYPE_GPT2`) and
//! [`Tokenizer`](crate::Tokenizer) split with that same regex and merge by rank as
//! `tokenizers` does. Special tokens come first (ids 0, 1, …) as control tokens; the
//! first is BOS and EOS, and no BOS is added when encoding.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use huarizo_formats::Value;
use serde_json::json;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, TokenizerBuilder, TokenizerImpl};

use crate::hf::{self, HfTokenizerError};

/// The usual BOS/EOS token of byte-level BPE tokenizers.
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// ChatML's start-of-turn token.
pub const IM_START: &str = "<|im_start|>";
/// ChatML's end-of-turn token.
pub const IM_END: &str = "<|im_end|>";

/// The ChatML template written when both [`IM_START`] and [`IM_END`] are special tokens.
const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Byte symbols every byte-level vocabulary holds.
const N_BYTES: usize = 256;
/// Largest vocabulary [`train_bpe`] accepts (GGUF readers reject larger ones).
const MAX_VOCAB: usize = 1 << 24;

/// What [`train_bpe`] trains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpeTrainOptions {
    /// Tokens wanted in all: special tokens, the 256 byte symbols, then one per merge.
    /// A small corpus may run out of pairs (or of pairs seen `min_frequency` times)
    /// first, and then gives a smaller vocabulary.
    pub vocab_size: usize,
    /// A pair seen fewer times than this in the corpus is never merged.
    pub min_frequency: u64,
    /// Special (control) tokens, ids 0, 1, … in this order; never split, never produced
    /// by merges. The first is the BOS and EOS token. With both [`IM_START`] and
    /// [`IM_END`] the metadata also gets a ChatML chat template.
    pub special_tokens: Vec<String>,
}

impl Default for BpeTrainOptions {
    /// 8192 tokens, pairs seen at least twice, `<|endoftext|>`, `<|im_start|>`,
    /// `<|im_end|>`.
    fn default() -> Self {
        BpeTrainOptions {
            vocab_size: 8192,
            min_frequency: 2,
            special_tokens: [ENDOFTEXT, IM_START, IM_END].map(String::from).to_vec(),
        }
    }
}

/// Why a tokenizer could not be trained; names the option, file or line at fault.
#[derive(Debug, thiserror::Error)]
pub enum BpeTrainError {
    /// An option is out of range.
    #[error("BpeTrainOptions.{field}: {reason}")]
    Option {
        /// The option at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No training file was given.
    #[error("no text files to train the tokenizer on")]
    NoFiles,
    /// A training file (or a file written) is unreadable, not UTF-8, or unwritable.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong, with the line number where it applies.
        reason: String,
    },
    /// Every training file is empty.
    #[error("the {files} training file(s) hold no text (first: {})", first.display())]
    NoText {
        /// How many files were given.
        files: usize,
        /// The first of them.
        first: PathBuf,
    },
    /// The `tokenizers` trainer failed.
    #[error("training the tokenizer: {0}")]
    Train(String),
    /// The trained tokenizer did not convert to GGUF metadata.
    #[error(transparent)]
    Metadata(#[from] HfTokenizerError),
}

fn file_err(path: &Path, reason: impl Into<String>) -> BpeTrainError {
    BpeTrainError::File {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn check_options(opts: &BpeTrainOptions) -> Result<(), BpeTrainError> {
    let bad = |field, reason: String| Err(BpeTrainError::Option { field, reason });
    if opts.special_tokens.is_empty() {
        return bad(
            "special_tokens",
            format!("needs at least one token (the first is BOS and EOS), e.g. {ENDOFTEXT:?}"),
        );
    }
    for (i, t) in opts.special_tokens.iter().enumerate() {
        if t.is_empty() {
            return bad("special_tokens", format!("[{i}] is empty"));
        }
        if opts.special_tokens[..i].contains(t) {
            return bad("special_tokens", format!("[{i}] {t:?} is listed twice"));
        }
    }
    let least = N_BYTES + opts.special_tokens.len();
    if opts.vocab_size < least {
        return bad(
            "vocab_size",
            format!(
                "{} is below the {N_BYTES} byte tokens plus {} special tokens ({least})",
                opts.vocab_size,
                opts.special_tokens.len()
            ),
        );
    }
    if opts.vocab_size > MAX_VOCAB {
        return bad(
            "vocab_size",
            format!("{} is above the limit of {MAX_VOCAB}", opts.vocab_size),
        );
    }
    if opts.min_frequency == 0 {
        return bad(
            "min_frequency",
            "must be at least 1 (a pair seen once)".into(),
        );
    }
    Ok(())
}

/// The training text: each file's lines (with their line ends), in order. The first
/// read error is kept in `error` and ends the text.
struct Lines<'a> {
    files: &'a [PathBuf],
    next: usize,
    reader: Option<(BufReader<File>, usize)>,
    bytes: u64,
    error: Option<BpeTrainError>,
}

impl Iterator for Lines<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            let files = self.files;
            let (Some((reader, line)), None) = (&mut self.reader, &self.error) else {
                return None;
            };
            let path = &files[self.next - 1];
            *line += 1;
            let mut buf = String::new();
            match reader.read_line(&mut buf) {
                Ok(0) => {
                    if let Err(e) = self.open_next() {
                        self.error = Some(e);
                    }
                }
                Ok(n) => {
                    self.bytes += n as u64;
                    return Some(buf);
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.error = Some(file_err(path, format!("line {line}: not valid UTF-8")));
                }
                Err(e) => {
                    self.error = Some(file_err(path, format!("line {line}: cannot read: {e}")));
                }
            }
        }
    }
}

impl Lines<'_> {
    /// Moves to the next file; `reader` is `None` past the last one.
    fn open_next(&mut self) -> Result<(), BpeTrainError> {
        self.reader = None;
        let Some(path) = self.files.get(self.next) else {
            return Ok(());
        };
        self.next += 1;
        let f = File::open(path).map_err(|e| file_err(path, format!("cannot open: {e}")))?;
        self.reader = Some((BufReader::new(f), 0));
        Ok(())
    }
}

type Trained = TokenizerImpl<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevelDecoder>;

/// Trains a byte-level BPE tokenizer on `files` (UTF-8 text) and writes it to `dir` as
/// Hugging Face files: `tokenizer.json` and `tokenizer_config.json` (BOS and EOS, no
/// BOS added, the ChatML template when its tokens are special). `dir` must exist.
pub fn train_bpe_to_dir(
    files: &[PathBuf],
    opts: &BpeTrainOptions,
    dir: &Path,
) -> Result<(), BpeTrainError> {
    check_options(opts)?;
    if files.is_empty() {
        return Err(BpeTrainError::NoFiles);
    }
    // Every file must open before the (long) training starts.
    for path in files {
        File::open(path).map_err(|e| file_err(path, format!("cannot open: {e}")))?;
    }
    let special: Vec<AddedToken> = opts
        .special_tokens
        .iter()
        .map(|t| AddedToken::from(t.clone(), true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(opts.vocab_size)
        .min_frequency(opts.min_frequency)
        .special_tokens(special.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer: Trained = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_post_processor(Some(ByteLevel::new(false, false, true)))
        .with_decoder(Some(ByteLevelDecoder::default()))
        .build()
        .map_err(|e| BpeTrainError::Train(e.to_string()))?;
    // Special tokens are known before training, so the text's own `<|endoftext|>`s
    // stay whole instead of being counted as bytes.
    tokenizer.add_special_tokens(&special);

    let mut lines = Lines {
        files,
        next: 0,
        reader: None,
        bytes: 0,
        error: None,
    };
    lines.open_next()?;
    tokenizer
        .train(&mut trainer, &mut lines)
        .map_err(|e| BpeTrainError::Train(e.to_string()))?;
    if let Some(e) = lines.error {
        return Err(e);
    }
    if lines.bytes == 0 {
        return Err(BpeTrainError::NoText {
            files: files.len(),
            first: files[0].clone(),
        });
    }

    let tj = dir.join("tokenizer.json");
    tokenizer
        .save(&tj, true)
        .map_err(|e| file_err(&tj, format!("cannot write: {e}")))?;
    let first = &opts.special_tokens[0];
    let mut config = json!({
        "add_bos_token": false,
        "add_eos_token": false,
        "bos_token": first,
        "eos_token": first,
        "clean_up_tokenization_spaces": false,
        "model_max_length": 1_000_000_000_000_000_000u64,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    let has = |t: &str| opts.special_tokens.iter().any(|s| s == t);
    if has(IM_START) && has(IM_END) {
        config["chat_template"] = json!(CHATML_TEMPLATE);
    }
    let tc = dir.join("tokenizer_config.json");
    let text = serde_json::to_string_pretty(&config).expect("JSON values serialize") + "\n";
    std::fs::write(&tc, text).map_err(|e| file_err(&tc, format!("cannot write: {e}")))
}

/// A folder under the system's temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, BpeTrainError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "huarizo-bpe-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| file_err(&path, format!("cannot create folder: {e}")))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Trains a byte-level BPE tokenizer on `files` (UTF-8 text, read line by line) and
/// returns its GGUF metadata: `tokenizer.ggml.model = "gpt2"`, `tokenizer.ggml.pre =
/// "gpt-2"`, `tokens`, `token_type` (special tokens control, the rest normal),
/// `merges`, BOS and EOS ids (the first special token), `add_bos_token = false`, and
/// `tokenizer.chat_template` when [`IM_START`] and [`IM_END`] are special tokens.
pub fn train_bpe(
    files: &[PathBuf],
    opts: &BpeTrainOptions,
) -> Result<Vec<(String, Value)>, BpeTrainError> {
    let dir = TempDir::new()?;
    train_bpe_to_dir(files, opts, &dir.0)?;
    Ok(hf::tokenizer_metadata(&dir.0)?)
}
