//! Attention over an 8-bit KV cache (`--cache-type q8_0`): keys and values in blocks of 32
//! (an f16 scale and 32 signed bytes, as ggml's Q8_0 stores them), 34 bytes per 32 values
//! against the f16 cache's 64.
//!
//! Opt-in, and its own arithmetic rather than llama.cpp's: llama.cpp quantizes the value
//! cache only with flash attention, whose sums differ from its default path anyway. What it
//! computes is documented here and checked against an f64 reference in the tests:
//! - as llama.cpp does for a quantized cache, queries and keys are rotated by an
//!   orthonormal Walsh–Hadamard matrix in chunks of [`Q8Layout::k_rotation`] values, and
//!   values in chunks of 64, before they are quantized (the output is rotated back): the
//!   rotation spreads a head's few large elements over its chunk, so that they no longer
//!   set the scale of a whole block (Qwen2.5's keys reach ±200 in some layers);
//! - each query head is quantized to 8 bits per block of 32 as ggml quantizes activations
//!   (`d = max|x| / 127`, `q = round(x / d)`), and a score is
//!   `Σ_b fma(dk_b · dq_b, Σ k·q over block b, ·)` with exact integer block sums, then scaled;
//! - the scores are soft-maxed as the f16 path does in llama.cpp's AVX2 build
//!   ([`softmax_ggml_isa`] with [`GgmlIsa::Avx2`], whatever the CPU);
//! - the output is `Σ_j fma(p_j, dv_jb · v_j, ·)` in f32, position by position (each
//!   position's dequantized values computed once for the query heads that share them).
//!
//! The same operations run in the same order on every path (AVX-512 VNNI, AVX2 or portable), so a
//! row's result does not depend on the CPU's vector width, the thread that computes it or
//! the batch it comes in.
//!
//! Layouts, per layer (`n_ctx` positions, `Hkv` heads):
//! - keys: per head, per tile of [`TILE`] positions, per block of 32 key elements: the 16
//!   positions' f16 scales, then 8 columns of 4 elements, each column the 16 positions' 4
//!   bytes side by side, stored as `q + 128` (unsigned), so that `vpdpbusd` sums a block
//!   for 16 positions at once;
//! - values: per head, per position, Q8_0 blocks (f16 scale, 32 signed bytes).

use super::{window_start, AttnParams, AttnSpan};
use crate::isa::GgmlIsa;
use crate::ops::softmax_ggml_isa;
use crate::pool::ThreadPool;
use half::f16;
use half::slice::HalfFloatSliceExt;

/// Values per block.
pub const QB: usize = 32;
/// Positions per key tile.
pub const TILE: usize = 16;
/// Bytes of one key tile block: 16 f16 scales, then 16 positions × 32 bytes.
const K_TILE_BLOCK: usize = TILE * 2 + TILE * QB;
/// Bytes of one value block (f16 scale, 32 bytes).
const V_BLOCK: usize = 2 + QB;
/// Most query heads one job takes (their scores or sums stay in registers).
const MAX_HEADS: usize = 8;

/// Where one layer's 8-bit keys and values sit, for a cache of `n_ctx` positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Q8Layout {
    /// Positions the cache holds.
    pub n_ctx: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Key head width (a multiple of 32).
    pub head_dim: usize,
    /// Value head width (a multiple of 32).
    pub head_dim_v: usize,
}

impl Q8Layout {
    /// Whether head widths `d` (keys) and `dv` (values) fit the 8-bit cache: whole blocks
    /// of 32, at most [`MAX_HEAD`].
    pub fn supports(d: usize, dv: usize) -> bool {
        (1..=MAX_HEAD).contains(&d)
            && (1..=MAX_HEAD).contains(&dv)
            && d.is_multiple_of(QB)
            && dv.is_multiple_of(QB)
    }

    fn k_blocks(&self) -> usize {
        self.head_dim / QB
    }

    fn v_blocks(&self) -> usize {
        self.head_dim_v / QB
    }

    fn n_tiles(&self) -> usize {
        self.n_ctx.div_ceil(TILE)
    }

    /// The key and value buffers' bytes, `None` when they do not fit in `usize`.
    pub fn checked_bytes(&self) -> Option<(usize, usize)> {
        let k = self
            .n_head_kv
            .checked_mul(self.n_tiles())?
            .checked_mul(self.k_blocks())?
            .checked_mul(K_TILE_BLOCK)?;
        let v = self
            .n_head_kv
            .checked_mul(self.n_ctx)?
            .checked_mul(self.v_blocks())?
            .checked_mul(V_BLOCK)?;
        Some((k, v))
    }

    /// Bytes of the key buffer (panics where [`Q8Layout::checked_bytes`] is `None`).
    pub fn k_bytes(&self) -> usize {
        self.checked_bytes().expect("a cache layout within usize").0
    }

    /// Bytes of the value buffer (panics where [`Q8Layout::checked_bytes`] is `None`).
    pub fn v_bytes(&self) -> usize {
        self.checked_bytes().expect("a cache layout within usize").1
    }

    /// The length of the chunks queries and keys are rotated in (0: not rotated), as
    /// llama.cpp picks it: 64, doubled while the head width stays a multiple.
    pub fn k_rotation(&self) -> usize {
        rotation(self.head_dim, true)
    }

    /// The length of the chunks values are rotated in (0: not rotated): 64.
    pub fn v_rotation(&self) -> usize {
        rotation(self.head_dim_v, false)
    }

    /// Offset of head `g`'s key tile `tile`, block `b`.
    fn k_at(&self, g: usize, tile: usize, b: usize) -> usize {
        ((g * self.n_tiles() + tile) * self.k_blocks() + b) * K_TILE_BLOCK
    }

    /// Offset of head `g`'s value row at position `j`.
    fn v_at(&self, g: usize, j: usize) -> usize {
        (g * self.n_ctx + j) * self.v_blocks() * V_BLOCK
    }
}

/// The rotation chunk for heads of width `d` (0 when `d` is not a multiple of 64); `grow`:
/// the largest power-of-two multiple of 64 that divides `d`, else 64.
fn rotation(d: usize, grow: bool) -> usize {
    if !d.is_multiple_of(64) {
        return 0;
    }
    let mut n = 64;
    while grow && d.is_multiple_of(2 * n) {
        n *= 2;
    }
    n
}

/// The widest head (keys, queries or values) the 8-bit cache takes.
pub const MAX_HEAD: usize = 1024;

/// Multiplies each chunk of `n` values of `x` by the orthonormal Walsh–Hadamard matrix of
/// order `n` (Sylvester's order, `H₂ₛ = [[Hₛ, Hₛ], [Hₛ, −Hₛ]] / √2`), which is its own
/// inverse. `n = 0` leaves `x` as it is.
pub fn rotate(x: &mut [f32], n: usize) {
    if n == 0 {
        return;
    }
    assert!(n.is_power_of_two() && x.len().is_multiple_of(n));
    let scale = 1.0 / (n as f32).sqrt();
    for chunk in x.chunks_exact_mut(n) {
        let mut s = 1;
        while s < n {
            for i in (0..n).step_by(2 * s) {
                for j in i..i + s {
                    let (a, b) = (chunk[j], chunk[j + s]);
                    chunk[j] = a + b;
                    chunk[j + s] = a - b;
                }
            }
            s *= 2;
        }
        chunk.iter_mut().for_each(|v| *v *= scale);
    }
}

/// Quantizes 32 values as ggml's reference Q8_0 does: the scale `max|x| / 127` (stored as
/// f16) and `round(x / scale)`.
fn quantize_block(x: &[f32]) -> (f16, [i8; QB]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; QB];
    for (q, &v) in q.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
    }
    (f16::from_f32(d), q)
}

/// Each head of `row` (heads of `width` values) rotated in chunks of `n_rot` and quantized
/// block by block: `put(head, block, scale, quants)`.
fn quantized_heads(
    row: &[f32],
    width: usize,
    n_rot: usize,
    mut put: impl FnMut(usize, usize, f16, [i8; QB]),
) {
    assert!(width <= MAX_HEAD, "heads wider than {MAX_HEAD}");
    let mut buf = [0f32; MAX_HEAD];
    for (g, src) in row.chunks_exact(width).enumerate() {
        let head = &mut buf[..width];
        head.copy_from_slice(src);
        rotate(head, n_rot);
        for (b, block) in head.chunks_exact(QB).enumerate() {
            let (d, q) = quantize_block(block);
            put(g, b, d, q);
        }
    }
}

/// Stores the keys of position `pos` (`row`: `Hkv·D` values) into `k`.
pub fn store_k(l: &Q8Layout, k: &mut [u8], pos: usize, row: &[f32]) {
    assert!(pos < l.n_ctx && row.len() == l.n_head_kv * l.head_dim);
    assert!(k.len() >= l.k_bytes(), "key buffer shorter than its layout");
    let (tile, lane) = (pos / TILE, pos % TILE);
    quantized_heads(row, l.head_dim, l.k_rotation(), |g, b, d, q| {
        let at = l.k_at(g, tile, b);
        k[at + 2 * lane..at + 2 * lane + 2].copy_from_slice(&d.to_le_bytes());
        for (i, &v) in q.iter().enumerate() {
            let (c, t) = (i / 4, i % 4);
            k[at + TILE * 2 + (c * TILE + lane) * 4 + t] = (v as u8) ^ 0x80;
        }
    });
}

/// Stores the values of position `pos` (`row`: `Hkv·Dv` values) into `v`.
pub fn store_v(l: &Q8Layout, v: &mut [u8], pos: usize, row: &[f32]) {
    assert!(pos < l.n_ctx && row.len() == l.n_head_kv * l.head_dim_v);
    assert!(
        v.len() >= l.v_bytes(),
        "value buffer shorter than its layout"
    );
    quantized_heads(row, l.head_dim_v, l.v_rotation(), |g, b, d, q| {
        let blk = &mut v[l.v_at(g, pos) + b * V_BLOCK..][..V_BLOCK];
        blk[..2].copy_from_slice(&d.to_le_bytes());
        for (dst, &x) in blk[2..].iter_mut().zip(&q) {
            *dst = x as u8;
        }
    });
}

/// Copies the first `n` positions of a cache laid out as `src_l` into one laid out as
/// `dst_l` (same heads and widths; the capacities may differ).
pub fn copy_prefix(
    dst_l: &Q8Layout,
    dst: (&mut [u8], &mut [u8]),
    src_l: &Q8Layout,
    src: (&[u8], &[u8]),
    n: usize,
) {
    assert!(n <= dst_l.n_ctx && n <= src_l.n_ctx);
    assert_eq!(
        (dst_l.n_head_kv, dst_l.head_dim, dst_l.head_dim_v),
        (src_l.n_head_kv, src_l.head_dim, src_l.head_dim_v),
        "caches of different shapes"
    );
    let tiles = n.div_ceil(TILE);
    let vrow = src_l.v_blocks() * V_BLOCK;
    for g in 0..src_l.n_head_kv {
        let len = tiles * src_l.k_blocks() * K_TILE_BLOCK;
        let (d, s) = (dst_l.k_at(g, 0, 0), src_l.k_at(g, 0, 0));
        dst.0[d..d + len].copy_from_slice(&src.0[s..s + len]);
        let (d, s) = (dst_l.v_at(g, 0), src_l.v_at(g, 0));
        dst.1[d..d + n * vrow].copy_from_slice(&src.1[s..s + n * vrow]);
    }
}

/// One sequence's 8-bit cache as [`attention_q8`] reads it.
#[derive(Clone, Copy)]
pub struct Q8Cache<'c> {
    /// The layout both buffers follow.
    pub layout: Q8Layout,
    /// Keys ([`store_k`]).
    pub k: &'c [u8],
    /// Values ([`store_v`]).
    pub v: &'c [u8],
}

/// A query head quantized for the scores: per block its scale, its 8 words of 4 bytes and
/// `−128·Σq` (which undoes the keys' `+128`).
#[derive(Clone, Copy, Default)]
struct QueryBlock {
    d: f32,
    words: [i32; QB / 4],
    bias: i32,
}

/// `x` (one rotated query head) quantized per block as [`quantize_block`] does; the scale
/// the products are multiplied by is the f16 one, as the cache's own.
fn quantize_query(x: &[f32], out: &mut [QueryBlock]) {
    for (blk, x) in out.iter_mut().zip(x.chunks_exact(QB)) {
        let (d, q) = quantize_block(x);
        blk.d = d.to_f32();
        blk.bias = -128 * q.iter().map(|&v| v as i32).sum::<i32>();
        for (w, q) in blk.words.iter_mut().zip(q.chunks_exact(4)) {
            *w = i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]);
        }
    }
}

/// Attention for the query rows of `spans` over their sequences' 8-bit caches (`kv(s)`),
/// shapes as [`super::attention_batch`]'s: `q` `(T, H·D)`, `out` `(T, H·Dv)`, each
/// sequence's new keys and values already stored. `scratch` holds per-thread buffers.
pub fn attention_q8<'c>(
    pool: &ThreadPool,
    p: &AttnParams,
    q: &[f32],
    spans: &[AttnSpan],
    kv: &(dyn Fn(usize) -> Q8Cache<'c> + Sync),
    out: &mut [f32],
    scratch: &mut Vec<Vec<f32>>,
) {
    let (h, hkv, d, dv) = (p.n_head, p.n_head_kv, p.head_dim, p.head_dim_v);
    assert!(Q8Layout::supports(d, dv) && h.is_multiple_of(hkv));
    let group = h / hkv;
    let mut most_pos = 0;
    let mut n_rows = 0;
    for (s, span) in spans.iter().enumerate() {
        let c = kv(s);
        assert_eq!(
            (c.layout.n_head_kv, c.layout.head_dim, c.layout.head_dim_v),
            (hkv, d, dv),
            "cache of another shape"
        );
        assert!(span.pos0 + span.n_rows <= c.layout.n_ctx);
        assert!(c.k.len() >= c.layout.k_bytes() && c.v.len() >= c.layout.v_bytes());
        assert!(q.len() >= (span.row0 + span.n_rows) * h * d);
        assert!(out.len() >= (span.row0 + span.n_rows) * h * dv);
        most_pos = most_pos.max((span.pos0 + span.n_rows).next_multiple_of(TILE));
        n_rows += span.n_rows;
    }
    // Jobs: (row, key/value head, chunk of its query heads); a single query splits its
    // heads further so that every thread has work.
    let n_threads = pool.n_threads();
    let mut chunks = group.div_ceil(MAX_HEADS);
    while n_rows * hkv * chunks < n_threads && chunks < group {
        chunks += 1;
    }
    let per_chunk = group.div_ceil(chunks);
    let chunks = group.div_ceil(per_chunk);
    let jobs_per_row = hkv * chunks;
    let per_thread = per_chunk * most_pos + per_chunk * dv;
    scratch.resize_with(n_threads, Vec::new);
    for s in scratch.iter_mut() {
        s.resize(per_thread, 0.0);
    }
    let scratch_ptr = super::SharedScratch(scratch.as_mut_ptr());
    let out_ptr = super::SharedOut(out.as_mut_ptr());
    let path = x86::path();
    pool.for_claimed_chunks_on(n_rows * jobs_per_row, &|thread, jobs| {
        let (scratch_ptr, out_ptr) = (&scratch_ptr, &out_ptr);
        // SAFETY: thread `thread` uses only `scratch[thread]`; the outer vector is not
        // resized while the pool runs.
        let buf = unsafe { &mut *scratch_ptr.0.add(thread) };
        let mut qblocks = [QueryBlock::default(); MAX_HEADS * MAX_HEAD / QB];
        let mut rotated = [0f32; MAX_HEAD];
        for job in jobs {
            let (row_job, rest) = (job / jobs_per_row, job % jobs_per_row);
            let (g, chunk) = (rest / chunks, rest % chunks);
            let (mut seq, mut first) = (0, 0);
            while row_job >= first + spans[seq].n_rows {
                first += spans[seq].n_rows;
                seq += 1;
            }
            let span = spans[seq];
            let t = row_job - first;
            let (row, pos) = (span.row0 + t, span.pos0 + t);
            let lo = window_start(p, pos);
            let heads = chunk * per_chunk..((chunk + 1) * per_chunk).min(group);
            let nh = heads.len();
            let cache = kv(seq);
            let (tile0, tile1) = (lo / TILE, pos / TILE);
            let n_pos = (tile1 + 1 - tile0) * TILE;
            let (scores, acc) = buf.split_at_mut(per_chunk * most_pos);
            let kb = d / QB;
            assert!(nh * kb <= qblocks.len(), "too many query blocks per job");
            for (i, head) in heads.clone().enumerate() {
                let hq = g * group + head;
                let rotated = &mut rotated[..d];
                rotated.copy_from_slice(&q[(row * h + hq) * d..][..d]);
                rotate(rotated, cache.layout.k_rotation());
                quantize_query(rotated, &mut qblocks[i * kb..][..kb]);
            }
            let scores = &mut scores[..nh * n_pos];
            let (tiles, qb) = (tile0..tile1 + 1, &qblocks[..nh * kb]);
            match path {
                // SAFETY: `path()` confirmed the instructions; the layout was checked against
                // the buffers above.
                #[cfg(target_arch = "x86_64")]
                Path::Avx512 => unsafe { x86::scores(&cache, g, tiles, qb, nh, scores) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Path::Avx2 => unsafe { x86::scores_avx2(&cache, g, tiles, qb, nh, scores) },
                _ => scores_portable(&cache, g, tiles, qb, nh, scores),
            }
            // The positions lo..=pos the query sees, counted from the first tile's start;
            // the others are masked.
            let first = tile0 * TILE;
            let live = lo - first..pos + 1 - first;
            for s in scores.chunks_exact_mut(n_pos) {
                let s = &mut s[live.clone()];
                s.iter_mut().for_each(|x| *x *= p.scale);
                softmax_ggml_isa(s, GgmlIsa::Avx2);
            }
            let acc = &mut acc[..nh * dv];
            acc.fill(0.0);
            let sums = ValueSums {
                cache: &cache,
                g,
                first,
                probs: scores,
                n_pos,
                live,
                nh,
            };
            match path {
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Path::Avx512 => unsafe { x86::values(&sums, acc) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                Path::Avx2 => unsafe { x86::values_avx2(&sums, acc) },
                _ => values_portable(&sums, acc),
            }
            for (i, head) in heads.enumerate() {
                let hq = g * group + head;
                // SAFETY: each (row, query head) is one job's, so its Dv outputs are written
                // by this thread alone, inside `out` (checked above).
                let o = unsafe {
                    std::slice::from_raw_parts_mut(out_ptr.0.add((row * h + hq) * dv), dv)
                };
                o.copy_from_slice(&acc[i * dv..][..dv]);
                // Back from the values' rotation.
                rotate(o, cache.layout.v_rotation());
            }
        }
    });
}

/// Which kernels this CPU runs: AVX-512 VNNI; AVX2 (its own scores, the portable value
/// loops compiled for AVX2 and FMA); or the portable loops. All give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Path {
    Avx512,
    Avx2,
    Portable,
}

/// Scores of tiles `tiles` of head `g` for `nh` quantized query heads (`qb`: each head's
/// blocks in turn), unscaled, into `scores[i·n_pos + (tile − first)·16 + lane]`.
#[inline(always)]
fn scores_portable(
    c: &Q8Cache<'_>,
    g: usize,
    tiles: std::ops::Range<usize>,
    qb: &[QueryBlock],
    nh: usize,
    scores: &mut [f32],
) {
    let l = &c.layout;
    let kb = l.k_blocks();
    let n_pos = tiles.len() * TILE;
    assert!(nh <= MAX_HEADS);
    for (ti, tile) in tiles.enumerate() {
        let mut s = [[0f32; TILE]; MAX_HEADS];
        for b in 0..kb {
            let blk = &c.k[l.k_at(g, tile, b)..][..K_TILE_BLOCK];
            let mut dk = [0f32; TILE];
            let scales: [f16; TILE] =
                std::array::from_fn(|lane| f16::from_le_bytes([blk[2 * lane], blk[2 * lane + 1]]));
            scales.convert_to_f32_slice(&mut dk);
            for (i, s) in s.iter_mut().enumerate().take(nh) {
                let qbk = &qb[i * kb + b];
                let mut isum = [qbk.bias; TILE];
                for (col, w) in qbk.words.iter().enumerate() {
                    let column = &blk[TILE * 2 + col * TILE * 4..][..TILE * 4];
                    let w = w.to_le_bytes().map(|x| x as i8 as i32);
                    for (isum, k) in isum.iter_mut().zip(column.chunks_exact(4)) {
                        *isum += k[0] as i32 * w[0]
                            + k[1] as i32 * w[1]
                            + k[2] as i32 * w[2]
                            + k[3] as i32 * w[3];
                    }
                }
                for ((s, &dk), &isum) in s.iter_mut().zip(&dk).zip(&isum) {
                    *s = (dk * qbk.d).mul_add(isum as f32, *s);
                }
            }
        }
        for (i, s) in s.iter().enumerate().take(nh) {
            scores[i * n_pos + ti * TILE..][..TILE].copy_from_slice(s);
        }
    }
}

/// One job's weighted value sums: for its `nh` query heads of key/value head `g`,
/// `acc[i·Dv..][..Dv] = Σ_k probs[i·n_pos + k] · v_{first + k}` over `k` in `live`.
struct ValueSums<'a, 'c> {
    cache: &'a Q8Cache<'c>,
    g: usize,
    /// The position of column 0 of `probs` (the first tile's start).
    first: usize,
    probs: &'a [f32],
    n_pos: usize,
    live: std::ops::Range<usize>,
    nh: usize,
}

impl ValueSums<'_, '_> {
    /// Panics unless the job lies inside its cache and buffers (`acc` of `Dv` per head).
    fn check(&self, acc: &[f32]) {
        let l = &self.cache.layout;
        assert!(self.nh <= MAX_HEADS && acc.len() >= self.nh * l.head_dim_v);
        assert!(self.probs.len() >= self.nh * self.n_pos && self.live.end <= self.n_pos);
        assert!(self.first + self.live.end <= l.n_ctx && self.g < l.n_head_kv);
        assert!(self.cache.v.len() >= l.v_bytes());
    }
}

/// [`ValueSums`] into `acc` (zeroed by the caller), position by position.
#[inline(always)]
fn values_portable(job: &ValueSums<'_, '_>, acc: &mut [f32]) {
    job.check(acc);
    let l = &job.cache.layout;
    let dv = l.head_dim_v;
    for k in job.live.clone() {
        let row = &job.cache.v[l.v_at(job.g, job.first + k)..][..l.v_blocks() * V_BLOCK];
        for (b, blk) in row.chunks_exact(V_BLOCK).enumerate() {
            let dvb = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            let mut w = [0f32; QB];
            for (w, &x) in w.iter_mut().zip(&blk[2..]) {
                *w = dvb * x as i8 as f32;
            }
            for i in 0..job.nh {
                let p = job.probs[i * job.n_pos + k];
                let a = &mut acc[i * dv + b * QB..][..QB];
                for (a, &w) in a.iter_mut().zip(&w) {
                    *a = p.mul_add(w, *a);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// The kernels this CPU runs (`HUARIZO_NO_SIMD` asks for the portable loops).
    pub(super) fn path() -> Path {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        if crate::simd_disabled() || !avx2 {
            Path::Portable
        } else if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
        {
            Path::Avx512
        } else {
            Path::Avx2
        }
    }

    /// [`scores_portable`] with AVX2: eight positions at a time, each column's products
    /// formed as `|q| · sign(k, q)` by `vpmaddubsw` (no overflow: both are within ±127)
    /// and summed to 32 bits by `vpmaddwd`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `c`'s buffers must hold its layout.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn scores_avx2(
        c: &Q8Cache<'_>,
        g: usize,
        tiles: std::ops::Range<usize>,
        qb: &[QueryBlock],
        nh: usize,
        scores: &mut [f32],
    ) {
        let l = &c.layout;
        let kb = l.k_blocks();
        let n_pos = tiles.len() * TILE;
        assert!(nh <= MAX_HEADS && qb.len() >= nh * kb && scores.len() >= nh * n_pos);
        assert!(c.k.len() >= l.k_bytes() && tiles.end <= l.n_tiles() && g < l.n_head_kv);
        let (flip, ones) = (_mm256_set1_epi8(-128), _mm256_set1_epi16(1));
        for (ti, tile) in tiles.enumerate() {
            for half in 0..2 {
                let mut s = [_mm256_setzero_ps(); MAX_HEADS];
                for b in 0..kb {
                    // SAFETY: the block lies inside the key buffer (its layout was checked).
                    let blk = unsafe { c.k.as_ptr().add(l.k_at(g, tile, b)) };
                    // SAFETY: the 8 scales of this half.
                    let dk = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(blk.add(16 * half).cast()) });
                    let mut cols = [_mm256_setzero_si256(); QB / 4];
                    for (col, v) in cols.iter_mut().enumerate() {
                        // SAFETY: this half of column `col`, 32 bytes inside the tile block.
                        let k = unsafe {
                            _mm256_loadu_si256(blk.add(TILE * 2 + col * 64 + 32 * half).cast())
                        };
                        *v = _mm256_xor_si256(k, flip);
                    }
                    for (i, s) in s.iter_mut().enumerate().take(nh) {
                        let qbk = &qb[i * kb + b];
                        let mut acc = _mm256_setzero_si256();
                        for (col, &k) in cols.iter().enumerate() {
                            let q = _mm256_set1_epi32(qbk.words[col]);
                            let p =
                                _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(k, q));
                            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
                        }
                        let scale = _mm256_mul_ps(dk, _mm256_set1_ps(qbk.d));
                        *s = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(acc), *s);
                    }
                }
                for (i, &s) in s.iter().enumerate().take(nh) {
                    let dst = &mut scores[i * n_pos + ti * TILE + 8 * half..][..8];
                    // SAFETY: 8 floats inside `scores` (checked above).
                    unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), s) };
                }
            }
        }
    }

    /// [`values_portable`] compiled for AVX2 and FMA.
    ///
    /// # Safety
    /// As [`scores_avx2`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn values_avx2(job: &ValueSums<'_, '_>, acc: &mut [f32]) {
        values_portable(job, acc)
    }

    /// [`scores_portable`] with `vpdpbusd`: one tile block's 8 columns loaded once for all
    /// heads, each head's 16 scores in one register.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VNNI, FMA and F16C; `c`'s buffers must hold its layout.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma,f16c")]
    pub(super) unsafe fn scores(
        c: &Q8Cache<'_>,
        g: usize,
        tiles: std::ops::Range<usize>,
        qb: &[QueryBlock],
        nh: usize,
        scores: &mut [f32],
    ) {
        let l = &c.layout;
        let kb = l.k_blocks();
        let n_pos = tiles.len() * TILE;
        assert!(nh <= MAX_HEADS && qb.len() >= nh * kb && scores.len() >= nh * n_pos);
        assert!(c.k.len() >= l.k_bytes() && tiles.end <= l.n_tiles() && g < l.n_head_kv);
        for (ti, tile) in tiles.enumerate() {
            let mut s = [_mm512_setzero_ps(); MAX_HEADS];
            for b in 0..kb {
                // SAFETY: the block lies inside the key buffer (its layout was checked).
                let blk = unsafe { c.k.as_ptr().add(l.k_at(g, tile, b)) };
                let dk = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(blk.cast()) });
                let mut cols = [_mm512_setzero_si512(); QB / 4];
                for (col, v) in cols.iter_mut().enumerate() {
                    // SAFETY: column `col` is 64 bytes inside the tile block.
                    *v = unsafe { _mm512_loadu_si512(blk.add(TILE * 2 + col * 64).cast()) };
                }
                for (i, s) in s.iter_mut().enumerate().take(nh) {
                    let qbk = &qb[i * kb + b];
                    let mut acc = _mm512_set1_epi32(qbk.bias);
                    for (col, &v) in cols.iter().enumerate() {
                        acc = _mm512_dpbusd_epi32(acc, v, _mm512_set1_epi32(qbk.words[col]));
                    }
                    let scale = _mm512_mul_ps(dk, _mm512_set1_ps(qbk.d));
                    *s = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(acc), *s);
                }
            }
            for (i, &s) in s.iter().enumerate().take(nh) {
                let dst = &mut scores[i * n_pos + ti * TILE..][..TILE];
                // SAFETY: 16 floats inside `scores` (checked above).
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), s) };
            }
        }
    }

    /// [`values_portable`]: each position's dequantized values, `B` blocks of 32 elements at
    /// a time, widened once and added to every head's registers. More blocks per pass read
    /// each value row in fewer, longer pieces (Gemma's 256-wide heads: 2 passes, not 8).
    ///
    /// # Safety
    /// As [`scores`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma,f16c")]
    pub(super) unsafe fn values(job: &ValueSums<'_, '_>, acc: &mut [f32]) {
        job.check(acc);
        let (vb, nh) = (job.cache.layout.v_blocks(), job.nh);
        let mut b = 0;
        while b < vb {
            // SAFETY: as this function's, with `b + B ≤ vb`.
            unsafe {
                if nh <= 2 && vb - b >= 4 {
                    values_pass::<4>(job, b, acc);
                    b += 4;
                } else if nh <= 4 && vb - b >= 2 {
                    values_pass::<2>(job, b, acc);
                    b += 2;
                } else {
                    values_pass::<1>(job, b, acc);
                    b += 1;
                }
            }
        }
    }

    /// Blocks `b0..b0 + B` of [`values`].
    ///
    /// # Safety
    /// As [`values`], whose checks cover it, with `b0 + B ≤` the blocks of a row.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma,f16c")]
    unsafe fn values_pass<const B: usize>(job: &ValueSums<'_, '_>, b0: usize, acc: &mut [f32]) {
        let l = &job.cache.layout;
        let dv = l.head_dim_v;
        assert!(b0 + B <= l.v_blocks());
        let mut a = [[[_mm512_setzero_ps(); 2]; B]; MAX_HEADS];
        for k in job.live.clone() {
            // SAFETY: position first + k < n_ctx (checked by `values`), so its row is inside
            // the value buffer.
            let row = unsafe {
                job.cache
                    .v
                    .as_ptr()
                    .add(l.v_at(job.g, job.first + k) + b0 * V_BLOCK)
            };
            for bb in 0..B {
                // SAFETY: block b0 + bb of the row: its scale and 32 bytes.
                let (scale, x0, x1) = unsafe {
                    let blk = row.add(bb * V_BLOCK);
                    (
                        u16::from_le_bytes([*blk, *blk.add(1)]),
                        _mm_loadu_si128(blk.add(2).cast()),
                        _mm_loadu_si128(blk.add(18).cast()),
                    )
                };
                let dvb = _mm512_cvtph_ps(_mm256_set1_epi16(scale as i16));
                let w0 = _mm512_mul_ps(dvb, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(x0)));
                let w1 = _mm512_mul_ps(dvb, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(x1)));
                for (i, a) in a.iter_mut().enumerate().take(job.nh) {
                    let p = _mm512_set1_ps(job.probs[i * job.n_pos + k]);
                    a[bb][0] = _mm512_fmadd_ps(p, w0, a[bb][0]);
                    a[bb][1] = _mm512_fmadd_ps(p, w1, a[bb][1]);
                }
            }
        }
        for (i, a) in a.iter().enumerate().take(job.nh) {
            for (bb, a) in a.iter().enumerate() {
                let dst = &mut acc[i * dv + (b0 + bb) * QB..][..QB];
                // SAFETY: 32 floats inside `acc` (checked by `values`).
                unsafe {
                    _mm512_storeu_ps(dst.as_mut_ptr(), a[0]);
                    _mm512_storeu_ps(dst.as_mut_ptr().add(16), a[1]);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use super::*;

    pub(super) fn path() -> Path {
        Path::Portable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [−1, 1) (`seed` > 0).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::tests::Rng(seed);
        (0..n).map(|_| rng.f32()).collect()
    }

    struct Case {
        p: AttnParams,
        layout: Q8Layout,
        k: Vec<u8>,
        v: Vec<u8>,
        keys: Vec<f32>,
        vals: Vec<f32>,
    }

    fn case(
        hkv: usize,
        group: usize,
        d: usize,
        n_ctx: usize,
        n_pos: usize,
        window: Option<usize>,
    ) -> Case {
        let p = AttnParams {
            n_head: hkv * group,
            n_head_kv: hkv,
            head_dim: d,
            head_dim_v: d,
            scale: 1.0 / (d as f32).sqrt(),
            window,
        };
        let layout = Q8Layout {
            n_ctx,
            n_head_kv: hkv,
            head_dim: d,
            head_dim_v: d,
        };
        let (mut k, mut v) = (vec![0u8; layout.k_bytes()], vec![0u8; layout.v_bytes()]);
        let keys = values(n_pos * hkv * d, 1);
        let vals = values(n_pos * hkv * d, 2);
        for j in 0..n_pos {
            store_k(&layout, &mut k, j, &keys[j * hkv * d..][..hkv * d]);
            store_v(&layout, &mut v, j, &vals[j * hkv * d..][..hkv * d]);
        }
        Case {
            p,
            layout,
            k,
            v,
            keys,
            vals,
        }
    }

    fn run(c: &Case, q: &[f32], spans: &[AttnSpan], threads: usize) -> Vec<f32> {
        let rows: usize = spans.iter().map(|s| s.row0 + s.n_rows).max().unwrap();
        let mut out = vec![0f32; rows * c.p.n_head * c.p.head_dim_v];
        let cache = Q8Cache {
            layout: c.layout,
            k: &c.k,
            v: &c.v,
        };
        attention_q8(
            &ThreadPool::new(threads),
            &c.p,
            q,
            spans,
            &|_| cache,
            &mut out,
            &mut Vec::new(),
        );
        out
    }

    /// The documented arithmetic in f64 on the dequantized cache and quantized query.
    fn reference(c: &Case, q: &[f32], row: usize, pos: usize) -> Vec<f64> {
        let (h, hkv, d) = (c.p.n_head, c.p.n_head_kv, c.p.head_dim);
        let deq = |x: &[f32], n: usize| -> Vec<f64> {
            let mut x = x.to_vec();
            rotate(&mut x, n);
            x.chunks_exact(QB)
                .flat_map(|b| {
                    let (s, q) = quantize_block(b);
                    q.map(|v| v as f64 * s.to_f32() as f64)
                })
                .collect()
        };
        let lo = window_start(&c.p, pos);
        let mut out = Vec::new();
        for hq in 0..h {
            let g = hq / (h / hkv);
            let (kr, vr) = (c.layout.k_rotation(), c.layout.v_rotation());
            let qd = deq(&q[(row * h + hq) * d..][..d], kr);
            let scores: Vec<f64> = (lo..=pos)
                .map(|j| {
                    let kd = deq(&c.keys[(j * hkv + g) * d..][..d], kr);
                    kd.iter().zip(&qd).map(|(a, b)| a * b).sum::<f64>() * c.p.scale as f64
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = e.iter().sum();
            let mut o = vec![0f64; d];
            for (n, j) in (lo..=pos).enumerate() {
                let vd = deq(&c.vals[(j * hkv + g) * d..][..d], vr);
                for (o, x) in o.iter_mut().zip(&vd) {
                    *o += e[n] / z * x;
                }
            }
            // Back from the values' rotation, in f64.
            if vr > 0 {
                let r = hadamard(vr);
                for chunk in o.chunks_exact_mut(vr) {
                    let x = chunk.to_vec();
                    for (i, y) in chunk.iter_mut().enumerate() {
                        *y = (0..vr).map(|k| r[i * vr + k] * x[k]).sum();
                    }
                }
            }
            out.extend(o);
        }
        out
    }

    /// The orthonormal Sylvester–Hadamard matrix of order n, row-major, in f64.
    fn hadamard(n: usize) -> Vec<f64> {
        let mut m = vec![1f64];
        let mut s = 1;
        while s < n {
            let mut next = vec![0f64; 4 * s * s];
            for i in 0..s {
                for j in 0..s {
                    let v = m[i * s + j];
                    next[i * 2 * s + j] = v;
                    next[i * 2 * s + j + s] = v;
                    next[(i + s) * 2 * s + j] = v;
                    next[(i + s) * 2 * s + j + s] = -v;
                }
            }
            m = next;
            s *= 2;
        }
        let scale = 1.0 / (n as f64).sqrt();
        m.iter().map(|v| v * scale).collect()
    }

    #[test]
    fn the_rotation_is_the_orthonormal_hadamard_matrix_and_its_own_inverse() {
        for n in [64, 128, 256] {
            let x = values(2 * n, 7);
            let mut y = x.clone();
            rotate(&mut y, n);
            let m = hadamard(n);
            for (c, (xc, yc)) in x.chunks_exact(n).zip(y.chunks_exact(n)).enumerate() {
                for i in 0..n {
                    let want: f64 = (0..n).map(|k| m[i * n + k] * xc[k] as f64).sum();
                    assert!(
                        (yc[i] as f64 - want).abs() < 1e-5,
                        "n {n} chunk {c} row {i}"
                    );
                }
            }
            rotate(&mut y, n);
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < 1e-5);
            }
        }
        assert_eq!(
            [rotation(64, true), rotation(256, true), rotation(96, true)],
            [64, 256, 0]
        );
        assert_eq!([rotation(256, false), rotation(32, false)], [64, 0]);
    }

    #[test]
    fn single_queries_match_the_f64_reference() {
        for (hkv, group, d, n_pos, window) in [
            (2, 7, 64, 70, None),
            (1, 4, 256, 33, None),
            (3, 3, 64, 100, Some(40)),
            (2, 9, 32, 17, None),
        ] {
            let c = case(hkv, group, d, 128, n_pos, window);
            let q = values(hkv * group * d, 3);
            let pos = n_pos - 1;
            let span = AttnSpan {
                row0: 0,
                n_rows: 1,
                pos0: pos,
                order_rows: 1,
            };
            let got = run(&c, &q, &[span], 2);
            let want = reference(&c, &q, 0, pos);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() < 2e-5,
                    "d {d} hkv {hkv} element {i}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn a_row_gets_the_same_bits_alone_batched_and_on_any_thread_count() {
        let c = case(2, 3, 64, 96, 80, Some(50));
        let (h, d) = (6, 64);
        // Two sequences' rows in one call: 30 rows from position 50, then 20 from 60 (the
        // same cache serves both).
        let q = values(50 * h * d, 4);
        let spans = [
            AttnSpan {
                row0: 0,
                n_rows: 30,
                pos0: 50,
                order_rows: 30,
            },
            AttnSpan {
                row0: 30,
                n_rows: 20,
                pos0: 60,
                order_rows: 20,
            },
        ];
        let batched = run(&c, &q, &spans, 2);
        assert_eq!(batched, run(&c, &q, &spans, 1));
        for (row, pos) in [(0, 50), (29, 79), (30, 60), (49, 79)] {
            let one = AttnSpan {
                row0: 0,
                n_rows: 1,
                pos0: pos,
                order_rows: 1,
            };
            let alone = run(&c, &q[row * h * d..][..h * d], &[one], 2);
            assert_eq!(&batched[row * h * d..][..h * d], &alone[..], "row {row}");
        }
    }

    /// The portable loops give the vector kernels' bits, for passes of 1, 2 and 4 value
    /// blocks (7, 3 and 2 heads per job).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_portable_loops_give_the_vector_kernels_bits() {
        if x86::path() != Path::Avx512 {
            return;
        }
        for (hkv, nh, d) in [(2, 7, 64), (2, 3, 64), (1, 2, 256)] {
            let c = case(hkv, nh, d, 96, 80, None);
            let cache = Q8Cache {
                layout: c.layout,
                k: &c.k,
                v: &c.v,
            };
            let (kb, n_pos) = (d / QB, 96);
            let q = values(nh * d, 4);
            let mut qb = vec![QueryBlock::default(); nh * kb];
            for i in 0..nh {
                let mut r = q[i * d..][..d].to_vec();
                rotate(&mut r, c.layout.k_rotation());
                quantize_query(&r, &mut qb[i * kb..][..kb]);
            }
            let (mut a, mut b) = (vec![0f32; nh * n_pos], vec![0f32; nh * n_pos]);
            scores_portable(&cache, hkv - 1, 0..6, &qb, nh, &mut a);
            // SAFETY: `path()` confirmed the instructions.
            unsafe { x86::scores(&cache, hkv - 1, 0..6, &qb, nh, &mut b) };
            assert_eq!(a, b, "scores, {nh} heads of {d}");
            let probs = values(nh * n_pos, 5);
            let (mut va, mut vb) = (vec![0f32; nh * d], vec![0f32; nh * d]);
            let sums = ValueSums {
                cache: &cache,
                g: hkv - 1,
                first: 0,
                probs: &probs,
                n_pos,
                live: 5..80,
                nh,
            };
            values_portable(&sums, &mut va);
            // SAFETY: as above.
            unsafe { x86::values(&sums, &mut vb) };
            assert_eq!(va, vb, "values, {nh} heads of {d}");
            vb.fill(0.0);
            // SAFETY: an AVX-512 CPU has AVX2, FMA and F16C.
            unsafe {
                x86::scores_avx2(&cache, hkv - 1, 0..6, &qb, nh, &mut b);
                x86::values_avx2(&sums, &mut vb);
            }
            assert_eq!((a, va), (b, vb), "AVX2, {nh} heads of {d}");
        }
    }

    #[test]
    fn a_copied_prefix_reads_as_the_original() {
        let c = case(2, 2, 64, 64, 40, None);
        let small = Q8Layout {
            n_ctx: 48,
            ..c.layout
        };
        let (mut k, mut v) = (vec![0u8; small.k_bytes()], vec![0u8; small.v_bytes()]);
        copy_prefix(&small, (&mut k, &mut v), &c.layout, (&c.k, &c.v), 37);
        let q = values(4 * 64, 6);
        let span = AttnSpan {
            row0: 0,
            n_rows: 1,
            pos0: 36,
            order_rows: 1,
        };
        let copied = Case {
            layout: small,
            k,
            v,
            keys: Vec::new(),
            vals: Vec::new(),
            p: c.p,
        };
        assert_eq!(run(&c, &q, &[span], 1), run(&copied, &q, &[span], 1));
    }
}
