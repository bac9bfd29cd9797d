// FastMath.exp8 (Sources/SubspaceCore/Tensor/FastMath.swift) on 16 AVX-512 lanes, shared by
// the kernels of this folder (a private header: not part of the module's public include/).
// Each lane repeats exp8's operations in the same order with no fused multiply-add (the
// functions are compiled for avx512f alone, which has no FMA), so every value is bit for bit
// the Swift one.
#ifndef SUBSPACE_EXP16_H
#define SUBSPACE_EXP16_H
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

/// Horner's rule on 16 lanes: (...(c[0] x + c[1]) x + ...) x + c[n - 1], each step a product
/// and a sum rounded separately (no fused multiply-add), as Swift's `y = y * x + c` lines.
/// (y x - c, as Swift writes some steps, is y x + (-c) exactly: pass the negated coefficient.)
__attribute__((target("avx512f")))
static inline __m512 subspace_poly16(__m512 x, const float *c, int n) {
    __m512 y = _mm512_set1_ps(c[0]);
    for (int i = 1; i < n; i++) y = _mm512_add_ps(_mm512_mul_ps(y, x), _mm512_set1_ps(c[i]));
    return y;
}

__attribute__((target("avx512f")))
static inline __m512 exp16(__m512 x0) {
    const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.72283f);
    // max/min return their second operand when either is NaN: NaN stays NaN, as in Swift.
    __m512 x = _mm512_min_ps(hi, _mm512_max_ps(lo, x0));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 t = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), magic);
    __m512i n = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000));
    __m512 fx = _mm512_sub_ps(t, magic);
    x = _mm512_sub_ps(x, _mm512_mul_ps(fx, _mm512_set1_ps(0.693359375f)));
    x = _mm512_add_ps(x, _mm512_mul_ps(fx, _mm512_set1_ps(2.1219444e-4f)));
    static const float c[] = {1.98756915e-4f, 1.39819995e-3f, 8.3334519e-3f, 4.1665796e-2f, 1.66666655e-1f, 5.0000001e-1f};
    __m512 y = subspace_poly16(x, c, 6);
    y = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(y, x), x), x), _mm512_set1_ps(1.0f));
    __m512 pow2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23));
    __m512 r = _mm512_mul_ps(y, pow2);
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x0, lo, _CMP_LT_OQ), _mm512_setzero_ps());
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x0, hi, _CMP_GT_OQ), _mm512_set1_ps(__builtin_inff()));
    return r;
}

/// The mask of the first `n` lanes (0 <= n <= 16).
static inline __mmask16 subspace_tail_mask(long n) { return (__mmask16)((1u << n) - 1); }

#endif
#endif
