//! AVX2 + FMA + F16C dot products, following the structure (lane layout, accumulation
//! order, horizontal sums) of llama.cpp's `ggml-cpu/arch/x86/quants.c` AVX2 paths and
//! `vec.cpp`/`simd-mappings.h` for the float types, so that results match llama.cpp built
//! for AVX2 bit for bit, not just to rounding.
//!
//! Each kernel is a `#[target_feature]` function over block slices; the safe `dot_*`
//! wrappers with the uniform [`VecDotFn`](crate::VecDotFn) signature are private and only
//! reachable through [`install`], which runs the CPU feature check first.

use std::arch::x86_64::*;

use crate::blocks::*;
use crate::Kernels;
use huarizo_formats::GgmlType;

pub(crate) mod f32_lanes;
mod packed;
mod row_lanes;
mod tiles;

pub(crate) use row_lanes::{ggml_lanes_kernel, row_lanes_kernel};

/// True if this CPU has everything the kernels in this module use.
pub(crate) fn detected() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// Replaces the scalar kernels in `k` by the AVX2 ones, if the CPU supports them.
pub(crate) fn install(k: &mut Kernels) -> bool {
    if !detected() {
        return false;
    }
    // F32 follows the llama.cpp build huarizo follows, as the F32 products do.
    k.dot[GgmlType::F32 as usize] = crate::f32_products::dot_bytes;
    k.dot[GgmlType::F16 as usize] = dot_f16;
    k.dot[GgmlType::BF16 as usize] = dot_bf16;
    k.dot[GgmlType::Q4_0 as usize] = dot_q4_0;
    k.dot[GgmlType::Q4_1 as usize] = dot_q4_1;
    k.dot[GgmlType::Q5_0 as usize] = dot_q5_0;
    k.dot[GgmlType::Q5_1 as usize] = dot_q5_1;
    k.dot[GgmlType::Q8_0 as usize] = dot_q8_0;
    k.dot[GgmlType::Q2_K as usize] = dot_q2_k;
    k.dot[GgmlType::Q3_K as usize] = dot_q3_k;
    k.dot[GgmlType::Q4_K as usize] = dot_q4_k;
    k.dot[GgmlType::Q5_K as usize] = dot_q5_k;
    k.dot[GgmlType::Q6_K as usize] = dot_q6_k;
    if vnni_detected() {
        // The same integers with one `vpdpbusd` per pair-sum step.
        k.dot[GgmlType::Q4_1 as usize] = dot_q4_1_vnni;
        k.dot[GgmlType::Q5_0 as usize] = dot_q5_0_vnni;
        k.dot[GgmlType::Q8_0 as usize] = dot_q8_0_vnni;
        if is_x86_feature_detected!("gfni") {
            k.dot[GgmlType::Q6_K as usize] = dot_q6_k_gfni;
        }
    }
    true
}

/// Safe wrappers. Each is only ever handed out by `install` after `detected()` returned true.
macro_rules! wrapper {
    ($name:ident, $kernel:path, $wb:ty, $ab:ty) => {
        fn $name(w: &[u8], a: &[u8]) -> f32 {
            // SAFETY: this wrapper is private and only installed by `install` once
            // `detected()` has confirmed AVX2, FMA and F16C.
            unsafe { $kernel(as_blocks::<$wb>(w), as_blocks::<$ab>(a)) }
        }
    };
    ($name:ident, $kernel:ident) => {
        fn $name(w: &[u8], a: &[u8]) -> f32 {
            // SAFETY: as above.
            unsafe { $kernel(w, a) }
        }
    };
}
wrapper!(dot_q4_0, q4_0_q8_0, BlockQ4_0, BlockQ8_0);
wrapper!(dot_q4_1, avx2_x4::q4_1_q8_1_x1, BlockQ4_1, BlockQ8_1);
wrapper!(dot_q5_0, avx2_x4::q5_0_q8_0_x1, BlockQ5_0, BlockQ8_0);
wrapper!(dot_q5_1, q5_1_q8_1, BlockQ5_1, BlockQ8_1);
wrapper!(dot_q8_0, avx2_x4::q8_0_q8_0_x1, BlockQ8_0, BlockQ8_0);
wrapper!(dot_q2_k, q2_k_q8_k, BlockQ2_K, BlockQ8_K);
wrapper!(dot_q3_k, q3_k_q8_k, BlockQ3_K, BlockQ8_K);
wrapper!(dot_q4_k, q4_k_q8_k, BlockQ4_K, BlockQ8_K);
wrapper!(dot_q5_k, q5_k_q8_k, BlockQ5_K, BlockQ8_K);
wrapper!(dot_q6_k, q6_k_q8_k, BlockQ6_K, BlockQ8_K);
wrapper!(dot_q6_k_tiled, q6_k_tiled_order, BlockQ6_K, BlockQ8_K);
wrapper!(dot_q4_k_gemv, q4_k_gemv_order, BlockQ4_K, BlockQ8_K);
wrapper!(dot_q4_k_gemm, q4_k_gemm_order, BlockQ4_K, BlockQ8_K);

/// The AVX2 versions of the kernel orders in `crate::repacked`, if this CPU has AVX2:
/// (Q4_K GEMV order, Q4_K GEMM order, Q6_K tiled order).
pub(crate) fn order_kernels() -> Option<[crate::VecDotFn; 3]> {
    detected().then_some([dot_q4_k_gemv, dot_q4_k_gemm, dot_q6_k_tiled])
}
wrapper!(dot_f16, f16_f16);
wrapper!(dot_bf16, bf16_bf16);

// ----------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_u8x32(p: &[u8; 32]) -> __m256i {
    // SAFETY: `p` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_i8x32(p: &[i8; 32]) -> __m256i {
    // SAFETY: `p` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_u8x16(p: &[u8; 16]) -> __m128i {
    // SAFETY: `p` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(p.as_ptr().cast()) }
}

/// Sixteen signed bytes in one load (copying them into a `[u8; 16]` first made LLVM insert
/// them one by one).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_i8x16(p: &[i8; 16]) -> __m128i {
    // SAFETY: `p` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(p.as_ptr().cast()) }
}

/// f16 → f32 with F16C, as ggml's `GGML_CPU_FP16_TO_FP32` on x86 (exact either way).
///
/// The bits pass through an empty `asm!` on their way into the vector register: otherwise
/// LLVM, seeing only lane 0 used, loads them with a `vpinsrw` that merges into whatever
/// register is at hand, in the one-row kernels the accumulator. That chained every block's
/// scale to the previous block's FMA (about 11 instead of 4 cycles per block).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn h(x: F16) -> f32 {
    let mut bits = _mm_cvtsi32_si128(i32::from(u16::from_le_bytes(x.0)));
    // SAFETY: an empty instruction sequence; it only hides the register's contents from the
    // optimizer.
    unsafe {
        std::arch::asm!("/* {0} */", inout(xmm_reg) bits, options(pure, nomem, nostack, preserves_flags))
    };
    _mm_cvtss_f32(_mm_cvtph_ps(bits))
}

/// The 8 f32 lanes summed as ggml's `hsum_float_8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_f32x8(x: __m256) -> f32 {
    let mut r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// 16 bytes of nibbles → 32 bytes in 0..16: low nibbles first, then high nibbles.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bytes_from_nibbles_32(qs: &[u8; 16]) -> __m256i {
    let tmp = load_u8x16(qs);
    let bytes = _mm256_set_m128i(_mm_srli_epi16::<4>(tmp), tmp);
    _mm256_and_si256(_mm256_set1_epi8(0xf), bytes)
}

/// 32 bits → 32 bytes, 0xFF where the bit is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bytes_from_bits_32(qh: [u8; 4]) -> __m256i {
    let x32 = i32::from_le_bytes(qh);
    let shuf = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// Unsigned × signed bytes, summed in groups of four into 8 i32 lanes, as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_sum_us8_pairs_float(ax: __m256i, sy: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
}

/// Signed × signed bytes, summed in groups of four, as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_sum_i8_pairs_float(x: __m256i, y: __m256i) -> __m256 {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    mul_sum_us8_pairs_float(ax, sy)
}

// ----------------------------------------------------------------------------------------
// 32-wide formats
// ----------------------------------------------------------------------------------------

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let d = _mm256_set1_ps(h(x.d) * h(y.d));
        let qx = _mm256_sub_epi8(bytes_from_nibbles_32(&x.qs), _mm256_set1_epi8(8));
        let q = mul_sum_i8_pairs_float(qx, load_i8x32(&y.qs));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32x8(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let dx = _mm256_set1_ps(h(x.d));
        summs += h(x.m) * h(y.s);
        let hi = _mm256_and_si256(bytes_from_bits_32(x.qh), _mm256_set1_epi8(0x10));
        let qx = _mm256_or_si256(bytes_from_nibbles_32(&x.qs), hi);
        let dy = _mm256_set1_ps(h(y.d));
        let q = mul_sum_us8_pairs_float(qx, load_i8x32(&y.qs));
        acc = _mm256_fmadd_ps(q, _mm256_mul_ps(dx, dy), acc);
    }
    hsum_f32x8(acc) + summs
}

// ----------------------------------------------------------------------------------------
// Four activation rows at once: the weight block is unpacked once, and each output keeps
// exactly the single-row kernel's arithmetic (same lanes, same order), so results are equal
// bit for bit to four calls of the single-row kernel.
// ----------------------------------------------------------------------------------------

/// The four-row kernels of the Q8_0/Q8_1-activation types, generated once per instruction
/// set: `$mul_sum` is the u8×i8 pair-sum step (maddubs + madd on AVX2, one `vpdpbusd` with
/// AVX-512 VNNI; the integers are the same, as no pair sum here reaches i16 saturation).
/// A Q5_0 block's values as signed bytes (`nibble | 0xF0` where the fifth bit is clear), as
/// ggml unpacks them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_0_signed_avx2(x: &BlockQ5_0) -> __m256i {
    let hi = _mm256_andnot_si256(bytes_from_bits_32(x.qh), _mm256_set1_epi8(0xf0u8 as i8));
    _mm256_or_si256(bytes_from_nibbles_32(&x.qs), hi)
}

/// [`q5_0_signed_avx2`] with AVX-512 BW: the fifth bits as a byte mask, 16 subtracted where
/// they are clear (the same bytes, in fewer instructions).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512bw,avx512vl")]
fn q5_0_signed_bw(x: &BlockQ5_0) -> __m256i {
    let nibbles = bytes_from_nibbles_32(&x.qs);
    let clear = !u32::from_le_bytes(x.qh);
    _mm256_mask_sub_epi8(nibbles, clear, nibbles, _mm256_set1_epi8(16))
}

macro_rules! four_row_kernels {
    ($module:ident, $features:literal, $mul_sum:ident, $q5_0_signed:ident) => {
        mod $module {
            use super::*;

            #[target_feature(enable = $features)]
            pub(super) fn q4_1_q8_1_x4(x: &[BlockQ4_1], ys: [&[BlockQ8_1]; 4]) -> [f32; 4] {
                let mut acc = [_mm256_setzero_ps(); 4];
                let mut summs = [0f32; 4];
                for (i, x) in x.iter().enumerate() {
                    let qx = bytes_from_nibbles_32(&x.qs);
                    let (dx, mx) = (h(x.d), h(x.m));
                    for r in 0..4 {
                        let y = &ys[r][i];
                        summs[r] += mx * h(y.s);
                        let d0d1 = _mm256_mul_ps(_mm256_set1_ps(dx), _mm256_set1_ps(h(y.d)));
                        let xy = $mul_sum(qx, load_i8x32(&y.qs));
                        acc[r] = _mm256_fmadd_ps(d0d1, xy, acc[r]);
                    }
                }
                [
                    hsum_f32x8(acc[0]) + summs[0],
                    hsum_f32x8(acc[1]) + summs[1],
                    hsum_f32x8(acc[2]) + summs[2],
                    hsum_f32x8(acc[3]) + summs[3],
                ]
            }

            /// Four Q8_0 activation rows against signed weight bytes `qx` (32 per block, scale
            /// `dx`), as `q8_0_q8_0` / `q5_0_q8_0` accumulate each: the shared inner step of the
            /// four-row kernels of the Q8_0-activation types.
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) fn acc_signed_x4(
                acc: &mut [__m256; 4],
                qx: __m256i,
                dx: f32,
                ys: &[&[BlockQ8_0]; 4],
                i: usize,
            ) {
                let ax = _mm256_sign_epi8(qx, qx);
                // The four rows' scales converted together: dx·d_y per row, the same f32 products.
                let bits = |r: usize| i16::from_le_bytes(ys[r][i].d.0);
                let dy = _mm_cvtph_ps(_mm_set_epi16(
                    0,
                    0,
                    0,
                    0,
                    bits(3),
                    bits(2),
                    bits(1),
                    bits(0),
                ));
                let mut d = [0f32; 4];
                // SAFETY: `d` holds four f32.
                unsafe { _mm_storeu_ps(d.as_mut_ptr(), _mm_mul_ps(_mm_set1_ps(dx), dy)) };
                for r in 0..4 {
                    let y = &ys[r][i];
                    let q = $mul_sum(ax, _mm256_sign_epi8(load_i8x32(&y.qs), qx));
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d[r]), q, acc[r]);
                }
            }

            #[target_feature(enable = $features)]
            pub(super) fn hsum_f32x8_x4(acc: [__m256; 4]) -> [f32; 4] {
                [
                    hsum_f32x8(acc[0]),
                    hsum_f32x8(acc[1]),
                    hsum_f32x8(acc[2]),
                    hsum_f32x8(acc[3]),
                ]
            }

            #[target_feature(enable = $features)]
            pub(super) fn q8_0_q8_0_x4(x: &[BlockQ8_0], ys: [&[BlockQ8_0]; 4]) -> [f32; 4] {
                let mut acc = [_mm256_setzero_ps(); 4];
                for (i, x) in x.iter().enumerate() {
                    acc_signed_x4(&mut acc, load_i8x32(&x.qs), h(x.d), &ys, i);
                }
                hsum_f32x8_x4(acc)
            }

            #[target_feature(enable = $features)]
            pub(super) fn q5_0_q8_0_x4(x: &[BlockQ5_0], ys: [&[BlockQ8_0]; 4]) -> [f32; 4] {
                let mut acc = [_mm256_setzero_ps(); 4];
                for (i, x) in x.iter().enumerate() {
                    acc_signed_x4(&mut acc, $q5_0_signed(x), h(x.d), &ys, i);
                }
                hsum_f32x8_x4(acc)
            }

            /// One-row Q4_1 · Q8_1, the lanes and order of `q4_1_q8_1`.
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) fn q4_1_q8_1_x1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let mut summs = 0.0f32;
                for (x, y) in x.iter().zip(y) {
                    summs += h(x.m) * h(y.s);
                    let d0d1 = _mm256_mul_ps(_mm256_set1_ps(h(x.d)), _mm256_set1_ps(h(y.d)));
                    let xy = $mul_sum(bytes_from_nibbles_32(&x.qs), load_i8x32(&y.qs));
                    acc = _mm256_fmadd_ps(d0d1, xy, acc);
                }
                hsum_f32x8(acc) + summs
            }

            /// One-row signed-weights · Q8_0 step of `q8_0_q8_0` / `q5_0_q8_0`.
            #[inline]
            #[target_feature(enable = $features)]
            fn signed_step(acc: __m256, qx: __m256i, d: f32, y: &BlockQ8_0) -> __m256 {
                let ax = _mm256_sign_epi8(qx, qx);
                let sy = _mm256_sign_epi8(load_i8x32(&y.qs), qx);
                _mm256_fmadd_ps(_mm256_set1_ps(d), $mul_sum(ax, sy), acc)
            }

            /// One-row Q8_0 · Q8_0, the lanes and order of `q8_0_q8_0`.
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) fn q8_0_q8_0_x1(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                for (x, y) in x.iter().zip(y) {
                    acc = signed_step(acc, load_i8x32(&x.qs), h(x.d) * h(y.d), y);
                }
                hsum_f32x8(acc)
            }

            /// One-row Q5_0 · Q8_0, the lanes and order of `q5_0_q8_0`.
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) fn q5_0_q8_0_x1(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                for (x, y) in x.iter().zip(y) {
                    acc = signed_step(acc, $q5_0_signed(x), h(x.d) * h(y.d), y);
                }
                hsum_f32x8(acc)
            }

            /// One activation row against `out.len()` weight rows (each `w_row` bytes) in
            /// one call: the one-row kernels, with the call and the activation view set up
            /// once per row tile.
            macro_rules! rows1_kernel {
                ($rows:ident, $pub_name:ident, $kernel:ident, $wb:ty, $ab:ty) => {
                    #[target_feature(enable = $features)]
                    fn $rows(w: &[u8], w_row: usize, y: &[$ab], out: &mut [f32]) {
                        for (r, o) in out.iter_mut().enumerate() {
                            *o = $kernel(as_blocks::<$wb>(&w[r * w_row..(r + 1) * w_row]), y);
                        }
                    }

                    pub(in super::super) fn $pub_name(
                        w: &[u8],
                        w_row: usize,
                        a: &[u8],
                        out: &mut [f32],
                    ) {
                        // SAFETY: only handed out by `dot_rows_kernel` after the features of
                        // this module were detected.
                        unsafe { $rows(w, w_row, as_blocks::<$ab>(a), out) }
                    }
                };
            }
            rows1_kernel!(q4_1_rows1, rows1_q4_1, q4_1_q8_1_x1, BlockQ4_1, BlockQ8_1);
            rows1_kernel!(q5_0_rows1, rows1_q5_0, q5_0_q8_0_x1, BlockQ5_0, BlockQ8_0);
            rows1_kernel!(q8_0_rows1, rows1_q8_0, q8_0_q8_0_x1, BlockQ8_0, BlockQ8_0);
        }
    };
}
four_row_kernels!(
    avx2_x4,
    "avx2,fma,f16c",
    mul_sum_us8_pairs_float,
    q5_0_signed_avx2
);
four_row_kernels!(
    vnni_x4,
    "avx2,fma,f16c,avx512vnni,avx512vl,avx512bw",
    mul_sum_us8_pairs_vnni,
    q5_0_signed_bw
);

/// u8×i8 products summed in groups of four by AVX-512 VNNI, as f32 (equal to
/// [`mul_sum_us8_pairs_float`] when no pair sum saturates i16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
fn mul_sum_us8_pairs_vnni(ax: __m256i, sy: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy))
}

/// The pre-scaled four-row Q8_0 kernel for CPUs without VNNI (see [`crate::ScaledRows4Fn`];
/// with VNNI, and for Q4_1 and Q5_0, the register tiles of `tiles` take these batches).
mod scaled_avx2 {
    use super::*;

    /// Q8_0 weights against four Q8_0 activation rows with pre-converted scales: per row,
    /// exactly the steps of `q8_0_q8_0` (sign trick, pair sums, `fma(dx·dy, sums, acc)`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q8_0_q8_0_x4_scaled(
        x: &[BlockQ8_0],
        ys: [&[BlockQ8_0]; 4],
        scales: &[[f32; 8]],
    ) -> [f32; 4] {
        let mut acc = [_mm256_setzero_ps(); 4];
        let n = x.len().min(scales.len());
        for (i, (x, sc)) in x[..n].iter().zip(&scales[..n]).enumerate() {
            let qx = load_i8x32(&x.qs);
            let ax = _mm256_sign_epi8(qx, qx);
            let dx = _mm256_set1_ps(h(x.d));
            for r in 0..4 {
                let sy = _mm256_sign_epi8(load_i8x32(&ys[r][i].qs), qx);
                let q = mul_sum_us8_pairs_float(ax, sy);
                acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(dx, _mm256_set1_ps(sc[r])), q, acc[r]);
            }
        }
        [0, 1, 2, 3].map(|r| hsum_f32x8(acc[r]))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn q8_0_rows(
        w: &[u8],
        w_row: usize,
        ys: [&[BlockQ8_0]; 4],
        scales: &[[f32; 8]],
        out: &mut [[f32; 4]],
    ) {
        for (r, o) in out.iter_mut().enumerate() {
            *o = q8_0_q8_0_x4_scaled(
                as_blocks::<BlockQ8_0>(&w[r * w_row..(r + 1) * w_row]),
                ys,
                scales,
            );
        }
    }

    /// Rows `out.len()` rows of `w` (each `w_row` bytes) against four activation rows.
    pub(super) fn rows4_q8_0_scaled(
        w: &[u8],
        w_row: usize,
        a: [&[u8]; 4],
        scales: &[[f32; 8]],
        out: &mut [[f32; 4]],
    ) {
        // SAFETY: only handed out by `scaled4_rows_kernel` after `detected()` returned true.
        unsafe { q8_0_rows(w, w_row, as_blocks4::<BlockQ8_0>(a), scales, out) }
    }
}

/// The one-token kernel of `t` for a tile of weight rows per call, where one exists (the
/// same bits as the installed one-row kernel).
pub(crate) fn dot_rows_kernel(t: GgmlType) -> Option<crate::VecDotRowsFn> {
    pick_q4_1_q5_0_q8_0(
        t,
        [
            vnni_x4::rows1_q4_1,
            vnni_x4::rows1_q5_0,
            vnni_x4::rows1_q8_0,
        ],
        [
            avx2_x4::rows1_q4_1,
            avx2_x4::rows1_q5_0,
            avx2_x4::rows1_q8_0,
        ],
    )
}

/// The pre-scaled four-token kernel of `t` for a tile of weight rows per call: the AVX2
/// register tiles (with AVX-512 VNNI, batches take the lane kernels of `row_lanes` instead).
pub(crate) fn scaled4_rows_kernel(t: GgmlType) -> Option<crate::ScaledRows4Fn> {
    if !detected() {
        return None;
    }
    match t {
        GgmlType::Q4_1 => Some(tiles::avx2_q4_1::rows4_q4_1),
        GgmlType::Q5_0 => Some(tiles::avx2::rows4_q5_0),
        // Q8_0's unsigned `q + 128` would saturate AVX2's i16 pair sums.
        GgmlType::Q8_0 => Some(scaled_avx2::rows4_q8_0_scaled),
        _ => None,
    }
}

/// The kernel for `t` among a family's Q4_1, Q5_0 and Q8_0 kernels, in its AVX-512 VNNI
/// instance where the CPU has VNNI and its AVX2 one otherwise; `None` for other types or
/// without AVX2.
fn pick_q4_1_q5_0_q8_0<F>(t: GgmlType, vnni: [F; 3], avx2: [F; 3]) -> Option<F> {
    if !detected() {
        return None;
    }
    let [q4_1, q5_0, q8_0] = if vnni_detected() { vnni } else { avx2 };
    match t {
        GgmlType::Q4_1 => Some(q4_1),
        GgmlType::Q5_0 => Some(q5_0),
        GgmlType::Q8_0 => Some(q8_0),
        _ => None,
    }
}

pub(crate) use packed::{one_token_block, packed_kernels};

/// Whether this CPU has AVX-512 VNNI with 256-bit forms (and BW, which every such CPU has
/// and the tiled kernels use).
fn vnni_detected() -> bool {
    detected()
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bw")
}

/// [`q6_k_block_lanes`] for four activation rows, the weight bits unpacked once. Each row's
/// lanes are the single-row kernel's.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_block_lanes_x4(x: &BlockQ6_K, ys: [&BlockQ8_K; 4]) -> [__m256i; 4] {
    let scales = load_i8x16(&x.scales);
    let (ql, _) = x.ql.as_chunks::<32>();
    let (qh, _) = x.qh.as_chunks::<32>();
    let mut sumi = [_mm256_setzero_si256(); 4];
    for j in 0..QK_K / 128 {
        let is = 4 * j;
        let sc = [0, 1, 2, 3]
            .map(|k| _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, scale_shuffle_q6(is + k))));
        let q4 = q6_k_unpack(&ql[2 * j], &ql[2 * j + 1], &qh[j]);
        for (r, y) in ys.iter().enumerate() {
            let (q8, _) = y.qs.as_chunks::<32>();
            let mut p = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                let p16 = _mm256_maddubs_epi16(q4[k], load_i8x32(&q8[4 * j + k]));
                p[k] = _mm256_madd_epi16(sc[k], p16);
            }
            sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p[0], p[1]));
            sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p[2], p[3]));
        }
    }
    let scales16 = _mm256_cvtepi8_epi16(scales);
    for (r, y) in ys.iter().enumerate() {
        let q8sclsub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(load_u8x32(&y.bsums), scales16));
        sumi[r] = _mm256_sub_epi32(sumi[r], q8sclsub);
    }
    sumi
}

/// [`q6_k_tiled_order`] for four activation rows.
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_tiled_order_x4(x: &[BlockQ6_K], ys: [&[BlockQ8_K]; 4]) -> [f32; 4] {
    let mut out = [0f32; 4];
    for (i, x) in x.iter().enumerate() {
        let lanes = q6_k_block_lanes_x4(x, [&ys[0][i], &ys[1][i], &ys[2][i], &ys[3][i]]);
        let dx = h(x.d);
        for r in 0..4 {
            let isum = hsum_i32x8(lanes[r]);
            out[r] = (isum as f32 * dx).mul_add(ys[r][i].d(), out[r]);
        }
    }
    out
}

/// [`q4_k_gemm_order`] for four activation rows, the nibbles unpacked once.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_gemm_order_x4(x: &[BlockQ4_K], ys: [&[BlockQ8_K]; 4]) -> [f32; 4] {
    let m4 = _mm256_set1_epi8(0xf);
    let mut acc = [0f32; 4];
    let mut acc_min = [0f32; 4];
    for (i, x) in x.iter().enumerate() {
        let (dx, dminx) = (h(x.d), h(x.dmin));
        let sm: [(u8, u8); 8] = std::array::from_fn(|j| scale_min_k4(j, &x.scales));
        // Each sub-block's scale in every i16 lane, and its min beside each of its two
        // 16-value partial sums (bsum 2j and 2j + 1 belong to sub-block j).
        let sc16: [__m256i; 8] = std::array::from_fn(|j| _mm256_set1_epi16(i16::from(sm[j].0)));
        let m = |j: usize| i16::from(sm[j].1);
        let mins16 = _mm256_setr_epi16(
            m(0),
            m(0),
            m(1),
            m(1),
            m(2),
            m(2),
            m(3),
            m(3),
            m(4),
            m(4),
            m(5),
            m(5),
            m(6),
            m(6),
            m(7),
            m(7),
        );
        let (qs, _) = x.qs.as_chunks::<32>();
        let nibbles: [(__m256i, __m256i); 4] = std::array::from_fn(|pair| {
            let q = load_u8x32(&qs[pair]);
            (
                _mm256_and_si256(q, m4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
            )
        });
        for r in 0..4 {
            let y = &ys[r][i];
            let dy = y.d();
            let (s_sum, s_min) = (dx * dy, dminx * dy);
            let (q8, _) = y.qs.as_chunks::<32>();
            // Per pair, Σ_j sc_j Σ q·y as eight i32 lanes (exact: the same integers as
            // `q4_k_pair_ints`, summed in another order), then the four pairs' totals.
            let lanes: [__m256i; 4] = std::array::from_fn(|pair| {
                let (lo, hi) = nibbles[pair];
                let plo = _mm256_maddubs_epi16(lo, load_i8x32(&q8[2 * pair]));
                let phi = _mm256_maddubs_epi16(hi, load_i8x32(&q8[2 * pair + 1]));
                _mm256_add_epi32(
                    _mm256_madd_epi16(plo, sc16[2 * pair]),
                    _mm256_madd_epi16(phi, sc16[2 * pair + 1]),
                )
            });
            let h01 = _mm256_hadd_epi32(lanes[0], lanes[1]);
            let h23 = _mm256_hadd_epi32(lanes[2], lanes[3]);
            let h = _mm256_hadd_epi32(h01, h23);
            let sums4 = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
            let mut isum = [0i32; 4];
            // SAFETY: `isum` holds four i32; the store is unaligned.
            unsafe { _mm_storeu_si128(isum.as_mut_ptr().cast(), sums4) };
            // Lane j: m_j · (bsum 2j + bsum 2j+1); pair p is lanes 2p and 2p + 1.
            let mins = _mm256_madd_epi16(load_u8x32(&y.bsums), mins16);
            let mut imin = [0i32; 8];
            // SAFETY: `imin` holds eight i32; the store is unaligned.
            unsafe { _mm256_storeu_si256(imin.as_mut_ptr().cast(), mins) };
            for pair in 0..4 {
                acc[r] = (isum[pair] as f32).mul_add(s_sum, acc[r]);
                let m = imin[2 * pair] + imin[2 * pair + 1];
                acc_min[r] = (m as f32).mul_add(s_min, acc_min[r]);
            }
        }
    }
    [0, 1, 2, 3].map(|r| acc[r] - acc_min[r])
}

macro_rules! wrapper1_vnni {
    ($name:ident, $kernel:path, $wb:ty, $ab:ty) => {
        fn $name(w: &[u8], a: &[u8]) -> f32 {
            // SAFETY: only installed by `install` after `vnni_detected()` returned true.
            unsafe { $kernel(as_blocks::<$wb>(w), as_blocks::<$ab>(a)) }
        }
    };
}

macro_rules! wrapper4_vnni {
    ($name:ident, $kernel:path, $wb:ty, $ab:ty) => {
        fn $name(w: &[u8], a: [&[u8]; 4]) -> [f32; 4] {
            // SAFETY: only handed out by `dot4_kernel` after `vnni_detected()` returned true.
            unsafe { $kernel(as_blocks::<$wb>(w), as_blocks4::<$ab>(a)) }
        }
    };
}

macro_rules! wrapper4 {
    ($name:ident, $kernel:path, $wb:ty, $ab:ty) => {
        fn $name(w: &[u8], a: [&[u8]; 4]) -> [f32; 4] {
            // SAFETY: only handed out by `dot4_kernel` after `detected()` returned true.
            unsafe { $kernel(as_blocks::<$wb>(w), as_blocks4::<$ab>(a)) }
        }
    };
}
wrapper4!(dot4_q4_1, avx2_x4::q4_1_q8_1_x4, BlockQ4_1, BlockQ8_1);
wrapper4!(dot4_q8_0, avx2_x4::q8_0_q8_0_x4, BlockQ8_0, BlockQ8_0);
wrapper4!(dot4_q5_0, avx2_x4::q5_0_q8_0_x4, BlockQ5_0, BlockQ8_0);
wrapper1_vnni!(dot_q4_1_vnni, vnni_x4::q4_1_q8_1_x1, BlockQ4_1, BlockQ8_1);
wrapper1_vnni!(dot_q8_0_vnni, vnni_x4::q8_0_q8_0_x1, BlockQ8_0, BlockQ8_0);
wrapper1_vnni!(dot_q5_0_vnni, vnni_x4::q5_0_q8_0_x1, BlockQ5_0, BlockQ8_0);

fn dot_q6_k_gfni(w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: only installed by `install` after `vnni_detected()` and GFNI were confirmed.
    unsafe { q6_k_q8_k_gfni(as_blocks::<BlockQ6_K>(w), as_blocks::<BlockQ8_K>(a)) }
}
wrapper4_vnni!(dot4_q4_1_vnni, vnni_x4::q4_1_q8_1_x4, BlockQ4_1, BlockQ8_1);
wrapper4_vnni!(dot4_q8_0_vnni, vnni_x4::q8_0_q8_0_x4, BlockQ8_0, BlockQ8_0);
wrapper4_vnni!(dot4_q5_0_vnni, vnni_x4::q5_0_q8_0_x4, BlockQ5_0, BlockQ8_0);
wrapper4!(dot4_q4_k_gemm, q4_k_gemm_order_x4, BlockQ4_K, BlockQ8_K);
wrapper4!(dot4_q6_k_tiled, q6_k_tiled_order_x4, BlockQ6_K, BlockQ8_K);

/// The Q4_K GEMM order for a row tile against four activation rows, eight rows at once.
pub(crate) fn q4_k_tile4_kernel() -> Option<crate::Tile4Fn> {
    detected().then_some(tiles::rows4_q4_k_gemm_order)
}

/// Four-row versions of the emulated orders: (Q4_K GEMM order, Q6_K tiled order).
pub(crate) fn order_kernels_x4() -> Option<[crate::VecDot4Fn; 2]> {
    detected().then_some([dot4_q4_k_gemm, dot4_q6_k_tiled])
}

/// The four-row kernel for weights of type `t`, where there is one and the CPU has AVX2.
pub(crate) fn dot4_kernel(t: GgmlType) -> Option<crate::VecDot4Fn> {
    pick_q4_1_q5_0_q8_0(
        t,
        [dot4_q4_1_vnni, dot4_q5_0_vnni, dot4_q8_0_vnni],
        [dot4_q4_1, dot4_q5_0, dot4_q8_0],
    )
}

// ----------------------------------------------------------------------------------------
// k-quants
// ----------------------------------------------------------------------------------------

/// Shuffle that broadcasts i16 `2k` of a 128-bit lane into the low lane and i16 `2k + 1`
/// into the high lane (ggml's `get_scale_shuffle_q3k`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn shuffle_q3k(k: usize) -> __m256i {
    let pick = |m: usize| _mm_set1_epi16((((2 * m + 1) << 8) | (2 * m)) as i16);
    _mm256_set_m128i(pick(2 * k + 1), pick(2 * k))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_q8_k(x: &[BlockQ2_K], y: &[BlockQ8_K]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0xf);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let d = y.d() * h(x.d);
        let dmin = -y.d() * h(x.dmin);
        let mins_and_scales = load_u8x16(&x.scales);
        let scales8 = _mm_and_si128(mins_and_scales, m4);
        let mins8 = _mm_and_si128(_mm_srli_epi16::<4>(mins_and_scales), m4);
        let prod = _mm256_madd_epi16(_mm256_cvtepi8_epi16(mins8), load_u8x32(&y.bsums));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);

        let all_scales = _mm256_cvtepi8_epi16(scales8);
        let l_scales = _mm256_extracti128_si256::<0>(all_scales);
        let h_scales = _mm256_extracti128_si256::<1>(all_scales);
        let scales = [
            _mm256_set_m128i(l_scales, l_scales),
            _mm256_set_m128i(h_scales, h_scales),
        ];
        let (q2, _) = x.qs.as_chunks::<32>();
        let (q8, _) = y.qs.as_chunks::<32>();
        let mut sumi = _mm256_setzero_si256();
        for j in 0..QK_K / 128 {
            let q2bits = load_u8x32(&q2[j]);
            let q2_0 = _mm256_and_si256(q2bits, m3);
            let q2_1 = _mm256_and_si256(_mm256_srli_epi16::<2>(q2bits), m3);
            let q2_2 = _mm256_and_si256(_mm256_srli_epi16::<4>(q2bits), m3);
            let q2_3 = _mm256_and_si256(_mm256_srli_epi16::<6>(q2bits), m3);
            let p = |q: __m256i, k: usize| {
                let p16 = _mm256_maddubs_epi16(q, load_i8x32(&q8[4 * j + k]));
                _mm256_madd_epi16(_mm256_shuffle_epi8(scales[j], shuffle_q3k(k)), p16)
            };
            let p01 = _mm256_add_epi32(p(q2_0, 0), p(q2_1, 1));
            let p23 = _mm256_add_epi32(p(q2_2, 2), p(q2_3, 3));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p01, p23));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q3_k_q8_k(x: &[BlockQ3_K], y: &[BlockQ8_K]) -> f32 {
    const KMASK1: u32 = 0x03030303;
    const KMASK2: u32 = 0x0f0f0f0f;
    let m3 = _mm256_set1_epi8(3);
    let mone = _mm256_set1_epi8(1);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let d = y.d() * h(x.d);
        let s = &x.scales;
        let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
        let a2 = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
        let scales128 = _mm_set_epi32(
            (((a1 >> 4) & KMASK2) | (((a2 >> 6) & KMASK1) << 4)) as i32,
            (((a0 >> 4) & KMASK2) | (((a2 >> 4) & KMASK1) << 4)) as i32,
            ((a1 & KMASK2) | (((a2 >> 2) & KMASK1) << 4)) as i32,
            ((a0 & KMASK2) | ((a2 & KMASK1) << 4)) as i32,
        );
        let scales128 = _mm_sub_epi8(scales128, _mm_set1_epi8(32));
        let all_scales = _mm256_cvtepi8_epi16(scales128);
        let l_scales = _mm256_extracti128_si256::<0>(all_scales);
        let h_scales = _mm256_extracti128_si256::<1>(all_scales);
        let scales = [
            _mm256_set_m128i(l_scales, l_scales),
            _mm256_set_m128i(h_scales, h_scales),
        ];
        let hbits = load_u8x32(&x.hmask);
        let (q3, _) = x.qs.as_chunks::<32>();
        let (q8, _) = y.qs.as_chunks::<32>();
        let mut sumi = _mm256_setzero_si256();
        for j in 0..QK_K / 128 {
            let q3bits = load_u8x32(&q3[j]);
            let p = |k: usize| {
                let q3l = _mm256_and_si256(
                    _mm256_srl_epi16(q3bits, _mm_cvtsi32_si128(2 * k as i32)),
                    m3,
                );
                // 4 where the high bit is clear, 0 where it is set.
                let bit = _mm_cvtsi32_si128((4 * j + k) as i32);
                let q3h = _mm256_slli_epi16::<2>(_mm256_srl_epi16(
                    _mm256_andnot_si256(hbits, _mm256_sll_epi16(mone, bit)),
                    bit,
                ));
                let q8k = load_i8x32(&q8[4 * j + k]);
                let p16 = _mm256_sub_epi16(
                    _mm256_maddubs_epi16(q3l, q8k),
                    _mm256_maddubs_epi16(q3h, q8k),
                );
                _mm256_madd_epi16(_mm256_shuffle_epi8(scales[j], shuffle_q3k(k)), p16)
            };
            let p01 = _mm256_add_epi32(p(0), p(1));
            let p23 = _mm256_add_epi32(p(2), p(3));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p01, p23));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc)
}

/// Q4_K/Q5_K scales and mins unpacked to 16 bytes (8 scales, 8 mins) as four u32, with
/// ggml's mask arithmetic.
#[inline(always)]
fn k4_scales_mins(s: &[u8; 12]) -> [i32; 4] {
    const KMASK1: u32 = 0x3f3f3f3f;
    const KMASK2: u32 = 0x0f0f0f0f;
    const KMASK3: u32 = 0x03030303;
    let u0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let u1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let u2 = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let mins_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let mins_lo = u1 & KMASK1;
    let scales_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let scales_lo = u0 & KMASK1;
    [
        scales_lo as i32,
        scales_hi as i32,
        mins_lo as i32,
        mins_hi as i32,
    ]
}

/// Shuffle that broadcasts the i16 at index `i` of each 128-bit lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn shuffle_k4(i: usize) -> __m256i {
    _mm256_set1_epi16((((2 * i + 1) << 8) | (2 * i)) as i16)
}

/// Per-32 sums of the Q8_K quants (pairs of bsums) as 8 i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8k_sums32(y: &BlockQ8_K) -> __m128i {
    let q8sums = load_u8x32(&y.bsums);
    _mm_hadd_epi16(
        _mm256_extracti128_si256::<0>(q8sums),
        _mm256_extracti128_si256::<1>(q8sums),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_q8_k(x: &[BlockQ4_K], y: &[BlockQ8_K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xf);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let d = y.d() * h(x.d);
        let dmin = -y.d() * h(x.dmin);
        let u = k4_scales_mins(&x.scales);
        let mins_and_scales = _mm256_cvtepu8_epi16(_mm_set_epi32(u[3], u[2], u[1], u[0]));
        let prod = _mm_madd_epi16(
            _mm256_extracti128_si256::<1>(mins_and_scales),
            q8k_sums32(y),
        );
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);

        let sc128 = _mm256_extracti128_si256::<0>(mins_and_scales);
        let scales = _mm256_set_m128i(sc128, sc128);
        let (q4, _) = x.qs.as_chunks::<32>();
        let (q8, _) = y.qs.as_chunks::<32>();
        let mut sumi = _mm256_setzero_si256();
        for j in 0..QK_K / 64 {
            let scale_l = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j));
            let scale_h = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j + 1));
            let q4bits = load_u8x32(&q4[j]);
            let q4l = _mm256_and_si256(q4bits, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits), m4);
            let p16l =
                _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, load_i8x32(&q8[2 * j])));
            let p16h = _mm256_madd_epi16(
                scale_h,
                _mm256_maddubs_epi16(q4h, load_i8x32(&q8[2 * j + 1])),
            );
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16l, p16h));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
    hsum_f32x8(acc) + _mm_cvtss_f32(acc_m)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k_q8_k(x: &[BlockQ5_K], y: &[BlockQ8_K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xf);
    let mzero = _mm_setzero_si128();
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let d = y.d() * h(x.d);
        let dmin = -y.d() * h(x.dmin);
        let u = k4_scales_mins(&x.scales);
        let mins_and_scales = _mm256_cvtepu8_epi16(_mm_set_epi32(u[3], u[2], u[1], u[0]));
        let prod = _mm_madd_epi16(
            _mm256_extracti128_si256::<1>(mins_and_scales),
            q8k_sums32(y),
        );
        let hsum = _mm_hadd_epi32(_mm_hadd_epi32(prod, mzero), mzero);
        summs += dmin * _mm_extract_epi32::<0>(hsum) as f32;

        let sc128 = _mm256_extracti128_si256::<0>(mins_and_scales);
        let scales = _mm256_set_m128i(sc128, sc128);
        let hbits = load_u8x32(&x.qh);
        let mut hmask = _mm256_set1_epi8(1);
        let (q5, _) = x.qs.as_chunks::<32>();
        let (q8, _) = y.qs.as_chunks::<32>();
        let mut sumi = _mm256_setzero_si256();
        for j in 0..QK_K / 64 {
            let scale_0 = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j));
            let scale_1 = _mm256_shuffle_epi8(scales, shuffle_k4(2 * j + 1));
            let q5bits = load_u8x32(&q5[j]);

            let bit0 = _mm_cvtsi32_si128(2 * j as i32);
            let q5l_0 = _mm256_and_si256(q5bits, m4);
            let q5h_0 =
                _mm256_slli_epi16::<4>(_mm256_srl_epi16(_mm256_and_si256(hbits, hmask), bit0));
            let q5_0 = _mm256_add_epi8(q5l_0, q5h_0);
            hmask = _mm256_slli_epi16::<1>(hmask);

            let bit1 = _mm_cvtsi32_si128(2 * j as i32 + 1);
            let q5l_1 = _mm256_and_si256(_mm256_srli_epi16::<4>(q5bits), m4);
            let q5h_1 =
                _mm256_slli_epi16::<4>(_mm256_srl_epi16(_mm256_and_si256(hbits, hmask), bit1));
            let q5_1 = _mm256_add_epi8(q5l_1, q5h_1);
            hmask = _mm256_slli_epi16::<1>(hmask);

            let p16_0 =
                _mm256_madd_epi16(scale_0, _mm256_maddubs_epi16(q5_0, load_i8x32(&q8[2 * j])));
            let p16_1 = _mm256_madd_epi16(
                scale_1,
                _mm256_maddubs_epi16(q5_1, load_i8x32(&q8[2 * j + 1])),
            );
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_0, p16_1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc) + summs
}

/// 128-bit shuffle picking byte `2i` into the low 8 bytes and `2i + 1` into the high 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scale_shuffle_q6(i: usize) -> __m128i {
    const ONES: i64 = 0x0101010101010101;
    _mm_set_epi64x((2 * i as i64 + 1) * ONES, (2 * i as i64) * ONES)
}

/// The 6-bit quants (0..64) of one 128-value half of a Q6_K block, as four vectors of 32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_unpack(ql1: &[u8; 32], ql2: &[u8; 32], qh: &[u8; 32]) -> [__m256i; 4] {
    let m4 = _mm256_set1_epi8(0xf);
    let m2 = _mm256_set1_epi8(3);
    let (q4bits1, q4bits2, q4bits_h) = (load_u8x32(ql1), load_u8x32(ql2), load_u8x32(qh));
    let q4h_0 = _mm256_slli_epi16::<4>(_mm256_and_si256(q4bits_h, m2));
    let q4h_1 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(q4bits_h), m2));
    let q4h_2 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits_h), m2));
    let q4h_3 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(q4bits_h), m2));
    [
        _mm256_or_si256(_mm256_and_si256(q4bits1, m4), q4h_0),
        _mm256_or_si256(_mm256_and_si256(q4bits2, m4), q4h_1),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits1), m4), q4h_2),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q4bits2), m4), q4h_3),
    ]
}

/// The eight int32 lanes of one Q6_K · Q8_K super-block, split as ggml's AVX2 kernel splits
/// them (`Σ sc·q·y` per lane minus `32·Σ sc·bsum` per lane); their sum is the block's exact
/// integer dot product.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_block_lanes(x: &BlockQ6_K, y: &BlockQ8_K) -> __m256i {
    let scales = load_i8x16(&x.scales);
    let (ql, _) = x.ql.as_chunks::<32>();
    let (qh, _) = x.qh.as_chunks::<32>();
    let (q8, _) = y.qs.as_chunks::<32>();
    let mut sumi = _mm256_setzero_si256();
    for j in 0..QK_K / 128 {
        let is = 4 * j;
        let scale_0 = _mm_shuffle_epi8(scales, scale_shuffle_q6(is));
        let scale_1 = _mm_shuffle_epi8(scales, scale_shuffle_q6(is + 1));
        let scale_2 = _mm_shuffle_epi8(scales, scale_shuffle_q6(is + 2));
        let scale_3 = _mm_shuffle_epi8(scales, scale_shuffle_q6(is + 3));

        let [q4_0, q4_1, q4_2, q4_3] = q6_k_unpack(&ql[2 * j], &ql[2 * j + 1], &qh[j]);

        let q8_0 = load_i8x32(&q8[4 * j]);
        let q8_1 = load_i8x32(&q8[4 * j + 1]);
        let q8_2 = load_i8x32(&q8[4 * j + 2]);
        let q8_3 = load_i8x32(&q8[4 * j + 3]);

        // q·y with q unsigned (0..64); the −32 offset is subtracted once per block below,
        // per lane, as ggml does (its lane split decides the float sums).
        let p16_0 = _mm256_maddubs_epi16(q4_0, q8_0);
        let p16_1 = _mm256_maddubs_epi16(q4_1, q8_1);
        let p16_2 = _mm256_maddubs_epi16(q4_2, q8_2);
        let p16_3 = _mm256_maddubs_epi16(q4_3, q8_3);

        let p16_0 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scale_0), p16_0);
        let p16_1 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scale_1), p16_1);
        let p16_2 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scale_2), p16_2);
        let p16_3 = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scale_3), p16_3);

        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_0, p16_1));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_2, p16_3));
    }
    // 32·Σ sc·bsum, lane l holding sub-blocks 2l and 2l+1 of 16.
    let q8sums = load_u8x32(&y.bsums);
    let q8sclsub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(q8sums, _mm256_cvtepi8_epi16(scales)));
    _mm256_sub_epi32(sumi, q8sclsub)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_q8_k(x: &[BlockQ6_K], y: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let d = y.d() * h(x.d);
        let sumi = q6_k_block_lanes(x, y);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc)
}

/// [`q6_k_q8_k`] with AVX-512 VL, BW, VNNI and GFNI: the same eight lanes per super-block
/// ([`q6_k_block_lanes_gfni`]) in about 50 instructions instead of 80. `matmul_bench 1 1 896
/// 4864 Q6_K` from the caches: 22–27 → 31.5 GB/s of weights on one thread, 43–45 → 55–61 on
/// two (Qwen2.5-0.5B's `ffn_down` had run at 20–27 GB/s in a generated token, below the
/// memory's speed on this machine).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
fn q6_k_q8_k_gfni(x: &[BlockQ6_K], y: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let d = y.d() * h(x.d);
        let sumi = q6_k_block_lanes_gfni(x, y);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32x8(acc)
}

/// [`q6_k_block_lanes`], the same integers lane by lane, with fewer instructions: each
/// vector's two high bits moved into place by one `gf2p8affineqb` and merged with its
/// nibbles by one `vpternlogd`; each 16-value sub-block's scale picked by one `vpermw` from
/// the block's scales widened once; `vpdpwssd` multiplying by it and adding in one step.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
fn q6_k_block_lanes_gfni(x: &BlockQ6_K, y: &BlockQ8_K) -> __m256i {
    let scales16 = _mm256_cvtepi8_epi16(load_i8x16(&x.scales));
    let (ql, _) = x.ql.as_chunks::<32>();
    let (qh, _) = x.qh.as_chunks::<32>();
    let (q8, _) = y.qs.as_chunks::<32>();
    let m4 = _mm256_set1_epi8(0xf);
    // Bits 2k and 2k + 1 of each byte to bits 4 and 5, the others cleared: result bit i is
    // the parity of the byte and matrix byte 7 − i.
    let high = |k: i64| _mm256_set1_epi64x(((1 << (2 * k)) << 24) | ((1 << (2 * k + 1)) << 16));
    let mut sumi = _mm256_setzero_si256();
    for j in 0..QK_K / 128 {
        let (q4bits1, q4bits2, q4bits_h) = (
            load_u8x32(&ql[2 * j]),
            load_u8x32(&ql[2 * j + 1]),
            load_u8x32(&qh[j]),
        );
        let nibbles = [
            q4bits1,
            q4bits2,
            _mm256_srli_epi16::<4>(q4bits1),
            _mm256_srli_epi16::<4>(q4bits2),
        ];
        for (k, nibbles) in nibbles.into_iter().enumerate() {
            let h = _mm256_gf2p8affine_epi64_epi8::<0>(q4bits_h, high(k as i64));
            // (nibbles & 0x0F) | h
            let q = _mm256_ternarylogic_epi32::<0xEC>(nibbles, h, m4);
            let p16 = _mm256_maddubs_epi16(q, load_i8x32(&q8[4 * j + k]));
            // Lanes 0–7 take sub-block 8j + 2k's scale, lanes 8–15 the next one's.
            let first = (8 * j + 2 * k) as i16;
            let pick = _mm256_setr_epi16(
                first,
                first,
                first,
                first,
                first,
                first,
                first,
                first,
                first + 1,
                first + 1,
                first + 1,
                first + 1,
                first + 1,
                first + 1,
                first + 1,
                first + 1,
            );
            let scale = _mm256_permutexvar_epi16(pick, scales16);
            sumi = _mm256_dpwssd_epi32(sumi, scale, p16);
        }
    }
    // 32·Σ sc·bsum, lane l holding sub-blocks 2l and 2l+1 of 16.
    let q8sums = load_u8x32(&y.bsums);
    let q8sclsub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(q8sums, scales16));
    _mm256_sub_epi32(sumi, q8sclsub)
}

/// Q6_K · Q8_K in the order of ggml's tiled K-quant GEMM (see `crate::repacked`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_tiled_order(x: &[BlockQ6_K], y: &[BlockQ8_K]) -> f32 {
    let mut out = 0f32;
    for (x, y) in x.iter().zip(y) {
        let isum = hsum_i32x8(q6_k_block_lanes(x, y));
        out = (isum as f32 * h(x.d)).mul_add(y.d(), out);
    }
    out
}

/// Sum of the eight int32 lanes (exact, wrapping as the hardware does).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32x8(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    _mm_cvtsi128_si32(s)
}

/// `Σ q·y` over 32 values: 4-bit (or other unsigned, < 128) quants `q` against 32 Q8 values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unsigned_dot32(q: __m256i, y: &[i8; 32]) -> i32 {
    let pairs = _mm256_maddubs_epi16(q, load_i8x32(y));
    hsum_i32x8(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// `(Σ_j sc_j Σ q·y, Σ_j m_j bsum_j)` of pair `pair` of a Q4_K · Q8_K super-block, from the
/// two sub-blocks' quant dots and their (scale, min).
#[inline(always)]
fn q4_k_pair_ints(sm: [(u8, u8); 2], dots: (i32, i32), y: &BlockQ8_K, pair: usize) -> (i32, i32) {
    let ((sc_lo, m_lo), (sc_hi, m_hi)) = (sm[0], sm[1]);
    let isum = i32::from(sc_lo) * dots.0 + i32::from(sc_hi) * dots.1;
    let imin = i32::from(m_lo) * (y.bsum(4 * pair) + y.bsum(4 * pair + 1))
        + i32::from(m_hi) * (y.bsum(4 * pair + 2) + y.bsum(4 * pair + 3));
    (isum, imin)
}

/// Exact `(Σ_j sc_j Σ q·y, Σ_j m_j bsum_j)` of each 64-value pair of one Q4_K · Q8_K
/// super-block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_pair_sums(x: &BlockQ4_K, y: &BlockQ8_K) -> [(i32, i32); 4] {
    let m4 = _mm256_set1_epi8(0xf);
    let (qs, _) = x.qs.as_chunks::<32>();
    let (q8, _) = y.qs.as_chunks::<32>();
    let mut out = [(0i32, 0i32); 4];
    for (pair, o) in out.iter_mut().enumerate() {
        let q = load_u8x32(&qs[pair]);
        let lo = _mm256_and_si256(q, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
        let dots = (
            unsigned_dot32(lo, &q8[2 * pair]),
            unsigned_dot32(hi, &q8[2 * pair + 1]),
        );
        let sm = [
            scale_min_k4(2 * pair, &x.scales),
            scale_min_k4(2 * pair + 1, &x.scales),
        ];
        *o = q4_k_pair_ints(sm, dots, y, pair);
    }
    out
}

/// Q4_K · Q8_K in the order of ggml's interleaved Q4_K GEMV (see `crate::repacked`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_gemv_order(x: &[BlockQ4_K], y: &[BlockQ8_K]) -> f32 {
    let (mut acc, mut acc_min) = (0f32, 0f32);
    for (x, y) in x.iter().zip(y) {
        let sums = q4_k_pair_sums(x, y);
        let isum: i32 = sums.iter().map(|s| s.0).sum();
        let imin: i32 = sums.iter().map(|s| s.1).sum();
        let dy = y.d();
        acc = (isum as f32).mul_add(h(x.d) * dy, acc);
        acc_min = (imin as f32).mul_add(h(x.dmin) * dy, acc_min);
    }
    acc - acc_min
}

/// Q4_K · Q8_K in the order of ggml's interleaved Q4_K GEMM (see `crate::repacked`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_gemm_order(x: &[BlockQ4_K], y: &[BlockQ8_K]) -> f32 {
    let (mut acc, mut acc_min) = (0f32, 0f32);
    for (x, y) in x.iter().zip(y) {
        let dy = y.d();
        let (scale, scale_min) = (h(x.d) * dy, h(x.dmin) * dy);
        for (isum, imin) in q4_k_pair_sums(x, y) {
            acc = (isum as f32).mul_add(scale, acc);
            acc_min = (imin as f32).mul_add(scale_min, acc_min);
        }
    }
    acc - acc_min
}

// ----------------------------------------------------------------------------------------
// Float types: 4 accumulators of 8 lanes, STEP = 32 elements, ggml's REDUCE
// ----------------------------------------------------------------------------------------

/// ggml's `GGML_F32x8_REDUCE` over four accumulators.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn reduce4(s: [__m256; 4]) -> f32 {
    let s0 = _mm256_add_ps(s[0], s[2]);
    let s1 = _mm256_add_ps(s[1], s[3]);
    let s0 = _mm256_add_ps(s0, s1);
    let t0 = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps::<1>(s0));
    let t1 = _mm_hadd_ps(t0, t0);
    _mm_cvtss_f32(_mm_hadd_ps(t1, t1))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn f16_f16(x: &[u8], y: &[u8]) -> f32 {
    let (xc, xr) = x.as_chunks::<64>();
    let (yc, yr) = y.as_chunks::<64>();
    let mut sum = [_mm256_setzero_ps(); 4];
    for (xc, yc) in xc.iter().zip(yc) {
        let (xv, _) = xc.as_chunks::<16>();
        let (yv, _) = yc.as_chunks::<16>();
        for j in 0..4 {
            let ax = _mm256_cvtph_ps(load_u8x16(&xv[j]));
            let ay = _mm256_cvtph_ps(load_u8x16(&yv[j]));
            sum[j] = _mm256_fmadd_ps(ax, ay, sum[j]);
        }
    }
    let mut sumf = reduce4(sum) as f64;
    for (a, b) in xr.chunks_exact(2).zip(yr.chunks_exact(2)) {
        let a = f16_to_f32(u16::from_le_bytes([a[0], a[1]]));
        let b = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        sumf += (a * b) as f64;
    }
    sumf as f32
}

/// 8 bf16 → 8 f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_bf16x8(p: &[u8; 16]) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(load_u8x16(
        p,
    ))))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn bf16_bf16(x: &[u8], y: &[u8]) -> f32 {
    let (xc, xr) = x.as_chunks::<64>();
    let (yc, yr) = y.as_chunks::<64>();
    let mut c = [_mm256_setzero_ps(); 4];
    for (xc, yc) in xc.iter().zip(yc) {
        let (xv, _) = xc.as_chunks::<16>();
        let (yv, _) = yc.as_chunks::<16>();
        for j in 0..4 {
            c[j] = _mm256_add_ps(
                _mm256_mul_ps(load_bf16x8(&xv[j]), load_bf16x8(&yv[j])),
                c[j],
            );
        }
    }
    let c1 = _mm256_add_ps(_mm256_add_ps(c[0], c[2]), _mm256_add_ps(c[1], c[3]));
    let mut g = _mm_add_ps(_mm256_extractf128_ps::<1>(c1), _mm256_castps256_ps128(c1));
    g = _mm_add_ps(g, _mm_movehl_ps(g, g));
    g = _mm_add_ss(g, _mm_movehdup_ps(g));
    let mut sumf = _mm_cvtss_f32(g) as f64;
    for (a, b) in xr.chunks_exact(2).zip(yr.chunks_exact(2)) {
        let a = bf16_to_f32(u16::from_le_bytes([a[0], a[1]]));
        let b = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
        sumf += (a * b) as f64;
    }
    sumf as f32
}

/// The largest of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hmax_f32x8(m: __m256) -> f32 {
    let m4 = _mm_max_ps(_mm256_extractf128_ps::<1>(m), _mm256_castps256_ps128(m));
    let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)))
}

/// Stores 32 i32 lanes (each in i8 range) as 32 bytes in order: the i32 → i16 → i8 packs
/// interleave the 128-bit halves, and a permutation restores the order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store_i8x32(q: [__m256i; 4], out: &mut [i8]) {
    let packed = _mm256_packs_epi16(
        _mm256_packs_epi32(q[0], q[1]),
        _mm256_packs_epi32(q[2], q[3]),
    );
    let ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    let out = &mut out[..32];
    // SAFETY: `out` is 32 writable bytes; the store is unaligned.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), ordered) };
}

/// Whether any of the eight lanes is NaN.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn any_nan(v: __m256) -> bool {
    _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v)) != 0
}

/// One 32-value block quantized as [`crate::reference::quantize_q8_0_act`] does it (the
/// same max, scale, products and round-half-even, eight lanes at a time): returns the f32
/// scale `d` and the quants' sum. `None`, writing nothing, for a block holding a NaN (the
/// reference's `f32::max` skips NaN where the vector max does not).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_act_block(x: &[f32; 32], qs: &mut [i8; 32]) -> Option<(f32, i32)> {
    let sign = _mm256_set1_ps(-0.0);
    // SAFETY: `x` holds 32 f32; the loads are unaligned.
    let v: [__m256; 4] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * i)) });
    if v.iter().any(|&v| any_nan(v)) {
        return None;
    }
    let m01 = _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1]));
    let m23 = _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3]));
    let amax = hmax_f32x8(_mm256_max_ps(m01, m23));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let q = v.map(|v| {
        _mm256_cvtps_epi32(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(_mm256_mul_ps(v, id)))
    });
    let total = hsum_i32x8(_mm256_add_epi32(
        _mm256_add_epi32(q[0], q[1]),
        _mm256_add_epi32(q[2], q[3]),
    ));
    store_i8x32(q, qs);
    Some((d, total))
}

/// [`crate::reference::quantize_q8_0_act`] with AVX2 (the same bits; a block with a NaN
/// goes to the reference).
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q8_0_act_avx2(x: &[f32], y: &mut [BlockQ8_0]) {
    for (b, x) in y.iter_mut().zip(x.as_chunks::<32>().0) {
        match q8_act_block(x, &mut b.qs) {
            Some((d, _)) => b.d.set(d),
            None => crate::reference::quantize_q8_0_act(x, std::slice::from_mut(b)),
        }
    }
}

/// [`crate::reference::quantize_q8_1_act`] with AVX2 (the same bits; a block with a NaN
/// goes to the reference).
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q8_1_act_avx2(x: &[f32], y: &mut [BlockQ8_1]) {
    for (b, x) in y.iter_mut().zip(x.as_chunks::<32>().0) {
        match q8_act_block(x, &mut b.qs) {
            Some((d, sum)) => {
                b.d.set(d);
                b.s.set(d * sum as f32);
            }
            None => crate::reference::quantize_q8_1_act(x, std::slice::from_mut(b)),
        }
    }
}

/// Quantizes an activation row to Q8_0 with AVX2 when the CPU has it; false otherwise.
pub(crate) fn quantize_q8_0_act(x: &[f32], y: &mut [BlockQ8_0]) -> bool {
    if !detected() {
        return false;
    }
    // SAFETY: the features were detected above.
    unsafe { quantize_q8_0_act_avx2(x, y) };
    true
}

/// Quantizes an activation row to Q8_1 with AVX2 when the CPU has it; false otherwise.
pub(crate) fn quantize_q8_1_act(x: &[f32], y: &mut [BlockQ8_1]) -> bool {
    if !detected() {
        return false;
    }
    // SAFETY: the features were detected above.
    unsafe { quantize_q8_1_act_avx2(x, y) };
    true
}

/// [`crate::reference::quantize_q8_k`] for one block with AVX2: the same signed maximum
/// (the first element of largest magnitude), scale, products and rounding. False, writing
/// nothing, for a block holding a NaN (the reference's comparisons order NaN its own way).
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q8_k_block(x: &[f32; QK_K], b: &mut BlockQ8_K) -> bool {
    let sign = _mm256_set1_ps(-0.0);
    // SAFETY (every load below): i < 32, so 8i + 8 <= 256 = x.len(); loads are unaligned.
    let load = |i: usize| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * i)) };
    let mut m = _mm256_setzero_ps();
    let mut nan = false;
    for i in 0..QK_K / 8 {
        let v = load(i);
        nan |= any_nan(v);
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
    }
    if nan {
        return false;
    }
    let amax = hmax_f32x8(m);
    if amax == 0.0 {
        b.d = 0f32.to_le_bytes();
        b.qs = [0; QK_K];
        b.bsums = [0; QK_K / 16 * 2];
        return true;
    }
    let target = _mm256_set1_ps(amax);
    let first = (0..QK_K / 8)
        .find_map(|i| {
            let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(
                _mm256_andnot_ps(sign, load(i)),
                target,
            ));
            (hit != 0).then(|| 8 * i + hit.trailing_zeros() as usize)
        })
        .unwrap_or(0);
    let iscale = -127.0 / x[first];
    let scale = _mm256_set1_ps(iscale);
    let limit = _mm256_set1_epi32(127);
    for j in 0..QK_K / 32 {
        let q: [__m256i; 4] = std::array::from_fn(|k| {
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(load(4 * j + k), scale),
            );
            _mm256_min_epi32(_mm256_cvtps_epi32(r), limit)
        });
        for half in 0..2 {
            let sum = hsum_i32x8(_mm256_add_epi32(q[2 * half], q[2 * half + 1]));
            let at = 2 * (2 * j + half);
            b.bsums[at..at + 2].copy_from_slice(&(sum as i16).to_le_bytes());
        }
        store_i8x32(q, &mut b.qs[32 * j..]);
    }
    b.d = (1.0 / iscale).to_le_bytes();
    true
}

/// Quantizes an activation row to Q8_K with AVX2 where the CPU has it, block by block (a
/// block with a NaN goes to the reference). False, writing nothing, without AVX2.
pub(crate) fn quantize_q8_k(x: &[f32], y: &mut [BlockQ8_K]) -> bool {
    if !detected() {
        return false;
    }
    for (b, x) in y.iter_mut().zip(x.as_chunks::<QK_K>().0) {
        // SAFETY: the features were detected above.
        if !unsafe { quantize_q8_k_block(x, b) } {
            crate::reference::quantize_q8_k(x, std::slice::from_mut(b));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{random_activations, random_weights, Rng};

    #[test]
    fn q6_k_gfni_kernel_equals_the_avx2_one_bit_for_bit() {
        if !(vnni_detected() && is_x86_feature_detected!("gfni")) {
            return;
        }
        let mut rng = Rng(0x6b6b_0606_1234_5678);
        for nb in [1, 2, 19] {
            for _ in 0..50 {
                let w = random_weights(GgmlType::Q6_K, nb, &mut rng);
                let (_, a) = random_activations(GgmlType::Q6_K, nb * QK_K, &mut rng);
                let (x, y) = (as_blocks::<BlockQ6_K>(&w), as_blocks::<BlockQ8_K>(&a));
                // SAFETY: AVX2, FMA, F16C, AVX-512 VL/BW/VNNI and GFNI were detected above.
                let (avx2, gfni) = unsafe { (q6_k_q8_k(x, y), q6_k_q8_k_gfni(x, y)) };
                assert_eq!(
                    avx2.to_bits(),
                    gfni.to_bits(),
                    "{nb} blocks: {avx2} vs {gfni}"
                );
            }
        }
    }
}
