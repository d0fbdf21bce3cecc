//! Evidence layers 4 and 5: exact reuse (content hashes of the dequantized values) and
//! weight similarity (cosine and relative difference of matched tensors, set against the
//! difference that storage formats alone explain), plus the embeddings compared on the
//! rows of the tokens both vocabularies share.

use crate::checkpoint::Checkpoint;
use crate::error::LineageError;
use crate::graph::{GraphReport, TensorMatch};
use crate::quant_noise::{expected_sq_error, snap_mismatch};
use huarizo_engine::{weights, TensorInfo};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A difference this many times the quantization-explained one still counts as "the same
/// weights" (the noise model is an estimate; real quantizers search for better grids).
pub const QUANT_TOLERANCE: f64 = 1.5;

/// Share of values allowed off the coarser grid in the snap test. Re-quantized copies of
/// the test models land on it exactly (0 of every tensor's values off); a copy whose
/// weights moved by 3–4% of their size has 1–3% off.
pub const SNAP_TOLERANCE: f64 = 0.002;

/// One matched pair of equal shape, compared value by value.
#[derive(Clone, Debug, Serialize)]
pub struct TensorComparison {
    /// Role (`blk.*.attn_q.weight`).
    pub role: String,
    /// Layer, for per-layer tensors.
    pub layer: Option<usize>,
    /// Name in A.
    pub a: String,
    /// Name in B.
    pub b: String,
    /// Storage type in A.
    pub type_a: String,
    /// Storage type in B.
    pub type_b: String,
    /// Number of values.
    pub n: u64,
    /// The stored bytes are equal (same type, same blocks).
    pub same_bytes: bool,
    /// The dequantized values are bit-for-bit equal.
    pub same_values: bool,
    /// Cosine similarity of the dequantized values.
    pub cosine: f64,
    /// ‖A − B‖ / ‖A‖.
    pub relative_difference: f64,
    /// The relative difference the two storage formats explain.
    pub quantization_explains: f64,
    /// The snap test (see [`crate::quant_noise::snap_mismatch`]): share of the finer
    /// copy's values that do not re-quantize onto the coarser copy's grid levels.
    pub snap_mismatch: Option<f64>,
}

impl TensorComparison {
    /// The difference is no larger than re-quantization explains.
    pub fn within_quantization(&self) -> bool {
        if self.same_values {
            return true;
        }
        match self.snap_mismatch {
            Some(m) => m <= SNAP_TOLERANCE,
            None => self.relative_difference <= QUANT_TOLERANCE * self.quantization_explains + 1e-6,
        }
    }
}

/// Embedding rows of the tokens both vocabularies store with the same text.
#[derive(Clone, Debug, Serialize)]
pub struct SharedRows {
    /// Rows compared.
    pub rows: usize,
    /// Mean cosine similarity of paired rows.
    pub mean_cosine: f64,
}

/// The weights layer of the report.
#[derive(Clone, Debug, Serialize)]
pub struct WeightsReport {
    /// Every equal-shape matched pair.
    pub tensors: Vec<TensorComparison>,
    /// Share of A's weights that were compared (matched with equal shape).
    pub compared_fraction: f64,
    /// Pairs with equal stored bytes.
    pub same_bytes: usize,
    /// Pairs with equal dequantized values.
    pub same_values: usize,
    /// Share of compared weights whose difference quantization explains.
    pub within_quantization_fraction: f64,
    /// Cosine similarity averaged over compared weights (weighted by size).
    pub mean_cosine: f64,
    /// Mean cosine per layer (size-weighted), for the plot.
    pub per_layer_cosine: Vec<f64>,
    /// Embeddings on shared-token rows, when the vocabularies differ but widths agree.
    pub shared_embedding_rows: Option<SharedRows>,
}

fn read(c: &Checkpoint, info: &TensorInfo) -> Result<Vec<f32>, LineageError> {
    weights::dequantize(&c.file, info).map_err(|e| LineageError::Tensor {
        path: c.path.clone(),
        tensor: info.name.clone(),
        message: e.to_string(),
    })
}

fn hash(values: &[f32]) -> u128 {
    // The bit patterns: -0.0 and 0.0 count as different values.
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for chunk in values.chunks(4096) {
        let bytes: Vec<u8> = chunk
            .iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect();
        h.update(&bytes);
    }
    h.digest128()
}

/// Cosine similarity and ‖a − b‖/‖a‖.
pub fn cosine_and_difference(a: &[f32], b: &[f32]) -> (f64, f64) {
    let (mut ab, mut aa, mut bb, mut dd) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (ca, cb) in a.chunks(1024).zip(b.chunks(1024)) {
        let (mut s_ab, mut s_aa, mut s_bb, mut s_dd) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for (&x, &y) in ca.iter().zip(cb) {
            s_ab += x * y;
            s_aa += x * x;
            s_bb += y * y;
            s_dd += (x - y) * (x - y);
        }
        ab += s_ab as f64;
        aa += s_aa as f64;
        bb += s_bb as f64;
        dd += s_dd as f64;
    }
    let cos = if aa > 0.0 && bb > 0.0 {
        ab / (aa.sqrt() * bb.sqrt())
    } else if aa == bb {
        1.0
    } else {
        0.0
    };
    let rel = if aa > 0.0 {
        (dd / aa).sqrt()
    } else if dd == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    (cos, rel)
}

fn compare_pair(
    a: &Checkpoint,
    b: &Checkpoint,
    m: &TensorMatch,
) -> Result<TensorComparison, LineageError> {
    let ia = a.file.tensor(&m.a).expect("matched tensors exist");
    let ib = b.file.tensor(&m.b).expect("matched tensors exist");
    let va = read(a, ia)?;
    let vb = read(b, ib)?;
    let same_bytes = ia.ggml_type == ib.ggml_type
        && xxhash_rust::xxh3::xxh3_128(a.file.tensor_data(ia))
            == xxhash_rust::xxh3::xxh3_128(b.file.tensor_data(ib));
    let same_values = same_bytes || hash(&va) == hash(&vb);
    let (cosine, relative_difference) = cosine_and_difference(&va, &vb);
    let norm_a: f64 = va.iter().map(|&x| (x as f64) * (x as f64)).sum();
    let noise_a = expected_sq_error(ia.ggml_type, &vb);
    let noise_b = expected_sq_error(ib.ggml_type, &va);
    let explained = noise_a + noise_b;
    // The coarser copy is the one whose format adds more noise. A file quantized with an
    // importance matrix searched its grids, so re-quantizing cannot reproduce it.
    let snap_mismatch = if same_values {
        Some(0.0)
    } else if noise_a >= noise_b {
        snap_mismatch(ia.ggml_type, &va, &vb).filter(|_| !a.imatrix())
    } else {
        snap_mismatch(ib.ggml_type, &vb, &va).filter(|_| !b.imatrix())
    };
    let quantization_explains = if norm_a > 0.0 {
        (explained / norm_a).sqrt()
    } else {
        0.0
    };
    Ok(TensorComparison {
        role: m.role.clone(),
        layer: m.layer,
        a: m.a.clone(),
        b: m.b.clone(),
        type_a: ia.ggml_type.name().to_string(),
        type_b: ib.ggml_type.name().to_string(),
        n: ia.n_elements(),
        same_bytes,
        same_values,
        cosine,
        relative_difference,
        quantization_explains,
        snap_mismatch,
    })
}

/// Embedding rows of shared tokens (when the matrices differ in rows but not width).
fn shared_rows(
    a: &Checkpoint,
    b: &Checkpoint,
    graph: &GraphReport,
) -> Result<Option<SharedRows>, LineageError> {
    let Some(m) = graph.find(None, "token_embd.weight") else {
        return Ok(None);
    };
    if m.shape_a == m.shape_b || m.shape_a.first() != m.shape_b.first() {
        return Ok(None);
    }
    let mut pairs = crate::tokens::shared_ids(a, b);
    let rows_a = m.shape_a.get(1).copied().unwrap_or(0) as usize;
    let rows_b = m.shape_b.get(1).copied().unwrap_or(0) as usize;
    pairs.retain(|&(i, j)| i < rows_a && j < rows_b);
    // At most 8192 rows, spread over the vocabulary.
    let stride = pairs.len().div_ceil(8192).max(1);
    let pairs: Vec<(usize, usize)> = pairs.into_iter().step_by(stride).collect();
    if pairs.is_empty() {
        return Ok(None);
    }
    let ia = a.file.tensor(&m.a).expect("matched");
    let ib = b.file.tensor(&m.b).expect("matched");
    let ra: Vec<usize> = pairs.iter().map(|p| p.0).collect();
    let rb: Vec<usize> = pairs.iter().map(|p| p.1).collect();
    let err = |c: &Checkpoint, t: &TensorInfo| {
        let path = c.path.clone();
        let tensor = t.name.clone();
        move |e: huarizo_engine::ModelError| LineageError::Tensor {
            path,
            tensor,
            message: e.to_string(),
        }
    };
    let va = weights::dequantize_selected_rows(&a.file, ia, &ra).map_err(err(a, ia))?;
    let vb = weights::dequantize_selected_rows(&b.file, ib, &rb).map_err(err(b, ib))?;
    let width = m.shape_a[0] as usize;
    let total: f64 = va
        .chunks_exact(width)
        .zip(vb.chunks_exact(width))
        .map(|(x, y)| cosine_and_difference(x, y).0)
        .sum();
    Ok(Some(SharedRows {
        rows: pairs.len(),
        mean_cosine: total / pairs.len() as f64,
    }))
}

/// Compares every equal-shape matched pair, on `threads` threads; `progress` is called
/// with the number of values done after each tensor.
pub fn compare(
    a: &Checkpoint,
    b: &Checkpoint,
    graph: &GraphReport,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<WeightsReport, LineageError> {
    let todo: Vec<&TensorMatch> = graph
        .matches
        .iter()
        .filter(|m| m.shape_a == m.shape_b)
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<TensorComparison, LineageError>)>> =
        Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = todo.get(i) else { break };
                let r = compare_pair(a, b, m);
                let n = m.shape_a.iter().product::<u64>();
                results.lock().expect("no panics inside").push((i, r));
                progress(n);
            });
        }
    });
    let mut results = results.into_inner().expect("no panics inside");
    results.sort_by_key(|(i, _)| *i);
    let tensors = results
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Result<Vec<_>, _>>()?;
    let compared: u64 = tensors.iter().map(|t| t.n).sum();
    let weight = |f: &dyn Fn(&TensorComparison) -> f64| -> f64 {
        if compared == 0 {
            return 0.0;
        }
        tensors.iter().map(|t| f(t) * t.n as f64).sum::<f64>() / compared as f64
    };
    let n_layers = tensors
        .iter()
        .filter_map(|t| t.layer)
        .max()
        .map_or(0, |l| l + 1);
    let per_layer_cosine = (0..n_layers)
        .map(|l| {
            let (s, n) = tensors
                .iter()
                .filter(|t| t.layer == Some(l))
                .fold((0.0, 0u64), |(s, n), t| {
                    (s + t.cosine * t.n as f64, n + t.n)
                });
            if n == 0 {
                f64::NAN
            } else {
                s / n as f64
            }
        })
        .collect();
    Ok(WeightsReport {
        compared_fraction: compared as f64 / a.n_params().max(1) as f64,
        same_bytes: tensors.iter().filter(|t| t.same_bytes).count(),
        same_values: tensors.iter().filter(|t| t.same_values).count(),
        within_quantization_fraction: weight(&|t| f64::from(u8::from(t.within_quantization()))),
        mean_cosine: weight(&|t| t.cosine),
        per_layer_cosine,
        shared_embedding_rows: shared_rows(a, b, graph)?,
        tensors,
    })
}
