#!/usr/bin/env python3
"""llama.cpp against huarizo on a tokenizer trained by huarizo_text::train_bpe.

Usage:
  HUARIZO_BPE_DUMP=/tmp/bpe cargo test --release -p huarizo-text --test bpe_train round_trips
  python scripts/check_bpe_train.py /tmp/bpe   # needs llama-cpp-python

Loads /tmp/bpe/vocab.gguf with vocab_only=True and checks that llama_tokenize
(add_special=False, parse_special=True) gives the ids in cases.json and that the
ids detokenize back to the text. Exits 1 on any difference.
"""
import json
import os
import sys

import llama_cpp


def main() -> int:
    root = sys.argv[1]
    llm = llama_cpp.Llama(model_path=os.path.join(root, "vocab.gguf"), vocab_only=True, verbose=False)
    cases = json.load(open(os.path.join(root, "cases.json"), encoding="utf-8"))
    bad = 0
    for case in cases:
        text, want = case["text"], case["ids"]
        got = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        back = llm.detokenize(got, special=True).decode("utf-8", errors="replace")
        ok = got == want and back == text
        bad += not ok
        print(("ok  " if ok else "BAD ") + repr(text) + ("" if ok else f"\n  llama.cpp {got}\n  huarizo   {want}\n  decoded   {back!r}"))
    print(f"{len(cases) - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
