//! Architectures as data: one table row per family, read by the one decoder.

use crate::error::ModelError;

/// A supported architecture family, by its GGUF `general.architecture` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `llama`: Llama 1/2/3, SmolLM, TinyLlama, Mistral (no sliding window), Yi, DeepSeek-LLM.
    Llama,
    /// `qwen2`: Qwen 1.5/2/2.5 (biases on q, k, v).
    Qwen2,
    /// `gemma3`: Gemma 3 text models.
    Gemma3,
}

/// The gated activation of the MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `silu(gate) ⊙ up`.
    SwiGlu,
    /// `gelu_tanh(gate) ⊙ up`.
    GeGlu,
}

/// How q·k is scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnScale {
    /// `1/sqrt(head_dim)`, applied to q·k by the softmax (llama.cpp's `kq_scale`).
    InvSqrtHeadDim,
    /// `1/sqrt(head_dim)`, applied to q in f32 before attention, the softmax scale being 1
    /// (llama.cpp's Gemma graphs: `ggml_scale(Qcur, f_attention_scale)`). The same value,
    /// but q is rounded to f16 after the scaling: the two differ where q/sqrt(head_dim)
    /// falls among f16's subnormals.
    QueryInvSqrtHeadDim,
}

/// What one family does differently from the plain LLaMA decoder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArchSpec {
    /// RoPE pairs element i with i + n_rot/2 (NeoX) instead of adjacent elements.
    pub rope_neox: bool,
    /// Per-head RMS norm of q and k before RoPE (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// RMS norms after the attention and MLP blocks (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    /// Embeddings are multiplied by sqrt(E).
    pub scale_embeddings: bool,
    /// The MLP's gated activation.
    pub activation: Activation,
    /// How q·k is scaled.
    pub attn_scale: AttnScale,
    /// Every `n`-th layer (the last of each group of n) attends globally, the others
    /// through the sliding window.
    pub sliding_window_pattern: Option<usize>,
    /// RoPE base of the sliding-window layers, when it differs from the global one.
    pub rope_base_swa: Option<f32>,
}

const LLAMA: ArchSpec = ArchSpec {
    rope_neox: false,
    qk_norm: false,
    post_norms: false,
    scale_embeddings: false,
    activation: Activation::SwiGlu,
    attn_scale: AttnScale::InvSqrtHeadDim,
    sliding_window_pattern: None,
    rope_base_swa: None,
};

/// The table: GGUF name, variant, spec.
const ARCHS: &[(&str, Arch, ArchSpec)] = &[
    ("llama", Arch::Llama, LLAMA),
    (
        "qwen2",
        Arch::Qwen2,
        ArchSpec {
            rope_neox: true,
            ..LLAMA
        },
    ),
    (
        "gemma3",
        Arch::Gemma3,
        ArchSpec {
            rope_neox: true,
            qk_norm: true,
            post_norms: true,
            scale_embeddings: true,
            activation: Activation::GeGlu,
            attn_scale: AttnScale::QueryInvSqrtHeadDim,
            sliding_window_pattern: Some(6),
            rope_base_swa: Some(10_000.0),
        },
    ),
];

impl Arch {
    /// Looks an architecture up by its GGUF name.
    pub fn from_name(name: &str) -> Result<Arch, ModelError> {
        ARCHS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, a, _)| *a)
            .ok_or_else(|| ModelError::UnsupportedArch {
                arch: name.to_string(),
                supported: Arch::supported().join(", "),
            })
    }

    /// The GGUF names of all supported architectures.
    pub fn supported() -> Vec<&'static str> {
        ARCHS.iter().map(|(n, _, _)| *n).collect()
    }

    /// The GGUF name.
    pub fn name(self) -> &'static str {
        ARCHS
            .iter()
            .find(|(_, a, _)| *a == self)
            .map_or("?", |r| r.0)
    }

    /// The family's spec row.
    pub fn spec(self) -> ArchSpec {
        ARCHS
            .iter()
            .find(|(_, a, _)| *a == self)
            .map(|r| r.2)
            .unwrap_or(LLAMA)
    }
}
