//! huarizo's quantizer writes what llama.cpp's writes: SmolLM2 widened to F16 and quantized
//! to each file type of `tests/reference/quantize_smollm2.json` (llama.cpp's
//! `llama_model_quantize` on the same F16 file, by scripts/ref_quantize.py) has, in every
//! tensor, llama.cpp's type and llama.cpp's bytes, and the file has llama.cpp's size. The
//! `…+imatrix` entries are quantized with SmolLM2's importance matrix over
//! tests/quality/lighthouse.txt (`--ctx 256`), given to both quantizers.

use huarizo_engine::perplexity::ChunkPlan;
use huarizo_engine::requantize::{requantize, FileType, Importance, RequantizeOptions};
use huarizo_engine::{Engine, EngineOptions, ImatrixCollector, Logits};
use huarizo_formats::{GgmlType, GgufFile};
use sha2::{Digest, Sha256};
use std::path::Path;

fn reference() -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/quantize_smollm2.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The first 16 hex digits of the sha256 of `data`.
fn short_hash(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SmolLM2's importance matrix over the lighthouse text, 256-token chunks, as
/// `huarizo imatrix` computes it and llama-quantize reads it, in the llama.cpp build order
/// the reference's matrix was computed in (`isa`).
fn smollm2_importance(model: &Path, dir: &Path, isa: &str) -> Importance {
    huarizo_engine::set_ggml_isa(huarizo_engine::GgmlIsa::parse(isa).expect("avx2 or avx512"));
    let engine = Engine::load(
        model,
        &EngineOptions {
            n_threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let text_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/quality/lighthouse.txt");
    let text = std::fs::read_to_string(&text_path).unwrap();
    let plan = ChunkPlan::new(&engine, &text, "lighthouse.txt", 256, None).unwrap();
    let mut collector = ImatrixCollector::new(engine.config(), false);
    for i in 0..plan.n_chunk {
        let mut state = engine.new_state(plan.n_ctx);
        engine
            .forward_traced(&mut state, &plan.chunk(i), Logits::All, &mut |n, l, v| {
                collector.observe(n, l, v)
            })
            .unwrap();
    }
    let path = dir.join("imatrix.gguf");
    collector
        .write_gguf(&path, &[], plan.n_chunk as u32, plan.n_ctx as u32)
        .unwrap();
    huarizo_engine::read_imatrix(&path).unwrap().entries
}

#[test]
fn quantized_files_equal_llama_cpps() {
    let reference = reference();
    let dir = std::env::temp_dir().join(format!("huarizo-quantize-mixes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f16 = dir.join("f16.gguf");
    let smollm2 = huarizo_testdata::file("smollm2.gguf");
    requantize(
        &smollm2,
        &f16,
        &RequantizeOptions::single_type(GgmlType::F16, 2).unwrap(),
        |_| {},
    )
    .unwrap();
    let isa = reference["imatrix_ggml_isa"].as_str().unwrap_or("avx2");
    let importance = std::sync::Arc::new(smollm2_importance(&smollm2, &dir, isa));
    for (name, want) in reference["types"].as_object().unwrap() {
        let (ty, weighted) = match name.strip_suffix("+imatrix") {
            Some(ty) => (ty, true),
            None => (name.as_str(), false),
        };
        let out = dir.join(format!("{name}.gguf"));
        let options = RequantizeOptions {
            ftype: FileType::parse(ty).unwrap(),
            pure: false,
            importance: weighted.then(|| importance.clone()),
            n_threads: 2,
        };
        requantize(&f16, &out, &options, |_| {}).unwrap_or_else(|e| panic!("{e}"));
        let file = GgufFile::open(&out).unwrap();
        let want_tensors = want["tensors"].as_object().unwrap();
        assert_eq!(file.tensors().len(), want_tensors.len(), "{name}");
        let mut differ = Vec::new();
        for t in file.tensors() {
            let got = [
                t.ggml_type.name().to_owned(),
                short_hash(file.tensor_data(t)),
            ];
            let w = &want_tensors[&t.name];
            if w[0] != got[0].as_str() || w[1] != got[1].as_str() {
                differ.push(format!("{}: {got:?} vs llama.cpp {w}", t.name));
            }
        }
        assert!(
            differ.is_empty(),
            "{name}: {} tensors differ from llama.cpp's, e.g. {:?}",
            differ.len(),
            &differ[..differ.len().min(4)]
        );
        let size = std::fs::metadata(&out).unwrap().len();
        assert_eq!(size, want["size"].as_u64().unwrap(), "{name}: file size");
        eprintln!("{name}: {size} bytes, every tensor as llama.cpp writes it");
        std::fs::remove_file(&out).ok();
    }
    std::fs::remove_dir_all(&dir).ok();
}
