#!/usr/bin/env python3
"""Quantize a GGUF file with llama.cpp's quantizer (llama-cpp-python's
`llama_model_quantize`), as `llama-quantize [--pure] IN OUT TYPE` does.

Usage: llama_quantize.py IN OUT TYPE [--pure] [--threads N] [--imatrix FILE]
TYPE is llama-quantize's name (Q4_K_M, Q5_K_M, Q8_0, ...). --imatrix reads an importance
matrix in llama-imatrix's GGUF format (as `huarizo imatrix` writes it) and normalizes it as
llama-quantize does (in_sum2 / count, 1 for a zero count). Needs llama-cpp-python, and
llama.cpp's gguf-py and numpy for --imatrix.
"""
import argparse
import ctypes
import sys

import llama_cpp

FTYPES = {
    "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
    "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15,
    "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "Q2_K_S": 21, "F16": 1, "BF16": 32,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("type")
    ap.add_argument("--pure", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--imatrix")
    a = ap.parse_args()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[a.type.upper()]
    params.nthread = a.threads
    params.allow_requantize = True
    params.pure = a.pure
    keep = set_imatrix(params, a.imatrix) if a.imatrix else None
    rc = llama_cpp.llama_model_quantize(a.input.encode(), a.output.encode(), params)
    if rc != 0:
        sys.exit(f"llama_model_quantize failed: {rc}")


def set_imatrix(params, path):
    """Points `params.imatrix` at the importance matrix in `path`; returns the buffers that
    must stay alive until the quantization is done."""
    entries = read_imatrix(path)
    arr = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
    keep = [arr]
    for i, (name, values) in enumerate(sorted(entries.items())):
        buf = (ctypes.c_float * len(values))(*values)
        keep.append(buf)
        arr[i].name = name.encode()
        arr[i].data = ctypes.cast(buf, ctypes.POINTER(ctypes.c_float))
        arr[i].size = len(values)
    arr[len(entries)].name = None
    params.imatrix = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    return keep


def read_imatrix(path):
    """Weight name -> per-column importance, as llama-quantize's load_imatrix gives it."""
    import numpy as np
    from gguf import GGUFReader

    t = {x.name: np.asarray(x.data, dtype=np.float32).reshape(-1) for x in GGUFReader(path).tensors}
    out = {}
    for name, sums in t.items():
        if not name.endswith(".in_sum2"):
            continue
        weight = name[: -len(".in_sum2")]
        count = float(t[weight + ".counts"][0])
        out[weight] = (sums / np.float32(count)).tolist() if count > 0 else [1.0] * len(sums)
    return out


if __name__ == "__main__":
    main()
