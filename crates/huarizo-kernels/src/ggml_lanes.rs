//! Batches of Q4_0, Q4_1, Q5_0 and Q8_0 weights in llama.cpp's order with eight weight rows
//! in the lanes of a vector (AVX-512 VNNI).
//!
//! ggml sums a block's products in eight i32 lanes of four values each, scales each lane by
//! `d_w·d_y` into its own f32 partial sum, and adds the eight partial sums at the end
//! (`hsum_float_8`). Here the 512-bit vector `k` of a token holds partial sums `2k` and
//! `2k + 1` of eight weight rows (lanes `2r` and `2r + 1` for row r): the same fused
//! multiply-adds, lane by lane, and the same final additions done between vectors. The
//! weight side (its values as signed bytes, and per four values `−128·Σq`) is unpacked once
//! per row tile for the whole batch, so each pair of 4-value groups costs one `vpdpbusd`
//! (activations as unsigned `y + 128`, eight bytes broadcast), one conversion and one FMA,
//! and four tokens share each pass over the tile. Every result is bit for bit the one-row
//! kernel's.

use crate::blocks::{as_blocks, BlockQ8_0, BlockQ8_1, BlockQ8_K, QK};
use crate::GgmlType;

/// An activation block as the lane kernels read it: its quants as unsigned `y + 128`.
pub type LaneQuants = [u8; QK];

/// Eight weight rows (of a tile; fewer at the end of a matrix) against a batch, in
/// llama.cpp's order: `(w_tile, w_row, quants, scales, out)` with `out[t][r]` = row r of the
/// tile · activation row t, from the tables of [`lane_activations`].
pub type GgmlLanesFn = fn(&[u8], usize, &[LaneQuants], &[[f32; 2]], &mut [[f32; 8]]);

/// The tables the lane kernels read for `n_tokens` activation rows of `act_type` (Q8_0, Q8_1
/// or Q8_K), `a_row` bytes apart, token-major: per 32 values their quants plus 128 (for Q8_K
/// each super-block's eight chunks are followed by a ninth holding its eight 32-value sums as
/// little-endian i32), and per block `[d, s]` (`s` = 0 for Q8_0 and Q8_K). The capacity of
/// both vectors is reused.
pub fn lane_activations(
    act_type: GgmlType,
    acts: &[u8],
    a_row: usize,
    n_tokens: usize,
    quants: &mut Vec<LaneQuants>,
    scales: &mut Vec<[f32; 2]>,
) {
    if let Some(per_token) = sized_tables(act_type, a_row, n_tokens, quants, scales) {
        fill_tables(act_type, acts, a_row, per_token, 0, quants, scales);
    }
}

/// Batches from this many tokens on build their tables on the pool in
/// [`lane_activations_on`] (below it, dispatching costs about what it saves).
const TABLES_ON_POOL: usize = 32;

/// [`lane_activations`] with the tokens split over `pool` for batches of [`TABLES_ON_POOL`]
/// tokens or more (whose tables the other threads would otherwise wait for).
pub fn lane_activations_on(
    pool: &crate::pool::ThreadPool,
    act_type: GgmlType,
    acts: &[u8],
    a_row: usize,
    n_tokens: usize,
    quants: &mut Vec<LaneQuants>,
    scales: &mut Vec<[f32; 2]>,
) {
    let Some(per_token) = sized_tables(act_type, a_row, n_tokens, quants, scales) else {
        return;
    };
    if n_tokens < TABLES_ON_POOL || pool.n_threads() == 1 {
        return fill_tables(act_type, acts, a_row, per_token, 0, quants, scales);
    }
    let (per_q, per_s) = per_token;
    pool.for_rows_mut2(quants, per_q, scales, per_s, &|first, q, s| {
        fill_tables(act_type, acts, a_row, per_token, first, q, s);
    });
}

/// Fills the tables' entries (`per_token` of each per token) of the tokens from `first` on.
fn fill_tables(
    act_type: GgmlType,
    acts: &[u8],
    a_row: usize,
    (per_q, per_s): (usize, usize),
    first: usize,
    quants: &mut [LaneQuants],
    scales: &mut [[f32; 2]],
) {
    let rows = quants
        .chunks_exact_mut(per_q)
        .zip(scales.chunks_exact_mut(per_s));
    for (i, (q, s)) in rows.enumerate() {
        let t = first + i;
        token_tables(act_type, &acts[t * a_row..(t + 1) * a_row], q, s);
    }
}

/// Sizes the tables for `n_tokens` rows and returns the entries per token `(quants,
/// scales)`, or `None` when there is nothing to fill.
fn sized_tables(
    act_type: GgmlType,
    a_row: usize,
    n_tokens: usize,
    quants: &mut Vec<LaneQuants>,
    scales: &mut Vec<[f32; 2]>,
) -> Option<(usize, usize)> {
    let (per_q, per_s) = match act_type {
        GgmlType::Q8_0 => {
            let n = a_row / std::mem::size_of::<BlockQ8_0>();
            (n, n)
        }
        GgmlType::Q8_1 => {
            let n = a_row / std::mem::size_of::<BlockQ8_1>();
            (n, n)
        }
        GgmlType::Q8_K => {
            let n = a_row / std::mem::size_of::<BlockQ8_K>();
            (9 * n, n)
        }
        _ => panic!("lane kernels read Q8_0, Q8_1 or Q8_K activations, not {act_type}"),
    };
    quants.clear();
    scales.clear();
    quants.resize(n_tokens * per_q, [0; QK]);
    scales.resize(n_tokens * per_s, [0.0; 2]);
    (n_tokens > 0 && per_q > 0).then_some((per_q, per_s))
}

/// One activation row's entries of the tables (see [`lane_activations`]).
fn token_tables(
    act_type: GgmlType,
    row: &[u8],
    quants: &mut [LaneQuants],
    scales: &mut [[f32; 2]],
) {
    let shifted = |qs: &[i8; QK]| qs.map(|q| (q as u8) ^ 0x80);
    match act_type {
        GgmlType::Q8_0 => {
            for ((b, q), s) in as_blocks::<BlockQ8_0>(row).iter().zip(quants).zip(scales) {
                *q = shifted(&b.qs);
                *s = [b.d.get(), 0.0];
            }
        }
        GgmlType::Q8_1 => {
            for ((b, q), s) in as_blocks::<BlockQ8_1>(row).iter().zip(quants).zip(scales) {
                *q = shifted(&b.qs);
                *s = [b.d.get(), b.s.get()];
            }
        }
        _ => {
            let quants = quants.chunks_exact_mut(9);
            for ((b, q), s) in as_blocks::<BlockQ8_K>(row).iter().zip(quants).zip(scales) {
                for (q, chunk) in q.iter_mut().zip(b.qs.as_chunks::<QK>().0) {
                    *q = shifted(chunk);
                }
                // The eight 32-value sums (i32, little-endian) as a ninth chunk.
                for (j, sum) in q[8].as_chunks_mut::<4>().0.iter_mut().enumerate() {
                    *sum = (b.bsum(2 * j) + b.bsum(2 * j + 1)).to_le_bytes();
                }
                *s = [b.d(), 0.0];
            }
        }
    }
}

/// The lane kernel for weights of type `t` on this CPU, if it has one (AVX-512 VNNI).
pub fn ggml_lanes_kernel(t: GgmlType) -> Option<GgmlLanesFn> {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd_disabled() {
            return None;
        }
        crate::x86::ggml_lanes_kernel(t)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = t;
        None
    }
}

/// Batches with at least this many tokens take the lane kernels: below it, unpacking the
/// tile for the batch costs more than it saves.
pub const LANES_MIN_TOKENS: usize = 4;

/// The lane kernel for a batch of `n_tokens` rows against weights of type `t` with `n_out`
/// rows, if this CPU has one and the batch is large enough. Q6_K's is ggml's tiled order,
/// which llama.cpp uses only for batches of `crate::repacked::TILED_MIN_ROWS` rows or more;
/// Q4_K's are the orders of ggml's interleaved kernels, which llama.cpp uses for the weights
/// it repacks (`crate::repacked::repacked_kernels`).
pub fn batch_kernel(t: GgmlType, n_out: usize, n_tokens: usize) -> Option<GgmlLanesFn> {
    let usable = match t {
        GgmlType::Q6_K => n_tokens >= crate::repacked::TILED_MIN_ROWS,
        GgmlType::Q4_K => {
            n_tokens >= LANES_MIN_TOKENS && crate::repacked::repacked_kernels(t, n_out).is_some()
        }
        _ => n_tokens >= LANES_MIN_TOKENS,
    };
    if !usable {
        return None;
    }
    ggml_lanes_kernel(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Rng;
    use crate::{quantize_row, quantize_row_ref, vec_dot_kernel, vec_dot_type};

    /// The tables built on the pool are the ones built on one thread, for each activation
    /// type and a token count that does not split evenly.
    #[test]
    fn lane_tables_on_the_pool_equal_the_serial_ones() {
        let (n_in, n_tokens) = (512, 37);
        let pool = crate::pool::ThreadPool::new(2);
        let mut rng = Rng(5);
        for act in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
            let a_row = act.row_bytes(n_in).unwrap();
            let mut acts = vec![0u8; n_tokens * a_row];
            for row in acts.chunks_exact_mut(a_row) {
                let values: Vec<f32> = (0..n_in).map(|_| rng.f32()).collect();
                quantize_row(act, &values, row);
            }
            let (mut q1, mut s1, mut q2, mut s2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            lane_activations(act, &acts, a_row, n_tokens, &mut q1, &mut s1);
            lane_activations_on(&pool, act, &acts, a_row, n_tokens, &mut q2, &mut s2);
            assert!(!q1.is_empty(), "{act}: empty tables");
            assert_eq!(q1, q2, "{act}: quants");
            let bits = |s: &[[f32; 2]]| s.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&s1), bits(&s2), "{act}: scales");
        }
    }

    /// Every output of the lane kernels is the one-row kernel's (Q6_K: the tiled order's),
    /// bit for bit, for every row count of a tile and batch sizes that take each token-group
    /// width.
    #[test]
    fn lanes_equal_the_one_row_kernel_bit_for_bit() {
        let n_in = 512;
        let mut rng = Rng(11);
        let mut values = |n: usize| (0..n).map(|_| rng.f32()).collect::<Vec<f32>>();
        for t in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            let Some(kernel) = ggml_lanes_kernel(t) else {
                eprintln!("no lane kernel for {t} on this CPU");
                continue;
            };
            let act = vec_dot_type(t);
            let (w_row, a_row) = (t.row_bytes(n_in).unwrap(), act.row_bytes(n_in).unwrap());
            let n_tokens = 7;
            let mut w = vec![0u8; 8 * w_row];
            for row in w.chunks_exact_mut(w_row) {
                quantize_row_ref(t, &values(n_in), row);
            }
            let mut acts = vec![0u8; n_tokens * a_row];
            for row in acts.chunks_exact_mut(a_row) {
                quantize_row(act, &values(n_in), row);
            }
            let (mut quants, mut scales) = (Vec::new(), Vec::new());
            lane_activations(act, &acts, a_row, n_tokens, &mut quants, &mut scales);
            // Q6_K: the tiled order; Q4_K: the repacked GEMM order for the tokens of whole
            // groups of four, the GEMV order for the rest.
            let one_row = |tok: usize, n: usize| match crate::repacked::repacked_kernels(t, 8) {
                Some(k) => k.for_row(tok, n),
                None => crate::repacked::tiled_kernel(t).unwrap_or(vec_dot_kernel(t)),
            };
            for n_rows in 1..=8 {
                for n in [1, 2, 3, 5, n_tokens] {
                    let mut out = vec![[f32::NAN; 8]; n];
                    let (nq, ns) = (quants.len() / n_tokens, scales.len() / n_tokens);
                    kernel(
                        &w[..n_rows * w_row],
                        w_row,
                        &quants[..n * nq],
                        &scales[..n * ns],
                        &mut out,
                    );
                    for (tok, got) in out.iter().enumerate() {
                        let a = &acts[tok * a_row..(tok + 1) * a_row];
                        for r in 0..n_rows {
                            let want = one_row(tok, n)(&w[r * w_row..(r + 1) * w_row], a);
                            assert_eq!(
                                got[r].to_bits(),
                                want.to_bits(),
                                "{t}: rows {n_rows}, tokens {n}, token {tok}, row {r}"
                            );
                        }
                    }
                }
            }
        }
    }
}
