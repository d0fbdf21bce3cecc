#!/usr/bin/env python3
"""Reference scores for `huarizo eval`: lm-evaluation-harness with llama.cpp's arithmetic.

Reads the items `huarizo eval --log-samples FILE` scored (prompt, choices, scores), writes
them as local lm-eval tasks (one YAML + JSONL per task: `doc_to_text` is the prompt,
`doc_to_choice` the choices, `target_delimiter` empty, metric `acc` on the best-scored
choice), and runs lm_eval's `simple_evaluate` with a model class that computes
log-likelihoods through llama-cpp-python's low-level API (`Llama(logits_all=True)`,
`eval(tokens)`, log-softmax of `scores`). Not its completion API or server: with `echo`
those shift prompt log-probabilities by one position (llama-cpp-python #1983), and
llama.cpp's server returns none (llama.cpp #27174).

With `--transformers`, the same tasks run on lm-eval's own `hf` model instead: transformers
loads the GGUF (dequantized, float32 activations) on the CPU; the run is timed, for the
speed comparison in docs/EVAL.md.

Usage: lm_eval_llama_cpp.py [--transformers] MODEL.gguf SAMPLES.jsonl OUT.json
Needs lm_eval (0.4.x) and llama_cpp importable (PYTHONPATH may add a second venv), or
torch + transformers + gguf for --transformers.
"""
import json
import math
import os
import sys
import tempfile
from collections import defaultdict

import time

import numpy as np
from lm_eval import simple_evaluate
from lm_eval.api.model import TemplateLM
from lm_eval.tasks import TaskManager


class LlamaCppLowLevel(TemplateLM):
    """lm-eval model over llama-cpp-python's eval(): exact prompt log-probabilities."""

    def __init__(self, path, n_ctx=4096):
        super().__init__()
        from llama_cpp import Llama

        self.llm = Llama(model_path=path, n_ctx=n_ctx, logits_all=True, n_batch=512,
                         verbose=False)
        meta = self.llm.metadata
        self.add_bos = meta.get("tokenizer.ggml.add_bos_token", "false") == "true"
        self.bos = self.llm.token_bos()
        self.eos = self.llm.token_eos()

    @property
    def eot_token_id(self):
        return self.eos

    @property
    def prefix_token_id(self):
        return self.bos if self.add_bos else self.eos

    def tok_encode(self, string, **kwargs):
        ids = self.llm.tokenize(string.encode("utf-8"), add_bos=False, special=False)
        return ([self.bos] if self.add_bos else []) + ids

    def _loglikelihood_tokens(self, requests, disable_tqdm=False, **kwargs):
        out = []
        for _, context_enc, continuation_enc in requests:
            tokens = (context_enc + continuation_enc)[-(self.llm.n_ctx() + 1):]
            n_cont = len(continuation_enc)
            self.llm.reset()
            self.llm.eval(tokens[:-1])
            scores = np.asarray(self.llm.scores[: len(tokens) - 1], dtype=np.float64)
            total, greedy = 0.0, True
            for pos in range(len(tokens) - n_cont, len(tokens)):
                row = scores[pos - 1]
                m = row.max()
                lse = m + math.log(np.exp(row - m).sum())
                total += row[tokens[pos]] - lse
                greedy &= int(row.argmax()) == tokens[pos]
            out.append((total, greedy))
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def generate_until(self, requests, disable_tqdm=False):
        raise NotImplementedError


def main():
    args = sys.argv[1:]
    transformers = "--transformers" in args
    args = [a for a in args if a != "--transformers"]
    model, samples_path, out_path = args[:3]
    by_task = defaultdict(list)
    for line in open(samples_path, encoding="utf-8"):
        s = json.loads(line)
        if s.get("choices"):
            by_task[s["task"]].append(s)
    tmp = tempfile.mkdtemp(prefix="huarizo-lm-eval-")
    names = {}
    for task, items in by_task.items():
        name = "huarizo_" + "".join(c if c.isalnum() else "_" for c in task)
        names[name] = task
        data = os.path.join(tmp, name + ".jsonl")
        with open(data, "w", encoding="utf-8") as f:
            for s in items:
                # The best-scored choice (first on ties); BIG-bench's `target` can be an
                # explanation rather than a choice (strategyqa).
                scores = s["choice_scores"]
                gold = scores.index(max(scores))
                f.write(json.dumps({"doc_id": s["doc_id"], "prompt": s["prompt"],
                                    "choices": s["choices"], "gold": gold}) + "\n")
        with open(os.path.join(tmp, name + ".yaml"), "w", encoding="utf-8") as f:
            f.write(f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: gold
target_delimiter: ""
num_fewshot: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
""")
    start = time.time()
    if transformers:
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=os.path.dirname(os.path.abspath(model)),
                  gguf_file=os.path.basename(model), dtype="float32", device="cpu",
                  batch_size=8)
    else:
        lm = LlamaCppLowLevel(model)
    res = simple_evaluate(model=lm, tasks=list(names), task_manager=TaskManager(include_path=tmp),
                          log_samples=True, num_fewshot=0)
    out = {"tasks": {}, "seconds": time.time() - start,
           "backend": "transformers" if transformers else "llama-cpp-python"}
    for name, task in names.items():
        per_doc = {}
        for s in res["samples"][name]:
            per_doc[s["doc"]["doc_id"]] = [float(r[0][0]) for r in s["resps"]]
        out["tasks"][task] = {"acc": res["results"][name]["acc,none"], "logprobs": per_doc}
    json.dump(out, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
