#!/usr/bin/env bash
# The test command: fetch what the tests read (models, llama.cpp's tokenizer vectors and chat
# templates, the Python packages and the headless browser the server tests drive; cached
# after the first run), then run the whole suite, optimised.
set -euo pipefail
cd "$(dirname "$0")/.."
export HUARIZO_TESTDATA="${HUARIZO_TESTDATA:-$HOME/.cache/huarizo/testdata}"
scripts/fetch-testdata.sh >/dev/null
scripts/test-venv.sh >/dev/null
# The web page test: Debian's Chromium and playwright-core (no browser download).
if [ ! -x /usr/bin/chromium ]; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d tests/e2e/node_modules/playwright-core ]; then
  (cd tests/e2e && npm ci --silent --no-audit --no-fund)
fi
cargo test --release --workspace
