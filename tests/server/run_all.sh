#!/usr/bin/env bash
# Starts a server on a free port, runs the Python server suites against it, stops it:
#
#   tests/server/run_all.sh [SERVER COMMAND...]
#
# Default command: target/release/huarizo serve -m $HUARIZO_TESTDATA/smollm2.gguf --port 0 --ctx 512
# (HUARIZO_BIN overrides the binary). A given command must itself bind a free port and
# print `huarizo: listening on http://HOST:PORT` on stderr when ready (as `--port 0` does).
# SUITES picks suites (default "client lm_eval schemathesis"); OUTDIR keeps the lm_eval
# output (default a temp dir). The server's stderr goes to $OUTDIR/server.log.
# Closes with `N passed, N failed` (suites) and exits 1 if any failed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${HUARIZO_TESTDATA:-$HOME/.cache/huarizo/testdata}"
if [ $# -eq 0 ]; then
  set -- "${HUARIZO_BIN:-$root/target/release/huarizo}" serve -m "$data/smollm2.gguf" --port 0 --ctx 512
fi
out="${OUTDIR:-$(mktemp -d -t huarizo-server-tests.XXXXXX)}"
mkdir -p "$out"
py="$("$root/scripts/test-venv.sh" | tail -n1)"

log="$out/server.log"
"$@" >"$out/server.stdout" 2>"$log" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap cleanup EXIT
url=""
for _ in $(seq 1200); do   # up to 120 s for the model to load
  url="$(sed -n 's#.*huarizo: listening on \(http://[^ ]*\).*#\1#p' "$log" | head -n1)"
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { echo "run_all: the server exited:" >&2; tail -20 "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "run_all: no 'listening on' line in 120 s" >&2; tail -20 "$log" >&2; exit 1; }
echo "run_all: server at $url (pid $server), output in $out"

passed=0 failed=0 failures=""
run() { # name command...
  local name=$1; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=" $name"; fi
}
for suite in ${SUITES:-client lm_eval schemathesis}; do
  case "$suite" in
    client) run client env HUARIZO_URL="$url/v1" "$py" "$here/test_openai_client.py" ;;
    lm_eval)
      run lm_eval "$here/run_lm_eval.sh" "$url" "$out/lm_eval"
      run lm_eval_check sh -c '"$1" "$2" "$3" --check "$4" > "$5"' _ "$py" "$here/lm_eval_loglikelihoods.py" \
        "$out/lm_eval" "$url" "$out/loglikelihoods.json" ;;
    schemathesis) run schemathesis "$here/run_schemathesis.sh" "$url" ;;
    *) echo "run_all: unknown suite $suite" >&2; exit 2 ;;
  esac
done
kill -0 "$server" 2>/dev/null || { echo "run_all: the server died during the run" >&2; failed=$((failed + 1)); failures+=" server-alive"; }
[ -z "$failures" ] || echo "run_all: failed:$failures"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
