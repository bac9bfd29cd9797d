#!/usr/bin/env bash
# CoMERA against dense AdamW, GaLore and Low-Rank pre-training on a preset (default corpus):
# validation loss and perplexity against parameter count, planner memory and peak RSS, and
# step time against dense.
#
#   bench/comera_compare.sh PRESET STEPS [NAME...]   train each NAME (default: all below)
#   bench/comera_compare.sh PRESET time [NAME...]    time 10 steps of each NAME, back to back
#   bench/comera_compare.sh PRESET table             write the summary table only
#
# NAMEs: dense (AdamW lr 1e-3), galore (rank R, lr 1e-2, scale 0.25, gap 200), lowrank
# (--parametrization low-rank, rank R, lr 1e-3) -- each baseline at the best rate of the
# 300-step `lowrank` sweep on tiny (results/lowrank-300) -- and CoMERA at AdamW lr 3e-3 (the
# `train` default, the gates at 10x): comera-r30 (TT rank 30, --target-compression 10) and
# comera-r12 (rank 12, --target-compression 20), and both with the TTM embedding
# (--tt-embedding, ranks up to 32): comera-r30-emb, comera-r12-emb. R is 64 on tiny and
# 128 on wider presets (a quarter of the width, as GaLore's 60M runs). Each trains STEPS steps of 8 x 256 tokens
# (warm-up 60, cosine, clip 1; CoMERA's late stage after two thirds of the steps) under
# /usr/bin/time into runs/comera-PRESET-NAME; `subspace memory` prices it. Writes
# results/comera/PRESET/NAME/ (metrics.jsonl, run_config.json, memory.json, command.txt,
# rss_kib; bench.json from `time`) and results/comera/PRESET/summary.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SUBSPACE_BIN:-.build/release/subspace}
preset=${1:?usage: bench/comera_compare.sh PRESET STEPS|time|table [NAME...]}
mode=${2:?usage: bench/comera_compare.sh PRESET STEPS|time|table [NAME...]}
shift 2
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(dense galore lowrank comera-r30 comera-r12 comera-r30-emb comera-r12-emb)
data=${SUBSPACE_DATA:-../shared/data/shakespeare}
out=results/comera/$preset
mkdir -p "$out"
rank=128; [[ $preset == tiny ]] && rank=64
shape() {  # the flags that fix a NAME's model and optimizer (for `memory` and `bench`)
  case $1 in
    dense) echo "--optimizer adamw";;
    galore) echo "--optimizer galore --rank $rank";;
    lowrank) echo "--parametrization low-rank --adapter-rank $rank";;
    comera-r30) echo "--parametrization comera --tt-rank 30";;
    comera-r12) echo "--parametrization comera --tt-rank 12";;
    comera-r30-emb) echo "--parametrization comera --tt-rank 30 --tt-embedding";;
    comera-r12-emb) echo "--parametrization comera --tt-rank 12 --tt-embedding";;
    *) echo "unknown name $1" >&2; exit 2;;
  esac
}
train_flags() {  # the rest of a NAME's training flags
  case $1 in
    dense|lowrank) echo "--lr 1e-3";;
    galore) echo "--lr 1e-2 --scale 0.25 --update-gap 200";;
    comera-r30*) echo "--target-compression 10";;
    comera-r12*) echo "--target-compression 20";;
  esac
}
for n in "${names[@]}"; do
  [[ $mode == table ]] && break
  mkdir -p "$out/$n"
  if [[ $mode == time ]]; then
    $bin bench --preset "$preset" $(shape "$n") --steps 10 --json > "$out/$n/bench.json"
    continue
  fi
  run=runs/comera-$preset-$n
  cmd="$bin train --preset $preset --data $data $(shape "$n") $(train_flags "$n") --steps $mode --eval-every 50 --sample-tokens 0 --seed 0 --out $run --overwrite"
  /usr/bin/time -f %M -o "$out/$n/rss_kib" $cmd > "$out/$n/train.log" 2>&1
  cp "$run/metrics.jsonl" "$run/run_config.json" "$out/$n/"
  echo "$cmd" > "$out/$n/command.txt"
  $bin memory --model "$preset" $(shape "$n") --json > "$out/$n/memory.json"
done
python3 - "$out" > "$out/summary.tsv" <<'PY'
import json, os, sys
out = sys.argv[1]
order = ["dense", "galore", "lowrank", "comera-r30", "comera-r12", "comera-r30-emb", "comera-r12-emb"]
print("name\tparams\ttt_params\ttt_compression\ttt_ranks\tval_loss\tval_ppl\tplanner_total_mib\tpeak_rss_mib\tstep_ms_bench\tstep_x_dense\tcommand")
def step_ms(n):
    p = f"{out}/{n}/bench.json"
    return json.load(open(p))["step_ms_median"] if os.path.exists(p) else None
dense = step_ms("dense")
for n in order:
    if not os.path.exists(f"{out}/{n}/memory.json"): continue
    last = [json.loads(l) for l in open(f"{out}/{n}/metrics.jsonl")][-1]
    mem = json.load(open(f"{out}/{n}/memory.json"))
    rss = int(open(f"{out}/{n}/rss_kib").read().split()[-1]) / 1024
    comp = f"{last['tt_compression']:.2f}" if "tt_compression" in last else ""
    ms = step_ms(n)
    print("\t".join(str(x) for x in [n, mem["params"], last.get("tt_params", ""), comp, last.get("tt_ranks", ""),
          f"{last['val_loss']:.4f}", f"{last['val_ppl']:.2f}", f"{mem['total_bytes'] / 2**20:.1f}", f"{rss:.0f}",
          "" if ms is None else f"{ms:.0f}", "" if ms is None or not dense else f"{ms / dense:.2f}",
          open(f"{out}/{n}/command.txt").read().strip()]))
PY
cat "$out/summary.tsv"
