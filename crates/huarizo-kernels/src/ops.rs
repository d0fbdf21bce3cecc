//! Element-wise and row-wise f32 operations of the decoder: RMS norm, RoPE, softmax and the
//! gated activations, each computed the way ggml's CPU backend computes it (accumulation
//! precision, f16 lookup tables, iterated RoPE angles) so that huarizo's activations track
//! llama.cpp's.

use crate::isa::{ggml_isa, GgmlIsa};
use half::f16;
use std::sync::OnceLock;

/// `x ← x / sqrt(mean(x²) + eps) ⊙ w` for one row. The sum of squares is accumulated in
/// f64, as ggml does.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    debug_assert_eq!(x.len(), w.len());
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for (v, &g) in x.iter_mut().zip(w) {
        *v = (*v * scale) * g;
    }
}

/// [`rms_norm`] on each row of `x` (rows of `w.len()` values), the same bits row by row.
/// Four rows go at a time: each row's sum of squares is one chain of dependent f64 additions
/// (ggml's order), and four chains side by side run in about the time of one.
pub fn rms_norm_rows(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    if n == 0 {
        return;
    }
    let mut quads = x.chunks_exact_mut(4 * n);
    for quad in &mut quads {
        let (a, rest) = quad.split_at_mut(n);
        let (b, rest) = rest.split_at_mut(n);
        let (c, d) = rest.split_at_mut(n);
        let mut sums = [0f64; 4];
        for (((&a, &b), &c), &d) in a.iter().zip(&*b).zip(&*c).zip(&*d) {
            sums[0] += f64::from(a * a);
            sums[1] += f64::from(b * b);
            sums[2] += f64::from(c * c);
            sums[3] += f64::from(d * d);
        }
        for (row, sum) in [a, b, c, d].into_iter().zip(sums) {
            let mean = (sum / n as f64) as f32;
            let scale = 1.0 / (mean + eps).sqrt();
            for (v, &g) in row.iter_mut().zip(w) {
                *v = (*v * scale) * g;
            }
        }
    }
    for row in quads.into_remainder().chunks_exact_mut(n) {
        rms_norm(row, w, eps);
    }
}

/// Rotation angles of RoPE for one position: `(cos, sin)` for each of the `n_rot / 2` pairs,
/// written to `out` (which must hold `n_rot / 2` entries).
///
/// The angle of pair i is `pos · base^(−2i/n_rot) · freq_scale / factor[i]`, with the powers
/// formed by repeated multiplication in f32, as ggml's rope cache does.
pub fn rope_angles(
    pos: usize,
    n_rot: usize,
    base: f32,
    freq_scale: f32,
    factors: Option<&[f32]>,
    out: &mut [(f32, f32)],
) {
    assert_eq!(out.len(), n_rot / 2, "one (cos, sin) per rotated pair");
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let mut theta = pos as f32;
    for (i, out) in out.iter_mut().enumerate() {
        let factor = factors.map_or(1.0, |f| f[i]);
        let angle = freq_scale * (theta / factor);
        *out = (angle.cos(), angle.sin());
        theta *= theta_scale;
    }
}

/// Applies RoPE to one head `x` (head_dim values, the first `2·angles.len()` rotated).
/// `neox` pairs element i with i + n_rot/2 (GPT-NeoX style); otherwise adjacent pairs.
pub fn rope_apply(x: &mut [f32], angles: &[(f32, f32)], neox: bool) {
    #[cfg(target_arch = "x86_64")]
    if fma_available() {
        // SAFETY: the CPU has FMA.
        return unsafe { rope_apply_fma(x, angles, neox) };
    }
    rope_apply_body(x, angles, neox)
}

/// [`rope_apply`] compiled with hardware FMA: the same results (`mul_add` is fused either
/// way), without a library call per `mul_add`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn rope_apply_fma(x: &mut [f32], angles: &[(f32, f32)], neox: bool) {
    rope_apply_body(x, angles, neox)
}

#[inline(always)]
fn rope_apply_body(x: &mut [f32], angles: &[(f32, f32)], neox: bool) {
    let half = angles.len();
    for (i, &(cos, sin)) in angles.iter().enumerate() {
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (x[a], x[b]);
        // ggml's `x0·cos − x1·sin` and `x0·sin + x1·cos` as GCC contracts them on an FMA
        // machine: the first product fused with the second, rounded, one.
        x[a] = x0.mul_add(cos, -(x1 * sin));
        x[b] = x0.mul_add(sin, x1 * cos);
    }
}

/// In-place softmax of one row; the sum is accumulated in f64 as ggml does.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Whether the CPU has hardware fused multiply-add (else `mul_add` is a library call).
#[cfg(target_arch = "x86_64")]
fn fma_available() -> bool {
    static FMA: OnceLock<bool> = OnceLock::new();
    *FMA.get_or_init(|| is_x86_feature_detected!("fma"))
}

/// Most f32 lanes of any llama.cpp build huarizo follows (AVX-512: 16); score rows are
/// padded to a multiple of it.
pub const GGML_LANES: usize = 16;

/// Sum of 16 lanes in the order of `_mm512_reduce_add_ps`: halves, quarters, pairs.
pub fn reduce_add16(v: &[f32; GGML_LANES]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = v[i] + v[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// Sum of 8 lanes as ggml's AVX2 code reduces a `__m256` (tinyBLAS's `hsum`, softmax's
/// chunk sum): high half plus low half, then `movehl`, then `movehdup`.
pub fn reduce_add8(v: &[f32; 8]) -> f32 {
    let t = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    (t[0] + t[2]) + (t[1] + t[3])
}

/// The sum of one softmax chunk of `isa.lanes()` values, as that build reduces it.
fn chunk_sum(isa: GgmlIsa, chunk: &[f32]) -> f32 {
    match isa {
        GgmlIsa::Avx2 => reduce_add8(chunk.try_into().expect("8 lanes")),
        GgmlIsa::Avx512 => reduce_add16(chunk.try_into().expect("16 lanes")),
    }
}

/// `exp(x)` as ggml's vectorised `ggml_v_expf` computes it on AVX-512 (a polynomial with
/// fused multiply-adds and `scalef`; within 1.5 ulp of the true value), bit for bit.
#[inline(always)]
pub fn expf_ggml(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r);
    let n = z - r;
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),
        (-n).mul_add(f32::from_bits(0x3f31_7200), x),
    );
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010)
        .mul_add(b, f32::from_bits(0x3d2b_9f17))
        .mul_add(
            u,
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)),
        )
        .mul_add(u, f32::from_bits(0x3f7f_fff6).mul_add(b, 1.0));
    // scalef: j · 2^n with a single rounding (2^n is exact in f64 for |n| ≤ 192).
    let pow2 = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (f64::from(j) * pow2) as f32
}

/// `exp(x)` as ggml's `ggml_v_expf` computes it on AVX2, bit for bit: the same polynomial
/// as [`expf_ggml`] but without the constant 1 in its last term, finished as `k·j + k`
/// with `k = 2^n` built from the bits of the rounding constant (and a two-factor scaling
/// for |n| > 126).
#[inline(always)]
pub fn expf_ggml_avx2(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r);
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),
        (-n).mul_add(f32::from_bits(0x3f31_7200), x),
    );
    let e = z.to_bits().wrapping_shl(23);
    let k = f32::from_bits(e.wrapping_add(0x3f80_0000));
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010)
        .mul_add(b, f32::from_bits(0x3d2b_9f17))
        .mul_add(
            u,
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)),
        )
        .mul_add(u, f32::from_bits(0x3f7f_fff6) * b);
    let an = n.abs();
    // Ordered comparisons, as `_CMP_GT_OQ`: a NaN takes the common path.
    if an.is_nan() || an <= 126.0 {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    if an > 192.0 {
        return s1 * s1;
    }
    let s2 = f32::from_bits(e.wrapping_sub(g));
    s2.mul_add(j, s2) * s1
}

/// [`expf_ggml`] or [`expf_ggml_avx2`], as build `isa` computes `exp`.
#[inline(always)]
fn expf_for(isa: GgmlIsa, x: f32) -> f32 {
    match isa {
        GgmlIsa::Avx2 => expf_ggml_avx2(x),
        GgmlIsa::Avx512 => expf_ggml(x),
    }
}

/// Softmax of one row as ggml's `soft_max` computes it in the build huarizo follows
/// ([`ggml_isa`]): `exp` by that build's polynomial in chunks of its vector width (libm
/// `exp` for a tail), chunk sums reduced lane-wise and accumulated in f64. Entries of −∞
/// become 0.
pub fn softmax_ggml(x: &mut [f32]) {
    softmax_ggml_isa(x, ggml_isa())
}

/// [`softmax_ggml`] as build `isa` computes it.
pub fn softmax_ggml_isa(x: &mut [f32], isa: GgmlIsa) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma_available() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe {
            match isa {
                GgmlIsa::Avx2 => x86::softmax_ggml_avx2(x),
                GgmlIsa::Avx512 => x86::softmax_ggml(x),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if fma_available() {
        // SAFETY: the CPU has FMA.
        return unsafe { softmax_ggml_fma(x, isa) };
    }
    softmax_ggml_body(x, isa)
}

/// Whether the CPU has AVX-512 F.
#[cfg(target_arch = "x86_64")]
fn avx512f_available() -> bool {
    static AVX512F: OnceLock<bool> = OnceLock::new();
    *AVX512F.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

/// Whether the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
fn avx2_fma_available() -> bool {
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// [`softmax_ggml`] eight lanes at a time: per lane the same operations as [`expf_ggml`]
/// (fused multiply-adds, then `j · 2^n`), chunk sums reduced as [`reduce_add16`].
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::GGML_LANES;
    use half::f16;
    use std::arch::x86_64::*;

    /// [`super::geglu`] eight values at a time (`gate.len()` a multiple of 8): the same
    /// f16 rounding (to nearest, ties to even), table lookups and products.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn geglu8(gate: &mut [f32], up: &[f32], table: &[f16]) {
        assert!(table.len() == 1 << 16 && up.len() >= gate.len());
        let (lo, hi) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
        for (g, u) in gate.chunks_exact_mut(8).zip(up.chunks_exact(8)) {
            // SAFETY: both chunks hold 8 f32; loads and stores are unaligned.
            unsafe {
                let x = _mm256_loadu_ps(g.as_ptr());
                let u = _mm256_loadu_ps(u.as_ptr());
                let mut bits = [0u16; 8];
                _mm_storeu_si128(
                    bits.as_mut_ptr().cast(),
                    _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x),
                );
                let looked_up = bits.map(|b| table[usize::from(b)].to_bits());
                let gelu = _mm256_cvtph_ps(_mm_loadu_si128(looked_up.as_ptr().cast()));
                let mut y = _mm256_mul_ps(gelu, u);
                y = _mm256_blendv_ps(y, _mm256_mul_ps(x, u), _mm256_cmp_ps::<_CMP_GE_OQ>(x, hi));
                y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LE_OQ>(x, lo));
                _mm256_storeu_ps(g.as_mut_ptr(), y);
            }
        }
    }

    /// `expf_ggml` on sixteen lanes, bit for bit: ggml's AVX-512 `ggml_v_expf`, whose
    /// `scalef` rounds `j · 2^n` once, as `expf_ggml` does through f64.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn expf16(x: __m512) -> __m512 {
        let c = |bits: u32| _mm512_set1_ps(f32::from_bits(bits));
        let r = c(0x4b40_0000);
        let z = _mm512_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm512_sub_ps(z, r);
        let b = _mm512_fnmadd_ps(n, c(0x35bf_be8e), _mm512_fnmadd_ps(n, c(0x3f31_7200), x));
        let out_of_range = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), c(0x4340_0000));
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                _mm512_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            _mm512_fmadd_ps(c(0x3f7f_fff6), b, _mm512_set1_ps(1.0)),
        );
        let res = _mm512_scalef_ps(j, n);
        // |n| > 192: 0 below, ∞ above.
        let below = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
        let alt = _mm512_mask_blend_ps(below, _mm512_set1_ps(f32::INFINITY), _mm512_setzero_ps());
        _mm512_mask_blend_ps(out_of_range, res, alt)
    }

    /// `gate ← silu(gate) · up` sixteen values at a time (`gate.len()` a multiple of 16), as
    /// [`super::swiglu`]'s build `Avx512` computes it.
    #[target_feature(enable = "avx512f")]
    pub(super) fn swiglu16(gate: &mut [f32], up: &[f32]) {
        assert!(gate.len().is_multiple_of(16) && up.len() >= gate.len());
        let one = _mm512_set1_ps(1.0);
        for (g, u) in gate.chunks_exact_mut(16).zip(up.chunks_exact(16)) {
            // SAFETY: both chunks hold 16 f32; loads and stores are unaligned.
            unsafe {
                let x = _mm512_loadu_ps(g.as_ptr());
                let e = expf16(_mm512_sub_ps(_mm512_setzero_ps(), x));
                let y = _mm512_mul_ps(
                    _mm512_div_ps(x, _mm512_add_ps(one, e)),
                    _mm512_loadu_ps(u.as_ptr()),
                );
                _mm512_storeu_ps(g.as_mut_ptr(), y);
            }
        }
    }

    /// [`swiglu16`] eight values at a time as the build `Avx2` computes it.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn swiglu8_avx2(gate: &mut [f32], up: &[f32]) {
        assert!(gate.len().is_multiple_of(8) && up.len() >= gate.len());
        let one = _mm256_set1_ps(1.0);
        for (g, u) in gate.chunks_exact_mut(8).zip(up.chunks_exact(8)) {
            // SAFETY: both chunks hold 8 f32; loads and stores are unaligned.
            unsafe {
                let x = _mm256_loadu_ps(g.as_ptr());
                let e = expf8_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x));
                let y = _mm256_mul_ps(
                    _mm256_div_ps(x, _mm256_add_ps(one, e)),
                    _mm256_loadu_ps(u.as_ptr()),
                );
                _mm256_storeu_ps(g.as_mut_ptr(), y);
            }
        }
    }

    /// `expf_ggml` on eight lanes. Results below 2^-126 (which only arise for arguments
    /// below −87 and vanish in every softmax sum and f16 probability) are flushed to 0.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn expf8(x: __m256) -> __m256 {
        let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
        let r = c(0x4b40_0000);
        let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(n, c(0x35bf_be8e), _mm256_fnmadd_ps(n, c(0x3f31_7200), x));
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            _mm256_fmadd_ps(c(0x3f7f_fff6), b, _mm256_set1_ps(1.0)),
        );
        // 2^n from its exponent bits, exact for −126 ≤ n ≤ 127.
        let ni = _mm256_cvtps_epi32(n);
        let clamped = _mm256_max_epi32(
            _mm256_min_epi32(ni, _mm256_set1_epi32(127)),
            _mm256_set1_epi32(-126),
        );
        let pow2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            clamped,
            _mm256_set1_epi32(127),
        )));
        let res = _mm256_mul_ps(j, pow2);
        let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(n, _mm256_set1_ps(-126.0));
        let huge = _mm256_cmp_ps::<_CMP_GT_OQ>(n, _mm256_set1_ps(127.0));
        let res = _mm256_andnot_ps(tiny, res);
        _mm256_blendv_ps(res, _mm256_set1_ps(f32::INFINITY), huge)
    }

    /// `expf_ggml_avx2` on eight lanes: ggml's AVX2 `ggml_v_expf`, operation for operation.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn expf8_avx2(x: __m256) -> __m256 {
        let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
        let ci = |bits: u32| _mm256_set1_epi32(bits as i32);
        let r = c(0x4b40_0000);
        let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(n, c(0x35bf_be8e), _mm256_fnmadd_ps(n, c(0x3f31_7200), x));
        let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
        let k = _mm256_castsi256_ps(_mm256_add_epi32(e, ci(0x3f80_0000)));
        let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
        let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            _mm256_mul_ps(c(0x3f7f_fff6), b),
        );
        let common = _mm256_fmadd_ps(j, k, k);
        if _mm256_movemask_ps(big) == 0 {
            return common;
        }
        let g = _mm256_and_si256(
            _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps())),
            ci(0x8200_0000),
        );
        let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, ci(0x7f00_0000)));
        let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
        let huge = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
        let scaled = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
        let res = _mm256_blendv_ps(common, scaled, big);
        _mm256_blendv_ps(res, _mm256_mul_ps(s1, s1), huge)
    }

    /// See [`super::log_sum_exp`]: eight lanes at a time for the maximum and the
    /// exponentials, two f64 accumulators of four lanes for the sum, libm for a tail.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn log_sum_exp(x: &[f32]) -> f32 {
        let (body, tail) = x.as_chunks::<8>();
        let load = |c: &[f32; 8]| {
            // SAFETY: `c` is eight readable f32; the load is unaligned.
            unsafe { _mm256_loadu_ps(c.as_ptr()) }
        };
        // `max_ps(v, m)` keeps `m` where `v` is NaN, as `f32::max` ignores a NaN.
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        for c in body {
            m = _mm256_max_ps(load(c), m);
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds eight f32; the store is unaligned.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
        let max = lanes
            .into_iter()
            .chain(tail.iter().copied())
            .fold(f32::NEG_INFINITY, f32::max);
        let maxv = _mm256_set1_ps(max);
        let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        for c in body {
            let e = expf8(_mm256_sub_ps(load(c), maxv));
            lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(e)));
        }
        let mut sums = [0f64; 4];
        // SAFETY: `sums` holds four f64; the store is unaligned.
        unsafe { _mm256_storeu_pd(sums.as_mut_ptr(), _mm256_add_pd(lo, hi)) };
        let mut sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
        for &v in tail {
            sum += f64::from(v - max).exp();
        }
        max + sum.ln() as f32
    }

    /// [`super::softmax_ggml_isa`] for the AVX2 build: chunks of 8, each summed as
    /// [`super::reduce_add8`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax_ggml_avx2(x: &mut [f32]) {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let maxv = _mm256_set1_ps(max);
        let mut sum = 0f64;
        let body = x.len() - x.len() % 8;
        for i in (0..body).step_by(8) {
            // SAFETY: i + 8 <= body <= x.len(); unaligned load and store.
            let v = unsafe {
                let p = x.as_mut_ptr().add(i);
                let v = expf8_avx2(_mm256_sub_ps(_mm256_loadu_ps(p), maxv));
                _mm256_storeu_ps(p, v);
                v
            };
            let q4 = _mm_add_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
            let t = _mm_add_ps(q4, _mm_movehl_ps(q4, q4));
            sum += f64::from(_mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t))));
        }
        for v in &mut x[body..] {
            *v = (*v - max).exp();
            sum += f64::from(*v);
        }
        let inv = (1.0 / sum) as f32;
        for v in x.iter_mut() {
            *v *= inv;
        }
    }

    /// See [`super::softmax_ggml`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax_ggml(x: &mut [f32]) {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let maxv = _mm256_set1_ps(max);
        let mut sum = 0f64;
        let body = x.len() - x.len() % GGML_LANES;
        for i in (0..body).step_by(GGML_LANES) {
            // SAFETY: i + 16 <= body <= x.len(); unaligned loads and stores.
            let (lo, hi) = unsafe {
                let p = x.as_mut_ptr().add(i);
                let lo = expf8(_mm256_sub_ps(_mm256_loadu_ps(p), maxv));
                let hi = expf8(_mm256_sub_ps(_mm256_loadu_ps(p.add(8)), maxv));
                _mm256_storeu_ps(p, lo);
                _mm256_storeu_ps(p.add(8), hi);
                (lo, hi)
            };
            // reduce_add16: halves, quarters, pairs.
            let h = _mm256_add_ps(lo, hi);
            let q4 = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
            let t = _mm_add_ps(q4, _mm_movehl_ps(q4, q4));
            sum += f64::from(_mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t))));
        }
        for v in &mut x[body..] {
            *v = (*v - max).exp();
            sum += f64::from(*v);
        }
        let inv = (1.0 / sum) as f32;
        for v in x.iter_mut() {
            *v *= inv;
        }
    }
}

/// [`softmax_ggml`] compiled with hardware FMA (same results: `mul_add` is fused either way).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn softmax_ggml_fma(x: &mut [f32], isa: GgmlIsa) {
    softmax_ggml_body(x, isa)
}

#[inline(always)]
fn softmax_ggml_body(x: &mut [f32], isa: GgmlIsa) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    let mut chunks = x.chunks_exact_mut(isa.lanes());
    for chunk in &mut chunks {
        for v in chunk.iter_mut() {
            *v = expf_for(isa, *v - max);
        }
        sum += f64::from(chunk_sum(isa, chunk));
    }
    for v in chunks.into_remainder() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// `ln Σ exp(x_i)`, the normaliser of a log-softmax over a row of logits: the maximum
/// subtracted first, the exponentials (within 1.5 ulp of libm's, see [`expf_ggml`]) summed
/// in f64. Within a few f32 ulp of the all-f64 sum; a NaN anywhere gives NaN, a row of −∞
/// gives NaN.
pub fn log_sum_exp(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma_available() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { x86::log_sum_exp(x) };
    }
    log_sum_exp_f64(x)
}

/// [`log_sum_exp`] with libm's `exp` in f64 for every term (the reference the SIMD path is
/// tested against).
pub fn log_sum_exp_f64(x: &[f32]) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + x
        .iter()
        .map(|&l| f64::from(l - max).exp())
        .sum::<f64>()
        .ln() as f32
}

/// SiLU-gated product `gate ← silu(gate) ⊙ up` over rows of `n` values, as ggml's
/// `swiglu` computes it in the build huarizo follows: SiLU by that build's `exp` in chunks
/// of its vector width, libm for a tail.
pub fn swiglu(gate: &mut [f32], up: &[f32], n: usize) {
    swiglu_isa(gate, up, n, ggml_isa())
}

/// `(gate, up)`: one row's vector part of [`swiglu`].
#[cfg(target_arch = "x86_64")]
type RowFn = fn(&mut [f32], &[f32]);

/// [`swiglu`] as build `isa` computes it.
pub fn swiglu_isa(gate: &mut [f32], up: &[f32], n: usize, isa: GgmlIsa) {
    #[cfg(target_arch = "x86_64")]
    {
        let vectors: Option<RowFn> = match isa {
            // SAFETY (both): called only where the features were detected just here.
            GgmlIsa::Avx512 if avx512f_available() => Some(|g, u| unsafe { x86::swiglu16(g, u) }),
            GgmlIsa::Avx2 if avx2_fma_available() => {
                Some(|g, u| unsafe { x86::swiglu8_avx2(g, u) })
            }
            _ => None,
        };
        if let Some(vectors) = vectors {
            let vector_part = n - n % isa.lanes();
            for (g_row, u_row) in gate.chunks_exact_mut(n).zip(up.chunks_exact(n)) {
                vectors(&mut g_row[..vector_part], &u_row[..vector_part]);
                swiglu_tail(&mut g_row[vector_part..], &u_row[vector_part..]);
            }
            return;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if fma_available() {
        // SAFETY: the CPU has FMA.
        return unsafe { swiglu_fma(gate, up, n, isa) };
    }
    swiglu_body(gate, up, n, isa)
}

/// [`swiglu`] compiled with hardware FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn swiglu_fma(gate: &mut [f32], up: &[f32], n: usize, isa: GgmlIsa) {
    swiglu_body(gate, up, n, isa)
}

#[inline(always)]
fn swiglu_body(gate: &mut [f32], up: &[f32], n: usize, isa: GgmlIsa) {
    for (g_row, u_row) in gate.chunks_exact_mut(n).zip(up.chunks_exact(n)) {
        let vector_part = n - n % isa.lanes();
        for (g, &u) in g_row[..vector_part].iter_mut().zip(&u_row[..vector_part]) {
            *g = (*g / (1.0 + expf_for(isa, 0.0 - *g))) * u;
        }
        swiglu_tail(&mut g_row[vector_part..], &u_row[vector_part..]);
    }
}

/// The values past the last whole vector of a [`swiglu`] row: libm's `exp`.
fn swiglu_tail(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = (*g / (1.0 + (-*g).exp())) * u;
    }
}

/// GELU(tanh) in f32, the function ggml tabulates.
fn gelu_exact(x: f32) -> f32 {
    const GELU_COEF_A: f32 = 0.044715;
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    // `1 + a·x·x` fused as GCC contracts it on an FMA machine.
    let inner = (GELU_COEF_A * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
}

/// ggml's GELU table: GELU of every f16 value, rounded to f16.
fn gelu_table() -> &'static [f16] {
    static TABLE: OnceLock<Vec<f16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| f16::from_f32(gelu_exact(f16::from_bits(bits).to_f32())))
            .collect()
    })
}

/// GELU-gated product: `gate ← gelu(gate) ⊙ up`, with GELU looked up on the f16-rounded
/// input, as ggml's CPU backend does.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    let n = gate.len().min(up.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if avx2_fma_available() && is_x86_feature_detected!("f16c") {
        done = n - n % 8;
        // SAFETY: the CPU has AVX2, FMA and F16C.
        unsafe { x86::geglu8(&mut gate[..done], &up[..done], table) };
    }
    for (g, &u) in gate[done..n].iter_mut().zip(&up[done..n]) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            table[usize::from(f16::from_f32(x).to_bits())].to_f32() * u
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_makes_unit_rms() {
        let mut x = vec![1.0, -2.0, 3.0, -4.0];
        rms_norm(&mut x, &[1.0; 4], 0.0);
        let rms = (x.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6);
    }

    /// Four rows at a time give each row's bits as [`rms_norm`] alone does, for row counts
    /// with and without a remainder.
    #[test]
    fn rms_norm_rows_equals_rms_norm_row_by_row() {
        let n = 37;
        let mut rng = crate::tests::Rng(3);
        let w: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
        for rows in [1, 4, 7, 9] {
            let x: Vec<f32> = (0..rows * n).map(|_| 100.0 * rng.f32()).collect();
            let mut want = x.clone();
            want.chunks_exact_mut(n)
                .for_each(|row| rms_norm(row, &w, 1e-6));
            let mut got = x;
            rms_norm_rows(&mut got, &w, 1e-6);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{rows} rows");
        }
    }

    #[test]
    fn rope_rotates_pairs_by_position() {
        let mut angles = [(0.0, 0.0); 2];
        rope_angles(3, 4, 10000.0, 1.0, None, &mut angles);
        assert!((angles[0].0 - 3f32.cos()).abs() < 1e-6);
        let theta1 = 3.0 * 10000f32.powf(-0.5);
        assert!((angles[1].1 - theta1.sin()).abs() < 1e-6);
        let mut x = [1.0, 0.0, 1.0, 0.0];
        rope_apply(&mut x, &angles, false);
        assert!((x[0] - 3f32.cos()).abs() < 1e-6 && (x[1] - 3f32.sin()).abs() < 1e-6);
        let mut y = [1.0, 1.0, 0.0, 0.0];
        rope_apply(&mut y, &angles, true);
        assert!((y[2] - 3f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, f32::NEG_INFINITY];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[3], 0.0);
    }

    /// The SIMD log-sum-exp stays within 2 f32 ulp of the all-f64 one on logit rows of
    /// several lengths (with tails), keeps −∞ entries out of the sum and a NaN in it.
    #[test]
    fn log_sum_exp_is_the_f64_sum() {
        let mut rng = crate::tests::Rng(0x0010_65e3);
        for n in [1, 7, 8, 9, 100, 49_152, 151_936] {
            let mut x: Vec<f32> = (0..n).map(|_| 12.0 * rng.f32() + 3.0).collect();
            if n > 8 {
                x[3] = f32::NEG_INFINITY;
                x[n - 1] = -120.0; // exp underflows f32
            }
            let (got, want) = (log_sum_exp(&x), log_sum_exp_f64(&x));
            let ulp = (want.abs() * f32::EPSILON).max(f32::MIN_POSITIVE);
            assert!((got - want).abs() <= 2.0 * ulp, "n={n}: {got} vs {want}");
        }
        let mut x = vec![1.0f32; 20];
        x[10] = f32::NAN;
        assert!(log_sum_exp(&x).is_nan());
    }

    #[test]
    fn expf_ggml_is_close_to_exp() {
        for i in -1700..1700 {
            let x = i as f32 * 0.05;
            let (a, b) = (expf_ggml(x), x.exp());
            // Relative error within 4 ulp, absolute within the subnormal spacing.
            assert!(
                (a - b).abs() <= 4.0 * f32::EPSILON * b + 1e-44,
                "{x}: {a} vs {b}"
            );
        }
        assert_eq!(expf_ggml(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf_ggml(0.0), 1.0);
        assert_eq!(expf_ggml(100.0), f32::INFINITY);
    }

    #[test]
    fn expf_ggml_avx2_is_close_to_exp() {
        for i in -2000..1800 {
            let x = i as f32 * 0.05;
            let (a, b) = (expf_ggml_avx2(x), x.exp());
            assert!(
                a == b || (a - b).abs() <= 4.0 * f32::EPSILON * b + 1e-44,
                "{x}: {a} vs {b}"
            );
        }
        assert_eq!(expf_ggml_avx2(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf_ggml_avx2(0.0), 1.0);
        assert_eq!(expf_ggml_avx2(100.0), f32::INFINITY);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn simd_softmax_equals_the_scalar_one_bit_for_bit() {
        if !avx2_fma_available() {
            return;
        }
        let mut a: Vec<f32> = (0..77).map(|i| (i as f32 * 0.713).sin() * 30.0).collect();
        a[3] = f32::NEG_INFINITY;
        // Arguments beyond the polynomial's common range (|n| > 126) for the AVX2 path.
        a[10] = -100.0;
        a[11] = -150.0;
        for isa in [GgmlIsa::Avx2, GgmlIsa::Avx512] {
            let mut want = a.clone();
            let mut got = a.clone();
            softmax_ggml_body(&mut want, isa);
            // SAFETY: AVX2 and FMA are available.
            unsafe {
                match isa {
                    GgmlIsa::Avx2 => x86::softmax_ggml_avx2(&mut got),
                    GgmlIsa::Avx512 => x86::softmax_ggml(&mut got),
                }
            };
            assert_eq!(
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{isa:?}"
            );
        }
    }

    #[test]
    fn ggml_softmax_and_swiglu_agree_with_plain_ones() {
        let mut a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
        a[5] = f32::NEG_INFINITY;
        let b = a.clone();
        softmax(&mut a);
        for isa in [GgmlIsa::Avx2, GgmlIsa::Avx512] {
            let mut b = b.clone();
            softmax_ggml_isa(&mut b, isa);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-6);
            }
            assert_eq!(b[5], 0.0);
            let mut g: Vec<f32> = (0..40).map(|i| i as f32 * 0.3 - 6.0).collect();
            let expect: Vec<f32> = g.iter().map(|&x| x / (1.0 + (-x).exp()) * 2.0).collect();
            swiglu_isa(&mut g, &[2.0; 40], 20, isa);
            for (x, y) in g.iter().zip(&expect) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()));
            }
        }
    }

    #[test]
    fn swiglu_in_vectors_equals_one_by_one_bit_for_bit() {
        let mut rng = crate::tests::Rng(11);
        // Rows of 4864 (Qwen2.5-0.5B's) and 37 (a tail past the vectors); values across
        // exp's whole range, its edges (|n| near 126, 192) and signed zeros.
        for n in [4864, 37] {
            let mut gate: Vec<f32> = (0..2 * n).map(|_| rng.f32() * 240.0).collect();
            gate[..10].copy_from_slice(&[
                0.0, -0.0, 87.5, -87.5, 88.7, -88.7, 89.5, -89.5, 103.9, -133.2,
            ]);
            let up: Vec<f32> = (0..2 * n).map(|_| rng.f32() * 3.0).collect();
            for isa in [GgmlIsa::Avx2, GgmlIsa::Avx512] {
                let mut simd = gate.clone();
                swiglu_isa(&mut simd, &up, n, isa);
                let mut one_by_one = gate.clone();
                swiglu_body(&mut one_by_one, &up, n, isa);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&simd), bits(&one_by_one), "{isa:?}, rows of {n}");
            }
        }
    }

    #[test]
    fn geglu_in_vectors_equals_one_by_one_bit_for_bit() {
        let mut rng = crate::tests::Rng(7);
        let mut gate: Vec<f32> = (0..1003).map(|_| rng.f32() * 24.0).collect();
        gate[..12].copy_from_slice(&[
            -10.0,
            10.0,
            -9.999,
            9.999,
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            70000.0,
            1e-8,
            -65504.0,
        ]);
        let up: Vec<f32> = (0..gate.len()).map(|_| rng.f32() * 3.0).collect();
        let mut together = gate.clone();
        geglu(&mut together, &up);
        for (i, (&g, &u)) in gate.iter().zip(&up).enumerate() {
            let mut one = [g];
            geglu(&mut one, &[u]);
            assert_eq!(one[0].to_bits(), together[i].to_bits(), "gate {g}, up {u}");
        }
    }

    #[test]
    fn geglu_matches_gelu_within_f16_rounding() {
        for &v in &[-3.0f32, -0.5, 0.0, 0.7, 2.5, 12.0, -11.0] {
            let mut g = [v];
            geglu(&mut g, &[2.0]);
            let expect = if v >= 10.0 {
                2.0 * v
            } else if v <= -10.0 {
                0.0
            } else {
                2.0 * gelu_exact(v)
            };
            assert!((g[0] - expect).abs() <= 2e-3 * (1.0 + expect.abs()), "{v}");
        }
    }
}

/// A LoRA adapter's update for inference, as llama.cpp computes it: `out += scale·(B·(A·x))`
/// for each of the `n` rows of `x` (`n_in` wide), with A `(rank, n_in)` and B `(n_out,
/// rank)`, each dot product in the order of ggml's f32 matrix product in build `isa`
/// (tinyBLAS: one fused multiply-add accumulator per lane over the vector width, then the
/// lanes reduced as [`reduce_add8`] / [`reduce_add16`]); a length that is not whole vectors
/// is summed in order.
pub fn lora_update_ggml(
    x: &[f32],
    a: &[f32],
    b: &[f32],
    (n, n_in, rank, n_out): (usize, usize, usize, usize),
    scale: f32,
    out: &mut [f32],
) {
    let isa = ggml_isa();
    #[cfg(target_arch = "x86_64")]
    if fma_available() {
        // SAFETY: the CPU has FMA.
        return unsafe { lora_update_fma(x, a, b, (n, n_in, rank, n_out), scale, out, isa) };
    }
    lora_update_body(x, a, b, (n, n_in, rank, n_out), scale, out, isa)
}

/// [`lora_update_ggml`] compiled with hardware FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn lora_update_fma(
    x: &[f32],
    a: &[f32],
    b: &[f32],
    dims: (usize, usize, usize, usize),
    scale: f32,
    out: &mut [f32],
    isa: GgmlIsa,
) {
    lora_update_body(x, a, b, dims, scale, out, isa)
}

#[inline(always)]
fn dot_ggml_f32(u: &[f32], v: &[f32], isa: GgmlIsa) -> f32 {
    let lanes = isa.lanes();
    if !u.len().is_multiple_of(lanes) {
        return u.iter().zip(v).fold(0.0, |s, (a, b)| a.mul_add(*b, s));
    }
    let mut acc = [0f32; GGML_LANES];
    for (cu, cv) in u.chunks_exact(lanes).zip(v.chunks_exact(lanes)) {
        for i in 0..lanes {
            acc[i] = cu[i].mul_add(cv[i], acc[i]);
        }
    }
    match isa {
        GgmlIsa::Avx2 => reduce_add8(acc[..8].try_into().expect("8 lanes")),
        GgmlIsa::Avx512 => reduce_add16(&acc),
    }
}

#[inline(always)]
fn lora_update_body(
    x: &[f32],
    a: &[f32],
    b: &[f32],
    (n, n_in, rank, n_out): (usize, usize, usize, usize),
    scale: f32,
    out: &mut [f32],
    isa: GgmlIsa,
) {
    // A·x of one row: on the stack for the usual ranks (no allocation per token).
    let mut stack = [0f32; 64];
    let mut heap = Vec::new();
    let h: &mut [f32] = if rank <= stack.len() {
        &mut stack[..rank]
    } else {
        heap.resize(rank, 0.0);
        &mut heap
    };
    for (xr, or) in x
        .chunks_exact(n_in)
        .zip(out.chunks_exact_mut(n_out))
        .take(n)
    {
        for (hj, aj) in h.iter_mut().zip(a.chunks_exact(n_in)) {
            *hj = dot_ggml_f32(aj, xr, isa);
        }
        for (o, bo) in or.iter_mut().zip(b.chunks_exact(rank)) {
            *o += dot_ggml_f32(bo, h, isa) * scale;
        }
    }
}

#[cfg(test)]
mod lora_tests {
    use super::*;

    #[test]
    fn lora_update_in_ggml_order_equals_the_plain_product() {
        let (n, n_in, rank, n_out) = (3, 40, 8, 24);
        let val = |i: usize, s: f32| ((i as f32 * 0.37 + s).sin()) * 0.5;
        let x: Vec<f32> = (0..n * n_in).map(|i| val(i, 0.1)).collect();
        let a: Vec<f32> = (0..rank * n_in).map(|i| val(i, 0.7)).collect();
        let b: Vec<f32> = (0..n_out * rank).map(|i| val(i, 1.3)).collect();
        let mut out = vec![1.0f32; n * n_out];
        lora_update_ggml(&x, &a, &b, (n, n_in, rank, n_out), 2.0, &mut out);
        for t in 0..n {
            let h: Vec<f64> = (0..rank)
                .map(|j| {
                    (0..n_in)
                        .map(|i| f64::from(a[j * n_in + i]) * f64::from(x[t * n_in + i]))
                        .sum()
                })
                .collect();
            for o in 0..n_out {
                let d: f64 = (0..rank).map(|j| f64::from(b[o * rank + j]) * h[j]).sum();
                let want = 1.0 + 2.0 * d;
                assert!(
                    (f64::from(out[t * n_out + o]) - want).abs() < 1e-5,
                    "{t},{o}"
                );
            }
        }
    }
}
