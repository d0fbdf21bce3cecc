//! Reading bytes at the memory's speed: a plain sum over byte ranges on the pool, the
//! yardstick generation is measured against. Generation reads every weight once per token,
//! so its speed is bounded by how fast these same pages can be read at all; reading them
//! here, in the process that multiplies them, measures that bound on the memory the weights
//! actually occupy (a fresh buffer in another process can land on faster or slower memory:
//! on a virtual machine the host decides).

use crate::pool::ThreadPool;
use std::sync::atomic::{AtomicU64, Ordering};

/// Reads every byte of `parts` once, split into one contiguous share per thread of `pool`,
/// and returns their [`checksum`], so that the reads cannot be optimized away.
pub fn read_all(pool: &ThreadPool, parts: &[&[u8]]) -> u64 {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let n_threads = pool.n_threads();
    let sums: Vec<AtomicU64> = (0..n_threads).map(|_| AtomicU64::new(0)).collect();
    pool.run(&|thread| {
        let share = crate::pool::chunk(total, n_threads, thread);
        let mut sum = 0u64;
        let mut at = 0;
        for part in parts {
            let (start, end) = (at, at + part.len());
            at = end;
            let (lo, hi) = (share.start.max(start), share.end.min(end));
            if lo < hi {
                sum = sum.wrapping_add(checksum(&part[lo - start..hi - start]));
            }
        }
        sums[thread].store(sum, Ordering::Relaxed);
    });
    sums.iter()
        .fold(0u64, |a, s| a.wrapping_add(s.load(Ordering::Relaxed)))
}

/// The wrapping sum of every byte `b` at address `a` as `b · 256^(a mod 8)`: the sum of the
/// aligned little-endian u64 words, whatever pieces the bytes are summed in.
pub fn checksum(bytes: &[u8]) -> u64 {
    // SAFETY: every bit pattern is a valid u64; `align_to` only splits off the unaligned
    // head and tail.
    let (head, words, tail) = unsafe { bytes.align_to::<u64>() };
    let placed = |b: &u8| (*b as u64) << (8 * (b as *const u8 as usize % 8));
    let edges = head
        .iter()
        .chain(tail)
        .fold(0u64, |a, b| a.wrapping_add(placed(b)));
    // Integer addition is associative, so LLVM vectorizes and interleaves this reduction
    // and it keeps up with memory.
    let words = words
        .iter()
        .fold(0u64, |a, &w| a.wrapping_add(u64::from_le(w)));
    edges.wrapping_add(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_all_reads_every_byte_once_whatever_the_split() {
        let a: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 1) as u8).collect();
        let b: Vec<u8> = (0..37u32).map(|i| (i * 13 + 5) as u8).collect();
        let parts = [&a[3..], &b[..], &a[..1]];
        let byte_by_byte = parts.iter().flat_map(|p| p.iter()).fold(0u64, |s, b| {
            s.wrapping_add((*b as u64) << (8 * (b as *const u8 as usize % 8)))
        });
        for threads in [1, 2, 3, 5] {
            let pool = ThreadPool::new(threads);
            assert_eq!(read_all(&pool, &parts), byte_by_byte, "{threads} threads");
        }
    }
}
