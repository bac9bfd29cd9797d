// AVX-512 versions of FastMath's hot loops (Sources/SubspaceCore/Tensor/FastMath.swift), for
// CPUs that have it; Swift's SIMD types compile to the baseline x86-64 (SSE2) here. Each
// lane repeats FastMath.exp8's operations in the same order, with no fused multiply-add, so
// every exponential is bit for bit the Swift one; only the order of the final sum differs.
#include "CSupport.h"
#include "exp16.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

__attribute__((target("avx512f")))
float subspace_exp_shifted_sum_avx512(float *x, long n, float shift) {
    const __m512 s = _mm512_set1_ps(shift);
    __m512 acc = _mm512_setzero_ps();
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
        _mm512_storeu_ps(x + i, v);
        acc = _mm512_add_ps(acc, v);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s));
        _mm512_mask_storeu_ps(x + i, m, v);
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, v));
    }
    return _mm512_reduce_add_ps(acc);
}

__attribute__((target("avx512f")))
float subspace_max_avx512(const float *x, long n) {
    __m512 acc = _mm512_set1_ps(-__builtin_inff());
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : subspace_tail_mask(n - i);
        // max(v, acc) keeps acc where v is NaN, as the Swift loop skips NaNs
        acc = _mm512_mask_max_ps(acc, k, _mm512_maskz_loadu_ps(k, x + i), acc);
    }
    return _mm512_reduce_max_ps(acc);
}

// MLorc's non-negativity fix (MLorc.rectify): negative entries become the mean magnitude of
// the negative entries. The sum runs in 16 double lanes, lane j taking the entries i = j mod
// 16, added up in lane order at the end: the portable Swift loop does the same, so the two
// agree bit for bit.
__attribute__((target("avx512f")))
long subspace_rectify_avx512(float *x, long n) {
    const __m512 zero = _mm512_setzero_ps();
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    long count = 0;
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : subspace_tail_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        __mmask16 neg = _mm512_mask_cmp_ps_mask(k, v, zero, _CMP_LT_OQ);
        if (!neg) continue;
        count += __builtin_popcount((unsigned)neg);
        __m512d vl = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d vh = _mm512_cvtps_pd(_mm256_castsi256_ps(_mm512_extracti64x4_epi64(_mm512_castps_si512(v), 1)));
        lo = _mm512_mask_sub_pd(lo, (__mmask8)(neg & 0xFF), lo, vl);
        hi = _mm512_mask_sub_pd(hi, (__mmask8)(neg >> 8), hi, vh);
    }
    if (count == 0) return 0;
    double lanes[16], sum = 0;
    _mm512_storeu_pd(lanes, lo);
    _mm512_storeu_pd(lanes + 8, hi);
    for (int j = 0; j < 16; j++) sum += lanes[j];
    const __m512 mean = _mm512_set1_ps((float)(sum / (double)count));
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : subspace_tail_mask(n - i);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        _mm512_mask_storeu_ps(x + i, _mm512_mask_cmp_ps_mask(k, v, zero, _CMP_LT_OQ), mean);
    }
    return count;
}
#else
long subspace_rectify_avx512(float *x, long n) { (void)x; (void)n; return 0; }
float subspace_exp_shifted_sum_avx512(float *x, long n, float shift) { (void)x; (void)n; (void)shift; return 0; }
float subspace_max_avx512(const float *x, long n) { (void)x; (void)n; return 0; }
#endif
