#!/usr/bin/env bash
# Where a step's time goes, with the AVX-512 elementwise kernels (Sources/CSupport) and with the
# portable Swift loops (SUBSPACE_PORTABLE_KERNELS=1), back to back in the same conditions:
#
#   bench/elementwise_profile.sh [--preset tiny] [--batch 8] [--steps 20] [--rounds 1] [-- bench flags]
#
# For each precision (fp32, bf16 where the CPU has it) and each kernel set, `perf record` runs
# `subspace bench` and the script prints tokens/s and the share of samples in each elementwise
# kernel (SwiGLU, RoPE, exp, Adam, 8-bit quantization, Gaussian noise, bf16 conversion) and in
# the GEMM library. Needs `perf` (Debian: linux-perf) and perf_event_paranoid <= 1.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=tiny; batch=8; steps=20; rounds=1; extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --preset) preset=$2; shift 2;; --batch) batch=$2; shift 2;; --steps) steps=$2; shift 2;;
    --rounds) rounds=$2; shift 2;; --) shift; extra=("$@"); break;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
bin=${SUBSPACE_BIN:-.build/release/subspace}
out=$(mktemp -d)
precisions=${PRECISIONS:-fp32 bf16}   # PRECISIONS=fp32 on a CPU without bf16 products
share() {  # share <report> <pattern>: summed percentage of symbols matching the pattern
  grep -E "$2" "$1" | awk '{gsub("%","",$1); s += $1} END {printf "%5.1f%%", s}'
}
for r in $(seq 1 "$rounds"); do
  for p in $precisions; do
    for kernels in avx512 portable; do
      env=(); [[ $kernels == portable ]] && env=(SUBSPACE_PORTABLE_KERNELS=1)
      data="$out/$p-$kernels-$r.data"
      tps=$(env "${env[@]}" perf record -q -o "$data" -- $bin bench --preset "$preset" --batch "$batch" \
        --steps "$steps" --precision "$p" --json "${extra[@]}" 2>/dev/null | grep -o '"tokens_per_s" *: *[0-9.]*' | grep -o '[0-9.]*$')
      rep="$out/$p-$kernels-$r.txt"
      perf report -i "$data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' >"$rep"
      printf '%-5s %-9s round %d: %8.0f tokens/s | gemm %s | swiglu %s | rope %s | exp %s | adam %s | 8-bit %s | gaussian %s | bf16 convert %s\n' \
        "$p" "$kernels" "$r" "${tps:-0}" \
        "$(share "$rep" 'sgemm|dnnl|\[\.\] 0x0000')" \
        "$(share "$rep" 'swiglu|SwiGLU')" "$(share "$rep" 'rope|RotaryEmbedding')" \
        "$(share "$rep" 'exp_shifted|expShifted|exp8')" "$(share "$rep" 'adam|Adam')" \
        "$(share "$rep" 'absmax|dynamic_codes|dequantize|QuantizedState|DynamicQuantizationMap')" \
        "$(share "$rep" 'gaussian|FastGaussian')" "$(share "$rep" 'bf16_avx512|BF16|f32_to_bf16')"
    done
  done
done
echo "perf reports: $out"
