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
 *   6. The `scale` command
 *      6a. argument helpers
 *      6b. commands: inputs (decode, preprocess, tokenize)
 *      6c. commands: models (encode, embed)
 *      6d. commands: SCALE (loss, metrics, train, predict)
 *      6e. commands: experiments, synthetic data, demo
 *      6f. the command table and main
 *
 * The command-line `main` sits behind `#ifndef SC_NO_MAIN` so the test
 * runner can link this file without it.
 */
#define _POSIX_C_SOURCE 200809L
#include "scale.h"

#include <ctype.h>
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
    L->offset = v2(rng_range(r, -0.12f, 0.12f), rng_range(r, -0.12f, 0.12f));
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
            float rho = clampf(rng_range(r, 0.45f, 0.85f) + 0.12f * sc_rng_normal(r), 0.1f, 0.92f);
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
            vec2 p = lesion_at(L, rng_range(r, 0.1f, 0.8f), rng_range(r, 0.0f, 6.2831853f));
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
            vec2 c = lesion_at(L, rng_range(r, 0.1f, 0.72f), rng_range(r, 0.0f, 6.2831853f));
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
                vec2 p = v2(x + 0.05f * sc_rng_normal(r), y + 0.05f * sc_rng_normal(r));
                if (blob_sdf(&L->shape, p) < -0.2f * L->shape.r) add_dot(L, p, rng_range(r, 0.033f, 0.04f), COL_VESSEL, 0.95f);
            }
        break;
    case VS_LINEAR_IRREGULAR:
        for (int k = 0, n = 3 + (int)sc_rng_below(r, 4); k < n; k++)
            add_wander(L, r, lesion_at(L, rng_range(r, 0.0f, 0.6f), rng_range(r, 0.0f, 6.2831853f)),
                       rng_range(r, 0.0f, 6.2831853f), 6 + (int)sc_rng_below(r, 5), 0.11f, 1.0f, 0.02f, 0.04f);
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
        vec2 aim = v2(rng_range(r, -0.8f, 0.8f), rng_range(r, -0.8f, 0.8f));
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
            vec2 hilum = v2(0.4f + rng_range(r, -0.01f, 0.01f), 0.42f + rng_range(r, -0.03f, 0.03f));
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
                ch->cons_c[s] = v2(rng_range(r, 0.24f, 0.31f), ch->dome[s] - rng_range(r, 0.06f, 0.09f));
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
/* 6. The `scale` command                                                    */
/* ======================================================================== */
#ifndef SC_NO_MAIN

/* ---- 6a. Argument helpers ----------------------------------------------
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

/* ---- 6b. Commands: inputs (decode, preprocess, tokenize) ---------------- */

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

/* ---- 6c. Commands: models (encode, embed) -------------------------------- */

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


/* ---- 6d. Commands: SCALE (loss, metrics, train, predict) ---------------- */

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

/* ---- 6e. Commands: experiments, synthetic data, demo --------------------- */

static const char synth_usage[] =
    "usage: scale synth derm7p --out DIR [--n 1011] [--seed S] [--size 192]\n"
    "                          [--format jpg|png] [--quality 92] [--no-images]\n"
    "       scale synth padchest-gr --out DIR [--n 748] [--seed S] [--size 256]\n"
    "                          [--normal-share 0.25] [--no-images]\n"
    "       scale synth derm7p|padchest-gr --contact-sheet FILE [--tile T] [--seed S]\n"
    "Write a synthetic look-alike of a dataset in its real release's layout, so the\n"
    "real readers load it (book/15-synthetic-world.md). Derm7p: DIR/release_v0 with\n"
    "meta/meta.csv, the three index files and the clinic and derm images (JPEG under\n"
    ".jpg/.JPG names as released, or PNG under .png/.PNG). PadChest-GR: DIR with\n"
    "grounded_reports_20240819.json, master_table.csv and 16-bit PNGs in PadChest_GR/.\n"
    "--no-images writes the metadata only (the same as with images). The same options\n"
    "give the same bytes. --contact-sheet draws one example per criterion value\n"
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
    int images = 1;
    cli c = cli_begin("synth", argc - 1, argv + 1);
    while (cli_next(&c)) {
        if (cli_is(&c, "--out")) out = cli_str(&c);
        else if (cli_is(&c, "--n")) n = cli_long(&c);
        else if (cli_is(&c, "--seed")) seed = cli_long(&c);
        else if (cli_is(&c, "--size")) size = cli_long(&c);
        else if (cli_is(&c, "--no-images")) images = 0;
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
        printf("scale synth %s: contact sheet %s\n", kind, sheet);
    }
    if (!out) return 0;
    double t0 = seconds_now();
    sc_status st;
    if (derm) {
        dopt.n = (int)n, dopt.seed = (uint64_t)seed, dopt.size = (int)size, dopt.quality = (int)quality;
        dopt.png = !strcmp(format, "png"), dopt.images = images;
        dopt.progress = synth_progress, dopt.progress_user = (void *)kind;
        st = sc_synth_derm7p(out, &dopt, &err);
    } else {
        popt.n = (int)n, popt.seed = (uint64_t)seed, popt.size = (int)size, popt.normal_share = normal_share;
        popt.images = images;
        popt.progress = synth_progress, popt.progress_user = (void *)kind;
        st = sc_synth_padchest_gr(out, &popt, &err);
    }
    if (st) return cli_fail(&c, &err);
    printf("scale synth %s: %ld %s%s in %s%s (seed %ld), %.1f s\n", kind, n, derm ? "cases" : "studies",
           images ? "" : " (no images)", out, derm ? "/release_v0" : "", seed, seconds_now() - t0);
    return 0;
}

/* ---- 6f. The command table and main -------------------------------------- */

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
    {"synth", cmd_synth, "a synthetic Derm7p or PadChest-GR in the real layout"},

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
