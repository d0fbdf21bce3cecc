//! Register-tiled batch kernels.
//!
//! Q4_1 and Q5_0 on CPUs with AVX2 but without AVX-512 VNNI (with it, batches take the lane
//! kernels of `row_lanes`): up to four weight rows against four activation rows per pass
//! over the blocks, sixteen accumulators, so that each weight block is unpacked once for four
//! tokens and each activation block loaded once for four rows. Every output is bit for bit
//! what the one-row kernel (and so ggml's `vec_dot_*` and tinyBLAS) computes: the same eight
//! i32 lanes per block, the same `acc = fma(d_x·d_y, lanes, acc)` per block in block order,
//! the same horizontal sum, and for Q4_1 the same `m·s` sum added last. Only the integer
//! lanes are formed differently: ggml multiplies `|q|` by `y·sign(q)`; here the weight is
//! kept unsigned (`u = q + c`: `c` = 0 for Q4_1's nibbles, 16 for Q5_0) and the lane starts
//! from `−c·Σy`, so that one unsigned × signed product sum gives `Σ u·y − c·Σ y = Σ q·y`
//! exactly. The pair sums pass through i16: exact for `u < 32` (`|u·y| ≤ 31·127`), so Q8_0
//! (`u` up to 255) keeps the sign-trick kernel of `scaled_avx2`.
//!
//! Q4_K in ggml's repacked-GEMM order: eight weight rows in the eight f32 lanes (see
//! `q4_k_gemm_order_8x4`).

use super::*;

/// Blocks whose scale products are computed ahead of their dot products.
const CHUNK: usize = 32;

/// What the tiles read of a 32-value weight block besides its quants.
trait TileBlock {
    /// The block's scale.
    fn d(&self) -> F16;
    /// The f16 bits of the block's scale (low half) and minimum (high half), for Q4_1;
    /// never read for the symmetric types.
    fn dm_bits(&self) -> u32 {
        0
    }
}

impl TileBlock for BlockQ4_1 {
    fn d(&self) -> F16 {
        self.d
    }
    fn dm_bits(&self) -> u32 {
        u32::from(u16::from_le_bytes(self.d.0)) | (u32::from(u16::from_le_bytes(self.m.0)) << 16)
    }
}

impl TileBlock for BlockQ5_0 {
    fn d(&self) -> F16 {
        self.d
    }
}

impl TileBlock for BlockQ8_0 {
    fn d(&self) -> F16 {
        self.d
    }
}

/// The tiled kernel for one weight type and instruction set: `$lanes` adds the four-product
/// lane sums of unsigned `u` × signed `y` to `start`; `$unpack` gives a block's `u = q + c`
/// with `c = $offset`; `$with_min` adds Q4_1's `Σ m·s` (activation scales `s` in lanes 4..8
/// of the pre-converted scales).
macro_rules! q0_tiles {
    (
        $module:ident, $features:literal, $lanes:ident, $unpack:ident,
        $wb:ty, $ab:ty, $offset:literal, $with_min:literal, $pub_name:ident
    ) => {
        pub(in crate::x86) mod $module {
            use super::*;

            /// `R` weight rows (first `n` blocks) against four activation rows with
            /// pre-converted scales (`scales[i][t]` = d of block i of token t): `[row][token]`
            /// results.
            #[inline]
            #[target_feature(enable = $features)]
            fn tile<const R: usize>(
                x: [&[$wb]; R],
                ys: [&[$ab]; 4],
                scales: &[[f32; 8]],
                n: usize,
            ) -> [[f32; 4]; R] {
                let x = x.map(|row| &row[..n]);
                let ys = ys.map(|row| &row[..n]);
                let scales = &scales[..n];
                let mut acc = [[_mm256_setzero_ps(); 4]; R];
                // Q4_1: Σ m·s for row r, token t in lane 4r + t (rows 0–1, then rows 2–3).
                let mut mins = [_mm256_setzero_ps(); 2];
                // d_x·d_y of block i0 + k for row r, token t at [k][4r + t], a chunk of
                // blocks at a time: computed ahead, so that the FMAs take them as broadcast
                // memory operands.
                // (Left uninitialized: every entry is written before it is read, and
                // zeroing 2 KiB per call showed in profiles.)
                let mut d = [std::mem::MaybeUninit::<[f32; 16]>::uninit(); CHUNK];
                // Q4_1: m_x·s_y in the same layout, added to `mins` in the main loop.
                let mut ms = [std::mem::MaybeUninit::<[f32; 16]>::uninit(); CHUNK];
                for i0 in (0..n).step_by(CHUNK) {
                    let m = CHUNK.min(n - i0);
                    for k in 0..m {
                        if $with_min {
                            let mut dm = [0u32; 4];
                            for r in 0..R {
                                dm[r] = x[r][i0 + k].dm_bits();
                            }
                            block_scales_mins(&mut d[k], &mut ms[k], dm, &scales[i0 + k]);
                        } else {
                            let mut dx = [0u16; 4];
                            for r in 0..R {
                                dx[r] = u16::from_le_bytes(x[r][i0 + k].d().0);
                            }
                            let (sc, _) = scales[i0 + k].as_chunks::<4>();
                            block_scales(&mut d[k], dx, &sc[0]);
                        }
                    }
                    for k in 0..m {
                        // SAFETY: `block_scales` wrote all 16 values of entries `..m` above.
                        let d = unsafe { d[k].assume_init_ref() };
                        if $with_min {
                            // SAFETY: as above, when `$with_min`.
                            let ms = unsafe { ms[k].assume_init_ref() };
                            for half in 0..2 {
                                // SAFETY: `ms` holds 16 f32; the loads are unaligned.
                                let v = unsafe { _mm256_loadu_ps(ms.as_ptr().add(8 * half)) };
                                mins[half] = _mm256_add_ps(mins[half], v);
                            }
                        }
                        let i = i0 + k;
                        let mut u = [_mm256_setzero_si256(); R];
                        for r in 0..R {
                            u[r] = $unpack(&x[r][i]);
                        }
                        for t in 0..4 {
                            let y = load_i8x32(&ys[t][i].qs);
                            // −c·Σy per lane of four bytes.
                            let start = if $offset == 0 {
                                _mm256_setzero_si256()
                            } else {
                                _mm256_madd_epi16(
                                    _mm256_maddubs_epi16(
                                        _mm256_set1_epi8(($offset as u8) as i8),
                                        y,
                                    ),
                                    _mm256_set1_epi16(-1),
                                )
                            };
                            for r in 0..R {
                                let lanes = _mm256_cvtepi32_ps($lanes(start, u[r], y));
                                let dxy = _mm256_set1_ps(d[4 * r + t]);
                                acc[r][t] = _mm256_fmadd_ps(dxy, lanes, acc[r][t]);
                            }
                        }
                    }
                }
                let mut out = [[0f32; 4]; R];
                let mut m = [0f32; 16];
                // SAFETY: `m` holds 16 f32; the stores are unaligned.
                unsafe {
                    _mm256_storeu_ps(m.as_mut_ptr(), mins[0]);
                    _mm256_storeu_ps(m.as_mut_ptr().add(8), mins[1]);
                }
                for r in 0..R {
                    for t in 0..4 {
                        out[r][t] = hsum_f32x8(acc[r][t]);
                        if $with_min {
                            out[r][t] += m[4 * r + t];
                        }
                    }
                }
                out
            }

            #[target_feature(enable = $features)]
            fn rows(
                w: &[u8],
                w_row: usize,
                ys: [&[$ab]; 4],
                scales: &[[f32; 8]],
                out: &mut [[f32; 4]],
            ) {
                let row = |r: usize| as_blocks::<$wb>(&w[r * w_row..(r + 1) * w_row]);
                let n = ys
                    .iter()
                    .map(|y| y.len())
                    .fold(scales.len().min(row(0).len()), usize::min);
                let mut chunks = out.chunks_exact_mut(4);
                let mut r0 = 0;
                for o in &mut chunks {
                    let x = [row(r0), row(r0 + 1), row(r0 + 2), row(r0 + 3)];
                    o.copy_from_slice(&tile::<4>(x, ys, scales, n));
                    r0 += 4;
                }
                let rest = chunks.into_remainder();
                match rest.len() {
                    3 => rest.copy_from_slice(&tile::<3>(
                        [row(r0), row(r0 + 1), row(r0 + 2)],
                        ys,
                        scales,
                        n,
                    )),
                    2 => rest.copy_from_slice(&tile::<2>([row(r0), row(r0 + 1)], ys, scales, n)),
                    1 => rest.copy_from_slice(&tile::<1>([row(r0)], ys, scales, n)),
                    _ => {}
                }
            }

            /// The [`crate::ScaledRows4Fn`] of this weight type and instruction set.
            pub(in crate::x86) fn $pub_name(
                w: &[u8],
                w_row: usize,
                a: [&[u8]; 4],
                scales: &[[f32; 8]],
                out: &mut [[f32; 4]],
            ) {
                if out.is_empty() {
                    return;
                }
                // SAFETY: only handed out by `scaled4_rows_kernel` after the features of this
                // module were detected.
                unsafe { rows(w, w_row, as_blocks4::<$ab>(a), scales, out) }
            }
        }
    };
}

/// Writes the products `d_x[r]·d_y[t]` (f32, as ggml rounds them) into `d[4r + t]`, for the f16
/// weight scales `dx` of four rows and the f32 activation scales `sc` of four tokens.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_scales(d: &mut std::mem::MaybeUninit<[f32; 16]>, dx: [u16; 4], sc: &[f32; 4]) {
    let bits = u64::from(dx[0])
        | (u64::from(dx[1]) << 16)
        | (u64::from(dx[2]) << 32)
        | (u64::from(dx[3]) << 48);
    let dx = _mm256_castps128_ps256(_mm_cvtph_ps(_mm_set_epi64x(0, bits as i64)));
    // SAFETY: `sc` holds four f32; the load is unaligned.
    let dy = unsafe { _mm_loadu_ps(sc.as_ptr()) };
    let dy = _mm256_set_m128(dy, dy);
    let rows01 = _mm256_permutevar8x32_ps(dx, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    let rows23 = _mm256_permutevar8x32_ps(dx, _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3));
    let d = d.as_mut_ptr().cast::<f32>();
    // SAFETY: `d` has room for 16 f32: two unaligned stores of 8 write all of it.
    unsafe {
        _mm256_storeu_ps(d, _mm256_mul_ps(rows01, dy));
        _mm256_storeu_ps(d.add(8), _mm256_mul_ps(rows23, dy));
    }
}

/// [`block_scales`] for Q4_1: from the (d, m) f16 pairs `dm` of four rows and the
/// pre-converted `[d₀..d₃, s₀..s₃]` of four Q8_1 tokens, `d_x·d_y` into `d` and `m_x·s_y`
/// into `ms`, both at `[4r + t]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_scales_mins(
    d: &mut std::mem::MaybeUninit<[f32; 16]>,
    ms: &mut std::mem::MaybeUninit<[f32; 16]>,
    dm: [u32; 4],
    sc: &[f32; 8],
) {
    // [d₀ m₀ d₁ m₁ d₂ m₂ d₃ m₃] as f32.
    let dm = _mm256_cvtph_ps(_mm_setr_epi32(
        dm[0] as i32,
        dm[1] as i32,
        dm[2] as i32,
        dm[3] as i32,
    ));
    let lanes = |a: i32, b: i32| _mm256_setr_epi32(a, a, a, a, b, b, b, b);
    // SAFETY: `sc` holds eight f32; the loads are unaligned.
    let (dy, sy) = unsafe {
        let dy = _mm_loadu_ps(sc.as_ptr());
        let sy = _mm_loadu_ps(sc.as_ptr().add(4));
        (_mm256_set_m128(dy, dy), _mm256_set_m128(sy, sy))
    };
    let d = d.as_mut_ptr().cast::<f32>();
    let ms = ms.as_mut_ptr().cast::<f32>();
    // SAFETY: `d` and `ms` have room for 16 f32 each: two unaligned stores of 8 write all
    // of each.
    unsafe {
        _mm256_storeu_ps(
            d,
            _mm256_mul_ps(_mm256_permutevar8x32_ps(dm, lanes(0, 2)), dy),
        );
        _mm256_storeu_ps(
            d.add(8),
            _mm256_mul_ps(_mm256_permutevar8x32_ps(dm, lanes(4, 6)), dy),
        );
        _mm256_storeu_ps(
            ms,
            _mm256_mul_ps(_mm256_permutevar8x32_ps(dm, lanes(1, 3)), sy),
        );
        _mm256_storeu_ps(
            ms.add(8),
            _mm256_mul_ps(_mm256_permutevar8x32_ps(dm, lanes(5, 7)), sy),
        );
    }
}

/// A Q5_0 block's values as unsigned bytes `q + 16` (nibble | fifth bit · 16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack_q5_0_avx2(b: &BlockQ5_0) -> __m256i {
    let fifth = _mm256_and_si256(bytes_from_bits_32(b.qh), _mm256_set1_epi8(0x10));
    _mm256_or_si256(bytes_from_nibbles_32(&b.qs), fifth)
}

/// `start + Σ u·y` per lane of four bytes with AVX2 (pair sums in i16, which `u < 32`
/// keeps from saturating).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lanes_avx2(start: __m256i, u: __m256i, y: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(u, y);
    _mm256_add_epi32(start, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// A Q4_1 block's nibbles as unsigned bytes (`c` = 0).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack_q4_1(b: &BlockQ4_1) -> __m256i {
    bytes_from_nibbles_32(&b.qs)
}

q0_tiles!(
    avx2,
    "avx2,fma,f16c",
    lanes_avx2,
    unpack_q5_0_avx2,
    BlockQ5_0,
    BlockQ8_0,
    16,
    false,
    rows4_q5_0
);
q0_tiles!(
    avx2_q4_1,
    "avx2,fma,f16c",
    lanes_avx2,
    unpack_q4_1,
    BlockQ4_1,
    BlockQ8_1,
    0,
    true,
    rows4_q4_1
);

/// Eight Q4_K weight rows against four Q8_K activation rows in the order of ggml's
/// interleaved Q4_K GEMM (see `crate::repacked`): per output, per super-block and per
/// 64-value pair of sub-blocks, `acc = fma(isum, d_x·d_y, acc)` and
/// `acc_min = fma(imin, dmin_x·d_y, acc_min)`, and `acc − acc_min` at the end. The eight
/// rows sit in the eight f32 lanes, so that these steps run for eight outputs at once with
/// each lane's arithmetic exactly the one-row kernel's; the integer sums are exact, only
/// formed in another order (`out[row][token]`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_gemm_order_8x4(x: [&[BlockQ4_K]; 8], ys: [&[BlockQ8_K]; 4]) -> [[f32; 4]; 8] {
    let n = ys.iter().map(|y| y.len()).fold(x[0].len(), usize::min);
    let x = x.map(|row| &row[..n]);
    let ys = ys.map(|row| &row[..n]);
    let m4 = _mm256_set1_epi8(0xf);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut acc_min = [_mm256_setzero_ps(); 4];
    for i in 0..n {
        // Per row: the four pairs' Σ_j sc_j Σ q·y for each token, reduced to
        // [p0 p1 p2 p3 (lanes 0..4) | p0 p1 p2 p3 (lanes 4..8)] partial sums.
        let mut partial = [[_mm256_setzero_si256(); 8]; 4];
        // Per row: the mins of sub-blocks (2p, 2p + 1) as i16 pairs in i32 lane p.
        let mut mins = [_mm_setzero_si128(); 8];
        let mut dx = [0u16; 8];
        let mut dmin = [0u16; 8];
        for r in 0..8 {
            let b = &x[r][i];
            dx[r] = u16::from_le_bytes(b.d.0);
            dmin[r] = u16::from_le_bytes(b.dmin.0);
            let u = k4_scales_mins(&b.scales);
            let scales_mins = _mm256_cvtepu8_epi16(_mm_set_epi32(u[3], u[2], u[1], u[0]));
            mins[r] = _mm256_extracti128_si256::<1>(scales_mins);
            let scales = _mm256_permute4x64_epi64::<0x44>(scales_mins);
            let (qs, _) = b.qs.as_chunks::<32>();
            let mut nib = [(_mm256_setzero_si256(), _mm256_setzero_si256()); 4];
            let mut sc = [_mm256_setzero_si256(); 8];
            for p in 0..4 {
                let q = load_u8x32(&qs[p]);
                nib[p] = (
                    _mm256_and_si256(q, m4),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
                );
                sc[2 * p] = _mm256_shuffle_epi8(scales, shuffle_k4(2 * p));
                sc[2 * p + 1] = _mm256_shuffle_epi8(scales, shuffle_k4(2 * p + 1));
            }
            for t in 0..4 {
                let (q8, _) = ys[t][i].qs.as_chunks::<32>();
                let mut v = [_mm256_setzero_si256(); 4];
                for p in 0..4 {
                    let (lo, hi) = nib[p];
                    let plo = _mm256_maddubs_epi16(lo, load_i8x32(&q8[2 * p]));
                    let phi = _mm256_maddubs_epi16(hi, load_i8x32(&q8[2 * p + 1]));
                    v[p] = _mm256_add_epi32(
                        _mm256_madd_epi16(plo, sc[2 * p]),
                        _mm256_madd_epi16(phi, sc[2 * p + 1]),
                    );
                }
                partial[t][r] =
                    _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
            }
        }
        let dx = _mm256_cvtph_ps(load_u16x8(&dx));
        let dmin = _mm256_cvtph_ps(load_u16x8(&dmin));
        // Per pair p: the eight rows' min pairs, row r in lane r.
        let mins = transpose_rows(std::array::from_fn(|k| {
            _mm256_set_m128i(mins[k + 4], mins[k])
        }));
        for t in 0..4 {
            let y = &ys[t][i];
            let dy = _mm256_set1_ps(y.d());
            let (s_sum, s_min) = (_mm256_mul_ps(dx, dy), _mm256_mul_ps(dmin, dy));
            let isum = pairs_by_row(&partial[t]);
            // Σ of each sub-block's 32 activations, as i16 pairs (2p, 2p + 1) in lane p.
            let ysums = _mm256_broadcastsi128_si256(q8k_sums32(y));
            let ysum = [
                _mm256_shuffle_epi32::<0x00>(ysums),
                _mm256_shuffle_epi32::<0x55>(ysums),
                _mm256_shuffle_epi32::<0xaa>(ysums),
                _mm256_shuffle_epi32::<0xff>(ysums),
            ];
            for p in 0..4 {
                let imin = _mm256_madd_epi16(mins[p], ysum[p]);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[p]), s_sum, acc[t]);
                acc_min[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), s_min, acc_min[t]);
            }
        }
    }
    let mut out = [[0f32; 4]; 8];
    for t in 0..4 {
        let mut v = [0f32; 8];
        // SAFETY: `v` holds eight f32; the store is unaligned.
        unsafe { _mm256_storeu_ps(v.as_mut_ptr(), _mm256_sub_ps(acc[t], acc_min[t])) };
        for r in 0..8 {
            out[r][t] = v[r];
        }
    }
    out
}

/// Eight rows' partial sums `[p0 p1 p2 p3 | p0 p1 p2 p3]` (two halves to add) → per pair p
/// one vector of the eight rows' totals, row r in lane r.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pairs_by_row(b: &[__m256i; 8]) -> [__m256i; 4] {
    // s[k] = [row k: p0..p3 | row k + 4: p0..p3].
    let s: [__m256i; 4] = std::array::from_fn(|k| {
        _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(b[k], b[k + 4]),
            _mm256_permute2x128_si256::<0x31>(b[k], b[k + 4]),
        )
    });
    transpose_rows(s)
}

/// `s[k] = [row k: p0..p3 | row k + 4: p0..p3]` → per p one vector, row r in lane r.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn transpose_rows(s: [__m256i; 4]) -> [__m256i; 4] {
    let t0 = _mm256_unpacklo_epi32(s[0], s[1]);
    let t1 = _mm256_unpackhi_epi32(s[0], s[1]);
    let t2 = _mm256_unpacklo_epi32(s[2], s[3]);
    let t3 = _mm256_unpackhi_epi32(s[2], s[3]);
    [
        _mm256_unpacklo_epi64(t0, t2),
        _mm256_unpackhi_epi64(t0, t2),
        _mm256_unpacklo_epi64(t1, t3),
        _mm256_unpackhi_epi64(t1, t3),
    ]
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_u16x8(v: &[u16; 8]) -> __m128i {
    // SAFETY: `v` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(v.as_ptr().cast()) }
}

/// A [`crate::Tile4Fn`] for Q4_K weights in ggml's repacked-GEMM order: whole tiles of
/// eight rows at once, any other row count row by row through `one_row`.
pub(super) fn rows4_q4_k_gemm_order(w: &[u8], w_row: usize, a: [&[u8]; 4], out: &mut [[f32; 4]]) {
    let ys = as_blocks4::<BlockQ8_K>(a);
    let row = |r: usize| as_blocks::<BlockQ4_K>(&w[r * w_row..(r + 1) * w_row]);
    let mut chunks = out.chunks_exact_mut(8);
    let mut r0 = 0;
    for o in &mut chunks {
        let x: [&[BlockQ4_K]; 8] = std::array::from_fn(|k| row(r0 + k));
        // SAFETY: only handed out by `tile4_kernel` after `detected()` returned true.
        o.copy_from_slice(&unsafe { q4_k_gemm_order_8x4(x, ys) });
        r0 += 8;
    }
    for (k, o) in chunks.into_remainder().iter_mut().enumerate() {
        // SAFETY: as above.
        *o = unsafe { q4_k_gemm_order_x4(row(r0 + k), ys) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::quantize_activations;
    use crate::{quantize_row_ref, vec_dot_kernel};

    /// Every AVX2 tile kernel (and the pre-scaled Q8_0 kernel that stands in for a Q8_0
    /// tile) gives every output exactly the bits of the one-row kernel, for every row count
    /// of a tile.
    #[test]
    fn tiles_equal_the_one_row_kernel_bit_for_bit() {
        if !detected() {
            return;
        }
        assert_tile_is_one_row_kernel(GgmlType::Q4_1, avx2_q4_1::rows4_q4_1);
        assert_tile_is_one_row_kernel(GgmlType::Q5_0, avx2::rows4_q5_0);
        assert_tile_is_one_row_kernel(GgmlType::Q8_0, super::super::scaled_avx2::rows4_q8_0_scaled);
    }

    /// `kernel` on 1 to 8 random `t` rows of 40 blocks (more than one chunk of scale
    /// products) against four random activation rows, output by output against `t`'s
    /// one-row kernel.
    fn assert_tile_is_one_row_kernel(t: GgmlType, kernel: crate::ScaledRows4Fn) {
        let n_in = 40 * 32;
        let mut rng = crate::tests::Rng(0x0071_11e5);
        let mut rnd = move || rng.f32();
        let w_row = t.row_bytes(n_in).unwrap();
        let mut w = vec![0u8; 8 * w_row];
        for (r, row) in w.chunks_exact_mut(w_row).enumerate() {
            // Each row its own offset, so that Q4_1's minimums differ between rows.
            let values: Vec<f32> = (0..n_in).map(|_| rnd() + r as f32 * 0.25).collect();
            quantize_row_ref(t, &values, row);
        }
        let x: Vec<f32> = (0..4 * n_in).map(|_| 3.0 * rnd()).collect();
        let mut acts = Vec::new();
        quantize_activations(t, &x, n_in, &mut acts);
        let a_row = acts.len() / 4;
        let a: [&[u8]; 4] = std::array::from_fn(|t| &acts[t * a_row..(t + 1) * a_row]);
        // The scales as `group_scales` converts them: d of the four tokens, then their s.
        let a_type = crate::vec_dot_type(t);
        let scales: Vec<[f32; 8]> = (0..n_in / 32)
            .map(|i| {
                let mut sc = [0f32; 8];
                for (k, row) in a.iter().enumerate() {
                    let block = &row[i * a_type.type_size()..];
                    sc[k] = crate::blocks::F16([block[0], block[1]]).get();
                    if a_type == GgmlType::Q8_1 {
                        sc[4 + k] = crate::blocks::F16([block[2], block[3]]).get();
                    }
                }
                sc
            })
            .collect();
        let one = vec_dot_kernel(t);
        for rows in 1..=8 {
            let mut out = vec![[0f32; 4]; rows];
            kernel(&w, w_row, a, &scales, &mut out);
            for (r, got) in out.iter().enumerate() {
                for (tok, got) in got.iter().enumerate() {
                    let want = one(&w[r * w_row..(r + 1) * w_row], a[tok]);
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{t}: rows {rows}, row {r}, token {tok}"
                    );
                }
            }
        }
    }
}
