/* bench_experiment.c — the experiment runner (scale.c section 7) at the
 * size of Derm7p: 413 training and 395 test images, 768-d embeddings
 * (MONET's width), the seven criteria of data/derm7p.hier (28
 * combinations). The embeddings are synthetic (experiment_fixtures.h): the
 * time does not depend on their values.
 *
 *   bench op=experiment dataset=derm7p-size methods=4 fractions=5 seeds=5 jobs=.. seconds=..
 *       the paper's Fig. 2 sweep without CoOp: zero-shot, linear probe with
 *       and without loss weighting, SCALE; 150 epochs each, as Sec. 2.3
 *   bench op=experiment-method method=... jobs=.. seconds=..
 *       the same run's time per method (wall time summed over its jobs)
 * cpu_seconds count the process's CPU time, which a busy machine does not
 * stretch; with T threads the wall time is at best cpu_seconds / T.
 *   bench op=coop-step ... seconds_per_step=.. sweep_steps=.. sweep_hours=..
 *       CoOp on a text tower of MONET's size (ViT-L/14's: 12 layers,
 *       768 wide, random weights), 28 prompts of 16 context vectors and a
 *       10-token name, a batch of 32 images: the time of one SGD step and
 *       the sweep's projected time (every step of every job, 50 epochs).
 *   bench op=coop-step text=bert-base ... seconds_per_step=..
 *       CoOp through MedCLIP's text tower (Bio_ClinicalBERT's size: 12
 *       post-LN layers, 768 wide, random weights), PadChest-GR's 12
 *       combinations as prompts of 16 context vectors, a 6-token name, the
 *       period and [SEP], a batch of 32 images: one SGD step. */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "experiment_fixtures.h"

/* CPU seconds of this process (all threads): unlike wall time, not
 * stretched when other programs share the cores. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void remove_run(const char *dir)
{
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.') unlink(path);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static const char sweep_config[] =
    "scale-experiment 1\n"
    "cache synthetic\n"
    "method zero-shot zero-shot\n"
    "method linear-probe linear-probe\n"
    "method linear-probe-weighted linear-probe weighting=inverse-frequency\n"
    "method scale scale\n";

/* The run's per-method times, from its run.json. */
static void print_method_times(const char *run_json)
{
    sc_json_doc doc;
    sc_err err;
    if (sc_json_load(&doc, run_json, 1 << 20, &err) != SC_OK) return;
    const sc_json *methods = sc_json_get(doc.root, "methods");
    for (size_t i = 0; methods && i < methods->len; i++) {
        const sc_json *m = methods->items[i];
        printf("bench op=experiment-method method=%s jobs=%g seconds=%.2f\n", sc_json_get_string(m, "name", "?"),
               sc_json_get_number(m, "jobs", 0), sc_json_get_number(m, "seconds", 0));
    }
    sc_json_free(&doc);
}

static void bench_sweep(const sc_cache *c)
{
    sc_experiment ex;
    sc_err err;
    if (sc_experiment_parse(&ex, sweep_config, strlen(sweep_config), "bench", NULL, &err) != SC_OK) {
        printf("bench op=experiment error=\"%s\"\n", err.msg);
        return;
    }
    char out[256];
    snprintf(out, sizeof out, "/tmp/scale-bench-experiment-%ld", (long)getpid());
    double t0 = bench_now(), c0 = cpu_now();
    sc_status st = sc_experiment_run(&ex, c, NULL, out, NULL, &err);
    double seconds = bench_now() - t0, cpu = cpu_now() - c0;
    if (st != SC_OK) printf("bench op=experiment error=\"%s\"\n", err.msg);
    else {
        printf("bench op=experiment dataset=derm7p-size train=413 test=395 dims=768 methods=4 fractions=5 seeds=5 "
               "epochs=150 threads=%d seconds=%.1f cpu_seconds=%.1f peak_rss_mib=%.1f\n",
               sc_threads(), seconds, cpu, bench_peak_rss_mib());
        char path[300];
        snprintf(path, sizeof path, "%s/run.json", out);
        print_method_times(path);
    }
    fflush(stdout);
    remove_run(out);
    sc_experiment_free(&ex);
}

/* CoOp steps of the Fig. 2 sweep: per subset, ceil(n / 32) steps an epoch. */
static int64_t coop_sweep_steps(const sc_cache *c, int epochs)
{
    static const double fractions[5] = {0.05, 0.1, 0.25, 0.5, 1.0};
    int64_t *pool = malloc(sizeof(int64_t) * (size_t)c->N), *chosen = malloc(sizeof(int64_t) * (size_t)c->N), n = 0, steps = 0;
    for (int64_t i = 0; i < c->N; i++)
        if (c->split[i] == SC_SPLIT_TRAIN) pool[n++] = i;
    for (int f = 0; f < 5; f++)
        for (int s = 0; s < (f == 4 ? 1 : 5); s++) {
            int64_t m;
            sc_err err;
            sc_nested_subset(chosen, &m, pool, n, c->image_labels, c->n_labels, fractions[f], (uint64_t)s, &err);
            steps += (m + 31) / 32 * epochs;
        }
    free(pool), free(chosen);
    return steps;
}

static void bench_coop(const sc_cache *c)
{
    sc_model_config cfg;
    sc_model_config_preset(&cfg, "vit-l-14");
    /* the vision tower is not used: keep it small */
    cfg.vision.image_size = 32, cfg.vision.patch = 16, cfg.vision.width = 64, cfg.vision.layers = 1;
    cfg.vision.heads = 1, cfg.vision.mlp = 64;
    sc_model *m;
    sc_err err;
    if (sc_model_random(&m, &cfg, 1, &err) != SC_OK) {
        printf("bench op=coop-step error=\"%s\"\n", err.msg);
        return;
    }
    int K = c->n_labels, T = 77;
    int64_t *names = calloc((size_t)(K * T), sizeof(int64_t));
    for (int k = 0; k < K; k++) {
        names[k * T] = 49406;
        for (int t = 1; t <= 10; t++) names[k * T + t] = 1000 + 37 * k + t;
        names[k * T + 11] = 49407;
    }
    float *targets = calloc((size_t)(c->N * K), sizeof(float));
    for (int64_t i = 0; i < c->N * K; i++) targets[i] = c->image_labels[i];
    sc_coop_config cc = sc_coop_defaults();
    sc_coop p;
    if (sc_coop_init(&p, m, names, NULL, K, T, NULL, 0, &cc, &err) != SC_OK) {
        printf("bench op=coop-step error=\"%s\"\n", err.msg);
    } else {
        sc_coop_data d = {32 * 2, c->E, c->image_emb, targets, c->hier.n_tasks, c->label_offset};
        sc_ctx ctx;
        sc_ctx_init(&ctx);
        double t0 = bench_now(), c0 = cpu_now();
        sc_coop_train_epoch(&p, m, &ctx, &d);   /* two steps of 32 */
        double per_step = (bench_now() - t0) / 2, cpu_per_step = (cpu_now() - c0) / 2;
        int64_t steps = coop_sweep_steps(c, cc.epochs);
        printf("bench op=coop-step text=vit-l-14 prompts=%d positions=%lld batch=32 threads=%d seconds_per_step=%.2f "
               "cpu_seconds_per_step=%.2f sweep_steps=%lld sweep_hours=%.1f peak_rss_mib=%.1f\n",
               K, (long long)p.T, sc_threads(), per_step, cpu_per_step, (long long)steps,
               per_step * (double)steps / 3600, bench_peak_rss_mib());
        sc_ctx_free(&ctx);
        sc_coop_free(&p);
    }
    fflush(stdout);
    free(names), free(targets);
    sc_model_free(m);
}

static void bench_coop_medclip(void)
{
    sc_model_config cfg;
    sc_model_config_preset(&cfg, "medclip");
    sc_model *m;
    sc_err err;
    if (sc_model_random(&m, &cfg, 1, &err) != SC_OK) {
        printf("bench op=coop-step text=bert-base error=\"%s\"\n", err.msg);
        return;
    }
    enum { K = 12, T = 77, N = 64 };
    int64_t E = cfg.embed_dim, *names = calloc(K * T, sizeof(int64_t)), *masks = calloc(K * T, sizeof(int64_t));
    for (int k = 0; k < K; k++) {   /* [CLS] name . [SEP], then [PAD] = 0, in Bio_ClinicalBERT's ids */
        names[k * T] = 101;
        for (int t = 1; t <= 6; t++) names[k * T + t] = 1000 + 37 * k + t;
        names[k * T + 7] = 119, names[k * T + 8] = 102;
        for (int t = 0; t <= 8; t++) masks[k * T + t] = 1;
    }
    float *images = malloc(sizeof(float) * (size_t)(N * E)), *targets = calloc(N * K, sizeof(float));
    sc_rng r;
    sc_rng_seed(&r, 3);
    for (int64_t i = 0; i < N * E; i++) images[i] = sc_rng_normal(&r);
    for (int i = 0; i < N; i++) targets[i * K + i % K] = 1;
    int block_offset[2] = {0, K};
    sc_coop_config cc = sc_coop_defaults();
    sc_coop p;
    if (sc_coop_init(&p, m, names, masks, K, T, NULL, 0, &cc, &err) != SC_OK) {
        printf("bench op=coop-step text=bert-base error=\"%s\"\n", err.msg);
    } else {
        sc_coop_data d = {N, E, images, targets, 1, block_offset};
        sc_ctx ctx;
        sc_ctx_init(&ctx);
        double t0 = bench_now(), c0 = cpu_now();
        sc_coop_train_epoch(&p, m, &ctx, &d);   /* two steps of 32 */
        printf("bench op=coop-step text=bert-base prompts=%d positions=%lld batch=32 threads=%d seconds_per_step=%.2f "
               "cpu_seconds_per_step=%.2f peak_rss_mib=%.1f\n",
               K, (long long)p.T, sc_threads(), (bench_now() - t0) / 2, (cpu_now() - c0) / 2, bench_peak_rss_mib());
        sc_ctx_free(&ctx);
        sc_coop_free(&p);
    }
    fflush(stdout);
    free(names), free(masks), free(images), free(targets);
    sc_model_free(m);
}

void bench_experiment(void)
{
    sc_cache c;
    sc_err err;
    char hier[1024];
    snprintf(hier, sizeof hier, "%s/data/derm7p.hier", SC_TEST_ROOT);
    if (synthetic_cache(&c, hier, 413, 395, 768, 1.0f, 1, &err) != SC_OK) {
        printf("bench op=experiment error=\"%s\"\n", err.msg);
        return;
    }
    bench_sweep(&c);
    bench_coop(&c);
    sc_cache_free(&c);
    bench_coop_medclip();
}
