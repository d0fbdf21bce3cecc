#!/usr/bin/env bash
# Runs lm-evaluation-harness's local-completions model against a running `huarizo serve`
# on the 20-question task in tests/server/lm_eval_task, logging every sample:
#
#   tests/server/run_lm_eval.sh URL OUTDIR      (URL: the server root, e.g. http://127.0.0.1:8080)
#
# Then tests/server/lm_eval_loglikelihoods.py OUTDIR prints the per-choice log-likelihoods.
# Offline: no hub access (HF_HUB_OFFLINE); the tokenizer is the server's own, through
# lm_eval's `remote` tokenizer backend (GET /tokenizer_info, POST /tokenize, /detokenize),
# and requests carry token ids (tokenized_requests=True), so the server scores exactly the
# tokens lm_eval split into context and continuation. (tokenizer_backend=None cannot work:
# lm_eval needs a tokenizer for every loglikelihood request.)
# Env: HUARIZO_MODEL_ID (default: the first id of GET /v1/models), HUARIZO_API_KEY,
# LM_EVAL_EXTRA_ARGS (appended to the lm_eval command line, e.g. "--limit 5").
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 URL OUTDIR" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${HUARIZO_TESTDATA:-$HOME/.cache/huarizo/testdata}"
url="${1%/}"; url="${url%/v1}"
mkdir -p "$2"; out="$(cd "$2" && pwd)"
py="$("$root/scripts/test-venv.sh" | tail -n1)"
model="${HUARIZO_MODEL_ID:-$("$py" -c '
import json, os, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/models")
if os.environ.get("HUARIZO_API_KEY"):
    req.add_header("Authorization", "Bearer " + os.environ["HUARIZO_API_KEY"])
print(json.load(urllib.request.urlopen(req, timeout=30))["data"][0]["id"])' "$url")}"

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export HF_HOME="${HF_HOME:-$data/hf}"   # datasets' cache of the jsonl, kept out of ~/.cache/huggingface
args="model=$model,base_url=$url/v1/completions,num_concurrent=1,max_retries=1"
args+=",tokenizer_backend=remote,tokenized_requests=True,max_length=2048,timeout=300"
if [ -n "${HUARIZO_API_KEY:-}" ]; then
  export OPENAI_API_KEY="$HUARIZO_API_KEY"   # lm_eval sends Authorization: Bearer $OPENAI_API_KEY
  args+=",auth_token=$HUARIZO_API_KEY"       # and this one to the tokenizer routes
fi
cd "$here/lm_eval_task"   # the task's data_files path is relative to this directory
# shellcheck disable=SC2086
exec "$(dirname "$py")/lm_eval" run --model local-completions --model_args "$args" \
  --include_path . --tasks huarizo_arc_mini --batch_size 1 --log_samples --output_path "$out" \
  ${LM_EVAL_EXTRA_ARGS:-}
