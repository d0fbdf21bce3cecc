#!/usr/bin/env bash
# Remeasures the unrelated-model null of huarizo lineage (UNRELATED_NULL in
# crates/huarizo-lineage/src/invariants.rs): runs the three unrelated pairs among the test
# models and prints their matched-layer similarity (the statistic), its mean and sd, and
# for reference the similarity of every (layer of A, layer of B) pair.
set -euo pipefail
cd "$(dirname "$0")/.."
T="${HUARIZO_TESTDATA:-$HOME/.cache/huarizo/testdata}"
cargo build --release -q -p huarizo-cli
out=$(mktemp -d)
for pair in "qwen smollm2" "gemma3 smollm2" "gemma3 qwen"; do
  set -- $pair
  ./target/release/huarizo lineage --json --no-behaviour "$T/$1.gguf" "$T/$2.gguf" > "$out/$1-$2.json"
done
python3 - "$out"/*.json <<'PY'
import json, sys, math
rows = []
for path in sys.argv[1:]:
    r = json.load(open(path))["invariants"]
    rows.append((path.rsplit("/", 1)[-1], r["all_pairs_mean"], r["all_pairs_sd"], r["similarity"]))
    print(f"{rows[-1][0]:<24} layer pairs {r['all_pairs_mean']:.4f} ± {r['all_pairs_sd']:.4f}; matched {r['similarity']:.4f}")
stats = [t for *_, t in rows]
mean = sum(stats) / len(stats)
sd = math.sqrt(sum((t - mean) ** 2 for t in stats) / (len(stats) - 1))
print(f"matched-layer similarity of unrelated pairs: mean {mean:.4f}, sd {sd:.4f}")
PY
