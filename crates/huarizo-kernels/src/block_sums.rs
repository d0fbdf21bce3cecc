//! huarizo's own summation order for the 32-value block types ("block sums").
//!
//! llama.cpp's x86 kernels sum a quantized dot product in eight i32 lanes per block, turn
//! each lane to f32, scale it and keep eight f32 partial sums across the row, summed
//! horizontally at the end. That costs a conversion and a multiply-add per lane, per block
//! and per output, and it pins the lanes to groups of four values of one row. In the
//! block-sum order each block's integer sum is exact and whole, and each output takes one
//! fused multiply-add per block:
//!
//! `acc = fma(Σ_j q_j·y_j as f32, d_w·d_y, acc)` for Q4_0, Q5_0 and Q8_0, and for Q4_1
//! then `acc = fma(m_w, d_y·Σ_j y_j, acc)`; the result is `acc` after the last block.
//!
//! With eight weight rows in the eight lanes (one lane per output, AVX-512 VNNI) that is
//! one conversion and one FMA per eight block products instead of one each per block
//! product (`crate::ggml_lanes`), about half the instructions. The
//! result differs from llama.cpp's only by f32 rounding; it does not depend on batch size
//! or on a token's place in its batch. On the small quantized models those roundings grow
//! through the 8-bit activations as much as the difference between llama.cpp's own AVX2
//! and AVX-512 builds does, so it is not the default: `HUARIZO_ARITHMETIC=block-sums` asks
//! for it. [`Arithmetic`] chooses the order; this module holds the scalar reference and the
//! per-batch activation sums the kernels read.

use crate::blocks::{as_blocks, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8_0, BlockQ8_1, QK};
use crate::GgmlType;
use std::sync::atomic::{AtomicU8, Ordering};

/// How huarizo sums the quantized dot products of its matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// As the llama.cpp build of [`crate::ggml_isa`] does, bit for bit (the default).
    Ggml,
    /// The block-sum order of this module for Q4_0, Q4_1, Q5_0 and Q8_0 weights where the
    /// CPU has AVX-512 VNNI, llama.cpp's order for everything else. Faster, and as far from
    /// llama.cpp's AVX-512 build as its AVX2 build is (see docs/PERF.md), which is too far
    /// for the agreement the engine promises by default.
    BlockSums,
}

impl Arithmetic {
    /// The name `HUARIZO_ARITHMETIC` takes.
    pub fn name(self) -> &'static str {
        match self {
            Arithmetic::Ggml => "ggml",
            Arithmetic::BlockSums => "block-sums",
        }
    }

    /// Parses `ggml` or `block-sums`.
    pub fn parse(s: &str) -> Option<Arithmetic> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ggml" => Some(Arithmetic::Ggml),
            "block-sums" => Some(Arithmetic::BlockSums),
            _ => None,
        }
    }
}

const UNSET: u8 = 0;
const GGML: u8 = 1;
const BLOCK_SUMS: u8 = 2;

static CHOSEN: AtomicU8 = AtomicU8::new(UNSET);

/// The order huarizo follows: what [`set_arithmetic`] (or [`crate::set_ggml_isa`], which
/// asks for llama.cpp's bits) last chose, else `HUARIZO_ARITHMETIC=ggml|block-sums` if set,
/// else [`Arithmetic::Ggml`].
pub fn arithmetic() -> Arithmetic {
    match CHOSEN.load(Ordering::Relaxed) {
        GGML => Arithmetic::Ggml,
        BLOCK_SUMS => Arithmetic::BlockSums,
        _ => {
            let chosen = from_env().unwrap_or(Arithmetic::Ggml);
            // A concurrent first use computes the same value.
            set_arithmetic(chosen);
            chosen
        }
    }
}

/// Makes huarizo follow `a` from now on (comparisons with llama.cpp bit for bit set
/// [`Arithmetic::Ggml`]). Call it before running a model: a forward pass that straddles
/// the change mixes both orders.
pub fn set_arithmetic(a: Arithmetic) {
    let code = match a {
        Arithmetic::Ggml => GGML,
        Arithmetic::BlockSums => BLOCK_SUMS,
    };
    CHOSEN.store(code, Ordering::Relaxed);
}

fn from_env() -> Option<Arithmetic> {
    let value = std::env::var("HUARIZO_ARITHMETIC").ok()?;
    let a = Arithmetic::parse(&value);
    if a.is_none() {
        eprintln!("warning: HUARIZO_ARITHMETIC={value:?} is not ggml or block-sums; ignored");
    }
    a
}

/// What the block-sum kernels read of one activation block besides its quants.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct BlockInfo {
    /// The block's scale `d_y` as f32.
    pub d: f32,
    /// For Q8_0 activations `−Σ y` (an i32); for Q8_1 the bits of `d_y·Σ y` (an f32).
    pub aux: u32,
}

/// The [`BlockInfo`] of every block of `n_tokens` activation rows of `act_type` (Q8_0 or
/// Q8_1), `a_row` bytes apart, into `out` (token-major; its capacity is reused).
pub fn block_infos(
    act_type: GgmlType,
    acts: &[u8],
    a_row: usize,
    n_tokens: usize,
    out: &mut Vec<BlockInfo>,
) {
    out.clear();
    for t in 0..n_tokens {
        let row = &acts[t * a_row..(t + 1) * a_row];
        match act_type {
            GgmlType::Q8_0 => out.extend(as_blocks::<BlockQ8_0>(row).iter().map(|b| BlockInfo {
                d: b.d.get(),
                aux: (-sum_i8(&b.qs)) as u32,
            })),
            GgmlType::Q8_1 => out.extend(as_blocks::<BlockQ8_1>(row).iter().map(|b| {
                let d = b.d.get();
                BlockInfo {
                    d,
                    aux: (d * sum_i8(&b.qs) as f32).to_bits(),
                }
            })),
            _ => panic!("block sums read Q8_0 or Q8_1 activations, not {act_type}"),
        }
    }
}

fn sum_i8(q: &[i8; QK]) -> i32 {
    q.iter().map(|&v| i32::from(v)).sum()
}

/// `w · a` in the block-sum order (the scalar reference of the kernels), for a Q4_0, Q4_1,
/// Q5_0 or Q8_0 weight row and an activation row in its `vec_dot_type`; `None` for other
/// types.
pub fn dot(t: GgmlType, w: &[u8], a: &[u8]) -> Option<f32> {
    let blocks = |quants: &mut dyn FnMut(usize) -> ([i32; QK], f32, f32)| {
        let n = w.len() / t.row_bytes(QK).expect("a block type");
        let mut acc = 0f32;
        for i in 0..n {
            let (q, d, m) = quants(i);
            let (dy, y) = match t {
                GgmlType::Q4_1 => {
                    let b = &as_blocks::<BlockQ8_1>(a)[i];
                    (b.d.get(), b.qs)
                }
                _ => {
                    let b = &as_blocks::<BlockQ8_0>(a)[i];
                    (b.d.get(), b.qs)
                }
            };
            let isum: i32 = q.iter().zip(&y).map(|(&q, &y)| q * i32::from(y)).sum();
            acc = (isum as f32).mul_add(d * dy, acc);
            if t == GgmlType::Q4_1 {
                acc = m.mul_add(dy * sum_i8(&y) as f32, acc);
            }
        }
        acc
    };
    let nibbles = |qs: &[u8; 16], offset: i32| {
        let mut q = [0i32; QK];
        for j in 0..QK / 2 {
            q[j] = i32::from(qs[j] & 0xf) - offset;
            q[j + QK / 2] = i32::from(qs[j] >> 4) - offset;
        }
        q
    };
    Some(match t {
        GgmlType::Q4_0 => {
            let x: &[BlockQ4_0] = as_blocks(w);
            blocks(&mut |i| (nibbles(&x[i].qs, 8), x[i].d.get(), 0.0))
        }
        GgmlType::Q4_1 => {
            let x: &[BlockQ4_1] = as_blocks(w);
            blocks(&mut |i| (nibbles(&x[i].qs, 0), x[i].d.get(), x[i].m.get()))
        }
        GgmlType::Q5_0 => {
            let x: &[BlockQ5_0] = as_blocks(w);
            blocks(&mut |i| {
                let q = crate::reference::q5_quants(x[i].qh, &x[i].qs).map(|q| q - 16);
                (q, x[i].d.get(), 0.0)
            })
        }
        GgmlType::Q8_0 => {
            let x: &[BlockQ8_0] = as_blocks(w);
            blocks(&mut |i| (x[i].qs.map(i32::from), x[i].d.get(), 0.0))
        }
        _ => return None,
    })
}

/// Eight weight rows (of a tile; fewer at the end of a matrix) against every activation row
/// of a batch in the block-sum order: `(w_tile, w_row, acts, a_row, infos, out)` with
/// `out[t][r]` = row r of the tile · activation row t, `infos` from [`block_infos`].
pub type RowLanesFn = fn(&[u8], usize, &[u8], usize, &[BlockInfo], &mut [[f32; 8]]);

/// The block-sum kernel for weights of type `t` on this CPU, if it has one (AVX-512 VNNI).
pub fn row_lanes_kernel(t: GgmlType) -> Option<RowLanesFn> {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd_disabled() {
            return None;
        }
        crate::x86::row_lanes_kernel(t)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = t;
        None
    }
}

/// The block-sum kernel for `t` when huarizo follows the block-sum order, else `None`.
pub fn active_kernel(t: GgmlType) -> Option<RowLanesFn> {
    match arithmetic() {
        Arithmetic::BlockSums => row_lanes_kernel(t),
        Arithmetic::Ggml => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Rng;
    use crate::{quantize_row, quantize_row_ref, vec_dot_type};

    #[test]
    fn names_round_trip() {
        for a in [Arithmetic::Ggml, Arithmetic::BlockSums] {
            assert_eq!(Arithmetic::parse(a.name()), Some(a));
        }
        assert_eq!(Arithmetic::parse("fast"), None);
    }

    /// The kernels against the scalar order bit for bit, for every row count of a tile and
    /// batch sizes that take each token-group width, and the order against the f64 product
    /// of the dequantized rows.
    #[test]
    fn row_lanes_equal_the_scalar_order_bit_for_bit() {
        let n_in = 256;
        let mut rng = Rng(7);
        let mut values = |n: usize| (0..n).map(|_| rng.f32()).collect::<Vec<f32>>();
        for t in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
        ] {
            let act = vec_dot_type(t);
            let (w_row, a_row) = (t.row_bytes(n_in).unwrap(), act.row_bytes(n_in).unwrap());
            let n_tokens = 23;
            let mut w = vec![0u8; 8 * w_row];
            for row in w.chunks_exact_mut(w_row) {
                quantize_row_ref(t, &values(n_in), row);
            }
            let mut acts = vec![0u8; n_tokens * a_row];
            for row in acts.chunks_exact_mut(a_row) {
                quantize_row(act, &values(n_in), row);
            }
            let mut infos = Vec::new();
            block_infos(act, &acts, a_row, n_tokens, &mut infos);
            for tok in 0..n_tokens {
                let a = &acts[tok * a_row..(tok + 1) * a_row];
                let mut wd = vec![0f32; n_in];
                let mut ad = vec![0f32; n_in];
                crate::dequantize_row(act, a, &mut ad);
                for r in 0..8 {
                    crate::dequantize_row(t, &w[r * w_row..(r + 1) * w_row], &mut wd);
                    let exact: f64 = wd.iter().zip(&ad).map(|(&x, &y)| x as f64 * y as f64).sum();
                    let got = dot(t, &w[r * w_row..(r + 1) * w_row], a).unwrap() as f64;
                    assert!((got - exact).abs() <= 1e-4 * (1.0 + exact.abs()), "{t}");
                }
            }
            let Some(kernel) = row_lanes_kernel(t) else {
                eprintln!("no block-sum kernel for {t} on this CPU");
                continue;
            };
            for n_rows in 1..=8 {
                for n in [1, 3, 4, 8, 16, n_tokens] {
                    let mut out = vec![[f32::NAN; 8]; n];
                    kernel(
                        &w[..n_rows * w_row],
                        w_row,
                        &acts,
                        a_row,
                        &infos[..n * (n_in / QK)],
                        &mut out,
                    );
                    for (tok, got) in out.iter().enumerate() {
                        let a = &acts[tok * a_row..(tok + 1) * a_row];
                        for r in 0..n_rows {
                            let want = dot(t, &w[r * w_row..(r + 1) * w_row], a).unwrap();
                            assert_eq!(
                                got[r].to_bits(),
                                want.to_bits(),
                                "{t}: rows {n_rows}, tokens {n}, token {tok}, row {r}"
                            );
                        }
                    }
                }
            }
        }
    }
}
