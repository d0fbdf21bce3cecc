//! huarizo-lineage answers "was model B built on model A?" from the files, layer by layer
//! of evidence: architecture, tensor graph (renames found by role, shape and order),
//! tokenizer, exact reuse, weight similarity (direct and function-invariant, with a
//! permutation test), behaviour, and a verdict. It is a front end: it reads weights and
//! runs models only through `huarizo-engine`.

#![deny(missing_docs)]

pub mod architecture;
pub mod behaviour;
pub mod checkpoint;
mod dense;
pub mod error;
pub mod graph;
pub mod html;
pub mod invariants;
mod probe_words;
pub mod quant_noise;
pub mod report;
pub mod scan;
pub mod tokens;
pub mod variants;
pub mod verdict;
pub mod weights;

pub use checkpoint::Checkpoint;
pub use error::LineageError;
pub use report::{ModelSummary, Report};
pub use verdict::Verdict;

use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::time::Instant;

/// How to compare.
#[derive(Clone, Debug)]
pub struct Options {
    /// Threads (0 = all cores).
    pub threads: usize,
    /// Show progress bars on standard error.
    pub progress: bool,
    /// Run the behaviour probe when the tokenizers agree.
    pub behaviour: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            threads: 0,
            progress: true,
            behaviour: true,
        }
    }
}

impl Options {
    fn n_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

pub(crate) fn bar(show: bool, len: u64, what: &str, bytes: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let template = if bytes {
        "{msg:>12} [{bar:30}] {percent:>3}% {elapsed}<{eta}"
    } else {
        "{msg:>12} [{bar:30}] {pos}/{len} {elapsed}<{eta}"
    };
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Compares the models at `a` and `b`.
pub fn compare(a: &Path, b: &Path, options: &Options) -> Result<Report, LineageError> {
    let start = Instant::now();
    let ca = Checkpoint::open(a)?;
    let cb = Checkpoint::open(b)?;
    compare_open(&ca, &cb, options, start)
}

fn compare_open(
    ca: &Checkpoint,
    cb: &Checkpoint,
    options: &Options,
    start: Instant,
) -> Result<Report, LineageError> {
    let threads = options.n_threads();
    let mut timings: Vec<(String, f64)> = Vec::new();
    let mut lap = Instant::now();
    let mut mark = |what: &str| {
        timings.push((what.to_string(), lap.elapsed().as_secs_f64()));
        lap = Instant::now();
    };
    let architecture = architecture::compare(ca, cb);
    let graph = graph::match_tensors(&ca.file, &cb.file);
    let tokenizer = tokens::compare(ca, cb);
    mark("structure");

    let same_shape_values: u64 = graph
        .matches
        .iter()
        .filter(|m| m.shape_a == m.shape_b)
        .map(|m| m.shape_a.iter().product::<u64>())
        .sum();
    let weights = if same_shape_values > 0 {
        let pb = bar(options.progress, same_shape_values, "weights", true);
        let w = weights::compare(ca, cb, &graph, threads, &|n| pb.inc(n))?;
        pb.finish_and_clear();
        Some(w)
    } else {
        None
    };
    mark("weights");

    let layers = |c: &Checkpoint| c.config.as_ref().map_or(0, |c| c.n_layer) as u64;
    let pb = bar(
        options.progress,
        layers(ca) + layers(cb),
        "invariants",
        false,
    );
    let role = |layer: Option<usize>, r: &str| match layer {
        Some(_) => format!("blk.*.{r}"),
        None => r.to_string(),
    };
    let names_a = |layer: Option<usize>, r: &str| {
        graph
            .find(layer, &role(layer, r))
            .map(|m| m.a.clone())
            .or_else(|| invariants::gguf_names(ca)(layer, r))
    };
    let names_b = |layer: Option<usize>, r: &str| {
        graph
            .find(layer, &role(layer, r))
            .map(|m| m.b.clone())
            .or_else(|| invariants::gguf_names(cb)(layer, r))
    };
    let fa = invariants::fingerprint(ca, &names_a, threads, &|| pb.inc(1));
    let fb = invariants::fingerprint(cb, &names_b, threads, &|| pb.inc(1));
    pb.finish_and_clear();
    let (invariants, invariants_note) = match (&fa, &fb) {
        (Ok(x), Ok(y)) => match invariants::compare(x, y) {
            Some(r) => (Some(r), None),
            None => (None, Some("fewer than 16 probe words shared".to_string())),
        },
        (Err(e), _) => (None, Some(format!("A: {e}"))),
        (_, Err(e)) => (None, Some(format!("B: {e}"))),
    };

    mark("invariants");
    let (behaviour, behaviour_note) = if !options.behaviour {
        (None, Some("not run".to_string()))
    } else if !tokenizer.identical {
        (None, Some("the tokenizers differ".to_string()))
    } else {
        let pb = bar(options.progress, 0, "behaviour", false);
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        let r = behaviour::compare(&ca.path, &cb.path, threads);
        pb.finish_and_clear();
        match r {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        }
    };

    mark("behaviour");
    let verdict = verdict::decide(
        &architecture,
        &graph,
        &tokenizer,
        weights.as_ref(),
        invariants.as_ref(),
    );
    Ok(Report {
        a: ModelSummary::of(ca),
        b: ModelSummary::of(cb),
        verdict,
        architecture,
        graph,
        tokenizer,
        weights,
        invariants,
        invariants_note,
        behaviour,
        behaviour_note,
        seconds: start.elapsed().as_secs_f64(),
        timings,
    })
}
