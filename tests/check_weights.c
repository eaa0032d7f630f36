/* check_weights.c — tests for io.c sections 4 and 5: safetensors, PyTorch
 * zip checkpoints and the pickle subset, through the sc_weights API.
 *
 * The golden fixtures hold the same weights twice (safetensors written by
 * the safetensors library, .pt/.bin by torch.save), so each format is
 * checked against the other, bit for bit. Crafted files — built here by
 * the independent writers in formats_util.h — cover what a real file
 * never shows: strides, offsets, half storages, and every kind of lie. */
#define _POSIX_C_SOURCE 200809L /* symlink, unlink, opendir */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_util.h"
#include "formats_util.h"

static sc_weights *open_ok(const char *path)
{
    sc_weights *w;
    sc_err err;
    ck_assert_msg(sc_weights_open(&w, path, &err) == SC_OK, "%s", err.msg);
    return w;
}

/* A weight's elements as a fresh float array (caller frees). */
static float *read_f32(const sc_weights *w, const char *name, int64_t *numel)
{
    const sc_weight *t = sc_weights_find(w, name);
    ck_assert_msg(t != NULL, "%s: no '%s'", sc_weights_path(w), name);
    float *x = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *x);
    sc_weight_to_f32(t, x);
    if (numel) *numel = t->numel;
    return x;
}

/* Expect sc_weights_parse of these bytes to fail with `want` and `says`. */
static void expect_parse_error(const void *bytes, size_t len, sc_status want, const char *says)
{
    sc_weights *w;
    sc_err err = {{0}};
    sc_status s = sc_weights_parse(&w, bytes, len, "bad.file", &err);
    ck_assert_msg(s == want, "status %d, want %d (%s)", s, want, err.msg);
    ck_assert_ptr_null(w);
    ck_assert_msg(strstr(err.msg, says) != NULL, "message '%s' lacks '%s'", err.msg, says);
    ck_assert_msg(strncmp(err.msg, "bad.file", 8) == 0, "message '%s' does not name the file", err.msg);
}

/* ---- the golden checkpoints ---- */

START_TEST(test_weights_medclip_bin_matches_safetensors)
{
    sc_weights *st = open_ok(sc_test_path("tests/golden/medclip-tiny/model.safetensors"));
    sc_weights *pt = open_ok(sc_test_path("tests/golden/medclip-tiny/pytorch_model.bin"));
    ck_assert_str_eq(sc_weights_format(st), "safetensors");
    ck_assert_str_eq(sc_weights_format(pt), "pytorch");
    ck_assert_int_eq(sc_weights_count(st), 135);
    ck_assert_int_eq(sc_weights_count(pt), 140); /* + 4 relative_position_index + position_ids */
    for (int i = 0; i < sc_weights_count(st); i++) {
        const sc_weight *a = sc_weights_at(st, i);
        const sc_weight *b = sc_weights_find(pt, a->name);
        ck_assert_msg(b != NULL, "pytorch_model.bin lacks %s", a->name);
        ck_assert_int_eq(a->dtype, SC_DT_F32);
        ck_assert_int_eq(b->dtype, SC_DT_F32);
        ck_assert_int_eq(a->ndim, b->ndim);
        for (int d = 0; d < a->ndim; d++) ck_assert_int_eq(a->shape[d], b->shape[d]);
        float *x = read_f32(st, a->name, NULL), *y = read_f32(pt, a->name, NULL);
        sc_check_close(a->name, y, x, a->numel, 0, 0);
        free(x);
        free(y);
    }
    /* Zero-copy views are available for both (64-byte aligned zip entries,
     * an 8-byte padded safetensors header). */
    ck_assert_ptr_nonnull(sc_weight_f32_data(sc_weights_find(st, "logit_scale")));
    ck_assert_ptr_nonnull(sc_weight_f32_data(sc_weights_find(pt, "logit_scale")));
    ck_assert_int_eq(sc_weights_find(pt, "logit_scale")->ndim, 0);
    ck_assert_float_eq_tol(*sc_weight_f32_data(sc_weights_find(pt, "logit_scale")), 2.659260f, 1e-6f);
    sc_weights_close(st);
    sc_weights_close(pt);
}
END_TEST

START_TEST(test_weights_int64_buffers)
{
    sc_weights *pt = open_ok(sc_test_path("tests/golden/medclip-tiny/pytorch_model.bin"));
    sc_err err;
    /* BERT's position_ids buffer is arange(32), shape (1, 32). */
    int64_t ids[32];
    ck_assert_int_eq(sc_weights_read_i64(pt, "text_model.model.embeddings.position_ids", ids, 32, &err), SC_OK);
    for (int i = 0; i < 32; i++) ck_assert_int_eq(ids[i], i);
    ck_assert_int_eq(sc_weights_read_i64(pt, "text_model.model.embeddings.position_ids", ids, 31, &err), SC_ESHAPE);
    /* Swin's relative_position_index for a 7×7 window, token i = (yi, xi):
     * (yi - yj + 6) · 13 + (xi - xj + 6) (the MANIFEST's formula). */
    const char *name = "vision_model.model.encoder.layers.1.blocks.0.attention.self.relative_position_index";
    const sc_weight *t = sc_weights_find(pt, name);
    ck_assert_int_eq(t->dtype, SC_DT_I64);
    ck_assert_int_eq(t->shape[0], 49);
    int64_t *idx = malloc(49 * 49 * sizeof *idx);
    ck_assert_int_eq(sc_weights_read_i64(pt, name, idx, 49 * 49, &err), SC_OK);
    for (int i = 0; i < 49; i++)
        for (int j = 0; j < 49; j++)
            ck_assert_int_eq(idx[i * 49 + j], (i / 7 - j / 7 + 6) * 13 + (i % 7 - j % 7 + 6));
    free(idx);
    /* As floats they convert too (the loader may just check them). */
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    sc_tensor *x;
    ck_assert_int_eq(sc_weights_get_f32(pt, name, &a, &x, &err), SC_OK);
    ck_assert_float_eq(x->data[1], (float)((0 - 0 + 6) * 13 + (0 - 1 + 6)));
    /* Float tensors are not integers. */
    ck_assert_int_eq(sc_weights_read_i64(pt, "logit_scale", ids, 1, &err), SC_EFORMAT);
    ck_assert(strstr(err.msg, "holds float32, not integers") != NULL);
    sc_arena_free(&a);
    sc_weights_close(pt);
}
END_TEST

/* OpenAI and Hugging Face name the same CLIP weights differently
 * (clip-tiny MANIFEST): some are renamed, projections are transposed, and
 * the packed in_proj rows split into q, k, v. */
START_TEST(test_weights_clip_openai_matches_hf)
{
    sc_weights *pt = open_ok(sc_test_path("tests/golden/clip-tiny/openai.pt"));
    sc_weights *hf = open_ok(sc_test_path("tests/golden/clip-tiny/model.safetensors"));
    ck_assert_int_eq(sc_weights_count(pt), 62);
    ck_assert_int_eq(sc_weights_count(hf), 78);
    static const char *same[][2] = {
        {"visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"},
        {"visual.class_embedding", "vision_model.embeddings.class_embedding"},
        {"visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"},
        {"visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"},
        {"visual.ln_post.bias", "vision_model.post_layernorm.bias"},
        {"visual.transformer.resblocks.0.attn.out_proj.bias", "vision_model.encoder.layers.0.self_attn.out_proj.bias"},
        {"visual.transformer.resblocks.1.ln_2.weight", "vision_model.encoder.layers.1.layer_norm2.weight"},
        {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
        {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
        {"transformer.resblocks.1.mlp.c_fc.weight", "text_model.encoder.layers.1.mlp.fc1.weight"},
        {"transformer.resblocks.0.mlp.c_proj.bias", "text_model.encoder.layers.0.mlp.fc2.bias"},
        {"ln_final.weight", "text_model.final_layer_norm.weight"},
        {"logit_scale", "logit_scale"},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        int64_t n1, n2;
        float *x = read_f32(pt, same[i][0], &n1), *y = read_f32(hf, same[i][1], &n2);
        ck_assert_int_eq(n1, n2);
        sc_check_close(same[i][0], x, y, n1, 0, 0);
        free(x);
        free(y);
    }
    /* visual.proj (128, 32) = visual_projection.weight (32, 128) transposed;
     * text_projection (64, 32) = text_projection.weight (32, 64) transposed. */
    static const struct {
        const char *openai, *hf;
        int rows, cols;
    } transposed[] = {{"visual.proj", "visual_projection.weight", 128, 32},
                      {"text_projection", "text_projection.weight", 64, 32}};
    for (int k = 0; k < 2; k++) {
        float *x = read_f32(pt, transposed[k].openai, NULL), *y = read_f32(hf, transposed[k].hf, NULL);
        int R = transposed[k].rows, C = transposed[k].cols;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) ck_assert_float_eq(x[r * C + c], y[c * R + r]);
        free(x);
        free(y);
    }
    /* in_proj_weight (3W, W) rows [W, 2W) = k_proj.weight; bias [2W, 3W) = v_proj.bias. */
    const int W = 128;
    float *in_w = read_f32(pt, "visual.transformer.resblocks.1.attn.in_proj_weight", NULL);
    float *k_w = read_f32(hf, "vision_model.encoder.layers.1.self_attn.k_proj.weight", NULL);
    sc_check_close("k_proj", in_w + W * W, k_w, W * W, 0, 0);
    float *in_b = read_f32(pt, "visual.transformer.resblocks.1.attn.in_proj_bias", NULL);
    float *v_b = read_f32(hf, "vision_model.encoder.layers.1.self_attn.v_proj.bias", NULL);
    sc_check_close("v_proj", in_b + 2 * W, v_b, W, 0, 0);
    free(in_w);
    free(k_w);
    free(in_b);
    free(v_b);
    sc_weights_close(pt);
    sc_weights_close(hf);
}
END_TEST

START_TEST(test_weights_open_directory_and_errors)
{
    /* A Hugging Face directory with both formats: safetensors wins. */
    sc_weights *w = open_ok(sc_test_path("tests/golden/medclip-tiny"));
    ck_assert_str_eq(sc_weights_format(w), "safetensors");
    ck_assert_int_eq(sc_weights_count(w), 135);
    sc_err err;
    sc_arena a;
    sc_arena_init(&a, "small", 4096, 8192);
    sc_tensor *x;
    ck_assert_int_eq(sc_weights_get_f32(w, "logit_scale", &a, &x, &err), SC_OK);
    ck_assert_int_eq(x->ndim, 0);
    ck_assert_float_eq_tol(x->data[0], 2.659260f, 1e-6f);
    ck_assert_str_eq(x->name, "logit_scale");
    ck_assert_int_eq(sc_weights_get_f32(w, "no.such.tensor", &a, &x, &err), SC_EFORMAT);
    ck_assert_ptr_null(x);
    ck_assert(strstr(err.msg, "medclip-tiny: no tensor named 'no.such.tensor'") != NULL);
    /* The arena's limit is reported, not an abort. */
    ck_assert_int_eq(sc_weights_get_f32(w, "text_model.model.embeddings.word_embeddings.weight", &a, &x, &err),
                     SC_ENOMEM);
    ck_assert(strstr(err.msg, "arena 'small' cannot hold") != NULL);
    sc_arena_free(&a);
    sc_weights_close(w);

    const char *dir = sc_test_tmpdir();
    ck_assert_int_eq(sc_weights_open(&w, dir, &err), SC_EIO);
    ck_assert(strstr(err.msg, "no model.safetensors, model.safetensors.index.json") != NULL);
    /* A directory with only pytorch_model.bin. */
    ck_assert_int_eq(symlink(sc_test_path("tests/golden/medclip-tiny/pytorch_model.bin"),
                             join_path(dir, "pytorch_model.bin")), 0);
    w = open_ok(dir);
    ck_assert_str_eq(sc_weights_format(w), "pytorch");
    ck_assert_int_eq(sc_weights_count(w), 140);
    sc_weights_close(w);
    ck_assert_int_eq(unlink(join_path(dir, "pytorch_model.bin")), 0);
    ck_assert_int_eq(sc_weights_open(&w, "/nonexistent/model.safetensors", &err), SC_EIO);
    ck_assert(strstr(err.msg, "/nonexistent/model.safetensors: cannot open") != NULL);
    write_bytes(join_path(dir, "empty.bin"), "", 0);
    ck_assert_int_eq(sc_weights_open(&w, join_path(dir, "empty.bin"), &err), SC_EFORMAT);
    ck_assert(strstr(err.msg, "empty file") != NULL);
}
END_TEST

/* ---- safetensors ---- */

/* A safetensors file from a header text and data bytes. */
static bytes_t make_st(const char *header, const void *data, size_t len)
{
    bytes_t b = {0};
    put_le(&b, strlen(header), 8);
    put_str(&b, header);
    put(&b, data, len);
    return b;
}

START_TEST(test_safetensors_write_round_trip)
{
    const char *dir = sc_test_tmpdir();
    const char *path = join_path(dir, "out.safetensors");
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    /* The safetensors library's own serialisation example: "attn.0",
     * F32 (1, 2, 3) holding 0..5. */
    sc_tensor *t = sc_tensor_new(&a, 3, (int64_t[]){1, 2, 3}, "attn.0");
    for (int i = 0; i < 6; i++) t->data[i] = (float)i;
    const char *names[] = {"attn.0"};
    const sc_tensor *ts[] = {t};
    sc_err err;
    ck_assert_msg(sc_safetensors_write(path, names, ts, 1, &err) == SC_OK, "%s", err.msg);
    uint8_t *file;
    size_t len;
    ck_assert_int_eq(sc_read_file(path, 1 << 20, &file, &len, &err), SC_OK);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    size_t hlen = (strlen(want) + 7) / 8 * 8;
    ck_assert_uint_eq(len, 8 + hlen + 24);
    ck_assert_uint_eq(file[0] | file[1] << 8, hlen);
    ck_assert(memcmp(file + 8, want, strlen(want)) == 0);
    for (size_t i = 8 + strlen(want); i < 8 + hlen; i++) ck_assert_int_eq(file[i], ' ');
    /* The float bytes of 1.0f (0x3F800000) at element 1, little-endian. */
    ck_assert(memcmp(file + 8 + hlen + 4, "\x00\x00\x80\x3f", 4) == 0);
    free(file);

    /* Several tensors, given out of order, one a transposed (strided) view
     * and one 0-d; names with characters JSON must escape. */
    sc_tensor *m = sc_tensor_new(&a, 2, (int64_t[]){2, 3}, "m");
    for (int i = 0; i < 6; i++) m->data[i] = (float)(10 + i);
    sc_tensor mt = *m; /* (3, 2) view of m, strides (1, 3) */
    mt.ndim = 2;
    mt.shape[0] = 3;
    mt.shape[1] = 2;
    mt.stride[0] = 1;
    mt.stride[1] = 3;
    sc_tensor *s = sc_tensor_new(&a, 0, NULL, "s");
    s->data[0] = -2.5f;
    const char *names3[] = {"z.\"quoted\"\\name", "b.transposed", "a.scalar"};
    const sc_tensor *ts3[] = {t, &mt, s};
    ck_assert_msg(sc_safetensors_write(path, names3, ts3, 3, &err) == SC_OK, "%s", err.msg);
    sc_weights *w = open_ok(path);
    ck_assert_int_eq(sc_weights_count(w), 3);
    ck_assert_str_eq(sc_weights_at(w, 0)->name, "a.scalar");
    ck_assert_str_eq(sc_weights_at(w, 2)->name, "z.\"quoted\"\\name");
    float *x = read_f32(w, "b.transposed", NULL);
    const float want_t[6] = {10, 13, 11, 14, 12, 15};
    sc_check_close("transposed", x, want_t, 6, 0, 0);
    free(x);
    ck_assert_int_eq(sc_weights_find(w, "a.scalar")->ndim, 0);
    ck_assert_float_eq(*sc_weight_f32_data(sc_weights_find(w, "a.scalar")), -2.5f);
    sc_weights_close(w);

    /* Names must be unique, non-empty and not the metadata key; nothing is
     * written then. */
    const char *dup[] = {"x", "x"};
    const sc_tensor *two[] = {t, t};
    const char *bad_path = join_path(dir, "bad.safetensors");
    ck_assert_int_eq(sc_safetensors_write(bad_path, dup, two, 2, &err), SC_EARG);
    ck_assert(strstr(err.msg, "repeated") != NULL);
    const char *meta[] = {"__metadata__"};
    ck_assert_int_eq(sc_safetensors_write(bad_path, meta, ts, 1, &err), SC_EARG);
    struct stat st;
    ck_assert_int_ne(stat(bad_path, &st), 0);
    /* An empty set of tensors is a valid file. */
    ck_assert_int_eq(sc_safetensors_write(path, NULL, NULL, 0, &err), SC_OK);
    w = open_ok(path);
    ck_assert_int_eq(sc_weights_count(w), 0);
    ck_assert_ptr_null(sc_weights_find(w, "x"));
    sc_weights_close(w);
    sc_arena_free(&a);
}
END_TEST

START_TEST(test_safetensors_half_and_bfloat16)
{
    /* F16: 1, -2, 65504, 2^-24; BF16: 1, -0.5 (0xBF00), 3.140625 (0x4049);
     * I32: -7, 3. Offsets are in file order. */
    const uint16_t f16[4] = {0x3C00, 0xC000, 0x7BFF, 0x0001};
    const uint16_t bf16[3] = {0x3F80, 0xBF00, 0x4049};
    const int32_t i32[2] = {-7, 3};
    uint8_t data[8 + 6 + 2 + 8];
    memcpy(data, f16, 8);
    memcpy(data + 8, bf16, 6);
    memset(data + 14, 0, 2);
    memcpy(data + 16, i32, 8);
    bytes_t b = make_st("{\"h\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                        "\"g\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[8,14]},"
                        "\"u\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[14,16]},"
                        "\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[16,24]},"
                        "\"__metadata__\":{\"format\":\"pt\"}}",
                        data, sizeof data);
    sc_weights *w;
    sc_err err;
    ck_assert_msg(sc_weights_parse(&w, b.p, b.len, "mem", &err) == SC_OK, "%s", err.msg);
    float *h = read_f32(w, "h", NULL), *g = read_f32(w, "g", NULL), *i = read_f32(w, "i", NULL);
    const float want_h[4] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f};
    const float want_g[3] = {1.0f, -0.5f, 3.140625f};
    const float want_i[2] = {-7.0f, 3.0f};
    sc_check_close("f16", h, want_h, 4, 0, 0);
    sc_check_close("bf16", g, want_g, 3, 0, 0);
    sc_check_close("i32", i, want_i, 2, 0, 0);
    ck_assert_ptr_null(sc_weight_f32_data(sc_weights_find(w, "h"))); /* not float32: no view */
    int64_t iv[2];
    ck_assert_int_eq(sc_weights_read_i64(w, "i", iv, 2, &err), SC_OK);
    ck_assert_int_eq(iv[0], -7);
    free(h);
    free(g);
    free(i);
    sc_weights_close(w);
    free(b.p);
}
END_TEST

START_TEST(test_safetensors_malformed_headers)
{
    static const struct {
        const char *header;
        size_t data;
        sc_status want;
        const char *says;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, SC_OK, ""},
        /* overlapping offsets */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, SC_EFORMAT,
         "tensors 'a' and 'b' overlap"},
        /* the same bytes under two names */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, SC_EFORMAT, "overlap"},
        /* a gap, and bytes past the last tensor */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, SC_EFORMAT,
         "data bytes 0 to 4 belong to no tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, SC_EFORMAT,
         "cover 4 data bytes but the file holds 8"},
        /* offsets past the end of the file */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, SC_EFORMAT,
         "cover 16 data bytes but the file holds 8"},
        /* shape × dtype ≠ byte length */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, SC_EFORMAT,
         "'a' is F32 (3) (12 bytes) but data_offsets span 8 bytes"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", 4, SC_EFORMAT, "span 4 bytes"},
        /* shape overflow: 2^31 · 2^31 · 2^31 · 4 bytes */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648,2147483648],\"data_offsets\":[0,8]}}", 8,
         SC_EFORMAT, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483649],\"data_offsets\":[0,8]}}", 8, SC_EFORMAT, "2^31"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, SC_EUNSUPPORTED,
         "9 dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, SC_EFORMAT, "dimension 0"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, SC_EFORMAT, "dimension 0"},
        /* dtypes */
        {"{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SC_EFORMAT, "unknown dtype 'F33'"},
        {"{\"a\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, SC_EUNSUPPORTED,
         "dtype I16, which scale does not read"},
        {"{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SC_EFORMAT, "lacks a string 'dtype'"},
        /* offsets */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, SC_EFORMAT, "end before they begin"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, SC_EFORMAT, "not a pair"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 4, SC_EFORMAT, "not a pair"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, SC_EFORMAT, "lacks"},
        {"{\"a\":[1,2]}", 0, SC_EFORMAT, "entry 'a' is not an object"},
        /* the header itself */
        {"[1,2,3]", 0, SC_EFORMAT, "not a JSON object"},
        {"{\"a\":", 0, SC_EFORMAT, "line 1, column 6"},
        {"{\"a\":{}, \"a\":{}}", 0, SC_EFORMAT, "lacks"},
        /* a name twice (JSON allows it; a weight file must not) */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, SC_EFORMAT, "'a' appears twice"},
        /* zero-size tensors are fine, even several at one offset */
        {"{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
         "\"f\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[0,0]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SC_OK, ""},
    };
    uint8_t zeros[16] = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bytes_t b = make_st(cases[i].header, zeros, cases[i].data);
        sc_weights *w;
        sc_err err = {{0}};
        sc_status s = sc_weights_parse(&w, b.p, b.len, "bad.file", &err);
        ck_assert_msg(s == cases[i].want, "case %zu: status %d, want %d (%s)", i, s, cases[i].want, err.msg);
        if (s == SC_OK) sc_weights_close(w);
        else ck_assert_msg(strstr(err.msg, cases[i].says) != NULL, "case %zu: '%s'", i, err.msg);
        free(b.p);
    }
}
END_TEST

START_TEST(test_safetensors_truncated_and_lying_lengths)
{
    /* Header length beyond the file, and beyond the 100 MB limit. */
    bytes_t b = {0};
    put_le(&b, 1000, 8);
    put_str(&b, "{}");
    expect_parse_error(b.p, b.len, SC_EFORMAT, "header length 1000 runs past the end of the file (10 bytes)");
    b.len = 0;
    put_le(&b, (uint64_t)1 << 40, 8);
    put_str(&b, "{}");
    expect_parse_error(b.p, b.len, SC_EFORMAT, "exceeds the 100 MB limit");
    expect_parse_error(b.p, 5, SC_EFORMAT, "too few for a safetensors header");
    b.len = 0;
    put_le(&b, UINT64_MAX, 8);
    expect_parse_error(b.p, b.len, SC_EFORMAT, "exceeds");
    free(b.p);

    /* The golden file cut short anywhere: a clear error, never a crash. */
    uint8_t *file;
    size_t len;
    sc_err err;
    ck_assert_int_eq(sc_read_file(sc_test_path("tests/golden/clip-tiny/model.safetensors"), 1 << 24, &file, &len, &err),
                     SC_OK);
    const size_t cuts[] = {0, 7, 8, 100, 5000, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        sc_weights *w;
        sc_status s = sc_weights_parse(&w, file, cuts[i], "cut", &err);
        ck_assert_msg(s == SC_EFORMAT, "cut at %zu: status %d", cuts[i], s);
        ck_assert_ptr_null(w);
    }
    sc_weights *w;
    ck_assert_int_eq(sc_weights_parse(&w, file, len, "whole", &err), SC_OK);
    sc_weights_close(w);
    /* The header nested 10 000 deep: the JSON depth limit answers. */
    bytes_t deep = {0};
    put_le(&deep, 20000, 8);
    for (int i = 0; i < 10000; i++) put_str(&deep, "[");
    for (int i = 0; i < 10000; i++) put_str(&deep, "]");
    expect_parse_error(deep.p, deep.len, SC_EFORMAT, "nesting deeper than 256 levels");
    free(deep.p);
    free(file);
}
END_TEST

START_TEST(test_safetensors_sharded_directory)
{
    const char *dir = sc_test_tmpdir();
    sc_arena a;
    sc_arena_init(&a, "test", 1 << 20, 0);
    sc_tensor *x = sc_tensor_new(&a, 1, (int64_t[]){3}, "x");
    sc_tensor *y = sc_tensor_new(&a, 2, (int64_t[]){2, 2}, "y");
    for (int i = 0; i < 3; i++) x->data[i] = (float)i + 0.5f;
    for (int i = 0; i < 4; i++) y->data[i] = (float)-i;
    sc_err err;
    const char *n1[] = {"enc.x"}, *n2[] = {"dec.y", "dec.x"};
    const sc_tensor *t1[] = {x}, *t2[] = {y, x};
    ck_assert_int_eq(sc_safetensors_write(join_path(dir, "model-00001-of-00002.safetensors"), n1, t1, 1, &err), SC_OK);
    ck_assert_int_eq(sc_safetensors_write(join_path(dir, "model-00002-of-00002.safetensors"), n2, t2, 2, &err), SC_OK);
    const char *index = "{\"metadata\": {\"total_size\": 40}, \"weight_map\": {"
                        "\"enc.x\": \"model-00001-of-00002.safetensors\","
                        "\"dec.y\": \"model-00002-of-00002.safetensors\","
                        "\"dec.x\": \"model-00002-of-00002.safetensors\"}}";
    write_bytes(join_path(dir, "model.safetensors.index.json"), index, strlen(index));
    sc_weights *w = open_ok(dir);
    ck_assert_int_eq(sc_weights_count(w), 3);
    float *v = read_f32(w, "dec.y", NULL);
    ck_assert_float_eq(v[3], -3.0f);
    free(v);
    v = read_f32(w, "enc.x", NULL);
    ck_assert_float_eq(v[2], 2.5f);
    free(v);
    sc_weights_close(w);

    /* An index naming a tensor its shard lacks; a shard outside the
     * directory; a shard that is missing. */
    static const struct {
        const char *index, *says;
        sc_status want;
    } bad[] = {
        {"{\"weight_map\": {\"enc.z\": \"model-00001-of-00002.safetensors\"}}",
         "lists tensor 'enc.z' in model-00001-of-00002.safetensors, which does not hold it", SC_EFORMAT},
        {"{\"weight_map\": {\"enc.x\": \"../model-00001-of-00002.safetensors\"}}", "not a plain file name", SC_EFORMAT},
        {"{\"weight_map\": {\"enc.x\": \"/etc/passwd\"}}", "not a plain file name", SC_EFORMAT},
        {"{\"weight_map\": {\"enc.x\": \"missing.safetensors\"}}", "missing.safetensors: cannot open", SC_EIO},
        {"{\"weight_map\": {\"enc.x\": 3}}", "not a plain file name", SC_EFORMAT},
        {"{\"metadata\": {}}", "no \"weight_map\" object", SC_EFORMAT},
        /* two shards holding the same tensor */
        {"{\"weight_map\": {\"enc.x\": \"model-00001-of-00002.safetensors\", \"dec.x\": \"dup.safetensors\"}}",
         "'enc.x' appears twice", SC_EFORMAT},
    };
    const char *dup_names[] = {"enc.x"};
    ck_assert_int_eq(sc_safetensors_write(join_path(dir, "dup.safetensors"), dup_names, t1, 1, &err), SC_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_bytes(join_path(dir, "model.safetensors.index.json"), bad[i].index, strlen(bad[i].index));
        sc_status s = sc_weights_open(&w, dir, &err);
        ck_assert_msg(s == bad[i].want, "case %zu: status %d (%s)", i, s, err.msg);
        ck_assert_msg(strstr(err.msg, bad[i].says) != NULL, "case %zu: '%s'", i, err.msg);
    }
    sc_arena_free(&a);
}
END_TEST

/* ---- PyTorch checkpoints: crafted ---- */

/* A checkpoint "ck/data.pkl" + storages, zipped; returns the zip bytes. */
static bytes_t make_checkpoint(const bytes_t *pickle, const zip_file *storages, int n)
{
    zip_file files[8];
    ck_assert_int_le(n, 6);
    files[0] = (zip_file){"ck/data.pkl", pickle->p, pickle->len, 0};
    for (int i = 0; i < n; i++) files[1 + i] = storages[i];
    files[1 + n] = (zip_file){"ck/version", "3\n", 2, 0};
    return make_zip(files, n + 2);
}

START_TEST(test_pytorch_strided_offset_and_half_tensors)
{
    /* Storage 0: 12 floats 0..11. Tensor "t" is its (3, 2) transpose-like
     * view from offset 2 with strides (1, 3): t[i][j] = 2 + i + 3j.
     * Tensor "h": HalfStorage "1" = {1, -2, 0.5}, offset 1, shape (2,).
     * Tensor "b": BFloat16Storage "2" = {1, 3.140625}. Tensor "n": nested
     * {"state_dict": {"w": ...}} and an "epoch": 3 to be skipped. */
    float s0[12];
    for (int i = 0; i < 12; i++) s0[i] = (float)i;
    const uint16_t s1[3] = {0x3C00, 0xC000, 0x3800};
    const uint16_t s2[2] = {0x3F80, 0x4049};
    bytes_t p = {0};
    pk_begin_state_dict(&p);
    pk_tensor_item(&p, "t", "FloatStorage", "0", 12, 2, 2, (int64_t[]){3, 2}, (int64_t[]){1, 3});
    pk_tensor_item(&p, "h", "HalfStorage", "1", 3, 1, 1, (int64_t[]){2}, (int64_t[]){1});
    pk_tensor_item(&p, "b", "BFloat16Storage", "2", 2, 0, 1, (int64_t[]){2}, (int64_t[]){1});
    /* Strides of size-1 dims are never used to move (torch leaves any value
     * there); a huge one must not upset the index arithmetic: u = {0, 2, 4}. */
    pk_tensor_item(&p, "u", "FloatStorage", "0", 12, 0, 2, (int64_t[]){3, 1}, (int64_t[]){2, INT64_MAX});
    pk_unicode(&p, "epoch");
    pk_int_bytes(&p, 3);
    pk_unicode(&p, "state_dict");
    put_u8(&p, '}'); /* EMPTY_DICT, then one SETITEM */
    pk_tensor_item(&p, "w", "FloatStorage", "0", 12, 11, 0, NULL, NULL);
    put_u8(&p, 's');
    pk_end_state_dict(&p);
    const zip_file st[] = {
        {"ck/data/0", s0, sizeof s0, 0}, {"ck/data/1", s1, sizeof s1, 0}, {"ck/data/2", s2, sizeof s2, 0}};
    bytes_t z = make_checkpoint(&p, st, 3);
    sc_weights *w;
    sc_err err;
    ck_assert_msg(sc_weights_parse(&w, z.p, z.len, "ck.pt", &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(sc_weights_count(w), 5); /* b, h, state_dict.w, t, u */
    ck_assert_str_eq(sc_weights_at(w, 2)->name, "state_dict.w");
    float *t = read_f32(w, "t", NULL);
    const float want_t[6] = {2, 5, 3, 6, 4, 7};
    sc_check_close("t", t, want_t, 6, 0, 0);
    ck_assert_ptr_null(sc_weight_f32_data(sc_weights_find(w, "t"))); /* strided: no view */
    float *u = read_f32(w, "u", NULL);
    const float want_u[3] = {0, 2, 4};
    sc_check_close("u", u, want_u, 3, 0, 0);
    free(u);
    float *h = read_f32(w, "h", NULL), *b = read_f32(w, "b", NULL), *sw = read_f32(w, "state_dict.w", NULL);
    ck_assert_float_eq(h[0], -2.0f);
    ck_assert_float_eq(h[1], 0.5f);
    ck_assert_float_eq(b[1], 3.140625f);
    ck_assert_float_eq(sw[0], 11.0f);
    ck_assert_int_eq(sc_weights_find(w, "state_dict.w")->ndim, 0);
    free(t);
    free(h);
    free(b);
    free(sw);
    sc_weights_close(w);
    free(z.p);
    free(p.p);
}
END_TEST

/* Checkpoints whose pickle is `body` between the state-dict opening and
 * closing, with one float storage "0" of 4 elements. */
static void expect_pickle_error(const bytes_t *pickle, const char *says)
{
    static const float s0[4] = {1, 2, 3, 4};
    const zip_file st[] = {{"ck/data/0", s0, sizeof s0, 0}};
    bytes_t z = make_checkpoint(pickle, st, 1);
    expect_parse_error(z.p, z.len, SC_EFORMAT, says);
    free(z.p);
}

START_TEST(test_pytorch_refuses_dangerous_globals)
{
    /* The classic attack: GLOBAL os.system, then REDUCE with a command. */
    bytes_t p = {0};
    put_u8(&p, 0x80);
    put_u8(&p, 2);
    pk_global_bytes(&p, "os", "system");
    pk_unicode(&p, "touch /tmp/scale-pwned");
    put_u8(&p, 0x85);
    put_u8(&p, 'R');
    put_u8(&p, '.');
    expect_pickle_error(&p, "the global 'os.system', which a state dict never needs");
    /* builtins.eval through STACK_GLOBAL (protocol 4), inside a state dict. */
    p.len = 0;
    pk_begin_state_dict(&p);
    pk_unicode(&p, "x");
    pk_unicode(&p, "builtins");
    pk_unicode(&p, "eval");
    put_u8(&p, 0x93);
    pk_unicode(&p, "__import__('os').system('true')");
    put_u8(&p, 0x85);
    put_u8(&p, 'R');
    pk_end_state_dict(&p);
    expect_pickle_error(&p, "the global 'builtins.eval'");
    /* Lookalikes of allowed names. */
    p.len = 0;
    pk_global_bytes(&p, "torch", "load");
    expect_pickle_error(&p, "'torch.load'");
    p.len = 0;
    pk_global_bytes(&p, "collections", "OrderedDict2");
    expect_pickle_error(&p, "'collections.OrderedDict2'");
    /* Opcodes that build arbitrary objects. */
    p.len = 0;
    put_u8(&p, '(');
    put_str(&p, "ios\nsystem\n");
    expect_pickle_error(&p, "opcode 0x69 (INST (create an instance of any class)) is not allowed");
    p.len = 0;
    pk_global_bytes(&p, "collections", "OrderedDict");
    put_u8(&p, ')');
    put_u8(&p, 0x81);
    expect_pickle_error(&p, "NEWOBJ");
    p.len = 0;
    put_str(&p, "P0\n");
    expect_pickle_error(&p, "PERSID");
    /* A storage type is not something to call. */
    p.len = 0;
    pk_global_bytes(&p, "torch", "FloatStorage");
    put_u8(&p, ')');
    put_u8(&p, 'R');
    expect_pickle_error(&p, "a storage type is called directly");
    free(p.p);
}
END_TEST

START_TEST(test_pytorch_malformed_pickles)
{
    const int64_t two[1] = {2}, one[1] = {1}, five[1] = {5};
    static const struct {
        int kind;
        const char *says;
    } cases[] = {
        {0, "storage 'ck/data/7' is not in the archive"},
        {1, "should hold 9 float32 elements but has 16 bytes"},
        {2, "reaches past its storage of 4 elements"},
        {3, "reaches past its storage"},
        {4, "the pickle ends without STOP"},
        {5, "holds a list, not a dict of tensors"},
        {6, "memo entry 9 is not set"},
        {7, "stack underflow"},
        {8, "SETITEM on a int"},
        {9, "not ('storage', torch.<type>Storage, key, location, numel)"},
        {10, "storage key '../0' is not a plain name"},
        {11, "_rebuild_tensor_v2 with arguments other than"},
        {12, "string of 2 bytes runs past the end"},
        {13, "string is not valid UTF-8"},
        {14, "integer of 9 bytes is too large"},
        {15, "no MARK on the stack"},
        {16, "tensor has too many elements"},
        {17, "more than 4194304 dict entries to visit"},
        {18, "dicts nested too deeply"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bytes_t p = {0};
        switch (cases[i].kind) {
        case 0: /* a storage the archive lacks */
            pk_begin_state_dict(&p);
            pk_tensor_item(&p, "a", "FloatStorage", "7", 4, 0, 1, two, one);
            pk_end_state_dict(&p);
            break;
        case 1: /* numel disagrees with the entry's size */
            pk_begin_state_dict(&p);
            pk_tensor_item(&p, "a", "FloatStorage", "0", 9, 0, 1, two, one);
            pk_end_state_dict(&p);
            break;
        case 2: /* a view past the end of its storage */
            pk_begin_state_dict(&p);
            pk_tensor_item(&p, "a", "FloatStorage", "0", 4, 0, 1, five, one);
            pk_end_state_dict(&p);
            break;
        case 3: /* offset + strides past the end */
            pk_begin_state_dict(&p);
            pk_tensor_item(&p, "a", "FloatStorage", "0", 4, 3, 1, two, one);
            pk_end_state_dict(&p);
            break;
        case 4: /* no STOP */
            pk_begin_state_dict(&p);
            break;
        case 5: /* a list at the top */
            put_u8(&p, ']');
            put_u8(&p, '.');
            break;
        case 6:
            put_u8(&p, 'h');
            put_u8(&p, 9);
            break;
        case 7:
            put_u8(&p, 's');
            break;
        case 8:
            pk_int_bytes(&p, 1);
            pk_int_bytes(&p, 2);
            pk_int_bytes(&p, 3);
            put_u8(&p, 's');
            break;
        case 9: /* a persistent id of the wrong shape */
            pk_int_bytes(&p, 1);
            put_u8(&p, 0x85);
            put_u8(&p, 'Q');
            break;
        case 10: /* a storage key that walks out of data/ */
            pk_begin_state_dict(&p);
            pk_tensor_item(&p, "a", "FloatStorage", "../0", 4, 0, 1, two, one);
            pk_end_state_dict(&p);
            break;
        case 11:
            pk_global_bytes(&p, "torch._utils", "_rebuild_tensor_v2");
            pk_int_bytes(&p, 1);
            put_u8(&p, 0x85);
            put_u8(&p, 'R');
            break;
        case 12: /* BINUNICODE whose length runs past the end */
            put_u8(&p, 'X');
            put_le(&p, 2, 4);
            put_u8(&p, 'a');
            break;
        case 13:
            put_u8(&p, 0x8c);
            put_u8(&p, 2);
            put_u8(&p, 0xC0);
            put_u8(&p, 0xAF);
            break;
        case 14:
            put_u8(&p, 0x8a);
            put_u8(&p, 9);
            for (int k = 0; k < 9; k++) put_u8(&p, 1);
            break;
        case 15:
            put_u8(&p, 't');
            break;
        case 16: /* zero strides make a tiny storage look enormous */
            pk_begin_state_dict(&p);
            pk_tensor_item(&p, "a", "FloatStorage", "0", 4, 0, 3, (int64_t[]){1LL << 31, 1LL << 31, 1LL << 31},
                           (int64_t[]){0, 0, 0});
            pk_end_state_dict(&p);
            break;
        case 17: /* dicts of 10 references to the previous dict, 7 deep:
                  * 10^7 paths from a pickle of a few hundred bytes */
        case 18: /* the same, 9 deep */
            put_u8(&p, '}');
            put_u8(&p, 'q');
            put_u8(&p, 0);
            for (int level = 1; level <= (cases[i].kind == 17 ? 7 : 9); level++) {
                put_u8(&p, '}');
                put_u8(&p, '(');
                for (int k = 0; k < 10; k++) {
                    char key[16];
                    snprintf(key, sizeof key, "k%d", k);
                    pk_unicode(&p, key);
                    put_u8(&p, 'h');
                    put_u8(&p, (uint8_t)(level - 1));
                }
                put_u8(&p, 'u');
                put_u8(&p, 'q');
                put_u8(&p, (uint8_t)level);
            }
            put_u8(&p, '.');
            break;
        }
        expect_pickle_error(&p, cases[i].says);
        free(p.p);
    }
}
END_TEST

/* ---- zip archives ---- */

/* Offset of the central directory entry named `name` in a zip. */
static size_t central_entry(const bytes_t *z, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i + 46 + n <= z->len; i++)
        if (memcmp(z->p + i, "PK\1\2", 4) == 0 && (z->p[i + 28] | z->p[i + 29] << 8) == (int)n &&
            memcmp(z->p + i + 46, name, n) == 0)
            return i;
    ck_abort_msg("no central entry '%s'", name);
    return 0;
}

START_TEST(test_zip_lying_central_directory)
{
    static const float s0[4] = {1, 2, 3, 4};
    bytes_t p = {0};
    pk_begin_state_dict(&p);
    pk_tensor_item(&p, "a", "FloatStorage", "0", 4, 0, 1, (int64_t[]){4}, (int64_t[]){1});
    pk_end_state_dict(&p);
    const zip_file st[] = {{"ck/data/0", s0, sizeof s0, 0}};
    bytes_t good = make_checkpoint(&p, st, 1);
    sc_weights *w;
    sc_err err;
    ck_assert_msg(sc_weights_parse(&w, good.p, good.len, "ck.pt", &err) == SC_OK, "%s", err.msg);
    float *a = read_f32(w, "a", NULL);
    sc_check_close("a", a, s0, 4, 0, 0);
    free(a);
    sc_weights_close(w);

    bytes_t z = {0};
    size_t c;
#define LIE_WITH(patch, want, says)                                       \
    do {                                                                  \
        z.len = 0;                                                        \
        put(&z, good.p, good.len);                                        \
        c = central_entry(&z, "ck/data/0");                               \
        patch;                                                            \
        expect_parse_error(z.p, z.len, want, says);                       \
    } while (0)
#define LIE(patch, says) LIE_WITH(patch, SC_EFORMAT, says)
    /* sizes: central says 8 bytes, local 16 */
    LIE((z.p[c + 20] = 8, z.p[c + 24] = 8), "sizes or CRC in the local header (16 bytes) disagree");
    /* a CRC that does not match the local header */
    LIE(z.p[c + 16] ^= 1, "disagree with the central directory");
    /* a different name than the local header has */
    LIE(z.p[c + 46 + 8] = '1', "the local header disagrees with the central directory");
    /* a local header offset pointing at the wrong place */
    LIE(z.p[c + 42] += 3, "no local header where the central directory says");
    LIE((z.p[c + 42] = 0xFF, z.p[c + 43] = 0xFF, z.p[c + 44] = 0xFF, z.p[c + 45] = 0x7F),
        "local header outside the archive");
    /* two central entries sharing one local header */
    LIE((memcpy(z.p + c + 42, z.p + central_entry(&z, "ck/data.pkl") + 42, 4)),
        "the local header disagrees with the central directory");
    /* compressed size larger than the space before the central directory */
    LIE((z.p[c + 20] = 0xFF, z.p[c + 21] = 0xFF, z.p[c + 22] = 0xFF, z.p[c + 24] = 0xFF, z.p[c + 25] = 0xFF,
         z.p[c + 26] = 0xFF), "local header (16 bytes) disagree");
    /* encryption, and unknown compression methods (central and local agree) */
    LIE_WITH(z.p[c + 8] |= 1, SC_EUNSUPPORTED, "is encrypted");
    LIE_WITH(z.p[c + 10] = 12, SC_EUNSUPPORTED, "compression method 12");
    /* the end record: more entries than the directory can hold, or a
     * directory outside the file */
    LIE((z.p[z.len - 12] = 0xFF, z.p[z.len - 14] = 0xFF), "claims 255 entries");
    LIE((z.p[z.len - 12] = z.p[z.len - 11] = 0xFF), "zip64 archive without a zip64 locator");
    LIE(z.p[z.len - 5] = 0x7F, "central directory lies outside the file");
    LIE(z.p[c] = 'X', "central directory entry 1 is damaged");
#undef LIE
#undef LIE_WITH
    expect_parse_error(good.p, good.len - 1, SC_EFORMAT, "no end-of-central-directory record");

    /* Overlapping entries: "b"'s local header and data hidden inside "a"'s
     * data, both listed in the central directory. */
    bytes_t inner = {0};
    put_le(&inner, 0x04034b50, 4);
    put_le(&inner, 20, 2);
    put_le(&inner, 0, 2);
    put_le(&inner, 0, 2);
    put_le(&inner, 0, 4);
    put_le(&inner, crc32_bitwise((const uint8_t *)"xy", 2), 4);
    put_le(&inner, 2, 4);
    put_le(&inner, 2, 4);
    put_le(&inner, 1, 2);
    put_le(&inner, 0, 2);
    put_str(&inner, "bxy");
    const zip_file nested[] = {{"a", inner.p, inner.len, 0}, {"b", "xy", 2, 0}};
    z.len = 0;
    bytes_t nz = make_zip(nested, 2);
    c = central_entry(&nz, "b");
    nz.p[c + 42] = 30 + 1; /* "b" now starts inside "a"'s data */
    nz.p[c + 43] = nz.p[c + 44] = nz.p[c + 45] = 0;
    expect_parse_error(nz.p, nz.len, SC_EFORMAT, "zip entries 'a' and 'b' overlap");
    free(nz.p);
    free(inner.p);
    expect_parse_error(good.p, 3, SC_EFORMAT, "safetensors");

    /* The golden checkpoint (local sizes deferred to data descriptors): a
     * central size that the descriptor contradicts. */
    uint8_t *file;
    size_t len;
    ck_assert_int_eq(sc_read_file(sc_test_path("tests/golden/clip-tiny/openai.pt"), 1 << 24, &file, &len, &err), SC_OK);
    z.len = 0;
    put(&z, file, len);
    c = central_entry(&z, "openai/version");
    z.p[c + 20] = z.p[c + 24] = 1; /* 1 byte instead of 2 */
    expect_parse_error(z.p, z.len, SC_EFORMAT, "zip entry 'openai/version': the data descriptor disagrees");
    free(file);
    free(z.p);
    free(good.p);
    free(p.p);
}
END_TEST

START_TEST(test_zip_torchscript_legacy_and_others)
{
    /* TorchScript: code/ and constants.pkl next to data.pkl. */
    const zip_file ts[] = {{"m/data.pkl", "\x80\x02}q\x00.", 6, 0},
                           {"m/code/__torch__/model.py", "def forward(self): ...", 22, 0},
                           {"m/constants.pkl", "\x80\x02).", 4, 0}};
    bytes_t z = make_zip(ts, 3);
    expect_parse_error(z.p, z.len, SC_EUNSUPPORTED,
                       "a TorchScript archive (torch.jit.save), not a state dict; convert it in Python with "
                       "torch.save(torch.jit.load(PATH).state_dict(), NEW_PATH)");
    free(z.p);
    /* A zip without data.pkl. */
    const zip_file other[] = {{"readme.txt", "hello", 5, 0}};
    z = make_zip(other, 1);
    expect_parse_error(z.p, z.len, SC_EFORMAT, "without data.pkl, so not a PyTorch checkpoint");
    free(z.p);
    /* An empty zip (only the end record). */
    z = make_zip(NULL, 0);
    expect_parse_error(z.p, z.len, SC_EFORMAT, "without data.pkl");
    free(z.p);
    /* Legacy torch.save: a bare pickle starting with the magic number. */
    const uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    expect_parse_error(legacy, sizeof legacy, SC_EUNSUPPORTED,
                       "a legacy PyTorch file (torch.save before 1.6, or _use_new_zipfile_serialization=False); "
                       "re-save it with PyTorch 1.6 or later");
    /* Deflated entries (method 8) inflate; a damaged stream or a size
     * claim no deflate stream can reach is refused. */
    static const float s0[3] = {1.5f, -2, 4};
    bytes_t p = {0};
    pk_begin_state_dict(&p);
    pk_tensor_item(&p, "d", "FloatStorage", "0", 3, 0, 1, (int64_t[]){3}, (int64_t[]){1});
    pk_end_state_dict(&p);
    const zip_file files[] = {{"ck/data.pkl", p.p, p.len, 1}, {"ck/data/0", s0, sizeof s0, 1}};
    z = make_zip(files, 2);
    sc_weights *w;
    sc_err err;
    ck_assert_msg(sc_weights_parse(&w, z.p, z.len, "deflated.pt", &err) == SC_OK, "%s", err.msg);
    float *d = read_f32(w, "d", NULL);
    sc_check_close("d", d, s0, 3, 0, 0);
    free(d);
    sc_weights_close(w);
    size_t c = central_entry(&z, "ck/data/0");
    bytes_t bad = {0};
    put(&bad, z.p, z.len);
    size_t local = (size_t)bad.p[c + 42] | (size_t)bad.p[c + 43] << 8;
    bad.p[local + 30 + 9] = 0x02; /* block type 01 instead of 00: the stored bytes are now nonsense */
    expect_parse_error(bad.p, bad.len, SC_EFORMAT, "bad.file: zip entry 'ck/data/0'");
    bad.len = 0;
    put(&bad, z.p, z.len);
    bad.p[c + 24 + 3] = 0x10; /* uncompressed size 256 MiB from 17 bytes */
    bad.p[local + 22 + 3] = 0x10;
    expect_parse_error(bad.p, bad.len, SC_EFORMAT, "claims 268435468 bytes from 17 compressed");
    free(bad.p);
    free(z.p);
    free(p.p);
    /* A stored entry whose bytes changed after the CRC was computed. */
    p = (bytes_t){0};
    pk_begin_state_dict(&p);
    pk_tensor_item(&p, "d", "FloatStorage", "0", 3, 0, 1, (int64_t[]){3}, (int64_t[]){1});
    pk_end_state_dict(&p);
    const zip_file stored[] = {{"ck/data.pkl", p.p, p.len, 0}, {"ck/data/0", s0, sizeof s0, 0}};
    z = make_zip(stored, 2);
    c = central_entry(&z, "ck/data/0");
    local = (size_t)z.p[c + 42] | (size_t)z.p[c + 43] << 8;
    z.p[local + 30 + 9 + 2] ^= 0x40;
    expect_parse_error(z.p, z.len, SC_EFORMAT, "zip entry 'ck/data/0' fails its CRC-32 check");
    free(z.p);
    free(p.p);
    /* An empty state dict is a valid checkpoint with no tensors. */
    p = (bytes_t){0};
    pk_begin_state_dict(&p);
    pk_end_state_dict(&p);
    z = make_checkpoint(&p, NULL, 0);
    ck_assert_int_eq(sc_weights_parse(&w, z.p, z.len, "empty.pt", &err), SC_OK);
    ck_assert_int_eq(sc_weights_count(w), 0);
    sc_weights_close(w);
    free(z.p);
    free(p.p);
}
END_TEST

Suite *suite_weights(void)
{
    Suite *s = suite_create("weights");
    TCase *golden = tcase_create("weights_golden");
    tcase_add_test(golden, test_weights_medclip_bin_matches_safetensors);
    tcase_add_test(golden, test_weights_int64_buffers);
    tcase_add_test(golden, test_weights_clip_openai_matches_hf);
    tcase_add_test(golden, test_weights_open_directory_and_errors);
    suite_add_tcase(s, golden);
    TCase *st = tcase_create("safetensors");
    tcase_add_test(st, test_safetensors_write_round_trip);
    tcase_add_test(st, test_safetensors_half_and_bfloat16);
    tcase_add_test(st, test_safetensors_malformed_headers);
    tcase_add_test(st, test_safetensors_truncated_and_lying_lengths);
    tcase_add_test(st, test_safetensors_sharded_directory);
    suite_add_tcase(s, st);
    TCase *pt = tcase_create("pytorch");
    tcase_add_test(pt, test_pytorch_strided_offset_and_half_tensors);
    tcase_add_test(pt, test_pytorch_refuses_dangerous_globals);
    tcase_add_test(pt, test_pytorch_malformed_pickles);
    tcase_add_test(pt, test_zip_lying_central_directory);
    tcase_add_test(pt, test_zip_torchscript_legacy_and_others);
    suite_add_tcase(s, pt);
    return s;
}
