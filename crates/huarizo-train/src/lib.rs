//! huarizo-train is the model-independent front end of `huarizo train`: it reads training
//! data (chat, prompt/completion and text JSONL, raw text) into token sequences with
//! per-position targets, packs them into batches, runs the training loop (gradient
//! accumulation, clipping, AdamW on a warm-up + cosine schedule, evaluation), writes and
//! resumes checkpoints, and reports metrics and a loss plot. The model plugs in through
//! [`TrainModel`]; [`lora::LoraModel`] is the engine's LoRA training behind it. This crate
//! must not compute a model's loss or gradients itself, nor depend on another front end.

#![deny(missing_docs)]

pub mod batching;
pub mod checkpoint;
pub mod data;
pub mod full;
pub mod lora;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod rng;
pub mod trainer;

#[cfg(test)]
mod test_model;

pub use batching::Packer;
pub use data::{
    load_jsonl, load_text, parse_jsonl, split_holdout, text_examples, BadLinePolicy, DataError,
    DataOptions, Dataset, Example, TextFormat,
};
pub use metrics::Metrics;
pub use optim::{clip_grad_norm, AdamW, AdamWConfig, CosineSchedule};
pub use trainer::{evaluate, train, RunLength, TrainModel, TrainOptions, TrainReport};
