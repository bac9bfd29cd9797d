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

// MARK: AVX-512 elementwise kernels (the caller checks the CPU has AVX-512F). Each repeats the
// Swift loop it replaces operation for operation (no fused multiply-add), so results are bit for
// bit the same; the Swift side keeps the portable loop as the fallback and the reference.

/// The largest of `n` floats (NaNs skipped; -infinity for n = 0), FastMath.max's value.
float subspace_max_avx512(const float *x, long n);

/// MLorc's non-negativity fix: every negative entry of x becomes the mean magnitude of the
/// negative entries; returns their count (vecmath.c).
long subspace_rectify_avx512(float *x, long n);

/// SwiGLU forward (SwiGLU.swift): h = g * sigmoid(g) * u over `n` elements.
void subspace_swiglu_forward_avx512(const float *g, const float *u, float *h, long n);

/// SwiGLU backward: dg = dh * u * dsilu(g), du = dh * silu(g); dg and du may alias g and u.
void subspace_swiglu_backward_avx512(const float *dh, const float *g, const float *u, float *dg, float *du, long n);

/// Rotary embedding (RotaryEmbedding.swift) of rows firstRow ..< endRow of x[rows, heads * headDim],
/// row r at position firstPosition + r % seq; `sign` -1 rotates backwards (the backward pass).
void subspace_rope_rows_avx512(float *x, long firstRow, long endRow, long heads, long headDim, long seq,
                               long firstPosition, const float *cosTable, const float *sinTable, float sign);

/// One Adam step's constants (AdamW.swift, AdamMoments).
typedef struct {
    float beta1, beta2, eps;
    /// sqrt(1 - beta2^t): the torch style's denominator is sqrt(v) / bc2Sqrt + eps.
    float bc2Sqrt;
    /// 1: m <- m + (1 - b1)(g - m) (torch); 0: m <- b1 m + (1 - b1) g, denominator sqrt(v) + eps.
    int torchStyle;
    /// p <- (p * decayBefore - stepSize * m / denominator) * decayAfter (1 where there is none).
    float stepSize, decayBefore, decayAfter;
} subspace_adam_step;

/// Advances m and v with g and steps p, one pass over `n` elements.
void subspace_adam_update_avx512(float *p, const float *g, float *m, float *v, long n, const subspace_adam_step *a);

/// Advances m and v with g and writes the direction m / denominator into `out` (which may be g).
void subspace_adam_direction_avx512(const float *g, float *m, float *v, float *out, long n, const subspace_adam_step *a);

/// `subspace_adam_update_avx512` over bfloat16 moments (--state-precision bf16): m and v are
/// widened, advanced in fp32, used unrounded for the step and stored rounded to nearest even.
void subspace_adam_update_bf16_avx512(float *p, const float *g, uint16_t *m, uint16_t *v, long n, const subspace_adam_step *a);

/// `subspace_adam_direction_avx512` over bfloat16 moments (as `subspace_adam_update_bf16_avx512`).
void subspace_adam_direction_bf16_avx512(const float *g, uint16_t *m, uint16_t *v, float *out, long n, const subspace_adam_step *a);

/// bitsandbytes' 8-bit Adam on one block's dequantized moments (AdamMomentStorage.advance):
/// m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, p <- p decayBefore - stepSize m / (sqrt(v) /
/// bc2Sqrt + eps); where g is not finite, m = v = 0 and p is left alone. (torchStyle unused.)
void subspace_adam_bnb_update_avx512(float *p, const float *g, float *m, float *v, long n, const subspace_adam_step *a);

/// The nearest-code search tables of a DynamicQuantizationMap.
typedef struct {
    /// Per bucket, the count of midpoints below its smallest value (3 readable bytes past the end).
    const uint8_t *lut;
    /// The 255 midpoints, then +infinity.
    const float *mids;
    int bucketShift, firstBucket, bucketsPerSign, zeroCode;
} subspace_code_table;

/// The largest |x[i]| over `n` elements (NaNs skipped; 0 for n = 0).
float subspace_absmax_avx512(const float *x, long n);

/// out[i] = the code nearest x[i] * scale (ties to the lower code, NaN to the zero code).
void subspace_dynamic_codes_avx512(const float *x, long n, float scale, const subspace_code_table *t, uint8_t *out);

/// out[i] = values[codes[i]] * scale.
void subspace_dequantize_avx512(const uint8_t *codes, long n, const float *values, float scale, float *out);

/// FastGaussian.fill on 16 lanes: `count` standard normal deviates from the xoshiro256**
/// `state` (advanced in place exactly as the Swift loop advances it), bit for bit its output.
void subspace_gaussian_fill_avx512(float *out, long count, uint64_t state[4]);

#endif
