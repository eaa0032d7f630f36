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

static const char decode_usage[] =
    "usage: scale decode IMAGE --out X.npy [--index I.npy]\n"
    "Decode a PNG, JPEG or binary PGM/PPM into its samples as stored: uint8\n"
    "(H, W) for grey, (H, W, C) otherwise, uint16 (H, W) for 16-bit grey.\n"
    "16-bit colour keeps the high bytes, as Pillow does. --index writes the\n"
    "palette indices (H, W) of a palette PNG.\n";

static int cmd_decode(int argc, char **argv)
{
    const char *image = NULL, *out = NULL, *index_out = NULL;
    int n_images = 0;
    cli c = cli_begin("decode", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--out")) out = cli_str(&c);
        else if (cli_is(&c, "--index")) index_out = cli_str(&c);
        else if (cli_is(&c, "--help")) return printf("%s", decode_usage), 0;
        else if (!cli_positional(&c, &image, &n_images, 1)) return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (!image || !out) return fprintf(stderr, "scale decode: IMAGE and --out are required (try 'scale decode --help')\n"), 2;

    sc_image img;
    sc_err err;
    if (sc_image_load(image, &img, &err) != SC_OK) return cli_fail(&c, &err);
    int grey16 = img.bits == 16 && img.channels == 1;
    sc_array a = {grey16 ? SC_DT_U16 : SC_DT_U8, img.channels == 1 ? 2 : 3, {img.height, img.width, img.channels},
                  grey16 ? (void *)img.pixels16 : (void *)img.pixels, 0};
    a.nbytes = (size_t)img.width * (size_t)img.height * (size_t)img.channels * (grey16 ? 2 : 1);
    int rc = sc_npy_write(out, &a, &err) == SC_OK ? 0 : cli_fail(&c, &err);
    if (!rc && index_out) {
        if (!img.index) {
            sc_fail(&err, SC_EARG, "%s: not a palette image, so there are no indices for %s", image, index_out);
            rc = cli_fail(&c, &err);
        } else {
            sc_array ix = {SC_DT_U8, 2, {img.height, img.width}, img.index, (size_t)img.width * (size_t)img.height};
            if (sc_npy_write(index_out, &ix, &err) != SC_OK) rc = cli_fail(&c, &err);
        }
    }
    if (!rc)
        printf("%s: %dx%d, %d channel%s, %d-bit%s\n", image, img.width, img.height, img.channels,
               img.channels == 1 ? "" : "s", img.bits, img.index ? ", palette" : "");
    sc_image_free(&img);
    return rc;
}

static const char preprocess_usage[] =
    "usage: scale preprocess [--model DIR] [--pipeline NAME] IMAGE... --out X.npy\n"
    "Model inputs, float32 (N, C, S, S), exactly as the models' Python code\n"
    "prepares them (book/08-images.md). NAME: clip, monet, medclip (MedCLIP's\n"
    "processor) or medclip-eval (its evaluation datasets); default clip, or\n"
    "what DIR's config.json and preprocessor_config.json say. 16-bit grey\n"
    "images are stretched min-max to 8 bits first.\n";

#define PREPROCESS_MAX_IMAGES 65536

static int cmd_preprocess(int argc, char **argv)
{
    const char *model = NULL, *name = NULL, *out = NULL;
    const char **images = malloc(sizeof(char *) * PREPROCESS_MAX_IMAGES);
    int n = 0;
    if (!images) return fprintf(stderr, "scale preprocess: out of memory\n"), 1;
    cli c = cli_begin("preprocess", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--model")) model = cli_str(&c);
        else if (cli_is(&c, "--pipeline")) name = cli_str(&c);
        else if (cli_is(&c, "--out")) out = cli_str(&c);
        else if (cli_is(&c, "--help")) return free(images), printf("%s", preprocess_usage), 0;
        else if (!cli_positional(&c, images, &n, PREPROCESS_MAX_IMAGES)) return free(images), cli_unknown(&c);
    }
    if (c.bad || !n || !out) {
        if (!c.bad) fprintf(stderr, "scale preprocess: IMAGE... and --out are required (try 'scale preprocess --help')\n");
        free(images);
        return 2;
    }
    sc_pipeline p;
    sc_err err;
    sc_status st = model ? sc_pipeline_for_model(model, name, &p, &err) : sc_pipeline_named(name ? name : "clip", &p, &err);
    if (st != SC_OK) {
        free(images);
        return st == SC_EARG ? (fprintf(stderr, "scale preprocess: %s\n", err.msg), 2) : cli_fail(&c, &err);
    }
    int64_t side = sc_pipeline_side(&p), per_image = p.channels * side * side;
    float *x = malloc(sizeof(float) * (size_t)per_image * (size_t)n); /* (N, C, S, S) */
    int rc = x ? 0 : (fprintf(stderr, "scale preprocess: out of memory for %d images\n", n), 1);
    for (int i = 0; i < n && !rc; i++) {
        sc_image img;
        if (sc_image_load(images[i], &img, &err) != SC_OK) {
            rc = cli_fail(&c, &err);
            break;
        }
        if (sc_pipeline_run(&p, &img, x + (size_t)i * (size_t)per_image, &err) != SC_OK)
            rc = cli_fail(&c, &err);
        sc_image_free(&img);
    }
    if (!rc && sc_npy_write_f32(out, x, 4, (int64_t[]){n, p.channels, side, side}, &err) != SC_OK)
        rc = cli_fail(&c, &err);
    if (!rc) printf("%s: %d image%s, pipeline %s, (%d, %d, %lld, %lld)\n", out, n, n == 1 ? "" : "s", p.name, n,
                    p.channels, (long long)side, (long long)side);
    free(x);
    free(images);
    return rc;
}

/* Texts for `tokenize`: the positional arguments, or the lines of --in FILE
 * (a CR before each LF is dropped). Pointers into argv or into *buf. */
static sc_status tokenize_read_lines(const char *path, uint8_t **buf, const char ***texts, int64_t *n,
                                     sc_err *err)
{
    size_t len;
    sc_status s = sc_read_file(path, (size_t)1 << 30, buf, &len, err);
    if (s) return s;
    int64_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += (*buf)[i] == '\n';
    if (len > 0 && (*buf)[len - 1] != '\n') lines++;
    *texts = malloc((size_t)(lines ? lines : 1) * sizeof **texts);
    if (!*texts) return sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    char *p = (char *)*buf, *end = p + len;
    for (*n = 0; p < end; (*n)++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        if (eol > p && eol[-1] == '\r') eol[-1] = 0;
        *eol = 0; /* sc_read_file leaves room for a NUL after the data */
        (*texts)[*n] = p;
        p = eol + 1;
    }
    return SC_OK;
}

static sc_status tokenize_write(const char *path, int64_t *data, int64_t B, int64_t T, sc_err *err)
{
    sc_array a = {SC_DT_I64, 2, {B, T}, data, (size_t)(B * T) * sizeof *data};
    return sc_npy_write(path, &a, err);
}

/* Keep the first L columns, L = the longest row: Hugging Face's
 * padding=True (what MedCLIP uses, and its text pooling averages over the
 * padded positions too). Returns L. */
static int64_t tokenize_trim(int64_t *ids, int64_t *mask, int64_t B, int64_t T)
{
    int64_t L = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = 0;
        while (n < T && mask[b * T + n]) n++;
        if (n > L) L = n;
    }
    for (int64_t b = 0; b < B; b++) {
        memmove(ids + b * L, ids + b * T, (size_t)L * sizeof *ids);
        memmove(mask + b * L, mask + b * T, (size_t)L * sizeof *mask);
    }
    return L;
}

static int tokenize_usage(void)
{
    fprintf(stderr,
            "usage: scale tokenize --model DIR [--max-length N] [--pad-id N] [--lower | --cased]\n"
            "                      [--out ids.npy [--mask-out mask.npy]] [--longest] [--tokens]\n"
            "                      [--explain] (--in FILE | TEXT...)\n"
            "Tokenizes each TEXT (or each line of FILE) with the model's tokenizer: CLIP BPE\n"
            "(merges.txt [+ vocab.json], bpe_simple_vocab_16e6.txt.gz) or BERT WordPiece\n"
            "(vocab.txt [+ tokenizer_config.json]). Rows have N ids (default 77): begin token,\n"
            "text, end token, padding (--pad-id, default 0 for CLIP as OpenAI, [PAD] for BERT);\n"
            "--longest keeps only as many columns as the longest text needs (padding=True).\n"
            "Without --out, prints each text's ids up to its end token (--tokens: also the\n"
            "token strings; --explain: every cleaning step, BPE merge or WordPiece split).\n");
    return 2;
}

static int cmd_tokenize(int argc, char **argv)
{
    enum { MAX_ARGS = 4096 };
    const char *model = NULL, *in = NULL, *out = NULL, *mask_out = NULL, *args[MAX_ARGS];
    int n_args = 0, show_tokens = 0, explain = 0, longest = 0;
    sc_tok_options opt = sc_tok_defaults();
    cli c = cli_begin("tokenize", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--help")) return tokenize_usage();
        else if (cli_is(&c, "--model")) model = cli_str(&c);
        else if (cli_is(&c, "--max-length")) opt.max_length = (int)cli_long(&c);
        else if (cli_is(&c, "--pad-id")) opt.pad_id = cli_long(&c);
        else if (cli_is(&c, "--lower")) opt.lower_case = 1;
        else if (cli_is(&c, "--cased")) opt.lower_case = 0;
        else if (cli_is(&c, "--in")) in = cli_str(&c);
        else if (cli_is(&c, "--out")) out = cli_str(&c);
        else if (cli_is(&c, "--mask-out")) mask_out = cli_str(&c);
        else if (cli_is(&c, "--tokens")) show_tokens = 1;
        else if (cli_is(&c, "--explain")) explain = 1;
        else if (cli_is(&c, "--longest")) longest = 1;
        else if (!cli_positional(&c, args, &n_args, MAX_ARGS)) return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (!model || (in != NULL) == (n_args > 0) || (mask_out && !out)) return tokenize_usage();
    sc_err err;
    sc_tokenizer *tok;
    if (sc_tokenizer_load(&tok, model, &opt, &err)) return cli_fail(&c, &err);
    uint8_t *buf = NULL;
    const char **texts = args;
    int64_t B = n_args, T = sc_tokenizer_max_length(tok);
    int64_t *ids = NULL, *mask = NULL;
    size_t cells;
    sc_status s = in ? tokenize_read_lines(in, &buf, &texts, &B, &err) : SC_OK;
    if (!s && (!sc_mul_ok((size_t)B, (size_t)T * sizeof *ids, &cells) || !(ids = malloc(cells + 1)) ||
               !(mask = malloc(cells + 1))))
        s = sc_fail(&err, SC_ENOMEM, "%lld texts: out of memory", (long long)B);
    for (int64_t b = 0; !s && explain && b < B; b++)
        s = sc_tokenizer_explain(tok, texts[b], strlen(texts[b]), stdout, &err);
    if (!s && !explain) s = sc_tokenizer_encode_batch(tok, texts, B, ids, mask, &err);
    if (!s && !explain && longest) T = tokenize_trim(ids, mask, B, T);
    if (!s && !explain && out) s = tokenize_write(out, ids, B, T, &err);
    if (!s && !explain && mask_out) s = tokenize_write(mask_out, mask, B, T, &err);
    for (int64_t b = 0; !s && !explain && !out && b < B; b++) {
        for (int64_t t = 0; t < T && mask[b * T + t]; t++)
            printf(t ? " %lld" : "%lld", (long long)ids[b * T + t]);
        printf("\n");
        for (int64_t t = 0; show_tokens && t < T && mask[b * T + t]; t++)
            printf(t ? " %s" : "%s", sc_tokenizer_token(tok, ids[b * T + t]));
        if (show_tokens) printf("\n");
    }
    if (in) free((void *)texts);
    free(buf);
    free(ids);
    free(mask);
    sc_tokenizer_free(tok);
    return s ? cli_fail(&c, &err) : 0;
}

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

/* Inputs of the SCALE commands are .npy files. Each helper below reads
 * one, checks its rank and, where given, its shape, and reports a failure
 * as one sentence naming the file. They return 0 on success, 1 on failure. */

/* "(12, 5)" for a shape, with "*" where any size is accepted. */
static const char *shape_text(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < ndim && k < n; d++) {
        if (shape[d] < 0) k += (size_t)snprintf(buf + k, n - k, "%s*", d ? ", " : "");
        else k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    }
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
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
    char got[96], expected[96];
    int64_t any[2] = {-1, -1};
    shape_text(got, sizeof got, a.ndim < 8 ? a.ndim : 8, a.shape);
    shape_text(expected, sizeof expected, ndim, want ? want : any);
    sc_array_free(&a);
    if (bad) return cli_failf(c, "%s: shape %s but %s expected", path, got, expected);
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
    if (!shape_ok && n < 0) return cli_failf(c, "%s: expected a vector of indices", path);
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

static const char hier_usage[] =
    "usage: scale hier FILE.hier [--task NAME] [--prompts]\n"
    "Load a class-concept hierarchy (book/03-hierarchy.md) and list each task's\n"
    "combinations h with class, concept and canonical prompt; with --prompts,\n"
    "only the prompts, one per line in combination order (for the text encoder).\n";

static int cmd_hier(int argc, char **argv)
{
    const char *path[1] = {NULL}, *task_name = NULL;
    int n_paths = 0, prompts_only = 0;
    cli c = cli_begin("hier", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--task")) task_name = cli_str(&c);
        else if (cli_is(&c, "--prompts")) prompts_only = 1;
        else if (cli_is(&c, "--help")) return printf("%s", hier_usage), 0;
        else if (!cli_positional(&c, path, &n_paths, 1)) return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (!n_paths) return fprintf(stderr, "scale hier: which .hier file?\n%s", hier_usage), 2;
    sc_hier h;
    sc_err err;
    if (sc_hier_load(&h, path[0], &err) != SC_OK) return cli_fail(&c, &err);
    const sc_hier_task *only = task_name ? sc_hier_task_find(&h, task_name) : NULL;
    int rc = task_name && !only ? cli_failf(&c, "%s: no task '%s'", path[0], task_name) : 0;
    for (int k = 0; !rc && k < h.n_tasks; k++) {
        const sc_hier_task *t = &h.tasks[k];
        if (only && t != only) continue;
        if (!prompts_only)
            printf("task %s: %d classes, %d concepts, %d combinations%s\n", t->name, t->n_classes, t->n_concepts,
                   t->n_combos, t->multilabel ? ", multi-label" : "");
        for (int i = 0; i < t->n_combos; i++) {
            if (prompts_only) printf("%s\n", t->combo_prompt[i]);
            else printf("  h=%d class=%d (%s) concept=%d (%s): %s\n", i, t->combo_class[i],
                        t->classes[t->combo_class[i]].name, t->combo_concept[i],
                        t->concepts[t->combo_concept[i]].name, t->combo_prompt[i]);
        }
    }
    sc_hier_free(&h);
    return rc;
}

static const char metrics_usage[] =
    "usage: scale metrics --scores S.npy --labels Y.npy [--multilabel]\n"
    "                     [--none-sim NONE.npy --logit-scale S]\n"
    "Mean accuracy over classes, macro recall, macro F1 and macro ROC AUC\n"
    "(book/06-metrics.md). S is (N, K). Y is (N) class indices or (N, K) 0/1.\n"
    "Single-label predictions are the argmax, multi-label ones score >= 0.5.\n"
    "With --none-sim, S holds similarities to the 'present' prompts and NONE (N)\n"
    "those to \"No finding.\"; scores become the two-prompt softmax.\n";

/* Labels as a 0/1 matrix (N, K) of floats: the file holds either class
 * indices (N) or 0/1 entries (N, K). want_N < 0 accepts any N. */
static int load_labels(const cli *c, const char *path, int64_t want_N, int64_t K, float **out, int64_t *N)
{
    int ndim = 0;
    int64_t shape[2];
    float *Y = NULL;
    *out = NULL;
    int rc = npy_rank(c, path, &ndim);
    if (!rc) rc = load_floats(c, path, ndim == 1 ? 1 : 2, (int64_t[]){want_N, K}, shape, &Y);
    if (rc) return rc;
    *N = shape[0];
    float *G = calloc((size_t)(*N * K) + 1, sizeof(float));
    if (!G) rc = cli_failf(c, "%s: out of memory", path);
    for (int64_t i = 0; !rc && i < *N; i++) {
        if (ndim == 1 && !(Y[i] >= 0 && Y[i] < (float)K && Y[i] == floorf(Y[i])))
            rc = cli_failf(c, "%s: label %lld is %g, not an index in [0, %lld)", path, (long long)i, (double)Y[i],
                           (long long)K);
        for (int64_t k = 0; !rc && k < K; k++) {
            float y = ndim == 1 ? (float)(Y[i] == (float)k) : Y[i * K + k];
            if (y != 0 && y != 1)
                rc = cli_failf(c, "%s: entry (%lld, %lld) is %g, not 0 or 1", path, (long long)i, (long long)k,
                               (double)y);
            G[i * K + k] = y;
        }
    }
    free(Y);
    if (rc) free(G);
    else *out = G;
    return rc;
}

/* Print the four metrics of scores (N, K) against 0/1 labels (N, K),
 * predicting by argmax or by score >= 0.5; `prefix` starts the line. */
static int print_metrics(const cli *c, const char *prefix, const float *scores, const float *labels, int64_t N,
                         int64_t K, int multilabel, int one_line)
{
    uint8_t *truth = malloc((size_t)(N * K) + 1), *pred = malloc((size_t)(N * K) + 1);
    if (!truth || !pred) {
        free(truth);
        free(pred);
        return cli_failf(c, "out of memory for %lld scores", (long long)(N * K));
    }
    for (int64_t i = 0; i < N * K; i++) truth[i] = labels[i] != 0;
    if (multilabel) sc_predict_threshold(pred, scores, N, (int)K, 0.5f);
    else sc_predict_argmax(pred, scores, N, (int)K);
    sc_metrics m;
    sc_metrics_eval(&m, scores, truth, pred, N, (int)K);
    const char *sep = one_line ? " " : "\n";
    printf("%saccuracy=%.17g%smacro_recall=%.17g%smacro_f1=%.17g%sauc=%.17g\n", prefix, m.accuracy, sep,
           m.macro_recall, sep, m.macro_f1, sep, m.auc);
    free(truth);
    free(pred);
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
    int64_t ss[2], ns[1], N;
    int rc = load_floats(&c, scores_path, 2, NULL, ss, &S);
    if (!rc) rc = load_labels(&c, labels_path, ss[0], ss[1], &Y, &N);
    if (!rc && none_path) rc = load_floats(&c, none_path, 1, ss, ns, &none);
    if (!rc) {
        if (none) sc_two_prompt_scores(S, S, none, ss[0], (int)ss[1], (float)logit_scale);
        rc = print_metrics(&c, "", S, Y, ss[0], ss[1], multilabel, 0);
    }
    free(S);
    free(Y);
    free(none);
    return rc;
}

/* ---- training and prediction ---- */

/* The hierarchy file and one of its tasks (the first when none is named). */
static int open_task(const cli *c, const char *hier_path, const char *task_name, sc_hier *h,
                     const sc_hier_task **task)
{
    sc_err err;
    if (sc_hier_load(h, hier_path, &err) != SC_OK) return cli_fail(c, &err);
    *task = task_name ? sc_hier_task_find(h, task_name) : &h->tasks[0];
    if (!*task) {
        sc_hier_free(h);
        return cli_failf(c, "%s: no task '%s'", hier_path, task_name);
    }
    return 0;
}

/* Options shared by train and predict that shape the adapters. */
static int cli_adapter_option(cli *c, sc_train_config *cfg)
{
    if (cli_is(c, "--alpha")) {
        const char *v = cli_str(c);
        if (!v) return 1;
        if (!strcmp(v, "sigmoid")) cfg->adapter.alpha_mode = SC_ALPHA_SIGMOID;
        else if (!strcmp(v, "clamp")) cfg->adapter.alpha_mode = SC_ALPHA_CLAMP;
        else if (!strcmp(v, "raw")) cfg->adapter.alpha_mode = SC_ALPHA_RAW;
        else fprintf(stderr, "scale %s: --alpha takes sigmoid, clamp or raw, not '%s'\n", c->cmd, v), c->bad = 1;
    } else if (cli_is(c, "--relu")) {
        long n = cli_long(c);
        if (n != 1 && n != 2) fprintf(stderr, "scale %s: --relu takes 1 or 2\n", c->cmd), c->bad = 1;
        cfg->adapter.relu_after_up = n == 2;
    } else if (cli_is(c, "--alpha-init")) cfg->adapter.alpha_init = cli_float(c);
    else if (cli_is(c, "--adapter-reduction")) cfg->adapter.reduction = (int)cli_long(c);
    else if (cli_is(c, "--no-image-adapter")) cfg->image_adapter = 0;
    else if (cli_is(c, "--no-text-adapter")) cfg->text_adapter = 0;
    else return 0;
    return 1;
}

static const char train_usage[] =
    "usage: scale train --hier FILE.hier [--task NAME] --image-emb X.npy --labels G.npy\n"
    "                   --prompt-emb P.npy --out ADAPTERS.safetensors\n"
    "                   [--text-emb T.npy --text-combos TC.npy [--text-labels GT.npy]]\n"
    "                   [--epochs 150] [--lr 0.001] [--batch N] [--seed 0]\n"
    "                   [--logit-scale 100] [--tau 0.07] [--lambda 1,1,1,1]\n"
    "                   [--supcon rows|cross] [--reduction mean|sum]\n"
    "                   [--alpha sigmoid|clamp|raw] [--alpha-init 0.2] [--relu 2|1]\n"
    "                   [--adapter-reduction 4] [--no-image-adapter] [--no-text-adapter]\n"
    "                   [--checkpoint-every E] [--resume CKPT] [--log-every E]\n"
    "Train SCALE's adapters on cached embeddings (book/05-loss.md): X (N, C)\n"
    "images, G their combinations as indices (N) or 0/1 (N, H), P (H, C) the\n"
    "canonical prompt of each combination of the task. Without --text-emb each\n"
    "image is paired with the prompt of its (first) combination.\n";

/* The training inputs of `scale train`, loaded and owned together. */
typedef struct {
    float *images, *labels, *prompts, *texts, *text_labels;
    int *text_combo;
} train_files;

static void train_files_free(train_files *f)
{
    free(f->images), free(f->labels), free(f->prompts), free(f->texts), free(f->text_labels), free(f->text_combo);
}

static int load_train_files(const cli *c, const char *const path[6], const sc_hier_task *t, train_files *f,
                            sc_train_data *d)
{
    /* path: image-emb, labels, prompt-emb, text-emb, text-combos, text-labels */
    int64_t xs[2], ps[2], ts[2], N = 0, n_combos;
    int H = t->n_combos;
    int rc = load_floats(c, path[0], 2, NULL, xs, &f->images);
    if (!rc) rc = load_labels(c, path[1], xs[0], H, &f->labels, &N);
    if (!rc) rc = load_floats(c, path[2], 2, (int64_t[]){H, xs[1]}, ps, &f->prompts);
    if (!rc && path[3]) rc = load_floats(c, path[3], 2, xs, ts, &f->texts);
    if (!rc && path[4]) rc = load_indices(c, path[4], N, &n_combos, &f->text_combo);
    if (!rc && path[5]) rc = load_labels(c, path[5], N, H, &f->text_labels, &n_combos);
    if (!rc && !!path[3] != !!path[4]) rc = cli_failf(c, "--text-emb and --text-combos go together");
    if (!rc && !f->text_combo) {
        /* The paired text is the canonical prompt of the image's first combination. */
        f->text_combo = malloc(sizeof(int) * (size_t)(N + 1));
        for (int64_t i = 0; !rc && f->text_combo && i < N; i++) {
            int h = 0;
            while (h < H && f->labels[i * H + h] == 0) h++;
            if (h == H) rc = cli_failf(c, "%s: image %lld has no combination to pair a prompt with", path[1], (long long)i);
            f->text_combo[i] = h;
        }
        if (!f->text_combo) rc = cli_failf(c, "out of memory");
    }
    sc_train_data data = {N, xs[1], H, t->n_classes, t->n_concepts, f->images, f->texts, f->text_combo, f->labels,
                          f->text_labels, f->prompts, t->combo_class, t->combo_concept};
    *d = data;
    sc_err err;
    if (!rc && sc_train_data_check(d, path[0], &err) != SC_OK) rc = cli_fail(c, &err);
    return rc;
}

/* @book begin cmd-train */
static int cmd_train(int argc, char **argv)
{
    static const char *const file_opt[6] = {"--image-emb", "--labels", "--prompt-emb", "--text-emb", "--text-combos",
                                            "--text-labels"};
    const char *path[6] = {NULL}, *hier_path = NULL, *task_name = NULL, *out = NULL, *resume = NULL;
    long checkpoint_every = 0, log_every = 10;
    sc_train_config cfg = sc_train_defaults();
    cli c = cli_begin("train", argc, argv);
    while (cli_next(&c)) {
        int k = 0;
        while (k < 6 && !cli_is(&c, file_opt[k])) k++;
        if (k < 6) path[k] = cli_str(&c);
        else if (cli_is(&c, "--hier")) hier_path = cli_str(&c);
        else if (cli_is(&c, "--task")) task_name = cli_str(&c);
        else if (cli_is(&c, "--out")) out = cli_str(&c);
        else if (cli_is(&c, "--resume")) resume = cli_str(&c);
        else if (cli_is(&c, "--epochs")) cfg.epochs = (int)cli_long(&c);
        else if (cli_is(&c, "--lr")) cfg.lr = cli_float(&c);
        else if (cli_is(&c, "--batch")) cfg.batch_size = (int)cli_long(&c);
        else if (cli_is(&c, "--seed")) cfg.seed = (uint64_t)cli_long(&c);
        else if (cli_is(&c, "--checkpoint-every")) checkpoint_every = cli_long(&c);
        else if (cli_is(&c, "--log-every")) log_every = cli_long(&c);
        else if (cli_is(&c, "--help")) return printf("%s", train_usage), 0;
        else if (!cli_loss_option(&c, &cfg.loss) && !cli_adapter_option(&c, &cfg)) return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (!hier_path || !path[0] || !path[1] || !path[2] || !out)
        return fprintf(stderr, "scale train: --hier, --image-emb, --labels, --prompt-emb and --out are required\n%s",
                       train_usage), 2;
    if (cfg.epochs < 1 || cfg.batch_size < 0 || checkpoint_every < 0 || log_every < 0)
        return fprintf(stderr, "scale train: epochs must be positive, batch and intervals not negative\n"), 2;

    sc_hier h;
    const sc_hier_task *task;
    if (open_task(&c, hier_path, task_name, &h, &task)) return 1;
    cfg.loss.multilabel = cfg.loss.multilabel || task->multilabel;
    train_files files = {0};
    sc_train_data data;
    sc_scale_model model;
    sc_err err;
    int rc = load_train_files(&c, path, task, &files, &data), have_model = 0;
    if (!rc) {
        sc_status st = resume ? sc_scale_model_load(&model, resume, &cfg, &err)
                              : sc_scale_model_init(&model, data.C, &cfg, &err);
        have_model = st == SC_OK;
        if (st) rc = cli_fail(&c, &err);
    }
    if (!rc && model.C != data.C) rc = cli_failf(&c, "%s: adapters of width %lld for embeddings of width %lld", resume,
                                                 (long long)model.C, (long long)data.C);
    if (!rc) {
        sc_ctx ctx;
        sc_ctx_init(&ctx);
        while (!rc && model.epoch < cfg.epochs) {
            double loss = sc_scale_train_epoch(&model, &ctx, &data);
            if (log_every && (model.epoch % log_every == 0 || model.epoch == cfg.epochs))
                printf("epoch=%lld loss=%.6f alpha_image=%.4f alpha_text=%.4f\n", (long long)model.epoch, loss,
                       cfg.image_adapter ? sc_adapter_alpha(&model.image) : 0.0,
                       cfg.text_adapter ? sc_adapter_alpha(&model.text) : 0.0);
            if (checkpoint_every && model.epoch % checkpoint_every == 0 && model.epoch < cfg.epochs &&
                sc_scale_model_save(&model, out, &err) != SC_OK)
                rc = cli_fail(&c, &err);
        }
        if (!rc && sc_scale_model_save(&model, out, &err) != SC_OK) rc = cli_fail(&c, &err);
        sc_ctx_free(&ctx);
    }
    if (have_model) sc_scale_model_free(&model);
    train_files_free(&files);
    sc_hier_free(&h);
    return rc;
}
/* @book end cmd-train */

static const char predict_usage[] =
    "usage: scale predict --hier FILE.hier [--task NAME] --adapters ADAPTERS.safetensors\n"
    "                     --image-emb X.npy --prompt-emb P.npy [--logit-scale 100] [--top 3]\n"
    "                     [--labels G.npy [--none-emb NONE.npy]] [--scores-out PREFIX]\n"
    "Score every image against every combination's prompt through the trained\n"
    "adapters and explain the prediction by its top combinations:\n"
    "  image 0: melanoma-indicative: diffuse irregular pigmentation (0.81); ...\n"
    "(softmax of Z over the combinations). With --labels, the metrics of each\n"
    "level (combination, concept, class); a multi-label task needs --none-emb, the\n"
    "embedding of \"No finding.\", for the two-prompt scores. --scores-out writes\n"
    "PREFIX.combination.npy, PREFIX.concept.npy and PREFIX.class.npy (logits).\n";

/* Row-wise softmax of x (N, K) into p. */
static void softmax_rows(float *p, const double *x, int64_t N, int64_t K)
{
    for (int64_t i = 0; i < N; i++) {
        double m = x[i * K], sum = 0;
        for (int64_t k = 1; k < K; k++) m = x[i * K + k] > m ? x[i * K + k] : m;
        for (int64_t k = 0; k < K; k++) sum += exp(x[i * K + k] - m);
        for (int64_t k = 0; k < K; k++) p[i * K + k] = (float)(exp(x[i * K + k] - m) / sum);
    }
}

/* "image i: <explanation> (p); ..." for the top combinations of each image. */
static void print_explanations(const sc_hier_task *t, const float *prob, int64_t N, int top)
{
    int H = t->n_combos;
    for (int64_t i = 0; i < N; i++) {
        const float *p = prob + i * H;
        uint8_t used[SC_HIER_MAX_COMBOS] = {0};
        printf("image %lld:", (long long)i);
        for (int r = 0; r < top && r < H; r++) {
            int best = -1;
            for (int h = 0; h < H; h++)
                if (!used[h] && (best < 0 || p[h] > p[best])) best = h;
            used[best] = 1;
            char text[512];
            printf("%s %s (%.2f)", r ? ";" : "", sc_hier_explain(t, best, text, sizeof text), (double)p[best]);
        }
        printf("\n");
    }
}

/* Labels of a level (concept or class) from combination labels (N, H). */
static void level_labels(float *out, const float *G, int64_t N, int H, const int *group_of, int G_count)
{
    memset(out, 0, sizeof(float) * (size_t)(N * G_count));
    for (int64_t i = 0; i < N; i++)
        for (int h = 0; h < H; h++)
            if (G[i * H + h] != 0) out[i * G_count + group_of[h]] = 1;
}

static int predict_metrics(const cli *c, const sc_hier_task *t, const double *logits[3], const float *labels,
                           const float *two_prompt, int64_t N)
{
    static const char *const level[3] = {"combination", "concept", "class"};
    const int count[3] = {t->n_combos, t->n_concepts, t->n_classes};
    const int *group[3] = {NULL, t->combo_concept, t->combo_class};
    int H = t->n_combos, rc = 0;
    float *scores = malloc(sizeof(float) * (size_t)(N * H) + 1), *y = malloc(sizeof(float) * (size_t)(N * H) + 1);
    if (!scores || !y) rc = cli_failf(c, "out of memory");
    for (int k = 0; k < 3 && !rc; k++) {
        int K = count[k];
        if (two_prompt) {
            /* A level's probability is the max over its combinations. */
            for (int64_t i = 0; i < N * K; i++) scores[i] = 0;
            for (int64_t i = 0; i < N; i++)
                for (int h = 0; h < H; h++) {
                    float *s = &scores[i * K + (k ? group[k][h] : h)];
                    if (two_prompt[i * H + h] > *s) *s = two_prompt[i * H + h];
                }
        } else {
            softmax_rows(scores, logits[k], N, K);
        }
        if (k == 0) memcpy(y, labels, sizeof(float) * (size_t)(N * H));
        else level_labels(y, labels, N, H, group[k], K);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "level=%s ", level[k]);
        rc = print_metrics(c, prefix, scores, y, N, K, t->multilabel, 1);
    }
    free(scores);
    free(y);
    return rc;
}

static int write_logits(const cli *c, const char *prefix, const char *level, const double *x, int64_t N, int64_t K)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.%s.npy", prefix, level);
    float *f = malloc(sizeof(float) * (size_t)(N * K) + 1);
    if (!f) return cli_failf(c, "%s: out of memory", path);
    for (int64_t i = 0; i < N * K; i++) f[i] = (float)x[i];
    sc_err err;
    int rc = sc_npy_write_f32(path, f, 2, (int64_t[]){N, K}, &err) == SC_OK ? 0 : cli_fail(c, &err);
    free(f);
    return rc;
}

static int cmd_predict(int argc, char **argv)
{
    const char *hier_path = NULL, *task_name = NULL, *ckpt = NULL, *image_path = NULL, *prompt_path = NULL;
    const char *labels_path = NULL, *none_path = NULL, *scores_out = NULL;
    double logit_scale = 100;
    long top = 3;
    cli c = cli_begin("predict", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--hier")) hier_path = cli_str(&c);
        else if (cli_is(&c, "--task")) task_name = cli_str(&c);
        else if (cli_is(&c, "--adapters")) ckpt = cli_str(&c);
        else if (cli_is(&c, "--image-emb")) image_path = cli_str(&c);
        else if (cli_is(&c, "--prompt-emb")) prompt_path = cli_str(&c);
        else if (cli_is(&c, "--labels")) labels_path = cli_str(&c);
        else if (cli_is(&c, "--none-emb")) none_path = cli_str(&c);
        else if (cli_is(&c, "--scores-out")) scores_out = cli_str(&c);
        else if (cli_is(&c, "--logit-scale")) logit_scale = cli_double(&c);
        else if (cli_is(&c, "--top")) top = cli_long(&c);
        else if (cli_is(&c, "--help")) return printf("%s", predict_usage), 0;
        else return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (!hier_path || !ckpt || !image_path || !prompt_path)
        return fprintf(stderr, "scale predict: --hier, --adapters, --image-emb and --prompt-emb are required\n%s",
                       predict_usage), 2;
    if (top < 0) return fprintf(stderr, "scale predict: --top must not be negative\n"), 2;

    sc_hier h;
    const sc_hier_task *t;
    if (open_task(&c, hier_path, task_name, &h, &t)) return 1;
    int H = t->n_combos;
    sc_scale_model m;
    sc_err err;
    float *X = NULL, *P = NULL, *labels = NULL, *none = NULL, *Q = NULL, *prob = NULL, *two = NULL;
    double *Z = NULL;
    int64_t xs[2], ps[2], ns[2], N = 0, n_labels;
    sc_train_config base = sc_train_defaults();
    int rc = sc_scale_model_load(&m, ckpt, &base, &err) == SC_OK ? 0 : cli_fail(&c, &err);
    int have_model = !rc;
    if (!rc) rc = load_floats(&c, image_path, 2, (int64_t[]){-1, m.C}, xs, &X);
    if (!rc) rc = load_floats(&c, prompt_path, 2, (int64_t[]){H, m.C}, ps, &P);
    if (!rc && labels_path) rc = load_labels(&c, labels_path, xs[0], H, &labels, &n_labels);
    if (!rc && none_path) rc = load_floats(&c, none_path, 2, (int64_t[]){1, m.C}, ns, &none);
    if (!rc && labels && t->multilabel && !none)
        rc = cli_failf(&c, "%s: task '%s' is multi-label; its metrics need --none-emb", hier_path, t->name);
    if (!rc) {
        N = xs[0];
        Q = malloc(sizeof(float) * (size_t)(N * H) + 1);
        prob = malloc(sizeof(float) * (size_t)(N * H) + 1);
        Z = malloc(sizeof(double) * (size_t)(N * (H + t->n_concepts + t->n_classes)) + 1);
        if (!Q || !prob || !Z) rc = cli_failf(&c, "out of memory for %lld images", (long long)N);
    }
    if (!rc) {
        /* Z (N, H) = s Q; the canonical prompts are the texts, one per combination. */
        int *identity = malloc(sizeof(int) * (size_t)H);
        for (int k = 0; identity && k < H; k++) identity[k] = k;
        sc_loss_problem p = {N, H, H, t->n_classes, t->n_concepts, identity, NULL, NULL, t->combo_class,
                             t->combo_concept};
        sc_scale_similarity(Q, &m, X, N, P, H);
        double *zl = Z + N * H, *zc = zl + N * t->n_concepts;
        if (identity) sc_scale_scores(Z, zl, zc, Q, &p, logit_scale);
        else rc = cli_failf(&c, "out of memory");
        free(identity);
        if (!rc) {
            softmax_rows(prob, Z, N, H);
            print_explanations(t, prob, N, (int)top);
        }
        if (!rc && none) {
            /* similarity of each image to "No finding.", through the text adapter */
            float *none_sim = malloc(sizeof(float) * (size_t)N + 1);
            two = malloc(sizeof(float) * (size_t)(N * H) + 1);
            if (!none_sim || !two) rc = cli_failf(&c, "out of memory");
            else {
                sc_scale_similarity(none_sim, &m, X, N, none, 1);
                sc_two_prompt_scores(two, Q, none_sim, N, H, (float)logit_scale);
            }
            free(none_sim);
        }
        const double *logits[3] = {Z, zl, zc};
        if (!rc && labels) rc = predict_metrics(&c, t, logits, labels, two, N);
        if (!rc && scores_out) rc = write_logits(&c, scores_out, "combination", Z, N, H);
        if (!rc && scores_out) rc = write_logits(&c, scores_out, "concept", zl, N, t->n_concepts);
        if (!rc && scores_out) rc = write_logits(&c, scores_out, "class", zc, N, t->n_classes);
    }
    if (have_model) sc_scale_model_free(&m);
    free(X), free(P), free(labels), free(none), free(Q), free(prob), free(two), free(Z);
    sc_hier_free(&h);
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
    {"decode", cmd_decode, "decode a PNG, JPEG or PGM/PPM into a .npy of its samples"},
    {"preprocess", cmd_preprocess, "images to model inputs (N, C, S, S), as CLIP, MONET or MedCLIP prepare them"},
    {"tokenize", cmd_tokenize, "text to token ids with a model's tokenizer (CLIP BPE, BERT WordPiece)"},

    /* models */
    {"encode", cmd_encode, "embed images and texts with a CLIP or MedCLIP model"},

    /* SCALE */
    {"hier", cmd_hier, "check a class-concept hierarchy and list its prompts"},
    {"loss", cmd_loss, "every term of the SCALE loss (Eq. 3) and dTotal/dQ"},
    {"train", cmd_train, "train SCALE's adapters on cached embeddings"},
    {"predict", cmd_predict, "score, explain and evaluate images with trained adapters"},
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
