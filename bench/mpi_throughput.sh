#!/usr/bin/env bash
# Data parallelism over MPI: bytes communicated per optimizer step, planned and measured, and
# the throughput of 2 ranks x 1 thread against 1 rank x 2 threads on this machine.
#
#   bench/mpi_throughput.sh [--steps 40] [--rounds 2] [--out results/mpi] [--peers | --peers-only]
#
# Writes to OUT:
# - planned_bytes.tsv: `subspace memory --ranks N --json` per model (tiny, llama60m, llama1b,
#   llama7b) and method (adamw; galore at the paper's rank for the size, gap 200): the
#   all-reduce payload per step and rank (every trainable gradient, fp32), the ring's traffic
#   per rank (2 (N-1)/N x payload) and GaLore's projected all-reduce (--dp-communication
#   projected): a step between refreshes, a refresh step (whole gradients + the broadcast
#   projectors) and the mean over the update gap;
# - measured_bytes.tsv: comm_bytes of metrics.jsonl (the payload of a rank's collectives in
#   a step) from 2 two-rank steps of tiny and llama60m, full mode (adamw) and projected mode
#   (galore, --update-gap 2: step 1 refreshes, step 2 sends R), next to the plan;
# - throughput.tsv: tokens/s (summary.json, training steps only) of tiny at a global batch
#   of 8 x 256 tokens, ROUNDS alternating rounds of each layout.
# - scaling.tsv: a model of data-parallel efficiency on 8 to 64 nodes from the planned bytes:
#   compute per step 6 x params x TOKENS (tokens per node and step) / (TFLOPS x 1e12), the
#   ring all-reduce 2 (N-1)/N x payload / link bandwidth (GBPS Gb/s), no overlap (the
#   pessimistic bound); efficiency = compute / (compute + communication). Defaults: 25 Gb/s,
#   1 TFLOP/s sustained per node, 4,096 tokens per node and step (--gbps, --tflops, --tokens).
# - peers.tsv (--peers, or --peers-only for this part alone; needs .venv with torch,
#   transformers and galore-torch, scripts/setup-python.sh): torch DDP (gloo, torchrun
#   --nproc_per_node 2, bench/peers/torch_ddp_bench.py) with torch AdamW and with
#   galore-torch's GaLoreAdamW (rank 64, gap 200, scale 0.25; DDP all-reduces whole
#   gradients) at 2 ranks x 1 thread, next to Subspace's AdamW at 2 x 1 and 1 x 2 and its
#   GaLore (same settings, no clipping) at 2 x 1 with the full and the projected all-reduce;
#   tiny at a global batch of 8 x 256 (random tokens for torch), STEPS steps, run one after
#   another so that they share the machine's load.
# As root, Open MPI needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (set here).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=40; rounds=2; out=results/mpi; gbps=25; tflops=1; tokens=4096; only_model=0; peers=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --steps) steps=$2; shift 2;; --rounds) rounds=$2; shift 2;; --out) out=$2; shift 2;;
    --gbps) gbps=$2; shift 2;; --tflops) tflops=$2; shift 2;; --tokens) tokens=$2; shift 2;;
    --model-only) only_model=1; shift;;
    --peers) peers=1; shift;; --peers-only) peers=2; shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
bin=${SUBSPACE_BIN:-.build/release/subspace}
[[ -x $bin ]] || swift build -c release >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi=(mpirun -q -np 2 --oversubscribe --bind-to none)
data=data/shakespeare; [[ -d $data ]] || data=../shared/data/shakespeare
mkdir -p "$out"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

peer_table() {  # 4. torch DDP against Subspace's two layouts
  local py=.venv/bin/python; [[ -x $py ]] || py=../main/.venv/bin/python
  [[ -f $work/tokenizer.json ]] || $bin tokenizer train --data "$data" --vocab 4096 --out "$work/tokenizer.json" >/dev/null 2>&1
  local args=(--preset tiny --data "$data" --tokenizer "$work/tokenizer.json" --steps "$steps" --seq 256 --warmup 4
              --eval-every 0 --eval-batches 1 --sample-tokens 0)
  printf 'implementation\tlayout\ttokens_per_s\n' >"$out/peers.tsv"
  "$(dirname "$py")/torchrun" --nproc_per_node 2 bench/peers/torch_ddp_bench.py --preset tiny --batch 4 --steps "$steps" --threads 1 2>/dev/null |
    jq -r '["torch DDP gloo, AdamW", "2 ranks x 1 thread", (.tokens_per_s|floor)] | @tsv' >>"$out/peers.tsv"
  "$(dirname "$py")/torchrun" --nproc_per_node 2 bench/peers/torch_ddp_bench.py --preset tiny --batch 4 --steps "$steps" --threads 1 \
    --optimizer galore --rank 64 --update-gap 200 --scale 0.25 2>/dev/null |
    jq -r '["torch DDP gloo, GaLore-AdamW (galore-torch)", "2 ranks x 1 thread", (.tokens_per_s|floor)] | @tsv' >>"$out/peers.tsv"
  "${mpi[@]}" $bin train "${args[@]}" --batch 4 --out "$work/peer-two" >/dev/null 2>&1
  jq -r '["subspace, AdamW", "2 ranks x 1 thread", (.tokensPerSecond|floor)] | @tsv' "$work/peer-two/summary.json" >>"$out/peers.tsv"
  SUBSPACE_THREADS=2 $bin train "${args[@]}" --batch 8 --out "$work/peer-one" >/dev/null 2>&1
  jq -r '["subspace, AdamW", "1 rank x 2 threads", (.tokensPerSecond|floor)] | @tsv' "$work/peer-one/summary.json" >>"$out/peers.tsv"
  local galore=(--optimizer galore --rank 64 --update-gap 200 --scale 0.25 --clip 0)
  for mode in full projected; do
    "${mpi[@]}" $bin train "${args[@]}" "${galore[@]}" --dp-communication $mode --batch 4 --out "$work/peer-galore-$mode" >/dev/null 2>&1
    jq -r --arg m "$mode" '["subspace, GaLore-AdamW, \($m) all-reduce", "2 ranks x 1 thread", (.tokensPerSecond|floor)] | @tsv' \
      "$work/peer-galore-$mode/summary.json" >>"$out/peers.tsv"
  done
  column -t -s $'\t' "$out/peers.tsv"
}
if [[ $peers == 2 ]]; then peer_table; exit 0; fi

# 1. Planned bytes.
printf 'model\tmethod\tranks\ttrainable_params\tallreduce_bytes\tring_bytes_per_rank\tprojected_bytes\tprojected_refresh_bytes\tprojected_mean_bytes\n' >"$out/planned_bytes.tsv"
for spec in "tiny 64" "llama60m 128" "llama1b 512" "llama7b 1024"; do
  set -- $spec
  for method in adamw galore; do
    flags=(); [[ $method == galore ]] && flags=(--rank "$2")
    $bin memory --model "$1" --optimizer "$method" "${flags[@]}" --ranks 2 --runtime-bytes 0 --json |
      jq -r --arg m "$1" --arg o "$method" \
        '[$m, $o, .communication.ranks, .memory.params, .communication.allreduceBytes, .communication.ringBytesPerRank,
          (.communication.projectedBytes // ""), (.communication.projectedRefreshBytes // ""), (.communication.projectedMeanBytes // "")] | @tsv' \
      >>"$out/planned_bytes.tsv"
  done
done

# 1b. The scaling model (from planned_bytes.tsv; galore with its projected all-reduce, the
#     mean payload over the update gap).
awk -F'\t' -v gbps="$gbps" -v tflops="$tflops" -v tokens="$tokens" 'BEGIN {
    OFS = "\t"; print "model", "method", "nodes", "compute_s", "allreduce_s", "efficiency" }
  NR > 1 && ($1 == "llama1b" || $1 == "llama7b") {
    payload = ($2 == "galore" && $9 != "") ? $9 : $5
    compute = 6 * $4 * tokens / (tflops * 1e12)
    for (n = 8; n <= 64; n *= 2) {
      comm = 2 * (n - 1) / n * payload * 8 / (gbps * 1e9)
      printf "%s\t%s\t%d\t%.1f\t%.2f\t%.3f\n", $1, $2 ($2 == "galore" ? " (projected)" : ""), n, compute, comm, compute / (compute + comm)
    } }' "$out/planned_bytes.tsv" >"$out/scaling.tsv"
[[ $only_model == 1 ]] && { column -t -s $'\t' "$out/scaling.tsv"; exit 0; }

# 2. Measured bytes (2 two-rank steps, paused before the last so that no final evaluation
#    runs; every step all-reduces the same gradients).
$bin tokenizer train --data "$data" --vocab 4096 --out "$work/tokenizer.json" >/dev/null 2>&1
printf 'model\tmode\tstep\tmeasured_comm_bytes\tplanned_bytes\n' >"$out/measured_bytes.tsv"
for spec in "tiny 64" "llama60m 128"; do
  set -- $spec; model=$1
  for mode in full projected; do
    flags=(); [[ $mode == projected ]] && flags=(--optimizer galore --rank "$2" --update-gap 2 --clip 0 --dp-communication projected)
    "${mpi[@]}" $bin train --preset "$model" --data "$data" --tokenizer "$work/tokenizer.json" --steps 3 --stop-after 2 --batch 1 --seq 64 \
      --warmup 0 --eval-every 0 --eval-batches 1 --sample-tokens 0 "${flags[@]}" --out "$work/bytes-$model-$mode" >/dev/null 2>&1
    plan=$($bin memory --model "$model" "${flags[@]:0:6}" --ranks 2 --runtime-bytes 0 --json)
    for step in 1 2; do
      measured=$(sed -n "${step}p" "$work/bytes-$model-$mode/metrics.jsonl" | jq .comm_bytes)
      if [[ $mode == full ]]; then kind="step $step"; planned=$(jq .communication.allreduceBytes <<<"$plan")
      elif [[ $step == 1 ]]; then kind="1 (refresh)"; planned=$(jq .communication.projectedRefreshBytes <<<"$plan")
      else kind="2 (between refreshes)"; planned=$(jq .communication.projectedBytes <<<"$plan"); fi
      printf '%s\t%s\t%s\t%s\t%s\n' "$model" "$mode" "$kind" "$measured" "$planned" >>"$out/measured_bytes.tsv"
    done
  done
done

# 3. Throughput: tiny, global batch 8 x 256, 2 ranks x 1 thread against 1 rank x 2 threads.
common=(--preset tiny --data "$data" --tokenizer "$work/tokenizer.json" --steps "$steps" --seq 256 --warmup 4
        --eval-every 0 --eval-batches 1 --sample-tokens 0)
printf 'layout\tround\ttokens_per_s\tstep_ms_mean\n' >"$out/throughput.tsv"
for r in $(seq 1 "$rounds"); do
  SUBSPACE_THREADS=2 $bin train "${common[@]}" --batch 8 --out "$work/one-$r" >/dev/null 2>&1
  "${mpi[@]}" $bin train "${common[@]}" --batch 4 --out "$work/two-$r" >/dev/null 2>&1
  for layout in one two; do
    name=$([[ $layout == one ]] && echo "1 rank x 2 threads" || echo "2 ranks x 1 thread")
    jq -r --arg l "$name" --arg r "$r" '[$l, $r, (.tokensPerSecond|floor), (.stepMsMean*10|floor/10)] | @tsv' \
      "$work/$layout-$r/summary.json" >>"$out/throughput.tsv"
  done
done
[[ $peers == 1 ]] && peer_table
column -t -s $'\t' "$out/planned_bytes.tsv"; echo; column -t -s $'\t' "$out/scaling.tsv"; echo; column -t -s $'\t' "$out/measured_bytes.tsv"; echo; column -t -s $'\t' "$out/throughput.tsv"
