"""schemathesis hooks for run_schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

A generated completion request that sets no max_tokens / max_completion_tokens would make
the server generate until end-of-generation or the end of its context (thousands of tokens
from a small model that rambles); such requests get max_tokens = ST_MAX_TOKENS, so a fuzz
run takes minutes. Any value the fuzzer did put there (in range or not) is sent as is.
"""
import os

import schemathesis

CAP = int(os.environ.get("ST_MAX_TOKENS", "8"))
ROUTES = ("/v1/chat/completions", "/v1/completions", "/chat/completions", "/completions")


@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if case.path in ROUTES and isinstance(body, dict):
        if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body["max_tokens"] = CAP
