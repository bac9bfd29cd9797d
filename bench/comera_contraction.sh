#!/usr/bin/env bash
# CoMERA's two TT contraction orders (sequential: the input through the cores; dense: W
# rebuilt from the cores, then one GEMM), each a whole training pass of one slot (forward,
# input gradient, parameter gradients), against the dense GEMMs of the same shape, for the
# distinct slot shapes of `tiny` and `llama60m` at the default TT rank (30) and modes, over
# 1 row (a sampled token), 16, 256 (one sequence) and 2,048 rows (a training step of 8 x 256).
# Reports which order the FLOP rule picks (`TensorTrainShape.cheaperContraction`) and whether
# it was the faster, best of REPEATS. About 4 minutes on 2 cores (the sequential order of
# llama60m's down_proj at 2,048 rows alone takes 20 s a pass).
#
#   bench/comera_contraction.sh [REPEATS]      (default 3)
#
# Writes results/comera/contraction.tsv. Threads: OpenBLAS's default (all cores) unless
# OPENBLAS_NUM_THREADS is set; the timings depend on the machine's load.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SUBSPACE_BIN:-.build/release/subspace}
repeats=${1:-3}
out=results/comera
mkdir -p "$out"
"$bin" tt-bench --presets tiny,llama60m --rows 1,16,256,2048 --repeats "$repeats" --tsv "$out/contraction.tsv"
