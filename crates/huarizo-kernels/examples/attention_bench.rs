//! Generation attention at depth: one query per call against `LAYERS` separate f16 caches
//! (so that they do not all fit in the caches, as in a model), timed per call.
//!
//! `attention_bench THREADS DEPTH N_HEAD N_HEAD_KV HEAD_DIM [LAYERS] [REPS]`
use half::f16;
use huarizo_kernels::attention::{attention, AttnParams};
use huarizo_kernels::pool::ThreadPool;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: usize| args.get(i).map_or(default, |s| s.parse().unwrap());
    let (threads, depth, h, hkv, d) = (arg(1, 2), arg(2, 4096), arg(3, 9), arg(4, 3), arg(5, 64));
    let (layers, reps) = (arg(6, 30), arg(7, 20));
    let pool = ThreadPool::new(threads);
    let mut seed = 0x9e37_79b9u64;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let n = depth + 1;
    let caches: Vec<(Vec<f16>, Vec<f16>)> = (0..layers)
        .map(|_| {
            let mut v = |len: usize| (0..len).map(|_| f16::from_f32(rnd())).collect::<Vec<_>>();
            (v(n * hkv * d), v(n * hkv * d))
        })
        .collect();
    let q: Vec<f32> = (0..h * d).map(|_| rnd()).collect();
    let p = AttnParams {
        n_head: h,
        n_head_kv: hkv,
        head_dim: d,
        head_dim_v: d,
        scale: 1.0 / (d as f32).sqrt(),
        window: None,
    };
    let mut out = vec![0f32; h * d];
    let mut scratch = Vec::new();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let start = Instant::now();
        for (k, v) in &caches {
            attention(&pool, &p, &q, depth, k, v, &mut out, &mut scratch);
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    // The same bytes read once in order, for comparison.
    let mut best_read = f64::MAX;
    for _ in 0..reps {
        let start = Instant::now();
        let mut acc = [0u64; 8];
        for (k, v) in &caches {
            for part in [k, v] {
                for chunk in part.chunks_exact(32) {
                    for (a, w) in acc.iter_mut().zip(chunk.chunks_exact(4)) {
                        *a ^= u64::from(w[0].to_bits()) | u64::from(w[3].to_bits()) << 16;
                    }
                }
            }
        }
        std::hint::black_box(acc);
        best_read = best_read.min(start.elapsed().as_secs_f64());
    }
    let bytes: usize = caches.iter().map(|(k, v)| 2 * (k.len() + v.len())).sum();
    println!(
        "reading the caches once: {:.2} ms ({:.1} GB/s)",
        best_read * 1e3,
        bytes as f64 / best_read / 1e9
    );
    println!(
        "depth {depth}, {h}/{hkv} heads × {d}, {layers} layers: best {:.2} ms per token ({:.1} µs per layer)",
        best * 1e3,
        best * 1e6 / layers as f64
    );
}
