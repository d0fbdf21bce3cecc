//! The run's numbers: per-step train loss, eval losses, speed and peak memory, written as
//! `metrics.json`.

use crate::checkpoint::TrainState;
use anyhow::{Context, Result};
use std::path::Path;

/// What `metrics.json` holds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    /// Mean train loss per trained token, per step.
    pub train_loss: Vec<f64>,
    /// Eval loss before training (`None`: no eval set).
    pub eval_loss_start: Option<f64>,
    /// Eval loss after the last step.
    pub eval_loss_end: Option<f64>,
    /// All tokens of the training micro-batches over the training wall time (eval and
    /// checkpoints excluded).
    pub tokens_per_second: f64,
    /// `[step, loss]` pairs of every evaluation (step 0 is before training).
    pub eval_loss: Vec<(usize, f64)>,
    /// Learning rate per step.
    pub lr: Vec<f64>,
    /// Global gradient norm before clipping, per step.
    pub grad_norm: Vec<f64>,
    /// Peak resident memory of the process (`VmHWM`), in bytes; 0 where unknown.
    pub peak_rss_bytes: u64,
    /// Optimizer steps done.
    pub steps: usize,
    /// Trained positions seen (labels that carried a loss).
    pub trained_tokens: u64,
}

impl Metrics {
    /// The metrics of a training state.
    pub fn from_state(st: &TrainState, peak_rss_bytes: u64) -> Metrics {
        let start = st.eval_loss.first().filter(|e| e.0 == 0).map(|e| e.1);
        let end = st
            .eval_loss
            .last()
            .filter(|e| e.0 == st.step && st.step > 0)
            .map(|e| e.1);
        Metrics {
            train_loss: st.train_loss.clone(),
            eval_loss_start: start,
            eval_loss_end: end,
            tokens_per_second: if st.train_seconds > 0.0 {
                st.processed_tokens as f64 / st.train_seconds
            } else {
                0.0
            },
            eval_loss: st.eval_loss.clone(),
            lr: st.lr.clone(),
            grad_norm: st.grad_norm.clone(),
            peak_rss_bytes,
            steps: st.step,
            trained_tokens: st.trained_tokens,
        }
    }

    /// Writes the metrics as pretty JSON to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("{}: write", path.display()))
    }
}

/// Peak resident set size of this process from `/proc/self/status` (`VmHWM`), in bytes;
/// 0 where that file is absent (not Linux).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_hwm(&s))
        .unwrap_or(0)
}

/// The `VmHWM:  1234 kB` line of a `/proc/PID/status` text, in bytes.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let unit = match parts.next() {
        Some("kB") | None => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        Some(_) => return None,
    };
    Some(value * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let s = "Name:\tx\nVmPeak:\t  9 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(s), Some(1234 * 1024));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        assert!(peak_rss_bytes() > 0, "this test runs on Linux");
    }
}
