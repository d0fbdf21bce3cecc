//! huarizo-text: tokenizers built from GGUF metadata, and chat templates; Hugging Face
//! tokenizer files read into (and written from) that metadata ([`hf`]); byte-level BPE
//! tokenizers trained for new models ([`bpe_train`]).
//!
//! It turns text into token ids and back, and conversations into prompt text. It must
//! not touch weights.
#![deny(missing_docs)]

pub mod bpe_train;
pub mod chat_template;
pub mod hf;
pub mod tokenizer;

pub use bpe_train::{train_bpe, train_bpe_to_dir, BpeTrainError, BpeTrainOptions};
pub use chat_template::{python_environment, python_str, ChatMessage, ChatTemplate, TemplateError};
pub use tokenizer::{TextError, Tokenizer, TokenizerKind, VocabSpec};
