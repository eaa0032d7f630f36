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

/* Vector code for per-element loops (optimizer updates, L2 norms). GCC at
 * -O2 vectorises only loops whose trip count it knows, so these ask for the
 * cheap cost model (and rely on -fno-math-errno from the Makefile for
 * sqrtf), plus an AVX2 clone picked at load time. None of this changes a
 * result: every lane does exactly the scalar arithmetic, with no
 * contraction into FMAs (-ffp-contract=off) and no reassociation. Clang
 * vectorises these loops at -O2 by itself and needs only the AVX2 clone
 * (without it, its Adam ran 4 lanes wide and a third of the training time). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define OPT_VECTORIZE \
    __attribute__((optimize("tree-vectorize", "vect-cost-model=cheap"), target_clones("avx2", "default")))
#elif defined(__clang__) && defined(__x86_64__)
#define OPT_VECTORIZE __attribute__((target_clones("avx2", "default")))
#else
#define OPT_VECTORIZE
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

/* @book begin is-contiguous */
int sc_is_contiguous(const sc_tensor *t)
{
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect) return 0;
        expect *= t->shape[i];
    }
    return 1;
}
/* @book end is-contiguous */

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

/* @book begin node-record */
sc_node *sc__node_record(sc_ctx *ctx, const char *op, sc__backward_fn bw,
                         sc_tensor *out, sc_tensor *const *in, int n_in)
{
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
    n->in = sc_arena_alloc(&ctx->act, sizeof(sc_tensor *) * (size_t)(n_in ? n_in : 1));
    SC_ASSERT(n->in != NULL, "arena '%s' cannot hold a tape node", ctx->act.name);
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    n->prev = ctx->tape;
    ctx->tape = n;
    ctx->n_nodes++;
    out->requires_grad = 1;
    out->node = n;
    return n;
}
/* @book end node-record */

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
    _Atomic uint64_t generation; /* advances with every job */
    int busy;                   /* a job is running */
    /* the current job */
    sc_task_fn fn;
    void *arg;
    int64_t n_items;
    int64_t chunk;              /* items claimed at a time */
    _Atomic int64_t next_item;  /* first item not yet claimed */
    int helpers;                /* workers 1..helpers take part */
    _Atomic int active;         /* helpers that have not finished */
} thread_pool;

static thread_pool pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};

/* Set while this thread runs a task (workers: always), so nested calls run
 * serially. */
static _Thread_local int inside_task;

static _Atomic int threads_override;  /* sc_set_threads; 0 = default */
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

/* Waking a sleeping thread through the kernel takes tens of microseconds,
 * as long as a small product. So a thread that expects to be needed again
 * soon first polls for up to POOL_SPIN_NS, and only then sleeps. */
#define POOL_SPIN_NS 50000

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Poll until *flag != value or the spin time is over (no lock held). */
static void spin_while_u64(_Atomic uint64_t *flag, uint64_t value)
{
    int64_t until = monotonic_ns() + POOL_SPIN_NS;
    while (atomic_load(flag) == value && monotonic_ns() < until) {
#if SC_GEMM_X86
        __builtin_ia32_pause();
#endif
    }
}

static void spin_while_nonzero(_Atomic int *count)
{
    int64_t until = monotonic_ns() + POOL_SPIN_NS;
    while (atomic_load(count) != 0 && monotonic_ns() < until) {
#if SC_GEMM_X86
        __builtin_ia32_pause();
#endif
    }
}

static void *pool_worker(void *arg)
{
    int id = (int)(intptr_t)arg;        /* 1, 2, ...; the caller is 0 */
    uint64_t seen = 0;
    inside_task = 1;
    for (;;) {
        spin_while_u64(&pool.generation, seen);
        pthread_mutex_lock(&pool.lock);
        while (atomic_load(&pool.generation) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = atomic_load(&pool.generation);
        if (id > pool.helpers) {           /* not needed for this job */
            pthread_mutex_unlock(&pool.lock);
            continue;
        }
        pthread_mutex_unlock(&pool.lock);
        pool_run_items();
        pthread_mutex_lock(&pool.lock);
        if (atomic_fetch_sub(&pool.active, 1) == 1) pthread_cond_signal(&pool.done);
        pthread_mutex_unlock(&pool.lock);
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
    atomic_store(&pool.active, helpers);
    atomic_fetch_add(&pool.generation, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    inside_task = 1;
    pool_run_items();
    inside_task = 0;

    spin_while_nonzero(&pool.active);
    pthread_mutex_lock(&pool.lock);
    while (atomic_load(&pool.active) > 0) pthread_cond_wait(&pool.done, &pool.lock);
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

/* One product, as the caller described it (trans_c = 0), or the same
 * product turned around, Cᵀ = op(B)ᵀ op(A)ᵀ, with C[i][j] stored at
 * C[j·ldc + i] (trans_c = 1; see gemm_turn_around). */
typedef struct {
    int trans_a, trans_b, trans_c;
    int64_t M, N, K;
    const float *A;   /* op(A) is (M, K) */
    int64_t lda;
    const float *B;   /* op(B) is (K, N) */
    int64_t ldb;
    float *C;         /* (M, N) */
    int64_t ldc;
    int accumulate;
} gemm_args;

/* A micro-kernel computes one MR×NR tile of C:
 *   a: element (i, k) of the tile's rows of op(A) at a[i·a_rs + k·a_ks] —
 *      a packed panel (kc, MR) has a_rs = 1, a_ks = MR; A read in place
 *      has its own strides
 *   b: row k of the tile's columns of op(B), NR floats from b + k·b_ks —
 *      a packed panel (kc, NR) has b_ks = NR; a B stored (K, N) read in
 *      place has b_ks = ldb
 * acc[i][j] = Σ_k a(i, k) · b[k·b_ks + j], summed in order k = 0, 1, ...
 * starting from zero; then c[i·ldc + j] = acc (add = 0) or c + acc (add = 1).
 * Where the operands come from changes no bit of the result. */
typedef void (*gemm_kernel_fn)(int64_t kc, const float *a, int64_t a_rs, int64_t a_ks, const float *b,
                               int64_t b_ks, float *c, int64_t ldc, int add);

/* Packs rows [p0, p0 + kc) and columns [j0, j0 + nc) of op(B) into
 * ceil(nc / nr) panels, each (kc, nr), zero-padded past column nc. */
typedef void (*gemm_pack_b_fn)(const gemm_args *g, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                               int nr, float *dst);
/* Packs rows [i0, i0 + mc) and columns [p0, p0 + kc) of op(A) into
 * ceil(mc / mr) panels, each (kc, mr), zero-padded past row mc. */
typedef void (*gemm_pack_a_fn)(const gemm_args *g, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                               int mr, float *dst);

/* A kernel, the block sizes that suit it, and how to pack A and B for it. */
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
    c##i##0 += a[i * a_rs] * b0; \
    c##i##1 += a[i * a_rs] * b1;
#define PORTABLE_STORE(i)                                                   \
    if (add) {                                                              \
        c##i##0 += v4f_load(c + i * ldc);                                   \
        c##i##1 += v4f_load(c + i * ldc + 4);                               \
    }                                                                       \
    memcpy(c + i * ldc, &c##i##0, sizeof(v4f));                             \
    memcpy(c + i * ldc + 4, &c##i##1, sizeof(v4f));

static void kernel_portable(int64_t kc, const float *a, int64_t a_rs, int64_t a_ks, const float *b,
                            int64_t b_ks, float *c, int64_t ldc, int add)
{
    v4f c00 = {0.0f, 0.0f, 0.0f, 0.0f}, c01 = c00, c10 = c00, c11 = c00, c20 = c00,
        c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t k = 0; k < kc; k++, a += a_ks, b += b_ks) {
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
static void kernel_portable(int64_t kc, const float *a, int64_t a_rs, int64_t a_ks, const float *b,
                            int64_t b_ks, float *c, int64_t ldc, int add)
{
    float acc[PORTABLE_MR][PORTABLE_NR] = {{0}};
    for (int64_t k = 0; k < kc; k++, a += a_ks, b += b_ks)
        for (int i = 0; i < PORTABLE_MR; i++)
            for (int j = 0; j < PORTABLE_NR; j++)
                acc[i][j] += a[i * a_rs] * b[j];
    for (int i = 0; i < PORTABLE_MR; i++)
        for (int j = 0; j < PORTABLE_NR; j++)
            c[i * ldc + j] = add ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}
#endif

/* The same blocks as the AVX2 kernel (see there). */
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
    ai = _mm256_broadcast_ss(a + i * a_rs);                            \
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
static void kernel_avx2_6x16(int64_t kc, const float *a, int64_t a_rs, int64_t a_ks, const float *b,
                             int64_t b_ks, float *c, int64_t ldc, int add)
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
    for (int64_t k = 0; k < kc; k++, a += a_ks, b += b_ks) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        AVX2_ROW(0) AVX2_ROW(1) AVX2_ROW(2) AVX2_ROW(3) AVX2_ROW(4) AVX2_ROW(5)
    }
    AVX2_STORE(0) AVX2_STORE(1) AVX2_STORE(2) AVX2_STORE(3) AVX2_STORE(4) AVX2_STORE(5)
}
/* @book end gemm-kernel-avx2 */
#undef AVX2_ROW
#undef AVX2_STORE

/* Packing with 8-float vectors. Transpose the 8×8 block whose rows start at src, src + ld, ... and store
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

/* Rows of a (K, N) B are copied eight floats at a time, eight rows swept
 * across all panels as in pack_b_portable; an (N, K) B is transposed in
 * 8×8 blocks. */
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

/* Block sizes, measured on Zen 4 (32 KiB L1d and 1 MiB L2 per core, 32 MiB
 * L3) and explained in book chapter 01: an A block of 96 × 512 floats is
 * 192 KiB and stays in L2; a B block of 512 × 1024 is 2 MiB and lives in
 * L3; one B micro-panel, 512 × 16 × 4 bytes = 32 KiB, streams through L1.
 * A long kc spreads the cost of loading and storing the C tile over 512
 * k steps. */
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

/* Products that fit in L2 read their operands in place (see
 * gemm_block_direct) unless a test turns that off to compare the paths. */
static _Atomic int gemm_direct_enabled = 1;

int sc__gemm_direct(int enable)
{
    return atomic_exchange(&gemm_direct_enabled, enable != 0);
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

/* Buffers for blocks of at most mc × kc (A) and kc × nc (B). */
static pack_buffers *pack_buffers_get(const gemm_kernel *kn, int64_t mc, int64_t kc, int64_t nc)
{
    pthread_once(&pack_key_once, pack_key_create);
    pack_buffers *pb = pthread_getspecific(pack_key);
    if (!pb) {
        pb = calloc(1, sizeof *pb);
        SC_ASSERT(pb != NULL, "cannot allocate GEMM packing buffers");
        pthread_setspecific(pack_key, pb);
    }
    size_t a_rows = (size_t)((mc + kn->mr - 1) / kn->mr * kn->mr);
    size_t b_cols = (size_t)((nc + kn->nr - 1) / kn->nr * kn->nr);
    pb->a = grow_buffer(pb->a, &pb->a_floats, a_rows * (size_t)kc);
    pb->b = grow_buffer(pb->b, &pb->b_floats, b_cols * (size_t)kc);
    return pb;
}

/* ---- the loop nest ---------------------------------------------------------- */

/* Copy the first rows × cols of a tile the kernel wrote to a local buffer
 * (row stride nr) to C at c, storing C[i][j] at c[i·rs + j·cs]: C = tile,
 * or C + tile when adding — the addition the kernel would have made. */
static void tile_store(float *c, int64_t rs, int64_t cs, const float *tile, int nr, int64_t rows, int64_t cols,
                       int add)
{
    if (cs != 1) {   /* C transposed: walk it in memory order, a column of the tile at a time */
        for (int64_t j = 0; j < cols; j++)
            for (int64_t i = 0; i < rows; i++) {
                float *p = c + i * rs + j * cs;
                *p = add ? *p + tile[i * nr + j] : tile[i * nr + j];
            }
        return;
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            float *p = c + i * rs + j;
            *p = add ? *p + tile[i * nr + j] : tile[i * nr + j];
        }
}

/* Multiply a packed A block (mc, kc) by a packed B block (kc, nc) into the
 * C block at c, tile by tile. Tiles cut by the block edge go through a
 * local tile and copy back only the valid part; they still run the same
 * kernel over the same k order, so their values are the same bits a full
 * tile would produce. */
/* @book begin gemm-macro */
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
                kn->kernel(kc, a, 1, mr, b, nr, ct, ldc, add);
                continue;
            }
            float tile[GEMM_MAX_TILE];
            kn->kernel(kc, a, 1, mr, b, nr, tile, nr, 0);
            tile_store(ct, ldc, 1, tile, nr, rows, cols, add);
        }
    }
}
/* @book end gemm-macro */

/* C[i0:i1, j0:j1] on one thread: the five loops of BLIS. The k blocks run
 * in order pc = 0, KC, 2·KC, ... and each adds its partial sum to C, so
 * every C element is summed in one fixed order that depends on K and KC
 * only — never on the rows and columns this thread was given. */
/* @book begin gemm-loop-nest */
static void gemm_block(const gemm_args *g, const gemm_kernel *kn,
                       int64_t i0, int64_t i1, int64_t j0, int64_t j1)
{
    pack_buffers *buf = pack_buffers_get(kn, i1 - i0 < kn->mc ? i1 - i0 : kn->mc,
                                         g->K < kn->kc ? g->K : kn->kc,
                                         j1 - j0 < kn->nc ? j1 - j0 : kn->nc);
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

/* ---- products that fit in L2 ---------------------------------------------------- */

/* Packing pays for itself when the packed blocks are reused many times;
 * in the products of adapter training (64 rows against a 768 × 192
 * weight) each weight element is used by at most 64 rows, and packing the
 * weight cost as much as a third of the multiplication. A product whose
 * operands together fit in L2 (1 MiB here) is therefore run with the
 * kernel reading the operands where they are stored: op(A) as broadcasts
 * from any strides, op(B) as rows when B is stored (K, N). Only an op(B)
 * stored transposed, and the partial tiles at the right and bottom edges,
 * are packed. */
#define GEMM_DIRECT_FLOATS (1 << 18)

static int gemm_fits_direct(const gemm_args *g)
{
    return (double)g->K * (double)(g->M + g->N) <= GEMM_DIRECT_FLOATS;
}

/* When op(B) would have to be packed (B stored (N, K)), compute Cᵀ =
 * op(B)ᵀ op(A)ᵀ instead if that is cheaper: with A stored (K, M) nothing
 * is packed then; with A stored (M, K), A is packed instead of B, but C is
 * stored transposed one float at a time, once per k block — worth it
 * when those M·N·(K / kc) stores, counted four times a packed float (a
 * measured ratio), cost less than packing B's K·N. A product with fewer
 * rows than a tile has columns would leave most of the turned tile empty.
 * Each element is still the sum over k in the same order of the same
 * products (a·b = b·a exactly, in the FMA too), so the bits do not change. */
static gemm_args gemm_turn_around(const gemm_args *g, int64_t kc, int nr)
{
    double k_blocks = (double)((g->K + kc - 1) / kc);
    int cheaper = g->M >= nr && 4.0 * (double)g->M * k_blocks < (double)g->K;
    if (!g->trans_b || (!g->trans_a && !cheaper)) return *g;
    gemm_args t = *g;
    t.trans_a = 0;                       /* op(B)ᵀ is B as stored */
    t.trans_b = !g->trans_a;
    t.trans_c = 1;
    t.M = g->N, t.N = g->M;
    t.A = g->B, t.lda = g->ldb;
    t.B = g->A, t.ldb = g->lda;
    return t;
}

/* C[i0:i1, j0:j1] of a product that fits in L2, on one thread: the k
 * blocks, kernel and partial tiles of gemm_block, so the same bits. */
static void gemm_block_direct(const gemm_args *g, const gemm_kernel *kn, int64_t i0, int64_t i1, int64_t j0,
                              int64_t j1)
{
    const int mr = kn->mr, nr = kn->nr;
    /* Rows of op(A) or op(B) a multiple of 1 KiB apart in memory all fall
     * in the same few L1 sets, where a panel's kc lines evict each other;
     * such an operand is packed after all. Otherwise only the partial
     * strip of A at the bottom edge is. */
    int pack_a = g->trans_a && g->lda % 256 == 0, pack_b = g->trans_b || g->ldb % 256 == 0;
    int64_t a_from = pack_a ? i0 : i0 + (i1 - i0) / mr * mr;   /* first packed row */
    pack_buffers *buf = pack_buffers_get(kn, i1 - a_from, g->K < kn->kc ? g->K : kn->kc, j1 - j0);
    int64_t c_rs = g->trans_c ? 1 : g->ldc, c_cs = g->trans_c ? g->ldc : 1;
    for (int64_t pc = 0; pc < g->K; pc += kn->kc) {
        int64_t kc = g->K - pc < kn->kc ? g->K - pc : kn->kc;
        int add = g->accumulate || pc > 0;
        if (pack_b) kn->pack_b(g, pc, kc, j0, j1 - j0, nr, buf->b);
        if (a_from < i1) kn->pack_a(g, a_from, i1 - a_from, pc, kc, mr, buf->a);
        for (int64_t jr = j0; jr < j1; jr += nr) {
            int64_t cols = j1 - jr < nr ? j1 - jr : nr;
            const float *b = buf->b + (jr - j0) * kc;
            int64_t b_ks = nr;
            if (!pack_b && cols == nr) {
                b = g->B + pc * g->ldb + jr;
                b_ks = g->ldb;
            } else if (!pack_b) {
                pack_b_panel(g, pc, kc, jr, cols, nr, buf->b);
                b = buf->b;
            }
            for (int64_t ir = i0; ir < i1; ir += mr) {
                int64_t rows = i1 - ir < mr ? i1 - ir : mr;
                /* rows below a_from are read in place; the rest were packed */
                const float *a = NULL;
                int64_t a_rs = 1, a_ks = mr;
                if (ir >= a_from) {
                    a = buf->a + (ir - a_from) * kc;
                } else if (g->trans_a) {
                    a = g->A + pc * g->lda + ir;
                    a_ks = g->lda;
                } else {
                    a = g->A + ir * g->lda + pc;
                    a_rs = g->lda;
                    a_ks = 1;
                }
                float *c = g->C + ir * c_rs + jr * c_cs;
                if (rows == mr && cols == nr && !g->trans_c) {
                    kn->kernel(kc, a, a_rs, a_ks, b, b_ks, c, g->ldc, add);
                    continue;
                }
                float tile[GEMM_MAX_TILE];
                kn->kernel(kc, a, a_rs, a_ks, b, b_ks, tile, nr, 0);
                tile_store(c, c_rs, c_cs, tile, nr, rows, cols, add);
            }
        }
    }
}

/* ---- small products ---------------------------------------------------------- */

/* Only for the tiniest products does packing cost more than it saves:
 * measured on Zen 4, the packed path is already 3× faster than this loop
 * at 16×16×16 and level with it at 8×8×8. Below that, loop directly. */
#define GEMM_SMALL_FLOPS (8 * 8 * 8)

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
    int direct;               /* gemm_block_direct rather than gemm_block */
    int64_t tm, tn;           /* thread grid */
    int64_t m_tiles, n_tiles; /* ceil(M / mr), ceil(N / nr) */
} gemm_job;

/* @book begin gemm-threads */
static void gemm_task(void *arg, int64_t t)
{
    const gemm_job *job = arg;
    int64_t ti = t / job->tn, tj = t % job->tn;
    int64_t mr = job->kn->mr, nr = job->kn->nr;
    int64_t i0 = job->m_tiles * ti / job->tm * mr, i1 = job->m_tiles * (ti + 1) / job->tm * mr;
    int64_t j0 = job->n_tiles * tj / job->tn * nr, j1 = job->n_tiles * (tj + 1) / job->tn * nr;
    if (i1 > job->g->M) i1 = job->g->M;
    if (j1 > job->g->N) j1 = job->g->N;
    if (i0 >= i1 || j0 >= j1) return;
    if (job->direct) gemm_block_direct(job->g, job->kn, i0, i1, j0, j1);
    else gemm_block(job->g, job->kn, i0, i1, j0, j1);
}
/* @book end gemm-threads */

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
    gemm_args g = {trans_a, trans_b, 0, M, N, K, A, lda, B, ldb, C, ldc, accumulate};
    double flops = (double)M * (double)N * (double)K;
    if (flops <= GEMM_SMALL_FLOPS) {
        gemm_small(&g);
        return;
    }
    gemm_job job = {&g, gemm_current(), gemm_direct_enabled && gemm_fits_direct(&g), 1, 1, 0, 0};
    if (job.direct) g = gemm_turn_around(&g, job.kn->kc, job.kn->nr);
    job.m_tiles = (g.M + job.kn->mr - 1) / job.kn->mr;
    job.n_tiles = (g.N + job.kn->nr - 1) / job.kn->nr;
    /* Waking a worker costs some microseconds: worth it only when each
     * thread gets at least 64³ multiply-adds (about 3 µs at full speed). */
    int64_t threads = sc_threads();
    int64_t worth = (int64_t)(flops / (64.0 * 64.0 * 64.0));
    if (threads > worth) threads = worth > 1 ? worth : 1;
    gemm_thread_grid(&job, threads);
    sc_parallel_for(job.tm * job.tn, gemm_task, &job);
}

/* ======================================================================== */
/* 5. Views                                                                  */
/* ======================================================================== */

/* Outputs of ops are fresh contiguous tensors in the activation arena. */
static sc_tensor *new_output(sc_ctx *ctx, int ndim, const int64_t *shape, const char *op)
{
    return sc_tensor_new(&ctx->act, ndim, shape, op);
}

/* Visit every element of a strided tensor of up to 4 dims in row-major
 * order: out[k] for k = 0.. gets (or adds) src at its strided position.
 * Copies between a strided layout and the contiguous one in both
 * directions, depending on `to_contiguous`. */
static void strided_copy(float *contig, float *strided, const int64_t *shape, const int64_t *stride,
                         int ndim, int to_contiguous, int accumulate)
{
    int64_t sh[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
    for (int i = 0; i < ndim; i++) {
        sh[4 - ndim + i] = shape[i];
        st[4 - ndim + i] = stride[i];
    }
    int64_t k = 0;
    for (int64_t a = 0; a < sh[0]; a++)
        for (int64_t b = 0; b < sh[1]; b++)
            for (int64_t c = 0; c < sh[2]; c++) {
                float *row = strided + a * st[0] + b * st[1] + c * st[2];
                for (int64_t d = 0; d < sh[3]; d++, k++) {
                    float *s = row + d * st[3];
                    if (to_contiguous)
                        contig[k] = accumulate ? contig[k] + *s : *s;
                    else
                        *s = accumulate ? *s + contig[k] : contig[k];
                }
            }
}

/* A view shares data but has its own (contiguous) gradient buffer, so
 * every view op sends its gradient back with a plain copy-add. */
static void reshape_backward(sc_ctx *ctx, sc_node *n)
{
    float *gx = sc__grad(ctx, n->in[0]);
    int64_t m = sc_numel(n->out);
    for (int64_t i = 0; i < m; i++) gx[i] += n->out->grad[i];
}

sc_tensor *sc_reshape(sc_ctx *ctx, sc_tensor *x, int ndim, const int64_t *shape)
{
    x = sc_contiguous(ctx, x);
    sc_tensor *y = sc_tensor_wrap(&ctx->act, x->data, ndim, shape, "reshape");
    SC_ASSERT(sc_numel(y) == sc_numel(x), "reshape of %lld elements to %lld", (long long)sc_numel(x),
              (long long)sc_numel(y));
    sc__node_record(ctx, "reshape", reshape_backward, y, &x, 1);
    return y;
}

/* The view's gradient lands in the input's contiguous gradient at the
 * positions the view covers: same shape, the input's contiguous strides,
 * offset by `start` along `axis`. */
static void slice_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *x = n->in[0], *y = n->out;
    float *gx = sc__grad(ctx, x);
    int64_t cstride[SC_MAX_DIMS], s = 1;
    for (int i = x->ndim - 1; i >= 0; i--) {
        cstride[i] = s;
        s *= x->shape[i];
    }
    int axis = (int)n->iparam[0];
    float *base = gx + n->iparam[1] * cstride[axis];
    strided_copy(y->grad, base, y->shape, cstride, y->ndim, 0, 1);
}

sc_tensor *sc_slice(sc_ctx *ctx, sc_tensor *x, int axis, int64_t start, int64_t len)
{
    SC_ASSERT(axis >= 0 && axis < x->ndim, "slice axis %d of a %d-dim tensor", axis, x->ndim);
    SC_ASSERT(start >= 0 && len >= 0 && start + len <= x->shape[axis], "slice [%lld, +%lld) of %lld",
              (long long)start, (long long)len, (long long)x->shape[axis]);
    sc_tensor *y = sc_arena_calloc(&ctx->act, 1, sizeof *y);
    SC_ASSERT(y != NULL, "arena '%s' full", ctx->act.name);
    *y = *x;
    y->grad = NULL;
    y->node = NULL;
    y->requires_grad = 0;
    y->shape[axis] = len;
    y->data = x->data + start * x->stride[axis];
    sc_tensor_set_name(y, "slice");
    sc_node *n = sc__node_record(ctx, "slice", slice_backward, y, &x, 1);
    if (n) {
        n->iparam[0] = axis;
        n->iparam[1] = start;
    }
    return y;
}

static void contiguous_backward(sc_ctx *ctx, sc_node *n)
{
    reshape_backward(ctx, n);
}

sc_tensor *sc_contiguous(sc_ctx *ctx, sc_tensor *x)
{
    if (sc_is_contiguous(x)) return x;
    sc_tensor *y = new_output(ctx, x->ndim, x->shape, "contiguous");
    strided_copy(y->data, x->data, x->shape, x->stride, x->ndim, 1, 0);
    sc__node_record(ctx, "contiguous", contiguous_backward, y, &x, 1);
    return y;
}

/* ======================================================================== */
/* 6. Linear algebra: matmul, linear                                         */
/* ======================================================================== */

/* Shapes of a batched matmul: a (..., Ma, Ka), b (..., Mb, Kb) or a shared
 * rank-2 b. With the transposes applied, C = op(a) op(b) is (..., M, N)
 * with inner dimension K. */
typedef struct {
    int64_t batch, M, N, K;
    int shared_b;   /* b is one matrix used by every batch item */
} matmul_dims;

static matmul_dims matmul_shape(const sc_tensor *a, const sc_tensor *b, int ta, int tb)
{
    SC_ASSERT(a->ndim >= 2 && b->ndim >= 2, "matmul needs matrices");
    matmul_dims d;
    int64_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
    int64_t br = b->shape[b->ndim - 2], bc = b->shape[b->ndim - 1];
    d.M = ta ? ac : ar;
    d.K = ta ? ar : ac;
    d.N = tb ? br : bc;
    int64_t kb = tb ? bc : br;
    SC_ASSERT(d.K == kb, "matmul inner dimensions %lld and %lld", (long long)d.K, (long long)kb);
    d.batch = 1;
    for (int i = 0; i < a->ndim - 2; i++) d.batch *= a->shape[i];
    d.shared_b = b->ndim == 2;
    if (!d.shared_b) {
        SC_ASSERT(b->ndim == a->ndim, "matmul batch ranks %d and %d", a->ndim, b->ndim);
        for (int i = 0; i < a->ndim - 2; i++)
            SC_ASSERT(a->shape[i] == b->shape[i], "matmul batch dims differ at %d", i);
    }
    return d;
}

/* Gradients of C = op(A) op(B), derived from dC (M×N):
 *   d op(A) = dC op(B)ᵀ      d op(B) = op(A)ᵀ dC
 * and transposed back when the operand was stored transposed. */
static void matmul_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *a = n->in[0], *b = n->in[1];
    int ta = (int)n->iparam[0], tb = (int)n->iparam[1];
    matmul_dims d = matmul_shape(a, b, ta, tb);
    int64_t lda = a->shape[a->ndim - 1], ldb = b->shape[b->ndim - 1];
    float *ga = sc__grad(ctx, a), *gb = sc__grad(ctx, b);
    for (int64_t i = 0; i < d.batch; i++) {
        const float *dc = n->out->grad + i * d.M * d.N;
        const float *A = a->data + i * d.M * d.K;
        const float *B = b->data + (d.shared_b ? 0 : i * d.K * d.N);
        if (ga) {
            float *dA = ga + i * d.M * d.K;
            if (!ta)
                sc_gemm(0, !tb, d.M, d.K, d.N, dc, d.N, B, ldb, dA, d.K, 1);
            else
                sc_gemm(tb, 1, d.K, d.M, d.N, B, ldb, dc, d.N, dA, d.M, 1);
        }
        if (gb) {
            float *dB = gb + (d.shared_b ? 0 : i * d.K * d.N);
            if (!tb)
                sc_gemm(!ta, 0, d.K, d.N, d.M, A, lda, dc, d.N, dB, d.N, 1);
            else
                sc_gemm(1, ta, d.N, d.K, d.M, dc, d.N, A, lda, dB, d.K, 1);
        }
    }
}

sc_tensor *sc_matmul(sc_ctx *ctx, sc_tensor *a, sc_tensor *b, int trans_a, int trans_b)
{
    a = sc_contiguous(ctx, a);
    b = sc_contiguous(ctx, b);
    matmul_dims d = matmul_shape(a, b, trans_a, trans_b);
    int64_t shape[SC_MAX_DIMS];
    for (int i = 0; i < a->ndim - 2; i++) shape[i] = a->shape[i];
    shape[a->ndim - 2] = d.M;
    shape[a->ndim - 1] = d.N;
    sc_tensor *c = new_output(ctx, a->ndim, shape, "matmul");
    int64_t lda = a->shape[a->ndim - 1], ldb = b->shape[b->ndim - 1];
    for (int64_t i = 0; i < d.batch; i++)
        sc_gemm(trans_a, trans_b, d.M, d.N, d.K, a->data + i * d.M * d.K, lda,
                b->data + (d.shared_b ? 0 : i * d.K * d.N), ldb, c->data + i * d.M * d.N, d.N, 0);
    sc_node *n = sc__node_record(ctx, "matmul", matmul_backward, c, (sc_tensor *[]){a, b}, 2);
    if (n) {
        n->iparam[0] = trans_a;
        n->iparam[1] = trans_b;
    }
    return c;
}

/* @book begin linear-backward */
/* y = x Wᵀ + b over R = numel(x)/C_in rows:
 *   dx (R, C_in)     += dy (R, C_out) · W (C_out, C_in)
 *   dW (C_out, C_in) += dyᵀ · x
 *   db (C_out)       += Σ_rows dy                                          */
static void linear_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    int64_t cout = w->shape[0], cin = w->shape[1], rows = sc_numel(x) / cin;
    const float *dy = n->out->grad;
    float *gx = sc__grad(ctx, x), *gw = sc__grad(ctx, w), *gb = sc__grad(ctx, b);
    if (gx) sc_gemm(0, 0, rows, cin, cout, dy, cout, w->data, cin, gx, cin, 1);
    if (gw) sc_gemm(1, 0, cout, cin, rows, dy, cout, x->data, cin, gw, cin, 1);
    if (gb)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cout; j++) gb[j] += dy[r * cout + j];
}
/* @book end linear-backward */

sc_tensor *sc_linear(sc_ctx *ctx, sc_tensor *x, sc_tensor *w, sc_tensor *b)
{
    x = sc_contiguous(ctx, x);
    SC_ASSERT(w->ndim == 2 && sc_is_contiguous(w), "linear weight must be a contiguous matrix");
    int64_t cout = w->shape[0], cin = w->shape[1];
    SC_ASSERT(x->shape[x->ndim - 1] == cin, "linear: input width %lld, weight expects %lld",
              (long long)x->shape[x->ndim - 1], (long long)cin);
    SC_ASSERT(!b || sc_numel(b) == cout, "linear: bias of %lld for %lld outputs",
              (long long)sc_numel(b), (long long)cout);
    int64_t shape[SC_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = cout;
    sc_tensor *y = new_output(ctx, x->ndim, shape, "linear");
    int64_t rows = sc_numel(x) / cin;
    sc_gemm(0, 1, rows, cout, cin, x->data, cin, w->data, cin, y->data, cout, 0);
    if (b)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cout; j++) y->data[r * cout + j] += b->data[j];
    sc__node_record(ctx, "linear", linear_backward, y, (sc_tensor *[]){x, w, b}, 3);
    return y;
}

/* ======================================================================== */
/* 7. Elementwise binary ops with broadcasting                               */
/* ======================================================================== */

/* b broadcasts over the leading dims of a: its shape must equal the last
 * b->ndim dims of a's shape. Element i of a pairs with element i % nb of b. */
static void check_broadcast(const sc_tensor *a, const sc_tensor *b, const char *op)
{
    SC_ASSERT(b->ndim <= a->ndim, "%s: right operand has more dims than the left", op);
    for (int i = 0; i < b->ndim; i++)
        SC_ASSERT(b->shape[b->ndim - 1 - i] == a->shape[a->ndim - 1 - i],
                  "%s: shapes do not broadcast (trailing dim %d: %lld vs %lld)", op, i,
                  (long long)a->shape[a->ndim - 1 - i], (long long)b->shape[b->ndim - 1 - i]);
}

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } binary_kind;
static const char *const binary_names[] = {"add", "sub", "mul", "div"};

static void binary_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *a = n->in[0], *b = n->in[1];
    binary_kind kind = (binary_kind)n->iparam[0];
    int64_t na = sc_numel(a), nb = sc_numel(b);
    const float *g = n->out->grad, *x = a->data, *y = b->data;
    float *ga = sc__grad(ctx, a), *gb = sc__grad(ctx, b);
    for (int64_t i = 0; i < na; i++) {
        int64_t j = i % nb;
        switch (kind) {
        case BIN_ADD:
            if (ga) ga[i] += g[i];
            if (gb) gb[j] += g[i];
            break;
        case BIN_SUB:
            if (ga) ga[i] += g[i];
            if (gb) gb[j] -= g[i];
            break;
        case BIN_MUL:
            if (ga) ga[i] += g[i] * y[j];
            if (gb) gb[j] += g[i] * x[i];
            break;
        case BIN_DIV:
            if (ga) ga[i] += g[i] / y[j];
            if (gb) gb[j] -= g[i] * x[i] / (y[j] * y[j]);
            break;
        }
    }
}

static sc_tensor *binary(sc_ctx *ctx, sc_tensor *a, sc_tensor *b, binary_kind kind)
{
    a = sc_contiguous(ctx, a);
    b = sc_contiguous(ctx, b);
    check_broadcast(a, b, binary_names[kind]);
    sc_tensor *y = new_output(ctx, a->ndim, a->shape, binary_names[kind]);
    int64_t na = sc_numel(a), nb = sc_numel(b);
    for (int64_t i0 = 0; i0 < na; i0 += nb) {
        const float *x = a->data + i0, *z = b->data;
        float *o = y->data + i0;
        switch (kind) {
        case BIN_ADD: for (int64_t j = 0; j < nb; j++) o[j] = x[j] + z[j]; break;
        case BIN_SUB: for (int64_t j = 0; j < nb; j++) o[j] = x[j] - z[j]; break;
        case BIN_MUL: for (int64_t j = 0; j < nb; j++) o[j] = x[j] * z[j]; break;
        case BIN_DIV: for (int64_t j = 0; j < nb; j++) o[j] = x[j] / z[j]; break;
        }
    }
    sc_node *n = sc__node_record(ctx, binary_names[kind], binary_backward, y, (sc_tensor *[]){a, b}, 2);
    if (n) n->iparam[0] = kind;
    return y;
}

sc_tensor *sc_add(sc_ctx *ctx, sc_tensor *a, sc_tensor *b) { return binary(ctx, a, b, BIN_ADD); }
sc_tensor *sc_sub(sc_ctx *ctx, sc_tensor *a, sc_tensor *b) { return binary(ctx, a, b, BIN_SUB); }
sc_tensor *sc_mul(sc_ctx *ctx, sc_tensor *a, sc_tensor *b) { return binary(ctx, a, b, BIN_MUL); }
sc_tensor *sc_div(sc_ctx *ctx, sc_tensor *a, sc_tensor *b) { return binary(ctx, a, b, BIN_DIV); }

/* y = s·x + t with constants s, t (scale and add_scalar share it). */
static void affine_backward(sc_ctx *ctx, sc_node *n)
{
    float *gx = sc__grad(ctx, n->in[0]);
    float s = n->fparam[0];
    int64_t m = sc_numel(n->out);
    for (int64_t i = 0; i < m; i++) gx[i] += s * n->out->grad[i];
}

static sc_tensor *affine(sc_ctx *ctx, sc_tensor *x, float s, float t, const char *op)
{
    x = sc_contiguous(ctx, x);
    sc_tensor *y = new_output(ctx, x->ndim, x->shape, op);
    int64_t m = sc_numel(x);
    for (int64_t i = 0; i < m; i++) y->data[i] = s * x->data[i] + t;
    sc_node *n = sc__node_record(ctx, op, affine_backward, y, &x, 1);
    if (n) n->fparam[0] = s;
    return y;
}

sc_tensor *sc_scale(sc_ctx *ctx, sc_tensor *x, float s) { return affine(ctx, x, s, 0.0f, "scale"); }
sc_tensor *sc_add_scalar(sc_ctx *ctx, sc_tensor *x, float t) { return affine(ctx, x, 1.0f, t, "add_scalar"); }

static void mul_scalar_t_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *x = n->in[0], *s = n->in[1];
    const float *g = n->out->grad;
    int64_t m = sc_numel(x);
    float *gx = sc__grad(ctx, x), *gs = sc__grad(ctx, s);
    if (gx)
        for (int64_t i = 0; i < m; i++) gx[i] += s->data[0] * g[i];
    if (gs) {
        double acc = 0;
        for (int64_t i = 0; i < m; i++) acc += (double)g[i] * x->data[i];
        gs[0] += (float)acc;
    }
}

sc_tensor *sc_mul_scalar_t(sc_ctx *ctx, sc_tensor *x, sc_tensor *s)
{
    x = sc_contiguous(ctx, x);
    SC_ASSERT(sc_numel(s) == 1, "mul_scalar_t: scalar has %lld elements", (long long)sc_numel(s));
    sc_tensor *y = new_output(ctx, x->ndim, x->shape, "mul_scalar_t");
    int64_t m = sc_numel(x);
    for (int64_t i = 0; i < m; i++) y->data[i] = s->data[0] * x->data[i];
    sc__node_record(ctx, "mul_scalar_t", mul_scalar_t_backward, y, (sc_tensor *[]){x, s}, 2);
    return y;
}

/* ======================================================================== */
/* 8. Unary ops and activations                                              */
/* ======================================================================== */

/* One table of activations: forward y = f(x) and derivative dy/dx given x
 * and y, in float as PyTorch computes them. */
typedef enum { U_RELU, U_GELU_ERF, U_GELU_TANH, U_QUICK_GELU, U_SIGMOID, U_TANH, U_EXP, U_LOG } unary_kind;
static const char *const unary_names[] = {"relu", "gelu_erf", "gelu_tanh", "quick_gelu",
                                          "sigmoid", "tanh", "exp", "log"};

#define SQRT1_2 0.70710678118654752f    /* 1/√2 */
#define SQRT2_PI 0.79788456080286536f   /* √(2/π) */
#define INV_SQRT_2PI 0.39894228040143268f /* 1/√(2π) */

static float sigmoidf(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* @book begin activations */
static void unary_forward(unary_kind kind, const float *x, float *y, int64_t n)
{
    switch (kind) {
    case U_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0f;
        break;
    case U_GELU_ERF:      /* x Φ(x), Φ the standard normal CDF */
        for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * SQRT1_2));
        break;
    case U_GELU_TANH:     /* the tanh approximation of x Φ(x) */
        for (int64_t i = 0; i < n; i++) {
            float u = SQRT2_PI * (x[i] + 0.044715f * x[i] * x[i] * x[i]);
            y[i] = 0.5f * x[i] * (1.0f + tanhf(u));
        }
        break;
    case U_QUICK_GELU:    /* CLIP's x σ(1.702 x) */
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(1.702f * x[i]);
        break;
    case U_SIGMOID:
        for (int64_t i = 0; i < n; i++) y[i] = sigmoidf(x[i]);
        break;
    case U_TANH:
        for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    case U_EXP:
        for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
        break;
    case U_LOG:
        for (int64_t i = 0; i < n; i++) y[i] = logf(x[i]);
        break;
    }
}

/* gx += g · f'(x); the derivative is written with whichever of x and y
 * makes it cheapest. */
static void unary_grad(unary_kind kind, const float *x, const float *y, const float *g, float *gx, int64_t n)
{
    switch (kind) {
    case U_RELU:
        for (int64_t i = 0; i < n; i++) gx[i] += x[i] > 0 ? g[i] : 0.0f;
        break;
    case U_GELU_ERF:      /* Φ(x) + x φ(x) */
        for (int64_t i = 0; i < n; i++) {
            float cdf = 0.5f * (1.0f + erff(x[i] * SQRT1_2));
            float pdf = INV_SQRT_2PI * expf(-0.5f * x[i] * x[i]);
            gx[i] += g[i] * (cdf + x[i] * pdf);
        }
        break;
    case U_GELU_TANH: {   /* ½(1+t) + ½x(1−t²)·√(2/π)(1 + 3·0.044715 x²) */
        for (int64_t i = 0; i < n; i++) {
            float t = tanhf(SQRT2_PI * (x[i] + 0.044715f * x[i] * x[i] * x[i]));
            float du = SQRT2_PI * (1.0f + 3.0f * 0.044715f * x[i] * x[i]);
            gx[i] += g[i] * (0.5f * (1.0f + t) + 0.5f * x[i] * (1.0f - t * t) * du);
        }
        break;
    }
    case U_QUICK_GELU:    /* σ(ax) + a x σ(ax)(1 − σ(ax)), a = 1.702 */
        for (int64_t i = 0; i < n; i++) {
            float s = sigmoidf(1.702f * x[i]);
            gx[i] += g[i] * (s + 1.702f * x[i] * s * (1.0f - s));
        }
        break;
    case U_SIGMOID:
        for (int64_t i = 0; i < n; i++) gx[i] += g[i] * y[i] * (1.0f - y[i]);
        break;
    case U_TANH:
        for (int64_t i = 0; i < n; i++) gx[i] += g[i] * (1.0f - y[i] * y[i]);
        break;
    case U_EXP:
        for (int64_t i = 0; i < n; i++) gx[i] += g[i] * y[i];
        break;
    case U_LOG:
        for (int64_t i = 0; i < n; i++) gx[i] += g[i] / x[i];
        break;
    }
}
/* @book end activations */

/* Large inputs are split in chunks over the thread pool. */
#define UNARY_CHUNK 16384
typedef struct {
    unary_kind kind;
    const float *x;
    float *y;
    int64_t n;
} unary_job;

static void unary_task(void *arg, int64_t c)
{
    unary_job *j = arg;
    int64_t lo = c * UNARY_CHUNK, hi = lo + UNARY_CHUNK < j->n ? lo + UNARY_CHUNK : j->n;
    unary_forward(j->kind, j->x + lo, j->y + lo, hi - lo);
}

static void unary_backward(sc_ctx *ctx, sc_node *n)
{
    int64_t m = sc_numel(n->out);
    unary_grad((unary_kind)n->iparam[0], n->in[0]->data, n->out->data, n->out->grad, sc__grad(ctx, n->in[0]), m);
}

static sc_tensor *unary(sc_ctx *ctx, sc_tensor *x, unary_kind kind)
{
    x = sc_contiguous(ctx, x);
    sc_tensor *y = new_output(ctx, x->ndim, x->shape, unary_names[kind]);
    unary_job job = {kind, x->data, y->data, sc_numel(x)};
    sc_parallel_for((job.n + UNARY_CHUNK - 1) / UNARY_CHUNK, unary_task, &job);
    sc_node *n = sc__node_record(ctx, unary_names[kind], unary_backward, y, &x, 1);
    if (n) n->iparam[0] = kind;
    return y;
}

sc_tensor *sc_relu(sc_ctx *ctx, sc_tensor *x) { return unary(ctx, x, U_RELU); }
sc_tensor *sc_gelu_erf(sc_ctx *ctx, sc_tensor *x) { return unary(ctx, x, U_GELU_ERF); }
sc_tensor *sc_gelu_tanh(sc_ctx *ctx, sc_tensor *x) { return unary(ctx, x, U_GELU_TANH); }
sc_tensor *sc_quick_gelu(sc_ctx *ctx, sc_tensor *x) { return unary(ctx, x, U_QUICK_GELU); }
sc_tensor *sc_sigmoid(sc_ctx *ctx, sc_tensor *x) { return unary(ctx, x, U_SIGMOID); }
sc_tensor *sc_tanh(sc_ctx *ctx, sc_tensor *x) { return unary(ctx, x, U_TANH); }
sc_tensor *sc_exp(sc_ctx *ctx, sc_tensor *x) { return unary(ctx, x, U_EXP); }
sc_tensor *sc_log(sc_ctx *ctx, sc_tensor *x) { return unary(ctx, x, U_LOG); }

/* ======================================================================== */
/* 9. Reductions                                                             */
/* ======================================================================== */

/* A reduction over `axis` sees x as (outer, len, inner) and produces
 * (outer, inner); the output shape is x's without that axis. */
typedef struct {
    int64_t outer, len, inner;
} axis_split;

static axis_split split_at(const sc_tensor *x, int axis)
{
    SC_ASSERT(axis >= 0 && axis < x->ndim, "axis %d of a %d-dim tensor", axis, x->ndim);
    axis_split s = {1, x->shape[axis], 1};
    for (int i = 0; i < axis; i++) s.outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) s.inner *= x->shape[i];
    return s;
}

static sc_tensor *reduced_output(sc_ctx *ctx, const sc_tensor *x, int axis, const char *op)
{
    int64_t shape[SC_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != axis) shape[k++] = x->shape[i];
    if (k == 0) shape[k++] = 1;  /* reducing a vector gives one element */
    return new_output(ctx, k, shape, op);
}

/* sum and mean: dx[o, k, i] += dy[o, i] · scale, scale = 1 or 1/len. */
static void sum_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *x = n->in[0];
    axis_split s = split_at(x, (int)n->iparam[0]);
    float scale = n->fparam[0];
    float *gx = sc__grad(ctx, x);
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t k = 0; k < s.len; k++)
            for (int64_t i = 0; i < s.inner; i++)
                gx[(o * s.len + k) * s.inner + i] += scale * n->out->grad[o * s.inner + i];
}

static sc_tensor *sum_scaled(sc_ctx *ctx, sc_tensor *x, int axis, int mean)
{
    x = sc_contiguous(ctx, x);
    axis_split s = split_at(x, axis);
    sc_tensor *y = reduced_output(ctx, x, axis, mean ? "mean" : "sum");
    float scale = mean && s.len ? 1.0f / (float)s.len : 1.0f;
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t i = 0; i < s.inner; i++) {
            double acc = 0;
            for (int64_t k = 0; k < s.len; k++) acc += x->data[(o * s.len + k) * s.inner + i];
            y->data[o * s.inner + i] = mean && s.len ? (float)(acc / (double)s.len) : (float)acc;
        }
    sc_node *n = sc__node_record(ctx, mean ? "mean" : "sum", sum_backward, y, &x, 1);
    if (n) {
        n->iparam[0] = axis;
        n->fparam[0] = scale;
    }
    return y;
}

sc_tensor *sc_sum(sc_ctx *ctx, sc_tensor *x, int axis) { return sum_scaled(ctx, x, axis, 0); }
sc_tensor *sc_mean(sc_ctx *ctx, sc_tensor *x, int axis) { return sum_scaled(ctx, x, axis, 1); }

/* The maximum passes its gradient to the (first) position that won. */
static void max_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *x = n->in[0];
    axis_split s = split_at(x, (int)n->iparam[0]);
    const int64_t *arg = n->saved;
    float *gx = sc__grad(ctx, x);
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t i = 0; i < s.inner; i++)
            gx[(o * s.len + arg[o * s.inner + i]) * s.inner + i] += n->out->grad[o * s.inner + i];
}

sc_tensor *sc_max(sc_ctx *ctx, sc_tensor *x, int axis, sc_tensor **argmax)
{
    x = sc_contiguous(ctx, x);
    axis_split s = split_at(x, axis);
    SC_ASSERT(s.len > 0, "max over an empty axis");
    sc_tensor *y = reduced_output(ctx, x, axis, "max");
    sc_node *n = sc__node_record(ctx, "max", max_backward, y, &x, 1);
    int64_t *arg = NULL;
    if (n || argmax) arg = sc__act_alloc(ctx, sizeof(int64_t) * (size_t)(s.outer * s.inner));
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t i = 0; i < s.inner; i++) {
            const float *p = x->data + o * s.len * s.inner + i;
            int64_t best = 0;
            for (int64_t k = 1; k < s.len; k++)
                if (p[k * s.inner] > p[best * s.inner]) best = k;
            y->data[o * s.inner + i] = p[best * s.inner];
            if (arg) arg[o * s.inner + i] = best;
        }
    if (n) {
        n->iparam[0] = axis;
        n->saved = arg;
    }
    if (argmax) {
        *argmax = new_output(ctx, y->ndim, y->shape, "argmax");
        for (int64_t j = 0; j < s.outer * s.inner; j++) (*argmax)->data[j] = (float)arg[j];
    }
    return y;
}

static void sum_all_backward(sc_ctx *ctx, sc_node *n)
{
    float *gx = sc__grad(ctx, n->in[0]);
    int64_t m = sc_numel(n->in[0]);
    for (int64_t i = 0; i < m; i++) gx[i] += n->out->grad[0];
}

sc_tensor *sc_sum_all(sc_ctx *ctx, sc_tensor *x)
{
    x = sc_contiguous(ctx, x);
    sc_tensor *y = new_output(ctx, 1, (int64_t[]){1}, "sum_all");
    double acc = 0;
    int64_t m = sc_numel(x);
    for (int64_t i = 0; i < m; i++) acc += x->data[i];
    y->data[0] = (float)acc;
    sc__node_record(ctx, "sum_all", sum_all_backward, y, &x, 1);
    return y;
}

/* ======================================================================== */
/* 10. Softmax, layernorm, L2 normalisation                                  */
/* ======================================================================== */

/* Rows of the last axis: x seen as (R, C). */
static int64_t last_dim(const sc_tensor *x)
{
    return x->ndim ? x->shape[x->ndim - 1] : 1;
}

/* @book begin softmax */
/* y = softmax(x) row by row. Subtracting the row maximum first keeps exp()
 * from overflowing and does not change the result. With log_out, writes
 * log softmax(x) = x − m − log Σ exp(x − m) instead. */
static void softmax_rows(const float *x, float *y, int64_t rows, int64_t C, int log_out)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float m = xr[0];
        for (int64_t j = 1; j < C; j++) m = xr[j] > m ? xr[j] : m;
        double sum = 0;
        for (int64_t j = 0; j < C; j++) sum += exp((double)xr[j] - m);
        if (log_out) {
            float lse = m + (float)log(sum);
            for (int64_t j = 0; j < C; j++) yr[j] = xr[j] - lse;
        } else {
            for (int64_t j = 0; j < C; j++) yr[j] = (float)(exp((double)xr[j] - m) / sum);
        }
    }
}
/* @book end softmax */

/* softmax:     dx_j = y_j (g_j − Σ_k g_k y_k)
 * log-softmax: dx_j = g_j − softmax_j Σ_k g_k                               */
static void softmax_backward(sc_ctx *ctx, sc_node *n)
{
    int log_out = (int)n->iparam[0];
    int64_t C = last_dim(n->out), rows = sc_numel(n->out) / (C ? C : 1);
    float *gx = sc__grad(ctx, n->in[0]);
    for (int64_t r = 0; r < rows; r++) {
        const float *y = n->out->data + r * C, *g = n->out->grad + r * C;
        float *d = gx + r * C;
        double acc = 0;
        if (log_out) {
            for (int64_t j = 0; j < C; j++) acc += g[j];
            for (int64_t j = 0; j < C; j++) d[j] += g[j] - expf(y[j]) * (float)acc;
        } else {
            for (int64_t j = 0; j < C; j++) acc += (double)g[j] * y[j];
            for (int64_t j = 0; j < C; j++) d[j] += y[j] * (g[j] - (float)acc);
        }
    }
}

static sc_tensor *softmax_op(sc_ctx *ctx, sc_tensor *x, int log_out)
{
    x = sc_contiguous(ctx, x);
    const char *op = log_out ? "log_softmax" : "softmax";
    sc_tensor *y = new_output(ctx, x->ndim, x->shape, op);
    int64_t C = last_dim(x);
    if (C) softmax_rows(x->data, y->data, sc_numel(x) / C, C, log_out);
    sc_node *n = sc__node_record(ctx, op, softmax_backward, y, &x, 1);
    if (n) n->iparam[0] = log_out;
    return y;
}

sc_tensor *sc_softmax(sc_ctx *ctx, sc_tensor *x) { return softmax_op(ctx, x, 0); }
sc_tensor *sc_log_softmax(sc_ctx *ctx, sc_tensor *x) { return softmax_op(ctx, x, 1); }

/* @book begin layernorm-forward */
/* y = (x − μ) / √(σ² + ε) · w + b over the last axis of length C, with the
 * biased variance as PyTorch uses. μ and 1/√(σ² + ε) are kept per row for
 * the backward pass when `mean` and `rstd` are not NULL. The row sums run
 * in double so that long rows (C = 1024) lose nothing to rounding. */
static void layernorm_rows(float *y, float *mean, float *rstd, const float *x, const float *w,
                           const float *b, int64_t rows, int64_t C, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        double s = 0, ss = 0;
        for (int64_t j = 0; j < C; j++) s += xr[j];
        double mu = s / (double)C;
        for (int64_t j = 0; j < C; j++) ss += (xr[j] - mu) * (xr[j] - mu);
        float rs = (float)(1.0 / sqrt(ss / (double)C + eps));
        float *yr = y + r * C;
        for (int64_t j = 0; j < C; j++) {
            float h = ((float)(xr[j] - mu)) * rs;
            yr[j] = h * (w ? w[j] : 1.0f) + (b ? b[j] : 0.0f);
        }
        if (mean) mean[r] = (float)mu;
        if (rstd) rstd[r] = rs;
    }
}
/* @book end layernorm-forward */

/* @book begin layernorm-backward */
/* With x̂ = (x − μ)·rstd and ĝ = dy ⊙ w, the gradient of a row is
 *   dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂))
 * and the affine parameters collect dw += dy ⊙ x̂, db += dy over rows. */
static void layernorm_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    int64_t C = last_dim(x), rows = sc_numel(x) / C;
    const float *mean = n->saved, *rstd = mean + rows;
    float *gx = sc__grad(ctx, x), *gw = sc__grad(ctx, w), *gb = sc__grad(ctx, b);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * C, *dy = n->out->grad + r * C;
        double mg = 0, mgx = 0;
        for (int64_t j = 0; j < C; j++) {
            float xh = (xr[j] - mean[r]) * rstd[r];
            float gh = dy[j] * (w ? w->data[j] : 1.0f);
            mg += gh;
            mgx += (double)gh * xh;
            if (gw) gw[j] += dy[j] * xh;
            if (gb) gb[j] += dy[j];
        }
        mg /= (double)C;
        mgx /= (double)C;
        if (!gx) continue;
        for (int64_t j = 0; j < C; j++) {
            float xh = (xr[j] - mean[r]) * rstd[r];
            float gh = dy[j] * (w ? w->data[j] : 1.0f);
            gx[r * C + j] += rstd[r] * (gh - (float)mg - xh * (float)mgx);
        }
    }
}
/* @book end layernorm-backward */

sc_tensor *sc_layernorm(sc_ctx *ctx, sc_tensor *x, sc_tensor *w, sc_tensor *b, float eps)
{
    x = sc_contiguous(ctx, x);
    int64_t C = last_dim(x), rows = C ? sc_numel(x) / C : 0;
    SC_ASSERT(!w || sc_numel(w) == C, "layernorm weight of %lld for width %lld", (long long)sc_numel(w),
              (long long)C);
    SC_ASSERT(!b || sc_numel(b) == C, "layernorm bias of %lld for width %lld", (long long)sc_numel(b),
              (long long)C);
    sc_tensor *y = new_output(ctx, x->ndim, x->shape, "layernorm");
    sc_node *n = sc__node_record(ctx, "layernorm", layernorm_backward, y, (sc_tensor *[]){x, w, b}, 3);
    float *stats = n ? sc__act_alloc(ctx, sizeof(float) * (size_t)(2 * rows)) : NULL;
    layernorm_rows(y->data, stats, stats ? stats + rows : NULL, x->data, w ? w->data : NULL,
                   b ? b->data : NULL, rows, C, eps);
    if (n) n->saved = stats;
    return y;
}

/* y = x / max(‖x‖, 1e-12) per row (torch.nn.functional.normalize).
 * dx = (g − y (y·g)) / ‖x‖, or g / 1e-12 where the clamp was active. */
#define L2_EPS 1e-12f

/* Σ a_j b_j in double. Eight partial sums, so that the loop runs in vector
 * lanes: the order of the additions is fixed (lane k takes j ≡ k mod 8),
 * not left to the compiler. */
OPT_VECTORIZE
static double dot_f64(const float *restrict a, const float *restrict b, int64_t n)
{
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) lane[k] += (double)a[j + k] * (double)b[j + k];
    for (; j < n; j++) lane[j & 7] += (double)a[j] * (double)b[j];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* y = x / d, divided (not multiplied by 1/d) as PyTorch's F.normalize. */
OPT_VECTORIZE
static void divide_row(float *restrict y, const float *restrict x, float d, int64_t n)
{
    for (int64_t j = 0; j < n; j++) y[j] = x[j] / d;
}

/* gx += (g − y·yg) / norm, the backward of one normalised row. */
OPT_VECTORIZE
static void scaled_residual_add(float *restrict gx, const float *restrict g, const float *restrict y, float yg,
                                float norm, int64_t n)
{
    for (int64_t j = 0; j < n; j++) gx[j] += (g[j] - y[j] * yg) / norm;
}

/* Rows are independent, so both passes go over blocks of rows on the
 * thread pool, about L2_BLOCK_WORK elements a block. */
#define L2_BLOCK_WORK 16384

typedef struct {
    const float *x;       /* (rows, C) forward: x; backward: y = x / ‖x‖ */
    const float *g;       /* (rows, C) backward: dL/dy */
    float *y, *gx;        /* (rows, C) forward: y; backward: dL/dx, added into */
    float *norm;          /* (rows) ‖x‖ of each row, or NULL (forward, no tape) */
    int64_t C, rows, block;
} l2_job;

static int64_t l2_blocks(l2_job *j)
{
    j->block = j->C > 0 && j->C < L2_BLOCK_WORK ? L2_BLOCK_WORK / j->C : 1;
    return (j->rows + j->block - 1) / j->block;
}

static void l2_forward_task(void *arg, int64_t b)
{
    const l2_job *j = arg;
    int64_t C = j->C, r1 = (b + 1) * j->block < j->rows ? (b + 1) * j->block : j->rows;
    for (int64_t r = b * j->block; r < r1; r++) {
        const float *xr = j->x + r * C;
        float nrm = (float)sqrt(dot_f64(xr, xr, C));
        divide_row(j->y + r * C, xr, nrm > L2_EPS ? nrm : L2_EPS, C);
        if (j->norm) j->norm[r] = nrm;
    }
}

static void l2_backward_task(void *arg, int64_t b)
{
    const l2_job *j = arg;
    int64_t C = j->C, r1 = (b + 1) * j->block < j->rows ? (b + 1) * j->block : j->rows;
    for (int64_t r = b * j->block; r < r1; r++) {
        const float *y = j->x + r * C, *g = j->g + r * C;
        float *gx = j->gx + r * C;
        if (j->norm[r] <= L2_EPS) {
            for (int64_t c = 0; c < C; c++) gx[c] += g[c] / L2_EPS;
            continue;
        }
        float yg = (float)dot_f64(y, g, C);
        scaled_residual_add(gx, g, y, yg, j->norm[r], C);
    }
}

static void l2_backward(sc_ctx *ctx, sc_node *n)
{
    int64_t C = last_dim(n->out), rows = C ? sc_numel(n->out) / C : 0;
    l2_job j = {n->out->data, n->out->grad, NULL, sc__grad(ctx, n->in[0]), n->saved, C, rows, 0};
    if (rows) sc_parallel_for(l2_blocks(&j), l2_backward_task, &j);
}

sc_tensor *sc_l2_normalize(sc_ctx *ctx, sc_tensor *x)
{
    x = sc_contiguous(ctx, x);
    int64_t C = last_dim(x), rows = C ? sc_numel(x) / C : 0;
    sc_tensor *y = new_output(ctx, x->ndim, x->shape, "l2_normalize");
    sc_node *n = sc__node_record(ctx, "l2_normalize", l2_backward, y, &x, 1);
    float *norms = n ? sc__act_alloc(ctx, sizeof(float) * (size_t)(rows ? rows : 1)) : NULL;
    l2_job j = {x->data, NULL, y->data, NULL, norms, C, rows, 0};
    if (rows) sc_parallel_for(l2_blocks(&j), l2_forward_task, &j);
    if (n) n->saved = norms;
    return y;
}

/* ======================================================================== */
/* 11. Indexing and layout                                                   */
/* ======================================================================== */

static void embedding_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *table = n->in[0];
    int64_t C = table->shape[1], count = n->out->shape[0];
    const int32_t *ids = n->saved;
    float *gt = sc__grad(ctx, table);
    for (int64_t i = 0; i < count; i++)
        for (int64_t j = 0; j < C; j++) gt[(int64_t)ids[i] * C + j] += n->out->grad[i * C + j];
}

sc_tensor *sc_embedding(sc_ctx *ctx, sc_tensor *table, const int32_t *ids, int64_t count)
{
    SC_ASSERT(table->ndim == 2 && sc_is_contiguous(table), "embedding table must be a contiguous matrix");
    int64_t V = table->shape[0], C = table->shape[1];
    sc_tensor *y = new_output(ctx, 2, (int64_t[]){count, C}, "embedding");
    for (int64_t i = 0; i < count; i++) {
        SC_ASSERT(ids[i] >= 0 && ids[i] < V, "token id %d outside the vocabulary of %lld", ids[i], (long long)V);
        memcpy(y->data + i * C, table->data + (int64_t)ids[i] * C, sizeof(float) * (size_t)C);
    }
    sc_node *n = sc__node_record(ctx, "embedding", embedding_backward, y, &table, 1);
    if (n) {
        int32_t *copy = sc__act_alloc(ctx, sizeof(int32_t) * (size_t)(count ? count : 1));
        memcpy(copy, ids, sizeof(int32_t) * (size_t)count);
        n->saved = copy;
    }
    return y;
}

/* Concatenation along `axis`: seen as (outer, len_k, inner) per input. */
static void concat_backward(sc_ctx *ctx, sc_node *n)
{
    int axis = (int)n->iparam[0];
    axis_split so = split_at(n->out, axis);
    int64_t offset = 0;
    for (int k = 0; k < n->n_in; k++) {
        sc_tensor *x = n->in[k];
        int64_t len = x->shape[axis];
        float *gx = sc__grad(ctx, x);
        if (gx)
            for (int64_t o = 0; o < so.outer; o++)
                for (int64_t j = 0; j < len * so.inner; j++)
                    gx[o * len * so.inner + j] += n->out->grad[(o * so.len + offset) * so.inner + j];
        offset += len;
    }
}

sc_tensor *sc_concat(sc_ctx *ctx, sc_tensor *const *xs, int count, int axis)
{
    SC_ASSERT(count >= 1, "concat of nothing");
    sc_tensor **in = sc__act_alloc(ctx, sizeof(sc_tensor *) * (size_t)count);
    int64_t shape[SC_MAX_DIMS];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[axis] = 0;
    for (int k = 0; k < count; k++) {
        in[k] = sc_contiguous(ctx, xs[k]);
        SC_ASSERT(in[k]->ndim == xs[0]->ndim, "concat: ranks differ");
        for (int i = 0; i < in[k]->ndim; i++)
            SC_ASSERT(i == axis || in[k]->shape[i] == xs[0]->shape[i], "concat: shapes differ off axis %d", axis);
        shape[axis] += in[k]->shape[axis];
    }
    sc_tensor *y = new_output(ctx, xs[0]->ndim, shape, "concat");
    axis_split so = split_at(y, axis);
    int64_t offset = 0;
    for (int k = 0; k < count; k++) {
        int64_t len = in[k]->shape[axis];
        for (int64_t o = 0; o < so.outer; o++)
            memcpy(y->data + (o * so.len + offset) * so.inner, in[k]->data + o * len * so.inner,
                   sizeof(float) * (size_t)(len * so.inner));
        offset += len;
    }
    sc_node *n = sc__node_record(ctx, "concat", concat_backward, y, in, count);
    if (n) n->iparam[0] = axis;
    return y;
}

/* Permutation: out.shape[i] = x.shape[perm[i]]. The forward copies through
 * a strided view of x; the backward writes the gradient through the same
 * view of x's (contiguous) gradient. */
static void permuted_strides(const sc_tensor *x, const int *perm, int64_t *stride_out)
{
    int64_t cs[SC_MAX_DIMS], s = 1;
    for (int i = x->ndim - 1; i >= 0; i--) {
        cs[i] = s;
        s *= x->shape[i];
    }
    for (int i = 0; i < x->ndim; i++) stride_out[i] = cs[perm[i]];
}

static void permute_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *x = n->in[0];
    int perm[SC_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = (int)n->iparam[i];
    int64_t st[SC_MAX_DIMS];
    permuted_strides(x, perm, st);
    strided_copy(n->out->grad, sc__grad(ctx, x), n->out->shape, st, x->ndim, 0, 1);
}

sc_tensor *sc_permute(sc_ctx *ctx, sc_tensor *x, const int *perm)
{
    x = sc_contiguous(ctx, x);
    int64_t shape[SC_MAX_DIMS], st[SC_MAX_DIMS];
    int seen = 0;
    for (int i = 0; i < x->ndim; i++) {
        SC_ASSERT(perm[i] >= 0 && perm[i] < x->ndim && !(seen & (1 << perm[i])), "bad permutation");
        seen |= 1 << perm[i];
        shape[i] = x->shape[perm[i]];
    }
    permuted_strides(x, perm, st);
    sc_tensor *y = new_output(ctx, x->ndim, shape, "permute");
    strided_copy(y->data, x->data, shape, st, x->ndim, 1, 0);
    sc_node *n = sc__node_record(ctx, "permute", permute_backward, y, &x, 1);
    if (n)
        for (int i = 0; i < x->ndim; i++) n->iparam[i] = perm[i];
    return y;
}

sc_tensor *sc_transpose(sc_ctx *ctx, sc_tensor *x, int axis0, int axis1)
{
    int perm[SC_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[axis0] = axis1;
    perm[axis1] = axis0;
    return sc_permute(ctx, x, perm);
}

static void masked_fill_backward(sc_ctx *ctx, sc_node *n)
{
    const sc_tensor *mask = n->saved;
    int64_t m = sc_numel(n->out), nm = sc_numel(mask);
    float *gx = sc__grad(ctx, n->in[0]);
    for (int64_t i = 0; i < m; i++)
        if (mask->data[i % nm] == 0.0f) gx[i] += n->out->grad[i];
}

sc_tensor *sc_masked_fill(sc_ctx *ctx, sc_tensor *x, const sc_tensor *mask, float value)
{
    x = sc_contiguous(ctx, x);
    SC_ASSERT(sc_is_contiguous(mask), "masked_fill: mask must be contiguous");
    check_broadcast(x, mask, "masked_fill");
    sc_tensor *y = new_output(ctx, x->ndim, x->shape, "masked_fill");
    int64_t m = sc_numel(x), nm = sc_numel(mask);
    for (int64_t i = 0; i < m; i++) y->data[i] = mask->data[i % nm] != 0.0f ? value : x->data[i];
    sc_node *n = sc__node_record(ctx, "masked_fill", masked_fill_backward, y, &x, 1);
    if (n) n->saved = (void *)mask;
    return y;
}

static void gather_rows_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *x = n->in[0];
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    const int64_t *index = n->saved;
    float *gx = sc__grad(ctx, x);
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < C; j++) gx[(b * T + index[b]) * C + j] += n->out->grad[b * C + j];
}

sc_tensor *sc_gather_rows(sc_ctx *ctx, sc_tensor *x, const int64_t *index)
{
    x = sc_contiguous(ctx, x);
    SC_ASSERT(x->ndim == 3, "gather_rows needs (B, T, C)");
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    sc_tensor *y = new_output(ctx, 2, (int64_t[]){B, C}, "gather_rows");
    for (int64_t b = 0; b < B; b++) {
        SC_ASSERT(index[b] >= 0 && index[b] < T, "row %lld outside [0, %lld)", (long long)index[b], (long long)T);
        memcpy(y->data + b * C, x->data + (b * T + index[b]) * C, sizeof(float) * (size_t)C);
    }
    sc_node *n = sc__node_record(ctx, "gather_rows", gather_rows_backward, y, &x, 1);
    if (n) {
        int64_t *copy = sc__act_alloc(ctx, sizeof(int64_t) * (size_t)(B ? B : 1));
        memcpy(copy, index, sizeof(int64_t) * (size_t)B);
        n->saved = copy;
    }
    return y;
}

/* @book begin patch-embed */
/* im2col for a convolution whose stride equals its kernel P: patch
 * (b, py, px) becomes row (b·Hp + py)·Wp + px of `cols`, and within the row
 * the pixels are ordered (ci, ky, kx) — the order of the flattened weight
 * (Cout, Cin, P, P) — so the convolution is one GEMM: cols · Wᵀ. */
static void im2col_patches(float *cols, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
                           int64_t P)
{
    int64_t Hp = H / P, Wp = W / P, row_len = Cin * P * P;
    for (int64_t b = 0; b < B; b++)
        for (int64_t py = 0; py < Hp; py++)
            for (int64_t px = 0; px < Wp; px++) {
                float *row = cols + ((b * Hp + py) * Wp + px) * row_len;
                for (int64_t ci = 0; ci < Cin; ci++)
                    for (int64_t ky = 0; ky < P; ky++)
                        memcpy(row + (ci * P + ky) * P,
                               x + ((b * Cin + ci) * H + py * P + ky) * W + px * P,
                               sizeof(float) * (size_t)P);
            }
}
/* @book end patch-embed */

static void patch_embed_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    int64_t P = n->iparam[0], B = x->shape[0], Cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Hp = H / P, Wp = W / P, rows = B * Hp * Wp, row_len = Cin * P * P, Cout = w->shape[0];
    const float *cols = n->saved, *dy = n->out->grad;
    float *gx = sc__grad(ctx, x), *gw = sc__grad(ctx, w), *gb = sc__grad(ctx, b);
    if (gw) sc_gemm(1, 0, Cout, row_len, rows, dy, Cout, cols, row_len, gw, row_len, 1);
    if (gb)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < Cout; j++) gb[j] += dy[r * Cout + j];
    if (!gx) return;
    float *dcols = sc__act_alloc(ctx, sizeof(float) * (size_t)(rows * row_len));
    sc_gemm(0, 0, rows, row_len, Cout, dy, Cout, w->data, row_len, dcols, row_len, 0);
    /* col2im: patches do not overlap, so each pixel gets one contribution. */
    for (int64_t bi = 0; bi < B; bi++)
        for (int64_t py = 0; py < Hp; py++)
            for (int64_t px = 0; px < Wp; px++) {
                const float *row = dcols + ((bi * Hp + py) * Wp + px) * row_len;
                for (int64_t ci = 0; ci < Cin; ci++)
                    for (int64_t ky = 0; ky < P; ky++)
                        for (int64_t kx = 0; kx < P; kx++)
                            gx[((bi * Cin + ci) * H + py * P + ky) * W + px * P + kx] += row[(ci * P + ky) * P + kx];
            }
}

sc_tensor *sc_patch_embed(sc_ctx *ctx, sc_tensor *x, sc_tensor *w, sc_tensor *b, int P)
{
    x = sc_contiguous(ctx, x);
    SC_ASSERT(x->ndim == 4 && w->ndim == 4 && sc_is_contiguous(w), "patch_embed needs x (B,C,H,W), w (O,C,P,P)");
    int64_t B = x->shape[0], Cin = x->shape[1], H = x->shape[2], W = x->shape[3], Cout = w->shape[0];
    SC_ASSERT(w->shape[1] == Cin && w->shape[2] == P && w->shape[3] == P, "patch_embed weight shape");
    SC_ASSERT(!b || sc_numel(b) == Cout, "patch_embed bias shape");
    int64_t Hp = H / P, Wp = W / P, rows = B * Hp * Wp, row_len = Cin * P * P;
    int64_t n_cols = rows * row_len;
    float *cols = sc__act_alloc(ctx, sizeof(float) * (size_t)(n_cols > 0 ? n_cols : 1));
    im2col_patches(cols, x->data, B, Cin, H, W, P);
    sc_tensor *y = new_output(ctx, 3, (int64_t[]){B, Hp * Wp, Cout}, "patch_embed");
    sc_gemm(0, 1, rows, Cout, row_len, cols, row_len, w->data, row_len, y->data, Cout, 0);
    if (b)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < Cout; j++) y->data[r * Cout + j] += b->data[j];
    sc_node *n = sc__node_record(ctx, "patch_embed", patch_embed_backward, y, (sc_tensor *[]){x, w, b}, 3);
    if (n) {
        n->iparam[0] = P;
        n->saved = cols;
    }
    return y;
}

/* ======================================================================== */
/* 12. Backward pass                                                         */
/* ======================================================================== */

/* @book begin backward */
void sc_backward(sc_ctx *ctx, sc_tensor *out)
{
    SC_ASSERT(sc_numel(out) == 1, "backward from a tensor of %lld elements", (long long)sc_numel(out));
    if (!out->requires_grad) return;   /* nothing on the tape leads here */
    sc__grad(ctx, out)[0] += 1.0f;
    /* Nodes were recorded in execution order, so walking the list from the
     * newest node back is a reverse topological order: by the time a node
     * is visited, every op that consumed its output has already sent its
     * gradient back. A node whose output received no gradient is not on a
     * path from `out` and is skipped. */
    for (sc_node *n = ctx->tape; n; n = n->prev)
        if (n->out->grad) n->backward(ctx, n);
}
/* @book end backward */

void sc_zero_grad(sc_tensor *const *params, int count)
{
    for (int i = 0; i < count; i++)
        if (params[i]->grad) memset(params[i]->grad, 0, sizeof(float) * (size_t)sc_numel(params[i]));
}

/* ======================================================================== */
/* 13. Optimizers and the learning-rate schedule                             */
/* ======================================================================== */

sc_opt_config sc_opt_defaults(sc_opt_kind kind, float lr)
{
    sc_opt_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.lr = lr;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.weight_decay = kind == SC_OPT_ADAMW ? 0.01f : 0.0f;  /* torch.optim defaults */
    return c;
}

sc_status sc_optim_init(sc_optim *o, sc_opt_config cfg, sc_tensor *const *params, int count, sc_err *err)
{
    memset(o, 0, sizeof *o);
    o->cfg = cfg;
    sc_arena_init(&o->state, "optimizer", (size_t)1 << 20, 0);
    o->params = sc_arena_alloc(&o->state, sizeof(sc_tensor *) * (size_t)(count ? count : 1));
    o->m = sc_arena_calloc(&o->state, (size_t)(count ? count : 1), sizeof(float *));
    o->v = sc_arena_calloc(&o->state, (size_t)(count ? count : 1), sizeof(float *));
    if (!o->params || !o->m || !o->v) return sc_fail(err, SC_ENOMEM, "optimizer: out of memory");
    for (int i = 0; i < count; i++) {
        if (!params[i]->requires_grad || !params[i]->grad || !sc_is_contiguous(params[i]))
            return sc_fail(err, SC_EARG, "optimizer: '%s' is not a contiguous parameter with a gradient",
                           params[i]->name);
        o->params[i] = params[i];
        size_t n = (size_t)sc_numel(params[i]);
        o->m[i] = sc_arena_calloc(&o->state, n, sizeof(float));
        o->v[i] = cfg.kind == SC_OPT_SGD ? NULL : sc_arena_calloc(&o->state, n, sizeof(float));
        if (!o->m[i] || (cfg.kind != SC_OPT_SGD && !o->v[i]))
            return sc_fail(err, SC_ENOMEM, "optimizer: out of memory for the state of '%s'", params[i]->name);
    }
    o->n_params = count;
    return SC_OK;
}

/* @book begin sgd-step */
/* torch.optim.SGD: g ← ∇ + λp; with momentum μ the buffer starts as g and
 * then follows b ← μb + (1 − dampening)g; Nesterov uses g + μb, plain
 * momentum uses b; p ← p − lr·(that). */
static void sgd_step(const sc_opt_config *c, float *p, const float *grad, float *buf, int64_t n, int first)
{
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] + c->weight_decay * p[i];
        if (c->momentum != 0.0f) {
            buf[i] = first ? g : c->momentum * buf[i] + (1.0f - c->dampening) * g;
            g = c->nesterov ? g + c->momentum * buf[i] : buf[i];
        }
        p[i] -= c->lr * g;
    }
}
/* @book end sgd-step */

/* @book begin adam-step */
/* torch.optim.Adam / AdamW at step t (1-based):
 *   AdamW first decays p ← p(1 − lr·λ); Adam instead adds λp to the gradient
 *   m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²
 *   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
 * which is PyTorch's arrangement of the bias corrections (ε is added after
 * the second-moment correction). The loop body is branch-free so that the
 * compiler turns it into vector code (see OPT_VECTORIZE): this update runs
 * over every parameter at every step and dominated adapter training. */
OPT_VECTORIZE
static void adam_step(const sc_opt_config *c, float *restrict p, const float *restrict grad, float *restrict m,
                      float *restrict v, int64_t n, int64_t t)
{
    float bc1 = 1.0f - powf(c->beta1, (float)t), bc2 = 1.0f - powf(c->beta2, (float)t);
    float step_size = c->lr / bc1, sqrt_bc2 = sqrtf(bc2);
    float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    /* AdamW decays the weights; Adam adds λp to the gradient instead. */
    float decay = c->kind == SC_OPT_ADAMW ? 1.0f - c->lr * c->weight_decay : 1.0f;
    float l2 = c->kind == SC_OPT_ADAMW ? 0.0f : c->weight_decay;
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] + l2 * p[i];
        float q = p[i] * decay;
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        p[i] = q - step_size * m[i] / (sqrtf(v[i]) / sqrt_bc2 + eps);
    }
}
/* @book end adam-step */

/* The update is elementwise, so every parameter is cut into pieces and
 * the pieces of all parameters form one job for the thread pool; which
 * thread updates a piece changes no result. (One job rather than one per
 * parameter: each job ends with a thread waiting for the other's last
 * piece.) A piece (64 KiB of each array) is still in cache when its
 * gradient is zeroed right after use, which costs far less than a separate
 * pass. */
#define OPT_PIECE 16384

typedef struct {
    sc_optim *o;
    const int64_t *first_piece; /* (n_params + 1) parameter i has pieces [first_piece[i], first_piece[i + 1]) */
    int zero_grad;              /* leave the gradients at zero after using them */
} optim_job;

static void optim_piece(void *arg, int64_t piece)
{
    const optim_job *j = arg;
    sc_optim *o = j->o;
    int lo_param = 0, hi_param = o->n_params;   /* the parameter holding the piece, by bisection */
    while (hi_param - lo_param > 1) {
        int mid = (lo_param + hi_param) / 2;
        if (j->first_piece[mid] <= piece) lo_param = mid;
        else hi_param = mid;
    }
    int i = lo_param;
    sc_tensor *p = o->params[i];
    int64_t lo = (piece - j->first_piece[i]) * OPT_PIECE, left = sc_numel(p) - lo;
    int64_t n = left < OPT_PIECE ? left : OPT_PIECE;
    if (o->cfg.kind == SC_OPT_SGD)
        sgd_step(&o->cfg, p->data + lo, p->grad + lo, o->m[i] + lo, n, o->step == 1);
    else
        adam_step(&o->cfg, p->data + lo, p->grad + lo, o->m[i] + lo, o->v[i] + lo, n, o->step);
    if (j->zero_grad) memset(p->grad + lo, 0, sizeof(float) * (size_t)n);
}

static void optim_update(sc_optim *o, int zero_grad)
{
    o->step++;
    int64_t *first_piece = malloc(sizeof(int64_t) * (size_t)(o->n_params + 1));
    SC_ASSERT(first_piece != NULL, "no memory for the pieces of %d parameters", o->n_params);
    first_piece[0] = 0;
    for (int i = 0; i < o->n_params; i++)
        first_piece[i + 1] = first_piece[i] + (sc_numel(o->params[i]) + OPT_PIECE - 1) / OPT_PIECE;
    optim_job j = {o, first_piece, zero_grad};
    sc_parallel_for(first_piece[o->n_params], optim_piece, &j);
    free(first_piece);
}

void sc_optim_step(sc_optim *o)
{
    optim_update(o, 0);
}

void sc_optim_step_zero_grad(sc_optim *o)
{
    optim_update(o, 1);
}

void sc_optim_zero_grad(sc_optim *o)
{
    sc_zero_grad(o->params, o->n_params);
}

void sc_optim_free(sc_optim *o)
{
    sc_arena_free(&o->state);
    memset(o, 0, sizeof *o);
}

/* @book begin lr-cosine */
float sc_lr_cosine(float base_lr, int64_t step, int64_t total, int64_t warmup_steps, float warmup_lr)
{
    if (step < warmup_steps) return warmup_lr;
    /* Dassl's scheduler hands over to CosineAnnealingLR(T_max = total) after
     * the warm-up, counting its own steps from there. */
    double t = (double)(step - warmup_steps) / (double)(total > 0 ? total : 1);
    return (float)(0.5 * base_lr * (1.0 + cos(3.14159265358979323846 * t)));
}
/* @book end lr-cosine */

/* @book begin lr-warmup-cosine */
/* The schedule of CLIP pretraining (open_clip's cosine_lr): a linear ramp
 * to base_lr over the first warmup_steps steps (step s gets base_lr ·
 * (s + 1) / warmup_steps), then a half cosine from base_lr down to 0 over
 * the remaining steps. */
float sc_lr_warmup_cosine(float base_lr, int64_t step, int64_t total, int64_t warmup_steps)
{
    if (step < warmup_steps) return base_lr * (float)(step + 1) / (float)warmup_steps;
    int64_t rest = total - warmup_steps;
    double t = rest > 0 ? (double)(step - warmup_steps) / (double)rest : 1.0;
    return (float)(0.5 * base_lr * (1.0 + cos(3.14159265358979323846 * t)));
}
/* @book end lr-warmup-cosine */
