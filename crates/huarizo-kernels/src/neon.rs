//! NEON dot products for aarch64 (Q4_0, Q4_1, Q8_0), built the way llama.cpp's ARM build
//! builds them (`ggml-cpu/arch/arm/quants.c` with the dot-product extension): two blocks per
//! step into two four-lane f32 accumulators, lane i of a block the integer sum of byte
//! products 4i..4i + 4 of both halves (`vdotq_s32`'s grouping, formed here from widening
//! products and pairwise additions, which every NEON CPU has), converted and scaled by a
//! multiply-add, each accumulator then summed across (`vaddvq_f32`), an odd last block in
//! scalar. The scaling is a fused `vfmaq_n_f32`, on the assumption that GCC and Clang in
//! their default modes contract llama.cpp's `vmlaq_n_f32` (`a + b·c`) into one `fmla`. Not
//! checked bit for bit against llama.cpp on an ARM machine (there is none here); the kernel
//! tests hold them to the scalar reference, under qemu (see `scripts/test-aarch64.sh`).

use crate::blocks::{as_blocks, BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QK};
use crate::Kernels;
use huarizo_formats::GgmlType;
use std::arch::aarch64::*;

/// Replaces the scalar kernels in `k` by the NEON ones.
pub(crate) fn install(k: &mut Kernels) -> bool {
    if !std::arch::is_aarch64_feature_detected!("neon") {
        return false;
    }
    k.dot[GgmlType::Q4_0 as usize] = dot_q4_0;
    k.dot[GgmlType::Q4_1 as usize] = dot_q4_1;
    k.dot[GgmlType::Q8_0 as usize] = dot_q8_0;
    true
}

/// `acc` plus, in lane i, the sum of the products of bytes 4i..4i + 4 of `a` and `b`: what
/// `vdotq_s32` gives.
#[inline]
#[target_feature(enable = "neon")]
fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let low = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let high = vmull_high_s8(a, b);
    vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(low), vpaddlq_s16(high)))
}

/// A Q4 block's 32 quants as two vectors of 16 signed values (low nibbles, high nibbles),
/// each minus `offset`.
#[inline]
#[target_feature(enable = "neon")]
fn nibbles(qs: &[u8; QK / 2], offset: i8) -> (int8x16_t, int8x16_t) {
    // SAFETY: `qs` holds 16 bytes.
    let v = unsafe { vld1q_u8(qs.as_ptr()) };
    let low = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
    let high = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
    let o = vdupq_n_s8(offset);
    (vsubq_s8(low, o), vsubq_s8(high, o))
}

/// A block's 32 quants as two vectors of 16.
#[inline]
#[target_feature(enable = "neon")]
fn bytes(qs: &[i8; QK]) -> (int8x16_t, int8x16_t) {
    // SAFETY: `qs` holds 32 bytes.
    unsafe { (vld1q_s8(qs.as_ptr()), vld1q_s8(qs.as_ptr().add(16))) }
}

/// The lanes of one block: its two halves' products, grouped as [`dot4`] groups them.
#[inline]
#[target_feature(enable = "neon")]
fn block_lanes(x: (int8x16_t, int8x16_t), y: (int8x16_t, int8x16_t)) -> int32x4_t {
    dot4(dot4(vdupq_n_s32(0), x.0, y.0), x.1, y.1)
}

/// Sum of the products of `x` and `y` as i32 (the odd last block's scalar sum).
fn scalar_sum(x: &[i8], y: &[i8]) -> i32 {
    x.iter()
        .zip(y)
        .map(|(&a, &b)| i32::from(a) * i32::from(b))
        .sum()
}

/// A Q4 block's quants as values minus `offset`, low nibbles then high ones (the scalar
/// tail's order).
fn nibble_values(qs: &[u8; QK / 2], offset: i8) -> [i8; QK] {
    std::array::from_fn(|j| {
        let q = qs[j % (QK / 2)];
        (if j < QK / 2 { q & 0x0F } else { q >> 4 }) as i8 - offset
    })
}

/// The blocks `0..nb` two at a time, as llama.cpp's ARM kernels take them: block i's lanes
/// (`lanes(i)`) converted and scaled by `scale(i)` into one of two accumulators, each then
/// summed across. Returns that sum and how many blocks it took (an odd last one is left to
/// the caller's scalar tail).
#[inline]
#[target_feature(enable = "neon")]
fn in_pairs(
    nb: usize,
    lanes: impl Fn(usize) -> int32x4_t,
    scale: impl Fn(usize) -> f32,
) -> (f32, usize) {
    let (mut sumv0, mut sumv1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut ib = 0;
    while ib + 1 < nb {
        sumv0 = vfmaq_n_f32(sumv0, vcvtq_f32_s32(lanes(ib)), scale(ib));
        sumv1 = vfmaq_n_f32(sumv1, vcvtq_f32_s32(lanes(ib + 1)), scale(ib + 1));
        ib += 2;
    }
    (vaddvq_f32(sumv0) + vaddvq_f32(sumv1), ib)
}

#[target_feature(enable = "neon")]
fn q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let nb = x.len().min(y.len());
    let (mut sumf, done) = in_pairs(
        nb,
        |i| block_lanes(bytes(&x[i].qs), bytes(&y[i].qs)),
        |i| x[i].d.get() * y[i].d.get(),
    );
    for (x, y) in x[done..nb].iter().zip(&y[done..nb]) {
        sumf += scalar_sum(&x.qs, &y.qs) as f32 * (x.d.get() * y.d.get());
    }
    sumf
}

#[target_feature(enable = "neon")]
fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let nb = x.len().min(y.len());
    let (mut sumf, done) = in_pairs(
        nb,
        |i| block_lanes(nibbles(&x[i].qs, 8), bytes(&y[i].qs)),
        |i| x[i].d.get() * y[i].d.get(),
    );
    for (x, y) in x[done..nb].iter().zip(&y[done..nb]) {
        sumf += scalar_sum(&nibble_values(&x.qs, 8), &y.qs) as f32 * x.d.get() * y.d.get();
    }
    sumf
}

#[target_feature(enable = "neon")]
fn q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let nb = x.len().min(y.len());
    // The minimums' terms, a pair of blocks at a time (`m·s` of each, added), as llama.cpp
    // adds them beside its accumulators.
    let mut summs = 0f32;
    for i in (0..nb / 2 * 2).step_by(2) {
        summs += x[i].m.get() * y[i].s.get() + x[i + 1].m.get() * y[i + 1].s.get();
    }
    let (sums, done) = in_pairs(
        nb,
        |i| block_lanes(nibbles(&x[i].qs, 0), bytes(&y[i].qs)),
        |i| x[i].d.get() * y[i].d.get(),
    );
    let mut sumf = sums + summs;
    for (x, y) in x[done..nb].iter().zip(&y[done..nb]) {
        let sumi = scalar_sum(&nibble_values(&x.qs, 0), &y.qs) as f32;
        sumf += (x.d.get() * y.d.get()) * sumi + x.m.get() * y.s.get();
    }
    sumf
}

/// Safe wrappers over byte rows, as the dispatch table holds them. Each is only ever handed
/// out by `install` once NEON was detected.
macro_rules! wrapper {
    ($name:ident, $kernel:ident, $wb:ty, $ab:ty) => {
        fn $name(w: &[u8], a: &[u8]) -> f32 {
            // SAFETY: only installed by `install` after NEON was detected.
            unsafe { $kernel(as_blocks::<$wb>(w), as_blocks::<$ab>(a)) }
        }
    };
}
wrapper!(dot_q4_0, q4_0_q8_0, BlockQ4_0, BlockQ8_0);
wrapper!(dot_q4_1, q4_1_q8_1, BlockQ4_1, BlockQ8_1);
wrapper!(dot_q8_0, q8_0_q8_0, BlockQ8_0, BlockQ8_0);
