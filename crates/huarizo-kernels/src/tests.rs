//! Kernel tests: SIMD against the scalar reference on random blocks, dot products against
//! dequantization, quantization error within ggml's bounds (`tests/test-quantize-fns.cpp`),
//! and known answers for the activation quantizers.

use crate::blocks::*;
use crate::*;

/// xorshift64* — deterministic test data without dependencies.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    pub(crate) fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Random weight row of `nb` blocks of `t`: random quant bytes, with the scale fields
/// replaced by sane f16/f32 values so the row is finite. Float types come from random f32.
pub(crate) fn random_weights(t: GgmlType, nb: usize, rng: &mut Rng) -> Vec<u8> {
    use GgmlType::*;
    let n = nb * t.block_size();
    if matches!(t, F32 | F16 | BF16) {
        let x: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
        let mut out = vec![0u8; t.row_bytes(n).unwrap()];
        quantize_row(t, &x, &mut out);
        return out;
    }
    let mut bytes = rng.bytes(t.row_bytes(n).unwrap());
    // Offsets of the f16 scale fields inside each block.
    let halves: &[usize] = match t {
        Q4_0 | Q5_0 | Q8_0 => &[0],
        Q4_1 | Q5_1 | Q8_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        Q8_K | F32 | F16 | BF16 => &[],
    };
    for block in bytes.chunks_exact_mut(t.type_size()) {
        for &off in halves {
            let v = 0.05 * rng.f32();
            block[off..off + 2].copy_from_slice(&blocks::F16::from_f32(v).0);
        }
        if t == Q8_K {
            block[..4].copy_from_slice(&(0.01 * rng.f32()).to_le_bytes());
        }
    }
    bytes
}

/// Random activations of `n` values in `vec_dot_type(t)`, made by the activation quantizer
/// (so that Q8_1 sums and Q8_K bsums are consistent).
pub(crate) fn random_activations(t: GgmlType, n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<u8>) {
    let at = vec_dot_type(t);
    let x: Vec<f32> = (0..n).map(|_| 3.0 * rng.f32()).collect();
    let mut out = vec![0u8; at.row_bytes(n).unwrap()];
    quantize_row(at, &x, &mut out);
    (x, out)
}

fn dequant(t: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    dequantize_row(t, bytes, &mut out);
    out
}

/// `(Σ w·a, Σ |w·a|)` over dequantized values, in f64.
fn dot_and_mag(w: &[f32], a: &[f32]) -> (f64, f64) {
    w.iter().zip(a).fold((0.0, 0.0), |(s, m), (&x, &y)| {
        let p = x as f64 * y as f64;
        (s + p, m + p.abs())
    })
}

fn lengths(t: GgmlType) -> Vec<usize> {
    let bs = t.block_size();
    if bs == 1 {
        vec![1, 2, 7, 32, 33, 64, 100, 256 + 5]
    } else {
        vec![bs, 2 * bs, 7 * bs]
    }
}

#[test]
fn dispatched_dot_matches_scalar_reference() {
    eprintln!("kernel set: {}", simd_level());
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for t in GgmlType::ALL {
        for n in lengths(t) {
            for trial in 0..4 {
                let w = random_weights(t, n / t.block_size(), &mut rng);
                let (_, a) = random_activations(t, n, &mut rng);
                let fast = vec_dot(t, n, &w, &a);
                let slow = vec_dot_ref(t, n, &w, &a);
                let (_, mag) = dot_and_mag(&dequant(t, &w, n), &dequant(vec_dot_type(t), &a, n));
                let tol = 1e-5 * mag + 1e-6;
                assert!(
                    ((fast - slow) as f64).abs() <= tol,
                    "{t} n={n} trial={trial}: {} kernel {fast} vs reference {slow} (tolerance {tol})",
                    simd_level()
                );
            }
        }
    }
}

#[test]
fn dot_products_agree_with_dequantization() {
    let mut rng = Rng(42);
    for t in GgmlType::ALL {
        for n in lengths(t) {
            let w = random_weights(t, n / t.block_size(), &mut rng);
            let (_, a) = random_activations(t, n, &mut rng);
            let (wd, ad) = (dequant(t, &w, n), dequant(vec_dot_type(t), &a, n));
            let (expect, mag) = dot_and_mag(&wd, &ad);
            let mut tol = 1e-5 * mag + 1e-6;
            if vec_dot_type(t) == GgmlType::Q8_1 {
                // The `m · s` term uses s = d·Σq rounded to f16: allow 2⁻¹¹ of |m·s| per block.
                for (wb, ab) in w.chunks_exact(t.type_size()).zip(ad.chunks_exact(32)) {
                    let m = F16([wb[2], wb[3]]).get().abs() as f64;
                    let s: f64 = ab.iter().map(|&v| v as f64).sum::<f64>().abs();
                    tol += m * s / 2048.0;
                }
            }
            for (name, got) in [
                ("dispatched", vec_dot(t, n, &w, &a)),
                ("reference", vec_dot_ref(t, n, &w, &a)),
            ] {
                assert!(
                    (got as f64 - expect).abs() <= tol,
                    "{t} n={n}: {name} dot {got} vs dequantized dot {expect} (tolerance {tol})"
                );
            }
        }
    }
}

/// ggml's synthetic test data: `0.1 + 2 cos(i + offset)`.
fn ggml_test_data(n: usize, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|i| 0.1 + 2.0 * (i as f32 + offset).cos())
        .collect()
}

/// ggml's `array_rmse`: sqrt(Σ diff²) / n.
fn array_rmse(a: &[f32], b: &[f32]) -> f64 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    sum.sqrt() / a.len() as f64
}

/// ggml's `MAX_QUANTIZATION_TOTAL_ERROR*` bounds.
fn max_quantization_error(t: GgmlType) -> f64 {
    match t {
        GgmlType::Q2_K => 0.0075,
        GgmlType::Q3_K => 0.0040,
        _ => 0.002,
    }
}

#[test]
fn quantization_error_within_ggml_bounds() {
    let n = 4 * 1024;
    let x = ggml_test_data(n, 0.0);
    for t in GgmlType::ALL {
        for (name, quantize) in [
            ("ref", quantize_row_ref as fn(_, &_, &mut _)),
            ("act", quantize_row),
        ] {
            let mut q = vec![0u8; t.row_bytes(n).unwrap()];
            quantize(t, &x, &mut q);
            let err = array_rmse(&x, &dequant(t, &q, n));
            assert!(
                err < max_quantization_error(t),
                "{t} ({name}): total error {err}"
            );
        }
    }
}

#[test]
fn dot_product_error_within_ggml_bounds() {
    // ggml's `dot_product_error`: |vec_dot(q(x), q_act(y)) − x·y| / n.
    let n = 4 * 1024;
    let x = ggml_test_data(n, 0.0);
    let y = ggml_test_data(n, 1.0);
    let exact: f64 = x.iter().zip(&y).map(|(&a, &b)| a as f64 * b as f64).sum();
    for t in GgmlType::ALL {
        let mut qx = vec![0u8; t.row_bytes(n).unwrap()];
        quantize_row_ref(t, &x, &mut qx);
        let at = vec_dot_type(t);
        let mut qy = vec![0u8; at.row_bytes(n).unwrap()];
        quantize_row(at, &y, &mut qy);
        let err = (vec_dot(t, n, &qx, &qy) as f64 - exact).abs() / n as f64;
        let bound = if matches!(t, GgmlType::Q2_K | GgmlType::Q3_K) {
            0.04
        } else {
            0.02
        };
        assert!(err < bound, "{t}: dot product error {err}");
    }
}

#[test]
fn q8_0_activation_rounds_half_to_even() {
    // amax = 127 makes id = 1 and d = 1, so q = round_half_even(x) exactly.
    let mut x = [0f32; 32];
    x[..8].copy_from_slice(&[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.25]);
    let mut act = [0u8; 34];
    quantize_row(GgmlType::Q8_0, &x, &mut act);
    let b = &as_blocks::<BlockQ8_0>(&act)[0];
    assert_eq!(b.d.get(), 1.0);
    assert_eq!(&b.qs[..8], &[127, 0, 2, 2, 0, -2, -2, 3]);
    assert!(b.qs[8..].iter().all(|&q| q == 0));

    // The weight (reference) quantizer uses roundf: halves away from zero.
    let mut w = [0u8; 34];
    quantize_row_ref(GgmlType::Q8_0, &x, &mut w);
    let b = &as_blocks::<BlockQ8_0>(&w)[0];
    assert_eq!(&b.qs[..8], &[127, 1, 2, 3, -1, -2, -3, 3]);
}

#[test]
fn q8_0_activation_known_answer() {
    // x = i − 16: amax = 16, d = f16(16/127), id = 127/16 = 7.9375.
    let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
    let mut act = [0u8; 34];
    quantize_row(GgmlType::Q8_0, &x, &mut act);
    let b = &as_blocks::<BlockQ8_0>(&act)[0];
    assert_eq!(b.d, F16::from_f32(16.0 / 127.0));
    // (i − 16) · 7.9375 rounded; e.g. −15 · 7.9375 = −119.0625 → −119, 1 · 7.9375 → 8,
    // −2 · 7.9375 = −15.875 → −16, 4 · 7.9375 = 31.75 → 32.
    let expect: Vec<i8> = (0..32)
        .map(|i| ((i as f32 - 16.0) * 7.9375).round() as i8)
        .collect();
    assert_eq!(&b.qs[..], &expect[..]);
    assert_eq!(b.qs[0], -127);
    assert_eq!(b.qs[1], -119);
    assert_eq!(b.qs[17], 8);
    assert_eq!(b.qs[14], -16);
    assert_eq!(b.qs[20], 32);
}

#[test]
fn q8_1_activation_sum_uses_unrounded_scale() {
    let mut x = [0f32; 32];
    x[..8].copy_from_slice(&[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.25]);
    let mut act = [0u8; 36];
    quantize_row(GgmlType::Q8_1, &x, &mut act);
    let b = &as_blocks::<BlockQ8_1>(&act)[0];
    assert_eq!(&b.qs[..8], &[127, 0, 2, 2, 0, -2, -2, 3]);
    assert_eq!(b.s.get(), 130.0);

    // With a scale that is not exact in f16, s is rounded once from d·Σq in f32.
    let x: Vec<f32> = (0..32).map(|i| (i as f32 - 10.0) * 0.01).collect();
    quantize_row(GgmlType::Q8_1, &x, &mut act);
    let b = &as_blocks::<BlockQ8_1>(&act)[0];
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let sum: i32 = b.qs.iter().map(|&q| q as i32).sum();
    assert_eq!(b.s, F16::from_f32(d * sum as f32));
    assert_eq!(b.d, F16::from_f32(d));
}

#[test]
fn q8_k_activation_known_answer() {
    // The signed max is −127/64: iscale = 64 exactly, d = 1/64, and halves are exact.
    let mut x = [0f32; 256];
    x[0] = 2.5 / 64.0; // 2.5 → 2 (ties to even)
    x[1] = -127.0 / 64.0; // −127
    x[2] = 1.5 / 64.0; // 1.5 → 2
    x[17] = -0.5 / 64.0; // −0.5 → 0
    x[18] = 3.5 / 64.0; // 3.5 → 4
    let mut act = vec![0u8; 292];
    quantize_row(GgmlType::Q8_K, &x, &mut act);
    let b = &as_blocks::<BlockQ8_K>(&act)[0];
    assert_eq!(b.d(), 1.0 / 64.0);
    assert_eq!(&b.qs[..3], &[2, -127, 2]);
    assert_eq!(b.qs[17], 0);
    assert_eq!(b.qs[18], 4);
    assert_eq!(b.bsum(0), 2 - 127 + 2);
    assert_eq!(b.bsum(1), 4);

    // A positive max maps to −127 and gives a negative scale.
    let mut x = [0f32; 256];
    x[5] = 3.0;
    x[6] = -1.5;
    quantize_row(GgmlType::Q8_K, &x, &mut act);
    let b = &as_blocks::<BlockQ8_K>(&act)[0];
    assert_eq!(b.qs[5], -127);
    assert_eq!(b.qs[6] as i32, nearest_int(-127.0f32 / 3.0 * -1.5));
    assert!(b.d() < 0.0);

    // All zeros: d = 0, quants and sums zero.
    quantize_row(GgmlType::Q8_K, &[0.0; 256], &mut act);
    assert!(act.iter().all(|&b| b == 0));
}

#[test]
fn float_storage_rounds_to_nearest_even() {
    let mut out = [0u8; 2];
    quantize_row(GgmlType::F16, &[1.0 / 3.0], &mut out);
    assert_eq!(u16::from_le_bytes(out), 0x3555);
    quantize_row(GgmlType::BF16, &[1.0 / 3.0], &mut out);
    assert_eq!(u16::from_le_bytes(out), 0x3eab);
    let mut y = [0f32; 1];
    dequantize_row(GgmlType::BF16, &out, &mut y);
    assert_eq!(y[0], f32::from_bits(0x3eab_0000));
}

#[test]
fn dequantize_known_blocks() {
    // Q4_0: d = 0.5, byte 0 = 0x1F → weight 0 = (15 − 8)·0.5, weight 16 = (1 − 8)·0.5.
    let mut b = vec![0u8; 18];
    b[..2].copy_from_slice(&F16::from_f32(0.5).0);
    b[2] = 0x1f;
    let y = dequant(GgmlType::Q4_0, &b, 32);
    assert_eq!((y[0], y[16], y[1]), (3.5, -3.5, -4.0));

    // Q5_0: fifth bit of weight 17 set (qh bit 17), nibble 3 → (3 + 16 − 16)·d.
    let mut b = vec![0u8; 22];
    b[..2].copy_from_slice(&F16::from_f32(2.0).0);
    b[2..6].copy_from_slice(&(1u32 << 17).to_le_bytes());
    b[6 + 1] = 0x30;
    let y = dequant(GgmlType::Q5_0, &b, 32);
    assert_eq!((y[17], y[1], y[0]), (6.0, -32.0, -32.0));

    // Q4_K: scale of sub-block 5 = 0b10_0011 (low nibble in byte 9, top bits in byte 1),
    // min of sub-block 5 = 0b01_0010 (high nibble of byte 9, top bits in byte 5).
    let mut b = vec![0u8; 144];
    b[..2].copy_from_slice(&F16::from_f32(1.0).0);
    b[2..4].copy_from_slice(&F16::from_f32(0.5).0);
    let s = &mut b[4..16];
    s[9] = 0x23;
    s[1] = 0b10 << 6;
    s[5] = 0b01 << 6;
    // Weight 5·32 + 3 = 163 is the high nibble of qs[32·2 + 3].
    b[16 + 67] = 0x70;
    let y = dequant(GgmlType::Q4_K, &b, 256);
    assert_eq!(y[163], 35.0 * 7.0 - 0.5 * 18.0);
    assert_eq!(y[162], -0.5 * 18.0);

    // Q6_K: weight 200 (half 1, quarter 2, lane 8) = low nibble k/2 = 1 of ql[64 + 8],
    // high bits 4..6 of qh[32 + 8]; scale scales[12].
    let mut b = vec![0u8; 210];
    b[64 + 8] = 0x50;
    b[128 + 32 + 8] = 0b10 << 4;
    b[192 + 12] = (-3i8) as u8;
    b[208..210].copy_from_slice(&F16::from_f32(0.25).0);
    let y = dequant(GgmlType::Q6_K, &b, 256);
    assert_eq!(y[200], 0.25 * -3.0 * ((0x5 | (0b10 << 4)) as f32 - 32.0));
}

#[test]
#[should_panic(expected = "not a whole number")]
fn partial_blocks_are_rejected() {
    let w = vec![0u8; 18];
    let a = vec![0u8; 34];
    vec_dot(GgmlType::Q4_0, 31, &w, &a);
}

/// Rough kernel timings: `cargo test -p huarizo-kernels --release -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_dot_kernels() {
    let mut rng = Rng(7);
    let n = 4096;
    let rows = 256;
    for t in GgmlType::ALL {
        let w: Vec<Vec<u8>> = (0..rows)
            .map(|_| random_weights(t, n / t.block_size(), &mut rng))
            .collect();
        let (_, a) = random_activations(t, n, &mut rng);
        let time = |f: &dyn Fn(&[u8]) -> f32| {
            let start = std::time::Instant::now();
            let mut acc = 0.0;
            let reps = 20;
            for _ in 0..reps {
                for w in &w {
                    acc += f(w);
                }
            }
            std::hint::black_box(acc);
            start.elapsed().as_nanos() as f64 / (reps * rows) as f64
        };
        let fast = time(&|w| vec_dot(t, n, w, &a));
        let slow = time(&|w| vec_dot_ref(t, n, w, &a));
        eprintln!(
            "{t:>5}: {} {fast:8.0} ns/row, scalar {slow:8.0} ns/row (x{:.1})",
            simd_level(),
            slow / fast
        );
    }
}

/// Runs [`crate::matmul::matmul`] on random `t` weights (`n_out × n_in`) for each token count
/// and asserts that every output has exactly the bits of `one(token, n_tokens)`, the one-row
/// kernel that llama.cpp would use for that token.
fn assert_batched_equals_one_row(
    t: GgmlType,
    (n_in, n_out): (usize, usize),
    token_counts: &[usize],
    rng: &mut Rng,
    one: impl Fn(usize, usize) -> crate::VecDotFn,
) {
    use crate::matmul::{matmul, quantize_activations, quantize_activations_on};
    let pool = crate::pool::ThreadPool::new(2);
    let w = random_weights(t, n_out * n_in / t.block_size(), rng);
    let (w_row, a_row) = (
        t.row_bytes(n_in).unwrap(),
        vec_dot_type(t).row_bytes(n_in).unwrap(),
    );
    for &n_tokens in token_counts {
        let x: Vec<f32> = (0..n_tokens * n_in).map(|_| rng.f32()).collect();
        let mut acts = Vec::new();
        quantize_activations(t, &x, n_in, &mut acts);
        let mut shared = Vec::new();
        quantize_activations_on(&pool, t, &x, n_in, &mut shared);
        assert!(acts == shared, "{t}: rows quantized on the pool differ");
        let mut out = vec![0f32; n_tokens * n_out];
        matmul(&pool, t, &w, n_out, n_in, &acts, n_tokens, &mut out);
        assert_each_output_is(
            &out,
            (&w, w_row),
            (&acts, a_row),
            n_out,
            |tok| one(tok, n_tokens),
            |tok| format!("{t} T={n_tokens} token {tok}"),
        );
    }
}

/// Asserts that output `(tok, r)` of `out` `(T, n_out)` has exactly the bits of
/// `one(tok)` on weight row r (rows `w_row` bytes apart) and activation row tok (`a_row`
/// bytes apart); `what(tok)` names the token in a failure.
fn assert_each_output_is(
    out: &[f32],
    (w, w_row): (&[u8], usize),
    (acts, a_row): (&[u8], usize),
    n_out: usize,
    one: impl Fn(usize) -> crate::VecDotFn,
    what: impl Fn(usize) -> String,
) {
    for tok in 0..out.len() / n_out {
        let one = one(tok);
        for r in 0..n_out {
            let want = one(&w[r * w_row..][..w_row], &acts[tok * a_row..][..a_row]);
            let got = out[tok * n_out + r];
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{} row {r}: {got} vs {want}",
                what(tok)
            );
        }
    }
}

/// The batched kernels (four-row, pre-scaled four-row, row tiles) give each output exactly
/// the bits of the one-row kernel, for every token count's mix of them.
#[test]
fn batched_matmul_equals_one_row_kernel_bit_for_bit() {
    let mut rng = Rng(0x5eed_0fba_7c01);
    for t in [GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q8_0] {
        assert_batched_equals_one_row(t, (256, 27), &[1, 4, 7, 9, 16], &mut rng, |_, _| {
            vec_dot_kernel(t)
        });
    }
}

/// The batched K-quant paths (Q4_K in the repacked GEMM/GEMV orders, Q6_K in the tiled
/// order from 8 rows on) give each output exactly the bits of the order's one-row kernel.
#[test]
fn batched_k_quant_orders_equal_their_one_row_kernels_bit_for_bit() {
    use crate::repacked::{repacked_kernels, tiled_kernel, TILED_MIN_ROWS};
    let mut rng = Rng(0x0bad_cafe_1234);
    for t in [GgmlType::Q4_K, GgmlType::Q6_K] {
        let n_out = 16;
        let one = |tok: usize, n_tokens: usize| match (repacked_kernels(t, n_out), tiled_kernel(t))
        {
            (Some(k), _) => k.for_row(tok, n_tokens),
            (None, Some(k)) if n_tokens >= TILED_MIN_ROWS => k,
            _ => vec_dot_kernel(t),
        };
        assert_batched_equals_one_row(t, (512, n_out), &[1, 3, 4, 7, 8, 13], &mut rng, one);
    }
}

/// Rows given batch places other than their own get the order of those places: for Q4_K
/// (repacked) the GEMM order where the place is in a whole group of four and the GEMV order
/// elsewhere, for Q6_K the tiled order in batches of 8 or more; every output exactly the
/// bits of that one-row kernel. Places equal to the rows' own give `matmul`'s results.
#[test]
fn matmul_rows_follow_their_batch_places_bit_for_bit() {
    use crate::matmul::{matmul_many, matmul_many_rows, quantize_activations, BatchRow, Product};
    use crate::repacked::{repacked_kernels, tiled_kernel};
    let mut rng = Rng(0x91ac_e5ba_7c4e);
    let pool = crate::pool::ThreadPool::new(2);
    let (n_in, n_out, n_tokens) = (512, 16, 11);
    // Places as a reference reading requests of various lengths would give them.
    let places: Vec<BatchRow> = [
        (0, 1),
        (5, 7),
        (6, 7),
        (0, 9),
        (1, 9),
        (2, 9),
        (3, 9),
        (8, 9),
    ]
    .into_iter()
    .chain([(4, 6), (5, 6), (2, 3)])
    .map(|(index, of)| BatchRow { index, of })
    .collect();
    for t in [GgmlType::Q4_K, GgmlType::Q6_K] {
        let w = random_weights(t, n_out * n_in / t.block_size(), &mut rng);
        let (w_row, a_row) = (
            t.row_bytes(n_in).unwrap(),
            vec_dot_type(t).row_bytes(n_in).unwrap(),
        );
        let x: Vec<f32> = (0..n_tokens * n_in).map(|_| rng.f32()).collect();
        let mut acts = Vec::new();
        quantize_activations(t, &x, n_in, &mut acts);
        let run = |rows: Option<&[BatchRow]>| {
            let mut out = vec![0f32; n_tokens * n_out];
            let mut p = [Product {
                w_type: t,
                w: &w,
                packed: None,
                n_out,
                out: &mut out,
            }];
            match rows {
                Some(rows) => matmul_many_rows(&pool, n_in, &acts, n_tokens, &mut p, Some(rows)),
                None => matmul_many(&pool, n_in, &acts, n_tokens, &mut p),
            }
            out
        };
        let own: Vec<BatchRow> = (0..n_tokens)
            .map(|index| BatchRow {
                index,
                of: n_tokens,
            })
            .collect();
        assert_eq!(run(Some(&own)), run(None), "{t}: own places");
        let one = |tok: usize| match (repacked_kernels(t, n_out), tiled_kernel(t)) {
            (Some(k), _) if places[tok].q4_k_gemm() => k.gemm,
            (Some(k), _) => k.gemv,
            (None, Some(k)) if places[tok].q6_k_tiled() => k,
            _ => vec_dot_kernel(t),
        };
        assert_each_output_is(
            &run(Some(&places)),
            (&w, w_row),
            (&acts, a_row),
            n_out,
            one,
            |tok| format!("{t} token {tok} at {:?}", places[tok]),
        );
    }
}

#[test]
fn activation_quantizers_give_the_reference_bits() {
    let mut rng = Rng(0x5eed_a11c);
    let mut rows: Vec<Vec<f32>> = [1e-3f32, 1.0, 3.0, 250.0]
        .iter()
        .map(|&scale| (0..32 * 24).map(|_| scale * rng.f32()).collect())
        .collect();
    // Ties: with max |x| = 127 the inverse scale is 1, so x.5 rounds half to even.
    let mut ties: Vec<f32> = (0..31).map(|i| i as f32 - 15.5).collect();
    ties.push(-127.0);
    ties.extend([0.0f32; 32]); // an all-zero block (d = 0)
    ties.extend((0..32).map(|i| if i % 2 == 0 { -0.0 } else { 1e-30 }));
    ties.extend((0..32).map(|i| if i == 5 { f32::NAN } else { i as f32 })); // to the reference
    rows.push(ties);
    for x in &rows {
        assert_quantizer_is_reference(GgmlType::Q8_0, x, |x, y| {
            reference::quantize_q8_0_act(x, as_blocks_mut(y))
        });
        assert_quantizer_is_reference(GgmlType::Q8_1, x, |x, y| {
            reference::quantize_q8_1_act(x, as_blocks_mut(y))
        });
    }
    // Q8_K: blocks of 256, the signed maximum's first occurrence deciding the sign (here
    // +|m| and −|m| both occur), an all-zero block and one with a NaN.
    let mut rows: Vec<Vec<f32>> = [1e-3f32, 1.0, 250.0]
        .iter()
        .map(|&scale| (0..256 * 3).map(|_| scale * rng.f32()).collect())
        .collect();
    let mut special: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) / 64.0).collect();
    special[7] = 3.0;
    special[200] = -3.0;
    special.extend([0.0f32; 256]);
    special.extend((0..256).map(|i| if i == 9 { f32::NAN } else { i as f32 }));
    rows.push(special);
    for x in &rows {
        assert_quantizer_is_reference(GgmlType::Q8_K, x, |x, y| {
            reference::quantize_q8_k(x, as_blocks_mut(y))
        });
    }
}

/// Asserts that [`quantize_row`] of `t` gives exactly the bytes of `reference` on `x`.
fn assert_quantizer_is_reference(t: GgmlType, x: &[f32], reference: impl Fn(&[f32], &mut [u8])) {
    let n = t.row_bytes(x.len()).unwrap();
    let (mut fast, mut slow) = (vec![0u8; n], vec![0u8; n]);
    quantize_row(t, x, &mut fast);
    reference(x, &mut slow);
    assert_eq!(fast, slow, "{t}");
}
