/* scale.c — the library's plumbing and the `scale` command.
 *
 * Contents
 *   1. Status strings, version, error sentences, assertions
 *   2. Overflow-checked sizes
 *   3. Arenas
 *   4. Random numbers (xorshift64*)
 *   5. The `scale` command
 *      5a. argument helpers
 *      5b. commands: inputs (decode, preprocess, tokenize)
 *      5c. commands: models (encode, embed)
 *      5d. commands: SCALE (loss, metrics, train, predict)
 *      5e. commands: experiments, synthetic data, demo
 *      5f. the command table and main
 *
 * The command-line `main` sits behind `#ifndef SC_NO_MAIN` so the test
 * runner can link this file without it.
 */
#define _POSIX_C_SOURCE 200809L
#include "scale.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ======================================================================== */
/* 1. Status strings, version, error sentences, assertions                   */
/* ======================================================================== */

const char *sc_strerror(sc_status code)
{
    switch (code) {
    case SC_OK: return "success";
    case SC_ENOMEM: return "out of memory or over a size limit";
    case SC_EIO: return "input/output error";
    case SC_EFORMAT: return "malformed file";
    case SC_ESHAPE: return "shape mismatch";
    case SC_ERANGE: return "value out of range";
    case SC_EUNSUPPORTED: return "unsupported input";
    case SC_EARG: return "bad argument";
    }
    return "unknown error";
}

#define SC_STR2(x) #x
#define SC_STR(x) SC_STR2(x)
const char *sc_version(void)
{
    return SC_STR(SC_VERSION_MAJOR) "." SC_STR(SC_VERSION_MINOR) "." SC_STR(SC_VERSION_PATCH);
}

sc_status sc_fail(sc_err *err, sc_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void sc__assert_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: internal error: assertion `%s' failed: ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* ======================================================================== */
/* 2. Overflow-checked sizes                                                 */
/* ======================================================================== */

int sc_mul_ok(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int sc_add_ok(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

/* ======================================================================== */
/* 3. Arenas                                                                 */
/* ======================================================================== */

/* Blocks form a singly linked list in allocation order. `cur` is the block
 * being filled; blocks after it are empty spares kept from before a rewind. */
struct sc_arena_block {
    sc_arena_block *next;
    size_t size;    /* usable bytes after the header */
    size_t offset;  /* bytes used in this block */
    unsigned char *mem;
};

#define SC_ARENA_ALIGN 64

void sc_arena_init(sc_arena *a, const char *name, size_t block_size, size_t limit)
{
    memset(a, 0, sizeof *a);
    a->block_size = block_size ? block_size : ((size_t)64 << 20);
    a->limit = limit;
    a->name = name ? name : "arena";
}

static sc_arena_block *arena_block_new(size_t size)
{
    sc_arena_block *b = malloc(sizeof *b);
    if (!b) return NULL;
    size_t bytes;
    if (!sc_add_ok(size, SC_ARENA_ALIGN, &bytes)) { free(b); return NULL; }
    b->mem = malloc(bytes);
    if (!b->mem) { free(b); return NULL; }
    b->next = NULL;
    b->size = size;
    b->offset = 0;
    return b;
}

static size_t align_up(uintptr_t p)
{
    return (size_t)((SC_ARENA_ALIGN - (p % SC_ARENA_ALIGN)) % SC_ARENA_ALIGN);
}

/* Try to place `bytes` in block b; returns the pointer or NULL. */
static void *block_take(sc_arena_block *b, size_t bytes)
{
    uintptr_t base = (uintptr_t)(b->mem + b->offset);
    size_t pad = align_up(base);
    if (b->offset + pad > b->size || bytes > b->size - b->offset - pad) return NULL;
    void *p = b->mem + b->offset + pad;
    b->offset += pad + bytes;
    return p;
}

void *sc_arena_alloc(sc_arena *a, size_t bytes)
{
    if (bytes == 0) bytes = 1;
    size_t need;
    if (!sc_add_ok(bytes, SC_ARENA_ALIGN, &need)) return NULL;
    if (a->limit && (need > a->limit || a->used > a->limit - need)) return NULL;
    void *p = a->cur ? block_take(a->cur, bytes) : NULL;
    /* Move on through spare blocks kept from earlier rewinds. */
    while (!p && a->cur && a->cur->next) {
        a->cur = a->cur->next;
        a->cur->offset = 0;
        p = block_take(a->cur, bytes);
    }
    if (!p) {
        size_t size = need > a->block_size ? need : a->block_size;
        sc_arena_block *b = arena_block_new(size);
        if (!b) return NULL;
        a->reserved += size;
        /* Insert after cur so that spares keep their order. */
        if (!a->cur) {
            b->next = a->first;
            a->first = b;
        } else {
            b->next = a->cur->next;
            a->cur->next = b;
        }
        a->cur = b;
        p = block_take(b, bytes);
        SC_ASSERT(p != NULL, "fresh arena block too small");
    }
    a->used += need;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

void *sc_arena_calloc(sc_arena *a, size_t count, size_t size)
{
    size_t bytes;
    if (!sc_mul_ok(count, size, &bytes)) return NULL;
    void *p = sc_arena_alloc(a, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

sc_arena_mark sc_arena_get_mark(const sc_arena *a)
{
    sc_arena_mark m;
    m.block = a->cur;
    m.offset = a->cur ? a->cur->offset : 0;
    m.used = a->used;
    return m;
}

void sc_arena_rewind(sc_arena *a, sc_arena_mark m)
{
    if (!m.block) {
        /* Mark taken before the first allocation: everything goes. */
        sc_arena_reset(a);
        return;
    }
    a->cur = m.block;
    a->cur->offset = m.offset;
    a->used = m.used;
}

void sc_arena_reset(sc_arena *a)
{
    a->cur = a->first;
    if (a->cur) a->cur->offset = 0;
    a->used = 0;
}

void sc_arena_free(sc_arena *a)
{
    sc_arena_block *b = a->first;
    while (b) {
        sc_arena_block *next = b->next;
        free(b->mem);
        free(b);
        b = next;
    }
    a->first = a->cur = NULL;
    a->reserved = a->used = 0;
}

/* ======================================================================== */
/* 4. Random numbers (xorshift64*)                                           */
/* ======================================================================== */

void sc_rng_seed(sc_rng *r, uint64_t seed)
{
    /* splitmix64 of the seed, so that small seeds give unrelated streams
     * and the state is never zero. */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    r->state = z ? z : 0x2545F4914F6CDD1Dull;
}

uint32_t sc_rng_u32(sc_rng *r)
{
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return (uint32_t)((r->state * 0x2545F4914F6CDD1Dull) >> 32);
}

float sc_rng_uniform(sc_rng *r)
{
    return (float)(sc_rng_u32(r) >> 8) / 16777216.0f;
}

float sc_rng_normal(sc_rng *r)
{
    /* Box–Muller; u1 is kept away from 0 so log() stays finite. */
    double u1 = ((double)(sc_rng_u32(r) >> 8) + 1.0) / 16777217.0;
    double u2 = (double)(sc_rng_u32(r) >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t sc_rng_below(sc_rng *r, uint32_t n)
{
    /* Rejection sampling removes the modulo bias. */
    uint32_t limit = UINT32_MAX - UINT32_MAX % n;
    uint32_t x;
    do x = sc_rng_u32(r); while (x >= limit);
    return x % n;
}

void sc_rng_shuffle(sc_rng *r, int *items, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)sc_rng_below(r, (uint32_t)i + 1);
        int t = items[i];
        items[i] = items[j];
        items[j] = t;
    }
}

/* ======================================================================== */
/* 5. The `scale` command                                                    */
/* ======================================================================== */
#ifndef SC_NO_MAIN

/* ---- 5a. Argument helpers ----------------------------------------------
 * Each command walks its arguments with these:
 *
 *     cli c = cli_begin("loss", argc, argv);
 *     while (cli_next(&c)) {
 *         if (cli_is(&c, "--tau")) tau = cli_float(&c);
 *         else if (cli_is(&c, "--sim")) sim = cli_str(&c);
 *         else if (!cli_positional(&c, &paths)) return cli_unknown(&c);
 *     }
 *     if (c.bad) return 2;
 *
 * A missing or malformed value prints one line naming the option and sets
 * c.bad; commands exit with status 2 for usage errors and 1 for failures. */
typedef struct {
    const char *cmd;
    int argc;
    char **argv;
    int i;        /* index of the current argument */
    int bad;      /* a usage error was reported */
} cli;

static inline cli cli_begin(const char *cmd, int argc, char **argv)
{
    cli c = {cmd, argc, argv, 0, 0};
    return c;
}

/* Advance to the next argument; 0 when none are left. */
static inline int cli_next(cli *c)
{
    c->i++;
    return !c->bad && c->i < c->argc;
}

static inline int cli_is(const cli *c, const char *name)
{
    return strcmp(c->argv[c->i], name) == 0;
}

static const char *cli_str(cli *c)
{
    if (c->i + 1 >= c->argc) {
        fprintf(stderr, "scale %s: option %s needs a value\n", c->cmd, c->argv[c->i]);
        c->bad = 1;
        return NULL;
    }
    c->i++;
    return c->argv[c->i];
}

static inline double cli_double(cli *c)
{
    const char *opt = c->argv[c->i];
    const char *v = cli_str(c);
    if (!v) return 0;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end) {
        fprintf(stderr, "scale %s: option %s needs a number, not '%s'\n", c->cmd, opt, v);
        c->bad = 1;
    }
    return x;
}

static inline float cli_float(cli *c)
{
    return (float)cli_double(c);
}

static inline long cli_long(cli *c)
{
    const char *opt = c->argv[c->i];
    const char *v = cli_str(c);
    if (!v) return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end) {
        fprintf(stderr, "scale %s: option %s needs an integer, not '%s'\n", c->cmd, opt, v);
        c->bad = 1;
    }
    return x;
}

/* An argument not starting with "--" is positional: store it in the list
 * (up to max) and return 1; otherwise return 0. */
static inline int cli_positional(cli *c, const char **list, int *n, int max)
{
    const char *a = c->argv[c->i];
    if (a[0] == '-' && a[1] == '-') return 0;
    if (*n >= max) {
        fprintf(stderr, "scale %s: too many arguments (at most %d)\n", c->cmd, max);
        c->bad = 1;
        return 1;
    }
    list[(*n)++] = a;
    return 1;
}

static inline int cli_unknown(cli *c)
{
    fprintf(stderr, "scale %s: unknown option '%s' (try 'scale %s --help')\n", c->cmd, c->argv[c->i], c->cmd);
    return 2;
}

/* Print an sc_err for a failed library call and return exit status 1. */
static inline int cli_fail(const cli *c, const sc_err *err)
{
    fprintf(stderr, "scale %s: %s\n", c->cmd, err->msg);
    return 1;
}

/* ---- 5b. Commands: inputs (decode, preprocess, tokenize) ---------------- */

/* ---- 5c. Commands: models (encode, embed) -------------------------------- */

/* `scale encode` computes everything in memory first and writes the files
 * last, so a failure anywhere leaves no output behind. */
#define ENCODE_MAX_OUTPUTS 256

typedef struct {
    char name[SC_NAME_MAX];
    float *data;
    int ndim;
    int64_t shape[SC_MAX_DIMS];
} encode_output;

typedef struct {
    encode_output items[ENCODE_MAX_OUTPUTS];
    int n;
    int overflow;
} encode_outputs;

static void outputs_add(encode_outputs *o, const sc_tensor *t, const char *name)
{
    if (o->n == ENCODE_MAX_OUTPUTS) {
        o->overflow = 1;
        return;
    }
    encode_output *e = &o->items[o->n];
    size_t bytes = sizeof(float) * (size_t)sc_numel(t);
    e->data = malloc(bytes ? bytes : 1);
    if (!e->data) {
        o->overflow = 1;
        return;
    }
    memcpy(e->data, t->data, bytes);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = t->ndim;
    memcpy(e->shape, t->shape, sizeof e->shape);
    o->n++;
}

static void outputs_tap(void *user, const sc_tensor *t)
{
    outputs_add(user, t, t->name);
}

static void outputs_free(encode_outputs *o)
{
    for (int i = 0; i < o->n; i++) free(o->items[i].data);
    o->n = 0;
}

/* Write every output as DIR/NAME.npy; on failure remove what was written
 * (and DIR when this run created it). */
static sc_status outputs_write(const encode_outputs *o, const char *dir, sc_err *err)
{
    int made = mkdir(dir, 0777) == 0;
    if (!made && errno != EEXIST) return sc_fail(err, SC_EIO, "%s: cannot create directory: %s", dir, strerror(errno));
    char path[4096];
    for (int i = 0; i < o->n; i++) {
        const encode_output *e = &o->items[i];
        snprintf(path, sizeof path, "%s/%s.npy", dir, e->name);
        sc_status st = sc_npy_write_f32(path, e->data, e->ndim, e->shape, err);
        if (st == SC_OK) continue;
        for (int k = 0; k < i; k++) {
            snprintf(path, sizeof path, "%s/%s.npy", dir, o->items[k].name);
            unlink(path);
        }
        if (made) rmdir(dir);
        return st;
    }
    return SC_OK;
}

/* A 2-D int64 .npy (token ids, attention mask). */
static sc_status read_ids(const char *path, int64_t **out, int64_t *B, int64_t *T, sc_err *err)
{
    sc_array a;
    sc_status st = sc_npy_read(path, &a, err);
    if (st) return st;
    if (a.ndim != 2 || a.shape[0] < 1 || a.shape[1] < 1)
        st = sc_fail(err, SC_ESHAPE, "%s: expected a (B, T) array, got %d dims", path, a.ndim);
    else
        st = sc_array_to_i64(&a, out, err);
    *B = a.ndim == 2 ? a.shape[0] : 0;
    *T = a.ndim == 2 ? a.shape[1] : 0;
    sc_array_free(&a);
    return st;
}

typedef struct {
    const char *model, *config, *pixels, *ids, *mask, *out;
    int dump;
    long batch;
} encode_args;

/* Images in batches of `batch` (all at once when dumping intermediates). */
static sc_status encode_images(sc_model *m, sc_ctx *ctx, const encode_args *a, encode_outputs *o, sc_tensor **all,
                               sc_err *err)
{
    sc_array arr;
    sc_status st = sc_npy_read(a->pixels, &arr, err);
    if (st) return st;
    float *px = NULL;
    if (arr.ndim != 4) st = sc_fail(err, SC_ESHAPE, "%s: expected (B, C, H, W) images, got %d dims", a->pixels, arr.ndim);
    if (!st) st = sc_array_to_f32(&arr, &px, err);
    int64_t B = arr.ndim == 4 ? arr.shape[0] : 0, per = B ? sc_array_numel(&arr) / B : 0;
    int64_t E = sc_model_get_config(m)->embed_dim, step = a->dump ? B : a->batch;
    sc_tensor *embeds = st ? NULL : sc_tensor_new(&ctx->act, 2, (int64_t[]){B, E}, "image_embeds");
    sc_taps taps = {outputs_tap, o};
    for (int64_t b0 = 0; !st && b0 < B; b0 += step) {
        int64_t n = B - b0 < step ? B - b0 : step;
        sc_arena_mark mark = sc_arena_get_mark(&ctx->act);
        int64_t shape[4] = {n, arr.shape[1], arr.shape[2], arr.shape[3]};
        sc_tensor *x = sc_tensor_wrap(&ctx->act, px + b0 * per, 4, shape, "pixel_values"), *y;
        st = sc_model_encode_image(m, ctx, x, &y, a->dump ? &taps : NULL, err);
        if (!st) memcpy(embeds->data + b0 * E, y->data, sizeof(float) * (size_t)(n * E));
        sc_arena_rewind(&ctx->act, mark);
    }
    if (st && err->msg[0] && !strstr(err->msg, a->pixels)) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        sc_fail(err, st, "%s: %s", a->pixels, msg);
    }
    if (!st) outputs_add(o, embeds, "image_embeds");
    free(px);
    sc_array_free(&arr);
    *all = embeds;
    return st;
}

static sc_status encode_texts(sc_model *m, sc_ctx *ctx, const encode_args *a, encode_outputs *o, sc_tensor **all,
                              sc_err *err)
{
    int64_t *ids = NULL, *mask = NULL, B = 0, T = 0, Bm, Tm;
    sc_status st = read_ids(a->ids, &ids, &B, &T, err);
    if (!st && a->mask) {
        st = read_ids(a->mask, &mask, &Bm, &Tm, err);
        if (!st && (Bm != B || Tm != T))
            st = sc_fail(err, SC_ESHAPE, "%s: mask is (%lld, %lld) but the ids are (%lld, %lld)", a->mask,
                         (long long)Bm, (long long)Tm, (long long)B, (long long)T);
    }
    int64_t E = sc_model_get_config(m)->embed_dim, step = a->dump ? B : a->batch;
    sc_tensor *embeds = st ? NULL : sc_tensor_new(&ctx->act, 2, (int64_t[]){B, E}, "text_embeds");
    sc_taps taps = {outputs_tap, o};
    for (int64_t b0 = 0; !st && b0 < B; b0 += step) {
        int64_t n = B - b0 < step ? B - b0 : step;
        sc_arena_mark mark = sc_arena_get_mark(&ctx->act);
        sc_tensor *y;
        st = sc_model_encode_text(m, ctx, ids + b0 * T, mask ? mask + b0 * T : NULL, n, T, &y,
                                  a->dump ? &taps : NULL, err);
        if (!st) memcpy(embeds->data + b0 * E, y->data, sizeof(float) * (size_t)(n * E));
        sc_arena_rewind(&ctx->act, mark);
    }
    if (st && err->msg[0] && !strstr(err->msg, a->ids) && !(a->mask && strstr(err->msg, a->mask))) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        sc_fail(err, st, "%s: %s", a->ids, msg);
    }
    if (!st) outputs_add(o, embeds, "text_embeds");
    free(ids);
    free(mask);
    *all = embeds;
    return st;
}

/* The extra outputs of --dump-intermediates: normalised embeddings, the
 * logits (named as each fixture names them) and the raw logit scale. */
static void encode_dump_extras(sc_model *m, sc_ctx *ctx, sc_tensor *img, sc_tensor *txt, encode_outputs *o)
{
    float raw = sc_model_logit_scale_raw(m);
    sc_tensor *scale = sc_tensor_wrap(&ctx->act, &raw, 1, (int64_t[]){1}, "logit_scale");
    outputs_add(o, scale, "logit_scale");
    if (img) outputs_add(o, sc_l2_normalize(ctx, img), "image_embeds_norm");
    if (txt) outputs_add(o, sc_l2_normalize(ctx, txt), "text_embeds_norm");
    if (img && txt)
        outputs_add(o, sc_model_logits(ctx, m, img, txt),
                    sc_model_get_config(m)->kind == SC_MODEL_CLIP ? "logits_per_image" : "logits");
}

static int encode_usage(void)
{
    printf("usage: scale encode --model PATH [--config FILE] [--pixel-values X.npy]\n"
           "                    [--input-ids I.npy [--attention-mask M.npy]] --out DIR\n"
           "                    [--dump-intermediates] [--batch N] [--threads N]\n\n"
           "Embed images and/or texts with a CLIP or MedCLIP model (a Hugging Face\n"
           "directory, or a .safetensors/.pt/.bin file; --config supplies what the\n"
           "tensor shapes cannot tell). Writes DIR/image_embeds.npy and\n"
           "DIR/text_embeds.npy (float32, projected, not normalised); with\n"
           "--dump-intermediates also every named intermediate (vision_layer0.npy,\n"
           "swin_stage1.npy, bert_hidden_states.npy, ...), the normalised embeddings,\n"
           "the logits and logit_scale.npy.\n");
    return 0;
}

static int cmd_encode(int argc, char **argv)
{
    encode_args a = {NULL, NULL, NULL, NULL, NULL, NULL, 0, 16};
    long threads = 0;
    cli c = cli_begin("encode", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--help")) return encode_usage();
        else if (cli_is(&c, "--model")) a.model = cli_str(&c);
        else if (cli_is(&c, "--config")) a.config = cli_str(&c);
        else if (cli_is(&c, "--pixel-values")) a.pixels = cli_str(&c);
        else if (cli_is(&c, "--input-ids")) a.ids = cli_str(&c);
        else if (cli_is(&c, "--attention-mask")) a.mask = cli_str(&c);
        else if (cli_is(&c, "--out")) a.out = cli_str(&c);
        else if (cli_is(&c, "--dump-intermediates")) a.dump = 1;
        else if (cli_is(&c, "--batch")) a.batch = cli_long(&c);
        else if (cli_is(&c, "--threads")) threads = cli_long(&c);
        else return cli_unknown(&c);
    }
    if (c.bad) return 2;
    const char *problem = !a.model ? "--model is required"
                          : !a.out ? "--out is required"
                          : !a.pixels && !a.ids ? "give --pixel-values and/or --input-ids"
                          : a.mask && !a.ids ? "--attention-mask needs --input-ids"
                          : a.batch < 1 || a.batch > 65536 ? "--batch must be in [1, 65536]"
                          : threads < 0 || threads > 1024 ? "--threads must be in [0, 1024]"
                                                          : NULL;
    if (problem) {
        fprintf(stderr, "scale encode: %s (try 'scale encode --help')\n", problem);
        return 2;
    }
    if (threads) sc_set_threads((int)threads);
    sc_err err = {{0}};
    sc_model *m;
    if (sc_model_load(&m, a.model, a.config, &err)) return cli_fail(&c, &err);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_ctx_set_grad(&ctx, 0);
    encode_outputs *o = calloc(1, sizeof *o);
    sc_tensor *img = NULL, *txt = NULL;
    sc_status st = o ? SC_OK : sc_fail(&err, SC_ENOMEM, "out of memory");
    if (!st && a.pixels) st = encode_images(m, &ctx, &a, o, &img, &err);
    if (!st && a.ids) st = encode_texts(m, &ctx, &a, o, &txt, &err);
    if (!st && a.dump) encode_dump_extras(m, &ctx, img, txt, o);
    if (!st && o->overflow) st = sc_fail(&err, SC_ENOMEM, "too many outputs to keep in memory");
    if (!st) st = outputs_write(o, a.out, &err);
    if (o) outputs_free(o);
    free(o);
    sc_ctx_free(&ctx);
    sc_model_free(m);
    return st ? cli_fail(&c, &err) : 0;
}


/* ---- 5d. Commands: SCALE (loss, metrics, train, predict) ---------------- */

/* Inputs of the SCALE commands are .npy files. Each helper reads one,
 * checks its rank and, where given, its shape, and reports a failure as
 * one sentence naming the file. They return 0 on success, 1 on failure. */

/* Report a failure of a SCALE command as one sentence; returns 1. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int cli_failf(const cli *c, const char *fmt, ...)
{
    sc_err err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.msg, sizeof err.msg, fmt, ap);
    va_end(ap);
    return cli_fail(c, &err);
}

/* The number of dimensions of a .npy file. */
static int npy_rank(const cli *c, const char *path, int *ndim)
{
    sc_array a;
    sc_err err;
    if (sc_npy_read(path, &a, &err) != SC_OK) return cli_fail(c, &err);
    *ndim = a.ndim;
    sc_array_free(&a);
    return 0;
}

/* A float matrix or vector of rank ndim; when want is not NULL its sizes
 * must match (want[k] < 0 accepts any). shape receives the sizes. */
static int load_floats(const cli *c, const char *path, int ndim, const int64_t *want, int64_t *shape, float **out)
{
    sc_array a;
    sc_err err;
    *out = NULL;
    if (sc_npy_read(path, &a, &err) != SC_OK) return cli_fail(c, &err);
    int bad = a.ndim != ndim;
    for (int k = 0; k < ndim && !bad; k++) {
        bad = want && want[k] >= 0 && a.shape[k] != want[k];
        shape[k] = a.shape[k];
    }
    sc_status st = bad ? SC_ESHAPE : sc_array_to_f32(&a, out, &err);
    sc_array_free(&a);
    if (bad) return cli_failf(c, "%s: expected a %d-dimensional array matching the other inputs", path, ndim);
    return st == SC_OK ? 0 : cli_fail(c, &err);
}

/* A vector of integer indices in [0, 2^31), of length n (n < 0: any). */
static int load_indices(const cli *c, const char *path, int64_t n, int64_t *len, int **out)
{
    sc_array a;
    sc_err err;
    int64_t *wide = NULL;
    *out = NULL;
    if (sc_npy_read(path, &a, &err) != SC_OK) return cli_fail(c, &err);
    int shape_ok = a.ndim == 1 && (n < 0 || a.shape[0] == n);
    sc_status st = shape_ok ? sc_array_to_i64(&a, &wide, &err) : SC_ESHAPE;
    *len = a.ndim == 1 ? a.shape[0] : 0;
    sc_array_free(&a);
    if (!shape_ok) return cli_failf(c, "%s: expected a vector of %lld indices", path, (long long)n);
    if (st != SC_OK) return cli_fail(c, &err);
    int rc = 0;
    *out = malloc(sizeof(int) * (size_t)(*len + 1));
    if (!*out) rc = cli_failf(c, "%s: out of memory", path);
    for (int64_t i = 0; !rc && i < *len; i++) {
        if (wide[i] < 0 || wide[i] > INT32_MAX)
            rc = cli_failf(c, "%s: index %lld is %lld", path, (long long)i, (long long)wide[i]);
        else (*out)[i] = (int)wide[i];
    }
    free(wide);
    if (rc) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* "--lambda 1,1,0.5,0.5" */
static void cli_lambda(cli *c, double lambda[4])
{
    const char *v = cli_str(c);
    if (!v) return;
    char tail;
    if (sscanf(v, "%lf,%lf,%lf,%lf%c", &lambda[0], &lambda[1], &lambda[2], &lambda[3], &tail) != 4) {
        fprintf(stderr, "scale %s: --lambda needs four numbers separated by commas, not '%s'\n", c->cmd, v);
        c->bad = 1;
    }
}

/* The loss options shared by `loss` and `train`; returns 1 if it took
 * the current argument. */
static int cli_loss_option(cli *c, sc_loss_config *cfg)
{
    if (cli_is(c, "--logit-scale")) cfg->logit_scale = cli_double(c);
    else if (cli_is(c, "--tau")) cfg->tau = cli_double(c);
    else if (cli_is(c, "--lambda")) cli_lambda(c, cfg->lambda);
    else if (cli_is(c, "--multilabel")) cfg->multilabel = 1;
    else if (cli_is(c, "--supcon") || cli_is(c, "--reduction")) {
        int is_supcon = cli_is(c, "--supcon");
        const char *v = cli_str(c);
        if (!v) return 1;
        if (is_supcon && (!strcmp(v, "rows") || !strcmp(v, "cross")))
            cfg->supcon = v[0] == 'r' ? SC_SUPCON_ROWS : SC_SUPCON_CROSS;
        else if (!is_supcon && (!strcmp(v, "mean") || !strcmp(v, "sum")))
            cfg->reduction = v[0] == 'm' ? SC_REDUCE_MEAN : SC_REDUCE_SUM;
        else {
            fprintf(stderr, "scale %s: %s takes %s, not '%s'\n", c->cmd, is_supcon ? "--supcon" : "--reduction",
                    is_supcon ? "rows or cross" : "mean or sum", v);
            c->bad = 1;
        }
    } else return 0;
    if (!c->bad && !(cfg->tau > 0)) {
        fprintf(stderr, "scale %s: --tau must be positive\n", c->cmd);
        c->bad = 1;
    }
    return 1;
}

static const char loss_usage[] =
    "usage: scale loss --sim Q.npy --text-combos T.npy --labels G.npy --text-labels GT.npy\n"
    "                  --combo-class CC.npy --combo-concept CL.npy [--logit-scale S] [--tau T]\n"
    "                  [--lambda a,b,c,d] [--supcon rows|cross] [--reduction mean|sum]\n"
    "                  [--multilabel] [--grad-out dQ.npy] [--show-z]\n"
    "Every term of Eq. 3 for similarities Q (N, M), one name=value line each, and\n"
    "dTotal/dQ into --grad-out (book/05-loss.md).\n";

/* Print rows of a (rows, cols) double matrix as "name[i] = a b c". */
static void print_rows(const char *name, const double *x, int64_t rows, int64_t cols)
{
    for (int64_t i = 0; i < rows; i++) {
        printf("%s[%lld] =", name, (long long)i);
        for (int64_t j = 0; j < cols; j++) printf(" %.6g", x[i * cols + j]);
        printf("\n");
    }
}

/* Compute, print and write what `scale loss` promises. */
static int run_loss(const cli *c, const sc_loss_problem *p, const sc_loss_config *cfg, const float *Q,
                    const char *grad_out, int show_z)
{
    int64_t N = p->N, M = p->M;
    double *dQ = grad_out ? malloc(sizeof(double) * (size_t)(N * M)) : NULL;
    float *dQf = grad_out ? malloc(sizeof(float) * (size_t)(N * M)) : NULL;
    if (grad_out && (!dQ || !dQf)) {
        free(dQ);
        free(dQf);
        return cli_failf(c, "%s: out of memory", grad_out);
    }
    sc_arena scratch;
    sc_arena_init(&scratch, "loss scratch", (size_t)1 << 20, 0);
    sc_loss_terms t;
    sc_scale_loss(&t, dQ, Q, p, cfg, &scratch);
    sc_arena_free(&scratch);
    if (show_z) {
        double *Z = malloc(sizeof(double) * (size_t)(N * (p->H + p->n_concepts + p->n_classes)));
        if (Z) {
            double *zl = Z + N * p->H, *zc = zl + N * p->n_concepts;
            sc_scale_scores(Z, zl, zc, Q, p, cfg->logit_scale);
            print_rows("Z", Z, N, p->H);
            print_rows("z_concept", zl, N, p->n_concepts);
            print_rows("z_class", zc, N, p->n_classes);
        }
        free(Z);
    }
    printf("ce_combo=%.17g\nce_concept=%.17g\nce_class=%.17g\nsupcon_img=%.17g\nsupcon_txt=%.17g\ntotal=%.17g\n",
           t.ce_combo, t.ce_concept, t.ce_class, t.supcon_img, t.supcon_txt, t.total);
    int rc = 0;
    sc_err err;
    if (grad_out) {
        for (int64_t i = 0; i < N * M; i++) dQf[i] = (float)dQ[i];
        if (sc_npy_write_f32(grad_out, dQf, 2, (int64_t[]){N, M}, &err) != SC_OK) rc = cli_fail(c, &err);
    }
    free(dQ);
    free(dQf);
    return rc;
}

/* @book begin cmd-loss */
static int cmd_loss(int argc, char **argv)
{
    const char *path[6] = {NULL}; /* Q T G GT CC CL */
    static const char *const opt[6] = {"--sim", "--text-combos", "--labels", "--text-labels", "--combo-class",
                                       "--combo-concept"};
    const char *grad_out = NULL;
    int show_z = 0;
    sc_loss_config cfg = sc_loss_defaults();
    cli c = cli_begin("loss", argc, argv);
    while (cli_next(&c)) {
        int k = 0;
        while (k < 6 && !cli_is(&c, opt[k])) k++;
        if (k < 6) path[k] = cli_str(&c);
        else if (cli_is(&c, "--grad-out")) grad_out = cli_str(&c);
        else if (cli_is(&c, "--show-z")) show_z = 1;
        else if (cli_is(&c, "--help")) return printf("%s", loss_usage), 0;
        else if (!cli_loss_option(&c, &cfg)) return cli_unknown(&c);
    }
    if (c.bad) return 2;
    for (int k = 0; k < 6; k++)
        if (!path[k]) return fprintf(stderr, "scale loss: %s is required\n%s", opt[k], loss_usage), 2;

    float *Q = NULL, *G = NULL, *GT = NULL;
    int *T = NULL, *CC = NULL, *CL = NULL;
    int64_t qs[2], gs[2], gts[2], M, H, H2;
    int rc = load_floats(&c, path[0], 2, NULL, qs, &Q);
    if (!rc) rc = load_indices(&c, path[1], qs[1], &M, &T);
    if (!rc) rc = load_indices(&c, path[4], -1, &H, &CC);
    if (!rc) rc = load_indices(&c, path[5], H, &H2, &CL);
    if (!rc) rc = load_floats(&c, path[2], 2, (int64_t[]){qs[0], H}, gs, &G);
    if (!rc) rc = load_floats(&c, path[3], 2, (int64_t[]){M, H}, gts, &GT);
    if (!rc) {
        /* Class and concept counts follow from the largest index used. */
        int n_classes = 0, n_concepts = 0;
        for (int64_t h = 0; h < H; h++) {
            if (CC[h] >= n_classes) n_classes = CC[h] + 1;
            if (CL[h] >= n_concepts) n_concepts = CL[h] + 1;
        }
        sc_loss_problem p = {qs[0], M, (int)H, n_classes, n_concepts, T, G, GT, CC, CL};
        sc_err err;
        if (H > SC_HIER_MAX_COMBOS) rc = cli_failf(&c, "%s: more than %d combinations", path[4], SC_HIER_MAX_COMBOS);
        else if (sc_loss_problem_check(&p, "scale loss", &err) != SC_OK) rc = cli_fail(&c, &err);
        if (!rc) rc = run_loss(&c, &p, &cfg, Q, grad_out, show_z);
    }
    free(Q);
    free(G);
    free(GT);
    free(T);
    free(CC);
    free(CL);
    return rc;
}
/* @book end cmd-loss */

static const char metrics_usage[] =
    "usage: scale metrics --scores S.npy --labels Y.npy [--multilabel]\n"
    "                     [--none-sim NONE.npy --logit-scale S]\n"
    "Mean accuracy over classes, macro recall, macro F1 and macro ROC AUC\n"
    "(book/06-metrics.md). S is (N, K). Y is (N) class indices or (N, K) 0/1.\n"
    "Single-label predictions are the argmax, multi-label ones score >= 0.5.\n"
    "With --none-sim, S holds similarities to the 'present' prompts and NONE (N)\n"
    "those to \"No finding.\"; scores become the two-prompt softmax.\n";

/* truth (N, K) from labels read as floats: class indices (ndim 1) or 0/1
 * entries (ndim 2). Returns 0, or 1 after reporting a bad label. */
static int labels_to_truth(const cli *c, const char *path, uint8_t *truth, const float *Y, int ndim, int64_t N,
                           int64_t K)
{
    for (int64_t i = 0; i < N; i++) {
        if (ndim == 1 && !(Y[i] >= 0 && Y[i] < (float)K && Y[i] == floorf(Y[i])))
            return cli_failf(c, "%s: label %lld is %g, not a class in [0, %lld)", path, (long long)i, (double)Y[i],
                             (long long)K);
        for (int64_t k = 0; k < K; k++) {
            float y = ndim == 1 ? (float)(Y[i] == (float)k) : Y[i * K + k];
            if (y != 0 && y != 1)
                return cli_failf(c, "%s: entry (%lld, %lld) is %g, not 0 or 1", path, (long long)i, (long long)k,
                                 (double)y);
            truth[i * K + k] = y != 0;
        }
    }
    return 0;
}

static int cmd_metrics(int argc, char **argv)
{
    const char *scores_path = NULL, *labels_path = NULL, *none_path = NULL;
    int multilabel = 0;
    double logit_scale = 100;
    cli c = cli_begin("metrics", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--scores")) scores_path = cli_str(&c);
        else if (cli_is(&c, "--labels")) labels_path = cli_str(&c);
        else if (cli_is(&c, "--none-sim")) none_path = cli_str(&c);
        else if (cli_is(&c, "--logit-scale")) logit_scale = cli_double(&c);
        else if (cli_is(&c, "--multilabel")) multilabel = 1;
        else if (cli_is(&c, "--help")) return printf("%s", metrics_usage), 0;
        else return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (!scores_path || !labels_path)
        return fprintf(stderr, "scale metrics: --scores and --labels are required\n%s", metrics_usage), 2;

    float *S = NULL, *Y = NULL, *none = NULL;
    uint8_t *truth = NULL, *pred = NULL;
    int64_t ss[2], ys[2], ns[1];
    /* The labels' rank decides their form: indices (N) or 0/1 (N, K). */
    int label_dims = 0;
    int rc = load_floats(&c, scores_path, 2, NULL, ss, &S);
    if (!rc) rc = npy_rank(&c, labels_path, &label_dims);
    if (!rc) rc = load_floats(&c, labels_path, label_dims == 1 ? 1 : 2, ss, ys, &Y);
    if (!rc && none_path) rc = load_floats(&c, none_path, 1, ss, ns, &none);
    int64_t N = ss[0], K = ss[1];
    if (!rc) {
        truth = calloc((size_t)(N * K) + 1, 1);
        pred = calloc((size_t)(N * K) + 1, 1);
        if (!truth || !pred) rc = cli_failf(&c, "%s: out of memory", scores_path);
    }
    if (!rc) rc = labels_to_truth(&c, labels_path, truth, Y, label_dims, N, K);
    if (!rc) {
        if (none) sc_two_prompt_scores(S, S, none, N, (int)K, (float)logit_scale);
        if (multilabel) sc_predict_threshold(pred, S, N, (int)K, 0.5f);
        else sc_predict_argmax(pred, S, N, (int)K);
        sc_metrics m;
        sc_metrics_eval(&m, S, truth, pred, N, (int)K);
        printf("accuracy=%.17g\nmacro_recall=%.17g\nmacro_f1=%.17g\nauc=%.17g\n", m.accuracy, m.macro_recall,
               m.macro_f1, m.auc);
    }
    free(S);
    free(Y);
    free(none);
    free(truth);
    free(pred);
    return rc;
}

/* ---- 5e. Commands: experiments, synthetic data, demo --------------------- */

/* ---- 5f. The command table and main -------------------------------------- */

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("scale %s\n", sc_version());
    return 0;
}

static int cmd_help(int argc, char **argv);

static const command commands[] = {
    /* inputs */

    /* models */
    {"encode", cmd_encode, "embed images and texts with a CLIP or MedCLIP model"},

    /* SCALE */
    {"loss", cmd_loss, "every term of the SCALE loss (Eq. 3) and dTotal/dQ"},
    {"metrics", cmd_metrics, "accuracy, macro recall, macro F1 and AUC of scores"},

    /* experiments */

    /* general */
    {"help", cmd_help, "list the commands"},
    {"version", cmd_version, "print the version"},
};

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("scale %s — SCALE: supervised contrastive adapter learning for\n"
           "fine-grained evaluation of medical vision-language models.\n\n"
           "usage: scale COMMAND [options]   (scale COMMAND --help for details)\n\n"
           "commands:\n",
           sc_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        printf("  %-12s %s\n", commands[i].name, commands[i].summary);
    printf("\nThe book in book/README.md explains each command next to the paper.\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return cmd_help(argc, argv);
    if (!strcmp(argv[1], "--version")) return cmd_version(argc, argv);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "scale: unknown command '%s' (try 'scale --help')\n", argv[1]);
    return 2;
}
#endif /* SC_NO_MAIN */
