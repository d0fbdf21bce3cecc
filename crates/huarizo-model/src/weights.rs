//! Weights as numbers: a tensor of the file dequantized to f32, whole or a few rows at a
//! time, for the front ends that study weights rather than run them (lineage, export).

use crate::error::ModelError;
use huarizo_formats::{GgufFile, TensorInfo};

/// Row width and row count of a tensor (ggml order: `shape[0]` is the row width; every
/// further dimension multiplies the rows).
pub fn rows_of(info: &TensorInfo) -> (usize, usize) {
    let width = info.shape.first().copied().unwrap_or(1) as usize;
    let rows = info.shape.iter().skip(1).product::<u64>() as usize;
    (width, rows.max(1))
}

/// Dequantizes rows `start..start + count` of `info` into `dst` (`count × width` values).
pub fn dequantize_rows_into(
    file: &GgufFile,
    info: &TensorInfo,
    start: usize,
    dst: &mut [f32],
) -> Result<(), ModelError> {
    let (width, rows) = rows_of(info);
    let ty = info.ggml_type;
    let row_bytes = ty.row_bytes(width).ok_or_else(|| ModelError::BadShape {
        name: info.name.clone(),
        expected: vec![ty.block_size() as u64],
        got: info.shape.clone(),
    })?;
    let count = dst.len() / width.max(1);
    if start + count > rows || dst.len() != count * width {
        return Err(ModelError::BadShape {
            name: info.name.clone(),
            expected: vec![width as u64, (start + count) as u64],
            got: info.shape.clone(),
        });
    }
    let data = file.tensor_data(info);
    for (r, out) in dst.chunks_exact_mut(width).enumerate() {
        let at = (start + r) * row_bytes;
        huarizo_kernels::dequantize_row(ty, &data[at..at + row_bytes], out);
    }
    Ok(())
}

/// The whole tensor dequantized to f32, row after row.
pub fn dequantize(file: &GgufFile, info: &TensorInfo) -> Result<Vec<f32>, ModelError> {
    let (width, rows) = rows_of(info);
    let mut out = vec![0.0f32; width * rows];
    dequantize_rows_into(file, info, 0, &mut out)?;
    Ok(out)
}

/// Selected rows of a tensor (for example the embedding rows of a few tokens), in the
/// order given.
pub fn dequantize_selected_rows(
    file: &GgufFile,
    info: &TensorInfo,
    rows: &[usize],
) -> Result<Vec<f32>, ModelError> {
    let (width, _) = rows_of(info);
    let mut out = vec![0.0f32; width * rows.len()];
    for (&r, dst) in rows.iter().zip(out.chunks_exact_mut(width.max(1))) {
        dequantize_rows_into(file, info, r, dst)?;
    }
    Ok(out)
}

/// Sum of squared differences between `values` and the same values stored as `ty` and
/// read back (reference quantizer; float types round to nearest). Lets tests check
/// error models against real rounding.
pub fn roundtrip_sq_error(ty: huarizo_formats::GgmlType, values: &[f32]) -> f64 {
    values
        .iter()
        .zip(&roundtrip(ty, values))
        .map(|(&a, &b)| ((a - b) as f64).powi(2))
        .sum()
}

/// `values` (whole rows of the tensor) stored as `ty` with the reference quantizer.
/// `values.len()` must be whole blocks of `ty`.
pub fn quantize(ty: huarizo_formats::GgmlType, values: &[f32]) -> Vec<u8> {
    let bytes = ty
        .row_bytes(values.len())
        .unwrap_or_else(|| panic!("{} values are not whole {} blocks", values.len(), ty.name()));
    let mut packed = vec![0u8; bytes];
    huarizo_kernels::quantize_row_ref(ty, values, &mut packed);
    packed
}

/// `values` stored as `ty` with the reference quantizer and read back.
pub fn roundtrip(ty: huarizo_formats::GgmlType, values: &[f32]) -> Vec<f32> {
    let packed = quantize(ty, values);
    let mut back = vec![0.0f32; values.len()];
    huarizo_kernels::dequantize_row(ty, &packed, &mut back);
    back
}

/// `Y = X Wᵀ` for the tensor `info` (one weight row per output) and `n` input rows `x`
/// (`n × width`), computed with the engine's kernels at the weight's own type: the inputs
/// are quantized to the weight's activation format as in the forward pass, and the
/// weights are never dequantized. Output rows are split over `threads` threads.
pub fn apply(
    file: &GgufFile,
    info: &TensorInfo,
    x: &[f32],
    n: usize,
    threads: usize,
) -> Result<Vec<f32>, ModelError> {
    let (width, rows) = rows_of(info);
    let ty = info.ggml_type;
    let act = huarizo_kernels::vec_dot_type(ty);
    let (Some(w_bytes), Some(a_bytes)) = (ty.row_bytes(width), act.row_bytes(width)) else {
        return Err(ModelError::BadShape {
            name: info.name.clone(),
            expected: vec![ty.block_size() as u64],
            got: info.shape.clone(),
        });
    };
    if x.len() != n * width {
        return Err(ModelError::BadShape {
            name: info.name.clone(),
            expected: vec![(x.len() / n.max(1)) as u64],
            got: info.shape.clone(),
        });
    }
    let mut a = vec![0u8; n * a_bytes];
    for (src, dst) in x.chunks_exact(width).zip(a.chunks_exact_mut(a_bytes)) {
        huarizo_kernels::quantize_row(act, src, dst);
    }
    let data = file.tensor_data(info);
    let dot = huarizo_kernels::vec_dot_kernel(ty);
    let dot4 = huarizo_kernels::vec_dot4_kernel(ty);
    let threads = threads.clamp(1, rows.max(1));
    let per = rows.div_ceil(threads);
    let a = &a;
    let blocks: Vec<(usize, Vec<f32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (lo, hi) = ((t * per).min(rows), ((t + 1) * per).min(rows));
                s.spawn(move || {
                    // Column-major block: outputs of weight row r for every input.
                    let mut out = vec![0.0f32; (hi - lo) * n];
                    for (r, o) in (lo..hi).zip(out.chunks_exact_mut(n.max(1))) {
                        let w = &data[r * w_bytes..(r + 1) * w_bytes];
                        let act_row = |i: usize| &a[i * a_bytes..(i + 1) * a_bytes];
                        let mut i = 0;
                        if let Some(dot4) = dot4 {
                            while i + 4 <= n {
                                let v = dot4(
                                    w,
                                    [act_row(i), act_row(i + 1), act_row(i + 2), act_row(i + 3)],
                                );
                                o[i..i + 4].copy_from_slice(&v);
                                i += 4;
                            }
                        }
                        for (k, v) in o.iter_mut().enumerate().skip(i) {
                            *v = dot(w, act_row(k));
                        }
                    }
                    (lo, out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("kernel threads do not panic"))
            .collect()
    });
    let mut y = vec![0.0f32; n * rows];
    for (lo, out) in blocks {
        for (k, col) in out.chunks_exact(n.max(1)).enumerate() {
            for (i, v) in col.iter().enumerate() {
                y[i * rows + lo + k] = *v;
            }
        }
    }
    Ok(y)
}
