//! Training: the decoder's backward pass in f32 over its frozen, possibly quantized
//! weights, and the LoRA adapters it trains.

mod adapter_file;
pub mod lora;
mod params;
mod scratch;
mod step;

pub use adapter_file::{read_gguf_lora, write_gguf_lora, write_peft};
pub use lora::{hf_row_order, LoraAdapter, LoraConfig, LoraGrads, LoraTarget, LoraTensor};
pub use params::{FullGrads, FullParams, ParamTensor};
pub use scratch::{write_random_model, ScratchConfig};
pub use step::{BatchLoss, TrainSeq};
