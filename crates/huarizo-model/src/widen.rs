//! The full-precision path's weights: a model file with every tensor widened to F32 in
//! memory, as `llama-quantize … F32` or `huarizo convert --type F32` would write it, so
//! that the decoder multiplies f32 weights by f32 activations (ggml's F32 dot product
//! takes its activations unquantized) instead of quantizing activations per block.

use crate::error::ModelError;
use crate::weights::rows_of;
use huarizo_formats::{GgmlType, GgufFile, PartTensor, TensorInfo, Value};

/// Which numbers the weight products multiply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// The weights as the file stores them, activations quantized to each weight type's
    /// dot-product block type: llama.cpp's arithmetic on this file, bit for bit.
    #[default]
    File,
    /// Every weight widened to F32 at load and activations kept in f32: llama.cpp's
    /// arithmetic on an F32 copy of the file (4 bytes per weight of memory), the nearest to
    /// PyTorch/transformers on the dequantized weights.
    F32,
}

impl Precision {
    /// Every precision, for messages.
    pub const ALL: [Precision; 2] = [Precision::File, Precision::F32];

    /// The precision's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::File => "file",
            Precision::F32 => "f32",
        }
    }

    /// The precision named `s` (case-insensitive).
    pub fn parse(s: &str) -> Option<Precision> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }
}

/// Byte alignment of each tensor in the widened map (a cache line).
const ALIGN: usize = 64;

/// `file` with every tensor in F32, the metadata unchanged but `general.file_type`, the weights in one anonymous
/// map advised for huge pages. A file whose tensors are all F32 already is returned as it
/// is. Costs 4 bytes per weight of memory; the source file's pages are not kept.
pub fn widen_to_f32(file: GgufFile) -> Result<GgufFile, ModelError> {
    if file.tensors().iter().all(|t| t.ggml_type == GgmlType::F32) {
        return Ok(file);
    }
    let mut layout = Vec::with_capacity(file.tensors().len());
    let mut total = 0usize;
    for t in file.tensors() {
        let (width, rows) = rows_of(t);
        let bytes = width
            .checked_mul(rows)
            .and_then(|n| n.checked_mul(4))
            .ok_or_else(|| too_large(t))?;
        layout.push(PartTensor {
            name: t.name.clone(),
            shape: t.shape.clone(),
            ggml_type: GgmlType::F32,
            map: 0,
            start: total,
        });
        total = total
            .checked_add(bytes.div_ceil(ALIGN) * ALIGN)
            .ok_or_else(|| too_large(t))?;
    }
    let io = |op| {
        let path = file.path().to_owned();
        move |error| ModelError::Io { op, path, error }
    };
    let mut map = memmap2::MmapMut::map_anon(total.max(1))
        .map_err(io("mapping memory for the F32 weights"))?;
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    for (t, part) in file.tensors().iter().zip(&layout) {
        let (width, rows) = rows_of(t);
        widen_tensor(
            &file,
            t,
            &mut map[part.start..part.start + width * rows * 4],
        )?;
    }
    let map = map
        .make_read_only()
        .map_err(io("protecting the F32 weights"))?;
    // `general.file_type` says F32 (llama_ftype 0), as in a file llama-quantize widened.
    let mut metadata: Vec<(String, Value)> = file
        .metadata()
        .iter()
        .filter(|(key, _)| key != "general.file_type")
        .cloned()
        .collect();
    metadata.push(("general.file_type".into(), Value::U32(0)));
    GgufFile::from_parts(file.path(), metadata, layout, vec![map]).map_err(ModelError::from)
}

/// Writes tensor `t` of `file` as little-endian f32 values into `out`, row by row.
fn widen_tensor(file: &GgufFile, t: &TensorInfo, out: &mut [u8]) -> Result<(), ModelError> {
    let (width, _) = rows_of(t);
    let mut row = vec![0.0f32; width];
    for (r, dst) in out.chunks_exact_mut(width * 4).enumerate() {
        crate::weights::dequantize_rows_into(file, t, r, &mut row)?;
        for (bytes, v) in dst.chunks_exact_mut(4).zip(&row) {
            bytes.copy_from_slice(&v.to_le_bytes());
        }
    }
    Ok(())
}

fn too_large(t: &TensorInfo) -> ModelError {
    ModelError::Invalid(format!(
        "tensor {} is too large to widen to F32 (shape {:?})",
        t.name, t.shape
    ))
}
