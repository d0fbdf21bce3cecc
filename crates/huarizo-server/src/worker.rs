//! The worker thread: owns the engine's scheduler, admits queued requests into free slots
//! and runs batched steps while any request is active. Handlers reach it through a
//! [`Queue`], whose bound turns overload into prompt 429s instead of unbounded waits.

use crate::error::ApiError;
use crate::metrics::Metrics;
use huarizo_engine::{Engine, Event, EventSink, Request, Scheduler, SchedulerOptions};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// The way into the worker.
pub struct Queue {
    tx: mpsc::Sender<Vec<Request>>,
    limit: usize,
    n_slots: usize,
    metrics: Arc<Metrics>,
}

/// Events of one HTTP request's choices, tagged with the choice index.
pub type Events = UnboundedReceiver<(usize, Event)>;

/// Sends a choice's events into its HTTP request's channel.
struct ChannelSink {
    index: usize,
    tx: UnboundedSender<(usize, Event)>,
}

impl EventSink for ChannelSink {
    fn send(&mut self, event: Event) -> bool {
        self.tx.send((self.index, event)).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A request without its sink, as handlers build it.
pub struct Job {
    pub prompt: Vec<u32>,
    pub params: huarizo_engine::GenerateParams,
    pub prompt_logprobs: Option<usize>,
    pub logprobs: bool,
    pub constraint: Option<Box<dyn huarizo_engine::TokenConstraint>>,
}

impl Queue {
    /// Queues the jobs (one per choice) as one unit, or refuses with 429 when the queue
    /// is full. Their events arrive on the returned channel.
    pub fn submit(&self, jobs: Vec<Job>) -> Result<Events, ApiError> {
        let n = jobs.len();
        let before = self.metrics.queue_depth.fetch_add(n, SeqCst);
        // Requests about to take a free slot do not count against the queue's bound.
        let free = self
            .n_slots
            .saturating_sub(self.metrics.active.load(SeqCst));
        if before + n > self.limit + free {
            self.metrics.queue_depth.fetch_sub(n, SeqCst);
            self.metrics.rejected.fetch_add(1, Relaxed);
            return Err(ApiError::busy(before));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let requests = jobs
            .into_iter()
            .enumerate()
            .map(|(index, j)| Request {
                prompt: j.prompt,
                params: j.params,
                prompt_logprobs: j.prompt_logprobs,
                prompt_logprobs_from: 0,
                logprobs: j.logprobs,
                constraint: j.constraint,
                reference_prefill: None,
                sink: Box::new(ChannelSink {
                    index,
                    tx: tx.clone(),
                }),
            })
            .collect();
        if self.tx.send(requests).is_err() {
            self.metrics.queue_depth.fetch_sub(n, SeqCst);
            return Err(ApiError::internal("the generation worker has stopped"));
        }
        Ok(rx)
    }
}

/// Starts the worker thread; returns the queue, the context per slot and the KV-cache
/// bytes.
pub fn start(
    engine: Arc<Engine>,
    options: SchedulerOptions,
    queue_limit: usize,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Queue, usize, usize)> {
    let n_slots = options.n_slots.max(1);
    let (tx, rx) = mpsc::channel::<Vec<Request>>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let m = metrics.clone();
    std::thread::Builder::new()
        .name("huarizo-worker".into())
        .spawn(move || {
            let mut sched = Scheduler::new(&engine, options);
            let _ = ready_tx.send((sched.n_ctx(), sched.cache_bytes()));
            run(&mut sched, rx, &m);
        })?;
    let (n_ctx, cache_bytes) = ready_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the generation worker failed to start"))?;
    Ok((
        Queue {
            tx,
            limit: queue_limit,
            n_slots,
            metrics,
        },
        n_ctx,
        cache_bytes,
    ))
}

fn run(sched: &mut Scheduler<'_>, rx: mpsc::Receiver<Vec<Request>>, metrics: &Metrics) {
    let mut waiting: VecDeque<Request> = VecDeque::new();
    loop {
        // Take in new requests; block only when there is nothing to do.
        loop {
            let idle = sched.n_active() == 0 && waiting.is_empty();
            let got = if idle {
                rx.recv().map_err(|_| mpsc::TryRecvError::Disconnected)
            } else {
                rx.try_recv()
            };
            match got {
                Ok(reqs) => waiting.extend(reqs),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    if waiting.is_empty() && sched.n_active() == 0 {
                        return;
                    }
                    break;
                }
            }
        }
        // Admit into free slots, first come first served; drop requests whose client left.
        while sched.has_free_slot() {
            let Some(req) = waiting.pop_front() else {
                break;
            };
            metrics.queue_depth.fetch_sub(1, SeqCst);
            if req.sink.is_closed() {
                metrics.cancelled.fetch_add(1, Relaxed);
                continue;
            }
            if let Some(back) = sched.admit(req) {
                metrics.queue_depth.fetch_add(1, SeqCst);
                waiting.push_front(back);
                break;
            }
        }
        metrics.active.store(sched.n_active(), Relaxed);
        if sched.n_active() == 0 {
            continue;
        }
        match sched.step() {
            Ok(stats) => {
                metrics.steps.fetch_add(1, Relaxed);
                metrics
                    .prompt_tokens
                    .fetch_add(stats.prompt_tokens as u64, Relaxed);
                metrics
                    .generated_tokens
                    .fetch_add(stats.generated_tokens as u64, Relaxed);
                metrics.cancelled.fetch_add(stats.cancelled as u64, Relaxed);
                if stats.cancelled > 0 {
                    eprintln!(
                        "huarizo: {} request(s) cancelled: client disconnected",
                        stats.cancelled
                    );
                }
            }
            Err(e) => eprintln!("huarizo: step failed: {e}"),
        }
        metrics.active.store(sched.n_active(), Relaxed);
    }
}
