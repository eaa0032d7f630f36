/* check_coop.c — CoOp's prompt learner (nn.c section 9) on the golden
 * models: clip-tiny (a real CLIP in Hugging Face layout) and medclip-tiny
 * (MedCLIP's Swin and BERT), whose text tower runs on the tape as BERT.
 *
 * Evidence:
 *  1. prompts assembled from context vectors that start as the embeddings
 *     of real words are those words: their features equal PyTorch's
 *     text_embeds for the same token row (the golden fixtures; for
 *     MedCLIP at the fixture's padded length, 12) and our encoder on the
 *     equivalent ids;
 *  2. the gradient of CoOp's loss with respect to the context vectors
 *     (unified and class-specific, both models) against central finite
 *     differences;
 *  3. training separates synthetic image clusters the untrained prompts do
 *     not (it beats chance, both models), and the learning-rate schedule
 *     is CoOp's;
 *  4. prompts too long for the tower, ids outside its vocabulary and
 *     MedCLIP names without their attention mask are refused.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

/* A golden model and its tokenizer's start and end tokens. */
typedef struct {
    const char *dir;
    int64_t start, end;
} tower;

static const tower CLIP_TINY = {"tests/golden/clip-tiny", 510, 511};
static const tower MEDCLIP_TINY = {"tests/golden/medclip-tiny", 2, 3};   /* [CLS], [SEP]; [PAD] is 0 */

static sc_model *load_tower(const tower *tw)
{
    sc_model *m;
    sc_err err;
    ck_assert_msg(sc_model_load(&m, sc_test_path(tw->dir), NULL, &err) == SC_OK, "%s", err.msg);
    return m;
}

/* A name row as the tokenizers write it: start, tokens, end, zero padding
 * to 16; mask marks the real tokens. */
static void name_row(int64_t *row, int64_t *mask, const tower *tw, const int64_t *tokens, int n)
{
    memset(row, 0, sizeof(int64_t) * 16);
    row[0] = tw->start;
    for (int i = 0; i < n; i++) row[1 + i] = tokens[i];
    row[1 + n] = tw->end;
    for (int t = 0; t < 16; t++) mask[t] = t <= 1 + n;
}

/* Row `row` of a golden .npy (rows of `width` floats). */
static float *golden_row(const tower *tw, const char *file, int64_t row, int64_t width)
{
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s", tw->dir, file);
    sc_array a;
    float *all;
    sc_err err;
    ck_assert_msg(sc_npy_read(sc_test_path(rel), &a, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_array_to_f32(&a, &all, &err) == SC_OK, "%s", err.msg);
    float *out = malloc(sizeof(float) * (size_t)width);
    memcpy(out, all + row * width, sizeof(float) * (size_t)width);
    free(all);
    sc_array_free(&a);
    return out;
}

/* got (E) against a golden row within the MANIFEST rule
 * max|out − ref| <= 1e-4 · max(1, max|ref|). */
static void check_golden(const char *what, const float *got, const float *ref, int64_t E)
{
    double big = sc_max_abs(ref, E);
    sc_check_close(what, got, ref, E, 1e-4 * (big > 1 ? big : 1), 0);
}

START_TEST(test_coop_words_are_words)
{
    const tower *tw = &CLIP_TINY;
    sc_model *m = load_tower(tw);
    /* golden row 0 is 510 191 245 49 245 79 511: context "191 245 49",
     * name "245 79"; the second prompt has an empty name */
    int64_t names[2 * 16], masks[2 * 16];
    name_row(names, masks, tw, (const int64_t[]){245, 79}, 2);
    name_row(names + 16, masks + 16, tw, NULL, 0);
    const int64_t words[3] = {191, 245, 49};
    sc_coop_config cfg = sc_coop_defaults();
    sc_coop p;
    sc_err err;
    ck_assert_msg(sc_coop_init(&p, m, names, NULL, 2, 16, words, 3, &cfg, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(p.n_ctx, 3);
    ck_assert_int_eq(p.T, 7);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_ctx_set_grad(&ctx, 0);
    sc_tensor *y = sc_coop_text_features(&ctx, &p, m);
    int64_t E = y->shape[1];
    float *ref = golden_row(tw, "text_embeds.npy", 0, E);
    check_golden("prompt 0 vs PyTorch", y->data, ref, E);

    const int64_t ids[16] = {510, 191, 245, 49, 511};
    sc_tensor *z;
    ck_assert_msg(sc_model_encode_text(m, &ctx, ids, NULL, 1, 16, &z, NULL, &err) == SC_OK, "%s", err.msg);
    sc_check_close("prompt 1 vs the encoder", y->data + E, z->data, E, 1e-5, 1e-4);
    free(ref);
    sc_ctx_free(&ctx);
    sc_coop_free(&p);
    sc_model_free(m);
}
END_TEST

/* MedCLIP: golden row 1 is [CLS] 118 16 117 36 10 [SEP], padded to 12 in
 * the fixture's batch. As context "118 16 117" and name "36 10", beside a
 * prompt whose seven-token name makes the longest prompt 12 positions,
 * the first prompt is exactly that row at that padded length. */
START_TEST(test_coop_medclip_words_are_words)
{
    const tower *tw = &MEDCLIP_TINY;
    sc_model *m = load_tower(tw);
    int64_t names[2 * 16], masks[2 * 16];
    name_row(names, masks, tw, (const int64_t[]){36, 10}, 2);
    name_row(names + 16, masks + 16, tw, (const int64_t[]){117, 13, 12, 43, 35, 10, 104}, 7);
    const int64_t words[3] = {118, 16, 117};
    sc_coop_config cfg = sc_coop_defaults();
    sc_coop p;
    sc_err err;
    ck_assert_msg(sc_coop_init(&p, m, names, masks, 2, 16, words, 3, &cfg, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(p.T, 12);   /* 1 + 3 + 7 + 1: the longest prompt */
    for (int64_t t = 0; t < 12; t++) {
        ck_assert_int_eq(p.mask[t], t < 7);   /* [CLS], 3 context, 2 name, [SEP]; then [PAD] */
        ck_assert_int_eq(p.mask[12 + t], 1);
    }
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_ctx_set_grad(&ctx, 0);
    sc_tensor *y = sc_coop_text_features(&ctx, &p, m);
    int64_t E = y->shape[1];
    float *ref = golden_row(tw, "text_embeds.npy", 1, E);
    check_golden("MedCLIP prompt 0 vs PyTorch", y->data, ref, E);

    const int64_t ids[12] = {2, 118, 16, 117, 117, 13, 12, 43, 35, 10, 104, 3}, ones[12] = {1, 1, 1, 1, 1, 1,
                                                                                           1, 1, 1, 1, 1, 1};
    sc_tensor *z;
    ck_assert_msg(sc_model_encode_text(m, &ctx, ids, ones, 1, 12, &z, NULL, &err) == SC_OK, "%s", err.msg);
    sc_check_close("MedCLIP prompt 1 vs the encoder", y->data + E, z->data, E, 1e-5, 1e-4);
    free(ref);
    sc_ctx_free(&ctx);
    sc_coop_free(&p);
    sc_model_free(m);
}
END_TEST

/* Four prompts in two blocks (two tasks of two classes), five images; the
 * name tokens are in both vocabularies. */
typedef struct {
    int64_t names[4 * 16], masks[4 * 16];
    float images[5 * 32];
    float targets[5 * 4];
    int block_offset[3];
    sc_coop_data data;
} coop_problem;

static void coop_problem_init(coop_problem *q, const tower *tw)
{
    static const int64_t tok[4][3] = {{45, 79, 0}, {12, 0, 0}, {100, 101, 102}, {44, 45, 0}};
    static const int len[4] = {2, 1, 3, 2};
    for (int k = 0; k < 4; k++) name_row(q->names + k * 16, q->masks + k * 16, tw, tok[k], len[k]);
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

static void check_gradient(const tower *tw, int class_specific)
{
    sc_model *m = load_tower(tw);
    coop_problem q;
    coop_problem_init(&q, tw);
    sc_coop_config cfg = sc_coop_defaults();
    cfg.n_ctx = 4;
    cfg.class_specific = class_specific;
    cfg.init_std = 0.5f;      /* large enough that the prompts differ visibly */
    cfg.seed = 3;
    sc_coop p;
    sc_err err;
    ck_assert_msg(sc_coop_init(&p, m, q.names, q.masks, 4, 16, NULL, 0, &cfg, &err) == SC_OK, "%s", err.msg);
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
    ck_assert_msg(max_err <= 2e-2 * scale, "%s CoOp context gradient: max error %g at scale %g", tw->dir, max_err,
                  scale);
    sc_ctx_free(&ctx);
    sc_ctx_free(&fd);
    sc_coop_free(&p);
    sc_model_free(m);
}

START_TEST(test_coop_gradient_unified) { check_gradient(&CLIP_TINY, 0); }
END_TEST

START_TEST(test_coop_gradient_csc) { check_gradient(&CLIP_TINY, 1); }
END_TEST

START_TEST(test_coop_medclip_gradient_unified) { check_gradient(&MEDCLIP_TINY, 0); }
END_TEST

START_TEST(test_coop_medclip_gradient_csc) { check_gradient(&MEDCLIP_TINY, 1); }
END_TEST

/* The loss by hand: with targets t and logits z of a block, −Σ t log
 * softmax(z), averaged over images and summed over blocks. */
START_TEST(test_coop_loss_by_hand)
{
    sc_model *m = load_tower(&CLIP_TINY);
    coop_problem q;
    coop_problem_init(&q, &CLIP_TINY);
    sc_coop_config cfg = sc_coop_defaults();
    cfg.n_ctx = 2;
    sc_coop p;
    sc_err err;
    ck_assert_msg(sc_coop_init(&p, m, q.names, NULL, 4, 16, NULL, 0, &cfg, &err) == SC_OK, "%s", err.msg);
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
static void check_beats_chance(const tower *tw)
{
    sc_model *m = load_tower(tw);
    enum { K = 3, N = 60, E = 32 };
    int64_t names[K * 16], masks[K * 16];
    for (int k = 0; k < K; k++) name_row(names + k * 16, masks + k * 16, tw, (const int64_t[]){100 + 7 * k}, 1);
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
    ck_assert_msg(sc_coop_init(&p, m, names, masks, K, 16, NULL, 0, &cfg, &err) == SC_OK, "%s", err.msg);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_ctx_set_grad(&ctx, 0);
    float prompts[K * E], *x = malloc(sizeof(float) * N * E), logits[N * K];
    uint8_t pred[N * K];
    sc_normalize_rows(x, images, N, E);
    int right[2];   /* before and after training */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            sc_ctx_set_grad(&ctx, 1);
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
            ck_assert_msg(last < 0.5 * first, "%s: loss %g -> %g", tw->dir, first, last);
            sc_ctx_set_grad(&ctx, 0);
        }
        sc_tensor *txt = sc_coop_text_features(&ctx, &p, m);
        sc_normalize_rows(prompts, txt->data, K, E);
        sc_vlm_scores(logits, NULL, x, N, prompts, K, NULL, E, 1.0f);
        sc_predict_argmax(pred, logits, N, K);
        right[pass] = 0;
        for (int i = 0; i < N; i++) right[pass] += pred[i * K + i % K];
        sc_ctx_reset(&ctx);
    }
    ck_assert_msg(right[1] >= 0.8 * N, "%s: CoOp puts %d of %d training images in their class (%d untrained)",
                  tw->dir, right[1], N, right[0]);
    free(images), free(targets), free(x);
    sc_ctx_free(&ctx);
    sc_coop_free(&p);
    sc_model_free(m);
}

START_TEST(test_coop_beats_chance) { check_beats_chance(&CLIP_TINY); }
END_TEST

START_TEST(test_coop_medclip_beats_chance) { check_beats_chance(&MEDCLIP_TINY); }
END_TEST

START_TEST(test_coop_refuses)
{
    sc_model *m = load_tower(&CLIP_TINY);
    int64_t names[16], masks[16];
    int64_t long_name[13];
    for (int i = 0; i < 13; i++) long_name[i] = 100 + i;
    name_row(names, masks, &CLIP_TINY, long_name, 13);   /* 15 positions; 1 + 16 + 14 do not fit in 16 */
    sc_coop_config cfg = sc_coop_defaults();
    sc_coop p;
    sc_err err;
    ck_assert_int_eq(sc_coop_init(&p, m, names, NULL, 1, 16, NULL, 0, &cfg, &err), SC_ERANGE);
    ck_assert_msg(strstr(err.msg, "positions") != NULL, "%s", err.msg);
    names[3] = 9999;                              /* outside the 512-token vocabulary */
    ck_assert_int_eq(sc_coop_init(&p, m, names, NULL, 1, 16, NULL, 0, &cfg, &err), SC_ERANGE);
    sc_model_free(m);

    /* MedCLIP: its end token is found by the mask, which must be given;
     * 32 positions hold 1 + 16 + 14 but not 1 + 28 + 14 */
    sc_model *med = load_tower(&MEDCLIP_TINY);
    name_row(names, masks, &MEDCLIP_TINY, long_name, 13);
    ck_assert_int_eq(sc_coop_init(&p, med, names, NULL, 1, 16, NULL, 0, &cfg, &err), SC_EARG);
    ck_assert_msg(strstr(err.msg, "attention mask") != NULL, "%s", err.msg);
    ck_assert_int_eq(sc_coop_init(&p, med, names, masks, 1, 16, NULL, 0, &cfg, &err), SC_OK);
    sc_coop_free(&p);
    cfg.n_ctx = 28;
    ck_assert_int_eq(sc_coop_init(&p, med, names, masks, 1, 16, NULL, 0, &cfg, &err), SC_ERANGE);
    ck_assert_msg(strstr(err.msg, "positions") != NULL, "%s", err.msg);
    cfg.n_ctx = 4;
    names[2] = 128;                               /* outside BERT's 128-word vocabulary */
    ck_assert_int_eq(sc_coop_init(&p, med, names, masks, 1, 16, NULL, 0, &cfg, &err), SC_ERANGE);
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
    tcase_add_test(tc, test_coop_medclip_words_are_words);
    tcase_add_test(tc, test_coop_medclip_gradient_unified);
    tcase_add_test(tc, test_coop_medclip_gradient_csc);
    tcase_add_test(tc, test_coop_medclip_beats_chance);
    suite_add_tcase(s, tc);
    return s;
}
