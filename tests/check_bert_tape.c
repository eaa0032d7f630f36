/* check_bert_tape.c — MedCLIP's BERT text tower on the autograd tape
 * (nn.c sections 2 and 6, sc_medclip_text_forward), the path CoOp's
 * gradients take for MedCLIP.
 *
 * Evidence:
 *  1. fed the word embeddings of the golden ids and the golden attention
 *     mask, the tape gives PyTorch's text_embeds of tests/golden/medclip-tiny
 *     within the MANIFEST tolerance max|out − ref| <= 1e-4 · max(1, max|ref|),
 *     and agrees with the inference encoder (sc_model_encode_text) to
 *     float rounding;
 *  2. a random two-layer MedCLIP, where hidden state 2 is also the last and
 *     counts twice, agrees with the inference encoder as well;
 *  3. the gradient with respect to the input embeddings — real and padded
 *     positions — against central finite differences; a padded position
 *     has a gradient of its own, since MedCLIP's mean counts its row.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

#define MEDCLIP_DIR "tests/golden/medclip-tiny"

static void *load_npy(const char *file, int f32)
{
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s", MEDCLIP_DIR, file);
    sc_array a;
    sc_err err;
    void *out;
    ck_assert_msg(sc_npy_read(sc_test_path(rel), &a, &err) == SC_OK, "%s", err.msg);
    if (f32) ck_assert_msg(sc_array_to_f32(&a, (float **)&out, &err) == SC_OK, "%s", err.msg);
    else ck_assert_msg(sc_array_to_i64(&a, (int64_t **)&out, &err) == SC_OK, "%s", err.msg);
    sc_array_free(&a);
    return out;
}

/* The word embeddings of ids (B, T) on the tape: (B, T, C). */
static sc_tensor *embed_ids(sc_ctx *ctx, const sc_model *m, const int64_t *ids, int64_t B, int64_t T)
{
    int32_t *ids32 = malloc(sizeof(int32_t) * (size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++) ids32[i] = (int32_t)ids[i];
    sc_tensor *x = sc_embedding(ctx, sc_medclip_word_embedding(ctx, m), ids32, B * T);
    free(ids32);
    return sc_reshape(ctx, x, 3, (int64_t[]){B, T, sc_model_get_config(m)->bert.width});
}

START_TEST(test_bert_tape_golden)
{
    sc_model *m;
    sc_err err;
    ck_assert_msg(sc_model_load(&m, sc_test_path(MEDCLIP_DIR), NULL, &err) == SC_OK, "%s", err.msg);
    int64_t *ids = load_npy("input_ids.npy", 0), *mask = load_npy("attention_mask.npy", 0);
    float *ref = load_npy("text_embeds.npy", 1);
    int64_t B = 3, T = 12, E = sc_model_get_config(m)->embed_dim;
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_tensor *y = sc_medclip_text_forward(&ctx, m, embed_ids(&ctx, m, ids, B, T), mask);
    ck_assert_int_eq(y->ndim, 2);
    ck_assert_int_eq(y->shape[0], B);
    ck_assert_int_eq(y->shape[1], E);
    double big = sc_max_abs(ref, B * E);
    sc_check_close("tape vs PyTorch text_embeds", y->data, ref, B * E, 1e-4 * (big > 1 ? big : 1), 0);
    sc_tensor *z;
    ck_assert_msg(sc_model_encode_text(m, &ctx, ids, mask, B, T, &z, NULL, &err) == SC_OK, "%s", err.msg);
    sc_check_close("tape vs the encoder", y->data, z->data, B * E, 1e-5, 1e-5);
    free(ids), free(mask), free(ref);
    sc_ctx_free(&ctx);
    sc_model_free(m);
}
END_TEST

START_TEST(test_bert_tape_two_layers)
{
    sc_model_config c;
    memset(&c, 0, sizeof c);
    c.kind = SC_MODEL_MEDCLIP;
    c.embed_dim = 16;
    sc_swin_config s = {56, 4, 16, 4, 3, {2, 2, 1}, {2, 2, 4}, 2.0f, 1e-5f, SC_ACT_GELU};
    sc_bert_config b = {40, 16, 2, 32, 2, 4, 64, 1e-12f, SC_ACT_GELU};
    c.swin = s;
    c.bert = b;
    sc_model *m;
    sc_err err;
    ck_assert_msg(sc_model_random(&m, &c, 42, &err) == SC_OK, "%s", err.msg);
    enum { B = 2, T = 7 };
    const int64_t ids[B * T] = {2, 11, 12, 13, 14, 15, 3, 2, 21, 3, 0, 0, 0, 0};
    const int64_t mask[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_tensor *y = sc_medclip_text_forward(&ctx, m, embed_ids(&ctx, m, ids, B, T), mask), *z;
    ck_assert_msg(sc_model_encode_text(m, &ctx, ids, mask, B, T, &z, NULL, &err) == SC_OK, "%s", err.msg);
    sc_check_close("two layers: tape vs the encoder", y->data, z->data, B * 16, 1e-5, 1e-5);
    sc_ctx_free(&ctx);
    sc_model_free(m);
}
END_TEST

/* L = Σ y ⊙ R over the text embeddings y (B, E), in double. */
static double tower_loss(sc_ctx *ctx, const sc_model *m, sc_tensor *x, const int64_t *mask, const float *R)
{
    sc_tensor *y = sc_medclip_text_forward(ctx, m, x, mask);
    double s = 0;
    for (int64_t i = 0; i < sc_numel(y); i++) s += (double)y->data[i] * R[i];
    return s;
}

START_TEST(test_bert_tape_gradient)
{
    sc_model *m;
    sc_err err;
    ck_assert_msg(sc_model_load(&m, sc_test_path(MEDCLIP_DIR), NULL, &err) == SC_OK, "%s", err.msg);
    enum { B = 2, T = 6, C = 64, E = 32 };
    const int64_t mask[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};   /* row 1: two padded positions */
    sc_arena a;
    sc_arena_init(&a, "x", 1 << 20, 0);
    sc_tensor *x = sc_param_new(&a, 3, (int64_t[]){B, T, C}, "x");
    sc_fill_normal(x->data, B * T * C, 41, 1.0f);
    float R[B * E];
    sc_fill_normal(R, B * E, 42, 1.0f);
    sc_ctx ctx, fd;
    sc_ctx_init(&ctx);
    sc_ctx_init(&fd);
    sc_ctx_set_grad(&fd, 0);
    sc_tensor *y = sc_medclip_text_forward(&ctx, m, x, mask);
    sc_tensor *Rt = sc_tensor_wrap(&ctx.act, R, 2, y->shape, "R");
    sc_backward(&ctx, sc_sum_all(&ctx, sc_mul(&ctx, y, Rt)));

    double h = 1e-2, max_err = 0, scale = 0, padded = 0;
    for (int64_t i = 0; i < B * T * C; i += 5) {
        float keep = x->data[i];
        x->data[i] = keep + (float)h;
        double up = tower_loss(&fd, m, x, mask, R);
        sc_ctx_reset(&fd);
        x->data[i] = keep - (float)h;
        double down = tower_loss(&fd, m, x, mask, R);
        sc_ctx_reset(&fd);
        x->data[i] = keep;
        double numeric = (up - down) / (2 * h);
        max_err = fmax(max_err, fabs(numeric - x->grad[i]));
        scale = fmax(scale, fabs(numeric));
        if (i / C >= T + 4) padded = fmax(padded, fabs(x->grad[i]));   /* row 1, positions 4 and 5 */
    }
    ck_assert_msg(scale > 1e-3, "all sampled gradients are ~0 (%g)", scale);
    ck_assert_msg(max_err <= 2e-2 * scale, "input-embedding gradient: max error %g at scale %g", max_err, scale);
    ck_assert_msg(padded > 1e-3 * scale, "padded positions pass no gradient (%g)", padded);

    sc_ctx_free(&ctx);
    sc_ctx_free(&fd);
    sc_arena_free(&a);
    sc_model_free(m);
}
END_TEST

Suite *suite_bert_tape(void)
{
    Suite *s = suite_create("bert_tape");
    TCase *tc = tcase_create("bert_tape");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bert_tape_golden);
    tcase_add_test(tc, test_bert_tape_two_layers);
    tcase_add_test(tc, test_bert_tape_gradient);
    suite_add_tcase(s, tc);
    return s;
}
