//! huarizo-formats reads and writes GGUF files: it parses and validates the header
//! (metadata and tensor infos) of GGUF v2/v3, memory-maps the file, and hands out zero-copy
//! slices of tensor data; [`GgufWriter`] lays out and atomically writes new files; plus the
//! [`GgmlType`] table (ids, block sizes, bytes per block); and safetensors files
//! ([`SafetensorsFile`], [`write_safetensors`]), whose tensors
//! [`GgufFile::from_parts`] presents as a GGUF-shaped view. It must
//! not compute anything on weights (dequantization and kernels live in
//! `huarizo-kernels`), must not interpret metadata (hyperparameters belong to
//! `huarizo-model`, vocabularies to `huarizo-text`), and must never panic on, or trust a
//! count from, an untrusted file: every fault is a [`GgufError`] naming the file.
//!
//! [`parse_header`] works on `&[u8]` alone, so it can be fuzzed without files;
//! [`GgufFile::open`] maps the file and calls it.

#![deny(missing_docs)]

mod error;
mod file;
mod parse;
mod safetensors;
mod types;
mod value;
mod writer;

pub use error::{GgufError, ParseError, WriteError};
pub use file::{GgufFile, PartTensor};
pub use parse::{parse_header, Header, TensorInfo, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use safetensors::{
    parse_safetensors, write_safetensors, SafeTensorInfo, SafeTensorOut, SafetensorsError,
    SafetensorsFault, SafetensorsFile, MAX_HEADER_BYTES,
};
pub use types::GgmlType;
pub use value::Value;
pub use writer::GgufWriter;
