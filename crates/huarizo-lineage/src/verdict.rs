//! Evidence layer 7: the verdict, decided from the layers below by fixed, documented
//! thresholds (calibrated on real model pairs; see docs/LINEAGE.md).

use crate::architecture::ArchReport;
use crate::graph::GraphReport;
use crate::invariants::InvariantReport;
use crate::tokens::TokenizerReport;
use crate::weights::WeightsReport;
use serde::Serialize;

/// Size-weighted cosine above which directly compared weights show derivation.
pub const DERIVED_COSINE: f64 = 0.5;
/// Share of A's weights that must be directly comparable for the cosine to count.
pub const MIN_COMPARED: f64 = 0.5;
/// Invariant similarity above which (with a significant p-value) layers show derivation.
pub const DERIVED_INVARIANT: f64 = 0.6;
/// Significance level of the layer-pairing test.
pub const SIGNIFICANCE: f64 = 0.001;
/// Share of compared weights within quantization noise for "same weights".
pub const SAME_WEIGHTS_SHARE: f64 = 0.99;

/// What B is, relative to A.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The same tensors, bytes and tokenizer.
    Identical,
    /// The same weights stored differently (another quantization, precision or format).
    SameWeights,
    /// Weights derived from A's (fine-tuned, continued-trained, edited).
    Derived,
    /// The same architecture, weights trained independently.
    SameArchitecture,
    /// Nothing shared beyond, possibly, the family.
    Unrelated,
}

impl Verdict {
    /// The verdict as the report prints it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Identical => "identical",
            Verdict::SameWeights => "same weights, different quantization or format",
            Verdict::Derived => "derived (fine-tuned or continued-trained)",
            Verdict::SameArchitecture => "same architecture, independent weights",
            Verdict::Unrelated => "unrelated",
        }
    }
}

/// The verdict with its confidence and the evidence that decided it.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// Its label.
    pub label: &'static str,
    /// Confidence in [0, 1]: for identical/same weights, the share of weights that agree;
    /// for derived, 1 − p of the layer-pairing test (or the weight cosine when only that
    /// decided); for the independent verdicts, 1 − the strongest similarity seen.
    pub confidence: f64,
    /// The evidence, one sentence each, deciding one first.
    pub evidence: Vec<String>,
}

/// Decides from the evidence layers.
pub fn decide(
    arch: &ArchReport,
    graph: &GraphReport,
    tokens: &TokenizerReport,
    weights: Option<&WeightsReport>,
    invariants: Option<&InvariantReport>,
) -> Decision {
    let mut evidence = Vec::new();
    let decision = |verdict: Verdict, confidence: f64, evidence: Vec<String>| Decision {
        verdict,
        label: verdict.label(),
        confidence: confidence.clamp(0.0, 1.0),
        evidence,
    };
    let complete_match =
        graph.only_a.is_empty() && graph.only_b.is_empty() && graph.shape_mismatches == 0;
    if let Some(w) = weights {
        if complete_match
            && graph.renames.is_empty()
            && tokens.identical
            && w.same_bytes == w.tensors.len()
            && !w.tensors.is_empty()
        {
            evidence.push(format!(
                "all {} tensors have identical bytes, names and tokenizer",
                w.tensors.len()
            ));
            return decision(Verdict::Identical, 1.0, evidence);
        }
        if complete_match
            && w.compared_fraction >= 0.999
            && w.within_quantization_fraction >= SAME_WEIGHTS_SHARE
        {
            evidence.push(format!(
                "{:.2}% of the weights differ by no more than their storage formats explain \
                 ({} of {} tensors have identical values; weight cosine {:.4})",
                100.0 * w.within_quantization_fraction,
                w.same_values,
                w.tensors.len(),
                w.mean_cosine
            ));
            return decision(
                Verdict::SameWeights,
                w.within_quantization_fraction,
                evidence,
            );
        }
    }
    let direct = weights
        .filter(|w| w.compared_fraction >= MIN_COMPARED)
        .map(|w| w.mean_cosine);
    let invariant_derived =
        invariants.filter(|r| r.p_value <= SIGNIFICANCE && r.similarity >= DERIVED_INVARIANT);
    if let Some(r) = invariant_derived {
        evidence.push(format!(
            "function-invariant weight products agree layer for layer: similarity {:.3} \
             (random layer pairings {:.3} ± {:.3}, z = {:.1}, p ≤ {:.1e})",
            r.similarity, r.null_mean, r.null_sd, r.z, r.p_value
        ));
    }
    if let Some(c) = direct.filter(|&c| c >= DERIVED_COSINE) {
        evidence.push(format!(
            "matched weights are directly similar (size-weighted cosine {c:.3})"
        ));
    }
    if !graph.renames.is_empty() {
        evidence.push(format!(
            "{} tensor roles were renamed ({})",
            graph.renames.iter().map(|r| r.count).sum::<usize>(),
            graph
                .renames
                .iter()
                .map(|r| format!("{} → {}", r.from, r.to))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(w) = weights.filter(|w| w.within_quantization_fraction < SAME_WEIGHTS_SHARE) {
        if direct.is_some_and(|c| c >= DERIVED_COSINE) {
            evidence.push(format!(
                "but only {:.1}% of the weights are within quantization noise of A's: the \
                 values were changed",
                100.0 * w.within_quantization_fraction
            ));
        }
    }
    if invariant_derived.is_some() || direct.is_some_and(|c| c >= DERIVED_COSINE) {
        let confidence = match invariant_derived {
            Some(r) => 1.0 - r.p_value,
            None => direct.unwrap_or(0.0),
        };
        return decision(Verdict::Derived, confidence, evidence);
    }
    let strongest = invariants
        .map(|r| r.similarity)
        .into_iter()
        .chain(direct)
        .fold(0.0f64, f64::max);
    if let Some(r) = invariants {
        if r.p_value <= SIGNIFICANCE {
            evidence.push(format!(
                "function-invariant weight products correlate only weakly: similarity {:.3} \
                 (derived copies score above {DERIVED_INVARIANT}; independently trained \
                 models share a small depth-wise correlation: random layer pairings {:.3} ± \
                 {:.3}, p = {:.1e})",
                r.similarity, r.null_mean, r.null_sd, r.p_value
            ));
        } else {
            evidence.push(format!(
                "function-invariant weight products do not agree beyond chance: similarity \
                 {:.3} vs random layer pairings {:.3} ± {:.3} (p = {:.3})",
                r.similarity, r.null_mean, r.null_sd, r.p_value
            ));
        }
    }
    if let Some(c) = direct {
        evidence.push(format!("matched weights are not similar (cosine {c:.3})"));
    }
    if arch.same_architecture {
        evidence.insert(0, format!("architecture: {}", arch.summary));
        decision(Verdict::SameArchitecture, 1.0 - strongest, evidence)
    } else {
        evidence.insert(0, format!("architecture: {}", arch.summary));
        decision(Verdict::Unrelated, 1.0 - strongest, evidence)
    }
}
