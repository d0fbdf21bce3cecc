//! llama.cpp's importance matrix: for each weight matrix of the blocks, the sum over
//! tokens of the squared input activation of every input column (`in_sum2`) and the count
//! of tokens, collected from the model's named intermediates; written in the GGUF format
//! llama-imatrix writes and read back from it or from llama.cpp's legacy `.dat` format as
//! the per-column mean squared activation a quantizer weighs its errors by.
//!
//! Which intermediate feeds which matrix (llama.cpp's tensor names, the same for every
//! family huarizo runs; Gemma 3's post-norms act on matmul outputs, not inputs):
//! `attn_norm` → `attn_q`, `attn_k`, `attn_v`; `kqv_out` → `attn_output`; `ffn_norm` →
//! `ffn_gate`, `ffn_up`; `ffn_swiglu` (the gated activation, GeGLU for Gemma) →
//! `ffn_down`; `result_norm` → `output` (only with `process_output` and an untied output
//! matrix, as llama-imatrix's `--process-output`).
//!
//! Dimension letters: T tokens, C input columns of a matrix.

use crate::{GgmlType, GgufFile, GgufWriter, Value, WriteError};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The intermediate that is the input of each block matrix, by llama.cpp's names.
const MATMUL_INPUTS: &[(&str, &[&str])] = &[
    ("attn_norm", &["attn_q", "attn_k", "attn_v"]),
    ("kqv_out", &["attn_output"]),
    ("ffn_norm", &["ffn_gate", "ffn_up"]),
    ("ffn_swiglu", &["ffn_down"]),
];

/// GGUF keys of an importance matrix file (llama.cpp's `LLM_KV_IMATRIX_*`).
pub const KEY_DATASETS: &str = "imatrix.datasets";
/// Chunks the matrix was computed over.
pub const KEY_CHUNK_COUNT: &str = "imatrix.chunk_count";
/// Tokens per chunk.
pub const KEY_CHUNK_SIZE: &str = "imatrix.chunk_size";

/// An importance matrix read from a file: per weight name, the mean squared input
/// activation of each input column (`C` values).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    /// Weight name (`blk.0.attn_q.weight`) → mean squared activation per input column.
    pub entries: HashMap<String, Vec<f32>>,
    /// The texts it was computed on.
    pub datasets: Vec<String>,
    /// Chunks it was computed over (0 when the file does not say).
    pub chunks: u32,
    /// Tokens per chunk (0 when the file does not say, as in the legacy format).
    pub chunk_size: u32,
}

impl Imatrix {
    /// The mean squared activation per input column of weight `name`.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.entries.get(name).map(Vec::as_slice)
    }
}

/// Why an importance matrix file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ImatrixError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The GGUF container is malformed.
    #[error(transparent)]
    Gguf(#[from] huarizo_formats::GgufError),
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The contents are not an importance matrix.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry or tensor at fault.
        message: String,
    },
}

/// Reads an importance matrix: llama-imatrix's GGUF format (`<weight>.in_sum2` and
/// `<weight>.counts` tensors) or its legacy `.dat` format, told apart by the GGUF magic.
/// Values are normalized as llama-quantize does: `in_sum2 / count` (a zero count gives 1s),
/// legacy values divided by their call count.
pub fn read_imatrix(path: &Path) -> Result<Imatrix, ImatrixError> {
    let bytes = std::fs::read(path).map_err(|source| ImatrixError::Io {
        path: path.into(),
        source,
    })?;
    if bytes.starts_with(b"GGUF") {
        read_gguf(path)
    } else {
        read_legacy(path, &bytes)
    }
}

fn format_err(path: &Path, message: String) -> ImatrixError {
    ImatrixError::Format {
        path: path.into(),
        message,
    }
}

fn read_gguf(path: &Path) -> Result<Imatrix, ImatrixError> {
    let file = GgufFile::open(path)?;
    let u32_key = |key: &str| file.get(key).and_then(Value::as_u64).map(|v| v as u32);
    let datasets = match file.get(KEY_DATASETS).and_then(Value::as_array) {
        Some(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        None => Vec::new(),
    };
    let mut parts: BTreeMap<&str, [Option<Vec<f32>>; 2]> = BTreeMap::new();
    for t in file.tensors() {
        let (name, slot) = if let Some(n) = t.name.strip_suffix(".in_sum2") {
            (n, 0)
        } else if let Some(n) = t.name.strip_suffix(".counts") {
            (n, 1)
        } else {
            continue;
        };
        if t.ggml_type != GgmlType::F32 {
            return Err(format_err(
                path,
                format!("tensor {} is {}, expected F32", t.name, t.ggml_type.name()),
            ));
        }
        let values = file
            .tensor_data(t)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        parts.entry(name).or_default()[slot] = Some(values);
    }
    if parts.is_empty() {
        return Err(format_err(
            path,
            "no `.in_sum2` tensors: not an importance matrix".into(),
        ));
    }
    let mut entries = HashMap::with_capacity(parts.len());
    for (name, [sums, counts]) in parts {
        let (Some(sums), Some(counts)) = (sums, counts) else {
            return Err(format_err(
                path,
                format!("{name}: has only one of `.in_sum2` and `.counts`"),
            ));
        };
        if counts.is_empty() || sums.len() % counts.len() != 0 {
            return Err(format_err(
                path,
                format!(
                    "{name}: {} sums are not a whole number of rows for {} counts",
                    sums.len(),
                    counts.len()
                ),
            ));
        }
        let row = sums.len() / counts.len();
        let mut mean = sums;
        for (chunk, &count) in mean.chunks_exact_mut(row).zip(&counts) {
            let count = count.round();
            if count > 0.0 {
                chunk.iter_mut().for_each(|v| *v /= count);
            } else {
                chunk.fill(1.0);
            }
        }
        entries.insert(name.to_string(), mean);
    }
    Ok(Imatrix {
        entries,
        datasets,
        chunks: u32_key(KEY_CHUNK_COUNT).unwrap_or(0),
        chunk_size: u32_key(KEY_CHUNK_SIZE).unwrap_or(0),
    })
}

/// A little-endian cursor over a legacy file that reports where it ran out.
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], ImatrixError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format_err(
                self.path,
                format!(
                    "truncated: {what} needs {n} bytes at offset {}, the file has {}",
                    self.pos,
                    self.bytes.len()
                ),
            ));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn i32(&mut self, what: &str) -> Result<i32, ImatrixError> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A non-negative count, at most `limit` (no count from a file is trusted).
    fn count(&mut self, what: &str, limit: usize) -> Result<usize, ImatrixError> {
        let v = self.i32(what)?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= limit)
            .ok_or_else(|| format_err(self.path, format!("{what} is {v}, out of range")))
    }
}

/// llama.cpp's legacy format: i32 entry count; per entry i32 name length, name, i32 call
/// count, i32 value count, f32 values (mean × calls); then optionally i32 chunk count, i32
/// dataset name length and the dataset name.
fn read_legacy(path: &Path, bytes: &[u8]) -> Result<Imatrix, ImatrixError> {
    let mut c = Cursor {
        path,
        bytes,
        pos: 0,
    };
    let n_entries = c.count("the entry count", bytes.len() / 12)?;
    if n_entries == 0 {
        return Err(format_err(path, "no entries".into()));
    }
    let mut entries = HashMap::with_capacity(n_entries);
    for i in 0..n_entries {
        let len = c.count(&format!("entry {i}: the name length"), bytes.len())?;
        let name =
            String::from_utf8_lossy(c.take(len, &format!("entry {i}: the name"))?).into_owned();
        let ncall = c.i32(&format!("{name}: the call count"))?;
        let nval = c.count(&format!("{name}: the value count"), bytes.len() / 4)?;
        if nval == 0 {
            return Err(format_err(path, format!("{name}: no values")));
        }
        let mut values: Vec<f32> = c
            .take(nval * 4, &format!("{name}: the values"))?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if ncall > 0 {
            values.iter_mut().for_each(|v| *v /= ncall as f32);
        }
        entries.insert(name, values);
    }
    let mut imatrix = Imatrix {
        entries,
        ..Imatrix::default()
    };
    if c.pos < bytes.len() {
        imatrix.chunks = c.i32("the chunk count")?.max(0) as u32;
        if c.pos < bytes.len() {
            let len = c.count("the dataset name length", bytes.len())?;
            let name = c.take(len, "the dataset name")?;
            if len > 0 {
                imatrix
                    .datasets
                    .push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok(imatrix)
}

/// Accumulates llama-imatrix's sums from the named intermediates of forward passes
/// (feed [`ImatrixCollector::observe`] to [`crate::Engine::forward_traced`]).
#[derive(Debug)]
pub struct ImatrixCollector {
    /// (intermediate, layer) → (Σ x² per column `C`, tokens seen), summed in f32 token by
    /// token as llama.cpp does.
    sums: BTreeMap<(String, usize), (Vec<f32>, u64)>,
    output: bool,
    /// Row widths: embedding, attention output (H·Dv), MLP (F).
    widths: [usize; 3],
}

impl ImatrixCollector {
    /// A collector for the block matrices of a model of `config`, plus `output.weight`
    /// when `process_output` (llama-imatrix's `--process-output`; pass false for a model
    /// whose output matrix is the tied token embedding, which llama.cpp never collects).
    pub fn new(config: &crate::Config, process_output: bool) -> ImatrixCollector {
        let attn = config.n_head * config.head_dim_v;
        ImatrixCollector::with_widths([config.n_embd, attn, config.n_ff], process_output)
    }

    /// A collector for inputs of widths `[E, H·Dv, F]`.
    fn with_widths(widths: [usize; 3], output: bool) -> ImatrixCollector {
        ImatrixCollector {
            sums: BTreeMap::new(),
            output,
            widths,
        }
    }

    /// The row width `C` of intermediate `name`, None for those not collected.
    fn width(&self, name: &str) -> Option<usize> {
        let [embd, attn, ff] = self.widths;
        match name {
            "attn_norm" | "ffn_norm" => Some(embd),
            "result_norm" if self.output => Some(embd),
            "kqv_out" => Some(attn),
            "ffn_swiglu" => Some(ff),
            _ => None,
        }
    }

    /// Takes one intermediate `values` (`T·C`) of `layer` from a traced forward; those
    /// that feed no collected matrix are ignored.
    pub fn observe(&mut self, name: &str, layer: usize, values: &[f32]) {
        let Some(width) = self.width(name) else {
            return;
        };
        if width == 0 || !values.len().is_multiple_of(width) {
            return;
        }
        let (acc, count) = self
            .sums
            .entry((name.to_string(), layer))
            .or_insert_with(|| (vec![0.0; width], 0));
        for row in values.chunks_exact(width) {
            for (a, &x) in acc.iter_mut().zip(row) {
                *a += x * x;
            }
        }
        *count += (values.len() / width) as u64;
    }

    /// The collected sums per weight name: (Σ x² per column, tokens).
    pub fn weight_sums(&self) -> BTreeMap<String, (&[f32], u64)> {
        let mut out = BTreeMap::new();
        for ((name, layer), (acc, count)) in &self.sums {
            if name == "result_norm" {
                out.insert("output.weight".to_string(), (acc.as_slice(), *count));
                continue;
            }
            let Some((_, weights)) = MATMUL_INPUTS.iter().find(|(n, _)| n == name) else {
                continue;
            };
            for w in *weights {
                out.insert(format!("blk.{layer}.{w}.weight"), (acc.as_slice(), *count));
            }
        }
        out
    }

    /// Writes the sums as llama-imatrix's GGUF file: `general.type = imatrix`, the
    /// datasets, chunk count and size, then per weight (sorted by name) a `.in_sum2` tensor
    /// `[C, 1]` and a `.counts` tensor `[1, 1]`, both F32.
    pub fn write_gguf(
        &self,
        path: &Path,
        datasets: &[String],
        chunks: u32,
        chunk_size: u32,
    ) -> Result<u64, ImatrixError> {
        let mut w = GgufWriter::new();
        w.metadata("general.type", Value::String("imatrix".into()));
        w.metadata(
            KEY_DATASETS,
            Value::Array(datasets.iter().cloned().map(Value::String).collect()),
        );
        w.metadata(KEY_CHUNK_COUNT, Value::U32(chunks));
        w.metadata(KEY_CHUNK_SIZE, Value::U32(chunk_size));
        for (name, (acc, count)) in self.weight_sums() {
            let sums: Vec<u8> = acc.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.tensor(
                format!("{name}.in_sum2"),
                vec![acc.len() as u64, 1],
                GgmlType::F32,
                sums,
            )?;
            w.tensor(
                format!("{name}.counts"),
                vec![1, 1],
                GgmlType::F32,
                (count as f32).to_le_bytes().to_vec(),
            )?;
        }
        Ok(w.write_to(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("huarizo-imatrix-{}-{name}", std::process::id()))
    }

    #[test]
    fn gguf_round_trip_gives_means() {
        let mut c = ImatrixCollector::with_widths([2, 2, 3], false);
        c.observe("attn_norm", 0, &[1.0, 2.0, 3.0, 4.0]);
        c.observe("ffn_swiglu", 1, &[2.0, 0.0, 1.0]);
        c.observe("Qcur", 0, &[9.0; 4]);
        c.observe("result_norm", 0, &[1.0; 2]);
        let path = temp("rt.gguf");
        c.write_gguf(&path, &["text.txt".into()], 1, 2).unwrap();
        let m = read_imatrix(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(m.entries.len(), 4);
        assert_eq!(m.get("blk.0.attn_q.weight"), Some(&[5.0, 10.0][..]));
        assert_eq!(m.get("blk.0.attn_v.weight"), Some(&[5.0, 10.0][..]));
        assert_eq!(m.get("blk.1.ffn_down.weight"), Some(&[4.0, 0.0, 1.0][..]));
        assert!(m.get("output.weight").is_none());
        assert_eq!(m.datasets, ["text.txt"]);
        assert_eq!((m.chunks, m.chunk_size), (1, 2));
    }

    #[test]
    fn legacy_format_is_read_and_checked() {
        let mut b = Vec::new();
        b.extend(1i32.to_le_bytes());
        let name = b"blk.0.ffn_up.weight";
        b.extend((name.len() as i32).to_le_bytes());
        b.extend(name);
        b.extend(4i32.to_le_bytes()); // calls
        b.extend(2i32.to_le_bytes()); // values
        b.extend(8f32.to_le_bytes());
        b.extend(2f32.to_le_bytes());
        b.extend(4i32.to_le_bytes()); // chunks
        b.extend(5i32.to_le_bytes());
        b.extend(b"a.txt");
        let path = temp("legacy.dat");
        std::fs::write(&path, &b).unwrap();
        let m = read_imatrix(&path).unwrap();
        assert_eq!(m.get("blk.0.ffn_up.weight"), Some(&[2.0, 0.5][..]));
        assert_eq!(
            (m.chunks, m.datasets.clone()),
            (4, vec!["a.txt".to_string()])
        );
        std::fs::write(&path, &b[..30]).unwrap();
        let err = read_imatrix(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).ok();
        assert!(
            err.contains("truncated") && err.contains("blk.0.ffn_up.weight"),
            "{err}"
        );
    }
}
