//! The request types on SmolLM2: batched, context-sharing scoring gives exactly the
//! log-probabilities of one plain forward pass per request; rolling windows cover every
//! token; generation stops before its stop sequence.

use huarizo_engine::sampling::token_logprob;
use huarizo_engine::{Engine, EngineOptions, Logits};
use huarizo_eval::encode::encode_pair;
use huarizo_eval::{Evaluator, GenerateUntil, Loglikelihood, Rolling, RunOptions};

fn smollm2() -> Engine {
    let path = huarizo_testdata::file("smollm2.gguf");
    Engine::load(
        &path,
        &EngineOptions {
            n_threads: 0,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Sum of log-probabilities of `tokens[from..]` from one forward over all of `tokens`.
fn plain(engine: &Engine, tokens: &[u32], from: usize) -> (f64, bool) {
    let mut state = engine.new_state(tokens.len());
    let logits = engine
        .forward(&mut state, tokens, Logits::All)
        .unwrap()
        .to_vec();
    let v = engine.config().n_vocab;
    let mut sum = 0.0f64;
    let mut greedy = true;
    for p in from..tokens.len() {
        let row = &logits[(p - 1) * v..p * v];
        sum += token_logprob(row, tokens[p]) as f64;
        let best = row
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
            .0;
        greedy &= best as u32 == tokens[p];
    }
    (sum, greedy)
}

#[test]
fn shared_context_batched_scoring_equals_plain_forwards() {
    let engine = smollm2();
    let contexts = [
        "Question: What is the capital of France?\nAnswer:",
        "The quick brown fox jumps over the",
        "def add(a, b):\n    return",
    ];
    let continuations = [" Paris", " London", " the lazy dog", " a + b", " 42"];
    let requests: Vec<Loglikelihood> = contexts
        .iter()
        .flat_map(|c| {
            continuations.iter().map(move |x| Loglikelihood {
                context: c.to_string(),
                continuation: x.to_string(),
            })
        })
        .collect();
    let ev = Evaluator::new(
        &engine,
        RunOptions {
            n_slots: 3,
            ..RunOptions::default()
        },
    );
    let got = ev.loglikelihood(&requests).unwrap();
    for (r, g) in requests.iter().zip(&got) {
        let (ctx, cont) = encode_pair(engine.tokenizer(), &r.context, &r.continuation);
        let from = ctx.len();
        let tokens: Vec<u32> = ctx.into_iter().chain(cont).collect();
        let (want, greedy) = plain(&engine, &tokens, from);
        assert!(
            (g.logprob - want).abs() < 1e-4,
            "{r:?}: {} vs {want}",
            g.logprob
        );
        assert_eq!(g.is_greedy, greedy, "{r:?}");
        assert_eq!(g.tokens, tokens.len() - from);
    }
}

#[test]
fn a_trailing_space_moves_to_the_continuation() {
    let engine = smollm2();
    let tok = engine.tokenizer();
    let a = encode_pair(tok, "Answer: ", "Paris");
    let b = encode_pair(tok, "Answer:", " Paris");
    assert_eq!(a, b);
}

#[test]
fn rolling_scores_every_token_and_generation_stops_before_until() {
    let engine = smollm2();
    let ev = Evaluator::new(&engine, RunOptions::default());
    let text = "Paris is the capital and most populous city of France. ".repeat(3);
    let r = ev.rolling(&[Rolling { text: text.clone() }]).unwrap();
    let n = engine.tokenizer().encode(&text, false, false).len();
    assert_eq!(r[0].tokens, n);
    assert!(r[0].logprob < 0.0 && r[0].logprob > -10.0 * n as f64);
    let out = ev
        .generate(&[GenerateUntil {
            context: "1, 2, 3, 4, 5,".into(),
            until: vec![" 8".into()],
            max_tokens: 32,
        }])
        .unwrap();
    assert!(!out[0].contains(" 8"), "{out:?}");
    assert!(out[0].starts_with(" 6"), "{out:?}");
}
