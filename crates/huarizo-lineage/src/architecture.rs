//! Evidence layer 1: architecture and configuration, field by field.

use crate::checkpoint::Checkpoint;
use serde::Serialize;

/// How one field of the two configurations compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldStatus {
    /// Equal values.
    Equal,
    /// Different values that do not change the shape of any weight (context length,
    /// RoPE base, epsilon): a model can be continued-trained across such a change.
    Compatible,
    /// Different values that change the shape or the computation.
    Different,
}

/// One row of the comparison.
#[derive(Clone, Debug, Serialize)]
pub struct ArchField {
    /// What is compared.
    pub field: &'static str,
    /// Value in model A.
    pub a: String,
    /// Value in model B.
    pub b: String,
    /// How they compare.
    pub status: FieldStatus,
}

/// The architecture layer of the report.
#[derive(Clone, Debug, Serialize)]
pub struct ArchReport {
    /// Field by field.
    pub fields: Vec<ArchField>,
    /// Every weight has the same shape in both (same family, widths, depth and vocabulary).
    pub same_shapes: bool,
    /// Same family and same computation apart from compatible fields.
    pub same_architecture: bool,
    /// One sentence for the reader.
    pub summary: String,
}

/// The fields read from each model, as strings, with whether they fix weight shapes.
fn describe(c: &Checkpoint) -> Vec<(&'static str, String, bool)> {
    let arch = c.architecture();
    let Some(cfg) = &c.config else {
        return vec![("family", arch, true)];
    };
    let spec = &cfg.spec;
    let tied = c.file.tensor("output.weight").is_none();
    let qkv_bias = c.file.tensor("blk.0.attn_q.bias").is_some()
        || c.file
            .tensors()
            .iter()
            .any(|t| t.name.ends_with("q_proj.bias"));
    vec![
        ("family", arch, true),
        ("embedding width", cfg.n_embd.to_string(), true),
        ("layers", cfg.n_layer.to_string(), true),
        ("attention heads", cfg.n_head.to_string(), true),
        ("key/value heads", cfg.n_head_kv.to_string(), true),
        ("head width", cfg.head_dim.to_string(), true),
        ("MLP width", cfg.n_ff.to_string(), true),
        ("vocabulary", cfg.n_vocab.to_string(), true),
        ("activation", format!("{:?}", spec.activation), true),
        ("q/k/v biases", qkv_bias.to_string(), true),
        ("q/k norms", spec.qk_norm.to_string(), true),
        ("post norms", spec.post_norms.to_string(), true),
        ("tied embeddings", tied.to_string(), true),
        (
            "RoPE style",
            if spec.rope_neox { "neox" } else { "normal" }.into(),
            false,
        ),
        ("RoPE base", format!("{}", cfg.rope_base), false),
        ("RoPE scaling", format!("{:?}", cfg.rope_scaling), false),
        (
            "sliding window",
            cfg.sliding_window
                .map(|w| w.to_string())
                .unwrap_or_else(|| "none".into()),
            false,
        ),
        ("trained context", cfg.n_ctx_train.to_string(), false),
        ("RMS-norm epsilon", format!("{:e}", cfg.rms_eps), false),
    ]
}

/// Compares the configurations of `a` and `b`.
pub fn compare(a: &Checkpoint, b: &Checkpoint) -> ArchReport {
    let da = describe(a);
    let db = describe(b);
    let mut fields = Vec::new();
    for (field, va, shape) in &da {
        let vb = db
            .iter()
            .find(|(f, _, _)| f == field)
            .map(|(_, v, _)| v.clone())
            .unwrap_or_else(|| "?".into());
        let status = if *va == vb {
            FieldStatus::Equal
        } else if *shape {
            FieldStatus::Different
        } else {
            FieldStatus::Compatible
        };
        fields.push(ArchField {
            field,
            a: va.clone(),
            b: vb,
            status,
        });
    }
    let both_known = a.config.is_some() && b.config.is_some();
    let same_shapes = both_known
        && fields
            .iter()
            .filter(|f| da.iter().any(|(n, _, s)| *n == f.field && *s))
            .all(|f| f.status == FieldStatus::Equal);
    let same_architecture = same_shapes;
    let shared: Vec<&str> = fields
        .iter()
        .filter(|f| f.status == FieldStatus::Equal)
        .map(|f| f.field)
        .collect();
    let differing: Vec<&str> = fields
        .iter()
        .filter(|f| f.status != FieldStatus::Equal)
        .map(|f| f.field)
        .collect();
    let summary = if !both_known {
        let why = a
            .config_error
            .as_deref()
            .or(b.config_error.as_deref())
            .unwrap_or("unknown");
        format!("configuration not comparable ({why})")
    } else if same_shapes && differing.is_empty() {
        "same architecture and configuration".to_string()
    } else if same_shapes {
        format!(
            "same architecture; differs only in {}",
            differing.join(", ")
        )
    } else {
        format!(
            "different architectures; shared: {}; different: {}",
            if shared.is_empty() {
                "nothing".to_string()
            } else {
                shared.join(", ")
            },
            differing.join(", ")
        )
    };
    ArchReport {
        fields,
        same_shapes,
        same_architecture,
        summary,
    }
}
