//! The training loop, generic over the model through [`TrainModel`]: batches from the
//! packer, gradient accumulation, mean-per-token loss, clipping, AdamW on the cosine
//! schedule, evaluation, checkpoints and resume, metrics and the loss plot.
//!
//! Every random draw depends only on the seed and the position in the run (epoch, step,
//! micro-batch), and the checkpoint holds parameters, moments and that position, so a
//! resumed run ends with exactly the parameters of an uninterrupted one.

use crate::batching::{gather, pack_in_order, Packer};
use crate::checkpoint::{self, TrainState};
use crate::data::Example;
use crate::metrics::{peak_rss_bytes, Metrics};
use crate::optim::{clip_coefficient, sum_squares, AdamW, AdamWConfig, CosineSchedule};
use crate::rng::derive_seed;
use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The model side of training: trainable parameter tensors with gradient buffers, a
/// forward+backward over a batch, and a loss-only forward.
pub trait TrainModel {
    /// Number of parameter tensors; their order is fixed.
    fn n_tensors(&self) -> usize;
    /// Parameter tensor i (values) and its gradient buffer.
    fn tensor(&mut self, i: usize) -> (&mut [f32], &[f32]);
    /// Name of tensor i (for checkpoints).
    fn tensor_name(&self, i: usize) -> String;
    /// Sets every gradient to zero.
    fn zero_grads(&mut self);
    /// Adds d(sum of per-token losses)/d(params) over the batch's trained labels to the
    /// gradient buffers; returns (sum of losses, number of trained labels). `seed` drives
    /// dropout.
    fn accumulate_grads(&mut self, batch: &[Example], seed: u64) -> Result<(f64, usize)>;
    /// Loss only, no gradients, no dropout.
    fn eval_loss(&mut self, batch: &[Example]) -> Result<(f64, usize)>;
}

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunLength {
    /// Whole passes over the training set.
    Epochs(usize),
    /// Optimizer steps (the data is cycled through epochs as needed).
    Steps(usize),
}

/// Options of [`train`].
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// `--epochs` or `--steps`.
    pub length: RunLength,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a fraction of `lr` (cosine decay target).
    pub min_lr_ratio: f64,
    /// Sequences' worth of tokens per micro-batch: a batch holds at most
    /// `batch_size × seq_len` tokens.
    pub batch_size: usize,
    /// Longest sequence (tokens).
    pub seq_len: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm limit (0: no clipping).
    pub clip_norm: f64,
    /// Evaluate every this many steps (0: only at start and end).
    pub eval_every: usize,
    /// Save a checkpoint every this many steps (0: only at the end).
    pub save_every: usize,
    /// Seed of shuffling and dropout.
    pub seed: u64,
    /// Run folder: `checkpoint/`, `metrics.json`, `loss.png`.
    pub out_dir: PathBuf,
    /// Continue from `out_dir/checkpoint/` when there is one.
    pub resume: bool,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Stop after this many steps in total, saving a checkpoint, as if interrupted (the
    /// schedule still spans the whole run); `None`: run to the end.
    pub stop_at_step: Option<usize>,
    /// When set to true (e.g. by a Ctrl-C handler), training stops after the current
    /// step and saves a checkpoint; `resume` continues from there.
    pub interrupt: Option<Arc<AtomicBool>>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            length: RunLength::Epochs(1),
            lr: 1e-4,
            min_lr_ratio: 0.1,
            batch_size: 4,
            seq_len: 512,
            grad_accum: 1,
            warmup_steps: 0,
            weight_decay: 0.01,
            clip_norm: 1.0,
            eval_every: 0,
            save_every: 0,
            seed: 0,
            out_dir: PathBuf::from("train-out"),
            resume: false,
            progress: true,
            stop_at_step: None,
            interrupt: None,
        }
    }
}

impl TrainOptions {
    /// The options a resumed run must share with the run it continues, one
    /// `field = value` line each (compared field by field on resume).
    fn fingerprint(&self, train: &[Example], eval: &[Example]) -> Vec<String> {
        vec![
            format!("length = {:?}", self.length),
            format!("lr = {:?}", self.lr),
            format!("min_lr_ratio = {:?}", self.min_lr_ratio),
            format!("batch_size = {}", self.batch_size),
            format!("seq_len = {}", self.seq_len),
            format!("grad_accum = {}", self.grad_accum),
            format!("warmup_steps = {}", self.warmup_steps),
            format!("weight_decay = {:?}", self.weight_decay),
            format!("clip_norm = {:?}", self.clip_norm),
            format!("seed = {}", self.seed),
            format!(
                "train data = {} examples, digest {:016x}",
                train.len(),
                digest(train)
            ),
            format!(
                "eval data = {} examples, digest {:016x}",
                eval.len(),
                digest(eval)
            ),
        ]
    }
}

/// FNV-1a over the tokens and labels of `examples`, so a resume on other data is caught.
fn digest(examples: &[Example]) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
    };
    for e in examples {
        eat(e.tokens.len() as u64);
        e.tokens.iter().for_each(|&t| eat(u64::from(t)));
        e.labels.iter().for_each(|&l| eat(l as u64));
    }
    h
}

/// What [`train`] did.
#[derive(Clone, Debug)]
pub struct TrainReport {
    /// Whether the run reached its last step (false: stopped at `stop_at_step`).
    pub finished: bool,
    /// The metrics (also written to `metrics.json` when finished).
    pub metrics: Metrics,
}

/// Loss over the whole of `eval` (mean per trained token), packed in file order into
/// batches of at most `budget` tokens; `None` for an empty set.
pub fn evaluate<M: TrainModel>(
    model: &mut M,
    eval: &[Example],
    budget: usize,
) -> Result<Option<f64>> {
    if eval.is_empty() {
        return Ok(None);
    }
    let order: Vec<usize> = (0..eval.len()).collect();
    let lens: Vec<usize> = eval.iter().map(Example::len).collect();
    let (mut sum, mut n) = (0.0f64, 0usize);
    for b in pack_in_order(&order, &lens, budget) {
        let (s, k) = model.eval_loss(&gather(eval, &b))?;
        sum += s;
        n += k;
    }
    Ok((n > 0).then(|| sum / n as f64))
}

/// Trains `model` on `train`, evaluating on `eval`, as `opts` says. Writes checkpoints to
/// `opts.out_dir/checkpoint/` and, when the run finishes, `metrics.json` and `loss.png`.
pub fn train<M: TrainModel>(
    model: &mut M,
    train: &[Example],
    eval: &[Example],
    opts: &TrainOptions,
) -> Result<TrainReport> {
    if train.is_empty() {
        bail!("no training examples");
    }
    if opts.grad_accum == 0 || opts.batch_size == 0 || opts.seq_len == 0 {
        bail!(
            "grad_accum ({}), batch_size ({}) and seq_len ({}) must be at least 1",
            opts.grad_accum,
            opts.batch_size,
            opts.seq_len
        );
    }
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("{}: create", opts.out_dir.display()))?;
    let packer = Packer::new(train, opts.batch_size, opts.seq_len, opts.seed);
    let total_steps = match opts.length {
        RunLength::Epochs(e) => packer.steps_for_epochs(e, opts.grad_accum),
        RunLength::Steps(s) => s,
    };
    let schedule = CosineSchedule {
        lr: opts.lr,
        warmup_steps: opts.warmup_steps,
        total_steps,
        min_lr_ratio: opts.min_lr_ratio,
    };
    let n = model.n_tensors();
    let names: Vec<String> = (0..n).map(|i| model.tensor_name(i)).collect();
    let sizes: Vec<usize> = (0..n).map(|i| model.tensor(i).0.len()).collect();
    let config = AdamWConfig {
        weight_decay: opts.weight_decay,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(config, &sizes);
    let fingerprint = opts.fingerprint(train, eval);
    let mut st = TrainState {
        step: 0,
        total_steps,
        epoch: 0,
        batch_in_epoch: 0,
        seed: opts.seed,
        fingerprint: fingerprint.clone(),
        train_loss: Vec::new(),
        lr: Vec::new(),
        grad_norm: Vec::new(),
        eval_loss: Vec::new(),
        trained_tokens: 0,
        processed_tokens: 0,
        train_seconds: 0.0,
    };
    let resumed = match opts.resume {
        true => checkpoint::load(&opts.out_dir)?,
        false => None,
    };
    if let Some(ck) = resumed {
        restore(model, &ck, &names, &sizes, &fingerprint, opts)?;
        opt.m = ck.m;
        opt.v = ck.v;
        opt.step = ck.opt_step;
        st = ck.state;
    }
    let budget = packer.budget();
    if st.step == 0 && st.eval_loss.is_empty() {
        if let Some(l) = evaluate(model, eval, budget)? {
            st.eval_loss.push((0, l));
        }
    }
    let bar = progress_bar(opts.progress, total_steps, st.step);
    let mut epoch_batches = packer.epoch(st.epoch);
    let stop = opts.stop_at_step.unwrap_or(total_steps).min(total_steps);
    while st.step < stop {
        if st.batch_in_epoch >= epoch_batches.len() {
            st.epoch += 1;
            st.batch_in_epoch = 0;
            epoch_batches = packer.epoch(st.epoch);
        }
        let started = Instant::now();
        let micro_batches = &epoch_batches[st.batch_in_epoch..];
        let micro_batches = &micro_batches[..opts.grad_accum.min(micro_batches.len())];
        let lr = schedule.lr_at(st.step);
        let done = optimizer_step(model, &mut opt, train, micro_batches, st.step, lr, opts)?;
        st.batch_in_epoch += micro_batches.len();
        st.step += 1;
        st.train_loss.push(done.loss);
        st.lr.push(lr);
        st.grad_norm.push(done.grad_norm);
        st.trained_tokens += done.trained as u64;
        st.processed_tokens += done.tokens as u64;
        st.train_seconds += started.elapsed().as_secs_f64();
        bar.set_position(st.step as u64);
        bar.set_message(format!(
            "loss {:.4} · {:.0} tok/s",
            st.train_loss.last().unwrap_or(&0.0),
            st.processed_tokens as f64 / st.train_seconds.max(1e-9)
        ));
        let last = st.step == total_steps;
        if last || (opts.eval_every > 0 && st.step.is_multiple_of(opts.eval_every)) {
            if let Some(l) = evaluate(model, eval, budget)? {
                st.eval_loss.push((st.step, l));
            }
        }
        let interrupted = opts
            .interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed));
        if last
            || interrupted
            || st.step == stop
            || (opts.save_every > 0 && st.step.is_multiple_of(opts.save_every))
        {
            save(model, &names, &opt, &st, opts)?;
        }
        if interrupted {
            break;
        }
    }
    bar.finish_and_clear();
    let finished = st.step >= total_steps;
    if finished && st.step == 0 {
        save(model, &names, &opt, &st, opts)?;
    }
    let metrics = Metrics::from_state(&st, peak_rss_bytes());
    if finished {
        metrics.write(&opts.out_dir.join("metrics.json"))?;
        crate::plot::write_loss_plot(
            &opts.out_dir.join("loss.png"),
            &st.train_loss,
            &st.eval_loss,
        )?;
    }
    Ok(TrainReport { finished, metrics })
}

/// What one optimizer step did.
struct StepDone {
    /// Mean loss per trained label.
    loss: f64,
    /// Global gradient norm of the mean loss, before clipping.
    grad_norm: f64,
    /// Trained labels.
    trained: usize,
    /// All tokens of the micro-batches.
    tokens: usize,
}

/// One optimizer step (0-based `step`) over `micro_batches`: zero the gradients,
/// accumulate them over each micro-batch, scale by 1 / (trained labels of the step) so the
/// loss is the mean per trained token, clip the global norm, AdamW with rate `lr`.
fn optimizer_step<M: TrainModel>(
    model: &mut M,
    opt: &mut AdamW,
    train: &[Example],
    micro_batches: &[Vec<usize>],
    step: usize,
    lr: f64,
    opts: &TrainOptions,
) -> Result<StepDone> {
    model.zero_grads();
    let (mut loss_sum, mut trained, mut tokens) = (0.0f64, 0usize, 0usize);
    for (micro, b) in micro_batches.iter().enumerate() {
        let batch = gather(train, b);
        let seed = derive_seed(opts.seed, &[step as u64, micro as u64]);
        let (s, k) = model
            .accumulate_grads(&batch, seed)
            .with_context(|| format!("step {}, micro-batch {micro}", step + 1))?;
        loss_sum += s;
        trained += k;
        tokens += batch.iter().map(Example::len).sum::<usize>();
    }
    let scale = if trained > 0 {
        1.0 / trained as f64
    } else {
        0.0
    };
    let n = model.n_tensors();
    let grad_norm = (0..n)
        .map(|i| sum_squares(model.tensor(i).1))
        .sum::<f64>()
        .sqrt()
        * scale;
    let grad_scale = (scale * clip_coefficient(grad_norm, opts.clip_norm)) as f32;
    opt.begin_step();
    for i in 0..n {
        let (p, g) = model.tensor(i);
        opt.update(i, p, g, grad_scale, lr);
    }
    Ok(StepDone {
        loss: loss_sum * scale,
        grad_norm,
        trained,
        tokens,
    })
}

/// Checks that checkpoint `ck` belongs to this run (same options, same tensors) and
/// copies its parameters into `model`.
fn restore<M: TrainModel>(
    model: &mut M,
    ck: &checkpoint::Checkpoint,
    names: &[String],
    sizes: &[usize],
    fingerprint: &[String],
    opts: &TrainOptions,
) -> Result<()> {
    let dir = checkpoint::checkpoint_dir(&opts.out_dir);
    for (was, now) in ck.state.fingerprint.iter().zip(fingerprint) {
        if was != now {
            bail!(
                "{}: cannot resume: the checkpoint was made with {was}, this run has {now}",
                dir.display()
            );
        }
    }
    if ck.params.len() != names.len() {
        bail!(
            "{}: cannot resume: the checkpoint has {} tensors, the model {}",
            dir.display(),
            ck.params.len(),
            names.len()
        );
    }
    for (i, (name, values)) in ck.params.iter().enumerate() {
        if *name != names[i] || values.len() != sizes[i] {
            bail!(
                "{}: cannot resume: tensor {i} is {name} ({} values) in the checkpoint, {} ({} values) in the model",
                dir.display(),
                values.len(),
                names[i],
                sizes[i]
            );
        }
        model.tensor(i).0.copy_from_slice(values);
    }
    Ok(())
}

fn save<M: TrainModel>(
    model: &mut M,
    names: &[String],
    opt: &AdamW,
    st: &TrainState,
    opts: &TrainOptions,
) -> Result<()> {
    let params: Vec<(String, Vec<f32>)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.clone(), model.tensor(i).0.to_vec()))
        .collect();
    checkpoint::save(&opts.out_dir, &params, &opt.m, &opt.v, opt.step, st)
}

fn progress_bar(enabled: bool, total: usize, pos: usize) -> indicatif::ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("step {pos}/{len} [{bar:30}] {msg} · ETA {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(pos as u64);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_model::{bigram_data, Bigram};

    fn tmp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("huarizo-train-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn options(out_dir: PathBuf) -> TrainOptions {
        TrainOptions {
            length: RunLength::Steps(10),
            lr: 0.05,
            batch_size: 2,
            seq_len: 12,
            grad_accum: 2,
            warmup_steps: 2,
            weight_decay: 0.01,
            clip_norm: 1.0,
            eval_every: 4,
            save_every: 0,
            seed: 11,
            out_dir,
            resume: false,
            progress: false,
            ..TrainOptions::default()
        }
    }

    #[test]
    fn training_lowers_the_loss_and_writes_metrics_and_plot() {
        let data = bigram_data(60, 8, 1);
        let eval = bigram_data(10, 8, 2);
        let out = tmp_dir("lowers");
        let opts = TrainOptions {
            length: RunLength::Epochs(3),
            lr: 0.1,
            ..options(out.clone())
        };
        let mut model = Bigram::new(8);
        let report = train(&mut model, &data, &eval, &opts).unwrap();
        assert!(report.finished);
        let m = &report.metrics;
        let packer = Packer::new(&data, 2, 12, 11);
        assert_eq!(m.steps, packer.steps_for_epochs(3, 2));
        assert_eq!(m.train_loss.len(), m.steps);
        let (start, end) = (m.eval_loss_start.unwrap(), m.eval_loss_end.unwrap());
        assert!(end < 0.6 * start, "eval loss {start} -> {end}");
        assert!(m.train_loss.last().unwrap() < &m.train_loss[0]);
        // Start, every 4 steps, end.
        assert_eq!(m.eval_loss[0].0, 0);
        assert_eq!(m.eval_loss[1].0, 4);
        assert_eq!(m.eval_loss.last().unwrap().0, m.steps);
        // Three epochs see every trained label three times.
        let labels: usize = data.iter().map(Example::n_trained).sum();
        assert_eq!(m.trained_tokens, 3 * labels as u64);
        assert!(m.tokens_per_second > 0.0 && m.peak_rss_bytes > 0);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap())
                .unwrap();
        for key in [
            "train_loss",
            "eval_loss_start",
            "eval_loss_end",
            "tokens_per_second",
            "eval_loss",
            "peak_rss_bytes",
            "steps",
            "trained_tokens",
        ] {
            assert!(json.get(key).is_some(), "metrics.json lacks {key}");
        }
        assert!(json["eval_loss"][0].is_array());
        assert!(out.join("loss.png").exists());
        assert!(out.join("checkpoint/params.safetensors").exists());
        std::fs::remove_dir_all(&out).unwrap();
    }

    fn params(m: &Bigram) -> Vec<u32> {
        m.w.iter().chain(&m.b).map(|x| x.to_bits()).collect()
    }

    #[test]
    fn resume_after_a_stop_is_bit_exact() {
        let data = bigram_data(40, 8, 3);
        let eval = bigram_data(5, 8, 4);
        let straight_dir = tmp_dir("straight");
        let mut straight = Bigram::new(8);
        let a = train(&mut straight, &data, &eval, &options(straight_dir.clone())).unwrap();
        assert!(a.finished);

        let dir = tmp_dir("resumed");
        let mut first = Bigram::new(8);
        let stopped = TrainOptions {
            stop_at_step: Some(6),
            ..options(dir.clone())
        };
        let r = train(&mut first, &data, &eval, &stopped).unwrap();
        assert!(!r.finished);
        assert_eq!(r.metrics.steps, 6);
        assert!(!dir.join("metrics.json").exists());
        // A new process: a fresh model, everything comes from the checkpoint.
        let mut second = Bigram::new(8);
        let resumed = TrainOptions {
            resume: true,
            ..options(dir.clone())
        };
        let b = train(&mut second, &data, &eval, &resumed).unwrap();
        assert!(b.finished);
        assert_eq!(params(&second), params(&straight));
        assert_eq!(b.metrics.train_loss, a.metrics.train_loss);
        assert_eq!(b.metrics.steps, 10);
        assert_eq!(b.metrics.trained_tokens, a.metrics.trained_tokens);
        assert_eq!(b.metrics.eval_loss.len(), a.metrics.eval_loss.len());
        std::fs::remove_dir_all(&straight_dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_after_a_crash_continues_from_the_last_checkpoint() {
        let data = bigram_data(40, 8, 5);
        let straight_dir = tmp_dir("straight2");
        let mut straight = Bigram::new(8);
        let opts = |d: PathBuf| TrainOptions {
            length: RunLength::Epochs(2),
            save_every: 3,
            ..options(d)
        };
        train(&mut straight, &data, &[], &opts(straight_dir.clone())).unwrap();

        let dir = tmp_dir("crash");
        let mut crashing = Bigram::new(8);
        // Two micro-batches per step: call 15 is in step 8, after the step-6 checkpoint.
        crashing.fail_at_call = Some(15);
        let err = train(&mut crashing, &data, &[], &opts(dir.clone())).unwrap_err();
        assert!(format!("{err:#}").contains("step 8"), "{err:#}");
        let ck = checkpoint::load(&dir).unwrap().unwrap();
        assert_eq!(ck.state.step, 6);
        let mut second = Bigram::new(8);
        let b = train(
            &mut second,
            &data,
            &[],
            &TrainOptions {
                resume: true,
                ..opts(dir.clone())
            },
        )
        .unwrap();
        assert!(b.finished);
        assert_eq!(params(&second), params(&straight));
        std::fs::remove_dir_all(&straight_dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Raises the interrupt flag on its `at`-th call of `accumulate_grads`.
    struct Interrupting {
        inner: Bigram,
        flag: Arc<AtomicBool>,
        at: usize,
    }

    impl TrainModel for Interrupting {
        fn n_tensors(&self) -> usize {
            self.inner.n_tensors()
        }
        fn tensor(&mut self, i: usize) -> (&mut [f32], &[f32]) {
            self.inner.tensor(i)
        }
        fn tensor_name(&self, i: usize) -> String {
            self.inner.tensor_name(i)
        }
        fn zero_grads(&mut self) {
            self.inner.zero_grads()
        }
        fn accumulate_grads(&mut self, batch: &[Example], seed: u64) -> Result<(f64, usize)> {
            if self.inner.calls + 1 == self.at {
                self.flag.store(true, Ordering::Relaxed);
            }
            self.inner.accumulate_grads(batch, seed)
        }
        fn eval_loss(&mut self, batch: &[Example]) -> Result<(f64, usize)> {
            self.inner.eval_loss(batch)
        }
    }

    #[test]
    fn interrupt_flag_stops_after_the_step_with_a_checkpoint() {
        let data = bigram_data(40, 8, 9);
        let straight_dir = tmp_dir("straight3");
        let mut straight = Bigram::new(8);
        train(&mut straight, &data, &[], &options(straight_dir.clone())).unwrap();

        let dir = tmp_dir("interrupt");
        let flag = Arc::new(AtomicBool::new(false));
        // Call 7 is the first micro-batch of step 4: the run stops after step 4.
        let mut m = Interrupting {
            inner: Bigram::new(8),
            flag: flag.clone(),
            at: 7,
        };
        let opts = TrainOptions {
            interrupt: Some(flag),
            ..options(dir.clone())
        };
        let r = train(&mut m, &data, &[], &opts).unwrap();
        assert!(!r.finished);
        assert_eq!(r.metrics.steps, 4);
        let mut second = Bigram::new(8);
        let resumed = TrainOptions {
            resume: true,
            ..options(dir.clone())
        };
        assert!(train(&mut second, &data, &[], &resumed).unwrap().finished);
        assert_eq!(params(&second), params(&straight));
        std::fs::remove_dir_all(&straight_dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_into_a_different_model_names_the_tensor() {
        let data = bigram_data(20, 8, 6);
        let dir = tmp_dir("othermodel");
        let stopped = TrainOptions {
            stop_at_step: Some(2),
            ..options(dir.clone())
        };
        train(&mut Bigram::new(8), &data, &[], &stopped).unwrap();
        let resumed = TrainOptions {
            resume: true,
            ..options(dir.clone())
        };
        let err = train(&mut Bigram::new(9), &data, &[], &resumed).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("bigram.weight (64 values) in the checkpoint"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_with_changed_options_names_the_field() {
        let data = bigram_data(20, 8, 6);
        let dir = tmp_dir("changed");
        let mut m = Bigram::new(8);
        let stopped = TrainOptions {
            stop_at_step: Some(2),
            ..options(dir.clone())
        };
        train(&mut m, &data, &[], &stopped).unwrap();
        let changed = TrainOptions {
            lr: 0.01,
            resume: true,
            ..options(dir.clone())
        };
        let err = train(&mut Bigram::new(8), &data, &[], &changed).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("lr = 0.05") && msg.contains("lr = 0.01"),
            "{msg}"
        );
        // Same number of examples, other tokens.
        let other = bigram_data(20, 8, 99);
        let resumed = TrainOptions {
            resume: true,
            ..options(dir.clone())
        };
        let err = train(&mut Bigram::new(8), &other, &[], &resumed).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("train data = 20 examples, digest"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resume_without_checkpoint_starts_fresh() {
        let data = bigram_data(20, 8, 7);
        let dir = tmp_dir("fresh");
        let opts = TrainOptions {
            resume: true,
            length: RunLength::Steps(3),
            ..options(dir.clone())
        };
        let r = train(&mut Bigram::new(8), &data, &[], &opts).unwrap();
        assert_eq!(r.metrics.steps, 3);
        assert_eq!(r.metrics.eval_loss_start, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loss_is_the_mean_over_the_steps_trained_tokens() {
        // One step over everything: the recorded loss equals the eval loss before training
        // (no dropout aside), within dropout's effect; with lr = 0 parameters stay put but
        // for weight decay, which lr = 0 also disables.
        let data = bigram_data(8, 8, 8);
        let dir = tmp_dir("mean");
        let mut m = Bigram::new(8);
        let before = params(&m);
        let opts = TrainOptions {
            length: RunLength::Steps(1),
            lr: 0.0,
            batch_size: 100,
            grad_accum: 1,
            warmup_steps: 0,
            ..options(dir.clone())
        };
        let r = train(&mut m, &data, &data, &opts).unwrap();
        assert_eq!(params(&m), before);
        let n: usize = data.iter().map(Example::n_trained).sum();
        assert_eq!(r.metrics.trained_tokens, n as u64);
        let (s, k) = m.eval_loss(&data).unwrap();
        assert_eq!(r.metrics.eval_loss_start, Some(s / k as f64));
        assert!((r.metrics.train_loss[0] - s / k as f64).abs() < 0.2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
