//! Matrix products of a stored weight matrix with a batch of activations.
//!
//! Shapes use one vocabulary: a weight `W` is `(n_out, n_in)`, row-major, each row in the
//! weight's own block format; activations are `(T, n_in)`: T token rows already quantized
//! to `vec_dot_type(W)`; the output is `(T, n_out)` in f32.

use crate::blocks::QK;
use crate::pool::ThreadPool;
use crate::{quantize_row, vec_dot_kernel, vec_dot_type};
use huarizo_formats::GgmlType;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Weight rows handled together, so that a tile of W stays in cache across the tokens.
const ROW_TILE: usize = 8;

/// A raw output pointer that threads write through at disjoint indices.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every user writes disjoint elements (threads own disjoint weight-row ranges).
unsafe impl Sync for SharedOut {}
// SAFETY: as above.
unsafe impl Send for SharedOut {}

/// Bytes one row of `n` values takes in format `t`. Panics if `n` is not a whole number of
/// blocks (the model loader checks shapes before any kernel runs).
pub fn row_bytes(t: GgmlType, n: usize) -> usize {
    t.row_bytes(n)
        .unwrap_or_else(|| panic!("{n} values are not a whole number of {} blocks", t.name()))
}

/// Quantizes `x` `(T, n_in)` into `dst` as T rows of `vec_dot_type(w_type)`, ready for
/// [`matmul`] with a weight of type `w_type`. `dst` is resized (reusing its capacity).
pub fn quantize_activations(w_type: GgmlType, x: &[f32], n_in: usize, dst: &mut Vec<u8>) {
    let act_type = vec_dot_type(w_type);
    let rb = row_bytes(act_type, n_in);
    let n_tokens = x.len() / n_in;
    dst.resize(rb * n_tokens, 0);
    for (src, out) in x.chunks_exact(n_in).zip(dst.chunks_exact_mut(rb)) {
        quantize_row(act_type, src, out);
    }
}

/// [`quantize_activations`] with the rows shared among the pool's threads (one row, or a
/// one-thread pool, stays on the calling thread). The bytes are the same.
pub fn quantize_activations_on(
    pool: &ThreadPool,
    w_type: GgmlType,
    x: &[f32],
    n_in: usize,
    dst: &mut Vec<u8>,
) {
    let n_tokens = x.len() / n_in;
    if n_tokens < 2 || pool.n_threads() == 1 {
        return quantize_activations(w_type, x, n_in, dst);
    }
    let act_type = vec_dot_type(w_type);
    let rb = row_bytes(act_type, n_in);
    dst.resize(rb * n_tokens, 0);
    pool.for_rows_mut(dst, rb, &|first, rows| {
        for (i, out) in rows.chunks_exact_mut(rb).enumerate() {
            let t = first + i;
            quantize_row(act_type, &x[t * n_in..(t + 1) * n_in], out);
        }
    });
}

/// `out (T, n_out) = acts (T, n_in) · Wᵀ`, with W `(n_out, n_in)` of type `w_type` and the
/// activations already in `vec_dot_type(w_type)` (see [`quantize_activations`]).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    pool: &ThreadPool,
    w_type: GgmlType,
    w: &[u8],
    n_out: usize,
    n_in: usize,
    acts: &[u8],
    n_tokens: usize,
    out: &mut [f32],
) {
    matmul_many(
        pool,
        n_in,
        acts,
        n_tokens,
        &mut [Product {
            w_type,
            w,
            packed: None,
            n_out,
            out,
        }],
    );
}

/// One weight of a [`matmul_many`]: W `(n_out, n_in)` of type `w_type`, results into
/// `out (T, n_out)`.
pub struct Product<'a> {
    /// The weight's type.
    pub w_type: GgmlType,
    /// The weight, `n_out` rows.
    pub w: &'a [u8],
    /// The same weight packed ([`crate::packed`]), if it was: products then read it
    /// instead of `w`, wherever the packed kernels give the bits `w`'s would.
    pub packed: Option<&'a crate::packed::PackedRows>,
    /// Output width.
    pub n_out: usize,
    /// `(T, n_out)` results.
    pub out: &'a mut [f32],
}

/// Most weights one [`matmul_many`] takes.
pub const MAX_PRODUCTS: usize = 4;

/// Where llama.cpp would have had one activation row: row `index` of a batch of `of` rows.
/// ggml multiplies repacked Q4_K weights in its GEMM order for the rows of whole groups of
/// four (`index < of − of mod 4`) and in its GEMV order for the rest, and Q6_K weights in
/// its tiled order when the batch has 8 rows or more; every other type's arithmetic is the
/// same wherever the row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRow {
    /// The row's index in its batch.
    pub index: usize,
    /// The batch's rows.
    pub of: usize,
}

impl BatchRow {
    /// Whether a repacked Q4_K weight takes this row in ggml's GEMM order (else GEMV).
    pub fn q4_k_gemm(self) -> bool {
        self.index < self.of - self.of % 4
    }

    /// Whether a Q6_K weight takes this row in ggml's tiled order.
    pub fn q6_k_tiled(self) -> bool {
        self.of >= crate::repacked::TILED_MIN_ROWS
    }
}

/// Several products of the same activations (Q, K and V; gate and up) in one pass of the
/// pool, so that both threads share one pool of row tiles and meet once. Each result is
/// exactly what [`matmul`] computes for its weight alone. The weights' types must share
/// one activation format.
pub fn matmul_many(
    pool: &ThreadPool,
    n_in: usize,
    acts: &[u8],
    n_tokens: usize,
    products: &mut [Product<'_>],
) {
    matmul_many_rows(pool, n_in, acts, n_tokens, products, None);
}

/// [`matmul_many`] with each activation row multiplied in the order llama.cpp would use
/// for it at the place `rows[t]` gives (see [`BatchRow`]) instead of its place in this
/// batch, so that rows from requests batched differently still get llama.cpp's bits.
pub fn matmul_many_rows(
    pool: &ThreadPool,
    n_in: usize,
    acts: &[u8],
    n_tokens: usize,
    products: &mut [Product<'_>],
    rows: Option<&[BatchRow]>,
) {
    if let Some(rows) = rows {
        assert_eq!(rows.len(), n_tokens, "one batch place per activation row");
    }
    assert!(
        !products.is_empty() && products.len() <= MAX_PRODUCTS,
        "1 to {MAX_PRODUCTS} products"
    );
    let act_type = vec_dot_type(products[0].w_type);
    assert!(
        products.iter().all(|p| vec_dot_type(p.w_type) == act_type),
        "the weights of one matmul_many must share an activation format"
    );
    let a_row = row_bytes(act_type, n_in);
    assert!(
        acts.len() >= a_row * n_tokens,
        "activations shorter than (T, n_in)"
    );
    if act_type == GgmlType::F32 {
        return crate::f32_products::products(pool, n_in, acts, n_tokens, products, rows);
    }
    let n_blocks = n_in / QK;
    BUFFERS.with_borrow_mut(|buffers| {
        let mut plans: [Option<TilePlan<'_>>; MAX_PRODUCTS] = [None, None, None, None];
        let mut first_tile = [0usize; MAX_PRODUCTS + 1];
        let (mut need_scales, mut need_infos, mut need_lanes) = (false, false, false);
        let (mut need_one_token, mut need_sub_sums) = (false, false);
        let n = products.len();
        for (j, p) in products.iter_mut().enumerate() {
            first_tile[j + 1] = first_tile[j] + p.n_out.div_ceil(ROW_TILE);
            let mut plan = TilePlan::new(p, n_in, a_row, n_tokens);
            if plan.row_lanes.is_none() {
                plan.by_place = rows.and_then(|rows| {
                    Some((PlaceKernels::for_type(plan.w_type, plan.n_out)?, rows))
                });
            }
            if plan.by_place.is_some() {
                // Rows with places of their own take their places' orders one by one.
                plan.ggml_lanes = None;
                plan.packed = None;
            }
            if plan.packed.is_some() {
                if plan.token_by_token {
                    need_one_token = true;
                    // Only Q4_K's one-token kernel reads the 32-value sums.
                    need_sub_sums |= plan.w_type == GgmlType::Q4_K;
                } else {
                    need_lanes = true;
                }
            }
            let lanes = plan.row_lanes.is_some() || plan.ggml_lanes.is_some();
            need_scales |= plan.scaled.is_some() && !lanes;
            need_infos |= plan.row_lanes.is_some();
            need_lanes |= plan.ggml_lanes.is_some();
            plans[j] = Some(plan);
        }
        let b = buffers;
        b.scales.clear();
        if need_scales {
            group_scales(act_type, acts, a_row, n_blocks, n_tokens / 4, &mut b.scales);
        }
        if need_infos {
            crate::block_sums::block_infos(act_type, acts, a_row, n_tokens, &mut b.infos);
        }
        if need_lanes {
            crate::ggml_lanes::lane_activations_on(
                pool,
                act_type,
                acts,
                a_row,
                n_tokens,
                &mut b.lane_quants,
                &mut b.lane_scales,
            );
        }
        let one_token = need_one_token.then(|| OneTokenNeed {
            call: ONE_TOKEN_CALLS.fetch_add(1, Ordering::Relaxed),
            act_type,
            sub_sums: need_sub_sums,
        });
        let tables = BatchTables {
            one_token,
            scales: &b.scales,
            n_blocks,
            infos: &b.infos,
            lane_quants: &b.lane_quants,
            lane_scales: &b.lane_scales,
        };
        // Tiles claimed piece by piece: a tile's results do not depend on its thread. A piece
        // is split where one product's tiles end and the next one's begin.
        pool.for_claimed_chunks(first_tile[n], &|tiles| {
            let mut start = tiles.start;
            while start < tiles.end {
                let j = (0..n).find(|&j| start < first_tile[j + 1]).unwrap_or(n - 1);
                let end = tiles.end.min(first_tile[j + 1]).max(start + 1);
                if let Some(plan) = &plans[j] {
                    let local = start - first_tile[j]..end - first_tile[j];
                    plan.run_tiles(local, acts, a_row, n_tokens, &tables);
                }
                start = end;
            }
        });
    });
}

/// Per-batch tables the kernels read, kept per thread so that their capacity is reused
/// (no allocation per token).
#[derive(Default)]
struct BatchBuffers {
    /// See [`BatchTables::scales`].
    scales: Vec<[f32; 8]>,
    /// See [`BatchTables::infos`].
    infos: Vec<crate::block_sums::BlockInfo>,
    /// See [`BatchTables::lane_quants`].
    lane_quants: Vec<crate::ggml_lanes::LaneQuants>,
    /// See [`BatchTables::lane_scales`].
    lane_scales: Vec<[f32; 2]>,
}

thread_local! {
    /// The calling thread's per-batch tables.
    static BUFFERS: std::cell::RefCell<BatchBuffers> = std::cell::RefCell::new(BatchBuffers::default());
    /// A row tile's lane-kernel results per token, before they go to the output (reused).
    static LANES_OUT: std::cell::RefCell<Vec<[f32; 8]>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Block scales per (group of four tokens, block), as f32: `[d₀..d₃, s₀..s₃]` for Q8_1
/// activations, `[d₀..d₃, 0…]` for Q8_0.
fn group_scales(
    act_type: GgmlType,
    acts: &[u8],
    a_row: usize,
    n_blocks: usize,
    n_groups: usize,
    out: &mut Vec<[f32; 8]>,
) {
    use crate::blocks::{as_blocks, BlockQ8_0, BlockQ8_1};
    out.reserve(n_groups * n_blocks);
    for g in 0..n_groups {
        let row = |r: usize| &acts[(4 * g + r) * a_row..(4 * g + r + 1) * a_row];
        if act_type == GgmlType::Q8_1 {
            let rows: [&[BlockQ8_1]; 4] = std::array::from_fn(|r| as_blocks(row(r)));
            out.extend((0..n_blocks).map(|i| {
                let mut sc = [0f32; 8];
                for (r, row) in rows.iter().enumerate() {
                    sc[r] = row[i].d.get();
                    sc[4 + r] = row[i].s.get();
                }
                sc
            }));
        } else {
            let rows: [&[BlockQ8_0]; 4] = std::array::from_fn(|r| as_blocks(row(r)));
            out.extend((0..n_blocks).map(|i| {
                let mut sc = [0f32; 8];
                for (r, row) in rows.iter().enumerate() {
                    sc[r] = row[i].d.get();
                }
                sc
            }));
        }
    }
}

/// Rows `t..t + 4` of `acts` (rows `a_row` bytes long), spelled out so that it inlines
/// (`[_; 4]::map` here did not, at a call per row tile and group of four tokens).
#[inline(always)]
fn four_rows(acts: &[u8], t: usize, a_row: usize) -> [&[u8]; 4] {
    let row = |i: usize| &acts[(t + i) * a_row..(t + i + 1) * a_row];
    [row(0), row(1), row(2), row(3)]
}

/// What the kernels read about a batch's activations besides the activations.
struct BatchTables<'a> {
    /// Per group of four tokens and block, the scales as f32 (see `group_scales`).
    scales: &'a [[f32; 8]],
    /// Blocks per activation row.
    n_blocks: usize,
    /// Per token and block, what the block-sum kernels read (see `block_sums::block_infos`).
    infos: &'a [crate::block_sums::BlockInfo],
    /// Per token and block, what the lane kernels in llama.cpp's order read (see
    /// `ggml_lanes::lane_activations`).
    lane_quants: &'a [crate::ggml_lanes::LaneQuants],
    /// As `lane_quants`: `[d, s]`.
    lane_scales: &'a [[f32; 2]],
    /// The tables the one-token packed kernels read, when some product takes them: each
    /// thread builds its own ([`OneTokenTables`]).
    one_token: Option<OneTokenNeed>,
}

/// Which one-token tables a call of [`matmul_many_rows`] needs.
#[derive(Clone, Copy)]
struct OneTokenNeed {
    /// The call's number, from [`ONE_TOKEN_CALLS`].
    call: u64,
    /// The activations' type.
    act_type: GgmlType,
    /// Q4_K's 32-value sums of Q8_K rows, rather than blocks (Q8_0, Q8_1).
    sub_sums: bool,
}

/// Numbers the calls that need one-token tables, so that a thread builds its tables once per
/// call (from 1: a thread's tables start built for call 0, none).
static ONE_TOKEN_CALLS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's one-token tables.
    static ONE_TOKEN: RefCell<OneTokenTables> = RefCell::new(OneTokenTables::default());
}

/// What the one-token packed kernels read about the activation rows, built by every thread
/// for itself from the activations. Built once by the calling thread for all, the tables
/// were read by the other threads and written again by the caller at the next product, and
/// each write had to take the line back from the cores that had read it. On this VM that
/// cost 0.27–0.31 ms per Qwen2.5-0.5B token with fast memory, when its two cores are
/// probably on different dies, and 0.07 ms with slow memory (docs/PERF.md, session 20).
#[derive(Default)]
struct OneTokenTables {
    /// The call they were built for.
    call: u64,
    /// Per token and block, see `packed::one_token_activations`.
    blocks: Vec<crate::packed::OneTokenBlock>,
    /// As `blocks`: the blocks' scales.
    scales: Vec<f32>,
    /// As `blocks`: Q8_1's `s` (`d·Σy`) per block.
    sums: Vec<f32>,
    /// Per token and Q8_K super-block, its 32-value sums (see `packed::q8_k_sub_sums`).
    sub_sums: Vec<[i32; 8]>,
}

impl OneTokenTables {
    /// Builds the tables `need` says from the `n_tokens` rows of `acts` (`a_row` bytes
    /// apart), unless they were built for its call already.
    fn build_for(&mut self, need: OneTokenNeed, acts: &[u8], a_row: usize, n_tokens: usize) {
        if self.call == need.call {
            return;
        }
        self.call = need.call;
        self.blocks.clear();
        self.scales.clear();
        self.sums.clear();
        self.sub_sums.clear();
        if need.sub_sums {
            crate::packed::q8_k_sub_sums(acts, a_row, n_tokens, &mut self.sub_sums);
        } else if need.act_type != GgmlType::Q8_K {
            crate::packed::one_token_activations(
                need.act_type,
                acts,
                a_row,
                n_tokens,
                &mut self.blocks,
                &mut self.scales,
                &mut self.sums,
            );
        }
    }
}

/// The kernels one weight's row tiles run.
struct TilePlan<'a> {
    w: &'a [u8],
    w_row: usize,
    n_out: usize,
    out: SharedOut,
    dot4: Option<crate::VecDot4Fn>,
    scaled: Option<crate::ScaledRows4Fn>,
    plain: crate::VecDotFn,
    /// `plain` for a whole row tile per call, where it exists.
    plain_rows: Option<crate::VecDotRowsFn>,
    repacked: Option<crate::repacked::RepackedKernels>,
    /// The block-sum kernel, when huarizo follows that order and the CPU has it: every
    /// token through it, in no place-dependent order.
    row_lanes: Option<crate::block_sums::RowLanesFn>,
    /// The lane kernel in llama.cpp's order, for batches large enough to pay for it.
    ggml_lanes: Option<crate::ggml_lanes::GgmlLanesFn>,
    /// The packed weight and its kernels, where they give the bits of the plan's order.
    packed: Option<(&'a crate::packed::PackedRows, crate::packed::PackedKernels)>,
    /// Whether the packed weight is multiplied token by token with its one-token kernel
    /// (batches too small for the lanes; Q6_K's batches below its tiled order too, whose
    /// order is the one-token kernel's), else in the lanes.
    token_by_token: bool,
    w_type: GgmlType,
    /// When the rows' places are not their places in this batch and the type's order
    /// depends on them: the type's kernels and the places.
    by_place: Option<(PlaceKernels, &'a [BatchRow])>,
}

/// The kernels of a type whose summation order depends on a row's batch place: rows in the
/// "grouped" order (Q4_K's GEMM, Q6_K's tiled GEMM) four at a time where four consecutive
/// rows have it, the other order one row at a time.
#[derive(Clone, Copy)]
struct PlaceKernels {
    grouped: fn(BatchRow) -> bool,
    one_grouped: crate::VecDotFn,
    one_other: crate::VecDotFn,
    four: Option<crate::VecDot4Fn>,
    tile4: Option<crate::Tile4Fn>,
}

impl PlaceKernels {
    fn for_type(t: GgmlType, n_out: usize) -> Option<PlaceKernels> {
        use crate::repacked::{repacked_kernels, tiled_kernel, tiled_kernel4};
        if let Some(k) = repacked_kernels(t, n_out) {
            return Some(PlaceKernels {
                grouped: BatchRow::q4_k_gemm,
                one_grouped: k.gemm,
                one_other: k.gemv,
                four: k.gemm4,
                tile4: k.tile4,
            });
        }
        tiled_kernel(t).map(|tiled| PlaceKernels {
            grouped: BatchRow::q6_k_tiled,
            one_grouped: tiled,
            one_other: vec_dot_kernel(t),
            four: tiled_kernel4(t),
            tile4: None,
        })
    }
}

impl<'a> TilePlan<'a> {
    fn new(p: &'a mut Product<'_>, n_in: usize, a_row: usize, n_tokens: usize) -> TilePlan<'a> {
        let (w_type, n_out) = (p.w_type, p.n_out);
        let w_row = row_bytes(w_type, n_in);
        assert!(
            p.w.len() >= w_row * n_out,
            "weight shorter than (n_out, n_in)"
        );
        assert!(
            p.out.len() >= n_out * n_tokens,
            "output shorter than (T, n_out)"
        );
        debug_assert!(a_row > 0);
        // Where llama.cpp would repack W, follow its kernels' summation orders.
        let repacked = crate::repacked::repacked_kernels(w_type, n_out);
        let tiled = n_tokens >= crate::repacked::TILED_MIN_ROWS;
        let plain = match crate::repacked::tiled_kernel(w_type) {
            Some(kernel) if tiled => kernel,
            _ => vec_dot_kernel(w_type),
        };
        let plain_rows = match (repacked, crate::repacked::tiled_kernel(w_type)) {
            (None, None) => crate::dot_rows_kernel(w_type),
            _ => None,
        };
        // Four tokens at a time, in the order the one-token kernel for those rows would use.
        let dot4 = match (repacked, crate::repacked::tiled_kernel4(w_type)) {
            (Some(k), _) => k.gemm4,
            (None, Some(kernel)) if tiled => Some(kernel),
            (None, _) if crate::repacked::tiled_kernel(w_type).is_some() && tiled => None,
            (None, _) => crate::vec_dot4_kernel(w_type),
        };
        // Where a pre-scaled kernel exists, the activation scales of each group of four
        // tokens are converted to f32 once per call instead of once per weight row.
        let scaled = match (repacked, n_tokens >= 4) {
            (None, true) => crate::scaled4_rows_kernel(w_type),
            _ => None,
        };
        let row_lanes = crate::block_sums::active_kernel(w_type);
        let ggml_lanes = match row_lanes {
            None => crate::ggml_lanes::batch_kernel(w_type, n_out, n_tokens),
            Some(_) => None,
        };
        // The packed kernels follow llama.cpp's order (as the lane kernels do), not the
        // block-sum order. Q6_K batches of 4–7 tokens are in llama.cpp's one-row order,
        // which is the packed one-token kernel's: they go token by token.
        let token_by_token = n_tokens < crate::ggml_lanes::LANES_MIN_TOKENS
            || (w_type == GgmlType::Q6_K && n_tokens < crate::repacked::TILED_MIN_ROWS);
        let packed = match (p.packed, row_lanes) {
            (Some(packed), None) => {
                assert!(
                    packed.ty() == w_type && packed.n_out() == n_out && packed.n_in() == n_in,
                    "packed weight of another type or shape"
                );
                crate::packed::packed_kernels(w_type).map(|k| (packed, k))
            }
            _ => None,
        };
        TilePlan {
            w_type,
            row_lanes,
            ggml_lanes,
            packed,
            token_by_token,
            by_place: None,
            w: p.w,
            w_row,
            n_out,
            out: SharedOut(p.out.as_mut_ptr()),
            dot4,
            scaled,
            plain,
            plain_rows,
            repacked,
        }
    }

    /// Writes a row tile's results, `values[t][r]` for row `rows.start + r` and token `t`.
    fn store_lanes(&self, values: &[[f32; 8]], rows: std::ops::Range<usize>) {
        for (t, v) in values.iter().enumerate() {
            // SAFETY: each tile (and so each row of `rows`) is run by one thread only, and
            // `t * n_out + rows.end <= n_tokens * n_out <= out.len()` (asserted in `new`).
            unsafe {
                let dst = self.out.0.add(t * self.n_out + rows.start);
                if rows.len() == ROW_TILE {
                    dst.cast::<[f32; ROW_TILE]>().write_unaligned(*v);
                } else {
                    std::ptr::copy_nonoverlapping(v.as_ptr(), dst, rows.len());
                }
            }
        }
    }

    /// [`TilePlan::run`] for each of `tiles`; the one-token packed kernels take them in one
    /// call per token.
    fn run_tiles(
        &self,
        tiles: std::ops::Range<usize>,
        acts: &[u8],
        a_row: usize,
        n_tokens: usize,
        tables: &BatchTables<'_>,
    ) {
        match self.packed {
            Some((packed, kernels)) if self.token_by_token => {
                let (n_blocks, n_out) = (packed.n_blocks(), self.n_out);
                let rows = tiles.start * ROW_TILE..tiles.end * ROW_TILE;
                let groups = packed.groups(tiles);
                let need = tables
                    .one_token
                    .expect("a one-token product's call builds one-token tables");
                ONE_TOKEN.with_borrow_mut(|own| {
                    own.build_for(need, acts, a_row, n_tokens);
                    for t in 0..n_tokens {
                        let blocks = t * n_blocks..(t + 1) * n_blocks;
                        let row = crate::packed::OneToken {
                            blocks: own.blocks.get(blocks.clone()).unwrap_or(&[]),
                            scales: own.scales.get(blocks.clone()).unwrap_or(&[]),
                            sums: own.sums.get(blocks.clone()).unwrap_or(&[]),
                            q8_k: &acts[t * a_row..(t + 1) * a_row],
                            sub_sums: own.sub_sums.get(blocks).unwrap_or(&[]),
                        };
                        // SAFETY: the output is (T, n_out) and a packed weight's n_out is a
                        // multiple of the group size, so these rows of token t are inside it;
                        // this piece of tiles is this thread's alone, so no other thread writes
                        // them.
                        let out = unsafe {
                            std::slice::from_raw_parts_mut(
                                self.out.0.add(t * n_out + rows.start),
                                rows.len(),
                            )
                        };
                        (kernels.one)(groups, packed.stride(), n_blocks, &row, out);
                    }
                });
            }
            _ => {
                for tile in tiles {
                    self.run(tile, acts, a_row, n_tokens, tables);
                }
            }
        }
    }

    /// Computes the rows of tile `tile` for every token.
    fn run(
        &self,
        tile: usize,
        acts: &[u8],
        a_row: usize,
        n_tokens: usize,
        tables: &BatchTables<'_>,
    ) {
        let (scales, n_blocks) = (tables.scales, tables.n_blocks);
        let (w, w_row, n_out, out_ptr) = (self.w, self.w_row, self.n_out, &self.out);
        let rows = tile * ROW_TILE..((tile + 1) * ROW_TILE).min(n_out);
        if let Some((packed, kernels)) = self.packed {
            // A packed group is a row tile (`PACK_ROWS` = `ROW_TILE`). Batches too small for
            // the lanes never come here: `run_tiles` takes them.
            let group = packed.group(tile);
            LANES_OUT.with_borrow_mut(|values| {
                values.resize(n_tokens, [0f32; 8]);
                let (quants, scales) = (tables.lane_quants, tables.lane_scales);
                (kernels.lanes)(group, packed.n_blocks(), quants, scales, values);
                self.store_lanes(values, rows.clone());
            });
            return;
        }
        if self.ggml_lanes.is_some() || self.row_lanes.is_some() {
            LANES_OUT.with_borrow_mut(|values| {
                // Only the lanes of `rows` are read back, each written by the kernel first.
                values.resize(n_tokens, [0f32; 8]);
                let w_tile = &w[rows.start * w_row..rows.end * w_row];
                if let Some(kernel) = self.ggml_lanes {
                    kernel(
                        w_tile,
                        w_row,
                        tables.lane_quants,
                        tables.lane_scales,
                        values,
                    );
                } else if let Some(kernel) = self.row_lanes {
                    kernel(w_tile, w_row, acts, a_row, tables.infos, values);
                }
                self.store_lanes(values, rows.clone());
            });
            return;
        }
        if let Some((k, places)) = self.by_place {
            let put = |t: usize, r: usize, v: f32| {
                // SAFETY: as below.
                unsafe { *out_ptr.0.add(t * n_out + r) = v };
            };
            let act = |t: usize| &acts[t * a_row..(t + 1) * a_row];
            let w_tile = &w[rows.start * w_row..rows.end * w_row];
            let mut t = 0;
            while t < n_tokens {
                let four = t + 4 <= n_tokens && places[t..t + 4].iter().all(|&p| (k.grouped)(p));
                if four {
                    let a = four_rows(acts, t, a_row);
                    if let Some(tile4) = k.tile4 {
                        let mut tile = [[0f32; 4]; ROW_TILE];
                        let tile = &mut tile[..rows.len()];
                        tile4(w_tile, w_row, a, tile);
                        for (r, values) in rows.clone().zip(tile.iter()) {
                            for (i, &v) in values.iter().enumerate() {
                                put(t + i, r, v);
                            }
                        }
                    } else {
                        for r in rows.clone() {
                            let wr = &w[r * w_row..(r + 1) * w_row];
                            let values = match k.four {
                                Some(four) => four(wr, a),
                                None => a.map(|a| (k.one_grouped)(wr, a)),
                            };
                            for (i, v) in values.into_iter().enumerate() {
                                put(t + i, r, v);
                            }
                        }
                    }
                    t += 4;
                } else {
                    let dot = if (k.grouped)(places[t]) {
                        k.one_grouped
                    } else {
                        k.one_other
                    };
                    for r in rows.clone() {
                        put(t, r, dot(&w[r * w_row..(r + 1) * w_row], act(t)));
                    }
                    t += 1;
                }
            }
            return;
        }
        // Four tokens at a time where a four-row kernel exists (same bits as one by one).
        let mut t0 = 0;
        if let Some(tile4) = self.repacked.and_then(|k| k.tile4) {
            let mut tile = [[0f32; 4]; ROW_TILE];
            let tile = &mut tile[..rows.len()];
            let w_tile = &w[rows.start * w_row..rows.end * w_row];
            while t0 + 4 <= n_tokens {
                let a = four_rows(acts, t0, a_row);
                tile4(w_tile, w_row, a, tile);
                for (r, values) in rows.clone().zip(tile.iter()) {
                    for (i, &v) in values.iter().enumerate() {
                        // SAFETY: as below.
                        unsafe { *out_ptr.0.add((t0 + i) * n_out + r) = v };
                    }
                }
                t0 += 4;
            }
        }
        if let Some(scaled) = self.scaled {
            let mut tile = [[0f32; 4]; ROW_TILE];
            let tile = &mut tile[..rows.len()];
            let w_tile = &w[rows.start * w_row..rows.end * w_row];
            while t0 + 4 <= n_tokens {
                let a = four_rows(acts, t0, a_row);
                let sc = &scales[(t0 / 4) * n_blocks..(t0 / 4 + 1) * n_blocks];
                scaled(w_tile, w_row, a, sc, tile);
                for (r, values) in rows.clone().zip(tile.iter()) {
                    for (i, &v) in values.iter().enumerate() {
                        // SAFETY: as below.
                        unsafe { *out_ptr.0.add((t0 + i) * n_out + r) = v };
                    }
                }
                t0 += 4;
            }
        }
        if let Some(dot4) = self.dot4 {
            while t0 + 4 <= n_tokens {
                let a = four_rows(acts, t0, a_row);
                for r in rows.clone() {
                    let values = dot4(&w[r * w_row..(r + 1) * w_row], a);
                    for (i, v) in values.into_iter().enumerate() {
                        // SAFETY: as below.
                        unsafe { *out_ptr.0.add((t0 + i) * n_out + r) = v };
                    }
                }
                t0 += 4;
            }
        }
        if let Some(rows_fn) = self.plain_rows {
            let mut tile = [0f32; ROW_TILE];
            let tile = &mut tile[..rows.len()];
            let w_tile = &w[rows.start * w_row..rows.end * w_row];
            for t in t0..n_tokens {
                rows_fn(w_tile, w_row, &acts[t * a_row..(t + 1) * a_row], tile);
                for (r, &v) in rows.clone().zip(tile.iter()) {
                    // SAFETY: as below.
                    unsafe { *out_ptr.0.add(t * n_out + r) = v };
                }
            }
            return;
        }
        for t in t0..n_tokens {
            let a = &acts[t * a_row..(t + 1) * a_row];
            let dot = self.repacked.map_or(self.plain, |k| k.for_row(t, n_tokens));
            for r in rows.clone() {
                let value = dot(&w[r * w_row..(r + 1) * w_row], a);
                // SAFETY: each tile (and so each row `r`) is run by one thread only, and
                // `t * n_out + r < n_tokens * n_out <= out.len()` (asserted in `new`).
                unsafe { *out_ptr.0.add(t * n_out + r) = value };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dequantize_row;

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matmul_equals_row_by_row_dot_products() {
        let (n_out, n_in, n_tokens) = (37, 64, 3);
        let w_f32 = values(n_out * n_in, 1);
        let mut w = vec![0u8; row_bytes(GgmlType::Q8_0, n_in) * n_out];
        for (src, dst) in w_f32
            .chunks_exact(n_in)
            .zip(w.chunks_exact_mut(row_bytes(GgmlType::Q8_0, n_in)))
        {
            quantize_row(GgmlType::Q8_0, src, dst);
        }
        let x = values(n_tokens * n_in, 2);
        let mut acts = Vec::new();
        quantize_activations(GgmlType::Q8_0, &x, n_in, &mut acts);
        let pool = ThreadPool::new(2);
        let mut out = vec![0f32; n_tokens * n_out];
        matmul(
            &pool,
            GgmlType::Q8_0,
            &w,
            n_out,
            n_in,
            &acts,
            n_tokens,
            &mut out,
        );
        let mut w_deq = vec![0f32; n_in];
        let mut x_deq = vec![0f32; n_in];
        for t in 0..n_tokens {
            let a = &acts[t * row_bytes(GgmlType::Q8_0, n_in)..][..row_bytes(GgmlType::Q8_0, n_in)];
            dequantize_row(GgmlType::Q8_0, a, &mut x_deq);
            for r in 0..n_out {
                let wr =
                    &w[r * row_bytes(GgmlType::Q8_0, n_in)..][..row_bytes(GgmlType::Q8_0, n_in)];
                dequantize_row(GgmlType::Q8_0, wr, &mut w_deq);
                let expect: f32 = w_deq.iter().zip(&x_deq).map(|(a, b)| a * b).sum();
                let got = out[t * n_out + r];
                assert!(
                    (got - expect).abs() <= 1e-3 * (1.0 + expect.abs()),
                    "t={t} r={r}: {got} vs {expect}"
                );
            }
        }
    }
}
