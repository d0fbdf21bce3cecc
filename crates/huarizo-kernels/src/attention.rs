//! Causal multi-head attention over an f16 KV cache, with grouped-query heads and an
//! optional sliding window.
//!
//! Arithmetic follows ggml's CPU path without flash attention, as the llama.cpp build that
//! huarizo follows runs it ([`crate::isa`]): q is rounded to f16 and dotted with f16 keys in
//! the f16 GEMM's lanes (16 on AVX-512, 8 on AVX2), the scores are scaled, masked and
//! soft-maxed ([`softmax_ggml_isa`]), the probabilities are rounded to f16 and dotted with
//! f16 values in lanes by position.
//!
//! Shapes: T query tokens, H query heads, Hkv key/value heads, D key width, Dv value width,
//! N cached positions.

mod decode;
pub mod q8;

use crate::isa::{ggml_isa, GgmlIsa};
use crate::ops::{reduce_add16, reduce_add8, softmax_ggml_isa, GGML_LANES};
use crate::pool::ThreadPool;
use half::f16;
use half::slice::HalfFloatSliceExt;

/// The fixed parameters of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnParams {
    /// Query heads H.
    pub n_head: usize,
    /// Key/value heads Hkv (H is a multiple of it).
    pub n_head_kv: usize,
    /// Key (and query) head width D.
    pub head_dim: usize,
    /// Value head width Dv.
    pub head_dim_v: usize,
    /// Multiplier of q·k.
    pub scale: f32,
    /// A query at position p sees keys at positions > p − window (sliding-window layers).
    pub window: Option<usize>,
}

struct SharedOut(*mut f32);
struct SharedScratch(*mut Vec<f32>);
// SAFETY: each pool thread touches only its own element.
unsafe impl Sync for SharedScratch {}
// SAFETY: each (token, head) pair writes only its own Dv-long slice of the output.
unsafe impl Sync for SharedOut {}

/// Computes attention for T queries at positions `pos0..pos0+T`.
///
/// `q` is `(T, H·D)`; `k_cache` is `(N, Hkv·D)` and `v_cache` `(N, Hkv·Dv)` with
/// `N ≥ pos0 + T` (the new keys already stored); `out` is `(T, H·Dv)`.
/// `scratch` holds one score buffer per pool thread (resized here).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    pool: &ThreadPool,
    p: &AttnParams,
    q: &[f32],
    pos0: usize,
    k_cache: &[f16],
    v_cache: &[f16],
    out: &mut [f32],
    scratch: &mut Vec<Vec<f32>>,
) {
    let n_rows = q.len() / (p.n_head * p.head_dim);
    let span = AttnSpan {
        row0: 0,
        n_rows,
        pos0,
        order_rows: n_rows,
    };
    attention_batch(pool, p, q, &[span], &|_| (k_cache, v_cache), out, scratch);
}

/// One sequence's rows in a batched attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnSpan {
    /// First row of `q` and `out` that belongs to the sequence.
    pub row0: usize,
    /// Its query rows (tokens).
    pub n_rows: usize,
    /// Position of its first query.
    pub pos0: usize,
    /// The query rows of the batch llama.cpp would have computed these in (`n_rows` when
    /// that is this batch): a single query and a batch sum in different orders.
    pub order_rows: usize,
}

/// [`attention`] for several sequences at once, in one pass of the pool: sequence `s` owns
/// rows `spans[s].row0..+n_rows` of `q` and `out`, and `kv(s)` gives its key and value
/// caches. Each sequence computes exactly what [`attention`] computes for it alone.
pub fn attention_batch<'c>(
    pool: &ThreadPool,
    p: &AttnParams,
    q: &[f32],
    spans: &[AttnSpan],
    kv: &(dyn Fn(usize) -> (&'c [f16], &'c [f16]) + Sync),
    out: &mut [f32],
    scratch: &mut Vec<Vec<f32>>,
) {
    attention_batch_as(pool, p, q, spans, kv, out, scratch, ggml_isa(), simd());
}

/// Positions per block of transposed keys (one f32 lane each).
const KEY_BLOCK: usize = 16;

/// Where a span's keys sit in the transposed-key buffer: blocks `first..end` of
/// [`KEY_BLOCK`] positions, for every key/value head, from `offset` on.
#[derive(Clone, Copy)]
struct KeyBlocks {
    offset: usize,
    first: usize,
    end: usize,
}

impl KeyBlocks {
    fn len(self) -> usize {
        self.end - self.first
    }
}

/// Whether a span summed in `order` takes the blocked path: keys transposed once per call
/// so that one pass of vector instructions yields [`KEY_BLOCK`] scores, and the weighted
/// values summed in registers. Only the batch (GEMM) orders have few enough value slots.
fn takes_blocks(order: SumOrder, d: usize, dv: usize) -> bool {
    matches!(order, SumOrder::Gemm(_)) && d.is_multiple_of(order.slots()) && dv.is_multiple_of(8)
}

/// [`attention_batch`] in the summation orders of build `isa`, with the blocked path when
/// `blocks` (both paths give the same bits).
#[allow(clippy::too_many_arguments)]
fn attention_batch_as<'c>(
    pool: &ThreadPool,
    p: &AttnParams,
    q: &[f32],
    spans: &[AttnSpan],
    kv: &(dyn Fn(usize) -> (&'c [f16], &'c [f16]) + Sync),
    out: &mut [f32],
    scratch: &mut Vec<Vec<f32>>,
    isa: GgmlIsa,
    blocks: bool,
) {
    if blocks && decode::applies(p, spans, isa) {
        return decode::decode(pool, p, q, spans, kv, out, scratch);
    }
    let (h, hkv, d, dv) = (p.n_head, p.n_head_kv, p.head_dim, p.head_dim_v);
    let n_threads = pool.n_threads();
    let mut per_thread = 0;
    let mut n_key_floats = 0;
    for (s, span) in spans.iter().enumerate() {
        let n_kv = span.pos0 + span.n_rows;
        let (k_cache, v_cache) = kv(s);
        assert!(k_cache.len() >= n_kv * hkv * d && v_cache.len() >= n_kv * hkv * dv);
        assert!(q.len() >= (span.row0 + span.n_rows) * h * d);
        assert!(out.len() >= (span.row0 + span.n_rows) * h * dv);
        let order = SumOrder::for_rows(span.order_rows, isa);
        per_thread = per_thread.max(n_kv.next_multiple_of(VECDOT_STEP) + d + order.slots() * dv);
        if blocks && takes_blocks(order, d, dv) {
            n_key_floats += hkv * key_blocks(p, span, 0).len() * d * KEY_BLOCK;
        }
    }
    let group = h / hkv;
    // One score buffer per thread, then the transposed keys shared by all.
    scratch.resize_with(n_threads + 1, Vec::new);
    for s in scratch[..n_threads].iter_mut() {
        s.resize(per_thread, 0.0);
    }
    if scratch[n_threads].len() < n_key_floats {
        scratch[n_threads].resize(n_key_floats, 0.0);
    }
    let block_of = |s: usize, offset: usize| {
        let order = SumOrder::for_rows(spans[s].order_rows, isa);
        (blocks && takes_blocks(order, d, dv)).then(|| key_blocks(p, &spans[s], offset))
    };
    let scratch_ptr = SharedScratch(scratch.as_mut_ptr());
    if n_key_floats > 0 {
        // Transpose the keys: block b of head g holds, for each of the D key elements,
        // the KEY_BLOCK positions of the block side by side (0 past the cache's end).
        let n_jobs: usize = (0..spans.len())
            .filter_map(|s| block_of(s, 0))
            .map(|b| b.len() * hkv)
            .sum();
        pool.run(&|thread| {
            let scratch_ptr = &scratch_ptr;
            // SAFETY: thread `thread` uses only `scratch[thread]` and the blocks of its
            // jobs in `scratch[n_threads]`; the outer vector is not resized meanwhile.
            let (tmp, keys) = unsafe {
                (
                    &mut *scratch_ptr.0.add(thread),
                    (*scratch_ptr.0.add(n_threads)).as_mut_ptr(),
                )
            };
            let (mut s, mut base, mut offset) = (0, 0, 0);
            for job in (thread..n_jobs).step_by(n_threads) {
                let kb = loop {
                    match block_of(s, offset) {
                        Some(kb) if job < base + kb.len() * hkv => break kb,
                        Some(kb) => {
                            base += kb.len() * hkv;
                            offset += kb.len() * hkv * d * KEY_BLOCK;
                        }
                        None => {}
                    }
                    s += 1;
                };
                let (g, b) = ((job - base) / kb.len(), (job - base) % kb.len());
                let n_kv = spans[s].pos0 + spans[s].n_rows;
                let k_cache = kv(s).0;
                // SAFETY: each (span, head, block) job owns its D·KEY_BLOCK floats, which
                // lie inside the buffer sized above.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        keys.add(kb.offset + (g * kb.len() + b) * d * KEY_BLOCK),
                        d * KEY_BLOCK,
                    )
                };
                let row = &mut tmp[..d];
                for lane in 0..KEY_BLOCK {
                    let pos = (kb.first + b) * KEY_BLOCK + lane;
                    if pos < n_kv {
                        k_cache[(pos * hkv + g) * d..][..d].convert_to_f32_slice(row);
                    } else {
                        row.fill(0.0);
                    }
                    for (i, &x) in row.iter().enumerate() {
                        dst[i * KEY_BLOCK + lane] = x;
                    }
                }
            }
        });
    }
    let out_ptr = SharedOut(out.as_mut_ptr());
    let n_jobs: usize = spans.iter().map(|s| s.n_rows * h).sum();
    // Jobs claimed piece by piece (later tokens attend to more positions, and a worker may
    // start late): a job's result does not depend on its thread.
    pool.for_claimed_chunks_on(n_jobs, &|thread, jobs| {
        let (out_ptr, scratch_ptr) = (&out_ptr, &scratch_ptr);
        // SAFETY: thread `thread` uses only `scratch[thread]` and reads the shared keys
        // written by the pass above; the outer vector is not resized while the pool runs.
        let (buf, keys): (&mut Vec<f32>, &[f32]) = unsafe {
            (
                &mut *scratch_ptr.0.add(thread),
                &*scratch_ptr.0.add(n_threads),
            )
        };
        // Jobs are numbered sequence by sequence; `seq`, `base` and `key_offset` follow
        // this piece's increasing job numbers.
        let (mut seq, mut base, mut key_offset) = (0, 0, 0);
        for job in jobs {
            while job >= base + spans[seq].n_rows * h {
                base += spans[seq].n_rows * h;
                if let Some(kb) = block_of(seq, key_offset) {
                    key_offset += kb.len() * hkv * d * KEY_BLOCK;
                }
                seq += 1;
            }
            let span = spans[seq];
            let (k_cache, v_cache) = kv(seq);
            // ggml computes a single query with its vector dot product and a batch with
            // its GEMM; the two sum in different orders, and huarizo follows whichever
            // llama.cpp would use.
            let order = SumOrder::for_rows(span.order_rows, isa);
            let slots = order.slots();
            let n_pad = (span.pos0 + span.n_rows).next_multiple_of(VECDOT_STEP);
            let (scores, rest) = buf.split_at_mut(n_pad);
            let (q16, rest) = rest.split_at_mut(d);
            let acc = &mut rest[..slots * dv];
            let (t, head) = ((job - base) / h, (job - base) % h);
            let row = span.row0 + t;
            let pos = span.pos0 + t;
            let kv_head = head / group;
            let lo = window_start(p, pos);
            q16.copy_from_slice(&q[(row * h + head) * d..][..d]);
            round_query_to_f16(q16, blocks);
            // Scores over the padded row of positions, masked positions at −∞.
            let row_scores = &mut scores[..(pos + 1).next_multiple_of(GGML_LANES)];
            // SAFETY: as below.
            let o =
                unsafe { std::slice::from_raw_parts_mut(out_ptr.0.add((row * h + head) * dv), dv) };
            match block_of(seq, key_offset) {
                #[cfg(target_arch = "x86_64")]
                Some(kb) => {
                    let head_keys = &keys[kb.offset + kv_head * kb.len() * d * KEY_BLOCK..]
                        [..kb.len() * d * KEY_BLOCK];
                    for b in lo / KEY_BLOCK..=pos / KEY_BLOCK {
                        let block = &head_keys[(b - kb.first) * d * KEY_BLOCK..][..d * KEY_BLOCK];
                        let dst = &mut row_scores[b * KEY_BLOCK..][..KEY_BLOCK];
                        // SAFETY: blocks are taken only where `simd()` confirmed AVX2, FMA
                        // and F16C.
                        unsafe { x86::block_scores(block, q16, order, p.scale, dst) };
                    }
                    row_scores[..lo].fill(f32::NEG_INFINITY);
                    row_scores[pos + 1..].fill(f32::NEG_INFINITY);
                }
                _ => {
                    for (j, s) in row_scores.iter_mut().enumerate() {
                        *s = if j < lo || j > pos {
                            f32::NEG_INFINITY
                        } else {
                            order.dot(&k_cache[(j * hkv + kv_head) * d..][..d], q16) * p.scale
                        };
                    }
                }
            }
            softmax_ggml_isa(row_scores, isa);
            // The probabilities as the f16 they are rounded to.
            let probs = &mut row_scores[lo..=pos];
            #[cfg(target_arch = "x86_64")]
            if blocks {
                // SAFETY: `blocks` is set only where `simd()` confirmed AVX2, FMA and F16C.
                unsafe { x86::round_to_f16(probs) };
                if dv.is_multiple_of(8) && matches!(order, SumOrder::Gemm(_)) {
                    let values = &v_cache[kv_head * dv..];
                    // SAFETY: as above.
                    unsafe { x86::weighted_values(values, hkv * dv, probs, lo, order, o) };
                    continue;
                }
            }
            if !blocks {
                for pr in probs.iter_mut() {
                    *pr = f16::from_f32(*pr).to_f32();
                }
            }
            // out[c] = Σ_j f16(p_j)·v_j[c], accumulated in the lanes the order assigns to j.
            // acc is (slots, Dv): slot-major so that one position updates a contiguous row.
            acc.fill(0.0);
            if cfg!(target_arch = "x86_64") && blocks && dv.is_multiple_of(64) {
                // Each (slot, element) chain in a register: the same fused multiply-adds.
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `blocks` is set only where `simd()` confirmed AVX2, FMA and F16C.
                unsafe {
                    x86::slot_sums(&v_cache[kv_head * dv..], hkv * dv, probs, lo, slots, acc)
                };
            } else {
                for (j, &pr) in probs.iter().enumerate() {
                    let j = lo + j;
                    if pr == 0.0 {
                        continue;
                    }
                    let slot = j % slots;
                    let value = &v_cache[(j * hkv + kv_head) * dv..][..dv];
                    axpy_f16(&mut acc[slot * dv..(slot + 1) * dv], value, pr);
                }
            }
            // SAFETY: job (row, head) owns out[(row·H + head)·Dv ..][..Dv]; jobs are
            // disjoint and rows of different sequences do not overlap.
            let mut lanes = [0f32; VECDOT_STEP];
            for (c, o) in o.iter_mut().enumerate() {
                for (slot, lane) in lanes[..slots].iter_mut().enumerate() {
                    *lane = acc[slot * dv + c];
                }
                *o = order.reduce(&lanes[..slots]);
            }
        }
    });
}

/// Rounds a query to f16 and back, as ggml converts it for the f16 products: eight values
/// at a time where `simd` (the blocked paths, which confirmed AVX2, FMA and F16C), else one
/// by one; the same bits either way.
fn round_query_to_f16(q: &mut [f32], simd: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is set only where `simd()` confirmed AVX2, FMA and F16C.
        return unsafe { x86::round_to_f16(q) };
    }
    let _ = simd;
    for v in q.iter_mut() {
        *v = f16::from_f32(*v).to_f32();
    }
}

/// The first position a query at `pos` sees (0 without a sliding window).
fn window_start(p: &AttnParams, pos: usize) -> usize {
    p.window.map_or(0, |w| (pos + 1).saturating_sub(w))
}

/// The key blocks span `span` needs (from its first row's window start to its last
/// position), placed at `offset`.
fn key_blocks(p: &AttnParams, span: &AttnSpan, offset: usize) -> KeyBlocks {
    let lo = window_start(p, span.pos0);
    KeyBlocks {
        offset,
        first: lo / KEY_BLOCK,
        end: (span.pos0 + span.n_rows).div_ceil(KEY_BLOCK),
    }
}

/// Most elements one step of ggml's f16 vector dot product consumes (AVX-512: 4 × 16
/// lanes; AVX2: 4 × 8).
const VECDOT_STEP: usize = 64;

/// The summation order of one of ggml's f16 dot-product kernels in a given build.
#[derive(Clone, Copy, Debug)]
enum SumOrder {
    /// The f16 GEMM (llamafile's tinyBLAS, used for two or more columns): one accumulator
    /// of the build's width, element i in lane i mod width, reduced as `_mm512_reduce_add_ps`
    /// (AVX-512) or tinyBLAS's `hsum` (AVX2).
    Gemm(GgmlIsa),
    /// `ggml_vec_dot_f16` (one column): four accumulators over steps of 4 × width, element
    /// i in slot i mod step, reduced by `GGML_F16_VEC_REDUCE`.
    VecDot(GgmlIsa),
}

impl SumOrder {
    /// The order llama.cpp (build `isa`) uses for a sequence with `n_rows` queries in the
    /// batch.
    fn for_rows(n_rows: usize, isa: GgmlIsa) -> SumOrder {
        if n_rows == 1 {
            SumOrder::VecDot(isa)
        } else {
            SumOrder::Gemm(isa)
        }
    }

    /// Accumulator slots (lanes × registers).
    fn slots(self) -> usize {
        match self {
            SumOrder::Gemm(isa) => isa.lanes(),
            SumOrder::VecDot(isa) => 4 * isa.lanes(),
        }
    }

    /// Reduces the slots of one accumulator to a value.
    fn reduce(self, acc: &[f32]) -> f32 {
        match self {
            SumOrder::Gemm(GgmlIsa::Avx512) => reduce_add16(acc[..16].try_into().expect("16")),
            SumOrder::Gemm(GgmlIsa::Avx2) => reduce_add8(acc[..8].try_into().expect("8")),
            SumOrder::VecDot(GgmlIsa::Avx512) => {
                let mut lanes = [0f32; 16];
                for (l, lane) in lanes.iter_mut().enumerate() {
                    let s02 = acc[l] + acc[32 + l];
                    let s13 = acc[16 + l] + acc[48 + l];
                    *lane = s02 + s13;
                }
                reduce_add16(&lanes)
            }
            SumOrder::VecDot(GgmlIsa::Avx2) => {
                // GGML_F32x8_REDUCE: x0+x2, x1+x3, then their sum; halves; two hadds.
                let c: [f32; 8] =
                    std::array::from_fn(|l| (acc[l] + acc[16 + l]) + (acc[8 + l] + acc[24 + l]));
                let t = [c[0] + c[4], c[1] + c[5], c[2] + c[6], c[3] + c[7]];
                (t[0] + t[1]) + (t[2] + t[3])
            }
        }
    }

    /// `Σ k[i]·q[i]` in this order (k's length is a multiple of the slots; a remainder is
    /// added in f64 as ggml's tail loop does).
    fn dot(self, k: &[f16], q: &[f32]) -> f32 {
        let slots = self.slots();
        let body = k.len() - k.len() % slots;
        #[cfg(target_arch = "x86_64")]
        if body == k.len() && simd() {
            // SAFETY: `simd()` confirmed AVX2, FMA and F16C.
            return unsafe { x86::dot_ordered(k, q, self) };
        }
        let mut acc = [0f32; VECDOT_STEP];
        lanes_f16(&k[..body], q, slots, &mut acc);
        let mut sum = f64::from(self.reduce(&acc[..slots]));
        for (&a, &b) in k[body..].iter().zip(&q[body..]) {
            sum += f64::from(a.to_f32() * b);
        }
        sum as f32
    }
}

/// Whether the AVX2/FMA/F16C paths below may run.
fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(crate::x86::detected)
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `acc[c] = fma(v[c], p, acc[c])` for every c.
fn axpy_f16(acc: &mut [f32], v: &[f16], p: f32) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: `simd()` confirmed AVX2, FMA and F16C.
        return unsafe { x86::axpy_f16(acc, v, p) };
    }
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = x.to_f32().mul_add(p, *a);
    }
}

/// Accumulates `k[i]·q[i]` into `acc[i mod slots]` by fused multiply-adds in order of i
/// (`k.len()` is a multiple of `slots`, which is 16 or 64).
fn lanes_f16(k: &[f16], q: &[f32], slots: usize, acc: &mut [f32; VECDOT_STEP]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: `simd()` confirmed AVX2, FMA and F16C.
        return unsafe { x86::lanes_f16(k, q, slots, acc) };
    }
    for (i, (&a, &b)) in k.iter().zip(q).enumerate() {
        let s = &mut acc[i % slots];
        *s = a.to_f32().mul_add(b, *s);
    }
}

/// AVX2 versions: the same fused multiply-adds per element, eight lanes at a time.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{SumOrder, KEY_BLOCK, VECDOT_STEP};
    use crate::isa::GgmlIsa;
    use half::f16;
    use std::arch::x86_64::*;

    /// Whether this CPU has AVX-512 F, for the 16-lane forms of the batch paths (the same
    /// lanes and operations as the 8-lane forms, which other CPUs run).
    pub(super) fn avx512() -> bool {
        static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| is_x86_feature_detected!("avx512f"))
    }

    /// See [`super::axpy_f16`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn axpy_f16(acc: &mut [f32], v: &[f16], p: f32) {
        let n = acc.len().min(v.len());
        let body = n - n % 8;
        let pv = _mm256_set1_ps(p);
        for i in (0..body).step_by(8) {
            // SAFETY: i + 8 <= n <= len of both slices; loads and stores are unaligned.
            unsafe {
                let x = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().add(i).cast()));
                let a = _mm256_loadu_ps(acc.as_ptr().add(i));
                _mm256_storeu_ps(acc.as_mut_ptr().add(i), _mm256_fmadd_ps(x, pv, a));
            }
        }
        for c in body..n {
            acc[c] = v[c].to_f32().mul_add(p, acc[c]);
        }
    }

    /// [`super::SumOrder::dot`] for a whole number of steps, accumulated and reduced in
    /// registers with the same fused multiply-adds and additions, in the same order, as
    /// [`super::lanes_f16`] and [`super::SumOrder::reduce`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_ordered(k: &[f16], q: &[f32], order: SumOrder) -> f32 {
        match order.slots() {
            8 => dot_regs::<1>(k, q, order),
            16 => dot_regs::<2>(k, q, order),
            32 => dot_regs::<4>(k, q, order),
            _ => dot_regs::<8>(k, q, order),
        }
    }

    /// [`dot_ordered`] with `R` eight-lane registers (slots = 8R): element i goes to lane
    /// i mod 8 of register (i / 8) mod R.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_regs<const R: usize>(k: &[f16], q: &[f32], order: SumOrder) -> f32 {
        let mut r = [_mm256_setzero_ps(); R];
        let step = 8 * R;
        let n = k.len().min(q.len()) / step * step;
        for i in (0..n).step_by(step) {
            for (g, reg) in r.iter_mut().enumerate() {
                // SAFETY: i + 8g + 8 <= n <= len of both slices; loads are unaligned.
                unsafe {
                    let x = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i + 8 * g).cast()));
                    let y = _mm256_loadu_ps(q.as_ptr().add(i + 8 * g));
                    *reg = _mm256_fmadd_ps(x, y, *reg);
                }
            }
        }
        let h = match (order, R) {
            (SumOrder::VecDot(GgmlIsa::Avx512), 8) => _mm256_add_ps(
                _mm256_add_ps(_mm256_add_ps(r[0], r[4]), _mm256_add_ps(r[2], r[6])),
                _mm256_add_ps(_mm256_add_ps(r[1], r[5]), _mm256_add_ps(r[3], r[7])),
            ),
            (SumOrder::Gemm(GgmlIsa::Avx512), 2) => _mm256_add_ps(r[0], r[1]),
            (SumOrder::Gemm(GgmlIsa::Avx2), 1) => r[0],
            (SumOrder::VecDot(GgmlIsa::Avx2), 4) => {
                let c = _mm256_add_ps(_mm256_add_ps(r[0], r[2]), _mm256_add_ps(r[1], r[3]));
                let t = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps::<1>(c));
                let t1 = _mm_hadd_ps(t, t);
                return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
            }
            _ => unreachable!("{order:?} does not use {R} registers"),
        };
        let q4 = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let t = _mm_add_ps(q4, _mm_movehl_ps(q4, q4));
        _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)))
    }

    /// Lane chain `slot` of a dot product summed in `step` slots, for the KEY_BLOCK keys
    /// of a transposed block at once: `acc = fma(k[i], q[i], acc)` for i = slot,
    /// slot + step, … (as [`super::lanes_f16`] sums each key's slot).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn key_lane(keys: &[f32], q: &[f32], slot: usize, step: usize, half: usize) -> __m256 {
        let mut acc = _mm256_setzero_ps();
        let d = q.len().min(keys.len() / KEY_BLOCK);
        let mut i = slot;
        while i < d {
            // SAFETY: i < d and half < 2, so the block row i·KEY_BLOCK + 8·half..+8 lies
            // inside `keys`.
            let k = unsafe { _mm256_loadu_ps(keys.as_ptr().add(i * KEY_BLOCK + 8 * (half & 1))) };
            acc = _mm256_fmadd_ps(k, _mm256_set1_ps(q[i]), acc);
            i += step;
        }
        acc
    }

    /// `reduce_add16` of sixteen lane vectors, lane by lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn tree16(lane: &mut dyn FnMut(usize) -> __m256) -> __m256 {
        let mut h = [_mm256_setzero_ps(); 8];
        for (i, h) in h.iter_mut().enumerate() {
            *h = _mm256_add_ps(lane(i), lane(i + 8));
        }
        let q = [0, 1, 2, 3].map(|i| _mm256_add_ps(h[i], h[i + 4]));
        _mm256_add_ps(_mm256_add_ps(q[0], q[2]), _mm256_add_ps(q[1], q[3]))
    }

    /// `reduce_add8` of eight lane vectors, lane by lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn tree8(lane: &mut dyn FnMut(usize) -> __m256) -> __m256 {
        let mut t = [_mm256_setzero_ps(); 4];
        for (l, t) in t.iter_mut().enumerate() {
            *t = _mm256_add_ps(lane(l), lane(l + 4));
        }
        _mm256_add_ps(_mm256_add_ps(t[0], t[2]), _mm256_add_ps(t[1], t[3]))
    }

    /// [`key_lane`] for all sixteen keys of the block in one 512-bit vector.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    fn key_lane16(keys: &[f32], q: &[f32], slot: usize, step: usize) -> __m512 {
        let mut acc = _mm512_setzero_ps();
        let d = q.len().min(keys.len() / KEY_BLOCK);
        let mut i = slot;
        while i < d {
            // SAFETY: i < d, so the block row i·KEY_BLOCK..+16 lies inside `keys`.
            let k = unsafe { _mm512_loadu_ps(keys.as_ptr().add(i * KEY_BLOCK)) };
            acc = _mm512_fmadd_ps(k, _mm512_set1_ps(q[i]), acc);
            i += step;
        }
        acc
    }

    /// [`tree16`] on sixteen 512-bit lane vectors (an array: closures would not inherit the
    /// target features).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) fn tree16x16(lane: &[__m512; 16]) -> __m512 {
        let mut h = [_mm512_setzero_ps(); 8];
        for (i, h) in h.iter_mut().enumerate() {
            *h = _mm512_add_ps(lane[i], lane[i + 8]);
        }
        let q = [0, 1, 2, 3].map(|i| _mm512_add_ps(h[i], h[i + 4]));
        _mm512_add_ps(_mm512_add_ps(q[0], q[2]), _mm512_add_ps(q[1], q[3]))
    }

    /// `scale · k·q` for the KEY_BLOCK keys of a transposed block (`keys[i·16 + lane]`),
    /// each summed exactly as [`super::SumOrder::dot`] sums it, into `out[..16]`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn block_scores(
        keys: &[f32],
        q: &[f32],
        order: SumOrder,
        scale: f32,
        out: &mut [f32],
    ) {
        assert!(out.len() >= KEY_BLOCK);
        if matches!(order, SumOrder::Gemm(GgmlIsa::Avx512)) && avx512() {
            // SAFETY: `avx512()` confirmed AVX-512 F.
            unsafe { block_scores16(keys, q, scale, out) };
            return;
        }
        for half in 0..2 {
            let lane = |s, step| key_lane(keys, q, s, step, half);
            let sum = match order {
                SumOrder::Gemm(GgmlIsa::Avx512) => tree16(&mut |s| lane(s, 16)),
                SumOrder::Gemm(GgmlIsa::Avx2) => tree8(&mut |s| lane(s, 8)),
                SumOrder::VecDot(GgmlIsa::Avx512) => tree16(&mut |l| {
                    let s02 = _mm256_add_ps(lane(l, 64), lane(32 + l, 64));
                    let s13 = _mm256_add_ps(lane(16 + l, 64), lane(48 + l, 64));
                    _mm256_add_ps(s02, s13)
                }),
                SumOrder::VecDot(GgmlIsa::Avx2) => {
                    let c: [__m256; 8] = std::array::from_fn(|l| {
                        _mm256_add_ps(
                            _mm256_add_ps(lane(l, 32), lane(16 + l, 32)),
                            _mm256_add_ps(lane(8 + l, 32), lane(24 + l, 32)),
                        )
                    });
                    let t = [0, 1, 2, 3].map(|l| _mm256_add_ps(c[l], c[l + 4]));
                    _mm256_add_ps(_mm256_add_ps(t[0], t[1]), _mm256_add_ps(t[2], t[3]))
                }
            };
            let scaled = _mm256_mul_ps(sum, _mm256_set1_ps(scale));
            // SAFETY: `out` holds at least 16 floats (asserted).
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * half), scaled) };
        }
    }

    /// [`block_scores`] in the AVX-512 batch order, sixteen keys per vector.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    fn block_scores16(keys: &[f32], q: &[f32], scale: f32, out: &mut [f32]) {
        let mut lanes = [_mm512_setzero_ps(); 16];
        for (s, lane) in lanes.iter_mut().enumerate() {
            *lane = key_lane16(keys, q, s, 16);
        }
        let sum = tree16x16(&lanes);
        let scaled = _mm512_mul_ps(sum, _mm512_set1_ps(scale));
        assert!(out.len() >= KEY_BLOCK);
        // SAFETY: `out` holds at least 16 floats (asserted).
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), scaled) };
    }

    /// `R` value slots of a batch order with `step` slots in all, for eight value columns
    /// from `values[c..]`: slot `first + r` sums `p_j · v_j` over the positions
    /// `j ≡ first + r (mod step)` of `lo..lo + probs.len()`, in order of j, by fused
    /// multiply-adds.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn value_slots<const R: usize>(
        values: &[f16],
        stride: usize,
        c: usize,
        probs: &[f32],
        lo: usize,
        step: usize,
        first: usize,
    ) -> [__m256; R] {
        let mut acc = [_mm256_setzero_ps(); R];
        let end = lo + probs.len();
        if probs.is_empty() {
            return acc;
        }
        assert!((end - 1) * stride + c + 8 <= values.len() && first + R <= step);
        let (v, p) = (values.as_ptr(), probs.as_ptr());
        // SAFETY: lo <= j < end, so row j's columns c..c+8 lie inside `values` (asserted)
        // and j − lo indexes `probs`.
        let fma = |acc: __m256, j: usize| unsafe {
            let x = _mm256_cvtph_ps(_mm_loadu_si128(v.add(j * stride + c).cast()));
            _mm256_fmadd_ps(x, _mm256_set1_ps(*p.add(j - lo)), acc)
        };
        let mut j0 = lo - lo % step + first;
        // Blocks whose R positions all lie in lo..end go without checks.
        while j0 < end {
            if j0 >= lo && j0 + R <= end {
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = fma(*a, j0 + r);
                }
            } else {
                for (r, a) in acc.iter_mut().enumerate() {
                    if (lo..end).contains(&(j0 + r)) {
                        *a = fma(*a, j0 + r);
                    }
                }
            }
            j0 += step;
        }
        acc
    }

    /// [`value_slots`] for sixteen value columns in 512-bit vectors.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    fn value_slots16<const R: usize>(
        values: &[f16],
        stride: usize,
        c: usize,
        probs: &[f32],
        lo: usize,
        step: usize,
        first: usize,
    ) -> [__m512; R] {
        let mut acc = [_mm512_setzero_ps(); R];
        let end = lo + probs.len();
        if probs.is_empty() {
            return acc;
        }
        assert!((end - 1) * stride + c + 16 <= values.len() && first + R <= step);
        let (v, p) = (values.as_ptr(), probs.as_ptr());
        // SAFETY: lo <= j < end, so row j's columns c..c+16 lie inside `values` (asserted)
        // and j − lo indexes `probs`.
        let fma = |acc: __m512, j: usize| unsafe {
            let x = _mm512_cvtph_ps(_mm256_loadu_si256(v.add(j * stride + c).cast()));
            _mm512_fmadd_ps(x, _mm512_set1_ps(*p.add(j - lo)), acc)
        };
        let mut j0 = lo - lo % step + first;
        // Blocks whose R positions all lie in lo..end go without checks.
        while j0 < end {
            if j0 >= lo && j0 + R <= end {
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = fma(*a, j0 + r);
                }
            } else {
                for (r, a) in acc.iter_mut().enumerate() {
                    if (lo..end).contains(&(j0 + r)) {
                        *a = fma(*a, j0 + r);
                    }
                }
            }
            j0 += step;
        }
        acc
    }

    /// [`weighted_values`] in the AVX-512 batch order for the first `out.len()` rounded
    /// down to 16 columns; returns how many columns it wrote.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    fn weighted_values16(
        values: &[f16],
        stride: usize,
        probs: &[f32],
        lo: usize,
        out: &mut [f32],
    ) -> usize {
        let body = out.len() - out.len() % 16;
        for c in (0..body).step_by(16) {
            let a = value_slots16::<8>(values, stride, c, probs, lo, 16, 0);
            let b = value_slots16::<8>(values, stride, c, probs, lo, 16, 8);
            let mut lanes = [_mm512_setzero_ps(); 16];
            lanes[..8].copy_from_slice(&a);
            lanes[8..].copy_from_slice(&b);
            let sum = tree16x16(&lanes);
            // SAFETY: c + 16 <= out.len().
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(c), sum) };
        }
        body
    }

    /// `out[c] = Σ_j p_j · v_j[c]` over positions `lo..lo + probs.len()` (`v_j` the row
    /// `values[j·stride..]`), in the lanes and reduction of batch order `order`, as the
    /// slot accumulators and [`super::SumOrder::reduce`] of the per-key path compute it.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn weighted_values(
        values: &[f16],
        stride: usize,
        probs: &[f32],
        lo: usize,
        order: SumOrder,
        out: &mut [f32],
    ) {
        let mut done = 0;
        if matches!(order, SumOrder::Gemm(GgmlIsa::Avx512)) && avx512() {
            // SAFETY: `avx512()` confirmed AVX-512 F.
            done = unsafe { weighted_values16(values, stride, probs, lo, out) };
        }
        for c in (done..out.len() - out.len() % 8).step_by(8) {
            let sum = match order {
                SumOrder::Gemm(GgmlIsa::Avx512) => {
                    let a = value_slots::<8>(values, stride, c, probs, lo, 16, 0);
                    let b = value_slots::<8>(values, stride, c, probs, lo, 16, 8);
                    tree16(&mut |s| if s < 8 { a[s] } else { b[s - 8] })
                }
                SumOrder::Gemm(GgmlIsa::Avx2) => {
                    let a = value_slots::<8>(values, stride, c, probs, lo, 8, 0);
                    tree8(&mut |s| a[s])
                }
                SumOrder::VecDot(_) => unreachable!("single queries sum values per position"),
            };
            // SAFETY: c + 8 <= out.len().
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(c), sum) };
        }
    }

    /// The per-slot weighted sums of values for `slots` slots (`acc` is (slots, Dv),
    /// zeroed): `acc[s][c] = Σ p_j·v_j[c]` over positions j ≡ s (mod slots)
    /// from `lo` on, probability `probs[j − lo]`, value row j at `values[j·stride..]`. The
    /// fused multiply-adds of each (slot, element) run in order of j, as
    /// [`super::axpy_f16`] applied key by key runs them (zero probabilities skipped
    /// alike), but each chain stays in a register instead of memory. Dv is a multiple of 64.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn slot_sums(
        values: &[f16],
        stride: usize,
        probs: &[f32],
        lo: usize,
        slots: usize,
        acc: &mut [f32],
    ) {
        let dv = acc.len() / slots.max(1);
        let end = lo + probs.len();
        for s in 0..slots {
            let first = lo + (s + slots - lo % slots) % slots;
            for c0 in (0..dv).step_by(64) {
                let mut r = [_mm256_setzero_ps(); 8];
                let mut j = first;
                while j < end {
                    let p = probs[j - lo];
                    if p != 0.0 {
                        let pv = _mm256_set1_ps(p);
                        let row = &values[j * stride + c0..][..64];
                        for (g, reg) in r.iter_mut().enumerate() {
                            // SAFETY: 8g + 8 <= 64 = row.len(); the load is unaligned.
                            let x = unsafe {
                                _mm256_cvtph_ps(_mm_loadu_si128(row.as_ptr().add(8 * g).cast()))
                            };
                            *reg = _mm256_fmadd_ps(x, pv, *reg);
                        }
                    }
                    j += slots;
                }
                let out = &mut acc[s * dv + c0..][..64];
                for (g, reg) in r.iter().enumerate() {
                    // SAFETY: 8g + 8 <= 64 = out.len(); the store is unaligned.
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * g), *reg) };
                }
            }
        }
    }

    /// Rounds every value to the nearest f16 (ties to even) and back, as `f16::from_f32`
    /// then `to_f32` do one by one.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn round_to_f16(x: &mut [f32]) {
        let body = x.len() - x.len() % 8;
        for i in (0..body).step_by(8) {
            // SAFETY: i + 8 <= body <= x.len(); loads and stores are unaligned.
            unsafe {
                let v = _mm256_loadu_ps(x.as_ptr().add(i));
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
                _mm256_storeu_ps(x.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
        }
        for v in &mut x[body..] {
            *v = f16::from_f32(*v).to_f32();
        }
    }

    /// See [`super::lanes_f16`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn lanes_f16(k: &[f16], q: &[f32], slots: usize, acc: &mut [f32; VECDOT_STEP]) {
        let mut regs = [_mm256_setzero_ps(); VECDOT_STEP / 8];
        let groups = slots / 8;
        let n = k.len().min(q.len()) / slots * slots;
        for i in (0..n).step_by(slots) {
            for (g, reg) in regs[..groups].iter_mut().enumerate() {
                // SAFETY: i + 8g + 8 <= n <= len of both slices; loads are unaligned.
                unsafe {
                    let x = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().add(i + 8 * g).cast()));
                    let y = _mm256_loadu_ps(q.as_ptr().add(i + 8 * g));
                    *reg = _mm256_fmadd_ps(x, y, *reg);
                }
            }
        }
        for (g, reg) in regs[..groups].iter().enumerate() {
            // SAFETY: acc has VECDOT_STEP >= 8g + 8 slots.
            unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(8 * g), *reg) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn simd_lanes_and_axpy_equal_the_scalar_fmas_bit_for_bit() {
        if !simd() {
            return;
        }
        let k: Vec<f16> = (0..128)
            .map(|i| f16::from_f32((i as f32 * 0.37).sin()))
            .collect();
        let q: Vec<f32> = (0..128).map(|i| (i as f32 * 0.11).cos()).collect();
        for slots in [8, GGML_LANES, 32, VECDOT_STEP] {
            let mut want = [0f32; VECDOT_STEP];
            for (i, (&a, &b)) in k.iter().zip(&q).enumerate() {
                want[i % slots] = a.to_f32().mul_add(b, want[i % slots]);
            }
            let mut got = [0f32; VECDOT_STEP];
            // SAFETY: simd() confirmed the features.
            unsafe { x86::lanes_f16(&k, &q, slots, &mut got) };
            assert_eq!(want.map(f32::to_bits), got.map(f32::to_bits));
        }
        let mut want: Vec<f32> = q[..67].to_vec();
        for (a, &x) in want.iter_mut().zip(&k) {
            *a = x.to_f32().mul_add(0.3, *a);
        }
        let mut got = q[..67].to_vec();
        // SAFETY: as above.
        unsafe { x86::axpy_f16(&mut got, &k[..67], 0.3) };
        assert_eq!(want, got);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn ordered_dots_reduce_in_registers_as_in_the_scalar_order() {
        if !simd() {
            return;
        }
        let k: Vec<f16> = (0..128)
            .map(|i| f16::from_f32((i as f32 * 0.91).sin() * 3.0))
            .collect();
        let q: Vec<f32> = (0..128).map(|i| (i as f32 * 0.29).cos() * 1e3).collect();
        for isa in [GgmlIsa::Avx2, GgmlIsa::Avx512] {
            for order in [SumOrder::Gemm(isa), SumOrder::VecDot(isa)] {
                let mut acc = [0f32; VECDOT_STEP];
                for (i, (&a, &b)) in k.iter().zip(&q).enumerate() {
                    let s = &mut acc[i % order.slots()];
                    *s = a.to_f32().mul_add(b, *s);
                }
                let want = order.reduce(&acc[..order.slots()]);
                // SAFETY: simd() confirmed the features.
                let got = unsafe { x86::dot_ordered(&k, &q, order) };
                assert_eq!(want.to_bits(), got.to_bits(), "{order:?}");
            }
        }
    }

    #[test]
    fn blocked_paths_give_the_per_key_paths_bits() {
        if !simd() {
            return;
        }
        let mut rng = crate::tests::Rng(0x9e37_79b9_7f4a_7c15);
        let pool = ThreadPool::new(2);
        for (h, hkv, d, dv) in [(6, 2, 64, 64), (4, 1, 256, 256), (3, 3, 32, 16)] {
            // Sequences of several rows, one row summed as part of a larger batch, single
            // rows summed alone (vector-dot order), at various depths.
            let spans = [
                AttnSpan {
                    row0: 0,
                    n_rows: 5,
                    pos0: 0,
                    order_rows: 5,
                },
                AttnSpan {
                    row0: 5,
                    n_rows: 1,
                    pos0: 13,
                    order_rows: 4,
                },
                AttnSpan {
                    row0: 6,
                    n_rows: 9,
                    pos0: 30,
                    order_rows: 9,
                },
                AttnSpan {
                    row0: 15,
                    n_rows: 1,
                    pos0: 3,
                    order_rows: 1,
                },
                AttnSpan {
                    row0: 16,
                    n_rows: 1,
                    pos0: 150,
                    order_rows: 1,
                },
            ];
            let n_rows = 17;
            let n_ctx = 151;
            let q: Vec<f32> = (0..n_rows * h * d).map(|_| rng.f32() * 2.0).collect();
            let caches: Vec<(Vec<f16>, Vec<f16>)> = spans
                .iter()
                .map(|_| {
                    let k = (0..n_ctx * hkv * d)
                        .map(|_| f16::from_f32(rng.f32()))
                        .collect();
                    let v = (0..n_ctx * hkv * dv)
                        .map(|_| f16::from_f32(rng.f32()))
                        .collect();
                    (k, v)
                })
                .collect();
            for window in [None, Some(7), Some(100)] {
                let p = AttnParams {
                    n_head: h,
                    n_head_kv: hkv,
                    head_dim: d,
                    head_dim_v: dv,
                    scale: 0.3,
                    window,
                };
                for isa in [GgmlIsa::Avx2, GgmlIsa::Avx512] {
                    let kv = |s: usize| (&caches[s].0[..], &caches[s].1[..]);
                    let mut want = vec![0f32; n_rows * h * dv];
                    let mut got = vec![0f32; n_rows * h * dv];
                    let mut scratch = Vec::new();
                    attention_batch_as(
                        &pool,
                        &p,
                        &q,
                        &spans,
                        &kv,
                        &mut want,
                        &mut scratch,
                        isa,
                        false,
                    );
                    attention_batch_as(
                        &pool,
                        &p,
                        &q,
                        &spans,
                        &kv,
                        &mut got,
                        &mut scratch,
                        isa,
                        true,
                    );
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&want), bits(&got), "{isa:?} {window:?} d={d}");
                }
            }
        }
    }

    #[test]
    fn generation_path_gives_the_per_key_paths_bits() {
        if !simd() {
            return;
        }
        let mut rng = crate::tests::Rng(0x5851_f42d_4c95_7f2d);
        let pool = ThreadPool::new(2);
        // Single queries only (generation), several sequences at various depths, including
        // block and slot edges.
        let depths = [0, 5, 15, 16, 63, 64, 65, 200, 300];
        let spans: Vec<AttnSpan> = depths
            .iter()
            .enumerate()
            .map(|(i, &pos0)| AttnSpan {
                row0: i,
                n_rows: 1,
                pos0,
                order_rows: 1,
            })
            .collect();
        let n_ctx = 301;
        for (h, hkv, d, dv) in [
            (9, 3, 64, 64),
            (4, 1, 256, 256),
            (7, 1, 128, 32),
            (8, 8, 64, 96),
            (6, 2, 64, 48),
        ] {
            let q: Vec<f32> = (0..spans.len() * h * d).map(|_| rng.f32() * 2.0).collect();
            let caches: Vec<(Vec<f16>, Vec<f16>)> = spans
                .iter()
                .map(|_| {
                    let mut v = |n: usize| (0..n).map(|_| f16::from_f32(rng.f32())).collect();
                    (v(n_ctx * hkv * d), v(n_ctx * hkv * dv))
                })
                .collect();
            for window in [None, Some(7), Some(100)] {
                let p = AttnParams {
                    n_head: h,
                    n_head_kv: hkv,
                    head_dim: d,
                    head_dim_v: dv,
                    scale: 0.3,
                    window,
                };
                let kv = |s: usize| (&caches[s].0[..], &caches[s].1[..]);
                let run = |spans: &[AttnSpan], blocks: bool| {
                    let mut out = vec![0f32; spans.len() * h * dv];
                    let mut scratch = Vec::new();
                    attention_batch_as(
                        &pool,
                        &p,
                        &q,
                        spans,
                        &kv,
                        &mut out,
                        &mut scratch,
                        GgmlIsa::Avx512,
                        blocks,
                    );
                    out.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                };
                // All the sequences at once, and one alone: at short depth (little work: on
                // the calling thread alone), and at 256 positions (one run of positions,
                // fewer than threads: its key/value heads are scores jobs of their own).
                let alone = |pos0: usize| AttnSpan {
                    row0: 0,
                    n_rows: 1,
                    pos0,
                    order_rows: 1,
                };
                for set in [
                    spans.clone(),
                    vec![alone(5)],
                    vec![alone(200)],
                    vec![alone(255)],
                ] {
                    assert_eq!(
                        run(&set, false),
                        run(&set, true),
                        "{window:?} h={h} d={d} dv={dv} {set:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn single_key_returns_its_value_and_window_hides_old_keys() {
        let p = AttnParams {
            n_head: 2,
            n_head_kv: 1,
            head_dim: 2,
            head_dim_v: 2,
            scale: 1.0,
            window: Some(1),
        };
        let k: Vec<f16> = [1.0, 0.0, 0.0, 1.0]
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let v: Vec<f16> = [10.0, 20.0, 30.0, 40.0]
            .iter()
            .map(|&x| f16::from_f32(x))
            .collect();
        let q = [5.0, 0.0, 0.0, 5.0];
        let pool = ThreadPool::new(2);
        let mut out = [0.0f32; 4];
        let mut scratch = Vec::new();
        // One query at position 1 with window 1 sees only key 1.
        attention(&pool, &p, &q, 1, &k, &v, &mut out, &mut scratch);
        assert_eq!(out, [30.0, 40.0, 30.0, 40.0]);
        let p = AttnParams { window: None, ..p };
        attention(&pool, &p, &q, 1, &k, &v, &mut out, &mut scratch);
        // Head 0 prefers key 0 (score 5 vs 0).
        assert!(out[0] < 12.0 && out[0] > 10.0, "{out:?}");
    }
}
