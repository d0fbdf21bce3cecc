#!/usr/bin/env bash
# Regenerates tests/reference/eval_<MODEL>.json: the model (smollm2 or qwen, from the test
# data) on four BIG-bench JSON tasks (winowhy, strategyqa, truthful_qa's task_mc.json,
# logical_deduction; LIMIT items each, 0-shot) and on the arc- and hellaswag-style fixture
# datasets (crates/huarizo-eval/tests/fixtures/harness, 3-shot), scored by huarizo eval and
# by lm-evaluation-harness over llama-cpp-python's low-level API. The file records which
# build (avx2 or avx512) the llama.cpp was, and the test runs huarizo in that order.
# Needs: the test venv (scripts/test-venv.sh: lm_eval) and llama-cpp-python 0.3.36
# importable through LLAMA_CPP_SITE (a site-packages folder; it compiles llama.cpp, ~10 min,
# so it is not part of CI).
#
#   LLAMA_CPP_SITE=/path/site-packages LIMIT=50 tests/eval/make_reference.sh smollm2
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL="${1:-smollm2}"
LIMIT="${LIMIT:-50}"
T="${HUARIZO_TESTDATA:-$HOME/.cache/huarizo/testdata}"
PY=$(scripts/test-venv.sh | tail -1)
: "${LLAMA_CPP_SITE:?set LLAMA_CPP_SITE to the site-packages holding llama_cpp}"
BIN="${HUARIZO_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build --release -q -p huarizo-cli
  BIN=./target/release/huarizo
fi
out=$(mktemp -d)
# huarizo's prompts and choices do not depend on the build; its log-probabilities are
# recomputed by the test.
"$BIN" eval -m "$T/$MODEL.gguf" --no-cache --limit "$LIMIT" \
  --tasks bigbench:winowhy,bigbench:strategyqa,bigbench:truthful_qa,bigbench:logical_deduction \
  -o "$out/bigbench.json" --log-samples "$out/bigbench.jsonl"
"$BIN" eval -m "$T/$MODEL.gguf" --no-cache --shots 3 \
  --data-dir crates/huarizo-eval/tests/fixtures/harness --tasks arc_challenge,hellaswag \
  -o "$out/harness.json" --log-samples "$out/harness.jsonl"
cat "$out/bigbench.jsonl" "$out/harness.jsonl" > "$out/samples.jsonl"
PYTHONPATH="$LLAMA_CPP_SITE" "$PY" tests/eval/lm_eval_llama_cpp.py "$T/$MODEL.gguf" \
  "$out/samples.jsonl" "$out/reference.json"
ISA=$(PYTHONPATH="$LLAMA_CPP_SITE" "$PY" -c \
  'import llama_cpp; print("avx512" if "AVX512 = 1" in llama_cpp.llama_print_system_info().decode() else "avx2")')
"$PY" tests/eval/make_reference.py "$out/samples.jsonl" "$out/reference.json" \
  "tests/reference/eval_$MODEL.json" "$ISA"
