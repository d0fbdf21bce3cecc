//! Requantization: a GGUF model rewritten with its weight matrices in another ggml type,
//! as `llama-quantize --allow-requantize --pure` does.
//!
//! Which tensors change follows llama.cpp's `llama_model_quantize_impl`: a tensor is
//! requantized when its name ends in `weight` and it has at least two dimensions (trailing
//! dimensions of 1 not counted, as `ggml_n_dims`); every other tensor (norms, biases, RoPE
//! factors) is copied unchanged. A requantized tensor is dequantized to f32 a row at a time
//! ([`huarizo_kernels::dequantize_row`]) and quantized with the reference (weight)
//! quantizer ([`huarizo_kernels::quantize_row_ref`]). That quantizer is ggml's for
//! Q4_0…Q8_0 but a plain min/max fit for Q2_K…Q6_K, not ggml's error search, so K-quant
//! files come out somewhat worse than llama-quantize's. A tensor already of the target
//! type is copied, not requantized.
//!
//! A row that is not a whole number of the target's blocks falls back as llama.cpp's
//! `llama_tensor_get_type` does: Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, Q2_K and Q3_K →
//! Q4_0 (llama.cpp picks IQ4_NL, which huarizo lacks; Q4_0 has its size), and anything that
//! still does not fit (or a 32-block target) → F16. Each fallback is reported.
//!
//! The output is written through [`GgufWriter::write_with`]: one tensor's quantized bytes
//! are in memory at a time, plus a row of f32 per thread; copied tensors come straight from
//! the input's memory map. The metadata is copied in order, with `general.file_type` set to
//! llama.cpp's `llama_ftype` for the target and `general.quantization_version` to 2.

use std::path::{Path, PathBuf};

use huarizo_formats::{GgmlType, GgufError, GgufFile, GgufWriter, TensorInfo, Value, WriteError};
use huarizo_kernels::{dequantize_row, quantize_row_ref};

/// The types weights can be requantized to, in llama-quantize's spelling.
pub const TARGETS: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// ggml's quantization format version (`GGML_QNT_VERSION`), written as
/// `general.quantization_version`.
const QNT_VERSION: u32 = 2;

/// What [`requantize`] should produce.
#[derive(Clone, Debug)]
pub struct RequantizeOptions {
    /// The type for weight matrices (one of [`TARGETS`]).
    pub target: GgmlType,
    /// Threads quantizing the rows of a tensor (0 = all cores).
    pub n_threads: usize,
}

/// One tensor done, for progress output.
#[derive(Clone, Debug)]
pub struct TensorReport {
    /// 0-based position of the tensor in the file.
    pub index: usize,
    /// Tensors in the file.
    pub count: usize,
    /// Tensor name.
    pub name: String,
    /// Shape, ggml order.
    pub shape: Vec<u64>,
    /// Type in the input.
    pub from: GgmlType,
    /// Type in the output.
    pub to: GgmlType,
    /// How the tensor was treated.
    pub action: Action,
    /// Bytes in the input.
    pub bytes_in: usize,
    /// Bytes in the output.
    pub bytes_out: usize,
}

/// How [`requantize`] treated a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Copied: not a weight matrix (1-D norms, biases, …).
    Kept,
    /// Copied: already of the target type.
    AlreadyTarget,
    /// Requantized to the target type.
    Requantized,
    /// Requantized to a fallback type: its row length is not a whole number of the
    /// target's blocks.
    Fallback,
}

/// What [`requantize`] did, in total.
#[derive(Clone, Debug, Default)]
pub struct RequantizeSummary {
    /// Tensors in the file.
    pub tensors: usize,
    /// Tensors requantized to the target.
    pub requantized: usize,
    /// Tensors requantized to a fallback type: `(name, type used)`.
    pub fallbacks: Vec<(String, GgmlType)>,
    /// Input file size in bytes.
    pub input_bytes: u64,
    /// Output file size in bytes.
    pub output_bytes: u64,
}

/// Why a requantization failed. Each error names the file and, where one is at fault, the
/// tensor.
#[derive(Debug, thiserror::Error)]
pub enum RequantizeError {
    /// The target type is not one weights can be quantized to.
    #[error(
        "cannot requantize to {target}: supported types are {}",
        target_names()
    )]
    UnsupportedTarget {
        /// The type asked for.
        target: GgmlType,
    },
    /// The input could not be opened or is not valid GGUF (the error names the file).
    #[error(transparent)]
    Input(#[from] GgufError),
    /// A tensor of the input cannot be written as asked.
    #[error("{}: tensor `{tensor}`: {source}", input.display())]
    Tensor {
        /// The input file.
        input: PathBuf,
        /// The tensor.
        tensor: String,
        /// What went wrong.
        source: Box<WriteError>,
    },
    /// Writing the output failed (the error names the output file).
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// `"F32, F16, …"`: the names of [`TARGETS`].
fn target_names() -> String {
    TARGETS.map(GgmlType::name).join(", ")
}

/// The target type named `name` (case-insensitive, llama-quantize's names: `q8_0`, `f16`,
/// `Q4_K`, …), or an error listing the supported names. llama-quantize's mixes (`Q4_K_M`,
/// `Q3_K_S`, …) are refused with a hint: requantize applies one type to every weight.
pub fn parse_target(name: &str) -> Result<GgmlType, String> {
    let upper = name.to_ascii_uppercase();
    if let Some(t) = TARGETS.into_iter().find(|t| t.name() == upper) {
        return Ok(t);
    }
    let base = upper
        .strip_suffix("_S")
        .or_else(|| upper.strip_suffix("_M"))
        .or_else(|| upper.strip_suffix("_L"));
    if let Some(t) = base.and_then(|b| TARGETS.into_iter().find(|t| t.name() == b)) {
        return Err(format!(
            "quantization type `{name}` is one of llama-quantize's mixes, which huarizo does \
             not make; use `{}` to quantize every weight matrix to {t}",
            t.name().to_ascii_lowercase()
        ));
    }
    Err(format!(
        "unknown quantization type `{name}`; supported: {}",
        TARGETS.map(|t| t.name().to_ascii_lowercase()).join(", ")
    ))
}

/// llama.cpp's `llama_ftype` for a file whose weights are mostly `t` (`None` exactly for
/// the types not in [`TARGETS`]): ALL_F32 = 0,
/// MOSTLY_F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 7, Q5_0 = 8, Q5_1 = 9, Q2_K = 10,
/// Q3_K_S = 11, Q4_K_S = 14, Q5_K_S = 16, Q6_K = 18, BF16 = 32. The K types map to the
/// `_S` variants, the ones that use the type for (nearly) every weight.
pub fn file_type(t: GgmlType) -> Option<u32> {
    use GgmlType::*;
    Some(match t {
        F32 => 0,
        F16 => 1,
        Q4_0 => 2,
        Q4_1 => 3,
        Q8_0 => 7,
        Q5_0 => 8,
        Q5_1 => 9,
        Q2_K => 10,
        Q3_K => 11,
        Q4_K => 14,
        Q5_K => 16,
        Q6_K => 18,
        BF16 => 32,
        Q8_1 | Q8_K => return None,
    })
}

/// The type a weight of row length `row` gets when the target is `target` (see the module
/// docs for the fallbacks).
pub fn type_for_row(target: GgmlType, row: u64) -> GgmlType {
    let fits = |t: GgmlType| row.is_multiple_of(t.block_size() as u64);
    if fits(target) {
        return target;
    }
    let next = match target {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    };
    if fits(next) {
        next
    } else {
        GgmlType::F16
    }
}

/// Whether llama.cpp would quantize `t`: a `…weight` with two or more dimensions, not
/// counting trailing dimensions of 1.
fn is_weight_matrix(t: &TensorInfo) -> bool {
    let n_dims = t.shape.len() - t.shape.iter().rev().take_while(|&&d| d == 1).count();
    t.name.ends_with("weight") && n_dims >= 2
}

/// Rewrites the GGUF model at `input` to `output` (atomically; `output` may be `input`)
/// with every weight matrix in `options.target`, calling `progress` after each tensor.
pub fn requantize(
    input: &Path,
    output: &Path,
    options: &RequantizeOptions,
    progress: impl FnMut(&TensorReport),
) -> Result<RequantizeSummary, RequantizeError> {
    let file = GgufFile::open(input)?;
    requantize_file(&file, output, options, progress)
}

/// [`requantize`] for a model already open: a GGUF file or a GGUF-shaped view (a Hugging
/// Face checkpoint, [`crate::hf::open_folder`]). Writes every tensor and all metadata of
/// `file` to `output`; the input's size is the file's, or its tensors' for a view.
pub fn requantize_file(
    file: &GgufFile,
    output: &Path,
    options: &RequantizeOptions,
    progress: impl FnMut(&TensorReport),
) -> Result<RequantizeSummary, RequantizeError> {
    requantize_with(file, output, options, None, progress)
}

/// [`requantize_file`] with a LoRA adapter merged into the weights it adapts: each of
/// those is dequantized, given `(α/r)·B·A` in f32 and quantized to the target (even when
/// it is already of the target type), as llama.cpp's `llama-export-lora` does.
pub fn requantize_merged(
    file: &GgufFile,
    output: &Path,
    options: &RequantizeOptions,
    lora: &crate::train::LoraAdapter,
    progress: impl FnMut(&TensorReport),
) -> Result<RequantizeSummary, RequantizeError> {
    requantize_with(file, output, options, Some(lora), progress)
}

/// The adapter tensor that adapts weight `name`, if any.
fn lora_for<'a>(
    lora: Option<&'a crate::train::LoraAdapter>,
    name: &str,
) -> Option<&'a crate::train::LoraTensor> {
    lora?
        .tensors
        .iter()
        .find(|t| name == format!("blk.{}.{}.weight", t.layer, t.target.gguf_name()))
}

fn requantize_with(
    file: &GgufFile,
    output: &Path,
    options: &RequantizeOptions,
    lora: Option<&crate::train::LoraAdapter>,
    mut progress: impl FnMut(&TensorReport),
) -> Result<RequantizeSummary, RequantizeError> {
    let input = file.path();
    let target = options.target;
    let ftype = file_type(target).ok_or(RequantizeError::UnsupportedTarget { target })?;
    let n_threads = match options.n_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };

    let mut w = GgufWriter::from_file(file);
    w.metadata("general.quantization_version", Value::U32(QNT_VERSION));
    w.metadata("general.file_type", Value::U32(ftype));
    let count = file.tensors().len();
    let mut plan = Vec::with_capacity(count);
    for t in file.tensors() {
        let at_fault = |source| RequantizeError::Tensor {
            input: input.to_owned(),
            tensor: t.name.clone(),
            source: Box::new(source),
        };
        let (to, action) = if !is_weight_matrix(t) {
            (t.ggml_type, Action::Kept)
        } else {
            let to = type_for_row(target, t.shape[0]);
            if to == t.ggml_type && lora_for(lora, &t.name).is_none() {
                (to, Action::AlreadyTarget)
            } else if to == target {
                (to, Action::Requantized)
            } else {
                (to, Action::Fallback)
            }
        };
        match action {
            Action::Kept | Action::AlreadyTarget => {
                w.tensor(t.name.clone(), t.shape.clone(), to, file.tensor_data(t))
            }
            Action::Requantized | Action::Fallback => {
                w.tensor_deferred(t.name.clone(), t.shape.clone(), to)
            }
        }
        .map_err(at_fault)?;
        plan.push((to, action));
    }

    let mut summary = RequantizeSummary {
        tensors: count,
        input_bytes: if input.is_file() {
            std::fs::metadata(input)
                .map_err(|error| GgufError::Io {
                    path: input.to_owned(),
                    error,
                })?
                .len()
        } else {
            file.tensors().iter().map(|t| t.n_bytes as u64).sum()
        },
        ..Default::default()
    };
    // Copied tensors are reported as the writer reaches them, between the deferred ones.
    let mut next = 0;
    let mut report = |upto: usize, summary: &mut RequantizeSummary| {
        while next < upto {
            let (t, (to, action)) = (&file.tensors()[next], plan[next]);
            match action {
                Action::Requantized => summary.requantized += 1,
                Action::Fallback => summary.fallbacks.push((t.name.clone(), to)),
                Action::Kept | Action::AlreadyTarget => {}
            }
            progress(&TensorReport {
                index: next,
                count,
                name: t.name.clone(),
                shape: t.shape.clone(),
                from: t.ggml_type,
                to,
                action,
                bytes_in: t.n_bytes,
                bytes_out: to
                    .row_bytes(t.shape.first().copied().unwrap_or(1) as usize)
                    .unwrap_or(0)
                    * rows(t),
            });
            next += 1;
        }
    };
    let index_of = |name: &str| file.tensors().iter().position(|t| t.name == name);
    summary.output_bytes = w.write_with(output, |info, buf| {
        let i = index_of(&info.name).expect("the writer's tensors are the input's");
        report(i, &mut summary);
        let t = &file.tensors()[i];
        let delta = lora_for(lora, &t.name).map(|d| (d, lora.map_or(0.0, |l| l.scale())));
        convert(file, t, info.ggml_type, n_threads, delta, buf);
        report(i + 1, &mut summary);
        Ok::<_, RequantizeError>(())
    })?;
    report(count, &mut summary);
    Ok(summary)
}

/// Rows of a tensor: the product of its dimensions after the first.
fn rows(t: &TensorInfo) -> usize {
    t.shape.iter().skip(1).product::<u64>() as usize
}

/// Appends tensor `t` of `file` converted to type `to` to `buf`, rows split over
/// `n_threads` threads, with `scale·B·A` of an adapter added to each row when `delta` is
/// given. The shape was validated for both types, so every length fits.
fn convert(
    file: &GgufFile,
    t: &TensorInfo,
    to: GgmlType,
    n_threads: usize,
    delta: Option<(&crate::train::LoraTensor, f32)>,
    buf: &mut Vec<u8>,
) {
    let width = t.shape.first().copied().unwrap_or(1) as usize;
    let n_rows = rows(t);
    let (in_row, out_row) = (
        t.ggml_type.row_bytes(width).unwrap_or(0),
        to.row_bytes(width).unwrap_or(0),
    );
    buf.resize(out_row * n_rows, 0);
    if n_rows == 0 || width == 0 {
        return;
    }
    let src = file.tensor_data(t);
    let per_thread = n_rows.div_ceil(n_threads.max(1));
    let work = |src: &[u8], dst: &mut [u8], first_row: usize| {
        let mut row = vec![0f32; width];
        for (i, (s, d)) in src
            .chunks_exact(in_row)
            .zip(dst.chunks_exact_mut(out_row))
            .enumerate()
        {
            dequantize_row(t.ggml_type, s, &mut row);
            if let Some((lt, scale)) = delta {
                // Row r of B·A is Σ_k B[r, k]·A[k, :].
                let rank = lt.b.len() / lt.n_out;
                let r = first_row + i;
                for k in 0..rank {
                    let b = scale * lt.b[r * rank + k];
                    let a = &lt.a[k * width..(k + 1) * width];
                    row.iter_mut().zip(a).for_each(|(w, a)| *w += b * a);
                }
            }
            quantize_row_ref(to, &row, d);
        }
    };
    if n_threads <= 1 || n_rows < 2 {
        work(src, buf, 0);
        return;
    }
    std::thread::scope(|scope| {
        for (i, (s, d)) in src
            .chunks(per_thread * in_row)
            .zip(buf.chunks_mut(per_thread * out_row))
            .enumerate()
        {
            scope.spawn(move || work(s, d, i * per_thread));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_case_insensitively() {
        assert_eq!(parse_target("q8_0"), Ok(GgmlType::Q8_0));
        assert_eq!(parse_target("F16"), Ok(GgmlType::F16));
        assert_eq!(parse_target("bf16"), Ok(GgmlType::BF16));
        assert_eq!(parse_target("Q4_k"), Ok(GgmlType::Q4_K));
        let mix = parse_target("Q4_K_M").unwrap_err();
        assert!(mix.contains("mixes") && mix.contains("`q4_k`"), "{mix}");
        let bad = parse_target("q9").unwrap_err();
        assert!(
            bad.contains("unknown quantization type `q9`") && bad.contains("q8_0"),
            "{bad}"
        );
        assert!(parse_target("q8_1").is_err() && parse_target("q8_k").is_err());
        for t in TARGETS {
            assert!(file_type(t).is_some(), "{t}");
        }
    }

    #[test]
    fn fallbacks_follow_llama_cpp() {
        use GgmlType::*;
        assert_eq!(type_for_row(Q8_0, 576), Q8_0);
        assert_eq!(type_for_row(Q8_0, 100), F16);
        assert_eq!(type_for_row(Q4_K, 576), Q5_0);
        assert_eq!(type_for_row(Q5_K, 576), Q5_1);
        assert_eq!(type_for_row(Q6_K, 576), Q8_0);
        assert_eq!(type_for_row(Q3_K, 576), Q4_0);
        assert_eq!(type_for_row(Q4_K, 1536), Q4_K);
        assert_eq!(type_for_row(Q4_K, 100), F16);
        assert_eq!(type_for_row(F16, 3), F16);
    }

    #[test]
    fn weight_matrices_are_two_dimensional_weights() {
        let t = |name: &str, shape: &[u64]| TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            ggml_type: GgmlType::F32,
            offset: 0,
            n_bytes: 0,
        };
        assert!(is_weight_matrix(&t("blk.0.attn_q.weight", &[64, 64])));
        assert!(!is_weight_matrix(&t("blk.0.attn_norm.weight", &[64])));
        assert!(!is_weight_matrix(&t("blk.0.attn_q.bias", &[64, 2])));
        assert!(!is_weight_matrix(&t("x.weight", &[64, 1, 1])));
        assert!(is_weight_matrix(&t("x.weight", &[64, 1, 2])));
    }
}
