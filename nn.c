/* nn.c — layers and models.
 *
 * Contents
 *   1. Conventions; row kernels (LayerNorm, activations, softmax)
 *   2. Attention and the transformer blocks (pre-LN CLIP, post-LN BERT)
 *   3. CLIP vision transformer (ViT)
 *   4. CLIP text transformer
 *   5. Swin transformer
 *   6. BERT
 *   7. Models: CLIP, MedCLIP, loading from files
 *   8. Adapters (Eq. 1)
 *   9. CoOp prompt learner
 *
 * Dimension letters (as in scale.h): B batch, T text tokens, N image tokens,
 * C channels, H heads, D head dim, V vocab, P patch, M window, L layers,
 * R adapter bottleneck.
 */
#define _POSIX_C_SOURCE 200809L
#include "scale.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ======================================================================== */
/* 1. Conventions; row kernels (LayerNorm, activations, softmax)            */
/* ======================================================================== */

/* The inference forwards of sections 2–6 work on plain row-major float
 * arrays carved from the context's activation arena: a tower's activations
 * are a few (rows, C) matrices overwritten layer after layer, so memory
 * stays at a handful of activations whatever the depth. Weights are
 * `const float *` into the model's storage (often the read-only mapping of
 * the weight file itself).
 *
 * Rows are independent in LayerNorm, bias and activation, so those loops
 * are split over the thread pool; GEMM threads itself; attention is split
 * over (sequence, head) pairs. */

/* Split R rows over the thread pool, about `ROW_WORK` elements per task. */
#define ROW_WORK 32768

typedef void (*rows_fn)(void *arg, int64_t r0, int64_t r1);

typedef struct {
    rows_fn fn;
    void *arg;
    int64_t rows, chunk;
} rows_job;

static void rows_task(void *arg, int64_t i)
{
    rows_job *j = arg;
    int64_t r0 = i * j->chunk, r1 = r0 + j->chunk < j->rows ? r0 + j->chunk : j->rows;
    j->fn(j->arg, r0, r1);
}

static void parallel_rows(int64_t rows, int64_t width, rows_fn fn, void *arg)
{
    /* as many tasks as ROW_WORK asks for, the rows dealt out evenly */
    int64_t most = width > 0 && width < ROW_WORK ? ROW_WORK / width : 1;
    int64_t tasks = (rows + most - 1) / most, chunk = tasks > 0 ? (rows + tasks - 1) / tasks : 1;
    rows_job j = {fn, arg, rows, chunk};
    sc_parallel_for((rows + chunk - 1) / chunk, rows_task, &j);
}

/* ---- LayerNorm, activations and softmax over rows ----
 *
 * GELU, QuickGELU and softmax spend their time in exp() and erf(); libm
 * computes those one float at a time. On x86-64 the same steps are also
 * written for vectors of 8 floats (the compilers' vector extension,
 * compiled for AVX2/FMA) and chosen at run time whenever the GEMM uses its
 * AVX2 kernel; the plain versions below serve every other machine and
 * SCALE_NO_SIMD. The vector approximations are classic ones: Cephes' expf
 * (range reduction by ln 2, degree-5 polynomial, about 1 ulp) and
 * Abramowitz & Stegun 7.1.26 for erf (|error| <= 1.5e-7). */
#define NO_ACT (-1)

static float activate(int act, float x)
{
    if (act == SC_ACT_QUICK_GELU) return x / (1.0f + expf(-1.702f * x));   /* x·σ(1.702x) */
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));             /* x·Φ(x) */
}

/* y (R, C) += b (when not NULL), then the activation (when not NO_ACT). */
static void bias_act_scalar(float *y, const float *b, int64_t R, int64_t C, int act)
{
    for (int64_t r = 0; r < R; r++, y += C)
        for (int64_t c = 0; c < C; c++) {
            float v = y[c] + (b ? b[c] : 0.0f);
            y[c] = act == NO_ACT ? v : activate(act, v);
        }
}

/* One row of attention scores in place: s·scale + biases, then the softmax
 * over the first n entries (the rest set to 0). */
static void softmax_row_scalar(float *row, int64_t T, int64_t n, float scale, const float *b1, const float *b2,
                               const float *b3)
{
    for (int64_t s = 0; s < n; s++) {
        float x = row[s] * scale;
        if (b1) x += b1[s];
        if (b2) x += b2[s];
        if (b3) x += b3[s];
        row[s] = x;
    }
    float m = row[0];
    for (int64_t s = 1; s < n; s++) m = row[s] > m ? row[s] : m;
    double total = 0;
    for (int64_t s = 0; s < n; s++) {
        row[s] = expf(row[s] - m);
        total += (double)row[s];
    }
    float inv = (float)(1.0 / total);
    for (int64_t s = 0; s < n; s++) row[s] *= inv;
    for (int64_t s = n; s < T; s++) row[s] = 0.0f;
}

/* LayerNorm of each row of x (R, C): y = (x − μ)·rstd·w + b with the
 * biased variance (two passes, sums in double). y may be x. */
static void layernorm_rows_scalar(float *y, const float *x, const float *w, const float *b, int64_t R, int64_t C,
                                  float eps)
{
    for (int64_t r = 0; r < R; r++, x += C, y += C) {
        double s = 0, ss = 0;
        for (int64_t c = 0; c < C; c++) s += (double)x[c];
        float mu = (float)(s / (double)C);
        for (int64_t c = 0; c < C; c++) ss += (double)(x[c] - mu) * (double)(x[c] - mu);
        float rstd = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        for (int64_t c = 0; c < C; c++) y[c] = (x[c] - mu) * rstd * w[c] + b[c];
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NN_AVX2 1
/* Every function that touches a vector is compiled for AVX2/FMA, so 32-byte
 * vectors only ever pass between AVX functions. */
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

AVX2_INLINE v8f v8_load(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

AVX2_INLINE void v8_store(float *p, v8f v)
{
    memcpy(p, &v, sizeof v);
}

AVX2_INLINE v8f v8_splat(float x)
{
    v8f v = {x, x, x, x, x, x, x, x};
    return v;
}

/* Lanes of a where mask is set (all ones), of b elsewhere. */
AVX2_INLINE v8f v8_select(v8i mask, v8f a, v8f b)
{
    return (v8f)((mask & (v8i)a) | (~mask & (v8i)b));
}

/* @book begin vector-exp */
/* e^x: x = n·ln 2 + r with |r| <= ln 2 / 2, e^r by Cephes' polynomial,
 * 2^n built in the exponent bits. Below −87.3 the result is 0 (PyTorch's
 * exp underflows there too), above 88.37 it stays at e^88.37. */
AVX2_INLINE v8f v8_exp(v8f x)
{
    v8i underflow = x < -87.3365f;
    x = v8_select(x > 88.3762f, v8_splat(88.3762f), x);
    x = v8_select(underflow, v8_splat(-87.3365f), x);
    v8f n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round to nearest */
    v8f r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    v8f p = v8_splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    v8f e = (p * r * r + r) + 1.0f;
    v8i two_n = (__builtin_convertvector(n, v8i) + 127) << 23;
    return v8_select(underflow, v8_splat(0.0f), e * (v8f)two_n);
}
/* @book end vector-exp */

/* erf(z) = sign(z)·(1 − (a1 t + … + a5 t⁵)·e^(−z²)), t = 1/(1 + p|z|). */
AVX2_INLINE v8f v8_erf(v8f z)
{
    v8i sign = (v8i)z & (int32_t)0x80000000;
    v8f a = (v8f)((v8i)z & 0x7fffffff);
    v8f t = 1.0f / (1.0f + 0.3275911f * a);
    v8f poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
    v8f e = 1.0f - poly * v8_exp(-(a * a));
    return (v8f)((v8i)e | sign);
}

/* One of the activations on 8 lanes. */
AVX2_INLINE v8f v8_activate(int act, v8f x)
{
    if (act == SC_ACT_QUICK_GELU) return x / (1.0f + v8_exp(-1.702f * x));   /* x·σ(1.702x) */
    return 0.5f * x * (1.0f + v8_erf(x * 0.70710678118654752f));             /* x·Φ(x) */
}

/* y (R, C) += b (when not NULL), then the activation (when not NO_ACT). A
 * row's tail shorter than 8 goes through a padded copy, so every element
 * sees the same arithmetic. */
AVX2_INLINE v8f bias_act8(const float *y, const float *b, int act)
{
    v8f v = v8_load(y);
    if (b) v += v8_load(b);
    return act == NO_ACT ? v : v8_activate(act, v);
}

TARGET_AVX2 static void bias_act_avx2(float *y, const float *b, int64_t R, int64_t C, int act)
{
    int64_t full = C / 8 * 8, rest = C - full;
    for (int64_t r = 0; r < R; r++, y += C) {
        for (int64_t c = 0; c < full; c += 8) v8_store(y + c, bias_act8(y + c, b ? b + c : NULL, act));
        if (rest) {
            float tail[8] = {0}, bias[8] = {0};
            memcpy(tail, y + full, sizeof(float) * (size_t)rest);
            if (b) memcpy(bias, b + full, sizeof(float) * (size_t)rest);
            v8_store(tail, bias_act8(tail, bias, act));
            memcpy(y + full, tail, sizeof(float) * (size_t)rest);
        }
    }
}

/* One row of attention scores in place: s·scale + biases, then the softmax
 * over the first n entries (the rest set to 0). */
TARGET_AVX2 static void softmax_row_avx2(float *row, int64_t T, int64_t n, float scale, const float *b1,
                                         const float *b2, const float *b3)
{
    int64_t full = n / 8 * 8, rest = n - full;
    v8f m8 = v8_splat(-INFINITY);
    for (int64_t s = 0; s < full; s += 8) {
        v8f x = v8_load(row + s) * scale;
        if (b1) x += v8_load(b1 + s);
        if (b2) x += v8_load(b2 + s);
        if (b3) x += v8_load(b3 + s);
        m8 = v8_select(x > m8, x, m8);
        v8_store(row + s, x);
    }
    float tail[8];   /* the last n − full scores, padded with −∞ */
    for (int64_t i = 0; i < 8; i++) {
        int64_t s = full + i;
        float x = -INFINITY;
        if (i < rest) {
            x = row[s] * scale;
            if (b1) x += b1[s];
            if (b2) x += b2[s];
            if (b3) x += b3[s];
        }
        tail[i] = x;
    }
    m8 = v8_select(v8_load(tail) > m8, v8_load(tail), m8);
    float m = m8[0];
    for (int i = 1; i < 8; i++) m = m8[i] > m ? m8[i] : m;
    v8f sum = v8_splat(0.0f);
    for (int64_t s = 0; s < full; s += 8) {
        v8f e = v8_exp(v8_load(row + s) - m);
        sum += e;
        v8_store(row + s, e);
    }
    v8f e = v8_exp(v8_load(tail) - m);
    sum += e;
    v8_store(tail, e);
    double total = 0;
    for (int i = 0; i < 8; i++) total += (double)sum[i];
    v8f inv = v8_splat((float)(1.0 / total));
    for (int64_t s = 0; s < full; s += 8) v8_store(row + s, v8_load(row + s) * inv);
    for (int64_t s = full; s < n; s++) row[s] = tail[s - full] * inv[0];
    for (int64_t s = n; s < T; s++) row[s] = 0.0f;
}

/* LayerNorm of each row of x (R, C): y = (x − μ)·rstd·w + b with the
 * biased variance (two passes, sums in 8 float lanes as PyTorch's
 * vectorised kernel keeps them, the lanes added in double). y may be x. */
TARGET_AVX2 static void layernorm_rows_avx2(float *y, const float *x, const float *w, const float *b, int64_t R,
                                            int64_t C, float eps)
{
    int64_t full = C / 8 * 8;
    for (int64_t r = 0; r < R; r++, x += C, y += C) {
        v8f acc = v8_splat(0.0f);
        for (int64_t c = 0; c < full; c += 8) acc += v8_load(x + c);
        double s = 0;
        for (int i = 0; i < 8; i++) s += (double)acc[i];
        for (int64_t c = full; c < C; c++) s += (double)x[c];
        float mu = (float)(s / (double)C);
        acc = v8_splat(0.0f);
        for (int64_t c = 0; c < full; c += 8) {
            v8f d = v8_load(x + c) - mu;
            acc += d * d;
        }
        double ss = 0;
        for (int i = 0; i < 8; i++) ss += (double)acc[i];
        for (int64_t c = full; c < C; c++) ss += (double)(x[c] - mu) * (double)(x[c] - mu);
        float rstd = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        for (int64_t c = 0; c < full; c += 8)
            v8_store(y + c, (v8_load(x + c) - mu) * rstd * v8_load(w + c) + v8_load(b + c));
        for (int64_t c = full; c < C; c++) y[c] = (x[c] - mu) * rstd * w[c] + b[c];
    }
}

#endif

/* The vector version when the GEMM runs its AVX2 kernel, else the plain one. */
#ifdef NN_AVX2
#define SIMD_CHOICE(name, params, args) \
    static void name params              \
    {                                    \
        if (sc_gemm_simd())              \
            name##_avx2 args;            \
        else                             \
            name##_scalar args;          \
    }
#define SIMD_CHOICE_VALUE(type, name, params, args) \
    static type name params                          \
    {                                                \
        return sc_gemm_simd() ? name##_avx2 args : name##_scalar args; \
    }
#else
#define SIMD_CHOICE(name, params, args) \
    static void name params { name##_scalar args; }
#define SIMD_CHOICE_VALUE(type, name, params, args) \
    static type name params { return name##_scalar args; }
#endif

SIMD_CHOICE(layernorm_rows, (float *y, const float *x, const float *w, const float *b, int64_t R, int64_t C, float eps),
            (y, x, w, b, R, C, eps))
SIMD_CHOICE(bias_act, (float *y, const float *b, int64_t R, int64_t C, int act), (y, b, R, C, act))
SIMD_CHOICE(softmax_row,
            (float *row, int64_t T, int64_t n, float scale, const float *b1, const float *b2, const float *b3),
            (row, T, n, scale, b1, b2, b3))

typedef struct {
    float *y;
    const float *b;
    int64_t C;
    int act;
} bias_act_job;

static void bias_act_task(void *arg, int64_t r0, int64_t r1)
{
    const bias_act_job *j = arg;
    bias_act(j->y + r0 * j->C, j->b, r1 - r0, j->C, j->act);
}

typedef struct {
    float *y;
    const float *x, *w, *b;   /* (R, C), (C), (C) */
    int64_t C;
    float eps;
} layernorm_job;

static void layernorm_task(void *arg, int64_t r0, int64_t r1)
{
    const layernorm_job *j = arg;
    layernorm_rows(j->y + r0 * j->C, j->x + r0 * j->C, j->w, j->b, r1 - r0, j->C, j->eps);
}

/* LayerNorm of every row of x (R, C) into y (which may be x). */
static void layernorm(float *y, const float *x, const float *w, const float *b, int64_t R, int64_t C, float eps)
{
    layernorm_job j = {y, x, w, b, C, eps};
    parallel_rows(R, C, layernorm_task, &j);
}

/* @book begin nn-linear */
/* y (R, Cout) = x (R, Cin) · Wᵀ + b with PyTorch's weight layout W
 * (Cout, Cin), then the activation; with `accumulate` the product is added
 * to y instead (a residual connection without a separate pass). */
static void linear(float *y, const float *x, const float *W, const float *b, int64_t R, int64_t Cin, int64_t Cout,
                   int accumulate, int act)
{
    sc_gemm(0, 1, R, Cout, Cin, x, Cin, W, Cin, y, Cout, accumulate);
    if (!b && act == NO_ACT) return;
    bias_act_job j = {y, b, Cout, act};
    parallel_rows(R, Cout, bias_act_task, &j);
}
/* @book end nn-linear */

/* A named intermediate for sc_taps: a view of `data` with the given shape. */
static void tap(const sc_taps *taps, const char *name, float *data, int ndim, const int64_t *shape)
{
    if (!taps || !taps->fn) return;
    sc_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.ndim = ndim;
    int64_t stride = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t.shape[i] = shape[i];
        t.stride[i] = stride;
        stride *= shape[i];
    }
    sc_tensor_set_name(&t, name);
    taps->fn(taps->user, &t);
}

/* Scratch floats from the activation arena (aborts when it cannot grow,
 * like every op). */
static float *scratch(sc_ctx *ctx, int64_t n)
{
    return sc__act_alloc(ctx, sizeof(float) * (size_t)(n > 0 ? n : 1));
}

/* ======================================================================== */
/* 2. Attention and the transformer blocks                                   */
/* ======================================================================== */

/* Multi-head attention over n_seq sequences of T tokens. Q, K, V and the
 * output are (n_seq·T, ld) matrices whose columns [h·D, (h+1)·D) hold head
 * h, the layout a linear layer produces, so no head is ever copied out.
 * Scores of sequence n, head h, query t, key s:
 *
 *   S[t,s] = scale · q_t·k_s + head_bias[h,t,s] + seq_mask[n mod G,t,s]
 *            + key_bias[n,s]          (s > t dropped when causal)
 *
 * every term optional: relative-position bias and shift mask (Swin),
 * padding (BERT, additive −FLT_MAX as Hugging Face does), causality
 * (CLIP text). */
typedef struct {
    const float *q, *k, *v;   /* (n_seq·T, ld) */
    float *out;               /* (n_seq·T, ld) */
    int64_t ld, n_seq, T, H, D;
    float scale;
    int causal;
    const float *head_bias;   /* (H, T, T) or NULL */
    const float *seq_mask;    /* (G, T, T) or NULL */
    int64_t n_masks;          /* G */
    const float *key_bias;    /* (n_seq, T) or NULL */
    float *probs;             /* (n_seq, H, T, T) kept for a backward pass, or NULL */
    float *scratch;           /* (scratch_bufs, T, T) when probs is NULL */
    int64_t scratch_bufs;
    int64_t n_tasks;          /* set by attention(): at most scratch_bufs */
} attention_job;

/* @book begin attention-one-head */
/* One (sequence n, head h): S = Q_h K_hᵀ, biases and masks, softmax by
 * rows, O_h = P V_h. The GEMMs read and write the head's columns in place
 * through the row stride ld. */
static void attend_one(const attention_job *j, int64_t n, int64_t h, float *S /* (T, T) */)
{
    int64_t T = j->T, D = j->D, ld = j->ld;
    int64_t off = n * T * ld + h * D;
    sc_gemm(0, 1, T, T, D, j->q + off, ld, j->k + off, ld, S, T, 0);
    const float *hb = j->head_bias ? j->head_bias + h * T * T : NULL;
    const float *sm = j->seq_mask ? j->seq_mask + (n % j->n_masks) * T * T : NULL;
    const float *kb = j->key_bias ? j->key_bias + n * T : NULL;
    for (int64_t t = 0; t < T; t++)
        softmax_row(S + t * T, T, j->causal ? t + 1 : T, j->scale, hb ? hb + t * T : NULL, sm ? sm + t * T : NULL, kb);
    sc_gemm(0, 0, T, D, T, S, T, j->v + off, ld, j->out + off, ld, 0);
}
/* @book end attention-one-head */

/* Task i takes a contiguous share of the n_seq·H pairs and its own scores
 * buffer, so tasks never share memory. */
static void attention_task(void *arg, int64_t i)
{
    const attention_job *j = arg;
    int64_t pairs = j->n_seq * j->H, TT = j->T * j->T;
    int64_t lo = pairs * i / j->n_tasks, hi = pairs * (i + 1) / j->n_tasks;
    for (int64_t p = lo; p < hi; p++) {
        float *S = j->probs ? j->probs + p * TT : j->scratch + i * TT;
        attend_one(j, p / j->H, p % j->H, S);
    }
}

/* Tasks (and scores buffers) an attention over `pairs` (sequence, head)
 * pairs uses. */
static int64_t attention_tasks(int64_t pairs)
{
    int64_t t = sc_threads();
    return t < pairs ? t : (pairs > 0 ? pairs : 1);
}

static void attention(attention_job *j)
{
    j->n_tasks = attention_tasks(j->n_seq * j->H);
    if (!j->probs && j->n_tasks > j->scratch_bufs) j->n_tasks = j->scratch_bufs;
    sc_parallel_for(j->n_tasks, attention_task, j);
}

/* An attention job with the fields every caller sets; masks stay NULL. */
static attention_job attention_setup(const float *q, const float *k, const float *v, float *out, int64_t n_seq,
                                     int64_t T, int64_t C, int64_t H)
{
    attention_job j;
    memset(&j, 0, sizeof j);
    j.q = q;
    j.k = k;
    j.v = v;
    j.out = out;
    j.ld = C;
    j.n_seq = n_seq;
    j.T = T;
    j.H = H;
    j.D = C / H;
    j.scale = 1.0f / sqrtf((float)j.D);
    j.n_masks = 1;
    return j;
}

/* ---- attention on the tape (the CLIP towers and BERT with autograd) ---- */

/* @book begin attention-backward */
/* With P the softmax of S = scale·QKᵀ (+ masks) and O = PV, per head:
 *   dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ⊙ (dP − rowsum(P ⊙ dP)),
 *   dQ = scale · dS K,   dK = scale · dSᵀ Q.
 * Masked entries have P = 0, so they pass no gradient. */
typedef struct {
    const attention_job *fwd;
    const float *dout;            /* (n_seq·T, ld) */
    float *dq, *dk, *dv;          /* (n_seq·T, ld), accumulated */
    float *scratch;               /* (n_tasks, T, T) */
    int64_t n_tasks;
} attention_grad_job;

static void attention_grad_one(const attention_grad_job *g, int64_t n, int64_t h, float *dS)
{
    const attention_job *j = g->fwd;
    int64_t T = j->T, D = j->D, ld = j->ld, off = n * T * ld + h * D;
    const float *P = j->probs + (n * j->H + h) * T * T;
    sc_gemm(0, 1, T, T, D, g->dout + off, ld, j->v + off, ld, dS, T, 0);    /* dP */
    if (g->dv) sc_gemm(1, 0, T, D, T, P, T, g->dout + off, ld, g->dv + off, ld, 1);
    for (int64_t t = 0; t < T; t++) {
        const float *p = P + t * T;
        float *d = dS + t * T;
        double dot = 0;
        for (int64_t s = 0; s < T; s++) dot += (double)p[s] * (double)d[s];
        for (int64_t s = 0; s < T; s++) d[s] = p[s] * (d[s] - (float)dot) * j->scale;
    }
    if (g->dq) sc_gemm(0, 0, T, D, T, dS, T, j->k + off, ld, g->dq + off, ld, 1);
    if (g->dk) sc_gemm(1, 0, T, D, T, dS, T, j->q + off, ld, g->dk + off, ld, 1);
}
/* @book end attention-backward */

static void attention_grad_task(void *arg, int64_t i)
{
    const attention_grad_job *g = arg;
    int64_t pairs = g->fwd->n_seq * g->fwd->H, TT = g->fwd->T * g->fwd->T;
    for (int64_t p = pairs * i / g->n_tasks; p < pairs * (i + 1) / g->n_tasks; p++)
        attention_grad_one(g, p / g->fwd->H, p % g->fwd->H, g->scratch + i * TT);
}

static void attention_backward(sc_ctx *ctx, sc_node *node)
{
    const attention_job *j = node->saved;
    attention_grad_job g = {j, node->out->grad, sc__grad(ctx, node->in[0]), sc__grad(ctx, node->in[1]),
                            sc__grad(ctx, node->in[2]), NULL, attention_tasks(j->n_seq * j->H)};
    g.scratch = scratch(ctx, g.n_tasks * j->T * j->T);
    sc_parallel_for(g.n_tasks, attention_grad_task, &g);
}

/* Attention of q, k, v (B, T, C) with H heads as an op on the tape;
 * key_bias (B, T) hides padding keys (0 or −FLT_MAX), or is NULL. The
 * probabilities are kept for the backward pass only when it will run. */
static sc_tensor *attention_op(sc_ctx *ctx, sc_tensor *q, sc_tensor *k, sc_tensor *v, int64_t H, int causal,
                               const float *key_bias)
{
    q = sc_contiguous(ctx, q);
    k = sc_contiguous(ctx, k);
    v = sc_contiguous(ctx, v);
    SC_ASSERT(q->ndim == 3 && sc_same_shape(q, k) && sc_same_shape(q, v), "attention needs q, k, v (B, T, C)");
    int64_t B = q->shape[0], T = q->shape[1], C = q->shape[2];
    SC_ASSERT(H > 0 && C % H == 0, "attention: %lld heads for width %lld", (long long)H, (long long)C);
    sc_tensor *out = sc_tensor_new(&ctx->act, 3, q->shape, "attention");
    attention_job *j = sc__act_alloc(ctx, sizeof *j);
    *j = attention_setup(q->data, k->data, v->data, out->data, B, T, C, H);
    j->causal = causal;
    j->key_bias = key_bias;
    sc_node *node = sc__node_record(ctx, "attention", attention_backward, out, (sc_tensor *[]){q, k, v}, 3);
    if (node) {
        j->probs = scratch(ctx, B * H * T * T);
        node->saved = j;
    } else {
        j->scratch_bufs = attention_tasks(B * H);
        j->scratch = scratch(ctx, j->scratch_bufs * T * T);
    }
    attention(j);
    return out;
}

sc_tensor *sc__attention(sc_ctx *ctx, sc_tensor *q, sc_tensor *k, sc_tensor *v, int64_t H, int causal)
{
    return attention_op(ctx, q, k, v, H, causal, NULL);
}

/* ---- the transformer blocks (inference) ---- */

/* Weights of one transformer block. The two LayerNorms belong to the
 * attention and the MLP sublayers: applied before them in a pre-LN block
 * (CLIP, Swin), after the residual sum in a post-LN block (BERT). */
typedef struct {
    const float *ln_attn_w, *ln_attn_b;   /* (C) */
    const float *q_w, *q_b;               /* (C, C), (C) */
    const float *k_w, *k_b;
    const float *v_w, *v_b;
    const float *o_w, *o_b;               /* (C, C), (C) */
    const float *ln_mlp_w, *ln_mlp_b;     /* (C) */
    const float *fc1_w, *fc1_b;           /* (F, C), (F) */
    const float *fc2_w, *fc2_b;           /* (C, F), (C) */
    const float *rel_table;               /* Swin: ((2M−1)², H) */
} block_weights;

/* What a non-windowed attention masks: future tokens (CLIP text) and
 * padding keys, additively (BERT; CLIP text given an attention mask). */
typedef struct {
    int causal;
    const float *key_bias;   /* (n_seq, T): 0 or −FLT_MAX, or NULL */
} attention_mask;

/* Shapes shared by the blocks of one tower. */
typedef struct {
    int64_t C, F, H;
    float eps;
    sc_act act;
} block_dims;

/* Buffers a block needs over R rows: h (R, C) and `big`, which holds
 * q, k, v (R, C) each during attention and the MLP's (R, F) afterwards. */
typedef struct {
    float *h;
    float *big;
    float *scores;        /* attention scratch, (score_bufs, T, T) */
    int64_t score_bufs;
} block_buffers;

static block_buffers block_buffers_new(sc_ctx *ctx, int64_t R, const block_dims *d, int64_t pairs, int64_t T)
{
    block_buffers b;
    int64_t big = 3 * d->C > d->F ? 3 * d->C : d->F;
    b.h = scratch(ctx, R * d->C);
    b.big = scratch(ctx, R * big);
    b.score_bufs = attention_tasks(pairs);
    b.scores = scratch(ctx, b.score_bufs * T * T);
    return b;
}

/* x (R, C) += fc2(act(fc1(LN(x)))): the pre-LN MLP sublayer. */
static void mlp_pre_ln(float *x, int64_t R, const block_weights *w, const block_dims *d, block_buffers *buf)
{
    layernorm(buf->h, x, w->ln_mlp_w, w->ln_mlp_b, R, d->C, d->eps);
    linear(buf->big, buf->h, w->fc1_w, w->fc1_b, R, d->C, d->F, 0, d->act);
    linear(x, buf->big, w->fc2_w, w->fc2_b, R, d->F, d->C, 1, NO_ACT);
}

/* q, k, v (R, C) each into big from h. */
static void qkv_project(const float *h, int64_t R, const block_weights *w, int64_t C, block_buffers *buf)
{
    linear(buf->big, h, w->q_w, w->q_b, R, C, C, 0, NO_ACT);
    linear(buf->big + R * C, h, w->k_w, w->k_b, R, C, C, 0, NO_ACT);
    linear(buf->big + 2 * R * C, h, w->v_w, w->v_b, R, C, C, 0, NO_ACT);
}

/* @book begin pre-ln-block */
/* A pre-LN block over n_seq sequences of T tokens, x (n_seq·T, C) in place:
 *   x ← x + out_proj(attention(LN₁(x)))
 *   x ← x + fc2(act(fc1(LN₂(x))))
 * mask may be NULL. */
static void block_pre_ln(float *x, int64_t n_seq, int64_t T, const block_weights *w, const block_dims *d,
                         const attention_mask *mask, block_buffers *buf)
{
    int64_t R = n_seq * T, C = d->C;
    layernorm(buf->h, x, w->ln_attn_w, w->ln_attn_b, R, C, d->eps);
    qkv_project(buf->h, R, w, C, buf);
    attention_job j = attention_setup(buf->big, buf->big + R * C, buf->big + 2 * R * C, buf->h, n_seq, T, C, d->H);
    j.causal = mask ? mask->causal : 0;
    j.key_bias = mask ? mask->key_bias : NULL;
    j.scratch = buf->scores;
    j.scratch_bufs = buf->score_bufs;
    attention(&j);
    linear(x, buf->h, w->o_w, w->o_b, R, C, C, 1, NO_ACT);
    mlp_pre_ln(x, R, w, d, buf);
}
/* @book end pre-ln-block */

/* @book begin post-ln-block */
/* A post-LN (BERT) block, x (n_seq·T, C) in place:
 *   x ← LN₁(x + out_proj(attention(x)))
 *   x ← LN₂(x + fc2(act(fc1(x))))
 * The residual sums are formed by copying x and accumulating the GEMM. */
static void block_post_ln(float *x, int64_t n_seq, int64_t T, const block_weights *w, const block_dims *d,
                          const float *key_bias, block_buffers *buf)
{
    int64_t R = n_seq * T, C = d->C;
    qkv_project(x, R, w, C, buf);
    attention_job j = attention_setup(buf->big, buf->big + R * C, buf->big + 2 * R * C, buf->h, n_seq, T, C, d->H);
    j.key_bias = key_bias;
    j.scratch = buf->scores;
    j.scratch_bufs = buf->score_bufs;
    attention(&j);
    float *sum = buf->big;   /* q is spent: reuse its rows for the residual sum */
    memcpy(sum, x, sizeof(float) * (size_t)(R * C));
    linear(sum, buf->h, w->o_w, w->o_b, R, C, C, 1, NO_ACT);
    layernorm(x, sum, w->ln_attn_w, w->ln_attn_b, R, C, d->eps);

    linear(buf->big, x, w->fc1_w, w->fc1_b, R, C, d->F, 0, d->act);
    memcpy(buf->h, x, sizeof(float) * (size_t)(R * C));
    linear(buf->h, buf->big, w->fc2_w, w->fc2_b, R, d->F, C, 1, NO_ACT);
    layernorm(x, buf->h, w->ln_mlp_w, w->ln_mlp_b, R, C, d->eps);
}
/* @book end post-ln-block */

/* ---- weights and the two blocks on the tape ---- */

/* A tape op reads each weight as a tensor: the model's own trainable
 * parameter when it has one (so the gradient reaches it and the optimizer
 * can move it), else a frozen view of the stored floats that never
 * requires grad. tape_weight, defined with the model in section 7, makes
 * that choice from the storage the weight lives in. */
typedef struct {
    sc_ctx *ctx;
    const sc_model *m;
} tape;

static sc_tensor *tape_weight(const tape *tp, const float *data, int ndim, const int64_t *shape, const char *name);

static sc_tensor *activation_op(sc_ctx *ctx, sc_tensor *x, sc_act act)
{
    return act == SC_ACT_QUICK_GELU ? sc_quick_gelu(ctx, x) : sc_gelu_erf(ctx, x);
}

static sc_tensor *linear_op(const tape *tp, sc_tensor *x, const float *w, const float *b, int64_t out, int64_t in)
{
    sc_tensor *W = tape_weight(tp, w, 2, (int64_t[]){out, in}, "weight");
    sc_tensor *bias = b ? tape_weight(tp, b, 1, (int64_t[]){out}, "bias") : NULL;
    return sc_linear(tp->ctx, x, W, bias);
}

static sc_tensor *layernorm_op(const tape *tp, sc_tensor *x, const float *w, const float *b, int64_t C, float eps)
{
    return sc_layernorm(tp->ctx, x, tape_weight(tp, w, 1, &C, "ln_w"), tape_weight(tp, b, 1, &C, "ln_b"), eps);
}

/* @book begin tape-sublayers */
/* out_proj(attention(q(h), k(h), v(h))): the attention sublayer of both
 * blocks, h (B, T, C) → (B, T, C) before its residual sum. */
static sc_tensor *attention_sublayer_tape(const tape *tp, sc_tensor *h, const block_weights *w, const block_dims *d,
                                          int causal, const float *key_bias)
{
    int64_t C = d->C;
    sc_tensor *q = linear_op(tp, h, w->q_w, w->q_b, C, C);
    sc_tensor *k = linear_op(tp, h, w->k_w, w->k_b, C, C);
    sc_tensor *v = linear_op(tp, h, w->v_w, w->v_b, C, C);
    sc_tensor *a = attention_op(tp->ctx, q, k, v, d->H, causal, key_bias);
    return linear_op(tp, a, w->o_w, w->o_b, C, C);
}

/* fc2(act(fc1(h))): the MLP sublayer of both blocks. */
static sc_tensor *mlp_sublayer_tape(const tape *tp, sc_tensor *h, const block_weights *w, const block_dims *d)
{
    h = activation_op(tp->ctx, linear_op(tp, h, w->fc1_w, w->fc1_b, d->F, d->C), d->act);
    return linear_op(tp, h, w->fc2_w, w->fc2_b, d->C, d->F);
}
/* @book end tape-sublayers */

/* @book begin clip-block-tape */
/* The pre-LN block of block_pre_ln, op by op on the tape, for both CLIP
 * towers: x (B, T, C) → (B, T, C), with the causal mask in the text tower
 * and none in the vision tower. */
static sc_tensor *block_pre_ln_tape(const tape *tp, sc_tensor *x, const block_weights *w, const block_dims *d,
                                    int causal)
{
    sc_ctx *ctx = tp->ctx;
    sc_tensor *h = layernorm_op(tp, x, w->ln_attn_w, w->ln_attn_b, d->C, d->eps);
    x = sc_add(ctx, x, attention_sublayer_tape(tp, h, w, d, causal, NULL));
    h = layernorm_op(tp, x, w->ln_mlp_w, w->ln_mlp_b, d->C, d->eps);
    return sc_add(ctx, x, mlp_sublayer_tape(tp, h, w, d));
}
/* @book end clip-block-tape */

/* @book begin bert-block-tape */
/* The post-LN block of block_post_ln on the tape (BERT): x (B, T, C) →
 * (B, T, C), the same two sublayers with each LayerNorm moved after its
 * residual sum; key_bias (B, T) hides the padding keys, or is NULL. */
static sc_tensor *block_post_ln_tape(const tape *tp, sc_tensor *x, const block_weights *w, const block_dims *d,
                                     const float *key_bias)
{
    sc_ctx *ctx = tp->ctx;
    x = sc_add(ctx, x, attention_sublayer_tape(tp, x, w, d, 0, key_bias));
    x = layernorm_op(tp, x, w->ln_attn_w, w->ln_attn_b, d->C, d->eps);
    x = sc_add(ctx, x, mlp_sublayer_tape(tp, x, w, d));
    return layernorm_op(tp, x, w->ln_mlp_w, w->ln_mlp_b, d->C, d->eps);
}
/* @book end bert-block-tape */

/* ======================================================================== */
/* 3. CLIP vision transformer                                                */
/* ======================================================================== */

typedef struct {
    const float *patch_w;                 /* (C, 3, P, P), no bias */
    const float *class_emb;               /* (C) */
    const float *pos_emb;                 /* (N, C), N = 1 + (S/P)² */
    const float *ln_pre_w, *ln_pre_b;     /* (C) */
    block_weights *layers;                /* L blocks */
    const float *ln_post_w, *ln_post_b;   /* (C) */
    const float *proj;                    /* (E, C), no bias */
} vit_weights;

static block_dims vit_dims(const sc_vit_config *c)
{
    block_dims d = {c->width, c->mlp, c->heads, c->eps, c->act};
    return d;
}

/* @book begin vit-embed */
/* x (B, N, C): token 0 is the class embedding, token 1 + p the patch p
 * (row-major over the grid) through the bias-free convolution; then the
 * position embedding is added to every token. */
static void vit_embed(sc_ctx *ctx, const sc_vit_config *c, const vit_weights *w, const float *pixels, int64_t B,
                      float *x)
{
    int64_t S = c->image_size, P = c->patch, C = c->width, G = S / P, N = 1 + G * G;
    sc_arena_mark mark = sc_arena_get_mark(&ctx->act);
    sc_tensor *img = sc_tensor_wrap(&ctx->act, (float *)pixels, 4, (int64_t[]){B, 3, S, S}, "pixels");
    sc_tensor *conv = sc_tensor_wrap(&ctx->act, (float *)w->patch_w, 4, (int64_t[]){C, 3, P, P}, "patch_w");
    sc_tensor *patches = sc_patch_embed(ctx, img, conv, NULL, (int)P);   /* (B, G², C) */
    for (int64_t b = 0; b < B; b++)
        for (int64_t n = 0; n < N; n++) {
            const float *src = n == 0 ? w->class_emb : patches->data + (b * (N - 1) + n - 1) * C;
            const float *pos = w->pos_emb + n * C;
            float *dst = x + (b * N + n) * C;
            for (int64_t k = 0; k < C; k++) dst[k] = src[k] + pos[k];
        }
    sc_arena_rewind(&ctx->act, mark);
}
/* @book end vit-embed */

/* @book begin vit-forward */
/* pixels (B, 3, S, S) → out (B, E): embed, ln_pre (its output is the
 * residual stream), L pre-LN blocks, ln_post of the class token, and the
 * projection. */
static void vit_forward(sc_ctx *ctx, const sc_vit_config *c, const vit_weights *w, int64_t E, const float *pixels,
                        int64_t B, float *out, const sc_taps *taps)
{
    int64_t G = c->image_size / c->patch, N = 1 + G * G, C = c->width, R = B * N;
    block_dims d = vit_dims(c);
    float *x = scratch(ctx, R * C);                          /* (B, N, C) */
    vit_embed(ctx, c, w, pixels, B, x);
    layernorm(x, x, w->ln_pre_w, w->ln_pre_b, R, C, c->eps);
    tap(taps, "vision_pre", x, 3, (int64_t[]){B, N, C});
    block_buffers buf = block_buffers_new(ctx, R, &d, B * c->heads, N);
    for (int64_t l = 0; l < c->layers; l++) {
        block_pre_ln(x, B, N, &w->layers[l], &d, NULL, &buf);
        char name[SC_NAME_MAX];
        snprintf(name, sizeof name, "vision_layer%lld", (long long)l);
        tap(taps, name, x, 3, (int64_t[]){B, N, C});
    }
    float *pooled = scratch(ctx, B * C);                     /* (B, C) */
    for (int64_t b = 0; b < B; b++) memcpy(pooled + b * C, x + b * N * C, sizeof(float) * (size_t)C);
    layernorm(pooled, pooled, w->ln_post_w, w->ln_post_b, B, C, c->eps);
    tap(taps, "vision_post", pooled, 2, (int64_t[]){B, C});
    linear(out, pooled, w->proj, NULL, B, C, E, 0, NO_ACT);
}
/* @book end vit-forward */

/* @book begin vit-tape */
/* The same tower on the tape: pixels (B, 3, S, S) → (B, E). The class
 * token enters as class_emb broadcast over a zero (B, 1, C), so every
 * image's copy sends its gradient back to the one parameter; the blocks
 * are block_pre_ln_tape without a mask. */
static sc_tensor *vit_tape(const tape *tp, const sc_vit_config *c, const vit_weights *w, int64_t E, sc_tensor *pixels)
{
    sc_ctx *ctx = tp->ctx;
    int64_t B = pixels->shape[0], S = c->image_size, P = c->patch, C = c->width, G = S / P, N = 1 + G * G;
    SC_ASSERT(pixels->ndim == 4 && pixels->shape[1] == 3 && pixels->shape[2] == S && pixels->shape[3] == S,
              "vision tower: pixels must be (B, 3, %lld, %lld)", (long long)S, (long long)S);
    block_dims d = vit_dims(c);
    sc_tensor *conv = tape_weight(tp, w->patch_w, 4, (int64_t[]){C, 3, P, P}, "patch_w");
    sc_tensor *patches = sc_patch_embed(ctx, pixels, conv, NULL, (int)P);                      /* (B, G², C) */
    sc_tensor *cls = sc_add(ctx, sc_tensor_zeros(&ctx->act, 3, (int64_t[]){B, 1, C}, "zeros"),
                            tape_weight(tp, w->class_emb, 1, &C, "class_emb"));               /* (B, 1, C) */
    sc_tensor *x = sc_concat(ctx, (sc_tensor *[]){cls, patches}, 2, 1);                       /* (B, N, C) */
    x = sc_add(ctx, x, tape_weight(tp, w->pos_emb, 2, (int64_t[]){N, C}, "pos_emb"));
    x = layernorm_op(tp, x, w->ln_pre_w, w->ln_pre_b, C, c->eps);
    for (int64_t l = 0; l < c->layers; l++) x = block_pre_ln_tape(tp, x, &w->layers[l], &d, 0);
    int64_t *rows = sc__act_alloc(ctx, sizeof(int64_t) * (size_t)(B ? B : 1));   /* every image's class token */
    memset(rows, 0, sizeof(int64_t) * (size_t)B);
    x = layernorm_op(tp, sc_gather_rows(ctx, x, rows), w->ln_post_w, w->ln_post_b, C, c->eps);
    return linear_op(tp, x, w->proj, NULL, E, C);
}
/* @book end vit-tape */

/* ======================================================================== */
/* 4. CLIP text transformer                                                  */
/* ======================================================================== */

typedef struct {
    const float *tok_emb;                 /* (V, C) */
    const float *pos_emb;                 /* (context, C) */
    block_weights *layers;                /* L blocks */
    const float *ln_final_w, *ln_final_b; /* (C) */
    const float *proj;                    /* (E, C), no bias */
} clip_text_weights;

static block_dims clip_text_dims(const sc_clip_text_config *c)
{
    block_dims d = {c->width, c->mlp, c->heads, c->eps, c->act};
    return d;
}

/* @book begin eot-rule */
int64_t sc_clip_eot_index(const sc_clip_text_config *cfg, const int64_t *ids, int64_t T)
{
    int64_t best = 0;
    if (cfg->eos_token_id < 0 || cfg->eos_token_id == 2) {
        /* OpenAI (and HF with a legacy config): EOT has the largest id;
         * the first maximum wins, as torch.argmax returns it. */
        for (int64_t t = 1; t < T; t++)
            if (ids[t] > ids[best]) best = t;
        return best;
    }
    for (int64_t t = 0; t < T; t++)
        if (ids[t] == cfg->eos_token_id) return t;
    return 0;   /* no EOT: HF's argmax over all-false picks position 0 */
}
/* @book end eot-rule */

/* @book begin clip-text-forward */
/* ids (B, T) → out (B, E). The causal mask lets token t attend to tokens
 * 0..t only; key_bias (B, T) additionally hides padding keys when the
 * caller gave an attention mask (Hugging Face), or is NULL (OpenAI). */
static void clip_text_forward(sc_ctx *ctx, const sc_clip_text_config *c, const clip_text_weights *w, int64_t E,
                              const int64_t *ids, const float *key_bias, int64_t B, int64_t T, float *out,
                              const sc_taps *taps)
{
    int64_t C = c->width, R = B * T;
    block_dims d = clip_text_dims(c);
    float *x = scratch(ctx, R * C);                          /* (B, T, C) */
    for (int64_t r = 0; r < R; r++) {
        const float *tok = w->tok_emb + ids[r] * C, *pos = w->pos_emb + (r % T) * C;
        for (int64_t k = 0; k < C; k++) x[r * C + k] = tok[k] + pos[k];
    }
    attention_mask mask = {1, key_bias};
    block_buffers buf = block_buffers_new(ctx, R, &d, B * c->heads, T);
    for (int64_t l = 0; l < c->layers; l++) {
        block_pre_ln(x, B, T, &w->layers[l], &d, &mask, &buf);
        char name[SC_NAME_MAX];
        snprintf(name, sizeof name, "text_layer%lld", (long long)l);
        tap(taps, name, x, 3, (int64_t[]){B, T, C});
    }
    layernorm(x, x, w->ln_final_w, w->ln_final_b, R, C, c->eps);
    tap(taps, "text_final", x, 3, (int64_t[]){B, T, C});
    float *pooled = scratch(ctx, B * C);                     /* (B, C) */
    for (int64_t b = 0; b < B; b++) {
        int64_t t = sc_clip_eot_index(c, ids + b * T, T);
        memcpy(pooled + b * C, x + (b * T + t) * C, sizeof(float) * (size_t)C);
    }
    linear(out, pooled, w->proj, NULL, B, C, E, 0, NO_ACT);
}
/* @book end clip-text-forward */

/* ---- the same tower on the autograd tape ---- */

/* x (B, T, C) token embeddings → (B, E); see sc_clip_text_forward. The
 * first T rows of the position table are added. */
static sc_tensor *clip_text_tape(const tape *tp, const sc_clip_text_config *c, const clip_text_weights *w, int64_t E,
                                 sc_tensor *x, const int64_t *ids)
{
    SC_ASSERT(x->ndim == 3 && x->shape[2] == c->width && x->shape[1] <= c->context,
              "text tower: embeddings must be (B, T <= %lld, %lld)", (long long)c->context, (long long)c->width);
    sc_ctx *ctx = tp->ctx;
    int64_t B = x->shape[0], T = x->shape[1], C = c->width;
    block_dims d = clip_text_dims(c);
    sc_tensor *pos = tape_weight(tp, w->pos_emb, 2, (int64_t[]){c->context, C}, "pos_emb");
    x = sc_add(ctx, x, sc_slice(ctx, pos, 0, 0, T));
    for (int64_t l = 0; l < c->layers; l++) x = block_pre_ln_tape(tp, x, &w->layers[l], &d, 1);
    x = layernorm_op(tp, x, w->ln_final_w, w->ln_final_b, C, c->eps);
    int64_t *rows = sc__act_alloc(ctx, sizeof(int64_t) * (size_t)(B ? B : 1));
    for (int64_t b = 0; b < B; b++) rows[b] = sc_clip_eot_index(c, ids + b * T, T);
    return linear_op(tp, sc_gather_rows(ctx, x, rows), w->proj, NULL, E, C);
}

/* ======================================================================== */
/* 5. Swin transformer                                                       */
/* ======================================================================== */

typedef struct {
    block_weights *blocks;                  /* depth blocks */
    const float *merge_ln_w, *merge_ln_b;   /* (4C); NULL in the last stage */
    const float *merge_w;                   /* (2C, 4C), no bias */
} swin_stage_weights;

typedef struct {
    const float *patch_w, *patch_b;         /* (C0, 3, P, P), (C0) */
    const float *embed_ln_w, *embed_ln_b;   /* (C0) */
    swin_stage_weights stages[SC_SWIN_MAX_STAGES];
    const float *ln_w, *ln_b;               /* (C_last) */
    const float *proj;                      /* (E, C_last), MedCLIP's projection head */
} swin_weights;

/* The LayerNorms of the patch embedding and of patch merging are built by
 * Hugging Face with nn.LayerNorm's default ε, whatever the config says. */
#define SWIN_FIXED_EPS 1e-5f

static int64_t swin_stage_width(const sc_swin_config *c, int s)
{
    return c->embed_dim << s;
}

static int64_t swin_mlp(const sc_swin_config *c, int64_t C)
{
    return (int64_t)(c->mlp_ratio * (float)C);
}

/* @book begin swin-window */
/* Where the windows of one block lie on a stage of Hs × Ws tokens. Odd
 * blocks shift by ⌊M/2⌋. When the stage is not larger than the window
 * (min(Hs, Ws) <= M) the window shrinks to min(Hs, Ws) and nothing
 * shifts, as Hugging Face's set_shift_and_window_size does. */
typedef struct {
    int64_t Hs, Ws;     /* stage resolution */
    int64_t M;          /* window side in use */
    int64_t shift;      /* cyclic shift: 0 or ⌊M/2⌋ */
    int64_t Hp, Wp;     /* padded up to multiples of M */
    int64_t n_win;      /* windows per image, (Hp/M)·(Wp/M) */
    int64_t T;          /* tokens per window, M² */
} swin_window;

static swin_window swin_window_of(int64_t Hs, int64_t Ws, int64_t window, int64_t block)
{
    swin_window g = {Hs, Ws, window, block % 2 ? window / 2 : 0, 0, 0, 0, 0};
    int64_t smaller = Hs < Ws ? Hs : Ws;
    if (smaller <= window) {
        g.M = smaller;
        g.shift = 0;
    }
    g.Hp = (Hs + g.M - 1) / g.M * g.M;
    g.Wp = (Ws + g.M - 1) / g.M * g.M;
    g.n_win = (g.Hp / g.M) * (g.Wp / g.M);
    g.T = g.M * g.M;
    return g;
}

/* src[w·T + r·M + c]: the token y·Ws + x that position (r, c) of window w
 * shows, or −1 for padding. Window w = wy·(Wp/M) + wx covers rows
 * wy·M ... of the rolled grid, and rolling by −shift means rolled
 * (y', x') shows ((y' + shift) mod Hp, (x' + shift) mod Wp). */
static void swin_window_sources(const swin_window *g, int64_t *src)
{
    int64_t nww = g->Wp / g->M;
    for (int64_t w = 0; w < g->n_win; w++)
        for (int64_t r = 0; r < g->M; r++)
            for (int64_t c = 0; c < g->M; c++) {
                int64_t y = ((w / nww) * g->M + r + g->shift) % g->Hp;
                int64_t x = ((w % nww) * g->M + c + g->shift) % g->Wp;
                src[w * g->T + r * g->M + c] = y < g->Hs && x < g->Ws ? y * g->Ws + x : -1;
            }
}
/* @book end swin-window */

/* @book begin swin-relative-bias */
/* Row of the relative-position table for query i and key j of an M × M
 * window, the table laid out for the configured window M0 >= M:
 *   (yi − yj + M0 − 1)·(2·M0 − 1) + (xi − xj + M0 − 1). */
static int64_t swin_relative_index(int64_t M0, int64_t M, int64_t i, int64_t j)
{
    int64_t dy = i / M - j / M, dx = i % M - j % M;
    return (dy + M0 - 1) * (2 * M0 - 1) + (dx + M0 - 1);
}

/* bias (H, T, T): bias[h, i, j] = table[index(i, j), h], table ((2M0−1)², H). */
static void swin_relative_bias(const swin_window *g, int64_t M0, const float *table, int64_t H, float *bias)
{
    for (int64_t i = 0; i < g->T; i++)
        for (int64_t j = 0; j < g->T; j++) {
            int64_t row = swin_relative_index(M0, g->M, i, j);
            for (int64_t h = 0; h < H; h++) bias[(h * g->T + i) * g->T + j] = table[row * H + h];
        }
}
/* @book end swin-relative-bias */

/* @book begin swin-shift-mask */
/* After the roll, a window at the bottom or right edge holds tokens from
 * opposite sides of the image. Each axis of the rolled, padded grid falls
 * into three regions: [0, L − M), [L − M, L − shift), [L − shift, L).
 * Tokens of different regions (3 × 3 labels) must not attend to each
 * other: mask (n_win, T, T) is −100 there, 0 elsewhere. */
static int64_t shift_region(int64_t pos, int64_t L, int64_t M, int64_t shift)
{
    return pos < L - M ? 0 : pos < L - shift ? 1 : 2;
}

static void swin_shift_mask(const swin_window *g, float *mask)
{
    int64_t nww = g->Wp / g->M, T = g->T;
    for (int64_t w = 0; w < g->n_win; w++)
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < T; j++) {
                int64_t yi = (w / nww) * g->M + i / g->M, xi = (w % nww) * g->M + i % g->M;
                int64_t yj = (w / nww) * g->M + j / g->M, xj = (w % nww) * g->M + j % g->M;
                int64_t li = 3 * shift_region(yi, g->Hp, g->M, g->shift) + shift_region(xi, g->Wp, g->M, g->shift);
                int64_t lj = 3 * shift_region(yj, g->Hp, g->M, g->shift) + shift_region(xj, g->Wp, g->M, g->shift);
                mask[(w * T + i) * T + j] = li == lj ? 0.0f : -100.0f;
            }
}
/* @book end swin-shift-mask */

int64_t sc__swin_windows(int64_t Hs, int64_t Ws, int64_t window, int64_t block, int64_t *shift, int64_t *n_win,
                         int64_t *src, float *mask)
{
    swin_window g = swin_window_of(Hs, Ws, window, block);
    *shift = g.shift;
    *n_win = g.n_win;
    if (src) swin_window_sources(&g, src);
    if (mask && g.shift) swin_shift_mask(&g, mask);
    return g.M;
}

int64_t sc__swin_relative_index(int64_t M0, int64_t M, int64_t i, int64_t j)
{
    return swin_relative_index(M0, M, i, j);
}

/* Buffers of a Swin forward, sized for its largest stage. */
typedef struct {
    float *x;           /* (B, N, C): the residual stream */
    block_buffers blk;  /* h (R, C), big, attention scores */
    float *win;         /* (B·n_win·T, C): tokens in window order */
    float *cat;         /* (B·H'·W', 4C): patch merging */
    int64_t *src;       /* (n_win·T) */
    float *bias;        /* (H, T, T) */
    float *mask;        /* (n_win, T, T) */
} swin_buffers;

/* Gather into window order (zero rows for padding), or scatter-add back. */
typedef struct {
    float *win;
    float *tokens;
    const int64_t *src;
    const float *bias;      /* scatter: the output projection's bias */
    int64_t per_image, N, C;
    int scatter;
} window_job;

static void window_task(void *arg, int64_t r0, int64_t r1)
{
    const window_job *j = arg;
    for (int64_t r = r0; r < r1; r++) {
        int64_t b = r / j->per_image, s = j->src[r % j->per_image];
        float *w = j->win + r * j->C;
        if (!j->scatter) {
            if (s < 0)
                memset(w, 0, sizeof(float) * (size_t)j->C);
            else
                memcpy(w, j->tokens + (b * j->N + s) * j->C, sizeof(float) * (size_t)j->C);
        } else if (s >= 0) {
            float *x = j->tokens + (b * j->N + s) * j->C;
            for (int64_t c = 0; c < j->C; c++) x[c] += w[c] + j->bias[c];
        }
    }
}

/* @book begin swin-block */
/* One Swin block on x (B, Hs·Ws, C) in place: LayerNorm, tokens into
 * window order (rolled, padded), windowed attention with relative-position
 * bias and shift mask, output projection scattered back onto the tokens
 * as the residual, then the pre-LN MLP. */
static void swin_block(float *x, int64_t B, const swin_window *g, const block_weights *w, const block_dims *d,
                       int64_t M0, swin_buffers *buf)
{
    int64_t C = d->C, N = g->Hs * g->Ws, R = B * N, Rw = B * g->n_win * g->T;
    swin_window_sources(g, buf->src);
    swin_relative_bias(g, M0, w->rel_table, d->H, buf->bias);
    if (g->shift) swin_shift_mask(g, buf->mask);
    layernorm(buf->blk.h, x, w->ln_attn_w, w->ln_attn_b, R, C, d->eps);
    window_job wj = {buf->win, buf->blk.h, buf->src, NULL, g->n_win * g->T, N, C, 0};
    parallel_rows(Rw, C, window_task, &wj);
    qkv_project(buf->win, Rw, w, C, &buf->blk);
    float *q = buf->blk.big, *k = q + Rw * C, *v = k + Rw * C;
    attention_job j = attention_setup(q, k, v, buf->win, B * g->n_win, g->T, C, d->H);
    j.head_bias = buf->bias;
    j.seq_mask = g->shift ? buf->mask : NULL;
    j.n_masks = g->n_win;
    j.scratch = buf->blk.scores;
    j.scratch_bufs = buf->blk.score_bufs;
    attention(&j);
    linear(q, buf->win, w->o_w, NULL, Rw, C, C, 0, NO_ACT);
    window_job back = {q, x, buf->src, w->o_b, g->n_win * g->T, N, C, 1};
    parallel_rows(Rw, C, window_task, &back);
    mlp_pre_ln(x, R, w, d, &buf->blk);
}
/* @book end swin-block */

/* @book begin swin-merge */
/* Patch merging: x (B, Hs, Ws, C) → (B, ⌈Hs/2⌉, ⌈Ws/2⌉, 2C) in place.
 * Each 2 × 2 neighbourhood becomes one token whose 4C features are, in
 * this order, x[2i, 2j], x[2i+1, 2j], x[2i, 2j+1], x[2i+1, 2j+1] (zeros
 * past an odd edge); then LayerNorm(4C) and a bias-free Linear(4C → 2C). */
static void swin_merge(float *x, int64_t B, int64_t Hs, int64_t Ws, int64_t C, const swin_stage_weights *w,
                       float *cat)
{
    int64_t H2 = (Hs + 1) / 2, W2 = (Ws + 1) / 2;
    static const int dy[4] = {0, 1, 0, 1}, dx[4] = {0, 0, 1, 1};
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < H2; i++)
            for (int64_t j = 0; j < W2; j++)
                for (int q = 0; q < 4; q++) {
                    int64_t y = 2 * i + dy[q], xx = 2 * j + dx[q];
                    float *dst = cat + ((b * H2 + i) * W2 + j) * 4 * C + q * C;
                    if (y < Hs && xx < Ws)
                        memcpy(dst, x + ((b * Hs + y) * Ws + xx) * C, sizeof(float) * (size_t)C);
                    else
                        memset(dst, 0, sizeof(float) * (size_t)C);
                }
    int64_t rows = B * H2 * W2;
    layernorm(cat, cat, w->merge_ln_w, w->merge_ln_b, rows, 4 * C, SWIN_FIXED_EPS);
    linear(x, cat, w->merge_w, NULL, rows, 4 * C, 2 * C, 0, NO_ACT);
}
/* @book end swin-merge */

/* Largest buffers any stage of a forward over B images of Hp0 × Wp0
 * patches needs. */
static swin_buffers swin_buffers_new(sc_ctx *ctx, const sc_swin_config *c, int64_t B, int64_t Hs, int64_t Ws)
{
    int64_t h = 0, big = 0, win = 0, cat = 0, src = 0, bias = 0, mask = 0, scores = 0, min_bufs = INT64_MAX;
    for (int s = 0; s < c->n_stages; s++) {
        int64_t C = swin_stage_width(c, s), R = B * Hs * Ws, F = swin_mlp(c, C);
        for (int64_t i = 0; i < c->depths[s] && i < 2; i++) {
            swin_window g = swin_window_of(Hs, Ws, c->window, i);
            int64_t Rw = B * g.n_win * g.T, TT = g.T * g.T;
            win = win > Rw * C ? win : Rw * C;
            big = big > 3 * Rw * C ? big : 3 * Rw * C;
            src = src > g.n_win * g.T ? src : g.n_win * g.T;
            bias = bias > c->heads[s] * TT ? bias : c->heads[s] * TT;
            mask = mask > g.n_win * TT ? mask : g.n_win * TT;
            int64_t bufs = attention_tasks(B * g.n_win * c->heads[s]);
            scores = scores > bufs * TT ? scores : bufs * TT;
            min_bufs = min_bufs < bufs ? min_bufs : bufs;
        }
        h = h > R * C ? h : R * C;
        big = big > R * F ? big : R * F;
        int64_t H2 = (Hs + 1) / 2, W2 = (Ws + 1) / 2;
        if (s + 1 < c->n_stages) cat = cat > B * H2 * W2 * 4 * C ? cat : B * H2 * W2 * 4 * C;
        Hs = H2;
        Ws = W2;
    }
    swin_buffers b;
    b.x = scratch(ctx, h);   /* odd sizes can make a later stage the largest */
    b.blk.h = scratch(ctx, h);
    b.blk.big = scratch(ctx, big);
    b.blk.scores = scratch(ctx, scores);
    b.blk.score_bufs = min_bufs;   /* every stage's windows fit this many */
    b.win = scratch(ctx, win);
    b.cat = scratch(ctx, cat);
    b.src = sc__act_alloc(ctx, sizeof(int64_t) * (size_t)(src > 0 ? src : 1));
    b.bias = scratch(ctx, bias);
    b.mask = scratch(ctx, mask);
    return b;
}

/* Patch embedding with bias and its LayerNorm: pixels (B, 3, H, W), zero
 * padded right and bottom to multiples of P as Hugging Face does, into
 * x (B, Hp·Wp, C0). */
static void swin_embed(sc_ctx *ctx, const sc_swin_config *c, const swin_weights *w, const float *pixels, int64_t B,
                       int64_t H, int64_t W, float *x)
{
    int64_t P = c->patch, C = c->embed_dim, Hp = (H + P - 1) / P, Wp = (W + P - 1) / P;
    sc_arena_mark mark = sc_arena_get_mark(&ctx->act);
    float *padded = (float *)pixels;
    if (Hp * P != H || Wp * P != W) {
        padded = scratch(ctx, B * 3 * Hp * P * Wp * P);
        memset(padded, 0, sizeof(float) * (size_t)(B * 3 * Hp * P * Wp * P));
        for (int64_t bc = 0; bc < B * 3; bc++)
            for (int64_t y = 0; y < H; y++)
                memcpy(padded + (bc * Hp * P + y) * Wp * P, pixels + (bc * H + y) * W, sizeof(float) * (size_t)W);
    }
    sc_tensor *img = sc_tensor_wrap(&ctx->act, padded, 4, (int64_t[]){B, 3, Hp * P, Wp * P}, "pixels");
    sc_tensor *conv = sc_tensor_wrap(&ctx->act, (float *)w->patch_w, 4, (int64_t[]){C, 3, P, P}, "patch_w");
    sc_tensor *bias = sc_tensor_wrap(&ctx->act, (float *)w->patch_b, 1, &C, "patch_b");
    sc_tensor *patches = sc_patch_embed(ctx, img, conv, bias, (int)P);   /* (B, Hp·Wp, C) */
    layernorm(x, patches->data, w->embed_ln_w, w->embed_ln_b, B * Hp * Wp, C, SWIN_FIXED_EPS);
    sc_arena_rewind(&ctx->act, mark);
}

/* @book begin swin-forward */
/* pixels (B, 3, H, W) → out (B, E): embed; per stage its blocks (window
 * geometry per block), then patch merging; final LayerNorm, mean over
 * tokens (pooler_output), MedCLIP's bias-free projection. */
static void swin_forward(sc_ctx *ctx, const sc_swin_config *c, const swin_weights *w, int64_t E, const float *pixels,
                         int64_t B, int64_t H, int64_t W, float *out, const sc_taps *taps)
{
    int64_t Hs = (H + c->patch - 1) / c->patch, Ws = (W + c->patch - 1) / c->patch, C = c->embed_dim;
    swin_buffers buf = swin_buffers_new(ctx, c, B, Hs, Ws);
    float *x = buf.x;
    swin_embed(ctx, c, w, pixels, B, H, W, x);
    tap(taps, "swin_embeddings", x, 3, (int64_t[]){B, Hs * Ws, C});
    for (int s = 0; s < c->n_stages; s++) {
        C = swin_stage_width(c, s);
        block_dims d = {C, swin_mlp(c, C), c->heads[s], c->eps, c->act};
        for (int64_t i = 0; i < c->depths[s]; i++) {
            swin_window g = swin_window_of(Hs, Ws, c->window, i);
            swin_block(x, B, &g, &w->stages[s].blocks[i], &d, c->window, &buf);
        }
        char name[SC_NAME_MAX];
        snprintf(name, sizeof name, "swin_stage%d", s);
        tap(taps, name, x, 3, (int64_t[]){B, Hs * Ws, C});
        if (s + 1 == c->n_stages) break;
        swin_merge(x, B, Hs, Ws, C, &w->stages[s], buf.cat);
        Hs = (Hs + 1) / 2;
        Ws = (Ws + 1) / 2;
    }
    int64_t N = Hs * Ws;
    layernorm(x, x, w->ln_w, w->ln_b, B * N, C, c->eps);
    tap(taps, "swin_last_hidden", x, 3, (int64_t[]){B, N, C});
    float *pooled = scratch(ctx, B * C);        /* (B, C) */
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < C; k++) {
            double s = 0;
            for (int64_t n = 0; n < N; n++) s += (double)x[(b * N + n) * C + k];
            pooled[b * C + k] = (float)(s / (double)N);
        }
    tap(taps, "swin_pooler", pooled, 2, (int64_t[]){B, C});
    linear(out, pooled, w->proj, NULL, B, C, E, 0, NO_ACT);
}
/* @book end swin-forward */

/* ======================================================================== */
/* 6. BERT                                                                   */
/* ======================================================================== */

typedef struct {
    const float *word;                    /* (V, C) */
    const float *pos;                     /* (max_positions, C) */
    const float *type;                    /* (type_vocab, C) */
    const float *ln_w, *ln_b;             /* (C) */
    block_weights *layers;                /* L blocks */
    const float *pool_w, *pool_b;         /* (C, C), (C): the unused pooler */
    const float *proj;                    /* (E, C), MedCLIP's projection head */
} bert_weights;

static block_dims bert_dims(const sc_bert_config *c)
{
    block_dims d = {c->width, c->mlp, c->heads, c->eps, c->act};
    return d;
}

/* @book begin bert-forward */
/* ids (B, T) → x (B, T, C), the last hidden state. Embeddings are
 * (word + token type 0) + position, then LayerNorm; padding keys get
 * −FLT_MAX added to their scores ((1 − mask)·finfo.min, as Hugging Face).
 * keep[k], when not NULL, receives hidden state k (0 = embeddings). */
static void bert_forward(sc_ctx *ctx, const sc_bert_config *c, const bert_weights *w, const int64_t *ids,
                         const int64_t *mask, int64_t B, int64_t T, float *x, float *const *keep)
{
    int64_t C = c->width, R = B * T;
    size_t bytes = sizeof(float) * (size_t)(R * C);
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < C; k++)
            x[r * C + k] = (w->word[ids[r] * C + k] + w->type[k]) + w->pos[(r % T) * C + k];
    layernorm(x, x, w->ln_w, w->ln_b, R, C, c->eps);
    if (keep[0]) memcpy(keep[0], x, bytes);
    float *key_bias = NULL;
    if (mask) {
        key_bias = scratch(ctx, R);
        for (int64_t r = 0; r < R; r++) key_bias[r] = mask[r] ? 0.0f : -FLT_MAX;
    }
    block_dims d = bert_dims(c);
    block_buffers buf = block_buffers_new(ctx, R, &d, B * c->heads, T);
    for (int64_t l = 0; l < c->layers; l++) {
        block_post_ln(x, B, T, &w->layers[l], &d, key_bias, &buf);
        if (keep[l + 1]) memcpy(keep[l + 1], x, bytes);
    }
}
/* @book end bert-forward */

/* pooler_output (B, C) = tanh(dense(x[:, 0])); MedCLIP does not use it. */
static void bert_pooler(const sc_bert_config *c, const bert_weights *w, const float *x, int64_t B, int64_t T,
                        float *first, float *pooled)
{
    int64_t C = c->width;
    for (int64_t b = 0; b < B; b++) memcpy(first + b * C, x + b * T * C, sizeof(float) * (size_t)C);
    linear(pooled, first, w->pool_w, w->pool_b, B, C, C, 0, NO_ACT);
    for (int64_t i = 0; i < B * C; i++) pooled[i] = tanhf(pooled[i]);
}

/* @book begin medclip-text */
/* MedCLIP's text embedding: hidden states 1, 2 and L (the outputs of the
 * first, second and last layers), each averaged over ALL T positions —
 * padding included, the attention mask plays no part here — then averaged
 * over the three, then the bias-free projection. With L = 2 the second
 * layer counts twice, as torch.stack([hs[1], hs[2], hs[-1]]) does. */
static void medclip_text_pool(const float *const *hs, int64_t B, int64_t T, int64_t C, float *pooled)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < C; k++) {
            double layers = 0;
            for (int i = 0; i < 3; i++) {
                double s = 0;
                for (int64_t t = 0; t < T; t++) s += (double)hs[i][(b * T + t) * C + k];
                layers += (double)(float)(s / (double)T);
            }
            pooled[b * C + k] = (float)(layers / 3.0);
        }
}
/* @book end medclip-text */

static void medclip_text_forward(sc_ctx *ctx, const sc_bert_config *c, const bert_weights *w, int64_t E,
                                 const int64_t *ids, const int64_t *mask, int64_t B, int64_t T, float *out,
                                 const sc_taps *taps)
{
    int64_t C = c->width, L = c->layers, BTC = B * T * C;
    float **keep = sc__act_alloc(ctx, sizeof(float *) * (size_t)(L + 1));
    if (taps) {
        float *all = scratch(ctx, (L + 1) * BTC);   /* (L+1, B, T, C) */
        for (int64_t k = 0; k <= L; k++) keep[k] = all + k * BTC;
    } else {
        for (int64_t k = 0; k <= L; k++) keep[k] = k == 1 || k == 2 || k == L ? scratch(ctx, BTC) : NULL;
    }
    float *x = scratch(ctx, BTC);                   /* (B, T, C) */
    bert_forward(ctx, c, w, ids, mask, B, T, x, keep);
    if (taps) {
        tap(taps, "bert_hidden_states", keep[0], 4, (int64_t[]){L + 1, B, T, C});
        tap(taps, "bert_last_hidden", x, 3, (int64_t[]){B, T, C});
        float *first = scratch(ctx, B * C), *pooler = scratch(ctx, B * C);
        bert_pooler(c, w, x, B, T, first, pooler);
        tap(taps, "bert_pooler", pooler, 2, (int64_t[]){B, C});
    }
    const float *hs[3] = {keep[1], keep[2], keep[L]};
    float *pooled = scratch(ctx, B * C);            /* (B, C) */
    medclip_text_pool(hs, B, T, C, pooled);
    tap(taps, "text_pooled", pooled, 2, (int64_t[]){B, C});
    linear(out, pooled, w->proj, NULL, B, C, E, 0, NO_ACT);
}

/* ---- the same tower on the autograd tape ---- */

/* @book begin medclip-text-tape */
/* x (B, T, C) word embeddings → (B, E); see sc_medclip_text_forward. The
 * token type 0 row and the first T position rows are added here, then
 * LayerNorm, the post-LN blocks with the padding keys hidden, and
 * MedCLIP's pooling: hidden states 1, 2 and L, each a mean over all T
 * positions (padding included), their mean, the bias-free projection. */
static sc_tensor *medclip_text_tape(const tape *tp, const sc_bert_config *c, const bert_weights *w, int64_t E,
                                    sc_tensor *x, const int64_t *mask)
{
    SC_ASSERT(x->ndim == 3 && x->shape[2] == c->width && x->shape[1] <= c->max_positions,
              "BERT: embeddings must be (B, T <= %lld, %lld)", (long long)c->max_positions, (long long)c->width);
    sc_ctx *ctx = tp->ctx;
    int64_t B = x->shape[0], T = x->shape[1], C = c->width;
    sc_tensor *types = tape_weight(tp, w->type, 2, (int64_t[]){c->type_vocab, C}, "type_emb");
    sc_tensor *pos = tape_weight(tp, w->pos, 2, (int64_t[]){c->max_positions, C}, "pos_emb");
    x = sc_add(ctx, x, sc_reshape(ctx, sc_slice(ctx, types, 0, 0, 1), 1, &C));   /* + type 0, every token */
    x = sc_add(ctx, x, sc_slice(ctx, pos, 0, 0, T));
    x = layernorm_op(tp, x, w->ln_w, w->ln_b, C, c->eps);
    float *key_bias = NULL;                                                      /* (B, T) */
    if (mask) {
        key_bias = scratch(ctx, B * T);
        for (int64_t r = 0; r < B * T; r++) key_bias[r] = mask[r] ? 0.0f : -FLT_MAX;
    }
    block_dims d = bert_dims(c);
    sc_tensor *sum = NULL;                                                       /* (B, C) */
    for (int64_t l = 1; l <= c->layers; l++) {
        x = block_post_ln_tape(tp, x, &w->layers[l - 1], &d, key_bias);
        int uses = (l == 1) + (l == 2) + (l == c->layers);   /* L = 2: layer 2 twice */
        for (int u = 0; u < uses; u++) {
            sc_tensor *mean = sc_mean(ctx, x, 1);
            sum = sum ? sc_add(ctx, sum, mean) : mean;
        }
    }
    return linear_op(tp, sc_scale(ctx, sum, 1.0f / 3.0f), w->proj, NULL, E, C);
}
/* @book end medclip-text-tape */

/* ======================================================================== */
/* 7. Models: CLIP, MedCLIP, loading from files                              */
/* ======================================================================== */

struct sc_model {
    sc_model_config cfg;
    vit_weights vit;              /* CLIP */
    clip_text_weights text;       /* CLIP */
    swin_weights swin;            /* MedCLIP */
    bert_weights bert;            /* MedCLIP */
    const float *logit_scale;     /* the stored parameter (a log), one float */
    size_t weight_bytes;          /* float32 bytes of all parameters */
    sc_weights *file;             /* the mapped weight file, or NULL */
    sc_arena store;               /* block arrays; converted or random weights */
    /* Every parameter as a tensor over the storage the pointers above use,
     * in the order bound (7e), with its Hugging Face key. In a trainable
     * model (sc_model_new_trainable) they are sc_param_new tensors with
     * gradients; otherwise read-only views. */
    sc_tensor **params;           /* (n_params), malloc'ed */
    char **keys;                  /* (n_params), malloc'ed; strings in store */
    int n_params, cap_params;
    int trainable;
};

/* ---- 7a. configurations ---- */

int sc_model_config_preset(sc_model_config *cfg, const char *name)
{
    memset(cfg, 0, sizeof *cfg);
    if (!strcmp(name, "vit-l-14") || !strcmp(name, "vit-b-32")) {
        int large = name[4] == 'l';
        sc_vit_config v = {224, large ? 14 : 32, large ? 1024 : 768, large ? 24 : 12, large ? 16 : 12,
                           large ? 4096 : 3072, 1e-5f, SC_ACT_QUICK_GELU};
        sc_clip_text_config t = {49408, 77, large ? 768 : 512, 12, large ? 12 : 8, large ? 3072 : 2048,
                                 1e-5f, SC_ACT_QUICK_GELU, 2};
        cfg->kind = SC_MODEL_CLIP;
        cfg->embed_dim = large ? 768 : 512;
        cfg->vision = v;
        cfg->text = t;
        return 0;
    }
    if (!strcmp(name, "medclip")) {
        sc_swin_config s = {224, 4, 96, 7, 4, {2, 2, 6, 2}, {3, 6, 12, 24}, 4.0f, 1e-5f, SC_ACT_GELU};
        sc_bert_config b = {28996, 512, 2, 768, 12, 12, 3072, 1e-12f, SC_ACT_GELU};
        cfg->kind = SC_MODEL_MEDCLIP;
        cfg->embed_dim = 512;
        cfg->swin = s;
        cfg->bert = b;
        return 0;
    }
    return -1;
}

/* Dimensions must be positive, widths divisible by head counts, and small
 * enough that no size computed from them overflows. */
#define DIM_MAX ((int64_t)1 << 24)

static int dim_ok(int64_t d)
{
    return d > 0 && d <= DIM_MAX;
}

static sc_status heads_ok(const char *what, const char *tower, int64_t width, int64_t heads, sc_err *err)
{
    if (!dim_ok(width) || !dim_ok(heads) || width % heads)
        return sc_fail(err, SC_EFORMAT, "%s: %s width %lld is not a multiple of its %lld attention heads", what,
                       tower, (long long)width, (long long)heads);
    return SC_OK;
}

static sc_status check_clip_config(const sc_model_config *c, const char *what, sc_err *err)
{
    const sc_vit_config *v = &c->vision;
    const sc_clip_text_config *t = &c->text;
    if (!dim_ok(v->image_size) || !dim_ok(v->patch) || v->image_size % v->patch || v->image_size / v->patch > 1024)
        return sc_fail(err, SC_EFORMAT, "%s: image size %lld is not a multiple of the patch size %lld", what,
                       (long long)v->image_size, (long long)v->patch);
    if (!dim_ok(v->mlp) || !dim_ok(t->mlp) || !dim_ok(t->vocab) || !dim_ok(t->context) || v->layers < 0 ||
        v->layers > 1000 || t->layers < 0 || t->layers > 1000 || !(v->eps > 0) || !(t->eps > 0))
        return sc_fail(err, SC_EFORMAT, "%s: a CLIP dimension, layer count or epsilon is out of range", what);
    sc_status st = heads_ok(what, "vision", v->width, v->heads, err);
    return st ? st : heads_ok(what, "text", t->width, t->heads, err);
}

static sc_status check_medclip_config(const sc_model_config *c, const char *what, sc_err *err)
{
    const sc_swin_config *s = &c->swin;
    const sc_bert_config *b = &c->bert;
    if (s->n_stages < 1 || s->n_stages > SC_SWIN_MAX_STAGES || !dim_ok(s->patch) || !dim_ok(s->window) ||
        !dim_ok(s->embed_dim) || s->embed_dim << (s->n_stages - 1) > DIM_MAX || !(s->mlp_ratio > 0) ||
        s->mlp_ratio > 64 || !(s->eps > 0))
        return sc_fail(err, SC_EFORMAT, "%s: a Swin dimension, stage count or epsilon is out of range", what);
    for (int i = 0; i < s->n_stages; i++) {
        if (s->depths[i] < 1 || s->depths[i] > 1000)
            return sc_fail(err, SC_EFORMAT, "%s: Swin stage %d has %lld blocks", what, i, (long long)s->depths[i]);
        char tower[32];
        snprintf(tower, sizeof tower, "Swin stage %d", i);
        sc_status st = heads_ok(what, tower, swin_stage_width(s, i), s->heads[i], err);
        if (st) return st;
    }
    if (!dim_ok(b->vocab) || !dim_ok(b->max_positions) || !dim_ok(b->type_vocab) || !dim_ok(b->mlp) ||
        b->layers < 2 || b->layers > 1000 || !(b->eps > 0))
        return sc_fail(err, SC_EFORMAT,
                       "%s: a BERT dimension or epsilon is out of range (MedCLIP needs at least 2 layers)", what);
    return heads_ok(what, "BERT", b->width, b->heads, err);
}

static sc_status check_config(const sc_model_config *c, const char *what, sc_err *err)
{
    if (!dim_ok(c->embed_dim)) return sc_fail(err, SC_EFORMAT, "%s: projection dim %lld", what, (long long)c->embed_dim);
    return c->kind == SC_MODEL_CLIP ? check_clip_config(c, what, err) : check_medclip_config(c, what, err);
}

/* ---- 7b. config.json ---- */

/* Typed members of a JSON object; a member that is absent leaves *dst as
 * it is, a member of the wrong type is an error naming it. */
typedef struct {
    const char *what;    /* the file */
    const char *where;   /* "text_config" ... */
    sc_err *err;
    sc_status status;
} json_reader;

static const sc_json *json_member(json_reader *r, const sc_json *obj, const char *key, sc_json_type type)
{
    const sc_json *v = obj ? sc_json_get(obj, key) : NULL;
    if (!v || r->status) return NULL;
    if (v->type != type) {
        r->status = sc_fail(r->err, SC_EFORMAT, "%s: %s.%s has the wrong type", r->what, r->where, key);
        return NULL;
    }
    return v;
}

static void json_dim(json_reader *r, const sc_json *obj, const char *key, int64_t *dst)
{
    const sc_json *v = json_member(r, obj, key, SC_JSON_NUMBER);
    if (!v) return;
    if (!(v->number >= 0 && v->number <= (double)DIM_MAX) || v->number != floor(v->number)) {
        r->status = sc_fail(r->err, SC_EFORMAT, "%s: %s.%s = %g is not a size", r->what, r->where, key, v->number);
        return;
    }
    *dst = (int64_t)v->number;
}

static void json_token_id(json_reader *r, const sc_json *obj, const char *key, int64_t *dst)
{
    if (obj && sc_json_get(obj, key) && sc_json_get(obj, key)->type == SC_JSON_NULL) return;
    json_dim(r, obj, key, dst);
}

static void json_float(json_reader *r, const sc_json *obj, const char *key, float *dst)
{
    const sc_json *v = json_member(r, obj, key, SC_JSON_NUMBER);
    if (v) *dst = (float)v->number;
}

static void json_act(json_reader *r, const sc_json *obj, const char *key, sc_act *dst)
{
    const sc_json *v = json_member(r, obj, key, SC_JSON_STRING);
    if (!v) return;
    if (!strcmp(v->str, "quick_gelu"))
        *dst = SC_ACT_QUICK_GELU;
    else if (!strcmp(v->str, "gelu"))
        *dst = SC_ACT_GELU;
    else
        r->status = sc_fail(r->err, SC_EUNSUPPORTED, "%s: %s.%s = \"%s\" is not supported (quick_gelu or gelu)",
                            r->what, r->where, key, v->str);
}

/* A boolean the model needs to have one value ("qkv_bias": true). */
static void json_require_bool(json_reader *r, const sc_json *obj, const char *key, int needed)
{
    const sc_json *v = json_member(r, obj, key, SC_JSON_BOOL);
    if (v && v->boolean != needed)
        r->status = sc_fail(r->err, SC_EUNSUPPORTED, "%s: %s.%s = %s is not supported", r->what, r->where, key,
                            v->boolean ? "true" : "false");
}

static int json_dims(json_reader *r, const sc_json *obj, const char *key, int64_t *dst, int max)
{
    const sc_json *v = json_member(r, obj, key, SC_JSON_ARRAY);
    if (!v) return -1;
    if (v->len < 1 || v->len > (size_t)max) {
        r->status = sc_fail(r->err, SC_EFORMAT, "%s: %s.%s has %zu entries (1 to %d)", r->what, r->where, key,
                            v->len, max);
        return -1;
    }
    for (size_t i = 0; i < v->len; i++) {
        const sc_json *e = v->items[i];
        if (e->type != SC_JSON_NUMBER || !(e->number >= 1 && e->number <= 1000) || e->number != floor(e->number)) {
            r->status = sc_fail(r->err, SC_EFORMAT, "%s: %s.%s[%zu] is not a count", r->what, r->where, key, i);
            return -1;
        }
        dst[i] = (int64_t)e->number;
    }
    return (int)v->len;
}

/* A sub-config: "text_config", or "text_config_dict" in old files. */
static const sc_json *json_sub(json_reader *r, const sc_json *root, const char *key)
{
    char old[64];
    snprintf(old, sizeof old, "%s_dict", key);
    const sc_json *v = json_member(r, root, key, SC_JSON_OBJECT);
    if (!v) v = json_member(r, root, old, SC_JSON_OBJECT);
    r->where = key;
    return v;
}

static void clip_from_json(json_reader *r, const sc_json *root, sc_model_config *c)
{
    const sc_json *t = json_sub(r, root, "text_config");
    json_dim(r, t, "vocab_size", &c->text.vocab);
    json_dim(r, t, "hidden_size", &c->text.width);
    json_dim(r, t, "intermediate_size", &c->text.mlp);
    json_dim(r, t, "num_attention_heads", &c->text.heads);
    json_dim(r, t, "num_hidden_layers", &c->text.layers);
    json_dim(r, t, "max_position_embeddings", &c->text.context);
    json_float(r, t, "layer_norm_eps", &c->text.eps);
    json_act(r, t, "hidden_act", &c->text.act);
    json_token_id(r, t, "eos_token_id", &c->text.eos_token_id);
    const sc_json *v = json_sub(r, root, "vision_config");
    json_dim(r, v, "hidden_size", &c->vision.width);
    json_dim(r, v, "intermediate_size", &c->vision.mlp);
    json_dim(r, v, "num_attention_heads", &c->vision.heads);
    json_dim(r, v, "num_hidden_layers", &c->vision.layers);
    json_dim(r, v, "image_size", &c->vision.image_size);
    json_dim(r, v, "patch_size", &c->vision.patch);
    json_float(r, v, "layer_norm_eps", &c->vision.eps);
    json_act(r, v, "hidden_act", &c->vision.act);
    int64_t channels = 3;
    json_dim(r, v, "num_channels", &channels);
    if (channels != 3 && !r->status)
        r->status = sc_fail(r->err, SC_EUNSUPPORTED, "%s: vision_config.num_channels = %lld (3 supported)", r->what,
                            (long long)channels);
}

static void medclip_from_json(json_reader *r, const sc_json *root, sc_model_config *c)
{
    sc_swin_config *s = &c->swin;
    const sc_json *v = json_sub(r, root, "vision_config");
    json_dim(r, v, "image_size", &s->image_size);
    json_dim(r, v, "patch_size", &s->patch);
    json_dim(r, v, "embed_dim", &s->embed_dim);
    json_dim(r, v, "window_size", &s->window);
    int64_t depths[SC_SWIN_MAX_STAGES], heads[SC_SWIN_MAX_STAGES];
    int nd = json_dims(r, v, "depths", depths, SC_SWIN_MAX_STAGES);
    int nh = json_dims(r, v, "num_heads", heads, SC_SWIN_MAX_STAGES);
    if (nd > 0 && nh > 0 && nd != nh && !r->status)
        r->status = sc_fail(r->err, SC_EFORMAT, "%s: vision_config has %d depths but %d head counts", r->what, nd, nh);
    if (nd > 0) {
        s->n_stages = nd;
        memcpy(s->depths, depths, sizeof(int64_t) * (size_t)nd);
    }
    if (nh > 0) memcpy(s->heads, heads, sizeof(int64_t) * (size_t)nh);
    json_float(r, v, "mlp_ratio", &s->mlp_ratio);
    json_float(r, v, "layer_norm_eps", &s->eps);
    json_act(r, v, "hidden_act", &s->act);
    json_require_bool(r, v, "qkv_bias", 1);
    json_require_bool(r, v, "use_absolute_embeddings", 0);
    sc_bert_config *b = &c->bert;
    const sc_json *t = json_sub(r, root, "text_config");
    json_dim(r, t, "vocab_size", &b->vocab);
    json_dim(r, t, "hidden_size", &b->width);
    json_dim(r, t, "num_hidden_layers", &b->layers);
    json_dim(r, t, "num_attention_heads", &b->heads);
    json_dim(r, t, "intermediate_size", &b->mlp);
    json_dim(r, t, "max_position_embeddings", &b->max_positions);
    json_dim(r, t, "type_vocab_size", &b->type_vocab);
    json_float(r, t, "layer_norm_eps", &b->eps);
    json_act(r, t, "hidden_act", &b->act);
    const char *pe = sc_json_get_string(t, "position_embedding_type", "absolute");
    if (strcmp(pe, "absolute") && !r->status)
        r->status = sc_fail(r->err, SC_EUNSUPPORTED, "%s: text_config.position_embedding_type = \"%s\" is not supported",
                            r->what, pe);
}

/* Overlay config.json on c (which holds what the shapes said). */
static sc_status config_apply_json(sc_model_config *c, const char *path, sc_err *err)
{
    sc_json_doc doc;
    sc_status st = sc_json_load(&doc, path, (size_t)1 << 20, err);
    if (st) return st;
    json_reader r = {path, "config", err, SC_OK};
    if (doc.root->type != SC_JSON_OBJECT) r.status = sc_fail(err, SC_EFORMAT, "%s: not a JSON object", path);
    const char *type = r.status ? "" : sc_json_get_string(doc.root, "model_type", "");
    const char *want = c->kind == SC_MODEL_CLIP ? "clip" : "medclip";
    if (!r.status && *type && strcmp(type, want))
        r.status = sc_fail(err, SC_EFORMAT, "%s: model_type is \"%s\" but the weights are a %s model", path, type,
                           want);
    json_dim(&r, doc.root, "projection_dim", &c->embed_dim);
    if (c->kind == SC_MODEL_CLIP)
        clip_from_json(&r, doc.root, c);
    else
        medclip_from_json(&r, doc.root, c);
    sc_json_free(&doc);
    return r.status;
}

/* ---- 7c. weight files: layouts and the OpenAI names ---- */

typedef enum { LAYOUT_HF_CLIP, LAYOUT_OPENAI_CLIP, LAYOUT_MEDCLIP } layout;

/* A tensor as the model asks for it: its Hugging Face name and a view of
 * its elements, which for OpenAI files may be a third of a file tensor
 * (in_proj_weight holds q, k and v) or its transpose (proj). */
typedef enum { AS_IS, TRANSPOSED, THIRD_0, THIRD_1, THIRD_2 } view_kind;

typedef struct {
    char *name;           /* Hugging Face key */
    sc_weight view;
    view_kind how;
    int source;           /* index of the file tensor (sc_weights_at) */
    int used;
} record;

/* @book begin openai-names */
/* OpenAI CLIP keys and their Hugging Face equivalents (transformers'
 * convert_clip_original_pytorch_to_hf.py). Projections are stored as
 * x @ W in OpenAI files and as Linear weights Wᵀ in Hugging Face ones;
 * the packed attention input projection holds q, k, v as row thirds. */
typedef struct {
    const char *openai, *hf;
    view_kind how;
} name_pair;

static const name_pair openai_names[] = {
    {"visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight", AS_IS},
    {"visual.class_embedding", "vision_model.embeddings.class_embedding", AS_IS},
    {"visual.positional_embedding", "vision_model.embeddings.position_embedding.weight", AS_IS},
    {"visual.ln_pre.weight", "vision_model.pre_layrnorm.weight", AS_IS},   /* sic */
    {"visual.ln_pre.bias", "vision_model.pre_layrnorm.bias", AS_IS},
    {"visual.ln_post.weight", "vision_model.post_layernorm.weight", AS_IS},
    {"visual.ln_post.bias", "vision_model.post_layernorm.bias", AS_IS},
    {"visual.proj", "visual_projection.weight", TRANSPOSED},
    {"token_embedding.weight", "text_model.embeddings.token_embedding.weight", AS_IS},
    {"positional_embedding", "text_model.embeddings.position_embedding.weight", AS_IS},
    {"ln_final.weight", "text_model.final_layer_norm.weight", AS_IS},
    {"ln_final.bias", "text_model.final_layer_norm.bias", AS_IS},
    {"text_projection", "text_projection.weight", TRANSPOSED},
    {"logit_scale", "logit_scale", AS_IS},
};

/* Block i: "visual.transformer.resblocks.i." + key ↔
 * "vision_model.encoder.layers.i." + key (text: "transformer.resblocks."
 * ↔ "text_model.encoder.layers."). */
static const name_pair openai_towers[] = {
    {"visual.transformer.resblocks.", "vision_model.encoder.layers.", AS_IS},
    {"transformer.resblocks.", "text_model.encoder.layers.", AS_IS},
};

static const name_pair openai_block_names[] = {
    {"ln_1.weight", "layer_norm1.weight", AS_IS},
    {"ln_1.bias", "layer_norm1.bias", AS_IS},
    {"attn.in_proj_weight", "self_attn.q_proj.weight", THIRD_0},
    {"attn.in_proj_weight", "self_attn.k_proj.weight", THIRD_1},
    {"attn.in_proj_weight", "self_attn.v_proj.weight", THIRD_2},
    {"attn.in_proj_bias", "self_attn.q_proj.bias", THIRD_0},
    {"attn.in_proj_bias", "self_attn.k_proj.bias", THIRD_1},
    {"attn.in_proj_bias", "self_attn.v_proj.bias", THIRD_2},
    {"attn.out_proj.weight", "self_attn.out_proj.weight", AS_IS},
    {"attn.out_proj.bias", "self_attn.out_proj.bias", AS_IS},
    {"ln_2.weight", "layer_norm2.weight", AS_IS},
    {"ln_2.bias", "layer_norm2.bias", AS_IS},
    {"mlp.c_fc.weight", "mlp.fc1.weight", AS_IS},
    {"mlp.c_fc.bias", "mlp.fc1.bias", AS_IS},
    {"mlp.c_proj.weight", "mlp.fc2.weight", AS_IS},
    {"mlp.c_proj.bias", "mlp.fc2.bias", AS_IS},
};
/* @book end openai-names */

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The view of a file tensor that `how` selects (the checks that make it
 * valid happened in records_build). */
static sc_weight view_of(const sc_weight *t, view_kind how)
{
    sc_weight v = *t;
    if (how == TRANSPOSED) {
        v.shape[0] = t->shape[1];
        v.shape[1] = t->shape[0];
        v.stride[0] = t->stride[1];
        v.stride[1] = t->stride[0];
    } else if (how != AS_IS) {
        int64_t third = t->shape[0] / 3;
        v.shape[0] = third;
        v.numel = t->numel / 3;
        v.data = t->data + sc_dtype_size(t->dtype) * (size_t)((how - THIRD_0) * third * t->stride[0]);
    }
    return v;
}

typedef struct {
    record *recs;
    int n, cap;
    sc_arena names;
} record_table;

static sc_status records_add(record_table *tb, const char *name, const sc_weight *t, view_kind how, int source,
                             const char *what, sc_err *err)
{
    if (how == TRANSPOSED && t->ndim != 2)
        return sc_fail(err, SC_EFORMAT, "%s: tensor '%s' has %d dims, expected a matrix", what, t->name, t->ndim);
    if (how >= THIRD_0 && (t->ndim < 1 || t->shape[0] % 3))
        return sc_fail(err, SC_EFORMAT, "%s: tensor '%s' does not split into q, k, v thirds", what, t->name);
    if (tb->n == tb->cap) {
        int cap = tb->cap ? 2 * tb->cap : 256;
        record *r = realloc(tb->recs, sizeof *r * (size_t)cap);
        if (!r) return sc_fail(err, SC_ENOMEM, "%s: out of memory for the tensor table", what);
        tb->recs = r;
        tb->cap = cap;
    }
    size_t len = strlen(name) + 1;
    char *copy = sc_arena_alloc(&tb->names, len);
    if (!copy) return sc_fail(err, SC_ENOMEM, "%s: out of memory for the tensor table", what);
    memcpy(copy, name, len);
    record *r = &tb->recs[tb->n++];
    r->name = copy;
    r->view = view_of(t, how);
    r->view.name = copy;
    r->how = how;
    r->source = source;
    r->used = 0;
    return SC_OK;
}

/* Hugging Face name(s) of an OpenAI key: 0 to 3 (q, k, v) pairs. A key
 * not in the tables keeps its name (and is then reported as unknown). */
static int openai_to_hf(const char *key, char out[3][256], view_kind how[3])
{
    for (size_t i = 0; i < N_OF(openai_names); i++)
        if (!strcmp(key, openai_names[i].openai)) {
            snprintf(out[0], 256, "%s", openai_names[i].hf);
            how[0] = openai_names[i].how;
            return 1;
        }
    for (size_t t = 0; t < N_OF(openai_towers); t++) {
        if (!starts_with(key, openai_towers[t].openai)) continue;
        const char *rest = key + strlen(openai_towers[t].openai);
        char *end;
        long layer = strtol(rest, &end, 10);
        if (end == rest || *end != '.' || layer < 0 || layer > 100000) break;
        int n = 0;
        for (size_t k = 0; k < N_OF(openai_block_names); k++)
            if (!strcmp(end + 1, openai_block_names[k].openai)) {
                snprintf(out[n], 256, "%s%ld.%s", openai_towers[t].hf, layer, openai_block_names[k].hf);
                how[n++] = openai_block_names[k].how;
            }
        if (n) return n;
        break;
    }
    snprintf(out[0], 256, "%s", key);
    how[0] = AS_IS;
    return 1;
}

/* The OpenAI key holding a Hugging Face name (for messages). */
static void hf_to_openai(const char *hf, char out[256])
{
    snprintf(out, 256, "%s", hf);
    for (size_t i = 0; i < N_OF(openai_names); i++)
        if (!strcmp(hf, openai_names[i].hf)) {
            snprintf(out, 256, "%s", openai_names[i].openai);
            return;
        }
    for (size_t t = 0; t < N_OF(openai_towers); t++) {
        if (!starts_with(hf, openai_towers[t].hf)) continue;
        const char *rest = hf + strlen(openai_towers[t].hf);
        char *end;
        long layer = strtol(rest, &end, 10);
        if (end == rest || *end != '.') return;
        for (size_t k = 0; k < N_OF(openai_block_names); k++)
            if (!strcmp(end + 1, openai_block_names[k].hf)) {
                snprintf(out, 256, "%s%ld.%s", openai_towers[t].openai, layer, openai_block_names[k].openai);
                return;
            }
    }
}

static int record_cmp(const void *a, const void *b)
{
    return strcmp(((const record *)a)->name, ((const record *)b)->name);
}

/* Every file tensor as records with Hugging Face names, sorted. */
static sc_status records_build(record_table *tb, const sc_weights *w, layout lay, sc_err *err)
{
    const char *what = sc_weights_path(w);
    for (int i = 0; i < sc_weights_count(w); i++) {
        const sc_weight *t = sc_weights_at(w, i);
        char names[3][256];
        view_kind how[3] = {AS_IS, AS_IS, AS_IS};
        int n = 1;
        if (lay == LAYOUT_OPENAI_CLIP)
            n = openai_to_hf(t->name, names, how);
        else
            snprintf(names[0], 256, "%s", t->name);
        for (int k = 0; k < n; k++) {
            sc_status st = records_add(tb, names[k], t, how[k], i, what, err);
            if (st) return st;
        }
    }
    qsort(tb->recs, (size_t)tb->n, sizeof(record), record_cmp);
    for (int i = 1; i < tb->n; i++)
        if (!strcmp(tb->recs[i].name, tb->recs[i - 1].name))
            return sc_fail(err, SC_EFORMAT, "%s: tensor '%s' appears twice", what, tb->recs[i].name);
    return SC_OK;
}

static record *record_find(const record_table *tb, const char *name)
{
    record key;
    key.name = (char *)name;
    return bsearch(&key, tb->recs, (size_t)tb->n, sizeof(record), record_cmp);
}

static sc_status detect_layout(const sc_weights *w, layout *out, sc_err *err)
{
    if (sc_weights_find(w, "visual.conv1.weight"))
        *out = LAYOUT_OPENAI_CLIP;
    else if (sc_weights_find(w, "vision_model.embeddings.patch_embedding.weight"))
        *out = LAYOUT_HF_CLIP;
    else if (sc_weights_find(w, "vision_model.model.embeddings.patch_embeddings.projection.weight"))
        *out = LAYOUT_MEDCLIP;
    else if (sc_weights_find(w, "vision_model.model.conv1.weight") || sc_weights_find(w, "visual.layer1.0.conv1.weight"))
        return sc_fail(err, SC_EUNSUPPORTED,
                       "%s: a ResNet image encoder (MedCLIP's ResNet-50 or a CLIP RN model) is not supported; "
                       "use MedCLIP's Swin (ViT) checkpoint or a CLIP ViT",
                       sc_weights_path(w));
    else
        return sc_fail(err, SC_EFORMAT,
                       "%s: not a CLIP or MedCLIP checkpoint (none of visual.conv1.weight, "
                       "vision_model.embeddings.patch_embedding.weight, "
                       "vision_model.model.embeddings.patch_embeddings.projection.weight)",
                       sc_weights_path(w));
    return SC_OK;
}

/* ---- 7d. the architecture from tensor shapes ---- */

/* Shapes are read only where present; a missing tensor is reported later,
 * by name, when the parameters are bound. */
static int64_t dim_of(const record_table *tb, const char *name, int axis)
{
    const record *r = record_find(tb, name);
    return r && axis < r->view.ndim ? r->view.shape[axis] : 0;
}

/* Number of consecutive i = 0, 1, ... for which the formatted name exists. */
static int64_t count_of(const record_table *tb, const char *fmt, const char *prefix, int64_t outer)
{
    char name[256];
    int64_t n = 0;
    for (;;) {
        if (outer >= 0)
            snprintf(name, sizeof name, fmt, prefix, (long long)outer, (long long)n);
        else
            snprintf(name, sizeof name, fmt, prefix, (long long)n);
        if (!record_find(tb, name) || n >= 1000) return n;
        n++;
    }
}

static int64_t isqrt(int64_t n)
{
    if (n <= 0) return 0;   /* a missing tensor: reported when it is bound */
    int64_t r = (int64_t)sqrt((double)n);
    while (r * r > n) r--;
    while ((r + 1) * (r + 1) <= n) r++;
    return r;
}

/* As OpenAI's build_model: widths, depths and sizes from shapes, heads
 * = width / 64; everything else at CLIP's defaults. */
static void clip_from_shapes(const record_table *tb, sc_model_config *c)
{
    sc_vit_config *v = &c->vision;
    sc_clip_text_config *t = &c->text;
    c->kind = SC_MODEL_CLIP;
    v->width = dim_of(tb, "vision_model.embeddings.patch_embedding.weight", 0);
    v->patch = dim_of(tb, "vision_model.embeddings.patch_embedding.weight", 3);
    v->image_size = v->patch * isqrt(dim_of(tb, "vision_model.embeddings.position_embedding.weight", 0) - 1);
    v->layers = count_of(tb, "%s%lld.self_attn.q_proj.weight", "vision_model.encoder.layers.", -1);
    v->mlp = dim_of(tb, "vision_model.encoder.layers.0.mlp.fc1.weight", 0);
    v->heads = v->width >= 64 ? v->width / 64 : 1;
    v->eps = 1e-5f;
    v->act = SC_ACT_QUICK_GELU;
    t->vocab = dim_of(tb, "text_model.embeddings.token_embedding.weight", 0);
    t->width = dim_of(tb, "text_model.embeddings.token_embedding.weight", 1);
    t->context = dim_of(tb, "text_model.embeddings.position_embedding.weight", 0);
    t->layers = count_of(tb, "%s%lld.self_attn.q_proj.weight", "text_model.encoder.layers.", -1);
    t->mlp = dim_of(tb, "text_model.encoder.layers.0.mlp.fc1.weight", 0);
    t->heads = t->width >= 64 ? t->width / 64 : 1;
    t->eps = 1e-5f;
    t->act = SC_ACT_QUICK_GELU;
    t->eos_token_id = -1;   /* unknown: argmax, as OpenAI */
    c->embed_dim = dim_of(tb, "text_projection.weight", 0);
}

/* MedCLIP: Swin-T and BERT-base shapes; heads of BERT = width / 64. */
static void medclip_from_shapes(const record_table *tb, sc_model_config *c)
{
    const char *sw = "vision_model.model.encoder.layers.";
    sc_swin_config *s = &c->swin;
    sc_bert_config *b = &c->bert;
    c->kind = SC_MODEL_MEDCLIP;
    s->image_size = 224;
    s->embed_dim = dim_of(tb, "vision_model.model.embeddings.patch_embeddings.projection.weight", 0);
    s->patch = dim_of(tb, "vision_model.model.embeddings.patch_embeddings.projection.weight", 3);
    int64_t stages = count_of(tb, "%s%lld.blocks.0.layernorm_before.weight", sw, -1);
    s->n_stages = (int)(stages < SC_SWIN_MAX_STAGES ? stages : SC_SWIN_MAX_STAGES);
    for (int i = 0; i < s->n_stages; i++) {
        char name[256];
        s->depths[i] = count_of(tb, "%s%lld.blocks.%lld.layernorm_before.weight", sw, i);
        snprintf(name, sizeof name, "%s%d.blocks.0.attention.self.relative_position_bias_table", sw, i);
        s->heads[i] = dim_of(tb, name, 1);
        if (i == 0) s->window = (isqrt(dim_of(tb, name, 0)) + 1) / 2;
    }
    int64_t fc1 = dim_of(tb, "vision_model.model.encoder.layers.0.blocks.0.intermediate.dense.weight", 0);
    s->mlp_ratio = s->embed_dim ? (float)fc1 / (float)s->embed_dim : 0.0f;
    s->eps = 1e-5f;
    s->act = SC_ACT_GELU;
    b->vocab = dim_of(tb, "text_model.model.embeddings.word_embeddings.weight", 0);
    b->width = dim_of(tb, "text_model.model.embeddings.word_embeddings.weight", 1);
    b->max_positions = dim_of(tb, "text_model.model.embeddings.position_embeddings.weight", 0);
    b->type_vocab = dim_of(tb, "text_model.model.embeddings.token_type_embeddings.weight", 0);
    b->layers = count_of(tb, "%s%lld.attention.self.query.weight", "text_model.model.encoder.layer.", -1);
    b->mlp = dim_of(tb, "text_model.model.encoder.layer.0.intermediate.dense.weight", 0);
    b->heads = b->width >= 64 ? b->width / 64 : 1;
    b->eps = 1e-12f;
    b->act = SC_ACT_GELU;
    c->embed_dim = dim_of(tb, "vision_model.projection_head.weight", 0);
}

/* ---- 7e. binding parameters ---- */

/* Parameters come from the records of a file, or from a random generator
 * when there is none. The first failure sticks; later binds do nothing. */
typedef enum { INIT_MATRIX, INIT_BIAS, INIT_NORM, INIT_EMBED, INIT_LOGIT } init_kind;

typedef struct {
    sc_model *m;
    record_table *tb;        /* NULL: random weights */
    layout lay;
    sc_rng rng;
    const char *what;
    sc_err *err;
    sc_status status;
} binder;

static void shape_text(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
}

/* @book begin random-init */
/* Random weights, uniform: matrices in ±1/√fan_in (PyTorch's default for
 * Linear and Conv2d, fan_in = elements per output row), embeddings (class,
 * positions) in ±0.1, the logit scale at ln(1/0.07) as CLIP starts. A
 * model to be trained starts its LayerNorms at the identity and its biases
 * at 0, as PyTorch does; a model for tests gets norms and biases jittered
 * by ±0.1 instead, so that a wrong pairing of weights cannot hide. */
static float *random_param(binder *b, init_kind init, int ndim, const int64_t *shape, size_t n)
{
    float *p = sc_arena_alloc(&b->m->store, sizeof(float) * n);
    if (!p) {
        b->status = sc_fail(b->err, SC_ENOMEM, "random weights: out of memory");
        return NULL;
    }
    int jitter = !b->m->trainable;
    float a = init == INIT_MATRIX ? 1.0f / sqrtf((float)n / (float)(ndim ? shape[0] : 1)) : 0.1f;
    for (size_t i = 0; i < n; i++) {
        float u = 2.0f * sc_rng_uniform(&b->rng) - 1.0f;
        switch (init) {
        case INIT_NORM: p[i] = 1.0f + (jitter ? 0.1f * u : 0.0f); break;
        case INIT_BIAS: p[i] = jitter ? a * u : 0.0f; break;
        case INIT_LOGIT: p[i] = 2.6592600f; break;
        case INIT_MATRIX:
        case INIT_EMBED: p[i] = a * u; break;
        }
    }
    return p;
}
/* @book end random-init */

/* The error for a tensor of the wrong shape, in the file's own terms. */
static void shape_mismatch(binder *b, const record *r, int ndim, const int64_t *shape)
{
    const sc_weight *src = sc_weights_at(b->m->file, r->source);
    int64_t want[SC_MAX_DIMS];
    memcpy(want, shape, sizeof(int64_t) * (size_t)ndim);
    if (r->how == TRANSPOSED) {
        want[0] = shape[1];
        want[1] = shape[0];
    } else if (r->how != AS_IS) {
        want[0] = 3 * shape[0];
    }
    char got_s[96], want_s[96];
    shape_text(got_s, sizeof got_s, src->ndim, src->shape);
    shape_text(want_s, sizeof want_s, ndim, want);
    b->status = sc_fail(b->err, SC_ESHAPE, "%s: tensor '%s' has shape %s but the model expects %s", b->what,
                        src->name, got_s, want_s);
}

/* The tensor `name` of the file, checked against the shape the model
 * expects; float32 in place when the file allows, else converted. */
static const float *file_param(binder *b, const char *name, int ndim, const int64_t *shape, size_t n)
{
    record *r = record_find(b->tb, name);
    if (!r) {
        char shown[256];
        if (b->lay == LAYOUT_OPENAI_CLIP)
            hf_to_openai(name, shown);
        else
            snprintf(shown, sizeof shown, "%s", name);
        b->status = sc_fail(b->err, SC_EFORMAT, "%s: tensor '%s' is missing", b->what, shown);
        return NULL;
    }
    int same = r->view.ndim == ndim || (ndim == 0 && r->view.ndim == 1 && r->view.shape[0] == 1);
    for (int i = 0; same && i < ndim; i++) same = r->view.shape[i] == shape[i];
    if (!same) {
        shape_mismatch(b, r, ndim, shape);
        return NULL;
    }
    r->used = 1;
    const float *p = sc_weight_f32_data(&r->view);
    if (p) return p;
    float *copy = sc_arena_alloc(&b->m->store, sizeof(float) * n);
    if (!copy) {
        b->status = sc_fail(b->err, SC_ENOMEM, "%s: out of memory converting '%s' to float32", b->what, name);
        return NULL;
    }
    sc_weight_to_f32(&r->view, copy);
    return copy;
}

/* Enter a bound parameter into the model's table under its key: as a
 * trainable tensor holding a copy of p (the model's pointers then lead to
 * the copy), or as a view of p. Returns the storage to use. */
static const float *add_param(binder *b, const char *name, int ndim, const int64_t *shape, const float *p, size_t n)
{
    sc_model *m = b->m;
    if (m->n_params == m->cap_params) {
        int cap = m->cap_params ? 2 * m->cap_params : 64;
        sc_tensor **params = realloc(m->params, sizeof *params * (size_t)cap);
        if (params) m->params = params;
        char **keys = realloc(m->keys, sizeof *keys * (size_t)cap);
        if (keys) m->keys = keys;
        if (!params || !keys) {
            b->status = sc_fail(b->err, SC_ENOMEM, "%s: out of memory", b->what);
            return NULL;
        }
        m->cap_params = cap;
    }
    size_t len = strlen(name);
    char *key = sc_arena_alloc(&m->store, len + 1);
    sc_tensor *t = NULL;
    if (key && m->trainable) {
        t = sc_tensor_try_new(&m->store, ndim, shape, name);
        float *grad = sc_arena_calloc(&m->store, n, sizeof(float));
        if (t && grad) {
            memcpy(t->data, p, sizeof(float) * n);
            t->grad = grad;
            t->requires_grad = 1;
        } else {
            t = NULL;
        }
    } else if (key) {
        t = sc_tensor_wrap(&m->store, (float *)p, ndim, shape, name);
    }
    if (!t) {
        b->status = sc_fail(b->err, SC_ENOMEM, "%s: out of memory", b->what);
        return NULL;
    }
    memcpy(key, name, len + 1);
    m->keys[m->n_params] = key;
    m->params[m->n_params++] = t;
    return t->data;
}

/* The parameter `name` (Hugging Face key) of the given shape, from the
 * file or drawn at random, entered into the model's table. ndim 0 is a
 * scalar, also accepted as shape (1) in a file. */
static const float *bind(binder *b, init_kind init, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (b->status) return NULL;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    size_t n = 1, bytes = 0;
    int fits = 1;
    for (int i = 0; i < ndim; i++) fits = fits && sc_mul_ok(n, (size_t)shape[i], &n);
    if (!fits || !sc_mul_ok(n, sizeof(float), &bytes)) {
        b->status = sc_fail(b->err, SC_ENOMEM, "%s: tensor '%s' would be too large", b->what, name);
        return NULL;
    }
    b->m->weight_bytes += bytes;
    const float *p = b->tb ? file_param(b, name, ndim, shape, n) : random_param(b, init, ndim, shape, n);
    return p ? add_param(b, name, ndim, shape, p, n) : NULL;
}

#define SHAPE1(a) 1, (int64_t[]){a}
#define SHAPE2(a, b) 2, (int64_t[]){a, b}

/* @book begin block-names */
/* One table for the parameters of a transformer block: the field, its key
 * in each Hugging Face layout (CLIP, BERT, Swin), its shape and its
 * random initialisation. */
typedef enum { KEYS_CLIP, KEYS_BERT, KEYS_SWIN } block_keys;
typedef enum { SH_C, SH_CC, SH_F, SH_FC, SH_CF } block_shape;

static const struct {
    size_t field;
    const char *key[3];
    block_shape shape;
    init_kind init;
} block_params[] = {
    {offsetof(block_weights, ln_attn_w), {"layer_norm1.weight", "attention.output.LayerNorm.weight",
                                          "layernorm_before.weight"}, SH_C, INIT_NORM},
    {offsetof(block_weights, ln_attn_b), {"layer_norm1.bias", "attention.output.LayerNorm.bias",
                                          "layernorm_before.bias"}, SH_C, INIT_BIAS},
    {offsetof(block_weights, q_w), {"self_attn.q_proj.weight", "attention.self.query.weight",
                                    "attention.self.query.weight"}, SH_CC, INIT_MATRIX},
    {offsetof(block_weights, q_b), {"self_attn.q_proj.bias", "attention.self.query.bias",
                                    "attention.self.query.bias"}, SH_C, INIT_BIAS},
    {offsetof(block_weights, k_w), {"self_attn.k_proj.weight", "attention.self.key.weight",
                                    "attention.self.key.weight"}, SH_CC, INIT_MATRIX},
    {offsetof(block_weights, k_b), {"self_attn.k_proj.bias", "attention.self.key.bias",
                                    "attention.self.key.bias"}, SH_C, INIT_BIAS},
    {offsetof(block_weights, v_w), {"self_attn.v_proj.weight", "attention.self.value.weight",
                                    "attention.self.value.weight"}, SH_CC, INIT_MATRIX},
    {offsetof(block_weights, v_b), {"self_attn.v_proj.bias", "attention.self.value.bias",
                                    "attention.self.value.bias"}, SH_C, INIT_BIAS},
    {offsetof(block_weights, o_w), {"self_attn.out_proj.weight", "attention.output.dense.weight",
                                    "attention.output.dense.weight"}, SH_CC, INIT_MATRIX},
    {offsetof(block_weights, o_b), {"self_attn.out_proj.bias", "attention.output.dense.bias",
                                    "attention.output.dense.bias"}, SH_C, INIT_BIAS},
    {offsetof(block_weights, ln_mlp_w), {"layer_norm2.weight", "output.LayerNorm.weight",
                                         "layernorm_after.weight"}, SH_C, INIT_NORM},
    {offsetof(block_weights, ln_mlp_b), {"layer_norm2.bias", "output.LayerNorm.bias",
                                         "layernorm_after.bias"}, SH_C, INIT_BIAS},
    {offsetof(block_weights, fc1_w), {"mlp.fc1.weight", "intermediate.dense.weight",
                                      "intermediate.dense.weight"}, SH_FC, INIT_MATRIX},
    {offsetof(block_weights, fc1_b), {"mlp.fc1.bias", "intermediate.dense.bias",
                                      "intermediate.dense.bias"}, SH_F, INIT_BIAS},
    {offsetof(block_weights, fc2_w), {"mlp.fc2.weight", "output.dense.weight",
                                      "output.dense.weight"}, SH_CF, INIT_MATRIX},
    {offsetof(block_weights, fc2_b), {"mlp.fc2.bias", "output.dense.bias",
                                      "output.dense.bias"}, SH_C, INIT_BIAS},
};
/* @book end block-names */

static void bind_block(binder *b, block_weights *w, block_keys keys, const char *prefix, const block_dims *d)
{
    for (size_t i = 0; i < N_OF(block_params); i++) {
        int64_t C = d->C, F = d->F;
        int64_t shapes[5][2] = {{C, 0}, {C, C}, {F, 0}, {F, C}, {C, F}};
        block_shape s = block_params[i].shape;
        int ndim = s == SH_C || s == SH_F ? 1 : 2;
        const float **field = (const float **)((char *)w + block_params[i].field);
        *field = bind(b, block_params[i].init, ndim, shapes[s], "%s%s", prefix, block_params[i].key[keys]);
    }
}

static block_weights *bind_blocks(binder *b, int64_t L, block_keys keys, const char *prefix_fmt,
                                  const block_dims *d)
{
    block_weights *blocks = sc_arena_calloc(&b->m->store, (size_t)(L > 0 ? L : 1), sizeof(block_weights));
    if (!blocks) {
        if (!b->status) b->status = sc_fail(b->err, SC_ENOMEM, "%s: out of memory", b->what);
        return NULL;
    }
    for (int64_t l = 0; l < L; l++) {
        char prefix[128];
        snprintf(prefix, sizeof prefix, prefix_fmt, (long long)l);
        bind_block(b, &blocks[l], keys, prefix, d);
    }
    return blocks;
}

static void bind_clip(binder *b, sc_model *m)
{
    const sc_vit_config *v = &m->cfg.vision;
    const sc_clip_text_config *t = &m->cfg.text;
    int64_t C = v->width, P = v->patch, G = v->image_size / P, E = m->cfg.embed_dim;
    vit_weights *vw = &m->vit;
    vw->patch_w = bind(b, INIT_MATRIX, 4, (int64_t[]){C, 3, P, P}, "vision_model.embeddings.patch_embedding.weight");
    vw->class_emb = bind(b, INIT_EMBED, SHAPE1(C), "vision_model.embeddings.class_embedding");
    vw->pos_emb = bind(b, INIT_EMBED, SHAPE2(1 + G * G, C), "vision_model.embeddings.position_embedding.weight");
    vw->ln_pre_w = bind(b, INIT_NORM, SHAPE1(C), "vision_model.pre_layrnorm.weight");
    vw->ln_pre_b = bind(b, INIT_BIAS, SHAPE1(C), "vision_model.pre_layrnorm.bias");
    block_dims vd = vit_dims(v);
    vw->layers = bind_blocks(b, v->layers, KEYS_CLIP, "vision_model.encoder.layers.%lld.", &vd);
    vw->ln_post_w = bind(b, INIT_NORM, SHAPE1(C), "vision_model.post_layernorm.weight");
    vw->ln_post_b = bind(b, INIT_BIAS, SHAPE1(C), "vision_model.post_layernorm.bias");
    vw->proj = bind(b, INIT_MATRIX, SHAPE2(E, C), "visual_projection.weight");

    clip_text_weights *tw = &m->text;
    C = t->width;
    tw->tok_emb = bind(b, INIT_MATRIX, SHAPE2(t->vocab, C), "text_model.embeddings.token_embedding.weight");
    tw->pos_emb = bind(b, INIT_EMBED, SHAPE2(t->context, C), "text_model.embeddings.position_embedding.weight");
    block_dims td = clip_text_dims(t);
    tw->layers = bind_blocks(b, t->layers, KEYS_CLIP, "text_model.encoder.layers.%lld.", &td);
    tw->ln_final_w = bind(b, INIT_NORM, SHAPE1(C), "text_model.final_layer_norm.weight");
    tw->ln_final_b = bind(b, INIT_BIAS, SHAPE1(C), "text_model.final_layer_norm.bias");
    tw->proj = bind(b, INIT_MATRIX, SHAPE2(E, C), "text_projection.weight");
}

static void bind_swin(binder *b, sc_model *m)
{
    const sc_swin_config *s = &m->cfg.swin;
    swin_weights *w = &m->swin;
    const char *p = "vision_model.model.";
    int64_t C = s->embed_dim, P = s->patch, M = s->window;
    w->patch_w = bind(b, INIT_MATRIX, 4, (int64_t[]){C, 3, P, P}, "%sembeddings.patch_embeddings.projection.weight", p);
    w->patch_b = bind(b, INIT_BIAS, SHAPE1(C), "%sembeddings.patch_embeddings.projection.bias", p);
    w->embed_ln_w = bind(b, INIT_NORM, SHAPE1(C), "%sembeddings.norm.weight", p);
    w->embed_ln_b = bind(b, INIT_BIAS, SHAPE1(C), "%sembeddings.norm.bias", p);
    for (int st = 0; st < s->n_stages; st++) {
        C = swin_stage_width(s, st);
        block_dims d = {C, swin_mlp(s, C), s->heads[st], s->eps, s->act};
        char fmt[128];
        snprintf(fmt, sizeof fmt, "%sencoder.layers.%d.blocks.%%lld.", p, st);
        swin_stage_weights *sw = &w->stages[st];
        sw->blocks = bind_blocks(b, s->depths[st], KEYS_SWIN, fmt, &d);
        for (int64_t i = 0; sw->blocks && i < s->depths[st]; i++)
            sw->blocks[i].rel_table = bind(b, INIT_BIAS, SHAPE2((2 * M - 1) * (2 * M - 1), s->heads[st]),
                                           "%sencoder.layers.%d.blocks.%lld.attention.self.relative_position_bias_table",
                                           p, st, (long long)i);
        if (st + 1 == s->n_stages) break;
        sw->merge_ln_w = bind(b, INIT_NORM, SHAPE1(4 * C), "%sencoder.layers.%d.downsample.norm.weight", p, st);
        sw->merge_ln_b = bind(b, INIT_BIAS, SHAPE1(4 * C), "%sencoder.layers.%d.downsample.norm.bias", p, st);
        sw->merge_w = bind(b, INIT_MATRIX, SHAPE2(2 * C, 4 * C), "%sencoder.layers.%d.downsample.reduction.weight", p, st);
    }
    w->ln_w = bind(b, INIT_NORM, SHAPE1(C), "%slayernorm.weight", p);
    w->ln_b = bind(b, INIT_BIAS, SHAPE1(C), "%slayernorm.bias", p);
    w->proj = bind(b, INIT_MATRIX, SHAPE2(m->cfg.embed_dim, C), "vision_model.projection_head.weight");
}

static void bind_bert(binder *b, sc_model *m)
{
    const sc_bert_config *c = &m->cfg.bert;
    bert_weights *w = &m->bert;
    const char *p = "text_model.model.";
    int64_t C = c->width;
    w->word = bind(b, INIT_MATRIX, SHAPE2(c->vocab, C), "%sembeddings.word_embeddings.weight", p);
    w->pos = bind(b, INIT_BIAS, SHAPE2(c->max_positions, C), "%sembeddings.position_embeddings.weight", p);
    w->type = bind(b, INIT_BIAS, SHAPE2(c->type_vocab, C), "%sembeddings.token_type_embeddings.weight", p);
    w->ln_w = bind(b, INIT_NORM, SHAPE1(C), "%sembeddings.LayerNorm.weight", p);
    w->ln_b = bind(b, INIT_BIAS, SHAPE1(C), "%sembeddings.LayerNorm.bias", p);
    block_dims d = bert_dims(c);
    w->layers = bind_blocks(b, c->layers, KEYS_BERT, "text_model.model.encoder.layer.%lld.", &d);
    w->pool_w = bind(b, INIT_MATRIX, SHAPE2(C, C), "%spooler.dense.weight", p);
    w->pool_b = bind(b, INIT_BIAS, SHAPE1(C), "%spooler.dense.bias", p);
    w->proj = bind(b, INIT_MATRIX, SHAPE2(m->cfg.embed_dim, C), "text_model.projection_head.weight");
}

static void bind_model(binder *b, sc_model *m)
{
    if (m->cfg.kind == SC_MODEL_CLIP) {
        bind_clip(b, m);
    } else {
        bind_swin(b, m);
        bind_bert(b, m);
    }
    m->logit_scale = bind(b, INIT_LOGIT, 0, NULL, "logit_scale");
}

/* ---- 7f. the tensors a file may carry besides the parameters ---- */

/* Integer buffers: accepted when their values are what the model computes
 * anyway (position ids 0..n−1, Swin's relative position index, zero token
 * types, OpenAI's size scalars); anything else left over is unknown. */
static sc_status check_buffer_values(binder *b, const record *r, const int64_t *v, int64_t n)
{
    const char *name = r->name;
    const sc_model_config *c = &b->m->cfg;
    int ok = 1;
    if (ends_with(name, "position_ids")) {
        int64_t G = c->vision.patch ? c->vision.image_size / c->vision.patch : 0;
        int64_t want = starts_with(name, "vision_model.embeddings") ? 1 + G * G
                       : starts_with(name, "text_model.embeddings") ? c->text.context
                                                                    : c->bert.max_positions;
        ok = n == want;
        for (int64_t i = 0; ok && i < n; i++) ok = v[i] == i;
    } else if (ends_with(name, "relative_position_index")) {
        int64_t M = c->swin.window, T = M * M;
        ok = n == T * T;
        for (int64_t i = 0; ok && i < n; i++) ok = v[i] == swin_relative_index(M, M, i / T, i % T);
    } else if (ends_with(name, "token_type_ids")) {
        for (int64_t i = 0; ok && i < n; i++) ok = v[i] == 0;
    } else {
        int64_t want = !strcmp(name, "input_resolution") ? c->vision.image_size
                       : !strcmp(name, "context_length") ? c->text.context
                                                         : c->text.vocab;
        ok = n == 1 && v[0] == want;
    }
    if (!ok) return sc_fail(b->err, SC_EFORMAT, "%s: buffer '%s' does not hold the values the model uses", b->what, name);
    return SC_OK;
}

static int is_known_buffer(const binder *b, const char *name)
{
    if (ends_with(name, "position_ids") || ends_with(name, "relative_position_index") ||
        ends_with(name, "token_type_ids"))
        return 1;
    return b->lay == LAYOUT_OPENAI_CLIP &&
           (!strcmp(name, "input_resolution") || !strcmp(name, "context_length") || !strcmp(name, "vocab_size"));
}

static sc_status check_leftovers(binder *b)
{
    for (int i = 0; i < b->tb->n; i++) {
        const record *r = &b->tb->recs[i];
        if (r->used) continue;
        const sc_weight *src = sc_weights_at(b->m->file, r->source);
        if (!is_known_buffer(b, r->name) || r->how != AS_IS)
            return sc_fail(b->err, SC_EFORMAT, "%s: unknown tensor '%s'", b->what, src->name);
        if (src->numel > ((int64_t)1 << 24))
            return sc_fail(b->err, SC_EFORMAT, "%s: buffer '%s' is too large", b->what, src->name);
        int64_t *v = malloc(sizeof(int64_t) * (size_t)(src->numel ? src->numel : 1));
        if (!v) return sc_fail(b->err, SC_ENOMEM, "%s: out of memory", b->what);
        sc_status st = sc_weights_read_i64(b->m->file, src->name, v, src->numel, b->err);
        if (!st) st = check_buffer_values(b, r, v, src->numel);
        free(v);
        if (st) return st;
    }
    return SC_OK;
}

/* ---- 7g. loading ---- */

static sc_model *model_new(void)
{
    sc_model *m = calloc(1, sizeof *m);
    if (m) sc_arena_init(&m->store, "weights", (size_t)16 << 20, 0);
    return m;
}

void sc_model_free(sc_model *m)
{
    if (!m) return;
    if (m->file) sc_weights_close(m->file);
    sc_arena_free(&m->store);
    free(m->params);
    free(m->keys);
    free(m);
}

static sc_status model_random(sc_model **out, const sc_model_config *cfg, uint64_t seed, int trainable,
                              sc_err *err)
{
    *out = NULL;
    sc_status st = check_config(cfg, "model config", err);
    if (st) return st;
    sc_model *m = model_new();
    if (!m) return sc_fail(err, SC_ENOMEM, "out of memory for a model");
    m->cfg = *cfg;
    m->trainable = trainable;
    binder b = {m, NULL, LAYOUT_HF_CLIP, {0}, "random weights", err, SC_OK};
    sc_rng_seed(&b.rng, seed);
    bind_model(&b, m);
    if (b.status) {
        sc_model_free(m);
        return b.status;
    }
    *out = m;
    return SC_OK;
}

sc_status sc_model_random(sc_model **out, const sc_model_config *cfg, uint64_t seed, sc_err *err)
{
    return model_random(out, cfg, seed, 0, err);
}

sc_status sc_model_new_trainable(sc_model **out, const sc_model_config *cfg, uint64_t seed, sc_err *err)
{
    if (cfg->kind != SC_MODEL_CLIP) {
        *out = NULL;
        return sc_fail(err, SC_EUNSUPPORTED, "model config: only CLIP models can be trained from scratch");
    }
    return model_random(out, cfg, seed, 1, err);
}

static int is_directory(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

/* The architecture: shapes first, then config.json of the directory, then
 * the caller's config file, each overriding the one before. */
static sc_status load_config(sc_model *m, const record_table *tb, layout lay, const char *path,
                             const char *config_path, sc_err *err)
{
    if (lay == LAYOUT_MEDCLIP)
        medclip_from_shapes(tb, &m->cfg);
    else
        clip_from_shapes(tb, &m->cfg);
    sc_status st = SC_OK;
    char json[4096];
    const char *source = path;   /* what error messages about the config name */
    if (is_directory(path)) {
        snprintf(json, sizeof json, "%s/config.json", path);
        if (access(json, F_OK) == 0) {
            st = config_apply_json(&m->cfg, json, err);
            source = json;
        }
    }
    if (!st && config_path) {
        st = config_apply_json(&m->cfg, config_path, err);
        source = config_path;
    }
    return st ? st : check_config(&m->cfg, source, err);
}

sc_status sc_model_load(sc_model **out, const char *path, const char *config_path, sc_err *err)
{
    *out = NULL;
    sc_model *m = model_new();
    if (!m) return sc_fail(err, SC_ENOMEM, "%s: out of memory for a model", path);
    record_table tb = {NULL, 0, 0, {0}};
    sc_arena_init(&tb.names, "tensor names", (size_t)1 << 20, 0);
    layout lay = LAYOUT_HF_CLIP;
    sc_status st = sc_weights_open(&m->file, path, err);
    if (!st) st = detect_layout(m->file, &lay, err);
    if (!st) st = records_build(&tb, m->file, lay, err);
    if (!st) st = load_config(m, &tb, lay, path, config_path, err);
    if (!st) {
        binder b = {m, &tb, lay, {0}, sc_weights_path(m->file), err, SC_OK};
        bind_model(&b, m);
        st = b.status ? b.status : check_leftovers(&b);
    }
    free(tb.recs);
    sc_arena_free(&tb.names);
    if (st) {
        sc_model_free(m);
        return st;
    }
    *out = m;
    return SC_OK;
}

const sc_model_config *sc_model_get_config(const sc_model *m)
{
    return &m->cfg;
}

float sc_model_logit_scale_raw(const sc_model *m)
{
    return m->logit_scale[0];
}

/* @book begin logit-scale */
float sc_model_logit_scale(const sc_model *m)
{
    float s = m->logit_scale[0];
    if (m->cfg.kind == SC_MODEL_MEDCLIP) s = s < 0.0f ? 0.0f : s > 4.6052f ? 4.6052f : s;   /* MedCLIP clamps */
    return expf(s);
}
/* @book end logit-scale */

size_t sc_model_weight_bytes(const sc_model *m)
{
    return m->weight_bytes;
}

/* ---- 7h. encoding ---- */

sc_status sc_model_encode_image(sc_model *m, sc_ctx *ctx, const sc_tensor *pixels, sc_tensor **embeds,
                                const sc_taps *taps, sc_err *err)
{
    *embeds = NULL;
    if (pixels->ndim != 4 || !sc_is_contiguous(pixels) || pixels->shape[0] < 1)
        return sc_fail(err, SC_ESHAPE, "images must be a contiguous (B, 3, H, W) array");
    int64_t B = pixels->shape[0], Cin = pixels->shape[1], H = pixels->shape[2], W = pixels->shape[3];
    if (m->cfg.kind == SC_MODEL_CLIP) {
        int64_t S = m->cfg.vision.image_size;
        if (Cin != 3 || H != S || W != S)
            return sc_fail(err, SC_ESHAPE, "images are (%lld, %lld, %lld) but the model takes (3, %lld, %lld)",
                           (long long)Cin, (long long)H, (long long)W, (long long)S, (long long)S);
    } else if ((Cin != 1 && Cin != 3) || H < 1 || W < 1 || H > 8192 || W > 8192) {
        return sc_fail(err, SC_ESHAPE, "images are (%lld, %lld, %lld); MedCLIP takes 1 or 3 channels",
                       (long long)Cin, (long long)H, (long long)W);
    }
    sc_tensor *out = sc_tensor_new(&ctx->act, 2, (int64_t[]){B, m->cfg.embed_dim}, "image_embeds");
    sc_arena_mark mark = sc_arena_get_mark(&ctx->act);
    if (m->cfg.kind == SC_MODEL_CLIP) {
        vit_forward(ctx, &m->cfg.vision, &m->vit, m->cfg.embed_dim, pixels->data, B, out->data, taps);
    } else {
        const float *rgb = pixels->data;
        if (Cin == 1) {   /* MedCLIP repeats a grey channel to three */
            float *x = scratch(ctx, B * 3 * H * W);
            for (int64_t i = 0; i < B * 3; i++)
                memcpy(x + i * H * W, pixels->data + (i / 3) * H * W, sizeof(float) * (size_t)(H * W));
            rgb = x;
        }
        swin_forward(ctx, &m->cfg.swin, &m->swin, m->cfg.embed_dim, rgb, B, H, W, out->data, taps);
    }
    sc_arena_rewind(&ctx->act, mark);
    *embeds = out;
    return SC_OK;
}

sc_status sc_model_encode_text(sc_model *m, sc_ctx *ctx, const int64_t *ids, const int64_t *mask, int64_t B,
                               int64_t T, sc_tensor **embeds, const sc_taps *taps, sc_err *err)
{
    *embeds = NULL;
    int clip = m->cfg.kind == SC_MODEL_CLIP;
    int64_t V = clip ? m->cfg.text.vocab : m->cfg.bert.vocab;
    int64_t maxT = clip ? m->cfg.text.context : m->cfg.bert.max_positions;
    if (B < 1 || T < 1 || T > maxT)
        return sc_fail(err, SC_ESHAPE, "token ids are (%lld, %lld) but the model takes at most %lld tokens",
                       (long long)B, (long long)T, (long long)maxT);
    for (int64_t i = 0; i < B * T; i++) {
        if (ids[i] < 0 || ids[i] >= V)
            return sc_fail(err, SC_ERANGE, "token id %lld at (%lld, %lld) is outside the vocabulary of %lld",
                           (long long)ids[i], (long long)(i / T), (long long)(i % T), (long long)V);
        if (mask && mask[i] != 0 && mask[i] != 1)
            return sc_fail(err, SC_ERANGE, "attention mask value %lld at (%lld, %lld) is not 0 or 1",
                           (long long)mask[i], (long long)(i / T), (long long)(i % T));
    }
    sc_tensor *out = sc_tensor_new(&ctx->act, 2, (int64_t[]){B, m->cfg.embed_dim}, "text_embeds");
    sc_arena_mark mark = sc_arena_get_mark(&ctx->act);
    if (clip) {
        float *key_bias = NULL;
        if (mask) {
            key_bias = scratch(ctx, B * T);
            for (int64_t i = 0; i < B * T; i++) key_bias[i] = mask[i] ? 0.0f : -FLT_MAX;
        }
        clip_text_forward(ctx, &m->cfg.text, &m->text, m->cfg.embed_dim, ids, key_bias, B, T, out->data, taps);
    } else {
        medclip_text_forward(ctx, &m->cfg.bert, &m->bert, m->cfg.embed_dim, ids, mask, B, T, out->data, taps);
    }
    sc_arena_rewind(&ctx->act, mark);
    *embeds = out;
    return SC_OK;
}

/* @book begin model-logits */
sc_tensor *sc_model_logits(sc_ctx *ctx, const sc_model *m, sc_tensor *img, sc_tensor *txt)
{
    sc_tensor *cos = sc_matmul(ctx, sc_l2_normalize(ctx, img), sc_l2_normalize(ctx, txt), 0, 1);
    return sc_scale(ctx, cos, sc_model_logit_scale(m));
}
/* @book end model-logits */

/* ---- 7i. the towers on the tape; the parameter table ---- */

/* @book begin tape-weight */
static sc_tensor *tape_weight(const tape *tp, const float *data, int ndim, const int64_t *shape, const char *name)
{
    const sc_model *m = tp->m;
    for (int i = 0; m->trainable && i < m->n_params; i++) {
        sc_tensor *p = m->params[i];
        if (p->data != data) continue;
        int64_t n = 1;
        for (int k = 0; k < ndim; k++) n *= shape[k];
        SC_ASSERT(sc_numel(p) == n, "parameter '%s' read as %lld elements", m->keys[i], (long long)n);
        return p;
    }
    return sc_tensor_wrap(&tp->ctx->act, (float *)data, ndim, shape, name);
}
/* @book end tape-weight */

sc_tensor *sc_clip_token_embedding(sc_ctx *ctx, const sc_model *m)
{
    SC_ASSERT(m->cfg.kind == SC_MODEL_CLIP, "token embeddings of a CLIP model only");
    tape tp = {ctx, m};
    return tape_weight(&tp, m->text.tok_emb, 2, (int64_t[]){m->cfg.text.vocab, m->cfg.text.width}, "token_embedding");
}

sc_tensor *sc_clip_text_forward(sc_ctx *ctx, const sc_model *m, sc_tensor *x, const int64_t *ids)
{
    SC_ASSERT(m->cfg.kind == SC_MODEL_CLIP, "the text tower on the tape is CLIP's");
    tape tp = {ctx, m};
    return clip_text_tape(&tp, &m->cfg.text, &m->text, m->cfg.embed_dim, x, ids);
}

sc_tensor *sc_clip_text_forward_ids(sc_ctx *ctx, const sc_model *m, const int64_t *ids, int64_t B, int64_t T)
{
    SC_ASSERT(B > 0 && T > 0, "text tower: (%lld, %lld) ids", (long long)B, (long long)T);
    int32_t *ids32 = sc__act_alloc(ctx, sizeof(int32_t) * (size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++) ids32[i] = (int32_t)ids[i];   /* sc_embedding checks the range */
    sc_tensor *x = sc_embedding(ctx, sc_clip_token_embedding(ctx, m), ids32, B * T);
    x = sc_reshape(ctx, x, 3, (int64_t[]){B, T, m->cfg.text.width});
    return sc_clip_text_forward(ctx, m, x, ids);
}

sc_tensor *sc_medclip_word_embedding(sc_ctx *ctx, const sc_model *m)
{
    SC_ASSERT(m->cfg.kind == SC_MODEL_MEDCLIP, "word embeddings of a MedCLIP model only");
    tape tp = {ctx, m};
    return tape_weight(&tp, m->bert.word, 2, (int64_t[]){m->cfg.bert.vocab, m->cfg.bert.width}, "word_embeddings");
}

sc_tensor *sc_medclip_text_forward(sc_ctx *ctx, const sc_model *m, sc_tensor *x, const int64_t *mask)
{
    SC_ASSERT(m->cfg.kind == SC_MODEL_MEDCLIP, "the BERT tower on the tape is MedCLIP's");
    tape tp = {ctx, m};
    return medclip_text_tape(&tp, &m->cfg.bert, &m->bert, m->cfg.embed_dim, x, mask);
}

sc_tensor *sc_clip_image_forward(sc_ctx *ctx, const sc_model *m, sc_tensor *pixels)
{
    SC_ASSERT(m->cfg.kind == SC_MODEL_CLIP, "the vision tower on the tape is CLIP's");
    tape tp = {ctx, m};
    return vit_tape(&tp, &m->cfg.vision, &m->vit, m->cfg.embed_dim, pixels);
}

int sc_model_is_trainable(const sc_model *m)
{
    return m->trainable;
}

sc_tensor *const *sc_model_params(const sc_model *m, int *n)
{
    *n = m->n_params;
    return m->params;
}

const char *sc_model_param_key(const sc_model *m, int i)
{
    SC_ASSERT(i >= 0 && i < m->n_params, "parameter %d of %d", i, m->n_params);
    return m->keys[i];
}

sc_tensor *sc_model_param_find(const sc_model *m, const char *key)
{
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->keys[i], key)) return m->params[i];
    return NULL;
}

/* ---- 7j. saving a CLIP model as a Hugging Face directory ---- */

/* The double with the fewest decimal digits that is still x as a float,
 * so config.json says 1e-05 and not 9.999999747378752e-06. */
static double float_as_written(float x)
{
    char buf[32];
    for (int digits = 1; digits < 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
        if ((float)strtod(buf, NULL) == x) return strtod(buf, NULL);
    }
    return (double)x;
}

static void put_dim(sc_json_writer *w, const char *key, int64_t v)
{
    sc_json_put_key(w, key);
    sc_json_put_int(w, v);
}

static void put_text(sc_json_writer *w, const char *key, const char *s)
{
    sc_json_put_key(w, key);
    sc_json_put_string(w, s);
}

static void put_float(sc_json_writer *w, const char *key, float x)
{
    sc_json_put_key(w, key);
    sc_json_put_number(w, float_as_written(x));
}

static const char *act_name(sc_act act)
{
    return act == SC_ACT_QUICK_GELU ? "quick_gelu" : "gelu";
}

/* @book begin clip-config-json */
/* config.json as transformers' CLIPConfig writes it, with what our loader
 * reads back (7b). The pooling rule travels in eos_token_id: a model that
 * pools at the first <|endoftext|> names its id; one that pools at the
 * largest id (OpenAI's argmax, eos_token_id < 0 here) gets the legacy 2,
 * which Hugging Face reads as that same rule. In OpenAI's vocabulary order
 * <|startoftext|> sits just before <|endoftext|>, and Hugging Face's
 * CLIPTokenizer pads with <|endoftext|>. */
static void clip_config_json(sc_json_writer *w, const sc_model_config *c)
{
    const sc_clip_text_config *t = &c->text;
    const sc_vit_config *v = &c->vision;
    sc_json_begin_object(w);
    sc_json_put_key(w, "architectures");
    sc_json_begin_array(w);
    sc_json_put_string(w, "CLIPModel");
    sc_json_end_array(w);
    put_float(w, "logit_scale_init_value", 2.6592f);
    put_text(w, "model_type", "clip");
    put_dim(w, "projection_dim", c->embed_dim);
    sc_json_put_key(w, "text_config");
    sc_json_begin_object(w);
    int64_t eos = t->eos_token_id >= 0 ? t->eos_token_id : 2;
    if (eos == t->vocab - 1) put_dim(w, "bos_token_id", eos - 1);
    put_dim(w, "eos_token_id", eos);
    put_text(w, "hidden_act", act_name(t->act));
    put_dim(w, "hidden_size", t->width);
    put_dim(w, "intermediate_size", t->mlp);
    put_float(w, "layer_norm_eps", t->eps);
    put_dim(w, "max_position_embeddings", t->context);
    put_text(w, "model_type", "clip_text_model");
    put_dim(w, "num_attention_heads", t->heads);
    put_dim(w, "num_hidden_layers", t->layers);
    if (eos == t->vocab - 1) put_dim(w, "pad_token_id", eos);
    put_dim(w, "projection_dim", c->embed_dim);
    put_dim(w, "vocab_size", t->vocab);
    sc_json_end_object(w);
    put_text(w, "torch_dtype", "float32");
    sc_json_put_key(w, "vision_config");
    sc_json_begin_object(w);
    put_text(w, "hidden_act", act_name(v->act));
    put_dim(w, "hidden_size", v->width);
    put_dim(w, "image_size", v->image_size);
    put_dim(w, "intermediate_size", v->mlp);
    put_float(w, "layer_norm_eps", v->eps);
    put_text(w, "model_type", "clip_vision_model");
    put_dim(w, "num_attention_heads", v->heads);
    put_dim(w, "num_channels", 3);
    put_dim(w, "num_hidden_layers", v->layers);
    put_dim(w, "patch_size", v->patch);
    put_dim(w, "projection_dim", c->embed_dim);
    sc_json_end_object(w);
    sc_json_end_object(w);
}
/* @book end clip-config-json */

sc_status sc_model_save(const sc_model *m, const char *dir, sc_err *err)
{
    if (m->cfg.kind != SC_MODEL_CLIP)
        return sc_fail(err, SC_EUNSUPPORTED, "%s: only CLIP models are saved as Hugging Face directories", dir);
    if (mkdir(dir, 0777) != 0 && !is_directory(dir))
        return sc_fail(err, SC_EIO, "%s: cannot create directory: %s", dir, strerror(errno));
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    sc_status st = sc_safetensors_write(path, (const char *const *)m->keys, (const sc_tensor *const *)m->params,
                                        m->n_params, err);
    if (st) return st;
    sc_json_writer w;
    sc_json_writer_init(&w, 2);
    clip_config_json(&w, &m->cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    st = sc_json_writer_save(&w, path, err);
    sc_json_writer_free(&w);
    return st;
}

/* ======================================================================== */
/* 8. Adapters (Eq. 1)                                                       */
/* ======================================================================== */

/* CLIP-Adapter (Gao et al.) keeps the backbone frozen and learns a small
 * bottleneck MLP on top of its output feature f (C):
 *     A(f) = ReLU(ReLU(f W1ᵀ) W2ᵀ)        W1 (R, C), W2 (C, R), no biases
 *     f'   = α A(f) + (1 − α) f
 * The official code has the second ReLU; Eq. 1 of the paper prints one
 * (cfg.relu_after_up chooses). The paper makes α learnable; how it stays
 * a blend weight is cfg.alpha_mode (book/04 measures the choices). Rows of
 * f are independent, so a batch is two GEMMs and elementwise work. */

sc_adapter_config sc_adapter_defaults(void)
{
    sc_adapter_config c;
    c.reduction = 4;
    c.relu_after_up = 1;
    c.alpha_mode = SC_ALPHA_SIGMOID;
    c.alpha_init = 0.2f;
    return c;
}

static void fill_uniform(sc_tensor *t, sc_rng *rng, float bound)
{
    int64_t n = sc_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = bound * (2.0f * sc_rng_uniform(rng) - 1.0f);
}

void sc_adapter_init(sc_adapter *ad, sc_arena *weights, int64_t C, sc_adapter_config cfg, sc_rng *rng,
                     const char *prefix)
{
    SC_ASSERT(cfg.reduction > 0 && C % cfg.reduction == 0, "width %lld is not a multiple of reduction %d",
              (long long)C, cfg.reduction);
    SC_ASSERT(cfg.alpha_init > 0.0f && cfg.alpha_init < 1.0f, "alpha_init %g must lie in (0, 1)",
              (double)cfg.alpha_init);
    char name[SC_NAME_MAX];
    ad->cfg = cfg;
    ad->C = C;
    ad->R = C / cfg.reduction;
    snprintf(name, sizeof name, "%s.w1", prefix);
    ad->w1 = sc_param_new(weights, 2, (int64_t[]){ad->R, C}, name);
    snprintf(name, sizeof name, "%s.w2", prefix);
    ad->w2 = sc_param_new(weights, 2, (int64_t[]){C, ad->R}, name);
    snprintf(name, sizeof name, "%s.alpha", prefix);
    ad->alpha = sc_param_new(weights, 1, (int64_t[]){1}, name);
    /* nn.Linear's default init, kaiming_uniform(a = √5), is U(±1/√fan_in). */
    fill_uniform(ad->w1, rng, 1.0f / sqrtf((float)C));
    fill_uniform(ad->w2, rng, 1.0f / sqrtf((float)ad->R));
    double a0 = cfg.alpha_init;
    ad->alpha->data[0] = cfg.alpha_mode == SC_ALPHA_SIGMOID ? (float)log(a0 / (1.0 - a0)) : cfg.alpha_init;
}

float sc_adapter_alpha(const sc_adapter *ad)
{
    float a = ad->alpha->data[0];
    return ad->cfg.alpha_mode == SC_ALPHA_SIGMOID ? (float)(1.0 / (1.0 + exp(-(double)a))) : a;
}

void sc_adapter_project(sc_adapter *ad)
{
    float *a = &ad->alpha->data[0];
    if (ad->cfg.alpha_mode == SC_ALPHA_CLAMP) *a = *a < 0.0f ? 0.0f : *a > 1.0f ? 1.0f : *a;
}

/* The elementwise passes of the adapter, written without branches (a
 * ReLU on data of random sign mispredicts half its branches): a plain
 * version, and an AVX2 one that runs eight lanes at a time and leaves the
 * last n mod 8 elements to the plain one (SIMD_CHOICE picks). Every lane
 * does exactly the scalar arithmetic. */

/* x = ReLU(x) */
static void adapter_relu_scalar(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* up = ReLU(up) when relu, then out = α up + (1 − α) f */
static void adapter_blend_scalar(float *out, float *up, const float *f, float alpha, int relu, int64_t n)
{
    float beta = 1.0f - alpha;
    for (int64_t i = 0; i < n; i++) {
        float u = relu && !(up[i] > 0.0f) ? 0.0f : up[i];
        up[i] = u;
        out[i] = alpha * u + beta * f[i];
    }
}

/* d_up = α dout, and 0 where the ReLU after the up projection was off */
static void adapter_d_up_scalar(float *d_up, const float *dout, const float *up, float alpha, int relu, int64_t n)
{
    for (int64_t i = 0; i < n; i++) d_up[i] = relu && up[i] <= 0.0f ? 0.0f : alpha * dout[i];
}

/* d = 0 where the ReLU that made x was off */
static void adapter_relu_grad_scalar(float *d, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) d[i] = x[i] <= 0.0f ? 0.0f : d[i];
}

/* dα's share of one row, Σ_c dout (A(f) − f), in double: eight running
 * sums (lane k takes c ≡ k mod 8) added up in a fixed order, so that the
 * vector version gives the same bits and the sum does not wait on one
 * chain of additions. */
static double adapter_row_dalpha_scalar(const float *dout, const float *up, const float *f, int64_t C)
{
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t c = 0; c < C; c++) lane[c & 7] += (double)dout[c] * ((double)up[c] - (double)f[c]);
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

#ifdef NN_AVX2
TARGET_AVX2 static void adapter_relu_avx2(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = v8_load(x + i);
        v8_store(x + i, v8_select(v > 0.0f, v, v8_splat(0.0f)));
    }
    adapter_relu_scalar(x + i, n - i);
}

TARGET_AVX2 static void adapter_blend_avx2(float *out, float *up, const float *f, float alpha, int relu, int64_t n)
{
    float beta = 1.0f - alpha;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f u = v8_load(up + i);
        if (relu) u = v8_select(u > 0.0f, u, v8_splat(0.0f));
        v8_store(up + i, u);
        v8_store(out + i, alpha * u + beta * v8_load(f + i));
    }
    adapter_blend_scalar(out + i, up + i, f + i, alpha, relu, n - i);
}

TARGET_AVX2 static void adapter_d_up_avx2(float *d_up, const float *dout, const float *up, float alpha, int relu,
                                          int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f d = alpha * v8_load(dout + i);
        if (relu) d = v8_select(v8_load(up + i) <= 0.0f, v8_splat(0.0f), d);
        v8_store(d_up + i, d);
    }
    adapter_d_up_scalar(d_up + i, dout + i, up + i, alpha, relu, n - i);
}

TARGET_AVX2 static void adapter_relu_grad_avx2(float *d, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f v = v8_load(d + i);
        v8_store(d + i, v8_select(v8_load(x + i) <= 0.0f, v8_splat(0.0f), v));
    }
    adapter_relu_grad_scalar(d + i, x + i, n - i);
}

typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));

/* Four floats from p, widened to double. */
AVX2_INLINE v4d v4_widen(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, v4d);
}

TARGET_AVX2 static double adapter_row_dalpha_avx2(const float *dout, const float *up, const float *f, int64_t C)
{
    v4d low = {0, 0, 0, 0}, high = {0, 0, 0, 0};   /* lanes 0–3 and 4–7 */
    int64_t c = 0;
    for (; c + 8 <= C; c += 8) {
        low += v4_widen(dout + c) * (v4_widen(up + c) - v4_widen(f + c));
        high += v4_widen(dout + c + 4) * (v4_widen(up + c + 4) - v4_widen(f + c + 4));
    }
    double lane[8] = {low[0], low[1], low[2], low[3], high[0], high[1], high[2], high[3]};
    for (; c < C; c++) lane[c & 7] += (double)dout[c] * ((double)up[c] - (double)f[c]);
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}
#endif

SIMD_CHOICE(adapter_relu, (float *x, int64_t n), (x, n))
SIMD_CHOICE(adapter_blend, (float *out, float *up, const float *f, float alpha, int relu, int64_t n),
            (out, up, f, alpha, relu, n))
SIMD_CHOICE(adapter_d_up, (float *d_up, const float *dout, const float *up, float alpha, int relu, int64_t n),
            (d_up, dout, up, alpha, relu, n))
SIMD_CHOICE(adapter_relu_grad, (float *d, const float *x, int64_t n), (d, x, n))
SIMD_CHOICE_VALUE(double, adapter_row_dalpha, (const float *dout, const float *up, const float *f, int64_t C),
                  (dout, up, f, C))

/* The elementwise passes run over blocks of rows on the thread pool, so
 * that each core finishes the rows whose products it has just computed
 * instead of one core waiting for the other. */
typedef struct {
    float *out, *up;
    const float *f;
    float alpha;
    int relu;
    int64_t C;
} adapter_blend_job;

typedef struct {
    double *dalpha_row;        /* (B) each row's share of dα */
    float *d_up;
    const float *dout, *up, *f;
    float alpha;
    int relu;
    int64_t C;
} adapter_d_up_job;

/* rows [r0, r1): up = ReLU(up), out = α up + (1 − α) f */
static void adapter_blend_rows(void *arg, int64_t r0, int64_t r1)
{
    const adapter_blend_job *j = arg;
    int64_t C = j->C;
    adapter_blend(j->out + r0 * C, j->up + r0 * C, j->f + r0 * C, j->alpha, j->relu, (r1 - r0) * C);
}

/* rows [r0, r1): their shares of dα, and d_up */
static void adapter_d_up_rows(void *arg, int64_t r0, int64_t r1)
{
    const adapter_d_up_job *j = arg;
    int64_t C = j->C;
    for (int64_t r = r0; r < r1; r++)
        j->dalpha_row[r] = adapter_row_dalpha(j->dout + r * C, j->up + r * C, j->f + r * C, C);
    adapter_d_up(j->d_up + r0 * C, j->dout + r0 * C, j->up + r0 * C, j->alpha, j->relu, (r1 - r0) * C);
}

/* @book begin adapter-forward */
void sc_adapter_forward(float *out, float *hidden, float *up, const float *f, const float *w1,
                        const float *w2, float alpha, int relu_after_up, int64_t B, int64_t C, int64_t R)
{
    /* hidden (B, R) = ReLU(f W1ᵀ) */
    sc_gemm(0, 1, B, R, C, f, C, w1, C, hidden, R, 0);
    adapter_relu(hidden, B * R);
    /* up (B, C) = hidden W2ᵀ, with the official code's second ReLU, and
     * the residual blend f' = α A(f) + (1 − α) f */
    sc_gemm(0, 1, B, C, R, hidden, R, w2, R, up, C, 0);
    adapter_blend_job job = {out, up, f, alpha, relu_after_up, C};
    parallel_rows(B, C, adapter_blend_rows, &job);
}
/* @book end adapter-forward */

/* @book begin adapter-backward */
void sc_adapter_backward(float *df, float *dw1, float *dw2, double *dalpha, float *d_up, float *d_hidden,
                         const float *dout, const float *hidden, const float *up, const float *f,
                         const float *w1, const float *w2, float alpha, int relu_after_up, int64_t B,
                         int64_t C, int64_t R)
{
    /* dα = Σ dout ⊙ (A(f) − f), row by row, the rows then summed in order;
     * d_up = α dout, through the ReLU if any */
    double *dalpha_row = malloc(sizeof(double) * (size_t)B + 1);
    SC_ASSERT(dalpha_row != NULL, "no memory for %lld row sums", (long long)B);
    adapter_d_up_job job = {dalpha_row, d_up, dout, up, f, alpha, relu_after_up, C};
    parallel_rows(B, C, adapter_d_up_rows, &job);
    double da = 0;
    for (int64_t r = 0; r < B; r++) da += dalpha_row[r];
    *dalpha += da;
    free(dalpha_row);
    /* dW2 (C, R) += d_upᵀ hidden;  d_hidden (B, R) = d_up W2, through the ReLU */
    sc_gemm(1, 0, C, R, B, d_up, C, hidden, R, dw2, R, 1);
    sc_gemm(0, 0, B, R, C, d_up, C, w2, R, d_hidden, R, 0);
    adapter_relu_grad(d_hidden, hidden, B * R);
    /* dW1 (R, C) += d_hiddenᵀ f */
    sc_gemm(1, 0, R, C, B, d_hidden, R, f, C, dw1, C, 1);
    /* df (B, C) += (1 − α) dout + d_hidden W1 (only when f needs it) */
    if (df) {
        for (int64_t i = 0; i < B * C; i++) df[i] += (1.0f - alpha) * dout[i];
        sc_gemm(0, 0, B, C, R, d_hidden, R, w1, C, df, C, 1);
    }
}
/* @book end adapter-backward */

/* The op keeps hidden and up; the adapter is found again through the node's
 * inputs (f, W1, W2, α) and its mode through iparam. */
static void adapter_node_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *f = n->in[0], *w1 = n->in[1], *w2 = n->in[2], *alpha_param = n->in[3];
    int64_t B = f->shape[0], C = f->shape[1], R = w1->shape[0];
    float *hidden = n->saved, *up = hidden + B * R;
    float alpha = n->fparam[0];
    float *d_up = sc__act_alloc(ctx, sizeof(float) * (size_t)(B * C));
    float *d_hidden = sc__act_alloc(ctx, sizeof(float) * (size_t)(B * R));
    /* Parameters hold their own grad buffers; the op accumulates into them
     * only when they are trainable. */
    float *dw1 = sc__grad(ctx, w1), *dw2 = sc__grad(ctx, w2), *dpar = sc__grad(ctx, alpha_param);
    float *scratch_w = NULL;
    if (!dw1 || !dw2) {
        scratch_w = sc__act_alloc(ctx, sizeof(float) * (size_t)(2 * C * R));
        memset(scratch_w, 0, sizeof(float) * (size_t)(2 * C * R));
    }
    double dalpha = 0;
    sc_adapter_backward(sc__grad(ctx, f), dw1 ? dw1 : scratch_w, dw2 ? dw2 : scratch_w + C * R, &dalpha,
                        d_up, d_hidden, n->out->grad, hidden, up, f->data, w1->data, w2->data, alpha,
                        (int)n->iparam[0], B, C, R);
    /* From dα to the parameter: dα/da = α(1 − α) when α = sigmoid(a). */
    if (dpar) dpar[0] += (float)(n->iparam[1] == SC_ALPHA_SIGMOID ? dalpha * alpha * (1.0f - alpha) : dalpha);
}

sc_tensor *sc_adapter_apply(sc_ctx *ctx, const sc_adapter *ad, sc_tensor *f)
{
    SC_ASSERT(f->ndim == 2 && f->shape[1] == ad->C && sc_is_contiguous(f), "adapter of width %lld on a (%lld, %lld) input",
              (long long)ad->C, (long long)f->shape[0], (long long)(f->ndim == 2 ? f->shape[1] : -1));
    int64_t B = f->shape[0], C = ad->C, R = ad->R;
    float *hidden = sc__act_alloc(ctx, sizeof(float) * (size_t)(B * R + B * C));
    float *up = hidden + B * R;
    sc_tensor *out = sc_tensor_new(&ctx->act, 2, (int64_t[]){B, C}, "adapter");
    float alpha = sc_adapter_alpha(ad);
    sc_adapter_forward(out->data, hidden, up, f->data, ad->w1->data, ad->w2->data, alpha, ad->cfg.relu_after_up,
                       B, C, R);
    sc_tensor *in[4] = {f, ad->w1, ad->w2, ad->alpha};
    sc_node *n = sc__node_record(ctx, "adapter", adapter_node_backward, out, in, 4);
    if (n) {
        n->saved = hidden;
        n->fparam[0] = alpha;
        n->iparam[0] = ad->cfg.relu_after_up;
        n->iparam[1] = ad->cfg.alpha_mode;
    }
    return out;
}

/* ======================================================================== */
/* 9. CoOp prompt learner                                                    */
/* ======================================================================== */

/* CoOp (Zhou et al., IJCV 2022) keeps the VLM frozen and learns the words
 * around the class name. A prompt is a row of T token embeddings,
 *
 *     CLIP:     [SOS] [V]_1 ... [V]_n_ctx [name tokens] [EOS] [padding]
 *     MedCLIP:  [CLS] [V]_1 ... [V]_n_ctx [name tokens] [SEP] [PAD] ...
 *
 * where the n_ctx context vectors [V] (C wide each) are free parameters in
 * the tower's token-embedding space (BERT's word embeddings for MedCLIP):
 * shared by every prompt ("unified"), or one set per prompt
 * ("class-specific", CSC). The class token sits at the end, as in CoOp's
 * default; CoOp's period after the name is part of the name row the
 * caller gives (the experiment runner appends it). The text tower runs on
 * the tape, so the loss reaches the context vectors through all of its
 * frozen layers.
 *
 * Layout: every position of every prompt reads one row of the table
 * [ctx; frozen], where ctx (n_ctx or K·n_ctx, C) is the parameter and
 * frozen (K·(T − n_ctx), C) holds each prompt's start, name, end and
 * padding embeddings, copied once from the embedding table. One gather
 * (sc_embedding) then builds the (K, T, C) input, and its backward pass
 * adds each position's gradient to the context row it read.
 *
 * T is the longest prompt: 1 + n_ctx + the longest name with its end
 * token, for all K prompts alike, in training and in evaluation. For CLIP
 * that only saves work — under the causal mask the end token never sees
 * the padding behind it. For MedCLIP it is a choice that shows: MedCLIP
 * averages over every position, padding included, and tokenises with
 * padding=True, i.e. to the longest prompt of the call; our K prompts are
 * that one call, as CoOp assembles all its class prompts at once, so a
 * shorter name's prompt carries [PAD] rows up to T, masked as keys and
 * counted in its mean — the same T whenever the prompts are built. */

sc_coop_config sc_coop_defaults(void)
{
    sc_coop_config c;
    c.n_ctx = 16;
    c.class_specific = 0;
    c.init_std = 0.02f;
    c.epochs = 50;          /* CoOp's ep50 schedule; it trains 200 epochs for 16 shots */
    c.lr = 0.002f;
    c.momentum = 0.9f;      /* Dassl's SGD defaults */
    c.weight_decay = 5e-4f;
    c.warmup_epochs = 1;    /* constant warm-up at 1e-5 */
    c.warmup_lr = 1e-5f;
    c.batch_size = 32;
    c.seed = 0;
    return c;
}

void sc_coop_free(sc_coop *p)
{
    sc_optim_free(&p->opt);
    sc_arena_free(&p->arena);
    memset(p, 0, sizeof *p);
}

/* What CoOp reads of a text tower. */
typedef struct {
    const float *table;       /* (V, C) CLIP's token or BERT's word embeddings */
    int64_t vocab, width;     /* V, C */
    int64_t positions;        /* the longest prompt it takes */
} prompt_tower;

static prompt_tower coop_tower(const sc_model *m)
{
    prompt_tower t;
    if (m->cfg.kind == SC_MODEL_CLIP)
        t = (prompt_tower){m->text.tok_emb, m->cfg.text.vocab, m->cfg.text.width, m->cfg.text.context};
    else
        t = (prompt_tower){m->bert.word, m->cfg.bert.vocab, m->cfg.bert.width, m->cfg.bert.max_positions};
    return t;
}

int64_t sc_coop_name_end(const sc_model *m, const int64_t *ids, const int64_t *mask, int64_t Tn)
{
    if (m->cfg.kind == SC_MODEL_CLIP) return sc_clip_eot_index(&m->cfg.text, ids, Tn);
    SC_ASSERT(mask != NULL, "a MedCLIP name's end is found by its attention mask");
    int64_t end = 0;   /* BERT: [SEP] is the last real token */
    for (int64_t t = 0; t < Tn; t++)
        if (mask[t]) end = t;
    return end;
}

/* Check the name rows (K, Tn) and find the longest name with its end
 * token: *longest = the largest end position. */
static sc_status coop_check_names(const sc_model *m, const int64_t *name_ids, const int64_t *name_mask, int64_t K,
                                  int64_t Tn, int64_t *longest, sc_err *err)
{
    prompt_tower tw = coop_tower(m);
    if (m->cfg.kind == SC_MODEL_MEDCLIP && !name_mask)
        return sc_fail(err, SC_EARG, "CoOp: MedCLIP's names need their attention mask (where the padding starts)");
    *longest = 0;
    for (int64_t k = 0; k < K; k++) {
        const int64_t *row = name_ids + k * Tn;
        for (int64_t t = 0; t < Tn; t++)
            if (row[t] < 0 || row[t] >= tw.vocab)
                return sc_fail(err, SC_ERANGE, "CoOp: name %lld has token id %lld outside the vocabulary of %lld",
                               (long long)k, (long long)row[t], (long long)tw.vocab);
        int64_t end = sc_coop_name_end(m, row, name_mask ? name_mask + k * Tn : NULL, Tn);
        if (end < 1) return sc_fail(err, SC_EARG, "CoOp: name %lld has no end token after its start", (long long)k);
        if (end > *longest) *longest = end;
    }
    return SC_OK;
}

/* Every prompt k: start token, context, then the name row from position
 * 1, its padding up to T; rows[] says which table row each position reads,
 * mask[] which positions are real. */
static void coop_assemble(sc_coop *p, const sc_model *m, const int64_t *name_ids, const int64_t *name_mask,
                          int64_t Tn)
{
    int64_t K = p->K, T = p->T, C = p->C, n_ctx = p->n_ctx, n_rows = p->ctx->shape[0];
    const float *table = coop_tower(m).table;
    for (int64_t k = 0; k < K; k++) {
        const int64_t *row = name_ids + k * Tn;
        int64_t end = n_ctx + sc_coop_name_end(m, row, name_mask ? name_mask + k * Tn : NULL, Tn);
        for (int64_t t = 0, f = 0; t < T; t++) {
            int64_t *id = &p->ids[k * T + t];
            int32_t *slot = &p->rows[k * T + t];
            p->mask[k * T + t] = t <= end;
            if (t >= 1 && t <= n_ctx) {
                *id = row[0];   /* a placeholder; ids only choose CLIP's pooled row */
                *slot = (int32_t)((p->cfg.class_specific ? k * n_ctx : 0) + t - 1);
                continue;
            }
            *id = row[t == 0 ? 0 : t - n_ctx];   /* t − n_ctx <= the longest end < Tn */
            int64_t frozen_row = k * (T - n_ctx) + f++;
            memcpy(p->frozen->data + frozen_row * C, table + *id * C, sizeof(float) * (size_t)C);
            *slot = (int32_t)(n_rows + frozen_row);
        }
    }
}

sc_status sc_coop_init(sc_coop *p, const sc_model *m, const int64_t *name_ids, const int64_t *name_mask, int64_t K,
                       int64_t Tn, const int64_t *init_ids, int n_init, const sc_coop_config *cfg, sc_err *err)
{
    memset(p, 0, sizeof *p);
    prompt_tower tw = coop_tower(m);
    int n_ctx = init_ids ? n_init : cfg->n_ctx;
    if (K < 1 || Tn < 2 || n_ctx < 1 || cfg->epochs < 1 || cfg->batch_size < 1 || !(cfg->lr > 0))
        return sc_fail(err, SC_EARG, "CoOp: %lld prompts of %lld tokens, %d context vectors, %d epochs, batch %d",
                       (long long)K, (long long)Tn, n_ctx, cfg->epochs, cfg->batch_size);
    int64_t longest = 0;   /* name tokens + end token, over all prompts */
    sc_status st = coop_check_names(m, name_ids, name_mask, K, Tn, &longest, err);
    if (st) return st;
    for (int i = 0; init_ids && i < n_init; i++)
        if (init_ids[i] < 0 || init_ids[i] >= tw.vocab)
            return sc_fail(err, SC_ERANGE, "CoOp: initial word id %lld is outside the vocabulary",
                           (long long)init_ids[i]);
    int64_t T = 1 + n_ctx + longest, C = tw.width, n_rows = cfg->class_specific ? K * n_ctx : n_ctx;
    if (T > tw.positions)
        return sc_fail(err, SC_ERANGE, "CoOp: %d context vectors and a name of %lld tokens need %lld positions; "
                       "the text tower has %lld", n_ctx, (long long)(longest - 1), (long long)T,
                       (long long)tw.positions);
    p->cfg = *cfg;
    p->K = K, p->T = T, p->C = C, p->n_ctx = n_ctx;
    sc_arena_init(&p->arena, "CoOp", (size_t)1 << 20, 0);
    p->ctx = sc_param_new(&p->arena, 2, (int64_t[]){n_rows, C}, "coop.ctx");
    p->frozen = sc_tensor_try_new(&p->arena, 2, (int64_t[]){K * (T - n_ctx), C}, "coop.frozen");
    p->rows = sc_arena_alloc(&p->arena, sizeof(int32_t) * (size_t)(K * T));
    p->ids = sc_arena_alloc(&p->arena, sizeof(int64_t) * (size_t)(K * T));
    p->mask = sc_arena_alloc(&p->arena, sizeof(int64_t) * (size_t)(K * T));
    if (!p->ctx || !p->frozen || !p->rows || !p->ids || !p->mask) {
        sc_coop_free(p);
        return sc_fail(err, SC_ENOMEM, "CoOp: out of memory for %lld prompts", (long long)K);
    }
    /* context: the init words' embeddings (copied to every prompt under
     * CSC), or N(0, init_std²) */
    sc_rng_seed(&p->rng, cfg->seed);
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t c = 0; c < C; c++)
            p->ctx->data[r * C + c] = init_ids ? tw.table[init_ids[r % n_ctx] * C + c]
                                               : cfg->init_std * sc_rng_normal(&p->rng);
    coop_assemble(p, m, name_ids, name_mask, Tn);
    sc_opt_config oc = sc_opt_defaults(SC_OPT_SGD, cfg->lr);
    oc.momentum = cfg->momentum;
    oc.weight_decay = cfg->weight_decay;
    st = sc_optim_init(&p->opt, oc, &p->ctx, 1, err);
    if (st) sc_coop_free(p);
    return st;
}

/* @book begin coop-features */
sc_tensor *sc_coop_text_features(sc_ctx *ctx, const sc_coop *p, const sc_model *m)
{
    sc_tensor *table = sc_concat(ctx, (sc_tensor *[]){p->ctx, p->frozen}, 2, 0);  /* (rows, C) */
    sc_tensor *x = sc_embedding(ctx, table, p->rows, p->K * p->T);               /* (K·T, C) */
    x = sc_reshape(ctx, x, 3, (int64_t[]){p->K, p->T, p->C});                    /* (K, T, C) */
    if (m->cfg.kind == SC_MODEL_CLIP) return sc_clip_text_forward(ctx, m, x, p->ids);   /* (K, E) */
    return sc_medclip_text_forward(ctx, m, x, p->mask);                                /* (K, E) */
}
/* @book end coop-features */

/* @book begin coop-loss */
sc_tensor *sc_coop_batch_loss(sc_ctx *ctx, const sc_coop *p, const sc_model *m, const sc_coop_data *d,
                              const int *index, int64_t B)
{
    SC_ASSERT(d->block_offset[d->n_blocks] == p->K, "CoOp data has %d labels for %lld prompts",
              d->block_offset[d->n_blocks], (long long)p->K);
    int64_t E = d->E, K = p->K;
    sc_tensor *img = sc_tensor_new(&ctx->act, 2, (int64_t[]){B, E}, "images");
    sc_tensor *target = sc_tensor_new(&ctx->act, 2, (int64_t[]){B, K}, "targets");
    for (int64_t r = 0; r < B; r++) {
        memcpy(img->data + r * E, d->image_emb + (int64_t)index[r] * E, sizeof(float) * (size_t)E);
        memcpy(target->data + r * K, d->targets + (int64_t)index[r] * K, sizeof(float) * (size_t)K);
    }
    sc_tensor *logits = sc_model_logits(ctx, m, img, sc_coop_text_features(ctx, p, m));  /* (B, K) */
    /* cross-entropy within each block (task), summed over blocks */
    sc_tensor *total = NULL;
    for (int b = 0; b < d->n_blocks; b++) {
        int64_t k0 = d->block_offset[b], len = d->block_offset[b + 1] - k0;
        sc_tensor *logp = sc_log_softmax(ctx, sc_slice(ctx, logits, 1, k0, len));
        sc_tensor *t = sc_contiguous(ctx, sc_slice(ctx, target, 1, k0, len));
        sc_tensor *term = sc_sum_all(ctx, sc_mul(ctx, logp, t));
        total = total ? sc_add(ctx, total, term) : term;
    }
    return sc_scale(ctx, total, -1.0f / (float)B);
}
/* @book end coop-loss */

double sc_coop_train_epoch(sc_coop *p, const sc_model *m, sc_ctx *ctx, const sc_coop_data *d)
{
    int64_t N = d->N, B = p->cfg.batch_size < N ? p->cfg.batch_size : N;
    /* Dassl steps the schedule once per epoch */
    p->opt.cfg.lr = sc_lr_cosine(p->cfg.lr, p->epoch, p->cfg.epochs, p->cfg.warmup_epochs, p->cfg.warmup_lr);
    int *order = malloc(sizeof(int) * (size_t)(N ? N : 1));
    SC_ASSERT(order != NULL, "no memory for %lld indices", (long long)N);
    for (int64_t i = 0; i < N; i++) order[i] = (int)i;
    sc_rng_shuffle(&p->rng, order, (int)N);
    double loss_sum = 0;
    int64_t steps = 0;
    for (int64_t start = 0; start < N; start += B) {
        int64_t size = N - start < B ? N - start : B;
        sc_ctx_reset(ctx);
        sc_tensor *loss = sc_coop_batch_loss(ctx, p, m, d, order + start, size);
        sc_optim_zero_grad(&p->opt);
        sc_backward(ctx, loss);
        sc_optim_step(&p->opt);
        loss_sum += loss->data[0];
        steps++;
    }
    sc_ctx_reset(ctx);
    free(order);
    p->epoch++;
    return steps ? loss_sum / (double)steps : 0;
}
