//! Continuous batching: many requests decoded together, one batched forward per step.
//!
//! The scheduler owns a fixed set of slots (one KV cache each). A request is admitted to
//! the free slot whose cache shares the longest prefix with its prompt (a chat that
//! re-sends its conversation, or many requests with one system prompt, pay only for what
//! is new). Each [`Scheduler::step`] runs one forward in which every decoding request
//! contributes its next token and prompts still being read contribute chunks, within a
//! token budget, so that a long new prompt never stalls the others for long. Results go
//! to each request's [`EventSink`]; a sink that reports itself closed (the client went
//! away) has its request dropped at the start of the next step.

use crate::sampling::{log_sum_exp, top_logprobs_with, Sampler};
use crate::stream::{Pushed, TextStream};
use crate::{Engine, EngineError, FinishReason, GenerateParams};
use huarizo_model::{whole_prompt_place, BatchPlaces, Logits, Scratch, SeqBatch, State};

/// Log-probability of one token, with the most likely alternatives at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The token.
    pub token: u32,
    /// Its log-probability under the model (raw logits, before sampling settings).
    pub logprob: f32,
    /// The `k` most likely tokens at that position, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// What a request hears about its progress.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Log-probabilities of the prompt's tokens (the first has none), once it is read.
    PromptLogprobs(Vec<Option<TokenLogprob>>),
    /// A generated token and the text that became final with it (may be empty).
    Token {
        /// The token id.
        token: u32,
        /// Text released by this token.
        text: String,
        /// Its log-probability, if the request asked for them.
        logprob: Option<TokenLogprob>,
    },
    /// Generation ended.
    Done {
        /// Why.
        finish: FinishReason,
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Prompt tokens whose cache was reused from an earlier request.
        cached_tokens: usize,
        /// Tokens generated (an end-of-generation token is not counted).
        completion_tokens: usize,
    },
    /// The request failed; nothing more follows.
    Error(String),
}

/// Where a request's events go.
pub trait EventSink: Send {
    /// Delivers an event; false when the receiver is gone (the request is then dropped).
    fn send(&mut self, event: Event) -> bool;
    /// True when nobody listens any more.
    fn is_closed(&self) -> bool;
}

/// Restricts which tokens may come next (structured output). Errors are messages for the
/// client.
pub trait TokenConstraint: Send {
    /// Sets the logits of forbidden tokens to −∞.
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String>;
    /// Advances past the sampled token.
    fn accept(&mut self, token: u32) -> Result<(), String>;
    /// True when the output is complete and generation must stop.
    fn is_complete(&self) -> bool;
}

/// One generation to run.
pub struct Request {
    /// Prompt tokens (not empty).
    pub prompt: Vec<u32>,
    /// Sampling, limits, stop strings, generated-token log-probabilities.
    pub params: GenerateParams,
    /// `Some(k)`: report every prompt token's log-probability with its top `k` (echo).
    pub prompt_logprobs: Option<usize>,
    /// With `prompt_logprobs`, only the tokens from this index on need them (earlier
    /// entries are `None`), so a cached prefix up to it can be reused. 0 = all.
    pub prompt_logprobs_from: usize,
    /// Report each generated token's log-probability (with `params.top_logprobs`
    /// alternatives).
    pub logprobs: bool,
    /// Structured-output constraint, if any.
    pub constraint: Option<Box<dyn TokenConstraint>>,
    /// `Some(n)`: compute every prompt token as llama.cpp does reading the prompt's first
    /// `n` tokens at once from an empty cache, then one at a time
    /// ([`BatchPlaces::WholePrompt`]), however the prompt is batched here or its cached
    /// prefix reused; evaluation uses it to give a reference's numbers exactly (lm-eval on
    /// llama.cpp reads a scored request but its last token at once). A cached prefix is
    /// then reused only as far as its rows were computed the same way. `None`: the
    /// batches computed here.
    pub reference_prefill: Option<usize>,
    /// Where events go.
    pub sink: Box<dyn EventSink>,
}

/// Figures of one step, for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepStats {
    /// Prompt tokens processed.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Requests that finished (any reason).
    pub finished: usize,
    /// Requests dropped because their client went away.
    pub cancelled: usize,
}

/// Settings of a [`Scheduler`].
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Concurrent requests (slots, one KV cache each).
    pub n_slots: usize,
    /// Context positions per slot.
    pub n_ctx: usize,
    /// Most tokens in one forward (decode tokens first, then prompt chunks).
    pub max_batch_tokens: usize,
}

struct Active {
    req: Request,
    /// Prompt tokens not yet in the cache.
    next_prompt: usize,
    cached: usize,
    /// Tokens to feed in the next forward.
    feed: Vec<u32>,
    feed_logits: Logits,
    sampler: Sampler,
    text: TextStream,
    generated: usize,
    prompt_lps: Vec<Option<TokenLogprob>>,
    logits_buf: Vec<f32>,
    /// `(slot, n)`: the request in that slot is reading a prompt whose first `n` tokens
    /// this one shares; this one waits to copy them (see [`Scheduler::resume_waiting`]).
    wait_for: Option<(usize, usize)>,
}

struct Slot {
    state: State,
    /// Tokens held by `state`.
    history: Vec<u32>,
    /// How they were computed.
    places: BatchPlaces,
    active: Option<Active>,
}

/// The continuous-batching scheduler over one engine.
pub struct Scheduler<'e> {
    engine: &'e Engine,
    slots: Vec<Slot>,
    scratch: Scratch,
    options: SchedulerOptions,
}

impl<'e> Scheduler<'e> {
    /// Allocates `options.n_slots` KV caches of `options.n_ctx` positions.
    pub fn new(engine: &'e Engine, options: SchedulerOptions) -> Scheduler<'e> {
        let slots = (0..options.n_slots.max(1))
            .map(|_| Slot {
                places: BatchPlaces::ThisBatch,
                state: engine.new_state(options.n_ctx),
                history: Vec::new(),
                active: None,
            })
            .collect();
        Scheduler {
            engine,
            slots,
            scratch: Scratch::default(),
            options,
        }
    }

    /// Context positions per slot.
    pub fn n_ctx(&self) -> usize {
        self.slots[0].state.n_ctx
    }

    /// Bytes held by the KV caches.
    pub fn cache_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.state.cache_bytes()).sum()
    }

    /// Requests being served.
    pub fn n_active(&self) -> usize {
        self.slots.iter().filter(|s| s.active.is_some()).count()
    }

    /// Whether a request can be admitted now.
    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(|s| s.active.is_none())
    }

    /// Starts `req` in a free slot, reusing the longest cached prefix. Without a free slot
    /// the request is handed back. A request that cannot run gets an [`Event::Error`].
    pub fn admit(&mut self, mut req: Request) -> Option<Request> {
        let n_ctx = self.n_ctx();
        if req.prompt.is_empty() {
            req.sink.send(Event::Error("the prompt is empty".into()));
            return None;
        }
        if req.prompt.len() > n_ctx {
            req.sink.send(Event::Error(format!(
                "the prompt has {} tokens but the context holds {n_ctx}",
                req.prompt.len()
            )));
            return None;
        }
        let n_vocab = self.engine.config().n_vocab;
        if let Some(bad) = req.prompt.iter().find(|&&t| t as usize >= n_vocab) {
            req.sink.send(Event::Error(format!(
                "token id {bad} is out of the vocabulary (size {n_vocab})"
            )));
            return None;
        }
        let places = req
            .reference_prefill
            .map_or(BatchPlaces::ThisBatch, BatchPlaces::WholePrompt);
        let cap = reuse_cap(&req);
        let Some(idx) = (0..self.slots.len())
            .filter(|&i| self.slots[i].active.is_none())
            .max_by_key(|&i| {
                (
                    reusable(&self.slots[i], &req.prompt, places, cap),
                    std::cmp::Reverse(i),
                )
            })
        else {
            return Some(req);
        };
        let mut keep = reusable(&self.slots[idx], &req.prompt, places, cap);
        // Another slot may hold a longer prefix (many requests with one system prompt or
        // one few-shot preamble): its rows are copied rather than computed again.
        if let Some((donor, n)) = best_donor(&self.slots, idx, &req.prompt, places, cap) {
            if n > keep && copy_prefix(&mut self.slots, donor, idx, n) {
                keep = n;
            }
        }
        // A request still reading a prompt that shares a longer prefix: wait for it and
        // copy its rows, rather than compute the same rows side by side.
        let wait_for = (0..self.slots.len())
            .filter(|&j| j != idx)
            .filter_map(|j| {
                let lead = pending_prefix(&self.slots[j], &req.prompt, places, cap)?;
                (lead >= keep + MIN_SHARED_WAIT).then_some((j, lead))
            })
            .max_by_key(|&(j, lead)| (lead, std::cmp::Reverse(j)));
        let slot = &mut self.slots[idx];
        slot.places = places;
        slot.state.truncate(keep);
        slot.history.truncate(keep);
        // Tokens 0..=keep get no log-probability computed here.
        let first_lp: Vec<Option<TokenLogprob>> = match req.prompt_logprobs {
            Some(_) => vec![None; keep + 1],
            None => Vec::new(),
        };
        slot.active = Some(Active {
            sampler: Sampler::new(req.params.sampling.clone()),
            text: TextStream::new(req.params.stop.clone()),
            next_prompt: keep,
            cached: keep,
            feed: Vec::new(),
            feed_logits: Logits::None,
            generated: 0,
            prompt_lps: first_lp,
            logits_buf: Vec::new(),
            wait_for,
            req,
        });
        None
    }

    /// Starts each waiting request whose shared prefix is ready, or whose leader stopped
    /// reading it: the longest reusable prefix any slot holds is copied into its cache.
    fn resume_waiting(slots: &mut [Slot]) {
        for i in 0..slots.len() {
            let Some(a) = slots[i].active.as_ref() else {
                continue;
            };
            let Some((leader, lead)) = a.wait_for else {
                continue;
            };
            let (places, cap) = (slots[i].places, reuse_cap(&a.req));
            let still_reading = slots[leader].history.len() < lead
                && pending_prefix(&slots[leader], &a.req.prompt, places, cap)
                    .is_some_and(|n| n >= lead);
            if still_reading {
                continue;
            }
            let donor = best_donor(slots, i, &a.req.prompt, places, cap);
            let held = slots[i].history.len();
            if let Some((j, n)) = donor.filter(|&(_, n)| n > held) {
                if copy_prefix(slots, j, i, n) {
                    slots[i].places = places;
                    let a = slots[i].active.as_mut().expect("checked above");
                    a.next_prompt = n;
                    a.cached = n;
                    if a.req.prompt_logprobs.is_some() {
                        a.prompt_lps.resize(n + 1, None);
                    }
                }
            }
            if let Some(a) = slots[i].active.as_mut() {
                a.wait_for = None;
            }
        }
    }

    /// Runs one batched forward over every active request and delivers its results.
    /// Returns what was done; zero work means every slot is idle.
    pub fn step(&mut self) -> Result<StepStats, EngineError> {
        let mut stats = StepStats::default();
        let Scheduler {
            engine,
            slots,
            scratch,
            options,
        } = self;
        // Drop requests whose client went away, before spending work on them.
        for slot in slots.iter_mut() {
            if slot.active.as_ref().is_some_and(|a| a.req.sink.is_closed()) {
                slot.active = None;
                stats.cancelled += 1;
                stats.finished += 1;
            }
        }
        Scheduler::resume_waiting(slots);
        // Plan: decoding requests first (one token each), then prompt chunks.
        let mut budget = options.max_batch_tokens.max(1);
        for slot in slots.iter_mut() {
            if let Some(a) = slot.active.as_mut() {
                if a.next_prompt >= a.req.prompt.len() && !a.feed.is_empty() {
                    budget = budget.saturating_sub(a.feed.len());
                }
            }
        }
        for slot in slots.iter_mut() {
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            let remaining = a.req.prompt.len() - a.next_prompt;
            if remaining == 0 || budget == 0 || a.wait_for.is_some() {
                continue;
            }
            let mut n = remaining.min(budget);
            // Positions before the first scored token need no logits: read them in a
            // chunk of their own, so that the output layer runs only where it must.
            let first_scored = a.req.prompt_logprobs_from.saturating_sub(1);
            if a.req.prompt_logprobs.is_some() && a.next_prompt < first_scored {
                n = n.min(first_scored - a.next_prompt);
            }
            budget -= n;
            a.feed.clear();
            a.feed
                .extend_from_slice(&a.req.prompt[a.next_prompt..a.next_prompt + n]);
            a.next_prompt += n;
            let done = a.next_prompt == a.req.prompt.len();
            // Position p's logits score token p + 1: needed from the first scored token.
            let scores_here = a.next_prompt > first_scored;
            a.feed_logits = if a.req.prompt_logprobs.is_some() && scores_here {
                Logits::All
            } else if done {
                Logits::Last
            } else {
                Logits::None
            };
            stats.prompt_tokens += n;
        }
        let mut batch: Vec<SeqBatch<'_>> = Vec::new();
        let mut members: Vec<usize> = Vec::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(a) = slot.active.as_ref() else {
                continue;
            };
            if a.feed.is_empty() {
                continue;
            }
            members.push(i);
            batch.push(SeqBatch {
                state: &mut slot.state,
                tokens: &a.feed,
                logits: a.feed_logits,
                places: slot.places,
            });
        }
        if batch.is_empty() {
            return Ok(stats);
        }
        let pos_before: Vec<usize> = batch.iter().map(|b| b.state.n_past).collect();
        let rows: Vec<usize> = batch.iter().map(SeqBatch::n_logits).collect();
        let logits = match engine.forward_batch(scratch, &mut batch) {
            Ok(l) => l,
            Err(e) => {
                // A failed forward leaves the caches unusable: fail its requests.
                drop(batch);
                for &i in &members {
                    let slot = &mut slots[i];
                    if let Some(mut a) = slot.active.take() {
                        a.req.sink.send(Event::Error(e.to_string()));
                    }
                    slot.history.clear();
                    slot.state.truncate(0);
                    stats.finished += 1;
                }
                return Ok(stats);
            }
        };
        let n_vocab = engine.config().n_vocab;
        let mut scored = prompt_logprobs(engine, slots, &members, &rows, &pos_before, logits);
        let mut row = 0;
        for (m, &i) in members.iter().enumerate() {
            let slot = &mut slots[i];
            let n_rows = rows[m];
            let seq_logits = &logits[row * n_vocab..(row + n_rows) * n_vocab];
            row += n_rows;
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            slot.history.extend_from_slice(&a.feed);
            let fed = std::mem::take(&mut a.feed);
            let prompt_done = a.next_prompt == a.req.prompt.len();
            // Prompt log-probabilities: row j (position p) predicts the token at p + 1.
            if a.req.prompt_logprobs.is_some() {
                let all = a.feed_logits == Logits::All;
                for j in 0..fed.len() {
                    let next = pos_before[m] + j + 1;
                    if next < a.req.prompt.len() && a.prompt_lps.len() == next {
                        let entry = (all && next >= a.req.prompt_logprobs_from)
                            .then(|| scored[row - n_rows + j].take())
                            .flatten();
                        a.prompt_lps.push(entry);
                    }
                }
            }
            if !prompt_done || n_rows == 0 {
                continue; // more prompt to read
            }
            let last = &seq_logits[(n_rows - 1) * n_vocab..];
            let first_sample = a.generated == 0 && fed.len() + pos_before[m] == a.req.prompt.len();
            if first_sample && a.req.prompt_logprobs.is_some() {
                let lps = std::mem::take(&mut a.prompt_lps);
                if !a.req.sink.send(Event::PromptLogprobs(lps)) {
                    slot.active = None;
                    stats.cancelled += 1;
                    stats.finished += 1;
                    continue;
                }
            }
            match sample_next(
                engine,
                a,
                &slot.history,
                last,
                slot.state.n_past,
                slot.state.n_ctx,
            ) {
                Next::Feed(token) => {
                    stats.generated_tokens += 1;
                    a.feed.push(token);
                    a.feed_logits = Logits::Last;
                }
                Next::Finished(finish, counted) => {
                    stats.generated_tokens += counted;
                    stats.finished += 1;
                    if finish == FinishReason::Cancelled {
                        stats.cancelled += 1;
                    }
                    slot.active = None;
                }
            }
        }
        Ok(stats)
    }
}

enum Next {
    /// Generation goes on with this token.
    Feed(u32),
    /// Generation ended (the events are sent); tokens generated in this step.
    Finished(FinishReason, usize),
}

/// Samples after `logits`, sends the token's events and decides whether to go on.
fn sample_next(
    engine: &Engine,
    a: &mut Active,
    history: &[u32],
    logits: &[f32],
    n_past: usize,
    n_ctx: usize,
) -> Next {
    let params = &a.req.params;
    let done = |a: &mut Active, finish: FinishReason, counted: usize| {
        let ok = a.req.sink.send(Event::Done {
            finish,
            prompt_tokens: a.req.prompt.len(),
            cached_tokens: a.cached,
            completion_tokens: a.generated,
        });
        Next::Finished(if ok { finish } else { FinishReason::Cancelled }, counted)
    };
    if a.generated >= params.max_tokens {
        return done(a, FinishReason::Length, 0);
    }
    let token = match a.req.constraint.as_mut() {
        None => a.sampler.sample(logits, history),
        Some(c) => {
            a.logits_buf.clear();
            a.logits_buf.extend_from_slice(logits);
            if let Err(e) = c.mask(&mut a.logits_buf) {
                a.req.sink.send(Event::Error(e));
                return Next::Finished(FinishReason::Stop, 0);
            }
            a.sampler.sample(&a.logits_buf, history)
        }
    };
    let logprob = a
        .req
        .logprobs
        .then(|| logprob_entry(logits, token, params.top_logprobs));
    let tokenizer = engine.tokenizer();
    if params.stop_at_eog && tokenizer.is_eog(token) {
        let rest = a.text.flush();
        if !rest.is_empty() && !send_text(a, token, rest, None) {
            return Next::Finished(FinishReason::Cancelled, 0);
        }
        // With log-probabilities the end token is reported too (as OpenAI's legacy
        // completions do), text-less: scorers count on one entry per generated token.
        if logprob.is_some() && !send_text(a, token, String::new(), logprob) {
            return Next::Finished(FinishReason::Cancelled, 0);
        }
        return done(a, FinishReason::Stop, 0);
    }
    a.generated += 1;
    let mut complete = false;
    if let Some(c) = a.req.constraint.as_mut() {
        if let Err(e) = c.accept(token) {
            a.req.sink.send(Event::Error(e));
            return Next::Finished(FinishReason::Stop, 1);
        }
        complete = c.is_complete();
    }
    match a.text.push(tokenizer.token_bytes(token)) {
        Pushed::Stopped(tail) => {
            if !send_text(a, token, tail, logprob) {
                return Next::Finished(FinishReason::Cancelled, 1);
            }
            done(a, FinishReason::Stop, 1)
        }
        Pushed::Text(mut chunk) => {
            let finish = if complete {
                Some(FinishReason::Stop)
            } else if a.generated >= a.req.params.max_tokens || n_past >= n_ctx {
                Some(FinishReason::Length)
            } else {
                None
            };
            if finish.is_some() {
                chunk.push_str(&a.text.flush());
            }
            if !send_text(a, token, chunk, logprob) {
                return Next::Finished(FinishReason::Cancelled, 1);
            }
            match finish {
                Some(f) => done(a, f, 1),
                None => Next::Feed(token),
            }
        }
    }
}

/// A token's log-probability and the top `k` at its position, from one log-softmax.
fn logprob_entry(logits: &[f32], token: u32, k: usize) -> TokenLogprob {
    let lse = log_sum_exp(logits);
    TokenLogprob {
        token,
        logprob: logits
            .get(token as usize)
            .map_or(f32::NEG_INFINITY, |&l| l - lse),
        top: top_logprobs_with(logits, k, lse),
    }
}

/// The log-probability entries of every logits row that scores a prompt token (row `r`
/// of member `m` at position `p` scores prompt token `p + 1`), computed on the engine's
/// threads: a log-sum-exp over the vocabulary per row is most of a scoring step's serial
/// work. Indexed by logits row; rows that score nothing are `None` (and the vector is
/// empty when no row scores anything).
fn prompt_logprobs(
    engine: &Engine,
    slots: &[Slot],
    members: &[usize],
    rows: &[usize],
    pos_before: &[usize],
    logits: &[f32],
) -> Vec<Option<TokenLogprob>> {
    let n_vocab = engine.config().n_vocab;
    let mut wanted: Vec<(usize, u32, usize)> = Vec::new();
    let mut row = 0;
    for (m, &i) in members.iter().enumerate() {
        if let Some(a) = slots[i].active.as_ref() {
            if let (Some(k), Logits::All) = (a.req.prompt_logprobs, a.feed_logits) {
                for j in 0..rows[m] {
                    if let Some(&token) = a.req.prompt.get(pos_before[m] + j + 1) {
                        wanted.push((row + j, token, k));
                    }
                }
            }
        }
        row += rows[m];
    }
    if wanted.is_empty() {
        return Vec::new(); // decoding steps: no pool dispatch, no allocation
    }
    let results: Vec<std::sync::Mutex<Option<TokenLogprob>>> =
        wanted.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let n_threads = engine.n_threads().max(1);
    engine.run_on_pool(&|thread| {
        for w in (thread..wanted.len()).step_by(n_threads) {
            let (r, token, k) = wanted[w];
            let entry = logprob_entry(&logits[r * n_vocab..(r + 1) * n_vocab], token, k);
            *results[w].lock().unwrap_or_else(|e| e.into_inner()) = Some(entry);
        }
    });
    let mut by_row: Vec<Option<TokenLogprob>> = vec![None; row];
    for ((r, _, _), result) in wanted.into_iter().zip(results) {
        by_row[r] = result.into_inner().unwrap_or_else(|e| e.into_inner());
    }
    by_row
}

fn send_text(a: &mut Active, token: u32, text: String, logprob: Option<TokenLogprob>) -> bool {
    a.req.sink.send(Event::Token {
        token,
        text,
        logprob,
    })
}

/// Fewest shared prompt tokens worth waiting a step for rather than computing them again.
const MIN_SHARED_WAIT: usize = 32;

/// Most cached rows a request may reuse: prompt log-probabilities need logits from the
/// position before the first scored token, and otherwise the last prompt token must be
/// computed for its logits.
fn reuse_cap(req: &Request) -> usize {
    let last = req.prompt.len() - 1;
    match req.prompt_logprobs {
        Some(_) => req.prompt_logprobs_from.saturating_sub(1).min(last),
        None => last,
    }
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Rows of `slot`'s cache that a request with `prompt`, computed as `places`, may reuse
/// (at most `cap`).
fn reusable(slot: &Slot, prompt: &[u32], places: BatchPlaces, cap: usize) -> usize {
    let n = common_prefix(&slot.history, prompt).min(cap);
    same_arithmetic_prefix(slot.places, places, n)
}

/// The slot other than `idx` whose cache offers a request the most reusable rows, and how
/// many (none when no slot offers any).
fn best_donor(
    slots: &[Slot],
    idx: usize,
    prompt: &[u32],
    places: BatchPlaces,
    cap: usize,
) -> Option<(usize, usize)> {
    (0..slots.len())
        .filter(|&j| j != idx)
        .map(|j| (j, reusable(&slots[j], prompt, places, cap)))
        .filter(|&(_, n)| n > 0)
        .max_by_key(|&(j, n)| (n, std::cmp::Reverse(j)))
}

/// How many of `prompt`'s tokens (at most `cap`, reusable as `places`) the request in
/// `slot` will have computed once it has read its prompt, when that is more than the slot
/// holds now; `None` when the slot is not reading a prompt or itself waits for another.
fn pending_prefix(slot: &Slot, prompt: &[u32], places: BatchPlaces, cap: usize) -> Option<usize> {
    let a = slot.active.as_ref()?;
    if a.wait_for.is_some() || a.next_prompt >= a.req.prompt.len() {
        return None;
    }
    let n = common_prefix(&a.req.prompt, prompt).min(cap);
    let n = same_arithmetic_prefix(slot.places, places, n);
    (n > slot.history.len()).then_some(n)
}

/// Copies the first `n` cached rows of slot `from` into slot `to` (which then holds only
/// those). False, changing nothing, if the caches do not allow it.
fn copy_prefix(slots: &mut [Slot], from: usize, to: usize, n: usize) -> bool {
    if from == to || n > slots[from].history.len() {
        return false;
    }
    let (src, dst) = if from < to {
        let (a, b) = slots.split_at_mut(to);
        (&a[from], &mut b[0])
    } else {
        let (a, b) = slots.split_at_mut(from);
        (&b[0], &mut a[to])
    };
    if dst.state.copy_prefix_from(&src.state, n).is_err() {
        return false;
    }
    dst.history.clear();
    dst.history.extend_from_slice(&src.history[..n]);
    dst.places = src.places;
    true
}

/// How many of the first `n` cached rows, computed as `old` says, a request computing as
/// `new` says may reuse: for whole-prompt arithmetic, the rows before the first whose
/// batch place gives another summation order (Q4_K GEMM or GEMV, Q6_K tiled or not, a
/// single query or a batch in attention); rows computed in other batches are not reused.
/// Requests computing in their own batches reuse every row.
fn same_arithmetic_prefix(old: BatchPlaces, new: BatchPlaces, n: usize) -> usize {
    match (old, new) {
        (_, BatchPlaces::ThisBatch) => n,
        (BatchPlaces::ThisBatch, BatchPlaces::WholePrompt(_)) => 0,
        (BatchPlaces::WholePrompt(a), BatchPlaces::WholePrompt(b)) => (0..n)
            .find(|&pos| {
                let (p, q) = (whole_prompt_place(pos, a), whole_prompt_place(pos, b));
                p.q4_k_gemm() != q.q4_k_gemm()
                    || p.q6_k_tiled() != q.q6_k_tiled()
                    || (p.of == 1) != (q.of == 1)
            })
            .unwrap_or(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_prompt_rows_are_reused_while_their_arithmetic_is_the_same() {
        use BatchPlaces::{ThisBatch, WholePrompt};
        // Read at once, 102 tokens end in a group of two (GEMV order), 104 in whole groups:
        // rows 100 and 101 differ, the 100 before them do not.
        assert_eq!(
            same_arithmetic_prefix(WholePrompt(102), WholePrompt(104), 103),
            100
        );
        assert_eq!(
            same_arithmetic_prefix(WholePrompt(104), WholePrompt(108), 104),
            104
        );
        // Below 8 rows Q6_K leaves its tiled order; one row changes attention's order.
        assert_eq!(
            same_arithmetic_prefix(WholePrompt(7), WholePrompt(12), 6),
            0
        );
        assert_eq!(same_arithmetic_prefix(WholePrompt(1), WholePrompt(2), 1), 0);
        // Rows computed in other batches are not reused for reference arithmetic, and
        // requests in their own batches reuse everything.
        assert_eq!(same_arithmetic_prefix(ThisBatch, WholePrompt(50), 40), 0);
        assert_eq!(same_arithmetic_prefix(WholePrompt(50), ThisBatch, 40), 40);
        // Past a micro-batch, places start again.
        let p = whole_prompt_place(515, 600);
        assert_eq!((p.index, p.of), (3, 88));
        let p = whole_prompt_place(600, 600);
        assert_eq!((p.index, p.of), (0, 1));
    }
}
