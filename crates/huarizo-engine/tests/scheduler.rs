//! The continuous-batching scheduler on SmolLM2: a request alone computes what
//! `Engine::generate` computes; requests batched together still agree with their solo
//! runs; prompt log-probabilities equal a direct forward's; a closed sink is dropped at
//! the next step; a cached prefix is reused.

use huarizo_engine::sampling::token_logprob;
use huarizo_engine::{
    CacheType, Engine, EngineOptions, Event, EventSink, FinishReason, GenerateParams, Logits,
    Request, SamplingParams, Scheduler, SchedulerOptions,
};
use std::sync::{Arc, Mutex};

/// Collects events; can be closed from outside to play a client that went away.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    closed: Arc<Mutex<bool>>,
}

impl EventSink for Recorder {
    fn send(&mut self, event: Event) -> bool {
        self.events.lock().unwrap().push(event);
        !*self.closed.lock().unwrap()
    }
    fn is_closed(&self) -> bool {
        *self.closed.lock().unwrap()
    }
}

impl Recorder {
    fn tokens(&self) -> Vec<u32> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::Token { token, .. } => Some(*token),
                _ => None,
            })
            .collect()
    }
    fn done(&self) -> Option<(FinishReason, usize)> {
        self.events.lock().unwrap().iter().find_map(|e| match e {
            Event::Done {
                finish,
                cached_tokens,
                ..
            } => Some((*finish, *cached_tokens)),
            _ => None,
        })
    }
}

/// SmolLM2 on two threads, the model every test here runs.
fn smollm2() -> Engine {
    Engine::load(
        &huarizo_testdata::file("smollm2.gguf"),
        &EngineOptions {
            n_threads: 2,
            ..Default::default()
        },
    )
    .unwrap()
}

/// SmolLM2 whose sequences keep an 8-bit KV cache.
fn smollm2_q8() -> Engine {
    let mut engine = smollm2();
    engine.set_cache_type(CacheType::Q8_0).unwrap();
    engine
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        sampling: SamplingParams::greedy(),
        max_tokens,
        stop_at_eog: false,
        ..GenerateParams::default()
    }
}

fn request(prompt: Vec<u32>, params: GenerateParams, sink: &Recorder) -> Request {
    Request {
        prompt,
        params,
        prompt_logprobs: None,
        prompt_logprobs_from: 0,
        logprobs: false,
        constraint: None,
        reference_prefill: None,
        sink: Box::new(sink.clone()),
    }
}

fn run_to_end(s: &mut Scheduler<'_>) {
    for _ in 0..10_000 {
        if s.n_active() == 0 {
            return;
        }
        s.step().unwrap();
    }
    panic!("the scheduler did not finish");
}

const PROMPTS: [&str; 4] = [
    "The quick brown fox",
    "def fibonacci(n):",
    "Paris is the capital of",
    "Once upon a time, in a small village by the sea, there lived",
];

#[test]
fn batched_requests_agree_with_solo_generation() {
    let engine = smollm2();
    let n = 16;
    let solo: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| {
            let mut state = engine.new_state(256);
            let ids = engine.tokenize_prompt(p);
            engine
                .generate(&mut state, &mut Vec::new(), &ids, &greedy(n), |_| {
                    std::ops::ControlFlow::Continue(())
                })
                .unwrap()
                .tokens
        })
        .collect();

    // Alone in the scheduler: exactly generate()'s tokens.
    let mut s = Scheduler::new(
        &engine,
        SchedulerOptions {
            n_slots: 4,
            n_ctx: 256,
            max_batch_tokens: 512,
        },
    );
    for (p, expected) in PROMPTS.iter().zip(&solo) {
        let r = Recorder::default();
        assert!(s
            .admit(request(engine.tokenize_prompt(p), greedy(n), &r))
            .is_none());
        run_to_end(&mut s);
        assert_eq!(&r.tokens(), expected, "solo run of {p:?}");
        assert_eq!(r.done().unwrap().0, FinishReason::Length);
    }

    // All four at once, prompts read in chunks of at most 7 tokens next to the others'
    // decoding: each gives its solo run's tokens exactly (on SmolLM2 the batched kernels
    // give the one-row bits; see batched_forward_equals_separate_forwards_bit_for_bit).
    let mut s = Scheduler::new(
        &engine,
        SchedulerOptions {
            n_slots: 4,
            n_ctx: 256,
            max_batch_tokens: 7,
        },
    );
    let recs: Vec<Recorder> = PROMPTS.iter().map(|_| Recorder::default()).collect();
    for (p, r) in PROMPTS.iter().zip(&recs) {
        assert!(s
            .admit(request(engine.tokenize_prompt(p), greedy(n), r))
            .is_none());
    }
    run_to_end(&mut s);
    for ((r, expected), p) in recs.iter().zip(&solo).zip(PROMPTS) {
        assert_eq!(&r.tokens(), expected, "batched run of {p:?}");
    }
}

#[test]
fn prompt_logprobs_cancellation_and_prefix_reuse() {
    let engine = smollm2();
    let ids = engine.tokenize_prompt("The capital of France is Paris, and the capital of Italy is");
    let mut s = Scheduler::new(
        &engine,
        SchedulerOptions {
            n_slots: 2,
            n_ctx: 128,
            max_batch_tokens: 5,
        },
    );

    // Echo log-probabilities, read in chunks of 5: equal to one forward over the prompt.
    let r = Recorder::default();
    let mut req = request(ids.clone(), greedy(0), &r);
    req.prompt_logprobs = Some(3);
    assert!(s.admit(req).is_none());
    run_to_end(&mut s);
    let lps = r
        .events
        .lock()
        .unwrap()
        .iter()
        .find_map(|e| match e {
            Event::PromptLogprobs(l) => Some(l.clone()),
            _ => None,
        })
        .unwrap();
    let mut state = engine.new_state(128);
    let all = engine
        .forward(&mut state, &ids, Logits::All)
        .unwrap()
        .to_vec();
    let v = engine.config().n_vocab;
    assert_eq!(lps.len(), ids.len());
    assert!(lps[0].is_none());
    for (i, lp) in lps.iter().enumerate().skip(1) {
        let lp = lp.as_ref().unwrap();
        let direct = token_logprob(&all[(i - 1) * v..i * v], ids[i]);
        assert_eq!(lp.token, ids[i]);
        assert!(
            (lp.logprob - direct).abs() < 1e-4,
            "position {i}: {} vs {direct}",
            lp.logprob
        );
        assert_eq!(lp.top.len(), 3);
    }
    assert!(r.tokens().is_empty());

    // The same prompt again reuses the cache (all but the last token).
    let r = Recorder::default();
    assert!(s.admit(request(ids.clone(), greedy(2), &r)).is_none());
    run_to_end(&mut s);
    assert_eq!(r.done().unwrap().1, ids.len() - 1);

    // A client that goes away is dropped at the next step, with nothing more sent.
    let r = Recorder::default();
    assert!(s.admit(request(ids.clone(), greedy(100), &r)).is_none());
    for _ in 0..3 {
        s.step().unwrap();
    }
    *r.closed.lock().unwrap() = true;
    let seen = r.events.lock().unwrap().len();
    let stats = s.step().unwrap();
    assert_eq!(stats.cancelled, 1);
    assert_eq!(s.n_active(), 0);
    assert_eq!(r.events.lock().unwrap().len(), seen);
}

#[test]
fn impossible_requests_get_errors() {
    let engine = smollm2();
    let mut s = Scheduler::new(
        &engine,
        SchedulerOptions {
            n_slots: 1,
            n_ctx: 8,
            max_batch_tokens: 64,
        },
    );
    for prompt in [vec![], vec![1; 9], vec![u32::MAX]] {
        let r = Recorder::default();
        assert!(s.admit(request(prompt, greedy(4), &r)).is_none());
        assert!(matches!(r.events.lock().unwrap()[0], Event::Error(_)));
        assert_eq!(s.n_active(), 0);
    }
    // A generation that fills the context ends with Length.
    let r = Recorder::default();
    assert!(s.admit(request(vec![1, 2, 3], greedy(100), &r)).is_none());
    run_to_end(&mut s);
    assert_eq!(r.done().unwrap().0, FinishReason::Length);
    assert_eq!(r.tokens().len(), 6);
}

/// On SmolLM2 (Q4_1 and Q8_0 weights, whose four-row kernels give the one-row kernel's
/// bits), a batched forward of several sequences, one still reading its prompt, gives each
/// sequence exactly the logits of its own forward.
#[test]
fn batched_forward_equals_separate_forwards_bit_for_bit() {
    batched_equals_separate(&smollm2());
}

/// The same with an 8-bit KV cache, whose attention computes each row on its own.
#[test]
fn batched_forward_equals_separate_forwards_with_an_8_bit_cache() {
    batched_equals_separate(&smollm2_q8());
}

fn batched_equals_separate(engine: &Engine) {
    use huarizo_engine::{Scratch, SeqBatch};
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| engine.tokenize_prompt(p)).collect();
    let v = engine.config().n_vocab;
    // Each sequence has read its prompt but the last token; the batch feeds that token
    // to the first three and the whole prompt of the fourth (fresh) with all its logits.
    let mut alone = Vec::new();
    let mut states = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let mut solo = engine.new_state(128);
        let mut batched = engine.new_state(128);
        let feed: &[u32] = if i < 3 {
            engine
                .forward(&mut solo, &p[..p.len() - 1], Logits::Last)
                .unwrap();
            engine
                .forward(&mut batched, &p[..p.len() - 1], Logits::Last)
                .unwrap();
            &p[p.len() - 1..]
        } else {
            p
        };
        let which = if i < 3 { Logits::Last } else { Logits::All };
        alone.push(engine.forward(&mut solo, feed, which).unwrap().to_vec());
        states.push((batched, feed.to_vec(), which));
    }
    let mut scratch = Scratch::default();
    let mut batch: Vec<SeqBatch<'_>> = states
        .iter_mut()
        .map(|(s, f, w)| SeqBatch {
            state: s,
            tokens: f,
            logits: *w,
            places: huarizo_engine::BatchPlaces::ThisBatch,
        })
        .collect();
    let rows: Vec<usize> = batch.iter().map(SeqBatch::n_logits).collect();
    let logits = engine.forward_batch(&mut scratch, &mut batch).unwrap();
    let mut at = 0;
    for (i, (n, want)) in rows.iter().zip(&alone).enumerate() {
        let got = &logits[at * v..(at + n) * v];
        assert_eq!(got.len(), want.len());
        let same = got
            .iter()
            .zip(want)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "sequence {i}: batched logits differ from its own forward"
        );
        at += n;
    }
}

/// Requests sharing a long preamble (a few-shot prompt, a system prompt): the rows of the
/// preamble are computed once and copied between slots, both when the requests arrive
/// together (the later ones wait a step for the first) and when one arrives while another
/// slot holds the preamble; every request's prompt log-probabilities are bit-identical to
/// its run alone.
#[test]
fn shared_prefixes_are_computed_once_and_copied_between_slots() {
    shared_prefixes(&smollm2());
}

/// The same with an 8-bit KV cache (its rows copied in its own layout).
#[test]
fn shared_prefixes_are_copied_in_an_8_bit_cache() {
    shared_prefixes(&smollm2_q8());
}

fn shared_prefixes(engine: &Engine) {
    let preamble = "Answer each question with one word. Q: What colour is the sky on a clear \
        day? A: Blue. Q: What do bees make? A: Honey. Q: Which animal barks? A: A dog. Q: ";
    let questions = [
        "What is frozen water called? A: Ice.",
        "Which planet do we live on? A: Earth.",
        "What do cows drink? A: Water.",
        "What is the opposite of hot? A: Cold.",
    ];
    let prompts: Vec<Vec<u32>> = questions
        .iter()
        .map(|q| engine.tokenize_prompt(&format!("{preamble}{q}")))
        .collect();
    let shared = prompts[0]
        .iter()
        .zip(&prompts[1])
        .take_while(|(a, b)| a == b)
        .count();
    assert!(shared >= 40, "the preamble is {shared} tokens");
    // Scored as evaluation scores them: the last 4 tokens, in llama.cpp's batches.
    let scored = |prompt: &[u32], r: &Recorder| {
        let mut req = request(prompt.to_vec(), greedy(0), r);
        req.prompt_logprobs = Some(1);
        req.prompt_logprobs_from = prompt.len() - 4;
        req.reference_prefill = Some(prompt.len() - 1);
        req
    };
    let logprobs = |r: &Recorder| {
        r.events.lock().unwrap().iter().find_map(|e| match e {
            Event::PromptLogprobs(l) => Some(l.clone()),
            _ => None,
        })
    };
    let options = |n_slots| SchedulerOptions {
        n_slots,
        n_ctx: 128,
        max_batch_tokens: 512,
    };
    let run_counting = |s: &mut Scheduler<'_>| {
        let mut fed = 0;
        while s.n_active() > 0 {
            fed += s.step().unwrap().prompt_tokens;
        }
        fed
    };

    let mut alone = Vec::new();
    let mut alone_fed = 0;
    for p in &prompts {
        let mut s = Scheduler::new(engine, options(1));
        let r = Recorder::default();
        assert!(s.admit(scored(p, &r)).is_none());
        alone_fed += run_counting(&mut s);
        alone.push(logprobs(&r).unwrap());
    }

    // Three at once: the first reads the preamble, the other two wait and copy it.
    let mut s = Scheduler::new(engine, options(4));
    let recs: Vec<Recorder> = (0..3).map(|_| Recorder::default()).collect();
    for (p, r) in prompts.iter().zip(&recs) {
        assert!(s.admit(scored(p, r)).is_none());
    }
    let fed = run_counting(&mut s);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(
            logprobs(r).unwrap(),
            alone[i],
            "request {i} with a shared prefix"
        );
    }
    let solo3: usize = prompts[..3].iter().map(Vec::len).sum();
    assert!(
        fed + 2 * (shared - 1) <= solo3,
        "fed {fed} tokens for prompts of {solo3} sharing {shared}"
    );
    assert_eq!(alone_fed, prompts.iter().map(Vec::len).sum::<usize>());
    let copied = recs[1..].iter().map(|r| r.done().unwrap().1);
    assert!(copied.into_iter().all(|c| c >= shared - 1));

    // One arriving while another slot, busy generating, holds the preamble: the free
    // slot (empty) copies the rows.
    let mut s = Scheduler::new(engine, options(2));
    let busy = Recorder::default();
    let mut generating = request(prompts[0].clone(), greedy(20), &busy);
    // Rows computed in this scheduler's own batches are not reused by a request that
    // follows llama.cpp's batches; this one computes in those too.
    generating.reference_prefill = Some(prompts[0].len() - 1);
    assert!(s.admit(generating).is_none());
    s.step().unwrap();
    let r = Recorder::default();
    assert!(s.admit(scored(&prompts[3], &r)).is_none());
    let fed = run_counting(&mut s);
    assert_eq!(logprobs(&r).unwrap(), alone[3]);
    assert!(r.done().unwrap().1 >= shared - 1);
    assert!(fed <= prompts[3].len() - (shared - 1));
    assert_eq!(busy.tokens().len(), 20);
}
