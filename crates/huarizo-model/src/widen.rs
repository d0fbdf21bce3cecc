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
}

/// Byte alignment of each tensor in the widened map (a cache line).
const ALIGN: usize = 64;

/// `file` with every tensor in F32, the metadata unchanged but `general.file_type`, the
/// weights in one anonymous map advised for huge pages. A file whose tensors are all F32
/// already is returned as it is. Costs 4 bytes per weight of memory; the source file's pages are not kept.
pub fn widen_to_f32(file: GgufFile) -> Result<GgufFile, ModelError> {
    if file.tensors().iter().all(|t| t.ggml_type == GgmlType::F32) {
        return Ok(file);
    }
    let mut layout = Vec::with_capacity(file.tensors().len());
    let mut total = 0usize;
    for t in file.tensors() {
        let bytes = n_values(t)
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
        let n = n_values(t).ok_or_else(|| too_large(t))?;
        widen_tensor(&file, t, &mut map[part.start..part.start + n * 4])?;
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

/// The number of values of `t` (the product of its dimensions), if it fits a `usize`.
fn n_values(t: &TensorInfo) -> Option<usize> {
    t.shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
}

/// Writes tensor `t` of `file` as little-endian f32 values into `out` (4 bytes per value
/// of `t`), row by row. A tensor without values writes nothing.
fn widen_tensor(file: &GgufFile, t: &TensorInfo, out: &mut [u8]) -> Result<(), ModelError> {
    let (width, _) = rows_of(t);
    if out.is_empty() || width == 0 {
        return Ok(());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An F16 matrix is widened value for value; a tensor without values (a zero
    /// dimension) widens to nothing instead of failing.
    #[test]
    fn widens_values_and_tolerates_empty_tensors() {
        let values: Vec<f32> = (0..64).map(|i| i as f32 * 0.25 - 3.0).collect();
        let mut map = memmap2::MmapMut::map_anon(128).unwrap();
        for (b, v) in map.chunks_exact_mut(2).zip(&values) {
            b.copy_from_slice(&half::f16::from_f32(*v).to_le_bytes());
        }
        let part = |name: &str, shape: Vec<u64>| PartTensor {
            name: name.into(),
            shape,
            ggml_type: GgmlType::F16,
            map: 0,
            start: 0,
        };
        let file = GgufFile::from_parts(
            std::path::Path::new("test.gguf"),
            vec![("general.file_type".into(), Value::U32(1))],
            vec![part("w", vec![32, 2]), part("empty", vec![32, 0])],
            vec![map.make_read_only().unwrap()],
        )
        .unwrap();
        let wide = widen_to_f32(file).unwrap();
        let w = wide.tensors().iter().find(|t| t.name == "w").unwrap();
        assert_eq!(w.ggml_type, GgmlType::F32);
        let got: Vec<f32> = wide
            .tensor_data(w)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(got, values);
        let empty = wide.tensors().iter().find(|t| t.name == "empty").unwrap();
        assert_eq!(wide.tensor_data(empty).len(), 0);
        assert!(wide
            .metadata()
            .iter()
            .any(|(k, v)| k == "general.file_type" && *v == Value::U32(0)));
    }
}
