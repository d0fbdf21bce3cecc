//! Lineage on real models with known answers: SmolLM2 against its own requantization,
//! a fine-tune stand-in, a permuted and renamed copy (function unchanged), a random
//! re-initialization; and the three real models against each other (never derived).
//! Models come from scripts/fetch-testdata.sh; the edited copies are written here.

use huarizo_engine::requantize::{requantize, RequantizeOptions};
use huarizo_engine::{Engine, EngineOptions, GgmlType, Logits};
use huarizo_lineage::variants::{write_variant, Edit};
use huarizo_lineage::{compare, Options, Report, Verdict};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lineage");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn requantized(src: &Path, name: &str, target: GgmlType) -> PathBuf {
    let out = scratch(name);
    let options = RequantizeOptions::single_type(target, 0).unwrap();
    requantize(src, &out, &options, |_| {}).unwrap();
    out
}

/// SmolLM2's edited copies, written once per test run.
struct Variants {
    q8_0: PathBuf,
    perturbed: PathBuf,
    permuted_renamed: PathBuf,
    reinit: PathBuf,
}

fn variants() -> &'static Variants {
    static V: OnceLock<Variants> = OnceLock::new();
    V.get_or_init(|| {
        let base = huarizo_testdata::file("smollm2.gguf");
        let perturbed = scratch("perturbed.gguf");
        let fine_tune = Edit::Perturb {
            noise: 0.02,
            rank: 8,
            lora: 0.03,
            seed: 1,
        };
        write_variant(&base, &perturbed, &fine_tune).unwrap();
        let permuted = scratch("permuted.gguf");
        write_variant(&base, &permuted, &Edit::Permute { seed: 2 }).unwrap();
        let permuted_renamed = scratch("permuted-renamed.gguf");
        write_variant(&permuted, &permuted_renamed, &yi_renames()).unwrap();
        let reinit = scratch("reinit.gguf");
        write_variant(&base, &reinit, &Edit::Reinit { seed: 3 }).unwrap();
        Variants {
            q8_0: requantized(&base, "q8_0.gguf", GgmlType::Q8_0),
            perturbed,
            permuted_renamed,
            reinit,
        }
    })
}

fn yi_renames() -> Edit {
    Edit::Rename(vec![
        ("attn_norm".into(), "ln1".into()),
        ("ffn_norm".into(), "ln2".into()),
    ])
}

fn lineage(a: &Path, b: &Path) -> Report {
    let options = Options {
        threads: 0,
        progress: false,
        behaviour: false,
    };
    let r = compare(a, b, &options).unwrap();
    eprintln!("{}", r.to_text());
    r
}

#[test]
fn a_requantized_copy_has_the_same_weights() {
    let r = lineage(&huarizo_testdata::file("smollm2.gguf"), &variants().q8_0);
    assert_eq!(r.verdict.verdict, Verdict::SameWeights);
    assert!(r.verdict.confidence >= 0.99);
}

#[test]
fn a_fine_tuned_copy_is_derived() {
    let r = lineage(
        &huarizo_testdata::file("smollm2.gguf"),
        &variants().perturbed,
    );
    assert_eq!(r.verdict.verdict, Verdict::Derived);
    let w = r.weights.as_ref().unwrap();
    assert!(w.mean_cosine > 0.99, "cosine {}", w.mean_cosine);
    assert!(
        w.within_quantization_fraction < 0.5,
        "the values were changed"
    );
}

#[test]
fn a_permuted_and_renamed_copy_is_derived_and_the_renames_are_listed() {
    let r = lineage(
        &huarizo_testdata::file("smollm2.gguf"),
        &variants().permuted_renamed,
    );
    assert_eq!(r.verdict.verdict, Verdict::Derived);
    // The direct comparison is fooled by the permutations; the invariants are not.
    assert!(r.weights.as_ref().unwrap().mean_cosine < DIRECT_LIMIT);
    let inv = r.invariants.as_ref().unwrap();
    assert!(inv.similarity > 0.999, "{}", inv.similarity);
    let renames: Vec<(&str, &str, usize)> = r
        .graph
        .renames
        .iter()
        .map(|x| (x.from.as_str(), x.to.as_str(), x.count))
        .collect();
    assert_eq!(
        renames,
        [
            ("blk.*.attn_norm.weight", "blk.*.ln1.weight", 30),
            ("blk.*.ffn_norm.weight", "blk.*.ln2.weight", 30)
        ]
    );
}

const DIRECT_LIMIT: f64 = huarizo_lineage::verdict::DERIVED_COSINE;

#[test]
fn permuting_heads_and_neurons_keeps_the_function() {
    // In f32 every MLP neuron can move on its own (no quantization blocks to keep), and
    // no activation is rounded to 8 bits, so the outputs agree to float rounding (sums
    // run in another order; the f16 KV cache can round a value one ulp apart).
    let f32_base = requantized(
        &huarizo_testdata::file("smollm2.gguf"),
        "f32.gguf",
        GgmlType::F32,
    );
    let f32_permuted = scratch("f32-permuted.gguf");
    write_variant(&f32_base, &f32_permuted, &Edit::Permute { seed: 5 }).unwrap();
    let options = EngineOptions {
        n_threads: 0,
        ..Default::default()
    };
    let a = Engine::load(&f32_base, &options).unwrap();
    let b = Engine::load(&f32_permuted, &options).unwrap();
    let tokens = a.tokenizer().encode(
        "The history of the city begins in the early middle ages.",
        true,
        false,
    );
    let run = |e: &Engine| {
        let mut state = e.new_state(64);
        e.forward(&mut state, &tokens, Logits::All)
            .unwrap()
            .to_vec()
    };
    let (la, lb) = (run(&a), run(&b));
    let max_diff = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let scale = la.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(
        max_diff < 1e-3 * scale,
        "logits differ by {max_diff} (of {scale})"
    );
    let vocab = a.config().n_vocab;
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
            .0
    };
    for (pa, pb) in la.chunks_exact(vocab).zip(lb.chunks_exact(vocab)) {
        assert_eq!(argmax(pa), argmax(pb), "the greedy token changed");
    }
    // And the weights really moved.
    let r = lineage(&f32_base, &f32_permuted);
    assert!(r.weights.as_ref().unwrap().mean_cosine < DIRECT_LIMIT);
    assert_eq!(r.verdict.verdict, Verdict::Derived);
}

#[test]
fn random_weights_in_the_same_architecture_are_independent() {
    let r = lineage(&huarizo_testdata::file("smollm2.gguf"), &variants().reinit);
    assert_eq!(r.verdict.verdict, Verdict::SameArchitecture);
    assert!(r.invariants.as_ref().unwrap().p_value > 0.01);
}

#[test]
fn different_real_models_are_never_derived() {
    for (a, b) in [
        ("qwen.gguf", "smollm2.gguf"),
        ("gemma3.gguf", "smollm2.gguf"),
        ("gemma3.gguf", "qwen.gguf"),
    ] {
        let r = lineage(&huarizo_testdata::file(a), &huarizo_testdata::file(b));
        assert_eq!(r.verdict.verdict, Verdict::Unrelated, "{a} vs {b}");
        assert!(!r.architecture.same_architecture);
        // What is shared is reported.
        assert!(
            r.architecture.summary.contains("shared:"),
            "{}",
            r.architecture.summary
        );
    }
}

#[test]
fn a_truncated_file_is_a_clear_error() {
    let bytes = std::fs::read(huarizo_testdata::file("smollm2.gguf")).unwrap();
    let cut = scratch("truncated.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let options = Options {
        progress: false,
        ..Options::default()
    };
    let err = compare(&huarizo_testdata::file("smollm2.gguf"), &cut, &options)
        .expect_err("a truncated file is an error");
    let msg = err.to_string();
    assert!(msg.contains("truncated.gguf"), "{msg}");
}
