//! Scalar reference kernels: the specification every SIMD kernel is tested against, and the
//! fallback on CPUs without AVX2 and on other architectures.
//!
//! * `dequantize_*`: block → f32, with ggml's formulas (`ggml/src/ggml-quants.c`).
//! * `quantize_*_act`: the activation quantizers, reproducing the numbers llama.cpp's x86
//!   CPU backend produces (`ggml-cpu/arch/x86/quants.c`): Q8_0/Q8_1 scale by `127/amax`
//!   and round half-to-even (`_mm256_round_ps(…, _MM_ROUND_NEAREST)`); Q8_K is
//!   `quantize_row_q8_K_ref` (scale `−127/max` with the signed max, `nearest_int`).
//! * `quantize_*_ref`: ggml's reference quantizers of the 32-wide weight types (the k-quant
//!   ones, with their error search, are in [`crate::weight_quant`]).
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
pub(crate) fn q5_quants(qh: [u8; 4], qs: &[u8; 16]) -> [i32; QK] {
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
pub(crate) fn signed_absmax(x: &[f32]) -> (f32, f32) {
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
pub(crate) fn pack_q5(q: &[u8; QK], qs: &mut [u8; 16], qh: &mut [u8; 4]) {
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
