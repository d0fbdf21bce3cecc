//! Evidence layer 6: behaviour. When both models use the same tokenizer, the
//! next-token distributions they give on fixed probe texts are compared (KL divergence,
//! top-1 agreement).

use huarizo_engine::{Engine, EngineOptions, Logits};
use serde::Serialize;
use std::path::Path;

/// Texts the models read; each position's next-token distribution is compared.
const PROBE_TEXTS: &[&str] = &[
    "The history of the city begins in the early middle ages, when a small market grew \
     around the bridge over the river. By the fifteenth century it had become a centre of \
     trade, and its merchants built the churches and halls that still stand today.",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    \
     for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint([fibonacci(i) for i in range(10)])\n",
    "Question: A farmer has 12 cows and buys 7 more. Then 5 cows are sold. How many cows \
     does the farmer have now?\nAnswer: 12 + 7 = 19, and 19 - 5 = 14. The farmer has 14 cows.",
];

/// The behaviour layer of the report.
#[derive(Clone, Debug, Serialize)]
pub struct BehaviourReport {
    /// Positions compared.
    pub positions: usize,
    /// Mean KL(A‖B) of the next-token distributions, in nats.
    pub mean_kl: f64,
    /// The largest per-position KL.
    pub max_kl: f64,
    /// Share of positions where both models rank the same token first.
    pub top1_agreement: f64,
}

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let lse = logits
        .iter()
        .map(|&x| (x as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    logits.iter().map(|&x| x as f64 - lse).collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Runs the probe texts through both models. `Err` says why it could not (a model that
/// does not load for inference, for instance with renamed tensors).
pub fn compare(a: &Path, b: &Path, threads: usize) -> Result<BehaviourReport, String> {
    let options = EngineOptions {
        n_threads: threads,
        ..Default::default()
    };
    let ea = Engine::load(a, &options).map_err(|e| e.to_string())?;
    let eb = Engine::load(b, &options).map_err(|e| e.to_string())?;
    let vocab = ea.config().n_vocab;
    if eb.config().n_vocab != vocab {
        return Err("the vocabularies differ in size".into());
    }
    let (mut positions, mut total_kl, mut max_kl, mut agree) = (0usize, 0.0f64, 0.0f64, 0usize);
    for text in PROBE_TEXTS {
        let tokens = ea.tokenizer().encode(text, true, false);
        let run = |e: &Engine| -> Result<Vec<f32>, String> {
            let mut state = e.new_state(tokens.len());
            if state.n_ctx < tokens.len() {
                return Err("the probe text is longer than the context".into());
            }
            e.forward(&mut state, &tokens, Logits::All)
                .map(|l| l.to_vec())
                .map_err(|e| e.to_string())
        };
        let la = run(&ea)?;
        let lb = run(&eb)?;
        for (pa, pb) in la.chunks_exact(vocab).zip(lb.chunks_exact(vocab)) {
            let (qa, qb) = (log_softmax(pa), log_softmax(pb));
            let kl: f64 = qa
                .iter()
                .zip(&qb)
                .map(|(x, y)| x.exp() * (x - y))
                .sum::<f64>()
                .max(0.0);
            total_kl += kl;
            max_kl = max_kl.max(kl);
            agree += usize::from(argmax(pa) == argmax(pb));
            positions += 1;
        }
    }
    Ok(BehaviourReport {
        positions,
        mean_kl: total_kl / positions.max(1) as f64,
        max_kl,
        top1_agreement: agree as f64 / positions.max(1) as f64,
    })
}
