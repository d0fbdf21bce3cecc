//! Which llama.cpp build huarizo's arithmetic follows.
//!
//! ggml's CPU backend sums some things in an order that depends on the vector width it was
//! compiled for: the f16 dot products and the f16 GEMM of attention, the chunk sums of
//! softmax, and the `exp` polynomial of softmax and SiLU. A llama.cpp built on an AVX-512
//! machine and one built on an AVX2 machine therefore give slightly different logits for
//! the same file, and on small quantized models those differences grow through the 8-bit
//! activation roundings. huarizo follows one of the two builds: by default the one that
//! `GGML_NATIVE` would make on this CPU (AVX-512 if the CPU has AVX-512 F and DQ), or the
//! one named by `HUARIZO_GGML_ISA=avx2|avx512`, or by [`set_ggml_isa`].
//!
//! The integer parts of the quantized dot products are the same in both builds.

use std::sync::atomic::{AtomicU8, Ordering};

/// A llama.cpp CPU build whose summation orders huarizo reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlIsa {
    /// Built for AVX2 + FMA + F16C (8 f32 lanes).
    Avx2,
    /// Built for AVX-512 F/DQ (16 f32 lanes).
    Avx512,
}

impl GgmlIsa {
    /// f32 lanes of the build's vector registers.
    pub fn lanes(self) -> usize {
        match self {
            GgmlIsa::Avx2 => 8,
            GgmlIsa::Avx512 => 16,
        }
    }

    /// The name `HUARIZO_GGML_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            GgmlIsa::Avx2 => "avx2",
            GgmlIsa::Avx512 => "avx512",
        }
    }

    /// Parses `avx2` or `avx512`.
    pub fn parse(s: &str) -> Option<GgmlIsa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avx2" => Some(GgmlIsa::Avx2),
            "avx512" => Some(GgmlIsa::Avx512),
            _ => None,
        }
    }
}

const UNSET: u8 = 0;
const AVX2: u8 = 1;
const AVX512: u8 = 2;

static CHOSEN: AtomicU8 = AtomicU8::new(UNSET);

/// The build huarizo follows (chosen at first use, see the module documentation).
pub fn ggml_isa() -> GgmlIsa {
    match CHOSEN.load(Ordering::Relaxed) {
        AVX2 => GgmlIsa::Avx2,
        AVX512 => GgmlIsa::Avx512,
        _ => {
            let isa = from_env().unwrap_or_else(native);
            // A concurrent first use computes the same value.
            CHOSEN.store(code(isa), Ordering::Relaxed);
            isa
        }
    }
}

/// Makes huarizo follow `isa` from now on (for comparisons with a reference made by a
/// given llama.cpp build), in llama.cpp's summation orders throughout
/// ([`crate::Arithmetic::Ggml`]; call [`crate::set_arithmetic`] after this for the block-sum
/// order with this build's other orders). Call it before running a model: results of a
/// forward pass that straddles the change mix both orders.
pub fn set_ggml_isa(isa: GgmlIsa) {
    CHOSEN.store(code(isa), Ordering::Relaxed);
    crate::set_arithmetic(crate::Arithmetic::Ggml);
}

fn code(isa: GgmlIsa) -> u8 {
    match isa {
        GgmlIsa::Avx2 => AVX2,
        GgmlIsa::Avx512 => AVX512,
    }
}

fn from_env() -> Option<GgmlIsa> {
    let value = std::env::var("HUARIZO_GGML_ISA").ok()?;
    let isa = GgmlIsa::parse(&value);
    if isa.is_none() {
        eprintln!("warning: HUARIZO_GGML_ISA={value:?} is not avx2 or avx512; ignored");
    }
    isa
}

/// What llama.cpp's native build would use on this CPU.
fn native() -> GgmlIsa {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
        return GgmlIsa::Avx512;
    }
    GgmlIsa::Avx2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for isa in [GgmlIsa::Avx2, GgmlIsa::Avx512] {
            assert_eq!(GgmlIsa::parse(isa.name()), Some(isa));
        }
        assert_eq!(GgmlIsa::parse("sse"), None);
    }
}
