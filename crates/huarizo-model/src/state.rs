//! Per-sequence state: the KV cache and the scratch buffers of the forward pass, allocated
//! once per sequence so that decoding a token allocates nothing.

use crate::config::Config;
use half::f16;
use half::vec::HalfBitsVecExt;
use huarizo_kernels::attention::q8::{self, Q8Layout};

/// How a KV cache stores keys and values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheType {
    /// f16, as llama.cpp's default cache: the arithmetic that matches llama.cpp bit for bit.
    #[default]
    F16,
    /// 8 bits per value in blocks of 32 with an f16 scale (34 bytes per 32 values): about
    /// half the memory, and faster attention at depth, in huarizo's own arithmetic
    /// (`huarizo_kernels::attention::q8`).
    Q8_0,
}

impl CacheType {
    /// Every type, for messages.
    pub const ALL: [CacheType; 2] = [CacheType::F16, CacheType::Q8_0];

    /// The type's name as llama.cpp's `--cache-type-k` spells it.
    pub fn name(self) -> &'static str {
        match self {
            CacheType::F16 => "f16",
            CacheType::Q8_0 => "q8_0",
        }
    }

    /// The type named `s` (case-insensitive).
    pub fn parse(s: &str) -> Option<CacheType> {
        CacheType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }
}

/// Keys and values of one layer for every cached position.
#[derive(Debug)]
pub struct LayerCache {
    /// `(N, Hkv·D)` keys (f16 caches; empty otherwise).
    pub k: Vec<f16>,
    /// `(N, Hkv·Dv)` values (f16 caches; empty otherwise).
    pub v: Vec<f16>,
    /// Keys of an 8-bit cache, laid out as [`State::q8_layout`] says (empty otherwise).
    pub k8: Vec<u8>,
    /// Values of an 8-bit cache (empty otherwise).
    pub v8: Vec<u8>,
}

/// Reusable buffers of the forward pass; their sizes grow to the largest batch seen.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) x: Vec<f32>,
    pub(crate) xb: Vec<f32>,
    pub(crate) q: Vec<f32>,
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    pub(crate) att: Vec<f32>,
    pub(crate) out: Vec<f32>,
    pub(crate) gate: Vec<f32>,
    pub(crate) up: Vec<f32>,
    pub(crate) logits: Vec<f32>,
    pub(crate) acts: Vec<u8>,
    /// RoPE angles of every token row of the current forward, `n_rot / 2` per row, for the
    /// two rotation settings a model may use (global layers, sliding-window layers).
    pub(crate) rope: [RopeTable; 2],
    pub(crate) attn_scratch: Vec<Vec<f32>>,
    pub(crate) spans: Vec<huarizo_kernels::attention::AttnSpan>,
    /// Each token row's place in the batch llama.cpp would have read it in, when a
    /// sequence asks for [`crate::BatchPlaces::WholePrompt`] (empty otherwise).
    pub(crate) places: Vec<huarizo_kernels::matmul::BatchRow>,
    /// The same for the rows that get logits.
    pub(crate) logit_places: Vec<huarizo_kernels::matmul::BatchRow>,
}

/// RoPE angles per token row for one `(base, freq_scale)`, valid for one forward.
#[derive(Debug, Default)]
pub(crate) struct RopeTable {
    /// `(base, freq_scale)` bits the angles were computed for, `None` when stale.
    pub(crate) key: Option<(u32, u32)>,
    /// `(cos, sin)` of each rotated pair, `n_rot / 2` per token row.
    pub(crate) angles: Vec<(f32, f32)>,
}

/// One sequence being decoded: how many positions it holds, its cache and scratch space.
#[derive(Debug)]
pub struct State {
    /// Capacity in positions.
    pub n_ctx: usize,
    /// Positions filled so far.
    pub n_past: usize,
    pub(crate) cache: Vec<LayerCache>,
    pub(crate) scratch: Scratch,
    /// The layout of every layer's 8-bit cache, `None` for an f16 cache.
    pub(crate) q8_layout: Option<Q8Layout>,
}

impl State {
    /// A fresh sequence of capacity `n_ctx` positions with a cache of type `t`. Fails when
    /// the model's head widths do not fit the type (8-bit caches need whole blocks of 32).
    pub fn with_cache_type(config: &Config, n_ctx: usize, t: CacheType) -> Result<State, String> {
        match t {
            CacheType::F16 => Ok(State::new(config, n_ctx)),
            CacheType::Q8_0 => {
                let (d, dv) = (config.head_dim, config.head_dim_v);
                if !Q8Layout::supports(d, dv) {
                    return Err(format!(
                        "a q8_0 KV cache needs head widths that are multiples of 32 up to {}; \
                         this model's are {d} (keys) and {dv} (values)",
                        q8::MAX_HEAD
                    ));
                }
                let layout = Q8Layout {
                    n_ctx,
                    n_head_kv: config.n_head_kv,
                    head_dim: d,
                    head_dim_v: dv,
                };
                let (k_bytes, v_bytes) = layout.checked_bytes().ok_or_else(|| {
                    format!("a q8_0 KV cache of {n_ctx} positions does not fit in memory")
                })?;
                // Zeroed, as the f16 cache's: pages are committed as positions are written.
                let cache = (0..config.n_layer)
                    .map(|_| LayerCache {
                        k: Vec::new(),
                        v: Vec::new(),
                        k8: vec![0u8; k_bytes],
                        v8: vec![0u8; v_bytes],
                    })
                    .collect();
                Ok(State {
                    n_ctx,
                    n_past: 0,
                    cache,
                    scratch: Scratch::default(),
                    q8_layout: Some(layout),
                })
            }
        }
    }

    /// How this sequence's cache stores keys and values.
    pub fn cache_type(&self) -> CacheType {
        match self.q8_layout {
            Some(_) => CacheType::Q8_0,
            None => CacheType::F16,
        }
    }

    /// A fresh sequence of capacity `n_ctx` positions for a model of shape `config`, with
    /// an f16 cache.
    pub fn new(config: &Config, n_ctx: usize) -> State {
        let k_row = config.n_head_kv * config.head_dim;
        let v_row = config.n_head_kv * config.head_dim_v;
        // Zeroed allocations (`vec![0u16; n]` asks the allocator for zeroed memory), so that
        // the operating system commits a cache page only when a position in it is written:
        // a short chat in a long context, or an idle server slot, costs no memory.
        let zeroed = |n: usize| -> Vec<f16> { vec![0u16; n].reinterpret_into() };
        let cache = (0..config.n_layer)
            .map(|_| LayerCache {
                k: zeroed(n_ctx * k_row),
                v: zeroed(n_ctx * v_row),
                k8: Vec::new(),
                v8: Vec::new(),
            })
            .collect();
        State {
            n_ctx,
            n_past: 0,
            cache,
            scratch: Scratch::default(),
            q8_layout: None,
        }
    }

    /// Forgets every position after the first `n` (keeps a shared prefix).
    pub fn truncate(&mut self, n: usize) {
        self.n_past = self.n_past.min(n);
    }

    /// Replaces this sequence's positions by the first `n` of `src` (a prefix computed by
    /// another sequence of the same model): their keys and values are copied, later
    /// positions forgotten. Fails, changing nothing, if `src` holds fewer than `n`
    /// positions, this state has room for fewer, or the two were made for different shapes.
    pub fn copy_prefix_from(&mut self, src: &State, n: usize) -> Result<(), String> {
        if n > src.n_past || n > self.n_ctx {
            return Err(format!(
                "cannot copy {n} positions from a sequence holding {} into one of capacity {}",
                src.n_past, self.n_ctx
            ));
        }
        if n == 0 {
            self.n_past = 0;
            return Ok(());
        }
        if self.cache_type() != src.cache_type() {
            return Err(format!(
                "cannot copy positions from a {} cache into a {} one",
                src.cache_type().name(),
                self.cache_type().name()
            ));
        }
        if let (Some(dst_l), Some(src_l)) = (self.q8_layout, src.q8_layout) {
            let same_shape = self.cache.len() == src.cache.len()
                && (dst_l.n_head_kv, dst_l.head_dim, dst_l.head_dim_v)
                    == (src_l.n_head_kv, src_l.head_dim, src_l.head_dim_v);
            if !same_shape {
                return Err("the sequences were made for models of different shapes".into());
            }
            for (dst, from) in self.cache.iter_mut().zip(&src.cache) {
                q8::copy_prefix(
                    &dst_l,
                    (&mut dst.k8, &mut dst.v8),
                    &src_l,
                    (&from.k8, &from.v8),
                    n,
                );
            }
            self.n_past = n;
            return Ok(());
        }
        let same_shape = self.cache.len() == src.cache.len()
            && self.cache.iter().zip(&src.cache).all(|(a, b)| {
                a.k.len() / self.n_ctx == b.k.len() / src.n_ctx
                    && a.v.len() / self.n_ctx == b.v.len() / src.n_ctx
            });
        if !same_shape {
            return Err("the sequences were made for models of different shapes".into());
        }
        for (dst, from) in self.cache.iter_mut().zip(&src.cache) {
            let (k_row, v_row) = (from.k.len() / src.n_ctx, from.v.len() / src.n_ctx);
            dst.k[..n * k_row].copy_from_slice(&from.k[..n * k_row]);
            dst.v[..n * v_row].copy_from_slice(&from.v[..n * v_row]);
        }
        self.n_past = n;
        Ok(())
    }

    /// Bytes held by the KV cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache
            .iter()
            .map(|c| (c.k.len() + c.v.len()) * 2 + c.k8.len() + c.v8.len())
            .sum()
    }
}
