#!/usr/bin/env bash
# The bf16 figures of results/bf16/: GEMM rates fp32 vs bf16 (`subspace info`, and the
# model's shapes), and `subspace bench --preset tiny --optimizer adamw --batch 8` in fp32
# and bf16 against PyTorch fp32 and torch.autocast bf16 (bench/compare.sh, alternating).
#
#   bench/bf16_figures.sh [--rounds 2] [--steps 20]
#
# Needs a release build, libdnnl-dev (scripts/setup.sh) and a CPU with AVX512-BF16 or AMX;
# the PyTorch rows need .venv (scripts/setup-python.sh). Every file records the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=2; steps=20
while [[ $# -gt 0 ]]; do
  case "$1" in --rounds) rounds=$2; shift 2;; --steps) steps=$2; shift 2;; *) echo "unknown $1" >&2; exit 2;; esac
done
bin=${SUBSPACE_BIN:-.build/release/subspace}
python=${PYTHON:-.venv/bin/python}
out=results/bf16
# Figures for the default environment: the kernel Subspace picks itself.
unset OPENBLAS_CORETYPE
mkdir -p "$out"
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
stamp() { echo "# $(date -u +%FT%TZ), $cpu, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"; }

{ stamp; $bin info --preset tiny; } | tee "$out/info.txt"
cc=$(command -v clang || command -v gcc)
$cc -O2 bench/bf16_gemm_shapes.c Sources/CSupport/bf16.c -I Sources/CSupport/include -I/usr/include/x86_64-linux-gnu \
  -lopenblas -lpthread -lm -ldl -o /tmp/subspace_bf16_gemm_shapes
{ stamp; /tmp/subspace_bf16_gemm_shapes; } | tee "$out/gemm_shapes.txt"
for p in fp32 bf16; do
  { stamp; bench/compare.sh --preset tiny --batch 8 --steps "$steps" --rounds "$rounds" --precision "$p" --python "$python"; } \
    | tee "$out/tiny_$p.txt"
done
