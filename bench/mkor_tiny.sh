#!/usr/bin/env bash
# Steps and wall time to a target validation loss on `tiny` for AdamW, Muon, MKOR and MKOR-H,
# and MKOR's factor bytes.
#
#   bench/mkor_tiny.sh [TARGET_VAL_LOSS]      (default 5.5)
#
# Trains each method for 300 steps (batch 8 x 256, the `train` defaults: warm-up 60, cosine,
# clip 1), evaluating every 25 steps, into runs/mkor-METHOD; times 20 steps of each with
# `subspace bench` back to back; copies metrics.jsonl and run_config.json to
# results/mkor/METHOD and writes results/mkor/summary.md. MKOR and MKOR-H run their Adam
# inner rule at AdamW's lr 3e-3; Muon runs its defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SUBSPACE_BIN:-.build/release/subspace}
target=${1:-5.5}
data=${SUBSPACE_DATA:-../shared/data/shakespeare}
methods=(adamw muon mkor mkor-h)
flags() { case $1 in mkor|mkor-h) echo "--lr 3e-3";; *) echo "";; esac; }
for m in "${methods[@]}"; do
  [[ -f runs/mkor-$m/checkpoint/model.safetensors ]] && continue
  $bin train --preset tiny --data "$data" --optimizer "$m" $(flags "$m") --steps 300 --eval-every 25 \
    --sample-tokens 0 --seed 0 --out "runs/mkor-$m" --overwrite
done
mkdir -p results/mkor
for m in "${methods[@]}"; do
  mkdir -p "results/mkor/$m"
  cp "runs/mkor-$m/metrics.jsonl" "runs/mkor-$m/run_config.json" "results/mkor/$m/"
  $bin bench --preset tiny --optimizer "$m" $(flags "$m") --steps 20 --json > "results/mkor/$m/bench.json"
done
$bin memory --model tiny --optimizer mkor --json > results/mkor/memory-mkor.json
$bin memory --model tiny --optimizer adamw --json > results/mkor/memory-adamw.json
python3 - "$target" "${methods[@]}" > results/mkor/summary.md <<'PY'
import json, sys
target, methods = float(sys.argv[1]), sys.argv[2:]
print(f"Target validation loss {target} on `tiny` (300 steps, batch 8 x 256, eval every 25 steps).\n")
print("| method | steps to target | step ms (bench, 20 steps) | time to target (s) | val loss at 300 | optimizer state MiB |")
print("|---|---:|---:|---:|---:|---:|")
for m in methods:
    rows = [json.loads(l) for l in open(f"results/mkor/{m}/metrics.jsonl")]
    evals = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    hit = next((s for s, v in evals if v <= target), None)
    b = json.load(open(f"results/mkor/{m}/bench.json"))
    ms = b["step_ms_median"]
    state = b.get("optimizer_state_bytes", 0) / 2**20
    t = f"{hit * ms / 1000:.0f}" if hit else "-"
    print(f"| {m} | {hit or '> 300'} | {ms:.0f} | {t} | {evals[-1][1]:.4f} | {state:.1f} |")
mk, ad = (json.load(open(f"results/mkor/memory-{x}.json")) for x in ("mkor", "adamw"))
print(f"\nMKOR optimizer states {mk['optimizer_state_bytes']:,} B against AdamW's {ad['optimizer_state_bytes']:,} B (`subspace memory --model tiny --optimizer mkor`).")
PY
cat results/mkor/summary.md
