#!/usr/bin/env python3
"""Prints, as JSON, the per-item per-choice log-likelihoods lm_eval logged in OUTDIR (the
--output_path of tests/server/run_lm_eval.sh; its newest samples file for the task):

    tests/server/lm_eval_loglikelihoods.py OUTDIR [--task huarizo_arc_mini] [--check URL]

Output: [{"doc_id", "id", "target", "choices": [{"context", "continuation",
"loglikelihood", "is_greedy"}]}], in doc order, choices in the task's order. lm_eval
scored each (context, continuation) as: whole = tokenize(context + continuation),
ctx = tokenize(context), continuation tokens = whole[len(ctx):] (no BOS added; trailing
spaces of the context moved to the continuation first), log-likelihood = the sum of those
tokens' logprobs given everything before them.

--check URL re-derives every value from the server at URL (its /tokenize, and
/v1/completions with echo, logprobs and max_tokens 0) and exits 1 on a difference over
1e-3: a check of the lm_eval pipeline itself (request shape, the [ctxlen:-1] slice).
Only the Python standard library is needed.
"""
import argparse
import glob
import json
import os
import sys
import urllib.request


def samples_file(outdir, task):
    files = glob.glob(os.path.join(outdir, "**", f"samples_{task}_*.jsonl"), recursive=True)
    if not files:
        sys.exit(f"lm_eval_loglikelihoods: no samples_{task}_*.jsonl under {outdir} (run lm_eval with --log_samples)")
    return max(files, key=os.path.getmtime)


def read(path):
    items = []
    with open(path) as f:
        for line in f:
            s = json.loads(line)
            args = s["arguments"]
            keys = sorted(args, key=lambda k: int(k.rsplit("_", 1)[1]))  # gen_args_0, gen_args_1, ...
            resps = s["filtered_resps"]
            if len(resps) != len(keys):
                sys.exit(f"lm_eval_loglikelihoods: doc {s['doc_id']}: {len(keys)} arguments but {len(resps)} responses")
            choices = []
            for k, r in zip(keys, resps):
                ll, greedy = r
                choices.append({
                    "context": args[k]["arg_0"],
                    "continuation": args[k]["arg_1"],
                    "loglikelihood": float(ll),
                    "is_greedy": greedy in (True, "True"),
                })
            target = s.get("target")
            items.append({
                "doc_id": s["doc_id"],
                "id": s.get("doc", {}).get("id"),
                "target": int(target) if isinstance(target, str) and target.isdigit() else target,
                "choices": choices,
            })
    items.sort(key=lambda x: x["doc_id"])
    return items


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    if os.environ.get("HUARIZO_API_KEY"):
        req.add_header("Authorization", "Bearer " + os.environ["HUARIZO_API_KEY"])
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)


def check(items, url):
    url = url.rstrip("/")
    url = url[:-3] if url.endswith("/v1") else url
    tok = lambda s: post(url + "/tokenize", {"content": s})["tokens"]
    worst, bad = 0.0, 0
    for it in items:
        for c in it["choices"]:
            ctx, cont = c["context"], c["continuation"]
            n = len(ctx) - len(ctx.rstrip())
            if n:
                ctx, cont = ctx[:-n], ctx[-n:] + cont
            whole, ctx_ids = tok(ctx + cont), tok(ctx)
            r = post(url + "/v1/completions", {"prompt": [whole], "echo": True, "logprobs": 1, "max_tokens": 0, "temperature": 0})
            lps = r["choices"][0]["logprobs"]["token_logprobs"]
            if len(lps) != len(whole):
                sys.exit(f"check: doc {it['doc_id']}: {len(whole)} tokens but {len(lps)} logprobs with max_tokens 0")
            ll = sum(lps[len(ctx_ids):])
            d = abs(ll - c["loglikelihood"])
            worst = max(worst, d)
            if d > 1e-3:
                bad += 1
                print(f"check: doc {it['doc_id']} {cont!r}: lm_eval {c['loglikelihood']:.6f}, server {ll:.6f}", file=sys.stderr)
    n = sum(len(it["choices"]) for it in items)
    print(f"check: {n - bad}/{n} log-likelihoods re-derived from {url} (largest difference {worst:.2e})", file=sys.stderr)
    return bad == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--task", default="huarizo_arc_mini")
    ap.add_argument("--check", metavar="URL")
    a = ap.parse_args()
    path = samples_file(a.outdir, a.task)
    items = read(path)
    print(f"lm_eval_loglikelihoods: {len(items)} docs from {path}", file=sys.stderr)
    json.dump(items, sys.stdout, indent=1)
    print()
    if a.check and not check(items, a.check):
        sys.exit(1)


if __name__ == "__main__":
    main()
