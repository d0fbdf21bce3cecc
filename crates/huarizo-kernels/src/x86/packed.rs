//! The kernels of packed weights (`crate::packed`): eight rows per group. Q4_0, Q4_1, Q5_0
//! and Q8_0 are in the 512-bit lane layout of the llama.cpp-order lane kernels (`row_lanes`),
//! so that a block of eight rows costs two (four for Q8_0) loads and a few logic steps to
//! unpack, and four `vpdpbusd` to sum; Q4_K has row r in lane r of 256-bit vectors, in the
//! order of llama.cpp's repacked GEMV; Q6_K has a pair of rows per 512-bit vector, in the order
//! of ggml's one-row kernel. Batches unpack a group into the lane kernels' tiles.

use super::row_lanes::{
    ggml_q4_0, ggml_q4_1, ggml_q5_0, ggml_q8_0, hsum_pairs, q4_k_repacked, q6_k_tiled, start_of,
    Q4KBlock, TileBlock, Q4K_TILE, TILE,
};
use super::*;
use crate::ggml_lanes::LaneQuants;
use crate::packed::{
    group_bytes, q6_k_blocks_at, BlockOffsets, OneToken, OneTokenBlock, PackedKernels, PACK_ROWS,
    Q4_K_BLOCK, Q6_K_BLOCK, START_OFFSETS,
};

/// How far ahead of the bytes being multiplied the one-token kernels prefetch, into L2
/// (`_MM_HINT_T1`), for every packed type but Q8_0, which is not prefetched at all: of the
/// distances and hints tried in one process on the same matrix (`matmul_bench` on
/// 151936 × 896 and 32768 × 4864, one and two threads; session 16 in docs/PERF.md), no
/// prefetch and 8–16 KiB into L2 came out on top, and the former 2 KiB into L1 at the bottom:
/// two threads of Q8_0 read 58 GB/s without it and 40 with it, where a plain sum read 63.
/// Q5_0, whose kernel does more per byte, read 55 GB/s with 8 KiB into L2 against 39
/// without.
const PREFETCH_AHEAD: usize = 8192;

/// Prefetches the `lines` cache lines from `at + PREFETCH_AHEAD` on into L2 (past a group's
/// end: the next group's, which the same thread usually takes next; prefetches do not
/// fault).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn prefetch_ahead(at: *const u8, lines: usize) {
    let ahead = at.wrapping_add(PREFETCH_AHEAD);
    for line in 0..lines {
        _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(64 * line).cast());
    }
}

/// [`OneTokenBlock`] of an activation block's quants `qs`: the sums of each four quants by
/// `vpmaddubsw` (times 1, in pairs) and `vpmaddwd` (the pairs), exact (at most 4 · 128 in
/// size), then times each offset of [`START_OFFSETS`], negated.
#[target_feature(enable = "avx2")]
pub(crate) fn one_token_block(qs: &[i8; QK]) -> OneTokenBlock {
    // SAFETY: `qs` holds 32 bytes; the load is unaligned.
    let y = unsafe { _mm256_loadu_si256(qs.as_ptr().cast()) };
    let pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), y);
    let fours = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    let mut block = OneTokenBlock {
        y: *qs,
        ..OneTokenBlock::default()
    };
    for (starts, c) in block.starts.iter_mut().zip(START_OFFSETS) {
        let v = _mm256_mullo_epi32(fours, _mm256_set1_epi32(-c));
        // SAFETY: `starts` holds 8 i32; the store is unaligned.
        unsafe { _mm256_storeu_si256(starts.as_mut_ptr().cast(), v) };
    }
    block
}

/// Lane `2r` and `2r + 1` ← lane r: the rows' scales beside their two groups.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
fn pairs(v: __m256) -> __m512 {
    _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
        _mm512_castps256_ps512(v),
    )
}

/// The 128 four-bit values of eight rows at `qs` (two 64-byte loads) as four vectors: the
/// low nibbles of bytes 0–63, their high nibbles, then the same for bytes 64–127.
///
/// # Safety
/// `qs` must point at 128 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn nibbles(qs: *const u8) -> [__m512i; 4] {
    let low = _mm512_set1_epi8(0x0F);
    // SAFETY: the caller guarantees the 128 bytes.
    let x = unsafe {
        [
            _mm512_loadu_si512(qs.cast()),
            _mm512_loadu_si512(qs.add(64).cast()),
        ]
    };
    [
        _mm512_and_si512(x[0], low),
        _mm512_and_si512(_mm512_srli_epi16::<4>(x[0]), low),
        _mm512_and_si512(x[1], low),
        _mm512_and_si512(_mm512_srli_epi16::<4>(x[1]), low),
    ]
}

/// Eight f16 at `p` as f32.
///
/// # Safety
/// `p` must point at 16 readable bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x8_at(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees the 16 bytes; the load is unaligned.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
}

/// The block at `at` of a packed Q5_0 group: its four vectors of unsigned values `q + 16`,
/// and the eight rows' scales as f32.
///
/// # Safety
/// `group` must hold the block's parts at `at`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn q5_0_block(group: *const u8, at: BlockOffsets) -> ([__m512i; 4], __m256, __m256) {
    let low = _mm512_set1_epi8(0x0F);
    // SAFETY: the caller guarantees the block's nibbles, fifth bits and scales.
    unsafe {
        let qs = group.add(at.qs);
        let x = [
            _mm512_loadu_si512(qs.cast()),
            _mm512_loadu_si512(qs.add(64).cast()),
        ];
        // Vector k: its nibbles (`x[k / 2]`, shifted for odd k) with 16 added where its fifth
        // bits are set, as one `(nibbles & 0x0F) | fifth` (`vpternlogd`).
        let nibbles = [
            x[0],
            _mm512_srli_epi16::<4>(x[0]),
            x[1],
            _mm512_srli_epi16::<4>(x[1]),
        ];
        let w = std::array::from_fn(|k| {
            let bits = group.add(at.qh + 8 * k).cast::<u64>().read_unaligned();
            let fifth = _mm512_maskz_mov_epi8(bits, _mm512_set1_epi8(16));
            _mm512_ternarylogic_epi32::<0xEA>(nibbles[k], low, fifth)
        });
        (w, f16x8_at(group.add(at.d)), _mm256_setzero_ps())
    }
}

/// The block at `at` of a packed Q4_0 group: its four vectors of nibbles (`q + 8`), and the
/// eight rows' scales as f32.
///
/// # Safety
/// As [`q5_0_block`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn q4_0_block(group: *const u8, at: BlockOffsets) -> ([__m512i; 4], __m256, __m256) {
    // SAFETY: the caller guarantees the block's nibbles and scales.
    unsafe {
        let w = nibbles(group.add(at.qs));
        (w, f16x8_at(group.add(at.d)), _mm256_setzero_ps())
    }
}

/// The block at `at` of a packed Q4_1 group: its four vectors of nibbles, and the eight
/// rows' scales and minimums as f32.
///
/// # Safety
/// As [`q5_0_block`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn q4_1_block(group: *const u8, at: BlockOffsets) -> ([__m512i; 4], __m256, __m256) {
    // SAFETY: the caller guarantees the block's nibbles, scales and minimums.
    unsafe {
        let w = nibbles(group.add(at.qs));
        (w, f16x8_at(group.add(at.d)), f16x8_at(group.add(at.qh)))
    }
}

/// The block at `at` of a packed Q8_0 group: its four vectors of unsigned values `q + 128`,
/// and the eight rows' scales as f32.
///
/// # Safety
/// As [`q5_0_block`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn q8_0_block(group: *const u8, at: BlockOffsets) -> ([__m512i; 4], __m256, __m256) {
    // SAFETY: as in `q5_0_block`.
    unsafe {
        let qs = group.add(at.qs);
        let mut w = [_mm512_setzero_si512(); 4];
        for (k, w) in w.iter_mut().enumerate() {
            *w = _mm512_loadu_si512(qs.add(64 * k).cast());
        }
        (w, f16x8_at(group.add(at.d)), _mm256_setzero_ps())
    }
}

/// Eight bytes at `p` as one i64 (broadcast to every 64-bit lane by the caller).
#[inline(always)]
fn eight<T: Copy>(p: &[T]) -> i64 {
    debug_assert!(std::mem::size_of_val(p) >= 8);
    // SAFETY: `p` holds at least eight bytes (two i32 or eight i8 here); the read is
    // unaligned.
    unsafe { p.as_ptr().cast::<i64>().read_unaligned() }
}

/// A module's [`PackedOneFn`](crate::packed::PackedOneFn), `one`, over its
/// `one_token(group, n_blocks, row) -> __m256`: the groups of a piece in one call, each
/// group's eight results stored in turn. (A macro, not a function taking `one_token`: a
/// closure or function pointer would not inline into the `#[target_feature]` loop.)
macro_rules! one_token_over_groups {
    () => {
        one_token_over_groups!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni");
    };
    ($features:literal) => {
        /// [`PackedOneFn`](crate::packed::PackedOneFn) over [`one_token`].
        #[target_feature(enable = $features)]
        fn groups(
            groups: &[u8],
            stride: usize,
            n_blocks: usize,
            row: &OneToken<'_>,
            out: &mut [f32],
        ) {
            for (g, out) in out.chunks_exact_mut(8).enumerate() {
                let v = one_token(&groups[g * stride..(g + 1) * stride], n_blocks, row);
                // SAFETY: `out` holds 8 f32; the store is unaligned.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
            }
        }

        pub(super) fn one(
            groups: &[u8],
            stride: usize,
            n_blocks: usize,
            row: &OneToken<'_>,
            out: &mut [f32],
        ) {
            // SAFETY: only handed out by `packed_kernels` after the features of `groups` were
            // detected (AVX-512 F, BW, VL, VNNI, AVX2, FMA, F16C; for Q6_K also GFNI).
            unsafe { self::groups(groups, stride, n_blocks, row, out) }
        }
    };
}

/// The kernels of one packed type: `$block` unpacks a block to unsigned `q + c` (`c` the
/// offset `START_OFFSETS[$start]`; Q4_1, `$min`: its nibbles, plus the minimums, whose
/// `Σ m·s` is added after the lanes as ggml adds it); `$bytes` bytes per block of a group
/// (eight rows); `$prefetch`: whether the one-token kernel prefetches (see
/// [`PREFETCH_AHEAD`]).
macro_rules! packed_kernels {
    (
        $module:ident,
        $ty:expr,
        $block:ident,
        $start:literal,
        $min:literal,
        $bytes:literal,
        $prefetch:literal,
        $lanes:ident
    ) => {
        mod $module {
            use super::*;

            /// Bytes of a chunk of four blocks (see `crate::packed`).
            const CHUNK: usize = 4 * $bytes;

            /// The block at `at` of `group` against activation block `a` (scale `dy`; Q4_1:
            /// `s` its `d·Σy`), added to the lanes `acc` and (Q4_1) the minimums' sums `mins`.
            ///
            /// # Safety
            /// `group` must hold the block's parts at `at`.
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            unsafe fn add_block(
                group: *const u8,
                at: BlockOffsets,
                a: &OneTokenBlock,
                dy: f32,
                s: f32,
                acc: &mut [__m512; 4],
                mins: &mut __m256,
            ) {
                // SAFETY: the caller guarantees the block.
                let (w, d, m) = unsafe { $block(group, at) };
                let scale = pairs(_mm256_mul_ps(d, _mm256_set1_ps(dy)));
                if $min {
                    *mins = _mm256_add_ps(*mins, _mm256_mul_ps(m, _mm256_set1_ps(s)));
                }
                for k in 0..4 {
                    let start = if $min {
                        _mm512_setzero_si512()
                    } else {
                        _mm512_set1_epi64(eight(&a.starts[$start][2 * k..2 * k + 2]))
                    };
                    let y = _mm512_set1_epi64(eight(&a.y[8 * k..8 * k + 8]));
                    let s = _mm512_dpbusd_epi32(start, w[k], y);
                    acc[k] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(s), acc[k]);
                }
            }

            /// One packed group against one activation row: lane r = row r · the row. The
            /// blocks go chunk by chunk, so that a full chunk's offsets are constants.
            #[inline]
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn one_token(group: &[u8], n_blocks: usize, row: &OneToken<'_>) -> __m256 {
                assert!(
                    group.len() >= group_bytes($ty, n_blocks),
                    "packed group shorter than its blocks"
                );
                let (acts, scales) = (&row.blocks[..n_blocks], &row.scales[..n_blocks]);
                // (Only Q4_1 reads `sums`; the others pass their scales along unread.)
                let sums = if $min { &row.sums[..n_blocks] } else { scales };
                let mut acc = [_mm512_setzero_ps(); 4];
                let mut mins = _mm256_setzero_ps();
                let p = group.as_ptr();
                let full = n_blocks / 4;
                for (c, ((a, dy), s)) in acts
                    .chunks_exact(4)
                    .zip(scales.chunks_exact(4))
                    .zip(sums.chunks_exact(4))
                    .enumerate()
                {
                    if $prefetch {
                        prefetch_ahead(p.wrapping_add(CHUNK * c), CHUNK.div_ceil(64));
                    }
                    for j in 0..4 {
                        let at = BlockOffsets::in_chunk_of($ty, CHUNK * c, j, 4);
                        // SAFETY: the group's size was checked above and block `4c + j` is
                        // one of its `n_blocks`.
                        unsafe { add_block(p, at, &a[j], dy[j], s[j], &mut acc, &mut mins) };
                    }
                }
                let m = n_blocks % 4;
                let (a, dy, s) = (&acts[4 * full..], &scales[4 * full..], &sums[4 * full..]);
                for j in 0..m {
                    let at = BlockOffsets::in_chunk_of($ty, CHUNK * full, j, m);
                    // SAFETY: as above, for the last chunk's `m` blocks.
                    unsafe { add_block(p, at, &a[j], dy[j], s[j], &mut acc, &mut mins) };
                }
                // ggml's `hsum_float_8`, lane by lane; then Q4_1's `Σ m·s`.
                let out = hsum_pairs(&acc);
                if $min {
                    _mm256_add_ps(out, mins)
                } else {
                    out
                }
            }

            /// A packed group unpacked into the lane kernels' tile (signed values, `−128·Σq`
            /// per group of four, scales in pairs of lanes).
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            fn unpack_tile(group: &[u8], n_blocks: usize, buf: &mut Vec<TileBlock>) {
                assert!(
                    group.len() >= group_bytes($ty, n_blocks),
                    "packed group shorter than its blocks"
                );
                buf.clear();
                let offset = _mm512_set1_epi8(if $min { 0 } else { START_OFFSETS[$start] as i8 });
                let minus_128 = _mm512_set1_epi8(-128);
                for i in 0..n_blocks {
                    let at = BlockOffsets::of($ty, i, n_blocks);
                    // SAFETY: the group's size was checked above and `i < n_blocks`.
                    let (u, d, m) = unsafe { $block(group.as_ptr(), at) };
                    let (mut w, mut start) = (u, [_mm512_setzero_si512(); 4]);
                    for k in 0..4 {
                        w[k] = _mm512_sub_epi8(u[k], offset);
                        let sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), minus_128, w[k]);
                        start[k] = _mm512_sub_epi32(_mm512_setzero_si512(), sum);
                    }
                    buf.push(TileBlock {
                        w,
                        start,
                        d: pairs(d),
                        m,
                    });
                }
            }

            one_token_over_groups!();

            pub(super) fn lanes(
                group: &[u8],
                n_blocks: usize,
                quants: &[LaneQuants],
                scales: &[[f32; 2]],
                out: &mut [[f32; 8]],
            ) {
                if out.is_empty() {
                    return;
                }
                TILE.with_borrow_mut(|buf| {
                    // SAFETY: as in `one`.
                    unsafe {
                        unpack_tile(group, n_blocks, buf);
                        $lanes::tile_tokens(buf, 8, quants, scales, out);
                    }
                });
            }
        }
    };
}

// The (·)_0 offsets' indices in `START_OFFSETS`: 8 for Q4_0, 16 for Q5_0, 128 for Q8_0
// (Q4_1 has none).
packed_kernels!(
    q4_0,
    GgmlType::Q4_0,
    q4_0_block,
    0,
    false,
    144,
    true,
    ggml_q4_0
);
packed_kernels!(
    q4_1,
    GgmlType::Q4_1,
    q4_1_block,
    0,
    true,
    160,
    true,
    ggml_q4_1
);
packed_kernels!(
    q5_0,
    GgmlType::Q5_0,
    q5_0_block,
    1,
    false,
    176,
    true,
    ggml_q5_0
);
packed_kernels!(
    q8_0,
    GgmlType::Q8_0,
    q8_0_block,
    2,
    false,
    272,
    false,
    ggml_q8_0
);

/// Packed Q4_K in the orders of llama.cpp's repacked Q4_K kernels (`crate::repacked`): one
/// token in the GEMV order, eight rows in the eight lanes of 256-bit vectors.
mod q4_k {
    use super::*;
    use crate::blocks::QK_K;
    use crate::ggml_lanes::LaneQuants;

    /// Super-block `i` of a packed group against one Q8_K block `y` (its quants and its
    /// 32-value sums): the exact `Σ sc·Σq·y` and `Σ m·Σy` of the eight rows.
    ///
    /// # Safety
    /// `group` must hold more than `i` super-blocks; `y` must point at a Q8_K block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn sums(
        group: *const u8,
        i: usize,
        y: *const u8,
        sub_sums: &[i32; 8],
    ) -> (__m256i, __m256i) {
        let low = _mm256_set1_epi8(0x0F);
        // SAFETY: the caller guarantees both sizes: the super-block's bytes are
        // `Q4_K_BLOCK·i..Q4_K_BLOCK·(i + 1)` of the group, the quants bytes 4..260 of `y`.
        unsafe {
            let at = group.add(Q4_K_BLOCK * i);
            let qs = y.add(4);
            let (mut isum, mut imin) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for p in 0..4 {
                let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
                for g in 0..8 {
                    let x = _mm256_load_si256(at.add(256 * p + 32 * g).cast());
                    let y_lo =
                        _mm256_set1_epi32(qs.add(64 * p + 4 * g).cast::<i32>().read_unaligned());
                    let y_hi = _mm256_set1_epi32(
                        qs.add(64 * p + 32 + 4 * g).cast::<i32>().read_unaligned(),
                    );
                    lo = _mm256_dpbusd_epi32(lo, _mm256_and_si256(x, low), y_lo);
                    hi = _mm256_dpbusd_epi32(
                        hi,
                        _mm256_and_si256(_mm256_srli_epi16::<4>(x), low),
                        y_hi,
                    );
                }
                for (j, s) in [(2 * p, lo), (2 * p + 1, hi)] {
                    let sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64(at.add(1024 + 8 * j).cast()));
                    let m = _mm256_cvtepu8_epi32(_mm_loadl_epi64(at.add(1088 + 8 * j).cast()));
                    isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(s, sc));
                    imin = _mm256_add_epi32(
                        imin,
                        _mm256_mullo_epi32(m, _mm256_set1_epi32(sub_sums[j])),
                    );
                }
            }
            (isum, imin)
        }
    }

    /// One packed group against one Q8_K row, in the GEMV order: lane r = row r · the row.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn one_token(group: &[u8], n_blocks: usize, row: &OneToken<'_>) -> __m256 {
        let (y, sub_sums) = (row.q8_k, row.sub_sums);
        assert!(
            group.len() >= group_bytes(GgmlType::Q4_K, n_blocks)
                && group.as_ptr().addr().is_multiple_of(32),
            "packed group shorter than its blocks, or not aligned"
        );
        let ys: &[BlockQ8_K] = as_blocks(&y[..n_blocks * std::mem::size_of::<BlockQ8_K>()]);
        let sub_sums = &sub_sums[..n_blocks];
        let (mut acc, mut acc_min) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for (i, (y, sub_sums)) in ys.iter().zip(sub_sums).enumerate() {
            prefetch_ahead(
                group.as_ptr().wrapping_add(Q4_K_BLOCK * i),
                Q4_K_BLOCK.div_ceil(64),
            );
            // SAFETY: the group's size was checked above, `i < n_blocks`, `y` is a block.
            let (isum, imin) =
                unsafe { sums(group.as_ptr(), i, (y as *const BlockQ8_K).cast(), sub_sums) };
            // SAFETY: as above; the scales are at 1152 and 1168 of the super-block.
            let (d, dmin) = unsafe {
                let at = group.as_ptr().add(Q4_K_BLOCK * i);
                (f16x8_at(at.add(1152)), f16x8_at(at.add(1168)))
            };
            let dy = _mm256_set1_ps(y.d());
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(d, dy), acc);
            acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin), _mm256_mul_ps(dmin, dy), acc_min);
        }
        _mm256_sub_ps(acc, acc_min)
    }

    /// A packed group unpacked into the tile of the repacked-Q4_K lane kernel.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn unpack_tile(group: &[u8], n_blocks: usize, buf: &mut Vec<Q4KBlock>) {
        assert!(
            group.len() >= group_bytes(GgmlType::Q4_K, n_blocks)
                && group.as_ptr().addr().is_multiple_of(32),
            "packed group shorter than its blocks, or not aligned"
        );
        buf.clear();
        let low = _mm256_set1_epi8(0x0F);
        for i in 0..n_blocks {
            let at = &group[Q4_K_BLOCK * i..Q4_K_BLOCK * (i + 1)];
            let mut w = [_mm256_setzero_si256(); 64];
            for p in 0..4 {
                for g in 0..8 {
                    let x = load_u8x32(at[256 * p + 32 * g..][..32].try_into().expect("32 bytes"));
                    w[8 * (2 * p) + g] = _mm256_and_si256(x, low);
                    w[8 * (2 * p + 1) + g] = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low);
                }
            }
            let (mut start, mut scale, mut min) = (
                [_mm256_setzero_si256(); 8],
                [_mm256_setzero_si256(); 8],
                [_mm256_setzero_si256(); 8],
            );
            for j in 0..8 {
                start[j] = start_of(&w[8 * j..8 * j + 8]);
                // SAFETY: the super-block's scales and minimums are 8 bytes each at these
                // offsets of `at` (`Q4_K_BLOCK` bytes).
                unsafe {
                    scale[j] =
                        _mm256_cvtepu8_epi32(_mm_loadl_epi64(at.as_ptr().add(1024 + 8 * j).cast()));
                    min[j] =
                        _mm256_cvtepu8_epi32(_mm_loadl_epi64(at.as_ptr().add(1088 + 8 * j).cast()));
                }
            }
            // SAFETY: the rows' `d` and `dmin` are 16 bytes each at 1152 and 1168 of `at`.
            let (d, dmin) = unsafe {
                (
                    f16x8_at(at.as_ptr().add(1152)),
                    f16x8_at(at.as_ptr().add(1168)),
                )
            };
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

    one_token_over_groups!();

    pub(super) fn lanes(
        group: &[u8],
        n_blocks: usize,
        quants: &[LaneQuants],
        scales: &[[f32; 2]],
        out: &mut [[f32; 8]],
    ) {
        if out.is_empty() {
            return;
        }
        debug_assert_eq!(QK_K, 256);
        Q4K_TILE.with_borrow_mut(|buf| {
            // SAFETY: as in `one`.
            unsafe {
                unpack_tile(group, n_blocks, buf);
                q4_k_repacked::tile_tokens(buf, 8, quants, scales, out);
            }
        });
    }
}

/// Packed Q6_K (see `crate::packed::pack_q6_k`): one token in the order of ggml's one-row
/// kernel, two rows per 512-bit vector; batches in ggml's tiled order, from the group's rows
/// unpacked to the file's layout.
///
/// The one-token kernel does per 32 values what the GFNI row kernel does (`vgf2p8affineqb`,
/// `vpternlogd`, `vpmaddubsw`, a scale pick, `vpdpwssd`), for two rows at once. On this Zen 4
/// a 512-bit operation costs about what two 256-bit ones do, so it computes little faster:
/// `matmul_bench 1 1 896 4864 Q6_K` from the caches, 31.4 → 32.6 GB/s of weights. What the
/// packed layout gains is huge pages and one stream per group: Qwen2.5-0.5B's `ffn_down`
/// (twelve Q6_K matrices and twelve Q4_K) took 1.74–1.78 ms per token against 1.91 unpacked,
/// measured alternately with fast memory (`op_times`). Dropping the scale pick or the
/// `vgf2p8affineqb` (wrong results, timing only) each made it about 15% faster: the kernel is
/// bound by its count of vector operations.
mod q6_k {
    use super::*;
    use crate::blocks::{BlockQ6_K, QK_K};
    use crate::ggml_lanes::LaneQuants;

    /// The `(j, k)`-th vector's sub-block scales for a pair of rows: from the pair's scales
    /// (`sc_even_odd`: per row its even sub-blocks' scales, then its odd ones', as i16), each
    /// 128-bit lane its scale `4j + k` eight times (`vpshufb`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    fn pick_scale(sc_even_odd: __m512i, m: i16) -> __m512i {
        _mm512_shuffle_epi8(sc_even_odd, _mm512_set1_epi16(((2 * m + 1) << 8) | (2 * m)))
    }

    /// Super-block i of a packed group against Q8_K block `y`: per pair p of rows, the
    /// sixteen int32 lanes of ggml's AVX2 Q6_K kernel (lanes 0–7 row 2p, 8–15 row 2p + 1),
    /// the same integers lane by lane (see `q6_k_block_lanes_gfni`).
    ///
    /// # Safety
    /// `at` must point at the super-block's [`Q6_K_BLOCK`] bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
    unsafe fn lanes_of(at: *const u8, y: &BlockQ8_K) -> [__m512i; 4] {
        let m4 = _mm512_set1_epi8(0x0F);
        // Bits 2k and 2k + 1 of each byte to bits 4 and 5, the others cleared.
        let high = |k: i64| _mm512_set1_epi64(((1 << (2 * k)) << 24) | ((1 << (2 * k + 1)) << 16));
        // Per row: its scales' even sub-blocks, then its odd ones.
        const EVEN_ODD: [i16; 32] = [
            0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 16, 18, 20, 22, 24, 26, 28, 30,
            17, 19, 21, 23, 25, 27, 29, 31,
        ];
        // SAFETY: `y` is a whole block; the caller guarantees the super-block's bytes.
        unsafe {
            let bsums = _mm256_loadu_si256(y.bsums.as_ptr().cast());
            let minus_bsums =
                _mm512_broadcast_i64x4(_mm256_sub_epi16(_mm256_setzero_si256(), bsums));
            let ys: [__m512i; 8] = std::array::from_fn(|v| {
                _mm512_broadcast_i64x4(_mm256_loadu_si256(y.qs.as_ptr().add(32 * v).cast()))
            });
            std::array::from_fn(|p| {
                let sc = _mm512_cvtepi8_epi16(_mm256_loadu_si256(at.add(1536 + 32 * p).cast()));
                let even_odd = _mm512_loadu_si512(EVEN_ODD.as_ptr().cast());
                let sc_even_odd = _mm512_permutexvar_epi16(even_odd, sc);
                // −32·(sc·bsum) of sub-blocks 2l and 2l + 1 in lane l.
                let mut sumi = _mm512_madd_epi16(_mm512_slli_epi16::<5>(sc), minus_bsums);
                for j in 0..2 {
                    let base = at.add(384 * p + 192 * j);
                    let runs = [
                        _mm512_loadu_si512(base.cast()),
                        _mm512_loadu_si512(base.add(64).cast()),
                    ];
                    let bits = _mm512_loadu_si512(base.add(128).cast());
                    for k in 0..4 {
                        let nibbles = if k < 2 {
                            runs[k]
                        } else {
                            _mm512_srli_epi16::<4>(runs[k - 2])
                        };
                        let h = _mm512_gf2p8affine_epi64_epi8::<0>(bits, high(k as i64));
                        // (nibbles & 0x0F) | h
                        let q = _mm512_ternarylogic_epi32::<0xEC>(nibbles, h, m4);
                        let p16 = _mm512_maddubs_epi16(q, ys[4 * j + k]);
                        let scale = pick_scale(sc_even_odd, (4 * j + k) as i16);
                        sumi = _mm512_dpwssd_epi32(sumi, scale, p16);
                    }
                }
                sumi
            })
        }
    }

    /// One packed group against one Q8_K row: lane r = row r · the row, as ggml's one-row
    /// kernel sums it (per super-block `acc = fma(d·d_y, lanes, acc)`, then
    /// `hsum_float_8`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
    fn one_token(group: &[u8], n_blocks: usize, row: &OneToken<'_>) -> __m256 {
        assert!(
            group.len() >= group_bytes(GgmlType::Q6_K, n_blocks),
            "packed group shorter than its blocks"
        );
        let ys: &[BlockQ8_K] = as_blocks(&row.q8_k[..n_blocks * std::mem::size_of::<BlockQ8_K>()]);
        let first = q6_k_blocks_at(n_blocks);
        let mut acc = [_mm512_setzero_ps(); 4];
        let p = group.as_ptr();
        for (i, y) in ys.iter().enumerate() {
            let at = p.wrapping_add(first + Q6_K_BLOCK * i);
            prefetch_ahead(at, Q6_K_BLOCK / 64);
            // SAFETY: the group's size was checked above and `i < n_blocks`: its `d` are
            // 16 bytes at 16i, its super-block Q6_K_BLOCK bytes at `at`.
            let (d, lanes) = unsafe { (f16x8_at(p.add(16 * i)), lanes_of(at, y)) };
            let d = _mm512_castps256_ps512(_mm256_mul_ps(d, _mm256_set1_ps(y.d())));
            for (pair, (acc, lanes)) in acc.iter_mut().zip(lanes).enumerate() {
                let r = 2 * pair as i32;
                let (a, b) = (r, r + 1);
                let dd = _mm512_permutexvar_ps(
                    _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b),
                    d,
                );
                *acc = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(lanes), *acc);
            }
        }
        let mut out = [0f32; 8];
        for (pair, acc) in acc.iter().enumerate() {
            out[2 * pair] = hsum_f32x8(_mm512_castps512_ps256(*acc));
            let high = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*acc));
            out[2 * pair + 1] = hsum_f32x8(_mm256_castpd_ps(high));
        }
        // SAFETY: `out` is eight f32; the load is unaligned.
        unsafe { _mm256_loadu_ps(out.as_ptr()) }
    }

    one_token_over_groups!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni");

    thread_local! {
        /// A group's rows in the file's layout (reused across calls).
        static ROWS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// [`PackedLanesFn`](crate::packed::PackedLanesFn): the group's rows unpacked to the
    /// file's layout, then ggml's tiled Q6_K kernel, whose order holds for batches of
    /// `crate::repacked::TILED_MIN_ROWS` tokens or more only (smaller ones go token by token).
    pub(super) fn lanes(
        group: &[u8],
        n_blocks: usize,
        quants: &[LaneQuants],
        scales: &[[f32; 2]],
        out: &mut [[f32; 8]],
    ) {
        if out.is_empty() {
            return;
        }
        debug_assert!(out.len() >= crate::repacked::TILED_MIN_ROWS);
        debug_assert_eq!(QK_K, 256);
        let w_row = n_blocks * std::mem::size_of::<BlockQ6_K>();
        ROWS.with_borrow_mut(|rows| {
            rows.resize(PACK_ROWS * w_row, 0);
            let blocks = as_blocks_mut::<BlockQ6_K>(rows);
            for (k, block) in blocks.iter_mut().enumerate() {
                *block = crate::packed::q6_k_block(group, n_blocks, k % n_blocks, k / n_blocks);
            }
            q6_k_tiled::kernel(rows, w_row, quants, scales, out);
        });
    }
}

/// The packed kernels for weights of type `t`, if this CPU has AVX-512 F, BW, VL and VNNI
/// (Q6_K: and GFNI).
pub(crate) fn packed_kernels(t: GgmlType) -> Option<PackedKernels> {
    if !vnni_detected() || !is_x86_feature_detected!("avx512f") {
        return None;
    }
    match t {
        GgmlType::Q4_0 => Some(PackedKernels {
            one: q4_0::one,
            lanes: q4_0::lanes,
        }),
        GgmlType::Q4_1 => Some(PackedKernels {
            one: q4_1::one,
            lanes: q4_1::lanes,
        }),
        GgmlType::Q5_0 => Some(PackedKernels {
            one: q5_0::one,
            lanes: q5_0::lanes,
        }),
        GgmlType::Q8_0 => Some(PackedKernels {
            one: q8_0::one,
            lanes: q8_0::lanes,
        }),
        GgmlType::Q4_K => Some(PackedKernels {
            one: q4_k::one,
            lanes: q4_k::lanes,
        }),
        GgmlType::Q6_K if is_x86_feature_detected!("gfni") => Some(PackedKernels {
            one: q6_k::one,
            lanes: q6_k::lanes,
        }),
        _ => None,
    }
}
