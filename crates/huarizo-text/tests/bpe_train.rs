//! Byte-level BPE training ([`huarizo_text::train_bpe`]) on a small corpus written here:
//! the vocabulary it gives, round trips through huarizo's tokenizer built from the GGUF
//! metadata, and the same ids as the `tokenizers` tokenizer that was trained.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use huarizo_formats::{GgufFile, GgufWriter, Value};
use huarizo_text::{train_bpe, train_bpe_to_dir, BpeTrainError, BpeTrainOptions, Tokenizer};

/// A fresh folder for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "huarizo-bpe-test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// About 14 KB of English (and a little French, Chinese and emoji) text, in two files.
fn corpus(s: &Scratch) -> Vec<PathBuf> {
    let sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "A small language model learns to predict the next token.",
        "She said that she'd seen the river, and they'll cross it tomorrow.",
        "Training a tokenizer means counting pairs of bytes and merging the most frequent ones.",
        "We're going to the market to buy bread, cheese and 12 apples.",
        "It's 2024 and the weather is nice; the children play outside.",
        "Le café est très bon, et l'été arrive bientôt.",
        "我们喜欢学习中文。",
        "The cat sat on the mat 🐈 and looked at the moon 🌙.",
    ];
    let mut a = String::new();
    let mut b = String::new();
    for round in 0..20 {
        for (i, line) in sentences.iter().enumerate() {
            let out = if (round + i) % 2 == 0 { &mut a } else { &mut b };
            out.push_str(line);
            out.push_str(&format!(" Line {round} of {i}.\n"));
        }
        a.push_str("<|endoftext|>\n\n");
    }
    vec![s.file("a.txt", a.as_bytes()), s.file("b.txt", b.as_bytes())]
}

fn opts(vocab_size: usize) -> BpeTrainOptions {
    BpeTrainOptions {
        vocab_size,
        ..BpeTrainOptions::default()
    }
}

fn get<'a>(meta: &'a [(String, Value)], key: &str) -> &'a Value {
    &meta
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("{key} is missing"))
        .1
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn tokenizer(meta: Vec<(String, Value)>) -> Tokenizer {
    let f = GgufFile::from_parts(Path::new("trained"), meta, Vec::new(), Vec::new()).unwrap();
    Tokenizer::from_gguf(&f).unwrap()
}

/// Text the corpus never held (new words, digits, spaces, non-ASCII, special tokens).
const HELD_OUT: &[&str] = &[
    "The lazy fox doesn't jump; it sleeps under the warm sun.",
    "Numbers like 3.14159 and 1,000,000 are split by the regex.",
    "  Two leading spaces,   three inside, and a trailing one ",
    "Tabs\tand\nnewlines\n\n\nmatter too.\r\n",
    "Crème brûlée, naïve façade, Ærøskøbing.",
    "中文分词测试：你好，世界！",
    "Emoji: 🦙🔥👍🏽 and a flag 🇵🇪.",
    "Zero-width joiner 👩‍💻, combining e\u{301}.",
    "<|im_start|>user\nHello there!<|im_end|>\n<|im_start|>assistant\n",
    "Before<|endoftext|>after",
    "",
];

#[test]
fn vocabulary_has_the_asked_size_special_tokens_first() {
    let s = Scratch::new("size");
    let files = corpus(&s);
    let meta = train_bpe(&files, &opts(400)).unwrap();
    assert_eq!(get(&meta, "tokenizer.ggml.model").as_str(), Some("gpt2"));
    assert_eq!(get(&meta, "tokenizer.ggml.pre").as_str(), Some("gpt-2"));
    let tokens = strings(get(&meta, "tokenizer.ggml.tokens"));
    assert_eq!(tokens.len(), 400);
    assert_eq!(
        &tokens[..3],
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    );
    let types: Vec<i64> = get(&meta, "tokenizer.ggml.token_type")
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert_eq!(&types[..3], [3, 3, 3]);
    assert!(types[3..].iter().all(|&t| t == 1));
    // 3 special tokens and 256 byte symbols; every other token is a merge result.
    assert_eq!(
        strings(get(&meta, "tokenizer.ggml.merges")).len(),
        400 - 259
    );
    assert_eq!(get(&meta, "tokenizer.ggml.bos_token_id").as_u64(), Some(0));
    assert_eq!(get(&meta, "tokenizer.ggml.eos_token_id").as_u64(), Some(0));
    assert_eq!(
        get(&meta, "tokenizer.ggml.add_bos_token").as_bool(),
        Some(false)
    );
    assert!(get(&meta, "tokenizer.chat_template")
        .as_str()
        .unwrap()
        .contains("<|im_start|>"));

    let t = tokenizer(meta);
    assert_eq!(t.n_vocab(), 400);
    assert!(!t.add_bos());
    assert_eq!((t.bos(), t.eos()), (Some(0), Some(0)));
    assert!(t.is_eog(0) && t.is_eog(2));
    // The merges learnt whole words of the corpus.
    assert_eq!(t.encode(" the", false, false).len(), 1);
}

/// A corpus of a few KB has only so many distinct pairs: once every word is one token
/// (or no pair is seen `min_frequency` times) training stops below the asked size.
#[test]
fn small_corpus_gives_a_smaller_vocabulary() {
    let s = Scratch::new("small");
    let files = corpus(&s);
    let meta = train_bpe(&files, &opts(50_000)).unwrap();
    let tokens = strings(get(&meta, "tokenizer.ggml.tokens"));
    assert!(
        tokens.len() > 400 && tokens.len() < 2000,
        "{}",
        tokens.len()
    );
    let merges = strings(get(&meta, "tokenizer.ggml.merges"));
    // A merge may rebuild a token an earlier merge made (`a bc` after `ab c`), so there
    // can be more merges than merge-made tokens.
    assert!(merges.len() >= tokens.len() - 259);
    let t = tokenizer(meta);
    for word in [" quick", " tokenizer", "Training", " frequent"] {
        assert_eq!(t.encode(word, false, false).len(), 1, "{word:?}");
    }
    // With min_frequency above every pair count, only bytes and special tokens remain.
    let files1 = vec![s.file("once.txt", b"abc\n")];
    let rare = BpeTrainOptions {
        min_frequency: 5,
        ..opts(1000)
    };
    let meta = train_bpe(&files1, &rare).unwrap();
    assert_eq!(strings(get(&meta, "tokenizer.ggml.tokens")).len(), 259);
}

#[test]
fn round_trips_and_matches_the_trained_tokenizer() {
    let s = Scratch::new("same");
    let files = corpus(&s);
    let out = Scratch::new("same-out");
    train_bpe_to_dir(&files, &opts(500), &out.0).unwrap();
    let hf = tokenizers::Tokenizer::from_file(out.0.join("tokenizer.json")).unwrap();
    let meta = huarizo_text::hf::tokenizer_metadata(&out.0).unwrap();

    // Through a GGUF file's bytes as well, as a model file would hold it.
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", Value::String("llama".into()));
    for (k, v) in &meta {
        w.metadata(k.clone(), v.clone());
    }
    let path = out.0.join("vocab.gguf");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let t = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    assert_eq!(t.n_vocab(), 500);

    dump_for_llama_cpp(&w, &t);

    for text in HELD_OUT {
        let ours = t.encode(text, false, true);
        let theirs = hf.encode(*text, false).unwrap().get_ids().to_vec();
        assert_eq!(ours, theirs, "ids of {text:?}");
        assert_eq!(t.decode(&ours), *text, "round trip of {text:?}");
        assert_eq!(
            hf.decode(&theirs, false).unwrap(),
            *text,
            "HF decode {text:?}"
        );
    }
    // Special tokens are single control tokens when parsed, plain text otherwise.
    let chat = t.encode("<|im_start|>user", false, true);
    assert_eq!(chat[0], 1);
    let plain = t.encode("<|im_start|>", false, false);
    assert!(plain.len() > 1 && !plain.contains(&1));
    assert_eq!(t.decode(&plain), "<|im_start|>");
    // Non-ASCII text never seen still encodes, byte by byte at worst.
    let unseen = "Ελληνικά και русский 🧪";
    assert_eq!(t.decode(&t.encode(unseen, false, false)), unseen);
}

/// With `HUARIZO_BPE_DUMP=<folder>`, writes `vocab.gguf` (the trained vocabulary with
/// the hyper-parameters llama.cpp needs to load it `vocab_only`) and `cases.json`
/// (huarizo's ids of [`HELD_OUT`]) there, for `scripts/check_bpe_train.py` to compare
/// with llama.cpp's tokenizer.
fn dump_for_llama_cpp(w: &GgufWriter, t: &Tokenizer) {
    let Some(dir) = std::env::var_os("HUARIZO_BPE_DUMP").map(PathBuf::from) else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = GgufWriter::from_file(
        &GgufFile::from_parts(&dir, w.metadata_entries().to_vec(), Vec::new(), Vec::new()).unwrap(),
    );
    for (k, v) in [
        ("llama.context_length", 512),
        ("llama.embedding_length", 64),
        ("llama.block_count", 1),
        ("llama.feed_forward_length", 128),
        ("llama.attention.head_count", 4),
    ] {
        w.metadata(k, Value::U32(v));
    }
    w.metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    std::fs::write(dir.join("vocab.gguf"), w.to_bytes().unwrap()).unwrap();
    let cases: Vec<serde_json::Value> = HELD_OUT
        .iter()
        .map(|text| serde_json::json!({"text": text, "ids": t.encode(text, false, true)}))
        .collect();
    std::fs::write(
        dir.join("cases.json"),
        serde_json::to_string_pretty(&cases).unwrap(),
    )
    .unwrap();
}

#[test]
fn errors_name_the_option_or_file() {
    let s = Scratch::new("errors");
    let good = s.file("good.txt", b"hello world\n");
    let msg = |r: Result<Vec<(String, Value)>, BpeTrainError>| r.unwrap_err().to_string();

    let e = msg(train_bpe(std::slice::from_ref(&good), &opts(100)));
    assert!(
        e.contains("BpeTrainOptions.vocab_size") && e.contains("259"),
        "{e}"
    );
    let none = BpeTrainOptions {
        special_tokens: Vec::new(),
        ..opts(1000)
    };
    let e = msg(train_bpe(std::slice::from_ref(&good), &none));
    assert!(e.contains("BpeTrainOptions.special_tokens"), "{e}");
    let twice = BpeTrainOptions {
        special_tokens: vec!["<|a|>".into(), "<|a|>".into()],
        ..opts(1000)
    };
    let e = msg(train_bpe(std::slice::from_ref(&good), &twice));
    assert!(e.contains("[1] \"<|a|>\" is listed twice"), "{e}");

    let missing = s.0.join("missing.txt");
    let e = msg(train_bpe(&[good.clone(), missing], &opts(1000)));
    assert!(
        e.contains("missing.txt") && e.contains("cannot open"),
        "{e}"
    );
    let bad = s.file("bad.txt", b"fine line\nbad \xff byte\n");
    let e = msg(train_bpe(&[good.clone(), bad], &opts(1000)));
    assert!(e.contains("bad.txt: line 2: not valid UTF-8"), "{e}");
    let empty = s.file("empty.txt", b"");
    let e = msg(train_bpe(&[empty], &opts(1000)));
    assert!(e.contains("hold no text") && e.contains("empty.txt"), "{e}");
    assert!(matches!(
        train_bpe(&[], &opts(1000)),
        Err(BpeTrainError::NoFiles)
    ));
}
