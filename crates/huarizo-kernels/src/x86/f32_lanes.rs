//! Vector primitives for the F32 products (`crate::f32_products`): `__m512` (16 lanes),
//! `__m256` (8), and a pair of `__m256` (16 lanes on a CPU without AVX-512; lanes 0–7 in
//! the first), with the horizontal sums of ggml and tinyBLAS.

use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn zero16() -> __m512 {
    _mm512_setzero_ps()
}
/// # Safety
/// `p` points to 16 readable f32 values.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn load16(p: *const f32) -> __m512 {
    // SAFETY: as the caller promises; the load is unaligned.
    unsafe { _mm512_loadu_ps(p) }
}
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn fma16(a: __m512, b: __m512, c: __m512) -> __m512 {
    _mm512_fmadd_ps(a, b, c)
}
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn arr16(v: __m512) -> [f32; 16] {
    // SAFETY: __m512 and [f32; 16] have the same size, and every bit pattern is valid.
    unsafe { std::mem::transmute(v) }
}

/// tinyBLAS's `hsum(__m128)`: (0 + 2) + (1 + 3).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum4(x: __m128) -> f32 {
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
}
/// tinyBLAS's `hsum(__m256)`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn hsum8(v: __m256) -> f32 {
    hsum4(_mm_add_ps(
        _mm256_extractf128_ps::<1>(v),
        _mm256_castps256_ps128(v),
    ))
}
/// `_mm512_reduce_add_ps` as GCC defines it: 256-bit halves, 128-bit halves, then
/// (0 + 2) + (1 + 3).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) fn hsum16(v: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    hsum8(_mm256_add_ps(hi, _mm512_castps512_ps256(v)))
}
/// 16 lanes in two halves, summed as [`hsum16`] sums them.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn hsum2x8(v: [__m256; 2]) -> f32 {
    hsum8(_mm256_add_ps(v[1], v[0]))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn zero8() -> __m256 {
    _mm256_setzero_ps()
}
/// # Safety
/// `p` points to 8 readable f32 values.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn load8(p: *const f32) -> __m256 {
    // SAFETY: as the caller promises; the load is unaligned.
    unsafe { _mm256_loadu_ps(p) }
}
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn fma8(a: __m256, b: __m256, c: __m256) -> __m256 {
    _mm256_fmadd_ps(a, b, c)
}
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn arr8(v: __m256) -> [f32; 8] {
    // SAFETY: __m256 and [f32; 8] have the same size, and every bit pattern is valid.
    unsafe { std::mem::transmute(v) }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn zero2x8() -> [__m256; 2] {
    [_mm256_setzero_ps(); 2]
}
/// # Safety
/// `p` points to 16 readable f32 values.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn load2x8(p: *const f32) -> [__m256; 2] {
    // SAFETY: as the caller promises; the loads are unaligned.
    unsafe { [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))] }
}
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn fma2x8(a: [__m256; 2], b: [__m256; 2], c: [__m256; 2]) -> [__m256; 2] {
    [
        _mm256_fmadd_ps(a[0], b[0], c[0]),
        _mm256_fmadd_ps(a[1], b[1], c[1]),
    ]
}
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn arr2x8(v: [__m256; 2]) -> [f32; 16] {
    // SAFETY: [__m256; 2] and [f32; 16] have the same size; every bit pattern is valid.
    unsafe { std::mem::transmute(v) }
}
