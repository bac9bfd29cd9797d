// Adam's element sweep (Sources/SubspaceOptim/AdamW.swift: AdamW.kernel, AdamW.huggingFaceKernel,
// AdamMoments.direction) on 16 AVX-512 lanes. Each lane performs AdamMoments.advance's
// operations in the same order, with no fused multiply-add, and IEEE division and square root,
// so every m, v, p and direction is bit for bit the Swift one. One pass reads g, m, v (and p)
// once and writes m, v and p (or the direction) once.
#include "CSupport.h"
#include "exp16.h"
#include "adam16.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))

/// Advances m and v in place for the lanes of `mask`; returns the new m and sets `denom` to
/// its denominator (torch: sqrt(v) / bc2Sqrt + eps; huggingFace: sqrt(v) + eps).
__attribute__((target("avx512f")))
static inline __m512 adam16(const subspace_adam_step *a, __m512 g, float *m, float *v, __mmask16 mask, __m512 *denom) {
    __m512 mv = _mm512_maskz_loadu_ps(mask, m), vv = _mm512_maskz_loadu_ps(mask, v);
    *denom = subspace_adam16_advance(a, g, &mv, &vv);
    _mm512_mask_storeu_ps(m, mask, mv);
    _mm512_mask_storeu_ps(v, mask, vv);
    return mv;
}

__attribute__((target("avx512f")))
void subspace_adam_update_avx512(float *p, const float *g, float *m, float *v, long n, const subspace_adam_step *a) {
    const __m512 before = _mm512_set1_ps(a->decayBefore), after = _mm512_set1_ps(a->decayAfter);
    const __m512 step = _mm512_set1_ps(a->stepSize);
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : subspace_tail_mask(n - i);
        __m512 pv = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + i), before), denom;
        __m512 mv = adam16(a, _mm512_maskz_loadu_ps(k, g + i), m + i, v + i, k, &denom);
        // ((p decayBefore) - (stepSize m) / denominator) decayAfter
        pv = _mm512_sub_ps(pv, _mm512_div_ps(_mm512_mul_ps(step, mv), denom));
        _mm512_mask_storeu_ps(p + i, k, _mm512_mul_ps(pv, after));
    }
}

__attribute__((target("avx512f")))
void subspace_adam_direction_avx512(const float *g, float *m, float *v, float *out, long n, const subspace_adam_step *a) {
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : subspace_tail_mask(n - i);
        __m512 denom;
        __m512 mv = adam16(a, _mm512_maskz_loadu_ps(k, g + i), m + i, v + i, k, &denom);
        _mm512_mask_storeu_ps(out + i, k, _mm512_div_ps(mv, denom));
    }
}

__attribute__((target("avx512f")))
void subspace_adam_bnb_update_avx512(float *p, const float *g, float *m, float *v, long n, const subspace_adam_step *a) {
    const __m512 b1 = _mm512_set1_ps(a->beta1), b2 = _mm512_set1_ps(a->beta2);
    const __m512 c1 = _mm512_set1_ps(1.0f - a->beta1), c2 = _mm512_set1_ps(1.0f - a->beta2);
    const __m512 bc2 = _mm512_set1_ps(a->bc2Sqrt), eps = _mm512_set1_ps(a->eps);
    const __m512 decay = _mm512_set1_ps(a->decayBefore), step = _mm512_set1_ps(a->stepSize);
    const __m512i expBits = _mm512_set1_epi32(0x7F800000);
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : subspace_tail_mask(n - i);
        __m512 gv = _mm512_maskz_loadu_ps(k, g + i);
        // finite: the exponent bits are not all ones
        __mmask16 fin = k & _mm512_cmpneq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(gv), expBits), expBits);
        __m512 mv = _mm512_maskz_loadu_ps(fin, m + i), vv = _mm512_maskz_loadu_ps(fin, v + i);
        mv = _mm512_add_ps(_mm512_mul_ps(b1, mv), _mm512_mul_ps(c1, gv));
        vv = _mm512_add_ps(_mm512_mul_ps(b2, vv), _mm512_mul_ps(_mm512_mul_ps(c2, gv), gv));
        __m512 d = _mm512_div_ps(mv, _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vv), bc2), eps));
        __m512 pv = _mm512_mul_ps(_mm512_maskz_loadu_ps(fin, p + i), decay);
        _mm512_mask_storeu_ps(p + i, fin, _mm512_sub_ps(pv, _mm512_mul_ps(step, d)));
        // a non-finite gradient zeroes the element's moments and leaves p alone
        _mm512_mask_storeu_ps(m + i, k, _mm512_maskz_mov_ps(fin, mv));
        _mm512_mask_storeu_ps(v + i, k, _mm512_maskz_mov_ps(fin, vv));
    }
}
#else
void subspace_adam_update_avx512(float *p, const float *g, float *m, float *v, long n, const subspace_adam_step *a) {
    (void)p; (void)g; (void)m; (void)v; (void)n; (void)a;
}
void subspace_adam_direction_avx512(const float *g, float *m, float *v, float *out, long n, const subspace_adam_step *a) {
    (void)g; (void)m; (void)v; (void)out; (void)n; (void)a;
}
void subspace_adam_bnb_update_avx512(float *p, const float *g, float *m, float *v, long n, const subspace_adam_step *a) {
    (void)p; (void)g; (void)m; (void)v; (void)n; (void)a;
}
#endif
