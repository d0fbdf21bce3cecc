#!/usr/bin/env python3
"""Checks `huarizo serve` with the official `openai` client (and plain HTTP for the
non-OpenAI routes). Point it at a running server:

    HUARIZO_URL=http://127.0.0.1:8080/v1 $(scripts/test-venv.sh) tests/server/test_openai_client.py [-k NAME] [-v]

HUARIZO_API_KEY is sent as the bearer token when set (and then a wrong key must get 401).
Prints one line per test and a closing `N passed, N failed`; exits 1 on any failure.
"""
import json
import math
import os
import sys
import time
import traceback
import urllib.error
import urllib.request

import openai

URL = os.environ.get("HUARIZO_URL", "http://127.0.0.1:8080/v1").rstrip("/")
ROOT = URL[: -len("/v1")] if URL.endswith("/v1") else URL
KEY = os.environ.get("HUARIZO_API_KEY")
client = openai.OpenAI(base_url=URL, api_key=KEY or "none", max_retries=0, timeout=300)
MODEL = None  # set by test_models
TESTS = []
VERBOSE = "-v" in sys.argv
sys.stdout.reconfigure(line_buffering=True)


def test(fn):
    TESTS.append(fn)
    return fn


class Fail(Exception):
    pass


def check(cond, msg, *ctx):
    if not cond:
        raise Fail(msg + ("" if not ctx else ": " + " | ".join(repr(c)[:600] for c in ctx)))


def log(*a):
    if VERBOSE:
        print("     ", *a)


def http(method, path, body=None, raw=None, headers=None):
    """(status, parsed JSON or text) of a request to the server root."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json"} if data is not None else {}
    if KEY:
        h["Authorization"] = f"Bearer {KEY}"
    h.update(headers or {})
    req = urllib.request.Request(ROOT + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            status, text, ctype = r.status, r.read().decode(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, text, ctype = e.code, e.read().decode(), e.headers.get("Content-Type", "")
    if "json" in ctype:
        return status, json.loads(text)
    return status, text


def check_error_body(body, status):
    check(isinstance(body, dict) and isinstance(body.get("error"), dict), f"{status} body is not {{'error': {{...}}}}", body)
    e = body["error"]
    for k in ("message", "type", "param", "code"):
        check(k in e, f"error body lacks '{k}'", body)
    check(isinstance(e["message"], str) and e["message"], "error message is empty", body)


def tokenize(text):
    status, body = http("POST", "/tokenize", {"content": text})
    check(status == 200 and isinstance(body.get("tokens"), list), "/tokenize failed", status, body)
    return body["tokens"]


def check_usage(u, max_completion=None):
    check(u is not None, "usage is missing")
    check(u.prompt_tokens > 0, "usage.prompt_tokens must be positive", u)
    check(u.completion_tokens >= 0, "usage.completion_tokens is negative", u)
    check(u.total_tokens == u.prompt_tokens + u.completion_tokens, "usage.total_tokens != prompt + completion", u)
    if max_completion is not None:
        check(u.completion_tokens <= max_completion, f"more than {max_completion} completion tokens", u)


def is_logprob(x):
    return isinstance(x, float) and math.isfinite(x) and x <= 0.0


CHAT = [{"role": "user", "content": "What is the capital of France? Answer in one short sentence."}]
PROMPT = "The capital of France is"


# ---------------------------------------------------------------------------------------
@test
def test_models():
    global MODEL
    models = client.models.list()
    ids = [m.id for m in models.data]
    check(len(ids) >= 1 and all(isinstance(i, str) and i for i in ids), "no model listed", ids)
    MODEL = ids[0]
    log("model:", MODEL)


@test
def test_health_metrics_openapi():
    status, body = http("GET", "/health")
    check(status == 200 and isinstance(body, dict) and body.get("status") == "ok", "/health not ok", status, body)
    status, text = http("GET", "/metrics")
    check(status == 200 and isinstance(text, str) and "# TYPE" in text, "/metrics is not Prometheus text", status, text)
    status, doc = http("GET", "/openapi.json")
    check(status == 200 and isinstance(doc, dict) and str(doc.get("openapi", "")).startswith("3."), "/openapi.json", status)
    for p in ("/v1/models", "/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize", "/health", "/metrics"):
        check(p in doc.get("paths", {}), f"/openapi.json does not describe {p}")


@test
def test_tokenize_detokenize():
    text = "Hello world, 123 tokens!"
    toks = tokenize(text)
    check(len(toks) > 0 and all(isinstance(t, int) and t >= 0 for t in toks), "bad token ids", toks)
    status, body = http("POST", "/detokenize", {"tokens": toks})
    check(status == 200 and body.get("content") == text, "detokenize(tokenize(text)) != text", status, body)
    status, body = http("POST", "/detokenize", {"tokens": [10**9]})
    check(status == 400, "out-of-vocabulary id must be a 400", status, body)
    check_error_body(body, status)


@test
def test_lm_eval_remote_tokenizer_routes():
    # lm_eval's tokenizer_backend=remote (vLLM-style): GET /tokenizer_info,
    # POST /tokenize {"prompt", "add_special_tokens"} -> {"tokens"}, POST /detokenize -> {"prompt"}.
    status, info = http("GET", "/tokenizer_info")
    check(status == 200 and isinstance(info, dict) and "eos_token" in info, "/tokenizer_info", status, info)
    status, body = http("POST", "/tokenize", {"prompt": "Hello world", "add_special_tokens": False})
    check(status == 200 and body.get("tokens") == tokenize("Hello world"), "/tokenize with 'prompt'", status, body)
    status, body = http("POST", "/detokenize", {"tokens": tokenize("Hello world")})
    check(status == 200 and body.get("prompt") == "Hello world", "/detokenize must also answer 'prompt'", status, body)
    if info.get("eos_token"):
        ids = tokenize(info["eos_token"])
        check(len(ids) == 1, "special-token text must tokenize to that one special token", info["eos_token"], ids)


@test
def test_chat():
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=32, temperature=0)
    check(r.object == "chat.completion" and len(r.choices) == 1, "one chat.completion choice expected", r)
    c = r.choices[0]
    log(repr(c.message.content), c.finish_reason, r.usage)
    check(c.index == 0 and c.message.role == "assistant", "bad choice", c)
    check(isinstance(c.message.content, str) and c.message.content.strip(), "empty content", c)
    check(c.finish_reason in ("stop", "length"), "bad finish_reason", c.finish_reason)
    check_usage(r.usage, 32)
    check(r.usage.completion_tokens > 0, "no completion tokens counted", r.usage)
    if c.finish_reason == "length":
        check(r.usage.completion_tokens == 32, "finish_reason length but completion_tokens != max_tokens", r.usage)


@test
def test_chat_max_completion_tokens():
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_completion_tokens=3, temperature=0)
    check_usage(r.usage, 3)
    check(r.choices[0].finish_reason in ("stop", "length"), "bad finish_reason", r.choices[0].finish_reason)


@test
def test_chat_stream():
    chunks = list(client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=32, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    check(len(chunks) >= 3, "too few chunks", len(chunks))
    check(all(ch.object == "chat.completion.chunk" for ch in chunks), "chunk object must be chat.completion.chunk")
    check(len({ch.id for ch in chunks}) == 1, "chunks have different ids")
    usage_chunks = [ch for ch in chunks if ch.usage is not None]
    check(len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1], "include_usage: exactly one usage chunk, the last")
    check(chunks[-1].choices == [], "the usage chunk must have empty choices", chunks[-1])
    body = chunks[:-1]
    finishes = [c.finish_reason for ch in body for c in ch.choices if c.finish_reason is not None]
    check(len(finishes) == 1 and body[-1].choices and body[-1].choices[0].finish_reason == finishes[0],
          "exactly one finish_reason, in the last choice chunk", finishes)
    check(finishes[0] in ("stop", "length"), "bad finish_reason", finishes)
    text = "".join(c.delta.content or "" for ch in body for c in ch.choices)
    check(text.strip(), "streamed text is empty")
    check_usage(chunks[-1].usage, 32)
    ref = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=32, temperature=0)
    check(text == ref.choices[0].message.content, "greedy streamed text differs from non-streamed", text, ref.choices[0].message.content)
    check(chunks[-1].usage.completion_tokens == ref.usage.completion_tokens, "usage differs stream vs non-stream")


@test
def test_chat_logprobs():
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs
    check(lp is not None and lp.content, "logprobs.content missing", r.choices[0])
    for e in lp.content:
        check(isinstance(e.token, str) and is_logprob(e.logprob), "bad logprob entry", e)
        check(len(e.top_logprobs) == 3, "top_logprobs must have 3 entries", e)
        check(all(is_logprob(t.logprob) for t in e.top_logprobs), "bad top logprob", e)
        # greedy: the chosen token is the most likely one
        check(e.logprob >= max(t.logprob for t in e.top_logprobs) - 1e-4, "greedy token is not the top one", e)
    check("".join(e.token for e in lp.content) == r.choices[0].message.content, "logprob tokens do not spell the content",
          [e.token for e in lp.content], r.choices[0].message.content)


def check_legacy(lp, n_tokens=None):
    check(lp is not None, "logprobs missing")
    toks, tlp, top, off = lp.tokens, lp.token_logprobs, lp.top_logprobs, lp.text_offset
    check(isinstance(toks, list) and len(toks) == len(tlp) == len(top) == len(off), "logprobs lists differ in length", lp)
    if n_tokens is not None:
        check(len(toks) == n_tokens, f"expected {n_tokens} logprob entries", len(toks), toks)
    check(all(off[i] <= off[i + 1] for i in range(len(off) - 1)), "text_offset not increasing", off)
    return toks, tlp, top, off


@test
def test_completion_echo_scoring():
    n_prompt = len(tokenize(PROMPT))
    r = client.completions.create(model=MODEL, prompt=PROMPT, echo=True, logprobs=1, max_tokens=0)
    check(r.object == "text_completion" and len(r.choices) == 1, "one text_completion choice expected", r)
    c = r.choices[0]
    check(c.text == PROMPT, "echo text != prompt", c.text)
    toks, tlp, top, off = check_legacy(c.logprobs, n_prompt)
    check("".join(toks) == PROMPT, "echoed tokens do not join to the prompt", toks)
    check(tlp[0] is None and top[0] is None, "the first prompt token's logprob must be null", tlp[0], top[0])
    check(all(is_logprob(x) for x in tlp[1:]) and any(x < 0 for x in tlp[1:]), "prompt logprobs must be negative floats", tlp)
    check(off[0] == 0 and all(off[i] == len("".join(toks[:i])) for i in range(len(toks))), "text_offset", off)
    for t, x, d in zip(toks[1:], tlp[1:], top[1:]):
        check(isinstance(d, dict) and len(d) >= 1 and all(is_logprob(v) for v in d.values()), "bad top_logprobs", d)
        check(max(d.values()) >= x - 1e-4, "a top logprob is below the chosen token's", t, x, d)
        if t in d:  # lm_eval's is_greedy compares these with ==
            check(d[t] == x, "token logprob differs from its own top_logprobs entry", t, x, d)
    check(r.usage.prompt_tokens == n_prompt and r.usage.completion_tokens == 0, "usage for max_tokens=0", r.usage)


@test
def test_completion_lm_eval_request():
    # What lm_eval's local-completions sends for a loglikelihood request: prompt=[[ids]]
    # (or the text, with tokenized_requests=False), echo, logprobs=1, max_tokens=1,
    # temperature 0. It sums token_logprobs[ctxlen:-1], so there must be exactly one entry
    # past the prompt even when the generated token is the end-of-generation token, which
    # this chat-formatted prompt (an answer just finished) makes the likely next token.
    text = "<|im_start|>user\nSay OK.<|im_end|>\n<|im_start|>assistant\nOK."
    status, info = http("GET", "/tokenizer_info")
    if status == 200 and info.get("eos_token") and info["eos_token"] != "<|im_end|>":
        text = "Say OK: OK." + info["eos_token"]
    ids = tokenize(text)
    base = {"model": MODEL, "temperature": 0, "max_tokens": 1, "logprobs": 1, "seed": 1234, "echo": True}
    for prompt in (text, [ids]):
        status, r = http("POST", "/v1/completions", {**base, "prompt": prompt})
        check(status == 200, "lm_eval-style request failed", status, r)
        c, n = r["choices"][0], r["usage"]["prompt_tokens"]
        lp = c["logprobs"]
        log("prompt tokens:", n, "finish:", c["finish_reason"], "last tokens:", lp["tokens"][-3:])
        check(len(lp["token_logprobs"]) == n + 1, "need an entry for each prompt token + 1 generated (even for EOS)",
              "prompt as text" if prompt is text else "prompt as ids", n, len(lp["token_logprobs"]), lp["tokens"][-3:])
        check(all(lp["top_logprobs"][i] for i in range(1, n + 1)), "top_logprobs must be non-empty dicts")
        # the prompt part must not depend on max_tokens
        status, r0 = http("POST", "/v1/completions", {**base, "prompt": prompt, "max_tokens": 0})
        check(status == 200, "max_tokens=0 echo failed", status, r0)
        a, b = r0["choices"][0]["logprobs"]["token_logprobs"], lp["token_logprobs"][:n]
        check(len(a) == len(b) and all(x == y or abs(x - y) < 1e-4 for x, y in zip(a[1:], b[1:])), "prompt logprobs differ", a, b)


@test
def test_completion_prompt_forms():
    ids = tokenize(PROMPT)
    for prompt, n_choices in ((PROMPT, 1), ([PROMPT, "Hello"], 2), (ids, 1), ([ids, ids[:2]], 2)):
        r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=2, temperature=0)
        check(sorted(c.index for c in r.choices) == list(range(n_choices)), "choice indices", prompt, r.choices)
    a = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0)
    b = client.completions.create(model=MODEL, prompt=ids, max_tokens=6, temperature=0)
    check(a.choices[0].text == b.choices[0].text, "text prompt and its token ids differ", a.choices[0].text, b.choices[0].text)


@test
def test_completion_logprobs():
    r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8, logprobs=3, temperature=0)
    c = r.choices[0]
    toks, tlp, top, off = check_legacy(c.logprobs)
    check(len(toks) >= 1 and all(is_logprob(x) for x in tlp), "logprobs must be negative floats", tlp)
    check(all(isinstance(d, dict) and 1 <= len(d) <= 4 for d in top), "top_logprobs must hold 3 (+ chosen) entries", top)
    for t, x, d in zip(toks, tlp, top):
        check(abs(max(d.values()) - x) < 1e-4, "greedy token is not the most likely", t, x, d)
    check_usage(r.usage, 8)
    if c.finish_reason == "length":
        check(len(toks) == 8 and "".join(toks) == c.text, "tokens do not spell the text", toks, c.text)


@test
def test_completion_stream():
    ref = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0)
    chunks = list(client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(c.text for ch in chunks for c in ch.choices)
    check(text == ref.choices[0].text, "streamed completion differs", text, ref.choices[0].text)
    check(chunks[-1].usage is not None and chunks[-1].choices == [], "include_usage: last chunk carries usage only", chunks[-1])
    check(chunks[-1].usage.completion_tokens == ref.usage.completion_tokens, "usage differs", chunks[-1].usage, ref.usage)
    fins = [c.finish_reason for ch in chunks for c in ch.choices if c.finish_reason]
    check(fins == [ref.choices[0].finish_reason], "finish_reason", fins)


@test
def test_n2():
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=12, temperature=1, seed=7, n=2)
    check(sorted(c.index for c in r.choices) == [0, 1], "n=2 needs choices 0 and 1", r.choices)
    check(all(c.message.content is not None for c in r.choices), "content missing")
    check_usage(r.usage, 24)
    r = client.completions.create(model=MODEL, prompt=[PROMPT, "Hello"], max_tokens=4, temperature=1, seed=7, n=2)
    check(sorted(c.index for c in r.choices) == [0, 1, 2, 3], "2 prompts x n=2 needs choices 0..3", r.choices)
    check_usage(r.usage, 16)


@test
def test_seed():
    kw = dict(model=MODEL, messages=CHAT, max_tokens=24, temperature=1, top_p=1, seed=1234)
    a = client.chat.completions.create(**kw).choices[0].message.content
    b = client.chat.completions.create(**kw).choices[0].message.content
    check(a == b, "same seed at temperature 1 gave different texts", a, b)
    kw = dict(model=MODEL, prompt="Once upon a time", max_tokens=24, temperature=1, seed=99)
    a = client.completions.create(**kw).choices[0].text
    b = client.completions.create(**kw).choices[0].text
    check(a == b, "same seed at temperature 1 gave different completions", a, b)


def pick_stop(text):
    """A stop string that occurs in `text` after its start: its second word, or a later char."""
    words = text.split()
    for w in words[1:]:
        i = text.find(w, 1)
        if i > 0:
            return w
    return text[len(text) // 2:][:2] if len(text) >= 2 else None


@test
def test_stop():
    r = client.completions.create(model=MODEL, prompt="Count: one, two, three,", max_tokens=16, temperature=0)
    full = r.choices[0].text
    stop = pick_stop(full)
    check(stop, "the unstopped completion is too short to pick a stop string from", full)
    r = client.completions.create(model=MODEL, prompt="Count: one, two, three,", max_tokens=16, temperature=0, stop=[stop, "\x00never"])
    log(repr(full), repr(stop), repr(r.choices[0].text))
    check(r.choices[0].text == full[: full.find(stop)], "stop not honoured (completions)", full, stop, r.choices[0].text)
    check(r.choices[0].finish_reason == "stop", "finish_reason must be stop", r.choices[0].finish_reason)
    full = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=32, temperature=0).choices[0].message.content
    stop = pick_stop(full)
    check(stop, "the unstopped chat answer is too short", full)
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=32, temperature=0, stop=stop)
    check(r.choices[0].message.content == full[: full.find(stop)], "stop not honoured (chat)", full, stop, r.choices[0].message.content)
    check(r.choices[0].finish_reason == "stop", "finish_reason must be stop", r.choices[0].finish_reason)


@test
def test_penalties_accepted():
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8, temperature=0.7, top_p=0.9, seed=3,
                                       presence_penalty=0.5, frequency_penalty=0.5)
    check(r.choices[0].message.content is not None, "no content")


@test
def test_json_object():
    msgs = [{"role": "user", "content": "Give the capital of France as JSON with a key \"city\"."}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=256, temperature=0,
                                       response_format={"type": "json_object"})
    c = r.choices[0]
    check(c.finish_reason == "stop", "json_object output did not finish", c.finish_reason, c.message.content)
    check(isinstance(json.loads(c.message.content), dict), "not a JSON object", c.message.content)


@test
def test_json_schema():
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "population_millions": {"type": "integer"}},
              "required": ["city", "population_millions"], "additionalProperties": False}
    msgs = [{"role": "user", "content": "What is the capital of France and its population in millions?"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=256, temperature=0,
                                       response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}})
    c = r.choices[0]
    check(c.finish_reason == "stop", "json_schema output did not finish", c.finish_reason, c.message.content)
    v = json.loads(c.message.content)
    check(isinstance(v, dict) and set(v) == {"city", "population_millions"}, "does not match the schema's keys", v)
    check(isinstance(v["city"], str) and isinstance(v["population_millions"], int), "wrong value types", v)


@test
def test_tools():
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, tools=tools, tool_choice="required", max_tokens=128, temperature=0)
    c = r.choices[0]
    check(c.message.tool_calls, "tool_choice=required gave no tool call", c)
    tc = c.message.tool_calls[0]
    check(tc.type == "function" and tc.function.name == "get_weather" and tc.id, "bad tool call", tc)
    check(isinstance(json.loads(tc.function.arguments), dict), "arguments are not a JSON object", tc.function.arguments)
    check(c.finish_reason == "tool_calls", "finish_reason must be tool_calls", c.finish_reason)
    # the tool's answer goes back in, and the model answers in text
    msgs2 = msgs + [{"role": "assistant", "content": None, "tool_calls": [tc.model_dump()]},
                    {"role": "tool", "tool_call_id": tc.id, "content": "{\"temperature_c\": 21, \"sky\": \"clear\"}"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs2, tools=tools, max_tokens=32, temperature=0)
    check(r.choices[0].message.content or r.choices[0].message.tool_calls, "no answer after the tool result", r.choices[0])


@test
def test_errors():
    for kw, param in ((dict(temperature=5), "temperature"), (dict(n=0), "n"), (dict(max_tokens=10**7), None),
                      (dict(top_logprobs=50, logprobs=True), None)):
        try:
            client.chat.completions.create(model=MODEL, messages=CHAT, **kw)
        except openai.BadRequestError as e:
            check_error_body(e.response.json(), 400)
            if param:
                check(e.response.json()["error"]["param"] in (param, None), "error.param", e.response.json())
        else:
            raise Fail(f"{kw} was accepted")
    try:
        client.completions.create(model=MODEL, prompt=[[10**9]], max_tokens=1)
    except openai.BadRequestError as e:
        check_error_body(e.response.json(), 400)
    else:
        raise Fail("an out-of-vocabulary prompt token was accepted")
    for raw in (b"{not json", b"[]", b'{"messages": "hi"}', b""):
        status, body = http("POST", "/v1/chat/completions", raw=raw)
        check(status == 400, "bad body must be a 400", raw, status, body)
        check_error_body(body, status)
    status, body = http("GET", "/v1/no-such-route")
    check(status == 404, "unknown route must be a 404", status, body)
    check_error_body(body, status)


@test
def test_api_key():
    if not KEY:
        return "skipped (HUARIZO_API_KEY not set)"
    bad = openai.OpenAI(base_url=URL, api_key=KEY + "-wrong", max_retries=0)
    try:
        bad.models.list()
    except openai.AuthenticationError as e:
        check_error_body(e.response.json(), 401)
    else:
        raise Fail("a wrong API key was accepted")


def main():
    sel = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else None
    passed, failed, skipped = [], [], []
    print(f"server tests against {URL}")
    for t in TESTS:
        name = t.__name__
        if sel and sel not in name and name != "test_models":
            continue
        t0 = time.time()
        try:
            note = t()
        except Exception as e:  # noqa: BLE001 - any error is a failure of that test
            failed.append(name)
            msg = str(e) if isinstance(e, Fail) else f"{type(e).__name__}: {e}"
            print(f"FAIL {name} ({time.time() - t0:.1f}s): {msg}")
            if not isinstance(e, Fail) or VERBOSE:
                traceback.print_exc(limit=3, file=sys.stdout)
            continue
        if isinstance(note, str) and note.startswith("skipped"):
            skipped.append(name)
            print(f"SKIP {name}: {note}")
        else:
            passed.append(name)
            print(f"ok   {name} ({time.time() - t0:.1f}s)")
    if failed:
        print("failed: " + ", ".join(failed))
    print(f"{len(passed)} passed, {len(failed)} failed" + (f", {len(skipped)} skipped" if skipped else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
