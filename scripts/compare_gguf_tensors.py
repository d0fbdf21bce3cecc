#!/usr/bin/env python3
"""Compare the tensors of two GGUF files: type per tensor, and for tensors of the same
type, the share of identical bytes and of identical blocks.

Usage: compare_gguf_tensors.py A.gguf B.gguf
Needs numpy and llama.cpp's gguf-py (PYTHONPATH=.../vendor/llama.cpp/gguf-py).
"""
import sys

import numpy as np
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES


def main():
    a, b = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
    tb = {t.name: t for t in b.tensors}
    types_differ = 0
    total_blocks = same_blocks = 0
    worst = []
    for t in a.tensors:
        u = tb.get(t.name)
        if u is None:
            print(f"{t.name}: only in A")
            continue
        if t.tensor_type != u.tensor_type:
            types_differ += 1
            print(f"{t.name}: {t.tensor_type.name} vs {u.tensor_type.name}")
            continue
        x = np.asarray(t.data).view(np.uint8).reshape(-1)
        y = np.asarray(u.data).view(np.uint8).reshape(-1)
        bs = GGML_QUANT_SIZES[t.tensor_type][1]
        xb, yb = x.reshape(-1, bs), y.reshape(-1, bs)
        same = int(np.all(xb == yb, axis=1).sum())
        total_blocks += len(xb)
        same_blocks += same
        if same != len(xb):
            worst.append((same / len(xb), t.name, t.tensor_type.name))
    worst.sort()
    for share, name, ty in worst[:10]:
        print(f"  {name} ({ty}): {100 * share:.3f}% of blocks identical")
    print(f"types differ on {types_differ} tensors; identical blocks "
          f"{same_blocks}/{total_blocks} ({100 * same_blocks / max(total_blocks, 1):.4f}%)")


if __name__ == "__main__":
    main()
