/* check_demo.c — the story `make demo` tells, as an acceptance test.
 *
 * Issue 7 asks the shipped default to reproduce the paper's point: like
 * MONET in Table 1, the tiny VLM in data/tiny-vlm classifies at class
 * level far better than at class-concept level, and SCALE finetuned on a
 * few labels fixes the class-concept level. This runs the demo's own
 * dataset (`scale synth derm7p`, seed 7) through the demo's zero-shot and
 * SCALE methods and checks those two properties on macro F1, the metric
 * the paper reads them from. (CoOp and the linear probes of the demo are
 * left out to keep the test at about 20 seconds; they do not enter the
 * claims.) These are properties of the shipped model and training, not
 * numbers captured from a run: a retrained model or a changed loss passes
 * as long as the story holds, and fails when it does not. Skipped under
 * the sanitizers, where it would take many minutes. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

/* The mean over seeds of `metric` for (method, level, fraction) in a
 * results.csv, or -1 when no row matches. */
static double result_mean(const sc_csv *csv, const char *method, const char *level, const char *metric,
                          double fraction)
{
    int c_method = sc_csv_column(csv, "method"), c_level = sc_csv_column(csv, "level");
    int c_metric = sc_csv_column(csv, "metric"), c_fraction = sc_csv_column(csv, "fraction");
    int c_value = sc_csv_column(csv, "value");
    ck_assert(c_method >= 0 && c_level >= 0 && c_metric >= 0 && c_fraction >= 0 && c_value >= 0);
    double sum = 0;
    int n = 0;
    for (int64_t r = 0; r < csv->n_rows; r++) {
        if (strcmp(sc_csv_get(csv, r, c_method), method) || strcmp(sc_csv_get(csv, r, c_level), level) ||
            strcmp(sc_csv_get(csv, r, c_metric), metric))
            continue;
        if (strtod(sc_csv_get(csv, r, c_fraction), NULL) != fraction) continue;
        sum += strtod(sc_csv_get(csv, r, c_value), NULL);
        n++;
    }
    return n ? sum / n : -1;
}

START_TEST(test_demo_story)
{
    if (getenv("SCALE_ASAN")) return;
    const char *dir = sc_test_tmpdir();
    char data[512], conf[1024], run[512], results[600];
    snprintf(data, sizeof data, "%s/derm7p", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(results, sizeof results, "%s/results.csv", run);
    sc_err err;
    sc_synth_derm7p_options so;
    sc_synth_derm7p_defaults(&so);
    so.seed = 7;   /* the demo's set: make demo runs scale synth derm7p --seed 7 */
    ck_assert_msg(sc_synth_derm7p(data, &so, &err) == SC_OK, "%s", err.msg);
    snprintf(conf, sizeof conf,
             "scale-experiment 1\n"
             "cache   %s/cache\n"
             "model   %s\n"
             "dataset derm7p:%s\n"
             "fractions 0.05 0.25 1\n"
             "seeds   3\n"
             "method zero-shot zero-shot prompts=combination\n"
             "method scale     scale\n",
             dir, sc_test_path("data/tiny-vlm"), data);
    sc_experiment ex;
    ck_assert_msg(sc_experiment_parse(&ex, conf, strlen(conf), "demo.conf", NULL, &err) == SC_OK, "%s", err.msg);
    sc_run_options opt = {NULL, NULL, NULL};
    ck_assert_msg(sc_experiment_main(&ex, run, &opt, &err) == SC_OK, "%s", err.msg);
    sc_experiment_free(&ex);

    sc_csv csv;
    ck_assert_msg(sc_csv_load(&csv, results, NULL, &err) == SC_OK, "%s", err.msg);
    double zs_class = result_mean(&csv, "zero-shot", "class", "macro_f1", 1.0);
    double zs_concept = result_mean(&csv, "zero-shot", "class-concept", "macro_f1", 1.0);
    ck_assert_msg(zs_class > 0 && zs_concept > 0, "results.csv lacks the zero-shot rows");
    /* "clearly better at class level": by a margin far above the spread of
     * the trained methods' seeds (about 0.02) */
    ck_assert_msg(zs_class > zs_concept + 0.15, "zero-shot macro F1: class %.3f, class-concept %.3f", zs_class,
                  zs_concept);
    static const double fractions[] = {0.05, 0.25, 1.0};
    for (int f = 0; f < 3; f++) {
        double scale = result_mean(&csv, "scale", "class-concept", "macro_f1", fractions[f]);
        ck_assert_msg(scale > zs_concept, "fraction %g: SCALE macro F1 %.3f, zero-shot %.3f", fractions[f], scale,
                      zs_concept);
    }
    sc_csv_free(&csv);
}
END_TEST

Suite *suite_demo(void)
{
    Suite *s = suite_create("demo");
    TCase *tc = tcase_create("demo_story");
    tcase_set_tags(tc, "slow");
    tcase_add_test(tc, test_demo_story);
    tcase_set_timeout(tc, 300);
    suite_add_tcase(s, tc);
    return s;
}
