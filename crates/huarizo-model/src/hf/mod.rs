//! Hugging Face checkpoints: a folder with `config.json` and safetensors weights opened
//! as a GGUF-shaped view ([`open_folder`]), and a model written as one ([`export_hf`]).
//! Tensor names are a table ([`names`]); hyperparameters map key for key ([`config`]).
//! Tokenizer files are `huarizo-text`'s business.

pub mod config;
mod export;
pub(crate) mod load;
pub mod names;

pub use export::{export_hf, write_json, HfExportOptions, HfExportSummary, DEFAULT_SHARD_BYTES};
pub use load::{is_hf_folder, open_folder, read_json, INDEX_FILE, SINGLE_FILE};
