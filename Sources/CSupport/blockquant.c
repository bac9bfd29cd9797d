// Block-wise 8-bit quantization (Sources/SubspaceOptim/Quantization/QuantizedState.swift and
// DynamicQuantizationMap.swift) on 16 AVX-512 lanes: a block's absmax, the nearest-code search
// of the dynamic map (bucket table lower bound, then step up while the next midpoint is below
// x), and the dequantization map[code] * absmax. Comparisons, one product per element and
// gathers: every result equals the Swift loop's exactly.
#include "CSupport.h"
#include "exp16.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))

__attribute__((target("avx512f")))
float subspace_absmax_avx512(const float *x, long n) {
    __m512 acc = _mm512_setzero_ps();
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : subspace_tail_mask(n - i);
        __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(k, x + i));
        // max(a, acc) returns acc where a is NaN: NaNs are skipped, as Swift's max(m, |x|) does.
        acc = _mm512_max_ps(a, acc);
    }
    return _mm512_reduce_max_ps(acc);
}

__attribute__((target("avx512f")))
void subspace_dynamic_codes_avx512(const float *x, long n, float scale, const subspace_code_table *t, uint8_t *out) {
    const __m512i magBits = _mm512_set1_epi32(0x7FFFFFFF), first = _mm512_set1_epi32(t->firstBucket);
    const __m512i last = _mm512_set1_epi32(t->bucketsPerSign - 1), perSign = _mm512_set1_epi32(t->bucketsPerSign);
    const __m512i byteMask = _mm512_set1_epi32(0xFF), one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512();
    const __m512i zeroCode = _mm512_set1_epi32(t->zeroCode);
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : subspace_tail_mask(n - i);
        __m512 xs = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_set1_ps(scale));
        __m512i bits = _mm512_castps_si512(xs);
        __m512i j = _mm512_sub_epi32(_mm512_srli_epi32(_mm512_and_si512(bits, magBits), t->bucketShift), first);
        j = _mm512_min_epi32(_mm512_max_epi32(j, zero), last);
        // negative x: the second half of the table
        j = _mm512_mask_add_epi32(j, _mm512_cmplt_epi32_mask(bits, zero), j, perSign);
        __m512i c = _mm512_and_si512(_mm512_mask_i32gather_epi32(zero, k, j, t->lut, 1), byteMask);
        __mmask16 nan = _mm512_cmp_ps_mask(xs, xs, _CMP_UNORD_Q);
        __mmask16 up = k & ~nan;
        while (up) {
            __m512 mid = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), up, c, t->mids, 4);
            up = _mm512_mask_cmp_ps_mask(up, mid, xs, _CMP_LT_OQ);
            c = _mm512_mask_add_epi32(c, up, c, one);
        }
        c = _mm512_mask_mov_epi32(c, nan, zeroCode);
        _mm512_mask_cvtepi32_storeu_epi8(out + i, k, c);
    }
}

__attribute__((target("avx512f")))
void subspace_dequantize_avx512(const uint8_t *codes, long n, const float *values, float scale, float *out) {
    const __m512 s = _mm512_set1_ps(scale);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + i)));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_i32gather_ps(c, values, 4), s));
    }
    for (; i < n; i++) out[i] = values[codes[i]] * scale;
}
#else
float subspace_absmax_avx512(const float *x, long n) { (void)x; (void)n; return 0; }
void subspace_dynamic_codes_avx512(const float *x, long n, float scale, const subspace_code_table *t, uint8_t *out) {
    (void)x; (void)n; (void)scale; (void)t; (void)out;
}
void subspace_dequantize_avx512(const uint8_t *codes, long n, const float *values, float scale, float *out) {
    (void)codes; (void)n; (void)values; (void)scale; (void)out;
}
#endif
