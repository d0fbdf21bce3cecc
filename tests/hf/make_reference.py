#!/usr/bin/env python3
"""Reference logits of Hugging Face transformers on huarizo's Hugging Face exports.

For each test model (SmolLM2 llama, Gemma 3, Qwen2.5-Coder), this script
  1. exports the GGUF test file with `huarizo convert -m FILE --to hf DIR` (F32 weights),
  2. loads DIR with transformers (AutoModelForCausalLM, float32, eager attention) and its
     tokenizer (AutoTokenizer), and checks the tokenizer gives the ids `huarizo tokenize`
     gives on the original GGUF,
  3. runs each prompt once through the model and keeps, for every position, the logits of
     the 16 highest-scoring tokens and of 16 token ids spread over the vocabulary.
It writes tests/hf/reference.json, which crates/huarizo-engine/tests/hf_checkpoint.rs
compares huarizo's logits on the same export against (CI has no torch; the JSON is
committed).

Usage (from the repository root, after `cargo build --release -p huarizo-cli`):
    /work/torchvenv/bin/python tests/hf/make_reference.py [--huarizo target/release/huarizo]
Needs torch and transformers (tested with torch 2.15 CPU, transformers 5.2).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

MODELS = ["smollm2", "gemma3", "qwen"]
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Llamas and alpacas live in the Andes; 3 + 4 =",
]
TOP = 16
SPREAD = 16


def testdata_dir():
    return os.environ.get("HUARIZO_TESTDATA") or os.path.expanduser("~/.cache/huarizo/testdata")


def huarizo_ids(huarizo, model, text):
    out = subprocess.run(
        [huarizo, "tokenize", "-m", model, "--add-special", text],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--huarizo", default="target/release/huarizo")
    ap.add_argument("--out", default="tests/hf/reference.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    result = {
        "generator": "tests/hf/make_reference.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": "float32",
        "models": {},
    }
    for name in MODELS:
        gguf = os.path.join(testdata_dir(), f"{name}.gguf")
        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, name)
            subprocess.run([args.huarizo, "convert", "-m", gguf, "--to", "hf", folder], check=True)
            tok = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(
                folder, dtype=torch.float32, attn_implementation="eager"
            )
            model.eval()
            n_vocab = model.config.vocab_size
            spread = [int(i * (n_vocab - 1) / (SPREAD - 1)) for i in range(SPREAD)]
            prompts = []
            for text in PROMPTS:
                ids = huarizo_ids(args.huarizo, gguf, text)
                hf_ids = tok(text)["input_ids"]
                with torch.no_grad():
                    logits = model(torch.tensor([ids])).logits[0].float()
                positions = []
                for row in logits:
                    top = torch.topk(row, TOP).indices.tolist()
                    keep = sorted(set(top) | set(spread))
                    positions.append({"ids": keep, "logits": [float(row[i]) for i in keep]})
                prompts.append({
                    "text": text,
                    "ids": ids,
                    "transformers_tokenizer_agrees": hf_ids == ids,
                    "positions": positions,
                })
                print(f"{name}: {text!r}: {len(ids)} tokens, transformers tokenizer "
                      f"{'agrees' if hf_ids == ids else 'differs: ' + str(hf_ids)}", file=sys.stderr)
            result["models"][name] = {"n_vocab": n_vocab, "prompts": prompts}
    with open(args.out, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
