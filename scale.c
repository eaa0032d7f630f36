/* scale.c — the library's plumbing and the `scale` command.
 *
 * Contents
 *   1. Status strings, version, error sentences, assertions
 *   2. Overflow-checked sizes
 *   3. Arenas
 *   4. Random numbers (xorshift64*)
 *   5. Synthetic datasets (Derm7p and PadChest-GR look-alikes, book/15)
 *      5a. drawing: noise, shapes and a float canvas
 *      5b. Derm7p: the real release's value sets and counts
 *      5c. Derm7p: the plan of every case
 *      5d. Derm7p: a lesion and its two views
 *      5e. Derm7p: meta.csv, the index files and the images
 *      5f. PadChest-GR: a chest radiograph and its findings
 *      5g. PadChest-GR: reports, master table and images
 *   6. Datasets and the embedding cache
 *   7. Experiments: the paper's protocol (Sec. 2.3)
 *   8. The `scale` command
 *      8a. argument helpers
 *      8b. commands: inputs (decode, preprocess, tokenize)
 *      8c. commands: models (encode, compare, embed, dataset, cache)
 *      8d. commands: SCALE (loss, metrics, train, predict)
 *      8e. commands: experiments, t-SNE maps, synthetic data, demo
 *      8f. the command table and main
 *
 * The command-line `main` sits behind `#ifndef SC_NO_MAIN` so the test
 * runner can link this file without it.
 */
#define _POSIX_C_SOURCE 200809L
#include "scale.h"

#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
/* 5. Synthetic datasets                                                     */
/* ======================================================================== */

/* The real Derm7p and PadChest-GR cannot ship (registration, licences), so
 * the default experiment runs on look-alikes written in exactly the real
 * releases' layouts: the dataset readers cannot tell them apart. Each case
 * is planned first (its labels, drawn to follow the real datasets' counts),
 * then drawn procedurally so that every label is visible in its image.
 * Everything flows from the seed: the plan from one generator, the pixels
 * of case i from a generator seeded by (seed, i), so images can be drawn
 * in parallel and a plan without images equals the plan with them. */

/* ---- 5a. Drawing: noise, shapes and a float canvas -------------------- */

typedef struct {
    float x, y;
} vec2;

static inline vec2 v2(float x, float y)
{
    vec2 v = {x, y};
    return v;
}

static inline float clampf(float x, float lo, float hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* 0 below e0, 1 above e1, a smooth cubic in between (e0 may exceed e1). */
static inline float smoothstepf(float e0, float e1, float x)
{
    float t = clampf((x - e0) / (e1 - e0), 0.0f, 1.0f);
    return t * t * (3.0f - 2.0f * t);
}

static inline float lerpf(float a, float b, float t)
{
    return a + (b - a) * t;
}

/* SEQUENCED DRAWS. C leaves the order in which a call's arguments (or the
 * operands of + and |) are evaluated unspecified, so f(draw(r), draw(r))
 * hands the two draws to f in an order that depends on the compiler: GCC
 * and Clang drew different images from the same seed. Every draw is
 * therefore its own statement or declarator (those are sequenced). Where a
 * site was once written as one call, its draws keep the order GCC chose
 * (often the last argument first), so the shipped model in data/tiny-vlm,
 * trained on GCC-drawn images, stays reproducible bit for bit. */

/* Uniform in [lo, hi). */
static float rng_range(sc_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * sc_rng_uniform(r);
}

/* An integer hash of a lattice point (a few rounds of multiply-xorshift),
 * the source of every noise field: no tables, the same on every platform. */
static uint32_t hash2(int32_t x, int32_t y, uint32_t seed)
{
    uint32_t h = seed ^ ((uint32_t)x * 0x8DA6B343u) ^ ((uint32_t)y * 0xD8163841u);
    h ^= h >> 16;
    h *= 0x7FEB352Du;
    h ^= h >> 15;
    h *= 0x846CA68Bu;
    h ^= h >> 16;
    return h;
}

static inline float hash01(int32_t x, int32_t y, uint32_t seed)
{
    return (float)(hash2(x, y, seed) >> 8) / 16777216.0f;
}

/* Value noise in [0, 1): random values on the integer lattice, blended
 * with a smooth fade, so features have a size of about one unit. */
static float value_noise(float x, float y, uint32_t seed)
{
    float fx = floorf(x), fy = floorf(y);
    int32_t ix = (int32_t)fx, iy = (int32_t)fy;
    float tx = smoothstepf(0.0f, 1.0f, x - fx), ty = smoothstepf(0.0f, 1.0f, y - fy);
    float a = lerpf(hash01(ix, iy, seed), hash01(ix + 1, iy, seed), tx);
    float b = lerpf(hash01(ix, iy + 1, seed), hash01(ix + 1, iy + 1, seed), tx);
    return lerpf(a, b, ty);
}

/* Fractal noise: octaves of value noise at doubling frequency and halving
 * weight, normalised back to [0, 1). */
static float fbm(float x, float y, uint32_t seed, int octaves)
{
    float sum = 0.0f, weight = 1.0f, total = 0.0f;
    for (int o = 0; o < octaves; o++) {
        sum += weight * value_noise(x, y, seed + 0x9E3779B9u * (uint32_t)o);
        total += weight;
        weight *= 0.5f;
        x *= 2.0f;
        y *= 2.0f;
    }
    return sum / total;
}

/* A closed, wobbly outline: radius(θ) = r (1 + Σ_k amp[k] cos((k+2)θ +
 * phase[k])), harmonics 2 to 5. Harmonic 2 elongates, the higher ones make
 * the border irregular. */
typedef struct {
    vec2 c;
    float r;
    float amp[4], phase[4];
} blob;

static blob blob_random(sc_rng *rng, vec2 c, float r, float wobble)
{
    blob b;
    b.c = c;
    b.r = r;
    for (int k = 0; k < 4; k++) {
        b.amp[k] = wobble * rng_range(rng, 0.3f, 1.0f) / (float)(k + 1);
        b.phase[k] = rng_range(rng, 0.0f, 6.2831853f);
    }
    return b;
}

static float blob_radius(const blob *b, float theta)
{
    float s = 1.0f;
    for (int k = 0; k < 4; k++) s += b->amp[k] * cosf((float)(k + 2) * theta + b->phase[k]);
    return b->r * s;
}

/* Signed distance to the outline, measured along the ray from the centre
 * (exact for a circle, close enough for gentle wobbles): < 0 inside. */
static float blob_sdf(const blob *b, vec2 p)
{
    float dx = p.x - b->c.x, dy = p.y - b->c.y;
    return sqrtf(dx * dx + dy * dy) - blob_radius(b, atan2f(dy, dx));
}

/* A float canvas, samples in [0, 1], and the view that maps pixels to model
 * coordinates: pixel (px, py) shows the point ((px + ½ − cx)/scale,
 * (py + ½ − cy)/scale). Derm7p models are in lesion units (the lesion's mean
 * radius is 1, its centre the origin); chest models in image fractions. */
typedef struct {
    int w, h, channels;  /* channels 1 (grey) or 3 (RGB) */
    float *px;           /* (h, w, channels) */
    float cx, cy, scale; /* the view */
} canvas;

static sc_status canvas_init(canvas *cv, int w, int h, int channels, sc_err *err)
{
    cv->w = w;
    cv->h = h;
    cv->channels = channels;
    cv->cx = cv->cy = 0.0f;
    cv->scale = 1.0f;
    cv->px = calloc((size_t)w * (size_t)h * (size_t)channels, sizeof(float));
    if (!cv->px) return sc_fail(err, SC_ENOMEM, "synthetic image: out of memory for %dx%d pixels", w, h);
    return SC_OK;
}

static void canvas_free(canvas *cv)
{
    free(cv->px);
    cv->px = NULL;
}

static inline vec2 canvas_point(const canvas *cv, int px, int py)
{
    return v2(((float)px + 0.5f - cv->cx) / cv->scale, ((float)py + 0.5f - cv->cy) / cv->scale);
}

/* The pixels [x0, x1) × [y0, y1) that can show the model box
 * [mx0, mx1] × [my0, my1], clipped to the canvas. */
typedef struct {
    int x0, y0, x1, y1;
} pixel_rect;

static pixel_rect canvas_rect(const canvas *cv, float mx0, float my0, float mx1, float my1)
{
    pixel_rect r;
    r.x0 = (int)floorf(mx0 * cv->scale + cv->cx) - 1;
    r.y0 = (int)floorf(my0 * cv->scale + cv->cy) - 1;
    r.x1 = (int)ceilf(mx1 * cv->scale + cv->cx) + 1;
    r.y1 = (int)ceilf(my1 * cv->scale + cv->cy) + 1;
    r.x0 = r.x0 < 0 ? 0 : r.x0;
    r.y0 = r.y0 < 0 ? 0 : r.y0;
    r.x1 = r.x1 > cv->w ? cv->w : r.x1;
    r.y1 = r.y1 > cv->h ? cv->h : r.y1;
    return r;
}

/* Blend colour col into pixel p with weight a (0 keeps p, 1 replaces it). */
static inline void blend(float *p, const float *col, int channels, float a)
{
    for (int c = 0; c < channels; c++) p[c] += (col[c] - p[c]) * a;
}

/* Distance from p to the segment ab. */
static float segment_distance(vec2 p, vec2 a, vec2 b)
{
    float abx = b.x - a.x, aby = b.y - a.y, apx = p.x - a.x, apy = p.y - a.y;
    float len2 = abx * abx + aby * aby;
    float t = len2 > 0.0f ? clampf((apx * abx + apy * aby) / len2, 0.0f, 1.0f) : 0.0f;
    float dx = apx - t * abx, dy = apy - t * aby;
    return sqrtf(dx * dx + dy * dy);
}

/* A stroke of colour: a capsule (a segment with round caps) of half-width
 * hw, or a disc when a == b, blended over what is below with weight
 * alpha. (On a radiograph densities add up instead: paint_grey_capsule.) */
typedef struct {
    vec2 a, b;
    float hw;
    float col[3];
    float alpha;
} stroke;

/* Coverage of a pixel at signed distance d (model units) from an edge:
 * a one-pixel ramp, so edges are antialiased at any scale. */
static inline float coverage(const canvas *cv, float d)
{
    return clampf(0.5f - d * cv->scale, 0.0f, 1.0f);
}

static void paint_stroke(canvas *cv, const stroke *m)
{
    float x0 = fminf(m->a.x, m->b.x) - m->hw, x1 = fmaxf(m->a.x, m->b.x) + m->hw;
    float y0 = fminf(m->a.y, m->b.y) - m->hw, y1 = fmaxf(m->a.y, m->b.y) + m->hw;
    pixel_rect r = canvas_rect(cv, x0, y0, x1, y1);
    for (int py = r.y0; py < r.y1; py++)
        for (int px = r.x0; px < r.x1; px++) {
            float a = m->alpha * coverage(cv, segment_distance(canvas_point(cv, px, py), m->a, m->b) - m->hw);
            if (a > 0.0f) blend(cv->px + ((size_t)py * (size_t)cv->w + (size_t)px) * 3, m->col, 3, a);
        }
}

/* Add `amount` to a grey canvas under a capsule, with soft edges of width
 * `soft` (model units) on top of the pixel ramp. */
static void paint_grey_capsule(canvas *cv, vec2 a, vec2 b, float hw, float soft, float amount)
{
    float reach = hw + soft;
    pixel_rect r = canvas_rect(cv, fminf(a.x, b.x) - reach, fminf(a.y, b.y) - reach, fmaxf(a.x, b.x) + reach,
                               fmaxf(a.y, b.y) + reach);
    for (int py = r.y0; py < r.y1; py++)
        for (int px = r.x0; px < r.x1; px++) {
            float d = segment_distance(canvas_point(cv, px, py), a, b) - hw;
            float w = soft > 0.0f ? 1.0f - smoothstepf(-soft, soft, d) : coverage(cv, d);
            cv->px[(size_t)py * (size_t)cv->w + (size_t)px] += amount * w;
        }
}

/* Separable box blur of radius k (a (2k+1)-tap mean along rows, then
 * columns), repeated `passes` times: three passes approach a Gaussian. */
static sc_status canvas_blur(canvas *cv, int k, int passes, sc_err *err)
{
    if (k <= 0) return SC_OK;
    int n = cv->w > cv->h ? cv->w : cv->h, ch = cv->channels;
    float *line = malloc((size_t)n * (size_t)ch * sizeof(float));
    if (!line) return sc_fail(err, SC_ENOMEM, "synthetic image: out of memory for a blur");
    for (int pass = 0; pass < passes; pass++)
        for (int dir = 0; dir < 2; dir++) {
            int len = dir ? cv->h : cv->w, count = dir ? cv->w : cv->h;
            size_t step = dir ? (size_t)cv->w * (size_t)ch : (size_t)ch;
            size_t stride = dir ? (size_t)ch : (size_t)cv->w * (size_t)ch;
            for (int j = 0; j < count; j++) {
                float *base = cv->px + (size_t)j * stride;
                for (int i = 0; i < len; i++)
                    for (int c = 0; c < ch; c++) line[(size_t)i * (size_t)ch + (size_t)c] = base[(size_t)i * step + (size_t)c];
                for (int i = 0; i < len; i++)
                    for (int c = 0; c < ch; c++) {
                        float s = 0.0f;
                        for (int d = -k; d <= k; d++) {
                            int q = i + d < 0 ? 0 : i + d >= len ? len - 1 : i + d; /* edges repeat */
                            s += line[(size_t)q * (size_t)ch + (size_t)c];
                        }
                        base[(size_t)i * step + (size_t)c] = s / (float)(2 * k + 1);
                    }
            }
        }
    free(line);
    return SC_OK;
}

/* Largest-remainder apportionment: counts[i] ≈ total · weights[i] / Σ
 * weights, summing exactly to total; ties go to the earlier index. The
 * synthetic datasets use it wherever a count should follow the real one,
 * so at the real size the real counts come out exactly. */
/* @book begin synth-apportion */
static void apportion(int total, const int *weights, int n, int *counts)
{
    int64_t sum = 0;
    for (int i = 0; i < n; i++) sum += weights[i];
    int given = 0;
    for (int i = 0; i < n; i++) {
        counts[i] = sum ? (int)((int64_t)total * weights[i] / sum) : 0;
        given += counts[i];
    }
    while (given < total && sum) {
        int best = -1;
        int64_t best_rem = -1;
        for (int i = 0; i < n; i++) {
            /* remainder of total·w/sum, adjusted for the units already added */
            int64_t rem = (int64_t)total * weights[i] - (int64_t)counts[i] * sum;
            if (weights[i] > 0 && rem > best_rem) {
                best_rem = rem;
                best = i;
            }
        }
        counts[best]++;
        given++;
    }
}
/* @book end synth-apportion */

/* Draw an index with probability proportional to weights[i]. */
static int draw_weighted(sc_rng *r, const int *weights, int n)
{
    int64_t sum = 0;
    for (int i = 0; i < n; i++) sum += weights[i];
    SC_ASSERT(sum > 0 && sum < UINT32_MAX, "draw_weighted: weights sum to %lld", (long long)sum);
    int64_t x = (int64_t)sc_rng_below(r, (uint32_t)sum);
    for (int i = 0; i < n; i++) {
        if (x < weights[i]) return i;
        x -= weights[i];
    }
    return n - 1;
}

/* mkdir that accepts an existing directory. */
static sc_status make_dir(const char *path, sc_err *err)
{
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return SC_OK;
    return sc_fail(err, SC_EIO, "%s: cannot create directory: %s", path, strerror(errno));
}

/* snprintf into a path buffer, failing cleanly when it does not fit. */
static sc_status join_path(char *buf, size_t size, sc_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static sc_status join_path(char *buf, size_t size, sc_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= size) return sc_fail(err, SC_EARG, "%.200s...: path too long", buf);
    return SC_OK;
}

/* The generator of case i's pixels, independent of every other case's,
 * so cases can be drawn in any order, on any number of threads. `salt`
 * separates the streams a case uses (shape, noise, ...). */
static void case_rng(sc_rng *r, uint64_t seed, int i, uint64_t salt)
{
    sc_rng_seed(r, seed ^ (salt + 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1)));
}

/* Draw (and write) case i; on failure fill err. */
typedef sc_status (*draw_case_fn)(const void *ctx, int i, sc_err *err);

typedef struct {
    draw_case_fn draw;
    const void *ctx;
    int first;          /* case of task 0 */
    sc_status *status;  /* (n) per case */
    sc_err *errs;       /* (n) per case */
} draw_batch;

static void draw_batch_task(void *arg, int64_t t)
{
    const draw_batch *b = arg;
    int i = b->first + (int)t;
    b->status[i] = b->draw(b->ctx, i, &b->errs[i]);
}

/* All n cases on the thread pool, in batches of 32 with a progress call
 * after each; the first case that failed (in case order) is reported. */
static sc_status draw_cases(int n, draw_case_fn draw, const void *ctx, void (*progress)(void *, int, int),
                            void *progress_user, sc_err *err)
{
    sc_status st = SC_OK, *status = calloc((size_t)n, sizeof *status);
    sc_err *errs = calloc((size_t)n, sizeof *errs);
    if (!status || !errs) st = sc_fail(err, SC_ENOMEM, "synthetic images: out of memory for %d cases", n);
    const int chunk = 32;
    for (int first = 0; first < n && !st; first += chunk) {
        draw_batch b = {draw, ctx, first, status, errs};
        int count = n - first < chunk ? n - first : chunk;
        sc_parallel_for(count, draw_batch_task, &b);
        for (int i = first; i < first + count && !st; i++)
            if (status[i]) st = sc_fail(err, status[i], "%s", errs[i].msg);
        if (progress) progress(progress_user, first + count, n);
    }
    free(status);
    free(errs);
    return st;
}

/* 8-bit pixels (h, w, channels) as JPEG at `quality` or as PNG. */
static sc_status write_8bit(const char *path, uint8_t *px, int w, int h, int channels, int jpeg, int quality,
                            sc_err *err)
{
    sc_image img;
    memset(&img, 0, sizeof img);
    img.width = w;
    img.height = h;
    img.channels = channels;
    img.bits = 8;
    img.pixels = px;
    return jpeg ? sc_jpeg_write(path, &img, quality, err) : sc_png_write(path, &img, err);
}

/* Contact sheets are JPEG when the name says so, else PNG. */
static int names_jpeg(const char *path)
{
    size_t len = strlen(path);
    return len > 4 && (!strcmp(path + len - 4, ".jpg") || !strcmp(path + len - 4, ".JPG"));
}

/* ---- 5b. Derm7p: the real release's value sets and counts -------------- */

/* Every count below is from the public copy of release_v0/meta/meta.csv
 * (1011 cases; book/15 and the facts file say where), tallied per diagnosis
 * group: the groups of derm7pt's Derm7PtDatasetGroupInfrequent (all nevi;
 * all melanomas; dermatofibroma, lentigo, melanosis, miscellaneous and
 * vascular lesions as MISC). A synthetic case draws its diagnosis first and
 * every other column from its group's row, so melanoma-indicative values
 * come mostly with melanomas, as in the real data, and at n = 1011 every
 * marginal count equals the real one. */
enum { GROUP_BCC, GROUP_NEV, GROUP_MEL, GROUP_MISC, GROUP_SK, N_GROUPS };

typedef struct {
    const char *name; /* the exact string of meta.csv's diagnosis column */
    int group;
    int count;        /* cases in the real release */
} derm_diagnosis;

/* In the order of the real file, which is sorted this way. */
static const derm_diagnosis derm_diagnoses[] = {
    {"basal cell carcinoma", GROUP_BCC, 42},          {"blue nevus", GROUP_NEV, 28},
    {"clark nevus", GROUP_NEV, 399},                  {"combined nevus", GROUP_NEV, 13},
    {"congenital nevus", GROUP_NEV, 17},              {"dermal nevus", GROUP_NEV, 33},
    {"dermatofibroma", GROUP_MISC, 20},               {"lentigo", GROUP_MISC, 24},
    {"melanoma (in situ)", GROUP_MEL, 64},            {"melanoma (less than 0.76 mm)", GROUP_MEL, 102},
    {"melanoma (0.76 to 1.5 mm)", GROUP_MEL, 53},     {"melanoma (more than 1.5 mm)", GROUP_MEL, 28},
    {"melanoma metastasis", GROUP_MEL, 4},            {"melanosis", GROUP_MISC, 16},
    {"miscellaneous", GROUP_MISC, 8},                 {"recurrent nevus", GROUP_NEV, 6},
    {"reed or spitz nevus", GROUP_NEV, 79},           {"seborrheic keratosis", GROUP_SK, 45},
    {"vascular lesion", GROUP_MISC, 29},              {"melanoma", GROUP_MEL, 1},
};
#define N_DIAGNOSES ((int)(sizeof derm_diagnoses / sizeof derm_diagnoses[0]))
#define DERM_REAL_CASES 1011

/* The seven criteria, then the five other categorical columns, in the
 * order of meta.csv. Criterion values are listed in data/derm7p.hier's
 * concept order (tests/check_synth.c holds the two to each other). */
enum {
    COL_PN, COL_STR, COL_PIG, COL_RS, COL_DAG, COL_BWV, COL_VS, N_CRITERIA,
    COL_DIFFICULTY = N_CRITERIA, COL_ELEVATION, COL_LOCATION, COL_SEX, COL_MANAGEMENT, N_DERM_COLUMNS
};
enum { PN_ABSENT, PN_TYPICAL, PN_ATYPICAL };
enum { STR_ABSENT, STR_REGULAR, STR_IRREGULAR };
enum { PIG_ABSENT, PIG_LOCALIZED_REGULAR, PIG_DIFFUSE_REGULAR, PIG_LOCALIZED_IRREGULAR, PIG_DIFFUSE_IRREGULAR };
enum { RS_ABSENT, RS_BLUE, RS_WHITE, RS_COMBINATIONS };
enum { DAG_ABSENT, DAG_REGULAR, DAG_IRREGULAR };
enum { BWV_ABSENT, BWV_PRESENT };
enum { VS_ABSENT, VS_ARBORIZING, VS_COMMA, VS_HAIRPIN, VS_WITHIN_REGRESSION, VS_WREATH, VS_DOTTED, VS_LINEAR_IRREGULAR };
enum { ELEVATION_FLAT, ELEVATION_PALPABLE, ELEVATION_NODULAR };

#define DERM_MAX_VALUES 9
typedef struct {
    const char *column;
    int n_values;
    const char *value[DERM_MAX_VALUES];
    int points[DERM_MAX_VALUES];             /* 7-point checklist weight of each value */
    int count[N_GROUPS][DERM_MAX_VALUES];    /* real cases per group (BCC NEV MEL MISC SK) and value */
} derm_column;

static const derm_column derm_columns[N_DERM_COLUMNS] = {
    {"pigment_network", 3, {"absent", "typical", "atypical"}, {0, 0, 2},
     {{39, 2, 1}, {195, 302, 78}, {81, 33, 138}, {52, 37, 8}, {33, 7, 5}}},
    {"streaks", 3, {"absent", "regular", "irregular"}, {0, 0, 1},
     {{39, 0, 3}, {400, 90, 85}, {94, 6, 152}, {79, 10, 8}, {41, 1, 3}}},
    {"pigmentation", 5, {"absent", "localized regular", "diffuse regular", "localized irregular", "diffuse irregular"},
     {0, 0, 0, 1, 1},
     {{29, 0, 0, 2, 11}, {376, 2, 77, 20, 100}, {108, 1, 2, 14, 127}, {65, 0, 21, 3, 8}, {10, 0, 15, 1, 19}}},
    {"regression_structures", 4, {"absent", "blue areas", "white areas", "combinations"}, {0, 1, 1, 1},
     {{35, 4, 1, 2}, {452, 73, 18, 32}, {142, 35, 15, 60}, {87, 2, 4, 4}, {42, 2, 0, 1}}},
    {"dots_and_globules", 3, {"absent", "regular", "irregular"}, {0, 0, 1},
     {{19, 1, 22}, {113, 291, 171}, {21, 10, 221}, {54, 20, 23}, {22, 12, 11}}},
    {"blue_whitish_veil", 2, {"absent", "present"}, {0, 2}, {{33, 9}, {512, 63}, {132, 120}, {96, 1}, {43, 2}}},
    {"vascular_structures", 8,
     {"absent", "arborizing", "comma", "hairpin", "within regression", "wreath", "dotted", "linear irregular"},
     {0, 0, 0, 0, 0, 0, 2, 2},
     {{15, 23, 0, 2, 1, 0, 1, 0}, {518, 3, 19, 1, 16, 0, 17, 1}, {172, 2, 0, 4, 28, 0, 29, 17},
      {83, 2, 3, 2, 1, 2, 4, 0}, {35, 1, 1, 6, 0, 0, 2, 0}}},
    {"level_of_diagnostic_difficulty", 3, {"low", "medium", "high"}, {0},
     {{14, 16, 12}, {190, 244, 141}, {115, 64, 73}, {54, 25, 18}, {12, 23, 10}}},
    {"elevation", 3, {"flat", "palpable", "nodular"}, {0},
     {{0, 27, 15}, {322, 222, 31}, {74, 123, 55}, {49, 35, 13}, {3, 33, 9}}},
    {"location", 9,
     {"abdomen", "head neck", "lower limbs", "upper limbs", "back", "chest", "acral", "buttocks", "genital areas"},
     {0},
     {{1, 17, 1, 4, 18, 1, 0, 0, 0}, {90, 19, 107, 56, 177, 57, 52, 17, 0}, {18, 23, 73, 32, 68, 31, 3, 3, 1},
      {5, 22, 19, 25, 6, 5, 7, 1, 7}, {11, 11, 0, 5, 12, 6, 0, 0, 0}}},
    {"sex", 2, {"female", "male"}, {0}, {{24, 18}, {288, 287}, {136, 116}, {57, 40}, {17, 28}}},
    {"management", 3, {"excision", "clinical follow up", "no further examination"}, {0},
     {{42, 0, 0}, {278, 268, 29}, {252, 0, 0}, {23, 24, 50}, {10, 4, 31}}},
};

/* The image folders of the release, the file-name stem used inside each
 * (NEL/Nel025.jpg, Gzl/gzl01.jpg, New/newl035.jpg), the digits of its
 * numbers, and how many dermoscopic images of the 1011 it holds. */
typedef struct {
    const char *folder, *stem;
    int digits, weight;
} derm_folder;

static const derm_folder derm_folders[] = {
    {"A1l", "Aal", 3, 30}, {"A2l", "Abl", 3, 36}, {"A3l", "Acl", 3, 38}, {"Adl", "Adl", 3, 35},
    {"Ael", "Ael", 3, 47}, {"FAL", "Fal", 3, 21}, {"FBL", "Fbl", 3, 38}, {"FCL", "Fcl", 3, 38},
    {"FDL", "Fdl", 3, 20}, {"FEL", "Fel", 3, 22}, {"FFL", "Ffl", 3, 25}, {"Fgl", "Fgl", 3, 33},
    {"Fhl", "Fhl", 3, 42}, {"Fil", "Fil", 3, 14}, {"Fll", "Fll", 3, 32}, {"Fml", "Fml", 3, 3},
    {"Gal", "Gal", 3, 38}, {"Gbl", "Gbl", 3, 2},  {"Gcl", "Gcl", 3, 6},  {"Gdl", "Gdl", 3, 9},
    {"Ggl", "Ggl", 3, 42}, {"Gzl", "gzl", 2, 42}, {"NAL", "Nal", 3, 32}, {"NBL", "Nbl", 3, 37},
    {"NCL", "Ncl", 3, 30}, {"NDL", "Ndl", 3, 38}, {"NEL", "Nel", 3, 38}, {"NFL", "Nfl", 3, 30},
    {"NGL", "Ngl", 3, 44}, {"NHL", "Nhl", 3, 5},  {"NIL", "Nil", 3, 40}, {"NLL", "Nll", 3, 35},
    {"NML", "Nml", 3, 42}, {"New", "newl", 3, 27},
};
#define N_DERM_FOLDERS ((int)(sizeof derm_folders / sizeof derm_folders[0]))

/* Rare columns, per 1011 real cases: upper-case .JPG names (76 clinic, 52
 * dermoscopic), a case_id (27), and the two kinds of notes that mark a
 * clinical image replaced by the dermoscopic one (4 and 5). The index
 * files split 413 / 203 / 395. */
enum { DERM_UPPER_CLINIC = 76, DERM_UPPER_DERM = 52, DERM_CASE_IDS = 27, DERM_NOTES_MISSING = 4,
       DERM_NOTES_REPLACED = 5 };
static const int derm_split_sizes[3] = {413, 203, 395};
static const char *const derm_split_names[3] = {"train", "valid", "test"};

/* ---- 5c. Derm7p: the plan of every case ------------------------------- */

typedef struct {
    int diagnosis;                /* index into derm_diagnoses */
    int value[N_DERM_COLUMNS];    /* index into each column's values */
    int score;                    /* the 7-point score: Σ points of the criteria */
    int split;                    /* 0 train, 1 valid, 2 test */
    int clinic_is_derm;           /* the clinical image was replaced by the dermoscopic one */
    char clinic[40], derm[40];    /* paths under images/, as meta.csv writes them */
    char case_id[40];
    char notes[120];
} derm_case;

/* Mark k of n rows at random (flag[i] = 1). */
static void choose_rows(sc_rng *r, int n, int k, unsigned char *flag, int *scratch)
{
    for (int i = 0; i < n; i++) {
        scratch[i] = i;
        flag[i] = 0;
    }
    sc_rng_shuffle(r, scratch, n);
    for (int i = 0; i < k && i < n; i++) flag[scratch[i]] = 1;
}

/* Count proportional to a real per-1011 count, rounded to nearest. */
static int derm_scaled(int n, int real)
{
    return (int)(((int64_t)n * real + DERM_REAL_CASES / 2) / DERM_REAL_CASES);
}

/* Diagnoses by apportionment in the real file's order; then, within each
 * diagnosis group, each column's values by apportionment of the group's
 * real counts, handed to the group's cases in random order. */
/* @book begin synth-derm-labels */
static void derm_plan_labels(derm_case *cases, int n, sc_rng *r, int *scratch)
{
    int weights[N_DIAGNOSES], counts[N_DIAGNOSES];
    for (int d = 0; d < N_DIAGNOSES; d++) weights[d] = derm_diagnoses[d].count;
    apportion(n, weights, N_DIAGNOSES, counts);
    for (int d = 0, i = 0; d < N_DIAGNOSES; d++)
        for (int k = 0; k < counts[d]; k++) cases[i++].diagnosis = d;

    for (int g = 0; g < N_GROUPS; g++) {
        int m = 0; /* the group's cases, listed in scratch[0..m) */
        for (int i = 0; i < n; i++)
            if (derm_diagnoses[cases[i].diagnosis].group == g) scratch[m++] = i;
        int *values = scratch + n; /* (m) one value per case of the group */
        for (int col = 0; col < N_DERM_COLUMNS; col++) {
            const derm_column *c = &derm_columns[col];
            int vcount[DERM_MAX_VALUES];
            apportion(m, c->count[g], c->n_values, vcount);
            for (int v = 0, k = 0; v < c->n_values; v++)
                for (int j = 0; j < vcount[v]; j++) values[k++] = v;
            sc_rng_shuffle(r, values, m);
            for (int k = 0; k < m; k++) cases[scratch[k]].value[col] = values[k];
        }
    }
    for (int i = 0; i < n; i++) {
        cases[i].score = 0;
        for (int col = 0; col < N_CRITERIA; col++) cases[i].score += derm_columns[col].points[cases[i].value[col]];
    }
}
/* @book end synth-derm-labels */

/* Image names in the release's style: a folder drawn by its real share,
 * numbers running on inside it, the clinical image first (usually: one
 * case in ten has them the other way round), and a few names upper case
 * with .JPG (.PNG when writing PNG). */
static void derm_plan_names(derm_case *cases, int n, sc_rng *r, int png, unsigned char *flag, int *scratch)
{
    int weights[N_DERM_FOLDERS], next[N_DERM_FOLDERS];
    for (int f = 0; f < N_DERM_FOLDERS; f++) {
        weights[f] = derm_folders[f].weight;
        next[f] = 1 + (int)sc_rng_below(r, 20);
    }
    unsigned char *upper_clinic = flag, *upper_derm = flag + n;
    choose_rows(r, n, derm_scaled(n, DERM_UPPER_CLINIC), upper_clinic, scratch);
    choose_rows(r, n, derm_scaled(n, DERM_UPPER_DERM), upper_derm, scratch);
    for (int i = 0; i < n; i++) {
        derm_case *c = &cases[i];
        const derm_folder *f = &derm_folders[draw_weighted(r, weights, N_DERM_FOLDERS)];
        int number = next[f - derm_folders];
        next[f - derm_folders] += 2;
        int clinic_no = number, derm_no = number + 1;
        if (sc_rng_below(r, 10) == 0) clinic_no = number + 1, derm_no = number;
        for (int k = 0; k < 2; k++) {
            int upper = k ? upper_derm[i] : upper_clinic[i];
            char stem[8];
            size_t len = strlen(f->stem);
            for (size_t j = 0; j <= len; j++) stem[j] = upper ? (char)toupper((unsigned char)f->stem[j]) : f->stem[j];
            const char *ext = png ? (upper ? "PNG" : "png") : (upper ? "JPG" : "jpg");
            snprintf(k ? c->derm : c->clinic, sizeof c->derm, "%s/%s%0*d.%s", f->folder, stem, f->digits,
                     k ? derm_no : clinic_no, ext);
        }
        /* a case_id, when set, reads like "1d171819": a series letter and
         * the numbers of the images that belong together */
        snprintf(c->case_id, sizeof c->case_id, "1%c%d%d%d", tolower((unsigned char)f->stem[1]), clinic_no,
                 clinic_no + 1, clinic_no + 2);
    }
    unsigned char *keep_id = flag;
    choose_rows(r, n, derm_scaled(n, DERM_CASE_IDS), keep_id, scratch);
    for (int i = 0; i < n; i++)
        if (!keep_id[i]) cases[i].case_id[0] = '\0';
}

/* The two kinds of notes: the clinical image missing, or replaced; either
 * way the clinic column then names the dermoscopic image. */
static void derm_plan_notes(derm_case *cases, int n, sc_rng *r, unsigned char *flag, int *scratch)
{
    int missing = derm_scaled(n, DERM_NOTES_MISSING), replaced = derm_scaled(n, DERM_NOTES_REPLACED);
    choose_rows(r, n, missing + replaced, flag, scratch);
    int seen = 0;
    for (int i = 0; i < n; i++) {
        derm_case *c = &cases[i];
        c->notes[0] = '\0';
        if (!flag[i]) continue;
        if (seen++ < missing)
            snprintf(c->notes, sizeof c->notes, "Clinical missing and replaced with derm");
        else
            snprintf(c->notes, sizeof c->notes, "Replaced clinic %s with derm %s", c->clinic, c->derm);
        memcpy(c->clinic, c->derm, sizeof c->clinic);
        c->clinic_is_derm = 1;
    }
}

/* Splits of the real sizes' proportions, stratified by diagnosis: walking
 * the cases in diagnosis order (shuffled within each diagnosis), each goes
 * to the split furthest below its share so far. Every split's share of
 * every diagnosis then stays within one case of proportional. */
static void derm_plan_splits(derm_case *cases, int n, sc_rng *r, int *scratch)
{
    int sizes[3];
    apportion(n, derm_split_sizes, 3, sizes);
    int i = 0;
    while (i < n) {
        int j = i;
        while (j < n && cases[j].diagnosis == cases[i].diagnosis) j++;
        for (int k = i; k < j; k++) scratch[k - i] = k;
        sc_rng_shuffle(r, scratch, j - i);
        for (int k = i; k < j; k++) scratch[n + k] = scratch[k - i];
        i = j;
    }
    int given[3] = {0, 0, 0};
    for (int k = 0; k < n; k++) {
        int best = 0;
        int64_t best_deficit = INT64_MIN;
        for (int s = 0; s < 3; s++) {
            int64_t deficit = (int64_t)(k + 1) * sizes[s] - (int64_t)given[s] * n; /* × n */
            if (deficit > best_deficit) best_deficit = deficit, best = s;
        }
        cases[scratch[n + k]].split = best;
        given[best]++;
    }
    for (int s = 0; s < 3; s++)
        SC_ASSERT(given[s] == sizes[s], "derm splits: %d cases in split %d, expected %d", given[s], s, sizes[s]);
}

static sc_status derm_plan(derm_case **out, int n, uint64_t seed, int png, sc_err *err)
{
    derm_case *cases = calloc((size_t)n, sizeof *cases);
    int *scratch = malloc((size_t)n * 2 * sizeof *scratch);
    unsigned char *flag = malloc((size_t)n * 2);
    if (!cases || !scratch || !flag) {
        free(cases), free(scratch), free(flag);
        return sc_fail(err, SC_ENOMEM, "synthetic Derm7p: out of memory for %d cases", n);
    }
    sc_rng r;
    sc_rng_seed(&r, seed);
    derm_plan_labels(cases, n, &r, scratch);
    derm_plan_names(cases, n, &r, png, flag, scratch);
    derm_plan_notes(cases, n, &r, flag, scratch);
    derm_plan_splits(cases, n, &r, scratch);
    free(scratch);
    free(flag);
    *out = cases;
    return SC_OK;
}

/* ---- 5d. Derm7p: a lesion and its two views --------------------------- */

/* A lesion is drawn in lesion units: its centre at the origin, its mean
 * radius near 1. Fields that cover areas (the lesion's colour, a blotch,
 * the pigment network, regression, the veil) are evaluated per pixel;
 * small things (globules, streaks, vessels, hairs) are a list of marks
 * painted over them in order. The dermoscopic view shows the lesion large
 * and sharp; the clinical view shows the same model from further away,
 * blurred, under flash lighting. Sizes are chosen so that each criterion
 * stays visible after a downscale to 64-96 pixels: network lines of 3-6
 * px at 192 px, globules of 7 px, streaks a quarter of the radius long. */
#define LESION_MAX_STROKES 640

typedef struct {
    float skin[3];
    uint32_t seed;              /* of the noise fields */
    blob shape;                 /* the lesion's outline */
    float edge;                 /* softness of its border */
    float base[3], dark[3];     /* its colour, and that of darker mottling */
    float variegation;          /* 0 = even colour, 1 = strongly mottled */
    int network;                /* PN_* */
    float net_cell, net_hw, net_jitter, net_broken;
    vec2 net_dir;               /* atypical: the side the network covers */
    float net_col[3];
    int blotch;                 /* PIG_* */
    blob blotch_shape;
    float blotch_col[3];
    int n_regress;              /* regression areas: blue (peppered) or white (scar-like) */
    blob regress[2];
    int regress_white[2];
    int veil;                   /* blue-whitish veil */
    blob veil_shape;
    int vessel_patch;           /* vessels within regression: a milky-pink patch */
    blob patch_shape;
    stroke strokes[LESION_MAX_STROKES];
    int n_strokes;
    int elevation;              /* ELEVATION_*: shading in the clinical view */
    int vignette;               /* the dermatoscope's round field darkens the corners */
    vec2 offset;                /* where the lesion sits in the frame, in lesion units */
} lesion;

static const float COL_VESSEL[3] = {0.86f, 0.10f, 0.15f};
static const float COL_HAIR[3] = {0.10f, 0.07f, 0.05f};

static void set3(float *dst, float a, float b, float c)
{
    dst[0] = a, dst[1] = b, dst[2] = c;
}

static void mix3(float *dst, const float *a, const float *b, float t)
{
    for (int k = 0; k < 3; k++) dst[k] = lerpf(a[k], b[k], t);
}

static void add_stroke(lesion *L, vec2 a, vec2 b, float hw, const float *col, float alpha)
{
    SC_ASSERT(L->n_strokes < LESION_MAX_STROKES, "lesion: more than %d strokes", LESION_MAX_STROKES);
    stroke *m = &L->strokes[L->n_strokes++];
    m->a = a;
    m->b = b;
    m->hw = hw;
    memcpy(m->col, col, sizeof m->col);
    m->alpha = alpha;
}

static void add_dot(lesion *L, vec2 c, float r, const float *col, float alpha)
{
    add_stroke(L, c, c, r, col, alpha);
}

/* The point at fraction rho of the border along angle theta. */
static vec2 lesion_at(const lesion *L, float rho, float theta)
{
    float r = rho * blob_radius(&L->shape, theta);
    return v2(r * cosf(theta), r * sinf(theta));
}

static vec2 step_from(vec2 p, float heading, float len)
{
    return v2(p.x + len * cosf(heading), p.y + len * sinf(heading));
}

/* Colours and outline by diagnosis: nevi tan to brown and round, melanomas
 * darker, mottled and irregular, basal cell carcinomas pink, seborrheic
 * keratoses waxy brown with a sharp edge, vascular lesions red-purple. */
static void lesion_body(lesion *L, int diagnosis, sc_rng *r)
{
    int group = derm_diagnoses[diagnosis].group;
    const char *name = derm_diagnoses[diagnosis].name;
    float light[3], deep[3];
    set3(light, 0.95f, 0.81f, 0.71f);
    set3(deep, 0.78f, 0.58f, 0.45f);
    mix3(L->skin, light, deep, rng_range(r, 0.0f, 0.8f));
    float wobble = 0.05f, edge = 0.05f, t = sc_rng_uniform(r);
    L->variegation = 0.25f;
    set3(L->dark, 0.36f, 0.23f, 0.16f);
    switch (group) {
    case GROUP_MEL:
        set3(light, 0.53f, 0.36f, 0.25f);
        set3(deep, 0.38f, 0.24f, 0.17f);
        set3(L->dark, 0.20f, 0.13f, 0.11f);
        L->variegation = 0.75f;
        wobble = rng_range(r, 0.10f, 0.16f);
        edge = 0.025f;
        break;
    case GROUP_BCC:
        set3(light, 0.82f, 0.63f, 0.59f);
        set3(deep, 0.74f, 0.55f, 0.53f);
        set3(L->dark, 0.50f, 0.50f, 0.57f);
        edge = 0.03f;
        break;
    case GROUP_SK:
        set3(light, 0.60f, 0.47f, 0.34f);
        set3(deep, 0.50f, 0.38f, 0.27f);
        L->variegation = 0.45f;
        edge = 0.02f;
        break;
    case GROUP_MISC:
        if (!strcmp(name, "vascular lesion")) set3(light, 0.64f, 0.24f, 0.32f), set3(deep, 0.52f, 0.18f, 0.28f);
        else if (!strcmp(name, "dermatofibroma")) set3(light, 0.74f, 0.58f, 0.48f), set3(deep, 0.66f, 0.50f, 0.40f);
        else set3(light, 0.70f, 0.53f, 0.39f), set3(deep, 0.62f, 0.45f, 0.32f);
        break;
    default: /* nevi; a blue nevus is slate grey */
        if (!strcmp(name, "blue nevus")) set3(light, 0.48f, 0.47f, 0.54f), set3(deep, 0.40f, 0.39f, 0.46f);
        else set3(light, 0.68f, 0.50f, 0.36f), set3(deep, 0.52f, 0.35f, 0.24f);
        break;
    }
    mix3(L->base, light, deep, t);
    L->shape = blob_random(r, v2(0.0f, 0.0f), rng_range(r, 0.85f, 1.0f), wobble);
    L->edge = edge;
    float dy = rng_range(r, -0.12f, 0.12f);    /* y first: see SEQUENCED DRAWS */
    float dx = rng_range(r, -0.12f, 0.12f);
    L->offset = v2(dx, dy);
}

/* Pigment network. Typical: a fine, even, honeycomb-like lattice of brown
 * lines that fades towards the border. Atypical: a coarse lattice of thick
 * black-brown lines, irregular holes, broken segments, covering one side
 * and ending abruptly. */
static void lesion_network(lesion *L, int value, sc_rng *r)
{
    L->network = value;
    if (value == PN_TYPICAL) {
        L->net_cell = rng_range(r, 0.16f, 0.19f);
        L->net_hw = rng_range(r, 0.022f, 0.028f);
        L->net_jitter = 0.15f;
        L->net_broken = 0.0f;
        set3(L->net_col, 0.34f, 0.21f, 0.13f);
    } else if (value == PN_ATYPICAL) {
        L->net_cell = rng_range(r, 0.22f, 0.27f);
        L->net_hw = rng_range(r, 0.045f, 0.055f);
        L->net_jitter = 0.9f;
        L->net_broken = rng_range(r, 0.2f, 0.35f);
        set3(L->net_col, 0.11f, 0.07f, 0.05f);
        float a = rng_range(r, 0.0f, 6.2831853f);
        L->net_dir = v2(cosf(a), sinf(a));
    }
}

/* Pigmentation: a structureless dark blotch. Diffuse covers most of the
 * lesion, localized a small part; regular is round, even and central,
 * irregular has a ragged outline, uneven darkness and sits off centre. */
static void lesion_blotch(lesion *L, int value, sc_rng *r)
{
    L->blotch = value;
    if (value == PIG_ABSENT) return;
    int diffuse = value == PIG_DIFFUSE_REGULAR || value == PIG_DIFFUSE_IRREGULAR;
    int irregular = value == PIG_LOCALIZED_IRREGULAR || value == PIG_DIFFUSE_IRREGULAR;
    float radius = diffuse ? rng_range(r, 0.62f, 0.72f) : rng_range(r, 0.24f, 0.3f);
    float shift = irregular ? (diffuse ? rng_range(r, 0.15f, 0.25f) : rng_range(r, 0.4f, 0.55f)) : rng_range(r, 0.0f, 0.08f);
    float a = rng_range(r, 0.0f, 6.2831853f);
    L->blotch_shape = blob_random(r, v2(shift * cosf(a), shift * sinf(a)), radius, irregular ? 0.3f : 0.03f);
    if (irregular) set3(L->blotch_col, 0.10f, 0.06f, 0.05f);
    else set3(L->blotch_col, 0.29f, 0.17f, 0.11f);
}

/* Regression structures: blue areas (grey-blue, peppered with fine
 * granules), white areas (milky scar-like depigmentation), or both side
 * by side. */
static void lesion_regression(lesion *L, int value, sc_rng *r)
{
    L->n_regress = 0;
    if (value == RS_ABSENT) return;
    float a = rng_range(r, 0.0f, 6.2831853f);
    for (int k = 0; k < (value == RS_COMBINATIONS ? 2 : 1); k++) {
        float angle = a + (float)k * rng_range(r, 1.0f, 1.4f), rho = rng_range(r, 0.42f, 0.55f);
        L->regress[k] = blob_random(r, v2(rho * cosf(angle), rho * sinf(angle)), rng_range(r, 0.27f, 0.34f), 0.15f);
        L->regress_white[k] = value == RS_WHITE || (value == RS_COMBINATIONS && k == 1);
        L->n_regress++;
    }
}

/* Blue-whitish veil: a large confluent blue-white haze with soft edges. */
static void lesion_veil(lesion *L, int value, sc_rng *r)
{
    L->veil = value == BWV_PRESENT;
    if (!L->veil) return;
    float a = rng_range(r, 0.0f, 6.2831853f), rho = rng_range(r, 0.0f, 0.25f);
    L->veil_shape = blob_random(r, v2(rho * cosf(a), rho * sinf(a)), rng_range(r, 0.48f, 0.6f), 0.12f);
}

/* Dots and globules. Regular: brown globules of one size on two even
 * rings. Irregular: black to brown dots of very different sizes, crowded
 * in one or two clusters towards the border. */
static void lesion_globules(lesion *L, int value, sc_rng *r)
{
    if (value == DAG_REGULAR) {
        float col[3], size = rng_range(r, 0.052f, 0.06f), turn = rng_range(r, 0.0f, 6.2831853f);
        set3(col, 0.29f, 0.17f, 0.10f);
        const float rho[2] = {0.36f, 0.66f};
        const int count[2] = {6, 11};
        for (int ring = 0; ring < 2; ring++)
            for (int k = 0; k < count[ring]; k++) {
                float theta = turn + 6.2831853f * (float)k / (float)count[ring] + 0.3f * (float)ring;
                add_dot(L, lesion_at(L, rho[ring], theta), size * rng_range(r, 0.95f, 1.05f), col, 0.95f);
            }
    } else if (value == DAG_IRREGULAR) {
        int clusters = 1 + (int)sc_rng_below(r, 2), n = 12 + (int)sc_rng_below(r, 12);
        float centre[2];
        for (int k = 0; k < clusters; k++) centre[k] = rng_range(r, 0.0f, 6.2831853f);
        for (int k = 0; k < n; k++) {
            float theta = centre[k % clusters] + 0.45f * sc_rng_normal(r);
            float rho_mean = rng_range(r, 0.45f, 0.85f);
            float rho = clampf(rho_mean + 0.12f * sc_rng_normal(r), 0.1f, 0.92f);
            float size = 0.02f * expf(rng_range(r, 0.0f, 1.5f)); /* 0.02 .. 0.09 */
            float black[3], brown[3], col[3];
            set3(black, 0.07f, 0.05f, 0.05f);
            set3(brown, 0.34f, 0.20f, 0.12f);
            mix3(col, black, brown, sc_rng_uniform(r));
            if (sc_rng_below(r, 5) == 0) set3(col, 0.34f, 0.37f, 0.48f);
            add_dot(L, lesion_at(L, rho, theta), size, col, 0.95f);
        }
    }
}

/* Streaks: radial lines crossing the border. Regular: many, evenly spaced
 * all around, alike. Irregular: a few, bunched on one or two sides, of
 * uneven length and width, some ending in a bulb. */
static void lesion_streaks(lesion *L, int value, sc_rng *r)
{
    float col[3];
    if (value == STR_REGULAR) {
        set3(col, 0.30f, 0.17f, 0.10f);
        int n = 16 + (int)sc_rng_below(r, 9);
        float turn = rng_range(r, 0.0f, 6.2831853f);
        for (int k = 0; k < n; k++) {
            float theta = turn + 6.2831853f * (float)k / (float)n + 0.04f * sc_rng_normal(r);
            add_stroke(L, lesion_at(L, 0.84f, theta), lesion_at(L, 1.2f, theta), 0.03f, col, 0.92f);
        }
    } else if (value == STR_IRREGULAR) {
        set3(col, 0.15f, 0.09f, 0.06f);
        int sides = 1 + (int)sc_rng_below(r, 2), n = 6 + (int)sc_rng_below(r, 6);
        float centre[2];
        for (int k = 0; k < sides; k++) centre[k] = rng_range(r, 0.0f, 6.2831853f);
        for (int k = 0; k < n; k++) {
            float theta = centre[k % sides] + rng_range(r, -0.8f, 0.8f);
            float hw = rng_range(r, 0.025f, 0.05f);
            vec2 tip = lesion_at(L, rng_range(r, 1.12f, 1.5f), theta);
            add_stroke(L, lesion_at(L, 0.8f, theta), tip, hw, col, 0.92f);
            if (sc_rng_below(r, 2)) add_dot(L, tip, hw * 1.8f, col, 0.92f);
        }
    }
}

/* An arborizing tree: a thick trunk that forks into thinner branches. */
static void add_tree(lesion *L, sc_rng *r, vec2 p, float heading, float len, float hw, int depth)
{
    vec2 q = step_from(p, heading, len);
    add_stroke(L, p, q, hw, COL_VESSEL, 0.95f);
    if (depth == 0) return;
    for (int side = -1; side <= 1; side += 2)
        add_tree(L, r, q, heading + (float)side * rng_range(r, 0.35f, 0.7f), len * 0.72f, hw * 0.62f, depth - 1);
}

/* A wandering line of n segments, turning by up to `turn` radians per step. */
static void add_wander(lesion *L, sc_rng *r, vec2 p, float heading, int n, float seg, float turn, float hw0,
                       float hw1)
{
    for (int k = 0; k < n; k++) {
        vec2 q = step_from(p, heading, seg * rng_range(r, 0.8f, 1.2f));
        add_stroke(L, p, q, rng_range(r, hw0, hw1), COL_VESSEL, 0.92f);
        p = q;
        heading += rng_range(r, -turn, turn);
    }
}

/* Vascular structures, red on the lesion: arborizing trees; short commas;
 * hairpin loops in a pale halo; fine vessels in a milky-pink patch (within
 * regression); a wreath of small vessels around the rim; even red dots;
 * polymorphous irregular lines. */
static void lesion_vessels(lesion *L, int value, sc_rng *r)
{
    float halo[3];
    set3(halo, 0.96f, 0.87f, 0.85f);
    L->vessel_patch = 0;
    switch (value) {
    case VS_ARBORIZING:
        for (int t = 0, n = 2 + (int)sc_rng_below(r, 2); t < n; t++) {
            float theta = rng_range(r, 0.0f, 6.2831853f);
            float heading = theta + 3.1415927f + rng_range(r, -0.6f, 0.6f);
            add_tree(L, r, lesion_at(L, 0.8f, theta), heading, 0.28f, 0.032f, 3);
        }
        break;
    case VS_COMMA:
        for (int k = 0, n = 8 + (int)sc_rng_below(r, 7); k < n; k++) {
            float angle = rng_range(r, 0.0f, 6.2831853f);    /* before the radius: SEQUENCED DRAWS */
            vec2 p = lesion_at(L, rng_range(r, 0.1f, 0.8f), angle);
            float heading = rng_range(r, 0.0f, 6.2831853f), bend = (sc_rng_below(r, 2) ? 1.0f : -1.0f) * 0.55f;
            for (int s = 0; s < 3; s++, heading += bend) {
                vec2 q = step_from(p, heading, 0.055f);
                add_stroke(L, p, q, 0.028f, COL_VESSEL, 0.95f);
                p = q;
            }
        }
        break;
    case VS_HAIRPIN:
        for (int k = 0, n = 5 + (int)sc_rng_below(r, 5); k < n; k++) {
            float angle = rng_range(r, 0.0f, 6.2831853f);    /* before the radius: SEQUENCED DRAWS */
            vec2 c = lesion_at(L, rng_range(r, 0.1f, 0.72f), angle);
            float a = rng_range(r, 0.0f, 6.2831853f), gap = 0.035f, len = 0.14f;
            vec2 side = v2(-sinf(a) * gap, cosf(a) * gap);
            add_dot(L, c, 0.12f, halo, 0.6f);
            vec2 l0 = v2(c.x - side.x, c.y - side.y), r0 = v2(c.x + side.x, c.y + side.y);
            vec2 l1 = step_from(l0, a, len), r1 = step_from(r0, a, len);
            add_stroke(L, l0, l1, 0.018f, COL_VESSEL, 0.95f);
            add_stroke(L, r0, r1, 0.018f, COL_VESSEL, 0.95f);
            /* the loop: a half circle from the end of one leg to the other */
            vec2 fwd = v2(cosf(a) * gap, sinf(a) * gap);
            vec2 mid = v2(0.5f * (l1.x + r1.x), 0.5f * (l1.y + r1.y)), prev = l1;
            for (int s = 1; s <= 4; s++) {
                float phi = 3.1415927f * (float)s / 4.0f;
                vec2 q = v2(mid.x - cosf(phi) * side.x + sinf(phi) * fwd.x, mid.y - cosf(phi) * side.y + sinf(phi) * fwd.y);
                add_stroke(L, prev, q, 0.018f, COL_VESSEL, 0.95f);
                prev = q;
            }
        }
        break;
    case VS_WITHIN_REGRESSION: {
        float theta = rng_range(r, 0.0f, 6.2831853f), rho = rng_range(r, 0.3f, 0.45f);
        L->vessel_patch = 1;
        L->patch_shape = blob_random(r, v2(rho * cosf(theta), rho * sinf(theta)), 0.32f, 0.12f);
        for (int k = 0, n = 8 + (int)sc_rng_below(r, 5); k < n; k++) {
            float a = rng_range(r, 0.0f, 6.2831853f), d = 0.22f * sqrtf(sc_rng_uniform(r));
            vec2 p = v2(L->patch_shape.c.x + d * cosf(a), L->patch_shape.c.y + d * sinf(a));
            if (sc_rng_below(r, 2)) add_dot(L, p, 0.018f, COL_VESSEL, 0.95f);
            else add_wander(L, r, p, rng_range(r, 0.0f, 6.2831853f), 2, 0.045f, 0.8f, 0.011f, 0.013f);
        }
        break;
    }
    case VS_WREATH:
        for (int k = 0, n = 10 + (int)sc_rng_below(r, 7); k < n; k++) {
            float theta = 6.2831853f * (float)k / (float)n + rng_range(r, -0.1f, 0.1f);
            vec2 p = lesion_at(L, 0.88f, theta);
            vec2 q = lesion_at(L, 0.9f, theta + 0.22f);
            add_stroke(L, p, q, 0.024f, COL_VESSEL, 0.95f);
            add_stroke(L, q, lesion_at(L, 0.74f, theta + 0.28f), 0.017f, COL_VESSEL, 0.95f);
        }
        break;
    case VS_DOTTED:
        for (float y = -1.0f; y <= 1.0f; y += 0.19f)
            for (float x = -1.0f; x <= 1.0f; x += 0.19f) {
                float jy = 0.05f * sc_rng_normal(r);          /* y first: SEQUENCED DRAWS */
                vec2 p = v2(x + 0.05f * sc_rng_normal(r), y + jy);
                if (blob_sdf(&L->shape, p) < -0.2f * L->shape.r) add_dot(L, p, rng_range(r, 0.033f, 0.04f), COL_VESSEL, 0.95f);
            }
        break;
    case VS_LINEAR_IRREGULAR:
        for (int k = 0, n = 3 + (int)sc_rng_below(r, 4); k < n; k++) {
            /* Drawn last argument first: SEQUENCED DRAWS. */
            int steps = 6 + (int)sc_rng_below(r, 5);
            float heading = rng_range(r, 0.0f, 6.2831853f), angle = rng_range(r, 0.0f, 6.2831853f);
            vec2 start = lesion_at(L, rng_range(r, 0.0f, 0.6f), angle);
            add_wander(L, r, start, heading, steps, 0.11f, 1.0f, 0.02f, 0.04f);
        }
        break;
    default:
        break;
    }
}

/* Hairs: none in two cases of five, else up to five long dark curves
 * crossing the frame; they belong to no class. */
static void lesion_hairs(lesion *L, sc_rng *r)
{
    int n = sc_rng_below(r, 5) < 2 ? 0 : 1 + (int)sc_rng_below(r, 5);
    for (int k = 0; k < n; k++) {
        float a = rng_range(r, 0.0f, 6.2831853f);
        vec2 p = v2(2.3f * cosf(a), 2.3f * sinf(a));
        float aim_y = rng_range(r, -0.8f, 0.8f);     /* y first: SEQUENCED DRAWS */
        vec2 aim = v2(rng_range(r, -0.8f, 0.8f), aim_y);
        float heading = atan2f(aim.y - p.y, aim.x - p.x), bend = rng_range(r, -0.06f, 0.06f);
        for (int s = 0; s < 16; s++, heading += bend) {
            vec2 q = step_from(p, heading, 0.3f);
            add_stroke(L, p, q, 0.011f, COL_HAIR, 0.85f);
            p = q;
        }
    }
}

static void lesion_build(lesion *L, const derm_case *c, sc_rng *r, int hairs)
{
    memset(L, 0, sizeof *L);
    L->seed = sc_rng_u32(r);
    lesion_body(L, c->diagnosis, r);
    lesion_network(L, c->value[COL_PN], r);
    lesion_blotch(L, c->value[COL_PIG], r);
    lesion_regression(L, c->value[COL_RS], r);
    lesion_veil(L, c->value[COL_BWV], r);
    lesion_globules(L, c->value[COL_DAG], r);
    lesion_streaks(L, c->value[COL_STR], r);
    lesion_vessels(L, c->value[COL_VS], r);
    if (hairs) lesion_hairs(L, r);
    L->elevation = c->value[COL_ELEVATION];
    L->vignette = sc_rng_below(r, 10) < 3;
}

/* Distance (in cell units) from q to the nearest edge of a jittered
 * Voronoi lattice (rows offset by half a cell, so a small jitter gives a
 * honeycomb), and a hash of the two cells that edge separates. */
/* @book begin synth-lattice */
static float lattice_edge(float qx, float qy, float jitter, uint32_t seed, uint32_t *edge_id)
{
    int ix = (int)floorf(qx), iy = (int)floorf(qy);
    float best[2] = {1e30f, 1e30f};
    vec2 site[2] = {{0, 0}, {0, 0}};
    uint32_t id[2] = {0, 0};
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -2; dx <= 2; dx++) {
            int cx = ix + dx, cy = iy + dy;
            uint32_t h = hash2(cx, cy, seed);
            float sx = (float)cx + 0.5f + ((cy & 1) ? 0.5f : 0.0f) + jitter * ((float)(h & 0xFFFF) / 65536.0f - 0.5f);
            float sy = (float)cy + 0.5f + jitter * ((float)(h >> 16) / 65536.0f - 0.5f);
            float d = (qx - sx) * (qx - sx) + (qy - sy) * (qy - sy);
            if (d < best[0]) {
                best[1] = best[0], site[1] = site[0], id[1] = id[0];
                best[0] = d, site[0] = v2(sx, sy), id[0] = h;
            } else if (d < best[1]) {
                best[1] = d, site[1] = v2(sx, sy), id[1] = h;
            }
        }
    /* distance to the bisector of the two nearest sites */
    float ex = site[1].x - site[0].x, ey = site[1].y - site[0].y, len = sqrtf(ex * ex + ey * ey);
    float mx = 0.5f * (site[0].x + site[1].x), my = 0.5f * (site[0].y + site[1].y);
    *edge_id = (id[0] < id[1] ? id[0] * 0x9E3779B1u + id[1] : id[1] * 0x9E3779B1u + id[0]);
    return len > 0.0f ? -((qx - mx) * ex + (qy - my) * ey) / len : 0.0f;
}
/* @book end synth-lattice */

/* The colour of the skin at p, and of the lesion over it. */
static void lesion_pixel(const lesion *L, vec2 p, float pixel, float *col)
{
    float tone = 0.95f + 0.1f * fbm(p.x * 3.0f, p.y * 3.0f, L->seed + 1, 2);
    float red[3];
    set3(red, 0.90f, 0.62f, 0.56f);
    for (int k = 0; k < 3; k++) col[k] = L->skin[k] * tone;
    blend(col, red, 3, 0.2f * fbm(p.x * 1.2f + 17.0f, p.y * 1.2f, L->seed + 2, 2));
    float sd = blob_sdf(&L->shape, p);
    float soft = fmaxf(L->edge, pixel);
    float inside = 1.0f - smoothstepf(-soft, soft, sd);
    if (inside <= 0.0f) return;
    float rr = clampf(1.0f + sd / blob_radius(&L->shape, atan2f(p.y, p.x)), 0.0f, 2.0f); /* 0 centre, 1 border */

    float lesion_col[3];
    float mottle = smoothstepf(0.45f, 0.8f, fbm(p.x * 2.5f, p.y * 2.5f, L->seed + 3, 2));
    mix3(lesion_col, L->base, L->dark, L->variegation * mottle);
    float grain = 0.94f + 0.12f * fbm(p.x * 9.0f, p.y * 9.0f, L->seed + 4, 2);
    for (int k = 0; k < 3; k++) lesion_col[k] *= grain;
    blend(col, lesion_col, 3, inside);

    if (L->blotch != PIG_ABSENT) {
        int irregular = L->blotch == PIG_LOCALIZED_IRREGULAR || L->blotch == PIG_DIFFUSE_IRREGULAR;
        float s = fmaxf(irregular ? 0.02f : 0.05f, pixel);
        float m = 1.0f - smoothstepf(-s, s, blob_sdf(&L->blotch_shape, p));
        float bc[3];
        memcpy(bc, L->blotch_col, sizeof bc);
        if (irregular) {
            float brown[3];
            set3(brown, 0.36f, 0.21f, 0.13f);
            mix3(bc, L->blotch_col, brown, smoothstepf(0.35f, 0.75f, fbm(p.x * 4.0f, p.y * 4.0f, L->seed + 5, 3)));
        }
        blend(col, bc, 3, 0.92f * m * inside);
    }
    if (L->network != PN_ABSENT) {
        uint32_t edge_id;
        float e = L->net_cell * lattice_edge(p.x / L->net_cell, p.y / L->net_cell, L->net_jitter, L->seed + 6, &edge_id);
        float hw = L->net_hw, reach;
        if (L->network == PN_TYPICAL) {
            reach = smoothstepf(0.98f, 0.6f, rr);
        } else {
            hw *= 0.6f + 1.0f * fbm(p.x * 3.0f, p.y * 3.0f, L->seed + 7, 2);
            reach = smoothstepf(-0.35f, -0.05f, p.x * L->net_dir.x + p.y * L->net_dir.y) * (rr < 0.96f);
            if ((float)(hash2((int32_t)edge_id, 7, L->seed) >> 8) / 16777216.0f < L->net_broken) reach = 0.0f;
        }
        float aa = fmaxf(pixel, 0.008f);
        float line = 1.0f - smoothstepf(hw - aa, hw + aa, e);
        blend(col, L->net_col, 3, 0.9f * line * reach * inside);
    }
    for (int k = 0; k < L->n_regress; k++) {
        float m = (1.0f - smoothstepf(-0.05f, 0.05f, blob_sdf(&L->regress[k], p))) * inside;
        if (m <= 0.0f) continue;
        float c[3];
        if (L->regress_white[k]) {
            set3(c, 0.95f, 0.94f, 0.93f);
            blend(col, c, 3, 0.9f * m);
        } else {
            set3(c, 0.50f, 0.56f, 0.68f);
            blend(col, c, 3, 0.85f * m);
            /* peppering: fine dark granules on a lattice, half of the cells filled */
            float g = 0.07f, gx = floorf(p.x / g), gy = floorf(p.y / g);
            uint32_t h = hash2((int32_t)gx, (int32_t)gy, L->seed + 8);
            vec2 dot = v2((gx + 0.25f + 0.5f * (float)(h & 0xFF) / 255.0f) * g, (gy + 0.25f + 0.5f * (float)(h >> 24) / 255.0f) * g);
            float d = sqrtf((p.x - dot.x) * (p.x - dot.x) + (p.y - dot.y) * (p.y - dot.y)) - 0.02f;
            set3(c, 0.30f, 0.34f, 0.47f);
            if (h & 0x100) blend(col, c, 3, m * clampf(0.5f - d / pixel, 0.0f, 1.0f));
        }
    }
    if (L->veil) {
        float m = (1.0f - smoothstepf(-0.1f, 0.1f, blob_sdf(&L->veil_shape, p))) * inside;
        float c[3], haze[3];
        set3(c, 0.60f, 0.70f, 0.86f);
        set3(haze, 0.86f, 0.89f, 0.93f);
        blend(c, haze, 3, 0.5f * fbm(p.x * 5.0f, p.y * 5.0f, L->seed + 9, 2));
        blend(col, c, 3, 0.82f * m);
    }
    if (L->vessel_patch) {
        float m = (1.0f - smoothstepf(-0.06f, 0.06f, blob_sdf(&L->patch_shape, p))) * inside;
        float c[3];
        set3(c, 0.94f, 0.80f, 0.80f);
        blend(col, c, 3, 0.85f * m);
    }
}

/* Draw one view into out (size, size, 3). clinic = 0: the dermoscopic
 * view (lesion diameter about two thirds of the frame, sharp, dark corners
 * in three images of ten); clinic = 1: the same lesion at 0.45 of that
 * scale, blurred, with a light gradient and, for raised lesions, shading
 * and a highlight. Sensor noise comes from noise_rng. */
static sc_status lesion_render(const lesion *L, int size, int clinic, sc_rng *noise_rng, uint8_t *out, sc_err *err)
{
    canvas cv;
    sc_status st = canvas_init(&cv, size, size, 3, err);
    if (st) return st;
    cv.scale = (clinic ? 0.15f : 0.34f) * (float)size;
    cv.cx = 0.5f * (float)size - L->offset.x * cv.scale;
    cv.cy = 0.5f * (float)size - L->offset.y * cv.scale;
    float pixel = 1.0f / cv.scale;
    for (int py = 0; py < size; py++)
        for (int px = 0; px < size; px++)
            lesion_pixel(L, canvas_point(&cv, px, py), pixel, cv.px + ((size_t)py * (size_t)size + (size_t)px) * 3);
    for (int k = 0; k < L->n_strokes; k++) paint_stroke(&cv, &L->strokes[k]);

    if (clinic) {
        st = canvas_blur(&cv, size >= 160 ? 2 : 1, 2, err);
        float lift = L->elevation == ELEVATION_NODULAR ? 1.0f : L->elevation == ELEVATION_PALPABLE ? 0.5f : 0.0f;
        float white[3];
        set3(white, 1.0f, 1.0f, 1.0f);
        for (int py = 0; py < size && !st; py++)
            for (int px = 0; px < size; px++) {
                float *c = cv.px + ((size_t)py * (size_t)size + (size_t)px) * 3;
                vec2 p = canvas_point(&cv, px, py);
                float light = 1.04f - 0.1f * (float)py / (float)size;
                float rr = sqrtf(p.x * p.x + p.y * p.y) / L->shape.r;
                if (lift > 0.0f && rr < 1.1f) {
                    light *= 1.0f - 0.22f * lift * rr * rr;
                    float hx = p.x + 0.35f, hy = p.y + 0.35f;
                    blend(c, white, 3, 0.3f * lift * expf(-(hx * hx + hy * hy) / 0.05f));
                }
                for (int k = 0; k < 3; k++) c[k] *= light;
            }
    } else if (L->vignette) {
        for (int py = 0; py < size; py++)
            for (int px = 0; px < size; px++) {
                float dx = ((float)px + 0.5f) / (float)size - 0.5f, dy = ((float)py + 0.5f) / (float)size - 0.5f;
                float keep = 1.0f - smoothstepf(0.49f, 0.53f, sqrtf(dx * dx + dy * dy));
                float *c = cv.px + ((size_t)py * (size_t)size + (size_t)px) * 3;
                for (int k = 0; k < 3; k++) c[k] *= keep;
            }
    }
    size_t n = (size_t)size * (size_t)size * 3;
    for (size_t i = 0; i < n && !st; i++) {
        /* sensor noise: the sum of two uniforms (triangular), σ = 0.012 */
        float v = cv.px[i] + 0.0294f * (sc_rng_uniform(noise_rng) + sc_rng_uniform(noise_rng) - 1.0f);
        out[i] = (uint8_t)(clampf(v, 0.0f, 1.0f) * 255.0f + 0.5f);
    }
    canvas_free(&cv);
    return st;
}

/* ---- 5e. Derm7p: meta.csv, the index files and the images ------------- */

void sc_synth_derm7p_defaults(sc_synth_derm7p_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->n = DERM_REAL_CASES;
    opt->seed = 7;
    opt->size = 192;
    opt->png = 0;
    opt->quality = 92;
    opt->images = 1;
}

/* meta.csv: the 19 columns in the real order, values as the release
 * writes them (no quoting is needed: no value holds a comma). */
static sc_status derm_write_meta(const char *path, const derm_case *cases, int n, sc_err *err)
{
    static const char *const header[19] = {
        "case_num", "diagnosis", "seven_point_score", "pigment_network", "streaks", "pigmentation",
        "regression_structures", "dots_and_globules", "blue_whitish_veil", "vascular_structures",
        "level_of_diagnostic_difficulty", "elevation", "location", "sex", "management", "clinic", "derm",
        "case_id", "notes"};
    sc_csv_writer w;
    sc_csv_writer_init(&w);
    for (int k = 0; k < 19; k++) sc_csv_put(&w, header[k]);
    sc_csv_end_row(&w);
    for (int i = 0; i < n; i++) {
        const derm_case *c = &cases[i];
        sc_csv_putf(&w, "%d", i + 1);
        sc_csv_put(&w, derm_diagnoses[c->diagnosis].name);
        sc_csv_putf(&w, "%d", c->score);
        for (int col = 0; col < N_DERM_COLUMNS; col++) sc_csv_put(&w, derm_columns[col].value[c->value[col]]);
        sc_csv_put(&w, c->clinic);
        sc_csv_put(&w, c->derm);
        sc_csv_put(&w, c->case_id);
        sc_csv_put(&w, c->notes);
        sc_csv_end_row(&w);
    }
    sc_status st = sc_csv_writer_save(&w, path, err);
    sc_csv_writer_free(&w);
    return st;
}

/* {train,valid,test}_indexes.csv: one column `indexes`, 0-based rows of
 * meta.csv in increasing order. */
static sc_status derm_write_indexes(const char *meta_dir, const derm_case *cases, int n, sc_err *err)
{
    sc_status st = SC_OK;
    for (int s = 0; s < 3 && !st; s++) {
        char path[4096];
        st = join_path(path, sizeof path, err, "%s/%s_indexes.csv", meta_dir, derm_split_names[s]);
        sc_csv_writer w;
        sc_csv_writer_init(&w);
        sc_csv_put(&w, "indexes");
        sc_csv_end_row(&w);
        for (int i = 0; i < n; i++)
            if (cases[i].split == s) {
                sc_csv_putf(&w, "%d", i);
                sc_csv_end_row(&w);
            }
        if (!st) st = sc_csv_writer_save(&w, path, err);
        sc_csv_writer_free(&w);
    }
    return st;
}

typedef struct {
    const derm_case *cases;
    const sc_synth_derm7p_options *opt;
    const char *images_dir;
} derm_images;

/* Draw and write both images of case i (only the dermoscopic one when the
 * clinic column names it too). */
static sc_status derm_draw_case(const void *ctx, int i, sc_err *err)
{
    const derm_images *job = ctx;
    const derm_case *c = &job->cases[i];
    const sc_synth_derm7p_options *opt = job->opt;
    lesion *L = malloc(sizeof *L);
    uint8_t *rgb = malloc((size_t)opt->size * (size_t)opt->size * 3);
    sc_status st = L && rgb ? SC_OK : sc_fail(err, SC_ENOMEM, "synthetic Derm7p: out of memory for case %d", i + 1);
    sc_rng shape_rng, noise_rng;
    case_rng(&shape_rng, opt->seed, i, 1);
    case_rng(&noise_rng, opt->seed, i, 2);
    if (!st) lesion_build(L, c, &shape_rng, 1);
    for (int view = 0; view < 2 && !st; view++) {
        if (view == 1 && c->clinic_is_derm) break;
        char path[4096];
        st = join_path(path, sizeof path, err, "%s/%s", job->images_dir, view ? c->clinic : c->derm);
        if (!st) st = lesion_render(L, opt->size, view, &noise_rng, rgb, err);
        if (!st) st = write_8bit(path, rgb, opt->size, opt->size, 3, !opt->png, opt->quality, err);
    }
    free(L);
    free(rgb);
    return st;
}

static sc_status derm_write_images(const char *images_dir, const derm_case *cases, const sc_synth_derm7p_options *opt,
                                   sc_err *err)
{
    /* one directory per folder in use */
    sc_status st = make_dir(images_dir, err);
    for (int f = 0; f < N_DERM_FOLDERS && !st; f++) {
        int used = 0;
        size_t len = strlen(derm_folders[f].folder);
        for (int i = 0; i < opt->n && !used; i++)
            used = !strncmp(cases[i].derm, derm_folders[f].folder, len) && cases[i].derm[len] == '/';
        char path[4096];
        if (used && !(st = join_path(path, sizeof path, err, "%s/%s", images_dir, derm_folders[f].folder)))
            st = make_dir(path, err);
    }
    derm_images job = {cases, opt, images_dir};
    return st ? st : draw_cases(opt->n, derm_draw_case, &job, opt->progress, opt->progress_user, err);
}

static sc_status derm_write_readme(const char *path, const sc_synth_derm7p_options *opt, sc_err *err)
{
    sc_text t;
    sc_text_init(&t);
    sc_text_printf(&t,
                   "SYNTHETIC data in the layout of the 7-point criteria dataset (Derm7pt release_v0).\n"
                   "These are NOT the real images or metadata: every case was drawn by\n"
                   "  scale synth derm7p --n %d --seed %llu --size %d --format %s\n"
                   "(scale %s). Value strings, columns and file layout follow the real release;\n"
                   "value counts follow its per-diagnosis-group counts. See book/15-synthetic-world.md.\n\n"
                   "meta/meta.csv               one row per case (19 columns)\n"
                   "meta/{train,valid,test}_indexes.csv   0-based rows of meta.csv\n"
                   "images/<folder>/<file>      the clinic and derm images named in meta.csv\n",
                   opt->n, (unsigned long long)opt->seed, opt->size, opt->png ? "png" : "jpg", sc_version());
    sc_status st = sc_text_save(&t, path, err);
    sc_text_free(&t);
    return st;
}

sc_status sc_synth_derm7p(const char *dir, const sc_synth_derm7p_options *opt, sc_err *err)
{
    if (opt->n < 1 || opt->n > 1000000) return sc_fail(err, SC_EARG, "synthetic Derm7p: --n %d is outside 1..1000000", opt->n);
    if (opt->size < 32 || opt->size > 4096)
        return sc_fail(err, SC_EARG, "synthetic Derm7p: image size %d is outside 32..4096", opt->size);
    if (opt->quality < 1 || opt->quality > 100)
        return sc_fail(err, SC_EARG, "synthetic Derm7p: JPEG quality %d is outside 1..100", opt->quality);
    derm_case *cases = NULL;
    sc_status st = derm_plan(&cases, opt->n, opt->seed, opt->png, err);
    if (st) return st;
    char release[4096], meta[4096], path[4096];
    if (!(st = make_dir(dir, err)) && !(st = join_path(release, sizeof release, err, "%s/release_v0", dir)) &&
        !(st = make_dir(release, err)) && !(st = join_path(meta, sizeof meta, err, "%s/meta", release)))
        st = make_dir(meta, err);
    /* images first, the metadata last: a run that fails leaves no meta.csv */
    if (!st && opt->images && !(st = join_path(path, sizeof path, err, "%s/images", release)))
        st = derm_write_images(path, cases, opt, err);
    if (!st) st = derm_write_indexes(meta, cases, opt->n, err);
    if (!st && !(st = join_path(path, sizeof path, err, "%s/README.txt", release)))
        st = derm_write_readme(path, opt, err);
    if (!st && !(st = join_path(path, sizeof path, err, "%s/meta.csv", meta)))
        st = derm_write_meta(path, cases, opt->n, err);
    free(cases);
    return st;
}

/* The criteria side by side: row k shows criterion k, column v a lesion
 * whose only structure is value v of it (column 0: absent, a plain nevus),
 * at `tile` pixels, on white. Each tile is its own seeded lesion. */
sc_status sc_synth_derm7p_contact_sheet(const char *path, int tile, uint64_t seed, sc_err *err)
{
    if (tile < 32 || tile > 1024) return sc_fail(err, SC_EARG, "%s: tile size %d is outside 32..1024", path, tile);
    const int gap = 4, cols = 8, rows = N_CRITERIA;
    int w = cols * tile + (cols + 1) * gap, h = rows * tile + (rows + 1) * gap;
    uint8_t *sheet = malloc((size_t)w * (size_t)h * 3), *rgb = malloc((size_t)tile * (size_t)tile * 3);
    lesion *L = malloc(sizeof *L);
    sc_status st = sheet && rgb && L ? SC_OK : sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    if (!st) memset(sheet, 255, (size_t)w * (size_t)h * 3);
    for (int row = 0; row < rows && !st; row++)
        for (int v = 0; v < derm_columns[row].n_values && !st; v++) {
            derm_case c;
            memset(&c, 0, sizeof c);
            c.diagnosis = 2; /* clark nevus */
            c.value[row] = v;
            sc_rng shape_rng, noise_rng;
            case_rng(&shape_rng, seed, row * cols + v, 1);
            case_rng(&noise_rng, seed, row * cols + v, 2);
            lesion_build(L, &c, &shape_rng, 0);
            L->vignette = 0;
            L->offset = v2(0.0f, 0.0f);
            st = lesion_render(L, tile, 0, &noise_rng, rgb, err);
            int x0 = gap + v * (tile + gap), y0 = gap + row * (tile + gap);
            for (int y = 0; y < tile && !st; y++)
                memcpy(sheet + ((size_t)(y0 + y) * (size_t)w + (size_t)x0) * 3, rgb + (size_t)y * (size_t)tile * 3,
                       (size_t)tile * 3);
        }
    if (!st) st = write_8bit(path, sheet, w, h, 3, names_jpeg(path), 85, err);
    free(sheet);
    free(rgb);
    free(L);
    return st;
}

/* ---- 5f. PadChest-GR: a chest radiograph and its findings ------------- */

/* The paper's tree (Sec. 2.3.1, data/padchest-gr.hier): four classes with
 * coarse locations and each combination's number of positive cases. A
 * finding names the patient's side; on a frontal (PA) radiograph the
 * patient's right is on the image's left. */
enum { PC_ATELECTASIS, PC_CARDIOMEGALY, PC_CONSOLIDATION, PC_EFFUSION, PC_N_CLASSES };
enum { SIDE_RIGHT, SIDE_LEFT, SIDE_BOTH, SIDE_NONE };
enum { SITE_LOWER_LOBE, SITE_RETROCARDIAC, SITE_CARDIAC, SITE_ANGLE, SITE_PLEURAL };

static const char *const pc_labels[PC_N_CLASSES] = {"atelectasis", "cardiomegaly", "consolidation",
                                                    "pleural effusion"};
static const char *const pc_side_words[3] = {"right", "left", "bilateral"};
static const char *const pc_site_words[5] = {"lower lobe", "retrocardiac", "cardiac", "costophrenic angle",
                                             "pleural"};

typedef struct {
    int cls;              /* PC_* */
    const char *concept;  /* the concept's name in data/padchest-gr.hier */
    int count;            /* positive cases in the paper's tree */
    int side, site;
} pc_combo;

static const pc_combo pc_combos[] = {
    {PC_ATELECTASIS, "left lower lobe", 25, SIDE_LEFT, SITE_LOWER_LOBE},
    {PC_ATELECTASIS, "retrocardiac", 17, SIDE_NONE, SITE_RETROCARDIAC},
    {PC_ATELECTASIS, "right lower lobe", 17, SIDE_RIGHT, SITE_LOWER_LOBE},
    {PC_CARDIOMEGALY, "cardiac", 437, SIDE_NONE, SITE_CARDIAC},
    {PC_CONSOLIDATION, "left lower lobe", 13, SIDE_LEFT, SITE_LOWER_LOBE},
    {PC_CONSOLIDATION, "right lower lobe", 13, SIDE_RIGHT, SITE_LOWER_LOBE},
    {PC_EFFUSION, "bilateral costophrenic angle", 53, SIDE_BOTH, SITE_ANGLE},
    {PC_EFFUSION, "bilateral pleural", 40, SIDE_BOTH, SITE_PLEURAL},
    {PC_EFFUSION, "left costophrenic angle", 80, SIDE_LEFT, SITE_ANGLE},
    {PC_EFFUSION, "left pleural", 76, SIDE_LEFT, SITE_PLEURAL},
    {PC_EFFUSION, "right costophrenic angle", 54, SIDE_RIGHT, SITE_ANGLE},
    {PC_EFFUSION, "right pleural", 57, SIDE_RIGHT, SITE_PLEURAL},
};
#define PC_N_COMBOS ((int)(sizeof pc_combos / sizeof pc_combos[0]))

/* Report sentences, English and Spanish. In a template "{s}" stands for
 * the side (left/right, izquierdo/derecho) and "{S}" for the same word
 * capitalised; every sentence names the finding and its location, as the
 * report sentences of PadChest-GR do. */
typedef struct {
    int cls, site, bilateral; /* which combinations the sentence fits */
    const char *en, *es;
} pc_sentence;

static const pc_sentence pc_sentences[] = {
    {PC_ATELECTASIS, SITE_LOWER_LOBE, 0, "Laminar atelectasis in the {s} lower lobe.",
     "Atelectasia laminar en el l\xC3\xB3" "bulo inferior {s}."},
    {PC_ATELECTASIS, SITE_LOWER_LOBE, 0, "{S} lower lobe atelectasis.", "Atelectasia del l\xC3\xB3" "bulo inferior {s}."},
    {PC_ATELECTASIS, SITE_LOWER_LOBE, 0, "Plate-like atelectasis in the {s} lower lobe.",
     "Atelectasia en placa en el l\xC3\xB3" "bulo inferior {s}."},
    {PC_ATELECTASIS, SITE_RETROCARDIAC, 0, "Retrocardiac atelectasis.", "Atelectasia retrocard\xC3\xAD" "aca."},
    {PC_ATELECTASIS, SITE_RETROCARDIAC, 0, "Retrocardiac opacity in keeping with atelectasis.",
     "Opacidad retrocard\xC3\xAD" "aca compatible con atelectasia."},
    {PC_CARDIOMEGALY, SITE_CARDIAC, 0, "Cardiomegaly.", "Cardiomegalia."},
    {PC_CARDIOMEGALY, SITE_CARDIAC, 0, "Enlarged cardiac silhouette.", "Silueta card\xC3\xAD" "aca aumentada de tama\xC3\xB1o."},
    {PC_CARDIOMEGALY, SITE_CARDIAC, 0, "Mild cardiomegaly.", "Cardiomegalia leve."},
    {PC_CONSOLIDATION, SITE_LOWER_LOBE, 0, "Consolidation in the {s} lower lobe.",
     "Consolidaci\xC3\xB3n en el l\xC3\xB3" "bulo inferior {s}."},
    {PC_CONSOLIDATION, SITE_LOWER_LOBE, 0, "Patchy consolidation in the {s} lower lobe.",
     "Consolidaci\xC3\xB3n parcheada en el l\xC3\xB3" "bulo inferior {s}."},
    {PC_CONSOLIDATION, SITE_LOWER_LOBE, 0, "{S} lower lobe consolidation.",
     "Consolidaci\xC3\xB3n del l\xC3\xB3" "bulo inferior {s}."},
    {PC_EFFUSION, SITE_ANGLE, 0, "Pleural effusion in the {s} costophrenic angle.",
     "Derrame pleural en el seno costofr\xC3\xA9nico {s}."},
    {PC_EFFUSION, SITE_ANGLE, 0, "Blunting of the {s} costophrenic angle due to pleural effusion.",
     "Pinzamiento del seno costofr\xC3\xA9nico {s} por derrame pleural."},
    {PC_EFFUSION, SITE_ANGLE, 0, "Small {s} pleural effusion blunting the costophrenic angle.",
     "Peque\xC3\xB1o derrame pleural {s} que pinza el seno costofr\xC3\xA9nico."},
    {PC_EFFUSION, SITE_PLEURAL, 0, "{S} pleural effusion.", "Derrame pleural {s}."},
    {PC_EFFUSION, SITE_PLEURAL, 0, "Moderate {s} pleural effusion.", "Derrame pleural {s} moderado."},
    {PC_EFFUSION, SITE_PLEURAL, 0, "Pleural effusion in the {s} hemithorax.", "Derrame pleural en el hemit\xC3\xB3rax {s}."},
    {PC_EFFUSION, SITE_ANGLE, 1, "Pleural effusion in both costophrenic angles.",
     "Derrame pleural en ambos senos costofr\xC3\xA9nicos."},
    {PC_EFFUSION, SITE_ANGLE, 1, "Blunting of both costophrenic angles due to pleural effusion.",
     "Pinzamiento de ambos senos costofr\xC3\xA9nicos por derrame pleural."},
    {PC_EFFUSION, SITE_PLEURAL, 1, "Bilateral pleural effusion.", "Derrame pleural bilateral."},
    {PC_EFFUSION, SITE_PLEURAL, 1, "Moderate bilateral pleural effusion.", "Derrame pleural bilateral moderado."},
};
#define PC_N_SENTENCES ((int)(sizeof pc_sentences / sizeof pc_sentences[0]))

/* Negative sentences (abnormal = false), by the class they deny. */
static const pc_sentence pc_negatives[] = {
    {PC_ATELECTASIS, 0, 0, "No atelectasis.", "No se observan atelectasias."},
    {PC_CARDIOMEGALY, 0, 0, "Normal cardiac silhouette.", "Silueta card\xC3\xAD" "aca normal."},
    {PC_CARDIOMEGALY, 0, 0, "Heart size within normal limits.", "\xC3\x8Dndice cardiotor\xC3\xA1" "cico dentro de la normalidad."},
    {PC_CONSOLIDATION, 0, 0, "No consolidation.", "Sin consolidaciones."},
    {PC_CONSOLIDATION, 0, 0, "No focal airspace consolidation.", "No se observan condensaciones."},
    {PC_EFFUSION, 0, 0, "No pleural effusion.", "No se observa derrame pleural."},
    {PC_EFFUSION, 0, 0, "Costophrenic angles are clear.", "Senos costofr\xC3\xA9nicos libres."},
};
#define PC_N_NEGATIVES ((int)(sizeof pc_negatives / sizeof pc_negatives[0]))
static const char PC_NORMAL_EN[] = "No significant abnormalities.";
static const char PC_NORMAL_ES[] = "Sin alteraciones significativas.";

/* Fill a template: "{s}" → side, "{S}" → side with a capital letter. */
static void pc_fill(char *out, size_t size, const char *tpl, const char *side)
{
    size_t k = 0;
    for (const char *p = tpl; *p && k + 1 < size; p++) {
        if (p[0] == '{' && (p[1] == 's' || p[1] == 'S') && p[2] == '}') {
            for (size_t j = 0; side[j] && k + 1 < size; j++)
                out[k++] = j == 0 && p[1] == 'S' ? (char)toupper((unsigned char)side[j]) : side[j];
            p += 2;
        } else {
            out[k++] = *p;
        }
    }
    out[k] = '\0';
}

/* A box [x1, y1, x2, y2] in image fractions, x to the right, y down. */
typedef struct {
    double v[4];
} pc_box;

#define PC_MAX_FINDINGS 3
#define PC_MAX_NEGATIVES 3

/* One finding of a study: its combination, how its locations are spelled,
 * its sentence, and (filled from the drawn image) its boxes. */
typedef struct {
    int combo;
    int compound;         /* locations as one term ("left costophrenic angle") */
    int sentence;         /* index into pc_sentences */
    int n_boxes, n_extra; /* reader 1 and reader 2 */
    pc_box boxes[2], extra[2];
} pc_finding;

typedef struct {
    int n_findings;
    pc_finding finding[PC_MAX_FINDINGS];
    int n_negatives;
    int negative[PC_MAX_NEGATIVES]; /* indices into pc_negatives */
    int negative_keys;              /* negatives also carry empty boxes/labels/locations */
    int patient, split;
    char study_id[48], image_id[64], patient_id[48];
    int female, birth_year, year, month, day;
} pc_study;

/* The anatomy and findings of one radiograph, in image fractions. Lung
 * geometry is written for the patient's right lung (image left, x from
 * 0 to 0.5) and mirrored (x → 1 − x) for the left. */
typedef struct {
    float lateral[2];     /* x of the lateral chest wall, low in the chest */
    float dome[2];        /* y of the top of each hemidiaphragm */
    float angle[2];       /* y of each costophrenic angle */
    float heart_cx, heart_cy, heart_hw, heart_hh;
    int effusion[2];      /* 0 none, SITE_ANGLE or SITE_PLEURAL + 1 */
    float fluid_top[2], fluid_width[2];
    int band[2];          /* plate-like atelectasis in each lower lobe */
    vec2 band_a[2], band_b[2];
    float band_hw[2];
    int retrocardiac;
    vec2 sail[3];         /* the retrocardiac triangle */
    int consolidation[2];
    vec2 cons_c[2];
    float cons_rx[2], cons_ry[2];
    float rib_y0, rib_gap, rib_curve;
    vec2 vessel_a[2][10], vessel_b[2][10];
    uint32_t seed;
} chest;

/* x in the frame of side s: the right lung's coordinates for either lung. */
static inline float side_x(int s, float x)
{
    return s == SIDE_RIGHT ? x : 1.0f - x;
}

static float chest_lateral_wall(const chest *ch, int s, float y)
{
    return ch->lateral[s] + 0.16f * (1.0f - smoothstepf(0.08f, 0.45f, y));
}

/* The hemidiaphragm of side s: highest (dome) at xm = 0.3, down to the
 * costophrenic angle at the lateral wall. */
static float chest_diaphragm(const chest *ch, int s, float xm)
{
    float t = (xm - 0.3f) / (0.3f - ch->lateral[s]);
    return ch->dome[s] + (ch->angle[s] - ch->dome[s]) * t * t;
}

/* Membership (0..1) of point (xm, y) of side s in the lung field. */
static float chest_lung(const chest *ch, int s, float xm, float y)
{
    const float w = 0.006f;
    float apex = 0.08f + 2.0f * (xm - 0.3f) * (xm - 0.3f);
    return smoothstepf(-w, w, xm - chest_lateral_wall(ch, s, y)) * smoothstepf(-w, w, 0.445f - xm) *
           smoothstepf(-w, w, y - apex) * smoothstepf(-w, w, chest_diaphragm(ch, s, xm) - y);
}

/* The meniscus of a pleural effusion: fluid is highest at the lateral
 * wall (fluid_top) and meets the diaphragm fluid_width further in. */
/* @book begin synth-effusion */
static float chest_fluid(const chest *ch, int s, float xm, float y)
{
    if (!ch->effusion[s]) return 0.0f;
    float lat = chest_lateral_wall(ch, s, y);
    float t = (xm - lat) / ch->fluid_width[s];
    if (t > 1.0f) return 0.0f;
    float floor_y = chest_diaphragm(ch, s, xm);
    float top = ch->fluid_top[s] + (floor_y - ch->fluid_top[s]) * powf(clampf(t, 0.0f, 1.0f), 0.7f);
    return smoothstepf(-0.006f, 0.006f, y - top) * smoothstepf(-0.006f, 0.006f, xm - lat + 0.006f) *
           smoothstepf(-0.006f, 0.006f, floor_y + 0.006f - y);
}
/* @book end synth-effusion */

static vec2 mirror(int s, vec2 p)
{
    return v2(side_x(s, p.x), p.y);
}

/* Anatomy with its normal variation, then the study's findings. */
static void chest_build(chest *ch, const pc_study *st, sc_rng *r)
{
    memset(ch, 0, sizeof *ch);
    ch->seed = sc_rng_u32(r);
    for (int s = 0; s < 2; s++) {
        ch->lateral[s] = rng_range(r, 0.09f, 0.12f);
        ch->dome[s] = rng_range(r, 0.63f, 0.67f) + (s == SIDE_LEFT ? 0.025f : 0.0f); /* the liver lifts the right */
        ch->angle[s] = ch->dome[s] + rng_range(r, 0.09f, 0.12f);
    }
    ch->heart_cx = 0.5f + rng_range(r, 0.03f, 0.05f);
    ch->heart_cy = rng_range(r, 0.62f, 0.65f);
    ch->heart_hw = rng_range(r, 0.165f, 0.185f); /* cardiothoracic ratio 0.42-0.48 */
    ch->heart_hh = rng_range(r, 0.12f, 0.14f);
    ch->rib_y0 = rng_range(r, 0.1f, 0.12f);
    ch->rib_gap = rng_range(r, 0.052f, 0.058f);
    ch->rib_curve = rng_range(r, 0.15f, 0.19f);
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 10; k++) { /* lung markings fanning out of the hilum */
            float a = rng_range(r, -2.4f, 0.9f) + 3.1415927f, len = rng_range(r, 0.07f, 0.16f);
            float hilum_y = 0.42f + rng_range(r, -0.03f, 0.03f);   /* y first: SEQUENCED DRAWS */
            vec2 hilum = v2(0.4f + rng_range(r, -0.01f, 0.01f), hilum_y);
            ch->vessel_a[s][k] = mirror(s, hilum);
            ch->vessel_b[s][k] = mirror(s, v2(hilum.x + len * cosf(a), hilum.y - len * sinf(a)));
        }
    for (int f = 0; f < st->n_findings; f++) {
        const pc_combo *c = &pc_combos[st->finding[f].combo];
        if (c->cls == PC_CARDIOMEGALY) {
            ch->heart_hw = rng_range(r, 0.22f, 0.255f); /* cardiothoracic ratio 0.56-0.65 */
            ch->heart_hh = rng_range(r, 0.14f, 0.16f);
            ch->heart_cx += 0.015f;
            continue;
        }
        if (c->site == SITE_RETROCARDIAC) { /* behind the heart, in the left lower lobe */
            ch->retrocardiac = 1;
            float top = rng_range(r, 0.53f, 0.57f), bottom = ch->dome[SIDE_LEFT] + 0.04f;
            ch->sail[0] = v2(0.54f, top);
            ch->sail[1] = v2(0.54f, bottom);
            ch->sail[2] = v2(rng_range(r, 0.64f, 0.67f), bottom);
            continue;
        }
        for (int s = 0; s < 2; s++) {
            if (c->side != s && c->side != SIDE_BOTH) continue;
            if (c->cls == PC_EFFUSION) {
                ch->effusion[s] = c->site + 1;
                int big = c->site == SITE_PLEURAL;
                ch->fluid_top[s] = ch->angle[s] - (big ? rng_range(r, 0.16f, 0.24f) : rng_range(r, 0.06f, 0.09f));
                ch->fluid_width[s] = big ? rng_range(r, 0.3f, 0.36f) : rng_range(r, 0.1f, 0.15f);
            } else if (c->cls == PC_ATELECTASIS) {
                ch->band[s] = 1;
                ch->dome[s] -= 0.02f; /* volume loss lifts the hemidiaphragm */
                ch->angle[s] -= 0.02f;
                float y = ch->dome[s] - rng_range(r, 0.04f, 0.08f), tilt = rng_range(r, -0.03f, 0.03f);
                ch->band_a[s] = v2(rng_range(r, 0.15f, 0.19f), y - tilt);
                ch->band_b[s] = v2(rng_range(r, 0.33f, 0.38f), y + tilt);
                ch->band_hw[s] = rng_range(r, 0.011f, 0.015f);
            } else { /* consolidation */
                ch->consolidation[s] = 1;
                float cy = ch->dome[s] - rng_range(r, 0.06f, 0.09f);   /* y first: SEQUENCED DRAWS */
                ch->cons_c[s] = v2(rng_range(r, 0.24f, 0.31f), cy);
                ch->cons_rx[s] = rng_range(r, 0.08f, 0.1f);
                ch->cons_ry[s] = rng_range(r, 0.06f, 0.08f);
            }
        }
    }
}

/* Sorted corners, inside the image, rounded to 4 decimals as written. */
static void box_clip(pc_box *b, double x1, double y1, double x2, double y2)
{
    double v[4] = {fmin(x1, x2), fmin(y1, y2), fmax(x1, x2), fmax(y1, y2)};
    for (int k = 0; k < 4; k++) b->v[k] = round(fmin(fmax(v[k], 0.0), 1.0) * 10000.0) / 10000.0;
}

/* The boxes a reader would draw around a finding: one per side. */
static int chest_boxes(const chest *ch, const pc_combo *c, pc_box *boxes)
{
    if (c->cls == PC_CARDIOMEGALY) {
        box_clip(&boxes[0], ch->heart_cx - ch->heart_hw, ch->heart_cy - ch->heart_hh, ch->heart_cx + ch->heart_hw,
                 ch->heart_cy + ch->heart_hh);
        return 1;
    }
    if (c->site == SITE_RETROCARDIAC) {
        box_clip(&boxes[0], ch->sail[0].x - 0.01f, ch->sail[0].y - 0.01f, ch->sail[2].x + 0.01f, ch->sail[2].y + 0.01f);
        return 1;
    }
    int n = 0;
    for (int s = 0; s < 2; s++) {
        if (c->side != s && c->side != SIDE_BOTH) continue;
        pc_box *b = &boxes[n++];
        if (c->cls == PC_EFFUSION) {
            float lat = ch->lateral[s] - 0.01f;
            box_clip(b, side_x(s, lat), ch->fluid_top[s] - 0.01f, side_x(s, lat + ch->fluid_width[s] + 0.02f),
                     ch->angle[s] + 0.015f);
        } else if (c->cls == PC_ATELECTASIS) {
            float m = ch->band_hw[s] + 0.015f;
            box_clip(b, side_x(s, ch->band_a[s].x - m), fminf(ch->band_a[s].y, ch->band_b[s].y) - m,
                     side_x(s, ch->band_b[s].x + m), fmaxf(ch->band_a[s].y, ch->band_b[s].y) + m);
        } else {
            box_clip(b, side_x(s, ch->cons_c[s].x - ch->cons_rx[s]), ch->cons_c[s].y - ch->cons_ry[s],
                     side_x(s, ch->cons_c[s].x + ch->cons_rx[s]), ch->cons_c[s].y + ch->cons_ry[s]);
        }
    }
    return n;
}

/* Is p inside the triangle? (same side of all three edges) */
static int in_triangle(vec2 p, const vec2 *t)
{
    float d[3];
    for (int k = 0; k < 3; k++) {
        vec2 a = t[k], b = t[(k + 1) % 3];
        d[k] = (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x);
    }
    return (d[0] >= 0 && d[1] >= 0 && d[2] >= 0) || (d[0] <= 0 && d[1] <= 0 && d[2] <= 0);
}

/* Density (0 air .. 1 bone) at image point (x, y), before bones. */
static float chest_density(const chest *ch, float x, float y)
{
    /* the body: soft tissue inside a torso with sloping shoulders */
    float half = 0.47f - 0.17f * (1.0f - smoothstepf(0.0f, 0.16f, y));
    float d = lerpf(0.05f, 0.40f, smoothstepf(0.01f, -0.01f, fabsf(x - 0.5f) - half));
    for (int s = 0; s < 2; s++) {
        float xm = side_x(s, x);
        if (y > chest_diaphragm(ch, s, xm) && xm < 0.5f) d += 0.05f * smoothstepf(0.0f, 0.02f, y - chest_diaphragm(ch, s, xm));
        float lung = chest_lung(ch, s, xm, y);
        float tissue = 0.12f + 0.05f * smoothstepf(0.3f, 0.7f, y) + 0.04f * fbm(x * 18.0f, y * 18.0f, ch->seed + (uint32_t)s, 2);
        d = lerpf(d, tissue, lung);
    }
    /* the gastric bubble under the left hemidiaphragm */
    float gx = (x - 0.70f) / 0.045f, gy = (y - ch->dome[SIDE_LEFT] - 0.05f) / 0.025f;
    d = lerpf(d, 0.14f, smoothstepf(1.1f, 0.9f, gx * gx + gy * gy));
    /* mediastinum with the trachea's air column, aortic knob, heart */
    float med = smoothstepf(0.075f, 0.065f, fabsf(x - 0.5f)) * smoothstepf(0.04f, 0.06f, y);
    d = lerpf(d, 0.58f, med);
    d = lerpf(d, 0.3f, smoothstepf(0.014f, 0.01f, fabsf(x - 0.5f)) * smoothstepf(0.04f, 0.06f, y) * smoothstepf(0.36f, 0.32f, y));
    float kx = (x - 0.57f) / 0.035f, ky = (y - 0.33f) / 0.035f;
    d = lerpf(d, 0.6f, smoothstepf(1.1f, 0.9f, kx * kx + ky * ky));
    float hx = (x - ch->heart_cx) / ch->heart_hw, hy = (y - ch->heart_cy) / ch->heart_hh;
    d = lerpf(d, 0.62f, smoothstepf(1.04f, 0.96f, hx * hx + hy * hy));
    /* findings */
    for (int s = 0; s < 2; s++) {
        float xm = side_x(s, x);
        if (ch->effusion[s]) d = lerpf(d, 0.56f, chest_fluid(ch, s, xm, y));
        if (ch->consolidation[s]) {
            float cx = (xm - ch->cons_c[s].x) / ch->cons_rx[s], cy = (y - ch->cons_c[s].y) / ch->cons_ry[s];
            float patch = smoothstepf(0.42f, 0.58f, fbm(x * 14.0f, y * 14.0f, ch->seed + 11, 3) + 0.35f * (1.0f - cx * cx - cy * cy));
            d = lerpf(d, 0.5f, patch * smoothstepf(1.2f, 0.8f, cx * cx + cy * cy) * chest_lung(ch, s, xm, y));
        }
    }
    if (ch->retrocardiac && in_triangle(v2(x, y), ch->sail)) d += 0.2f;
    return d;
}

/* Render the radiograph into cv (grey, image fractions as the model). */
static void chest_render(const chest *ch, canvas *cv)
{
    cv->scale = (float)cv->w;
    cv->cx = cv->cy = 0.0f;
    for (int py = 0; py < cv->h; py++)
        for (int px = 0; px < cv->w; px++) {
            vec2 p = canvas_point(cv, px, py);
            cv->px[(size_t)py * (size_t)cv->w + (size_t)px] = chest_density(ch, p.x, p.y);
        }
    for (int s = 0; s < 2; s++) {
        for (int k = 0; k < 10; k++) /* lung markings */
            paint_grey_capsule(cv, ch->vessel_a[s][k], ch->vessel_b[s][k], 0.003f, 0.003f, 0.05f);
        if (ch->band[s]) /* plate-like atelectasis */
            paint_grey_capsule(cv, mirror(s, ch->band_a[s]), mirror(s, ch->band_b[s]), ch->band_hw[s], 0.004f, 0.32f);
        if (ch->consolidation[s]) /* air bronchograms: dark branches inside the consolidation */
            for (int k = 0; k < 3; k++) {
                vec2 a = mirror(s, v2(ch->cons_c[s].x + 0.04f, ch->cons_c[s].y - 0.02f * (float)k));
                vec2 b = mirror(s, v2(ch->cons_c[s].x - 0.05f, ch->cons_c[s].y + 0.02f - 0.025f * (float)k));
                paint_grey_capsule(cv, a, b, 0.003f, 0.002f, -0.12f);
            }
        /* posterior ribs: bands sloping down and out from the spine */
        for (int k = 0; k < 10; k++)
            for (int seg = 0; seg < 6; seg++) {
                float x0 = 0.47f - 0.065f * (float)seg, x1 = x0 - 0.065f;
                float y0 = ch->rib_y0 + ch->rib_gap * (float)k + ch->rib_curve * powf((0.47f - x0) / 0.37f, 1.6f);
                float y1 = ch->rib_y0 + ch->rib_gap * (float)k + ch->rib_curve * powf((0.47f - x1) / 0.37f, 1.6f);
                paint_grey_capsule(cv, mirror(s, v2(x0, y0)), mirror(s, v2(x1, y1)), 0.01f, 0.004f, 0.05f);
            }
        paint_grey_capsule(cv, mirror(s, v2(0.45f, 0.15f)), mirror(s, v2(0.16f, 0.1f)), 0.013f, 0.003f, 0.1f);
    }
    paint_grey_capsule(cv, v2(0.5f, 0.0f), v2(0.5f, 1.0f), 0.028f, 0.006f, 0.08f); /* the spine */
}

/* ---- 5g. PadChest-GR: reports, master table and images ---------------- */

void sc_synth_padchest_defaults(sc_synth_padchest_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->n = 748;
    opt->seed = 7;
    opt->size = 256;
    opt->normal_share = 0.25;
    opt->images = 1;
}

/* Real shares used below: 96 of 4555 studies are a patient's second
 * study (4555 images, 4459 patients); master_table rows split train 6153 /
 * validation 872 / test 1762, i.e. 70/10/20, patient-disjoint. */
enum { PC_REAL_STUDIES = 4555, PC_REAL_REPEATS = 96 };
static const int pc_split_shares[3] = {70, 10, 20};
static const char *const pc_split_names[3] = {"train", "validation", "test"};

/* A decimal identifier of n digits, like PadChest's StudyID and PatientID. */
static void pc_digits(sc_rng *r, char *out, int n)
{
    out[0] = (char)('1' + sc_rng_below(r, 9));
    for (int k = 1; k < n; k++) out[k] = (char)('0' + sc_rng_below(r, 10));
    out[n] = '\0';
}

/* The findings of an abnormal study: one combination in most, two or three
 * in some (a class at most once), drawn by the paper's counts, so the
 * multi-label mix averages about 1.18 findings (882 positives, 748
 * patients), each with a sentence naming it. */
static void pc_plan_findings(pc_study *st, sc_rng *r)
{
    float u = sc_rng_uniform(r);
    int k = u < 0.02f ? 3 : u < 0.16f ? 2 : 1;
    int weights[PC_N_COMBOS], used[PC_N_CLASSES] = {0, 0, 0, 0};
    st->n_findings = 0;
    for (int f = 0; f < k; f++) {
        for (int h = 0; h < PC_N_COMBOS; h++) weights[h] = used[pc_combos[h].cls] ? 0 : pc_combos[h].count;
        pc_finding *fd = &st->finding[st->n_findings++];
        memset(fd, 0, sizeof *fd);
        fd->combo = draw_weighted(r, weights, PC_N_COMBOS);
        const pc_combo *c = &pc_combos[fd->combo];
        used[c->cls] = 1;
        /* PadChest also has compound location terms such as "left
         * costophrenic angle" and "right lower lobe" */
        fd->compound = (c->site == SITE_ANGLE || c->site == SITE_LOWER_LOBE) && c->side != SIDE_NONE &&
                       sc_rng_below(r, 10) < 3;
        int fits[PC_N_SENTENCES], n_fits = 0;
        for (int i = 0; i < PC_N_SENTENCES; i++)
            if (pc_sentences[i].cls == c->cls && pc_sentences[i].site == c->site &&
                pc_sentences[i].bilateral == (c->side == SIDE_BOTH))
                fits[n_fits++] = i;
        SC_ASSERT(n_fits > 0, "no sentence for combination %d", fd->combo);
        fd->sentence = fits[sc_rng_below(r, (uint32_t)n_fits)];
    }
    for (int c = 0; c < PC_N_CLASSES && st->n_negatives < PC_MAX_NEGATIVES; c++) {
        if (used[c] || sc_rng_below(r, 100) >= 35) continue;
        int fits[PC_N_NEGATIVES], n_fits = 0;
        for (int i = 0; i < PC_N_NEGATIVES; i++)
            if (pc_negatives[i].cls == c) fits[n_fits++] = i;
        st->negative[st->n_negatives++] = fits[sc_rng_below(r, (uint32_t)n_fits)];
    }
}

/* Patients and the patient-disjoint split: a few studies are a second
 * study of an earlier patient; patients are walked in order of their
 * first finding (random within it) and each goes to the split furthest
 * below its share, so every split gets every combination. */
static void pc_plan_patients(pc_study *studies, int n, sc_rng *r, int *scratch)
{
    int repeats = (int)(((int64_t)n * PC_REAL_REPEATS + PC_REAL_STUDIES / 2) / PC_REAL_STUDIES);
    int patients = n - repeats;
    for (int i = 0; i < n; i++) scratch[i] = i;
    sc_rng_shuffle(r, scratch, n);
    for (int k = 0; k < n; k++) /* scratch[k] is the k-th study in random order */
        studies[scratch[k]].patient = k < patients ? k : (int)sc_rng_below(r, (uint32_t)patients);
    /* order patients by the first combination of their first study (12 = normal) */
    int *stratum = scratch + n, *order = scratch + 2 * n;
    for (int p = 0; p < patients; p++) stratum[p] = -1;
    for (int i = 0; i < n; i++)
        if (stratum[studies[i].patient] < 0)
            stratum[studies[i].patient] = studies[i].n_findings ? studies[i].finding[0].combo : PC_N_COMBOS;
    for (int p = 0; p < patients; p++) order[p] = p;
    sc_rng_shuffle(r, order, patients);
    int k = 0; /* a stable counting sort by stratum keeps the random order within each */
    for (int s = 0; s <= PC_N_COMBOS; s++)
        for (int j = 0; j < patients; j++)
            if (stratum[order[j]] == s) scratch[k++] = order[j];
    int sizes[3], given[3] = {0, 0, 0}, *split_of = stratum;
    apportion(patients, pc_split_shares, 3, sizes);
    for (int j = 0; j < patients; j++) {
        int best = 0;
        int64_t best_deficit = INT64_MIN;
        for (int s = 0; s < 3; s++) {
            int64_t deficit = (int64_t)(j + 1) * sizes[s] - (int64_t)given[s] * patients;
            if (deficit > best_deficit) best_deficit = deficit, best = s;
        }
        split_of[scratch[j]] = best;
        given[best]++;
    }
    for (int i = 0; i < n; i++) studies[i].split = split_of[studies[i].patient];
}

/* A second reader's boxes: the same regions, each edge moved a little. */
static void pc_jitter_boxes(const pc_finding *f, pc_box *extra, sc_rng *r)
{
    for (int b = 0; b < f->n_boxes; b++) {
        double v[4];
        for (int k = 0; k < 4; k++) v[k] = f->boxes[b].v[k] + 0.012 * (double)sc_rng_normal(r);
        box_clip(&extra[b], v[0], v[1], v[2], v[3]);
    }
}

static sc_status pc_plan(pc_study **out, const sc_synth_padchest_options *opt, sc_err *err)
{
    int n = opt->n;
    pc_study *studies = calloc((size_t)n, sizeof *studies);
    int *scratch = malloc((size_t)n * 3 * sizeof *scratch);
    unsigned char *normal = malloc((size_t)n);
    if (!studies || !scratch || !normal) {
        free(studies), free(scratch), free(normal);
        return sc_fail(err, SC_ENOMEM, "synthetic PadChest-GR: out of memory for %d studies", n);
    }
    sc_rng r;
    sc_rng_seed(&r, opt->seed ^ 0x5041444348455354ull); /* "PADCHEST": a stream apart from Derm7p's */
    choose_rows(&r, n, (int)lround(opt->normal_share * n), normal, scratch);
    for (int i = 0; i < n; i++) {
        pc_study *st = &studies[i];
        if (normal[i]) {
            for (int c = 0; c < PC_N_CLASSES && st->n_negatives < 2; c++)
                if (sc_rng_below(&r, 100) < 30) {
                    int fits[PC_N_NEGATIVES], n_fits = 0;
                    for (int j = 0; j < PC_N_NEGATIVES; j++)
                        if (pc_negatives[j].cls == c) fits[n_fits++] = j;
                    st->negative[st->n_negatives++] = fits[sc_rng_below(&r, (uint32_t)n_fits)];
                }
        } else {
            pc_plan_findings(st, &r);
        }
        st->negative_keys = sc_rng_below(&r, 10) < 3;
        pc_digits(&r, st->study_id, 39);
        static const char alnum[] = "0123456789abcdefghijklmnopqrstuvwxyz";
        char suffix[7];
        for (int k = 0; k < 6; k++) suffix[k] = alnum[sc_rng_below(&r, 36)];
        suffix[6] = '\0';
        snprintf(st->image_id, sizeof st->image_id, "%s_%s.png", st->study_id, suffix);
        st->year = 2009 + (int)sc_rng_below(&r, 9);
        st->month = 1 + (int)sc_rng_below(&r, 12);
        st->day = 1 + (int)sc_rng_below(&r, 28);
        /* boxes from the drawn anatomy (the same generator draws the image) */
        chest ch;
        sc_rng shape_rng;
        case_rng(&shape_rng, opt->seed, i, 3);
        chest_build(&ch, st, &shape_rng);
        for (int f = 0; f < st->n_findings; f++) {
            pc_finding *fd = &st->finding[f];
            fd->n_boxes = chest_boxes(&ch, &pc_combos[fd->combo], fd->boxes);
            fd->n_extra = sc_rng_below(&r, 10) < 6 ? fd->n_boxes : 0;
            pc_jitter_boxes(fd, fd->extra, &r);
        }
    }
    pc_plan_patients(studies, n, &r, scratch);
    /* per patient, the same in each of their studies: identifier, sex and
     * birth year (adults; the ill older) */
    for (int i = 0; i < n; i++) {
        pc_study *st = &studies[i];
        sc_rng pr;
        case_rng(&pr, opt->seed, st->patient, 5);
        pc_digits(&pr, st->patient_id, 38);
        st->female = (int)sc_rng_below(&pr, 2);
        st->birth_year = 2013 - (st->n_findings ? 50 + (int)sc_rng_below(&pr, 45) : 20 + (int)sc_rng_below(&pr, 60));
    }
    free(scratch);
    free(normal);
    *out = studies;
    return SC_OK;
}

/* "['left', 'costophrenic angle']": the locations as the master table
 * spells a list; also used to fill the JSON's array. */
static int pc_locations(const pc_finding *f, const char **words, char *compound, size_t size)
{
    const pc_combo *c = &pc_combos[f->combo];
    if (c->side == SIDE_NONE) {
        words[0] = pc_site_words[c->site];
        return 1;
    }
    if (f->compound) {
        snprintf(compound, size, "%s %s", pc_side_words[c->side], pc_site_words[c->site]);
        words[0] = compound;
        return 1;
    }
    words[0] = pc_side_words[c->side];
    words[1] = pc_site_words[c->site];
    return 2;
}

static void pc_sentence_text(const pc_finding *f, char *en, char *es, size_t size)
{
    const pc_combo *c = &pc_combos[f->combo];
    const pc_sentence *s = &pc_sentences[f->sentence];
    pc_fill(en, size, s->en, c->side == SIDE_LEFT ? "left" : "right");
    pc_fill(es, size, s->es, c->side == SIDE_LEFT ? "izquierdo" : "derecho");
}

static void pc_put_boxes(sc_json_writer *w, const pc_box *boxes, int n)
{
    sc_json_begin_array(w);
    for (int b = 0; b < n; b++) {
        sc_json_begin_array(w);
        for (int k = 0; k < 4; k++) sc_json_put_number(w, boxes[b].v[k]);
        sc_json_end_array(w);
    }
    sc_json_end_array(w);
}

/* grounded_reports_20240819.json: a list of studies, each with its
 * findings; positive sentences carry boxes (normalised x1, y1, x2, y2),
 * extra_boxes (a second reader's, possibly none), labels, locations and
 * progression; negative ones often omit those keys. */
static sc_status pc_write_reports(const char *path, const pc_study *studies, int n, sc_err *err)
{
    sc_json_writer w;
    sc_json_writer_init(&w, 0);
    sc_json_begin_array(&w);
    for (int i = 0; i < n; i++) {
        const pc_study *st = &studies[i];
        sc_json_begin_object(&w);
        sc_json_put_key(&w, "StudyID");
        sc_json_put_string(&w, st->study_id);
        sc_json_put_key(&w, "ImageID");
        sc_json_put_string(&w, st->image_id);
        sc_json_put_key(&w, "PreviousStudyID");
        sc_json_put_null(&w);
        sc_json_put_key(&w, "PreviousImageID");
        sc_json_put_null(&w);
        sc_json_put_key(&w, "findings");
        sc_json_begin_array(&w);
        for (int f = 0; f < st->n_findings; f++) {
            const pc_finding *fd = &st->finding[f];
            char en[160], es[160], compound[64];
            const char *words[2];
            int n_words = pc_locations(fd, words, compound, sizeof compound);
            pc_sentence_text(fd, en, es, sizeof en);
            sc_json_begin_object(&w);
            sc_json_put_key(&w, "sentence_en");
            sc_json_put_string(&w, en);
            sc_json_put_key(&w, "sentence_es");
            sc_json_put_string(&w, es);
            sc_json_put_key(&w, "abnormal");
            sc_json_put_bool(&w, 1);
            sc_json_put_key(&w, "boxes");
            pc_put_boxes(&w, fd->boxes, fd->n_boxes);
            sc_json_put_key(&w, "extra_boxes");
            pc_put_boxes(&w, fd->extra, fd->n_extra);
            sc_json_put_key(&w, "labels");
            sc_json_begin_array(&w);
            sc_json_put_string(&w, pc_labels[pc_combos[fd->combo].cls]);
            sc_json_end_array(&w);
            sc_json_put_key(&w, "locations");
            sc_json_begin_array(&w);
            for (int k = 0; k < n_words; k++) sc_json_put_string(&w, words[k]);
            sc_json_end_array(&w);
            sc_json_put_key(&w, "progression");
            sc_json_put_null(&w);
            sc_json_end_object(&w);
        }
        int normal = st->n_findings == 0;
        for (int k = 0; k < st->n_negatives + normal; k++) {
            const char *en = k < st->n_negatives ? pc_negatives[st->negative[k]].en : PC_NORMAL_EN;
            const char *es = k < st->n_negatives ? pc_negatives[st->negative[k]].es : PC_NORMAL_ES;
            sc_json_begin_object(&w);
            sc_json_put_key(&w, "sentence_en");
            sc_json_put_string(&w, en);
            sc_json_put_key(&w, "sentence_es");
            sc_json_put_string(&w, es);
            sc_json_put_key(&w, "abnormal");
            sc_json_put_bool(&w, 0);
            if (st->negative_keys) {
                static const char *const empty[4] = {"boxes", "extra_boxes", "labels", "locations"};
                for (int e = 0; e < 4; e++) {
                    sc_json_put_key(&w, empty[e]);
                    sc_json_begin_array(&w);
                    sc_json_end_array(&w);
                }
                sc_json_put_key(&w, "progression");
                sc_json_put_null(&w);
            }
            sc_json_end_object(&w);
        }
        sc_json_end_array(&w);
        sc_json_end_object(&w);
    }
    sc_json_end_array(&w);
    sc_status st = sc_json_writer_save(&w, path, err);
    sc_json_writer_free(&w);
    return st;
}

/* master_table.csv: one row per (positive sentence, label), and one row
 * labelled "normal" for a study without findings; the columns of the
 * release, in its order. Sentences and location lists contain commas and
 * are quoted. */
static sc_status pc_write_master_table(const char *path, const pc_study *studies, int n, sc_err *err)
{
    static const char *const header[] = {
        "StudyID", "ImageID", "label", "boxes_count", "extra_boxes_count", "locations", "prior_study",
        "progression_status", "prior_imageID", "sentence_en", "sentence_es", "study_is_benchmark",
        "study_is_validation", "split", "PatientID", "patient_is_benchmark", "PatientBirth", "PatientSex_DICOM",
        "StudyDate_DICOM", "StudyDate", "PatientAge", "label_group", "Year"};
    sc_csv_writer w;
    sc_csv_writer_init(&w);
    for (size_t k = 0; k < sizeof header / sizeof header[0]; k++) sc_csv_put(&w, header[k]);
    sc_csv_end_row(&w);
    for (int i = 0; i < n; i++) {
        const pc_study *st = &studies[i];
        for (int f = 0; f < (st->n_findings ? st->n_findings : 1); f++) {
            const pc_finding *fd = st->n_findings ? &st->finding[f] : NULL;
            char en[160], es[160], compound[64], list[160];
            const char *label = fd ? pc_labels[pc_combos[fd->combo].cls] : "normal";
            if (fd) {
                const char *words[2];
                int n_words = pc_locations(fd, words, compound, sizeof compound);
                pc_sentence_text(fd, en, es, sizeof en);
                snprintf(list, sizeof list, n_words == 2 ? "['%s', '%s']" : "['%s']", words[0], n_words == 2 ? words[1] : "");
            } else {
                snprintf(en, sizeof en, "%s", PC_NORMAL_EN);
                snprintf(es, sizeof es, "%s", PC_NORMAL_ES);
                snprintf(list, sizeof list, "[]");
            }
            sc_csv_put(&w, st->study_id);
            sc_csv_put(&w, st->image_id);
            sc_csv_put(&w, label);
            sc_csv_putf(&w, "%d", fd ? fd->n_boxes : 0);
            sc_csv_putf(&w, "%d", fd ? fd->n_extra : 0);
            sc_csv_put(&w, list);
            sc_csv_put(&w, "False");
            sc_csv_put(&w, "");
            sc_csv_put(&w, "");
            sc_csv_put(&w, en);
            sc_csv_put(&w, es);
            sc_csv_put(&w, "True");
            sc_csv_put(&w, "False");
            sc_csv_put(&w, pc_split_names[st->split]);
            sc_csv_put(&w, st->patient_id);
            sc_csv_put(&w, "True");
            sc_csv_putf(&w, "%d.0", st->birth_year);
            sc_csv_put(&w, st->female ? "F" : "M");
            sc_csv_putf(&w, "%04d%02d%02d", st->year, st->month, st->day);
            sc_csv_putf(&w, "%04d-%02d-%02d", st->year, st->month, st->day);
            sc_csv_putf(&w, "%d", st->year - st->birth_year);
            sc_csv_put(&w, label);
            sc_csv_putf(&w, "%d", st->year);
            sc_csv_end_row(&w);
        }
    }
    sc_status s = sc_csv_writer_save(&w, path, err);
    sc_csv_writer_free(&w);
    return s;
}

/* Draw one study's radiograph. It is written as a 16-bit grey PNG holding
 * 12-bit samples, as detector data converted from DICOM usually does:
 * densities map into a window [lo, hi] within 0..4095 that varies like
 * exposure, so readers must stretch (sc_image_to_8bit does, min to max)
 * rather than take the high byte. */
static sc_status pc_render_study(const pc_study *st, int i, const sc_synth_padchest_options *opt, canvas *cv,
                                 sc_err *err)
{
    chest ch;
    sc_rng shape_rng;
    case_rng(&shape_rng, opt->seed, i, 3);
    chest_build(&ch, st, &shape_rng);
    chest_render(&ch, cv);
    return canvas_blur(cv, 1, 1, err);
}

typedef struct {
    const pc_study *studies;
    const sc_synth_padchest_options *opt;
    const char *images_dir;
} pc_images;

static sc_status pc_draw_study(const void *ctx, int i, sc_err *err)
{
    const pc_images *job = ctx;
    int size = job->opt->size;
    canvas cv;
    uint16_t *px16 = malloc((size_t)size * (size_t)size * sizeof *px16);
    sc_status st = px16 ? canvas_init(&cv, size, size, 1, err) : sc_fail(err, SC_ENOMEM, "out of memory");
    if (!st) st = pc_render_study(&job->studies[i], i, job->opt, &cv, err);
    if (!st) {
        sc_rng noise;
        case_rng(&noise, job->opt->seed, i, 4);
        float lo = rng_range(&noise, 0.0f, 300.0f), hi = rng_range(&noise, 3500.0f, 4095.0f);
        for (size_t k = 0; k < (size_t)size * (size_t)size; k++) {
            float v = cv.px[k] + 0.004f * (sc_rng_uniform(&noise) + sc_rng_uniform(&noise) - 1.0f);
            px16[k] = (uint16_t)(lo + (hi - lo) * clampf(v, 0.0f, 1.0f) + 0.5f);
        }
        sc_image img;
        memset(&img, 0, sizeof img);
        img.width = img.height = size;
        img.channels = 1;
        img.bits = 16;
        img.pixels16 = px16;
        char path[4096];
        if (!(st = join_path(path, sizeof path, err, "%s/%s", job->images_dir, job->studies[i].image_id)))
            st = sc_png_write(path, &img, err);
    }
    if (px16) canvas_free(&cv);
    free(px16);
    return st;
}

sc_status sc_synth_padchest_gr(const char *dir, const sc_synth_padchest_options *opt, sc_err *err)
{
    if (opt->n < 1 || opt->n > 1000000)
        return sc_fail(err, SC_EARG, "synthetic PadChest-GR: --n %d is outside 1..1000000", opt->n);
    if (opt->size < 32 || opt->size > 4096)
        return sc_fail(err, SC_EARG, "synthetic PadChest-GR: image size %d is outside 32..4096", opt->size);
    if (!(opt->normal_share >= 0.0 && opt->normal_share <= 1.0))
        return sc_fail(err, SC_EARG, "synthetic PadChest-GR: normal share %g is outside 0..1", opt->normal_share);
    pc_study *studies = NULL;
    sc_status st = pc_plan(&studies, opt, err);
    if (st) return st;
    char path[4096];
    pc_images job = {studies, opt, path};
    if (!(st = make_dir(dir, err)) && opt->images && !(st = join_path(path, sizeof path, err, "%s/PadChest_GR", dir)) &&
        !(st = make_dir(path, err)))
        st = draw_cases(opt->n, pc_draw_study, &job, opt->progress, opt->progress_user, err);
    if (!st && !(st = join_path(path, sizeof path, err, "%s/README.txt", dir))) {
        sc_text t;
        sc_text_init(&t);
        sc_text_printf(&t,
                       "SYNTHETIC data in the layout of PadChest-GR. NOT the real images or reports: every\n"
                       "study was drawn by\n  scale synth padchest-gr --n %d --seed %llu --size %d --normal-share %g\n"
                       "(scale %s). Classes, locations and their frequencies follow the tree of Sec. 2.3.1\n"
                       "of the SCALE paper (data/padchest-gr.hier). See book/15-synthetic-world.md.\n\n"
                       "grounded_reports_20240819.json   studies with their finding sentences and boxes\n"
                       "master_table.csv                 one row per (positive sentence, label); splits\n"
                       "PadChest_GR/<ImageID>            16-bit grey PNG radiographs\n",
                       opt->n, (unsigned long long)opt->seed, opt->size, opt->normal_share, sc_version());
        st = sc_text_save(&t, path, err);
        sc_text_free(&t);
    }
    if (!st && !(st = join_path(path, sizeof path, err, "%s/master_table.csv", dir)))
        st = pc_write_master_table(path, studies, opt->n, err);
    if (!st && !(st = join_path(path, sizeof path, err, "%s/grounded_reports_20240819.json", dir)))
        st = pc_write_reports(path, studies, opt->n, err);
    free(studies);
    return st;
}

/* Eight radiographs side by side, each with one finding and its boxes
 * outlined: normal, cardiomegaly, atelectasis (left lower lobe,
 * retrocardiac), consolidation (right lower lobe), effusion (left angle,
 * right pleural, both angles). 8-bit grey, 4 x 2 tiles. */
sc_status sc_synth_padchest_contact_sheet(const char *path, int tile, uint64_t seed, sc_err *err)
{
    if (tile < 32 || tile > 1024) return sc_fail(err, SC_EARG, "%s: tile size %d is outside 32..1024", path, tile);
    static const int shown[8] = {-1, 3, 0, 1, 5, 8, 11, 6}; /* pc_combos rows; -1 = normal */
    const int gap = 4, cols = 4, rows = 2;
    int w = cols * tile + (cols + 1) * gap, h = rows * tile + (rows + 1) * gap;
    uint8_t *sheet = malloc((size_t)w * (size_t)h);
    canvas cv;
    sc_status st = sheet ? canvas_init(&cv, tile, tile, 1, err) : sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    if (st) {
        free(sheet);
        return st;
    }
    memset(sheet, 255, (size_t)w * (size_t)h);
    for (int t = 0; t < 8 && !st; t++) {
        pc_study study;
        memset(&study, 0, sizeof study);
        if (shown[t] >= 0) {
            study.n_findings = 1;
            study.finding[0].combo = shown[t];
        }
        chest ch;
        sc_rng shape_rng;
        case_rng(&shape_rng, seed, t, 3);
        chest_build(&ch, &study, &shape_rng);
        chest_render(&ch, &cv);
        st = canvas_blur(&cv, 1, 1, err);
        int x0 = gap + (t % cols) * (tile + gap), y0 = gap + (t / cols) * (tile + gap);
        for (int y = 0; y < tile; y++)
            for (int x = 0; x < tile; x++)
                sheet[(size_t)(y0 + y) * (size_t)w + (size_t)(x0 + x)] =
                    (uint8_t)(clampf(cv.px[(size_t)y * (size_t)tile + (size_t)x], 0.0f, 1.0f) * 255.0f + 0.5f);
        pc_box boxes[2];
        int n_boxes = shown[t] >= 0 ? chest_boxes(&ch, &pc_combos[shown[t]], boxes) : 0;
        for (int b = 0; b < n_boxes; b++) { /* outline: a one-pixel white rectangle */
            int bx0 = (int)(boxes[b].v[0] * (double)(tile - 1)), by0 = (int)(boxes[b].v[1] * (double)(tile - 1));
            int bx1 = (int)(boxes[b].v[2] * (double)(tile - 1)), by1 = (int)(boxes[b].v[3] * (double)(tile - 1));
            for (int x = bx0; x <= bx1; x++)
                sheet[(size_t)(y0 + by0) * (size_t)w + (size_t)(x0 + x)] = sheet[(size_t)(y0 + by1) * (size_t)w + (size_t)(x0 + x)] = 255;
            for (int y = by0; y <= by1; y++)
                sheet[(size_t)(y0 + y) * (size_t)w + (size_t)(x0 + bx0)] = sheet[(size_t)(y0 + y) * (size_t)w + (size_t)(x0 + bx1)] = 255;
        }
    }
    if (!st) st = write_8bit(path, sheet, w, h, 1, names_jpeg(path), 85, err);
    canvas_free(&cv);
    free(sheet);
    return st;
}

/* ======================================================================== */
/* 6. Datasets and the embedding cache                                       */
/* ======================================================================== */
/*
 * A dataset as released becomes one table (sc_dataset): images with their
 * split, patient group and 0/1 labels over the combinations of every task
 * of a hierarchy, and the texts that come with them. `scale embed` then
 * runs the frozen encoders over the table once and stores what training
 * and evaluation need (sc_cache), so that no experiment ever runs an
 * encoder again. book/16 walks through both.
 *
 *   6a. the dataset table: growing it, bad rows, the hierarchy
 *   6b. Derm7p (release_v0)
 *   6c. PadChest-GR (grounded reports and master table)
 *   6d. manifests (CSV)
 *   6e. after reading: rare combinations, unlabelled images, groups, splits
 *   6f. stratified splits
 *   6g. progress display
 *   6h. fingerprints and index.json
 *   6i. embedding
 *   6j. loading, checking and merging caches
 */

#define DS_PATH_MAX 4096

/* ---- 6a. The dataset table --------------------------------------------- */

const char *sc_split_name(sc_split s)
{
    static const char *const names[SC_N_SPLITS] = {"train", "valid", "test", "none"};
    return (unsigned)s < SC_N_SPLITS ? names[s] : "?";
}

static const char *const dataset_kind_names[] = {"derm7p", "padchest-gr", "manifest"};

const char *sc_dataset_kind_name(sc_dataset_kind k)
{
    return (unsigned)k < 3 ? dataset_kind_names[k] : "?";
}

sc_dataset_options sc_dataset_defaults(void)
{
    sc_dataset_options o;
    memset(&o, 0, sizeof o);
    o.kind = SC_DATA_DERM7P;
    o.min_cases = -1;
    o.split = SC_SPLITS_OFFICIAL;
    o.test_fraction = 0.15;
    return o;
}

sc_status sc_dataset_spec(sc_dataset_options *o, const char *spec, sc_err *err)
{
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(dataset_kind_names[k]);
        if (!strncmp(spec, dataset_kind_names[k], n) && spec[n] == ':' && spec[n + 1]) {
            o->kind = (sc_dataset_kind)k;
            o->path = spec + n + 1;
            return SC_OK;
        }
    }
    return sc_fail(err, SC_EARG, "'%s': a dataset is KIND:PATH with KIND derm7p, padchest-gr or manifest", spec);
}

/* Everything a reader needs while it fills the table: the capacities of
 * the growing arrays, and the error sentence. */
typedef struct {
    sc_dataset *ds;
    sc_err *err;
    int64_t cap_images, cap_texts;
    int cap_skipped, cap_notes, cap_dropped;
} ds_builder;

static char *ds_strdup(sc_dataset *ds, const char *s)
{
    size_t n = strlen(s);
    char *out = sc_arena_alloc(&ds->arena, n + 1);
    if (out) memcpy(out, s, n + 1);
    return out;
}

/* Make room for n elements of `size` bytes in a malloc'ed array; 0 when
 * memory runs out (the array is kept). */
static int ds_grow(void **array, int64_t n, size_t size)
{
    size_t bytes;
    if (!sc_mul_ok((size_t)n, size, &bytes)) return 0;
    void *p = realloc(*array, bytes ? bytes : 1);
    if (p) *array = p;
    return p != NULL;
}

/* Append a formatted sentence to one of the dataset's string lists. */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static sc_status ds_list_add(ds_builder *b, const char ***list, int *n, int *cap, const char *fmt, ...)
{
    char msg[sizeof b->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (*n == *cap) {
        int want = *cap ? 2 * *cap : 16;
        if (!ds_grow((void **)list, want, sizeof **list)) return sc_fail(b->err, SC_ENOMEM, "out of memory");
        *cap = want;
    }
    const char *copy = ds_strdup(b->ds, msg);
    if (!copy) return sc_fail(b->err, SC_ENOMEM, "out of memory");
    (*list)[(*n)++] = copy;
    return SC_OK;
}

#define DS_NOTE(b, ...) ds_list_add((b), &(b)->ds->notes, &(b)->ds->n_notes, &(b)->cap_notes, __VA_ARGS__)

/* A bad row: without skip_bad it fails with the sentence; with skip_bad
 * the sentence joins ds->skipped and SC_OK tells the reader to leave the
 * row out and go on. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static sc_status ds_bad(ds_builder *b, const char *fmt, ...)
{
    char msg[sizeof b->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!b->ds->options.skip_bad) return sc_fail(b->err, SC_EFORMAT, "%s", msg);
    return ds_list_add(b, &b->ds->skipped, &b->ds->n_skipped, &b->cap_skipped, "%s", msg);
}

/* "FILE:LINE: row R, column NAME: " for messages about a CSV cell (col < 0:
 * no column). R is the 0-based data row, the number index files use. */
static const char *csv_where(char *buf, size_t n, const sc_csv *csv, int64_t row, int col)
{
    int64_t line = row >= 0 && row < csv->n_rows ? csv->rows[row].line : csv->header.line;
    if (col >= 0 && col < csv->n_cols)
        snprintf(buf, n, "%s:%lld: row %lld, column %s", csv->what, (long long)line, (long long)row,
                 csv->header.field[col]);
    else snprintf(buf, n, "%s:%lld: row %lld", csv->what, (long long)line, (long long)row);
    return buf;
}

/* A new image with all labels 0; returns its index, or -1 (err set). */
static int64_t ds_add_image(ds_builder *b, const char *path, const char *id, const char *group, int64_t row,
                            sc_split split)
{
    sc_dataset *ds = b->ds;
    int64_t i = ds->n_images, K = ds->n_labels;
    if (i == b->cap_images) {
        int64_t cap = b->cap_images ? 2 * b->cap_images : 256;
        int ok = ds_grow((void **)&ds->image_path, cap, sizeof *ds->image_path) &&
                 ds_grow((void **)&ds->image_id, cap, sizeof *ds->image_id) &&
                 ds_grow((void **)&ds->group_id, cap, sizeof *ds->group_id) &&
                 ds_grow((void **)&ds->source_row, cap, sizeof *ds->source_row) &&
                 ds_grow((void **)&ds->split, cap, sizeof *ds->split) &&
                 ds_grow((void **)&ds->labels, cap * K, 1);
        if (!ok) return sc_fail(b->err, SC_ENOMEM, "out of memory for %lld images", (long long)cap), -1;
        b->cap_images = cap;
    }
    ds->image_path[i] = ds_strdup(ds, path);
    ds->image_id[i] = ds_strdup(ds, id);
    ds->group_id[i] = ds_strdup(ds, group);
    if (!ds->image_path[i] || !ds->image_id[i] || !ds->group_id[i])
        return sc_fail(b->err, SC_ENOMEM, "out of memory"), -1;
    ds->source_row[i] = row;
    ds->split[i] = (uint8_t)split;
    memset(ds->labels + i * K, 0, (size_t)K);
    ds->n_images++;
    return i;
}

/* A new text about image `image` with all labels 0; its index or -1. */
static int64_t ds_add_text(ds_builder *b, int64_t image, const char *text)
{
    sc_dataset *ds = b->ds;
    int64_t j = ds->n_texts, K = ds->n_labels;
    if (j == b->cap_texts) {
        int64_t cap = b->cap_texts ? 2 * b->cap_texts : 256;
        int ok = ds_grow((void **)&ds->text, cap, sizeof *ds->text) &&
                 ds_grow((void **)&ds->text_image, cap, sizeof *ds->text_image) &&
                 ds_grow((void **)&ds->text_labels, cap * K, 1);
        if (!ok) return sc_fail(b->err, SC_ENOMEM, "out of memory for %lld texts", (long long)cap), -1;
        b->cap_texts = cap;
    }
    if (!(ds->text[j] = ds_strdup(ds, text))) return sc_fail(b->err, SC_ENOMEM, "out of memory"), -1;
    ds->text_image[j] = image;
    memset(ds->text_labels + j * K, 0, (size_t)K);
    ds->n_texts++;
    return j;
}

/* Column offsets of the tasks in the label matrices. */
static sc_status ds_label_columns(sc_dataset *ds, sc_err *err)
{
    free(ds->label_offset);
    ds->label_offset = malloc(sizeof(int) * (size_t)(ds->hier.n_tasks + 1));
    if (!ds->label_offset) return sc_fail(err, SC_ENOMEM, "out of memory");
    ds->label_offset[0] = 0;
    for (int t = 0; t < ds->hier.n_tasks; t++) ds->label_offset[t + 1] = ds->label_offset[t] + ds->hier.tasks[t].n_combos;
    ds->n_labels = ds->label_offset[ds->hier.n_tasks];
    return SC_OK;
}

/* Parse a hierarchy from text and keep the text (the cache stores it). */
static sc_status ds_set_hier(sc_dataset *ds, const char *text, size_t len, const char *what, sc_err *err)
{
    char *copy = sc_arena_alloc(&ds->arena, len + 1);
    if (!copy) return sc_fail(err, SC_ENOMEM, "out of memory");
    memcpy(copy, text, len);
    copy[len] = 0;
    ds->hier_source = copy;
    ds->hier_path = ds_strdup(ds, what);
    sc_status st = sc_hier_parse(&ds->hier, text, len, what, err);
    return st ? st : ds_label_columns(ds, err);
}

static sc_status ds_load_hier(sc_dataset *ds, const char *path, sc_err *err)
{
    uint8_t *text;
    size_t len;
    sc_status st = sc_read_file(path, SC_HIER_MAX_BYTES, &text, &len, err);
    if (st) return st;
    if (memchr(text, 0, len)) st = sc_fail(err, SC_EFORMAT, "%s: contains a NUL byte; not a text file", path);
    else st = ds_set_hier(ds, (const char *)text, len, path, err);
    free(text);
    return st;
}

static int path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* dir/name into buf; 0 when it does not fit. */
static int path_join(char *buf, size_t n, const char *dir, const char *name)
{
    int k = snprintf(buf, n, "%s/%s", dir, name);
    return k > 0 && (size_t)k < n;
}

/* Settle what the options leave open, so that loading and fingerprinting
 * see the same thing: the hierarchy file, the Derm7p root (release_v0 or
 * its parent), PadChest-GR's grounded-reports file and image folder, and
 * the kind's default for min_cases. Results go to the buffers. */
typedef struct {
    char hier[DS_PATH_MAX];       /* "" = derive from the manifest */
    char root[DS_PATH_MAX];       /* Derm7p: the folder holding meta/; PadChest-GR: path */
    char reports[DS_PATH_MAX];    /* PadChest-GR: file name of grounded_reports_*.json */
    char images[DS_PATH_MAX];     /* where image files are named from */
    int min_cases;
} ds_resolved;

static sc_status padchest_find_reports(const char *dir, char *name, size_t n, sc_err *err)
{
    DIR *d = opendir(dir);
    if (!d) return sc_fail(err, SC_EIO, "%s: cannot open: %s", dir, strerror(errno));
    name[0] = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        /* the newest release is the last in name order: grounded_reports_YYYYMMDD.json */
        if (len > 22 && !strncmp(e->d_name, "grounded_reports_", 17) && !strcmp(e->d_name + len - 5, ".json") &&
            len < n && strcmp(e->d_name, name) > 0)
            memcpy(name, e->d_name, len + 1);
    }
    closedir(d);
    if (!name[0]) return sc_fail(err, SC_EIO, "%s: no grounded_reports_*.json here (PadChest-GR's layout)", dir);
    return SC_OK;
}

static sc_status ds_resolve(const sc_dataset_options *o, ds_resolved *r, sc_err *err)
{
    memset(r, 0, sizeof *r);
    if (!o->path || !o->path[0]) return sc_fail(err, SC_EARG, "no dataset path");
    static const char *const default_hier[3] = {"data/derm7p.hier", "data/padchest-gr.hier", NULL};
    const char *hier = o->hier ? o->hier : default_hier[o->kind];
    if (hier && snprintf(r->hier, sizeof r->hier, "%s", hier) >= (int)sizeof r->hier)
        return sc_fail(err, SC_EARG, "%s: path too long", hier);
    if (!o->hier && hier && !path_exists(hier)) {
        /* the shipped file beside the program, when it runs from the source tree */
        char exe[DS_PATH_MAX], *slash = NULL;
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = 0;
            if ((slash = strrchr(exe, '/')) != NULL) *slash = 0;
        }
        if (!slash || !path_join(r->hier, sizeof r->hier, exe, hier) || !path_exists(r->hier))
            return sc_fail(err, SC_EIO, "%s: not found; run from the source tree or give the hierarchy with "
                           "--hier FILE", hier);
    }
    r->min_cases = o->min_cases >= 0 ? o->min_cases : o->kind == SC_DATA_PADCHEST_GR ? 10 : 0;
    snprintf(r->root, sizeof r->root, "%s", o->path);
    if (o->kind == SC_DATA_DERM7P) {
        char probe[DS_PATH_MAX];
        if (!path_join(probe, sizeof probe, o->path, "meta/meta.csv")) return sc_fail(err, SC_EARG, "path too long");
        if (!path_exists(probe) && path_join(probe, sizeof probe, o->path, "release_v0/meta/meta.csv") &&
            path_exists(probe))
            path_join(r->root, sizeof r->root, o->path, "release_v0");
        if (!path_join(r->images, sizeof r->images, r->root, "images")) return sc_fail(err, SC_EARG, "path too long");
    } else if (o->kind == SC_DATA_PADCHEST_GR) {
        sc_status st = padchest_find_reports(o->path, r->reports, sizeof r->reports, err);
        if (st) return st;
        static const char *const folders[] = {"Padchest_GR_files", "PadChest_GR", "images"};
        snprintf(r->images, sizeof r->images, "%s", o->path);
        for (int k = -1; k < 3; k++) {
            const char *f = k < 0 ? o->images : folders[k];
            char dir[DS_PATH_MAX];
            if (f && path_join(dir, sizeof dir, o->path, f) && is_dir(dir)) {
                memcpy(r->images, dir, sizeof dir);
                break;
            }
            if (k < 0 && f) return sc_fail(err, SC_EIO, "%s/%s: no such image folder", o->path, f);
        }
    } else {
        /* a manifest names its images relative to its own folder */
        const char *slash = strrchr(o->path, '/');
        if (!slash) snprintf(r->images, sizeof r->images, ".");
        else snprintf(r->images, sizeof r->images, "%.*s", (int)(slash - o->path), o->path);
        if (!r->images[0]) snprintf(r->images, sizeof r->images, "/");
        memcpy(r->root, r->images, sizeof r->root);
    }
    return SC_OK;
}

/* The label files of a dataset, relative to its root (for fingerprints). */
static int ds_label_files(const sc_dataset_options *o, const ds_resolved *r, const char *files[4])
{
    static const char *const derm[4] = {"meta/meta.csv", "meta/train_indexes.csv", "meta/valid_indexes.csv",
                                        "meta/test_indexes.csv"};
    if (o->kind == SC_DATA_DERM7P) {
        int n = o->split == SC_SPLITS_OFFICIAL ? 4 : 1;
        for (int k = 0; k < n; k++) files[k] = derm[k];
        return n;
    }
    if (o->kind == SC_DATA_PADCHEST_GR) {
        files[0] = r->reports;
        files[1] = "master_table.csv";
        return 2;
    }
    const char *slash = strrchr(o->path, '/');
    files[0] = slash ? slash + 1 : o->path;
    return 1;
}

/* ---- 6b. Derm7p -----------------------------------------------------------
 * release_v0/meta/meta.csv has one row per case (19 columns); the 7-point
 * criteria are columns named by the hierarchy's `column` lines, and their
 * cells are the concepts' names. Images live under release_v0/images/ at
 * the path in the derm (or clinic) column. meta/{train,valid,test}_indexes.csv
 * list 0-based rows of meta.csv under the header "indexes". */

/* dir/rel, or the same with the extension's case flipped (.jpg and .JPG
 * are mixed in the release, and copies made on case-insensitive disks
 * may not keep them). 1 when found; *flipped says which. */
static int find_image(char *out, size_t n, const char *dir, const char *rel, int *flipped)
{
    *flipped = 0;
    if (!path_join(out, n, dir, rel)) return 0;
    if (path_exists(out)) return 1;
    char *dot = strrchr(out, '.');
    if (!dot || strchr(dot, '/')) return 0;
    for (int pass = 0; pass < 2; pass++) { /* flip; if that is not there either, flip back */
        for (char *p = dot + 1; *p; p++)
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) *p ^= 32;
        if (pass == 0 && path_exists(out)) return *flipped = 1;
    }
    return 0;
}

/* ASCII case-insensitive "does hay contain needle". */
static int contains_word(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t k = 0;
        while (k < n && hay[k] && (hay[k] | 32) == (needle[k] | 32)) k++;
        if (k == n) return 1;
    }
    return 0;
}

/* One row of meta.csv → combination of each task (h[t]), or a bad-row
 * sentence. Returns 1 when the row is good. */
static sc_status derm7p_row_labels(ds_builder *b, const sc_csv *csv, int64_t r, const int *task_col, int *h,
                                   int *good)
{
    const sc_hier *hier = &b->ds->hier;
    char where[512];
    *good = 0;
    for (int t = 0; t < hier->n_tasks; t++) {
        const sc_hier_task *task = &hier->tasks[t];
        const char *value = sc_csv_get(csv, r, task_col[t]);
        int l = sc_hier_concept_of(task, value);
        if (l < 0)
            return ds_bad(b, "%s: '%s' is not a concept of task '%s' in %s", csv_where(where, sizeof where, csv, r, task_col[t]),
                          value, task->name, b->ds->hier_path);
        h[t] = sc_hier_combo_find(task, NULL, task->concepts[l].name);
        if (h[t] < 0)
            return sc_fail(b->err, SC_EFORMAT, "%s: concept '%s' of task '%s' belongs to several classes; a Derm7p "
                           "value must name one combination", b->ds->hier_path, task->concepts[l].name, task->name);
    }
    *good = 1;
    return SC_OK;
}

static sc_status derm7p_splits(ds_builder *b, const char *root, const int64_t *image_of_row, int64_t n_rows)
{
    static const char *const files[3] = {"meta/train_indexes.csv", "meta/valid_indexes.csv", "meta/test_indexes.csv"};
    static const sc_split splits[3] = {SC_SPLIT_TRAIN, SC_SPLIT_VALID, SC_SPLIT_TEST};
    int8_t *owner = malloc((size_t)n_rows + 1);
    if (!owner) return sc_fail(b->err, SC_ENOMEM, "out of memory");
    memset(owner, -1, (size_t)n_rows + 1);
    sc_status st = SC_OK;
    for (int f = 0; f < 3 && !st; f++) {
        char path[DS_PATH_MAX];
        sc_csv csv;
        int col;
        if (!path_join(path, sizeof path, root, files[f])) st = sc_fail(b->err, SC_EARG, "%s: path too long", root);
        if (!st) st = sc_csv_load(&csv, path, NULL, b->err);
        if (st) break;
        st = sc_csv_require_column(&csv, "indexes", &col, b->err);
        for (int64_t k = 0; !st && k < csv.n_rows; k++) {
            int64_t row;
            if ((st = sc_csv_get_int(&csv, k, col, &row, b->err))) break;
            if (row < 0 || row >= n_rows)
                st = sc_csv_fail(b->err, SC_ERANGE, &csv, k, col, "row %lld is outside meta.csv's rows 0..%lld",
                                 (long long)row, (long long)n_rows - 1);
            else if (owner[row] == f)
                st = sc_csv_fail(b->err, SC_EFORMAT, &csv, k, col, "row %lld is listed twice", (long long)row);
            else if (owner[row] >= 0)
                st = sc_csv_fail(b->err, SC_EFORMAT, &csv, k, col, "row %lld is also in %s", (long long)row,
                                 files[owner[row]]);
            else {
                owner[row] = (int8_t)f;
                if (image_of_row[row] >= 0) b->ds->split[image_of_row[row]] = (uint8_t)splits[f];
            }
        }
        sc_csv_free(&csv);
    }
    int64_t unlisted = 0;
    for (int64_t r = 0; r < n_rows; r++) unlisted += owner[r] < 0 && image_of_row[r] >= 0;
    free(owner);
    if (!st && unlisted)
        st = DS_NOTE(b, "%lld images are in no index file (split none)", (long long)unlisted);
    return st;
}

static sc_status derm7p_read(ds_builder *b, const ds_resolved *res)
{
    sc_dataset *ds = b->ds;
    const sc_hier *hier = &ds->hier;
    char path[DS_PATH_MAX], where[512];
    if (!path_join(path, sizeof path, res->root, "meta/meta.csv")) return sc_fail(b->err, SC_EARG, "path too long");
    if (!path_exists(path))
        return sc_fail(b->err, SC_EIO, "%s: no meta/meta.csv here (Derm7p's release_v0 layout)", ds->options.path);
    sc_csv csv;
    sc_csv_options copt = {0};
    copt.ragged_ok = 1; /* a row with a wrong field count is reported by row, below */
    sc_status st = sc_csv_load(&csv, path, &copt, b->err);
    if (st) return st;
    const char *image_column = ds->options.clinic ? "clinic" : "derm";
    int case_col = -1, image_col = -1, notes_col = sc_csv_column(&csv, "notes"), task_col[SC_HIER_MAX_TASKS];
    st = sc_csv_require_column(&csv, "case_num", &case_col, b->err);
    if (!st) st = sc_csv_require_column(&csv, image_column, &image_col, b->err);
    for (int t = 0; !st && t < hier->n_tasks; t++) {
        if (!hier->tasks[t].column)
            st = sc_fail(b->err, SC_EFORMAT, "%s: task '%s' has no column line; Derm7p reads each task from a "
                         "column of meta.csv", ds->hier_path, hier->tasks[t].name);
        else st = sc_csv_require_column(&csv, hier->tasks[t].column, &task_col[t], b->err);
    }
    int64_t *image_of_row = st ? NULL : malloc(sizeof(int64_t) * (size_t)(csv.n_rows + 1));
    if (!st && !image_of_row) st = sc_fail(b->err, SC_ENOMEM, "out of memory");
    int64_t replaced = 0, flipped_total = 0;
    for (int64_t r = 0; !st && r < csv.n_rows; r++) {
        image_of_row[r] = -1;
        const char *rel = sc_csv_get(&csv, r, image_col), *id = sc_csv_get(&csv, r, case_col);
        int h[SC_HIER_MAX_TASKS], good = 0, flipped;
        if (csv.rows[r].n_fields != csv.n_cols)
            st = ds_bad(b, "%s: %d fields, but the header has %d", csv_where(where, sizeof where, &csv, r, -1),
                        csv.rows[r].n_fields, csv.n_cols);
        else if (!rel[0]) st = ds_bad(b, "%s: no image file named", csv_where(where, sizeof where, &csv, r, image_col));
        else if (ds->options.clinic && !ds->options.keep_replaced_clinic && notes_col >= 0 &&
                 contains_word(sc_csv_get(&csv, r, notes_col), "replaced"))
            replaced++; /* its "clinic" image is a dermoscopic one */
        else if (!find_image(path, sizeof path, res->images, rel, &flipped))
            st = ds_bad(b, "%s: image file %s not found", csv_where(where, sizeof where, &csv, r, image_col), path);
        else if (!(st = derm7p_row_labels(b, &csv, r, task_col, h, &good)) && good) {
            flipped_total += flipped;
            char row_name[32];
            snprintf(row_name, sizeof row_name, "row %lld", (long long)r);
            const char *name = id[0] ? id : row_name;
            int64_t i = ds_add_image(b, path, name, name, r, SC_SPLIT_NONE);
            if (i < 0) st = SC_ENOMEM;
            for (int t = 0; !st && t < hier->n_tasks; t++) ds->labels[i * ds->n_labels + ds->label_offset[t] + h[t]] = 1;
            image_of_row[r] = i;
        }
    }
    if (!st && replaced)
        st = DS_NOTE(b, "%lld cases whose clinic image is a dermoscopic one (notes column) left out; "
                     "--keep-replaced-clinic keeps them", (long long)replaced);
    if (!st && flipped_total)
        st = DS_NOTE(b, "%lld image files found with the extension's case flipped (.jpg/.JPG)", (long long)flipped_total);
    if (!st && ds->options.split == SC_SPLITS_OFFICIAL) st = derm7p_splits(b, res->root, image_of_row, csv.n_rows);
    free(image_of_row);
    sc_csv_free(&csv);
    return st;
}

/* ---- 6c. PadChest-GR ------------------------------------------------------
 * grounded_reports_*.json is a list of studies {"ImageID", "findings":
 * [{"sentence_en", "sentence_es", "abnormal", "labels", "locations", ...}]};
 * master_table.csv has one row per (study, label) with ImageID, PatientID
 * and split (train, validation, test). A positive finding (abnormal true)
 * gives every combination whose class one of its labels names and whose
 * concept its locations give (sc_hier_class_of, sc_hier_concept_matches;
 * PadChest's "loc " prefix dropped); its sentence becomes a text carrying
 * those combinations. The image carries the union over its findings. */

#define PADCHEST_MAX_VALUES 64   /* labels or locations of one finding */
#define PADCHEST_MAX_FINDINGS 256 /* per study */

typedef struct {
    const char *image_id;
    int64_t row;                 /* row of master_table.csv */
} master_entry;

static int master_cmp(const void *a, const void *b)
{
    const master_entry *x = a, *y = b;
    int c = strcmp(x->image_id, y->image_id);
    return c ? c : (x->row > y->row) - (x->row < y->row);
}

/* master_table.csv sorted by ImageID, one entry per image (the first row),
 * after checking that an image's rows agree on split and patient. */
typedef struct {
    sc_csv csv;
    master_entry *entry;         /* (n) */
    int64_t n;
    int split_col, patient_col;  /* patient_col -1 when there is no PatientID */
    int64_t *used_by;            /* (n) study that took the image, or -1 */
} master_table;

static sc_status master_load(master_table *m, const char *root, sc_err *err)
{
    memset(m, 0, sizeof *m);
    char path[DS_PATH_MAX];
    if (!path_join(path, sizeof path, root, "master_table.csv")) return sc_fail(err, SC_EARG, "path too long");
    if (!path_exists(path)) {
        char zip[DS_PATH_MAX + 8];
        snprintf(zip, sizeof zip, "%s.zip", path);
        if (path_exists(zip)) return sc_fail(err, SC_EIO, "%s: not found; the release ships it zipped: unzip %s", path, zip);
    }
    sc_status st = sc_csv_load(&m->csv, path, NULL, err);
    if (st) return st;
    int id_col;
    m->patient_col = sc_csv_column(&m->csv, "PatientID");
    st = sc_csv_require_column(&m->csv, "ImageID", &id_col, err);
    if (!st) st = sc_csv_require_column(&m->csv, "split", &m->split_col, err);
    m->entry = st ? NULL : malloc(sizeof *m->entry * (size_t)(m->csv.n_rows + 1));
    if (!st && !m->entry) st = sc_fail(err, SC_ENOMEM, "out of memory");
    for (int64_t r = 0; !st && r < m->csv.n_rows; r++) m->entry[r] = (master_entry){sc_csv_get(&m->csv, r, id_col), r};
    if (!st) qsort(m->entry, (size_t)m->csv.n_rows, sizeof *m->entry, master_cmp);
    /* keep the first row of each image; the others must agree with it */
    for (int64_t r = 0; !st && r < m->csv.n_rows; r++) {
        if (m->n > 0 && !strcmp(m->entry[m->n - 1].image_id, m->entry[r].image_id)) {
            int64_t first = m->entry[m->n - 1].row, row = m->entry[r].row;
            for (int k = 0; k < 2 && !st; k++) {
                int col = k ? m->patient_col : m->split_col;
                if (col >= 0 && strcmp(sc_csv_get(&m->csv, first, col), sc_csv_get(&m->csv, row, col)))
                    st = sc_csv_fail(err, SC_EFORMAT, &m->csv, row, col, "'%s', but line %lld gives image %s '%s'",
                                     sc_csv_get(&m->csv, row, col), (long long)m->csv.rows[first].line,
                                     m->entry[r].image_id, sc_csv_get(&m->csv, first, col));
            }
            continue;
        }
        m->entry[m->n++] = m->entry[r];
    }
    m->used_by = st ? NULL : malloc(sizeof *m->used_by * (size_t)(m->n + 1));
    if (!st && !m->used_by) st = sc_fail(err, SC_ENOMEM, "out of memory");
    for (int64_t k = 0; !st && k < m->n; k++) m->used_by[k] = -1;
    return st;
}

static void master_free(master_table *m)
{
    sc_csv_free(&m->csv);
    free(m->entry);
    free(m->used_by);
}

/* Index of an image in the master table, or -1. */
static int64_t master_find(const master_table *m, const char *image_id)
{
    int64_t lo = 0, hi = m->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->entry[mid].image_id, image_id);
        if (c == 0) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* A JSON list of strings into values (at most PADCHEST_MAX_VALUES), with
 * PadChest's "loc " prefix dropped when strip_loc. A missing member is an
 * empty list; anything else fails (returns 0). */
static int json_strings(const sc_json *obj, const char *key, const char **values, int *n, int strip_loc)
{
    const sc_json *a = sc_json_get(obj, key);
    *n = 0;
    if (!a || a->type == SC_JSON_NULL) return 1;
    if (a->type != SC_JSON_ARRAY || a->len > PADCHEST_MAX_VALUES) return 0;
    for (size_t i = 0; i < a->len; i++) {
        if (a->items[i]->type != SC_JSON_STRING) return 0;
        const char *v = a->items[i]->str;
        if (strip_loc && (v[0] | 32) == 'l' && (v[1] | 32) == 'o' && (v[2] | 32) == 'c' && v[3] == ' ') v += 4;
        values[(*n)++] = v;
    }
    return 1;
}

/* What one study gives before it enters the table. */
typedef struct {
    int n_texts;
    const char *text[PADCHEST_MAX_FINDINGS];
    uint8_t *text_labels;        /* (PADCHEST_MAX_FINDINGS, H) */
    uint8_t *labels;             /* (H) */
} study_labels;

/* The combinations of one positive finding into row (H). */
static void finding_combos(const sc_hier_task *t, const char *const *labels, int n_labels, const char *const *locs,
                           int n_locs, uint8_t *row)
{
    for (int k = 0; k < n_labels; k++) {
        int c = sc_hier_class_of(t, labels[k]);
        for (int h = 0; c >= 0 && h < t->n_combos; h++)
            if (t->combo_class[h] == c && sc_hier_concept_matches(t, t->combo_concept[h], locs, n_locs)) row[h] = 1;
    }
}

/* Read one study's findings into s; *good = 0 when it was bad (skipped). */
static sc_status padchest_study(ds_builder *b, const char *what, int64_t k, const sc_json *study, const char *image_id,
                                study_labels *s, int *good)
{
    const sc_hier_task *t = &b->ds->hier.tasks[0];
    const char *lang_key = b->ds->options.spanish ? "sentence_es" : "sentence_en";
    int H = t->n_combos;
    const sc_json *findings = sc_json_get(study, "findings");
    *good = 0;
    s->n_texts = 0;
    memset(s->labels, 0, (size_t)H);
    if (findings && findings->type != SC_JSON_ARRAY)
        return ds_bad(b, "%s: study %lld (ImageID %s): \"findings\" is not a list", what, (long long)k, image_id);
    size_t n_findings = findings ? findings->len : 0;
    if (n_findings > PADCHEST_MAX_FINDINGS)
        return ds_bad(b, "%s: study %lld (ImageID %s): more than %d findings", what, (long long)k, image_id,
                      PADCHEST_MAX_FINDINGS);
    for (size_t f = 0; f < n_findings; f++) {
        const sc_json *fd = findings->items[f];
        const char *labels[PADCHEST_MAX_VALUES], *locs[PADCHEST_MAX_VALUES];
        int n_labels, n_locs;
        if (fd->type != SC_JSON_OBJECT)
            return ds_bad(b, "%s: study %lld (ImageID %s), finding %zu: not an object", what, (long long)k, image_id, f);
        if (!json_strings(fd, "labels", labels, &n_labels, 0) || !json_strings(fd, "locations", locs, &n_locs, 1))
            return ds_bad(b, "%s: study %lld (ImageID %s), finding %zu: \"labels\" and \"locations\" must be lists "
                          "of at most %d strings", what, (long long)k, image_id, f, PADCHEST_MAX_VALUES);
        if (!sc_json_get_bool(fd, "abnormal", 0)) continue; /* a negative sentence ("no effusion") */
        uint8_t *row = s->text_labels + (size_t)s->n_texts * (size_t)H;
        memset(row, 0, (size_t)H);
        finding_combos(t, labels, n_labels, locs, n_locs, row);
        if (!memchr(row, 1, (size_t)H)) continue; /* none of the task's combinations */
        const char *sentence = sc_json_get_string(fd, lang_key, NULL);
        if (!sentence || !sentence[0])
            return ds_bad(b, "%s: study %lld (ImageID %s), finding %zu: no \"%s\" text", what, (long long)k, image_id,
                          f, lang_key);
        for (int h = 0; h < H; h++) s->labels[h] |= row[h];
        s->text[s->n_texts++] = sentence;
    }
    *good = 1;
    return SC_OK;
}

/* Enter a good study: image, labels, texts. */
static sc_status padchest_add(ds_builder *b, const master_table *m, int64_t mi, int64_t k, const char *path,
                              const char *image_id, const study_labels *s)
{
    sc_dataset *ds = b->ds;
    int64_t row = m->entry[mi].row;
    const char *split = sc_csv_get(&m->csv, row, m->split_col);
    sc_split sp = !strcmp(split, "train")                                  ? SC_SPLIT_TRAIN
                  : !strcmp(split, "validation") || !strcmp(split, "valid") ? SC_SPLIT_VALID
                  : !strcmp(split, "test")                                  ? SC_SPLIT_TEST
                                                                            : SC_N_SPLITS;
    if (sp == SC_N_SPLITS && ds->options.split == SC_SPLITS_OFFICIAL)
        return sc_csv_fail(b->err, SC_EFORMAT, &m->csv, row, m->split_col, "'%s' is not train, validation or test",
                           split);
    const char *patient = m->patient_col >= 0 ? sc_csv_get(&m->csv, row, m->patient_col) : "";
    int64_t i = ds_add_image(b, path, image_id, patient[0] ? patient : image_id, k,
                             sp == SC_N_SPLITS ? SC_SPLIT_NONE : sp);
    if (i < 0) return SC_ENOMEM;
    int H = ds->n_labels; /* one task */
    memcpy(ds->labels + i * H, s->labels, (size_t)H);
    for (int j = 0; j < s->n_texts; j++) {
        int64_t tx = ds_add_text(b, i, s->text[j]);
        if (tx < 0) return SC_ENOMEM;
        memcpy(ds->text_labels + tx * H, s->text_labels + (size_t)j * (size_t)H, (size_t)H);
    }
    return SC_OK;
}

static sc_status padchest_read(ds_builder *b, const ds_resolved *res)
{
    sc_dataset *ds = b->ds;
    if (ds->hier.n_tasks != 1)
        return sc_fail(b->err, SC_EFORMAT, "%s: PadChest-GR needs a hierarchy with one (multi-label) task, not %d",
                       ds->hier_path, ds->hier.n_tasks);
    char what[DS_PATH_MAX], path[DS_PATH_MAX];
    if (!path_join(what, sizeof what, res->root, res->reports)) return sc_fail(b->err, SC_EARG, "path too long");
    master_table m;
    sc_status st = master_load(&m, res->root, b->err);
    sc_json_doc doc = {0};
    int have_doc = 0;
    if (!st) st = sc_json_load(&doc, what, (size_t)1 << 31, b->err), have_doc = !st;
    if (!st && doc.root->type != SC_JSON_ARRAY) st = sc_fail(b->err, SC_EFORMAT, "%s: not a list of studies", what);
    int H = ds->n_labels;
    study_labels s = {0};
    s.text_labels = st ? NULL : malloc((size_t)PADCHEST_MAX_FINDINGS * (size_t)H + 1);
    s.labels = st ? NULL : malloc((size_t)H + 1);
    if (!st && (!s.text_labels || !s.labels)) st = sc_fail(b->err, SC_ENOMEM, "out of memory");
    int64_t n_unlisted = 0;
    for (size_t k = 0; !st && k < (have_doc ? doc.root->len : 0); k++) {
        const sc_json *study = doc.root->items[k];
        const char *image_id = study->type == SC_JSON_OBJECT ? sc_json_get_string(study, "ImageID", NULL) : NULL;
        int64_t mi = image_id ? master_find(&m, image_id) : -1;
        int good = 0;
        if (!image_id || !image_id[0] || strchr(image_id, '/'))
            st = ds_bad(b, "%s: study %zu: no \"ImageID\" file name", what, k);
        else if (mi < 0)
            st = ds_bad(b, "%s: study %zu (ImageID %s): not in master_table.csv", what, k, image_id);
        else if (m.used_by[mi] >= 0)
            st = ds_bad(b, "%s: study %zu (ImageID %s): the image is also study %lld", what, k, image_id,
                        (long long)m.used_by[mi]);
        else if (!path_join(path, sizeof path, res->images, image_id) || !path_exists(path))
            st = ds_bad(b, "%s: study %zu (ImageID %s): image file %s not found", what, k, image_id, path);
        else if (!(st = padchest_study(b, what, (int64_t)k, study, image_id, &s, &good)) && good) {
            m.used_by[mi] = (int64_t)k;
            st = padchest_add(b, &m, mi, (int64_t)k, path, image_id, &s);
        }
    }
    for (int64_t k = 0; !st && k < m.n; k++) n_unlisted += m.used_by[k] < 0;
    if (!st && n_unlisted)
        st = DS_NOTE(b, "%lld images of master_table.csv have no study in %s", (long long)n_unlisted, res->reports);
    free(s.text_labels);
    free(s.labels);
    if (have_doc) sc_json_free(&doc);
    master_free(&m);
    return st;
}

/* ---- 6d. Manifests ----------------------------------------------------------
 * Any other dataset, without code: a CSV with the columns
 *   image   the file, relative to the manifest's folder (or absolute)
 *   labels  combinations as task:class:concept (class:concept when the
 *           hierarchy has one task), ';' between several
 *   text    optional: a sentence about the image (its labels are the row's)
 *   split   optional: train, valid (or validation), test, or empty
 *   group   optional: rows with the same group stay in one split (patient)
 *   id      optional: the image's name (default: the image column)
 * Without --hier the hierarchy is derived from the labels: tasks, classes,
 * concepts and combinations in order of first appearance, a task being
 * multi-label when some row gives it two combinations, and the prompt
 * template "{concept} {class}.". */

#define MANIFEST_MAX_LABELS 256 /* combinations in one cell */

typedef struct {
    char task[SC_HIER_MAX_LINE], cls[SC_HIER_MAX_LINE], concept[SC_HIER_MAX_LINE];
} label_triple;

/* Trim blanks into out; 0 when empty or too long. */
static int trim_copy(char *out, size_t n, const char *s, size_t len)
{
    while (len && (*s == ' ' || *s == '\t')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    if (!len || len >= n) return 0;
    memcpy(out, s, len);
    out[len] = 0;
    return 1;
}

/* Split a labels cell into triples; returns their number, or -1 with a
 * reason in why. one_task: the name of the only task, for "class:concept". */
static int parse_label_cell(const char *cell, const char *one_task, label_triple *out, int max, const char **why)
{
    int n = 0;
    for (const char *p = cell; *p;) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *c1 = memchr(p, ':', len), *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - p)) : NULL;
        int blank = 1;
        for (size_t i = 0; i < len; i++) blank &= p[i] == ' ' || p[i] == '\t';
        if (!blank) {
            if (n == max) return *why = "too many combinations in one cell", -1;
            label_triple *t = &out[n++];
            if (c2 && memchr(c2 + 1, ':', len - (size_t)(c2 + 1 - p))) return *why = "more than two ':' in a label", -1;
            if (!c1) return *why = "a label is task:class:concept (or class:concept with one task)", -1;
            if (!c2 && !one_task) return *why = "with several tasks a label is task:class:concept", -1;
            int ok = c2 ? trim_copy(t->task, sizeof t->task, p, (size_t)(c1 - p)) &&
                              trim_copy(t->cls, sizeof t->cls, c1 + 1, (size_t)(c2 - c1 - 1)) &&
                              trim_copy(t->concept, sizeof t->concept, c2 + 1, len - (size_t)(c2 + 1 - p))
                        : trim_copy(t->task, sizeof t->task, one_task, strlen(one_task)) &&
                              trim_copy(t->cls, sizeof t->cls, p, (size_t)(c1 - p)) &&
                              trim_copy(t->concept, sizeof t->concept, c1 + 1, len - (size_t)(c1 + 1 - p));
            if (!ok) return *why = "a label has an empty or overlong name", -1;
        }
        if (!end) break;
        p = end + 1;
    }
    return n;
}

/* A name the .hier format can hold on a line of its own. */
static int hier_safe_name(const char *s)
{
    if (s[0] == '#') return 0;
    for (const char *p = s; *p; p++)
        if (*p == '|' || *p == '+' || (unsigned char)*p < 0x20) return 0;
    return 1;
}

/* Names seen so far, in order (a small set: the hierarchy's caps bound it). */
typedef struct {
    char **name;
    int n, cap;
} name_list;

static int name_index(const name_list *l, const char *s)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->name[i], s)) return i;
    return -1;
}

static int name_add(name_list *l, const char *s)
{
    int i = name_index(l, s);
    if (i >= 0) return i;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        if (!ds_grow((void **)&l->name, cap, sizeof *l->name)) return -1;
        l->cap = cap;
    }
    size_t n = strlen(s) + 1;
    if (!(l->name[l->n] = malloc(n))) return -1;
    memcpy(l->name[l->n], s, n);
    return l->n++;
}

static void name_list_free(name_list *l)
{
    for (int i = 0; i < l->n; i++) free(l->name[i]);
    free(l->name);
}

/* The .hier text of a manifest's labels (see the comment above). Bad
 * cells are left to the second pass, which reports them by row. */
static sc_status manifest_derive_hier(ds_builder *b, const sc_csv *csv, int labels_col)
{
    name_list tasks = {0};
    name_list *classes = NULL, *concepts = NULL, *combos = NULL; /* per task; combos hold "class|concept" */
    int *multilabel = NULL;
    label_triple *cell = malloc(sizeof *cell * MANIFEST_MAX_LABELS);
    sc_status st = cell ? SC_OK : sc_fail(b->err, SC_ENOMEM, "out of memory");
    char where[512];
    for (int64_t r = 0; !st && r < csv->n_rows; r++) {
        const char *why;
        int n = parse_label_cell(sc_csv_get(csv, r, labels_col), "task", cell, MANIFEST_MAX_LABELS, &why);
        int per_task[SC_HIER_MAX_TASKS] = {0};
        for (int k = 0; !st && k < n; k++) {
            label_triple *t = &cell[k];
            if (!hier_safe_name(t->task) || !hier_safe_name(t->cls) || !hier_safe_name(t->concept)) {
                st = sc_fail(b->err, SC_EFORMAT, "%s: '%s:%s:%s' cannot name a derived hierarchy ('|', '+', '#' "
                             "first, or a control character); give one with --hier",
                             csv_where(where, sizeof where, csv, r, labels_col), t->task, t->cls, t->concept);
                break;
            }
            int before = tasks.n, ti = name_add(&tasks, t->task);
            if (ti < 0) {
                st = sc_fail(b->err, SC_ENOMEM, "out of memory");
                break;
            }
            if (tasks.n > before) { /* a new task: its lists start empty */
                if (tasks.n > SC_HIER_MAX_TASKS) {
                    free(tasks.name[--tasks.n]);
                    st = sc_fail(b->err, SC_ENOMEM, "%s: more than %d tasks", csv->what, SC_HIER_MAX_TASKS);
                    break;
                }
                if (!ds_grow((void **)&classes, tasks.n, sizeof *classes) ||
                    !ds_grow((void **)&concepts, tasks.n, sizeof *concepts) ||
                    !ds_grow((void **)&combos, tasks.n, sizeof *combos) ||
                    !ds_grow((void **)&multilabel, tasks.n, sizeof *multilabel)) {
                    free(tasks.name[--tasks.n]); /* the per-task lists cover the tasks before it */
                    st = sc_fail(b->err, SC_ENOMEM, "out of memory");
                    break;
                }
                memset(&classes[ti], 0, sizeof classes[ti]);
                memset(&concepts[ti], 0, sizeof concepts[ti]);
                memset(&combos[ti], 0, sizeof combos[ti]);
                multilabel[ti] = 0;
            }
            char pair[2 * SC_HIER_MAX_LINE + 2];
            snprintf(pair, sizeof pair, "%s|%s", t->cls, t->concept);
            if (name_add(&classes[ti], t->cls) < 0 || name_add(&concepts[ti], t->concept) < 0 ||
                name_add(&combos[ti], pair) < 0)
                st = sc_fail(b->err, SC_ENOMEM, "out of memory");
            if (++per_task[ti] > 1) multilabel[ti] = 1;
        }
    }
    if (!st && tasks.n == 0) st = sc_fail(b->err, SC_EFORMAT, "%s: no labels to derive a hierarchy from; give one with "
                                          "--hier", csv->what);
    sc_text text;
    sc_text_init(&text);
    sc_text_printf(&text, "scale-hier 1\n# derived from %s\ntemplate {concept} {class}.\n", csv->what);
    for (int t = 0; !st && t < tasks.n; t++) {
        sc_text_printf(&text, "\ntask %s\nmultilabel %s\n", tasks.name[t], multilabel[t] ? "yes" : "no");
        for (int i = 0; i < classes[t].n; i++) sc_text_printf(&text, "class %s\n", classes[t].name[i]);
        for (int i = 0; i < concepts[t].n; i++) sc_text_printf(&text, "concept %s\n", concepts[t].name[i]);
        for (int i = 0; i < combos[t].n; i++) {
            char *bar = strchr(combos[t].name[i], '|');
            sc_text_printf(&text, "combo %.*s | %s\n", (int)(bar - combos[t].name[i]), combos[t].name[i], bar + 1);
        }
    }
    if (!st && text.failed) st = sc_fail(b->err, SC_ENOMEM, "out of memory");
    if (!st) st = ds_set_hier(b->ds, text.data, text.len, "(derived)", b->err);
    sc_text_free(&text);
    for (int t = 0; t < tasks.n; t++) {
        if (classes) name_list_free(&classes[t]);
        if (concepts) name_list_free(&concepts[t]);
        if (combos) name_list_free(&combos[t]);
    }
    name_list_free(&tasks);
    free(classes), free(concepts), free(combos), free(multilabel), free(cell);
    return st;
}

static sc_split parse_split_name(const char *s)
{
    if (!s[0]) return SC_SPLIT_NONE;
    if (!strcmp(s, "train")) return SC_SPLIT_TRAIN;
    if (!strcmp(s, "valid") || !strcmp(s, "validation") || !strcmp(s, "val")) return SC_SPLIT_VALID;
    if (!strcmp(s, "test")) return SC_SPLIT_TEST;
    return SC_N_SPLITS;
}

/* One row's labels into h_of (task, combination) pairs; *good = 0 when the
 * row is bad (reported through ds_bad). */
static sc_status manifest_row_labels(ds_builder *b, const sc_csv *csv, int64_t r, int col, label_triple *cell,
                                     int *task_of, int *combo_of, int *n_out, int *good)
{
    const sc_hier *hier = &b->ds->hier;
    const char *why = NULL, *cell_text = sc_csv_get(csv, r, col);
    char where[512];
    *good = 0;
    int n = parse_label_cell(cell_text, hier->n_tasks == 1 ? hier->tasks[0].name : NULL, cell, MANIFEST_MAX_LABELS, &why);
    if (n < 0) return ds_bad(b, "%s: '%s': %s", csv_where(where, sizeof where, csv, r, col), cell_text, why);
    for (int k = 0; k < n; k++) {
        const sc_hier_task *t = sc_hier_task_find(hier, cell[k].task);
        int h = t ? sc_hier_combo_find(t, cell[k].cls, cell[k].concept) : -1;
        if (h < 0)
            return ds_bad(b, "%s: '%s:%s:%s' is not a combination of %s", csv_where(where, sizeof where, csv, r, col),
                          cell[k].task, cell[k].cls, cell[k].concept, b->ds->hier_path);
        task_of[k] = (int)(t - hier->tasks);
        combo_of[k] = h;
    }
    *n_out = n;
    *good = 1;
    return SC_OK;
}

static sc_status manifest_read(ds_builder *b, const ds_resolved *res)
{
    sc_dataset *ds = b->ds;
    sc_csv csv;
    sc_csv_options copt = {0};
    copt.ragged_ok = 1;
    sc_status st = sc_csv_load(&csv, ds->options.path, &copt, b->err);
    if (st) return st;
    int image_col, labels_col, text_col = sc_csv_column(&csv, "text"), split_col = sc_csv_column(&csv, "split");
    int group_col = sc_csv_column(&csv, "group"), id_col = sc_csv_column(&csv, "id");
    st = sc_csv_require_column(&csv, "image", &image_col, b->err);
    if (!st) st = sc_csv_require_column(&csv, "labels", &labels_col, b->err);
    if (!st && !res->hier[0]) st = manifest_derive_hier(b, &csv, labels_col);
    else if (!st) st = ds_load_hier(ds, res->hier, b->err);
    label_triple *cell = st ? NULL : malloc(sizeof *cell * MANIFEST_MAX_LABELS);
    if (!st && !cell) st = sc_fail(b->err, SC_ENOMEM, "out of memory");
    char path[DS_PATH_MAX], where[512];
    for (int64_t r = 0; !st && r < csv.n_rows; r++) {
        const char *image = sc_csv_get(&csv, r, image_col);
        const char *split_name = split_col >= 0 ? sc_csv_get(&csv, r, split_col) : "";
        sc_split split = parse_split_name(split_name);
        int task_of[MANIFEST_MAX_LABELS], combo_of[MANIFEST_MAX_LABELS], n = 0, good = 0;
        int joined = image[0] == '/' ? snprintf(path, sizeof path, "%s", image) < (int)sizeof path
                                     : path_join(path, sizeof path, res->images, image);
        if (csv.rows[r].n_fields != csv.n_cols)
            st = ds_bad(b, "%s: %d fields, but the header has %d", csv_where(where, sizeof where, &csv, r, -1),
                        csv.rows[r].n_fields, csv.n_cols);
        else if (!image[0]) st = ds_bad(b, "%s: no image file named", csv_where(where, sizeof where, &csv, r, image_col));
        else if (!joined || !path_exists(path))
            st = ds_bad(b, "%s: image file %s not found", csv_where(where, sizeof where, &csv, r, image_col), path);
        else if (split == SC_N_SPLITS)
            st = ds_bad(b, "%s: '%s' is not train, valid, test or empty", csv_where(where, sizeof where, &csv, r, split_col),
                        split_name);
        else if (!(st = manifest_row_labels(b, &csv, r, labels_col, cell, task_of, combo_of, &n, &good)) && good) {
            const char *id = id_col >= 0 && sc_csv_get(&csv, r, id_col)[0] ? sc_csv_get(&csv, r, id_col) : image;
            const char *group = group_col >= 0 && sc_csv_get(&csv, r, group_col)[0] ? sc_csv_get(&csv, r, group_col) : id;
            int64_t i = ds_add_image(b, path, id, group, r, split);
            if (i < 0) st = SC_ENOMEM;
            for (int k = 0; !st && k < n; k++) ds->labels[i * ds->n_labels + ds->label_offset[task_of[k]] + combo_of[k]] = 1;
            const char *text = text_col >= 0 ? sc_csv_get(&csv, r, text_col) : "";
            if (!st && text[0]) {
                int64_t j = ds_add_text(b, i, text);
                if (j < 0) st = SC_ENOMEM;
                else memcpy(ds->text_labels + j * ds->n_labels, ds->labels + i * ds->n_labels, (size_t)ds->n_labels);
            }
        }
    }
    free(cell);
    sc_csv_free(&csv);
    return st;
}

/* ---- 6e. After reading ------------------------------------------------------ */

/* Drop the combinations on fewer than min_cases images (the paper removes
 * PadChest-GR's locations with fewer than ten cases) and renumber the
 * label columns. */
static sc_status ds_drop_rare(ds_builder *b, int min_cases)
{
    sc_dataset *ds = b->ds;
    int K = ds->n_labels, *map = malloc(sizeof(int) * (size_t)(K + 1)), *count = calloc((size_t)K + 1, sizeof(int));
    sc_status st = map && count ? SC_OK : sc_fail(b->err, SC_ENOMEM, "out of memory");
    for (int64_t i = 0; !st && i < ds->n_images; i++)
        for (int k = 0; k < K; k++) count[k] += ds->labels[i * K + k];
    int n_kept = 0;
    for (int t = 0; !st && t < ds->hier.n_tasks; t++) {
        sc_hier_task *task = &ds->hier.tasks[t];
        int off = ds->label_offset[t], H = task->n_combos;
        uint8_t keep[SC_HIER_MAX_COMBOS];
        for (int h = 0; h < H; h++) {
            keep[h] = count[off + h] >= min_cases;
            if (!keep[h] && !st)
                st = ds_list_add(b, &ds->dropped, &ds->n_dropped, &b->cap_dropped, "%s|%s|%s", task->name,
                                 task->classes[task->combo_class[h]].name, task->concepts[task->combo_concept[h]].name);
            if (!keep[h] && !st)
                st = DS_NOTE(b, "combination '%s: %s' of task '%s' dropped: %d image%s, fewer than %d",
                             task->classes[task->combo_class[h]].name, task->concepts[task->combo_concept[h]].name,
                             task->name, count[off + h], count[off + h] == 1 ? "" : "s", min_cases);
        }
        int task_map[SC_HIER_MAX_COMBOS];
        if (!st && sc_hier_task_keep(&ds->hier, t, keep, task_map, b->err))
            st = sc_fail(b->err, SC_ERANGE, "%s: every combination of task '%s' has fewer than %d images (min-cases)",
                         ds->options.path, task->name, min_cases);
        for (int h = 0; !st && h < H; h++) map[off + h] = task_map[h] < 0 ? -1 : n_kept + task_map[h];
        n_kept += st ? 0 : task->n_combos;
    }
    /* move every kept column to its new place; rows shrink from K to n_kept */
    for (int64_t i = 0; !st && i < ds->n_images + ds->n_texts; i++) {
        uint8_t *row = i < ds->n_images ? ds->labels + i * K : ds->text_labels + (i - ds->n_images) * K;
        uint8_t *dst = i < ds->n_images ? ds->labels + i * n_kept : ds->text_labels + (i - ds->n_images) * n_kept;
        for (int k = 0; k < K; k++)
            if (map[k] >= 0) dst[map[k]] = row[k];
    }
    free(map);
    free(count);
    return st ? st : ds_label_columns(ds, b->err);
}

/* Remove the images without any label (unless keep_unlabelled), the texts
 * of removed images, and texts left without a label. */
static sc_status ds_drop_unlabelled(ds_builder *b)
{
    sc_dataset *ds = b->ds;
    int64_t K = ds->n_labels, n = 0, m = 0;
    int keep_all = ds->options.keep_unlabelled;
    int64_t *new_index = malloc(sizeof(int64_t) * (size_t)(ds->n_images + 1));
    if (!new_index) return sc_fail(b->err, SC_ENOMEM, "out of memory");
    for (int64_t i = 0; i < ds->n_images; i++) {
        int labelled = memchr(ds->labels + i * K, 1, (size_t)K) != NULL;
        new_index[i] = labelled || keep_all ? n : -1;
        if (new_index[i] < 0) continue;
        ds->image_path[n] = ds->image_path[i], ds->image_id[n] = ds->image_id[i], ds->group_id[n] = ds->group_id[i];
        ds->source_row[n] = ds->source_row[i], ds->split[n] = ds->split[i];
        memmove(ds->labels + n * K, ds->labels + i * K, (size_t)K);
        n++;
    }
    for (int64_t j = 0; j < ds->n_texts; j++) {
        int64_t img = new_index[ds->text_image[j]];
        int labelled = memchr(ds->text_labels + j * K, 1, (size_t)K) != NULL;
        if (img < 0 || (!labelled && !keep_all)) continue;
        ds->text[m] = ds->text[j], ds->text_image[m] = img;
        memmove(ds->text_labels + m * K, ds->text_labels + j * K, (size_t)K);
        m++;
    }
    free(new_index);
    int64_t dropped = ds->n_images - n;
    ds->n_images = n;
    ds->n_texts = m;
    if (!dropped) return SC_OK;
    return DS_NOTE(b, "%lld images without a combination of the hierarchy left out; --keep-unlabelled keeps them",
                   (long long)dropped);
}

typedef struct {
    const char *name;
    int64_t image;
} named_image;

static int named_image_cmp(const void *a, const void *b)
{
    const named_image *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->image > y->image) - (x->image < y->image);
}

/* Number names 0, 1, ... in order of first appearance. */
static sc_status number_by_first_appearance(const char *const *names, int64_t N, int64_t *out, sc_err *err)
{
    named_image *order = malloc(sizeof *order * (size_t)(N + 1));
    int64_t *rank = malloc(sizeof *rank * (size_t)(N + 1));
    if (!order || !rank) {
        free(order), free(rank);
        return sc_fail(err, SC_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < N; i++) order[i] = (named_image){names[i], i};
    qsort(order, (size_t)N, sizeof *order, named_image_cmp);
    int64_t runs = 0; /* runs of one name, numbered in name order */
    for (int64_t k = 0; k < N; k++) {
        if (k == 0 || strcmp(order[k].name, order[k - 1].name)) rank[runs++] = -1;
        out[order[k].image] = runs - 1;
    }
    int64_t next = 0;
    for (int64_t i = 0; i < N; i++) {
        if (rank[out[i]] < 0) rank[out[i]] = next++;
        out[i] = rank[out[i]];
    }
    free(order), free(rank);
    return SC_OK;
}

/* group[i]: the groups numbered 0, 1, ... in the order they first appear. */
static sc_status ds_number_groups(ds_builder *b)
{
    sc_dataset *ds = b->ds;
    free(ds->group);
    ds->group = malloc(sizeof *ds->group * (size_t)(ds->n_images + 1));
    if (!ds->group) return sc_fail(b->err, SC_ENOMEM, "out of memory");
    return number_by_first_appearance(ds->group_id, ds->n_images, ds->group, b->err);
}

/* The stratified train/test split: test_fraction of every combination's
 * images (whole groups) to test, the rest to train. */
static sc_status ds_stratified_split(ds_builder *b)
{
    sc_dataset *ds = b->ds;
    double f = ds->options.test_fraction, fraction[2] = {1 - f, f};
    if (!(f > 0 && f < 1)) return sc_fail(b->err, SC_EARG, "the test fraction must be in (0, 1), not %g", f);
    int *fold = malloc(sizeof(int) * (size_t)(ds->n_images + 1));
    if (!fold) return sc_fail(b->err, SC_ENOMEM, "out of memory");
    sc_status st = sc_stratify(fold, ds->labels, ds->n_images, ds->n_labels, ds->group, fraction, 2,
                               ds->options.split_seed, b->err);
    for (int64_t i = 0; !st && i < ds->n_images; i++) ds->split[i] = fold[i] ? SC_SPLIT_TEST : SC_SPLIT_TRAIN;
    free(fold);
    if (st) return st;
    return DS_NOTE(b, "stratified split: %g of the groups' images to test (seed %llu)", f,
                   (unsigned long long)ds->options.split_seed);
}

/* Copy the options' strings into the dataset, so it does not depend on the
 * caller's memory, with what resolution settled. */
static sc_status ds_keep_options(sc_dataset *ds, const sc_dataset_options *o, const ds_resolved *r, sc_err *err)
{
    ds->options = *o;
    ds->options.min_cases = r->min_cases;
    ds->options.path = ds_strdup(ds, o->path);
    ds->options.hier = r->hier[0] ? ds_strdup(ds, r->hier) : NULL;
    ds->options.images = o->images ? ds_strdup(ds, o->images) : NULL;
    if (!ds->options.path || (r->hier[0] && !ds->options.hier) || (o->images && !ds->options.images))
        return sc_fail(err, SC_ENOMEM, "out of memory");
    return SC_OK;
}

sc_status sc_dataset_load(sc_dataset *ds, const sc_dataset_options *o, sc_err *err)
{
    memset(ds, 0, sizeof *ds);
    sc_arena_init(&ds->arena, "dataset", (size_t)1 << 20, 0);
    ds_builder b = {ds, err, 0, 0, 0, 0, 0};
    ds_resolved res;
    sc_status st = (unsigned)o->kind < 3 ? ds_resolve(o, &res, err)
                                         : sc_fail(err, SC_EARG, "unknown dataset kind %d", (int)o->kind);
    if (!st) st = ds_keep_options(ds, o, &res, err);
    if (!st && o->kind != SC_DATA_MANIFEST) st = ds_load_hier(ds, res.hier, err);
    if (!st) {
        if (o->kind == SC_DATA_DERM7P) st = derm7p_read(&b, &res);
        else if (o->kind == SC_DATA_PADCHEST_GR) st = padchest_read(&b, &res);
        else st = manifest_read(&b, &res);
    }
    if (!st && res.min_cases > 0) st = ds_drop_rare(&b, res.min_cases);
    if (!st) st = ds_drop_unlabelled(&b);
    if (!st && ds->n_images == 0) st = sc_fail(err, SC_EFORMAT, "%s: no images with labels", o->path);
    if (!st) st = ds_number_groups(&b);
    if (!st && o->split == SC_SPLITS_STRATIFIED) st = ds_stratified_split(&b);
    if (st) sc_dataset_free(ds);
    return st;
}

void sc_dataset_free(sc_dataset *ds)
{
    free(ds->label_offset), free(ds->image_path), free(ds->image_id), free(ds->group_id), free(ds->group);
    free(ds->source_row), free(ds->split), free(ds->labels), free(ds->text), free(ds->text_image);
    free(ds->text_labels), free(ds->dropped), free(ds->skipped), free(ds->notes);
    if (ds->hier.tasks) sc_hier_free(&ds->hier);
    sc_arena_free(&ds->arena);
    memset(ds, 0, sizeof *ds);
}

void sc_dataset_print(const sc_dataset *ds, FILE *out)
{
    int64_t per_split[SC_N_SPLITS] = {0};
    for (int64_t i = 0; i < ds->n_images; i++) per_split[ds->split[i]]++;
    fprintf(out, "dataset %s: %s (hierarchy %s)\n", sc_dataset_kind_name(ds->options.kind), ds->options.path,
            ds->hier_path);
    fprintf(out, "images %lld: train %lld, valid %lld, test %lld, none %lld\n", (long long)ds->n_images,
            (long long)per_split[0], (long long)per_split[1], (long long)per_split[2], (long long)per_split[3]);
    fprintf(out, "texts %lld\n", (long long)ds->n_texts);
    int64_t *count = calloc((size_t)ds->n_labels * SC_N_SPLITS + 1, sizeof *count);
    for (int64_t i = 0; count && i < ds->n_images; i++)
        for (int k = 0; k < ds->n_labels; k++) count[k * SC_N_SPLITS + ds->split[i]] += ds->labels[i * ds->n_labels + k];
    for (int t = 0; count && t < ds->hier.n_tasks; t++) {
        const sc_hier_task *task = &ds->hier.tasks[t];
        fprintf(out, "task %s: %d combinations%s\n  %-52s %6s %6s %6s %6s\n", task->name, task->n_combos,
                task->multilabel ? ", multi-label" : "", "combination", "train", "valid", "test", "none");
        for (int h = 0; h < task->n_combos; h++) {
            char name[512];
            const int64_t *c = count + (ds->label_offset[t] + h) * SC_N_SPLITS;
            fprintf(out, "  %-56s %6lld %6lld %6lld %6lld\n", sc_hier_explain(task, h, name, sizeof name),
                    (long long)c[0], (long long)c[1], (long long)c[2], (long long)c[3]);
        }
    }
    free(count);
    for (int k = 0; k < ds->n_notes; k++) fprintf(out, "note: %s\n", ds->notes[k]);
    if (ds->n_skipped) fprintf(out, "skipped %d bad rows\n", ds->n_skipped);
}

/* ---- 6f. Stratified splits ----------------------------------------------------
 * Iterative stratification deals the units (items, or groups of items) to
 * folds one label at a time. Each fold f wants want[f][k] = fraction[f] ·
 * (images with label k) and want_size[f] = fraction[f] · N. Repeatedly:
 * take the label k with the fewest images among the units not yet dealt
 * (ties: the lower k), and deal each such unit, in the shuffled order, to
 * the fold that still wants most of k (ties: the one that wants most
 * images, then the lower f), subtracting the unit's counts from what that
 * fold wants. Units without labels go, in the shuffled order, to the fold
 * that wants most images. What is left of want[f][k] is then minus fold
 * f's excess of label k; strat_repair below trims excesses over one. */

typedef struct {
    int64_t n_units;
    int64_t *unit_of;      /* (N) unit of each item */
    int64_t *size;         /* (n_units) items */
    int32_t *count;        /* (n_units, K) items with label k */
    int64_t *order;        /* (n_units) shuffled */
} strat_units;

static void strat_free(strat_units *u)
{
    free(u->unit_of), free(u->size), free(u->count), free(u->order);
}

static sc_status strat_units_build(strat_units *u, const uint8_t *labels, int64_t N, int K, const int64_t *group,
                                   uint64_t seed, sc_err *err)
{
    memset(u, 0, sizeof *u);
    u->unit_of = malloc(sizeof *u->unit_of * (size_t)(N + 1));
    if (!u->unit_of) return sc_fail(err, SC_ENOMEM, "out of memory");
    for (int64_t i = 0; i < N; i++) {
        int64_t g = group ? group[i] : i;
        if (g < 0 || g >= N) return sc_fail(err, SC_ERANGE, "item %lld: group %lld is outside [0, %lld)",
                                            (long long)i, (long long)g, (long long)N);
        u->unit_of[i] = g;
        if (g + 1 > u->n_units) u->n_units = g + 1;
    }
    size_t cells;
    if (!sc_mul_ok((size_t)u->n_units, (size_t)K, &cells)) return sc_fail(err, SC_ENOMEM, "too many labels");
    u->size = calloc((size_t)u->n_units + 1, sizeof *u->size);
    u->count = calloc(cells + 1, sizeof *u->count);
    u->order = malloc(sizeof *u->order * (size_t)(u->n_units + 1));
    if (!u->size || !u->count || !u->order) return sc_fail(err, SC_ENOMEM, "out of memory");
    for (int64_t i = 0; i < N; i++) {
        u->size[u->unit_of[i]]++;
        for (int k = 0; k < K; k++) u->count[u->unit_of[i] * K + k] += labels[i * K + k] != 0;
    }
    /* Fisher-Yates with the seeded generator */
    sc_rng rng;
    sc_rng_seed(&rng, seed);
    for (int64_t v = 0; v < u->n_units; v++) u->order[v] = v;
    for (int64_t v = u->n_units - 1; v > 0; v--) {
        uint64_t high = sc_rng_u32(&rng);   /* two statements: SEQUENCED DRAWS */
        uint64_t draw = high << 32 | sc_rng_u32(&rng);
        int64_t j = (int64_t)(draw % (uint64_t)(v + 1));
        int64_t t = u->order[v];
        u->order[v] = u->order[j];
        u->order[j] = t;
    }
    return SC_OK;
}

/* The fold that wants most of label k (k < 0: most images). */
static int strat_pick(const double *want, const double *want_size, int n_folds, int K, int k)
{
    int best = 0;
    for (int f = 1; f < n_folds; f++) {
        double a = k >= 0 ? want[f * K + k] : want_size[f], b = k >= 0 ? want[best * K + k] : want_size[best];
        if (a > b || (a == b && k >= 0 && want_size[f] > want_size[best])) best = f;
    }
    return best;
}

/* The change of J = Σ_f Σ_k want[f][k]² + Σ_f want_size[f]² when unit a
 * leaves fold f for g and unit b (b < 0: none) leaves g for f. */
static double strat_delta(const strat_units *u, const double *want, const double *want_size, int K, int f, int g,
                          int64_t a, int64_t b)
{
    double ds = (double)((b >= 0 ? u->size[b] : 0) - u->size[a]);
    double delta = 2 * ds * (want_size[g] - want_size[f]) + 2 * ds * ds;
    for (int c = 0; c < K; c++) {
        double d = (double)((b >= 0 ? u->count[b * K + c] : 0) - u->count[a * K + c]);
        delta += 2 * d * (want[g * K + c] - want[f * K + c]) + 2 * d * d;
    }
    return delta;
}

/* Multi-label units can leave a label more than one item off its share in
 * some fold. Repair: for such a label k, a fold f over and a fold g short
 * of it (one of them by more than one), make the move of a unit holding k
 * from f to g, or its swap with a unit of g holding less of k, that lowers
 * J most; sweep until no change helps (J falls every time, so this ends). */
static void strat_repair(const strat_units *u, int *fold_of, double *want, double *want_size, int n_folds, int K)
{
    enum { MAX_SWEEPS = 64, MAX_PARTNERS = 4096 };
    for (int sweep = 0, improved = 1; improved && sweep < MAX_SWEEPS; sweep++) {
        improved = 0;
        for (int k = 0; k < K; k++)
            for (int f = 0; f < n_folds; f++)
                for (int g = 0; g < n_folds; g++) {
                    double over = -want[f * K + k], short_ = want[g * K + k];
                    if (!(over > 1 && short_ > 0) && !(short_ > 1 && over > 0)) continue;
                    double best = -1e-9;
                    int64_t best_a = -1, best_b = -1;
                    for (int64_t a = 0; a < u->n_units; a++) {
                        if (fold_of[a] != f || u->count[a * K + k] == 0) continue;
                        double d = strat_delta(u, want, want_size, K, f, g, a, -1);
                        if (d < best) best = d, best_a = a, best_b = -1;
                        for (int64_t r = 0, seen = 0; r < u->n_units && seen < MAX_PARTNERS; r++) {
                            int64_t b = u->order[r];
                            if (fold_of[b] != g || u->count[b * K + k] >= u->count[a * K + k]) continue;
                            seen++;
                            d = strat_delta(u, want, want_size, K, f, g, a, b);
                            if (d < best) best = d, best_a = a, best_b = b;
                        }
                    }
                    if (best_a < 0) continue;
                    double ds = (double)((best_b >= 0 ? u->size[best_b] : 0) - u->size[best_a]);
                    want_size[f] -= ds, want_size[g] += ds;
                    for (int c = 0; c < K; c++) {
                        double d = (double)((best_b >= 0 ? u->count[best_b * K + c] : 0) - u->count[best_a * K + c]);
                        want[f * K + c] -= d, want[g * K + c] += d;
                    }
                    fold_of[best_a] = g;
                    if (best_b >= 0) fold_of[best_b] = f;
                    improved = 1;
                }
    }
}

/* @book begin stratify */
sc_status sc_stratify(int *fold, const uint8_t *labels, int64_t N, int K, const int64_t *group,
                      const double *fraction, int n_folds, uint64_t seed, sc_err *err)
{
    double sum = 0;
    for (int f = 0; f < n_folds; f++) sum += fraction[f] >= 0 ? fraction[f] : (double)NAN;
    if (n_folds < 1 || n_folds > 64 || !(fabs(sum - 1) < 1e-9) || K < 0)
        return sc_fail(err, SC_EARG, "stratify: %d folds with fractions summing to %g (need 1..64 folds, "
                       "fractions >= 0 summing to 1)", n_folds, sum);
    strat_units u;
    sc_status st = strat_units_build(&u, labels, N, K, group, seed, err);
    double *want = st ? NULL : malloc(sizeof(double) * (size_t)(n_folds * K + 1)), want_size[64];
    int64_t *left = st ? NULL : calloc((size_t)K + 1, sizeof *left); /* images with k in units not dealt */
    int *fold_of = st ? NULL : malloc(sizeof(int) * (size_t)(u.n_units + 1));
    if (!st && (!want || !left || !fold_of)) st = sc_fail(err, SC_ENOMEM, "out of memory");
    for (int64_t v = 0; !st && v < u.n_units; v++) {
        fold_of[v] = -1;
        for (int k = 0; k < K; k++) left[k] += u.count[v * K + k];
    }
    for (int f = 0; !st && f < n_folds; f++) {
        want_size[f] = fraction[f] * (double)N;
        for (int k = 0; k < K; k++) want[f * K + k] = fraction[f] * (double)left[k];
    }
    for (;;) {
        int k = -1; /* the rarest label still to deal */
        for (int c = 0; !st && c < K; c++)
            if (left[c] > 0 && (k < 0 || left[c] < left[k])) k = c;
        for (int64_t r = 0; !st && r < u.n_units; r++) {
            int64_t v = u.order[r];
            if (fold_of[v] >= 0 || (k >= 0 ? u.count[v * K + k] == 0 : u.size[v] == 0)) continue;
            int f = strat_pick(want, want_size, n_folds, K, k);
            fold_of[v] = f;
            want_size[f] -= (double)u.size[v];
            for (int c = 0; c < K; c++) {
                want[f * K + c] -= u.count[v * K + c];
                left[c] -= u.count[v * K + c];
            }
        }
        if (st || k < 0) break; /* the unlabelled units were the last round */
    }
    if (!st) strat_repair(&u, fold_of, want, want_size, n_folds, K);
    for (int64_t i = 0; !st && i < N; i++) fold[i] = fold_of[u.unit_of[i]];
    free(want), free(left), free(fold_of);
    strat_free(&u);
    return st;
}
/* @book end stratify */

sc_status sc_stratified_subset(int64_t *chosen, int64_t *n_chosen, const int64_t *items, int64_t n,
                               const uint8_t *labels, int K, const int64_t *group, double fraction, uint64_t seed,
                               sc_err *err)
{
    *n_chosen = 0;
    if (!(fraction > 0 && fraction <= 1)) return sc_fail(err, SC_EARG, "subset fraction %g is not in (0, 1]", fraction);
    if (fraction == 1) {
        memcpy(chosen, items, sizeof *items * (size_t)n);
        *n_chosen = n;
        return SC_OK;
    }
    /* the listed items as a dataset of their own; groups renumbered */
    uint8_t *sub = malloc((size_t)(n * K) + 1);
    int64_t *sub_group = malloc(sizeof(int64_t) * (size_t)(n + 1)), *renum = NULL;
    int *fold = malloc(sizeof(int) * (size_t)(n + 1));
    sc_status st = sub && sub_group && fold ? SC_OK : sc_fail(err, SC_ENOMEM, "out of memory");
    int64_t max_group = 0;
    for (int64_t j = 0; !st && j < n; j++) {
        memcpy(sub + j * K, labels + items[j] * K, (size_t)K);
        sub_group[j] = group ? group[items[j]] : j;
        if (sub_group[j] + 1 > max_group) max_group = sub_group[j] + 1;
    }
    if (!st && group && !(renum = malloc(sizeof(int64_t) * (size_t)(max_group + 1))))
        st = sc_fail(err, SC_ENOMEM, "out of memory");
    if (!st && group) {
        int64_t next = 0;
        for (int64_t g = 0; g < max_group; g++) renum[g] = -1;
        for (int64_t j = 0; j < n; j++) {
            if (renum[sub_group[j]] < 0) renum[sub_group[j]] = next++;
            sub_group[j] = renum[sub_group[j]];
        }
    }
    double fractions[2] = {fraction, 1 - fraction};
    if (!st) st = sc_stratify(fold, sub, n, K, sub_group, fractions, 2, seed, err);
    for (int64_t j = 0; !st && j < n; j++)
        if (fold[j] == 0) chosen[(*n_chosen)++] = items[j];
    free(sub), free(sub_group), free(renum), free(fold);
    return st;
}

/* ---- 6g. Progress display ------------------------------------------------------ */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "1:02:03" or "2:03" */
static const char *format_duration(char *buf, size_t n, double seconds)
{
    if (!(seconds >= 0) || seconds > 1e8) return snprintf(buf, n, "?"), buf;
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
    return buf;
}

void sc_progress_begin(sc_progress *p, FILE *out, const char *what, int64_t total)
{
    p->out = out;
    p->what = what;
    p->total = total;
    p->done = 0;
    p->start = p->last = now_seconds();
    p->tty = out && isatty(fileno(out));
    p->last_tenth = 0;
}

static void progress_draw(sc_progress *p, double now)
{
    double elapsed = now - p->start, rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    char eta[32];
    format_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - p->done) / rate : -1);
    if (p->tty) {
        enum { WIDTH = 30 };
        char bar[WIDTH + 1];
        int fill = p->total ? (int)(WIDTH * p->done / p->total) : WIDTH;
        for (int k = 0; k < WIDTH; k++) bar[k] = k < fill ? '=' : k == fill ? '>' : ' ';
        bar[WIDTH] = 0;
        fprintf(p->out, "\r%s [%s] %lld/%lld  %.2f/s  ETA %s   ", p->what, bar, (long long)p->done,
                (long long)p->total, rate, eta);
    } else {
        fprintf(p->out, "%s: %lld/%lld (%d%%), %.2f/s, ETA %s\n", p->what, (long long)p->done, (long long)p->total,
                p->total ? (int)(100 * p->done / p->total) : 100, rate, eta);
    }
    fflush(p->out);
    p->last = now;
}

void sc_progress_update(sc_progress *p, int64_t done)
{
    if (!p->out) return;
    p->done = done;
    double now = now_seconds();
    int tenth = p->total ? (int)(10 * done / p->total) : 10;
    /* a terminal: redraw at most 10 times a second; a log: each 10 % or 30 s */
    if (p->tty ? now - p->last >= 0.1 : tenth > p->last_tenth || now - p->last >= 30) {
        p->last_tenth = tenth;
        progress_draw(p, now);
    }
}

void sc_progress_end(sc_progress *p)
{
    if (!p->out) return;
    double elapsed = now_seconds() - p->start;
    char took[32];
    if (p->tty) {
        progress_draw(p, now_seconds());
        fputc('\n', p->out);
    }
    fprintf(p->out, "%s: %lld done in %s (%.2f/s)\n", p->what, (long long)p->done,
            format_duration(took, sizeof took, elapsed), elapsed > 0 ? (double)p->done / elapsed : 0.0);
    fflush(p->out);
}

/* ---- 6h. Fingerprints and index.json --------------------------------------------
 * A fingerprint is a list of "key": "value" strings: what the cache was
 * computed from. Two caches (or a cache and the files at hand) agree when
 * their lists are equal; the first key that differs says why not. */

typedef struct {
    const char *key, *value;
} kv_pair;

typedef struct {
    kv_pair *item;        /* (n) in the order added */
    int n, cap;
    sc_arena *arena;      /* holds the strings */
    int failed;           /* an allocation failed: the list is incomplete */
} kv_list;

static void kv_init(kv_list *l, sc_arena *a)
{
    memset(l, 0, sizeof *l);
    l->arena = a;
}

static char *arena_strdup(sc_arena *a, const char *s)
{
    size_t n = strlen(s);
    char *out = sc_arena_alloc(a, n + 1);
    if (out) memcpy(out, s, n + 1);
    return out;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void kv_add(kv_list *l, const char *key, const char *fmt, ...)
{
    char value[DS_PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 32;
        if (!ds_grow((void **)&l->item, cap, sizeof *l->item)) {
            l->failed = 1;
            return;
        }
        l->cap = cap;
    }
    kv_pair p = {arena_strdup(l->arena, key), arena_strdup(l->arena, value)};
    if (!p.key || !p.value) l->failed = 1;
    else l->item[l->n++] = p;
}

static const char *kv_get(const kv_list *l, const char *key)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->item[i].key, key)) return l->item[i].value;
    return NULL;
}

/* Hash dir/name into "<prefix><name>" when the file exists. */
static sc_status kv_hash_file(kv_list *fp, const char *prefix, const char *dir, const char *name, sc_err *err)
{
    char path[DS_PATH_MAX], key[DS_PATH_MAX], hex[65];
    if (!path_join(path, sizeof path, dir, name)) return sc_fail(err, SC_EARG, "%s: path too long", dir);
    sc_status st = sc_sha256_file(path, hex, NULL, err);
    if (st) return st;
    snprintf(key, sizeof key, "%s%s", prefix, name);
    kv_add(fp, key, "%s", hex);
    return SC_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The weight files sc_weights_open reads from a directory, in its order of
 * preference: one file, or an index.json and the shards it lists. */
static sc_status kv_hash_weights(kv_list *fp, const char *dir, sc_err *err)
{
    static const char *const layouts[] = {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                                          "pytorch_model.bin.index.json"};
    for (int k = 0; k < 4; k++) {
        char path[DS_PATH_MAX];
        if (!path_join(path, sizeof path, dir, layouts[k])) return sc_fail(err, SC_EARG, "%s: path too long", dir);
        if (!path_exists(path)) continue;
        sc_status st = kv_hash_file(fp, "model.file.", dir, layouts[k], err);
        if (st || !(k & 1)) return st;
        sc_json_doc doc;
        if ((st = sc_json_load(&doc, path, (size_t)64 << 20, err))) return st;
        const sc_json *map = sc_json_get(doc.root, "weight_map");
        const char **shard = map && map->type == SC_JSON_OBJECT ? malloc(sizeof *shard * (map->len + 1)) : NULL;
        size_t n = 0;
        if (!shard) st = sc_fail(err, SC_EFORMAT, "%s: no \"weight_map\" object", path);
        for (size_t i = 0; !st && i < map->len; i++) {
            const sc_json *v = map->items[i];
            if (v->type != SC_JSON_STRING || !v->str[0] || v->str[0] == '.' || strchr(v->str, '/'))
                st = sc_fail(err, SC_EFORMAT, "%s: shard of '%s' is not a plain file name", path, map->keys[i]);
            else shard[n++] = v->str;
        }
        if (!st) qsort(shard, n, sizeof *shard, cmp_str);
        for (size_t i = 0; !st && i < n; i++)
            if (i == 0 || strcmp(shard[i], shard[i - 1])) st = kv_hash_file(fp, "model.file.", dir, shard[i], err);
        free(shard);
        sc_json_free(&doc);
        return st;
    }
    return sc_fail(err, SC_EIO, "%s: no model.safetensors, model.safetensors.index.json, pytorch_model.bin or "
                   "pytorch_model.bin.index.json in this directory", dir);
}

static void kv_pipeline(kv_list *fp, const sc_pipeline *p)
{
    static const char *const resample[] = {"nearest", "bilinear", "bicubic"};
    static const char *const crop_rule[] = {"torchvision", "hf", "hf-legacy"};
    static const char *const rescale[] = {"div255", "mul-f32", "mul-f64"};
    kv_add(fp, "pipeline.name", "%s", p->name);
    kv_add(fp, "pipeline.size", "%d", p->size);
    kv_add(fp, "pipeline.resize_square", "%d", p->resize_square);
    kv_add(fp, "pipeline.resample", "%s", resample[p->resample]);
    kv_add(fp, "pipeline.crop", "%d", p->crop);
    kv_add(fp, "pipeline.crop_rule", "%s", crop_rule[p->crop_rule]);
    kv_add(fp, "pipeline.pad_square", "%d", p->pad_square);
    kv_add(fp, "pipeline.channels", "%d", p->channels);
    kv_add(fp, "pipeline.rescale", "%s", rescale[p->rescale]);
    kv_add(fp, "pipeline.rescale_factor", "%.17g", p->rescale_factor);
    kv_add(fp, "pipeline.mean", "%.9g %.9g %.9g", (double)p->mean[0], (double)p->mean[1], (double)p->mean[2]);
    kv_add(fp, "pipeline.std", "%.9g %.9g %.9g", (double)p->std[0], (double)p->std[1], (double)p->std[2]);
}

/* The model half: every file the model, its tokenizer and its pipeline
 * are read from, and the pipeline itself (into *p as well). */
static sc_status model_fingerprint(kv_list *fp, const char *dir, const char *pipeline, sc_pipeline *p, sc_err *err)
{
    static const char *const others[] = {"config.json", "preprocessor_config.json", "merges.txt", "vocab.json",
                                         "bpe_simple_vocab_16e6.txt.gz", "vocab.txt", "tokenizer_config.json"};
    if (!is_dir(dir))
        return sc_fail(err, SC_EARG, "%s: not a directory; embedding needs a model directory (weights, config.json "
                       "and tokenizer files)", dir);
    sc_status st = kv_hash_weights(fp, dir, err);
    for (size_t k = 0; !st && k < sizeof others / sizeof others[0]; k++) {
        char path[DS_PATH_MAX];
        if (path_join(path, sizeof path, dir, others[k]) && path_exists(path))
            st = kv_hash_file(fp, "model.file.", dir, others[k], err);
    }
    if (!st) st = sc_pipeline_for_model(dir, pipeline, p, err);
    if (!st) kv_pipeline(fp, p);
    return st;
}

/* The dataset half: kind, the reader's options, and the label files and
 * hierarchy by their hashes (image files are identified by name there;
 * images.csv records each one's hash as it is embedded). */
static sc_status dataset_fingerprint(kv_list *fp, const sc_dataset_options *o, sc_err *err)
{
    ds_resolved r;
    sc_status st = ds_resolve(o, &r, err);
    if (st) return st;
    kv_add(fp, "dataset.kind", "%s", sc_dataset_kind_name(o->kind));
    if (o->kind == SC_DATA_DERM7P) {
        kv_add(fp, "dataset.image", "%s", o->clinic ? "clinic" : "derm");
        if (o->clinic) kv_add(fp, "dataset.keep_replaced_clinic", "%d", o->keep_replaced_clinic);
    } else {
        if (o->kind == SC_DATA_PADCHEST_GR) kv_add(fp, "dataset.language", "%s", o->spanish ? "es" : "en");
        kv_add(fp, "dataset.keep_unlabelled", "%d", o->keep_unlabelled);
    }
    kv_add(fp, "dataset.skip_bad", "%d", o->skip_bad);
    kv_add(fp, "dataset.min_cases", "%d", r.min_cases);
    kv_add(fp, "dataset.split", "%s", o->split == SC_SPLITS_OFFICIAL ? "official" : "stratified");
    if (o->split == SC_SPLITS_STRATIFIED) {
        kv_add(fp, "dataset.test_fraction", "%.17g", o->test_fraction);
        kv_add(fp, "dataset.split_seed", "%llu", (unsigned long long)o->split_seed);
    }
    const char *files[4];
    int n = ds_label_files(o, &r, files);
    for (int k = 0; !st && k < n; k++) st = kv_hash_file(fp, "dataset.file.", r.root, files[k], err);
    if (!st && r.hier[0]) {
        char hex[65];
        st = sc_sha256_file(r.hier, hex, NULL, err);
        if (!st) kv_add(fp, "dataset.hierarchy", "%s", hex);
    } else if (!st) {
        kv_add(fp, "dataset.hierarchy", "derived from the manifest");
    }
    return st;
}

/* What index.json holds. */
typedef struct {
    kv_list fingerprint, info;
    int64_t n_images, n_texts, embed_dim, token_columns, n_labels;
    int shard, n_shards, batch;
    int64_t first_image, end_image;  /* this directory's images: [first, end) of n_images */
    int texts_embedded;              /* text_emb.npy is here (shard 0) */
    const char **dropped;            /* (n_dropped) "task|class|concept" */
    int n_dropped;
    const char **skipped;            /* (n_skipped) */
    int n_skipped;
} cache_index;

static void cache_index_free(cache_index *x)
{
    free(x->fingerprint.item), free(x->info.item), free(x->dropped), free(x->skipped);
    memset(x, 0, sizeof *x);
}

static void json_kv_object(sc_json_writer *w, const char *name, const kv_list *l)
{
    sc_json_put_key(w, name);
    sc_json_begin_object(w);
    for (int i = 0; i < l->n; i++) {
        sc_json_put_key(w, l->item[i].key);
        sc_json_put_string(w, l->item[i].value);
    }
    sc_json_end_object(w);
}

static void json_string_list(sc_json_writer *w, const char *name, const char *const *items, int n)
{
    sc_json_put_key(w, name);
    sc_json_begin_array(w);
    for (int i = 0; i < n; i++) sc_json_put_string(w, items[i]);
    sc_json_end_array(w);
}

static void json_int_member(sc_json_writer *w, const char *key, int64_t v)
{
    sc_json_put_key(w, key);
    sc_json_put_int(w, v);
}

static sc_status cache_index_write(const cache_index *x, const char *path, sc_err *err)
{
    if (x->fingerprint.failed || x->info.failed) return sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    sc_json_writer w;
    sc_json_writer_init(&w, 2);
    sc_json_begin_object(&w);
    sc_json_put_key(&w, "format");
    sc_json_put_string(&w, "scale-embedding-cache");
    json_int_member(&w, "format_version", 1);
    sc_json_put_key(&w, "counts");
    sc_json_begin_object(&w);
    json_int_member(&w, "images", x->n_images);
    json_int_member(&w, "texts", x->n_texts);
    json_int_member(&w, "embed_dim", x->embed_dim);
    json_int_member(&w, "token_columns", x->token_columns);
    json_int_member(&w, "labels", x->n_labels);
    sc_json_end_object(&w);
    sc_json_put_key(&w, "shard");
    sc_json_begin_object(&w);
    json_int_member(&w, "index", x->shard);
    json_int_member(&w, "count", x->n_shards);
    json_int_member(&w, "batch", x->batch);
    json_int_member(&w, "first_image", x->first_image);
    json_int_member(&w, "end_image", x->end_image);
    sc_json_put_key(&w, "texts_embedded");
    sc_json_put_bool(&w, x->texts_embedded);
    sc_json_end_object(&w);
    json_kv_object(&w, "fingerprint", &x->fingerprint);
    json_kv_object(&w, "info", &x->info);
    json_string_list(&w, "dropped", x->dropped, x->n_dropped);
    json_string_list(&w, "skipped", x->skipped, x->n_skipped);
    sc_json_end_object(&w);
    sc_status st = sc_json_writer_save(&w, path, err);
    sc_json_writer_free(&w);
    return st;
}

/* A whole number member of obj in [lo, hi], or fail. */
static sc_status json_int(const sc_json *obj, const char *key, int64_t lo, int64_t hi, int64_t *out, const char *what,
                          sc_err *err)
{
    const sc_json *v = obj ? sc_json_get(obj, key) : NULL;
    if (!v || v->type != SC_JSON_NUMBER || v->number != floor(v->number) || v->number < (double)lo ||
        v->number > (double)hi)
        return sc_fail(err, SC_EFORMAT, "%s: \"%s\" is missing or not a whole number in [%lld, %lld]", what, key,
                       (long long)lo, (long long)hi);
    *out = (int64_t)v->number;
    return SC_OK;
}

static sc_status json_kv_read(const sc_json *root, const char *name, kv_list *l, const char *what, sc_err *err)
{
    const sc_json *obj = sc_json_get(root, name);
    if (!obj || obj->type != SC_JSON_OBJECT) return sc_fail(err, SC_EFORMAT, "%s: no \"%s\" object", what, name);
    for (size_t i = 0; i < obj->len; i++) {
        if (obj->items[i]->type != SC_JSON_STRING)
            return sc_fail(err, SC_EFORMAT, "%s: %s \"%s\" is not a string", what, name, obj->keys[i]);
        kv_add(l, obj->keys[i], "%s", obj->items[i]->str);
    }
    return l->failed ? sc_fail(err, SC_ENOMEM, "%s: out of memory", what) : SC_OK;
}

static sc_status json_list_read(const sc_json *root, const char *name, const char ***items, int *n, sc_arena *a,
                                const char *what, sc_err *err)
{
    const sc_json *arr = sc_json_get(root, name);
    *n = 0;
    if (!arr || arr->type != SC_JSON_ARRAY || arr->len > (1u << 24))
        return sc_fail(err, SC_EFORMAT, "%s: no \"%s\" list", what, name);
    *items = malloc(sizeof **items * (arr->len + 1));
    if (!*items) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < arr->len; i++) {
        if (arr->items[i]->type != SC_JSON_STRING) return sc_fail(err, SC_EFORMAT, "%s: \"%s\" holds a non-string", what, name);
        if (!((*items)[(*n)++] = arena_strdup(a, arr->items[i]->str))) return sc_fail(err, SC_ENOMEM, "out of memory");
    }
    return SC_OK;
}

/* Read index.json (parsed into doc, kept by the caller) into x; strings
 * live in arena a. */
static sc_status cache_index_read(cache_index *x, sc_json_doc *doc, const char *dir, sc_arena *a, sc_err *err)
{
    memset(x, 0, sizeof *x);
    kv_init(&x->fingerprint, a);
    kv_init(&x->info, a);
    char what[DS_PATH_MAX];
    if (!path_join(what, sizeof what, dir, "index.json")) return sc_fail(err, SC_EARG, "%s: path too long", dir);
    sc_status st = sc_json_load(doc, what, (size_t)256 << 20, err);
    if (st) return st;
    const sc_json *root = doc->root;
    if (root->type != SC_JSON_OBJECT || strcmp(sc_json_get_string(root, "format", ""), "scale-embedding-cache"))
        return sc_fail(err, SC_EFORMAT, "%s: not the index of an embedding cache", what);
    if (sc_json_get_number(root, "format_version", 0) != 1)
        return sc_fail(err, SC_EUNSUPPORTED, "%s: cache format version %g; this scale reads version 1", what,
                       sc_json_get_number(root, "format_version", 0));
    const sc_json *counts = sc_json_get(root, "counts"), *shard = sc_json_get(root, "shard");
    const int64_t big = (int64_t)1 << 40;
    int64_t v[5];
    static const char *const count_keys[5] = {"images", "texts", "embed_dim", "token_columns", "labels"};
    for (int k = 0; !st && k < 5; k++) st = json_int(counts, count_keys[k], 0, big, &v[k], what, err);
    if (st) return st;
    x->n_images = v[0], x->n_texts = v[1], x->embed_dim = v[2], x->token_columns = v[3], x->n_labels = v[4];
    int64_t index, count, batch;
    if ((st = json_int(shard, "count", 1, 1 << 20, &count, what, err)) ||
        (st = json_int(shard, "index", 0, count - 1, &index, what, err)) ||
        (st = json_int(shard, "batch", 1, 1 << 20, &batch, what, err)) ||
        (st = json_int(shard, "first_image", 0, x->n_images, &x->first_image, what, err)) ||
        (st = json_int(shard, "end_image", x->first_image, x->n_images, &x->end_image, what, err)))
        return st;
    x->shard = (int)index, x->n_shards = (int)count, x->batch = (int)batch;
    x->texts_embedded = sc_json_get_bool(shard, "texts_embedded", 0);
    if ((st = json_kv_read(root, "fingerprint", &x->fingerprint, what, err)) ||
        (st = json_kv_read(root, "info", &x->info, what, err)) ||
        (st = json_list_read(root, "dropped", &x->dropped, &x->n_dropped, a, what, err)))
        return st;
    return json_list_read(root, "skipped", &x->skipped, &x->n_skipped, a, what, err);
}

/* Compare fingerprints; the entries of `now` whose key starts with one of
 * the prefixes (and those of `then` likewise) must agree. */
static sc_status fingerprint_compare(const kv_list *then, const kv_list *now, const char *const *prefixes, int n_prefixes,
                                     const char *what, sc_err *err)
{
    for (int pass = 0; pass < 2; pass++) {
        const kv_list *a = pass ? then : now, *b = pass ? now : then;
        for (int i = 0; i < a->n; i++) {
            int checked = 0;
            for (int k = 0; k < n_prefixes && !checked; k++)
                checked = !strncmp(a->item[i].key, prefixes[k], strlen(prefixes[k]));
            if (!checked) continue;
            const char *other = kv_get(b, a->item[i].key);
            const char *was = pass ? a->item[i].value : other, *is = pass ? other : a->item[i].value;
            if (other && !strcmp(other, a->item[i].value)) continue;
            return sc_fail(err, SC_EFORMAT, "%s: stale cache: %s was '%.40s%s' when embedded but is '%.40s%s' now; "
                           "embed again", what, a->item[i].key, was ? was : "(none)",
                           was && strlen(was) > 40 ? "..." : "", is ? is : "(none)", is && strlen(is) > 40 ? "..." : "");
        }
    }
    return SC_OK;
}

/* ---- 6i. Embedding ------------------------------------------------------------- */

const char *sc_text_kind_name(sc_text_kind k)
{
    static const char *const names[SC_N_TEXT_KINDS] = {"prompt", "ensemble", "class",     "name",
                                                       "class-name", "none",  "reference", "sentence"};
    return (unsigned)k < SC_N_TEXT_KINDS ? names[k] : "?";
}

static int text_kind_of(const char *name)
{
    for (int k = 0; k < SC_N_TEXT_KINDS; k++)
        if (!strcmp(name, sc_text_kind_name((sc_text_kind)k))) return k;
    return -1;
}

sc_embed_config sc_embed_defaults(void)
{
    sc_embed_config c = {NULL, NULL, 16, 0, 1, NULL};
    return c;
}

/* Every text a cache embeds, in its order, with its labels. */
typedef struct {
    int64_t M, cap;
    int K;
    uint8_t *kind;
    int *task, *index, *variant;
    int64_t *image;
    const char **text;
    uint8_t *labels;              /* (M, K) */
    sc_arena *arena;              /* generated strings (names) */
} text_table;

static void text_table_free(text_table *tt)
{
    free(tt->kind), free(tt->task), free(tt->index), free(tt->variant), free(tt->image), free(tt->text);
    free(tt->labels);
}

/* Append a text; its label row starts at 0. Returns the row, or -1. */
static int64_t tt_add(text_table *tt, sc_text_kind kind, int task, int index, int variant, int64_t image,
                      const char *text)
{
    if (tt->M == tt->cap) {
        int64_t cap = tt->cap ? 2 * tt->cap : 256;
        if (!ds_grow((void **)&tt->kind, cap, 1) || !ds_grow((void **)&tt->task, cap, sizeof(int)) ||
            !ds_grow((void **)&tt->index, cap, sizeof(int)) || !ds_grow((void **)&tt->variant, cap, sizeof(int)) ||
            !ds_grow((void **)&tt->image, cap, sizeof(int64_t)) || !ds_grow((void **)&tt->text, cap, sizeof(char *)) ||
            !ds_grow((void **)&tt->labels, cap * tt->K, 1))
            return -1;
        tt->cap = cap;
    }
    int64_t j = tt->M++;
    tt->kind[j] = (uint8_t)kind, tt->task[j] = task, tt->index[j] = index, tt->variant[j] = variant;
    tt->image[j] = image, tt->text[j] = text;
    memset(tt->labels + j * tt->K, 0, (size_t)tt->K);
    return j;
}

/* Set the label columns of combinations of task t with class c (c < 0:
 * combination h only) on row j. */
static void tt_label(text_table *tt, const sc_dataset *ds, int64_t j, int t, int c, int h)
{
    const sc_hier_task *task = &ds->hier.tasks[t];
    for (int k = 0; k < task->n_combos; k++)
        if (c < 0 ? k == h : task->combo_class[k] == c) tt->labels[j * tt->K + ds->label_offset[t] + k] = 1;
}

/* @book begin cache-texts */
/* The texts of a cache: per task the prompts, ensembles, class prompts and
 * names; then "No finding." and the reference prompts; then the dataset's
 * sentences. */
static sc_status build_texts(text_table *tt, const sc_dataset *ds, sc_err *err)
{
    const sc_hier *hier = &ds->hier;
    int64_t j = 0;
    for (int t = 0; t < hier->n_tasks && j >= 0; t++) {
        const sc_hier_task *task = &hier->tasks[t];
        int H = task->n_combos, C = task->n_classes;
        for (int h = 0; h < H && j >= 0; h++)
            if ((j = tt_add(tt, SC_TEXT_PROMPT, t, h, 0, -1, task->combo_prompt[h])) >= 0) tt_label(tt, ds, j, t, -1, h);
        for (int e = 0; e < task->n_ensemble; e++)
            for (int h = 0; h < H && j >= 0; h++)
                if ((j = tt_add(tt, SC_TEXT_ENSEMBLE, t, h, e, -1, task->ensemble_prompt[e * H + h])) >= 0)
                    tt_label(tt, ds, j, t, -1, h);
        for (int e = 0; e < task->n_class_templates; e++)
            for (int c = 0; c < C && j >= 0; c++)
                if ((j = tt_add(tt, SC_TEXT_CLASS, t, c, e, -1, task->class_prompt[e * C + c])) >= 0)
                    tt_label(tt, ds, j, t, c, -1);
        for (int h = 0; h < H && j >= 0; h++) {
            char name[SC_HIER_MAX_LINE * 4];
            const char *copy = arena_strdup(tt->arena, sc_hier_explain(task, h, name, sizeof name));
            if ((j = copy ? tt_add(tt, SC_TEXT_NAME, t, h, 0, -1, copy) : -1) >= 0) tt_label(tt, ds, j, t, -1, h);
        }
        for (int c = 0; c < C && j >= 0; c++)
            if ((j = tt_add(tt, SC_TEXT_CLASS_NAME, t, c, 0, -1, task->classes[c].phrase)) >= 0)
                tt_label(tt, ds, j, t, c, -1);
    }
    if (j >= 0) j = tt_add(tt, SC_TEXT_NONE, -1, -1, 0, -1, hier->none_prompt);
    for (int r = 0; r < hier->n_references && j >= 0; r++)
        j = tt_add(tt, SC_TEXT_REFERENCE, -1, r, 0, -1, hier->reference_prompts[r]);
    for (int64_t s = 0; s < ds->n_texts && j >= 0; s++)
        if ((j = tt_add(tt, SC_TEXT_SENTENCE, -1, -1, 0, ds->text_image[s], ds->text[s])) >= 0)
            memcpy(tt->labels + j * tt->K, ds->text_labels + s * tt->K, (size_t)tt->K);
    return j >= 0 ? SC_OK : sc_fail(err, SC_ENOMEM, "out of memory for the texts");
}
/* @book end cache-texts */

/* One run of sc_embed: the model, the tables, and what has been computed. */
typedef struct {
    const sc_embed_config *cfg;
    const sc_dataset *ds;
    sc_arena arena;               /* strings of the index and the texts */
    cache_index index;
    sc_pipeline pipe;
    sc_model *model;
    sc_tokenizer *tok;
    text_table texts;
    int64_t T, E;                 /* token columns, embedding width */
    int64_t *ids, *mask;          /* (M, T) */
    int *n_tokens;                /* (M) */
    float *image_emb;             /* (end - first, E) */
    float *text_emb;              /* (M, E) in shard 0 */
    int64_t *image_bytes;         /* (end - first) */
    char (*image_sha)[65];        /* (end - first) */
} embed_run;

static void embed_run_free(embed_run *r)
{
    cache_index_free(&r->index);
    if (r->model) sc_model_free(r->model);
    sc_tokenizer_free(r->tok);
    text_table_free(&r->texts);
    free(r->ids), free(r->mask), free(r->n_tokens), free(r->image_emb), free(r->text_emb);
    free(r->image_bytes), free(r->image_sha);
    sc_arena_free(&r->arena);
}

/* Tokenizer rows of T = min(77, the text tower's positions) ids, as the
 * models' own processors make them (CLIP's context is 77; MedCLIP sets
 * model_max_length 77). */
static sc_status embed_tokenize(embed_run *r, sc_err *err)
{
    const sc_model_config *mc = sc_model_get_config(r->model);
    int64_t positions = mc->kind == SC_MODEL_CLIP ? mc->text.context : mc->bert.max_positions;
    sc_tok_options opt = sc_tok_defaults();
    opt.max_length = positions < 77 ? (int)positions : 77;
    sc_status st = sc_tokenizer_load(&r->tok, r->cfg->model, &opt, err);
    if (st) return st;
    int64_t M = r->texts.M, truncated = 0;
    r->T = sc_tokenizer_max_length(r->tok);
    size_t cells;
    if (!sc_mul_ok((size_t)M, (size_t)r->T, &cells)) return sc_fail(err, SC_ENOMEM, "too many texts");
    r->ids = malloc(cells * sizeof *r->ids + 1);
    r->mask = malloc(cells * sizeof *r->mask + 1);
    r->n_tokens = malloc(sizeof *r->n_tokens * (size_t)(M + 1));
    if (!r->ids || !r->mask || !r->n_tokens) return sc_fail(err, SC_ENOMEM, "out of memory for %lld texts", (long long)M);
    for (int64_t j = 0; j < M; j++) {
        int cut = 0;
        const char *text = r->texts.text[j];
        st = sc_tokenizer_encode(r->tok, text, strlen(text), r->ids + j * r->T, r->mask + j * r->T, &r->n_tokens[j],
                                 &cut, err);
        if (st) return st;
        truncated += cut;
    }
    kv_list *info = &r->index.info;
    kv_add(info, "tokenizer.kind", "%s", sc_tokenizer_kind(r->tok) == SC_TOK_BPE ? "bpe" : "wordpiece");
    kv_add(info, "tokenizer.max_length", "%lld", (long long)r->T);
    kv_add(info, "tokenizer.vocab_size", "%lld", (long long)sc_tokenizer_vocab_size(r->tok));
    kv_add(info, "text.padding", "%s", mc->kind == SC_MODEL_CLIP ? "to max_length (the EOT token's row is pooled)"
                                                                 : "none: each text at its own length (MedCLIP pools "
                                                                   "over all positions)");
    kv_add(info, "texts.truncated", "%lld", (long long)truncated);
    return SC_OK;
}

/* Read, hash, decode and preprocess one image into out (C, S, S). */
static sc_status embed_load_image(const char *path, const sc_pipeline *p, float *out, int64_t *bytes, char sha[65],
                                  sc_err *err)
{
    uint8_t *data;
    size_t len;
    sc_status st = sc_read_file(path, SC_IMAGE_MAX_FILE_BYTES, &data, &len, err);
    if (st) return st;
    sc_sha256 h;
    uint8_t digest[32];
    sc_sha256_init(&h);
    sc_sha256_update(&h, data, len);
    sc_sha256_final(&h, digest);
    sc_sha256_hex(digest, sha);
    *bytes = (int64_t)len;
    sc_image img;
    st = sc_image_decode(data, len, path, &img, err);
    free(data);
    if (st) return st;
    st = sc_pipeline_run(p, &img, out, err);
    sc_image_free(&img);
    return st;
}

/* Images [first, end) in batches of cfg->batch. */
static sc_status embed_images(embed_run *r, sc_ctx *ctx, int64_t first, int64_t end, sc_err *err)
{
    int64_t B = r->cfg->batch, S = sc_pipeline_side(&r->pipe), Cin = r->pipe.channels, per = Cin * S * S;
    int64_t n = end - first;
    r->image_emb = malloc(sizeof(float) * (size_t)(n * r->E) + 1);
    r->image_bytes = malloc(sizeof(int64_t) * (size_t)n + 1);
    r->image_sha = malloc(sizeof *r->image_sha * (size_t)n + 1);
    float *px = malloc(sizeof(float) * (size_t)(B * per) + 1);
    sc_status st = r->image_emb && r->image_bytes && r->image_sha && px ? SC_OK
                                                                        : sc_fail(err, SC_ENOMEM, "out of memory");
    sc_progress prog;
    sc_progress_begin(&prog, r->cfg->progress, "images", n);
    for (int64_t b0 = first; !st && b0 < end; b0 += B) {
        int64_t nb = end - b0 < B ? end - b0 : B;
        for (int64_t k = 0; !st && k < nb; k++)
            st = embed_load_image(r->ds->image_path[b0 + k], &r->pipe, px + k * per, &r->image_bytes[b0 - first + k],
                                  r->image_sha[b0 - first + k], err);
        sc_arena_mark mark = sc_arena_get_mark(&ctx->act);
        sc_tensor *x = st ? NULL : sc_tensor_wrap(&ctx->act, px, 4, (int64_t[]){nb, Cin, S, S}, "pixel_values"), *y;
        if (!st) st = sc_model_encode_image(r->model, ctx, x, &y, NULL, err);
        if (!st) memcpy(r->image_emb + (b0 - first) * r->E, y->data, sizeof(float) * (size_t)(nb * r->E));
        sc_arena_rewind(&ctx->act, mark);
        sc_progress_update(&prog, b0 + nb - first);
    }
    if (!st) sc_progress_end(&prog);
    free(px);
    return st;
}

typedef struct {
    int n_tokens;
    int64_t row;
} text_order;

static int text_order_cmp(const void *a, const void *b)
{
    const text_order *x = a, *y = b;
    if (x->n_tokens != y->n_tokens) return x->n_tokens < y->n_tokens ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* All texts. CLIP runs rows of T ids in text order; MedCLIP's text pooling
 * averages over every position, padding included, so each text runs at
 * its own length: texts of equal length are batched together. */
static sc_status embed_texts(embed_run *r, sc_ctx *ctx, sc_err *err)
{
    int64_t M = r->texts.M, B = r->cfg->batch, T = r->T;
    int medclip = sc_model_get_config(r->model)->kind == SC_MODEL_MEDCLIP;
    r->text_emb = malloc(sizeof(float) * (size_t)(M * r->E) + 1);
    text_order *order = malloc(sizeof *order * (size_t)(M + 1));
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)(B * T) + 1);
    sc_status st = r->text_emb && order && ids ? SC_OK : sc_fail(err, SC_ENOMEM, "out of memory");
    for (int64_t j = 0; !st && j < M; j++) order[j] = (text_order){medclip ? r->n_tokens[j] : (int)T, j};
    if (!st && medclip) qsort(order, (size_t)M, sizeof *order, text_order_cmp);
    sc_progress prog;
    sc_progress_begin(&prog, r->cfg->progress, "texts", M);
    for (int64_t j0 = 0; !st && j0 < M;) {
        int64_t L = order[j0].n_tokens, nb = 0;
        while (j0 + nb < M && nb < B && order[j0 + nb].n_tokens == L) {
            memcpy(ids + nb * L, r->ids + order[j0 + nb].row * T, sizeof(int64_t) * (size_t)L);
            nb++;
        }
        sc_arena_mark mark = sc_arena_get_mark(&ctx->act);
        sc_tensor *y;
        st = sc_model_encode_text(r->model, ctx, ids, NULL, nb, L, &y, NULL, err);
        for (int64_t k = 0; !st && k < nb; k++)
            memcpy(r->text_emb + order[j0 + k].row * r->E, y->data + k * r->E, sizeof(float) * (size_t)r->E);
        sc_arena_rewind(&ctx->act, mark);
        j0 += nb;
        sc_progress_update(&prog, j0);
    }
    if (!st) sc_progress_end(&prog);
    free(order);
    free(ids);
    return st;
}

/* "task:class:concept;..." of a label row, for people reading images.csv. */
static void labels_text(sc_text *t, const sc_hier *hier, const int *offset, const uint8_t *row)
{
    int first = 1;
    for (int k = 0; k < hier->n_tasks; k++) {
        const sc_hier_task *task = &hier->tasks[k];
        for (int h = 0; h < task->n_combos; h++) {
            if (!row[offset[k] + h]) continue;
            sc_text_printf(t, "%s%s:%s:%s", first ? "" : ";", task->name, task->classes[task->combo_class[h]].name,
                           task->concepts[task->combo_concept[h]].name);
            first = 0;
        }
    }
}

static sc_status write_images_csv(const embed_run *r, const char *path, int64_t first, int64_t end, sc_err *err)
{
    const sc_dataset *ds = r->ds;
    sc_csv_writer w;
    sc_csv_writer_init(&w);
    static const char *const header[] = {"row", "id", "group", "split", "file", "bytes", "sha256", "labels"};
    for (int k = 0; k < 8; k++) sc_csv_put(&w, header[k]);
    sc_csv_end_row(&w);
    sc_text labels;
    sc_text_init(&labels);
    for (int64_t i = first; i < end; i++) {
        sc_csv_putf(&w, "%lld", (long long)i);
        sc_csv_put(&w, ds->image_id[i]);
        sc_csv_put(&w, ds->group_id[i]);
        sc_csv_put(&w, sc_split_name((sc_split)ds->split[i]));
        sc_csv_put(&w, ds->image_path[i]);
        sc_csv_putf(&w, "%lld", (long long)r->image_bytes[i - first]);
        sc_csv_put(&w, r->image_sha[i - first]);
        labels.len = 0; /* reuse the buffer; putting nothing ends it with a NUL */
        sc_text_put(&labels, "", 0);
        labels_text(&labels, &ds->hier, ds->label_offset, ds->labels + i * ds->n_labels);
        sc_csv_put(&w, labels.data ? labels.data : "");
        sc_csv_end_row(&w);
    }
    sc_status st = labels.failed ? sc_fail(err, SC_ENOMEM, "%s: out of memory", path) : sc_csv_writer_save(&w, path, err);
    sc_text_free(&labels);
    sc_csv_writer_free(&w);
    return st;
}

static sc_status write_texts_csv(const embed_run *r, const char *path, sc_err *err)
{
    const text_table *tt = &r->texts;
    sc_csv_writer w;
    sc_csv_writer_init(&w);
    static const char *const header[] = {"row", "kind", "task", "index", "variant", "image", "tokens", "text"};
    for (int k = 0; k < 8; k++) sc_csv_put(&w, header[k]);
    sc_csv_end_row(&w);
    for (int64_t j = 0; j < tt->M; j++) {
        sc_csv_putf(&w, "%lld", (long long)j);
        sc_csv_put(&w, sc_text_kind_name((sc_text_kind)tt->kind[j]));
        sc_csv_putf(&w, "%d", tt->task[j]);
        sc_csv_putf(&w, "%d", tt->index[j]);
        sc_csv_putf(&w, "%d", tt->variant[j]);
        sc_csv_putf(&w, "%lld", (long long)tt->image[j]);
        sc_csv_putf(&w, "%d", r->n_tokens[j]);
        sc_csv_put(&w, tt->text[j]);
        sc_csv_end_row(&w);
    }
    sc_status st = sc_csv_writer_save(&w, path, err);
    sc_csv_writer_free(&w);
    return st;
}

/* The files of a cache directory, in the order they are written. */
static const char *const cache_files[] = {"index.json",  "hierarchy.hier", "images.csv",    "image_emb.npy",
                                          "image_labels.npy", "texts.csv", "text_ids.npy", "text_mask.npy",
                                          "text_labels.npy", "text_emb.npy"};
#define N_CACHE_FILES ((int)(sizeof cache_files / sizeof cache_files[0]))

static sc_status npy_write_typed(const char *dir, const char *name, sc_dtype dt, const void *data, int64_t rows,
                                 int64_t cols, sc_err *err)
{
    char path[DS_PATH_MAX];
    if (!path_join(path, sizeof path, dir, name)) return sc_fail(err, SC_EARG, "%s: path too long", dir);
    sc_array a = {dt, 2, {rows, cols}, (void *)data, sc_dtype_size(dt) * (size_t)(rows * cols)};
    return sc_npy_write(path, &a, err);
}

/* A temporary directory next to out_dir ("out_dir.tmp.<pid>"). */
static sc_status cache_tmp_begin(const char *out_dir, char *tmp, size_t n, sc_err *err)
{
    size_t len = strlen(out_dir);
    while (len > 1 && out_dir[len - 1] == '/') len--;
    if (path_exists(out_dir)) return sc_fail(err, SC_EARG, "%s: already exists; remove it or choose another output", out_dir);
    if (snprintf(tmp, n, "%.*s.tmp.%ld", (int)len, out_dir, (long)getpid()) >= (int)n)
        return sc_fail(err, SC_EARG, "%s: path too long", out_dir);
    if (mkdir(tmp, 0777) != 0) return sc_fail(err, SC_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    return SC_OK;
}

/* Rename the finished temporary directory into place, or (st != SC_OK)
 * remove it: either way nothing partial is left at out_dir. */
static sc_status cache_tmp_end(const char *tmp, const char *out_dir, sc_status st, sc_err *err)
{
    if (!st && rename(tmp, out_dir) != 0)
        st = sc_fail(err, SC_EIO, "%s: cannot rename %s to it: %s", out_dir, tmp, strerror(errno));
    if (!st) return SC_OK;
    for (int k = 0; k < N_CACHE_FILES; k++) {
        char path[DS_PATH_MAX];
        if (path_join(path, sizeof path, tmp, cache_files[k])) unlink(path);
    }
    rmdir(tmp);
    return st;
}

static sc_status embed_write(embed_run *r, const char *dir, int64_t first, int64_t end, sc_err *err)
{
    const sc_dataset *ds = r->ds;
    const text_table *tt = &r->texts;
    char path[DS_PATH_MAX];
    int64_t n = end - first, K = ds->n_labels;
    sc_status st = path_join(path, sizeof path, dir, "index.json") ? cache_index_write(&r->index, path, err)
                                                                    : sc_fail(err, SC_EARG, "%s: path too long", dir);
    if (!st && path_join(path, sizeof path, dir, "hierarchy.hier"))
        st = sc_write_file_atomic(path, ds->hier_source, strlen(ds->hier_source), err);
    if (!st && path_join(path, sizeof path, dir, "images.csv")) st = write_images_csv(r, path, first, end, err);
    if (!st) st = npy_write_typed(dir, "image_emb.npy", SC_DT_F32, r->image_emb, n, r->E, err);
    if (!st) st = npy_write_typed(dir, "image_labels.npy", SC_DT_U8, ds->labels + first * K, n, K, err);
    if (!st && path_join(path, sizeof path, dir, "texts.csv")) st = write_texts_csv(r, path, err);
    if (!st) st = npy_write_typed(dir, "text_ids.npy", SC_DT_I64, r->ids, tt->M, r->T, err);
    if (!st) st = npy_write_typed(dir, "text_mask.npy", SC_DT_I64, r->mask, tt->M, r->T, err);
    if (!st) st = npy_write_typed(dir, "text_labels.npy", SC_DT_U8, tt->labels, tt->M, K, err);
    if (!st && r->text_emb) st = npy_write_typed(dir, "text_emb.npy", SC_DT_F32, r->text_emb, tt->M, r->E, err);
    return st;
}

/* The fingerprint and the facts kept beside it. */
static sc_status embed_index(embed_run *r, sc_err *err)
{
    const sc_embed_config *cfg = r->cfg;
    const sc_dataset *ds = r->ds;
    cache_index *x = &r->index;
    kv_init(&x->fingerprint, &r->arena);
    kv_init(&x->info, &r->arena);
    kv_add(&x->fingerprint, "scale.version", "%s", sc_version());
    sc_status st = model_fingerprint(&x->fingerprint, cfg->model, cfg->pipeline, &r->pipe, err);
    if (!st) st = dataset_fingerprint(&x->fingerprint, &ds->options, err);
    if (st) return st;
    kv_add(&x->info, "model.path", "%s", cfg->model);
    kv_add(&x->info, "dataset.path", "%s", ds->options.path);
    kv_add(&x->info, "dataset.hierarchy_path", "%s", ds->hier_path);
    kv_add(&x->info, "embeddings", "raw float32 as the towers give them, not L2-normalised");
    x->dropped = malloc(sizeof *x->dropped * (size_t)(ds->n_dropped + 1));
    x->skipped = malloc(sizeof *x->skipped * (size_t)(ds->n_skipped + 1));
    if (!x->dropped || !x->skipped) return sc_fail(err, SC_ENOMEM, "out of memory");
    for (int k = 0; k < ds->n_dropped; k++) x->dropped[k] = ds->dropped[k];
    for (int k = 0; k < ds->n_skipped; k++) x->skipped[k] = ds->skipped[k];
    x->n_dropped = ds->n_dropped;
    x->n_skipped = ds->n_skipped;
    return SC_OK;
}

/* @book begin embed */
sc_status sc_embed(const sc_embed_config *cfg, const sc_dataset *ds, const char *out_dir, sc_err *err)
{
    if (cfg->batch < 1 || cfg->batch > 4096 || cfg->n_shards < 1 || cfg->shard < 0 || cfg->shard >= cfg->n_shards)
        return sc_fail(err, SC_EARG, "batch %d, shard %d of %d: need batch in [1, 4096] and 0 <= shard < shards",
                       cfg->batch, cfg->shard, cfg->n_shards);
    if (path_exists(out_dir)) return sc_fail(err, SC_EARG, "%s: already exists; remove it or choose another output", out_dir);
    embed_run r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg, r.ds = ds;
    sc_arena_init(&r.arena, "embed", (size_t)1 << 20, 0);
    r.texts.K = ds->n_labels, r.texts.arena = &r.arena;
    sc_status st = embed_index(&r, err);
    if (!st) st = sc_model_load(&r.model, cfg->model, NULL, err);
    if (!st) st = build_texts(&r.texts, ds, err);
    if (!st) st = embed_tokenize(&r, err);
    /* this shard's batches: [shard·nb/n, (shard+1)·nb/n) of nb */
    int64_t B = cfg->batch, nb = (ds->n_images + B - 1) / B;
    int64_t first = B * (cfg->shard * nb / cfg->n_shards);
    int64_t end = B * ((cfg->shard + 1) * nb / cfg->n_shards);
    end = end < ds->n_images ? end : ds->n_images;
    if (!st) {
        const sc_model_config *mc = sc_model_get_config(r.model);
        r.E = mc->embed_dim;
        kv_add(&r.index.info, "model.kind", "%s", mc->kind == SC_MODEL_CLIP ? "clip" : "medclip");
        kv_add(&r.index.info, "model.logit_scale", "%.9g", (double)sc_model_logit_scale(r.model));
        r.index.n_images = ds->n_images, r.index.n_texts = r.texts.M, r.index.embed_dim = r.E;
        r.index.token_columns = r.T, r.index.n_labels = ds->n_labels;
        r.index.shard = cfg->shard, r.index.n_shards = cfg->n_shards, r.index.batch = cfg->batch;
        r.index.first_image = first, r.index.end_image = end, r.index.texts_embedded = cfg->shard == 0;
        sc_ctx ctx;
        sc_ctx_init(&ctx);
        sc_ctx_set_grad(&ctx, 0);
        st = embed_images(&r, &ctx, first, end, err);
        if (!st && cfg->shard == 0) st = embed_texts(&r, &ctx, err);
        sc_ctx_free(&ctx);
    }
    char tmp[DS_PATH_MAX];
    if (!st) st = cache_tmp_begin(out_dir, tmp, sizeof tmp, err);
    if (!st) st = cache_tmp_end(tmp, out_dir, embed_write(&r, tmp, first, end, err), err);
    embed_run_free(&r);
    return st;
}
/* @book end embed */

/* ---- 6j. Loading, checking and merging caches ------------------------------------ */

/* An (rows, cols) array of type dt from dir/name, checked, into *out
 * (malloc'ed). */
static sc_status cache_npy(const char *dir, const char *name, sc_dtype dt, int64_t rows, int64_t cols, void **out,
                           sc_err *err)
{
    char path[DS_PATH_MAX];
    *out = NULL;
    if (!path_join(path, sizeof path, dir, name)) return sc_fail(err, SC_EARG, "%s: path too long", dir);
    sc_array a;
    sc_status st = sc_npy_read(path, &a, err);
    if (st) return st;
    if (a.dtype != dt || a.ndim != 2 || a.shape[0] != rows || a.shape[1] != cols) {
        st = sc_fail(err, SC_ESHAPE, "%s: expected %s (%lld, %lld) as index.json says, found %s with %d dims", path,
                     sc_dtype_name(dt), (long long)rows, (long long)cols, sc_dtype_name(a.dtype), a.ndim);
        sc_array_free(&a);
        return st;
    }
    *out = a.data;
    return SC_OK;
}

static sc_status check_binary(const uint8_t *x, int64_t n, const char *dir, const char *name, sc_err *err)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] > 1) return sc_fail(err, SC_EFORMAT, "%s/%s: entry %lld is %d, not 0 or 1", dir, name, (long long)i, x[i]);
    return SC_OK;
}

/* The hierarchy as embedded: hierarchy.hier with the dropped combinations
 * dropped again. */
static sc_status cache_hier(sc_cache *c, const cache_index *x, sc_err *err)
{
    char path[DS_PATH_MAX];
    if (!path_join(path, sizeof path, c->dir, "hierarchy.hier")) return sc_fail(err, SC_EARG, "path too long");
    sc_status st = sc_hier_load(&c->hier, path, err);
    for (int d = 0; !st && d < x->n_dropped; d++) {
        char name[3][SC_HIER_MAX_LINE + 1];
        const char *s = x->dropped[d], *bar1 = strchr(s, '|'), *bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;
        const sc_hier_task *t = NULL;
        int h = -1;
        if (bar2 && bar1 - s <= SC_HIER_MAX_LINE && bar2 - bar1 <= SC_HIER_MAX_LINE && strlen(bar2) <= SC_HIER_MAX_LINE) {
            snprintf(name[0], sizeof name[0], "%.*s", (int)(bar1 - s), s);
            snprintf(name[1], sizeof name[1], "%.*s", (int)(bar2 - bar1 - 1), bar1 + 1);
            snprintf(name[2], sizeof name[2], "%s", bar2 + 1);
            t = sc_hier_task_find(&c->hier, name[0]);
            h = t ? sc_hier_combo_find(t, name[1], name[2]) : -1;
        }
        if (h < 0) {
            st = sc_fail(err, SC_EFORMAT, "%s/index.json: dropped combination '%s' is not in hierarchy.hier", c->dir, s);
            break;
        }
        uint8_t keep[SC_HIER_MAX_COMBOS];
        memset(keep, 1, sizeof keep);
        keep[h] = 0;
        st = sc_hier_task_keep(&c->hier, (int)(t - c->hier.tasks), keep, NULL, err);
    }
    if (st) return st;
    c->label_offset = malloc(sizeof(int) * (size_t)(c->hier.n_tasks + 1));
    if (!c->label_offset) return sc_fail(err, SC_ENOMEM, "out of memory");
    c->label_offset[0] = 0;
    for (int t = 0; t < c->hier.n_tasks; t++) c->label_offset[t + 1] = c->label_offset[t] + c->hier.tasks[t].n_combos;
    c->n_labels = c->label_offset[c->hier.n_tasks];
    if (c->n_labels != x->n_labels)
        return sc_fail(err, SC_EFORMAT, "%s: hierarchy.hier has %d combinations but index.json says %lld", c->dir,
                       c->n_labels, (long long)x->n_labels);
    return SC_OK;
}

static sc_status cache_images(sc_cache *c, sc_err *err)
{
    char path[DS_PATH_MAX];
    sc_csv csv;
    if (!path_join(path, sizeof path, c->dir, "images.csv")) return sc_fail(err, SC_EARG, "path too long");
    sc_status st = sc_csv_load(&csv, path, NULL, err);
    if (st) return st;
    int col[4];
    static const char *const names[4] = {"id", "group", "split", "file"};
    for (int k = 0; !st && k < 4; k++) st = sc_csv_require_column(&csv, names[k], &col[k], err);
    if (!st && csv.n_rows != c->N)
        st = sc_fail(err, SC_EFORMAT, "%s: %lld images, but index.json says %lld", path, (long long)csv.n_rows,
                     (long long)c->N);
    int64_t N = c->N;
    c->image_id = malloc(sizeof *c->image_id * (size_t)(N + 1));
    c->image_path = malloc(sizeof *c->image_path * (size_t)(N + 1));
    c->split = malloc((size_t)N + 1);
    c->group = malloc(sizeof *c->group * (size_t)(N + 1));
    const char **group_names = malloc(sizeof *group_names * (size_t)(N + 1));
    if (!st && (!c->image_id || !c->image_path || !c->split || !c->group || !group_names))
        st = sc_fail(err, SC_ENOMEM, "out of memory");
    for (int64_t i = 0; !st && i < N; i++) {
        sc_split s = parse_split_name(sc_csv_get(&csv, i, col[2]));
        if (s == SC_N_SPLITS)
            st = sc_csv_fail(err, SC_EFORMAT, &csv, i, col[2], "'%s' is not a split", sc_csv_get(&csv, i, col[2]));
        c->split[i] = (uint8_t)s;
        c->image_id[i] = arena_strdup(&c->arena, sc_csv_get(&csv, i, col[0]));
        c->image_path[i] = arena_strdup(&c->arena, sc_csv_get(&csv, i, col[3]));
        group_names[i] = arena_strdup(&c->arena, sc_csv_get(&csv, i, col[1]));
        if (!st && (!c->image_id[i] || !c->image_path[i] || !group_names[i])) st = sc_fail(err, SC_ENOMEM, "out of memory");
    }
    if (!st) st = number_by_first_appearance(group_names, N, c->group, err);
    free(group_names);
    sc_csv_free(&csv);
    return st;
}

/* Is text row j's (kind, task, index, variant, image) one the hierarchy
 * can have? */
static int text_row_valid(const sc_cache *c, int kind, int task, int index, int variant, int64_t image)
{
    const sc_hier *h = &c->hier;
    const sc_hier_task *t = task >= 0 && task < h->n_tasks ? &h->tasks[task] : NULL;
    switch ((sc_text_kind)kind) {
    case SC_TEXT_PROMPT:
    case SC_TEXT_NAME: return t && index >= 0 && index < t->n_combos && variant == 0 && image < 0;
    case SC_TEXT_ENSEMBLE: return t && index >= 0 && index < t->n_combos && variant >= 0 && variant < t->n_ensemble && image < 0;
    case SC_TEXT_CLASS:
        return t && index >= 0 && index < t->n_classes && variant >= 0 && variant < t->n_class_templates && image < 0;
    case SC_TEXT_CLASS_NAME: return t && index >= 0 && index < t->n_classes && variant == 0 && image < 0;
    case SC_TEXT_NONE: return task == -1 && index == -1 && variant == 0 && image < 0;
    case SC_TEXT_REFERENCE: return task == -1 && index >= 0 && index < h->n_references && variant == 0 && image < 0;
    case SC_TEXT_SENTENCE: return task == -1 && index == -1 && variant == 0 && image >= 0 && image < c->N;
    }
    return 0;
}

static sc_status cache_texts(sc_cache *c, sc_err *err)
{
    char path[DS_PATH_MAX];
    sc_csv csv;
    if (!path_join(path, sizeof path, c->dir, "texts.csv")) return sc_fail(err, SC_EARG, "path too long");
    sc_status st = sc_csv_load(&csv, path, NULL, err);
    if (st) return st;
    static const char *const names[7] = {"kind", "task", "index", "variant", "image", "tokens", "text"};
    int col[7];
    for (int k = 0; !st && k < 7; k++) st = sc_csv_require_column(&csv, names[k], &col[k], err);
    if (!st && csv.n_rows != c->M)
        st = sc_fail(err, SC_EFORMAT, "%s: %lld texts, but index.json says %lld", path, (long long)csv.n_rows,
                     (long long)c->M);
    int64_t M = c->M;
    c->text_kind = malloc((size_t)M + 1);
    c->text_task = malloc(sizeof(int) * (size_t)(M + 1));
    c->text_index = malloc(sizeof(int) * (size_t)(M + 1));
    c->text_variant = malloc(sizeof(int) * (size_t)(M + 1));
    c->text_tokens = malloc(sizeof(int) * (size_t)(M + 1));
    c->text_image = malloc(sizeof(int64_t) * (size_t)(M + 1));
    c->text = malloc(sizeof *c->text * (size_t)(M + 1));
    if (!st && (!c->text_kind || !c->text_task || !c->text_index || !c->text_variant || !c->text_tokens ||
                !c->text_image || !c->text))
        st = sc_fail(err, SC_ENOMEM, "out of memory");
    for (int64_t j = 0; !st && j < M; j++) {
        int64_t v[5];
        int kind = text_kind_of(sc_csv_get(&csv, j, col[0]));
        for (int k = 0; !st && k < 5; k++) st = sc_csv_get_int(&csv, j, col[k + 1], &v[k], err);
        if (st) break;
        int in_range = v[0] >= -1 && v[0] < INT32_MAX && v[1] >= -1 && v[1] < INT32_MAX && v[2] >= 0 &&
                       v[2] < INT32_MAX && v[4] >= 0 && v[4] <= c->T;
        if (kind < 0 || !in_range || !text_row_valid(c, kind, (int)v[0], (int)v[1], (int)v[2], v[3]))
            st = sc_csv_fail(err, SC_EFORMAT, &csv, j, -1, "text %lld: kind, task, index, variant, image or tokens "
                             "do not fit hierarchy.hier and index.json", (long long)j);
        else {
            c->text_kind[j] = (uint8_t)kind, c->text_task[j] = (int)v[0], c->text_index[j] = (int)v[1];
            c->text_variant[j] = (int)v[2], c->text_image[j] = v[3], c->text_tokens[j] = (int)v[4];
            if (!(c->text[j] = arena_strdup(&c->arena, sc_csv_get(&csv, j, col[6]))))
                st = sc_fail(err, SC_ENOMEM, "out of memory");
        }
    }
    sc_csv_free(&csv);
    return st;
}

sc_status sc_cache_load(sc_cache *c, const char *dir, sc_err *err)
{
    memset(c, 0, sizeof *c);
    sc_arena_init(&c->arena, "cache", (size_t)1 << 20, 0);
    if (snprintf(c->dir, sizeof c->dir, "%s", dir) >= (int)sizeof c->dir)
        return sc_fail(err, SC_EARG, "%s: path too long", dir);
    cache_index x;
    sc_status st = cache_index_read(&x, &c->index, dir, &c->arena, err);
    if (!st && x.n_shards > 1)
        st = sc_fail(err, SC_EARG, "%s: shard %d of %d; join the shards with 'scale embed --merge' first", dir,
                     x.shard, x.n_shards);
    if (!st && (!x.texts_embedded || x.first_image != 0 || x.end_image != x.n_images))
        st = sc_fail(err, SC_EFORMAT, "%s/index.json: not a whole cache (images %lld..%lld of %lld)", dir,
                     (long long)x.first_image, (long long)x.end_image, (long long)x.n_images);
    if (!st) {
        c->N = x.n_images, c->M = x.n_texts, c->E = x.embed_dim, c->T = x.token_columns;
        const char *kind = kv_get(&x.info, "model.kind"), *scale = kv_get(&x.info, "model.logit_scale");
        const char *data_kind = kv_get(&x.fingerprint, "dataset.kind");
        snprintf(c->model_kind, sizeof c->model_kind, "%s", kind ? kind : "?");
        snprintf(c->dataset_kind, sizeof c->dataset_kind, "%s", data_kind ? data_kind : "?");
        c->logit_scale = scale ? strtof(scale, NULL) : NAN;
        st = cache_hier(c, &x, err);
    }
    int64_t K = c->n_labels;
    if (!st) st = cache_images(c, err);
    if (!st) st = cache_texts(c, err);
    if (!st) st = cache_npy(dir, "image_emb.npy", SC_DT_F32, c->N, c->E, (void **)&c->image_emb, err);
    if (!st) st = cache_npy(dir, "image_labels.npy", SC_DT_U8, c->N, K, (void **)&c->image_labels, err);
    if (!st) st = check_binary(c->image_labels, c->N * K, dir, "image_labels.npy", err);
    if (!st) st = cache_npy(dir, "text_emb.npy", SC_DT_F32, c->M, c->E, (void **)&c->text_emb, err);
    if (!st) st = cache_npy(dir, "text_ids.npy", SC_DT_I64, c->M, c->T, (void **)&c->text_ids, err);
    if (!st) st = cache_npy(dir, "text_mask.npy", SC_DT_I64, c->M, c->T, (void **)&c->text_mask, err);
    if (!st) st = cache_npy(dir, "text_labels.npy", SC_DT_U8, c->M, K, (void **)&c->text_labels, err);
    if (!st) st = check_binary(c->text_labels, c->M * K, dir, "text_labels.npy", err);
    cache_index_free(&x);
    if (st) sc_cache_free(c);
    return st;
}

void sc_cache_free(sc_cache *c)
{
    free(c->label_offset), free(c->image_emb), free(c->text_emb), free(c->text_ids), free(c->text_mask);
    free(c->image_labels), free(c->text_labels), free(c->split), free(c->group), free(c->image_id);
    free(c->image_path), free(c->text_kind), free(c->text_task), free(c->text_index), free(c->text_variant);
    free(c->text_image), free(c->text_tokens), free(c->text);
    if (c->hier.tasks) sc_hier_free(&c->hier);
    if (c->index.root) sc_json_free(&c->index);
    sc_arena_free(&c->arena);
    memset(c, 0, sizeof *c);
}

/* The images half of a check. The fingerprint names the image files only
 * through the label files, so a picture replaced under the same name
 * would go unnoticed there; images.csv records the SHA-256 of the bytes
 * each row was embedded from. Load the dataset as the options read it now
 * and compare, row by row, the image's id and the hash of its file. */
static sc_status cache_check_images(const sc_cache *c, const sc_dataset_options *data, const char *what, sc_err *err)
{
    char path[DS_PATH_MAX];
    if (!path_join(path, sizeof path, c->dir, "images.csv")) return sc_fail(err, SC_EARG, "%s: path too long", c->dir);
    sc_dataset ds;
    sc_status st = sc_dataset_load(&ds, data, err);
    if (st) return st;
    sc_csv csv;
    if ((st = sc_csv_load(&csv, path, NULL, err))) {
        sc_dataset_free(&ds);
        return st;
    }
    int col_id, col_file, col_sha;
    if (!(st = sc_csv_require_column(&csv, "id", &col_id, err)) &&
        !(st = sc_csv_require_column(&csv, "file", &col_file, err)))
        st = sc_csv_require_column(&csv, "sha256", &col_sha, err);
    if (!st && csv.n_rows != c->N)
        st = sc_fail(err, SC_EFORMAT, "%s: %lld rows, but index.json says %lld images", path, (long long)csv.n_rows,
                     (long long)c->N);
    int64_t n = c->N < ds.n_images ? c->N : ds.n_images;
    for (int64_t i = 0; !st && i < n; i++) {
        const char *id = sc_csv_get(&csv, i, col_id), *was = sc_csv_get(&csv, i, col_sha);
        char is[65];
        if (strcmp(id, ds.image_id[i]))
            st = sc_fail(err, SC_EFORMAT, "%s: stale cache: image %lld was %s (file %s) when embedded but is %s (file "
                         "%s) now; embed again", what, (long long)i, id, sc_csv_get(&csv, i, col_file),
                         ds.image_id[i], ds.image_path[i]);
        else if (!(st = sc_sha256_file(ds.image_path[i], is, NULL, err)) && strcmp(is, was))
            st = sc_fail(err, SC_EFORMAT, "%s: stale cache: image file %s has changed since it was embedded "
                         "(sha256 %.12s... in images.csv, %.12s... now); embed again", what, ds.image_path[i], was, is);
    }
    if (!st && ds.n_images != c->N)
        st = sc_fail(err, SC_EFORMAT, "%s: stale cache: %lld images were embedded but the dataset has %lld now "
                     "(first difference: image %s); embed again", what, (long long)c->N, (long long)ds.n_images,
                     n < c->N ? sc_csv_get(&csv, n, col_file) : ds.image_path[n]);
    sc_csv_free(&csv);
    sc_dataset_free(&ds);
    return st;
}

sc_status sc_cache_check(const sc_cache *c, const char *model, const char *pipeline, const sc_dataset_options *data,
                         sc_err *err)
{
    sc_arena a;
    sc_arena_init(&a, "cache check", (size_t)1 << 16, 0);
    kv_list then, now;
    kv_init(&then, &a);
    kv_init(&now, &a);
    char what[DS_PATH_MAX];
    snprintf(what, sizeof what, "%s/index.json", c->dir);
    sc_status st = json_kv_read(c->index.root, "fingerprint", &then, what, err);
    kv_add(&now, "scale.version", "%s", sc_version());
    sc_pipeline p;
    if (!st && model) st = model_fingerprint(&now, model, pipeline, &p, err);
    if (!st && data) st = dataset_fingerprint(&now, data, err);
    const char *prefixes[4] = {"scale.", "model.", "pipeline.", "dataset."};
    const char *checked[4];
    int n = 0;
    checked[n++] = prefixes[0];
    if (model) checked[n++] = prefixes[1], checked[n++] = prefixes[2];
    if (data) checked[n++] = prefixes[3];
    if (!st && now.failed) st = sc_fail(err, SC_ENOMEM, "out of memory");
    if (!st) st = fingerprint_compare(&then, &now, checked, n, what, err);
    if (!st && data) st = cache_check_images(c, data, what, err);
    free(then.item), free(now.item);
    sc_arena_free(&a);
    return st;
}

int64_t sc_cache_text_row(const sc_cache *c, sc_text_kind kind, int task, int index, int variant)
{
    for (int64_t j = 0; j < c->M; j++)
        if (c->text_kind[j] == kind && c->text_task[j] == task && c->text_index[j] == index &&
            c->text_variant[j] == variant)
            return j;
    return -1;
}

/* ---- merging shards ---- */

static sc_status read_whole(const char *dir, const char *name, uint8_t **data, size_t *len, sc_err *err)
{
    char path[DS_PATH_MAX];
    if (!path_join(path, sizeof path, dir, name)) return sc_fail(err, SC_EARG, "%s: path too long", dir);
    return sc_read_file(path, (size_t)1 << 34, data, len, err);
}

/* The files every shard holds identically, compared with the first
 * shard's and copied from it. */
static const char *const shared_files[] = {"hierarchy.hier", "texts.csv", "text_ids.npy", "text_mask.npy",
                                           "text_labels.npy"};

static sc_status merge_shared(const char *const *dirs, const int *ord, int n, const char *tmp, sc_err *err)
{
    sc_status st = SC_OK;
    for (size_t f = 0; !st && f < sizeof shared_files / sizeof shared_files[0]; f++) {
        uint8_t *first = NULL, *other = NULL;
        size_t len0, len;
        st = read_whole(dirs[ord[0]], shared_files[f], &first, &len0, err);
        for (int k = 1; !st && k < n; k++) {
            st = read_whole(dirs[ord[k]], shared_files[f], &other, &len, err);
            if (!st && (len != len0 || memcmp(first, other, len)))
                st = sc_fail(err, SC_EFORMAT, "%s/%s differs from %s/%s: the shards are not of one run", dirs[ord[k]],
                             shared_files[f], dirs[ord[0]], shared_files[f]);
            free(other);
            other = NULL;
        }
        char path[DS_PATH_MAX];
        if (!st && path_join(path, sizeof path, tmp, shared_files[f])) st = sc_write_file_atomic(path, first, len0, err);
        free(first);
    }
    return st;
}

/* images.csv: the first shard's header, then every shard's rows. */
static sc_status merge_images_csv(const char *const *dirs, const int *ord, int n, const char *tmp, sc_err *err)
{
    sc_text out;
    sc_text_init(&out);
    sc_status st = SC_OK;
    for (int k = 0; !st && k < n; k++) {
        uint8_t *data;
        size_t len;
        st = read_whole(dirs[ord[k]], "images.csv", &data, &len, err);
        if (st) break;
        const uint8_t *body = k ? memchr(data, '\n', len) : data;
        body = body ? body + (k ? 1 : 0) : data + len;
        sc_text_put(&out, (const char *)body, len - (size_t)(body - data));
        free(data);
    }
    char path[DS_PATH_MAX];
    if (!st && path_join(path, sizeof path, tmp, "images.csv")) st = sc_text_save(&out, path, err);
    sc_text_free(&out);
    return st;
}

/* A (rows, cols) array stacked from every shard's. */
static sc_status merge_npy(const char *const *dirs, const int *ord, int n, const cache_index *x, const char *name,
                           sc_dtype dt, int64_t cols, const char *tmp, sc_err *err)
{
    int64_t N = x[ord[0]].n_images;
    size_t row_bytes = sc_dtype_size(dt) * (size_t)cols;
    uint8_t *all = malloc(row_bytes * (size_t)N + 1);
    sc_status st = all ? SC_OK : sc_fail(err, SC_ENOMEM, "out of memory for %s", name);
    for (int k = 0; !st && k < n; k++) {
        const cache_index *s = &x[ord[k]];
        void *part;
        st = cache_npy(dirs[ord[k]], name, dt, s->end_image - s->first_image, cols, &part, err);
        if (!st && s->end_image > s->first_image)
            memcpy(all + (size_t)s->first_image * row_bytes, part, row_bytes * (size_t)(s->end_image - s->first_image));
        free(part);
    }
    if (!st) st = npy_write_typed(tmp, name, dt, all, N, cols, err);
    free(all);
    return st;
}

/* Do the shards belong together, and in which order (ord[i] = the
 * argument holding shard i)? */
static sc_status merge_check(const char *const *dirs, const cache_index *x, int n, int *ord, sc_err *err)
{
    for (int i = 0; i < n; i++) ord[i] = -1;
    for (int k = 0; k < n; k++) {
        const cache_index *a = &x[k], *b = &x[0];
        if (a->n_shards != n)
            return sc_fail(err, SC_EARG, "%s is shard %d of %d, but %d shards were given", dirs[k], a->shard,
                           a->n_shards, n);
        if (ord[a->shard] >= 0)
            return sc_fail(err, SC_EARG, "%s and %s are both shard %d", dirs[ord[a->shard]], dirs[k], a->shard);
        ord[a->shard] = k;
        int same = a->fingerprint.n == b->fingerprint.n && a->n_images == b->n_images && a->n_texts == b->n_texts &&
                   a->embed_dim == b->embed_dim && a->token_columns == b->token_columns &&
                   a->n_labels == b->n_labels && a->batch == b->batch;
        for (int i = 0; same && i < a->fingerprint.n; i++)
            same = !strcmp(a->fingerprint.item[i].key, b->fingerprint.item[i].key) &&
                   !strcmp(a->fingerprint.item[i].value, b->fingerprint.item[i].value);
        if (!same)
            return sc_fail(err, SC_EFORMAT, "%s and %s are not shards of one run (fingerprints, counts or batch sizes "
                           "differ)", dirs[0], dirs[k]);
    }
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (x[ord[i]].first_image != at)
            return sc_fail(err, SC_EFORMAT, "%s holds images from %lld, but the shards before end at %lld",
                           dirs[ord[i]], (long long)x[ord[i]].first_image, (long long)at);
        at = x[ord[i]].end_image;
    }
    if (at != x[0].n_images)
        return sc_fail(err, SC_EFORMAT, "the shards hold images 0..%lld of %lld", (long long)at, (long long)x[0].n_images);
    if (!x[ord[0]].texts_embedded) return sc_fail(err, SC_EFORMAT, "%s: shard 0 has no text embeddings", dirs[ord[0]]);
    return SC_OK;
}

sc_status sc_cache_merge(const char *out_dir, const char *const *shard_dirs, int n, sc_err *err)
{
    if (n < 1 || n > (1 << 20)) return sc_fail(err, SC_EARG, "merge: %d shards", n);
    if (path_exists(out_dir)) return sc_fail(err, SC_EARG, "%s: already exists; remove it or choose another output", out_dir);
    sc_arena a;
    sc_arena_init(&a, "merge", (size_t)1 << 20, 0);
    cache_index *x = calloc((size_t)n, sizeof *x);
    sc_json_doc *docs = calloc((size_t)n, sizeof *docs);
    int *ord = malloc(sizeof(int) * (size_t)n);
    sc_status st = x && docs && ord ? SC_OK : sc_fail(err, SC_ENOMEM, "out of memory");
    int n_read = 0;
    for (; !st && n_read < n; n_read++) st = cache_index_read(&x[n_read], &docs[n_read], shard_dirs[n_read], &a, err);
    if (!st) st = merge_check(shard_dirs, x, n, ord, err);
    char tmp[DS_PATH_MAX];
    if (!st) st = cache_tmp_begin(out_dir, tmp, sizeof tmp, err);
    if (!st) {
        /* the index an unsharded run writes */
        cache_index whole = x[ord[0]];
        whole.shard = 0, whole.n_shards = 1, whole.first_image = 0, whole.end_image = x[0].n_images;
        char path[DS_PATH_MAX];
        sc_status w = path_join(path, sizeof path, tmp, "index.json") ? cache_index_write(&whole, path, err)
                                                                       : sc_fail(err, SC_EARG, "%s: path too long", tmp);
        if (!w) w = merge_shared(shard_dirs, ord, n, tmp, err);
        if (!w) w = merge_images_csv(shard_dirs, ord, n, tmp, err);
        if (!w) w = merge_npy(shard_dirs, ord, n, x, "image_emb.npy", SC_DT_F32, x[0].embed_dim, tmp, err);
        if (!w) w = merge_npy(shard_dirs, ord, n, x, "image_labels.npy", SC_DT_U8, x[0].n_labels, tmp, err);
        if (!w) {
            uint8_t *data;
            size_t len;
            w = read_whole(shard_dirs[ord[0]], "text_emb.npy", &data, &len, err);
            if (!w) {
                if (path_join(path, sizeof path, tmp, "text_emb.npy")) w = sc_write_file_atomic(path, data, len, err);
                free(data);
            }
        }
        st = cache_tmp_end(tmp, out_dir, w, err);
    }
    for (int k = 0; k < n_read && x && docs; k++) {
        cache_index_free(&x[k]);
        if (docs[k].root) sc_json_free(&docs[k]);
    }
    free(x), free(docs), free(ord);
    sc_arena_free(&a);
    return st;
}

/* ======================================================================== */
/* 7. Experiments: the paper's protocol (Sec. 2.3)                           */
/* ======================================================================== */

/* `scale experiment` reproduces the paper's figures: every method is
 * trained on stratified random subsets of the training split (fractions
 * 0.05 .. 1, five subsets each, one at 1) and evaluated on the test split
 * at the class level and at the level of class-concept combinations. The
 * frozen encoders ran once (the embedding cache, section 6); the methods
 * (loss.c section 9, nn.c section 9, SCALE from loss.c section 6) run on
 * the cached embeddings. book/17 describes the protocol and the outputs. */

/* ---- 7a. The configuration file ------------------------------------------
 * A small text format, one statement per line, '#' to the end of a line
 * is a comment, a value with blanks goes in double quotes:
 *
 *     scale-experiment 1
 *     name      Derm7p with MONET (Fig. 2)
 *     model     models/monet                 # needed by CoOp and to embed
 *     cache     cache/derm7p-monet           # embedded from `dataset` if missing
 *     dataset   derm7p:data/release_v0
 *     fractions 0.05 0.1 0.25 0.5 1
 *     seeds     5
 *     method zero-shot     zero-shot
 *     method linear-probe  linear-probe
 *     method coop          coop n-ctx=16 init="a photo of a"
 *     method scale         scale epochs=150
 *
 * Relative paths are taken from the config file's folder. Every mistake is
 * reported as "FILE:LINE: what is wrong". The statements and each method's
 * options are listed in experiment_usage below and in book/17. */

const char *sc_method_kind_name(sc_method_kind k)
{
    static const char *const names[SC_N_METHOD_KINDS] = {"zero-shot", "concept-score", "linear-probe", "coop",
                                                         "scale"};
    return (unsigned)k < SC_N_METHOD_KINDS ? names[k] : "?";
}

#define EXP_MAX_WORDS 32

typedef struct {
    sc_experiment *ex;
    const char *what;         /* the file, for messages */
    const char *base;         /* its folder, for relative paths */
    int line;
    sc_err *err;
    char *word[EXP_MAX_WORDS];
    int n_words;
    uint32_t seen;            /* statements given once, by bit */
    int out_of_memory;        /* a copy or a path did not fit */
} exp_parser;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static sc_status exp_bad(exp_parser *p, const char *fmt, ...)
{
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return sc_fail(p->err, SC_EFORMAT, "%s:%d: %s", p->what, p->line, why);
}

/* Split one line (NUL-terminated copy in buf) into words: blanks separate,
 * double quotes keep blanks inside a word and are removed, '#' outside
 * quotes ends the line. */
static sc_status exp_split(exp_parser *p, char *buf)
{
    p->n_words = 0;
    char *r = buf, *w = buf;
    for (;;) {
        while (*r == ' ' || *r == '\t' || *r == '\r') r++;
        if (!*r || *r == '#') return SC_OK;
        if (p->n_words == EXP_MAX_WORDS) return exp_bad(p, "more than %d words on one line", EXP_MAX_WORDS);
        p->word[p->n_words++] = w;
        int quoted = 0;
        while (*r && (quoted || (*r != ' ' && *r != '\t' && *r != '\r' && *r != '#'))) {
            if (*r == '"') quoted = !quoted, r++;
            else *w++ = *r++;
        }
        if (quoted) return exp_bad(p, "a double quote is not closed");
        int end = !*r || *r == '#';
        *w++ = '\0';      /* w never passes r: words only shrink */
        if (end) return SC_OK;
        r++;
    }
}

/* A copy in the experiment's arena; when that fails, "" and a note that
 * parsing ends with SC_ENOMEM. */
static const char *exp_strdup(exp_parser *p, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = sc_arena_alloc(&p->ex->arena, n);
    if (!d) return p->out_of_memory = 1, "";
    return memcpy(d, s, n);
}

/* A path from the config: absolute, or relative to the config's folder. */
static const char *exp_path(exp_parser *p, const char *s)
{
    char buf[DS_PATH_MAX];
    if (s[0] == '/' || !p->base[0]) return exp_strdup(p, s);
    if (!path_join(buf, sizeof buf, p->base, s)) return p->out_of_memory = 1, "";
    return exp_strdup(p, buf);
}

static sc_status exp_double(exp_parser *p, const char *key, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !(x >= lo && x <= hi))
        return exp_bad(p, "%s must be a number in [%g, %g], not '%s'", key, lo, hi, s);
    *out = x;
    return SC_OK;
}

static sc_status exp_int(exp_parser *p, const char *key, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi)
        return exp_bad(p, "%s must be an integer in [%ld, %ld], not '%s'", key, lo, hi, s);
    *out = x;
    return SC_OK;
}

static sc_status exp_bool(exp_parser *p, const char *key, const char *s, int *out)
{
    if (!strcmp(s, "yes") || !strcmp(s, "1")) *out = 1;
    else if (!strcmp(s, "no") || !strcmp(s, "0")) *out = 0;
    else return exp_bad(p, "%s takes yes or no, not '%s'", key, s);
    return SC_OK;
}

/* value must be one of the n names; *out gets its index. */
static sc_status exp_choice(exp_parser *p, const char *key, const char *s, const char *const *names, int n, int *out)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return *out = i, SC_OK;
    char list[200] = "";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? (i + 1 == n ? " or " : ", ") : "",
                 names[i]);
    return exp_bad(p, "%s takes %s, not '%s'", key, list, s);
}

/* ---- method options ---- */

/* The options each kind accepts, for the "has no option" message. */
static const char *const method_options[SC_N_METHOD_KINDS] = {
    "cache prompts ensemble dashed",
    "cache temp dashed",
    "loss weighting epochs lr l2 batch dashed",
    "n-ctx csc init init-std epochs lr momentum weight-decay warmup-epochs warmup-lr batch dashed",
    ("epochs lr batch tau logit-scale lambda supcon reduction alpha alpha-init relu adapter-reduction "
     "image-adapter text-adapter tasks dashed"),
};

static int option_allowed(sc_method_kind kind, const char *key)
{
    const char *list = method_options[kind];
    size_t n = strlen(key);
    for (const char *s = list; (s = strstr(s, key)) != NULL; s += n)
        if ((s == list || s[-1] == ' ') && (s[n] == ' ' || s[n] == '\0')) return 1;
    return 0;
}

static void method_defaults(sc_method *m)
{
    m->class_prompts = 0;
    m->ensemble = 0;
    m->temp = 1.0 / exp(SC_MONET_LOG_SCALE);
    m->probe = sc_probe_defaults();
    m->coop = sc_coop_defaults();
    m->scale = sc_train_defaults();
    m->dashed = 0;
}

/* One key=value of a method. */
static sc_status method_option(exp_parser *p, sc_method *m, const char *key, const char *v)
{
    double x;
    long n;
    int k;
    sc_status st = SC_OK;
    if (!option_allowed(m->kind, key))
        return exp_bad(p, "method '%s' (%s) has no option '%s'; it takes: %s", m->name, sc_method_kind_name(m->kind),
                       key, method_options[m->kind]);
    if (!strcmp(key, "dashed")) st = exp_bool(p, key, v, &m->dashed);
    else if (!strcmp(key, "cache")) m->cache = exp_path(p, v);
    else if (!strcmp(key, "prompts")) {
        static const char *const names[2] = {"combination", "class"};
        st = exp_choice(p, key, v, names, 2, &m->class_prompts);
    } else if (!strcmp(key, "ensemble")) st = exp_bool(p, key, v, &m->ensemble);
    else if (!strcmp(key, "temp")) {
        if (!(st = exp_double(p, key, v, 1e-6, 1e6, &x))) m->temp = x;
    } else if (!strcmp(key, "loss")) {
        static const char *const names[2] = {"bce", "softmax"};
        if (!(st = exp_choice(p, key, v, names, 2, &k))) m->probe.loss = k ? SC_PROBE_SOFTMAX : SC_PROBE_BCE;
    } else if (!strcmp(key, "weighting")) {
        static const char *const names[2] = {"none", "inverse-frequency"};
        if (!(st = exp_choice(p, key, v, names, 2, &m->probe.weighted)) && m->probe.weighted) m->dashed = 1;
    } else if (!strcmp(key, "epochs")) {
        if (!(st = exp_int(p, key, v, 1, 100000, &n)))
            m->probe.epochs = m->coop.epochs = m->scale.epochs = (int)n;
    } else if (!strcmp(key, "lr")) {
        if (!(st = exp_double(p, key, v, 1e-12, 1e3, &x))) m->probe.lr = m->coop.lr = m->scale.lr = (float)x;
    } else if (!strcmp(key, "batch")) {
        if (!(st = exp_int(p, key, v, 1, 1 << 20, &n)))
            m->probe.batch_size = m->coop.batch_size = m->scale.batch_size = (int)n;
    } else if (!strcmp(key, "l2")) {
        if (!(st = exp_double(p, key, v, 0, 1e6, &x))) m->probe.l2 = (float)x;
    } else if (!strcmp(key, "n-ctx")) {
        if (!(st = exp_int(p, key, v, 1, 64, &n))) m->coop.n_ctx = (int)n;
    } else if (!strcmp(key, "csc")) st = exp_bool(p, key, v, &m->coop.class_specific);
    else if (!strcmp(key, "init")) m->coop_init = strcmp(v, "random") ? exp_strdup(p, v) : NULL;
    else if (!strcmp(key, "init-std")) {
        if (!(st = exp_double(p, key, v, 0, 10, &x))) m->coop.init_std = (float)x;
    } else if (!strcmp(key, "momentum")) {
        if (!(st = exp_double(p, key, v, 0, 1, &x))) m->coop.momentum = (float)x;
    } else if (!strcmp(key, "weight-decay")) {
        if (!(st = exp_double(p, key, v, 0, 1, &x))) m->coop.weight_decay = (float)x;
    } else if (!strcmp(key, "warmup-epochs")) {
        if (!(st = exp_int(p, key, v, 0, 100000, &n))) m->coop.warmup_epochs = (int)n;
    } else if (!strcmp(key, "warmup-lr")) {
        if (!(st = exp_double(p, key, v, 0, 1e3, &x))) m->coop.warmup_lr = (float)x;
    } else if (!strcmp(key, "tau")) {
        if (!(st = exp_double(p, key, v, 1e-6, 1e6, &x))) m->scale.loss.tau = x;
    } else if (!strcmp(key, "logit-scale")) {
        if (!(st = exp_double(p, key, v, 1e-6, 1e6, &x))) m->scale.loss.logit_scale = x;
    } else if (!strcmp(key, "lambda")) {
        double *l = m->scale.loss.lambda;
        char tail;
        if (sscanf(v, "%lf,%lf,%lf,%lf%c", &l[0], &l[1], &l[2], &l[3], &tail) != 4)
            st = exp_bad(p, "lambda takes four numbers separated by commas, not '%s'", v);
    } else if (!strcmp(key, "supcon")) {
        static const char *const names[2] = {"rows", "cross"};
        if (!(st = exp_choice(p, key, v, names, 2, &k))) m->scale.loss.supcon = k ? SC_SUPCON_CROSS : SC_SUPCON_ROWS;
    } else if (!strcmp(key, "reduction")) {
        static const char *const names[2] = {"mean", "sum"};
        if (!(st = exp_choice(p, key, v, names, 2, &k))) m->scale.loss.reduction = k ? SC_REDUCE_SUM : SC_REDUCE_MEAN;
    } else if (!strcmp(key, "alpha")) {
        static const char *const names[3] = {"sigmoid", "clamp", "raw"};
        static const sc_alpha_mode modes[3] = {SC_ALPHA_SIGMOID, SC_ALPHA_CLAMP, SC_ALPHA_RAW};
        if (!(st = exp_choice(p, key, v, names, 3, &k))) m->scale.adapter.alpha_mode = modes[k];
    } else if (!strcmp(key, "alpha-init")) {
        if (!(st = exp_double(p, key, v, 1e-6, 1 - 1e-6, &x))) m->scale.adapter.alpha_init = (float)x;
    } else if (!strcmp(key, "relu")) {
        if (!(st = exp_int(p, key, v, 1, 2, &n))) m->scale.adapter.relu_after_up = n == 2;
    } else if (!strcmp(key, "adapter-reduction")) {
        if (!(st = exp_int(p, key, v, 1, 4096, &n))) m->scale.adapter.reduction = (int)n;
    } else if (!strcmp(key, "image-adapter")) st = exp_bool(p, key, v, &m->scale.image_adapter);
    else if (!strcmp(key, "text-adapter")) st = exp_bool(p, key, v, &m->scale.text_adapter);
    else if (!strcmp(key, "tasks")) {
        static const char *const names[2] = {"joint", "separate"};
        st = exp_choice(p, key, v, names, 2, &m->separate_tasks);
    }
    return st;
}

/* "method NAME KIND key=value ..." */
static sc_status exp_method(exp_parser *p)
{
    sc_experiment *ex = p->ex;
    if (p->n_words < 3) return exp_bad(p, "method needs a name and a kind: method NAME KIND [key=value ...]");
    if (ex->n_methods == SC_EXP_MAX_METHODS) return exp_bad(p, "more than %d methods", SC_EXP_MAX_METHODS);
    sc_method *m = &ex->methods[ex->n_methods];
    memset(m, 0, sizeof *m);
    const char *name = p->word[1];
    if (strlen(name) >= sizeof m->name) return exp_bad(p, "method name '%.40s...' is too long", name);
    for (const char *s = name; *s; s++)
        if (*s == ',' || *s == '|' || (unsigned char)*s < 32) return exp_bad(p, "method name '%s' contains '%c'", name, *s);
    for (int i = 0; i < ex->n_methods; i++)
        if (!strcmp(ex->methods[i].name, name))
            return exp_bad(p, "a method named '%s' is already defined on line %d", name, ex->methods[i].line);
    snprintf(m->name, sizeof m->name, "%s", name);
    int kind;
    static const char *const kinds[SC_N_METHOD_KINDS] = {"zero-shot", "concept-score", "linear-probe", "coop", "scale"};
    sc_status st = exp_choice(p, "the method kind", p->word[2], kinds, SC_N_METHOD_KINDS, &kind);
    if (st) return st;
    m->kind = (sc_method_kind)kind;
    m->line = p->line;
    method_defaults(m);
    for (int w = 3; !st && w < p->n_words; w++) {
        char *eq = strchr(p->word[w], '=');
        if (!eq || eq == p->word[w]) return exp_bad(p, "'%s' is not key=value", p->word[w]);
        *eq = '\0';
        st = method_option(p, m, p->word[w], eq + 1);
    }
    if (!st) ex->n_methods++;
    return st;
}

/* ---- statements ---- */

enum { ST_VERSION, ST_NAME, ST_MODEL, ST_CACHE, ST_DATASET, ST_HIER, ST_IMAGE, ST_TRAIN_SPLITS, ST_FRACTIONS,
       ST_SEEDS, ST_SEED, ST_LEVELS, ST_TSNE_TASK, ST_TSNE_CLASS, ST_TSNE_POINTS, ST_EXPLAIN, ST_METHOD,
       N_STATEMENTS };
static const char *const statement_names[N_STATEMENTS] = {
    "scale-experiment", "name", "model", "cache", "dataset", "hier", "image", "train-splits", "fractions",
    "seeds", "seed", "levels", "tsne-task", "tsne-class", "tsne-points", "explain", "method"};

static sc_status exp_fractions(exp_parser *p)
{
    sc_experiment *ex = p->ex;
    if (p->n_words < 2) return exp_bad(p, "fractions needs at least one number");
    if (p->n_words - 1 > SC_EXP_MAX_FRACTIONS) return exp_bad(p, "more than %d fractions", SC_EXP_MAX_FRACTIONS);
    for (int w = 1; w < p->n_words; w++) {
        double f;
        sc_status st = exp_double(p, "a fraction", p->word[w], 1e-9, 1, &f);
        if (st) return st;
        if (w > 1 && !(f > ex->fractions[w - 2])) return exp_bad(p, "fractions must increase: %s after %g", p->word[w],
                                                                 ex->fractions[w - 2]);
        ex->fractions[w - 1] = f;
    }
    ex->n_fractions = p->n_words - 1;
    return SC_OK;
}

static sc_status exp_statement(exp_parser *p)
{
    sc_experiment *ex = p->ex;
    const char *key = p->word[0];
    int s = 0;
    while (s < N_STATEMENTS && strcmp(key, statement_names[s])) s++;
    if (s == N_STATEMENTS) return exp_bad(p, "unknown statement '%s'", key);
    if (s != ST_VERSION && !(p->seen & 1u)) return exp_bad(p, "the file must begin with 'scale-experiment 1'");
    if (s != ST_METHOD && (p->seen >> s & 1u)) return exp_bad(p, "'%s' is given twice", key);
    p->seen |= 1u << s;
    if (s == ST_METHOD) return exp_method(p);
    int want = s == ST_FRACTIONS || s == ST_LEVELS || s == ST_TRAIN_SPLITS || s == ST_NAME ? -1 : 2;
    if (want > 0 && p->n_words != want) return exp_bad(p, "'%s' takes one value", key);
    if (want < 0 && p->n_words < 2) return exp_bad(p, "'%s' needs a value", key);
    const char *v = p->word[1];
    long n;
    sc_status st = SC_OK;
    switch (s) {
    case ST_VERSION:
        if (strcmp(v, "1")) return exp_bad(p, "version '%s'; this scale reads scale-experiment 1", v);
        break;
    case ST_NAME: {
        char title[256] = "";
        for (int w = 1; w < p->n_words; w++)
            snprintf(title + strlen(title), sizeof title - strlen(title), "%s%s", w > 1 ? " " : "", p->word[w]);
        ex->name = exp_strdup(p, title);
        break;
    }
    case ST_MODEL: ex->model = exp_path(p, v); break;
    case ST_CACHE: ex->cache = exp_path(p, v); break;
    case ST_DATASET: {
        const char *colon = strchr(v, ':');
        if (!colon) return exp_bad(p, "dataset is KIND:PATH (derm7p:, padchest-gr: or manifest:), not '%s'", v);
        char spec[DS_PATH_MAX];
        snprintf(spec, sizeof spec, "%.*s:%s", (int)(colon - v), v, exp_path(p, colon + 1));
        sc_dataset_options o = sc_dataset_defaults();
        if (sc_dataset_spec(&o, spec, p->err) != SC_OK) return exp_bad(p, "%s", p->err->msg);
        ex->dataset = exp_strdup(p, spec);
        break;
    }
    case ST_HIER: ex->hier = exp_path(p, v); break;
    case ST_IMAGE: {
        static const char *const names[2] = {"derm", "clinic"};
        st = exp_choice(p, key, v, names, 2, &ex->clinic);
        break;
    }
    case ST_TRAIN_SPLITS:
        ex->train_valid = 0;
        for (int w = 1; !st && w < p->n_words; w++) {
            static const char *const names[2] = {"train", "valid"};
            int k;
            if (!(st = exp_choice(p, key, p->word[w], names, 2, &k))) ex->train_valid |= k;
        }
        break;
    case ST_FRACTIONS: st = exp_fractions(p); break;
    case ST_SEEDS:
        if (!(st = exp_int(p, key, v, 1, SC_EXP_MAX_SEEDS, &n))) ex->n_seeds = (int)n;
        break;
    case ST_SEED: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-') return exp_bad(p, "seed must be a whole number, not '%s'", v);
        ex->seed = (uint64_t)x;
        break;
    }
    case ST_LEVELS:
        ex->levels = 0;
        for (int w = 1; !st && w < p->n_words; w++) {
            static const char *const names[2] = {"class", "class-concept"};
            int k;
            if (!(st = exp_choice(p, key, p->word[w], names, 2, &k))) ex->levels |= 1 << k;
        }
        break;
    case ST_TSNE_TASK: ex->tsne_task = exp_strdup(p, v); break;
    case ST_TSNE_CLASS: ex->tsne_class = exp_strdup(p, v); break;
    case ST_TSNE_POINTS:
        if (!(st = exp_int(p, key, v, 4, SC_TSNE_MAX_POINTS, &n))) ex->tsne_points = (int)n;
        break;
    case ST_EXPLAIN: ex->explain = exp_strdup(p, v); break;
    }
    return st;
}

/* What must hold once every line is read. */
static sc_status exp_finish(exp_parser *p)
{
    sc_experiment *ex = p->ex;
    p->line = 0;
    if (!(p->seen & 1u)) return sc_fail(p->err, SC_EFORMAT, "%s: empty; it must begin with 'scale-experiment 1'",
                                        p->what);
    if (!ex->cache)
        return sc_fail(p->err, SC_EFORMAT, "%s: no 'cache' line: where the embeddings are (or go, from 'dataset')",
                       p->what);
    if (ex->dataset && !ex->model)
        return sc_fail(p->err, SC_EFORMAT, "%s: 'dataset' is embedded with a 'model'; give one", p->what);
    if (ex->n_methods == 0) return sc_fail(p->err, SC_EFORMAT, "%s: no 'method' line", p->what);
    int explained = -1;
    for (int i = 0; i < ex->n_methods; i++) {
        const sc_method *m = &ex->methods[i];
        if (ex->explain ? !strcmp(m->name, ex->explain) : m->kind == SC_METHOD_SCALE) explained = i;
        if (m->kind == SC_METHOD_COOP && !ex->model)
            return sc_fail(p->err, SC_EFORMAT, "%s:%d: method '%s' (coop) runs the text tower: give a 'model'",
                           p->what, m->line, m->name);
    }
    if (ex->explain && explained < 0)
        return sc_fail(p->err, SC_EFORMAT, "%s: 'explain %s' names no method", p->what, ex->explain);
    ex->explained = explained;
    return SC_OK;
}

void sc_experiment_free(sc_experiment *ex)
{
    sc_arena_free(&ex->arena);
    memset(ex, 0, sizeof *ex);
}

sc_status sc_experiment_parse(sc_experiment *ex, const char *text, size_t len, const char *what, const char *base_dir,
                              sc_err *err)
{
    memset(ex, 0, sizeof *ex);
    sc_arena_init(&ex->arena, "experiment", (size_t)1 << 16, (size_t)1 << 24);
    static const double paper[5] = {0.05, 0.1, 0.25, 0.5, 1.0};
    memcpy(ex->fractions, paper, sizeof paper);
    ex->n_fractions = 5;
    ex->n_seeds = 5;
    ex->levels = 3;
    ex->tsne_points = 100;
    ex->explained = -1;
    exp_parser p = {ex, what, base_dir ? base_dir : "", 0, err, {0}, 0, 0, 0};
    sc_status st = SC_OK;
    char *copy = sc_arena_alloc(&ex->arena, len + 1), *buf = sc_arena_alloc(&ex->arena, SC_HIER_MAX_LINE + 1);
    if (!copy || !buf) st = sc_fail(err, SC_ENOMEM, "%s: too large for a config file", what);
    if (!st) {
        memcpy(copy, text, len);
        copy[len] = '\0';
        ex->text = copy;
    }
    for (size_t at = 0; !st && at < len;) {
        size_t end = at;
        while (end < len && text[end] != '\n') end++;
        p.line++;
        if (end - at > SC_HIER_MAX_LINE) st = exp_bad(&p, "line longer than %d bytes", SC_HIER_MAX_LINE);
        else if (memchr(text + at, '\0', end - at)) st = exp_bad(&p, "a NUL byte");
        if (!st) {
            memcpy(buf, text + at, end - at);
            buf[end - at] = '\0';
            st = exp_split(&p, buf);
        }
        if (!st && p.n_words) st = exp_statement(&p);
        at = end + 1;
    }
    if (!st && p.out_of_memory) st = sc_fail(err, SC_ENOMEM, "%s: out of memory (or a path too long)", what);
    if (!st) st = exp_finish(&p);
    if (st) sc_experiment_free(ex);
    return st;
}

sc_status sc_experiment_load(sc_experiment *ex, const char *path, sc_err *err)
{
    uint8_t *text;
    size_t len;
    memset(ex, 0, sizeof *ex);
    sc_status st = sc_read_file(path, (size_t)1 << 20, &text, &len, err);
    if (st) return st;
    char base[DS_PATH_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(base, sizeof base, "%.*s", slash ? (int)(slash - path) : 0, path);
    if (slash == path) snprintf(base, sizeof base, "/");
    st = sc_experiment_parse(ex, (const char *)text, len, path, base, err);
    if (!st) snprintf(ex->path, sizeof ex->path, "%s", path);
    free(text);
    return st;
}

/* The model of a run other than the config's (`scale experiment --model`).
 * Embeddings belong to the model that made them, so a different model gets
 * a cache of its own beside the config's: CACHE-NAME, NAME the model
 * folder's own name. (Two models of one name would meet in one cache; the
 * fingerprint check refuses the second, so neither is scored with the
 * other's embeddings.) The same folder as the config's keeps its cache, and
 * so does a config without a model, whose cache the check then holds to
 * this one. */
sc_status sc_experiment_set_model(sc_experiment *ex, const char *model, sc_err *err)
{
    char config[DS_PATH_MAX];
    if (!is_dir(model) || !path_join(config, sizeof config, model, "config.json") || !path_exists(config))
        return sc_fail(err, SC_EARG, "%s: not a model directory (no config.json in it); --model takes a folder with the "
                       "weights, config.json and tokenizer files", model);
    struct stat was, is;
    int same = ex->model && stat(ex->model, &was) == 0 && stat(model, &is) == 0 && was.st_dev == is.st_dev &&
               was.st_ino == is.st_ino;
    if (ex->model && !same) {
        /* the last part of the path, without trailing slashes ("model" for "." or "..") */
        size_t end = strlen(model), start, n = strlen(ex->cache);
        while (end > 1 && model[end - 1] == '/') end--;
        for (start = end; start > 0 && model[start - 1] != '/';) start--;
        const char *name = model + start;
        int len = (int)(end - start);
        if (len == 0 || (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))) name = "model", len = 5;
        while (n > 1 && ex->cache[n - 1] == '/') n--;
        char cache[DS_PATH_MAX];
        if (snprintf(cache, sizeof cache, "%.*s-%.*s", (int)n, ex->cache, len, name) >= (int)sizeof cache)
            return sc_fail(err, SC_EARG, "%s: path too long", ex->cache);
        if (!(ex->cache = arena_strdup(&ex->arena, cache))) return sc_fail(err, SC_ENOMEM, "out of memory");
    }
    if (!(ex->model = arena_strdup(&ex->arena, model))) return sc_fail(err, SC_ENOMEM, "out of memory");
    return SC_OK;
}

/* ---- 7b. Training subsets ------------------------------------------------
 * The paper averages every fraction below 1 over five "stratified random
 * splits" of the training set. Ours are nested: for one seed, the subset
 * at 0.05 lies inside the one at 0.1, and so on up to all images, so a
 * curve shows the effect of more data rather than of another draw.
 *
 * Each item belongs to one stratum: its rarest label (the label carried
 * by the fewest items of the pool; ties go to the lower label), or a
 * stratum of its own kind when it has no label. Within a stratum of n_s
 * items, shuffled by the seed, the item at position j gets the key
 * (j + u_s) / n_s, with one uniform offset u_s in [0, 1) per stratum
 * (systematic sampling). The subset of fraction f is every item with
 * key < f. So a stratum gives #{j : j + u_s < f n_s}, which is
 * ⌊f n_s⌋ or ⌈f n_s⌉: its share is kept within one item, and a larger
 * f only adds items. With one label per item (a single-label task) the
 * strata are the classes, and every class keeps its proportion within one
 * image. With several labels (Derm7p's seven criteria, PadChest-GR) the
 * rarest label is kept exactly so and the others approximately. */

/* @book begin subset-keys */
static sc_status subset_keys(double *key, const uint8_t *labels, const int64_t *items, int64_t n, int K,
                             uint64_t seed, sc_err *err)
{
    int64_t *count = calloc((size_t)K + 1, sizeof *count), *in_stratum = calloc((size_t)K + 2, sizeof *in_stratum);
    int *stratum = malloc(sizeof(int) * (size_t)(n + 1)), *order = malloc(sizeof(int) * (size_t)(n + 1));
    if (!count || !in_stratum || !stratum || !order) {
        free(count), free(in_stratum), free(stratum), free(order);
        return sc_fail(err, SC_ENOMEM, "out of memory for %lld training items", (long long)n);
    }
    for (int64_t j = 0; j < n; j++)
        for (int k = 0; k < K; k++) count[k] += labels[items[j] * K + k] != 0;
    for (int64_t j = 0; j < n; j++) {
        int s = K;   /* no label: stratum K */
        for (int k = 0; k < K; k++)
            if (labels[items[j] * K + k] && (s == K || count[k] < count[s])) s = k;
        stratum[j] = s;
        in_stratum[s]++;
    }
    sc_rng rng;
    sc_rng_seed(&rng, seed);
    for (int64_t j = 0; j < n; j++) order[j] = (int)j;
    sc_rng_shuffle(&rng, order, (int)n);
    /* walk the strata in label order; inside one, the shuffled order */
    for (int s = 0; s <= K; s++) {
        if (!in_stratum[s]) continue;
        double offset = sc_rng_uniform(&rng);
        int64_t position = 0;
        for (int64_t r = 0; r < n; r++)
            if (stratum[order[r]] == s) key[order[r]] = ((double)position++ + offset) / (double)in_stratum[s];
    }
    free(count), free(in_stratum), free(stratum), free(order);
    return SC_OK;
}
/* @book end subset-keys */

sc_status sc_nested_subset(int64_t *chosen, int64_t *n_chosen, const int64_t *items, int64_t n, const uint8_t *labels,
                           int K, double fraction, uint64_t seed, sc_err *err)
{
    *n_chosen = 0;
    if (!(fraction > 0 && fraction <= 1)) return sc_fail(err, SC_EARG, "subset fraction %g is not in (0, 1]", fraction);
    if (n < 0 || n >= INT32_MAX || K < 0) return sc_fail(err, SC_EARG, "%lld items, %d labels", (long long)n, K);
    double *key = malloc(sizeof(double) * (size_t)(n + 1));
    if (!key) return sc_fail(err, SC_ENOMEM, "out of memory for %lld training items", (long long)n);
    sc_status st = subset_keys(key, labels, items, n, K, seed, err);
    for (int64_t j = 0; !st && j < n; j++)
        if (fraction >= 1 || key[j] < fraction) chosen[(*n_chosen)++] = items[j];
    free(key);
    return st;
}

/* ---- 7c. The methods -----------------------------------------------------
 * A method turns a training subset into scores for the test images, for
 * every combination of every task side by side (K columns) and for every
 * class (the class columns of all tasks side by side):
 *   logits  what predictions are made from: the argmax within a task
 *           (single-label), and the ranking behind the explanations
 *   prob    what the AUC is computed from and, for a multi-label task,
 *           thresholded at 0.5: the two-prompt softmax against "No
 *           finding." for the VLM methods (Sec. 2.3.2), the sigmoid or
 *           softmax of the linear probe, MONET's presence score
 * Class scores are the max over the class's combinations (Sec. 2.2),
 * except for zero-shot with prompts=class, which asks the class prompts. */

/* Read-only data every job shares. */
typedef struct {
    const sc_experiment *ex;
    const sc_cache *c;
    const sc_model *model;          /* CoOp's text tower, or NULL */
    const sc_cache *scored[SC_EXP_MAX_METHODS]; /* the cache each method scores with */
    char note[SC_EXP_MAX_METHODS][200];
    int n_tasks, K, n_classes;      /* tasks, combinations, classes of all tasks */
    const int *combo_offset;        /* (n_tasks + 1) task t owns combinations [offset[t], offset[t + 1]) */
    int *class_offset;              /* (n_tasks + 1) the same for classes */
    int *class_of;                  /* (K) the class column of each combination */
    int64_t N, E;
    int64_t n_pool, n_test;
    int64_t *pool, *test;           /* training images (the splits used), test images */
    uint8_t *class_labels;          /* (N, n_classes) a class is present when one of its combinations is */
    float *test_raw;                /* (n_test, E) as cached: adapters take these */
    float *prompts_raw;             /* (K, E) the canonical prompt of each combination */
    float *none_raw;                /* (E) "No finding." */
    int64_t *subset[SC_EXP_MAX_FRACTIONS][SC_EXP_MAX_SEEDS];
    int64_t subset_n[SC_EXP_MAX_FRACTIONS][SC_EXP_MAX_SEEDS];
    int64_t *name_ids[SC_EXP_MAX_METHODS]; /* (K, T) a CoOp method's class names, tokenized */
    int64_t *name_mask[SC_EXP_MAX_METHODS]; /* (K, T) their attention masks */
    int64_t init_ids[SC_EXP_MAX_METHODS][SC_EXP_MAX_INIT_WORDS];
    int n_init[SC_EXP_MAX_METHODS]; /* CoOp's init words (0: random context) */
    int tsne_method;                /* the SCALE method mapped in Fig. 4, or -1 */
    int tsne_task;                  /* the task of Fig. 4, or -1 */
    int64_t n_tsne;
    int64_t *tsne_rows;             /* (n_tsne) text rows mapped */
    int *tsne_concept;              /* (n_tsne) their colours */
} exp_shared;

/* Scores of one job: combinations (n_test, K) and classes (n_test,
 * n_classes). */
typedef struct {
    float *combo_logits, *combo_prob, *class_logits, *class_prob;
} exp_scores;

static void scores_free(exp_scores *s)
{
    free(s->combo_logits);   /* one block holds all four */
    memset(s, 0, sizeof *s);
}

static int scores_alloc(exp_scores *s, const exp_shared *sh)
{
    size_t combo = (size_t)(sh->n_test * sh->K), cls = (size_t)(sh->n_test * sh->n_classes);
    s->combo_logits = malloc(sizeof(float) * (2 * combo + 2 * cls + 1));
    if (!s->combo_logits) return 0;
    s->combo_prob = s->combo_logits + combo;
    s->class_logits = s->combo_prob + combo;
    s->class_prob = s->class_logits + cls;
    return 1;
}

/* rows (n) of x (*, E) into out (n, E), L2-normalised when asked. */
static void gather_rows(float *out, const float *x, const int64_t *rows, int64_t n, int64_t E, int normalise)
{
    for (int64_t i = 0; i < n; i++) memcpy(out + i * E, x + rows[i] * E, sizeof(float) * (size_t)E);
    if (normalise) sc_normalize_rows(out, out, n, E);
}

/* Class scores as the max over each class's combinations. */
static void class_from_combos(exp_scores *s, const exp_shared *sh)
{
    sc_group_max(s->class_logits, s->combo_logits, sh->n_test, sh->K, sh->class_of, sh->n_classes);
    sc_group_max(s->class_prob, s->combo_prob, sh->n_test, sh->K, sh->class_of, sh->n_classes);
}

/* The text rows of `kind` for every combination (or class) of every task,
 * variant v, as (count, E) normalised embeddings from cache c; 0 when one
 * is missing. */
static int prompt_matrix(float *out, const sc_cache *c, const exp_shared *sh, sc_text_kind kind, int v)
{
    int per_class = kind == SC_TEXT_CLASS;
    const int *offset = per_class ? sh->class_offset : sh->combo_offset;
    for (int t = 0; t < sh->n_tasks; t++)
        for (int k = offset[t]; k < offset[t + 1]; k++) {
            int64_t row = sc_cache_text_row(c, kind, t, k - offset[t], v);
            if (row < 0) return 0;
            memcpy(out + (int64_t)k * sh->E, c->text_emb + row * sh->E, sizeof(float) * (size_t)sh->E);
        }
    sc_normalize_rows(out, out, per_class ? sh->n_classes : sh->K, sh->E);
    return 1;
}

/* A normalised prompt per combination (or class): the canonical one, or
 * the ensemble of it and its variants (sc_prompt_ensemble). */
static sc_status prompts_for(float *out, const sc_cache *c, const exp_shared *sh, int classes, int ensemble,
                             sc_err *err)
{
    int count = classes ? sh->n_classes : sh->K, V = 1;
    sc_text_kind first = classes ? SC_TEXT_CLASS : SC_TEXT_PROMPT, extra = classes ? SC_TEXT_CLASS : SC_TEXT_ENSEMBLE;
    if (ensemble) {
        V = INT32_MAX;   /* as many variants as every task has */
        for (int t = 0; t < sh->n_tasks; t++) {
            const sc_hier_task *task = &c->hier.tasks[t];
            int n = classes ? task->n_class_templates : 1 + task->n_ensemble;
            V = n < V ? n : V;
        }
    }
    float *all = malloc(sizeof(float) * (size_t)((int64_t)V * count * sh->E) + 1);
    if (!all) return sc_fail(err, SC_ENOMEM, "out of memory for prompts");
    int ok = 1;
    for (int v = 0; ok && v < V; v++)
        ok = prompt_matrix(all + (int64_t)v * count * sh->E, c, sh, v == 0 ? first : extra, classes || v == 0 ? v : v - 1);
    if (ok) sc_prompt_ensemble(out, all, V, count, sh->E);
    free(all);
    return ok ? SC_OK : sc_fail(err, SC_EFORMAT, "%s: the cache lacks %s prompts", c->dir, classes ? "class" : "ensemble");
}

/* The scores of a VLM whose prompts (count, E) and image rows are
 * normalised: s · cos and the two-prompt scores against "No finding.". */
static sc_status vlm_scores(float *logits, float *prob, const sc_cache *c, const exp_shared *sh, const float *prompts,
                            int count, float scale, sc_err *err)
{
    float *x = malloc(sizeof(float) * (size_t)((sh->n_test + 1) * sh->E)), *none = x + sh->n_test * sh->E;
    int64_t row = sc_cache_text_row(c, SC_TEXT_NONE, -1, -1, 0);
    if (!x) return sc_fail(err, SC_ENOMEM, "out of memory for the test images");
    if (row < 0) return free(x), sc_fail(err, SC_EFORMAT, "%s: the cache has no \"No finding.\" text", c->dir);
    sc_normalize_rows(none, c->text_emb + row * sh->E, 1, sh->E);
    gather_rows(x, c->image_emb, sh->test, sh->n_test, sh->E, 1);
    sc_vlm_scores(logits, prob, x, sh->n_test, prompts, count, none, sh->E, scale);
    free(x);
    return SC_OK;
}

/* The model's multiplier as the cache recorded it (100, CLIP's, if not). */
static float cache_scale(const sc_cache *c)
{
    return isfinite(c->logit_scale) && c->logit_scale > 0 ? c->logit_scale : 100.0f;
}

static sc_status zero_shot(exp_scores *s, const exp_shared *sh, const sc_method *m, const sc_cache *c, sc_err *err)
{
    float *prompts = malloc(sizeof(float) * (size_t)((sh->K + sh->n_classes) * sh->E) + 1);
    if (!prompts) return sc_fail(err, SC_ENOMEM, "out of memory for prompts");
    sc_status st = prompts_for(prompts, c, sh, 0, m->ensemble, err);
    if (!st) st = vlm_scores(s->combo_logits, s->combo_prob, c, sh, prompts, sh->K, cache_scale(c), err);
    if (!st) class_from_combos(s, sh);
    if (!st && m->class_prompts) {
        /* the class level from class-level prompts instead */
        float *class_prompts = prompts + sh->K * sh->E;
        st = prompts_for(class_prompts, c, sh, 1, m->ensemble, err);
        if (!st)
            st = vlm_scores(s->class_logits, s->class_prob, c, sh, class_prompts, sh->n_classes, cache_scale(c), err);
    }
    free(prompts);
    return st;
}

/* MONET's presence score of every combination. The targets are the
 * combination's ensemble variants, which data/derm7p.hier writes with
 * MONET's own dermoscopy templates ("This is dermatoscopy of ..."); a
 * hierarchy without ensemble lines uses the canonical prompt. The
 * reference is the hierarchy's reference prompts ("This is dermatoscopy"). */
static sc_status concept_score(exp_scores *s, const exp_shared *sh, const sc_method *m, const sc_cache *c,
                               sc_err *err)
{
    int V = INT32_MAX, R = c->hier.n_references;
    for (int t = 0; t < sh->n_tasks; t++) V = c->hier.tasks[t].n_ensemble < V ? c->hier.tasks[t].n_ensemble : V;
    int ensembles = V > 0;
    if (!ensembles) V = 1;
    if (R < 1) return sc_fail(err, SC_EFORMAT, "%s: the hierarchy has no 'reference' prompts for concept scores",
                              c->dir);
    float *targets = malloc(sizeof(float) * (size_t)(((int64_t)V * sh->K + R) * sh->E + sh->n_test * sh->E) + 1);
    if (!targets) return sc_fail(err, SC_ENOMEM, "out of memory for concept scores");
    float *refs = targets + (int64_t)V * sh->K * sh->E, *x = refs + R * sh->E;
    int ok = 1;
    for (int v = 0; ok && v < V; v++)
        ok = prompt_matrix(targets + (int64_t)v * sh->K * sh->E, c, sh, ensembles ? SC_TEXT_ENSEMBLE : SC_TEXT_PROMPT, v);
    for (int r = 0; ok && r < R; r++) {
        int64_t row = sc_cache_text_row(c, SC_TEXT_REFERENCE, -1, r, 0);
        if ((ok = row >= 0)) sc_normalize_rows(refs + r * sh->E, c->text_emb + row * sh->E, 1, sh->E);
    }
    if (ok) {
        gather_rows(x, c->image_emb, sh->test, sh->n_test, sh->E, 1);
        sc_concept_presence(s->combo_prob, x, sh->n_test, targets, V, sh->K, refs, R, sh->E, m->temp);
        memcpy(s->combo_logits, s->combo_prob, sizeof(float) * (size_t)(sh->n_test * sh->K));
        class_from_combos(s, sh);
    }
    free(targets);
    return ok ? SC_OK : sc_fail(err, SC_EFORMAT, "%s: the cache lacks prompts for concept scores", c->dir);
}

static sc_status linear_probe(exp_scores *s, const exp_shared *sh, const sc_method *m, const int64_t *train,
                              int64_t n, uint64_t seed, sc_err *err)
{
    const sc_cache *c = sh->c;
    int64_t E = sh->E;
    int K = sh->K;
    float *x = malloc(sizeof(float) * (size_t)((n > sh->n_test ? n : sh->n_test) * E) + 1);
    uint8_t *y = malloc((size_t)(n * K) + 1);
    if (!x || !y) return free(x), free(y), sc_fail(err, SC_ENOMEM, "out of memory for the linear probe");
    gather_rows(x, c->image_emb, train, n, E, 1);              /* frozen, normalised features */
    for (int64_t i = 0; i < n; i++) memcpy(y + i * K, c->image_labels + train[i] * K, (size_t)K);
    sc_probe_config cfg = m->probe;
    cfg.seed = seed;
    sc_probe p;
    sc_status st = sc_probe_train(&p, x, y, n, E, K, sh->combo_offset, sh->n_tasks, &cfg, err);
    if (!st) {
        gather_rows(x, c->image_emb, sh->test, sh->n_test, E, 1);
        sc_probe_predict(&p, s->combo_logits, s->combo_prob, x, sh->n_test);
        class_from_combos(s, sh);
        sc_probe_free(&p);
    }
    free(x), free(y);
    return st;
}

static sc_status coop(exp_scores *s, const exp_shared *sh, int mi, const int64_t *train, int64_t n, uint64_t seed,
                      sc_err *err)
{
    const sc_method *m = &sh->ex->methods[mi];
    const sc_cache *c = sh->c;
    int64_t E = sh->E;
    int K = sh->K;
    /* targets: within each task, the image's labels as a distribution */
    float *targets = calloc((size_t)(n * K) + 1, sizeof(float)), *img = malloc(sizeof(float) * (size_t)(n * E) + 1);
    float *prompts = malloc(sizeof(float) * (size_t)(K * E) + 1);
    if (!targets || !img || !prompts) {
        free(targets), free(img), free(prompts);
        return sc_fail(err, SC_ENOMEM, "out of memory for CoOp");
    }
    gather_rows(img, c->image_emb, train, n, E, 0);
    for (int64_t i = 0; i < n; i++)
        for (int t = 0; t < sh->n_tasks; t++) {
            int k0 = sh->combo_offset[t], k1 = sh->combo_offset[t + 1], on = 0;
            for (int k = k0; k < k1; k++) on += c->image_labels[train[i] * K + k] != 0;
            for (int k = k0; on && k < k1; k++) targets[i * K + k] = (float)(c->image_labels[train[i] * K + k] != 0) / on;
        }
    sc_coop_config cfg = m->coop;
    cfg.seed = seed;
    sc_coop p;
    sc_status st = sc_coop_init(&p, sh->model, sh->name_ids[mi], sh->name_mask[mi], K, c->T,
                                sh->n_init[mi] ? sh->init_ids[mi] : NULL, sh->n_init[mi], &cfg, err);
    if (!st) {
        sc_coop_data d = {n, E, img, targets, sh->n_tasks, sh->combo_offset};
        sc_ctx ctx;
        sc_ctx_init(&ctx);
        while (p.epoch < cfg.epochs) sc_coop_train_epoch(&p, sh->model, &ctx, &d);
        sc_ctx_set_grad(&ctx, 0);
        sc_tensor *features = sc_coop_text_features(&ctx, &p, sh->model);   /* the learned prompts */
        sc_normalize_rows(prompts, features->data, K, E);
        sc_ctx_free(&ctx);
        sc_coop_free(&p);
        st = vlm_scores(s->combo_logits, s->combo_prob, c, sh, prompts, K, sc_model_logit_scale(sh->model), err);
    }
    if (!st) class_from_combos(s, sh);
    free(targets), free(img), free(prompts);
    return st;
}

/* ---- SCALE on all tasks at once ----
 * Derm7p has seven tasks (criteria); one adapter pair serves them all, as
 * one finetuned VLM would: a batch's images and texts pass the adapters
 * once, and the loss is the sum over tasks of Eq. 3 on each task's columns
 * (tasks=separate trains a pair per task instead). The texts paired with
 * the images are, per task, one of the dataset's sentences carrying the
 * image's combination, drawn anew each batch from all training images'
 * sentences ("we mixed non-corresponding image-text pairs of the same
 * class-concept-combination", Sec. 2.3.1), or its canonical prompt when
 * there is none (Derm7p: always). */
typedef struct {
    const exp_shared *sh;
    const int64_t *image;        /* (n) the training images */
    int64_t n;
    int t0, t1;                  /* the tasks trained together: [t0, t1) */
    int64_t *cand_offset;        /* (K + 1) sentences carrying combination k: */
    int64_t *cand;               /*   cand[cand_offset[k] .. cand_offset[k + 1]) (text rows) */
} scale_fit;

static void scale_fit_free(scale_fit *f)
{
    free(f->cand_offset), free(f->cand);
}

/* The sentences of the training images, listed per combination. */
static sc_status scale_fit_init(scale_fit *f, const exp_shared *sh, const int64_t *image, int64_t n, sc_err *err)
{
    const sc_cache *c = sh->c;
    memset(f, 0, sizeof *f);
    f->sh = sh, f->image = image, f->n = n;
    uint8_t *in_subset = calloc((size_t)c->N + 1, 1);
    f->cand_offset = calloc((size_t)sh->K + 2, sizeof(int64_t));
    if (!in_subset || !f->cand_offset) return free(in_subset), sc_fail(err, SC_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) in_subset[image[i]] = 1;
    for (int pass = 0; pass < 2; pass++) {    /* count, then fill */
        int64_t *fill = pass ? calloc((size_t)sh->K + 1, sizeof(int64_t)) : NULL;
        if (pass && (!fill || !(f->cand = malloc(sizeof(int64_t) * (size_t)(f->cand_offset[sh->K] + 1))))) {
            free(fill), free(in_subset);
            return sc_fail(err, SC_ENOMEM, "out of memory for the sentences");
        }
        for (int64_t j = 0; j < c->M; j++) {
            if (c->text_kind[j] != SC_TEXT_SENTENCE || !in_subset[c->text_image[j]]) continue;
            for (int k = 0; k < sh->K; k++)
                if (c->text_labels[j * sh->K + k]) {
                    if (pass) f->cand[f->cand_offset[k] + fill[k]++] = j;
                    else f->cand_offset[k + 1]++;
                }
        }
        for (int k = 0; !pass && k < sh->K; k++) f->cand_offset[k + 1] += f->cand_offset[k];
        free(fill);
    }
    free(in_subset);
    return SC_OK;
}

/* One task's part of a batch, built in the tape's arena. */
typedef struct {
    int64_t B, M;                /* images labelled in the task; text rows */
    int32_t *image_rows;         /* (B) rows of the batch's image matrix */
    int32_t *text_rows;          /* (M) rows of the batch's text matrix */
    sc_loss_problem problem;
} task_batch;

/* @book begin scale-multitask-loss */
static sc_tensor *scale_fit_loss(sc_ctx *ctx, sc_scale_model *m, const scale_fit *f, const int *index, int64_t B)
{
    const exp_shared *sh = f->sh;
    const sc_cache *c = sh->c;
    int64_t E = sh->E;
    int K = sh->K, k0 = sh->combo_offset[f->t0], Kg = sh->combo_offset[f->t1] - k0;
    int n_tasks = f->t1 - f->t0;
    /* texts: the group's Kg prompts, then at most one sentence per (image, task) */
    sc_tensor *images = sc_tensor_new(&ctx->act, 2, (int64_t[]){B, E}, "images");
    sc_tensor *texts = sc_tensor_new(&ctx->act, 2, (int64_t[]){Kg + B * n_tasks, E}, "texts");
    memcpy(texts->data, sh->prompts_raw + (int64_t)k0 * E, sizeof(float) * (size_t)(Kg * E));
    int64_t n_texts = Kg;
    task_batch *tb = sc__act_alloc(ctx, sizeof(task_batch) * (size_t)n_tasks);
    for (int g = 0; g < n_tasks; g++) {
        const sc_hier_task *task = &c->hier.tasks[f->t0 + g];
        int H = task->n_combos, off = sh->combo_offset[f->t0 + g];
        task_batch *b = &tb[g];
        b->image_rows = sc__act_alloc(ctx, sizeof(int32_t) * (size_t)B);
        b->text_rows = sc__act_alloc(ctx, sizeof(int32_t) * (size_t)(B + H));
        int *text_combo = sc__act_alloc(ctx, sizeof(int) * (size_t)(B + H));
        float *G = sc__act_alloc(ctx, sizeof(float) * (size_t)(B * H));
        float *GT = sc__act_alloc(ctx, sizeof(float) * (size_t)((B + H) * H));
        memset(GT, 0, sizeof(float) * (size_t)((B + H) * H));
        b->B = 0;
        for (int64_t r = 0; r < B; r++) {
            const uint8_t *y = c->image_labels + f->image[index[r]] * K + off;
            int n_on = 0;
            for (int h = 0; h < H; h++) n_on += y[h] != 0;
            if (!n_on) continue;                       /* not labelled in this task */
            int pick = (int)sc_rng_below(&m->rng, (uint32_t)n_on), h = 0;
            for (int seen = -1; h < H; h++)
                if (y[h] && ++seen == pick) break;     /* the combination the text is about */
            int64_t j = b->B++, n_cand = f->cand_offset[off + h + 1] - f->cand_offset[off + h];
            b->image_rows[j] = (int32_t)r;
            for (int q = 0; q < H; q++) G[j * H + q] = y[q] != 0;
            text_combo[j] = h;
            if (n_cand > 0) {
                int64_t row = f->cand[f->cand_offset[off + h] + sc_rng_below(&m->rng, (uint32_t)n_cand)];
                memcpy(texts->data + n_texts * E, c->text_emb + row * E, sizeof(float) * (size_t)E);
                for (int q = 0; q < H; q++) GT[j * H + q] = c->text_labels[row * K + off + q] != 0;
                b->text_rows[j] = (int32_t)n_texts++;
            } else {
                GT[j * H + h] = 1;
                b->text_rows[j] = off - k0 + h;
            }
        }
        /* then the task's canonical prompts, so that Z has every column */
        for (int h = 0; h < H; h++) {
            b->text_rows[b->B + h] = off - k0 + h;
            text_combo[b->B + h] = h;
            GT[(b->B + h) * H + h] = 1;
        }
        b->M = b->B + H;
        sc_loss_problem p = {b->B, b->M, H, task->n_classes, task->n_concepts, text_combo, G, GT, task->combo_class,
                             task->combo_concept};
        b->problem = p;
    }
    for (int64_t r = 0; r < B; r++)
        memcpy(images->data + r * E, c->image_emb + f->image[index[r]] * E, sizeof(float) * (size_t)E);
    texts = sc_slice(ctx, texts, 0, 0, n_texts);      /* the rows filled */
    sc_tensor *x = sc_l2_normalize(ctx, m->cfg.image_adapter ? sc_adapter_apply(ctx, &m->image, images) : images);
    sc_tensor *t = sc_l2_normalize(ctx, m->cfg.text_adapter ? sc_adapter_apply(ctx, &m->text, texts) : texts);
    sc_tensor *total = NULL;
    for (int g = 0; g < n_tasks; g++) {
        task_batch *b = &tb[g];
        if (b->B == 0) continue;
        sc_tensor *xg = b->B == B ? x : sc_embedding(ctx, x, b->image_rows, b->B);
        sc_tensor *Q = sc_matmul(ctx, xg, sc_embedding(ctx, t, b->text_rows, b->M), 0, 1);  /* (B_t, M_t) */
        sc_loss_config cfg = m->cfg.loss;
        cfg.multilabel = cfg.multilabel || c->hier.tasks[f->t0 + g].multilabel;
        sc_tensor *loss = sc_scale_loss_op(ctx, Q, &b->problem, &cfg, NULL);
        total = total ? sc_add(ctx, total, loss) : loss;
    }
    return total;
}
/* @book end scale-multitask-loss */

static void scale_fit_epoch(sc_scale_model *m, sc_ctx *ctx, const scale_fit *f, int *order)
{
    int64_t n = f->n, B = m->cfg.batch_size > 0 ? m->cfg.batch_size : sc_train_batch_size(n);
    if (B > n) B = n;
    for (int64_t i = 0; i < n; i++) order[i] = (int)i;
    sc_rng_shuffle(&m->rng, order, (int)n);
    for (int64_t start = 0; start < n; start += B) {
        sc_ctx_reset(ctx);
        sc_tensor *loss = scale_fit_loss(ctx, m, f, order + start, n - start < B ? n - start : B);
        if (!loss) continue;                           /* no image of the batch is labelled */
        sc_optim_zero_grad(&m->opt);
        sc_backward(ctx, loss);
        sc_optim_step(&m->opt);
        if (m->cfg.image_adapter) sc_adapter_project(&m->image);
        if (m->cfg.text_adapter) sc_adapter_project(&m->text);
    }
    sc_ctx_reset(ctx);
    m->epoch++;
}

/* Rows x (n, E) through the text adapter, normalised, into out. */
static void adapt_texts(float *out, const sc_scale_model *m, const float *x, int64_t n, int64_t E)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_ctx_set_grad(&ctx, 0);
    sc_tensor *in = sc_tensor_wrap(&ctx.act, (float *)x, 2, (int64_t[]){n, E}, "texts");
    sc_tensor *y = sc_l2_normalize(&ctx, m->cfg.text_adapter ? sc_adapter_apply(&ctx, &m->text, in) : in);
    memcpy(out, y->data, sizeof(float) * (size_t)(n * E));
    sc_ctx_free(&ctx);
}

/* Test scores of one trained group: Q through both adapters, Z = s Q, and
 * the two-prompt scores against "No finding." through the text adapter
 * (as `scale predict` does). */
static void scale_group_scores(exp_scores *s, const exp_shared *sh, const sc_scale_model *m, int t0, int t1)
{
    int64_t n = sh->n_test, E = sh->E;
    int K = sh->K, k0 = sh->combo_offset[t0], Kg = sh->combo_offset[t1] - k0;
    float *Q = malloc(sizeof(float) * (size_t)(n * (2 * Kg + 1)) + 1), *two = Q + n * Kg, *none = two + n * Kg;
    SC_ASSERT(Q != NULL, "no memory for %lld test scores", (long long)n);
    sc_scale_similarity(Q, m, sh->test_raw, n, sh->prompts_raw + (int64_t)k0 * E, Kg);
    sc_scale_similarity(none, m, sh->test_raw, n, sh->none_raw, 1);
    float scale = (float)m->cfg.loss.logit_scale;
    sc_two_prompt_scores(two, Q, none, n, Kg, scale);
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < Kg; k++) {
            s->combo_logits[i * K + k0 + k] = scale * Q[i * Kg + k];
            s->combo_prob[i * K + k0 + k] = two[i * Kg + k];
        }
    free(Q);
}

/* Fig. 4's texts through the adapters of the group holding the t-SNE task. */
static void scale_tsne_points(float *out, const exp_shared *sh, const sc_scale_model *m)
{
    int64_t E = sh->E;
    float *raw = malloc(sizeof(float) * (size_t)(sh->n_tsne * E) + 1);
    SC_ASSERT(raw != NULL, "no memory for %lld texts", (long long)sh->n_tsne);
    gather_rows(raw, sh->c->text_emb, sh->tsne_rows, sh->n_tsne, E, 0);
    adapt_texts(out, m, raw, sh->n_tsne, E);
    free(raw);
}

static sc_status scale_method(exp_scores *s, float *tsne_out, const exp_shared *sh, const sc_method *m,
                              const int64_t *train, int64_t n, uint64_t seed, sc_err *err)
{
    int groups = m->separate_tasks ? sh->n_tasks : 1;
    int *order = malloc(sizeof(int) * (size_t)(n + 1));
    if (!order) return sc_fail(err, SC_ENOMEM, "out of memory");
    sc_status st = SC_OK;
    for (int g = 0; !st && g < groups; g++) {
        scale_fit f;
        if ((st = scale_fit_init(&f, sh, train, n, err))) break;
        f.t0 = m->separate_tasks ? g : 0;
        f.t1 = m->separate_tasks ? g + 1 : sh->n_tasks;
        sc_train_config cfg = m->scale;
        cfg.seed = seed + (uint64_t)g;
        sc_scale_model model;
        if (!(st = sc_scale_model_init(&model, sh->E, &cfg, err))) {
            sc_ctx ctx;
            sc_ctx_init(&ctx);
            while (model.epoch < cfg.epochs) scale_fit_epoch(&model, &ctx, &f, order);
            sc_ctx_free(&ctx);
            scale_group_scores(s, sh, &model, f.t0, f.t1);
            if (tsne_out && sh->tsne_task >= f.t0 && sh->tsne_task < f.t1) scale_tsne_points(tsne_out, sh, &model);
            sc_scale_model_free(&model);
        }
        scale_fit_free(&f);
    }
    free(order);
    if (!st) class_from_combos(s, sh);
    return st;
}

/* ---- 7d. The sweep ---------------------------------------------------------
 * One job is one method on one training subset (or, for the methods that
 * train nothing, one evaluation). Jobs are independent, so they run in
 * parallel over the thread pool, the costliest first; inside a job all
 * work is serial (the pool runs nested parallel loops on the calling
 * thread). Each job writes only its own slot, so results.csv does not
 * depend on the number of threads or on which thread ran what. */

enum { LEVEL_CLASS, LEVEL_COMBO, N_LEVELS };
static const char *const level_names[N_LEVELS] = {"class", "class-concept"};
enum { N_METRICS = 4 };
static const char *const metric_names[N_METRICS] = {"accuracy", "macro_recall", "macro_f1", "auc"};
static const char *const metric_titles[N_METRICS] = {"Accuracy", "Macro recall", "Macro F1", "AUC"};

typedef struct {
    int method, fraction, seed;   /* fraction -1: a method that trains nothing, evaluated once */
    int64_t n_train;
    double cost;                  /* a guess at its run time, for the order */
    double metric[N_LEVELS][N_METRICS];
    double seconds;
    sc_status status;
    sc_err err;
    int keep;                     /* its scores feed explanations.csv */
    int map;                      /* it computes Fig. 4's SCALE map */
    exp_scores scores;            /* kept when keep */
    float *tsne;                  /* (n_tsne, E) when map */
} exp_job;

typedef struct {
    const exp_shared *sh;
    exp_job *jobs;
    int n_jobs;
    int *order;                   /* (n_jobs) execution order */
    pthread_mutex_t lock;         /* guards the progress display */
    sc_progress progress;
    int64_t done;
} exp_sweep;

/* A seed for (base, a, b): splitmix64 steps, so that nearby inputs give
 * unrelated streams. */
static uint64_t mix_seed(uint64_t base, uint64_t a, uint64_t b)
{
    uint64_t z = base;
    for (int k = 0; k < 3; k++) {
        z += 0x9E3779B97F4A7C15ull + (k == 0 ? 0 : k == 1 ? a : b);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
    }
    return z;
}

/* @book begin level-metrics */
/* The four metrics of one level: each task's, then their mean over the
 * tasks (the AUC over the tasks where it exists). Predictions are the
 * argmax of the logits within a single-label task and prob >= 0.5 within
 * a multi-label one. */
static void level_metrics(double out[N_METRICS], const exp_shared *sh, const exp_scores *s, int level)
{
    int is_class = level == LEVEL_CLASS, cols = is_class ? sh->n_classes : sh->K;
    const int *offset = is_class ? sh->class_offset : sh->combo_offset;
    const float *logits = is_class ? s->class_logits : s->combo_logits, *prob = is_class ? s->class_prob : s->combo_prob;
    const uint8_t *labels = is_class ? sh->class_labels : sh->c->image_labels;
    int64_t n = sh->n_test;
    float *lg = malloc(sizeof(float) * (size_t)(2 * n * cols) + 1), *pr = lg + n * cols;
    uint8_t *truth = malloc((size_t)(2 * n * cols) + 1), *pred = truth + n * cols;
    SC_ASSERT(lg && truth, "no memory for the metrics of %lld images", (long long)n);
    double sum[N_METRICS] = {0};
    int with_auc = 0;
    for (int t = 0; t < sh->n_tasks; t++) {
        int H = offset[t + 1] - offset[t];
        for (int64_t i = 0; i < n; i++)
            for (int h = 0; h < H; h++) {
                lg[i * H + h] = logits[i * cols + offset[t] + h];
                pr[i * H + h] = prob[i * cols + offset[t] + h];
                truth[i * H + h] = labels[sh->test[i] * cols + offset[t] + h] != 0;
            }
        if (sh->c->hier.tasks[t].multilabel) sc_predict_threshold(pred, pr, n, H, 0.5f);
        else sc_predict_argmax(pred, lg, n, H);
        sc_metrics m;
        sc_metrics_eval(&m, pr, truth, pred, n, H);
        sum[0] += m.accuracy, sum[1] += m.macro_recall, sum[2] += m.macro_f1;
        if (!isnan(m.auc)) sum[3] += m.auc, with_auc++;
    }
    for (int k = 0; k < 3; k++) out[k] = sum[k] / sh->n_tasks;
    out[3] = with_auc ? sum[3] / with_auc : NAN;
    free(lg), free(truth);
}
/* @book end level-metrics */

static sc_status job_scores(exp_job *j, const exp_shared *sh, sc_err *err)
{
    const sc_method *m = &sh->ex->methods[j->method];
    const int64_t *train = j->fraction >= 0 ? sh->subset[j->fraction][j->seed] : NULL;
    uint64_t seed = mix_seed(sh->ex->seed, (uint64_t)j->fraction + 1, (uint64_t)j->seed);
    if (!scores_alloc(&j->scores, sh)) return sc_fail(err, SC_ENOMEM, "out of memory for the scores");
    if (j->map && !(j->tsne = malloc(sizeof(float) * (size_t)(sh->n_tsne * sh->E) + 1)))
        return sc_fail(err, SC_ENOMEM, "out of memory for the map");
    switch (m->kind) {
    case SC_METHOD_ZERO_SHOT: return zero_shot(&j->scores, sh, m, sh->scored[j->method], err);
    case SC_METHOD_CONCEPT_SCORE: return concept_score(&j->scores, sh, m, sh->scored[j->method], err);
    case SC_METHOD_LINEAR_PROBE: return linear_probe(&j->scores, sh, m, train, j->n_train, seed, err);
    case SC_METHOD_COOP: return coop(&j->scores, sh, j->method, train, j->n_train, seed, err);
    case SC_METHOD_SCALE: return scale_method(&j->scores, j->tsne, sh, m, train, j->n_train, seed, err);
    }
    return sc_fail(err, SC_EARG, "unknown method kind");
}

static void run_job(void *arg, int64_t i)
{
    exp_sweep *sw = arg;
    exp_job *j = &sw->jobs[sw->order[i]];
    double start = now_seconds();
    j->status = job_scores(j, sw->sh, &j->err);
    for (int l = 0; !j->status && l < N_LEVELS; l++) level_metrics(j->metric[l], sw->sh, &j->scores, l);
    if (!j->keep || j->status) scores_free(&j->scores);
    j->seconds = now_seconds() - start;
    pthread_mutex_lock(&sw->lock);
    sc_progress_update(&sw->progress, ++sw->done);
    pthread_mutex_unlock(&sw->lock);
}

/* The jobs in report order: methods as configured, fractions, seeds (one
 * at fraction 1). */
static int list_jobs(exp_job *jobs, const exp_shared *sh)
{
    const sc_experiment *ex = sh->ex;
    static const double kind_cost[SC_N_METHOD_KINDS] = {0.01, 0.01, 1, 20, 10};
    int n = 0, last_fraction = ex->n_fractions - 1;
    for (int m = 0; m < ex->n_methods; m++) {
        sc_method_kind kind = ex->methods[m].kind;
        int trains = kind != SC_METHOD_ZERO_SHOT && kind != SC_METHOD_CONCEPT_SCORE;
        for (int f = trains ? 0 : -1; f < (trains ? ex->n_fractions : 0); f++) {
            int seeds = f < 0 || ex->fractions[f] >= 1 ? 1 : ex->n_seeds;
            for (int s = 0; s < seeds; s++) {
                exp_job *j = &jobs[n++];
                memset(j, 0, sizeof *j);
                j->method = m, j->fraction = f, j->seed = s;
                j->n_train = f < 0 ? 0 : sh->subset_n[f][s];
                j->cost = kind_cost[kind] * (double)(f < 0 ? 1 : j->n_train);
                j->keep = m == ex->explained && (f < 0 || f == last_fraction) && s == 0;
                j->map = kind == SC_METHOD_SCALE && m == sh->tsne_method && f == last_fraction && s == 0 &&
                         sh->n_tsne > 0;
            }
        }
    }
    return n;
}

typedef struct {
    double cost;
    int job;
} job_cost;

static int costlier_first(const void *a, const void *b)
{
    const job_cost *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
    return x->job - y->job;
}

/* Run every job; on failure, the first failed job's sentence. */
static sc_status run_sweep(exp_sweep *sw, FILE *progress, sc_err *err)
{
    sw->order = malloc(sizeof(int) * (size_t)(sw->n_jobs + 1));
    job_cost *by_cost = malloc(sizeof *by_cost * (size_t)(sw->n_jobs + 1));
    if (!sw->order || !by_cost) return free(by_cost), sc_fail(err, SC_ENOMEM, "out of memory");
    for (int i = 0; i < sw->n_jobs; i++) by_cost[i].cost = sw->jobs[i].cost, by_cost[i].job = i;
    qsort(by_cost, (size_t)sw->n_jobs, sizeof *by_cost, costlier_first);
    for (int i = 0; i < sw->n_jobs; i++) sw->order[i] = by_cost[i].job;
    free(by_cost);
    pthread_mutex_init(&sw->lock, NULL);
    sc_gemm_simd();   /* settle the kernel choice before threads ask */
    sc_progress_begin(&sw->progress, progress, "experiment jobs", sw->n_jobs);
    sc_parallel_for(sw->n_jobs, run_job, sw);
    sc_progress_end(&sw->progress);
    pthread_mutex_destroy(&sw->lock);
    for (int i = 0; i < sw->n_jobs; i++) {
        const exp_job *j = &sw->jobs[i];
        if (j->status) {
            const sc_experiment *ex = sw->sh->ex;
            return sc_fail(err, j->status, "method '%s' at fraction %g, subset %d: %s", ex->methods[j->method].name,
                           j->fraction < 0 ? 1.0 : ex->fractions[j->fraction], j->seed, j->err.msg);
        }
    }
    return SC_OK;
}

/* ---- 7e. Reports -----------------------------------------------------------
 * Every file goes into the run's temporary folder through the atomic
 * writers of io.c; the folder is renamed into place at the end (7f). */

/* Mean and standard deviation (numpy's default, ddof = 0) of one method's
 * metric at one fraction, over its subsets; n = how many. Methods that
 * train nothing have one value for every fraction. */
typedef struct {
    double mean, std;
    int n;
} exp_stat;

static exp_stat job_stat(const exp_sweep *sw, int method, int fraction, int level, int metric)
{
    double sum = 0, sq = 0;
    int n = 0;
    for (int i = 0; i < sw->n_jobs; i++) {
        const exp_job *j = &sw->jobs[i];
        if (j->method != method || (j->fraction >= 0 && j->fraction != fraction)) continue;
        double v = j->metric[level][metric];
        if (isnan(v)) continue;
        sum += v, sq += v * v, n++;
    }
    exp_stat s = {NAN, NAN, n};
    if (n) {
        s.mean = sum / n;
        double var = sq / n - s.mean * s.mean;
        s.std = var > 0 ? sqrt(var) : 0;
    }
    return s;
}

static int method_trains(const sc_method *m)
{
    return m->kind != SC_METHOD_ZERO_SHOT && m->kind != SC_METHOD_CONCEPT_SCORE;
}

static sc_status write_results(const exp_sweep *sw, const char *path, sc_err *err)
{
    const sc_experiment *ex = sw->sh->ex;
    sc_csv_writer w;
    sc_csv_writer_init(&w);
    static const char *const header[8] = {"method", "kind", "fraction", "seed", "n_train", "level", "metric", "value"};
    for (int k = 0; k < 8; k++) sc_csv_put(&w, header[k]);
    sc_csv_end_row(&w);
    for (int i = 0; i < sw->n_jobs; i++) {
        const exp_job *j = &sw->jobs[i];
        const sc_method *m = &ex->methods[j->method];
        for (int f = 0; f < ex->n_fractions; f++) {
            if (j->fraction >= 0 && j->fraction != f) continue;   /* a method that trains nothing: every fraction */
            for (int l = 0; l < N_LEVELS; l++) {
                if (!(ex->levels >> l & 1)) continue;
                for (int k = 0; k < N_METRICS; k++) {
                    sc_csv_put(&w, m->name);
                    sc_csv_put(&w, sc_method_kind_name(m->kind));
                    sc_csv_putf(&w, "%g", ex->fractions[f]);
                    sc_csv_putf(&w, "%d", j->seed);
                    sc_csv_putf(&w, "%lld", (long long)j->n_train);
                    sc_csv_put(&w, level_names[l]);
                    sc_csv_put(&w, metric_names[k]);
                    if (isnan(j->metric[l][k])) sc_csv_put(&w, "nan");
                    else sc_csv_putf(&w, "%.10f", j->metric[l][k]);
                    sc_csv_end_row(&w);
                }
            }
        }
    }
    sc_status st = sc_csv_writer_save(&w, path, err);
    sc_csv_writer_free(&w);
    return st;
}

/* "0.812 ± 0.013", "0.812" (one value), or "–". */
static void stat_cell(sc_text *t, exp_stat s)
{
    if (!s.n) sc_text_puts(t, "–");
    else if (s.n == 1) sc_text_printf(t, "%.3f", s.mean);
    else sc_text_printf(t, "%.3f ± %.3f", s.mean, s.std);
}

static void summary_tables(sc_text *t, const exp_sweep *sw, int level)
{
    const sc_experiment *ex = sw->sh->ex;
    const exp_shared *sh = sw->sh;
    sc_text_printf(t, "\n## %s level (each metric averaged over the %d task%s)\n",
                   level == LEVEL_CLASS ? "Class" : "Class-concept", sh->n_tasks, sh->n_tasks == 1 ? "" : "s");
    for (int k = 0; k < N_METRICS; k++) {
        sc_text_printf(t, "\n### %s\n\n| method |", metric_titles[k]);
        for (int f = 0; f < ex->n_fractions; f++) sc_text_printf(t, " %g |", ex->fractions[f]);
        sc_text_puts(t, "\n|---|");
        for (int f = 0; f < ex->n_fractions; f++) sc_text_puts(t, "---:|");
        sc_text_puts(t, "\n");
        for (int m = 0; m < ex->n_methods; m++) {
            sc_text_printf(t, "| %s |", ex->methods[m].name);
            for (int f = 0; f < ex->n_fractions; f++) {
                sc_text_puts(t, " ");
                stat_cell(t, job_stat(sw, m, f, level, k));
                sc_text_puts(t, " |");
            }
            sc_text_puts(t, "\n");
        }
    }
}

static void summary_text(sc_text *t, const exp_sweep *sw)
{
    const exp_shared *sh = sw->sh;
    const sc_experiment *ex = sh->ex;
    const sc_cache *c = sh->c;
    sc_text_printf(t, "# %s\n\n", ex->name ? ex->name : ex->path[0] ? ex->path : "scale experiment");
    sc_text_printf(t, "Embeddings: `%s` (%s model, %s dataset, %lld-d). Training pool: %lld images (%s); "
                   "test: %lld images. %d task%s, %d combinations, %d classes.\n\n",
                   c->dir, c->model_kind, c->dataset_kind, (long long)sh->E, (long long)sh->n_pool,
                   ex->train_valid ? "train and valid splits" : "train split", (long long)sh->n_test, sh->n_tasks,
                   sh->n_tasks == 1 ? "" : "s", sh->K, sh->n_classes);
    sc_text_printf(t, "Training subsets: fractions");
    for (int f = 0; f < ex->n_fractions; f++) sc_text_printf(t, " %g", ex->fractions[f]);
    sc_text_printf(t, "; %d nested stratified subset%s per fraction below 1 (one at 1), seed %llu. Cells: mean ± "
                   "standard deviation over the subsets.\n", ex->n_seeds, ex->n_seeds == 1 ? "" : "s",
                   (unsigned long long)ex->seed);
    int notes = 0;
    for (int m = 0; m < ex->n_methods; m++)
        if (sh->note[m][0]) sc_text_printf(t, "%s- %s: %s\n", notes++ ? "" : "\nNotes:\n\n", ex->methods[m].name,
                                           sh->note[m]);
    for (int l = 0; l < N_LEVELS; l++)
        if (ex->levels >> l & 1) summary_tables(t, sw, l);
}

/* Where the time went, for the progress stream: kept out of summary.md so
 * that the same seed and thread count give the same summary byte for byte
 * (run.json records the same figures). */
static void timing_text(FILE *out, const exp_sweep *sw, double seconds)
{
    const sc_experiment *ex = sw->sh->ex;
    fprintf(out, "scale experiment: time per method (seconds, summed over jobs):");
    for (int m = 0; m < ex->n_methods; m++) {
        double s = 0;
        for (int i = 0; i < sw->n_jobs; i++)
            if (sw->jobs[i].method == m) s += sw->jobs[i].seconds;
        fprintf(out, " %s %.1f%s", ex->methods[m].name, s, m + 1 < ex->n_methods ? "," : "");
    }
    fprintf(out, "; wall time %.1f s on %d thread%s.\n", seconds, sc_threads(), sc_threads() == 1 ? "" : "s");
}

/* Fig. 2: one panel per metric, the metric against the fraction, a line
 * per method (dashed where the method says so), error bars of one
 * standard deviation. */
static sc_status write_fig2(const exp_sweep *sw, int level, const char *path, sc_err *err)
{
    const exp_shared *sh = sw->sh;
    const sc_experiment *ex = sh->ex;
    int F = ex->n_fractions, n_series = 0;
    double *values = malloc(sizeof(double) * (size_t)(N_METRICS * ex->n_methods * 2 * F) + 1);
    sc_plot_series *series = malloc(sizeof *series * (size_t)(N_METRICS * ex->n_methods) + 1);
    if (!values || !series) return free(values), free(series), sc_fail(err, SC_ENOMEM, "out of memory");
    sc_line_chart panels[N_METRICS];
    for (int k = 0; k < N_METRICS; k++) {
        sc_line_chart *p = &panels[k];
        memset(p, 0, sizeof *p);
        p->title = metric_titles[k];
        p->x_label = "fraction of the training set";
        p->y_label = metric_titles[k];
        p->x_log = 1;
        p->x_ticks = ex->fractions;
        p->n_x_ticks = F;
        p->series = series + n_series;
        for (int m = 0; m < ex->n_methods; m++) {
            double *y = values + (size_t)n_series * 2 * F, *e = y + F;
            for (int f = 0; f < F; f++) {
                exp_stat s = job_stat(sw, m, f, level, k);
                y[f] = s.mean;
                e[f] = s.std;
            }
            sc_plot_series ps = {ex->methods[m].name, ex->fractions, y, method_trains(&ex->methods[m]) ? e : NULL, F, m,
                                 ex->methods[m].dashed};
            series[n_series++] = ps;
            p->n_series++;
        }
    }
    char title[160];
    snprintf(title, sizeof title, "%s level (mean over %d task%s)", level == LEVEL_CLASS ? "Class" : "Class-concept",
             sh->n_tasks, sh->n_tasks == 1 ? "" : "s");
    sc_status st = sc_svg_line_panels(path, title, panels, N_METRICS, 2, err);
    free(values), free(series);
    return st;
}

/* softmax of the task's combination logits of test image i into p (H). */
static void task_softmax(double *p, const float *logits, int K, int64_t i, int off, int H)
{
    double mx = logits[i * K + off], sum = 0;
    for (int h = 1; h < H; h++) mx = logits[i * K + off + h] > mx ? logits[i * K + off + h] : mx;
    for (int h = 0; h < H; h++) sum += p[h] = exp(logits[i * K + off + h] - mx);
    for (int h = 0; h < H; h++) p[h] /= sum;
}

/* explanations.csv: per test image and task, the truth, the prediction
 * and the three combinations the method ranks highest. */
static sc_status write_explanations(const exp_sweep *sw, const exp_job *j, const char *path, sc_err *err)
{
    const exp_shared *sh = sw->sh;
    const sc_cache *c = sh->c;
    const exp_scores *s = &j->scores;
    int K = sh->K;
    sc_csv_writer w;
    sc_csv_writer_init(&w);
    static const char *const header[11] = {"image", "task", "truth", "prediction", "correct", "top1", "score1",
                                           "top2", "score2", "top3", "score3"};
    for (int k = 0; k < 11; k++) sc_csv_put(&w, header[k]);
    sc_csv_end_row(&w);
    double p[SC_HIER_MAX_COMBOS];
    for (int64_t i = 0; i < sh->n_test; i++)
        for (int t = 0; t < sh->n_tasks; t++) {
            const sc_hier_task *task = &c->hier.tasks[t];
            int off = sh->combo_offset[t], H = task->n_combos, best = 0;
            const uint8_t *y = c->image_labels + sh->test[i] * K + off;
            task_softmax(p, s->combo_logits, K, i, off, H);
            for (int h = 1; h < H; h++) best = p[h] > p[best] ? h : best;
            sc_text truth, pred;
            sc_text_init(&truth), sc_text_init(&pred);
            int correct = 1;
            for (int h = 0; h < H; h++) {
                int predicted = task->multilabel ? s->combo_prob[i * K + off + h] >= 0.5f : h == best;
                char name[SC_HIER_MAX_LINE];
                sc_hier_explain(task, h, name, sizeof name);
                if (y[h]) sc_text_printf(&truth, "%s%s", truth.len ? "; " : "", name);
                if (predicted) sc_text_printf(&pred, "%s%s", pred.len ? "; " : "", name);
                correct &= predicted == (y[h] != 0);
            }
            sc_csv_put(&w, c->image_id[sh->test[i]]);
            sc_csv_put(&w, task->name);
            sc_csv_put(&w, truth.data ? truth.data : "");
            sc_csv_put(&w, pred.data ? pred.data : "");
            sc_csv_putf(&w, "%d", correct);
            uint8_t used[SC_HIER_MAX_COMBOS] = {0};
            for (int r = 0; r < 3; r++) {
                int top = -1;
                for (int h = 0; h < H; h++)
                    if (!used[h] && (top < 0 || p[h] > p[top])) top = h;
                char name[SC_HIER_MAX_LINE] = "";
                if (top >= 0) used[top] = 1, sc_hier_explain(task, top, name, sizeof name);
                sc_csv_put(&w, name);
                if (top >= 0) sc_csv_putf(&w, "%.4f", p[top]);
                else sc_csv_put(&w, "");
            }
            sc_csv_end_row(&w);
            sc_text_free(&truth), sc_text_free(&pred);
        }
    sc_status st = sc_csv_writer_save(&w, path, err);
    sc_csv_writer_free(&w);
    return st;
}

/* Fig. 4: t-SNE maps of the same texts before (the frozen encoder) and
 * after SCALE's text adapter, coloured by concept. */
static sc_status write_fig4(const exp_sweep *sw, const exp_job *j, const char *path, sc_err *err)
{
    const exp_shared *sh = sw->sh;
    const sc_hier_task *task = &sh->c->hier.tasks[sh->tsne_task];
    int64_t n = sh->n_tsne, E = sh->E;
    float *raw = malloc(sizeof(float) * (size_t)(n * E) + 1);
    double *Y = malloc(sizeof(double) * (size_t)(4 * n) + 1);
    if (!raw || !Y) return free(raw), free(Y), sc_fail(err, SC_ENOMEM, "out of memory for the t-SNE maps");
    gather_rows(raw, sh->c->text_emb, sh->tsne_rows, n, E, 1);
    sc_tsne_config cfg = sc_tsne_defaults();   /* perplexity 30, lowered for few points */
    cfg.seed = sh->ex->seed;
    sc_status st = sc_tsne(Y, raw, n, E, &cfg, NULL, err);
    if (!st) st = sc_tsne(Y + 2 * n, j->tsne, n, E, &cfg, NULL, err);
    const char *names[SC_HIER_MAX_CONCEPTS];
    for (int l = 0; l < task->n_concepts; l++) names[l] = task->concepts[l].name;
    char title[3][160];
    snprintf(title[0], sizeof title[0], "Text embeddings of '%s', coloured by concept (t-SNE)", task->name);
    snprintf(title[1], sizeof title[1], "zero-shot (frozen encoder)");
    snprintf(title[2], sizeof title[2], "%s", sh->ex->methods[j->method].name);
    sc_scatter_panel panels[2] = {{title[1], Y, sh->tsne_concept, n}, {title[2], Y + 2 * n, sh->tsne_concept, n}};
    if (!st) st = sc_svg_scatter(path, title[0], panels, 2, names, task->n_concepts, err);
    free(raw), free(Y);
    return st;
}

/* A JSON value copied into a writer (the cache's fingerprint into run.json). */
static void json_copy(sc_json_writer *w, const sc_json *v)
{
    switch (v->type) {
    case SC_JSON_NULL: sc_json_put_null(w); break;
    case SC_JSON_BOOL: sc_json_put_bool(w, v->boolean); break;
    case SC_JSON_NUMBER: sc_json_put_number(w, v->number); break;
    case SC_JSON_STRING: sc_json_put_string(w, v->str); break;
    case SC_JSON_ARRAY:
    case SC_JSON_OBJECT:
        if (v->type == SC_JSON_ARRAY) sc_json_begin_array(w);
        else sc_json_begin_object(w);
        for (size_t i = 0; i < v->len; i++) {
            if (v->type == SC_JSON_OBJECT) sc_json_put_key(w, v->keys[i]);
            json_copy(w, v->items[i]);
        }
        if (v->type == SC_JSON_ARRAY) sc_json_end_array(w);
        else sc_json_end_object(w);
        break;
    }
}

/* run.json: what is needed to run it again and what it took. */
static sc_status write_run_json(const exp_sweep *sw, const sc_run_options *opt, double seconds, const char *path,
                                sc_err *err)
{
    const exp_shared *sh = sw->sh;
    const sc_experiment *ex = sh->ex;
    sc_json_writer w;
    sc_json_writer_init(&w, 2);
    sc_json_begin_object(&w);
    sc_json_put_key(&w, "format"), sc_json_put_string(&w, "scale-experiment-run");
    sc_json_put_key(&w, "scale_version"), sc_json_put_string(&w, sc_version());
    sc_json_put_key(&w, "command"), sc_json_put_string(&w, opt && opt->command_line ? opt->command_line : "");
    sc_json_put_key(&w, "config"), sc_json_put_string(&w, ex->path);
    sc_json_put_key(&w, "threads"), sc_json_put_int(&w, sc_threads());
    sc_json_put_key(&w, "gemm_kernel"), sc_json_put_string(&w, sc_gemm_kernel_name());
    sc_json_put_key(&w, "seed"), sc_json_put_int(&w, (int64_t)ex->seed);
    sc_json_put_key(&w, "model"), ex->model ? sc_json_put_string(&w, ex->model) : sc_json_put_null(&w);
    sc_json_put_key(&w, "cache"), sc_json_put_string(&w, sh->c->dir);
    sc_json_put_key(&w, "seconds"), sc_json_put_number(&w, seconds);
    sc_json_put_key(&w, "methods"), sc_json_begin_array(&w);
    for (int m = 0; m < ex->n_methods; m++) {
        double s = 0;
        int n = 0;
        for (int i = 0; i < sw->n_jobs; i++)
            if (sw->jobs[i].method == m) s += sw->jobs[i].seconds, n++;
        sc_json_begin_object(&w);
        sc_json_put_key(&w, "name"), sc_json_put_string(&w, ex->methods[m].name);
        sc_json_put_key(&w, "kind"), sc_json_put_string(&w, sc_method_kind_name(ex->methods[m].kind));
        sc_json_put_key(&w, "cache"), sc_json_put_string(&w, sh->scored[m] ? sh->scored[m]->dir : sh->c->dir);
        sc_json_put_key(&w, "jobs"), sc_json_put_int(&w, n);
        sc_json_put_key(&w, "seconds"), sc_json_put_number(&w, s);
        if (sh->note[m][0]) sc_json_put_key(&w, "note"), sc_json_put_string(&w, sh->note[m]);
        sc_json_end_object(&w);
    }
    sc_json_end_array(&w);
    /* the model files' hashes, preprocessing and dataset as embedded */
    const sc_json *fp = sh->c->index.root ? sc_json_get(sh->c->index.root, "fingerprint") : NULL;
    sc_json_put_key(&w, "cache_fingerprint");
    if (fp) json_copy(&w, fp);
    else sc_json_put_null(&w);
    sc_json_end_object(&w);
    sc_status st = sc_json_writer_save(&w, path, err);
    sc_json_writer_free(&w);
    return st;
}

/* ---- 7f. Running an experiment -------------------------------------------- */

/* Another method's cache must hold the same images in the same order with
 * the same labels (the same dataset embedded by another model). */
static sc_status caches_match(const sc_cache *a, const sc_cache *b, sc_err *err)
{
    if (a->N != b->N || a->n_labels != b->n_labels || a->hier.n_tasks != b->hier.n_tasks)
        return sc_fail(err, SC_EFORMAT, "%s: %lld images and %d combinations, but %s has %lld and %d", b->dir,
                       (long long)b->N, b->n_labels, a->dir, (long long)a->N, a->n_labels);
    for (int64_t i = 0; i < a->N; i++)
        if (strcmp(a->image_id[i], b->image_id[i]) || a->split[i] != b->split[i] ||
            memcmp(a->image_labels + i * a->n_labels, b->image_labels + i * a->n_labels, (size_t)a->n_labels))
            return sc_fail(err, SC_EFORMAT, "%s: image %lld ('%s') differs from %s's ('%s') in name, split or labels",
                           b->dir, (long long)i, b->image_id[i], a->dir, a->image_id[i]);
    return SC_OK;
}

static void shared_free(exp_shared *sh)
{
    free(sh->class_offset), free(sh->class_of), free(sh->pool), free(sh->test), free(sh->class_labels);
    free(sh->test_raw), free(sh->prompts_raw), free(sh->tsne_rows), free(sh->tsne_concept);
    for (int m = 0; m < SC_EXP_MAX_METHODS; m++) free(sh->name_ids[m]), free(sh->name_mask[m]);
    for (int f = 0; f < SC_EXP_MAX_FRACTIONS; f++)
        for (int s = 0; s < SC_EXP_MAX_SEEDS; s++) free(sh->subset[f][s]);
    memset(sh, 0, sizeof *sh);
}

/* Classes of all tasks side by side, and who is labelled with them. */
static sc_status shared_classes(exp_shared *sh, sc_err *err)
{
    const sc_cache *c = sh->c;
    sh->class_offset = malloc(sizeof(int) * (size_t)(sh->n_tasks + 1));
    sh->class_of = malloc(sizeof(int) * (size_t)(sh->K + 1));
    if (!sh->class_offset || !sh->class_of) return sc_fail(err, SC_ENOMEM, "out of memory");
    sh->class_offset[0] = 0;
    for (int t = 0; t < sh->n_tasks; t++) {
        const sc_hier_task *task = &c->hier.tasks[t];
        sh->class_offset[t + 1] = sh->class_offset[t] + task->n_classes;
        for (int h = 0; h < task->n_combos; h++)
            sh->class_of[sh->combo_offset[t] + h] = sh->class_offset[t] + task->combo_class[h];
    }
    sh->n_classes = sh->class_offset[sh->n_tasks];
    if (!(sh->class_labels = calloc((size_t)(sh->N * sh->n_classes) + 1, 1)))
        return sc_fail(err, SC_ENOMEM, "out of memory");
    for (int64_t i = 0; i < sh->N; i++)
        for (int k = 0; k < sh->K; k++)
            if (c->image_labels[i * sh->K + k]) sh->class_labels[i * sh->n_classes + sh->class_of[k]] = 1;
    return SC_OK;
}

/* The training pool, the test images and the nested subsets. */
static sc_status shared_splits(exp_shared *sh, sc_err *err)
{
    const sc_cache *c = sh->c;
    const sc_experiment *ex = sh->ex;
    sh->pool = malloc(sizeof(int64_t) * (size_t)(sh->N + 1));
    sh->test = malloc(sizeof(int64_t) * (size_t)(sh->N + 1));
    if (!sh->pool || !sh->test) return sc_fail(err, SC_ENOMEM, "out of memory");
    for (int64_t i = 0; i < sh->N; i++) {
        if (c->split[i] == SC_SPLIT_TEST) sh->test[sh->n_test++] = i;
        else if (c->split[i] == SC_SPLIT_TRAIN || (ex->train_valid && c->split[i] == SC_SPLIT_VALID))
            sh->pool[sh->n_pool++] = i;
    }
    if (!sh->n_pool || !sh->n_test)
        return sc_fail(err, SC_EARG, "%s: %lld training and %lld test images; the experiment needs both", c->dir,
                       (long long)sh->n_pool, (long long)sh->n_test);
    for (int f = 0; f < ex->n_fractions; f++)
        for (int s = 0; s < (ex->fractions[f] >= 1 ? 1 : ex->n_seeds); s++) {
            if (!(sh->subset[f][s] = malloc(sizeof(int64_t) * (size_t)sh->n_pool)))
                return sc_fail(err, SC_ENOMEM, "out of memory");
            sc_status st = sc_nested_subset(sh->subset[f][s], &sh->subset_n[f][s], sh->pool, sh->n_pool,
                                            c->image_labels, sh->K, ex->fractions[f], mix_seed(ex->seed, 0, (uint64_t)s),
                                            err);
            if (st) return st;
            if (sh->subset_n[f][s] < 2)
                return sc_fail(err, SC_EARG, "%s: fraction %g of %lld training images leaves %lld; use larger fractions",
                               ex->path, ex->fractions[f], (long long)sh->n_pool, (long long)sh->subset_n[f][s]);
        }
    return SC_OK;
}

/* Embeddings every method needs: test images, canonical prompts, "No
 * finding.". */
static sc_status shared_texts(exp_shared *sh, sc_err *err)
{
    const sc_cache *c = sh->c;
    int64_t E = sh->E;
    sh->test_raw = malloc(sizeof(float) * (size_t)(sh->n_test * E));
    sh->prompts_raw = malloc(sizeof(float) * (size_t)((sh->K + 1) * E));
    if (!sh->test_raw || !sh->prompts_raw) return sc_fail(err, SC_ENOMEM, "out of memory");
    gather_rows(sh->test_raw, c->image_emb, sh->test, sh->n_test, E, 0);
    for (int t = 0; t < sh->n_tasks; t++)
        for (int h = 0; h < c->hier.tasks[t].n_combos; h++) {
            int64_t row = sc_cache_text_row(c, SC_TEXT_PROMPT, t, h, 0);
            if (row < 0) return sc_fail(err, SC_EFORMAT, "%s: no prompt for combination %d of task '%s'", c->dir, h,
                                        c->hier.tasks[t].name);
            memcpy(sh->prompts_raw + (sh->combo_offset[t] + h) * E, c->text_emb + row * E, sizeof(float) * (size_t)E);
        }
    int64_t none = sc_cache_text_row(c, SC_TEXT_NONE, -1, -1, 0);
    if (none < 0) return sc_fail(err, SC_EFORMAT, "%s: no \"No finding.\" text", c->dir);
    sh->none_raw = sh->prompts_raw + sh->K * E;
    memcpy(sh->none_raw, c->text_emb + none * E, sizeof(float) * (size_t)E);
    return SC_OK;
}

/* The token ids CoOp takes from the model's tokenizer: the init words
 * (without the start and end tokens) and the period CoOp writes after a
 * class name. *period = −1 when the run has no tokenizer (a model given
 * in memory) and no init words need one; the note then says so. */
static sc_status coop_tokens(exp_shared *sh, int m, int64_t *period, sc_err *err)
{
    const sc_cache *c = sh->c;
    const sc_method *method = &sh->ex->methods[m];
    sc_tok_options o = sc_tok_defaults();
    o.max_length = (int)c->T;
    *period = -1;
    sc_tokenizer *tok = NULL;
    sc_err tok_err;
    sc_status st = sh->ex->model ? sc_tokenizer_load(&tok, sh->ex->model, &o, &tok_err)
                                 : sc_fail(&tok_err, SC_EARG, "the config names no model folder");
    if (st) {
        if (method->coop_init) return *err = tok_err, st;
        snprintf(sh->note[m], sizeof sh->note[m], "class names without CoOp's period (%.140s)", tok_err.msg);
        return SC_OK;
    }
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)c->T);
    int n = 0;
    st = ids ? sc_tokenizer_encode(tok, ".", 1, ids, NULL, &n, NULL, err) : sc_fail(err, SC_ENOMEM, "out of memory");
    if (!st && n == 3) *period = ids[1];
    if (!st && method->coop_init)
        st = sc_tokenizer_encode(tok, method->coop_init, strlen(method->coop_init), ids, NULL, &n, NULL, err);
    if (!st && method->coop_init && (n < 3 || n - 2 > SC_EXP_MAX_INIT_WORDS))
        st = sc_fail(err, SC_EARG, "%s:%d: init \"%s\" is %d tokens; CoOp's context takes 1 to %d", sh->ex->path,
                     method->line, method->coop_init, n - 2, SC_EXP_MAX_INIT_WORDS);
    if (!st && method->coop_init) {
        sh->n_init[m] = n - 2;
        memcpy(sh->init_ids[m], ids + 1, sizeof(int64_t) * (size_t)(n - 2));
    }
    sc_tokenizer_free(tok);
    free(ids);
    return st;
}

/* The padding id of the cache's tokenizer: the id of any masked-out cell
 * (one tokenizer wrote every row), or 0 if no row has padding. */
static int64_t cache_pad_id(const sc_cache *c)
{
    for (int64_t i = 0; i < c->M * c->T; i++)
        if (!c->text_mask[i]) return c->text_ids[i];
    return 0;
}

/* @book begin coop-name-row */
/* One CoOp name row of T columns from a cached row whose end token sits
 * at `end`: the start token, the name's tokens, CoOp's period (when
 * period >= 0), the end token, then padding, with its attention mask. The
 * name's tokens are cut so that the end token lands at position `room` at
 * the latest. Returns 1 when the name was cut. */
static int coop_name_row(int64_t *ids, int64_t *mask, const int64_t *cached, int64_t end, int64_t T, int64_t period,
                         int64_t pad, int64_t room)
{
    int64_t words = end - 1, extra = period >= 0, keep = words + extra + 1 <= room ? words : room - 1 - extra;
    int64_t n = 0;
    ids[n++] = cached[0];
    for (int64_t i = 0; i < keep; i++) ids[n++] = cached[1 + i];
    if (period >= 0) ids[n++] = period;
    ids[n++] = cached[end];
    for (int64_t t = 0; t < T; t++) mask[t] = t < n;
    for (; n < T; n++) ids[n] = pad;
    return keep < words;
}
/* @book end coop-name-row */

/* CoOp's class names: the cache's tokenized names with CoOp's period
 * before the end token, each cut where it would not fit the text tower's
 * positions after the start token and the context, with a note saying how
 * many were cut. Both text towers run on the tape, so CoOp runs on CLIP
 * and MedCLIP caches alike. */
static sc_status shared_coop(exp_shared *sh, int m, sc_err *err)
{
    const sc_cache *c = sh->c;
    const sc_method *method = &sh->ex->methods[m];
    if (!sh->model)
        return sc_fail(err, SC_EARG, "%s:%d: method '%s' (coop) needs the model: it trains through its text tower",
                       sh->ex->path, method->line, method->name);
    int64_t period;
    sc_status st = coop_tokens(sh, m, &period, err);
    if (st) return st;
    const sc_model_config *mc = sc_model_get_config(sh->model);
    /* the tower's positions, or fewer: the tokenizer's max_length (T) */
    int64_t T = c->T, positions = mc->kind == SC_MODEL_CLIP ? mc->text.context : mc->bert.max_positions;
    if (positions > T) positions = T;
    int n_ctx = sh->n_init[m] ? sh->n_init[m] : method->coop.n_ctx;
    int64_t room = positions - 1 - n_ctx;   /* the latest end-token position */
    if (room < 2 + (period >= 0))
        return sc_fail(err, SC_EARG, "%s:%d: %d context vectors leave no room for a name in the text tower's %lld "
                       "positions", sh->ex->path, method->line, n_ctx, (long long)positions);
    int64_t *names = sh->name_ids[m] = malloc(sizeof(int64_t) * (size_t)(sh->K * T));
    int64_t *masks = sh->name_mask[m] = malloc(sizeof(int64_t) * (size_t)(sh->K * T));
    if (!names || !masks) return sc_fail(err, SC_ENOMEM, "out of memory");
    int64_t pad = cache_pad_id(c);
    int cut = 0;
    for (int t = 0; t < sh->n_tasks; t++)
        for (int h = 0; h < c->hier.tasks[t].n_combos; h++) {
            int64_t src = sc_cache_text_row(c, SC_TEXT_NAME, t, h, 0), k = sh->combo_offset[t] + h;
            if (src < 0) return sc_fail(err, SC_EFORMAT, "%s: no name text for combination %d of task '%s'", c->dir, h,
                                        c->hier.tasks[t].name);
            const int64_t *ids = c->text_ids + src * T, *mask = c->text_mask + src * T;
            int64_t end = sc_coop_name_end(sh->model, ids, mask, T);
            if (end < 1)
                return sc_fail(err, SC_EFORMAT, "%s: the name of combination %d of task '%s' has no end token", c->dir,
                               h, c->hier.tasks[t].name);
            cut += coop_name_row(names + k * T, masks + k * T, ids, end, T, period, pad, room);
        }
    size_t used = strlen(sh->note[m]);
    if (cut)
        snprintf(sh->note[m] + used, sizeof sh->note[m] - used, "%s%d of %d class names were cut to %lld tokens to "
                 "fit the text tower's %lld positions", used ? "; " : "", cut, sh->K,
                 (long long)(room - 1 - (period >= 0)), (long long)positions);
    return SC_OK;
}

/* Fig. 4's texts: up to tsne_points of the dataset's sentences about the
 * chosen task (and class), or, for a dataset without sentences (Derm7p),
 * every prompt, ensemble variant and name of the task; each coloured by
 * the concept of its (first) combination in the task. */
static sc_status shared_tsne(exp_shared *sh, sc_err *err)
{
    const sc_cache *c = sh->c;
    const sc_experiment *ex = sh->ex;
    sh->tsne_task = -1;
    sh->tsne_method = -1;
    for (int m = 0; m < ex->n_methods; m++)
        if (ex->methods[m].kind == SC_METHOD_SCALE && (sh->tsne_method < 0 || m == ex->explained)) sh->tsne_method = m;
    if (sh->tsne_method < 0) return SC_OK;
    int t = 0;
    if (ex->tsne_task) {
        const sc_hier_task *task = sc_hier_task_find(&c->hier, ex->tsne_task);
        if (!task) return sc_fail(err, SC_EARG, "%s: tsne-task '%s' is not a task of the hierarchy", ex->path,
                                  ex->tsne_task);
        t = (int)(task - c->hier.tasks);
    } else {
        for (int k = 1; k < sh->n_tasks; k++)
            if (c->hier.tasks[k].n_concepts > c->hier.tasks[t].n_concepts) t = k;
    }
    const sc_hier_task *task = &c->hier.tasks[t];
    int cls = -1, off = sh->combo_offset[t];
    if (ex->tsne_class && (cls = sc_hier_class_of(task, ex->tsne_class)) < 0)
        return sc_fail(err, SC_EARG, "%s: tsne-class '%s' is not a class of task '%s'", ex->path, ex->tsne_class,
                       task->name);
    int64_t n_sentences = 0;
    for (int64_t j = 0; j < c->M; j++) n_sentences += c->text_kind[j] == SC_TEXT_SENTENCE;
    sh->tsne_rows = malloc(sizeof(int64_t) * (size_t)(c->M + 1));
    sh->tsne_concept = malloc(sizeof(int) * (size_t)(c->M + 1));
    int *order = malloc(sizeof(int) * (size_t)(c->M + 1));
    if (!sh->tsne_rows || !sh->tsne_concept || !order) return free(order), sc_fail(err, SC_ENOMEM, "out of memory");
    int64_t n = 0;
    for (int64_t j = 0; j < c->M; j++) {
        int kind = c->text_kind[j], h = -1;
        if (n_sentences ? kind != SC_TEXT_SENTENCE
                        : !((kind == SC_TEXT_PROMPT || kind == SC_TEXT_ENSEMBLE || kind == SC_TEXT_NAME) && c->text_task[j] == t))
            continue;
        for (int q = 0; q < task->n_combos && h < 0; q++)
            if (c->text_labels[j * sh->K + off + q] && (cls < 0 || task->combo_class[q] == cls)) h = q;
        if (h < 0) continue;
        sh->tsne_rows[n] = j;
        sh->tsne_concept[n++] = task->combo_concept[h];
    }
    /* a seeded sample of tsne_points, kept in text order */
    if (n > ex->tsne_points) {
        for (int64_t i = 0; i < n; i++) order[i] = (int)i;
        sc_rng rng;
        sc_rng_seed(&rng, mix_seed(ex->seed, 4, 0));
        sc_rng_shuffle(&rng, order, (int)n);
        uint8_t *keep = calloc((size_t)n, 1);
        if (!keep) return free(order), sc_fail(err, SC_ENOMEM, "out of memory");
        for (int i = 0; i < ex->tsne_points; i++) keep[order[i]] = 1;
        int64_t k = 0;
        for (int64_t i = 0; i < n; i++)
            if (keep[i]) sh->tsne_rows[k] = sh->tsne_rows[i], sh->tsne_concept[k++] = sh->tsne_concept[i];
        n = k;
        free(keep);
    }
    free(order);
    sh->tsne_task = t;
    sh->n_tsne = n >= 4 ? n : 0;   /* t-SNE needs a few points to say anything */
    return SC_OK;
}

static sc_status shared_init(exp_shared *sh, const sc_experiment *ex, const sc_cache *c, const sc_model *model,
                             const sc_cache *const *method_caches, sc_err *err)
{
    memset(sh, 0, sizeof *sh);
    sh->ex = ex, sh->c = c, sh->model = model;
    sh->N = c->N, sh->E = c->E, sh->K = c->n_labels, sh->n_tasks = c->hier.n_tasks;
    sh->combo_offset = c->label_offset;
    sc_status st = shared_classes(sh, err);
    if (!st) st = shared_splits(sh, err);
    if (!st) st = shared_texts(sh, err);
    for (int m = 0; !st && m < ex->n_methods; m++) {
        sh->scored[m] = method_caches && method_caches[m] ? method_caches[m] : c;
        if (ex->methods[m].kind == SC_METHOD_COOP) st = shared_coop(sh, m, err);
    }
    if (!st) st = shared_tsne(sh, err);
    if (st) shared_free(sh);
    return st;
}

/* Remove a run's temporary folder and everything in it (one level). */
static void remove_folder(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            char path[DS_PATH_MAX];
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && path_join(path, sizeof path, dir, e->d_name))
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* path made absolute against the working directory, into buf; 0 when it
 * does not fit. No symbolic link is resolved: the path stays the one given. */
static int absolute_path(char *buf, size_t n, const char *path)
{
    char cwd[DS_PATH_MAX];
    if (path[0] == '/') return snprintf(buf, n, "%s", path) < (int)n;
    if (!getcwd(cwd, sizeof cwd)) return 0;
    while (path[0] == '.' && path[1] == '/') path += 2;
    return path_join(buf, n, cwd, path);
}

/* A path as one word of a config: absolute and in double quotes, after
 * `prefix` ("model ", "cache=", ...) and `kind` ("derm7p:" or ""). */
static sc_status put_config_path(sc_text *t, const char *prefix, const char *kind, const char *path, sc_err *err)
{
    char abs[DS_PATH_MAX];
    if (!absolute_path(abs, sizeof abs, path)) return sc_fail(err, SC_EARG, "%s: path too long", path);
    if (strchr(abs, '"')) return sc_fail(err, SC_EARG, "%s: a path with a double quote cannot go into config.txt", abs);
    sc_text_printf(t, "%s\"%s%s\"", prefix, kind, abs);
    return SC_OK;
}

/* The config as the run folder keeps it: the file's own lines, except that
 * the paths (model, cache, dataset, hier and a method's cache=) are the
 * ones the run used, made absolute. Relative paths in the file were
 * relative to its folder, which the run folder is not, and --model may
 * have changed the model and the cache; with this text, `scale experiment
 * --config RUN/config.txt` runs the same experiment again from anywhere. */
static sc_status experiment_config_text(const sc_experiment *ex, sc_text *out, sc_err *err)
{
    sc_err ignored;
    exp_parser p = {0};
    p.what = "config.txt";
    p.err = &ignored;
    char *buf = malloc(SC_HIER_MAX_LINE + 1);
    if (!buf) return sc_fail(err, SC_ENOMEM, "config.txt: out of memory");
    const char *text = ex->text, *end_text = text + strlen(text);
    int method = 0, model_written = 0;
    sc_status st = SC_OK;
    for (const char *at = text; !st && at < end_text;) {
        const char *eol = memchr(at, '\n', (size_t)(end_text - at));
        size_t len = (size_t)((eol ? eol : end_text) - at);
        SC_ASSERT(len <= SC_HIER_MAX_LINE, "config line of %zu bytes passed the parser", len);
        memcpy(buf, at, len);
        buf[len] = '\0';
        const char *key = exp_split(&p, buf) == SC_OK && p.n_words ? p.word[0] : "";
        if (!strcmp(key, "model")) st = put_config_path(out, "model ", "", ex->model, err), model_written = 1;
        else if (!strcmp(key, "cache")) st = put_config_path(out, "cache ", "", ex->cache, err);
        else if (!strcmp(key, "hier")) st = put_config_path(out, "hier ", "", ex->hier, err);
        else if (!strcmp(key, "dataset")) {
            const char *colon = strchr(ex->dataset, ':');
            char kind[32];
            snprintf(kind, sizeof kind, "%.*s:", (int)(colon - ex->dataset), ex->dataset);
            st = put_config_path(out, "dataset ", kind, colon + 1, err);
        } else if (!strcmp(key, "method") && ex->methods[method].cache) {
            /* the words again, quoted where the parser needs it, the cache's path replaced */
            for (int w = 0; !st && w < p.n_words; w++) {
                const char *word = p.word[w];
                if (w) sc_text_puts(out, " ");
                if (!strncmp(word, "cache=", 6)) st = put_config_path(out, "cache=", "", ex->methods[method].cache, err);
                else if (strpbrk(word, " \t\r#")) sc_text_printf(out, "\"%s\"", word);
                else sc_text_puts(out, word);
            }
        } else sc_text_put(out, at, len);
        method += !strcmp(key, "method");
        sc_text_puts(out, "\n");
        at += len + 1;
    }
    if (!st && ex->model && !model_written) {   /* --model with a config that names none */
        st = put_config_path(out, "model ", "", ex->model, err);
        sc_text_puts(out, "\n");
    }
    free(buf);
    if (!st && out->failed) st = sc_fail(err, SC_ENOMEM, "config.txt: out of memory");
    return st;
}

/* Every output file into folder dir. */
static sc_status write_outputs(const exp_sweep *sw, const sc_run_options *opt, double seconds, const char *dir,
                               const sc_text *summary, sc_err *err)
{
    const sc_experiment *ex = sw->sh->ex;
    char path[DS_PATH_MAX];
#define OUT(name) (path_join(path, sizeof path, dir, name) ? path : "")
    sc_text config;
    sc_text_init(&config);
    sc_status st = experiment_config_text(ex, &config, err);
    if (!st) st = sc_text_save(&config, OUT("config.txt"), err);
    sc_text_free(&config);
    if (!st) st = write_results(sw, OUT("results.csv"), err);
    if (!st) st = sc_text_save(summary, OUT("summary.md"), err);
    if (!st && (ex->levels & 1 << LEVEL_CLASS)) st = write_fig2(sw, LEVEL_CLASS, OUT("fig2-class.svg"), err);
    if (!st && (ex->levels & 1 << LEVEL_COMBO)) st = write_fig2(sw, LEVEL_COMBO, OUT("fig2-concept.svg"), err);
    for (int i = 0; !st && i < sw->n_jobs; i++) {
        if (sw->jobs[i].keep) st = write_explanations(sw, &sw->jobs[i], OUT("explanations.csv"), err);
        if (!st && sw->jobs[i].map) st = write_fig4(sw, &sw->jobs[i], OUT("fig4-tsne.svg"), err);
    }
    if (!st) st = write_run_json(sw, opt, seconds, OUT("run.json"), err);
#undef OUT
    return st;
}

static void sweep_free(exp_sweep *sw)
{
    for (int i = 0; i < sw->n_jobs; i++) {
        scores_free(&sw->jobs[i].scores);
        free(sw->jobs[i].tsne);
    }
    free(sw->jobs), free(sw->order);
}

sc_status sc_experiment_run(const sc_experiment *ex, const sc_cache *cache, const sc_model *model, const char *out_dir,
                            const sc_run_options *opt, sc_err *err)
{
    double start = now_seconds();
    sc_cache others[SC_EXP_MAX_METHODS];
    const sc_cache *scored[SC_EXP_MAX_METHODS] = {0};
    sc_status st = SC_OK;
    memset(others, 0, sizeof others);
    for (int m = 0; !st && m < ex->n_methods; m++)
        if (ex->methods[m].cache) {          /* zero-shot with another model's embeddings */
            st = sc_cache_load(&others[m], ex->methods[m].cache, err);
            if (!st && (st = caches_match(cache, &others[m], err))) sc_cache_free(&others[m]);
            if (!st) scored[m] = &others[m];
        }
    exp_shared sh;
    exp_sweep sw;
    memset(&sw, 0, sizeof sw);
    int have_shared = !st && (st = shared_init(&sh, ex, cache, model, scored, err)) == SC_OK;
    if (have_shared) {
        sw.sh = &sh;
        sw.jobs = calloc((size_t)(ex->n_methods * (ex->n_fractions * ex->n_seeds + 1)), sizeof *sw.jobs);
        if (!sw.jobs) st = sc_fail(err, SC_ENOMEM, "out of memory");
        else sw.n_jobs = list_jobs(sw.jobs, &sh);
        for (int m = 0; opt && opt->progress && m < ex->n_methods; m++)
            if (sh.note[m][0]) fprintf(opt->progress, "scale experiment: %s: %s\n", ex->methods[m].name, sh.note[m]);
    }
    /* the temporary folder first, so that an unwritable place fails now */
    char tmp[DS_PATH_MAX];
    int have_tmp = !st && (st = cache_tmp_begin(out_dir, tmp, sizeof tmp, err)) == SC_OK;
    if (!st) st = run_sweep(&sw, opt ? opt->progress : NULL, err);
    sc_text summary;
    sc_text_init(&summary);
    if (!st) {
        summary_text(&summary, &sw);
        st = write_outputs(&sw, opt, now_seconds() - start, tmp, &summary, err);
        if (!st && opt && opt->progress) timing_text(opt->progress, &sw, now_seconds() - start);
        if (!st && rename(tmp, out_dir) != 0)
            st = sc_fail(err, SC_EIO, "%s: cannot rename %s to it: %s", out_dir, tmp, strerror(errno));
    }
    if (st && have_tmp) remove_folder(tmp);   /* nothing half-written is left */
    if (!st && opt && opt->summary && summary.data) fputs(summary.data, opt->summary);
    sc_text_free(&summary);
    sweep_free(&sw);
    if (have_shared) shared_free(&sh);
    for (int m = 0; m < ex->n_methods; m++)
        if (scored[m]) sc_cache_free(&others[m]);
    return st;
}

/* The cache of the experiment: loaded and checked against the model and
 * the dataset named in the config, or embedded first when missing. */
static sc_status experiment_cache(const sc_experiment *ex, sc_cache *c, FILE *progress, sc_err *err)
{
    sc_dataset_options o = sc_dataset_defaults();
    sc_status st = SC_OK;
    if (ex->dataset) {
        st = sc_dataset_spec(&o, ex->dataset, err);
        o.hier = ex->hier;
        o.clinic = ex->clinic;
    }
    if (!st && !path_exists(ex->cache)) {
        if (!ex->dataset) return sc_fail(err, SC_EIO, "%s: no such cache, and no 'dataset' to embed into it", ex->cache);
        sc_dataset ds;
        if ((st = sc_dataset_load(&ds, &o, err))) return st;
        sc_embed_config cfg = sc_embed_defaults();
        cfg.model = ex->model;
        cfg.progress = progress;
        if (progress) fprintf(progress, "scale experiment: embedding %s into %s\n", ex->dataset, ex->cache);
        st = sc_embed(&cfg, &ds, ex->cache, err);
        sc_dataset_free(&ds);
    }
    if (!st) st = sc_cache_load(c, ex->cache, err);
    if (!st && (ex->model || ex->dataset) &&
        (st = sc_cache_check(c, ex->model, NULL, ex->dataset ? &o : NULL, err)))
        sc_cache_free(c);
    return st;
}

sc_status sc_experiment_main(const sc_experiment *ex, const char *out_dir, const sc_run_options *opt, sc_err *err)
{
    if (path_exists(out_dir)) return sc_fail(err, SC_EARG, "%s: already exists; remove it or choose another --out", out_dir);
    sc_cache c;
    sc_status st = experiment_cache(ex, &c, opt ? opt->progress : NULL, err);
    if (st) return st;
    sc_model *model = NULL;
    for (int m = 0; !st && !model && m < ex->n_methods; m++)
        if (ex->methods[m].kind == SC_METHOD_COOP) st = sc_model_load(&model, ex->model, NULL, err);
    if (!st) st = sc_experiment_run(ex, &c, model, out_dir, opt, err);
    if (model) sc_model_free(model);
    sc_cache_free(&c);
    return st;
}

/* ======================================================================== */
/* 8. The `scale` command                                                    */
/* ======================================================================== */
#ifndef SC_NO_MAIN

/* ---- 8a. Argument helpers ----------------------------------------------
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

/* ---- 8b. Commands: inputs (decode, preprocess, tokenize) ---------------- */

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
    "usage: scale preprocess [--model DIR] [--pipeline NAME] [--crop-rule RULE] IMAGE... --out X.npy\n"
    "Model inputs, float32 (N, C, S, S), exactly as the models' Python code\n"
    "prepares them (book/08-images.md). NAME: clip, monet, medclip (MedCLIP's\n"
    "processor) or medclip-eval (its evaluation datasets); default clip, or\n"
    "what DIR's config.json and preprocessor_config.json say. 16-bit grey\n"
    "images are stretched min-max to 8 bits first. --crop-rule replaces the\n"
    "pipeline's centre-crop offset rule: torchvision (round half to even),\n"
    "hf ((size - crop) // 2) or hf-legacy (int((size - crop + 1) * 0.5)).\n";

#define PREPROCESS_MAX_IMAGES 65536

static int cmd_preprocess(int argc, char **argv)
{
    const char *model = NULL, *name = NULL, *out = NULL, *crop_rule = NULL;
    const char **images = malloc(sizeof(char *) * PREPROCESS_MAX_IMAGES);
    int n = 0;
    if (!images) return fprintf(stderr, "scale preprocess: out of memory\n"), 1;
    cli c = cli_begin("preprocess", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--model")) model = cli_str(&c);
        else if (cli_is(&c, "--pipeline")) name = cli_str(&c);
        else if (cli_is(&c, "--crop-rule")) crop_rule = cli_str(&c);
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
    if (crop_rule) {
        static const char *const rules[] = {"torchvision", "hf", "hf-legacy"}; /* sc_crop_rule order */
        int r = 0;
        while (r < 3 && strcmp(crop_rule, rules[r]) != 0) r++;
        if (r == 3) {
            free(images);
            return fprintf(stderr, "scale preprocess: --crop-rule is torchvision, hf or hf-legacy, not '%s'\n", crop_rule), 2;
        }
        p.crop_rule = (sc_crop_rule)r;
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

/* A failure on text b, named for the user: "FILE:LINE: ..." for the lines
 * of --in FILE, "text b: ..." for the arguments. The tokenizer's message
 * begins "text: ". */
static sc_status tokenize_fail(sc_status st, const char *in, int64_t b, sc_err *err)
{
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", !strncmp(err->msg, "text: ", 6) ? err->msg + 6 : err->msg);
    if (in) return sc_fail(err, st, "%s:%lld: %s", in, (long long)b + 1, why);
    return sc_fail(err, st, "text %lld: %s", (long long)b, why);
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
            "token strings; --explain: every cleaning step, BPE merge or WordPiece split).\n"
            "A text that cannot be tokenized (invalid UTF-8, too long) is named as FILE:LINE\n"
            "for --in FILE, as text N (from 0) among the arguments.\n");
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
    for (int64_t b = 0; !s && b < B; b++) {
        s = explain ? sc_tokenizer_explain(tok, texts[b], strlen(texts[b]), stdout, &err)
                    : sc_tokenizer_encode(tok, texts[b], strlen(texts[b]), ids + b * T, mask + b * T, NULL, NULL, &err);
        if (s) s = tokenize_fail(s, in, b, &err);
    }
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
    if (texts != args) free((void *)texts);   /* still args when --in FILE could not be read */
    free(buf);
    free(ids);
    free(mask);
    sc_tokenizer_free(tok);
    return s ? cli_fail(&c, &err) : 0;
}

/* ---- 8c. Commands: models (encode, compare, embed, dataset, cache) ------- */

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

/* sc_model_load takes head counts from config.json in the model directory
 * or from --config; without either it follows OpenAI's build_model (heads
 * = width / 64), which other checkpoints need not obey. Say so, once. */
static void note_inferred_heads(const char *model, const char *config)
{
    char json[4096];
    snprintf(json, sizeof json, "%s/config.json", model);
    if (!config && !(is_dir(model) && path_exists(json)))
        fprintf(stderr, "scale encode: note: head counts of %s are width / 64 (OpenAI's rule): no --config, "
                        "and it is not a directory with config.json\n", model);
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
    note_inferred_heads(a.model, a.config);
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

/* `scale compare` puts two arrays side by side — our output against a
 * reference, or one preprocessing or padding choice against another — the
 * way the book's discussions measure a choice: how many values differ, the
 * largest and the mean difference, and the cosine of each pair of rows
 * (index of the first dimension: an embedding, or an image, per row). */
static const char compare_usage[] =
    "usage: scale compare A.npy B.npy [--rows N]\n"
    "Compare two numeric arrays of the same shape (leading dimensions of size 1\n"
    "aside, so one image compares with a batch of one): how many values differ, the\n"
    "largest and the mean absolute difference, and the cosine similarity of\n"
    "each pair of rows (row = index of the first dimension, the rest flattened),\n"
    "printed for the first N rows (default 8) and summarised over all of them.\n";

/* The array at path and a float32 copy of it; prints the failure and
 * returns 1. */
static int compare_read(const cli *c, const char *path, sc_array *a, float **x)
{
    sc_err err;
    if (sc_npy_read(path, a, &err) != SC_OK) return cli_fail(c, &err);
    if (sc_array_to_f32(a, x, &err) == SC_OK) return 0;
    sc_array_free(a);
    return cli_fail(c, &err);
}

/* "(2, 32)", leading dimensions of size 1 left out when `squeeze` is set
 * (a batch of one image is the image). */
static void compare_shape(char *buf, size_t n, const sc_array *a, int squeeze)
{
    int d0 = 0;
    while (squeeze && d0 < a->ndim - 1 && a->shape[d0] == 1) d0++;
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int d = d0; d < a->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d > d0 ? ", " : "", (long long)a->shape[d]);
    if (k < n) snprintf(buf + k, n - k, ")");
}

/* Cosine of two vectors of n floats, summed in double; 0 when either is 0. */
static double compare_cosine(const float *a, const float *b, int64_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static void compare_print(const sc_array *a, const float *x, const float *y, long show)
{
    int64_t n = sc_array_numel(a), rows = a->ndim ? a->shape[0] : 1, per_row = rows ? n / rows : 0, differ = 0;
    double max_diff = 0, sum_diff = 0, cos_min = 1, cos_sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - y[i]);
        differ += x[i] != y[i];
        sum_diff += d;
        if (d > max_diff) max_diff = d;
    }
    printf("values %lld, differing %lld, max_abs_diff=%.4g mean_abs_diff=%.4g\n", (long long)n, (long long)differ,
           max_diff, n ? sum_diff / (double)n : 0.0);
    for (int64_t r = 0; r < rows; r++) {
        double cs = compare_cosine(x + r * per_row, y + r * per_row, per_row);
        cos_sum += cs;
        if (cs < cos_min) cos_min = cs;
        if (r < show) printf("row %lld: cosine %.6f\n", (long long)r, cs);
    }
    if (rows > show) printf("...\n");
    if (rows > 1) printf("cosine over %lld rows: min %.6f, mean %.6f\n", (long long)rows, cos_min, cos_sum / (double)rows);
}

static int cmd_compare(int argc, char **argv)
{
    const char *paths[2] = {NULL, NULL};
    int n_paths = 0;
    long show = 8;
    cli c = cli_begin("compare", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--help")) return printf("%s", compare_usage), 0;
        else if (cli_is(&c, "--rows")) show = cli_long(&c);
        else if (!cli_positional(&c, paths, &n_paths, 2)) return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (n_paths != 2 || show < 0)
        return fprintf(stderr, "scale compare: give two .npy files and --rows >= 0 (try 'scale compare --help')\n"), 2;
    sc_array a, b;
    float *x, *y;
    if (compare_read(&c, paths[0], &a, &x)) return 1;
    if (compare_read(&c, paths[1], &b, &y)) return sc_array_free(&a), free(x), 1;
    char sa[160], sb[160];
    compare_shape(sa, sizeof sa, &a, 1);
    compare_shape(sb, sizeof sb, &b, 1);
    int rc = strcmp(sa, sb) != 0;
    if (rc) {
        compare_shape(sa, sizeof sa, &a, 0);
        compare_shape(sb, sizeof sb, &b, 0);
        fprintf(stderr, "scale compare: %s is %s but %s is %s\n", paths[0], sa, paths[1], sb);
    } else {
        compare_shape(sa, sizeof sa, &a, 0);
        printf("%s against %s, %s\n", paths[0], paths[1], sa);
        compare_print(&a, x, y, show);
    }
    sc_array_free(&a), sc_array_free(&b), free(x), free(y);
    return rc;
}


/* ---- datasets and the embedding cache ---- */

static const char dataset_options_usage[] =
    "dataset options:\n"
    "  --hier FILE            the class-concept hierarchy (default data/derm7p.hier,\n"
    "                         data/padchest-gr.hier; a manifest's is derived from its labels)\n"
    "  --skip-bad             report bad rows on stderr and leave them out instead of failing\n"
    "  --min-cases N          drop combinations on fewer images (PadChest-GR 10, others 0)\n"
    "  --split official|stratified  the dataset's split, or a stratified train/test split\n"
    "  --test-fraction F      stratified: the test share (0.15, the paper's PadChest-GR split)\n"
    "  --split-seed S         stratified: the seed (0)\n"
    "  --keep-unlabelled      keep images without a combination (PadChest-GR, manifest)\n"
    "  Derm7p:      --image derm|clinic, --keep-replaced-clinic\n"
    "  PadChest-GR: --lang en|es, --images DIR (the image folder under the dataset)\n";

/* The dataset readers' options, shared by embed, dataset and cache;
 * returns 1 when it took the current argument. */
static int cli_dataset_option(cli *c, sc_dataset_options *o)
{
    if (cli_is(c, "--dataset")) {
        const char *v = cli_str(c);
        sc_err err;
        if (v && sc_dataset_spec(o, v, &err) != SC_OK) fprintf(stderr, "scale %s: %s\n", c->cmd, err.msg), c->bad = 1;
    } else if (cli_is(c, "--image") || cli_is(c, "--lang") || cli_is(c, "--split")) {
        const char *opt = c->argv[c->i], *v = cli_str(c);
        static const char *const words[3][2] = {{"derm", "clinic"}, {"en", "es"}, {"official", "stratified"}};
        int which = opt[2] == 'i' ? 0 : opt[2] == 'l' ? 1 : 2, k = !v ? -1 : !strcmp(v, words[which][0]) ? 0
                                                                        : !strcmp(v, words[which][1]) ? 1 : -1;
        if (v && k < 0)
            fprintf(stderr, "scale %s: %s takes %s or %s, not '%s'\n", c->cmd, opt, words[which][0], words[which][1], v),
                c->bad = 1;
        if (which == 0) o->clinic = k == 1;
        else if (which == 1) o->spanish = k == 1;
        else o->split = k == 1 ? SC_SPLITS_STRATIFIED : SC_SPLITS_OFFICIAL;
    } else if (cli_is(c, "--hier")) o->hier = cli_str(c);
    else if (cli_is(c, "--images")) o->images = cli_str(c);
    else if (cli_is(c, "--skip-bad")) o->skip_bad = 1;
    else if (cli_is(c, "--keep-replaced-clinic")) o->keep_replaced_clinic = 1;
    else if (cli_is(c, "--keep-unlabelled")) o->keep_unlabelled = 1;
    else if (cli_is(c, "--min-cases")) o->min_cases = (int)cli_long(c);
    else if (cli_is(c, "--test-fraction")) o->test_fraction = cli_double(c);
    else if (cli_is(c, "--split-seed")) o->split_seed = (uint64_t)cli_long(c);
    else return 0;
    if (!c->bad && (o->min_cases < -1 || o->min_cases > 1000000 || !(o->test_fraction > 0 && o->test_fraction < 1)))
        fprintf(stderr, "scale %s: --min-cases must be in [0, 10^6] and --test-fraction in (0, 1)\n", c->cmd), c->bad = 1;
    return 1;
}

/* Load a dataset and report what the reader left out, on stderr. */
static int load_dataset(const cli *c, const sc_dataset_options *o, sc_dataset *ds, int quiet)
{
    sc_err err;
    if (sc_dataset_load(ds, o, &err) != SC_OK) return cli_fail(c, &err);
    for (int k = 0; k < ds->n_skipped; k++) fprintf(stderr, "scale %s: skipped: %s\n", c->cmd, ds->skipped[k]);
    for (int k = 0; !quiet && k < ds->n_notes; k++) fprintf(stderr, "scale %s: note: %s\n", c->cmd, ds->notes[k]);
    return 0;
}

static int dataset_usage(void)
{
    printf("usage: scale dataset KIND:PATH [dataset options]\n"
           "Read a dataset (derm7p:release_v0, padchest-gr:FOLDER or manifest:FILE.csv),\n"
           "check it against its hierarchy and print images per split and per combination\n"
           "(book/16-datasets-and-cache.md). Fails on the first bad row unless --skip-bad.\n\n%s",
           dataset_options_usage);
    return 0;
}

static int cmd_dataset(int argc, char **argv)
{
    sc_dataset_options o = sc_dataset_defaults();
    const char *spec[1] = {NULL};
    int n_spec = 0;
    cli c = cli_begin("dataset", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--help")) return dataset_usage();
        else if (!cli_dataset_option(&c, &o) && !cli_positional(&c, spec, &n_spec, 1)) return cli_unknown(&c);
    }
    if (c.bad) return 2;
    sc_err err;
    if (!n_spec && !o.path) return fprintf(stderr, "scale dataset: which dataset? (KIND:PATH)\n"), 2;
    if (n_spec && sc_dataset_spec(&o, spec[0], &err) != SC_OK) return fprintf(stderr, "scale dataset: %s\n", err.msg), 2;
    sc_dataset ds;
    if (load_dataset(&c, &o, &ds, 1)) return 1;
    sc_dataset_print(&ds, stdout);
    sc_dataset_free(&ds);
    return 0;
}

static int embed_usage(void)
{
    printf("usage: scale embed --model DIR --dataset KIND:PATH --out CACHE [--pipeline NAME]\n"
           "                   [--batch 16] [--shard I/N] [--threads N] [--quiet] [dataset options]\n"
           "       scale embed --merge CACHE SHARD...\n"
           "Run the model's frozen encoders once over every image and every prompt and\n"
           "sentence of the dataset and store the raw float32 embeddings, labels and token\n"
           "ids in the new directory CACHE, with an index.json recording the SHA-256 of the\n"
           "model and dataset files, the pipeline, tokenizer and options (book/16).\n"
           "--shard I/N embeds the I-th of N slices of the images (0-based; the texts go\n"
           "with shard 0); --merge joins the N shard directories into CACHE, byte for byte\n"
           "what one run writes. Progress goes to stderr.\n\n%s",
           dataset_options_usage);
    return 0;
}

static int cmd_embed(int argc, char **argv)
{
    enum { MAX_SHARDS = 4096 };
    sc_dataset_options o = sc_dataset_defaults();
    sc_embed_config cfg = sc_embed_defaults();
    const char *out = NULL, *merge = NULL, *shards[MAX_SHARDS];
    long batch = cfg.batch, threads = 0;
    int n_shards = 0, quiet = 0;
    cli c = cli_begin("embed", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--help")) return embed_usage();
        else if (cli_is(&c, "--model")) cfg.model = cli_str(&c);
        else if (cli_is(&c, "--pipeline")) cfg.pipeline = cli_str(&c);
        else if (cli_is(&c, "--out")) out = cli_str(&c);
        else if (cli_is(&c, "--merge")) merge = cli_str(&c);
        else if (cli_is(&c, "--batch")) batch = cli_long(&c);
        else if (cli_is(&c, "--threads")) threads = cli_long(&c);
        else if (cli_is(&c, "--quiet")) quiet = 1;
        else if (cli_is(&c, "--shard")) {
            const char *v = cli_str(&c);
            char tail;
            if (v && (sscanf(v, "%d/%d%c", &cfg.shard, &cfg.n_shards, &tail) != 2 || cfg.n_shards < 1 ||
                      cfg.shard < 0 || cfg.shard >= cfg.n_shards))
                fprintf(stderr, "scale embed: --shard takes I/N with 0 <= I < N, not '%s'\n", v), c.bad = 1;
        } else if (!cli_dataset_option(&c, &o) && !cli_positional(&c, shards, &n_shards, MAX_SHARDS))
            return cli_unknown(&c);
    }
    if (c.bad) return 2;
    sc_err err;
    if (merge) {
        if (!n_shards) return fprintf(stderr, "scale embed: --merge CACHE needs the shard directories\n"), 2;
        if (sc_cache_merge(merge, shards, n_shards, &err) != SC_OK) return cli_fail(&c, &err);
        printf("merged %d shards into %s\n", n_shards, merge);
        return 0;
    }
    const char *problem = !cfg.model ? "--model is required"
                          : !o.path ? "--dataset is required"
                          : !out ? "--out is required"
                          : n_shards ? "unexpected arguments (shard directories go with --merge)"
                          : batch < 1 || batch > 4096 ? "--batch must be in [1, 4096]"
                          : threads < 0 || threads > 1024 ? "--threads must be in [0, 1024]"
                                                          : NULL;
    if (problem) return fprintf(stderr, "scale embed: %s (try 'scale embed --help')\n", problem), 2;
    if (threads) sc_set_threads((int)threads);
    cfg.batch = (int)batch;
    cfg.progress = quiet ? NULL : stderr;
    sc_dataset ds;
    if (load_dataset(&c, &o, &ds, quiet)) return 1;
    int rc = sc_embed(&cfg, &ds, out, &err) == SC_OK ? 0 : cli_fail(&c, &err);
    if (!rc)
        printf("wrote %s: shard %d of %d of a dataset of %lld images\n", out, cfg.shard, cfg.n_shards,
               (long long)ds.n_images);
    sc_dataset_free(&ds);
    return rc;
}

static int cache_usage(void)
{
    printf("usage: scale cache CACHE [--model DIR [--pipeline NAME]] [--dataset KIND:PATH\n"
           "                   [dataset options]]\n"
           "Load an embedding cache, check every file against index.json and print what it\n"
           "holds. With --model and/or --dataset, recompute their fingerprint and fail when\n"
           "the cache was made from other files or options (a stale cache).\n\n%s",
           dataset_options_usage);
    return 0;
}

static int cmd_cache(int argc, char **argv)
{
    sc_dataset_options o = sc_dataset_defaults();
    const char *dir[1] = {NULL}, *model = NULL, *pipeline = NULL;
    int n_dir = 0;
    cli c = cli_begin("cache", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--help")) return cache_usage();
        else if (cli_is(&c, "--model")) model = cli_str(&c);
        else if (cli_is(&c, "--pipeline")) pipeline = cli_str(&c);
        else if (!cli_dataset_option(&c, &o) && !cli_positional(&c, dir, &n_dir, 1)) return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (!n_dir) return fprintf(stderr, "scale cache: which cache directory?\n"), 2;
    sc_cache cache;
    sc_err err;
    if (sc_cache_load(&cache, dir[0], &err) != SC_OK) return cli_fail(&c, &err);
    int rc = (model || o.path) && sc_cache_check(&cache, model, pipeline, o.path ? &o : NULL, &err) != SC_OK
                 ? cli_fail(&c, &err)
                 : 0;
    if (!rc) {
        int64_t per_split[SC_N_SPLITS] = {0}, per_kind[SC_N_TEXT_KINDS] = {0};
        for (int64_t i = 0; i < cache.N; i++) per_split[cache.split[i]]++;
        for (int64_t j = 0; j < cache.M; j++) per_kind[cache.text_kind[j]]++;
        printf("cache %s: %s model, %s dataset, embeddings of width %lld, logit scale %g\n", cache.dir,
               cache.model_kind, cache.dataset_kind, (long long)cache.E, (double)cache.logit_scale);
        printf("images %lld: train %lld, valid %lld, test %lld, none %lld\n", (long long)cache.N,
               (long long)per_split[0], (long long)per_split[1], (long long)per_split[2], (long long)per_split[3]);
        printf("texts %lld:", (long long)cache.M);
        for (int k = 0; k < SC_N_TEXT_KINDS; k++)
            if (per_kind[k]) printf(" %s %lld", sc_text_kind_name((sc_text_kind)k), (long long)per_kind[k]);
        printf("\ntasks %d, combinations %d\n", cache.hier.n_tasks, cache.n_labels);
        if (model || o.path) printf("fingerprint matches%s%s\n", model ? " the model" : "", o.path ? (model ? " and the dataset" : " the dataset") : "");
    }
    sc_cache_free(&cache);
    return rc;
}

/* ---- 8d. Commands: SCALE (loss, metrics, train, predict) ---------------- */

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
        else if (sc_loss_problem_check(&p, path[1], &err) != SC_OK) rc = cli_fail(&c, &err);
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

/* Scores (N, K) must be finite: a NaN has no rank, so the AUC would be
 * meaningless (and sc_roc_auc refuses it). Names the first bad entry. */
static int require_finite(const cli *c, const char *path, const float *x, int64_t N, int64_t K)
{
    for (int64_t i = 0; i < N * K; i++)
        if (!isfinite(x[i]))
            return cli_failf(c, "%s: entry (%lld, %lld) is %g, not a finite score", path, (long long)(i / K),
                             (long long)(i % K), (double)x[i]);
    return 0;
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
    if (!rc) rc = require_finite(&c, scores_path, S, ss[0], ss[1]);
    if (!rc) rc = load_labels(&c, labels_path, ss[0], ss[1], &Y, &N);
    if (!rc && none_path) rc = load_floats(&c, none_path, 1, ss, ns, &none);
    if (!rc && none) rc = require_finite(&c, none_path, none, ss[0], 1);
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
    "                   [--grad-check N]\n"
    "Train SCALE's adapters on cached embeddings (book/05-loss.md): X (N, C)\n"
    "images, G their combinations as indices (N) or 0/1 (N, H), P (H, C) the\n"
    "canonical prompt of each combination of the task. Without --text-emb each\n"
    "image is paired with the prompt of its (first) combination.\n"
    "--grad-check N: after training, for N adapter entries drawn from --seed, the\n"
    "tape's gradient of the first batch's loss against a central finite\n"
    "difference, one line each: param=NAME[i,j] tape=... fd=... rel=...\n"
    "(book/02-autograd.md).\n";

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

/* The step of --grad-check's differences: large enough that the float
 * rounding of the loss (about 1e-7 of it) stays small beside the change,
 * small enough that few ReLUs cross their kink within it. */
#define GRAD_CHECK_STEP (1.0f / 1024)

/* --grad-check N: n entries of the adapters, the tape's gradient of the
 * loss of the first training batch (images 0..B) against differences. */
static int print_grad_check(const cli *c, sc_scale_model *m, sc_ctx *ctx, const sc_train_data *d, long n)
{
    int64_t B = m->cfg.batch_size > 0 ? m->cfg.batch_size : sc_train_batch_size(d->N), total = 0;
    if (B > d->N) B = d->N;
    for (int k = 0; k < m->n_params; k++) total += sc_numel(m->params[k]);
    if (n > total) n = (long)total;
    int *index = malloc(sizeof(int) * (size_t)B);
    sc_grad_sample *sample = malloc(sizeof *sample * (size_t)(n + 1));
    if (!index || !sample) {
        free(index);
        free(sample);
        return cli_failf(c, "out of memory for a gradient check of %ld entries", n);
    }
    for (int64_t i = 0; i < B; i++) index[i] = (int)i;
    n = (long)sc_scale_grad_check(sample, n, m, ctx, d, index, B, GRAD_CHECK_STEP, m->cfg.seed);
    for (long s = 0; s < n; s++) {
        const sc_tensor *p = m->params[sample[s].param];
        int64_t i = sample[s].index, cols = p->ndim == 2 ? p->shape[1] : 0;
        double tape = sample[s].tape, fd = sample[s].fd, scale = fmax(fabs(tape), fabs(fd));
        if (cols) printf("param=%s[%lld,%lld]", p->name, (long long)(i / cols), (long long)(i % cols));
        else printf("param=%s[%lld]", p->name, (long long)i);
        printf(" tape=%.6e fd=%.6e rel=%.1e\n", tape, fd, scale > 0 ? fabs(tape - fd) / scale : 0.0);
    }
    free(index);
    free(sample);
    return 0;
}

/* @book begin cmd-train */
static int cmd_train(int argc, char **argv)
{
    static const char *const file_opt[6] = {"--image-emb", "--labels", "--prompt-emb", "--text-emb", "--text-combos",
                                            "--text-labels"};
    const char *path[6] = {NULL}, *hier_path = NULL, *task_name = NULL, *out = NULL, *resume = NULL;
    long checkpoint_every = 0, log_every = 10, grad_checks = 0;
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
        else if (cli_is(&c, "--grad-check")) grad_checks = cli_long(&c);
        else if (cli_is(&c, "--help")) return printf("%s", train_usage), 0;
        else if (!cli_loss_option(&c, &cfg.loss) && !cli_adapter_option(&c, &cfg)) return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (!hier_path || !path[0] || !path[1] || !path[2] || !out)
        return fprintf(stderr, "scale train: --hier, --image-emb, --labels, --prompt-emb and --out are required\n%s",
                       train_usage), 2;
    if (cfg.epochs < 1 || cfg.batch_size < 0 || checkpoint_every < 0 || log_every < 0 || grad_checks < 0)
        return fprintf(stderr, "scale train: epochs must be positive, batch, intervals and checks not negative\n"), 2;

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
        if (!rc && grad_checks) rc = print_grad_check(&c, &model, &ctx, &data, grad_checks);
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

/* ---- 8e. Commands: experiments, t-SNE maps, synthetic data, demo -------- */

static const char experiment_usage[] =
    "usage: scale experiment --config FILE [--model DIR] [--out DIR] [--threads N]\n"
    "                        [--quiet]\n"
    "Reproduce the paper's experiments (book/17-reproducing-the-paper.md): every\n"
    "method of FILE on nested stratified subsets of the training split, evaluated\n"
    "on the test split at the class and class-concept levels. The run folder DIR\n"
    "(default runs/NAME, NAME the config file's name) must not exist; it receives\n"
    "results.csv, summary.md (also printed), fig2-class.svg, fig2-concept.svg,\n"
    "fig4-tsne.svg, explanations.csv, config.txt and run.json, all at once at the\n"
    "end. Progress goes to stderr (--quiet: none). config.txt is FILE with the paths\n"
    "the run used made absolute: --config DIR/config.txt runs it again.\n"
    "--model DIR runs with that model instead of the config's (MONET, MedCLIP or\n"
    "another CLIP); its embeddings go to a cache of its own, CACHE-NAME for the\n"
    "config's CACHE and the model folder's name NAME.\n"
    "\n"
    "FILE, one statement per line ('#' comments; quote values with blanks):\n"
    "  scale-experiment 1            first line\n"
    "  name TEXT                     title of the report\n"
    "  cache DIR                     the embedding cache (scale embed); built here\n"
    "                                from dataset and model when it does not exist\n"
    "  model DIR                     the model (CoOp, embedding, cache check)\n"
    "  dataset KIND:PATH             derm7p:, padchest-gr: or manifest:\n"
    "  hier FILE / image derm|clinic the dataset's hierarchy / Derm7p's images\n"
    "  train-splits train [valid]    the training pool (default: train)\n"
    "  fractions F ...               default 0.05 0.1 0.25 0.5 1\n"
    "  seeds N / seed S              subsets per fraction (5), base seed (0)\n"
    "  levels class class-concept    default both\n"
    "  tsne-task T / tsne-class C / tsne-points N   Fig. 4 (default: the task\n"
    "                                with most concepts, all classes, 100)\n"
    "  explain METHOD                explanations.csv (default: the last scale)\n"
    "  method NAME KIND [key=value ...], KIND and keys:\n"
    "    zero-shot      prompts=combination|class ensemble=no|yes cache=DIR\n"
    "    concept-score  temp=0.010101 (MONET: 1/exp(4.5944)) cache=DIR\n"
    "    linear-probe   loss=bce|softmax weighting=none|inverse-frequency\n"
    "                   epochs=150 lr=0.001 l2=0.0001 batch=N\n"
    "    coop           n-ctx=16 csc=no|yes init=random|\"a photo of a\"\n"
    "                   init-std=0.02 epochs=50 lr=0.002 momentum=0.9\n"
    "                   weight-decay=0.0005 warmup-epochs=1 warmup-lr=1e-5 batch=32\n"
    "    scale          epochs=150 lr=0.001 batch=N tau=0.07 logit-scale=100\n"
    "                   lambda=1,1,1,1 supcon=cross|rows reduction=mean|sum\n"
    "                   alpha=sigmoid|clamp|raw alpha-init=0.2 relu=2|1\n"
    "                   adapter-reduction=4 image-adapter=yes text-adapter=yes\n"
    "                   tasks=joint|separate\n"
    "  every method also takes dashed=yes|no (its line in Fig. 2)\n";

/* Create the folders leading to path (not path itself), as mkdir -p. */
static void make_parents(const char *path)
{
    char buf[DS_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/' && p[1]) {
            *p = '\0';
            mkdir(buf, 0777);
            *p = '/';
        }
}

/* "runs/NAME" for config path ".../NAME.conf". */
static void default_run_dir(char *out, size_t n, const char *config)
{
    const char *base = strrchr(config, '/');
    base = base ? base + 1 : config;
    const char *dot = strrchr(base, '.');
    int len = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    snprintf(out, n, "runs/%.*s", len, base);
}

static int cmd_experiment(int argc, char **argv)
{
    const char *config = NULL, *out = NULL, *model = NULL;
    long threads = 0;
    int quiet = 0;
    cli c = cli_begin("experiment", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--config")) config = cli_str(&c);
        else if (cli_is(&c, "--model")) model = cli_str(&c);
        else if (cli_is(&c, "--out")) out = cli_str(&c);
        else if (cli_is(&c, "--threads")) threads = cli_long(&c);
        else if (cli_is(&c, "--quiet")) quiet = 1;
        else if (cli_is(&c, "--help")) return printf("%s", experiment_usage), 0;
        else return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (!config) return fprintf(stderr, "scale experiment: --config is required\n%s", experiment_usage), 2;
    if (threads < 0 || threads > 256) return fprintf(stderr, "scale experiment: --threads takes 1 to 256\n"), 2;
    if (threads) sc_set_threads((int)threads);
    char run_dir[DS_PATH_MAX];
    if (!out) default_run_dir(run_dir, sizeof run_dir, config);
    if (!out) out = run_dir;
    make_parents(out);   /* runs/ and the like; an error shows when the run folder is made */
    /* the command line, for run.json */
    sc_text line;
    sc_text_init(&line);
    sc_text_puts(&line, "scale");
    for (int i = 0; i < argc; i++) sc_text_printf(&line, " %s", argv[i]);
    sc_experiment ex;
    sc_err err;
    int rc = sc_experiment_load(&ex, config, &err) == SC_OK ? 0 : cli_fail(&c, &err);
    if (!rc && model && sc_experiment_set_model(&ex, model, &err) != SC_OK) {
        rc = cli_fail(&c, &err);
        sc_experiment_free(&ex);
    }
    if (!rc && model && !quiet) fprintf(stderr, "scale experiment: model %s, embeddings in %s\n", ex.model, ex.cache);
    if (!rc) {
        sc_run_options opt = {quiet ? NULL : stderr, stdout, line.data};
        if (sc_experiment_main(&ex, out, &opt, &err) != SC_OK) rc = cli_fail(&c, &err);
        else if (!quiet) fprintf(stderr, "scale experiment: wrote %s\n", out);
        sc_experiment_free(&ex);
    }
    sc_text_free(&line);
    return rc;
}


static const char tsne_usage[] =
    "usage: scale tsne X.npy [--out Y.npy] [--perplexity 30] [--iters 1000] [--seed 0]\n"
    "                  [--labels L.npy] [--k 5]\n"
    "       scale tsne X.npy --map Y.npy [--labels L.npy] [--k 5]\n"
    "       scale tsne --map Y.npy --affinities P.npy\n"
    "Map the rows of X (N, D) to the plane with exact t-SNE (book/14-plots-and-maps.md)\n"
    "and say how well the map keeps neighbourhoods, one name=value line each:\n"
    "  kl               KL(P || Q) of the final map\n"
    "  trustworthiness  T(k): 1 when no map neighbour was far away in X\n"
    "  knn_accuracy     with --labels L (N) of integers: the share of points whose\n"
    "                   k nearest map neighbours vote for their own label\n"
    "--out writes the map (N, 2) as float32. --map scores a given map (N, E)\n"
    "instead of computing one. --affinities takes the pair probabilities P (N, N)\n"
    "as given (symmetric, summing to 1) and prints, for a map (N, 2), the cost\n"
    "kl and its gradient, grad[i] = dC/dy_i; X is then optional.\n";

/* P as given to --affinities: a symmetric distribution over pairs. */
static int check_affinities(const cli *c, const char *path, const float *P, int64_t n)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            float p = P[i * n + j];
            if (!(p >= 0) || !isfinite(p))
                return cli_failf(c, "%s: entry [%lld, %lld] is %g, not a probability", path, (long long)i,
                                 (long long)j, (double)p);
            if (p != P[j * n + i])
                return cli_failf(c, "%s: not symmetric at [%lld, %lld]", path, (long long)i, (long long)j);
            if (i != j) sum += p;
        }
    if (fabs(sum - 1) > 1e-4) return cli_failf(c, "%s: the pairs off the diagonal sum to %g, not 1", path, sum);
    return 0;
}

/* t-SNE's cost and gradient at the map Y (n, 2) for pair probabilities P. */
static void print_tsne_cost(const float *Pf, const double *Y, int64_t n)
{
    double *P = malloc(sizeof(double) * (size_t)(n * n + 2 * n)), *grad = P ? P + n * n : NULL;
    if (!P) return;
    for (int64_t i = 0; i < n * n; i++) P[i] = Pf[i];
    sc_tsne_gradient(grad, Y, P, n, 1.0);
    printf("kl=%.17g\n", sc_tsne_kl(Y, P, n));
    print_rows("grad", grad, n, 2);
    free(P);
}

/* T(k) of the map Y (n, e) against X (n, d), and the k-NN accuracy of the
 * labels on the map when there are labels. */
static int print_map_scores(const cli *c, const char *x_path, const float *X, int64_t d, const double *Y, int64_t e,
                            int64_t n, const int *labels, int k)
{
    double t;
    sc_err err;
    if (sc_trustworthiness(X, d, Y, e, n, k, &t, &err) != SC_OK) return cli_failf(c, "%s: %s", x_path, err.msg);
    printf("trustworthiness=%.17g\n", t);
    if (labels) printf("knn_accuracy=%.17g\n", sc_knn_accuracy(Y, e, labels, n, k)); /* k < n / 2 holds */
    return 0;
}

/* Map X with t-SNE into Y (n, 2), print kl and write the map to `out`. */
static int run_tsne(const cli *c, double *Y, const float *X, int64_t n, int64_t d, const sc_tsne_config *cfg,
                    const char *out)
{
    double kl;
    sc_err err;
    if (sc_tsne(Y, X, n, d, cfg, &kl, &err) != SC_OK) return cli_fail(c, &err);
    printf("kl=%.17g\n", kl);
    if (!out) return 0;
    float *Yf = malloc(sizeof(float) * (size_t)(2 * n) + 1);
    if (!Yf) return cli_failf(c, "%s: out of memory", out);
    for (int64_t i = 0; i < 2 * n; i++) Yf[i] = (float)Y[i];
    int rc = sc_npy_write_f32(out, Yf, 2, (int64_t[]){n, 2}, &err) == SC_OK ? 0 : cli_fail(c, &err);
    free(Yf);
    return rc;
}

static int cmd_tsne(int argc, char **argv)
{
    const char *x_path = NULL, *out = NULL, *map_path = NULL, *labels_path = NULL, *p_path = NULL;
    int n_pos = 0;
    long k = 5;
    sc_tsne_config cfg = sc_tsne_defaults();
    cli c = cli_begin("tsne", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--out")) out = cli_str(&c);
        else if (cli_is(&c, "--map")) map_path = cli_str(&c);
        else if (cli_is(&c, "--labels")) labels_path = cli_str(&c);
        else if (cli_is(&c, "--affinities")) p_path = cli_str(&c);
        else if (cli_is(&c, "--perplexity")) cfg.perplexity = cli_double(&c);
        else if (cli_is(&c, "--iters")) cfg.iters = (int)cli_long(&c);
        else if (cli_is(&c, "--seed")) cfg.seed = (uint64_t)cli_long(&c);
        else if (cli_is(&c, "--k")) k = cli_long(&c);
        else if (cli_is(&c, "--help")) return printf("%s", tsne_usage), 0;
        else if (!cli_positional(&c, &x_path, &n_pos, 1)) return cli_unknown(&c);
    }
    if (c.bad) return 2;
    const char *misuse = !x_path && !(map_path && p_path) ? "X.npy is required (but for --map with --affinities)"
                         : p_path && !map_path           ? "--affinities needs --map"
                         : map_path && out               ? "--out writes a computed map, not one given with --map"
                         : labels_path && !x_path        ? "--labels needs X.npy"
                         : k < 1 || k > 64               ? "--k must lie in 1..64"
                         : !(cfg.perplexity > 0) || cfg.iters < 0 ? "--perplexity must be positive, --iters not negative"
                                                                  : NULL;
    if (misuse) return fprintf(stderr, "scale tsne: %s\n%s", misuse, tsne_usage), 2;

    float *X = NULL, *Ymap = NULL, *P = NULL;
    int *labels = NULL;
    double *Y = NULL;
    int64_t xs[2] = {-1, -1}, ys[2] = {-1, 2}, ps[2], n_labels;
    int rc = x_path ? load_floats(&c, x_path, 2, NULL, xs, &X) : 0;
    if (!rc && map_path) rc = load_floats(&c, map_path, 2, (int64_t[]){xs[0], p_path ? 2 : -1}, ys, &Ymap);
    int64_t n = map_path ? ys[0] : xs[0];
    if (!rc && p_path) rc = load_floats(&c, p_path, 2, (int64_t[]){n, n}, ps, &P);
    if (!rc && p_path) rc = check_affinities(&c, p_path, P, n);
    if (!rc && labels_path) rc = load_indices(&c, labels_path, n, &n_labels, &labels);
    if (!rc && !(Y = malloc(sizeof(double) * (size_t)(n * ys[1]) + 1))) rc = cli_failf(&c, "out of memory");
    for (int64_t i = 0; !rc && Ymap && i < n * ys[1]; i++) {
        Y[i] = Ymap[i];
        if (!isfinite(Y[i])) rc = cli_failf(&c, "%s: point %lld has a coordinate that is not a finite number",
                                            map_path, (long long)(i / ys[1]));
    }
    if (!rc && !map_path) rc = run_tsne(&c, Y, X, n, xs[1], &cfg, out);
    if (!rc && P) print_tsne_cost(P, Y, n);
    if (!rc && X) rc = print_map_scores(&c, x_path, X, xs[1], Y, ys[1], n, labels, (int)k);
    free(X), free(Ymap), free(P), free(labels), free(Y);
    return rc;
}

static const char synth_usage[] =
    "usage: scale synth derm7p --out DIR [--n 1011] [--seed S] [--size 192]\n"
    "                          [--format jpg|png] [--quality 92] [--no-images] [--quiet]\n"
    "       scale synth padchest-gr --out DIR [--n 748] [--seed S] [--size 256]\n"
    "                          [--normal-share 0.25] [--no-images] [--quiet]\n"
    "       scale synth derm7p|padchest-gr --contact-sheet FILE [--tile T] [--seed S]\n"
    "Write a synthetic look-alike of a dataset in its real release's layout, so the\n"
    "real readers load it (book/15-synthetic-world.md). Derm7p: DIR/release_v0 with\n"
    "meta/meta.csv, the three index files and the clinic and derm images (JPEG under\n"
    ".jpg/.JPG names as released, or PNG under .png/.PNG). PadChest-GR: DIR with\n"
    "grounded_reports_20240819.json, master_table.csv and 16-bit PNGs in PadChest_GR/.\n"
    "--no-images writes the metadata only (the same as with images); --quiet prints\n"
    "nothing but errors. The same options give the same bytes. --contact-sheet draws one example per criterion value\n"
    "(Derm7p) or per finding (PadChest-GR) into one image, JPEG if FILE ends in .jpg.\n";

/* On a terminal, one line rewritten in place as images are written. */
static void synth_progress(void *user, int done, int total)
{
    if (!isatty(2)) return;
    fprintf(stderr, "\rscale synth %s: images %d/%d", (const char *)user, done, total);
    if (done == total) fputc('\n', stderr);
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmd_synth(int argc, char **argv)
{
    if (argc < 2) return fprintf(stderr, "%s", synth_usage), 2;
    if (!strcmp(argv[1], "--help")) return printf("%s", synth_usage), 0;
    const char *kind = argv[1];
    int derm = !strcmp(kind, "derm7p"), padchest = !strcmp(kind, "padchest-gr");
    if (!derm && !padchest)
        return fprintf(stderr, "scale synth: unknown dataset '%s' (derm7p or padchest-gr)\n", kind), 2;
    sc_synth_derm7p_options dopt;
    sc_synth_padchest_options popt;
    sc_synth_derm7p_defaults(&dopt);
    sc_synth_padchest_defaults(&popt);
    const char *out = NULL, *sheet = NULL, *format = "jpg";
    long n = derm ? dopt.n : popt.n, size = derm ? dopt.size : popt.size, tile = derm ? 96 : 160;
    long seed = (long)dopt.seed, quality = dopt.quality;
    double normal_share = popt.normal_share;
    int images = 1, quiet = 0;
    cli c = cli_begin("synth", argc - 1, argv + 1);
    while (cli_next(&c)) {
        if (cli_is(&c, "--out")) out = cli_str(&c);
        else if (cli_is(&c, "--n")) n = cli_long(&c);
        else if (cli_is(&c, "--seed")) seed = cli_long(&c);
        else if (cli_is(&c, "--size")) size = cli_long(&c);
        else if (cli_is(&c, "--no-images")) images = 0;
        else if (cli_is(&c, "--quiet")) quiet = 1;
        else if (cli_is(&c, "--contact-sheet")) sheet = cli_str(&c);
        else if (cli_is(&c, "--tile")) tile = cli_long(&c);
        else if (derm && cli_is(&c, "--format")) format = cli_str(&c);
        else if (derm && cli_is(&c, "--quality")) quality = cli_long(&c);
        else if (padchest && cli_is(&c, "--normal-share")) normal_share = cli_double(&c);
        else if (cli_is(&c, "--help")) return printf("%s", synth_usage), 0;
        else return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (!out && !sheet) return fprintf(stderr, "scale synth: --out DIR or --contact-sheet FILE is needed\n%s", synth_usage), 2;
    if (strcmp(format, "jpg") && strcmp(format, "png"))
        return fprintf(stderr, "scale synth: --format must be jpg or png, not '%s'\n", format), 2;
    if (n < 1 || n > 1000000 || size < 32 || size > 4096 || seed < 0 || tile < 32 || tile > 1024 || quality < 1 ||
        quality > 100 || !(normal_share >= 0.0 && normal_share <= 1.0))
        return fprintf(stderr, "scale synth: an option is out of range (--n 1..1000000, --size 32..4096, --seed >= 0, "
                               "--tile 32..1024, --quality 1..100, --normal-share 0..1)\n"), 2;
    sc_err err;
    if (sheet) {
        sc_status st = derm ? sc_synth_derm7p_contact_sheet(sheet, (int)tile, (uint64_t)seed, &err)
                            : sc_synth_padchest_contact_sheet(sheet, (int)tile, (uint64_t)seed, &err);
        if (st) return cli_fail(&c, &err);
        if (!quiet) printf("scale synth %s: contact sheet %s\n", kind, sheet);
    }
    if (!out) return 0;
    double t0 = seconds_now();
    sc_status st;
    if (derm) {
        dopt.n = (int)n, dopt.seed = (uint64_t)seed, dopt.size = (int)size, dopt.quality = (int)quality;
        dopt.png = !strcmp(format, "png"), dopt.images = images;
        dopt.progress = quiet ? NULL : synth_progress, dopt.progress_user = (void *)kind;
        st = sc_synth_derm7p(out, &dopt, &err);
    } else {
        popt.n = (int)n, popt.seed = (uint64_t)seed, popt.size = (int)size, popt.normal_share = normal_share;
        popt.images = images;
        popt.progress = quiet ? NULL : synth_progress, popt.progress_user = (void *)kind;
        st = sc_synth_padchest_gr(out, &popt, &err);
    }
    if (st) return cli_fail(&c, &err);
    if (!quiet)
        printf("scale synth %s: %ld %s%s in %s%s (seed %ld), %.1f s\n", kind, n, derm ? "cases" : "studies",
               images ? "" : " (no images)", out, derm ? "/release_v0" : "", seed, seconds_now() - t0);
    return 0;
}

/* ---- scale pretrain: a tiny CLIP from scratch on synthetic pairs ---------
 *
 * The paper's story needs a medical VLM that knows diagnoses but not the
 * fine-grained concepts behind them (MONET in its Table 1). The real ones
 * are too large to ship, so `scale pretrain` trains a small CLIP on a
 * Derm7p-layout dataset (the synthetic one of `scale synth derm7p`) with
 * captions written the way image captions in the literature are: they name
 * the diagnosis most of the time and a dermoscopic structure only now and
 * then, loosely ("with streaks", never "irregular streaks"), so the text
 * tower never learns which expression of a criterion points to melanoma.
 * book/15 tells the whole story; the steps below follow it. */

/* @book begin caption-words */
/* The seven criteria in meta.csv's column order, and the loose words a
 * caption may use for one that is present: a generic phrase, or a
 * description of its expression in words the checklist's names never use
 * ("uneven streaks on one side", not "irregular streaks"). */
typedef struct {
    const char *value, *words;
} caption_expression;

static const struct {
    const char *column;
    const char *phrase[2];
    caption_expression expression[8];   /* ends with {NULL, NULL} */
} caption_criteria[7] = {
    {"pigment_network", {"with a pigment network", "a network pattern"},
     {{"typical", "a fine even network"}, {"atypical", "a coarse broken network"}}},
    {"streaks", {"with streaks", "some streaks at the border"},
     {{"regular", "streaks evenly around the rim"}, {"irregular", "uneven streaks on one side"}}},
    {"pigmentation", {"with dark pigmentation", "pigmented"},
     {{"localized regular", "a small even dark spot"}, {"diffuse regular", "evenly dark throughout"},
      {"localized irregular", "a dark blotch off centre"}, {"diffuse irregular", "patchy dark blotches throughout"}}},
    {"regression_structures", {"with regression", "some pale areas"},
     {{"blue areas", "bluish peppering"}, {"white areas", "a scar-like pale patch"},
      {"combinations", "pale scarring with bluish peppering"}}},
    {"dots_and_globules", {"some dots", "with globules"},
     {{"regular", "evenly spread dots"}, {"irregular", "clustered dots of uneven size"}}},
    {"blue_whitish_veil", {"with a bluish veil", "some blue color"}, {{"present", "a bluish veil"}}},
    {"vascular_structures", {"with vessels", "vessels visible"},
     {{"arborizing", "branching vessels"}, {"comma", "short curved vessels"}, {"hairpin", "looped vessels"},
      {"within regression", "vessels inside a pale patch"}, {"wreath", "vessels ringing the rim"},
      {"dotted", "pinpoint vessels"}, {"linear irregular", "winding vessels"}}},
};

/* The words for criterion i's value v: its expression's description, or
 * (also when the value is not listed) one of the generic phrases. */
static const char *caption_structure(int i, const char *v, sc_rng *rng)
{
    int how = (int)sc_rng_below(rng, 3);
    for (int k = 0; how == 2 && k < 8 && caption_criteria[i].expression[k].value; k++)
        if (!strcmp(caption_criteria[i].expression[k].value, v)) return caption_criteria[i].expression[k].words;
    return caption_criteria[i].phrase[how & 1];
}
/* @book end caption-words */

/* How the captions name a diagnosis: the specific name, or the coarse one
 * (melanoma, nevus) that zero-shot prompts use. */
static const struct {
    const char *diagnosis, *specific, *coarse;
} caption_diagnoses[] = {
    {"melanoma (in situ)", "melanoma in situ", "melanoma"},
    {"melanoma (less than 0.76 mm)", "thin melanoma", "melanoma"},
    {"melanoma (0.76 to 1.5 mm)", "invasive melanoma", "melanoma"},
    {"melanoma (more than 1.5 mm)", "thick melanoma", "melanoma"},
    {"reed or spitz nevus", "spitz nevus", "nevus"},
    {"miscellaneous", "skin lesion", "skin lesion"},
};

/* Caption templates: {d} the diagnosis (with its article), {l} the body
 * location, {e} the elevation. */
static const char *const caption_templates[] = {
    "dermoscopy of {d}.",
    "{d}, dermoscopic image.",
    "dermoscopic image of {d} on the {l}.",
    "a photo of a skin lesion: {d}.",
    "this is dermatoscopy of {d}.",
    "{e} lesion on the {l}, {d}.",
    "{d}.",
    "a skin lesion which indicates {d}.",
    "close-up of {d}, {l}.",
};

typedef struct {
    const char *diagnosis, *location, *elevation;
    const char *criteria[7];     /* meta.csv values */
    char image[4096];            /* the dermoscopic image's file */
} captioned_case;

/* "a melanoma", "an invasive melanoma": the diagnosis words of a case. */
static void caption_diagnosis(char *out, size_t n, const char *dx, int coarse)
{
    const char *words = dx;
    for (size_t i = 0; i < sizeof caption_diagnoses / sizeof caption_diagnoses[0]; i++)
        if (!strcmp(dx, caption_diagnoses[i].diagnosis)) words = coarse ? caption_diagnoses[i].coarse : caption_diagnoses[i].specific;
    if (coarse && words == dx) {
        if (strstr(dx, "melanoma")) words = "melanoma";
        else if (strstr(dx, "nevus")) words = "nevus";
    }
    snprintf(out, n, "%s %s", strchr("aeiou", words[0]) ? "an" : "a", words);
}

/* @book begin derm-caption */
/* One caption for a case: a template naming the diagnosis (its specific or
 * its coarse name, even odds), and one time in three a loose mention of
 * one criterion the image shows. */
static void derm_caption(char *out, size_t n, const captioned_case *c, sc_rng *rng)
{
    char dx[128], text[512];
    caption_diagnosis(dx, sizeof dx, c->diagnosis, (int)sc_rng_below(rng, 2));
    const char *t = caption_templates[sc_rng_below(rng, sizeof caption_templates / sizeof caption_templates[0])];
    size_t k = 0;
    for (; *t && k + 1 < sizeof text; t++) {
        const char *fill = t[0] == '{' && t[1] && t[2] == '}'
                               ? (t[1] == 'd' ? dx : t[1] == 'l' ? c->location : c->elevation)
                               : NULL;
        if (fill) {
            k += (size_t)snprintf(text + k, sizeof text - k, "%s", fill);
            t += 2;
        } else {
            text[k++] = *t;
        }
        if (k >= sizeof text) k = sizeof text - 1;
    }
    text[k] = 0;
    int present[7], n_present = 0;
    for (int i = 0; i < 7; i++)
        if (strcmp(c->criteria[i], "absent")) present[n_present++] = i;
    if (n_present && sc_rng_below(rng, 3) == 0) {
        int i = present[sc_rng_below(rng, (uint32_t)n_present)];
        size_t dot = strlen(text) - (text[strlen(text) - 1] == '.');
        text[dot] = 0;
        /* A caption longer than out is cut there, as every text here is. */
        if (snprintf(out, n, "%s, %s.", text, caption_structure(i, c->criteria[i], rng)) >= (int)n) return;
    } else {
        snprintf(out, n, "%s", text);
    }
}
/* @book end derm-caption */

/* A Derm7p-layout dataset: DIR/release_v0 or release_v0 itself. */
static void derm7p_root(const char *dir, char *root, size_t n)
{
    snprintf(root, n, "%s/release_v0/meta/meta.csv", dir);
    if (access(root, R_OK) == 0) snprintf(root, n, "%s/release_v0", dir);
    else snprintf(root, n, "%s", dir);
}

/* The cases of meta.csv, pointing into csv (which must stay loaded). */
static sc_status captioned_cases_load(sc_csv *csv, const char *dir, captioned_case **out, int64_t *n, sc_err *err)
{
    char root[4096], path[4200];
    derm7p_root(dir, root, sizeof root);
    snprintf(path, sizeof path, "%s/meta/meta.csv", root);
    *out = NULL;
    sc_status st = sc_csv_load(csv, path, NULL, err);
    if (st) return st;
    int col_dx, col_loc, col_elev, col_derm, col_crit[7];
    st = sc_csv_require_column(csv, "diagnosis", &col_dx, err);
    if (!st) st = sc_csv_require_column(csv, "location", &col_loc, err);
    if (!st) st = sc_csv_require_column(csv, "elevation", &col_elev, err);
    if (!st) st = sc_csv_require_column(csv, "derm", &col_derm, err);
    for (int i = 0; i < 7 && !st; i++) st = sc_csv_require_column(csv, caption_criteria[i].column, &col_crit[i], err);
    captioned_case *cases = st ? NULL : calloc((size_t)(csv->n_rows ? csv->n_rows : 1), sizeof *cases);
    if (!st && !cases) st = sc_fail(err, SC_ENOMEM, "%s: out of memory for %lld cases", path, (long long)csv->n_rows);
    for (int64_t r = 0; !st && r < csv->n_rows; r++) {
        captioned_case *c = &cases[r];
        c->diagnosis = sc_csv_get(csv, r, col_dx);
        c->location = sc_csv_get(csv, r, col_loc);
        c->elevation = sc_csv_get(csv, r, col_elev);
        for (int i = 0; i < 7; i++) c->criteria[i] = sc_csv_get(csv, r, col_crit[i]);
        int len = snprintf(c->image, sizeof c->image, "%s/images/%s", root, sc_csv_get(csv, r, col_derm));
        if (len < 0 || (size_t)len >= sizeof c->image)
            st = sc_csv_fail(err, SC_ERANGE, csv, r, col_derm, "the image path is too long");
        else if (!*c->diagnosis || !*sc_csv_get(csv, r, col_derm))
            st = sc_csv_fail(err, SC_EFORMAT, csv, r, -1, "no diagnosis or no dermoscopic image");
    }
    if (st) {
        free(cases);
        sc_csv_free(csv);
        return st;
    }
    *out = cases;
    *n = csv->n_rows;
    return SC_OK;
}

/* ---- the tokenizer and preprocessing files of the new model ---- */

/* tokenizer_config.json and special_tokens_map.json as Hugging Face's
 * CLIPTokenizer writes them. */
static sc_status write_tokenizer_config(const char *dir, int max_length, sc_err *err)
{
    char path[4200];
    sc_json_writer w;
    sc_json_writer_init(&w, 2);
    sc_json_begin_object(&w);
    sc_json_put_key(&w, "bos_token");
    sc_json_put_string(&w, "<|startoftext|>");
    sc_json_put_key(&w, "do_lower_case");
    sc_json_put_bool(&w, 1);
    sc_json_put_key(&w, "eos_token");
    sc_json_put_string(&w, "<|endoftext|>");
    sc_json_put_key(&w, "model_max_length");
    sc_json_put_int(&w, max_length);
    sc_json_put_key(&w, "pad_token");
    sc_json_put_string(&w, "<|endoftext|>");
    sc_json_put_key(&w, "tokenizer_class");
    sc_json_put_string(&w, "CLIPTokenizer");
    sc_json_put_key(&w, "unk_token");
    sc_json_put_string(&w, "<|endoftext|>");
    sc_json_end_object(&w);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    sc_status st = sc_json_writer_save(&w, path, err);
    sc_json_writer_free(&w);
    if (st) return st;
    sc_json_writer_init(&w, 2);
    sc_json_begin_object(&w);
    const char *keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    for (int i = 0; i < 4; i++) {
        sc_json_put_key(&w, keys[i]);
        sc_json_put_string(&w, i ? "<|endoftext|>" : "<|startoftext|>");
    }
    sc_json_end_object(&w);
    snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
    st = sc_json_writer_save(&w, path, err);
    sc_json_writer_free(&w);
    return st;
}

/* preprocessor_config.json: CLIP's pipeline (bicubic resize of the shorter
 * side, centre crop) at side S, normalised by the statistics of the
 * training images, as MONET normalises by those of its own data. */
static sc_status write_preprocessor_config(const char *dir, int S, const double *mean, const double *std,
                                           sc_err *err)
{
    char path[4200];
    sc_json_writer w;
    sc_json_writer_init(&w, 2);
    sc_json_begin_object(&w);
    sc_json_put_key(&w, "crop_size");
    sc_json_begin_object(&w);
    sc_json_put_key(&w, "height");
    sc_json_put_int(&w, S);
    sc_json_put_key(&w, "width");
    sc_json_put_int(&w, S);
    sc_json_end_object(&w);
    const char *flags[5] = {"do_center_crop", "do_convert_rgb", "do_normalize", "do_rescale", "do_resize"};
    for (int i = 0; i < 5; i++) {
        sc_json_put_key(&w, flags[i]);
        sc_json_put_bool(&w, 1);
    }
    for (int which = 0; which < 2; which++) {
        sc_json_put_key(&w, which ? "image_std" : "image_mean");
        sc_json_begin_array(&w);
        for (int k = 0; k < 3; k++) sc_json_put_number(&w, round((which ? std : mean)[k] * 1e4) / 1e4);
        sc_json_end_array(&w);
        if (!which) {
            sc_json_put_key(&w, "image_processor_type");
            sc_json_put_string(&w, "CLIPImageProcessor");
        }
    }
    sc_json_put_key(&w, "resample");
    sc_json_put_int(&w, 3);
    sc_json_put_key(&w, "rescale_factor");
    sc_json_put_number(&w, 1.0 / 255.0);
    sc_json_put_key(&w, "size");
    sc_json_begin_object(&w);
    sc_json_put_key(&w, "shortest_edge");
    sc_json_put_int(&w, S);
    sc_json_end_object(&w);
    sc_json_end_object(&w);
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    sc_status st = sc_json_writer_save(&w, path, err);
    sc_json_writer_free(&w);
    return st;
}

/* Every case's image through CLIP's pipeline at side S, up to the 8-bit
 * crop; *u8 (n, S, S, 3). */
static sc_status derm_images_u8(const captioned_case *cases, int64_t n, int S, uint8_t **u8, sc_err *err)
{
    sc_pipeline p;
    sc_status st = sc_pipeline_named("clip", &p, err);
    if (st) return st;
    p.size = p.crop = S;
    size_t per = (size_t)S * (size_t)S * 3;
    *u8 = malloc(per * (size_t)n);
    if (!*u8) return sc_fail(err, SC_ENOMEM, "out of memory for %lld images", (long long)n);
    for (int64_t i = 0; i < n && !st; i++) {
        sc_image img, small;
        st = sc_image_load(cases[i].image, &img, err);
        if (!st) st = sc_pipeline_u8(&p, &img, &small, err);
        if (!st) {
            memcpy(*u8 + (size_t)i * per, small.pixels, per);
            sc_image_free(&small);
        }
        sc_image_free(&img);
    }
    if (st) {
        free(*u8);
        *u8 = NULL;
    }
    return st;
}

/* The model's own preprocessing (from the files in dir) of the 8-bit
 * crops: pixels (n, 3, S, S). Resizing and cropping an S × S image to
 * S × S change nothing, so this is what the pipeline makes of the
 * original files. */
static sc_status derm_pixels(const char *dir, const uint8_t *u8, int64_t n, int S, float *pixels, sc_err *err)
{
    sc_pipeline p;
    sc_status st = sc_pipeline_for_model(dir, NULL, &p, err);
    if (!st && sc_pipeline_side(&p) != S)
        st = sc_fail(err, SC_EFORMAT, "%s: the preprocessing gives side %d, not %d", dir, sc_pipeline_side(&p), S);
    size_t per = (size_t)S * (size_t)S * 3;
    for (int64_t i = 0; i < n && !st; i++) {
        sc_image img;
        memset(&img, 0, sizeof img);
        img.width = img.height = S;
        img.channels = 3;
        img.bits = 8;
        img.pixels = (uint8_t *)u8 + (size_t)i * per;
        st = sc_pipeline_run(&p, &img, pixels + (size_t)i * per, err);
    }
    return st;
}

/* ---- the command ---- */

typedef struct {
    const char *data, *out;        /* training set, model directory */
    long seed, threads, captions, merges, rows;
    sc_pretrain_config train;
    sc_model_config model_cfg;
} pretrain_args;

/* The shipped tiny VLM: a 64 × 64 ViT with 8 × 8 patches, width 64, three
 * layers; a two-layer text tower of width 64 with CLIP's 77 positions (so
 * every caller's default tokenizer length fits); both project to 64. */
static sc_model_config tiny_vlm_config(void)
{
    sc_model_config c;
    memset(&c, 0, sizeof c);
    c.kind = SC_MODEL_CLIP;
    c.embed_dim = 64;
    sc_vit_config v = {64, 8, 64, 3, 2, 256, 1e-5f, SC_ACT_QUICK_GELU};
    sc_clip_text_config t = {0, 77, 64, 2, 2, 256, 1e-5f, SC_ACT_QUICK_GELU, -1};
    c.vision = v;
    c.text = t;
    return c;
}

/* Captions of every case (K each, case-major) from their own stream. */
static char **pretrain_captions(const captioned_case *cases, int64_t n, int64_t K, uint64_t seed)
{
    char **texts = calloc((size_t)(n * K), sizeof *texts);
    if (!texts) return NULL;
    sc_rng rng;
    sc_rng_seed(&rng, seed ^ 0xCA9710Eull);
    for (int64_t i = 0; i < n * K; i++) {
        char buf[512];
        derm_caption(buf, sizeof buf, &cases[i / K], &rng);
        texts[i] = strdup(buf);
        if (!texts[i]) {
            for (int64_t k = 0; k < i; k++) free(texts[k]);
            free(texts);
            return NULL;
        }
    }
    return texts;
}

/* Token rows (n·K, T) of the captions with the tokenizer in dir. */
static sc_status pretrain_tokens(const char *dir, char *const *texts, int64_t count, int T, int64_t **ids,
                                 int64_t *vocab, int64_t *eos, sc_err *err)
{
    sc_tok_options opt = sc_tok_defaults();
    opt.max_length = T;
    sc_tokenizer *tok;
    sc_status st = sc_tokenizer_load(&tok, dir, &opt, err);
    if (st) return st;
    *ids = malloc(sizeof(int64_t) * (size_t)(count * T));
    if (!*ids) st = sc_fail(err, SC_ENOMEM, "out of memory for %lld captions", (long long)count);
    for (int64_t i = 0; i < count && !st; i++) {
        int truncated;
        st = sc_tokenizer_encode(tok, texts[i], strlen(texts[i]), *ids + i * T, NULL, NULL, &truncated, err);
        if (!st && truncated)
            st = sc_fail(err, SC_ERANGE, "caption '%s' needs more than %d tokens (raise --rows)", texts[i], T);
    }
    *vocab = sc_tokenizer_vocab_size(tok);
    *eos = sc_tokenizer_id(tok, "<|endoftext|>");
    sc_tokenizer_free(tok);
    if (st) {
        free(*ids);
        *ids = NULL;
    }
    return st;
}

/* Per-channel mean and standard deviation of 8-bit crops (n, S, S, 3) as
 * the pipeline scales them (x / 255). */
static void pixel_stats(const uint8_t *u8, int64_t n, int S, double *mean, double *std)
{
    double s[3] = {0}, ss[3] = {0};
    int64_t count = n * S * S;
    for (int64_t i = 0; i < count; i++)
        for (int k = 0; k < 3; k++) {
            double x = u8[i * 3 + k] / 255.0;
            s[k] += x;
            ss[k] += x * x;
        }
    for (int k = 0; k < 3; k++) {
        mean[k] = s[k] / (double)count;
        std[k] = sqrt(fmax(ss[k] / (double)count - mean[k] * mean[k], 1e-12));
    }
}

/* Train a model into `stage`: tokenizer, preprocessing, weights. */
static sc_status pretrain_into(const pretrain_args *a, const char *stage, sc_err *err)
{
    double t0 = seconds_now();
    sc_csv csv;
    captioned_case *cases;
    int64_t n, K = a->captions;
    sc_status st = captioned_cases_load(&csv, a->data, &cases, &n, err);
    if (st) return st;
    char **texts = pretrain_captions(cases, n, K, (uint64_t)a->seed);
    if (!texts) st = sc_fail(err, SC_ENOMEM, "out of memory for the captions");
    int merges = 0;
    if (!st) st = sc_bpe_learn((const char *const *)texts, n * K, (int)a->merges, stage, &merges, err);
    if (!st) st = write_tokenizer_config(stage, (int)a->model_cfg.text.context, err);
    int64_t *ids = NULL, vocab = 0, eos = 0;
    if (!st) st = pretrain_tokens(stage, texts, n * K, (int)a->rows, &ids, &vocab, &eos, err);
    if (!st) printf("captions: %lld per image, %d merges, %lld tokens in the vocabulary; e.g. \"%s\"\n",
                    (long long)K, merges, (long long)vocab, texts[0]);
    int S = (int)a->model_cfg.vision.image_size;
    uint8_t *u8 = NULL;
    float *pixels = NULL;
    if (!st) st = derm_images_u8(cases, n, S, &u8, err);
    if (!st) {
        double mean[3], std[3];
        pixel_stats(u8, n, S, mean, std);
        st = write_preprocessor_config(stage, S, mean, std, err);
        pixels = st ? NULL : malloc(sizeof(float) * (size_t)(n * 3 * S * S));
        if (!st && !pixels) st = sc_fail(err, SC_ENOMEM, "out of memory for %lld images", (long long)n);
        if (!st) st = derm_pixels(stage, u8, n, S, pixels, err);
    }
    if (!st) printf("images: %lld of %d x %d, prepared in %.1f s\n", (long long)n, S, S, seconds_now() - t0);
    sc_model *m = NULL;
    sc_model_config cfg = a->model_cfg;
    cfg.text.vocab = vocab;
    cfg.text.eos_token_id = eos;
    if (!st) st = sc_model_new_trainable(&m, &cfg, (uint64_t)a->seed, err);
    sc_pretrain_data d = {n, S, pixels, K, a->rows, ids};
    sc_pretrainer tr;
    int have_trainer = 0;
    if (!st) st = sc_pretrainer_init(&tr, m, &d, &a->train, err);
    have_trainer = st == SC_OK;
    if (!st) {
        sc_ctx ctx;
        sc_ctx_init(&ctx);
        double t1 = seconds_now(), sum = 0;
        int64_t every = a->train.steps >= 20 ? a->train.steps / 20 : 1, count = 0;
        for (int64_t s = 0; s < a->train.steps; s++) {
            sum += sc_pretrainer_step(&tr, m, &ctx, &d);
            count++;
            if ((s + 1) % every == 0 || s + 1 == a->train.steps) {
                printf("step %5lld/%lld  loss %.4f  lr %.2e  logit scale %6.2f  %6.1f s\n", (long long)(s + 1),
                       (long long)a->train.steps, sum / (double)count, (double)tr.decay.cfg.lr,
                       exp((double)sc_model_logit_scale_raw(m)), seconds_now() - t1);
                fflush(stdout);
                sum = 0;
                count = 0;
            }
        }
        sc_ctx_free(&ctx);
        st = sc_model_save(m, stage, err);
    }
    if (have_trainer) sc_pretrainer_free(&tr);
    sc_model_free(m);
    free(pixels);
    free(u8);
    free(ids);
    for (int64_t i = 0; texts && i < n * K; i++) free(texts[i]);
    free(texts);
    free(cases);
    sc_csv_free(&csv);
    return st;
}

/* The files a model directory holds, moved from stage to out one by one
 * (each rename is atomic). */
static const char *const model_files[] = {"config.json", "model.safetensors", "vocab.json", "merges.txt",
                                          "tokenizer_config.json", "special_tokens_map.json",
                                          "preprocessor_config.json"};

static void stage_remove(const char *stage)
{
    char path[4200];
    for (size_t i = 0; i < sizeof model_files / sizeof model_files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", stage, model_files[i]);
        unlink(path);
    }
    rmdir(stage);
}

static sc_status stage_publish(const char *stage, const char *out, sc_err *err)
{
    if (mkdir(out, 0777) != 0 && errno != EEXIST)
        return sc_fail(err, SC_EIO, "%s: cannot create directory: %s", out, strerror(errno));
    char from[4200], to[4200];
    for (size_t i = 0; i < sizeof model_files / sizeof model_files[0]; i++) {
        snprintf(from, sizeof from, "%s/%s", stage, model_files[i]);
        snprintf(to, sizeof to, "%s/%s", out, model_files[i]);
        if (rename(from, to) != 0) return sc_fail(err, SC_EIO, "%s: cannot move into place: %s", to, strerror(errno));
    }
    rmdir(stage);
    return SC_OK;
}

static const char pretrain_usage[] =
    "usage: scale pretrain --data DIR --out DIR [--seed S] [--threads T]\n"
    "                      [--steps N] [--batch B] [--lr X] [--warmup N]\n"
    "                      [--weight-decay X] [--captions K] [--merges M]\n"
    "                      [--rows T] [--image-size S] [--patch P] [--width C]\n"
    "                      [--layers L] [--text-layers L] [--embed E]\n\n"
    "Train a small CLIP from scratch with the CLIP contrastive loss on the\n"
    "dermoscopic images of a Derm7p-layout dataset (scale synth derm7p) and\n"
    "captions that name the diagnosis often and a structure rarely\n"
    "(book/15-synthetic-world.md, 15.8). --out becomes a Hugging Face model directory:\n"
    "config.json, model.safetensors, vocab.json, merges.txt,\n"
    "tokenizer_config.json, special_tokens_map.json, preprocessor_config.json,\n"
    "written to a staging directory first, so a failed run leaves the old files.\n"
    "The same seed gives the same bytes (for any thread count). The defaults\n"
    "make the shipped data/tiny-vlm (make pretrain); --rows is the token row\n"
    "length used in training, --captions the captions drawn per image.\n";

static int cmd_pretrain(int argc, char **argv)
{
    pretrain_args a;
    memset(&a, 0, sizeof a);
    a.seed = 7;
    a.captions = 4;
    a.merges = 400;
    a.rows = 32;
    a.train = sc_pretrain_defaults();
    a.model_cfg = tiny_vlm_config();
    cli c = cli_begin("pretrain", argc, argv);
    while (cli_next(&c)) {
        if (cli_is(&c, "--help")) return printf("%s", pretrain_usage), 0;
        else if (cli_is(&c, "--data")) a.data = cli_str(&c);
        else if (cli_is(&c, "--out")) a.out = cli_str(&c);
        else if (cli_is(&c, "--seed")) a.seed = cli_long(&c);
        else if (cli_is(&c, "--threads")) a.threads = cli_long(&c);
        else if (cli_is(&c, "--captions")) a.captions = cli_long(&c);
        else if (cli_is(&c, "--merges")) a.merges = cli_long(&c);
        else if (cli_is(&c, "--rows")) a.rows = cli_long(&c);
        else if (cli_is(&c, "--steps")) a.train.steps = cli_long(&c);
        else if (cli_is(&c, "--batch")) a.train.batch = cli_long(&c);
        else if (cli_is(&c, "--warmup")) a.train.warmup = cli_long(&c);
        else if (cli_is(&c, "--lr")) a.train.lr = cli_float(&c);
        else if (cli_is(&c, "--weight-decay")) a.train.weight_decay = cli_float(&c);
        else if (cli_is(&c, "--image-size")) a.model_cfg.vision.image_size = cli_long(&c);
        else if (cli_is(&c, "--patch")) a.model_cfg.vision.patch = cli_long(&c);
        else if (cli_is(&c, "--width")) {
            a.model_cfg.vision.width = a.model_cfg.text.width = cli_long(&c);
            a.model_cfg.vision.mlp = a.model_cfg.text.mlp = 4 * a.model_cfg.vision.width;
        } else if (cli_is(&c, "--layers")) a.model_cfg.vision.layers = cli_long(&c);
        else if (cli_is(&c, "--text-layers")) a.model_cfg.text.layers = cli_long(&c);
        else if (cli_is(&c, "--embed")) a.model_cfg.embed_dim = cli_long(&c);
        else return cli_unknown(&c);
    }
    if (c.bad) return 2;
    if (!a.data || !a.out) {
        fprintf(stderr, "scale pretrain: --data and --out are required (try 'scale pretrain --help')\n");
        return 2;
    }
    if (a.captions < 1 || a.captions > 64 || a.merges < 0 || a.merges > 100000 || a.rows < 4 || a.threads < 0 ||
        a.rows > a.model_cfg.text.context) {
        fprintf(stderr, "scale pretrain: --captions 1..64, --merges 0..100000, --rows 4..%lld, --threads >= 0\n",
                (long long)a.model_cfg.text.context);
        return 2;
    }
    if (a.threads > 0) sc_set_threads((int)a.threads);
    char stage[4096];
    snprintf(stage, sizeof stage, "%s.tmp.%ld", a.out, (long)getpid());
    double t0 = seconds_now();
    printf("scale pretrain: %s -> %s (seed %ld, %d thread%s)\n", a.data, a.out, a.seed, sc_threads(),
           sc_threads() == 1 ? "" : "s");
    sc_err err;
    sc_status st = SC_OK;
    if (mkdir(stage, 0777) != 0) st = sc_fail(&err, SC_EIO, "%s: cannot create directory: %s", stage, strerror(errno));
    if (!st) st = pretrain_into(&a, stage, &err);
    if (!st) st = stage_publish(stage, a.out, &err);
    stage_remove(stage);
    if (st) return cli_fail(&c, &err);
    printf("scale pretrain: %s written in %.1f s\n", a.out, seconds_now() - t0);
    return 0;
}

/* ---- 8f. The command table and main -------------------------------------- */

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
    {"compare", cmd_compare, "compare two arrays: largest difference and cosine row by row"},
    {"dataset", cmd_dataset, "read and check a dataset (Derm7p, PadChest-GR, manifest); print its counts"},
    {"embed", cmd_embed, "embed a dataset's images and texts once into a cache (shards, merge)"},
    {"cache", cmd_cache, "check an embedding cache and whether it is stale"},

    /* SCALE */
    {"hier", cmd_hier, "check a class-concept hierarchy and list its prompts"},
    {"loss", cmd_loss, "every term of the SCALE loss (Eq. 3) and dTotal/dQ"},
    {"train", cmd_train, "train SCALE's adapters on cached embeddings"},
    {"predict", cmd_predict, "score, explain and evaluate images with trained adapters"},
    {"metrics", cmd_metrics, "accuracy, macro recall, macro F1 and AUC of scores"},

    /* experiments */
    {"experiment", cmd_experiment, "reproduce the paper's figures: methods x fractions x subsets on a cache"},
    {"tsne", cmd_tsne, "map embeddings to the plane with t-SNE (Fig. 4); trustworthiness of a map"},
    {"synth", cmd_synth, "a synthetic Derm7p or PadChest-GR in the real layout"},
    {"pretrain", cmd_pretrain, "train a tiny CLIP from scratch on synthetic image-caption pairs"},

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
