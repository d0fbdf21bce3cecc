//! Safetensors files, the weights of Hugging Face checkpoints: [`SafetensorsFile::open`]
//! maps a file and checks its header against it (every tensor's dtype, shape, byte length
//! and range); [`write_safetensors`] writes one atomically, one tensor's data at a time.
//!
//! The header is an 8-byte little-endian length, then a JSON object mapping each tensor
//! name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the end of
//! the header), plus an optional `__metadata__` string map. Entries are decoded with the
//! `safetensors` crate's own types, but checked here, so that an error names the tensor.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, TensorInfo as StInfo};

use crate::writer::{io_error, TempFile};
use crate::{GgmlType, WriteError};

/// Headers larger than this are refused (the `safetensors` crate's own limit).
pub const MAX_HEADER_BYTES: usize = 100_000_000;

/// What is wrong with a safetensors file (without the path; [`SafetensorsError`] adds it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SafetensorsFault {
    /// The header length, bytes or JSON are malformed.
    #[error("bad header: {0}")]
    Header(String),
    /// One tensor's entry is wrong: dtype, shape, size or data range.
    #[error("tensor `{tensor}`: {reason}")]
    Tensor {
        /// The tensor name as written in the header.
        tensor: String,
        /// What is wrong, with the numbers.
        reason: String,
    },
}

/// A safetensors file that could not be read: the file plus the fault.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    /// The file could not be opened or mapped.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid safetensors.
    #[error("{}: {fault}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        fault: SafetensorsFault,
    },
}

/// One tensor of a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeTensorInfo {
    /// Name as in the header, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// Element type (F32, F16 or BF16).
    pub dtype: GgmlType,
    /// Shape in PyTorch order: the last dimension is contiguous (a weight of out×in is
    /// `[out, in]`), the reverse of ggml's order.
    pub shape: Vec<u64>,
    /// Absolute byte offset of the data in the file.
    pub start: usize,
    /// Bytes of data.
    pub n_bytes: usize,
}

/// An open safetensors file: checked tensor entries plus the read-only map.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: Mmap,
    tensors: Vec<SafeTensorInfo>,
}

impl SafetensorsFile {
    /// Maps `path` and parses and checks its header against the file length.
    pub fn open(path: &Path) -> Result<SafetensorsFile, SafetensorsError> {
        let io = |error| SafetensorsError::Io {
            path: path.to_owned(),
            error,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: read-only map of a file huarizo never writes; as for GGUF files, the
        // user must not modify model files while they are in use.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let tensors = parse_safetensors(&mmap).map_err(|fault| SafetensorsError::Format {
            path: path.to_owned(),
            fault,
        })?;
        Ok(SafetensorsFile {
            path: path.to_owned(),
            mmap,
            tensors,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensors, by increasing data offset.
    pub fn tensors(&self) -> &[SafeTensorInfo] {
        &self.tensors
    }

    /// The bytes of `t` (a tensor of this file).
    pub fn data(&self, t: &SafeTensorInfo) -> &[u8] {
        &self.mmap[t.start..t.start + t.n_bytes]
    }

    /// The map and the tensors, to hand the map on (e.g. to
    /// [`GgufFile::from_parts`](crate::GgufFile::from_parts)).
    pub fn into_parts(self) -> (Mmap, Vec<SafeTensorInfo>) {
        (self.mmap, self.tensors)
    }
}

/// The GGUF type of a safetensors dtype huarizo reads.
fn ggml_type(dtype: Dtype) -> Option<GgmlType> {
    match dtype {
        Dtype::F32 => Some(GgmlType::F32),
        Dtype::F16 => Some(GgmlType::F16),
        Dtype::BF16 => Some(GgmlType::BF16),
        _ => None,
    }
}

/// The safetensors dtype name of a GGUF float type.
fn dtype_of(t: GgmlType) -> Option<Dtype> {
    match t {
        GgmlType::F32 => Some(Dtype::F32),
        GgmlType::F16 => Some(Dtype::F16),
        GgmlType::BF16 => Some(Dtype::BF16),
        _ => None,
    }
}

/// Parses and checks the header of a whole safetensors file held in `bytes`. Never
/// panics; nothing is allocated by a count from the file beyond the header's own size.
/// Tensors come back by increasing data offset; data ranges must lie in the file and
/// not overlap, and their lengths must match shape × dtype.
pub fn parse_safetensors(bytes: &[u8]) -> Result<Vec<SafeTensorInfo>, SafetensorsFault> {
    let header = |m: String| SafetensorsFault::Header(m);
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            header(format!(
                "file is {} bytes, shorter than the 8-byte header length",
                bytes.len()
            ))
        })?;
    let n = u64::from_le_bytes(len_bytes);
    if n > MAX_HEADER_BYTES as u64 || n > (bytes.len() - 8) as u64 {
        return Err(header(format!(
            "header length {n} exceeds the {} bytes after it (or the {MAX_HEADER_BYTES}-byte limit)",
            bytes.len() - 8
        )));
    }
    let data_start = 8 + n as usize;
    let text = std::str::from_utf8(&bytes[8..data_start])
        .map_err(|e| header(format!("header is not UTF-8: {e}")))?;
    let entries: BTreeMap<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| header(format!("header is not a JSON object: {e}")))?;
    let data_len = bytes.len() - data_start;
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if name == "__metadata__" {
            continue;
        }
        let bad = |reason: String| SafetensorsFault::Tensor {
            tensor: name.clone(),
            reason,
        };
        let info: StInfo =
            serde_json::from_value(value).map_err(|e| bad(format!("bad entry: {e}")))?;
        let dtype = ggml_type(info.dtype).ok_or_else(|| {
            bad(format!(
                "dtype {:?} is not supported (supported: F32, F16, BF16)",
                info.dtype
            ))
        })?;
        let shape: Vec<u64> = info.shape.iter().map(|&d| d as u64).collect();
        let expected = info
            .shape
            .iter()
            .try_fold(dtype.type_size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
        let (begin, end) = info.data_offsets;
        if end < begin || end > data_len {
            return Err(bad(format!(
                "data_offsets [{begin}, {end}] lie outside the {data_len} data bytes of the file"
            )));
        }
        if end - begin != expected {
            return Err(bad(format!(
                "data_offsets [{begin}, {end}] hold {} bytes, but shape {shape:?} of {:?} needs {expected}",
                end - begin,
                info.dtype
            )));
        }
        tensors.push(SafeTensorInfo {
            name,
            dtype,
            shape,
            start: data_start + begin,
            n_bytes: expected,
        });
    }
    tensors.sort_by_key(|t| (t.start, t.n_bytes));
    for pair in tensors.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.start + a.n_bytes > b.start && b.n_bytes > 0 && a.n_bytes > 0 {
            return Err(SafetensorsFault::Tensor {
                tensor: b.name.clone(),
                reason: format!(
                    "data at offset {} overlaps tensor `{}` ({} bytes at offset {})",
                    b.start - data_start,
                    a.name,
                    a.n_bytes,
                    a.start - data_start
                ),
            });
        }
    }
    Ok(tensors)
}

/// A tensor to write with [`write_safetensors`]: its name, float type and PyTorch-order
/// shape; the data comes from the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeTensorOut {
    /// Tensor name.
    pub name: String,
    /// F32, F16 or BF16.
    pub dtype: GgmlType,
    /// Shape in PyTorch order (last dimension contiguous).
    pub shape: Vec<u64>,
}

impl SafeTensorOut {
    /// Bytes of data: elements × element size.
    pub fn n_bytes(&self) -> usize {
        self.shape.iter().product::<u64>() as usize * self.dtype.type_size()
    }
}

/// Writes `tensors` to `path` atomically (temporary file, fsync, rename), with
/// `metadata` as the header's `__metadata__`. For each tensor in order, `fill(i, buf)`
/// appends its `n_bytes()` bytes to an empty, reused `buf`. Returns the file's length.
pub fn write_safetensors<E: From<WriteError>>(
    path: &Path,
    tensors: &[SafeTensorOut],
    metadata: &BTreeMap<String, String>,
    mut fill: impl FnMut(usize, &mut Vec<u8>) -> Result<(), E>,
) -> Result<u64, E> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(metadata).expect("a string map serializes"),
        );
    }
    let mut offset = 0usize;
    for t in tensors {
        let dtype = dtype_of(t.dtype).ok_or_else(|| WriteError::UnsupportedType {
            tensor: t.name.clone(),
            ggml_type: t.dtype,
            supported: "F32, F16, BF16",
        })?;
        let info = StInfo {
            dtype,
            shape: t.shape.iter().map(|&d| d as usize).collect(),
            data_offsets: (offset, offset + t.n_bytes()),
        };
        offset += t.n_bytes();
        header.insert(
            t.name.clone(),
            serde_json::to_value(&info).expect("tensor info serializes"),
        );
    }
    let mut text = serde_json::to_string(&header).expect("a JSON map serializes");
    // Pad with spaces so that the data starts 8-byte aligned, as the Python writer does.
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut tmp = TempFile::create(path)?;
    let mut out = tmp.writer();
    let io = |op: &'static str| move |e| io_error(op, path, e);
    out.write_all(&(text.len() as u64).to_le_bytes())
        .and_then(|()| out.write_all(text.as_bytes()))
        .map_err(io("writing"))?;
    let mut buf = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        buf.clear();
        fill(i, &mut buf)?;
        if buf.len() != t.n_bytes() {
            return Err(WriteError::DataLength {
                tensor: t.name.clone(),
                shape: t.shape.clone(),
                ggml_type: t.dtype,
                expected: t.n_bytes(),
                got: buf.len(),
            }
            .into());
        }
        out.write_all(&buf).map_err(io("writing"))?;
    }
    tmp.commit(out)?;
    Ok((8 + text.len() + offset) as u64)
}
