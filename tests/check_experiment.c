/* check_experiment.c — the experiment runner (scale.c section 7).
 *
 * Evidence:
 *  1. nested stratified subsets: every class's count within one of its
 *     share at every fraction, larger fractions only add items, and
 *     different seeds draw different subsets;
 *  2. the config parser: a full config read back field by field, and each
 *     kind of mistake refused with "FILE:LINE: ...";
 *  3. a whole experiment on a synthetic cache of separable embeddings with
 *     every method (CoOp through the clip-tiny golden model): the outputs
 *     exist, results.csv has one row per method × fraction × subset ×
 *     level × metric, the trained methods beat chance, the SVGs are
 *     well-formed XML; with prompts far from the images, SCALE (one adapter
 *     pair for all seven tasks) recovers what zero-shot misses;
 *  4. determinism: the same run on 1 and on 2 threads writes byte-identical
 *     results.csv and explanations.csv;
 *  5. a failing run leaves no run folder and no temporary folder;
 *  6. `scale experiment` as a program, from a Derm7p-layout dataset through
 *     `scale embed` (medclip-tiny) to the report, CoOp included: trained
 *     through MedCLIP's BERT from words and from random class-specific
 *     context, its names cut with room kept for CoOp's period.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check_util.h"
#include "dataset_fixtures.h"
#include "experiment_fixtures.h"
#include "xml_check.h"

/* ---- helpers ---- */

/* dir/name in one of four rotating buffers: use it before the fourth
 * next call. */

static char *slurp(const char *path)
{
    uint8_t *data;
    size_t len;
    sc_err err;
    ck_assert_msg(sc_read_file(path, 1 << 26, &data, &len, &err) == SC_OK, "%s", err.msg);
    return (char *)data;
}

static const char *in_dir(const char *dir, const char *name)
{
    static char buf[4][600];
    static int next;
    char path[600];   /* dir may be an earlier result of this function */
    ck_assert_msg(snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path, "path too long");
    char *p = buf[next++ % 4];
    memcpy(p, path, sizeof path);
    return p;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int count_lines(const char *text)
{
    int n = 0;
    for (; *text; text++) n += *text == '\n';
    return n;
}

/* The mean over subsets of one method's metric at one fraction, read back
 * from results.csv. */
static double result_mean(const char *results_path, const char *method, const char *fraction, const char *level,
                          const char *metric)
{
    sc_csv csv;
    sc_err err;
    ck_assert_msg(sc_csv_load(&csv, results_path, NULL, &err) == SC_OK, "%s", err.msg);
    double sum = 0;
    int n = 0;
    for (int64_t r = 0; r < csv.n_rows; r++)
        if (!strcmp(sc_csv_get(&csv, r, 0), method) && !strcmp(sc_csv_get(&csv, r, 2), fraction) &&
            !strcmp(sc_csv_get(&csv, r, 5), level) && !strcmp(sc_csv_get(&csv, r, 6), metric))
            sum += atof(sc_csv_get(&csv, r, 7)), n++;
    sc_csv_free(&csv);
    ck_assert_msg(n > 0, "no rows for %s %s %s %s", method, fraction, level, metric);
    return sum / n;
}

/* ---- 1. subsets ---- */

START_TEST(test_nested_subsets)
{
    enum { N = 240 };
    /* three classes of 151, 73 and 16 items, shuffled into the list */
    uint8_t labels[N * 3] = {0};
    int64_t items[N], chosen[6][N], n_chosen[6];
    for (int i = 0; i < N; i++) {
        items[i] = (i * 97) % N;
        labels[i * 3 + (i < 151 ? 0 : i < 224 ? 1 : 2)] = 1;
    }
    const int total[3] = {151, 73, 16};
    const double fractions[6] = {0.05, 0.1, 0.25, 0.5, 0.77, 1.0};
    sc_err err;
    for (uint64_t seed = 0; seed < 5; seed++) {
        for (int f = 0; f < 6; f++) {
            ck_assert(sc_nested_subset(chosen[f], &n_chosen[f], items, N, labels, 3, fractions[f], seed, &err) == SC_OK);
            int count[3] = {0};
            for (int64_t j = 0; j < n_chosen[f]; j++)
                for (int k = 0; k < 3; k++) count[k] += labels[chosen[f][j] * 3 + k];
            for (int k = 0; k < 3; k++)
                ck_assert_msg(fabs(count[k] - fractions[f] * total[k]) < 1, "seed %d fraction %g class %d: %d of %d",
                              (int)seed, fractions[f], k, count[k], total[k]);
            /* nested: everything chosen before is chosen again */
            for (int g = 0; g < f; g++)
                for (int64_t j = 0; j < n_chosen[g]; j++) {
                    int found = 0;
                    for (int64_t q = 0; q < n_chosen[f] && !found; q++) found = chosen[f][q] == chosen[g][j];
                    ck_assert_msg(found, "seed %d: item %lld of fraction %g missing at %g", (int)seed,
                                  (long long)chosen[g][j], fractions[g], fractions[f]);
                }
        }
        ck_assert_int_eq(n_chosen[5], N);
    }
    /* Unbiased: the class of 16 wants 0.8 items at fraction 0.05, so over
     * many seeds its mean count must be near 0.8 — one item in four fifths
     * of the draws, none in the rest. A fixed offset would always give 1
     * (or always 0). 400 seeds: the standard error is 0.02. */
    int rare = 0;
    for (uint64_t seed = 0; seed < 400; seed++) {
        ck_assert(sc_nested_subset(chosen[0], &n_chosen[0], items, N, labels, 3, 0.05, seed, &err) == SC_OK);
        for (int64_t j = 0; j < n_chosen[0]; j++) rare += labels[chosen[0][j] * 3 + 2];
    }
    ck_assert_msg(fabs(rare / 400.0 - 0.8) < 0.08, "class of 16 at fraction 0.05: mean count %g, want 0.8",
                  rare / 400.0);
    /* Several labels per item: an item's stratum is its rarest label, so
     * that label stays within one of its share. Here 16 items of class 0
     * also carry class 2, which then has 32 items, half of them shared. */
    for (int i = 0; i < 16; i++) labels[i * 3 + 2] = 1;
    for (uint64_t seed = 0; seed < 20; seed++)
        for (int f = 0; f < 5; f++) {
            ck_assert(sc_nested_subset(chosen[f], &n_chosen[f], items, N, labels, 3, fractions[f], seed, &err) == SC_OK);
            int count = 0;
            for (int64_t j = 0; j < n_chosen[f]; j++) count += labels[chosen[f][j] * 3 + 2];
            ck_assert_msg(fabs(count - fractions[f] * 32) < 1, "seed %d fraction %g, rarest label: %d of 32",
                          (int)seed, fractions[f], count);
        }
    /* another seed, another subset */
    int64_t a[N], b[N], na, nb;
    sc_nested_subset(a, &na, items, N, labels, 3, 0.25, 1, &err);
    sc_nested_subset(b, &nb, items, N, labels, 3, 0.25, 2, &err);
    ck_assert(na != nb || memcmp(a, b, sizeof(int64_t) * (size_t)na) != 0);
    ck_assert_int_eq(sc_nested_subset(a, &na, items, N, labels, 3, 0, 1, &err), SC_EARG);
    ck_assert_int_eq(sc_nested_subset(a, &na, items, N, labels, 3, 1.5, 1, &err), SC_EARG);
}
END_TEST

/* ---- 2. the config file ---- */

static const char full_config[] =
    "scale-experiment 1   # version\n"
    "name \"Derm7p with MONET\"  (Fig. 2)\n"
    "\n"
    "cache emb/derm7p\n"
    "model /models/monet\n"
    "dataset derm7p:release_v0\n"
    "fractions 0.1 0.5 1\n"
    "seeds 3\n"
    "seed 42\n"
    "levels class-concept\n"
    "train-splits train valid\n"
    "tsne-task pigmentation\n"
    "explain lp-w\n"
    "method zs zero-shot prompts=class ensemble=yes\n"
    "method clip zero-shot cache=/caches/clip\n"
    "method monet concept-score temp=0.02\n"
    "method lp linear-probe loss=softmax epochs=20\n"
    "method lp-w linear-probe weighting=inverse-frequency\n"
    "method coop coop n-ctx=4 csc=yes init=\"a photo of a\" epochs=3 lr=0.01\n"
    "method scale scale epochs=7 lambda=1,0.5,0.25,0 supcon=rows alpha=clamp tasks=separate\n";

START_TEST(test_config_parse)
{
    sc_experiment ex;
    sc_err err;
    ck_assert_msg(sc_experiment_parse(&ex, full_config, strlen(full_config), "x.conf", "/base", &err) == SC_OK, "%s",
                  err.msg);
    ck_assert_str_eq(ex.name, "Derm7p with MONET (Fig. 2)");
    ck_assert_str_eq(ex.cache, "/base/emb/derm7p");
    ck_assert_str_eq(ex.model, "/models/monet");
    ck_assert_str_eq(ex.dataset, "derm7p:/base/release_v0");
    ck_assert_int_eq(ex.n_fractions, 3);
    ck_assert(ex.fractions[0] == 0.1 && ex.fractions[2] == 1.0);
    ck_assert_int_eq(ex.n_seeds, 3);
    ck_assert(ex.seed == 42);
    ck_assert_int_eq(ex.levels, 2);
    ck_assert_int_eq(ex.train_valid, 1);
    ck_assert_int_eq(ex.n_methods, 7);
    ck_assert_int_eq(ex.explained, 4);
    const sc_method *m = ex.methods;
    ck_assert(m[0].kind == SC_METHOD_ZERO_SHOT && m[0].class_prompts && m[0].ensemble && !m[0].cache);
    ck_assert_str_eq(m[1].cache, "/caches/clip");
    ck_assert(m[2].kind == SC_METHOD_CONCEPT_SCORE && m[2].temp == 0.02);
    ck_assert(m[3].probe.loss == SC_PROBE_SOFTMAX && m[3].probe.epochs == 20 && !m[3].dashed);
    ck_assert(m[4].probe.weighted && m[4].dashed);          /* the paper's dashed line */
    ck_assert(m[5].coop.n_ctx == 4 && m[5].coop.class_specific && m[5].coop.epochs == 3);
    ck_assert_str_eq(m[5].coop_init, "a photo of a");
    ck_assert(m[6].scale.epochs == 7 && m[6].scale.loss.lambda[1] == 0.5 && m[6].scale.loss.lambda[3] == 0);
    ck_assert(m[6].scale.loss.supcon == SC_SUPCON_ROWS && m[6].scale.adapter.alpha_mode == SC_ALPHA_CLAMP);
    ck_assert_int_eq(m[6].separate_tasks, 1);
    ck_assert_int_eq(m[6].line, 20);
    /* defaults: the paper's fractions and five subsets */
    const char small[] = "scale-experiment 1\ncache c\nmethod s scale\n";
    sc_experiment_free(&ex);
    ck_assert(sc_experiment_parse(&ex, small, strlen(small), "y.conf", NULL, &err) == SC_OK);
    ck_assert_int_eq(ex.n_fractions, 5);
    ck_assert(ex.fractions[0] == 0.05 && ex.fractions[4] == 1.0);
    ck_assert_int_eq(ex.n_seeds, 5);
    ck_assert_int_eq(ex.levels, 3);
    ck_assert_int_eq(ex.explained, 0);
    ck_assert_str_eq(ex.cache, "c");
    sc_experiment_free(&ex);
}
END_TEST

START_TEST(test_config_errors)
{
    static const struct {
        const char *text;
        const char *want;   /* the message after "bad.conf:" */
    } cases[] = {
        {"", "bad.conf: empty"},
        {"cache c\n", "bad.conf:1: the file must begin with 'scale-experiment 1'"},
        {"scale-experiment 2\n", "bad.conf:1: version '2'"},
        {"scale-experiment 1\ncache c\nbogus 1\n", "bad.conf:3: unknown statement 'bogus'"},
        {"scale-experiment 1\ncache c\ncache d\n", "bad.conf:3: 'cache' is given twice"},
        {"scale-experiment 1\ncache c\nseeds 0\n", "bad.conf:3: seeds must be an integer in [1, 100]"},
        {"scale-experiment 1\ncache c\nfractions 0.5 0.25\n", "bad.conf:3: fractions must increase"},
        {"scale-experiment 1\ncache c\nfractions 0 1\n", "bad.conf:3: a fraction must be a number"},
        {"scale-experiment 1\ncache c\nlevels class concept\n", "bad.conf:3: levels takes class or class-concept"},
        {"scale-experiment 1\ncache c\nmethod a\n", "bad.conf:3: method needs a name and a kind"},
        {"scale-experiment 1\ncache c\nmethod a svm\n", "bad.conf:3: the method kind takes zero-shot"},
        {"scale-experiment 1\ncache c\nmethod a scale\nmethod a coop\n", "bad.conf:4: a method named 'a' is already"},
        {"scale-experiment 1\ncache c\nmethod a scale n-ctx=4\n", "bad.conf:3: method 'a' (scale) has no option 'n-ctx'"},
        {"scale-experiment 1\ncache c\nmethod a scale epochs\n", "bad.conf:3: 'epochs' is not key=value"},
        {"scale-experiment 1\ncache c\nmethod a scale epochs=-3\n", "bad.conf:3: epochs must be an integer"},
        {"scale-experiment 1\ncache c\nmethod a scale lambda=1,2\n", "bad.conf:3: lambda takes four numbers"},
        {"scale-experiment 1\ncache c\nmethod a coop init=\"a photo\n", "bad.conf:3: a double quote is not closed"},
        {"scale-experiment 1\n\n# nothing\nmethod a scale\n", "bad.conf: no 'cache' line"},
        {"scale-experiment 1\ncache c\n", "bad.conf: no 'method' line"},
        {"scale-experiment 1\ncache c\nmethod a coop\n", "bad.conf:3: method 'a' (coop) runs the text tower"},
        {"scale-experiment 1\ncache c\ndataset derm7p:x\nmethod a scale\n", "bad.conf: 'dataset' is embedded with"},
        {"scale-experiment 1\ncache c\ndataset mnist:x\n", "bad.conf:3: "},
        {"scale-experiment 1\ncache c\nexplain b\nmethod a scale\n", "bad.conf: 'explain b' names no method"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sc_experiment ex;
        sc_err err;
        sc_status st = sc_experiment_parse(&ex, cases[i].text, strlen(cases[i].text), "bad.conf", NULL, &err);
        ck_assert_msg(st != SC_OK, "case %zu was accepted", i);
        ck_assert_msg(!strncmp(err.msg, cases[i].want, strlen(cases[i].want)), "case %zu: '%s', want '%s...'", i,
                      err.msg, cases[i].want);
    }
    /* from a file: the file's name in the message */
    const char *dir = sc_test_tmpdir();
    put_file(dir, "e.conf", "scale-experiment 1\ncache c\nmethod a scale epochs=x\n");
    sc_experiment ex;
    sc_err err;
    ck_assert(sc_experiment_load(&ex, in_dir(dir, "e.conf"), &err) != SC_OK);
    ck_assert_msg(strstr(err.msg, "e.conf:3: epochs must be") != NULL, "%s", err.msg);
}
END_TEST

/* ---- 3-5. runs on a synthetic cache ---- */

static const char synthetic_config[] =
    "scale-experiment 1\n"
    "name synthetic Derm7p\n"
    "cache memory\n"
    "model clip-tiny\n"
    "fractions 0.25 0.5 1\n"
    "seeds 2\n"
    "seed 7\n"
    "tsne-task pigmentation\n"
    "method zero-shot zero-shot\n"
    "method zero-shot-class zero-shot prompts=class ensemble=yes\n"
    "method monet concept-score\n"
    "method linear-probe linear-probe epochs=30 lr=0.01\n"
    "method lp-weighted linear-probe weighting=inverse-frequency epochs=30 lr=0.01\n"
    "method coop coop n-ctx=2 epochs=2 batch=64\n"
    "method scale scale epochs=8\n";

typedef struct {
    sc_cache cache;
    sc_model *model;
    sc_experiment ex;
} synthetic_run;

static void synthetic_setup(synthetic_run *r, const char *config)
{
    sc_err err;
    ck_assert_msg(synthetic_cache(&r->cache, sc_test_path("data/derm7p.hier"), 80, 60, 32, 1.0f, 11, &err) == SC_OK,
                  "%s", err.msg);
    ck_assert_msg(sc_model_load(&r->model, sc_test_path("tests/golden/clip-tiny"), NULL, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_experiment_parse(&r->ex, config, strlen(config), "synthetic.conf", NULL, &err) == SC_OK, "%s",
                  err.msg);
}

static void synthetic_teardown(synthetic_run *r)
{
    sc_experiment_free(&r->ex);
    sc_model_free(r->model);
    sc_cache_free(&r->cache);
}

static void check_svg_file(const char *path)
{
    xml_stats st;
    free(read_svg(path, &st));
}

START_TEST(test_run_synthetic)
{
    synthetic_run r;
    synthetic_setup(&r, synthetic_config);
    const char *root = sc_test_tmpdir();
    char out[600];
    snprintf(out, sizeof out, "%s/run", root);
    sc_err err;
    sc_run_options opt = {NULL, NULL, "check"};
    ck_assert_msg(sc_experiment_run(&r.ex, &r.cache, r.model, out, &opt, &err) == SC_OK, "%s", err.msg);
    static const char *const files[] = {"results.csv", "summary.md",       "fig2-class.svg", "fig2-concept.svg",
                                        "fig4-tsne.svg", "explanations.csv", "config.txt",     "run.json"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++)
        ck_assert_msg(exists(in_dir(out, files[k])), "%s missing", files[k]);
    /* rows: (3 untrained methods x 3 fractions + 4 trained x (2 + 2 + 1) subsets) x 2 levels x 4 metrics */
    char *results = slurp(in_dir(out, "results.csv"));
    ck_assert_int_eq(count_lines(results), 1 + (3 * 3 + 4 * 5) * 2 * 4);
    free(results);
    /* explanations: one row per test image and task */
    char *expl = slurp(in_dir(out, "explanations.csv"));
    ck_assert_int_eq(count_lines(expl), 1 + 60 * 7);
    free(expl);
    /* chance is far below these on separable data: guessing gives a task of
     * H combinations a macro recall of 1/H (2 to 8 here) */
    const char *res = in_dir(out, "results.csv");
    ck_assert_double_gt(result_mean(res, "zero-shot", "1", "class-concept", "macro_recall"), 0.8);
    ck_assert_double_gt(result_mean(res, "monet", "1", "class-concept", "macro_recall"), 0.6);
    ck_assert_double_gt(result_mean(res, "linear-probe", "1", "class-concept", "macro_recall"), 0.6);
    ck_assert_double_gt(result_mean(res, "scale", "1", "class-concept", "macro_recall"), 0.8);
    ck_assert_double_gt(result_mean(res, "scale", "1", "class", "auc"), 0.6);
    ck_assert_double_gt(result_mean(res, "zero-shot-class", "0.25", "class", "accuracy"), 0.6);
    double coop = result_mean(res, "coop", "1", "class-concept", "accuracy");
    ck_assert_msg(coop >= 0 && coop <= 1, "coop accuracy %g", coop);
    for (int k = 1; k < 4; k++) check_svg_file(in_dir(out, files[k + 1]));
    xml_stats st;
    free(read_svg(in_dir(out, "fig2-concept.svg"), &st));
    ck_assert_int_eq(xml_get(&st, "dashed") > 0, 1);   /* the weighted probe */
    char *summary = slurp(in_dir(out, "summary.md"));
    ck_assert_msg(strstr(summary, "### Macro F1") && strstr(summary, "| scale |"), "%s", summary);
    free(summary);
    /* the run folder exists now: a second run refuses to overwrite it */
    ck_assert_int_eq(sc_experiment_run(&r.ex, &r.cache, r.model, out, &opt, &err), SC_EARG);
    ck_assert_msg(strstr(err.msg, "already exists") != NULL, "%s", err.msg);
    synthetic_teardown(&r);
}
END_TEST

/* Prompts far from the images (mostly noise): zero-shot is weak, and SCALE,
 * one adapter pair trained on all seven tasks, must learn what it misses. */
START_TEST(test_scale_learns)
{
    static const char config[] = "scale-experiment 1\ncache x\nfractions 1\n"
                                 "method zero-shot zero-shot\nmethod scale scale\n";
    sc_cache c;
    sc_experiment ex;
    sc_err err;
    ck_assert(synthetic_cache(&c, sc_test_path("data/derm7p.hier"), 120, 100, 32, 0.7f, 11, &err) == SC_OK);
    sc_rng rng;
    sc_rng_seed(&rng, 5);
    for (int64_t i = 0; i < c.M * c.E; i++) c.text_emb[i] = 0.4f * c.text_emb[i] + sc_rng_normal(&rng) / 8;
    ck_assert(sc_experiment_parse(&ex, config, strlen(config), "learn.conf", NULL, &err) == SC_OK);
    char out[600];
    snprintf(out, sizeof out, "%s/run", sc_test_tmpdir());
    ck_assert_msg(sc_experiment_run(&ex, &c, NULL, out, NULL, &err) == SC_OK, "%s", err.msg);
    const char *res = in_dir(out, "results.csv");
    double zs = result_mean(res, "zero-shot", "1", "class-concept", "macro_recall");
    double scale = result_mean(res, "scale", "1", "class-concept", "macro_recall");
    ck_assert_msg(scale > zs + 0.1, "SCALE %g vs zero-shot %g", scale, zs);
    sc_experiment_free(&ex);
    sc_cache_free(&c);
}
END_TEST

START_TEST(test_run_deterministic)
{
    synthetic_run r;
    synthetic_setup(&r, synthetic_config);
    const char *root = sc_test_tmpdir();
    sc_err err;
    char *results[2], *expl[2];
    for (int run = 0; run < 2; run++) {
        char name[16];
        snprintf(name, sizeof name, "run%d", run);
        char out[600];
        snprintf(out, sizeof out, "%s/%s", root, name);
        sc_set_threads(run ? 2 : 1);
        ck_assert_msg(sc_experiment_run(&r.ex, &r.cache, r.model, out, NULL, &err) == SC_OK, "%s", err.msg);
        results[run] = slurp(in_dir(out, "results.csv"));
        expl[run] = slurp(in_dir(out, "explanations.csv"));
    }
    sc_set_threads(0);
    ck_assert_str_eq(results[0], results[1]);
    ck_assert_str_eq(expl[0], expl[1]);
    free(results[0]), free(results[1]), free(expl[0]), free(expl[1]);
    synthetic_teardown(&r);
}
END_TEST

START_TEST(test_run_failure_leaves_nothing)
{
    /* an adapter bottleneck that does not divide the width fails mid-sweep */
    static const char config[] = "scale-experiment 1\ncache x\nfractions 0.5 1\nseeds 2\n"
                                 "method lp linear-probe epochs=2\nmethod s scale epochs=2 adapter-reduction=7\n";
    synthetic_run r;
    synthetic_setup(&r, config);
    const char *root = sc_test_tmpdir();
    char out[600];
    snprintf(out, sizeof out, "%s/run", root);
    sc_err err;
    ck_assert(sc_experiment_run(&r.ex, &r.cache, r.model, out, NULL, &err) != SC_OK);
    ck_assert_msg(strstr(err.msg, "method 's'") && strstr(err.msg, "reduction 7"), "%s", err.msg);
    DIR *d = opendir(root);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) entries += e->d_name[0] != '.';
    closedir(d);
    ck_assert_int_eq(entries, 0);
    synthetic_teardown(&r);
}
END_TEST

/* ---- 6. the program ---- */

/* medclip-tiny with a WordPiece vocabulary of its 128 rows: [CLS] 2 and
 * [SEP] 3 as in its golden ids; every prompt word is [UNK]. */
static void medclip_tiny_dir(const char *dir)
{
    static const char *const files[2] = {"config.json", "model.safetensors"};
    for (int k = 0; k < 2; k++) {
        uint8_t *data;
        size_t len;
        sc_err err;
        char from[600];
        snprintf(from, sizeof from, "%s/%s", sc_test_path("tests/golden/medclip-tiny"), files[k]);
        ck_assert_msg(sc_read_file(from, 1 << 26, &data, &len, &err) == SC_OK, "%s", err.msg);
        put_bytes(dir, files[k], data, len);
        free(data);
    }
    char vocab[2048] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    for (int k = 5; k < 128; k++) snprintf(vocab + strlen(vocab), sizeof vocab - strlen(vocab), "w%d\n", k);
    put_file(dir, "vocab.txt", vocab);
}

START_TEST(test_program)
{
    const char *root = sc_test_tmpdir();
    char model[400], data[400], conf[2048], args[2048];
    snprintf(model, sizeof model, "%s/model", root);
    snprintf(data, sizeof data, "%s/data", root);
    mkdir(model, 0777);
    mkdir(data, 0777);
    medclip_tiny_dir(model);
    derm7p_fixture(data);
    snprintf(conf, sizeof conf,
             "scale-experiment 1\n"
             "cache embeddings\n"
             "model model\n"
             "dataset derm7p:data\n"
             "hier %s\n"
             "fractions 0.5 1\n"
             "seeds 2\n"
             "method zero-shot zero-shot\n"
             "method cached zero-shot cache=embeddings # the same cache, named by the method\n"
             "method linear-probe linear-probe epochs=5\n"
             "method coop coop epochs=2 init=\"a photo of a\"\n"
             "method coop-long coop n-ctx=26 csc=yes epochs=1\n"
             "method scale scale epochs=2\n",
             sc_test_path("data/derm7p.hier"));
    put_file(root, "derm7p.conf", conf);
    snprintf(args, sizeof args, "experiment --config %s/derm7p.conf --out %s/run --threads 2", root, root);
    ck_assert_int_eq(sc_test_run_scale(root, args), 0);
    char *out = slurp(in_dir(root, "stdout")), *err_text = slurp(in_dir(root, "stderr"));
    ck_assert_msg(strstr(out, "## Class-concept level") != NULL, "%s", out);   /* the summary on stdout */
    ck_assert_msg(strstr(out, "| coop |") != NULL, "%s", out);                 /* CoOp runs on MedCLIP */
    /* 32 positions − [CLS] − 26 context vectors leave 5: name tokens, the
     * period and [SEP], so every name is cut to 3 tokens */
    ck_assert_msg(strstr(out, "coop-long: 28 of 28 class names were cut to 3 tokens") != NULL, "%s", out);
    ck_assert_msg(strstr(err_text, "experiment jobs") != NULL, "%s", err_text); /* progress on stderr */
    free(out), free(err_text);
    ck_assert(exists(in_dir(root, "embeddings/index.json")));                  /* embedded on the way */
    ck_assert(exists(in_dir(root, "run/results.csv")));
    ck_assert(exists(in_dir(root, "run/fig2-class.svg")));
    /* CoOp's rows: (2 subsets at 0.5 + 1 at 1) x 2 levels x 4 metrics */
    char *results = slurp(in_dir(root, "run/results.csv"));
    int coop_rows = 0;
    for (const char *p = results; (p = strstr(p, "\ncoop,")) != NULL; p++) coop_rows++;
    ck_assert_int_eq(coop_rows, 24);
    free(results);
    double acc = result_mean(in_dir(root, "run/results.csv"), "coop", "1", "class-concept", "accuracy");
    ck_assert_msg(acc >= 0 && acc <= 1, "coop accuracy %g", acc);
    /* the run folder's config.txt runs again as it is: the config's paths
     * were relative to its folder, the run folder's copy has them absolute,
     * and the same seed gives the same results */
    char *kept = slurp(in_dir(root, "run/config.txt"));
    ck_assert_msg(strstr(kept, "\ncache \"/") && strstr(kept, "\nmodel \"/") && strstr(kept, "\ndataset \"derm7p:/") &&
                  strstr(kept, "\nmethod coop coop epochs=2 init=\"a photo of a\"\n") &&  /* as written */
                  strstr(kept, "\nmethod cached zero-shot cache=\"/"), "%s", kept);
    snprintf(args, sizeof args, "experiment --config %s/run/config.txt --out %s/rerun --threads 2 --quiet", root, root);
    ck_assert_int_eq(sc_test_run_scale(root, args), 0);
    char *first = slurp(in_dir(root, "run/results.csv")), *again = slurp(in_dir(root, "rerun/results.csv"));
    ck_assert_str_eq(first, again);
    free(again);
    again = slurp(in_dir(root, "rerun/config.txt"));
    ck_assert_str_eq(kept, again);   /* absolute paths stay as they are */
    free(first), free(again), free(kept);
    ck_assert(!exists(in_dir(root, "run/embeddings")));  /* the cache was found, not made again */
    /* again into the same folder: refused, exit 1 */
    ck_assert_int_eq(sc_test_run_scale(root, args), 1);
    char *e = slurp(in_dir(root, "stderr"));
    ck_assert_msg(strstr(e, "already exists") != NULL, "%s", e);
    free(e);
    /* a config mistake: the file and line, exit 1, nothing written */
    put_file(root, "bad.conf", "scale-experiment 1\ncache embeddings\nmethod s scale epochs=0\n");
    snprintf(args, sizeof args, "experiment --config %s/bad.conf --out %s/bad", root, root);
    ck_assert_int_eq(sc_test_run_scale(root, args), 1);
    e = slurp(in_dir(root, "stderr"));
    ck_assert_msg(strstr(e, "bad.conf:3: epochs must be") != NULL, "%s", e);
    free(e);
    ck_assert(!exists(in_dir(root, "bad")));
    /* usage */
    ck_assert_int_eq(sc_test_run_scale(root, "experiment"), 2);
    ck_assert_int_eq(sc_test_run_scale(root, "experiment --config x --threads -1"), 2);
}
END_TEST

/* `scale experiment --model DIR`: the config's model swapped for another
 * by one flag. Here the other is a copy of the same model in another
 * folder, so the results must not change, while its embeddings must go to
 * a cache of its own (the config's cache is the config model's). */
START_TEST(test_model_flag)
{
    const char *root = sc_test_tmpdir();
    char model[400], copy[400], data[400], conf[2048], args[2048];
    snprintf(model, sizeof model, "%s/model", root);
    snprintf(copy, sizeof copy, "%s/copy", root);
    snprintf(data, sizeof data, "%s/data", root);
    mkdir(model, 0777);
    mkdir(copy, 0777);
    mkdir(data, 0777);
    medclip_tiny_dir(model);
    medclip_tiny_dir(copy);
    derm7p_fixture(data);
    snprintf(conf, sizeof conf,
             "scale-experiment 1\n"
             "cache embeddings/\n"
             "model model\n"
             "dataset derm7p:data\n"
             "hier %s\n"
             "fractions 0.5 1\n"
             "seeds 2\n"
             "method zero-shot zero-shot\n"
             "method linear-probe linear-probe epochs=5\n"
             "method scale scale epochs=2\n",
             sc_test_path("data/derm7p.hier"));
    put_file(root, "derm7p.conf", conf);
    /* the cache's name follows the model */
    sc_experiment ex;
    sc_err err;
    ck_assert_msg(sc_experiment_load(&ex, in_dir(root, "derm7p.conf"), &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(sc_experiment_set_model(&ex, in_dir(root, "model/"), &err), SC_OK);
    ck_assert_str_eq(ex.cache, in_dir(root, "embeddings/"));               /* the config's own model */
    ck_assert_int_eq(sc_experiment_set_model(&ex, in_dir(root, "copy/"), &err), SC_OK);
    ck_assert_str_eq(ex.cache, in_dir(root, "embeddings-copy"));
    ck_assert_str_eq(ex.model, in_dir(root, "copy/"));
    ck_assert_int_eq(sc_experiment_set_model(&ex, in_dir(root, "data"), &err), SC_EARG);
    ck_assert_msg(strstr(err.msg, "/data: not a model directory (no config.json in it)"), "%s", err.msg);
    sc_experiment_free(&ex);
    /* through the program: the config's model, then the copy by --model */
    snprintf(args, sizeof args, "experiment --config %s/derm7p.conf --out %s/config-model --quiet", root, root);
    ck_assert_int_eq(sc_test_run_scale(root, args), 0);
    snprintf(args, sizeof args, "experiment --config %s/derm7p.conf --model %s --out %s/flag-model", root, copy, root);
    ck_assert_int_eq(sc_test_run_scale(root, args), 0);
    char *said = slurp(in_dir(root, "stderr"));
    ck_assert_msg(strstr(said, "embeddings-copy"), "%s", said);
    free(said);
    ck_assert(exists(in_dir(root, "embeddings-copy/index.json")));
    char *a = slurp(in_dir(root, "config-model/results.csv")), *b = slurp(in_dir(root, "flag-model/results.csv"));
    ck_assert_str_eq(a, b);
    free(a), free(b);
    /* the run folder records the model and cache it used */
    char *kept = slurp(in_dir(root, "flag-model/config.txt"));
    char want[600];
    snprintf(want, sizeof want, "\nmodel \"%s\"\n", copy);
    ck_assert_msg(strstr(kept, want), "%s", kept);
    snprintf(want, sizeof want, "\ncache \"%s/embeddings-copy\"\n", root);
    ck_assert_msg(strstr(kept, want), "%s", kept);
    free(kept);
    /* a folder that is no model: exit 1, the folder named, nothing written */
    snprintf(args, sizeof args, "experiment --config %s/derm7p.conf --model %s/nowhere --out %s/bad", root, root, root);
    ck_assert_int_eq(sc_test_run_scale(root, args), 1);
    said = slurp(in_dir(root, "stderr"));
    ck_assert_msg(strstr(said, "/nowhere: not a model directory"), "%s", said);
    free(said);
    ck_assert(!exists(in_dir(root, "bad")));
    ck_assert(!exists(in_dir(root, "embeddings-nowhere")));
    /* a config that names no model keeps its cache, checked against the
     * model given; config.txt gains the model line */
    put_file(root, "no-model.conf", "scale-experiment 1\ncache embeddings\nfractions 1\nmethod zero-shot zero-shot\n");
    snprintf(args, sizeof args, "experiment --config %s/no-model.conf --model %s --out %s/no-model --quiet", root, model,
             root);
    ck_assert_int_eq(sc_test_run_scale(root, args), 0);
    ck_assert(!exists(in_dir(root, "embeddings-model")));
    kept = slurp(in_dir(root, "no-model/config.txt"));
    snprintf(want, sizeof want, "cache \"%s/embeddings\"\nfractions 1\nmethod zero-shot zero-shot\nmodel \"%s\"\n", root,
             model);
    ck_assert_msg(strstr(kept, want), "%s", kept);
    free(kept);
}
END_TEST

Suite *suite_experiment(void)
{
    Suite *s = suite_create("experiment");
    TCase *tc = tcase_create("experiment");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_nested_subsets);
    tcase_add_test(tc, test_config_parse);
    tcase_add_test(tc, test_config_errors);
    tcase_add_test(tc, test_run_synthetic);
    tcase_add_test(tc, test_scale_learns);
    tcase_add_test(tc, test_run_deterministic);
    tcase_add_test(tc, test_run_failure_leaves_nothing);
    tcase_add_test(tc, test_program);
    tcase_add_test(tc, test_model_flag);
    suite_add_tcase(s, tc);
    return s;
}
