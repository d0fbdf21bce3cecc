//! Checkpoints in `OUT/checkpoint/`: `params.safetensors` (the trained tensors by name),
//! `optimizer.safetensors` (AdamW's `m.NAME` and `v.NAME`) and `state.json` (step, place
//! in the data, seeds, losses so far). A checkpoint is written whole into
//! `checkpoint.tmp/` and swapped in by renames, so a crash leaves either the old or the new
//! one: `checkpoint/`, or `checkpoint.old/` when the crash fell between the two renames.
//! The float series of `state.json` (losses, learning rates, norms, time) are also kept
//! bit-exact in `history.safetensors` (F64), which resume reads: serde_json's default
//! float parser may be off by one ulp, and a resumed run must report the same numbers.

use anyhow::{bail, Context, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::path::{Path, PathBuf};

/// Where training stands, as saved in `state.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    /// Total optimizer steps of the run.
    pub total_steps: usize,
    /// Epoch of the next micro-batch (0-based).
    pub epoch: u64,
    /// Index of the next micro-batch in that epoch's batch order.
    pub batch_in_epoch: usize,
    /// The run's seed (shuffling and dropout seeds are derived from it and the position).
    pub seed: u64,
    /// The options that must not change on resume, as text (`field = value` lines).
    pub fingerprint: Vec<String>,
    /// Mean train loss per step.
    pub train_loss: Vec<f64>,
    /// Learning rate per step.
    pub lr: Vec<f64>,
    /// Gradient norm (before clipping) per step.
    pub grad_norm: Vec<f64>,
    /// `(step, eval loss)` pairs.
    pub eval_loss: Vec<(usize, f64)>,
    /// Trained positions seen so far.
    pub trained_tokens: u64,
    /// All tokens of the training micro-batches so far.
    pub processed_tokens: u64,
    /// Wall time spent in training micro-batches and updates so far, in seconds.
    pub train_seconds: f64,
}

/// A loaded checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Where training stands.
    pub state: TrainState,
    /// Parameter values by name.
    pub params: Vec<(String, Vec<f32>)>,
    /// AdamW's first moments, in `params`' order.
    pub m: Vec<Vec<f32>>,
    /// AdamW's second moments, in `params`' order.
    pub v: Vec<Vec<f32>>,
    /// AdamW's step count.
    pub opt_step: u64,
}

/// The checkpoint folder of run folder `out_dir`.
pub fn checkpoint_dir(out_dir: &Path) -> PathBuf {
    out_dir.join("checkpoint")
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_tensors(path: &Path, tensors: &[(String, Vec<u8>)]) -> Result<()> {
    write_typed(path, Dtype::F32, tensors)
}

/// The float series of `state` as F64 tensors.
fn write_history(path: &Path, st: &TrainState) -> Result<()> {
    let f64s = |xs: &mut dyn Iterator<Item = f64>| xs.flat_map(f64::to_le_bytes).collect();
    let series = vec![
        (
            "train_loss".to_string(),
            f64s(&mut st.train_loss.iter().copied()),
        ),
        ("lr".to_string(), f64s(&mut st.lr.iter().copied())),
        (
            "grad_norm".to_string(),
            f64s(&mut st.grad_norm.iter().copied()),
        ),
        (
            "eval_loss".to_string(),
            f64s(&mut st.eval_loss.iter().map(|e| e.1)),
        ),
        (
            "train_seconds".to_string(),
            f64s(&mut std::iter::once(st.train_seconds)),
        ),
    ];
    write_typed(path, Dtype::F64, &series)
}

/// Puts the exact series of `history.safetensors` into `st`.
fn read_history(path: &Path, st: &mut TrainState) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: read", path.display()))?;
    let h = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let series = |name: &str, want: usize| -> Result<Vec<f64>> {
        let t = h
            .tensor(name)
            .with_context(|| format!("{}: tensor {name} is missing", path.display()))?;
        if t.dtype() != Dtype::F64 || t.data().len() != 8 * want {
            bail!(
                "{}: tensor {name} is {:?} with {} bytes, expected F64 with {want} values (as in state.json)",
                path.display(),
                t.dtype(),
                t.data().len()
            );
        }
        Ok(t.data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect())
    };
    st.train_loss = series("train_loss", st.train_loss.len())?;
    st.lr = series("lr", st.lr.len())?;
    st.grad_norm = series("grad_norm", st.grad_norm.len())?;
    let eval = series("eval_loss", st.eval_loss.len())?;
    for (e, v) in st.eval_loss.iter_mut().zip(eval) {
        e.1 = v;
    }
    st.train_seconds = series("train_seconds", 1)?[0];
    Ok(())
}

fn write_typed(path: &Path, dtype: Dtype, tensors: &[(String, Vec<u8>)]) -> Result<()> {
    let width = dtype.bitsize() / 8;
    let views = tensors
        .iter()
        .map(|(name, bytes)| {
            TensorView::new(dtype, vec![bytes.len() / width], bytes)
                .map(|v| (name.clone(), v))
                .with_context(|| format!("{}: tensor {name}", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None)
        .with_context(|| format!("{}: serializing", path.display()))?;
    write_synced(path, &bytes)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f =
        std::fs::File::create(path).with_context(|| format!("{}: create", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("{}: write", path.display()))
}

/// Writes a checkpoint of `params` (name, values), AdamW's moments and step, and `state`
/// into `out_dir/checkpoint/`, replacing the previous one atomically.
pub fn save(
    out_dir: &Path,
    params: &[(String, Vec<f32>)],
    m: &[Vec<f32>],
    v: &[Vec<f32>],
    opt_step: u64,
    state: &TrainState,
) -> Result<()> {
    let tmp = out_dir.join("checkpoint.tmp");
    let old = out_dir.join("checkpoint.old");
    let dir = checkpoint_dir(out_dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("{}: remove", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: create", tmp.display()))?;
    let p: Vec<(String, Vec<u8>)> = params
        .iter()
        .map(|(n, x)| (n.clone(), to_bytes(x)))
        .collect();
    write_tensors(&tmp.join("params.safetensors"), &p)?;
    let mut o = Vec::with_capacity(2 * params.len());
    for (k, (name, _)) in params.iter().enumerate() {
        o.push((format!("m.{name}"), to_bytes(&m[k])));
        o.push((format!("v.{name}"), to_bytes(&v[k])));
    }
    write_tensors(&tmp.join("optimizer.safetensors"), &o)?;
    write_history(&tmp.join("history.safetensors"), state)?;
    let json = serde_json::json!({
        "state": state,
        "optimizer_step": opt_step,
        "tensors": params.iter().map(|(n, _)| n).collect::<Vec<_>>(),
    });
    write_synced(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("{}: remove", old.display()))?;
    }
    if dir.exists() {
        std::fs::rename(&dir, &old).with_context(|| format!("{}: rename", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("{}: rename", tmp.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("{}: remove", old.display()))?;
    }
    Ok(())
}

fn read_f32(st: &SafeTensors<'_>, path: &Path, name: &str) -> Result<Vec<f32>> {
    let t = st
        .tensor(name)
        .with_context(|| format!("{}: tensor {name} is missing", path.display()))?;
    if t.dtype() != Dtype::F32 {
        bail!(
            "{}: tensor {name} is {:?}, expected F32",
            path.display(),
            t.dtype()
        );
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Loads the checkpoint of run folder `out_dir`; `None` when there is none.
pub fn load(out_dir: &Path) -> Result<Option<Checkpoint>> {
    let mut dir = checkpoint_dir(out_dir);
    if !dir.join("state.json").exists() {
        dir = out_dir.join("checkpoint.old");
        if !dir.join("state.json").exists() {
            return Ok(None);
        }
    }
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("{}: read", state_path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", state_path.display()))?;
    let field = |key: &str| {
        json.get(key)
            .cloned()
            .with_context(|| format!("{}: missing \"{key}\"", state_path.display()))
    };
    let mut state: TrainState = serde_json::from_value(field("state")?)
        .with_context(|| format!("{}: \"state\"", state_path.display()))?;
    let opt_step: u64 = serde_json::from_value(field("optimizer_step")?)
        .with_context(|| format!("{}: \"optimizer_step\"", state_path.display()))?;
    let names: Vec<String> = serde_json::from_value(field("tensors")?)
        .with_context(|| format!("{}: \"tensors\"", state_path.display()))?;
    read_history(&dir.join("history.safetensors"), &mut state)?;
    let params_path = dir.join("params.safetensors");
    let opt_path = dir.join("optimizer.safetensors");
    let pbytes =
        std::fs::read(&params_path).with_context(|| format!("{}: read", params_path.display()))?;
    let obytes =
        std::fs::read(&opt_path).with_context(|| format!("{}: read", opt_path.display()))?;
    let pst = SafeTensors::deserialize(&pbytes)
        .with_context(|| format!("{}: not a safetensors file", params_path.display()))?;
    let ost = SafeTensors::deserialize(&obytes)
        .with_context(|| format!("{}: not a safetensors file", opt_path.display()))?;
    let mut ck = Checkpoint {
        state,
        params: Vec::new(),
        m: Vec::new(),
        v: Vec::new(),
        opt_step,
    };
    for name in names {
        ck.m.push(read_f32(&ost, &opt_path, &format!("m.{name}"))?);
        ck.v.push(read_f32(&ost, &opt_path, &format!("v.{name}"))?);
        let values = read_f32(&pst, &params_path, &name)?;
        ck.params.push((name, values));
    }
    Ok(Some(ck))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> TrainState {
        TrainState {
            step: 3,
            total_steps: 9,
            epoch: 1,
            batch_in_epoch: 2,
            seed: 5,
            fingerprint: vec!["lr = 0.1".into()],
            train_loss: vec![2.0794646546647355, 1.9073526182690181, 0.1 + 0.2],
            lr: vec![0.0, 0.05, 0.1],
            grad_norm: vec![1.0, 0.5, 0.25],
            eval_loss: vec![(0, 2.1), (3, 1.0000000000000002)],
            trained_tokens: 30,
            processed_tokens: 40,
            train_seconds: 0.123456789,
        }
    }

    #[test]
    fn save_and_load_round_trip_exactly_and_survive_a_half_swap() {
        let out = std::env::temp_dir().join(format!("huarizo-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let params = vec![
            ("a".to_string(), vec![1.0f32, -2.5, f32::MIN_POSITIVE]),
            ("b".to_string(), vec![0.1f32]),
        ];
        let m = vec![vec![0.1f32, 0.2, 0.3], vec![0.4]];
        let v = vec![vec![1e-8f32, 2e-8, 3e-8], vec![4e-8]];
        let st = state();
        save(&out, &params, &m, &v, 3, &st).unwrap();
        // A second save replaces the first.
        save(&out, &params, &m, &v, 3, &st).unwrap();
        assert!(!out.join("checkpoint.tmp").exists() && !out.join("checkpoint.old").exists());
        let ck = load(&out).unwrap().unwrap();
        assert_eq!(ck.state, st);
        assert_eq!(ck.params, params);
        assert_eq!((ck.m, ck.v, ck.opt_step), (m.clone(), v.clone(), 3));
        // A crash between the two renames leaves only checkpoint.old.
        std::fs::rename(checkpoint_dir(&out), out.join("checkpoint.old")).unwrap();
        assert_eq!(load(&out).unwrap().unwrap().params, params);
        std::fs::remove_dir_all(&out).unwrap();
        assert!(load(&out).unwrap().is_none());
    }
}
