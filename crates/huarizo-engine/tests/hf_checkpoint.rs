//! Hugging Face checkpoints (issue 8): the three test models exported with
//! `export_hf_checkpoint` (F32) give, in huarizo, the logits transformers gives on the same
//! folder (`tests/hf/reference.json`, made by `tests/hf/make_reference.py`); the folder
//! loads back equal to the GGUF it came from (after that GGUF's weights are widened to F32,
//! so both run the same kernels); a GGUF written from the folder equals the folder; a
//! sharded export equals the single-file one; Yi's `ln1`/`ln2` names load.

use huarizo_engine::requantize::{requantize_file, RequantizeOptions};
use huarizo_engine::{
    export_hf_checkpoint, open_model_file, Engine, EngineOptions, GgmlType, HfExportOptions, Logits,
};
use huarizo_formats::{write_safetensors, SafeTensorOut, SafetensorsFile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("huarizo-hf-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load(path: &Path) -> Engine {
    Engine::load(
        path,
        &EngineOptions {
            n_threads: 2,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Logits of every position of `ids`, `(T, V)`.
fn logits(engine: &Engine, ids: &[u32]) -> Vec<f32> {
    let mut state = engine.new_state(64);
    engine
        .forward(&mut state, ids, Logits::All)
        .unwrap_or_else(|e| panic!("{e}"))
        .to_vec()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn export(gguf: &Path, dir: &Path, shard_bytes: u64) {
    let file = open_model_file(gguf).unwrap();
    export_hf_checkpoint(
        &file,
        dir,
        &HfExportOptions {
            dtype: GgmlType::F32,
            shard_bytes,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

fn to_gguf_f32(model: &Path, out: &Path) {
    let file = open_model_file(model).unwrap();
    let opts = RequantizeOptions::single_type(GgmlType::F32, 2).unwrap();
    requantize_file(&file, out, &opts, |_| {}).unwrap_or_else(|e| panic!("{e}"));
}

fn reference() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/hf/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The largest |huarizo (f32) − transformers| over the reference's stored entries, and
/// the largest reference |logit| (for scale).
fn against_reference(engine: &Engine, prompts: &[serde_json::Value]) -> (f32, f32) {
    let n_vocab = engine.config().n_vocab;
    let (mut worst, mut scale) = (0.0f32, 0.0f32);
    for p in prompts {
        let ids: Vec<u32> = p["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let text = p["text"].as_str().unwrap();
        assert_eq!(
            engine.tokenizer().encode(text, true, true),
            ids,
            "the folder's tokenizer encodes {text:?} as the GGUF's does"
        );
        let ours = engine.logits_f32(&ids).unwrap_or_else(|e| panic!("{e}"));
        for (t, pos) in p["positions"].as_array().unwrap().iter().enumerate() {
            let row = &ours[t * n_vocab..(t + 1) * n_vocab];
            let idx = pos["ids"].as_array().unwrap();
            let vals = pos["logits"].as_array().unwrap();
            for (i, v) in idx.iter().zip(vals) {
                let (i, v) = (i.as_u64().unwrap() as usize, v.as_f64().unwrap() as f32);
                worst = worst.max((row[i] - v).abs());
                scale = scale.max(v.abs());
            }
        }
    }
    (worst, scale)
}

/// Max |huarizo − transformers| allowed, over the reference's stored entries: the issue's
/// bar. huarizo computes these logits in f32 throughout ([`Engine::logits_f32`]); its
/// llama.cpp-order path rounds q, K, V and attention probabilities to f16 and activations
/// to 8 bits, as llama.cpp does, and differs from transformers by up to 0.08.
const BOUND: f32 = 1e-3;

/// Texts that stress a tokenizer: whitespace runs, digits, code, accents, CJK, emoji,
/// contractions and a special token written in the text.
const TOKENIZER_TEXTS: [&str; 6] = [
    "Hello world! It's 2026-12-02, and we've   three   spaces.\n\n\tTabbed line.",
    "def f(x):\n    return x**2 + 1234567  # comment",
    "Ñandú, café, naïve — «quotes» and 'single' ones.",
    "中文字符和日本語のテキスト、한국어 텍스트 🦙🦙 llama emoji",
    "<|im_start|>user\nHi<|im_end|> <start_of_turn>model <bos> end",
    "   leading spaces and trailing   ",
];

/// The folder's `tokenizer.json` read by Hugging Face's own `tokenizers` crate encodes
/// each text as huarizo's tokenizer on the folder does.
fn tokenizers_crate_agrees(folder: &Path, engine: &Engine, name: &str) {
    let hf = tokenizers::Tokenizer::from_file(folder.join("tokenizer.json"))
        .unwrap_or_else(|e| panic!("{name}: tokenizers cannot read the export: {e}"));
    for text in TOKENIZER_TEXTS {
        let want = hf.encode(text, true).unwrap().get_ids().to_vec();
        let got = engine.tokenizer().encode(text, true, true);
        assert_eq!(got, want, "{name}: {text:?}");
    }
}

#[test]
fn exports_match_transformers_and_round_trip() {
    let reference = reference();
    for name in ["smollm2", "gemma3", "qwen"] {
        let gguf = huarizo_testdata::file(&format!("{name}.gguf"));
        let tmp = TempDir::new(name);
        let folder = tmp.0.join("hf");
        export(&gguf, &folder, huarizo_engine::DEFAULT_SHARD_BYTES);

        let hf = load(&folder);
        let prompts = reference["models"][name]["prompts"].as_array().unwrap();
        let (worst, scale) = against_reference(&hf, prompts);
        eprintln!(
            "{name}: max |huarizo - transformers| = {worst:.3e} (largest |logit| {scale:.1})"
        );
        assert!(worst <= BOUND, "{name}: {worst} > {BOUND}");
        tokenizers_crate_agrees(&folder, &hf, name);

        // Self round trip: the folder against its GGUF with weights widened to F32.
        let ids: Vec<u32> = prompts[1]["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let from_hf = logits(&hf, &ids);
        let wide = tmp.0.join("f32.gguf");
        to_gguf_f32(&gguf, &wide);
        let d_wide = max_abs_diff(&from_hf, &logits(&load(&wide), &ids));
        let d_orig = max_abs_diff(&from_hf, &logits(&load(&gguf), &ids));
        eprintln!(
            "{name}: folder vs F32 GGUF: {d_wide:.3e}; folder vs original quantized GGUF \
             (other kernels): {d_orig:.3e}"
        );
        assert_eq!(
            d_wide, 0.0,
            "{name}: the folder is the GGUF's weights, exactly"
        );

        // --to gguf from the folder: full metadata, same logits.
        let back = tmp.0.join("back.gguf");
        to_gguf_f32(&folder, &back);
        let back = load(&back);
        assert_eq!(max_abs_diff(&from_hf, &logits(&back, &ids)), 0.0, "{name}");
        let text = prompts[2]["text"].as_str().unwrap();
        assert_eq!(
            back.tokenizer().encode(text, true, true),
            hf.tokenizer().encode(text, true, true)
        );
        assert_eq!(
            back.chat_template_source(),
            hf.chat_template_source(),
            "{name}"
        );
        assert_eq!(back.has_chat_template(), hf.has_chat_template(), "{name}");
    }
}

#[test]
fn sharded_and_yi_named_checkpoints_load() {
    let gguf = huarizo_testdata::file("smollm2.gguf");
    let tmp = TempDir::new("shards");
    let single = tmp.0.join("single");
    export(&gguf, &single, huarizo_engine::DEFAULT_SHARD_BYTES);
    let sharded = tmp.0.join("sharded");
    export(&gguf, &sharded, 100 << 20);
    let n_shards = std::fs::read_dir(&sharded)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with("model-") && name.ends_with(".safetensors")
        })
        .count();
    assert!(n_shards >= 5, "{n_shards} shards of at most 100 MiB");
    assert!(sharded.join("model.safetensors.index.json").is_file());

    let ids = [1u32, 504, 3458, 282, 4649, 314];
    let want = logits(&load(&single), &ids);
    assert_eq!(max_abs_diff(&want, &logits(&load(&sharded), &ids)), 0.0);

    // Yi's first release: `ln1` / `ln2` for the two LLaMA norms.
    let st = SafetensorsFile::open(&single.join("model.safetensors")).unwrap();
    let rename = |n: &str| {
        n.replace(".input_layernorm.", ".ln1.")
            .replace(".post_attention_layernorm.", ".ln2.")
    };
    let outs: Vec<SafeTensorOut> = st
        .tensors()
        .iter()
        .map(|t| SafeTensorOut {
            name: rename(&t.name),
            dtype: t.dtype,
            shape: t.shape.clone(),
        })
        .collect();
    assert!(outs.iter().any(|t| t.name == "model.layers.0.ln1.weight"));
    let yi = tmp.0.join("yi");
    std::fs::create_dir_all(&yi).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(single.join(f), yi.join(f)).unwrap();
    }
    write_safetensors::<huarizo_formats::WriteError>(
        &yi.join("model.safetensors"),
        &outs,
        &BTreeMap::new(),
        |i, buf| {
            buf.extend_from_slice(st.data(&st.tensors()[i]));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(max_abs_diff(&want, &logits(&load(&yi), &ids)), 0.0);
}
