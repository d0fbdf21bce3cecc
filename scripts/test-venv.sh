#!/usr/bin/env bash
# Creates the Python venv the server tests use (openai, lm_eval, schemathesis; pinned in
# tests/server/requirements.lock) at $HUARIZO_TESTDATA/venv and prints its python's path
# as the last line of stdout, so callers can do PY=$(scripts/test-venv.sh).
#
# Idempotent: when the venv was completed from the same lock file and python, it only
# prints the path. Everything is installed with --no-deps from the complete lock, so
# lm_eval's heavy optional dependencies (torch, transformers, evaluate, scikit-learn, ...)
# are never pulled in; only wheels are accepted (no compiler needed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
lock="$root/tests/server/requirements.lock"
data="${HUARIZO_TESTDATA:-$HOME/.cache/huarizo/testdata}"
venv="$data/venv"
base_python="${HUARIZO_PYTHON:-python3}"
mkdir -p "$data"

want="$(sha256sum "$lock" | cut -c1-16) $("$base_python" -c 'import sys; print(sys.version.split()[0])')"
stamp="$venv/.huarizo-complete"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$venv/bin/python"
  exit 0
fi

# One installer at a time (two test scripts may start together).
exec 9>"$data/.venv.lock"
command -v flock >/dev/null && flock 9
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$venv/bin/python"
  exit 0
fi

start=$SECONDS
echo "test-venv: creating $venv" >&2
rm -rf "$venv"
"$base_python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
  --only-binary=:all: -r "$lock" >&2
# The imports the server tests need (fails here, not half-way through a test run).
"$venv/bin/python" - >&2 <<'EOF'
import openai, schemathesis, requests, aiohttp, tenacity, datasets, pytablewriter
import lm_eval.evaluator, lm_eval.models.openai_completions, lm_eval.tasks, lm_eval._cli
EOF
echo "$want" > "$stamp"
echo "test-venv: done in $((SECONDS - start)) s ($(du -sh "$venv" | cut -f1))" >&2
echo "$venv/bin/python"
