/* check_models.c — the model towers against the golden fixtures.
 *
 * Evidence, in order of strength:
 *  1. every intermediate and output of tests/golden/clip-tiny and
 *     tests/golden/medclip-tiny (computed by PyTorch: OpenAI CLIP,
 *     torchvision Swin, nn.TransformerEncoderLayer) within the MANIFEST
 *     tolerance max|out − ref| <= 1e-4 · max(1, max|ref|);
 *  2. the same weights in other layouts (OpenAI .pt, MedCLIP .bin) give
 *     bit-identical embeddings;
 *  3. the text tower on the tape against central finite differences;
 *  4. properties any correct batched forward has: a batch equals its items
 *     run one by one, a grey image equals its three-channel repeat;
 *  5. damaged checkpoints, configs and inputs fail with a sentence naming
 *     the culprit; `scale encode` run as a program.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_util.h"

#define CLIP_DIR "tests/golden/clip-tiny"
#define MEDCLIP_DIR "tests/golden/medclip-tiny"

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

static const char *fixture(const char *dir, const char *file)
{
    static char buf[4][1024];
    static int next = 0;
    char *p = buf[next];
    next = (next + 1) % 4;
    snprintf(p, sizeof buf[0], "%s/%s", sc_test_path(dir), file);
    return p;
}

/* A fixture array as float32 (or NULL data when the file is absent). */
static float *load_f32(const char *path, sc_array *a)
{
    sc_err err;
    if (sc_npy_read(path, a, &err) != SC_OK) return NULL;
    float *x;
    ck_assert_msg(sc_array_to_f32(a, &x, &err) == SC_OK, "%s", err.msg);
    return x;
}

static int64_t *load_i64(const char *path, sc_array *a)
{
    sc_err err;
    ck_assert_msg(sc_npy_read(path, a, &err) == SC_OK, "%s", err.msg);
    int64_t *x;
    ck_assert_msg(sc_array_to_i64(a, &x, &err) == SC_OK, "%s", err.msg);
    return x;
}

/* Compare t with DIR/NAME.npy by the fixtures' rule; returns 1 when a
 * reference exists. */
static int check_against(const char *dir, const char *name, const float *data, int ndim, const int64_t *shape)
{
    char file[128];
    snprintf(file, sizeof file, "%s.npy", name);
    sc_array a;
    float *ref = load_f32(fixture(dir, file), &a);
    if (!ref) return 0;
    ck_assert_msg(a.ndim == ndim, "%s: %d dims, reference has %d", name, ndim, a.ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_msg(a.shape[i] == shape[i], "%s: dim %d is %lld, reference %lld", name, i, (long long)shape[i],
                      (long long)a.shape[i]);
    int64_t n = sc_array_numel(&a);
    double big = sc_max_abs(ref, n);
    sc_check_close(name, data, ref, n, 1e-4 * (big > 1 ? big : 1), 0);
    free(ref);
    sc_array_free(&a);
    return 1;
}

/* Taps compared as they arrive; `seen` lists the names that had a file. */
typedef struct {
    const char *dir;
    char seen[32][SC_NAME_MAX];
    int n_seen;
} golden_taps;

static void golden_tap(void *user, const sc_tensor *t)
{
    golden_taps *g = user;
    if (check_against(g->dir, t->name, t->data, t->ndim, t->shape) && g->n_seen < 32)
        snprintf(g->seen[g->n_seen++], SC_NAME_MAX, "%s", t->name);
}

static void check_tensor_against(golden_taps *g, const sc_tensor *t, const char *name)
{
    ck_assert_msg(check_against(g->dir, name, t->data, t->ndim, t->shape), "no reference %s", name);
    snprintf(g->seen[g->n_seen++], SC_NAME_MAX, "%s", name);
}

static void assert_seen(const golden_taps *g, const char *const *names, int n)
{
    for (int i = 0; i < n; i++) {
        int found = 0;
        for (int k = 0; k < g->n_seen; k++) found |= !strcmp(g->seen[k], names[i]);
        ck_assert_msg(found, "fixture %s/%s.npy was never compared", g->dir, names[i]);
    }
}

static sc_model *load_model(const char *path, const char *config)
{
    sc_model *m;
    sc_err err;
    ck_assert_msg(sc_model_load(&m, path, config, &err) == SC_OK, "%s", err.msg);
    return m;
}

/* Image and text embeddings of a fixture's inputs (taps may be NULL). */
typedef struct {
    sc_tensor *img, *txt;
} embeddings;

static embeddings encode_fixture(sc_model *m, sc_ctx *ctx, const char *dir, const sc_taps *taps)
{
    sc_err err;
    sc_array px, ids, mask;
    float *pixels = load_f32(fixture(dir, "pixel_values.npy"), &px);
    int64_t *tok = load_i64(fixture(dir, "input_ids.npy"), &ids);
    int64_t *att = NULL;
    struct stat st;
    if (stat(fixture(dir, "attention_mask.npy"), &st) == 0) att = load_i64(fixture(dir, "attention_mask.npy"), &mask);
    sc_tensor *x = sc_tensor_wrap(&ctx->act, pixels, 4, px.shape, "pixel_values");
    embeddings e;
    ck_assert_msg(sc_model_encode_image(m, ctx, x, &e.img, taps, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_model_encode_text(m, ctx, tok, att, ids.shape[0], ids.shape[1], &e.txt, taps, &err) == SC_OK,
                  "%s", err.msg);
    free(pixels);
    free(tok);
    free(att);
    sc_array_free(&px);
    sc_array_free(&ids);
    if (att) sc_array_free(&mask);
    return e;
}

static void assert_identical(const sc_tensor *a, const sc_tensor *b, const char *what)
{
    ck_assert_msg(sc_same_shape(a, b), "%s: shapes differ", what);
    ck_assert_msg(memcmp(a->data, b->data, sizeof(float) * (size_t)sc_numel(a)) == 0, "%s: values differ", what);
}

/* ------------------------------------------------------------------------ */
/* 1–2. the fixtures                                                         */
/* ------------------------------------------------------------------------ */

START_TEST(test_clip_fixture)
{
    sc_model *m = load_model(sc_test_path(CLIP_DIR), NULL);
    const sc_model_config *c = sc_model_get_config(m);
    ck_assert_int_eq(c->kind, SC_MODEL_CLIP);
    ck_assert_int_eq(c->text.heads, 4);          /* from config.json */
    ck_assert_int_eq(c->text.eos_token_id, 511); /* first-EOT rule */
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    golden_taps g = {CLIP_DIR, {{0}}, 0};
    sc_taps taps = {golden_tap, &g};
    embeddings e = encode_fixture(m, &ctx, CLIP_DIR, &taps);
    check_tensor_against(&g, e.img, "image_embeds");
    check_tensor_against(&g, e.txt, "text_embeds");
    check_tensor_against(&g, sc_model_logits(&ctx, m, e.img, e.txt), "logits_per_image");
    float raw = sc_model_logit_scale_raw(m);
    ck_assert(check_against(g.dir, "logit_scale", &raw, 1, (int64_t[]){1}));
    static const char *const all[] = {"vision_pre", "vision_layer0", "vision_post", "image_embeds", "text_layer0",
                                      "text_final", "text_embeds", "logits_per_image"};
    assert_seen(&g, all, 8);
    sc_ctx_free(&ctx);
    sc_model_free(m);
}
END_TEST

START_TEST(test_clip_openai_layout)
{
    sc_model *hf = load_model(sc_test_path(CLIP_DIR), NULL);
    sc_model *oa = load_model(fixture(CLIP_DIR, "openai.pt"), fixture(CLIP_DIR, "config.json"));
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    embeddings a = encode_fixture(hf, &ctx, CLIP_DIR, NULL), b = encode_fixture(oa, &ctx, CLIP_DIR, NULL);
    assert_identical(a.img, b.img, "image embeddings, openai.pt vs model.safetensors");
    assert_identical(a.txt, b.txt, "text embeddings, openai.pt vs model.safetensors");
    sc_model_free(oa);
    /* Without the config, OpenAI's rule (heads = width / 64) is all there
     * is: right for the vision tower, wrong for this text tower. */
    oa = load_model(fixture(CLIP_DIR, "openai.pt"), NULL);
    ck_assert_int_eq(sc_model_get_config(oa)->vision.heads, 2);
    ck_assert_int_eq(sc_model_get_config(oa)->text.heads, 1);
    ck_assert_int_eq(sc_model_get_config(oa)->text.eos_token_id, -1);
    b = encode_fixture(oa, &ctx, CLIP_DIR, NULL);
    assert_identical(a.img, b.img, "image embeddings without config");
    ck_assert(memcmp(a.txt->data, b.txt->data, sizeof(float) * (size_t)sc_numel(a.txt)) != 0);
    sc_ctx_free(&ctx);
    sc_model_free(oa);
    sc_model_free(hf);
}
END_TEST

START_TEST(test_medclip_fixture)
{
    sc_model *m = load_model(sc_test_path(MEDCLIP_DIR), NULL);
    const sc_model_config *c = sc_model_get_config(m);
    ck_assert_int_eq(c->kind, SC_MODEL_MEDCLIP);
    ck_assert_int_eq(c->bert.heads, 4);
    ck_assert_int_eq(c->swin.n_stages, 2);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    golden_taps g = {MEDCLIP_DIR, {{0}}, 0};
    sc_taps taps = {golden_tap, &g};
    embeddings e = encode_fixture(m, &ctx, MEDCLIP_DIR, &taps);
    check_tensor_against(&g, e.img, "image_embeds");
    check_tensor_against(&g, e.txt, "text_embeds");
    check_tensor_against(&g, sc_l2_normalize(&ctx, e.img), "image_embeds_norm");
    check_tensor_against(&g, sc_l2_normalize(&ctx, e.txt), "text_embeds_norm");
    check_tensor_against(&g, sc_model_logits(&ctx, m, e.img, e.txt), "logits");
    float raw = sc_model_logit_scale_raw(m);
    ck_assert(check_against(g.dir, "logit_scale", &raw, 1, (int64_t[]){1}));
    static const char *const all[] = {"swin_embeddings", "swin_stage0", "swin_stage1", "swin_last_hidden",
                                      "swin_pooler", "bert_hidden_states", "bert_last_hidden", "bert_pooler",
                                      "text_pooled", "image_embeds", "text_embeds", "image_embeds_norm",
                                      "text_embeds_norm", "logits"};
    assert_seen(&g, all, 14);
    sc_ctx_free(&ctx);
    sc_model_free(m);
}
END_TEST

START_TEST(test_medclip_bin_layout)
{
    /* pytorch_model.bin carries int64 buffers (relative_position_index,
     * position_ids) that are checked, not rejected. Its BERT has 4 heads
     * where BERT-base's rule would say 1, hence the config. */
    sc_model *st = load_model(sc_test_path(MEDCLIP_DIR), NULL);
    sc_model *bin = load_model(fixture(MEDCLIP_DIR, "pytorch_model.bin"), fixture(MEDCLIP_DIR, "config.json"));
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    embeddings a = encode_fixture(st, &ctx, MEDCLIP_DIR, NULL), b = encode_fixture(bin, &ctx, MEDCLIP_DIR, NULL);
    assert_identical(a.img, b.img, "image embeddings, .bin vs .safetensors");
    assert_identical(a.txt, b.txt, "text embeddings, .bin vs .safetensors");
    sc_model_free(bin);
    bin = load_model(fixture(MEDCLIP_DIR, "pytorch_model.bin"), NULL);   /* shapes only */
    const sc_model_config *c = sc_model_get_config(bin);
    ck_assert_int_eq(c->swin.window, 7);
    ck_assert_int_eq(c->swin.heads[1], 4);
    ck_assert_int_eq(c->swin.depths[0], 2);
    ck_assert_int_eq(c->bert.layers, 3);
    ck_assert_int_eq(c->bert.heads, 1);
    ck_assert_int_eq(c->embed_dim, 32);
    sc_ctx_free(&ctx);
    sc_model_free(bin);
    sc_model_free(st);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* worked examples of the book: attention (chapter 10), Swin windows (12)    */
/* ------------------------------------------------------------------------ */

static sc_tensor *matrix3(sc_arena *a, int64_t T, int64_t C, const float *values, const char *name)
{
    sc_tensor *t = sc_param_new(a, 3, (int64_t[]){1, T, C}, name);
    memcpy(t->data, values, sizeof(float) * (size_t)(T * C));
    return t;
}

START_TEST(test_attention_example)
{
    /* One head, D = 2, scale 1/√2 (book chapter 10):
     *   row 0: scores (1, 1)/√2 → p = (½, ½) → (2, 3);
     *   row 1: scores (0, 1)/√2 → p = (1, e^{1/√2})/(1 + e^{1/√2})
     *          = (0.33023845, 0.66976155) → (2.33952310, 3.33952310);
     *   causal: row 0 sees only key 0 → (1, 2). */
    sc_arena a;
    sc_arena_init(&a, "t", 1 << 16, 0);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_tensor *q = matrix3(&a, 2, 2, (float[]){1, 0, 0, 1}, "q");
    sc_tensor *k = matrix3(&a, 2, 2, (float[]){1, 0, 1, 1}, "k");
    sc_tensor *v = matrix3(&a, 2, 2, (float[]){1, 2, 3, 4}, "v");
    sc_tensor *o = sc__attention(&ctx, q, k, v, 1, 0);
    sc_check_close("attention", o->data, (float[]){2, 3, 2.33952310f, 3.33952310f}, 4, 1e-6, 1e-6);
    o = sc__attention(&ctx, q, k, v, 1, 1);
    sc_check_close("causal attention", o->data, (float[]){1, 2, 2.33952310f, 3.33952310f}, 4, 1e-6, 1e-6);
    sc_ctx_free(&ctx);
    sc_arena_free(&a);
}
END_TEST

/* L = Σ attention(q, k, v) ⊙ R, in double. */
static double attention_loss(sc_ctx *ctx, sc_tensor **in, int64_t H, int causal, const float *R)
{
    sc_tensor *o = sc__attention(ctx, in[0], in[1], in[2], H, causal);
    double s = 0;
    for (int64_t i = 0; i < sc_numel(o); i++) s += (double)o->data[i] * R[i];
    return s;
}

START_TEST(test_attention_gradient)
{
    sc_arena a;
    sc_arena_init(&a, "t", 1 << 20, 0);
    for (int causal = 0; causal <= 1; causal++) {
        sc_ctx ctx, fd;
        sc_ctx_init(&ctx);
        sc_ctx_init(&fd);
        sc_ctx_set_grad(&fd, 0);
        int64_t B = 2, T = 5, C = 12, H = 3, n = B * T * C;
        sc_tensor *in[3];
        for (int i = 0; i < 3; i++) {
            in[i] = sc_param_new(&a, 3, (int64_t[]){B, T, C}, "qkv");
            sc_fill_normal(in[i]->data, n, 20 + (uint64_t)i, 1.0f);
        }
        float *R = malloc(sizeof(float) * (size_t)n);
        sc_fill_normal(R, n, 30, 1.0f);
        sc_tensor *o = sc__attention(&ctx, in[0], in[1], in[2], H, causal);
        sc_tensor *Rt = sc_tensor_wrap(&ctx.act, R, 3, o->shape, "R");
        sc_backward(&ctx, sc_sum_all(&ctx, sc_mul(&ctx, o, Rt)));
        double h = 1e-3;
        for (int i = 0; i < 3; i++)
            for (int64_t e = 0; e < n; e += 7) {
                float keep = in[i]->data[e];
                in[i]->data[e] = keep + (float)h;
                double up = attention_loss(&fd, in, H, causal, R);
                in[i]->data[e] = keep - (float)h;
                double down = attention_loss(&fd, in, H, causal, R);
                in[i]->data[e] = keep;
                sc_ctx_reset(&fd);
                double numeric = (up - down) / (2 * h);
                ck_assert_msg(fabs(numeric - in[i]->grad[e]) <= 2e-3 * (1 + fabs(numeric)),
                              "d%c[%lld] (causal %d): tape %g, differences %g", "qkv"[i], (long long)e, causal,
                              in[i]->grad[e], numeric);
            }
        free(R);
        sc_ctx_free(&fd);
        sc_ctx_free(&ctx);
    }
    sc_arena_free(&a);
}
END_TEST

START_TEST(test_swin_windows_example)
{
    /* The 4 × 4 stage of book chapter 12, windows of 2, odd block: shift 1.
     * Tokens are numbered y·4 + x. Rolling by −1 brings token 5 to the top
     * left; the last window holds the four corners 15, 12, 3, 0. */
    int64_t shift, n_win, src[16];
    float mask[4 * 4 * 4];
    ck_assert_int_eq(sc__swin_windows(4, 4, 2, 1, &shift, &n_win, src, mask), 2);
    ck_assert_int_eq(shift, 1);
    ck_assert_int_eq(n_win, 4);
    static const int64_t want[16] = {5, 6, 9, 10, 7, 4, 11, 8, 13, 14, 1, 2, 15, 12, 3, 0};
    for (int i = 0; i < 16; i++) ck_assert_int_eq(src[i], want[i]);
    /* Region labels per window position (3·row region + column region):
     * w0 (0 0 0 0), w1 (1 2 1 2), w2 (3 3 6 6), w3 (4 5 7 8). */
    static const int labels[4][4] = {{0, 0, 0, 0}, {1, 2, 1, 2}, {3, 3, 6, 6}, {4, 5, 7, 8}};
    for (int w = 0; w < 4; w++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                ck_assert_float_eq(mask[(w * 4 + i) * 4 + j], labels[w][i] == labels[w][j] ? 0.0f : -100.0f);
    /* Even blocks do not shift. */
    ck_assert_int_eq(sc__swin_windows(4, 4, 2, 0, &shift, &n_win, src, NULL), 2);
    ck_assert_int_eq(shift, 0);
    ck_assert_int_eq(src[2], 4);   /* window 0, row 1: token (1, 0) */
    /* Relative positions in a 2 × 2 window: (dy + 1)·3 + (dx + 1). */
    ck_assert_int_eq(sc__swin_relative_index(2, 2, 0, 3), 0);
    ck_assert_int_eq(sc__swin_relative_index(2, 2, 3, 0), 8);
    ck_assert_int_eq(sc__swin_relative_index(2, 2, 1, 2), 2);   /* (0,1) vs (1,0): dy −1, dx +1 */
    ck_assert_int_eq(sc__swin_relative_index(7, 7, 0, 48), 0);
    ck_assert_int_eq(sc__swin_relative_index(7, 7, 24, 24), 84);
}
END_TEST

START_TEST(test_swin_small_stages)
{
    int64_t shift, n_win, src[64];
    /* A stage no larger than the window: one window of the stage's size,
     * no shift even in odd blocks (Hugging Face's set_shift_and_window_size). */
    ck_assert_int_eq(sc__swin_windows(7, 7, 7, 1, &shift, &n_win, NULL, NULL), 7);
    ck_assert_int_eq(shift, 0);
    ck_assert_int_eq(n_win, 1);
    ck_assert_int_eq(sc__swin_windows(3, 5, 4, 1, &shift, &n_win, src, NULL), 3);
    ck_assert_int_eq(shift, 0);
    ck_assert_int_eq(n_win, 2);   /* 3 × 6 padded: two 3 × 3 windows */
    ck_assert_int_eq(src[3 * 3 + 2], -1);   /* window 1, (0, 2) is column 5: padding */
    /* Padding: 5 × 5 with windows of 4 pads to 8 × 8; 39 positions are
     * padding, each of the 25 tokens appears once. */
    ck_assert_int_eq(sc__swin_windows(5, 5, 4, 1, &shift, &n_win, src, NULL), 4);
    ck_assert_int_eq(shift, 2);
    ck_assert_int_eq(n_win, 4);
    int pads = 0, seen[25] = {0};
    for (int i = 0; i < 64; i++) {
        if (src[i] < 0)
            pads++;
        else
            seen[src[i]]++;
    }
    ck_assert_int_eq(pads, 39);
    for (int i = 0; i < 25; i++) ck_assert_int_eq(seen[i], 1);
}
END_TEST

START_TEST(test_medclip_padding)
{
    /* MedCLIP averages over every position, padding included: the same
     * prompt padded to another length gets another embedding. CLIP pools
     * at the EOT under a causal mask: padding changes nothing. */
    sc_model *m = load_model(sc_test_path(MEDCLIP_DIR), NULL);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_err err;
    sc_array ids, mask, ref;
    int64_t *tok = load_i64(fixture(MEDCLIP_DIR, "input_ids.npy"), &ids);
    int64_t *att = load_i64(fixture(MEDCLIP_DIR, "attention_mask.npy"), &mask);
    float *want = load_f32(fixture(MEDCLIP_DIR, "text_embeds.npy"), &ref);
    int64_t T = ids.shape[1], E = ref.shape[1];
    sc_tensor *y;
    /* Row 2 holds 4 real tokens in 12 positions; alone, in 4 positions: */
    ck_assert(sc_model_encode_text(m, &ctx, tok + 2 * T, att + 2 * T, 1, 4, &y, NULL, &err) == SC_OK);
    double diff = 0;
    for (int64_t i = 0; i < E; i++) diff = fmax(diff, fabs(y->data[i] - want[2 * E + i]));
    ck_assert_msg(diff > 1e-2, "padding should matter for MedCLIP (max diff %g)", diff);
    /* ... and in its 12 positions it is the fixture's row again. */
    ck_assert(sc_model_encode_text(m, &ctx, tok + 2 * T, att + 2 * T, 1, T, &y, NULL, &err) == SC_OK);
    sc_check_close("row 2 alone", y->data, want + 2 * E, E, 1e-5, 1e-4);
    free(tok);
    free(att);
    free(want);
    sc_array_free(&ids);
    sc_array_free(&mask);
    sc_array_free(&ref);
    sc_model_free(m);

    m = load_model(sc_test_path(CLIP_DIR), NULL);
    tok = load_i64(fixture(CLIP_DIR, "input_ids.npy"), &ids);
    want = load_f32(fixture(CLIP_DIR, "text_embeds.npy"), &ref);
    T = ids.shape[1];
    E = ref.shape[1];
    ck_assert(sc_model_encode_text(m, &ctx, tok, NULL, 1, 7, &y, NULL, &err) == SC_OK);   /* row 0: 7 tokens */
    sc_check_close("CLIP row 0 without padding", y->data, want, E, 1e-5, 1e-4);
    free(tok);
    free(want);
    sc_array_free(&ids);
    sc_array_free(&ref);
    sc_ctx_free(&ctx);
    sc_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* 3. the text tower on the tape                                             */
/* ------------------------------------------------------------------------ */

/* Token embeddings of the fixture's ids as a parameter (B, T, C). */
static sc_tensor *prompt_embeddings(sc_ctx *ctx, sc_arena *params, const sc_model *m, const int64_t *ids, int64_t B,
                                    int64_t T)
{
    sc_tensor *table = sc_clip_token_embedding(ctx, m);
    int64_t C = table->shape[1];
    sc_tensor *x = sc_param_new(params, 3, (int64_t[]){B, T, C}, "prompt");
    for (int64_t i = 0; i < B * T; i++)
        memcpy(x->data + i * C, table->data + ids[i] * C, sizeof(float) * (size_t)C);
    return x;
}

START_TEST(test_text_tape_forward)
{
    sc_model *m = load_model(sc_test_path(CLIP_DIR), NULL);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_arena params;
    sc_arena_init(&params, "params", 1 << 20, 0);
    sc_array ids;
    int64_t *tok = load_i64(fixture(CLIP_DIR, "input_ids.npy"), &ids);
    sc_tensor *x = prompt_embeddings(&ctx, &params, m, tok, ids.shape[0], ids.shape[1]);
    sc_tensor *y = sc_clip_text_forward(&ctx, m, x, tok);
    golden_taps g = {CLIP_DIR, {{0}}, 0};
    check_tensor_against(&g, y, "text_embeds");
    ck_assert(y->requires_grad);
    free(tok);
    sc_array_free(&ids);
    sc_arena_free(&params);
    sc_ctx_free(&ctx);
    sc_model_free(m);
}
END_TEST

/* L = Σ y ⊙ R in double for the tape's y = text(x). */
static double text_loss(sc_ctx *ctx, const sc_model *m, sc_tensor *x, const int64_t *ids, const float *R)
{
    sc_tensor *y = sc_clip_text_forward(ctx, m, x, ids);
    double s = 0;
    for (int64_t i = 0; i < sc_numel(y); i++) s += (double)y->data[i] * R[i];
    return s;
}

START_TEST(test_text_tape_gradient)
{
    sc_model *m = load_model(sc_test_path(CLIP_DIR), NULL);
    sc_ctx ctx, fd;
    sc_ctx_init(&ctx);
    sc_ctx_init(&fd);
    sc_ctx_set_grad(&fd, 0);
    sc_arena params;
    sc_arena_init(&params, "params", 1 << 20, 0);
    sc_array ids;
    int64_t *tok = load_i64(fixture(CLIP_DIR, "input_ids.npy"), &ids);
    int64_t B = ids.shape[0], T = ids.shape[1];
    sc_tensor *x = prompt_embeddings(&ctx, &params, m, tok, B, T);
    sc_tensor *y = sc_clip_text_forward(&ctx, m, x, tok);
    float *R = malloc(sizeof(float) * (size_t)sc_numel(y));
    sc_fill_normal(R, sc_numel(y), 5, 1.0f);
    sc_tensor *Rt = sc_tensor_wrap(&ctx.act, R, 2, y->shape, "R");
    sc_backward(&ctx, sc_sum_all(&ctx, sc_mul(&ctx, y, Rt)));
    ck_assert_ptr_nonnull(x->grad);

    /* Positions after a row's EOT cannot influence it (causal mask): their
     * gradient must be exactly 0. Elsewhere compare with central
     * differences at sampled elements. */
    int64_t C = x->shape[2];
    sc_rng rng;
    sc_rng_seed(&rng, 11);
    double h = 1e-2, max_err = 0, scale = 0;
    for (int s = 0; s < 48; s++) {
        int64_t i = (int64_t)sc_rng_below(&rng, (uint32_t)sc_numel(x)), b = i / (T * C), t = (i / C) % T;
        int64_t eot = sc_clip_eot_index(&sc_model_get_config(m)->text, tok + b * T, T);
        if (t > eot) {
            ck_assert_msg(x->grad[i] == 0.0f, "gradient %g after the EOT at (%lld, %lld)", x->grad[i], (long long)b,
                          (long long)t);
            continue;
        }
        float keep = x->data[i];
        x->data[i] = keep + (float)h;
        double up = text_loss(&fd, m, x, tok, R);
        sc_ctx_reset(&fd);
        x->data[i] = keep - (float)h;
        double down = text_loss(&fd, m, x, tok, R);
        sc_ctx_reset(&fd);
        x->data[i] = keep;
        double numeric = (up - down) / (2 * h);
        max_err = fmax(max_err, fabs(numeric - x->grad[i]));
        scale = fmax(scale, fabs(numeric));
    }
    ck_assert_msg(scale > 1e-3, "all sampled gradients are ~0 (%g)", scale);
    ck_assert_msg(max_err <= 2e-2 * scale, "text tower gradient: max error %g at scale %g", max_err, scale);
    free(R);
    free(tok);
    sc_array_free(&ids);
    sc_arena_free(&params);
    sc_ctx_free(&fd);
    sc_ctx_free(&ctx);
    sc_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* 4. properties of a batched forward                                        */
/* ------------------------------------------------------------------------ */

static sc_model *random_model(const sc_model_config *c)
{
    sc_model *m;
    sc_err err;
    ck_assert_msg(sc_model_random(&m, c, 42, &err) == SC_OK, "%s", err.msg);
    return m;
}

/* A tiny CLIP and a tiny MedCLIP whose Swin sees odd stage sizes. */
static sc_model_config tiny_clip(void)
{
    sc_model_config c;
    memset(&c, 0, sizeof c);
    c.kind = SC_MODEL_CLIP;
    c.embed_dim = 16;
    sc_vit_config v = {24, 8, 32, 2, 2, 64, 1e-5f, SC_ACT_QUICK_GELU};
    sc_clip_text_config t = {50, 12, 32, 2, 4, 64, 1e-5f, SC_ACT_QUICK_GELU, 49};
    c.vision = v;
    c.text = t;
    return c;
}

static sc_model_config tiny_medclip(void)
{
    sc_model_config c;
    memset(&c, 0, sizeof c);
    c.kind = SC_MODEL_MEDCLIP;
    c.embed_dim = 16;
    sc_swin_config s = {56, 4, 16, 4, 3, {2, 2, 1}, {2, 2, 4}, 2.0f, 1e-5f, SC_ACT_GELU};
    sc_bert_config b = {40, 16, 2, 32, 2, 4, 64, 1e-12f, SC_ACT_GELU};
    c.swin = s;
    c.bert = b;
    return c;
}

static void fill_ids(int64_t *ids, int64_t *mask, int64_t B, int64_t T, int64_t V, uint64_t seed)
{
    sc_rng r;
    sc_rng_seed(&r, seed);
    for (int64_t b = 0; b < B; b++) {
        int64_t len = 2 + b % (T - 1);
        for (int64_t t = 0; t < T; t++) {
            ids[b * T + t] = t < len ? 1 + (int64_t)sc_rng_below(&r, (uint32_t)(V - 2)) : 0;
            if (mask) mask[b * T + t] = t < len;
        }
        ids[b * T + len - 1] = V - 1;   /* the EOT of tiny_clip: 49 */
    }
}

/* Each item of a batch encoded alone gives the same embedding. */
static void check_batch_split(sc_model *m, int64_t B, int64_t H, int64_t W, int64_t T, int use_mask)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_err err;
    const sc_model_config *c = sc_model_get_config(m);
    int64_t E = c->embed_dim, V = c->kind == SC_MODEL_CLIP ? c->text.vocab : c->bert.vocab;
    sc_tensor *px = sc_tensor_new(&ctx.act, 4, (int64_t[]){B, 3, H, W}, "pixels");
    sc_fill_normal(px->data, sc_numel(px), 3, 1.0f);
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)(B * T)), *mask = malloc(sizeof(int64_t) * (size_t)(B * T));
    fill_ids(ids, mask, B, T, V, 9);
    sc_tensor *img, *txt, *one;
    ck_assert_msg(sc_model_encode_image(m, &ctx, px, &img, NULL, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_model_encode_text(m, &ctx, ids, use_mask ? mask : NULL, B, T, &txt, NULL, &err) == SC_OK, "%s",
                  err.msg);
    for (int64_t b = 0; b < B; b++) {
        sc_tensor *x = sc_tensor_wrap(&ctx.act, px->data + b * 3 * H * W, 4, (int64_t[]){1, 3, H, W}, "one");
        ck_assert_msg(sc_model_encode_image(m, &ctx, x, &one, NULL, &err) == SC_OK, "%s", err.msg);
        sc_check_close("image item", one->data, img->data + b * E, E, 1e-5, 1e-4);
        ck_assert_msg(sc_model_encode_text(m, &ctx, ids + b * T, use_mask ? mask + b * T : NULL, 1, T, &one, NULL,
                                           &err) == SC_OK, "%s", err.msg);
        sc_check_close("text item", one->data, txt->data + b * E, E, 1e-5, 1e-4);
    }
    free(ids);
    free(mask);
    sc_ctx_free(&ctx);
}

START_TEST(test_batch_items_independent)
{
    sc_model_config c = tiny_clip();
    sc_model *m = random_model(&c);
    check_batch_split(m, 3, 24, 24, 12, 0);
    check_batch_split(m, 3, 24, 24, 12, 1);
    sc_model_free(m);
    c = tiny_medclip();
    m = random_model(&c);
    /* 38 × 45 pixels: patches padded to 10 × 12 tokens; windows of 4 pad the
     * stages to 12 × 12 and 8 × 8; the 3 × 3 last stage shrinks its window
     * to 3 and stops shifting. */
    check_batch_split(m, 3, 38, 45, 10, 1);
    sc_model_free(m);
}
END_TEST

START_TEST(test_grey_images)
{
    /* MedCLIP repeats a one-channel image to three channels. */
    sc_model_config c = tiny_medclip();
    sc_model *m = random_model(&c);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_err err;
    sc_tensor *grey = sc_tensor_new(&ctx.act, 4, (int64_t[]){2, 1, 32, 32}, "grey");
    sc_tensor *rgb = sc_tensor_new(&ctx.act, 4, (int64_t[]){2, 3, 32, 32}, "rgb");
    sc_fill_normal(grey->data, sc_numel(grey), 4, 1.0f);
    for (int64_t i = 0; i < 6; i++) memcpy(rgb->data + i * 1024, grey->data + (i / 3) * 1024, 1024 * sizeof(float));
    sc_tensor *a, *b;
    ck_assert_msg(sc_model_encode_image(m, &ctx, grey, &a, NULL, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_model_encode_image(m, &ctx, rgb, &b, NULL, &err) == SC_OK, "%s", err.msg);
    assert_identical(a, b, "grey vs repeated");
    sc_ctx_free(&ctx);
    sc_model_free(m);
}
END_TEST

START_TEST(test_eot_rule)
{
    sc_clip_text_config c;
    memset(&c, 0, sizeof c);
    const int64_t ids[] = {49406, 320, 1125, 49407, 49407, 49407};   /* HF pads with EOT */
    c.eos_token_id = 2;                                         /* legacy: argmax, first maximum */
    ck_assert_int_eq(sc_clip_eot_index(&c, ids, 6), 3);
    c.eos_token_id = -1;
    ck_assert_int_eq(sc_clip_eot_index(&c, ids, 6), 3);
    c.eos_token_id = 1125;                                      /* first position holding it */
    ck_assert_int_eq(sc_clip_eot_index(&c, ids, 6), 2);
    c.eos_token_id = 7;                                         /* absent: position 0, as HF */
    ck_assert_int_eq(sc_clip_eot_index(&c, ids, 6), 0);
}
END_TEST

START_TEST(test_presets)
{
    sc_model_config c;
    ck_assert_int_eq(sc_model_config_preset(&c, "vit-l-14"), 0);
    ck_assert_int_eq(c.vision.width, 1024);
    ck_assert_int_eq(c.vision.heads, 16);
    ck_assert_int_eq(c.text.context, 77);
    ck_assert_int_eq(sc_model_config_preset(&c, "medclip"), 0);
    ck_assert_int_eq(c.swin.depths[2], 6);
    ck_assert_int_eq(c.bert.vocab, 28996);
    ck_assert_int_eq(sc_model_config_preset(&c, "nonsense"), -1);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* 5. damaged files and inputs                                               */
/* ------------------------------------------------------------------------ */

/* Copy a fixture directory's weights into DIR/model.safetensors with one
 * change, plus its config.json (optionally replaced). `drop` removes a
 * tensor, `reshape` replaces one by a (2, 3) matrix, `add` adds a (3)
 * tensor, `set` gives a scalar tensor a new value. */
typedef struct {
    const char *drop, *reshape, *add, *set;
    float value;
    const char *config;   /* replacement config.json text, or NULL */
} damage;

static const char *damaged_copy(const char *src_dir, damage d)
{
    const char *dir = sc_test_tmpdir();
    sc_err err;
    sc_weights *w;
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", sc_test_path(src_dir));
    ck_assert_msg(sc_weights_open(&w, path, &err) == SC_OK, "%s", err.msg);
    sc_arena a;
    sc_arena_init(&a, "copy", 1 << 22, 0);
    int n = sc_weights_count(w), k = 0;
    const char **names = calloc((size_t)n + 1, sizeof *names);
    const sc_tensor **ts = calloc((size_t)n + 1, sizeof *ts);
    for (int i = 0; i < n; i++) {
        const char *name = sc_weights_at(w, i)->name;
        if (d.drop && !strcmp(name, d.drop)) continue;
        sc_tensor *t;
        if (d.reshape && !strcmp(name, d.reshape)) {
            t = sc_tensor_zeros(&a, 2, (int64_t[]){2, 3}, name);
        } else {
            ck_assert_msg(sc_weights_get_f32(w, name, &a, &t, &err) == SC_OK, "%s", err.msg);
            if (d.set && !strcmp(name, d.set)) t->data[0] = d.value;
        }
        names[k] = sc_weights_at(w, i)->name;
        ts[k++] = t;
    }
    if (d.add) {
        names[k] = d.add;
        ts[k++] = sc_tensor_zeros(&a, 1, (int64_t[]){3}, d.add);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_msg(sc_safetensors_write(path, names, ts, k, &err) == SC_OK, "%s", err.msg);
    uint8_t *cfg;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", sc_test_path(src_dir));
    ck_assert_msg(sc_read_file(path, 1 << 20, &cfg, &len, &err) == SC_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *text = d.config ? d.config : (const char *)cfg;
    ck_assert_msg(sc_write_file_atomic(path, text, strlen(text), &err) == SC_OK, "%s", err.msg);
    free(cfg);
    free(names);
    free(ts);
    sc_arena_free(&a);
    sc_weights_close(w);
    return dir;
}

/* Loading fails with `code` and a message containing each of the words. */
static void expect_load_error(const char *dir, sc_status code, const char *w1, const char *w2)
{
    sc_model *m = (sc_model *)1;
    sc_err err = {{0}};
    sc_status st = sc_model_load(&m, dir, NULL, &err);
    ck_assert_msg(st == code, "expected status %d, got %d (%s)", code, st, err.msg);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, w1) != NULL, "message lacks '%s': %s", w1, err.msg);
    ck_assert_msg(!w2 || strstr(err.msg, w2) != NULL, "message lacks '%s': %s", w2, err.msg);
    ck_assert_msg(strchr(err.msg, '\n') == NULL, "message has a newline: %s", err.msg);
}

START_TEST(test_missing_tensor)
{
    damage d = {"text_model.final_layer_norm.bias", NULL, NULL, NULL, 0, NULL};
    expect_load_error(damaged_copy(CLIP_DIR, d), SC_EFORMAT, "text_model.final_layer_norm.bias", "missing");
    damage e = {"vision_model.model.encoder.layers.0.blocks.1.attention.self.relative_position_bias_table", NULL,
                NULL, NULL, 0, NULL};
    expect_load_error(damaged_copy(MEDCLIP_DIR, e), SC_EFORMAT, "blocks.1.attention.self.relative_position_bias_table",
                      "missing");
}
END_TEST

START_TEST(test_wrong_shape)
{
    damage d = {NULL, "vision_model.encoder.layers.1.mlp.fc2.weight", NULL, NULL, 0, NULL};
    expect_load_error(damaged_copy(CLIP_DIR, d), SC_ESHAPE, "vision_model.encoder.layers.1.mlp.fc2.weight",
                      "(2, 3) but the model expects (128, 512)");
    damage e = {NULL, "text_model.projection_head.weight", NULL, NULL, 0, NULL};
    expect_load_error(damaged_copy(MEDCLIP_DIR, e), SC_ESHAPE, "text_model.projection_head.weight", "(32, 64)");
}
END_TEST

START_TEST(test_unknown_tensor)
{
    damage d = {NULL, NULL, "text_model.encoder.layers.0.mlp.fc3.bias", NULL, 0, NULL};
    expect_load_error(damaged_copy(CLIP_DIR, d), SC_EFORMAT, "unknown tensor", "mlp.fc3.bias");
    /* A buffer name with a float tensor of the wrong length is no buffer. */
    damage e = {NULL, NULL, "vision_model.embeddings.position_ids", NULL, 0, NULL};
    expect_load_error(damaged_copy(CLIP_DIR, e), SC_EFORMAT, "vision_model.embeddings.position_ids", NULL);
}
END_TEST

START_TEST(test_config_errors)
{
    damage d = {NULL, NULL, NULL, NULL, 0,
                "{\"model_type\": \"clip\", \"text_config\": {\"num_attention_heads\": 5}}"};
    expect_load_error(damaged_copy(CLIP_DIR, d), SC_EFORMAT, "config.json", "5 attention heads");
    damage e = {NULL, NULL, NULL, NULL, 0, "{\"model_type\": \"clip\"}"};
    expect_load_error(damaged_copy(MEDCLIP_DIR, e), SC_EFORMAT, "model_type", "medclip");
    damage f = {NULL, NULL, NULL, NULL, 0, "{\"vision_config\": {\"hidden_act\": \"gelu_new\"}}"};
    expect_load_error(damaged_copy(CLIP_DIR, f), SC_EUNSUPPORTED, "hidden_act", "gelu_new");
    damage g = {NULL, NULL, NULL, NULL, 0, "{\"projection_dim\": \"32\"}"};
    expect_load_error(damaged_copy(CLIP_DIR, g), SC_EFORMAT, "projection_dim", "type");
}
END_TEST

START_TEST(test_logit_scale_clamp)
{
    /* MedCLIP clamps logit_scale into [0, ln 100]; CLIP does not. */
    damage d = {NULL, NULL, NULL, "logit_scale", 5.0f, NULL};
    sc_model *m = load_model(damaged_copy(MEDCLIP_DIR, d), NULL);
    ck_assert_float_eq(sc_model_logit_scale_raw(m), 5.0f);
    ck_assert_float_eq_tol(sc_model_logit_scale(m), expf(4.6052f), 1e-3f);
    sc_model_free(m);
    d.value = -1.0f;
    m = load_model(damaged_copy(MEDCLIP_DIR, d), NULL);
    ck_assert_float_eq(sc_model_logit_scale(m), 1.0f);
    sc_model_free(m);
    d.value = 5.0f;
    m = load_model(damaged_copy(CLIP_DIR, d), NULL);
    ck_assert_float_eq_tol(sc_model_logit_scale(m), expf(5.0f), 1e-3f);
    sc_model_free(m);
}
END_TEST

START_TEST(test_input_errors)
{
    sc_model *m = load_model(sc_test_path(CLIP_DIR), NULL);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_err err;
    sc_tensor *out;
    sc_tensor *px = sc_tensor_zeros(&ctx.act, 4, (int64_t[]){1, 3, 31, 32}, "pixels");
    ck_assert_int_eq(sc_model_encode_image(m, &ctx, px, &out, NULL, &err), SC_ESHAPE);
    ck_assert_msg(strstr(err.msg, "(3, 32, 32)") != NULL, "%s", err.msg);
    int64_t ids[17] = {510, 5, 511};
    ck_assert_int_eq(sc_model_encode_text(m, &ctx, ids, NULL, 1, 17, &out, NULL, &err), SC_ESHAPE);
    ids[1] = 512;
    ck_assert_int_eq(sc_model_encode_text(m, &ctx, ids, NULL, 1, 3, &out, NULL, &err), SC_ERANGE);
    ck_assert_msg(strstr(err.msg, "512") != NULL, "%s", err.msg);
    ids[1] = 5;
    int64_t mask[3] = {1, 2, 1};
    ck_assert_int_eq(sc_model_encode_text(m, &ctx, ids, mask, 1, 3, &out, NULL, &err), SC_ERANGE);
    sc_ctx_free(&ctx);
    sc_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* 6. scale encode, run as a program                                         */
/* ------------------------------------------------------------------------ */

/* What the last sc_test_run_scale in dir wrote on stderr, as a string of at most
 * n - 1 bytes; returns its length. */
static size_t read_stderr(const char *dir, char *msg, size_t n)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/stderr", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t got = fread(msg, 1, n - 1, f);
    fclose(f);
    msg[got] = 0;
    return got;
}

static int count_files(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls %s | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

START_TEST(test_cli_encode)
{
    const char *dir = sc_test_tmpdir();
    char args[4096], out[1100];
    snprintf(out, sizeof out, "%s/out", dir);
    const char *med = sc_test_path(MEDCLIP_DIR);
    snprintf(args, sizeof args,
             "encode --model %s/pytorch_model.bin --config %s/config.json --pixel-values %s/pixel_values.npy "
             "--input-ids %s/input_ids.npy --attention-mask %s/attention_mask.npy --out %s --dump-intermediates",
             med, med, med, med, med, out);
    ck_assert_int_eq(sc_test_run_scale(dir, args), 0);
    static const char *const files[] = {"image_embeds", "text_embeds", "swin_stage1", "bert_hidden_states",
                                        "text_pooled", "logits", "logit_scale", "text_embeds_norm"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[1300];
        snprintf(path, sizeof path, "%s/%s.npy", out, files[i]);
        sc_array a;
        float *x = load_f32(path, &a);
        ck_assert_msg(x != NULL, "scale encode did not write %s", path);
        ck_assert(check_against(MEDCLIP_DIR, files[i], x, a.ndim, a.shape));
        free(x);
        sc_array_free(&a);
    }
    /* Without --dump-intermediates: the two embeddings only, in batches. */
    const char *clip = sc_test_path(CLIP_DIR);
    snprintf(args, sizeof args,
             "encode --model %s --pixel-values %s/pixel_values.npy --input-ids %s/input_ids.npy --out %s/plain "
             "--batch 2 --threads 1",
             clip, clip, clip, dir);
    ck_assert_int_eq(sc_test_run_scale(dir, args), 0);
    snprintf(out, sizeof out, "%s/plain", dir);
    ck_assert_int_eq(count_files(out), 2);
    snprintf(args, sizeof args, "%s/plain/text_embeds.npy", dir);
    sc_array a;
    float *x = load_f32(args, &a);
    ck_assert(check_against(CLIP_DIR, "text_embeds", x, a.ndim, a.shape));
    free(x);
    sc_array_free(&a);
}
END_TEST

START_TEST(test_cli_errors)
{
    const char *dir = sc_test_tmpdir();
    char args[4096];
    const char *clip = sc_test_path(CLIP_DIR), *med = sc_test_path(MEDCLIP_DIR);
    ck_assert_int_eq(sc_test_run_scale(dir, "encode --out /tmp/nowhere"), 2);     /* no --model */
    snprintf(args, sizeof args, "encode --model %s --out %s/x", clip, dir);
    ck_assert_int_eq(sc_test_run_scale(dir, args), 2);                            /* no inputs */
    /* MedCLIP's 56-pixel images given to the 32-pixel CLIP: the texts are
     * fine, yet nothing may be written. */
    snprintf(args, sizeof args,
             "encode --model %s --input-ids %s/input_ids.npy --pixel-values %s/pixel_values.npy --out %s/out", clip,
             clip, med, dir);
    ck_assert_int_eq(sc_test_run_scale(dir, args), 1);
    struct stat st;
    snprintf(args, sizeof args, "%s/out", dir);
    ck_assert_msg(stat(args, &st) != 0, "a failed run left %s behind", args);
    char msg[1024];
    size_t n = read_stderr(dir, msg, sizeof msg);
    ck_assert_msg(strstr(msg, "pixel_values.npy") && strstr(msg, "(3, 32, 32)"), "stderr: %s", msg);
    ck_assert_msg(strchr(msg, '\n') == msg + n - 1, "stderr is not one line: %s", msg);
    snprintf(args, sizeof args, "encode --model %s/missing --input-ids %s/input_ids.npy --out %s/out", dir, clip, dir);
    ck_assert_int_eq(sc_test_run_scale(dir, args), 1);
}
END_TEST

/* OpenAI's .pt without --config: the heads come from width / 64, and the
 * command says so on stderr, once; with --config, or from a directory
 * with config.json, it says nothing. */
START_TEST(test_cli_inferred_heads_note)
{
    const char *dir = sc_test_tmpdir();
    char args[4096], msg[1024];
    const char *clip = sc_test_path(CLIP_DIR);
    for (int k = 0; k < 3; k++) {   /* openai.pt alone, openai.pt + --config, the directory */
        char model[1100], extra[1200] = "";
        if (k < 2) snprintf(model, sizeof model, "%s/openai.pt", clip);
        else snprintf(model, sizeof model, "%s", clip);
        if (k == 1) snprintf(extra, sizeof extra, " --config %s/config.json", clip);
        snprintf(args, sizeof args, "encode --model %s%s --pixel-values %s/pixel_values.npy --out %s/out%d", model,
                 extra, clip, dir, k);
        ck_assert_int_eq(sc_test_run_scale(dir, args), 0);
        size_t n = read_stderr(dir, msg, sizeof msg);
        if (k == 0) {
            char want[1600];
            snprintf(want, sizeof want, "scale encode: note: head counts of %s are width / 64 (OpenAI's rule): "
                                        "no --config, and it is not a directory with config.json\n", model);
            ck_assert_str_eq(msg, want);
        } else {
            ck_assert_msg(n == 0, "%s: unexpected stderr: %s", args, msg);
        }
    }
}
END_TEST

/* scale compare on two arrays worked by hand: A = ((1, 0), (0, 2)) and
 * B = ((1, 0), (1, 1)) differ in 2 of 4 values, by 1 at most and 0.5 on
 * average; row 0 has cosine 1, row 1 (0, 2)·(1, 1)/(2·√2) = 0.707107. */
START_TEST(test_cli_compare)
{
    const char *dir = sc_test_tmpdir();
    char a[1100], b[1100], c[1100], cmd[4096];
    snprintf(a, sizeof a, "%s/a.npy", dir);
    snprintf(b, sizeof b, "%s/b.npy", dir);
    snprintf(c, sizeof c, "%s/c.npy", dir);
    sc_err err;
    ck_assert(sc_npy_write_f32(a, (const float[]){1, 0, 0, 2}, 2, (const int64_t[]){2, 2}, &err) == SC_OK);
    ck_assert(sc_npy_write_f32(b, (const float[]){1, 0, 1, 1}, 2, (const int64_t[]){2, 2}, &err) == SC_OK);
    ck_assert(sc_npy_write_f32(c, (const float[]){1, 0, 1}, 2, (const int64_t[]){1, 3}, &err) == SC_OK);
    snprintf(cmd, sizeof cmd, "%s compare %s %s", sc_test_path("scale"), a, b);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char out[2048] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_msg(strstr(out, "values 4, differing 2, max_abs_diff=1 mean_abs_diff=0.5\n"), "%s", out);
    ck_assert_msg(strstr(out, "row 0: cosine 1.000000\nrow 1: cosine 0.707107\n"), "%s", out);
    ck_assert_msg(strstr(out, "cosine over 2 rows: min 0.707107, mean 0.853553\n"), "%s", out);
    snprintf(cmd, sizeof cmd, "compare %s %s", a, c);
    ck_assert_int_eq(sc_test_run_scale(dir, cmd), 1); /* shapes differ */
    snprintf(cmd, sizeof cmd, "compare %s", a);
    ck_assert_int_eq(sc_test_run_scale(dir, cmd), 2);
    snprintf(cmd, sizeof cmd, "compare %s %s/missing.npy", a, dir);
    ck_assert_int_eq(sc_test_run_scale(dir, cmd), 1);
}
END_TEST

Suite *suite_models(void)
{
    Suite *s = suite_create("models");
    struct {
        const char *name;
        const TTest *tests[6];
    } cases[] = {
        {"clip", {test_clip_fixture, test_clip_openai_layout}},
        {"medclip", {test_medclip_fixture, test_medclip_bin_layout, test_medclip_padding}},
        {"attention", {test_attention_example, test_attention_gradient}},
        {"swin_windows", {test_swin_windows_example, test_swin_small_stages}},
        {"text_tape", {test_text_tape_forward, test_text_tape_gradient}},
        {"properties", {test_batch_items_independent, test_grey_images, test_eot_rule, test_presets}},
        {"load_errors", {test_missing_tensor, test_wrong_shape, test_unknown_tensor, test_config_errors,
                         test_logit_scale_clamp, test_input_errors}},
        {"encode_cli", {test_cli_encode, test_cli_errors, test_cli_compare, test_cli_inferred_heads_note}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        TCase *tc = tcase_create(cases[c].name);
        tcase_set_timeout(tc, 60);
        for (int i = 0; i < 6 && cases[c].tests[i]; i++) tcase_add_test(tc, cases[c].tests[i]);
        suite_add_tcase(s, tc);
    }
    return s;
}
