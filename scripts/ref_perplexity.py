#!/usr/bin/env python3
"""Regenerates tests/reference/quality_smollm2.json: llama.cpp's perplexity of a model
over a text, and the KL-divergence statistics of a second model against it, computed
with llama-perplexity's method through llama-cpp-python (keep it out of CI).

    PYTHONPATH=/work/llvenv/lib/python3.11/site-packages python scripts/ref_perplexity.py \\
        --base ~/.cache/huarizo/testdata/smollm2.gguf --quant /tmp/smollm2-q8_0.gguf \\
        --text tests/quality/lighthouse.txt --ctx 256 -o tests/reference/quality_smollm2.json

(the quantized model made by `huarizo quantize smollm2.gguf /tmp/smollm2-q8_0.gguf q8_0`).

Method (tools/perplexity/perplexity.cpp): tokenize the whole text with the model's
special tokens (BOS when the model adds it), cut it into n_tokens // ctx chunks, replace
each chunk's first token by BOS when the model adds BOS, evaluate each chunk from an
empty cache, and score positions ctx//2 .. ctx-2 on the token that follows. The final
uncertainty is ppl * sqrt(var(nll) / (n - 1)). KL divergence is computed exactly from
the log-softmax of both models' logits in float64 (llama.cpp stores the base
log-probabilities in 16 bits; the difference is ~1e-5 in the mean).
"""
import argparse
import json
import math

import llama_cpp
import numpy as np


def load(path, ctx):
    return llama_cpp.Llama(model_path=path, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx,
                           logits_all=True, n_threads=2, verbose=False)


def chunk_logits(llm, chunk, ctx):
    """(S, V) float32 logits of the scored positions ctx//2 .. ctx-2."""
    llm.reset()
    llm.eval(chunk)
    first = ctx // 2
    return np.array(llm.scores[first:ctx - 1], dtype=np.float32)


def log_softmax(logits):
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def mean_and_stderr(values):
    n = len(values)
    mean = float(np.mean(values))
    var = float(np.mean(np.square(values))) - mean * mean
    return mean, (math.sqrt(var / (n - 1)) if var > 0 and n > 10 else 0.0)


def percentile(sorted_values, fraction):
    p = fraction * (len(sorted_values) - 1)
    ip = int(p)
    frac = p - ip
    nxt = sorted_values[min(ip + 1, len(sorted_values) - 1)]
    return float((1 - frac) * sorted_values[ip] + frac * nxt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--quant", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    ctx = args.ctx

    base = load(args.base, ctx)
    quant = load(args.quant, ctx)
    text = open(args.text, encoding="utf-8").read()
    tokens = base.tokenize(text.encode(), add_bos=True, special=False)
    assert tokens == quant.tokenize(text.encode(), add_bos=True, special=False)
    add_bos = tokens[0] == base.token_bos()
    n_chunk = len(tokens) // ctx
    assert n_chunk >= 2, f"{len(tokens)} tokens is too short for ctx {ctx}"
    first = ctx // 2

    nll_b, nll_q, klds, dps, same_top, running = [], [], [], [], 0, []
    for i in range(n_chunk):
        chunk = tokens[i * ctx:(i + 1) * ctx]
        if add_bos:
            chunk[0] = base.token_bos()
        targets = np.array(tokens[i * ctx + first + 1:(i + 1) * ctx])
        lp_b = log_softmax(chunk_logits(base, chunk, ctx))
        lp_q = log_softmax(chunk_logits(quant, chunk, ctx))
        rows = np.arange(len(targets))
        nb, nq = -lp_b[rows, targets], -lp_q[rows, targets]
        nll_b.extend(nb)
        nll_q.extend(nq)
        klds.extend((np.exp(lp_b) * (lp_b - lp_q)).sum(axis=-1))
        dps.extend(np.exp(-nq) - np.exp(-nb))
        same_top += int((lp_b.argmax(axis=-1) == lp_q.argmax(axis=-1)).sum())
        running.append(math.exp(float(np.mean(nll_b))))
        print(f"[{i + 1}]{running[-1]:.4f},", end="", flush=True)
    print()

    nll_b, nll_q = np.array(nll_b), np.array(nll_q)
    n = len(nll_b)
    mean = float(nll_b.mean())
    var = float(np.mean(nll_b ** 2)) - mean * mean
    ppl = math.exp(mean)
    ppl_err = ppl * math.sqrt(var / (n - 1))
    print(f"Final estimate: PPL = {ppl:.4f} +/- {ppl_err:.5f}")

    kld_sorted = np.sort(np.array(klds))
    mean_kld, kld_err = mean_and_stderr(np.array(klds))
    lq, _ = mean_and_stderr(nll_q)
    lb, _ = mean_and_stderr(nll_b)
    dps = np.array(dps)
    top = same_top / n
    result = {
        "model": args.base.split("/")[-1],
        "quant": args.quant.split("/")[-1],
        "text": args.text,
        "n_ctx": ctx,
        "chunks": n_chunk,
        "tokens": len(tokens),
        "scored_tokens": n,
        "ppl": ppl,
        "ppl_stderr": ppl_err,
        "running_ppl": running,
        "kld": {
            "ppl_base": math.exp(lb),
            "ppl_quant": math.exp(lq),
            "ln_ppl_ratio": lq - lb,
            "mean_kld": mean_kld,
            "kld_stderr": kld_err,
            "max_kld": float(kld_sorted[-1]),
            "kld_p99_9": percentile(kld_sorted, 0.999),
            "kld_p99": percentile(kld_sorted, 0.99),
            "median_kld": float(np.median(kld_sorted)),
            "same_top_p": top,
            "rms_delta_p": float(math.sqrt(np.mean(dps ** 2))),
        },
        "llama_cpp_python": llama_cpp.__version__,
        "ggml_isa": "avx512" if "AVX512 = 1" in llama_cpp.llama_print_system_info().decode() else "avx2",
    }
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps(result["kld"], indent=1))


if __name__ == "__main__":
    main()
