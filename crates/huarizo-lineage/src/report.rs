//! The report: every evidence layer and the verdict, printed as text or serialized as JSON.

use crate::architecture::{ArchReport, FieldStatus};
use crate::behaviour::BehaviourReport;
use crate::checkpoint::Checkpoint;
use crate::graph::GraphReport;
use crate::invariants::InvariantReport;
use crate::tokens::TokenizerReport;
use crate::verdict::Decision;
use crate::weights::WeightsReport;
use serde::Serialize;
use std::fmt::Write;

/// What a model is, in one line.
#[derive(Clone, Debug, Serialize)]
pub struct ModelSummary {
    /// Path of the file.
    pub path: String,
    /// File name.
    pub name: String,
    /// `general.name`, when present.
    pub model_name: Option<String>,
    /// `general.architecture`.
    pub architecture: String,
    /// Number of weights.
    pub params: u64,
    /// Bytes of tensor data.
    pub bytes: u64,
    /// Storage types by share of weights.
    pub quantization: String,
}

impl ModelSummary {
    /// Summarizes `c`.
    pub fn of(c: &Checkpoint) -> ModelSummary {
        ModelSummary {
            path: c.path.display().to_string(),
            name: c.name(),
            model_name: c.string("general.name"),
            architecture: c.architecture(),
            params: c.n_params(),
            bytes: c.n_bytes(),
            quantization: c.quantization(),
        }
    }

    fn line(&self) -> String {
        format!(
            "{} ({}, {:.0}M weights, {:.0} MB, {})",
            self.name,
            self.architecture,
            self.params as f64 / 1e6,
            self.bytes as f64 / 1e6,
            self.quantization
        )
    }
}

/// Everything `huarizo lineage A B` found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Model A (the presumed base).
    pub a: ModelSummary,
    /// Model B.
    pub b: ModelSummary,
    /// The verdict.
    pub verdict: Decision,
    /// Layer 1.
    pub architecture: ArchReport,
    /// Layer 2.
    pub graph: GraphReport,
    /// Layer 3.
    pub tokenizer: TokenizerReport,
    /// Layers 4 and 5 (direct), when any tensor pair has equal shapes.
    pub weights: Option<WeightsReport>,
    /// Layer 5 (function-invariant).
    pub invariants: Option<InvariantReport>,
    /// Why the invariants are missing, if they are.
    pub invariants_note: Option<String>,
    /// Layer 6.
    pub behaviour: Option<BehaviourReport>,
    /// Why the behaviour probe is missing, if it is.
    pub behaviour_note: Option<String>,
    /// Wall time of the comparison.
    pub seconds: f64,
    /// Wall time of each phase.
    pub timings: Vec<(String, f64)>,
}

impl Report {
    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "A: {}", self.a.line());
        let _ = writeln!(s, "B: {}", self.b.line());
        let _ = writeln!(
            s,
            "\nVerdict: {} (confidence {:.4})",
            self.verdict.label, self.verdict.confidence
        );
        for e in &self.verdict.evidence {
            let _ = writeln!(s, "  - {e}");
        }
        let _ = writeln!(s, "\n1. Architecture: {}", self.architecture.summary);
        for f in &self.architecture.fields {
            let mark = match f.status {
                FieldStatus::Equal => "=",
                FieldStatus::Compatible => "~",
                FieldStatus::Different => "≠",
            };
            if f.status == FieldStatus::Equal {
                let _ = writeln!(s, "   {mark} {:<18} {}", f.field, f.a);
            } else {
                let _ = writeln!(s, "   {mark} {:<18} {} vs {}", f.field, f.a, f.b);
            }
        }
        let g = &self.graph;
        let _ = writeln!(
            s,
            "\n2. Tensor graph: {} matched, {} only in A, {} only in B, {} with different shapes",
            g.matches.len(),
            g.only_a.len(),
            g.only_b.len(),
            g.shape_mismatches
        );
        for r in &g.renames {
            let _ = writeln!(s, "   renamed: {} → {} ({}×)", r.from, r.to, r.count);
        }
        let t = &self.tokenizer;
        let _ = writeln!(
            s,
            "\n3. Tokenizer: {} ({}) vs {} ({}); vocabulary Jaccard {:.3}{}; shared tokens {} \
             with the same id: {:.1}%{}",
            t.kind_a,
            t.vocab_a,
            t.kind_b,
            t.vocab_b,
            t.vocab_jaccard,
            t.merges_jaccard
                .map(|m| format!(", merges Jaccard {m:.3}"))
                .unwrap_or_default(),
            t.shared_tokens,
            100.0 * t.same_id_fraction,
            if t.identical { " (identical)" } else { "" }
        );
        for sp in &t.specials {
            let show = |x: &Option<String>| x.clone().unwrap_or_else(|| "-".into());
            let _ = writeln!(s, "   {:<8} {} | {}", sp.kind, show(&sp.a), show(&sp.b));
        }
        match &self.weights {
            Some(w) => {
                let _ = writeln!(
                    s,
                    "\n4. Exact reuse: {} of {} compared tensors have identical values ({} identical bytes)",
                    w.same_values,
                    w.tensors.len(),
                    w.same_bytes
                );
                let _ = writeln!(
                    s,
                    "\n5. Weight similarity: {:.1}% of A's weights compared; size-weighted cosine {:.4}; \
                     {:.1}% within quantization noise",
                    100.0 * w.compared_fraction,
                    w.mean_cosine,
                    100.0 * w.within_quantization_fraction
                );
                if let Some(r) = &w.shared_embedding_rows {
                    let _ = writeln!(
                        s,
                        "   embeddings on {} shared-token rows: mean cosine {:.4}",
                        r.rows, r.mean_cosine
                    );
                }
            }
            None => {
                let _ = writeln!(
                    s,
                    "\n4–5. No tensor pair has equal shapes: no direct comparison"
                );
            }
        }
        match (&self.invariants, &self.invariants_note) {
            (Some(r), _) => {
                let _ = writeln!(
                    s,
                    "   invariants on {} probe words: similarity {:.4}, random layer pairings \
                     {:.4} ± {:.4}, z = {:.1}, p = {:.1e}",
                    r.words, r.similarity, r.null_mean, r.null_sd, r.z, r.p_value
                );
                let (mu, sd) = crate::invariants::UNRELATED_NULL;
                let _ = writeln!(
                    s,
                    "   against unrelated real models ({mu:.3} ± {sd:.3}): z = {:.1}, \
                     p = {:.1e}",
                    r.z_unrelated, r.p_unrelated
                );
                for (term, v) in &r.per_term {
                    let _ = writeln!(s, "     {term:<16} {v:.4}");
                }
            }
            (None, Some(n)) => {
                let _ = writeln!(s, "   invariants: not computed ({n})");
            }
            (None, None) => {}
        }
        match (&self.behaviour, &self.behaviour_note) {
            (Some(b), _) => {
                let _ = writeln!(
                    s,
                    "\n6. Behaviour on {} positions: mean KL {:.5} nats (max {:.4}), top-1 agreement {:.1}%",
                    b.positions,
                    b.mean_kl,
                    b.max_kl,
                    100.0 * b.top1_agreement
                );
            }
            (None, Some(n)) => {
                let _ = writeln!(s, "\n6. Behaviour: not compared ({n})");
            }
            (None, None) => {}
        }
        let phases: Vec<String> = self
            .timings
            .iter()
            .map(|(what, t)| format!("{what} {t:.1}"))
            .collect();
        let _ = writeln!(s, "\n({:.1} s: {})", self.seconds, phases.join(", "));
        s
    }
}
