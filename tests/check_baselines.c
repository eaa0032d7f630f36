/* check_baselines.c — the baselines of loss.c section 9: prompt
 * ensembles, zero-shot scores, MONET's concept presence and the linear
 * probe.
 *
 * Evidence: hand-computed values for the scoring functions; for the
 * probe, the optimum of logistic regression known in closed form (with
 * and without inverse-frequency weights) and a separable problem each
 * baseline solves far above chance.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

/* Variants (3, 4) and (0, 2) normalise to (0.6, 0.8) and (0, 1); their
 * sum (0.6, 1.8) normalised is (1, 3) / √10. */
START_TEST(test_prompt_ensemble_by_hand)
{
    const float emb[2 * 1 * 2] = {3, 4, 0, 2};
    float out[2];
    sc_prompt_ensemble(out, emb, 2, 1, 2);
    const float want[2] = {(float)(1 / sqrt(10)), (float)(3 / sqrt(10))};
    sc_check_close("ensemble", out, want, 2, 1e-7, 1e-6);
    /* one variant: just the normalised prompt */
    sc_prompt_ensemble(out, emb, 1, 1, 2);
    sc_check_close("single", out, (const float[]){0.6f, 0.8f}, 2, 1e-7, 1e-6);
}
END_TEST

/* Image (1, 0); prompts (1, 0) and (0.6, 0.8); "No finding." (0, 1):
 * cosines 1 and 0.6, none 0; scale 10 → logits 10 and 6, two-prompt
 * scores σ(10) and σ(6). */
START_TEST(test_vlm_scores_by_hand)
{
    const float img[2] = {1, 0}, prompts[4] = {1, 0, 0.6f, 0.8f}, none[2] = {0, 1};
    float logits[2], two[2];
    sc_vlm_scores(logits, two, img, 1, prompts, 2, none, 2, 10.0f);
    sc_check_close("logits", logits, (const float[]){10, 6}, 2, 1e-5, 1e-6);
    const float want[2] = {(float)(1 / (1 + exp(-10.0))), (float)(1 / (1 + exp(-6.0)))};
    sc_check_close("two-prompt", two, want, 2, 1e-7, 1e-6);
    /* class scores: max over each class's combinations */
    const float z[2 * 3] = {1, 5, 2, -1, -3, -2};
    const int class_of[3] = {1, 0, 1};
    float c[2 * 2];
    sc_group_max(c, z, 2, 3, class_of, 2);
    sc_check_close("group max", c, (const float[]){5, 2, -3, -1}, 4, 0, 0);
}
END_TEST

/* One image (1, 0, 0); concept 0 has targets (1, 0, 0) and (0, 1, 0)
 * (mean cosine 0.5), concept 1 has (0, 0, 1) and (0.8, 0.6, 0) (0.4);
 * the references (0.6, 0.8, 0) and (0, 1, 0) average 0.3. With temp 0.1:
 * σ((0.5 − 0.3) / 0.1) = σ(2), σ((0.4 − 0.3) / 0.1) = σ(1). */
START_TEST(test_concept_presence_by_hand)
{
    const float img[3] = {1, 0, 0};
    /* (V = 2, K = 2, E = 3): variant 0 of concepts 0 and 1, then variant 1 */
    const float targets[2 * 2 * 3] = {1, 0, 0, 0, 0, 1, 0, 1, 0, 0.8f, 0.6f, 0};
    const float refs[2 * 3] = {0.6f, 0.8f, 0, 0, 1, 0};
    float out[2];
    sc_concept_presence(out, img, 1, targets, 2, 2, refs, 2, 3, 0.1);
    const float want[2] = {(float)(1 / (1 + exp(-2.0))), (float)(1 / (1 + exp(-1.0)))};
    sc_check_close("presence", out, want, 2, 1e-6, 1e-5);
    /* MONET's temperature is 1 / exp(4.5944): a multiplier near 98.93 */
    ck_assert_double_eq_tol(exp(SC_MONET_LOG_SCALE), 98.93, 0.01);
}
END_TEST

/* A one-feature problem whose optimum is known: x = +1 for 4 images, 2
 * positive; x = −1 for 6 images, 1 positive. Unweighted BCE fits the
 * odds of each group: w + b = ln(2/2) = 0 and −w + b = ln(1/5), so
 * w = ln5 / 2, b = −ln5 / 2. Inverse-frequency weights (3 positives, 7
 * negatives: w_pos = 10/6, w_neg = 10/14) multiply each group's odds by
 * 7/3: w stays ln5 / 2 and b = ln(7/3) − ln5 / 2. The softmax loss with
 * two outputs fits the same odds in the difference of its logits. */
static void fit_1d(sc_probe *p, sc_probe_loss loss, int weighted)
{
    float X[10];
    uint8_t Y[10 * 2];
    for (int i = 0; i < 10; i++) {
        X[i] = i < 4 ? 1.0f : -1.0f;
        int pos = i < 2 || i == 4;
        Y[2 * i] = !pos;   /* output 0: negative (softmax only) */
        Y[2 * i + 1] = pos;
    }
    sc_probe_config cfg = sc_probe_defaults();
    cfg.loss = loss;
    cfg.weighted = weighted;
    cfg.l2 = 0;
    cfg.lr = 0.02f;
    cfg.epochs = 4000;
    cfg.batch_size = 10;   /* full batch: plain Adam on a convex loss */
    sc_err err;
    if (loss == SC_PROBE_BCE) {
        uint8_t y1[10];
        for (int i = 0; i < 10; i++) y1[i] = Y[2 * i + 1];
        ck_assert_msg(sc_probe_train(p, X, y1, 10, 1, 1, (const int[]){0, 1}, 1, &cfg, &err) == SC_OK, "%s", err.msg);
    } else {
        ck_assert_msg(sc_probe_train(p, X, Y, 10, 1, 2, (const int[]){0, 2}, 1, &cfg, &err) == SC_OK, "%s", err.msg);
    }
}

START_TEST(test_probe_optimum)
{
    const double w_want = log(5.0) / 2, b_plain = -log(5.0) / 2, b_weighted = log(7.0 / 3) - log(5.0) / 2;
    for (int weighted = 0; weighted < 2; weighted++) {
        sc_probe p;
        fit_1d(&p, SC_PROBE_BCE, weighted);
        double b_want = weighted ? b_weighted : b_plain;
        ck_assert_msg(fabs(p.W->data[0] - w_want) < 1e-2 && fabs(p.b->data[0] - b_want) < 1e-2,
                      "BCE%s: w %g b %g, want %g %g", weighted ? " weighted" : "", (double)p.W->data[0],
                      (double)p.b->data[0], w_want, b_want);
        if (weighted) {
            ck_assert_double_eq_tol(p.w_pos[0], 10.0 / 6, 1e-6);
            ck_assert_double_eq_tol(p.w_neg[0], 10.0 / 14, 1e-6);
        }
        sc_probe_free(&p);

        fit_1d(&p, SC_PROBE_SOFTMAX, weighted);
        double w = p.W->data[1] - p.W->data[0], b = p.b->data[1] - p.b->data[0];
        ck_assert_msg(fabs(w - w_want) < 1e-2 && fabs(b - b_want) < 1e-2, "softmax%s: w %g b %g, want %g %g",
                      weighted ? " weighted" : "", w, b, w_want, b_want);
        if (weighted) {
            /* scikit-learn's balanced weights: 10 / (2 · 7) and 10 / (2 · 3) */
            ck_assert_double_eq_tol(p.w_pos[0], 10.0 / 14, 1e-6);
            ck_assert_double_eq_tol(p.w_pos[1], 10.0 / 6, 1e-6);
        }
        float logits[2], prob[2];
        sc_probe_predict(&p, logits, prob, (const float[]){1.0f}, 1);
        ck_assert_double_eq_tol(prob[0] + prob[1], 1.0, 1e-6);
        sc_probe_free(&p);
    }
}
END_TEST

/* Separable synthetic embeddings: two tasks (3 and 2 classes), images
 * near the sum of their classes' directions, prompts at those
 * directions. Each baseline must beat chance by far on held-out images. */
enum { SEP_N = 120, SEP_E = 24, SEP_K = 5 };

typedef struct {
    float X[SEP_N * SEP_E];      /* normalised */
    uint8_t Y[SEP_N * SEP_K];
    float prompts[SEP_K * SEP_E];
} separable;

static void separable_init(separable *s)
{
    float dir[SEP_K * SEP_E];
    sc_fill_normal(dir, SEP_K * SEP_E, 41, 1.0f);
    sc_normalize_rows(s->prompts, dir, SEP_K, SEP_E);
    sc_fill_normal(s->X, SEP_N * SEP_E, 42, 0.15f);
    memset(s->Y, 0, sizeof s->Y);
    for (int i = 0; i < SEP_N; i++) {
        int a = i % 3, b = 3 + (i / 3) % 2;
        s->Y[i * SEP_K + a] = s->Y[i * SEP_K + b] = 1;
        for (int j = 0; j < SEP_E; j++) s->X[i * SEP_E + j] += s->prompts[a * SEP_E + j] + s->prompts[b * SEP_E + j];
    }
    sc_normalize_rows(s->X, s->X, SEP_N, SEP_E);
}

/* Accuracy of argmax within each task, on images [n0, SEP_N). */
static double task_accuracy(const float *scores, const uint8_t *Y, int n0)
{
    static const int offset[3] = {0, 3, 5};
    int right = 0, total = 0;
    for (int i = n0; i < SEP_N; i++)
        for (int t = 0; t < 2; t++) {
            int best = offset[t];
            for (int k = offset[t]; k < offset[t + 1]; k++)
                if (scores[i * SEP_K + k] > scores[i * SEP_K + best]) best = k;
            right += Y[i * SEP_K + best];
            total++;
        }
    return (double)right / total;
}

START_TEST(test_baselines_beat_chance)
{
    separable *s = malloc(sizeof *s);
    separable_init(s);
    float scores[SEP_N * SEP_K], two[SEP_N * SEP_K];
    const float none[SEP_E] = {1};    /* an unrelated direction */
    float none_n[SEP_E];
    sc_normalize_rows(none_n, none, 1, SEP_E);
    /* zero-shot: chance is (1/3 + 1/2) / 2 */
    sc_vlm_scores(scores, two, s->X, SEP_N, s->prompts, SEP_K, none_n, SEP_E, 100.0f);
    ck_assert_msg(task_accuracy(scores, s->Y, 0) > 0.95, "zero-shot %g", task_accuracy(scores, s->Y, 0));
    /* concept presence, one variant per concept, the unrelated direction as reference */
    sc_concept_presence(scores, s->X, SEP_N, s->prompts, 1, SEP_K, none_n, 1, SEP_E, 0.01);
    ck_assert_msg(task_accuracy(scores, s->Y, 0) > 0.95, "concept presence %g", task_accuracy(scores, s->Y, 0));
    /* linear probes, trained on the first 60 images */
    for (int loss = 0; loss < 2; loss++) {
        sc_probe p;
        sc_probe_config cfg = sc_probe_defaults();
        cfg.loss = loss ? SC_PROBE_SOFTMAX : SC_PROBE_BCE;
        cfg.lr = 0.01f;
        cfg.epochs = 100;
        sc_err err;
        ck_assert_msg(sc_probe_train(&p, s->X, s->Y, 60, SEP_E, SEP_K, (const int[]){0, 3, 5}, 2, &cfg, &err) ==
                          SC_OK, "%s", err.msg);
        sc_probe_predict(&p, scores, two, s->X, SEP_N);
        double acc = task_accuracy(two, s->Y, 60);
        ck_assert_msg(acc > 0.95, "linear probe (%s): held-out accuracy %g", loss ? "softmax" : "BCE", acc);
        ck_assert_msg(p.final_loss < 0.3, "final loss %g", p.final_loss);
        sc_probe_free(&p);
    }
    free(s);
}
END_TEST

START_TEST(test_probe_refuses)
{
    sc_probe p;
    sc_err err;
    float X[2] = {0, 1};
    uint8_t Y[2] = {0, 1};
    sc_probe_config cfg = sc_probe_defaults();
    ck_assert_int_eq(sc_probe_train(&p, X, Y, 2, 1, 1, (const int[]){0, 2}, 1, &cfg, &err), SC_EARG);
    ck_assert_int_eq(sc_probe_train(&p, X, Y, 0, 1, 1, (const int[]){0, 1}, 1, &cfg, &err), SC_EARG);
    cfg.epochs = 0;
    ck_assert_int_eq(sc_probe_train(&p, X, Y, 2, 1, 1, (const int[]){0, 1}, 1, &cfg, &err), SC_EARG);
    ck_assert_msg(strstr(err.msg, "epochs") != NULL, "%s", err.msg);
}
END_TEST

Suite *suite_baselines(void)
{
    Suite *s = suite_create("baselines");
    TCase *tc = tcase_create("baselines");
    tcase_add_test(tc, test_prompt_ensemble_by_hand);
    tcase_add_test(tc, test_vlm_scores_by_hand);
    tcase_add_test(tc, test_concept_presence_by_hand);
    tcase_add_test(tc, test_probe_optimum);
    tcase_add_test(tc, test_baselines_beat_chance);
    tcase_add_test(tc, test_probe_refuses);
    suite_add_tcase(s, tc);
    return s;
}
