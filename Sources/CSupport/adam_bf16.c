// Adam's element sweep over bfloat16 moments (--state-precision bf16; Sources/SubspaceOptim/
// AdamBF16.swift) on 16 AVX-512 lanes: m and v are widened to fp32 (exact), advanced with the
// fp32 operations of adam16.h, used unrounded for the step, and stored back rounded to
// nearest even (NaN kept quiet, subnormals kept), the rounding of bf16.c's bf16_scalar and
// of BF16Bits.round in Swift. Every p, m, v and direction is bit for bit the portable loop's.
// Only AVX-512F instructions: full vectors load and store 16 halves with 256-bit moves, the
// tail goes through a small buffer (masked 16-bit moves would need AVX-512BW).
#include "CSupport.h"
#include "exp16.h"
#include "adam16.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))

/// 16 bf16 values (`count` <= 16 of them; the rest read as 0) widened to fp32.
__attribute__((target("avx512f")))
static inline __m512 load_bf16(const uint16_t *x, long count) {
    __m256i h;
    if (count >= 16) {
        h = _mm256_loadu_si256((const __m256i *)x);
    } else {
        uint16_t tmp[16] = {0};
        memcpy(tmp, x, (size_t)count * 2);
        h = _mm256_loadu_si256((const __m256i *)tmp);
    }
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/// Rounds 16 floats to bf16 (nearest even; a NaN keeps its sign and high payload, made
/// quiet) and stores the first `count` (<= 16).
__attribute__((target("avx512f")))
static inline void store_bf16(uint16_t *y, __m512 x, long count) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
    const __m256i h = _mm512_cvtepi32_epi16(r);
    if (count >= 16) {
        _mm256_storeu_si256((__m256i *)y, h);
    } else {
        uint16_t tmp[16];
        _mm256_storeu_si256((__m256i *)tmp, h);
        memcpy(y, tmp, (size_t)count * 2);
    }
}

__attribute__((target("avx512f")))
void subspace_adam_update_bf16_avx512(float *p, const float *g, uint16_t *m, uint16_t *v, long n, const subspace_adam_step *a) {
    const __m512 before = _mm512_set1_ps(a->decayBefore), after = _mm512_set1_ps(a->decayAfter);
    const __m512 step = _mm512_set1_ps(a->stepSize);
    for (long i = 0; i < n; i += 16) {
        const long c = n - i >= 16 ? 16 : n - i;
        const __mmask16 k = c == 16 ? (__mmask16)0xFFFF : subspace_tail_mask(c);
        __m512 mv = load_bf16(m + i, c), vv = load_bf16(v + i, c);
        __m512 pv = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + i), before);
        const __m512 denom = subspace_adam16_advance(a, _mm512_maskz_loadu_ps(k, g + i), &mv, &vv);
        // ((p decayBefore) - (stepSize m) / denominator) decayAfter, with the unrounded m and v
        pv = _mm512_sub_ps(pv, _mm512_div_ps(_mm512_mul_ps(step, mv), denom));
        _mm512_mask_storeu_ps(p + i, k, _mm512_mul_ps(pv, after));
        store_bf16(m + i, mv, c);
        store_bf16(v + i, vv, c);
    }
}

__attribute__((target("avx512f")))
void subspace_adam_direction_bf16_avx512(const float *g, uint16_t *m, uint16_t *v, float *out, long n, const subspace_adam_step *a) {
    for (long i = 0; i < n; i += 16) {
        const long c = n - i >= 16 ? 16 : n - i;
        const __mmask16 k = c == 16 ? (__mmask16)0xFFFF : subspace_tail_mask(c);
        __m512 mv = load_bf16(m + i, c), vv = load_bf16(v + i, c);
        const __m512 denom = subspace_adam16_advance(a, _mm512_maskz_loadu_ps(k, g + i), &mv, &vv);
        _mm512_mask_storeu_ps(out + i, k, _mm512_div_ps(mv, denom));
        store_bf16(m + i, mv, c);
        store_bf16(v + i, vv, c);
    }
}
#else
void subspace_adam_update_bf16_avx512(float *p, const float *g, uint16_t *m, uint16_t *v, long n, const subspace_adam_step *a) {
    (void)p; (void)g; (void)m; (void)v; (void)n; (void)a;
}
void subspace_adam_direction_bf16_avx512(const float *g, uint16_t *m, uint16_t *v, float *out, long n, const subspace_adam_step *a) {
    (void)g; (void)m; (void)v; (void)out; (void)n; (void)a;
}
#endif
