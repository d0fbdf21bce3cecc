//! AdamW with decoupled weight decay (as `torch.optim.AdamW`), global-norm gradient
//! clipping (as `torch.nn.utils.clip_grad_norm_`) and the cosine learning-rate schedule
//! with linear warm-up (as transformers' `get_cosine_with_min_lr_schedule_with_warmup`).
//!
//! Gradients are read-only here (a model hands them out as `&[f32]`): the trainer's
//! `1 / trained tokens` scaling and the clipping coefficient are folded into one
//! `grad_scale` that [`AdamW::update`] multiplies each gradient element by.

/// AdamW's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    /// β1, the decay of the first moment (torch default 0.9).
    pub beta1: f64,
    /// β2, the decay of the second moment (torch default 0.999).
    pub beta2: f64,
    /// ε added to the denominator (torch default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay λ (torch's AdamW default 0.01).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// AdamW's state over a fixed list of parameter tensors.
///
/// Step `t` (1-based) with learning rate `lr`, gradient `g`, for every element:
/// ```text
/// p ← p · (1 − lr·λ)
/// m ← β1·m + (1 − β1)·g
/// v ← β2·v + (1 − β2)·g²
/// p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
/// ```
/// exactly the order of operations of `torch.optim.AdamW` (single-tensor path, no
/// amsgrad): scalar factors in f64, element arithmetic in f32.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    /// The hyperparameters.
    pub config: AdamWConfig,
    /// Steps taken so far (`t` of the last step).
    pub step: u64,
    /// First moments, one buffer per tensor.
    pub m: Vec<Vec<f32>>,
    /// Second moments, one buffer per tensor.
    pub v: Vec<Vec<f32>>,
}

impl AdamW {
    /// A fresh optimizer for tensors of the given element counts.
    pub fn new(config: AdamWConfig, sizes: &[usize]) -> AdamW {
        AdamW {
            config,
            step: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// Starts a step: call once, then [`update`](Self::update) every tensor.
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// Updates tensor `i` (`param`, its gradient `grad` times `grad_scale`) with
    /// learning rate `lr`, for the step begun by [`begin_step`](Self::begin_step).
    pub fn update(&mut self, i: usize, param: &mut [f32], grad: &[f32], grad_scale: f32, lr: f64) {
        let c = &self.config;
        let t = self.step.max(1) as i32;
        let decay = (1.0 - lr * c.weight_decay) as f32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt() as f32;
        let step_size = (lr / bias1) as f32;
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
        let (one_b1, one_b2) = ((1.0 - c.beta1) as f32, (1.0 - c.beta2) as f32);
        let (m, v) = (&mut self.m[i], &mut self.v[i]);
        assert_eq!(param.len(), m.len(), "tensor {i}: parameter size changed");
        assert_eq!(grad.len(), m.len(), "tensor {i}: gradient size differs");
        for j in 0..param.len() {
            let g = grad[j] * grad_scale;
            param[j] *= decay;
            m[j] = b1 * m[j] + one_b1 * g;
            v[j] = b2 * v[j] + one_b2 * g * g;
            let denom = v[j].sqrt() / bias2_sqrt + eps;
            param[j] -= step_size * m[j] / denom;
        }
    }
}

/// Σ g² of one gradient tensor, in f64.
pub fn sum_squares(grad: &[f32]) -> f64 {
    grad.iter().map(|&g| f64::from(g) * f64::from(g)).sum()
}

/// `clip_grad_norm_`'s factor for a global norm `total_norm` and a limit `max_norm`:
/// `min(1, max_norm / (total_norm + 1e-6))`; 1 when `max_norm` is not positive (no
/// clipping).
pub fn clip_coefficient(total_norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    (max_norm / (total_norm + 1e-6)).min(1.0)
}

/// `torch.nn.utils.clip_grad_norm_(grads, max_norm)` on mutable gradients: scales them so
/// their global L2 norm is at most `max_norm` and returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f64) -> f64 {
    let norm = grads.iter().map(|g| sum_squares(g)).sum::<f64>().sqrt();
    let coef = clip_coefficient(norm, max_norm);
    if coef < 1.0 {
        for g in grads.iter_mut() {
            for x in g.iter_mut() {
                *x *= coef as f32;
            }
        }
    }
    norm
}

/// Linear warm-up then cosine decay, as transformers'
/// `get_cosine_with_min_lr_schedule_with_warmup(num_cycles = 0.5, min_lr_rate)`.
/// The learning rate of step `k` (0-based, `k < total_steps`) is `lr × f(k)` with
/// ```text
/// f(k) = k / max(1, warmup)                                  if k < warmup
/// p    = (k − warmup) / max(1, total − warmup)
/// f(k) = max(0, r + (1 − r) · ½ · (1 + cos(π · p)))           otherwise
/// ```
/// where `r = min_lr_ratio`. As in transformers, the first warm-up step has rate 0 and
/// `f` reaches `r` at `k = total` (one past the last step).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CosineSchedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up steps.
    pub warmup_steps: usize,
    /// Total optimizer steps of the run.
    pub total_steps: usize,
    /// The final rate as a fraction of `lr`.
    pub min_lr_ratio: f64,
}

impl CosineSchedule {
    /// The learning rate of step `k` (0-based).
    pub fn lr_at(&self, k: usize) -> f64 {
        let w = self.warmup_steps;
        if k < w {
            return self.lr * k as f64 / w.max(1) as f64;
        }
        let progress = (k - w) as f64 / self.total_steps.saturating_sub(w).max(1) as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        let r = self.min_lr_ratio;
        self.lr * (r + (1.0 - r) * cosine).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torch.optim.AdamW's update written out in f64, for comparison.
    fn reference(p: &mut [f64], m: &mut [f64], v: &mut [f64], g: &[f64], t: i32, lr: f64) {
        let c = AdamWConfig::default();
        for j in 0..p.len() {
            p[j] *= 1.0 - lr * c.weight_decay;
            m[j] = c.beta1 * m[j] + (1.0 - c.beta1) * g[j];
            v[j] = c.beta2 * v[j] + (1.0 - c.beta2) * g[j] * g[j];
            let denom = v[j].sqrt() / (1.0 - c.beta2.powi(t)).sqrt() + c.eps;
            p[j] -= lr / (1.0 - c.beta1.powi(t)) * m[j] / denom;
        }
    }

    #[test]
    fn adamw_matches_the_torch_formula() {
        let grads = [
            [0.3f32, -1.2, 0.0, 2.5],
            [-0.7, 0.4, 1e-3, -2.0],
            [0.1, 0.1, -0.1, 0.9],
        ];
        let mut p = vec![0.5f32, -0.25, 1.0, 3.0];
        let mut opt = AdamW::new(AdamWConfig::default(), &[4]);
        let mut rp: Vec<f64> = p.iter().map(|&x| f64::from(x)).collect();
        let (mut rm, mut rv) = (vec![0.0; 4], vec![0.0; 4]);
        for (t, g) in grads.iter().enumerate() {
            let lr = 1e-2 * (t + 1) as f64;
            opt.begin_step();
            opt.update(0, &mut p, g, 1.0, lr);
            let g64: Vec<f64> = g.iter().map(|&x| f64::from(x)).collect();
            reference(&mut rp, &mut rm, &mut rv, &g64, t as i32 + 1, lr);
            for j in 0..4 {
                assert!(
                    (f64::from(p[j]) - rp[j]).abs() < 1e-6,
                    "step {t} elem {j}: {} vs {}",
                    p[j],
                    rp[j]
                );
            }
        }
        assert_eq!(opt.step, 3);
    }

    #[test]
    fn adamw_hand_computed_values() {
        // p = 1, lr = 0.1, λ = 0.01. Step 1, g = 0.5: p = 0.999, m = 0.05, v = 0.00025,
        // m̂ = 0.5, v̂ = 0.25, p = 0.999 − 0.1 · 0.5 / (0.5 + 1e-8) = 0.899000002.
        // Step 2, g = −1: p = 0.898101002, m = −0.055, v = 0.00124975,
        // m̂ = −0.055 / 0.19 = −0.28947368, v̂ = 0.00124975 / 0.001999 = 0.62518759,
        // p = 0.898101002 + 0.1 · 0.28947368 / 0.79068805 = 0.93471135.
        let mut opt = AdamW::new(AdamWConfig::default(), &[1]);
        let mut p = [1.0f32];
        opt.begin_step();
        opt.update(0, &mut p, &[0.5], 1.0, 0.1);
        assert!((p[0] - 0.899).abs() < 1e-6, "{}", p[0]);
        // The scale is applied to the gradient: -0.5 × 2 = -1.
        opt.begin_step();
        opt.update(0, &mut p, &[-0.5], 2.0, 0.1);
        assert!((p[0] - 0.934_711_35).abs() < 1e-6, "{}", p[0]);
    }

    #[test]
    fn clipping_is_global_and_returns_the_norm_before() {
        let mut a = [3.0f32, 0.0];
        let mut b = [4.0f32];
        let norm = clip_grad_norm(&mut [&mut a, &mut b], 1.0);
        assert_eq!(norm, 5.0);
        let after = (a[0] * a[0] + b[0] * b[0]).sqrt();
        assert!((after - 1.0).abs() < 1e-5, "{after}");
        assert!((a[0] / b[0] - 0.75).abs() < 1e-6);
        let mut c = [0.1f32];
        assert!((clip_grad_norm(&mut [&mut c], 1.0) - 0.1).abs() < 1e-7);
        assert_eq!(c[0], 0.1, "below the limit nothing changes");
        assert_eq!(clip_coefficient(5.0, 0.0), 1.0);
    }

    #[test]
    fn cosine_schedule_with_warmup() {
        let s = CosineSchedule {
            lr: 1.0,
            warmup_steps: 4,
            total_steps: 14,
            min_lr_ratio: 0.1,
        };
        assert_eq!(s.lr_at(0), 0.0);
        assert_eq!(s.lr_at(2), 0.5);
        assert_eq!(s.lr_at(4), 1.0);
        // Halfway through the decay: 0.1 + 0.9 · 0.5.
        assert!((s.lr_at(9) - 0.55).abs() < 1e-12);
        assert!((s.lr_at(14) - 0.1).abs() < 1e-12);
        for k in 4..13 {
            assert!(s.lr_at(k + 1) < s.lr_at(k));
        }
        let flat = CosineSchedule {
            warmup_steps: 0,
            total_steps: 0,
            ..s
        };
        assert_eq!(flat.lr_at(0), 1.0);
    }
}
