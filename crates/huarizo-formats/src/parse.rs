//! The byte-level GGUF parser. Everything here reads `&[u8]` and trusts none of it:
//! every count is checked against the bytes that remain before it is looped over,
//! every length and product uses checked arithmetic, and vectors grow only as items
//! are actually read.

use std::collections::HashSet;

use crate::{GgmlType, ParseError, Value};

/// `general.alignment` when the key is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most tensor dimensions GGUF (and ggml) allow.
pub const MAX_DIMS: usize = 4;
/// How deep metadata arrays may nest. Real files nest at most 2; the limit keeps a
/// hostile file from overflowing the stack through recursion.
pub const MAX_ARRAY_DEPTH: usize = 16;

/// The `GGUF` magic bytes at offset 0.
const MAGIC: [u8; 4] = *b"GGUF";
/// Smallest encoding of a metadata entry: key length (8) + value type (4) + 1-byte value.
const MIN_KV_BYTES: u64 = 13;
/// Smallest encoding of a tensor info: name length (8) + n_dims (4) + type (4) + offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 24;

/// Where one tensor's data lives and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Shape in ggml order: `shape[0]` is the contiguous (row) length; a weight of
    /// out×in is `[in, out]`. Empty for a scalar; at most [`MAX_DIMS`] entries.
    pub shape: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section (a multiple of the alignment).
    pub offset: u64,
    /// Bytes of data.
    pub n_bytes: usize,
}

impl TensorInfo {
    /// Number of elements (the product of `shape`, saturating; validated files never saturate).
    pub fn n_elements(&self) -> u64 {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX)
    }
}

/// Everything in a GGUF file except the tensor data, validated against the file length.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Format version (2 or 3).
    pub version: u32,
    /// Tensor data alignment in bytes (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute file offset of the data section (tensor offsets are relative to it).
    /// May lie past the end of the file when no tensor has data.
    pub data_offset: u64,
    /// Metadata entries in file order; keys are unique.
    pub metadata: Vec<(String, Value)>,
    /// Tensor infos in file order; names are unique, data ranges lie inside the file
    /// and do not overlap.
    pub tensors: Vec<TensorInfo>,
}

impl Header {
    /// The value of metadata key `key` (linear search; [`GgufFile`](crate::GgufFile) indexes).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Parses and validates a whole GGUF file held in `bytes`: header, metadata and tensor
/// infos are decoded; tensor data ranges are checked against `bytes.len()` but not read.
///
/// Never panics. Memory is O(`bytes.len()`): nothing is sized by a count from the file,
/// and the worst case, a `uint8` array decoded to one [`Value`] per byte, costs about 32
/// bytes (64 while its vector grows) per input byte.
pub fn parse_header(bytes: &[u8]) -> Result<Header, ParseError> {
    let mut r = Reader { bytes, pos: 0 };

    let magic: [u8; 4] = r.array().map_err(|s| s.reading("magic"))?;
    if magic != MAGIC {
        return Err(ParseError::BadMagic { got: magic });
    }
    let version = r.u32().map_err(|s| s.reading("version"))?;
    match version {
        2 | 3 => {}
        v if matches!(v.swap_bytes(), 2 | 3) => {
            return Err(ParseError::BigEndian { version: v });
        }
        v => return Err(ParseError::UnsupportedVersion { version: v }),
    }
    let tensor_count_at = r.pos;
    let tensor_count = r.u64().map_err(|s| s.reading("tensor count"))?;
    let kv_count_at = r.pos;
    let kv_count = r.u64().map_err(|s| s.reading("metadata count"))?;
    check_count(
        "tensor",
        tensor_count,
        MIN_TENSOR_INFO_BYTES,
        tensor_count_at,
        &r,
    )?;
    check_count("metadata", kv_count, MIN_KV_BYTES, kv_count_at, &r)?;

    let mut metadata = Vec::new();
    let mut seen_keys = HashSet::new();
    for i in 0..kv_count {
        let entry_at = r.pos;
        let key = r.string(&|| format!("key of metadata entry {i}"))?;
        if !seen_keys.insert(key) {
            return Err(ParseError::DuplicateKey {
                key: key.to_owned(),
                offset: entry_at as u64,
            });
        }
        let type_at = r.pos;
        let type_id = r
            .u32()
            .map_err(|s| s.reading(&format!("value type of key `{key}`")))?;
        let value = read_value(&mut r, type_id, type_at, key, 0)?;
        metadata.push((key.to_owned(), value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => v
            .as_u64()
            .filter(|a| a.is_power_of_two() && *a <= u64::from(u32::MAX))
            .ok_or_else(|| ParseError::BadAlignment {
                got: format!("{} {v:?}", v.type_name()),
            })?,
    };

    let mut tensors = Vec::new();
    let mut seen_names = HashSet::new();
    for i in 0..tensor_count {
        let info_at = r.pos;
        let name = r.string(&|| format!("name of tensor info {i}"))?;
        if !seen_names.insert(name) {
            return Err(ParseError::DuplicateTensor {
                tensor: name.to_owned(),
                offset: info_at as u64,
            });
        }
        let ctx = || format!("info of tensor `{name}`");
        let n_dims_at = r.pos;
        let n_dims = r.u32().map_err(|s| s.reading(&ctx()))?;
        if n_dims as usize > MAX_DIMS {
            return Err(ParseError::TooManyDims {
                tensor: name.to_owned(),
                n_dims,
                offset: n_dims_at as u64,
            });
        }
        let mut shape = Vec::new();
        for _ in 0..n_dims {
            shape.push(r.u64().map_err(|s| s.reading(&ctx()))?);
        }
        let type_at = r.pos;
        let type_id = r.u32().map_err(|s| s.reading(&ctx()))?;
        let ggml_type =
            GgmlType::from_id(type_id).ok_or_else(|| ParseError::UnknownTensorType {
                tensor: name.to_owned(),
                type_id,
                offset: type_at as u64,
            })?;
        let offset = r.u64().map_err(|s| s.reading(&ctx()))?;
        if offset % alignment != 0 {
            return Err(ParseError::MisalignedTensor {
                tensor: name.to_owned(),
                offset,
                alignment,
            });
        }
        let n_bytes = tensor_bytes(name, &shape, ggml_type)?;
        tensors.push(TensorInfo {
            name: name.to_owned(),
            shape,
            ggml_type,
            offset,
            n_bytes,
        });
    }

    // The data section starts at the next multiple of the alignment. Overflow can only
    // come from an absurd file; it saturates and then fails the bounds check below.
    let header_end = r.pos as u64;
    let data_offset = header_end
        .checked_next_multiple_of(alignment)
        .unwrap_or(u64::MAX);

    let file_len = bytes.len() as u64;
    for t in &tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes as u64));
        if end.is_none_or(|e| e > file_len) {
            return Err(ParseError::TensorOutOfBounds {
                tensor: t.name.clone(),
                start: start.unwrap_or(u64::MAX),
                end: end.unwrap_or(u64::MAX),
                file_len,
            });
        }
    }
    check_overlaps(&tensors)?;

    Ok(Header {
        version,
        alignment,
        data_offset,
        metadata,
        tensors,
    })
}

/// Bytes of a tensor of `shape` and type `t`, after checking the row is whole blocks.
///
/// A zero dimension makes the tensor empty, but the other dimensions still become
/// strides downstream, so the shape is validated as if each zero were 1: every element
/// count, row byte count and partial product of dimensions must be representable
/// (elements in ggml's int64, bytes in usize).
pub(crate) fn tensor_bytes(name: &str, shape: &[u64], t: GgmlType) -> Result<usize, ParseError> {
    let overflow = || ParseError::ShapeOverflow {
        tensor: name.to_owned(),
        shape: shape.to_vec(),
    };
    let row = shape.first().copied().unwrap_or(1);
    let block_size = t.block_size() as u64;
    if row % block_size != 0 {
        return Err(ParseError::NotBlockMultiple {
            tensor: name.to_owned(),
            shape: shape.to_vec(),
            row,
            ggml_type: t,
            block_size: t.block_size(),
        });
    }
    // Validate the span (zeros counted as 1): it bounds every partial product.
    let span = |dims: &[u64]| checked_product(dims.iter().map(|&d| d.max(1)));
    let outer = shape.get(1..).unwrap_or(&[]);
    span(shape)
        .filter(|&n| i64::try_from(n).is_ok())
        .ok_or_else(overflow)?;
    let bytes_of = |row: u64, rows: u64| {
        (row / block_size)
            .checked_mul(t.type_size() as u64)
            .and_then(|b| b.checked_mul(rows))
            .and_then(|b| usize::try_from(b).ok())
    };
    let span_rows = span(outer).ok_or_else(overflow)?;
    bytes_of(row.max(block_size), span_rows).ok_or_else(overflow)?;
    // Both are bounded by the span just checked, so these cannot fail; stay checked anyway.
    let rows = checked_product(outer.iter().copied()).ok_or_else(overflow)?;
    bytes_of(row, rows).ok_or_else(overflow)
}

/// The product of `dims`, or `None` on overflow.
fn checked_product(dims: impl IntoIterator<Item = u64>) -> Option<u64> {
    dims.into_iter().try_fold(1u64, u64::checked_mul)
}

/// Fails if any two tensors with data share a byte.
fn check_overlaps(tensors: &[TensorInfo]) -> Result<(), ParseError> {
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // Both ranges were bounds-checked, so this sum cannot overflow; stay checked anyway.
        let a_end = a.offset.saturating_add(a.n_bytes as u64);
        if a_end > b.offset {
            return Err(ParseError::OverlappingTensors {
                first: a.name.clone(),
                first_offset: a.offset,
                first_bytes: a.n_bytes as u64,
                second: b.name.clone(),
                second_offset: b.offset,
            });
        }
    }
    Ok(())
}

/// Fails unless `count` items of at least `min_item_bytes` each fit in what remains.
fn check_count(
    what: &str,
    count: u64,
    min_item_bytes: u64,
    count_at: usize,
    r: &Reader<'_>,
) -> Result<(), ParseError> {
    let available = r.remaining() as u64;
    if count
        .checked_mul(min_item_bytes)
        .is_none_or(|n| n > available)
    {
        return Err(ParseError::CountTooLarge {
            what: what.to_owned(),
            count,
            offset: count_at as u64,
            min_item_bytes,
            available,
        });
    }
    Ok(())
}

/// Smallest encoding of a metadata value of GGUF type `type_id`; `None` if unknown.
fn min_value_bytes(type_id: u32) -> Option<u64> {
    match type_id {
        0 | 1 | 7 => Some(1),   // u8, i8, bool
        2 | 3 => Some(2),       // u16, i16
        4..=6 => Some(4),       // u32, i32, f32
        8 | 10..=12 => Some(8), // string (length), u64, i64, f64
        9 => Some(12),          // array: element type + count
        _ => None,
    }
}

/// Reads one value of GGUF type `type_id` (whose type field started at `type_at`) for `key`.
/// `depth` counts the arrays enclosing this value.
fn read_value<'a>(
    r: &mut Reader<'a>,
    type_id: u32,
    type_at: usize,
    key: &str,
    depth: usize,
) -> Result<Value, ParseError> {
    let ctx = || format!("value of key `{key}`");
    let short = |s: Short| s.reading(&ctx());
    Ok(match type_id {
        0 => Value::U8(r.u8().map_err(short)?),
        1 => Value::I8(i8::from_le_bytes(r.array().map_err(short)?)),
        2 => Value::U16(u16::from_le_bytes(r.array().map_err(short)?)),
        3 => Value::I16(i16::from_le_bytes(r.array().map_err(short)?)),
        4 => Value::U32(r.u32().map_err(short)?),
        5 => Value::I32(i32::from_le_bytes(r.array().map_err(short)?)),
        6 => Value::F32(f32::from_le_bytes(r.array().map_err(short)?)),
        7 => {
            let at = r.pos;
            match r.u8().map_err(short)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                byte => {
                    return Err(ParseError::InvalidBool {
                        key: key.to_owned(),
                        byte,
                        offset: at as u64,
                    })
                }
            }
        }
        8 => Value::String(r.string(&ctx)?.to_owned()),
        9 => {
            let array_at = r.pos;
            if depth >= MAX_ARRAY_DEPTH {
                return Err(ParseError::NestingTooDeep {
                    key: key.to_owned(),
                    max: MAX_ARRAY_DEPTH,
                    offset: array_at as u64,
                });
            }
            let elem_type = r.u32().map_err(short)?;
            let min = min_value_bytes(elem_type).ok_or_else(|| ParseError::UnknownValueType {
                key: key.to_owned(),
                type_id: elem_type,
                offset: array_at as u64,
            })?;
            let count_at = r.pos;
            let count = r.u64().map_err(short)?;
            check_count(
                &format!("array element (key `{key}`)"),
                count,
                min,
                count_at,
                r,
            )?;
            let mut items = Vec::new();
            for _ in 0..count {
                items.push(read_value(r, elem_type, array_at, key, depth + 1)?);
            }
            Value::Array(items)
        }
        10 => Value::U64(r.u64().map_err(short)?),
        11 => Value::I64(i64::from_le_bytes(r.array().map_err(short)?)),
        12 => Value::F64(f64::from_le_bytes(r.array().map_err(short)?)),
        _ => {
            return Err(ParseError::UnknownValueType {
                key: key.to_owned(),
                type_id,
                offset: type_at as u64,
            })
        }
    })
}

/// A read that ran off the end of the buffer; the caller adds what was being read.
struct Short {
    offset: usize,
    needed: u64,
    available: usize,
}

impl Short {
    fn reading(self, what: &str) -> ParseError {
        ParseError::Truncated {
            what: what.to_owned(),
            offset: self.offset as u64,
            needed: self.needed,
            available: self.available as u64,
        }
    }
}

/// A little-endian cursor over the file bytes. Invariant: `pos <= bytes.len()`.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Short> {
        let short = Short {
            offset: self.pos,
            needed: n,
            available: self.remaining(),
        };
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n));
        match end.and_then(|end| self.bytes.get(self.pos..end).map(|s| (s, end))) {
            Some((slice, end)) => {
                self.pos = end;
                Ok(slice)
            }
            None => Err(short),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes. `what` names whose string it
    /// is and is only called on error.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<&'a str, ParseError> {
        let at = self.pos;
        let len = self.u64().map_err(|s| s.reading(&what()))?;
        let raw = self.take(len).map_err(|s| s.reading(&what()))?;
        std::str::from_utf8(raw).map_err(|_| ParseError::InvalidUtf8 {
            what: what(),
            offset: at as u64,
        })
    }
}
