//! Prints the logits of every position of a token sequence, one value per line, for
//! comparing with another implementation: `dump_logits MODEL.gguf N_BATCH ID ID …`. The first
//! N_BATCH tokens go through one batched forward pass, the rest one at a time.
//! `HUARIZO_LORA=adapter.gguf` applies a LoRA adapter; `HUARIZO_F32=1` uses the f32
//! training forward pass instead (all tokens at once).
use huarizo_model::{Logits, Model, State, ThreadPool};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut model = Model::load(std::path::Path::new(&args[1])).expect("load");
    let lora = std::env::var_os("HUARIZO_LORA").map(|p| {
        huarizo_model::train::read_gguf_lora(std::path::Path::new(&p), &model.config)
            .expect("adapter")
    });
    if std::env::var_os("HUARIZO_F32").is_some() {
        let ids: Vec<u32> = args[3..].iter().map(|s| s.parse().expect("id")).collect();
        let pool = ThreadPool::new(2);
        for v in model
            .train_logits(&pool, lora.as_ref(), &ids)
            .expect("forward")
        {
            println!("{v}");
        }
        return;
    }
    model.set_lora(lora).expect("adapter fits");
    let n_batch: usize = args[2].parse().expect("N_BATCH");
    let ids: Vec<u32> = args[3..]
        .iter()
        .map(|s| s.parse().expect("token id"))
        .collect();
    let pool = ThreadPool::new(2);
    let mut state = State::new(&model.config, 512);
    let mut rows: Vec<f32> = model
        .forward(&pool, &mut state, &ids[..n_batch], Logits::All)
        .expect("forward")
        .to_vec();
    for &id in &ids[n_batch..] {
        rows.extend_from_slice(
            model
                .forward(&pool, &mut state, &[id], Logits::Last)
                .expect("forward"),
        );
    }
    for v in rows {
        println!("{v}");
    }
}
