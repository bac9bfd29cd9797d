#!/usr/bin/env bash
# Runs a training suite's cells in Subspace and, alternately, in PyTorch (bench/peers/suite_peer.py:
# same initial weights, same batches in file order, same schedule and clipping), then prints the
# ratios Subspace / PyTorch (tokens/s, peak RSS, final validation loss); the report
# (DIR/report.md) puts them side by side.
#
#   bench/peer_suite.sh [pretrain|finetune] --out DIR [--steps 20] [--only adamw,galore-r64-T200] [...]
#
# Any other flag goes to `subspace bench --suite`. Needs a release build and the Python peers
# (scripts/setup-python.sh: torch, transformers, galore-torch, fira; bitsandbytes optional).
set -euo pipefail
cd "$(dirname "$0")/.."
suite=pretrain
if [[ $# -gt 0 && $1 != --* ]]; then suite=$1; shift; fi
bin=${SUBSPACE_BIN:-.build/release/subspace}
[[ -x $bin ]] || swift build -c release >/dev/null
python=${PYTHON:-.venv/bin/python}
exec "$bin" bench --suite "$suite" --peers --python "$python" --peer-script bench/peers/suite_peer.py "$@"
