#!/usr/bin/env python3
"""LoRA training speed of PyTorch + PEFT on a GGUF model dequantized to f32 by transformers,
the reference for `huarizo train` (docs/PERF.md).

Usage: train_torch.py MODEL.gguf [--threads 2] [--batch 4] [--seq-len 256] [--steps 6] [--rank 8]

Trains a rank-r LoRA on every linear layer of every block (q, k, v, o, gate, up, down; alpha
2r, no dropout) with AdamW on random tokens, every position trained, and prints trained
tokens per second over the steps after the first (warm-up), and the peak resident memory.
Run huarizo with the same shape: `huarizo train continue -m MODEL --data TEXT -t 2
--batch B --seq-len L --steps N --rank r --alpha 2r --eval-fraction 0 ...`.
"""
import argparse, os, resource, time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=4)
ap.add_argument("--seq-len", type=int, default=256)
ap.add_argument("--steps", type=int, default=6)
ap.add_argument("--rank", type=int, default=8)
args = ap.parse_args()
torch.set_num_threads(args.threads)
d, f = os.path.split(os.path.abspath(args.model))
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, use_kernels=False,
                                             attn_implementation="sdpa")
cfg = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, bias="none",
                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
model = get_peft_model(model, cfg)
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
g = torch.Generator().manual_seed(0)
times = []
for step in range(args.steps):
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq_len + 1), generator=g)
    t0 = time.perf_counter()
    out = model(input_ids=ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), ids[:, 1:].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t0)
    print(f"step {step}: loss {loss.item():.4f}, {times[-1]:.2f} s", flush=True)
tok = args.batch * args.seq_len
rate = tok * (len(times) - 1) / sum(times[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"torch {torch.__version__}, threads {args.threads}, batch {args.batch} x {args.seq_len}: "
      f"{rate:.1f} trained tokens/s (steps 2..{args.steps}), peak RSS {peak:.0f} MiB")
