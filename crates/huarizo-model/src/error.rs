//! Errors of model loading, each naming the key or tensor at fault.

use std::path::PathBuf;

use huarizo_formats::{GgufError, SafetensorsError};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file itself is malformed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `general.architecture` names a family huarizo does not run.
    #[error("unsupported architecture {arch:?} (supported: {supported})")]
    UnsupportedArch {
        /// The architecture found.
        arch: String,
        /// The supported ones, comma-separated.
        supported: String,
    },
    /// A required metadata key is absent.
    #[error("missing metadata key {key}")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata value has the wrong type.
    #[error("metadata key {key} should be {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A required tensor is absent.
    #[error("missing tensor {name}")]
    MissingTensor {
        /// The tensor name.
        name: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor {name} has shape {got:?}, expected {expected:?}")]
    BadShape {
        /// The tensor name.
        name: String,
        /// Expected shape (ggml order).
        expected: Vec<u64>,
        /// Actual shape (ggml order).
        got: Vec<u64>,
    },
    /// A tensor's type cannot be used where it is.
    #[error("tensor {name} has type {ty}, which huarizo cannot use here (supported: {supported})")]
    UnsupportedType {
        /// The tensor name.
        name: String,
        /// Its type.
        ty: &'static str,
        /// The supported types.
        supported: &'static str,
    },
    /// The sequence would exceed the context.
    #[error(
        "context is full: {needed} positions needed, context holds {n_ctx} (try a larger --ctx)"
    )]
    ContextFull {
        /// Positions the request needs.
        needed: usize,
        /// Capacity.
        n_ctx: usize,
    },
    /// A safetensors file of a Hugging Face checkpoint is malformed.
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    /// A Hugging Face `config.json` (or another JSON file of the checkpoint) lacks a key or
    /// holds a value huarizo cannot use.
    #[error("{}: key `{key}`: {reason}", path.display())]
    HfConfig {
        /// The JSON file.
        path: PathBuf,
        /// The key at fault (empty for the whole file).
        key: String,
        /// What is wrong, with the numbers.
        reason: String,
    },
    /// A tensor of a Hugging Face checkpoint is unknown, missing, misplaced or misshapen.
    #[error("{}: tensor `{tensor}`: {reason}", path.display())]
    HfTensor {
        /// The file (shard, index or folder) at fault.
        path: PathBuf,
        /// The tensor name as in the checkpoint.
        tensor: String,
        /// What is wrong, with the numbers.
        reason: String,
    },
    /// A file of a Hugging Face checkpoint could not be read or written.
    #[error("{}: {op}: {error}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A LoRA adapter file that does not fit (names the file and tensor).
    #[error("LoRA adapter {0}")]
    Adapter(String),
    /// Any other invariant that failed, with the numbers.
    #[error("invalid model: {0}")]
    Invalid(String),
}
