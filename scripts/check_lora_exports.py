#!/usr/bin/env python3
"""Do huarizo's LoRA exports load elsewhere? (issue 7, "Exports load elsewhere")

Usage: check_lora_exports.py RUN_DIR MODEL.gguf [--dump PATH/TO/dump_logits] [--prompt TEXT]

RUN_DIR is the output folder of `huarizo train lora` (adapter_config.json,
adapter_model.safetensors, adapter.gguf). For one chat prompt it compares:
  1. PEFT: transformers (the GGUF dequantized to f32) + peft.PeftModel.from_pretrained(RUN_DIR)
     against huarizo's f32 forward with adapter.gguf (dump_logits, HUARIZO_F32=1): max |Δ| of
     every logit (the bar is 1e-2), and the same without the adapter for scale;
  2. llama.cpp: llama-cpp-python with lora_path=adapter.gguf against huarizo's inference
     path with the same adapter (dump_logits, HUARIZO_GGML_ISA=avx2), and the greedy next
     token at every position.
Needs torch, transformers, peft (for 1) and llama-cpp-python (for 2; skipped when missing).
Run with the venv that has them, e.g. PYTHONPATH=<llama-cpp-python site-packages>.
"""
import argparse
import os
import subprocess
import sys

import numpy as np


def huarizo_logits(dump, model, ids, env):
    out = subprocess.run([dump, model, str(len(ids))] + [str(i) for i in ids],
                         env={**os.environ, **env}, check=True, capture_output=True, text=True)
    return np.array([float(v) for v in out.stdout.split()], dtype=np.float32).reshape(len(ids), -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("model")
    ap.add_argument("--dump", default=os.path.join(os.path.dirname(__file__), "..",
                                                    "target/release/examples/dump_logits"))
    ap.add_argument("--prompt", default="What is 17 plus 25?")
    args = ap.parse_args()
    adapter_gguf = os.path.join(args.run_dir, "adapter.gguf")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    d, f = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    text = tok.apply_chat_template([{"role": "user", "content": args.prompt}], tokenize=False,
                                   add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32,
                                                use_kernels=False, attn_implementation="eager").eval()
    with torch.no_grad():
        base_logits = base(input_ids=torch.tensor([ids])).logits[0].numpy()
    peft_model = PeftModel.from_pretrained(base, args.run_dir).eval()
    with torch.no_grad():
        peft_logits = peft_model(input_ids=torch.tensor([ids])).logits[0].numpy()
    ours_base = huarizo_logits(args.dump, args.model, ids, {"HUARIZO_F32": "1"})
    ours = huarizo_logits(args.dump, args.model, ids, {"HUARIZO_F32": "1", "HUARIZO_LORA": adapter_gguf})
    print(f"{len(ids)} tokens; the adapter moves the logits by up to "
          f"{np.abs(peft_logits - base_logits).max():.3f}")
    print(f"PEFT (transformers + peft) vs huarizo f32 + adapter.gguf: max |Δ| "
          f"{np.abs(peft_logits - ours).max():.2e} (without the adapter: "
          f"{np.abs(base_logits - ours_base).max():.2e}); same argmax at "
          f"{(peft_logits.argmax(1) == ours.argmax(1)).sum()}/{len(ids)} positions")
    try:
        from llama_cpp import Llama
    except ImportError:
        print("llama-cpp-python is not installed: the GGUF LoRA check is skipped")
        return 0
    llm = Llama(model_path=args.model, lora_path=adapter_gguf, logits_all=True, n_ctx=512,
                n_threads=2, n_batch=512, verbose=False)
    llm.eval(ids)
    ll = np.array(llm.scores[:len(ids)], dtype=np.float32)
    plain = Llama(model_path=args.model, logits_all=True, n_ctx=512, n_threads=2, n_batch=512,
                  verbose=False)
    plain.eval(ids)
    ll_base = np.array(plain.scores[:len(ids)], dtype=np.float32)
    env = {"HUARIZO_GGML_ISA": "avx2", "HUARIZO_LORA": adapter_gguf}
    ours_q = huarizo_logits(args.dump, args.model, ids, env)
    print(f"llama.cpp loads adapter.gguf: the adapter moves its logits by up to "
          f"{np.abs(ll - ll_base).max():.3f}; vs huarizo --lora: max |Δ| "
          f"{np.abs(ll - ours_q).max():.2e}, same argmax at "
          f"{(ll.argmax(1) == ours_q.argmax(1)).sum()}/{len(ids)} positions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
