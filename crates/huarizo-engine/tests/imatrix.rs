//! The importance matrix collector against the traced intermediates it reads: the
//! `in_sum2` of a matrix is the column-wise sum of squares of that matrix's input over
//! every token, recomputed here in f64 from the trace, for SmolLM2 and Gemma 3 (whose
//! post-norms must not be mistaken for matmul inputs).

use huarizo_engine::{Engine, EngineOptions, ImatrixCollector, Logits};

fn check(model: &str) {
    let engine = Engine::load(
        &huarizo_testdata::file(model),
        &EngineOptions {
            n_threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let c = engine.config().clone();
    let text = "The lighthouse on the northern cape had been kept by the same family for \
                four generations, and in all that time the lamp had gone dark only twice.";
    let tokens = engine.tokenizer().encode(text, true, false);
    let mut collector = ImatrixCollector::new(&c, false);
    // Σ x² per column in f64 of layer 0's attention input and the last layer's MLP-down input.
    let mut want_q = vec![0f64; c.n_embd];
    let mut want_down = vec![0f64; c.n_ff];
    let last = c.n_layer - 1;
    let mut state = engine.new_state(tokens.len());
    engine
        .forward_traced(&mut state, &tokens, Logits::All, &mut |name, layer, v| {
            collector.observe(name, layer, v);
            let (acc, width) = match (name, layer) {
                ("attn_norm", 0) => (&mut want_q, c.n_embd),
                ("ffn_swiglu", l) if l == last => (&mut want_down, c.n_ff),
                _ => return,
            };
            for row in v.chunks_exact(width) {
                for (a, &x) in acc.iter_mut().zip(row) {
                    *a += f64::from(x) * f64::from(x);
                }
            }
        })
        .unwrap();
    let sums = collector.weight_sums();
    assert_eq!(sums.len(), c.n_layer * 7, "{model}");
    for (name, want) in [
        ("blk.0.attn_q.weight".to_string(), &want_q),
        (format!("blk.{last}.ffn_down.weight"), &want_down),
    ] {
        let (got, count) = sums[&name];
        assert_eq!(count, tokens.len() as u64, "{model} {name}");
        assert_eq!(got.len(), want.len(), "{model} {name}");
        for (j, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
            assert!(
                (f64::from(g) - w).abs() <= 1e-5 * w.abs().max(1e-6),
                "{model} {name} column {j}: {g} vs {w}"
            );
        }
    }
    // Each weight's width is its input's: the attention output reads H·Dv columns.
    let (wo, _) = sums["blk.0.attn_output.weight"];
    assert_eq!(wo.len(), c.n_head * c.head_dim_v, "{model}");
}

#[test]
fn in_sum2_is_the_sum_of_squares_of_the_matmul_input_smollm2() {
    check("smollm2.gguf");
}

#[test]
fn in_sum2_is_the_sum_of_squares_of_the_matmul_input_gemma3() {
    check("gemma3.gguf");
}
