//! `huarizo lineage scan DIR…`: fingerprints every model found, pairs each with its
//! closest relative among them, and runs the full comparison on that pair.

use crate::checkpoint::Checkpoint;
use crate::error::LineageError;
use crate::invariants::{self, Fingerprint};
use crate::report::ModelSummary;
use crate::{bar, compare_open, Options};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// One model of the scan.
#[derive(Clone, Debug, Serialize)]
pub struct ScanRow {
    /// The model.
    pub model: ModelSummary,
    /// Its closest relative among the scanned models (by invariant similarity).
    pub closest: Option<String>,
    /// Invariant similarity with it.
    pub similarity: Option<f64>,
    /// p-value of the layer-pairing test.
    pub p_value: Option<f64>,
    /// The full comparison's verdict, closest as A and this model as B.
    pub verdict: Option<String>,
    /// Why something is missing.
    pub note: Option<String>,
}

/// The scan's table.
#[derive(Clone, Debug, Serialize)]
pub struct ScanReport {
    /// One row per model.
    pub rows: Vec<ScanRow>,
}

/// GGUF files in `dirs` (a file given directly is taken as is), sorted.
pub fn find_models(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, LineageError> {
    let mut out = Vec::new();
    for d in dirs {
        if d.is_file() {
            out.push(d.clone());
            continue;
        }
        let entries = std::fs::read_dir(d).map_err(|e| LineageError::Scan {
            path: d.clone(),
            message: e.to_string(),
        })?;
        for e in entries.flatten() {
            let p = e.path();
            if p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
                && p.is_file()
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Scans the models in `dirs`.
pub fn scan(dirs: &[PathBuf], options: &Options) -> Result<ScanReport, LineageError> {
    let paths = find_models(dirs)?;
    let threads = options.n_threads();
    let mut models: Vec<(Checkpoint, Result<Fingerprint, String>)> = Vec::new();
    let pb = bar(options.progress, paths.len() as u64, "fingerprints", false);
    for p in &paths {
        let c = Checkpoint::open(p)?;
        let fp = invariants::fingerprint(&c, &invariants::gguf_names(&c), threads, &|| {});
        models.push((c, fp));
        pb.inc(1);
    }
    // A model whose tensors are not under their GGUF names (renamed) is read through its
    // tensor-graph match with a model that fingerprinted.
    for i in 0..models.len() {
        if models[i].1.is_ok() {
            continue;
        }
        let retry = (0..models.len())
            .filter(|&j| j != i && models[j].1.is_ok())
            .find_map(|j| {
                let graph = crate::graph::match_tensors(&models[j].0.file, &models[i].0.file);
                let names = |layer: Option<usize>, role: &str| {
                    let role = match layer {
                        Some(_) => format!("blk.*.{role}"),
                        None => role.to_string(),
                    };
                    graph.find(layer, &role).map(|m| m.b.clone())
                };
                invariants::fingerprint(&models[i].0, &names, threads, &|| {}).ok()
            });
        if let Some(fp) = retry {
            models[i].1 = Ok(fp);
        }
    }
    pb.finish_and_clear();
    let mut rows = Vec::new();
    for (i, (c, fp)) in models.iter().enumerate() {
        let mut row = ScanRow {
            model: ModelSummary::of(c),
            closest: None,
            similarity: None,
            p_value: None,
            verdict: None,
            note: None,
        };
        let fp = match fp {
            Ok(f) => f,
            Err(e) => {
                row.note = Some(e.clone());
                rows.push(row);
                continue;
            }
        };
        let best = models
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(j, (_, other))| {
                let other = other.as_ref().ok()?;
                invariants::compare(other, fp).map(|r| (j, r))
            })
            .max_by(|x, y| x.1.similarity.total_cmp(&y.1.similarity));
        if let Some((j, r)) = best {
            let base = &models[j].0;
            row.closest = Some(base.name());
            row.similarity = Some(r.similarity);
            row.p_value = Some(r.p_value);
            let quiet = Options {
                progress: false,
                ..options.clone()
            };
            match compare_open(base, c, &quiet, Instant::now()) {
                Ok(rep) => row.verdict = Some(rep.verdict.label.to_string()),
                Err(e) => row.note = Some(e.to_string()),
            }
        } else {
            row.note = Some("no other model to compare with".into());
        }
        rows.push(row);
    }
    Ok(ScanReport { rows })
}

impl ScanReport {
    /// The table as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from(
            "| model | architecture | weights | storage | closest relative | invariant similarity | p | verdict |\n|---|---|---:|---|---|---:|---:|---|\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {:.0}M | {} | {} | {} | {} | {} |\n",
                r.model.name,
                r.model.architecture,
                r.model.params as f64 / 1e6,
                r.model.quantization,
                r.closest.as_deref().unwrap_or("-"),
                r.similarity
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or("-".into()),
                r.p_value.map(|v| format!("{v:.1e}")).unwrap_or("-".into()),
                r.verdict.as_deref().or(r.note.as_deref()).unwrap_or("-")
            ));
        }
        s
    }
}
