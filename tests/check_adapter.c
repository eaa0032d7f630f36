/* check_adapter.c — CLIP-Adapter with learnable α (nn.c section 8): a
 * forward pass by hand for both ReLU forms, the three α modes, and the
 * backward pass of the op against central finite differences, and that
 * the number of threads changes no bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

/* C = 4, R = 1 (reduction 4). f = (1, -2, 3, 0.5), W1 = (0.5, 0.25, 0.25, 1):
 * f W1ᵀ = 0.5 - 0.5 + 0.75 + 0.5 = 1.25, ReLU keeps it. W2 = (1, -1, 2, 0)ᵀ:
 * hidden W2ᵀ = (1.25, -1.25, 2.5, 0); the official second ReLU zeroes the
 * -1.25. Blend with α = 0.2: 0.2 A(f) + 0.8 f. */
START_TEST(test_forward_by_hand)
{
    const float f[4] = {1, -2, 3, 0.5f}, w1[4] = {0.5f, 0.25f, 0.25f, 1}, w2[4] = {1, -1, 2, 0};
    float out[4], hidden[1], up[4];
    sc_adapter_forward(out, hidden, up, f, w1, w2, 0.2f, 1, 1, 4, 1);
    const float two_relu[4] = {1.05f, -1.6f, 2.9f, 0.4f};
    sc_check_close("two ReLUs", out, two_relu, 4, 1e-6, 1e-6);
    sc_adapter_forward(out, hidden, up, f, w1, w2, 0.2f, 0, 1, 4, 1);
    const float one_relu[4] = {1.05f, -1.85f, 2.9f, 0.4f};
    sc_check_close("one ReLU (Eq. 1)", out, one_relu, 4, 1e-6, 1e-6);
}
END_TEST

START_TEST(test_alpha_modes)
{
    sc_arena weights;
    sc_arena_init(&weights, "weights", 1 << 16, 0);
    sc_rng rng;
    sc_rng_seed(&rng, 1);
    sc_adapter_config cfg = sc_adapter_defaults();
    ck_assert_int_eq(cfg.reduction, 4);
    ck_assert_int_eq(cfg.relu_after_up, 1);
    ck_assert(cfg.alpha_mode == SC_ALPHA_SIGMOID);
    sc_adapter ad;
    sc_adapter_init(&ad, &weights, 16, cfg, &rng, "image_adapter");
    ck_assert_int_eq(ad.R, 4);
    ck_assert_str_eq(ad.w1->name, "image_adapter.w1");
    /* sigmoid: the parameter is logit(0.2) = log(1/4) */
    ck_assert_double_eq_tol(ad.alpha->data[0], log(0.25), 1e-6);
    ck_assert_double_eq_tol(sc_adapter_alpha(&ad), 0.2, 1e-6);
    /* weights in ±1/sqrt(fan_in) */
    ck_assert(sc_max_abs(ad.w1->data, 64) <= 0.25);
    ck_assert(sc_max_abs(ad.w2->data, 64) <= 0.5);
    ck_assert(sc_max_abs(ad.w2->data, 64) > 0.25);
    /* clamp: α is the parameter, put back into [0, 1] after a step */
    cfg.alpha_mode = SC_ALPHA_CLAMP;
    sc_adapter_init(&ad, &weights, 16, cfg, &rng, "a");
    ck_assert_double_eq_tol(sc_adapter_alpha(&ad), 0.2, 1e-7);
    ad.alpha->data[0] = 1.3f;
    sc_adapter_project(&ad);
    ck_assert_double_eq(sc_adapter_alpha(&ad), 1.0);
    ad.alpha->data[0] = -0.1f;
    sc_adapter_project(&ad);
    ck_assert_double_eq(sc_adapter_alpha(&ad), 0.0);
    /* raw: left alone */
    cfg.alpha_mode = SC_ALPHA_RAW;
    sc_adapter_init(&ad, &weights, 16, cfg, &rng, "a");
    ad.alpha->data[0] = 1.3f;
    sc_adapter_project(&ad);
    ck_assert_double_eq_tol(sc_adapter_alpha(&ad), 1.3, 1e-7);
    sc_arena_free(&weights);
}
END_TEST

/* J = Σ g ⊙ adapter(f), with g fixed, through the forward kernel. The
 * pattern of active ReLUs is written to `active` (B R + B C entries). */
enum { B = 3, C = 16, R = 4 };

static double objective(uint8_t *active, const sc_adapter *ad, const sc_tensor *f, const float *g)
{
    float out[B * C], hidden[B * R], up[B * C];
    sc_adapter_forward(out, hidden, up, f->data, ad->w1->data, ad->w2->data, sc_adapter_alpha(ad),
                       ad->cfg.relu_after_up, B, C, R);
    for (int i = 0; i < B * R; i++) active[i] = hidden[i] > 0;
    for (int i = 0; i < B * C; i++) active[B * R + i] = up[i] > 0;
    double J = 0;
    for (int i = 0; i < B * C; i++) J += (double)g[i] * (double)out[i];
    return J;
}

/* Central differences of J for every entry of t. The adapter is piecewise
 * linear in W1, W2 and f (and linear in α itself), so the difference is
 * exact up to float rounding unless the step moves a ReLU across its kink;
 * such entries are marked NAN and left out. The sigmoid of the α logit
 * adds an O(step²) term. Returns how many entries were left out. */
static int finite_differences(double *fd, const sc_adapter *ad, const sc_tensor *f, const float *g, sc_tensor *t,
                              float step)
{
    uint8_t base[B * R + B * C], a_up[B * R + B * C], a_down[B * R + B * C];
    objective(base, ad, f, g);
    int skipped = 0;
    for (int64_t i = 0; i < sc_numel(t); i++) {
        float keep = t->data[i];
        t->data[i] = keep + step;
        double up_value = t->data[i], J_up = objective(a_up, ad, f, g);
        t->data[i] = keep - step;
        double down_value = t->data[i], J_down = objective(a_down, ad, f, g);
        t->data[i] = keep;
        fd[i] = (J_up - J_down) / (up_value - down_value);
        if (memcmp(base, a_up, sizeof base) || memcmp(base, a_down, sizeof base)) {
            fd[i] = NAN;
            skipped++;
        }
    }
    return skipped;
}

static void check_backward(sc_alpha_mode mode, int relu_after_up)
{
    sc_arena weights;
    sc_arena_init(&weights, "weights", 1 << 16, 0);
    sc_rng rng;
    sc_rng_seed(&rng, 7 + (uint64_t)mode);
    sc_adapter_config cfg = sc_adapter_defaults();
    cfg.alpha_mode = mode;
    cfg.relu_after_up = relu_after_up;
    sc_adapter ad;
    sc_adapter_init(&ad, &weights, C, cfg, &rng, "ad");
    /* f as a trainable input too, to check df */
    sc_tensor *f = sc_param_new(&weights, 2, (int64_t[]){B, C}, "f");
    sc_fill_normal(f->data, B * C, 21 + (uint64_t)mode, 1.0f);
    float g[B * C];
    sc_fill_normal(g, B * C, 33, 1.0f);

    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_tensor *out = sc_adapter_apply(&ctx, &ad, f);
    ck_assert_ptr_nonnull(out->node);
    memcpy(sc__grad(&ctx, out), g, sizeof g);
    out->node->backward(&ctx, out->node);

    sc_tensor *checked[4] = {ad.w1, ad.w2, ad.alpha, f};
    for (int k = 0; k < 4; k++) {
        sc_tensor *t = checked[k];
        int64_t n = sc_numel(t);
        double *fd = malloc(sizeof(double) * (size_t)n), *an = malloc(sizeof(double) * (size_t)n);
        int skipped = finite_differences(fd, &ad, f, g, t, 1e-2f);
        ck_assert_msg(skipped <= n / 4, "%d of %lld differences cross a kink", skipped, (long long)n);
        for (int64_t i = 0; i < n; i++) an[i] = isnan(fd[i]) ? NAN : t->grad[i];
        char name[160];
        snprintf(name, sizeof name, "d%s (alpha mode %d, %d ReLU)", t->name, (int)mode, relu_after_up ? 2 : 1);
        sc_check_close_d(name, an, fd, n, 2e-4, 1e-3);
        free(fd);
        free(an);
    }
    sc_ctx_free(&ctx);
    sc_arena_free(&weights);
}

START_TEST(test_backward_matches_finite_differences)
{
    check_backward((sc_alpha_mode)(_i % 3), _i / 3 == 0);
}
END_TEST

/* The passes between the products run over row blocks on the thread
 * pool, and dα is summed row by row: one thread and two must give the same
 * bits (B·C = 64·768 makes two blocks). */
START_TEST(test_threads_do_not_change_the_adapter)
{
    const int64_t rows = 64, width = 768, bottleneck = 192;
    size_t batch_bytes = sizeof(float) * (size_t)(rows * width);
    size_t weight_bytes = sizeof(float) * (size_t)(bottleneck * width);
    size_t hidden_bytes = sizeof(float) * (size_t)(rows * bottleneck);
    float *f = malloc(batch_bytes), *dout = malloc(batch_bytes), *w1 = malloc(weight_bytes), *w2 = malloc(weight_bytes);
    sc_fill_normal(f, rows * width, 51, 1.0f);
    sc_fill_normal(dout, rows * width, 52, 0.01f);
    sc_fill_normal(w1, bottleneck * width, 53, 0.03f);
    sc_fill_normal(w2, bottleneck * width, 54, 0.07f);
    float *out[2], *dw1[2], *dw2[2];
    double dalpha[2] = {0, 0};
    for (int run = 0; run < 2; run++) {
        float *hidden = malloc(hidden_bytes), *up = malloc(batch_bytes);
        float *d_up = malloc(batch_bytes), *d_hidden = malloc(hidden_bytes);
        out[run] = malloc(batch_bytes);
        dw1[run] = calloc(1, weight_bytes);
        dw2[run] = calloc(1, weight_bytes);
        sc_set_threads(run + 1);
        sc_adapter_forward(out[run], hidden, up, f, w1, w2, 0.3f, 1, rows, width, bottleneck);
        sc_adapter_backward(NULL, dw1[run], dw2[run], &dalpha[run], d_up, d_hidden, dout, hidden, up, f, w1, w2,
                            0.3f, 1, rows, width, bottleneck);
        free(hidden), free(up), free(d_up), free(d_hidden);
    }
    sc_set_threads(0);
    ck_assert(!memcmp(out[0], out[1], batch_bytes));
    ck_assert(!memcmp(dw1[0], dw1[1], weight_bytes));
    ck_assert(!memcmp(dw2[0], dw2[1], weight_bytes));
    ck_assert_msg(dalpha[0] == dalpha[1], "dα %.17g on one thread, %.17g on two", dalpha[0], dalpha[1]);
    for (int run = 0; run < 2; run++) free(out[run]), free(dw1[run]), free(dw2[run]);
    free(f), free(dout), free(w1), free(w2);
}
END_TEST

Suite *suite_adapter(void)
{
    Suite *s = suite_create("adapter");
    TCase *tc = tcase_create("adapter");
    tcase_add_test(tc, test_forward_by_hand);
    tcase_add_test(tc, test_alpha_modes);
    tcase_add_loop_test(tc, test_backward_matches_finite_differences, 0, 6);
    tcase_add_test(tc, test_threads_do_not_change_the_adapter);
    suite_add_tcase(s, tc);
    return s;
}
