#!/usr/bin/env python3
"""Writes tests/reference/<model>.transformers.json: Hugging Face transformers' greedy
continuations of the llama.cpp reference prompts (tests/reference/<model>.json), for the
full-precision path (`--precision f32`) to be checked against, the same way the default
path is checked against llama.cpp (crates/huarizo-model/tests/llama_cpp_reference.rs).

    /work/torchvenv/bin/python scripts/ref_transformers.py ~/.cache/huarizo/testdata/smollm2.gguf smollm2

The GGUF file is exported with `huarizo convert -m FILE --to hf DIR` (F32 weights: the
file's weights dequantized, bit for bit), loaded in float32 with eager attention, and
fed the reference's own prompt token ids. Each of the 32 steps keeps the argmax token and
the top-5 (id, logit) pairs, as scripts/ref_llama_cpp.py does. Needs torch and
transformers (tested with torch 2.15, transformers 5.25, on the CPU).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM

N_GEN = 32


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("name")
    ap.add_argument("--huarizo", default="target/release/huarizo")
    args = ap.parse_args()
    torch.manual_seed(0)
    with open(f"tests/reference/{args.name}.json") as f:
        prompts = [(r["prompt"], r["prompt_tokens"]) for r in json.load(f)["records"]]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, args.name)
        subprocess.run([args.huarizo, "convert", "-m", args.gguf, "--to", "hf", folder],
                       check=True, capture_output=True)
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, attn_implementation="eager")
        model.eval()
        for text, ids in prompts:
            tokens, top5 = [], []
            with torch.no_grad():
                out = model(torch.tensor([ids]), use_cache=True)
                for _ in range(N_GEN):
                    row = out.logits[0, -1].float()
                    top = torch.topk(row, 5)
                    top5.append([[int(i), float(v)] for v, i in zip(top.values, top.indices)])
                    nxt = int(top.indices[0])
                    tokens.append(nxt)
                    out = model(torch.tensor([[nxt]]), past_key_values=out.past_key_values,
                                use_cache=True)
            records.append({"prompt": text, "prompt_tokens": ids, "tokens": tokens,
                            "top5": top5})
            print(f"{args.name}: {text!r}: {tokens[:16]}", file=sys.stderr)
    result = {
        "model": args.name,
        # The order huarizo sums its f32 dot products in when checked against this file
        # (transformers' own order is its BLAS's; no ggml build made this reference).
        "ggml_isa": "avx512",
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, "
                     "float32, eager attention, on `huarizo convert --to hf` (F32) of the "
                     "GGUF file; greedy with its KV cache, one token per step",
        "records": records,
    }
    path = f"tests/reference/{args.name}.transformers.json"
    with open(path, "w") as f:
        json.dump(result, f)
        f.write("\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
