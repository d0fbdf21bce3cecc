//! Errors: [`ParseError`] says what is wrong with the bytes, [`GgufError`] adds the file.

use std::io;
use std::path::PathBuf;

use crate::GgmlType;

/// Why a byte buffer is not a valid GGUF file. Offsets are byte offsets from the start
/// of the file. Produced by [`parse_header`](crate::parse_header).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The file ends before a field it promises.
    #[error(
        "truncated file: {what} at offset {offset} needs {needed} bytes, only {available} remain"
    )]
    Truncated {
        /// The field being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {got:02x?}, expected \"GGUF\" (47 47 55 46)")]
    BadMagic {
        /// The first four bytes.
        got: [u8; 4],
    },
    /// A version other than 2 or 3.
    #[error("unsupported GGUF version {version}, supported: 2, 3")]
    UnsupportedVersion {
        /// The version field.
        version: u32,
    },
    /// The version field reads as 2 or 3 byte-swapped.
    #[error("big-endian GGUF (version field {version:#010x}) is not supported; convert the file to little-endian")]
    BigEndian {
        /// The version field as read little-endian.
        version: u32,
    },
    /// A count that cannot fit in the bytes that follow it.
    #[error("{what} count {count} at offset {offset} is impossible: {count} × at least {min_item_bytes} bytes each exceeds the {available} bytes remaining")]
    CountTooLarge {
        /// What is being counted.
        what: String,
        /// The count read.
        count: u64,
        /// Where the count field starts.
        offset: u64,
        /// The smallest encoding of one item.
        min_item_bytes: u64,
        /// Bytes left after the count field.
        available: u64,
    },
    /// A metadata value type id outside GGUF's 0..=12.
    #[error("key `{key}`: unknown metadata value type {type_id} at offset {offset}")]
    UnknownValueType {
        /// The key whose value (or array element type) is unknown.
        key: String,
        /// The type id read.
        type_id: u32,
        /// Where the type field starts.
        offset: u64,
    },
    /// Arrays nested deeper than [`MAX_ARRAY_DEPTH`](crate::MAX_ARRAY_DEPTH).
    #[error("key `{key}`: arrays nested deeper than {max} at offset {offset}")]
    NestingTooDeep {
        /// The key.
        key: String,
        /// The nesting limit.
        max: usize,
        /// Where the too-deep array starts.
        offset: u64,
    },
    /// A string whose bytes are not UTF-8.
    #[error("{what}: invalid UTF-8 in string at offset {offset}")]
    InvalidUtf8 {
        /// Whose string it is.
        what: String,
        /// Where the string's length field starts.
        offset: u64,
    },
    /// A bool byte other than 0 or 1.
    #[error("key `{key}`: bool byte is {byte}, expected 0 or 1, at offset {offset}")]
    InvalidBool {
        /// The key.
        key: String,
        /// The byte read.
        byte: u8,
        /// Its offset.
        offset: u64,
    },
    /// The same metadata key twice.
    #[error("duplicate metadata key `{key}` at offset {offset}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where the second copy starts.
        offset: u64,
    },
    /// `general.alignment` is not a nonzero power of two (or not an integer).
    #[error("`general.alignment` must be a nonzero power of two, got {got}")]
    BadAlignment {
        /// The value as found, e.g. `uint32 48`.
        got: String,
    },
    /// The same tensor name twice.
    #[error("duplicate tensor name `{tensor}` at offset {offset}")]
    DuplicateTensor {
        /// The tensor name.
        tensor: String,
        /// Where the second tensor info starts.
        offset: u64,
    },
    /// More than four dimensions.
    #[error("tensor `{tensor}`: {n_dims} dimensions at offset {offset}, at most 4 are supported")]
    TooManyDims {
        /// The tensor name.
        tensor: String,
        /// The dimension count read.
        n_dims: u32,
        /// Where the count starts.
        offset: u64,
    },
    /// The element or byte count of a shape overflows.
    #[error("tensor `{tensor}`: shape {shape:?} is too large (element or byte count overflows)")]
    ShapeOverflow {
        /// The tensor name.
        tensor: String,
        /// The shape, ggml order.
        shape: Vec<u64>,
    },
    /// A row length that is not a whole number of blocks.
    #[error("tensor `{tensor}`: row length {row} (shape {shape:?}) is not a multiple of the {ggml_type} block size {block_size}")]
    NotBlockMultiple {
        /// The tensor name.
        tensor: String,
        /// The shape, ggml order.
        shape: Vec<u64>,
        /// `shape[0]`.
        row: u64,
        /// The tensor's type.
        ggml_type: GgmlType,
        /// Its block size.
        block_size: usize,
    },
    /// A tensor type id huarizo does not know.
    #[error("tensor `{tensor}`: unknown or unsupported ggml type id {type_id} at offset {offset}; supported: {}", GgmlType::supported_list())]
    UnknownTensorType {
        /// The tensor name.
        tensor: String,
        /// The type id read.
        type_id: u32,
        /// Where the type field starts.
        offset: u64,
    },
    /// A tensor data offset that is not a multiple of the alignment.
    #[error(
        "tensor `{tensor}`: data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        /// The tensor name.
        tensor: String,
        /// The offset, relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// Tensor data that runs past the end of the file.
    #[error("tensor `{tensor}`: data at file bytes {start}..{end} runs past the end of the file ({file_len} bytes)")]
    TensorOutOfBounds {
        /// The tensor name.
        tensor: String,
        /// First byte, absolute (saturated if it overflows).
        start: u64,
        /// One past the last byte, absolute (saturated if it overflows).
        end: u64,
        /// File length.
        file_len: u64,
    },
    /// Two tensors whose data ranges overlap.
    #[error("tensors `{first}` (data offset {first_offset}, {first_bytes} bytes) and `{second}` (data offset {second_offset}) overlap")]
    OverlappingTensors {
        /// The tensor that starts first.
        first: String,
        /// Its data offset.
        first_offset: u64,
        /// Its byte length.
        first_bytes: u64,
        /// The tensor that starts inside it.
        second: String,
        /// Its data offset.
        second_offset: u64,
    },
}

/// A GGUF file that could not be opened: the path plus the I/O or format fault.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The file (or the parts of a view) is not valid GGUF.
    #[error("{}: {error}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: ParseError,
    },
}

impl GgufError {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            GgufError::Io { path, .. } | GgufError::Parse { path, .. } => path,
        }
    }

    /// The format fault, if this is one (not an I/O error).
    pub fn parse_error(&self) -> Option<&ParseError> {
        match self {
            GgufError::Parse { error, .. } => Some(error),
            GgufError::Io { .. } => None,
        }
    }
}

/// Why a [`GgufWriter`](crate::GgufWriter) refused a tensor or could not write its file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A second tensor with a name already added.
    #[error("duplicate tensor name `{tensor}`")]
    DuplicateTensor {
        /// The tensor name.
        tensor: String,
    },
    /// More dimensions than GGUF allows.
    #[error(
        "tensor `{tensor}`: {n_dims} dimensions, at most {} are supported",
        crate::MAX_DIMS
    )]
    TooManyDims {
        /// The tensor name.
        tensor: String,
        /// The dimension count given.
        n_dims: usize,
    },
    /// A shape a reader would reject: a row that is not whole blocks, or an overflowing
    /// element or byte count ([`ParseError::NotBlockMultiple`] or
    /// [`ParseError::ShapeOverflow`], which name the tensor).
    #[error(transparent)]
    BadShape(ParseError),
    /// Tensor data whose length does not match its shape and type.
    #[error("tensor `{tensor}`: {got} bytes of data, but shape {shape:?} of {ggml_type} needs {expected}")]
    DataLength {
        /// The tensor name.
        tensor: String,
        /// The shape, ggml order.
        shape: Vec<u64>,
        /// The tensor's type.
        ggml_type: GgmlType,
        /// Bytes the shape and type need.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A tensor type the destination format cannot hold (safetensors holds floats only).
    #[error("tensor `{tensor}`: type {ggml_type} cannot be written here (supported: {supported})")]
    UnsupportedType {
        /// The tensor name.
        tensor: String,
        /// Its type.
        ggml_type: GgmlType,
        /// The types that can be written.
        supported: &'static str,
    },
    /// A tensor declared without data, written by a method that has no way to get it.
    #[error("tensor `{tensor}` was declared without data; write the file with `write_with`")]
    MissingData {
        /// The tensor name.
        tensor: String,
    },
    /// An array whose elements are not all of the first element's type (GGUF arrays
    /// have one element type).
    #[error("key `{key}`: array element {index} is {got}, but the array's first element (which sets its type) is {expected}")]
    MixedArray {
        /// The key.
        key: String,
        /// The first element of another type (within the innermost offending array).
        index: usize,
        /// The first element's type.
        expected: &'static str,
        /// This element's type.
        got: &'static str,
    },
    /// Arrays nested deeper than a reader accepts.
    #[error("key `{key}`: arrays nested deeper than {}", crate::MAX_ARRAY_DEPTH)]
    NestingTooDeep {
        /// The key.
        key: String,
    },
    /// `general.alignment` is not an integer power of two that fits in `u32`.
    #[error("`general.alignment` must be a nonzero power of two up to 2^31, got {got}")]
    BadAlignment {
        /// The value as given, e.g. `uint32 48`.
        got: String,
    },
    /// Creating, writing or renaming the file failed.
    #[error("{}: {op}: {error}", path.display())]
    Io {
        /// What was being done (`writing`, `renaming the finished file into place`, …).
        op: &'static str,
        /// The destination file (the temporary file next to it is named after it).
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
}
