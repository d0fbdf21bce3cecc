#!/usr/bin/env python3
"""Prints, as JSON, the requests lm-evaluation-harness builds for the leaderboard tasks on
huarizo's fixture datasets: each task is lm-eval's own YAML (included) with its data
pointed at the local files. huarizo's test compares its prompts and continuations with
these, byte for byte. No model is loaded.

    python tests/eval/lm_eval_requests.py FIXTURES_DIR > requests.json
"""
import glob
import json
import os
import sys
import tempfile

import types

# truthfulqa/utils.py imports rouge_score for its generative variant only; the
# multiple-choice tasks never call it, so an empty stand-in lets the module load.
if "rouge_score" not in sys.modules:
    _rouge = types.ModuleType("rouge_score")
    _rouge.rouge_scorer = types.ModuleType("rouge_scorer")
    _rouge.scoring = types.ModuleType("scoring")
    sys.modules.update({"rouge_score": _rouge, "rouge_score.rouge_scorer": _rouge.rouge_scorer,
                        "rouge_score.scoring": _rouge.scoring})

import lm_eval
from lm_eval.tasks import TaskManager, get_task_dict

TASKS_DIR = os.path.join(os.path.dirname(lm_eval.__file__), "tasks")

# task → (lm-eval YAML to include, dataset folder, shots)
TASKS = {
    "arc_challenge": ("arc/arc_challenge.yaml", "allenai/ai2_arc/ARC-Challenge", 3),
    "hellaswag": ("hellaswag/hellaswag.yaml", "Rowan/hellaswag/data", 2),
    "winogrande": ("winogrande/default.yaml", "allenai/winogrande/winogrande_xl", 3),
    "truthfulqa_mc1": ("truthfulqa/truthfulqa_mc1.yaml", "truthfulqa/truthful_qa/multiple_choice", None),
    "truthfulqa_mc2": ("truthfulqa/truthfulqa_mc2.yaml", "truthfulqa/truthful_qa/multiple_choice", None),
    "mmlu_astronomy": ("mmlu/default/mmlu_astronomy.yaml", "cais/mmlu/astronomy", 5),
    "mmlu_high_school_biology": ("mmlu/default/mmlu_high_school_biology.yaml", "cais/mmlu/high_school_biology", 2),
    "gsm8k": ("gsm8k/gsm8k.yaml", "openai/gsm8k/main", 3),
}


def split_files(folder):
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "*"))):
        name = os.path.basename(path)
        split = name.split(".")[0].split("-")[0]
        out[split] = path
    return out


def main():
    fixtures = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp()
    for task, (yaml_rel, folder, _) in TASKS.items():
        files = split_files(os.path.join(fixtures, folder))
        kind = "json"
        with open(os.path.join(tmp, f"fx_{task}.yaml"), "w") as f:
            f.write(f"include: {os.path.join(TASKS_DIR, yaml_rel)}\n")
            f.write(f"task: fx_{task}\n")
            f.write(f"dataset_path: {kind}\n")
            f.write("dataset_name: null\n")
            f.write("dataset_kwargs:\n  data_files:\n")
            for split, path in files.items():
                if path.endswith(".parquet"):
                    # One loader per dataset: lm-eval reads a JSON-lines copy.
                    import pyarrow.parquet as pq
                    copy = os.path.join(tmp, f"{task}-{split}.jsonl")
                    with open(copy, "w") as c:
                        for row in pq.read_table(path).to_pylist():
                            c.write(json.dumps(row) + "\n")
                    path = copy
                f.write(f"    {split}: {path}\n")
    tm = TaskManager(include_path=tmp, include_defaults=False)
    out = {}
    for task, (_, _, shots) in TASKS.items():
        t = get_task_dict([f"fx_{task}"], tm)[f"fx_{task}"]
        if shots is not None and t.get_config("num_fewshot") != 0:
            t.set_config(key="num_fewshot", value=shots)
        t.set_fewshot_seed(seed=1234)
        t.build_all_requests(rank=0, world_size=1)
        items = {}
        for inst in t.instances:
            args = inst.arguments
            if t.OUTPUT_TYPE == "generate_until":
                args = [args[0], args[1].get("until")]
            items.setdefault(inst.doc_id, []).append(list(args))
        out[task] = {"shots": t.get_config("num_fewshot"),
                     "items": [items[k] for k in sorted(items)]}
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
