#!/usr/bin/env python3
"""Reference for `huarizo quantize`: what llama.cpp's quantizer writes for SmolLM2.

1. `huarizo convert` writes SmolLM2-135M-Instruct (the Q4_1 test file) as F16 GGUF;
2. llama.cpp's `llama_model_quantize` (llama-cpp-python) quantizes that F16 file to each
   file type of TYPES (its mixes, not --pure);
3. with an importance matrix: `huarizo imatrix -m smollm2.gguf --text
   tests/quality/lighthouse.txt --ctx 256` (bit-identical to llama-imatrix's, see
   docs/QUANTIZE.md), given to llama.cpp's quantizer as llama-quantize gives it, for the
   types of IMATRIX_TYPES (recorded as `Q4_K_M+imatrix`, …);
4. the type and the first 16 hex digits of the sha256 of every tensor's data, and the
   file size, go to tests/reference/quantize_smollm2.json.
crates/huarizo-engine/tests/quantize_mixes.rs quantizes the same F16 file with huarizo
and asks for the same types and bytes (CI has no llama.cpp; the JSON is committed).

Usage (from the repository root, after `cargo build --release -p huarizo-cli`):
  PYTHONPATH=/work/llvenv/lib/python3.11/site-packages:$LLAMA_CPP/gguf-py \\
    ~/.cache/huarizo/testdata/venv/bin/python scripts/ref_quantize.py
Needs llama-cpp-python (0.3.36 here) and llama.cpp's gguf-py.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import llama_cpp
import numpy as np
from gguf import GGUFReader

sys.path.insert(0, os.path.dirname(__file__))
from llama_quantize import FTYPES, set_imatrix  # noqa: E402

TYPES = ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"]
IMATRIX_TYPES = ["Q2_K_S", "Q4_K_M", "Q5_0"]


def tensors(path):
    out = {}
    for t in GGUFReader(path).tensors:
        data = np.asarray(t.data).view(np.uint8).tobytes()
        out[t.name] = [t.tensor_type.name, hashlib.sha256(data).hexdigest()[:16]]
    return out


def main():
    huarizo = os.environ.get("HUARIZO", "target/release/huarizo")
    testdata = os.environ.get("HUARIZO_TESTDATA") or os.path.expanduser("~/.cache/huarizo/testdata")
    # The importance matrix comes from huarizo's forward pass, whose last bits depend on
    # which llama.cpp build's summation order it follows: fixed to AVX2's and recorded, so
    # that the test computes the same matrix on any machine.
    isa = "avx2"
    ref = {"llama_cpp_python": llama_cpp.__version__, "input": "smollm2.gguf as F16",
           "imatrix_ggml_isa": isa, "types": {}}
    with tempfile.TemporaryDirectory() as tmp:
        f16 = os.path.join(tmp, "f16.gguf")
        subprocess.run([huarizo, "convert", "-m", os.path.join(testdata, "smollm2.gguf"),
                        "--to", "gguf", f16, "--type", "F16"], check=True)
        imatrix = os.path.join(tmp, "imatrix.gguf")
        subprocess.run([huarizo, "imatrix", "-m", os.path.join(testdata, "smollm2.gguf"),
                        "--text", "tests/quality/lighthouse.txt", "--ctx", "256",
                        "-o", imatrix], check=True, env={**os.environ, "HUARIZO_GGML_ISA": isa})
        runs = [(n, None) for n in TYPES] + [(n, imatrix) for n in IMATRIX_TYPES]
        for name, im in runs:
            key = name + ("+imatrix" if im else "")
            out = os.path.join(tmp, f"{key}.gguf")
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = FTYPES[name]
            params.nthread = 2
            params.allow_requantize = True
            keep = set_imatrix(params, im) if im else None  # noqa: F841 (kept alive)
            assert llama_cpp.llama_model_quantize(f16.encode(), out.encode(), params) == 0
            ref["types"][key] = {"size": os.path.getsize(out), "tensors": tensors(out)}
            print(key, ref["types"][key]["size"], file=sys.stderr)
    with open("tests/reference/quantize_smollm2.json", "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
