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
        size_t size = bytes > a->block_size ? need : a->block_size;
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

/* ---- 5d. Commands: SCALE (loss, metrics, train, predict) ---------------- */

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

    /* SCALE */

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
