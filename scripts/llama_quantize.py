#!/usr/bin/env python3
"""Quantize a GGUF file with llama.cpp's quantizer (llama-cpp-python's
`llama_model_quantize`), as `llama-quantize [--pure] IN OUT TYPE` does.

Usage: llama_quantize.py IN OUT TYPE [--pure] [--threads N]
TYPE is llama-quantize's name (Q4_K_M, Q5_K_M, Q8_0, ...). Needs llama-cpp-python.
"""
import argparse
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
    a = ap.parse_args()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[a.type.upper()]
    params.nthread = a.threads
    params.allow_requantize = True
    params.pure = a.pure
    rc = llama_cpp.llama_model_quantize(a.input.encode(), a.output.encode(), params)
    if rc != 0:
        sys.exit(f"llama_model_quantize failed: {rc}")


if __name__ == "__main__":
    main()
