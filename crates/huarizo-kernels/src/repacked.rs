//! The arithmetic of ggml's repacked ("interleaved") K-quant kernels.
//!
//! On x86 with AVX2, llama.cpp interleaves Q4_K weight matrices whose row count is a multiple
//! of 8 into 8-row blocks at load time and multiplies them with its own GEMV/GEMM kernels
//! (`ggml_gemv_q4_K_8x8_q8_K`, `ggml_gemm_q4_K_8x8_q8_K`). Per output they sum differently
//! from `ggml_vec_dot_q4_K_q8_K`: the whole super-block's integer sums first, then one fused
//! multiply-add per super-block into a scale accumulator and a min accumulator, subtracted
//! at the end (the GEMM for groups of four activation rows does one per 64-value pair of
//! sub-blocks instead). huarizo keeps the file's layout but follows that order, so that its results
//! equal llama.cpp's bit for bit.

use crate::blocks::{as_blocks, scale_min_k4, BlockQ4_K, BlockQ6_K, BlockQ8_K};
use crate::{VecDot4Fn, VecDotFn};
use huarizo_formats::GgmlType;

/// The kernels llama.cpp's repacking would apply to a weight of type `t` with `n_rows`
/// rows, if it repacks it.
pub fn repacked_kernels(t: GgmlType, n_rows: usize) -> Option<RepackedKernels> {
    let [gemv, gemm, _] = order_kernels();
    match t {
        GgmlType::Q4_K if n_rows.is_multiple_of(8) => Some(RepackedKernels {
            gemm,
            gemv,
            gemm4: order_kernels_x4().map(|k| k[0]),
            tile4: q4_k_tile4(),
        }),
        _ => None,
    }
}

/// The order-following kernels, SIMD where the CPU has it (same results either way: the
/// integer sums are exact and the float steps are the same): [Q4_K GEMV, Q4_K GEMM, Q6_K
/// tiled].
fn order_kernels() -> [VecDotFn; 3] {
    static KERNELS: std::sync::OnceLock<[VecDotFn; 3]> = std::sync::OnceLock::new();
    *KERNELS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = crate::x86::order_kernels() {
            return k;
        }
        [
            dot_q4_k_q8_k_gemv_order,
            dot_q4_k_q8_k_gemm_order,
            dot_q6_k_q8_k_tiled_order,
        ]
    })
}

/// The two summation orders of a repacked weight: ggml's GEMM handles activation rows in
/// groups of four, its GEMV the rows left over (`T mod 4`, or a single token).
#[derive(Clone, Copy)]
pub struct RepackedKernels {
    /// For rows `0..T − T mod 4`.
    pub gemm: VecDotFn,
    /// For the last `T mod 4` rows.
    pub gemv: VecDotFn,
    /// The GEMM order for four rows at once, where this CPU has it.
    pub gemm4: Option<VecDot4Fn>,
    /// The GEMM order for a tile of weight rows against four rows at once, where this CPU
    /// has it.
    pub tile4: Option<crate::Tile4Fn>,
}

/// The tiled Q4_K GEMM-order kernel, where this CPU has it.
fn q4_k_tile4() -> Option<crate::Tile4Fn> {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd_disabled() {
            return None;
        }
        crate::x86::q4_k_tile4_kernel()
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

impl RepackedKernels {
    /// The kernel for activation row `t` of `n_tokens`.
    pub fn for_row(&self, t: usize, n_tokens: usize) -> VecDotFn {
        if t < n_tokens - n_tokens % 4 {
            self.gemm
        } else {
            self.gemv
        }
    }
}

/// The kernel of ggml's tiled K-quant GEMM, which llama.cpp uses for a weight of type `t`
/// that it does not repack when a batch has 8 or more rows.
pub fn tiled_kernel(t: GgmlType) -> Option<VecDotFn> {
    match t {
        GgmlType::Q6_K => Some(order_kernels()[2]),
        _ => None,
    }
}

/// [`tiled_kernel`] for four activation rows at once, where this CPU has it.
pub fn tiled_kernel4(t: GgmlType) -> Option<VecDot4Fn> {
    match t {
        GgmlType::Q6_K => order_kernels_x4().map(|k| k[1]),
        _ => None,
    }
}

/// The four-row kernels of the orders, if any: [Q4_K GEMM, Q6_K tiled].
fn order_kernels_x4() -> Option<[VecDot4Fn; 2]> {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd_disabled() {
            return None;
        }
        crate::x86::order_kernels_x4()
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Batches of at least this many rows go through ggml's tiled K-quant GEMM.
pub const TILED_MIN_ROWS: usize = 8;

/// Q6_K · Q8_K in the order of ggml's tiled GEMM: the super-block's exact integer sum, then
/// `out = fma(isum·d, d_y, out)`.
pub fn dot_q6_k_q8_k_tiled_order(w: &[u8], a: &[u8]) -> f32 {
    let x: &[BlockQ6_K] = as_blocks(w);
    let y: &[BlockQ8_K] = as_blocks(a);
    let mut out = 0f32;
    for (x, y) in x.iter().zip(y) {
        let mut isum = 0i32;
        for (s, &scale) in x.scales.iter().enumerate() {
            let sub: i32 = (16 * s..16 * s + 16)
                .map(|e| crate::reference::q6k_quant(x, e) * i32::from(y.qs[e]))
                .sum();
            isum += i32::from(scale) * sub;
        }
        // `buf + result·d_y`, written as a multiply and an add that GCC contracts to an FMA.
        out = (isum as f32 * x.d.get()).mul_add(y.d(), out);
    }
    out
}

/// Integer sums of one 64-value pair `p` (sub-blocks 2p, 2p+1) of a Q4_K · Q8_K super-block:
/// `(Σ_j sc_j Σ q·y, Σ_j m_j bsum_j)`.
#[inline(always)]
fn q4_k_pair_sums(x: &BlockQ4_K, y: &BlockQ8_K, pair: usize) -> (i32, i32) {
    let qs = &x.qs[32 * pair..32 * pair + 32];
    let ys = &y.qs[64 * pair..64 * pair + 64];
    let (mut lo, mut hi) = (0i32, 0i32);
    for l in 0..32 {
        lo += i32::from(qs[l] & 0xf) * i32::from(ys[l]);
        hi += i32::from(qs[l] >> 4) * i32::from(ys[32 + l]);
    }
    let (sc_lo, m_lo) = scale_min_k4(2 * pair, &x.scales);
    let (sc_hi, m_hi) = scale_min_k4(2 * pair + 1, &x.scales);
    let isum = i32::from(sc_lo) * lo + i32::from(sc_hi) * hi;
    let imin = i32::from(m_lo) * (y.bsum(4 * pair) + y.bsum(4 * pair + 1))
        + i32::from(m_hi) * (y.bsum(4 * pair + 2) + y.bsum(4 * pair + 3));
    (isum, imin)
}

/// Q4_K · Q8_K in the order of ggml's interleaved Q4_K GEMV: per super-block the integer
/// sums of all eight sub-blocks, then `acc = fma(isum, d·d_y, acc)` and
/// `acc_min = fma(imin, dmin·d_y, acc_min)`; the result is `acc − acc_min`.
pub fn dot_q4_k_q8_k_gemv_order(w: &[u8], a: &[u8]) -> f32 {
    let x: &[BlockQ4_K] = as_blocks(w);
    let y: &[BlockQ8_K] = as_blocks(a);
    let (mut acc, mut acc_min) = (0f32, 0f32);
    for (x, y) in x.iter().zip(y) {
        let (mut isum, mut imin) = (0i32, 0i32);
        for pair in 0..4 {
            let (s, m) = q4_k_pair_sums(x, y, pair);
            isum += s;
            imin += m;
        }
        let dy = y.d();
        acc = (isum as f32).mul_add(x.d.get() * dy, acc);
        acc_min = (imin as f32).mul_add(x.dmin.get() * dy, acc_min);
    }
    acc - acc_min
}

/// Q4_K · Q8_K in the order of ggml's interleaved Q4_K GEMM: as the GEMV, but one fused
/// multiply-add per 64-value pair of sub-blocks instead of per super-block.
pub fn dot_q4_k_q8_k_gemm_order(w: &[u8], a: &[u8]) -> f32 {
    let x: &[BlockQ4_K] = as_blocks(w);
    let y: &[BlockQ8_K] = as_blocks(a);
    let (mut acc, mut acc_min) = (0f32, 0f32);
    for (x, y) in x.iter().zip(y) {
        let dy = y.d();
        let (scale, scale_min) = (x.d.get() * dy, x.dmin.get() * dy);
        for pair in 0..4 {
            let (s, m) = q4_k_pair_sums(x, y, pair);
            acc = (s as f32).mul_add(scale, acc);
            acc_min = (m as f32).mul_add(scale_min, acc_min);
        }
    }
    acc - acc_min
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dequantize_row, quantize_row, quantize_row_ref};

    #[test]
    fn interleaved_order_computes_the_same_dot_product() {
        let n = 512;
        let w: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 113) as f32 / 50.0 - 1.1)
            .collect();
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 104729) % 97) as f32 / 40.0 - 1.2)
            .collect();
        let mut wq = vec![0u8; GgmlType::Q4_K.row_bytes(n).unwrap()];
        quantize_row_ref(GgmlType::Q4_K, &w, &mut wq);
        let mut xq = vec![0u8; GgmlType::Q8_K.row_bytes(n).unwrap()];
        quantize_row(GgmlType::Q8_K, &x, &mut xq);
        let (mut wd, mut xd) = (vec![0f32; n], vec![0f32; n]);
        dequantize_row(GgmlType::Q4_K, &wq, &mut wd);
        dequantize_row(GgmlType::Q8_K, &xq, &mut xd);
        let expect: f32 = wd.iter().zip(&xd).map(|(a, b)| a * b).sum();
        for got in [
            dot_q4_k_q8_k_gemv_order(&wq, &xq),
            dot_q4_k_q8_k_gemm_order(&wq, &xq),
        ] {
            assert!(
                (got - expect).abs() <= 1e-3 * (1.0 + expect.abs()),
                "{got} vs {expect}"
            );
        }
        assert!(repacked_kernels(GgmlType::Q4_K, 16).is_some());
        assert!(repacked_kernels(GgmlType::Q4_K, 12).is_none());
        assert!(repacked_kernels(GgmlType::Q6_K, 16).is_none());

        let mut w6 = vec![0u8; GgmlType::Q6_K.row_bytes(n).unwrap()];
        quantize_row_ref(GgmlType::Q6_K, &w, &mut w6);
        dequantize_row(GgmlType::Q6_K, &w6, &mut wd);
        let expect: f32 = wd.iter().zip(&xd).map(|(a, b)| a * b).sum();
        let got = dot_q6_k_q8_k_tiled_order(&w6, &xq);
        assert!(
            (got - expect).abs() <= 1e-3 * (1.0 + expect.abs()),
            "{got} vs {expect}"
        );
    }
}
