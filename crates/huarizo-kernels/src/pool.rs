//! One persistent thread pool for every parallel kernel.
//!
//! `ThreadPool::run(f)` calls `f(thread_index)` once on each of the pool's threads (the
//! caller is thread 0) and returns when all have finished. Dispatch allocates nothing and
//! takes no lock on the fast path: workers spin on an epoch counter for a short while and
//! only then sleep on a condition variable, so back-to-back kernels (hundreds per token)
//! cost a few hundred nanoseconds each.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// How many times an idle worker polls for new work with a pause instruction before it
/// starts yielding its core (the gaps between kernels of one token are microseconds).
const SPINS_BEFORE_YIELD: u32 = 2_000;
/// How many polls in all, the yielding ones included, before an idle worker sleeps. Yielding
/// keeps a machine shared with other busy processes usable: a spinning worker would take the
/// core the dispatching thread needs.
const SPINS_BEFORE_SLEEP: u32 = 40_000;

/// A job as the workers see it: a borrowed closure whose lifetime the pool erases.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    n_threads: usize,
    /// Bumped once per dispatched job; workers run the job when they see it change.
    epoch: AtomicU64,
    /// Workers that have not yet finished the current job.
    remaining: AtomicUsize,
    /// Set when a worker's job panicked; the caller re-panics.
    panicked: AtomicBool,
    shutdown: AtomicBool,
    job: UnsafeCell<Option<Job>>,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the dispatching thread while no worker reads it (all
// workers finished the previous job: `remaining == 0`), and read by workers only after an
// acquire load of the new `epoch`, which the writer publishes with a release store.
unsafe impl Sync for Shared {}
// SAFETY: the raw job pointer is only dereferenced under the protocol above.
unsafe impl Send for Shared {}

/// A fixed set of threads that run data-parallel kernels together.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serialises `run` callers: the protocol supports one job at a time.
    dispatch: Mutex<()>,
    /// One per thread, for [`ThreadPool::for_claimed_chunks_on`].
    shares: Box<[Share]>,
}

impl ThreadPool {
    /// Starts a pool of `n_threads` threads in all (the caller counts as one), at least 1.
    pub fn new(n_threads: usize) -> ThreadPool {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            n_threads,
            epoch: AtomicU64::new(0),
            remaining: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            job: UnsafeCell::new(None),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (1..n_threads)
            .map(|index| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("huarizo-worker-{index}"))
                    .spawn(move || worker_loop(&shared, index))
                    .expect("failed to spawn a thread-pool worker")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            dispatch: Mutex::new(()),
            shares: (0..n_threads).map(|_| Share(AtomicU64::new(0))).collect(),
        }
    }

    /// A pool sized to the machine's available parallelism.
    pub fn with_available_parallelism() -> ThreadPool {
        ThreadPool::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Number of threads, the caller included.
    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Runs `f(i)` for every thread index `i` in `0..n_threads()`, in parallel, and returns
    /// when all calls have returned. Panics if any call panicked.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.shared.n_threads == 1 {
            f(0);
            return;
        }
        let one_job_at_a_time = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        self.run_locked(&one_job_at_a_time, f);
    }

    /// [`ThreadPool::run`] for a caller that holds the dispatch lock (`_dispatch`).
    fn run_locked(&self, _dispatch: &MutexGuard<'_, ()>, f: &(dyn Fn(usize) + Sync)) {
        let shared = &*self.shared;
        // SAFETY: erasing the lifetime is sound because this function does not return until
        // every worker has finished calling the job (`remaining` reaches 0 below), so the
        // pointer never outlives the borrow of `f`.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
        // SAFETY: no worker reads `job` now: all finished the previous job (see `run`'s
        // wait loop), and none reads it before observing the epoch bump below.
        unsafe { *shared.job.get() = Some(job) };
        shared
            .remaining
            .store(shared.n_threads - 1, Ordering::Relaxed);
        {
            let _guard = shared.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.epoch.fetch_add(1, Ordering::Release);
        }
        shared.wake.notify_all();

        let own = catch_unwind(AssertUnwindSafe(|| f(0)));
        let mut spins = 0u32;
        while shared.remaining.load(Ordering::Acquire) != 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if let Err(payload) = own {
            std::panic::resume_unwind(payload);
        }
        if shared.panicked.swap(false, Ordering::Relaxed) {
            panic!("a thread-pool worker panicked");
        }
    }

    /// Runs `f(range)` over pieces of `0..n` that the threads claim, so that a thread that
    /// starts late (a worker waking up) or runs slower takes fewer pieces and both finish
    /// together. For work whose pieces are independent: which thread computes a piece must
    /// not change its result. Each index is in exactly one piece.
    ///
    /// Each thread owns a contiguous share of `0..n` and claims pieces from its front, in
    /// order (one stream through memory, and a claim counter in its own cache line); a
    /// thread done with its share then takes pieces from the backs of the others' shares.
    /// Pieces shrink as a share empties ("guided": an eighth of what is left), so that no
    /// thread waits long for another's last piece.
    pub fn for_claimed_chunks(&self, n: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
        self.for_claimed_chunks_on(n, &|_, range| f(range));
    }

    /// [`ThreadPool::for_claimed_chunks`] with the index of the thread running each piece
    /// (`f(thread, range)`), for work that keeps per-thread scratch space.
    pub fn for_claimed_chunks_on(
        &self,
        n: usize,
        f: &(dyn Fn(usize, std::ops::Range<usize>) + Sync),
    ) {
        let n_threads = self.n_threads();
        if n_threads == 1 || n <= 1 {
            if n > 0 {
                f(0, 0..n);
            }
            return;
        }
        // Tiles and jobs, never near 2^32; a share packs its two ends in one word.
        assert!(
            n <= u32::MAX as usize,
            "{n} pieces are more than a share holds"
        );
        let dispatch = self.dispatch.lock().unwrap_or_else(|e| e.into_inner());
        // The shares are the pool's, reused job after job: only the holder of the dispatch
        // lock sets them, before the job starts.
        let shares = &self.shares;
        for (t, share) in shares.iter().enumerate() {
            share.set(chunk(n, n_threads, t));
        }
        self.run_locked(&dispatch, &|thread| {
            while let Some(range) = shares[thread].take_front() {
                f(thread, range);
            }
            for other in (1..n_threads).map(|k| (thread + k) % n_threads) {
                while let Some(range) = shares[other].take_back() {
                    f(thread, range);
                }
            }
        });
    }

    /// Splits `0..n` into `n_threads()` contiguous chunks and runs `f(range)` on each in
    /// parallel (empty chunks are skipped).
    pub fn for_chunks(&self, n: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
        let n_threads = self.n_threads();
        self.run(&|i| {
            let range = chunk(n, n_threads, i);
            if !range.is_empty() {
                f(range);
            }
        });
    }
}

/// The body of [`ThreadPool::for_rows_mut2`]: `(first_row, a_rows, b_rows)`.
pub type RowsFn2<'a, A, B> = dyn Fn(usize, &mut [A], &mut [B]) + Sync + 'a;

impl ThreadPool {
    /// Splits `data`, rows of `row_len` values, into one contiguous run of rows per
    /// thread and calls `f(first_row, rows)` on each in parallel.
    pub fn for_rows_mut<T: Send>(
        &self,
        data: &mut [T],
        row_len: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        self.for_rows_mut2(data, row_len, &mut [], 0, &|r, a, _: &mut [T]| f(r, a));
    }

    /// [`ThreadPool::for_rows_mut`] over two buffers with the same number of rows (`a` of
    /// rows of `a_len` values, `b` of rows of `b_len`; `b` may be empty with `b_len` 0):
    /// `f(first_row, a_rows, b_rows)`.
    pub fn for_rows_mut2<A: Send, B: Send>(
        &self,
        a: &mut [A],
        a_len: usize,
        b: &mut [B],
        b_len: usize,
        f: &RowsFn2<'_, A, B>,
    ) {
        let n_rows = a.len() / a_len.max(1);
        assert_eq!(a.len(), n_rows * a_len, "whole rows of a");
        assert_eq!(b.len(), n_rows * b_len, "as many rows in b as in a");
        let n = self.n_threads();
        let mut parts = Vec::with_capacity(n);
        let (mut a, mut b) = (a, b);
        for i in 0..n {
            let rows = chunk(n_rows, n, i);
            let (ha, ta) = std::mem::take(&mut a).split_at_mut(rows.len() * a_len);
            let (hb, tb) = std::mem::take(&mut b).split_at_mut(rows.len() * b_len);
            (a, b) = (ta, tb);
            parts.push(Mutex::new((rows.start, ha, hb)));
        }
        self.run(&|i| {
            let mut part = parts[i].lock().unwrap_or_else(|e| e.into_inner());
            let (first, ref mut pa, ref mut pb) = *part;
            if !pa.is_empty() {
                f(first, pa, pb);
            }
        });
    }
}

/// The `i`-th of `parts` near-equal contiguous chunks of `0..n`.
pub fn chunk(n: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let base = n / parts;
    let extra = n % parts;
    let start = i * base + i.min(extra);
    let len = base + usize::from(i < extra);
    start..start + len
}

/// One thread's share of the indices of [`ThreadPool::for_claimed_chunks_on`]: what is left
/// of it, `start..end`, packed in one word (`start | end << 32`) so that the owner (from the
/// front) and other threads (from the back) claim pieces with one compare-and-swap. Aligned
/// to its own pair of cache lines, so the owner's claims stay in its own cache.
#[repr(align(128))]
struct Share(AtomicU64);

impl Share {
    fn set(&self, range: std::ops::Range<usize>) {
        let packed = range.start as u64 | (range.end as u64) << 32;
        self.0.store(packed, Ordering::Relaxed);
    }

    /// Claims a piece from the front of what is left.
    fn take_front(&self) -> Option<std::ops::Range<usize>> {
        self.take(|start, end| {
            let len = ((end - start) / 8).max(1);
            (start..start + len, start + len, end)
        })
    }

    /// Claims a piece from the back of what is left.
    fn take_back(&self) -> Option<std::ops::Range<usize>> {
        self.take(|start, end| {
            let len = ((end - start) / 8).max(1);
            (end - len..end, start, end - len)
        })
    }

    /// Claims `piece(start, end)`'s range, leaving its `(start, end)` when nothing took a
    /// piece in between; `None` once the share is empty.
    fn take(
        &self,
        piece: impl Fn(usize, usize) -> (std::ops::Range<usize>, usize, usize),
    ) -> Option<std::ops::Range<usize>> {
        let mut now = self.0.load(Ordering::Relaxed);
        loop {
            let (start, end) = ((now & 0xFFFF_FFFF) as usize, (now >> 32) as usize);
            if start >= end {
                return None;
            }
            let (range, start, end) = piece(start, end);
            let left = start as u64 | (end as u64) << 32;
            match self
                .0
                .compare_exchange_weak(now, left, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(range),
                Err(seen) => now = seen,
            }
        }
    }
}

fn worker_loop(shared: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        loop {
            let epoch = shared.epoch.load(Ordering::Acquire);
            if epoch != seen {
                seen = epoch;
                break;
            }
            if shared.shutdown.load(Ordering::Relaxed) {
                return;
            }
            spins += 1;
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else if spins < SPINS_BEFORE_SLEEP {
                std::thread::yield_now();
            } else {
                let mut guard = shared.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
                while shared.epoch.load(Ordering::Acquire) == seen
                    && !shared.shutdown.load(Ordering::Relaxed)
                {
                    guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                spins = 0;
            }
        }
        // SAFETY: the acquire load of the new epoch happens-after the dispatcher's write of
        // `job`, and the dispatcher keeps the closure alive until `remaining` reaches 0.
        let job = unsafe { *shared.job.get() };
        if let Some(job) = job {
            // SAFETY: see above; the pointee is a live `&(dyn Fn(usize) + Sync)`.
            let f = unsafe { &*job };
            if catch_unwind(AssertUnwindSafe(|| f(index))).is_err() {
                shared.panicked.store(true, Ordering::Relaxed);
            }
        }
        shared.remaining.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let _guard = self
                .shared
                .sleep_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.shutdown.store(true, Ordering::Relaxed);
        }
        self.shared.wake.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_runs_each_job_once() {
        let pool = ThreadPool::new(3);
        for _ in 0..1000 {
            let hits = [
                AtomicUsize::new(0),
                AtomicUsize::new(0),
                AtomicUsize::new(0),
            ];
            pool.run(&|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn claimed_chunks_cover_the_range_exactly_once() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            for n in [0, 1, 2, 15, 16, 17, 577] {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.for_claimed_chunks(n, &|range| {
                    for i in range {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                    }
                });
                assert!(
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                    "{threads} threads, n = {n}"
                );
            }
        }
    }

    #[test]
    fn a_slow_threads_share_is_taken_by_the_others() {
        let pool = ThreadPool::new(3);
        let n = 300;
        let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        let by_thread: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        pool.for_claimed_chunks_on(n, &|thread, range| {
            if thread == 1 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            by_thread[thread].fetch_add(range.len(), Ordering::Relaxed);
            for i in range {
                hits[i].fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        // Thread 1's share is 100 indices; its first piece is an eighth of them, and the
        // others take most of the rest while it sleeps.
        let slow = by_thread[1].load(Ordering::Relaxed);
        assert!(
            slow < 50,
            "the sleeping thread did {slow} of its 100 indices"
        );
    }

    #[test]
    fn chunks_cover_the_range_exactly() {
        for n in [0, 1, 5, 64, 577] {
            for parts in 1..5 {
                let mut next = 0;
                for i in 0..parts {
                    let r = chunk(n, parts, i);
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn worker_panic_reaches_the_caller_and_the_pool_survives() {
        let pool = ThreadPool::new(2);
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i| {
                if i == 1 {
                    panic!("boom");
                }
            })
        }));
        assert!(result.is_err());
        let sum = AtomicUsize::new(0);
        pool.run(&|i| {
            sum.fetch_add(i + 1, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn sleeping_workers_wake_up() {
        let pool = ThreadPool::new(2);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let sum = AtomicUsize::new(0);
        pool.run(&|i| {
            sum.fetch_add(i + 1, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 3);
    }
}
