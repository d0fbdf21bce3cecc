#!/usr/bin/env python3
"""Does a GGUF that huarizo writes from a Hugging Face folder load in llama.cpp and give
huarizo's greedy tokens?

For each test model: `huarizo convert --to hf` (F32), then `huarizo convert --to gguf`
(F16) from that folder, and `huarizo quantize` of that F16 file to Q4_K_M; llama-cpp-python
loads each file and generates greedily from a raw prompt; `huarizo run --raw --temperature
0 --json` does the same on the same file. Prints the two token lists and whether they
agree.

Usage (from the repository root, after `cargo build --release -p huarizo-cli`):
    /work/llvenv/bin/python tests/hf/check_llama_cpp.py [--huarizo target/release/huarizo]
Needs llama-cpp-python (tested with 0.3.36).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import llama_cpp

MODELS = ["smollm2", "gemma3", "qwen"]
PROMPT = "The capital of France is"
N = 16


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--huarizo", default="target/release/huarizo")
    args = ap.parse_args()
    data = os.environ.get("HUARIZO_TESTDATA") or os.path.expanduser("~/.cache/huarizo/testdata")
    failures = 0
    for name in MODELS:
        with tempfile.TemporaryDirectory() as tmp:
            folder, gguf = os.path.join(tmp, "hf"), os.path.join(tmp, "f16.gguf")
            run = lambda *a: subprocess.run([args.huarizo, *a], check=True, capture_output=True, text=True).stdout
            run("convert", "-m", os.path.join(data, f"{name}.gguf"), "--to", "hf", folder)
            run("convert", "-m", folder, "--to", "gguf", gguf, "--type", "f16")
            quantized = os.path.join(tmp, "q4_k_m.gguf")
            run("quantize", gguf, quantized, "--type", "q4_k_m")
            for label, path in [("F16", gguf), ("Q4_K_M", quantized)]:
                failures += not agree(run, f"{name} {label}", path)
    sys.exit(1 if failures else 0)


def agree(run, label, gguf):
    ours = json.loads(run("run", "-m", gguf, "--raw", "--temperature", "0", "-n", str(N), "--json", PROMPT))
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=256, n_threads=2, verbose=False)
    prompt_ids = llm.tokenize(PROMPT.encode(), add_bos=True, special=False)
    theirs = []
    for tok in llm.generate(prompt_ids, top_k=1, temp=0.0, repeat_penalty=1.0):
        theirs.append(tok)
        if len(theirs) == N:
            break
    # huarizo stops at an end-of-generation token; llama-cpp-python's generate does not.
    ok = len(ours["tokens"]) > 0 and ours["tokens"] == theirs[: len(ours["tokens"])]
    print(f"{label}: prompt ids {'agree' if ours['prompt_tokens'] == prompt_ids else 'differ'}; "
          f"greedy {N}: {'agree' if ok else 'DIFFER'}\n  huarizo  {ours['tokens']}\n  llama.cpp {theirs}")
    return ok


if __name__ == "__main__":
    main()
