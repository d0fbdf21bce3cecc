//! Tensor names: Hugging Face (`model.layers.3.self_attn.q_proj.weight`) against GGUF
//! (`blk.3.attn_q.weight`), one table row per tensor, per family where they differ.

use crate::arch::Arch;

/// Whole-model tensors: (GGUF name, Hugging Face name).
const GLOBAL: &[(&str, &str)] = &[
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// Per-layer tensors every family shares: (GGUF suffix, Hugging Face suffix) after
/// `blk.N.` / `model.layers.N.`.
const LAYER: &[(&str, &str)] = &[
    ("attn_norm.weight", "input_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("attn_q.bias", "self_attn.q_proj.bias"),
    ("attn_k.bias", "self_attn.k_proj.bias"),
    ("attn_v.bias", "self_attn.v_proj.bias"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];

/// Per-layer norms of LLaMA and Qwen2: one norm before the MLP.
const LAYER_LLAMA: &[(&str, &str)] = &[("ffn_norm.weight", "post_attention_layernorm.weight")];

/// Per-layer norms of Gemma 3: q/k norms, and norms before and after each block (so
/// Hugging Face's `post_attention_layernorm` is GGUF's `post_attention_norm`, not
/// `ffn_norm`).
const LAYER_GEMMA3: &[(&str, &str)] = &[
    ("attn_q_norm.weight", "self_attn.q_norm.weight"),
    ("attn_k_norm.weight", "self_attn.k_norm.weight"),
    (
        "post_attention_norm.weight",
        "post_attention_layernorm.weight",
    ),
    ("ffn_norm.weight", "pre_feedforward_layernorm.weight"),
    ("post_ffw_norm.weight", "post_feedforward_layernorm.weight"),
];

/// Names only read, never written: Yi's first release called the two LLaMA norms `ln1`
/// and `ln2`.
const LAYER_READ_ALIASES: &[(&str, &str)] = &[
    ("attn_norm.weight", "ln1.weight"),
    ("ffn_norm.weight", "ln2.weight"),
];

/// Hugging Face tensors that carry no weights (buffers some checkpoints saved).
const IGNORED_SUFFIXES: &[&str] = &["rotary_emb.inv_freq"];

fn layer_rows(arch: Arch) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    let family = match arch {
        Arch::Gemma3 => LAYER_GEMMA3,
        Arch::Llama | Arch::Qwen2 => LAYER_LLAMA,
    };
    LAYER.iter().chain(family)
}

/// What a Hugging Face tensor name means for `arch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HfName {
    /// A weight, under this GGUF name.
    Gguf(String),
    /// A buffer with no weights (e.g. `rotary_emb.inv_freq`), to skip.
    Ignored,
    /// A name this table does not know.
    Unknown,
}

/// The GGUF name of Hugging Face tensor `hf` of a model of family `arch`.
pub fn gguf_name(arch: Arch, hf: &str) -> HfName {
    if IGNORED_SUFFIXES.iter().any(|s| hf.ends_with(s)) {
        return HfName::Ignored;
    }
    if let Some((g, _)) = GLOBAL.iter().find(|(_, h)| *h == hf) {
        return HfName::Gguf((*g).to_string());
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return HfName::Unknown;
    };
    let Some((layer, suffix)) = rest.split_once('.') else {
        return HfName::Unknown;
    };
    let Ok(il) = layer.parse::<usize>() else {
        return HfName::Unknown;
    };
    let aliases = match arch {
        Arch::Llama => LAYER_READ_ALIASES,
        Arch::Qwen2 | Arch::Gemma3 => &[],
    };
    layer_rows(arch)
        .chain(aliases)
        .find(|(_, h)| *h == suffix)
        .map_or(HfName::Unknown, |(g, _)| {
            HfName::Gguf(format!("blk.{il}.{g}"))
        })
}

/// The Hugging Face name of GGUF tensor `gguf` of a model of family `arch`, if it has
/// one (`rope_freqs.weight`, computed from the config on the Hugging Face side, has none).
pub fn hf_name(arch: Arch, gguf: &str) -> Option<String> {
    if let Some((_, h)) = GLOBAL.iter().find(|(g, _)| *g == gguf) {
        return Some((*h).to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let il = layer.parse::<usize>().ok()?;
    layer_rows(arch)
        .find(|(g, _)| *g == suffix)
        .map(|(_, h)| format!("model.layers.{il}.{h}"))
}

/// Is `gguf` (a GGUF tensor name) an RMS-norm weight? Gemma stores these as `w` on the
/// Hugging Face side and `1 + w` in GGUF.
pub fn is_norm(gguf: &str) -> bool {
    gguf.ends_with("norm.weight")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_for_every_family() {
        for arch in [Arch::Llama, Arch::Qwen2, Arch::Gemma3] {
            for (g, _) in GLOBAL.iter().chain(layer_rows(arch)) {
                let gguf = if GLOBAL.iter().any(|(x, _)| x == g) {
                    g.to_string()
                } else {
                    format!("blk.7.{g}")
                };
                let hf = hf_name(arch, &gguf).expect("every row has a Hugging Face name");
                assert_eq!(
                    gguf_name(arch, &hf),
                    HfName::Gguf(gguf.clone()),
                    "{arch:?} {hf}"
                );
            }
        }
    }

    #[test]
    fn family_specific_rows() {
        let g = |a, h| gguf_name(a, h);
        let post = "model.layers.2.post_attention_layernorm.weight";
        assert_eq!(
            g(Arch::Llama, post),
            HfName::Gguf("blk.2.ffn_norm.weight".into())
        );
        assert_eq!(
            g(Arch::Gemma3, post),
            HfName::Gguf("blk.2.post_attention_norm.weight".into())
        );
        assert_eq!(
            g(Arch::Llama, "model.layers.0.ln1.weight"),
            HfName::Gguf("blk.0.attn_norm.weight".into())
        );
        assert_eq!(g(Arch::Qwen2, "model.layers.0.ln1.weight"), HfName::Unknown);
        assert_eq!(
            g(Arch::Llama, "model.layers.0.self_attn.rotary_emb.inv_freq"),
            HfName::Ignored
        );
        assert_eq!(
            g(Arch::Llama, "model.layers.x.mlp.up_proj.weight"),
            HfName::Unknown
        );
        assert_eq!(hf_name(Arch::Llama, "rope_freqs.weight"), None);
    }
}
