//! One model file opened for study: its metadata, tensors, configuration and tokenizer,
//! without loading it for inference.

use crate::error::LineageError;
use huarizo_engine::{Config, GgmlType, GgufFile, Tokenizer, Value};
use std::path::{Path, PathBuf};

/// A model file as lineage sees it.
pub struct Checkpoint {
    /// Where it was read from.
    pub path: PathBuf,
    /// The open file (weights memory-mapped).
    pub file: GgufFile,
    /// Hyperparameters, when huarizo understands the architecture.
    pub config: Option<Config>,
    /// Why the hyperparameters could not be read, otherwise.
    pub config_error: Option<String>,
    /// The tokenizer, when it could be built.
    pub tokenizer: Option<Tokenizer>,
}

impl Checkpoint {
    /// Opens `path` (GGUF).
    pub fn open(path: &Path) -> Result<Checkpoint, LineageError> {
        let file = GgufFile::open(path).map_err(|e| LineageError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let (config, config_error) = match Config::from_gguf(&file) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let tokenizer = Tokenizer::from_gguf(&file).ok();
        Ok(Checkpoint {
            path: path.to_path_buf(),
            file,
            config,
            config_error,
            tokenizer,
        })
    }

    /// The file name, for tables.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    /// `general.architecture`, or `"?"`.
    pub fn architecture(&self) -> String {
        self.string("general.architecture")
            .unwrap_or_else(|| "?".into())
    }

    /// A string metadata value.
    pub fn string(&self, key: &str) -> Option<String> {
        match self.file.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// The strings of a string-array metadata value (tokens, merges).
    pub fn strings(&self, key: &str) -> Option<Vec<&str>> {
        match self.file.get(key) {
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.as_str(),
                        _ => "",
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Whether the file was quantized with an importance matrix (llama-quantize records
    /// `quantize.imatrix.*` keys): its grids were searched, not rounded.
    pub fn imatrix(&self) -> bool {
        self.file
            .metadata()
            .iter()
            .any(|(k, _)| k.starts_with("quantize.imatrix"))
    }

    /// Number of weights (elements of every tensor).
    pub fn n_params(&self) -> u64 {
        self.file.tensors().iter().map(|t| t.n_elements()).sum()
    }

    /// Size of the tensor data in bytes.
    pub fn n_bytes(&self) -> u64 {
        self.file.tensors().iter().map(|t| t.n_bytes as u64).sum()
    }

    /// The storage types by share of weights, largest first (`"Q4_1 95%, Q8_0 5%"`).
    pub fn quantization(&self) -> String {
        let mut by_type: Vec<(GgmlType, u64)> = Vec::new();
        for t in self.file.tensors() {
            match by_type.iter_mut().find(|(ty, _)| *ty == t.ggml_type) {
                Some(entry) => entry.1 += t.n_elements(),
                None => by_type.push((t.ggml_type, t.n_elements())),
            }
        }
        by_type.sort_by_key(|t| std::cmp::Reverse(t.1));
        let total = self.n_params().max(1) as f64;
        by_type
            .iter()
            .filter(|(_, n)| *n as f64 / total >= 0.005)
            .map(|(ty, n)| format!("{} {:.0}%", ty.name(), 100.0 * *n as f64 / total))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
