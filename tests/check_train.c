/* check_train.c — training SCALE on cached embeddings (loss.c sections 6-7):
 * the gradient of the whole chain (adapters, normalisation, Q, loss) w.r.t.
 * the adapter weights and α against finite differences, learning linearly
 * separable synthetic embeddings, and the batch-size rule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

/* Synthetic cached embeddings: H = 5 combinations with the structure of
 * Derm7p's pigmentation (classes 0 0 0 1 1, concepts 0..4). Image i of
 * combination h is centre[h] + noise; the prompts are unrelated random
 * vectors, so before training the prompts do not point at their images. */
typedef struct {
    int64_t N, C;
    int H;
    float *images, *prompts, *labels, *texts;
    int *combo;
    sc_train_data data;
} synthetic;

static const int synth_class[5] = {0, 0, 0, 1, 1};
static const int synth_concept[5] = {0, 1, 2, 3, 4};

static void make_synthetic(synthetic *s, int64_t N, int64_t C, float noise, int paired_texts, uint64_t seed)
{
    sc_rng rng;
    sc_rng_seed(&rng, seed);
    s->N = N;
    s->C = C;
    s->H = 5;
    float *centre = malloc(sizeof(float) * (size_t)(s->H * C));
    s->prompts = malloc(sizeof(float) * (size_t)(s->H * C));
    s->images = malloc(sizeof(float) * (size_t)(N * C));
    s->texts = paired_texts ? malloc(sizeof(float) * (size_t)(N * C)) : NULL;
    s->labels = calloc((size_t)(N * s->H), sizeof(float));
    s->combo = malloc(sizeof(int) * (size_t)N);
    for (int64_t i = 0; i < s->H * C; i++) {
        centre[i] = sc_rng_normal(&rng);
        s->prompts[i] = sc_rng_normal(&rng);
    }
    for (int64_t i = 0; i < N; i++) {
        int h = (int)sc_rng_below(&rng, (uint32_t)s->H);
        s->combo[i] = h;
        s->labels[i * s->H + h] = 1;
        for (int64_t c = 0; c < C; c++) {
            s->images[i * C + c] = centre[h * C + c] + noise * sc_rng_normal(&rng);
            /* a paired "report": the prompt plus its own wording noise */
            if (s->texts) s->texts[i * C + c] = s->prompts[h * C + c] + 0.3f * sc_rng_normal(&rng);
        }
    }
    free(centre);
    sc_train_data d = {N, C, s->H, 2, 5, s->images, s->texts, s->combo, s->labels, NULL, s->prompts,
                       synth_class, synth_concept};
    s->data = d;
}

static void free_synthetic(synthetic *s)
{
    free(s->images);
    free(s->prompts);
    free(s->texts);
    free(s->labels);
    free(s->combo);
}

/* ---- the gradient of the whole chain ---- */

static double batch_loss(sc_ctx *ctx, const sc_scale_model *m, const sc_train_data *d, const int *index, int64_t B)
{
    int was = sc_ctx_set_grad(ctx, 0);
    sc_ctx_reset(ctx);
    sc_loss_terms t;
    sc_scale_batch_loss(ctx, m, d, index, B, &t);
    sc_ctx_set_grad(ctx, was);
    return t.total;
}

static void check_chain_gradient(int paired_texts, sc_supcon_reading reading, sc_alpha_mode mode)
{
    enum { N = 6, C = 8 };
    synthetic s;
    make_synthetic(&s, N, C, 0.8f, paired_texts, 3);
    sc_train_config cfg = sc_train_defaults();
    /* Scales that keep the loss smooth at the step used. */
    cfg.loss.logit_scale = 4;
    cfg.loss.tau = 0.5;
    cfg.loss.supcon = reading;
    cfg.adapter.alpha_mode = mode;
    cfg.adapter.alpha_init = 0.4f;
    cfg.seed = 5;
    sc_scale_model m;
    sc_err err;
    ck_assert_msg(sc_scale_model_init(&m, C, &cfg, &err) == SC_OK, "%s", err.msg);
    const int index[N] = {4, 0, 3, 1, 5, 2};
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_optim_zero_grad(&m.opt);
    sc_tensor *loss = sc_scale_batch_loss(&ctx, &m, &s.data, index, N, NULL);
    sc_backward(&ctx, loss);
    const float step = 1.0f / 512;
    for (int k = 0; k < m.n_params; k++) {
        sc_tensor *p = m.params[k];
        int64_t n = sc_numel(p);
        double *fd = malloc(sizeof(double) * (size_t)n), *an = malloc(sizeof(double) * (size_t)n);
        for (int64_t i = 0; i < n; i++) {
            float keep = p->data[i];
            p->data[i] = keep + step;
            double v_up = p->data[i], up = batch_loss(&ctx, &m, &s.data, index, N);
            p->data[i] = keep - step;
            double v_down = p->data[i], down = batch_loss(&ctx, &m, &s.data, index, N);
            p->data[i] = keep;
            fd[i] = (up - down) / (v_up - v_down);
            an[i] = p->grad[i];
        }
        char name[160];
        snprintf(name, sizeof name, "d%s (%s texts, %s, alpha mode %d)", p->name, paired_texts ? "paired" : "prompt",
                 reading == SC_SUPCON_ROWS ? "rows" : "cross", (int)mode);
        /* Float forward pass, step 2^-9: rounding of the loss and the
         * curvature each leave about 1e-4 in a difference. */
        sc_check_close_d(name, an, fd, n, 5e-4, 5e-3);
        free(fd);
        free(an);
    }
    sc_ctx_free(&ctx);
    sc_scale_model_free(&m);
    free_synthetic(&s);
}

START_TEST(test_chain_gradient_matches_finite_differences)
{
    check_chain_gradient(_i & 1, (_i >> 1) & 1 ? SC_SUPCON_CROSS : SC_SUPCON_ROWS,
                         (_i >> 2) == 0 ? SC_ALPHA_SIGMOID : SC_ALPHA_RAW);
}
END_TEST

/* ---- learning separable embeddings ---- */

static double combination_accuracy(const sc_scale_model *m, const synthetic *test)
{
    float *Q = malloc(sizeof(float) * (size_t)(test->N * test->H));
    sc_scale_similarity(Q, m, test->images, test->N, test->prompts, test->H);
    int64_t right = 0;
    for (int64_t i = 0; i < test->N; i++) {
        int best = 0;
        for (int h = 1; h < test->H; h++)
            if (Q[i * test->H + h] > Q[i * test->H + best]) best = h;
        right += best == test->combo[i];
    }
    free(Q);
    return (double)right / (double)test->N;
}

START_TEST(test_learns_separable_embeddings)
{
    synthetic train, test;
    /* the same seed gives the same centres and prompts; test images are
     * the second half of a larger draw */
    make_synthetic(&train, 400, 32, 0.7f, 0, 42);
    make_synthetic(&test, 400, 32, 0.7f, 0, 42);
    train.data.N = 200;
    test.images += 200 * 32;
    test.combo += 200;
    test.N = 200;
    sc_train_config cfg = sc_train_defaults();
    sc_scale_model m;
    sc_err err;
    ck_assert_msg(sc_scale_model_init(&m, 32, &cfg, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_train_data_check(&train.data, "synthetic", &err) == SC_OK, "%s", err.msg);
    double before = combination_accuracy(&m, &test);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    double first = sc_scale_train_epoch(&m, &ctx, &train.data), last = first;
    for (int e = 1; e < cfg.epochs; e++) last = sc_scale_train_epoch(&m, &ctx, &train.data);
    double after = combination_accuracy(&m, &test);
    ck_assert_int_eq(m.epoch, 150);
    ck_assert_msg(after > 0.95, "held-out combination accuracy %.3f (before training %.3f)", after, before);
    ck_assert_msg(before < 0.6, "the prompts already matched before training (%.3f)", before);
    ck_assert_msg(last < first / 4, "loss %.3f -> %.3f", first, last);
    sc_ctx_free(&ctx);
    sc_scale_model_free(&m);
    test.images -= 200 * 32;
    test.combo -= 200;
    free_synthetic(&train);
    free_synthetic(&test);
}
END_TEST

START_TEST(test_batch_size_rule)
{
    ck_assert_int_eq(sc_train_batch_size(413), 64); /* Derm7p train */
    ck_assert_int_eq(sc_train_batch_size(206), 32); /* half of it */
    ck_assert_int_eq(sc_train_batch_size(103), 16); /* a quarter */
    ck_assert_int_eq(sc_train_batch_size(40), 8);   /* 10 % */
    ck_assert_int_eq(sc_train_batch_size(20), 8);   /* 5 % */
    ck_assert_int_eq(sc_train_batch_size(5), 5);
}
END_TEST

Suite *suite_train(void)
{
    Suite *s = suite_create("train");
    TCase *grad = tcase_create("train_gradient");
    tcase_add_loop_test(grad, test_chain_gradient_matches_finite_differences, 0, 8);
    suite_add_tcase(s, grad);
    TCase *learn = tcase_create("train_synthetic");
    tcase_set_timeout(learn, 60);
    tcase_add_test(learn, test_learns_separable_embeddings);
    tcase_add_test(learn, test_batch_size_rule);
    suite_add_tcase(s, learn);
    return s;
}
