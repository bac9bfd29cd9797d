#!/usr/bin/env bash
# Tokens/s of `subspace sample` (key/value cache) against transformers' `generate` (its
# DynamicCache) on the same checkpoint, prompt and thread count: greedy decoding
# (`--temperature 0` / `do_sample=False`), TOKENS new tokens, ROUNDS alternating runs of
# each; prints the medians, the ratio (subspace / transformers), whether the greedy texts
# agree, the CPU, the BLAS kernel setting and the load average (the machine may be shared).
#
#   bench/sample_compare.sh --checkpoint DIR [--prompt "ROMEO:"] [--tokens 200] [--rounds 3]
#                           [--threads 2] [--python .venv/bin/python] [--no-cache]
#
# Get a checkpoint with `subspace train --preset tiny --steps 20 --out /tmp/x --data TEXT`.
# Both sides time generation only (not loading): subspace's last stderr line (prefill plus
# decode), transformers' `generate` call after one warm-up call (bench/peers/hf_generate.py).
# `--no-cache` also times subspace's reference path, which recomputes the context per token.
set -euo pipefail
cd "$(dirname "$0")/.."
checkpoint=; prompt="ROMEO:"; tokens=200; rounds=3; threads=$(nproc); python=.venv/bin/python; nocache=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --checkpoint) checkpoint=$2; shift 2;; --prompt) prompt=$2; shift 2;; --tokens) tokens=$2; shift 2;;
    --rounds) rounds=$2; shift 2;; --threads) threads=$2; shift 2;; --python) python=$2; shift 2;;
    --no-cache) nocache=1; shift;;
    *) echo "error: unknown argument $1" >&2; exit 64;;
  esac
done
[[ -n $checkpoint ]] || { echo "error: --checkpoint DIR is required" >&2; exit 64; }
[[ -d $checkpoint/checkpoint ]] && checkpoint=$checkpoint/checkpoint
bin=${SUBSPACE_BIN:-.build/release/subspace}
[[ -x $bin ]] || swift build -c release >/dev/null
out=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  SUBSPACE_THREADS=$threads $bin sample --checkpoint "$checkpoint" --prompt "$prompt" --tokens "$tokens" --temperature 0 \
    >"$out/subspace.txt" 2>>"$out/subspace.err"
  if [[ $nocache == 1 ]]; then
    SUBSPACE_THREADS=$threads $bin sample --checkpoint "$checkpoint" --prompt "$prompt" --tokens "$tokens" --temperature 0 \
      --no-cache >/dev/null 2>>"$out/nocache.err"
  fi
  OMP_NUM_THREADS=$threads "$python" bench/peers/hf_generate.py --checkpoint "$checkpoint" --prompt "$prompt" \
    --tokens "$tokens" --threads "$threads" --rounds 1 2>/dev/null >>"$out/hf.jsonl"
done
"$python" - "$out" "$prompt" "$threads" "$checkpoint" <<'PY'
import json, os, re, statistics, subprocess, sys
d, prompt, threads, ck = sys.argv[1:5]
def rates(name):
    p = os.path.join(d, name)
    if not os.path.exists(p): return []
    return [float(m.group(1)) for m in re.finditer(r"tokens in [0-9.]+ s, ([0-9.]+) tokens/s", open(p).read())]
ours, ref = rates("subspace.err"), rates("nocache.err")
hf = [json.loads(l) for l in open(os.path.join(d, "hf.jsonl")) if l.strip()]
theirs = [h["tokens_per_s"] for h in hf]
text = open(os.path.join(d, "subspace.txt"), encoding="utf-8", errors="replace").read()
same = text[len(prompt):].rstrip("\n") == hf[-1]["text"].rstrip("\n")
cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if l.startswith("Model name")), "?")
print(f"checkpoint {ck}, {hf[-1]['new_tokens']} new tokens after a {hf[-1]['prompt_tokens']}-token prompt, threads {threads}, "
      f"rounds {len(ours)}")
print(f"CPU {cpu}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; torch {hf[-1]['torch']}; "
      f"load average {os.getloadavg()[0]:.1f}")
print(f"subspace sample      {statistics.median(ours):8.1f} tokens/s  (runs: {', '.join(f'{x:.0f}' for x in ours)})")
if ref:
    print(f"subspace --no-cache  {statistics.median(ref):8.1f} tokens/s")
print(f"transformers generate{statistics.median(theirs):8.1f} tokens/s  (runs: {', '.join(f'{x:.0f}' for x in theirs)})")
print(f"ratio (subspace / transformers) {statistics.median(ours) / statistics.median(theirs):.2f}; greedy texts {'identical' if same else 'differ'}")
print(json.dumps({"subspace_tokens_per_s": statistics.median(ours), "transformers_tokens_per_s": statistics.median(theirs),
                  "ratio": statistics.median(ours) / statistics.median(theirs), "greedy_identical": same}))
PY
