//! How far apart two copies of the same weights may be when they differ only by storage
//! format. Rounding values to a block format adds error of about `step/√12` per value,
//! where `step` is the grid spacing of the block the value falls in; for f16 and bf16 the
//! spacing is the unit in the last place. This model, evaluated on the actual values,
//! gives the expected root-mean-square difference that quantization alone explains.

use huarizo_engine::GgmlType;

/// Grid of a block format: values per (sub-)block, intervals across its range, and
/// whether the range is symmetric about zero (`±max`) or spans `min..max`.
fn grid(ty: GgmlType) -> Option<(usize, f64, bool)> {
    use GgmlType::*;
    Some(match ty {
        Q4_0 => (32, 16.0, true),
        Q4_1 => (32, 15.0, false),
        Q5_0 => (32, 32.0, true),
        Q5_1 => (32, 31.0, false),
        Q8_0 | Q8_1 => (32, 254.0, true),
        Q2_K => (16, 3.0, false),
        Q3_K => (16, 8.0, true),
        Q4_K => (32, 15.0, false),
        Q5_K => (32, 31.0, false),
        Q6_K => (16, 64.0, true),
        Q8_K => (256, 254.0, true),
        F32 | F16 | BF16 => return None,
    })
}

/// Expected sum of squared rounding errors when `values` are stored as `ty`.
pub fn expected_sq_error(ty: GgmlType, values: &[f32]) -> f64 {
    match ty {
        GgmlType::F32 => 0.0,
        // Relative spacing 2^-10 (f16) or 2^-7 (bf16) at the top of a binade, half that at
        // the bottom: 2^-10.5 on average.
        GgmlType::F16 | GgmlType::BF16 => {
            let rel = if ty == GgmlType::F16 {
                (-10.5f64).exp2()
            } else {
                (-7.5f64).exp2()
            };
            values
                .iter()
                .map(|&x| (x as f64 * rel).powi(2) / 12.0)
                .sum()
        }
        _ => {
            let (size, intervals, symmetric) = grid(ty).expect("block types have a grid");
            values
                .chunks(size)
                .map(|block| {
                    let (lo, hi) = block
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                            (lo.min(x), hi.max(x))
                        });
                    let range = if symmetric {
                        2.0 * (lo.abs().max(hi.abs()) as f64)
                    } else {
                        (hi - lo) as f64
                    };
                    let step = range / intervals;
                    block.len() as f64 * step * step / 12.0
                })
                .sum()
        }
    }
}

/// The types whose reference quantizer is the one llama.cpp uses (no search), so that
/// re-quantizing the original weights reproduces the file's values.
fn exact_quantizer(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0)
}

/// The snap test: if `fine` holds the weights `coarse` was quantized from (or a finer
/// re-quantization of them), quantizing `fine` to `coarse_ty` lands every value on the
/// grid level `coarse` has. Returns the share of values that land half a grid step or more
/// away, or `None` when `coarse_ty` has no exact reference quantizer (K-quants search
/// their grids) or the lengths are not whole blocks.
pub fn snap_mismatch(coarse_ty: GgmlType, coarse: &[f32], fine: &[f32]) -> Option<f64> {
    if !exact_quantizer(coarse_ty) || coarse.len() != fine.len() {
        return None;
    }
    let (size, intervals, symmetric) = grid(coarse_ty)?;
    if !coarse.len().is_multiple_of(size) || coarse.is_empty() {
        return None;
    }
    let snapped = huarizo_engine::weights::roundtrip(coarse_ty, fine);
    let mut off = 0usize;
    for (c, s) in coarse.chunks(size).zip(snapped.chunks(size)) {
        let (lo, hi) = c
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        let range = if symmetric {
            2.0 * lo.abs().max(hi.abs())
        } else {
            hi - lo
        };
        let half_step = 0.5 * range / intervals as f32;
        off += c
            .iter()
            .zip(s)
            .filter(|(a, b)| (*a - *b).abs() >= half_step.max(f32::MIN_POSITIVE))
            .count();
    }
    Some(off as f64 / coarse.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_matches_real_rounding_error() {
        // A smooth, varied signal; quantize with the reference quantizers and compare the
        // measured squared error with the model's expectation (within a factor of 1.6).
        let values: Vec<f32> = (0..8192)
            .map(|i| ((i as f32 * 0.37).sin() * (1.0 + (i % 97) as f32 / 50.0)) * 0.02)
            .collect();
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q6_K,
            GgmlType::F16,
        ] {
            let measured = huarizo_engine::weights::roundtrip_sq_error(ty, &values);
            let expected = expected_sq_error(ty, &values);
            let ratio = measured / expected;
            assert!(
                (1.0 / 1.6..1.6).contains(&ratio),
                "{ty}: measured {measured:e}, expected {expected:e}"
            );
        }
    }

    #[test]
    fn the_snap_test_tells_requantization_from_changed_weights() {
        let original: Vec<f32> = (0..4096)
            .map(|i| ((i as f32 * 0.61).sin() + (i as f32 * 0.13).cos()) * 0.03)
            .collect();
        let coarse = huarizo_engine::weights::roundtrip(GgmlType::Q4_1, &original);
        // The original, and a Q8_0 copy of the coarse values, both snap back.
        assert_eq!(snap_mismatch(GgmlType::Q4_1, &coarse, &original), Some(0.0));
        let finer = huarizo_engine::weights::roundtrip(GgmlType::Q8_0, &coarse);
        assert!(snap_mismatch(GgmlType::Q4_1, &coarse, &finer).unwrap() < 0.01);
        // Weights changed by 5% of their size do not.
        let changed: Vec<f32> = original
            .iter()
            .enumerate()
            .map(|(i, x)| x + 0.05 * 0.03 * ((i as f32 * 7.7).sin() * 1.7))
            .collect();
        assert!(snap_mismatch(GgmlType::Q4_1, &coarse, &changed).unwrap() > 0.05);
        // K-quants search their grids: no verdict from this test.
        assert_eq!(snap_mismatch(GgmlType::Q4_K, &coarse, &original), None);
    }
}
