#!/usr/bin/env python3
"""Regenerates crates/huarizo-text/tests/fixtures/ref_tokens.json: llama.cpp's
tokenization of varied strings with the three test models, through llama-cpp-python
(which compiles llama.cpp: keep it out of CI).

    python -m venv /tmp/llvenv && /tmp/llvenv/bin/pip install llama-cpp-python==0.3.36
    /tmp/llvenv/bin/python scripts/ref_tokens.py

For each model and string it records `llama_tokenize(text, add_special, parse_special)`
for all four flag combinations, the piece (`llama_token_to_piece(id, lstrip=0,
special=True)`, hex) of every id that appears plus BOS/EOS, the end-of-generation ids
(`llama_vocab_is_eog` over the whole vocabulary), and BOS/EOS/add-BOS/add-EOS.

    /tmp/llvenv/bin/python scripts/ref_tokens.py --random SEED COUNT OUT.json

instead writes COUNT random strings per model (the three test models and every
llama.cpp test vocabulary llama.cpp can load) mixing scripts, white space, digits,
contractions and special-token texts, for the ignored bulk test:

    HUARIZO_TOKEN_CASES=OUT.json cargo test --release -p huarizo-text \
        --test ref_cases_env -- --ignored --nocapture
"""
import ctypes
import json
import os
import random
import sys

import llama_cpp

MODELS = ["smollm2.gguf", "qwen.gguf", "gemma3.gguf"]

TEXTS = [
    "",
    " ",
    "Hello world",
    " Hello world",
    "Hello, World! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say we've done what's right, didn't we? WE'RE, YOU'LL, I'D",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < 10; ++i) {\n\tprintf(\"%d\\n\", i);\n}",
    "fn main() { let x: Vec<u32> = (0..10).map(|i| i * 2).collect(); }",
    '{"key": [1, 2.5, -3e10], "nested": {"a": null, "b": true}}',
    "1234567890 3.14159 1,000,000 -42 0x1F 007 2024-11-23",
    "12345678901234567890",
    "我爱北京天安门。今天天气很好，我们去公园散步吧！",
    "Größere Übungen für Äpfel und Öl: Straße, Fußgänger, Maß.",
    "日本語のテキストです。カタカナとひらがな。",
    "한국어 텍스트입니다.",
    "Привет, как дела? Всё хорошо.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया, यह हिंदी है।",
    "e\u0301 a\u0300 n\u0303 (combining marks)",
    "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇩🇪 ❤️ 🦀",
    "   leading spaces",
    "trailing spaces   ",
    "multiple     spaces    between   words",
    "\n",
    "\n\n\n",
    "line one\nline two\r\nline three\n\n\nline six",
    "\t\ttabs\tand\t\tmore tabs",
    " \n \n  \n",
    "\u00a0non-breaking\u3000ideographic\u2009thin space",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "<bos><eos><pad>",
    "text<|im_end|>text <|im_start|> spaced",
    "<b>bold</b> <div class=\"x\">html</div>",
    "https://example.com/path?query=1&other=two#frag",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "∑∫√∞ ≈ ≠ ≤ ≥ αβγδ ΩΣΦ",
    "$100 + 50% = €150; a|b ^ c ~ d `code` <tag> @user #hash",
    "\x01\x02 control \x7f chars",
    "''' \"\"\" ''' '' '",
    "Hello\u200bzero\u200dwidth",
]


def piece(vocab, tok):
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, tok, buf, 256, 0, True)
    assert 0 <= n <= 256, (tok, n)
    return bytes(buf.raw[:n]).hex()


POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "     ", "\t\n\r\n\n", "\u00a0\u3000\u2009\u0085\u2028\u1680\u200b",
    "我爱北京天安门今天气很好龥一丁", "한국어텍스트입니다가\ud7ff", "日本語のテキストカタカナひらがな",
    "😀😃👍🏽👨\u200d👩\u200d👧🇩🇪❤️🦀", "\u0301\u0300\u0303\u0308\u093f\u0947", "مرحبابالعالم", "नमस्तेदुनिया",
    "\x00\x01\x02\x1f\x7f", "\u0378\u0380\ue000\U000f0000\U00010d40\u2ffc",
    "\u00c0\u00d6\u00d8\u00f6\u01ba\u00b5\u1f7d\u212a\u2126\u1fbe\u0416\u1e00\ufb00\uff21\U00010400",
    "！＂（）：～‘’“”\u3000。、，", "'s'S'T're'RE've'll'LL'd'm", "ßÄÖÜäöüéèêëçñ", "ⅠⅡ①②½¾²³٣", "∑∫√∞≈≠≤≥αβγ",
]
WORDS = ["Hello", " world", " the", "ing", " don't", "1234567", " 3.14", "    ", "\n\n", " \n", "  x", "ab12cd"]
SPECIAL_TEXTS = ["<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "</s>", "<s>",
                 "<|endoftext|>", "<unk>"]


def random_text(rng, specials, max_parts):
    parts = []
    for _ in range(rng.randint(0, max_parts)):
        r = rng.random()
        if r < 0.15:
            parts.append(rng.choice(specials))
        elif r < 0.3:
            parts.append(rng.choice(WORDS))
        else:
            pool = rng.choice(POOLS)
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
    return "".join(parts)


def random_cases(root, seed, count, out_path):
    rng = random.Random(seed)
    vocab_dir = os.path.join(root, "llama.cpp-models")
    # bert/t5 vocabularies are out of scope for huarizo.
    models = MODELS + ["llama.cpp-models/" + f for f in sorted(os.listdir(vocab_dir))
                       if f.endswith(".gguf") and "bert" not in f]
    out = {}
    for name in models:
        llm = llama_cpp.Llama(model_path=os.path.join(root, name), vocab_only=True, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        specials = [llama_cpp.llama_vocab_get_text(vocab, t).decode("utf-8", "replace") for t in range(n_vocab)
                    if llama_cpp.llama_vocab_get_attr(vocab, t) & (8 | 16)]  # control | user-defined
        specials = rng.sample(specials, min(40, len(specials))) + SPECIAL_TEXTS
        cases = []
        for _ in range(count):
            text = random_text(rng, specials, rng.choice([4, 12, 60]))
            case = {"text": text}
            for add_special in (False, True):
                for parse_special in (False, True):
                    key = ("a" if add_special else "-") + ("p" if parse_special else "-")
                    case[key] = llm.tokenize(text.encode(), add_bos=add_special, special=parse_special)
            cases.append(case)
        out[name] = cases
        print(f"{name}: {count} strings", file=sys.stderr)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


def main():
    root = os.environ.get("HUARIZO_TESTDATA", os.path.expanduser("~/.cache/huarizo/testdata"))
    if len(sys.argv) == 5 and sys.argv[1] == "--random":
        random_cases(root, int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    out_path = os.path.join(os.path.dirname(__file__), "..", "crates", "huarizo-text", "tests", "fixtures",
                            "ref_tokens.json")
    fixture = {"generator": "scripts/ref_tokens.py, llama-cpp-python " + llama_cpp.__version__, "models": {}}
    for name in MODELS:
        llm = llama_cpp.Llama(model_path=os.path.join(root, name), vocab_only=True, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        cases = []
        seen = set()
        for text in TEXTS:
            case = {"text": text}
            for add_special in (False, True):
                for parse_special in (False, True):
                    ids = llm.tokenize(text.encode(), add_bos=add_special, special=parse_special)
                    seen.update(ids)
                    case[("a" if add_special else "-") + ("p" if parse_special else "-")] = ids
            cases.append(case)
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        bos = llama_cpp.llama_vocab_bos(vocab)
        eos = llama_cpp.llama_vocab_eos(vocab)
        seen.update(t for t in (bos, eos) if t >= 0)
        fixture["models"][name] = {
            "n_vocab": n_vocab,
            "bos": bos,
            "eos": eos,
            "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
            "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
            "eog": [t for t in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t)],
            "pieces": {str(t): piece(vocab, t) for t in sorted(seen)},
            "cases": cases,
        }
        print(f"{name}: {len(cases)} strings, {len(seen)} pieces", file=sys.stderr)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
