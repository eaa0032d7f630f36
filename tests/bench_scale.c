/* bench_scale.c — SCALE training on cached embeddings at the size of one
 * Derm7p criterion: 413 training images (the train split), 768-d MONET
 * embeddings, 5 combinations (pigmentation), 150 epochs, both adapters,
 * batch size from the rule (64). The embeddings are synthetic: the time
 * does not depend on their values. Also the two kernels it is made of. */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdlib.h>
#include <string.h>

static const int pigmentation_class[5] = {0, 0, 0, 1, 1};
static const int pigmentation_concept[5] = {0, 1, 2, 3, 4};

static void bench_train(int64_t N, int64_t C, int H, int epochs)
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
    sc_train_data d = {N, C, H, 2, 5, images, NULL, combo, labels, NULL, prompts, pigmentation_class,
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
    double t0 = bench_now(), loss = 0;
    for (int e = 0; e < epochs; e++) loss = sc_scale_train_epoch(&m, &ctx, &d);
    double seconds = bench_now() - t0;
    printf("bench op=scale-train n=%lld d=%lld combos=%d epochs=%d batch=%d threads=%d simd=%d seconds=%.3f "
           "ms_per_epoch=%.2f final_loss=%.4f peak_rss_mib=%.1f\n",
           (long long)N, (long long)C, H, epochs, sc_train_batch_size(N), sc_threads(), sc_gemm_simd(), seconds,
           1e3 * seconds / epochs, loss, bench_peak_rss_mib());
    sc_ctx_free(&ctx);
    sc_scale_model_free(&m);
    free(images);
    free(prompts);
    free(labels);
    free(combo);
}

/* One adapter forward + backward on a (B, C) batch, the unit of work of
 * training: 5 GEMMs of 2·B·C·R flops each (df is not needed for frozen
 * embeddings, so 4 of them count). */
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
    double t0 = bench_now(), dalpha = 0;
    for (int r = 0; r < reps; r++) {
        sc_adapter_forward(out, hidden, up, f, w1, w2, 0.2f, 1, B, C, R);
        sc_adapter_backward(NULL, dw1, dw2, &dalpha, d_up, d_hidden, out, hidden, up, f, w1, w2, 0.2f, 1, B, C, R);
    }
    double seconds = (bench_now() - t0) / reps;
    double flops = 4.0 * 2.0 * (double)B * (double)C * (double)R;
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
    bench_train(413, 768, 5, 150);
}
