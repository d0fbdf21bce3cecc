//! Edited copies of a model, for testing lineage on cases with a known answer: weights
//! perturbed as a fine-tune would (noise plus low-rank updates), tensors permuted in ways
//! that leave the function unchanged (MLP neurons, attention heads with their key/value
//! groups), tensors renamed, and weights re-initialized at random in the same architecture.

use crate::error::LineageError;
use huarizo_engine::{weights, Config, GgmlType, GgufFile, GgufWriter, TensorInfo, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// One edit applied to every tensor it concerns.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Every weight matrix W becomes `W + noise·rms(W)·N(0,1) + low-rank update` (rank
    /// `rank`, root-mean-square `lora·rms(W)`), stored as Q8_0: a stand-in for fine-tuning.
    Perturb {
        /// Relative size of the per-weight noise.
        noise: f32,
        /// Rank of the update.
        rank: usize,
        /// Relative size of the low-rank update.
        lora: f32,
        /// Random seed.
        seed: u64,
    },
    /// MLP neurons (in groups of the storage block) and attention heads (key/value groups
    /// and the query heads within them) permuted; outputs are unchanged.
    Permute {
        /// Random seed.
        seed: u64,
    },
    /// Tensor names rewritten: each `(from, to)` replaces the name component `from`.
    Rename(Vec<(String, String)>),
    /// Every weight matrix replaced by Gaussian noise of the same root-mean-square, every
    /// norm by ones: the architecture without the training.
    Reinit {
        /// Random seed.
        seed: u64,
    },
}

fn normal(rng: &mut StdRng) -> f32 {
    // Box–Muller.
    let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
    let u2: f32 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn rms(v: &[f32]) -> f32 {
    (v.iter().map(|x| (x * x) as f64).sum::<f64>() / v.len().max(1) as f64).sqrt() as f32
}

fn shuffled(n: usize, rng: &mut StdRng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.gen_range(0..=i));
    }
    p
}

/// Rows `perm[i]` of `data` become row `i` (rows of `row_bytes`, groups of `group` rows).
fn permute_rows(data: &[u8], row_bytes: usize, group: usize, perm: &[usize]) -> Vec<u8> {
    let g = row_bytes * group;
    perm.iter()
        .flat_map(|&p| data[p * g..(p + 1) * g].iter().copied())
        .collect()
}

/// Within every row, column groups `perm[i]` become group `i` (groups of `group_bytes`).
fn permute_columns(data: &[u8], row_bytes: usize, group_bytes: usize, perm: &[usize]) -> Vec<u8> {
    data.chunks_exact(row_bytes)
        .flat_map(|row| {
            perm.iter()
                .flat_map(move |&p| row[p * group_bytes..(p + 1) * group_bytes].iter().copied())
        })
        .collect()
}

struct Tensor {
    name: String,
    shape: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

fn is_matrix(t: &TensorInfo) -> bool {
    t.shape.len() >= 2 && t.shape[1] > 1
}

fn store(values: &[f32], width: usize) -> (GgmlType, Vec<u8>) {
    if width.is_multiple_of(GgmlType::Q8_0.block_size()) {
        (GgmlType::Q8_0, weights::quantize(GgmlType::Q8_0, values))
    } else {
        (
            GgmlType::F32,
            values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }
}

/// The permutations of one layer: query heads (new → old), key/value heads, and MLP
/// neuron groups of `neuron_group` neurons.
struct LayerPermutation {
    q: Vec<usize>,
    kv: Vec<usize>,
    ffn: Vec<usize>,
    neuron_group: usize,
}

impl LayerPermutation {
    /// Draws the permutations of layer `l`: key/value groups move as wholes with their
    /// query heads, which are also shuffled within the group; MLP neurons move in groups of
    /// `ffn_down`'s block size, so that its rows keep whole blocks.
    fn draw(file: &GgufFile, cfg: &Config, l: usize, rng: &mut StdRng) -> Option<Self> {
        let down = file.tensor(&format!("blk.{l}.ffn_down.weight"))?;
        let neuron_group = down.ggml_type.block_size();
        let group = cfg.n_head / cfg.n_head_kv.max(1);
        let kv = shuffled(cfg.n_head_kv, rng);
        let mut q = Vec::with_capacity(cfg.n_head);
        for &g in &kv {
            for i in shuffled(group, rng) {
                q.push(g * group + i);
            }
        }
        let ffn = shuffled(cfg.n_ff / neuron_group, rng);
        Some(LayerPermutation {
            q,
            kv,
            ffn,
            neuron_group,
        })
    }

    /// The permuted bytes of tensor `info` (`stem` is its name with `*` for the layer), or
    /// `None` when the permutations leave it alone.
    fn apply(
        &self,
        src: &Path,
        cfg: &Config,
        info: &TensorInfo,
        stem: &str,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, LineageError> {
        let ty = info.ggml_type;
        let (width, _) = weights::rows_of(info);
        let row_bytes = ty.row_bytes(width).unwrap_or(0);
        let err = |m: String| bad(src, &info.name, m);
        let vector = |perm: &[usize], unit: usize| -> Result<Vec<u8>, LineageError> {
            if ty != GgmlType::F32 {
                return Err(err("vectors must be F32 to permute".into()));
            }
            Ok(perm
                .iter()
                .flat_map(|&p| data[p * unit * 4..(p + 1) * unit * 4].iter().copied())
                .collect())
        };
        let columns = |perm: &[usize], unit: usize| -> Result<Vec<u8>, LineageError> {
            let bs = ty.block_size();
            if !unit.is_multiple_of(bs) {
                return Err(err(format!(
                    "{unit}-column groups are not whole {} blocks",
                    ty.name()
                )));
            }
            Ok(permute_columns(
                data,
                row_bytes,
                unit / bs * ty.type_size(),
                perm,
            ))
        };
        let (d, dv, g) = (cfg.head_dim, cfg.head_dim_v, self.neuron_group);
        Ok(Some(match stem {
            "blk.*.attn_q.weight" => permute_rows(data, row_bytes, d, &self.q),
            "blk.*.attn_k.weight" => permute_rows(data, row_bytes, d, &self.kv),
            "blk.*.attn_v.weight" => permute_rows(data, row_bytes, dv, &self.kv),
            "blk.*.attn_q.bias" => vector(&self.q, d)?,
            "blk.*.attn_k.bias" => vector(&self.kv, d)?,
            "blk.*.attn_v.bias" => vector(&self.kv, dv)?,
            "blk.*.attn_output.weight" => columns(&self.q, dv)?,
            "blk.*.ffn_gate.weight" | "blk.*.ffn_up.weight" => {
                permute_rows(data, row_bytes, g, &self.ffn)
            }
            "blk.*.ffn_down.weight" => columns(&self.ffn, g)?,
            _ => return Ok(None),
        }))
    }
}

fn bad(path: &Path, tensor: &str, message: impl Into<String>) -> LineageError {
    LineageError::Tensor {
        path: path.to_path_buf(),
        tensor: tensor.to_string(),
        message: message.into(),
    }
}

/// Writes `src` with `edit` applied to `dst`.
pub fn write_variant(src: &Path, dst: &Path, edit: &Edit) -> Result<(), LineageError> {
    let open = |e: String| LineageError::Open {
        path: src.to_path_buf(),
        message: e,
    };
    let file = GgufFile::open(src).map_err(|e| open(e.to_string()))?;
    let cfg = Config::from_gguf(&file).map_err(|e| open(e.to_string()))?;
    let mut rng = StdRng::seed_from_u64(match edit {
        Edit::Perturb { seed, .. } | Edit::Permute { seed } | Edit::Reinit { seed } => *seed,
        Edit::Rename(_) => 0,
    });
    let mut out: Vec<Tensor> = Vec::new();
    // Per-layer permutations, drawn once per layer.
    let mut layer_perms: std::collections::HashMap<usize, LayerPermutation> = Default::default();
    for info in file.tensors() {
        let data = file.tensor_data(info);
        let (width, rows) = weights::rows_of(info);
        let mut t = Tensor {
            name: info.name.clone(),
            shape: info.shape.clone(),
            ty: info.ggml_type,
            data: data.to_vec(),
        };
        match edit {
            Edit::Perturb {
                noise, rank, lora, ..
            } if is_matrix(info) => {
                let mut v = weights::dequantize(&file, info)
                    .map_err(|e| bad(src, &info.name, e.to_string()))?;
                let scale = rms(&v);
                let u: Vec<f32> = (0..rows * rank).map(|_| normal(&mut rng)).collect();
                let w: Vec<f32> = (0..rank * width).map(|_| normal(&mut rng)).collect();
                let lora_scale = lora * scale / (*rank as f32).sqrt();
                for r in 0..rows {
                    for c in 0..width {
                        let low: f32 = (0..*rank).map(|k| u[r * rank + k] * w[k * width + c]).sum();
                        v[r * width + c] += noise * scale * normal(&mut rng) + lora_scale * low;
                    }
                }
                (t.ty, t.data) = store(&v, width);
            }
            Edit::Reinit { .. } => {
                if is_matrix(info) {
                    let v = weights::dequantize(&file, info)
                        .map_err(|e| bad(src, &info.name, e.to_string()))?;
                    let scale = rms(&v);
                    let v: Vec<f32> = (0..v.len()).map(|_| scale * normal(&mut rng)).collect();
                    (t.ty, t.data) = store(&v, width);
                } else if info.name.contains("norm") {
                    t.ty = GgmlType::F32;
                    t.data = vec![1.0f32; width * rows]
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect();
                }
            }
            Edit::Permute { .. } => {
                if let (Some(l), stem) = crate::graph::split_name(&info.name) {
                    let perm = match layer_perms.entry(l) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => v.insert(
                            LayerPermutation::draw(&file, &cfg, l, &mut rng)
                                .ok_or_else(|| bad(src, &info.name, "no ffn_down in its layer"))?,
                        ),
                    };
                    if let Some(data) = perm.apply(src, &cfg, info, &stem, data)? {
                        t.data = data;
                    }
                }
            }
            Edit::Rename(pairs) => {
                let parts: Vec<String> = t
                    .name
                    .split('.')
                    .map(|p| {
                        pairs
                            .iter()
                            .find(|(from, _)| from == p)
                            .map_or_else(|| p.to_string(), |(_, to)| to.clone())
                    })
                    .collect();
                t.name = parts.join(".");
            }
            _ => {}
        }
        out.push(t);
    }
    let mut w = GgufWriter::from_file(&file);
    let what = match edit {
        Edit::Perturb { .. } => "perturbed",
        Edit::Permute { .. } => "permuted",
        Edit::Rename(_) => "renamed",
        Edit::Reinit { .. } => "re-initialized",
    };
    let name = match file.get("general.name") {
        Some(Value::String(s)) => format!("{s} ({what})"),
        _ => what.to_string(),
    };
    w.metadata("general.name", Value::String(name));
    for t in &out {
        w.tensor(t.name.clone(), t.shape.clone(), t.ty, t.data.as_slice())
            .map_err(|e| bad(dst, &t.name, e.to_string()))?;
    }
    w.write_to(dst).map_err(|e| LineageError::Write {
        path: dst.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(())
}
