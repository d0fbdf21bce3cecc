#!/usr/bin/env python3
"""Regenerates tests/reference/<model>.json: llama.cpp's greedy continuations of the
reference prompts, through llama-cpp-python (which compiles llama.cpp: keep it out of CI).

    python -m venv /tmp/llvenv && /tmp/llvenv/bin/pip install llama-cpp-python==0.3.36 numpy
    /tmp/llvenv/bin/python scripts/ref_llama_cpp.py ~/.cache/huarizo/testdata/smollm2.gguf smollm2

Each record holds the prompt, its token ids (llama_tokenize with add_special and
parse_special), and the greedy tokens: at each step the argmax of llama.cpp's logits,
with the top-5 (id, logit) pairs so that near-ties can be recognised.

llama.cpp's logits depend on the vector width it was built for (see
crates/huarizo-kernels/src/isa.rs): a build on an AVX-512 machine writes
tests/reference/<model>.json, a build without AVX-512 writes
tests/reference/<model>.avx2.json. Each file records the build in "ggml_isa".
"""
import json
import sys

import llama_cpp
import numpy as np

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Question: What is 17 + 25?\nAnswer:",
    "1, 2, 3, 4, 5, 6,",
    "中国的首都是",
    "Die Hauptstadt von Deutschland ist",
    "The three primary colors are",
    "#include <stdio.h>\n\nint main(void) {\n",
    "Water boils at a temperature of",
    "In 1969, Neil Armstrong became the first person to",
    "SELECT name, age FROM users WHERE",
]
N_GEN = 32


def main():
    # --last: logits of the prompt's last row only (llama.cpp then runs the last layer's
    # feed-forward on that row alone), written to <name>.last.json.
    last = "--last" in sys.argv
    path, name = [a for a in sys.argv[1:] if a != "--last"]
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=2, n_batch=512,
                          logits_all=not last, verbose=False)
    records = []
    for prompt in PROMPTS:
        llm.reset()
        toks = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        llm.eval(toks)
        gen, tops = [], []
        for _ in range(N_GEN):
            if last:
                # llama-cpp-python keeps no scores without logits_all: read llama.cpp's
                # one output row.
                logits = np.array(np.ctypeslib.as_array(
                    llm._ctx.get_logits(), shape=(llm.n_vocab(),)), dtype=np.float32)
            else:
                logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            order = np.argsort(-logits, kind="stable")[:5]
            tops.append([[int(i), float(logits[i])] for i in order])
            tok = int(order[0])
            gen.append(tok)
            llm.eval([tok])
        records.append({"prompt": prompt, "prompt_tokens": toks, "tokens": gen, "top5": tops})
        print(name, repr(prompt), "->", repr(llm.detokenize(gen).decode(errors="replace")), file=sys.stderr)
    info = llama_cpp.llama_print_system_info().decode()
    isa = "avx512" if "AVX512 = 1" in info else "avx2"
    out = {
        "model": name,
        "ggml_isa": isa,
        "system_info": info.strip(),
        "reference": f"llama-cpp-python {llama_cpp.__version__}, n_ctx=512, n_threads=2, "
                     f"logits_all={not last}, default flash-attention and KV settings",
        "records": records,
    }
    suffix = (".last" if last else "") + ("" if isa == "avx512" else ".avx2")
    with open(f"tests/reference/{name}{suffix}.json", "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
