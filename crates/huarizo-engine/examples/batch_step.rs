//! Times the continuous-batching step: N sequences decoding together, against one
//! sequence decoding alone and one forward of N tokens of a single sequence.
//! Also times the default sampler on one row of logits. Usage: batch_step MODEL [N]

use huarizo_engine::{Engine, EngineOptions, Logits, Scratch, SeqBatch};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine = Engine::load(
        args[1].as_ref(),
        &EngineOptions {
            n_threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let n: usize = args.get(2).map_or(16, |s| s.parse().unwrap());
    sampling_cost(&engine);
    let prompt = engine.tokenize_prompt("Once upon a time, in a land far away,");
    let mut states: Vec<_> = (0..n).map(|_| engine.new_state(1024)).collect();
    for s in &mut states {
        engine.forward(s, &prompt, Logits::Last).unwrap();
    }
    let mut scratch = Scratch::default();
    let tokens: Vec<[u32; 1]> = (0..n).map(|i| [100 + i as u32]).collect();
    let steps = 32;
    let t0 = Instant::now();
    for _ in 0..steps {
        let mut batch: Vec<SeqBatch<'_>> = states
            .iter_mut()
            .zip(&tokens)
            .map(|(s, t)| SeqBatch {
                state: s,
                tokens: t,
                logits: Logits::Last,
                places: huarizo_engine::BatchPlaces::ThisBatch,
            })
            .collect();
        engine.forward_batch(&mut scratch, &mut batch).unwrap();
    }
    let batched = t0.elapsed().as_secs_f64() / steps as f64;
    let mut one = engine.new_state(1024);
    engine.forward(&mut one, &prompt, Logits::Last).unwrap();
    let t0 = Instant::now();
    for i in 0..steps {
        engine
            .forward(&mut one, &[100 + i as u32], Logits::Last)
            .unwrap();
    }
    let single = t0.elapsed().as_secs_f64() / steps as f64;
    let mut flat = engine.new_state(4096);
    let block: Vec<u32> = (0..n as u32).map(|i| 100 + i).collect();
    let t0 = Instant::now();
    for _ in 0..steps {
        engine.forward(&mut flat, &block, Logits::Last).unwrap();
    }
    let one_seq = t0.elapsed().as_secs_f64() / steps as f64;
    println!(
        "{n} sequences × 1 token: {:.2} ms/step ({:.0} tok/s); 1 sequence × 1 token: {:.2} ms ({:.0} tok/s); 1 sequence × {n} tokens: {:.2} ms",
        batched * 1e3, n as f64 / batched, single * 1e3, 1.0 / single, one_seq * 1e3
    );
}

/// Times the default sampler on one row of real logits.
fn sampling_cost(engine: &Engine) {
    use huarizo_engine::{Sampler, SamplingParams};
    let mut state = engine.new_state(64);
    let logits = engine
        .forward(
            &mut state,
            &engine.tokenize_prompt("Once upon a time"),
            Logits::Last,
        )
        .unwrap()
        .to_vec();
    let mut s = Sampler::new(SamplingParams::default());
    let t0 = Instant::now();
    for _ in 0..1000 {
        std::hint::black_box(s.sample(&logits, &[]));
    }
    println!(
        "sampling (llama.cpp defaults): {:.1} µs per token",
        t0.elapsed().as_secs_f64() * 1e3
    );
}
