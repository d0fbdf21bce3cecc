//! Matrix products of a stored weight matrix with a batch of activations.
//!
//! Shapes use one vocabulary: a weight `W` is `(n_out, n_in)`, row-major, each row in the
//! weight's own block format; activations are `(T, n_in)`: T token rows already quantized
//! to `vec_dot_type(W)`; the output is `(T, n_out)` in f32.

use crate::blocks::QK;
use crate::pool::ThreadPool;
use crate::{quantize_row, vec_dot_kernel, vec_dot_type};
use huarizo_formats::GgmlType;

/// Weight rows handled together, so that a tile of W stays in cache across the tokens.
const ROW_TILE: usize = 8;

/// A raw output pointer that threads write through at disjoint indices.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every user writes disjoint elements (threads own disjoint weight-row ranges).
unsafe impl Sync for SharedOut {}
// SAFETY: as above.
unsafe impl Send for SharedOut {}

/// Bytes one row of `n` values takes in format `t`. Panics if `n` is not a whole number of
/// blocks (the model loader checks shapes before any kernel runs).
pub fn row_bytes(t: GgmlType, n: usize) -> usize {
    t.row_bytes(n)
        .unwrap_or_else(|| panic!("{n} values are not a whole number of {} blocks", t.name()))
}

/// Quantizes `x` `(T, n_in)` into `dst` as T rows of `vec_dot_type(w_type)`, ready for
/// [`matmul`] with a weight of type `w_type`. `dst` is resized (reusing its capacity).
pub fn quantize_activations(w_type: GgmlType, x: &[f32], n_in: usize, dst: &mut Vec<u8>) {
    let act_type = vec_dot_type(w_type);
    let rb = row_bytes(act_type, n_in);
    let n_tokens = x.len() / n_in;
    dst.resize(rb * n_tokens, 0);
    for (src, out) in x.chunks_exact(n_in).zip(dst.chunks_exact_mut(rb)) {
        quantize_row(act_type, src, out);
    }
}

/// `out (T, n_out) = acts (T, n_in) · Wᵀ`, with W `(n_out, n_in)` of type `w_type` and the
/// activations already in `vec_dot_type(w_type)` (see [`quantize_activations`]).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    pool: &ThreadPool,
    w_type: GgmlType,
    w: &[u8],
    n_out: usize,
    n_in: usize,
    acts: &[u8],
    n_tokens: usize,
    out: &mut [f32],
) {
    let w_row = row_bytes(w_type, n_in);
    let a_row = row_bytes(vec_dot_type(w_type), n_in);
    assert!(
        w.len() >= w_row * n_out,
        "weight shorter than (n_out, n_in)"
    );
    assert!(
        acts.len() >= a_row * n_tokens,
        "activations shorter than (T, n_in)"
    );
    assert!(
        out.len() >= n_out * n_tokens,
        "output shorter than (T, n_out)"
    );
    // Where llama.cpp would repack W, follow its kernels' summation orders.
    let repacked = crate::repacked::repacked_kernels(w_type, n_out);
    let tiled = n_tokens >= crate::repacked::TILED_MIN_ROWS;
    let plain = match crate::repacked::tiled_kernel(w_type) {
        Some(kernel) if tiled => kernel,
        _ => vec_dot_kernel(w_type),
    };
    // Four tokens at a time, in the order the one-token kernel for those rows would use.
    let dot4 = match (repacked, crate::repacked::tiled_kernel4(w_type)) {
        (Some(k), _) => k.gemm4,
        (None, Some(kernel)) if tiled => Some(kernel),
        (None, _) if crate::repacked::tiled_kernel(w_type).is_some() && tiled => None,
        (None, _) => crate::vec_dot4_kernel(w_type),
    };
    // Where a pre-scaled kernel exists, the activation scales of each group of four tokens
    // are converted to f32 once here instead of once per weight row.
    let scaled = match (repacked, n_tokens >= 4) {
        (None, true) => crate::scaled4_kernel(w_type),
        _ => None,
    };
    let n_blocks = n_in / QK;
    SCALES.with_borrow_mut(|scales| {
        scales.clear();
        if scaled.is_some() {
            group_scales(acts, a_row, n_blocks, n_tokens / 4, scales);
        }
        let scales: &[[f32; 8]] = scales;
        matmul_tiles(
            pool,
            MatmulPlan {
                w,
                w_row,
                n_out,
                acts,
                a_row,
                n_tokens,
                dot4,
                scaled,
                scales,
                n_blocks,
                plain,
                repacked,
            },
            out,
        );
    });
}

thread_local! {
    /// Activation scales of the current batch, reused across calls (no allocation per token).
    static SCALES: std::cell::RefCell<Vec<[f32; 8]>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Q8_1 block scales `[d₀..d₃, s₀..s₃]` per (group of four tokens, block), as f32.
fn group_scales(
    acts: &[u8],
    a_row: usize,
    n_blocks: usize,
    n_groups: usize,
    out: &mut Vec<[f32; 8]>,
) {
    use crate::blocks::{as_blocks, BlockQ8_1};
    out.reserve(n_groups * n_blocks);
    for g in 0..n_groups {
        let rows: [&[BlockQ8_1]; 4] =
            std::array::from_fn(|r| as_blocks(&acts[(4 * g + r) * a_row..(4 * g + r + 1) * a_row]));
        out.extend((0..n_blocks).map(|i| {
            let mut sc = [0f32; 8];
            for (r, row) in rows.iter().enumerate() {
                sc[r] = row[i].d.get();
                sc[4 + r] = row[i].s.get();
            }
            sc
        }));
    }
}

/// Everything one matmul's row tiles need.
struct MatmulPlan<'a> {
    w: &'a [u8],
    w_row: usize,
    n_out: usize,
    acts: &'a [u8],
    a_row: usize,
    n_tokens: usize,
    dot4: Option<crate::VecDot4Fn>,
    scaled: Option<crate::ScaledDot4Fn>,
    scales: &'a [[f32; 8]],
    n_blocks: usize,
    plain: crate::VecDotFn,
    repacked: Option<crate::repacked::RepackedKernels>,
}

fn matmul_tiles(pool: &ThreadPool, p: MatmulPlan<'_>, out: &mut [f32]) {
    let MatmulPlan {
        w,
        w_row,
        n_out,
        acts,
        a_row,
        n_tokens,
        dot4,
        scaled,
        scales,
        n_blocks,
        plain,
        repacked,
    } = p;
    let out_ptr = SharedOut(out.as_mut_ptr());
    pool.for_chunks(n_out.div_ceil(ROW_TILE), &|tiles| {
        let out_ptr = &out_ptr;
        let rows = tiles.start * ROW_TILE..(tiles.end * ROW_TILE).min(n_out);
        for tile_start in rows.clone().step_by(ROW_TILE) {
            let tile = tile_start..(tile_start + ROW_TILE).min(rows.end);
            // Four tokens at a time where a four-row kernel exists (same bits as one by one).
            let mut t0 = 0;
            if let Some(scaled) = scaled {
                while t0 + 4 <= n_tokens {
                    let a = [0, 1, 2, 3].map(|i| &acts[(t0 + i) * a_row..(t0 + i + 1) * a_row]);
                    let sc = &scales[(t0 / 4) * n_blocks..(t0 / 4 + 1) * n_blocks];
                    for r in tile.clone() {
                        let values = scaled(&w[r * w_row..(r + 1) * w_row], a, sc);
                        for (i, v) in values.into_iter().enumerate() {
                            // SAFETY: as below.
                            unsafe { *out_ptr.0.add((t0 + i) * n_out + r) = v };
                        }
                    }
                    t0 += 4;
                }
            }
            if let Some(dot4) = dot4 {
                while t0 + 4 <= n_tokens {
                    let a = [0, 1, 2, 3].map(|i| &acts[(t0 + i) * a_row..(t0 + i + 1) * a_row]);
                    for r in tile.clone() {
                        let values = dot4(&w[r * w_row..(r + 1) * w_row], a);
                        for (i, v) in values.into_iter().enumerate() {
                            // SAFETY: as below.
                            unsafe { *out_ptr.0.add((t0 + i) * n_out + r) = v };
                        }
                    }
                    t0 += 4;
                }
            }
            for t in t0..n_tokens {
                let a = &acts[t * a_row..(t + 1) * a_row];
                let dot = repacked.map_or(plain, |k| k.for_row(t, n_tokens));
                for r in tile.clone() {
                    let value = dot(&w[r * w_row..(r + 1) * w_row], a);
                    // SAFETY: `r` lies in this thread's disjoint row range and
                    // `t * n_out + r < n_tokens * n_out <= out.len()` (asserted above).
                    unsafe { *out_ptr.0.add(t * n_out + r) = value };
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dequantize_row;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matmul_equals_row_by_row_dot_products() {
        let (n_out, n_in, n_tokens) = (37, 64, 3);
        let w_f32 = values(n_out * n_in, 1);
        let mut w = vec![0u8; row_bytes(GgmlType::Q8_0, n_in) * n_out];
        for (src, dst) in w_f32
            .chunks_exact(n_in)
            .zip(w.chunks_exact_mut(row_bytes(GgmlType::Q8_0, n_in)))
        {
            quantize_row(GgmlType::Q8_0, src, dst);
        }
        let x = values(n_tokens * n_in, 2);
        let mut acts = Vec::new();
        quantize_activations(GgmlType::Q8_0, &x, n_in, &mut acts);
        let pool = ThreadPool::new(2);
        let mut out = vec![0f32; n_tokens * n_out];
        matmul(
            &pool,
            GgmlType::Q8_0,
            &w,
            n_out,
            n_in,
            &acts,
            n_tokens,
            &mut out,
        );
        let mut w_deq = vec![0f32; n_in];
        let mut x_deq = vec![0f32; n_in];
        for t in 0..n_tokens {
            let a = &acts[t * row_bytes(GgmlType::Q8_0, n_in)..][..row_bytes(GgmlType::Q8_0, n_in)];
            dequantize_row(GgmlType::Q8_0, a, &mut x_deq);
            for r in 0..n_out {
                let wr =
                    &w[r * row_bytes(GgmlType::Q8_0, n_in)..][..row_bytes(GgmlType::Q8_0, n_in)];
                dequantize_row(GgmlType::Q8_0, wr, &mut w_deq);
                let expect: f32 = w_deq.iter().zip(&x_deq).map(|(a, b)| a * b).sum();
                let got = out[t * n_out + r];
                assert!(
                    (got - expect).abs() <= 1e-3 * (1.0 + expect.abs()),
                    "t={t} r={r}: {got} vs {expect}"
                );
            }
        }
    }
}
