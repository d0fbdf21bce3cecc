//! Where the time of generating one token goes: each traced op's time (from the previous
//! traced intermediate to its own, summed over the layers), averaged over N tokens after a
//! prompt of DEPTH tokens, then the token's time against the bound the weights' read rate puts
//! on it (as `huarizo bench --bandwidth` measures it):
//! `op_times MODEL.gguf [N] [THREADS] [DEPTH]` (defaults 64, 2, 16; `CACHE=q8_0` for an
//! 8-bit KV cache). Last, the same weights read with no arithmetic, in the token's pieces:
//! in halves, and in claimed pieces as the products take them.
use huarizo_model::{Logits, Model, State, ThreadPool};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |s| s.parse().expect("a number"))
    };
    let model = Model::load(std::path::Path::new(&args[1])).expect("load");
    let (n, threads, depth) = (arg(2, 64), arg(3, 2), arg(4, 16));
    let pool = ThreadPool::new(threads);
    // `CACHE=q8_0` in the environment: an 8-bit KV cache.
    let cache = std::env::var("CACHE").map_or(huarizo_model::CacheType::F16, |s| {
        huarizo_model::CacheType::parse(&s).expect("CACHE: f16 or q8_0")
    });
    let mut state = State::with_cache_type(&model.config, depth + n + 1, cache).expect("cache");
    let prompt: Vec<u32> = (0..depth as u32).map(|t| 100 + t % 1000).collect();
    for chunk in prompt.chunks(512) {
        model
            .forward(&pool, &mut state, chunk, Logits::Last)
            .expect("forward");
    }
    // (op, seconds) in the order the ops first ran.
    let mut times: Vec<(String, f64)> = Vec::new();
    let start = Instant::now();
    for t in 0..n as u32 {
        let mut last = Instant::now();
        let mut add = |name: &str, now: Instant, last: Instant| {
            let dt = (now - last).as_secs_f64();
            match times.iter_mut().find(|(op, _)| op == name) {
                Some((_, sum)) => *sum += dt,
                None => times.push((name.to_string(), dt)),
            }
        };
        model
            .forward_traced(
                &pool,
                &mut state,
                &[200 + t],
                Logits::Last,
                &mut |name, _, _| {
                    let now = Instant::now();
                    add(name, now, last);
                    last = now;
                },
            )
            .expect("forward");
        add("(logits)", Instant::now(), last);
    }
    let token = start.elapsed().as_secs_f64() / n as f64;
    for (op, sum) in &times {
        println!("{op:>16}: {:8.3} ms", sum / n as f64 * 1e3);
    }
    let bytes: usize = model.weights_read_per_token().iter().map(|p| p.len()).sum();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let s = Instant::now();
        std::hint::black_box(model.read_weights(&pool));
        best = best.min(s.elapsed().as_secs_f64());
    }
    // The same bytes read in the token's order and pieces (Q, K and V; O; gate and up;
    // down; output), one pass of the pool each.
    let parts = model.weights_read_per_token();
    let mut pieces: Vec<Vec<&[u8]>> = Vec::new();
    for l in parts.chunks(7).filter(|c| c.len() == 7) {
        pieces.extend([l[..3].to_vec(), vec![l[3]], l[4..6].to_vec(), vec![l[6]]]);
    }
    pieces.push(vec![parts[parts.len() - 1]]);
    let halves = best_of_five(|| read_pieces(&pool, &pieces, false));
    let claimed = best_of_five(|| read_pieces(&pool, &pieces, true));
    for (name, (total, kinds)) in [("halves", halves), ("claimed 4 KiB pieces", claimed)] {
        println!(
            "read in the token's pieces, {name}: {:.3} ms (Q, K, V {:.3}; O {:.3}; gate, up \
             {:.3}; down {:.3}; output {:.3})",
            total * 1e3,
            kinds[0] * 1e3,
            kinds[1] * 1e3,
            kinds[2] * 1e3,
            kinds[3] * 1e3,
            kinds[4] * 1e3
        );
    }
    println!(
        "token {:.3} ms ({:.1} t/s); weights {:.1} MB, read at {:.1} GB/s: bound {:.3} ms, \
         {:.1}% of it",
        token * 1e3,
        1.0 / token,
        bytes as f64 / 1e6,
        bytes as f64 / best / 1e9,
        best * 1e3,
        best / token * 100.0
    );
}

/// The run of `f` with the least total time, of five.
fn best_of_five(f: impl Fn() -> (f64, [f64; 5])) -> (f64, [f64; 5]) {
    (0..5)
        .map(|_| f())
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .expect("five runs")
}

/// Reads `pieces` (a layer's Q, K, V; O; gate, up; down, then the output) one pass of the
/// pool each: in one contiguous half per thread (`bandwidth::read_all`) or, `claimed`, in 4
/// KiB pieces claimed as the products claim their row groups (`for_claimed_chunks`). Returns
/// the total seconds and those of each kind of piece.
fn read_pieces(pool: &ThreadPool, pieces: &[Vec<&[u8]>], claimed: bool) -> (f64, [f64; 5]) {
    const PIECE: usize = 4096;
    let start = Instant::now();
    let mut kinds = [0f64; 5];
    for (i, parts) in pieces.iter().enumerate() {
        let t = Instant::now();
        if claimed {
            let firsts: Vec<usize> = parts
                .iter()
                .scan(0, |n, p| {
                    let first = *n;
                    *n += p.len().div_ceil(PIECE);
                    Some(first)
                })
                .collect();
            let n: usize = parts.iter().map(|p| p.len().div_ceil(PIECE)).sum();
            let sum = std::sync::atomic::AtomicU64::new(0);
            pool.for_claimed_chunks(n, &|range| {
                let mut s = 0u64;
                for k in range {
                    let j = firsts.iter().rposition(|&f| f <= k).expect("first is 0");
                    let lo = (k - firsts[j]) * PIECE;
                    let bytes = &parts[j][lo..(lo + PIECE).min(parts[j].len())];
                    s = s.wrapping_add(huarizo_kernels::bandwidth::checksum(bytes));
                }
                sum.fetch_add(s, std::sync::atomic::Ordering::Relaxed);
            });
            std::hint::black_box(sum.into_inner());
        } else {
            std::hint::black_box(huarizo_kernels::bandwidth::read_all(pool, parts));
        }
        kinds[if i + 1 == pieces.len() { 4 } else { i % 4 }] += t.elapsed().as_secs_f64();
    }
    (start.elapsed().as_secs_f64(), kinds)
}
