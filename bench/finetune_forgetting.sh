#!/usr/bin/env bash
# Forgetting after fine-tuning: each cell of a `finetune` suite evaluated on the base corpus's
# validation split (what the fine-tune may have forgotten) beside its own validation loss.
#
#   bench/finetune_forgetting.sh SUITE_DIR [BASE_CORPUS] > SUITE_DIR/forgetting.tsv
#
# BASE_CORPUS defaults to the Shakespeare corpus that `scripts/setup.sh` fetches (data/ or
# ../shared/data/). Columns: cell, fine-tuning validation loss (the cell's summary.json),
# base-corpus validation loss and its change from the base checkpoint's (first row).
set -euo pipefail
suite=${1:?usage: finetune_forgetting.sh SUITE_DIR [BASE_CORPUS]}
corpus=${2:-}
if [[ -z $corpus ]]; then
  for c in data/shakespeare ../shared/data/shakespeare; do [[ -d $c ]] && corpus=$c && break; done
fi
[[ -n $corpus ]] || { echo "finetune_forgetting: no Shakespeare corpus; pass BASE_CORPUS" >&2; exit 1; }
subspace=${SUBSPACE:-subspace}
base=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("base") or "")' "$suite/suite.json")
[[ -n $base ]] || base="$suite/base"
loss() { "$subspace" eval --checkpoint "$1" --data "$corpus" --split validation --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["loss"])'; }
ref=$(loss "$base")
printf 'cell\tfinetune_val_loss\tbase_corpus_val_loss\tchange\n'
printf 'base\t-\t%.4f\t0\n' "$ref"
for d in "$suite"/*/; do
  cell=$(basename "$d")
  [[ -f $d/summary.json && $cell != base ]] || continue
  ft=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["valLoss"])' "$d/summary.json")
  b=$(loss "$d")
  printf '%s\t%.4f\t%.4f\t%+.4f\n' "$cell" "$ft" "$b" "$(python3 -c "print($b - $ref)")"
done
