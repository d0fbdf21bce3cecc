//! Block layouts of the ggml quantized formats, byte for byte as ggml stores them
//! (`ggml/src/ggml-common.h`), and safe views of byte slices as block slices.
//!
//! Every field is a byte array (`[u8; N]`, `[i8; N]` or the [`F16`] newtype), so every block
//! type has alignment 1, no padding, and every bit pattern is a valid value. That is what
//! makes [`as_blocks`] sound on any `&[u8]`: GGUF tensor data is only 32-byte aligned per
//! tensor and rows are not aligned at all. Multi-byte numbers are little-endian, as in GGUF.
//!
//! Notation in the formula comments: `q` is the stored quant of one weight, `d`/`dmin` the
//! block scales (f16 unless noted), `sc`/`m` the sub-block scale and min.

use std::mem::{align_of, size_of};

/// Elements per block of the 32-wide formats (Q4_0 … Q8_1).
pub const QK: usize = 32;
/// Elements per super-block of the k-quants (Q2_K … Q8_K).
pub const QK_K: usize = 256;

/// An IEEE half float stored as two little-endian bytes.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F16(pub [u8; 2]);

impl F16 {
    /// The value as f32 (exact).
    #[inline(always)]
    pub fn get(self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.0))
    }

    /// Stores `x` rounded to nearest-even half, as ggml's `GGML_FP32_TO_FP16` (F16C
    /// `_cvtss_sh(x, 0)`) does.
    #[inline]
    pub fn set(&mut self, x: f32) {
        self.0 = half::f16::from_f32(x).to_le_bytes();
    }

    /// `x` rounded to nearest-even half.
    #[inline]
    pub fn from_f32(x: f32) -> F16 {
        F16(half::f16::from_f32(x).to_le_bytes())
    }
}

/// Half → single conversion by bit manipulation (exact for every input, including
/// subnormals, infinities and NaN). Kept local so SIMD code can inline it.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let exp_mant = (h & 0x7fff) << 13;
    let exp = exp_mant & (0x7c00 << 13);
    let mut o = exp_mant + ((127 - 15) << 23);
    if exp == 0x7c00 << 13 {
        // Inf or NaN: move the exponent to all ones.
        o += (128 - 16) << 23;
    } else if exp == 0 {
        // Zero or subnormal: renormalise through a float subtraction (exact).
        o += 1 << 23;
        o = (f32::from_bits(o) - f32::from_bits(113 << 23)).to_bits();
    }
    f32::from_bits(o | sign)
}

/// bfloat16 (top 16 bits of an f32) → f32.
#[inline(always)]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// f32 → bfloat16, rounding to nearest-even and quieting NaN, as ggml's
/// `ggml_compute_fp32_to_bf16` does.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// ggml's `nearest_int`: round to nearest, ties to even, by adding 1.5·2²³ (valid for
/// |x| ≤ 4194303). The k-quant quantizers use it, so its tie behaviour matters.
#[inline(always)]
pub fn nearest_int(x: f32) -> i32 {
    debug_assert!(x.abs() <= 4194303.0, "nearest_int({x}) out of range");
    let v = x + 12582912.0;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// A ggml block type: plain bytes, alignment 1, every bit pattern valid.
///
/// # Safety
/// Implementors must be `#[repr(C)]` structs made only of `u8`/`i8` arrays and [`F16`]
/// (so `align_of == 1`, no padding, no invalid bit patterns).
pub unsafe trait Block: Copy + 'static {
    /// Elements one block holds.
    const ELEMS: usize;
}

/// Views `bytes` as blocks. Panics unless `bytes.len()` is a whole number of blocks.
#[inline]
pub fn as_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    const { assert!(align_of::<B>() == 1) };
    let size = size_of::<B>();
    assert!(
        bytes.len().is_multiple_of(size),
        "{} bytes are not a whole number of {size}-byte blocks",
        bytes.len()
    );
    // SAFETY: `B: Block` guarantees alignment 1, no padding and that any bytes form a valid
    // `B`; the length is an exact multiple of the block size, and the lifetime and
    // shared-ness of the borrow carry over unchanged.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) }
}

/// [`as_blocks`] for four rows at once, spelled out so that it inlines into hot callers
/// (`[_; 4]::map` over it did not, and cost a call per weight row).
#[inline(always)]
pub fn as_blocks4<B: Block>(rows: [&[u8]; 4]) -> [&[B]; 4] {
    [
        as_blocks(rows[0]),
        as_blocks(rows[1]),
        as_blocks(rows[2]),
        as_blocks(rows[3]),
    ]
}

/// Mutable version of [`as_blocks`].
#[inline]
pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> &mut [B] {
    const { assert!(align_of::<B>() == 1) };
    let size = size_of::<B>();
    assert!(
        bytes.len().is_multiple_of(size),
        "{} bytes are not a whole number of {size}-byte blocks",
        bytes.len()
    );
    // SAFETY: as in `as_blocks`; additionally any value written through the result is
    // plain bytes, so the byte slice stays valid, and the exclusive borrow is carried over.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), bytes.len() / size) }
}

macro_rules! block {
    ($name:ident, $elems:expr, $size:expr) => {
        // SAFETY: the struct is `#[repr(C)]` of byte arrays and `F16` only (checked by the
        // size assertion: any padding would make it larger).
        unsafe impl Block for $name {
            const ELEMS: usize = $elems;
        }
        const _: () = assert!(size_of::<$name>() == $size && align_of::<$name>() == 1);
    };
}

/// Q4_0: `x = d · (q − 8)`, q in 0..16. 32 weights in 18 bytes = 4.5 bits per weight.
/// Byte `j` of `qs` holds weight `j` (low nibble) and weight `j + 16` (high nibble).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: F16,
    /// 4-bit quants.
    pub qs: [u8; QK / 2],
}
block!(BlockQ4_0, QK, 18);

/// Q4_1: `x = d · q + m`, q in 0..16. 32 weights in 20 bytes = 5 bits per weight.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: F16,
    /// Minimum (offset).
    pub m: F16,
    /// 4-bit quants, nibble order as Q4_0.
    pub qs: [u8; QK / 2],
}
block!(BlockQ4_1, QK, 20);

/// Q5_0: `x = d · (q − 16)`, q in 0..32. 32 weights in 22 bytes = 5.5 bits per weight.
/// Bit `j` of the little-endian `qh` is the fifth bit of weight `j`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: F16,
    /// Fifth bits.
    pub qh: [u8; 4],
    /// Low 4 bits, nibble order as Q4_0.
    pub qs: [u8; QK / 2],
}
block!(BlockQ5_0, QK, 22);

/// Q5_1: `x = d · q + m`, q in 0..32. 32 weights in 24 bytes = 6 bits per weight.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: F16,
    /// Minimum (offset).
    pub m: F16,
    /// Fifth bits, as Q5_0.
    pub qh: [u8; 4],
    /// Low 4 bits, nibble order as Q4_0.
    pub qs: [u8; QK / 2],
}
block!(BlockQ5_1, QK, 24);

/// Q8_0: `x = d · q`, q in −128..128. 32 weights in 34 bytes = 8.5 bits per weight.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: F16,
    /// Quants.
    pub qs: [i8; QK],
}
block!(BlockQ8_0, QK, 34);

/// Q8_1: `x = d · q` with `s = d · Σq` precomputed (for the `m · Σy` term of Q4_1/Q5_1
/// dot products). 32 values in 36 bytes = 9 bits per value. Activation format.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: F16,
    /// `d · Σ qs`, rounded to f16.
    pub s: F16,
    /// Quants.
    pub qs: [i8; QK],
}
block!(BlockQ8_1, QK, 36);

/// Q2_K: 16 sub-blocks of 16; `x = d·(sc & 15)·q − dmin·(sc >> 4)`, q in 0..4.
/// 256 weights in 84 bytes = 2.625 bits per weight.
/// Weight `e` is bits `2·((e % 128) / 32)` of `qs[32·(e / 128) + e % 32]`; its scale byte is
/// `scales[e / 16]`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ2_K {
    /// 4-bit scale (low nibble) and 4-bit min (high nibble) per sub-block.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales.
    pub d: F16,
    /// Super-block scale of the mins.
    pub dmin: F16,
}
block!(BlockQ2_K, QK_K, 84);

/// Q3_K: 16 sub-blocks of 16; `x = d · (sc − 32) · (q − 4)`, q in 0..8, sc 6-bit.
/// 256 weights in 110 bytes = 3.4375 bits per weight.
/// Weight `e`: low two bits as Q2_K, third bit is bit `e / 32` of `hmask[e % 32]`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ3_K {
    /// Third (high) bits of the quants.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of the quants.
    pub qs: [u8; QK_K / 4],
    /// 16 6-bit scales, packed (see [`q3k_scale`]).
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: F16,
}
block!(BlockQ3_K, QK_K, 110);

/// Q4_K: 8 sub-blocks of 32; `x = d·sc·q − dmin·m`, q in 0..16, sc and m 6-bit.
/// 256 weights in 144 bytes = 4.5 bits per weight.
/// Weight `e` is nibble `(e % 64) / 32` of `qs[32·(e / 64) + e % 32]`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_K {
    /// Super-block scale of the scales.
    pub d: F16,
    /// Super-block scale of the mins.
    pub dmin: F16,
    /// 8 scales and 8 mins, 6 bits each (see [`scale_min_k4`]).
    pub scales: [u8; 12],
    /// 4-bit quants.
    pub qs: [u8; QK_K / 2],
}
block!(BlockQ4_K, QK_K, 144);

/// Q5_K: as Q4_K with a fifth bit, q in 0..32: bit `e / 32` of `qh[e % 32]`.
/// 256 weights in 176 bytes = 5.5 bits per weight.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_K {
    /// Super-block scale of the scales.
    pub d: F16,
    /// Super-block scale of the mins.
    pub dmin: F16,
    /// 8 scales and 8 mins, 6 bits each (see [`scale_min_k4`]).
    pub scales: [u8; 12],
    /// Fifth bits.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits, nibble order as Q4_K.
    pub qs: [u8; QK_K / 2],
}
block!(BlockQ5_K, QK_K, 176);

/// Q6_K: 16 sub-blocks of 16; `x = d · sc · (q − 32)`, q in 0..64, sc signed 8-bit.
/// 256 weights in 210 bytes = 6.5625 bits per weight.
/// Weight `e` (half `h = e / 128`, quarter `k = (e % 128) / 32`, lane `l = e % 32`): low 4
/// bits are nibble `k / 2` of `ql[64·h + 32·(k % 2) + l]`, high 2 bits are bits `2k` of
/// `qh[32·h + l]`; its scale is `scales[e / 16]`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ6_K {
    /// Low 4 bits of the quants.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the quants.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: F16,
}
block!(BlockQ6_K, QK_K, 210);

/// Q8_K: `x = d · q` with an **f32** scale and per-16 sums of the quants (for the min
/// terms of k-quant dot products). 256 values in 292 bytes. Activation format.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_K {
    /// Scale, little-endian f32.
    pub d: [u8; 4],
    /// Quants.
    pub qs: [i8; QK_K],
    /// `Σ qs[16j..16j+16]`, little-endian i16.
    pub bsums: [u8; QK_K / 16 * 2],
}
block!(BlockQ8_K, QK_K, 292);

impl BlockQ8_K {
    /// The f32 scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    /// Sum of quants `16j .. 16j + 16`.
    #[inline(always)]
    pub fn bsum(&self, j: usize) -> i32 {
        i16::from_le_bytes([self.bsums[2 * j], self.bsums[2 * j + 1]]) as i32
    }
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block (ggml's `get_scale_min_k4`).
/// Bytes 0..4 hold scales 0..4 (low 6 bits), 4..8 mins 0..4; bytes 8..12 hold the low
/// nibbles of scales/mins 4..8, whose top two bits sit in the top bits of bytes 0..8.
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Signed scale (`sc − 32`, in −32..32) of sub-block `j` (0..16) of a Q3_K block. The low
/// nibbles of scales 0..8 / 8..16 are the low / high nibbles of bytes 0..8; the top two bits
/// of scale `j` are bits `2·(j / 4)` of byte `8 + j % 4`.
#[inline(always)]
pub fn q3k_scale(j: usize, s: &[u8; 12]) -> i32 {
    let low = if j < 8 { s[j] & 0xf } else { s[j - 8] >> 4 };
    let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | (high << 4)) as i32 - 32
}

/// The 8 scales then 8 mins of a Q4_K/Q5_K block, unpacked to bytes (ggml's `utmp` shuffle).
#[inline(always)]
pub fn unpack_scales_mins_k4(q: &[u8; 12]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, q);
        out[j] = sc;
        out[8 + j] = m;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_is_exact_for_every_half() {
        for bits in 0..=u16::MAX {
            let ours = f16_to_f32(bits);
            let theirs = half::f16::from_bits(bits).to_f32();
            if theirs.is_nan() {
                assert!(ours.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{bits:#06x}");
            }
        }
    }

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-126.7), -127);
        assert_eq!(nearest_int(3.49), 3);
    }

    #[test]
    fn bf16_rounding() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (down).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2^-8 is halfway too: ties to even (up).
        assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }

    #[test]
    fn block_views_reject_partial_blocks() {
        let bytes = [0u8; 36];
        assert_eq!(as_blocks::<BlockQ4_0>(&bytes).len(), 2);
        assert!(std::panic::catch_unwind(|| as_blocks::<BlockQ8_0>(&bytes).len()).is_err());
    }
}
