#!/usr/bin/env bash
# Copies a suite directory's small outputs (reports, per-cell summaries, metrics, command
# records, figures) into a tracked results directory, leaving checkpoints and weights behind.
#
#   bench/keep_results.sh runs/suite results/suite
#
# `runs/` is git-ignored and does not outlive the machine; `results/` is committed, so a
# finished cell is never lost and `subspace bench --suite ... --out results/X --report-only`
# and `scripts/make_results.py results/...` work from a fresh clone.
set -euo pipefail
src=${1:?usage: keep_results.sh SUITE_DIR RESULTS_DIR}
dst=${2:?usage: keep_results.sh SUITE_DIR RESULTS_DIR}
[[ -d $src ]] || { echo "keep_results: no directory $src" >&2; exit 1; }
mkdir -p "$dst"
dst=$(cd "$dst" && pwd)   # absolute, so it survives the cd below
cd "$src"
# Small text files only: checkpoints (.safetensors, .bin, optimizer state) stay behind.
find . -type f \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' -o -name '*.svg' -o -name '*.csv' -o -name '*.txt' \) \
  -size -2M -not -name 'tokenizer.json' -not -path '*/checkpoint*' -print0 |
while IFS= read -r -d '' f; do
  mkdir -p "$dst/$(dirname "$f")"
  cp -p "$f" "$dst/$f.tmp" && mv "$dst/$f.tmp" "$dst/$f"
done
echo "keep_results: $src -> $dst"
