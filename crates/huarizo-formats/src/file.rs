//! [`GgufFile`]: a validated header plus the memory-mapped file.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::{parse_header, GgufError, Header, TensorInfo, Value};

/// An open GGUF file: parsed, validated metadata and tensor infos, with the weights
/// left in a read-only memory map (never copied).
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    header: Header,
    key_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
    mmap: Mmap,
}

impl GgufFile {
    /// Opens `path`, maps it read-only, and parses and validates the header against the
    /// file length. Errors name the path and the fault.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io = |error| GgufError::Io {
            path: path.to_owned(),
            error,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and huarizo never writes to the file. Mapping a
        // file is only unsound if another process truncates or rewrites it while mapped
        // (reads could then fault or see changing bytes); like every mmap loader
        // (llama.cpp included) we accept that and document that model files must not be
        // modified while in use.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header = parse_header(&mmap).map_err(|error| GgufError::Parse {
            path: path.to_owned(),
            error,
        })?;
        let key_index = header
            .metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let tensor_index = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path: path.to_owned(),
            header,
            key_index,
            tensor_index,
            mmap,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// Tensor data alignment in bytes.
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// The parsed header (metadata, tensor infos, data section offset).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.header.metadata
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.header.metadata[i].1)
    }

    /// Frees the parsed values of the metadata arrays whose keys start with `prefix` (they
    /// read as empty arrays afterwards): a 262k-token vocabulary held as metadata values
    /// costs tens of MB once a tokenizer has been built from it.
    pub fn release_arrays(&mut self, prefix: &str) {
        for (key, value) in &mut self.header.metadata {
            if key.starts_with(prefix) && matches!(value, Value::Array(_)) {
                *value = Value::Array(Vec::new());
            }
        }
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index
            .get(name)
            .map(|&i| &self.header.tensors[i])
    }

    /// The bytes of tensor `t`: a zero-copy slice of the map, `t.n_bytes` long.
    ///
    /// # Panics
    /// If `t` does not come from this file and its range lies outside it (a caller bug;
    /// ranges of this file's tensors were checked at open).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = usize::try_from(self.header.data_offset)
            .ok()
            .zip(usize::try_from(t.offset).ok())
            .and_then(|(base, off)| base.checked_add(off))
            .and_then(|start| Some(start..start.checked_add(t.n_bytes)?));
        range.and_then(|r| self.mmap.get(r)).unwrap_or_else(|| {
            panic!(
                "tensor `{}` is not from {} (its data range lies outside the file)",
                t.name,
                self.path.display()
            )
        })
    }
}
