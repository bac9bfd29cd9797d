// The few CPU facts Swift cannot reach itself: the cpuid and xgetbv instructions, and Linux's
// permission request for AMX tile data. Everything else (parsing, policy) is Swift, in
// Sources/SubspaceCore/Tensor/CPU.swift.
#ifndef SUBSPACE_CSUPPORT_H
#define SUBSPACE_CSUPPORT_H

#include <stdint.h>

/// Executes `cpuid` with EAX = leaf, ECX = subleaf and stores EAX, EBX, ECX, EDX in `regs`.
/// Returns 1, or 0 (and zeros) where the instruction does not exist (not x86-64) or the leaf
/// is above the CPU's maximum for its range (basic 0x0..., extended 0x8000_0000...).
int subspace_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t regs[4]);

/// The extended control register XCR`index` (index 0: XCR0, the register states the
/// operating system saves, i.e. enabled), or 0 where the OS has not enabled XSAVE
/// (CPUID.1:ECX.OSXSAVE clear, where `xgetbv` would fault) or on other architectures.
uint64_t subspace_xgetbv(uint32_t index);

/// Asks Linux for permission to use AMX tile data in this process
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, Linux 5.16+). Returns 0 on
/// success, else the errno (or -1 where the platform has no such request).
int subspace_request_amx_permission(void);

/// Converts `n` floats to bfloat16 (the high half of the fp32 bits), rounding to nearest even;
/// NaN stays NaN. `native` selects AVX512-BF16's VCVTNE2PS2BF16 (the caller checks the CPU has
/// it), which also rounds to nearest even but flushes fp32 subnormals to zero.
void subspace_f32_to_bf16(const float *x, uint16_t *y, long n, int native);

/// Widens `n` bfloat16 values to fp32 (exact).
void subspace_bf16_to_f32(const uint16_t *x, float *y, long n);

/// 1 when oneDNN (libdnnl.so.2) loads and runs bf16 products on this CPU's own instructions
/// (AVX512-BF16 or AMX), else 0. Loads the library on first call.
int subspace_bf16_gemm_available(void);

/// oneDNN's name for the kernel of the last primitive built (e.g. "brg:avx512_core_bf16").
const char *subspace_bf16_gemm_implementation(void);

/// Row-major `C = alpha * op(A) op(B) + beta * C` with bf16 A, B and fp32 C, fp32 accumulation,
/// on `threads` OpenMP threads. Returns 0, or a negative code (unavailable, unsupported shape,
/// oneDNN error).
int subspace_bf16_gemm(int transA, int transB, int m, int n, int k, float alpha, const uint16_t *a, int lda,
                       const uint16_t *b, int ldb, float beta, float *c, int ldc, int threads);

/// In place `x[i] = exp(x[i] - shift)` over `n` elements with AVX-512 (the caller checks the
/// CPU has it), each value bit for bit FastMath.exp8's; returns their sum (16 lanes).
float subspace_exp_shifted_sum_avx512(float *x, long n, float shift);

#endif
