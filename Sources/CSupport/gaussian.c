// FastGaussian.fill (Sources/SubspaceCore/Random/FastGaussian.swift) on 16 AVX-512 lanes: two
// blocks of eight xoshiro256** draws at once, each block giving 8 cosine and then 8 sine
// deviates, in the Swift order. The draws are the same scalar xoshiro steps (the state
// advances exactly as `RandomStream.next()`), and every lane performs the Swift code's
// floating-point operations in the same order with no fused multiply-add, with the same
// float constants (Swift's Float.pi is pi rounded toward zero), so every deviate is bit for
// bit the Swift one.
#include "CSupport.h"
#include "exp16.h"

static inline uint64_t rotl64(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }

static inline uint64_t xoshiro_next(uint64_t s[4]) {
    const uint64_t result = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))

#define V(x) _mm512_set1_ps(x)

/// Cephes logf on 16 lanes (FastGaussian.log), x > 0 and finite.
__attribute__((target("avx512f")))
static inline __m512 log16(__m512 x) {
    __m512i bits = _mm512_castps_si512(x);
    __m512 e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(127)));
    bits = _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x007FFFFF)), _mm512_set1_epi32(0x3F000000));
    __m512 m = _mm512_castsi512_ps(bits);
    e = _mm512_add_ps(e, V(1.0f));
    __mmask16 small = _mm512_cmp_ps_mask(m, V(0.707106781186547524f), _CMP_LT_OQ);
    m = _mm512_sub_ps(_mm512_mask_mov_ps(m, small, _mm512_add_ps(m, m)), V(1.0f));
    e = _mm512_mask_mov_ps(e, small, _mm512_sub_ps(e, V(1.0f)));
    __m512 z = _mm512_mul_ps(m, m);
    static const float c[] = {7.0376836292e-2f, -1.1514610310e-1f, 1.1676998740e-1f, -1.2420140846e-1f, 1.4249322787e-1f,
                              -1.6668057665e-1f, 2.0000714765e-1f, -2.4999993993e-1f, 3.3333331174e-1f};
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(subspace_poly16(m, c, 9), m), z);
    y = _mm512_add_ps(y, _mm512_mul_ps(e, V(-2.12194440e-4f)));
    y = _mm512_sub_ps(y, _mm512_mul_ps(V(0.5f), z));
    return _mm512_add_ps(_mm512_add_ps(m, y), _mm512_mul_ps(e, V(0.693359375f)));
}

/// Writes 8 or 16 lanes' deviates for `blocks` (1 or 2) blocks of draws, n = the deviates wanted.
__attribute__((target("avx512f")))
static void gaussian_blocks(float *out, long n, int blocks, uint64_t s[4]) {
    uint32_t k[16] = {0}, f[16] = {0}, q[16] = {0};
    for (int l = 0; l < 8 * blocks; l++) {
        uint64_t b = xoshiro_next(s);
        k[l] = (uint32_t)b;
        f[l] = (uint32_t)(b >> 32) & 0xFFFFFF;
        q[l] = (uint32_t)(b >> 56) & 3;
    }
    __m512i kv = _mm512_loadu_si512(k), fv = _mm512_loadu_si512(f), qv = _mm512_loadu_si512(q);
    __m512 u = _mm512_mul_ps(_mm512_add_ps(_mm512_cvtepu32_ps(kv), V(0.5f)), V(1.0f / 4294967296.0f));
    __m512 rho = _mm512_sqrt_ps(_mm512_mul_ps(V(-2.0f), log16(u)));
    // Swift's Float.pi / 2: pi rounded toward zero (0x1.921fb4p1), halved.
    __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_mul_ps(_mm512_cvtepu32_ps(fv), V(1.0f / 16777216.0f)), V(0.5f)),
                             V(0x1.921fb4p0f));
    // Cephes sinf/cosf kernels on |t| <= pi/4 (FastGaussian.sinCos)
    __m512 z = _mm512_mul_ps(t, t);
    static const float sc[] = {-1.9515295891e-4f, 8.3321608736e-3f, -1.6666654611e-1f};
    static const float cc[] = {2.443315711809948e-5f, -1.388731625493765e-3f, 4.166664568298827e-2f};
    __m512 sp = subspace_poly16(z, sc, 3), cp = subspace_poly16(z, cc, 3);
    __m512 sn = _mm512_add_ps(t, _mm512_mul_ps(_mm512_mul_ps(t, z), sp));
    __m512 cs = _mm512_add_ps(_mm512_sub_ps(V(1.0f), _mm512_mul_ps(V(0.5f), z)), _mm512_mul_ps(_mm512_mul_ps(z, z), cp));
    // rotate (c, s) by q quarter turns: (c, s), (-s, c), (-c, -s), (s, -c)
    __mmask16 swap = _mm512_test_epi32_mask(qv, _mm512_set1_epi32(1));
    __m512 cosA = _mm512_mask_mov_ps(cs, swap, sn), sinA = _mm512_mask_mov_ps(sn, swap, cs);
    __mmask16 negCos = _mm512_cmpeq_epi32_mask(qv, _mm512_set1_epi32(1)) | _mm512_cmpeq_epi32_mask(qv, _mm512_set1_epi32(2));
    __mmask16 negSin = _mm512_cmpge_epu32_mask(qv, _mm512_set1_epi32(2));
    const __m512i sign = _mm512_set1_epi32((int)0x80000000);
    cosA = _mm512_castsi512_ps(_mm512_mask_xor_epi32(_mm512_castps_si512(cosA), negCos, _mm512_castps_si512(cosA), sign));
    sinA = _mm512_castsi512_ps(_mm512_mask_xor_epi32(_mm512_castps_si512(sinA), negSin, _mm512_castps_si512(sinA), sign));
    __m512 c = _mm512_mul_ps(rho, cosA), d = _mm512_mul_ps(rho, sinA);
    if (n >= 32) {
        _mm256_storeu_ps(out, _mm512_castps512_ps256(c));
        _mm256_storeu_ps(out + 8, _mm512_castps512_ps256(d));
        _mm256_storeu_pd((double *)(out + 16), _mm512_extractf64x4_pd(_mm512_castps_pd(c), 1));
        _mm256_storeu_pd((double *)(out + 24), _mm512_extractf64x4_pd(_mm512_castps_pd(d), 1));
        return;
    }
    float z0[16], z1[16];
    _mm512_storeu_ps(z0, c);
    _mm512_storeu_ps(z1, d);
    // block b: its 8 cosine deviates, then its 8 sine deviates
    for (int b = 0; b < blocks && n > 0; b++) {
        for (int l = 0; l < 8 && l < n; l++) out[l] = z0[8 * b + l];
        for (int l = 8; l < 16 && l < n; l++) out[l] = z1[8 * b + l - 8];
        out += 16; n -= 16;
    }
}

__attribute__((target("avx512f")))
void subspace_gaussian_fill_avx512(float *out, long count, uint64_t state[4]) {
    uint64_t s[4] = {state[0], state[1], state[2], state[3]};
    long i = 0;
    for (; i < count; i += 32) gaussian_blocks(out + i, count - i, count - i > 16 ? 2 : 1, s);
    state[0] = s[0]; state[1] = s[1]; state[2] = s[2]; state[3] = s[3];
}
#else
void subspace_gaussian_fill_avx512(float *out, long count, uint64_t state[4]) { (void)out; (void)count; (void)state; }
#endif
