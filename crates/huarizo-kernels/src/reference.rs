//! Scalar reference kernels: the specification every SIMD kernel is tested against, and the
//! fallback on CPUs without AVX2 and on other architectures.
//!
//! * `dequantize_*`: block → f32, with ggml's formulas (`ggml/src/ggml-quants.c`).
//! * `quantize_*_act`: the activation quantizers, reproducing the numbers llama.cpp's x86
//!   CPU backend produces (`ggml-cpu/arch/x86/quants.c`): Q8_0/Q8_1 scale by `127/amax`
//!   and round half-to-even (`_mm256_round_ps(…, _MM_ROUND_NEAREST)`); Q8_K is
//!   `quantize_row_q8_K_ref` (scale `−127/max` with the signed max, `nearest_int`).
//! * `quantize_*_ref`: weight quantizers for building test data and for `quantize_row_ref`.
//!   The 32-wide ones are ggml's reference quantizers; the k-quant ones are a simpler
//!   min/max fit with ggml's scale packing (not ggml's iterative search).
//! * `vec_dot_*`: integer dot products per (sub-)block, then scales, in the order of ggml's
//!   `ggml_vec_dot_*_generic`.

use crate::blocks::*;

// ----------------------------------------------------------------------------------------
// Dequantization
// ----------------------------------------------------------------------------------------

/// Q4_0 → f32. `dst.len() == 32 · x.len()`.
pub fn dequantize_q4_0(x: &[BlockQ4_0], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.get();
        for j in 0..QK / 2 {
            y[j] = ((b.qs[j] & 0xf) as i32 - 8) as f32 * d;
            y[j + QK / 2] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_1 → f32.
pub fn dequantize_q4_1(x: &[BlockQ4_1], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (b.d.get(), b.m.get());
        for j in 0..QK / 2 {
            y[j] = (b.qs[j] & 0xf) as f32 * d + m;
            y[j + QK / 2] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// The 5-bit quants (0..32) of a Q5_0/Q5_1 block, in element order.
#[inline(always)]
fn q5_quants(qh: [u8; 4], qs: &[u8; 16]) -> [i32; QK] {
    let qh = u32::from_le_bytes(qh);
    let mut q = [0i32; QK];
    for j in 0..QK / 2 {
        q[j] = ((qs[j] & 0xf) as u32 | (((qh >> j) & 1) << 4)) as i32;
        q[j + QK / 2] = ((qs[j] >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4)) as i32;
    }
    q
}

/// Q5_0 → f32.
pub fn dequantize_q5_0(x: &[BlockQ5_0], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.get();
        for (y, q) in y.iter_mut().zip(q5_quants(b.qh, &b.qs)) {
            *y = (q - 16) as f32 * d;
        }
    }
}

/// Q5_1 → f32.
pub fn dequantize_q5_1(x: &[BlockQ5_1], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (b.d.get(), b.m.get());
        for (y, q) in y.iter_mut().zip(q5_quants(b.qh, &b.qs)) {
            *y = q as f32 * d + m;
        }
    }
}

/// Q8_0 → f32.
pub fn dequantize_q8_0(x: &[BlockQ8_0], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.get();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
}

/// Q8_1 → f32 (the `s` field is redundant).
pub fn dequantize_q8_1(x: &[BlockQ8_1], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.get();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
}

/// Quant `e` (0..4) of a Q2_K/Q3_K `qs` array.
#[inline(always)]
fn q2_bits(qs: &[u8; 64], e: usize) -> i32 {
    ((qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) as i32
}

/// Q2_K → f32.
pub fn dequantize_q2_k(x: &[BlockQ2_K], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (b.d.get(), b.dmin.get());
        for (g, y) in y.chunks_exact_mut(16).enumerate() {
            let sc = b.scales[g];
            let dl = d * (sc & 0xf) as f32;
            let ml = min * (sc >> 4) as f32;
            for (l, y) in y.iter_mut().enumerate() {
                *y = dl * q2_bits(&b.qs, 16 * g + l) as f32 - ml;
            }
        }
    }
}

/// Signed quant (−4..4) of weight `e` of a Q3_K block.
#[inline(always)]
fn q3k_quant(b: &BlockQ3_K, e: usize) -> i32 {
    let high = (b.hmask[e % 32] >> (e / 32)) & 1;
    q2_bits(&b.qs, e) - if high != 0 { 0 } else { 4 }
}

/// Q3_K → f32.
pub fn dequantize_q3_k(x: &[BlockQ3_K], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d_all = b.d.get();
        for (g, y) in y.chunks_exact_mut(16).enumerate() {
            let dl = d_all * q3k_scale(g, &b.scales) as f32;
            for (l, y) in y.iter_mut().enumerate() {
                *y = dl * q3k_quant(b, 16 * g + l) as f32;
            }
        }
    }
}

/// Q4_K 4-bit quant of weight `e`.
#[inline(always)]
fn q4k_nibble(qs: &[u8; 128], e: usize) -> i32 {
    let byte = qs[32 * (e / 64) + e % 32];
    (if (e % 64) < 32 { byte & 0xf } else { byte >> 4 }) as i32
}

/// Q4_K → f32.
pub fn dequantize_q4_k(x: &[BlockQ4_K], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (b.d.get(), b.dmin.get());
        for (j, y) in y.chunks_exact_mut(32).enumerate() {
            let (sc, m) = scale_min_k4(j, &b.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            for (l, y) in y.iter_mut().enumerate() {
                *y = d1 * q4k_nibble(&b.qs, 32 * j + l) as f32 - m1;
            }
        }
    }
}

/// Q5_K 5-bit quant of weight `e`.
#[inline(always)]
fn q5k_quant(b: &BlockQ5_K, e: usize) -> i32 {
    q4k_nibble(&b.qs, e) | ((((b.qh[e % 32] >> (e / 32)) & 1) as i32) << 4)
}

/// Q5_K → f32.
pub fn dequantize_q5_k(x: &[BlockQ5_K], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (b.d.get(), b.dmin.get());
        for (j, y) in y.chunks_exact_mut(32).enumerate() {
            let (sc, m) = scale_min_k4(j, &b.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            for (l, y) in y.iter_mut().enumerate() {
                *y = d1 * q5k_quant(b, 32 * j + l) as f32 - m1;
            }
        }
    }
}

/// Q6_K signed quant (−32..32) of weight `e`.
#[inline(always)]
pub(crate) fn q6k_quant(b: &BlockQ6_K, e: usize) -> i32 {
    let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
    let low = b.ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2)) & 0xf;
    let high = (b.qh[32 * h + l] >> (2 * k)) & 3;
    (low | (high << 4)) as i32 - 32
}

/// Q6_K → f32.
pub fn dequantize_q6_k(x: &[BlockQ6_K], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.get();
        for (e, y) in y.iter_mut().enumerate() {
            *y = d * b.scales[e / 16] as f32 * q6k_quant(b, e) as f32;
        }
    }
}

/// Q8_K → f32.
pub fn dequantize_q8_k(x: &[BlockQ8_K], dst: &mut [f32]) {
    for (b, y) in x.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
}

// ----------------------------------------------------------------------------------------
// Activation quantizers (bit-identical to llama.cpp's x86 backend)
// ----------------------------------------------------------------------------------------

/// Scale, inverse scale and max |x| of one Q8_0/Q8_1 block, as the AVX path computes them.
#[inline(always)]
fn q8_block_scale(x: &[f32]) -> (f32, f32) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    (d, id)
}

/// f32 → Q8_0 as llama.cpp's x86 `quantize_row_q8_0` (AVX/AVX2 path): `d = amax/127`
/// stored as f16, `q = round_half_even(x · 127/amax)`. `x.len() == 32 · y.len()`.
pub fn quantize_q8_0_act(x: &[f32], y: &mut [BlockQ8_0]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let (d, id) = q8_block_scale(x);
        b.d.set(d);
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = round_even(v * id) as i8;
        }
    }
}

/// Round half to even, as `_mm256_round_ps(_MM_FROUND_TO_NEAREST_INT)` and `rintf`, for
/// |x| < 2²² (block-scaled values are at most 127.5): adding and removing 1.5·2²³ leaves the
/// nearest integer under the default rounding mode. Inlined float adds, where
/// `round_ties_even` is a libm call on baseline x86-64.
#[inline(always)]
fn round_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³
    (x + MAGIC) - MAGIC
}

/// f32 → Q8_1 as llama.cpp's x86 `quantize_row_q8_1`: as Q8_0, plus `s = f16(d · Σq)` with
/// the unrounded f32 `d`.
pub fn quantize_q8_1_act(x: &[f32], y: &mut [BlockQ8_1]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let (d, id) = q8_block_scale(x);
        b.d.set(d);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            let r = round_even(v * id) as i32;
            sum += r;
            *q = r as i8;
        }
        b.s.set(d * sum as f32);
    }
}

/// f32 → Q8_K as ggml's `quantize_row_q8_K_ref` (which x86 uses): `iscale = −127/max` with
/// the signed value of largest magnitude, `q = min(127, nearest_int(iscale · x))`,
/// `d = 1/iscale` kept in f32, plus the 16-element sums. An all-zero block gets `d = 0`.
pub fn quantize_q8_k(x: &[f32], y: &mut [BlockQ8_K]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            b.d = 0f32.to_le_bytes();
            b.qs = [0; QK_K];
            b.bsums = [0; 32];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let sum: i32 = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            b.bsums[2 * j..2 * j + 2].copy_from_slice(&(sum as i16).to_le_bytes());
        }
        b.d = (1.0 / iscale).to_le_bytes();
    }
}

// ----------------------------------------------------------------------------------------
// Weight reference quantizers
// ----------------------------------------------------------------------------------------

/// The element of largest magnitude (first one on ties) and that magnitude.
#[inline(always)]
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// f32 → Q4_0 (ggml `quantize_row_q4_0_ref`: `d = max/−8`, truncating `x/d + 8.5`).
pub fn quantize_q4_0_ref(x: &[f32], y: &mut [BlockQ4_0]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let (max, _) = signed_absmax(x);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d.set(d);
        for j in 0..QK / 2 {
            let q0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
            let q1 = ((x[j + QK / 2] * id + 8.5) as i8).min(15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Min, max of a slice (ggml's FLT_MAX-seeded loop).
#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v > hi { v } else { hi })
    })
}

/// f32 → Q4_1 (ggml `quantize_row_q4_1_ref`: `d = (max − min)/15`, `m = min`).
pub fn quantize_q4_1_ref(x: &[f32], y: &mut [BlockQ4_1]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d.set(d);
        b.m.set(min);
        for j in 0..QK / 2 {
            let q0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
            let q1 = (((x[j + QK / 2] - min) * id + 0.5) as i8).min(15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Packs 32 5-bit quants into `qs` nibbles and the `qh` bit field.
#[inline(always)]
fn pack_q5(q: &[u8; QK], qs: &mut [u8; 16], qh: &mut [u8; 4]) {
    let mut h = 0u32;
    for j in 0..QK / 2 {
        qs[j] = (q[j] & 0xf) | ((q[j + 16] & 0xf) << 4);
        h |= ((q[j] as u32 >> 4) & 1) << j;
        h |= ((q[j + 16] as u32 >> 4) & 1) << (j + 16);
    }
    *qh = h.to_le_bytes();
}

/// f32 → Q5_0 (ggml `quantize_row_q5_0_ref`: `d = max/−16`, truncating `x/d + 16.5`).
pub fn quantize_q5_0_ref(x: &[f32], y: &mut [BlockQ5_0]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let (max, _) = signed_absmax(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d.set(d);
        let mut q = [0u8; QK];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = ((v * id + 16.5) as i8).min(31) as u8;
        }
        pack_q5(&q, &mut b.qs, &mut b.qh);
    }
}

/// f32 → Q5_1 (ggml `quantize_row_q5_1_ref`: `d = (max − min)/31`, `m = min`).
pub fn quantize_q5_1_ref(x: &[f32], y: &mut [BlockQ5_1]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d.set(d);
        b.m.set(min);
        let mut q = [0u8; QK];
        for (q, &v) in q.iter_mut().zip(x) {
            *q = ((v - min) * id + 0.5) as u8;
        }
        pack_q5(&q, &mut b.qs, &mut b.qh);
    }
}

/// f32 → Q8_0 (ggml `quantize_row_q8_0_ref`: `id = 1/d`, `roundf`, half away from zero).
/// This is how weights are quantized; activations use [`quantize_q8_0_act`].
pub fn quantize_q8_0_ref(x: &[f32], y: &mut [BlockQ8_0]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d.set(d);
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
    }
}

/// f32 → Q8_1 (ggml `quantize_row_q8_1_ref`).
pub fn quantize_q8_1_ref(x: &[f32], y: &mut [BlockQ8_1]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d.set(d);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        b.s.set(sum as f32 * d);
    }
}

/// Affine fit of one sub-block for Q2_K/Q4_K/Q5_K: `(scale, min)` with `x ≈ scale·q − min`,
/// q in 0..=nmax and `min ≥ 0`. Starts from the min/max fit (block minimum clamped to ≤ 0)
/// and, like ggml's `make_qkx2_quants`, tries a few stretched grids, refitting scale and
/// offset by least squares for each and keeping the one with the smallest squared error.
fn affine_fit(x: &[f32], nmax: i32) -> (f32, f32) {
    let (lo, hi) = min_max(x);
    let lo = lo.min(0.0);
    if hi <= lo {
        return (0.0, -lo);
    }
    let quant =
        |iscale: f32, off: f32, v: f32| nearest_int(iscale * (v - off)).clamp(0, nmax) as f32;
    let error = |scale: f32, off: f32, iscale: f32| -> f32 {
        x.iter()
            .map(|&v| {
                let diff = scale * quant(iscale, lo, v) + off - v;
                diff * diff
            })
            .sum()
    };
    let mut best_scale = (hi - lo) / nmax as f32;
    let mut best_min = lo;
    let mut best_err = error(best_scale, lo, 1.0 / best_scale);
    let n = x.len() as f32;
    for step in 0..=15 {
        let iscale = (-0.5 + 0.1 * step as f32 + nmax as f32) / (hi - lo);
        let (mut sl, mut sl2, mut sxl, mut sx) = (0f32, 0f32, 0f32, 0f32);
        for &v in x {
            let l = quant(iscale, lo, v);
            sl += l;
            sl2 += l * l;
            sxl += l * v;
            sx += v;
        }
        let det = n * sl2 - sl * sl;
        if det <= 0.0 {
            continue;
        }
        let mut scale = (n * sxl - sx * sl) / det;
        let mut off = (sl2 * sx - sl * sxl) / det;
        if off > 0.0 {
            off = 0.0;
            scale = sxl / sl2;
        }
        let err: f32 = x
            .iter()
            .map(|&v| {
                let diff = scale * quant(iscale, lo, v) + off - v;
                diff * diff
            })
            .sum();
        if err < best_err {
            (best_err, best_scale, best_min) = (err, scale, off);
        }
    }
    (best_scale, -best_min)
}

/// Requantizes `x` against `x ≈ d·q − m`, q clamped to 0..=nmax (0 where `d == 0`).
#[inline(always)]
fn requantize_affine(x: &[f32], d: f32, m: f32, nmax: i32, out: &mut [u8]) {
    for (q, &v) in out.iter_mut().zip(x) {
        *q = if d == 0.0 {
            0
        } else {
            nearest_int((v + m) / d).clamp(0, nmax) as u8
        };
    }
}

/// Packs 8 6-bit scales and mins the Q4_K/Q5_K way (inverse of [`scale_min_k4`]).
fn pack_scales_mins_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// Shared Q4_K/Q5_K fit: returns (d, dmin, packed scales, quants 0..=nmax per weight).
fn fit_k4(x: &[f32], nmax: i32) -> (F16, F16, [u8; 12], [u8; QK_K]) {
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    for j in 0..8 {
        (scales[j], mins[j]) = affine_fit(&x[32 * j..32 * j + 32], nmax);
    }
    let max_scale = scales.iter().fold(0.0f32, |a, &b| a.max(b));
    let max_min = mins.iter().fold(0.0f32, |a, &b| a.max(b));
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        ls[j] = nearest_int(inv_scale * scales[j]).clamp(0, 63) as u8;
        lm[j] = nearest_int(inv_min * mins[j]).clamp(0, 63) as u8;
    }
    let packed = pack_scales_mins_k4(&ls, &lm);
    let d = F16::from_f32(max_scale / 63.0);
    let dmin = F16::from_f32(max_min / 63.0);
    let mut q = [0u8; QK_K];
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        requantize_affine(
            &x[32 * j..32 * j + 32],
            d.get() * sc as f32,
            dmin.get() * m as f32,
            nmax,
            &mut q[32 * j..32 * j + 32],
        );
    }
    (d, dmin, packed, q)
}

/// f32 → Q4_K: per-32 min/max fit, 6-bit scales and mins, then requantization against the
/// stored (rounded) scales.
pub fn quantize_q4_k_ref(x: &[f32], y: &mut [BlockQ4_K]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (d, dmin, scales, q) = fit_k4(x, 15);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        for c in 0..4 {
            for l in 0..32 {
                b.qs[32 * c + l] = q[64 * c + l] | (q[64 * c + 32 + l] << 4);
            }
        }
    }
}

/// f32 → Q5_K, as [`quantize_q4_k_ref`] with 5-bit quants.
pub fn quantize_q5_k_ref(x: &[f32], y: &mut [BlockQ5_K]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (d, dmin, scales, q) = fit_k4(x, 31);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        b.qh = [0; 32];
        for c in 0..4 {
            for l in 0..32 {
                let (q0, q1) = (q[64 * c + l], q[64 * c + 32 + l]);
                b.qs[32 * c + l] = (q0 & 0xf) | ((q1 & 0xf) << 4);
                b.qh[l] |= ((q0 >> 4) << (2 * c)) | ((q1 >> 4) << (2 * c + 1));
            }
        }
    }
}

/// Packs 256 2-bit values the Q2_K/Q3_K way.
fn pack_q2(l: &[u8; QK_K], qs: &mut [u8; 64]) {
    for h in 0..2 {
        for i in 0..32 {
            let base = 128 * h + i;
            qs[32 * h + i] =
                l[base] | (l[base + 32] << 2) | (l[base + 64] << 4) | (l[base + 96] << 6);
        }
    }
}

/// f32 → Q2_K: per-16 min/max fit, 4-bit scales and mins, requantization.
pub fn quantize_q2_k_ref(x: &[f32], y: &mut [BlockQ2_K]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut scales = [0f32; 16];
        let mut mins = [0f32; 16];
        for j in 0..16 {
            (scales[j], mins[j]) = affine_fit(&x[16 * j..16 * j + 16], 3);
        }
        let max_scale = scales.iter().fold(0.0f32, |a, &b| a.max(b));
        let max_min = mins.iter().fold(0.0f32, |a, &b| a.max(b));
        let inv_scale = if max_scale > 0.0 {
            15.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 15.0 / max_min } else { 0.0 };
        for j in 0..16 {
            let ls = nearest_int(inv_scale * scales[j]).clamp(0, 15) as u8;
            let lm = nearest_int(inv_min * mins[j]).clamp(0, 15) as u8;
            b.scales[j] = ls | (lm << 4);
        }
        b.d.set(max_scale / 15.0);
        b.dmin.set(max_min / 15.0);
        let mut q = [0u8; QK_K];
        for j in 0..16 {
            let sc = b.scales[j];
            requantize_affine(
                &x[16 * j..16 * j + 16],
                b.d.get() * (sc & 0xf) as f32,
                b.dmin.get() * (sc >> 4) as f32,
                3,
                &mut q[16 * j..16 * j + 16],
            );
        }
        pack_q2(&q, &mut b.qs);
    }
}

/// Symmetric scale of one sub-block: `x ≈ scale · q` with q in −nmax..nmax−1 and the
/// largest-magnitude element mapped to −nmax (ggml's `make_qx_quants` without search).
#[inline(always)]
fn symmetric_fit(x: &[f32], nmax: f32) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < 1e-15 {
        0.0
    } else {
        max / -nmax
    }
}

/// f32 → Q3_K: per-16 symmetric fit, 6-bit signed scales, requantization.
pub fn quantize_q3_k_ref(x: &[f32], y: &mut [BlockQ3_K]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut scales = [0f32; 16];
        for j in 0..16 {
            scales[j] = symmetric_fit(&x[16 * j..16 * j + 16], 4.0);
        }
        let (max_scale, _) = signed_absmax(&scales);
        b.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &s) in scales.iter().enumerate() {
                let l = (nearest_int(iscale * s).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    b.scales[j] = l & 0xf;
                } else {
                    b.scales[j - 8] |= (l & 0xf) << 4;
                }
                b.scales[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
            }
            b.d.set(1.0 / iscale);
        } else {
            b.d.set(0.0);
        }
        let mut q = [4u8; QK_K];
        for j in 0..16 {
            let d = b.d.get() * q3k_scale(j, &b.scales) as f32;
            if d == 0.0 {
                continue;
            }
            for i in 0..16 {
                q[16 * j + i] = (nearest_int(x[16 * j + i] / d).clamp(-4, 3) + 4) as u8;
            }
        }
        b.hmask = [0; 32];
        for (e, q) in q.iter_mut().enumerate() {
            if *q > 3 {
                b.hmask[e % 32] |= 1 << (e / 32);
                *q -= 4;
            }
        }
        pack_q2(&q, &mut b.qs);
    }
}

/// f32 → Q6_K: per-16 symmetric fit, 8-bit signed scales, requantization.
pub fn quantize_q6_k_ref(x: &[f32], y: &mut [BlockQ6_K]) {
    for (b, x) in y.iter_mut().zip(x.chunks_exact(QK_K)) {
        let mut scales = [0f32; 16];
        for j in 0..16 {
            scales[j] = symmetric_fit(&x[16 * j..16 * j + 16], 32.0);
        }
        let (max_scale, max_abs_scale) = signed_absmax(&scales);
        if max_abs_scale < 1e-15 {
            *b = BlockQ6_K {
                ql: [0; 128],
                qh: [0; 64],
                scales: [0; 16],
                d: F16::default(),
            };
            continue;
        }
        let iscale = -128.0 / max_scale;
        b.d.set(1.0 / iscale);
        for (sc, &s) in b.scales.iter_mut().zip(&scales) {
            *sc = nearest_int(iscale * s).min(127) as i8;
        }
        let mut q = [32u8; QK_K];
        for j in 0..16 {
            let d = b.d.get() * b.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for i in 0..16 {
                q[16 * j + i] = (nearest_int(x[16 * j + i] / d).clamp(-32, 31) + 32) as u8;
            }
        }
        for h in 0..2 {
            for l in 0..32 {
                let base = 128 * h + l;
                let (q1, q2, q3, q4) = (q[base], q[base + 32], q[base + 64], q[base + 96]);
                b.ql[64 * h + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
                b.ql[64 * h + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
                b.qh[32 * h + l] =
                    (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
}

// ----------------------------------------------------------------------------------------
// Dot products
// ----------------------------------------------------------------------------------------

/// Q4_0 · Q8_0.
pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            sumi += ((x.qs[j] & 0xf) as i32 - 8) * y.qs[j] as i32;
            sumi += ((x.qs[j] >> 4) as i32 - 8) * y.qs[j + QK / 2] as i32;
        }
        sumf += sumi as f32 * x.d.get() * y.d.get();
    }
    sumf
}

/// Q4_1 · Q8_1: `Σ d_x d_y Σ q_x q_y + m_x s_y`.
pub fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for j in 0..QK / 2 {
            sumi += (x.qs[j] & 0xf) as i32 * y.qs[j] as i32;
            sumi += (x.qs[j] >> 4) as i32 * y.qs[j + QK / 2] as i32;
        }
        sumf += (x.d.get() * y.d.get()) * sumi as f32 + x.m.get() * y.s.get();
    }
    sumf
}

/// Q5_0 · Q8_0.
pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let q = q5_quants(x.qh, &x.qs);
        let sumi: i32 = q
            .iter()
            .zip(&y.qs)
            .map(|(&q, &v)| (q - 16) * v as i32)
            .sum();
        sumf += (x.d.get() * y.d.get()) * sumi as f32;
    }
    sumf
}

/// Q5_1 · Q8_1.
pub fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let q = q5_quants(x.qh, &x.qs);
        let sumi: i32 = q.iter().zip(&y.qs).map(|(&q, &v)| q * v as i32).sum();
        sumf += (x.d.get() * y.d.get()) * sumi as f32 + x.m.get() * y.s.get();
    }
    sumf
}

/// Q8_0 · Q8_0.
pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi: i32 =
            x.qs.iter()
                .zip(&y.qs)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum();
        sumf += sumi as f32 * (x.d.get() * y.d.get());
    }
    sumf
}

/// Q8_1 · Q8_1 (not a ggml kernel; Q8_1 is only an activation format).
pub fn vec_dot_q8_1_q8_1(x: &[BlockQ8_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi: i32 =
            x.qs.iter()
                .zip(&y.qs)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum();
        sumf += sumi as f32 * (x.d.get() * y.d.get());
    }
    sumf
}

/// Q2_K · Q8_K: `Σ d·(Σ_g sc_g Σ q·y) − dmin·(Σ_g m_g bsum_g)`.
pub fn vec_dot_q2_k_q8_k(x: &[BlockQ2_K], y: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut summs = 0i32;
        for g in 0..16 {
            summs += y.bsum(g) * (x.scales[g] >> 4) as i32;
        }
        let mut isum = 0i32;
        for h in 0..2 {
            let q2 = &x.qs[32 * h..32 * h + 32];
            for j in 0..4 {
                let base = 128 * h + 32 * j;
                let q8 = &y.qs[base..base + 32];
                let mut s = [0i32; 2];
                for l in 0..32 {
                    s[l / 16] += ((q2[l] >> (2 * j)) & 3) as i32 * q8[l] as i32;
                }
                isum += (x.scales[base / 16] & 0xf) as i32 * s[0];
                isum += (x.scales[base / 16 + 1] & 0xf) as i32 * s[1];
            }
        }
        let dall = y.d() * x.d.get();
        let dmin = y.d() * x.dmin.get();
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// Q3_K · Q8_K.
pub fn vec_dot_q3_k_q8_k(x: &[BlockQ3_K], y: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut isum = 0i32;
        for h in 0..2 {
            let q3 = &x.qs[32 * h..32 * h + 32];
            for j in 0..4 {
                let base = 128 * h + 32 * j;
                let bit = 4 * h + j;
                let q8 = &y.qs[base..base + 32];
                let mut s = [0i32; 2];
                for l in 0..32 {
                    let low = ((q3[l] >> (2 * j)) & 3) as i32;
                    let sub = ((((x.hmask[l] >> bit) & 1) ^ 1) as i32) << 2;
                    s[l / 16] += (low - sub) * q8[l] as i32;
                }
                isum += q3k_scale(base / 16, &x.scales) * s[0];
                isum += q3k_scale(base / 16 + 1, &x.scales) * s[1];
            }
        }
        sumf += x.d.get() * y.d() * isum as f32;
    }
    sumf
}

/// Q4_K · Q8_K: `Σ d·(Σ_j sc_j Σ q·y) − dmin·(Σ_j m_j (bsum_2j + bsum_2j+1))`.
pub fn vec_dot_q4_k_q8_k(x: &[BlockQ4_K], y: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = 0i32;
        let mut summs = 0i32;
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &x.scales);
            let s: i32 = (0..32)
                .map(|l| q4k_nibble(&x.qs, 32 * j + l) * y.qs[32 * j + l] as i32)
                .sum();
            sumi += sc as i32 * s;
            summs += m as i32 * (y.bsum(2 * j) + y.bsum(2 * j + 1));
        }
        let d = x.d.get() * y.d();
        let dmin = x.dmin.get() * y.d();
        sumf += d * sumi as f32 - dmin * summs as f32;
    }
    sumf
}

/// Q5_K · Q8_K.
pub fn vec_dot_q5_k_q8_k(x: &[BlockQ5_K], y: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = 0i32;
        let mut summs = 0i32;
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &x.scales);
            let s: i32 = (0..32)
                .map(|l| q5k_quant(x, 32 * j + l) * y.qs[32 * j + l] as i32)
                .sum();
            sumi += sc as i32 * s;
            summs += m as i32 * (y.bsum(2 * j) + y.bsum(2 * j + 1));
        }
        let d = x.d.get() * y.d();
        let dmin = x.dmin.get() * y.d();
        sumf += d * sumi as f32 - dmin * summs as f32;
    }
    sumf
}

/// Q6_K · Q8_K.
pub fn vec_dot_q6_k_q8_k(x: &[BlockQ6_K], y: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        // Integer sums per 16-weight group.
        let mut isum = [0i32; 16];
        for h in 0..2 {
            let ql = &x.ql[64 * h..64 * h + 64];
            let qh = &x.qh[32 * h..32 * h + 32];
            let q8 = &y.qs[128 * h..128 * h + 128];
            for l in 0..32 {
                let q = [
                    (ql[l] & 0xf) | ((qh[l] & 3) << 4),
                    (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4),
                    (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                    (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                ];
                for (k, &q) in q.iter().enumerate() {
                    isum[8 * h + 2 * k + l / 16] += (q as i32 - 32) * q8[32 * k + l] as i32;
                }
            }
        }
        let total: i32 = isum
            .iter()
            .zip(&x.scales)
            .map(|(&s, &sc)| s * sc as i32)
            .sum();
        sumf += x.d.get() * y.d() * total as f32;
    }
    sumf
}

/// Q8_K · Q8_K (not a ggml kernel; for completeness and tests).
pub fn vec_dot_q8_k_q8_k(x: &[BlockQ8_K], y: &[BlockQ8_K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi: i32 =
            x.qs.iter()
                .zip(&y.qs)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum();
        sumf += sumi as f32 * (x.d() * y.d());
    }
    sumf
}

/// F32 · F32, accumulated in f64 (ggml's scalar path).
pub fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    x.iter().zip(y).map(|(&a, &b)| (a * b) as f64).sum::<f64>() as f32
}

/// F16 · F16 (little-endian halves), products in f32, accumulated in f64.
pub fn vec_dot_f16(x: &[u8], y: &[u8]) -> f32 {
    x.chunks_exact(2)
        .zip(y.chunks_exact(2))
        .map(|(a, b)| {
            let a = f16_to_f32(u16::from_le_bytes([a[0], a[1]]));
            let b = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            (a * b) as f64
        })
        .sum::<f64>() as f32
}

/// BF16 · BF16 (little-endian), products in f32, accumulated in f64.
pub fn vec_dot_bf16(x: &[u8], y: &[u8]) -> f32 {
    x.chunks_exact(2)
        .zip(y.chunks_exact(2))
        .map(|(a, b)| {
            let a = bf16_to_f32(u16::from_le_bytes([a[0], a[1]]));
            let b = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            (a * b) as f64
        })
        .sum::<f64>() as f32
}
