//! The training forward and backward pass of the decoder in f32: loss of a batch of
//! sequences and its gradient with respect to a LoRA adapter or to every weight. Frozen
//! weights stay in their file type; each product dequantizes a chunk of rows at a time
//! ([`huarizo_kernels::gemm`]), so gradients flow through the dequantized weights.
//!
//! Memory: every block's activations are kept while they fit the budget
//! (`HUARIZO_TRAIN_MEMORY_MB`); past it, activation checkpointing keeps only each block's
//! input `(T, E)` and the backward pass recomputes one block's activations at a time.
//! Logits are formed for the labelled rows only, a chunk of rows at a time.

use super::lora::{mix64, LoraAdapter, LoraGrads, LoraTarget};
use super::params::{FullGrads, FullParams, Mat, Vect, Weights};
use crate::arch::Activation;
use crate::config::RopeScaling;
use crate::error::ModelError;
use crate::model::Model;
use huarizo_kernels::gemm::{gemm, matmul_dytx, matmul_dyw, matmul_xwt, Weight, WeightMat};
use huarizo_kernels::pool::ThreadPool;
use huarizo_kernels::train_ops::{self as tops, Gate, TrainAttn};
use std::ops::Range;

/// Rows of logits formed at once (bounds the `(rows, V)` buffer).
const LOGIT_CHUNK: usize = 128;

/// One training sequence: its tokens at positions 0, 1, … and, per position, the token it
/// must predict (or −1 for none: prompt tokens, padding).
#[derive(Clone, Copy, Debug)]
pub struct TrainSeq<'a> {
    /// Input tokens.
    pub tokens: &'a [u32],
    /// Target per position, −1 where no loss is taken.
    pub labels: &'a [i32],
}

/// Summed loss of a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchLoss {
    /// Sum over labelled positions of −log p(label).
    pub loss_sum: f64,
    /// Labelled positions.
    pub n_labels: usize,
}

impl Model {
    /// Loss of `seqs` under the model with `adapter` applied (no dropout, no gradients).
    pub fn train_loss(
        &self,
        pool: &ThreadPool,
        adapter: Option<&LoraAdapter>,
        seqs: &[TrainSeq<'_>],
    ) -> Result<BatchLoss, ModelError> {
        let pass = Pass::new(self, Weights::of_model(self), pool, adapter, seqs, None)?;
        Ok(pass.loss_only(seqs))
    }

    /// Loss of `seqs` under the model with the weights `params` (no gradients).
    pub fn full_loss(
        &self,
        pool: &ThreadPool,
        params: &FullParams,
        seqs: &[TrainSeq<'_>],
    ) -> Result<BatchLoss, ModelError> {
        let pass = Pass::new(
            self,
            Weights::of_params(self, params)?,
            pool,
            None,
            seqs,
            None,
        )?;
        Ok(pass.loss_only(seqs))
    }

    /// Loss of `seqs` under the model with the weights `params` and its gradient with
    /// respect to every one of them, added to `grads` (the gradient of the summed loss).
    pub fn full_backward(
        &self,
        pool: &ThreadPool,
        params: &FullParams,
        seqs: &[TrainSeq<'_>],
        grads: &mut FullGrads,
    ) -> Result<BatchLoss, ModelError> {
        if grads.values.len() != params.tensors.len()
            || grads
                .values
                .iter()
                .zip(&params.tensors)
                .any(|(g, t)| g.len() != t.values.len())
        {
            return Err(ModelError::Invalid(
                "gradient buffers were made for other parameters".into(),
            ));
        }
        let pass = Pass::new(
            self,
            Weights::of_params(self, params)?,
            pool,
            None,
            seqs,
            None,
        )?;
        Ok(pass.backward(seqs, &mut Sink::Full(grads)))
    }

    /// Logits `(T, V)` of every position of `tokens` from the f32 training forward pass
    /// with `adapter` applied (the numbers [`Model::train_loss`] scores).
    pub fn train_logits(
        &self,
        pool: &ThreadPool,
        adapter: Option<&LoraAdapter>,
        tokens: &[u32],
    ) -> Result<Vec<f32>, ModelError> {
        let labels = vec![-1; tokens.len()];
        let seqs = [TrainSeq {
            tokens,
            labels: &labels,
        }];
        let pass = Pass::new(self, Weights::of_model(self), pool, adapter, &seqs, None)?;
        let x = pass.forward_blocks(&seqs);
        let (mut hn, mut r) = (Vec::new(), Vec::new());
        pass.norm_rows(&x, pass.w.output_norm.v, &mut hn, &mut r);
        let mut logits = vec![0.0; tokens.len() * self.config.n_vocab];
        matmul_xwt(
            pool,
            &pass.w.output.w,
            &hn,
            tokens.len(),
            &mut logits,
            false,
        );
        Ok(logits)
    }

    /// Loss of `seqs` and its gradient with respect to the adapter's A and B, added to
    /// `grads` (the gradient of the summed loss). `dropout_seed` draws the adapter
    /// dropout masks.
    pub fn lora_backward(
        &self,
        pool: &ThreadPool,
        adapter: &LoraAdapter,
        seqs: &[TrainSeq<'_>],
        grads: &mut LoraGrads,
        dropout_seed: u64,
    ) -> Result<BatchLoss, ModelError> {
        if grads.a.len() != adapter.tensors.len() || grads.b.len() != adapter.tensors.len() {
            return Err(ModelError::Invalid(
                "gradient buffers were made for another adapter".into(),
            ));
        }
        let pass = Pass::new(
            self,
            Weights::of_model(self),
            pool,
            Some(adapter),
            seqs,
            Some(dropout_seed),
        )?;
        Ok(pass.backward(seqs, &mut Sink::Lora(grads)))
    }
}

/// Where a backward pass puts its gradients.
enum Sink<'g> {
    /// A LoRA adapter's A and B.
    Lora(&'g mut LoraGrads),
    /// Every weight.
    Full(&'g mut FullGrads),
}

impl Sink<'_> {
    /// The gradient buffer of trainable tensor `param`, when whole weights are trained.
    fn full(&mut self, param: Option<usize>) -> Option<&mut Vec<f32>> {
        match self {
            Sink::Full(g) => param.map(|i| &mut g.values[i]),
            Sink::Lora(_) => None,
        }
    }
}

impl Pass<'_> {
    /// The last block's output `(T, E)`, keeping no activations.
    fn forward_blocks(&self, seqs: &[TrainSeq<'_>]) -> Vec<f32> {
        let mut x = self.embed(seqs);
        let mut acts = Acts::default();
        for il in 0..self.w.layers.len() {
            self.layer_forward(il, &x, &mut acts);
            std::mem::swap(&mut x, &mut acts.x_out);
        }
        x
    }

    fn loss_only(&self, seqs: &[TrainSeq<'_>]) -> BatchLoss {
        self.head(&self.forward_blocks(seqs), None)
    }

    /// The loss and its gradients into `sink`.
    fn backward(&self, seqs: &[TrainSeq<'_>], sink: &mut Sink<'_>) -> BatchLoss {
        let n_layer = self.w.layers.len();
        // Forward, keeping every block's activations when they fit the budget, else only
        // each block's input (recomputing the rest block by block on the way back).
        let keep_all = self.activation_bytes() <= activation_budget();
        let mut inputs = Vec::with_capacity(n_layer);
        let mut kept: Vec<Acts> = Vec::new();
        let mut x = self.embed(seqs);
        let mut acts = Acts::default();
        for il in 0..n_layer {
            self.layer_forward(il, &x, &mut acts);
            let next = std::mem::take(&mut acts.x_out);
            inputs.push(std::mem::replace(&mut x, next));
            if keep_all {
                kept.push(std::mem::take(&mut acts));
            }
        }
        let mut dx = vec![0.0; x.len()];
        let loss = self.head(&x, Some((&mut dx, &mut *sink)));
        drop(x);
        for il in (0..n_layer).rev() {
            let x_in = inputs.pop().expect("one input per block");
            match kept.pop() {
                Some(a) => acts = a,
                None => self.layer_forward(il, &x_in, &mut acts),
            }
            dx = self.layer_backward(il, &x_in, &acts, &dx, sink);
        }
        self.embed_backward(seqs, &dx, sink);
        loss
    }
}

/// A plain f32 matrix `(n_out, n_in)` as a weight.
fn f32_mat(v: &[f32], n_out: usize, n_in: usize) -> WeightMat<'_> {
    WeightMat {
        w: Weight::F32(v),
        n_out,
        n_in,
    }
}

/// Bytes of activations a training pass may keep for its backward pass before it
/// recomputes them block by block instead (`HUARIZO_TRAIN_MEMORY_MB`, default 4096).
fn activation_budget() -> usize {
    std::env::var("HUARIZO_TRAIN_MEMORY_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(4096)
        << 20
}

/// Activations of one block, kept for its backward pass.
#[derive(Default)]
struct Acts {
    xn: Vec<f32>,
    r_attn: Vec<f32>,
    q_pre: Vec<f32>,
    k_pre: Vec<f32>,
    r_q: Vec<f32>,
    r_k: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    ao: Vec<f32>,
    r_ao: Vec<f32>,
    x2: Vec<f32>,
    fnorm: Vec<f32>,
    r_ffn: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    a: Vec<f32>,
    dn: Vec<f32>,
    r_dn: Vec<f32>,
    /// `x·Aᵀ` of each adapted layer (by [`LoraTarget::index`]).
    lora_h: [Vec<f32>; 7],
    x_out: Vec<f32>,
}

/// What one training pass needs: the model, the batch layout and the adapter.
struct Pass<'a> {
    model: &'a Model,
    w: Weights<'a>,
    pool: &'a ThreadPool,
    adapter: Option<&'a LoraAdapter>,
    dropout_seed: Option<u64>,
    /// Rows of each sequence in the batch.
    spans: Vec<Range<usize>>,
    /// Position of each row within its sequence.
    positions: Vec<usize>,
    /// Label of each row.
    labels: Vec<i32>,
    t: usize,
    freqs: Vec<f32>,
    freqs_swa: Vec<f32>,
}

impl<'a> Pass<'a> {
    fn new(
        model: &'a Model,
        w: Weights<'a>,
        pool: &'a ThreadPool,
        adapter: Option<&'a LoraAdapter>,
        seqs: &[TrainSeq<'_>],
        dropout_seed: Option<u64>,
    ) -> Result<Pass<'a>, ModelError> {
        let c = &model.config;
        if seqs.is_empty() {
            return Err(ModelError::Invalid(
                "training batch has no sequences".into(),
            ));
        }
        if let Some(a) = adapter {
            a.validate(c)?;
        }
        let (mut spans, mut positions, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for (i, s) in seqs.iter().enumerate() {
            if s.tokens.is_empty() || s.tokens.len() != s.labels.len() {
                return Err(ModelError::Invalid(format!(
                    "training sequence {i}: {} tokens and {} labels",
                    s.tokens.len(),
                    s.labels.len()
                )));
            }
            if s.tokens.len() > c.n_ctx_train.max(1) && c.n_ctx_train > 0 {
                return Err(ModelError::ContextFull {
                    needed: s.tokens.len(),
                    n_ctx: c.n_ctx_train,
                });
            }
            let bad = s
                .tokens
                .iter()
                .map(|&t| t as i64)
                .chain(s.labels.iter().map(|&l| l as i64));
            if let Some(b) = bad.into_iter().find(|&t| t < -1 || t >= c.n_vocab as i64) {
                return Err(ModelError::Invalid(format!(
                    "training sequence {i}: token {b} is out of the vocabulary (size {})",
                    c.n_vocab
                )));
            }
            let row0 = positions.len();
            spans.push(row0..row0 + s.tokens.len());
            positions.extend(0..s.tokens.len());
            labels.extend_from_slice(s.labels);
        }
        let scale = match c.rope_scaling {
            RopeScaling::None => 1.0,
            RopeScaling::Linear { factor } => 1.0 / factor,
        };
        let factors = model.rope_factors.as_deref();
        Ok(Pass {
            model,
            w,
            pool,
            adapter,
            dropout_seed: dropout_seed.filter(|_| adapter.is_some_and(|a| a.config.dropout > 0.0)),
            t: positions.len(),
            spans,
            positions,
            labels,
            freqs: tops::rope_frequencies(c.n_rot, c.rope_base, scale, factors),
            freqs_swa: tops::rope_frequencies(c.n_rot, c.rope_base_swa, 1.0, factors),
        })
    }

    /// Bytes of every block's [`Acts`] for this batch.
    fn activation_bytes(&self) -> usize {
        let c = &self.model.config;
        let (q, kv) = (
            c.n_head * c.head_dim,
            c.n_head_kv * c.head_dim.max(c.head_dim_v),
        );
        let r = self
            .adapter
            .map_or(0, |a| a.config.rank * a.config.targets.len());
        let per_token = 7 * c.n_embd + 3 * q + 4 * kv + 4 * c.n_ff + r + 8;
        4 * self.t * per_token * c.n_layer
    }

    fn embed(&self, seqs: &[TrainSeq<'_>]) -> Vec<f32> {
        let e = self.model.config.n_embd;
        let mut x = vec![0.0; self.t * e];
        let tokens = seqs.iter().flat_map(|s| s.tokens.iter());
        for (dst, &tok) in x.chunks_exact_mut(e).zip(tokens) {
            let t = tok as usize;
            match self.w.embd.w.w {
                Weight::Ggml { ty, data } => {
                    let row = ty.row_bytes(e).unwrap_or(0);
                    huarizo_kernels::dequantize_row(ty, &data[t * row..(t + 1) * row], dst);
                }
                Weight::F32(w) => dst.copy_from_slice(&w[t * e..(t + 1) * e]),
            }
        }
        let scale = self.embed_scale();
        if scale != 1.0 {
            x.iter_mut().for_each(|v| *v *= scale);
        }
        x
    }

    fn embed_scale(&self) -> f32 {
        if self.model.config.spec.scale_embeddings {
            (self.model.config.n_embd as f32).sqrt()
        } else {
            1.0
        }
    }

    /// Adds the embedding rows' gradients (trained weights only).
    fn embed_backward(&self, seqs: &[TrainSeq<'_>], dx: &[f32], sink: &mut Sink<'_>) {
        let (e, scale) = (self.model.config.n_embd, self.embed_scale());
        let Some(g) = sink.full(self.w.embd.param) else {
            return;
        };
        let tokens = seqs.iter().flat_map(|s| s.tokens.iter());
        for (src, &tok) in dx.chunks_exact(e).zip(tokens) {
            let t = tok as usize;
            g[t * e..(t + 1) * e]
                .iter_mut()
                .zip(src)
                .for_each(|(g, d)| *g += d * scale);
        }
    }

    /// RMS norm of every `w.len()`-wide row of `x` into `y`, keeping the factors in `r`.
    fn norm_rows(&self, x: &[f32], w: &[f32], y: &mut Vec<f32>, r: &mut Vec<f32>) {
        let (eps, n) = (self.model.config.rms_eps, w.len());
        y.resize(x.len(), 0.0);
        r.resize(x.len() / n, 0.0);
        self.pool.for_rows_mut2(y, n, r, 1, &|first, ys, rs| {
            for (i, (yr, rr)) in ys.chunks_exact_mut(n).zip(rs.iter_mut()).enumerate() {
                let xr = &x[(first + i) * n..(first + i + 1) * n];
                *rr = tops::rms_norm_forward(xr, w, eps, yr);
            }
        });
    }

    /// `dx += ` the gradient through [`Pass::norm_rows`] of `dy`; with whole weights
    /// trained, also the norm weight's gradient `Σ_rows dy ⊙ x·r`.
    fn norm_rows_backward(
        &self,
        x: &[f32],
        w: &Vect<'_>,
        r: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        sink: &mut Sink<'_>,
    ) {
        let n = w.v.len();
        let wv = w.v;
        self.pool.for_rows_mut(dx, n, &|first, dxs| {
            for (i, dxr) in dxs.chunks_exact_mut(n).enumerate() {
                let row = first + i;
                let span = row * n..(row + 1) * n;
                tops::rms_norm_backward(&x[span.clone()], wv, r[row], &dy[span], dxr);
            }
        });
        if let Some(g) = sink.full(w.param) {
            for ((xr, dyr), &rr) in x.chunks_exact(n).zip(dy.chunks_exact(n)).zip(r) {
                for ((g, &xv), &d) in g.iter_mut().zip(xr).zip(dyr) {
                    *g += d * xv * rr;
                }
            }
        }
    }

    /// The gradient of a bias: `Σ_rows dy`.
    fn bias_backward(&self, b: &Option<Vect<'_>>, dy: &[f32], sink: &mut Sink<'_>) {
        let Some(b) = b else { return };
        if let Some(g) = sink.full(b.param) {
            for row in dy.chunks_exact(g.len()) {
                g.iter_mut().zip(row).for_each(|(g, d)| *g += d);
            }
        }
    }

    fn dropped<'x>(
        &self,
        il: usize,
        target: LoraTarget,
        x: &'x [f32],
    ) -> std::borrow::Cow<'x, [f32]> {
        let (Some(seed), Some(a)) = (self.dropout_seed, self.adapter) else {
            return x.into();
        };
        let p = a.config.dropout;
        let keep = 1.0 / (1.0 - p);
        let base = mix64(seed ^ ((il as u64) << 40) ^ ((target.index() as u64) << 56));
        x.iter()
            .enumerate()
            .map(|(i, &v)| {
                let u = (mix64(base ^ i as u64) >> 40) as f32 / (1u64 << 24) as f32;
                if u < p {
                    0.0
                } else {
                    v * keep
                }
            })
            .collect::<Vec<f32>>()
            .into()
    }

    /// `out = x·Wᵀ` plus the adapter's update of (il, target) when there is one.
    /// `out = x·Wᵀ` plus the adapter's update of (il, target) when there is one.
    fn linear(
        &self,
        il: usize,
        target: LoraTarget,
        m: &Mat<'_>,
        x: &[f32],
        out: &mut Vec<f32>,
        lora_h: &mut Vec<f32>,
    ) {
        let w = &m.w;
        out.resize(self.t * w.n_out, 0.0);
        matmul_xwt(self.pool, w, x, self.t, out, false);
        lora_h.clear();
        if let Some((_, lt)) = self.adapter.and_then(|a| a.find(il, target)) {
            let scale = self.adapter.map_or(0.0, |a| a.scale());
            let xd = self.dropped(il, target, x);
            let r = self.adapter.map_or(0, |a| a.config.rank);
            // Rows of the batch split over the pool: y = x̃·Aᵀ, out += s·y·Bᵀ.
            let (n_in, n_out) = (w.n_in, w.n_out);
            lora_h.resize(self.t * r, 0.0);
            let xd = &*xd;
            self.pool
                .for_rows_mut2(out, n_out, lora_h, r, &|first, o, h| {
                    let n = h.len() / r;
                    let xs = &xd[first * n_in..(first + n) * n_in];
                    gemm((n, n_in, r), xs, false, &lt.a, true, 0.0, h);
                    let mut yb = vec![0.0; n * n_out];
                    gemm((n, r, n_out), h, false, &lt.b, true, 0.0, &mut yb);
                    o.iter_mut().zip(&yb).for_each(|(o, v)| *o += scale * v);
                });
        }
    }

    /// `dx (+)= dy·W` plus the adapter's share; accumulates the adapter's gradients, or
    /// the weight's own (`dW += dyᵀ·x`) when whole weights are trained.
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        &self,
        il: usize,
        target: LoraTarget,
        m: &Mat<'_>,
        x: &[f32],
        lora_h: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        accumulate: bool,
        sink: &mut Sink<'_>,
    ) {
        let w = &m.w;
        matmul_dyw(self.pool, w, dy, self.t, dx, accumulate);
        if let Some(g) = sink.full(m.param) {
            matmul_dytx(self.pool, dy, x, self.t, g, true);
        }
        let (Some(adapter), Sink::Lora(grads)) = (self.adapter, sink) else {
            return;
        };
        let Some((idx, lt)) = adapter.find(il, target) else {
            return;
        };
        let (t, r, n_in, n_out) = (self.t, adapter.config.rank, w.n_in, w.n_out);
        let s = adapter.scale();
        let sdy: Vec<f32> = dy.iter().map(|v| v * s).collect();
        // dB += s·dyᵀ·h; dh = s·dy·B; dA += dhᵀ·x̃; dx̃ = dh·A (each split over the pool).
        matmul_dytx(self.pool, &sdy, lora_h, t, &mut grads.b[idx], true);
        let mut dh = vec![0.0; t * r];
        matmul_dyw(
            self.pool,
            &f32_mat(&lt.b, n_out, r),
            &sdy,
            t,
            &mut dh,
            false,
        );
        let xd = self.dropped(il, target, x);
        matmul_dytx(self.pool, &dh, &xd, t, &mut grads.a[idx], true);
        let mut dxd = vec![0.0; t * n_in];
        matmul_dyw(self.pool, &f32_mat(&lt.a, r, n_in), &dh, t, &mut dxd, false);
        if self.dropout_seed.is_some() {
            // The mask's gradient: the same mask and factor, applied to dx̃.
            let ones = vec![1.0; x.len()];
            let mask = self.dropped(il, target, &ones);
            dx.iter_mut()
                .zip(dxd.iter().zip(mask.iter()))
                .for_each(|(d, (g, m))| *d += g * m);
        } else {
            dx.iter_mut().zip(&dxd).for_each(|(d, g)| *d += g);
        }
    }

    fn attn_params(&self, il: usize) -> TrainAttn {
        let c = &self.model.config;
        TrainAttn {
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: c.head_dim,
            head_dim_v: c.head_dim_v,
            scale: c.attn_scale,
            window: if c.is_swa_layer(il) {
                c.sliding_window
            } else {
                None
            },
        }
    }

    /// Rotates every head of `buf` (`heads` of width D per row) at its row's position.
    fn rope(&self, il: usize, buf: &mut [f32], heads: usize, inverse: bool) {
        let c = &self.model.config;
        let freqs = if c.is_swa_layer(il) {
            &self.freqs_swa
        } else {
            &self.freqs
        };
        let d = c.head_dim;
        self.pool.for_rows_mut(buf, heads * d, &|first, rows| {
            for (i, row) in rows.chunks_exact_mut(heads * d).enumerate() {
                let pos = self.positions[first + i];
                for head in row.chunks_exact_mut(d) {
                    tops::rope_rotate(head, pos, freqs, c.spec.rope_neox, inverse);
                }
            }
        });
    }

    fn layer_forward(&self, il: usize, x: &[f32], a: &mut Acts) {
        let c = &self.model.config;
        let layer = &self.w.layers[il];
        self.norm_rows(x, layer.attn_norm.v, &mut a.xn, &mut a.r_attn);
        let [hq, hk, hv, ho, hg, hu, hd] = &mut a.lora_h;
        self.linear(il, LoraTarget::Q, &layer.wq, &a.xn, &mut a.q_pre, hq);
        self.linear(il, LoraTarget::K, &layer.wk, &a.xn, &mut a.k_pre, hk);
        self.linear(il, LoraTarget::V, &layer.wv, &a.xn, &mut a.v, hv);
        for (buf, bias) in [
            (&mut a.q_pre, &layer.bq),
            (&mut a.k_pre, &layer.bk),
            (&mut a.v, &layer.bv),
        ] {
            if let Some(bias) = bias {
                for row in buf.chunks_exact_mut(bias.v.len()) {
                    row.iter_mut().zip(bias.v).for_each(|(x, b)| *x += b);
                }
            }
        }
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            self.norm_rows(&a.q_pre, qn.v, &mut a.q, &mut a.r_q);
            self.norm_rows(&a.k_pre, kn.v, &mut a.k, &mut a.r_k);
        } else {
            a.q.clone_from(&a.q_pre);
            a.k.clone_from(&a.k_pre);
        }
        self.rope(il, &mut a.q, c.n_head, false);
        self.rope(il, &mut a.k, c.n_head_kv, false);
        a.att.resize(self.t * c.n_head * c.head_dim_v, 0.0);
        tops::attention_forward(
            self.pool,
            &self.attn_params(il),
            &a.q,
            &a.k,
            &a.v,
            &self.spans,
            &mut a.att,
        );
        self.linear(il, LoraTarget::O, &layer.wo, &a.att, &mut a.ao, ho);
        a.x2.clear();
        a.x2.extend_from_slice(x);
        if let Some(w) = &layer.attn_post_norm {
            let mut normed = Vec::new();
            self.norm_rows(&a.ao, w.v, &mut normed, &mut a.r_ao);
            a.x2.iter_mut().zip(&normed).for_each(|(x, o)| *x += o);
        } else {
            a.x2.iter_mut().zip(&a.ao).for_each(|(x, o)| *x += o);
        }
        self.norm_rows(&a.x2, layer.ffn_norm.v, &mut a.fnorm, &mut a.r_ffn);
        self.linear(il, LoraTarget::Gate, &layer.w_gate, &a.fnorm, &mut a.g, hg);
        self.linear(il, LoraTarget::Up, &layer.w_up, &a.fnorm, &mut a.u, hu);
        a.a.resize(a.g.len(), 0.0);
        let (gate, f, g, u) = (self.gate(), c.n_ff, &a.g, &a.u);
        self.pool.for_rows_mut(&mut a.a, f, &|first, out| {
            let span = first * f..first * f + out.len();
            tops::gated_forward(gate, &g[span.clone()], &u[span], out);
        });
        self.linear(il, LoraTarget::Down, &layer.w_down, &a.a, &mut a.dn, hd);
        a.x_out.clear();
        a.x_out.extend_from_slice(&a.x2);
        if let Some(w) = &layer.ffn_post_norm {
            let mut normed = Vec::new();
            self.norm_rows(&a.dn, w.v, &mut normed, &mut a.r_dn);
            a.x_out.iter_mut().zip(&normed).for_each(|(x, o)| *x += o);
        } else {
            a.x_out.iter_mut().zip(&a.dn).for_each(|(x, o)| *x += o);
        }
    }

    fn gate(&self) -> Gate {
        match self.model.config.spec.activation {
            Activation::SwiGlu => Gate::Silu,
            Activation::GeGlu => Gate::GeluTanh,
        }
    }

    /// Gradient of the block's input from the gradient of its output `dy`.
    /// Gradient of the block's input from the gradient of its output `dy`.
    fn layer_backward(
        &self,
        il: usize,
        x: &[f32],
        a: &Acts,
        dy: &[f32],
        sink: &mut Sink<'_>,
    ) -> Vec<f32> {
        let c = &self.model.config;
        let layer = &self.w.layers[il];
        let [hq, hk, hv, ho, hg, hu, hd] = &a.lora_h;
        // MLP block: x_out = x2 + post(dn).
        let mut dx2 = dy.to_vec();
        let d_dn = match &layer.ffn_post_norm {
            Some(w) => {
                let mut g = vec![0.0; dy.len()];
                self.norm_rows_backward(&a.dn, w, &a.r_dn, dy, &mut g, sink);
                g
            }
            None => dy.to_vec(),
        };
        let mut da = vec![0.0; a.a.len()];
        self.linear_backward(
            il,
            LoraTarget::Down,
            &layer.w_down,
            &a.a,
            hd,
            &d_dn,
            &mut da,
            false,
            sink,
        );
        let (mut dg, mut du) = (vec![0.0; da.len()], vec![0.0; da.len()]);
        let (gate, f) = (self.gate(), c.n_ff);
        self.pool
            .for_rows_mut2(&mut dg, f, &mut du, f, &|first, dgs, dus| {
                let span = first * f..first * f + dgs.len();
                tops::gated_backward(
                    gate,
                    &a.g[span.clone()],
                    &a.u[span.clone()],
                    &da[span],
                    dgs,
                    dus,
                );
            });
        drop(da);
        let mut dfn = vec![0.0; a.fnorm.len()];
        self.linear_backward(
            il,
            LoraTarget::Gate,
            &layer.w_gate,
            &a.fnorm,
            hg,
            &dg,
            &mut dfn,
            false,
            sink,
        );
        self.linear_backward(
            il,
            LoraTarget::Up,
            &layer.w_up,
            &a.fnorm,
            hu,
            &du,
            &mut dfn,
            true,
            sink,
        );
        self.norm_rows_backward(&a.x2, &layer.ffn_norm, &a.r_ffn, &dfn, &mut dx2, sink);
        // Attention block: x2 = x + post(ao).
        let d_ao = match &layer.attn_post_norm {
            Some(w) => {
                let mut g = vec![0.0; dx2.len()];
                self.norm_rows_backward(&a.ao, w, &a.r_ao, &dx2, &mut g, sink);
                g
            }
            None => dx2.clone(),
        };
        let mut datt = vec![0.0; a.att.len()];
        self.linear_backward(
            il,
            LoraTarget::O,
            &layer.wo,
            &a.att,
            ho,
            &d_ao,
            &mut datt,
            false,
            sink,
        );
        let (mut dq, mut dk, mut dv) = (
            vec![0.0; a.q.len()],
            vec![0.0; a.k.len()],
            vec![0.0; a.v.len()],
        );
        tops::attention_backward(
            self.pool,
            &self.attn_params(il),
            (&a.q, &a.k, &a.v),
            &self.spans,
            &datt,
            &mut dq,
            &mut dk,
            &mut dv,
        );
        self.rope(il, &mut dq, c.n_head, true);
        self.rope(il, &mut dk, c.n_head_kv, true);
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            let mut g = vec![0.0; dq.len()];
            self.norm_rows_backward(&a.q_pre, qn, &a.r_q, &dq, &mut g, sink);
            dq = g;
            let mut g = vec![0.0; dk.len()];
            self.norm_rows_backward(&a.k_pre, kn, &a.r_k, &dk, &mut g, sink);
            dk = g;
        }
        self.bias_backward(&layer.bq, &dq, sink);
        self.bias_backward(&layer.bk, &dk, sink);
        self.bias_backward(&layer.bv, &dv, sink);
        let mut dxn = vec![0.0; a.xn.len()];
        self.linear_backward(
            il,
            LoraTarget::Q,
            &layer.wq,
            &a.xn,
            hq,
            &dq,
            &mut dxn,
            false,
            sink,
        );
        self.linear_backward(
            il,
            LoraTarget::K,
            &layer.wk,
            &a.xn,
            hk,
            &dk,
            &mut dxn,
            true,
            sink,
        );
        self.linear_backward(
            il,
            LoraTarget::V,
            &layer.wv,
            &a.xn,
            hv,
            &dv,
            &mut dxn,
            true,
            sink,
        );
        self.norm_rows_backward(x, &layer.attn_norm, &a.r_attn, &dxn, &mut dx2, sink);
        dx2
    }

    /// Final norm, output head and cross-entropy over the labelled rows; with `back`,
    /// writes the gradient of the summed loss with respect to the last block's output into
    /// its buffer (and the head's weight gradients into its sink).
    fn head(&self, x: &[f32], mut back: Option<(&mut Vec<f32>, &mut Sink<'_>)>) -> BatchLoss {
        let (e, v) = (self.model.config.n_embd, self.model.config.n_vocab);
        let rows: Vec<usize> = (0..self.t).filter(|&r| self.labels[r] >= 0).collect();
        let out_w = &self.w.output;
        let mut loss = BatchLoss {
            loss_sum: 0.0,
            n_labels: rows.len(),
        };
        let (mut hn, mut r, mut logits, mut dh) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for chunk in rows.chunks(LOGIT_CHUNK) {
            let xs: Vec<f32> = chunk
                .iter()
                .flat_map(|&row| x[row * e..(row + 1) * e].iter().copied())
                .collect();
            self.norm_rows(&xs, self.w.output_norm.v, &mut hn, &mut r);
            logits.resize(chunk.len() * v, 0.0);
            matmul_xwt(self.pool, &out_w.w, &hn, chunk.len(), &mut logits, false);
            let mut losses = vec![0.0f64; chunk.len()];
            let grad = back.is_some();
            self.pool
                .for_rows_mut2(&mut logits, v, &mut losses, 1, &|first, ls, out| {
                    for (i, (lrow, o)) in ls.chunks_exact_mut(v).zip(out.iter_mut()).enumerate() {
                        let target = self.labels[chunk[first + i]] as usize;
                        *o = f64::from(tops::cross_entropy(lrow, target, grad));
                    }
                });
            loss.loss_sum += losses.iter().sum::<f64>();
            if let Some((dx, sink)) = back.as_mut() {
                dh.resize(chunk.len() * e, 0.0);
                matmul_dyw(self.pool, &out_w.w, &logits, chunk.len(), &mut dh, false);
                if let Some(g) = sink.full(out_w.param) {
                    matmul_dytx(self.pool, &logits, &hn, chunk.len(), g, true);
                }
                let mut dxs = vec![0.0; xs.len()];
                self.norm_rows_backward(&xs, &self.w.output_norm, &r, &dh, &mut dxs, sink);
                for (&row, g) in chunk.iter().zip(dxs.chunks_exact(e)) {
                    dx[row * e..(row + 1) * e].copy_from_slice(g);
                }
            }
        }
        loss
    }
}
