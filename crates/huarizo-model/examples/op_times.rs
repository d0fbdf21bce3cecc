//! Where the time of generating one token goes: each traced op's time (from the previous
//! traced intermediate to its own, summed over the layers), averaged over N tokens after a
//! prompt of DEPTH tokens, then the token's time against the bound the weights' read rate puts
//! on it (as `huarizo bench --bandwidth` measures it):
//! `op_times MODEL.gguf [N] [THREADS] [DEPTH]` (defaults 64, 2, 16; `CACHE=q8_0` for an
//! 8-bit KV cache).
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
    let mut best_pieces = f64::MAX;
    for _ in 0..5 {
        let s = Instant::now();
        for p in &pieces {
            std::hint::black_box(huarizo_kernels::bandwidth::read_all(&pool, p));
        }
        best_pieces = best_pieces.min(s.elapsed().as_secs_f64());
    }
    println!("read in the token's pieces: {:.3} ms", best_pieces * 1e3);
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
