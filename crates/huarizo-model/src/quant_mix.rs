//! llama.cpp's file types and quantization mixes: which ggml type each tensor of a model
//! gets when it is quantized to, say, `Q4_K_M`.
//!
//! The rules are those of llama.cpp's `llama_tensor_get_type` (`src/llama-quant.cpp`) for
//! the file types huarizo writes, restricted to dense models (no experts):
//!
//! * the output matrix, and the token embedding when it is tied to the output, get Q6_K
//!   (Q8_0 when its rows are not whole 256-blocks; kept for a Q8_0 file);
//! * `attn_v` gets more bits in Q2_K (Q3_K, or Q4_K with ≥ 4 query heads per KV head),
//!   Q3_K_M (Q5_K in the first two layers, then Q4_K), Q3_K_L (Q5_K), Q4_K_S (Q5_K in the
//!   first four), and Q4_K_M/Q5_K_M (Q6_K in the layers `use_more_bits` picks: the first
//!   and last eighth and every third in between);
//! * `ffn_down` likewise (Q2_K → Q3_K, Q3_K_M → Q4_K with Q5_K in the first sixteenth,
//!   Q3_K_L → Q5_K, Q4_K_S → Q5_K in the first eighth, Q4_K_M/Q5_K_M → Q6_K by
//!   `use_more_bits`; with an importance matrix, Q4_0/Q5_0 → Q4_1/Q5_1 in the first
//!   eighth);
//! * `attn_output` in Q2_K (Q3_K), Q3_K_M (Q4_K) and Q3_K_L (Q5_K);
//! * a 70B LLaMA's `attn_v` gets Q5_K instead of Q3_K/Q4_K;
//! * then any type whose block does not divide a row falls back: Q2_K/Q3_K → Q4_0,
//!   Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and what still does not fit → F16.
//!
//! Layer counters run over the tensors in llama.cpp's order (by layer, then by name).

use huarizo_formats::{GgmlType, GgufFile, TensorInfo, Value};

/// A llama.cpp file type (`llama_ftype`): the type most weights get, and the mix.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// Every tensor F32.
    F32,
    /// Weight matrices F16.
    F16,
    /// Weight matrices BF16.
    BF16,
    /// Q4_0 (output Q6_K).
    Q4_0,
    /// Q4_1 (output Q6_K).
    Q4_1,
    /// Q5_0 (output Q6_K).
    Q5_0,
    /// Q5_1 (output Q6_K).
    Q5_1,
    /// Q8_0 throughout.
    Q8_0,
    /// Q2_K mix.
    Q2_K,
    /// Q2_K_S mix (llama.cpp asks an importance matrix for it).
    Q2_K_S,
    /// Q3_K_S: Q3_K almost throughout.
    Q3_K_S,
    /// Q3_K_M mix.
    Q3_K_M,
    /// Q3_K_L mix.
    Q3_K_L,
    /// Q4_K_S mix.
    Q4_K_S,
    /// Q4_K_M mix.
    Q4_K_M,
    /// Q5_K_S: Q5_K almost throughout.
    Q5_K_S,
    /// Q5_K_M mix.
    Q5_K_M,
    /// Q6_K throughout.
    Q6_K,
}

impl FileType {
    /// Every file type, in llama-quantize's listing order.
    pub const ALL: [FileType; 18] = [
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q2_K,
        FileType::Q2_K_S,
        FileType::Q3_K_S,
        FileType::Q3_K_M,
        FileType::Q3_K_L,
        FileType::Q4_K_S,
        FileType::Q4_K_M,
        FileType::Q5_K_S,
        FileType::Q5_K_M,
        FileType::Q6_K,
        FileType::Q8_0,
        FileType::F16,
        FileType::BF16,
        FileType::F32,
    ];

    /// llama-quantize's name (`Q4_K_M`).
    pub fn name(self) -> &'static str {
        use FileType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            BF16 => "BF16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q2_K => "Q2_K",
            Q2_K_S => "Q2_K_S",
            Q3_K_S => "Q3_K_S",
            Q3_K_M => "Q3_K_M",
            Q3_K_L => "Q3_K_L",
            Q4_K_S => "Q4_K_S",
            Q4_K_M => "Q4_K_M",
            Q5_K_S => "Q5_K_S",
            Q5_K_M => "Q5_K_M",
            Q6_K => "Q6_K",
        }
    }

    /// The `llama_ftype` number written as `general.file_type`.
    pub fn id(self) -> u32 {
        use FileType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q8_0 => 7,
            Q5_0 => 8,
            Q5_1 => 9,
            Q2_K => 10,
            Q3_K_S => 11,
            Q3_K_M => 12,
            Q3_K_L => 13,
            Q4_K_S => 14,
            Q4_K_M => 15,
            Q5_K_S => 16,
            Q5_K_M => 17,
            Q6_K => 18,
            Q2_K_S => 21,
            BF16 => 32,
        }
    }

    /// The type most weight matrices get (llama.cpp's `default_type`).
    pub fn base(self) -> GgmlType {
        use FileType::*;
        match self {
            F32 => GgmlType::F32,
            F16 => GgmlType::F16,
            BF16 => GgmlType::BF16,
            Q4_0 => GgmlType::Q4_0,
            Q4_1 => GgmlType::Q4_1,
            Q5_0 => GgmlType::Q5_0,
            Q5_1 => GgmlType::Q5_1,
            Q8_0 => GgmlType::Q8_0,
            Q2_K | Q2_K_S => GgmlType::Q2_K,
            Q3_K_S | Q3_K_M | Q3_K_L => GgmlType::Q3_K,
            Q4_K_S | Q4_K_M => GgmlType::Q4_K,
            Q5_K_S | Q5_K_M => GgmlType::Q5_K,
            Q6_K => GgmlType::Q6_K,
        }
    }

    /// The file type whose weights are all of type `t` in a pure file (K types as their
    /// `_S` variant, as llama.cpp labels them), if huarizo writes that type.
    pub fn for_type(t: GgmlType) -> Option<FileType> {
        use FileType::*;
        Some(match t {
            GgmlType::F32 => F32,
            GgmlType::F16 => F16,
            GgmlType::BF16 => BF16,
            GgmlType::Q4_0 => Q4_0,
            GgmlType::Q4_1 => Q4_1,
            GgmlType::Q5_0 => Q5_0,
            GgmlType::Q5_1 => Q5_1,
            GgmlType::Q8_0 => Q8_0,
            GgmlType::Q2_K => Q2_K,
            GgmlType::Q3_K => Q3_K_S,
            GgmlType::Q4_K => Q4_K_S,
            GgmlType::Q5_K => Q5_K_S,
            GgmlType::Q6_K => Q6_K,
            GgmlType::Q8_1 | GgmlType::Q8_K => return None,
        })
    }

    /// The file type named `name`, case-insensitively, with llama-quantize's aliases
    /// (`Q3_K` = `Q3_K_M`, `Q4_K` = `Q4_K_M`, `Q5_K` = `Q5_K_M`), or an error listing the
    /// names.
    pub fn parse(name: &str) -> Result<FileType, String> {
        let upper = name.to_ascii_uppercase();
        let upper = match upper.as_str() {
            "Q3_K" => "Q3_K_M",
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            other => other,
        };
        FileType::ALL
            .into_iter()
            .find(|f| f.name() == upper)
            .ok_or_else(|| {
                format!(
                    "unknown quantization type `{name}`; supported: {} (and the aliases \
                     Q3_K, Q4_K, Q5_K for the _M mixes)",
                    FileType::ALL.map(FileType::name).join(", ")
                )
            })
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a tensor is, for the mix rules (llama.cpp's `tensor_category`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnV,
    AttnOutput,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    if name == "output.weight" {
        Category::Output
    } else if name == "token_embd.weight" {
        Category::TokenEmbd
    } else if ["attn_qkv.weight", "attn_kv_b.weight", "attn_v.weight"]
        .iter()
        .any(|s| name.contains(s))
    {
        Category::AttnV
    } else if name.contains("attn_output.weight") {
        Category::AttnOutput
    } else if name.contains("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// Whether llama.cpp quantizes tensor `t`: a `…weight` of two or more dimensions (trailing
/// 1s not counted), not a norm.
pub fn is_weight_matrix(t: &TensorInfo) -> bool {
    let n_dims = t.shape.len() - t.shape.iter().rev().take_while(|&&d| d == 1).count();
    t.name.ends_with("weight") && !t.name.contains("_norm.weight") && n_dims >= 2
}

/// The type a row of `row` values gets instead of `target` when `target`'s blocks do not
/// divide it (llama.cpp's `tensor_type_fallback`).
pub fn fallback_for_row(target: GgmlType, row: u64) -> GgmlType {
    let fits = |t: GgmlType| row.is_multiple_of(t.block_size() as u64);
    if fits(target) {
        return target;
    }
    let next = match target {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    };
    if fits(next) {
        next
    } else {
        GgmlType::F16
    }
}

/// Whether `t` is a block-quantized type (not F32/F16/BF16).
fn is_quantized(t: GgmlType) -> bool {
    !matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third
/// layer in between.
fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The figures of a model the mix rules read from its metadata.
struct Hparams {
    n_layer: i64,
    n_gqa: i64,
    is_70b: bool,
}

fn hparams(file: &GgufFile) -> Hparams {
    let arch = file
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let int = |key: &str| -> i64 {
        match file.get(&format!("{arch}.{key}")) {
            Some(Value::Array(a)) => a.first().and_then(Value::as_i64).unwrap_or(0),
            Some(v) => v.as_i64().unwrap_or(0),
            None => 0,
        }
    };
    let n_layer = int("block_count");
    let n_head = int("attention.head_count");
    let n_head_kv = match int("attention.head_count_kv") {
        0 => n_head,
        n => n,
    };
    Hparams {
        n_layer,
        n_gqa: if n_head_kv > 0 { n_head / n_head_kv } else { 1 },
        is_70b: arch == "llama" && n_layer == 80 && n_head != n_head_kv,
    }
}

/// llama.cpp's tensor order: by layer (`blk.N.`; others first), then by name.
fn llama_cpp_order(tensors: &[TensorInfo]) -> Vec<usize> {
    let layer = |name: &str| -> i64 {
        name.strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(-1)
    };
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&tensors[a].name, &tensors[b].name);
        layer(a).cmp(&layer(b)).then_with(|| a.cmp(b))
    });
    order
}

/// The type one tensor gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The type it is written in.
    pub ty: GgmlType,
    /// Whether llama.cpp quantizes it at all (a weight matrix).
    pub quantized: bool,
    /// The type the mix chose when `ty` is its row fallback.
    pub fallback_from: Option<GgmlType>,
}

/// The type each tensor of `file` gets in a `ftype` file, in file order: the tensor's own
/// type for tensors llama.cpp does not quantize; otherwise the base type with (unless
/// `pure`) the mix's choices, then the row fallbacks. `has_importance` switches on the
/// rules that apply only with an importance matrix.
pub fn plan(file: &GgufFile, ftype: FileType, pure: bool, has_importance: bool) -> Vec<Planned> {
    let tensors = file.tensors();
    let hp = hparams(file);
    let tied = !tensors.iter().any(|t| t.name == "output.weight");
    let n_attn_v = tensors
        .iter()
        .filter(|t| category(&t.name) == Category::AttnV)
        .count() as i64;
    let (mut i_attn_v, mut i_ffn_down) = (0i64, 0i64);
    let mut out: Vec<Planned> = tensors
        .iter()
        .map(|t| Planned {
            ty: t.ggml_type,
            quantized: false,
            fallback_from: None,
        })
        .collect();
    let base = ftype.base();
    for i in llama_cpp_order(tensors) {
        let t = &tensors[i];
        if !is_weight_matrix(t) {
            continue;
        }
        let row = t.shape[0];
        if !is_quantized(base) {
            out[i] = Planned {
                ty: base,
                quantized: true,
                fallback_from: None,
            };
            continue;
        }
        let chosen = if pure {
            base
        } else {
            mix_type(
                &hp,
                ftype,
                base,
                category(&t.name),
                row,
                tied,
                (&mut i_attn_v, n_attn_v),
                &mut i_ffn_down,
                has_importance,
            )
        };
        let ty = fallback_for_row(chosen, row);
        out[i] = Planned {
            ty,
            quantized: true,
            fallback_from: (ty != chosen).then_some(chosen),
        };
    }
    out
}

/// llama.cpp's `llama_tensor_get_type_impl` for one tensor, advancing the layer counters.
#[allow(clippy::too_many_arguments)]
fn mix_type(
    hp: &Hparams,
    ftype: FileType,
    base: GgmlType,
    cat: Category,
    row: u64,
    tied: bool,
    (i_attn_v, n_attn_v): (&mut i64, i64),
    i_ffn_down: &mut i64,
    has_importance: bool,
) -> GgmlType {
    use FileType as F;
    use GgmlType as G;
    let mut ty = base;
    match cat {
        Category::Output | Category::TokenEmbd if cat == Category::Output || tied => {
            if !row.is_multiple_of(base.block_size() as u64) {
                ty = G::Q8_0;
            } else if ty != G::Q8_0 {
                ty = G::Q6_K;
            }
        }
        Category::AttnV => {
            let i = *i_attn_v;
            match ftype {
                F::Q2_K => ty = if hp.n_gqa >= 4 { G::Q4_K } else { G::Q3_K },
                F::Q2_K_S if hp.n_gqa >= 4 => ty = G::Q4_K,
                F::Q3_K_M => ty = if i < 2 { G::Q5_K } else { G::Q4_K },
                F::Q3_K_L => ty = G::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n_attn_v) => ty = G::Q6_K,
                F::Q4_K_S if i < 4 => ty = G::Q5_K,
                _ => {}
            }
            if hp.is_70b && matches!(ty, G::Q3_K | G::Q4_K) {
                ty = G::Q5_K;
            }
            *i_attn_v += 1;
        }
        Category::FfnDown => {
            let (i, n) = (*i_ffn_down, hp.n_layer);
            match ftype {
                F::Q2_K => ty = G::Q3_K,
                F::Q2_K_S if i < n / 8 => ty = G::Q4_K,
                F::Q3_K_M => ty = if i < n / 16 { G::Q5_K } else { G::Q4_K },
                F::Q3_K_L => ty = G::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => ty = G::Q6_K,
                F::Q4_K_S if i < n / 8 => ty = G::Q5_K,
                F::Q4_0 if has_importance && i < n / 8 => ty = G::Q4_1,
                F::Q5_0 if has_importance && i < n / 8 => ty = G::Q5_1,
                _ => {}
            }
            *i_ffn_down += 1;
        }
        Category::AttnOutput => match ftype {
            F::Q2_K => ty = G::Q3_K,
            F::Q3_K_M => ty = G::Q4_K,
            F::Q3_K_L => ty = G::Q5_K,
            _ => {}
        },
        _ => {}
    }
    ty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_llama_quantize_aliases() {
        assert_eq!(FileType::parse("q4_k_m"), Ok(FileType::Q4_K_M));
        assert_eq!(FileType::parse("Q4_K"), Ok(FileType::Q4_K_M));
        assert_eq!(FileType::parse("q5_k"), Ok(FileType::Q5_K_M));
        assert_eq!(FileType::parse("Q3_K"), Ok(FileType::Q3_K_M));
        assert_eq!(FileType::parse("bf16"), Ok(FileType::BF16));
        let e = FileType::parse("q9").unwrap_err();
        assert!(e.contains("`q9`") && e.contains("Q4_K_M"), "{e}");
        for f in FileType::ALL {
            assert_eq!(FileType::parse(f.name()), Ok(f));
        }
    }

    #[test]
    fn fallbacks_follow_llama_cpp() {
        use GgmlType::*;
        assert_eq!(fallback_for_row(Q8_0, 576), Q8_0);
        assert_eq!(fallback_for_row(Q8_0, 100), F16);
        assert_eq!(fallback_for_row(Q4_K, 576), Q5_0);
        assert_eq!(fallback_for_row(Q5_K, 576), Q5_1);
        assert_eq!(fallback_for_row(Q6_K, 576), Q8_0);
        assert_eq!(fallback_for_row(Q3_K, 576), Q4_0);
        assert_eq!(fallback_for_row(Q4_K, 1536), Q4_K);
        assert_eq!(fallback_for_row(Q4_K, 100), F16);
    }

    #[test]
    fn more_bits_layers() {
        let picked: Vec<i64> = (0..24).filter(|&i| use_more_bits(i, 24)).collect();
        assert_eq!(picked, [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]);
    }

    #[test]
    fn weight_matrices_are_two_dimensional_weights() {
        let t = |name: &str, shape: &[u64]| TensorInfo {
            name: name.into(),
            shape: shape.to_vec(),
            ggml_type: GgmlType::F32,
            offset: 0,
            n_bytes: 0,
        };
        assert!(is_weight_matrix(&t("blk.0.attn_q.weight", &[64, 64])));
        assert!(!is_weight_matrix(&t("blk.0.attn_norm.weight", &[64])));
        assert!(!is_weight_matrix(&t("blk.0.attn_q.bias", &[64, 2])));
        assert!(!is_weight_matrix(&t("x.weight", &[64, 1, 1])));
        assert!(is_weight_matrix(&t("x.weight", &[64, 1, 2])));
    }
}
