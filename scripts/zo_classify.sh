#!/usr/bin/env bash
# Fine-tuning without backprop on a classification task: which of two plays (Macbeth or
# Twelfth Night, neither in the pre-training split) a speech comes from, labelled " war" or
# " love" after the template "This play is about", as a
# prompt-completion file (scripts/make_play_task.py). A tiny model pre-trained on Shakespeare
# (BASE, a run directory or checkpoint) is fine-tuned with MeZO, LOZO and SubZero against
# AdamW and SGD with backprop, on the completion's tokens only, constant rate, 16 examples a
# step, the accuracy over the held-out tenth of the file:
#   - at equal forward passes (a zeroth-order step runs 2 forwards; a backprop step counts as
#     1 forward here, its backward not counted, which favours zeroth order), and
#   - at equal wall time: backprop steps that take MeZO's training seconds, from the step time
#     of the equal-forward run.
# Writes results/zo/classify.tsv. Usage: scripts/zo_classify.sh BASE [ZO_STEPS] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release/subspace
base=$1; zo_steps=${2:-400}; work=${3:-$(mktemp -d)}
mkdir -p "$work" results/zo
task=$work/task.jsonl
python3 scripts/make_play_task.py --out "$task"
out=results/zo/classify.tsv
field() { sed -n "s/.*\"$2\" : \([0-9.e-]*\).*/\1/p" "$1/summary.json" | head -1; }
printf "method\tflags\tsteps\tforward_passes\ttrain_seconds\tval_loss\tval_accuracy\n" > "$out"
base_eval=$($bin eval --checkpoint "$base" --data "$task" --split validation --seq 64 --batch 16 --json)
printf "base (no fine-tuning)\t\t0\t0\t0\t%s\t%s\n" \
  "$(echo "$base_eval" | sed -E 's/.*"loss": *([0-9.]+).*/\1/')" "$(echo "$base_eval" | sed -E 's/.*"accuracy": *([0-9.]+).*/\1/')" >> "$out"
run() {  # name steps flags...
  local name=$1 steps=$2; shift 2
  local fwd=$steps; case "$*" in *--trainer*) fwd=$((2 * steps));; esac
  if $bin train --init-from "$base" --data "$task" --steps "$steps" --batch 16 --seq 64 --schedule constant --warmup 0 \
      --eval-every 0 --sample-tokens 0 --out "$work/$name" --overwrite "$@" > "$work/$name.log" 2>&1; then
    printf "%s\t%s\t%s\t%s\t%.0f\t%s\t%s\n" "$name" "$*" "$steps" "$fwd" "$(field "$work/$name" trainSeconds)" \
      "$(field "$work/$name" valLoss)" "$(field "$work/$name" valAccuracy)" >> "$out"
  else
    printf "%s\t%s\t%s\t%s\t\tfailed: %s\t\n" "$name" "$*" "$steps" "$fwd" "$(grep -o 'error: .*' "$work/$name.log" | tail -1)" >> "$out"
  fi
}
for lr in 1e-4 3e-5; do run "mezo-lr$lr" "$zo_steps" --trainer mezo --lr $lr; done
run lozo "$zo_steps" --trainer lozo --lr 1e-4
run subzero "$zo_steps" --trainer subzero --lr 1e-4
run adamw $((2 * zo_steps)) --optimizer adamw --lr 1e-4
run sgd $((2 * zo_steps)) --optimizer sgd --lr 1e-2
# Equal wall time: as many backprop steps as fit in MeZO's (lr 1e-4) training seconds.
mezo_s=$(field "$work/mezo-lr1e-4" trainSeconds)
for m in adamw sgd; do
  per=$(awk -v s="$(field "$work/$m" trainSeconds)" -v n=$((2 * zo_steps)) 'BEGIN { print s / n }')
  steps=$(awk -v t="$mezo_s" -v p="$per" 'BEGIN { n = int(t / p); print n < 1 ? 1 : n }')
  flags=$(awk -F'\t' -v m="$m" '$1 == m { print $2 }' "$out")
  # shellcheck disable=SC2086
  run "$m-equal-time" "$steps" $flags
done
cat "$out"
