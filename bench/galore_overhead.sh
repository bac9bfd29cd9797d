#!/usr/bin/env bash
# GaLore's mean step time against AdamW's, projector refreshes included (issue: at most
# 1.05x at T = 200 and 1.10x at T = 100).
#
#   bench/galore_overhead.sh [--preset tiny] [--batch 8] [--rank 64] [--steps 200] [--rounds 1]
#
# Each run times STEPS steps after `subspace bench`'s 2 untimed warm-up steps, so the timed
# window holds STEPS / T refreshes (global steps T, 2T, ...): with the default 200 steps, one
# at T = 200 and two at T = 100, which is the amortised cost a long run pays. The three
# runs alternate ROUNDS times and the medians are compared. GaLore's extra work does not
# depend on the batch, so a small batch is the strict test.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=tiny; batch=8; rank=64; steps=200; rounds=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset) preset=$2; shift 2;; --batch) batch=$2; shift 2;; --rank) rank=$2; shift 2;;
    --steps) steps=$2; shift 2;; --rounds) rounds=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
bin=${SUBSPACE_BIN:-.build/release/subspace}
[[ -x $bin ]] || swift build -c release >/dev/null
out=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  $bin bench --preset "$preset" --batch "$batch" --steps "$steps" --json --optimizer adamw >>"$out/adamw.jsonl"
  for gap in 200 100; do
    $bin bench --preset "$preset" --batch "$batch" --steps "$steps" --json --optimizer galore \
      --rank "$rank" --update-gap "$gap" --scale 0.25 >>"$out/galore-T$gap.jsonl"
  done
done
python3 - "$out" "$preset" "$batch" "$rank" "$steps" <<'PY'
import json, os, statistics, sys
d, preset, batch, rank, steps = sys.argv[1:]
med = lambda f, k: statistics.median(json.loads(l)[k] for l in open(os.path.join(d, f)) if l.strip())
base = med("adamw.jsonl", "step_ms_mean")
print(f"preset {preset}, batch {batch}, rank {rank}, {steps} timed steps")
print(f"adamw        step_ms_mean {base:9.1f}")
for gap in (200, 100):
    g = med(f"galore-T{gap}.jsonl", "step_ms_mean")
    print(f"galore T={gap:<4} step_ms_mean {g:9.1f}  ratio {g / base:.3f}")
PY
