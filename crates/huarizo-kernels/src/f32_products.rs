//! Products of F32 weights with f32 activations, summed as llama.cpp's CPU backend sums
//! them (`huarizo --precision f32`, and F32 model files).
//!
//! ggml multiplies an F32 weight in one of two orders, by the number of activation rows
//! of the product (`ggml_compute_forward_mul_mat`):
//! - **one row** (generation): `ggml_vec_dot_f32`, four accumulators of L lanes over steps
//!   of 4·L values, reduced pairwise (0+2, 1+3, then 0+1) and across lanes
//!   (`GGML_F32x8_REDUCE` / `GGML_F32x16_REDUCE`);
//! - **two rows or more** (a prompt): llamafile's tinyBLAS (`llamafile_sgemm`), one L-lane
//!   accumulator per output over steps of L values, then its `hsum` — provided the weight
//!   has a multiple of 4 rows; otherwise every row takes `ggml_vec_dot_f32`.
//!
//! L is 16 in a build for AVX-512 and 8 in one for AVX2 ([`GgmlIsa`]). Each output's
//! arithmetic is fixed by its order alone (tiles only share loads), so the batched kernel
//! computes 4 weight rows × 4 activation rows at a time with the same bits as one at a
//! time. Every multiply-add is one rounding (`f32::mul_add`, an FMA where the CPU has one).

use crate::isa::{ggml_isa, GgmlIsa};
use crate::matmul::{BatchRow, Product, MAX_PRODUCTS};
use crate::pool::ThreadPool;

/// Weight rows and activation rows of one batched tile.
const TILE: usize = 4;

/// The order an activation row is multiplied in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// `ggml_vec_dot_f32`.
    VecDot,
    /// tinyBLAS.
    Tiled,
}

impl Order {
    /// The order of an activation row in a batch of `batch_rows` rows, for a weight of
    /// `n_out` rows.
    fn of(batch_rows: usize, n_out: usize) -> Order {
        if batch_rows >= 2 && n_out.is_multiple_of(4) {
            Order::Tiled
        } else {
            Order::VecDot
        }
    }
}

/// `ggml_vec_dot_f32` of `x` and `y` in build `isa`'s order, compiled for the widest
/// vectors this CPU has (every kernel gives the same bits).
pub fn vec_dot_f32(isa: GgmlIsa, x: &[f32], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked above), and AVX-512 F where z16
            // is called (checked just before).
            return unsafe {
                match isa {
                    GgmlIsa::Avx512 if has!("avx512f") => z16::vec_dot(x, y),
                    GgmlIsa::Avx512 => yy16::vec_dot(x, y),
                    GgmlIsa::Avx2 => y8::vec_dot(x, y),
                }
            };
        }
    }
    match isa {
        GgmlIsa::Avx2 => p8::vec_dot(x, y),
        GgmlIsa::Avx512 => p16::vec_dot(x, y),
    }
}

/// The kernel table's F32 dot product (`crate::vec_dot`, for callers outside the
/// products, e.g. weight studies): [`vec_dot_f32`] in the order of the build huarizo
/// follows, on little-endian bytes.
pub(crate) fn dot_bytes(w: &[u8], a: &[u8]) -> f32 {
    let (mut w_buf, mut a_buf) = (Vec::new(), Vec::new());
    vec_dot_f32(ggml_isa(), as_f32(w, &mut w_buf), as_f32(a, &mut a_buf))
}

/// A raw output pointer written at disjoint indices by the pool's threads.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each thread writes only the outputs of the weight rows it claimed.
unsafe impl Sync for SharedOut {}
// SAFETY: as above.
unsafe impl Send for SharedOut {}

impl SharedOut {
    /// Writes `v` at `index` (a method, so that closures capture the whole wrapper).
    ///
    /// # Safety
    /// `index` lies inside the output and no other thread writes it meanwhile.
    unsafe fn write(self, index: usize, v: f32) {
        // SAFETY: as the caller promises.
        unsafe { *self.0.add(index) = v }
    }
}

/// `bytes` (little-endian f32 values) as f32s: the bytes themselves when they are
/// aligned (model files and the widened weights are), else a copy in `buf`.
fn as_f32<'a>(bytes: &'a [u8], buf: &'a mut Vec<f32>) -> &'a [f32] {
    // SAFETY: every bit pattern is a valid f32, and `align_to` only reinterprets the
    // aligned middle of the slice.
    let (head, mid, tail) = unsafe { bytes.align_to::<f32>() };
    if head.is_empty() && tail.is_empty() && cfg!(target_endian = "little") {
        return mid;
    }
    buf.clear();
    buf.extend(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    buf
}

/// The products of F32 weights with `acts` `(T, n_in)` f32 activations (bytes), each
/// activation row in the order its batch place gives (`places[t].of` rows; T when
/// `places` is None), in the order of the llama.cpp build huarizo follows.
pub(crate) fn products(
    pool: &ThreadPool,
    n_in: usize,
    acts: &[u8],
    n_tokens: usize,
    products: &mut [Product<'_>],
    places: Option<&[BatchRow]>,
) {
    COPIES.with_borrow_mut(|(x_buf, w_bufs)| {
        let x = as_f32(&acts[..n_tokens * n_in * 4], x_buf);
        products_with(
            piece_kernel(ggml_isa()),
            pool,
            n_in,
            x,
            products,
            places,
            w_bufs,
        );
    });
}

thread_local! {
    /// Aligned copies of activations and of a weight whose bytes are not 4-aligned (a
    /// GGUF file may declare an alignment of 1 or 2), reused from call to call.
    static COPIES: std::cell::RefCell<(Vec<f32>, [Vec<f32>; MAX_PRODUCTS])> =
        const { std::cell::RefCell::new((Vec::new(), [const { Vec::new() }; MAX_PRODUCTS])) };
}

/// [`products`] with the piece kernel `kernel`, activations as f32, `w_bufs` for copies of
/// misaligned weights. All the products' row tiles are claimed in one pass of the pool per
/// block of activation rows.
fn products_with(
    kernel: PieceFn,
    pool: &ThreadPool,
    n_in: usize,
    x: &[f32],
    products: &mut [Product<'_>],
    places: Option<&[BatchRow]>,
    w_bufs: &mut [Vec<f32>; MAX_PRODUCTS],
) {
    let n_tokens = x.len() / n_in;
    assert!(
        products.len() <= MAX_PRODUCTS,
        "at most {MAX_PRODUCTS} products"
    );
    let mut first_tile = [0usize; MAX_PRODUCTS + 1];
    let mut views: [(&[f32], usize, Option<SharedOut>); MAX_PRODUCTS] =
        [(&[], 0, None); MAX_PRODUCTS];
    for (j, (p, w_buf)) in products.iter_mut().zip(w_bufs.iter_mut()).enumerate() {
        let n_out = p.n_out;
        assert!(
            p.w.len() >= n_out * n_in * 4 && p.out.len() >= n_tokens * n_out,
            "F32 product of {n_out} × {n_in} with {n_tokens} rows: buffers too short"
        );
        views[j] = (
            as_f32(&p.w[..n_out * n_in * 4], w_buf),
            n_out,
            Some(SharedOut(p.out.as_mut_ptr())),
        );
        first_tile[j + 1] = first_tile[j] + n_out.div_ceil(TILE);
    }
    let n_tiles = first_tile[products.len()];
    let batch_rows = |t: usize| places.map_or(n_tokens, |p| p[t].of);
    // Blocks of activation rows small enough to stay in L2 while every weight row
    // passes; the order of an output does not depend on the blocking.
    let block = (TOKEN_BLOCK_BYTES / (n_in * 4)).max(TILE) / TILE * TILE;
    for t0 in (0..n_tokens).step_by(block) {
        let tokens = t0..(t0 + block).min(n_tokens);
        pool.for_claimed_chunks(n_tiles, &|tiles| {
            for tile in tiles {
                let j = (0..MAX_PRODUCTS)
                    .find(|&j| tile < first_tile[j + 1])
                    .expect("tile of some product");
                let (w, n_out, out) = views[j];
                let out = out.expect("a view per product");
                let r0 = (tile - first_tile[j]) * TILE;
                let r1 = (r0 + TILE).min(n_out);
                let mut put = |t: usize, i: usize, v: f32| {
                    assert!(
                        t < n_tokens && i < r1 - r0,
                        "output ({t}, {i}) out of range"
                    );
                    // SAFETY: row r0 + i is one of this piece's weight rows (claimed by
                    // this thread alone) and t < n_tokens (asserted): inside product j's
                    // output (checked above).
                    unsafe { out.write(t * n_out + r0 + i, v) }
                };
                let order = |t: usize| Order::of(batch_rows(t), n_out);
                let piece = Piece {
                    ws: &w[r0 * n_in..r1 * n_in],
                    n_in,
                    x,
                    tokens: tokens.clone(),
                    order: &order,
                };
                kernel(&piece, &mut put);
            }
        });
    }
}

/// Bytes of activation rows one pass over the weight rows takes (half of Zen 4's L2).
const TOKEN_BLOCK_BYTES: usize = 512 << 10;

/// Up to [`TILE`] weight rows `ws` times the activation rows `tokens` of `x`.
struct Piece<'a> {
    ws: &'a [f32],
    n_in: usize,
    x: &'a [f32],
    tokens: std::ops::Range<usize>,
    /// The order of activation row t.
    order: &'a (dyn Fn(usize) -> Order + Sync),
}

/// Computes a piece, reporting `put(token, row in ws, value)`.
type PieceFn = fn(&Piece<'_>, &mut dyn FnMut(usize, usize, f32));

/// The piece kernel for build `isa`'s lanes, compiled for the widest vectors this CPU
/// has (every kernel gives the same bits).
fn piece_kernel(isa: GgmlIsa) -> PieceFn {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma");
        match isa {
            GgmlIsa::Avx512 if avx2 && has!("avx512f") => {
                // SAFETY: the CPU has AVX-512 F, AVX2 and FMA (checked above).
                return |p, put| unsafe { z16::piece(p, put) };
            }
            GgmlIsa::Avx512 if avx2 => {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                return |p, put| unsafe { yy16::piece(p, put) };
            }
            GgmlIsa::Avx2 if avx2 => {
                // SAFETY: as above.
                return |p, put| unsafe { y8::piece(p, put) };
            }
            _ => {}
        }
    }
    match isa {
        GgmlIsa::Avx2 => p8::piece,
        GgmlIsa::Avx512 => p16::piece,
    }
}

/// ggml's vector reduction of `ggml_vec_dot_f32`'s lanes after its accumulators were
/// added pairwise: `GGML_F32x8_REDUCE`'s two `hadd`s for 8 lanes, tinyBLAS's `hsum`
/// (`_mm512_reduce_add_ps`) for 16.
#[inline(always)]
fn vec_dot_reduce<const L: usize>(sum: &[f32; L]) -> f32 {
    if L == 8 {
        let t: [f32; 4] = std::array::from_fn(|j| sum[j] + sum[j + 4]);
        (t[0] + t[1]) + (t[2] + t[3])
    } else {
        hsum(sum)
    }
}

/// `ggml_vec_dot_f32`'s scalar tail `sumf += x[i]*y[i]` over `start..n`, as GCC compiles it
/// in the AVX-512 build (read off its `libggml-cpu.so`): products rounded, then added in
/// order, except the last `(n − start) mod 8`, which it fuses into multiply-adds. For the
/// AVX2 build (L = 8), unfused throughout (not read off a binary). No LLaMA-family width
/// leaves a tail: they are multiples of 64.
#[inline(always)]
fn vec_dot_leftovers<const L: usize>(
    mut sumf: f32,
    x: &[f32],
    y: &[f32],
    start: usize,
    n: usize,
) -> f32 {
    let fused_from = if L == 16 { n - (n - start) % 8 } else { n };
    for i in start..fused_from {
        sumf += x[i] * y[i];
    }
    for i in fused_from..n {
        sumf = x[i].mul_add(y[i], sumf);
    }
    sumf
}

/// tinyBLAS's `hsum` (and `_mm512_reduce_add_ps`): halves added until four lanes remain,
/// then (0 + 2) + (1 + 3).
#[inline(always)]
fn hsum<const L: usize>(v: &[f32; L]) -> f32 {
    let mut w = *v;
    let mut len = L;
    while len > 4 {
        len /= 2;
        for i in 0..len {
            w[i] += w[i + len];
        }
    }
    (w[0] + w[2]) + (w[1] + w[3])
}

/// The kernels of one lane count L, with tiles of 4 weight rows × `$C` activation rows,
/// over one vector type `$V` (`$zero`, `$load` from a
/// pointer to L values, `$fma(a, b, acc)`, `$arr` to an array), each function with the
/// attributes `$attr` (the target features it is compiled for).
macro_rules! lane_kernels {
    ($m:ident, [$(#[$attr:meta])*], $L:literal, $C:literal, $V:ty, $zero:path, $load:path, $fma:path, $arr:path, $hsum:path $(,)?) => {
        mod $m {
            #![allow(unused_unsafe, clippy::missing_safety_doc)]
            use super::*;

            $(#[$attr])*
            pub(super) fn vec_dot(x: &[f32], y: &[f32]) -> f32 {
                let n = x.len().min(y.len());
                let step = 4 * $L;
                let mut acc: [$V; 4] = [$zero(); 4];
                for i in (0..n / step * step).step_by(step) {
                    for (j, a) in acc.iter_mut().enumerate() {
                        let k = i + j * $L;
                        // SAFETY: k + L <= n / step * step <= the length of x and y.
                        let (xv, yv) = unsafe { ($load(x.as_ptr().add(k)), $load(y.as_ptr().add(k))) };
                        *a = $fma(xv, yv, *a);
                    }
                }
                let v: [[f32; $L]; 4] = std::array::from_fn(|j| $arr(acc[j]));
                let sum: [f32; $L] = std::array::from_fn(|l| (v[0][l] + v[2][l]) + (v[1][l] + v[3][l]));
                vec_dot_leftovers::<$L>(vec_dot_reduce(&sum), x, y, n / step * step, n)
            }

            /// tinyBLAS outputs of R weight rows × C activation rows.
            $(#[$attr])*
            fn tile<const R: usize, const C: usize>(
                ws: [&[f32]; R],
                xs: [&[f32]; C],
                out: &mut [[f32; C]; R],
            ) {
                let n = ws[0].len();
                assert!(ws.iter().all(|w| w.len() == n) && xs.iter().all(|x| x.len() == n));
                let full = n / $L * $L;
                let mut acc: [[$V; C]; R] = [[$zero(); C]; R];
                for k in (0..full).step_by($L) {
                    // SAFETY: k + L <= full <= n, the length of every row (asserted).
                    let xv: [$V; C] = std::array::from_fn(|c| unsafe { $load(xs[c].as_ptr().add(k)) });
                    for r in 0..R {
                        // SAFETY: as above.
                        let wv = unsafe { $load(ws[r].as_ptr().add(k)) };
                        for c in 0..C {
                            acc[r][c] = $fma(wv, xv[c], acc[r][c]);
                        }
                    }
                }
                for r in 0..R {
                    for c in 0..C {
                        if n == full {
                            out[r][c] = $hsum(acc[r][c]);
                            continue;
                        }
                        let mut lanes = $arr(acc[r][c]);
                        // A partial last step: AVX builds load it zero-padded into the
                        // same accumulator, a lane per value.
                        for i in 0..n - full {
                            lanes[i] = ws[r][full + i].mul_add(xs[c][full + i], lanes[i]);
                        }
                        out[r][c] = hsum(&lanes);
                    }
                }
            }

            $(#[$attr])*
            pub(super) fn tiled_dot(x: &[f32], y: &[f32]) -> f32 {
                let mut out = [[0f32; 1]; 1];
                tile::<1, 1>([x], [y], &mut out);
                out[0][0]
            }

            $(#[$attr])*
            pub(super) fn piece(p: &Piece<'_>, put: &mut dyn FnMut(usize, usize, f32)) {
                let n_in = p.n_in;
                let x_row = |t: usize| &p.x[t * n_in..(t + 1) * n_in];
                let n_rows = p.ws.len() / n_in;
                let w_row = |i: usize| &p.ws[i * n_in..(i + 1) * n_in];
                let (mut group, mut filled) = ([0usize; $C], 0);
                for t in p.tokens.clone() {
                    if (p.order)(t) == Order::VecDot {
                        for i in 0..n_rows {
                            put(t, i, vec_dot(w_row(i), x_row(t)));
                        }
                    } else if n_rows < TILE {
                        for i in 0..n_rows {
                            put(t, i, tiled_dot(w_row(i), x_row(t)));
                        }
                    } else {
                        group[filled] = t;
                        filled += 1;
                        if filled == $C {
                            let mut out = [[0f32; $C]; TILE];
                            let ws: [&[f32]; TILE] = std::array::from_fn(w_row);
                            tile::<TILE, $C>(ws, std::array::from_fn(|c| x_row(group[c])), &mut out);
                            for (i, row) in out.iter().enumerate() {
                                for (c, &v) in row.iter().enumerate() {
                                    put(group[c], i, v);
                                }
                            }
                            filled = 0;
                        }
                    }
                }
                for &t in &group[..filled] {
                    for i in 0..n_rows {
                        put(t, i, tiled_dot(w_row(i), x_row(t)));
                    }
                }
            }
        }
    };
}

/// Portable lanes: arrays, one `mul_add` per lane.
mod portable {
    #[inline(always)]
    pub(super) fn zero<const L: usize>() -> [f32; L] {
        [0.0; L]
    }
    /// # Safety
    /// `p` points to L readable f32 values.
    #[inline(always)]
    pub(super) unsafe fn load<const L: usize>(p: *const f32) -> [f32; L] {
        // SAFETY: as the caller promises.
        unsafe { std::ptr::read_unaligned(p.cast::<[f32; L]>()) }
    }
    #[inline(always)]
    pub(super) fn fma<const L: usize>(a: [f32; L], b: [f32; L], c: [f32; L]) -> [f32; L] {
        std::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
    }
    #[inline(always)]
    pub(super) fn arr<const L: usize>(v: [f32; L]) -> [f32; L] {
        v
    }
    #[inline(always)]
    pub(super) fn hsum<const L: usize>(v: [f32; L]) -> f32 {
        super::hsum(&v)
    }
}

lane_kernels!(
    p8,
    [#[inline]],
    8,
    4,
    [f32; 8],
    portable::zero,
    portable::load,
    portable::fma,
    portable::arr,
    portable::hsum,
);
lane_kernels!(
    p16,
    [#[inline]],
    16,
    4,
    [f32; 16],
    portable::zero,
    portable::load,
    portable::fma,
    portable::arr,
    portable::hsum,
);

#[cfg(target_arch = "x86_64")]
use crate::x86::f32_lanes as lanes;
#[cfg(target_arch = "x86_64")]
lane_kernels!(
    z16,
    [#[target_feature(enable = "avx512f,avx2,fma")]],
    16,
    4,
    std::arch::x86_64::__m512,
    lanes::zero16,
    lanes::load16,
    lanes::fma16,
    lanes::arr16,
    lanes::hsum16,
);
#[cfg(target_arch = "x86_64")]
lane_kernels!(
    y8,
    [#[target_feature(enable = "avx2,fma")]],
    8,
    3,
    std::arch::x86_64::__m256,
    lanes::zero8,
    lanes::load8,
    lanes::fma8,
    lanes::arr8,
    lanes::hsum8,
);
#[cfg(target_arch = "x86_64")]
lane_kernels!(
    yy16,
    [#[target_feature(enable = "avx2,fma")]],
    16,
    1,
    [std::arch::x86_64::__m256; 2],
    lanes::zero2x8,
    lanes::load2x8,
    lanes::fma2x8,
    lanes::arr2x8,
    lanes::hsum2x8,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Rng;

    /// tinyBLAS's dot product of `x` and `y` (one output of `llamafile_sgemm`) in build
    /// `isa`'s order, portable code.
    fn tiled_dot_f32(isa: GgmlIsa, x: &[f32], y: &[f32]) -> f32 {
        match isa {
            GgmlIsa::Avx2 => p8::tiled_dot(x, y),
            GgmlIsa::Avx512 => p16::tiled_dot(x, y),
        }
    }

    fn values(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.f32()).collect()
    }

    /// ggml's loops written out plainly, one accumulator lane at a time.
    fn vec_dot_reference(lanes: usize, x: &[f32], y: &[f32]) -> f32 {
        let step = 4 * lanes;
        let np = x.len() / step * step;
        let mut acc = vec![vec![0f32; lanes]; 4];
        for i in (0..np).step_by(step) {
            for (j, a) in acc.iter_mut().enumerate() {
                for (l, v) in a.iter_mut().enumerate() {
                    let k = i + j * lanes + l;
                    *v = x[k].mul_add(y[k], *v);
                }
            }
        }
        let s: Vec<f32> = (0..lanes)
            .map(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]))
            .collect();
        let mut sumf = if lanes == 8 {
            let t: Vec<f32> = (0..4).map(|j| s[j] + s[j + 4]).collect();
            (t[0] + t[1]) + (t[2] + t[3])
        } else {
            let t8: Vec<f32> = (0..8).map(|j| s[j + 8] + s[j]).collect();
            let t4: Vec<f32> = (0..4).map(|j| t8[j + 4] + t8[j]).collect();
            (t4[0] + t4[2]) + (t4[1] + t4[3])
        };
        // The AVX-512 build fuses the last (n − np) mod 8 products (see
        // `vec_dot_leftovers`).
        let fused_from = if lanes == 16 {
            x.len() - (x.len() - np) % 8
        } else {
            x.len()
        };
        for i in np..x.len() {
            sumf = if i < fused_from {
                sumf + x[i] * y[i]
            } else {
                x[i].mul_add(y[i], sumf)
            };
        }
        sumf
    }

    fn tiled_reference(lanes: usize, x: &[f32], y: &[f32]) -> f32 {
        let mut acc = vec![0f32; lanes];
        for (i, (a, b)) in x.iter().zip(y).enumerate() {
            acc[i % lanes] = a.mul_add(*b, acc[i % lanes]);
        }
        while acc.len() > 4 {
            let half = acc.len() / 2;
            acc = (0..half).map(|i| acc[i] + acc[i + half]).collect();
        }
        (acc[0] + acc[2]) + (acc[1] + acc[3])
    }

    #[test]
    fn dots_follow_ggml_and_tinyblas_orders() {
        let mut rng = Rng(7);
        for n in [64, 576, 896, 100, 7] {
            let (x, y) = (values(&mut rng, n), values(&mut rng, n));
            for (isa, lanes) in [(GgmlIsa::Avx2, 8), (GgmlIsa::Avx512, 16)] {
                let want = vec_dot_reference(lanes, &x, &y);
                assert_eq!(
                    vec_dot_f32(isa, &x, &y).to_bits(),
                    want.to_bits(),
                    "{n} {isa:?}"
                );
                let want = tiled_reference(lanes, &x, &y);
                assert_eq!(
                    tiled_dot_f32(isa, &x, &y).to_bits(),
                    want.to_bits(),
                    "{n} {isa:?}"
                );
            }
        }
    }

    /// Every kernel this CPU can run, with the build it follows.
    fn kernels() -> Vec<(GgmlIsa, PieceFn, &'static str)> {
        let mut k: Vec<(GgmlIsa, PieceFn, &'static str)> = vec![
            (GgmlIsa::Avx2, p8::piece, "portable 8"),
            (GgmlIsa::Avx512, p16::piece, "portable 16"),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                // SAFETY: the CPU has AVX2 and FMA.
                k.push((
                    GgmlIsa::Avx2,
                    |p, put| unsafe { y8::piece(p, put) },
                    "avx2 8",
                ));
                // SAFETY: as above.
                k.push((
                    GgmlIsa::Avx512,
                    |p, put| unsafe { yy16::piece(p, put) },
                    "avx2 16",
                ));
                if has!("avx512f") {
                    // SAFETY: the CPU has AVX-512 F too.
                    k.push((
                        GgmlIsa::Avx512,
                        |p, put| unsafe { z16::piece(p, put) },
                        "avx512 16",
                    ));
                }
            }
        }
        k
    }

    /// Batched products equal their rows one at a time, in each row's order; a batch
    /// of one takes `ggml_vec_dot_f32`, larger batches tinyBLAS, and a weight whose row
    /// count is not a multiple of 4 takes `ggml_vec_dot_f32` for every row.
    #[test]
    fn products_take_each_rows_order() {
        let mut rng = Rng(11);
        // 88 values end in a partial step of 16 lanes, 64 do not.
        for (isa, kernel, name) in kernels() {
            for (n_in, n_out, n_tokens) in [
                (88, 12, 1),
                (88, 12, 9),
                (64, 12, 9),
                (88, 10, 6),
                (64, 4, 2),
            ] {
                let w = values(&mut rng, n_out * n_in);
                let x = values(&mut rng, n_tokens * n_in);
                let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
                for threads in [1, 2] {
                    let pool = ThreadPool::new(threads);
                    let mut out = vec![0f32; n_tokens * n_out];
                    let mut p = [Product {
                        w_type: huarizo_formats::GgmlType::F32,
                        w: &bytes,
                        packed: None,
                        n_out,
                        out: &mut out,
                    }];
                    products_with(
                        kernel,
                        &pool,
                        n_in,
                        &x,
                        &mut p,
                        None,
                        &mut Default::default(),
                    );
                    for t in 0..n_tokens {
                        for r in 0..n_out {
                            let (wr, xt) = (&w[r * n_in..][..n_in], &x[t * n_in..][..n_in]);
                            let want = match Order::of(n_tokens, n_out) {
                                Order::VecDot => vec_dot_f32(isa, wr, xt),
                                Order::Tiled => tiled_dot_f32(isa, wr, xt),
                            };
                            assert_eq!(
                                out[t * n_out + r].to_bits(),
                                want.to_bits(),
                                "{name} {n_in}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Weights and activations at odd addresses (a GGUF file may declare an alignment of
    /// 1) are copied, with the same results.
    #[test]
    fn misaligned_bytes_give_the_same_products() {
        let mut rng = Rng(5);
        let (n_in, n_out, n_tokens) = (64, 8, 5);
        let le = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (w, x) = (
            values(&mut rng, n_out * n_in),
            values(&mut rng, n_tokens * n_in),
        );
        let pool = ThreadPool::new(2);
        let run = |shift: usize| {
            let mut wb = vec![0u8; shift];
            wb.extend(le(&w));
            let mut xb = vec![0u8; shift];
            xb.extend(le(&x));
            let mut out = vec![0f32; n_tokens * n_out];
            let mut p = [Product {
                w_type: huarizo_formats::GgmlType::F32,
                w: &wb[shift..],
                packed: None,
                n_out,
                out: &mut out,
            }];
            products(&pool, n_in, &xb[shift..], n_tokens, &mut p, None);
            out
        };
        let aligned = run(0);
        assert_eq!(run(1), aligned);
        assert_eq!(run(2), aligned);
    }

    /// Q, K and V in one pass of the pool give what each gives alone.
    #[test]
    fn several_products_in_one_pass_equal_one_at_a_time() {
        let mut rng = Rng(9);
        let (n_in, n_tokens) = (64, 6);
        let le = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let x = le(&values(&mut rng, n_tokens * n_in));
        let shapes = [12, 4, 10];
        let ws: Vec<Vec<u8>> = shapes
            .iter()
            .map(|&n| le(&values(&mut rng, n * n_in)))
            .collect();
        let pool = ThreadPool::new(2);
        let mut outs: Vec<Vec<f32>> = shapes.iter().map(|&n| vec![0f32; n_tokens * n]).collect();
        let mut together: Vec<Product<'_>> = outs
            .iter_mut()
            .zip(&ws)
            .zip(shapes)
            .map(|((out, w), n_out)| Product {
                w_type: huarizo_formats::GgmlType::F32,
                w,
                packed: None,
                n_out,
                out,
            })
            .collect();
        products(&pool, n_in, &x, n_tokens, &mut together, None);
        drop(together);
        for ((w, &n_out), want) in ws.iter().zip(&shapes).zip(&outs) {
            let mut alone = vec![0f32; n_tokens * n_out];
            let mut p = [Product {
                w_type: huarizo_formats::GgmlType::F32,
                w,
                packed: None,
                n_out,
                out: &mut alone,
            }];
            products(&pool, n_in, &x, n_tokens, &mut p, None);
            assert_eq!(&alone, want);
        }
    }
}
