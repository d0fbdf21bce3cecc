#!/usr/bin/env bash
# Regenerates tests/reference/eval_smollm2.json: SmolLM2 on four BIG-bench JSON tasks
# (winowhy, strategyqa, truthful_qa's task_mc.json, logical_deduction; LIMIT items each),
# scored by huarizo eval and by lm-evaluation-harness over llama-cpp-python's low-level API.
# Needs: the test venv (scripts/test-venv.sh: lm_eval) and llama-cpp-python 0.3.36
# importable through LLAMA_CPP_SITE (a site-packages folder; it compiles llama.cpp, ~10 min,
# so it is not part of CI).
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT="${LIMIT:-50}"
T="${HUARIZO_TESTDATA:-$HOME/.cache/huarizo/testdata}"
PY=$(scripts/test-venv.sh | tail -1)
: "${LLAMA_CPP_SITE:?set LLAMA_CPP_SITE to the site-packages holding llama_cpp}"
cargo build --release -q -p huarizo-cli
out=$(mktemp -d)
./target/release/huarizo eval -m "$T/smollm2.gguf" --no-cache --limit "$LIMIT" \
  --tasks bigbench:winowhy,bigbench:strategyqa,bigbench:truthful_qa,bigbench:logical_deduction \
  -o "$out/results.json" --log-samples "$out/samples.jsonl"
PYTHONPATH="$LLAMA_CPP_SITE" "$PY" tests/eval/lm_eval_llama_cpp.py "$T/smollm2.gguf" \
  "$out/samples.jsonl" "$out/reference.json"
"$PY" tests/eval/make_reference.py "$out/samples.jsonl" "$out/reference.json" \
  tests/reference/eval_smollm2.json
