//! huarizo-eval scores models the way EleutherAI's lm-evaluation-harness does: the same
//! request types (loglikelihood, loglikelihood_rolling, generate_until) with the same
//! tokenization, the same task prompts and metrics, the same results JSON, run on the
//! engine's batching scheduler with each shared context read once. It is a front end:
//! it runs models only through `huarizo-engine`.

#![deny(missing_docs)]

pub mod cache;
pub mod encode;
pub mod error;
pub mod leaderboard;
pub mod metrics;
pub mod requests;
pub mod results;
pub mod runner;
pub mod suite;
pub mod tasks;

pub use error::EvalError;
pub use requests::{GenerateUntil, Loglikelihood, LoglikelihoodResult, Rolling, RollingResult};
pub use runner::RunOptions;

use huarizo_engine::Engine;
use runner::{Job, Outcome};

/// Answers requests with one engine.
pub struct Evaluator<'e> {
    engine: &'e Engine,
    /// How requests are run.
    pub options: RunOptions,
    cache: Option<std::cell::RefCell<cache::ResultCache>>,
    tokens: std::cell::Cell<usize>,
}

impl<'e> Evaluator<'e> {
    /// An evaluator over `engine`.
    pub fn new(engine: &'e Engine, options: RunOptions) -> Evaluator<'e> {
        Evaluator {
            engine,
            options,
            cache: None,
            tokens: std::cell::Cell::new(0),
        }
    }

    /// Keeps answers in `cache` (and reuses those it holds).
    pub fn with_cache(mut self, cache: cache::ResultCache) -> Self {
        self.cache = Some(std::cell::RefCell::new(cache));
        self
    }

    /// Tokens in the requests run so far (context and continuation; cached answers are
    /// not counted).
    pub fn tokens(&self) -> usize {
        self.tokens.get()
    }

    /// Runs jobs, answering from the cache where it can.
    fn run(&self, jobs: &[Job]) -> Result<Vec<Outcome>, EvalError> {
        let Some(cache) = &self.cache else {
            let n: usize = jobs.iter().map(Job::len).sum();
            self.tokens.set(self.tokens.get() + n);
            return runner::run(self.engine, jobs, &self.options, &mut |_, _| {});
        };
        let mut out: Vec<Option<Outcome>> = jobs
            .iter()
            .map(|j| cache.borrow().get(j).cloned())
            .collect();
        let todo: Vec<usize> = (0..jobs.len()).filter(|&i| out[i].is_none()).collect();
        let fresh: Vec<Job> = todo.iter().map(|&i| jobs[i].clone()).collect();
        let n: usize = fresh.iter().map(Job::len).sum();
        self.tokens.set(self.tokens.get() + n);
        let results = runner::run(self.engine, &fresh, &self.options, &mut |i, o| {
            cache.borrow_mut().put(&fresh[i], o);
        })?;
        for (i, r) in todo.into_iter().zip(results) {
            out[i] = Some(r);
        }
        Ok(out.into_iter().map(|o| o.expect("answered")).collect())
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.engine
    }

    /// The longest input the model reads.
    pub fn max_len(&self) -> usize {
        self.engine.config().n_ctx_train.max(1)
    }

    /// Answers loglikelihood requests. A request longer than the context keeps its last
    /// tokens (as lm-eval truncates from the left).
    pub fn loglikelihood(
        &self,
        requests: &[Loglikelihood],
    ) -> Result<Vec<LoglikelihoodResult>, EvalError> {
        let tok = self.engine.tokenizer();
        let max = self.max_len();
        let jobs: Vec<Job> = requests
            .iter()
            .map(|r| {
                let (ctx, cont) = encode::encode_pair(tok, &r.context, &r.continuation);
                let mut tokens = ctx;
                let mut from = tokens.len();
                tokens.extend_from_slice(&cont);
                if tokens.len() > max {
                    let cut = tokens.len() - max;
                    tokens.drain(..cut);
                    from = from.saturating_sub(cut).max(1);
                }
                Job::Score { tokens, from }
            })
            .collect();
        let out = self.run(&jobs)?;
        Ok(out
            .into_iter()
            .map(|o| match o {
                Outcome::Scored(t) => LoglikelihoodResult {
                    logprob: t.iter().map(|(lp, _)| *lp as f64).sum(),
                    is_greedy: t.iter().all(|(_, g)| *g),
                    tokens: t.len(),
                },
                Outcome::Generated(_) => unreachable!("score jobs score"),
            })
            .collect())
    }

    /// Answers rolling (perplexity) requests over windows of the model's context.
    pub fn rolling(&self, requests: &[Rolling]) -> Result<Vec<RollingResult>, EvalError> {
        let tok = self.engine.tokenizer();
        let prefix = encode::prefix_token(tok).ok_or_else(|| {
            EvalError::Engine("the model has neither a BOS nor an EOS token".into())
        })?;
        let max = self.max_len().saturating_sub(1).max(1);
        let mut jobs = Vec::new();
        let mut owner = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            for (tokens, from) in
                encode::rolling_windows(&encode::encode(tok, &r.text), prefix, max)
            {
                jobs.push(Job::Score { tokens, from });
                owner.push(i);
            }
        }
        let out = self.run(&jobs)?;
        let mut results = vec![
            RollingResult {
                logprob: 0.0,
                tokens: 0
            };
            requests.len()
        ];
        for (o, i) in out.into_iter().zip(owner) {
            if let Outcome::Scored(t) = o {
                results[i].logprob += t.iter().map(|(lp, _)| *lp as f64).sum::<f64>();
                results[i].tokens += t.len();
            }
        }
        Ok(results)
    }

    /// Greedy generation until a stop sequence.
    pub fn generate(&self, requests: &[GenerateUntil]) -> Result<Vec<String>, EvalError> {
        let tok = self.engine.tokenizer();
        let max = self.max_len();
        let jobs: Vec<Job> = requests
            .iter()
            .map(|r| {
                let mut tokens: Vec<u32> = Vec::new();
                if let Some(bos) = tok.bos().filter(|_| tok.add_bos()) {
                    tokens.push(bos);
                }
                tokens.extend(encode::encode(tok, &r.context));
                let room = max.saturating_sub(r.max_tokens).max(1);
                if tokens.len() > room {
                    let cut = tokens.len() - room;
                    tokens.drain(..cut);
                }
                Job::Generate {
                    tokens,
                    until: r.until.clone(),
                    max_tokens: r.max_tokens,
                }
            })
            .collect();
        let out = self.run(&jobs)?;
        Ok(out
            .into_iter()
            .map(|o| match o {
                Outcome::Generated(t) => t,
                Outcome::Scored(_) => unreachable!("generate jobs generate"),
            })
            .collect())
    }
}
