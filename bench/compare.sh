#!/usr/bin/env bash
# Runs `subspace bench` and the PyTorch peer alternately on the same preset, batch and thread
# count, ROUNDS times each, and prints the medians and the ratios (Subspace / PyTorch).
#
#   bench/compare.sh [--preset tiny] [--batch 8] [--steps 20] [--rounds 2] [--threads 2] [--python .venv/bin/python]
#                    [--precision fp32|bf16]
#
# --precision bf16 runs `subspace bench --precision bf16` against the peer under
# torch.autocast("cpu", dtype=torch.bfloat16).
#
# Needs a release build (`swift build -c release`) and torch + transformers in the Python
# environment (scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=tiny; batch=8; steps=20; rounds=2; threads=$(nproc); python=.venv/bin/python; precision=fp32; extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset) preset=$2; shift 2;; --batch) batch=$2; shift 2;; --steps) steps=$2; shift 2;;
    --rounds) rounds=$2; shift 2;; --threads) threads=$2; shift 2;; --python) python=$2; shift 2;;
    --precision) precision=$2; shift 2;;
    *) extra+=("$1"); shift;;
  esac
done
bin=${SUBSPACE_BIN:-.build/release/subspace}
[[ -x $bin ]] || swift build -c release >/dev/null
out=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  SUBSPACE_THREADS=$threads $bin bench --preset "$preset" --batch "$batch" --steps "$steps" --precision "$precision" --json "${extra[@]}" >>"$out/subspace.jsonl"
  OMP_NUM_THREADS=$threads "$python" bench/peers/torch_bench.py --preset "$preset" --batch "$batch" --steps "$steps" --threads "$threads" --precision "$precision" >>"$out/torch.jsonl"
done
"$python" - "$out" <<'PY'
import json, statistics, sys, os
d = sys.argv[1]
load = lambda f: [json.loads(l) for l in open(os.path.join(d, f)) if l.strip()]
s, t = load("subspace.jsonl"), load("torch.jsonl")
med = lambda rows, k: statistics.median(r[k] for r in rows)
print(f"precision {s[0].get('precision') or 'fp32'}, preset {s[0]['preset']}, batch {s[0]['batch']}, seq {s[0]['seq']}, threads {s[0]['threads']}, rounds {len(s)}")
print(f"{'':22}{'subspace':>14}{'pytorch':>14}{'ratio':>10}")
for k in ["tokens_per_s", "step_ms_mean", "forward_ms", "backward_ms", "optimizer_ms", "peak_rss_bytes", "optimizer_state_bytes"]:
    a, b = med(s, k), med(t, k)
    print(f"{k:22}{a:14.1f}{b:14.1f}{a / b:10.3f}")
print(json.dumps({"preset": s[0]["preset"], "tokens_per_s_ratio": med(s, "tokens_per_s") / med(t, "tokens_per_s"),
                  "peak_rss_ratio": med(s, "peak_rss_bytes") / med(t, "peak_rss_bytes")}))
PY
