// SwiGLU (Sources/SubspaceModels/NN/SwiGLU.swift) on 16 AVX-512 lanes: the same operations in
// the same order as the Swift SIMD8 loop, exponentials from exp16.h, no fused multiply-add,
// so every output is bit for bit the Swift one. The last n % 16 elements run masked.
#include "CSupport.h"
#include "exp16.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))

__attribute__((target("avx512f")))
static inline __m512 sigmoid16(__m512 g) {
    __m512 neg = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(g), _mm512_set1_epi32((int)0x80000000)));
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16(neg)));
}

__attribute__((target("avx512f")))
void subspace_swiglu_forward_avx512(const float *g, const float *u, float *h, long n) {
    for (long i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : subspace_tail_mask(n - i);
        __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
        _mm512_mask_storeu_ps(h + i, m, _mm512_mul_ps(_mm512_mul_ps(gv, sigmoid16(gv)), uv));
    }
}

__attribute__((target("avx512f")))
void subspace_swiglu_backward_avx512(const float *dh, const float *g, const float *u, float *dg, float *du, long n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (long i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : subspace_tail_mask(n - i);
        __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
        __m512 d = _mm512_maskz_loadu_ps(m, dh + i);
        __m512 s = sigmoid16(gv);
        __m512 silu = _mm512_mul_ps(gv, s);
        // dsilu = s * (1 + g * (1 - s))
        __m512 dsilu = _mm512_mul_ps(s, _mm512_add_ps(one, _mm512_mul_ps(gv, _mm512_sub_ps(one, s))));
        _mm512_mask_storeu_ps(dg + i, m, _mm512_mul_ps(_mm512_mul_ps(d, uv), dsilu));
        _mm512_mask_storeu_ps(du + i, m, _mm512_mul_ps(d, silu));
    }
}
#else
void subspace_swiglu_forward_avx512(const float *g, const float *u, float *h, long n) { (void)g; (void)u; (void)h; (void)n; }
void subspace_swiglu_backward_avx512(const float *dh, const float *g, const float *u, float *dg, float *du, long n) {
    (void)dh; (void)g; (void)u; (void)dg; (void)du; (void)n;
}
#endif
