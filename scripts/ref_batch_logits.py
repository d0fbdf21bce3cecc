#!/usr/bin/env python3
"""Writes tests/reference/<name>_batch.<isa>.json: llama.cpp's logits for the first
`ctx` tokens of a text evaluated as one batch (one ubatch, as llama-perplexity does), for
each of the given sizes, as the top-5 (id, logit) pairs of every position (keep it out of
CI).

    PYTHONPATH=/work/llvenv/lib/python3.11/site-packages python scripts/ref_batch_logits.py \\
        ~/.cache/huarizo/testdata/gemma3.gguf gemma3 tests/quality/lighthouse.txt 64 256

The tokens are llama-perplexity's first chunk: the first `ctx` tokens of the text
tokenized with BOS when the model adds it.
"""
import json
import sys

import llama_cpp
import numpy as np


def main():
    path, name, text_path = sys.argv[1:4]
    sizes = [int(s) for s in sys.argv[4:]]
    text = open(text_path, encoding="utf-8").read()
    batches = []
    for ctx in sizes:
        llm = llama_cpp.Llama(model_path=path, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx,
                              logits_all=True, n_threads=2, verbose=False)
        tokens = llm.tokenize(text.encode(), add_bos=True, special=False)[:ctx]
        llm.reset()
        llm.eval(tokens)
        scores = np.array(llm.scores[:ctx], dtype=np.float32)
        top5 = []
        for row in scores:
            ids = np.argsort(-row, kind="stable")[:5]
            top5.append([[int(i), float(row[i])] for i in ids])
        batches.append({"n_tokens": ctx, "tokens": tokens, "top5": top5})
        del llm
    isa = "avx512" if "AVX512 = 1" in llama_cpp.llama_print_system_info().decode() else "avx2"
    out = {
        "model": path.split("/")[-1],
        "text": text_path,
        "llama_cpp_python": llama_cpp.__version__,
        "ggml_isa": isa,
        "batches": batches,
    }
    dest = f"tests/reference/{name}_batch.{isa}.json"
    with open(dest, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print(dest)


if __name__ == "__main__":
    main()
