//! Writes the named intermediates of the last token of a sequence (fed one token at a time)
//! as `NAME-LAYER.bin` little-endian f32 files in OUT_DIR, for comparing with a reference
//! implementation's dump: `dump_trace MODEL.gguf OUT_DIR ID ID …`. With `BATCH` set in the
//! environment, all tokens go through one batched pass and every row is written.
use huarizo_model::{Logits, Model, State, ThreadPool};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = Model::load(std::path::Path::new(&args[1])).expect("load");
    let out = std::path::PathBuf::from(&args[2]);
    std::fs::create_dir_all(&out).expect("out dir");
    let ids: Vec<u32> = args[3..]
        .iter()
        .map(|s| s.parse().expect("token id"))
        .collect();
    let pool = ThreadPool::new(2);
    let mut state = State::new(&model.config, 512);
    let last = if std::env::var_os("BATCH").is_some() {
        0
    } else {
        ids.len() - 1
    };
    for &id in &ids[..last] {
        model
            .forward(&pool, &mut state, &[id], Logits::Last)
            .expect("forward");
    }
    let mut write = |name: &str, layer: usize, values: &[f32]| {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(out.join(format!("{name}-{layer}.bin")), bytes).expect("write");
    };
    model
        .forward_traced(&pool, &mut state, &ids[last..], Logits::Last, &mut write)
        .expect("forward");
}
