#!/usr/bin/env python3
"""Reference losses and LoRA gradients from PyTorch autograd (transformers + peft), for
huarizo's training tests (crates/huarizo-model/tests/train_reference.rs).

Usage: ref_torch_train.py OUT_DIR [--smollm2 SMOLLM2.gguf]

Cases:
  tiny_llama, tiny_qwen2, tiny_gemma3: small random models (float32), saved as Hugging
      Face checkpoints in OUT_DIR/<case>/ (config.json, model.safetensors), which huarizo
      loads through its own Hugging Face reader;
  smollm2: SmolLM2-135M-Instruct Q4_1, dequantized by transformers' GGUF loader.
For each case: OUT_DIR/<case>.json holds the batch (tokens, labels: −1 = no loss), the
adapter's rank, alpha and targets, and the summed loss; OUT_DIR/<case>.safetensors holds
d(loss_sum)/dA and d(loss_sum)/dB of every adapted layer, named
`blk.{layer}.{gguf target}.grad_a|grad_b`.

Adapter values are not stored: both sides compute them from `adapter_value` below, with B
non-zero so that every gradient is.

Needs torch, transformers, peft, safetensors, gguf, numpy (not part of CI: the outputs are
committed under tests/reference/train/).
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.numpy import save_file

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GGUF_TARGETS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


def adapter_value(layer, target_index, which, shape):
    """0.05·sin(0.37·i + 1.1·layer + 2.3·target + 0.5·which) over the row-major index i."""
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    v = 0.05 * np.sin(0.37 * i + 1.1 * layer + 2.3 * target_index + 0.5 * which)
    return v.astype(np.float32).reshape(shape)


def tiny_model(kind, seed):
    import transformers as tr

    torch.manual_seed(seed)
    common = dict(vocab_size=96, hidden_size=32, intermediate_size=64,
                  num_attention_heads=4, max_position_embeddings=64, rms_norm_eps=1e-5)
    if kind == "llama":
        cfg = tr.LlamaConfig(num_hidden_layers=2, num_key_value_heads=2, rope_theta=10000.0,
                             tie_word_embeddings=False, **common)
        model = tr.LlamaForCausalLM(cfg)
    elif kind == "qwen2":
        cfg = tr.Qwen2Config(num_hidden_layers=2, num_key_value_heads=2, rope_theta=10000.0,
                             tie_word_embeddings=True, **common)
        model = tr.Qwen2ForCausalLM(cfg)
    elif kind == "gemma3":
        cfg = tr.Gemma3TextConfig(num_hidden_layers=6, num_key_value_heads=1, head_dim=8,
                                  query_pre_attn_scalar=8, sliding_window=4,
                                  rope_theta=1e6, rope_local_base_freq=10000.0,
                                  final_logit_softcapping=None, attn_logit_softcapping=None,
                                  hidden_activation="gelu_pytorch_tanh",
                                  tie_word_embeddings=True, **common)
        model = tr.Gemma3ForCausalLM(cfg)
    else:
        raise ValueError(kind)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                # Gemma's norms hold w with the scale 1 + w; the others the scale itself.
                base = 0.0 if kind == "gemma3" else 1.0
                p.copy_(base + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.config._attn_implementation = "eager"
    return model.float().eval()


def batch(vocab, lengths, seed, prompt):
    rng = np.random.default_rng(seed)
    seqs = []
    for n, p in zip(lengths, prompt):
        tokens = rng.integers(0, vocab, size=n + 1).tolist()
        labels = tokens[1:]
        labels = [-1] * p + labels[p:]
        seqs.append({"tokens": tokens[:n], "labels": labels})
    return seqs


def reference(model, seqs, rank, alpha, targets, layers):
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets,
                     bias="none")
    peft_model = get_peft_model(model, cfg)
    adapted = {}
    for name, module in peft_model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in module.lora_A:
            continue
        parts = name.split(".")
        layer = int(parts[parts.index("layers") + 1])
        t = TARGETS.index(parts[-1])
        a = module.lora_A["default"].weight
        b = module.lora_B["default"].weight
        with torch.no_grad():
            a.copy_(torch.from_numpy(adapter_value(layer, t, 0, tuple(a.shape))))
            b.copy_(torch.from_numpy(adapter_value(layer, t, 1, tuple(b.shape))))
        adapted[(layer, t)] = (a, b)
    assert len(adapted) == layers * len(targets), len(adapted)
    peft_model.zero_grad()
    total = torch.zeros((), dtype=torch.float64)
    for s in seqs:
        ids = torch.tensor([s["tokens"]])
        logits = peft_model(input_ids=ids).logits[0].float()
        labels = torch.tensor(s["labels"])
        loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-1, reduction="sum")
        loss.backward()
        total += loss.detach().double()
    grads = {}
    for (layer, t), (a, b) in sorted(adapted.items()):
        grads[f"blk.{layer}.{GGUF_TARGETS[t]}.grad_a"] = a.grad.numpy().copy()
        grads[f"blk.{layer}.{GGUF_TARGETS[t]}.grad_b"] = b.grad.numpy().copy()
    return float(total), grads


def gguf_name(kind, hf):
    """The GGUF tensor name of a Hugging Face parameter name."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "lm_head.weight": "output.weight",
             "model.norm.weight": "output_norm.weight"}
    if hf in fixed:
        return fixed[hf]
    parts = hf.split(".")
    i, rest = parts[2], ".".join(parts[3:])
    names = {
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight":
            "post_attention_norm.weight" if kind == "gemma3" else "ffn_norm.weight",
        "pre_feedforward_layernorm.weight": "ffn_norm.weight",
        "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
    }
    for t, g in zip(TARGETS, GGUF_TARGETS):
        block = "self_attn" if t in TARGETS[:4] else "mlp"
        names[f"{block}.{t}.weight"] = f"{g}.weight"
        names[f"{block}.{t}.bias"] = f"{g}.bias"
    return f"blk.{i}.{names[rest]}"


def full_reference(kind, model, seqs):
    """Loss and the gradient of every parameter (GGUF names, Hugging Face row order)."""
    model.zero_grad()
    total = torch.zeros((), dtype=torch.float64)
    for s in seqs:
        logits = model(input_ids=torch.tensor([s["tokens"]])).logits[0].float()
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(s["labels"]),
                                                 ignore_index=-1, reduction="sum")
        loss.backward()
        total += loss.detach().double()
    grads = {}
    for name, p in model.named_parameters():
        grads[gguf_name(kind, name) + ".grad"] = p.grad.numpy().copy()
    return float(total), grads


def write_case(out, name, seqs, rank, alpha, targets, loss, grads, extra):
    meta = {
        "case": name,
        "sequences": seqs,
        "rank": rank,
        "alpha": alpha,
        "targets": [GGUF_TARGETS[TARGETS.index(t)] for t in targets],
        "loss_sum": loss,
        "torch": torch.__version__,
        "adapter_value": "0.05*sin(0.37*i + 1.1*layer + 2.3*target_index + 0.5*which)",
        **extra,
    }
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    save_file(grads, os.path.join(out, f"{name}.safetensors"))
    print(f"{name}: loss_sum {loss:.6f} over {sum(sum(l >= 0 for l in s['labels']) for s in seqs)} labels")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--smollm2")
    ap.add_argument("--only-smollm2", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)
    for i, kind in enumerate([] if args.only_smollm2 else ["llama", "qwen2", "gemma3"]):
        name = f"tiny_{kind}"
        model = tiny_model(kind, seed=10 + i)
        model.save_pretrained(os.path.join(args.out, name), safe_serialization=True)
        seqs = batch(96, [12, 7], seed=20 + i, prompt=[3, 0])
        layers = model.config.num_hidden_layers
        loss, grads = reference(model, seqs, 4, 8.0, TARGETS, layers)
        write_case(args.out, name, seqs, 4, 8.0, TARGETS, loss, grads, {"model": name})
        model = tiny_model(kind, seed=10 + i)
        loss, grads = full_reference(kind, model, seqs)
        write_case(args.out, f"{name}_full", seqs, 0, 0.0, [], loss, grads, {"model": name})
    if args.smollm2:
        from transformers import AutoModelForCausalLM

        d, f = os.path.split(os.path.abspath(args.smollm2))
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, use_kernels=False,
                                                     attn_implementation="eager").eval()
        targets = ["q_proj", "v_proj", "down_proj"]
        seqs = batch(model.config.vocab_size, [24, 17], seed=30, prompt=[6, 0])
        loss, grads = reference(model, seqs, 2, 4.0, targets, model.config.num_hidden_layers)
        write_case(args.out, "smollm2", seqs, 2, 4.0, targets, loss, grads,
                   {"model": "smollm2.gguf (huarizo testdata), dequantized by transformers"})


if __name__ == "__main__":
    sys.exit(main())
