#!/usr/bin/env python3
"""Reference renderer for BIG-bench JSON tasks (bigbench==1.0.0 semantics).

Pure standard library: re-implements exactly the prompt-building parts of
bigbench/api/json_task.py (default_format_fn, make_nshot_dataset, the
task.json loading / dedup / subtask discovery) together with the parts of
numpy's *legacy* np.random.RandomState (MT19937) that those functions use, so
that the rendered prompts, the few-shot example choice and the choice order
are byte-identical to what BIG-bench feeds its model.

See docs/notes/eval-semantics.md, part A, for the spec and line references.

Usage:
  python3 bigbench_render.py TASK_DIR_OR_JSON [--shots 0 1 2 3] [--show N]
                             [--max-examples N] [--seed 42] [--jsonl OUT]
  python3 bigbench_render.py --selftest          # MT19937 known-answer test
  python3 bigbench_render.py --check-numpy TASK  # compare with real numpy +
                                                 # verbatim json_task code

TASK_DIR_OR_JSON is a BIG-bench task directory (containing task.json) or a
task.json path; composite tasks (task.json without "examples") are expanded
into their subdirectory subtasks exactly like JsonTask does.
"""

import argparse
import collections
import copy
import json
import os
import re
import sys

# --------------------------------------------------------------------------
# numpy legacy RandomState (MT19937) -- only the pieces json_task.py uses.


class LegacyRandomState:
    """Bit-exact subset of numpy.random.RandomState(seed=int).

    * seeding: mt19937_seed() == Matsumoto/Nishimura init_genrand(seed)
    * permutation(n) / permutation(list): Fisher-Yates from the end,
      j = random_interval(i) for i = n-1 .. 1 (legacy _shuffle_raw)
    * choice(a, size, replace=False) == a[permutation(len(a))[:size]]
    * choice(a) (scalar, replace=True) == a[randint(0, len(a))] where
      randint uses masked rejection and draws nothing when len(a) == 1.
    """

    N, M = 624, 397

    def __init__(self, seed):
        seed &= 0xFFFFFFFF
        mt = [0] * self.N
        mt[0] = seed
        for i in range(1, self.N):
            mt[i] = (1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xFFFFFFFF
        self.mt = mt
        self.idx = self.N
        self.draws = 0  # number of 32-bit outputs consumed (for debugging)

    def _twist(self):
        mt, N, M = self.mt, self.N, self.M
        for i in range(N):
            y = (mt[i] & 0x80000000) | (mt[(i + 1) % N] & 0x7FFFFFFF)
            v = mt[(i + M) % N] ^ (y >> 1)
            if y & 1:
                v ^= 0x9908B0DF
            mt[i] = v
        self.idx = 0

    def next_uint32(self):
        if self.idx >= self.N:
            self._twist()
        y = self.mt[self.idx]
        self.idx += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        self.draws += 1
        return y & 0xFFFFFFFF

    def random_interval(self, max_):
        """numpy distributions.c random_interval(): uniform in [0, max_]."""
        if max_ == 0:
            return 0
        mask = max_
        for s in (1, 2, 4, 8, 16, 32):
            mask |= mask >> s
        assert max_ <= 0xFFFFFFFF, "64-bit path not needed here"
        while True:
            v = self.next_uint32() & mask
            if v <= max_:
                return v

    def permutation_indices(self, n):
        arr = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.random_interval(i)
            arr[i], arr[j] = arr[j], arr[i]
        return arr

    def permutation(self, seq):
        return [seq[i] for i in self.permutation_indices(len(seq))]

    def choice_without_replacement(self, seq, size):
        if size > len(seq):
            raise ValueError("Cannot take a larger sample than population when 'replace=False'")
        return [seq[i] for i in self.permutation_indices(len(seq))[:size]]

    def choice_one(self, seq):
        # randint(0, n) -> masked bounded draw in [0, n-1]; none when n == 1.
        return seq[self.random_interval(len(seq) - 1)]


# --------------------------------------------------------------------------
# json_task.py logic (bigbench/api/json_task.py, bigbench==1.0.0)

GENERATIVE_METRICS = ["bleu", "bleurt", "exact_str_match", "case_insensitive_str_match",
                      "sequence_f1", "numeric_match_with_0_1_relative_error", "rouge"]
SCORING_METRICS = ["log_likelihood"]
MULTIPLE_CHOICE_METRICS = ["multiple_choice_grade", "calibration_multiple_choice_brier_score",
                           "expected_calibration_error", "weighted_log_probabilities",
                           "weighted_probabilities", "macro_f1"]
DEFAULT_REGEX = r"[^\.\?\!\;\n]+"


def default_format_fn(sample, input_prefix, output_prefix, choice_prefix,
                      random_seed, append_choices_to_input=True):
    """json_task.py:88-142, verbatim semantics (mutates and returns sample)."""
    rng = LegacyRandomState(random_seed)  # a FRESH generator per example
    if "target_scores" in sample:
        choice_dic = sample["target_scores"]
        if append_choices_to_input:  # NB: Python truthiness ("false" is truthy!)
            permuted_choices = rng.permutation(sorted(list(choice_dic.keys())))
            sample["input"] = sample["input"] + choice_prefix + choice_prefix.join(permuted_choices)
        if "target" not in sample:
            max_score = max(choice_dic.values())
            min_score = min(choice_dic.values())
            if (len(choice_dic) == 1 and max_score == 0) or (len(choice_dic) > 1 and max_score <= min_score):
                raise ValueError(f"No correct choice provided in example: {sample}")
            sample["target"] = [k for k, v in choice_dic.items() if v == max_score][0]
        sample["choice"] = list(sample["target_scores"].keys())
    sample["input"] = input_prefix + sample["input"] + output_prefix
    if not isinstance(sample["target"], list):
        sample["target"] = [sample["target"]]
    return sample


def make_nshot_dataset(samples, shots, random_seed, repeat_samples=1, separator=" ",
                       max_examples=None):
    """json_task.py:145-207. Returns list of (original_index, formatted sample)."""
    rng = LegacyRandomState(random_seed)
    samples = copy.deepcopy(samples)
    idx = list(range(len(samples)))
    if shots == 0:
        if max_examples and max_examples < len(samples):
            order = rng.choice_without_replacement(idx, max_examples)
            return [(i, samples[i]) for i in order]
        return list(zip(idx, samples))
    if len(samples) < shots + 1:
        raise ValueError("Do not have enough examples for the number of shots")
    if repeat_samples != 1:
        samples = samples * repeat_samples
        idx = idx * repeat_samples
    if max_examples is not None:
        order = rng.choice_without_replacement(list(range(len(samples))), max_examples)
    else:
        order = list(range(len(samples)))
    out = []
    for qi in order:
        sample = samples[qi]
        validation_example = copy.deepcopy(sample)
        valid_samples = [x for x in samples if x != sample]
        shot_examples = rng.choice_without_replacement(valid_samples, shots)
        context = separator.join([ex["input"] + rng.choice_one(ex["target"]) for ex in shot_examples])
        validation_example["input"] = context + separator + validation_example["input"]
        out.append((idx[qi], validation_example))
    return out


def load_json(path):
    with open(path, "rb") as f:
        return json.load(f, object_pairs_hook=collections.OrderedDict)


def subtask_paths(task_dir):
    """json_utils.py:53-70: <dir>/<sub>/task.json, sorted by full path string."""
    base = os.path.abspath(os.path.expanduser(task_dir))
    paths = []
    for d in os.listdir(base):
        p = os.path.join(base, d)
        if os.path.isdir(p) and os.path.exists(os.path.join(p, "task.json")):
            paths.append(os.path.join(p, "task.json"))
    return sorted(paths)


class Task:
    """Leaf or composite JSON task, mirroring JsonTask.load_and_process_json."""

    def __init__(self, data, parent=None, shot_list=(0,), max_examples=None, random_seed=42,
                 json_path=None):
        if json_path is not None and "examples" not in data:
            subs = subtask_paths(os.path.split(json_path)[0])
            if not subs:
                raise ValueError(f"task {json_path} must have either examples or subtasks")
            data["subtasks"] = [load_json(p) for p in subs]
        self.data = data
        self.shot_list = list(shot_list) or [0]
        self.max_examples = max_examples
        self.random_seed = random_seed
        self.absolute_normalization = data.get("absolute_normalization", False)
        task_name = data["name"].encode("ascii", errors="replace").decode()
        self.name = f"{parent.name}:{task_name}" if parent else task_name
        sub_max = None
        if max_examples and data.get("subtasks"):
            sub_max = max_examples // len(data["subtasks"])
            if sub_max < 1:
                raise ValueError("max_examples must be >= number of subtasks")
        self.subtasks = [Task(t, parent=self, shot_list=self.shot_list, max_examples=sub_max,
                              random_seed=random_seed) for t in data.get("subtasks", [])]
        if self.subtasks:
            return
        self.metrics = data["metrics"]
        self.generative_metrics = [m for m in self.metrics if m in GENERATIVE_METRICS]
        self.multiple_choice_metrics = [m for m in self.metrics if m in MULTIPLE_CHOICE_METRICS]
        self.scoring_metrics = [m for m in self.metrics if m in SCORING_METRICS]
        input_prefix = data.get("example_input_prefix", "\nQ: ")
        output_prefix = data.get("example_output_prefix", "\nA: ")
        choice_prefix = data.get("choice_prefix", "\n  choice: ")
        append = data.get("append_choices_to_input", True)
        self.separator = data.get("few_shot_example_separator", "\n")
        seen, distinct = set(), []
        for x in data["examples"]:  # dedup on json.dumps, first occurrence wins
            s = json.dumps(x)
            if s not in seen:
                seen.add(s)
                distinct.append(x)
        self.n_raw = len(data["examples"])
        if len(distinct) < max(self.shot_list) + 1:
            raise ValueError("insufficient distinct examples")
        raw = copy.deepcopy(distinct)
        self.ds = [default_format_fn(s, input_prefix=input_prefix, output_prefix=output_prefix,
                                     choice_prefix=choice_prefix, random_seed=random_seed,
                                     append_choices_to_input=append)
                   for s in raw]
        self.task_prefix = str(data.get("task_prefix", ""))
        self.output_regex = data.get("output_regex")
        self.stop_string = data.get("stop_string")
        if self.output_regex is None and self.stop_string is None:
            self.output_regex = DEFAULT_REGEX
        self.preferred_score = data["preferred_score"]

    @property
    def num_examples(self):
        if self.subtasks:
            return sum(t.num_examples for t in self.subtasks)
        if self.max_examples:
            return min(self.max_examples, len(self.ds))
        return len(self.ds)

    def leaves(self):
        if self.subtasks:
            for t in self.subtasks:
                yield from t.leaves()
        else:
            yield self

    def queries(self, shots):
        """What evaluate_fixed_shot (json_task.py:596-606) sends to the model."""
        out = []
        for orig_idx, s in make_nshot_dataset(self.ds, shots, random_seed=self.random_seed,
                                              separator=self.separator,
                                              max_examples=self.num_examples):
            q = {
                "task": self.name,
                "shots": shots,
                "example_index": orig_idx,  # index among de-duplicated examples
                "input": self.task_prefix + s["input"],
                "target": s["target"],
            }
            if self.multiple_choice_metrics:
                q["choices"] = s["choice"]  # scored in target_scores key order
                q["target_scores"] = s["target_scores"]
            if self.generative_metrics:
                q["stop_string"] = self.stop_string
                q["output_regex"] = self.output_regex
            out.append(q)
        return out


def load_task(path, **kw):
    json_path = os.path.join(path, "task.json") if os.path.isdir(path) else path
    return Task(load_json(json_path), json_path=json_path, **kw)


# --------------------------------------------------------------------------
# self tests


def selftest():
    # Reference MT19937 init_genrand(5489): 10000th output is 4123659995.
    r = LegacyRandomState(5489)
    for _ in range(9999):
        r.next_uint32()
    assert r.next_uint32() == 4123659995, "MT19937 known-answer test failed"
    r = LegacyRandomState(42)
    first = [r.next_uint32() for _ in range(3)]
    # np.random.RandomState(42).randint(0, 2**32, 3, dtype=np.uint64) -> 1608637542, 3421126067, 4083286876
    assert first == [1608637542, 3421126067, 4083286876], first
    print("selftest OK")


def check_numpy(path, shots_list, max_examples=None):
    """Compare against verbatim json_task functions run with real numpy."""
    import numpy as np  # noqa: F401

    def np_default_format_fn(sample, input_prefix, output_prefix, choice_prefix, random_seed,
                             append_choices_to_input=True):
        def input_format(text):
            return input_prefix + text
        rng = np.random.RandomState(seed=random_seed)
        if "target_scores" in sample:
            choice_dic = sample["target_scores"]
            if append_choices_to_input:
                permuted_choices = rng.permutation(sorted(list(choice_dic.keys())))
                sample["input"] = (sample["input"] + choice_prefix + choice_prefix.join(permuted_choices))
            if "target" not in sample:
                max_score = max(choice_dic.values())
                sample["target"] = [k for k, v in choice_dic.items() if v == max_score][0]
            sample["choice"] = list(sample["target_scores"].keys())
        sample["input"] = input_format(sample["input"]) + output_prefix
        if not isinstance(sample["target"], list):
            sample["target"] = [sample["target"]]
        return sample

    def np_make_nshot_dataset(samples, shots, random_seed, repeat_samples=1, separator=" ",
                              max_examples=None):
        rng = np.random.RandomState(seed=random_seed)
        samples = copy.deepcopy(samples)
        if shots == 0:
            if max_examples and max_examples < len(samples):
                return rng.choice(samples, max_examples, replace=False).tolist()
            else:
                return samples
        if repeat_samples != 1:
            samples = samples * repeat_samples
        fewshot_samples = []
        if max_examples is not None:
            query_samples = rng.choice(samples, max_examples, replace=False)
        else:
            query_samples = samples
        for sample in query_samples:
            validation_example = copy.deepcopy(sample)
            valid_samples = [x for x in samples if x != sample]
            shot_examples = list(rng.choice(valid_samples, shots, replace=False))
            context = separator.join([example["input"] + rng.choice(example["target"])
                                      for example in shot_examples])
            validation_example["input"] = context + separator + validation_example["input"]
            fewshot_samples.append(validation_example)
        return fewshot_samples

    task = load_task(path, shot_list=shots_list, max_examples=max_examples)
    n_ok = 0
    for leaf in task.leaves():
        d = leaf.data
        raw = []
        seen = set()
        for x in d["examples"]:
            s = json.dumps(x)
            if s not in seen:
                seen.add(s)
                raw.append(copy.deepcopy(x))
        ds = [np_default_format_fn(s, d.get("example_input_prefix", "\nQ: "),
                                   d.get("example_output_prefix", "\nA: "),
                                   d.get("choice_prefix", "\n  choice: "), 42,
                                   d.get("append_choices_to_input", True)) for s in raw]
        for shots in shots_list:
            ref = np_make_nshot_dataset(ds, shots, 42, separator=d.get("few_shot_example_separator", "\n"),
                                        max_examples=leaf.num_examples)
            ours = leaf.queries(shots)
            assert len(ref) == len(ours)
            for a, b in zip(ref, ours):
                assert leaf.task_prefix + str(a["input"]) == b["input"], (leaf.name, shots)
                n_ok += 1
    print(f"numpy cross-check OK: {n_ok} prompts identical")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("task", nargs="?")
    ap.add_argument("--shots", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--show", type=int, default=1, help="queries to print per leaf/shot")
    ap.add_argument("--max-examples", type=int, default=None)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--jsonl", help="write every query as JSON lines to this file")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--check-numpy", action="store_true")
    a = ap.parse_args()
    if a.selftest:
        selftest()
        return
    if not a.task:
        ap.error("task path required")
    if a.check_numpy:
        check_numpy(a.task, a.shots, a.max_examples)
        return
    task = load_task(a.task, shot_list=a.shots, max_examples=a.max_examples, random_seed=a.seed)
    sink = open(a.jsonl, "w", encoding="utf-8") if a.jsonl else None
    for leaf in task.leaves():
        for shots in a.shots:
            qs = leaf.queries(shots)
            for q in qs[: a.show]:
                print(f"=== {q['task']}  shots={shots}  example_index={q['example_index']}")
                print("input   =", repr(q["input"]))
                if "choices" in q:
                    print("choices =", repr(q["choices"]))
                    print("scores  =", repr([q["target_scores"][c] for c in q["choices"]]))
                print("target  =", repr(q["target"]))
            if sink:
                for q in qs:
                    sink.write(json.dumps(q, ensure_ascii=False) + "\n")
    if sink:
        sink.close()


if __name__ == "__main__":
    sys.exit(main())
