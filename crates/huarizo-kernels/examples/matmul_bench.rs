//! Times one batched matrix product per weight type on random data, best of several runs,
//! in GMAC/s: `matmul_bench [THREADS] [TOKENS] [N_OUT] [N_IN] [TYPES…]` (defaults: 1 thread,
//! 512 tokens, Qwen2.5-0.5B's `ffn_up` shape 4864 × 896, Q5_0). With `PACKED=1` in the
//! environment, weights that can be packed (`huarizo_kernels::packed`) are; `REPS=N` times
//! N runs instead of 7 (small products need many for a steady best); `ROTATE=K` multiplies K
//! copies of the weights in turn, so that a matrix smaller than the caches is read from
//! memory as a model's are. Beside each product's rate it prints the rate a plain sum reads
//! the same bytes at, in the same process (`huarizo_kernels::bandwidth`).

use huarizo_kernels::matmul::{matmul_many, quantize_activations, Product};
use huarizo_kernels::packed::PackedRows;
use huarizo_kernels::pool::ThreadPool;
use huarizo_kernels::{quantize_row_ref, GgmlType};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: usize| args.get(i).map_or(default, |s| s.parse().unwrap());
    let (threads, tokens, n_out, n_in) = (arg(1, 1), arg(2, 512), arg(3, 4864), arg(4, 896));
    let types: Vec<GgmlType> = if args.len() > 5 {
        args[5..]
            .iter()
            .map(|s| {
                GgmlType::ALL
                    .into_iter()
                    .find(|t| t.name() == s)
                    .expect("type")
            })
            .collect()
    } else {
        vec![GgmlType::Q5_0]
    };
    let reps: usize = std::env::var("REPS").map_or(7, |s| s.parse().expect("REPS"));
    let pool = ThreadPool::new(threads);
    let mut seed = 0x1234_5678u64;
    let mut rnd = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let x: Vec<f32> = (0..tokens * n_in).map(|_| rnd()).collect();
    let row: Vec<f32> = (0..n_in).map(|_| rnd() * 0.1).collect();
    for t in types {
        let rb = t.row_bytes(n_in).expect("whole blocks");
        let mut w = vec![0u8; rb * n_out];
        for r in 0..n_out {
            let shifted: Vec<f32> = row
                .iter()
                .map(|v| v * (1.0 + r as f32 / n_out as f32))
                .collect();
            quantize_row_ref(t, &shifted, &mut w[r * rb..(r + 1) * rb]);
        }
        let mut acts = Vec::new();
        quantize_activations(t, &x, n_in, &mut acts);
        let mut out = vec![0f32; tokens * n_out];
        let copies: usize = std::env::var("ROTATE").map_or(1, |s| s.parse().expect("ROTATE"));
        let ws: Vec<Vec<u8>> = (0..copies).map(|_| w.clone()).collect();
        let packs: Vec<Option<PackedRows>> = ws
            .iter()
            .map(|w| match std::env::var("PACKED").as_deref() {
                Ok("1") => PackedRows::pack(t, w, n_out, n_in),
                _ => None,
            })
            .collect();
        let packed = packs[0].clone();
        let mut best = f64::MAX;
        for _ in 0..reps {
            let start = Instant::now();
            for (w, packed) in ws.iter().zip(&packs) {
                let mut p = [Product {
                    w_type: t,
                    w,
                    packed: packed.as_ref(),
                    n_out,
                    out: &mut out,
                }];
                matmul_many(&pool, n_in, &acts, tokens, &mut p);
            }
            best = best.min(start.elapsed().as_secs_f64() / copies as f64);
        }
        let bytes = packed.as_ref().map_or(&w[..], |p| p.bytes());
        let mut best_read = f64::MAX;
        for _ in 0..reps.min(7) {
            let start = Instant::now();
            for (w, packed) in ws.iter().zip(&packs) {
                let b = packed.as_ref().map_or(&w[..], |p| p.bytes());
                std::hint::black_box(huarizo_kernels::bandwidth::read_all(&pool, &[b]));
            }
            best_read = best_read.min(start.elapsed().as_secs_f64() / copies as f64);
        }
        let gmac = (tokens * n_out * n_in) as f64 / best / 1e9;
        println!(
            "{:>5}{} {tokens}×{n_out}×{n_in}: {:.3} ms, {gmac:.1} GMAC/s, {:.1} GB/s of weights \
             (a plain sum reads them at {:.1})",
            t.name(),
            if packed.is_some() { " packed" } else { "" },
            best * 1e3,
            bytes.len() as f64 / best / 1e9,
            bytes.len() as f64 / best_read / 1e9
        );
    }
}
