// The bf16 matrix product (oneDNN's matmul primitive, loaded at run time) and the fp32 -> bf16
// conversion. Policy (when to use it, how to split the work) is Swift's:
// Sources/SubspaceCore/Tensor/BF16GEMM.swift.
#include "CSupport.h"

#include <math.h>
#include <string.h>

// MARK: - fp32 -> bf16, round to nearest even

static inline uint16_t bf16_scalar(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
__attribute__((target("avx512f,avx512bf16,avx512vl")))
static void bf16_avx512(const float *x, uint16_t *y, long n) {
    long i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512((void *)(y + i), (__m512i)v);
    }
    for (; i < n; i++) y[i] = bf16_scalar(x[i]);
}
#endif

void subspace_f32_to_bf16(const float *x, uint16_t *y, long n, int native) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    if (native) { bf16_avx512(x, y, n); return; }
#endif
    (void)native;
    for (long i = 0; i < n; i++) y[i] = bf16_scalar(x[i]);
}

void subspace_bf16_to_f32(const uint16_t *x, float *y, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(y + i, &u, 4);
    }
}

// MARK: - oneDNN, by dlopen

#if defined(__linux__) && __has_include(<oneapi/dnnl/dnnl.h>)
#include <oneapi/dnnl/dnnl.h>
#endif
// oneDNN 2.x's C API (3.x replaced the operation descriptors), loaded as the same major version.
#if defined(DNNL_VERSION_MAJOR) && DNNL_VERSION_MAJOR == 2
#include <dlfcn.h>
#include <pthread.h>

#define DNNL_FUNCTIONS(X) \
    X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_stream_wait) X(dnnl_memory_desc_init_by_strides) \
    X(dnnl_matmul_desc_init) X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_destroy) \
    X(dnnl_primitive_create) X(dnnl_primitive_execute) X(dnnl_memory_create) X(dnnl_memory_destroy) \
    X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy) X(dnnl_primitive_attr_set_output_scales) \
    X(dnnl_post_ops_create) X(dnnl_post_ops_destroy) X(dnnl_post_ops_append_sum) \
    X(dnnl_primitive_attr_set_post_ops) X(dnnl_primitive_desc_query) X(dnnl_get_effective_cpu_isa) \
    X(dnnl_primitive_desc_query_md) X(dnnl_primitive_attr_set_scratchpad_mode) X(dnnl_memory_desc_get_size)

#define DECLARE(f) static __typeof__(&f) p_##f;
DNNL_FUNCTIONS(DECLARE)
static void (*p_omp_set_num_threads)(int);
static dnnl_engine_t engine;
static int loaded = -1;  // -1 not tried, 0 unavailable, 1 ready
static char impl_name[128];
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void load(void) {
    loaded = 0;
    void *h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_GLOBAL);
    if (!h) return;
#define RESOLVE(f) if (!(p_##f = (__typeof__(&f))dlsym(h, #f))) return;
    DNNL_FUNCTIONS(RESOLVE)
    p_omp_set_num_threads = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (p_dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) return;
    loaded = 1;
}

// One primitive per (shape, transposes, strides, alpha, beta), kept for the life of the process
// (a training run uses a few dozen). Guarded by a mutex; execution itself is lock-free. The
// workers of a split product execute the same primitive at once, so each primitive is made
// with a user scratchpad and every thread passes its own (`thread_scratch`): with the library's
// scratchpad, a oneDNN built without DNNL_ENABLE_CONCURRENT_EXEC (Debian's 2.6) shares one
// buffer between concurrent executions, and the products of a 2-thread bf16 step came out
// different from run to run.
typedef struct {
    int used, ta, tb, m, n, k, lda, ldb, ldc;
    float alpha, beta;
    dnnl_primitive_t primitive;
    const dnnl_memory_desc_t *md[4];
    size_t scratch_bytes;
} entry_t;
#define CACHE_SIZE 512
static entry_t cache[CACHE_SIZE];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread dnnl_stream_t thread_stream;
static __thread void *thread_scratch;
static __thread size_t thread_scratch_bytes;

static dnnl_primitive_desc_t describe(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc, float alpha, float beta) {
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {m, k}, db = {k, n}, dc = {m, n};
    dnnl_dims_t sa = {ta ? 1 : lda, ta ? lda : 1}, sb = {tb ? 1 : ldb, tb ? ldb : 1}, sc = {ldc, 1};
    if (p_dnnl_memory_desc_init_by_strides(&a, 2, da, dnnl_bf16, sa) || p_dnnl_memory_desc_init_by_strides(&b, 2, db, dnnl_bf16, sb)
        || p_dnnl_memory_desc_init_by_strides(&c, 2, dc, dnnl_f32, sc))
        return NULL;
    dnnl_matmul_desc_t d;
    if (p_dnnl_matmul_desc_init(&d, &a, &b, NULL, &c)) return NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    p_dnnl_primitive_attr_create(&attr);
    p_dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (alpha != 1) p_dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha);
    if (beta != 0) {
        p_dnnl_post_ops_create(&ops);
        p_dnnl_post_ops_append_sum(ops, beta);
        p_dnnl_primitive_attr_set_post_ops(attr, ops);
    }
    dnnl_primitive_desc_t pd = NULL;
    if (p_dnnl_primitive_desc_create(&pd, &d, attr, engine, NULL) != dnnl_success) pd = NULL;
    if (ops) p_dnnl_post_ops_destroy(ops);
    p_dnnl_primitive_attr_destroy(attr);
    return pd;
}

static entry_t *lookup(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc, float alpha, float beta) {
    unsigned hsh = (unsigned)(m * 73856093u) ^ (unsigned)(n * 19349663u) ^ (unsigned)(k * 83492791u)
        ^ (unsigned)(lda * 2654435761u) ^ (unsigned)(ldb * 40503u) ^ (unsigned)ldc ^ (unsigned)(ta | tb << 1) << 29;
    pthread_mutex_lock(&cache_lock);
    entry_t *found = NULL;
    for (int probe = 0; probe < CACHE_SIZE; probe++) {
        entry_t *e = &cache[(hsh + probe) % CACHE_SIZE];
        if (!e->used) {
            dnnl_primitive_desc_t pd = describe(ta, tb, m, n, k, lda, ldb, ldc, alpha, beta);
            if (pd && p_dnnl_primitive_create(&e->primitive, pd) == dnnl_success) {
                e->md[0] = p_dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
                e->md[1] = p_dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
                e->md[2] = p_dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
                e->md[3] = p_dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
                e->scratch_bytes = e->md[3] ? p_dnnl_memory_desc_get_size(e->md[3]) : 0;
                const char *impl = NULL;
                if (p_dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
                    strncpy(impl_name, impl, sizeof impl_name - 1);
                // The primitive keeps its own copy of the descriptor; `md` points into ours, so
                // ours is kept too (a few hundred bytes per shape).
                e->used = 1; e->ta = ta; e->tb = tb; e->m = m; e->n = n; e->k = k;
                e->lda = lda; e->ldb = ldb; e->ldc = ldc; e->alpha = alpha; e->beta = beta;
                found = e;
            } else if (pd) {
                p_dnnl_primitive_desc_destroy(pd);
            }
            break;
        }
        if (e->ta == ta && e->tb == tb && e->m == m && e->n == n && e->k == k && e->lda == lda && e->ldb == ldb
            && e->ldc == ldc && e->alpha == alpha && e->beta == beta) {
            found = e;
            break;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return found;
}

int subspace_bf16_gemm_available(void) {
    pthread_once(&load_once, load);
    if (loaded != 1) return 0;
    return p_dnnl_get_effective_cpu_isa() >= dnnl_cpu_isa_avx512_core_bf16;
}

const char *subspace_bf16_gemm_implementation(void) { return impl_name; }

int subspace_bf16_gemm(int ta, int tb, int m, int n, int k, float alpha, const uint16_t *a, int lda, const uint16_t *b,
                       int ldb, float beta, float *c, int ldc, int threads) {
    if (!subspace_bf16_gemm_available()) return -1;
    entry_t *e = lookup(ta, tb, m, n, k, lda, ldb, ldc, alpha, beta);
    if (!e) return -2;
    if (p_omp_set_num_threads) p_omp_set_num_threads(threads);
    if (!thread_stream && p_dnnl_stream_create(&thread_stream, engine, dnnl_stream_default_flags)) return -3;
    dnnl_memory_t ma, mb, mc;
    if (p_dnnl_memory_create(&ma, e->md[0], engine, (void *)a)) return -4;
    if (p_dnnl_memory_create(&mb, e->md[1], engine, (void *)b)) { p_dnnl_memory_destroy(ma); return -4; }
    if (p_dnnl_memory_create(&mc, e->md[2], engine, c)) { p_dnnl_memory_destroy(ma); p_dnnl_memory_destroy(mb); return -4; }
    dnnl_memory_t ms = NULL;
    if (e->scratch_bytes > 0) {
        if (thread_scratch_bytes < e->scratch_bytes) {
            free(thread_scratch);
            thread_scratch = NULL;
            thread_scratch_bytes = 0;
            if (posix_memalign(&thread_scratch, 64, e->scratch_bytes)) thread_scratch = NULL;
            else thread_scratch_bytes = e->scratch_bytes;
        }
        if (!thread_scratch || p_dnnl_memory_create(&ms, e->md[3], engine, thread_scratch)) {
            p_dnnl_memory_destroy(ma); p_dnnl_memory_destroy(mb); p_dnnl_memory_destroy(mc);
            return -4;
        }
    }
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}, {DNNL_ARG_SCRATCHPAD, ms}};
    int st = p_dnnl_primitive_execute(e->primitive, thread_stream, ms ? 4 : 3, args);
    if (st == dnnl_success) st = p_dnnl_stream_wait(thread_stream);
    p_dnnl_memory_destroy(ma); p_dnnl_memory_destroy(mb); p_dnnl_memory_destroy(mc);
    if (ms) p_dnnl_memory_destroy(ms);
    return st == dnnl_success ? 0 : -5;
}

#else
int subspace_bf16_gemm_available(void) { return 0; }
const char *subspace_bf16_gemm_implementation(void) { return ""; }
int subspace_bf16_gemm(int ta, int tb, int m, int n, int k, float alpha, const uint16_t *a, int lda, const uint16_t *b,
                       int ldb, float beta, float *c, int ldc, int threads) {
    (void)ta; (void)tb; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda; (void)b; (void)ldb; (void)beta;
    (void)c; (void)ldc; (void)threads;
    return -1;
}
#endif
