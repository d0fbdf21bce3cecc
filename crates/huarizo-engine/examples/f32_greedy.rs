//! Scratch: greedy with the f32 path. Usage: f32_greedy MODEL IDS_JSON N
use huarizo_engine::{Engine, EngineOptions};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let e = Engine::load(
        a[1].as_ref(),
        &EngineOptions {
            n_threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let mut toks: Vec<u32> = serde_json::from_str(&a[2]).unwrap();
    let n: usize = a[3].parse().unwrap();
    let v = e.config().n_vocab;
    let start = toks.len();
    for _ in 0..n {
        let l = e.logits_f32(&toks).unwrap();
        let row = &l[l.len() - v..];
        let mut best = 0;
        for i in 0..v {
            if row[i] > row[best] {
                best = i;
            }
        }
        toks.push(best as u32);
        if best == 2 {
            break;
        }
    }
    println!("{:?}", &toks[start..]);
    println!("{}", e.tokenizer().decode(&toks[start..]));
}
