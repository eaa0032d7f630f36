/* check_tensor.c — tensors, ops, autograd and optimizers.
 *
 * Three kinds of evidence:
 *  1. forward values computed by hand (or with Python's math module, the
 *     digits pasted with their formula beside them);
 *  2. every op's backward against central finite differences: the loss is
 *     L = Σ y ⊙ R for fixed random R, accumulated in double, and each
 *     sampled input element is nudged by ±h, then the whole input along one
 *     random direction;
 *  3. optimizer trajectories from PyTorch's documented update rules.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

static sc_tensor *make(sc_arena *a, int ndim, const int64_t *shape, const float *values)
{
    sc_tensor *t = sc_tensor_new(a, ndim, shape, "t");
    memcpy(t->data, values, sizeof(float) * (size_t)sc_numel(t));
    return t;
}

static sc_tensor *randn(sc_arena *a, int ndim, const int64_t *shape, uint64_t seed)
{
    sc_tensor *t = sc_tensor_new(a, ndim, shape, "x");
    sc_fill_normal(t->data, sc_numel(t), seed, 1.0f);
    return t;
}

/* An op under test: builds its output from the inputs. */
typedef sc_tensor *(*op_fn)(sc_ctx *ctx, sc_tensor **in, const void *aux);

/* L = Σ y ⊙ R in double. */
static double weighted_sum(const sc_tensor *y, const float *R)
{
    double s = 0;
    int64_t n = sc_numel(y);
    for (int64_t i = 0; i < n; i++) s += (double)y->data[i] * R[i];
    return s;
}

/* One central difference along a random direction v over every element of
 * in[k]: (L(x + h v) − L(x − h v)) / 2h must match Σ grad ⊙ v. The sampled
 * coordinates of check_grad miss most of a large input; this probe sees a
 * gradient lost or misplaced anywhere (a gather from 257 rows touches 1 in
 * 257). The tolerance scales with the size of the sum's terms, so it holds
 * when they happen to cancel. */
static void check_direction(const char *name, op_fn f, sc_tensor **in, int k, const void *aux, const float *R,
                            sc_ctx *fd, double h)
{
    sc_tensor *x = in[k];
    int64_t n = sc_numel(x);
    if (n == 0) return;
    float *keep = malloc(sizeof(float) * (size_t)n), *v = malloc(sizeof(float) * (size_t)n);
    ck_assert(keep && v);
    memcpy(keep, x->data, sizeof(float) * (size_t)n);
    sc_fill_normal(v, n, 13 + (uint64_t)k, 1.0f);
    double ana = 0, terms = 0;
    for (int64_t i = 0; i < n; i++) {
        ana += (double)x->grad[i] * v[i];
        terms += ((double)x->grad[i] * v[i]) * ((double)x->grad[i] * v[i]);
    }
    for (int64_t i = 0; i < n; i++) x->data[i] = keep[i] + (float)h * v[i];
    sc_ctx_reset(fd);
    double lp = weighted_sum(f(fd, in, aux), R);
    for (int64_t i = 0; i < n; i++) x->data[i] = keep[i] - (float)h * v[i];
    sc_ctx_reset(fd);
    double lm = weighted_sum(f(fd, in, aux), R);
    memcpy(x->data, keep, sizeof(float) * (size_t)n);
    free(keep);
    free(v);
    double num = (lp - lm) / (2 * h);
    ck_assert_msg(fabs(num - ana) <= 2e-3 * fmax(1.0, sqrt(terms)) + 2e-2 * fabs(ana),
                  "%s: d/d(input %d) along a random direction: tape %.6g, finite difference %.6g", name, k, ana,
                  num);
}

/* Compare the tape's gradients of L = Σ f(in) ⊙ R with central differences
 * for up to `samples` elements of every input flagged in `check_mask`, and
 * along one random direction over all of each (check_direction). */
static void check_grad(const char *name, op_fn f, sc_tensor **in, int n_in, const void *aux, unsigned check_mask,
                       double h)
{
    sc_ctx ctx, fd;
    sc_ctx_init(&ctx);
    sc_ctx_init(&fd);
    sc_ctx_set_grad(&fd, 0);
    for (int k = 0; k < n_in; k++) {
        if (!in[k]) continue;
        in[k]->requires_grad = (check_mask >> k) & 1;
        in[k]->grad = NULL;
        in[k]->node = NULL;
    }
    sc_tensor *y = f(&ctx, in, aux);
    int64_t ny = sc_numel(y);
    sc_tensor *R = sc_tensor_new(&ctx.act, y->ndim, y->shape, "R");
    sc_fill_normal(R->data, ny, 99, 1.0f);
    sc_tensor *loss = sc_sum_all(&ctx, sc_mul(&ctx, y, R));
    sc_backward(&ctx, loss);

    sc_rng rng;
    sc_rng_seed(&rng, 7);
    for (int k = 0; k < n_in; k++) {
        if (!in[k] || !((check_mask >> k) & 1)) continue;
        ck_assert_msg(in[k]->grad != NULL, "%s: input %d received no gradient", name, k);
        int64_t n = sc_numel(in[k]);
        int samples = n <= 40 ? (int)n : 40;
        double max_err = 0, scale = 0;
        for (int s = 0; s < samples; s++) {
            int64_t i = n <= 40 ? s : (int64_t)sc_rng_below(&rng, (uint32_t)n);
            scale = fmax(scale, fabs((double)in[k]->grad[i]));
        }
        sc_rng_seed(&rng, 7);
        for (int s = 0; s < samples; s++) {
            int64_t i = n <= 40 ? s : (int64_t)sc_rng_below(&rng, (uint32_t)n);
            float keep = in[k]->data[i];
            in[k]->data[i] = keep + (float)h;
            sc_ctx_reset(&fd);
            double lp = weighted_sum(f(&fd, in, aux), R->data);
            in[k]->data[i] = keep - (float)h;
            sc_ctx_reset(&fd);
            double lm = weighted_sum(f(&fd, in, aux), R->data);
            in[k]->data[i] = keep;
            double num = (lp - lm) / (2 * h), ana = in[k]->grad[i];
            double err = fabs(num - ana);
            max_err = fmax(max_err, err);
            ck_assert_msg(err <= 2e-3 * fmax(1.0, scale) + 2e-2 * fabs(ana),
                          "%s: d/d(input %d)[%lld]: tape %.6g, finite difference %.6g", name, k,
                          (long long)i, ana, num);
        }
        check_direction(name, f, in, k, aux, R->data, &fd, h);
        in[k]->requires_grad = 0;
        in[k]->grad = NULL;
    }
    sc_ctx_free(&ctx);
    sc_ctx_free(&fd);
}

/* ------------------------------------------------------------------------ */
/* forward values by hand                                                    */
/* ------------------------------------------------------------------------ */

START_TEST(test_matmul_values)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_tensor *a = make(&ctx.act, 2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4});
    sc_tensor *b = make(&ctx.act, 2, (int64_t[]){2, 2}, (float[]){5, 6, 7, 8});
    /* [[1,2],[3,4]]·[[5,6],[7,8]] = [[19,22],[43,50]]; with transposes:
     * aᵀb = [[26,30],[38,44]], abᵀ = [[17,23],[39,53]], aᵀbᵀ = [[23,31],[34,46]]. */
    sc_check_close("NN", sc_matmul(&ctx, a, b, 0, 0)->data, (float[]){19, 22, 43, 50}, 4, 0, 0);
    sc_check_close("TN", sc_matmul(&ctx, a, b, 1, 0)->data, (float[]){26, 30, 38, 44}, 4, 0, 0);
    sc_check_close("NT", sc_matmul(&ctx, a, b, 0, 1)->data, (float[]){17, 23, 39, 53}, 4, 0, 0);
    sc_check_close("TT", sc_matmul(&ctx, a, b, 1, 1)->data, (float[]){23, 31, 34, 46}, 4, 0, 0);
    /* y = x Wᵀ + b: x = [1, 2], W rows [1,0], [0,1], [1,1], b = [0.5, 0, −1]. */
    sc_tensor *x = make(&ctx.act, 2, (int64_t[]){1, 2}, (float[]){1, 2});
    sc_tensor *w = make(&ctx.act, 2, (int64_t[]){3, 2}, (float[]){1, 0, 0, 1, 1, 1});
    sc_tensor *bias = make(&ctx.act, 1, (int64_t[]){3}, (float[]){0.5f, 0, -1});
    sc_tensor *y = sc_linear(&ctx, x, w, bias);
    ck_assert_int_eq(y->shape[1], 3);
    sc_check_close("linear", y->data, (float[]){1.5f, 2, 2}, 3, 0, 0);
    sc_ctx_free(&ctx);
}
END_TEST

START_TEST(test_elementwise_values)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_tensor *a = make(&ctx.act, 2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
    sc_tensor *b = make(&ctx.act, 1, (int64_t[]){3}, (float[]){10, 20, 40});
    sc_check_close("add", sc_add(&ctx, a, b)->data, (float[]){11, 22, 43, 14, 25, 46}, 6, 0, 0);
    sc_check_close("sub", sc_sub(&ctx, a, b)->data, (float[]){-9, -18, -37, -6, -15, -34}, 6, 0, 0);
    sc_check_close("mul", sc_mul(&ctx, a, b)->data, (float[]){10, 40, 120, 40, 100, 240}, 6, 0, 0);
    sc_check_close("div", sc_div(&ctx, a, b)->data, (float[]){0.1f, 0.1f, 0.075f, 0.4f, 0.25f, 0.15f}, 6, 0,
                   1e-7);
    sc_check_close("scale", sc_scale(&ctx, a, -2)->data, (float[]){-2, -4, -6, -8, -10, -12}, 6, 0, 0);
    sc_check_close("add_scalar", sc_add_scalar(&ctx, a, 0.5f)->data, (float[]){1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f},
                   6, 0, 0);
    sc_tensor *s = make(&ctx.act, 1, (int64_t[]){1}, (float[]){3});
    sc_check_close("mul_scalar_t", sc_mul_scalar_t(&ctx, a, s)->data, (float[]){3, 6, 9, 12, 15, 18}, 6, 0, 0);
    sc_ctx_free(&ctx);
}
END_TEST

START_TEST(test_activation_values)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_tensor *x = make(&ctx.act, 1, (int64_t[]){3}, (float[]){-1.5f, 0.5f, 1.0f});
    /* Python: 0.5*x*(1+math.erf(x/sqrt(2))) etc. */
    sc_check_close("gelu_erf", sc_gelu_erf(&ctx, x)->data,
                   (float[]){-0.10021080190328713f, 0.34573123063700656f, 0.8413447460685429f}, 3, 1e-7, 1e-6);
    sc_check_close("gelu_tanh", sc_gelu_tanh(&ctx, x)->data,
                   (float[]){-0.10042842301976707f, 0.34571400982514394f, 0.8411919906082768f}, 3, 1e-7, 1e-6);
    sc_check_close("quick_gelu", sc_quick_gelu(&ctx, x)->data,
                   (float[]){-0.10833780155292341f, 0.35038843660638014f, 0.8457957659328212f}, 3, 1e-7, 1e-6);
    sc_check_close("sigmoid", sc_sigmoid(&ctx, x)->data,
                   (float[]){0.18242552380635635f, 0.6224593312018546f, 0.7310585786300049f}, 3, 1e-7, 1e-6);
    sc_check_close("tanh", sc_tanh(&ctx, x)->data,
                   (float[]){-0.9051482536448664f, 0.46211715726000974f, 0.7615941559557649f}, 3, 1e-7, 1e-6);
    sc_check_close("exp", sc_exp(&ctx, x)->data,
                   (float[]){0.22313016014842982f, 1.6487212707001282f, 2.718281828459045f}, 3, 1e-7, 1e-6);
    sc_check_close("relu", sc_relu(&ctx, x)->data, (float[]){0, 0.5f, 1}, 3, 0, 0);
    sc_tensor *p = make(&ctx.act, 1, (int64_t[]){3}, (float[]){0.25f, 0.5f, 3.0f});
    sc_check_close("log", sc_log(&ctx, p)->data,
                   (float[]){-1.3862943611198906f, -0.6931471805599453f, 1.0986122886681098f}, 3, 1e-7, 1e-6);
    sc_ctx_free(&ctx);
}
END_TEST

START_TEST(test_norm_softmax_values)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_tensor *x = make(&ctx.act, 1, (int64_t[]){3}, (float[]){1, 2, 3});
    sc_check_close("softmax", sc_softmax(&ctx, x)->data,
                   (float[]){0.09003057317038046f, 0.24472847105479767f, 0.6652409557748219f}, 3, 1e-7, 1e-6);
    sc_check_close("log_softmax", sc_log_softmax(&ctx, x)->data,
                   (float[]){-2.40760596444438f, -1.4076059644443801f, -0.40760596444438013f}, 3, 1e-7, 1e-6);
    /* Large logits must not overflow: softmax([1000, 1000]) = [0.5, 0.5]. */
    sc_tensor *big = make(&ctx.act, 1, (int64_t[]){2}, (float[]){1000, 1000});
    sc_check_close("softmax-big", sc_softmax(&ctx, big)->data, (float[]){0.5f, 0.5f}, 2, 0, 1e-7);
    /* LayerNorm of [1,2,3,4] (μ 2.5, σ² 1.25, ε 1e-5), w = [1,2,0.5,−1], b = [0,0.1,0.2,0.3]. */
    sc_tensor *v = make(&ctx.act, 1, (int64_t[]){4}, (float[]){1, 2, 3, 4});
    sc_tensor *w = make(&ctx.act, 1, (int64_t[]){4}, (float[]){1, 2, 0.5f, -1});
    sc_tensor *b = make(&ctx.act, 1, (int64_t[]){4}, (float[]){0, 0.1f, 0.2f, 0.3f});
    sc_check_close("layernorm", sc_layernorm(&ctx, v, w, b, 1e-5f)->data,
                   (float[]){-1.3416354199689269f, -0.794423613312618f, 0.4236059033281545f, -1.0416354199689268f},
                   4, 1e-6, 1e-6);
    sc_tensor *r = make(&ctx.act, 2, (int64_t[]){2, 2}, (float[]){3, 4, 0, 0});
    sc_check_close("l2", sc_l2_normalize(&ctx, r)->data, (float[]){0.6f, 0.8f, 0, 0}, 4, 1e-7, 0);
    sc_ctx_free(&ctx);
}
END_TEST

START_TEST(test_reduction_values)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_tensor *x = make(&ctx.act, 2, (int64_t[]){2, 3}, (float[]){1, 5, 3, 4, 2, 6});
    sc_tensor *s0 = sc_sum(&ctx, x, 0), *s1 = sc_sum(&ctx, x, 1);
    ck_assert_int_eq(s0->ndim, 1);
    ck_assert_int_eq(s0->shape[0], 3);
    sc_check_close("sum0", s0->data, (float[]){5, 7, 9}, 3, 0, 0);
    sc_check_close("sum1", s1->data, (float[]){9, 12}, 2, 0, 0);
    sc_check_close("mean1", sc_mean(&ctx, x, 1)->data, (float[]){3, 4}, 2, 0, 1e-7);
    sc_tensor *arg;
    sc_check_close("max1", sc_max(&ctx, x, 1, &arg)->data, (float[]){5, 6}, 2, 0, 0);
    sc_check_close("argmax1", arg->data, (float[]){1, 2}, 2, 0, 0);
    sc_check_close("max0", sc_max(&ctx, x, 0, &arg)->data, (float[]){4, 5, 6}, 3, 0, 0);
    sc_check_close("argmax0", arg->data, (float[]){1, 0, 1}, 3, 0, 0);
    /* Ties go to the first position, as torch.max does. */
    sc_tensor *t = make(&ctx.act, 1, (int64_t[]){3}, (float[]){2, 7, 7});
    sc_max(&ctx, t, 0, &arg);
    ck_assert_float_eq(arg->data[0], 1.0f);
    ck_assert_float_eq(sc_sum_all(&ctx, x)->data[0], 21.0f);
    sc_ctx_free(&ctx);
}
END_TEST

START_TEST(test_layout_values)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_tensor *x = make(&ctx.act, 2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6});
    sc_check_close("transpose", sc_transpose(&ctx, x, 0, 1)->data, (float[]){1, 4, 2, 5, 3, 6}, 6, 0, 0);
    sc_tensor *c1 = sc_concat(&ctx, (sc_tensor *[]){x, x}, 2, 1);
    ck_assert_int_eq(c1->shape[1], 6);
    sc_check_close("concat1", c1->data, (float[]){1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6}, 12, 0, 0);
    sc_tensor *sl = sc_slice(&ctx, x, 1, 1, 2);
    ck_assert(!sc_is_contiguous(sl));
    sc_check_close("slice", sc_contiguous(&ctx, sl)->data, (float[]){2, 3, 5, 6}, 4, 0, 0);
    sc_tensor *table = make(&ctx.act, 2, (int64_t[]){3, 2}, (float[]){0, 1, 10, 11, 20, 21});
    sc_check_close("embedding", sc_embedding(&ctx, table, (int32_t[]){2, 0, 2}, 3)->data,
                   (float[]){20, 21, 0, 1, 20, 21}, 6, 0, 0);
    sc_tensor *mask = make(&ctx.act, 1, (int64_t[]){3}, (float[]){0, 1, 0});
    sc_check_close("masked_fill", sc_masked_fill(&ctx, x, mask, -100)->data, (float[]){1, -100, 3, 4, -100, 6}, 6,
                   0, 0);
    sc_tensor *x3 = sc_reshape(&ctx, x, 3, (int64_t[]){2, 3, 1});
    sc_check_close("gather_rows", sc_gather_rows(&ctx, x3, (int64_t[]){2, 0})->data, (float[]){3, 4}, 2, 0, 0);
    /* 4-D permute: (1, 2, 2, 2) with perm (0, 3, 1, 2). */
    sc_tensor *p = make(&ctx.act, 4, (int64_t[]){1, 2, 2, 2}, (float[]){0, 1, 2, 3, 4, 5, 6, 7});
    sc_tensor *q = sc_permute(&ctx, p, (int[]){0, 3, 1, 2});
    sc_check_close("permute", q->data, (float[]){0, 2, 4, 6, 1, 3, 5, 7}, 8, 0, 0);
    sc_ctx_free(&ctx);
}
END_TEST

/* The worked example of book section 1.1: offsets, a slice that is a view,
 * and a transposition that is a copy. */
START_TEST(test_book_view_example)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    float values[24];
    for (int i = 0; i < 24; i++) values[i] = (float)i;
    sc_tensor *x = make(&ctx.act, 3, (int64_t[]){2, 3, 4}, values);
    ck_assert(x->stride[0] == 12 && x->stride[1] == 4 && x->stride[2] == 1);
    ck_assert_float_eq(x->data[1 * x->stride[0] + 2 * x->stride[1] + 3 * x->stride[2]], 23);
    sc_tensor *s = sc_slice(&ctx, x, 1, 1, 2);
    ck_assert(s->data == x->data + 4);
    ck_assert(s->shape[0] == 2 && s->shape[1] == 2 && s->shape[2] == 4);
    ck_assert(s->stride[0] == 12 && s->stride[1] == 4 && s->stride[2] == 1);
    ck_assert(!sc_is_contiguous(s));
    ck_assert(&s->data[1 * 12 + 1 * 4 + 3] == &x->data[23]);
    sc_tensor *t = sc_transpose(&ctx, x, 1, 2);
    ck_assert(t->data != x->data && sc_is_contiguous(t));
    ck_assert(t->shape[0] == 2 && t->shape[1] == 4 && t->shape[2] == 3);
    ck_assert_float_eq(t->data[1 * 12 + 3 * 3 + 2], 23); /* element (1, 3, 2) */
    sc_ctx_free(&ctx);
}
END_TEST

START_TEST(test_patch_embed_values)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    /* One 4×4 channel holding 0..15, patch 2, two filters: the first sums
     * the patch, the second picks its top-left pixel; bias [0, 100]. */
    float img[16];
    for (int i = 0; i < 16; i++) img[i] = (float)i;
    sc_tensor *x = make(&ctx.act, 4, (int64_t[]){1, 1, 4, 4}, img);
    sc_tensor *w = make(&ctx.act, 4, (int64_t[]){2, 1, 2, 2}, (float[]){1, 1, 1, 1, 1, 0, 0, 0});
    sc_tensor *b = make(&ctx.act, 1, (int64_t[]){2}, (float[]){0, 100});
    sc_tensor *y = sc_patch_embed(&ctx, x, w, b, 2);
    ck_assert_int_eq(y->shape[1], 4);
    ck_assert_int_eq(y->shape[2], 2);
    /* patches (row-major): {0,1,4,5}, {2,3,6,7}, {8,9,12,13}, {10,11,14,15} */
    sc_check_close("patch_embed", y->data, (float[]){10, 100, 18, 102, 42, 108, 50, 110}, 8, 0, 0);
    sc_ctx_free(&ctx);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* backward against finite differences                                       */
/* ------------------------------------------------------------------------ */

typedef struct {
    int ta, tb;
} mm_aux;

static sc_tensor *f_matmul(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    const mm_aux *m = aux;
    return sc_matmul(ctx, in[0], in[1], m->ta, m->tb);
}

START_TEST(test_grad_matmul)
{
    static const int64_t dims[][3] = {{1, 1, 1}, {7, 33, 1}, {33, 257, 7}, {257, 7, 33}, {1, 7, 257}};
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
        for (int t = 0; t < 4; t++) {
            mm_aux m = {t & 1, t >> 1};
            int64_t M = dims[d][0], K = dims[d][1], N = dims[d][2];
            int64_t sa[2] = {m.ta ? K : M, m.ta ? M : K}, sb[2] = {m.tb ? N : K, m.tb ? K : N};
            sc_tensor *in[2] = {randn(&a, 2, sa, 1 + d), randn(&a, 2, sb, 2 + d)};
            char name[64];
            snprintf(name, sizeof name, "matmul %lldx%lldx%lld t%d%d", (long long)M, (long long)K, (long long)N,
                     m.ta, m.tb);
            check_grad(name, f_matmul, in, 2, &m, 3, 1e-2);
        }
    /* Batched (2, 7, 33)·(2, 33, 5) and a shared right matrix (33, 5). */
    mm_aux m = {0, 0};
    sc_tensor *bat[2] = {randn(&a, 3, (int64_t[]){2, 7, 33}, 5), randn(&a, 3, (int64_t[]){2, 33, 5}, 6)};
    check_grad("matmul batched", f_matmul, bat, 2, &m, 3, 1e-2);
    sc_tensor *shared[2] = {randn(&a, 3, (int64_t[]){3, 7, 33}, 7), randn(&a, 2, (int64_t[]){33, 5}, 8)};
    check_grad("matmul shared b", f_matmul, shared, 2, &m, 3, 1e-2);
    mm_aux mt = {1, 1};
    sc_tensor *bt[2] = {randn(&a, 3, (int64_t[]){2, 33, 7}, 9), randn(&a, 3, (int64_t[]){2, 5, 33}, 10)};
    check_grad("matmul batched TT", f_matmul, bt, 2, &mt, 3, 1e-2);
    sc_arena_free(&a);
}
END_TEST

static sc_tensor *f_linear(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    (void)aux;
    return sc_linear(ctx, in[0], in[1], in[2]);
}

START_TEST(test_grad_linear)
{
    static const int64_t dims[][3] = {{1, 1, 1}, {7, 33, 257}, {257, 7, 1}, {33, 257, 7}};
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        int64_t R = dims[d][0], I = dims[d][1], O = dims[d][2];
        sc_tensor *in[3] = {randn(&a, 2, (int64_t[]){R, I}, 1), randn(&a, 2, (int64_t[]){O, I}, 2),
                            randn(&a, 1, (int64_t[]){O}, 3)};
        check_grad("linear", f_linear, in, 3, NULL, 7, 1e-2);
        in[2] = NULL;
        check_grad("linear no bias", f_linear, in, 3, NULL, 3, 1e-2);
    }
    /* A 3-D input: (2, 7, 33) rows through W (5, 33). */
    sc_tensor *in[3] = {randn(&a, 3, (int64_t[]){2, 7, 33}, 4), randn(&a, 2, (int64_t[]){5, 33}, 5),
                        randn(&a, 1, (int64_t[]){5}, 6)};
    check_grad("linear 3d", f_linear, in, 3, NULL, 7, 1e-2);
    sc_arena_free(&a);
}
END_TEST

typedef sc_tensor *(*binary_fn)(sc_ctx *, sc_tensor *, sc_tensor *);
static sc_tensor *f_binary(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    binary_fn f = *(const binary_fn *)aux;
    return f(ctx, in[0], in[1]);
}

START_TEST(test_grad_binary)
{
    static const binary_fn fns[] = {sc_add, sc_sub, sc_mul, sc_div};
    static const char *names[] = {"add", "sub", "mul", "div"};
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 33, 1}, {1, 257, 7}, {33, 1, 257}};
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    for (int f = 0; f < 4; f++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            sc_tensor *x = randn(&a, 3, shapes[s], 10 + s);
            /* same shape, then broadcast of the trailing two dims and the last */
            sc_tensor *same = randn(&a, 3, shapes[s], 20 + s);
            sc_tensor *tail2 = randn(&a, 2, shapes[s] + 1, 30 + s);
            sc_tensor *tail1 = randn(&a, 1, shapes[s] + 2, 40 + s);
            sc_tensor *rights[3] = {same, tail2, tail1};
            for (int r = 0; r < 3; r++) {
                if (fns[f] == sc_div) /* keep divisors away from zero */
                    for (int64_t i = 0; i < sc_numel(rights[r]); i++)
                        rights[r]->data[i] = copysignf(0.5f + fabsf(rights[r]->data[i]), rights[r]->data[i]);
                sc_tensor *in[2] = {x, rights[r]};
                check_grad(names[f], f_binary, in, 2, &fns[f], 3, 1e-3);
            }
        }
    sc_arena_free(&a);
}
END_TEST

typedef sc_tensor *(*unary_fn)(sc_ctx *, sc_tensor *);
static sc_tensor *f_unary(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    unary_fn f = *(const unary_fn *)aux;
    return f(ctx, in[0]);
}

static sc_tensor *f_scale(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    (void)aux;
    return sc_add_scalar(ctx, sc_scale(ctx, in[0], -1.7f), 0.3f);
}

static sc_tensor *f_mul_scalar_t(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    (void)aux;
    return sc_mul_scalar_t(ctx, in[0], in[1]);
}

START_TEST(test_grad_unary)
{
    static const unary_fn fns[] = {sc_relu, sc_gelu_erf, sc_gelu_tanh, sc_quick_gelu, sc_sigmoid, sc_tanh, sc_exp, sc_log};
    static const char *names[] = {"relu", "gelu_erf", "gelu_tanh", "quick_gelu", "sigmoid", "tanh", "exp", "log"};
    static const int64_t shapes[][2] = {{1, 1}, {7, 33}, {257, 1}, {1, 257}};
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    for (int f = 0; f < 8; f++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            sc_tensor *x = randn(&a, 2, shapes[s], 50 + s);
            for (int64_t i = 0; i < sc_numel(x); i++) {
                if (fns[f] == sc_log) x->data[i] = 0.2f + fabsf(x->data[i]);
                /* ReLU's kink: stay well away from zero */
                if (fns[f] == sc_relu && fabsf(x->data[i]) < 0.1f) x->data[i] += 0.2f;
            }
            sc_tensor *in[1] = {x};
            check_grad(names[f], f_unary, in, 1, &fns[f], 1, 1e-3);
        }
    sc_tensor *x = randn(&a, 2, (int64_t[]){7, 33}, 60);
    sc_tensor *in1[1] = {x};
    check_grad("scale+add_scalar", f_scale, in1, 1, NULL, 1, 1e-2);
    sc_tensor *in2[2] = {x, randn(&a, 1, (int64_t[]){1}, 61)};
    check_grad("mul_scalar_t", f_mul_scalar_t, in2, 2, NULL, 3, 1e-2);
    sc_arena_free(&a);
}
END_TEST

typedef struct {
    int axis, kind; /* 0 sum, 1 mean, 2 max */
} red_aux;

static sc_tensor *f_reduce(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    const red_aux *r = aux;
    if (r->kind == 0) return sc_sum(ctx, in[0], r->axis);
    if (r->kind == 1) return sc_mean(ctx, in[0], r->axis);
    if (r->kind == 2) return sc_max(ctx, in[0], r->axis, NULL);
    return sc_sum_all(ctx, in[0]);
}

START_TEST(test_grad_reductions)
{
    static const int64_t shapes[][3] = {{1, 7, 1}, {7, 33, 2}, {3, 1, 257}, {33, 2, 7}};
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        sc_tensor *x = randn(&a, 3, shapes[s], 70 + s);
        /* distinct values spaced 0.05 apart so ±h never changes the argmax */
        int64_t n = sc_numel(x);
        sc_rng rng;
        sc_rng_seed(&rng, 71 + s);
        int *perm = malloc(sizeof(int) * (size_t)n);
        for (int64_t i = 0; i < n; i++) perm[i] = (int)i;
        sc_rng_shuffle(&rng, perm, (int)n);
        for (int64_t i = 0; i < n; i++) x->data[i] = 0.05f * (float)perm[i] - 0.025f * (float)n;
        free(perm);
        for (int kind = 0; kind < 4; kind++)
            for (int axis = 0; axis < 3; axis++) {
                red_aux r = {axis, kind};
                sc_tensor *in[1] = {x};
                check_grad(kind == 0 ? "sum" : kind == 1 ? "mean" : kind == 2 ? "max" : "sum_all", f_reduce, in, 1,
                           &r, 1, 1e-3);
            }
    }
    sc_arena_free(&a);
}
END_TEST

static sc_tensor *f_softmax(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    return *(const int *)aux ? sc_log_softmax(ctx, in[0]) : sc_softmax(ctx, in[0]);
}

static sc_tensor *f_layernorm(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    (void)aux;
    return sc_layernorm(ctx, in[0], in[1], in[2], 1e-5f);
}

static sc_tensor *f_l2(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    (void)aux;
    return sc_l2_normalize(ctx, in[0]);
}

START_TEST(test_grad_normalisation)
{
    static const int64_t shapes[][2] = {{1, 7}, {7, 33}, {33, 257}, {257, 2}};
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        sc_tensor *x = randn(&a, 2, shapes[s], 80 + s);
        sc_tensor *in1[1] = {x};
        int log_out = 0;
        check_grad("softmax", f_softmax, in1, 1, &log_out, 1, 1e-3);
        log_out = 1;
        check_grad("log_softmax", f_softmax, in1, 1, &log_out, 1, 1e-3);
        check_grad("l2_normalize", f_l2, in1, 1, NULL, 1, 1e-3);
        int64_t C = shapes[s][1];
        sc_tensor *in3[3] = {x, randn(&a, 1, &C, 81 + s), randn(&a, 1, &C, 82 + s)};
        check_grad("layernorm", f_layernorm, in3, 3, NULL, 7, 1e-3);
        in3[1] = in3[2] = NULL;
        check_grad("layernorm no affine", f_layernorm, in3, 3, NULL, 1, 1e-3);
    }
    sc_arena_free(&a);
}
END_TEST

typedef struct {
    const int32_t *ids;
    int64_t n;
} emb_aux;

static sc_tensor *f_embedding(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    const emb_aux *e = aux;
    return sc_embedding(ctx, in[0], e->ids, e->n);
}

static sc_tensor *f_concat(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    return sc_concat(ctx, in, 3, *(const int *)aux);
}

static sc_tensor *f_permute(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    return sc_permute(ctx, in[0], aux);
}

static sc_tensor *f_slice(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    const int64_t *p = aux;
    /* slice, then an op that reads the strided view, then a reshape */
    sc_tensor *s = sc_slice(ctx, in[0], (int)p[0], p[1], p[2]);
    sc_tensor *y = sc_scale(ctx, s, 2.0f);
    return sc_reshape(ctx, y, 1, (int64_t[]){sc_numel(y)});
}

static sc_tensor *f_masked(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    return sc_masked_fill(ctx, in[0], aux, -3.0f);
}

static sc_tensor *f_gather(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    return sc_gather_rows(ctx, in[0], aux);
}

static sc_tensor *f_patch(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    return sc_patch_embed(ctx, in[0], in[1], in[2], *(const int *)aux);
}

START_TEST(test_grad_layout)
{
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    /* embedding with repeated ids: gradients of repeats add up */
    int32_t ids[9] = {0, 5, 5, 6, 1, 0, 0, 3, 6};
    emb_aux e = {ids, 9};
    sc_tensor *table[1] = {randn(&a, 2, (int64_t[]){7, 33}, 90)};
    check_grad("embedding", f_embedding, table, 1, &e, 1, 1e-2);
    for (int axis = 0; axis < 3; axis++) {
        int64_t s1[3] = {2, 7, 3}, s2[3] = {2, 7, 3}, s3[3] = {2, 7, 3};
        s1[axis] = 1;
        s2[axis] = 33;
        s3[axis] = 7;
        sc_tensor *in[3] = {randn(&a, 3, s1, 91), randn(&a, 3, s2, 92), randn(&a, 3, s3, 93)};
        check_grad("concat", f_concat, in, 3, &axis, 7, 1e-2);
    }
    static const int perms[][4] = {{0, 3, 1, 2}, {3, 2, 1, 0}, {1, 0, 2, 3}, {0, 2, 3, 1}};
    for (int p = 0; p < 4; p++) {
        sc_tensor *in[1] = {randn(&a, 4, (int64_t[]){2, 7, 1, 33}, 94 + p)};
        check_grad("permute", f_permute, in, 1, perms[p], 1, 1e-2);
    }
    for (int axis = 0; axis < 3; axis++) {
        int64_t p[3] = {axis, 1, 3};
        sc_tensor *in[1] = {randn(&a, 3, (int64_t[]){5, 7, 33}, 98)};
        check_grad("slice", f_slice, in, 1, p, 1, 1e-2);
    }
    sc_tensor *mask = sc_tensor_new(&a, 2, (int64_t[]){7, 33}, "mask");
    for (int64_t i = 0; i < 7 * 33; i++) mask->data[i] = (float)(i % 3 == 0);
    sc_tensor *mx[1] = {randn(&a, 3, (int64_t[]){2, 7, 33}, 99)};
    check_grad("masked_fill", f_masked, mx, 1, mask, 1, 1e-2);
    int64_t rows[4] = {6, 0, 3, 6};
    sc_tensor *gx[1] = {randn(&a, 3, (int64_t[]){4, 7, 33}, 100)};
    check_grad("gather_rows", f_gather, gx, 1, rows, 1, 1e-2);
    /* patch embedding: (2, 3, 14, 21) images, patch 7, 5 filters; also an
     * image whose size is not a multiple of P (the remainder is dropped). */
    int P = 7;
    sc_tensor *pin[3] = {randn(&a, 4, (int64_t[]){2, 3, 14, 21}, 101), randn(&a, 4, (int64_t[]){5, 3, 7, 7}, 102),
                         randn(&a, 1, (int64_t[]){5}, 103)};
    check_grad("patch_embed", f_patch, pin, 3, &P, 7, 1e-2);
    sc_tensor *pin2[3] = {randn(&a, 4, (int64_t[]){1, 2, 9, 8}, 104), randn(&a, 4, (int64_t[]){3, 2, 4, 4}, 105), NULL};
    P = 4;
    check_grad("patch_embed ragged", f_patch, pin2, 3, &P, 3, 1e-2);
    sc_arena_free(&a);
}
END_TEST

/* The layout ops again with 257 in each dimension in turn (the other
 * dimensions 1, 7 or 33), and sc_transpose on its own. check_grad compares
 * 40 sampled coordinates of each input one by one (and all of them along one
 * direction), so the shapes keep a good share of every input on the path to
 * the output: ids cover much of their table, slices keep at least a fifth of
 * their axis. A gather from 257 rows cannot: there the direction decides. */
static sc_tensor *f_transpose(sc_ctx *ctx, sc_tensor **in, const void *aux)
{
    const int *axes = aux;
    return sc_transpose(ctx, in[0], axes[0], axes[1]);
}

/* "name (d0, d1, ...)" for failure messages. */
static const char *shape_name(char *buf, size_t size, const char *op, const sc_tensor *x)
{
    int len = snprintf(buf, size, "%s (", op);
    for (int i = 0; i < x->ndim && len > 0 && (size_t)len < size; i++)
        len += snprintf(buf + len, size - (size_t)len, i ? ", %lld" : "%lld", (long long)x->shape[i]);
    if (len > 0 && (size_t)len < size) snprintf(buf + len, size - (size_t)len, ")");
    return buf;
}

START_TEST(test_grad_embedding_257)
{
    /* (V, C, n): a 257-row table looked up 257 times (repeats add up), 257
     * columns, and 257 ids over a 33-row table. */
    static const int64_t dims[][3] = {{257, 7, 257}, {7, 257, 33}, {33, 1, 257}};
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    sc_rng rng;
    sc_rng_seed(&rng, 110);
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        int64_t V = dims[d][0], C = dims[d][1], n = dims[d][2];
        int32_t ids[257];
        for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)sc_rng_below(&rng, (uint32_t)V);
        ids[0] = (int32_t)V - 1; /* the last row, and the first twice */
        ids[1] = ids[n - 1] = 0;
        emb_aux e = {ids, n};
        sc_tensor *table[1] = {randn(&a, 2, (int64_t[]){V, C}, 111 + d)};
        char name[64];
        check_grad(shape_name(name, sizeof name, "embedding", table[0]), f_embedding, table, 1, &e, 1, 1e-2);
    }
    sc_arena_free(&a);
}
END_TEST

START_TEST(test_grad_concat_257)
{
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    for (int axis = 0; axis < 3; axis++)
        for (int wide_off_axis = 0; wide_off_axis < 2; wide_off_axis++) {
            /* pieces 257, 1 and 7 long on the axis, 1 and 7 wide off it;
             * or pieces 33, 1 and 7 long, 257 and 7 wide off it */
            int64_t off = wide_off_axis ? 257 : 1, lens[3] = {wide_off_axis ? 33 : 257, 1, 7};
            sc_tensor *in[3];
            for (int k = 0; k < 3; k++) {
                int64_t shape[3];
                shape[(axis + 1) % 3] = off;
                shape[(axis + 2) % 3] = 7;
                shape[axis] = lens[k];
                in[k] = randn(&a, 3, shape, 120 + 3 * axis + k);
            }
            char name[64];
            snprintf(name, sizeof name, "concat axis %d, first piece (%lld, %lld, %lld)", axis,
                     (long long)in[0]->shape[0], (long long)in[0]->shape[1], (long long)in[0]->shape[2]);
            check_grad(name, f_concat, in, 3, &axis, 7, 1e-2);
        }
    sc_arena_free(&a);
}
END_TEST

START_TEST(test_grad_permute_257)
{
    /* 257, 33, 7 and 1 rotated through the four positions */
    static const int64_t shapes[][4] = {{257, 7, 1, 33}, {33, 257, 7, 1}, {1, 33, 257, 7}, {7, 1, 33, 257}};
    static const int perms[][4] = {{0, 3, 1, 2}, {3, 2, 1, 0}, {1, 0, 2, 3}, {0, 2, 3, 1}};
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    for (int s = 0; s < 4; s++) {
        sc_tensor *in[1] = {randn(&a, 4, shapes[s], 130 + s)};
        char name[64];
        for (int p = 0; p < 4; p++)
            check_grad(shape_name(name, sizeof name, "permute", in[0]), f_permute, in, 1, perms[p], 1, 1e-2);
    }
    sc_arena_free(&a);
}
END_TEST

START_TEST(test_grad_transpose_257)
{
    static const int64_t shapes[][3] = {{257, 7, 33}, {33, 257, 7}, {7, 33, 257}};
    static const int pairs[][2] = {{0, 1}, {1, 2}, {2, 0}};
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    for (int s = 0; s < 3; s++) {
        sc_tensor *in[1] = {randn(&a, 3, shapes[s], 134 + s)};
        char name[64];
        for (int p = 0; p < 3; p++)
            check_grad(shape_name(name, sizeof name, "transpose", in[0]), f_transpose, in, 1, pairs[p], 1, 1e-2);
    }
    /* attention's head split: (B, T, H, D) → (B, H, T, D) */
    int heads[2] = {1, 2};
    sc_tensor *in[1] = {randn(&a, 4, (int64_t[]){1, 257, 7, 33}, 137)};
    check_grad("transpose heads (1, 257, 7, 33)", f_transpose, in, 1, heads, 1, 1e-2);
    sc_arena_free(&a);
}
END_TEST

START_TEST(test_grad_slice_257)
{
    /* shape, then (axis, start, len) */
    static const int64_t cases[][6] = {
        {257, 7, 33, 0, 128, 129}, {257, 7, 33, 2, 1, 31}, {33, 257, 7, 1, 0, 256},
        {33, 257, 7, 0, 26, 7},    {7, 33, 257, 2, 8, 249}, {7, 33, 257, 1, 13, 7},
    };
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sc_tensor *in[1] = {randn(&a, 3, cases[c], 140 + c)};
        char name[64];
        snprintf(name, sizeof name, "slice axis %lld [%lld, +%lld) of (%lld, %lld, %lld)", (long long)cases[c][3],
                 (long long)cases[c][4], (long long)cases[c][5], (long long)cases[c][0], (long long)cases[c][1],
                 (long long)cases[c][2]);
        check_grad(name, f_slice, in, 1, cases[c] + 3, 1, 1e-2);
    }
    sc_arena_free(&a);
}
END_TEST

START_TEST(test_grad_masked_fill_257)
{
    /* x, and the trailing dims the mask covers */
    static const int64_t shapes[][3] = {{7, 257, 33}, {257, 1, 33}, {33, 7, 257}};
    static const int mask_ndim[] = {2, 2, 1};
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    sc_rng rng;
    sc_rng_seed(&rng, 150);
    for (int s = 0; s < 3; s++) {
        sc_tensor *mask = sc_tensor_new(&a, mask_ndim[s], shapes[s] + 3 - mask_ndim[s], "mask");
        for (int64_t i = 0; i < sc_numel(mask); i++) mask->data[i] = (float)(sc_rng_below(&rng, 3) == 0);
        sc_tensor *in[1] = {randn(&a, 3, shapes[s], 151 + s)};
        char name[64];
        check_grad(shape_name(name, sizeof name, "masked_fill", in[0]), f_masked, in, 1, mask, 1, 1e-2);
    }
    sc_arena_free(&a);
}
END_TEST

START_TEST(test_grad_gather_rows_257)
{
    /* (B, T, C): 257 items, 257 rows to choose from, 257 channels */
    static const int64_t shapes[][3] = {{257, 7, 33}, {7, 257, 1}, {33, 1, 257}};
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    sc_rng rng;
    sc_rng_seed(&rng, 160);
    for (int s = 0; s < 3; s++) {
        int64_t B = shapes[s][0], T = shapes[s][1], rows[257];
        for (int64_t b = 0; b < B; b++) rows[b] = sc_rng_below(&rng, (uint32_t)T);
        rows[0] = T - 1;
        sc_tensor *in[1] = {randn(&a, 3, shapes[s], 161 + s)};
        char name[64];
        check_grad(shape_name(name, sizeof name, "gather_rows", in[0]), f_gather, in, 1, rows, 1, 1e-2);
    }
    sc_arena_free(&a);
}
END_TEST

START_TEST(test_grad_patch_embed_257)
{
    /* x (B, Cin, H, W), Cout, P: 257 wide and 257 high images (P does not
     * divide 257, so a strip is dropped), 257 filters, 257 input channels,
     * 257 images, and one 257×257 patch. */
    static const int64_t cases[][6] = {
        {1, 3, 7, 257, 5, 7}, {2, 3, 257, 14, 7, 7}, {2, 3, 8, 12, 257, 4},
        {1, 257, 2, 2, 7, 2}, {257, 1, 3, 3, 7, 3},  {1, 1, 257, 257, 3, 257},
    };
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t Cin = cases[c][1], Cout = cases[c][4];
        int P = (int)cases[c][5];
        sc_tensor *in[3] = {randn(&a, 4, cases[c], 170 + c), randn(&a, 4, (int64_t[]){Cout, Cin, P, P}, 180 + c),
                            randn(&a, 1, &Cout, 190 + c)};
        char name[80];
        snprintf(name, sizeof name, "patch_embed (%lld, %lld, %lld, %lld) P %d Cout %lld", (long long)cases[c][0],
                 (long long)Cin, (long long)cases[c][2], (long long)cases[c][3], P, (long long)Cout);
        check_grad(name, f_patch, in, 3, &P, 7, 1e-2);
    }
    sc_arena_free(&a);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* the tape                                                                  */
/* ------------------------------------------------------------------------ */

START_TEST(test_tape_reuse_and_accumulate)
{
    sc_arena w;
    sc_arena_init(&w, "weights", 1 << 16, 0);
    sc_tensor *p = sc_param_new(&w, 1, (int64_t[]){3}, "p");
    p->data[0] = 1;
    p->data[1] = -2;
    p->data[2] = 3;
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    /* L = Σ p ⊙ p + Σ p uses p twice: dL/dp = 2p + 1. */
    sc_tensor *L = sc_add(&ctx, sc_sum_all(&ctx, sc_mul(&ctx, p, p)), sc_sum_all(&ctx, p));
    sc_backward(&ctx, L);
    sc_check_close("grad", p->grad, (float[]){3, -3, 7}, 3, 0, 0);
    /* A second backward without zero_grad accumulates, as in PyTorch. */
    sc_ctx_reset(&ctx);
    L = sc_sum_all(&ctx, p);
    sc_backward(&ctx, L);
    sc_check_close("accumulated", p->grad, (float[]){4, -2, 8}, 3, 0, 0);
    sc_zero_grad(&p, 1);
    sc_check_close("zeroed", p->grad, (float[]){0, 0, 0}, 3, 0, 0);
    /* No-grad mode records nothing and allocates no tape. */
    sc_ctx_reset(&ctx);
    sc_ctx_set_grad(&ctx, 0);
    size_t before = ctx.act.used;
    sc_tensor *y = sc_mul(&ctx, p, p);
    ck_assert_ptr_null(ctx.tape);
    ck_assert_int_eq(ctx.n_nodes, 0);
    ck_assert(!y->requires_grad);
    /* only the output tensor (header + 3 floats, 64-aligned) was allocated */
    ck_assert_uint_le(ctx.act.used - before, 2 * 64 + sizeof(sc_tensor) + 64);
    /* Ops whose inputs need no gradient are not recorded either. */
    sc_ctx_set_grad(&ctx, 1);
    sc_tensor *c = sc_tensor_zeros(&ctx.act, 1, (int64_t[]){3}, "c");
    sc_exp(&ctx, c);
    ck_assert_int_eq(ctx.n_nodes, 0);
    sc_ctx_free(&ctx);
    sc_arena_free(&w);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* optimizers                                                                */
/* ------------------------------------------------------------------------ */

/* Trajectories of p on f(p) = ½ Σ a_i (p_i − c_i)², a = (1, 2, 0.5),
 * c = (0.3, −0.7, 1.5), p0 = (1, 0.5, −1), five steps each. Computed in
 * Python float64 from the update rules printed in the torch.optim
 * documentation (SGD, Adam, AdamW pseudo-code, PyTorch 1.13), not from our
 * code:
 *   SGD(lr 0.1, momentum 0.9, weight_decay 0.01), the same with
 *   nesterov=True, plain SGD(lr 0.1), Adam(lr 0.1, weight_decay 0.01),
 *   AdamW(lr 0.1, weight_decay 0.1); betas (0.9, 0.999), eps 1e-8. */
static const double sgd_momentum[5][3] = {
    {0.92900000000000005, 0.25950000000000001, -0.874},
    {0.80127100000000007, -0.14910950000000006, -0.64102599999999998},
    {0.63538652900000003, -0.62688704049999999, -0.32365707399999993},
    {0.45191646567099997, -1.0708825318095001, 0.053481470174000123},
    {0.27114984564212896, -1.3952310850943406, 0.46517860495172614},
};
static const double sgd_nesterov[5][3] = {
    {0.86509999999999998, 0.043050000000000033, -0.76059999999999994},
    {0.69857731000000001, -0.43419579499999994, -0.44233785999999986},
    {0.52328749321099999, -0.83010989138949998, -0.072950935365999836},
    {0.35860846563270909, -1.0879596299338998, 0.32126293466756561},
    {0.21914720939021029, -1.194699491304464, 0.71657659139518803},
};
static const double sgd_plain[5][3] = {
    {0.93000000000000005, 0.26000000000000001, -0.875},
    {0.86699999999999999, 0.068000000000000005, -0.75624999999999998},
    {0.81030000000000002, -0.085600000000000009, -0.6434375},
    {0.75927, -0.20848, -0.53626562499999997},
    {0.71334299999999995, -0.306784, -0.43445234374999997},
};
static const double adam_l2[5][3] = {
    {0.90000000140845071, 0.40000000041580042, -0.90000000079365083},
    {0.80068995059945569, 0.30032209806397192, -0.80012899033863416},
    {0.70272477272252865, 0.2012277902969295, -0.70048075455388459},
    {0.60695113678253121, 0.10301908390168428, -0.60115505828782367},
    {0.51444095447940585, 0.0060427038769121089, -0.50225771325113966},
};
static const double adamw[5][3] = {
    {0.89000000142857139, 0.39500000041666666, -0.89000000079999997},
    {0.78190456480122239, 0.29139276772872941, -0.78124253406780964},
    {0.67647081252316255, 0.18943888559694888, -0.67381734343581146},
    {0.57468457003466267, 0.08943520163777717, -0.56781855418516547},
    {0.47779481086956954, -0.0082825535977842785, -0.46334450203595068},
};

static void run_trajectory(const char *name, sc_opt_config cfg, const double expect[5][3])
{
    static const float a[3] = {1, 2, 0.5f}, c[3] = {0.3f, -0.7f, 1.5f};
    sc_arena w;
    sc_arena_init(&w, "weights", 1 << 16, 0);
    sc_tensor *p = sc_param_new(&w, 1, (int64_t[]){3}, "p");
    p->data[0] = 1;
    p->data[1] = 0.5f;
    p->data[2] = -1;
    sc_optim o;
    sc_err err;
    ck_assert_int_eq(sc_optim_init(&o, cfg, &p, 1, &err), SC_OK);
    for (int step = 0; step < 5; step++) {
        sc_optim_zero_grad(&o);
        for (int i = 0; i < 3; i++) p->grad[i] = a[i] * (p->data[i] - c[i]);
        sc_optim_step(&o);
        char label[64];
        snprintf(label, sizeof label, "%s step %d", name, step + 1);
        double got[3] = {p->data[0], p->data[1], p->data[2]};
        sc_check_close_d(label, got, expect[step], 3, 1e-6, 1e-5);
    }
    sc_optim_free(&o);
    sc_arena_free(&w);
}

START_TEST(test_optimizers)
{
    sc_opt_config c = sc_opt_defaults(SC_OPT_SGD, 0.1f);
    run_trajectory("sgd", c, sgd_plain);
    c.momentum = 0.9f;
    c.weight_decay = 0.01f;
    run_trajectory("sgd momentum", c, sgd_momentum);
    c.nesterov = 1;
    run_trajectory("sgd nesterov", c, sgd_nesterov);
    c = sc_opt_defaults(SC_OPT_ADAM, 0.1f);
    c.weight_decay = 0.01f;
    run_trajectory("adam", c, adam_l2);
    c = sc_opt_defaults(SC_OPT_ADAMW, 0.1f);
    c.weight_decay = 0.1f;
    run_trajectory("adamw", c, adamw);
}
END_TEST

/* A parameter of 49157 elements is updated in pieces on the thread pool;
 * each element i repeats the trajectory of element i % 3 above. With
 * sc_optim_step_zero_grad the gradients are zero after every step, and the
 * parameters have the same bits for 1 and 3 threads. */
START_TEST(test_optimizer_pieces)
{
    static const float a[3] = {1, 2, 0.5f}, c[3] = {0.3f, -0.7f, 1.5f}, start[3] = {1, 0.5f, -1};
    enum { N = 49157 };
    float *first = malloc(sizeof(float) * N);
    ck_assert_ptr_nonnull(first);
    for (int threads = 1; threads <= 3; threads += 2) {
        sc_set_threads(threads);
        sc_arena w;
        sc_arena_init(&w, "weights", 1 << 20, 0);
        sc_tensor *p = sc_param_new(&w, 1, (int64_t[]){N}, "p");
        for (int i = 0; i < N; i++) p->data[i] = start[i % 3];
        sc_opt_config cfg = sc_opt_defaults(SC_OPT_ADAM, 0.1f);
        cfg.weight_decay = 0.01f;
        sc_optim o;
        sc_err err;
        ck_assert_int_eq(sc_optim_init(&o, cfg, &p, 1, &err), SC_OK);
        for (int step = 0; step < 5; step++) {
            for (int i = 0; i < N; i++) p->grad[i] = a[i % 3] * (p->data[i] - c[i % 3]);
            sc_optim_step_zero_grad(&o);
            for (int i = 0; i < N; i++) {
                if (p->grad[i] != 0.0f) ck_abort_msg("step %d: gradient %d left at %g", step + 1, i, (double)p->grad[i]);
                if (fabs(p->data[i] - adam_l2[step][i % 3]) > 1e-6 + 1e-5 * fabs(adam_l2[step][i % 3]))
                    ck_abort_msg("threads=%d step %d: p[%d] = %.9g, expected %.9g", threads, step + 1, i,
                                 (double)p->data[i], adam_l2[step][i % 3]);
            }
        }
        if (threads == 1) memcpy(first, p->data, sizeof(float) * N);
        else ck_assert_msg(memcmp(first, p->data, sizeof(float) * N) == 0, "3 threads differ from 1 thread");
        sc_optim_free(&o);
        sc_arena_free(&w);
    }
    sc_set_threads(0);
    free(first);
}
END_TEST

/* One optimizer job covers the pieces of all parameters: parameters of
 * sizes around the piece size (16384), with one-element ones between them,
 * must each follow the reference trajectory element by element, with
 * every gradient left at zero, on one thread and on three. */
START_TEST(test_optimizer_many_parameters)
{
    static const float a[3] = {1, 2, 0.5f}, c[3] = {0.3f, -0.7f, 1.5f}, start[3] = {1, 0.5f, -1};
    static const int64_t size[5] = {3, 16384, 1, 16385, 40000};
    for (int threads = 1; threads <= 3; threads += 2) {
        sc_set_threads(threads);
        sc_arena w;
        sc_arena_init(&w, "weights", 1 << 20, 0);
        sc_tensor *p[5];
        for (int k = 0; k < 5; k++) {
            p[k] = sc_param_new(&w, 1, (int64_t[]){size[k]}, "p");
            for (int64_t i = 0; i < size[k]; i++) p[k]->data[i] = start[i % 3];
        }
        sc_opt_config cfg = sc_opt_defaults(SC_OPT_ADAM, 0.1f);
        cfg.weight_decay = 0.01f;
        sc_optim o;
        sc_err err;
        ck_assert_int_eq(sc_optim_init(&o, cfg, p, 5, &err), SC_OK);
        for (int step = 0; step < 5; step++) {
            for (int k = 0; k < 5; k++)
                for (int64_t i = 0; i < size[k]; i++) p[k]->grad[i] = a[i % 3] * (p[k]->data[i] - c[i % 3]);
            sc_optim_step_zero_grad(&o);
            for (int k = 0; k < 5; k++)
                for (int64_t i = 0; i < size[k]; i++) {
                    double want = adam_l2[step][i % 3];
                    if (p[k]->grad[i] != 0.0f || fabs(p[k]->data[i] - want) > 1e-6 + 1e-5 * fabs(want))
                        ck_abort_msg("threads=%d step %d: parameter %d [%lld] = %.9g (gradient %g), expected %.9g",
                                     threads, step + 1, k, (long long)i, (double)p[k]->data[i],
                                     (double)p[k]->grad[i], want);
                }
        }
        sc_optim_free(&o);
        sc_arena_free(&w);
    }
    sc_set_threads(0);
}
END_TEST

START_TEST(test_lr_schedule)
{
    /* Constant warm-up of 1 step at 1e-5, then cosine over T_max = 10:
     * lr(e) = ½·0.002·(1 + cos(π (e − 1) / 10)) for e ≥ 1. */
    ck_assert_float_eq(sc_lr_cosine(0.002f, 0, 10, 1, 1e-5f), 1e-5f);
    ck_assert_double_eq_tol(sc_lr_cosine(0.002f, 1, 10, 1, 1e-5f), 0.002, 1e-9);
    ck_assert_double_eq_tol(sc_lr_cosine(0.002f, 6, 10, 1, 1e-5f), 0.001, 1e-9);
    ck_assert_double_eq_tol(sc_lr_cosine(0.002f, 3, 10, 1, 1e-5f), 0.001 * (1 + cos(3.14159265358979323846 * 0.2)), 1e-9);
    ck_assert_double_eq_tol(sc_lr_cosine(0.01f, 10, 10, 0, 0), 0.0, 1e-9);
}
END_TEST

Suite *suite_tensor(void)
{
    Suite *s = suite_create("tensor");
    TCase *fwd = tcase_create("forward");
    tcase_add_test(fwd, test_matmul_values);
    tcase_add_test(fwd, test_elementwise_values);
    tcase_add_test(fwd, test_activation_values);
    tcase_add_test(fwd, test_norm_softmax_values);
    tcase_add_test(fwd, test_reduction_values);
    tcase_add_test(fwd, test_layout_values);
    tcase_add_test(fwd, test_book_view_example);
    tcase_add_test(fwd, test_patch_embed_values);
    suite_add_tcase(s, fwd);
    TCase *grad = tcase_create("backward");
    tcase_set_timeout(grad, 60);
    tcase_add_test(grad, test_grad_matmul);
    tcase_add_test(grad, test_grad_linear);
    tcase_add_test(grad, test_grad_binary);
    tcase_add_test(grad, test_grad_unary);
    tcase_add_test(grad, test_grad_reductions);
    tcase_add_test(grad, test_grad_normalisation);
    tcase_add_test(grad, test_grad_layout);
    tcase_add_test(grad, test_grad_embedding_257);
    tcase_add_test(grad, test_grad_concat_257);
    tcase_add_test(grad, test_grad_permute_257);
    tcase_add_test(grad, test_grad_transpose_257);
    tcase_add_test(grad, test_grad_slice_257);
    tcase_add_test(grad, test_grad_masked_fill_257);
    tcase_add_test(grad, test_grad_gather_rows_257);
    tcase_add_test(grad, test_grad_patch_embed_257);
    tcase_add_test(grad, test_tape_reuse_and_accumulate);
    suite_add_tcase(s, grad);
    TCase *opt = tcase_create("optim");
    tcase_add_test(opt, test_optimizers);
    tcase_add_test(opt, test_optimizer_pieces);
    tcase_add_test(opt, test_optimizer_many_parameters);
    tcase_add_test(opt, test_lr_schedule);
    suite_add_tcase(s, opt);
    return s;
}
