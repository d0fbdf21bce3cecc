//! Weights repacked at load time into groups of eight interleaved rows ("packed rows").
//!
//! Generating one token reads every weight once, so its matrix-vector products should run at
//! the speed of memory. In the file's layout a one-token kernel unpacks each row's blocks
//! on its own and reduces each row's lanes on its own; for Q5_0 that costs about eighteen
//! instructions per 22-byte block, which made the products compute-bound at about half
//! the memory's speed. Packed, the eight rows of a group sit in the layout of the lane
//! kernels (`crate::ggml_lanes`): one 64-byte load gives 128 four-bit values of eight rows,
//! one mask per vector adds their fifth bits, and one `vpdpbusd` then sums two groups of four
//! values for all eight rows. The arithmetic is the lane kernels': llama.cpp's order, the
//! same bits as the one-row kernel.
//!
//! Layout of a Q5_0 matrix: group `g` (rows `8g..8g + 8`) at `g · stride`; in a group, the
//! blocks in chunks of four (704 bytes, eleven cache lines; a last chunk of fewer blocks is
//! as long as they are, its parts moved up accordingly), so that
//! a group is read as one sequential stream (this machine's prefetchers follow one stream
//! far better than several: a layout with the nibbles, fifth bits and scales of a group in
//! three regions read at half the speed from memory). Block `j` of a chunk:
//! - at `128·j`: 128 bytes of nibbles. Vector `k` (0–3) of the block holds in byte
//!   `b = 4·(2r + h) + l` value `8k + 4h + l` of row r (`h` = 0, 1; `l` = 0–3), unsigned
//!   (`q + 16`); its low four bits are the low nibbles of bytes `64·(k / 2)..+64` when `k`
//!   is even, their high nibbles when `k` is odd.
//! - at `512 + 32·j`: four little-endian u64, bit `b` of the `k`-th = the fifth bit of byte
//!   `b` of vector `k`.
//! - at `640 + 16·j`: the eight rows' scales (f16).
//!
//! Q4_0 and Q4_1 groups are laid out as Q5_0's without the fifth bits (Q4_1's minimums after
//! the scales), Q8_0's as its four vectors per block, Q4_K's per super-block in the order of
//! llama.cpp's repacked GEMV (see `pack_q4_k`), Q6_K's as pairs of rows in 512-bit vectors
//! (see `pack_q6_k`).
//!
//! A packed matrix replaces the file's bytes for products (the model releases the file's
//! pages as it packs); tied embeddings read their rows back from it ([`PackedRows::unpack_row`]);
//! training and export read the file.

use crate::blocks::{
    as_blocks, as_blocks_mut, scale_min_k4, Block, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0,
    BlockQ6_K, BlockQ8_0, BlockQ8_1, BlockQ8_K, QK, QK_K,
};
use crate::ggml_lanes::LaneQuants;
use crate::GgmlType;

/// Rows per packed group.
pub const PACK_ROWS: usize = 8;

/// Where block `i`'s parts start in its group.
#[derive(Clone, Copy)]
pub struct BlockOffsets {
    /// The values (Q5_0: 128 bytes of nibbles; Q8_0: 256 bytes).
    pub qs: usize,
    /// Q5_0's fifth bits (four u64); Q4_1's minimums (eight f16).
    pub qh: usize,
    /// The scales (eight f16).
    pub d: usize,
}

impl BlockOffsets {
    /// The offsets of block `i` of `n` of a group of type `t` (Q4_0, Q4_1, Q5_0 or Q8_0): in
    /// chunks of four blocks whose parts start at `parts` (per block of the chunk) of a full
    /// chunk; a last chunk of `m < 4` blocks is as long as its blocks (its parts start at
    /// `parts · m / 4`), so no padding is read.
    #[inline(always)]
    pub fn of(t: GgmlType, i: usize, n: usize) -> BlockOffsets {
        let (chunk, j) = (i / 4, i % 4);
        let m = (n - 4 * chunk).min(4);
        Self::in_chunk_of(t, 4 * Self::chunk_layout(t).0 * chunk, j, m)
    }

    /// The offsets of block `j` of a chunk of `m` blocks (four but in a group's last chunk)
    /// that starts `base` bytes into a group of type `t`: with `m` and `j` constants, the
    /// offsets are too, which spares a one-token kernel the arithmetic of [`BlockOffsets::of`].
    #[inline(always)]
    pub fn in_chunk_of(t: GgmlType, base: usize, j: usize, m: usize) -> BlockOffsets {
        let (_, parts, per_block) = Self::chunk_layout(t);
        let at = |p: usize| base + parts[p] * m / 4 + per_block[p] * j;
        BlockOffsets {
            qs: at(0),
            qh: at(1),
            d: at(2),
        }
    }

    /// Bytes of a block of eight rows of type `t`, and where its parts start in a chunk of
    /// four (`parts`) and per block of the chunk (`per_block`).
    #[inline(always)]
    const fn chunk_layout(t: GgmlType) -> (usize, [usize; 3], [usize; 3]) {
        match t {
            GgmlType::Q5_0 => (176, [0, 512, 640], [128, 32, 16]),
            GgmlType::Q4_0 => (144, [0, 0, 512], [128, 0, 16]),
            GgmlType::Q4_1 => (160, [0, 576, 512], [128, 16, 16]),
            _ => (272, [0, 0, 1024], [256, 0, 16]),
        }
    }

    /// The offsets of block `i` of `n` of a Q5_0 group.
    #[inline(always)]
    pub fn q5_0(i: usize, n: usize) -> BlockOffsets {
        Self::of(GgmlType::Q5_0, i, n)
    }

    /// The offsets of block `i` of `n` of a Q4_0 group.
    #[inline(always)]
    pub fn q4_0(i: usize, n: usize) -> BlockOffsets {
        Self::of(GgmlType::Q4_0, i, n)
    }

    /// The offsets of block `i` of `n` of a Q4_1 group (`qh`: the minimums).
    #[inline(always)]
    pub fn q4_1(i: usize, n: usize) -> BlockOffsets {
        Self::of(GgmlType::Q4_1, i, n)
    }

    /// The offsets of block `i` of `n` of a Q8_0 group.
    #[inline(always)]
    pub fn q8_0(i: usize, n: usize) -> BlockOffsets {
        Self::of(GgmlType::Q8_0, i, n)
    }
}

/// Bytes of a packed Q4_K super-block of eight rows: 1024 of nibbles, 64 of scales, 64 of
/// minimums, 16 of `d`, 16 of `dmin`.
pub const Q4_K_BLOCK: usize = 1024 + 64 + 64 + 16 + 16;

/// Bytes of a packed Q6_K super-block of eight rows after the group's scales `d` (see
/// `pack_q6_k`): 1536 of nibbles and high bits, 128 of sub-block scales.
pub const Q6_K_BLOCK: usize = 1536 + 128;

/// Where the super-blocks of a packed Q6_K group of `n_blocks` start: after the eight rows'
/// `d` of every super-block (16 bytes each), rounded up to a cache line.
pub const fn q6_k_blocks_at(n_blocks: usize) -> usize {
    (16 * n_blocks).next_multiple_of(64)
}

/// Bytes of a packed group of `n_blocks` blocks of type `t` (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K or
/// Q6_K).
pub fn group_bytes(t: GgmlType, n_blocks: usize) -> usize {
    let block = match t {
        GgmlType::Q4_K => Q4_K_BLOCK,
        GgmlType::Q6_K => return q6_k_blocks_at(n_blocks) + n_blocks * Q6_K_BLOCK,
        _ => BlockOffsets::chunk_layout(t).0,
    };
    (n_blocks * block).next_multiple_of(64)
}

/// A weight matrix `(n_out, n_in)` repacked into groups of eight rows (see the module
/// documentation). Cloning shares the bytes.
#[derive(Clone)]
pub struct PackedRows {
    ty: GgmlType,
    n_out: usize,
    n_in: usize,
    stride: usize,
    /// The groups, from `base` on (a 64-byte boundary, so that every group starts on a
    /// cache line), in storage that may hold other matrices too (see [`PackedRows::pack_all`]).
    bytes: std::sync::Arc<Storage>,
    base: usize,
}

/// The bytes of a packed matrix: anonymous memory the kernel is asked to back with huge
/// pages (a generated token reads every page of every weight, and 4 KiB pages cost a TLB
/// miss per 4 KiB), or a plain vector where that is not possible.
enum Storage {
    Mapped(memmap2::MmapMut),
    Vec(Vec<u8>),
}

impl Storage {
    fn zeroed(len: usize) -> Storage {
        match memmap2::MmapMut::map_anon(len) {
            Ok(map) => {
                #[cfg(target_os = "linux")]
                let _ = map.advise(memmap2::Advice::HugePage);
                Storage::Mapped(map)
            }
            Err(_) => Storage::Vec(vec![0u8; len]),
        }
    }
}

impl std::ops::Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(map) => map,
            Storage::Vec(v) => v,
        }
    }
}

impl std::ops::DerefMut for Storage {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Storage::Mapped(map) => map,
            Storage::Vec(v) => v,
        }
    }
}

impl std::fmt::Debug for PackedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedRows")
            .field("ty", &self.ty)
            .field("n_out", &self.n_out)
            .field("n_in", &self.n_in)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// One activation row as the one-token packed kernels read it.
#[derive(Clone, Copy)]
pub struct OneToken<'a> {
    /// Q5_0, Q8_0: per block, from [`one_token_activations`].
    pub blocks: &'a [OneTokenBlock],
    /// Q5_0, Q8_0, Q4_1: per block its scale.
    pub scales: &'a [f32],
    /// Q4_1: per block the activations' `s` (`d·Σy`).
    pub sums: &'a [f32],
    /// Q4_K, Q6_K: the row (Q8_K blocks).
    pub q8_k: &'a [u8],
    /// Q4_K: per super-block its eight 32-value sums (see [`q8_k_sub_sums`]).
    pub sub_sums: &'a [[i32; 8]],
}

/// One token against consecutive packed groups: `(groups, stride, n_blocks, row, out)` with
/// group g at `groups[g·stride..]` (`n_blocks` blocks of the weight's type per row) and
/// `out[8g + r]` ← its row r · the activation row, for the `out.len() / 8` groups.
pub type PackedOneFn = fn(&[u8], usize, usize, &OneToken<'_>, &mut [f32]);

/// A batch against a packed group: `(group, n_blocks, quants, scales, out)` with
/// `out[t][r]` = row r · activation row t, from the tables of
/// [`crate::ggml_lanes::lane_activations`].
pub type PackedLanesFn = fn(&[u8], usize, &[LaneQuants], &[[f32; 2]], &mut [[f32; 8]]);

/// The kernels of packed weights.
#[derive(Clone, Copy)]
pub struct PackedKernels {
    /// One token.
    pub one: PackedOneFn,
    /// A batch (used from `crate::ggml_lanes::LANES_MIN_TOKENS` tokens on; Q6_K's, in ggml's
    /// tiled order, from `crate::repacked::TILED_MIN_ROWS` on, the batches between going
    /// token by token through `one`, as llama.cpp's one-row order has them).
    pub lanes: PackedLanesFn,
}

/// The packed kernels for weights of type `t` on this CPU, if it has them (Q4_0, Q4_1, Q5_0,
/// Q8_0 and Q4_K with AVX-512 F, BW, VL and VNNI; Q6_K with GFNI as well; unless SIMD is
/// disabled).
pub fn packed_kernels(t: GgmlType) -> Option<PackedKernels> {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::simd_disabled() {
            return None;
        }
        crate::x86::packed_kernels(t)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = t;
        None
    }
}

/// The weights' offsets `c` the one-token packed kernels remove (`Σ (q + c)·y − c·Σy`):
/// index 0 for Q4_0 (`c` = 8), 1 for Q5_0 (16), 2 for Q8_0 (128); see
/// [`OneTokenBlock::starts`].
pub const START_OFFSETS: [i32; 3] = [8, 16, 128];

/// An activation block as the one-token packed kernels read it: its quants (signed) and,
/// per weight offset `c` of [`START_OFFSETS`] and group of four, the start `−c·Σy` that turns
/// `Σ (q + c)·y` into `Σ q·y` (ready to broadcast, so that a kernel spends no instruction on
/// it).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
pub struct OneTokenBlock {
    /// The block's quants.
    pub y: [i8; QK],
    /// `starts[o][g]`: minus the sum of quants `4g..4g + 4`, times `START_OFFSETS[o]`.
    pub starts: [[i32; 8]; 3],
}

/// The tables the one-token packed kernels read for `n_tokens` activation rows of
/// `act_type` (Q8_0 or Q8_1), `a_row` bytes apart: per block an [`OneTokenBlock`], its scale
/// as f32 and (Q8_1) its `s` as f32. The capacity of the vectors is reused.
pub fn one_token_activations(
    act_type: GgmlType,
    acts: &[u8],
    a_row: usize,
    n_tokens: usize,
    blocks: &mut Vec<OneTokenBlock>,
    scales: &mut Vec<f32>,
    sums: &mut Vec<f32>,
) {
    blocks.clear();
    scales.clear();
    sums.clear();
    #[cfg(target_arch = "x86_64")]
    let avx2 = crate::x86::detected();
    let block = |qs: &[i8; QK]| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: AVX2 was detected above.
            return unsafe { crate::x86::one_token_block(qs) };
        }
        one_token_block(qs)
    };
    let per_row = a_row / act_type.type_size();
    blocks.reserve(n_tokens * per_row);
    scales.reserve(n_tokens * per_row);
    for t in 0..n_tokens {
        let row = &acts[t * a_row..(t + 1) * a_row];
        if act_type == GgmlType::Q8_1 {
            for b in as_blocks::<BlockQ8_1>(row) {
                blocks.push(block(&b.qs));
                scales.push(b.d.get());
                sums.push(b.s.get());
            }
        } else {
            for b in as_blocks::<BlockQ8_0>(row) {
                blocks.push(block(&b.qs));
                scales.push(b.d.get());
            }
        }
    }
}

/// [`OneTokenBlock`] of an activation block's quants `qs`, one sum of four at a time.
fn one_token_block(qs: &[i8; QK]) -> OneTokenBlock {
    let fours: [i32; 8] =
        std::array::from_fn(|g| qs[4 * g..4 * g + 4].iter().map(|&q| i32::from(q)).sum());
    OneTokenBlock {
        y: *qs,
        starts: START_OFFSETS.map(|c| fours.map(|s| -c * s)),
    }
}

/// Per Q8_K super-block of `n_tokens` activation rows (`a_row` bytes apart) its eight
/// 32-value sums, what the Q4_K kernels multiply by the minimums. The capacity is reused.
pub fn q8_k_sub_sums(acts: &[u8], a_row: usize, n_tokens: usize, out: &mut Vec<[i32; 8]>) {
    out.clear();
    for t in 0..n_tokens {
        for b in as_blocks::<BlockQ8_K>(&acts[t * a_row..(t + 1) * a_row]) {
            out.push(std::array::from_fn(|j| b.bsum(2 * j) + b.bsum(2 * j + 1)));
        }
    }
}

impl PackedRows {
    /// Whether weights of type `t` and shape `(n_out, n_in)` can be packed and multiplied
    /// packed on this CPU.
    pub fn supported(t: GgmlType, n_out: usize, n_in: usize) -> bool {
        matches!(
            t,
            GgmlType::Q4_0
                | GgmlType::Q4_1
                | GgmlType::Q5_0
                | GgmlType::Q8_0
                | GgmlType::Q4_K
                | GgmlType::Q6_K
        ) && n_out.is_multiple_of(PACK_ROWS)
            && n_in.is_multiple_of(t.block_size())
            && n_in > 0
            && packed_kernels(t).is_some()
    }

    /// Packs `w`, `n_out` rows of `n_in` values of type `t` in the file's layout, or `None`
    /// when [`PackedRows::supported`] says no.
    pub fn pack(t: GgmlType, w: &[u8], n_out: usize, n_in: usize) -> Option<PackedRows> {
        Self::pack_all(&[(t, w, n_out, n_in)], |_, _| {})
            .pop()
            .flatten()
    }

    /// [`PackedRows::pack`] for several matrices `(type, bytes, n_out, n_in)` at once, into
    /// one allocation: one mapping whose 2 MiB pages can all be huge pages, where separate
    /// ones of a few MiB each mostly could not be. `packed(i, bytes)` is called as soon as
    /// the byte range `bytes` of weight `i` is packed (about 1 MiB at a time, so that a caller
    /// that releases its sources keeps the peak about 1 MiB above the packed copies).
    pub fn pack_all(
        weights: &[(GgmlType, &[u8], usize, usize)],
        mut packed: impl FnMut(usize, std::ops::Range<usize>),
    ) -> Vec<Option<PackedRows>> {
        let len = |&(t, _, n_out, n_in): &(GgmlType, &[u8], usize, usize)| {
            Self::supported(t, n_out, n_in)
                .then(|| n_out / PACK_ROWS * group_bytes(t, n_in / t.block_size()))
        };
        let total: usize = weights.iter().filter_map(len).sum();
        if total == 0 {
            return weights.iter().map(|_| None).collect();
        }
        let mut storage = Storage::zeroed(total + 63);
        let first = storage.as_ptr().align_offset(64).min(63);
        let mut bases = Vec::with_capacity(weights.len());
        let mut at = first;
        for (i, weight) in weights.iter().enumerate() {
            let Some(n) = len(weight) else {
                bases.push(None);
                continue;
            };
            let &(t, w, n_out, n_in) = weight;
            let w_row = t.row_bytes(n_in).expect("whole blocks");
            assert!(
                w.len() >= n_out * w_row,
                "weight shorter than (n_out, n_in)"
            );
            let stride = group_bytes(t, n_in / t.block_size());
            let group_source = PACK_ROWS * w_row;
            // Groups per step: about 1 MiB of source (the peak while packing is one step above
            // the packed copies, when the caller releases each step's source).
            let step = (1 << 20) / group_source + 1;
            for first in (0..n_out / PACK_ROWS).step_by(step) {
                let last = (first + step).min(n_out / PACK_ROWS);
                let src = first * group_source..last * group_source;
                let dst = &mut storage[at + first * stride..at + last * stride];
                let w = &w[src.clone()];
                match t {
                    GgmlType::Q5_0 => pack_q5_0(w, n_in, dst),
                    GgmlType::Q4_0 => pack_q4_0(w, n_in, dst),
                    GgmlType::Q4_1 => pack_q4_1(w, n_in, dst),
                    GgmlType::Q4_K => pack_q4_k(w, n_in, dst),
                    GgmlType::Q6_K => pack_q6_k(w, n_in, dst),
                    _ => pack_q8_0(w, n_in, dst),
                }
                packed(i, src);
            }
            bases.push(Some(at));
            at += n;
        }
        let storage = std::sync::Arc::new(storage);
        weights
            .iter()
            .zip(bases)
            .map(|(&(ty, _, n_out, n_in), base)| {
                Some(PackedRows {
                    ty,
                    n_out,
                    n_in,
                    stride: group_bytes(ty, n_in / ty.block_size()),
                    bytes: storage.clone(),
                    base: base?,
                })
            })
            .collect()
    }

    /// The weights' type (of the file's blocks).
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Rows.
    pub fn n_out(&self) -> usize {
        self.n_out
    }

    /// Values per row.
    pub fn n_in(&self) -> usize {
        self.n_in
    }

    /// Blocks (Q4_K, Q6_K: super-blocks) per row.
    pub fn n_blocks(&self) -> usize {
        self.n_in / self.ty.block_size()
    }

    /// The whole packed matrix: every group's bytes, in order.
    pub fn bytes(&self) -> &[u8] {
        let n_groups = self.n_out / PACK_ROWS;
        &self.bytes[self.base..self.base + n_groups * self.stride]
    }

    /// Bytes from one group to the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The bytes of groups `range`, one after another.
    pub fn groups(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.bytes[self.base + range.start * self.stride..self.base + range.end * self.stride]
    }

    /// The bytes of group `g` (rows `8g..8g + 8`).
    pub fn group(&self, g: usize) -> &[u8] {
        &self.bytes[self.base + g * self.stride..self.base + (g + 1) * self.stride]
    }

    /// Row `r` in the file's layout, written to `out` (`row_bytes(ty, n_in)` bytes).
    pub fn unpack_row(&self, r: usize, out: &mut [u8]) {
        let n_blocks = self.n_blocks();
        let group = self.group(r / PACK_ROWS);
        let row = r % PACK_ROWS;
        if self.ty == GgmlType::Q6_K {
            let row_bytes = n_blocks * std::mem::size_of::<BlockQ6_K>();
            let blocks = as_blocks_mut::<BlockQ6_K>(&mut out[..row_bytes]);
            for (i, block) in blocks.iter_mut().enumerate() {
                *block = q6_k_block(group, n_blocks, i, row);
            }
            return;
        }
        if self.ty == GgmlType::Q4_K {
            for (i, block) in out.chunks_exact_mut(144).take(n_blocks).enumerate() {
                let at = &group[Q4_K_BLOCK * i..Q4_K_BLOCK * (i + 1)];
                block[..2].copy_from_slice(&at[1152 + 2 * row..1152 + 2 * row + 2]);
                block[2..4].copy_from_slice(&at[1168 + 2 * row..1168 + 2 * row + 2]);
                let sc = |j: usize| at[1024 + 8 * j + row];
                let m = |j: usize| at[1088 + 8 * j + row];
                // The inverse of `scale_min_k4`.
                for j in 0..4 {
                    block[4 + j] = sc(j) | ((sc(j + 4) >> 4) << 6);
                    block[8 + j] = m(j) | ((m(j + 4) >> 4) << 6);
                    block[12 + j] = (sc(j + 4) & 0x0F) | ((m(j + 4) & 0x0F) << 4);
                }
                for p in 0..4 {
                    for gr in 0..8 {
                        let src = &at[256 * p + 32 * gr + 4 * row..][..4];
                        block[16 + 32 * p + 4 * gr..][..4].copy_from_slice(src);
                    }
                }
            }
            return;
        }
        if matches!(self.ty, GgmlType::Q4_0 | GgmlType::Q4_1) {
            // Q4_0: d and 16 bytes of nibbles; Q4_1: d, m and the nibbles.
            let (size, at_of): (usize, fn(usize, usize) -> BlockOffsets) = match self.ty {
                GgmlType::Q4_0 => (18, BlockOffsets::q4_0),
                _ => (20, BlockOffsets::q4_1),
            };
            for (i, block) in out.chunks_exact_mut(size).take(n_blocks).enumerate() {
                let at = at_of(i, n_blocks);
                block[..2].copy_from_slice(&group[at.d + 2 * row..at.d + 2 * row + 2]);
                if size == 20 {
                    block[2..4].copy_from_slice(&group[at.qh + 2 * row..at.qh + 2 * row + 2]);
                }
                let qs = &mut block[size - 16..];
                let half = |h: usize| &group[at.qs + 64 * h + 8 * row..][..8];
                for l in 0..8 {
                    // Values l, 8 + l (low nibbles) and 16 + l, 24 + l (high nibbles).
                    let (a, b) = (half(0)[l], half(1)[l]);
                    qs[l] = (a & 0x0F) | ((b & 0x0F) << 4);
                    qs[8 + l] = (a >> 4) | (b & 0xF0);
                }
            }
            return;
        }
        if self.ty == GgmlType::Q8_0 {
            for (i, block) in out.chunks_exact_mut(34).take(n_blocks).enumerate() {
                let at = BlockOffsets::q8_0(i, n_blocks);
                block[..2].copy_from_slice(&group[at.d + 2 * row..at.d + 2 * row + 2]);
                for v in 0..QK {
                    block[2 + v] = group[at.qs + 64 * (v / 8) + 8 * row + v % 8] ^ 0x80;
                }
            }
            return;
        }
        for (i, block) in out.chunks_exact_mut(22).take(n_blocks).enumerate() {
            let at = BlockOffsets::q5_0(i, n_blocks);
            let mut values = [0u8; QK];
            for (v, value) in values.iter_mut().enumerate() {
                let (k, b) = (v / 8, 8 * row + v % 8);
                let byte = group[at.qs + 64 * (k / 2) + b];
                let nibble = if k % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                let mask = &group[at.qh + 8 * k..at.qh + 8 * k + 8];
                let mask = u64::from_le_bytes(mask.try_into().expect("eight bytes"));
                *value = nibble | (((mask >> b) & 1) as u8) << 4;
            }
            block[..2].copy_from_slice(&group[at.d + 2 * row..at.d + 2 * row + 2]);
            let mut fifth = 0u32;
            for (j, &v) in values.iter().enumerate() {
                fifth |= u32::from(v >> 4) << j;
            }
            block[2..6].copy_from_slice(&fifth.to_le_bytes());
            for j in 0..QK / 2 {
                block[6 + j] = (values[j] & 0x0F) | ((values[j + QK / 2] & 0x0F) << 4);
            }
        }
    }
}

/// Calls `put(group, r, i, block)` for block `i` of row `r` of every group of eight rows of
/// `w` (rows of `n_blocks` blocks of `B`), `group` being the group's `stride` bytes in `dst`.
fn for_each_block<B: Block>(
    w: &[u8],
    n_blocks: usize,
    stride: usize,
    dst: &mut [u8],
    mut put: impl FnMut(&mut [u8], usize, usize, &B),
) {
    let w_row = n_blocks * std::mem::size_of::<B>();
    for (g, group) in dst.chunks_exact_mut(stride).enumerate() {
        for r in 0..PACK_ROWS {
            let row = PACK_ROWS * g + r;
            for (i, b) in as_blocks::<B>(&w[row * w_row..(row + 1) * w_row])
                .iter()
                .enumerate()
            {
                put(group, r, i, b);
            }
        }
    }
}

/// Q4_K packed, per super-block `i` of a group at `Q4_K_BLOCK·i`:
/// - at `256p + 32g` (pair of sub-blocks `p`, group of four `g`): byte `4r + l` = byte
///   `32p + 4g + l` of row r's nibbles (low nibble: sub-block `2p`; high: `2p + 1`);
/// - at 1024 + 8j + r: row r's scale of sub-block j (six bits, decoded); at 1088 + 8j + r
///   its minimum;
/// - at 1152 + 2r: row r's `d`; at 1168 + 2r its `dmin`.
fn pack_q4_k(w: &[u8], n_in: usize, dst: &mut [u8]) {
    let n_blocks = n_in / QK_K;
    let stride = group_bytes(GgmlType::Q4_K, n_blocks);
    for_each_block(w, n_blocks, stride, dst, |group, r, i, b: &BlockQ4_K| {
        let at = &mut group[Q4_K_BLOCK * i..Q4_K_BLOCK * (i + 1)];
        for p in 0..4 {
            for gr in 0..8 {
                let src = &b.qs[32 * p + 4 * gr..32 * p + 4 * gr + 4];
                at[256 * p + 32 * gr + 4 * r..][..4].copy_from_slice(src);
            }
        }
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &b.scales);
            at[1024 + 8 * j + r] = sc;
            at[1088 + 8 * j + r] = m;
        }
        at[1152 + 2 * r..1152 + 2 * r + 2].copy_from_slice(&b.d.0);
        at[1168 + 2 * r..1168 + 2 * r + 2].copy_from_slice(&b.dmin.0);
    });
}

/// Where row r's parts of a packed Q6_K super-block sit, relative to the super-block: per
/// half `j` (values `128j..128j + 128`) its two 32-byte runs of nibbles (`ql[64j..64j + 32]`,
/// `ql[64j + 32..64j + 64]`) and its 32 bytes of high bits (`qh[32j..32j + 32]`), then its
/// 16 scales. Rows `2p` and `2p + 1` fill the two halves of each 64-byte vector: at
/// `384p + 192j` the first run of nibbles, `+ 64` the second, `+ 128` the high bits; the
/// scales at `1536 + 32p`.
fn q6_k_parts(row: usize) -> ([usize; 2], [usize; 2], [usize; 2], usize) {
    let (p, h) = (row / 2, 32 * (row % 2));
    let half = |j: usize| 384 * p + 192 * j + h;
    (
        [half(0), half(1)],
        [half(0) + 64, half(1) + 64],
        [half(0) + 128, half(1) + 128],
        1536 + 32 * p + 16 * (row % 2),
    )
}

/// Q6_K packed, per group: at `16i + 2r` row r's `d` of super-block i; from
/// [`q6_k_blocks_at`] on, each super-block's [`Q6_K_BLOCK`] bytes as [`q6_k_parts`] says, so
/// that one 64-byte load gives a pair of rows' 32 values of one vector of ggml's Q6_K kernel
/// and the one-token kernel sums two rows per instruction.
fn pack_q6_k(w: &[u8], n_in: usize, dst: &mut [u8]) {
    let n_blocks = n_in / QK_K;
    let stride = group_bytes(GgmlType::Q6_K, n_blocks);
    let first = q6_k_blocks_at(n_blocks);
    for_each_block(w, n_blocks, stride, dst, |group, r, i, b: &BlockQ6_K| {
        put_f16(group, 16 * i, r, b.d);
        let at = &mut group[first + Q6_K_BLOCK * i..first + Q6_K_BLOCK * (i + 1)];
        let (low, high, bits, scales) = q6_k_parts(r);
        for j in 0..2 {
            at[low[j]..low[j] + 32].copy_from_slice(&b.ql[64 * j..64 * j + 32]);
            at[high[j]..high[j] + 32].copy_from_slice(&b.ql[64 * j + 32..64 * j + 64]);
            at[bits[j]..bits[j] + 32].copy_from_slice(&b.qh[32 * j..32 * j + 32]);
        }
        for (dst, &s) in at[scales..scales + 16].iter_mut().zip(&b.scales) {
            *dst = s as u8;
        }
    });
}

/// Row r's super-block i of a packed Q6_K group of `n_blocks` (the inverse of `pack_q6_k`).
pub(crate) fn q6_k_block(group: &[u8], n_blocks: usize, i: usize, r: usize) -> BlockQ6_K {
    let at = &group[q6_k_blocks_at(n_blocks) + Q6_K_BLOCK * i..][..Q6_K_BLOCK];
    let (low, high, bits, scales) = q6_k_parts(r);
    let mut b = BlockQ6_K {
        ql: [0; 128],
        qh: [0; 64],
        scales: [0; 16],
        d: crate::blocks::F16([group[16 * i + 2 * r], group[16 * i + 2 * r + 1]]),
    };
    for j in 0..2 {
        b.ql[64 * j..64 * j + 32].copy_from_slice(&at[low[j]..low[j] + 32]);
        b.ql[64 * j + 32..64 * j + 64].copy_from_slice(&at[high[j]..high[j] + 32]);
        b.qh[32 * j..32 * j + 32].copy_from_slice(&at[bits[j]..bits[j] + 32]);
    }
    for (dst, &s) in b.scales.iter_mut().zip(&at[scales..scales + 16]) {
        *dst = s as i8;
    }
    b
}

/// A block's 16 bytes of nibbles as packed row r of its two 64-byte halves (vector k, bytes
/// `8r..8r + 8` = values `8k..8k + 8`: the low nibbles of bytes 0–7 and 8–15, then their high
/// nibbles).
fn pack_nibbles(qs: &[u8; 16], r: usize, dst: &mut [u8]) {
    const LOW: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    let a = u64::from_le_bytes(qs[..8].try_into().expect("eight bytes"));
    let c = u64::from_le_bytes(qs[8..].try_into().expect("eight bytes"));
    let half0 = (a & LOW) | ((c & LOW) << 4);
    let half1 = ((a >> 4) & LOW) | (c & !LOW);
    dst[8 * r..8 * r + 8].copy_from_slice(&half0.to_le_bytes());
    dst[64 + 8 * r..64 + 8 * r + 8].copy_from_slice(&half1.to_le_bytes());
}

/// Row r's f16 `value` among a group's eight at `at`.
fn put_f16(group: &mut [u8], at: usize, r: usize, value: crate::blocks::F16) {
    group[at + 2 * r..at + 2 * r + 2].copy_from_slice(&value.0);
}

/// Q4_0 packed: as Q5_0's nibbles (no fifth bits), then the scales.
fn pack_q4_0(w: &[u8], n_in: usize, dst: &mut [u8]) {
    let n_blocks = n_in / QK;
    let stride = group_bytes(GgmlType::Q4_0, n_blocks);
    for_each_block(w, n_blocks, stride, dst, |group, r, i, b: &BlockQ4_0| {
        let at = BlockOffsets::q4_0(i, n_blocks);
        pack_nibbles(&b.qs, r, &mut group[at.qs..at.qs + 128]);
        put_f16(group, at.d, r, b.d);
    });
}

/// Q4_1 packed: as Q5_0's nibbles (no fifth bits), then the scales and the minimums.
fn pack_q4_1(w: &[u8], n_in: usize, dst: &mut [u8]) {
    let n_blocks = n_in / QK;
    let stride = group_bytes(GgmlType::Q4_1, n_blocks);
    for_each_block(w, n_blocks, stride, dst, |group, r, i, b: &BlockQ4_1| {
        let at = BlockOffsets::q4_1(i, n_blocks);
        pack_nibbles(&b.qs, r, &mut group[at.qs..at.qs + 128]);
        put_f16(group, at.d, r, b.d);
        put_f16(group, at.qh, r, b.m);
    });
}

/// Q8_0 packed: vector k of a block, bytes `8r..8r + 8` = row r's values `8k..8k + 8`
/// as unsigned `q + 128`.
fn pack_q8_0(w: &[u8], n_in: usize, dst: &mut [u8]) {
    let n_blocks = n_in / QK;
    let stride = group_bytes(GgmlType::Q8_0, n_blocks);
    for_each_block(w, n_blocks, stride, dst, |group, r, i, b: &BlockQ8_0| {
        let at = BlockOffsets::q8_0(i, n_blocks);
        for k in 0..4 {
            let dst = &mut group[at.qs + 64 * k + 8 * r..][..8];
            for (dst, &q) in dst.iter_mut().zip(&b.qs[8 * k..8 * k + 8]) {
                *dst = (q as u8) ^ 0x80;
            }
        }
        put_f16(group, at.d, r, b.d);
    });
}

/// Q5_0 packed (see the module documentation): the nibbles as Q4_0's; byte r of the `k`-th
/// fifth-bit mask is row r's fifth bits of values `8k..8k + 8`.
fn pack_q5_0(w: &[u8], n_in: usize, dst: &mut [u8]) {
    let n_blocks = n_in / QK;
    let stride = group_bytes(GgmlType::Q5_0, n_blocks);
    for_each_block(w, n_blocks, stride, dst, |group, r, i, b: &BlockQ5_0| {
        let at = BlockOffsets::q5_0(i, n_blocks);
        pack_nibbles(&b.qs, r, &mut group[at.qs..at.qs + 128]);
        for (k, &fifth) in b.qh.iter().enumerate() {
            group[at.qh + 8 * k + r] = fifth;
        }
        put_f16(group, at.d, r, b.d);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::Rng;
    use crate::{quantize_row, quantize_row_ref, vec_dot_kernel};

    /// `n_out` rows of random weights of type `t` (quantized values; random bytes would
    /// make NaN scales) and `n_tokens` activation rows in `vec_dot_type(t)`.
    fn operands(
        t: GgmlType,
        n_out: usize,
        n_in: usize,
        n_tokens: usize,
        seed: u64,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut rng = Rng(seed);
        let mut values = |n: usize| (0..n).map(|_| rng.f32()).collect::<Vec<f32>>();
        let act = crate::vec_dot_type(t);
        let (w_row, a_row) = (t.row_bytes(n_in).unwrap(), act.row_bytes(n_in).unwrap());
        let mut w = vec![0u8; n_out * w_row];
        for row in w.chunks_exact_mut(w_row) {
            quantize_row_ref(t, &values(n_in), row);
        }
        let mut acts = vec![0u8; n_tokens * a_row];
        for row in acts.chunks_exact_mut(a_row) {
            quantize_row(act, &values(n_in), row);
        }
        (w, acts)
    }

    /// The vector table builder gives the portable one's blocks, extremes included.
    #[test]
    fn one_token_blocks_equal_the_portable_ones() {
        #[cfg(target_arch = "x86_64")]
        if crate::x86::detected() {
            let mut rng = Rng(7);
            let mut blocks = vec![[-128i8; QK], [127i8; QK]];
            blocks.extend((0..64).map(|_| {
                let bytes = rng.bytes(QK);
                std::array::from_fn(|i| bytes[i] as i8)
            }));
            for qs in &blocks {
                // SAFETY: AVX2 was detected.
                let simd = unsafe { crate::x86::one_token_block(qs) };
                let portable = one_token_block(qs);
                assert_eq!((simd.y, simd.starts), (portable.y, portable.starts));
            }
        }
    }

    /// Packing keeps every bit of every row, whatever the bytes (fifth bits, nibbles and
    /// scales all distinct).
    #[test]
    fn unpacked_rows_are_the_files_rows() {
        let n_out = 16;
        for t in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            let n_in = 3 * t.block_size();
            let w_row = t.row_bytes(n_in).unwrap();
            let w = Rng(5).bytes(n_out * w_row);
            // (Random bytes are fine here: only the bits are compared.)
            // Packed on any CPU (the kernels are what need AVX-512).
            let stride = group_bytes(t, n_in / t.block_size());
            let mut dst = vec![0u8; n_out / PACK_ROWS * stride];
            match t {
                GgmlType::Q5_0 => pack_q5_0(&w, n_in, &mut dst),
                GgmlType::Q4_0 => pack_q4_0(&w, n_in, &mut dst),
                GgmlType::Q4_1 => pack_q4_1(&w, n_in, &mut dst),
                GgmlType::Q4_K => pack_q4_k(&w, n_in, &mut dst),
                GgmlType::Q6_K => pack_q6_k(&w, n_in, &mut dst),
                _ => pack_q8_0(&w, n_in, &mut dst),
            }
            let packed = PackedRows {
                ty: t,
                n_out,
                n_in,
                stride,
                bytes: std::sync::Arc::new(Storage::Vec(dst)),
                base: 0,
            };
            let mut row = vec![0u8; w_row];
            for r in 0..n_out {
                packed.unpack_row(r, &mut row);
                assert_eq!(row, w[r * w_row..(r + 1) * w_row], "{t} row {r}");
            }
        }
    }

    /// The packed kernels give the one-row kernel's bits (Q4_K: the orders of llama.cpp's
    /// repacked kernels; Q6_K batches: its tiled order): one token at a time, and batches of
    /// each size the lane kernels treat differently.
    #[test]
    fn packed_products_equal_the_one_row_kernel_bit_for_bit() {
        for t in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            let Some(kernels) = packed_kernels(t) else {
                eprintln!("no packed kernels for {t} on this CPU");
                continue;
            };
            let one_row = |tok: usize, n: usize| match crate::repacked::repacked_kernels(t, 8) {
                Some(k) => k.for_row(tok, n),
                None => match crate::repacked::tiled_kernel(t) {
                    Some(tiled) if n >= crate::repacked::TILED_MIN_ROWS => tiled,
                    _ => vec_dot_kernel(t),
                },
            };
            let act = crate::vec_dot_type(t);
            // Q5_0, Q8_0: 28 blocks (whole chunks), 30 (one padded), 32; Q6_K: 3, 4 (its
            // scales `d` fill whole cache lines) and 5 super-blocks.
            let sizes = match t {
                GgmlType::Q4_K | GgmlType::Q6_K => [768, 1024, 1280],
                _ => [896, 960, 1024],
            };
            for n_in in sizes {
                let (n_out, n_tokens) = (24, 9);
                let (w, acts) = operands(t, n_out, n_in, n_tokens, 7);
                let (w_row, a_row) = (t.row_bytes(n_in).unwrap(), act.row_bytes(n_in).unwrap());
                let packed = PackedRows::pack(t, &w, n_out, n_in).expect("packable");
                let n_blocks = packed.n_blocks();
                let want = |tok: usize, n: usize, r: usize| {
                    one_row(tok, n)(
                        &w[r * w_row..(r + 1) * w_row],
                        &acts[tok * a_row..(tok + 1) * a_row],
                    )
                };
                let (mut blocks, mut scales, mut sub_sums) = (Vec::new(), Vec::new(), Vec::new());
                let mut sums = Vec::new();
                if act == GgmlType::Q8_K {
                    q8_k_sub_sums(&acts, a_row, n_tokens, &mut sub_sums);
                } else {
                    one_token_activations(
                        act,
                        &acts,
                        a_row,
                        n_tokens,
                        &mut blocks,
                        &mut scales,
                        &mut sums,
                    );
                }
                let (mut quants, mut lane_scales) = (Vec::new(), Vec::new());
                crate::ggml_lanes::lane_activations(
                    act,
                    &acts,
                    a_row,
                    n_tokens,
                    &mut quants,
                    &mut lane_scales,
                );
                let per_token = quants.len() / n_tokens;
                let n_groups = n_out / PACK_ROWS;
                for tok in 0..n_tokens {
                    let range = tok * n_blocks..(tok + 1) * n_blocks;
                    let row = OneToken {
                        blocks: blocks.get(range.clone()).unwrap_or(&[]),
                        scales: scales.get(range.clone()).unwrap_or(&[]),
                        sums: sums.get(range.clone()).unwrap_or(&[]),
                        q8_k: &acts[tok * a_row..(tok + 1) * a_row],
                        sub_sums: sub_sums.get(range).unwrap_or(&[]),
                    };
                    // All groups in one call, and the last ones again on their own.
                    for first in [0, n_groups - 1] {
                        let mut got = vec![f32::NAN; (n_groups - first) * PACK_ROWS];
                        let groups = packed.groups(first..n_groups);
                        (kernels.one)(groups, packed.stride(), n_blocks, &row, &mut got);
                        for (i, v) in got.iter().enumerate() {
                            let r = first * PACK_ROWS + i;
                            let want = want(tok, 1, r);
                            assert_eq!(v.to_bits(), want.to_bits(), "{t}: token {tok}, row {r}");
                        }
                    }
                }
                for g in 0..n_groups {
                    let group = packed.group(g);
                    for n in [4, 5, n_tokens] {
                        if t == GgmlType::Q6_K && n < crate::repacked::TILED_MIN_ROWS {
                            // These batches go token by token (see `PackedKernels::lanes`).
                            continue;
                        }
                        let mut out = vec![[f32::NAN; 8]; n];
                        (kernels.lanes)(
                            group,
                            n_blocks,
                            &quants[..n * per_token],
                            &lane_scales[..n * n_blocks],
                            &mut out,
                        );
                        for (tok, got) in out.iter().enumerate() {
                            for (r, v) in got.iter().enumerate() {
                                let want = want(tok, n, PACK_ROWS * g + r);
                                assert_eq!(
                                    v.to_bits(),
                                    want.to_bits(),
                                    "{t}: batch {n}, token {tok}, row {r}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// A product through a packed weight gives the file layout's bits for every batch
    /// size (one-token kernels below four tokens, lane kernels from four on; Q6_K token by
    /// token below eight).
    #[test]
    fn packed_matmul_equals_the_files_matmul_bit_for_bit() {
        use crate::matmul::{matmul_many, quantize_activations, Product};
        let (n_out, n_in) = (40, 512);
        let pool = crate::pool::ThreadPool::new(2);
        for t in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            if packed_kernels(t).is_none() {
                eprintln!("no packed kernels for {t} on this CPU");
                continue;
            }
            for n_tokens in [1, 2, 3, 4, 6, 8, 9] {
                let (w, _) = operands(t, n_out, n_in, 0, 3);
                let mut rng = Rng(n_tokens as u64);
                let x: Vec<f32> = (0..n_tokens * n_in).map(|_| rng.f32()).collect();
                let mut acts = Vec::new();
                quantize_activations(t, &x, n_in, &mut acts);
                let packed = PackedRows::pack(t, &w, n_out, n_in).expect("packable");
                let [plain, packed_out] = [None, Some(&packed)].map(|packed| {
                    let mut out = vec![f32::NAN; n_tokens * n_out];
                    let mut p = [Product {
                        w_type: t,
                        w: &w,
                        packed,
                        n_out,
                        out: &mut out,
                    }];
                    matmul_many(&pool, n_in, &acts, n_tokens, &mut p);
                    out
                });
                for (i, (a, b)) in plain.iter().zip(&packed_out).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{t}: {n_tokens} tokens, value {i}"
                    );
                }
            }
        }
    }
}
