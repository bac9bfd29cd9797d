#!/bin/sh
# Perfusion on `tiny`: teach "zorblat" (absent from the Shakespeare corpus) to a model trained
# for 300 steps, at the default o* learning rate (0.1) and at ROME's 0.5. Writes the edits and
# the printed figures under results/perfusion/. Run from the checkout after a release build:
#   .build/release/subspace train --steps 300 --out runs/base-300   # once, about 5 min
#   bench/perfusion/run.sh [runs/base-300]
set -eu
base=${1:-runs/base-300}
out=results/perfusion
mkdir -p "$out"
for lr in 0.1 0.5; do
    .build/release/subspace edit --checkpoint "$base" --word zorblat \
        --examples bench/perfusion/examples.txt --held-out bench/perfusion/held-out.txt \
        --lr "$lr" --out "$out/zorblat-lr$lr" --overwrite | tee "$out/zorblat-lr$lr.txt"
done
# The whole validation split with and without each edit, and greedy continuations of a
# held-out-like prompt.
data=$(ls -d data/shakespeare ../shared/data/shakespeare 2>/dev/null | head -1)
{
    echo "base: $(.build/release/subspace eval --checkpoint "$base" --data "$data" --split validation)"
    for lr in 0.1 0.5; do
        echo "edit lr $lr: $(.build/release/subspace eval --checkpoint "$base" --data "$data" --split validation --edit "$out/zorblat-lr$lr")"
    done
    for e in "" "$out/zorblat-lr0.1" "$out/zorblat-lr0.5"; do
        echo "--- sample ${e:-(no edit)}"
        .build/release/subspace sample --checkpoint "$base" --prompt "I heard the zorblat" --tokens 30 --temperature 0 ${e:+--edit "$e"} 2>/dev/null
        echo
    done
} | tee "$out/validation-and-samples.txt"
