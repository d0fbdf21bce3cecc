//! Hyperparameters of a decoder, read from GGUF metadata and validated.
//!
//! Each value is required or optional with a stated default; derived values are computed
//! here once, and a failed invariant is an error carrying the numbers.

use crate::arch::{Arch, ArchSpec};
use crate::error::ModelError;
use huarizo_formats::{GgufFile, Value};

/// How the RoPE frequencies are scaled beyond the trained context.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// No scaling.
    None,
    /// Positions divided by a factor (`rope.scaling.type = linear`).
    Linear {
        /// The factor positions are divided by.
        factor: f32,
    },
}

/// Everything the decoder needs to know about a model's shape.
#[derive(Clone, Debug)]
pub struct Config {
    /// The architecture family.
    pub arch: Arch,
    /// What the family does differently (norms, RoPE style, activation, …).
    pub spec: ArchSpec,
    /// Embedding width E.
    pub n_embd: usize,
    /// Number of decoder layers L.
    pub n_layer: usize,
    /// Query heads H.
    pub n_head: usize,
    /// Key/value heads Hkv (grouped-query attention when < H).
    pub n_head_kv: usize,
    /// Width D of one key (and query) head.
    pub head_dim: usize,
    /// Width of one value head.
    pub head_dim_v: usize,
    /// Hidden width F of the MLP.
    pub n_ff: usize,
    /// Vocabulary size V (rows of the embedding matrix).
    pub n_vocab: usize,
    /// Context length the model was trained for.
    pub n_ctx_train: usize,
    /// RMS-norm epsilon.
    pub rms_eps: f32,
    /// RoPE base frequency of full-attention layers.
    pub rope_base: f32,
    /// RoPE base frequency of sliding-window layers.
    pub rope_base_swa: f32,
    /// Dimensions of each head that RoPE rotates.
    pub n_rot: usize,
    /// RoPE scaling of full-attention layers.
    pub rope_scaling: RopeScaling,
    /// Sliding-window size, for the layers that use one.
    pub sliding_window: Option<usize>,
    /// Scale applied to q·k; `1/sqrt(head_dim)` unless the family says otherwise.
    pub attn_scale: f32,
}

/// Reads a metadata value by its `{arch}.`-relative or absolute key.
struct Meta<'a> {
    file: &'a GgufFile,
    prefix: &'a str,
}

impl Meta<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    fn value(&self, suffix: &str) -> Option<&Value> {
        self.file.get(&self.key(suffix))
    }

    fn usize_opt(&self, suffix: &str) -> Result<Option<usize>, ModelError> {
        match self.value(suffix) {
            None => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n) => Ok(Some(n)),
                // A per-layer array (as some converters write): all entries must agree.
                None => uniform_array(v)
                    .map(Some)
                    .ok_or_else(|| ModelError::BadValue {
                        key: self.key(suffix),
                        expected: "an unsigned integer",
                    }),
            },
        }
    }

    fn usize_req(&self, suffix: &str) -> Result<usize, ModelError> {
        self.usize_opt(suffix)?
            .ok_or_else(|| ModelError::MissingKey {
                key: self.key(suffix),
            })
    }

    fn f32_opt(&self, suffix: &str) -> Result<Option<f32>, ModelError> {
        match self.value(suffix) {
            None => Ok(None),
            Some(v) => v.as_f32().map(Some).ok_or_else(|| ModelError::BadValue {
                key: self.key(suffix),
                expected: "a number",
            }),
        }
    }
}

fn uniform_array(v: &Value) -> Option<usize> {
    let items = v.as_array()?;
    let first = usize::try_from(items.first()?.as_u64()?).ok()?;
    items
        .iter()
        .all(|x| x.as_u64() == Some(first as u64))
        .then_some(first)
}

/// Upper bound on any one dimension, far above any real model, so that a hostile file
/// cannot make the loader allocate absurd buffers.
const MAX_DIM: usize = 1 << 20;

impl Config {
    /// Reads and validates the hyperparameters of `file`.
    pub fn from_gguf(file: &GgufFile) -> Result<Config, ModelError> {
        let arch_name = file
            .get("general.architecture")
            .ok_or_else(|| ModelError::MissingKey {
                key: "general.architecture".into(),
            })?
            .as_str()
            .ok_or_else(|| ModelError::BadValue {
                key: "general.architecture".into(),
                expected: "a string",
            })?;
        let arch = Arch::from_name(arch_name)?;
        let spec = arch.spec();
        let m = Meta {
            file,
            prefix: arch_name,
        };

        let n_embd = m.usize_req("embedding_length")?;
        let n_layer = m.usize_req("block_count")?;
        let n_head = m.usize_req("attention.head_count")?;
        let n_head_kv = m.usize_opt("attention.head_count_kv")?.unwrap_or(n_head);
        let n_ff = m.usize_req("feed_forward_length")?;
        if n_head == 0 {
            return Err(ModelError::Invalid(format!(
                "{}: attention.head_count is 0",
                arch_name
            )));
        }
        let head_dim = m
            .usize_opt("attention.key_length")?
            .unwrap_or(n_embd / n_head);
        let head_dim_v = m.usize_opt("attention.value_length")?.unwrap_or(head_dim);
        let n_rot = m.usize_opt("rope.dimension_count")?.unwrap_or(head_dim);
        let n_ctx_train = m.usize_opt("context_length")?.unwrap_or(2048);
        let rms_eps = m
            .f32_opt("attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-5);
        let rope_base = m.f32_opt("rope.freq_base")?.unwrap_or(10_000.0);
        let rope_scaling = match file
            .get(&m.key("rope.scaling.type"))
            .and_then(Value::as_str)
        {
            None | Some("none") => RopeScaling::None,
            Some("linear") => {
                let factor = m.f32_opt("rope.scaling.factor")?.unwrap_or(1.0);
                if factor > 0.0 && factor != 1.0 {
                    RopeScaling::Linear { factor }
                } else {
                    RopeScaling::None
                }
            }
            // llama3-style scaling arrives as the `rope_freqs.weight` tensor.
            Some("llama3") => RopeScaling::None,
            Some(other) => {
                return Err(ModelError::Invalid(format!(
                    "{}.rope.scaling.type = {other:?} is not supported (supported: none, linear, llama3)",
                    arch_name
                )))
            }
        };
        let sliding_window = if spec.sliding_window_pattern.is_some() {
            m.usize_opt("attention.sliding_window")?
        } else {
            None
        };
        let n_vocab = file
            .tensor("token_embd.weight")
            .and_then(|t| t.shape.get(1).copied())
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| ModelError::MissingTensor {
                name: "token_embd.weight".into(),
            })?;
        let attn_scale = match spec.attn_scale {
            crate::arch::AttnScale::InvSqrtHeadDim
            | crate::arch::AttnScale::QueryInvSqrtHeadDim => 1.0 / (head_dim as f32).sqrt(),
        };

        let config = Config {
            arch,
            spec,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_ff,
            n_vocab,
            n_ctx_train,
            rms_eps,
            rope_base,
            rope_base_swa: spec.rope_base_swa.unwrap_or(rope_base),
            n_rot,
            rope_scaling,
            sliding_window,
            attn_scale,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let dims = [
            ("embedding_length", self.n_embd),
            ("block_count", self.n_layer),
            ("attention.head_count", self.n_head),
            ("attention.head_count_kv", self.n_head_kv),
            ("attention.key_length", self.head_dim),
            ("attention.value_length", self.head_dim_v),
            ("feed_forward_length", self.n_ff),
            ("vocab", self.n_vocab),
        ];
        for (name, value) in dims {
            if value == 0 || value > MAX_DIM {
                return Err(ModelError::Invalid(format!(
                    "{name} = {value} is out of range (1..={MAX_DIM})"
                )));
            }
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return Err(ModelError::Invalid(format!(
                "head_count {} is not a multiple of head_count_kv {}",
                self.n_head, self.n_head_kv
            )));
        }
        if self.n_rot > self.head_dim || !self.n_rot.is_multiple_of(2) {
            return Err(ModelError::Invalid(format!(
                "invalid rope.dimension_count {}, expected an even number <= head dim {}",
                self.n_rot, self.head_dim
            )));
        }
        if self.sliding_window == Some(0) {
            return Err(ModelError::Invalid(
                "attention.sliding_window = 0: a window must hold at least the query's own \
                 position"
                    .into(),
            ));
        }
        if !(self.rms_eps.is_finite() && self.rope_base.is_finite() && self.rope_base > 0.0) {
            return Err(ModelError::Invalid(format!(
                "invalid rms epsilon {} or rope base {}",
                self.rms_eps, self.rope_base
            )));
        }
        Ok(())
    }

    /// Whether layer `il` attends through a sliding window.
    pub fn is_swa_layer(&self, il: usize) -> bool {
        match (self.sliding_window, self.spec.sliding_window_pattern) {
            (Some(_), Some(pattern)) => il % pattern < pattern - 1,
            _ => false,
        }
    }

    /// Total number of parameters, counted from the tensor shapes.
    pub fn param_count(file: &GgufFile) -> u64 {
        file.tensors()
            .iter()
            .map(|t| t.shape.iter().product::<u64>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sliding window of 0 positions (a hostile or broken file) is refused at load: no
    /// query could see even its own key.
    #[test]
    fn a_sliding_window_of_zero_is_refused() {
        let file = GgufFile::open(&huarizo_testdata::file("gemma3.gguf")).unwrap();
        let mut config = Config::from_gguf(&file).unwrap();
        assert_eq!(config.sliding_window, Some(512));
        config.sliding_window = Some(0);
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("attention.sliding_window = 0"), "{err}");
    }
}
