/* check_cache.c — the embedding cache (scale.c sections 6g-6j): a round
 * trip against embeddings computed directly with the model, refusal of a
 * stale cache, shards joined byte for byte equal to one whole run, and
 * `scale embed` through the binary, including a failure that must leave
 * no output behind.
 *
 * The models are the tiny golden ones of tests/golden, given tokenizers
 * of their own: medclip-tiny (BERT vocabulary of 128) with a vocab.txt of
 * 128 words written here, and clip-tiny with its 512-row token table
 * grown to 515 rows for a byte-level BPE with one merge (the 512 byte
 * symbols, the merge, and the two special tokens: OpenAI's construction
 * when no vocab.json is given). Their weights stay the golden ones; only
 * the three new token rows are new. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_util.h"
#include "dataset_fixtures.h"

/* ---- test models ---- */

static void copy_file(const char *from, const char *dir, const char *name)
{
    static uint8_t *data;
    size_t len;
    sc_err err;
    ck_assert_msg(sc_read_file(from, 1 << 26, &data, &len, &err) == SC_OK, "%s", err.msg);
    put_bytes(dir, name, data, len);
    free(data);
    data = NULL;
}

/* medclip-tiny with a WordPiece vocabulary of exactly its 128 rows: the
 * specials at BERT's usual places ([CLS] 2 and [SEP] 3 as in the golden
 * ids), the words of the PadChest-GR prompts, then fillers. */
static void make_medclip_model(const char *dir)
{
    copy_file(sc_test_path("tests/golden/medclip-tiny/config.json"), dir, "config.json");
    copy_file(sc_test_path("tests/golden/medclip-tiny/model.safetensors"), dir, "model.safetensors");
    static const char *const words[] = {
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "no", "finding", "atelectasis", "in", "the", "left",
        "right", "lower", "lobe", "retrocardiac", "region", "cardiomegaly", "an", "enlarged", "cardiac", "silhouette",
        "consolidation", "pleural", "effusion", "costophrenic", "angle", "angles", "on", "both", "sides", "space",
        "spaces", "heart", "is", "blunting", "due", "to", "basal", "bilateral", "reaching"};
    char text[4096], *p = text;
    int n = (int)(sizeof words / sizeof words[0]);
    for (int k = 0; k < 128; k++) p += k < n ? sprintf(p, "%s\n", words[k]) : sprintf(p, "filler%d\n", k);
    put_file(dir, "vocab.txt", text);
}

/* clip-tiny with a 515-token byte-level BPE (one merge, "l e"). */
static void make_clip_model(const char *dir)
{
    sc_weights *w;
    sc_err err;
    ck_assert_msg(sc_weights_open(&w, sc_test_path("tests/golden/clip-tiny/model.safetensors"), &err) == SC_OK, "%s",
                  err.msg);
    int n = sc_weights_count(w);
    sc_arena a;
    sc_arena_init(&a, "clip weights", (size_t)1 << 22, 0);
    const char **names = malloc(sizeof *names * (size_t)n);
    const sc_tensor **tensors = malloc(sizeof *tensors * (size_t)n);
    for (int i = 0; i < n; i++) {
        names[i] = sc_weights_at(w, i)->name;
        sc_tensor *t;
        ck_assert_msg(sc_weights_get_f32(w, names[i], &a, &t, &err) == SC_OK, "%s", err.msg);
        if (!strcmp(names[i], "text_model.embeddings.token_embedding.weight")) {
            ck_assert_int_eq(t->shape[0], 512);
            sc_tensor *grown = sc_tensor_new(&a, 2, (int64_t[]){515, t->shape[1]}, names[i]);
            memcpy(grown->data, t->data, sizeof(float) * (size_t)(512 * t->shape[1]));
            sc_fill_normal(grown->data + 512 * t->shape[1], 3 * t->shape[1], 77, 0.5f);
            t = grown;
        }
        tensors[i] = t;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_msg(sc_safetensors_write(path, names, tensors, n, &err) == SC_OK, "%s", err.msg);
    copy_file(sc_test_path("tests/golden/clip-tiny/config.json"), dir, "config.json");
    snprintf(path, sizeof path, "%s/config.json", dir);
    replace_in_file(path, "\"vocab_size\": 512", "\"vocab_size\": 515");
    replace_in_file(path, "\"bos_token_id\": 510", "\"bos_token_id\": 513");
    replace_in_file(path, "\"eos_token_id\": 511", "\"eos_token_id\": 514");
    put_file(dir, "merges.txt", "#version: 0.2\nl e\n");
    free(names);
    free(tensors);
    sc_weights_close(w);
    sc_arena_free(&a);
}

/* ---- helpers ---- */

typedef struct {
    char root[256];     /* the scratch folder */
    char model[300];    /* root/model */
    char data[300];     /* root/data */
} setup;

/* A PadChest-GR fixture and the MedCLIP test model, side by side. */
static void setup_padchest(setup *s)
{
    snprintf(s->root, sizeof s->root, "%s", sc_test_tmpdir());
    snprintf(s->model, sizeof s->model, "%s/model", s->root);
    snprintf(s->data, sizeof s->data, "%s/data", s->root);
    mkdir(s->model, 0777);
    mkdir(s->data, 0777);
    make_medclip_model(s->model);
    padchest_fixture(s->data);
}

static sc_dataset_options padchest_opts(const setup *s)
{
    sc_dataset_options o = sc_dataset_defaults();
    o.kind = SC_DATA_PADCHEST_GR;
    o.path = s->data;
    o.hier = sc_test_path("data/padchest-gr.hier");
    o.min_cases = 0;
    return o;
}

static void embed_ok(const char *model, const sc_dataset_options *o, int batch, int shard, int n_shards, const char *out)
{
    sc_dataset ds;
    sc_err err;
    ck_assert_msg(sc_dataset_load(&ds, o, &err) == SC_OK, "%s", err.msg);
    sc_embed_config cfg = sc_embed_defaults();
    cfg.model = model;
    cfg.batch = batch;
    cfg.shard = shard;
    cfg.n_shards = n_shards;
    ck_assert_msg(sc_embed(&cfg, &ds, out, &err) == SC_OK, "%s", err.msg);
    sc_dataset_free(&ds);
}

static void load_cache(sc_cache *c, const char *dir)
{
    sc_err err;
    ck_assert_msg(sc_cache_load(c, dir, &err) == SC_OK, "%s", err.msg);
}

/* The embedding of one image computed straight from the file: decode,
 * the model's pipeline, the image tower on a batch of one. */
static void direct_image_embedding(const char *model_dir, const char *image, float *out, int64_t E)
{
    sc_model *m;
    sc_pipeline p;
    sc_image img;
    sc_err err;
    ck_assert(sc_model_load(&m, model_dir, NULL, &err) == SC_OK);
    ck_assert(sc_pipeline_for_model(model_dir, NULL, &p, &err) == SC_OK);
    ck_assert_msg(sc_image_load(image, &img, &err) == SC_OK, "%s", err.msg);
    int64_t S = sc_pipeline_side(&p);
    float *px = malloc(sizeof(float) * (size_t)(p.channels * S * S));
    ck_assert(sc_pipeline_run(&p, &img, px, &err) == SC_OK);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_ctx_set_grad(&ctx, 0);
    sc_tensor *x = sc_tensor_wrap(&ctx.act, px, 4, (int64_t[]){1, p.channels, S, S}, "pixels"), *y;
    ck_assert_msg(sc_model_encode_image(m, &ctx, x, &y, NULL, &err) == SC_OK, "%s", err.msg);
    memcpy(out, y->data, sizeof(float) * (size_t)E);
    sc_ctx_free(&ctx);
    free(px);
    sc_image_free(&img);
    sc_model_free(m);
}

/* The embedding of one text: the model's tokenizer, the text tower on a
 * batch of one at the text's own length (T = the whole row for CLIP). */
static void direct_text_embedding(const char *model_dir, const char *text, int whole_row, float *out, int64_t E)
{
    sc_model *m;
    sc_tokenizer *tok;
    sc_err err;
    ck_assert(sc_model_load(&m, model_dir, NULL, &err) == SC_OK);
    const sc_model_config *mc = sc_model_get_config(m);
    sc_tok_options opt = sc_tok_defaults();
    opt.max_length = (int)(mc->kind == SC_MODEL_CLIP ? mc->text.context : 32);
    ck_assert_msg(sc_tokenizer_load(&tok, model_dir, &opt, &err) == SC_OK, "%s", err.msg);
    int64_t ids[77], mask[77];
    int n;
    ck_assert(sc_tokenizer_encode(tok, text, strlen(text), ids, mask, &n, NULL, &err) == SC_OK);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_ctx_set_grad(&ctx, 0);
    sc_tensor *y;
    ck_assert_msg(sc_model_encode_text(m, &ctx, ids, NULL, 1, whole_row ? opt.max_length : n, &y, NULL, &err) == SC_OK,
                  "%s", err.msg);
    memcpy(out, y->data, sizeof(float) * (size_t)E);
    sc_ctx_free(&ctx);
    sc_tokenizer_free(tok);
    sc_model_free(m);
}

/* Every file of a equals the file of the same name in b, and b has no more. */
static void assert_same_dirs(const char *a, const char *b)
{
    DIR *d = opendir(a);
    ck_assert_ptr_nonnull(d);
    int n_a = 0, n_b = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char pa[600], pb[600];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        static uint8_t *da, *db;
        size_t la, lb;
        sc_err err;
        ck_assert_msg(sc_read_file(pa, 1 << 26, &da, &la, &err) == SC_OK, "%s", err.msg);
        ck_assert_msg(sc_read_file(pb, 1 << 26, &db, &lb, &err) == SC_OK, "%s", err.msg);
        ck_assert_msg(la == lb && !memcmp(da, db, la), "%s and %s differ", pa, pb);
        free(da), free(db);
        da = db = NULL;
        n_a++;
    }
    closedir(d);
    d = opendir(b);
    for (struct dirent *e; (e = readdir(d)) != NULL;) n_b += e->d_name[0] != '.';
    closedir(d);
    ck_assert_int_eq(n_a, n_b);
    ck_assert_int_eq(n_a, 10);
}

/* Entries of dir whose name starts with prefix. */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) n += !strncmp(e->d_name, prefix, strlen(prefix));
    if (d) closedir(d);
    return n;
}

/* ---- the round trip ---- */

START_TEST(test_round_trip)
{
    setup s;
    setup_padchest(&s);
    sc_dataset_options o = padchest_opts(&s);
    char out[400];
    snprintf(out, sizeof out, "%s/cache", s.root);
    embed_ok(s.model, &o, 2, 0, 1, out);
    sc_cache c;
    load_cache(&c, out);
    sc_dataset ds;
    sc_err err;
    ck_assert(sc_dataset_load(&ds, &o, &err) == SC_OK);
    /* counts: 12 prompts, 4 class prompts, 12 names, 4 class names,
     * "No finding.", 7 report sentences */
    ck_assert_int_eq(c.N, 5);
    ck_assert_int_eq(c.M, 12 + 4 + 12 + 4 + 1 + 7);
    ck_assert_int_eq(c.E, 32);
    ck_assert_int_eq(c.T, 32); /* BERT's 32 positions of the tiny model */
    ck_assert_int_eq(c.n_labels, 12);
    ck_assert_str_eq(c.model_kind, "medclip");
    ck_assert_str_eq(c.dataset_kind, "padchest-gr");
    ck_assert_msg(fabsf(c.logit_scale - expf(2.65926f)) < 1e-3f, "%g", (double)c.logit_scale);
    /* the table as read */
    ck_assert_mem_eq(c.image_labels, ds.labels, (size_t)(c.N * c.n_labels));
    ck_assert_mem_eq(c.split, ds.split, (size_t)c.N);
    for (int64_t i = 0; i < c.N; i++) {
        ck_assert_str_eq(c.image_id[i], ds.image_id[i]);
        ck_assert_int_eq(c.group[i], ds.group[i]);
    }
    /* texts: where each kind sits, and what it says */
    const sc_hier_task *t = &c.hier.tasks[0];
    for (int h = 0; h < 12; h++) {
        int64_t j = sc_cache_text_row(&c, SC_TEXT_PROMPT, 0, h, 0);
        ck_assert_int_eq(j, h);
        ck_assert_str_eq(c.text[j], t->combo_prompt[h]);
        ck_assert_int_eq(c.text_labels[j * 12 + h], 1);
    }
    ck_assert_str_eq(c.text[sc_cache_text_row(&c, SC_TEXT_CLASS, 0, 3, 0)], "pleural effusion.");
    ck_assert_str_eq(c.text[sc_cache_text_row(&c, SC_TEXT_NAME, 0, 8, 0)], "pleural effusion: left costophrenic angle");
    int64_t none = sc_cache_text_row(&c, SC_TEXT_NONE, -1, -1, 0);
    ck_assert_str_eq(c.text[none], "No finding.");
    ck_assert_int_eq(sc_cache_text_row(&c, SC_TEXT_ENSEMBLE, 0, 0, 0), -1);
    for (int64_t k = 0; k < ds.n_texts; k++) {
        int64_t j = none + 1 + k;
        ck_assert_int_eq(c.text_kind[j], SC_TEXT_SENTENCE);
        ck_assert_str_eq(c.text[j], ds.text[k]);
        ck_assert_int_eq(c.text_image[j], ds.text_image[k]);
        ck_assert_mem_eq(c.text_labels + j * 12, ds.text_labels + k * 12, 12);
    }
    /* token rows: [CLS] ... [SEP], then padding, as the mask says */
    ck_assert_int_eq(c.text_ids[0], 2);
    ck_assert_int_eq(c.text_ids[c.text_tokens[0] - 1], 3);
    ck_assert_int_eq(c.text_mask[c.text_tokens[0] - 1], 1);
    ck_assert_int_eq(c.text_mask[c.text_tokens[0]], 0);
    /* embeddings as computed directly (batch of one: the same to float
     * rounding, not necessarily to the bit) */
    float direct[32];
    for (int64_t i = 0; i < c.N; i++) {
        direct_image_embedding(s.model, ds.image_path[i], direct, 32);
        sc_check_close("image embedding", c.image_emb + i * 32, direct, 32, 1e-5, 1e-5);
    }
    for (int64_t j = 0; j < c.M; j += 7) {
        direct_text_embedding(s.model, c.text[j], 0, direct, 32);
        sc_check_close("text embedding", c.text_emb + j * 32, direct, 32, 1e-5, 1e-5);
    }
    /* the fingerprint holds the files' real SHA-256 */
    char path[512], hex[65];
    snprintf(path, sizeof path, "%s/model.safetensors", s.model);
    ck_assert(sc_sha256_file(path, hex, NULL, &err) == SC_OK);
    const sc_json *fp = sc_json_get(c.index.root, "fingerprint");
    ck_assert_str_eq(sc_json_get_string(fp, "model.file.model.safetensors", ""), hex);
    snprintf(path, sizeof path, "%s/master_table.csv", s.data);
    ck_assert(sc_sha256_file(path, hex, NULL, &err) == SC_OK);
    ck_assert_str_eq(sc_json_get_string(fp, "dataset.file.master_table.csv", ""), hex);
    /* and it matches what is there now */
    ck_assert_msg(sc_cache_check(&c, s.model, NULL, &o, &err) == SC_OK, "%s", err.msg);
    sc_dataset_free(&ds);
    sc_cache_free(&c);
    /* an existing output is never overwritten */
    sc_dataset ds2;
    ck_assert(sc_dataset_load(&ds2, &o, &err) == SC_OK);
    sc_embed_config cfg = sc_embed_defaults();
    cfg.model = s.model;
    ck_assert_int_eq(sc_embed(&cfg, &ds2, out, &err), SC_EARG);
    ck_assert_msg(strstr(err.msg, "already exists") != NULL, "%s", err.msg);
    sc_dataset_free(&ds2);
}
END_TEST

/* ---- a stale cache ---- */

static void assert_stale(const sc_cache *c, const char *model, const char *pipeline, const sc_dataset_options *o,
                         const char *key)
{
    sc_err err;
    ck_assert_int_eq(sc_cache_check(c, model, pipeline, o, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "stale cache") && strstr(err.msg, key), "%s", err.msg);
}

START_TEST(test_stale_cache_refused)
{
    setup s;
    setup_padchest(&s);
    sc_dataset_options o = padchest_opts(&s);
    char out[400], path[512];
    snprintf(out, sizeof out, "%s/cache", s.root);
    embed_ok(s.model, &o, 4, 0, 1, out);
    sc_cache c;
    load_cache(&c, out);
    sc_err err;
    ck_assert(sc_cache_check(&c, s.model, NULL, &o, &err) == SC_OK);
    /* options: another language, another pipeline */
    sc_dataset_options es = o;
    es.spanish = 1;
    assert_stale(&c, NULL, NULL, &es, "dataset.language was 'en' when embedded but is 'es' now");
    assert_stale(&c, s.model, "medclip-eval", NULL, "pipeline.");
    /* the hierarchy changed */
    char hier[512];
    snprintf(hier, sizeof hier, "%s/changed.hier", s.root);
    copy_file(sc_test_path("data/padchest-gr.hier"), s.root, "changed.hier");
    replace_in_file(hier, "none No finding.", "none Nothing abnormal.");
    sc_dataset_options h = o;
    h.hier = hier;
    assert_stale(&c, NULL, NULL, &h, "dataset.hierarchy");
    /* a dataset file changed */
    snprintf(path, sizeof path, "%s/master_table.csv", s.data);
    replace_in_file(path, "S9,img99.png,P9,train,normal", "S9,img99.png,P9,test,normal");
    assert_stale(&c, NULL, NULL, &o, "dataset.file.master_table.csv was '");
    ck_assert(sc_cache_check(&c, s.model, NULL, NULL, &err) == SC_OK); /* the model half still fits */
    /* the model file changed: one byte of a weight */
    snprintf(path, sizeof path, "%s/model.safetensors", s.model);
    static uint8_t *bytes;
    size_t len;
    ck_assert(sc_read_file(path, 1 << 24, &bytes, &len, &err) == SC_OK);
    bytes[len - 7] ^= 1;
    ck_assert(sc_write_file_atomic(path, bytes, len, &err) == SC_OK);
    free(bytes);
    bytes = NULL;
    assert_stale(&c, s.model, NULL, NULL, "model.file.model.safetensors was '");
    /* a tokenizer file gone */
    setup s2;
    setup_padchest(&s2);
    char out2[400];
    snprintf(out2, sizeof out2, "%s/cache", s2.root);
    sc_dataset_options o2 = padchest_opts(&s2);
    embed_ok(s2.model, &o2, 4, 0, 1, out2);
    sc_cache c2;
    load_cache(&c2, out2);
    snprintf(path, sizeof path, "%s/vocab.txt", s2.model);
    ck_assert_int_eq(unlink(path), 0);
    assert_stale(&c2, s2.model, NULL, NULL, "model.file.vocab.txt was '");
    assert_stale(&c2, s2.model, NULL, NULL, "but is '(none)' now");
    sc_cache_free(&c2);
    sc_cache_free(&c);
}
END_TEST

/* ---- broken runs and broken caches ---- */

/* A corrupt image half way: the error names it and nothing is left, not
 * even the temporary folder. */
START_TEST(test_failed_embed_leaves_nothing)
{
    setup s;
    setup_padchest(&s);
    put_file(s.data, "Padchest_GR_files/img07.png", "\x89PNG\r\n\x1a\n but cut short");
    sc_dataset_options o = padchest_opts(&s);
    sc_dataset ds;
    sc_err err;
    ck_assert(sc_dataset_load(&ds, &o, &err) == SC_OK); /* the reader only checks that files exist */
    sc_embed_config cfg = sc_embed_defaults();
    cfg.model = s.model;
    cfg.batch = 2;
    char out[400];
    snprintf(out, sizeof out, "%s/cache", s.root);
    ck_assert_int_ne(sc_embed(&cfg, &ds, out, &err), SC_OK);
    ck_assert_msg(strstr(err.msg, "img07.png") != NULL, "%s", err.msg);
    ck_assert_int_eq(count_entries(s.root, "cache"), 0);
    sc_dataset_free(&ds);
}
END_TEST

/* Every file of a cache is checked against index.json when it is loaded. */
START_TEST(test_cache_load_errors)
{
    static const struct {
        const char *file;
        int how; /* 0 remove, 1 a (4, 32) float32 array, 2 a label of 2, 3 replace text */
        const char *old, *new_, *message;
    } cases[] = {
        {"text_emb.npy", 0, NULL, NULL, "text_emb.npy: cannot open"},
        {"image_emb.npy", 1, NULL, NULL, "image_emb.npy: expected float32 (5, 32) as index.json says, found float32 with 2 dims"},
        {"image_labels.npy", 2, NULL, NULL, "image_labels.npy: entry 0 is 2, not 0 or 1"},
        {"index.json", 3, "\"images\": 5", "\"images\": 6", "index.json: not a whole cache (images 0..5 of 6)"},
        {"images.csv", 3, "row,id,", "row,name,", "images.csv:1: no column 'id'"},
        {"index.json", 3, "scale-embedding-cache", "something-else", "index.json: not the index of an embedding cache"},
        {"texts.csv", 3, "prompt,0,3,0", "prompt,0,12,0", "texts.csv:5: text 3: kind, task, index, variant, image or tokens do not fit"},
        {"index.json", 3, "\"dropped\": []", "\"dropped\": [\"x|y|z\"]", "index.json: dropped combination 'x|y|z' is not in hierarchy.hier"},
    };
    setup s;
    setup_padchest(&s);
    sc_dataset_options o = padchest_opts(&s);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char out[400], path[600];
        snprintf(out, sizeof out, "%s/cache%zu", s.root, k);
        embed_ok(s.model, &o, 4, 0, 1, out);
        snprintf(path, sizeof path, "%s/%s", out, cases[k].file);
        sc_err err;
        if (cases[k].how == 0) ck_assert_int_eq(unlink(path), 0);
        if (cases[k].how == 1) {
            float zeros[4 * 32] = {0};
            ck_assert(sc_npy_write_f32(path, zeros, 2, (int64_t[]){4, 32}, &err) == SC_OK);
        }
        if (cases[k].how == 2) {
            uint8_t bad[5 * 12] = {2};
            sc_array a = {SC_DT_U8, 2, {5, 12}, bad, sizeof bad};
            ck_assert(sc_npy_write(path, &a, &err) == SC_OK);
        }
        if (cases[k].how == 3) replace_in_file(path, cases[k].old, cases[k].new_);
        sc_cache c;
        ck_assert_int_ne(sc_cache_load(&c, out, &err), SC_OK);
        ck_assert_msg(strstr(err.msg, cases[k].message) != NULL, "case %zu: %s", k, err.msg);
    }
}
END_TEST

/* ---- shards ---- */

START_TEST(test_shards_merge_like_one_run)
{
    setup s;
    setup_padchest(&s);
    sc_dataset_options o = padchest_opts(&s);
    char whole[400], merged[400], merged2[400], shard[3][400], two[2][400];
    snprintf(whole, sizeof whole, "%s/whole", s.root);
    embed_ok(s.model, &o, 2, 0, 1, whole);
    for (int k = 0; k < 3; k++) {
        snprintf(shard[k], sizeof shard[k], "%s/shard%d", s.root, k);
        embed_ok(s.model, &o, 2, k, 3, shard[k]);
    }
    /* shard 0 holds batch 0 (images 0, 1) and the texts; shard 2 batch 2 */
    sc_cache c;
    sc_err err;
    ck_assert_int_eq(sc_cache_load(&c, shard[1], &err), SC_EARG);
    ck_assert_msg(strstr(err.msg, "shard 1 of 3; join the shards with 'scale embed --merge' first"), "%s", err.msg);
    /* joined in any order: byte for byte the whole run */
    const char *order[3] = {shard[2], shard[0], shard[1]};
    snprintf(merged, sizeof merged, "%s/merged", s.root);
    ck_assert_msg(sc_cache_merge(merged, order, 3, &err) == SC_OK, "%s", err.msg);
    assert_same_dirs(whole, merged);
    /* two shards of the same run: batches 0 and 1-2 */
    for (int k = 0; k < 2; k++) {
        snprintf(two[k], sizeof two[k], "%s/two%d", s.root, k);
        embed_ok(s.model, &o, 2, k, 2, two[k]);
    }
    const char *pair[2] = {two[0], two[1]};
    snprintf(merged2, sizeof merged2, "%s/merged2", s.root);
    ck_assert_msg(sc_cache_merge(merged2, pair, 2, &err) == SC_OK, "%s", err.msg);
    assert_same_dirs(whole, merged2);
    load_cache(&c, merged2);
    ck_assert_int_eq(c.N, 5);
    sc_cache_free(&c);

    /* shards that do not belong together */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/bad", s.root);
    const char *missing[2] = {shard[0], shard[1]};
    ck_assert_int_eq(sc_cache_merge(bad, missing, 2, &err), SC_EARG);
    ck_assert_msg(strstr(err.msg, "is shard 0 of 3, but 2 shards were given"), "%s", err.msg);
    const char *twice[3] = {shard[0], shard[1], shard[1]};
    ck_assert_int_eq(sc_cache_merge(bad, twice, 3, &err), SC_EARG);
    ck_assert_msg(strstr(err.msg, "are both shard 1"), "%s", err.msg);
    char other[400];
    snprintf(other, sizeof other, "%s/other1", s.root);
    embed_ok(s.model, &o, 1, 1, 3, other); /* batch 1: another run */
    const char *mixed[3] = {shard[0], other, shard[2]};
    ck_assert_int_eq(sc_cache_merge(bad, mixed, 3, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "are not shards of one run"), "%s", err.msg);
    ck_assert_int_eq(sc_cache_merge(merged, order, 3, &err), SC_EARG); /* exists */
    ck_assert_int_eq(access(bad, F_OK), -1);
}
END_TEST

/* ---- CLIP on Derm7p: every kind of prompt ---- */

START_TEST(test_clip_derm7p)
{
    char root[256], model[300], data[300], out[300];
    snprintf(root, sizeof root, "%s", sc_test_tmpdir());
    snprintf(model, sizeof model, "%s/model", root);
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(out, sizeof out, "%s/cache", root);
    mkdir(model, 0777);
    mkdir(data, 0777);
    make_clip_model(model);
    derm7p_fixture(data);
    sc_dataset_options o = sc_dataset_defaults();
    o.path = data;
    o.hier = sc_test_path("data/derm7p.hier");
    embed_ok(model, &o, 5, 0, 1, out);
    sc_cache c;
    load_cache(&c, out);
    ck_assert_int_eq(c.N, DERM_ROWS);
    ck_assert_int_eq(c.T, 16); /* the tiny text tower's 16 positions */
    ck_assert_str_eq(c.model_kind, "clip");
    /* 28 combinations and 14 classes over 7 tasks; 2 ensemble templates,
     * 1 class template, 2 references */
    static const int want[SC_N_TEXT_KINDS] = {28, 56, 14, 28, 14, 1, 2, 0};
    int per_kind[SC_N_TEXT_KINDS] = {0};
    for (int64_t j = 0; j < c.M; j++) per_kind[c.text_kind[j]]++;
    ck_assert_mem_eq(per_kind, want, sizeof want);
    int64_t j = sc_cache_text_row(&c, SC_TEXT_ENSEMBLE, 3, 1, 1); /* regression structures, its own ensemble */
    ck_assert_str_eq(c.text[j], "This is dermoscopy of regression structures showing blue areas.");
    j = sc_cache_text_row(&c, SC_TEXT_CLASS, 2, 1, 0);
    ck_assert_str_eq(c.text[j], "A photo of a skin lesion with pigmentation indicating a melanoma.");
    ck_assert_str_eq(c.text[sc_cache_text_row(&c, SC_TEXT_REFERENCE, -1, 1, 0)], "This is dermoscopy");
    ck_assert_str_eq(c.text[sc_cache_text_row(&c, SC_TEXT_CLASS_NAME, 5, 0, 0)], "nevus");
    /* labels of a class prompt: every combination of the class */
    ck_assert_int_eq(c.text_labels[j * c.n_labels + c.label_offset[2] + 3], 1);
    ck_assert_int_eq(c.text_labels[j * c.n_labels + c.label_offset[2] + 4], 1);
    ck_assert_int_eq(c.text_labels[j * c.n_labels + c.label_offset[2] + 0], 0);
    /* most prompts are longer than 16 tokens: cut, ending with EOT (514) */
    ck_assert_int_eq(c.text_tokens[0], 16);
    ck_assert_int_eq(c.text_ids[15], 514);
    const sc_json *info = sc_json_get(c.index.root, "info");
    ck_assert_int_gt(atoi(sc_json_get_string(info, "texts.truncated", "0")), 100);
    float direct[32];
    sc_dataset ds;
    sc_err err;
    ck_assert(sc_dataset_load(&ds, &o, &err) == SC_OK);
    direct_image_embedding(model, ds.image_path[7], direct, 32);
    sc_check_close("image embedding", c.image_emb + 7 * 32, direct, 32, 1e-5, 1e-5);
    direct_text_embedding(model, c.text[40], 1, direct, 32);
    sc_check_close("text embedding", c.text_emb + 40 * 32, direct, 32, 1e-5, 1e-5);
    sc_dataset_free(&ds);
    sc_cache_free(&c);
}
END_TEST

/* ---- the synthetic look-alikes, end to end ---- */

/* scale synth's PadChest-GR through the reader and the MedCLIP test model,
 * and its Derm7p through the CLIP one: every image and label arrives. */
START_TEST(test_synthetic_end_to_end)
{
    setup s;
    setup_padchest(&s); /* for the model; the data folder is replaced */
    char data[400], out[400];
    snprintf(data, sizeof data, "%s/synthetic", s.root);
    sc_synth_padchest_options po;
    sc_synth_padchest_defaults(&po);
    po.n = 60;
    po.size = 48;
    sc_err err;
    ck_assert_msg(sc_synth_padchest_gr(data, &po, &err) == SC_OK, "%s", err.msg);
    sc_dataset_options o = padchest_opts(&s);
    o.path = data;
    sc_dataset ds;
    ck_assert_msg(sc_dataset_load(&ds, &o, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_gt(ds.n_images, 30);
    ck_assert_int_ge(ds.n_texts, ds.n_images);
    snprintf(out, sizeof out, "%s/pgr", s.root);
    embed_ok(s.model, &o, 8, 0, 1, out);
    sc_cache c;
    load_cache(&c, out);
    ck_assert_int_eq(c.N, ds.n_images);
    ck_assert_mem_eq(c.image_labels, ds.labels, (size_t)(c.N * 12));
    sc_cache_free(&c);
    sc_dataset_free(&ds);

    char model[400];
    snprintf(model, sizeof model, "%s/clip", s.root);
    mkdir(model, 0777);
    make_clip_model(model);
    snprintf(data, sizeof data, "%s/derm", s.root);
    sc_synth_derm7p_options dopt;
    sc_synth_derm7p_defaults(&dopt);
    dopt.n = 40;
    dopt.size = 32;
    ck_assert_msg(sc_synth_derm7p(data, &dopt, &err) == SC_OK, "%s", err.msg);
    sc_dataset_options d = sc_dataset_defaults();
    d.path = data;
    d.hier = sc_test_path("data/derm7p.hier");
    snprintf(out, sizeof out, "%s/d7", s.root);
    embed_ok(model, &d, 16, 0, 1, out);
    load_cache(&c, out);
    ck_assert_int_eq(c.N, 40);
    for (int64_t i = 0; i < c.N; i++) {
        int ones = 0;
        for (int k = 0; k < c.n_labels; k++) ones += c.image_labels[i * c.n_labels + k];
        ck_assert_int_eq(ones, 7);
    }
    sc_cache_free(&c);
}
END_TEST

/* ---- scale embed, run as a program ---- */

static int output_has(const char *dir, const char *stream, const char *text)
{
    char path[512];
    static uint8_t *data;
    size_t len;
    sc_err err;
    snprintf(path, sizeof path, "%s/%s", dir, stream);
    ck_assert(sc_read_file(path, 1 << 20, &data, &len, &err) == SC_OK);
    int found = strstr((char *)data, text) != NULL;
    free(data);
    data = NULL;
    return found;
}

START_TEST(test_cli_embed)
{
    setup s;
    setup_padchest(&s);
    char args[3000], common[1500];
    snprintf(common, sizeof common, "--model %s --dataset padchest-gr:%s --hier %s --min-cases 0 --batch 2", s.model,
             s.data, sc_test_path("data/padchest-gr.hier"));
    snprintf(args, sizeof args, "embed %s --out %s/cache --quiet", common, s.root);
    ck_assert_int_eq(sc_test_run_scale(s.root, args), 0);
    ck_assert(output_has(s.root, "stdout", "cache: shard 0 of 1 of a dataset of 5 images"));
    /* shards on the command line, as a Slurm array would run them */
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof args, "embed %s --shard %d/2 --out %s/part%d", common, k, s.root, k);
        ck_assert_int_eq(sc_test_run_scale(s.root, args), 0);
        ck_assert(output_has(s.root, "stderr", "images: ")); /* progress lines, not a terminal */
    }
    snprintf(args, sizeof args, "embed --merge %s/joined %s/part1 %s/part0", s.root, s.root, s.root);
    ck_assert_int_eq(sc_test_run_scale(s.root, args), 0);
    char whole[400], joined[400];
    snprintf(whole, sizeof whole, "%s/cache", s.root);
    snprintf(joined, sizeof joined, "%s/joined", s.root);
    assert_same_dirs(whole, joined);
    /* the cache command: fresh, then stale after the model changes */
    snprintf(args, sizeof args, "cache %s/cache --model %s --dataset padchest-gr:%s --min-cases 0", s.root, s.model,
             s.data);
    ck_assert_int_eq(sc_test_run_scale(s.root, args), 0);
    ck_assert(output_has(s.root, "stdout", "fingerprint matches the model and the dataset"));
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", s.model);
    replace_in_file(path, "\"hidden_act\": \"gelu\"", "\"hidden_act\":  \"gelu\"");
    ck_assert_int_eq(sc_test_run_scale(s.root, args), 1);
    ck_assert(output_has(s.root, "stderr", "stale cache: model.file.config.json"));
    /* usage errors */
    snprintf(args, sizeof args, "embed %s --shard 2/2 --out %s/x", common, s.root);
    ck_assert_int_eq(sc_test_run_scale(s.root, args), 2);
    snprintf(args, sizeof args, "embed --dataset padchest-gr:%s --out %s/x", s.data, s.root);
    ck_assert_int_eq(sc_test_run_scale(s.root, args), 2);
    /* a broken image half way: exit 1, the file named, nothing left */
    snprintf(path, sizeof path, "%s/Padchest_GR_files/img06.png", s.data);
    put_file(s.data, "Padchest_GR_files/img06.png", "\x89PNG\r\n\x1a\n but cut short");
    snprintf(args, sizeof args, "embed %s --out %s/broken", common, s.root);
    ck_assert_int_eq(sc_test_run_scale(s.root, args), 1);
    ck_assert(output_has(s.root, "stderr", "img06.png"));
    ck_assert_int_eq(count_entries(s.root, "broken"), 0);
}
END_TEST

/* An image replaced under its own name: the label files and the
 * hierarchy are as they were, so the fingerprint agrees, and only the
 * SHA-256 that images.csv records for each image can tell. */
START_TEST(test_stale_image_refused)
{
    setup s;
    setup_padchest(&s);
    sc_dataset_options o = padchest_opts(&s);
    char out[400], args[2000];
    snprintf(out, sizeof out, "%s/cache", s.root);
    embed_ok(s.model, &o, 4, 0, 1, out);
    sc_cache c;
    load_cache(&c, out);
    sc_err err;
    ck_assert_msg(sc_cache_check(&c, s.model, NULL, &o, &err) == SC_OK, "%s", err.msg);
    /* the fixture's img01.png is 44 x 48, 8-bit grey, drawn with seed 301 */
    put_png(s.data, "Padchest_GR_files/img01.png", 44, 48, 1, 8, 302);
    ck_assert(sc_cache_check(&c, s.model, NULL, NULL, &err) == SC_OK); /* the model half still fits */
    ck_assert_int_eq(sc_cache_check(&c, NULL, NULL, &o, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "stale cache: image file ") && strstr(err.msg, "img01.png has changed"), "%s",
                  err.msg);
    /* through the binary: exit 1 and the file named */
    snprintf(args, sizeof args, "cache %s --dataset padchest-gr:%s --min-cases 0", out, s.data);
    ck_assert_int_eq(sc_test_run_scale(s.root, args), 1);
    ck_assert(output_has(s.root, "stderr", "img01.png has changed since it was embedded"));
    /* the image put back: fresh again */
    put_png(s.data, "Padchest_GR_files/img01.png", 44, 48, 1, 8, 301);
    ck_assert_msg(sc_cache_check(&c, s.model, NULL, &o, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(sc_test_run_scale(s.root, args), 0);
    /* an image gone: refused, the file named */
    snprintf(args, sizeof args, "%s/Padchest_GR_files/img01.png", s.data);
    ck_assert_int_eq(unlink(args), 0);
    ck_assert_int_ne(sc_cache_check(&c, NULL, NULL, &o, &err), SC_OK);
    ck_assert_msg(strstr(err.msg, "img01.png"), "%s", err.msg);
    sc_cache_free(&c);
}
END_TEST

Suite *suite_cache(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("cache");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_stale_cache_refused);
    tcase_add_test(tc, test_failed_embed_leaves_nothing);
    tcase_add_test(tc, test_cache_load_errors);
    tcase_add_test(tc, test_shards_merge_like_one_run);
    tcase_add_test(tc, test_clip_derm7p);
    tcase_add_test(tc, test_cli_embed);
    tcase_add_test(tc, test_stale_image_refused);
    suite_add_tcase(s, tc);
    TCase *synth = tcase_create("cache_synthetic");
    tcase_set_timeout(synth, 60);
    tcase_set_tags(synth, "slow");
    tcase_add_test(synth, test_synthetic_end_to_end);
    suite_add_tcase(s, synth);
    return s;
}
