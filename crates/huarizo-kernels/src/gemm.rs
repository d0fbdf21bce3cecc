//! f32 matrix products for training: the three products of a linear layer's forward and
//! backward pass (`Y = X·Wᵀ`, `dX = dY·W`, `dW = dYᵀ·X`) with the weight left in its ggml
//! type and dequantized a chunk of rows at a time (by the pool's threads, into one shared
//! buffer), so that a quantized base model is never held in f32 whole. The products run
//! on the `gemm` crate's packed SGEMM (AVX2/FMA or AVX-512 chosen at run time), split over
//! the thread pool.
//!
//! Unlike [`crate::matmul`], nothing here imitates llama.cpp's rounding: activations stay
//! f32, as in PyTorch, because gradients are checked against autograd.

use crate::pool::{chunk, ThreadPool};
use crate::GgmlType;

/// Weight rows dequantized per tile (bounds the per-thread buffer to `TILE_ROWS × n_in`).
const TILE_ROWS: usize = 64;

/// A weight matrix `(n_out, n_in)`, row-major: in a ggml type (read through a tile
/// dequantizer) or plain f32 (trainable weights).
#[derive(Clone, Copy, Debug)]
pub enum Weight<'a> {
    /// Rows stored in a ggml type, `row_bytes(n_in)` bytes each.
    Ggml {
        /// Storage type.
        ty: GgmlType,
        /// The whole tensor's bytes.
        data: &'a [u8],
    },
    /// Plain f32 values, `n_out × n_in`.
    F32(&'a [f32]),
}

/// A weight and its shape.
#[derive(Clone, Copy, Debug)]
pub struct WeightMat<'a> {
    /// The values.
    pub w: Weight<'a>,
    /// Rows (outputs).
    pub n_out: usize,
    /// Columns (inputs).
    pub n_in: usize,
}

impl WeightMat<'_> {
    fn check(&self) {
        match self.w {
            Weight::F32(w) => assert_eq!(w.len(), self.n_out * self.n_in, "f32 weight size"),
            Weight::Ggml { ty, data } => {
                let row = ty.row_bytes(self.n_in).expect("whole blocks per row");
                assert!(data.len() >= row * self.n_out, "ggml weight size");
            }
        }
    }
}

/// A row-major matrix view for [`sgemm`]: element `(i, j)` at `ptr[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct View {
    rs: isize,
    cs: isize,
}

const ROW_MAJOR: fn(usize) -> View = |cols| View {
    rs: cols as isize,
    cs: 1,
};
const TRANSPOSED: fn(usize) -> View = |cols| View {
    rs: 1,
    cs: cols as isize,
};

/// `C (m×n) = beta·C + A (m×k) · B (k×n)` on raw views.
///
/// # Safety
/// Every element addressed through the views (`a` over m×k, `b` over k×n, `c` over m×n)
/// must lie inside its allocation, and no other thread may write the addressed elements
/// of `c` (or read them while this runs).
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm(
    (m, k, n): (usize, usize, usize),
    a: *const f32,
    av: View,
    b: *const f32,
    bv: View,
    beta: f32,
    c: *mut f32,
    cv: View,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the caller guarantees the views stay in bounds and `c` is exclusively ours.
    // `gemm` computes dst = alpha·dst + beta·lhs·rhs (dst read only when asked).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            cv.cs,
            cv.rs,
            beta != 0.0,
            a,
            av.cs,
            av.rs,
            b,
            bv.cs,
            bv.rs,
            beta,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A raw pointer that may cross into the pool's threads (each writes a disjoint part).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint output regions to the pool's threads, which all
// finish before the borrow the pointer came from ends.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Weight rows dequantized at once: a chunk of at most this many f32 values, shared by
/// the threads (bounds the buffer while keeping each product deep).
const CHUNK_VALUES: usize = 2 << 20;

impl WeightMat<'_> {
    /// Rows per chunk for this weight (a multiple of [`TILE_ROWS`]).
    fn chunk_rows(&self) -> usize {
        (CHUNK_VALUES / self.n_in.max(1) / TILE_ROWS).max(1) * TILE_ROWS
    }

    /// Rows `rows` as f32: the weight itself for f32 weights, else dequantized into
    /// `buf` by the pool's threads.
    fn chunk<'s>(
        &'s self,
        pool: &ThreadPool,
        rows: std::ops::Range<usize>,
        buf: &'s mut Vec<f32>,
    ) -> &'s [f32] {
        let n_in = self.n_in;
        match self.w {
            Weight::F32(w) => &w[rows.start * n_in..rows.end * n_in],
            Weight::Ggml { ty, data } => {
                let row_bytes = ty.row_bytes(n_in).expect("whole blocks per row");
                buf.resize(rows.len() * n_in, 0.0);
                let out = SendPtr(buf.as_mut_ptr());
                let start = rows.start;
                pool.for_chunks(rows.len(), &|part| {
                    for r in part {
                        // SAFETY: row r of the chunk lies inside `buf` (sized above) and
                        // only the thread given r writes it.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(out.get().add(r * n_in), n_in)
                        };
                        let src = (start + r) * row_bytes;
                        crate::dequantize_row(ty, &data[src..src + row_bytes], dst);
                    }
                });
                &buf[..rows.len() * n_in]
            }
        }
    }
}

/// `y (t, n_out) = x (t, n_in) · Wᵀ`, plus the old `y` when `accumulate`.
pub fn matmul_xwt(
    pool: &ThreadPool,
    w: &WeightMat<'_>,
    x: &[f32],
    t: usize,
    y: &mut [f32],
    accumulate: bool,
) {
    w.check();
    let (n_in, n_out) = (w.n_in, w.n_out);
    assert_eq!(x.len(), t * n_in, "x is (t, n_in)");
    assert_eq!(y.len(), t * n_out, "y is (t, n_out)");
    let beta = if accumulate { 1.0 } else { 0.0 };
    let y_ptr = SendPtr(y.as_mut_ptr());
    let n_threads = pool.n_threads();
    let mut buf = Vec::new();
    let step = w.chunk_rows();
    for c0 in (0..n_out).step_by(step) {
        let rows = c0..(c0 + step).min(n_out);
        let wc = w.chunk(pool, rows.clone(), &mut buf);
        // Each thread takes an equal run of the chunk's rows (output columns).
        pool.run(&|i| {
            let part = chunk(rows.len(), n_threads, i);
            let (lo, hi) = (part.start, part.end);
            if lo >= hi {
                return;
            }
            // SAFETY: x is t×n_in; the chunk's rows lo..hi are read transposed (in
            // bounds of `wc`); the output is columns rows.start+lo..rows.start+hi of y
            // (t×n_out), which only this thread writes.
            unsafe {
                sgemm(
                    (t, n_in, hi - lo),
                    x.as_ptr(),
                    ROW_MAJOR(n_in),
                    wc.as_ptr().add(lo * n_in),
                    TRANSPOSED(n_in),
                    beta,
                    y_ptr.get().add(rows.start + lo),
                    ROW_MAJOR(n_out),
                );
            }
        });
    }
}

/// `dx (t, n_in) = dy (t, n_out) · W`, plus the old `dx` when `accumulate`.
pub fn matmul_dyw(
    pool: &ThreadPool,
    w: &WeightMat<'_>,
    dy: &[f32],
    t: usize,
    dx: &mut [f32],
    accumulate: bool,
) {
    w.check();
    let (n_in, n_out) = (w.n_in, w.n_out);
    assert_eq!(dy.len(), t * n_out, "dy is (t, n_out)");
    assert_eq!(dx.len(), t * n_in, "dx is (t, n_in)");
    let dx_ptr = SendPtr(dx.as_mut_ptr());
    let n_threads = pool.n_threads();
    let mut buf = Vec::new();
    let step = w.chunk_rows();
    for c0 in (0..n_out).step_by(step) {
        let rows = c0..(c0 + step).min(n_out);
        let wc = w.chunk(pool, rows.clone(), &mut buf);
        let beta = if accumulate || c0 > 0 { 1.0 } else { 0.0 };
        // Threads take disjoint row ranges of dx; each product is as deep as the chunk.
        pool.run(&|i| {
            let rows_t = chunk(t, n_threads, i);
            if rows_t.is_empty() {
                return;
            }
            // SAFETY: dy rows `rows_t`, columns `rows` (in bounds of t×n_out); `wc` is
            // rows.len()×n_in; the output is rows `rows_t` of dx, which only this thread
            // writes.
            unsafe {
                sgemm(
                    (rows_t.len(), rows.len(), n_in),
                    dy.as_ptr().add(rows_t.start * n_out + rows.start),
                    ROW_MAJOR(n_out),
                    wc.as_ptr(),
                    ROW_MAJOR(n_in),
                    beta,
                    dx_ptr.get().add(rows_t.start * n_in),
                    ROW_MAJOR(n_in),
                );
            }
        });
    }
}

/// `dw (n_out, n_in) = dyᵀ · x` for `dy (t, n_out)` and `x (t, n_in)`, plus the old `dw`
/// when `accumulate`.
pub fn matmul_dytx(
    pool: &ThreadPool,
    dy: &[f32],
    x: &[f32],
    t: usize,
    dw: &mut [f32],
    accumulate: bool,
) {
    let n_out = dy.len() / t.max(1);
    let n_in = x.len() / t.max(1);
    assert_eq!(dy.len(), t * n_out, "dy is (t, n_out)");
    assert_eq!(x.len(), t * n_in, "x is (t, n_in)");
    assert_eq!(dw.len(), n_out * n_in, "dw is (n_out, n_in)");
    let beta = if accumulate { 1.0 } else { 0.0 };
    let dw_ptr = SendPtr(dw.as_mut_ptr());
    let n_threads = pool.n_threads();
    pool.run(&|i| {
        let rows = chunk(n_out, n_threads, i);
        // SAFETY: dy is read transposed over columns `rows` (t×n_out in bounds), x is
        // t×n_in, and rows `rows` of dw belong to this thread alone.
        unsafe {
            sgemm(
                (rows.len(), t, n_in),
                dy.as_ptr().add(rows.start),
                TRANSPOSED(n_out),
                x.as_ptr(),
                ROW_MAJOR(n_in),
                beta,
                dw_ptr.get().add(rows.start * n_in),
                ROW_MAJOR(n_in),
            );
        }
    });
}

/// Single-threaded `c (m, n) = beta·c + op(a) · op(b)` on contiguous row-major matrices:
/// `a` is `m×k` (`k×m` when `a_t`), `b` is `k×n` (`n×k` when `b_t`). For the small
/// products of LoRA adapters and attention heads.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    beta: f32,
    c: &mut [f32],
) {
    assert_eq!(a.len(), m * k, "a holds m·k values");
    assert_eq!(b.len(), k * n, "b holds k·n values");
    assert_eq!(c.len(), m * n, "c holds m·n values");
    let av = if a_t { TRANSPOSED(m) } else { ROW_MAJOR(k) };
    let bv = if b_t { TRANSPOSED(k) } else { ROW_MAJOR(n) };
    // SAFETY: the sizes were checked above, and `c` is borrowed mutably.
    unsafe {
        sgemm(
            (m, k, n),
            a.as_ptr(),
            av,
            b.as_ptr(),
            bv,
            beta,
            c.as_mut_ptr(),
            ROW_MAJOR(n),
        );
    }
}

/// A strided f32 matrix inside a larger buffer: rows `rows` apart, unit column stride.
/// Used by the attention kernels to address one head inside a `(T, H·D)` buffer.
#[derive(Clone, Copy, Debug)]
pub struct Strided {
    /// Index of element (0, 0).
    pub offset: usize,
    /// Distance between rows.
    pub row_stride: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
}

impl Strided {
    fn last_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            self.offset
        } else {
            self.offset + (self.rows - 1) * self.row_stride + self.cols
        }
    }
}

/// `c = beta·c + op(a)·op(b)` where `a` and `b` are strided views into f32 buffers and `c`
/// is a contiguous `m×n` matrix (single-threaded).
pub fn gemm_strided(
    a: (&[f32], Strided, bool),
    b: (&[f32], Strided, bool),
    beta: f32,
    c: &mut [f32],
) {
    let (abuf, av, a_t) = a;
    let (bbuf, bv, b_t) = b;
    assert!(av.last_index() <= abuf.len() && bv.last_index() <= bbuf.len());
    let (m, k) = if a_t {
        (av.cols, av.rows)
    } else {
        (av.rows, av.cols)
    };
    let (k2, n) = if b_t {
        (bv.cols, bv.rows)
    } else {
        (bv.rows, bv.cols)
    };
    assert_eq!(k, k2, "inner dimensions agree");
    assert_eq!(c.len(), m * n, "c holds m·n values");
    let view = |v: &Strided, t: bool| {
        if t {
            View {
                rs: 1,
                cs: v.row_stride as isize,
            }
        } else {
            View {
                rs: v.row_stride as isize,
                cs: 1,
            }
        }
    };
    // SAFETY: both views were checked to end inside their buffers; `c` is ours and sized.
    unsafe {
        sgemm(
            (m, k, n),
            abuf.as_ptr().add(av.offset),
            view(&av, a_t),
            bbuf.as_ptr().add(bv.offset),
            view(&bv, b_t),
            beta,
            c.as_mut_ptr(),
            ROW_MAJOR(n),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += f64::from(a[i * k + p]) * f64::from(b[p * n + j]);
                }
            }
        }
        c.into_iter().map(|v| v as f32).collect()
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn transpose(rows: usize, cols: usize, a: &[f32]) -> Vec<f32> {
        let mut t = vec![0.0; a.len()];
        for i in 0..rows {
            for j in 0..cols {
                t[j * rows + i] = a[i * cols + j];
            }
        }
        t
    }

    fn close(a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn linear_products_match_a_naive_reference_for_f32_and_quantized_weights() {
        let pool = ThreadPool::new(2);
        let (t, n_in, n_out) = (5, 64, 130);
        let x = values(t * n_in, 1);
        let dy = values(t * n_out, 2);
        let w_f32 = values(n_out * n_in, 3);
        for ty in [GgmlType::F32, GgmlType::Q4_1, GgmlType::Q8_0] {
            let data = {
                let bytes = ty.row_bytes(n_in).unwrap();
                let mut packed = vec![0u8; bytes * n_out];
                for (src, dst) in w_f32.chunks_exact(n_in).zip(packed.chunks_exact_mut(bytes)) {
                    crate::quantize_row_ref(ty, src, dst);
                }
                packed
            };
            let mut w_deq = vec![0.0; n_out * n_in];
            let bytes = ty.row_bytes(n_in).unwrap();
            for (src, dst) in data.chunks_exact(bytes).zip(w_deq.chunks_exact_mut(n_in)) {
                crate::dequantize_row(ty, src, dst);
            }
            let w = WeightMat {
                w: Weight::Ggml { ty, data: &data },
                n_out,
                n_in,
            };
            let mut y = vec![1.0; t * n_out];
            matmul_xwt(&pool, &w, &x, t, &mut y, false);
            close(
                &y,
                &naive(t, n_in, n_out, &x, &transpose(n_out, n_in, &w_deq)),
            );
            let mut dx = vec![0.5; t * n_in];
            matmul_dyw(&pool, &w, &dy, t, &mut dx, true);
            let want: Vec<f32> = naive(t, n_out, n_in, &dy, &w_deq)
                .iter()
                .map(|v| v + 0.5)
                .collect();
            close(&dx, &want);
        }
        let mut dw = vec![0.0; n_out * n_in];
        matmul_dytx(&pool, &dy, &x, t, &mut dw, false);
        close(&dw, &naive(n_out, t, n_in, &transpose(t, n_out, &dy), &x));
    }

    #[test]
    fn weights_of_several_chunks_give_the_same_products() {
        let pool = ThreadPool::new(2);
        let (t, n_in, n_out) = (3, 4096, 1100);
        assert!(
            n_out > CHUNK_VALUES / n_in,
            "the weight spans several chunks"
        );
        let x = values(t * n_in, 6);
        let dy = values(t * n_out, 7);
        let w_f32 = values(n_out * n_in, 8);
        let w = WeightMat {
            w: Weight::F32(&w_f32),
            n_out,
            n_in,
        };
        let mut y = vec![0.0; t * n_out];
        matmul_xwt(&pool, &w, &x, t, &mut y, false);
        close(
            &y,
            &naive(t, n_in, n_out, &x, &transpose(n_out, n_in, &w_f32)),
        );
        let mut dx = vec![0.0; t * n_in];
        matmul_dyw(&pool, &w, &dy, t, &mut dx, false);
        close(&dx, &naive(t, n_out, n_in, &dy, &w_f32));
    }

    #[test]
    fn small_and_strided_products_match_a_naive_reference() {
        let (m, k, n) = (3, 7, 4);
        let a = values(m * k, 4);
        let b = values(k * n, 5);
        let want = naive(m, k, n, &a, &b);
        let mut c = vec![0.0; m * n];
        gemm(
            (m, k, n),
            &transpose(m, k, &a),
            true,
            &b,
            false,
            0.0,
            &mut c,
        );
        close(&c, &want);
        gemm(
            (m, k, n),
            &a,
            false,
            &transpose(k, n, &b),
            true,
            0.0,
            &mut c,
        );
        close(&c, &want);
        // a as columns 2..9 of a 3×12 buffer.
        let mut wide = vec![9.0; m * 12];
        for i in 0..m {
            wide[i * 12 + 2..i * 12 + 2 + k].copy_from_slice(&a[i * k..(i + 1) * k]);
        }
        let av = Strided {
            offset: 2,
            row_stride: 12,
            rows: m,
            cols: k,
        };
        let bv = Strided {
            offset: 0,
            row_stride: n,
            rows: k,
            cols: n,
        };
        gemm_strided((&wide, av, false), (&b, bv, false), 0.0, &mut c);
        close(&c, &want);
    }
}
