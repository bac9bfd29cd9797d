#!/usr/bin/env bash
# CoMERA against dense AdamW on `tiny` (default corpus): validation loss and perplexity,
# parameter count, planner memory, peak RSS and step time.
#
#   bench/comera_tiny.sh [STEPS [NAME...]]      (default 150 steps, every NAME below)
#
# NAMEs: dense (AdamW); comera-r30 (TT rank 30, --target-compression 10) and comera-r12
# (rank 12, --target-compression 20) at the default gate learning-rate scale (10); the same
# with -g1 (--gate-lr-scale 1: gates at the cores' rate). Each trains STEPS steps of 8 x 256
# tokens (the `train` defaults otherwise: AdamW lr 3e-3, warm-up 60, cosine, clip 1;
# CoMERA's late stage after two thirds of the steps) under /usr/bin/time into
# runs/comera-NAME, then `subspace bench` times 10 steps and `subspace memory` prices it.
# Writes results/comera/NAME/ (metrics.jsonl, run_config.json, bench.json, memory.json) and
# results/comera/summary.tsv over every NAME done so far.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SUBSPACE_BIN:-.build/release/subspace}
steps=${1:-150}
shift || true
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(dense comera-r30 comera-r12 comera-r30-g1 comera-r12-g1)
data=${SUBSPACE_DATA:-../shared/data/shakespeare}
out=results/comera
mkdir -p "$out"
tt() {  # the TT flags of a name, without --target-compression (for `memory`)
  case $1 in
    dense) echo "";;
    comera-r30*) echo "--parametrization comera --tt-rank 30";;
    comera-r12*) echo "--parametrization comera --tt-rank 12";;
  esac
}
flags() {
  local f
  f="$(tt "$1")"
  case $1 in comera-r30*) f="$f --target-compression 10";; comera-r12*) f="$f --target-compression 20";; esac
  case $1 in *-g1) f="$f --gate-lr-scale 1";; esac
  echo "$f"
}
for n in "${names[@]}"; do
  cmd="$bin train --preset tiny --data $data $(flags "$n") --steps $steps --eval-every 50 --sample-tokens 0 --seed 0 --out runs/comera-$n --overwrite"
  /usr/bin/time -f %M -o "$out/$n.rss_kib" $cmd > "$out/$n.log" 2>&1
  mkdir -p "$out/$n"
  cp "runs/comera-$n/metrics.jsonl" "runs/comera-$n/run_config.json" "$out/$n/"
  echo "$cmd" > "$out/$n/command.txt"
  $bin bench --preset tiny $(flags "$n") --steps 10 --json > "$out/$n/bench.json"
  $bin memory --model tiny $(tt "$n") --json > "$out/$n/memory.json"
done
python3 - "$out" > "$out/summary.tsv" <<'PY'
import json, os, sys
out = sys.argv[1]
order = ["dense", "comera-r30", "comera-r12", "comera-r30-g1", "comera-r12-g1"]
print("name\tparams\ttt_params\ttt_compression\ttt_ranks\tval_loss\tval_ppl\tplanner_total_mib\tpeak_rss_mib\tstep_ms_bench\tcommand")
for n in order:
    if not os.path.exists(f"{out}/{n}/bench.json"): continue
    last = [json.loads(l) for l in open(f"{out}/{n}/metrics.jsonl")][-1]
    mem, bench = json.load(open(f"{out}/{n}/memory.json")), json.load(open(f"{out}/{n}/bench.json"))
    rss = int(open(f"{out}/{n}.rss_kib").read().split()[-1]) / 1024
    comp = f"{last['tt_compression']:.2f}" if "tt_compression" in last else ""
    print("\t".join(str(x) for x in [n, mem["params"], last.get("tt_params", ""), comp, last.get("tt_ranks", ""),
          f"{last['val_loss']:.4f}", f"{last['val_ppl']:.2f}", f"{mem['total_bytes'] / 2**20:.1f}", f"{rss:.0f}",
          f"{bench['step_ms_median']:.0f}", open(f"{out}/{n}/command.txt").read().strip()]))
PY
cat "$out/summary.tsv"
