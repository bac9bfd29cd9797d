#!/usr/bin/env bash
# The memory planner's total (runtime line included) against the peak RSS of real runs.
#
#   bench/planner_vs_rss.sh
#
# For each case: `subspace memory ... --json` and `subspace bench --steps 3 ... --json` with
# the same model, optimizer, batch and sequence; prints both and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SUBSPACE_BIN:-.build/release/subspace}
[[ -x $bin ]] || swift build -c release >/dev/null
cases=(
  "tiny 8 --optimizer adamw"
  "tiny 8 --optimizer galore --rank 64"
  "llama20m 4 --optimizer adamw"
  "llama20m 4 --optimizer galore --rank 64"
  "llama20m 4 --optimizer galore --rank 64 --per-layer-update"
)
printf '| run | planner total (runtime) | peak RSS | planner / RSS |\n|---|---:|---:|---:|\n'
for c in "${cases[@]}"; do
  read -r preset batch flags <<<"$c"
  plan=$($bin memory --model "$preset" --batch "$batch" --seq 256 --json $flags)
  run=$($bin bench --preset "$preset" --batch "$batch" --seq 256 --steps 3 --json $flags)
  python3 - "$preset" "$batch" "$flags" "$plan" "$run" <<'PY'
import json, sys
preset, batch, flags, plan, run = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
mib = lambda b: b / 2**20
t, r, rss = plan["total_bytes"], plan["runtime_bytes"], run["peak_rss_bytes"]
opt = flags.replace("--optimizer ", "").replace(" --rank 64", "").replace(" --per-layer-update", ", per-layer")
print(f"| `{preset}` batch {batch}, {opt} | {mib(t):.1f} MiB ({mib(r):.1f}) | {mib(rss):.1f} MiB | {t / rss:.3f} |")
PY
done
