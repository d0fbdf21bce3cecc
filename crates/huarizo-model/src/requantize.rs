//! Requantization: a GGUF model rewritten with its weight matrices in other ggml types, as
//! `llama-quantize --allow-requantize` does.
//!
//! Which tensors change, and to what, follows llama.cpp's `llama_model_quantize_impl`: a
//! tensor is quantized when its name ends in `weight`, it is not a norm and it has at least
//! two dimensions (trailing 1s not counted, as `ggml_n_dims`); its type is the file type's
//! mix ([`crate::quant_mix`]) or, with `pure`, the file type's base type, then the row
//! fallbacks. Every other tensor (norms, biases, RoPE factors) is copied unchanged, as is
//! a tensor already of its planned type. A quantized tensor is dequantized to f32 a row at
//! a time ([`huarizo_kernels::dequantize_row`]) and quantized with llama.cpp's weight
//! quantizers ([`huarizo_kernels::quantize_row_weights`]), weighted by the importance
//! matrix's column weights when one is given and has the tensor.
//!
//! The output is written through [`GgufWriter::write_with`]: one tensor's quantized bytes
//! are in memory at a time, plus a row of f32 per thread; copied tensors come straight from
//! the input's memory map. The metadata is copied in order, with `general.file_type` set to
//! llama.cpp's `llama_ftype` and `general.quantization_version` to 2.

use std::path::{Path, PathBuf};

use huarizo_formats::{GgmlType, GgufError, GgufFile, GgufWriter, TensorInfo, Value, WriteError};
use huarizo_kernels::{dequantize_row, quantize_row_weights};

pub use crate::quant_mix::FileType;

/// ggml's quantization format version (`GGML_QNT_VERSION`), written as
/// `general.quantization_version`.
const QNT_VERSION: u32 = 2;

/// Importance of each column of each weight matrix, by tensor name: the mean squared
/// activation an importance matrix records (`huarizo imatrix`, llama-imatrix).
pub type Importance = std::collections::HashMap<String, Vec<f32>>;

/// What [`requantize`] should produce.
#[derive(Clone, Debug)]
pub struct RequantizeOptions {
    /// The file type: the base type of the weights and llama.cpp's mix.
    pub ftype: FileType,
    /// Every weight matrix in the base type, no mix (`llama-quantize --pure`).
    pub pure: bool,
    /// Column importance to weigh the quantization error by.
    pub importance: Option<std::sync::Arc<Importance>>,
    /// Threads quantizing the rows of a tensor (0 = all cores).
    pub n_threads: usize,
}

impl RequantizeOptions {
    /// Every weight matrix in type `t` (pure), without importance; an error for a type
    /// weights are not stored in.
    pub fn single_type(t: GgmlType, n_threads: usize) -> Result<Self, RequantizeError> {
        Ok(RequantizeOptions {
            ftype: FileType::for_type(t).ok_or(RequantizeError::UnsupportedTarget { target: t })?,
            pure: true,
            importance: None,
            n_threads,
        })
    }
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
    /// Whether importance weights guided its quantization.
    pub importance: bool,
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
    /// Requantized to its planned type.
    Requantized,
    /// Requantized to a fallback type: its row length is not a whole number of the
    /// planned type's blocks.
    Fallback,
}

/// What [`requantize`] did, in total.
#[derive(Clone, Debug, Default)]
pub struct RequantizeSummary {
    /// Tensors in the file.
    pub tensors: usize,
    /// Tensors requantized to their planned type.
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
    /// The target type is not one weights are stored in.
    #[error(
        "cannot requantize to {target}: supported file types are {}",
        FileType::ALL.map(FileType::name).join(", ")
    )]
    UnsupportedTarget {
        /// The type asked for.
        target: GgmlType,
    },
    /// The file type needs an importance matrix for a tensor, and there is none for it
    /// (llama.cpp asks one for the Q2_K tensors of a Q2_K_S file).
    #[error(
        "{ftype} needs an importance matrix (--imatrix) for its Q2_K tensors, and there is \
         none for `{tensor}`"
    )]
    NeedsImportance {
        /// The file type.
        ftype: FileType,
        /// The first tensor without importance weights.
        tensor: String,
    },
    /// The importance matrix does not fit a tensor.
    #[error(
        "importance matrix: tensor `{tensor}` has rows of {row} values but the matrix has \
         {got} column weights for it (was it made for another model?)"
    )]
    ImportanceShape {
        /// The tensor.
        tensor: String,
        /// Its row length.
        row: u64,
        /// Weights the importance matrix holds for it.
        got: usize,
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

/// Rewrites the GGUF model at `input` to `output` (atomically; `output` may be `input`)
/// with its weight matrices quantized as `options` asks, calling `progress` after each tensor.
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
    let n_threads = match options.n_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let importance = options.importance.as_deref();

    let mut w = GgufWriter::from_file(file);
    w.metadata("general.quantization_version", Value::U32(QNT_VERSION));
    w.metadata("general.file_type", Value::U32(options.ftype.id()));
    let count = file.tensors().len();
    let planned = crate::quant_mix::plan(file, options.ftype, options.pure, importance.is_some());
    let mut plan = Vec::with_capacity(count);
    for (t, p) in file.tensors().iter().zip(planned) {
        let at_fault = |source| RequantizeError::Tensor {
            input: input.to_owned(),
            tensor: t.name.clone(),
            source: Box::new(source),
        };
        let to = p.ty;
        let action = if !p.quantized {
            Action::Kept
        } else if to == t.ggml_type && lora_for(lora, &t.name).is_none() {
            Action::AlreadyTarget
        } else if p.fallback_from.is_some() {
            Action::Fallback
        } else {
            Action::Requantized
        };
        let weights = match (action, importance.and_then(|m| m.get(&t.name))) {
            (Action::Requantized | Action::Fallback, Some(v)) => {
                if v.len() as u64 != t.shape[0] {
                    return Err(RequantizeError::ImportanceShape {
                        tensor: t.name.clone(),
                        row: t.shape[0],
                        got: v.len(),
                    });
                }
                Some(v.as_slice())
            }
            _ => None,
        };
        let needs_importance = options.ftype == FileType::Q2_K_S
            && to == GgmlType::Q2_K
            && !matches!(t.name.as_str(), "token_embd.weight" | "output.weight");
        if needs_importance && weights.is_none() && action != Action::AlreadyTarget {
            return Err(RequantizeError::NeedsImportance {
                ftype: options.ftype,
                tensor: t.name.clone(),
            });
        }
        match action {
            Action::Kept | Action::AlreadyTarget => {
                w.tensor(t.name.clone(), t.shape.clone(), to, file.tensor_data(t))
            }
            Action::Requantized | Action::Fallback => {
                w.tensor_deferred(t.name.clone(), t.shape.clone(), to)
            }
        }
        .map_err(at_fault)?;
        plan.push((to, action, weights));
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
            let (t, (to, action, weights)) = (&file.tensors()[next], plan[next]);
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
                importance: weights.is_some(),
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
        convert(file, t, info.ggml_type, n_threads, delta, plan[i].2, buf);
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
/// given and the error weighted by `importance` (one weight per column) when given. The shape was validated for both types, so every length fits.
fn convert(
    file: &GgufFile,
    t: &TensorInfo,
    to: GgmlType,
    n_threads: usize,
    delta: Option<(&crate::train::LoraTensor, f32)>,
    importance: Option<&[f32]>,
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
            quantize_row_weights(to, &row, d, importance);
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
