//! huarizo-model holds one configurable decoder for the LLaMA family: it reads
//! hyperparameters from GGUF metadata (or a Hugging Face checkpoint presented as GGUF,
//! [`hf`]), maps each family onto a table row
//! ([`arch::ArchSpec`]), keeps the weights in the memory-mapped file and runs the forward
//! pass with a KV cache. It must not tokenize or sample (that is `huarizo-text` and
//! `huarizo-engine`), and it must not carry SIMD of its own: arithmetic lives in
//! `huarizo-kernels`.

#![deny(missing_docs)]

pub mod arch;
pub mod config;
pub mod error;
pub mod hf;
pub mod model;
pub mod quant_mix;
pub mod requantize;
pub mod state;
pub mod train;
pub mod weights;
pub mod widen;

pub use arch::Arch;
pub use config::Config;
pub use error::ModelError;
pub use huarizo_kernels::ops::log_sum_exp;
pub use huarizo_kernels::pool::ThreadPool;
pub use huarizo_kernels::{
    arithmetic, ggml_isa, set_arithmetic, set_ggml_isa, Arithmetic, GgmlIsa,
};
pub use model::{whole_prompt_place, BatchPlaces, Logits, Model, SeqBatch, REFERENCE_UBATCH};
pub use state::{CacheType, Scratch, State};
pub use widen::{widen_to_f32, Precision};
