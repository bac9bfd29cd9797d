#!/bin/sh
# EGGROLL pre-training of `tiny` from scratch on the default corpus against backprop AdamW
# for the same wall time: both runs start together, one thread each (SUBSPACE_THREADS=1), so
# that they share the machine alike, and both are interrupted (SIGTERM: a clean stop with a
# checkpoint) after DURATION seconds (default 720). Writes results/zo/pretrain.tsv: per
# logged step, the run, the step (a generation for EGGROLL), the elapsed step time (the sum
# of step_ms, evaluation excluded), the training loss and the validation loss where one was
# measured (16 batches every --eval-every steps).
#   bench/eggroll_pretrain.sh [DURATION]
set -eu
duration=${1:-720}
mkdir -p runs/zo-pretrain results/zo
egg="--trainer eggroll --population 32 --batch 2 --seq 128 --lr 3 --sigma 1e-3 --schedule constant --warmup 0 --steps 5000 --eval-every 10"
adamw="--steps 600 --eval-every 25"
SUBSPACE_THREADS=1 .build/release/subspace train $egg --out runs/zo-pretrain/eggroll --overwrite > runs/zo-pretrain/eggroll.log 2>&1 &
p1=$!
SUBSPACE_THREADS=1 .build/release/subspace train $adamw --out runs/zo-pretrain/adamw --overwrite > runs/zo-pretrain/adamw.log 2>&1 &
p2=$!
sleep "$duration"
kill -TERM $p1 $p2 2>/dev/null || true
wait $p1 $p2 || true
python3 - "$egg" "$adamw" <<'PY'
import json, sys
rows = ["run\tstep\telapsed_s\tloss\tval_loss\tcommand"]
for run, flags in (("eggroll", sys.argv[1]), ("adamw", sys.argv[2])):
    t = 0.0
    for line in open(f"runs/zo-pretrain/{run}/metrics.jsonl"):
        m = json.loads(line)
        t += m["step_ms"] / 1000
        v = m.get("val_loss")
        rows.append(f"{run}\t{m['step']}\t{t:.1f}\t{m['loss']:.4f}\t{'' if v is None else f'{v:.4f}'}\tSUBSPACE_THREADS=1 subspace train {flags}")
open("results/zo/pretrain.tsv", "w").write("\n".join(rows) + "\n")
PY
grep -v "^run" results/zo/pretrain.tsv | awk -F'\t' '$5 != ""' | tail -n 6
