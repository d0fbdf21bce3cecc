//! The weights of a decoder and its forward pass: one code path for every family, driven by
//! [`Config`] and its [`ArchSpec`](crate::arch::ArchSpec).
//!
//! Dimension letters: T tokens in the batch, E embedding width, H / Hkv query / key-value
//! heads, D / Dv key / value head width, F MLP width, V vocabulary, N context positions.

use crate::arch::{Activation, AttnScale};
use crate::config::{Config, RopeScaling};
use crate::error::ModelError;
use crate::state::{Scratch, State};
use half::slice::HalfFloatSliceExt;
use huarizo_formats::{GgmlType, GgufFile, TensorInfo};
use huarizo_kernels::attention::{attention_batch, q8, AttnParams, AttnSpan};
use huarizo_kernels::matmul::{matmul_many_rows, quantize_activations_on, BatchRow, Product};
use huarizo_kernels::ops;
use huarizo_kernels::packed::PackedRows;
use huarizo_kernels::pool::ThreadPool;
use huarizo_kernels::vec_dot_type;
use std::path::Path;

/// Weight types the matmul kernels accept.
const MATMUL_TYPES: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

/// A weight matrix `(n_out, n_in)` left in its file format, read through the mmap.
#[derive(Clone, Debug)]
pub struct Linear {
    info: TensorInfo,
    /// The weight packed for the products ([`huarizo_kernels::packed`]), where this CPU
    /// multiplies packed weights of its type faster; the file's pages are then released.
    packed: Option<PackedRows>,
    /// Input width.
    pub n_in: usize,
    /// Output width.
    pub n_out: usize,
}

impl Linear {
    /// The weight's storage type.
    pub fn ty(&self) -> GgmlType {
        self.info.ggml_type
    }
}

/// One decoder layer. Optional tensors are present only for the families that use them.
#[derive(Debug)]
pub struct Layer {
    pub(crate) attn_norm: Vec<f32>,      // (E)
    pub(crate) wq: Linear,               // (H·D, E)
    pub(crate) wk: Linear,               // (Hkv·D, E)
    pub(crate) wv: Linear,               // (Hkv·Dv, E)
    pub(crate) wo: Linear,               // (E, H·Dv)
    pub(crate) bq: Option<Vec<f32>>,     // (H·D)
    pub(crate) bk: Option<Vec<f32>>,     // (Hkv·D)
    pub(crate) bv: Option<Vec<f32>>,     // (Hkv·Dv)
    pub(crate) q_norm: Option<Vec<f32>>, // (D)
    pub(crate) k_norm: Option<Vec<f32>>, // (D)
    pub(crate) attn_post_norm: Option<Vec<f32>>,
    pub(crate) ffn_norm: Vec<f32>, // (E)
    pub(crate) w_gate: Linear,     // (F, E)
    pub(crate) w_up: Linear,       // (F, E)
    pub(crate) w_down: Linear,     // (E, F)
    pub(crate) ffn_post_norm: Option<Vec<f32>>,
}

/// A loaded model: configuration plus weights, which stay in the memory-mapped file.
pub struct Model {
    pub(crate) file: GgufFile,
    /// Hyperparameters.
    pub config: Config,
    pub(crate) tok_embd: Linear, // (V, E)
    pub(crate) output_norm: Vec<f32>,
    pub(crate) output: Linear, // (V, E), the embedding matrix when tied
    pub(crate) rope_factors: Option<Vec<f32>>,
    pub(crate) layers: Vec<Layer>,
    /// A LoRA adapter applied beside the weights (`y = W·x + (α/r)·B·A·x`).
    pub(crate) lora: Option<crate::train::LoraAdapter>,
}

/// Which positions of a batch get logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// None (the tokens only fill the cache: a prompt chunk before its last).
    None,
    /// Only the last token (generation).
    Last,
    /// Every token (scoring).
    All,
}

impl Model {
    /// Opens a GGUF file and loads the model in it.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        Model::from_gguf(GgufFile::open(path)?)
    }

    /// Loads the model in an open GGUF file.
    pub fn from_gguf(file: GgufFile) -> Result<Model, ModelError> {
        let c = Config::from_gguf(&file)?;
        let l = Loader { file: &file };
        let (e, d, dv) = (c.n_embd, c.head_dim, c.head_dim_v);
        let mut tok_embd = l.linear("token_embd.weight", e, c.n_vocab)?;
        let mut output = if file.tensor("output.weight").is_some() {
            Some(l.linear("output.weight", e, c.n_vocab)?)
        } else {
            None
        };
        let output_norm = l.vector("output_norm.weight", e)?;
        let rope_factors = match file.tensor("rope_freqs.weight") {
            Some(_) => Some(l.vector("rope_freqs.weight", c.n_rot / 2)?),
            None => None,
        };
        let spec = c.spec;
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let opt_vec = |s: &str, len: usize| -> Result<Option<Vec<f32>>, ModelError> {
                match file.tensor(&n(s)) {
                    Some(_) => l.vector(&n(s), len).map(Some),
                    None => Ok(None),
                }
            };
            let req_if =
                |cond: bool, s: &str, len: usize| -> Result<Option<Vec<f32>>, ModelError> {
                    if cond {
                        l.vector(&n(s), len).map(Some)
                    } else {
                        Ok(None)
                    }
                };
            layers.push(Layer {
                attn_norm: l.vector(&n("attn_norm.weight"), e)?,
                wq: l.linear(&n("attn_q.weight"), e, c.n_head * d)?,
                wk: l.linear(&n("attn_k.weight"), e, c.n_head_kv * d)?,
                wv: l.linear(&n("attn_v.weight"), e, c.n_head_kv * dv)?,
                wo: l.linear(&n("attn_output.weight"), c.n_head * dv, e)?,
                bq: opt_vec("attn_q.bias", c.n_head * d)?,
                bk: opt_vec("attn_k.bias", c.n_head_kv * d)?,
                bv: opt_vec("attn_v.bias", c.n_head_kv * dv)?,
                q_norm: req_if(spec.qk_norm, "attn_q_norm.weight", d)?,
                k_norm: req_if(spec.qk_norm, "attn_k_norm.weight", d)?,
                attn_post_norm: req_if(spec.post_norms, "post_attention_norm.weight", e)?,
                ffn_norm: l.vector(&n("ffn_norm.weight"), e)?,
                w_gate: l.linear(&n("ffn_gate.weight"), e, c.n_ff)?,
                w_up: l.linear(&n("ffn_up.weight"), e, c.n_ff)?,
                w_down: l.linear(&n("ffn_down.weight"), c.n_ff, e)?,
                ffn_post_norm: req_if(spec.post_norms, "post_ffw_norm.weight", e)?,
            });
        }
        // Every weight that only enters products is packed where that is faster; tied
        // embeddings are the output projection too, so they are packed as well (their rows
        // are then read back from the packed copy).
        let mut products: Vec<&mut Linear> = Vec::with_capacity(7 * layers.len() + 1);
        products.push(output.as_mut().unwrap_or(&mut tok_embd));
        for layer in &mut layers {
            products.extend([
                &mut layer.wq,
                &mut layer.wk,
                &mut layer.wv,
                &mut layer.wo,
                &mut layer.w_gate,
                &mut layer.w_up,
                &mut layer.w_down,
            ]);
        }
        pack_products(&file, products);
        let output = output.unwrap_or_else(|| tok_embd.clone());
        Ok(Model {
            config: c,
            tok_embd,
            output_norm,
            output,
            rope_factors,
            layers,
            file,
            lora: None,
        })
    }

    /// The weight bytes one token's forward reads, in the order it reads them: every
    /// product's weight (its packed copy where there is one), the output projection last.
    /// Generation's speed is bounded by how fast these can be read.
    pub fn weights_read_per_token(&self) -> Vec<&[u8]> {
        fn bytes<'a>(model: &'a Model, w: &'a Linear) -> &'a [u8] {
            match &w.packed {
                Some(packed) => packed.bytes(),
                None => model.data(w),
            }
        }
        let mut parts = Vec::with_capacity(7 * self.layers.len() + 1);
        for layer in &self.layers {
            parts.extend(
                [
                    &layer.wq,
                    &layer.wk,
                    &layer.wv,
                    &layer.wo,
                    &layer.w_gate,
                    &layer.w_up,
                    &layer.w_down,
                ]
                .map(|w| bytes(self, w)),
            );
        }
        parts.push(bytes(self, &self.output));
        parts
    }

    /// Reads every byte of [`Model::weights_read_per_token`] once on the pool, a plain sum
    /// at the memory's speed, and returns its checksum: the yardstick for generation.
    pub fn read_weights(&self, pool: &ThreadPool) -> u64 {
        huarizo_kernels::bandwidth::read_all(pool, &self.weights_read_per_token())
    }

    /// Applies `adapter` beside the weights from now on (`None` removes it), as llama.cpp's
    /// `--lora` does: the base weights stay as they are.
    pub fn set_lora(
        &mut self,
        adapter: Option<crate::train::LoraAdapter>,
    ) -> Result<(), ModelError> {
        if let Some(a) = &adapter {
            a.validate(&self.config)?;
        }
        self.lora = adapter;
        Ok(())
    }

    /// The adapter applied beside the weights, if any.
    pub fn lora(&self) -> Option<&crate::train::LoraAdapter> {
        self.lora.as_ref()
    }

    /// Adds the adapter's update of block `il`'s `target` for inputs `x` to `out`.
    fn add_lora(&self, il: usize, target: crate::train::LoraTarget, x: &[f32], out: &mut [f32]) {
        let Some(adapter) = &self.lora else { return };
        if let Some((_, t)) = adapter.find(il, target) {
            let n = x.len() / t.n_in;
            huarizo_kernels::ops::lora_update_ggml(
                x,
                &t.a,
                &t.b,
                (n, t.n_in, adapter.config.rank, t.n_out),
                adapter.scale(),
                out,
            );
        }
    }

    /// The underlying GGUF file (metadata for the tokenizer and chat template).
    pub fn gguf(&self) -> &GgufFile {
        &self.file
    }

    pub(crate) fn data(&self, w: &Linear) -> &[u8] {
        self.file.tensor_data(&w.info)
    }

    /// `out (T, n_out) = x (T, n_in) · Wᵀ`, quantizing `x` as W's dot product wants.
    fn linear(
        &self,
        pool: &ThreadPool,
        w: &Linear,
        x: &[f32],
        places: Option<&[BatchRow]>,
        acts: &mut Vec<u8>,
        out: &mut Vec<f32>,
    ) {
        self.project(pool, [w], x, places, acts, [out]);
    }

    /// `outs[i] = x · wsᵢᵀ` for weights that read the same input (Q, K, V; gate, up): one
    /// activation quantization and one pass of the pool when they share an activation
    /// format (the usual case), else one product after the other.
    fn project<const N: usize>(
        &self,
        pool: &ThreadPool,
        ws: [&Linear; N],
        x: &[f32],
        places: Option<&[BatchRow]>,
        acts: &mut Vec<u8>,
        outs: [&mut Vec<f32>; N],
    ) {
        let act = vec_dot_type(ws[0].ty());
        if ws.iter().any(|w| vec_dot_type(w.ty()) != act) {
            for (w, out) in ws.into_iter().zip(outs) {
                self.project(pool, [w], x, places, acts, [out]);
            }
            return;
        }
        let (n_in, n_tokens) = (ws[0].n_in, x.len() / ws[0].n_in);
        quantize_activations_on(pool, ws[0].ty(), x, n_in, acts);
        let mut outs = outs.into_iter();
        let mut products: [Product<'_>; N] = std::array::from_fn(|i| {
            let (w, out) = (ws[i], outs.next().expect("one output per weight"));
            out.resize(n_tokens * w.n_out, 0.0);
            Product {
                w_type: w.ty(),
                w: self.data(w),
                packed: w.packed.as_ref(),
                n_out: w.n_out,
                out,
            }
        });
        matmul_many_rows(pool, n_in, acts, n_tokens, &mut products, places);
    }

    /// Runs `tokens` through the decoder at the next positions of `state`, appending their
    /// keys and values to its cache, and returns logits `(T', V)` (T' = 1 for
    /// [`Logits::Last`], T for [`Logits::All`], 0 for [`Logits::None`]).
    pub fn forward<'s>(
        &self,
        pool: &ThreadPool,
        state: &'s mut State,
        tokens: &[u32],
        which: Logits,
    ) -> Result<&'s [f32], ModelError> {
        self.forward_traced(pool, state, tokens, which, &mut |_, _, _| {})
    }

    /// [`Model::forward`], reporting each named intermediate to `trace(name, layer, values)`
    /// (llama.cpp's tensor names: `attn_norm`, `Qcur`, `Kcur`, `Vcur`, `kqv_out`,
    /// `attn_out`, `ffn_inp`, `ffn_norm`, `ffn_swiglu`, `ffn_out`, `l_out`, `result_norm`),
    /// so that a mismatch against a reference dump names the layer and op.
    pub fn forward_traced<'s>(
        &self,
        pool: &ThreadPool,
        state: &'s mut State,
        tokens: &[u32],
        which: Logits,
        trace: &mut dyn FnMut(&str, usize, &[f32]),
    ) -> Result<&'s [f32], ModelError> {
        let mut scratch = std::mem::take(&mut state.scratch);
        let result = self.forward_core(
            pool,
            &mut scratch,
            &mut [SeqBatch {
                state: &mut *state,
                tokens,
                logits: which,
                places: BatchPlaces::ThisBatch,
            }],
            trace,
        );
        state.scratch = scratch;
        result?;
        Ok(&state.scratch.logits)
    }

    /// Runs several sequences in one batched forward (continuous batching): the weight
    /// products see every sequence's tokens as one matrix, attention and the KV caches stay
    /// per sequence. Returns the logits rows the sequences asked for, in sequence order
    /// (see [`SeqBatch::n_logits`]). `scratch` is shared by the batch; each state's own
    /// scratch is left alone. A batch of one computes exactly what [`Model::forward`] does.
    pub fn forward_batch<'s>(
        &self,
        pool: &ThreadPool,
        scratch: &'s mut Scratch,
        seqs: &mut [SeqBatch<'_>],
    ) -> Result<&'s [f32], ModelError> {
        self.forward_core(pool, scratch, seqs, &mut |_, _, _| {})?;
        Ok(&scratch.logits)
    }

    fn forward_core(
        &self,
        pool: &ThreadPool,
        s: &mut Scratch,
        seqs: &mut [SeqBatch<'_>],
        trace: &mut dyn FnMut(&str, usize, &[f32]),
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let (e, h, hkv, d, dv) = (c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.head_dim_v);
        if seqs.is_empty() {
            return Err(ModelError::Invalid(
                "forward called with no sequences".into(),
            ));
        }
        for seq in seqs.iter() {
            let (n, pos0) = (seq.tokens.len(), seq.state.n_past);
            if n == 0 {
                return Err(ModelError::Invalid("forward called with no tokens".into()));
            }
            if pos0 + n > seq.state.n_ctx {
                return Err(ModelError::ContextFull {
                    needed: pos0 + n,
                    n_ctx: seq.state.n_ctx,
                });
            }
            if let Some(&bad) = seq.tokens.iter().find(|&&t| t as usize >= c.n_vocab) {
                return Err(ModelError::Invalid(format!(
                    "token id {bad} is out of the vocabulary (size {})",
                    c.n_vocab
                )));
            }
            let (k_row, v_row) = (hkv * d, hkv * dv);
            let n_ctx = seq.state.n_ctx;
            let fits = |l: &crate::state::LayerCache| match seq.state.q8_layout {
                None => l.k.len() >= n_ctx * k_row && l.v.len() >= n_ctx * v_row,
                Some(q8) => {
                    q8.n_ctx == n_ctx
                        && (q8.n_head_kv, q8.head_dim, q8.head_dim_v) == (hkv, d, dv)
                        && l.k8.len() >= q8.k_bytes()
                        && l.v8.len() >= q8.v_bytes()
                }
            };
            if seq.state.cache.len() != c.n_layer || !seq.state.cache.iter().all(fits) {
                return Err(ModelError::Invalid(
                    "state was made for a model of another shape".into(),
                ));
            }
        }
        if seqs
            .iter()
            .any(|q| q.state.cache_type() != seqs[0].state.cache_type())
        {
            return Err(ModelError::Invalid(
                "sequences with caches of different types in one batch".into(),
            ));
        }
        let n_tokens: usize = seqs.iter().map(|q| q.tokens.len()).sum();
        batch_places(seqs, n_tokens, &mut s.places, &mut s.logit_places);
        // The positions differ from the last forward's: angles are computed again.
        s.rope.iter_mut().for_each(|t| t.key = None);

        // x (T, E) ← embedding rows.
        s.x.resize(n_tokens * e, 0.0);
        let embd_row = self.tok_embd.ty().row_bytes(e).unwrap_or(0);
        let embd = self.data(&self.tok_embd);
        let all_tokens = seqs.iter().flat_map(|q| q.tokens.iter());
        for (row, &tok) in s.x.chunks_exact_mut(e).zip(all_tokens) {
            let t = tok as usize;
            let quants = match &self.tok_embd.packed {
                Some(packed) => {
                    s.acts.resize(embd_row, 0);
                    packed.unpack_row(t, &mut s.acts);
                    &s.acts[..]
                }
                None => &embd[t * embd_row..(t + 1) * embd_row],
            };
            huarizo_kernels::dequantize_row(self.tok_embd.ty(), quants, row);
        }
        if c.spec.scale_embeddings {
            let scale = (e as f32).sqrt();
            s.x.iter_mut().for_each(|v| *v *= scale);
        }

        for (il, layer) in self.layers.iter().enumerate() {
            // Attention block.
            s.xb.clone_from(&s.x);
            norm_rows(pool, &mut s.xb, &layer.attn_norm, c.rms_eps);
            trace("attn_norm", il, &s.xb);
            let places = (!s.places.is_empty()).then_some(&s.places[..]);
            self.project(
                pool,
                [&layer.wq, &layer.wk, &layer.wv],
                &s.xb,
                places,
                &mut s.acts,
                [&mut s.q, &mut s.k, &mut s.v],
            );
            if self.lora.is_some() {
                use crate::train::LoraTarget as T;
                self.add_lora(il, T::Q, &s.xb, &mut s.q);
                self.add_lora(il, T::K, &s.xb, &mut s.k);
                self.add_lora(il, T::V, &s.xb, &mut s.v);
            }
            for (buf, bias) in [
                (&mut s.q, &layer.bq),
                (&mut s.k, &layer.bk),
                (&mut s.v, &layer.bv),
            ] {
                if let Some(bias) = bias {
                    for row in buf.chunks_exact_mut(bias.len()) {
                        row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
                    }
                }
            }
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                norm_rows(pool, &mut s.q, qn, c.rms_eps);
                norm_rows(pool, &mut s.k, kn, c.rms_eps);
            }
            let swa = c.is_swa_layer(il);
            let (base, freq_scale) = if swa {
                (c.rope_base_swa, 1.0)
            } else {
                match c.rope_scaling {
                    RopeScaling::None => (c.rope_base, 1.0),
                    RopeScaling::Linear { factor } => (c.rope_base, 1.0 / factor),
                }
            };
            let table = &mut s.rope[usize::from(swa)];
            if table.key != Some((base.to_bits(), freq_scale.to_bits())) {
                self.rope_table(pool, seqs, base, freq_scale, &mut table.angles);
                table.key = Some((base.to_bits(), freq_scale.to_bits()));
            }
            rope_rows(
                pool,
                (&mut s.q, h * d),
                (&mut s.k, hkv * d),
                (&table.angles, c.n_rot / 2),
                (d, c.spec.rope_neox),
            );
            trace("Qcur", il, &s.q);
            trace("Kcur", il, &s.k);
            trace("Vcur", il, &s.v);
            // Gemma scales q itself (in f32, before its f16 rounding in the KQ product) and
            // soft-maxes with scale 1, as llama.cpp's graph does.
            let kq_scale = if c.spec.attn_scale == AttnScale::QueryInvSqrtHeadDim {
                s.q.iter_mut().for_each(|x| *x *= c.attn_scale);
                1.0
            } else {
                c.attn_scale
            };
            let params = AttnParams {
                n_head: h,
                n_head_kv: hkv,
                head_dim: d,
                head_dim_v: dv,
                scale: kq_scale,
                window: if swa { c.sliding_window } else { None },
            };
            s.att.resize(n_tokens * h * dv, 0.0);
            let (k_row, v_row) = (hkv * d, hkv * dv);
            let mut row0 = 0;
            s.spans.clear();
            let mut any_q8 = false;
            for seq in seqs.iter_mut() {
                let (n, pos0) = (seq.tokens.len(), seq.state.n_past);
                let layout = seq.state.q8_layout;
                let cache = &mut seq.state.cache[il];
                let rows = row0..row0 + n;
                if let Some(layout) = layout {
                    any_q8 = true;
                    for (t, r) in rows.clone().enumerate() {
                        q8::store_k(&layout, &mut cache.k8, pos0 + t, &s.k[r * k_row..][..k_row]);
                        q8::store_v(&layout, &mut cache.v8, pos0 + t, &s.v[r * v_row..][..v_row]);
                    }
                } else {
                    // f16 by round to nearest even, eight at a time where the CPU has F16C.
                    cache.k[pos0 * k_row..(pos0 + n) * k_row]
                        .convert_from_f32_slice(&s.k[rows.start * k_row..rows.end * k_row]);
                    cache.v[pos0 * v_row..(pos0 + n) * v_row]
                        .convert_from_f32_slice(&s.v[rows.start * v_row..rows.end * v_row]);
                }
                let order_rows = match seq.places {
                    BatchPlaces::ThisBatch => n,
                    BatchPlaces::WholePrompt(len) => whole_prompt_place(pos0, len).of,
                };
                s.spans.push(AttnSpan {
                    row0,
                    n_rows: n,
                    pos0,
                    order_rows,
                });
                row0 += n;
            }
            let caches = &*seqs;
            if any_q8 {
                q8::attention_q8(
                    pool,
                    &params,
                    &s.q,
                    &s.spans,
                    &|i| {
                        let st = &caches[i].state;
                        let c = &st.cache[il];
                        q8::Q8Cache {
                            layout: st.q8_layout.expect("checked above"),
                            k: &c.k8,
                            v: &c.v8,
                        }
                    },
                    &mut s.att,
                    &mut s.attn_scratch,
                );
            } else {
                attention_batch(
                    pool,
                    &params,
                    &s.q,
                    &s.spans,
                    &|i| {
                        let c = &caches[i].state.cache[il];
                        (&c.k[..], &c.v[..])
                    },
                    &mut s.att,
                    &mut s.attn_scratch,
                );
            }
            trace("kqv_out", il, &s.att);
            self.linear(pool, &layer.wo, &s.att, places, &mut s.acts, &mut s.out);
            self.add_lora(il, crate::train::LoraTarget::O, &s.att, &mut s.out);
            trace("attn_out", il, &s.out);
            if let Some(w) = &layer.attn_post_norm {
                norm_rows(pool, &mut s.out, w, c.rms_eps);
            }
            trace("attn_post_norm", il, &s.out);
            let mut places = places;
            if il + 1 == c.n_layer {
                // From here on llama.cpp keeps only the rows that give logits
                // (`inp_out_ids`): the last feed-forward is a batch of those rows alone,
                // which sums some products in other orders than the whole batch would.
                keep_rows(&mut s.x, e, seqs);
                keep_rows(&mut s.out, e, seqs);
                places = (!s.logit_places.is_empty()).then_some(&s.logit_places[..]);
                if s.x.is_empty() {
                    break;
                }
            }
            s.x.iter_mut().zip(&s.out).for_each(|(x, o)| *x += o);

            // MLP block.
            s.xb.clone_from(&s.x);
            norm_rows(pool, &mut s.xb, &layer.ffn_norm, c.rms_eps);
            trace("ffn_inp", il, &s.x);
            trace("ffn_norm", il, &s.xb);
            self.project(
                pool,
                [&layer.w_gate, &layer.w_up],
                &s.xb,
                places,
                &mut s.acts,
                [&mut s.gate, &mut s.up],
            );
            if self.lora.is_some() {
                self.add_lora(il, crate::train::LoraTarget::Gate, &s.xb, &mut s.gate);
                self.add_lora(il, crate::train::LoraTarget::Up, &s.xb, &mut s.up);
            }
            trace("ffn_gate", il, &s.gate);
            trace("ffn_up", il, &s.up);
            gated_activation(pool, c.spec.activation, &mut s.gate, &s.up, c.n_ff);
            trace("ffn_swiglu", il, &s.gate);
            self.linear(
                pool,
                &layer.w_down,
                &s.gate,
                places,
                &mut s.acts,
                &mut s.out,
            );
            self.add_lora(il, crate::train::LoraTarget::Down, &s.gate, &mut s.out);
            trace("ffn_out", il, &s.out);
            if let Some(w) = &layer.ffn_post_norm {
                norm_rows(pool, &mut s.out, w, c.rms_eps);
            }
            trace("ffn_post_norm", il, &s.out);
            s.x.iter_mut().zip(&s.out).for_each(|(x, o)| *x += o);
            trace("l_out", il, &s.x);
        }

        // Final norm and output head on the rows that need logits (the only rows left).
        for seq in seqs.iter_mut() {
            seq.state.n_past += seq.tokens.len();
        }
        s.logits.clear();
        if s.x.is_empty() {
            return Ok(());
        }
        s.xb.clone_from(&s.x);
        norm_rows(pool, &mut s.xb, &self.output_norm, c.rms_eps);
        trace("result_norm", 0, &s.xb);
        let places = (!s.logit_places.is_empty()).then_some(&s.logit_places[..]);
        self.linear(
            pool,
            &self.output,
            &s.xb,
            places,
            &mut s.acts,
            &mut s.logits,
        );
        Ok(())
    }
}

impl Model {
    /// RoPE angles `(cos, sin)` of every token row of `seqs` (`n_rot / 2` per row, rows in
    /// batch order at each sequence's next positions) for one base and frequency scale,
    /// computed on the pool for a batch.
    fn rope_table(
        &self,
        pool: &ThreadPool,
        seqs: &[SeqBatch<'_>],
        base: f32,
        freq_scale: f32,
        angles: &mut Vec<(f32, f32)>,
    ) {
        let c = &self.config;
        let half = c.n_rot / 2;
        let n_tokens: usize = seqs.iter().map(|q| q.tokens.len()).sum();
        angles.resize(n_tokens * half, (0.0, 0.0));
        if half == 0 {
            return;
        }
        // Row r's position.
        let position = |r: usize| {
            let mut r = r;
            for seq in seqs {
                if r < seq.tokens.len() {
                    return seq.state.n_past + r;
                }
                r -= seq.tokens.len();
            }
            unreachable!("row {r} beyond the batch")
        };
        let factors = self.rope_factors.as_deref();
        let fill = |first: usize, rows: &mut [(f32, f32)]| {
            for (i, row) in rows.chunks_exact_mut(half).enumerate() {
                ops::rope_angles(position(first + i), c.n_rot, base, freq_scale, factors, row);
            }
        };
        if n_tokens < POOL_MIN_ROWS {
            fill(0, angles);
        } else {
            pool.for_rows_mut(angles, half, &fill);
        }
    }
}

/// Rotates every head of each token row of `q` (rows of `q_row` values) and `k` (rows of
/// `k_row`) by that row's angles (`table` rows of `half` pairs), heads of `head_dim` values;
/// on the pool for a batch (each row gives the same bits on any thread).
fn rope_rows(
    pool: &ThreadPool,
    (q, q_row): (&mut [f32], usize),
    (k, k_row): (&mut [f32], usize),
    (table, half): (&[(f32, f32)], usize),
    (head_dim, neox): (usize, bool),
) {
    let rotate = |first: usize, q: &mut [f32], k: &mut [f32]| {
        let rows = q.chunks_exact_mut(q_row).zip(k.chunks_exact_mut(k_row));
        for (i, (q, k)) in rows.enumerate() {
            let angles = &table[(first + i) * half..(first + i + 1) * half];
            for head in q
                .chunks_exact_mut(head_dim)
                .chain(k.chunks_exact_mut(head_dim))
            {
                ops::rope_apply(head, angles, neox);
            }
        }
    };
    if half == 0 {
        return;
    }
    if q.len() < POOL_MIN_ROWS * q_row {
        rotate(0, q, k);
    } else {
        pool.for_rows_mut2(q, q_row, k, k_row, &rotate);
    }
}

/// Fewest rows worth handing to the pool for a row-wise op; fewer (a decoded token) stay on
/// the calling thread, which then allocates nothing.
const POOL_MIN_ROWS: usize = 16;

/// RMS-normalises each row of `x` (rows of `w.len()` values) by `w`, on the pool for a
/// batch (each row gives the same bits on any thread).
/// Keeps, of `x` (one row of `width` per token of `seqs`, in order), only the rows that
/// give logits, in order.
fn keep_rows(x: &mut Vec<f32>, width: usize, seqs: &[SeqBatch<'_>]) {
    let (mut row0, mut kept) = (0, 0);
    for seq in seqs {
        let n = seq.tokens.len();
        let rows = (row0 + n - seq.n_logits())..(row0 + n);
        x.copy_within(rows.start * width..rows.end * width, kept * width);
        kept += rows.len();
        row0 += n;
    }
    x.truncate(kept * width);
}

fn norm_rows(pool: &ThreadPool, x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    let norm = |rows: &mut [f32]| ops::rms_norm_rows(rows, w, eps);
    if x.len() < POOL_MIN_ROWS * n {
        norm(x);
    } else {
        pool.for_rows_mut(x, n, &|_, rows| norm(rows));
    }
}

/// `gate ← act(gate) · up`, rows of `n_ff` values, on the pool for a batch.
fn gated_activation(pool: &ThreadPool, act: Activation, gate: &mut [f32], up: &[f32], n_ff: usize) {
    let apply = |first: usize, rows: &mut [f32]| {
        let up = &up[first * n_ff..first * n_ff + rows.len()];
        match act {
            Activation::SwiGlu => ops::swiglu(rows, up, n_ff),
            Activation::GeGlu => ops::geglu(rows, up),
        }
    };
    if gate.len() < POOL_MIN_ROWS * n_ff {
        apply(0, gate);
    } else {
        pool.for_rows_mut(gate, n_ff, &apply);
    }
}

/// One sequence's share of a [`Model::forward_batch`].
#[derive(Debug)]
pub struct SeqBatch<'a> {
    /// The sequence; its cache receives the tokens' keys and values.
    pub state: &'a mut State,
    /// Tokens to process at the sequence's next positions.
    pub tokens: &'a [u32],
    /// Which of them get logits.
    pub logits: Logits,
    /// Whose batch arithmetic the tokens follow.
    pub places: BatchPlaces,
}

/// Which batch llama.cpp's arithmetic is followed in for a sequence's tokens: some of ggml's
/// kernels sum in an order that depends on a row's place in its batch (see
/// [`BatchRow`]), so the same tokens batched differently give slightly different logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BatchPlaces {
    /// The batch being computed (llama.cpp given the same batches).
    #[default]
    ThisBatch,
    /// The batches llama.cpp makes of this many tokens read at once from an empty cache
    /// (micro-batches of [`REFERENCE_UBATCH`]), the later ones read one at a time: what a
    /// reference that evaluates each request whole computes, whatever part of it this
    /// batch holds.
    WholePrompt(usize),
}

/// llama.cpp's default micro-batch (`n_ubatch`).
pub const REFERENCE_UBATCH: usize = 512;

/// The place of position `pos` when the first `len` tokens are read at once (and the later
/// ones one at a time).
pub fn whole_prompt_place(pos: usize, len: usize) -> BatchRow {
    if pos >= len {
        return BatchRow { index: 0, of: 1 };
    }
    let start = pos - pos % REFERENCE_UBATCH;
    BatchRow {
        index: pos - start,
        of: (len - start).min(REFERENCE_UBATCH),
    }
}

/// Fills `places` (every token row) and `logit_places` (the rows that get logits) when a
/// sequence asks for [`BatchPlaces::WholePrompt`]; leaves both empty when none does.
fn batch_places(
    seqs: &[SeqBatch<'_>],
    n_tokens: usize,
    places: &mut Vec<BatchRow>,
    logit_places: &mut Vec<BatchRow>,
) {
    places.clear();
    logit_places.clear();
    if seqs.iter().all(|q| q.places == BatchPlaces::ThisBatch) {
        return;
    }
    let n_logits: usize = seqs.iter().map(SeqBatch::n_logits).sum();
    let (mut row, mut logit_row) = (0, 0);
    for seq in seqs {
        let (n, pos0) = (seq.tokens.len(), seq.state.n_past);
        let first_logit = n - seq.n_logits();
        for i in 0..n {
            let (place, logit_place) = match seq.places {
                // Here the output product's batch is the logits rows alone.
                BatchPlaces::ThisBatch => (
                    BatchRow {
                        index: row + i,
                        of: n_tokens,
                    },
                    BatchRow {
                        index: logit_row + i.saturating_sub(first_logit),
                        of: n_logits,
                    },
                ),
                // llama.cpp with every row's logits: the output product's batch is the
                // whole micro-batch.
                BatchPlaces::WholePrompt(len) => {
                    let place = whole_prompt_place(pos0 + i, len);
                    (place, place)
                }
            };
            places.push(place);
            if i >= first_logit {
                logit_places.push(logit_place);
            }
        }
        row += n;
        logit_row += seq.n_logits();
    }
}

impl SeqBatch<'_> {
    /// Logits rows this sequence contributes to the batch's output.
    pub fn n_logits(&self) -> usize {
        match self.logits {
            Logits::None => 0,
            Logits::Last => 1,
            Logits::All => self.tokens.len(),
        }
    }
}

/// Reads tensors with their shapes checked.
struct Loader<'a> {
    file: &'a GgufFile,
}

/// Packs `weights` where this CPU multiplies their types faster packed, all into one
/// allocation ([`PackedRows::pack_all`]), and releases the file's pages of those it packed.
fn pack_products(file: &GgufFile, weights: Vec<&mut Linear>) {
    let items: Vec<_> = weights
        .iter()
        .map(|w| (w.ty(), file.tensor_data(&w.info), w.n_out, w.n_in))
        .collect();
    // Each source is released as soon as it is packed: the peak stays one weight above the
    // packed copies.
    let packed = PackedRows::pack_all(&items, |i, bytes| {
        file.release_pages(&weights[i].info, bytes)
    });
    for (w, packed) in weights.into_iter().zip(packed) {
        w.packed = packed;
    }
}

impl Loader<'_> {
    fn info(&self, name: &str) -> Result<&TensorInfo, ModelError> {
        self.file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor { name: name.into() })
    }

    /// A weight `(n_out, n_in)`, stored as ggml shape `[n_in, n_out]`.
    fn linear(&self, name: &str, n_in: usize, n_out: usize) -> Result<Linear, ModelError> {
        let info = self.info(name)?;
        let expected = vec![n_in as u64, n_out as u64];
        if info.shape != expected {
            return Err(ModelError::BadShape {
                name: name.into(),
                expected,
                got: info.shape.clone(),
            });
        }
        if matches!(info.ggml_type, GgmlType::Q8_1 | GgmlType::Q8_K) {
            return Err(ModelError::UnsupportedType {
                name: name.into(),
                ty: info.ggml_type.name(),
                supported: MATMUL_TYPES,
            });
        }
        if info.ggml_type.row_bytes(n_in).is_none() {
            return Err(ModelError::Invalid(format!(
                "tensor {name}: row of {n_in} values is not a whole number of {} blocks",
                info.ggml_type.name()
            )));
        }
        Ok(Linear {
            info: info.clone(),
            packed: None,
            n_in,
            n_out,
        })
    }

    /// A vector of `len` values, converted to f32.
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let info = self.info(name)?;
        if info.shape != [len as u64] {
            return Err(ModelError::BadShape {
                name: name.into(),
                expected: vec![len as u64],
                got: info.shape.clone(),
            });
        }
        if !matches!(
            info.ggml_type,
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16
        ) {
            return Err(ModelError::UnsupportedType {
                name: name.into(),
                ty: info.ggml_type.name(),
                supported: "F32, F16, BF16",
            });
        }
        let mut out = vec![0.0; len];
        huarizo_kernels::dequantize_row(info.ggml_type, self.file.tensor_data(info), &mut out);
        Ok(out)
    }
}
