//! `huarizo serve` driven over real HTTP: malformed and impossible requests get 4xx
//! answers in OpenAI's error shape and leave the server serving; `--api-key` guards every
//! endpoint but /health; a client that disconnects mid-stream has its generation stopped
//! within one step; an overloaded queue answers 429 at once while admitted requests
//! complete; and the official `openai` Python client, lm-evaluation-harness and a headless
//! Chromium work against it (scripts under tests/server and tests/e2e).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `huarizo serve`, killed on drop. One at a time: the tests measure latencies
/// and would otherwise share two cores with each other's servers.
struct Server {
    child: Child,
    addr: String,
    _turn: std::sync::MutexGuard<'static, ()>,
}

static ONE_SERVER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Server {
    fn start(extra: &[&str]) -> Server {
        let turn = ONE_SERVER_AT_A_TIME
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let model = huarizo_testdata::dir().join("smollm2.gguf");
        let mut child = Command::new(env!("CARGO_BIN_EXE_huarizo"))
            .args([
                "serve",
                "-m",
                model.to_str().unwrap(),
                "--port",
                "0",
                "-t",
                "2",
            ])
            .args(["--alias", "smollm2"])
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start huarizo serve");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("huarizo serve exited before listening")
                .unwrap();
            if let Some(a) = line.split("listening on http://").nth(1) {
                break a.trim().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr,
            _turn: turn,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

fn metric(addr: &str, name: &str) -> f64 {
    let (_, body) = http(addr, "GET", "/metrics", &[], b"");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[test]
fn malformed_requests_get_openai_shaped_4xx_and_the_server_keeps_serving() {
    let server = Server::start(&["--ctx", "64", "--parallel", "2"]);
    let a = &server.addr;
    let long_prompt = "word ".repeat(200);
    let cases: Vec<(&str, &str, String, u16)> = vec![
        (
            "malformed JSON",
            "/v1/chat/completions",
            "{\"messages\": [".into(),
            400,
        ),
        ("empty body", "/v1/chat/completions", String::new(), 400),
        ("not an object", "/v1/completions", "[1,2,3]".into(), 400),
        (
            "messages wrong type",
            "/v1/chat/completions",
            r#"{"messages":"hi"}"#.into(),
            400,
        ),
        (
            "messages empty",
            "/v1/chat/completions",
            r#"{"messages":[]}"#.into(),
            400,
        ),
        (
            "unknown role",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"wizard","content":"x"}]}"#.into(),
            400,
        ),
        (
            "content wrong type",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":5}]}"#.into(),
            400,
        ),
        (
            "temperature wrong type",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#.into(),
            400,
        ),
        (
            "temperature out of range",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}],"temperature":7}"#.into(),
            400,
        ),
        (
            "n too large",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}],"n":1000}"#.into(),
            400,
        ),
        (
            "huge max_tokens",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":10000000000}"#.into(),
            400,
        ),
        (
            "negative max_tokens",
            "/v1/completions",
            r#"{"prompt":"x","max_tokens":-5}"#.into(),
            400,
        ),
        (
            "prompt longer than the context",
            "/v1/completions",
            format!(r#"{{"prompt":"{long_prompt}"}}"#),
            400,
        ),
        (
            "chat longer than the context",
            "/v1/chat/completions",
            format!(r#"{{"messages":[{{"role":"user","content":"{long_prompt}"}}]}}"#),
            400,
        ),
        (
            "token id out of vocabulary",
            "/v1/completions",
            r#"{"prompt":[1,2,99999999]}"#.into(),
            400,
        ),
        (
            "prompt missing",
            "/v1/completions",
            r#"{"max_tokens":3}"#.into(),
            400,
        ),
        (
            "bad response_format",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}"#
                .into(),
            400,
        ),
        (
            "bad tools",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}"#.into(),
            400,
        ),
        (
            "too many stop strings",
            "/v1/completions",
            format!(r#"{{"prompt":"x","stop":{:?}}}"#, vec!["a"; 40]),
            400,
        ),
        (
            "logprobs too large",
            "/v1/completions",
            r#"{"prompt":"x","logprobs":100}"#.into(),
            400,
        ),
        (
            "detokenize bad id",
            "/detokenize",
            r#"{"tokens":[-1]}"#.into(),
            400,
        ),
        ("unknown endpoint", "/v1/engines", "{}".into(), 404),
    ];
    for (what, path, body, want) in &cases {
        let (status, text) = post(a, path, body);
        assert_eq!(status, *want, "{what}: {text}");
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {text}"
        );
        assert!(v["error"]["type"].is_string(), "{what}: {text}");
    }
    let (status, _) = http(a, "GET", "/v1/chat/completions", &[], b"");
    assert_eq!(status, 405);
    let (status, _) = post(a, "/v1/completions", &"x".repeat(9 << 20));
    assert_eq!(status, 413, "an oversized body is refused");
    // Still serving.
    let (status, text) = post(
        a,
        "/v1/completions",
        r#"{"prompt":"Hello","max_tokens":3,"temperature":0}"#,
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = post(a, "/tokenize", r#"{"content":"Hello world"}"#);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (status, &v["tokens"]),
        (200, &serde_json::json!([19556, 905]))
    );
    let (status, text) = post(a, "/detokenize", r#"{"tokens":[19556,905]}"#);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (status, &v["content"]),
        (200, &serde_json::json!("Hello world"))
    );
}

#[test]
fn api_key_guards_everything_but_health() {
    let server = Server::start(&["--api-key", "sekret"]);
    let a = &server.addr;
    assert_eq!(http(a, "GET", "/health", &[], b"").0, 200);
    for path in ["/v1/models", "/metrics", "/openapi.json"] {
        assert_eq!(http(a, "GET", path, &[], b"").0, 401, "{path}");
        assert_eq!(
            http(a, "GET", path, &[("Authorization", "Bearer wrong")], b"").0,
            401,
            "{path}"
        );
        assert_eq!(
            http(a, "GET", path, &[("Authorization", "Bearer sekret")], b"").0,
            200,
            "{path}"
        );
    }
    let (status, text) = post(a, "/v1/completions", r#"{"prompt":"Hi","max_tokens":1}"#);
    assert_eq!(status, 401);
    assert!(text.contains("authentication_error"));
}

#[test]
fn a_disconnected_stream_stops_decoding_within_one_step() {
    let server = Server::start(&["--parallel", "2"]);
    let a = &server.addr;
    let body = r#"{"prompt":"Once upon a time","max_tokens":3000,"stream":true,"temperature":0.8,"seed":1}"#;
    let mut s = TcpStream::connect(a).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read until a few tokens have streamed, then hang up.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.windows(6).filter(|w| w == b"data: ").count() < 5 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(s);
    let t0 = Instant::now();
    while metric(a, "huarizo_cancelled_requests_total") < 1.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "cancellation not seen within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let generated = metric(a, "huarizo_generated_tokens_total");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        metric(a, "huarizo_generated_tokens_total"),
        generated,
        "decoding went on"
    );
    assert_eq!(metric(a, "huarizo_active_requests"), 0.0);
    assert!(
        generated < 200.0,
        "{generated} tokens generated for a stream read 5 chunks deep"
    );
}

#[test]
fn an_overloaded_queue_answers_429_at_once_and_admitted_requests_complete() {
    let server = Server::start(&["--parallel", "2", "--queue", "2"]);
    let addr = server.addr.clone();
    let handles: Vec<_> = (0..12)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let body =
                    format!(r#"{{"prompt":"Count to ten: {i}","max_tokens":24,"temperature":0}}"#);
                let (status, text) = post(&addr, "/v1/completions", &body);
                (status, t0.elapsed(), text)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let rejected: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    let ok: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    assert_eq!(rejected.len() + ok.len(), 12, "{results:?}");
    assert!(
        ok.len() >= 4,
        "at least slots + queue are served: {}",
        ok.len()
    );
    assert!(
        !rejected.is_empty(),
        "12 requests on 2 slots + 2 queued must overflow"
    );
    for r in &rejected {
        assert!(r.1 < Duration::from_millis(100), "429 took {:?}", r.1);
        assert!(r.2.contains("rate_limit_error"));
    }
    for r in &ok {
        let v: serde_json::Value = serde_json::from_str(&r.2).unwrap();
        assert!(
            v["usage"]["completion_tokens"].as_u64().unwrap() > 0,
            "{}",
            r.2
        );
        assert!(v["choices"][0]["finish_reason"].is_string(), "{}", r.2);
    }
}

/// Runs a script (Python from the test suite's venv, made by scripts/test-venv.sh, or a
/// shell script) and returns its standard output.
fn script(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let path = repo().join(script);
    let mut cmd = if script.ends_with(".py") {
        let py = huarizo_testdata::dir().join("venv/bin/python");
        assert!(
            py.exists(),
            "{} is missing: run scripts/test-venv.sh",
            py.display()
        );
        let mut c = Command::new(py);
        c.arg(&path);
        c
    } else {
        Command::new(&path)
    };
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{script} failed:\n{stdout}");
    stdout
}

#[test]
fn the_official_openai_client_works() {
    let server = Server::start(&["--parallel", "4"]);
    let url = format!("{}/v1", server.url());
    script(
        "tests/server/test_openai_client.py",
        &[],
        &[("HUARIZO_URL", &url)],
    );
}

#[test]
fn schemathesis_finds_no_server_error_in_1000_requests() {
    let server = Server::start(&["--parallel", "2", "--ctx", "512"]);
    let out = script("tests/server/run_schemathesis.sh", &[&server.url()], &[]);
    eprintln!("{out}");
}

/// lm-evaluation-harness's `local-completions` model against the server, on a local
/// multiple-choice task: every per-choice log-likelihood equals huarizo's own, computed
/// in-process with the engine, to 1e-3 nats (as lm_eval splits context and continuation).
#[test]
fn lm_eval_log_likelihoods_equal_in_process_ones() {
    let server = Server::start(&["--parallel", "2", "--ctx", "512"]);
    let out_dir = std::env::temp_dir().join(format!("huarizo-lm-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = out_dir.to_str().unwrap();
    script("tests/server/run_lm_eval.sh", &[&server.url(), out], &[]);
    let json = script("tests/server/lm_eval_loglikelihoods.py", &[out], &[]);
    let items: serde_json::Value = serde_json::from_str(&json).unwrap();
    let engine = huarizo_engine::Engine::load(
        &huarizo_testdata::dir().join("smollm2.gguf"),
        &huarizo_engine::EngineOptions {
            n_threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let tok = |s: &str| engine.tokenizer().encode(s, false, true);
    let v = engine.config().n_vocab;
    let (mut n, mut worst, mut same_greedy) = (0, 0f64, 0);
    for item in items.as_array().unwrap() {
        for choice in item["choices"].as_array().unwrap() {
            let (mut ctx, mut cont) = (
                choice["context"].as_str().unwrap().to_string(),
                choice["continuation"].as_str().unwrap().to_string(),
            );
            // lm_eval moves the context's trailing spaces to the continuation.
            let kept = ctx.trim_end().len();
            cont.insert_str(0, &ctx[kept..]);
            ctx.truncate(kept);
            let whole = tok(&(ctx.clone() + &cont));
            let n_ctx = tok(&ctx).len();
            let mut state = engine.new_state(whole.len());
            let logits = engine
                .forward(&mut state, &whole, huarizo_engine::Logits::All)
                .unwrap();
            let (mut ll, mut greedy) = (0f64, true);
            for j in n_ctx..whole.len() {
                let row = &logits[(j - 1) * v..j * v];
                ll += f64::from(huarizo_engine::sampling::token_logprob(row, whole[j]));
                greedy &= huarizo_engine::sampling::argmax(row) == whole[j];
            }
            let theirs = choice["loglikelihood"].as_f64().unwrap();
            worst = worst.max((ll - theirs).abs());
            assert!(
                (ll - theirs).abs() <= 1e-3,
                "{ctx:?} + {cont:?}: lm_eval {theirs}, huarizo in-process {ll}"
            );
            same_greedy += usize::from(choice["is_greedy"].as_bool() == Some(greedy));
            n += 1;
        }
    }
    assert_eq!(n, 80, "20 questions × 4 choices");
    assert_eq!(same_greedy, n, "is_greedy differs");
    eprintln!("lm_eval vs in-process: {n} log-likelihoods, largest difference {worst:.2e} nats");
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn the_web_page_streams_and_stops_in_headless_chromium() {
    let server = Server::start(&["--parallel", "2"]);
    let e2e = repo().join("tests/e2e");
    assert!(
        e2e.join("node_modules/playwright-core").exists(),
        "tests/e2e/node_modules is missing: run scripts/test-setup.sh"
    );
    let shot = std::env::temp_dir().join(format!("huarizo-chat-{}.png", std::process::id()));
    let out = Command::new("node")
        .arg(e2e.join("chat_page.mjs"))
        .arg(server.url())
        .arg(&shot)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "chat page test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shot.exists());
}

#[test]
fn json_schema_output_always_parses_and_validates() {
    let server = Server::start(&["--parallel", "4"]);
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "maxLength": 40 },
            "age": { "type": "integer", "minimum": 0, "maximum": 150 },
            "city": { "enum": ["Paris", "Lima", "Beijing"] },
            "pets": { "type": "array", "items": { "type": "string" }, "maxItems": 3 },
            "address": {
                "type": "object",
                "properties": { "street": { "type": "string" }, "number": { "type": "integer" } },
                "required": ["street", "number"],
                "additionalProperties": false
            }
        },
        "required": ["name", "age", "city", "pets", "address"],
        "additionalProperties": false
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut checked = 0;
    for round in 0..5 {
        let body = serde_json::json!({
            "messages": [{ "role": "user", "content": "Describe a person as JSON." }],
            "temperature": 1.0,
            "seed": round,
            "n": 10,
            "max_tokens": 120,
            "response_format": {
                "type": "json_schema",
                "json_schema": { "name": "person", "schema": schema, "strict": true }
            }
        });
        let (status, text) = post(&server.addr, "/v1/chat/completions", &body.to_string());
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for choice in v["choices"].as_array().unwrap() {
            let content = choice["message"]["content"].as_str().unwrap();
            let doc: serde_json::Value = serde_json::from_str(content)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {content}"));
            assert!(
                validator.is_valid(&doc),
                "invalid against the schema: {content}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 50);
    // json_object mode gives an object; an unsupported schema is a 400 naming it.
    let (status, text) = post(
        &server.addr,
        "/v1/chat/completions",
        r#"{"messages":[{"role":"user","content":"JSON"}],"max_tokens":60,"temperature":1,"response_format":{"type":"json_object"}}"#,
    );
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(doc.is_object());
    let (status, text) = post(
        &server.addr,
        "/v1/chat/completions",
        r#"{"messages":[{"role":"user","content":"JSON"}],"response_format":{"type":"json_schema","json_schema":{"schema":{"not":{}}}}}"#,
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not"), "{text}");
}
