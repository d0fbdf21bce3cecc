//! What a training pass reads its weights from: the model's file (frozen, any type) or a
//! full set of trainable f32 tensors ([`FullParams`], for continued pretraining of every
//! weight and for training from scratch), and the gradients of the latter.

use crate::error::ModelError;
use crate::model::{Linear, Model};
use huarizo_formats::{GgmlType, GgufWriter};
use huarizo_kernels::gemm::{Weight, WeightMat};
use std::path::Path;

/// A weight matrix and, when it is trained, its index in [`FullParams::tensors`].
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub(crate) w: WeightMat<'a>,
    pub(crate) param: Option<usize>,
}

/// A vector (norm weight, bias) and its trainable index.
#[derive(Clone, Copy)]
pub(crate) struct Vect<'a> {
    pub(crate) v: &'a [f32],
    pub(crate) param: Option<usize>,
}

/// One block's weights.
pub(crate) struct LayerW<'a> {
    pub(crate) attn_norm: Vect<'a>,
    pub(crate) wq: Mat<'a>,
    pub(crate) wk: Mat<'a>,
    pub(crate) wv: Mat<'a>,
    pub(crate) wo: Mat<'a>,
    pub(crate) bq: Option<Vect<'a>>,
    pub(crate) bk: Option<Vect<'a>>,
    pub(crate) bv: Option<Vect<'a>>,
    pub(crate) q_norm: Option<Vect<'a>>,
    pub(crate) k_norm: Option<Vect<'a>>,
    pub(crate) attn_post_norm: Option<Vect<'a>>,
    pub(crate) ffn_norm: Vect<'a>,
    pub(crate) w_gate: Mat<'a>,
    pub(crate) w_up: Mat<'a>,
    pub(crate) w_down: Mat<'a>,
    pub(crate) ffn_post_norm: Option<Vect<'a>>,
}

/// Every weight a training pass reads.
pub(crate) struct Weights<'a> {
    pub(crate) embd: Mat<'a>,
    pub(crate) output: Mat<'a>,
    pub(crate) output_norm: Vect<'a>,
    pub(crate) layers: Vec<LayerW<'a>>,
}

impl<'a> Weights<'a> {
    /// The model's own (frozen) weights.
    pub(crate) fn of_model(m: &'a Model) -> Weights<'a> {
        let mat = |l: &Linear| Mat {
            w: WeightMat {
                w: Weight::Ggml {
                    ty: l.ty(),
                    data: m.data(l),
                },
                n_out: l.n_out,
                n_in: l.n_in,
            },
            param: None,
        };
        let vect = |v: &'a Vec<f32>| Vect { v, param: None };
        let opt = |v: &'a Option<Vec<f32>>| v.as_ref().map(vect);
        Weights {
            embd: mat(&m.tok_embd),
            output: mat(&m.output),
            output_norm: vect(&m.output_norm),
            layers: m
                .layers
                .iter()
                .map(|l| LayerW {
                    attn_norm: vect(&l.attn_norm),
                    wq: mat(&l.wq),
                    wk: mat(&l.wk),
                    wv: mat(&l.wv),
                    wo: mat(&l.wo),
                    bq: opt(&l.bq),
                    bk: opt(&l.bk),
                    bv: opt(&l.bv),
                    q_norm: opt(&l.q_norm),
                    k_norm: opt(&l.k_norm),
                    attn_post_norm: opt(&l.attn_post_norm),
                    ffn_norm: vect(&l.ffn_norm),
                    w_gate: mat(&l.w_gate),
                    w_up: mat(&l.w_up),
                    w_down: mat(&l.w_down),
                    ffn_post_norm: opt(&l.ffn_post_norm),
                })
                .collect(),
        }
    }

    /// Trainable f32 weights laid out as `m`'s.
    pub(crate) fn of_params(m: &Model, p: &'a FullParams) -> Result<Weights<'a>, ModelError> {
        let find = |name: &str| -> Result<usize, ModelError> {
            p.index(name)
                .ok_or_else(|| ModelError::MissingTensor { name: name.into() })
        };
        let mat = |name: &str, l: &Linear| -> Result<Mat<'a>, ModelError> {
            let i = find(name)?;
            Ok(Mat {
                w: WeightMat {
                    w: Weight::F32(&p.tensors[i].values),
                    n_out: l.n_out,
                    n_in: l.n_in,
                },
                param: Some(i),
            })
        };
        let vect = |name: &str| -> Result<Vect<'a>, ModelError> {
            let i = find(name)?;
            Ok(Vect {
                v: &p.tensors[i].values,
                param: Some(i),
            })
        };
        let opt = |name: String, present: bool| -> Result<Option<Vect<'a>>, ModelError> {
            if present {
                vect(&name).map(Some)
            } else {
                Ok(None)
            }
        };
        let embd = mat("token_embd.weight", &m.tok_embd)?;
        let output = if p.index("output.weight").is_some() {
            mat("output.weight", &m.output)?
        } else {
            embd
        };
        let mut layers = Vec::new();
        for (i, l) in m.layers.iter().enumerate() {
            let n = |s: &str| format!("blk.{i}.{s}");
            layers.push(LayerW {
                attn_norm: vect(&n("attn_norm.weight"))?,
                wq: mat(&n("attn_q.weight"), &l.wq)?,
                wk: mat(&n("attn_k.weight"), &l.wk)?,
                wv: mat(&n("attn_v.weight"), &l.wv)?,
                wo: mat(&n("attn_output.weight"), &l.wo)?,
                bq: opt(n("attn_q.bias"), l.bq.is_some())?,
                bk: opt(n("attn_k.bias"), l.bk.is_some())?,
                bv: opt(n("attn_v.bias"), l.bv.is_some())?,
                q_norm: opt(n("attn_q_norm.weight"), l.q_norm.is_some())?,
                k_norm: opt(n("attn_k_norm.weight"), l.k_norm.is_some())?,
                attn_post_norm: opt(n("post_attention_norm.weight"), l.attn_post_norm.is_some())?,
                ffn_norm: vect(&n("ffn_norm.weight"))?,
                w_gate: mat(&n("ffn_gate.weight"), &l.w_gate)?,
                w_up: mat(&n("ffn_up.weight"), &l.w_up)?,
                w_down: mat(&n("ffn_down.weight"), &l.w_down)?,
                ffn_post_norm: opt(n("post_ffw_norm.weight"), l.ffn_post_norm.is_some())?,
            });
        }
        Ok(Weights {
            embd,
            output,
            output_norm: vect("output_norm.weight")?,
            layers,
        })
    }
}

/// One trainable tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    /// GGUF name (`blk.0.attn_q.weight`, …).
    pub name: String,
    /// ggml shape (`shape[0]` is the row width).
    pub shape: Vec<u64>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// Every weight of a model as trainable f32 tensors (RoPE frequency factors excepted).
#[derive(Clone, Debug, PartialEq)]
pub struct FullParams {
    /// The tensors, in the model file's order.
    pub tensors: Vec<ParamTensor>,
}

impl FullParams {
    /// The weights of `model`, dequantized to f32.
    pub fn from_model(model: &Model) -> Result<FullParams, ModelError> {
        let file = model.gguf();
        let mut tensors = Vec::new();
        for info in file.tensors() {
            if info.name == "rope_freqs.weight" {
                continue;
            }
            tensors.push(ParamTensor {
                name: info.name.clone(),
                shape: info.shape.clone(),
                values: crate::weights::dequantize(file, info)?,
            });
        }
        Ok(FullParams { tensors })
    }

    /// Index of tensor `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.tensors.iter().position(|t| t.name == name)
    }

    /// Gradient buffers of the same shapes, zeroed.
    pub fn zero_grads(&self) -> FullGrads {
        FullGrads {
            values: self
                .tensors
                .iter()
                .map(|t| vec![0.0; t.values.len()])
                .collect(),
        }
    }

    /// Trainable values in all.
    pub fn n_params(&self) -> usize {
        self.tensors.iter().map(|t| t.values.len()).sum()
    }

    /// Writes the model of `file` (its metadata and tensor list) with these values: weight
    /// matrices as `ty` (F32, F16 or BF16; 1-D tensors stay F32), tensors beyond the
    /// parameters (RoPE factors) copied. `file` must hold its metadata whole (a file
    /// opened anew, not an engine's, whose tokenizer arrays are released).
    pub fn write_gguf(
        &self,
        file: &huarizo_formats::GgufFile,
        ty: GgmlType,
        path: &Path,
    ) -> Result<u64, ModelError> {
        if !matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Err(ModelError::Invalid(format!(
                "trained weights are written as F32, F16 or BF16, not {}",
                ty.name()
            )));
        }
        let mut w = GgufWriter::from_file(file);
        w.metadata(
            "general.file_type",
            huarizo_formats::Value::U32(if ty == GgmlType::F32 {
                0
            } else if ty == GgmlType::F16 {
                1
            } else {
                32
            }),
        );
        let mut out = GgufWriter::new();
        for (k, v) in w.metadata_entries() {
            out.metadata(k.clone(), v.clone());
        }
        for info in file.tensors() {
            match self.index(&info.name) {
                Some(i) => {
                    let t = &self.tensors[i];
                    let to = if t.shape.len() >= 2 {
                        ty
                    } else {
                        GgmlType::F32
                    };
                    let width = t.shape[0] as usize;
                    let row = to.row_bytes(width).unwrap_or(0);
                    let mut bytes = vec![0u8; row * (t.values.len() / width.max(1))];
                    for (src, dst) in t
                        .values
                        .chunks_exact(width)
                        .zip(bytes.chunks_exact_mut(row))
                    {
                        huarizo_kernels::quantize_row_ref(to, src, dst);
                    }
                    out.tensor(t.name.clone(), t.shape.clone(), to, bytes)?;
                }
                None => {
                    out.tensor(
                        info.name.clone(),
                        info.shape.clone(),
                        info.ggml_type,
                        file.tensor_data(info).to_vec(),
                    )?;
                }
            }
        }
        Ok(out.write_to(path)?)
    }
}

/// Gradients of [`FullParams`], in the same order.
#[derive(Clone, Debug, PartialEq)]
pub struct FullGrads {
    /// d/d(values) per tensor.
    pub values: Vec<Vec<f32>>,
}

impl FullGrads {
    /// Sets every gradient to zero.
    pub fn zero(&mut self) {
        self.values.iter_mut().for_each(|g| g.fill(0.0));
    }
}
