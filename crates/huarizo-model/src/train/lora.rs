//! LoRA adapters: a low-rank update `W + (α/r)·B·A` of a decoder's linear layers, with A
//! `(r, n_in)` and B `(n_out, r)` in f32 beside the frozen (possibly quantized) base.

use crate::config::Config;
use crate::error::ModelError;

/// A linear layer of a decoder block that can carry an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LoraTarget {
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Attention output projection.
    O,
    /// MLP gate projection.
    Gate,
    /// MLP up projection.
    Up,
    /// MLP down projection.
    Down,
}

impl LoraTarget {
    /// Every target, in a fixed order.
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// Position in [`LoraTarget::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The weight's GGUF name inside `blk.N.` (`attn_q`, …).
    pub fn gguf_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "attn_q",
            LoraTarget::K => "attn_k",
            LoraTarget::V => "attn_v",
            LoraTarget::O => "attn_output",
            LoraTarget::Gate => "ffn_gate",
            LoraTarget::Up => "ffn_up",
            LoraTarget::Down => "ffn_down",
        }
    }

    /// The module's Hugging Face / PEFT name (`q_proj`, …).
    pub fn hf_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "o_proj",
            LoraTarget::Gate => "gate_proj",
            LoraTarget::Up => "up_proj",
            LoraTarget::Down => "down_proj",
        }
    }

    /// The Hugging Face submodule holding it (`self_attn` or `mlp`).
    pub fn hf_block(self) -> &'static str {
        match self {
            LoraTarget::Q | LoraTarget::K | LoraTarget::V | LoraTarget::O => "self_attn",
            _ => "mlp",
        }
    }

    /// Parses a target from its short (`q`, `gate`), PEFT (`q_proj`) or GGUF (`attn_q`)
    /// name.
    pub fn parse(name: &str) -> Option<LoraTarget> {
        let short = ["q", "k", "v", "o", "gate", "up", "down"];
        LoraTarget::ALL.into_iter().zip(short).find_map(|(t, s)| {
            (name == s || name == t.hf_name() || name == t.gguf_name()).then_some(t)
        })
    }

    /// `(n_in, n_out)` of this layer in a model of shape `c`.
    pub fn shape(self, c: &Config) -> (usize, usize) {
        let (e, f) = (c.n_embd, c.n_ff);
        match self {
            LoraTarget::Q => (e, c.n_head * c.head_dim),
            LoraTarget::K => (e, c.n_head_kv * c.head_dim),
            LoraTarget::V => (e, c.n_head_kv * c.head_dim_v),
            LoraTarget::O => (c.n_head * c.head_dim_v, e),
            LoraTarget::Gate | LoraTarget::Up => (e, f),
            LoraTarget::Down => (f, e),
        }
    }
}

/// Hyperparameters of an adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank r.
    pub rank: usize,
    /// α: the update is scaled by α / r.
    pub alpha: f32,
    /// Dropout probability on the adapter's input while training.
    pub dropout: f32,
    /// Layers that carry an adapter, in every block.
    pub targets: Vec<LoraTarget>,
}

/// One adapted layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraTensor {
    /// Block index.
    pub layer: usize,
    /// Which linear layer of the block.
    pub target: LoraTarget,
    /// Input width.
    pub n_in: usize,
    /// Output width.
    pub n_out: usize,
    /// A, `(r, n_in)` row-major.
    pub a: Vec<f32>,
    /// B, `(n_out, r)` row-major.
    pub b: Vec<f32>,
}

/// An adapter for every block of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraAdapter {
    /// Its hyperparameters.
    pub config: LoraConfig,
    /// Adapted layers, by block then target.
    pub tensors: Vec<LoraTensor>,
}

impl LoraAdapter {
    /// A new adapter initialised as PEFT does: A uniform in ±1/√n_in (Kaiming-uniform
    /// with a = √5), B zero, so the adapted model starts equal to the base.
    pub fn new(model: &Config, config: LoraConfig, seed: u64) -> Result<LoraAdapter, ModelError> {
        if config.rank == 0 {
            return Err(ModelError::Invalid("LoRA rank must be at least 1".into()));
        }
        if config.targets.is_empty() {
            return Err(ModelError::Invalid(
                "LoRA needs at least one target layer".into(),
            ));
        }
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(ModelError::Invalid(format!(
                "LoRA dropout {} is not in [0, 1)",
                config.dropout
            )));
        }
        let mut rng = SplitMix64(seed);
        let mut tensors = Vec::new();
        for layer in 0..model.n_layer {
            for &target in &config.targets {
                let (n_in, n_out) = target.shape(model);
                let bound = 1.0 / (n_in as f32).sqrt();
                let a = (0..config.rank * n_in)
                    .map(|_| (rng.next_f32() * 2.0 - 1.0) * bound)
                    .collect();
                tensors.push(LoraTensor {
                    layer,
                    target,
                    n_in,
                    n_out,
                    a,
                    b: vec![0.0; n_out * config.rank],
                });
            }
        }
        Ok(LoraAdapter { config, tensors })
    }

    /// Checks that every tensor fits a model of shape `model` and the adapter's rank.
    pub fn validate(&self, model: &Config) -> Result<(), ModelError> {
        let r = self.config.rank;
        for t in &self.tensors {
            let (n_in, n_out) = t.target.shape(model);
            let name = format!("blk.{}.{}", t.layer, t.target.gguf_name());
            if t.layer >= model.n_layer {
                return Err(ModelError::Invalid(format!(
                    "LoRA tensor {name}: the model has {} layers",
                    model.n_layer
                )));
            }
            if (t.n_in, t.n_out) != (n_in, n_out) || t.a.len() != r * n_in || t.b.len() != n_out * r
            {
                return Err(ModelError::Invalid(format!(
                    "LoRA tensor {name}: A is {} values and B {} for rank {r}, but the layer is \
                     {n_out}×{n_in}",
                    t.a.len(),
                    t.b.len()
                )));
            }
        }
        Ok(())
    }

    /// The update's scale α / r.
    pub fn scale(&self) -> f32 {
        self.config.alpha / self.config.rank as f32
    }

    /// The tensor of block `layer`'s `target`, with its index in [`LoraAdapter::tensors`].
    pub fn find(&self, layer: usize, target: LoraTarget) -> Option<(usize, &LoraTensor)> {
        self.tensors
            .iter()
            .enumerate()
            .find(|(_, t)| t.layer == layer && t.target == target)
    }

    /// Gradient buffers of the adapter's shape, zeroed.
    pub fn zero_grads(&self) -> LoraGrads {
        LoraGrads {
            a: self.tensors.iter().map(|t| vec![0.0; t.a.len()]).collect(),
            b: self.tensors.iter().map(|t| vec![0.0; t.b.len()]).collect(),
        }
    }

    /// Trainable values in all.
    pub fn n_params(&self) -> usize {
        self.tensors.iter().map(|t| t.a.len() + t.b.len()).sum()
    }
}

/// Gradients of an adapter's A and B, in the order of [`LoraAdapter::tensors`].
#[derive(Clone, Debug, PartialEq)]
pub struct LoraGrads {
    /// d/dA per tensor.
    pub a: Vec<Vec<f32>>,
    /// d/dB per tensor.
    pub b: Vec<Vec<f32>>,
}

impl LoraGrads {
    /// Sets every gradient to zero.
    pub fn zero(&mut self) {
        self.a
            .iter_mut()
            .chain(&mut self.b)
            .for_each(|g| g.fill(0.0));
    }
}

/// A small, fast, deterministic generator (SplitMix64) for initialisation and dropout.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(pub u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// SplitMix64's finaliser: a well-mixed hash of one word.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `values` (rows of `target`'s output, e.g. a LoRA B or its gradient) reordered between
/// Hugging Face's row order and GGUF's: LLaMA's q/k rows are permuted in GGUF files (see
/// [`crate::hf`]); other layers and families are the same in both. `to_hf` goes from GGUF
/// order to Hugging Face order.
pub fn hf_row_order(c: &Config, target: LoraTarget, values: &[f32], to_hf: bool) -> Vec<f32> {
    let heads = match target {
        LoraTarget::Q => c.n_head,
        LoraTarget::K => c.n_head_kv,
        _ => 0,
    };
    if c.arch != crate::Arch::Llama || heads == 0 {
        return values.to_vec();
    }
    let n_out = target.shape(c).1;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let permuted = if to_hf {
        crate::hf::load::unpermute_rows(&bytes, n_out, heads)
    } else {
        crate::hf::load::permute_rows(&bytes, n_out, heads)
    }
    .expect("q/k rows split into heads of even width");
    permuted
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
