// Adam's moment update on 16 AVX-512 lanes held in registers, shared by the float32 sweeps
// (adam.c) and the bf16-state sweeps (adam_bf16.c), so both perform AdamMoments.advance's
// operations in the same order (no fused multiply-add; IEEE division and square root).
#ifndef SUBSPACE_ADAM16_H
#define SUBSPACE_ADAM16_H

#include "CSupport.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

/// Advances `*m` and `*v` with g; returns the denominator (torch: sqrt(v) / bc2Sqrt + eps;
/// huggingFace: sqrt(v) + eps).
__attribute__((target("avx512f")))
static inline __m512 subspace_adam16_advance(const subspace_adam_step *a, __m512 g, __m512 *m, __m512 *v) {
    const __m512 b1 = _mm512_set1_ps(a->beta1), b2 = _mm512_set1_ps(a->beta2);
    const __m512 c1 = _mm512_set1_ps(1.0f - a->beta1), c2 = _mm512_set1_ps(1.0f - a->beta2);
    // torch: m + (1 - b1)(g - m);  huggingFace: b1 m + (1 - b1) g;  both: b2 v + ((1 - b2) g) g
    *m = a->torchStyle ? _mm512_add_ps(*m, _mm512_mul_ps(c1, _mm512_sub_ps(g, *m)))
                       : _mm512_add_ps(_mm512_mul_ps(b1, *m), _mm512_mul_ps(c1, g));
    *v = _mm512_add_ps(_mm512_mul_ps(b2, *v), _mm512_mul_ps(_mm512_mul_ps(c2, g), g));
    __m512 root = _mm512_sqrt_ps(*v);
    if (a->torchStyle) root = _mm512_div_ps(root, _mm512_set1_ps(a->bc2Sqrt));
    return _mm512_add_ps(root, _mm512_set1_ps(a->eps));
}
#endif
#endif
