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
#
#   bench/galore_overhead.sh --amortised [--preset llama60m] [--batch 4] [--steps 6] ...
#
# For presets where 200 steps take too long: times STEPS steps of AdamW, of GaLore with no
# refresh in the window (T = 100000: the projections alone) and of GaLore refreshing every
# step (T = 1), alternately; the refresh cost is the difference of the last two, and the mean
# step at T is the projections-only step plus refresh / T (what the long run's mean is).
# Arguments after `--` go to every `subspace bench` (e.g. `-- --grad-accum 4`).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=tiny; batch=8; rank=64; steps=200; rounds=1; amortised=0; extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset) preset=$2; shift 2;; --batch) batch=$2; shift 2;; --rank) rank=$2; shift 2;;
    --steps) steps=$2; shift 2;; --rounds) rounds=$2; shift 2;; --amortised) amortised=1; shift;;
    --) shift; extra=("$@"); break;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
bin=${SUBSPACE_BIN:-.build/release/subspace}
[[ -x $bin ]] || swift build -c release >/dev/null
out=$(mktemp -d)
gaps="200 100"
[[ $amortised == 1 ]] && gaps="100000 1"
for r in $(seq 1 "$rounds"); do
  $bin bench --preset "$preset" --batch "$batch" --steps "$steps" --json --optimizer adamw "${extra[@]}" >>"$out/adamw.jsonl"
  for gap in $gaps; do
    $bin bench --preset "$preset" --batch "$batch" --steps "$steps" --json --optimizer galore \
      --rank "$rank" --update-gap "$gap" --scale 0.25 "${extra[@]}" >>"$out/galore-T$gap.jsonl"
  done
done
if [[ $amortised == 1 ]]; then
  python3 - "$out" "$preset" "$batch" "$rank" "$steps" <<'PY'
import json, os, statistics, sys
d, preset, batch, rank, steps = sys.argv[1:]
med = lambda f, k: statistics.median(json.loads(l)[k] for l in open(os.path.join(d, f)) if l.strip())
base, proj, every = med("adamw.jsonl", "step_ms_mean"), med("galore-T100000.jsonl", "step_ms_mean"), med("galore-T1.jsonl", "step_ms_mean")
refresh = every - proj
print(f"preset {preset}, batch {batch}, rank {rank}, {steps} timed steps (amortised)")
print(f"adamw                 step_ms_mean {base:9.1f}")
print(f"galore, no refresh    step_ms_mean {proj:9.1f}  ratio {proj / base:.3f}")
print(f"one refresh (all matrices)        {refresh:9.1f} ms")
for gap in (200, 100):
    g = proj + refresh / gap
    print(f"galore T={gap:<4} step_ms_mean {g:9.1f}  ratio {g / base:.3f}")
PY
  exit 0
fi
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
