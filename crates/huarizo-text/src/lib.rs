//! huarizo-text: tokenizers built from GGUF metadata, and chat templates; Hugging Face
//! tokenizer files read into (and written from) that metadata ([`hf`]).
//!
//! It turns text into token ids and back, and conversations into prompt text. It must
//! not touch weights.
#![deny(missing_docs)]

pub mod chat_template;
pub mod hf;
pub mod tokenizer;

pub use chat_template::{python_environment, python_str, ChatMessage, ChatTemplate, TemplateError};
pub use tokenizer::{TextError, Tokenizer, TokenizerKind, VocabSpec};
