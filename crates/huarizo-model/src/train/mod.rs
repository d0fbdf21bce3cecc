//! Training: the decoder's backward pass in f32 over its frozen, possibly quantized
//! weights, and the LoRA adapters it trains.

pub mod lora;
mod step;

pub use lora::{hf_row_order, LoraAdapter, LoraConfig, LoraGrads, LoraTarget, LoraTensor};
pub use step::{BatchLoss, TrainSeq};
