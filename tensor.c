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
#include <stdlib.h>
#include <string.h>

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

static int n_threads_override = 0;

int sc_threads(void)
{
    return n_threads_override > 0 ? n_threads_override : 1;
}

void sc_set_threads(int n)
{
    n_threads_override = n;
}

void sc_parallel_for(int64_t n, sc_task_fn fn, void *arg)
{
    for (int64_t i = 0; i < n; i++) fn(arg, i);
}

/* ======================================================================== */
/* 4. GEMM                                                                   */
/* ======================================================================== */

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

int sc_gemm_simd(void)
{
    return 0;
}

void sc_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
             const float *A, int64_t lda, const float *B, int64_t ldb,
             float *C, int64_t ldc, int accumulate)
{
    sc_gemm_ref(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
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
