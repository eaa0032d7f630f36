/* check_coop.c — CoOp's prompt learner (nn.c section 9) on the clip-tiny
 * golden model, a real CLIP in Hugging Face layout.
 *
 * Evidence:
 *  1. prompts assembled from context vectors that start as the embeddings
 *     of real words are those words: their features equal PyTorch's
 *     text_embeds for the same token row (the golden fixture) and our
 *     encoder on the equivalent ids;
 *  2. the gradient of CoOp's loss with respect to the context vectors
 *     (unified and class-specific) against central finite differences;
 *  3. training separates synthetic image clusters the untrained prompts do
 *     not (it beats chance), and the learning-rate schedule is CoOp's;
 *  4. MedCLIP and prompts too long for the tower are refused.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

#define CLIP_DIR "tests/golden/clip-tiny"

static sc_model *clip_tiny(void)
{
    sc_model *m;
    sc_err err;
    ck_assert_msg(sc_model_load(&m, sc_test_path(CLIP_DIR), NULL, &err) == SC_OK, "%s", err.msg);
    return m;
}

/* A name row of the fixture's tokenizer layout: 510 start, tokens, 511
 * end, zero padding to 16. */
static void name_row(int64_t *row, const int64_t *tokens, int n)
{
    memset(row, 0, sizeof(int64_t) * 16);
    row[0] = 510;
    for (int i = 0; i < n; i++) row[1 + i] = tokens[i];
    row[1 + n] = 511;
}

START_TEST(test_coop_words_are_words)
{
    sc_model *m = clip_tiny();
    /* golden row 0 is 510 191 245 49 245 79 511: context "191 245 49",
     * name "245 79"; the second prompt has an empty name */
    int64_t names[2 * 16];
    name_row(names, (const int64_t[]){245, 79}, 2);
    name_row(names + 16, NULL, 0);
    const int64_t words[3] = {191, 245, 49};
    sc_coop_config cfg = sc_coop_defaults();
    sc_coop p;
    sc_err err;
    ck_assert_msg(sc_coop_init(&p, m, names, 2, 16, words, 3, &cfg, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(p.n_ctx, 3);
    ck_assert_int_eq(p.T, 7);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_ctx_set_grad(&ctx, 0);
    sc_tensor *y = sc_coop_text_features(&ctx, &p, m);
    int64_t E = y->shape[1];

    sc_array a;
    float *ref;
    ck_assert_msg(sc_npy_read(sc_test_path(CLIP_DIR "/text_embeds.npy"), &a, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_array_to_f32(&a, &ref, &err) == SC_OK, "%s", err.msg);
    double big = sc_max_abs(ref, E);
    sc_check_close("prompt 0 vs PyTorch", y->data, ref, E, 1e-4 * (big > 1 ? big : 1), 0); /* MANIFEST rule */

    const int64_t ids[16] = {510, 191, 245, 49, 511};
    sc_tensor *z;
    ck_assert_msg(sc_model_encode_text(m, &ctx, ids, NULL, 1, 16, &z, NULL, &err) == SC_OK, "%s", err.msg);
    sc_check_close("prompt 1 vs the encoder", y->data + E, z->data, E, 1e-5, 1e-4);
    free(ref);
    sc_array_free(&a);
    sc_ctx_free(&ctx);
    sc_coop_free(&p);
    sc_model_free(m);
}
END_TEST

/* Four prompts in two blocks (two tasks of two classes), five images. */
typedef struct {
    int64_t names[4 * 16];
    float images[5 * 32];
    float targets[5 * 4];
    int block_offset[3];
    sc_coop_data data;
} coop_problem;

static void coop_problem_init(coop_problem *q)
{
    static const int64_t tok[4][3] = {{245, 79, 0}, {12, 0, 0}, {300, 301, 302}, {44, 45, 0}};
    static const int len[4] = {2, 1, 3, 2};
    for (int k = 0; k < 4; k++) name_row(q->names + k * 16, tok[k], len[k]);
    sc_fill_normal(q->images, 5 * 32, 21, 1.0f);
    memset(q->targets, 0, sizeof q->targets);
    for (int i = 0; i < 5; i++) {
        q->targets[i * 4 + i % 2] = 1;                 /* task 0: one class */
        q->targets[i * 4 + 2] = 0.25f;                 /* task 1: a soft target */
        q->targets[i * 4 + 3] = 0.75f;
    }
    q->block_offset[0] = 0, q->block_offset[1] = 2, q->block_offset[2] = 4;
    sc_coop_data d = {5, 32, q->images, q->targets, 2, q->block_offset};
    q->data = d;
}

static void check_gradient(int class_specific)
{
    sc_model *m = clip_tiny();
    coop_problem q;
    coop_problem_init(&q);
    sc_coop_config cfg = sc_coop_defaults();
    cfg.n_ctx = 4;
    cfg.class_specific = class_specific;
    cfg.init_std = 0.5f;      /* large enough that the prompts differ visibly */
    cfg.seed = 3;
    sc_coop p;
    sc_err err;
    ck_assert_msg(sc_coop_init(&p, m, q.names, 4, 16, NULL, 0, &cfg, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(p.ctx->shape[0], class_specific ? 16 : 4);
    const int index[5] = {0, 1, 2, 3, 4};
    sc_ctx ctx, fd;
    sc_ctx_init(&ctx);
    sc_ctx_init(&fd);
    sc_ctx_set_grad(&fd, 0);
    sc_optim_zero_grad(&p.opt);
    sc_backward(&ctx, sc_coop_batch_loss(&ctx, &p, m, &q.data, index, 5));

    double h = 1e-2, max_err = 0, scale = 0;
    int64_t n = sc_numel(p.ctx);
    for (int64_t i = 0; i < n; i += 7) {
        float keep = p.ctx->data[i];
        p.ctx->data[i] = keep + (float)h;
        double up = sc_coop_batch_loss(&fd, &p, m, &q.data, index, 5)->data[0];
        sc_ctx_reset(&fd);
        p.ctx->data[i] = keep - (float)h;
        double down = sc_coop_batch_loss(&fd, &p, m, &q.data, index, 5)->data[0];
        sc_ctx_reset(&fd);
        p.ctx->data[i] = keep;
        double numeric = (up - down) / (2 * h);
        max_err = fmax(max_err, fabs(numeric - p.ctx->grad[i]));
        scale = fmax(scale, fabs(numeric));
    }
    ck_assert_msg(scale > 1e-3, "all sampled gradients are ~0 (%g)", scale);
    ck_assert_msg(max_err <= 2e-2 * scale, "CoOp context gradient: max error %g at scale %g", max_err, scale);
    sc_ctx_free(&ctx);
    sc_ctx_free(&fd);
    sc_coop_free(&p);
    sc_model_free(m);
}

START_TEST(test_coop_gradient_unified) { check_gradient(0); }
END_TEST

START_TEST(test_coop_gradient_csc) { check_gradient(1); }
END_TEST

/* The loss by hand: with targets t and logits z of a block, −Σ t log
 * softmax(z), averaged over images and summed over blocks. */
START_TEST(test_coop_loss_by_hand)
{
    sc_model *m = clip_tiny();
    coop_problem q;
    coop_problem_init(&q);
    sc_coop_config cfg = sc_coop_defaults();
    cfg.n_ctx = 2;
    sc_coop p;
    sc_err err;
    ck_assert_msg(sc_coop_init(&p, m, q.names, 4, 16, NULL, 0, &cfg, &err) == SC_OK, "%s", err.msg);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_ctx_set_grad(&ctx, 0);
    const int index[5] = {0, 1, 2, 3, 4};
    double loss = sc_coop_batch_loss(&ctx, &p, m, &q.data, index, 5)->data[0];
    sc_tensor *txt = sc_coop_text_features(&ctx, &p, m);
    int64_t E = 32;
    float xi[32], tk[4 * 32];
    sc_normalize_rows(tk, txt->data, 4, E);
    double s = sc_model_logit_scale(m), want = 0;
    for (int i = 0; i < 5; i++) {
        sc_normalize_rows(xi, q.images + i * E, 1, E);
        double z[4];
        for (int k = 0; k < 4; k++) {
            z[k] = 0;
            for (int64_t j = 0; j < E; j++) z[k] += (double)xi[j] * tk[k * E + j];
            z[k] *= s;
        }
        for (int b = 0; b < 2; b++) {
            double lse = log(exp(z[2 * b]) + exp(z[2 * b + 1]));
            for (int k = 2 * b; k < 2 * b + 2; k++) want -= q.targets[i * 4 + k] * (z[k] - lse);
        }
    }
    want /= 5;
    ck_assert_msg(fabs(loss - want) <= 1e-4 * fabs(want) + 1e-5, "loss %.8g, by hand %.8g", loss, want);
    sc_ctx_free(&ctx);
    sc_coop_free(&p);
    sc_model_free(m);
}
END_TEST

/* Three clusters of images around random directions: the untrained
 * prompts know nothing of them; after training, most images score
 * highest on their own class (chance is one in three). */
START_TEST(test_coop_beats_chance)
{
    sc_model *m = clip_tiny();
    enum { K = 3, N = 60, E = 32 };
    int64_t names[K * 16];
    for (int k = 0; k < K; k++) name_row(names + k * 16, (const int64_t[]){100 + 7 * k}, 1);
    float centre[K * E], *images = malloc(sizeof(float) * N * E), *targets = calloc(N * K, sizeof(float));
    sc_fill_normal(centre, K * E, 31, 1.0f);
    sc_fill_normal(images, N * E, 32, 0.3f);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < E; j++) images[i * E + j] += centre[(i % K) * E + j];
        targets[i * K + i % K] = 1;
    }
    int block_offset[2] = {0, K};
    sc_coop_data d = {N, E, images, targets, 1, block_offset};
    sc_coop_config cfg = sc_coop_defaults();
    cfg.n_ctx = 4;
    cfg.class_specific = 1;
    cfg.epochs = 40;
    cfg.lr = 0.05f;
    cfg.batch_size = 16;
    cfg.seed = 5;
    sc_coop p;
    sc_err err;
    ck_assert_msg(sc_coop_init(&p, m, names, K, 16, NULL, 0, &cfg, &err) == SC_OK, "%s", err.msg);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    double first = 0, last = 0;
    for (int e = 0; e < cfg.epochs; e++) {
        /* the schedule: warm-up epoch at 1e-5, then cosine from 0.05 */
        double loss = sc_coop_train_epoch(&p, m, &ctx, &d);
        float want = e == 0 ? 1e-5f : (float)(0.5 * 0.05 * (1 + cos(3.14159265358979 * (e - 1) / cfg.epochs)));
        ck_assert_msg(fabsf(p.opt.cfg.lr - want) <= 1e-6f * 0.05f + 1e-9f, "epoch %d: lr %g, want %g", e,
                      (double)p.opt.cfg.lr, (double)want);
        if (e == 0) first = loss;
        last = loss;
    }
    ck_assert_msg(last < 0.5 * first, "loss %g -> %g", first, last);
    sc_ctx_set_grad(&ctx, 0);
    sc_tensor *txt = sc_coop_text_features(&ctx, &p, m);
    float prompts[K * E], *x = malloc(sizeof(float) * N * E), logits[N * K];
    sc_normalize_rows(prompts, txt->data, K, E);
    sc_normalize_rows(x, images, N, E);
    sc_vlm_scores(logits, NULL, x, N, prompts, K, NULL, E, 1.0f);
    uint8_t pred[N * K];
    sc_predict_argmax(pred, logits, N, K);
    int right = 0;
    for (int i = 0; i < N; i++) right += pred[i * K + i % K];
    ck_assert_msg(right >= 0.8 * N, "CoOp puts %d of %d training images in their class", right, N);
    free(images), free(targets), free(x);
    sc_ctx_free(&ctx);
    sc_coop_free(&p);
    sc_model_free(m);
}
END_TEST

START_TEST(test_coop_refuses)
{
    sc_model *m = clip_tiny();
    int64_t names[16];
    int64_t long_name[13];
    for (int i = 0; i < 13; i++) long_name[i] = 100 + i;
    name_row(names, long_name, 13);               /* 15 positions; 1 + 16 + 14 do not fit in 16 */
    sc_coop_config cfg = sc_coop_defaults();
    sc_coop p;
    sc_err err;
    ck_assert_int_eq(sc_coop_init(&p, m, names, 1, 16, NULL, 0, &cfg, &err), SC_ERANGE);
    ck_assert_msg(strstr(err.msg, "positions") != NULL, "%s", err.msg);
    names[3] = 9999;                              /* outside the 512-token vocabulary */
    ck_assert_int_eq(sc_coop_init(&p, m, names, 1, 16, NULL, 0, &cfg, &err), SC_ERANGE);
    sc_model_free(m);

    sc_model *med;
    ck_assert_msg(sc_model_load(&med, sc_test_path("tests/golden/medclip-tiny"), NULL, &err) == SC_OK, "%s", err.msg);
    name_row(names, (const int64_t[]){5}, 1);
    ck_assert_int_eq(sc_coop_init(&p, med, names, 1, 16, NULL, 0, &cfg, &err), SC_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "MedCLIP") != NULL, "%s", err.msg);
    sc_model_free(med);
}
END_TEST

Suite *suite_coop(void)
{
    Suite *s = suite_create("coop");
    TCase *tc = tcase_create("coop");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_coop_words_are_words);
    tcase_add_test(tc, test_coop_gradient_unified);
    tcase_add_test(tc, test_coop_gradient_csc);
    tcase_add_test(tc, test_coop_loss_by_hand);
    tcase_add_test(tc, test_coop_beats_chance);
    tcase_add_test(tc, test_coop_refuses);
    suite_add_tcase(s, tc);
    return s;
}
