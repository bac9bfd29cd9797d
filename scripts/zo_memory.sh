#!/usr/bin/env bash
# Peak RSS of the zeroth-order trainers against eval and AdamW training on the tiny preset
# (20 steps of 8 x 256 tokens, one shared tokenizer), plus the planner's estimate of each.
# Writes results/zo/peak_rss.tsv. Usage: scripts/zo_memory.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.build/release/subspace
work=${1:-$(mktemp -d)}
mkdir -p "$work"
out=results/zo/peak_rss.tsv
peak() { /usr/bin/time -f "%M" -o "$work/time" "$@" > "$work/log" 2>&1; echo $(( $(cat "$work/time") / 1024 )); }
plan() { $bin memory --model tiny "$@" --json | sed -E 's/.*"total_bytes":([0-9]+).*/\1/' | awk '{ printf "%d", $1 / 1048576 }'; }
printf "command\tpeak_rss_mib\tplanned_mib\n" > "$out"
rss=$(peak $bin train --steps 20 --eval-every 0 --sample-tokens 0 --out "$work/adamw" --overwrite)
tok="$work/adamw/tokenizer.json"
printf "train (adamw)\t%s\t%s\n" "$rss" "$(plan --optimizer adamw)" >> "$out"
for r in mezo lozo lozo-m subzero; do
  rss=$(peak $bin train --trainer $r --steps 20 --eval-every 0 --sample-tokens 0 --tokenizer "$tok" --out "$work/$r" --overwrite)
  printf "train --trainer %s\t%s\t%s\n" "$r" "$rss" "$(plan --trainer $r)" >> "$out"
done
rss=$(peak $bin train --trainer eggroll --population 8 --steps 20 --eval-every 0 --sample-tokens 0 --tokenizer "$tok" --out "$work/eggroll" --overwrite)
printf "train --trainer eggroll --population 8\t%s\t%s\n" "$rss" "$(plan --trainer eggroll)" >> "$out"
data=$(sed -n 's/^  "data" : "\(.*\)",$/\1/p' "$work/adamw/run_config.json" | sed 's#\\/#/#g')
rss=$(peak $bin eval --checkpoint "$work/adamw/checkpoint" --data "$data" --split validation)
printf "eval --split validation\t%s\t\n" "$rss" >> "$out"
cat "$out"
