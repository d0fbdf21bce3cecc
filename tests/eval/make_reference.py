#!/usr/bin/env python3
"""Merges `huarizo eval --log-samples` items with lm_eval_llama_cpp.py's reference scores
into the committed fixture tests/reference/eval_<model>.json (prompt, choices and the
reference log-probability of each choice per item; lm-eval's acc per task), and prints
the agreement with huarizo's own numbers. The file's "agreement" block records that
agreement with the huarizo that made the samples (the committed fixtures: before huarizo
followed the AVX2 build, so their huarizo figures are stale); the test recomputes it with
the huarizo under test and prints it.

Usage: make_reference.py SAMPLES.jsonl REF.json OUT.json
"""
import json
import statistics
import sys

samples_path, ref_path, out_path = sys.argv[1:4]
# The llama.cpp build the reference came from (avx2 or avx512; see crates/huarizo-kernels/src/isa.rs).
ggml_isa = sys.argv[4] if len(sys.argv) > 4 else "avx2"
ref = json.load(open(ref_path))["tasks"]
items, report = [], {}
by_task = {}
for line in open(samples_path, encoding="utf-8"):
    s = json.loads(line)
    if s.get("choices"):
        by_task.setdefault(s["task"], []).append(s)
for task, ss in by_task.items():
    r = ref[task]
    diffs, same, ours_acc = [], 0, []
    for s in ss:
        lp = r["logprobs"][str(s["doc_id"])] if str(s["doc_id"]) in r["logprobs"] else r["logprobs"][s["doc_id"]]
        diffs += [abs(a - b) for a, b in zip(s["logprobs"], lp)]
        same += int(max(range(len(lp)), key=lambda i: (lp[i], -i)) == s["chosen"])
        ours_acc.append(s["score"])
        items.append({"task": task, "doc_id": s["doc_id"], "prompt": s["prompt"],
                      "choices": s["choices"], "choice_scores": s["choice_scores"],
                      "reference_logprobs": lp})
    report[task] = {
        "items": len(ss),
        "max_abs_diff_nats": max(diffs),
        "median_abs_diff_nats": statistics.median(diffs),
        "same_choice": same / len(ss),
        "huarizo": statistics.mean(ours_acc),
        "lm_eval_llama_cpp_acc": r["acc"],
    }
json.dump({"ggml_isa": ggml_isa, "agreement": report, "items": items}, open(out_path, "w"), indent=1,
          ensure_ascii=False)
for task, x in report.items():
    print(f"{task:<40} n={x['items']:<4} max|Δ|={x['max_abs_diff_nats']:.2e} "
          f"median|Δ|={x['median_abs_diff_nats']:.2e} same={x['same_choice']:.3f} "
          f"huarizo={x['huarizo']:.4f} lm-eval={x['lm_eval_llama_cpp_acc']:.4f}")
