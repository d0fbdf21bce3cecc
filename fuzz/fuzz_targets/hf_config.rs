//! Fuzzes the Hugging Face `config.json` reader (`huarizo_model::hf::config::gguf_metadata`):
//! any JSON value must give GGUF metadata or an error naming the key, never a panic.

#![no_main]

use huarizo_model::hf::config::gguf_metadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = gguf_metadata(std::path::Path::new("config.json"), &json);
});
