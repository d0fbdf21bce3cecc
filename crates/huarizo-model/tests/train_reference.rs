//! huarizo's training loss and LoRA gradients against PyTorch autograd (transformers +
//! peft), from the references scripts/ref_torch_train.py wrote into
//! tests/reference/train/: three small random models (llama, qwen2, gemma3, read through
//! huarizo's Hugging Face loader) and SmolLM2-135M-Instruct Q4_1 (dequantized).

use huarizo_formats::SafetensorsFile;
use huarizo_model::train::{
    hf_row_order, LoraAdapter, LoraConfig, LoraTarget, LoraTensor, TrainSeq,
};
use huarizo_model::{Model, ThreadPool};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/train")
}

/// The adapter values both sides compute (see the script's `adapter_value`).
fn adapter_value(layer: usize, target: usize, which: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = 0.37 * i as f64 + 1.1 * layer as f64 + 2.3 * target as f64 + 0.5 * which as f64;
            (0.05 * x.sin()) as f32
        })
        .collect()
}

/// The batch of a reference case: (tokens, labels) per sequence.
fn sequences(meta: &Value) -> Vec<(Vec<u32>, Vec<i32>)> {
    let ints = |s: &Value, k: &str| -> Vec<i64> {
        s[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    meta["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                ints(s, "tokens").into_iter().map(|t| t as u32).collect(),
                ints(s, "labels").into_iter().map(|t| t as i32).collect(),
            )
        })
        .collect()
}

fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    let diff: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|b| f64::from(*b).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

/// Runs one case; returns (loss relative error, worst per-tensor gradient relative error,
/// whole-gradient relative error).
fn check_case(case: &str, model: &Model) -> (f64, f64, f64) {
    let dir = reference_dir();
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{case}.json"))).unwrap()).unwrap();
    let rank = meta["rank"].as_u64().unwrap() as usize;
    let alpha = meta["alpha"].as_f64().unwrap() as f32;
    let targets: Vec<LoraTarget> = meta["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| LoraTarget::parse(t.as_str().unwrap()).unwrap())
        .collect();
    let c = &model.config;
    let mut tensors = Vec::new();
    for layer in 0..c.n_layer {
        for &target in &targets {
            let (n_in, n_out) = target.shape(c);
            tensors.push(LoraTensor {
                layer,
                target,
                n_in,
                n_out,
                a: adapter_value(layer, target.index(), 0, rank * n_in),
                // PyTorch's B is in Hugging Face row order; huarizo's in GGUF order.
                b: hf_row_order(
                    c,
                    target,
                    &adapter_value(layer, target.index(), 1, n_out * rank),
                    false,
                ),
            });
        }
    }
    let adapter = LoraAdapter {
        config: LoraConfig {
            rank,
            alpha,
            dropout: 0.0,
            targets,
        },
        tensors,
    };
    let seqs = sequences(&meta);
    let batch: Vec<TrainSeq<'_>> = seqs
        .iter()
        .map(|(t, l)| TrainSeq {
            tokens: t,
            labels: l,
        })
        .collect();
    let pool = ThreadPool::new(2);
    let mut grads = adapter.zero_grads();
    let loss = model
        .lora_backward(&pool, &adapter, &batch, &mut grads, 0)
        .unwrap();
    let eval = model.train_loss(&pool, Some(&adapter), &batch).unwrap();
    assert_eq!(
        eval, loss,
        "{case}: the loss-only pass computes the same loss"
    );
    let want_loss = meta["loss_sum"].as_f64().unwrap();
    let loss_err = (loss.loss_sum - want_loss).abs() / want_loss.abs();
    let want = SafetensorsFile::open(&dir.join(format!("{case}.safetensors"))).unwrap();
    let read = |name: &str| -> Vec<f32> {
        let t = want
            .tensors()
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{case}: no reference tensor {name}"));
        want.data(t)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let (mut worst, mut all_got, mut all_want) = (0.0f64, Vec::new(), Vec::new());
    for (i, t) in adapter.tensors.iter().enumerate() {
        let name = format!("blk.{}.{}", t.layer, t.target.gguf_name());
        let grad_b = hf_row_order(&model.config, t.target, &grads.b[i], true);
        for (which, got) in [("grad_a", &grads.a[i]), ("grad_b", &grad_b)] {
            let reference = read(&format!("{name}.{which}"));
            assert_eq!(reference.len(), got.len(), "{case}: {name}.{which} size");
            let err = relative_error(got, &reference);
            if err > 1e-3 {
                eprintln!("{case}: {name}.{which}: relative error {err:.2e}");
            }
            worst = worst.max(err);
            all_got.extend_from_slice(got);
            all_want.extend_from_slice(&reference);
        }
    }
    let whole = relative_error(&all_got, &all_want);
    eprintln!(
        "{case}: loss {:.6} vs {want_loss:.6} (rel {loss_err:.2e}) over {} labels; gradients: \
         whole rel {whole:.2e}, worst tensor {worst:.2e}",
        loss.loss_sum, loss.n_labels
    );
    (loss_err, worst, whole)
}

#[test]
fn tiny_models_loss_and_lora_gradients_equal_pytorch_autograd() {
    for case in ["tiny_llama", "tiny_qwen2", "tiny_gemma3"] {
        let file = huarizo_model::hf::open_folder(&reference_dir().join(case), Vec::new())
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let model = Model::from_gguf(file).unwrap();
        // Once keeping every block's activations, once recomputing them (a budget of 0).
        for budget in [None, Some("0")] {
            if let Some(b) = budget {
                std::env::set_var("HUARIZO_TRAIN_MEMORY_MB", b);
            }
            let (loss_err, worst, _) = check_case(case, &model);
            assert!(
                loss_err <= 1e-5,
                "{case}: loss relative error {loss_err:.2e}"
            );
            assert!(worst <= 1e-3, "{case}: gradient relative error {worst:.2e}");
            std::env::remove_var("HUARIZO_TRAIN_MEMORY_MB");
        }
    }
}

#[test]
fn smollm2_loss_and_lora_gradients_equal_pytorch_autograd() {
    let model = Model::load(&huarizo_testdata::file("smollm2.gguf")).unwrap();
    let (loss_err, worst, whole) = check_case("smollm2", &model);
    assert!(loss_err <= 1e-4, "loss relative error {loss_err:.2e}");
    assert!(whole <= 1e-3, "whole-gradient relative error {whole:.2e}");
    assert!(worst <= 1e-3, "worst tensor's relative error {worst:.2e}");
}

#[test]
fn tiny_models_gradients_of_every_weight_equal_pytorch_autograd() {
    use huarizo_model::train::FullParams;
    for case in ["tiny_llama", "tiny_qwen2", "tiny_gemma3"] {
        let file = huarizo_model::hf::open_folder(&reference_dir().join(case), Vec::new()).unwrap();
        let model = Model::from_gguf(file).unwrap();
        let dir = reference_dir();
        let full = format!("{case}_full");
        let meta: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{full}.json"))).unwrap())
                .unwrap();
        let seqs = sequences(&meta);
        let batch: Vec<TrainSeq<'_>> = seqs
            .iter()
            .map(|(t, l)| TrainSeq {
                tokens: t,
                labels: l,
            })
            .collect();
        let params = FullParams::from_model(&model).unwrap();
        let mut grads = params.zero_grads();
        let pool = ThreadPool::new(2);
        let loss = model
            .full_backward(&pool, &params, &batch, &mut grads)
            .unwrap();
        assert_eq!(model.full_loss(&pool, &params, &batch).unwrap(), loss);
        let want_loss = meta["loss_sum"].as_f64().unwrap();
        let loss_err = (loss.loss_sum - want_loss).abs() / want_loss;
        let want = SafetensorsFile::open(&dir.join(format!("{full}.safetensors"))).unwrap();
        let mut worst = (0.0f64, String::new());
        for (t, g) in params.tensors.iter().zip(&grads.values) {
            let info = want
                .tensors()
                .iter()
                .find(|i| i.name == format!("{}.grad", t.name))
                .unwrap_or_else(|| panic!("{case}: no reference gradient for {}", t.name));
            let reference: Vec<f32> = want
                .data(info)
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            // q/k rows are in GGUF order here, Hugging Face order there (LLaMA).
            let target = ["attn_q.weight", "attn_k.weight"]
                .iter()
                .position(|s| t.name.ends_with(s))
                .map(|i| [LoraTarget::Q, LoraTarget::K][i]);
            let got = match target {
                Some(tg) => hf_row_order(&model.config, tg, g, true),
                None => g.clone(),
            };
            let err = relative_error(&got, &reference);
            if err > worst.0 {
                worst = (err, t.name.clone());
            }
        }
        eprintln!(
            "{case} (every weight, {} tensors): loss rel {loss_err:.2e}; worst gradient rel \
             {:.2e} ({})",
            params.tensors.len(),
            worst.0,
            worst.1
        );
        assert!(
            loss_err <= 1e-5,
            "{case}: loss relative error {loss_err:.2e}"
        );
        assert!(
            worst.0 <= 1e-3,
            "{case}: {} gradient relative error {:.2e}",
            worst.1,
            worst.0
        );
    }
}
