//! The decoder's element-wise operations in plain f32 with their derivatives, for training:
//! RMS norm, RoPE, the gated activations, causal attention over one sequence's heads and
//! the cross-entropy of a logits row. They follow PyTorch's formulas (not ggml's lookup
//! tables and rounding), because training is checked against autograd.

use crate::gemm::{gemm_strided, Strided};
use crate::pool::ThreadPool;

/// `y = x / sqrt(mean(x²) + eps) ⊙ w` for one row; returns the factor `r = 1/sqrt(…)`,
/// which [`rms_norm_backward`] needs.
pub fn rms_norm_forward(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) -> f32 {
    let sum: f32 = x.iter().map(|v| v * v).sum();
    let r = 1.0 / (sum / x.len() as f32 + eps).sqrt();
    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
        *y = x * r * w;
    }
    r
}

/// Adds to `dx` the gradient through [`rms_norm_forward`] of `dy` (`r` as it returned):
/// `dx += r·(dy⊙w) − x·r³·mean(dy⊙w⊙x)`.
pub fn rms_norm_backward(x: &[f32], w: &[f32], r: f32, dy: &[f32], dx: &mut [f32]) {
    let n = x.len() as f32;
    let dot: f32 = x.iter().zip(dy).zip(w).map(|((x, dy), w)| x * dy * w).sum();
    let k = r * r * r * dot / n;
    for (((dx, &x), &dy), &w) in dx.iter_mut().zip(x).zip(dy).zip(w) {
        *dx += r * dy * w - k * x;
    }
}

/// RoPE frequencies `θᵢ = base^(−2i/n_rot) · freq_scale / factorᵢ` for `n_rot/2` pairs,
/// computed as PyTorch's `1 / base ** (arange(0, n_rot, 2) / n_rot)`.
pub fn rope_frequencies(
    n_rot: usize,
    base: f32,
    freq_scale: f32,
    factors: Option<&[f32]>,
) -> Vec<f32> {
    (0..n_rot / 2)
        .map(|i| {
            let inv = 1.0 / base.powf((2 * i) as f32 / n_rot as f32);
            inv * freq_scale / factors.map_or(1.0, |f| f[i])
        })
        .collect()
}

/// Rotates one head `x` by the angles `pos·θᵢ` (`inverse` rotates back, which is the
/// gradient of the rotation). `neox` pairs element i with i + n_rot/2.
pub fn rope_rotate(x: &mut [f32], pos: usize, freqs: &[f32], neox: bool, inverse: bool) {
    let half = freqs.len();
    for (i, &f) in freqs.iter().enumerate() {
        let angle = pos as f32 * f;
        let (sin, cos) = angle.sin_cos();
        let sin = if inverse { -sin } else { sin };
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * cos - x1 * sin;
        x[b] = x0 * sin + x1 * cos;
    }
}

/// The gate activation of a gated MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// SiLU (`x·σ(x)`), SwiGLU MLPs.
    Silu,
    /// GELU, tanh approximation, GeGLU MLPs.
    GeluTanh,
}

const GELU_C: f32 = 0.797_884_6; // sqrt(2/π)
const GELU_A: f32 = 0.044_715;

impl Gate {
    /// The activation's value.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Gate::Silu => x / (1.0 + (-x).exp()),
            Gate::GeluTanh => 0.5 * x * (1.0 + (GELU_C * (x + GELU_A * x * x * x)).tanh()),
        }
    }

    /// Its derivative.
    pub fn derivative(self, x: f32) -> f32 {
        match self {
            Gate::Silu => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 + x * (1.0 - s))
            }
            Gate::GeluTanh => {
                let t = (GELU_C * (x + GELU_A * x * x * x)).tanh();
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x)
            }
        }
    }
}

/// `out = act(gate) ⊙ up`.
pub fn gated_forward(gate_fn: Gate, gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = gate_fn.apply(g) * u;
    }
}

/// Gradients of [`gated_forward`]: `dgate = d·up·act'(gate)`, `dup = d·act(gate)`.
pub fn gated_backward(
    gate_fn: Gate,
    gate: &[f32],
    up: &[f32],
    d: &[f32],
    dgate: &mut [f32],
    dup: &mut [f32],
) {
    for i in 0..gate.len() {
        dgate[i] = d[i] * up[i] * gate_fn.derivative(gate[i]);
        dup[i] = d[i] * gate_fn.apply(gate[i]);
    }
}

/// Cross-entropy of one logits row against `target`: returns `logsumexp − logit[target]`,
/// and when `grad` is set replaces the row by its gradient `softmax − onehot(target)`.
pub fn cross_entropy(row: &mut [f32], target: usize, grad: bool) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let picked = row[target];
    let sum: f64 = if grad {
        // One exp per value: keep them in the row, then normalize.
        let mut sum = 0f64;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += f64::from(*v);
        }
        let inv = (1.0 / sum) as f32;
        row.iter_mut().for_each(|v| *v *= inv);
        row[target] -= 1.0;
        sum
    } else {
        row.iter().map(|&v| f64::from((v - max).exp())).sum()
    };
    max + sum.ln() as f32 - picked
}

/// Shape of causal self-attention over a batch of sequences, for training.
#[derive(Clone, Copy, Debug)]
pub struct TrainAttn {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (each serves `n_head / n_head_kv` query heads).
    pub n_head_kv: usize,
    /// Query/key head width.
    pub head_dim: usize,
    /// Value head width.
    pub head_dim_v: usize,
    /// Factor on the query·key products.
    pub scale: f32,
    /// A query at position p sees keys at positions > p − window.
    pub window: Option<usize>,
}

impl TrainAttn {
    fn view(&self, row0: usize, n: usize, head: usize, width: usize, heads: usize) -> Strided {
        Strided {
            offset: row0 * heads * width + head * width,
            row_stride: heads * width,
            rows: n,
            cols: width,
        }
    }

    /// Scores of one head turned into probabilities: `p (n×n) = softmax(scale·q kᵀ + mask)`.
    fn probabilities(&self, q: &[f32], k: &[f32], row0: usize, n: usize, h: usize, p: &mut [f32]) {
        let kv = h / (self.n_head / self.n_head_kv);
        let qv = self.view(row0, n, h, self.head_dim, self.n_head);
        let kvw = self.view(row0, n, kv, self.head_dim, self.n_head_kv);
        gemm_strided((q, qv, false), (k, kvw, true), 0.0, p);
        for i in 0..n {
            let row = &mut p[i * n..(i + 1) * n];
            let lo = self.window.map_or(0, |w| (i + 1).saturating_sub(w));
            let mut max = f32::NEG_INFINITY;
            for v in &mut row[lo..=i] {
                *v *= self.scale;
                max = max.max(*v);
            }
            let mut sum = 0.0f32;
            for v in &mut row[lo..=i] {
                *v = (*v - max).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            row[lo..=i].iter_mut().for_each(|v| *v *= inv);
            row[..lo].fill(0.0);
            row[i + 1..].fill(0.0);
        }
    }
}

/// Hands disjoint parts of an output buffer to the pool's threads.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32, usize);
// SAFETY: each task writes only the columns of its own heads (see the callers), and the
// pool returns before the borrow the pointer came from ends.
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn new(buf: &mut [f32]) -> SharedOut {
        SharedOut(buf.as_mut_ptr(), buf.len())
    }

    /// Adds the contiguous `rows×view.cols` matrix `m` into the view.
    ///
    /// # Safety
    /// No other thread may touch the elements of `view` while this runs.
    unsafe fn add(&self, view: Strided, m: &[f32], overwrite: bool) {
        assert!(
            view.rows == 0 || view.offset + (view.rows - 1) * view.row_stride + view.cols <= self.1
        );
        for (r, src) in m.chunks_exact(view.cols).enumerate() {
            // SAFETY: in bounds (checked above) and exclusive to this thread (caller).
            let dst = unsafe {
                std::slice::from_raw_parts_mut(
                    self.0.add(view.offset + r * view.row_stride),
                    view.cols,
                )
            };
            if overwrite {
                dst.copy_from_slice(src);
            } else {
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        }
    }
}

/// Causal attention of every sequence (`spans`: each a range of rows of the batch, at
/// positions 0, 1, … within its sequence): `out (T, H·Dv)` from `q (T, H·D)`, `k (T,
/// Hkv·D)`, `v (T, Hkv·Dv)`. Tasks are (sequence, key/value head) pairs spread over the
/// pool.
pub fn attention_forward(
    pool: &ThreadPool,
    p: &TrainAttn,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    spans: &[std::ops::Range<usize>],
    out: &mut [f32],
) {
    let group = p.n_head / p.n_head_kv;
    let tasks: Vec<(usize, usize)> = (0..spans.len())
        .flat_map(|s| (0..p.n_head_kv).map(move |kv| (s, kv)))
        .collect();
    let shared = SharedOut::new(out);
    let next = std::sync::atomic::AtomicUsize::new(0);
    pool.run(&|_| {
        let mut probs = Vec::new();
        let mut o = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&(s, kv)) = tasks.get(i) else { break };
            let (row0, n) = (spans[s].start, spans[s].len());
            probs.resize(n * n, 0.0);
            o.resize(n * p.head_dim_v, 0.0);
            for h in kv * group..(kv + 1) * group {
                p.probabilities(q, k, row0, n, h, &mut probs);
                let pv = Strided {
                    offset: 0,
                    row_stride: n,
                    rows: n,
                    cols: n,
                };
                let vv = p.view(row0, n, kv, p.head_dim_v, p.n_head_kv);
                gemm_strided((&probs, pv, false), (v, vv, false), 0.0, &mut o);
                // SAFETY: head h's columns of this sequence's rows belong to this task.
                unsafe { shared.add(p.view(row0, n, h, p.head_dim_v, p.n_head), &o, true) };
            }
        }
    });
}

/// Gradients of [`attention_forward`] given `d_out`: `dq`, `dk`, `dv` are overwritten
/// (same shapes as q, k, v).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    pool: &ThreadPool,
    p: &TrainAttn,
    (q, k, v): (&[f32], &[f32], &[f32]),
    spans: &[std::ops::Range<usize>],
    d_out: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let group = p.n_head / p.n_head_kv;
    let tasks: Vec<(usize, usize)> = (0..spans.len())
        .flat_map(|s| (0..p.n_head_kv).map(move |kv| (s, kv)))
        .collect();
    let (dq_s, dk_s, dv_s) = (SharedOut::new(dq), SharedOut::new(dk), SharedOut::new(dv));
    let next = std::sync::atomic::AtomicUsize::new(0);
    pool.run(&|_| {
        let (mut probs, mut dp) = (Vec::new(), Vec::new());
        let (mut dqh, mut dkh, mut dvh) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&(s, kv)) = tasks.get(i) else { break };
            let (row0, n) = (spans[s].start, spans[s].len());
            let (d, dvw) = (p.head_dim, p.head_dim_v);
            probs.resize(n * n, 0.0);
            dp.resize(n * n, 0.0);
            dqh.resize(n * d, 0.0);
            dkh.clear();
            dkh.resize(n * d, 0.0);
            dvh.clear();
            dvh.resize(n * dvw, 0.0);
            let kview = p.view(row0, n, kv, d, p.n_head_kv);
            let vview = p.view(row0, n, kv, dvw, p.n_head_kv);
            let square = Strided {
                offset: 0,
                row_stride: n,
                rows: n,
                cols: n,
            };
            for h in kv * group..(kv + 1) * group {
                p.probabilities(q, k, row0, n, h, &mut probs);
                let dov = p.view(row0, n, h, dvw, p.n_head);
                let qview = p.view(row0, n, h, d, p.n_head);
                // dV += Pᵀ·dO; dP = dO·Vᵀ.
                gemm_strided((&probs, square, true), (d_out, dov, false), 1.0, &mut dvh);
                gemm_strided((d_out, dov, false), (v, vview, true), 0.0, &mut dp);
                // dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale.
                for r in 0..n {
                    let (pr, dr) = (&probs[r * n..(r + 1) * n], &mut dp[r * n..(r + 1) * n]);
                    let dot: f32 = pr.iter().zip(dr.iter()).map(|(a, b)| a * b).sum();
                    for (g, &pv) in dr.iter_mut().zip(pr) {
                        *g = pv * (*g - dot) * p.scale;
                    }
                }
                // dQ = dS·K; dK += dSᵀ·Q.
                gemm_strided((&dp, square, false), (k, kview, false), 0.0, &mut dqh);
                gemm_strided((&dp, square, true), (q, qview, false), 1.0, &mut dkh);
                // SAFETY: head h's columns of this sequence's rows belong to this task.
                unsafe { dq_s.add(qview, &dqh, true) };
            }
            // SAFETY: key/value head kv's columns of this sequence belong to this task.
            unsafe {
                dk_s.add(kview, &dkh, true);
                dv_s.add(vview, &dvh, true);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Checks `grad` against central differences of `f` at `x`.
    fn check_gradient(x: &[f32], grad: &[f32], f: &dyn Fn(&[f32]) -> f64) {
        let h = 1e-3f32;
        for i in 0..x.len() {
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[i] += h;
            down[i] -= h;
            let numeric = (f(&up) - f(&down)) / (2.0 * f64::from(h));
            let diff = (numeric - f64::from(grad[i])).abs();
            assert!(
                diff <= 2e-3 * (1.0 + numeric.abs()),
                "element {i}: {numeric} vs {}",
                grad[i]
            );
        }
    }

    #[test]
    fn rms_norm_gradient_matches_finite_differences() {
        let (x, w, dy) = (values(16, 1), values(16, 2), values(16, 3));
        let loss = |x: &[f32]| {
            let mut y = vec![0.0; 16];
            rms_norm_forward(x, &w, 1e-5, &mut y);
            y.iter().zip(&dy).map(|(a, b)| f64::from(a * b)).sum()
        };
        let mut y = vec![0.0; 16];
        let r = rms_norm_forward(&x, &w, 1e-5, &mut y);
        let mut dx = vec![0.0; 16];
        rms_norm_backward(&x, &w, r, &dy, &mut dx);
        check_gradient(&x, &dx, &loss);
    }

    #[test]
    fn rope_inverse_undoes_the_rotation_and_gates_match_finite_differences() {
        let freqs = rope_frequencies(8, 10000.0, 1.0, None);
        for neox in [false, true] {
            let x = values(8, 4);
            let mut y = x.clone();
            rope_rotate(&mut y, 7, &freqs, neox, false);
            rope_rotate(&mut y, 7, &freqs, neox, true);
            y.iter()
                .zip(&x)
                .for_each(|(a, b)| assert!((a - b).abs() < 1e-5));
        }
        for gate in [Gate::Silu, Gate::GeluTanh] {
            for &x in &[-3.0f32, -0.7, 0.0, 0.4, 2.5] {
                let numeric = (gate.apply(x + 1e-3) - gate.apply(x - 1e-3)) / 2e-3;
                assert!(
                    (numeric - gate.derivative(x)).abs() < 1e-3,
                    "{gate:?} at {x}"
                );
            }
        }
    }

    #[test]
    fn attention_gradients_match_finite_differences() {
        let pool = ThreadPool::new(2);
        let p = TrainAttn {
            n_head: 4,
            n_head_kv: 2,
            head_dim: 4,
            head_dim_v: 4,
            scale: 0.5,
            window: Some(3),
        };
        let spans = [0..5, 5..8];
        let t = 8;
        let (q, k, v) = (values(t * 16, 5), values(t * 8, 6), values(t * 8, 7));
        let d_out = values(t * 16, 8);
        let loss = |q: &[f32], k: &[f32], v: &[f32]| {
            let mut out = vec![0.0; t * 16];
            attention_forward(&pool, &p, q, k, v, &spans, &mut out);
            out.iter()
                .zip(&d_out)
                .map(|(a, b)| f64::from(a * b))
                .sum::<f64>()
        };
        let (mut dq, mut dk, mut dv) = (vec![0.0; t * 16], vec![0.0; t * 8], vec![0.0; t * 8]);
        attention_backward(
            &pool,
            &p,
            (&q, &k, &v),
            &spans,
            &d_out,
            &mut dq,
            &mut dk,
            &mut dv,
        );
        check_gradient(&q, &dq, &|x| loss(x, &k, &v));
        check_gradient(&k, &dk, &|x| loss(&q, x, &v));
        check_gradient(&v, &dv, &|x| loss(&q, &k, x));
    }

    #[test]
    fn cross_entropy_gradient_is_softmax_minus_onehot() {
        let logits = values(10, 9);
        let mut grad = logits.clone();
        cross_entropy(&mut grad, 3, true);
        check_gradient(&logits, &grad, &|x| {
            f64::from(cross_entropy(&mut x.to_vec(), 3, false))
        });
    }
}
