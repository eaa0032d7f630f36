/* bench_scale.c — SCALE training on cached embeddings at the size of one
 * Derm7p criterion: 413 training images (the train split), 768-d MONET
 * embeddings, 5 combinations (pigmentation), 150 epochs, both adapters,
 * batch size from the rule (64). The embeddings are synthetic: the time
 * does not depend on their values. Also the two kernels it is made of.
 *
 * texts=prompts is how Derm7p trains: an image's text is its combination's
 * prompt, so the text adapter runs on the 5 distinct prompts of a batch.
 * texts=paired gives every image its own text row (here a copy of the same
 * prompt), so the text adapter runs on all 64 + 5 rows of a batch — the
 * work tests/bench/pytorch_scale_train.py does, for a like-for-like
 * comparison with PyTorch. */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const int pigmentation_class[5] = {0, 0, 0, 1, 1};
static const int pigmentation_concept[5] = {0, 1, 2, 3, 4};

static void bench_train(int64_t N, int64_t C, int H, int epochs, int paired)
{
    sc_rng rng;
    sc_rng_seed(&rng, 1);
    float *images = malloc(sizeof(float) * (size_t)(N * C));
    float *prompts = malloc(sizeof(float) * (size_t)(H * C));
    float *labels = calloc((size_t)(N * H), sizeof(float));
    int *combo = malloc(sizeof(int) * (size_t)N);
    for (int64_t i = 0; i < N * C; i++) images[i] = sc_rng_normal(&rng);
    for (int64_t i = 0; i < H * C; i++) prompts[i] = sc_rng_normal(&rng);
    for (int64_t i = 0; i < N; i++) {
        combo[i] = (int)sc_rng_below(&rng, (uint32_t)H);
        labels[i * H + combo[i]] = 1;
    }
    float *texts = NULL;
    if (paired) {
        texts = malloc(sizeof(float) * (size_t)(N * C));
        for (int64_t i = 0; i < N; i++) memcpy(texts + i * C, prompts + combo[i] * C, sizeof(float) * (size_t)C);
    }
    sc_train_data d = {N, C, H, 2, 5, images, texts, combo, labels, NULL, prompts, pigmentation_class,
                       pigmentation_concept};
    sc_train_config cfg = sc_train_defaults();
    cfg.epochs = epochs;
    sc_scale_model m;
    sc_err err;
    if (sc_scale_model_init(&m, C, &cfg, &err) != SC_OK) {
        printf("bench op=scale-train error=\"%s\"\n", err.msg);
        return;
    }
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    double t0 = bench_now(), cpu0 = bench_cpu_seconds(), loss = 0;
    for (int e = 0; e < epochs; e++) loss = sc_scale_train_epoch(&m, &ctx, &d);
    double seconds = bench_now() - t0, cpu_seconds = bench_cpu_seconds() - cpu0;
    printf("bench op=scale-train n=%lld d=%lld combos=%d epochs=%d batch=%d texts=%s threads=%d simd=%d seconds=%.3f "
           "cpu_seconds=%.3f ms_per_epoch=%.2f final_loss=%.4f peak_rss_mib=%.1f\n",
           (long long)N, (long long)C, H, epochs, sc_train_batch_size(N), paired ? "paired" : "prompts", sc_threads(),
           sc_gemm_simd(), seconds, cpu_seconds, 1e3 * seconds / epochs, loss, bench_peak_rss_mib());
    sc_ctx_free(&ctx);
    sc_scale_model_free(&m);
    free(images);
    free(texts);
    free(prompts);
    free(labels);
    free(combo);
}

/* One adapter forward + backward on a (B, C) batch, the unit of work of
 * training: 5 GEMMs of 2·B·C·R flops each (two forward; dW2, d_hidden and
 * dW1 backward; df is not needed for frozen embeddings). */
static void bench_adapter(int64_t B, int64_t C, int reps)
{
    int64_t R = C / 4;
    float *f = malloc(sizeof(float) * (size_t)(B * C)), *out = malloc(sizeof(float) * (size_t)(B * C));
    float *up = malloc(sizeof(float) * (size_t)(B * C)), *hidden = malloc(sizeof(float) * (size_t)(B * R));
    float *w1 = malloc(sizeof(float) * (size_t)(R * C)), *w2 = malloc(sizeof(float) * (size_t)(R * C));
    float *dw1 = calloc((size_t)(R * C), sizeof(float)), *dw2 = calloc((size_t)(R * C), sizeof(float));
    float *d_up = malloc(sizeof(float) * (size_t)(B * C)), *d_hidden = malloc(sizeof(float) * (size_t)(B * R));
    sc_rng rng;
    sc_rng_seed(&rng, 2);
    for (int64_t i = 0; i < B * C; i++) f[i] = sc_rng_normal(&rng);
    for (int64_t i = 0; i < R * C; i++) w1[i] = 0.03f * sc_rng_normal(&rng), w2[i] = 0.07f * sc_rng_normal(&rng);
    double t0 = 0, dalpha = 0;
    for (int r = -1; r < reps; r++) {   /* r = -1 warms up: first touch of the buffers, the thread pool */
        if (r == 0) t0 = bench_now();
        sc_adapter_forward(out, hidden, up, f, w1, w2, 0.2f, 1, B, C, R);
        sc_adapter_backward(NULL, dw1, dw2, &dalpha, d_up, d_hidden, out, hidden, up, f, w1, w2, 0.2f, 1, B, C, R);
    }
    double seconds = (bench_now() - t0) / reps;
    double flops = 5.0 * 2.0 * (double)B * (double)C * (double)R;
    printf("bench op=adapter-fwd-bwd b=%lld c=%lld r=%lld us=%.1f gflops=%.2f\n", (long long)B, (long long)C,
           (long long)R, 1e6 * seconds, 1e-9 * flops / seconds);
    free(f), free(out), free(up), free(hidden), free(w1), free(w2);
    free(dw1), free(dw2), free(d_up), free(d_hidden);
}

/* The loss with its gradient for one training batch: Q (64, 69). */
static void bench_loss(int64_t B, int H, int reps)
{
    int64_t M = B + H;
    float *Q = malloc(sizeof(float) * (size_t)(B * M)), *G = calloc((size_t)(B * H), sizeof(float));
    float *GT = calloc((size_t)(M * H), sizeof(float));
    int *T = malloc(sizeof(int) * (size_t)M);
    double *dQ = malloc(sizeof(double) * (size_t)(B * M));
    sc_rng rng;
    sc_rng_seed(&rng, 3);
    for (int64_t i = 0; i < B * M; i++) Q[i] = 0.3f * sc_rng_normal(&rng);
    for (int64_t j = 0; j < M; j++) {
        T[j] = j < B ? (int)sc_rng_below(&rng, (uint32_t)H) : (int)(j - B);
        GT[j * H + T[j]] = 1;
        if (j < B) G[j * H + T[j]] = 1;
    }
    sc_loss_problem p = {B, M, H, 2, 5, T, G, GT, pigmentation_class, pigmentation_concept};
    sc_loss_config cfg = sc_loss_defaults();
    sc_arena scratch;
    sc_arena_init(&scratch, "scratch", 1 << 20, 0);
    sc_loss_terms t;
    for (int k = 0; k < 2; k++) {
        cfg.supcon = k ? SC_SUPCON_CROSS : SC_SUPCON_ROWS;
        sc_scale_loss(&t, dQ, Q, &p, &cfg, &scratch);   /* warm-up */
        double t0 = bench_now();
        for (int r = 0; r < reps; r++) sc_scale_loss(&t, dQ, Q, &p, &cfg, &scratch);
        printf("bench op=scale-loss n=%lld m=%lld combos=%d supcon=%s us=%.1f\n", (long long)B, (long long)M, H,
               k ? "cross" : "rows", 1e6 * (bench_now() - t0) / reps);
    }
    sc_arena_free(&scratch);
    free(Q), free(G), free(GT), free(T), free(dQ);
}

void bench_scale(void)
{
    bench_adapter(64, 768, 20);
    bench_loss(64, 5, 200);
    bench_train(413, 768, 5, 150, 0);
    bench_train(413, 768, 5, 150, 1);
}

/* ---- ablation on a synthetic Derm7p-like task (book/05, book/04) ----
 * The paper leaves several choices open; this measures each alternative
 * against our defaults on synthetic embeddings built like the pigmentation
 * criterion: five combinations with Derm7p's frequencies (413 training,
 * 395 test images), centres composed of a class part and a concept part
 * (regular/irregular, localized/diffuse), noisy images, and prompts only
 * loosely aligned with their centres, as in a zero-shot VLM. Means and
 * standard deviations over three seeds. The "-small" variants train on a
 * tenth of the training images (the first of each combination, 43 in all,
 * batches of 8 instead of 64) and test on the same test set, for choices
 * whose effect may depend on the batch size (the reduction). */

enum { ABL_C = 64, ABL_H = 5, ABL_SEEDS = 3 };
static const int abl_train_count[ABL_H] = {240, 1, 47, 16, 109}; /* absent, loc. reg., diff. reg., loc. irr., diff. irr. */
static const int abl_test_count[ABL_H] = {230, 1, 45, 16, 103};

typedef struct {
    float *train, *test, *prompts, *train_labels;
    int *train_combo, *test_combo;
    int64_t n_train, n_test;
} ablation_data;

static void random_vector(float *v, sc_rng *rng, float scale)
{
    for (int c = 0; c < ABL_C; c++) v[c] = scale * sc_rng_normal(rng);
}

/* Keep the first tenth (rounded up) of each combination's training images. */
static void keep_small_share(ablation_data *a)
{
    int64_t kept = 0, i = 0;
    for (int h = 0; h < ABL_H; h++)
        for (int n = 0; n < abl_train_count[h]; n++, i++) {
            if (n >= (abl_train_count[h] + 9) / 10) continue;
            memmove(a->train + kept * ABL_C, a->train + i * ABL_C, sizeof(float) * ABL_C);
            memmove(a->train_labels + kept * ABL_H, a->train_labels + i * ABL_H, sizeof(float) * ABL_H);
            a->train_combo[kept++] = a->train_combo[i];
        }
    a->n_train = kept;
}

static void make_ablation_data(ablation_data *a, uint64_t seed)
{
    sc_rng rng;
    sc_rng_seed(&rng, seed);
    /* parts: 0 nevus, 1 melanoma, 2 absent, 3 regular, 4 irregular, 5 localized, 6 diffuse */
    float part[7][ABL_C], centre[ABL_H][ABL_C];
    for (int k = 0; k < 7; k++) random_vector(part[k], &rng, 0.5f);
    static const int parts_of[ABL_H][3] = {{0, 2, -1}, {0, 3, 5}, {0, 3, 6}, {1, 4, 5}, {1, 4, 6}};
    a->prompts = malloc(sizeof(float) * ABL_H * ABL_C);
    for (int h = 0; h < ABL_H; h++)
        for (int c = 0; c < ABL_C; c++) {
            centre[h][c] = 0;
            for (int k = 0; k < 3; k++)
                if (parts_of[h][k] >= 0) centre[h][c] += part[parts_of[h][k]][c];
            a->prompts[h * ABL_C + c] = 0.3f * centre[h][c] + 0.8f * sc_rng_normal(&rng);
        }
    a->n_train = a->n_test = 0;
    for (int h = 0; h < ABL_H; h++) a->n_train += abl_train_count[h], a->n_test += abl_test_count[h];
    a->train = malloc(sizeof(float) * (size_t)(a->n_train * ABL_C));
    a->test = malloc(sizeof(float) * (size_t)(a->n_test * ABL_C));
    a->train_labels = calloc((size_t)(a->n_train * ABL_H), sizeof(float));
    a->train_combo = malloc(sizeof(int) * (size_t)a->n_train);
    a->test_combo = malloc(sizeof(int) * (size_t)a->n_test);
    for (int split = 0; split < 2; split++) {
        const int *count = split ? abl_test_count : abl_train_count;
        float *x = split ? a->test : a->train;
        int *combo = split ? a->test_combo : a->train_combo;
        int64_t i = 0;
        for (int h = 0; h < ABL_H; h++)
            for (int n = 0; n < count[h]; n++, i++) {
                combo[i] = h;
                if (!split) a->train_labels[i * ABL_H + h] = 1;
                for (int c = 0; c < ABL_C; c++) x[i * ABL_C + c] = centre[h][c] + 1.6f * sc_rng_normal(&rng);
            }
    }
}

static void free_ablation_data(ablation_data *a)
{
    free(a->train), free(a->test), free(a->prompts), free(a->train_labels), free(a->train_combo), free(a->test_combo);
}

/* Metrics of the test set at combination and class level (softmax of the
 * level's logits as scores, argmax as prediction), as `scale predict`. */
static void evaluate(sc_metrics out[2], const sc_scale_model *m, const ablation_data *a, int trained)
{
    int64_t N = a->n_test;
    float *Q = malloc(sizeof(float) * (size_t)(N * ABL_H)), *prob = malloc(sizeof(float) * (size_t)(N * ABL_H));
    double *Z = malloc(sizeof(double) * (size_t)(N * ABL_H)), *zc = malloc(sizeof(double) * (size_t)(N * 2));
    uint8_t *truth = malloc((size_t)(N * ABL_H)), *pred = malloc((size_t)(N * ABL_H));
    if (trained) {
        sc_scale_similarity(Q, m, a->test, N, a->prompts, ABL_H);
    } else {
        /* zero-shot: cosine similarity of the frozen embeddings */
        for (int64_t i = 0; i < N; i++)
            for (int h = 0; h < ABL_H; h++) {
                double dot = 0, nx = 0, np = 0;
                for (int c = 0; c < ABL_C; c++) {
                    double x = a->test[i * ABL_C + c], p = a->prompts[h * ABL_C + c];
                    dot += x * p, nx += x * x, np += p * p;
                }
                Q[i * ABL_H + h] = (float)(dot / sqrt(nx * np));
            }
    }
    static const int identity[ABL_H] = {0, 1, 2, 3, 4};
    sc_loss_problem p = {N, ABL_H, ABL_H, 2, 5, identity, NULL, NULL, pigmentation_class, pigmentation_concept};
    sc_scale_scores(Z, NULL, zc, Q, &p, 100.0);
    for (int level = 0; level < 2; level++) {
        int K = level ? 2 : ABL_H;
        const double *x = level ? zc : Z;
        for (int64_t i = 0; i < N; i++) {
            double mx = x[i * K], sum = 0;
            for (int k = 1; k < K; k++) mx = x[i * K + k] > mx ? x[i * K + k] : mx;
            for (int k = 0; k < K; k++) sum += exp(x[i * K + k] - mx);
            for (int k = 0; k < K; k++) {
                prob[i * K + k] = (float)(exp(x[i * K + k] - mx) / sum);
                int truth_k = level ? pigmentation_class[a->test_combo[i]] : a->test_combo[i];
                truth[i * K + k] = truth_k == k;
            }
        }
        sc_predict_argmax(pred, prob, N, K);
        sc_metrics_eval(&out[level], prob, truth, pred, N, K);
    }
    free(Q), free(prob), free(Z), free(zc), free(truth), free(pred);
}

typedef struct {
    const char *name;
    void (*apply)(sc_train_config *cfg);
    int small; /* train on a tenth of the images */
} variant;

static void v_default(sc_train_config *c) { (void)c; }
static void v_rows(sc_train_config *c) { c->loss.supcon = SC_SUPCON_ROWS; }
static void v_sum(sc_train_config *c) { c->loss.reduction = SC_REDUCE_SUM; }
static void v_alpha_raw(sc_train_config *c) { c->adapter.alpha_mode = SC_ALPHA_RAW; }
static void v_alpha_clamp(sc_train_config *c) { c->adapter.alpha_mode = SC_ALPHA_CLAMP; }
static void v_one_relu(sc_train_config *c) { c->adapter.relu_after_up = 0; }
static void v_no_supcon(sc_train_config *c) { c->loss.lambda[2] = c->loss.lambda[3] = 0; }
static void v_no_hierarchy(sc_train_config *c) { c->loss.lambda[0] = c->loss.lambda[1] = 0; }
static void v_image_only(sc_train_config *c) { c->text_adapter = 0; }

void bench_scale_ablation(void)
{
    static const variant variants[] = {
        {"zero-shot", NULL, 0},
        {"default", v_default, 0},
        {"supcon-rows", v_rows, 0},
        {"reduction-sum", v_sum, 0},
        {"alpha-raw", v_alpha_raw, 0},
        {"alpha-clamp", v_alpha_clamp, 0},
        {"one-relu", v_one_relu, 0},
        {"no-supcon", v_no_supcon, 0},
        {"no-concept-class-ce", v_no_hierarchy, 0},
        {"image-adapter-only", v_image_only, 0},
        {"default-small", v_default, 1},
        {"reduction-sum-small", v_sum, 1},
        {"supcon-rows-small", v_rows, 1},
        {"no-supcon-small", v_no_supcon, 1},
    };
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        double sum[2][4] = {{0}}, sq[2][4] = {{0}}, alpha_img = 0, alpha_txt = 0, t0 = bench_now();
        int64_t n_train = 0;
        for (int seed = 0; seed < ABL_SEEDS; seed++) {
            ablation_data a;
            make_ablation_data(&a, 100 + (uint64_t)seed);
            if (variants[v].small) keep_small_share(&a);
            n_train = a.n_train;
            sc_train_config cfg = sc_train_defaults();
            cfg.seed = (uint64_t)seed;
            if (variants[v].apply) variants[v].apply(&cfg);
            sc_scale_model m;
            sc_err err;
            sc_scale_model_init(&m, ABL_C, &cfg, &err);
            sc_train_data d = {a.n_train, ABL_C, ABL_H, 2, 5, a.train, NULL, a.train_combo, a.train_labels, NULL,
                               a.prompts, pigmentation_class, pigmentation_concept};
            sc_ctx ctx;
            sc_ctx_init(&ctx);
            for (int e = 0; variants[v].apply && e < cfg.epochs; e++) sc_scale_train_epoch(&m, &ctx, &d);
            sc_ctx_free(&ctx);
            sc_metrics r[2];
            evaluate(r, &m, &a, variants[v].apply != NULL);
            for (int level = 0; level < 2; level++) {
                const double x[4] = {r[level].accuracy, r[level].macro_recall, r[level].macro_f1, r[level].auc};
                for (int k = 0; k < 4; k++) sum[level][k] += x[k], sq[level][k] += x[k] * x[k];
            }
            alpha_img += cfg.image_adapter ? sc_adapter_alpha(&m.image) : 0;
            alpha_txt += cfg.text_adapter ? sc_adapter_alpha(&m.text) : 0;
            sc_scale_model_free(&m);
            free_ablation_data(&a);
        }
        printf("bench op=scale-ablation variant=%s seeds=%d train=%lld batch=%d", variants[v].name, ABL_SEEDS,
               (long long)n_train, sc_train_batch_size(n_train));
        static const char *const level_name[2] = {"combo", "class"}, *const metric[4] = {"acc", "recall", "f1", "auc"};
        for (int level = 0; level < 2; level++)
            for (int k = 0; k < 4; k++) {
                double mean = sum[level][k] / ABL_SEEDS, var = sq[level][k] / ABL_SEEDS - mean * mean;
                printf(" %s_%s=%.3f±%.3f", level_name[level], metric[k], mean, sqrt(var > 0 ? var : 0));
            }
        printf(" alpha_image=%.3f alpha_text=%.3f seconds=%.1f\n", alpha_img / ABL_SEEDS, alpha_txt / ABL_SEEDS,
               bench_now() - t0);
        fflush(stdout);
    }
}
