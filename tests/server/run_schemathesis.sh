#!/usr/bin/env bash
# Fuzzes a running `huarizo serve` with schemathesis from its own GET /openapi.json:
#
#   tests/server/run_schemathesis.sh URL      (URL: the server root, e.g. http://127.0.0.1:8080)
#
# Fails on any 5xx answer, on a dropped connection or time-out (a crash or hang), when the
# server no longer answers /health afterwards, or when fewer than ST_MIN_REQUESTS (1000)
# requests were sent. Positive and negative (schema-violating) requests are generated.
#
# So that a run finishes in minutes against a real model, the fuzzed copy of the schema caps
# the generation sizes (max_tokens ≤ ST_MAX_TOKENS, n ≤ 2, arrays ≤ 4 items, strings ≤ 200
# characters), and schemathesis_hooks.py adds max_tokens = ST_MAX_TOKENS to completion
# requests that set none (else the model writes until its context is full). The served
# document keeps its real bounds, and negative mode still sends values past the caps (and
# past the real bounds). Start the server with a small --ctx (run_all.sh: 512) so that
# accepted out-of-cap values stay cheap too.
# (ST_NO_CAPS=1 fuzzes the document as served; with ST_CHECKS=all, negative_data_rejection
# would otherwise count values past the caps as wrongly accepted.)
# Env: ST_MAX_EXAMPLES (per operation and phase, default 300), ST_REQUEST_TIMEOUT (s, 120),
# ST_CHECKS (default not_a_server_error; e.g. "all" also checks responses against the schema),
# ST_MAX_TOKENS (8), ST_SEED, ST_MIN_REQUESTS (1000), ST_REPORT_DIR (kept; default a temp
# dir, removed on success), HUARIZO_API_KEY, ST_EXTRA_ARGS.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 URL" >&2; exit 2; }
root="$(cd "$(dirname "$0")/../.." && pwd)"
url="${1%/}"; url="${url%/v1}"
py="$("$root/scripts/test-venv.sh" | tail -n1)"
work="${ST_REPORT_DIR:-$(mktemp -d -t huarizo-schemathesis.XXXXXX)}"
mkdir -p "$work"

ST_MAX_TOKENS="${ST_MAX_TOKENS:-8}" "$py" - "$url/openapi.json" "$work/openapi.fuzz.json" <<'EOF'
import json, os, sys, urllib.request
doc = json.load(urllib.request.urlopen(sys.argv[1], timeout=60))
cap_tokens = int(os.environ["ST_MAX_TOKENS"])
caps = {"max_tokens": cap_tokens, "max_completion_tokens": cap_tokens, "n": 2, "logprobs": 5, "top_logprobs": 5}

def walk(node):
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if name in caps and isinstance(sub, dict) and sub.get("type") == "integer":
                sub["maximum"] = min(sub.get("maximum", caps[name]), caps[name])
        if node.get("type") == "array":
            node["maxItems"] = min(node.get("maxItems", 4), 4)
        if node.get("type") == "string" and "enum" not in node and "pattern" not in node:
            node["maxLength"] = min(node.get("maxLength", 200), 200)
        for v in node.values():
            walk(v)
    elif isinstance(node, list):
        for v in node:
            walk(v)

# Only request bodies (and the component schemas they reach) are capped, not responses.
schemas = doc.get("components", {}).get("schemas", {})
seen = set()

def reach(node):
    if isinstance(node, dict):
        r = node.get("$ref", "")
        if r.startswith("#/components/schemas/") and r.rsplit("/", 1)[1] not in seen:
            seen.add(r.rsplit("/", 1)[1])
            reach(schemas[r.rsplit("/", 1)[1]])
        for v in node.values():
            reach(v)
    elif isinstance(node, list):
        for v in node:
            reach(v)

if not os.environ.get("ST_NO_CAPS"):
    bodies = [op["requestBody"] for item in doc.get("paths", {}).values() for op in item.values()
              if isinstance(op, dict) and "requestBody" in op]
    reach(bodies)
    for b in bodies:
        walk(b)
    for name in seen:
        walk(schemas[name])
json.dump(doc, open(sys.argv[2], "w"), indent=1)
print(f"run_schemathesis: {len(doc.get('paths', {}))} paths from {sys.argv[1]}", file=sys.stderr)
EOF

auth=()
[ -n "${HUARIZO_API_KEY:-}" ] && auth=(-H "Authorization: Bearer $HUARIZO_API_KEY")
seed=()
[ -n "${ST_SEED:-}" ] && seed=(--seed "$ST_SEED")
export ST_MAX_TOKENS="${ST_MAX_TOKENS:-8}"
export SCHEMATHESIS_HOOKS="$root/tests/server/schemathesis_hooks.py"   # bounds max_tokens when unset
cd "$work"   # hypothesis and report files stay out of the work tree
set +e
# shellcheck disable=SC2086
"$(dirname "$py")/schemathesis" --no-color run "$work/openapi.fuzz.json" --url "$url" \
  --checks "${ST_CHECKS:-not_a_server_error}" \
  --phases examples,coverage,fuzzing \
  --max-examples "${ST_MAX_EXAMPLES:-300}" \
  --workers 1 \
  --request-timeout "${ST_REQUEST_TIMEOUT:-120}" \
  --request-retries 0 \
  --generation-database none \
  --output-sanitize false \
  --report ndjson --report-ndjson-path "$work/events.ndjson" \
  "${auth[@]}" "${seed[@]}" ${ST_EXTRA_ARGS:-}
rc=$?
set -e

"$py" - "$url" "$work/events.ndjson" "${ST_MIN_REQUESTS:-1000}" "$rc" <<'EOF' || rc=1
import json, sys, urllib.request
url, events, minimum, rc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sent = 0
for line in open(events):
    ev = json.loads(line)
    if "ScenarioFinished" in ev:
        sent += len((ev["ScenarioFinished"].get("recorder") or {}).get("interactions") or {})
ok = True
try:
    with urllib.request.urlopen(url + "/health", timeout=30) as r:
        alive = r.status == 200
except Exception as e:  # noqa: BLE001
    alive = False
    print(f"run_schemathesis: /health after the run: {e}", file=sys.stderr)
if not alive:
    print("run_schemathesis: FAIL: the server does not answer /health after the run (crashed?)", file=sys.stderr)
    ok = False
if sent < minimum:
    print(f"run_schemathesis: FAIL: only {sent} requests sent (want at least {minimum}; raise ST_MAX_EXAMPLES)", file=sys.stderr)
    ok = False
print(f"run_schemathesis: {sent} requests, schemathesis exit {rc}, server {'alive' if alive else 'DEAD'}", file=sys.stderr)
sys.exit(0 if ok else 1)
EOF

if [ "$rc" -eq 0 ] && [ -z "${ST_REPORT_DIR:-}" ]; then
  rm -rf "$work"
else
  echo "run_schemathesis: report and fuzzed schema kept in $work" >&2
fi
exit "$rc"
