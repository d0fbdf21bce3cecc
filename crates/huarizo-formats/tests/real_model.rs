//! The real SmolLM2 file fetched by scripts/fetch-testdata.sh.

use huarizo_formats::{GgmlType, GgufFile, Value};

#[test]
fn smollm2() {
    let f =
        GgufFile::open(&huarizo_testdata::file("smollm2.gguf")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.tensors().len(), 272);
    assert_eq!(
        f.get("general.architecture").and_then(Value::as_str),
        Some("llama")
    );
    assert_eq!(f.get("llama.block_count").and_then(Value::as_u64), Some(30));

    let emb = f.tensor("token_embd.weight").expect("token_embd.weight");
    assert_eq!(emb.ggml_type, GgmlType::Q8_0);
    assert_eq!(emb.shape, [576, 49152]);
    assert_eq!(emb.n_bytes, 576 / 32 * 34 * 49152);
    assert_eq!(f.tensor_data(emb).len(), emb.n_bytes);

    let tokens = f
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .expect("tokenizer.ggml.tokens is an array");
    assert_eq!(tokens.len(), 49152);
    assert!(tokens.iter().all(|t| t.as_str().is_some()));

    // Every tensor's data lies inside the file, aligned.
    for t in f.tensors() {
        assert_eq!(t.offset % f.alignment(), 0, "{}", t.name);
        assert_eq!(f.tensor_data(t).len(), t.n_bytes);
    }
}

/// The other fetched models parse too, and every tensor slice has its declared length.
#[test]
fn other_testdata_models_open() {
    for name in ["gemma3.gguf", "qwen.gguf"] {
        let f = GgufFile::open(&huarizo_testdata::file(name)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!f.tensors().is_empty(), "{name}");
        assert!(f
            .get("general.architecture")
            .and_then(Value::as_str)
            .is_some());
        for t in f.tensors() {
            assert_eq!(f.tensor_data(t).len(), t.n_bytes, "{name}: {}", t.name);
        }
        let mut types: Vec<&str> = f.tensors().iter().map(|t| t.ggml_type.name()).collect();
        types.sort();
        types.dedup();
        println!(
            "{name}: v{} {} tensors, {} keys, types {types:?}",
            f.version(),
            f.tensors().len(),
            f.metadata().len()
        );
    }
}
