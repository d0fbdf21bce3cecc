//! Kernels with the eight weight rows of a tile in the eight lanes of a vector, one lane per
//! output, for AVX-512 VNNI. Each block of the eight rows is unpacked to bytes and transposed
//! (`transpose8`) so that vector `g` holds values `4g..4g+4` of every row; then per token one
//! `vpdpbusd` per group of four values, with the token's four activation bytes broadcast,
//! gives the group's sums for all eight rows.
//!
//! - **Block-sum order** (`crate::block_sums`, opt-in): the weights as unsigned `u = q + c`
//!   (`c` = 8 for Q4_0, 16 for Q5_0, 128 for Q8_0, 0 for Q4_1's nibbles), the eight
//!   `vpdpbusd` of a block chained from `−c·Σy`, so that one accumulator holds each row's
//!   exact block sum; one conversion and one FMA by `d_w·d_y` per block. Blocks are unpacked
//!   per group of up to sixteen tokens. One to three tokens (generation) first read the tile
//!   in one sequential pass (`touch`), which keeps them as fast as the one-row kernels.
//! - **llama.cpp's order** (`crate::ggml_lanes`, the default for batches): the tile unpacked
//!   once per batch into `TileBlock`s (signed values and `−128·Σq` per group, two groups per
//!   512-bit vector: 512-bit instructions halve the instruction count, which measured about
//!   15% faster on Zen 4 even though it splits them in two), activations as unsigned
//!   `y + 128`; ggml's eight per-group accumulators as four vectors, added at the end as
//!   `hsum_float_8` adds them. Q6_K (`Q6Block`, the tiled order) and repacked Q4_K
//!   (`Q4KBlock`, the interleaved GEMM/GEMV orders) sum whole super-blocks exactly, with the
//!   sub-block scales applied by `vpmulld`.

use super::*;
use crate::block_sums::BlockInfo;

/// The 8 × 8 transpose of i32 lanes: `out[g]` lane r = `u[r]` lane g (the 4 × 4 transposes
/// of `tiles` within each 128-bit half for rows 0–3 and 4–7, then the halves exchanged).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8(u: [__m256i; 8]) -> [__m256i; 8] {
    let a = super::tiles::transpose_rows([u[0], u[1], u[2], u[3]]);
    let b = super::tiles::transpose_rows([u[4], u[5], u[6], u[7]]);
    [
        _mm256_permute2x128_si256::<0x20>(a[0], b[0]),
        _mm256_permute2x128_si256::<0x20>(a[1], b[1]),
        _mm256_permute2x128_si256::<0x20>(a[2], b[2]),
        _mm256_permute2x128_si256::<0x20>(a[3], b[3]),
        _mm256_permute2x128_si256::<0x31>(a[0], b[0]),
        _mm256_permute2x128_si256::<0x31>(a[1], b[1]),
        _mm256_permute2x128_si256::<0x31>(a[2], b[2]),
        _mm256_permute2x128_si256::<0x31>(a[3], b[3]),
    ]
}

/// A tile's rows as blocks of `B`: the number of rows in `w` (1 to 8, rows `w_row` bytes
/// apart) and eight row views, rows past the tile's end repeating its last row (their lanes
/// are computed and never stored).
#[inline]
fn tile_rows<B: Block>(w: &[u8], w_row: usize) -> (usize, [&[B]; 8]) {
    let n_rows = w.len() / w_row;
    assert!((1..=8).contains(&n_rows), "1 to 8 weight rows");
    let rows = std::array::from_fn(|r| {
        let r = r.min(n_rows - 1);
        as_blocks::<B>(&w[r * w_row..(r + 1) * w_row])
    });
    (n_rows, rows)
}

/// Per row, eight vectors of 32 consecutive values (`values[r][k]`) → the 64 group vectors of
/// the tile: vector `8k + g` holds values `32k + 4g..32k + 4g + 4` of every row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose_tile(values: &[[__m256i; 8]; 8]) -> [__m256i; 64] {
    let mut w = [_mm256_setzero_si256(); 64];
    for k in 0..8 {
        let t = transpose8(std::array::from_fn(|r| values[r][k]));
        w[8 * k..8 * k + 8].copy_from_slice(&t);
    }
    w
}

/// `−128·Σq` per lane over the signed group vectors `ws`: the start that turns
/// `Σ (y + 128)·q` into `Σ y·q`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(in crate::x86) fn start_of(ws: &[__m256i]) -> __m256i {
    let mut sum = _mm256_setzero_si256();
    for w in ws {
        sum = _mm256_dpbusd_epi32(sum, _mm256_set1_epi8(-128), *w);
    }
    _mm256_sub_epi32(_mm256_setzero_si256(), sum)
}

/// Eight i32 (one per row) as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn i32x8(v: [i32; 8]) -> __m256i {
    // SAFETY: `v` holds eight i32; the load is unaligned.
    unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
}

/// Eight f16 bit patterns as eight f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::x86) fn f16x8(h: [u16; 8]) -> __m256 {
    _mm256_cvtph_ps(_mm_setr_epi16(
        h[0] as i16,
        h[1] as i16,
        h[2] as i16,
        h[3] as i16,
        h[4] as i16,
        h[5] as i16,
        h[6] as i16,
        h[7] as i16,
    ))
}

/// Stores the first `n_rows` lanes of `v` (all eight with one store in the usual case of a
/// whole tile, instead of a variable-length copy).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store_rows(out: &mut [f32; 8], v: __m256, n_rows: usize) {
    if n_rows == 8 {
        // SAFETY: `out` holds 8 f32; the store is unaligned.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    } else {
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 f32; the store is unaligned.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        out[..n_rows].copy_from_slice(&lanes[..n_rows]);
    }
}

/// Activation bytes `4g..4g + 4` of a block as one i32.
#[inline(always)]
fn group(qs: &[i8; 32], g: usize) -> i32 {
    i32::from_le_bytes([
        qs[4 * g] as u8,
        qs[4 * g + 1] as u8,
        qs[4 * g + 2] as u8,
        qs[4 * g + 3] as u8,
    ])
}

/// A Q4_0 block's nibbles as unsigned bytes (`c` = 8).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack_q4_0(b: &BlockQ4_0) -> __m256i {
    bytes_from_nibbles_32(&b.qs)
}

/// A Q5_0 block as unsigned bytes `q + 16`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512bw,avx512vl")]
fn unpack_q5_0(b: &BlockQ5_0) -> __m256i {
    let nibbles = bytes_from_nibbles_32(&b.qs);
    _mm256_mask_add_epi8(
        nibbles,
        u32::from_le_bytes(b.qh),
        nibbles,
        _mm256_set1_epi8(16),
    )
}

/// A Q4_1 block's nibbles as unsigned bytes (`c` = 0).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack_q4_1(b: &BlockQ4_1) -> __m256i {
    bytes_from_nibbles_32(&b.qs)
}

/// A Q8_0 block as unsigned bytes `q + 128`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack_q8_0(b: &BlockQ8_0) -> __m256i {
    _mm256_xor_si256(load_i8x32(&b.qs), _mm256_set1_epi8(-128))
}

/// Reads one byte of every cache line of `w`, in order. With one or a few tokens the kernel
/// is bound by memory and reads eight short row streams at once, which the hardware
/// prefetchers follow far worse than one long stream (measured: half the bandwidth); a
/// sequential pass first brings the tile in at the speed of one stream.
#[inline]
fn touch(w: &[u8]) -> u8 {
    let mut sink = 0u8;
    for line in w.chunks(64) {
        sink ^= line[0];
    }
    sink
}

/// The f16 bits of a block's minimum (Q4_1; never read for the symmetric types).
trait MinBits {
    fn m_bits(&self) -> u16 {
        0
    }
}

impl MinBits for BlockQ4_0 {}
impl MinBits for BlockQ5_0 {}
impl MinBits for BlockQ8_0 {}
impl MinBits for BlockQ4_1 {
    fn m_bits(&self) -> u16 {
        u16::from_le_bytes(self.m.0)
    }
}

/// The kernels of one weight type: `$unpack` gives a block's `u = q + 2^$shift` (`$shift`
/// unused with `$min`, where `u` is the nibble and the `m·s` term is added per block).
macro_rules! row_lanes {
    ($module:ident, $wb:ty, $ab:ty, $unpack:ident, $shift:literal, $min:literal) => {
        pub(in crate::x86) mod $module {
            use super::*;

            /// Eight weight rows (first `n` blocks) against `T` activation rows: `out[t]`
            /// lane r = row r · token t.
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn tile<const T: usize>(
                x: &[&[$wb]; 8],
                ys: [&[$ab]; T],
                infos: [&[BlockInfo]; T],
                n: usize,
            ) -> [__m256; T] {
                let x = x.map(|row| &row[..n]);
                let ys = ys.map(|row| &row[..n]);
                let infos = infos.map(|row| &row[..n]);
                let shift = _mm_cvtsi32_si128($shift);
                let mut acc = [_mm256_setzero_ps(); T];
                for i in 0..n {
                    let w = transpose8([
                        $unpack(&x[0][i]),
                        $unpack(&x[1][i]),
                        $unpack(&x[2][i]),
                        $unpack(&x[3][i]),
                        $unpack(&x[4][i]),
                        $unpack(&x[5][i]),
                        $unpack(&x[6][i]),
                        $unpack(&x[7][i]),
                    ]);
                    let dw = f16x8(x.map(|row| u16::from_le_bytes(row[i].d.0)));
                    let mw = if $min {
                        f16x8(x.map(|row| row[i].m_bits()))
                    } else {
                        _mm256_setzero_ps()
                    };
                    for t in 0..T {
                        let info = infos[t][i];
                        let qs = &ys[t][i].qs;
                        let mut s = if $min {
                            _mm256_setzero_si256()
                        } else {
                            _mm256_sll_epi32(_mm256_set1_epi32(info.aux as i32), shift)
                        };
                        for (g, wg) in w.iter().enumerate() {
                            s = _mm256_dpbusd_epi32(s, *wg, _mm256_set1_epi32(group(qs, g)));
                        }
                        let scale = _mm256_mul_ps(dw, _mm256_set1_ps(info.d));
                        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[t]);
                        if $min {
                            let s_y = _mm256_set1_ps(f32::from_bits(info.aux));
                            acc[t] = _mm256_fmadd_ps(mw, s_y, acc[t]);
                        }
                    }
                }
                acc
            }

            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn rows(
                w: &[u8],
                w_row: usize,
                acts: &[u8],
                a_row: usize,
                infos: &[BlockInfo],
                out: &mut [[f32; 8]],
            ) {
                let (n_rows, x) = tile_rows::<$wb>(w, w_row);
                let n = x[0].len();
                let act = |t: usize| as_blocks::<$ab>(&acts[t * a_row..(t + 1) * a_row]);
                let info = |t: usize| &infos[t * n..(t + 1) * n];
                let n_tokens = out.len();
                if n_tokens < 4 {
                    std::hint::black_box(touch(w));
                }
                let mut put = |t0: usize, acc: &[__m256]| {
                    for (t, v) in acc.iter().enumerate() {
                        store_rows(&mut out[t0 + t], *v, n_rows);
                    }
                };
                let mut t0 = 0;
                while t0 + 16 <= n_tokens {
                    let acc = tile::<16>(
                        &x,
                        std::array::from_fn(|t| act(t0 + t)),
                        std::array::from_fn(|t| info(t0 + t)),
                        n,
                    );
                    put(t0, &acc);
                    t0 += 16;
                }
                while t0 + 4 <= n_tokens {
                    let acc = tile::<4>(
                        &x,
                        std::array::from_fn(|t| act(t0 + t)),
                        std::array::from_fn(|t| info(t0 + t)),
                        n,
                    );
                    put(t0, &acc);
                    t0 += 4;
                }
                while t0 < n_tokens {
                    let acc = tile::<1>(&x, [act(t0)], [info(t0)], n);
                    put(t0, &acc);
                    t0 += 1;
                }
            }

            /// The [`crate::block_sums::RowLanesFn`] of this weight type.
            pub(in crate::x86) fn kernel(
                w: &[u8],
                w_row: usize,
                acts: &[u8],
                a_row: usize,
                infos: &[BlockInfo],
                out: &mut [[f32; 8]],
            ) {
                if out.is_empty() {
                    return;
                }
                // SAFETY: only handed out by `row_lanes_kernel` after AVX-512 VNNI, VL,
                // BW and F (and AVX2, FMA, F16C) were detected.
                unsafe { rows(w, w_row, acts, a_row, infos, out) }
            }
        }
    };
}

row_lanes!(q4_0, BlockQ4_0, BlockQ8_0, unpack_q4_0, 3, false);
row_lanes!(q4_1, BlockQ4_1, BlockQ8_1, unpack_q4_1, 0, true);
row_lanes!(q5_0, BlockQ5_0, BlockQ8_0, unpack_q5_0, 4, false);
row_lanes!(q8_0, BlockQ8_0, BlockQ8_0, unpack_q8_0, 7, false);

/// The block-sum kernel for weights of type `t`, if this CPU has AVX-512 VNNI.
pub(crate) fn row_lanes_kernel(t: GgmlType) -> Option<crate::block_sums::RowLanesFn> {
    if !vnni_detected() || !is_x86_feature_detected!("avx512f") {
        return None;
    }
    match t {
        GgmlType::Q4_0 => Some(q4_0::kernel),
        GgmlType::Q4_1 => Some(q4_1::kernel),
        GgmlType::Q5_0 => Some(q5_0::kernel),
        GgmlType::Q8_0 => Some(q8_0::kernel),
        _ => None,
    }
}

// ----------------------------------------------------------------------------------------
// llama.cpp's order (see `crate::ggml_lanes`)
// ----------------------------------------------------------------------------------------

/// A Q4_0 block's values as signed bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_q4_0(b: &BlockQ4_0) -> __m256i {
    _mm256_sub_epi8(bytes_from_nibbles_32(&b.qs), _mm256_set1_epi8(8))
}

/// A Q4_1 block's nibbles (non-negative, so also valid signed bytes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_q4_1(b: &BlockQ4_1) -> __m256i {
    bytes_from_nibbles_32(&b.qs)
}

/// A Q5_0 block's values as signed bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512bw,avx512vl")]
fn signed_q5_0(b: &BlockQ5_0) -> __m256i {
    _mm256_sub_epi8(unpack_q5_0(b), _mm256_set1_epi8(16))
}

/// A Q8_0 block's values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signed_q8_0(b: &BlockQ8_0) -> __m256i {
    load_i8x32(&b.qs)
}

/// One block of a row tile, unpacked for the whole batch, in 512-bit vectors that hold two
/// groups of four values each: vector `k`, lane `2r + j` = row r's values `8k + 4j..8k + 4j +
/// 4` (signed bytes), and `−128·Σ` of them (the start that turns `Σ (y + 128)·q` into
/// `Σ y·q`); the rows' scales as f32, each twice (lanes `2r`, `2r + 1`); Q4_1's minimums.
#[derive(Clone, Copy)]
#[repr(C)]
pub(in crate::x86) struct TileBlock {
    pub(in crate::x86) w: [__m512i; 4],
    pub(in crate::x86) start: [__m512i; 4],
    pub(in crate::x86) d: __m512,
    pub(in crate::x86) m: __m256,
}

thread_local! {
    /// The current row tile, unpacked (reused across calls: no allocation per tile).
    pub(in crate::x86) static TILE: std::cell::RefCell<Vec<TileBlock>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Two 8-lane vectors interleaved into one 16-lane vector: lane `2r` = `a` lane r, lane
/// `2r + 1` = `b` lane r.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn interleave(a: __m256i, b: __m256i) -> __m512i {
    let idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    _mm512_permutex2var_epi32(_mm512_castsi256_si512(a), idx, _mm512_castsi256_si512(b))
}

/// A tile's eight group sums per row (ggml's eight lanes, two per row in each of `acc`'s four
/// vectors) added as ggml's `hsum_float_8` adds them: `(l0 + l4) + (l2 + l6)` plus
/// `(l1 + l5) + (l3 + l7)`, lane r = row r.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(in crate::x86) fn hsum_pairs(acc: &[__m512; 4]) -> __m256 {
    // Lane 2r: (l0 + l4) + (l2 + l6); lane 2r + 1: (l1 + l5) + (l3 + l7).
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
    let even = _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0),
        s,
    );
    let odd = _mm512_permutexvar_ps(
        _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0),
        s,
    );
    _mm256_add_ps(_mm512_castps512_ps256(even), _mm512_castps512_ps256(odd))
}

/// The lane kernels of one weight type in llama.cpp's order: `$signed` gives a block's values
/// as signed bytes; `$min` adds Q4_1's `Σ m·s` after the lanes, as ggml does.
macro_rules! ggml_lanes {
    ($module:ident, $wb:ty, $signed:ident, $min:literal) => {
        pub(in crate::x86) mod $module {
            use super::*;
            use crate::ggml_lanes::LaneQuants;

            /// Unpacks the first `n` blocks of eight rows into `buf`.
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn unpack(x: &[&[$wb]; 8], n: usize, buf: &mut Vec<TileBlock>) {
                buf.clear();
                let x = x.map(|row| &row[..n]);
                for i in 0..n {
                    let w = transpose8([
                        $signed(&x[0][i]),
                        $signed(&x[1][i]),
                        $signed(&x[2][i]),
                        $signed(&x[3][i]),
                        $signed(&x[4][i]),
                        $signed(&x[5][i]),
                        $signed(&x[6][i]),
                        $signed(&x[7][i]),
                    ]);
                    let start: [__m256i; 8] = std::array::from_fn(|g| start_of(&w[g..g + 1]));
                    let d = f16x8(x.map(|row| u16::from_le_bytes(row[i].d.0)));
                    let m = if $min {
                        f16x8(x.map(|row| row[i].m_bits()))
                    } else {
                        _mm256_setzero_ps()
                    };
                    let d = _mm512_permutexvar_ps(
                        _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                        _mm512_castps256_ps512(d),
                    );
                    buf.push(TileBlock {
                        w: std::array::from_fn(|k| interleave(w[2 * k], w[2 * k + 1])),
                        start: std::array::from_fn(|k| interleave(start[2 * k], start[2 * k + 1])),
                        d,
                        m,
                    });
                }
            }

            /// The unpacked tile against `T` tokens: `out[t]` lane r = row r · token t.
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn tokens<const T: usize>(
                blocks: &[TileBlock],
                ys: [&[LaneQuants]; T],
                scales: [&[[f32; 2]]; T],
            ) -> [__m256; T] {
                let n = blocks.len();
                let ys = ys.map(|row| &row[..n]);
                let scales = scales.map(|row| &row[..n]);
                let mut acc = [[_mm512_setzero_ps(); 4]; T];
                let mut mins = [_mm256_setzero_ps(); T];
                for (i, b) in blocks.iter().enumerate() {
                    for t in 0..T {
                        let [dy, sy] = scales[t][i];
                        let scale = _mm512_mul_ps(b.d, _mm512_set1_ps(dy));
                        let q = &ys[t][i];
                        for k in 0..4 {
                            let y = i64::from_le_bytes(std::array::from_fn(|j| q[8 * k + j]));
                            let s = _mm512_dpbusd_epi32(b.start[k], _mm512_set1_epi64(y), b.w[k]);
                            acc[t][k] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(s), acc[t][k]);
                        }
                        if $min {
                            let ms = _mm256_mul_ps(b.m, _mm256_set1_ps(sy));
                            mins[t] = _mm256_add_ps(mins[t], ms);
                        }
                    }
                }
                // ggml's `hsum_float_8`, lane by lane; then Q4_1's `Σ m·s`.
                let mut out = [_mm256_setzero_ps(); T];
                for t in 0..T {
                    out[t] = hsum_pairs(&acc[t]);
                    if $min {
                        out[t] = _mm256_add_ps(out[t], mins[t]);
                    }
                }
                out
            }

            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn rows(
                w: &[u8],
                w_row: usize,
                quants: &[LaneQuants],
                scales: &[[f32; 2]],
                out: &mut [[f32; 8]],
            ) {
                let (n_rows, x) = tile_rows::<$wb>(w, w_row);
                let n = x[0].len();
                let n_tokens = out.len();
                assert!(quants.len() >= n_tokens * n && scales.len() >= n_tokens * n);
                TILE.with_borrow_mut(|buf| {
                    unpack(&x, n, buf);
                    tile_tokens(buf, n_rows, quants, scales, out);
                });
            }

            /// An unpacked tile of `n_rows` rows against the batch: `out[t]` lane r = row r
            /// · token t.
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            pub(in crate::x86) fn tile_tokens(
                buf: &[TileBlock],
                n_rows: usize,
                quants: &[LaneQuants],
                scales: &[[f32; 2]],
                out: &mut [[f32; 8]],
            ) {
                let (n, n_tokens) = (buf.len(), out.len());
                assert!(quants.len() >= n_tokens * n && scales.len() >= n_tokens * n);
                let ys = |t: usize| &quants[t * n..(t + 1) * n];
                let sc = |t: usize| &scales[t * n..(t + 1) * n];
                let mut t0 = 0;
                while t0 + LANE_TOKENS <= n_tokens {
                    let v = tokens::<LANE_TOKENS>(
                        buf,
                        std::array::from_fn(|j| ys(t0 + j)),
                        std::array::from_fn(|j| sc(t0 + j)),
                    );
                    for (t, v) in v.iter().enumerate() {
                        store_rows(&mut out[t0 + t], *v, n_rows);
                    }
                    t0 += LANE_TOKENS;
                }
                while t0 < n_tokens {
                    let v = tokens::<1>(buf, [ys(t0)], [sc(t0)]);
                    store_rows(&mut out[t0], v[0], n_rows);
                    t0 += 1;
                }
            }

            /// The [`crate::ggml_lanes::GgmlLanesFn`] of this weight type.
            pub(in crate::x86) fn kernel(
                w: &[u8],
                w_row: usize,
                quants: &[LaneQuants],
                scales: &[[f32; 2]],
                out: &mut [[f32; 8]],
            ) {
                if out.is_empty() {
                    return;
                }
                // SAFETY: only handed out by `ggml_lanes_kernel` after AVX-512 VNNI, VL,
                // BW and F (and AVX2, FMA, F16C) were detected.
                unsafe { rows(w, w_row, quants, scales, out) }
            }
        }
    };
}

/// Tokens per pass over an unpacked tile in the llama.cpp-order lane kernels.
const LANE_TOKENS: usize = 4;

ggml_lanes!(ggml_q4_0, BlockQ4_0, signed_q4_0, false);
ggml_lanes!(ggml_q4_1, BlockQ4_1, signed_q4_1, true);
ggml_lanes!(ggml_q5_0, BlockQ5_0, signed_q5_0, false);
ggml_lanes!(ggml_q8_0, BlockQ8_0, signed_q8_0, false);

/// The lane kernel in llama.cpp's order for weights of type `t`, if this CPU has AVX-512
/// VNNI.
pub(crate) fn ggml_lanes_kernel(t: GgmlType) -> Option<crate::ggml_lanes::GgmlLanesFn> {
    if !vnni_detected() || !is_x86_feature_detected!("avx512f") {
        return None;
    }
    match t {
        GgmlType::Q4_0 => Some(ggml_q4_0::kernel),
        GgmlType::Q4_1 => Some(ggml_q4_1::kernel),
        GgmlType::Q5_0 => Some(ggml_q5_0::kernel),
        GgmlType::Q8_0 => Some(ggml_q8_0::kernel),
        GgmlType::Q4_K => Some(q4_k_repacked::kernel),
        GgmlType::Q6_K => Some(q6_k_tiled::kernel),
        _ => None,
    }
}

/// One super-block of an eight-row Q6_K tile, unpacked for the whole batch: the values of
/// each group of four (signed, row r in lane r), per sub-block of sixteen `−128·Σq` and the
/// rows' scales as i32, and the rows' `d` as f32.
#[derive(Clone, Copy)]
#[repr(C)]
struct Q6Block {
    w: [__m256i; 64],
    start: [__m256i; 16],
    scale: [__m256i; 16],
    d: __m256,
}

thread_local! {
    /// The current Q6_K row tile, unpacked (reused across calls).
    static Q6_TILE: std::cell::RefCell<Vec<Q6Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Q6_K batches in the order of ggml's tiled K-quant GEMM (`crate::repacked`): per
/// super-block the exact integer sum `Σ_s sc_s·Σ q·y`, then `out = fma(isum·d, d_y, out)`,
/// with the eight rows of a tile in the lanes.
pub(in crate::x86) mod q6_k_tiled {
    use super::*;
    use crate::ggml_lanes::LaneQuants;

    /// Unpacks the first `n` super-blocks of eight rows into `buf`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn unpack(x: &[&[BlockQ6_K]; 8], n: usize, buf: &mut Vec<Q6Block>) {
        buf.clear();
        let x = x.map(|row| &row[..n]);
        let offset = _mm256_set1_epi8(32);
        for i in 0..n {
            // Per row, the 256 values as eight vectors of 32 consecutive ones.
            let mut values = [[_mm256_setzero_si256(); 8]; 8];
            for (r, row) in x.iter().enumerate() {
                let b = &row[i];
                for half in 0..2 {
                    let ql = &b.ql[64 * half..64 * half + 64];
                    let q = q6_k_unpack(
                        ql[..32].try_into().expect("32 bytes"),
                        ql[32..].try_into().expect("32 bytes"),
                        b.qh[32 * half..32 * half + 32]
                            .try_into()
                            .expect("32 bytes"),
                    );
                    for k in 0..4 {
                        values[r][4 * half + k] = _mm256_sub_epi8(q[k], offset);
                    }
                }
            }
            let w = transpose_tile(&values);
            let start = std::array::from_fn(|s| start_of(&w[4 * s..4 * s + 4]));
            let scale = std::array::from_fn(|s| {
                i32x8(std::array::from_fn(|r| i32::from(x[r][i].scales[s])))
            });
            let d = f16x8(x.map(|row| u16::from_le_bytes(row[i].d.0)));
            buf.push(Q6Block { w, start, scale, d });
        }
    }

    /// The unpacked tile against one token (`ys`: per super-block its 8 quant chunks and its
    /// sub-block sums, `dys` its scales): lane r = row r · the token.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn token(blocks: &[Q6Block], ys: &[LaneQuants], dys: &[[f32; 2]]) -> __m256 {
        let n = blocks.len();
        let ys = &ys[..9 * n];
        let dys = &dys[..n];
        let mut out = _mm256_setzero_ps();
        for (i, b) in blocks.iter().enumerate() {
            let mut isum = _mm256_setzero_si256();
            for s in 0..16 {
                let mut a = b.start[s];
                for g in 4 * s..4 * s + 4 {
                    let q = &ys[9 * i + g / 8];
                    let o = 4 * (g % 8);
                    let y = i32::from_le_bytes([q[o], q[o + 1], q[o + 2], q[o + 3]]);
                    a = _mm256_dpbusd_epi32(a, _mm256_set1_epi32(y), b.w[g]);
                }
                isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(a, b.scale[s]));
            }
            let scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), b.d);
            out = _mm256_fmadd_ps(scaled, _mm256_set1_ps(dys[i][0]), out);
        }
        out
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn rows(
        w: &[u8],
        w_row: usize,
        quants: &[LaneQuants],
        scales: &[[f32; 2]],
        out: &mut [[f32; 8]],
    ) {
        let (n_rows, x) = tile_rows::<BlockQ6_K>(w, w_row);
        let n = x[0].len();
        let n_tokens = out.len();
        assert!(quants.len() >= n_tokens * 9 * n && scales.len() >= n_tokens * n);
        Q6_TILE.with_borrow_mut(|buf| {
            unpack(&x, n, buf);
            for (t, o) in out.iter_mut().enumerate() {
                let v = token(
                    buf,
                    &quants[t * 9 * n..(t + 1) * 9 * n],
                    &scales[t * n..(t + 1) * n],
                );
                store_rows(o, v, n_rows);
            }
        });
    }

    /// The [`crate::ggml_lanes::GgmlLanesFn`] of Q6_K in the tiled order.
    pub(in crate::x86) fn kernel(
        w: &[u8],
        w_row: usize,
        quants: &[LaneQuants],
        scales: &[[f32; 2]],
        out: &mut [[f32; 8]],
    ) {
        if out.is_empty() {
            return;
        }
        // SAFETY: only handed out by `ggml_lanes_kernel` after AVX-512 VNNI, VL, BW and F
        // (and AVX2, FMA, F16C) were detected, or called by the packed Q6_K kernels, which
        // `packed_kernels` hands out after those and GFNI were.
        unsafe { rows(w, w_row, quants, scales, out) }
    }
}

/// One super-block of an eight-row Q4_K tile, unpacked for the whole batch: the nibbles of
/// each group of four (row r in lane r); per sub-block of 32 the start `−128·Σq`, the rows'
/// scales and mins as i32; the rows' `d` and `dmin` as f32.
#[derive(Clone, Copy)]
#[repr(C)]
pub(in crate::x86) struct Q4KBlock {
    pub(in crate::x86) w: [__m256i; 64],
    pub(in crate::x86) start: [__m256i; 8],
    pub(in crate::x86) scale: [__m256i; 8],
    pub(in crate::x86) min: [__m256i; 8],
    pub(in crate::x86) d: __m256,
    pub(in crate::x86) dmin: __m256,
}

thread_local! {
    /// The current Q4_K row tile, unpacked (reused across calls).
    pub(in crate::x86) static Q4K_TILE: std::cell::RefCell<Vec<Q4KBlock>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Repacked Q4_K batches in the orders of ggml's interleaved Q4_K kernels
/// (`crate::repacked`): for the tokens of whole groups of four, per 64-value pair of
/// sub-blocks `acc = fma(Σ sc·Σq·y, d·d_y, acc)` and `acc_min = fma(Σ m·Σy, dmin·d_y,
/// acc_min)`; for the rest the same per super-block; the result is `acc − acc_min`.
pub(in crate::x86) mod q4_k_repacked {
    use super::*;
    use crate::ggml_lanes::LaneQuants;

    /// Unpacks the first `n` super-blocks of eight rows into `buf`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn unpack(x: &[&[BlockQ4_K]; 8], n: usize, buf: &mut Vec<Q4KBlock>) {
        buf.clear();
        let x = x.map(|row| &row[..n]);
        let m4 = _mm256_set1_epi8(0xf);
        for i in 0..n {
            // Per row, sub-block j's 32 values.
            let mut values = [[_mm256_setzero_si256(); 8]; 8];
            for (r, row) in x.iter().enumerate() {
                let qs = &row[i].qs;
                for p in 0..4 {
                    let q = load_u8x32(qs[32 * p..32 * p + 32].try_into().expect("32 bytes"));
                    values[r][2 * p] = _mm256_and_si256(q, m4);
                    values[r][2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                }
            }
            let w = transpose_tile(&values);
            let start = std::array::from_fn(|j| start_of(&w[8 * j..8 * j + 8]));
            let scale_min = |j: usize, r: usize| scale_min_k4(j, &x[r][i].scales);
            let scale = std::array::from_fn(|j| {
                i32x8(std::array::from_fn(|r| i32::from(scale_min(j, r).0)))
            });
            let min = std::array::from_fn(|j| {
                i32x8(std::array::from_fn(|r| i32::from(scale_min(j, r).1)))
            });
            let d = f16x8(x.map(|row| u16::from_le_bytes(row[i].d.0)));
            let dmin = f16x8(x.map(|row| u16::from_le_bytes(row[i].dmin.0)));
            buf.push(Q4KBlock {
                w,
                start,
                scale,
                min,
                d,
                dmin,
            });
        }
    }

    /// The unpacked tile against one token (`ys`: per super-block its 8 quant chunks and its
    /// sub-block sums; `dys` its scales), in the GEMM order if `gemm`, else the GEMV order.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn token(blocks: &[Q4KBlock], ys: &[LaneQuants], dys: &[[f32; 2]], gemm: bool) -> __m256 {
        let n = blocks.len();
        let ys = &ys[..9 * n];
        let dys = &dys[..n];
        let (mut acc, mut acc_min) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (i, b) in blocks.iter().enumerate() {
            let dy = _mm256_set1_ps(dys[i][0]);
            let (scale, scale_min) = (_mm256_mul_ps(b.d, dy), _mm256_mul_ps(b.dmin, dy));
            let sums = &ys[9 * i + 8];
            let (mut isum, mut imin) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for p in 0..4 {
                let (mut s, mut m) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for j in 2 * p..2 * p + 2 {
                    let q = &ys[9 * i + j];
                    let mut a = b.start[j];
                    for g in 0..8 {
                        let o = 4 * g;
                        let y = i32::from_le_bytes([q[o], q[o + 1], q[o + 2], q[o + 3]]);
                        a = _mm256_dpbusd_epi32(a, _mm256_set1_epi32(y), b.w[8 * j + g]);
                    }
                    s = _mm256_add_epi32(s, _mm256_mullo_epi32(a, b.scale[j]));
                    let o = 4 * j;
                    let ysum = i32::from_le_bytes([sums[o], sums[o + 1], sums[o + 2], sums[o + 3]]);
                    m = _mm256_add_epi32(m, _mm256_mullo_epi32(b.min[j], _mm256_set1_epi32(ysum)));
                }
                if gemm {
                    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc);
                    acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), scale_min, acc_min);
                } else {
                    isum = _mm256_add_epi32(isum, s);
                    imin = _mm256_add_epi32(imin, m);
                }
            }
            if !gemm {
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
                acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), scale_min, acc_min);
            }
        }
        _mm256_sub_ps(acc, acc_min)
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn rows(
        w: &[u8],
        w_row: usize,
        quants: &[LaneQuants],
        scales: &[[f32; 2]],
        out: &mut [[f32; 8]],
    ) {
        let (n_rows, x) = tile_rows::<BlockQ4_K>(w, w_row);
        let n = x[0].len();
        Q4K_TILE.with_borrow_mut(|buf| {
            unpack(&x, n, buf);
            tile_tokens(buf, n_rows, quants, scales, out);
        });
    }

    /// An unpacked tile of `n_rows` rows against the batch: `out[t]` lane r = row r · token
    /// t, in the GEMM order for the tokens of whole groups of four, else the GEMV order.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(in crate::x86) fn tile_tokens(
        buf: &[Q4KBlock],
        n_rows: usize,
        quants: &[LaneQuants],
        scales: &[[f32; 2]],
        out: &mut [[f32; 8]],
    ) {
        let (n, n_tokens) = (buf.len(), out.len());
        assert!(quants.len() >= n_tokens * 9 * n && scales.len() >= n_tokens * n);
        let grouped = n_tokens - n_tokens % 4;
        for (t, o) in out.iter_mut().enumerate() {
            let v = token(
                buf,
                &quants[t * 9 * n..(t + 1) * 9 * n],
                &scales[t * n..(t + 1) * n],
                t < grouped,
            );
            store_rows(o, v, n_rows);
        }
    }

    /// The [`crate::ggml_lanes::GgmlLanesFn`] of repacked Q4_K.
    pub(in crate::x86) fn kernel(
        w: &[u8],
        w_row: usize,
        quants: &[LaneQuants],
        scales: &[[f32; 2]],
        out: &mut [[f32; 8]],
    ) {
        if out.is_empty() {
            return;
        }
        // SAFETY: only handed out by `ggml_lanes_kernel` after AVX-512 VNNI, VL, BW and F
        // (and AVX2, FMA, F16C) were detected.
        unsafe { rows(w, w_row, quants, scales, out) }
    }
}
