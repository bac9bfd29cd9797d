// Rotary embeddings (Sources/SubspaceModels/NN/RotaryEmbedding.swift) on 16 AVX-512 lanes:
// each pair (a, b) = (v[i], v[i + half]) becomes (a c - b s, b c + a s) with the same
// operations in the same order as the Swift loop (no fused multiply-add), so bit for bit.
#include "CSupport.h"
#include "exp16.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))

__attribute__((target("avx512f")))
void subspace_rope_rows_avx512(float *x, long firstRow, long endRow, long heads, long headDim, long seq,
                               long firstPosition, const float *cosTable, const float *sinTable, float sign) {
    const long half = headDim / 2, width = heads * headDim;
    const __m512 sg = _mm512_set1_ps(sign);
    for (long row = firstRow; row < endRow; row++) {
        const long pos = firstPosition + row % seq;
        const float *c = cosTable + pos * half, *s = sinTable + pos * half;
        for (long i = 0; i < half; i += 16) {
            __mmask16 m = half - i >= 16 ? (__mmask16)0xFFFF : subspace_tail_mask(half - i);
            __m512 cv = _mm512_maskz_loadu_ps(m, c + i);
            __m512 si = _mm512_mul_ps(sg, _mm512_maskz_loadu_ps(m, s + i));
            for (long h = 0; h < heads; h++) {
                float *v = x + row * width + h * headDim;
                __m512 a = _mm512_maskz_loadu_ps(m, v + i), b = _mm512_maskz_loadu_ps(m, v + i + half);
                _mm512_mask_storeu_ps(v + i, m, _mm512_sub_ps(_mm512_mul_ps(a, cv), _mm512_mul_ps(b, si)));
                _mm512_mask_storeu_ps(v + i + half, m, _mm512_add_ps(_mm512_mul_ps(b, cv), _mm512_mul_ps(a, si)));
            }
        }
    }
}
#else
void subspace_rope_rows_avx512(float *x, long firstRow, long endRow, long heads, long headDim, long seq,
                               long firstPosition, const float *cosTable, const float *sinTable, float sign) {
    (void)x; (void)firstRow; (void)endRow; (void)heads; (void)headDim; (void)seq; (void)firstPosition;
    (void)cosTable; (void)sinTable; (void)sign;
}
#endif
