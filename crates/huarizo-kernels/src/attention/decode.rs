//! Attention for generation (every sequence of the batch has one query, summed alone) in the
//! order of llama.cpp's AVX-512 build: ggml's f16 vector dot product (64 slots, reduced as
//! `GGML_F16_VEC_REDUCE`) for each score and each output column.
//!
//! The per-key path computes each (query head, position) pair on its own, so the query heads
//! that share a key/value head read its keys and values once each, and every score is reduced
//! across lanes on its own. Here the work is split by key/value head instead:
//!
//! 1. **Scores**, per (sequence, 256 positions), every head (at short depth, with fewer such
//!    runs than threads, per key/value head too): each block of sixteen key rows is
//!    read whole; each key/value head's part is converted to f32 once for the query heads of
//!    its group; the sixteen per-position lane vectors are reduced together by a transposing
//!    tree of 512-bit additions, which adds the same pairs as `_mm512_reduce_add_ps` does for
//!    each.
//! 2. **Softmax** per (sequence, query head), then the probabilities rounded to f16.
//! 3. **Values**, per (sequence, 4 of the 16 lanes of the reduction), every head and
//!    column: the job's rows (runs of 4 consecutive positions, 16 apart) read once in order,
//!    then each slot's chain in registers, each value row converted once for the query heads
//!    that share it. The four slots that `GGML_F16_VEC_REDUCE` adds first into a lane (l,
//!    l + 16, l + 32, l + 48) are one job's and are added there, so that the jobs store 16
//!    lanes per head and column, not 64 slots. At short depth those stores had been most of
//!    the cost: every layer's sums had left the caches while the weights streamed in
//!    between (`attention_bench` at depth 64: 2× faster; at 4096 unchanged within noise).
//! 4. **Reduction** of each output column's 16 lanes.
//!
//! At depth the cache does not fit in the caches, and reading rows whole and in runs is what
//! made this path fast (PERF.md, session 13). Every result is bit for bit the per-key path's
//! (`generation_path_gives_the_per_key_paths_bits`).

use super::{window_start, AttnParams, AttnSpan, SharedOut, SharedScratch, KEY_BLOCK};
use crate::isa::GgmlIsa;
use crate::ops::{softmax_ggml_isa, GGML_LANES};
use crate::pool::ThreadPool;
use half::f16;

/// Positions per scores job.
const CHUNK: usize = 256;
/// Slots of ggml's AVX-512 f16 vector dot product (4 accumulators × 16 lanes).
const SLOTS: usize = 64;
/// Lanes of the reduction (`GGML_F16_VEC_REDUCE` first adds slots l, l+16, l+32, l+48).
const LANES: usize = 16;
/// Lanes per values job.
const JOB_LANES: usize = 4;
/// The most query heads per key/value head this path takes.
const MAX_GROUP: usize = 8;
/// Up to this many multiply-adds (positions × query heads × (key + value width), summed
/// over the sequences) the four passes run on the calling thread alone. Below it, the pool's
/// threads would mostly pass small buffers to each other (scores, probabilities, lane
/// sums): Qwen2.5-0.5B at depth 16, attention took 0.33–0.37 ms per token on one thread and
/// 0.33–0.94 on two (the latter in processes whose two threads sit far apart, as this
/// VM's do now and then).
const SERIAL_WORK: usize = 1 << 18;

/// Whether [`decode`] computes this call: an AVX-512 CPU following the AVX-512 build, head
/// widths it covers, and only single queries summed alone.
pub(super) fn applies(p: &AttnParams, spans: &[AttnSpan], isa: GgmlIsa) -> bool {
    let group = p.n_head / p.n_head_kv.max(1);
    #[cfg(target_arch = "x86_64")]
    let avx512 = super::x86::avx512();
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    avx512
        && isa == GgmlIsa::Avx512
        && p.n_head.is_multiple_of(p.n_head_kv.max(1))
        && (1..=MAX_GROUP).contains(&group)
        && p.head_dim.is_multiple_of(SLOTS)
        && p.head_dim <= 256
        && p.head_dim_v.is_multiple_of(16)
        && !spans.is_empty()
        && spans.iter().all(|s| s.n_rows == 1 && s.order_rows == 1)
}

/// Scores jobs of one sequence (runs of 256 positions, every head).
fn chunks(p: &AttnParams, span: &AttnSpan) -> usize {
    let first = window_start(p, span.pos0) / KEY_BLOCK;
    (span.pos0 / KEY_BLOCK - first) / (CHUNK / KEY_BLOCK) + 1
}

/// Attention for single queries (see the module documentation); the arguments are those of
/// [`super::attention_batch`], and [`applies`] must hold.
#[allow(clippy::too_many_arguments)]
pub(super) fn decode<'c>(
    pool: &ThreadPool,
    p: &AttnParams,
    q: &[f32],
    spans: &[AttnSpan],
    kv: &(dyn Fn(usize) -> (&'c [f16], &'c [f16]) + Sync),
    out: &mut [f32],
    scratch: &mut Vec<Vec<f32>>,
) {
    let (h, hkv, d, dv) = (p.n_head, p.n_head_kv, p.head_dim, p.head_dim_v);
    let group = h / hkv;
    for (s, span) in spans.iter().enumerate() {
        let (k_cache, v_cache) = kv(s);
        let n_kv = span.pos0 + 1;
        assert!(k_cache.len() >= n_kv * hkv * d && v_cache.len() >= n_kv * hkv * dv);
        assert!(q.len() >= (span.row0 + 1) * h * d && out.len() >= (span.row0 + 1) * h * dv);
    }
    let work: usize = spans
        .iter()
        .map(|s| (s.pos0 + 1 - window_start(p, s.pos0)) * h * (d + dv))
        .sum();
    let serial = work <= SERIAL_WORK;
    let n_threads = if serial { 1 } else { pool.n_threads() };
    // Each pass's jobs, on the pool or (small work) on this thread.
    let each = |n: usize, f: &(dyn Fn(usize, std::ops::Range<usize>) + Sync)| {
        if serial {
            f(0, 0..n)
        } else {
            pool.for_claimed_chunks_on(n, f)
        }
    };
    // Score rows (one per sequence and query head), then the f16-rounded queries.
    let stride = spans
        .iter()
        .map(|s| (s.pos0 + 1).next_multiple_of(KEY_BLOCK))
        .max()
        .unwrap_or(0);
    let n_rows = spans.len() * h;
    scratch.resize_with(n_threads + 1, Vec::new);
    let per_thread = KEY_BLOCK * d;
    for s in scratch[..n_threads].iter_mut() {
        if s.len() < per_thread {
            s.resize(per_thread, 0.0);
        }
    }
    let shared_len = n_rows * (stride + d + head_sums(dv));
    if scratch[n_threads].len() < shared_len {
        scratch[n_threads].resize(shared_len, 0.0);
    }
    {
        let q16 = &mut scratch[n_threads][n_rows * stride..][..n_rows * d];
        for (s, span) in spans.iter().enumerate() {
            let dst = &mut q16[s * h * d..][..h * d];
            dst.copy_from_slice(&q[span.row0 * h * d..][..h * d]);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `applies` confirmed AVX-512 F (so AVX2, FMA and F16C).
            unsafe {
                super::x86::round_to_f16(dst)
            };
        }
    }
    let scratch_ptr = SharedScratch(scratch.as_mut_ptr());
    // SAFETY (for the four passes): thread `thread` uses only `scratch[thread]`; the shared
    // buffer `scratch[n_threads]` is not resized while the pool runs, and each job writes
    // only its own part of it (its score positions, its rows, its slots) or of `out`.
    let shared = |thread: usize| {
        let scratch_ptr = &scratch_ptr;
        unsafe {
            (
                &mut *scratch_ptr.0.add(thread),
                (*scratch_ptr.0.add(n_threads)).as_mut_ptr(),
            )
        }
    };

    // 1. Scores: each job a run of positions for every head, so that the key rows are read
    // whole and in order.
    // At short depth there are fewer runs than threads: each run's key/value heads are then
    // jobs of their own (their parts of the key rows read apart).
    let n_runs: usize = spans.iter().map(|s| chunks(p, s)).sum();
    let per_run = if n_runs < n_threads { hkv } else { 1 };
    each(n_runs * per_run, &|thread, jobs| {
        let (tmp, buf) = shared(thread);
        for job in jobs {
            let (job, part) = (job / per_run, job % per_run);
            let heads = if per_run == 1 { 0..hkv } else { part..part + 1 };
            let (mut s, mut base) = (0, 0);
            while job >= base + chunks(p, &spans[s]) {
                base += chunks(p, &spans[s]);
                s += 1;
            }
            let span = &spans[s];
            let c = job - base;
            let (lo, pos) = (window_start(p, span.pos0), span.pos0);
            let b0 = lo / KEY_BLOCK + c * (CHUNK / KEY_BLOCK);
            let b1 = (b0 + CHUNK / KEY_BLOCK).min(pos / KEY_BLOCK + 1);
            for b in b0..b1 {
                for g in heads.clone() {
                    let head0 = s * h + g * group;
                    // SAFETY: rows head0..head0 + group of the f16-rounded queries lie inside
                    // the shared buffer, which nothing writes during this pass.
                    let q16 = unsafe {
                        std::slice::from_raw_parts(buf.add(n_rows * stride + head0 * d), group * d)
                    };
                    let layout = KeyLayout {
                        row_stride: hkv * d,
                        offset: g * d,
                        d,
                    };
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `applies` confirmed AVX-512 F; score rows head0.. are `stride`
                    // long and this job alone writes positions b·16..b·16 + 16 of them.
                    unsafe {
                        x86::block_scores(
                            kv(s).0,
                            layout,
                            q16,
                            b * KEY_BLOCK,
                            lo..pos + 1,
                            p.scale,
                            &mut tmp[..KEY_BLOCK * d],
                            buf.add(head0 * stride),
                            stride,
                        );
                    }
                }
            }
        }
    });

    // 2. Softmax, and the probabilities rounded to f16.
    each(n_rows, &|thread, rows| {
        let (_, buf) = shared(thread);
        for r in rows {
            let span = &spans[r / h];
            let (lo, pos) = (window_start(p, span.pos0), span.pos0);
            // SAFETY: row r is this job's alone.
            let row = unsafe {
                std::slice::from_raw_parts_mut(
                    buf.add(r * stride),
                    (pos + 1).next_multiple_of(GGML_LANES),
                )
            };
            row[..lo / KEY_BLOCK * KEY_BLOCK].fill(f32::NEG_INFINITY);
            softmax_ggml_isa(row, GgmlIsa::Avx512);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `applies` confirmed AVX-512 F (so AVX2, FMA and F16C).
            unsafe {
                super::x86::round_to_f16(&mut row[lo..=pos])
            };
        }
    });

    // 3. Values, per lanes: each job the slots of some lanes for every head and column, so
    // that the value rows are read whole, in runs of consecutive positions; the lanes' sums
    // go to the shared buffer.
    let sums_at = n_rows * (stride + d);
    let per_seq = LANES / JOB_LANES;
    each(spans.len() * per_seq, &|thread, jobs| {
        let (_, buf) = shared(thread);
        for job in jobs {
            let (s, part) = (job / per_seq, job % per_seq);
            let span = &spans[s];
            let job = SlotJob {
                values: kv(s).1,
                hkv,
                dv,
                group,
                // SAFETY: the span's probability rows, written by the pass above.
                probs: unsafe { buf.add(s * h * stride) },
                probs_stride: stride,
                positions: window_start(p, span.pos0)..span.pos0 + 1,
                lanes: part * JOB_LANES..(part + 1) * JOB_LANES,
                // SAFETY: the span's lane sums; this job alone writes its heads' lanes.
                sums: unsafe { buf.add(sums_at + s * h * head_sums(dv)) },
            };
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `applies` confirmed AVX-512 F.
            unsafe {
                x86::slot_values(&job)
            };
        }
    });

    // 4. Each output column: its 16 lanes reduced as `GGML_F16_VEC_REDUCE` reduces them.
    let out_ptr = SharedOut(out.as_mut_ptr());
    let n_cols = dv / 16;
    each(n_rows * n_cols, &|thread, jobs| {
        let (_, buf) = shared(thread);
        let out_ptr = &out_ptr;
        for job in jobs {
            let (r, cc) = (job / n_cols, job % n_cols);
            let span = &spans[r / h];
            #[cfg(target_arch = "x86_64")]
            // SAFETY: row r's lane sums, written by the pass above; this job alone writes
            // columns cc·16..+16 of its head's output.
            unsafe {
                x86::reduce_slots(
                    buf.add(sums_at + r * head_sums(dv) + cc * 16),
                    dv,
                    out_ptr.0.add((span.row0 * h + r % h) * dv + cc * 16),
                )
            };
        }
    });
}

/// Floats between two heads' lane sums: the 16 lanes of `dv` values and 128 bytes more, so
/// that the same lane and column of successive heads do not share their address's low 12
/// bits (loads after stores 4 KiB apart wait as if they depended on them).
fn head_sums(dv: usize) -> usize {
    LANES * dv + 32
}

/// Where one key/value head's rows sit in a cache: row j at `j·row_stride + offset`,
/// `d` wide.
#[derive(Clone, Copy)]
struct KeyLayout {
    row_stride: usize,
    offset: usize,
    d: usize,
}

/// One values job: some of the 16 lanes (each the sum of four of the 64 slots), for every
/// query head and column of a sequence.
struct SlotJob<'a> {
    /// The value cache: row j, key/value head g at `(j·hkv + g)·dv`.
    values: &'a [f16],
    hkv: usize,
    dv: usize,
    /// Query heads per key/value head.
    group: usize,
    /// Head i's probability of position j at `probs[i·probs_stride + j]` (j in `positions`).
    probs: *const f32,
    probs_stride: usize,
    /// The positions `lo..=pos` the query sees.
    positions: std::ops::Range<usize>,
    /// The lanes of this job.
    lanes: std::ops::Range<usize>,
    /// Head i's lane l sums at `sums[i·head_sums(dv) + l·dv..][..dv]`.
    sums: *mut f32,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{head_sums, KeyLayout, SlotJob, KEY_BLOCK, LANES, SLOTS};

    use half::f16;
    use std::arch::x86_64::*;

    /// Sixteen lane vectors reduced each as `_mm512_reduce_add_ps` reduces one (halves,
    /// quarters, pairs), lane p of the result = the sum of `v[p]`: the same additions,
    /// gathered by shuffles so that each step serves several vectors.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn reduce16x16(v: &[__m512; 16]) -> __m512 {
        // (Loops rather than closures, which would not inherit the target features.)
        // Halves: lanes 0–7 of each vector plus lanes 8–15, two vectors per result.
        let mut h = [_mm512_setzero_ps(); 8];
        for (i, h) in h.iter_mut().enumerate() {
            let (a, b) = (v[2 * i], v[2 * i + 1]);
            *h = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(a, b),
                _mm512_shuffle_f32x4::<0xEE>(a, b),
            );
        }
        // Quarters: lanes 0–3 plus 4–7 of each half, four vectors per result.
        let mut q = [_mm512_setzero_ps(); 4];
        for (i, q) in q.iter_mut().enumerate() {
            let (a, b) = (h[2 * i], h[2 * i + 1]);
            *q = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(a, b),
                _mm512_shuffle_f32x4::<0xDD>(a, b),
            );
        }
        // Pairs: (q0 + q2) and (q1 + q3), then their sum.
        let mut r = [_mm512_setzero_ps(); 2];
        for (i, r) in r.iter_mut().enumerate() {
            let (a, b) = (q[2 * i], q[2 * i + 1]);
            *r = _mm512_add_ps(
                _mm512_shuffle_ps::<0x44>(a, b),
                _mm512_shuffle_ps::<0xEE>(a, b),
            );
        }
        let f = _mm512_add_ps(
            _mm512_shuffle_ps::<0x88>(r[0], r[1]),
            _mm512_shuffle_ps::<0xDD>(r[0], r[1]),
        );
        // Lane 4k + m of `f` holds vector 4m + k.
        _mm512_permutexvar_ps(
            _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
            f,
        )
    }

    /// The scores of positions `p0..p0 + 16` (those in `seen`; −∞ for the others) for the
    /// query heads of one group (`q16`: their f16-rounded queries, `d` each), scaled, into
    /// `scores[i·stride + p0..][..16]` for head i. `kbuf` holds the block's keys as f32.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) unsafe fn block_scores(
        keys: &[f16],
        layout: KeyLayout,
        q16: &[f32],
        p0: usize,
        seen: std::ops::Range<usize>,
        scale: f32,
        kbuf: &mut [f32],
        scores: *mut f32,
        stride: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match layout.d / SLOTS {
                1 => {
                    block_scores_for::<1>(keys, layout, q16, p0, seen, scale, kbuf, scores, stride)
                }
                2 => {
                    block_scores_for::<2>(keys, layout, q16, p0, seen, scale, kbuf, scores, stride)
                }
                3 => {
                    block_scores_for::<3>(keys, layout, q16, p0, seen, scale, kbuf, scores, stride)
                }
                _ => {
                    block_scores_for::<4>(keys, layout, q16, p0, seen, scale, kbuf, scores, stride)
                }
            }
        }
    }

    /// [`block_scores`] for keys of `64·STEPS` values: the block's keys converted once
    /// (rows outside `seen` as zeros, their scores replaced by −∞ at the end), each query
    /// head's values kept in registers, the sixteen lane vectors reduced together.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn block_scores_for<const STEPS: usize>(
        keys: &[f16],
        layout: KeyLayout,
        q16: &[f32],
        p0: usize,
        seen: std::ops::Range<usize>,
        scale: f32,
        kbuf: &mut [f32],
        scores: *mut f32,
        stride: usize,
    ) {
        let d = SLOTS * STEPS;
        assert!(layout.d == d && kbuf.len() >= KEY_BLOCK * d);
        let group = q16.len() / d;
        let mut valid: u16 = 0;
        for l in 0..KEY_BLOCK {
            let j = p0 + l;
            let dst = &mut kbuf[l * d..][..d];
            if !seen.contains(&j) {
                dst.fill(0.0);
                continue;
            }
            valid |= 1 << l;
            let row = &keys[j * layout.row_stride + layout.offset..][..d];
            for i in (0..d).step_by(16) {
                // SAFETY: i + 16 <= d = row.len() = dst.len(); unaligned.
                unsafe {
                    let x = _mm512_cvtph_ps(_mm256_loadu_si256(row.as_ptr().add(i).cast()));
                    _mm512_storeu_ps(dst.as_mut_ptr().add(i), x);
                }
            }
        }
        let kb = kbuf.as_ptr();
        for head in 0..group {
            let q = &q16[head * d..][..d];
            let mut qv = [[_mm512_setzero_ps(); 4]; STEPS];
            for (st, qs) in qv.iter_mut().enumerate() {
                for (r, x) in qs.iter_mut().enumerate() {
                    // SAFETY: 64·st + 16·r + 16 <= d = q.len(); unaligned.
                    *x = unsafe { _mm512_loadu_ps(q.as_ptr().add(SLOTS * st + 16 * r)) };
                }
            }
            // (Loops rather than closures, which would not inherit the target features.)
            let mut lanes = [_mm512_setzero_ps(); KEY_BLOCK];
            for (l, lane) in lanes.iter_mut().enumerate() {
                let mut acc = [_mm512_setzero_ps(); 4];
                for (st, qs) in qv.iter().enumerate() {
                    for (r, a) in acc.iter_mut().enumerate() {
                        // SAFETY: row l of `kbuf` holds d = 64·STEPS values.
                        let x = unsafe { _mm512_loadu_ps(kb.add(l * d + SLOTS * st + 16 * r)) };
                        *a = _mm512_fmadd_ps(x, qs[r], *a);
                    }
                }
                *lane = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
            }
            let scaled = _mm512_mul_ps(reduce16x16(&lanes), _mm512_set1_ps(scale));
            let masked = _mm512_mask_blend_ps(valid, _mm512_set1_ps(f32::NEG_INFINITY), scaled);
            // SAFETY: the caller's score rows hold positions p0..p0 + 16.
            unsafe { _mm512_storeu_ps(scores.add(head * stride + p0), masked) };
        }
    }

    /// A values job: for each of its lanes l and its query heads, the chains `Σ p_j·v_j`
    /// over the positions j ≡ s (mod 64) in order for the four slots s = l + 16k, zero
    /// probabilities skipped, each value row converted once for the heads that share it;
    /// then the lane `(s_l + s_{l+32}) + (s_{l+16} + s_{l+48})`, as `GGML_F16_VEC_REDUCE`
    /// adds it.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) unsafe fn slot_values(job: &SlotJob) {
        let (hkv, dv) = (job.hkv, job.dv);
        let (lo, end) = (job.positions.start, job.positions.end);
        assert!(end > lo && end * hkv * dv <= job.values.len() && dv.is_multiple_of(16));
        assert!(job.lanes.end <= LANES);
        // The job's rows come in runs of consecutive positions, 16 positions apart: one pass
        // over them in order first brings them into L2 at the memory's streaming rate; the
        // chains then visit them slot by slot.
        let mut x = 0u16;
        for base in (lo / LANES * LANES..end).step_by(LANES) {
            let first = (base + job.lanes.start).max(lo);
            let last = (base + job.lanes.end).min(end);
            if first < last {
                let run = &job.values[first * hkv * dv..last * hkv * dv];
                for h in run.iter().step_by(32) {
                    x ^= h.to_bits();
                }
            }
        }
        std::hint::black_box(x);
        // SAFETY: forwarded from the caller.
        unsafe {
            match job.group {
                1 => slot_values_for::<1>(job),
                2 => slot_values_for::<2>(job),
                3 => slot_values_for::<3>(job),
                4 => slot_values_for::<4>(job),
                5 => slot_values_for::<5>(job),
                6 => slot_values_for::<6>(job),
                7 => slot_values_for::<7>(job),
                _ => slot_values_for::<8>(job),
            }
        }
    }

    /// Vectors of 16 columns per chain: 32 columns at a time.
    const W: usize = 2;

    /// One slot's chains for the `G` query heads of key/value head `g` and `W` vectors of 16
    /// columns from column `c` (`wide`: the second vector is inside the row; else it sums
    /// zeros).
    ///
    /// # Safety
    /// As [`slot_values`]'s.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn chain<const G: usize>(
        job: &SlotJob,
        g: usize,
        slot: usize,
        c: usize,
        wide: bool,
    ) -> [[__m512; W]; G] {
        let (hkv, dv) = (job.hkv, job.dv);
        let (lo, end) = (job.positions.start, job.positions.end);
        let v = job.values.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); W]; G];
        let mut j = lo + (slot + SLOTS - lo % SLOTS) % SLOTS;
        // SAFETY: rows j < end lie inside `values` (asserted by `slot_values`); the
        // probability rows hold positions lo..end.
        unsafe {
            while j < end {
                let row = v.add((j * hkv + g) * dv + c);
                let mut x = [_mm512_setzero_ps(); W];
                for (w, x) in x.iter_mut().enumerate() {
                    if w == 0 || wide {
                        *x = _mm512_cvtph_ps(_mm256_loadu_si256(row.add(16 * w).cast()));
                    }
                }
                for (i, a) in acc.iter_mut().enumerate() {
                    let head = g * G + i;
                    let pr = *job.probs.add(head * job.probs_stride + j);
                    let k: __mmask16 = if pr != 0.0 { 0xffff } else { 0 };
                    let pv = _mm512_set1_ps(pr);
                    for (a, &x) in a.iter_mut().zip(&x) {
                        *a = _mm512_mask3_fmadd_ps(x, pv, *a, k);
                    }
                }
                j += SLOTS;
            }
        }
        acc
    }

    /// `a ← a + b`, vector by vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add_into<const G: usize>(a: &mut [[__m512; W]; G], b: &[[__m512; W]; G]) {
        for (a, b) in a.iter_mut().zip(b) {
            for (a, &b) in a.iter_mut().zip(b) {
                *a = _mm512_add_ps(*a, b);
            }
        }
    }

    /// [`slot_values`] for groups of `G` query heads, 32 columns at a time, each chain in
    /// registers.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    unsafe fn slot_values_for<const G: usize>(job: &SlotJob) {
        let dv = job.dv;
        // SAFETY (throughout): as the caller's; the sums hold every head's 16 lanes.
        unsafe {
            for g in 0..job.hkv {
                for c in (0..dv).step_by(16 * W) {
                    let wide = c + 16 * W <= dv;
                    for l in job.lanes.clone() {
                        let mut near = chain::<G>(job, g, l, c, wide);
                        add_into(&mut near, &chain::<G>(job, g, l + 32, c, wide));
                        let mut far = chain::<G>(job, g, l + 16, c, wide);
                        add_into(&mut far, &chain::<G>(job, g, l + 48, c, wide));
                        add_into(&mut near, &far);
                        for (i, a) in near.iter().enumerate() {
                            let head = g * G + i;
                            let dst = job.sums.add(head * head_sums(dv) + l * dv + c);
                            for (w, &a) in a.iter().enumerate() {
                                if w == 0 || wide {
                                    _mm512_storeu_ps(dst.add(16 * w), a);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sixteen output columns from their 16 lane sums (`sums[l·dv..][..16]` for lane l):
    /// `_mm512_reduce_add_ps`'s tree across l, column by column; into `out[..16]`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) unsafe fn reduce_slots(sums: *const f32, dv: usize, out: *mut f32) {
        // SAFETY: the caller's sums hold 16 lanes of `dv` values from `sums`, and `out` 16.
        unsafe {
            let mut lane = [_mm512_setzero_ps(); 16];
            for (l, x) in lane.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(sums.add(l * dv));
            }
            _mm512_storeu_ps(out, super::super::x86::tree16x16(&lane));
        }
    }
}
