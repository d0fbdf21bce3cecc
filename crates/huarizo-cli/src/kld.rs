//! `huarizo kld`: how far a quantized model's next-token distributions are from its base
//! model's over the chunks of a text, reported as llama-perplexity `--kl-divergence` does.

use crate::quality::{load_engine, plan, TextArgs};
use anyhow::{bail, Result};
use huarizo_engine::kld::{KldSummary, KldSums};
use huarizo_engine::Engine;
use serde_json::json;
use std::time::Instant;

/// Flags of `huarizo kld`.
#[derive(clap::Args, Debug)]
pub struct KldArgs {
    /// The base model (GGUF path, Hugging Face folder, `hf:owner/repo[:file]`, or alias).
    pub base: String,
    /// The quantized model, with the same vocabulary.
    pub quant: String,
    #[command(flatten)]
    pub text: TextArgs,
    /// Print one JSON object instead of llama-perplexity's report.
    #[arg(long)]
    pub json: bool,
}

/// Fails unless both models tokenize alike: same vocabulary, same BOS handling.
fn check_same_vocab(args: &KldArgs, base: &Engine, quant: &Engine) -> Result<()> {
    let (tb, tq) = (base.tokenizer(), quant.tokenizer());
    let differ = |what: String| -> Result<()> {
        bail!(
            "{} and {} do not share a vocabulary ({what}); KL divergence compares two \
             quantizations of one model",
            args.base,
            args.quant
        )
    };
    let (nb, nq) = (base.config().n_vocab, quant.config().n_vocab);
    if nb != nq || tb.n_vocab() != tq.n_vocab() {
        return differ(format!(
            "{} vs {} tokens",
            tb.n_vocab().max(nb),
            tq.n_vocab().max(nq)
        ));
    }
    if let Some(id) = (0..tb.n_vocab() as u32).find(|&i| tb.token_bytes(i) != tq.token_bytes(i)) {
        return differ(format!(
            "token {id} is {:?} vs {:?}",
            String::from_utf8_lossy(tb.token_bytes(id)),
            String::from_utf8_lossy(tq.token_bytes(id))
        ));
    }
    if (tb.add_bos(), tb.bos()) != (tq.add_bos(), tq.bos()) {
        return differ("their BOS handling differs".into());
    }
    Ok(())
}

/// `huarizo kld`.
pub fn kld(args: &KldArgs) -> Result<()> {
    let base = load_engine(
        &args.base,
        args.text.threads,
        huarizo_engine::CacheType::F16,
        huarizo_engine::Precision::File,
    )?;
    let quant = args.text.load(&args.quant)?;
    check_same_vocab(args, &base, &quant)?;
    let plan = plan(&base, &args.text)?;
    let n_vocab = base.config().n_vocab;
    let start = Instant::now();
    let mut sums = KldSums::default();
    let mut scratch = [Vec::new(), Vec::new()];
    if !args.json {
        println!(
            "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p"
        );
    }
    for i in 0..plan.n_chunk {
        let lb = base.chunk_logits(&plan, i)?;
        let lq = quant.chunk_logits(&plan, i)?;
        let rows = lb.chunks_exact(n_vocab).zip(lq.chunks_exact(n_vocab));
        for ((b, q), &tok) in rows.zip(plan.targets(i)) {
            sums.add(b, q, tok, &mut scratch);
        }
        if !args.json {
            print_chunk(i, &sums.summary());
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let s = sums.summary();
    if args.json {
        let obj = json!({
            "base": args.base,
            "quant": args.quant,
            "n_ctx": plan.n_ctx,
            "chunks": plan.n_chunk,
            "tokens": s.tokens,
            "ppl_quant": s.ppl_quant,
            "ppl_quant_stderr": s.ppl_quant_stderr,
            "ppl_base": s.ppl_base,
            "ppl_base_stderr": s.ppl_base_stderr,
            "cor_ln_ppl": s.cor_ln_ppl,
            "ln_ppl_ratio": s.ln_ppl_ratio,
            "ln_ppl_ratio_stderr": s.ln_ppl_ratio_stderr,
            "delta_ppl": s.delta_ppl,
            "delta_ppl_stderr": s.delta_ppl_stderr,
            "mean_kld": s.mean_kld,
            "kld_stderr": s.kld_stderr,
            "max_kld": s.max_kld,
            "kld_p99_9": s.kld_p99_9,
            "kld_p99": s.kld_p99,
            "kld_p95": s.kld_p95,
            "kld_p90": s.kld_p90,
            "median_kld": s.median_kld,
            "min_kld": s.min_kld,
            "same_top_p": s.same_top_p,
            "same_top_p_stderr": s.same_top_p_stderr,
            "mean_delta_p": s.mean_delta_p,
            "mean_delta_p_stderr": s.mean_delta_p_stderr,
            "rms_delta_p": s.rms_delta_p,
            "rms_delta_p_stderr": s.rms_delta_p_stderr,
            "max_abs_delta_p": s.max_abs_delta_p,
            "seconds": seconds,
        });
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        print_report(&s);
    }
    eprintln!("{} chunks of two models in {seconds:.1} s", plan.n_chunk);
    Ok(())
}

/// One row of llama-perplexity's running table.
fn print_chunk(i: usize, s: &KldSummary) {
    println!(
        "{:4}    {:9.4} ± {:9.4}    {:10.5} ± {:10.5}    {:10.5} ± {:10.5}    {:6.3} ± {:6.3} %    {:6.3} ± {:6.3} %",
        i + 1,
        s.ppl_quant,
        s.ppl_quant_stderr,
        s.ln_ppl_ratio,
        s.ln_ppl_ratio_stderr,
        s.mean_kld,
        s.kld_stderr,
        100.0 * s.rms_delta_p,
        100.0 * s.rms_delta_p_stderr,
        100.0 * s.same_top_p,
        100.0 * s.same_top_p_stderr
    );
}

/// llama-perplexity's closing statistics.
fn print_report(s: &KldSummary) {
    let ratio = s.ln_ppl_ratio.exp();
    println!();
    println!("====== Perplexity statistics ======");
    println!(
        "Mean PPL(Q)                   : {:10.6} ± {:10.6}",
        s.ppl_quant, s.ppl_quant_stderr
    );
    println!(
        "Mean PPL(base)                : {:10.6} ± {:10.6}",
        s.ppl_base, s.ppl_base_stderr
    );
    println!(
        "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%",
        100.0 * s.cor_ln_ppl
    );
    println!(
        "Mean ln(PPL(Q)/PPL(base))     : {:10.6} ± {:10.6}",
        s.ln_ppl_ratio, s.ln_ppl_ratio_stderr
    );
    println!(
        "Mean PPL(Q)/PPL(base)         : {:10.6} ± {:10.6}",
        ratio,
        ratio * s.ln_ppl_ratio_stderr
    );
    println!(
        "Mean PPL(Q)-PPL(base)         : {:10.6} ± {:10.6}",
        s.delta_ppl, s.delta_ppl_stderr
    );
    println!();
    println!("====== KL divergence statistics ======");
    println!("Mean    KLD: {:10.6} ± {:10.6}", s.mean_kld, s.kld_stderr);
    println!("Maximum KLD: {:10.6}", s.max_kld);
    println!("99.9%   KLD: {:10.6}", s.kld_p99_9);
    println!("99.0%   KLD: {:10.6}", s.kld_p99);
    println!("95.0%   KLD: {:10.6}", s.kld_p95);
    println!("90.0%   KLD: {:10.6}", s.kld_p90);
    println!("Median  KLD: {:10.6}", s.median_kld);
    println!("Minimum KLD: {:10.6}", s.min_kld);
    println!();
    println!("====== Token probability statistics ======");
    println!(
        "Mean    Δp: {:6.3} ± {:5.3} %",
        100.0 * s.mean_delta_p,
        100.0 * s.mean_delta_p_stderr
    );
    println!("Maximum |Δp|: {:6.3}%", 100.0 * s.max_abs_delta_p);
    println!(
        "RMS Δp    : {:6.3} ± {:5.3} %",
        100.0 * s.rms_delta_p,
        100.0 * s.rms_delta_p_stderr
    );
    println!(
        "Same top p: {:6.3} ± {:5.3} %",
        100.0 * s.same_top_p,
        100.0 * s.same_top_p_stderr
    );
}
