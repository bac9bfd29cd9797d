#!/usr/bin/env bash
# Fine-tuning without backprop: a tiny model pre-trained on Shakespeare (BASE, a run
# directory or checkpoint) adapted to Milton, MeZO, LOZO and SubZero against AdamW and SGD
# backprop at equal forward passes (a zeroth-order step runs 2 forward passes, a backprop
# step 1 forward and 1 backward). Constant rate, no warm-up, 8 x 256 tokens a step; the
# validation loss is over the whole Milton validation split.
# Writes results/zo/finetune.tsv. Usage: scripts/zo_finetune.sh BASE [ZO_STEPS] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release/subspace
base=$1; zo_steps=${2:-100}; work=${3:-$(mktemp -d)}
mkdir -p "$work"
data=../shared/data/milton
out=results/zo/finetune.tsv
val() { sed -n 's/.*"valLoss" : \([0-9.]*\).*/\1/p' "$1/summary.json"; }
secs() { sed -n 's/.*"trainSeconds" : \([0-9.]*\).*/\1/p' "$1/summary.json" | awk '{ printf "%.0f", $1 }'; }
printf "method\tflags\tsteps\tforward_passes\tval_loss\ttrain_seconds\n" > "$out"
before=$($bin eval --checkpoint "$base" --data "$data" --split validation --json | sed -E 's/.*"loss": *([0-9.]+).*/\1/')
printf "base (no fine-tuning)\t\t0\t0\t%s\t0\n" "$before" >> "$out"
run() {  # name steps flags...
  local name=$1 steps=$2; shift 2
  local fwd=$steps; case "$*" in *--trainer*) fwd=$((2 * steps));; esac
  if $bin train --init-from "$base" --data "$data" --steps "$steps" --schedule constant --warmup 0 --eval-every 0 \
      --sample-tokens 0 --out "$work/$name" --overwrite "$@" > "$work/$name.log" 2>&1; then
    printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$name" "$*" "$steps" "$fwd" "$(val "$work/$name")" "$(secs "$work/$name")" >> "$out"
  else  # diverged (or failed): the last validation loss the log shows
    printf "%s\t%s\t%s\t%s\t%s\t\n" "$name" "$*" "$steps" "$fwd" "failed: $(grep -o 'validation loss [0-9.e+inf]*' "$work/$name.log" | tail -1)" >> "$out"
  fi
}
for lr in 1e-2 3e-3 1e-3 1e-4; do run "mezo-lr$lr" "$zo_steps" --trainer mezo --lr $lr; done
run lozo "$zo_steps" --trainer lozo --lr 1e-4
run subzero "$zo_steps" --trainer subzero --lr 1e-4
run adamw $((2 * zo_steps)) --optimizer adamw --lr 1e-3
run sgd $((2 * zo_steps)) --optimizer sgd
cat "$out"
