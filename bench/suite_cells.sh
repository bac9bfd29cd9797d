#!/usr/bin/env bash
# Runs the 2,000-step pre-training suite one cell at a time, on a copy of the binary (so a
# rebuild cannot change it mid-run), and keeps each finished cell in the committed results/.
#
#   bench/suite_cells.sh [--commit] [cell ...]      (default: every pretrain cell, suite order)
#
# - Before a cell starts, it waits while the file $HOLD (default /tmp/subspace-suite-hold)
#   exists: `touch` it to get a quiet window for a build without a cell's tokens/s paying.
# - runs/suite is first seeded from results/suite (summaries and command records), so cells
#   finished on another machine are skipped, as `subspace bench --suite` skips any finished
#   cell. (Fine-tuning from `runs/suite/adamw` needs that cell's checkpoint: re-run it here.)
# - After each cell: the report is rewritten (`--report-only`), bench/keep_results.sh copies
#   the small files to results/suite, and with --commit they are committed at once.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=0
if [[ ${1:-} == --commit ]]; then commit=1; shift; fi
hold=${HOLD:-/tmp/subspace-suite-hold}
data=${DATA:-../shared/data/shakespeare}
[[ -x .build/release/subspace ]] || swift build -c release --product subspace >/dev/null
bin=$(mktemp -d)/subspace
cp .build/release/subspace "$bin"
cells=("$@")
if ((${#cells[@]} == 0)); then
  cells=(adamw galore-r64-T200 galore-adafactor-r64-T200 fira-r64-T200 flora-r64 gum-r64-T200
         projfactor muon adafactor lion adamw8bit galore8bit-r64-T200 qgalore-r64-T200)
fi
mkdir -p runs/suite
if [[ -d results/suite ]]; then cp -rn results/suite/. runs/suite/; fi
for cell in "${cells[@]}"; do
  while [[ -e $hold ]]; do sleep 10; done
  echo "$(date +%T) $cell: start"
  rc=0
  "$bin" bench --suite pretrain --data "$data" --out runs/suite --only "$cell" || rc=$?
  echo "$(date +%T) $cell: exit $rc"
  "$bin" bench --suite pretrain --data "$data" --out runs/suite --report-only >/dev/null
  bench/keep_results.sh runs/suite results/suite
  if ((commit)); then
    git add results/suite
    git commit -q -m "results/suite: pretrain cell $cell (2,000 steps)" -- results/suite || true
  fi
done
