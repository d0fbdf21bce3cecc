//! huarizo-kernels computes on weights exactly as llama.cpp's CPU backend does: the ggml
//! quantized block formats, dequantization, quantization of activations (bit-identical to
//! llama.cpp on x86), dot products of a weight row with an activation row (integer block
//! products, then scales, as `ggml_vec_dot_*`), the decoder's element-wise f32 operations,
//! matrix products and the thread pool that runs them. It must not know about models
//! (tensor names, architectures, hyperparameters) or files; callers hand it byte slices
//! and a [`GgmlType`].
//!
//! Every kernel has a scalar reference in [`reference`](mod@reference). On x86-64 CPUs
//! with AVX2, FMA and F16C the dot products are replaced once, at first use, by the AVX2
//! versions (private module `x86`), which follow llama.cpp's AVX2 code lane for lane. Set
//! `HUARIZO_NO_SIMD=1` to force the scalar kernels. Needs Rust ≥ 1.88 (`as_chunks`, safe
//! intrinsics inside `#[target_feature]` functions).
//!
//! All `unsafe` code of huarizo lives in this crate; each block says why it is sound.

#![deny(missing_docs)]

pub mod attention;
pub mod bandwidth;
pub mod block_sums;
pub mod blocks;
pub mod f32_products;
pub mod gemm;
pub mod ggml_lanes;
pub mod isa;
pub mod matmul;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod ops;
pub mod packed;
pub mod pool;
pub mod reference;
pub mod repacked;
pub mod train_ops;
pub mod weight_quant;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

pub use block_sums::{arithmetic, set_arithmetic, Arithmetic};
use blocks::*;
pub use huarizo_formats::GgmlType;
pub use isa::{ggml_isa, set_ggml_isa, GgmlIsa};

/// Whether `HUARIZO_NO_SIMD` asks for the scalar kernels (read once).
pub(crate) fn simd_disabled() -> bool {
    static DISABLED: OnceLock<bool> = OnceLock::new();
    *DISABLED.get_or_init(|| {
        std::env::var_os("HUARIZO_NO_SIMD").is_some_and(|v| !v.is_empty() && v != "0")
    })
}

/// A dot product kernel: `(weight row, activation row) → Σ w·a`. Both slices hold exactly
/// the same number of values, whole blocks of the weight type and of its
/// [`vec_dot_type`] respectively.
pub type VecDotFn = fn(&[u8], &[u8]) -> f32;

/// A weight row against four activation rows at once, each result bit-identical to the
/// matching [`VecDotFn`].
pub type VecDot4Fn = fn(&[u8], [&[u8]; 4]) -> [f32; 4];

/// One activation row against several weight rows per call: `out[r]` receives the dot
/// product of row r of `w` (rows `w_row` bytes apart; `out.len()` rows) with `a`, bit for
/// bit the [`VecDotFn`]'s.
pub type VecDotRowsFn = fn(&[u8], usize, &[u8], &mut [f32]);

/// The [`VecDotRowsFn`] for weights of type `t`, if this CPU has one (Q4_1, Q5_0, Q8_0).
pub fn dot_rows_kernel(t: GgmlType) -> Option<VecDotRowsFn> {
    #[cfg(target_arch = "x86_64")]
    {
        if simd_disabled() {
            return None;
        }
        x86::dot_rows_kernel(t)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = t;
        None
    }
}

/// A weight tile against four activation rows: `out[r]` receives the four results of row r
/// of `w` (rows `w_row` bytes apart; `out.len()` rows), each bit for bit the order's
/// one-row kernel's.
pub type Tile4Fn = fn(&[u8], usize, [&[u8]; 4], &mut [[f32; 4]]);

/// A weight tile against four activation rows whose block scales were converted to f32
/// once per batch (`scales[i] = [d₀, d₁, d₂, d₃, s₀, s₁, s₂, s₃]` for block i, `s` = 0 for
/// types without it): `out[r]` receives the four results of row r of `w` (rows `w_row`
/// bytes apart; `out.len()` rows), each bit for bit the [`VecDot4Fn`]'s.
pub type ScaledRows4Fn = fn(&[u8], usize, [&[u8]; 4], &[[f32; 8]], &mut [[f32; 4]]);

/// The [`ScaledRows4Fn`] for weights of type `t`, if this CPU has one (Q4_1, Q5_0 and Q8_0
/// with AVX2, using AVX-512 VNNI where present).
pub fn scaled4_rows_kernel(t: GgmlType) -> Option<ScaledRows4Fn> {
    #[cfg(target_arch = "x86_64")]
    {
        if simd_disabled() {
            return None;
        }
        x86::scaled4_rows_kernel(t)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = t;
        None
    }
}

/// The four-row kernel for weights of type `t`, if this CPU has one.
pub fn vec_dot4_kernel(t: GgmlType) -> Option<VecDot4Fn> {
    #[cfg(target_arch = "x86_64")]
    {
        if simd_disabled() {
            return None;
        }
        x86::dot4_kernel(t)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = t;
        None
    }
}

/// The format the activations must be in for a dot product with a row of type `t`
/// (llama.cpp's `vec_dot_type`).
pub fn vec_dot_type(t: GgmlType) -> GgmlType {
    use GgmlType::*;
    match t {
        F32 => F32,
        F16 => F16,
        BF16 => BF16,
        Q4_0 | Q5_0 | Q8_0 => Q8_0,
        Q4_1 | Q5_1 | Q8_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K => Q8_K,
    }
}

/// Bytes of a row of `n` values of type `t`, panicking with the numbers if `n` is not a
/// whole number of blocks.
fn row_len(t: GgmlType, n: usize) -> usize {
    t.row_bytes(n).unwrap_or_else(|| {
        panic!(
            "{n} values are not a whole number of {} blocks of {}",
            t,
            t.block_size()
        )
    })
}

/// Dequantizes one row: `dst.len()` values of type `t` from `src` (which must hold at
/// least that many; extra bytes are ignored). Every type is supported.
pub fn dequantize_row(t: GgmlType, src: &[u8], dst: &mut [f32]) {
    let nb = row_len(t, dst.len());
    assert!(
        src.len() >= nb,
        "{t} row of {} values needs {nb} bytes, got {}",
        dst.len(),
        src.len()
    );
    let src = &src[..nb];
    use reference as r;
    use GgmlType::*;
    match t {
        F32 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        F16 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *y = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        BF16 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *y = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        Q4_0 => r::dequantize_q4_0(as_blocks(src), dst),
        Q4_1 => r::dequantize_q4_1(as_blocks(src), dst),
        Q5_0 => r::dequantize_q5_0(as_blocks(src), dst),
        Q5_1 => r::dequantize_q5_1(as_blocks(src), dst),
        Q8_0 => r::dequantize_q8_0(as_blocks(src), dst),
        Q8_1 => r::dequantize_q8_1(as_blocks(src), dst),
        Q2_K => r::dequantize_q2_k(as_blocks(src), dst),
        Q3_K => r::dequantize_q3_k(as_blocks(src), dst),
        Q4_K => r::dequantize_q4_k(as_blocks(src), dst),
        Q5_K => r::dequantize_q5_k(as_blocks(src), dst),
        Q6_K => r::dequantize_q6_k(as_blocks(src), dst),
        Q8_K => r::dequantize_q8_k(as_blocks(src), dst),
    }
}

/// Stores `src` as f32/f16/bf16 (f16 and bf16 round to nearest-even, as ggml does).
/// Returns false for the quantized types.
fn store_float(t: GgmlType, src: &[f32], dst: &mut [u8]) -> bool {
    match t {
        GgmlType::F32 => {
            for (b, x) in dst.chunks_exact_mut(4).zip(src) {
                b.copy_from_slice(&x.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (b, x) in dst.chunks_exact_mut(2).zip(src) {
                b.copy_from_slice(&F16::from_f32(*x).0);
            }
        }
        GgmlType::BF16 => {
            for (b, x) in dst.chunks_exact_mut(2).zip(src) {
                b.copy_from_slice(&f32_to_bf16(*x).to_le_bytes());
            }
        }
        _ => return false,
    }
    true
}

/// Quantizes one row of activations, `src.len()` values, into `dst` (at least
/// `t.row_bytes(src.len())` bytes; extra bytes are left alone).
///
/// For the activation formats (F32, F16, BF16, Q8_0, Q8_1, Q8_K) the bytes are identical
/// to what llama.cpp's x86 CPU backend produces (`from_float` of the type). Q8_0 here is
/// the *activation* quantizer (`127/amax`, round half to even), which differs from how
/// Q8_0 *weights* are made; see [`quantize_row_ref`]. The weight-only types fall back to
/// [`quantize_row_ref`].
pub fn quantize_row(t: GgmlType, src: &[f32], dst: &mut [u8]) {
    let nb = row_len(t, src.len());
    assert!(
        dst.len() >= nb,
        "{t} row of {} values needs {nb} bytes, got {}",
        src.len(),
        dst.len()
    );
    let dst = &mut dst[..nb];
    if store_float(t, src, dst) {
        return;
    }
    match t {
        GgmlType::Q8_0 => quantize_q8_0_act(src, as_blocks_mut(dst)),
        GgmlType::Q8_1 => quantize_q8_1_act(src, as_blocks_mut(dst)),
        GgmlType::Q8_K => quantize_q8_k_act(src, as_blocks_mut(dst)),
        _ => quantize_row_ref(t, src, dst),
    }
}

/// f32 → Q8_0 activations, with SIMD where the CPU has it (the reference's bits).
fn quantize_q8_0_act(src: &[f32], dst: &mut [BlockQ8_0]) {
    #[cfg(target_arch = "x86_64")]
    if x86::quantize_q8_0_act(src, dst) {
        return;
    }
    reference::quantize_q8_0_act(src, dst);
}

/// f32 → Q8_1 activations, with SIMD where the CPU has it (the reference's bits).
fn quantize_q8_1_act(src: &[f32], dst: &mut [BlockQ8_1]) {
    #[cfg(target_arch = "x86_64")]
    if x86::quantize_q8_1_act(src, dst) {
        return;
    }
    reference::quantize_q8_1_act(src, dst);
}

/// f32 → Q8_K activations, with SIMD where the CPU has it (the reference's bits).
fn quantize_q8_k_act(src: &[f32], dst: &mut [BlockQ8_K]) {
    #[cfg(target_arch = "x86_64")]
    if x86::quantize_q8_k(src, dst) {
        return;
    }
    reference::quantize_q8_k(src, dst);
}

/// Quantizes one row with the reference (weight) quantizer of `t`: ggml's
/// `quantize_row_*_ref` (for Q2_K…Q6_K with its error search, [`weight_quant`]). Float
/// types are stored as in [`quantize_row`].
pub fn quantize_row_ref(t: GgmlType, src: &[f32], dst: &mut [u8]) {
    quantize_row_weights(t, src, dst, None);
}

/// Quantizes one row of a weight matrix as llama.cpp's quantizer does: with `importance`
/// (one non-negative weight per value of the row, from an importance matrix) the fits
/// minimise the importance-weighted error (ggml's `quantize_row_*_impl`); without it, or
/// for Q8_0/Q8_1/Q8_K and the float types, which ignore it, ggml's reference quantizers.
pub fn quantize_row_weights(t: GgmlType, src: &[f32], dst: &mut [u8], importance: Option<&[f32]>) {
    if let Some(qw) = importance {
        assert_eq!(qw.len(), src.len(), "one importance weight per value");
    }
    let nb = row_len(t, src.len());
    assert!(
        dst.len() >= nb,
        "{t} row of {} values needs {nb} bytes, got {}",
        src.len(),
        dst.len()
    );
    let dst = &mut dst[..nb];
    if store_float(t, src, dst) {
        return;
    }
    use reference as r;
    use weight_quant as w;
    use GgmlType::*;
    let qw = importance;
    match (t, qw) {
        (Q4_0, Some(qw)) => w::quantize_q4_0_imatrix(src, as_blocks_mut(dst), qw),
        (Q4_1, Some(qw)) => w::quantize_q4_1_imatrix(src, as_blocks_mut(dst), qw),
        (Q5_0, Some(qw)) => w::quantize_q5_0_imatrix(src, as_blocks_mut(dst), qw),
        (Q5_1, Some(qw)) => w::quantize_q5_1_imatrix(src, as_blocks_mut(dst), qw),
        (Q4_0, None) => r::quantize_q4_0_ref(src, as_blocks_mut(dst)),
        (Q4_1, None) => r::quantize_q4_1_ref(src, as_blocks_mut(dst)),
        (Q5_0, None) => r::quantize_q5_0_ref(src, as_blocks_mut(dst)),
        (Q5_1, None) => r::quantize_q5_1_ref(src, as_blocks_mut(dst)),
        (Q8_0, _) => r::quantize_q8_0_ref(src, as_blocks_mut(dst)),
        (Q8_1, _) => r::quantize_q8_1_ref(src, as_blocks_mut(dst)),
        (Q2_K, qw) => w::quantize_q2_k(src, as_blocks_mut(dst), qw),
        (Q3_K, qw) => w::quantize_q3_k(src, as_blocks_mut(dst), qw),
        (Q4_K, qw) => w::quantize_q4_k(src, as_blocks_mut(dst), qw),
        (Q5_K, qw) => w::quantize_q5_k(src, as_blocks_mut(dst), qw),
        (Q6_K, qw) => w::quantize_q6_k(src, as_blocks_mut(dst), qw),
        (Q8_K, _) => r::quantize_q8_k(src, as_blocks_mut(dst)),
        (F32 | F16 | BF16, _) => unreachable!("stored by store_float"),
    }
}

/// `Σ w_i · a_i` over `n` values: `w` is a row of type `t`, `a` a row of
/// [`vec_dot_type(t)`](vec_dot_type) (both at least `row_bytes(n)` long; extra bytes are
/// ignored). Uses the fastest kernel this CPU supports.
pub fn vec_dot(t: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    let wb = row_len(t, n);
    let ab = row_len(vec_dot_type(t), n);
    assert!(
        w.len() >= wb,
        "{t} row of {n} values needs {wb} bytes, got {}",
        w.len()
    );
    assert!(
        a.len() >= ab,
        "{} row of {n} values needs {ab} bytes, got {}",
        vec_dot_type(t),
        a.len()
    );
    (kernels().dot[t as usize])(&w[..wb], &a[..ab])
}

/// The selected dot product kernel for weight type `t`, for callers that want to look it
/// up once outside a loop. The kernel trusts its caller on lengths only as far as safe code
/// can: both slices must cover the same number of values in whole blocks.
pub fn vec_dot_kernel(t: GgmlType) -> VecDotFn {
    kernels().dot[t as usize]
}

/// The scalar reference dot product for weight type `t` (same contract as [`vec_dot`]).
pub fn vec_dot_ref(t: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    let wb = row_len(t, n);
    let ab = row_len(vec_dot_type(t), n);
    assert!(
        w.len() >= wb && a.len() >= ab,
        "rows shorter than {n} values"
    );
    (scalar_dot(t))(&w[..wb], &a[..ab])
}

/// Which kernel set is in use: `"avx2"`, `"neon"` or `"scalar"`.
pub fn simd_level() -> &'static str {
    kernels().level
}

/// The dispatch table, filled once.
pub(crate) struct Kernels {
    /// Dot product per weight type, indexed by `GgmlType as usize`.
    pub(crate) dot: [VecDotFn; GgmlType::ALL.len()],
    /// Name of the kernel set.
    pub(crate) level: &'static str,
}

fn kernels() -> &'static Kernels {
    static KERNELS: OnceLock<Kernels> = OnceLock::new();
    KERNELS.get_or_init(|| {
        let scalar = Kernels {
            dot: GgmlType::ALL.map(scalar_dot),
            level: "scalar",
        };
        let no_simd = simd_disabled();
        if no_simd {
            scalar
        } else {
            with_simd(scalar)
        }
    })
}

/// Swaps in the SIMD kernels this CPU supports.
#[cfg(target_arch = "x86_64")]
fn with_simd(mut k: Kernels) -> Kernels {
    if x86::install(&mut k) {
        k.level = "avx2";
    }
    k
}

/// Swaps in the NEON kernels (aarch64).
#[cfg(target_arch = "aarch64")]
fn with_simd(mut k: Kernels) -> Kernels {
    if neon::install(&mut k) {
        k.level = "neon";
    }
    k
}

/// No SIMD kernels on this architecture.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn with_simd(k: Kernels) -> Kernels {
    k
}

macro_rules! scalar_dot_fn {
    ($name:ident, $f:path, $wb:ty, $ab:ty) => {
        fn $name(w: &[u8], a: &[u8]) -> f32 {
            $f(as_blocks::<$wb>(w), as_blocks::<$ab>(a))
        }
    };
}
scalar_dot_fn!(ref_q4_0, reference::vec_dot_q4_0_q8_0, BlockQ4_0, BlockQ8_0);
scalar_dot_fn!(ref_q4_1, reference::vec_dot_q4_1_q8_1, BlockQ4_1, BlockQ8_1);
scalar_dot_fn!(ref_q5_0, reference::vec_dot_q5_0_q8_0, BlockQ5_0, BlockQ8_0);
scalar_dot_fn!(ref_q5_1, reference::vec_dot_q5_1_q8_1, BlockQ5_1, BlockQ8_1);
scalar_dot_fn!(ref_q8_0, reference::vec_dot_q8_0_q8_0, BlockQ8_0, BlockQ8_0);
scalar_dot_fn!(ref_q8_1, reference::vec_dot_q8_1_q8_1, BlockQ8_1, BlockQ8_1);
scalar_dot_fn!(ref_q2_k, reference::vec_dot_q2_k_q8_k, BlockQ2_K, BlockQ8_K);
scalar_dot_fn!(ref_q3_k, reference::vec_dot_q3_k_q8_k, BlockQ3_K, BlockQ8_K);
scalar_dot_fn!(ref_q4_k, reference::vec_dot_q4_k_q8_k, BlockQ4_K, BlockQ8_K);
scalar_dot_fn!(ref_q5_k, reference::vec_dot_q5_k_q8_k, BlockQ5_K, BlockQ8_K);
scalar_dot_fn!(ref_q6_k, reference::vec_dot_q6_k_q8_k, BlockQ6_K, BlockQ8_K);
scalar_dot_fn!(ref_q8_k, reference::vec_dot_q8_k_q8_k, BlockQ8_K, BlockQ8_K);

fn ref_f32(w: &[u8], a: &[u8]) -> f32 {
    let w = w
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let a = a
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    w.zip(a).map(|(x, y)| (x * y) as f64).sum::<f64>() as f32
}

/// The scalar kernel for weight type `t`.
fn scalar_dot(t: GgmlType) -> VecDotFn {
    use GgmlType::*;
    match t {
        F32 => ref_f32,
        F16 => reference::vec_dot_f16,
        BF16 => reference::vec_dot_bf16,
        Q4_0 => ref_q4_0,
        Q4_1 => ref_q4_1,
        Q5_0 => ref_q5_0,
        Q5_1 => ref_q5_1,
        Q8_0 => ref_q8_0,
        Q8_1 => ref_q8_1,
        Q2_K => ref_q2_k,
        Q3_K => ref_q3_k,
        Q4_K => ref_q4_k,
        Q5_K => ref_q5_k,
        Q6_K => ref_q6_k,
        Q8_K => ref_q8_k,
    }
}
