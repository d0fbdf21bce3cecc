//! Weight quantizers with llama.cpp's error search: what `llama-quantize` computes for each
//! row of a weight matrix, with or without an importance matrix.
//!
//! Without importance weights, each type follows ggml's `quantize_row_*_ref`
//! (`ggml/src/ggml-quants.c`); with them (one non-negative weight per column, the mean
//! squared activation an importance matrix records), ggml's `quantize_row_*_impl`. The
//! search helpers mirror ggml's:
//!
//! * [`make_qx_quants`]: symmetric scale, `x ≈ d·q` with q in −nmax..nmax−1, trying 18
//!   stretched grids and refitting `d` by weighted least squares for each;
//! * [`make_q3_quants`]: the same fit refined by moving single quants (Q3_K);
//! * [`make_qkx2_quants`] / [`make_qkx3_quants`]: affine fit `x ≈ d·q − m`, refitting
//!   `(d, m)` by weighted least squares on stretched grids (Q2_K, Q4_K, Q5_K, Q4_1, Q5_1);
//! * [`make_qp_quants`]: non-negative values (the sub-block scales themselves) on a
//!   positive grid.
//!
//! Every expression keeps ggml's order of operations, so the blocks match llama.cpp's
//! quantizer up to the rare rounding tie a fused multiply-add in ggml's build breaks the
//! other way.

use crate::blocks::*;
use crate::reference::{pack_q5, signed_absmax};

/// Below this magnitude a group of values counts as all zero (ggml's `GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;

/// Symmetric quantization of `x` to `q = L − nmax` in −nmax..nmax−1 (stored in `l` as
/// `L`, 0..2·nmax−1), returning the scale. `rmse_type` 0 takes `d = max/−nmax`; otherwise
/// the scale is refit by least squares weighted by `qw` (or by x², 1, |x|, √|x| for
/// `rmse_type` 1, 2, 3, 4) over 18 stretched grids. A negative `rmse_type` stops after the
/// first refit.
pub fn make_qx_quants(
    nmax: i32,
    x: &[f32],
    l: &mut [i8],
    rmse_type: i32,
    qw: Option<&[f32]>,
) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let mut iscale = -(nmax as f32) / max;
    if rmse_type == 0 {
        for (q, &v) in l.iter_mut().zip(x) {
            *q = (nmax + quant(iscale, v)) as i8;
        }
        return 1.0 / iscale;
    }
    let (rmse_type, return_early) = (rmse_type.abs(), rmse_type < 0);
    let weight = |i: usize| match qw {
        Some(q) => q[i],
        None => match rmse_type {
            1 => x[i] * x[i],
            2 => 1.0,
            3 => x[i].abs(),
            _ => x[i].abs().sqrt(),
        },
    };
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (i, &v) in x.iter().enumerate() {
        let q = quant(iscale, v);
        l[i] = (q + nmax) as i8;
        let (w, q) = (weight(i), q as f32);
        sumlx += w * v * q;
        suml2 += w * q * q;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for (i, &v) in x.iter().enumerate() {
            let (w, q) = (weight(i), quant(iscale, v) as f32);
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (q, &v) in l.iter_mut().zip(x) {
                *q = (nmax + quant(iscale, v)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q3_K's symmetric fit: [`make_qx_quants`]' first grid weighted by x², then up to five
/// passes moving single quants while the weighted fit improves. Quants go to `l` as
/// `q + nmax`.
pub fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (q, &v) in l.iter_mut().zip(x) {
        let lq = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *q = lq as i8;
        let w = v * v;
        sumlx += w * v * lq as f32;
        suml2 += w * lq as f32 * lq as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for (q, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let lq = *q as f32;
            let mut slx = sumlx - w * v * lq;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * lq * lq;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *q as i32 {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *q = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for q in l.iter_mut() {
        *q += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// The search settings of an affine fit: grids `iscale = (rmin + rdelta·k + nmax)/range`
/// for k in 0..=nstep, error as absolute (`mad`) or squared difference.
#[derive(Clone, Copy)]
struct AffineSearch {
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    mad: bool,
}

/// Affine quantization `x ≈ d·L − m` with L in 0..=nmax and `m ≥ 0`: ggml's
/// `make_qkx2_quants` (weights given, min/max start, `max == min` is all-equal) or
/// `make_qkx3_quants` (`weights` may be absent, meaning x², and `max <= min` is
/// all-equal). Returns `(d, m)`; quants go to `l`.
fn make_qkx_quants(
    nmax: i32,
    x: &[f32],
    weights: Option<&[f32]>,
    l: &mut [u8],
    s: AffineSearch,
    qkx3: bool,
) -> (f32, f32) {
    let n = x.len();
    let w = |i: usize| weights.map_or(x[i] * x[i], |w| w[i]);
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = w(0);
    let mut sum_x = sum_w * x[0];
    for (i, &v) in x.iter().enumerate().skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        let wi = w(i);
        sum_w += wi;
        sum_x += wi * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if (qkx3 && max <= min) || max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let err = |d: f32| if s.mad { d.abs() } else { d * d };
    let mut best_error = 0f32;
    for (i, &v) in x.iter().enumerate() {
        let q = nearest_int(iscale * (v - min)).clamp(0, nmax);
        l[i] = q as u8;
        best_error += w(i) * err(scale * q as f32 + min - v);
    }
    if s.nstep < 1 {
        return (scale, -min);
    }
    let mut aux = [0u8; 32];
    let aux = &mut aux[..n];
    for is in 0..=s.nstep {
        iscale = (s.rmin + s.rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for (i, &v) in x.iter().enumerate() {
            let q = nearest_int(iscale * (v - min)).clamp(0, nmax);
            aux[i] = q as u8;
            let (wi, q) = (w(i), q as f32);
            sum_l += wi * q;
            sum_l2 += wi * q * q;
            sum_xl += wi * q * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for (i, &v) in x.iter().enumerate() {
                cur_error += w(i) * err(this_scale * aux[i] as f32 + this_min - v);
            }
            if cur_error < best_error {
                l.copy_from_slice(aux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qkx2_quants` (see [`make_qkx_quants`]).
pub fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    (rmin, rdelta, nstep): (f32, f32, i32),
    mad: bool,
) -> (f32, f32) {
    let s = AffineSearch {
        rmin,
        rdelta,
        nstep,
        mad,
    };
    make_qkx_quants(nmax, x, Some(weights), l, s, false)
}

/// ggml's `make_qkx3_quants` with its usual search (−0.9 + 0.05·k, 37 grids, squared
/// error); `weights` `None` weighs by x².
pub fn make_qkx3_quants(nmax: i32, x: &[f32], weights: Option<&[f32]>, l: &mut [u8]) -> (f32, f32) {
    let s = AffineSearch {
        rmin: -0.9,
        rdelta: 0.05,
        nstep: 36,
        mad: false,
    };
    make_qkx_quants(nmax, x, weights, l, s, true)
}

/// Non-negative `x` on the grid `d·L`, L in 0..=nmax, weighted by `qw`: the best of nine
/// stretched grids, then up to five passes moving single quants. Returns `d`.
pub fn make_qp_quants(nmax: i32, x: &[f32], l: &mut [u8], qw: &[f32]) -> f32 {
    let max = x.iter().fold(0f32, |m, &v| m.max(v));
    if max < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / max;
    for (q, &v) in l.iter_mut().zip(x) {
        *q = nearest_int(iscale * v) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0f32;
    for (i, &v) in x.iter().enumerate() {
        let diff = v - scale * l[i] as f32;
        best_mse += qw[i] * diff * diff;
    }
    for is in (-4..=4).filter(|&is| is != 0) {
        let iscale_is = (0.1 * is as f32 + nmaxf) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0f32;
        for (i, &v) in x.iter().enumerate() {
            let q = nearest_int(iscale_is * v).min(nmax);
            let diff = v - scale_is * q as f32;
            mse += qw[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (i, &v) in x.iter().enumerate() {
        let q = nearest_int(iscale * v).min(nmax);
        l[i] = q as u8;
        let (w, q) = (qw[i], q as f32);
        sumlx += w * v * q;
        suml2 += w * q * q;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for (i, &v) in x.iter().enumerate() {
            let (w, lq) = (qw[i], l[i] as f32);
            let mut slx = sumlx - w * v * lq;
            let mut sl2 = suml2 - w * lq * lq;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(v * sl2 / slx).min(nmax);
                if new_l != l[i] as i32 {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

// ----------------------------------------------------------------------------------------
// Block packing
// ----------------------------------------------------------------------------------------

/// Packs 8 6-bit scales and mins the Q4_K/Q5_K way (inverse of [`scale_min_k4`]).
fn pack_scales_mins_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// Packs 16 6-bit scales (0..64) the Q3_K way (inverse of [`q3k_scale`] + 32).
fn pack_scales_q3(ls: &[u8; 16]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (j, &l) in ls.iter().enumerate() {
        if j < 8 {
            s[j] = l & 0xf;
        } else {
            s[j - 8] |= (l & 0xf) << 4;
        }
        s[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
    }
    s
}

/// Packs 256 2-bit values the Q2_K/Q3_K way.
fn pack_q2(l: &[u8; QK_K], qs: &mut [u8; 64]) {
    for h in 0..2 {
        for i in 0..32 {
            let base = 128 * h + i;
            qs[32 * h + i] =
                l[base] | (l[base + 32] << 2) | (l[base + 64] << 4) | (l[base + 96] << 6);
        }
    }
}

/// Requantizes sub-block `x` against `x ≈ d·q − m` (q in 0..=nmax), leaving `out` as it is
/// when `d` is 0 (ggml keeps the fit's quants there).
fn requantize_affine(x: &[f32], d: f32, m: f32, nmax: i32, out: &mut [u8]) {
    if d == 0.0 {
        return;
    }
    for (q, &v) in out.iter_mut().zip(x) {
        *q = nearest_int((v + m) / d).clamp(0, nmax) as u8;
    }
}

/// Requantizes sub-block `x` against `x ≈ d·(q − off)` (q − off in −off..off−1), leaving
/// `out` as it is when `d` is 0.
fn requantize_symmetric(x: &[f32], d: f32, off: i32, out: &mut [u8]) {
    if d == 0.0 {
        return;
    }
    for (q, &v) in out.iter_mut().zip(x) {
        *q = (nearest_int(v / d).clamp(-off, off - 1) + off) as u8;
    }
}

/// Sum of squares of `x`.
fn sum_sq(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |s, &v| s + v * v)
}

/// Importance-weighted fit weights `qw·√(σ² + x²)` of one sub-block.
fn fit_weights(qw: &[f32], x: &[f32], sigma2: f32, out: &mut [f32]) {
    for ((w, &q), &v) in out.iter_mut().zip(qw).zip(x) {
        *w = q * (sigma2 + v * v).sqrt();
    }
}

// ----------------------------------------------------------------------------------------
// K-quants
// ----------------------------------------------------------------------------------------

/// f32 → Q2_K. `qw`: importance per value of the row (ggml's `quantize_row_q2_K_impl`);
/// without it ggml's `quantize_row_q2_K_ref`.
pub fn quantize_q2_k(x: &[f32], y: &mut [BlockQ2_K], qw: Option<&[f32]>) {
    for (i, (b, x)) in y.iter_mut().zip(x.chunks_exact(QK_K)).enumerate() {
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
        let mut weight = [0f32; 16];
        match qw {
            None => {
                for j in 0..16 {
                    let xs = &x[16 * j..16 * j + 16];
                    for (w, &v) in weight.iter_mut().zip(xs) {
                        *w = v.abs();
                    }
                    (scales[j], mins[j]) = make_qkx2_quants(
                        3,
                        xs,
                        &weight,
                        &mut l[16 * j..16 * j + 16],
                        (-0.5, 0.1, 15),
                        true,
                    );
                }
                let max_scale = scales.iter().fold(0f32, |a, &s| if s > a { s } else { a });
                let max_min = mins.iter().fold(0f32, |a, &s| if s > a { s } else { a });
                if max_scale > 0.0 {
                    let iscale = 15.0 / max_scale;
                    for (sc, &s) in b.scales.iter_mut().zip(&scales) {
                        *sc = nearest_int(iscale * s) as u8;
                    }
                    b.d = F16::from_f32(max_scale / 15.0);
                } else {
                    b.scales = [0; 16];
                    b.d = F16::from_f32(0.0);
                }
                if max_min > 0.0 {
                    let iscale = 15.0 / max_min;
                    for (sc, &m) in b.scales.iter_mut().zip(&mins) {
                        *sc |= (nearest_int(iscale * m) << 4) as u8;
                    }
                    b.dmin = F16::from_f32(max_min / 15.0);
                } else {
                    b.dmin = F16::from_f32(0.0);
                }
            }
            Some(qw) => {
                let qw = &qw[QK_K * i..QK_K * (i + 1)];
                let sigma2 = sum_sq(x) / QK_K as f32;
                let mut sw = [0f32; 16];
                for j in 0..16 {
                    let xs = &x[16 * j..16 * j + 16];
                    fit_weights(&qw[16 * j..16 * j + 16], xs, sigma2, &mut weight);
                    sw[j] = weight.iter().fold(0f32, |s, &w| s + w);
                    (scales[j], mins[j]) =
                        make_qkx3_quants(3, xs, Some(&weight), &mut l[16 * j..16 * j + 16]);
                }
                let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
                let dm = make_qp_quants(15, &scales, &mut ls, &sw);
                let mm = make_qp_quants(15, &mins, &mut lm, &sw);
                b.d = F16::from_f32(dm);
                b.dmin = F16::from_f32(mm);
                for j in 0..16 {
                    b.scales[j] = ls[j] | (lm[j] << 4);
                }
            }
        }
        for j in 0..16 {
            let sc = b.scales[j];
            requantize_affine(
                &x[16 * j..16 * j + 16],
                b.d.get() * (sc & 0xf) as f32,
                b.dmin.get() * (sc >> 4) as f32,
                3,
                &mut l[16 * j..16 * j + 16],
            );
        }
        pack_q2(&l, &mut b.qs);
    }
}

/// Writes Q3_K quants `l` (0..8) as the low two bits and the high-bit mask.
fn pack_q3(mut l: [u8; QK_K], b: &mut BlockQ3_K) {
    b.hmask = [0; 32];
    for (e, q) in l.iter_mut().enumerate() {
        if *q > 3 {
            b.hmask[e % 32] |= 1 << (e / 32);
            *q -= 4;
        }
    }
    pack_q2(&l, &mut b.qs);
}

/// f32 → Q3_K. Without `qw`, ggml's `quantize_row_q3_K_ref`; with it, `_impl`.
pub fn quantize_q3_k(x: &[f32], y: &mut [BlockQ3_K], qw: Option<&[f32]>) {
    for (i, (b, x)) in y.iter_mut().zip(x.chunks_exact(QK_K)).enumerate() {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; 16];
        match qw {
            None => {
                let (mut max_scale, mut amax) = (0f32, 0f32);
                for j in 0..16 {
                    scales[j] =
                        make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
                    if scales[j].abs() > amax {
                        amax = scales[j].abs();
                        max_scale = scales[j];
                    }
                }
                if max_scale != 0.0 {
                    let iscale = -32.0 / max_scale;
                    let mut ls = [0u8; 16];
                    for j in 0..16 {
                        ls[j] = (nearest_int(iscale * scales[j]).clamp(-32, 31) + 32) as u8;
                    }
                    b.scales = pack_scales_q3(&ls);
                    b.d = F16::from_f32(1.0 / iscale);
                } else {
                    b.scales = [0; 12];
                    b.d = F16::from_f32(0.0);
                }
            }
            Some(qw) => {
                let qw = &qw[QK_K * i..QK_K * (i + 1)];
                let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
                let mut weight = [0f32; 16];
                let mut sw = [0f32; 16];
                for j in 0..16 {
                    let xs = &x[16 * j..16 * j + 16];
                    fit_weights(&qw[16 * j..16 * j + 16], xs, sigma2, &mut weight);
                    sw[j] = weight.iter().fold(0f32, |s, &w| s + w);
                    scales[j] =
                        make_qx_quants(4, xs, &mut l[16 * j..16 * j + 16], 1, Some(&weight));
                }
                let mut ls = [0i8; 16];
                let d_block = make_qx_quants(32, &scales, &mut ls, 1, Some(&sw));
                b.scales = pack_scales_q3(&ls.map(|v| v as u8));
                b.d = F16::from_f32(d_block);
            }
        }
        let mut q = l.map(|v| v as u8);
        for j in 0..16 {
            let d = b.d.get() * q3k_scale(j, &b.scales) as f32;
            requantize_symmetric(&x[16 * j..16 * j + 16], d, 4, &mut q[16 * j..16 * j + 16]);
        }
        pack_q3(q, b);
    }
}

/// The per-32 affine fits of a Q4_K/Q5_K block: `(scales, mins, quants)`. Without `qw`,
/// ggml's `_ref` fit (weights `rms + |x|`, `make_qkx2_quants` with `search`); with it, the
/// `_impl` fit (weights `qw·√(σ² + x²)`, `make_qkx3_quants`) plus the sums of weights.
fn fit_k4(
    x: &[f32],
    qw: Option<&[f32]>,
    nmax: i32,
    search: (f32, f32, i32),
) -> ([f32; 8], [f32; 8], [f32; 8], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins, mut sw) = ([0f32; 8], [0f32; 8], [0f32; 8]);
    let mut weights = [0f32; 32];
    let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let lj = &mut l[32 * j..32 * j + 32];
        match qw {
            None => {
                let av_x = (sum_sq(xs) / 32.0).sqrt();
                for (w, &v) in weights.iter_mut().zip(xs) {
                    *w = av_x + v.abs();
                }
                (scales[j], mins[j]) = make_qkx2_quants(nmax, xs, &weights, lj, search, false);
            }
            Some(qw) => {
                fit_weights(&qw[32 * j..32 * j + 32], xs, sigma2, &mut weights);
                sw[j] = weights.iter().fold(0f32, |s, &w| s + w);
                (scales[j], mins[j]) = make_qkx3_quants(nmax, xs, Some(&weights), lj);
            }
        }
    }
    (scales, mins, sw, l)
}

/// Quantizes the 8 scales and mins of a Q4_K/Q5_K block to 6 bits: `(d, dmin, packed)`.
/// Without importance, by the largest (ggml's `_ref`); with it, by [`make_qp_quants`].
fn scales_k4(scales: &[f32; 8], mins: &[f32; 8], sw: Option<&[f32; 8]>) -> (F16, F16, [u8; 12]) {
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    match sw {
        None => {
            let max_scale = scales.iter().fold(0f32, |a, &s| if s > a { s } else { a });
            let max_min = mins.iter().fold(0f32, |a, &s| if s > a { s } else { a });
            let inv_scale = if max_scale > 0.0 {
                63.0 / max_scale
            } else {
                0.0
            };
            let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
            for j in 0..8 {
                ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
                lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
            }
            (
                F16::from_f32(max_scale / 63.0),
                F16::from_f32(max_min / 63.0),
                pack_scales_mins_k4(&ls, &lm),
            )
        }
        Some(sw) => {
            let d = make_qp_quants(63, scales, &mut ls, sw);
            let m = make_qp_quants(63, mins, &mut lm, sw);
            ls = ls.map(|v| v.min(63));
            lm = lm.map(|v| v.min(63));
            (
                F16::from_f32(d),
                F16::from_f32(m),
                pack_scales_mins_k4(&ls, &lm),
            )
        }
    }
}

/// A Q4_K/Q5_K block's fit, scales and requantized quants.
fn quantize_k4(
    x: &[f32],
    qw: Option<&[f32]>,
    nmax: i32,
    search: (f32, f32, i32),
) -> (F16, F16, [u8; 12], [u8; QK_K]) {
    let (scales, mins, sw, mut l) = fit_k4(x, qw, nmax, search);
    let (d, dmin, packed) = scales_k4(&scales, &mins, qw.map(|_| &sw));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        requantize_affine(
            &x[32 * j..32 * j + 32],
            d.get() * sc as f32,
            dmin.get() * m as f32,
            nmax,
            &mut l[32 * j..32 * j + 32],
        );
    }
    (d, dmin, packed, l)
}

/// f32 → Q4_K. Without `qw`, ggml's `quantize_row_q4_K_ref`; with it, `_impl`.
pub fn quantize_q4_k(x: &[f32], y: &mut [BlockQ4_K], qw: Option<&[f32]>) {
    for (i, (b, x)) in y.iter_mut().zip(x.chunks_exact(QK_K)).enumerate() {
        let qw = qw.map(|q| &q[QK_K * i..QK_K * (i + 1)]);
        let (d, dmin, scales, l) = quantize_k4(x, qw, 15, (-1.0, 0.1, 20));
        (b.d, b.dmin, b.scales) = (d, dmin, scales);
        for c in 0..4 {
            for j in 0..32 {
                b.qs[32 * c + j] = l[64 * c + j] | (l[64 * c + 32 + j] << 4);
            }
        }
    }
}

/// f32 → Q5_K. Without `qw`, ggml's `quantize_row_q5_K_ref`; with it, `_impl`.
pub fn quantize_q5_k(x: &[f32], y: &mut [BlockQ5_K], qw: Option<&[f32]>) {
    for (i, (b, x)) in y.iter_mut().zip(x.chunks_exact(QK_K)).enumerate() {
        let qw = qw.map(|q| &q[QK_K * i..QK_K * (i + 1)]);
        let (d, dmin, scales, l) = quantize_k4(x, qw, 31, (-0.5, 0.1, 15));
        (b.d, b.dmin, b.scales) = (d, dmin, scales);
        b.qh = [0; 32];
        for c in 0..4 {
            for j in 0..32 {
                let (q0, q1) = (l[64 * c + j], l[64 * c + 32 + j]);
                b.qs[32 * c + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
                b.qh[j] |= ((q0 >> 4) << (2 * c)) | ((q1 >> 4) << (2 * c + 1));
            }
        }
    }
}

/// f32 → Q6_K. Without `qw`, ggml's `quantize_row_q6_K_ref`; with it, `_impl` (the
/// importance weighs the per-16 fits directly).
pub fn quantize_q6_k(x: &[f32], y: &mut [BlockQ6_K], qw: Option<&[f32]>) {
    for (i, (b, x)) in y.iter_mut().zip(x.chunks_exact(QK_K)).enumerate() {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut max_abs) = (0f32, 0f32);
        for j in 0..16 {
            let w = qw.map(|q| &q[QK_K * i + 16 * j..QK_K * i + 16 * j + 16]);
            scales[j] = make_qx_quants(
                32,
                &x[16 * j..16 * j + 16],
                &mut l[16 * j..16 * j + 16],
                1,
                w,
            );
            if scales[j].abs() > max_abs {
                max_abs = scales[j].abs();
                max_scale = scales[j];
            }
        }
        if max_abs < GROUP_MAX_EPS {
            *b = BlockQ6_K {
                ql: [0; 128],
                qh: [0; 64],
                scales: [0; 16],
                d: F16::from_f32(0.0),
            };
            continue;
        }
        let iscale = -128.0 / max_scale;
        b.d = F16::from_f32(1.0 / iscale);
        for (sc, &s) in b.scales.iter_mut().zip(&scales) {
            *sc = nearest_int(iscale * s).min(127) as i8;
        }
        let mut q = l.map(|v| v as u8);
        for j in 0..16 {
            let d = b.d.get() * b.scales[j] as f32;
            requantize_symmetric(&x[16 * j..16 * j + 16], d, 32, &mut q[16 * j..16 * j + 16]);
        }
        for h in 0..2 {
            for j in 0..32 {
                let base = 128 * h + j;
                let (q1, q2, q3, q4) = (q[base], q[base + 32], q[base + 64], q[base + 96]);
                b.ql[64 * h + j] = (q1 & 0xf) | ((q3 & 0xf) << 4);
                b.ql[64 * h + j + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
                b.qh[32 * h + j] =
                    (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
    }
}

// ----------------------------------------------------------------------------------------
// 32-wide types with an importance matrix
// ----------------------------------------------------------------------------------------

/// Runs `fit(block, values, weights)` for each 32-value block of row `x`, the weights being
/// ggml's `_impl` fit weights `qw·√(σ² + x²)` with σ² the mean square of the whole row.
fn for_weighted_blocks<B>(
    x: &[f32],
    y: &mut [B],
    qw: &[f32],
    mut fit: impl FnMut(&mut B, &[f32], &[f32; QK]),
) {
    let sigma2 = sum_sq(x) / x.len() as f32;
    let mut weight = [0f32; QK];
    for ((b, xb), qb) in y
        .iter_mut()
        .zip(x.chunks_exact(QK))
        .zip(qw.chunks_exact(QK))
    {
        fit_weights(qb, xb, sigma2, &mut weight);
        fit(b, xb, &weight);
    }
}

/// f32 → Q4_0 weighted by importance `qw` (ggml's `quantize_row_q4_0_impl`).
pub fn quantize_q4_0_imatrix(x: &[f32], y: &mut [BlockQ4_0], qw: &[f32]) {
    for_weighted_blocks(x, y, qw, |b, xb, weight| {
        let mut l = [0i8; QK];
        b.d = F16::from_f32(make_qx_quants(8, xb, &mut l, 1, Some(weight)));
        for j in 0..16 {
            b.qs[j] = l[j] as u8 | ((l[j + 16] as u8) << 4);
        }
    });
}

/// f32 → Q4_1 weighted by importance `qw` (ggml's `quantize_row_q4_1_impl`).
pub fn quantize_q4_1_imatrix(x: &[f32], y: &mut [BlockQ4_1], qw: &[f32]) {
    for_weighted_blocks(x, y, qw, |b, xb, weight| {
        let mut l = [0u8; QK];
        let (d, min) = make_qkx3_quants(15, xb, Some(weight), &mut l);
        b.d = F16::from_f32(d);
        b.m = F16::from_f32(-min);
        for j in 0..16 {
            b.qs[j] = l[j] | (l[j + 16] << 4);
        }
    });
}

/// f32 → Q5_0 weighted by importance `qw` (ggml's `quantize_row_q5_0_impl`).
pub fn quantize_q5_0_imatrix(x: &[f32], y: &mut [BlockQ5_0], qw: &[f32]) {
    for_weighted_blocks(x, y, qw, |b, xb, weight| {
        let mut l = [0i8; QK];
        b.d = F16::from_f32(make_qx_quants(16, xb, &mut l, 1, Some(weight)));
        pack_q5(&l.map(|v| v as u8), &mut b.qs, &mut b.qh);
    });
}

/// f32 → Q5_1 weighted by importance `qw` (ggml's `quantize_row_q5_1_impl`).
pub fn quantize_q5_1_imatrix(x: &[f32], y: &mut [BlockQ5_1], qw: &[f32]) {
    for_weighted_blocks(x, y, qw, |b, xb, weight| {
        let mut l = [0u8; QK];
        let (d, min) = make_qkx3_quants(31, xb, Some(weight), &mut l);
        b.d = F16::from_f32(d);
        b.m = F16::from_f32(-min);
        pack_q5(&l, &mut b.qs, &mut b.qh);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic, weight-like row: mostly small values, a few large ones.
    fn row(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let u = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                if i % 37 == 0 {
                    u * 0.6
                } else {
                    u * 0.05
                }
            })
            .collect()
    }

    fn rmse(a: &[f32], b: &[f32]) -> f32 {
        let s: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        (s / a.len() as f32).sqrt()
    }

    /// Quantizes `x` to `t` (with `qw` when given) and returns it dequantized.
    fn round_trip(t: crate::GgmlType, x: &[f32], qw: Option<&[f32]>) -> Vec<f32> {
        let mut q = vec![0u8; t.row_bytes(x.len()).unwrap()];
        crate::quantize_row_weights(t, x, &mut q, qw);
        let mut out = vec![0f32; x.len()];
        crate::dequantize_row(t, &q, &mut out);
        out
    }

    /// Every searched quantizer, with and without importance, stays within its bit width's
    /// error, and weighting by importance lowers the error on the important columns.
    #[test]
    fn searched_fits_are_accurate_and_importance_helps() {
        use crate::GgmlType::*;
        let x = row(4 * QK_K, 7);
        let qw: Vec<f32> = (0..x.len())
            .map(|i| if i % 8 == 0 { 50.0 } else { 0.1 })
            .collect();
        let weighted_error = |y: &[f32]| -> f32 {
            x.iter()
                .zip(y)
                .zip(&qw)
                .map(|((a, b), w)| w * (a - b) * (a - b))
                .sum()
        };
        for (t, bound) in [
            (Q2_K, 0.02),
            (Q3_K, 0.01),
            (Q4_K, 0.005),
            (Q5_K, 0.0025),
            (Q6_K, 0.0012),
            (Q4_0, 0.008),
            (Q4_1, 0.007),
            (Q5_0, 0.004),
            (Q5_1, 0.0035),
        ] {
            let plain = round_trip(t, &x, None);
            let weighted = round_trip(t, &x, Some(&qw));
            let (ep, ew) = (rmse(&x, &plain), rmse(&x, &weighted));
            eprintln!("{t}: rmse {ep} {ew}");
            assert!(
                ep < bound && ew < 3.0 * bound,
                "{t}: rmse {ep}, {ew} vs {bound}"
            );
            let (wp, ww) = (weighted_error(&plain), weighted_error(&weighted));
            assert!(ww < wp, "{t}: importance-weighted error {ww} ≥ {wp}");
        }
    }

    #[test]
    fn zero_rows_quantize_to_zero() {
        let x = vec![0f32; QK_K];
        for t in [
            crate::GgmlType::Q4_K,
            crate::GgmlType::Q6_K,
            crate::GgmlType::Q3_K,
        ] {
            assert!(round_trip(t, &x, None).iter().all(|&v| v == 0.0), "{t}");
            let ones = vec![1.0; QK_K];
            assert!(
                round_trip(t, &x, Some(&ones)).iter().all(|&v| v == 0.0),
                "{t}"
            );
        }
    }
}
