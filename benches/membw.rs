//! Memory read bandwidth: the bound on token generation, which reads every weight once per
//! token. Sums a buffer much larger than the last-level cache with 1..=T threads (each
//! thread its own contiguous slice, as a matrix-vector product splits rows) and prints the
//! best of several passes in GB/s (1e9 bytes/s).
//!
//! With `huge` as third argument the buffer is first advised to the kernel as wanting
//! transparent huge pages (`madvise(MADV_HUGEPAGE)`, Linux), as huarizo's packed weights are:
//! the bound is the better of the two.
//!
//! Standalone (not a workspace member):
//!   rustc -C opt-level=3 -C target-cpu=native benches/membw.rs -o /tmp/membw && /tmp/membw [MiB] [passes] [huge]

use std::time::Instant;

/// Wrapping sum of `v`: integer addition is associative, so LLVM vectorizes and
/// interleaves this reduction and the additions keep up with memory.
fn sum(v: &[u64]) -> u64 {
    v.iter().fold(0u64, |a, &x| a.wrapping_add(x))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let passes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let n = mib * 1024 * 1024 / 8;
    let huge = args.get(3).is_some_and(|s| s == "huge");
    let mut buf: Vec<u64> = Vec::with_capacity(n);
    if huge {
        advise_huge_pages(buf.as_mut_ptr().cast(), n * 8);
    }
    // Written (not just allocated) so every page is backed by real memory.
    buf.extend(0..n as u64);
    let bytes = (n * 8) as f64;
    let max_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pages = if huge { "huge pages advised" } else { "default pages" };
    println!("buffer {mib} MiB ({pages}), best of {passes} passes");
    let mut check = 0u64;
    for threads in 1..=max_threads {
        let part = n.div_ceil(threads);
        let mut best = f64::INFINITY;
        for _ in 0..passes {
            let start = Instant::now();
            let s = std::thread::scope(|scope| {
                let handles: Vec<_> = buf
                    .chunks(part)
                    .map(|slice| scope.spawn(move || sum(slice)))
                    .collect();
                handles
                    .into_iter()
                    .fold(0u64, |a, h| a.wrapping_add(h.join().unwrap()))
            });
            best = best.min(start.elapsed().as_secs_f64());
            check = check.wrapping_add(s);
        }
        println!(
            "threads {threads}: {:.1} GB/s read ({:.1} GiB/s)",
            bytes / best / 1e9,
            bytes / best / (1u64 << 30) as f64
        );
    }
    // Keeps the sums observable so the reads cannot be optimized away.
    if check == 42 {
        println!("{check}");
    }
}

/// Asks for transparent huge pages on the whole 2 MiB pages inside `len` bytes at `p`.
#[cfg(target_os = "linux")]
fn advise_huge_pages(p: *mut u8, len: usize) {
    extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
    }
    const MADV_HUGEPAGE: i32 = 14;
    let page = 2 << 20;
    let start = (p as usize).next_multiple_of(page);
    let end = (p as usize + len) / page * page;
    if end > start {
        // SAFETY: the range lies inside the allocation at `p`; the advice changes no contents.
        let rc = unsafe { madvise(start as *mut _, end - start, MADV_HUGEPAGE) };
        if rc != 0 {
            eprintln!("madvise(MADV_HUGEPAGE) failed");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: *mut u8, _: usize) {}
