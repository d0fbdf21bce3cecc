//! Hugging Face checkpoint folders built here in miniature (one layer, width 8): a good one
//! loads and runs, with LLaMA's q/k rows permuted and Gemma's norms stored as 1 + w; bad
//! ones (a config missing a key, a misshapen, missing, unknown or misplaced tensor) fail
//! with an error naming the file and the key or tensor.

use huarizo_formats::{write_safetensors, GgmlType, SafeTensorOut, WriteError};
use huarizo_model::hf::open_folder;
use huarizo_model::{Logits, Model, State, ThreadPool};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("huarizo-hf-folder-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// (name, PyTorch shape) of a one-layer LLaMA of width 8, 2 heads of 4, 1 KV head.
fn llama_tensors() -> Vec<(String, Vec<u64>)> {
    let l = |s: &str| format!("model.layers.0.{s}");
    vec![
        ("model.embed_tokens.weight".into(), vec![16, 8]),
        (l("input_layernorm.weight"), vec![8]),
        (l("self_attn.q_proj.weight"), vec![8, 8]),
        (l("self_attn.k_proj.weight"), vec![4, 8]),
        (l("self_attn.v_proj.weight"), vec![4, 8]),
        (l("self_attn.o_proj.weight"), vec![8, 8]),
        (l("post_attention_layernorm.weight"), vec![8]),
        (l("mlp.gate_proj.weight"), vec![16, 8]),
        (l("mlp.up_proj.weight"), vec![16, 8]),
        (l("mlp.down_proj.weight"), vec![8, 16]),
        ("model.norm.weight".into(), vec![8]),
    ]
}

fn llama_config() -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64,
        "hidden_act": "silu", "tie_word_embeddings": true
    })
}

/// Element k of tensor i: distinct, small values.
fn value(i: usize, k: usize) -> f32 {
    ((i * 31 + k * 7) % 17) as f32 / 17.0 - 0.5
}

/// Writes `tensors` (F32) into `file` of `dir`.
fn write_tensors(dir: &Path, file: &str, tensors: &[(String, Vec<u64>)]) {
    let outs: Vec<SafeTensorOut> = tensors
        .iter()
        .map(|(name, shape)| SafeTensorOut {
            name: name.clone(),
            dtype: GgmlType::F32,
            shape: shape.clone(),
        })
        .collect();
    write_safetensors::<WriteError>(&dir.join(file), &outs, &BTreeMap::new(), |i, buf| {
        let n = outs[i].n_bytes() / 4;
        buf.extend((0..n).flat_map(|k| value(i, k).to_le_bytes()));
        Ok(())
    })
    .unwrap();
}

fn folder(tag: &str, config: &serde_json::Value, tensors: &[(String, Vec<u64>)]) -> PathBuf {
    let dir = tmp(tag);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    write_tensors(&dir, "model.safetensors", tensors);
    dir
}

fn open_err(dir: &Path) -> String {
    match open_folder(dir, Vec::new()) {
        Ok(_) => panic!("{} should not load", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn good_llama_folder_loads_runs_and_permutes_q_k() {
    let dir = folder("good", &llama_config(), &llama_tensors());
    let file = open_folder(&dir, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    // q_proj rows (2 heads of 4): HF row h·4 + j·2 + i becomes GGUF row h·4 + 2i + j.
    let q = file.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.shape, vec![8, 8]);
    let data = file.tensor_data(q);
    let row = |r: usize| -> Vec<f32> {
        data[r * 32..(r + 1) * 32]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let hf_row = |r: usize| -> Vec<f32> { (0..8).map(|c| value(2, r * 8 + c)).collect() };
    for (gguf, hf) in [(0, 0), (1, 2), (2, 1), (3, 3), (5, 6), (6, 5)] {
        assert_eq!(row(gguf), hf_row(hf), "GGUF row {gguf} is HF row {hf}");
    }
    // The norm is read in place, unchanged.
    let norm = file.tensor("blk.0.attn_norm.weight").unwrap();
    assert_eq!(file.tensor_data(norm)[..4], value(1, 0).to_le_bytes());

    let model = Model::from_gguf(file).unwrap_or_else(|e| panic!("{e}"));
    let pool = ThreadPool::new(1);
    let mut state = State::new(&model.config, 8);
    let logits = model
        .forward(&pool, &mut state, &[1, 2, 3], Logits::All)
        .unwrap();
    assert_eq!(logits.len(), 3 * 16);
    assert!(logits.iter().all(|v| v.is_finite()));
}

#[test]
fn gemma_norms_are_stored_plus_one() {
    let l = |s: &str| format!("model.layers.0.{s}");
    let mut tensors = llama_tensors();
    tensors.retain(|(n, _)| !n.ends_with("post_attention_layernorm.weight"));
    for n in ["self_attn.q_norm.weight", "self_attn.k_norm.weight"] {
        tensors.push((l(n), vec![4]));
    }
    for n in [
        "post_attention_layernorm.weight",
        "pre_feedforward_layernorm.weight",
        "post_feedforward_layernorm.weight",
    ] {
        tensors.push((l(n), vec![8]));
    }
    let mut config = llama_config();
    config["architectures"] = json!(["Gemma3ForCausalLM"]);
    config["model_type"] = json!("gemma3_text");
    config["head_dim"] = json!(4);
    config["hidden_act"] = json!(null);
    config["hidden_activation"] = json!("gelu_pytorch_tanh");
    config["sliding_window"] = json!(16);
    config["query_pre_attn_scalar"] = json!(4);
    let dir = folder("gemma", &config, &tensors);
    let file = open_folder(&dir, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let idx = tensors
        .iter()
        .position(|(n, _)| n.ends_with("pre_feedforward_layernorm.weight"))
        .unwrap();
    let t = file.tensor("blk.0.ffn_norm.weight").unwrap();
    assert_eq!(t.ggml_type, GgmlType::F32);
    assert_eq!(
        file.tensor_data(t)[..4],
        (1.0 + value(idx, 0)).to_le_bytes()
    );
    Model::from_gguf(file).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn config_missing_a_key_names_file_and_key() {
    let mut config = llama_config();
    config.as_object_mut().unwrap().remove("num_hidden_layers");
    let dir = folder("nokey", &config, &llama_tensors());
    let e = open_err(&dir);
    assert!(
        e.contains("config.json") && e.contains("num_hidden_layers") && e.contains("missing"),
        "{e}"
    );

    let mut config = llama_config();
    config["hidden_size"] = json!("eight");
    let dir = folder("badkey", &config, &llama_tensors());
    let e = open_err(&dir);
    assert!(
        e.contains("config.json") && e.contains("hidden_size"),
        "{e}"
    );

    let mut config = llama_config();
    config["architectures"] = json!(["BertModel"]);
    config["model_type"] = json!("bert");
    let e = open_err(&folder("arch", &config, &llama_tensors()));
    assert!(
        e.contains("BertModel") && e.contains("not supported"),
        "{e}"
    );

    let mut config = llama_config();
    config["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
    let e = open_err(&folder("rope", &config, &llama_tensors()));
    assert!(e.contains("rope_scaling") && e.contains("yarn"), "{e}");
}

#[test]
fn bad_tensors_name_file_and_tensor() {
    // Mismatched shape.
    let mut tensors = llama_tensors();
    tensors[3].1 = vec![6, 8];
    let e = open_err(&folder("shape", &llama_config(), &tensors));
    assert!(
        e.contains("model.safetensors")
            && e.contains("model.layers.0.self_attn.k_proj.weight")
            && e.contains("[6, 8]")
            && e.contains("[4, 8]"),
        "{e}"
    );
    // Missing tensor.
    let mut tensors = llama_tensors();
    tensors.retain(|(n, _)| !n.contains("mlp.up_proj"));
    let e = open_err(&folder("missing", &llama_config(), &tensors));
    assert!(
        e.contains("model.layers.0.mlp.up_proj.weight") && e.contains("missing"),
        "{e}"
    );
    // Unknown tensor.
    let mut tensors = llama_tensors();
    tensors.push(("model.layers.0.self_attn.rope_scale".into(), vec![1]));
    let e = open_err(&folder("unknown", &llama_config(), &tensors));
    assert!(e.contains("model.layers.0.self_attn.rope_scale"), "{e}");
    // A layer beyond num_hidden_layers.
    let mut tensors = llama_tensors();
    tensors.push(("model.layers.1.input_layernorm.weight".into(), vec![8]));
    let e = open_err(&folder("extra", &llama_config(), &tensors));
    assert!(
        e.contains("model.layers.1.input_layernorm.weight") && e.contains("not used"),
        "{e}"
    );
    // A safetensors header that lies about offsets.
    let dir = folder("lying", &llama_config(), &llama_tensors());
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    bytes.truncate(len - 4);
    std::fs::write(&path, bytes).unwrap();
    let e = open_err(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("model.norm.weight"),
        "{e}"
    );
}

#[test]
fn index_must_tell_the_truth() {
    let dir = tmp("index");
    std::fs::write(dir.join("config.json"), llama_config().to_string()).unwrap();
    let tensors = llama_tensors();
    let (a, b) = tensors.split_at(5);
    write_tensors(&dir, "model-00001-of-00002.safetensors", a);
    write_tensors(&dir, "model-00002-of-00002.safetensors", b);
    let mut map = serde_json::Map::new();
    for (n, _) in a {
        map.insert(n.clone(), json!("model-00001-of-00002.safetensors"));
    }
    for (n, _) in b {
        map.insert(n.clone(), json!("model-00002-of-00002.safetensors"));
    }
    let write_index = |map: &serde_json::Map<String, serde_json::Value>| {
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            json!({"metadata": {}, "weight_map": map}).to_string(),
        )
        .unwrap()
    };
    write_index(&map);
    open_folder(&dir, Vec::new()).unwrap_or_else(|e| panic!("{e}"));

    // The index places a tensor in the wrong shard.
    let mut lying = map.clone();
    lying.insert(
        "model.norm.weight".into(),
        json!("model-00001-of-00002.safetensors"),
    );
    write_index(&lying);
    let e = open_err(&dir);
    assert!(
        e.contains("model.norm.weight") && e.contains("lists it"),
        "{e}"
    );

    // The index names a shard outside the folder.
    let mut escaping = map.clone();
    escaping.insert("model.norm.weight".into(), json!("../x.safetensors"));
    write_index(&escaping);
    let e = open_err(&dir);
    assert!(
        e.contains("model.safetensors.index.json") && e.contains("model.norm.weight"),
        "{e}"
    );
}
