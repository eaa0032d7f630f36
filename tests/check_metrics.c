/* check_metrics.c — the metrics of Sec. 2.3.2 (loss.c section 8): hand
 * counted cases, the tie rule of the AUC, and the scikit-learn golden cases. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "golden_util.h"

/* Tolerance for the metrics: they are ratios of small integers and a rank
 * sum, so only double rounding separates us from scikit-learn. */
#define METRIC_TOL 1e-9

/* Four images, three classes, counted by hand (book/06 walks through it):
 *   image  scores            truth  argmax
 *   0      0.9 0.1 0.0       0      0   right
 *   1      0.2 0.7 0.1       1      1   right
 *   2      0.5 0.4 0.1       1      0   wrong
 *   3      0.3 0.3 0.4       0      2   wrong
 * class 0: tp 1 fp 1 fn 1 tn 1 -> accuracy 1/2, recall 1/2, F1 1/2
 * class 1: tp 1 fp 0 fn 1 tn 2 -> accuracy 3/4, recall 1/2, F1 2/3
 * class 2: never true; tp 0 fp 1 -> accuracy 3/4, recall 0, F1 0, no AUC
 * AUC class 0: positives {0.9, 0.3} vs negatives {0.2, 0.5}: 3 of 4 pairs;
 * AUC class 1: positives {0.7, 0.4} vs negatives {0.1, 0.3}: 4 of 4. */
START_TEST(test_metrics_by_hand)
{
    const float scores[4 * 3] = {0.9f, 0.1f, 0.0f, 0.2f, 0.7f, 0.1f, 0.5f, 0.4f, 0.1f, 0.3f, 0.3f, 0.4f};
    const uint8_t truth[4 * 3] = {1, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0};
    uint8_t pred[4 * 3];
    sc_predict_argmax(pred, scores, 4, 3);
    const uint8_t want_pred[4 * 3] = {1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1};
    ck_assert_mem_eq(pred, want_pred, sizeof pred);
    sc_metrics m;
    sc_metrics_eval(&m, scores, truth, pred, 4, 3);
    ck_assert_double_eq_tol(m.accuracy, (0.5 + 0.75 + 0.75) / 3, METRIC_TOL);
    ck_assert_double_eq_tol(m.macro_recall, (0.5 + 0.5 + 0.0) / 3, METRIC_TOL);
    ck_assert_double_eq_tol(m.macro_f1, (0.5 + 2.0 / 3.0 + 0.0) / 3, METRIC_TOL);
    ck_assert_double_eq_tol(m.auc, (0.75 + 1.0) / 2, METRIC_TOL);
    ck_assert_int_eq(m.auc_classes, 2);
}
END_TEST

/* A tied (positive, negative) pair counts one half: positives {0.5, 0.9},
 * negatives {0.5, 0.5} -> (0.5 + 0.5 + 1 + 1) / 4. */
START_TEST(test_auc_ties_count_half)
{
    const float s[4] = {0.5f, 0.5f, 0.5f, 0.9f};
    const uint8_t y[4] = {0, 1, 0, 1};
    ck_assert_double_eq_tol(sc_roc_auc(s, y, 4, 1), 0.75, METRIC_TOL);
    const uint8_t none[4] = {0, 0, 0, 0};
    ck_assert(isnan(sc_roc_auc(s, none, 4, 1)));
    /* every score equal: the classifier knows nothing, AUC 1/2 */
    const float flat[4] = {0.3f, 0.3f, 0.3f, 0.3f};
    ck_assert_double_eq_tol(sc_roc_auc(flat, y, 4, 1), 0.5, METRIC_TOL);
}
END_TEST

START_TEST(test_threshold_and_two_prompt)
{
    const float s[3] = {0.49f, 0.5f, 0.51f};
    uint8_t p[3];
    sc_predict_threshold(p, s, 3, 1, 0.5f);
    ck_assert(p[0] == 0 && p[1] == 1 && p[2] == 1);
    /* softmax([s a, s b])[0] with s = 10, a = 0.3, b = 0.1: 1 / (1 + e^-2) */
    const float present[2] = {0.3f, 0.1f}, none[1] = {0.1f};
    float out[2];
    sc_two_prompt_scores(out, present, none, 1, 2, 10.0f);
    ck_assert_double_eq_tol(out[0], 1.0 / (1.0 + exp(-2.0)), 1e-6);
    ck_assert_double_eq_tol(out[1], 0.5, 1e-7);
}
END_TEST

/* The two examples of book/06-metrics.md through `scale metrics`: the
 * hand-counted case above, and a constant predictor ("absent" for every
 * lesion) on Derm7p's pigmentation counts (588 absent, 3 localized
 * regular, 115 diffuse regular, 40 localized irregular, 265 diffuse
 * irregular; 1011 lesions). Its per-class accuracies are 588/1011 for
 * "absent" and 1 - n_k/1011 for the others, so the mean is
 * (588/1011 + 4 - 423/1011) / 5 = 0.8326 while the macro recall is 1/5. */
START_TEST(test_book_commands)
{
    char out[1024];
    scale_run("tests/examples/metrics-4x3", "metrics --scores scores.npy --labels labels.npy", out, sizeof out);
    ck_assert_double_eq_tol(golden_output_value(out, "accuracy"), 2.0 / 3.0, METRIC_TOL);
    ck_assert_double_eq_tol(golden_output_value(out, "macro_f1"), 7.0 / 18.0, METRIC_TOL);
    ck_assert_double_eq_tol(golden_output_value(out, "auc"), 0.875, METRIC_TOL);
    scale_run("tests/examples/constant-absent", "metrics --scores scores.npy --labels labels.npy", out, sizeof out);
    ck_assert_double_eq_tol(golden_output_value(out, "accuracy"), (588.0 / 1011 + 4 - 423.0 / 1011) / 5, METRIC_TOL);
    ck_assert_double_eq_tol(golden_output_value(out, "macro_recall"), 0.2, METRIC_TOL);
    /* F1 of "absent": 2·588 / (2·588 + 423) */
    ck_assert_double_eq_tol(golden_output_value(out, "macro_f1"), 2.0 * 588 / (2 * 588 + 423) / 5, METRIC_TOL);
    ck_assert_double_eq_tol(golden_output_value(out, "auc"), 0.5, METRIC_TOL);
}
END_TEST

/* A NaN score has no rank (the AUC sort would have no order) and an
 * infinite one no probability: `scale metrics` refuses both, naming the
 * file and the first bad entry, instead of printing a number. */
START_TEST(test_command_rejects_non_finite_scores)
{
    const char *dir = sc_test_tmpdir();
    const float bad[2] = {NAN, INFINITY};
    const char *const shown[2] = {"nan", "inf"};
    for (int b = 0; b < 2; b++) {
        float S[4 * 3] = {0.9f, 0.1f, 0.0f, 0.2f, 0.7f, 0.1f, 0.5f, 0.4f, 0.1f, 0.3f, 0.3f, 0.4f};
        S[2 * 3 + 1] = bad[b];                    /* entry (2, 1) */
        S[3 * 3 + 0] = bad[b];                    /* a later one, not reported */
        char path[600], args[2048], out[1024], want[1024];
        snprintf(path, sizeof path, "%s/S%d.npy", dir, b);
        sc_err err;
        ck_assert_msg(sc_npy_write_f32(path, S, 2, (int64_t[]){4, 3}, &err) == SC_OK, "%s", err.msg);
        snprintf(args, sizeof args, "metrics --scores %s --labels %s", path,
                 sc_test_path("tests/examples/metrics-4x3/labels.npy"));
        ck_assert_int_eq(scale_status(dir, args, out, sizeof out), 1);
        snprintf(want, sizeof want, "scale metrics: %s: entry (2, 1) is %s, not a finite score\n", path, shown[b]);
        ck_assert_str_eq(out, want);
    }
}
END_TEST

/* ---- the scikit-learn golden cases (tests/golden/metrics/) ---- */

static const char *const metric_names[4] = {"accuracy", "macro_recall", "macro_f1", "auc"};

START_TEST(test_golden_metrics_library)
{
    int multilabel = _i == 1;
    const char *dir = multilabel ? "tests/golden/metrics/multi" : "tests/golden/metrics/single";
    char path[256];
    int64_t n_scores, n_labels;
    snprintf(path, sizeof path, "%s/scores.npy", sc_test_path(dir));
    float *s = golden_floats(path, &n_scores);
    snprintf(path, sizeof path, "%s/labels.npy", sc_test_path(dir));
    float *y = golden_floats(path, &n_labels);
    /* single: labels are (N) indices and scores (N, K); multi: both (N, K) */
    int64_t N = multilabel ? n_labels / 4 : n_labels;
    int K = (int)(n_scores / N);
    uint8_t *truth = calloc((size_t)(N * K), 1), *pred = calloc((size_t)(N * K), 1);
    for (int64_t i = 0; i < N; i++)
        for (int k = 0; k < K; k++) truth[i * K + k] = multilabel ? y[i * K + k] != 0 : y[i] == (float)k;
    if (multilabel) sc_predict_threshold(pred, s, N, K, 0.5f);
    else sc_predict_argmax(pred, s, N, K);
    sc_metrics m;
    sc_metrics_eval(&m, s, truth, pred, N, K);
    char *text = golden_case_text(dir);
    const double got[4] = {m.accuracy, m.macro_recall, m.macro_f1, m.auc};
    for (int k = 0; k < 4; k++) {
        double want = golden_number(text, metric_names[k]);
        ck_assert_msg(fabs(got[k] - want) <= METRIC_TOL, "%s %s: %.17g vs scikit-learn %.17g", dir, metric_names[k],
                      got[k], want);
    }
    free(text);
    free(truth);
    free(pred);
    free(s);
    free(y);
}
END_TEST

START_TEST(test_golden_metrics_command)
{
    const char *dir = _i == 1 ? "tests/golden/metrics/multi" : "tests/golden/metrics/single";
    static const char *const inputs[] = {"scores.npy", "labels.npy"};
    char out[1024];
    golden_run(dir, inputs, 2, out, sizeof out);
    char *text = golden_case_text(dir);
    for (int k = 0; k < 4; k++) {
        double want = golden_number(text, metric_names[k]), got = golden_output_value(out, metric_names[k]);
        ck_assert_msg(fabs(got - want) <= METRIC_TOL, "%s %s: %.17g vs scikit-learn %.17g", dir, metric_names[k], got,
                      want);
    }
    free(text);
}
END_TEST

Suite *suite_metrics(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_add_test(tc, test_metrics_by_hand);
    tcase_add_test(tc, test_auc_ties_count_half);
    tcase_add_test(tc, test_threshold_and_two_prompt);
    tcase_add_test(tc, test_book_commands);
    tcase_add_test(tc, test_command_rejects_non_finite_scores);
    suite_add_tcase(s, tc);
    TCase *golden = tcase_create("metrics_golden");
    tcase_add_loop_test(golden, test_golden_metrics_library, 0, 2);
    tcase_add_loop_test(golden, test_golden_metrics_command, 0, 2);
    suite_add_tcase(s, golden);
    return s;
}
