//! Aggregation of per-item scores, with lm-eval's standard errors.

use serde::Serialize;

/// One metric of a task: its value and standard error.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    /// Name (`acc`, `multiple_choice_grade`, …).
    pub name: String,
    /// Value.
    pub value: f64,
    /// Standard error of the mean (lm-eval's `sample_stddev / sqrt(n)`), when defined.
    pub stderr: Option<f64>,
    /// Whether a higher value is better.
    pub higher_is_better: bool,
    /// The filter its answers went through (lm-eval's `exact_match,strict-match`);
    /// `none` for most metrics.
    pub filter: String,
}

impl Metric {
    /// Its key in lm-eval's results: `name,filter`.
    pub fn key(&self) -> String {
        format!("{},{}", self.name, self.filter)
    }

    /// Its standard error's key: `name_stderr,filter`.
    pub fn stderr_key(&self) -> String {
        format!("{}_stderr,{}", self.name, self.filter)
    }
}

/// Mean of `xs`.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (n − 1) over √n, as lm-eval's `mean_stderr`.
pub fn mean_stderr(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs);
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
    Some((var / xs.len() as f64).sqrt())
}

/// A mean metric with its standard error.
pub fn mean_metric(name: &str, xs: &[f64], higher_is_better: bool) -> Metric {
    Metric {
        name: name.to_string(),
        value: mean(xs),
        stderr: mean_stderr(xs),
        higher_is_better,
        filter: "none".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stderr_is_sample_sd_over_root_n() {
        let xs = [1.0, 0.0, 1.0, 1.0];
        // mean 0.75, sample var = (3·0.0625 + 0.5625)/3 = 0.25, se = sqrt(0.25/4)
        assert!((super::mean_stderr(&xs).unwrap() - 0.25).abs() < 1e-12);
    }
}
