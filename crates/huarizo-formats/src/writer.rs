//! [`GgufWriter`]: assembles metadata and tensors into a GGUF file laid out byte for byte as
//! llama.cpp's `gguf_write_to_file` and gguf-py's `GGUFWriter` lay it out, and writes it
//! atomically (a temporary file in the destination's folder, fsync, rename).
//!
//! Layout, all little-endian: magic `GGUF`, version u32, tensor count u64, metadata count
//! u64; each metadata entry (key string, value type u32, value); each tensor info (name
//! string, n_dims u32, one u64 per dimension, ggml type u32, data offset u64); zero bytes up
//! to the next multiple of the alignment; then each tensor's data followed by zero bytes up
//! to the next multiple of the alignment (the last tensor's included). A string is its byte
//! length u64 then its UTF-8 bytes; an array is its element type u32, its count u64, then
//! the elements without type fields. Offsets are relative to the data section and assigned
//! in the order tensors were added.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::parse::tensor_bytes;
use crate::{
    GgmlType, GgufFile, TensorInfo, Value, WriteError, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS,
};

/// The GGUF version [`GgufWriter::new`] writes.
const VERSION: u32 = 3;

/// Builds a GGUF file: metadata entries in insertion order, then tensors in insertion
/// order, each with its data given up front ([`tensor`](Self::tensor), borrowed or owned)
/// or produced while writing ([`tensor_deferred`](Self::tensor_deferred) plus
/// [`write_with`](Self::write_with), so a converter holds one tensor at a time).
///
/// Tensors are validated as they are added (name, dimensions, shape against type, data
/// length); metadata values and `general.alignment` when the file is written. Whatever
/// the writer accepts, [`GgufFile::open`] reads back.
///
/// Metadata arrays: GGUF gives an array one element type, which [`Value::Array`] does not
/// keep, so the writer takes it from the first element and rejects arrays whose elements
/// differ in type ([`WriteError::MixedArray`]; nested arrays may each have their own
/// element type). An empty array is written with element type uint8 (0), which every GGUF
/// reader (ours, llama.cpp's, gguf-py's) accepts for an empty array.
pub struct GgufWriter<'a> {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<Pending<'a>>,
    names: HashSet<String>,
}

/// One tensor added to the writer; `info.offset` is assigned at write time.
struct Pending<'a> {
    info: TensorInfo,
    /// `None` for a tensor whose data [`GgufWriter::write_with`]'s callback supplies.
    data: Option<Cow<'a, [u8]>>,
}

impl std::fmt::Debug for GgufWriter<'_> {
    /// Version, metadata keys and tensor infos; not the data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.metadata.iter().map(|(k, _)| k.as_str()).collect();
        let tensors: Vec<&TensorInfo> = self.tensors.iter().map(|t| &t.info).collect();
        f.debug_struct("GgufWriter")
            .field("version", &self.version)
            .field("metadata_keys", &keys)
            .field("tensors", &tensors)
            .finish()
    }
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        GgufWriter::new()
    }
}

impl<'a> GgufWriter<'a> {
    /// An empty GGUF v3 file: no metadata, no tensors.
    pub fn new() -> GgufWriter<'a> {
        GgufWriter {
            version: VERSION,
            metadata: Vec::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// A writer holding a copy of `file`'s metadata, in file order, and its version (2 and
    /// 3 share one little-endian layout), but no tensors: callers change some keys and add
    /// tensors, e.g. `file`'s own with [`GgufFile::tensor_data`].
    ///
    /// `file` must not have had metadata arrays freed by [`GgufFile::release_arrays`]: a
    /// released array reads as empty and would be written empty.
    pub fn from_file(file: &GgufFile) -> GgufWriter<'a> {
        GgufWriter {
            version: file.version(),
            metadata: file.metadata().to_vec(),
            ..GgufWriter::new()
        }
    }

    /// Sets metadata `key` to `value`: a new key goes after the existing ones, an existing
    /// key keeps its position.
    pub fn metadata(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Removes metadata `key`, returning its value if it was present.
    pub fn remove_metadata(&mut self, key: &str) -> Option<Value> {
        let i = self.metadata.iter().position(|(k, _)| k == key)?;
        Some(self.metadata.remove(i).1)
    }

    /// The value of metadata `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The metadata entries, in the order they will be written.
    pub fn metadata_entries(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// Adds tensor `name` of `shape` (ggml order: `shape[0]` is the row length) and type
    /// `ggml_type` with its `data`, borrowed (`&[u8]`, e.g. a slice of another file) or
    /// owned (`Vec<u8>`). Fails on a duplicate name, more than [`MAX_DIMS`] dimensions, a
    /// row that is not whole blocks of the type, or data whose length is not
    /// `row_bytes(shape[0]) × shape[1] × …`.
    pub fn tensor(
        &mut self,
        name: impl Into<String>,
        shape: Vec<u64>,
        ggml_type: GgmlType,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<&mut Self, WriteError> {
        let info = self.check_tensor(name.into(), shape, ggml_type)?;
        let data = data.into();
        check_length(&info, data.len())?;
        self.add(info, Some(data));
        Ok(self)
    }

    /// Declares tensor `name` like [`tensor`](Self::tensor) but without its data, which the
    /// callback of [`write_with`](Self::write_with) produces when the tensor's turn comes.
    pub fn tensor_deferred(
        &mut self,
        name: impl Into<String>,
        shape: Vec<u64>,
        ggml_type: GgmlType,
    ) -> Result<&mut Self, WriteError> {
        let info = self.check_tensor(name.into(), shape, ggml_type)?;
        self.add(info, None);
        Ok(self)
    }

    /// The tensors as they will be written: infos with their data offsets (relative to
    /// the data section) under the current `general.alignment`.
    pub fn tensor_infos(&self) -> Result<Vec<TensorInfo>, WriteError> {
        let alignment = self.alignment()?;
        let mut offset = 0u64;
        let mut infos = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let mut info = t.info.clone();
            info.offset = offset;
            offset = padded(offset + info.n_bytes as u64, alignment);
            infos.push(info);
        }
        Ok(infos)
    }

    /// Writes the file to `path` atomically and returns its length in bytes. Every tensor
    /// must have been given its data ([`WriteError::MissingData`] otherwise).
    pub fn write_to(&self, path: &Path) -> Result<u64, WriteError> {
        self.write_with(path, |info, _| {
            Err(WriteError::MissingData {
                tensor: info.name.clone(),
            })
        })
    }

    /// Writes the file to `path` atomically and returns its length in bytes. For each
    /// tensor declared with [`tensor_deferred`](Self::tensor_deferred), in file order,
    /// `fill(info, buf)` is called with an empty `buf` to append exactly `info.n_bytes`
    /// bytes (the buffer is reused, so one tensor's data is held at a time). An error from
    /// `fill` stops the write; the destination is then left untouched and the temporary
    /// file removed.
    pub fn write_with<E: From<WriteError>>(
        &self,
        path: &Path,
        fill: impl FnMut(&TensorInfo, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut tmp = TempFile::create(path)?;
        let mut out = tmp.writer();
        let io = |op: &'static str| move |error| io_error(op, path, error);
        let n = self.write_stream(&mut out, fill, &io("writing"))?;
        tmp.commit(out)?;
        Ok(n)
    }

    /// The whole file in memory (every tensor must have its data).
    pub fn to_bytes(&self) -> Result<Vec<u8>, WriteError> {
        let mut out = Vec::new();
        self.write_stream(
            &mut out,
            |info, _| {
                Err(WriteError::MissingData {
                    tensor: info.name.clone(),
                })
            },
            &|error| io_error("writing", Path::new("<memory>"), error),
        )?;
        Ok(out)
    }

    /// Validates a tensor's name and shape; returns its info (offset 0 for now).
    fn check_tensor(
        &self,
        name: String,
        shape: Vec<u64>,
        ggml_type: GgmlType,
    ) -> Result<TensorInfo, WriteError> {
        if self.names.contains(&name) {
            return Err(WriteError::DuplicateTensor { tensor: name });
        }
        if shape.len() > MAX_DIMS {
            return Err(WriteError::TooManyDims {
                tensor: name,
                n_dims: shape.len(),
            });
        }
        let n_bytes = tensor_bytes(&name, &shape, ggml_type).map_err(WriteError::BadShape)?;
        Ok(TensorInfo {
            name,
            shape,
            ggml_type,
            offset: 0,
            n_bytes,
        })
    }

    fn add(&mut self, info: TensorInfo, data: Option<Cow<'a, [u8]>>) {
        self.names.insert(info.name.clone());
        self.tensors.push(Pending { info, data });
    }

    /// `general.alignment`, validated as the reader does, or the default 32.
    fn alignment(&self) -> Result<u64, WriteError> {
        match self.get("general.alignment") {
            None => Ok(DEFAULT_ALIGNMENT),
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two() && *a <= u64::from(u32::MAX))
                .ok_or_else(|| WriteError::BadAlignment {
                    got: format!("{} {v:?}", v.type_name()),
                }),
        }
    }

    /// Writes header, padding and data to `out`; returns the bytes written.
    fn write_stream<E: From<WriteError>>(
        &self,
        out: &mut impl Write,
        mut fill: impl FnMut(&TensorInfo, &mut Vec<u8>) -> Result<(), E>,
        io: &dyn Fn(io::Error) -> WriteError,
    ) -> Result<u64, E> {
        let alignment = self.alignment()?;
        let infos = self.tensor_infos()?;

        let mut header = Vec::new();
        header.extend_from_slice(b"GGUF");
        header.extend_from_slice(&self.version.to_le_bytes());
        header.extend_from_slice(&(infos.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut header, key);
            header.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut header, key, value, 0)?;
        }
        for info in &infos {
            put_str(&mut header, &info.name);
            header.extend_from_slice(&(info.shape.len() as u32).to_le_bytes());
            for &d in &info.shape {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&info.ggml_type.id().to_le_bytes());
            header.extend_from_slice(&info.offset.to_le_bytes());
        }
        let mut written = header.len() as u64;
        out.write_all(&header).map_err(io)?;
        written += pad(out, written, alignment).map_err(io)?;
        drop(header);

        let mut buf = Vec::new();
        for (t, info) in self.tensors.iter().zip(&infos) {
            let data: &[u8] = match &t.data {
                Some(data) => data,
                None => {
                    buf.clear();
                    fill(info, &mut buf)?;
                    check_length(info, buf.len())?;
                    &buf
                }
            };
            out.write_all(data).map_err(io)?;
            written += data.len() as u64;
            written += pad(out, written, alignment).map_err(io)?;
        }
        out.flush().map_err(io)?;
        Ok(written)
    }
}

/// Fails unless `len` is the byte length `info`'s shape and type need.
fn check_length(info: &TensorInfo, len: usize) -> Result<(), WriteError> {
    if len == info.n_bytes {
        return Ok(());
    }
    Err(WriteError::DataLength {
        tensor: info.name.clone(),
        shape: info.shape.clone(),
        ggml_type: info.ggml_type,
        expected: info.n_bytes,
        got: len,
    })
}

/// `n` rounded up to a multiple of `alignment` (a power of two).
fn padded(n: u64, alignment: u64) -> u64 {
    n.next_multiple_of(alignment)
}

/// Writes zeros from position `at` up to the next multiple of `alignment`; returns how many.
fn pad(out: &mut impl Write, at: u64, alignment: u64) -> io::Result<u64> {
    const ZEROS: [u8; 64] = [0; 64];
    let mut n = padded(at, alignment) - at;
    let total = n;
    while n > 0 {
        let k = n.min(ZEROS.len() as u64);
        out.write_all(&ZEROS[..k as usize])?;
        n -= k;
    }
    Ok(total)
}

/// A GGUF string: u64 byte length, then the UTF-8 bytes.
fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The payload of `value` (no type field) for metadata `key`; `depth` counts the arrays
/// enclosing it, as the reader counts them.
fn put_value(out: &mut Vec<u8>, key: &str, value: &Value, depth: usize) -> Result<(), WriteError> {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(WriteError::NestingTooDeep {
                    key: key.to_owned(),
                });
            }
            // An empty array's element type is not known; uint8 (0) is as good as any.
            let elem_type = items.first().map_or(0, Value::type_id);
            out.extend_from_slice(&elem_type.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for (index, item) in items.iter().enumerate() {
                if item.type_id() != elem_type {
                    return Err(WriteError::MixedArray {
                        key: key.to_owned(),
                        index,
                        expected: items[0].type_name(),
                        got: item.type_name(),
                    });
                }
                put_value(out, key, item, depth + 1)?;
            }
        }
    }
    Ok(())
}

pub(crate) fn io_error(op: &'static str, path: &Path, error: io::Error) -> WriteError {
    WriteError::Io {
        op,
        path: path.to_owned(),
        error,
    }
}

/// A file being written under a temporary name (`.{name}.{pid}-{n}.tmp`) in its
/// destination's folder; removed on drop unless [`persist`](Self::persist) renamed it into
/// place.
pub(crate) struct TempFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
    done: bool,
}

impl TempFile {
    pub(crate) fn create(dest: &Path) -> Result<TempFile, WriteError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = dest.file_name().ok_or_else(|| {
            io_error(
                "creating",
                dest,
                io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
            )
        })?;
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let n = N.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.{}-{n}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&tmp)
            .map_err(|e| io_error("creating a temporary file next to it", dest, e))?;
        Ok(TempFile {
            tmp,
            dest: dest.to_owned(),
            file: Some(file),
            done: false,
        })
    }

    /// The file, buffered for writing (once).
    pub(crate) fn writer(&mut self) -> BufWriter<File> {
        let file = self.file.take().expect("a fresh TempFile holds its file");
        BufWriter::with_capacity(1 << 20, file)
    }

    /// Flushes and syncs what [`TempFile::writer`] wrote, then [`TempFile::persist`]s it.
    pub(crate) fn commit(self, out: BufWriter<File>) -> Result<(), WriteError> {
        let dest = self.dest.clone();
        let file = out
            .into_inner()
            .map_err(|e| io_error("writing", &dest, e.into_error()))?;
        file.sync_all()
            .map_err(|e| io_error("syncing to disk", &dest, e))?;
        drop(file);
        self.persist()
    }

    /// Renames the (already synced and closed) file over the destination and syncs the
    /// folder so the rename itself is durable.
    pub(crate) fn persist(mut self) -> Result<(), WriteError> {
        self.file.take();
        std::fs::rename(&self.tmp, &self.dest)
            .map_err(|e| io_error("renaming the finished file into place", &self.dest, e))?;
        self.done = true;
        #[cfg(unix)]
        if let Some(dir) = self.dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A failure here loses nothing already written.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            self.file.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_a_key_keeps_its_position() {
        let mut w = GgufWriter::new();
        w.metadata("a", Value::U8(1))
            .metadata("b", Value::U8(2))
            .metadata("a", Value::U8(3));
        let keys: Vec<_> = w
            .metadata_entries()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(w.get("a"), Some(&Value::U8(3)));
        assert_eq!(w.remove_metadata("a"), Some(Value::U8(3)));
        assert_eq!(w.get("a"), None);
    }

    #[test]
    fn tensors_are_validated_as_added() {
        let mut w = GgufWriter::new();
        w.tensor("a", vec![32, 2], GgmlType::Q8_0, vec![0u8; 68])
            .unwrap();
        let err = |r: Result<&mut GgufWriter, WriteError>| r.unwrap_err().to_string();
        let dup = err(w.tensor("a", vec![4], GgmlType::F32, vec![0u8; 16]));
        assert!(dup.contains("duplicate tensor name `a`"), "{dup}");
        let dims = err(w.tensor("b", vec![1; 5], GgmlType::F32, vec![0u8; 4]));
        assert!(dims.contains("`b`: 5 dimensions"), "{dims}");
        let row = err(w.tensor("c", vec![33, 1], GgmlType::Q8_0, vec![0u8; 34]));
        assert!(row.contains("`c`: row length 33"), "{row}");
        let len = err(w.tensor("d", vec![32, 2], GgmlType::Q8_0, vec![0u8; 67]));
        assert!(
            len.contains("`d`: 67 bytes of data") && len.contains("needs 68"),
            "{len}"
        );
        let deferred = err(w.tensor_deferred("a", vec![4], GgmlType::F32));
        assert!(deferred.contains("duplicate"), "{deferred}");
    }

    #[test]
    fn bad_metadata_is_refused_at_write_time() {
        let mixed = Value::Array(vec![Value::U8(1), Value::String("x".into())]);
        let mut w = GgufWriter::new();
        w.metadata("m", mixed);
        let e = w.to_bytes().unwrap_err().to_string();
        assert!(
            e.contains("key `m`: array element 1 is string") && e.contains("uint8"),
            "{e}"
        );

        let mut deep = Value::U8(0);
        for _ in 0..=MAX_ARRAY_DEPTH {
            deep = Value::Array(vec![deep]);
        }
        let mut w = GgufWriter::new();
        w.metadata("deep", deep);
        let e = w.to_bytes().unwrap_err().to_string();
        assert!(e.contains("key `deep`: arrays nested deeper"), "{e}");

        let mut w = GgufWriter::new();
        w.metadata("general.alignment", Value::U32(48));
        let e = w.to_bytes().unwrap_err().to_string();
        assert!(e.contains("uint32 U32(48)"), "{e}");

        let mut w = GgufWriter::new();
        w.tensor_deferred("t", vec![4], GgmlType::F32).unwrap();
        let e = w.to_bytes().unwrap_err().to_string();
        assert!(e.contains("`t` was declared without data"), "{e}");
    }

    #[test]
    fn layout_pads_header_and_every_tensor() {
        let mut w = GgufWriter::new();
        w.metadata("general.alignment", Value::U32(64))
            .tensor("a", vec![3], GgmlType::F32, vec![1u8; 12])
            .unwrap()
            .tensor("b", vec![2], GgmlType::F16, vec![2u8; 4])
            .unwrap();
        let infos = w.tensor_infos().unwrap();
        assert_eq!((infos[0].offset, infos[1].offset), (0, 64));
        let bytes = w.to_bytes().unwrap();
        assert_eq!(bytes.len() % 64, 0);
        let header = crate::parse_header(&bytes).unwrap();
        assert_eq!(bytes.len() as u64, header.data_offset + 128);
        let start = header.data_offset as usize;
        assert_eq!(&bytes[start..start + 12], &[1u8; 12]);
        assert!(bytes[start + 12..start + 64].iter().all(|&b| b == 0));
        assert_eq!(&bytes[start + 64..start + 68], &[2u8; 4]);
    }
}
