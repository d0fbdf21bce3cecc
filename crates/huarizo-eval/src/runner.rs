//! Runs scoring and generation jobs on the engine's continuous-batching scheduler.
//! Jobs that share a context are sent one after another to the slot that holds it, so the
//! context is read once; several contexts are read side by side in one batched forward.

use crate::error::EvalError;
use huarizo_engine::sampling::SamplingParams;
use huarizo_engine::{
    Engine, Event, EventSink, GenerateParams, Request, Scheduler, SchedulerOptions,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// One unit of work: score `tokens[from..]` after `tokens[..from]`, or generate after
/// `tokens`.
#[derive(Clone, Debug)]
pub enum Job {
    /// Log-probabilities of `tokens[from..]` (and whether each is the greedy choice).
    Score {
        /// Context and scored tokens.
        tokens: Vec<u32>,
        /// Index of the first scored token (≥ 1).
        from: usize,
    },
    /// Greedy generation.
    Generate {
        /// The prompt.
        tokens: Vec<u32>,
        /// Stop strings.
        until: Vec<String>,
        /// Most tokens.
        max_tokens: usize,
    },
}

impl Job {
    /// Tokens the job reads (and, for generation, at most generates).
    pub fn len(&self) -> usize {
        match self {
            Job::Score { tokens, .. } => tokens.len(),
            Job::Generate {
                tokens, max_tokens, ..
            } => tokens.len() + max_tokens,
        }
    }

    /// Whether the job has no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens().is_empty()
    }

    fn tokens(&self) -> &[u32] {
        match self {
            Job::Score { tokens, .. } | Job::Generate { tokens, .. } => tokens,
        }
    }

    /// The part shared with other jobs of the same group.
    fn context(&self) -> &[u32] {
        match self {
            Job::Score { tokens, from } => &tokens[..*from],
            Job::Generate { tokens, .. } => tokens,
        }
    }
}

/// What a job produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Per scored token: its log-probability and whether it was the most likely one.
    Scored(Vec<(f32, bool)>),
    /// The generated text.
    Generated(String),
}

/// Shared inbox of the jobs' events.
type Inbox = Arc<Mutex<Vec<(usize, Event)>>>;

struct Collector {
    id: usize,
    inbox: Inbox,
}

impl EventSink for Collector {
    fn send(&mut self, event: Event) -> bool {
        self.inbox
            .lock()
            .expect("the inbox lock is never poisoned")
            .push((self.id, event));
        true
    }

    fn is_closed(&self) -> bool {
        false
    }
}

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Sequences decoded together.
    pub n_slots: usize,
    /// Show a progress bar on standard error.
    pub progress: bool,
    /// Label of the progress bar.
    pub label: String,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            n_slots: 8,
            progress: false,
            label: "requests".into(),
        }
    }
}

fn request(job: &Job, id: usize, inbox: &Inbox) -> Request {
    let sink = Box::new(Collector {
        id,
        inbox: inbox.clone(),
    });
    match job {
        Job::Score { tokens, from } => Request {
            prompt: tokens.clone(),
            params: GenerateParams {
                sampling: SamplingParams {
                    temperature: 0.0,
                    ..SamplingParams::default()
                },
                max_tokens: 0,
                stop: Vec::new(),
                top_logprobs: 0,
                stop_at_eog: true,
            },
            prompt_logprobs: Some(1),
            prompt_logprobs_from: *from,
            logprobs: false,
            constraint: None,
            // lm-eval on llama.cpp reads the request but its last token at once.
            reference_prefill: Some(tokens.len() - 1),
            sink,
        },
        Job::Generate {
            tokens,
            until,
            max_tokens,
        } => Request {
            prompt: tokens.clone(),
            params: GenerateParams {
                sampling: SamplingParams {
                    temperature: 0.0,
                    ..SamplingParams::default()
                },
                max_tokens: *max_tokens,
                stop: until.clone(),
                top_logprobs: 0,
                stop_at_eog: true,
            },
            prompt_logprobs: None,
            prompt_logprobs_from: 0,
            logprobs: false,
            constraint: None,
            reference_prefill: None,
            sink,
        },
    }
}

/// Runs `jobs` on `engine` and returns their outcomes in order. `done` is called with each
/// finished job's index and outcome as soon as it is known (for a results cache).
pub fn run(
    engine: &Engine,
    jobs: &[Job],
    options: &RunOptions,
    done: &mut dyn FnMut(usize, &Outcome),
) -> Result<Vec<Outcome>, EvalError> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; jobs.len()];
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let n_ctx = engine.config().n_ctx_train.max(1);
    for (i, j) in jobs.iter().enumerate() {
        if j.tokens().len() > n_ctx || j.tokens().is_empty() {
            return Err(EvalError::TooLong {
                job: i,
                tokens: j.tokens().len(),
                n_ctx,
            });
        }
    }
    let longest = jobs
        .iter()
        .map(|j| match j {
            Job::Generate {
                tokens, max_tokens, ..
            } => tokens.len() + max_tokens,
            Job::Score { tokens, .. } => tokens.len(),
        })
        .max()
        .unwrap_or(1)
        .min(n_ctx);
    let mut sched = Scheduler::new(
        engine,
        SchedulerOptions {
            n_slots: options.n_slots.max(1),
            n_ctx: longest,
            max_batch_tokens: 512,
        },
    );
    // Groups of jobs sharing a context, in order of first appearance.
    let mut group_of: HashMap<&[u32], usize> = HashMap::new();
    let mut queues: Vec<VecDeque<usize>> = Vec::new();
    let mut job_group = vec![0usize; jobs.len()];
    for (i, j) in jobs.iter().enumerate() {
        let g = *group_of.entry(j.context()).or_insert_with(|| {
            queues.push(VecDeque::new());
            queues.len() - 1
        });
        queues[g].push_back(i);
        job_group[i] = g;
    }
    let pb = if options.progress {
        let pb = ProgressBar::new(jobs.len() as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "{msg:>14} [{bar:30}] {pos}/{len} {per_sec} {elapsed}<{eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        pb.set_message(options.label.clone());
        pb
    } else {
        ProgressBar::hidden()
    };
    let inbox: Inbox = Arc::new(Mutex::new(Vec::new()));
    let mut in_flight = vec![false; queues.len()];
    let mut open: Vec<usize> = Vec::new();
    let mut next_group = 0usize;
    let mut texts: HashMap<usize, String> = HashMap::new();
    let mut scored: HashMap<usize, Vec<(f32, bool)>> = HashMap::new();
    let mut finished = 0usize;
    while finished < jobs.len() {
        // Admit: a group whose previous job is done goes back to its slot; new groups
        // start while slots are free.
        while sched.has_free_slot() {
            let g = match open
                .iter()
                .copied()
                .find(|&g| !in_flight[g] && !queues[g].is_empty())
            {
                Some(g) => g,
                None if next_group < queues.len() && open.len() < options.n_slots.max(1) => {
                    open.push(next_group);
                    next_group += 1;
                    next_group - 1
                }
                None => break,
            };
            let id = queues[g].pop_front().expect("the group has jobs");
            if let Some(_back) = sched.admit(request(&jobs[id], id, &inbox)) {
                queues[g].push_front(id);
                break;
            }
            in_flight[g] = true;
        }
        sched.step()?;
        let events = std::mem::take(&mut *inbox.lock().expect("never poisoned"));
        for (id, event) in events {
            match event {
                Event::PromptLogprobs(lps) => {
                    let Job::Score { from, .. } = jobs[id] else {
                        continue;
                    };
                    let per_token = lps[from..]
                        .iter()
                        .map(|e| {
                            let e = e.as_ref().expect("scored positions have log-probabilities");
                            (e.logprob, e.top.first().is_some_and(|t| t.0 == e.token))
                        })
                        .collect();
                    scored.insert(id, per_token);
                }
                Event::Token { text, .. } => texts.entry(id).or_default().push_str(&text),
                Event::Done { .. } => {
                    let outcome = match jobs[id] {
                        Job::Score { .. } => {
                            Outcome::Scored(scored.remove(&id).unwrap_or_default())
                        }
                        Job::Generate { .. } => {
                            Outcome::Generated(texts.remove(&id).unwrap_or_default())
                        }
                    };
                    done(id, &outcome);
                    outcomes[id] = Some(outcome);
                    finished += 1;
                    pb.inc(1);
                    let g = job_group[id];
                    in_flight[g] = false;
                    if queues[g].is_empty() {
                        open.retain(|&x| x != g);
                    }
                }
                Event::Error(message) => return Err(EvalError::Engine(message)),
            }
        }
    }
    pb.finish_and_clear();
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every job finished"))
        .collect())
}
