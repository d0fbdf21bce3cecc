#!/usr/bin/env bash
# The test command: fetch what the tests read (models, llama.cpp's tokenizer vectors and chat
# templates; cached after the first run), then run the whole suite, optimised.
set -euo pipefail
cd "$(dirname "$0")/.."
export HUARIZO_TESTDATA="${HUARIZO_TESTDATA:-$HOME/.cache/huarizo/testdata}"
scripts/fetch-testdata.sh >/dev/null
cargo test --release --workspace
