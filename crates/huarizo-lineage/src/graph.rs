//! Evidence layer 2: the tensor graph. Tensors are matched by role, shape and order, not
//! by name, so that a copy whose tensors were renamed (Yi's `ln1`/`ln2` for LLaMA's
//! `input_layernorm`/`post_attention_layernorm`) is matched all the same and the renames
//! are reported.

use huarizo_engine::GgufFile;
use serde::Serialize;
use std::collections::BTreeMap;

/// The tensor names huarizo's decoder knows (GGUF naming; `*` is the layer number).
const KNOWN_STEMS: &[&str] = &[
    "token_embd.weight",
    "output_norm.weight",
    "output.weight",
    "rope_freqs.weight",
    "blk.*.attn_norm.weight",
    "blk.*.attn_q.weight",
    "blk.*.attn_k.weight",
    "blk.*.attn_v.weight",
    "blk.*.attn_q.bias",
    "blk.*.attn_k.bias",
    "blk.*.attn_v.bias",
    "blk.*.attn_output.weight",
    "blk.*.attn_q_norm.weight",
    "blk.*.attn_k_norm.weight",
    "blk.*.post_attention_norm.weight",
    "blk.*.ffn_norm.weight",
    "blk.*.ffn_gate.weight",
    "blk.*.ffn_up.weight",
    "blk.*.ffn_down.weight",
    "blk.*.post_ffw_norm.weight",
];

/// A tensor of A paired with a tensor of B.
#[derive(Clone, Debug, Serialize)]
pub struct TensorMatch {
    /// The role, as a GGUF name with `*` for the layer (`blk.*.attn_q.weight`).
    pub role: String,
    /// The layer, for per-layer tensors.
    pub layer: Option<usize>,
    /// Name in A.
    pub a: String,
    /// Name in B.
    pub b: String,
    /// Shape in A (ggml order).
    pub shape_a: Vec<u64>,
    /// Shape in B.
    pub shape_b: Vec<u64>,
}

/// Names of B that stand for a differently named role of A.
#[derive(Clone, Debug, Serialize)]
pub struct Rename {
    /// The name pattern in A.
    pub from: String,
    /// The name pattern in B.
    pub to: String,
    /// How many tensors (layers) are renamed so.
    pub count: usize,
}

/// The tensor-graph layer of the report.
#[derive(Clone, Debug, Serialize)]
pub struct GraphReport {
    /// Matched pairs, in A's order.
    pub matches: Vec<TensorMatch>,
    /// Renamed roles.
    pub renames: Vec<Rename>,
    /// Tensors of A with no counterpart.
    pub only_a: Vec<String>,
    /// Tensors of B with no counterpart.
    pub only_b: Vec<String>,
    /// Matched pairs whose shapes differ.
    pub shape_mismatches: usize,
}

/// Splits a tensor name into its layer number (the first all-digit component) and the
/// name with that component replaced by `*`.
pub fn split_name(name: &str) -> (Option<usize>, String) {
    let mut layer = None;
    let parts: Vec<String> = name
        .split('.')
        .map(|p| {
            if layer.is_none() && !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) {
                layer = p.parse().ok();
                "*".to_string()
            } else {
                p.to_string()
            }
        })
        .collect();
    (layer, parts.join("."))
}

struct Entry<'a> {
    name: &'a str,
    stem: String,
    shape: &'a [u64],
}

fn group(file: &GgufFile) -> BTreeMap<Option<usize>, Vec<Entry<'_>>> {
    let mut groups: BTreeMap<Option<usize>, Vec<Entry>> = BTreeMap::new();
    for t in file.tensors() {
        let (layer, stem) = split_name(&t.name);
        groups.entry(layer).or_default().push(Entry {
            name: &t.name,
            stem,
            shape: &t.shape,
        });
    }
    groups
}

/// Matches the tensors of `a` and `b`: within each layer (and among the global tensors),
/// first by equal name, then the rest by equal shape in file order.
pub fn match_tensors(a: &GgufFile, b: &GgufFile) -> GraphReport {
    let ga = group(a);
    let mut gb = group(b);
    let mut matches = Vec::new();
    let mut only_a = Vec::new();
    for (layer, ea) in &ga {
        let eb = gb.remove(layer).unwrap_or_default();
        let mut used = vec![false; eb.len()];
        let mut pair: Vec<Option<usize>> = vec![None; ea.len()];
        for (i, x) in ea.iter().enumerate() {
            if let Some(j) = eb.iter().position(|y| y.stem == x.stem) {
                if !used[j] {
                    used[j] = true;
                    pair[i] = Some(j);
                }
            }
        }
        for (i, x) in ea.iter().enumerate() {
            if pair[i].is_some() {
                continue;
            }
            if let Some(j) = (0..eb.len()).find(|&j| !used[j] && eb[j].shape == x.shape) {
                used[j] = true;
                pair[i] = Some(j);
            }
        }
        for (i, x) in ea.iter().enumerate() {
            match pair[i] {
                Some(j) => {
                    let y = &eb[j];
                    let role = if KNOWN_STEMS.contains(&x.stem.as_str())
                        || !KNOWN_STEMS.contains(&y.stem.as_str())
                    {
                        x.stem.clone()
                    } else {
                        y.stem.clone()
                    };
                    matches.push(TensorMatch {
                        role,
                        layer: *layer,
                        a: x.name.to_string(),
                        b: y.name.to_string(),
                        shape_a: x.shape.to_vec(),
                        shape_b: y.shape.to_vec(),
                    });
                }
                None => only_a.push(x.name.to_string()),
            }
        }
        gb.insert(
            *layer,
            eb.into_iter()
                .zip(used)
                .filter(|(_, u)| !u)
                .map(|(e, _)| e)
                .collect(),
        );
    }
    let only_b: Vec<String> = gb.values().flatten().map(|e| e.name.to_string()).collect();
    let mut renames: Vec<Rename> = Vec::new();
    for m in &matches {
        let (_, from) = split_name(&m.a);
        let (_, to) = split_name(&m.b);
        if from == to {
            continue;
        }
        match renames.iter_mut().find(|r| r.from == from && r.to == to) {
            Some(r) => r.count += 1,
            None => renames.push(Rename { from, to, count: 1 }),
        }
    }
    let shape_mismatches = matches.iter().filter(|m| m.shape_a != m.shape_b).count();
    GraphReport {
        matches,
        renames,
        only_a,
        only_b,
        shape_mismatches,
    }
}

impl GraphReport {
    /// The pair playing `role` (`blk.*.attn_q.weight`) in `layer`.
    pub fn find(&self, layer: Option<usize>, role: &str) -> Option<&TensorMatch> {
        self.matches
            .iter()
            .find(|m| m.layer == layer && m.role == role)
    }
}

#[cfg(test)]
mod tests {
    use super::split_name;

    #[test]
    fn layer_numbers_are_found_anywhere_in_the_name() {
        assert_eq!(
            split_name("blk.12.attn_q.weight"),
            (Some(12), "blk.*.attn_q.weight".into())
        );
        assert_eq!(
            split_name("model.layers.3.self_attn.q_proj.weight"),
            (Some(3), "model.layers.*.self_attn.q_proj.weight".into())
        );
        assert_eq!(
            split_name("token_embd.weight"),
            (None, "token_embd.weight".into())
        );
    }
}
