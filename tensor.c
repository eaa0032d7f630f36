/* tensor.c — tensors, threads, GEMM, ops with autograd, optimizers.
 *
 * Contents
 *   1. Shapes and construction
 *   2. The context and the tape
 *   3. Threads
 *   4. GEMM: the reference loop, then the packed AVX2/FMA kernel
 *   5. Views
 *   6. Linear algebra: matmul, linear
 *   7. Elementwise binary ops with broadcasting
 *   8. Unary ops and activations
 *   9. Reductions
 *  10. Softmax, layernorm, L2 normalisation
 *  11. Indexing and layout: embedding, concat, permute, masked fill,
 *      row gather, patch embedding
 *  12. Backward pass
 *  13. Optimizers and the learning-rate schedule
 *
 * Every op has a forward that computes its output and, when the context
 * records gradients, a backward function placed right after it that sends
 * out->grad to the inputs. Backward functions always accumulate (+=): a
 * tensor used twice receives the sum of both contributions.
 */
#define _POSIX_C_SOURCE 200809L
#include "scale.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The AVX2/FMA GEMM kernel is compiled with a function target attribute and
 * chosen at run time, so the default build runs on any x86-64. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SC_GEMM_X86 1
#include <immintrin.h>
#else
#define SC_GEMM_X86 0
#endif

/* ======================================================================== */
/* 1. Shapes and construction                                                */
/* ======================================================================== */

int64_t sc_numel(const sc_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int sc_is_contiguous(const sc_tensor *t)
{
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect) return 0;
        expect *= t->shape[i];
    }
    return 1;
}

int sc_same_shape(const sc_tensor *a, const sc_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

char *sc_shape_str(const sc_tensor *t, char *buf, size_t n)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "(");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

static void set_contiguous_strides(sc_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

void sc_tensor_set_name(sc_tensor *t, const char *name)
{
    if (!name) name = "";
    size_t n = strlen(name);
    if (n >= SC_NAME_MAX) n = SC_NAME_MAX - 1;
    memcpy(t->name, name, n);
    t->name[n] = 0;
}

/* A tensor header in arena `a` with the given shape; data left NULL. */
static sc_tensor *tensor_header(sc_arena *a, int ndim, const int64_t *shape, const char *name)
{
    SC_ASSERT(ndim >= 0 && ndim <= SC_MAX_DIMS, "ndim %d", ndim);
    sc_tensor *t = sc_arena_calloc(a, 1, sizeof *t);
    if (!t) return NULL;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        SC_ASSERT(shape[i] >= 0, "negative dimension %lld", (long long)shape[i]);
        t->shape[i] = shape[i];
    }
    set_contiguous_strides(t);
    sc_tensor_set_name(t, name);
    return t;
}

sc_tensor *sc_tensor_try_new(sc_arena *a, int ndim, const int64_t *shape, const char *name)
{
    sc_tensor *t = tensor_header(a, ndim, shape, name);
    if (!t) return NULL;
    size_t bytes;
    if (!sc_mul_ok((size_t)sc_numel(t), sizeof(float), &bytes)) return NULL;
    t->data = sc_arena_alloc(a, bytes);
    return t->data ? t : NULL;
}

sc_tensor *sc_tensor_new(sc_arena *a, int ndim, const int64_t *shape, const char *name)
{
    sc_tensor *t = sc_tensor_try_new(a, ndim, shape, name);
    SC_ASSERT(t != NULL, "arena '%s' cannot hold tensor '%s'", a->name, name ? name : "");
    return t;
}

sc_tensor *sc_tensor_zeros(sc_arena *a, int ndim, const int64_t *shape, const char *name)
{
    sc_tensor *t = sc_tensor_new(a, ndim, shape, name);
    memset(t->data, 0, (size_t)sc_numel(t) * sizeof(float));
    return t;
}

sc_tensor *sc_param_new(sc_arena *a, int ndim, const int64_t *shape, const char *name)
{
    sc_tensor *t = sc_tensor_zeros(a, ndim, shape, name);
    t->grad = sc_arena_calloc(a, (size_t)sc_numel(t), sizeof(float));
    SC_ASSERT(t->grad != NULL, "arena '%s' cannot hold gradient of '%s'", a->name, t->name);
    t->requires_grad = 1;
    return t;
}

sc_tensor *sc_tensor_wrap(sc_arena *a, float *data, int ndim, const int64_t *shape, const char *name)
{
    sc_tensor *t = tensor_header(a, ndim, shape, name);
    SC_ASSERT(t != NULL, "arena '%s' cannot hold a tensor header", a->name);
    t->data = data;
    return t;
}

void sc_tensor_fill(sc_tensor *t, float v)
{
    SC_ASSERT(sc_is_contiguous(t), "fill needs a contiguous tensor");
    int64_t n = sc_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = v;
}

/* ======================================================================== */
/* 2. The context and the tape                                               */
/* ======================================================================== */

void sc_ctx_init(sc_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    sc_arena_init(&ctx->act, "activations", (size_t)64 << 20, 0);
    sc_arena_init(&ctx->grad, "gradients", (size_t)64 << 20, 0);
    ctx->grad_enabled = 1;
}

void sc_ctx_reset(sc_ctx *ctx)
{
    sc_arena_reset(&ctx->act);
    sc_arena_reset(&ctx->grad);
    ctx->tape = NULL;
    ctx->n_nodes = 0;
}

void sc_ctx_free(sc_ctx *ctx)
{
    sc_arena_free(&ctx->act);
    sc_arena_free(&ctx->grad);
    ctx->tape = NULL;
    ctx->n_nodes = 0;
}

int sc_ctx_set_grad(sc_ctx *ctx, int enabled)
{
    int old = ctx->grad_enabled;
    ctx->grad_enabled = enabled;
    return old;
}

void *sc__act_alloc(sc_ctx *ctx, size_t bytes)
{
    void *p = sc_arena_alloc(&ctx->act, bytes);
    SC_ASSERT(p != NULL, "arena '%s' cannot hold %zu more bytes", ctx->act.name, bytes);
    return p;
}

sc_node *sc__node_record(sc_ctx *ctx, const char *op, sc__backward_fn bw,
                         sc_tensor *out, sc_tensor *const *in, int n_in)
{
    SC_ASSERT(n_in <= SC_NODE_MAX_IN, "op %s has %d inputs", op, n_in);
    if (!ctx->grad_enabled) return NULL;
    int any = 0;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->requires_grad) any = 1;
    if (!any) return NULL;
    sc_node *n = sc_arena_calloc(&ctx->act, 1, sizeof *n);
    SC_ASSERT(n != NULL, "arena '%s' cannot hold a tape node", ctx->act.name);
    n->op = op;
    n->backward = bw;
    n->out = out;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    n->prev = ctx->tape;
    ctx->tape = n;
    ctx->n_nodes++;
    out->requires_grad = 1;
    out->node = n;
    return n;
}

float *sc__grad(sc_ctx *ctx, sc_tensor *t)
{
    if (!t || !t->requires_grad) return NULL;
    if (!t->grad) {
        t->grad = sc_arena_calloc(&ctx->grad, (size_t)sc_numel(t), sizeof(float));
        SC_ASSERT(t->grad != NULL, "arena '%s' cannot hold the gradient of '%s'", ctx->grad.name, t->name);
    }
    return t->grad;
}

/* ======================================================================== */
/* 3. Threads                                                                */
/* ======================================================================== */

/* One pool of POSIX threads, started on the first parallel call and reused
 * by every later one, so no call pays for thread creation. The calling
 * thread always works too: with t threads wanted, t - 1 pool workers join
 * it. Work items are claimed in chunks from an atomic counter, so which
 * thread runs which item varies from run to run; results cannot vary as
 * long as items write disjoint memory, which the API requires.
 *
 * A parallel_for issued from inside a task (or while another thread owns
 * the pool) runs serially on the calling thread: it cannot deadlock waiting
 * for workers that are busy running its own parent. */

#define SC_MAX_THREADS 256

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* workers sleep here between jobs */
    pthread_cond_t done;        /* the caller sleeps here until helpers finish */
    int n_workers;              /* threads started so far */
    uint64_t generation;        /* advances with every job */
    int busy;                   /* a job is running */
    /* the current job */
    sc_task_fn fn;
    void *arg;
    int64_t n_items;
    int64_t chunk;              /* items claimed at a time */
    atomic_llong next_item;     /* first item not yet claimed */
    int helpers;                /* workers 1..helpers take part */
    int active;                 /* helpers that have not finished */
} thread_pool;

static thread_pool pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};

/* Set while this thread runs a task (workers: always), so nested calls run
 * serially. */
static _Thread_local int inside_task;

static atomic_int threads_override;   /* sc_set_threads; 0 = default */
static int threads_default = 1;
static pthread_once_t threads_once = PTHREAD_ONCE_INIT;

static void threads_read_env(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    const char *s = getenv("SCALE_THREADS");
    if (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (*end == 0 && v > 0) n = v;
    }
    if (n < 1) n = 1;
    threads_default = n > SC_MAX_THREADS ? SC_MAX_THREADS : (int)n;
}

int sc_threads(void)
{
    int n = atomic_load(&threads_override);
    if (n > 0) return n;
    pthread_once(&threads_once, threads_read_env);
    return threads_default;
}

void sc_set_threads(int n)
{
    if (n > SC_MAX_THREADS) n = SC_MAX_THREADS;
    atomic_store(&threads_override, n > 0 ? n : 0);
}

/* Claim chunks of the current job until none is left. */
static void pool_run_items(void)
{
    for (;;) {
        int64_t i = atomic_fetch_add(&pool.next_item, pool.chunk);
        if (i >= pool.n_items) return;
        int64_t end = i + pool.chunk < pool.n_items ? i + pool.chunk : pool.n_items;
        for (; i < end; i++) pool.fn(pool.arg, i);
    }
}

static void *pool_worker(void *arg)
{
    int id = (int)(intptr_t)arg;        /* 1, 2, ...; the caller is 0 */
    uint64_t seen = 0;
    inside_task = 1;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        if (id > pool.helpers) continue;   /* not needed for this job */
        pthread_mutex_unlock(&pool.lock);
        pool_run_items();
        pthread_mutex_lock(&pool.lock);
        if (--pool.active == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

/* A child of fork() has none of the parent's workers: start afresh. */
static void pool_after_fork(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.n_workers = 0;
    pool.busy = 0;
}

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static void pool_register_fork(void)
{
    pthread_atfork(NULL, NULL, pool_after_fork);
}

/* Start workers until `want` exist (called with the lock held); returns how
 * many there are, fewer if the system refuses more threads. */
static int pool_grow(int want)
{
    while (pool.n_workers < want) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, pool_worker, (void *)(intptr_t)(pool.n_workers + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        pool.n_workers++;
    }
    return pool.n_workers;
}

static void run_serially(int64_t n, sc_task_fn fn, void *arg)
{
    for (int64_t i = 0; i < n; i++) fn(arg, i);
}

void sc_parallel_for(int64_t n, sc_task_fn fn, void *arg)
{
    int64_t t = sc_threads();
    if (t > n) t = n;
    if (t <= 1 || inside_task) {
        run_serially(n, fn, arg);
        return;
    }
    pthread_once(&pool_once, pool_register_fork);
    pthread_mutex_lock(&pool.lock);
    int helpers = pool.busy ? 0 : pool_grow((int)t - 1);
    if (helpers > t - 1) helpers = (int)t - 1;
    if (helpers == 0) {
        pthread_mutex_unlock(&pool.lock);
        run_serially(n, fn, arg);
        return;
    }
    pool.busy = 1;
    pool.fn = fn;
    pool.arg = arg;
    pool.n_items = n;
    /* About four chunks per thread: few atomic claims, yet a thread that
     * falls behind can hand work over to the others. */
    pool.chunk = n / (4 * (helpers + 1)) > 0 ? n / (4 * (helpers + 1)) : 1;
    atomic_store(&pool.next_item, 0);
    pool.helpers = helpers;
    pool.active = helpers;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    inside_task = 1;
    pool_run_items();
    inside_task = 0;

    pthread_mutex_lock(&pool.lock);
    while (pool.active > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pool.busy = 0;
    pthread_mutex_unlock(&pool.lock);
}

/* ======================================================================== */
/* 4. GEMM                                                                   */
/* ======================================================================== */

/* C (M×N) = op(A) (M×K) · op(B) (K×N), everything row-major:
 *
 *   op(A)[i][k] = trans_a ? A[k·lda + i] : A[i·lda + k]
 *   op(B)[k][j] = trans_b ? B[j·ldb + k] : B[k·ldb + j]
 *   C[i][j]     = C[i·ldc + j]
 *
 * The reference is the triple loop. The fast path follows Goto and van de
 * Geijn (the BLIS loop nest): copy ("pack") a block of op(A) and a block of
 * op(B) into buffers laid out in exactly the order the micro-kernel reads
 * them, then let the micro-kernel hold an MR×NR tile of C in registers
 * while it walks down K. Book chapter 01 explains the choice of sizes. */

void sc_gemm_ref(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                 const float *A, int64_t lda, const float *B, int64_t ldb,
                 float *C, int64_t ldc, int accumulate)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) {
                float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            C[i * ldc + j] = accumulate ? C[i * ldc + j] + s : s;
        }
}

/* One product, as the caller described it. */
typedef struct {
    int trans_a, trans_b;
    int64_t M, N, K;
    const float *A;   /* op(A) is (M, K) */
    int64_t lda;
    const float *B;   /* op(B) is (K, N) */
    int64_t ldb;
    float *C;         /* (M, N) */
    int64_t ldc;
    int accumulate;
} gemm_args;

/* A micro-kernel computes one MR×NR tile of C from packed panels:
 *   a: (kc, MR) — column k of the tile's rows of op(A), MR floats per k
 *   b: (kc, NR) — row k of the tile's columns of op(B), NR floats per k
 * acc[i][j] = Σ_k a[k·MR + i] · b[k·NR + j], summed in order k = 0, 1, ...
 * starting from zero; then c[i·ldc + j] = acc (add = 0) or c + acc (add = 1). */
typedef void (*gemm_kernel_fn)(int64_t kc, const float *a, const float *b,
                               float *c, int64_t ldc, int add);

/* Packs rows [p0, p0 + kc) and columns [j0, j0 + nc) of op(B) into
 * ceil(nc / nr) panels, each (kc, nr), zero-padded past column nc. */
typedef void (*gemm_pack_b_fn)(const gemm_args *g, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                               int nr, float *dst);
/* Packs rows [i0, i0 + mc) and columns [p0, p0 + kc) of op(A) into
 * ceil(mc / mr) panels, each (kc, mr), zero-padded past row mc. */
typedef void (*gemm_pack_a_fn)(const gemm_args *g, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                               int mr, float *dst);

/* A kernel, the block sizes that suit it, and how to pack B for it. */
typedef struct {
    const char *name;
    int mr, nr;           /* register tile */
    int64_t mc, kc, nc;   /* cache blocks: A block mc×kc, B block kc×nc */
    gemm_kernel_fn kernel;
    gemm_pack_a_fn pack_a;
    gemm_pack_b_fn pack_b;
} gemm_kernel;

#define GEMM_MAX_TILE (6 * 16)   /* largest mr·nr of any kernel */

/* ---- packing ---------------------------------------------------------------- */

/* Packing reads the operands once, straight from memory, so it is limited
 * by memory latency unless the next lines are requested early. They are
 * requested into L2 only (locality 2 = prefetcht1): the rows being packed
 * lie a row stride apart, often a multiple of 4 KiB, so they all fall in
 * the same L1 set, and lines fetched early into L1 would evict the ones
 * in use. */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch((p), 0, 2)
#else
#define PREFETCH(p) ((void)(p))
#endif

/* Copy rows [i0, i0 + mc) and columns [p0, p0 + kc) of op(A) into
 * ceil(mc / mr) panels, each (kc, mr): for every k the mr values of one
 * column, in the order the kernel reads them. Rows past mc are zero so
 * the last, short panel runs through the same kernel. */
static void pack_a_portable(const gemm_args *g, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                            int mr, float *dst)
{
    if (!g->trans_a) {
        /* A is (M, K): each row is a stream; fetch the same stretch of the
         * row one panel below while copying this one. */
        for (int64_t i = 0; i < mc; i++) {
            const float *src = g->A + (i0 + i) * g->lda + p0;
            float *panel = dst + i / mr * mr * kc + i % mr;
            int next = i + mr < mc;
            for (int64_t k0 = 0; k0 < kc; k0 += 16) {
                if (next) PREFETCH(src + mr * g->lda + k0);
                int64_t k1 = kc - k0 < 16 ? kc : k0 + 16;
                for (int64_t k = k0; k < k1; k++) panel[k * mr] = src[k];
            }
        }
    } else {
        /* A is (K, M): a panel takes mr floats from each of kc rows. Sweep
         * eight rows across all panels at a time (eight sequential
         * streams) rather than jump a whole row for every k. */
        for (int64_t k0 = 0; k0 < kc; k0 += 8) {
            int64_t k1 = kc - k0 < 8 ? kc : k0 + 8;
            for (int64_t ir = 0; ir < mc; ir += mr) {
                int64_t rows = mc - ir < mr ? mc - ir : mr;
                for (int64_t k = k0; k < k1; k++) {
                    const float *src = g->A + (p0 + k) * g->lda + i0 + ir;
                    for (int64_t r = 0; r < rows; r++) dst[ir * kc + k * mr + r] = src[r];
                }
            }
        }
    }
    int64_t last = (mc - 1) / mr * mr;   /* first row of the last panel */
    for (int64_t r = mc - last; r < mr; r++)
        for (int64_t k = 0; k < kc; k++) dst[last * kc + k * mr + r] = 0.0f;
}

/* One panel of op(B): rows [p0, p0 + kc), columns [j, j + cols) with
 * cols <= nr, laid out (kc, nr) and zero-padded past cols. */
static void pack_b_panel(const gemm_args *g, int64_t p0, int64_t kc, int64_t j, int64_t cols,
                         int nr, float *panel)
{
    if (!g->trans_b) {
        for (int64_t k = 0; k < kc; k++) {
            const float *src = g->B + (p0 + k) * g->ldb + j;
            for (int64_t c = 0; c < cols; c++) panel[k * nr + c] = src[c];
        }
    } else {
        for (int64_t c = 0; c < cols; c++) {
            const float *src = g->B + (j + c) * g->ldb + p0;
            for (int64_t k = 0; k < kc; k++) panel[k * nr + c] = src[k];
        }
    }
    for (int64_t c = cols; c < nr; c++)
        for (int64_t k = 0; k < kc; k++) panel[k * nr + c] = 0.0f;
}

/* Rows [p0, p0 + kc) and columns [j0, j0 + nc) of op(B) as ceil(nc / nr)
 * panels. When B is stored (K, N), going panel by panel would read nr
 * floats from each of kc rows a whole row apart — a stride the hardware
 * prefetcher does not follow. Instead eight rows are swept across all
 * panels at a time: eight sequential streams. */
static void pack_b_portable(const gemm_args *g, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                            int nr, float *dst)
{
    int64_t full = nc / nr * nr;   /* columns in whole panels */
    if (!g->trans_b) {
        for (int64_t k0 = 0; k0 < kc; k0 += 8) {
            int64_t k1 = kc - k0 < 8 ? kc : k0 + 8;
            for (int64_t jr = 0; jr < full; jr += nr)
                for (int64_t k = k0; k < k1; k++) {
                    const float *src = g->B + (p0 + k) * g->ldb + j0 + jr;
                    float *d = dst + jr * kc + k * nr;
                    for (int c = 0; c < nr; c++) d[c] = src[c];
                }
        }
    } else {
        for (int64_t jr = 0; jr < full; jr += nr)
            pack_b_panel(g, p0, kc, j0 + jr, nr, nr, dst + jr * kc);
    }
    if (full < nc) pack_b_panel(g, p0, kc, j0 + full, nc - full, nr, dst + full * kc);
}

/* ---- the portable kernel ------------------------------------------------ */

/* No intrinsics here, so it builds for any target. With GCC or Clang the
 * accumulators are generic 4-float vectors (the compilers' vector
 * extension), which become SSE2 on any x86-64 and NEON on ARM: 6×8 uses
 * twelve of them, plus two for the row of B and one for the broadcast —
 * 15 of the 16 SSE registers. (Written as a float acc[6][8] array, gcc
 * keeps acc in memory and runs at a third of the speed.) Other compilers
 * get the plain loop. */
#define PORTABLE_MR 6
#define PORTABLE_NR 8

#if defined(__GNUC__) || defined(__clang__)
typedef float v4f __attribute__((vector_size(16)));

static inline v4f v4f_load(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

#define PORTABLE_ROW(i)          \
    c##i##0 += a[i] * b0;        \
    c##i##1 += a[i] * b1;
#define PORTABLE_STORE(i)                                                   \
    if (add) {                                                              \
        c##i##0 += v4f_load(c + i * ldc);                                   \
        c##i##1 += v4f_load(c + i * ldc + 4);                               \
    }                                                                       \
    memcpy(c + i * ldc, &c##i##0, sizeof(v4f));                             \
    memcpy(c + i * ldc + 4, &c##i##1, sizeof(v4f));

static void kernel_portable(int64_t kc, const float *a, const float *b,
                            float *c, int64_t ldc, int add)
{
    v4f c00 = {0.0f, 0.0f, 0.0f, 0.0f}, c01 = c00, c10 = c00, c11 = c00, c20 = c00,
        c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t k = 0; k < kc; k++, a += PORTABLE_MR, b += PORTABLE_NR) {
        v4f b0 = v4f_load(b), b1 = v4f_load(b + 4);
        PORTABLE_ROW(0) PORTABLE_ROW(1) PORTABLE_ROW(2)
        PORTABLE_ROW(3) PORTABLE_ROW(4) PORTABLE_ROW(5)
    }
    PORTABLE_STORE(0) PORTABLE_STORE(1) PORTABLE_STORE(2)
    PORTABLE_STORE(3) PORTABLE_STORE(4) PORTABLE_STORE(5)
}
#undef PORTABLE_ROW
#undef PORTABLE_STORE
#else
static void kernel_portable(int64_t kc, const float *a, const float *b,
                            float *c, int64_t ldc, int add)
{
    float acc[PORTABLE_MR][PORTABLE_NR] = {{0}};
    for (int64_t k = 0; k < kc; k++, a += PORTABLE_MR, b += PORTABLE_NR)
        for (int i = 0; i < PORTABLE_MR; i++)
            for (int j = 0; j < PORTABLE_NR; j++)
                acc[i][j] += a[i] * b[j];
    for (int i = 0; i < PORTABLE_MR; i++)
        for (int j = 0; j < PORTABLE_NR; j++)
            c[i * ldc + j] = add ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}
#endif

static const gemm_kernel gemm_portable = {
    "portable", PORTABLE_MR, PORTABLE_NR, 96, 512, 1024, kernel_portable, pack_a_portable, pack_b_portable
};

/* ---- the AVX2/FMA kernel ------------------------------------------------ */

#if SC_GEMM_X86

/* 6×16: twelve ymm accumulators (6 rows × 2 vectors of 8), two for the row
 * of B, one for the broadcast element of A — 15 of the 16 ymm registers.
 * Per k: 2 loads, 6 broadcasts, 12 FMAs; two FMA pipes finish those 12 in
 * 6 cycles, and 12 independent accumulators cover the FMA latency of 4
 * cycles × 2 pipes = 8 in flight. */
/* @book begin gemm-kernel-avx2 */
#define AVX2_ROW(i)                                                    \
    ai = _mm256_broadcast_ss(a + i);                                   \
    c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                        \
    c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);
#define AVX2_STORE(i)                                                  \
    if (add) {                                                         \
        c##i##0 = _mm256_add_ps(_mm256_loadu_ps(c + i * ldc), c##i##0);     \
        c##i##1 = _mm256_add_ps(_mm256_loadu_ps(c + i * ldc + 8), c##i##1); \
    }                                                                  \
    _mm256_storeu_ps(c + i * ldc, c##i##0);                            \
    _mm256_storeu_ps(c + i * ldc + 8, c##i##1);

__attribute__((target("avx2,fma")))
static void kernel_avx2_6x16(int64_t kc, const float *a, const float *b,
                             float *c, int64_t ldc, int add)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00,
           c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    __m256 ai;
    /* C is needed only after the loop: ask for its lines now. */
    for (int i = 0; i < 6; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 15), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++, a += 6, b += 16) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        AVX2_ROW(0) AVX2_ROW(1) AVX2_ROW(2) AVX2_ROW(3) AVX2_ROW(4) AVX2_ROW(5)
    }
    AVX2_STORE(0) AVX2_STORE(1) AVX2_STORE(2) AVX2_STORE(3) AVX2_STORE(4) AVX2_STORE(5)
}
/* @book end gemm-kernel-avx2 */
#undef AVX2_ROW
#undef AVX2_STORE

/* Packing B with 8-float vectors: rows of a (K, N) B are copied eight
 * floats at a time; an (N, K) B is transposed in 8×8 blocks in registers. */
/* Transpose the 8×8 block whose rows start at src, src + ld, ... and store
 * its columns at dst, dst + nr, ... (written out: in loops gcc would keep
 * the sixteen temporaries in memory). */
__attribute__((target("avx2")))
static inline void transpose_8x8(const float *src, int64_t ld, float *dst, int64_t nr)
{
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ld),
           r2 = _mm256_loadu_ps(src + 2 * ld), r3 = _mm256_loadu_ps(src + 3 * ld),
           r4 = _mm256_loadu_ps(src + 4 * ld), r5 = _mm256_loadu_ps(src + 5 * ld),
           r6 = _mm256_loadu_ps(src + 6 * ld), r7 = _mm256_loadu_ps(src + 7 * ld);
    /* pairs of rows interleaved: t0 = r00 r10 r01 r11 | r04 r14 r05 r15 */
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
           t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
           t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
           t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    /* quads: s0 = r00 r10 r20 r30 | r04 r14 r24 r34 */
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE),
           s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE),
           s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    /* halves joined: column j = low (j < 4) or high (j >= 4) halves of s, s+4 */
    _mm256_store_ps(dst, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_store_ps(dst + nr, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_store_ps(dst + 2 * nr, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_store_ps(dst + 3 * nr, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_store_ps(dst + 4 * nr, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_store_ps(dst + 5 * nr, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_store_ps(dst + 6 * nr, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_store_ps(dst + 7 * nr, _mm256_permute2f128_ps(s3, s7, 0x31));
}

__attribute__((target("avx2")))
static void pack_b_avx2(const gemm_args *g, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                        int nr, float *dst)
{
    int64_t full = nc / nr * nr;   /* columns in whole panels */
    if (!g->trans_b) {
        for (int64_t k0 = 0; k0 < kc; k0 += 8) {
            int64_t k1 = kc - k0 < 8 ? kc : k0 + 8;
            for (int64_t jr = 0; jr < full; jr += nr)
                for (int64_t k = k0; k < k1; k++) {
                    const float *src = g->B + (p0 + k) * g->ldb + j0 + jr;
                    float *d = dst + jr * kc + k * nr;
                    for (int c = 0; c < nr; c += 8) _mm256_store_ps(d + c, _mm256_loadu_ps(src + c));
                }
        }
    } else {
        for (int64_t jr = 0; jr < full; jr += nr)
            for (int c = 0; c < nr; c += 8) {
                /* columns j0+jr+c .. +8 of op(B) are rows of the stored B */
                const float *src = g->B + (j0 + jr + c) * g->ldb + p0;
                float *d = dst + jr * kc + c;
                int64_t k = 0;
                int next = jr + nr < full;
                for (; k + 8 <= kc; k += 8) {
                    /* fetch the same lines of the next panel's rows */
                    if (next && k % 16 == 0)
                        for (int i = 0; i < 8; i++) PREFETCH(src + (nr + i) * g->ldb + k);
                    transpose_8x8(src + k, g->ldb, d + k * nr, nr);
                }
                for (; k < kc; k++)
                    for (int i = 0; i < 8; i++) d[k * nr + i] = src[i * g->ldb + k];
            }
    }
    if (full < nc) pack_b_panel(g, p0, kc, j0 + full, nc - full, nr, dst + full * kc);
}

/* Packing A (M, K) for the 6-row kernel (mr = 6): 8 rows × 8 columns at a time go
 * through transpose_8x8 into a scratch block, and the first 6 floats of
 * each of its rows — one column k of the panel — are copied out. The two
 * extra rows read belong to the next panel and must exist in A, so the
 * last panel or two of the matrix, a k tail, and A stored (K, M) take the
 * portable route. */
__attribute__((target("avx2")))
static void pack_a_avx2(const gemm_args *g, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                        int mr, float *dst)
{
    if (g->trans_a || mr != 6) {
        pack_a_portable(g, i0, mc, p0, kc, mr, dst);
        return;
    }
    int64_t ir = 0;
    for (; ir + mr <= mc && i0 + ir + 8 <= g->M; ir += mr) {
        const float *src = g->A + (i0 + ir) * g->lda + p0;
        float *panel = dst + ir * kc;
        int64_t k = 0;
        int next = i0 + ir + mr + 8 <= g->M;
        for (; k + 8 <= kc; k += 8) {
            float block[64] __attribute__((aligned(32)));
            if (next && k % 16 == 0)   /* the same lines of the next panel's rows */
                for (int r = 0; r < 6; r++) PREFETCH(src + (6 + r) * g->lda + k);
            transpose_8x8(src + k, g->lda, block, 8);
            for (int t = 0; t < 8; t++) memcpy(panel + (k + t) * 6, block + 8 * t, 6 * sizeof(float));
        }
        for (; k < kc; k++)
            for (int r = 0; r < mr; r++) panel[k * mr + r] = src[r * g->lda + k];
    }
    if (ir < mc) pack_a_portable(g, i0 + ir, mc - ir, p0, kc, mr, dst + ir * kc);
}

static const gemm_kernel gemm_avx2 = {
    "avx2-fma", 6, 16, 96, 512, 1024, kernel_avx2_6x16, pack_a_avx2, pack_b_avx2
};

#endif /* SC_GEMM_X86 */

/* ---- choosing a kernel ------------------------------------------------- */

/* The kernels this CPU runs, from the most portable up (filled once), and
 * the index of the one in use. */
static const gemm_kernel *gemm_levels[2];
static int gemm_n_levels;
static _Atomic int gemm_level;
static pthread_once_t gemm_once = PTHREAD_ONCE_INIT;

/* The best level, unless SCALE_NO_SIMD (set, and not "0") asks for the
 * portable kernel. */
static int gemm_auto_level(void)
{
    const char *no_simd = getenv("SCALE_NO_SIMD");
    if (no_simd && *no_simd && strcmp(no_simd, "0") != 0) return 0;
    return gemm_n_levels - 1;
}

static void gemm_detect(void)
{
    gemm_levels[gemm_n_levels++] = &gemm_portable;
#if SC_GEMM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        gemm_levels[gemm_n_levels++] = &gemm_avx2;
#endif
    atomic_store(&gemm_level, gemm_auto_level());
}

static const gemm_kernel *gemm_current(void)
{
    pthread_once(&gemm_once, gemm_detect);
    return gemm_levels[atomic_load(&gemm_level)];
}

int sc__gemm_force(int level)
{
    pthread_once(&gemm_once, gemm_detect);
    if (level < 0) level = gemm_auto_level();
    if (level >= gemm_n_levels) level = gemm_n_levels - 1;
    atomic_store(&gemm_level, level);
    return level;
}

int sc_gemm_simd(void)
{
    return gemm_current() != &gemm_portable;
}

const char *sc_gemm_kernel_name(void)
{
    return gemm_current()->name;
}

/* Each thread packs into its own buffers, kept between calls and freed when
 * the thread exits. */
typedef struct {
    float *a, *b;
    size_t a_floats, b_floats;
} pack_buffers;

static pthread_key_t pack_key;
static pthread_once_t pack_key_once = PTHREAD_ONCE_INIT;

static void pack_buffers_free(void *p)
{
    pack_buffers *pb = p;
    free(pb->a);
    free(pb->b);
    free(pb);
}

static void pack_key_create(void)
{
    SC_ASSERT(pthread_key_create(&pack_key, pack_buffers_free) == 0, "pthread_key_create failed");
}

static float *grow_buffer(float *p, size_t *have, size_t want)
{
    if (*have >= want) return p;
    free(p);
    size_t bytes = (want * sizeof(float) + 63) / 64 * 64;
    p = aligned_alloc(64, bytes);
    SC_ASSERT(p != NULL, "cannot allocate %zu bytes of GEMM packing buffer", bytes);
    *have = want;
    return p;
}

static pack_buffers *pack_buffers_get(const gemm_kernel *kn)
{
    pthread_once(&pack_key_once, pack_key_create);
    pack_buffers *pb = pthread_getspecific(pack_key);
    if (!pb) {
        pb = calloc(1, sizeof *pb);
        SC_ASSERT(pb != NULL, "cannot allocate GEMM packing buffers");
        pthread_setspecific(pack_key, pb);
    }
    size_t mc = (size_t)((kn->mc + kn->mr - 1) / kn->mr * kn->mr);
    size_t nc = (size_t)((kn->nc + kn->nr - 1) / kn->nr * kn->nr);
    pb->a = grow_buffer(pb->a, &pb->a_floats, mc * (size_t)kn->kc);
    pb->b = grow_buffer(pb->b, &pb->b_floats, nc * (size_t)kn->kc);
    return pb;
}

/* ---- the loop nest ---------------------------------------------------------- */

/* Multiply a packed A block (mc, kc) by a packed B block (kc, nc) into the
 * C block at c, tile by tile. Tiles cut by the block edge go through a
 * local tile and copy back only the valid part; they still run the same
 * kernel over the same k order, so their values are the same bits a full
 * tile would produce. */
static void gemm_macro(const gemm_kernel *kn, int64_t mc, int64_t nc, int64_t kc,
                       const float *pa, const float *pb, float *c, int64_t ldc, int add)
{
    const int mr = kn->mr, nr = kn->nr;
    for (int64_t jr = 0; jr < nc; jr += nr) {
        int64_t cols = nc - jr < nr ? nc - jr : nr;
        for (int64_t ir = 0; ir < mc; ir += mr) {
            int64_t rows = mc - ir < mr ? mc - ir : mr;
            const float *a = pa + ir * kc, *b = pb + jr * kc;
            float *ct = c + ir * ldc + jr;
            if (rows == mr && cols == nr) {
                kn->kernel(kc, a, b, ct, ldc, add);
                continue;
            }
            float tile[GEMM_MAX_TILE];
            kn->kernel(kc, a, b, tile, nr, 0);
            for (int64_t i = 0; i < rows; i++)
                for (int64_t j = 0; j < cols; j++)
                    ct[i * ldc + j] = add ? ct[i * ldc + j] + tile[i * nr + j] : tile[i * nr + j];
        }
    }
}

/* C[i0:i1, j0:j1] on one thread: the five loops of BLIS. The k blocks run
 * in order pc = 0, KC, 2·KC, ... and each adds its partial sum to C, so
 * every C element is summed in one fixed order that depends on K and KC
 * only — never on the rows and columns this thread was given. */
/* @book begin gemm-loop-nest */
static void gemm_block(const gemm_args *g, const gemm_kernel *kn,
                       int64_t i0, int64_t i1, int64_t j0, int64_t j1)
{
    pack_buffers *buf = pack_buffers_get(kn);
    for (int64_t jc = j0; jc < j1; jc += kn->nc) {           /* B block → L3 */
        int64_t nc = j1 - jc < kn->nc ? j1 - jc : kn->nc;
        for (int64_t pc = 0; pc < g->K; pc += kn->kc) {
            int64_t kc = g->K - pc < kn->kc ? g->K - pc : kn->kc;
            int add = g->accumulate || pc > 0;
            kn->pack_b(g, pc, kc, jc, nc, kn->nr, buf->b);
            for (int64_t ic = i0; ic < i1; ic += kn->mc) {    /* A block → L2 */
                int64_t mc = i1 - ic < kn->mc ? i1 - ic : kn->mc;
                kn->pack_a(g, ic, mc, pc, kc, kn->mr, buf->a);
                gemm_macro(kn, mc, nc, kc, buf->a, buf->b,
                           g->C + ic * g->ldc + jc, g->ldc, add);
            }
        }
    }
}
/* @book end gemm-loop-nest */

/* ---- small products ---------------------------------------------------------- */

/* Below a few hundred thousand multiply-adds packing costs more than it
 * saves: loop directly, with the innermost loop over contiguous memory
 * where the layout allows it. */
#define GEMM_SMALL_FLOPS (64 * 64 * 64)

static float gemm_a_at(const gemm_args *g, int64_t i, int64_t k)
{
    return g->trans_a ? g->A[k * g->lda + i] : g->A[i * g->lda + k];
}

static void gemm_small(const gemm_args *g)
{
    for (int64_t i = 0; i < g->M; i++) {
        float *c = g->C + i * g->ldc;
        if (!g->trans_b) {
            /* c[j] gathers partial sums over k; a non-accumulating product
             * starts each row from zero. */
            float row[256];
            for (int64_t j0 = 0; j0 < g->N; j0 += 256) {
                int64_t n = g->N - j0 < 256 ? g->N - j0 : 256;
                for (int64_t j = 0; j < n; j++) row[j] = 0.0f;
                for (int64_t k = 0; k < g->K; k++) {
                    float a = gemm_a_at(g, i, k);
                    const float *b = g->B + k * g->ldb + j0;
                    for (int64_t j = 0; j < n; j++) row[j] += a * b[j];
                }
                for (int64_t j = 0; j < n; j++)
                    c[j0 + j] = g->accumulate ? c[j0 + j] + row[j] : row[j];
            }
        } else {
            for (int64_t j = 0; j < g->N; j++) {
                const float *b = g->B + j * g->ldb;
                float s = 0.0f;
                for (int64_t k = 0; k < g->K; k++) s += gemm_a_at(g, i, k) * b[k];
                c[j] = g->accumulate ? c[j] + s : s;
            }
        }
    }
}

/* ---- threads ------------------------------------------------------------------ */

/* The threads split C into a tm × tn grid of blocks, cut on tile
 * boundaries; each block runs gemm_block on its own. K is never split, so
 * each C element is summed in the same order whatever the thread count:
 * results are bit-identical for 1, 2, ... threads. */
typedef struct {
    const gemm_args *g;
    const gemm_kernel *kn;
    int64_t tm, tn;           /* thread grid */
    int64_t m_tiles, n_tiles; /* ceil(M / mr), ceil(N / nr) */
} gemm_job;

static void gemm_task(void *arg, int64_t t)
{
    const gemm_job *job = arg;
    int64_t ti = t / job->tn, tj = t % job->tn;
    int64_t mr = job->kn->mr, nr = job->kn->nr;
    int64_t i0 = job->m_tiles * ti / job->tm * mr, i1 = job->m_tiles * (ti + 1) / job->tm * mr;
    int64_t j0 = job->n_tiles * tj / job->tn * nr, j1 = job->n_tiles * (tj + 1) / job->tn * nr;
    if (i1 > job->g->M) i1 = job->g->M;
    if (j1 > job->g->N) j1 = job->g->N;
    if (i0 < i1 && j0 < j1) gemm_block(job->g, job->kn, i0, i1, j0, j1);
}

/* Pick tm × tn ≤ threads minimising the blocks' half-perimeter
 * M/tm + N/tn, which is what each thread packs; ties go to splitting N. */
static void gemm_thread_grid(gemm_job *job, int64_t threads)
{
    double best = 0.0;
    job->tm = job->tn = 1;
    for (int64_t tm = 1; tm <= threads; tm++) {
        int64_t tn = threads / tm;
        if (tm > job->m_tiles || tn > job->n_tiles) continue;
        double cost = (double)job->g->M / (double)tm + (double)job->g->N / (double)tn;
        if (job->tm * job->tn == 1 || tm * tn > job->tm * job->tn ||
            (tm * tn == job->tm * job->tn && cost < best)) {
            job->tm = tm;
            job->tn = tn;
            best = cost;
        }
    }
}

void sc_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
             const float *A, int64_t lda, const float *B, int64_t ldb,
             float *C, int64_t ldc, int accumulate)
{
    SC_ASSERT(M >= 0 && N >= 0 && K >= 0, "gemm dims %lld %lld %lld",
              (long long)M, (long long)N, (long long)K);
    SC_ASSERT(lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N) && ldc >= N,
              "gemm leading dimensions lda=%lld ldb=%lld ldc=%lld too small",
              (long long)lda, (long long)ldb, (long long)ldc);
    if (M == 0 || N == 0) return;
    if (K == 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    gemm_args g = {trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate};
    double flops = (double)M * (double)N * (double)K;
    if (flops <= GEMM_SMALL_FLOPS) {
        gemm_small(&g);
        return;
    }
    gemm_job job = {&g, gemm_current(), 1, 1, 0, 0};
    job.m_tiles = (M + job.kn->mr - 1) / job.kn->mr;
    job.n_tiles = (N + job.kn->nr - 1) / job.kn->nr;
    /* Each thread should get at least ~4 small products' worth of work. */
    int64_t threads = sc_threads();
    int64_t worth = (int64_t)(flops / (4.0 * GEMM_SMALL_FLOPS));
    if (threads > worth) threads = worth > 1 ? worth : 1;
    gemm_thread_grid(&job, threads);
    sc_parallel_for(job.tm * job.tn, gemm_task, &job);
}

/* ======================================================================== */
/* 5. Views                                                                  */
/* ======================================================================== */

/* ======================================================================== */
/* 6. Linear algebra                                                         */
/* ======================================================================== */

/* ======================================================================== */
/* 7. Elementwise binary ops with broadcasting                               */
/* ======================================================================== */

/* ======================================================================== */
/* 8. Unary ops and activations                                              */
/* ======================================================================== */

/* ======================================================================== */
/* 9. Reductions                                                             */
/* ======================================================================== */

/* ======================================================================== */
/* 10. Softmax, layernorm, L2 normalisation                                  */
/* ======================================================================== */

/* ======================================================================== */
/* 11. Indexing and layout                                                   */
/* ======================================================================== */

/* ======================================================================== */
/* 12. Backward pass                                                         */
/* ======================================================================== */

/* ======================================================================== */
/* 13. Optimizers and the learning-rate schedule                             */
/* ======================================================================== */
