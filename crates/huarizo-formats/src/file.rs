//! [`GgufFile`]: a validated header plus the memory-mapped file, or a GGUF-shaped view
//! assembled from parts ([`GgufFile::from_parts`]: metadata built elsewhere, tensors in
//! several maps, e.g. the safetensors shards of a Hugging Face checkpoint).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::{parse_header, GgmlType, GgufError, Header, ParseError, TensorInfo, Value};

/// An open GGUF file: parsed, validated metadata and tensor infos, with the weights
/// left in read-only memory maps (never copied).
///
/// A file opened with [`GgufFile::open`] has one map, the file itself. A view built with
/// [`GgufFile::from_parts`] has several; its tensors' [`TensorInfo::offset`]s are then
/// positions in the maps laid end to end (map `i` starts at `bases[i]`), and
/// `header().data_offset` is 0.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    header: Header,
    key_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
    maps: Vec<Mmap>,
    /// Start of each map in the concatenated address space; strictly increasing.
    bases: Vec<u64>,
}

/// One tensor of a view assembled by [`GgufFile::from_parts`]: its name, shape and type
/// (as in GGUF) and where its bytes start in which map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartTensor {
    /// GGUF tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Shape in ggml order (`shape[0]` is the row length).
    pub shape: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Index of the map holding the bytes.
    pub map: usize,
    /// Byte offset of the data inside that map.
    pub start: usize,
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
        Ok(GgufFile::assemble(path, header, vec![mmap], vec![0]))
    }

    /// A GGUF-shaped view of data that is not one GGUF file: `metadata` as GGUF keys and
    /// values, `tensors` lying in `maps`. Each tensor's byte length follows from its shape
    /// and type and must lie inside its map; names and keys must be unique. Errors name
    /// `path` (the folder or file the parts came from) and the tensor or key at fault.
    pub fn from_parts(
        path: &Path,
        metadata: Vec<(String, Value)>,
        tensors: Vec<PartTensor>,
        maps: Vec<Mmap>,
    ) -> Result<GgufFile, GgufError> {
        let fail = |error| GgufError::Parse {
            path: path.to_owned(),
            error,
        };
        let mut keys = HashSet::new();
        for (key, _) in &metadata {
            if !keys.insert(key.as_str()) {
                return Err(fail(ParseError::DuplicateKey {
                    key: key.clone(),
                    offset: 0,
                }));
            }
        }
        let mut bases = Vec::with_capacity(maps.len());
        let mut next = 0u64;
        for m in &maps {
            bases.push(next);
            // +1 keeps the bases strictly increasing even for empty maps.
            next = next.saturating_add(m.len() as u64 + 1);
        }
        let mut names = HashSet::new();
        let mut infos = Vec::with_capacity(tensors.len());
        for t in tensors {
            if !names.insert(t.name.clone()) {
                return Err(fail(ParseError::DuplicateTensor {
                    tensor: t.name,
                    offset: 0,
                }));
            }
            let n_bytes =
                crate::parse::tensor_bytes(&t.name, &t.shape, t.ggml_type).map_err(fail)?;
            let map_len = maps.get(t.map).map(|m| m.len());
            let end = t.start.checked_add(n_bytes);
            match (map_len, end) {
                (Some(len), Some(end)) if end <= len => {}
                _ => {
                    return Err(fail(ParseError::TensorOutOfBounds {
                        tensor: t.name,
                        start: t.start as u64,
                        end: end.map_or(u64::MAX, |e| e as u64),
                        file_len: map_len.unwrap_or(0) as u64,
                    }))
                }
            }
            infos.push(TensorInfo {
                name: t.name,
                shape: t.shape,
                ggml_type: t.ggml_type,
                offset: bases[t.map] + t.start as u64,
                n_bytes,
            });
        }
        let header = Header {
            version: 3,
            alignment: crate::DEFAULT_ALIGNMENT,
            data_offset: 0,
            metadata,
            tensors: infos,
        };
        Ok(GgufFile::assemble(path, header, maps, bases))
    }

    fn assemble(path: &Path, header: Header, maps: Vec<Mmap>, bases: Vec<u64>) -> GgufFile {
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
        GgufFile {
            path: path.to_owned(),
            header,
            key_index,
            tensor_index,
            maps,
            bases,
        }
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

    /// Drops this process's pages of bytes `range` of tensor `t` from memory (from the page
    /// holding the range's start to the last page that ends inside it), for bytes the caller
    /// has copied elsewhere: the mapping stays valid and a later read brings the bytes back
    /// from the file. Best effort: an error of the system call is ignored (the pages then
    /// just stay).
    pub fn release_pages(&self, t: &TensorInfo, range: std::ops::Range<usize>) {
        let range = range.start.min(t.n_bytes)..range.end.min(t.n_bytes);
        let Some(pos) = self.header.data_offset.checked_add(t.offset) else {
            return;
        };
        let Some(i) = self.bases.partition_point(|&b| b <= pos).checked_sub(1) else {
            return;
        };
        let Ok(start) = usize::try_from(pos - self.bases[i]) else {
            return;
        };
        let map = &self.maps[i];
        let page = 4096;
        // The page holding the range's first byte goes too (its earlier bytes, if any, are
        // the tensor's previous range or another tensor's: dropping them only costs a
        // re-read), so that consecutive ranges release every page between them; the page
        // holding its end stays (its later bytes may still be read).
        let first = (start + range.start) / page * page;
        let end = (start + range.end).min(map.len()) / page * page;
        if end > first {
            // SAFETY: the map is a read-only mapping of a file: its pages are the file's, so
            // dropping them from this process loses nothing (the next access reads them
            // again), and every slice into them stays valid.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, end - first)
            };
        }
    }

    /// The bytes of tensor `t`: a zero-copy slice of its map, `t.n_bytes` long.
    ///
    /// # Panics
    /// If `t` does not come from this file and its range lies outside it (a caller bug;
    /// ranges of this file's tensors were checked at open).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let data = self
            .header
            .data_offset
            .checked_add(t.offset)
            .and_then(|pos| {
                let i = self.bases.partition_point(|&b| b <= pos).checked_sub(1)?;
                let start = usize::try_from(pos - self.bases[i]).ok()?;
                self.maps[i].get(start..start.checked_add(t.n_bytes)?)
            });
        data.unwrap_or_else(|| {
            panic!(
                "tensor `{}` is not from {} (its data range lies outside the file)",
                t.name,
                self.path.display()
            )
        })
    }
}
