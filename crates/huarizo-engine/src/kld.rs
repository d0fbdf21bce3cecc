//! KL divergence between a base model and a quantized one over the same scored tokens,
//! with the statistics llama-perplexity's `--kl-divergence` reports. Per token, from the
//! log-softmax of both logit rows in f64: `KL(base‖quant) = Σ p_base·(ln p_base - ln
//! p_quant)`, whether the top-1 tokens agree, and `Δp = p_quant(tok) - p_base(tok)` of the
//! correct token. (llama.cpp keeps the base log-probabilities in 16 bits and skips
//! `p_base < e⁻¹⁶`; here they are exact, which changes the mean KLD by ~1e-5 at most.)
//!
//! Dimension letters: V vocabulary.

use crate::perplexity::NllSums;

/// Running sums over the scored tokens.
#[derive(Clone, Debug, Default)]
pub struct KldSums {
    /// Negative log-likelihoods under the quantized model.
    pub nll_quant: NllSums,
    /// Negative log-likelihoods under the base model.
    pub nll_base: NllSums,
    /// Σ nll_quant·nll_base.
    pub sum_nll_cross: f64,
    /// Σ KLD.
    pub sum_kld: f64,
    /// Σ KLD².
    pub sum_kld2: f64,
    /// Σ Δp.
    pub sum_dp: f64,
    /// Σ Δp².
    pub sum_dp2: f64,
    /// Σ Δp⁴.
    pub sum_dp4: f64,
    /// Tokens whose top-1 token is the same under both models.
    pub same_top: usize,
    /// Every token's KLD, in order.
    pub kld_values: Vec<f64>,
    /// Every token's Δp, in order.
    pub dp_values: Vec<f64>,
}

/// `ln softmax(logits)` in f64 (`V`), and the index of the first largest logit.
fn log_softmax(logits: &[f32], out: &mut Vec<f64>) -> usize {
    let (mut imax, mut max) = (0, f64::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if f64::from(l) > max {
            (imax, max) = (i, f64::from(l));
        }
    }
    let sum: f64 = logits.iter().map(|&l| (f64::from(l) - max).exp()).sum();
    let lse = max + sum.ln();
    out.clear();
    out.extend(logits.iter().map(|&l| f64::from(l) - lse));
    imax
}

impl KldSums {
    /// Adds one scored token: the base and quantized logits (`V` each) at a position and
    /// the token that follows it.
    pub fn add(&mut self, base: &[f32], quant: &[f32], tok: u32, scratch: &mut [Vec<f64>; 2]) {
        let [lp_base, lp_quant] = scratch;
        let top_base = log_softmax(base, lp_base);
        let top_quant = log_softmax(quant, lp_quant);
        let kld: f64 = lp_base
            .iter()
            .zip(lp_quant.iter())
            .map(|(&b, &q)| b.exp() * (b - q))
            .sum();
        let t = tok as usize;
        let (nll_b, nll_q) = (-lp_base[t], -lp_quant[t]);
        self.nll_base.add(nll_b);
        self.nll_quant.add(nll_q);
        self.sum_nll_cross += nll_b * nll_q;
        self.sum_kld += kld;
        self.sum_kld2 += kld * kld;
        let dp = (-nll_q).exp() - (-nll_b).exp();
        self.sum_dp += dp;
        self.sum_dp2 += dp * dp;
        self.sum_dp4 += dp * dp * dp * dp;
        self.same_top += usize::from(top_base == top_quant);
        self.kld_values.push(kld);
        self.dp_values.push(dp);
    }

    /// Tokens scored.
    pub fn count(&self) -> usize {
        self.kld_values.len()
    }

    /// The statistics of llama-perplexity's `--kl-divergence` report.
    pub fn summary(&self) -> KldSummary {
        let n = self.count();
        let (lq, lq_err) = mean_and_stderr(self.nll_quant.sum, self.nll_quant.sum2, n);
        let (lb, lb_err) = mean_and_stderr(self.nll_base.sum, self.nll_base.sum2, n);
        let cov = covariance(self.nll_quant.sum, self.nll_base.sum, self.sum_nll_cross, n);
        let (ppl_q, ppl_b) = (lq.exp(), lb.exp());
        let (ppl_q_err, ppl_b_err) = (ppl_q * lq_err, ppl_b * lb_err);
        let ratio_err = (lq_err * lq_err + lb_err * lb_err - 2.0 * cov)
            .max(0.0)
            .sqrt();
        let diff_err = (ppl_q_err * ppl_q_err + ppl_b_err * ppl_b_err - 2.0 * ppl_q * ppl_b * cov)
            .max(0.0)
            .sqrt();
        let (kld, kld_err) = mean_and_stderr(self.sum_kld, self.sum_kld2, n);
        let mut sorted = self.kld_values.clone();
        sorted.sort_by(f64::total_cmp);
        let (dp, dp_err) = mean_and_stderr(self.sum_dp, self.sum_dp2, n);
        let (mse, mse_err) = mean_and_stderr(self.sum_dp2, self.sum_dp4, n);
        let rms = mse.sqrt();
        let top = self.same_top as f64 / n.max(1) as f64;
        KldSummary {
            tokens: n,
            ppl_quant: ppl_q,
            ppl_quant_stderr: ppl_q_err,
            ppl_base: ppl_b,
            ppl_base_stderr: ppl_b_err,
            cor_ln_ppl: cov / (lq_err * lb_err),
            ln_ppl_ratio: lq - lb,
            ln_ppl_ratio_stderr: ratio_err,
            delta_ppl: ppl_q - ppl_b,
            delta_ppl_stderr: diff_err,
            mean_kld: kld,
            kld_stderr: kld_err,
            max_kld: sorted.last().copied().unwrap_or(0.0),
            kld_p99_9: percentile(&sorted, 0.999),
            kld_p99: percentile(&sorted, 0.99),
            kld_p95: percentile(&sorted, 0.95),
            kld_p90: percentile(&sorted, 0.90),
            median_kld: median(&sorted),
            min_kld: sorted.first().copied().unwrap_or(0.0),
            same_top_p: top,
            same_top_p_stderr: (top * (1.0 - top) / (n as f64 - 1.0).max(1.0)).sqrt(),
            mean_delta_p: dp,
            mean_delta_p_stderr: dp_err,
            rms_delta_p: rms,
            rms_delta_p_stderr: if rms > 0.0 { 0.5 / rms * mse_err } else { 0.0 },
            max_abs_delta_p: self.dp_values.iter().fold(0.0, |m, d| d.abs().max(m)),
        }
    }
}

/// llama.cpp's `mean_and_uncertainty`: the mean, and `sqrt(var / (n-1))` when the variance
/// is positive and more than 10 values were seen (else 0).
fn mean_and_stderr(sum: f64, sum2: f64, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = sum / n as f64;
    let var = sum2 / n as f64 - mean * mean;
    let err = if var > 0.0 && n > 10 {
        (var / (n as f64 - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, err)
}

/// llama.cpp's covariance of the two mean log-likelihoods (0 below 10 values).
fn covariance(sum_a: f64, sum_b: f64, sum_ab: f64, n: usize) -> f64 {
    if n < 10 {
        return 0.0;
    }
    let n_f = n as f64;
    (sum_ab / n_f - (sum_a / n_f) * (sum_b / n_f)) / (n_f - 1.0)
}

/// llama.cpp's percentile: linear interpolation at `fraction·(n-1)` of sorted values.
fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let Some(&last) = sorted.last() else {
        return 0.0;
    };
    let p = fraction * (sorted.len() - 1) as f64;
    let ip = p as usize;
    let frac = p - ip as f64;
    (1.0 - frac) * sorted[ip] + frac * sorted.get(ip + 1).copied().unwrap_or(last)
}

/// The median of sorted values (the mean of the middle two for an even count).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n.is_multiple_of(2) => 0.5 * (sorted[n / 2] + sorted[n / 2 - 1]),
        _ => sorted[n / 2],
    }
}

/// llama-perplexity's `--kl-divergence` statistics. Δp and probabilities are fractions
/// (llama.cpp prints them as percentages).
#[derive(Clone, Debug, PartialEq)]
pub struct KldSummary {
    /// Tokens scored.
    pub tokens: usize,
    /// Mean PPL(Q).
    pub ppl_quant: f64,
    /// Its uncertainty.
    pub ppl_quant_stderr: f64,
    /// Mean PPL(base).
    pub ppl_base: f64,
    /// Its uncertainty.
    pub ppl_base_stderr: f64,
    /// Cor(ln PPL(Q), ln PPL(base)).
    pub cor_ln_ppl: f64,
    /// Mean ln(PPL(Q)/PPL(base)).
    pub ln_ppl_ratio: f64,
    /// Its uncertainty.
    pub ln_ppl_ratio_stderr: f64,
    /// Mean PPL(Q) − PPL(base).
    pub delta_ppl: f64,
    /// Its uncertainty.
    pub delta_ppl_stderr: f64,
    /// Mean KLD.
    pub mean_kld: f64,
    /// Its uncertainty.
    pub kld_stderr: f64,
    /// Maximum KLD.
    pub max_kld: f64,
    /// 99.9th percentile of the KLD.
    pub kld_p99_9: f64,
    /// 99th percentile.
    pub kld_p99: f64,
    /// 95th percentile.
    pub kld_p95: f64,
    /// 90th percentile.
    pub kld_p90: f64,
    /// Median KLD.
    pub median_kld: f64,
    /// Minimum KLD.
    pub min_kld: f64,
    /// Share of tokens whose top-1 token agrees.
    pub same_top_p: f64,
    /// Its uncertainty.
    pub same_top_p_stderr: f64,
    /// Mean Δp.
    pub mean_delta_p: f64,
    /// Its uncertainty.
    pub mean_delta_p_stderr: f64,
    /// RMS Δp.
    pub rms_delta_p: f64,
    /// Its uncertainty.
    pub rms_delta_p_stderr: f64,
    /// Largest |Δp|.
    pub max_abs_delta_p: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_models_have_zero_divergence() {
        let mut s = KldSums::default();
        let mut scratch = [Vec::new(), Vec::new()];
        let rows = [[1.0f32, 2.0, 0.5], [0.0, -1.0, 3.0]];
        for (i, r) in rows.iter().enumerate() {
            s.add(r, r, i as u32, &mut scratch);
        }
        let sum = s.summary();
        assert!(sum.mean_kld.abs() < 1e-15);
        assert_eq!(sum.same_top_p, 1.0);
        assert_eq!(sum.rms_delta_p, 0.0);
        assert!((sum.ppl_quant - sum.ppl_base).abs() < 1e-12);
    }

    #[test]
    fn kld_of_two_coins() {
        // base p = (0.5, 0.5), quant q = (0.75, 0.25): KL = 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25).
        let mut s = KldSums::default();
        let mut scratch = [Vec::new(), Vec::new()];
        s.add(&[0.0, 0.0], &[3f32.ln(), 0.0], 1, &mut scratch);
        let want = 0.5 * (0.5f64 / 0.75).ln() + 0.5 * 2f64.ln();
        assert!((s.summary().mean_kld - want).abs() < 1e-6);
        assert!((s.summary().mean_delta_p + 0.25).abs() < 1e-6);
    }

    #[test]
    fn percentiles_interpolate() {
        let v = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(percentile(&v, 0.5), 1.5);
        assert_eq!(median(&v), 1.5);
        assert_eq!(percentile(&v, 1.0), 3.0);
    }
}
