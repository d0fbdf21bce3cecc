//! `huarizo bench`: prompt-processing and generation speed in llama-bench's shape.
//!
//! Tests, as llama-bench defines them:
//! - `ppP`: one batch of P random tokens through the model (logits of the last token only),
//!   timed as a whole; t/s = P / seconds.
//! - `tgN`: N single-token forward passes, each on a fresh random token (no sampling); t/s =
//!   N / seconds.
//! - `@ dD`: the KV cache is first filled with D random tokens (untimed) on every repetition.
//!
//! Each test runs once untimed as a warm-up (the prompt, or one generated token), then REPS
//! times; the report is the mean ± sample standard deviation of the per-run t/s, and the raw
//! samples are kept (`samples_ns`, `samples_ts` in the JSON). Token ids come from a fixed-seed
//! generator; the first token of a sequence is BOS when the model adds one, as in llama-bench.
//!
//! Not measured: model loading (mmap and any load-time work), tokenization, sampling and
//! detokenization, and the prefill of `@ dD` tests.

use anyhow::{bail, Context, Result};
use huarizo_engine::{Engine, EngineOptions, Logits, State};
use serde_json::json;
use std::io::Write;
use std::time::Instant;

/// Flags of `huarizo bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A GGUF path, `hf:owner/repo[:file]`, or an alias.
    #[arg(short = 'm', long = "model", default_value = huarizo_hub::DEFAULT_MODEL)]
    pub model: String,
    /// Threads to compute with (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Prompt lengths to test, comma-separated (0 = no prompt test).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test, comma-separated (0 = no generation test).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// KV-cache depths to test at, comma-separated.
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub n_depth: Vec<usize>,
    /// How the KV cache keeps keys and values (f16 or q8_0; `type_k`/`type_v` in the
    /// output, as llama-bench's `-ctk`/`-ctv`).
    #[arg(long = "cache-type", default_value = "f16", value_parser = crate::parse_cache_type)]
    pub cache_type: huarizo_engine::CacheType,
    /// The weights' precision in the products: file (as stored) or f32 (widened at load;
    /// the size column then counts 4 bytes per weight).
    #[arg(long = "precision", default_value = "file", value_parser = crate::parse_precision)]
    pub precision: huarizo_engine::Precision,
    /// Timed repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Skip the untimed warm-up run.
    #[arg(long = "no-warmup")]
    pub no_warmup: bool,
    /// Print llama-bench's JSON (a list of objects) instead of a markdown table.
    #[arg(long)]
    pub json: bool,
    /// Around each generation test, read the weights' own pages as fast as a plain sum can
    /// (best of 5 passes on the same threads, before and after the test) and print, on
    /// stderr, the bound the faster rate puts on generation and the share of it the test
    /// reached; then generate the test's tokens once more, each followed by one such read,
    /// and print the share token by token.
    #[arg(long)]
    pub bandwidth: bool,
}

/// What the model is, as llama-bench describes it.
#[derive(Clone, Debug)]
pub struct ModelDesc {
    /// The path as given.
    pub filename: String,
    /// `{arch} {size} {file type}`, e.g. `llama 135M Q4_1`.
    pub model_type: String,
    /// Bytes of tensor data.
    pub size: u64,
    /// Number of weights.
    pub n_params: u64,
}

/// One test and its measured runs.
#[derive(Clone, Debug)]
pub struct TestResult {
    /// Prompt tokens processed in one batch per run.
    pub n_prompt: usize,
    /// Tokens generated one at a time per run.
    pub n_gen: usize,
    /// Tokens in the KV cache before the timed part.
    pub n_depth: usize,
    /// Threads in the pool.
    pub n_threads: usize,
    /// The KV cache's type (`f16`, `q8_0`).
    pub cache_type: &'static str,
    /// Wall time of each timed run, in nanoseconds.
    pub samples_ns: Vec<u64>,
    /// Unix time (seconds) the test started.
    pub test_time: u64,
}

impl TestResult {
    /// The test's name as llama-bench prints it (`pp512`, `tg128`, `pp512+tg128`, `… @ d4096`).
    pub fn name(&self) -> String {
        let mut name = match (self.n_prompt, self.n_gen) {
            (p, 0) => format!("pp{p}"),
            (0, n) => format!("tg{n}"),
            (p, n) => format!("pp{p}+tg{n}"),
        };
        if self.n_depth > 0 {
            name.push_str(&format!(" @ d{}", self.n_depth));
        }
        name
    }

    /// Tokens/s of each run.
    pub fn samples_ts(&self) -> Vec<f64> {
        let n = (self.n_prompt + self.n_gen) as f64;
        self.samples_ns
            .iter()
            .map(|&ns| n * 1e9 / ns.max(1) as f64)
            .collect()
    }
}

/// Mean of `v` (0 when empty).
fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Sample standard deviation of `v` (0 for fewer than two values, as llama-bench).
fn stddev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    let ss: f64 = v.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (v.len() - 1) as f64).sqrt()
}

/// Writes benchmark results as they come; one implementation per output format.
pub trait Printer {
    /// Before the first test.
    fn header(&mut self, out: &mut dyn Write) -> std::io::Result<()>;
    /// One finished test.
    fn test(
        &mut self,
        out: &mut dyn Write,
        model: &ModelDesc,
        t: &TestResult,
    ) -> std::io::Result<()>;
    /// After the last test.
    fn footer(&mut self, out: &mut dyn Write) -> std::io::Result<()>;
}

/// llama-bench's markdown table; `type_k` and `type_v` columns when the KV cache is not
/// f16, as llama-bench adds them for a non-default `-ctk`/`-ctv`.
#[derive(Default)]
pub struct MarkdownPrinter {
    /// Whether the table has the cache-type columns.
    pub kv_columns: bool,
}

impl Printer for MarkdownPrinter {
    fn header(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        let (kv, kv_rule) = if self.kv_columns {
            (
                format!(" {:<6} | {:<6} |", "type_k", "type_v"),
                format!(" {} | {} |", "-".repeat(6), "-".repeat(6)),
            )
        } else {
            (String::new(), String::new())
        };
        writeln!(
            out,
            "| {:<30} | {:>10} | {:>10} | {:<10} | {:>7} |{kv} {:>15} | {:>20} |",
            "model", "size", "params", "backend", "threads", "test", "t/s"
        )?;
        writeln!(
            out,
            "| {} | {}: | {}: | {} | {}: |{kv_rule} {}: | {}: |",
            "-".repeat(30),
            "-".repeat(9),
            "-".repeat(9),
            "-".repeat(10),
            "-".repeat(6),
            "-".repeat(14),
            "-".repeat(19)
        )
    }

    fn test(
        &mut self,
        out: &mut dyn Write,
        model: &ModelDesc,
        t: &TestResult,
    ) -> std::io::Result<()> {
        let ts = t.samples_ts();
        let kv = if self.kv_columns {
            format!(" {:<6} | {:<6} |", t.cache_type, t.cache_type)
        } else {
            String::new()
        };
        writeln!(
            out,
            "| {:<30} | {:>10} | {:>10} | {:<10} | {:>7} |{kv} {:>15} | {:>20} |",
            model.model_type,
            human_size(model.size),
            human_params(model.n_params),
            "CPU",
            t.n_threads,
            t.name(),
            format!("{:.2} ± {:.2}", mean(&ts), stddev(&ts))
        )
    }

    fn footer(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out)?;
        writeln!(
            out,
            "build: huarizo {} (arithmetic: {})",
            env!("CARGO_PKG_VERSION"),
            huarizo_engine::arithmetic().name()
        )
    }
}

/// llama-bench's JSON: a list of objects, one per test, written as each test finishes.
#[derive(Default)]
pub struct JsonPrinter {
    first: bool,
}

impl Printer for JsonPrinter {
    fn header(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        self.first = true;
        writeln!(out, "[")
    }

    fn test(
        &mut self,
        out: &mut dyn Write,
        model: &ModelDesc,
        t: &TestResult,
    ) -> std::io::Result<()> {
        let ns: Vec<f64> = t.samples_ns.iter().map(|&x| x as f64).collect();
        let ts = t.samples_ts();
        let obj = json!({
            "build_commit": "huarizo",
            "build_number": 0,
            "huarizo_version": env!("CARGO_PKG_VERSION"),
            "cpu_info": cpu_info(),
            "backends": "CPU",
            "model_filename": model.filename,
            "model_type": model.model_type,
            "model_size": model.size,
            "model_n_params": model.n_params,
            "n_batch": t.n_prompt.max(1),
            "n_ubatch": t.n_prompt.max(1),
            "n_threads": t.n_threads,
            "type_k": t.cache_type,
            "type_v": t.cache_type,
            "n_prompt": t.n_prompt,
            "n_gen": t.n_gen,
            "n_depth": t.n_depth,
            "test_time": t.test_time,
            "avg_ns": mean(&ns).round() as u64,
            "stddev_ns": stddev(&ns).round() as u64,
            "avg_ts": mean(&ts),
            "stddev_ts": stddev(&ts),
            "samples_ns": t.samples_ns,
            "samples_ts": ts,
        });
        if !self.first {
            writeln!(out, ",")?;
        }
        self.first = false;
        let text = serde_json::to_string_pretty(&obj).map_err(std::io::Error::other)?;
        write!(out, "{text}")
    }

    fn footer(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        if !self.first {
            writeln!(out)?;
        }
        writeln!(out, "]")
    }
}

/// `82.41 MiB` / `1.20 GiB`, as llama-bench.
fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    }
}

/// `134.52 M` / `1.54 B`, as llama-bench.
fn human_params(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} B", n / 1e9)
    } else {
        format!("{:.2} M", n / 1e6)
    }
}

/// The CPU's model name from /proc/cpuinfo (empty where there is none).
fn cpu_info() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// llama.cpp's name for a `general.file_type` (`llama_model_ftype_name`).
pub(crate) fn ftype_name(id: u64) -> String {
    let name = match id {
        0 => "all F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K - Medium",
        11 => "Q3_K - Small",
        12 => "Q3_K - Medium",
        13 => "Q3_K - Large",
        14 => "Q4_K - Small",
        15 => "Q4_K - Medium",
        16 => "Q5_K - Small",
        17 => "Q5_K - Medium",
        18 => "Q6_K",
        32 => "BF16",
        other => return format!("ftype {other}"),
    };
    name.to_string()
}

fn describe(engine: &Engine, filename: &str) -> ModelDesc {
    let gguf = engine.gguf();
    let size: u64 = gguf.tensors().iter().map(|t| t.n_bytes as u64).sum();
    let n_params = huarizo_engine::Config::param_count(gguf);
    let label = gguf
        .get("general.size_label")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            if n_params >= 1_000_000_000 {
                format!("{:.1}B", n_params as f64 / 1e9)
            } else {
                format!("{}M", (n_params as f64 / 1e6).round())
            }
        });
    let ftype = gguf
        .get("general.file_type")
        .and_then(|v| v.as_u64())
        .map(ftype_name)
        .unwrap_or_else(|| "?".to_string());
    ModelDesc {
        filename: filename.to_string(),
        model_type: format!("{} {label} {ftype}", engine.config().arch.name()),
        size,
        n_params,
    }
}

/// A fixed-seed token generator (splitmix64), so every run sees the same ids.
struct TokenRng {
    state: u64,
    n_vocab: u64,
}

impl TokenRng {
    fn next(&mut self) -> u32 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % self.n_vocab) as u32
    }
}

/// Runs one benchmark's model work against one engine and state.
struct Runner<'e> {
    engine: &'e Engine,
    rng: TokenRng,
    /// BOS opens each sequence when the model adds one.
    bos: Option<u32>,
}

impl Runner<'_> {
    /// `n` random tokens (BOS first where the model adds one) in one batch at the state's
    /// next positions.
    fn prompt(&mut self, state: &mut State, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let first_in_seq = state.n_past == 0;
        let tokens: Vec<u32> = (0..n)
            .map(|i| match (i, first_in_seq, self.bos) {
                (0, true, Some(bos)) => bos,
                _ => self.rng.next(),
            })
            .collect();
        self.engine.forward(state, &tokens, Logits::Last)?;
        Ok(())
    }

    /// `n` single-token steps, the first on BOS where the model adds one.
    fn generate(&mut self, state: &mut State, n: usize) -> Result<()> {
        let mut token = self.bos.unwrap_or_else(|| self.rng.next());
        for _ in 0..n {
            self.engine.forward(state, &[token], Logits::Last)?;
            token = self.rng.next();
        }
        Ok(())
    }
}

/// `huarizo bench`.
pub fn bench(args: &BenchArgs) -> Result<()> {
    if args.reps == 0 {
        bail!("-r must be at least 1");
    }
    let path = huarizo_hub::resolve(&args.model, &huarizo_hub::ResolveOptions::default())?;
    let mut engine = Engine::load(
        &path,
        &EngineOptions {
            n_threads: args.threads,
            precision: args.precision,
        },
    )?;
    engine.set_cache_type(args.cache_type)?;
    let mut printer: Box<dyn Printer> = if args.json {
        Box::new(JsonPrinter::default())
    } else {
        Box::new(MarkdownPrinter {
            kv_columns: args.cache_type != huarizo_engine::CacheType::F16,
        })
    };
    let desc = describe(&engine, &args.model);
    let n_ctx_train = engine.config().n_ctx_train;
    let tokenizer = engine.tokenizer();
    let mut runner = Runner {
        engine: &engine,
        rng: TokenRng {
            state: 1234,
            n_vocab: tokenizer.n_vocab().max(1) as u64,
        },
        bos: tokenizer.bos().filter(|_| tokenizer.add_bos()),
    };

    // llama-bench's order: prompt tests, then generation tests, each at every depth.
    let mut tests = Vec::new();
    for &p in args.n_prompt.iter().filter(|&&p| p > 0) {
        for &d in &args.n_depth {
            tests.push((p, 0, d));
        }
    }
    for &n in args.n_gen.iter().filter(|&&n| n > 0) {
        for &d in &args.n_depth {
            tests.push((0, n, d));
        }
    }
    for &(p, n, d) in &tests {
        if p + n + d > n_ctx_train {
            bail!(
                "{}: test needs {} positions (depth {d} + prompt {p} + gen {n}) but the model's \
                 context is {n_ctx_train}; try a smaller `-d`",
                path.display(),
                p + n + d
            );
        }
    }

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    printer.header(&mut out)?;
    for (p, n, d) in tests {
        let mut state = engine.new_state(p + n + d);
        let test_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_secs())
            .unwrap_or(0);
        if !args.no_warmup {
            state.truncate(0);
            runner.prompt(&mut state, p).context("warm-up prompt run")?;
            if n > 0 {
                runner
                    .generate(&mut state, 1)
                    .context("warm-up generation run")?;
            }
        }
        // The weights' read rate right before the test too: a virtual machine's memory can
        // change speed while a process runs, and the faster of the two is the stricter bound.
        let rate_before = (args.bandwidth && n > 0).then(|| engine.weight_read_rate(5).1);
        let mut samples_ns = Vec::with_capacity(args.reps);
        for _ in 0..args.reps {
            state.truncate(0);
            runner.prompt(&mut state, d).context("depth prefill")?;
            let start = Instant::now();
            runner.prompt(&mut state, p)?;
            runner.generate(&mut state, n)?;
            samples_ns.push(start.elapsed().as_nanos() as u64);
        }
        let result = TestResult {
            n_prompt: p,
            n_gen: n,
            n_depth: d,
            n_threads: engine.n_threads(),
            cache_type: engine.cache_type().name(),
            samples_ns,
            test_time,
        };
        printer.test(&mut out, &desc, &result)?;
        out.flush()?;
        if let Some(rate_before) = rate_before {
            let (bytes, rate_after) = engine.weight_read_rate(5);
            let rate = rate_before.max(rate_after);
            let bound = rate / bytes as f64;
            let ts = mean(&result.samples_ts());
            eprintln!(
                "{}: weights {:.1} MB per token, their pages read at {:.1} GB/s here (before \
                 the test {:.1}, after it {:.1}): bound {bound:.1} t/s; {ts:.2} t/s is {:.1}% \
                 of it",
                result.name(),
                bytes as f64 / 1e6,
                rate / 1e9,
                rate_before / 1e9,
                rate_after / 1e9,
                100.0 * ts / bound
            );
            // The memory's speed can change within seconds, so also pair each generated token
            // with a read of the weights right after it: each pair's share is that read's
            // time over the token's.
            state.truncate(0);
            runner.prompt(&mut state, d).context("depth prefill")?;
            runner.prompt(&mut state, p)?;
            let (mut shares, mut token_s, mut read_s) = (Vec::with_capacity(n), 0.0, 0.0);
            for _ in 0..n {
                let start = Instant::now();
                runner.generate(&mut state, 1)?;
                let token = start.elapsed().as_secs_f64();
                let read = bytes as f64 / engine.weight_read_rate(1).1;
                shares.push(read / token);
                (token_s, read_s) = (token_s + token, read_s + read);
            }
            shares.sort_by(f64::total_cmp);
            let at = |q: f64| 100.0 * shares[((shares.len() - 1) as f64 * q).round() as usize];
            eprintln!(
                "{}: each of {n} tokens ({:.2} t/s) against a read of the weights right after \
                 it ({:.1} GB/s): {:.1}% of the time (median {:.1}%, quartiles {:.1}% and \
                 {:.1}%)",
                result.name(),
                n as f64 / token_s,
                (n * bytes) as f64 / read_s / 1e9,
                100.0 * read_s / token_s,
                at(0.5),
                at(0.25),
                at(0.75)
            );
        }
    }
    printer.footer(&mut out)?;
    Ok(())
}
