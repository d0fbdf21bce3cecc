//! A new LLaMA-architecture model with random weights, written as a GGUF file (F32) that
//! huarizo and llama.cpp both load, for training from scratch.

use super::lora::SplitMix64;
use crate::error::ModelError;
use huarizo_formats::{GgmlType, GgufWriter, Value};
use std::path::Path;

/// The shape of a new model.
#[derive(Clone, Debug, PartialEq)]
pub struct ScratchConfig {
    /// Decoder blocks.
    pub n_layer: usize,
    /// Embedding width.
    pub n_embd: usize,
    /// Query heads (the head width is `n_embd / n_head`).
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// MLP width.
    pub n_ff: usize,
    /// Context length.
    pub n_ctx: usize,
    /// RoPE base frequency.
    pub rope_base: f32,
}

impl ScratchConfig {
    /// Checks the shape is one the decoder runs.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Invalid(m));
        if self.n_layer == 0 || self.n_embd == 0 || self.n_ff == 0 || self.n_ctx == 0 {
            return bad("layers, width, MLP width and context must be at least 1".into());
        }
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return bad(format!(
                "width {} does not split into {} heads",
                self.n_embd, self.n_head
            ));
        }
        if self.n_head_kv == 0 || !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(format!(
                "{} query heads do not share {} key/value heads evenly",
                self.n_head, self.n_head_kv
            ));
        }
        if !(self.n_embd / self.n_head).is_multiple_of(2) {
            return bad("the head width must be even (RoPE rotates pairs)".into());
        }
        Ok(())
    }

    /// Parameters of the model with `n_vocab` tokens (tied embeddings).
    pub fn n_params(&self, n_vocab: usize) -> usize {
        let (e, d) = (self.n_embd, self.n_embd / self.n_head);
        let kv = self.n_head_kv * d;
        let block = 2 * e + e * e * 2 + 2 * e * kv + 3 * e * self.n_ff;
        n_vocab * e + e + self.n_layer * block
    }
}

/// Writes a new model of shape `c` with the tokenizer metadata `tokenizer` (the
/// `tokenizer.ggml.*` keys; its token list sets the vocabulary size) to `path`: weights
/// normal with σ = 0.02 (the output projections σ = 0.02/√(2·layers), as GPT-2), norms 1,
/// the output head tied to the embeddings.
pub fn write_random_model(
    c: &ScratchConfig,
    tokenizer: Vec<(String, Value)>,
    name: &str,
    seed: u64,
    path: &Path,
) -> Result<u64, ModelError> {
    c.validate()?;
    let n_vocab = tokenizer
        .iter()
        .find(|(k, _)| k == "tokenizer.ggml.tokens")
        .and_then(|(_, v)| match v {
            Value::Array(a) => Some(a.len()),
            _ => None,
        })
        .ok_or_else(|| ModelError::MissingKey {
            key: "tokenizer.ggml.tokens".into(),
        })?;
    let (e, d) = (c.n_embd, c.n_embd / c.n_head);
    let mut w = GgufWriter::new();
    let u32v = |v: usize| Value::U32(v as u32);
    w.metadata("general.architecture", Value::String("llama".into()))
        .metadata("general.name", Value::String(name.into()))
        .metadata("general.file_type", Value::U32(0))
        .metadata("llama.block_count", u32v(c.n_layer))
        .metadata("llama.context_length", u32v(c.n_ctx))
        .metadata("llama.embedding_length", u32v(e))
        .metadata("llama.feed_forward_length", u32v(c.n_ff))
        .metadata("llama.attention.head_count", u32v(c.n_head))
        .metadata("llama.attention.head_count_kv", u32v(c.n_head_kv))
        .metadata("llama.rope.freq_base", Value::F32(c.rope_base))
        .metadata("llama.rope.dimension_count", u32v(d))
        .metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .metadata("llama.vocab_size", u32v(n_vocab));
    for (k, v) in tokenizer {
        w.metadata(k, v);
    }
    let mut rng = SplitMix64(seed);
    let mut normal = move |sigma: f32| -> f32 {
        // Box–Muller.
        let u1 = (rng.next_f32() + 1e-7).min(1.0);
        let u2 = rng.next_f32();
        sigma * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    };
    let bytes = |v: Vec<f32>| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let mut matrix =
        |w: &mut GgufWriter<'_>, name: String, n_in: usize, n_out: usize, sigma: f32| {
            let values: Vec<f32> = (0..n_in * n_out).map(|_| normal(sigma)).collect();
            w.tensor(
                name,
                vec![n_in as u64, n_out as u64],
                GgmlType::F32,
                bytes(values),
            )
            .map(|_| ())
        };
    let ones = |n: usize| bytes(vec![1.0; n]);
    let proj_sigma = 0.02 / ((2 * c.n_layer) as f32).sqrt();
    let kv = c.n_head_kv * d;
    matrix(&mut w, "token_embd.weight".into(), e, n_vocab, 0.02)?;
    w.tensor("output_norm.weight", vec![e as u64], GgmlType::F32, ones(e))?;
    for i in 0..c.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}");
        w.tensor(
            n("attn_norm.weight"),
            vec![e as u64],
            GgmlType::F32,
            ones(e),
        )?;
        matrix(&mut w, n("attn_q.weight"), e, e, 0.02)?;
        matrix(&mut w, n("attn_k.weight"), e, kv, 0.02)?;
        matrix(&mut w, n("attn_v.weight"), e, kv, 0.02)?;
        matrix(&mut w, n("attn_output.weight"), e, e, proj_sigma)?;
        w.tensor(n("ffn_norm.weight"), vec![e as u64], GgmlType::F32, ones(e))?;
        matrix(&mut w, n("ffn_gate.weight"), e, c.n_ff, 0.02)?;
        matrix(&mut w, n("ffn_up.weight"), e, c.n_ff, 0.02)?;
        matrix(&mut w, n("ffn_down.weight"), c.n_ff, e, proj_sigma)?;
    }
    Ok(w.write_to(path)?)
}
