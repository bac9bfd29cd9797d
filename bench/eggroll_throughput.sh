#!/bin/sh
# EGGROLL's training throughput on `tiny` against plain inference over the same rows
# (`subspace eggroll-throughput`): population 256 and 512, one sequence of 64 tokens per
# member, the batched population forward (every member of a chunk in one pass), and the
# sequential in-place evaluation for comparison. Writes results/zo/throughput.tsv, with the
# CPU and thread count. Run from the checkout after a release build, on an idle machine:
#   bench/eggroll_throughput.sh
set -eu
out=results/zo/throughput.tsv
mkdir -p results/zo
printf 'cpu\tthreads\tpopulation\tchunk\tbatch\tseq\ttraining_tokens_per_s\tinference_tokens_per_s\tratio\tsequential_tokens_per_s\tgeneration_ms\tupdate_ms\tcommand\n' > "$out"
for pop in 256 512; do
    cmd="subspace eggroll-throughput --preset tiny --population $pop --batch 1 --seq 64 --generations 3 --sequential 1 --json"
    .build/release/$cmd | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("\t".join(str(x) for x in [r["cpu"], r["threads"], r["population"], r["chunk"], r["batch"], r["seq"],
    round(r["training_tokens_per_s"]), round(r["inference_tokens_per_s"]), round(r["ratio"], 3),
    round(r.get("sequential_tokens_per_s") or 0), round(r["generation_ms"]), round(r["update_ms"]), sys.argv[1]]))' "$cmd" >> "$out"
done
cat "$out"
