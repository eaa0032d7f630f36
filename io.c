/* io.c — every byte from outside enters here.
 *
 * Contents
 *   1. Whole files and the bounded cursor
 *   2. JSON
 *   3. .npy
 *   4. safetensors
 *   5. zip archives and PyTorch checkpoints (the pickle subset)
 *   6. inflate (zlib, raw deflate, gzip)
 *   7. Images (sc_image, loading by signature) and PNG
 *   8. JPEG
 *   9. PPM/PGM
 *  10. Image preprocessing (PIL-exact resampling, the model pipelines)
 *  11. CLIP BPE tokenizer
 *  12. BERT WordPiece tokenizer
 *  13. CSV
 *  14. SVG
 *  15. Hashing (SHA-256)
 *
 * Threat model: every file is untrusted. Parsers read through one bounded
 * cursor whose reads past the end set a sticky error instead of returning
 * garbage; every size read from a file passes sc_mul_ok/sc_add_ok before it
 * reaches an allocation; dimensions, counts and nesting depths are capped;
 * loops are bounded by what is actually in the buffer, never by a count read
 * from the file alone. Errors name the file and what is wrong.
 */
#define _POSIX_C_SOURCE 200809L
#include "scale.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ======================================================================== */
/* 1. Whole files and the bounded cursor                                     */
/* ======================================================================== */

sc_status sc_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *len, sc_err *err)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sc_fail(err, SC_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max_bytes) {
                free(buf);
                fclose(f);
                return sc_fail(err, SC_ENOMEM, "%s: larger than the limit of %zu bytes", path, max_bytes);
            }
            size_t ncap = cap * 2 > max_bytes ? max_bytes : cap * 2;
            uint8_t *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return sc_fail(err, SC_EIO, "%s: read error", path);
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return SC_OK;
}

sc_status sc_write_file_atomic(const char *path, const void *data, size_t len, sc_err *err)
{
    char tmp[4096];
    int k = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (k < 0 || (size_t)k >= sizeof tmp) return sc_fail(err, SC_EARG, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return sc_fail(err, SC_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t put = len ? fwrite(data, 1, len, f) : 0;
    int bad = put != len || ferror(f);
    if (fclose(f) != 0) bad = 1;
    if (bad) {
        remove(tmp);
        return sc_fail(err, SC_EIO, "%s: write failed", path);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return sc_fail(err, SC_EIO, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return SC_OK;
}

/* The bounded cursor. Every parser reads through one of these: a read past
 * `end` sets `bad` and returns zeros from then on, so a parser can read a
 * whole header and check `bad` once, without ever touching memory outside
 * the buffer. */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    int bad;
} cursor;

static inline cursor cursor_make(const uint8_t *data, size_t len)
{
    cursor c = {data, data + len, 0};
    return c;
}

static inline size_t cur_left(const cursor *c)
{
    return c->bad ? 0 : (size_t)(c->end - c->p);
}

/* Take n bytes; NULL (and bad) when fewer remain. */
static inline const uint8_t *cur_take(cursor *c, size_t n)
{
    if (c->bad || n > (size_t)(c->end - c->p)) {
        c->bad = 1;
        return NULL;
    }
    const uint8_t *q = c->p;
    c->p += n;
    return q;
}

static inline uint8_t cur_u8(cursor *c)
{
    const uint8_t *q = cur_take(c, 1);
    return q ? q[0] : 0;
}

static inline uint16_t cur_u16le(cursor *c)
{
    const uint8_t *q = cur_take(c, 2);
    return q ? (uint16_t)(q[0] | q[1] << 8) : 0;
}

static inline uint32_t cur_u32le(cursor *c)
{
    const uint8_t *q = cur_take(c, 4);
    return q ? (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24 : 0;
}

static inline uint64_t cur_u64le(cursor *c)
{
    uint64_t lo = cur_u32le(c);
    uint64_t hi = cur_u32le(c);
    return lo | hi << 32;
}

static inline uint16_t cur_u16be(cursor *c)
{
    const uint8_t *q = cur_take(c, 2);
    return q ? (uint16_t)(q[0] << 8 | q[1]) : 0;
}

static inline uint32_t cur_u32be(cursor *c)
{
    const uint8_t *q = cur_take(c, 4);
    return q ? (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | (uint32_t)q[3] : 0;
}

/* ======================================================================== */
/* 2. JSON                                                                   */
/* ======================================================================== */

/* RFC 8259, strictly: no comments, no trailing commas, no NaN, no single
 * quotes; strings must be valid UTF-8 and escapes complete. A UTF-8 byte
 * order mark at the very start is skipped, as section 8.1 allows.
 *
 * The parser is iterative. Open arrays and objects sit on a fixed stack
 * of SC_JSON_MAX_DEPTH frames, and their members, until the closing bracket,
 * on a growable "pending" list; closing a container copies its members into
 * the document's arena. So a 10 000-deep nesting is an error at level 257,
 * never a deep C stack.
 *
 * Memory: decoded strings never outgrow their source (an escape is at least
 * as long as the bytes it stands for, and the two quotes pay for the NUL),
 * so one pool of `len` bytes holds every string; values come from slabs. */

#define JSON_SLAB 256  /* values per slab allocation */

typedef struct {
    sc_json *node;        /* the open array or object */
    size_t first;         /* its first member on the pending list */
    char *key;            /* object: the key of the member being read */
} json_frame;

typedef struct {
    const uint8_t *text;
    size_t len;
    size_t pos;
    const char *what;
    sc_err *err;
    sc_arena *arena;
    char *pool;           /* decoded strings */
    size_t pool_used;
    sc_json *slab;        /* values not yet handed out */
    size_t slab_left;
    sc_json **pending;    /* members of the open containers, in order */
    char **pending_keys;
    size_t n_pending, cap_pending;
    json_frame frames[SC_JSON_MAX_DEPTH];
    int depth;
} json_parser;

/* "WHAT: line L, column C: MESSAGE" for the byte at `at`. */
static sc_status json_fail(json_parser *p, size_t at, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static sc_status json_fail(json_parser *p, size_t at, const char *fmt, ...)
{
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < p->len; i++) {
        if (p->text[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sc_fail(p->err, SC_EFORMAT, "%s: line %zu, column %zu: %s", p->what, line, col, msg);
}

static sc_json *json_new(json_parser *p, sc_json_type type)
{
    if (p->slab_left == 0) {
        p->slab = sc_arena_alloc(p->arena, JSON_SLAB * sizeof(sc_json));
        if (!p->slab) return NULL;
        p->slab_left = JSON_SLAB;
    }
    sc_json *v = p->slab++;
    p->slab_left--;
    memset(v, 0, sizeof *v);
    v->type = type;
    return v;
}

static void json_skip_space(json_parser *p)
{
    while (p->pos < p->len) {
        uint8_t c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

/* The length (1-4) of the valid UTF-8 sequence at s, or 0. Rejects
 * overlong forms, UTF-16 surrogates (U+D800..U+DFFF) and code points past
 * U+10FFFF, following the table in RFC 3629 section 4. */
static size_t utf8_valid_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c == 0xED) { len = 3; hi = 0x9F; }
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) { len = 4; hi = 0x8F; }
    else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Four hex digits at pos (after "\u"); -1 if they are not there. */
static long json_hex4(const json_parser *p, size_t pos)
{
    if (pos > p->len || p->len - pos < 4) return -1;
    long v = 0;
    for (size_t i = 0; i < 4; i++) {
        uint8_t c = p->text[pos + i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A \uXXXX escape at pos (pointing at the backslash), with its low
 * surrogate when it is a high one. Advances pos; 0 or an error. */
static sc_status json_unicode_escape(json_parser *p, uint32_t *cp)
{
    size_t at = p->pos;
    long u = json_hex4(p, at + 2);
    if (u < 0) return json_fail(p, at, "\\u must be followed by four hex digits");
    p->pos = at + 6;
    if (u >= 0xDC00 && u <= 0xDFFF) return json_fail(p, at, "lone low surrogate \\u%04lX", u);
    if (u >= 0xD800 && u <= 0xDBFF) {
        long lo = p->len - p->pos >= 2 && p->text[p->pos] == '\\' && p->text[p->pos + 1] == 'u'
                ? json_hex4(p, p->pos + 2) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return json_fail(p, at, "high surrogate \\u%04lX is not followed by a low surrogate", u);
        p->pos += 6;
        *cp = 0x10000 + (uint32_t)((u - 0xD800) << 10) + (uint32_t)(lo - 0xDC00);
        return SC_OK;
    }
    *cp = (uint32_t)u;
    return SC_OK;
}

/* A string starting at the opening quote: decoded into the pool. */
static sc_status json_string(json_parser *p, char **out, size_t *out_len)
{
    size_t open = p->pos++;
    char *dst = p->pool + p->pool_used;
    size_t k = 0;
    for (;;) {
        if (p->pos >= p->len) return json_fail(p, open, "unterminated string");
        uint8_t c = p->text[p->pos];
        if (c == '"') break;
        if (c < 0x20) return json_fail(p, p->pos, "control character U+%04X in a string must be escaped", c);
        if (c < 0x80 && c != '\\') { /* the common case: plain ASCII */
            dst[k++] = (char)c;
            p->pos++;
            continue;
        }
        if (c != '\\') {
            size_t n = utf8_valid_len(p->text + p->pos, p->len - p->pos);
            if (n == 0) return json_fail(p, p->pos, "invalid UTF-8 byte 0x%02X in a string", c);
            memcpy(dst + k, p->text + p->pos, n);
            k += n;
            p->pos += n;
            continue;
        }
        if (p->pos + 1 >= p->len) return json_fail(p, open, "unterminated string");
        uint8_t e = p->text[p->pos + 1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            dst[k++] = decoded[simple - "\"\\/bfnrt"];
            p->pos += 2;
        } else if (e == 'u') {
            uint32_t cp = 0;
            sc_status s = json_unicode_escape(p, &cp);
            if (s != SC_OK) return s;
            k += utf8_encode(cp, dst + k);
        } else {
            return json_fail(p, p->pos, "invalid escape '\\%c'", e >= 0x20 && e < 0x7F ? e : '?');
        }
    }
    p->pos++; /* the closing quote */
    dst[k] = 0;
    p->pool_used += k + 1;
    *out = dst;
    *out_len = k;
    return SC_OK;
}

static int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* number = [ "-" ] ( "0" / [1-9] *DIGIT ) [ "." 1*DIGIT ] [ ("e"/"E") [ "+"/"-" ] 1*DIGIT ].
 * The grammar is checked here; strtod then converts exactly the slice it
 * accepted, copied out with a NUL (the text itself need not end in one). */
static sc_status json_number(json_parser *p, double *out)
{
    const uint8_t *t = p->text;
    size_t start = p->pos, i = p->pos, n = p->len;
    if (i < n && t[i] == '-') i++;
    if (i < n && t[i] == '0') {
        i++;
    } else if (i < n && is_digit(t[i])) {
        while (i < n && is_digit(t[i])) i++;
    } else {
        return json_fail(p, i, "expected a digit");
    }
    if (i < n && t[i] == '.') {
        i++;
        if (i >= n || !is_digit(t[i])) return json_fail(p, i, "expected a digit after the decimal point");
        while (i < n && is_digit(t[i])) i++;
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-')) i++;
        if (i >= n || !is_digit(t[i])) return json_fail(p, i, "expected a digit in the exponent");
        while (i < n && is_digit(t[i])) i++;
    }
    size_t len = i - start;
    /* Integers of up to 15 digits are exact in a double: no need for strtod. */
    size_t neg = t[start] == '-';
    if (len - neg <= 15 && memchr(t + start, '.', len) == NULL && memchr(t + start, 'e', len) == NULL &&
        memchr(t + start, 'E', len) == NULL) {
        double v = 0;
        for (size_t k = start + neg; k < i; k++) v = v * 10 + (t[k] - '0');
        *out = neg ? -v : v;
        p->pos = i;
        return SC_OK;
    }
    char small[64];
    char *buf = len < sizeof small ? small : malloc(len + 1);
    if (!buf) return sc_fail(p->err, SC_ENOMEM, "%s: out of memory", p->what);
    memcpy(buf, t + start, len);
    buf[len] = 0;
    double v = strtod(buf, NULL);
    if (buf != small) free(buf);
    if (isinf(v)) return json_fail(p, start, "number out of the range of a double");
    *out = v;
    p->pos = i;
    return SC_OK;
}

static int json_literal(json_parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0) return 0;
    p->pos += n;
    return 1;
}

/* Add a member to the innermost open container. */
static sc_status json_push(json_parser *p, char *key, sc_json *v)
{
    if (p->n_pending == p->cap_pending) {
        size_t cap = p->cap_pending ? p->cap_pending * 2 : 64, bytes;
        if (!sc_mul_ok(cap, sizeof(sc_json *), &bytes)) return sc_fail(p->err, SC_ENOMEM, "%s: too many values", p->what);
        sc_json **vals = realloc(p->pending, bytes);
        if (vals) p->pending = vals;
        char **keys = vals ? realloc(p->pending_keys, bytes) : NULL;
        if (keys) p->pending_keys = keys;
        if (!vals || !keys) return sc_fail(p->err, SC_ENOMEM, "%s: out of memory", p->what);
        p->cap_pending = cap;
    }
    p->pending[p->n_pending] = v;
    p->pending_keys[p->n_pending] = key;
    p->n_pending++;
    return SC_OK;
}

/* Close the innermost container: move its members into the arena. */
static sc_status json_close(json_parser *p, sc_json **closed)
{
    json_frame *f = &p->frames[--p->depth];
    sc_json *v = f->node;
    size_t n = p->n_pending - f->first;
    v->len = n;
    if (n) {
        v->items = sc_arena_alloc(p->arena, n * sizeof(sc_json *));
        if (!v->items) return sc_fail(p->err, SC_ENOMEM, "%s: out of memory", p->what);
        memcpy(v->items, p->pending + f->first, n * sizeof(sc_json *));
        if (v->type == SC_JSON_OBJECT) {
            v->keys = sc_arena_alloc(p->arena, n * sizeof(char *));
            if (!v->keys) return sc_fail(p->err, SC_ENOMEM, "%s: out of memory", p->what);
            memcpy(v->keys, p->pending_keys + f->first, n * sizeof(char *));
        }
    }
    p->n_pending = f->first;
    *closed = v;
    return SC_OK;
}

/* After '{' or ',' inside an object: "key" ':' — leaves pos at the value. */
static sc_status json_key(json_parser *p, char **key)
{
    json_skip_space(p);
    if (p->pos >= p->len || p->text[p->pos] != '"') return json_fail(p, p->pos, "expected a string key");
    size_t len;
    sc_status s = json_string(p, key, &len);
    if (s != SC_OK) return s;
    json_skip_space(p);
    if (p->pos >= p->len || p->text[p->pos] != ':') return json_fail(p, p->pos, "expected ':' after the key");
    p->pos++;
    return SC_OK;
}

/* One scalar value at pos, or the opening of a container (pushed as a
 * frame; *v is then NULL and the caller goes on to its first member). */
static sc_status json_open_or_scalar(json_parser *p, sc_json **v)
{
    json_skip_space(p);
    *v = NULL;
    if (p->pos >= p->len) return json_fail(p, p->pos, "unexpected end of input, expected a value");
    uint8_t c = p->text[p->pos];
    sc_json *x;
    if (c == '[' || c == '{') {
        if (p->depth == SC_JSON_MAX_DEPTH)
            return json_fail(p, p->pos, "nesting deeper than %d levels", SC_JSON_MAX_DEPTH);
        x = json_new(p, c == '[' ? SC_JSON_ARRAY : SC_JSON_OBJECT);
        if (!x) return sc_fail(p->err, SC_ENOMEM, "%s: out of memory", p->what);
        p->frames[p->depth].node = x;
        p->frames[p->depth].first = p->n_pending;
        p->depth++;
        p->pos++;
        return SC_OK;
    }
    if (c == '"') {
        x = json_new(p, SC_JSON_STRING);
        if (!x) return sc_fail(p->err, SC_ENOMEM, "%s: out of memory", p->what);
        sc_status s = json_string(p, &x->str, &x->len);
        if (s != SC_OK) return s;
    } else if (c == '-' || is_digit(c)) {
        x = json_new(p, SC_JSON_NUMBER);
        if (!x) return sc_fail(p->err, SC_ENOMEM, "%s: out of memory", p->what);
        sc_status s = json_number(p, &x->number);
        if (s != SC_OK) return s;
    } else {
        sc_json_type type = SC_JSON_NULL;
        int b = 0;
        if (json_literal(p, "true")) { type = SC_JSON_BOOL; b = 1; }
        else if (json_literal(p, "false")) type = SC_JSON_BOOL;
        else if (!json_literal(p, "null"))
            return json_fail(p, p->pos, c >= 0x20 && c < 0x7F ? "unexpected character '%c'" : "unexpected byte 0x%02X", c);
        x = json_new(p, type);
        if (!x) return sc_fail(p->err, SC_ENOMEM, "%s: out of memory", p->what);
        x->boolean = b;
    }
    *v = x;
    return SC_OK;
}

/* The driver: read a value; when it completes, hand it to the enclosing
 * container and read that container's separator or closing bracket, which
 * may complete the container in turn. */
/* @book begin json-driver */
static sc_status json_document(json_parser *p, sc_json **root)
{
    for (;;) {
        sc_json *v;
        sc_status s = json_open_or_scalar(p, &v);
        if (s != SC_OK) return s;
        if (!v) { /* a container opened: empty, or on to its first member */
            json_frame *f = &p->frames[p->depth - 1];
            json_skip_space(p);
            char close = f->node->type == SC_JSON_ARRAY ? ']' : '}';
            if (p->pos < p->len && p->text[p->pos] == close) {
                p->pos++;
                s = json_close(p, &v);
            } else if (f->node->type == SC_JSON_OBJECT) {
                s = json_key(p, &f->key);
                if (s == SC_OK) continue;
            } else {
                continue;
            }
            if (s != SC_OK) return s;
        }
        /* v is complete: attach it, then close as many containers as end here. */
        for (;;) {
            if (p->depth == 0) {
                *root = v;
                return SC_OK;
            }
            json_frame *f = &p->frames[p->depth - 1];
            int is_object = f->node->type == SC_JSON_OBJECT;
            s = json_push(p, is_object ? f->key : NULL, v);
            if (s != SC_OK) return s;
            json_skip_space(p);
            uint8_t c = p->pos < p->len ? p->text[p->pos] : 0;
            if (c == ',') {
                p->pos++;
                if (is_object) s = json_key(p, &f->key);
                if (s != SC_OK) return s;
                break; /* on to the next member */
            }
            if (c != (is_object ? '}' : ']'))
                return json_fail(p, p->pos, is_object ? "expected ',' or '}' in an object"
                                                       : "expected ',' or ']' in an array");
            p->pos++;
            s = json_close(p, &v);
            if (s != SC_OK) return s;
        }
    }
}
/* @book end json-driver */

sc_status sc_json_parse(sc_json_doc *doc, const char *text, size_t len, const char *what, sc_err *err)
{
    memset(doc, 0, sizeof *doc);
    json_parser *p = calloc(1, sizeof *p);
    if (!p) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    p->text = (const uint8_t *)text;
    p->len = len;
    p->what = what ? what : "JSON";
    p->err = err;
    p->arena = &doc->arena;
    sc_arena_init(&doc->arena, "json", (size_t)1 << 16, 0);
    sc_status s = SC_OK;
    p->pool = sc_arena_alloc(p->arena, len + 1);
    if (!p->pool) s = sc_fail(err, SC_ENOMEM, "%s: out of memory for %zu bytes", p->what, len);
    if (s == SC_OK && len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) p->pos = 3;
    sc_json *root = NULL;
    if (s == SC_OK) s = json_document(p, &root);
    if (s == SC_OK) {
        json_skip_space(p);
        if (p->pos < p->len) s = json_fail(p, p->pos, "unexpected data after the JSON value");
    }
    free(p->pending);
    free(p->pending_keys);
    free(p);
    if (s != SC_OK) {
        sc_arena_free(&doc->arena);
        memset(doc, 0, sizeof *doc);
        return s;
    }
    doc->root = root;
    return SC_OK;
}

sc_status sc_json_load(sc_json_doc *doc, const char *path, size_t max_bytes, sc_err *err)
{
    memset(doc, 0, sizeof *doc);
    uint8_t *text;
    size_t len;
    sc_status s = sc_read_file(path, max_bytes, &text, &len, err);
    if (s != SC_OK) return s;
    s = sc_json_parse(doc, (const char *)text, len, path, err);
    free(text);
    return s;
}

void sc_json_free(sc_json_doc *doc)
{
    if (!doc) return;
    sc_arena_free(&doc->arena);
    memset(doc, 0, sizeof *doc);
}

const sc_json *sc_json_get(const sc_json *obj, const char *key)
{
    if (!obj || obj->type != SC_JSON_OBJECT) return NULL;
    for (size_t i = obj->len; i-- > 0;)
        if (strcmp(obj->keys[i], key) == 0) return obj->items[i];
    return NULL;
}

double sc_json_get_number(const sc_json *obj, const char *key, double dflt)
{
    const sc_json *v = sc_json_get(obj, key);
    return v && v->type == SC_JSON_NUMBER ? v->number : dflt;
}

const char *sc_json_get_string(const sc_json *obj, const char *key, const char *dflt)
{
    const sc_json *v = sc_json_get(obj, key);
    return v && v->type == SC_JSON_STRING ? v->str : dflt;
}

int sc_json_get_bool(const sc_json *obj, const char *key, int dflt)
{
    const sc_json *v = sc_json_get(obj, key);
    return v && v->type == SC_JSON_BOOL ? v->boolean : dflt;
}

/* -- the writer -- */

/* The writer keeps one flag per open container: whether a member has been
 * written yet, which decides the comma. Inside an object a value must
 * follow a key and a key must not follow a key; breaking that rule is a
 * bug in the caller, so it stops the program (SC_ASSERT) rather than
 * producing a document that would not parse. */

void sc_json_writer_init(sc_json_writer *w, int indent)
{
    memset(w, 0, sizeof *w);
    sc_text_init(&w->out);
    w->indent = indent < 0 ? 0 : indent;
}

static void jw_newline(sc_json_writer *w)
{
    if (w->indent == 0) return;
    sc_text_put(&w->out, "\n", 1);
    for (int i = 0; i < w->depth * w->indent; i++) sc_text_put(&w->out, " ", 1);
}

/* Separate a new value from what came before: after a key nothing; as the
 * next member of an array, a comma (except for the first) and a new line. */
static void jw_before_value(sc_json_writer *w)
{
    if (w->depth == 0) {
        SC_ASSERT(!w->done, "JSON writer: a document holds exactly one top-level value");
        return;
    }
    if (w->in_object[w->depth - 1]) {
        SC_ASSERT(w->after_key, "JSON writer: a value inside an object needs a key first");
        w->after_key = 0;
        return;
    }
    if (w->has_member[w->depth - 1]) sc_text_put(&w->out, ",", 1);
    w->has_member[w->depth - 1] = 1;
    jw_newline(w);
}

/* A finished document ends with a new line when it is indented. */
static void jw_after_value(sc_json_writer *w)
{
    if (w->depth > 0) return;
    w->done = 1;
    if (w->indent) sc_text_put(&w->out, "\n", 1);
}

static void jw_open(sc_json_writer *w, int object)
{
    jw_before_value(w);
    SC_ASSERT(w->depth < SC_JSON_MAX_DEPTH, "JSON writer: nesting deeper than %d", SC_JSON_MAX_DEPTH);
    sc_text_put(&w->out, object ? "{" : "[", 1);
    w->in_object[w->depth] = (char)object;
    w->has_member[w->depth] = 0;
    w->depth++;
}

static void jw_close(sc_json_writer *w, int object)
{
    SC_ASSERT(w->depth > 0 && w->in_object[w->depth - 1] == object, "JSON writer: unbalanced %s",
              object ? "end_object" : "end_array");
    SC_ASSERT(!w->after_key, "JSON writer: a key without its value");
    int had_members = w->has_member[w->depth - 1];
    w->depth--;
    if (had_members) jw_newline(w);
    sc_text_put(&w->out, object ? "}" : "]", 1);
    jw_after_value(w);
}

void sc_json_begin_object(sc_json_writer *w) { jw_open(w, 1); }
void sc_json_end_object(sc_json_writer *w) { jw_close(w, 1); }
void sc_json_begin_array(sc_json_writer *w) { jw_open(w, 0); }
void sc_json_end_array(sc_json_writer *w) { jw_close(w, 0); }

/* A string literal: '"' and '\' escaped, control characters as \n, \t ...
 * or \u00XX, valid UTF-8 copied as it is, and each byte that does not start
 * a valid sequence replaced by U+FFFD, so the output is always valid JSON. */
static void jw_string_literal(sc_text *out, const char *s)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s);
    sc_text_put(out, "\"", 1);
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                        : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
        if (esc) {
            sc_text_puts(out, esc);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            sc_text_printf(out, "\\u%04x", c);
            i++;
        } else {
            size_t len = utf8_valid_len(p + i, n - i);
            if (len == 0) {
                sc_text_puts(out, "\xEF\xBF\xBD");
                i++;
            } else {
                sc_text_put(out, s + i, len);
                i += len;
            }
        }
    }
    sc_text_put(out, "\"", 1);
}

void sc_json_put_key(sc_json_writer *w, const char *key)
{
    SC_ASSERT(w->depth > 0 && w->in_object[w->depth - 1], "JSON writer: a key outside an object");
    SC_ASSERT(!w->after_key, "JSON writer: two keys in a row");
    if (w->has_member[w->depth - 1]) sc_text_put(&w->out, ",", 1);
    w->has_member[w->depth - 1] = 1;
    jw_newline(w);
    jw_string_literal(&w->out, key);
    sc_text_put(&w->out, w->indent ? ": " : ":", w->indent ? 2 : 1);
    w->after_key = 1;
}

void sc_json_put_string(sc_json_writer *w, const char *s)
{
    jw_before_value(w);
    jw_string_literal(&w->out, s);
    jw_after_value(w);
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double,
 * so 0.1 is written "0.1" and every finite value round-trips. JSON has no
 * NaN or infinity: those are written as null. */
void sc_json_put_number(sc_json_writer *w, double x)
{
    jw_before_value(w);
    if (!isfinite(x)) {
        sc_text_puts(&w->out, "null");
    } else {
        char buf[40];
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(buf, sizeof buf, "%.*g", digits, x);
            if (strtod(buf, NULL) == x) break;
        }
        sc_text_puts(&w->out, buf);
    }
    jw_after_value(w);
}

void sc_json_put_int(sc_json_writer *w, int64_t x)
{
    jw_before_value(w);
    sc_text_printf(&w->out, "%lld", (long long)x);
    jw_after_value(w);
}

void sc_json_put_bool(sc_json_writer *w, int b)
{
    jw_before_value(w);
    sc_text_puts(&w->out, b ? "true" : "false");
    jw_after_value(w);
}

void sc_json_put_null(sc_json_writer *w)
{
    jw_before_value(w);
    sc_text_puts(&w->out, "null");
    jw_after_value(w);
}

sc_status sc_json_writer_save(sc_json_writer *w, const char *path, sc_err *err)
{
    SC_ASSERT(w->depth == 0 && w->done, "JSON writer: document for %s is not complete", path);
    return sc_text_save(&w->out, path, err);
}

void sc_json_writer_free(sc_json_writer *w)
{
    sc_text_free(&w->out);
    memset(w, 0, sizeof *w);
}

/* ======================================================================== */
/* 3. .npy                                                                   */
/* ======================================================================== */

/* A .npy file (numpy's NEP 1 format) is
 *
 *   "\x93NUMPY" major minor  header_len  header  payload
 *     6 bytes    1     1     u16 (v1) or u32 (v2, v3), little-endian
 *
 * where the header is a Python dict literal, padded with spaces and ended by
 * '\n', e.g.  {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * and the payload holds numel × itemsize bytes in C order. v3 differs from
 * v2 only in allowing UTF-8 in the header, which we never need to decode.
 *
 * The loaders copy payload bytes straight into memory, so the host must be
 * little-endian like the files (x86-64 and AArch64 Linux both are). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "scale reads little-endian files by copying bytes; a big-endian host is not supported"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_MAX_HEADER ((size_t)1 << 20) /* numpy itself refuses > 10 000 by default */
/* The largest dimension any array format may declare (also safetensors and
 * PyTorch tensors): far beyond any real model, small enough that products
 * of a few dims stay well inside 64 bits before the overflow checks. */
#define ARRAY_MAX_DIM ((int64_t)1 << 31)

size_t sc_dtype_size(sc_dtype dt)
{
    switch (dt) {
    case SC_DT_F64: case SC_DT_I64: return 8;
    case SC_DT_F32: case SC_DT_I32: return 4;
    case SC_DT_U16: case SC_DT_F16: case SC_DT_BF16: return 2;
    case SC_DT_U8: return 1;
    }
    return 0;
}

const char *sc_dtype_name(sc_dtype dt)
{
    switch (dt) {
    case SC_DT_F32: return "float32";
    case SC_DT_F64: return "float64";
    case SC_DT_I64: return "int64";
    case SC_DT_I32: return "int32";
    case SC_DT_U8: return "uint8";
    case SC_DT_U16: return "uint16";
    case SC_DT_F16: return "float16";
    case SC_DT_BF16: return "bfloat16";
    }
    return "unknown";
}

int64_t sc_array_numel(const sc_array *a)
{
    int64_t n = 1;
    for (int i = 0; i < a->ndim; i++) n *= a->shape[i];
    return n;
}

void sc_array_free(sc_array *a)
{
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* Bytes of `ndim` dims of `shape` with elements of `itemsize` bytes, or 0
 * (and *ok = 0) when the product does not fit in size_t. */
static size_t shape_bytes(int ndim, const int64_t *shape, size_t itemsize, int *ok)
{
    size_t n = itemsize;
    *ok = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || !sc_mul_ok(n, (size_t)shape[i], &n)) {
            *ok = 0;
            return 0;
        }
    return n;
}

/* "(3, 4)" — for error messages. */
static const char *shape_text(int ndim, const int64_t *shape, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, ")");
    return buf;
}

/* The numpy type strings we read, and what they become. '|b1' (bool) is
 * read as uint8 0/1; everything multi-byte must be little-endian ('<'). */
static const struct {
    const char *descr;
    sc_dtype dtype;
} npy_types[] = {
    {"<f4", SC_DT_F32}, {"<f8", SC_DT_F64}, {"<i8", SC_DT_I64}, {"<i4", SC_DT_I32},
    {"|u1", SC_DT_U8},  {"|b1", SC_DT_U8},  {"<u2", SC_DT_U16}, {"<f2", SC_DT_F16},
};

/* What the header says. */
typedef struct {
    sc_dtype dtype;
    int ndim;
    int64_t shape[SC_ARRAY_MAX_DIMS];
    size_t data_offset;  /* where the payload starts */
    size_t nbytes;       /* payload bytes = numel × itemsize */
} npy_header;

/* A tiny scanner over the header's dict literal. */
static void npy_skip_spaces(cursor *c)
{
    while (cur_left(c) && (*c->p == ' ' || *c->p == '\t')) c->p++;
}

static int npy_accept(cursor *c, char ch)
{
    npy_skip_spaces(c);
    if (cur_left(c) && *c->p == (uint8_t)ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string ('...' or "...") of at most cap-1 bytes into buf. */
static int npy_string(cursor *c, char *buf, size_t cap)
{
    npy_skip_spaces(c);
    uint8_t q = cur_u8(c);
    if (q != '\'' && q != '"') return 0;
    size_t n = 0;
    while (cur_left(c) && *c->p != q) {
        if (n + 1 >= cap) return 0;
        buf[n++] = (char)*c->p++;
    }
    buf[n] = 0;
    return cur_u8(c) == q;
}

/* True or False. */
static int npy_bool(cursor *c, int *v)
{
    npy_skip_spaces(c);
    size_t left = cur_left(c);
    if (left >= 4 && memcmp(c->p, "True", 4) == 0) {
        c->p += 4;
        *v = 1;
        return 1;
    }
    if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
        c->p += 5;
        *v = 0;
        return 1;
    }
    return 0;
}

/* A shape tuple: "()", "(5,)", "(3, 4)" (Python 2 numpy wrote "3L"). */
static sc_status npy_shape(cursor *c, npy_header *h, const char *what, sc_err *err)
{
    if (!npy_accept(c, '(')) return sc_fail(err, SC_EFORMAT, "%s: header 'shape' is not a tuple", what);
    h->ndim = 0;
    while (!npy_accept(c, ')')) {
        npy_skip_spaces(c);
        if (!cur_left(c) || *c->p < '0' || *c->p > '9')
            return sc_fail(err, SC_EFORMAT, "%s: header 'shape' holds something other than integers", what);
        if (h->ndim == SC_ARRAY_MAX_DIMS)
            return sc_fail(err, SC_EUNSUPPORTED, "%s: more than %d dimensions", what, SC_ARRAY_MAX_DIMS);
        int64_t d = 0;
        while (cur_left(c) && *c->p >= '0' && *c->p <= '9') {
            d = d * 10 + (*c->p++ - '0');
            if (d > ARRAY_MAX_DIM)
                return sc_fail(err, SC_EUNSUPPORTED, "%s: dimension %d larger than 2^31", what, h->ndim);
        }
        if (cur_left(c) && *c->p == 'L') c->p++;
        h->shape[h->ndim++] = d;
        if (!npy_accept(c, ',')) {
            if (!npy_accept(c, ')')) return sc_fail(err, SC_EFORMAT, "%s: header 'shape' is not a tuple", what);
            break;
        }
    }
    return SC_OK;
}

static sc_status npy_descr(const char *descr, npy_header *h, const char *what, sc_err *err)
{
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (strcmp(descr, npy_types[i].descr) == 0) {
            h->dtype = npy_types[i].dtype;
            return SC_OK;
        }
    if (descr[0] == '>')
        return sc_fail(err, SC_EUNSUPPORTED, "%s: big-endian data ('%s'); re-save it with numpy as "
                       "little-endian (a.astype(a.dtype.newbyteorder('<')))", what, descr);
    return sc_fail(err, SC_EUNSUPPORTED, "%s: dtype '%s' is not supported (float32/64, int32/64, "
                   "uint8/16, float16, bool)", what, descr);
}

/* The fixed preamble: magic, version and header length. Sets *header_end
 * to the offset just past the header. */
static sc_status npy_preamble(const uint8_t *bytes, size_t len, const char *what, size_t *header_start,
                              size_t *header_end, sc_err *err)
{
    cursor c = cursor_make(bytes, len);
    const uint8_t *magic = cur_take(&c, NPY_MAGIC_LEN);
    if (!magic || memcmp(magic, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return sc_fail(err, SC_EFORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", what);
    uint8_t major = cur_u8(&c);
    cur_u8(&c); /* minor version: always 0 */
    size_t header_len;
    if (major == 1) header_len = cur_u16le(&c);
    else if (major == 2 || major == 3) header_len = cur_u32le(&c);
    else return sc_fail(err, SC_EUNSUPPORTED, "%s: .npy format version %u is not supported", what, major);
    if (c.bad) return sc_fail(err, SC_EFORMAT, "%s: truncated .npy preamble", what);
    if (header_len > NPY_MAX_HEADER)
        return sc_fail(err, SC_EFORMAT, "%s: .npy header of %zu bytes is implausibly large", what, header_len);
    *header_start = (size_t)(c.p - bytes);
    *header_end = *header_start + header_len;
    return SC_OK;
}

/* Parse the preamble and header dict at the start of `bytes` (which need
 * hold only the header, not the payload). */
static sc_status npy_parse_header(const uint8_t *bytes, size_t len, const char *what, npy_header *h,
                                  sc_err *err)
{
    memset(h, 0, sizeof *h);
    size_t header_start, header_end;
    sc_status s = npy_preamble(bytes, len, what, &header_start, &header_end, err);
    if (s != SC_OK) return s;
    if (header_end > len) return sc_fail(err, SC_EFORMAT, "%s: truncated .npy header", what);
    h->data_offset = header_end;
    const uint8_t *header = bytes + header_start;
    size_t header_len = header_end - header_start;

    cursor d = cursor_make(header, header_len);
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!npy_accept(&d, '{')) return sc_fail(err, SC_EFORMAT, "%s: .npy header is not a dict", what);
    while (!npy_accept(&d, '}')) {
        char key[32], descr[32];
        if (!npy_string(&d, key, sizeof key) || !npy_accept(&d, ':'))
            return sc_fail(err, SC_EFORMAT, "%s: malformed .npy header dict", what);
        s = SC_OK;
        if (strcmp(key, "descr") == 0 && !have_descr++) {
            if (!npy_string(&d, descr, sizeof descr))
                return sc_fail(err, SC_EUNSUPPORTED, "%s: header 'descr' is not a simple type string "
                               "(structured arrays are not supported)", what);
            s = npy_descr(descr, h, what, err);
        } else if (strcmp(key, "fortran_order") == 0 && !have_order++) {
            int fortran;
            if (!npy_bool(&d, &fortran))
                return sc_fail(err, SC_EFORMAT, "%s: header 'fortran_order' is not True/False", what);
            if (fortran)
                return sc_fail(err, SC_EUNSUPPORTED, "%s: Fortran-order array; save it in C order "
                               "(np.ascontiguousarray)", what);
        } else if (strcmp(key, "shape") == 0 && !have_shape++) {
            s = npy_shape(&d, h, what, err);
        } else {
            return sc_fail(err, SC_EFORMAT, "%s: unexpected or repeated key '%s' in .npy header", what, key);
        }
        if (s != SC_OK) return s;
        if (!npy_accept(&d, ',')) {
            if (!npy_accept(&d, '}')) return sc_fail(err, SC_EFORMAT, "%s: malformed .npy header dict", what);
            break;
        }
    }
    while (cur_left(&d) && (*d.p == ' ' || *d.p == '\n')) d.p++;
    if (cur_left(&d)) return sc_fail(err, SC_EFORMAT, "%s: unexpected bytes after the .npy header dict", what);
    if (!have_descr || !have_order || !have_shape)
        return sc_fail(err, SC_EFORMAT, "%s: .npy header lacks 'descr', 'fortran_order' or 'shape'", what);

    int ok;
    h->nbytes = shape_bytes(h->ndim, h->shape, sc_dtype_size(h->dtype), &ok);
    if (!ok) return sc_fail(err, SC_ENOMEM, "%s: array size overflows", what);
    return SC_OK;
}

/* @book begin npy-payload */
static sc_status npy_check_payload(const npy_header *h, size_t file_len, const char *what, sc_err *err)
{
    size_t have = file_len - h->data_offset;
    if (have != h->nbytes) {
        char sh[160];
        return sc_fail(err, SC_EFORMAT, "%s: %s %s needs %zu payload bytes but the file has %zu", what,
                       sc_dtype_name(h->dtype), shape_text(h->ndim, h->shape, sh, sizeof sh), h->nbytes, have);
    }
    return SC_OK;
}
/* @book end npy-payload */

static void npy_fill_array(const npy_header *h, void *data, sc_array *out)
{
    memset(out, 0, sizeof *out);
    out->dtype = h->dtype;
    out->ndim = h->ndim;
    memcpy(out->shape, h->shape, sizeof h->shape);
    out->data = data;
    out->nbytes = h->nbytes;
}

sc_status sc_npy_parse(const uint8_t *bytes, size_t len, const char *what, sc_array *out, sc_err *err)
{
    memset(out, 0, sizeof *out);
    npy_header h;
    sc_status s = npy_parse_header(bytes, len, what, &h, err);
    if (s == SC_OK) s = npy_check_payload(&h, len, what, err);
    if (s != SC_OK) return s;
    void *data = malloc(h.nbytes ? h.nbytes : 1);
    if (!data) return sc_fail(err, SC_ENOMEM, "%s: out of memory for %zu bytes", what, h.nbytes);
    if (h.nbytes) memcpy(data, bytes + h.data_offset, h.nbytes);
    npy_fill_array(&h, data, out);
    return SC_OK;
}

/* Read the file in two steps — the header, then exactly the payload it
 * announces — so a large array is read once, straight into its buffer, and
 * nothing is allocated before the file's size has confirmed the header. */
sc_status sc_npy_read(const char *path, sc_array *out, sc_err *err)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return sc_fail(err, SC_EIO, "%s: cannot open: %s", path, strerror(errno));
    sc_status s = SC_OK;
    uint8_t pre[12];
    uint8_t *head = NULL;
    void *data = NULL;
    npy_header h;
    long file_len = -1;
    if (fseek(f, 0, SEEK_END) == 0) file_len = ftell(f);
    if (file_len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        s = sc_fail(err, SC_EIO, "%s: cannot determine the file size", path);
        goto done;
    }
    size_t got = fread(pre, 1, sizeof pre, f);
    size_t header_start, header_end;
    s = npy_preamble(pre, got, path, &header_start, &header_end, err);
    if (s != SC_OK) goto done;
    if (header_end > (size_t)file_len) {
        s = sc_fail(err, SC_EFORMAT, "%s: truncated .npy header", path);
        goto done;
    }
    head = malloc(header_end);
    if (!head) {
        s = sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    memcpy(head, pre, got < header_end ? got : header_end);
    if (header_end > got && fread(head + got, 1, header_end - got, f) != header_end - got) {
        s = sc_fail(err, SC_EIO, "%s: read error in the .npy header", path);
        goto done;
    }
    s = npy_parse_header(head, header_end, path, &h, err);
    if (s == SC_OK) s = npy_check_payload(&h, (size_t)file_len, path, err);
    if (s != SC_OK) goto done;
    data = malloc(h.nbytes ? h.nbytes : 1);
    if (!data) {
        s = sc_fail(err, SC_ENOMEM, "%s: out of memory for %zu bytes", path, h.nbytes);
        goto done;
    }
    if (fseek(f, (long)h.data_offset, SEEK_SET) != 0 || fread(data, 1, h.nbytes, f) != h.nbytes) {
        s = sc_fail(err, SC_EIO, "%s: read error in the .npy payload", path);
        goto done;
    }
    npy_fill_array(&h, data, out);
    data = NULL;
done:
    free(head);
    free(data);
    fclose(f);
    return s;
}

/* Serialise the v1 header: numpy pads the dict with spaces so that the
 * payload starts at a multiple of 64 bytes, and ends it with '\n'. */
static sc_status npy_header_text(const sc_array *a, const char *path, char *buf, size_t cap, size_t *len,
                                 sc_err *err)
{
    const char *descr = NULL;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].dtype == a->dtype && strcmp(npy_types[i].descr, "|b1") != 0) {
            descr = npy_types[i].descr;
            break;
        }
    if (!descr) return sc_fail(err, SC_EUNSUPPORTED, "%s: numpy has no %s type", path, sc_dtype_name(a->dtype));
    if (a->ndim < 0 || a->ndim > SC_ARRAY_MAX_DIMS)
        return sc_fail(err, SC_EARG, "%s: array has %d dimensions", path, a->ndim);
    /* The dict first, after room for the 10-byte v1 preamble. */
    size_t k = 10 + (size_t)snprintf(buf + 10, cap - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < a->ndim; i++) /* Python's tuple repr: (), (5,), (3, 4) */
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)a->shape[i]);
    k += (size_t)snprintf(buf + k, cap - k, "%s), }", a->ndim == 1 ? "," : "");
    size_t total = (k + 1 + 63) / 64 * 64; /* + '\n', rounded up */
    SC_ASSERT(total <= cap, "npy header buffer too small");
    memset(buf + k, ' ', total - 1 - k);
    buf[total - 1] = '\n';
    size_t header_len = total - 10;
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[6] = 1; /* version 1.0 */
    buf[7] = 0;
    buf[8] = (char)(header_len & 0xff);
    buf[9] = (char)(header_len >> 8);
    *len = total;
    return SC_OK;
}

sc_status sc_npy_write(const char *path, const sc_array *a, sc_err *err)
{
    char header[512];
    size_t hlen = 0;
    sc_status s = npy_header_text(a, path, header, sizeof header, &hlen, err);
    if (s != SC_OK) return s;
    int ok;
    size_t nbytes = shape_bytes(a->ndim, a->shape, sc_dtype_size(a->dtype), &ok);
    if (!ok || (a->nbytes && a->nbytes != nbytes))
        return sc_fail(err, SC_EARG, "%s: array shape and byte count disagree", path);
    size_t total;
    if (!sc_add_ok(hlen, nbytes, &total)) return sc_fail(err, SC_ENOMEM, "%s: array too large", path);
    uint8_t *buf = malloc(total);
    if (!buf) return sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    memcpy(buf, header, hlen);
    if (nbytes) memcpy(buf + hlen, a->data, nbytes);
    s = sc_write_file_atomic(path, buf, total, err);
    free(buf);
    return s;
}

sc_status sc_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape, sc_err *err)
{
    if (ndim < 0 || ndim > SC_ARRAY_MAX_DIMS) return sc_fail(err, SC_EARG, "%s: %d dimensions", path, ndim);
    sc_array a;
    memset(&a, 0, sizeof a);
    a.dtype = SC_DT_F32;
    a.ndim = ndim;
    for (int i = 0; i < ndim; i++) a.shape[i] = shape[i];
    a.data = (void *)data;
    return sc_npy_write(path, &a, err);
}

/* @book begin half-to-float */
/* IEEE half (1 sign, 5 exponent, 10 mantissa bits) to float, exactly:
 * every half is a float, subnormals included. */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | mant << 13;                 /* inf, NaN */
    } else if (exp != 0) {
        bits = sign | (exp + 127 - 15) << 23 | mant << 13;      /* normal */
    } else if (mant == 0) {
        bits = sign;                                            /* ±0 */
    } else {
        /* Subnormal: shift the mantissa up until its leading 1 becomes
         * the implicit bit, lowering the exponent each step. */
        int e = 127 - 15 + 1;
        while (!(mant & 0x400)) {
            mant <<= 1;
            e--;
        }
        bits = sign | (uint32_t)e << 23 | (mant & 0x3ff) << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
/* @book end half-to-float */

/* bfloat16 is the top half of a float32. */
static float bf16_to_float(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Element i of a little-endian buffer of type dt, as a double (exact for
 * every type but int64 beyond 2^53). */
static double element_as_double(const uint8_t *p, sc_dtype dt)
{
    switch (dt) {
    case SC_DT_F32: { float v; memcpy(&v, p, 4); return v; }
    case SC_DT_F64: { double v; memcpy(&v, p, 8); return v; }
    case SC_DT_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case SC_DT_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case SC_DT_U8: return p[0];
    case SC_DT_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case SC_DT_F16: { uint16_t v; memcpy(&v, p, 2); return half_to_float(v); }
    case SC_DT_BF16: { uint16_t v; memcpy(&v, p, 2); return bf16_to_float(v); }
    }
    return 0;
}

/* Convert n elements of type dt to float32 — the one conversion loop that
 * .npy arrays and checkpoint tensors share. float64 values beyond the
 * float32 range become ±inf, as numpy's astype does. Elements are read
 * with memcpy, so `src` need not be aligned. */
static void convert_to_f32(float *dst, const uint8_t *src, sc_dtype dt, size_t n)
{
    size_t sz = sc_dtype_size(dt);
    if (dt == SC_DT_F32) {
        memcpy(dst, src, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        /* IEEE rounding; beyond the float range this gives ±inf (C11 F.4). */
        dst[i] = (float)element_as_double(src + i * sz, dt);
    }
}

sc_status sc_array_to_f32(const sc_array *a, float **out, sc_err *err)
{
    *out = NULL;
    size_t n = (size_t)sc_array_numel(a), bytes;
    if (!sc_mul_ok(n, sizeof(float), &bytes)) return sc_fail(err, SC_ENOMEM, "array too large");
    float *dst = malloc(bytes ? bytes : 1);
    if (!dst) return sc_fail(err, SC_ENOMEM, "out of memory for %zu bytes", bytes);
    convert_to_f32(dst, a->data, a->dtype, n);
    *out = dst;
    return SC_OK;
}

/* Integers convert exactly; floats only when they hold whole numbers that
 * fit in int64 (token ids written as float by some tool, say). */
sc_status sc_array_to_i64(const sc_array *a, int64_t **out, sc_err *err)
{
    *out = NULL;
    size_t n = (size_t)sc_array_numel(a), bytes, sz = sc_dtype_size(a->dtype);
    if (!sc_mul_ok(n, sizeof(int64_t), &bytes)) return sc_fail(err, SC_ENOMEM, "array too large");
    int64_t *dst = malloc(bytes ? bytes : 1);
    if (!dst) return sc_fail(err, SC_ENOMEM, "out of memory for %zu bytes", bytes);
    const uint8_t *src = a->data;
    for (size_t i = 0; i < n; i++) {
        if (a->dtype == SC_DT_I64) {
            memcpy(&dst[i], src + i * 8, 8);
            continue;
        }
        double v = element_as_double(src + i * sz, a->dtype);
        /* 2^63 is exactly representable; anything at or past it is not an int64. */
        if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0) || v != floor(v)) {
            free(dst);
            return sc_fail(err, SC_ERANGE, "%s array: element %zu (%g) is not an integer", sc_dtype_name(a->dtype),
                           i, v);
        }
        dst[i] = (int64_t)v;
    }
    *out = dst;
    return SC_OK;
}

/* ======================================================================== */
/* 4. safetensors                                                            */
/* ======================================================================== */

/* Weight files of every format become one sc_weights: a table of sc_weight
 * entries sorted by name, pointing into memory the container owns (mapped
 * files, decompressed zip entries). This section has the container and the
 * safetensors format; section 5 adds PyTorch's zip checkpoints and the
 * opener that recognises a file's format. */

#define WEIGHTS_MAX_TENSORS (1 << 20)
#define ST_MAX_HEADER ((uint64_t)100000000) /* the safetensors library's own limit */

/* Something to release when the container closes. */
typedef struct weights_memory {
    struct weights_memory *next;
    void *addr;
    size_t len;
    int mapped;            /* munmap, else free */
} weights_memory;

struct sc_weights {
    const char *path;      /* what was opened (in arena) */
    const char *format;    /* "safetensors" or "pytorch" */
    sc_weight *items;      /* [n], sorted by name once complete */
    int n, cap;
    sc_arena arena;        /* names, paths, memory records */
    weights_memory *memory;
};

static sc_status weights_new(sc_weights **out, const char *path, sc_err *err)
{
    sc_weights *w = calloc(1, sizeof *w);
    if (!w) return sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    sc_arena_init(&w->arena, "weight names", (size_t)1 << 16, 0);
    size_t n = strlen(path) + 1;
    char *p = sc_arena_alloc(&w->arena, n);
    if (!p) {
        sc_arena_free(&w->arena);
        free(w);
        return sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    }
    memcpy(p, path, n);
    w->path = p;
    *out = w;
    return SC_OK;
}

void sc_weights_close(sc_weights *w)
{
    if (!w) return;
    for (weights_memory *m = w->memory; m; m = m->next) {
        if (m->mapped) munmap(m->addr, m->len);
        else free(m->addr);
    }
    free(w->items);
    sc_arena_free(&w->arena);
    free(w);
}

/* Hand memory to the container (freed or unmapped at close). */
static sc_status weights_keep(sc_weights *w, void *addr, size_t len, int mapped, sc_err *err)
{
    weights_memory *m = sc_arena_alloc(&w->arena, sizeof *m);
    if (!m) {
        if (mapped) munmap(addr, len);
        else free(addr);
        return sc_fail(err, SC_ENOMEM, "%s: out of memory", w->path);
    }
    m->addr = addr;
    m->len = len;
    m->mapped = mapped;
    m->next = w->memory;
    w->memory = m;
    return SC_OK;
}

/* Map a whole file read-only; the mapping belongs to w. */
static sc_status weights_map_file(sc_weights *w, const char *path, const uint8_t **bytes, size_t *len, sc_err *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return sc_fail(err, SC_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sc_fail(err, SC_EIO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return sc_fail(err, SC_EFORMAT, "%s: empty file", path);
    }
    void *addr = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (addr == MAP_FAILED) return sc_fail(err, SC_EIO, "%s: cannot map: %s", path, strerror(map_errno));
    *bytes = addr;
    *len = (size_t)st.st_size;
    return weights_keep(w, addr, (size_t)st.st_size, 1, err);
}

/* A new entry named by `len` bytes of `name` (copied), zeroed otherwise.
 * The pointer is valid until the next weights_add. */
static sc_weight *weights_add(sc_weights *w, const char *name, size_t len, sc_err *err)
{
    if (w->n == w->cap) {
        if (w->cap >= WEIGHTS_MAX_TENSORS) {
            sc_fail(err, SC_ENOMEM, "%s: more than %d tensors", w->path, WEIGHTS_MAX_TENSORS);
            return NULL;
        }
        int cap = w->cap ? w->cap * 2 : 256;
        sc_weight *items = realloc(w->items, (size_t)cap * sizeof *items);
        if (!items) {
            sc_fail(err, SC_ENOMEM, "%s: out of memory", w->path);
            return NULL;
        }
        w->items = items;
        w->cap = cap;
    }
    char *copy = sc_arena_alloc(&w->arena, len + 1);
    if (!copy) {
        sc_fail(err, SC_ENOMEM, "%s: out of memory", w->path);
        return NULL;
    }
    memcpy(copy, name, len);
    copy[len] = 0;
    sc_weight *t = &w->items[w->n++];
    memset(t, 0, sizeof *t);
    t->name = copy;
    return t;
}

/* Fill ndim, shape, numel and C-order strides; the caller has checked the
 * dims. */
static void weight_set_shape(sc_weight *t, int ndim, const int64_t *shape)
{
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->numel *= shape[i];
    }
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= shape[i];
    }
}

static int weight_cmp(const void *a, const void *b)
{
    return strcmp(((const sc_weight *)a)->name, ((const sc_weight *)b)->name);
}

/* Sort by name; a name twice (in one file or across shards) is an error —
 * which copy would a loader take? */
static sc_status weights_finish(sc_weights *w, sc_err *err)
{
    if (w->n > 1) qsort(w->items, (size_t)w->n, sizeof *w->items, weight_cmp);
    for (int i = 1; i < w->n; i++)
        if (strcmp(w->items[i - 1].name, w->items[i].name) == 0)
            return sc_fail(err, SC_EFORMAT, "%s: tensor '%s' appears twice", w->path, w->items[i].name);
    return SC_OK;
}

int sc_weights_count(const sc_weights *w)
{
    return w->n;
}

const sc_weight *sc_weights_at(const sc_weights *w, int i)
{
    SC_ASSERT(i >= 0 && i < w->n, "weight index %d of %d", i, w->n);
    return &w->items[i];
}

const sc_weight *sc_weights_find(const sc_weights *w, const char *name)
{
    sc_weight key;
    key.name = name;
    return w->n ? bsearch(&key, w->items, (size_t)w->n, sizeof *w->items, weight_cmp) : NULL;
}

const char *sc_weights_path(const sc_weights *w)
{
    return w->path;
}

const char *sc_weights_format(const sc_weights *w)
{
    return w->format;
}

static int weight_is_contiguous(const sc_weight *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

/* @book begin weight-gather */
/* Step the index (i0, .., ik) of t to the next element in C order, like an
 * odometer, and return how far the element offset moves: +stride[j] for
 * the digit that advances, -stride[j]·(shape[j] - 1) for each digit that
 * rolls over to 0 before it. */
static int64_t odometer_step(const sc_weight *t, int64_t *idx)
{
    int64_t delta = 0;
    for (int j = t->ndim - 1; j >= 0; j--) {
        delta += t->stride[j];
        if (++idx[j] < t->shape[j]) break;
        delta -= t->stride[j] * t->shape[j];
        idx[j] = 0;
    }
    return delta;
}

void sc_weight_to_f32(const sc_weight *t, float *dst)
{
    if (weight_is_contiguous(t)) {
        convert_to_f32(dst, t->data, t->dtype, (size_t)t->numel);
        return;
    }
    size_t size = sc_dtype_size(t->dtype);
    int64_t idx[SC_ARRAY_MAX_DIMS] = {0};
    int64_t off = 0;
    for (int64_t n = 0; n < t->numel; n++) {
        convert_to_f32(dst + n, t->data + (size_t)off * size, t->dtype, 1);
        off += odometer_step(t, idx);
    }
}
/* @book end weight-gather */

const float *sc_weight_f32_data(const sc_weight *t)
{
    if (t->dtype != SC_DT_F32 || !weight_is_contiguous(t) || (uintptr_t)t->data % sizeof(float) != 0) return NULL;
    return (const float *)(const void *)t->data;
}

static const sc_weight *weights_need(const sc_weights *w, const char *name, sc_err *err)
{
    const sc_weight *t = sc_weights_find(w, name);
    if (!t) sc_fail(err, SC_EFORMAT, "%s: no tensor named '%s'", w->path, name);
    return t;
}

sc_status sc_weights_get_f32(const sc_weights *w, const char *name, sc_arena *a, sc_tensor **out, sc_err *err)
{
    *out = NULL;
    const sc_weight *t = weights_need(w, name, err);
    if (!t) return SC_EFORMAT;
    if (t->ndim > SC_MAX_DIMS)
        return sc_fail(err, SC_EUNSUPPORTED, "%s: tensor '%s' has %d dimensions; at most %d are supported", w->path,
                       name, t->ndim, SC_MAX_DIMS);
    sc_tensor *x = sc_tensor_try_new(a, t->ndim, t->shape, name);
    if (!x)
        return sc_fail(err, SC_ENOMEM, "%s: arena '%s' cannot hold tensor '%s' (%lld elements)", w->path, a->name,
                       name, (long long)t->numel);
    sc_weight_to_f32(t, x->data);
    *out = x;
    return SC_OK;
}

sc_status sc_weights_read_i64(const sc_weights *w, const char *name, int64_t *dst, int64_t n, sc_err *err)
{
    const sc_weight *t = weights_need(w, name, err);
    if (!t) return SC_EFORMAT;
    if (t->numel != n)
        return sc_fail(err, SC_ESHAPE, "%s: tensor '%s' has %lld elements but %lld were expected", w->path, name,
                       (long long)t->numel, (long long)n);
    if (t->dtype != SC_DT_I64 && t->dtype != SC_DT_I32 && t->dtype != SC_DT_U16 && t->dtype != SC_DT_U8)
        return sc_fail(err, SC_EFORMAT, "%s: tensor '%s' holds %s, not integers", w->path, name,
                       sc_dtype_name(t->dtype));
    /* The float path would lose int64 precision past 2^24: walk the
     * elements here, with the same odometer. */
    size_t size = sc_dtype_size(t->dtype);
    int64_t idx[SC_ARRAY_MAX_DIMS] = {0};
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *p = t->data + (size_t)off * size;
        int64_t v = 0;
        if (t->dtype == SC_DT_I64) memcpy(&v, p, 8);
        else v = (int64_t)element_as_double(p, t->dtype); /* 32-bit and smaller: exact */
        dst[i] = v;
        off += odometer_step(t, idx);
    }
    return SC_OK;
}

/* The dtype names of the safetensors format; ours where we read them. */
static const struct {
    const char *name;
    int dtype; /* an sc_dtype, or -1 for a valid type we do not read */
} st_types[] = {
    {"F32", SC_DT_F32}, {"F16", SC_DT_F16}, {"BF16", SC_DT_BF16}, {"F64", SC_DT_F64}, {"I64", SC_DT_I64},
    {"I32", SC_DT_I32}, {"U16", SC_DT_U16}, {"U8", SC_DT_U8},     {"BOOL", -1},       {"I8", -1},
    {"I16", -1},        {"U32", -1},        {"U64", -1},          {"F8_E5M2", -1},    {"F8_E4M3", -1},
};

/* A JSON number that is a whole number in [0, max] (max ≤ 2^53, where
 * doubles still hold every integer). */
static int json_whole(const sc_json *v, double max, uint64_t *out)
{
    if (!v || v->type != SC_JSON_NUMBER || !(v->number >= 0 && v->number <= max) || v->number != floor(v->number))
        return 0;
    *out = (uint64_t)v->number;
    return 1;
}

/* One tensor of the header, before its range is checked against the others. */
typedef struct {
    const char *name;
    sc_dtype dtype;
    int ndim;
    int64_t shape[SC_ARRAY_MAX_DIMS];
    uint64_t begin, end;   /* byte range in the data section */
} st_entry;

static sc_status st_entry_parse(const char *what, const char *name, const sc_json *v, st_entry *e, sc_err *err)
{
    memset(e, 0, sizeof *e);
    e->name = name;
    if (!v || v->type != SC_JSON_OBJECT)
        return sc_fail(err, SC_EFORMAT, "%s: header entry '%s' is not an object", what, name);
    const char *dt = sc_json_get_string(v, "dtype", NULL);
    const sc_json *shape = sc_json_get(v, "shape");
    const sc_json *offs = sc_json_get(v, "data_offsets");
    if (!dt || !shape || shape->type != SC_JSON_ARRAY || !offs || offs->type != SC_JSON_ARRAY)
        return sc_fail(err, SC_EFORMAT, "%s: tensor '%s' lacks a string 'dtype', array 'shape' or array "
                       "'data_offsets'", what, name);
    size_t k = 0, nt = sizeof st_types / sizeof st_types[0];
    while (k < nt && strcmp(st_types[k].name, dt) != 0) k++;
    if (k == nt) return sc_fail(err, SC_EFORMAT, "%s: tensor '%s' has unknown dtype '%s'", what, name, dt);
    if (st_types[k].dtype < 0)
        return sc_fail(err, SC_EUNSUPPORTED, "%s: tensor '%s' has dtype %s, which scale does not read (F32, F16, "
                       "BF16, F64, I64, I32, U16, U8)", what, name, dt);
    e->dtype = (sc_dtype)st_types[k].dtype;
    if (shape->len > SC_ARRAY_MAX_DIMS)
        return sc_fail(err, SC_EUNSUPPORTED, "%s: tensor '%s' has %zu dimensions, more than %d", what, name,
                       shape->len, SC_ARRAY_MAX_DIMS);
    e->ndim = (int)shape->len;
    for (int i = 0; i < e->ndim; i++) {
        uint64_t d;
        if (!json_whole(shape->items[i], (double)ARRAY_MAX_DIM, &d))
            return sc_fail(err, SC_EFORMAT, "%s: tensor '%s': dimension %d is not an integer in [0, 2^31]", what,
                           name, i);
        e->shape[i] = (int64_t)d;
    }
    if (offs->len != 2 || !json_whole(offs->items[0], 9007199254740992.0, &e->begin) ||
        !json_whole(offs->items[1], 9007199254740992.0, &e->end))
        return sc_fail(err, SC_EFORMAT, "%s: tensor '%s': data_offsets is not a pair of byte offsets", what, name);
    if (e->begin > e->end)
        return sc_fail(err, SC_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", what,
                       name, (unsigned long long)e->begin, (unsigned long long)e->end);
    int ok;
    size_t nbytes = shape_bytes(e->ndim, e->shape, sc_dtype_size(e->dtype), &ok);
    if (!ok) return sc_fail(err, SC_EFORMAT, "%s: tensor '%s': shape × dtype overflows", what, name);
    if ((uint64_t)nbytes != e->end - e->begin) {
        char sh[160];
        return sc_fail(err, SC_EFORMAT, "%s: tensor '%s' is %s %s (%zu bytes) but data_offsets span %llu bytes", what,
                       name, dt, shape_text(e->ndim, e->shape, sh, sizeof sh), nbytes,
                       (unsigned long long)(e->end - e->begin));
    }
    return SC_OK;
}

static int st_entry_cmp(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* @book begin safetensors-ranges */
/* The tensors' byte ranges, sorted by start, must tile the data section
 * exactly: no overlap (two names aliasing one buffer), no gap (bytes no
 * tensor accounts for), nothing past the end — the rule the safetensors
 * library itself enforces. */
static sc_status st_check_ranges(const char *what, st_entry *e, size_t n, uint64_t data_len, sc_err *err)
{
    qsort(e, n, sizeof *e, st_entry_cmp);
    uint64_t covered = 0; /* bytes [0, covered) belong to tensors so far */
    for (size_t i = 0; i < n; i++) {
        if (e[i].begin < covered)
            return sc_fail(err, SC_EFORMAT, "%s: tensors '%s' and '%s' overlap (bytes %llu to %llu)", what,
                           e[i - 1].name, e[i].name, (unsigned long long)e[i].begin, (unsigned long long)covered);
        if (e[i].begin > covered)
            return sc_fail(err, SC_EFORMAT, "%s: data bytes %llu to %llu belong to no tensor", what,
                           (unsigned long long)covered, (unsigned long long)e[i].begin);
        covered = e[i].end;
    }
    if (covered != data_len)
        return sc_fail(err, SC_EFORMAT, "%s: the tensors cover %llu data bytes but the file holds %llu", what,
                       (unsigned long long)covered, (unsigned long long)data_len);
    return SC_OK;
}
/* @book end safetensors-ranges */

/* Parse one safetensors file of `len` bytes into w:
 *   u64 header_len | header_len bytes of JSON | data section
 * where the JSON maps each name to {dtype, shape, data_offsets} (offsets
 * relative to the data section) and "__metadata__" to free-form strings,
 * which we ignore. */
static sc_status safetensors_parse(sc_weights *w, const uint8_t *bytes, size_t len, const char *what, sc_err *err)
{
    cursor c = cursor_make(bytes, len);
    uint64_t header_len = cur_u64le(&c);
    if (c.bad)
        return sc_fail(err, SC_EFORMAT, "%s: %zu bytes are too few for a safetensors header", what, len);
    if (header_len > ST_MAX_HEADER)
        return sc_fail(err, SC_EFORMAT, "%s: safetensors header length %llu exceeds the 100 MB limit", what,
                       (unsigned long long)header_len);
    if (header_len > cur_left(&c))
        return sc_fail(err, SC_EFORMAT, "%s: safetensors header length %llu runs past the end of the file "
                       "(%zu bytes)", what, (unsigned long long)header_len, len);
    const uint8_t *header = cur_take(&c, (size_t)header_len);
    const uint8_t *data = c.p;
    uint64_t data_len = cur_left(&c);

    sc_json_doc doc;
    sc_status s = sc_json_parse(&doc, (const char *)header, (size_t)header_len, what, err);
    if (s != SC_OK) return s;
    st_entry *entries = NULL;
    size_t n = 0;
    if (doc.root->type != SC_JSON_OBJECT) {
        s = sc_fail(err, SC_EFORMAT, "%s: the safetensors header is not a JSON object", what);
        goto done;
    }
    entries = malloc((doc.root->len ? doc.root->len : 1) * sizeof *entries);
    if (!entries) {
        s = sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
        goto done;
    }
    for (size_t i = 0; i < doc.root->len && s == SC_OK; i++) {
        if (strcmp(doc.root->keys[i], "__metadata__") == 0) continue;
        s = st_entry_parse(what, doc.root->keys[i], doc.root->items[i], &entries[n++], err);
    }
    if (s == SC_OK) s = st_check_ranges(what, entries, n, data_len, err);
    for (size_t i = 0; i < n && s == SC_OK; i++) {
        sc_weight *t = weights_add(w, entries[i].name, strlen(entries[i].name), err);
        if (!t) {
            s = SC_ENOMEM;
            break;
        }
        t->dtype = entries[i].dtype;
        weight_set_shape(t, entries[i].ndim, entries[i].shape);
        t->data = data + entries[i].begin;
    }
done:
    free(entries);
    sc_json_free(&doc);
    return s;
}

/* A growable byte string for building headers. */
typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->failed = 1;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_printf(strbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    SC_ASSERT(k >= 0 && (size_t)k < sizeof tmp, "sb_printf: piece too long");
    sb_add(b, tmp, (size_t)k);
}

/* A JSON string literal: quotes, backslashes and control characters escaped. */
static void sb_json_string(strbuf *b, const char *s)
{
    sb_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            sb_add(b, e, 2);
        } else if (ch < 0x20) {
            sb_printf(b, "\\u%04x", ch);
        } else {
            sb_add(b, s, 1);
        }
    }
    sb_add(b, "\"", 1);
}

static void sb_str(strbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Tensors to write, sorted by name. */
typedef struct {
    const char *name;
    const sc_tensor *t;
} named_tensor;

static int named_tensor_cmp(const void *a, const void *b)
{
    return strcmp(((const named_tensor *)a)->name, ((const named_tensor *)b)->name);
}

sc_status sc_safetensors_write(const char *path, const char *const *names, const sc_tensor *const *tensors, int n,
                               sc_err *err)
{
    if (n < 0) return sc_fail(err, SC_EARG, "%s: negative tensor count", path);
    named_tensor *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) {
        order[i].name = names[i];
        order[i].t = tensors[i];
    }
    qsort(order, (size_t)n, sizeof *order, named_tensor_cmp);
    sc_status s = SC_OK;
    for (int i = 0; i < n && s == SC_OK; i++) {
        const char *name = order[i].name;
        if (!name[0] || strcmp(name, "__metadata__") == 0 || (i && strcmp(name, order[i - 1].name) == 0))
            s = sc_fail(err, SC_EARG, "%s: tensor name '%s' is empty, reserved or repeated", path, name);
        for (size_t k = 0, len = strlen(name), step; k < len && s == SC_OK; k += step)
            if ((step = utf8_valid_len((const uint8_t *)name + k, len - k)) == 0)
                s = sc_fail(err, SC_EARG, "%s: tensor name '%s' is not valid UTF-8", path, name);
    }
    /* The header, then its padding to 8 bytes so the data stays aligned. */
    strbuf h = {0};
    sb_str(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t offset = 0;
    for (int i = 0; i < n && s == SC_OK; i++) {
        const sc_tensor *t = order[i].t;
        sb_str(&h, ",");
        sb_json_string(&h, order[i].name);
        sb_str(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) sb_printf(&h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        uint64_t bytes = (uint64_t)sc_numel(t) * sizeof(float);
        sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                  (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    sb_str(&h, "}");
    while (h.len % 8 && !h.failed) sb_str(&h, " ");
    size_t total;
    if (s == SC_OK && (h.failed || !sc_add_ok(8 + h.len, (size_t)offset, &total)))
        s = sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    uint8_t *file = s == SC_OK ? malloc(total) : NULL;
    if (s == SC_OK && !file) s = sc_fail(err, SC_ENOMEM, "%s: out of memory for %zu bytes", path, total);
    if (s == SC_OK) {
        for (int i = 0; i < 8; i++) file[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
        memcpy(file + 8, h.p, h.len);
        float *dst = (float *)(void *)(file + 8 + h.len); /* 8-aligned: malloc + 8 + multiple of 8 */
        for (int i = 0; i < n; i++) {
            const sc_tensor *t = order[i].t;
            sc_weight view = {0};
            view.dtype = SC_DT_F32;
            view.ndim = t->ndim;
            view.numel = sc_numel(t);
            view.data = (const uint8_t *)t->data;
            for (int d = 0; d < t->ndim; d++) {
                view.shape[d] = t->shape[d];
                view.stride[d] = t->stride[d];
            }
            sc_weight_to_f32(&view, dst);
            dst += view.numel;
        }
        s = sc_write_file_atomic(path, file, total, err);
    }
    free(file);
    free(h.p);
    free(order);
    return s;
}

/* ======================================================================== */
/* 5. zip archives and PyTorch checkpoints (the pickle subset)               */
/* ======================================================================== */

/* Since PyTorch 1.6, torch.save writes a zip archive:
 *
 *   <prefix>/data.pkl      the state dict, pickled (protocol 2)
 *   <prefix>/data/<key>    raw little-endian bytes of each storage
 *   <prefix>/version       "3\n"; newer versions add byteorder, .data/...
 *
 * Reading it takes two machines. The zip reader trusts nothing: the end
 * record must point at a central directory inside the file, every central
 * entry must agree with its local header (name, method, sizes — or with the
 * data descriptor that follows the data), and entries may not overlap. The
 * pickle machine then runs data.pkl, but where Python's pickle would import
 * and call whatever the file names, ours knows a dozen opcodes and five
 * kinds of global, builds plain values, and refuses everything else. */

#define ZIP_MAX_ENTRIES (1 << 20)
#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP64_LOCATOR_SIG 0x07064b50u
#define ZIP64_EOCD_SIG 0x06064b50u
#define ZIP_CENTRAL_SIG 0x02014b50u
#define ZIP_LOCAL_SIG 0x04034b50u
#define ZIP_DESCRIPTOR_SIG 0x08074b50u
/* Deflate cannot expand data more than about 1032 times (a 258-byte match
 * costs at least 2 bits): a size claim beyond that is a lie, refused before
 * any memory is spent on it. */
#define DEFLATE_MAX_RATIO 1032

typedef struct {
    const char *name;       /* NUL-terminated copy */
    int method;             /* 0 stored, 8 deflate */
    uint32_t crc;
    uint64_t csize, usize;  /* compressed and uncompressed bytes */
    uint64_t local;         /* offset of the local header */
    const uint8_t *data;    /* the compressed bytes, inside the archive */
    const uint8_t *bytes;   /* the uncompressed bytes once read and checked */
} zip_entry;

typedef struct {
    zip_entry *entries;     /* [n], in central directory order */
    size_t n;
} zip_archive;

/* The zip64 extended-information extra field (id 1) replaces each 32-bit
 * field that holds 0xFFFFFFFF, in the order usize, csize, local offset. */
static int zip64_extra(const uint8_t *extra, size_t len, uint64_t *usize, uint64_t *csize, uint64_t *local)
{
    cursor c = cursor_make(extra, len);
    while (cur_left(&c) >= 4) {
        uint16_t id = cur_u16le(&c), size = cur_u16le(&c);
        const uint8_t *body = cur_take(&c, size);
        if (!body) return 0;
        if (id != 1) continue;
        cursor b = cursor_make(body, size);
        if (usize && *usize == 0xFFFFFFFFu) *usize = cur_u64le(&b);
        if (csize && *csize == 0xFFFFFFFFu) *csize = cur_u64le(&b);
        if (local && *local == 0xFFFFFFFFu) *local = cur_u64le(&b);
        return !b.bad;
    }
    return 1;
}

/* Find the end-of-central-directory record: the last "PK\5\6" whose
 * comment runs exactly to the end of the file. */
static sc_status zip_find_end(const uint8_t *bytes, size_t len, const char *what, size_t *eocd, sc_err *err)
{
    size_t lowest = len > 22 + 65535 ? len - 22 - 65535 : 0;
    for (size_t pos = len >= 22 ? len - 22 + 1 : 0; pos-- > lowest;) {
        cursor c = cursor_make(bytes + pos, len - pos);
        if (cur_u32le(&c) != ZIP_EOCD_SIG) continue;
        cur_take(&c, 16);
        if (pos + 22 + cur_u16le(&c) == len) {
            *eocd = pos;
            return SC_OK;
        }
    }
    return sc_fail(err, SC_EFORMAT, "%s: not a zip archive (no end-of-central-directory record)", what);
}

/* Where the central directory is and how many entries it holds, from the
 * end record or, when that says "see zip64", from the zip64 end record. */
static sc_status zip_directory(const uint8_t *bytes, size_t len, const char *what, uint64_t *cd_offset,
                               uint64_t *cd_size, uint64_t *count, uint64_t *cd_limit, sc_err *err)
{
    size_t eocd = 0;
    sc_status s = zip_find_end(bytes, len, what, &eocd, err);
    if (s != SC_OK) return s;
    cursor c = cursor_make(bytes + eocd + 4, len - eocd - 4);
    uint16_t disk = cur_u16le(&c), cd_disk = cur_u16le(&c);
    cur_u16le(&c); /* entries on this disk */
    *count = cur_u16le(&c);
    *cd_size = cur_u32le(&c);
    *cd_offset = cur_u32le(&c);
    *cd_limit = eocd;
    if (disk != 0 || cd_disk != 0)
        return sc_fail(err, SC_EUNSUPPORTED, "%s: multi-volume zip archives are not supported", what);
    if (*count == 0xFFFF || *cd_size == 0xFFFFFFFFu || *cd_offset == 0xFFFFFFFFu) {
        if (eocd < 20) return sc_fail(err, SC_EFORMAT, "%s: zip64 archive without a zip64 locator", what);
        cursor l = cursor_make(bytes + eocd - 20, 20);
        if (cur_u32le(&l) != ZIP64_LOCATOR_SIG)
            return sc_fail(err, SC_EFORMAT, "%s: zip64 archive without a zip64 locator", what);
        cur_u32le(&l);
        uint64_t at = cur_u64le(&l);
        if (at > eocd - 20 || eocd - 20 - at < 56)
            return sc_fail(err, SC_EFORMAT, "%s: zip64 end record outside the file", what);
        cursor z = cursor_make(bytes + at, eocd - 20 - (size_t)at);
        if (cur_u32le(&z) != ZIP64_EOCD_SIG) return sc_fail(err, SC_EFORMAT, "%s: bad zip64 end record", what);
        cur_take(&z, 8 + 2 + 2 + 4 + 4 + 8); /* record size, versions, disks, entries on disk */
        *count = cur_u64le(&z);
        *cd_size = cur_u64le(&z);
        *cd_offset = cur_u64le(&z);
        *cd_limit = (size_t)at;
    }
    if (*cd_offset > *cd_limit || *cd_size > *cd_limit - *cd_offset)
        return sc_fail(err, SC_EFORMAT, "%s: the zip central directory lies outside the file", what);
    /* Every central entry takes at least 46 bytes: a count the directory
     * cannot hold is a lie, caught before anything is allocated for it. */
    if (*count > *cd_size / 46 || *count > ZIP_MAX_ENTRIES)
        return sc_fail(err, SC_EFORMAT, "%s: the zip end record claims %llu entries in %llu bytes", what,
                       (unsigned long long)*count, (unsigned long long)*cd_size);
    return SC_OK;
}

/* Check entry e's local header against the central directory and locate
 * its data. A data descriptor (flag bit 3) after the data must agree too. */
static sc_status zip_check_local(const uint8_t *bytes, uint64_t cd_offset, const char *what, int flags,
                                 zip_entry *e, sc_err *err)
{
    if (e->local > cd_offset || cd_offset - e->local < 30)
        return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s' has its local header outside the archive", what, e->name);
    cursor c = cursor_make(bytes + e->local, (size_t)(cd_offset - e->local));
    if (cur_u32le(&c) != ZIP_LOCAL_SIG)
        return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s': no local header where the central directory "
                       "says", what, e->name);
    cur_u16le(&c);
    uint16_t lflags = cur_u16le(&c), method = cur_u16le(&c);
    cur_u32le(&c);
    uint32_t crc = cur_u32le(&c);
    uint64_t csize = cur_u32le(&c), usize = cur_u32le(&c);
    uint16_t nlen = cur_u16le(&c), elen = cur_u16le(&c);
    const uint8_t *name = cur_take(&c, nlen);
    const uint8_t *extra = cur_take(&c, elen);
    if (c.bad) return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s': truncated local header", what, e->name);
    if (nlen != strlen(e->name) || memcmp(name, e->name, nlen) != 0 || method != e->method ||
        (lflags & 8) != (flags & 8))
        return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s': the local header disagrees with the central "
                       "directory (name, method or flags)", what, e->name);
    if (!zip64_extra(extra, elen, &usize, &csize, NULL))
        return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s': malformed extra field", what, e->name);
    int deferred = (flags & 8) && crc == 0 && csize == 0 && usize == 0;
    if (!deferred && (crc != e->crc || csize != e->csize || usize != e->usize))
        return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s': sizes or CRC in the local header (%llu bytes) "
                       "disagree with the central directory (%llu bytes)", what, e->name,
                       (unsigned long long)csize, (unsigned long long)e->csize);
    if (e->csize > cur_left(&c))
        return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s': %llu bytes of data run past the central directory",
                       what, e->name, (unsigned long long)e->csize);
    e->data = cur_take(&c, (size_t)e->csize);
    if (flags & 8) {
        /* crc, csize, usize after an optional signature; 32- or 64-bit sizes. */
        cursor d = c, peek = c;
        if (cur_u32le(&peek) == ZIP_DESCRIPTOR_SIG) d = peek;
        cursor d64 = d;
        uint32_t dcrc = cur_u32le(&d);
        uint64_t dc = cur_u32le(&d), du = cur_u32le(&d);
        cur_u32le(&d64);
        uint64_t dc64 = cur_u64le(&d64), du64 = cur_u64le(&d64);
        int ok32 = !d.bad && dcrc == e->crc && dc == e->csize && du == e->usize;
        int ok64 = !d64.bad && dcrc == e->crc && dc64 == e->csize && du64 == e->usize;
        if (!ok32 && !ok64)
            return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s': the data descriptor disagrees with the central "
                           "directory", what, e->name);
    }
    return SC_OK;
}

static int zip_entry_cmp(const void *a, const void *b)
{
    const zip_entry *x = a, *y = b;
    return x->local < y->local ? -1 : x->local > y->local;
}

/* Read the central directory into `scratch`; entries end up sorted by
 * position, which is also how overlaps are found. */
static sc_status zip_open(const uint8_t *bytes, size_t len, const char *what, sc_arena *scratch, zip_archive *z,
                          sc_err *err)
{
    memset(z, 0, sizeof *z);
    uint64_t cd_offset, cd_size, count, cd_limit;
    sc_status s = zip_directory(bytes, len, what, &cd_offset, &cd_size, &count, &cd_limit, err);
    if (s != SC_OK) return s;
    z->entries = sc_arena_calloc(scratch, count ? (size_t)count : 1, sizeof *z->entries);
    if (!z->entries) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    cursor c = cursor_make(bytes + cd_offset, (size_t)cd_size);
    for (uint64_t i = 0; i < count; i++) {
        zip_entry *e = &z->entries[i];
        if (cur_u32le(&c) != ZIP_CENTRAL_SIG)
            return sc_fail(err, SC_EFORMAT, "%s: zip central directory entry %llu is damaged", what,
                           (unsigned long long)i);
        cur_take(&c, 4);
        uint16_t flags = cur_u16le(&c);
        e->method = cur_u16le(&c);
        cur_u32le(&c);
        e->crc = cur_u32le(&c);
        e->csize = cur_u32le(&c);
        e->usize = cur_u32le(&c);
        uint16_t nlen = cur_u16le(&c), elen = cur_u16le(&c), clen = cur_u16le(&c);
        cur_take(&c, 2 + 2 + 4);
        e->local = cur_u32le(&c);
        const uint8_t *name = cur_take(&c, nlen);
        const uint8_t *extra = cur_take(&c, elen);
        cur_take(&c, clen);
        if (c.bad) return sc_fail(err, SC_EFORMAT, "%s: the zip central directory is truncated", what);
        char *copy = sc_arena_alloc(scratch, (size_t)nlen + 1);
        if (!copy) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
        memcpy(copy, name, nlen);
        copy[nlen] = 0;
        e->name = copy;
        if (memchr(name, 0, nlen)) return sc_fail(err, SC_EFORMAT, "%s: zip entry name with a NUL byte", what);
        if (!zip64_extra(extra, elen, &e->usize, &e->csize, &e->local))
            return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s': malformed extra field", what, e->name);
        if (flags & 1) return sc_fail(err, SC_EUNSUPPORTED, "%s: zip entry '%s' is encrypted", what, e->name);
        if (e->method != 0 && e->method != 8)
            return sc_fail(err, SC_EUNSUPPORTED, "%s: zip entry '%s' uses compression method %d (only stored and "
                           "deflate are read)", what, e->name, e->method);
        if (e->method == 0 && e->csize != e->usize)
            return sc_fail(err, SC_EFORMAT, "%s: stored zip entry '%s' has different sizes", what, e->name);
        if (e->method == 8 && e->usize / DEFLATE_MAX_RATIO > e->csize + 1)
            return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s' claims %llu bytes from %llu compressed", what,
                           e->name, (unsigned long long)e->usize, (unsigned long long)e->csize);
        s = zip_check_local(bytes, cd_offset, what, flags, e, err);
        if (s != SC_OK) return s;
    }
    z->n = (size_t)count;
    qsort(z->entries, z->n, sizeof *z->entries, zip_entry_cmp);
    for (size_t i = 1; i < z->n; i++)
        if (z->entries[i - 1].data + z->entries[i - 1].csize > bytes + z->entries[i].local)
            return sc_fail(err, SC_EFORMAT, "%s: zip entries '%s' and '%s' overlap", what, z->entries[i - 1].name,
                           z->entries[i].name);
    return SC_OK;
}

static zip_entry *zip_find(const zip_archive *z, const char *name, size_t len)
{
    for (size_t i = 0; i < z->n; i++)
        if (strlen(z->entries[i].name) == len && memcmp(z->entries[i].name, name, len) == 0) return &z->entries[i];
    return NULL;
}

/* The uncompressed bytes of an entry, checked against its CRC-32: in place
 * when stored, else inflated into memory owned by w. Checked once; later
 * calls return the same bytes. */
static sc_status zip_entry_bytes(sc_weights *w, zip_entry *e, const char *what, const uint8_t **out, sc_err *err)
{
    if (e->bytes) {
        *out = e->bytes;
        return SC_OK;
    }
    const uint8_t *bytes = e->data;
    if (e->method == 8) {
        uint8_t *buf;
        size_t len;
        sc_status s = sc_inflate(e->data, (size_t)e->csize, SC_INFLATE_RAW, (size_t)e->usize, &buf, &len, err);
        if (s != SC_OK) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err ? err->msg : "");
            return sc_fail(err, s, "%s: zip entry '%s': %s", what, e->name, why);
        }
        s = weights_keep(w, buf, len, 0, err);
        if (s != SC_OK) return s;
        if (len != e->usize)
            return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s' inflates to %zu bytes, not %llu", what, e->name, len,
                           (unsigned long long)e->usize);
        bytes = buf;
    }
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION /* fuzzers skip it to reach the pickle machine */
    if (sc_crc32(0, bytes, (size_t)e->usize) != e->crc)
        return sc_fail(err, SC_EFORMAT, "%s: zip entry '%s' fails its CRC-32 check (the file is damaged)", what,
                       e->name);
#endif
    e->bytes = bytes;
    *out = bytes;
    return SC_OK;
}

/* ---- the pickle machine ---- */

/* What a value can be. A state dict needs nothing else. */
typedef enum {
    PK_NONE, PK_BOOL, PK_INT, PK_FLOAT, PK_STR, PK_TUPLE, PK_LIST, PK_DICT,
    PK_GLOBAL, PK_STORAGE, PK_TENSOR
} pk_kind;

static const char *const pk_kind_names[] = {
    "None", "bool", "int", "float", "str", "tuple", "list", "dict", "global", "storage", "tensor"
};

/* @book begin pickle-allowlist */
/* The globals a state dict may name; nothing else can be looked up. */
typedef enum { G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_PARAMETER, G_STORAGE } pk_global;

static const struct {
    const char *module, *name;
    pk_global global;
    sc_dtype dtype; /* G_STORAGE */
} pk_globals[] = {
    {"collections", "OrderedDict", G_ORDERED_DICT, SC_DT_F32},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR, SC_DT_F32},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, SC_DT_F32},
    {"torch", "FloatStorage", G_STORAGE, SC_DT_F32},
    {"torch", "HalfStorage", G_STORAGE, SC_DT_F16},
    {"torch", "BFloat16Storage", G_STORAGE, SC_DT_BF16},
    {"torch", "DoubleStorage", G_STORAGE, SC_DT_F64},
    {"torch", "LongStorage", G_STORAGE, SC_DT_I64},
    {"torch", "IntStorage", G_STORAGE, SC_DT_I32},
    {"torch", "ByteStorage", G_STORAGE, SC_DT_U8},
};
/* @book end pickle-allowlist */

typedef struct pk_value pk_value;

typedef struct {
    sc_dtype dtype;
    int ndim;
    int64_t shape[SC_ARRAY_MAX_DIMS];
    int64_t stride[SC_ARRAY_MAX_DIMS];
    const uint8_t *data;   /* the element at index (0, .., 0) */
} pk_tensor;

struct pk_value {
    pk_kind kind;
    union {
        int64_t i;                                               /* BOOL, INT */
        double f;                                                /* FLOAT */
        struct { const uint8_t *s; size_t n; } str;              /* STR: UTF-8, not NUL-terminated */
        struct { pk_value **items; size_t n, cap; } seq;         /* TUPLE, LIST; DICT: key, value, key, ... */
        struct { pk_global which; sc_dtype dtype; } global;      /* GLOBAL */
        struct { const uint8_t *data; int64_t numel; sc_dtype dtype; } storage; /* STORAGE */
        pk_tensor *tensor;                                       /* TENSOR */
    } u;
};

#define PK_MAX_STACK (1 << 20)
#define PK_MAX_MARKS (1 << 16)
#define PK_MAX_MEMO (1 << 20)
#define PK_MAX_NEST 8  /* dicts within dicts when collecting tensors */
/* Dict entries visited when collecting: shared (memoised) dicts nested in
 * each other could otherwise ask for exponentially many visits. */
#define PK_MAX_VISITS (4 * WEIGHTS_MAX_TENSORS)

typedef struct {
    cursor c;
    const uint8_t *start;      /* of data.pkl, for byte positions in errors */
    const char *what;          /* "PATH: pickle 'x/data.pkl'" */
    sc_err *err;
    sc_arena *arena;           /* values; freed when the checkpoint is read */
    pk_value **stack;
    size_t sp, stack_cap;
    size_t *marks;             /* stack heights at each MARK */
    size_t n_marks, marks_cap;
    pk_value **memo;
    size_t memo_cap, memo_count;
    size_t visits;             /* dict entries seen by pk_collect */
    sc_weights *w;             /* storages are found through the archive */
    const zip_archive *zip;
    const char *prefix;        /* "openai" of openai/data.pkl */
    size_t prefix_len;
} pickle_vm;

static sc_status pk_fail(pickle_vm *vm, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static sc_status pk_fail(pickle_vm *vm, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t at = (size_t)(vm->c.p - vm->start);
    return sc_fail(vm->err, SC_EFORMAT, "%s, byte %zu: %s", vm->what, at ? at - 1 : 0, msg);
}

/* Grow an array of `size`-byte items to hold at least `need`, up to `max`. */
static int pk_grow(void **items, size_t *cap, size_t need, size_t size, size_t max)
{
    if (need <= *cap) return 1;
    if (need > max) return 0;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need) ncap *= 2;
    if (ncap > max) ncap = max;
    void *p = realloc(*items, ncap * size);
    if (!p) return 0;
    *items = p;
    *cap = ncap;
    return 1;
}

static pk_value *pk_new(pickle_vm *vm, pk_kind kind)
{
    pk_value *v = sc_arena_calloc(vm->arena, 1, sizeof *v);
    if (v) v->kind = kind;
    else sc_fail(vm->err, SC_ENOMEM, "%s: out of memory", vm->what);
    return v;
}

static sc_status pk_push(pickle_vm *vm, pk_value *v)
{
    if (!v) return SC_ENOMEM;
    if (!pk_grow((void **)&vm->stack, &vm->stack_cap, vm->sp + 1, sizeof *vm->stack, PK_MAX_STACK))
        return pk_fail(vm, "the pickle stack grows past %d values", PK_MAX_STACK);
    vm->stack[vm->sp++] = v;
    return SC_OK;
}

/* The stack above the innermost MARK is all an opcode may touch. */
static size_t pk_base(const pickle_vm *vm)
{
    return vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
}

static pk_value *pk_pop(pickle_vm *vm)
{
    if (vm->sp == pk_base(vm)) {
        pk_fail(vm, "stack underflow");
        return NULL;
    }
    return vm->stack[--vm->sp];
}

static pk_value *pk_top(pickle_vm *vm)
{
    if (vm->sp == pk_base(vm)) {
        pk_fail(vm, "stack underflow");
        return NULL;
    }
    return vm->stack[vm->sp - 1];
}

/* Append n values to a list, tuple or dict (pairs for a dict). */
static sc_status pk_append(pickle_vm *vm, pk_value *seq, pk_value *const *items, size_t n)
{
    if (n == 0) return SC_OK;
    size_t need;
    if (!sc_add_ok(seq->u.seq.n, n, &need)) return pk_fail(vm, "container too large");
    if (need > seq->u.seq.cap) {
        size_t cap = seq->u.seq.cap ? seq->u.seq.cap : 8;
        while (cap < need) cap *= 2;
        pk_value **grown = sc_arena_alloc(vm->arena, cap * sizeof *grown);
        if (!grown) return sc_fail(vm->err, SC_ENOMEM, "%s: out of memory", vm->what);
        if (seq->u.seq.n) memcpy(grown, seq->u.seq.items, seq->u.seq.n * sizeof *grown);
        seq->u.seq.items = grown;
        seq->u.seq.cap = cap;
    }
    memcpy(seq->u.seq.items + seq->u.seq.n, items, n * sizeof *items);
    seq->u.seq.n += n;
    return SC_OK;
}

/* Pop everything above the innermost MARK into a fresh value of `kind`
 * (TUPLE), or onto the container below the mark (LIST, DICT). */
static sc_status pk_pop_mark(pickle_vm *vm, pk_kind kind, pk_value **tuple)
{
    if (vm->n_marks == 0) return pk_fail(vm, "no MARK on the stack");
    size_t base = vm->marks[--vm->n_marks];
    size_t n = vm->sp - base;
    pk_value *const *items = n ? vm->stack + base : NULL; /* the stack may not exist yet */
    vm->sp = base;
    if (kind == PK_TUPLE) {
        *tuple = pk_new(vm, PK_TUPLE);
        return *tuple ? pk_append(vm, *tuple, items, n) : SC_ENOMEM;
    }
    pk_value *target = pk_top(vm);
    if (!target) return SC_EFORMAT;
    if (target->kind != kind)
        return pk_fail(vm, "%s onto a %s", kind == PK_DICT ? "SETITEMS" : "APPENDS", pk_kind_names[target->kind]);
    if (kind == PK_DICT && n % 2) return pk_fail(vm, "SETITEMS with an odd number of values");
    /* items still point into the stack array, which nothing reallocates here. */
    return pk_append(vm, target, items, n);
}

static pk_value *pk_tuple_of(pickle_vm *vm, size_t n)
{
    if (vm->sp - pk_base(vm) < n) {
        pk_fail(vm, "stack underflow");
        return NULL;
    }
    pk_value *t = pk_new(vm, PK_TUPLE);
    if (t && pk_append(vm, t, vm->stack + vm->sp - n, n) != SC_OK) return NULL;
    vm->sp -= n;
    return t;
}

/* A string of n bytes at the cursor; it must be valid UTF-8. */
static sc_status pk_string(pickle_vm *vm, uint64_t n)
{
    if (n > cur_left(&vm->c)) return pk_fail(vm, "string of %llu bytes runs past the end", (unsigned long long)n);
    const uint8_t *s = cur_take(&vm->c, (size_t)n);
    for (size_t k = 0, step; k < n; k += step)
        if ((step = utf8_valid_len(s + k, (size_t)n - k)) == 0) return pk_fail(vm, "string is not valid UTF-8");
    pk_value *v = pk_new(vm, PK_STR);
    if (!v) return SC_ENOMEM;
    v->u.str.s = s;
    v->u.str.n = (size_t)n;
    return pk_push(vm, v);
}

static sc_status pk_int(pickle_vm *vm, int64_t i)
{
    pk_value *v = pk_new(vm, PK_INT);
    if (!v) return SC_ENOMEM;
    v->u.i = i;
    return pk_push(vm, v);
}

/* LONG1: n bytes, little-endian two's complement; we keep what fits in
 * 64 bits. */
static sc_status pk_long1(pickle_vm *vm)
{
    uint8_t n = cur_u8(&vm->c);
    const uint8_t *b = cur_take(&vm->c, n);
    if (!b) return pk_fail(vm, "truncated LONG1");
    if (n > 8) return pk_fail(vm, "integer of %u bytes is too large", n);
    uint64_t u = 0;
    for (int k = n - 1; k >= 0; k--) u = u << 8 | b[k];
    if (n > 0 && n < 8 && (b[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    int64_t i;
    memcpy(&i, &u, sizeof i);
    return pk_int(vm, i);
}

static sc_status pk_resolve_global(pickle_vm *vm, const uint8_t *module, size_t mlen, const uint8_t *name, size_t nlen)
{
    for (size_t k = 0; k < sizeof pk_globals / sizeof pk_globals[0]; k++)
        if (strlen(pk_globals[k].module) == mlen && memcmp(pk_globals[k].module, module, mlen) == 0 &&
            strlen(pk_globals[k].name) == nlen && memcmp(pk_globals[k].name, name, nlen) == 0) {
            pk_value *v = pk_new(vm, PK_GLOBAL);
            if (!v) return SC_ENOMEM;
            v->u.global.which = pk_globals[k].global;
            v->u.global.dtype = pk_globals[k].dtype;
            return pk_push(vm, v);
        }
    return pk_fail(vm, "the pickle asks for the global '%.*s.%.*s', which a state dict never needs; the file is "
                   "refused and nothing in it was run", (int)(mlen > 100 ? 100 : mlen), (const char *)module,
                   (int)(nlen > 100 ? 100 : nlen), (const char *)name);
}

/* GLOBAL: "module\nname\n" in the opcode stream. */
static sc_status pk_global_op(pickle_vm *vm)
{
    const uint8_t *parts[2];
    size_t lens[2];
    for (int k = 0; k < 2; k++) {
        parts[k] = vm->c.p;
        size_t left = cur_left(&vm->c);
        const uint8_t *nl = left ? memchr(vm->c.p, '\n', left < 256 ? left : 256) : NULL;
        if (!nl) return pk_fail(vm, "GLOBAL without a newline-terminated name");
        lens[k] = (size_t)(nl - vm->c.p);
        cur_take(&vm->c, lens[k] + 1);
    }
    return pk_resolve_global(vm, parts[0], lens[0], parts[1], lens[1]);
}

static sc_status pk_stack_global(pickle_vm *vm)
{
    pk_value *name = pk_pop(vm), *module = name ? pk_pop(vm) : NULL;
    if (!module) return SC_EFORMAT;
    if (name->kind != PK_STR || module->kind != PK_STR) return pk_fail(vm, "STACK_GLOBAL needs two strings");
    return pk_resolve_global(vm, module->u.str.s, module->u.str.n, name->u.str.s, name->u.str.n);
}

static int pk_is_int(const pk_value *v)
{
    return v->kind == PK_INT;
}

/* BINPERSID: ('storage', torch.XStorage, key, location, numel) names the
 * archive entry <prefix>/data/<key>, whose bytes become the storage. */
static sc_status pk_persistent_load(pickle_vm *vm)
{
    pk_value *pid = pk_pop(vm);
    if (!pid) return SC_EFORMAT;
    if (pid->kind != PK_TUPLE || pid->u.seq.n != 5)
        return pk_fail(vm, "persistent id is not ('storage', torch.<type>Storage, key, location, numel)");
    pk_value **f = pid->u.seq.items;
    if (f[0]->kind != PK_STR || f[0]->u.str.n != 7 ||
        memcmp(f[0]->u.str.s, "storage", 7) != 0 || f[1]->kind != PK_GLOBAL || f[1]->u.global.which != G_STORAGE ||
        f[2]->kind != PK_STR || f[3]->kind != PK_STR || !pk_is_int(f[4]) || f[4]->u.i < 0)
        return pk_fail(vm, "persistent id is not ('storage', torch.<type>Storage, key, location, numel)");
    const uint8_t *key = f[2]->u.str.s;
    size_t klen = f[2]->u.str.n;
    if (klen == 0 || klen > 64 || memchr(key, '/', klen))
        return pk_fail(vm, "storage key '%.*s' is not a plain name", (int)(klen > 64 ? 64 : klen), (const char *)key);
    char entry[512];
    int k = snprintf(entry, sizeof entry, "%.*s%sdata/%.*s", (int)vm->prefix_len, vm->prefix,
                     vm->prefix_len ? "/" : "", (int)klen, (const char *)key);
    SC_ASSERT(k > 0 && (size_t)k < sizeof entry, "storage entry name");
    zip_entry *e = zip_find(vm->zip, entry, (size_t)k);
    if (!e) return pk_fail(vm, "storage '%s' is not in the archive", entry);
    sc_dtype dt = f[1]->u.global.dtype;
    size_t bytes;
    if (!sc_mul_ok((size_t)f[4]->u.i, sc_dtype_size(dt), &bytes) || bytes != e->usize)
        return pk_fail(vm, "storage '%s' should hold %lld %s elements but has %llu bytes", entry,
                       (long long)f[4]->u.i, sc_dtype_name(dt), (unsigned long long)e->usize);
    pk_value *v = pk_new(vm, PK_STORAGE);
    if (!v) return SC_ENOMEM;
    sc_status s = zip_entry_bytes(vm->w, e, vm->w->path, &v->u.storage.data, vm->err);
    if (s != SC_OK) return s;
    v->u.storage.numel = f[4]->u.i;
    v->u.storage.dtype = dt;
    return pk_push(vm, v);
}

/* @book begin pickle-rebuild-tensor */
/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]): a strided view of a storage. Every index
 * the view can reach must lie inside the storage. */
static sc_status pk_rebuild_tensor(pickle_vm *vm, const pk_value *args, pk_value **out)
{
    pk_value *const *a = args->u.seq.items;
    size_t n = args->u.seq.n;
    if (n < 6 || n > 7 || a[0]->kind != PK_STORAGE || !pk_is_int(a[1]) || a[2]->kind != PK_TUPLE ||
        a[3]->kind != PK_TUPLE || a[2]->u.seq.n != a[3]->u.seq.n || a[4]->kind != PK_BOOL)
        return pk_fail(vm, "_rebuild_tensor_v2 with arguments other than (storage, offset, size, stride, "
                       "requires_grad, hooks)");
    size_t ndim = a[2]->u.seq.n;
    if (ndim > SC_ARRAY_MAX_DIMS) return pk_fail(vm, "tensor with %zu dimensions (at most %d)", ndim, SC_ARRAY_MAX_DIMS);
    pk_tensor *t = sc_arena_calloc(vm->arena, 1, sizeof *t);
    if (!t) return sc_fail(vm->err, SC_ENOMEM, "%s: out of memory", vm->what);
    int64_t storage_numel = a[0]->u.storage.numel, offset = a[1]->u.i;
    size_t last = offset >= 0 ? (size_t)offset : 0; /* highest element index reached */
    size_t bytes = sc_dtype_size(a[0]->u.storage.dtype); /* of the view, which zero strides can make huge */
    int empty = 0;
    for (size_t d = 0; d < ndim; d++) {
        const pk_value *sz = a[2]->u.seq.items[d], *st = a[3]->u.seq.items[d];
        if (!pk_is_int(sz) || !pk_is_int(st) || sz->u.i < 0 || sz->u.i > ARRAY_MAX_DIM || st->u.i < 0)
            return pk_fail(vm, "tensor size or stride is not a small non-negative integer");
        t->shape[d] = sz->u.i;
        t->stride[d] = sz->u.i > 1 ? st->u.i : 0; /* never used to move: keep it from overflowing sums */
        size_t reach;
        if (!sc_mul_ok(bytes, (size_t)sz->u.i, &bytes) || bytes > ((size_t)1 << 62))
            return pk_fail(vm, "tensor has too many elements");
        if (sz->u.i == 0) empty = 1;
        else if (!sc_mul_ok((size_t)(sz->u.i - 1), (size_t)st->u.i, &reach) || !sc_add_ok(last, reach, &last))
            return pk_fail(vm, "tensor strides overflow");
    }
    if (offset < 0 || (empty ? (size_t)offset > (size_t)storage_numel : last >= (size_t)storage_numel))
        return pk_fail(vm, "tensor view (offset %lld) reaches past its storage of %lld elements", (long long)offset,
                       (long long)storage_numel);
    t->dtype = a[0]->u.storage.dtype;
    t->ndim = (int)ndim;
    t->data = a[0]->u.storage.data + (size_t)offset * sc_dtype_size(t->dtype);
    *out = pk_new(vm, PK_TENSOR);
    if (!*out) return SC_ENOMEM;
    (*out)->u.tensor = t;
    return SC_OK;
}
/* @book end pickle-rebuild-tensor */

/* @book begin pickle-reduce */
/* REDUCE: call an allowed global with a tuple of arguments. */
static sc_status pk_reduce(pickle_vm *vm)
{
    pk_value *args = pk_pop(vm), *fn = args ? pk_pop(vm) : NULL;
    if (!fn) return SC_EFORMAT;
    if (args->kind != PK_TUPLE) return pk_fail(vm, "REDUCE with %s arguments", pk_kind_names[args->kind]);
    if (fn->kind != PK_GLOBAL) return pk_fail(vm, "REDUCE calls a %s", pk_kind_names[fn->kind]);
    pk_value *result = NULL;
    sc_status s = SC_OK;
    switch (fn->u.global.which) {
    case G_ORDERED_DICT:
        if (args->u.seq.n != 0) return pk_fail(vm, "OrderedDict called with arguments");
        result = pk_new(vm, PK_DICT);
        break;
    case G_REBUILD_TENSOR:
        s = pk_rebuild_tensor(vm, args, &result);
        break;
    case G_REBUILD_PARAMETER: /* (tensor, requires_grad, hooks): the tensor itself */
        if (args->u.seq.n != 3 || args->u.seq.items[0]->kind != PK_TENSOR)
            return pk_fail(vm, "_rebuild_parameter without a tensor");
        result = args->u.seq.items[0];
        break;
    case G_STORAGE:
        return pk_fail(vm, "a storage type is called directly");
    }
    if (s != SC_OK) return s;
    return pk_push(vm, result);
}
/* @book end pickle-reduce */

static sc_status pk_memo_put(pickle_vm *vm, uint64_t idx)
{
    pk_value *v = pk_top(vm);
    if (!v) return SC_EFORMAT;
    if (idx >= PK_MAX_MEMO) return pk_fail(vm, "memo index %llu is too large", (unsigned long long)idx);
    size_t old = vm->memo_cap;
    if (!pk_grow((void **)&vm->memo, &vm->memo_cap, (size_t)idx + 1, sizeof *vm->memo, PK_MAX_MEMO))
        return sc_fail(vm->err, SC_ENOMEM, "%s: out of memory", vm->what);
    if (vm->memo_cap > old) memset(vm->memo + old, 0, (vm->memo_cap - old) * sizeof *vm->memo);
    if (!vm->memo[idx]) vm->memo_count++;
    vm->memo[idx] = v;
    return SC_OK;
}

static sc_status pk_memo_get(pickle_vm *vm, uint64_t idx)
{
    if (idx >= vm->memo_cap || !vm->memo[idx]) return pk_fail(vm, "memo entry %llu is not set", (unsigned long long)idx);
    return pk_push(vm, vm->memo[idx]);
}

/* Names of opcodes we refuse, so the error says what the file tried. */
static const char *pk_opcode_name(uint8_t op)
{
    switch (op) {
    case 'i': return "INST (create an instance of any class)";
    case 'o': return "OBJ (create an instance of any class)";
    case 0x81: return "NEWOBJ (create an instance of any class)";
    case 0x92: return "NEWOBJ_EX (create an instance of any class)";
    case 'P': return "PERSID";
    case 0x82: case 0x83: case 0x84: return "EXT (extension registry)";
    case 'I': return "INT (text)";
    case 'L': return "LONG (text)";
    case 'F': return "FLOAT (text)";
    case 'S': case 'T': case 'U': return "STRING (bytes)";
    case 'V': return "UNICODE (text)";
    case 'B': case 'C': case 0x8e: return "BINBYTES";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'g': return "GET (text)";
    case 'p': return "PUT (text)";
    case 'l': return "LIST";
    case 'd': return "DICT";
    case 0x8b: return "LONG4";
    case 0x96: case 0x97: case 0x98: return "BYTEARRAY8/NEXT_BUFFER/READONLY_BUFFER";
    }
    return "unknown";
}

/* One opcode. */
static sc_status pk_step(pickle_vm *vm, uint8_t op, int *stop)
{
    cursor *c = &vm->c;
    switch (op) {
    case 0x80: /* PROTO */
        if (cur_u8(c) > 5) return pk_fail(vm, "unknown pickle protocol");
        return SC_OK;
    case 0x95: /* FRAME: a length hint, nothing to do */
        cur_u64le(c);
        return SC_OK;
    case '.': /* STOP */
        *stop = 1;
        return SC_OK;
    case '(': /* MARK */
        if (!pk_grow((void **)&vm->marks, &vm->marks_cap, vm->n_marks + 1, sizeof *vm->marks, PK_MAX_MARKS))
            return pk_fail(vm, "more than %d nested MARKs", PK_MAX_MARKS);
        vm->marks[vm->n_marks++] = vm->sp;
        return SC_OK;
    case 'N': return pk_push(vm, pk_new(vm, PK_NONE));
    case 0x88: case 0x89: { /* NEWTRUE, NEWFALSE */
        pk_value *v = pk_new(vm, PK_BOOL);
        if (v) v->u.i = op == 0x88;
        return pk_push(vm, v);
    }
    case 'K': return pk_int(vm, cur_u8(c));             /* BININT1 */
    case 'M': return pk_int(vm, cur_u16le(c));          /* BININT2 */
    case 'J': return pk_int(vm, (int32_t)cur_u32le(c)); /* BININT */
    case 0x8a: return pk_long1(vm);                     /* LONG1 */
    case 'G': { /* BINFLOAT: big-endian double */
        uint64_t hi = cur_u32be(c), lo = cur_u32be(c);
        uint64_t bits = hi << 32 | lo;
        pk_value *v = pk_new(vm, PK_FLOAT);
        if (v) memcpy(&v->u.f, &bits, sizeof bits);
        return pk_push(vm, v);
    }
    case 'X': return pk_string(vm, cur_u32le(c));       /* BINUNICODE */
    case 0x8c: return pk_string(vm, cur_u8(c));         /* SHORT_BINUNICODE */
    case 0x8d: return pk_string(vm, cur_u64le(c));      /* BINUNICODE8 */
    case ')': return pk_push(vm, pk_new(vm, PK_TUPLE)); /* EMPTY_TUPLE */
    case ']': return pk_push(vm, pk_new(vm, PK_LIST));  /* EMPTY_LIST */
    case '}': return pk_push(vm, pk_new(vm, PK_DICT));  /* EMPTY_DICT */
    case 't': { /* TUPLE */
        pk_value *t = NULL;
        sc_status s = pk_pop_mark(vm, PK_TUPLE, &t);
        return s != SC_OK ? s : pk_push(vm, t);
    }
    case 0x85: case 0x86: case 0x87: { /* TUPLE1, TUPLE2, TUPLE3 */
        pk_value *t = pk_tuple_of(vm, (size_t)(op - 0x84));
        return t ? pk_push(vm, t) : SC_EFORMAT;
    }
    case 'a': { /* APPEND */
        pk_value *v = pk_pop(vm), *list = v ? pk_top(vm) : NULL;
        if (!list) return SC_EFORMAT;
        if (list->kind != PK_LIST) return pk_fail(vm, "APPEND to a %s", pk_kind_names[list->kind]);
        return pk_append(vm, list, &v, 1);
    }
    case 'e': return pk_pop_mark(vm, PK_LIST, NULL); /* APPENDS */
    case 's': { /* SETITEM */
        pk_value *kv[2];
        kv[1] = pk_pop(vm);
        kv[0] = kv[1] ? pk_pop(vm) : NULL;
        pk_value *dict = kv[0] ? pk_top(vm) : NULL;
        if (!dict) return SC_EFORMAT;
        if (dict->kind != PK_DICT) return pk_fail(vm, "SETITEM on a %s", pk_kind_names[dict->kind]);
        return pk_append(vm, dict, kv, 2);
    }
    case 'u': return pk_pop_mark(vm, PK_DICT, NULL); /* SETITEMS */
    case 'q': return pk_memo_put(vm, cur_u8(c));     /* BINPUT */
    case 'r': return pk_memo_put(vm, cur_u32le(c));  /* LONG_BINPUT */
    case 0x94: return pk_memo_put(vm, vm->memo_count); /* MEMOIZE */
    case 'h': return pk_memo_get(vm, cur_u8(c));     /* BINGET */
    case 'j': return pk_memo_get(vm, cur_u32le(c));  /* LONG_BINGET */
    case 'c': return pk_global_op(vm);               /* GLOBAL */
    case 0x93: return pk_stack_global(vm);           /* STACK_GLOBAL */
    case 'R': return pk_reduce(vm);                  /* REDUCE */
    case 'Q': return pk_persistent_load(vm);         /* BINPERSID */
    case 'b': { /* BUILD: only the OrderedDict's _metadata, which we drop */
        pk_value *state = pk_pop(vm), *obj = state ? pk_top(vm) : NULL;
        if (!obj) return SC_EFORMAT;
        if (obj->kind != PK_DICT) return pk_fail(vm, "BUILD on a %s", pk_kind_names[obj->kind]);
        return SC_OK;
    }
    }
    return pk_fail(vm, "pickle opcode 0x%02X (%s) is not allowed in a state dict", op, pk_opcode_name(op));
}

/* Run data.pkl to its STOP; *result is what it built. */
static sc_status pk_run(pickle_vm *vm, pk_value **result)
{
    int stop = 0;
    while (!stop) {
        uint8_t op = cur_u8(&vm->c);
        if (vm->c.bad) return pk_fail(vm, "the pickle ends without STOP");
        sc_status s = pk_step(vm, op, &stop);
        if (s == SC_OK && vm->c.bad) s = pk_fail(vm, "the pickle ends inside an opcode");
        if (s != SC_OK) return s;
    }
    *result = pk_top(vm);
    return *result ? SC_OK : SC_EFORMAT;
}

/* Enter the tensors of a dict (recursively, names joined with '.') into w. */
static sc_status pk_collect(pickle_vm *vm, const pk_value *dict, char *name, size_t name_len, size_t name_cap,
                            int depth)
{
    for (size_t i = 0; i + 1 < dict->u.seq.n; i += 2) {
        if (++vm->visits > PK_MAX_VISITS)
            return sc_fail(vm->err, SC_EFORMAT, "%s: more than %d dict entries to visit", vm->what, PK_MAX_VISITS);
        const pk_value *key = dict->u.seq.items[i], *v = dict->u.seq.items[i + 1];
        if (key->kind != PK_STR || (v->kind != PK_TENSOR && v->kind != PK_DICT)) continue; /* epoch, config, ... */
        size_t len = name_len + (name_len ? 1 : 0) + key->u.str.n;
        if (len >= name_cap) return sc_fail(vm->err, SC_EFORMAT, "%s: a tensor name is too long", vm->what);
        if (name_len) name[name_len] = '.';
        memcpy(name + len - key->u.str.n, key->u.str.s, key->u.str.n);
        name[len] = 0;
        if (v->kind == PK_DICT) {
            if (depth >= PK_MAX_NEST) return sc_fail(vm->err, SC_EFORMAT, "%s: dicts nested too deeply", vm->what);
            sc_status s = pk_collect(vm, v, name, len, name_cap, depth + 1);
            if (s != SC_OK) return s;
            continue;
        }
        const pk_tensor *pt = v->u.tensor;
        sc_weight *t = weights_add(vm->w, name, len, vm->err);
        if (!t) return SC_ENOMEM;
        weight_set_shape(t, pt->ndim, pt->shape);
        memcpy(t->stride, pt->stride, sizeof t->stride);
        t->dtype = pt->dtype;
        t->data = pt->data;
    }
    return SC_OK;
}

/* What kind of zip this is, and where its data.pkl lives. TorchScript
 * archives also hold data.pkl, but next to code/ and constants.pkl. */
static sc_status torch_find_pickle(const zip_archive *z, const char *what, zip_entry **pkl, sc_err *err)
{
    *pkl = NULL;
    for (size_t i = 0; i < z->n; i++) {
        const char *n = z->entries[i].name, *slash = strchr(n, '/');
        const char *base = slash ? slash + 1 : n;
        if (strcmp(base, "constants.pkl") == 0 || strncmp(base, "code/", 5) == 0)
            return sc_fail(err, SC_EUNSUPPORTED, "%s: a TorchScript archive (torch.jit.save), not a state dict; "
                           "convert it in Python with torch.save(torch.jit.load(PATH).state_dict(), NEW_PATH)",
                           what);
        if (strcmp(base, "byteorder") == 0 && z->entries[i].method == 0 && z->entries[i].usize == 3 &&
            memcmp(z->entries[i].data, "big", 3) == 0)
            return sc_fail(err, SC_EUNSUPPORTED, "%s: a big-endian PyTorch checkpoint", what);
        if (strcmp(base, "data.pkl") == 0 && !*pkl) *pkl = &z->entries[i]; /* "data.pkl" or "<prefix>/data.pkl" */
    }
    if (!*pkl) return sc_fail(err, SC_EFORMAT, "%s: a zip archive without data.pkl, so not a PyTorch checkpoint", what);
    return SC_OK;
}

/* Read a torch.save zip: find data.pkl, run it, collect its tensors. */
static sc_status torch_parse(sc_weights *w, const uint8_t *bytes, size_t len, const char *what, sc_err *err)
{
    sc_arena scratch;
    sc_arena_init(&scratch, "checkpoint scratch", (size_t)1 << 16, 0);
    pickle_vm vm;
    memset(&vm, 0, sizeof vm);
    zip_archive z;
    zip_entry *pkl = NULL;
    const uint8_t *pickle = NULL;
    pk_value *root = NULL;
    char label[600];
    sc_status s = zip_open(bytes, len, what, &scratch, &z, err);
    if (s == SC_OK) s = torch_find_pickle(&z, what, &pkl, err);
    if (s == SC_OK) s = zip_entry_bytes(w, pkl, what, &pickle, err);
    if (s == SC_OK) {
        snprintf(label, sizeof label, "%s: pickle '%s'", what, pkl->name);
        vm.c = cursor_make(pickle, (size_t)pkl->usize);
        vm.start = pickle;
        vm.what = label;
        vm.err = err;
        vm.arena = &scratch;
        vm.w = w;
        vm.zip = &z;
        vm.prefix = pkl->name;
        vm.prefix_len = strlen(pkl->name) - strlen("data.pkl") - (strchr(pkl->name, '/') ? 1 : 0);
        s = pk_run(&vm, &root);
    }
    if (s == SC_OK && root->kind != PK_DICT)
        s = sc_fail(err, SC_EFORMAT, "%s: the checkpoint holds a %s, not a dict of tensors", what,
                    pk_kind_names[root->kind]);
    if (s == SC_OK) {
        char name[1024];
        s = pk_collect(&vm, root, name, 0, sizeof name, 0);
    }
    free(vm.stack);
    free(vm.marks);
    free(vm.memo);
    sc_arena_free(&scratch);
    return s;
}

/* ---- opening weight files of any format ---- */

/* Recognise the format from the bytes and read them into w. */
static sc_status weights_parse_bytes(sc_weights *w, const uint8_t *bytes, size_t len, const char *what, sc_err *err)
{
    if (len >= 4 && (memcmp(bytes, "PK\3\4", 4) == 0 || memcmp(bytes, "PK\5\6", 4) == 0)) {
        w->format = "pytorch";
        return torch_parse(w, bytes, len, what, err);
    }
    /* A bare pickle (protocol 2+) or a tar file: torch.save before 1.6. */
    if ((len >= 2 && bytes[0] == 0x80 && bytes[1] >= 2 && bytes[1] <= 5) ||
        (len >= 262 && memcmp(bytes + 257, "ustar", 5) == 0))
        return sc_fail(err, SC_EUNSUPPORTED, "%s: a legacy PyTorch file (torch.save before 1.6, or "
                       "_use_new_zipfile_serialization=False); re-save it with PyTorch 1.6 or later: "
                       "torch.save(torch.load(PATH), NEW_PATH)", what);
    w->format = "safetensors";
    return safetensors_parse(w, bytes, len, what, err);
}

static sc_status weights_add_file(sc_weights *w, const char *path, sc_err *err)
{
    const uint8_t *bytes;
    size_t len;
    sc_status s = weights_map_file(w, path, &bytes, &len, err);
    return s != SC_OK ? s : weights_parse_bytes(w, bytes, len, path, err);
}

static const char *join(char *buf, size_t cap, const char *dir, const char *name)
{
    int k = snprintf(buf, cap, "%s/%s", dir, name);
    return k > 0 && (size_t)k < cap ? buf : NULL;
}

/* A Hugging Face index: {"weight_map": {tensor name: shard file name}}.
 * Each shard is read once; afterwards every listed name must exist. */
static sc_status weights_add_shards(sc_weights *w, const char *dir, const char *index, sc_err *err)
{
    sc_json_doc doc;
    sc_status s = sc_json_load(&doc, index, (size_t)64 << 20, err);
    if (s != SC_OK) return s;
    const sc_json *map = sc_json_get(doc.root, "weight_map");
    if (!map || map->type != SC_JSON_OBJECT || map->len == 0)
        s = sc_fail(err, SC_EFORMAT, "%s: no \"weight_map\" object", index);
    for (size_t i = 0; i < (map ? map->len : 0) && s == SC_OK; i++) {
        const sc_json *shard = map->items[i];
        if (shard->type != SC_JSON_STRING || !shard->str[0] || shard->str[0] == '.' || strchr(shard->str, '/') ||
            shard->len != strlen(shard->str)) {
            s = sc_fail(err, SC_EFORMAT, "%s: shard of '%s' is not a plain file name", index, map->keys[i]);
            break;
        }
        size_t seen = 0;
        while (seen < i && strcmp(map->items[seen]->str, shard->str) != 0) seen++;
        if (seen < i) continue; /* this shard is already read */
        char path[4096];
        if (!join(path, sizeof path, dir, shard->str)) s = sc_fail(err, SC_EARG, "%s: path too long", dir);
        else s = weights_add_file(w, path, err);
    }
    if (s == SC_OK) s = weights_finish(w, err);
    for (size_t i = 0; i < (map ? map->len : 0) && s == SC_OK; i++)
        if (!sc_weights_find(w, map->keys[i]))
            s = sc_fail(err, SC_EFORMAT, "%s: lists tensor '%s' in %s, which does not hold it", index, map->keys[i],
                        map->items[i]->str);
    sc_json_free(&doc);
    return s;
}

/* The files a Hugging Face model directory may hold, in the order
 * transformers prefers them. */
static sc_status weights_add_dir(sc_weights *w, const char *dir, sc_err *err)
{
    static const struct {
        const char *name;
        int index;
    } layouts[] = {
        {"model.safetensors", 0},
        {"model.safetensors.index.json", 1},
        {"pytorch_model.bin", 0},
        {"pytorch_model.bin.index.json", 1},
    };
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        char path[4096];
        struct stat st;
        if (!join(path, sizeof path, dir, layouts[i].name)) return sc_fail(err, SC_EARG, "%s: path too long", dir);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (layouts[i].index) return weights_add_shards(w, dir, path, err);
        sc_status s = weights_add_file(w, path, err);
        return s != SC_OK ? s : weights_finish(w, err);
    }
    return sc_fail(err, SC_EIO, "%s: no model.safetensors, model.safetensors.index.json, pytorch_model.bin or "
                   "pytorch_model.bin.index.json in this directory", dir);
}

sc_status sc_weights_open(sc_weights **out, const char *path, sc_err *err)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return sc_fail(err, SC_EIO, "%s: cannot open: %s", path, strerror(errno));
    sc_weights *w;
    sc_status s = weights_new(&w, path, err);
    if (s != SC_OK) return s;
    if (S_ISDIR(st.st_mode)) {
        s = weights_add_dir(w, path, err);
    } else {
        s = weights_add_file(w, path, err);
        if (s == SC_OK) s = weights_finish(w, err);
    }
    if (s != SC_OK) {
        sc_weights_close(w);
        return s;
    }
    *out = w;
    return SC_OK;
}

sc_status sc_weights_parse(sc_weights **out, const uint8_t *bytes, size_t len, const char *what, sc_err *err)
{
    *out = NULL;
    sc_weights *w;
    sc_status s = weights_new(&w, what, err);
    if (s != SC_OK) return s;
    s = weights_parse_bytes(w, bytes, len, what, err);
    if (s == SC_OK) s = weights_finish(w, err);
    if (s != SC_OK) {
        sc_weights_close(w);
        return s;
    }
    *out = w;
    return SC_OK;
}

/* ======================================================================== */
/* 6. inflate (zlib, raw deflate, gzip)                                      */
/* ======================================================================== */

/* Deflate (RFC 1951) is LZ77 over two Huffman alphabets: literal/length
 * symbols 0..285 (256 ends a block) and distance symbols 0..29. The zlib
 * wrapper (RFC 1950) adds a 2-byte header and an Adler-32 of the output;
 * gzip (RFC 1952) a longer header and a CRC-32 plus the length mod 2^32. */

/* CRC-32 with the reflected polynomial 0xEDB88320 (zlib, PNG, gzip, zip).
 * The byte table is built once; pthread_once makes that safe when several
 * threads load files at the same time. */
static uint32_t crc32_table[256];
static pthread_once_t crc32_once = PTHREAD_ONCE_INIT;

static void crc32_build_table(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc32_table[n] = c;
    }
}

/* Same calling convention as zlib's crc32(): start from 0, feed pieces. */
uint32_t sc_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    pthread_once(&crc32_once, crc32_build_table);
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc32_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* Adler-32 as zlib's adler32(): start from 1. 5552 is the largest run of
 * bytes whose sums cannot overflow 32 bits before the modulo. */
uint32_t sc_adler32(uint32_t adler, const uint8_t *p, size_t n)
{
    uint32_t a = adler & 0xFFFF, b = adler >> 16;
    while (n > 0) {
        size_t run = n < 5552 ? n : 5552;
        n -= run;
        while (run--) {
            a += *p++;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    return b << 16 | a;
}

/* Bits come least-significant first. When the input runs out, the reader
 * appends zero bytes and counts them: a decoder that consumed any of those
 * phantom bits has read past the end of a truncated stream. */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    uint64_t bits;    /* next bit in bit 0 */
    int nbits;        /* bits held in `bits`, phantom ones included */
    int phantom;      /* zero bytes appended past `end` */
} bitreader;

static void br_refill(bitreader *br)
{
    while (br->nbits <= 56) {
        uint64_t byte = 0;
        if (br->p < br->end) byte = *br->p++;
        else br->phantom++;
        br->bits |= byte << br->nbits;
        br->nbits += 8;
    }
}

/* n ≤ 32 bits; the caller has refilled enough. */
static uint32_t br_take(bitreader *br, int n)
{
    uint32_t v = (uint32_t)(br->bits & ((UINT64_C(1) << n) - 1));
    br->bits >>= n;
    br->nbits -= n;
    return v;
}

static int br_overrun(const bitreader *br)
{
    return br->phantom * 8 > br->nbits;
}

/* Drop the bits up to the next byte boundary and hand the whole bytes still
 * buffered back to the input, so byte-aligned data (stored blocks, trailers)
 * can be read straight from `p`. */
static void br_align_to_bytes(bitreader *br)
{
    br_take(br, br->nbits % 8);
    int real = br->nbits / 8 - br->phantom;
    if (real > 0) br->p -= real;
    br->bits = 0;
    br->nbits = 0;
    br->phantom = 0;
}

/* A canonical Huffman code (RFC 1951 3.2.2). Codes of up to HUFF_FAST_BITS
 * bits decode with one table look-up on the next bits of the stream; longer
 * ones walk the lengths one bit at a time, as in zlib's puff.c. */
#define HUFF_MAX_BITS 15
#define HUFF_FAST_BITS 10
#define HUFF_MAX_SYMBOLS 288

typedef struct {
    uint16_t fast[1 << HUFF_FAST_BITS]; /* (symbol << 4) | length, 0 = longer code */
    uint16_t count[HUFF_MAX_BITS + 1];  /* number of codes of each length */
    uint16_t symbol[HUFF_MAX_SYMBOLS];  /* symbols ordered by (length, value) */
} huffman;

/* Build the decoder for code lengths len[0..n). Returns NULL or a reason.
 * Over-subscribed sets never decode. Incomplete ones are refused, except
 * (as zlib allows) a literal or distance code holding no code or a single
 * 1-bit code, which an encoder may emit for a block that needs so few. */
static const char *huffman_build(huffman *h, const uint8_t *len, int n, int allow_single)
{
    memset(h, 0, sizeof *h);
    for (int s = 0; s < n; s++) h->count[len[s]]++;
    h->count[0] = 0;
    int left = 1, codes = 0;
    for (int l = 1; l <= HUFF_MAX_BITS; l++) {
        left = 2 * left - h->count[l];
        codes += h->count[l];
        if (left < 0) return "over-subscribed Huffman code lengths";
    }
    int single = codes == 0 || (codes == 1 && h->count[1] == 1);
    if (left > 0 && !(allow_single && single)) return "incomplete Huffman code lengths";

    uint16_t offset[HUFF_MAX_BITS + 2], next_code[HUFF_MAX_BITS + 2];
    offset[1] = 0;
    next_code[1] = 0;
    for (int l = 1; l <= HUFF_MAX_BITS; l++) {
        offset[l + 1] = (uint16_t)(offset[l] + h->count[l]);
        next_code[l + 1] = (uint16_t)((next_code[l] + h->count[l]) << 1);
    }
    for (int s = 0; s < n; s++) {
        int l = len[s];
        if (l == 0) continue;
        h->symbol[offset[l]++] = (uint16_t)s;
        int code = next_code[l]++;
        if (l > HUFF_FAST_BITS) continue;
        int reversed = 0; /* deflate sends Huffman codes most significant bit first */
        for (int i = 0; i < l; i++) reversed |= ((code >> i) & 1) << (l - 1 - i);
        for (int i = reversed; i < (1 << HUFF_FAST_BITS); i += 1 << l)
            h->fast[i] = (uint16_t)(s << 4 | l);
    }
    return NULL;
}

/* Next symbol, or -1 for a bit pattern that is no code. Needs 15 bits
 * buffered. */
static int huffman_decode(bitreader *br, const huffman *h)
{
    uint16_t e = h->fast[br->bits & ((1u << HUFF_FAST_BITS) - 1)];
    if (e) {
        br_take(br, e & 15);
        return e >> 4;
    }
    int code = 0, first = 0, index = 0;
    uint64_t b = br->bits;
    for (int l = 1; l <= HUFF_MAX_BITS; l++) {
        code |= (int)(b & 1);
        b >>= 1;
        int count = h->count[l];
        if (code - first < count) {
            br_take(br, l);
            return h->symbol[index + code - first];
        }
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    return -1;
}

/* The growing output, never larger than `limit`. */
typedef struct {
    uint8_t *buf;
    size_t len, cap, limit;
} inflate_out;

static int out_reserve(inflate_out *o, size_t extra, const char *what, sc_err *err, sc_status *st)
{
    size_t need;
    if (!sc_add_ok(o->len, extra, &need) || need > o->limit) {
        *st = sc_fail(err, SC_ENOMEM, "%s: expands past the limit of %zu bytes", what, o->limit);
        return 0;
    }
    if (need <= o->cap) return 1;
    size_t cap = o->cap;
    while (cap < need) cap = cap > o->limit / 2 ? o->limit : cap * 2;
    uint8_t *nb = realloc(o->buf, cap);
    if (!nb) {
        *st = sc_fail(err, SC_ENOMEM, "%s: out of memory for %zu bytes of output", what, cap);
        return 0;
    }
    o->buf = nb;
    o->cap = cap;
    return 1;
}

/* Length and distance symbols: base value and number of extra bits
 * (RFC 1951 3.2.5). */
static const uint16_t len_base[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t dist_base[30] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,
                                       33,  49,  65,  97,  129, 193,  257,  385,  513,  769,
                                       1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                       6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

/* @book begin inflate-codes */
/* Decode one Huffman-coded block into o: literals are copied, a length
 * symbol is followed by a distance and copies `length` bytes from
 * `distance` bytes back in the output (the ranges may overlap, which is how
 * deflate encodes runs). */
static sc_status inflate_codes(bitreader *br, const huffman *lit, const huffman *dist, inflate_out *o,
                               const char *what, sc_err *err)
{
    sc_status st = SC_OK;
    for (;;) {
        br_refill(br); /* 57+ bits: enough for a length and a distance with extra bits */
        if (br_overrun(br)) return sc_fail(err, SC_EFORMAT, "%s: truncated inside a block", what);
        int sym = huffman_decode(br, lit);
        if (sym < 0) return sc_fail(err, SC_EFORMAT, "%s: invalid literal/length code", what);
        if (sym < 256) {
            if (o->len == o->cap && !out_reserve(o, 1, what, err, &st)) return st;
            o->buf[o->len++] = (uint8_t)sym;
            continue;
        }
        if (sym == 256) return br_overrun(br) ? sc_fail(err, SC_EFORMAT, "%s: truncated", what) : SC_OK;
        sym -= 257;
        if (sym >= 29) return sc_fail(err, SC_EFORMAT, "%s: invalid length symbol %d", what, sym + 257);
        size_t length = len_base[sym] + br_take(br, len_extra[sym]);
        int dsym = huffman_decode(br, dist);
        if (dsym < 0 || dsym >= 30) return sc_fail(err, SC_EFORMAT, "%s: invalid distance code", what);
        size_t distance = dist_base[dsym] + br_take(br, dist_extra[dsym]);
        if (distance > o->len)
            return sc_fail(err, SC_EFORMAT, "%s: distance %zu reaches before the start of the output (%zu bytes)",
                           what, distance, o->len);
        if (!out_reserve(o, length, what, err, &st)) return st;
        uint8_t *to = o->buf + o->len;
        const uint8_t *from = to - distance;
        for (size_t i = 0; i < length; i++) to[i] = from[i]; /* byte by byte: overlap repeats */
        o->len += length;
    }
}
/* @book end inflate-codes */

static void huffman_fixed(huffman *lit, huffman *dist)
{
    uint8_t len[HUFF_MAX_SYMBOLS];
    for (int s = 0; s < 288; s++) len[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
    huffman_build(lit, len, 288, 0);
    for (int s = 0; s < 32; s++) len[s] = 5; /* 30 and 31 are codes that never occur in valid data */
    huffman_build(dist, len, 32, 0);
}

/* A dynamic block starts with its two codes, themselves Huffman-coded with
 * a third code over the code lengths 0..18 (RFC 1951 3.2.7). */
static sc_status inflate_dynamic_tables(bitreader *br, huffman *lit, huffman *dist, const char *what, sc_err *err)
{
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    br_refill(br);
    int nlit = (int)br_take(br, 5) + 257;
    int ndist = (int)br_take(br, 5) + 1;
    int nclen = (int)br_take(br, 4) + 4;
    if (nlit > 286 || ndist > 30)
        return sc_fail(err, SC_EFORMAT, "%s: %d length or %d distance codes is too many", what, nlit, ndist);
    uint8_t len[286 + 30] = {0};
    br_refill(br);
    for (int i = 0; i < nclen; i++) len[order[i]] = (uint8_t)br_take(br, 3);
    huffman lencode;
    const char *why = huffman_build(&lencode, len, 19, 0);
    if (why) return sc_fail(err, SC_EFORMAT, "%s: code-length code: %s", what, why);

    memset(len, 0, sizeof len);
    for (int i = 0; i < nlit + ndist;) {
        br_refill(br);
        if (br_overrun(br)) return sc_fail(err, SC_EFORMAT, "%s: truncated in the code lengths", what);
        int sym = huffman_decode(br, &lencode);
        if (sym < 0) return sc_fail(err, SC_EFORMAT, "%s: invalid code-length code", what);
        if (sym < 16) {
            len[i++] = (uint8_t)sym;
            continue;
        }
        int repeat, value = 0;
        if (sym == 16) {
            if (i == 0) return sc_fail(err, SC_EFORMAT, "%s: repeat of a code length with none before", what);
            value = len[i - 1];
            repeat = 3 + (int)br_take(br, 2);
        } else if (sym == 17) {
            repeat = 3 + (int)br_take(br, 3);
        } else {
            repeat = 11 + (int)br_take(br, 7);
        }
        if (i + repeat > nlit + ndist)
            return sc_fail(err, SC_EFORMAT, "%s: code-length repeat runs past the %d lengths", what, nlit + ndist);
        while (repeat--) len[i++] = (uint8_t)value;
    }
    if (len[256] == 0) return sc_fail(err, SC_EFORMAT, "%s: no end-of-block code", what);
    if ((why = huffman_build(lit, len, nlit, 1))) return sc_fail(err, SC_EFORMAT, "%s: literal/length code: %s", what, why);
    if ((why = huffman_build(dist, len + nlit, ndist, 1))) return sc_fail(err, SC_EFORMAT, "%s: distance code: %s", what, why);
    return SC_OK;
}

/* A stored block: LEN, its complement NLEN, then LEN raw bytes. */
static sc_status inflate_stored(bitreader *br, inflate_out *o, const char *what, sc_err *err)
{
    br_align_to_bytes(br);
    cursor c = cursor_make(br->p, (size_t)(br->end - br->p));
    uint16_t n = cur_u16le(&c), ncomp = cur_u16le(&c);
    if (c.bad) return sc_fail(err, SC_EFORMAT, "%s: truncated stored-block header", what);
    if ((n ^ ncomp) != 0xFFFF) return sc_fail(err, SC_EFORMAT, "%s: stored block length %u does not match its complement", what, n);
    const uint8_t *bytes = cur_take(&c, n);
    if (!bytes) return sc_fail(err, SC_EFORMAT, "%s: stored block of %u bytes is truncated", what, n);
    sc_status st = SC_OK;
    if (!out_reserve(o, n, what, err, &st)) return st;
    memcpy(o->buf + o->len, bytes, n);
    o->len += n;
    br->p = c.p;
    return SC_OK;
}

/* Raw deflate from br->p; leaves br aligned to the byte after the stream. */
static sc_status inflate_blocks(bitreader *br, inflate_out *o, const char *what, sc_err *err)
{
    huffman lit, dist; /* about 2.8 kB each; on the stack for reentrancy */
    for (;;) {
        br_refill(br);
        int last = (int)br_take(br, 1);
        int type = (int)br_take(br, 2);
        if (br_overrun(br)) return sc_fail(err, SC_EFORMAT, "%s: truncated before a block header", what);
        sc_status st;
        if (type == 0) {
            st = inflate_stored(br, o, what, err);
        } else if (type == 1) {
            huffman_fixed(&lit, &dist);
            st = inflate_codes(br, &lit, &dist, o, what, err);
        } else if (type == 2) {
            st = inflate_dynamic_tables(br, &lit, &dist, what, err);
            if (st == SC_OK) st = inflate_codes(br, &lit, &dist, o, what, err);
        } else {
            return sc_fail(err, SC_EFORMAT, "%s: invalid block type 3", what);
        }
        if (st != SC_OK) return st;
        if (last) break;
    }
    br_align_to_bytes(br);
    return SC_OK;
}

/* The gzip member header (RFC 1952 2.3); returns the cursor past it. */
static sc_status gzip_header(cursor *c, sc_err *err)
{
    const uint8_t *start = c->p;
    uint8_t id1 = cur_u8(c), id2 = cur_u8(c), method = cur_u8(c), flags = cur_u8(c);
    cur_take(c, 6); /* MTIME, XFL, OS */
    if (c->bad) return sc_fail(err, SC_EFORMAT, "gzip stream: truncated header");
    if (id1 != 0x1f || id2 != 0x8b) return sc_fail(err, SC_EFORMAT, "gzip stream: bad magic bytes");
    if (method != 8) return sc_fail(err, SC_EUNSUPPORTED, "gzip stream: compression method %u is not deflate", method);
    if (flags & 0xE0) return sc_fail(err, SC_EFORMAT, "gzip stream: reserved flag bits set");
    if (flags & 4) cur_take(c, cur_u16le(c));      /* FEXTRA */
    for (int f = 8; f <= 16; f <<= 1) {             /* FNAME, FCOMMENT: NUL-terminated */
        if (!(flags & f)) continue;
        while (cur_u8(c) != 0) {} /* stops at the NUL, or at the end (bad) */
    }
    if (flags & 2) {                                 /* FHCRC: low 16 bits of the header's CRC-32 */
        uint32_t want = sc_crc32(0, start, (size_t)(c->p - start)) & 0xFFFF;
        if (!c->bad && cur_u16le(c) != want) return sc_fail(err, SC_EFORMAT, "gzip stream: header CRC mismatch");
    }
    if (c->bad) return sc_fail(err, SC_EFORMAT, "gzip stream: truncated header");
    return SC_OK;
}

sc_status sc_inflate(const uint8_t *in, size_t in_len, sc_inflate_format fmt, size_t max_out,
                     uint8_t **out, size_t *out_len, sc_err *err)
{
    *out = NULL;
    *out_len = 0;
    if (!in) in = (const uint8_t *)"", in_len = 0; /* no arithmetic on a null pointer */
    if (fmt != SC_INFLATE_RAW && fmt != SC_INFLATE_ZLIB && fmt != SC_INFLATE_GZIP)
        return sc_fail(err, SC_EARG, "sc_inflate: unknown format %d", (int)fmt);
    static const char *names[] = {"deflate stream", "zlib stream", "gzip stream"};
    const char *what = names[fmt];
    /* First guess 4x the input (at least 4 kB), then doubling, never past max_out. */
    size_t guess = in_len > SIZE_MAX / 4 ? SIZE_MAX : in_len * 4;
    if (guess < 4096) guess = 4096;
    inflate_out o = {NULL, 0, guess < max_out ? guess : max_out, max_out};
    o.buf = malloc(o.cap ? o.cap : 1);
    if (!o.buf) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);

    cursor c = cursor_make(in, in_len);
    sc_status st = SC_OK;
    do {
        if (fmt == SC_INFLATE_ZLIB) {
            uint8_t cmf = cur_u8(&c), flg = cur_u8(&c);
            if (c.bad) { st = sc_fail(err, SC_EFORMAT, "%s: truncated header", what); break; }
            if ((cmf & 15) != 8 || (cmf >> 4) > 7 || (cmf * 256u + flg) % 31 != 0) {
                st = sc_fail(err, SC_EFORMAT, "%s: bad header bytes %02x %02x", what, cmf, flg);
                break;
            }
            if (flg & 0x20) { st = sc_fail(err, SC_EUNSUPPORTED, "%s: preset dictionary", what); break; }
        } else if (fmt == SC_INFLATE_GZIP) {
            if ((st = gzip_header(&c, err)) != SC_OK) break;
        }
        size_t member_start = o.len;
        bitreader br = {c.p, c.end, 0, 0, 0};
        if ((st = inflate_blocks(&br, &o, what, err)) != SC_OK) break;
        c.p = br.p;
        if (fmt == SC_INFLATE_ZLIB) {
            uint32_t want = cur_u32be(&c);
            if (c.bad) { st = sc_fail(err, SC_EFORMAT, "%s: truncated Adler-32 trailer", what); break; }
            if (sc_adler32(1, o.buf, o.len) != want) { st = sc_fail(err, SC_EFORMAT, "%s: Adler-32 mismatch", what); break; }
        } else if (fmt == SC_INFLATE_GZIP) {
            uint32_t want_crc = cur_u32le(&c), want_size = cur_u32le(&c);
            if (c.bad) { st = sc_fail(err, SC_EFORMAT, "%s: truncated CRC-32/size trailer", what); break; }
            size_t n = o.len - member_start;
            if (sc_crc32(0, o.buf + member_start, n) != want_crc) { st = sc_fail(err, SC_EFORMAT, "%s: CRC-32 mismatch", what); break; }
            if ((uint32_t)n != want_size) { st = sc_fail(err, SC_EFORMAT, "%s: size mismatch", what); break; }
            /* gzip files may hold several members back to back; zero padding after the last is tolerated. */
            while (cur_left(&c) > 0 && *c.p == 0) c.p++;
            if (cur_left(&c) > 0 && *c.p != 0x1f) {
                st = sc_fail(err, SC_EFORMAT, "%s: %zu bytes of trailing garbage", what, cur_left(&c));
                break;
            }
        }
        /* raw and zlib streams end here; whatever follows belongs to the caller (zlib does the same). */
    } while (fmt == SC_INFLATE_GZIP && cur_left(&c) > 0);

    if (st != SC_OK) {
        free(o.buf);
        return st;
    }
    *out = o.buf;
    *out_len = o.len;
    return SC_OK;
}

/* ======================================================================== */
/* 7. Images (sc_image, loading by signature) and PNG                       */
/* ======================================================================== */

/* Allocate the sample planes of an image whose size came from a file, after
 * checking it against the caps; `index` too for palette images. */
static sc_status image_alloc(sc_image *img, int64_t w, int64_t h, int channels, int bits, int with_index,
                             const char *what, sc_err *err)
{
    memset(img, 0, sizeof *img);
    if (w < 1 || h < 1) return sc_fail(err, SC_EFORMAT, "%s: image size %lldx%lld is empty", what, (long long)w, (long long)h);
    if (w > SC_IMAGE_MAX_SIDE || h > SC_IMAGE_MAX_SIDE || w * h > SC_IMAGE_MAX_PIXELS)
        return sc_fail(err, SC_ENOMEM, "%s: image size %lldx%lld is over the limit of %lld pixels", what,
                       (long long)w, (long long)h, (long long)SC_IMAGE_MAX_PIXELS);
    img->width = (int)w;
    img->height = (int)h;
    img->channels = channels;
    img->bits = bits;
    size_t n = (size_t)w * (size_t)h * (size_t)channels; /* ≤ 4·2^26: no overflow after the cap */
    img->pixels = malloc(n);
    if (bits == 16) img->pixels16 = malloc(n * sizeof(uint16_t));
    if (with_index) img->index = malloc((size_t)w * (size_t)h);
    if (!img->pixels || (bits == 16 && !img->pixels16) || (with_index && !img->index)) {
        sc_image_free(img);
        return sc_fail(err, SC_ENOMEM, "%s: out of memory for a %lldx%lld image", what, (long long)w, (long long)h);
    }
    return SC_OK;
}

void sc_image_free(sc_image *img)
{
    if (!img) return;
    free(img->pixels);
    free(img->pixels16);
    free(img->index);
    memset(img, 0, sizeof *img);
}

sc_status sc_image_decode(const uint8_t *data, size_t len, const char *what, sc_image *img, sc_err *err)
{
    memset(img, 0, sizeof *img);
    if (!data) data = (const uint8_t *)"", len = 0;
    if (len >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) return sc_png_decode(data, len, what, img, err);
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return sc_jpeg_decode(data, len, what, img, err);
    if (len >= 2 && data[0] == 'P' && (data[1] == '5' || data[1] == '6')) return sc_pnm_decode(data, len, what, img, err);
    return sc_fail(err, SC_EUNSUPPORTED, "%s: not a PNG, JPEG or binary PGM/PPM file", what);
}

sc_status sc_image_load(const char *path, sc_image *img, sc_err *err)
{
    uint8_t *data;
    size_t len;
    memset(img, 0, sizeof *img);
    sc_status st = sc_read_file(path, SC_IMAGE_MAX_FILE_BYTES, &data, &len, err);
    if (st != SC_OK) return st;
    st = sc_image_decode(data, len, path, img, err);
    free(data);
    return st;
}

/* ---- PNG decoder ---------------------------------------------------------
 * A PNG is a signature and a list of chunks (length, type, data, CRC-32 of
 * type and data). IHDR gives size and format, PLTE and tRNS the palette,
 * the concatenated IDAT chunks one zlib stream of filtered scanlines. Each
 * scanline starts with a filter byte saying how its bytes were predicted
 * from the pixel to the left (a), above (b) and above-left (c). */

typedef struct {
    uint32_t width, height;
    int bit_depth;        /* 1, 2, 4, 8, 16 */
    int color_type;       /* 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA */
    int interlace;        /* 0 none, 1 Adam7 */
    int samples;          /* samples per pixel in the file: 1, 3, 1, 2, 4 */
    int palette_size;
    uint8_t palette[256][4];
    int has_trns;
} png_header;

/* Check IHDR's fields, including the allowed (colour type, depth) pairs. */
static sc_status png_read_ihdr(cursor *c, png_header *h, const char *what, sc_err *err)
{
    h->width = cur_u32be(c);
    h->height = cur_u32be(c);
    h->bit_depth = cur_u8(c);
    h->color_type = cur_u8(c);
    int compression = cur_u8(c), filter = cur_u8(c);
    h->interlace = cur_u8(c);
    if (h->width == 0 || h->height == 0)
        return sc_fail(err, SC_EFORMAT, "%s: IHDR size %ux%u is empty", what, h->width, h->height);
    if (h->width > SC_IMAGE_MAX_SIDE || h->height > SC_IMAGE_MAX_SIDE ||
        (uint64_t)h->width * h->height > SC_IMAGE_MAX_PIXELS)
        return sc_fail(err, SC_ENOMEM, "%s: IHDR size %ux%u is over the limit of %lld pixels", what, h->width,
                       h->height, (long long)SC_IMAGE_MAX_PIXELS);
    static const struct { int type, samples, depths; } kinds[] = {
        {0, 1, 1 | 2 | 4 | 8 | 16}, {2, 3, 8 | 16}, {3, 1, 1 | 2 | 4 | 8}, {4, 2, 8 | 16}, {6, 4, 8 | 16}};
    h->samples = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        if (kinds[k].type == h->color_type && (kinds[k].depths & h->bit_depth) &&
            (h->bit_depth & (h->bit_depth - 1)) == 0)
            h->samples = kinds[k].samples;
    if (!h->samples)
        return sc_fail(err, SC_EFORMAT, "%s: IHDR colour type %d with bit depth %d is not a PNG format", what,
                       h->color_type, h->bit_depth);
    if (compression != 0 || filter != 0 || h->interlace > 1)
        return sc_fail(err, SC_EFORMAT, "%s: IHDR compression %d, filter %d or interlace %d is unknown", what,
                       compression, filter, h->interlace);
    return SC_OK;
}

/* The seven Adam7 passes: first column and row, column and row step. A
 * non-interlaced image is one pass (0, 0, 1, 1). */
static const uint8_t adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                    {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};

static void png_pass_size(const png_header *h, const uint8_t pass[4], size_t *w, size_t *hh, size_t *row_bytes)
{
    *w = h->width > pass[0] ? (h->width - pass[0] + pass[2] - 1) / pass[2] : 0;
    *hh = h->height > pass[1] ? (h->height - pass[1] + pass[3] - 1) / pass[3] : 0;
    *row_bytes = (*w * (size_t)h->samples * (size_t)h->bit_depth + 7) / 8;
}

/* @book begin png-unfilter */
/* The Paeth predictor: of left (a), above (b) and upper-left (c), the one
 * closest to a + b - c, ties broken in the order a, b, c. */
static uint8_t paeth(int a, int b, int c)
{
    int p = a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return (uint8_t)a;
    if (pb <= pc) return (uint8_t)b;
    return (uint8_t)c;
}

/* Undo the filter of one scanline in place. `prev` is the unfiltered line
 * above (zeros for the first line of a pass); `bpp` is the byte distance to
 * the corresponding byte of the pixel on the left (at least 1). */
static int png_unfilter(uint8_t *line, const uint8_t *prev, size_t n, size_t bpp, int filter)
{
    switch (filter) {
    case 0: /* None */
        break;
    case 1: /* Sub: x + a */
        for (size_t i = bpp; i < n; i++) line[i] = (uint8_t)(line[i] + line[i - bpp]);
        break;
    case 2: /* Up: x + b */
        for (size_t i = 0; i < n; i++) line[i] = (uint8_t)(line[i] + prev[i]);
        break;
    case 3: /* Average: x + floor((a + b) / 2) */
        for (size_t i = 0; i < n; i++) {
            int a = i >= bpp ? line[i - bpp] : 0;
            line[i] = (uint8_t)(line[i] + ((a + prev[i]) >> 1));
        }
        break;
    case 4: /* Paeth: x + paeth(a, b, c) */
        for (size_t i = 0; i < n; i++) {
            int a = i >= bpp ? line[i - bpp] : 0, c = i >= bpp ? prev[i - bpp] : 0;
            line[i] = (uint8_t)(line[i] + paeth(a, prev[i], c));
        }
        break;
    default:
        return 0;
    }
    return 1;
}
/* @book end png-unfilter */

/* Sample x (0-based, counting samples, not pixels) of an unfiltered line. */
static uint32_t png_sample(const uint8_t *line, size_t x, int depth)
{
    if (depth == 8) return line[x];
    if (depth == 16) return (uint32_t)line[2 * x] << 8 | line[2 * x + 1];
    size_t bit = x * (size_t)depth;
    return (uint32_t)(line[bit / 8] >> (8 - depth - (int)(bit % 8))) & ((1u << depth) - 1);
}

/* Store the samples of pixel (x, y) into the image: palette indices are
 * expanded (and kept in img->index), grey levels of 1, 2 and 4 bits are
 * scaled to 0..255 as Pillow's unpackers do (×255, ×85, ×17), 16-bit
 * samples keep their full value in pixels16 and their high byte in pixels. */
static int png_store_pixel(sc_image *img, const png_header *h, const uint8_t *line, size_t px, size_t x, size_t y)
{
    size_t at = y * (size_t)img->width + x;
    uint8_t *dst = img->pixels + at * (size_t)img->channels;
    if (h->color_type == 3) {
        uint32_t k = png_sample(line, px, h->bit_depth);
        if ((int)k >= h->palette_size) return 0;
        img->index[at] = (uint8_t)k;
        memcpy(dst, h->palette[k], (size_t)img->channels);
        return 1;
    }
    for (int s = 0; s < h->samples; s++) {
        uint32_t v = png_sample(line, px * (size_t)h->samples + (size_t)s, h->bit_depth);
        if (h->bit_depth == 16) {
            img->pixels16[at * (size_t)img->channels + (size_t)s] = (uint16_t)v;
            dst[s] = (uint8_t)(v >> 8);
        } else {
            dst[s] = (uint8_t)(v * (255u / ((1u << h->bit_depth) - 1)));
        }
    }
    return 1;
}

/* Unfilter every pass of the inflated data and scatter it into img. */
static sc_status png_unpack(sc_image *img, const png_header *h, uint8_t *raw, size_t raw_len, const char *what,
                            sc_err *err)
{
    size_t bpp = ((size_t)h->samples * (size_t)h->bit_depth + 7) / 8;
    size_t row_max = ((size_t)h->width * (size_t)h->samples * (size_t)h->bit_depth + 7) / 8;
    uint8_t *zeros = calloc(row_max + 1, 1);
    if (!zeros) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    size_t pos = 0;
    int passes = h->interlace ? 7 : 1;
    static const uint8_t whole[4] = {0, 0, 1, 1};
    sc_status st = SC_OK;
    for (int p = 0; p < passes && st == SC_OK; p++) {
        const uint8_t *pass = h->interlace ? adam7[p] : whole;
        size_t pw, ph, row_bytes;
        png_pass_size(h, pass, &pw, &ph, &row_bytes);
        if (pw == 0 || ph == 0) continue; /* small images skip some passes, with no filter bytes */
        const uint8_t *prev = zeros;
        for (size_t r = 0; r < ph; r++) {
            SC_ASSERT(pos + 1 + row_bytes <= raw_len, "PNG size was checked before unpacking");
            int filter = raw[pos];
            uint8_t *line = raw + pos + 1;
            if (!png_unfilter(line, prev, row_bytes, bpp, filter)) {
                st = sc_fail(err, SC_EFORMAT, "%s: scanline %zu has unknown filter type %d", what, r, filter);
                break;
            }
            size_t y = pass[1] + r * pass[3];
            for (size_t i = 0; i < pw; i++) {
                if (!png_store_pixel(img, h, line, i, pass[0] + i * pass[2], y)) {
                    st = sc_fail(err, SC_EFORMAT, "%s: palette index %u but the palette has %d entries", what,
                                 png_sample(line, i, h->bit_depth), h->palette_size);
                    break;
                }
            }
            if (st != SC_OK) break;
            prev = line;
            pos += 1 + row_bytes;
        }
    }
    free(zeros);
    return st;
}

/* Bytes of filtered data the header implies: every pass, every line, one
 * filter byte plus the packed samples. */
static size_t png_raw_size(const png_header *h)
{
    static const uint8_t whole[4] = {0, 0, 1, 1};
    size_t total = 0;
    for (int p = 0; p < (h->interlace ? 7 : 1); p++) {
        size_t w, hh, row_bytes;
        png_pass_size(h, h->interlace ? adam7[p] : whole, &w, &hh, &row_bytes);
        if (w && hh) total += hh * (1 + row_bytes); /* ≤ 2^26·8 + 2^24: no overflow */
    }
    return total;
}

/* Read PLTE (RGB triples) and tRNS (alpha per palette entry, or one
 * transparent colour for grey/RGB images, which Pillow keeps as metadata
 * only, so we skip it). */
static sc_status png_read_palette(png_header *h, const char *type, const uint8_t *data, uint32_t len,
                                  const char *what, sc_err *err)
{
    if (!strcmp(type, "PLTE")) {
        if (h->color_type == 0 || h->color_type == 4)
            return sc_fail(err, SC_EFORMAT, "%s: PLTE chunk in a greyscale image", what);
        if (len % 3 != 0 || len == 0 || len > 768)
            return sc_fail(err, SC_EFORMAT, "%s: PLTE chunk of %u bytes is not 1..256 RGB entries", what, len);
        if (h->palette_size) return sc_fail(err, SC_EFORMAT, "%s: second PLTE chunk", what);
        h->palette_size = (int)(len / 3);
        for (int i = 0; i < h->palette_size; i++) {
            memcpy(h->palette[i], data + 3 * i, 3);
            h->palette[i][3] = 255;
        }
        return SC_OK;
    }
    /* tRNS */
    if (h->color_type != 3) return SC_OK;
    if (!h->palette_size) return sc_fail(err, SC_EFORMAT, "%s: tRNS chunk before PLTE", what);
    if (len > (uint32_t)h->palette_size)
        return sc_fail(err, SC_EFORMAT, "%s: tRNS has %u entries for a palette of %d", what, len, h->palette_size);
    for (uint32_t i = 0; i < len; i++) h->palette[i][3] = data[i];
    h->has_trns = 1;
    return SC_OK;
}

sc_status sc_png_decode(const uint8_t *data, size_t len, const char *what, sc_image *img, sc_err *err)
{
    memset(img, 0, sizeof *img);
    if (!data) data = (const uint8_t *)"", len = 0;
    cursor c = cursor_make(data, len);
    const uint8_t *sig = cur_take(&c, 8);
    if (!sig || memcmp(sig, "\x89PNG\r\n\x1a\n", 8) != 0) return sc_fail(err, SC_EFORMAT, "%s: not a PNG file", what);

    png_header h;
    memset(&h, 0, sizeof h);
    uint8_t *idat = NULL;       /* IDAT payloads, concatenated */
    size_t idat_len = 0, idat_cap = 0;
    int n_chunks = 0, seen_ihdr = 0, seen_iend = 0, idat_state = 0; /* 0 none yet, 1 in IDATs, 2 after */
    sc_status st = SC_OK;
    while (st == SC_OK && !seen_iend) {
        uint32_t n = cur_u32be(&c);
        const uint8_t *type_bytes = cur_take(&c, 4);
        if (n > 0x7FFFFFFFu) {
            st = sc_fail(err, SC_EFORMAT, "%s: chunk %d claims %u bytes (PNG allows 2^31-1)", what, n_chunks, n);
            break;
        }
        const uint8_t *body = cur_take(&c, n);
        uint32_t crc = cur_u32be(&c);
        if (c.bad) {
            st = sc_fail(err, SC_EFORMAT, "%s: truncated in chunk %d (no IEND)", what, n_chunks);
            break;
        }
        char type[5] = {0};
        memcpy(type, type_bytes, 4);
        if (sc_crc32(sc_crc32(0, type_bytes, 4), body, n) != crc) {
            st = sc_fail(err, SC_EFORMAT, "%s: CRC mismatch in chunk %s", what, type);
            break;
        }
        n_chunks++;
        int is_idat = !strcmp(type, "IDAT");
        if (idat_state == 1 && !is_idat) idat_state = 2;
        if (!seen_ihdr && strcmp(type, "IHDR") != 0) {
            st = sc_fail(err, SC_EFORMAT, "%s: first chunk is %s, not IHDR", what, type);
        } else if (!strcmp(type, "IHDR")) {
            if (seen_ihdr || n != 13) { st = sc_fail(err, SC_EFORMAT, "%s: bad or repeated IHDR chunk", what); break; }
            cursor ih = cursor_make(body, n);
            st = png_read_ihdr(&ih, &h, what, err);
            seen_ihdr = 1;
        } else if (!strcmp(type, "PLTE") || !strcmp(type, "tRNS")) {
            if (idat_state) st = sc_fail(err, SC_EFORMAT, "%s: %s chunk after image data", what, type);
            else st = png_read_palette(&h, type, body, n, what, err);
        } else if (is_idat) {
            if (idat_state == 2) { st = sc_fail(err, SC_EFORMAT, "%s: IDAT chunks are not consecutive", what); break; }
            idat_state = 1;
            size_t need;
            if (!sc_add_ok(idat_len, n, &need)) { st = sc_fail(err, SC_ENOMEM, "%s: too much IDAT data", what); break; }
            if (need > idat_cap) {
                size_t cap = idat_cap ? idat_cap : 1 << 16;
                while (cap < need) cap *= 2; /* need ≤ file size, so this cannot overflow */
                uint8_t *nb = realloc(idat, cap);
                if (!nb) { st = sc_fail(err, SC_ENOMEM, "%s: out of memory for IDAT data", what); break; }
                idat = nb;
                idat_cap = cap;
            }
            if (n) memcpy(idat + idat_len, body, n); /* an empty IDAT is legal */
            idat_len += n;
        } else if (!strcmp(type, "IEND")) {
            seen_iend = 1;
        } else if (!(type[0] & 0x20)) {
            /* An uppercase first letter marks a critical chunk we cannot skip. */
            st = sc_fail(err, SC_EUNSUPPORTED, "%s: unknown critical chunk %s", what, type);
        }
    }
    if (st == SC_OK && !idat_len) st = sc_fail(err, SC_EFORMAT, "%s: no IDAT chunk", what);
    if (st == SC_OK && h.color_type == 3 && !h.palette_size) st = sc_fail(err, SC_EFORMAT, "%s: palette image without PLTE", what);

    /* One zlib stream holds exactly the filtered scanlines the header implies. */
    uint8_t *raw = NULL;
    size_t raw_len = 0, want = st == SC_OK ? png_raw_size(&h) : 0;
    if (st == SC_OK) {
        sc_err zerr;
        st = sc_inflate(idat, idat_len, SC_INFLATE_ZLIB, want, &raw, &raw_len, &zerr);
        if (st != SC_OK)
            sc_fail(err, st, "%s: IDAT: %s (a %ux%u image needs %zu bytes)", what, zerr.msg, h.width, h.height, want);
        else if (raw_len != want)
            st = sc_fail(err, SC_EFORMAT, "%s: image data holds %zu bytes but a %ux%u image needs %zu", what, raw_len,
                         h.width, h.height, want);
    }
    free(idat);
    if (st == SC_OK) {
        int channels = h.color_type == 3 ? (h.has_trns ? 4 : 3) : h.samples;
        st = image_alloc(img, h.width, h.height, channels, h.bit_depth == 16 ? 16 : 8, h.color_type == 3, what, err);
    }
    if (st == SC_OK) {
        st = png_unpack(img, &h, raw, raw_len, what, err);
        img->bilevel = h.color_type == 0 && h.bit_depth == 1;
        if (h.color_type == 3) {
            img->palette_size = h.palette_size;
            memcpy(img->palette, h.palette, sizeof h.palette);
        }
    }
    free(raw);
    if (st != SC_OK) sc_image_free(img);
    return st;
}

/* ---- PNG writer ----------------------------------------------------------
 * Each row gets the filter whose output has the smallest sum of |byte| as
 * a signed value (libpng's heuristic), then the rows go through a small
 * deflate compressor: greedy LZ77 matches found with hash chains, coded
 * with the fixed Huffman code of RFC 1951 3.2.6, in one final block. It
 * is several times smaller than stored blocks and short enough to read. */

typedef struct {
    uint8_t *buf;
    size_t len, cap;
    uint64_t bits;
    int nbits;
    int failed;     /* an allocation failed; everything after is dropped */
} bitwriter;

static void bw_byte(bitwriter *w, uint8_t b)
{
    if (w->failed) return;
    if (w->len == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 1 << 16;
        uint8_t *nb = realloc(w->buf, cap);
        if (!nb) {
            w->failed = 1;
            return;
        }
        w->buf = nb;
        w->cap = cap;
    }
    w->buf[w->len++] = b;
}

/* `value` least significant bit first, as deflate packs fields. */
static void bw_bits(bitwriter *w, uint32_t value, int n)
{
    w->bits |= (uint64_t)value << w->nbits;
    w->nbits += n;
    while (w->nbits >= 8) {
        bw_byte(w, (uint8_t)w->bits);
        w->bits >>= 8;
        w->nbits -= 8;
    }
}

/* A Huffman code is sent most significant bit first. */
static void bw_code(bitwriter *w, uint32_t code, int n)
{
    uint32_t reversed = 0;
    for (int i = 0; i < n; i++) reversed |= ((code >> i) & 1) << (n - 1 - i);
    bw_bits(w, reversed, n);
}

/* Fixed literal/length code: 0..143 → 8 bits from 0x30, 144..255 → 9 bits
 * from 0x190, 256..279 → 7 bits from 0, 280..287 → 8 bits from 0xC0. */
static void fixed_litlen(bitwriter *w, int sym)
{
    if (sym < 144) bw_code(w, 0x30u + (uint32_t)sym, 8);
    else if (sym < 256) bw_code(w, 0x190u + (uint32_t)(sym - 144), 9);
    else if (sym < 280) bw_code(w, (uint32_t)(sym - 256), 7);
    else bw_code(w, 0xC0u + (uint32_t)(sym - 280), 8);
}

static void fixed_match(bitwriter *w, size_t length, size_t distance)
{
    int ls = 28;
    while (len_base[ls] > length) ls--;
    fixed_litlen(w, 257 + ls);
    bw_bits(w, (uint32_t)(length - len_base[ls]), len_extra[ls]);
    int ds = 29;
    while (dist_base[ds] > distance) ds--;
    bw_code(w, (uint32_t)ds, 5);
    bw_bits(w, (uint32_t)(distance - dist_base[ds]), dist_extra[ds]);
}

#define LZ_WINDOW 32768
#define LZ_HASH_BITS 15
#define LZ_CHAIN 8      /* candidates tried per position: speed vs ratio */
#define LZ_NICE 64      /* a match this long is good enough: stop searching */

static uint32_t lz_hash(const uint8_t *p)
{
    return ((uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]) * 2654435761u >> (32 - LZ_HASH_BITS);
}

/* zlib stream (header, one fixed-Huffman block or, when that is larger,
 * stored blocks, then the Adler-32) of data[0..n). */
static sc_status zlib_compress_fixed(const uint8_t *data, size_t n, uint8_t **out, size_t *out_len, sc_err *err)
{
    int32_t *head = malloc(sizeof(int32_t) << LZ_HASH_BITS); /* last position with each hash, -1 none */
    int32_t *prev = malloc(sizeof(int32_t) * LZ_WINDOW);      /* previous position with the same hash */
    bitwriter w = {0};
    if (!head || !prev) {
        free(head);
        free(prev);
        return sc_fail(err, SC_ENOMEM, "PNG writer: out of memory");
    }
    for (size_t i = 0; i < (1u << LZ_HASH_BITS); i++) head[i] = -1;
    bw_byte(&w, 0x78); /* deflate, 32 KiB window; 0x7801 is a multiple of 31 */
    bw_byte(&w, 0x01);
    bw_bits(&w, 1, 1); /* BFINAL */
    bw_bits(&w, 1, 2); /* BTYPE = fixed Huffman */
    size_t i = 0;
    while (i < n) {
        size_t best_len = 0, best_dist = 0;
        if (i + 3 <= n) {
            uint32_t hsh = lz_hash(data + i);
            int32_t cand = head[hsh];
            size_t max_len = n - i < 258 ? n - i : 258;
            for (int tries = 0; cand >= 0 && i - (size_t)cand <= LZ_WINDOW && tries < LZ_CHAIN; tries++) {
                size_t l = 0;
                while (l < max_len && data[(size_t)cand + l] == data[i + l]) l++;
                if (l > best_len) {
                    best_len = l;
                    best_dist = i - (size_t)cand;
                    if (l >= LZ_NICE) break;
                }
                cand = prev[cand % LZ_WINDOW];
            }
        }
        size_t step = best_len >= 3 ? best_len : 1;
        if (best_len >= 3) fixed_match(&w, best_len, best_dist);
        else fixed_litlen(&w, data[i]);
        for (size_t k = i; k < i + step; k++) { /* every position enters the chains */
            if (k + 3 > n) break;
            uint32_t hsh = lz_hash(data + k);
            prev[k % LZ_WINDOW] = head[hsh];
            head[hsh] = (int32_t)k;
        }
        i += step;
    }
    fixed_litlen(&w, 256);
    bw_bits(&w, 0, 7); /* flush to a byte boundary */
    free(head);
    free(prev);
    size_t stored = 2 + n + 5 * (n / 65535 + 1);
    if (!w.failed && w.len > stored) {
        /* Noisy data (a 16-bit radiograph) costs more than 8 bits per byte in
         * the fixed code: store it instead, in blocks of up to 65535 bytes. */
        w.len = 2;
        size_t at = 0;
        do {
            size_t m = n - at > 65535 ? 65535 : n - at;
            uint8_t head5[5] = {at + m == n, (uint8_t)m, (uint8_t)(m >> 8), (uint8_t)~m, (uint8_t)(~m >> 8)};
            for (int k = 0; k < 5; k++) bw_byte(&w, head5[k]);
            for (size_t k = 0; k < m; k++) bw_byte(&w, data[at + k]);
            at += m;
        } while (at < n);
    }
    uint32_t adler = sc_adler32(1, data, n);
    for (int s = 24; s >= 0; s -= 8) bw_byte(&w, (uint8_t)(adler >> s));
    if (w.failed) {
        free(w.buf);
        return sc_fail(err, SC_ENOMEM, "PNG writer: out of memory");
    }
    *out = w.buf;
    *out_len = w.len;
    return SC_OK;
}

/* Filter one row: out = line minus its prediction (the inverse of
 * png_unfilter). */
static void png_filter(uint8_t *out, const uint8_t *line, const uint8_t *prev, size_t n, size_t bpp, int filter)
{
    for (size_t i = 0; i < n; i++) {
        int a = i >= bpp ? line[i - bpp] : 0, c = i >= bpp ? prev[i - bpp] : 0, pred;
        switch (filter) {
        case 1: pred = a; break;
        case 2: pred = prev[i]; break;
        case 3: pred = (a + prev[i]) >> 1; break;
        case 4: pred = paeth(a, prev[i], c); break;
        default: pred = 0; break;
        }
        out[i] = (uint8_t)(line[i] - pred);
    }
}

/* Filter every row of the image into (height, 1 + row_bytes) bytes. */
static uint8_t *png_filter_rows(const sc_image *img, size_t row_bytes, size_t bpp)
{
    size_t stride = 1 + row_bytes;
    uint8_t *out = malloc(stride * (size_t)img->height);
    uint8_t *raw = malloc(2 * row_bytes + 1), *trial = malloc(row_bytes + 1);
    if (!out || !raw || !trial) {
        free(out);
        free(raw);
        free(trial);
        return NULL;
    }
    uint8_t *line = raw, *prev = raw + row_bytes; /* the current row and the row above, big-endian samples */
    memset(prev, 0, row_bytes);
    for (int y = 0; y < img->height; y++) {
        size_t n = (size_t)img->width * (size_t)img->channels;
        if (img->bits == 16) {
            const uint16_t *src = img->pixels16 + (size_t)y * n;
            for (size_t k = 0; k < n; k++) {
                line[2 * k] = (uint8_t)(src[k] >> 8);
                line[2 * k + 1] = (uint8_t)src[k];
            }
        } else {
            memcpy(line, img->pixels + (size_t)y * n, n);
        }
        uint8_t *dst = out + (size_t)y * stride;
        long best = -1;
        for (int f = 0; f <= 4; f++) {
            png_filter(trial, line, prev, row_bytes, bpp, f);
            long sum = 0;
            for (size_t k = 0; k < row_bytes; k++) /* |byte as a signed value|, without a branch */
                sum += abs((int)trial[k] - ((trial[k] & 0x80) << 1));
            if (best < 0 || sum < best) {
                best = sum;
                dst[0] = (uint8_t)f;
                memcpy(dst + 1, trial, row_bytes);
            }
        }
        uint8_t *t = prev;
        prev = line;
        line = t;
    }
    free(raw);
    free(trial);
    return out;
}

static void put_u32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

sc_status sc_png_encode(const sc_image *img, uint8_t **out, size_t *out_len, sc_err *err)
{
    *out = NULL;
    *out_len = 0;
    if (img->width < 1 || img->height < 1 || img->channels < 1 || img->channels > 4 ||
        (img->bits != 8 && img->bits != 16) || (img->bits == 16 ? !img->pixels16 : !img->pixels) ||
        (int64_t)img->width * img->height > SC_IMAGE_MAX_PIXELS)
        return sc_fail(err, SC_EARG, "PNG writer: cannot write a %dx%d image with %d channels at %d bits",
                       img->width, img->height, img->channels, img->bits);
    static const uint8_t color_type[5] = {0, 0, 4, 2, 6};
    size_t bpp = (size_t)img->channels * (size_t)(img->bits / 8);
    size_t row_bytes = (size_t)img->width * bpp;
    uint8_t *rows = png_filter_rows(img, row_bytes, bpp);
    if (!rows) return sc_fail(err, SC_ENOMEM, "PNG writer: out of memory");
    uint8_t *z = NULL;
    size_t z_len = 0;
    sc_status st = zlib_compress_fixed(rows, (1 + row_bytes) * (size_t)img->height, &z, &z_len, err);
    free(rows);
    if (st != SC_OK) return st;

    /* signature, IHDR (13), one IDAT, IEND: each chunk adds 12 bytes */
    size_t total = 8 + (12 + 13) + (12 + z_len) + 12;
    uint8_t *png = z_len <= 0x7FFFFFFFu ? malloc(total) : NULL;
    if (!png) {
        free(z);
        return sc_fail(err, SC_ENOMEM, "PNG writer: out of memory");
    }
    uint8_t *p = png;
    memcpy(p, "\x89PNG\r\n\x1a\n", 8);
    p += 8;
    uint8_t ihdr[13];
    put_u32be(ihdr, (uint32_t)img->width);
    put_u32be(ihdr + 4, (uint32_t)img->height);
    ihdr[8] = (uint8_t)img->bits;
    ihdr[9] = color_type[img->channels];
    ihdr[10] = ihdr[11] = ihdr[12] = 0; /* deflate, adaptive filters, no interlace */
    const struct { const char *type; const uint8_t *data; size_t len; } chunks[3] = {
        {"IHDR", ihdr, 13}, {"IDAT", z, z_len}, {"IEND", NULL, 0}};
    for (int k = 0; k < 3; k++) {
        put_u32be(p, (uint32_t)chunks[k].len);
        memcpy(p + 4, chunks[k].type, 4);
        if (chunks[k].len) memcpy(p + 8, chunks[k].data, chunks[k].len);
        put_u32be(p + 8 + chunks[k].len, sc_crc32(0, p + 4, 4 + chunks[k].len));
        p += 12 + chunks[k].len;
    }
    free(z);
    *out = png;
    *out_len = total;
    return SC_OK;
}

sc_status sc_png_write(const char *path, const sc_image *img, sc_err *err)
{
    uint8_t *png;
    size_t len;
    sc_err inner;
    sc_status st = sc_png_encode(img, &png, &len, &inner);
    if (st != SC_OK) return sc_fail(err, st, "%s: %s", path, inner.msg);
    st = sc_write_file_atomic(path, png, len, err);
    free(png);
    return st;
}

/* ======================================================================== */
/* 8. JPEG                                                                   */
/* ======================================================================== */

/* A JPEG file is a list of marker segments. The frame header (SOF) gives
 * the size and the components with their sampling factors; DQT and DHT
 * define quantisation and Huffman tables; each scan (SOS) is followed by
 * entropy-coded data: Huffman-coded 8x8 blocks of DCT coefficients in
 * zig-zag order, grouped into MCUs (minimum coded units). We gather every
 * coefficient of the image first (a progressive file refines them over
 * several scans), then run the inverse DCT, upsample the chroma planes and
 * convert YCbCr to RGB, using libjpeg-turbo's integer arithmetic at each
 * step so the result equals Pillow's to the last bit. */

#define JPEG_MAX_SCANS 1000   /* real files have at most a few dozen */
#define JPEG_FAST_BITS 9

/* zig-zag position k → row-major position in the 8x8 block */
static const uint8_t jpeg_natural[64] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48,
    41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23,
    30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};

/* A Huffman table (ITU T.81 annex C): codes are assigned in order of length,
 * most significant bit first. Codes of up to JPEG_FAST_BITS bits decode by
 * one look-up; longer ones by comparing with the largest code of each
 * length (annex F.2.2.3). */
typedef struct {
    uint16_t fast[1 << JPEG_FAST_BITS]; /* (length << 8) | value, 0 = longer code */
    int32_t maxcode[17];                /* largest code of each length, -1 when none */
    int32_t valoffset[17];              /* value index = code + valoffset[length] */
    uint8_t values[256];
    int max_value;                      /* largest symbol, for the DC check */
    int defined;
} jpeg_huffman;

typedef struct {
    int id, h, v, tq;            /* identifier, sampling factors, quantisation table */
    int dc_table, ac_table;      /* of the current scan */
    int dw, dh;                  /* samples: ceil(X·h/Hmax) x ceil(Y·v/Vmax) */
    int bw, bh;                  /* blocks stored: the MCU-padded grid */
    int16_t *coef;               /* (bh, bw, 64), natural order inside a block */
    uint16_t quant[64];          /* latched at the component's first scan, natural order */
    int quant_latched;
    int dc_seen;                 /* progressive: its DC has been coded */
    int pred;                    /* DC predictor */
    uint8_t *plane;              /* (bh·8, bw·8) samples after the IDCT */
} jpeg_component;

/* The entropy-coded data reader: a 64-bit buffer, next bit at the top.
 * 0xFF 0x00 stands for a data byte 0xFF; 0xFF followed by anything else
 * is a marker, where data ends: from there zeros are fed and counted, and
 * consuming any of them means the data was cut short. */
typedef struct {
    const uint8_t *p, *end;
    uint64_t bits;
    int nbits;
    int at_marker;
    int phantom;       /* zero bytes fed after the data ended */
} jpeg_bits;

typedef struct {
    const char *what;
    sc_err *err;
    int width, height, ncomp;
    int progressive;
    int hmax, vmax, mcux, mcuy;  /* MCU grid of an interleaved scan */
    jpeg_component comp[4];
    uint16_t qt[4][64];
    int qt_defined[4];
    jpeg_huffman dc[4], ac[4];
    int restart_interval;        /* MCUs between RSTn markers, 0 = none */
    int jfif, adobe, adobe_transform;
    int scans;
    /* the current scan */
    int scan_ncomp;
    jpeg_component *scan_comp[4];
    int ss, se, ah, al;          /* spectral band and successive approximation */
    int eobrun;                  /* progressive: blocks left in an end-of-band run */
    jpeg_bits in;
} jpeg_decoder;

static sc_status jpeg_fail(jpeg_decoder *d, sc_status code, const char *reason)
{
    return sc_fail(d->err, code, "%s: %s", d->what, reason);
}

/* Build a table from its 16 code counts and values; NULL or a reason. As
 * libjpeg does, refuse tables whose codes do not fit their lengths (the
 * all-ones code of each length is reserved). */
static const char *jpeg_huffman_build(jpeg_huffman *t, const uint8_t counts[16], const uint8_t *values, int n)
{
    memset(t, 0, sizeof *t);
    memcpy(t->values, values, (size_t)n);
    int code = 0, k = 0;
    for (int len = 1; len <= 16; len++) {
        t->valoffset[len] = k - code;
        for (int i = 0; i < counts[len - 1]; i++, k++, code++) {
            if (code >= (1 << len) - 1) return "Huffman table has more codes than its lengths allow";
            if (len <= JPEG_FAST_BITS) {
                int shift = JPEG_FAST_BITS - len;
                for (int f = code << shift; f < (code + 1) << shift; f++)
                    t->fast[f] = (uint16_t)(len << 8 | values[k]);
            }
        }
        t->maxcode[len] = counts[len - 1] ? code - 1 : -1;
        code <<= 1;
    }
    for (int i = 0; i < n; i++)
        if (values[i] > t->max_value) t->max_value = values[i];
    t->defined = 1;
    return NULL;
}

static void jbits_fill(jpeg_bits *b)
{
    while (b->nbits <= 56) {
        uint64_t byte = 0;
        if (!b->at_marker && b->p < b->end && !(b->p[0] == 0xFF && (b->p + 1 == b->end || b->p[1] != 0))) {
            byte = *b->p;
            b->p += byte == 0xFF ? 2 : 1; /* 0xFF 0x00: a stuffed 0xFF */
        } else {
            b->at_marker = 1;
            b->phantom++;
        }
        b->bits |= byte << (56 - b->nbits);
        b->nbits += 8;
    }
}

/* Take n (1..16) bits as an unsigned number. */
static int jbits_get(jpeg_bits *b, int n)
{
    if (b->nbits < n) jbits_fill(b);
    int v = (int)(b->bits >> (64 - n));
    b->bits <<= n;
    b->nbits -= n;
    return v;
}

static int jbits_overrun(const jpeg_bits *b)
{
    return b->phantom * 8 > b->nbits;
}

/* Next Huffman symbol, or -1 when the bits match no code. */
static int jpeg_huffman_decode(jpeg_bits *b, const jpeg_huffman *t)
{
    if (b->nbits < 16) jbits_fill(b);
    uint16_t e = t->fast[b->bits >> (64 - JPEG_FAST_BITS)];
    if (e) {
        b->bits <<= e >> 8;
        b->nbits -= e >> 8;
        return e & 0xFF;
    }
    for (int len = JPEG_FAST_BITS + 1; len <= 16; len++) {
        int code = (int)(b->bits >> (64 - len));
        if (code <= t->maxcode[len]) {
            b->bits <<= len;
            b->nbits -= len;
            return t->values[code + t->valoffset[len]];
        }
    }
    return -1;
}

/* The s-bit magnitude category: s bits v stand for v when the top bit is
 * set, else for v - (2^s - 1) (annex F.2.2.1, EXTEND). */
static int jpeg_receive_extend(jpeg_bits *b, int s)
{
    if (s == 0) return 0;
    int v = jbits_get(b, s);
    return v < 1 << (s - 1) ? v - (1 << s) + 1 : v;
}

/* Store v in a 16-bit coefficient; 0 when valid data could never make it. */
static int jpeg_put_coef(int16_t *c, int v)
{
    if (v < -32768 || v > 32767) return 0;
    *c = (int16_t)v;
    return 1;
}

/* ---- block decoders, one per kind of scan; each returns NULL or why ---- */

/* @book begin jpeg-huffman-block */
/* Sequential (baseline) block: the DC difference, then (run, size) pairs
 * for the 63 AC coefficients in zig-zag order; 0x00 ends the block early
 * (EOB) and 0xF0 skips 16 zeros (ZRL). */
static const char *jpeg_block_sequential(jpeg_decoder *d, jpeg_component *c, int16_t *blk)
{
    int s = jpeg_huffman_decode(&d->in, &d->dc[c->dc_table]);
    if (s < 0 || s > 15) return "bad DC Huffman code";
    c->pred += jpeg_receive_extend(&d->in, s);
    if (!jpeg_put_coef(&blk[0], c->pred)) return "DC coefficient out of range";
    const jpeg_huffman *ac = &d->ac[c->ac_table];
    for (int k = 1; k < 64;) {
        int rs = jpeg_huffman_decode(&d->in, ac);
        if (rs < 0) return "bad AC Huffman code";
        int run = rs >> 4, size = rs & 15;
        if (size == 0) {
            if (run != 15) break; /* EOB */
            k += 16;              /* ZRL */
            continue;
        }
        k += run;
        if (k > 63) return "AC coefficient index past 63";
        blk[jpeg_natural[k++]] = (int16_t)jpeg_receive_extend(&d->in, size);
    }
    return NULL;
}
/* @book end jpeg-huffman-block */

/* Progressive DC, first scan: the difference, scaled by 2^Al. */
static const char *jpeg_block_dc_first(jpeg_decoder *d, jpeg_component *c, int16_t *blk)
{
    int s = jpeg_huffman_decode(&d->in, &d->dc[c->dc_table]);
    if (s < 0 || s > 15) return "bad DC Huffman code";
    c->pred += jpeg_receive_extend(&d->in, s);
    if (c->pred < -32768 || c->pred > 32767 || !jpeg_put_coef(&blk[0], c->pred * (1 << d->al)))
        return "DC coefficient out of range";
    return NULL;
}

/* Progressive DC, refinement: one more bit of precision. */
static const char *jpeg_block_dc_refine(jpeg_decoder *d, jpeg_component *c, int16_t *blk)
{
    (void)c;
    if (jbits_get(&d->in, 1)) blk[0] = (int16_t)(blk[0] | (1 << d->al));
    return NULL;
}

/* Progressive AC, first scan of band Ss..Se: like a sequential block but
 * EOBn codes end this block and the next 2^n - 1 + (n extra bits) ones. */
static const char *jpeg_block_ac_first(jpeg_decoder *d, jpeg_component *c, int16_t *blk)
{
    if (d->eobrun > 0) {
        d->eobrun--;
        return NULL;
    }
    const jpeg_huffman *ac = &d->ac[c->ac_table];
    for (int k = d->ss; k <= d->se;) {
        int rs = jpeg_huffman_decode(&d->in, ac);
        if (rs < 0) return "bad AC Huffman code";
        int run = rs >> 4, size = rs & 15;
        if (size == 0) {
            if (run == 15) {
                k += 16;
                continue;
            }
            d->eobrun = (1 << run) - 1 + (run ? jbits_get(&d->in, run) : 0);
            break;
        }
        k += run;
        if (k > d->se) return "AC coefficient index past the end of the band";
        if (!jpeg_put_coef(&blk[jpeg_natural[k++]], jpeg_receive_extend(&d->in, size) * (1 << d->al)))
            return "AC coefficient out of range";
    }
    return NULL;
}

/* Refine one already-nonzero coefficient: a correction bit adds 2^Al in
 * the direction of its sign (annex G.1.2.3). */
static const char *jpeg_refine_nonzero(jpeg_decoder *d, int16_t *coef)
{
    if (jbits_get(&d->in, 1) && (*coef & (1 << d->al)) == 0) {
        int v = *coef + (*coef >= 0 ? 1 << d->al : -(1 << d->al));
        if (!jpeg_put_coef(coef, v)) return "AC coefficient out of range";
    }
    return NULL;
}

/* Progressive AC, refinement scan: codes place newly nonzero coefficients
 * of magnitude 2^Al; the zero run counts only coefficients that are still
 * zero, and every nonzero one passed on the way gets a correction bit. */
static const char *jpeg_block_ac_refine(jpeg_decoder *d, jpeg_component *c, int16_t *blk)
{
    const char *why;
    int k = d->ss;
    if (d->eobrun == 0) {
        const jpeg_huffman *ac = &d->ac[c->ac_table];
        for (; k <= d->se; k++) {
            int rs = jpeg_huffman_decode(&d->in, ac);
            if (rs < 0) return "bad AC Huffman code";
            int run = rs >> 4, size = rs & 15, value = 0;
            if (size == 0 && run != 15) {
                d->eobrun = (1 << run) + (run ? jbits_get(&d->in, run) : 0);
                break; /* the rest of this block is refined below */
            }
            if (size != 0) {
                if (size != 1) return "refinement coefficient with a size other than 1";
                value = jbits_get(&d->in, 1) ? 1 << d->al : -(1 << d->al);
            }
            /* Skip `run` zero coefficients (refining nonzero ones); for a new
             * value, stop at the zero that receives it. */
            for (; k <= d->se; k++) {
                int16_t *coef = &blk[jpeg_natural[k]];
                if (*coef != 0) {
                    if ((why = jpeg_refine_nonzero(d, coef))) return why;
                } else if (run-- == 0) {
                    break;
                }
            }
            if (value) {
                if (k > d->se) return "refined coefficient past the end of the band";
                blk[jpeg_natural[k]] = (int16_t)value;
            }
        }
    }
    if (d->eobrun > 0) { /* inside an end-of-band run: only correction bits */
        for (; k <= d->se; k++)
            if (blk[jpeg_natural[k]] != 0 && (why = jpeg_refine_nonzero(d, &blk[jpeg_natural[k]]))) return why;
        d->eobrun--;
    }
    return NULL;
}

typedef const char *(*jpeg_block_fn)(jpeg_decoder *d, jpeg_component *c, int16_t *blk);

/* After `restart_interval` MCUs the encoder byte-aligns and writes RSTn
 * (n counting 0..7); decoding restarts with fresh predictors. */
static sc_status jpeg_restart(jpeg_decoder *d, int *next_rst)
{
    jpeg_bits *b = &d->in;
    while (b->p + 1 < b->end && b->p[0] == 0xFF && b->p[1] == 0xFF) b->p++; /* fill bytes */
    if (b->p + 1 >= b->end || b->p[0] != 0xFF || b->p[1] != 0xD0 + *next_rst) {
        char why[64];
        snprintf(why, sizeof why, "expected restart marker RST%d", *next_rst);
        return jpeg_fail(d, SC_EFORMAT, why);
    }
    b->p += 2;
    b->bits = 0;
    b->nbits = 0;
    b->at_marker = 0;
    b->phantom = 0;
    *next_rst = (*next_rst + 1) & 7;
    for (int i = 0; i < d->scan_ncomp; i++) d->scan_comp[i]->pred = 0;
    d->eobrun = 0;
    return SC_OK;
}

/* Decode the entropy-coded data of the current scan. A scan of one
 * component visits that component's blocks in raster order (one block per
 * MCU, only blocks inside the image); an interleaved scan visits MCUs of
 * h x v blocks of each component. */
static sc_status jpeg_decode_scan(jpeg_decoder *d, jpeg_block_fn decode_block)
{
    jpeg_component *one = d->scan_comp[0];
    int single = d->scan_ncomp == 1;
    int cols = single ? (one->dw + 7) / 8 : d->mcux;
    int rows = single ? (one->dh + 7) / 8 : d->mcuy;
    int64_t total = (int64_t)cols * rows, left_in_interval = d->restart_interval;
    int next_rst = 0;
    for (int i = 0; i < d->scan_ncomp; i++) d->scan_comp[i]->pred = 0;
    d->eobrun = 0;
    for (int64_t m = 0; m < total; m++) {
        if (d->restart_interval && left_in_interval == 0) {
            if (jpeg_restart(d, &next_rst) != SC_OK) return SC_EFORMAT;
            left_in_interval = d->restart_interval;
        }
        int my = (int)(m / cols), mx = (int)(m % cols);
        for (int i = 0; i < d->scan_ncomp; i++) {
            jpeg_component *c = d->scan_comp[i];
            int bh = single ? 1 : c->v, bw = single ? 1 : c->h;
            for (int by = 0; by < bh; by++)
                for (int bx = 0; bx < bw; bx++) {
                    size_t row = (size_t)my * (size_t)bh + (size_t)by, col = (size_t)mx * (size_t)bw + (size_t)bx;
                    const char *why = decode_block(d, c, c->coef + (row * (size_t)c->bw + col) * 64);
                    if (why) return jpeg_fail(d, SC_EFORMAT, why);
                }
        }
        if (jbits_overrun(&d->in)) return jpeg_fail(d, SC_EFORMAT, "entropy-coded data ends early (truncated?)");
        left_in_interval--;
    }
    return SC_OK;
}

/* ---- marker segments ---- */

static sc_status jpeg_read_dqt(jpeg_decoder *d, cursor *seg)
{
    while (cur_left(seg) > 0) {
        int pq_tq = cur_u8(seg), precision = pq_tq >> 4, id = pq_tq & 15;
        if (precision > 1 || id > 3) return jpeg_fail(d, SC_EFORMAT, "bad DQT table precision or number");
        for (int k = 0; k < 64; k++)
            d->qt[id][jpeg_natural[k]] = precision ? cur_u16be(seg) : cur_u8(seg);
        if (seg->bad) return jpeg_fail(d, SC_EFORMAT, "truncated DQT segment");
        d->qt_defined[id] = 1;
    }
    return SC_OK;
}

static sc_status jpeg_read_dht(jpeg_decoder *d, cursor *seg)
{
    while (cur_left(seg) > 0) {
        int tc_th = cur_u8(seg), cls = tc_th >> 4, id = tc_th & 15;
        const uint8_t *counts = cur_take(seg, 16);
        if (!counts || cls > 1 || id > 3) return jpeg_fail(d, SC_EFORMAT, "bad DHT table class or number");
        int n = 0;
        for (int i = 0; i < 16; i++) n += counts[i];
        const uint8_t *values = n <= 256 ? cur_take(seg, (size_t)n) : NULL;
        if (!values) return jpeg_fail(d, SC_EFORMAT, "truncated or oversized DHT table");
        const char *why = jpeg_huffman_build(cls ? &d->ac[id] : &d->dc[id], counts, values, n);
        if (why) return jpeg_fail(d, SC_EFORMAT, why);
    }
    return SC_OK;
}

static sc_status jpeg_read_sof(jpeg_decoder *d, cursor *seg, int marker)
{
    if (d->ncomp) return jpeg_fail(d, SC_EFORMAT, "second frame header");
    if (marker == 0xC3 || marker > 0xC2) /* lossless, differential, arithmetic */
        return jpeg_fail(d, SC_EUNSUPPORTED, "lossless, hierarchical or arithmetic-coded JPEG is not supported");
    d->progressive = marker == 0xC2;
    int precision = cur_u8(seg);
    d->height = cur_u16be(seg);
    d->width = cur_u16be(seg);
    int n = cur_u8(seg);
    if (seg->bad) return jpeg_fail(d, SC_EFORMAT, "truncated frame header");
    if (precision != 8) return jpeg_fail(d, SC_EUNSUPPORTED, "only 8-bit samples are supported (12-bit JPEG)");
    if (d->height == 0) return jpeg_fail(d, SC_EUNSUPPORTED, "height 0 (set later by a DNL marker) is not supported");
    if (d->width == 0) return jpeg_fail(d, SC_EFORMAT, "width 0");
    if ((int64_t)d->width * d->height > SC_IMAGE_MAX_PIXELS) {
        char why[128];
        snprintf(why, sizeof why, "image size %dx%d is over the limit of %lld pixels", d->width, d->height,
                 (long long)SC_IMAGE_MAX_PIXELS);
        return jpeg_fail(d, SC_ENOMEM, why);
    }
    if (n == 4) return jpeg_fail(d, SC_EUNSUPPORTED, "4-component (CMYK/YCCK) JPEG is not supported");
    if (n != 1 && n != 3) return jpeg_fail(d, SC_EUNSUPPORTED, "only 1- and 3-component JPEGs are supported");
    for (int i = 0; i < n; i++) {
        jpeg_component *c = &d->comp[i];
        c->id = cur_u8(seg);
        int hv = cur_u8(seg);
        c->h = hv >> 4;
        c->v = hv & 15;
        c->tq = cur_u8(seg);
        if (c->h < 1 || c->h > 4 || c->v < 1 || c->v > 4 || c->tq > 3)
            return jpeg_fail(d, SC_EFORMAT, "bad sampling factor or table number in the frame header");
        for (int j = 0; j < i; j++)
            if (d->comp[j].id == c->id) return jpeg_fail(d, SC_EFORMAT, "two components share an identifier");
        if (c->h > d->hmax) d->hmax = c->h;
        if (c->v > d->vmax) d->vmax = c->v;
    }
    if (seg->bad) return jpeg_fail(d, SC_EFORMAT, "truncated frame header");
    d->ncomp = n;
    d->mcux = (d->width + 8 * d->hmax - 1) / (8 * d->hmax);
    d->mcuy = (d->height + 8 * d->vmax - 1) / (8 * d->vmax);
    for (int i = 0; i < n; i++) {
        jpeg_component *c = &d->comp[i];
        if (d->hmax % c->h || d->vmax % c->v)
            return jpeg_fail(d, SC_EUNSUPPORTED, "fractional sampling factors are not supported");
        c->dw = (d->width * c->h + d->hmax - 1) / d->hmax;
        c->dh = (d->height * c->v + d->vmax - 1) / d->vmax;
        c->bw = d->mcux * c->h;
        c->bh = d->mcuy * c->v;
        /* ≤ (2^16/8 + 1)^2 · 16 blocks of 128 bytes: well inside size_t */
        c->coef = calloc((size_t)c->bw * (size_t)c->bh, 64 * sizeof(int16_t));
        if (!c->coef) return jpeg_fail(d, SC_ENOMEM, "out of memory for the DCT coefficients");
    }
    return SC_OK;
}

/* Scan header: components and their tables, spectral band, successive
 * approximation; checked against what the frame type allows. */
static sc_status jpeg_read_sos(jpeg_decoder *d, cursor *seg, jpeg_block_fn *fn)
{
    if (!d->ncomp) return jpeg_fail(d, SC_EFORMAT, "scan before the frame header");
    if (++d->scans > JPEG_MAX_SCANS) return jpeg_fail(d, SC_EFORMAT, "too many scans");
    int n = cur_u8(seg);
    if (n < 1 || n > d->ncomp) return jpeg_fail(d, SC_EFORMAT, "bad number of components in a scan");
    int blocks_per_mcu = 0;
    for (int i = 0; i < n; i++) {
        int id = cur_u8(seg), tables = cur_u8(seg);
        jpeg_component *c = NULL;
        for (int j = 0; j < d->ncomp; j++)
            if (d->comp[j].id == id) c = &d->comp[j];
        for (int j = 0; j < i; j++)
            if (d->scan_comp[j] == c) c = NULL;
        if (!c) return jpeg_fail(d, SC_EFORMAT, "scan names an unknown or repeated component");
        c->dc_table = tables >> 4;
        c->ac_table = tables & 15;
        if (c->dc_table > 3 || c->ac_table > 3) return jpeg_fail(d, SC_EFORMAT, "bad Huffman table number in a scan");
        d->scan_comp[i] = c;
        blocks_per_mcu += c->h * c->v;
    }
    d->scan_ncomp = n;
    d->ss = cur_u8(seg);
    d->se = cur_u8(seg);
    int a = cur_u8(seg);
    d->ah = a >> 4;
    d->al = a & 15;
    if (seg->bad) return jpeg_fail(d, SC_EFORMAT, "truncated scan header");
    if (n > 1 && blocks_per_mcu > 10) return jpeg_fail(d, SC_EFORMAT, "more than 10 blocks in an MCU");

    int dc_first = 0, needs_dc = 0, needs_ac = 0;
    if (!d->progressive) {
        if (d->ss != 0 || d->se != 63 || d->ah != 0 || d->al != 0)
            return jpeg_fail(d, SC_EFORMAT, "sequential scan with a partial spectral band");
        *fn = jpeg_block_sequential;
        needs_dc = needs_ac = 1;
    } else {
        int dc = d->ss == 0;
        if ((dc && d->se != 0) || (!dc && (d->se < d->ss || d->se > 63 || n != 1)) ||
            (d->ah != 0 && d->ah != d->al + 1) || d->al > 13)
            return jpeg_fail(d, SC_EFORMAT, "invalid progressive scan parameters");
        dc_first = dc && d->ah == 0;
        needs_dc = dc_first;
        needs_ac = !dc;
        *fn = dc ? (d->ah ? jpeg_block_dc_refine : jpeg_block_dc_first)
                 : (d->ah ? jpeg_block_ac_refine : jpeg_block_ac_first);
    }
    for (int i = 0; i < n; i++) {
        jpeg_component *c = d->scan_comp[i];
        if (needs_dc && (!d->dc[c->dc_table].defined || d->dc[c->dc_table].max_value > 15))
            return jpeg_fail(d, SC_EFORMAT, "scan uses a missing or invalid DC Huffman table");
        if (needs_ac && !d->ac[c->ac_table].defined)
            return jpeg_fail(d, SC_EFORMAT, "scan uses a missing AC Huffman table");
        /* Every block costs at least one bit in a DC first scan: requiring it
         * before AC scans bounds the work of later scans by the file size. */
        if (d->progressive && !dc_first && !c->dc_seen)
            return jpeg_fail(d, SC_EFORMAT, "progressive scan before the component's first DC scan");
        if (dc_first) c->dc_seen = 1;
        if (!c->quant_latched) {
            if (!d->qt_defined[c->tq]) return jpeg_fail(d, SC_EFORMAT, "quantisation table used before it is defined");
            memcpy(c->quant, d->qt[c->tq], sizeof c->quant);
            c->quant_latched = 1;
        }
    }
    return SC_OK;
}

/* APP0 "JFIF" and APP14 "Adobe" decide the colour space of 3 components. */
static void jpeg_read_app(jpeg_decoder *d, int marker, const uint8_t *body, size_t n)
{
    if (marker == 0xE0 && n >= 5 && memcmp(body, "JFIF\0", 5) == 0) d->jfif = 1;
    if (marker == 0xEE && n >= 12 && memcmp(body, "Adobe", 5) == 0) {
        d->adobe = 1;
        d->adobe_transform = body[11];
    }
}

/* ---- from coefficients to pixels ---- */

/* @book begin jpeg-idct */
/* libjpeg's "islow" inverse DCT (jidctint.c, after Loeffler, Ligtenberg
 * and Moschytz): a separable 1-D IDCT on columns, then rows, in integers
 * with 13-bit constants. Pass 1 keeps PASS1_BITS of extra precision; pass
 * 2 removes it together with the DCT's factor 8. Each constant is
 * round(x · 2^13) of the multiplier it is named after. */
#define IDCT_CONST_BITS 13
#define IDCT_PASS1_BITS 2
enum {
    FIX_0_298631336 = 2446, FIX_0_390180644 = 3196, FIX_0_541196100 = 4433, FIX_0_765366865 = 6270,
    FIX_0_899976223 = 7373, FIX_1_175875602 = 9633, FIX_1_501321110 = 12299, FIX_1_847759065 = 15137,
    FIX_1_961570560 = 16069, FIX_2_053119869 = 16819, FIX_2_562915447 = 20995, FIX_3_072711026 = 25172
};

/* Round x / 2^n to nearest, as libjpeg's DESCALE (arithmetic shift). */
static int64_t descale(int64_t x, int n)
{
    return (x + ((int64_t)1 << (n - 1))) >> n;
}

/* One 8-point IDCT of in[0], in[s], ..., in[7s] into out[0..7] (scaled by
 * 2^shift before the final descale by `descale_bits`). */
static void idct_1d(const int64_t *in, int s, int64_t *out, int descale_bits)
{
    /* even part: inputs 0, 2, 4, 6 */
    int64_t z2 = in[2 * s], z3 = in[6 * s];
    int64_t z1 = (z2 + z3) * FIX_0_541196100;
    int64_t tmp2 = z1 - z3 * FIX_1_847759065;
    int64_t tmp3 = z1 + z2 * FIX_0_765366865;
    int64_t tmp0 = (in[0] + in[4 * s]) * (1 << IDCT_CONST_BITS);
    int64_t tmp1 = (in[0] - in[4 * s]) * (1 << IDCT_CONST_BITS);
    int64_t tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
    /* odd part: inputs 7, 5, 3, 1 */
    tmp0 = in[7 * s];
    tmp1 = in[5 * s];
    tmp2 = in[3 * s];
    tmp3 = in[1 * s];
    z1 = tmp0 + tmp3;
    z2 = tmp1 + tmp2;
    z3 = tmp0 + tmp2;
    int64_t z4 = tmp1 + tmp3;
    int64_t z5 = (z3 + z4) * FIX_1_175875602;
    tmp0 *= FIX_0_298631336;
    tmp1 *= FIX_2_053119869;
    tmp2 *= FIX_3_072711026;
    tmp3 *= FIX_1_501321110;
    z1 *= -FIX_0_899976223;
    z2 *= -FIX_2_562915447;
    z3 = z3 * -FIX_1_961570560 + z5;
    z4 = z4 * -FIX_0_390180644 + z5;
    tmp0 += z1 + z3;
    tmp1 += z2 + z4;
    tmp2 += z2 + z3;
    tmp3 += z1 + z4;
    out[0] = descale(tmp10 + tmp3, descale_bits);
    out[7] = descale(tmp10 - tmp3, descale_bits);
    out[1] = descale(tmp11 + tmp2, descale_bits);
    out[6] = descale(tmp11 - tmp2, descale_bits);
    out[2] = descale(tmp12 + tmp1, descale_bits);
    out[5] = descale(tmp12 - tmp1, descale_bits);
    out[3] = descale(tmp13 + tmp0, descale_bits);
    out[4] = descale(tmp13 - tmp0, descale_bits);
}

/* Dequantise and inverse-transform one block into 8x8 samples at out. */
static void jpeg_idct_block(const int16_t *coef, const uint16_t *quant, uint8_t *out, size_t stride)
{
    int64_t deq[64], ws[64], row[8];
    for (int i = 0; i < 64; i++) deq[i] = (int64_t)coef[i] * quant[i];
    for (int x = 0; x < 8; x++) { /* columns, into ws (transposed back below) */
        int64_t col[8];
        idct_1d(deq + x, 8, col, IDCT_CONST_BITS - IDCT_PASS1_BITS);
        for (int y = 0; y < 8; y++) ws[y * 8 + x] = col[y];
    }
    for (int y = 0; y < 8; y++) { /* rows; +3 removes the 2-D IDCT's factor 8 */
        idct_1d(ws + y * 8, 1, row, IDCT_CONST_BITS + IDCT_PASS1_BITS + 3);
        for (int x = 0; x < 8; x++) {
            int64_t v = row[x] + 128;
            out[(size_t)y * stride + (size_t)x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}
/* @book end jpeg-idct */

/* @book begin jpeg-upsample */
/* Chroma upsampling as libjpeg-turbo does by default (jdsample.c). For a
 * factor of 2 horizontally, vertically or both, "fancy" (triangle)
 * filtering: each output sample lies 1/4 of the way from its nearest input
 * sample to the next one, so it mixes them 3:1 in each direction, with the
 * neighbour beyond an edge replaced by the edge sample itself. Rounding
 * biases alternate (1/2 horizontally, 8/7 for the 2-D sum, 1/2 vertically)
 * so errors do not drift one way. Any other integer factor, and 2x
 * horizontal on inputs at most 2 samples wide, replicates samples. */
static void upsample_component(const jpeg_component *c, int hexp, int vexp, uint8_t *out, int ow, int oh,
                               int *mix /* scratch: one row of c->dw */)
{
    const uint8_t *in = c->plane;
    size_t stride = (size_t)c->bw * 8;
    int iw = c->dw, ih = c->dh;
    int fancy_h = hexp == 2 && vexp <= 2 && iw > 2; /* h2v1 and h2v2 */
    int fancy_v = vexp == 2 && (hexp == 1 || fancy_h); /* h1v2 and h2v2 */
    for (int y = 0; y < oh; y++) {
        int r = y / vexp;
        const uint8_t *near = in + (size_t)r * stride;
        int bias_v = 0;
        if (fancy_v) {
            int upper = y % 2 == 0;
            const uint8_t *far = in + (size_t)(upper ? (r > 0 ? r - 1 : 0) : (r < ih - 1 ? r + 1 : ih - 1)) * stride;
            for (int x = 0; x < iw; x++) mix[x] = 3 * near[x] + far[x];
            bias_v = upper ? 1 : 2;
        } else {
            for (int x = 0; x < iw; x++) mix[x] = near[x];
        }
        uint8_t *o = out + (size_t)y * (size_t)ow;
        if (fancy_h) {
            int shift = fancy_v ? 4 : 2, b0 = fancy_v ? 8 : 1, b1 = fancy_v ? 7 : 2;
            for (int x = 0; x < iw; x++) {
                int left = mix[x > 0 ? x - 1 : 0], right = mix[x < iw - 1 ? x + 1 : x];
                if (2 * x < ow) o[2 * x] = (uint8_t)((3 * mix[x] + left + b0) >> shift);
                if (2 * x + 1 < ow) o[2 * x + 1] = (uint8_t)((3 * mix[x] + right + b1) >> shift);
            }
        } else if (fancy_v) { /* h1v2 */
            for (int x = 0; x < ow; x++) o[x] = (uint8_t)((mix[x] + bias_v) >> 2);
        } else {
            for (int x = 0; x < ow; x++) o[x] = (uint8_t)mix[x / hexp];
        }
    }
}
/* @book end jpeg-upsample */

/* @book begin jpeg-color */
/* YCbCr → RGB as libjpeg's jdcolor.c, in 16-bit fixed point:
 *   R = Y + 1.40200 (Cr - 128)
 *   G = Y - 0.34414 (Cb - 128) - 0.71414 (Cr - 128)
 *   B = Y + 1.77200 (Cb - 128)
 * R and B round each product to nearest; G adds both products scaled by
 * 2^16 and rounds once. */
#define YCC_SCALEBITS 16
#define YCC_HALF ((int32_t)1 << (YCC_SCALEBITS - 1))
enum { FIX_1_40200 = 91881, FIX_1_77200 = 116130, FIX_0_71414 = 46802, FIX_0_34414 = 22554 }; /* round(x·2^16) */

static uint8_t clamp_u8(int v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void ycc_to_rgb(int y, int cb, int cr, uint8_t *rgb)
{
    cb -= 128;
    cr -= 128;
    rgb[0] = clamp_u8(y + ((FIX_1_40200 * cr + YCC_HALF) >> YCC_SCALEBITS));
    rgb[1] = clamp_u8(y + ((-FIX_0_34414 * cb - FIX_0_71414 * cr + YCC_HALF) >> YCC_SCALEBITS));
    rgb[2] = clamp_u8(y + ((FIX_1_77200 * cb + YCC_HALF) >> YCC_SCALEBITS));
}
/* @book end jpeg-color */

/* Inverse DCT of every block, upsampling, colour conversion into img. */
static sc_status jpeg_finish(jpeg_decoder *d, sc_image *img)
{
    sc_status st = image_alloc(img, d->width, d->height, d->ncomp == 1 ? 1 : 3, 8, 0, d->what, d->err);
    if (st != SC_OK) return st;
    size_t npix = (size_t)d->width * (size_t)d->height;
    uint8_t *full[3] = {NULL, NULL, NULL}; /* each component at full size (height, width) */
    for (int i = 0; i < d->ncomp && st == SC_OK; i++) {
        jpeg_component *c = &d->comp[i];
        size_t stride = (size_t)c->bw * 8;
        c->plane = malloc(stride * (size_t)c->bh * 8);
        full[i] = malloc(npix);
        int *mix = malloc(sizeof(int) * (size_t)c->dw); /* one input row, mixed vertically */
        if (!c->plane || !full[i] || !mix) {
            free(mix);
            st = jpeg_fail(d, SC_ENOMEM, "out of memory for the sample planes");
            break;
        }
        for (int by = 0; by < c->bh; by++)
            for (int bx = 0; bx < c->bw; bx++)
                jpeg_idct_block(c->coef + ((size_t)by * (size_t)c->bw + (size_t)bx) * 64, c->quant,
                                c->plane + (size_t)by * 8 * stride + (size_t)bx * 8, stride);
        upsample_component(c, d->hmax / c->h, d->vmax / c->v, full[i], d->width, d->height, mix);
        free(mix);
    }
    if (st == SC_OK) {
        /* Three components are YCbCr unless an Adobe marker without JFIF says
         * RGB (transform 0), or, with neither marker, the ids spell 'R' 'G' 'B'. */
        int rgb = d->ncomp == 3 && !d->jfif &&
                  (d->adobe ? d->adobe_transform == 0
                            : d->comp[0].id == 'R' && d->comp[1].id == 'G' && d->comp[2].id == 'B');
        for (size_t p = 0; p < npix; p++) {
            if (d->ncomp == 1) img->pixels[p] = full[0][p];
            else if (rgb) for (int k = 0; k < 3; k++) img->pixels[3 * p + (size_t)k] = full[k][p];
            else ycc_to_rgb(full[0][p], full[1][p], full[2][p], img->pixels + 3 * p);
        }
    }
    for (int i = 0; i < 3; i++) free(full[i]);
    if (st != SC_OK) sc_image_free(img);
    return st;
}

/* After a scan's data: the reader stopped at a marker (or the end). Skip
 * what the encoder left before the marker, as libjpeg does with a warning. */
static void jpeg_skip_to_marker(cursor *c, const uint8_t *from)
{
    c->p = from;
    while (c->p + 1 < c->end && !(c->p[0] == 0xFF && c->p[1] != 0 && c->p[1] != 0xFF)) c->p++;
    if (c->p + 1 >= c->end) c->p = c->end;
}

sc_status sc_jpeg_decode(const uint8_t *data, size_t len, const char *what, sc_image *img, sc_err *err)
{
    memset(img, 0, sizeof *img);
    if (!data) data = (const uint8_t *)"", len = 0;
    jpeg_decoder *d = calloc(1, sizeof *d);
    if (!d) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    d->what = what;
    d->err = err;
    cursor c = cursor_make(data, len);
    sc_status st = SC_OK;
    if (cur_u8(&c) != 0xFF || cur_u8(&c) != 0xD8) st = jpeg_fail(d, SC_EFORMAT, "not a JPEG file (no SOI marker)");
    int done = 0;
    while (st == SC_OK && !done) {
        if (cur_u8(&c) != 0xFF) {
            st = jpeg_fail(d, SC_EFORMAT, c.bad ? "truncated: no EOI marker" : "expected a marker");
            break;
        }
        int marker = cur_u8(&c);
        while (marker == 0xFF && !c.bad) marker = cur_u8(&c); /* fill bytes */
        if (c.bad) { st = jpeg_fail(d, SC_EFORMAT, "truncated: no EOI marker"); break; }
        if (marker == 0xD9) { done = 1; break; }                /* EOI */
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {
            st = jpeg_fail(d, SC_EFORMAT, "unexpected RST, SOI or TEM marker");
            break;
        }
        uint16_t seg_len = cur_u16be(&c);
        const uint8_t *body = seg_len >= 2 ? cur_take(&c, seg_len - 2u) : NULL;
        if (!body) { st = jpeg_fail(d, SC_EFORMAT, "truncated or malformed marker segment"); break; }
        cursor seg = cursor_make(body, seg_len - 2u);
        if (marker == 0xDB) {
            st = jpeg_read_dqt(d, &seg);
        } else if (marker == 0xC4) {
            st = jpeg_read_dht(d, &seg);
        } else if (marker == 0xCC) {
            st = jpeg_fail(d, SC_EUNSUPPORTED, "arithmetic coding (DAC marker) is not supported");
        } else if (marker >= 0xC0 && marker <= 0xCF) {
            st = jpeg_read_sof(d, &seg, marker);
        } else if (marker == 0xDD) {
            d->restart_interval = cur_u16be(&seg);
            if (seg.bad) st = jpeg_fail(d, SC_EFORMAT, "truncated DRI segment");
        } else if (marker == 0xDC) {
            st = jpeg_fail(d, SC_EUNSUPPORTED, "DNL marker (height defined after the scan) is not supported");
        } else if (marker >= 0xE0 && marker <= 0xEF) {
            jpeg_read_app(d, marker, body, seg_len - 2u);
        } else if (marker == 0xDA) {
            jpeg_block_fn fn = NULL;
            st = jpeg_read_sos(d, &seg, &fn);
            if (st != SC_OK) break;
            jpeg_bits b = {c.p, c.end, 0, 0, 0, 0};
            d->in = b;
            st = jpeg_decode_scan(d, fn);
            jpeg_skip_to_marker(&c, d->in.p);
        }
        /* COM and other segments are skipped. */
    }
    if (st == SC_OK && !d->scans) st = jpeg_fail(d, SC_EFORMAT, "no image data (no scan)");
    if (st == SC_OK) st = jpeg_finish(d, img);
    for (int i = 0; i < 4; i++) {
        free(d->comp[i].coef);
        free(d->comp[i].plane);
    }
    free(d);
    return st;
}

/* -- the writer: baseline JPEG -- */

/* A baseline writer for the synthetic datasets, whose real counterparts are
 * JPEG files: one scan, 8-bit samples, no chroma subsampling (4:4:4, each
 * MCU is one 8x8 block per component), the example quantisation tables of
 * ITU T.81 annex K.1 scaled by quality as the IJG library does, and the
 * annex K.3 Huffman tables. The forward DCT is a separable product with a
 * fixed-point cosine matrix in integer arithmetic, so the bytes written do
 * not depend on the platform's floating point. */

/* Annex K.1, natural (row-major) order. */
static const uint8_t jpeg_luma_quant[64] = {
    16, 11, 10, 16, 24,  40,  51,  61,  12, 12, 14, 19, 26,  58,  60,  55,
    14, 13, 16, 24, 40,  57,  69,  56,  14, 17, 22, 29, 51,  87,  80,  62,
    18, 22, 37, 56, 68,  109, 103, 77,  24, 35, 55, 64, 81,  104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99};
static const uint8_t jpeg_chroma_quant[64] = {
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99,
    99, 99, 47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99};

/* Annex K.3: code counts per length 1..16, then the symbols in code order.
 * An AC symbol is (zero run << 4) | size; 0x00 ends the block (EOB) and
 * 0xF0 stands for sixteen zeros (ZRL). */
typedef struct {
    uint8_t counts[16];
    uint8_t symbols[162];
    int n_symbols;
} jpeg_huffman_spec;

static const jpeg_huffman_spec jpeg_std_dc_luma = {
    {0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 12};
static const jpeg_huffman_spec jpeg_std_dc_chroma = {
    {0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 12};
static const jpeg_huffman_spec jpeg_std_ac_luma = {
    {0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d},
    {0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22,
     0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33,
     0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34,
     0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55,
     0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76,
     0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96,
     0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5,
     0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4,
     0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1,
     0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa},
    162};
static const jpeg_huffman_spec jpeg_std_ac_chroma = {
    {0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77},
    {0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13,
     0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62,
     0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28, 0x29,
     0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54,
     0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75,
     0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94,
     0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3,
     0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2,
     0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea,
     0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa},
    162};

/* Code and length of every symbol, assigned in order of length (annex C). */
typedef struct {
    uint16_t code[256];
    uint8_t length[256];
} jpeg_huffman_codes;

static void jpeg_make_codes(const jpeg_huffman_spec *spec, jpeg_huffman_codes *out)
{
    memset(out, 0, sizeof *out);
    unsigned code = 0;
    int k = 0;
    for (int len = 1; len <= 16; len++) {
        for (int i = 0; i < spec->counts[len - 1]; i++, k++) {
            out->code[spec->symbols[k]] = (uint16_t)code++;
            out->length[spec->symbols[k]] = (uint8_t)len;
        }
        code <<= 1;
    }
}

/* The IJG scaling: quality 50 keeps the annex tables, 100 makes every
 * step 1, lower qualities scale them up; steps stay in 1..255. */
static void jpeg_scale_quant(const uint8_t *base, int quality, uint16_t *out)
{
    int scale = quality < 50 ? 5000 / quality : 200 - 2 * quality;
    for (int i = 0; i < 64; i++) {
        int q = (base[i] * scale + 50) / 100;
        out[i] = (uint16_t)(q < 1 ? 1 : q > 255 ? 255 : q);
    }
}

/* Entropy-coded bits, most significant first; a 0xFF byte is followed by
 * a stuffed 0x00 so it cannot be read as a marker. */
typedef struct {
    sc_text *out;
    uint32_t acc;   /* pending bits, right-aligned */
    int n;          /* how many */
} jpeg_bit_writer;

static void jpeg_put_bits(jpeg_bit_writer *w, unsigned value, int n)
{
    w->acc = (w->acc << n) | (value & ((1u << n) - 1));
    w->n += n;
    while (w->n >= 8) {
        char byte = (char)(w->acc >> (w->n - 8) & 0xFF);
        sc_text_put(w->out, &byte, 1);
        if ((uint8_t)byte == 0xFF) sc_text_put(w->out, "", 1);
        w->n -= 8;
    }
}

/* Pad the last byte with one bits (annex F.1.2.3). */
static void jpeg_flush_bits(jpeg_bit_writer *w)
{
    if (w->n > 0) jpeg_put_bits(w, 0x7F, 8 - w->n);
}

/* The size category of a coefficient and its extra bits (annex F.1.2.1):
 * a negative value v of category s is sent as v + 2^s - 1. */
static int jpeg_category(int v, unsigned *bits)
{
    int a = v < 0 ? -v : v, s = 0;
    while (a >> s) s++;
    *bits = (unsigned)(v < 0 ? v + (1 << s) - 1 : v);
    return s;
}

static void jpeg_encode_block(jpeg_bit_writer *w, const int *zz, int *pred, const jpeg_huffman_codes *dc,
                              const jpeg_huffman_codes *ac)
{
    unsigned bits;
    int s = jpeg_category(zz[0] - *pred, &bits);
    *pred = zz[0];
    jpeg_put_bits(w, dc->code[s], dc->length[s]);
    if (s) jpeg_put_bits(w, bits, s);
    int run = 0;
    for (int k = 1; k < 64; k++) {
        if (zz[k] == 0) {
            run++;
            continue;
        }
        for (; run > 15; run -= 16) jpeg_put_bits(w, ac->code[0xF0], ac->length[0xF0]);
        s = jpeg_category(zz[k], &bits);
        int sym = run << 4 | s;
        jpeg_put_bits(w, ac->code[sym], ac->length[sym]);
        jpeg_put_bits(w, bits, s);
        run = 0;
    }
    if (run) jpeg_put_bits(w, ac->code[0x00], ac->length[0x00]);
}

/* Integer division rounded half away from zero. */
static int64_t jpeg_div_round(int64_t x, int64_t d)
{
    return x >= 0 ? (x + d / 2) / d : -((-x + d / 2) / d);
}

/* DCT of one level-shifted block and quantisation, into zig-zag order:
 *   F(v,u) = C(v)/2 C(u)/2 Σ_y Σ_x f(y,x) cos((2y+1)vπ/16) cos((2x+1)uπ/16)
 * with C(0) = 1/√2, else 1. cosm holds C(u)/2 cos((2x+1)uπ/16) · 2^12. */
static void jpeg_fdct_quant(const int *block, int32_t cosm[8][8], const uint16_t *quant, int *zz)
{
    int64_t rows[8][8]; /* (y, u): the row transform, scaled by 2^12 */
    for (int y = 0; y < 8; y++)
        for (int u = 0; u < 8; u++) {
            int64_t s = 0;
            for (int x = 0; x < 8; x++) s += (int64_t)cosm[u][x] * block[y * 8 + x];
            rows[y][u] = s;
        }
    for (int k = 0; k < 64; k++) {
        int pos = jpeg_natural[k], v = pos / 8, u = pos % 8;
        int64_t s = 0;
        for (int y = 0; y < 8; y++) s += (int64_t)cosm[v][y] * rows[y][u];
        zz[k] = (int)jpeg_div_round(s, (int64_t)quant[pos] << 24);
    }
}

static void jpeg_put_u16(sc_text *t, unsigned v)
{
    char b[2] = {(char)(v >> 8), (char)(v & 0xFF)};
    sc_text_put(t, b, 2);
}

static void jpeg_put_marker(sc_text *t, int marker, unsigned length)
{
    char m[2] = {(char)0xFF, (char)marker};
    sc_text_put(t, m, 2);
    if (length) jpeg_put_u16(t, length);
}

static void jpeg_put_dht(sc_text *t, int class_and_id, const jpeg_huffman_spec *spec)
{
    jpeg_put_marker(t, 0xC4, 2 + 1 + 16 + (unsigned)spec->n_symbols);
    char id = (char)class_and_id;
    sc_text_put(t, &id, 1);
    sc_text_put(t, (const char *)spec->counts, 16);
    sc_text_put(t, (const char *)spec->symbols, (size_t)spec->n_symbols);
}

/* The markers before the scan: SOI, JFIF APP0, DQT, SOF0, DHT, SOS. */
static void jpeg_put_headers(sc_text *t, const sc_image *img, int nc, uint16_t quant[2][64])
{
    jpeg_put_marker(t, 0xD8, 0);
    jpeg_put_marker(t, 0xE0, 16);
    sc_text_put(t, "JFIF\0\x01\x01\0\0\x01\0\x01\0\0", 14); /* v1.01, aspect 1:1, no thumbnail */
    for (int q = 0; q < (nc == 3 ? 2 : 1); q++) {
        jpeg_put_marker(t, 0xDB, 2 + 65);
        char id = (char)q;
        sc_text_put(t, &id, 1);
        for (int k = 0; k < 64; k++) {
            char step = (char)quant[q][jpeg_natural[k]]; /* tables are stored in zig-zag order */
            sc_text_put(t, &step, 1);
        }
    }
    jpeg_put_marker(t, 0xC0, 8 + 3 * (unsigned)nc);
    sc_text_put(t, "\x08", 1);
    jpeg_put_u16(t, (unsigned)img->height);
    jpeg_put_u16(t, (unsigned)img->width);
    char ncomp = (char)nc;
    sc_text_put(t, &ncomp, 1);
    for (int c = 0; c < nc; c++) {
        char comp[3] = {(char)(c + 1), 0x11, (char)(c ? 1 : 0)}; /* id, 1x1 sampling, table */
        sc_text_put(t, comp, 3);
    }
    jpeg_put_dht(t, 0x00, &jpeg_std_dc_luma);
    jpeg_put_dht(t, 0x10, &jpeg_std_ac_luma);
    if (nc == 3) {
        jpeg_put_dht(t, 0x01, &jpeg_std_dc_chroma);
        jpeg_put_dht(t, 0x11, &jpeg_std_ac_chroma);
    }
    jpeg_put_marker(t, 0xDA, 6 + 2 * (unsigned)nc);
    sc_text_put(t, &ncomp, 1);
    for (int c = 0; c < nc; c++) {
        char sel[2] = {(char)(c + 1), (char)(c ? 0x11 : 0x00)};
        sc_text_put(t, sel, 2);
    }
    sc_text_put(t, "\x00\x3F\x00", 3); /* spectral selection 0..63, no approximation */
}

/* The 8x8 block of component c at block (bx, by), level-shifted to
 * -128..127; edges are extended by repeating the last row and column.
 * RGB is converted with the JFIF equations in 16-bit fixed point. */
static void jpeg_get_block(const sc_image *img, int c, int bx, int by, int *block)
{
    for (int y = 0; y < 8; y++) {
        int sy = by * 8 + y < img->height ? by * 8 + y : img->height - 1;
        for (int x = 0; x < 8; x++) {
            int sx = bx * 8 + x < img->width ? bx * 8 + x : img->width - 1;
            const uint8_t *p = img->pixels + ((size_t)sy * (size_t)img->width + (size_t)sx) * (size_t)img->channels;
            int v;
            if (img->channels == 1) v = p[0];
            else if (c == 0) v = (19595 * p[0] + 38470 * p[1] + 7471 * p[2] + 32768) >> 16;
            else if (c == 1) v = (-11059 * p[0] - 21709 * p[1] + 32768 * p[2] + (128 << 16) + 32767) >> 16;
            else v = (32768 * p[0] - 27439 * p[1] - 5329 * p[2] + (128 << 16) + 32767) >> 16;
            block[y * 8 + x] = v - 128;
        }
    }
}

sc_status sc_jpeg_encode(const sc_image *img, int quality, uint8_t **out, size_t *out_len, sc_err *err)
{
    *out = NULL;
    *out_len = 0;
    if (img->width < 1 || img->height < 1 || img->width > 65535 || img->height > 65535 || img->bits != 8 ||
        !img->pixels || (img->channels != 1 && img->channels != 3))
        return sc_fail(err, SC_EARG, "JPEG writer: cannot write a %dx%d image with %d channels at %d bits "
                       "(8-bit grey or RGB, sides up to 65535)", img->width, img->height, img->channels, img->bits);
    if (quality < 1 || quality > 100)
        return sc_fail(err, SC_EARG, "JPEG writer: quality %d is outside 1..100", quality);
    int nc = img->channels;
    uint16_t quant[2][64];
    jpeg_scale_quant(jpeg_luma_quant, quality, quant[0]);
    jpeg_scale_quant(jpeg_chroma_quant, quality, quant[1]);
    jpeg_huffman_codes dc[2], ac[2];
    jpeg_make_codes(&jpeg_std_dc_luma, &dc[0]);
    jpeg_make_codes(&jpeg_std_ac_luma, &ac[0]);
    jpeg_make_codes(&jpeg_std_dc_chroma, &dc[1]);
    jpeg_make_codes(&jpeg_std_ac_chroma, &ac[1]);
    int32_t cosm[8][8];
    for (int u = 0; u < 8; u++)
        for (int x = 0; x < 8; x++) {
            double cu = u == 0 ? sqrt(0.5) : 1.0;
            cosm[u][x] = (int32_t)lround(4096.0 * cu / 2.0 * cos((2 * x + 1) * u * 3.14159265358979323846 / 16.0));
        }

    sc_text t;
    sc_text_init(&t);
    jpeg_put_headers(&t, img, nc, quant);
    jpeg_bit_writer w = {&t, 0, 0};
    int pred[3] = {0, 0, 0};
    int block[64], zz[64];
    int bw = (img->width + 7) / 8, bh = (img->height + 7) / 8;
    for (int by = 0; by < bh; by++)
        for (int bx = 0; bx < bw; bx++)
            for (int c = 0; c < nc; c++) { /* one MCU: a block of each component */
                int table = c ? 1 : 0;
                jpeg_get_block(img, c, bx, by, block);
                jpeg_fdct_quant(block, cosm, quant[table], zz);
                jpeg_encode_block(&w, zz, &pred[c], &dc[table], &ac[table]);
            }
    jpeg_flush_bits(&w);
    jpeg_put_marker(&t, 0xD9, 0);
    if (t.failed) {
        sc_text_free(&t);
        return sc_fail(err, SC_ENOMEM, "JPEG writer: out of memory");
    }
    *out = (uint8_t *)t.data;
    *out_len = t.len;
    return SC_OK;
}

sc_status sc_jpeg_write(const char *path, const sc_image *img, int quality, sc_err *err)
{
    uint8_t *jpg;
    size_t len;
    sc_err why;
    sc_status st = sc_jpeg_encode(img, quality, &jpg, &len, &why);
    if (st != SC_OK) return sc_fail(err, st, "%s: %s", path, why.msg);
    st = sc_write_file_atomic(path, jpg, len, err);
    free(jpg);
    return st;
}

/* ======================================================================== */
/* 9. PPM/PGM                                                                */
/* ======================================================================== */

/* Netpbm's binary formats: "P5" (grey) or "P6" (RGB), then width, height
 * and maxval as decimal numbers separated by whitespace (and # comments),
 * one whitespace byte, then the samples row by row: one byte each for
 * maxval < 256, two bytes big-endian otherwise. */
static long pnm_number(cursor *c)
{
    for (;;) { /* whitespace and comments before the number */
        if (cur_left(c) == 0) return -1;
        uint8_t ch = *c->p;
        if (ch == '#') {
            while (cur_left(c) > 0 && *c->p != '\n') c->p++;
        } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f') {
            c->p++;
        } else {
            break;
        }
    }
    long v = 0;
    int digits = 0;
    while (cur_left(c) > 0 && *c->p >= '0' && *c->p <= '9' && digits < 9) {
        v = v * 10 + (*c->p++ - '0');
        digits++;
    }
    return digits ? v : -1;
}

sc_status sc_pnm_decode(const uint8_t *data, size_t len, const char *what, sc_image *img, sc_err *err)
{
    memset(img, 0, sizeof *img);
    if (!data) data = (const uint8_t *)"", len = 0;
    cursor c = cursor_make(data, len);
    const uint8_t *magic = cur_take(&c, 2);
    if (!magic || magic[0] != 'P' || (magic[1] != '5' && magic[1] != '6'))
        return sc_fail(err, SC_EFORMAT, "%s: not a binary PGM (P5) or PPM (P6) file", what);
    int channels = magic[1] == '5' ? 1 : 3;
    long w = pnm_number(&c), h = pnm_number(&c), maxval = pnm_number(&c);
    if (w < 0 || h < 0 || maxval < 0 || cur_left(&c) == 0)
        return sc_fail(err, SC_EFORMAT, "%s: truncated or malformed header", what);
    c.p++; /* the single whitespace byte before the samples */
    if (maxval != 255 && maxval != 65535)
        return sc_fail(err, SC_EUNSUPPORTED, "%s: maxval %ld (only 255 and 65535 are supported)", what, maxval);
    int bits = maxval == 255 ? 8 : 16;
    sc_status st = image_alloc(img, w, h, channels, bits, 0, what, err);
    if (st != SC_OK) return st;
    size_t n = (size_t)w * (size_t)h * (size_t)channels;
    const uint8_t *samples = cur_take(&c, n * (size_t)(bits / 8));
    if (!samples) {
        sc_image_free(img);
        return sc_fail(err, SC_EFORMAT, "%s: %zu bytes of samples expected, %zu present", what,
                       n * (size_t)(bits / 8), (size_t)(data + len - c.p));
    }
    for (size_t i = 0; i < n; i++) {
        if (bits == 8) {
            img->pixels[i] = samples[i];
        } else {
            img->pixels16[i] = (uint16_t)(samples[2 * i] << 8 | samples[2 * i + 1]);
            img->pixels[i] = samples[2 * i];
        }
    }
    return SC_OK;
}

sc_status sc_pnm_write(const char *path, const sc_image *img, sc_err *err)
{
    if ((img->channels != 1 && img->channels != 3) || img->width < 1 || img->height < 1 ||
        (img->bits != 8 && img->bits != 16) || (img->bits == 16 ? !img->pixels16 : !img->pixels))
        return sc_fail(err, SC_EARG, "%s: PGM/PPM holds 1 or 3 channels at 8 or 16 bits, not %d channels at %d bits",
                       path, img->channels, img->bits);
    char header[64];
    int hl = snprintf(header, sizeof header, "P%c\n%d %d\n%d\n", img->channels == 1 ? '5' : '6', img->width,
                      img->height, img->bits == 8 ? 255 : 65535);
    size_t n = (size_t)img->width * (size_t)img->height * (size_t)img->channels;
    size_t bytes = n * (size_t)(img->bits / 8);
    uint8_t *buf = malloc((size_t)hl + bytes);
    if (!buf) return sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    memcpy(buf, header, (size_t)hl);
    for (size_t i = 0; i < n; i++) {
        if (img->bits == 8) {
            buf[(size_t)hl + i] = img->pixels[i];
        } else {
            buf[(size_t)hl + 2 * i] = (uint8_t)(img->pixels16[i] >> 8);
            buf[(size_t)hl + 2 * i + 1] = (uint8_t)img->pixels16[i];
        }
    }
    sc_status st = sc_write_file_atomic(path, buf, (size_t)hl + bytes, err);
    free(buf);
    return st;
}

/* ======================================================================== */
/* 10. Image preprocessing                                                   */
/* ======================================================================== */

/* The models were trained and evaluated on images prepared by Python code:
 * Pillow for decoding, resizing and colour conversion, torchvision or
 * Hugging Face for cropping and normalisation. Each step below follows the
 * library the model's own code calls, so a test can hold it to the bit. */

/* An empty 8-bit image of the given size (the size comes from the caller,
 * not from a file, but the same caps apply). */
static sc_status image_new8(sc_image *img, int64_t w, int64_t h, int channels, sc_err *err)
{
    return image_alloc(img, w, h, channels, 8, 0, "image", err);
}

sc_status sc_image_to_8bit(const sc_image *src, sc_image *dst, sc_err *err)
{
    sc_status st = image_new8(dst, src->width, src->height, src->channels, err);
    if (st != SC_OK) return st;
    size_t npix = (size_t)src->width * (size_t)src->height, ch = (size_t)src->channels;
    memcpy(dst->pixels, src->pixels, npix * ch);
    dst->bilevel = src->bilevel;
    if (src->index) {
        dst->index = malloc(npix);
        if (!dst->index) {
            sc_image_free(dst);
            return sc_fail(err, SC_ENOMEM, "image: out of memory");
        }
        memcpy(dst->index, src->index, npix);
        dst->palette_size = src->palette_size;
        memcpy(dst->palette, src->palette, sizeof src->palette);
    }
    if (src->bits != 16 || ch > 2) return SC_OK; /* colour keeps the high bytes already in pixels */
    /* @book begin depth16-rule */
    /* Grey 16-bit (a radiograph that may use 12 bits or the whole range):
     * stretch [min, max] of the image to [0, 255], rounding half up. */
    uint16_t lo = 65535, hi = 0;
    for (size_t p = 0; p < npix; p++) {
        uint16_t v = src->pixels16[p * ch];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    uint32_t range = (uint32_t)hi - lo;
    for (size_t p = 0; p < npix; p++) {
        uint32_t v = (uint32_t)src->pixels16[p * ch] - lo;
        dst->pixels[p * ch] = range ? (uint8_t)((v * 510 + range) / (2 * range)) : 0;
    }
    /* @book end depth16-rule */
    return SC_OK;
}

sc_status sc_image_convert(const sc_image *src, int channels, sc_image *dst, sc_err *err)
{
    if (channels != 1 && channels != 3)
        return sc_fail(err, SC_EARG, "image: can convert to 1 (L) or 3 (RGB) channels, not %d", channels);
    sc_status st = image_new8(dst, src->width, src->height, channels, err);
    if (st != SC_OK) return st;
    size_t npix = (size_t)src->width * (size_t)src->height;
    int sc = src->channels;
    for (size_t p = 0; p < npix; p++) {
        const uint8_t *in = src->pixels + p * (size_t)sc;
        uint8_t *out = dst->pixels + p * (size_t)channels;
        if (channels == 1) /* Pillow's L24: ITU-R 601-2 luma with 16-bit weights; alpha is ignored */
            out[0] = sc >= 3 ? (uint8_t)((19595 * in[0] + 38470 * in[1] + 7471 * in[2] + 0x8000) >> 16) : in[0];
        else
            for (int k = 0; k < 3; k++) out[k] = sc >= 3 ? in[k] : in[0];
    }
    return SC_OK;
}

sc_status sc_image_crop(const sc_image *src, int left, int top, int width, int height, sc_image *dst, sc_err *err)
{
    if (left < 0 || top < 0 || width < 1 || height < 1 || left > src->width - width || top > src->height - height)
        return sc_fail(err, SC_EARG, "image: crop %dx%d at (%d, %d) leaves the %dx%d image", width, height, left, top,
                       src->width, src->height);
    sc_status st = image_alloc(dst, width, height, src->channels, src->bits, src->index != NULL, "image", err);
    if (st != SC_OK) return st;
    size_t ch = (size_t)src->channels;
    for (int y = 0; y < height; y++) {
        size_t from = (size_t)(top + y) * (size_t)src->width + (size_t)left, to = (size_t)y * (size_t)width;
        memcpy(dst->pixels + to * ch, src->pixels + from * ch, (size_t)width * ch);
        if (src->pixels16) memcpy(dst->pixels16 + to * ch, src->pixels16 + from * ch, (size_t)width * ch * 2);
        if (src->index) memcpy(dst->index + to, src->index + from, (size_t)width);
    }
    dst->palette_size = src->palette_size;
    memcpy(dst->palette, src->palette, sizeof src->palette);
    dst->bilevel = src->bilevel;
    return SC_OK;
}

/* ---- resampling, as Pillow's Resample.c and Geometry.c ----------------- */

/* Pillow's kernels: bilinear is the triangle of support 1; bicubic is
 * Keys' cubic with a = -0.5, support 2. */
static double filter_bilinear(double x)
{
    if (x < 0) x = -x;
    return x < 1 ? 1 - x : 0;
}

static double filter_bicubic(double x)
{
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

#define RESAMPLE_PRECISION_BITS 22 /* 32 - 8 - 2: room for 8-bit samples times weights, with sign */

/* The taps of one axis: output i reads inputs [first[i], first[i] + count[i])
 * with fixed-point weights weight[i·ksize ...]. */
typedef struct {
    int *first, *count;
    int32_t *weight;  /* (out, ksize) */
    int ksize;
} resample_taps;

static void taps_free(resample_taps *t)
{
    free(t->first);
    free(t->count);
    free(t->weight);
}

/* @book begin pil-taps */
/* Weights for resampling in_size samples to out_size (Pillow's
 * precompute_coeffs). When shrinking by scale = in/out > 1 the kernel is
 * stretched by that factor, so every input sample contributes: this is the
 * antialiasing that makes Pillow's resize differ from plain interpolation.
 * Weights are normalised to sum 1 and rounded to 22-bit fixed point. */
static int taps_make(resample_taps *t, int in_size, int out_size, sc_resample filter)
{
    double (*kernel)(double) = filter == SC_RESAMPLE_BICUBIC ? filter_bicubic : filter_bilinear;
    double support = filter == SC_RESAMPLE_BICUBIC ? 2.0 : 1.0;
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    support *= filterscale;
    t->ksize = (int)ceil(support) * 2 + 1;
    t->first = malloc(sizeof(int) * (size_t)out_size);
    t->count = malloc(sizeof(int) * (size_t)out_size);
    t->weight = malloc(sizeof(int32_t) * (size_t)out_size * (size_t)t->ksize);
    double *w = malloc(sizeof(double) * (size_t)t->ksize);
    if (!t->first || !t->count || !t->weight || !w) {
        free(w);
        return 0;
    }
    for (int i = 0; i < out_size; i++) {
        double center = (i + 0.5) * scale, sum = 0.0, ss = 1.0 / filterscale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        for (int x = 0; x < n; x++) {
            w[x] = kernel(((double)(x + lo) - center + 0.5) * ss);
            sum += w[x];
        }
        int32_t *k = t->weight + (size_t)i * (size_t)t->ksize;
        for (int x = 0; x < t->ksize; x++) {
            double v = x < n && sum != 0.0 ? w[x] / sum : 0.0;
            k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << RESAMPLE_PRECISION_BITS) : 0.5 + v * (1 << RESAMPLE_PRECISION_BITS));
        }
        t->first[i] = lo;
        t->count[i] = n;
    }
    free(w);
    return 1;
}

/* One output sample: the weighted sum of `n` inputs `step` bytes apart,
 * started at one half (for rounding) and clamped to 0..255. */
static uint8_t resample_dot(const uint8_t *in, size_t step, const int32_t *k, int n)
{
    int32_t acc = 1 << (RESAMPLE_PRECISION_BITS - 1);
    for (int x = 0; x < n; x++) acc += in[(size_t)x * step] * k[x];
    acc >>= RESAMPLE_PRECISION_BITS;
    return (uint8_t)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}
/* @book end pil-taps */

/* Resample (h, w, ch) rows to width ow (horizontal) or columns to height oh
 * (vertical), one separable pass. */
static void resample_rows(const uint8_t *in, int w, int h, int ch, const resample_taps *t, uint8_t *out, int ow)
{
    for (int y = 0; y < h; y++)
        for (int i = 0; i < ow; i++)
            for (int c = 0; c < ch; c++)
                out[((size_t)y * (size_t)ow + (size_t)i) * (size_t)ch + (size_t)c] =
                    resample_dot(in + ((size_t)y * (size_t)w + (size_t)t->first[i]) * (size_t)ch + (size_t)c,
                                 (size_t)ch, t->weight + (size_t)i * (size_t)t->ksize, t->count[i]);
}

static void resample_cols(const uint8_t *in, int w, int ch, const resample_taps *t, uint8_t *out, int oh)
{
    size_t row = (size_t)w * (size_t)ch;
    for (int j = 0; j < oh; j++)
        for (size_t x = 0; x < row; x++)
            out[(size_t)j * row + x] = resample_dot(in + (size_t)t->first[j] * row + x, row,
                                                    t->weight + (size_t)j * (size_t)t->ksize, t->count[j]);
}

/* Pillow's NEAREST (ImagingScaleAffine): source coordinate x·s + s/2,
 * accumulated in double, truncated. */
static void nearest_table(int *src, int in_size, int out_size)
{
    double s = (double)in_size / out_size, pos = s * 0.5;
    for (int i = 0; i < out_size; i++, pos += s) {
        int k = (int)pos;
        src[i] = k < in_size ? k : in_size - 1; /* rounding could in theory reach in_size */
    }
}

static sc_status resize_nearest(const sc_image *src, sc_image *dst, sc_err *err)
{
    int *xs = malloc(sizeof(int) * (size_t)dst->width), *ys = malloc(sizeof(int) * (size_t)dst->height);
    if (!xs || !ys) {
        free(xs);
        free(ys);
        return sc_fail(err, SC_ENOMEM, "image: out of memory");
    }
    nearest_table(xs, src->width, dst->width);
    nearest_table(ys, src->height, dst->height);
    size_t ch = (size_t)src->channels;
    for (int y = 0; y < dst->height; y++)
        for (int x = 0; x < dst->width; x++) {
            size_t from = (size_t)ys[y] * (size_t)src->width + (size_t)xs[x];
            size_t to = (size_t)y * (size_t)dst->width + (size_t)x;
            memcpy(dst->pixels + to * ch, src->pixels + from * ch, ch);
            if (src->index) dst->index[to] = src->index[from];
        }
    free(xs);
    free(ys);
    return SC_OK;
}

/* Premultiply colour by alpha (the last channel) as Pillow's RGBA → RGBa:
 * c·a/255 rounded with the (t + (t >> 8)) >> 8 trick, t = c·a + 128. */
static void premultiply(uint8_t *px, size_t npix, int ch)
{
    for (size_t p = 0; p < npix; p++) {
        uint8_t *q = px + p * (size_t)ch;
        for (int c = 0; c < ch - 1; c++) {
            uint32_t t = (uint32_t)q[c] * q[ch - 1] + 128;
            q[c] = (uint8_t)((t + (t >> 8)) >> 8);
        }
    }
}

/* ...and back (RGBa → RGBA): c·255/a truncated and clamped; alpha 0 and 255 unchanged. */
static void unpremultiply(uint8_t *px, size_t npix, int ch)
{
    for (size_t p = 0; p < npix; p++) {
        uint8_t *q = px + p * (size_t)ch;
        uint32_t a = q[ch - 1];
        if (a == 0 || a == 255) continue;
        for (int c = 0; c < ch - 1; c++) {
            uint32_t v = 255u * q[c] / a;
            q[c] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

sc_status sc_image_resize(const sc_image *src, int width, int height, sc_resample filter, sc_image *dst, sc_err *err)
{
    memset(dst, 0, sizeof *dst);
    if (src->bits != 8)
        return sc_fail(err, SC_EARG, "image: resize needs 8-bit samples (convert with sc_image_to_8bit first)");
    sc_status st = image_alloc(dst, width, height, src->channels, 8, src->index != NULL, "resized image", err);
    if (st != SC_OK) return st;
    dst->palette_size = src->palette_size;
    memcpy(dst->palette, src->palette, sizeof src->palette);
    /* Pillow resizes palette images (mode P) and 1-bit images (mode 1)
     * with NEAREST whatever is asked: indices cannot be averaged, and mode
     * 1 has no grey levels between black and white. */
    dst->bilevel = src->bilevel;
    if (src->index || src->bilevel || filter == SC_RESAMPLE_NEAREST) {
        st = resize_nearest(src, dst, err);
        if (st != SC_OK) sc_image_free(dst);
        return st;
    }
    int ch = src->channels, alpha = ch == 2 || ch == 4;
    size_t in_pix = (size_t)src->width * (size_t)src->height;
    uint8_t *in = malloc(in_pix * (size_t)ch);
    uint8_t *mid = malloc((size_t)width * (size_t)src->height * (size_t)ch); /* (H, width, ch), uint8 as in Pillow */
    resample_taps th = {0}, tv = {0};
    if (!in || !mid || !taps_make(&th, src->width, width, filter) || !taps_make(&tv, src->height, height, filter)) {
        st = sc_fail(err, SC_ENOMEM, "image: out of memory for resizing");
    } else {
        memcpy(in, src->pixels, in_pix * (size_t)ch);
        if (alpha) premultiply(in, in_pix, ch);
        /* Each pass runs only when its size changes, as in Pillow. */
        const uint8_t *rows = in;
        if (width != src->width) {
            resample_rows(in, src->width, src->height, ch, &th, mid, width);
            rows = mid;
        }
        if (height != src->height) resample_cols(rows, width, ch, &tv, dst->pixels, height);
        else memcpy(dst->pixels, rows, (size_t)width * (size_t)height * (size_t)ch);
        if (alpha) unpremultiply(dst->pixels, (size_t)width * (size_t)height, ch);
    }
    taps_free(&th);
    taps_free(&tv);
    free(in);
    free(mid);
    if (st != SC_OK) sc_image_free(dst);
    return st;
}

/* ---- the pipelines ------------------------------------------------------- */

/* @book begin center-crop */
int sc_center_crop_offset(int size, int crop, sc_crop_rule rule)
{
    int d = size - crop;
    switch (rule) {
    case SC_CROP_TORCHVISION: /* int(round(d / 2.0)), Python rounds half to even */
        return d % 2 == 0 ? d / 2 : (d / 2) % 2 == 0 ? d / 2 : d / 2 + 1;
    case SC_CROP_HF_LEGACY:   /* int((d + 1) * 0.5): halves round up */
        return (d + 1) / 2;
    case SC_CROP_HF:          /* d // 2: halves round down */
        break;
    }
    return d / 2;
}
/* @book end center-crop */

static const float clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};
static const float medclip_mean = 0.5862785803043838f; /* medclip/constants.py IMG_MEAN, IMG_STD */
static const float medclip_std = 0.27950088968644304f;

/* @book begin pipelines */
sc_status sc_pipeline_named(const char *name, sc_pipeline *p, sc_err *err)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->size = 224;
    p->crop = 224;
    if (!strcmp(name, "clip") || !strcmp(name, "monet")) {
        /* OpenAI CLIP's _transform: Resize(224, BICUBIC), CenterCrop(224),
         * RGB, ToTensor, Normalize. MONET keeps the transform but was
         * trained with ImageNet statistics. */
        int monet = !strcmp(name, "monet");
        p->resample = SC_RESAMPLE_BICUBIC;
        p->crop_rule = SC_CROP_TORCHVISION;
        p->channels = 3;
        p->rescale = SC_RESCALE_DIV255;
        memcpy(p->mean, monet ? imagenet_mean : clip_mean, sizeof p->mean);
        memcpy(p->std, monet ? imagenet_std : clip_std, sizeof p->std);
    } else if (!strcmp(name, "medclip") || !strcmp(name, "medclip-eval")) {
        /* Both pad to a black square first. MedCLIPProcessor: bicubic
         * resize of the shorter side, HF centre crop (a no-op on a square),
         * numpy rescale. Evaluation datasets: torchvision Resize((224, 224))
         * (bilinear), ToTensor. One grey channel either way. */
        int eval = !strcmp(name, "medclip-eval");
        p->pad_square = 1;
        p->resize_square = eval;
        p->resample = eval ? SC_RESAMPLE_BILINEAR : SC_RESAMPLE_BICUBIC;
        p->crop = eval ? 0 : 224;
        p->crop_rule = SC_CROP_HF_LEGACY;
        p->channels = 1;
        p->rescale = eval ? SC_RESCALE_DIV255 : SC_RESCALE_MUL_F32;
        p->mean[0] = p->mean[1] = p->mean[2] = medclip_mean;
        p->std[0] = p->std[1] = p->std[2] = medclip_std;
    } else {
        return sc_fail(err, SC_EARG, "unknown pipeline '%s' (clip, monet, medclip, medclip-eval)", name);
    }
    p->rescale_factor = 1.0 / 255.0;
    return SC_OK;
}
/* @book end pipelines */

int sc_pipeline_side(const sc_pipeline *p)
{
    return p->crop ? p->crop : p->size;
}

/* Read a size field of preprocessor_config.json: a number, or an object
 * with shortest_edge (shorter side) or equal height and width. */
static int json_size(const sc_json *v, int *size, int *square)
{
    if (!v) return 1;
    if (v->type == SC_JSON_NUMBER) {
        *size = (int)v->number;
        return v->number == *size && *size > 0;
    }
    if (v->type != SC_JSON_OBJECT) return 0;
    double s = sc_json_get_number(v, "shortest_edge", -1), h = sc_json_get_number(v, "height", -1),
           w = sc_json_get_number(v, "width", -1);
    if (s > 0 && s == (int)s) {
        *size = (int)s;
        if (square) *square = 0;
        return 1;
    }
    if (h > 0 && h == w && h == (int)h) {
        *size = (int)h;
        if (square) *square = 1;
        return 1;
    }
    return 0;
}

/* image_mean / image_std: 1 or 3 numbers. */
static int json_stats(const sc_json *v, float *out)
{
    if (!v) return 1;
    if (v->type != SC_JSON_ARRAY || (v->len != 1 && v->len != 3)) return 0;
    for (int k = 0; k < 3; k++) {
        const sc_json *x = v->items[v->len == 1 ? 0 : k];
        if (x->type != SC_JSON_NUMBER) return 0;
        out[k] = (float)x->number;
    }
    return 1;
}

static sc_status pipeline_from_preprocessor_config(const char *path, sc_pipeline *p, int hf_rules, sc_err *err)
{
    sc_json_doc doc;
    sc_status st = sc_json_load(&doc, path, 1 << 20, err);
    if (st != SC_OK) return st;
    const sc_json *root = doc.root;
    int ok = root->type == SC_JSON_OBJECT;
    if (ok) {
        int crop_square = 1;
        ok = json_size(sc_json_get(root, "size"), &p->size, &p->resize_square) &&
             json_size(sc_json_get(root, "crop_size"), &p->crop, &crop_square) &&
             json_stats(sc_json_get(root, "image_mean"), p->mean) && json_stats(sc_json_get(root, "image_std"), p->std);
        if (!crop_square) p->crop = p->size; /* {"shortest_edge": n} as a crop means n x n */
    }
    if (!ok) {
        sc_json_free(&doc);
        return sc_fail(err, SC_EFORMAT, "%s: size, crop_size, image_mean or image_std is malformed", path);
    }
    if (!sc_json_get_bool(root, "do_center_crop", 1)) p->crop = 0;
    if (!sc_json_get_bool(root, "do_normalize", 1))
        for (int k = 0; k < 3; k++) p->mean[k] = 0, p->std[k] = 1;
    int resample = (int)sc_json_get_number(root, "resample", p->resample == SC_RESAMPLE_BILINEAR ? 2 : 3);
    p->rescale_factor = sc_json_get_number(root, "rescale_factor", 1.0 / 255.0);
    sc_json_free(&doc);
    /* PIL's numbering: 0 nearest, 2 bilinear, 3 bicubic (1, 4, 5: Lanczos, box, Hamming). */
    if (resample != 0 && resample != 2 && resample != 3)
        return sc_fail(err, SC_EUNSUPPORTED, "%s: resample %d is not nearest (0), bilinear (2) or bicubic (3)", path,
                       resample);
    p->resample = resample == 0 ? SC_RESAMPLE_NEAREST : resample == 2 ? SC_RESAMPLE_BILINEAR : SC_RESAMPLE_BICUBIC;
    if (!p->crop && !p->resize_square)
        return sc_fail(err, SC_EUNSUPPORTED, "%s: no centre crop after a shorter-side resize gives non-square inputs", path);
    if (hf_rules) { /* current transformers: floor centre crop, float64 rescale */
        p->crop_rule = SC_CROP_HF;
        p->rescale = SC_RESCALE_MUL_F64;
    }
    return SC_OK;
}

sc_status sc_pipeline_for_model(const char *dir, const char *name, sc_pipeline *p, sc_err *err)
{
    char path[4096];
    sc_json_doc config;
    const char *base = name;
    int image_size = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (access(path, F_OK) == 0) {
        sc_status st = sc_json_load(&config, path, 1 << 24, err);
        if (st != SC_OK) return st;
        if (!base) base = !strcmp(sc_json_get_string(config.root, "model_type", ""), "medclip") ? "medclip" : "clip";
        image_size = (int)sc_json_get_number(sc_json_get(config.root, "vision_config"), "image_size", 0);
        sc_json_free(&config);
    }
    sc_status st = sc_pipeline_named(base ? base : "clip", p, err);
    if (st != SC_OK) return st;
    if (image_size > 0 && image_size <= 4096 && image_size != p->size) { /* a model trained at another resolution */
        p->size = image_size;
        if (p->crop) p->crop = image_size;
    }
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    if (access(path, F_OK) != 0) return SC_OK;
    return pipeline_from_preprocessor_config(path, p, name == NULL, err);
}

/* MedCLIP's pad_img: the image in grey, pasted at ((S - W) / 2, (S - H) / 2)
 * on a black square of side S = max(size, W, H). */
static sc_status pad_to_square(const sc_image *src, int min_side, sc_image *dst, sc_err *err)
{
    sc_image grey;
    sc_status st = sc_image_convert(src, 1, &grey, err);
    if (st != SC_OK) return st;
    int side = min_side;
    if (src->width > side) side = src->width;
    if (src->height > side) side = src->height;
    st = image_new8(dst, side, side, 1, err);
    if (st == SC_OK) {
        memset(dst->pixels, 0, (size_t)side * (size_t)side);
        int left = (side - src->width) / 2, top = (side - src->height) / 2;
        for (int y = 0; y < src->height; y++)
            memcpy(dst->pixels + (size_t)(top + y) * (size_t)side + (size_t)left,
                   grey.pixels + (size_t)y * (size_t)src->width, (size_t)src->width);
    }
    sc_image_free(&grey);
    return st;
}

/* Replace *img by the result of a step; the step's input is released. */
static sc_status pipeline_step(sc_image *img, sc_status st, sc_image *next)
{
    if (st != SC_OK) return st;
    sc_image_free(img);
    *img = *next;
    return SC_OK;
}

sc_status sc_pipeline_u8(const sc_pipeline *p, const sc_image *src, sc_image *out, sc_err *err)
{
    sc_image cur, next;
    memset(out, 0, sizeof *out);
    sc_status st = sc_image_to_8bit(src, &cur, err);
    if (st != SC_OK) return st;
    if (p->pad_square) st = pipeline_step(&cur, pad_to_square(&cur, p->size, &next, err), &next);
    /* resize: both sides, or the shorter side to `size` and the longer in
     * proportion (truncated, as int(size * long / short)) */
    int w = p->size, h = p->size;
    if (st == SC_OK && !p->resize_square) {
        if (cur.width <= cur.height) h = (int)((double)p->size * cur.height / cur.width);
        else w = (int)((double)p->size * cur.width / cur.height);
    }
    if (st == SC_OK && (w != cur.width || h != cur.height))
        st = pipeline_step(&cur, sc_image_resize(&cur, w, h, p->resample, &next, err), &next);
    if (st == SC_OK && p->crop) {
        if (p->crop > cur.width || p->crop > cur.height)
            st = sc_fail(err, SC_EUNSUPPORTED, "pipeline %s: crop %d is larger than the resized %dx%d image", p->name,
                         p->crop, cur.width, cur.height);
        else
            st = pipeline_step(&cur,
                               sc_image_crop(&cur, sc_center_crop_offset(cur.width, p->crop, p->crop_rule),
                                             sc_center_crop_offset(cur.height, p->crop, p->crop_rule), p->crop, p->crop,
                                             &next, err),
                               &next);
    }
    if (st == SC_OK) st = pipeline_step(&cur, sc_image_convert(&cur, p->channels, &next, err), &next);
    if (st != SC_OK) {
        sc_image_free(&cur);
        return st;
    }
    *out = cur;
    return SC_OK;
}

/* @book begin normalize */
sc_status sc_pipeline_run(const sc_pipeline *p, const sc_image *src, float *out, sc_err *err)
{
    sc_image img;
    sc_status st = sc_pipeline_u8(p, src, &img, err);
    if (st != SC_OK) return st;
    const float inv255 = (float)(1.0 / 255.0);
    size_t plane = (size_t)img.width * (size_t)img.height;
    for (int c = 0; c < p->channels; c++)       /* out (C, side, side) from img (side, side, C) */
        for (size_t i = 0; i < plane; i++) {
            uint8_t u = img.pixels[i * (size_t)p->channels + (size_t)c];
            float x = p->rescale == SC_RESCALE_DIV255  ? (float)u / 255.0f                  /* ToTensor */
                      : p->rescale == SC_RESCALE_MUL_F32 ? (float)u * inv255                  /* numpy float32 */
                                                         : (float)((double)u * p->rescale_factor); /* numpy float64 */
            out[(size_t)c * plane + i] = (x - p->mean[c]) / p->std[c];
        }
    sc_image_free(&img);
    return SC_OK;
}
/* @book end normalize */

/* ======================================================================== */
/* 11. CLIP BPE tokenizer                                                    */
/* ======================================================================== */
/*
 * Sections 11 and 12 turn prompt text into token ids exactly as the models'
 * own tokenizers do: OpenAI's `clip.tokenize` (CLIP, MONET) here, Hugging
 * Face's BertTokenizerFast (MedCLIP's Bio_ClinicalBERT) in section 12. Both
 * share the Unicode tables, the UTF-8 reader, the vocabulary hash table and
 * the framing of a row ([begin] text [end] padding) defined first.
 *
 *   11a. Unicode character classes, case and decomposition (generated)
 *   11b. UTF-8 and code point buffers
 *   11c. Vocabularies: token strings and a string → id hash table
 *   11d. The tokenizer object; framing a row (specials, truncation, padding)
 *   11e. HTML unescape (Python's html.unescape)
 *   11f. OpenAI's clean-up, lower-casing and pre-tokenisation
 *   11g. Byte-level BPE with a word cache
 *   11h. Loading merges (merges.txt, bpe_simple_vocab_16e6.txt.gz) and vocab.json
 *   11i. Learning a small vocabulary from a corpus (the tiny VLM's)
 *
 * Text is validated as UTF-8 first: Python strings cannot hold invalid
 * UTF-8, so there is no reference behaviour to imitate and we refuse it.
 */

/* ---- 11a. Unicode character classes, case and decomposition ------------- */

/* Class flags of a code point, one byte per run of the `uclass` table. */
enum {
    UC_L = 1,         /* letter, general category L*: regex \p{L} */
    UC_N = 2,         /* number, N*: regex \p{N} */
    UC_WS = 4,        /* White_Space: regex \s, Rust char::is_whitespace */
    UC_C = 8,         /* control, format, surrogate, private use: Cc Cf Cs Co (BERT
                         drops these; unassigned Cn stay, as in Hugging Face) */
    UC_P = 16,        /* punctuation, P* */
    UC_MN = 32,       /* nonspacing mark, Mn (BERT's accent stripping drops these) */
    UC_CASED = 64,    /* cased and not case-ignorable (Python's final-sigma rule) */
    UC_CI = 128       /* case-ignorable (skipped by the final-sigma rule) */
};

/* BEGIN GENERATED: data/gen_unicode_tables.py */
/* Generated by data/gen_unicode_tables.py from Python 3.11.7, unicodedata 14.0.0.
 * Do not edit by hand; rerun the script (see its docstring). */
static const uint32_t uclass[2344] = { /* start << 8 | UC_* flags */
    0x00000008, 0x0000090C, 0x00000E08, 0x00002004, 0x00002110, 0x00002400, 0x00002510, 0x00002790, 0x00002810,
    0x00002B00, 0x00002C10, 0x00002E90, 0x00002F10, 0x00003002, 0x00003A90, 0x00003B10, 0x00003C00, 0x00003F10,
    0x00004141, 0x00005B10, 0x00005E80, 0x00005F10, 0x00006080, 0x00006141, 0x00007B10, 0x00007C00, 0x00007D10,
    0x00007E00, 0x00007F08, 0x0000850C, 0x00008608, 0x0000A004, 0x0000A110, 0x0000A200, 0x0000A710, 0x0000A880,
    0x0000A900, 0x0000AA41, 0x0000AB10, 0x0000AC00, 0x0000AD88, 0x0000AE00, 0x0000AF80, 0x0000B000, 0x0000B202,
    0x0000B480, 0x0000B541, 0x0000B610, 0x0000B790, 0x0000B880, 0x0000B902, 0x0000BA41, 0x0000BB10, 0x0000BC02,
    0x0000BF10, 0x0000C041, 0x0000D700, 0x0000D841, 0x0000F700, 0x0000F841, 0x0001BB01, 0x0001BC41, 0x0001C001,
    0x0001C441, 0x00029401, 0x00029541, 0x0002B081, 0x0002C280, 0x0002C681, 0x0002D280, 0x0002E081, 0x0002E580,
    0x0002EC81, 0x0002ED80, 0x0002EE81, 0x0002EF80, 0x000300A0, 0x00037041, 0x00037481, 0x00037580, 0x00037641,
    0x00037800, 0x00037A81, 0x00037B41, 0x00037E10, 0x00037F41, 0x00038000, 0x00038480, 0x00038641, 0x00038790,
    0x00038841, 0x00038B00, 0x00038C41, 0x00038D00, 0x00038E41, 0x0003A200, 0x0003A341, 0x0003F600, 0x0003F741,
    0x00048200, 0x000483A0, 0x00048880, 0x00048A41, 0x00053000, 0x00053141, 0x00055700, 0x00055981, 0x00055A10,
    0x00055F90, 0x00056041, 0x00058910, 0x00058B00, 0x000591A0, 0x0005BE10, 0x0005BFA0, 0x0005C010, 0x0005C1A0,
    0x0005C310, 0x0005C4A0, 0x0005C610, 0x0005C7A0, 0x0005C800, 0x0005D001, 0x0005EB00, 0x0005EF01, 0x0005F310,
    0x0005F490, 0x0005F500, 0x00060088, 0x00060600, 0x00060910, 0x00060B00, 0x00060C10, 0x00060E00, 0x000610A0,
    0x00061B10, 0x00061C88, 0x00061D10, 0x00062001, 0x00064081, 0x00064101, 0x00064BA0, 0x00066002, 0x00066A10,
    0x00066E01, 0x000670A0, 0x00067101, 0x0006D410, 0x0006D501, 0x0006D6A0, 0x0006DD88, 0x0006DE00, 0x0006DFA0,
    0x0006E581, 0x0006E7A0, 0x0006E900, 0x0006EAA0, 0x0006EE01, 0x0006F002, 0x0006FA01, 0x0006FD00, 0x0006FF01,
    0x00070010, 0x00070E00, 0x00070F88, 0x00071001, 0x000711A0, 0x00071201, 0x000730A0, 0x00074B00, 0x00074D01,
    0x0007A6A0, 0x0007B101, 0x0007B200, 0x0007C002, 0x0007CA01, 0x0007EBA0, 0x0007F481, 0x0007F600, 0x0007F710,
    0x0007FA81, 0x0007FB00, 0x0007FDA0, 0x0007FE00, 0x00080001, 0x000816A0, 0x00081A81, 0x00081BA0, 0x00082481,
    0x000825A0, 0x00082881, 0x000829A0, 0x00082E00, 0x00083010, 0x00083F00, 0x00084001, 0x000859A0, 0x00085C00,
    0x00085E10, 0x00085F00, 0x00086001, 0x00086B00, 0x00087001, 0x00088880, 0x00088901, 0x00088F00, 0x00089088,
    0x00089200, 0x000898A0, 0x0008A001, 0x0008C981, 0x0008CAA0, 0x0008E288, 0x0008E3A0, 0x00090300, 0x00090401,
    0x00093AA0, 0x00093B00, 0x00093CA0, 0x00093D01, 0x00093E00, 0x000941A0, 0x00094900, 0x00094DA0, 0x00094E00,
    0x00095001, 0x000951A0, 0x00095801, 0x000962A0, 0x00096410, 0x00096602, 0x00097010, 0x00097181, 0x00097201,
    0x000981A0, 0x00098200, 0x00098501, 0x00098D00, 0x00098F01, 0x00099100, 0x00099301, 0x0009A900, 0x0009AA01,
    0x0009B100, 0x0009B201, 0x0009B300, 0x0009B601, 0x0009BA00, 0x0009BCA0, 0x0009BD01, 0x0009BE00, 0x0009C1A0,
    0x0009C500, 0x0009CDA0, 0x0009CE01, 0x0009CF00, 0x0009DC01, 0x0009DE00, 0x0009DF01, 0x0009E2A0, 0x0009E400,
    0x0009E602, 0x0009F001, 0x0009F200, 0x0009F402, 0x0009FA00, 0x0009FC01, 0x0009FD10, 0x0009FEA0, 0x0009FF00,
    0x000A01A0, 0x000A0300, 0x000A0501, 0x000A0B00, 0x000A0F01, 0x000A1100, 0x000A1301, 0x000A2900, 0x000A2A01,
    0x000A3100, 0x000A3201, 0x000A3400, 0x000A3501, 0x000A3700, 0x000A3801, 0x000A3A00, 0x000A3CA0, 0x000A3D00,
    0x000A41A0, 0x000A4300, 0x000A47A0, 0x000A4900, 0x000A4BA0, 0x000A4E00, 0x000A51A0, 0x000A5200, 0x000A5901,
    0x000A5D00, 0x000A5E01, 0x000A5F00, 0x000A6602, 0x000A70A0, 0x000A7201, 0x000A75A0, 0x000A7610, 0x000A7700,
    0x000A81A0, 0x000A8300, 0x000A8501, 0x000A8E00, 0x000A8F01, 0x000A9200, 0x000A9301, 0x000AA900, 0x000AAA01,
    0x000AB100, 0x000AB201, 0x000AB400, 0x000AB501, 0x000ABA00, 0x000ABCA0, 0x000ABD01, 0x000ABE00, 0x000AC1A0,
    0x000AC600, 0x000AC7A0, 0x000AC900, 0x000ACDA0, 0x000ACE00, 0x000AD001, 0x000AD100, 0x000AE001, 0x000AE2A0,
    0x000AE400, 0x000AE602, 0x000AF010, 0x000AF100, 0x000AF901, 0x000AFAA0, 0x000B0000, 0x000B01A0, 0x000B0200,
    0x000B0501, 0x000B0D00, 0x000B0F01, 0x000B1100, 0x000B1301, 0x000B2900, 0x000B2A01, 0x000B3100, 0x000B3201,
    0x000B3400, 0x000B3501, 0x000B3A00, 0x000B3CA0, 0x000B3D01, 0x000B3E00, 0x000B3FA0, 0x000B4000, 0x000B41A0,
    0x000B4500, 0x000B4DA0, 0x000B4E00, 0x000B55A0, 0x000B5700, 0x000B5C01, 0x000B5E00, 0x000B5F01, 0x000B62A0,
    0x000B6400, 0x000B6602, 0x000B7000, 0x000B7101, 0x000B7202, 0x000B7800, 0x000B82A0, 0x000B8301, 0x000B8400,
    0x000B8501, 0x000B8B00, 0x000B8E01, 0x000B9100, 0x000B9201, 0x000B9600, 0x000B9901, 0x000B9B00, 0x000B9C01,
    0x000B9D00, 0x000B9E01, 0x000BA000, 0x000BA301, 0x000BA500, 0x000BA801, 0x000BAB00, 0x000BAE01, 0x000BBA00,
    0x000BC0A0, 0x000BC100, 0x000BCDA0, 0x000BCE00, 0x000BD001, 0x000BD100, 0x000BE602, 0x000BF300, 0x000C00A0,
    0x000C0100, 0x000C04A0, 0x000C0501, 0x000C0D00, 0x000C0E01, 0x000C1100, 0x000C1201, 0x000C2900, 0x000C2A01,
    0x000C3A00, 0x000C3CA0, 0x000C3D01, 0x000C3EA0, 0x000C4100, 0x000C46A0, 0x000C4900, 0x000C4AA0, 0x000C4E00,
    0x000C55A0, 0x000C5700, 0x000C5801, 0x000C5B00, 0x000C5D01, 0x000C5E00, 0x000C6001, 0x000C62A0, 0x000C6400,
    0x000C6602, 0x000C7000, 0x000C7710, 0x000C7802, 0x000C7F00, 0x000C8001, 0x000C81A0, 0x000C8200, 0x000C8410,
    0x000C8501, 0x000C8D00, 0x000C8E01, 0x000C9100, 0x000C9201, 0x000CA900, 0x000CAA01, 0x000CB400, 0x000CB501,
    0x000CBA00, 0x000CBCA0, 0x000CBD01, 0x000CBE00, 0x000CBFA0, 0x000CC000, 0x000CC6A0, 0x000CC700, 0x000CCCA0,
    0x000CCE00, 0x000CDD01, 0x000CDF00, 0x000CE001, 0x000CE2A0, 0x000CE400, 0x000CE602, 0x000CF000, 0x000CF101,
    0x000CF300, 0x000D00A0, 0x000D0200, 0x000D0401, 0x000D0D00, 0x000D0E01, 0x000D1100, 0x000D1201, 0x000D3BA0,
    0x000D3D01, 0x000D3E00, 0x000D41A0, 0x000D4500, 0x000D4DA0, 0x000D4E01, 0x000D4F00, 0x000D5401, 0x000D5700,
    0x000D5802, 0x000D5F01, 0x000D62A0, 0x000D6400, 0x000D6602, 0x000D7900, 0x000D7A01, 0x000D8000, 0x000D81A0,
    0x000D8200, 0x000D8501, 0x000D9700, 0x000D9A01, 0x000DB200, 0x000DB301, 0x000DBC00, 0x000DBD01, 0x000DBE00,
    0x000DC001, 0x000DC700, 0x000DCAA0, 0x000DCB00, 0x000DD2A0, 0x000DD500, 0x000DD6A0, 0x000DD700, 0x000DE602,
    0x000DF000, 0x000DF410, 0x000DF500, 0x000E0101, 0x000E31A0, 0x000E3201, 0x000E34A0, 0x000E3B00, 0x000E4001,
    0x000E4681, 0x000E47A0, 0x000E4F10, 0x000E5002, 0x000E5A10, 0x000E5C00, 0x000E8101, 0x000E8300, 0x000E8401,
    0x000E8500, 0x000E8601, 0x000E8B00, 0x000E8C01, 0x000EA400, 0x000EA501, 0x000EA600, 0x000EA701, 0x000EB1A0,
    0x000EB201, 0x000EB4A0, 0x000EBD01, 0x000EBE00, 0x000EC001, 0x000EC500, 0x000EC681, 0x000EC700, 0x000EC8A0,
    0x000ECE00, 0x000ED002, 0x000EDA00, 0x000EDC01, 0x000EE000, 0x000F0001, 0x000F0100, 0x000F0410, 0x000F1300,
    0x000F1410, 0x000F1500, 0x000F18A0, 0x000F1A00, 0x000F2002, 0x000F3400, 0x000F35A0, 0x000F3600, 0x000F37A0,
    0x000F3800, 0x000F39A0, 0x000F3A10, 0x000F3E00, 0x000F4001, 0x000F4800, 0x000F4901, 0x000F6D00, 0x000F71A0,
    0x000F7F00, 0x000F80A0, 0x000F8510, 0x000F86A0, 0x000F8801, 0x000F8DA0, 0x000F9800, 0x000F99A0, 0x000FBD00,
    0x000FC6A0, 0x000FC700, 0x000FD010, 0x000FD500, 0x000FD910, 0x000FDB00, 0x00100001, 0x00102B00, 0x00102DA0,
    0x00103100, 0x001032A0, 0x00103800, 0x001039A0, 0x00103B00, 0x00103DA0, 0x00103F01, 0x00104002, 0x00104A10,
    0x00105001, 0x00105600, 0x001058A0, 0x00105A01, 0x00105EA0, 0x00106101, 0x00106200, 0x00106501, 0x00106700,
    0x00106E01, 0x001071A0, 0x00107501, 0x001082A0, 0x00108300, 0x001085A0, 0x00108700, 0x00108DA0, 0x00108E01,
    0x00108F00, 0x00109002, 0x00109A00, 0x00109DA0, 0x00109E00, 0x0010A041, 0x0010C600, 0x0010C741, 0x0010C800,
    0x0010CD41, 0x0010CE00, 0x0010D041, 0x0010FB10, 0x0010FC81, 0x0010FD41, 0x00110001, 0x00124900, 0x00124A01,
    0x00124E00, 0x00125001, 0x00125700, 0x00125801, 0x00125900, 0x00125A01, 0x00125E00, 0x00126001, 0x00128900,
    0x00128A01, 0x00128E00, 0x00129001, 0x0012B100, 0x0012B201, 0x0012B600, 0x0012B801, 0x0012BF00, 0x0012C001,
    0x0012C100, 0x0012C201, 0x0012C600, 0x0012C801, 0x0012D700, 0x0012D801, 0x00131100, 0x00131201, 0x00131600,
    0x00131801, 0x00135B00, 0x00135DA0, 0x00136010, 0x00136902, 0x00137D00, 0x00138001, 0x00139000, 0x0013A041,
    0x0013F600, 0x0013F841, 0x0013FE00, 0x00140010, 0x00140101, 0x00166D00, 0x00166E10, 0x00166F01, 0x00168004,
    0x00168101, 0x00169B10, 0x00169D00, 0x0016A001, 0x0016EB10, 0x0016EE02, 0x0016F101, 0x0016F900, 0x00170001,
    0x001712A0, 0x00171500, 0x00171F01, 0x001732A0, 0x00173400, 0x00173510, 0x00173700, 0x00174001, 0x001752A0,
    0x00175400, 0x00176001, 0x00176D00, 0x00176E01, 0x00177100, 0x001772A0, 0x00177400, 0x00178001, 0x0017B4A0,
    0x0017B600, 0x0017B7A0, 0x0017BE00, 0x0017C6A0, 0x0017C700, 0x0017C9A0, 0x0017D410, 0x0017D781, 0x0017D810,
    0x0017DB00, 0x0017DC01, 0x0017DDA0, 0x0017DE00, 0x0017E002, 0x0017EA00, 0x0017F002, 0x0017FA00, 0x00180010,
    0x00180BA0, 0x00180E88, 0x00180FA0, 0x00181002, 0x00181A00, 0x00182001, 0x00184381, 0x00184401, 0x00187900,
    0x00188001, 0x001885A0, 0x00188701, 0x0018A9A0, 0x0018AA01, 0x0018AB00, 0x0018B001, 0x0018F600, 0x00190001,
    0x00191F00, 0x001920A0, 0x00192300, 0x001927A0, 0x00192900, 0x001932A0, 0x00193300, 0x001939A0, 0x00193C00,
    0x00194410, 0x00194602, 0x00195001, 0x00196E00, 0x00197001, 0x00197500, 0x00198001, 0x0019AC00, 0x0019B001,
    0x0019CA00, 0x0019D002, 0x0019DB00, 0x001A0001, 0x001A17A0, 0x001A1900, 0x001A1BA0, 0x001A1C00, 0x001A1E10,
    0x001A2001, 0x001A5500, 0x001A56A0, 0x001A5700, 0x001A58A0, 0x001A5F00, 0x001A60A0, 0x001A6100, 0x001A62A0,
    0x001A6300, 0x001A65A0, 0x001A6D00, 0x001A73A0, 0x001A7D00, 0x001A7FA0, 0x001A8002, 0x001A8A00, 0x001A9002,
    0x001A9A00, 0x001AA010, 0x001AA781, 0x001AA810, 0x001AAE00, 0x001AB0A0, 0x001ABE80, 0x001ABFA0, 0x001ACF00,
    0x001B00A0, 0x001B0400, 0x001B0501, 0x001B34A0, 0x001B3500, 0x001B36A0, 0x001B3B00, 0x001B3CA0, 0x001B3D00,
    0x001B42A0, 0x001B4300, 0x001B4501, 0x001B4D00, 0x001B5002, 0x001B5A10, 0x001B6100, 0x001B6BA0, 0x001B7400,
    0x001B7D10, 0x001B7F00, 0x001B80A0, 0x001B8200, 0x001B8301, 0x001BA100, 0x001BA2A0, 0x001BA600, 0x001BA8A0,
    0x001BAA00, 0x001BABA0, 0x001BAE01, 0x001BB002, 0x001BBA01, 0x001BE6A0, 0x001BE700, 0x001BE8A0, 0x001BEA00,
    0x001BEDA0, 0x001BEE00, 0x001BEFA0, 0x001BF200, 0x001BFC10, 0x001C0001, 0x001C2400, 0x001C2CA0, 0x001C3400,
    0x001C36A0, 0x001C3800, 0x001C3B10, 0x001C4002, 0x001C4A00, 0x001C4D01, 0x001C5002, 0x001C5A01, 0x001C7881,
    0x001C7E10, 0x001C8041, 0x001C8900, 0x001C9041, 0x001CBB00, 0x001CBD41, 0x001CC010, 0x001CC800, 0x001CD0A0,
    0x001CD310, 0x001CD4A0, 0x001CE100, 0x001CE2A0, 0x001CE901, 0x001CEDA0, 0x001CEE01, 0x001CF4A0, 0x001CF501,
    0x001CF700, 0x001CF8A0, 0x001CFA01, 0x001CFB00, 0x001D0041, 0x001D2C81, 0x001D6B41, 0x001D7881, 0x001D7941,
    0x001D9B81, 0x001DC0A0, 0x001E0041, 0x001F1600, 0x001F1841, 0x001F1E00, 0x001F2041, 0x001F4600, 0x001F4841,
    0x001F4E00, 0x001F5041, 0x001F5800, 0x001F5941, 0x001F5A00, 0x001F5B41, 0x001F5C00, 0x001F5D41, 0x001F5E00,
    0x001F5F41, 0x001F7E00, 0x001F8041, 0x001FB500, 0x001FB641, 0x001FBD80, 0x001FBE41, 0x001FBF80, 0x001FC241,
    0x001FC500, 0x001FC641, 0x001FCD80, 0x001FD041, 0x001FD400, 0x001FD641, 0x001FDC00, 0x001FDD80, 0x001FE041,
    0x001FED80, 0x001FF000, 0x001FF241, 0x001FF500, 0x001FF641, 0x001FFD80, 0x001FFF00, 0x00200004, 0x00200B88,
    0x00201010, 0x00201890, 0x00201A10, 0x00202490, 0x00202510, 0x00202790, 0x00202804, 0x00202A88, 0x00202F04,
    0x00203010, 0x00204400, 0x00204510, 0x00205200, 0x00205310, 0x00205F04, 0x00206088, 0x00206500, 0x00206688,
    0x00207002, 0x00207181, 0x00207200, 0x00207402, 0x00207A00, 0x00207D10, 0x00207F81, 0x00208002, 0x00208A00,
    0x00208D10, 0x00208F00, 0x00209081, 0x00209D00, 0x0020D0A0, 0x0020DD80, 0x0020E1A0, 0x0020E280, 0x0020E5A0,
    0x0020F100, 0x00210241, 0x00210300, 0x00210741, 0x00210800, 0x00210A41, 0x00211400, 0x00211541, 0x00211600,
    0x00211941, 0x00211E00, 0x00212441, 0x00212500, 0x00212641, 0x00212700, 0x00212841, 0x00212900, 0x00212A41,
    0x00212E00, 0x00212F41, 0x00213501, 0x00213941, 0x00213A00, 0x00213C41, 0x00214000, 0x00214541, 0x00214A00,
    0x00214E41, 0x00214F00, 0x00215002, 0x00216042, 0x00218002, 0x00218341, 0x00218502, 0x00218A00, 0x00230810,
    0x00230C00, 0x00232910, 0x00232B00, 0x00246002, 0x00249C00, 0x0024B640, 0x0024EA02, 0x00250000, 0x00276810,
    0x00277602, 0x00279400, 0x0027C510, 0x0027C700, 0x0027E610, 0x0027F000, 0x00298310, 0x00299900, 0x0029D810,
    0x0029DC00, 0x0029FC10, 0x0029FE00, 0x002C0041, 0x002C7C81, 0x002C7E41, 0x002CE500, 0x002CEB41, 0x002CEFA0,
    0x002CF241, 0x002CF400, 0x002CF910, 0x002CFD02, 0x002CFE10, 0x002D0041, 0x002D2600, 0x002D2741, 0x002D2800,
    0x002D2D41, 0x002D2E00, 0x002D3001, 0x002D6800, 0x002D6F81, 0x002D7010, 0x002D7100, 0x002D7FA0, 0x002D8001,
    0x002D9700, 0x002DA001, 0x002DA700, 0x002DA801, 0x002DAF00, 0x002DB001, 0x002DB700, 0x002DB801, 0x002DBF00,
    0x002DC001, 0x002DC700, 0x002DC801, 0x002DCF00, 0x002DD001, 0x002DD700, 0x002DD801, 0x002DDF00, 0x002DE0A0,
    0x002E0010, 0x002E2F81, 0x002E3010, 0x002E5000, 0x002E5210, 0x002E5E00, 0x00300004, 0x00300110, 0x00300400,
    0x00300581, 0x00300601, 0x00300702, 0x00300810, 0x00301200, 0x00301410, 0x00302000, 0x00302102, 0x00302AA0,
    0x00302E00, 0x00303010, 0x00303181, 0x00303600, 0x00303802, 0x00303B81, 0x00303C01, 0x00303D10, 0x00303E00,
    0x00304101, 0x00309700, 0x003099A0, 0x00309B80, 0x00309D81, 0x00309F01, 0x0030A010, 0x0030A101, 0x0030FB10,
    0x0030FC81, 0x0030FF01, 0x00310000, 0x00310501, 0x00313000, 0x00313101, 0x00318F00, 0x00319202, 0x00319600,
    0x0031A001, 0x0031C000, 0x0031F001, 0x00320000, 0x00322002, 0x00322A00, 0x00324802, 0x00325000, 0x00325102,
    0x00326000, 0x00328002, 0x00328A00, 0x0032B102, 0x0032C000, 0x00340001, 0x004DC000, 0x004E0001, 0x00A01581,
    0x00A01601, 0x00A48D00, 0x00A4D001, 0x00A4F881, 0x00A4FE10, 0x00A50001, 0x00A60C81, 0x00A60D10, 0x00A61001,
    0x00A62002, 0x00A62A01, 0x00A62C00, 0x00A64041, 0x00A66E01, 0x00A66FA0, 0x00A67080, 0x00A67310, 0x00A674A0,
    0x00A67E10, 0x00A67F81, 0x00A68041, 0x00A69C81, 0x00A69EA0, 0x00A6A001, 0x00A6E602, 0x00A6F0A0, 0x00A6F210,
    0x00A6F800, 0x00A70080, 0x00A71781, 0x00A72080, 0x00A72241, 0x00A77081, 0x00A77141, 0x00A78881, 0x00A78980,
    0x00A78B41, 0x00A78F01, 0x00A79041, 0x00A7CB00, 0x00A7D041, 0x00A7D200, 0x00A7D341, 0x00A7D400, 0x00A7D541,
    0x00A7DA00, 0x00A7F281, 0x00A7F541, 0x00A7F701, 0x00A7F881, 0x00A7FA41, 0x00A7FB01, 0x00A802A0, 0x00A80301,
    0x00A806A0, 0x00A80701, 0x00A80BA0, 0x00A80C01, 0x00A82300, 0x00A825A0, 0x00A82700, 0x00A82CA0, 0x00A82D00,
    0x00A83002, 0x00A83600, 0x00A84001, 0x00A87410, 0x00A87800, 0x00A88201, 0x00A8B400, 0x00A8C4A0, 0x00A8C600,
    0x00A8CE10, 0x00A8D002, 0x00A8DA00, 0x00A8E0A0, 0x00A8F201, 0x00A8F810, 0x00A8FB01, 0x00A8FC10, 0x00A8FD01,
    0x00A8FFA0, 0x00A90002, 0x00A90A01, 0x00A926A0, 0x00A92E10, 0x00A93001, 0x00A947A0, 0x00A95200, 0x00A95F10,
    0x00A96001, 0x00A97D00, 0x00A980A0, 0x00A98300, 0x00A98401, 0x00A9B3A0, 0x00A9B400, 0x00A9B6A0, 0x00A9BA00,
    0x00A9BCA0, 0x00A9BE00, 0x00A9C110, 0x00A9CE00, 0x00A9CF81, 0x00A9D002, 0x00A9DA00, 0x00A9DE10, 0x00A9E001,
    0x00A9E5A0, 0x00A9E681, 0x00A9E701, 0x00A9F002, 0x00A9FA01, 0x00A9FF00, 0x00AA0001, 0x00AA29A0, 0x00AA2F00,
    0x00AA31A0, 0x00AA3300, 0x00AA35A0, 0x00AA3700, 0x00AA4001, 0x00AA43A0, 0x00AA4401, 0x00AA4CA0, 0x00AA4D00,
    0x00AA5002, 0x00AA5A00, 0x00AA5C10, 0x00AA6001, 0x00AA7081, 0x00AA7101, 0x00AA7700, 0x00AA7A01, 0x00AA7B00,
    0x00AA7CA0, 0x00AA7D00, 0x00AA7E01, 0x00AAB0A0, 0x00AAB101, 0x00AAB2A0, 0x00AAB501, 0x00AAB7A0, 0x00AAB901,
    0x00AABEA0, 0x00AAC001, 0x00AAC1A0, 0x00AAC201, 0x00AAC300, 0x00AADB01, 0x00AADD81, 0x00AADE10, 0x00AAE001,
    0x00AAEB00, 0x00AAECA0, 0x00AAEE00, 0x00AAF010, 0x00AAF201, 0x00AAF381, 0x00AAF500, 0x00AAF6A0, 0x00AAF700,
    0x00AB0101, 0x00AB0700, 0x00AB0901, 0x00AB0F00, 0x00AB1101, 0x00AB1700, 0x00AB2001, 0x00AB2700, 0x00AB2801,
    0x00AB2F00, 0x00AB3041, 0x00AB5B80, 0x00AB5C81, 0x00AB6041, 0x00AB6981, 0x00AB6A80, 0x00AB6C00, 0x00AB7041,
    0x00ABC001, 0x00ABE300, 0x00ABE5A0, 0x00ABE600, 0x00ABE8A0, 0x00ABE900, 0x00ABEB10, 0x00ABEC00, 0x00ABEDA0,
    0x00ABEE00, 0x00ABF002, 0x00ABFA00, 0x00AC0001, 0x00D7A400, 0x00D7B001, 0x00D7C700, 0x00D7CB01, 0x00D7FC00,
    0x00D80008, 0x00F90001, 0x00FA6E00, 0x00FA7001, 0x00FADA00, 0x00FB0041, 0x00FB0700, 0x00FB1341, 0x00FB1800,
    0x00FB1D01, 0x00FB1EA0, 0x00FB1F01, 0x00FB2900, 0x00FB2A01, 0x00FB3700, 0x00FB3801, 0x00FB3D00, 0x00FB3E01,
    0x00FB3F00, 0x00FB4001, 0x00FB4200, 0x00FB4301, 0x00FB4500, 0x00FB4601, 0x00FBB280, 0x00FBC300, 0x00FBD301,
    0x00FD3E10, 0x00FD4000, 0x00FD5001, 0x00FD9000, 0x00FD9201, 0x00FDC800, 0x00FDF001, 0x00FDFC00, 0x00FE00A0,
    0x00FE1010, 0x00FE1390, 0x00FE1410, 0x00FE1A00, 0x00FE20A0, 0x00FE3010, 0x00FE5290, 0x00FE5300, 0x00FE5410,
    0x00FE5590, 0x00FE5610, 0x00FE6200, 0x00FE6310, 0x00FE6400, 0x00FE6810, 0x00FE6900, 0x00FE6A10, 0x00FE6C00,
    0x00FE7001, 0x00FE7500, 0x00FE7601, 0x00FEFD00, 0x00FEFF88, 0x00FF0000, 0x00FF0110, 0x00FF0400, 0x00FF0510,
    0x00FF0790, 0x00FF0810, 0x00FF0B00, 0x00FF0C10, 0x00FF0E90, 0x00FF0F10, 0x00FF1002, 0x00FF1A90, 0x00FF1B10,
    0x00FF1C00, 0x00FF1F10, 0x00FF2141, 0x00FF3B10, 0x00FF3E80, 0x00FF3F10, 0x00FF4080, 0x00FF4141, 0x00FF5B10,
    0x00FF5C00, 0x00FF5D10, 0x00FF5E00, 0x00FF5F10, 0x00FF6601, 0x00FF7081, 0x00FF7101, 0x00FF9E81, 0x00FFA001,
    0x00FFBF00, 0x00FFC201, 0x00FFC800, 0x00FFCA01, 0x00FFD000, 0x00FFD201, 0x00FFD800, 0x00FFDA01, 0x00FFDD00,
    0x00FFE380, 0x00FFE400, 0x00FFF988, 0x00FFFC00, 0x01000001, 0x01000C00, 0x01000D01, 0x01002700, 0x01002801,
    0x01003B00, 0x01003C01, 0x01003E00, 0x01003F01, 0x01004E00, 0x01005001, 0x01005E00, 0x01008001, 0x0100FB00,
    0x01010010, 0x01010300, 0x01010702, 0x01013400, 0x01014002, 0x01017900, 0x01018A02, 0x01018C00, 0x0101FDA0,
    0x0101FE00, 0x01028001, 0x01029D00, 0x0102A001, 0x0102D100, 0x0102E0A0, 0x0102E102, 0x0102FC00, 0x01030001,
    0x01032002, 0x01032400, 0x01032D01, 0x01034102, 0x01034201, 0x01034A02, 0x01034B00, 0x01035001, 0x010376A0,
    0x01037B00, 0x01038001, 0x01039E00, 0x01039F10, 0x0103A001, 0x0103C400, 0x0103C801, 0x0103D010, 0x0103D102,
    0x0103D600, 0x01040041, 0x01045001, 0x01049E00, 0x0104A002, 0x0104AA00, 0x0104B041, 0x0104D400, 0x0104D841,
    0x0104FC00, 0x01050001, 0x01052800, 0x01053001, 0x01056400, 0x01056F10, 0x01057041, 0x01057B00, 0x01057C41,
    0x01058B00, 0x01058C41, 0x01059300, 0x01059441, 0x01059600, 0x01059741, 0x0105A200, 0x0105A341, 0x0105B200,
    0x0105B341, 0x0105BA00, 0x0105BB41, 0x0105BD00, 0x01060001, 0x01073700, 0x01074001, 0x01075600, 0x01076001,
    0x01076800, 0x01078081, 0x01078600, 0x01078781, 0x0107B100, 0x0107B281, 0x0107BB00, 0x01080001, 0x01080600,
    0x01080801, 0x01080900, 0x01080A01, 0x01083600, 0x01083701, 0x01083900, 0x01083C01, 0x01083D00, 0x01083F01,
    0x01085600, 0x01085710, 0x01085802, 0x01086001, 0x01087700, 0x01087902, 0x01088001, 0x01089F00, 0x0108A702,
    0x0108B000, 0x0108E001, 0x0108F300, 0x0108F401, 0x0108F600, 0x0108FB02, 0x01090001, 0x01091602, 0x01091C00,
    0x01091F10, 0x01092001, 0x01093A00, 0x01093F10, 0x01094000, 0x01098001, 0x0109B800, 0x0109BC02, 0x0109BE01,
    0x0109C002, 0x0109D000, 0x0109D202, 0x010A0001, 0x010A01A0, 0x010A0400, 0x010A05A0, 0x010A0700, 0x010A0CA0,
    0x010A1001, 0x010A1400, 0x010A1501, 0x010A1800, 0x010A1901, 0x010A3600, 0x010A38A0, 0x010A3B00, 0x010A3FA0,
    0x010A4002, 0x010A4900, 0x010A5010, 0x010A5900, 0x010A6001, 0x010A7D02, 0x010A7F10, 0x010A8001, 0x010A9D02,
    0x010AA000, 0x010AC001, 0x010AC800, 0x010AC901, 0x010AE5A0, 0x010AE700, 0x010AEB02, 0x010AF010, 0x010AF700,
    0x010B0001, 0x010B3600, 0x010B3910, 0x010B4001, 0x010B5600, 0x010B5802, 0x010B6001, 0x010B7300, 0x010B7802,
    0x010B8001, 0x010B9200, 0x010B9910, 0x010B9D00, 0x010BA902, 0x010BB000, 0x010C0001, 0x010C4900, 0x010C8041,
    0x010CB300, 0x010CC041, 0x010CF300, 0x010CFA02, 0x010D0001, 0x010D24A0, 0x010D2800, 0x010D3002, 0x010D3A00,
    0x010E6002, 0x010E7F00, 0x010E8001, 0x010EAA00, 0x010EABA0, 0x010EAD10, 0x010EAE00, 0x010EB001, 0x010EB200,
    0x010F0001, 0x010F1D02, 0x010F2701, 0x010F2800, 0x010F3001, 0x010F46A0, 0x010F5102, 0x010F5510, 0x010F5A00,
    0x010F7001, 0x010F82A0, 0x010F8610, 0x010F8A00, 0x010FB001, 0x010FC502, 0x010FCC00, 0x010FE001, 0x010FF700,
    0x011001A0, 0x01100200, 0x01100301, 0x011038A0, 0x01104710, 0x01104E00, 0x01105202, 0x011070A0, 0x01107101,
    0x011073A0, 0x01107501, 0x01107600, 0x01107FA0, 0x01108200, 0x01108301, 0x0110B000, 0x0110B3A0, 0x0110B700,
    0x0110B9A0, 0x0110BB10, 0x0110BD88, 0x0110BE10, 0x0110C2A0, 0x0110C300, 0x0110CD88, 0x0110CE00, 0x0110D001,
    0x0110E900, 0x0110F002, 0x0110FA00, 0x011100A0, 0x01110301, 0x011127A0, 0x01112C00, 0x01112DA0, 0x01113500,
    0x01113602, 0x01114010, 0x01114401, 0x01114500, 0x01114701, 0x01114800, 0x01115001, 0x011173A0, 0x01117410,
    0x01117601, 0x01117700, 0x011180A0, 0x01118200, 0x01118301, 0x0111B300, 0x0111B6A0, 0x0111BF00, 0x0111C101,
    0x0111C510, 0x0111C9A0, 0x0111CD10, 0x0111CE00, 0x0111CFA0, 0x0111D002, 0x0111DA01, 0x0111DB10, 0x0111DC01,
    0x0111DD10, 0x0111E000, 0x0111E102, 0x0111F500, 0x01120001, 0x01121200, 0x01121301, 0x01122C00, 0x01122FA0,
    0x01123200, 0x011234A0, 0x01123500, 0x011236A0, 0x01123810, 0x01123EA0, 0x01123F00, 0x01128001, 0x01128700,
    0x01128801, 0x01128900, 0x01128A01, 0x01128E00, 0x01128F01, 0x01129E00, 0x01129F01, 0x0112A910, 0x0112AA00,
    0x0112B001, 0x0112DFA0, 0x0112E000, 0x0112E3A0, 0x0112EB00, 0x0112F002, 0x0112FA00, 0x011300A0, 0x01130200,
    0x01130501, 0x01130D00, 0x01130F01, 0x01131100, 0x01131301, 0x01132900, 0x01132A01, 0x01133100, 0x01133201,
    0x01133400, 0x01133501, 0x01133A00, 0x01133BA0, 0x01133D01, 0x01133E00, 0x011340A0, 0x01134100, 0x01135001,
    0x01135100, 0x01135D01, 0x01136200, 0x011366A0, 0x01136D00, 0x011370A0, 0x01137500, 0x01140001, 0x01143500,
    0x011438A0, 0x01144000, 0x011442A0, 0x01144500, 0x011446A0, 0x01144701, 0x01144B10, 0x01145002, 0x01145A10,
    0x01145C00, 0x01145D10, 0x01145EA0, 0x01145F01, 0x01146200, 0x01148001, 0x0114B000, 0x0114B3A0, 0x0114B900,
    0x0114BAA0, 0x0114BB00, 0x0114BFA0, 0x0114C100, 0x0114C2A0, 0x0114C401, 0x0114C610, 0x0114C701, 0x0114C800,
    0x0114D002, 0x0114DA00, 0x01158001, 0x0115AF00, 0x0115B2A0, 0x0115B600, 0x0115BCA0, 0x0115BE00, 0x0115BFA0,
    0x0115C110, 0x0115D801, 0x0115DCA0, 0x0115DE00, 0x01160001, 0x01163000, 0x011633A0, 0x01163B00, 0x01163DA0,
    0x01163E00, 0x01163FA0, 0x01164110, 0x01164401, 0x01164500, 0x01165002, 0x01165A00, 0x01166010, 0x01166D00,
    0x01168001, 0x0116ABA0, 0x0116AC00, 0x0116ADA0, 0x0116AE00, 0x0116B0A0, 0x0116B600, 0x0116B7A0, 0x0116B801,
    0x0116B910, 0x0116BA00, 0x0116C002, 0x0116CA00, 0x01170001, 0x01171B00, 0x01171DA0, 0x01172000, 0x011722A0,
    0x01172600, 0x011727A0, 0x01172C00, 0x01173002, 0x01173C10, 0x01173F00, 0x01174001, 0x01174700, 0x01180001,
    0x01182C00, 0x01182FA0, 0x01183800, 0x011839A0, 0x01183B10, 0x01183C00, 0x0118A041, 0x0118E002, 0x0118F300,
    0x0118FF01, 0x01190700, 0x01190901, 0x01190A00, 0x01190C01, 0x01191400, 0x01191501, 0x01191700, 0x01191801,
    0x01193000, 0x01193BA0, 0x01193D00, 0x01193EA0, 0x01193F01, 0x01194000, 0x01194101, 0x01194200, 0x011943A0,
    0x01194410, 0x01194700, 0x01195002, 0x01195A00, 0x0119A001, 0x0119A800, 0x0119AA01, 0x0119D100, 0x0119D4A0,
    0x0119D800, 0x0119DAA0, 0x0119DC00, 0x0119E0A0, 0x0119E101, 0x0119E210, 0x0119E301, 0x0119E400, 0x011A0001,
    0x011A01A0, 0x011A0B01, 0x011A33A0, 0x011A3900, 0x011A3A01, 0x011A3BA0, 0x011A3F10, 0x011A47A0, 0x011A4800,
    0x011A5001, 0x011A51A0, 0x011A5700, 0x011A59A0, 0x011A5C01, 0x011A8AA0, 0x011A9700, 0x011A98A0, 0x011A9A10,
    0x011A9D01, 0x011A9E10, 0x011AA300, 0x011AB001, 0x011AF900, 0x011C0001, 0x011C0900, 0x011C0A01, 0x011C2F00,
    0x011C30A0, 0x011C3700, 0x011C38A0, 0x011C3E00, 0x011C3FA0, 0x011C4001, 0x011C4110, 0x011C4600, 0x011C5002,
    0x011C6D00, 0x011C7010, 0x011C7201, 0x011C9000, 0x011C92A0, 0x011CA800, 0x011CAAA0, 0x011CB100, 0x011CB2A0,
    0x011CB400, 0x011CB5A0, 0x011CB700, 0x011D0001, 0x011D0700, 0x011D0801, 0x011D0A00, 0x011D0B01, 0x011D31A0,
    0x011D3700, 0x011D3AA0, 0x011D3B00, 0x011D3CA0, 0x011D3E00, 0x011D3FA0, 0x011D4601, 0x011D47A0, 0x011D4800,
    0x011D5002, 0x011D5A00, 0x011D6001, 0x011D6600, 0x011D6701, 0x011D6900, 0x011D6A01, 0x011D8A00, 0x011D90A0,
    0x011D9200, 0x011D95A0, 0x011D9600, 0x011D97A0, 0x011D9801, 0x011D9900, 0x011DA002, 0x011DAA00, 0x011EE001,
    0x011EF3A0, 0x011EF500, 0x011EF710, 0x011EF900, 0x011FB001, 0x011FB100, 0x011FC002, 0x011FD500, 0x011FFF10,
    0x01200001, 0x01239A00, 0x01240002, 0x01246F00, 0x01247010, 0x01247500, 0x01248001, 0x01254400, 0x012F9001,
    0x012FF110, 0x012FF300, 0x01300001, 0x01342F00, 0x01343088, 0x01343900, 0x01440001, 0x01464700, 0x01680001,
    0x016A3900, 0x016A4001, 0x016A5F00, 0x016A6002, 0x016A6A00, 0x016A6E10, 0x016A7001, 0x016ABF00, 0x016AC002,
    0x016ACA00, 0x016AD001, 0x016AEE00, 0x016AF0A0, 0x016AF510, 0x016AF600, 0x016B0001, 0x016B30A0, 0x016B3710,
    0x016B3C00, 0x016B4081, 0x016B4410, 0x016B4500, 0x016B5002, 0x016B5A00, 0x016B5B02, 0x016B6200, 0x016B6301,
    0x016B7800, 0x016B7D01, 0x016B9000, 0x016E4041, 0x016E8002, 0x016E9710, 0x016E9B00, 0x016F0001, 0x016F4B00,
    0x016F4FA0, 0x016F5001, 0x016F5100, 0x016F8FA0, 0x016F9381, 0x016FA000, 0x016FE081, 0x016FE210, 0x016FE381,
    0x016FE4A0, 0x016FE500, 0x01700001, 0x0187F800, 0x01880001, 0x018CD600, 0x018D0001, 0x018D0900, 0x01AFF081,
    0x01AFF400, 0x01AFF581, 0x01AFFC00, 0x01AFFD81, 0x01AFFF00, 0x01B00001, 0x01B12300, 0x01B15001, 0x01B15300,
    0x01B16401, 0x01B16800, 0x01B17001, 0x01B2FC00, 0x01BC0001, 0x01BC6B00, 0x01BC7001, 0x01BC7D00, 0x01BC8001,
    0x01BC8900, 0x01BC9001, 0x01BC9A00, 0x01BC9DA0, 0x01BC9F10, 0x01BCA088, 0x01BCA400, 0x01CF00A0, 0x01CF2E00,
    0x01CF30A0, 0x01CF4700, 0x01D167A0, 0x01D16A00, 0x01D17388, 0x01D17BA0, 0x01D18300, 0x01D185A0, 0x01D18C00,
    0x01D1AAA0, 0x01D1AE00, 0x01D242A0, 0x01D24500, 0x01D2E002, 0x01D2F400, 0x01D36002, 0x01D37900, 0x01D40041,
    0x01D45500, 0x01D45641, 0x01D49D00, 0x01D49E41, 0x01D4A000, 0x01D4A241, 0x01D4A300, 0x01D4A541, 0x01D4A700,
    0x01D4A941, 0x01D4AD00, 0x01D4AE41, 0x01D4BA00, 0x01D4BB41, 0x01D4BC00, 0x01D4BD41, 0x01D4C400, 0x01D4C541,
    0x01D50600, 0x01D50741, 0x01D50B00, 0x01D50D41, 0x01D51500, 0x01D51641, 0x01D51D00, 0x01D51E41, 0x01D53A00,
    0x01D53B41, 0x01D53F00, 0x01D54041, 0x01D54500, 0x01D54641, 0x01D54700, 0x01D54A41, 0x01D55100, 0x01D55241,
    0x01D6A600, 0x01D6A841, 0x01D6C100, 0x01D6C241, 0x01D6DB00, 0x01D6DC41, 0x01D6FB00, 0x01D6FC41, 0x01D71500,
    0x01D71641, 0x01D73500, 0x01D73641, 0x01D74F00, 0x01D75041, 0x01D76F00, 0x01D77041, 0x01D78900, 0x01D78A41,
    0x01D7A900, 0x01D7AA41, 0x01D7C300, 0x01D7C441, 0x01D7CC00, 0x01D7CE02, 0x01D80000, 0x01DA00A0, 0x01DA3700,
    0x01DA3BA0, 0x01DA6D00, 0x01DA75A0, 0x01DA7600, 0x01DA84A0, 0x01DA8500, 0x01DA8710, 0x01DA8C00, 0x01DA9BA0,
    0x01DAA000, 0x01DAA1A0, 0x01DAB000, 0x01DF0041, 0x01DF0A01, 0x01DF0B41, 0x01DF1F00, 0x01E000A0, 0x01E00700,
    0x01E008A0, 0x01E01900, 0x01E01BA0, 0x01E02200, 0x01E023A0, 0x01E02500, 0x01E026A0, 0x01E02B00, 0x01E10001,
    0x01E12D00, 0x01E130A0, 0x01E13781, 0x01E13E00, 0x01E14002, 0x01E14A00, 0x01E14E01, 0x01E14F00, 0x01E29001,
    0x01E2AEA0, 0x01E2AF00, 0x01E2C001, 0x01E2ECA0, 0x01E2F002, 0x01E2FA00, 0x01E7E001, 0x01E7E700, 0x01E7E801,
    0x01E7EC00, 0x01E7ED01, 0x01E7EF00, 0x01E7F001, 0x01E7FF00, 0x01E80001, 0x01E8C500, 0x01E8C702, 0x01E8D0A0,
    0x01E8D700, 0x01E90041, 0x01E944A0, 0x01E94B81, 0x01E94C00, 0x01E95002, 0x01E95A00, 0x01E95E10, 0x01E96000,
    0x01EC7102, 0x01ECAC00, 0x01ECAD02, 0x01ECB000, 0x01ECB102, 0x01ECB500, 0x01ED0102, 0x01ED2E00, 0x01ED2F02,
    0x01ED3E00, 0x01EE0001, 0x01EE0400, 0x01EE0501, 0x01EE2000, 0x01EE2101, 0x01EE2300, 0x01EE2401, 0x01EE2500,
    0x01EE2701, 0x01EE2800, 0x01EE2901, 0x01EE3300, 0x01EE3401, 0x01EE3800, 0x01EE3901, 0x01EE3A00, 0x01EE3B01,
    0x01EE3C00, 0x01EE4201, 0x01EE4300, 0x01EE4701, 0x01EE4800, 0x01EE4901, 0x01EE4A00, 0x01EE4B01, 0x01EE4C00,
    0x01EE4D01, 0x01EE5000, 0x01EE5101, 0x01EE5300, 0x01EE5401, 0x01EE5500, 0x01EE5701, 0x01EE5800, 0x01EE5901,
    0x01EE5A00, 0x01EE5B01, 0x01EE5C00, 0x01EE5D01, 0x01EE5E00, 0x01EE5F01, 0x01EE6000, 0x01EE6101, 0x01EE6300,
    0x01EE6401, 0x01EE6500, 0x01EE6701, 0x01EE6B00, 0x01EE6C01, 0x01EE7300, 0x01EE7401, 0x01EE7800, 0x01EE7901,
    0x01EE7D00, 0x01EE7E01, 0x01EE7F00, 0x01EE8001, 0x01EE8A00, 0x01EE8B01, 0x01EE9C00, 0x01EEA101, 0x01EEA400,
    0x01EEA501, 0x01EEAA00, 0x01EEAB01, 0x01EEBC00, 0x01F10002, 0x01F10D00, 0x01F13040, 0x01F14A00, 0x01F15040,
    0x01F16A00, 0x01F17040, 0x01F18A00, 0x01F3FB80, 0x01F40000, 0x01FBF002, 0x01FBFA00, 0x02000001, 0x02A6E000,
    0x02A70001, 0x02B73900, 0x02B74001, 0x02B81E00, 0x02B82001, 0x02CEA200, 0x02CEB001, 0x02EBE100, 0x02F80001,
    0x02FA1E00, 0x03000001, 0x03134B00, 0x0E000188, 0x0E000200, 0x0E002088, 0x0E008000, 0x0E0100A0, 0x0E01F000,
    0x0F000008, 0x0FFFFE00, 0x10000008, 0x10FFFE00,
};
static const struct { uint32_t first, last; uint8_t step; int32_t delta; } ulower[181] = {
    {0x00041, 0x0005A, 1, 32}, {0x000C0, 0x000D6, 1, 32}, {0x000D8, 0x000DE, 1, 32}, {0x00100, 0x0012E, 2, 1},
    {0x00132, 0x00136, 2, 1}, {0x00139, 0x00147, 2, 1}, {0x0014A, 0x00176, 2, 1}, {0x00178, 0x00178, 1, -121},
    {0x00179, 0x0017D, 2, 1}, {0x00181, 0x00181, 1, 210}, {0x00182, 0x00184, 2, 1}, {0x00186, 0x00186, 1, 206},
    {0x00187, 0x00187, 1, 1}, {0x00189, 0x0018A, 1, 205}, {0x0018B, 0x0018B, 1, 1}, {0x0018E, 0x0018E, 1, 79},
    {0x0018F, 0x0018F, 1, 202}, {0x00190, 0x00190, 1, 203}, {0x00191, 0x00191, 1, 1}, {0x00193, 0x00193, 1, 205},
    {0x00194, 0x00194, 1, 207}, {0x00196, 0x00196, 1, 211}, {0x00197, 0x00197, 1, 209}, {0x00198, 0x00198, 1, 1},
    {0x0019C, 0x0019C, 1, 211}, {0x0019D, 0x0019D, 1, 213}, {0x0019F, 0x0019F, 1, 214}, {0x001A0, 0x001A4, 2, 1},
    {0x001A6, 0x001A6, 1, 218}, {0x001A7, 0x001A7, 1, 1}, {0x001A9, 0x001A9, 1, 218}, {0x001AC, 0x001AC, 1, 1},
    {0x001AE, 0x001AE, 1, 218}, {0x001AF, 0x001AF, 1, 1}, {0x001B1, 0x001B2, 1, 217}, {0x001B3, 0x001B5, 2, 1},
    {0x001B7, 0x001B7, 1, 219}, {0x001B8, 0x001B8, 1, 1}, {0x001BC, 0x001BC, 1, 1}, {0x001C4, 0x001C4, 1, 2},
    {0x001C5, 0x001C5, 1, 1}, {0x001C7, 0x001C7, 1, 2}, {0x001C8, 0x001C8, 1, 1}, {0x001CA, 0x001CA, 1, 2},
    {0x001CB, 0x001DB, 2, 1}, {0x001DE, 0x001EE, 2, 1}, {0x001F1, 0x001F1, 1, 2}, {0x001F2, 0x001F4, 2, 1},
    {0x001F6, 0x001F6, 1, -97}, {0x001F7, 0x001F7, 1, -56}, {0x001F8, 0x0021E, 2, 1}, {0x00220, 0x00220, 1, -130},
    {0x00222, 0x00232, 2, 1}, {0x0023A, 0x0023A, 1, 10795}, {0x0023B, 0x0023B, 1, 1}, {0x0023D, 0x0023D, 1, -163},
    {0x0023E, 0x0023E, 1, 10792}, {0x00241, 0x00241, 1, 1}, {0x00243, 0x00243, 1, -195}, {0x00244, 0x00244, 1, 69},
    {0x00245, 0x00245, 1, 71}, {0x00246, 0x0024E, 2, 1}, {0x00370, 0x00372, 2, 1}, {0x00376, 0x00376, 1, 1},
    {0x0037F, 0x0037F, 1, 116}, {0x00386, 0x00386, 1, 38}, {0x00388, 0x0038A, 1, 37}, {0x0038C, 0x0038C, 1, 64},
    {0x0038E, 0x0038F, 1, 63}, {0x00391, 0x003A1, 1, 32}, {0x003A3, 0x003AB, 1, 32}, {0x003CF, 0x003CF, 1, 8},
    {0x003D8, 0x003EE, 2, 1}, {0x003F4, 0x003F4, 1, -60}, {0x003F7, 0x003F7, 1, 1}, {0x003F9, 0x003F9, 1, -7},
    {0x003FA, 0x003FA, 1, 1}, {0x003FD, 0x003FF, 1, -130}, {0x00400, 0x0040F, 1, 80}, {0x00410, 0x0042F, 1, 32},
    {0x00460, 0x00480, 2, 1}, {0x0048A, 0x004BE, 2, 1}, {0x004C0, 0x004C0, 1, 15}, {0x004C1, 0x004CD, 2, 1},
    {0x004D0, 0x0052E, 2, 1}, {0x00531, 0x00556, 1, 48}, {0x010A0, 0x010C5, 1, 7264}, {0x010C7, 0x010C7, 1, 7264},
    {0x010CD, 0x010CD, 1, 7264}, {0x013A0, 0x013EF, 1, 38864}, {0x013F0, 0x013F5, 1, 8}, {0x01C90, 0x01CBA, 1, -3008},
    {0x01CBD, 0x01CBF, 1, -3008}, {0x01E00, 0x01E94, 2, 1}, {0x01E9E, 0x01E9E, 1, -7615}, {0x01EA0, 0x01EFE, 2, 1},
    {0x01F08, 0x01F0F, 1, -8}, {0x01F18, 0x01F1D, 1, -8}, {0x01F28, 0x01F2F, 1, -8}, {0x01F38, 0x01F3F, 1, -8},
    {0x01F48, 0x01F4D, 1, -8}, {0x01F59, 0x01F5F, 2, -8}, {0x01F68, 0x01F6F, 1, -8}, {0x01F88, 0x01F8F, 1, -8},
    {0x01F98, 0x01F9F, 1, -8}, {0x01FA8, 0x01FAF, 1, -8}, {0x01FB8, 0x01FB9, 1, -8}, {0x01FBA, 0x01FBB, 1, -74},
    {0x01FBC, 0x01FBC, 1, -9}, {0x01FC8, 0x01FCB, 1, -86}, {0x01FCC, 0x01FCC, 1, -9}, {0x01FD8, 0x01FD9, 1, -8},
    {0x01FDA, 0x01FDB, 1, -100}, {0x01FE8, 0x01FE9, 1, -8}, {0x01FEA, 0x01FEB, 1, -112}, {0x01FEC, 0x01FEC, 1, -7},
    {0x01FF8, 0x01FF9, 1, -128}, {0x01FFA, 0x01FFB, 1, -126}, {0x01FFC, 0x01FFC, 1, -9}, {0x02126, 0x02126, 1, -7517},
    {0x0212A, 0x0212A, 1, -8383}, {0x0212B, 0x0212B, 1, -8262}, {0x02132, 0x02132, 1, 28}, {0x02160, 0x0216F, 1, 16},
    {0x02183, 0x02183, 1, 1}, {0x024B6, 0x024CF, 1, 26}, {0x02C00, 0x02C2F, 1, 48}, {0x02C60, 0x02C60, 1, 1},
    {0x02C62, 0x02C62, 1, -10743}, {0x02C63, 0x02C63, 1, -3814}, {0x02C64, 0x02C64, 1, -10727}, {0x02C67, 0x02C6B, 2, 1},
    {0x02C6D, 0x02C6D, 1, -10780}, {0x02C6E, 0x02C6E, 1, -10749}, {0x02C6F, 0x02C6F, 1, -10783}, {0x02C70, 0x02C70, 1, -10782},
    {0x02C72, 0x02C72, 1, 1}, {0x02C75, 0x02C75, 1, 1}, {0x02C7E, 0x02C7F, 1, -10815}, {0x02C80, 0x02CE2, 2, 1},
    {0x02CEB, 0x02CED, 2, 1}, {0x02CF2, 0x02CF2, 1, 1}, {0x0A640, 0x0A66C, 2, 1}, {0x0A680, 0x0A69A, 2, 1},
    {0x0A722, 0x0A72E, 2, 1}, {0x0A732, 0x0A76E, 2, 1}, {0x0A779, 0x0A77B, 2, 1}, {0x0A77D, 0x0A77D, 1, -35332},
    {0x0A77E, 0x0A786, 2, 1}, {0x0A78B, 0x0A78B, 1, 1}, {0x0A78D, 0x0A78D, 1, -42280}, {0x0A790, 0x0A792, 2, 1},
    {0x0A796, 0x0A7A8, 2, 1}, {0x0A7AA, 0x0A7AA, 1, -42308}, {0x0A7AB, 0x0A7AB, 1, -42319}, {0x0A7AC, 0x0A7AC, 1, -42315},
    {0x0A7AD, 0x0A7AD, 1, -42305}, {0x0A7AE, 0x0A7AE, 1, -42308}, {0x0A7B0, 0x0A7B0, 1, -42258}, {0x0A7B1, 0x0A7B1, 1, -42282},
    {0x0A7B2, 0x0A7B2, 1, -42261}, {0x0A7B3, 0x0A7B3, 1, 928}, {0x0A7B4, 0x0A7C2, 2, 1}, {0x0A7C4, 0x0A7C4, 1, -48},
    {0x0A7C5, 0x0A7C5, 1, -42307}, {0x0A7C6, 0x0A7C6, 1, -35384}, {0x0A7C7, 0x0A7C9, 2, 1}, {0x0A7D0, 0x0A7D0, 1, 1},
    {0x0A7D6, 0x0A7D8, 2, 1}, {0x0A7F5, 0x0A7F5, 1, 1}, {0x0FF21, 0x0FF3A, 1, 32}, {0x10400, 0x10427, 1, 40},
    {0x104B0, 0x104D3, 1, 40}, {0x10570, 0x1057A, 1, 39}, {0x1057C, 0x1058A, 1, 39}, {0x1058C, 0x10592, 1, 39},
    {0x10594, 0x10595, 1, 39}, {0x10C80, 0x10CB2, 1, 64}, {0x118A0, 0x118BF, 1, 32}, {0x16E40, 0x16E5F, 1, 32},
    {0x1E900, 0x1E921, 1, 34},
};
static const uint32_t udecomp[1041][3] = { /* code point, first, second (0 = none) */
    {0x000C0, 0x00041, 0x0300}, {0x000C1, 0x00041, 0x0301}, {0x000C2, 0x00041, 0x0302}, {0x000C3, 0x00041, 0x0303}, {0x000C4, 0x00041, 0x0308},
    {0x000C5, 0x00041, 0x030A}, {0x000C7, 0x00043, 0x0327}, {0x000C8, 0x00045, 0x0300}, {0x000C9, 0x00045, 0x0301}, {0x000CA, 0x00045, 0x0302},
    {0x000CB, 0x00045, 0x0308}, {0x000CC, 0x00049, 0x0300}, {0x000CD, 0x00049, 0x0301}, {0x000CE, 0x00049, 0x0302}, {0x000CF, 0x00049, 0x0308},
    {0x000D1, 0x0004E, 0x0303}, {0x000D2, 0x0004F, 0x0300}, {0x000D3, 0x0004F, 0x0301}, {0x000D4, 0x0004F, 0x0302}, {0x000D5, 0x0004F, 0x0303},
    {0x000D6, 0x0004F, 0x0308}, {0x000D9, 0x00055, 0x0300}, {0x000DA, 0x00055, 0x0301}, {0x000DB, 0x00055, 0x0302}, {0x000DC, 0x00055, 0x0308},
    {0x000DD, 0x00059, 0x0301}, {0x000E0, 0x00061, 0x0300}, {0x000E1, 0x00061, 0x0301}, {0x000E2, 0x00061, 0x0302}, {0x000E3, 0x00061, 0x0303},
    {0x000E4, 0x00061, 0x0308}, {0x000E5, 0x00061, 0x030A}, {0x000E7, 0x00063, 0x0327}, {0x000E8, 0x00065, 0x0300}, {0x000E9, 0x00065, 0x0301},
    {0x000EA, 0x00065, 0x0302}, {0x000EB, 0x00065, 0x0308}, {0x000EC, 0x00069, 0x0300}, {0x000ED, 0x00069, 0x0301}, {0x000EE, 0x00069, 0x0302},
    {0x000EF, 0x00069, 0x0308}, {0x000F1, 0x0006E, 0x0303}, {0x000F2, 0x0006F, 0x0300}, {0x000F3, 0x0006F, 0x0301}, {0x000F4, 0x0006F, 0x0302},
    {0x000F5, 0x0006F, 0x0303}, {0x000F6, 0x0006F, 0x0308}, {0x000F9, 0x00075, 0x0300}, {0x000FA, 0x00075, 0x0301}, {0x000FB, 0x00075, 0x0302},
    {0x000FC, 0x00075, 0x0308}, {0x000FD, 0x00079, 0x0301}, {0x000FF, 0x00079, 0x0308}, {0x00100, 0x00041, 0x0304}, {0x00101, 0x00061, 0x0304},
    {0x00102, 0x00041, 0x0306}, {0x00103, 0x00061, 0x0306}, {0x00104, 0x00041, 0x0328}, {0x00105, 0x00061, 0x0328}, {0x00106, 0x00043, 0x0301},
    {0x00107, 0x00063, 0x0301}, {0x00108, 0x00043, 0x0302}, {0x00109, 0x00063, 0x0302}, {0x0010A, 0x00043, 0x0307}, {0x0010B, 0x00063, 0x0307},
    {0x0010C, 0x00043, 0x030C}, {0x0010D, 0x00063, 0x030C}, {0x0010E, 0x00044, 0x030C}, {0x0010F, 0x00064, 0x030C}, {0x00112, 0x00045, 0x0304},
    {0x00113, 0x00065, 0x0304}, {0x00114, 0x00045, 0x0306}, {0x00115, 0x00065, 0x0306}, {0x00116, 0x00045, 0x0307}, {0x00117, 0x00065, 0x0307},
    {0x00118, 0x00045, 0x0328}, {0x00119, 0x00065, 0x0328}, {0x0011A, 0x00045, 0x030C}, {0x0011B, 0x00065, 0x030C}, {0x0011C, 0x00047, 0x0302},
    {0x0011D, 0x00067, 0x0302}, {0x0011E, 0x00047, 0x0306}, {0x0011F, 0x00067, 0x0306}, {0x00120, 0x00047, 0x0307}, {0x00121, 0x00067, 0x0307},
    {0x00122, 0x00047, 0x0327}, {0x00123, 0x00067, 0x0327}, {0x00124, 0x00048, 0x0302}, {0x00125, 0x00068, 0x0302}, {0x00128, 0x00049, 0x0303},
    {0x00129, 0x00069, 0x0303}, {0x0012A, 0x00049, 0x0304}, {0x0012B, 0x00069, 0x0304}, {0x0012C, 0x00049, 0x0306}, {0x0012D, 0x00069, 0x0306},
    {0x0012E, 0x00049, 0x0328}, {0x0012F, 0x00069, 0x0328}, {0x00130, 0x00049, 0x0307}, {0x00134, 0x0004A, 0x0302}, {0x00135, 0x0006A, 0x0302},
    {0x00136, 0x0004B, 0x0327}, {0x00137, 0x0006B, 0x0327}, {0x00139, 0x0004C, 0x0301}, {0x0013A, 0x0006C, 0x0301}, {0x0013B, 0x0004C, 0x0327},
    {0x0013C, 0x0006C, 0x0327}, {0x0013D, 0x0004C, 0x030C}, {0x0013E, 0x0006C, 0x030C}, {0x00143, 0x0004E, 0x0301}, {0x00144, 0x0006E, 0x0301},
    {0x00145, 0x0004E, 0x0327}, {0x00146, 0x0006E, 0x0327}, {0x00147, 0x0004E, 0x030C}, {0x00148, 0x0006E, 0x030C}, {0x0014C, 0x0004F, 0x0304},
    {0x0014D, 0x0006F, 0x0304}, {0x0014E, 0x0004F, 0x0306}, {0x0014F, 0x0006F, 0x0306}, {0x00150, 0x0004F, 0x030B}, {0x00151, 0x0006F, 0x030B},
    {0x00154, 0x00052, 0x0301}, {0x00155, 0x00072, 0x0301}, {0x00156, 0x00052, 0x0327}, {0x00157, 0x00072, 0x0327}, {0x00158, 0x00052, 0x030C},
    {0x00159, 0x00072, 0x030C}, {0x0015A, 0x00053, 0x0301}, {0x0015B, 0x00073, 0x0301}, {0x0015C, 0x00053, 0x0302}, {0x0015D, 0x00073, 0x0302},
    {0x0015E, 0x00053, 0x0327}, {0x0015F, 0x00073, 0x0327}, {0x00160, 0x00053, 0x030C}, {0x00161, 0x00073, 0x030C}, {0x00162, 0x00054, 0x0327},
    {0x00163, 0x00074, 0x0327}, {0x00164, 0x00054, 0x030C}, {0x00165, 0x00074, 0x030C}, {0x00168, 0x00055, 0x0303}, {0x00169, 0x00075, 0x0303},
    {0x0016A, 0x00055, 0x0304}, {0x0016B, 0x00075, 0x0304}, {0x0016C, 0x00055, 0x0306}, {0x0016D, 0x00075, 0x0306}, {0x0016E, 0x00055, 0x030A},
    {0x0016F, 0x00075, 0x030A}, {0x00170, 0x00055, 0x030B}, {0x00171, 0x00075, 0x030B}, {0x00172, 0x00055, 0x0328}, {0x00173, 0x00075, 0x0328},
    {0x00174, 0x00057, 0x0302}, {0x00175, 0x00077, 0x0302}, {0x00176, 0x00059, 0x0302}, {0x00177, 0x00079, 0x0302}, {0x00178, 0x00059, 0x0308},
    {0x00179, 0x0005A, 0x0301}, {0x0017A, 0x0007A, 0x0301}, {0x0017B, 0x0005A, 0x0307}, {0x0017C, 0x0007A, 0x0307}, {0x0017D, 0x0005A, 0x030C},
    {0x0017E, 0x0007A, 0x030C}, {0x001A0, 0x0004F, 0x031B}, {0x001A1, 0x0006F, 0x031B}, {0x001AF, 0x00055, 0x031B}, {0x001B0, 0x00075, 0x031B},
    {0x001CD, 0x00041, 0x030C}, {0x001CE, 0x00061, 0x030C}, {0x001CF, 0x00049, 0x030C}, {0x001D0, 0x00069, 0x030C}, {0x001D1, 0x0004F, 0x030C},
    {0x001D2, 0x0006F, 0x030C}, {0x001D3, 0x00055, 0x030C}, {0x001D4, 0x00075, 0x030C}, {0x001D5, 0x000DC, 0x0304}, {0x001D6, 0x000FC, 0x0304},
    {0x001D7, 0x000DC, 0x0301}, {0x001D8, 0x000FC, 0x0301}, {0x001D9, 0x000DC, 0x030C}, {0x001DA, 0x000FC, 0x030C}, {0x001DB, 0x000DC, 0x0300},
    {0x001DC, 0x000FC, 0x0300}, {0x001DE, 0x000C4, 0x0304}, {0x001DF, 0x000E4, 0x0304}, {0x001E0, 0x00226, 0x0304}, {0x001E1, 0x00227, 0x0304},
    {0x001E2, 0x000C6, 0x0304}, {0x001E3, 0x000E6, 0x0304}, {0x001E6, 0x00047, 0x030C}, {0x001E7, 0x00067, 0x030C}, {0x001E8, 0x0004B, 0x030C},
    {0x001E9, 0x0006B, 0x030C}, {0x001EA, 0x0004F, 0x0328}, {0x001EB, 0x0006F, 0x0328}, {0x001EC, 0x001EA, 0x0304}, {0x001ED, 0x001EB, 0x0304},
    {0x001EE, 0x001B7, 0x030C}, {0x001EF, 0x00292, 0x030C}, {0x001F0, 0x0006A, 0x030C}, {0x001F4, 0x00047, 0x0301}, {0x001F5, 0x00067, 0x0301},
    {0x001F8, 0x0004E, 0x0300}, {0x001F9, 0x0006E, 0x0300}, {0x001FA, 0x000C5, 0x0301}, {0x001FB, 0x000E5, 0x0301}, {0x001FC, 0x000C6, 0x0301},
    {0x001FD, 0x000E6, 0x0301}, {0x001FE, 0x000D8, 0x0301}, {0x001FF, 0x000F8, 0x0301}, {0x00200, 0x00041, 0x030F}, {0x00201, 0x00061, 0x030F},
    {0x00202, 0x00041, 0x0311}, {0x00203, 0x00061, 0x0311}, {0x00204, 0x00045, 0x030F}, {0x00205, 0x00065, 0x030F}, {0x00206, 0x00045, 0x0311},
    {0x00207, 0x00065, 0x0311}, {0x00208, 0x00049, 0x030F}, {0x00209, 0x00069, 0x030F}, {0x0020A, 0x00049, 0x0311}, {0x0020B, 0x00069, 0x0311},
    {0x0020C, 0x0004F, 0x030F}, {0x0020D, 0x0006F, 0x030F}, {0x0020E, 0x0004F, 0x0311}, {0x0020F, 0x0006F, 0x0311}, {0x00210, 0x00052, 0x030F},
    {0x00211, 0x00072, 0x030F}, {0x00212, 0x00052, 0x0311}, {0x00213, 0x00072, 0x0311}, {0x00214, 0x00055, 0x030F}, {0x00215, 0x00075, 0x030F},
    {0x00216, 0x00055, 0x0311}, {0x00217, 0x00075, 0x0311}, {0x00218, 0x00053, 0x0326}, {0x00219, 0x00073, 0x0326}, {0x0021A, 0x00054, 0x0326},
    {0x0021B, 0x00074, 0x0326}, {0x0021E, 0x00048, 0x030C}, {0x0021F, 0x00068, 0x030C}, {0x00226, 0x00041, 0x0307}, {0x00227, 0x00061, 0x0307},
    {0x00228, 0x00045, 0x0327}, {0x00229, 0x00065, 0x0327}, {0x0022A, 0x000D6, 0x0304}, {0x0022B, 0x000F6, 0x0304}, {0x0022C, 0x000D5, 0x0304},
    {0x0022D, 0x000F5, 0x0304}, {0x0022E, 0x0004F, 0x0307}, {0x0022F, 0x0006F, 0x0307}, {0x00230, 0x0022E, 0x0304}, {0x00231, 0x0022F, 0x0304},
    {0x00232, 0x00059, 0x0304}, {0x00233, 0x00079, 0x0304}, {0x00374, 0x002B9, 0x0000}, {0x0037E, 0x0003B, 0x0000}, {0x00385, 0x000A8, 0x0301},
    {0x00386, 0x00391, 0x0301}, {0x00387, 0x000B7, 0x0000}, {0x00388, 0x00395, 0x0301}, {0x00389, 0x00397, 0x0301}, {0x0038A, 0x00399, 0x0301},
    {0x0038C, 0x0039F, 0x0301}, {0x0038E, 0x003A5, 0x0301}, {0x0038F, 0x003A9, 0x0301}, {0x00390, 0x003CA, 0x0301}, {0x003AA, 0x00399, 0x0308},
    {0x003AB, 0x003A5, 0x0308}, {0x003AC, 0x003B1, 0x0301}, {0x003AD, 0x003B5, 0x0301}, {0x003AE, 0x003B7, 0x0301}, {0x003AF, 0x003B9, 0x0301},
    {0x003B0, 0x003CB, 0x0301}, {0x003CA, 0x003B9, 0x0308}, {0x003CB, 0x003C5, 0x0308}, {0x003CC, 0x003BF, 0x0301}, {0x003CD, 0x003C5, 0x0301},
    {0x003CE, 0x003C9, 0x0301}, {0x003D3, 0x003D2, 0x0301}, {0x003D4, 0x003D2, 0x0308}, {0x00400, 0x00415, 0x0300}, {0x00401, 0x00415, 0x0308},
    {0x00403, 0x00413, 0x0301}, {0x00407, 0x00406, 0x0308}, {0x0040C, 0x0041A, 0x0301}, {0x0040D, 0x00418, 0x0300}, {0x0040E, 0x00423, 0x0306},
    {0x00419, 0x00418, 0x0306}, {0x00439, 0x00438, 0x0306}, {0x00450, 0x00435, 0x0300}, {0x00451, 0x00435, 0x0308}, {0x00453, 0x00433, 0x0301},
    {0x00457, 0x00456, 0x0308}, {0x0045C, 0x0043A, 0x0301}, {0x0045D, 0x00438, 0x0300}, {0x0045E, 0x00443, 0x0306}, {0x00476, 0x00474, 0x030F},
    {0x00477, 0x00475, 0x030F}, {0x004C1, 0x00416, 0x0306}, {0x004C2, 0x00436, 0x0306}, {0x004D0, 0x00410, 0x0306}, {0x004D1, 0x00430, 0x0306},
    {0x004D2, 0x00410, 0x0308}, {0x004D3, 0x00430, 0x0308}, {0x004D6, 0x00415, 0x0306}, {0x004D7, 0x00435, 0x0306}, {0x004DA, 0x004D8, 0x0308},
    {0x004DB, 0x004D9, 0x0308}, {0x004DC, 0x00416, 0x0308}, {0x004DD, 0x00436, 0x0308}, {0x004DE, 0x00417, 0x0308}, {0x004DF, 0x00437, 0x0308},
    {0x004E2, 0x00418, 0x0304}, {0x004E3, 0x00438, 0x0304}, {0x004E4, 0x00418, 0x0308}, {0x004E5, 0x00438, 0x0308}, {0x004E6, 0x0041E, 0x0308},
    {0x004E7, 0x0043E, 0x0308}, {0x004EA, 0x004E8, 0x0308}, {0x004EB, 0x004E9, 0x0308}, {0x004EC, 0x0042D, 0x0308}, {0x004ED, 0x0044D, 0x0308},
    {0x004EE, 0x00423, 0x0304}, {0x004EF, 0x00443, 0x0304}, {0x004F0, 0x00423, 0x0308}, {0x004F1, 0x00443, 0x0308}, {0x004F2, 0x00423, 0x030B},
    {0x004F3, 0x00443, 0x030B}, {0x004F4, 0x00427, 0x0308}, {0x004F5, 0x00447, 0x0308}, {0x004F8, 0x0042B, 0x0308}, {0x004F9, 0x0044B, 0x0308},
    {0x00622, 0x00627, 0x0653}, {0x00623, 0x00627, 0x0654}, {0x00624, 0x00648, 0x0654}, {0x00625, 0x00627, 0x0655}, {0x00626, 0x0064A, 0x0654},
    {0x006C0, 0x006D5, 0x0654}, {0x006C2, 0x006C1, 0x0654}, {0x006D3, 0x006D2, 0x0654}, {0x00929, 0x00928, 0x093C}, {0x00931, 0x00930, 0x093C},
    {0x00934, 0x00933, 0x093C}, {0x00958, 0x00915, 0x093C}, {0x00959, 0x00916, 0x093C}, {0x0095A, 0x00917, 0x093C}, {0x0095B, 0x0091C, 0x093C},
    {0x0095C, 0x00921, 0x093C}, {0x0095D, 0x00922, 0x093C}, {0x0095E, 0x0092B, 0x093C}, {0x0095F, 0x0092F, 0x093C}, {0x009CB, 0x009C7, 0x09BE},
    {0x009CC, 0x009C7, 0x09D7}, {0x009DC, 0x009A1, 0x09BC}, {0x009DD, 0x009A2, 0x09BC}, {0x009DF, 0x009AF, 0x09BC}, {0x00A33, 0x00A32, 0x0A3C},
    {0x00A36, 0x00A38, 0x0A3C}, {0x00A59, 0x00A16, 0x0A3C}, {0x00A5A, 0x00A17, 0x0A3C}, {0x00A5B, 0x00A1C, 0x0A3C}, {0x00A5E, 0x00A2B, 0x0A3C},
    {0x00B48, 0x00B47, 0x0B56}, {0x00B4B, 0x00B47, 0x0B3E}, {0x00B4C, 0x00B47, 0x0B57}, {0x00B5C, 0x00B21, 0x0B3C}, {0x00B5D, 0x00B22, 0x0B3C},
    {0x00B94, 0x00B92, 0x0BD7}, {0x00BCA, 0x00BC6, 0x0BBE}, {0x00BCB, 0x00BC7, 0x0BBE}, {0x00BCC, 0x00BC6, 0x0BD7}, {0x00CC0, 0x00CBF, 0x0CD5},
    {0x00CC7, 0x00CC6, 0x0CD5}, {0x00CC8, 0x00CC6, 0x0CD6}, {0x00CCA, 0x00CC6, 0x0CC2}, {0x00CCB, 0x00CCA, 0x0CD5}, {0x00D4A, 0x00D46, 0x0D3E},
    {0x00D4B, 0x00D47, 0x0D3E}, {0x00D4C, 0x00D46, 0x0D57}, {0x00DDA, 0x00DD9, 0x0DCA}, {0x00DDC, 0x00DD9, 0x0DCF}, {0x00DDD, 0x00DDC, 0x0DCA},
    {0x00DDE, 0x00DD9, 0x0DDF}, {0x00F43, 0x00F42, 0x0FB7}, {0x00F4D, 0x00F4C, 0x0FB7}, {0x00F52, 0x00F51, 0x0FB7}, {0x00F57, 0x00F56, 0x0FB7},
    {0x00F5C, 0x00F5B, 0x0FB7}, {0x00F69, 0x00F40, 0x0FB5}, {0x01026, 0x01025, 0x102E}, {0x01B06, 0x01B05, 0x1B35}, {0x01B08, 0x01B07, 0x1B35},
    {0x01B0A, 0x01B09, 0x1B35}, {0x01B0C, 0x01B0B, 0x1B35}, {0x01B0E, 0x01B0D, 0x1B35}, {0x01B12, 0x01B11, 0x1B35}, {0x01B3B, 0x01B3A, 0x1B35},
    {0x01B3D, 0x01B3C, 0x1B35}, {0x01B40, 0x01B3E, 0x1B35}, {0x01B41, 0x01B3F, 0x1B35}, {0x01B43, 0x01B42, 0x1B35}, {0x01E00, 0x00041, 0x0325},
    {0x01E01, 0x00061, 0x0325}, {0x01E02, 0x00042, 0x0307}, {0x01E03, 0x00062, 0x0307}, {0x01E04, 0x00042, 0x0323}, {0x01E05, 0x00062, 0x0323},
    {0x01E06, 0x00042, 0x0331}, {0x01E07, 0x00062, 0x0331}, {0x01E08, 0x000C7, 0x0301}, {0x01E09, 0x000E7, 0x0301}, {0x01E0A, 0x00044, 0x0307},
    {0x01E0B, 0x00064, 0x0307}, {0x01E0C, 0x00044, 0x0323}, {0x01E0D, 0x00064, 0x0323}, {0x01E0E, 0x00044, 0x0331}, {0x01E0F, 0x00064, 0x0331},
    {0x01E10, 0x00044, 0x0327}, {0x01E11, 0x00064, 0x0327}, {0x01E12, 0x00044, 0x032D}, {0x01E13, 0x00064, 0x032D}, {0x01E14, 0x00112, 0x0300},
    {0x01E15, 0x00113, 0x0300}, {0x01E16, 0x00112, 0x0301}, {0x01E17, 0x00113, 0x0301}, {0x01E18, 0x00045, 0x032D}, {0x01E19, 0x00065, 0x032D},
    {0x01E1A, 0x00045, 0x0330}, {0x01E1B, 0x00065, 0x0330}, {0x01E1C, 0x00228, 0x0306}, {0x01E1D, 0x00229, 0x0306}, {0x01E1E, 0x00046, 0x0307},
    {0x01E1F, 0x00066, 0x0307}, {0x01E20, 0x00047, 0x0304}, {0x01E21, 0x00067, 0x0304}, {0x01E22, 0x00048, 0x0307}, {0x01E23, 0x00068, 0x0307},
    {0x01E24, 0x00048, 0x0323}, {0x01E25, 0x00068, 0x0323}, {0x01E26, 0x00048, 0x0308}, {0x01E27, 0x00068, 0x0308}, {0x01E28, 0x00048, 0x0327},
    {0x01E29, 0x00068, 0x0327}, {0x01E2A, 0x00048, 0x032E}, {0x01E2B, 0x00068, 0x032E}, {0x01E2C, 0x00049, 0x0330}, {0x01E2D, 0x00069, 0x0330},
    {0x01E2E, 0x000CF, 0x0301}, {0x01E2F, 0x000EF, 0x0301}, {0x01E30, 0x0004B, 0x0301}, {0x01E31, 0x0006B, 0x0301}, {0x01E32, 0x0004B, 0x0323},
    {0x01E33, 0x0006B, 0x0323}, {0x01E34, 0x0004B, 0x0331}, {0x01E35, 0x0006B, 0x0331}, {0x01E36, 0x0004C, 0x0323}, {0x01E37, 0x0006C, 0x0323},
    {0x01E38, 0x01E36, 0x0304}, {0x01E39, 0x01E37, 0x0304}, {0x01E3A, 0x0004C, 0x0331}, {0x01E3B, 0x0006C, 0x0331}, {0x01E3C, 0x0004C, 0x032D},
    {0x01E3D, 0x0006C, 0x032D}, {0x01E3E, 0x0004D, 0x0301}, {0x01E3F, 0x0006D, 0x0301}, {0x01E40, 0x0004D, 0x0307}, {0x01E41, 0x0006D, 0x0307},
    {0x01E42, 0x0004D, 0x0323}, {0x01E43, 0x0006D, 0x0323}, {0x01E44, 0x0004E, 0x0307}, {0x01E45, 0x0006E, 0x0307}, {0x01E46, 0x0004E, 0x0323},
    {0x01E47, 0x0006E, 0x0323}, {0x01E48, 0x0004E, 0x0331}, {0x01E49, 0x0006E, 0x0331}, {0x01E4A, 0x0004E, 0x032D}, {0x01E4B, 0x0006E, 0x032D},
    {0x01E4C, 0x000D5, 0x0301}, {0x01E4D, 0x000F5, 0x0301}, {0x01E4E, 0x000D5, 0x0308}, {0x01E4F, 0x000F5, 0x0308}, {0x01E50, 0x0014C, 0x0300},
    {0x01E51, 0x0014D, 0x0300}, {0x01E52, 0x0014C, 0x0301}, {0x01E53, 0x0014D, 0x0301}, {0x01E54, 0x00050, 0x0301}, {0x01E55, 0x00070, 0x0301},
    {0x01E56, 0x00050, 0x0307}, {0x01E57, 0x00070, 0x0307}, {0x01E58, 0x00052, 0x0307}, {0x01E59, 0x00072, 0x0307}, {0x01E5A, 0x00052, 0x0323},
    {0x01E5B, 0x00072, 0x0323}, {0x01E5C, 0x01E5A, 0x0304}, {0x01E5D, 0x01E5B, 0x0304}, {0x01E5E, 0x00052, 0x0331}, {0x01E5F, 0x00072, 0x0331},
    {0x01E60, 0x00053, 0x0307}, {0x01E61, 0x00073, 0x0307}, {0x01E62, 0x00053, 0x0323}, {0x01E63, 0x00073, 0x0323}, {0x01E64, 0x0015A, 0x0307},
    {0x01E65, 0x0015B, 0x0307}, {0x01E66, 0x00160, 0x0307}, {0x01E67, 0x00161, 0x0307}, {0x01E68, 0x01E62, 0x0307}, {0x01E69, 0x01E63, 0x0307},
    {0x01E6A, 0x00054, 0x0307}, {0x01E6B, 0x00074, 0x0307}, {0x01E6C, 0x00054, 0x0323}, {0x01E6D, 0x00074, 0x0323}, {0x01E6E, 0x00054, 0x0331},
    {0x01E6F, 0x00074, 0x0331}, {0x01E70, 0x00054, 0x032D}, {0x01E71, 0x00074, 0x032D}, {0x01E72, 0x00055, 0x0324}, {0x01E73, 0x00075, 0x0324},
    {0x01E74, 0x00055, 0x0330}, {0x01E75, 0x00075, 0x0330}, {0x01E76, 0x00055, 0x032D}, {0x01E77, 0x00075, 0x032D}, {0x01E78, 0x00168, 0x0301},
    {0x01E79, 0x00169, 0x0301}, {0x01E7A, 0x0016A, 0x0308}, {0x01E7B, 0x0016B, 0x0308}, {0x01E7C, 0x00056, 0x0303}, {0x01E7D, 0x00076, 0x0303},
    {0x01E7E, 0x00056, 0x0323}, {0x01E7F, 0x00076, 0x0323}, {0x01E80, 0x00057, 0x0300}, {0x01E81, 0x00077, 0x0300}, {0x01E82, 0x00057, 0x0301},
    {0x01E83, 0x00077, 0x0301}, {0x01E84, 0x00057, 0x0308}, {0x01E85, 0x00077, 0x0308}, {0x01E86, 0x00057, 0x0307}, {0x01E87, 0x00077, 0x0307},
    {0x01E88, 0x00057, 0x0323}, {0x01E89, 0x00077, 0x0323}, {0x01E8A, 0x00058, 0x0307}, {0x01E8B, 0x00078, 0x0307}, {0x01E8C, 0x00058, 0x0308},
    {0x01E8D, 0x00078, 0x0308}, {0x01E8E, 0x00059, 0x0307}, {0x01E8F, 0x00079, 0x0307}, {0x01E90, 0x0005A, 0x0302}, {0x01E91, 0x0007A, 0x0302},
    {0x01E92, 0x0005A, 0x0323}, {0x01E93, 0x0007A, 0x0323}, {0x01E94, 0x0005A, 0x0331}, {0x01E95, 0x0007A, 0x0331}, {0x01E96, 0x00068, 0x0331},
    {0x01E97, 0x00074, 0x0308}, {0x01E98, 0x00077, 0x030A}, {0x01E99, 0x00079, 0x030A}, {0x01E9B, 0x0017F, 0x0307}, {0x01EA0, 0x00041, 0x0323},
    {0x01EA1, 0x00061, 0x0323}, {0x01EA2, 0x00041, 0x0309}, {0x01EA3, 0x00061, 0x0309}, {0x01EA4, 0x000C2, 0x0301}, {0x01EA5, 0x000E2, 0x0301},
    {0x01EA6, 0x000C2, 0x0300}, {0x01EA7, 0x000E2, 0x0300}, {0x01EA8, 0x000C2, 0x0309}, {0x01EA9, 0x000E2, 0x0309}, {0x01EAA, 0x000C2, 0x0303},
    {0x01EAB, 0x000E2, 0x0303}, {0x01EAC, 0x01EA0, 0x0302}, {0x01EAD, 0x01EA1, 0x0302}, {0x01EAE, 0x00102, 0x0301}, {0x01EAF, 0x00103, 0x0301},
    {0x01EB0, 0x00102, 0x0300}, {0x01EB1, 0x00103, 0x0300}, {0x01EB2, 0x00102, 0x0309}, {0x01EB3, 0x00103, 0x0309}, {0x01EB4, 0x00102, 0x0303},
    {0x01EB5, 0x00103, 0x0303}, {0x01EB6, 0x01EA0, 0x0306}, {0x01EB7, 0x01EA1, 0x0306}, {0x01EB8, 0x00045, 0x0323}, {0x01EB9, 0x00065, 0x0323},
    {0x01EBA, 0x00045, 0x0309}, {0x01EBB, 0x00065, 0x0309}, {0x01EBC, 0x00045, 0x0303}, {0x01EBD, 0x00065, 0x0303}, {0x01EBE, 0x000CA, 0x0301},
    {0x01EBF, 0x000EA, 0x0301}, {0x01EC0, 0x000CA, 0x0300}, {0x01EC1, 0x000EA, 0x0300}, {0x01EC2, 0x000CA, 0x0309}, {0x01EC3, 0x000EA, 0x0309},
    {0x01EC4, 0x000CA, 0x0303}, {0x01EC5, 0x000EA, 0x0303}, {0x01EC6, 0x01EB8, 0x0302}, {0x01EC7, 0x01EB9, 0x0302}, {0x01EC8, 0x00049, 0x0309},
    {0x01EC9, 0x00069, 0x0309}, {0x01ECA, 0x00049, 0x0323}, {0x01ECB, 0x00069, 0x0323}, {0x01ECC, 0x0004F, 0x0323}, {0x01ECD, 0x0006F, 0x0323},
    {0x01ECE, 0x0004F, 0x0309}, {0x01ECF, 0x0006F, 0x0309}, {0x01ED0, 0x000D4, 0x0301}, {0x01ED1, 0x000F4, 0x0301}, {0x01ED2, 0x000D4, 0x0300},
    {0x01ED3, 0x000F4, 0x0300}, {0x01ED4, 0x000D4, 0x0309}, {0x01ED5, 0x000F4, 0x0309}, {0x01ED6, 0x000D4, 0x0303}, {0x01ED7, 0x000F4, 0x0303},
    {0x01ED8, 0x01ECC, 0x0302}, {0x01ED9, 0x01ECD, 0x0302}, {0x01EDA, 0x001A0, 0x0301}, {0x01EDB, 0x001A1, 0x0301}, {0x01EDC, 0x001A0, 0x0300},
    {0x01EDD, 0x001A1, 0x0300}, {0x01EDE, 0x001A0, 0x0309}, {0x01EDF, 0x001A1, 0x0309}, {0x01EE0, 0x001A0, 0x0303}, {0x01EE1, 0x001A1, 0x0303},
    {0x01EE2, 0x001A0, 0x0323}, {0x01EE3, 0x001A1, 0x0323}, {0x01EE4, 0x00055, 0x0323}, {0x01EE5, 0x00075, 0x0323}, {0x01EE6, 0x00055, 0x0309},
    {0x01EE7, 0x00075, 0x0309}, {0x01EE8, 0x001AF, 0x0301}, {0x01EE9, 0x001B0, 0x0301}, {0x01EEA, 0x001AF, 0x0300}, {0x01EEB, 0x001B0, 0x0300},
    {0x01EEC, 0x001AF, 0x0309}, {0x01EED, 0x001B0, 0x0309}, {0x01EEE, 0x001AF, 0x0303}, {0x01EEF, 0x001B0, 0x0303}, {0x01EF0, 0x001AF, 0x0323},
    {0x01EF1, 0x001B0, 0x0323}, {0x01EF2, 0x00059, 0x0300}, {0x01EF3, 0x00079, 0x0300}, {0x01EF4, 0x00059, 0x0323}, {0x01EF5, 0x00079, 0x0323},
    {0x01EF6, 0x00059, 0x0309}, {0x01EF7, 0x00079, 0x0309}, {0x01EF8, 0x00059, 0x0303}, {0x01EF9, 0x00079, 0x0303}, {0x01F00, 0x003B1, 0x0313},
    {0x01F01, 0x003B1, 0x0314}, {0x01F02, 0x01F00, 0x0300}, {0x01F03, 0x01F01, 0x0300}, {0x01F04, 0x01F00, 0x0301}, {0x01F05, 0x01F01, 0x0301},
    {0x01F06, 0x01F00, 0x0342}, {0x01F07, 0x01F01, 0x0342}, {0x01F08, 0x00391, 0x0313}, {0x01F09, 0x00391, 0x0314}, {0x01F0A, 0x01F08, 0x0300},
    {0x01F0B, 0x01F09, 0x0300}, {0x01F0C, 0x01F08, 0x0301}, {0x01F0D, 0x01F09, 0x0301}, {0x01F0E, 0x01F08, 0x0342}, {0x01F0F, 0x01F09, 0x0342},
    {0x01F10, 0x003B5, 0x0313}, {0x01F11, 0x003B5, 0x0314}, {0x01F12, 0x01F10, 0x0300}, {0x01F13, 0x01F11, 0x0300}, {0x01F14, 0x01F10, 0x0301},
    {0x01F15, 0x01F11, 0x0301}, {0x01F18, 0x00395, 0x0313}, {0x01F19, 0x00395, 0x0314}, {0x01F1A, 0x01F18, 0x0300}, {0x01F1B, 0x01F19, 0x0300},
    {0x01F1C, 0x01F18, 0x0301}, {0x01F1D, 0x01F19, 0x0301}, {0x01F20, 0x003B7, 0x0313}, {0x01F21, 0x003B7, 0x0314}, {0x01F22, 0x01F20, 0x0300},
    {0x01F23, 0x01F21, 0x0300}, {0x01F24, 0x01F20, 0x0301}, {0x01F25, 0x01F21, 0x0301}, {0x01F26, 0x01F20, 0x0342}, {0x01F27, 0x01F21, 0x0342},
    {0x01F28, 0x00397, 0x0313}, {0x01F29, 0x00397, 0x0314}, {0x01F2A, 0x01F28, 0x0300}, {0x01F2B, 0x01F29, 0x0300}, {0x01F2C, 0x01F28, 0x0301},
    {0x01F2D, 0x01F29, 0x0301}, {0x01F2E, 0x01F28, 0x0342}, {0x01F2F, 0x01F29, 0x0342}, {0x01F30, 0x003B9, 0x0313}, {0x01F31, 0x003B9, 0x0314},
    {0x01F32, 0x01F30, 0x0300}, {0x01F33, 0x01F31, 0x0300}, {0x01F34, 0x01F30, 0x0301}, {0x01F35, 0x01F31, 0x0301}, {0x01F36, 0x01F30, 0x0342},
    {0x01F37, 0x01F31, 0x0342}, {0x01F38, 0x00399, 0x0313}, {0x01F39, 0x00399, 0x0314}, {0x01F3A, 0x01F38, 0x0300}, {0x01F3B, 0x01F39, 0x0300},
    {0x01F3C, 0x01F38, 0x0301}, {0x01F3D, 0x01F39, 0x0301}, {0x01F3E, 0x01F38, 0x0342}, {0x01F3F, 0x01F39, 0x0342}, {0x01F40, 0x003BF, 0x0313},
    {0x01F41, 0x003BF, 0x0314}, {0x01F42, 0x01F40, 0x0300}, {0x01F43, 0x01F41, 0x0300}, {0x01F44, 0x01F40, 0x0301}, {0x01F45, 0x01F41, 0x0301},
    {0x01F48, 0x0039F, 0x0313}, {0x01F49, 0x0039F, 0x0314}, {0x01F4A, 0x01F48, 0x0300}, {0x01F4B, 0x01F49, 0x0300}, {0x01F4C, 0x01F48, 0x0301},
    {0x01F4D, 0x01F49, 0x0301}, {0x01F50, 0x003C5, 0x0313}, {0x01F51, 0x003C5, 0x0314}, {0x01F52, 0x01F50, 0x0300}, {0x01F53, 0x01F51, 0x0300},
    {0x01F54, 0x01F50, 0x0301}, {0x01F55, 0x01F51, 0x0301}, {0x01F56, 0x01F50, 0x0342}, {0x01F57, 0x01F51, 0x0342}, {0x01F59, 0x003A5, 0x0314},
    {0x01F5B, 0x01F59, 0x0300}, {0x01F5D, 0x01F59, 0x0301}, {0x01F5F, 0x01F59, 0x0342}, {0x01F60, 0x003C9, 0x0313}, {0x01F61, 0x003C9, 0x0314},
    {0x01F62, 0x01F60, 0x0300}, {0x01F63, 0x01F61, 0x0300}, {0x01F64, 0x01F60, 0x0301}, {0x01F65, 0x01F61, 0x0301}, {0x01F66, 0x01F60, 0x0342},
    {0x01F67, 0x01F61, 0x0342}, {0x01F68, 0x003A9, 0x0313}, {0x01F69, 0x003A9, 0x0314}, {0x01F6A, 0x01F68, 0x0300}, {0x01F6B, 0x01F69, 0x0300},
    {0x01F6C, 0x01F68, 0x0301}, {0x01F6D, 0x01F69, 0x0301}, {0x01F6E, 0x01F68, 0x0342}, {0x01F6F, 0x01F69, 0x0342}, {0x01F70, 0x003B1, 0x0300},
    {0x01F71, 0x003AC, 0x0000}, {0x01F72, 0x003B5, 0x0300}, {0x01F73, 0x003AD, 0x0000}, {0x01F74, 0x003B7, 0x0300}, {0x01F75, 0x003AE, 0x0000},
    {0x01F76, 0x003B9, 0x0300}, {0x01F77, 0x003AF, 0x0000}, {0x01F78, 0x003BF, 0x0300}, {0x01F79, 0x003CC, 0x0000}, {0x01F7A, 0x003C5, 0x0300},
    {0x01F7B, 0x003CD, 0x0000}, {0x01F7C, 0x003C9, 0x0300}, {0x01F7D, 0x003CE, 0x0000}, {0x01F80, 0x01F00, 0x0345}, {0x01F81, 0x01F01, 0x0345},
    {0x01F82, 0x01F02, 0x0345}, {0x01F83, 0x01F03, 0x0345}, {0x01F84, 0x01F04, 0x0345}, {0x01F85, 0x01F05, 0x0345}, {0x01F86, 0x01F06, 0x0345},
    {0x01F87, 0x01F07, 0x0345}, {0x01F88, 0x01F08, 0x0345}, {0x01F89, 0x01F09, 0x0345}, {0x01F8A, 0x01F0A, 0x0345}, {0x01F8B, 0x01F0B, 0x0345},
    {0x01F8C, 0x01F0C, 0x0345}, {0x01F8D, 0x01F0D, 0x0345}, {0x01F8E, 0x01F0E, 0x0345}, {0x01F8F, 0x01F0F, 0x0345}, {0x01F90, 0x01F20, 0x0345},
    {0x01F91, 0x01F21, 0x0345}, {0x01F92, 0x01F22, 0x0345}, {0x01F93, 0x01F23, 0x0345}, {0x01F94, 0x01F24, 0x0345}, {0x01F95, 0x01F25, 0x0345},
    {0x01F96, 0x01F26, 0x0345}, {0x01F97, 0x01F27, 0x0345}, {0x01F98, 0x01F28, 0x0345}, {0x01F99, 0x01F29, 0x0345}, {0x01F9A, 0x01F2A, 0x0345},
    {0x01F9B, 0x01F2B, 0x0345}, {0x01F9C, 0x01F2C, 0x0345}, {0x01F9D, 0x01F2D, 0x0345}, {0x01F9E, 0x01F2E, 0x0345}, {0x01F9F, 0x01F2F, 0x0345},
    {0x01FA0, 0x01F60, 0x0345}, {0x01FA1, 0x01F61, 0x0345}, {0x01FA2, 0x01F62, 0x0345}, {0x01FA3, 0x01F63, 0x0345}, {0x01FA4, 0x01F64, 0x0345},
    {0x01FA5, 0x01F65, 0x0345}, {0x01FA6, 0x01F66, 0x0345}, {0x01FA7, 0x01F67, 0x0345}, {0x01FA8, 0x01F68, 0x0345}, {0x01FA9, 0x01F69, 0x0345},
    {0x01FAA, 0x01F6A, 0x0345}, {0x01FAB, 0x01F6B, 0x0345}, {0x01FAC, 0x01F6C, 0x0345}, {0x01FAD, 0x01F6D, 0x0345}, {0x01FAE, 0x01F6E, 0x0345},
    {0x01FAF, 0x01F6F, 0x0345}, {0x01FB0, 0x003B1, 0x0306}, {0x01FB1, 0x003B1, 0x0304}, {0x01FB2, 0x01F70, 0x0345}, {0x01FB3, 0x003B1, 0x0345},
    {0x01FB4, 0x003AC, 0x0345}, {0x01FB6, 0x003B1, 0x0342}, {0x01FB7, 0x01FB6, 0x0345}, {0x01FB8, 0x00391, 0x0306}, {0x01FB9, 0x00391, 0x0304},
    {0x01FBA, 0x00391, 0x0300}, {0x01FBB, 0x00386, 0x0000}, {0x01FBC, 0x00391, 0x0345}, {0x01FBE, 0x003B9, 0x0000}, {0x01FC1, 0x000A8, 0x0342},
    {0x01FC2, 0x01F74, 0x0345}, {0x01FC3, 0x003B7, 0x0345}, {0x01FC4, 0x003AE, 0x0345}, {0x01FC6, 0x003B7, 0x0342}, {0x01FC7, 0x01FC6, 0x0345},
    {0x01FC8, 0x00395, 0x0300}, {0x01FC9, 0x00388, 0x0000}, {0x01FCA, 0x00397, 0x0300}, {0x01FCB, 0x00389, 0x0000}, {0x01FCC, 0x00397, 0x0345},
    {0x01FCD, 0x01FBF, 0x0300}, {0x01FCE, 0x01FBF, 0x0301}, {0x01FCF, 0x01FBF, 0x0342}, {0x01FD0, 0x003B9, 0x0306}, {0x01FD1, 0x003B9, 0x0304},
    {0x01FD2, 0x003CA, 0x0300}, {0x01FD3, 0x00390, 0x0000}, {0x01FD6, 0x003B9, 0x0342}, {0x01FD7, 0x003CA, 0x0342}, {0x01FD8, 0x00399, 0x0306},
    {0x01FD9, 0x00399, 0x0304}, {0x01FDA, 0x00399, 0x0300}, {0x01FDB, 0x0038A, 0x0000}, {0x01FDD, 0x01FFE, 0x0300}, {0x01FDE, 0x01FFE, 0x0301},
    {0x01FDF, 0x01FFE, 0x0342}, {0x01FE0, 0x003C5, 0x0306}, {0x01FE1, 0x003C5, 0x0304}, {0x01FE2, 0x003CB, 0x0300}, {0x01FE3, 0x003B0, 0x0000},
    {0x01FE4, 0x003C1, 0x0313}, {0x01FE5, 0x003C1, 0x0314}, {0x01FE6, 0x003C5, 0x0342}, {0x01FE7, 0x003CB, 0x0342}, {0x01FE8, 0x003A5, 0x0306},
    {0x01FE9, 0x003A5, 0x0304}, {0x01FEA, 0x003A5, 0x0300}, {0x01FEB, 0x0038E, 0x0000}, {0x01FEC, 0x003A1, 0x0314}, {0x01FED, 0x000A8, 0x0300},
    {0x01FEE, 0x00385, 0x0000}, {0x01FEF, 0x00060, 0x0000}, {0x01FF2, 0x01F7C, 0x0345}, {0x01FF3, 0x003C9, 0x0345}, {0x01FF4, 0x003CE, 0x0345},
    {0x01FF6, 0x003C9, 0x0342}, {0x01FF7, 0x01FF6, 0x0345}, {0x01FF8, 0x0039F, 0x0300}, {0x01FF9, 0x0038C, 0x0000}, {0x01FFA, 0x003A9, 0x0300},
    {0x01FFB, 0x0038F, 0x0000}, {0x01FFC, 0x003A9, 0x0345}, {0x01FFD, 0x000B4, 0x0000}, {0x02000, 0x02002, 0x0000}, {0x02001, 0x02003, 0x0000},
    {0x02126, 0x003A9, 0x0000}, {0x0212A, 0x0004B, 0x0000}, {0x0212B, 0x000C5, 0x0000}, {0x0219A, 0x02190, 0x0338}, {0x0219B, 0x02192, 0x0338},
    {0x021AE, 0x02194, 0x0338}, {0x021CD, 0x021D0, 0x0338}, {0x021CE, 0x021D4, 0x0338}, {0x021CF, 0x021D2, 0x0338}, {0x02204, 0x02203, 0x0338},
    {0x02209, 0x02208, 0x0338}, {0x0220C, 0x0220B, 0x0338}, {0x02224, 0x02223, 0x0338}, {0x02226, 0x02225, 0x0338}, {0x02241, 0x0223C, 0x0338},
    {0x02244, 0x02243, 0x0338}, {0x02247, 0x02245, 0x0338}, {0x02249, 0x02248, 0x0338}, {0x02260, 0x0003D, 0x0338}, {0x02262, 0x02261, 0x0338},
    {0x0226D, 0x0224D, 0x0338}, {0x0226E, 0x0003C, 0x0338}, {0x0226F, 0x0003E, 0x0338}, {0x02270, 0x02264, 0x0338}, {0x02271, 0x02265, 0x0338},
    {0x02274, 0x02272, 0x0338}, {0x02275, 0x02273, 0x0338}, {0x02278, 0x02276, 0x0338}, {0x02279, 0x02277, 0x0338}, {0x02280, 0x0227A, 0x0338},
    {0x02281, 0x0227B, 0x0338}, {0x02284, 0x02282, 0x0338}, {0x02285, 0x02283, 0x0338}, {0x02288, 0x02286, 0x0338}, {0x02289, 0x02287, 0x0338},
    {0x022AC, 0x022A2, 0x0338}, {0x022AD, 0x022A8, 0x0338}, {0x022AE, 0x022A9, 0x0338}, {0x022AF, 0x022AB, 0x0338}, {0x022E0, 0x0227C, 0x0338},
    {0x022E1, 0x0227D, 0x0338}, {0x022E2, 0x02291, 0x0338}, {0x022E3, 0x02292, 0x0338}, {0x022EA, 0x022B2, 0x0338}, {0x022EB, 0x022B3, 0x0338},
    {0x022EC, 0x022B4, 0x0338}, {0x022ED, 0x022B5, 0x0338}, {0x02329, 0x03008, 0x0000}, {0x0232A, 0x03009, 0x0000}, {0x02ADC, 0x02ADD, 0x0338},
    {0x0304C, 0x0304B, 0x3099}, {0x0304E, 0x0304D, 0x3099}, {0x03050, 0x0304F, 0x3099}, {0x03052, 0x03051, 0x3099}, {0x03054, 0x03053, 0x3099},
    {0x03056, 0x03055, 0x3099}, {0x03058, 0x03057, 0x3099}, {0x0305A, 0x03059, 0x3099}, {0x0305C, 0x0305B, 0x3099}, {0x0305E, 0x0305D, 0x3099},
    {0x03060, 0x0305F, 0x3099}, {0x03062, 0x03061, 0x3099}, {0x03065, 0x03064, 0x3099}, {0x03067, 0x03066, 0x3099}, {0x03069, 0x03068, 0x3099},
    {0x03070, 0x0306F, 0x3099}, {0x03071, 0x0306F, 0x309A}, {0x03073, 0x03072, 0x3099}, {0x03074, 0x03072, 0x309A}, {0x03076, 0x03075, 0x3099},
    {0x03077, 0x03075, 0x309A}, {0x03079, 0x03078, 0x3099}, {0x0307A, 0x03078, 0x309A}, {0x0307C, 0x0307B, 0x3099}, {0x0307D, 0x0307B, 0x309A},
    {0x03094, 0x03046, 0x3099}, {0x0309E, 0x0309D, 0x3099}, {0x030AC, 0x030AB, 0x3099}, {0x030AE, 0x030AD, 0x3099}, {0x030B0, 0x030AF, 0x3099},
    {0x030B2, 0x030B1, 0x3099}, {0x030B4, 0x030B3, 0x3099}, {0x030B6, 0x030B5, 0x3099}, {0x030B8, 0x030B7, 0x3099}, {0x030BA, 0x030B9, 0x3099},
    {0x030BC, 0x030BB, 0x3099}, {0x030BE, 0x030BD, 0x3099}, {0x030C0, 0x030BF, 0x3099}, {0x030C2, 0x030C1, 0x3099}, {0x030C5, 0x030C4, 0x3099},
    {0x030C7, 0x030C6, 0x3099}, {0x030C9, 0x030C8, 0x3099}, {0x030D0, 0x030CF, 0x3099}, {0x030D1, 0x030CF, 0x309A}, {0x030D3, 0x030D2, 0x3099},
    {0x030D4, 0x030D2, 0x309A}, {0x030D6, 0x030D5, 0x3099}, {0x030D7, 0x030D5, 0x309A}, {0x030D9, 0x030D8, 0x3099}, {0x030DA, 0x030D8, 0x309A},
    {0x030DC, 0x030DB, 0x3099}, {0x030DD, 0x030DB, 0x309A}, {0x030F4, 0x030A6, 0x3099}, {0x030F7, 0x030EF, 0x3099}, {0x030F8, 0x030F0, 0x3099},
    {0x030F9, 0x030F1, 0x3099}, {0x030FA, 0x030F2, 0x3099}, {0x030FE, 0x030FD, 0x3099}, {0x0FB1D, 0x005D9, 0x05B4}, {0x0FB1F, 0x005F2, 0x05B7},
    {0x0FB2A, 0x005E9, 0x05C1}, {0x0FB2B, 0x005E9, 0x05C2}, {0x0FB2C, 0x0FB49, 0x05C1}, {0x0FB2D, 0x0FB49, 0x05C2}, {0x0FB2E, 0x005D0, 0x05B7},
    {0x0FB2F, 0x005D0, 0x05B8}, {0x0FB30, 0x005D0, 0x05BC}, {0x0FB31, 0x005D1, 0x05BC}, {0x0FB32, 0x005D2, 0x05BC}, {0x0FB33, 0x005D3, 0x05BC},
    {0x0FB34, 0x005D4, 0x05BC}, {0x0FB35, 0x005D5, 0x05BC}, {0x0FB36, 0x005D6, 0x05BC}, {0x0FB38, 0x005D8, 0x05BC}, {0x0FB39, 0x005D9, 0x05BC},
    {0x0FB3A, 0x005DA, 0x05BC}, {0x0FB3B, 0x005DB, 0x05BC}, {0x0FB3C, 0x005DC, 0x05BC}, {0x0FB3E, 0x005DE, 0x05BC}, {0x0FB40, 0x005E0, 0x05BC},
    {0x0FB41, 0x005E1, 0x05BC}, {0x0FB43, 0x005E3, 0x05BC}, {0x0FB44, 0x005E4, 0x05BC}, {0x0FB46, 0x005E6, 0x05BC}, {0x0FB47, 0x005E7, 0x05BC},
    {0x0FB48, 0x005E8, 0x05BC}, {0x0FB49, 0x005E9, 0x05BC}, {0x0FB4A, 0x005EA, 0x05BC}, {0x0FB4B, 0x005D5, 0x05B9}, {0x0FB4C, 0x005D1, 0x05BF},
    {0x0FB4D, 0x005DB, 0x05BF}, {0x0FB4E, 0x005E4, 0x05BF}, {0x1109A, 0x11099, 0x110BA}, {0x1109C, 0x1109B, 0x110BA}, {0x110AB, 0x110A5, 0x110BA},
    {0x1134B, 0x11347, 0x1133E}, {0x1134C, 0x11347, 0x11357}, {0x114BB, 0x114B9, 0x114BA}, {0x114BC, 0x114B9, 0x114B0}, {0x114BE, 0x114B9, 0x114BD},
    {0x115BA, 0x115B8, 0x115AF}, {0x115BB, 0x115B9, 0x115AF}, {0x11938, 0x11935, 0x11930}, {0x1D15E, 0x1D157, 0x1D165}, {0x1D15F, 0x1D158, 0x1D165},
    {0x1D160, 0x1D15F, 0x1D16E}, {0x1D161, 0x1D15F, 0x1D16F}, {0x1D162, 0x1D15F, 0x1D170}, {0x1D163, 0x1D15F, 0x1D171}, {0x1D164, 0x1D15F, 0x1D172},
    {0x1D1BB, 0x1D1B9, 0x1D165}, {0x1D1BC, 0x1D1BA, 0x1D165}, {0x1D1BD, 0x1D1BB, 0x1D16E}, {0x1D1BE, 0x1D1BC, 0x1D16E}, {0x1D1BF, 0x1D1BB, 0x1D16F},
    {0x1D1C0, 0x1D1BC, 0x1D16F},
};
static const struct { const char *name; uint32_t cp; uint8_t legacy; } html_ent[259] = {
    {"AElig", 0x00C6, 1}, {"AMP", 0x0026, 1}, {"Aacute", 0x00C1, 1}, {"Acirc", 0x00C2, 1}, {"Agrave", 0x00C0, 1},
    {"Alpha", 0x0391, 0}, {"Aring", 0x00C5, 1}, {"Atilde", 0x00C3, 1}, {"Auml", 0x00C4, 1}, {"Beta", 0x0392, 0},
    {"COPY", 0x00A9, 1}, {"Ccedil", 0x00C7, 1}, {"Chi", 0x03A7, 0}, {"Dagger", 0x2021, 0}, {"Delta", 0x0394, 0},
    {"ETH", 0x00D0, 1}, {"Eacute", 0x00C9, 1}, {"Ecirc", 0x00CA, 1}, {"Egrave", 0x00C8, 1}, {"Epsilon", 0x0395, 0},
    {"Eta", 0x0397, 0}, {"Euml", 0x00CB, 1}, {"GT", 0x003E, 1}, {"Gamma", 0x0393, 0}, {"Iacute", 0x00CD, 1},
    {"Icirc", 0x00CE, 1}, {"Igrave", 0x00CC, 1}, {"Iota", 0x0399, 0}, {"Iuml", 0x00CF, 1}, {"Kappa", 0x039A, 0},
    {"LT", 0x003C, 1}, {"Lambda", 0x039B, 0}, {"Mu", 0x039C, 0}, {"Ntilde", 0x00D1, 1}, {"Nu", 0x039D, 0},
    {"OElig", 0x0152, 0}, {"Oacute", 0x00D3, 1}, {"Ocirc", 0x00D4, 1}, {"Ograve", 0x00D2, 1}, {"Omega", 0x03A9, 0},
    {"Omicron", 0x039F, 0}, {"Oslash", 0x00D8, 1}, {"Otilde", 0x00D5, 1}, {"Ouml", 0x00D6, 1}, {"Phi", 0x03A6, 0},
    {"Pi", 0x03A0, 0}, {"Prime", 0x2033, 0}, {"Psi", 0x03A8, 0}, {"QUOT", 0x0022, 1}, {"REG", 0x00AE, 1},
    {"Rho", 0x03A1, 0}, {"Scaron", 0x0160, 0}, {"Sigma", 0x03A3, 0}, {"THORN", 0x00DE, 1}, {"Tau", 0x03A4, 0},
    {"Theta", 0x0398, 0}, {"Uacute", 0x00DA, 1}, {"Ucirc", 0x00DB, 1}, {"Ugrave", 0x00D9, 1}, {"Upsilon", 0x03A5, 0},
    {"Uuml", 0x00DC, 1}, {"Xi", 0x039E, 0}, {"Yacute", 0x00DD, 1}, {"Yuml", 0x0178, 0}, {"Zeta", 0x0396, 0},
    {"aacute", 0x00E1, 1}, {"acirc", 0x00E2, 1}, {"acute", 0x00B4, 1}, {"aelig", 0x00E6, 1}, {"agrave", 0x00E0, 1},
    {"alefsym", 0x2135, 0}, {"alpha", 0x03B1, 0}, {"amp", 0x0026, 1}, {"and", 0x2227, 0}, {"ang", 0x2220, 0},
    {"apos", 0x0027, 0}, {"aring", 0x00E5, 1}, {"asymp", 0x2248, 0}, {"atilde", 0x00E3, 1}, {"auml", 0x00E4, 1},
    {"bdquo", 0x201E, 0}, {"beta", 0x03B2, 0}, {"brvbar", 0x00A6, 1}, {"bull", 0x2022, 0}, {"cap", 0x2229, 0},
    {"ccedil", 0x00E7, 1}, {"cedil", 0x00B8, 1}, {"cent", 0x00A2, 1}, {"chi", 0x03C7, 0}, {"circ", 0x02C6, 0},
    {"clubs", 0x2663, 0}, {"cong", 0x2245, 0}, {"copy", 0x00A9, 1}, {"crarr", 0x21B5, 0}, {"cup", 0x222A, 0},
    {"curren", 0x00A4, 1}, {"dArr", 0x21D3, 0}, {"dagger", 0x2020, 0}, {"darr", 0x2193, 0}, {"deg", 0x00B0, 1},
    {"delta", 0x03B4, 0}, {"diams", 0x2666, 0}, {"divide", 0x00F7, 1}, {"eacute", 0x00E9, 1}, {"ecirc", 0x00EA, 1},
    {"egrave", 0x00E8, 1}, {"empty", 0x2205, 0}, {"emsp", 0x2003, 0}, {"ensp", 0x2002, 0}, {"epsilon", 0x03B5, 0},
    {"equiv", 0x2261, 0}, {"eta", 0x03B7, 0}, {"eth", 0x00F0, 1}, {"euml", 0x00EB, 1}, {"euro", 0x20AC, 0},
    {"exist", 0x2203, 0}, {"fnof", 0x0192, 0}, {"forall", 0x2200, 0}, {"frac12", 0x00BD, 1}, {"frac14", 0x00BC, 1},
    {"frac34", 0x00BE, 1}, {"frasl", 0x2044, 0}, {"gamma", 0x03B3, 0}, {"ge", 0x2265, 0}, {"gt", 0x003E, 1},
    {"hArr", 0x21D4, 0}, {"harr", 0x2194, 0}, {"hearts", 0x2665, 0}, {"hellip", 0x2026, 0}, {"iacute", 0x00ED, 1},
    {"icirc", 0x00EE, 1}, {"iexcl", 0x00A1, 1}, {"igrave", 0x00EC, 1}, {"image", 0x2111, 0}, {"infin", 0x221E, 0},
    {"int", 0x222B, 0}, {"iota", 0x03B9, 0}, {"iquest", 0x00BF, 1}, {"isin", 0x2208, 0}, {"iuml", 0x00EF, 1},
    {"kappa", 0x03BA, 0}, {"lArr", 0x21D0, 0}, {"lambda", 0x03BB, 0}, {"lang", 0x27E8, 0}, {"laquo", 0x00AB, 1},
    {"larr", 0x2190, 0}, {"lceil", 0x2308, 0}, {"ldquo", 0x201C, 0}, {"le", 0x2264, 0}, {"lfloor", 0x230A, 0},
    {"lowast", 0x2217, 0}, {"loz", 0x25CA, 0}, {"lrm", 0x200E, 0}, {"lsaquo", 0x2039, 0}, {"lsquo", 0x2018, 0},
    {"lt", 0x003C, 1}, {"macr", 0x00AF, 1}, {"mdash", 0x2014, 0}, {"micro", 0x00B5, 1}, {"middot", 0x00B7, 1},
    {"minus", 0x2212, 0}, {"mu", 0x03BC, 0}, {"nabla", 0x2207, 0}, {"nbsp", 0x00A0, 1}, {"ndash", 0x2013, 0},
    {"ne", 0x2260, 0}, {"ni", 0x220B, 0}, {"not", 0x00AC, 1}, {"notin", 0x2209, 0}, {"nsub", 0x2284, 0},
    {"ntilde", 0x00F1, 1}, {"nu", 0x03BD, 0}, {"oacute", 0x00F3, 1}, {"ocirc", 0x00F4, 1}, {"oelig", 0x0153, 0},
    {"ograve", 0x00F2, 1}, {"oline", 0x203E, 0}, {"omega", 0x03C9, 0}, {"omicron", 0x03BF, 0}, {"oplus", 0x2295, 0},
    {"or", 0x2228, 0}, {"ordf", 0x00AA, 1}, {"ordm", 0x00BA, 1}, {"oslash", 0x00F8, 1}, {"otilde", 0x00F5, 1},
    {"otimes", 0x2297, 0}, {"ouml", 0x00F6, 1}, {"para", 0x00B6, 1}, {"part", 0x2202, 0}, {"permil", 0x2030, 0},
    {"perp", 0x22A5, 0}, {"phi", 0x03C6, 0}, {"pi", 0x03C0, 0}, {"piv", 0x03D6, 0}, {"plusmn", 0x00B1, 1},
    {"pound", 0x00A3, 1}, {"prime", 0x2032, 0}, {"prod", 0x220F, 0}, {"prop", 0x221D, 0}, {"psi", 0x03C8, 0},
    {"quot", 0x0022, 1}, {"rArr", 0x21D2, 0}, {"radic", 0x221A, 0}, {"rang", 0x27E9, 0}, {"raquo", 0x00BB, 1},
    {"rarr", 0x2192, 0}, {"rceil", 0x2309, 0}, {"rdquo", 0x201D, 0}, {"real", 0x211C, 0}, {"reg", 0x00AE, 1},
    {"rfloor", 0x230B, 0}, {"rho", 0x03C1, 0}, {"rlm", 0x200F, 0}, {"rsaquo", 0x203A, 0}, {"rsquo", 0x2019, 0},
    {"sbquo", 0x201A, 0}, {"scaron", 0x0161, 0}, {"sdot", 0x22C5, 0}, {"sect", 0x00A7, 1}, {"shy", 0x00AD, 1},
    {"sigma", 0x03C3, 0}, {"sigmaf", 0x03C2, 0}, {"sim", 0x223C, 0}, {"spades", 0x2660, 0}, {"sub", 0x2282, 0},
    {"sube", 0x2286, 0}, {"sum", 0x2211, 0}, {"sup", 0x2283, 0}, {"sup1", 0x00B9, 1}, {"sup2", 0x00B2, 1},
    {"sup3", 0x00B3, 1}, {"supe", 0x2287, 0}, {"szlig", 0x00DF, 1}, {"tau", 0x03C4, 0}, {"there4", 0x2234, 0},
    {"theta", 0x03B8, 0}, {"thetasym", 0x03D1, 0}, {"thinsp", 0x2009, 0}, {"thorn", 0x00FE, 1}, {"tilde", 0x02DC, 0},
    {"times", 0x00D7, 1}, {"trade", 0x2122, 0}, {"uArr", 0x21D1, 0}, {"uacute", 0x00FA, 1}, {"uarr", 0x2191, 0},
    {"ucirc", 0x00FB, 1}, {"ugrave", 0x00F9, 1}, {"uml", 0x00A8, 1}, {"upsih", 0x03D2, 0}, {"upsilon", 0x03C5, 0},
    {"uuml", 0x00FC, 1}, {"weierp", 0x2118, 0}, {"xi", 0x03BE, 0}, {"yacute", 0x00FD, 1}, {"yen", 0x00A5, 1},
    {"yuml", 0x00FF, 1}, {"zeta", 0x03B6, 0}, {"zwj", 0x200D, 0}, {"zwnj", 0x200C, 0},
};
/* END GENERATED: data/gen_unicode_tables.py */

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static unsigned uc_flags(uint32_t cp)
{
    /* The last run starting at or before cp; uclass[0] starts at U+0000. */
    size_t lo = 0, hi = N_OF(uclass);
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (uclass[mid] >> 8 <= cp) lo = mid;
        else hi = mid;
    }
    return uclass[lo] & 0xFF;
}

/* Simple (one character) lowercase mapping, as Python's str.lower() and
 * Rust's char::to_lowercase apply it. U+0130 İ, whose lowercase is two
 * characters, is left to the callers. */
static uint32_t uc_lower(uint32_t cp)
{
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    size_t lo = 0, hi = N_OF(ulower);
    if (cp < ulower[0].first) return cp;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (ulower[mid].first <= cp) lo = mid;
        else hi = mid;
    }
    if (cp <= ulower[lo].last && (cp - ulower[lo].first) % ulower[lo].step == 0)
        return (uint32_t)((int32_t)cp + ulower[lo].delta);
    return cp;
}

/* One level of canonical decomposition: 1 and the parts, or 0. */
static int uc_decompose(uint32_t cp, uint32_t *first, uint32_t *second)
{
    size_t lo = 0, hi = N_OF(udecomp);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (udecomp[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo == N_OF(udecomp) || udecomp[lo][0] != cp) return 0;
    *first = udecomp[lo][1];
    *second = udecomp[lo][2];
    return 1;
}

/* ---- 11b. UTF-8 and code point buffers ----------------------------------- */

/* Decode one code point at s[*i] as Python's strict UTF-8 decoder does (no
 * overlong forms, no surrogates, nothing above U+10FFFF: the rules of
 * utf8_valid_len in section 2). Returns 0 on a bad sequence, leaving *i at
 * its first byte. Code points are written back with utf8_encode. */
static int utf8_next(const uint8_t *s, size_t n, size_t *i, uint32_t *cp)
{
    static const uint8_t lead_bits[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    size_t len = utf8_valid_len(s + *i, n - *i);
    if (len == 0) return 0;
    uint32_t c = s[*i] & lead_bits[len];
    for (size_t k = 1; k < len; k++) c = c << 6 | (s[*i + k] & 0x3Fu);
    *cp = c;
    *i += len;
    return 1;
}

/* A growable array of code points. Each pipeline stage reserves the most
 * it can write up front (a stage expands a text by at most 3×), then
 * appends without further checks. */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} cpbuf;

static int cpbuf_reserve(cpbuf *b, size_t cap)
{
    if (cap <= b->cap) return 1;
    size_t bytes;
    if (!sc_mul_ok(cap, sizeof(uint32_t), &bytes)) return 0;
    uint32_t *v = realloc(b->v, bytes);
    if (!v) return 0;
    b->v = v;
    b->cap = cap;
    return 1;
}

static void cpbuf_push(cpbuf *b, uint32_t cp)
{
    SC_ASSERT(b->n < b->cap, "code point buffer reserved too small (%zu)", b->cap);
    b->v[b->n++] = cp;
}

/* ---- 11c. Vocabularies ---------------------------------------------------- */

/* Token strings by id, and an open-addressing hash table from string to id.
 * Strings live in the tokenizer's arena; a token string is any byte string
 * (its length is stored, so it may even contain NUL). */
typedef struct {
    const char **str;   /* (V) token strings, NUL-terminated */
    uint32_t *len;      /* (V) their byte lengths */
    int32_t *slot;      /* (cap) id whose string hashes here, -1 = empty */
    size_t cap;         /* power of two, at least 2 V */
    int64_t n;          /* V: number of ids (all of 0..n-1 are set once loaded) */
} vocab;

#define SC_TOK_MAX_VOCAB (1 << 22)   /* tokens or merges in one file */
#define SC_TOK_MAX_TOKEN 1024        /* bytes in one token string */
#define SC_TOK_MAX_FILE (64u << 20)  /* bytes in one tokenizer file */

static uint64_t hash_bytes(const void *p, size_t n)
{
    /* FNV-1a: simple, and good enough for short keys. */
    const uint8_t *s = p;
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001B3ull;
    return h;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

static int vocab_init(vocab *v, sc_arena *a, int64_t n)
{
    v->n = n;
    v->cap = pow2_at_least((size_t)n * 2);
    v->str = sc_arena_calloc(a, (size_t)n, sizeof *v->str);
    v->len = sc_arena_calloc(a, (size_t)n, sizeof *v->len);
    v->slot = sc_arena_alloc(a, v->cap * sizeof *v->slot);
    if (!v->str || !v->len || !v->slot) return 0;
    memset(v->slot, 0xFF, v->cap * sizeof *v->slot);
    return 1;
}

static int32_t vocab_find(const vocab *v, const char *s, size_t n)
{
    size_t mask = v->cap - 1;
    for (size_t h = hash_bytes(s, n) & mask;; h = (h + 1) & mask) {
        int32_t id = v->slot[h];
        if (id < 0) return -1;
        if (v->len[id] == n && memcmp(v->str[id], s, n) == 0) return id;
    }
}

/* Set token `id` to the string s (copied into the arena). Returns SC_OK, or
 * SC_EFORMAT with *other = the id already holding s, or SC_ENOMEM. */
static sc_status vocab_set(vocab *v, sc_arena *a, int32_t id, const char *s, size_t n, int32_t *other)
{
    SC_ASSERT(id >= 0 && id < v->n && !v->str[id], "vocabulary id %d set twice", (int)id);
    size_t mask = v->cap - 1, h = hash_bytes(s, n) & mask;
    for (; v->slot[h] >= 0; h = (h + 1) & mask) {
        int32_t old = v->slot[h];
        if (v->len[old] == n && memcmp(v->str[old], s, n) == 0) {
            *other = old;
            return SC_EFORMAT;
        }
    }
    char *copy = sc_arena_alloc(a, n + 1);
    if (!copy) return SC_ENOMEM;
    memcpy(copy, s, n);
    copy[n] = 0;
    v->str[id] = copy;
    v->len[id] = (uint32_t)n;
    v->slot[h] = id;
    return SC_OK;
}

/* ---- 11d. The tokenizer object; framing a row ---------------------------- */

/* Merge table of the BPE: the pair (left id, right id) → its rank (the line
 * of merges.txt, lower merges first) and the id of the merged token. */
typedef struct {
    uint64_t pair;      /* left << 32 | right */
    int32_t rank;       /* -1 = empty slot */
    int32_t merged;
} merge_slot;

/* The BPE word cache: a word (the UTF-8 bytes of one pre-token) → its ids.
 * Fixed capacity; when anything is full the whole cache is emptied, which
 * keeps it simple and its memory bounded. */
#define BPE_CACHE_WORDS (1 << 14)
#define BPE_CACHE_KEY_BYTES (BPE_CACHE_WORDS * 24)
#define BPE_CACHE_IDS (BPE_CACHE_WORDS * 6)
#define BPE_CACHE_MAX_WORD 64           /* longer words are not cached */
typedef struct {
    int32_t *slot;       /* (2 * BPE_CACHE_WORDS) entry index, -1 = empty */
    uint32_t (*entry)[4]; /* (BPE_CACHE_WORDS) key offset, key length, ids offset, ids count */
    char *keys;          /* (BPE_CACHE_KEY_BYTES) */
    int32_t *ids;        /* (BPE_CACHE_IDS) */
    uint32_t n_entries, n_key_bytes, n_ids;
} bpe_cache;

struct sc_tokenizer {
    sc_tok_kind kind;
    sc_tok_options opt;      /* resolved: max_length >= 2, pad_id in range */
    sc_arena arena;          /* everything below that lives as long as the tokenizer */
    vocab voc;
    int32_t begin_id, end_id; /* <|startoftext|> <|endoftext|>, or [CLS] [SEP] */

    /* BPE */
    merge_slot *merges;      /* (merges_cap) */
    size_t merges_cap;       /* power of two */
    int64_t n_merges;
    int32_t byte_id[256];    /* the token of byte b inside a word */
    int32_t byte_end_id[256]; /* the token of byte b ending a word (with </w>) */
    bpe_cache cache;

    /* WordPiece */
    int32_t unk_id;
    int lower_case, strip_accents, chinese_chars;
    size_t max_token_bytes;  /* longest vocabulary string: bounds the greedy search */

    /* Scratch, reused by every call (so one tokenizer serves one thread). */
    cpbuf text, work;        /* code points between pipeline stages */
    char *bytes;             /* UTF-8 of one word (4 bytes per code point + "##") */
    size_t bytes_cap;
    int32_t *ids;            /* content ids of the current text */
    size_t ids_n, ids_cap;
    int32_t *sym;            /* BPE symbols of the current word */
    size_t sym_cap;
};

/* Reserve the scratch for a text of n code points. */
static int scratch_reserve(sc_tokenizer *tok, size_t n)
{
    size_t n3, nb;
    if (!sc_mul_ok(n, 3, &n3) || !sc_add_ok(n3, 16, &n3)) return 0;
    if (!cpbuf_reserve(&tok->text, n3) || !cpbuf_reserve(&tok->work, n3)) return 0;
    if (!sc_mul_ok(n3, 4, &nb)) return 0;
    if (nb > tok->bytes_cap) {
        char *b = realloc(tok->bytes, nb);
        if (!b) return 0;
        tok->bytes = b;
        tok->bytes_cap = nb;
    }
    if (nb > tok->sym_cap) {
        int32_t *s = realloc(tok->sym, nb * sizeof *s);
        if (!s) return 0;
        tok->sym = s;
        tok->sym_cap = nb;
    }
    return 1;
}

/* Append one content id. Encoding stops early once the text is known to be
 * truncated (max_length - 1 content ids), so the buffer stays small. */
static int ids_push(sc_tokenizer *tok, int32_t id)
{
    if (tok->ids_n == tok->ids_cap) {
        size_t cap = tok->ids_cap ? tok->ids_cap * 2 : 128;
        int32_t *v = realloc(tok->ids, cap * sizeof *v);
        if (!v) return 0;
        tok->ids = v;
        tok->ids_cap = cap;
    }
    tok->ids[tok->ids_n++] = id;
    return 1;
}

static int ids_full(const sc_tokenizer *tok)
{
    return tok->ids_n >= (size_t)tok->opt.max_length - 1;
}

/* @book begin tok-frame */
/* One row of T = max_length ids: begin, the content, end, then padding;
 * mask is 1 on the real tokens. Content longer than T - 2 is cut so that
 * `end` stays last, as OpenAI's tokenize(truncate=True) and Hugging Face's
 * truncation=True both do. Returns the number of real tokens. */
static int frame_row(const sc_tokenizer *tok, const int32_t *content, size_t n_content,
                     int64_t *ids /* (T) */, int64_t *mask /* (T) or NULL */)
{
    int T = tok->opt.max_length;
    size_t keep = n_content < (size_t)T - 2 ? n_content : (size_t)T - 2;
    int n = 0;
    ids[n++] = tok->begin_id;
    for (size_t i = 0; i < keep; i++) ids[n++] = content[i];
    ids[n++] = tok->end_id;
    for (int t = 0; t < T; t++) {
        if (t >= n) ids[t] = tok->opt.pad_id;
        if (mask) mask[t] = t < n;
    }
    return n;
}
/* @book end tok-frame */

/* ---- 11e. HTML unescape --------------------------------------------------- */
/*
 * Python's html.unescape, which OpenAI's basic_clean applies twice:
 *   &#123;  &#x7B;   numeric references (';' optional), with the HTML5
 *                    repairs: 0 → U+FFFD, 0x80..0x9F → Windows-1252, 0x0D →
 *                    CR, surrogates or > U+10FFFF → U+FFFD, and the code
 *                    points HTML forbids (controls, U+FDD0.., U+xFFFE/F)
 *                    → nothing;
 *   &name;           named references: here the HTML 4.01 names + &apos;
 *                    (table html_ent; Python knows all 2231 HTML5 names,
 *                    the others such as &NotEqual; stay as they are here);
 *   &nameXYZ         a legacy name without ';' followed by more text:
 *                    the longest legacy prefix is decoded (&notit → ¬it).
 * Output is never longer than input, and the result is not rescanned.
 */
static const uint16_t cp1252_80_9f[32] = {
    0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
    0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178};

/* What &#num; becomes: a code point, or -1 for nothing. */
static int64_t html_numeric(uint64_t num)
{
    if (num == 0) return 0xFFFD;
    if (num == 0x0D) return 0x0D;
    if (num >= 0x80 && num <= 0x9F) return cp1252_80_9f[num - 0x80];
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return 0xFFFD;
    if ((num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) || num == 0x7F ||
        (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE)
        return -1;
    return (int64_t)num;
}

static int hex_value(uint32_t c)
{
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* The named reference whose name is s[0..n) (ASCII, possibly ending in
 * ';'), or NULL. A name without ';' matches only the legacy names. */
static int html_find_entity(const uint32_t *s, size_t n, uint32_t *cp)
{
    int semi = n > 0 && s[n - 1] == ';';
    size_t len = n - (size_t)semi;
    char name[40];
    if (len == 0 || len >= sizeof name) return 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t c = s[i];
        int alnum = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        if (!alnum) return 0; /* every name in the table is ASCII letters and digits */
        name[i] = (char)c;
    }
    name[len] = 0;
    size_t lo = 0, hi = N_OF(html_ent);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(html_ent[mid].name, name);
        if (c == 0) {
            if (!semi && !html_ent[mid].legacy) return 0;
            *cp = html_ent[mid].cp;
            return 1;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

/* Decode the reference at in[i] == '&'; append its replacement to out and
 * return the number of code points consumed (0 = not a reference). */
static size_t html_reference(const uint32_t *in, size_t n, size_t i, cpbuf *out)
{
    size_t j = i + 1;
    if (j < n && in[j] == '#') {
        int hex = j + 1 < n && (in[j + 1] == 'x' || in[j + 1] == 'X');
        size_t k = j + 1 + (size_t)hex, start = k;
        uint64_t num = 0;
        for (; k < n && (hex ? hex_value(in[k]) >= 0 : in[k] >= '0' && in[k] <= '9'); k++) {
            num = num * (hex ? 16 : 10) + (uint64_t)(hex ? hex_value(in[k]) : (int)(in[k] - '0'));
            if (num > 0x110000) num = 0x110000; /* saturate: anything larger is U+FFFD */
        }
        if (k == start) return 0;
        if (k < n && in[k] == ';') k++;
        int64_t cp = html_numeric(num);
        if (cp >= 0) cpbuf_push(out, (uint32_t)cp);
        return k - i;
    }
    /* A name: up to 32 characters other than \t \n \f space < & # ;, then
     * an optional ';' (the pattern of Python's html module). */
    size_t k = j;
    while (k < n && k - j < 32 && in[k] != '\t' && in[k] != '\n' && in[k] != '\f' && in[k] != ' ' &&
           in[k] != '<' && in[k] != '&' && in[k] != '#' && in[k] != ';')
        k++;
    if (k == j) return 0;
    if (k < n && in[k] == ';') k++;
    uint32_t cp;
    if (html_find_entity(in + j, k - j, &cp)) {
        cpbuf_push(out, cp);
        return k - i;
    }
    /* The longest legacy name that is a proper prefix (at least 2 chars). */
    for (size_t len = k - j - 1; len >= 2; len--) {
        if (html_find_entity(in + j, len, &cp)) {
            cpbuf_push(out, cp);
            return 1 + len;
        }
    }
    return 0;
}

/* out = html.unescape(in); out must have room for in->n code points. */
static void html_unescape(const cpbuf *in, cpbuf *out)
{
    out->n = 0;
    for (size_t i = 0; i < in->n;) {
        size_t used = in->v[i] == '&' ? html_reference(in->v, in->n, i, out) : 0;
        if (used) {
            i += used;
        } else {
            cpbuf_push(out, in->v[i]);
            i++;
        }
    }
}

/* ---- 11f. OpenAI's clean-up, lower-casing and pre-tokenisation ----------- */

/* Python's str.isspace(): White_Space plus U+001C..U+001F, which the
 * `regex` module's \s does not include. */
static int py_isspace(uint32_t cp)
{
    return (cp >= 0x1C && cp <= 0x1F) || (uc_flags(cp) & UC_WS);
}

/* whitespace_clean(basic_clean(text)) without ftfy: strip(), collapse runs
 * of \s to one space, strip() again. in → out. */
static void clip_whitespace(const cpbuf *in, cpbuf *out)
{
    size_t a = 0, b = in->n;
    while (a < b && py_isspace(in->v[a])) a++;
    while (b > a && py_isspace(in->v[b - 1])) b--;
    out->n = 0;
    for (size_t i = a; i < b; i++) {
        if (uc_flags(in->v[i]) & UC_WS) {
            while (i + 1 < b && (uc_flags(in->v[i + 1]) & UC_WS)) i++;
            cpbuf_push(out, ' ');
        } else {
            cpbuf_push(out, in->v[i]);
        }
    }
    /* The second strip() can only remove the spaces collapse produced at
     * the ends, and U+001C..1F next to them. */
    a = 0;
    b = out->n;
    while (a < b && py_isspace(out->v[a])) a++;
    while (b > a && py_isspace(out->v[b - 1])) b--;
    memmove(out->v, out->v + a, (b - a) * sizeof *out->v);
    out->n = b - a;
}

/* Python's final-sigma rule: Σ at i lowers to ς when a cased letter
 * precedes it and none follows (case-ignorable characters are skipped). */
static int final_sigma(const uint32_t *s, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && (uc_flags(s[j - 1]) & UC_CI)) j--;
    if (j == 0 || !(uc_flags(s[j - 1]) & UC_CASED)) return 0;
    for (j = i + 1; j < n && (uc_flags(s[j]) & UC_CI); j++) {}
    return j == n || !(uc_flags(s[j]) & UC_CASED);
}

/* out = str.lower(in): one code point at a time, plus İ → i + U+0307 and
 * the final sigma. out needs room for 2 × in->n. */
static void python_lower(const cpbuf *in, cpbuf *out)
{
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        if (c == 0x130) {
            cpbuf_push(out, 'i');
            cpbuf_push(out, 0x307);
        } else if (c == 0x3A3) {
            cpbuf_push(out, final_sigma(in->v, in->n, i) ? 0x3C2 : 0x3C3);
        } else {
            cpbuf_push(out, uc_lower(c));
        }
    }
}

/* Classes of the pre-tokenisation pattern. U+0345 is the one code point
 * the `regex` module's IGNORECASE matching puts in no class at all (it is
 * Mn, but its case fold ι is a letter, so the negated class rejects it);
 * like white space it is skipped. */
enum { PT_SPACE, PT_LETTER, PT_NUMBER, PT_OTHER };

static int pt_class(uint32_t cp)
{
    unsigned f = uc_flags(cp);
    if (f & UC_L) return PT_LETTER;
    if (f & UC_N) return PT_NUMBER;
    if ((f & UC_WS) || cp == 0x345) return PT_SPACE;
    return PT_OTHER;
}

/* Does s[i..] start with the ASCII literal lit, under the pattern's
 * IGNORECASE? The text is already lower-case; the one other code point
 * that folds to a letter of our literals is ſ (U+017F) → s. */
static size_t match_literal(const uint32_t *s, size_t n, size_t i, const char *lit)
{
    size_t k = 0;
    for (; lit[k]; k++) {
        if (i + k >= n) return 0;
        uint32_t c = s[i + k];
        if (c != (uint8_t)lit[k] && !(lit[k] == 's' && c == 0x17F)) return 0;
    }
    return k;
}

/* @book begin clip-pretokenize */
/* The length of the pre-token starting at s[i], as the first alternative
 * of OpenAI's pattern that matches there:
 *   <|startoftext|> | <|endoftext|> | 's|'t|'re|'ve|'m|'ll|'d
 *   | [\p{L}]+ | [\p{N}] | [^\s\p{L}\p{N}]+
 * 0 means s[i] starts no token (white space): skip it. */
static size_t clip_pretoken(const uint32_t *s, size_t n, size_t i)
{
    static const char *const literal[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re",
                                          "'ve", "'m", "'ll", "'d"};
    for (size_t k = 0; k < N_OF(literal); k++) {
        size_t len = match_literal(s, n, i, literal[k]);
        if (len) return len;
    }
    int cls = pt_class(s[i]);
    if (cls == PT_SPACE) return 0;
    if (cls == PT_NUMBER) return 1;
    size_t j = i + 1;
    while (j < n && pt_class(s[j]) == cls) j++;
    return j - i;
}
/* @book end clip-pretokenize */

/* ---- 11g. Byte-level BPE with a word cache ------------------------------- */

/* The 256 bytes as the printable characters of GPT-2's bytes_to_unicode():
 * bytes that print as themselves in Latin-1 (! .. ~, ¡ .. ¬, ® .. ÿ) keep
 * their code point; the other 68 become U+0100, U+0101, ... in byte order.
 * CLIP's ids 0..255 list them printable first, then the others. */
static int byte_is_printable(int b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

static uint32_t byte_char(int b)
{
    if (byte_is_printable(b)) return (uint32_t)b;
    int k = 0;
    for (int c = 0; c < b; c++) k += !byte_is_printable(c);
    return 256u + (uint32_t)k;
}

static size_t pair_slot(const sc_tokenizer *tok, uint64_t pair)
{
    return (size_t)((pair * 0x9E3779B97F4A7C15ull) >> 20) & (tok->merges_cap - 1);
}

static const merge_slot *merge_find(const sc_tokenizer *tok, int32_t left, int32_t right)
{
    uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (size_t h = pair_slot(tok, pair);; h = (h + 1) & (tok->merges_cap - 1)) {
        const merge_slot *m = &tok->merges[h];
        if (m->rank < 0) return NULL;
        if (m->pair == pair) return m;
    }
}

/* For sc_tokenizer_explain: before, the code points s[0..n) as UTF-8, after. */
static void trace_text(FILE *trace, const char *before, const uint32_t *s, size_t n, const char *after)
{
    fputs(before, trace);
    for (size_t i = 0; i < n; i++) {
        char u[4];
        fwrite(u, 1, utf8_encode(s[i], u), trace);
    }
    fputs(after, trace);
}

static void trace_symbols(const sc_tokenizer *tok, const int32_t *sym, size_t n, FILE *trace)
{
    for (size_t i = 0; i < n; i++) fprintf(trace, "%s%s", i ? " " : "", tok->voc.str[sym[i]]);
    fputc('\n', trace);
}

/* @book begin bpe-merge */
/* Byte-pair encoding of one word, in place: sym[0..n) starts as one token
 * per byte (the last one with </w>). Repeatedly find the adjacent pair with
 * the lowest merge rank and merge every occurrence of it, left to right,
 * until no adjacent pair is in the merge table. Returns the new length. */
static size_t bpe_word(const sc_tokenizer *tok, int32_t *sym, size_t n, FILE *trace)
{
    while (n > 1) {
        const merge_slot *best = NULL;
        for (size_t i = 0; i + 1 < n; i++) {
            const merge_slot *m = merge_find(tok, sym[i], sym[i + 1]);
            if (m && (!best || m->rank < best->rank)) best = m;
        }
        if (!best) break;
        int32_t left = (int32_t)(best->pair >> 32), right = (int32_t)(best->pair & 0xFFFFFFFF);
        size_t out = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 1 < n && sym[i] == left && sym[i + 1] == right) {
                sym[out++] = best->merged;
                i++;
            } else {
                sym[out++] = sym[i];
            }
        }
        n = out;
        if (trace) {
            fprintf(trace, "    rank %5d  %s + %s  ->  ", (int)best->rank, tok->voc.str[left],
                    tok->voc.str[right]);
            trace_symbols(tok, sym, n, trace);
        }
    }
    return n;
}
/* @book end bpe-merge */

static void cache_clear(bpe_cache *c)
{
    memset(c->slot, 0xFF, 2 * BPE_CACHE_WORDS * sizeof *c->slot);
    c->n_entries = c->n_key_bytes = c->n_ids = 0;
}

/* The cached ids of word w[0..n), or NULL. */
static const int32_t *cache_get(const bpe_cache *c, const char *w, size_t n, uint32_t *n_ids)
{
    size_t mask = 2 * BPE_CACHE_WORDS - 1;
    for (size_t h = hash_bytes(w, n) & mask;; h = (h + 1) & mask) {
        int32_t e = c->slot[h];
        if (e < 0) return NULL;
        const uint32_t *ent = c->entry[e];
        if (ent[1] == n && memcmp(c->keys + ent[0], w, n) == 0) {
            *n_ids = ent[3];
            return c->ids + ent[2];
        }
    }
}

static void cache_put(bpe_cache *c, const char *w, size_t n, const int32_t *ids, size_t n_ids)
{
    if (n > BPE_CACHE_MAX_WORD) return;
    if (c->n_entries == BPE_CACHE_WORDS || c->n_key_bytes + n > BPE_CACHE_KEY_BYTES ||
        c->n_ids + n_ids > BPE_CACHE_IDS)
        cache_clear(c);
    size_t mask = 2 * BPE_CACHE_WORDS - 1, h = hash_bytes(w, n) & mask;
    while (c->slot[h] >= 0) h = (h + 1) & mask;
    uint32_t *ent = c->entry[c->n_entries];
    ent[0] = c->n_key_bytes;
    ent[1] = (uint32_t)n;
    ent[2] = c->n_ids;
    ent[3] = (uint32_t)n_ids;
    memcpy(c->keys + c->n_key_bytes, w, n);
    memcpy(c->ids + c->n_ids, ids, n_ids * sizeof *ids);
    c->slot[h] = (int32_t)c->n_entries++;
    c->n_key_bytes += (uint32_t)n;
    c->n_ids += (uint32_t)n_ids;
}

/* Append the ids of one pre-token s[0..n) (lower-cased code points). */
static int bpe_pretoken(sc_tokenizer *tok, const uint32_t *s, size_t n, FILE *trace)
{
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) nb += utf8_encode(s[i], tok->bytes + nb);
    const char *w = tok->bytes;
    if (nb == 15 && memcmp(w, "<|startoftext|>", 15) == 0) return ids_push(tok, tok->begin_id);
    if (nb == 13 && memcmp(w, "<|endoftext|>", 13) == 0) return ids_push(tok, tok->end_id);
    uint32_t n_ids = 0;
    const int32_t *hit = trace ? NULL : cache_get(&tok->cache, w, nb, &n_ids);
    if (!hit) {
        int32_t *sym = tok->sym;
        for (size_t i = 0; i < nb; i++)
            sym[i] = (i + 1 < nb ? tok->byte_id : tok->byte_end_id)[(uint8_t)w[i]];
        if (trace) {
            fprintf(trace, "  word '%.*s'\n    start         ", (int)nb, w);
            trace_symbols(tok, sym, nb, trace);
        }
        n_ids = (uint32_t)bpe_word(tok, sym, nb, trace);
        cache_put(&tok->cache, w, nb, sym, n_ids);
        hit = sym;
    }
    for (uint32_t i = 0; i < n_ids && !ids_full(tok); i++)
        if (!ids_push(tok, hit[i])) return 0;
    return 1;
}

/* @book begin clip-encode */
/* The content ids of one text (code points in tok->text), as OpenAI's
 * SimpleTokenizer.encode: basic_clean (html.unescape twice; ftfy is not
 * reproduced), whitespace_clean, lower(), then BPE of each pre-token. */
static int clip_encode(sc_tokenizer *tok, FILE *trace)
{
    html_unescape(&tok->text, &tok->work);
    html_unescape(&tok->work, &tok->text);
    clip_whitespace(&tok->text, &tok->work);
    python_lower(&tok->work, &tok->text);
    const uint32_t *s = tok->text.v;
    size_t n = tok->text.n;
    if (trace) trace_text(trace, "cleaned   '", s, n, "'\n");
    for (size_t i = 0; i < n && !ids_full(tok);) {
        size_t len = clip_pretoken(s, n, i);
        if (len == 0) {
            i++;
            continue;
        }
        if (!bpe_pretoken(tok, s + i, len, trace)) return 0;
        i += len;
    }
    return 1;
}
/* @book end clip-encode */

/* ---- 11h. Loading merges and vocab.json ----------------------------------- */

/* One line of a merges file: the two token strings. */
typedef struct {
    const char *left, *right;
    uint32_t left_len, right_len;
} merge_line;

/* The next line of c without its '\n' (and without a '\r' before it), or
 * NULL at the end of the buffer. */
static const char *next_line(cursor *c, size_t *len)
{
    size_t left = cur_left(c);
    if (left == 0) return NULL;
    const uint8_t *nl = memchr(c->p, '\n', left);
    size_t n = nl ? (size_t)(nl - c->p) : left;
    const char *line = (const char *)cur_take(c, n);
    if (nl) cur_take(c, 1);
    if (n > 0 && line[n - 1] == '\r') n--;
    *len = n;
    return line;
}

/* Is the rest of c empty lines only? */
static int only_empty_lines(cursor c)
{
    size_t len;
    while (next_line(&c, &len))
        if (len) return 0;
    return 1;
}

/* Split a merges file into merge lines. The first line is a header when it
 * contains "#version" (merges.txt: "#version: 0.2"; OpenAI's .gz:
 * "\"bpe_simple_vocab_16e6.txt#version: 0.2"). Each further line is
 * "left right" with exactly one space; empty lines may only end the file.
 * At most max_merges lines are used (-1 = all), as OpenAI slices its file.
 * Returns the count, or -1 with err set. */
static int64_t split_merges(const char *text, size_t len, int64_t max_merges, const char *what,
                            merge_line **out, sc_arena *a, sc_err *err)
{
    cursor c = cursor_make((const uint8_t *)text, len);
    cursor header = c;
    size_t n;
    const char *line = next_line(&header, &n);
    int64_t line_no = 1;
    for (size_t i = 0; line && i + 8 <= n; i++) {
        if (memcmp(line + i, "#version", 8) == 0) {
            c = header;
            line_no = 2;
            break;
        }
    }
    int64_t n_lines = 1;
    for (const uint8_t *q = c.p; q < c.end; q++) n_lines += *q == '\n';
    if (max_merges >= 0 && n_lines > max_merges) n_lines = max_merges;
    if (n_lines > SC_TOK_MAX_VOCAB) {
        sc_fail(err, SC_ERANGE, "%s: more than %d merges", what, SC_TOK_MAX_VOCAB);
        return -1;
    }
    merge_line *m = sc_arena_calloc(a, (size_t)n_lines, sizeof *m);
    if (!m) {
        sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
        return -1;
    }
    int64_t count = 0;
    for (; count < n_lines && (line = next_line(&c, &n)); line_no++) {
        if (n == 0) {
            if (only_empty_lines(c)) break;
            sc_fail(err, SC_EFORMAT, "%s: line %lld is empty", what, (long long)line_no);
            return -1;
        }
        const char *sp = memchr(line, ' ', n);
        size_t left = sp ? (size_t)(sp - line) : 0, right = sp ? n - left - 1 : 0;
        if (!sp || left == 0 || right == 0 || memchr(sp + 1, ' ', right)) {
            sc_fail(err, SC_EFORMAT, "%s: line %lld is not two tokens separated by one space", what,
                    (long long)line_no);
            return -1;
        }
        if (left > SC_TOK_MAX_TOKEN || right > SC_TOK_MAX_TOKEN) {
            sc_fail(err, SC_ERANGE, "%s: line %lld has a token longer than %d bytes", what,
                    (long long)line_no, SC_TOK_MAX_TOKEN);
            return -1;
        }
        m[count].left = line;
        m[count].left_len = (uint32_t)left;
        m[count].right = sp + 1;
        m[count].right_len = (uint32_t)right;
        count++;
    }
    if (count == 0) {
        sc_fail(err, SC_EFORMAT, "%s: no merges", what);
        return -1;
    }
    *out = m;
    return count;
}

/* Set token `id` of the vocabulary being built, naming the file on error. */
static sc_status add_token(sc_tokenizer *tok, int32_t id, const char *str, size_t n, const char *what, sc_err *err)
{
    int32_t other;
    sc_status s = vocab_set(&tok->voc, &tok->arena, id, str, n, &other);
    if (s == SC_EFORMAT)
        return sc_fail(err, s, "%s: token %d ('%s') repeats token %d", what, (int)id, tok->voc.str[other],
                       (int)other);
    if (s) return sc_fail(err, s, "%s: out of memory", what);
    return SC_OK;
}

/* CLIP's vocabulary when no vocab.json is given, as OpenAI builds it: the
 * 256 byte characters, the same with </w>, one token per merge (the two
 * halves joined) in rank order, then <|startoftext|> and <|endoftext|>. */
static sc_status vocab_from_merges(sc_tokenizer *tok, const merge_line *m, int64_t n_merges,
                                   const char *what, sc_err *err)
{
    if (!vocab_init(&tok->voc, &tok->arena, 512 + n_merges + 2))
        return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    char buf[2 * SC_TOK_MAX_TOKEN];
    int32_t id = 0;
    sc_status s = SC_OK;
    for (int end_of_word = 0; end_of_word < 2; end_of_word++) {
        for (int printable = 1; printable >= 0; printable--) {
            for (int b = 0; b < 256 && !s; b++) {
                if (byte_is_printable(b) != printable) continue;
                size_t n = utf8_encode(byte_char(b), buf);
                if (end_of_word) memcpy(buf + n, "</w>", 4), n += 4;
                s = add_token(tok, id++, buf, n, what, err);
            }
        }
    }
    for (int64_t r = 0; r < n_merges && !s; r++) {
        memcpy(buf, m[r].left, m[r].left_len);
        memcpy(buf + m[r].left_len, m[r].right, m[r].right_len);
        s = add_token(tok, id++, buf, m[r].left_len + m[r].right_len, what, err);
    }
    if (!s) s = add_token(tok, id++, "<|startoftext|>", 15, what, err);
    if (!s) s = add_token(tok, id++, "<|endoftext|>", 13, what, err);
    return s;
}

/* The vocabulary of a Hugging Face vocab.json: an object token → id whose
 * ids are exactly 0 .. V-1. */
static sc_status vocab_from_json(sc_tokenizer *tok, const sc_json *obj, const char *what, sc_err *err)
{
    if (!obj || obj->type != SC_JSON_OBJECT)
        return sc_fail(err, SC_EFORMAT, "%s: not a JSON object of token ids", what);
    if (obj->len == 0 || obj->len > SC_TOK_MAX_VOCAB)
        return sc_fail(err, SC_ERANGE, "%s: %zu tokens (expected 1 to %d)", what, obj->len, SC_TOK_MAX_VOCAB);
    if (!vocab_init(&tok->voc, &tok->arena, (int64_t)obj->len))
        return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < obj->len; i++) {
        const sc_json *v = obj->items[i];
        const char *key = obj->keys[i];
        double d = v->type == SC_JSON_NUMBER ? v->number : -1;
        if (!(d >= 0 && d < (double)obj->len) || d != (double)(int64_t)d)
            return sc_fail(err, SC_EFORMAT, "%s: token '%.64s' has no id in 0..%zu", what, key, obj->len - 1);
        int32_t id = (int32_t)d;
        if (tok->voc.str[id])
            return sc_fail(err, SC_EFORMAT, "%s: id %d is given to two tokens", what, (int)id);
        size_t n = strlen(key);
        if (n == 0 || n > SC_TOK_MAX_TOKEN)
            return sc_fail(err, SC_EFORMAT, "%s: token %d is empty or longer than %d bytes", what, (int)id,
                           SC_TOK_MAX_TOKEN);
        sc_status s = add_token(tok, id, key, n, what, err);
        if (s) return s;
    }
    return SC_OK;
}

static int32_t vocab_require(const sc_tokenizer *tok, const char *s, size_t n, const char *what, sc_err *err)
{
    int32_t id = vocab_find(&tok->voc, s, n);
    if (id < 0) sc_fail(err, SC_EFORMAT, "%s: the vocabulary has no token '%.*s'", what, (int)n, s);
    return id;
}

/* Resolve the merges to ids and fill the merge table; find the byte and
 * special tokens. */
static sc_status bpe_tables(sc_tokenizer *tok, const merge_line *m, int64_t n_merges, const char *what,
                            const char *vocab_what, sc_err *err)
{
    tok->n_merges = n_merges;
    tok->merges_cap = pow2_at_least((size_t)n_merges * 2);
    tok->merges = sc_arena_alloc(&tok->arena, tok->merges_cap * sizeof *tok->merges);
    if (!tok->merges) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    for (size_t h = 0; h < tok->merges_cap; h++) tok->merges[h].rank = -1;
    char buf[2 * SC_TOK_MAX_TOKEN];
    for (int64_t r = 0; r < n_merges; r++) {
        int32_t left = vocab_find(&tok->voc, m[r].left, m[r].left_len);
        int32_t right = vocab_find(&tok->voc, m[r].right, m[r].right_len);
        memcpy(buf, m[r].left, m[r].left_len);
        memcpy(buf + m[r].left_len, m[r].right, m[r].right_len);
        int32_t merged = vocab_find(&tok->voc, buf, m[r].left_len + m[r].right_len);
        if (left < 0 || right < 0 || merged < 0)
            return sc_fail(err, SC_EFORMAT, "%s: merge %lld ('%.*s %.*s') uses or makes a token not in "
                           "the vocabulary", what, (long long)r + 1, (int)m[r].left_len, m[r].left,
                           (int)m[r].right_len, m[r].right);
        uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
        size_t h = pair_slot(tok, pair);
        for (; tok->merges[h].rank >= 0; h = (h + 1) & (tok->merges_cap - 1))
            if (tok->merges[h].pair == pair)
                return sc_fail(err, SC_EFORMAT, "%s: merge %lld repeats merge %d", what, (long long)r + 1,
                               (int)tok->merges[h].rank + 1);
        tok->merges[h].pair = pair;
        tok->merges[h].rank = (int32_t)r;
        tok->merges[h].merged = merged;
    }
    for (int b = 0; b < 256; b++) {
        size_t n = utf8_encode(byte_char(b), buf);
        if ((tok->byte_id[b] = vocab_require(tok, buf, n, vocab_what, err)) < 0) return SC_EFORMAT;
        memcpy(buf + n, "</w>", 4);
        if ((tok->byte_end_id[b] = vocab_require(tok, buf, n + 4, vocab_what, err)) < 0) return SC_EFORMAT;
    }
    if ((tok->begin_id = vocab_require(tok, "<|startoftext|>", 15, vocab_what, err)) < 0) return SC_EFORMAT;
    if ((tok->end_id = vocab_require(tok, "<|endoftext|>", 13, vocab_what, err)) < 0) return SC_EFORMAT;
    bpe_cache *c = &tok->cache;
    c->slot = sc_arena_alloc(&tok->arena, 2 * BPE_CACHE_WORDS * sizeof *c->slot);
    c->entry = sc_arena_alloc(&tok->arena, BPE_CACHE_WORDS * sizeof *c->entry);
    c->keys = sc_arena_alloc(&tok->arena, BPE_CACHE_KEY_BYTES);
    c->ids = sc_arena_alloc(&tok->arena, BPE_CACHE_IDS * sizeof *c->ids);
    if (!c->slot || !c->entry || !c->keys || !c->ids) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    cache_clear(c);
    return SC_OK;
}

/* ---- 11i. Learning a small vocabulary ------------------------------------ */

/* Sennrich et al.'s byte-pair encoding, learnt the way the CLIP files are
 * used: every text is cleaned and cut into pre-tokens exactly as
 * clip_encode does, each distinct word starts as its bytes (the last with
 * </w>), and the most frequent adjacent pair over the whole corpus (each
 * word weighted by its count) is merged, again and again. The merges, in
 * the order learnt, are merges.txt; the vocabulary is laid out as OpenAI's
 * (vocab_from_merges), so <|endoftext|> has the largest id. */
#define BPE_LEARN_MAX_WORDS (1 << 20)   /* distinct words in a corpus */
#define BPE_LEARN_MAX_WORD 1024         /* bytes of one word; longer ones are skipped */

typedef struct {
    sc_arena arena;
    vocab words;          /* distinct pre-tokens, id = word index */
    int64_t *count;       /* (words.n) occurrences */
    int32_t **sym;        /* (words.n) the word's current tokens */
    uint32_t *n_sym;      /* (words.n) */
    int32_t n_words;
    vocab tokens;         /* the vocabulary being learnt */
    int32_t n_tokens;
    int32_t (*merge)[2];  /* (max merges) left, right token of each rank */
} bpe_learner;

/* Enter every pre-token of one text (as clip_encode cuts it) into the word
 * table. */
static sc_status learn_words(bpe_learner *L, cpbuf *text, cpbuf *work, const char *s, size_t len, int64_t index,
                             sc_err *err)
{
    if (!cpbuf_reserve(text, 3 * len + 16) || !cpbuf_reserve(work, 3 * len + 16))
        return sc_fail(err, SC_ENOMEM, "BPE corpus: out of memory");
    text->n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        if (!utf8_next((const uint8_t *)s, len, &i, &cp))
            return sc_fail(err, SC_EFORMAT, "BPE corpus: text %lld: invalid UTF-8 at byte %zu", (long long)index, i);
        cpbuf_push(text, cp);
    }
    html_unescape(text, work);   /* the clean-up of clip_encode */
    html_unescape(work, text);
    clip_whitespace(text, work);
    python_lower(work, text);
    char word[BPE_LEARN_MAX_WORD];
    for (size_t i = 0; i < text->n;) {
        size_t n = clip_pretoken(text->v, text->n, i), nb = 0;
        if (n == 0) {
            i++;
            continue;
        }
        if (4 * n <= sizeof word)
            for (size_t k = 0; k < n; k++) nb += utf8_encode(text->v[i + k], word + nb);
        i += n;
        int special = (nb == 15 && !memcmp(word, "<|startoftext|>", 15)) || (nb == 13 && !memcmp(word, "<|endoftext|>", 13));
        if (nb == 0 || special) continue;   /* a word too long to be one is left out */
        int32_t id = vocab_find(&L->words, word, nb);
        if (id < 0) {
            int32_t other;
            if (L->n_words == L->words.n)
                return sc_fail(err, SC_ERANGE, "BPE corpus: more than %lld distinct words", (long long)L->words.n);
            id = L->n_words++;
            if (vocab_set(&L->words, &L->arena, id, word, nb, &other))
                return sc_fail(err, SC_ENOMEM, "BPE corpus: out of memory");
        }
        L->count[id]++;
    }
    return SC_OK;
}

/* The next learnt token: a new id for a new string, or the id the string
 * already has (two merges may spell the same token). */
static int32_t learn_token(bpe_learner *L, const char *s, size_t n)
{
    int32_t id = vocab_find(&L->tokens, s, n), other;
    if (id >= 0) return id;
    if (vocab_set(&L->tokens, &L->arena, L->n_tokens, s, n, &other)) return -1;
    return L->n_tokens++;
}

/* @book begin bpe-learn-step */
/* One merge: count every adjacent pair of every word, weighted by the
 * word's count, take the most frequent (ties: the smaller left id, then
 * right id) and merge it everywhere, left to right as bpe_word does.
 * Returns 0 when no word has two tokens left. */
static int learn_merge(bpe_learner *L, int64_t rank, uint64_t *keys, int64_t *counts, size_t cap)
{
    memset(keys, 0xFF, cap * sizeof *keys);
    uint64_t best = UINT64_MAX;
    int64_t best_count = 0;
    for (int32_t w = 0; w < L->n_words; w++)
        for (uint32_t i = 0; i + 1 < L->n_sym[w]; i++) {
            uint64_t key = (uint64_t)(uint32_t)L->sym[w][i] << 32 | (uint32_t)L->sym[w][i + 1];
            size_t h = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
            while (keys[h] != key && keys[h] != UINT64_MAX) h = (h + 1) & (cap - 1);
            if (keys[h] == UINT64_MAX) {
                keys[h] = key;
                counts[h] = 0;
            }
            counts[h] += L->count[w];
            if (counts[h] > best_count || (counts[h] == best_count && key < best)) {
                best = key;
                best_count = counts[h];
            }
        }
    if (best_count == 0) return 0;
    int32_t left = (int32_t)(best >> 32), right = (int32_t)(best & 0xFFFFFFFF);
    char buf[2 * SC_TOK_MAX_TOKEN];
    size_t nl = L->tokens.len[left], nr = L->tokens.len[right];
    if (nl + nr > SC_TOK_MAX_TOKEN) return 0;   /* cannot happen for words of at most 1 KiB */
    memcpy(buf, L->tokens.str[left], nl);
    memcpy(buf + nl, L->tokens.str[right], nr);
    int32_t merged = learn_token(L, buf, nl + nr);
    if (merged < 0) return -1;
    L->merge[rank][0] = left;
    L->merge[rank][1] = right;
    for (int32_t w = 0; w < L->n_words; w++) {
        uint32_t out = 0, n = L->n_sym[w];
        int32_t *s = L->sym[w];
        for (uint32_t i = 0; i < n; i++) {
            if (i + 1 < n && s[i] == left && s[i + 1] == right) {
                s[out++] = merged;
                i++;
            } else {
                s[out++] = s[i];
            }
        }
        L->n_sym[w] = out;
    }
    return 1;
}
/* @book end bpe-learn-step */

/* merges.txt and vocab.json of what L learnt (n_merges ranks). */
static sc_status learn_write(const bpe_learner *L, int64_t n_merges, const char *dir, sc_err *err)
{
    char path[4096];
    sc_text merges;
    sc_text_init(&merges);
    sc_text_puts(&merges, "#version: 0.2\n");
    for (int64_t r = 0; r < n_merges; r++)
        sc_text_printf(&merges, "%s %s\n", L->tokens.str[L->merge[r][0]], L->tokens.str[L->merge[r][1]]);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    sc_status s = sc_text_save(&merges, path, err);
    sc_text_free(&merges);
    if (s) return s;
    sc_json_writer w;
    sc_json_writer_init(&w, 0);
    sc_json_begin_object(&w);
    for (int32_t id = 0; id < L->n_tokens; id++) {
        sc_json_put_key(&w, L->tokens.str[id]);
        sc_json_put_int(&w, id);
    }
    sc_json_end_object(&w);
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    s = sc_json_writer_save(&w, path, err);
    sc_json_writer_free(&w);
    return s;
}

sc_status sc_bpe_learn(const char *const *texts, int64_t n, int max_merges, const char *dir, int *n_merges,
                       sc_err *err)
{
    if (n < 1 || max_merges < 0 || max_merges > 1 << 20)
        return sc_fail(err, SC_EARG, "BPE corpus: %lld texts and %d merges (need texts, 0 to 2^20 merges)",
                       (long long)n, max_merges);
    size_t total = 16;
    for (int64_t i = 0; i < n; i++)
        if (!sc_add_ok(total, strlen(texts[i]) + 1, &total) || total > SC_TOK_MAX_FILE)
            return sc_fail(err, SC_ERANGE, "BPE corpus: more than %u bytes of text", SC_TOK_MAX_FILE);
    bpe_learner L;
    memset(&L, 0, sizeof L);
    sc_arena_init(&L.arena, "BPE learner", (size_t)1 << 20, 0);
    cpbuf text = {0}, work = {0};
    sc_status s = SC_OK;
    int64_t max_words = total < BPE_LEARN_MAX_WORDS ? (int64_t)total : BPE_LEARN_MAX_WORDS;
    L.count = sc_arena_calloc(&L.arena, (size_t)max_words, sizeof *L.count);
    L.merge = sc_arena_calloc(&L.arena, (size_t)max_merges + 1, sizeof *L.merge);
    if (!L.count || !L.merge || !vocab_init(&L.words, &L.arena, max_words) ||
        !vocab_init(&L.tokens, &L.arena, 512 + (int64_t)max_merges + 2))
        s = sc_fail(err, SC_ENOMEM, "BPE corpus: out of memory");
    for (int64_t i = 0; i < n && !s; i++) s = learn_words(&L, &text, &work, texts[i], strlen(texts[i]), i, err);
    /* the 512 byte tokens in CLIP's order, then every word as its bytes */
    char buf[8];
    for (int end = 0; end < 2 && !s; end++)
        for (int printable = 1; printable >= 0; printable--)
            for (int b = 0; b < 256 && !s; b++) {
                if (byte_is_printable(b) != printable) continue;
                size_t k = utf8_encode(byte_char(b), buf);
                if (end) memcpy(buf + k, "</w>", 4), k += 4;
                if (learn_token(&L, buf, k) < 0) s = sc_fail(err, SC_ENOMEM, "BPE corpus: out of memory");
            }
    size_t n_sym_total = 0;
    L.sym = sc_arena_calloc(&L.arena, (size_t)L.n_words + 1, sizeof *L.sym);
    L.n_sym = sc_arena_calloc(&L.arena, (size_t)L.n_words + 1, sizeof *L.n_sym);
    if (!s && (!L.sym || !L.n_sym)) s = sc_fail(err, SC_ENOMEM, "BPE corpus: out of memory");
    for (int32_t w = 0; w < L.n_words && !s; w++) {
        uint32_t nb = L.words.len[w];
        L.sym[w] = sc_arena_alloc(&L.arena, sizeof(int32_t) * nb);
        if (!L.sym[w]) {
            s = sc_fail(err, SC_ENOMEM, "BPE corpus: out of memory");
            break;
        }
        for (uint32_t i = 0; i < nb; i++) {
            size_t k = utf8_encode(byte_char((uint8_t)L.words.str[w][i]), buf);
            if (i + 1 == nb) memcpy(buf + k, "</w>", 4), k += 4;
            L.sym[w][i] = vocab_find(&L.tokens, buf, k);
        }
        L.n_sym[w] = nb;
        n_sym_total += nb;
    }
    size_t cap = pow2_at_least(2 * n_sym_total + 2);
    uint64_t *keys = s ? NULL : sc_arena_alloc(&L.arena, cap * sizeof *keys);
    int64_t *counts = s ? NULL : sc_arena_alloc(&L.arena, cap * sizeof *counts);
    if (!s && (!keys || !counts)) s = sc_fail(err, SC_ENOMEM, "BPE corpus: out of memory");
    int64_t rank = 0;
    while (!s && rank < max_merges) {
        int r = learn_merge(&L, rank, keys, counts, cap);
        if (r < 0) s = sc_fail(err, SC_ENOMEM, "BPE corpus: out of memory");
        if (r <= 0) break;
        rank++;
    }
    if (!s && (learn_token(&L, "<|startoftext|>", 15) < 0 || learn_token(&L, "<|endoftext|>", 13) < 0))
        s = sc_fail(err, SC_ENOMEM, "BPE corpus: out of memory");
    if (!s) s = learn_write(&L, rank, dir, err);
    if (!s && n_merges) *n_merges = (int)rank;
    free(text.v);
    free(work.v);
    sc_arena_free(&L.arena);
    return s;
}

/* ======================================================================== */
/* 12. BERT WordPiece tokenizer                                              */
/* ======================================================================== */
/*
 * Hugging Face's BertTokenizerFast (Rust `tokenizers`), which MedCLIP runs
 * on Bio_ClinicalBERT's cased vocabulary with do_lower_case = true:
 *   BertNormalizer   drop NUL, U+FFFD and categories Cc Cf Co (not \t \n \r); map
 *                    white space to ' '; put spaces around CJK ideographs;
 *                    strip accents (NFD, drop Mn); lower-case
 *   BertPreTokenizer split at spaces; every punctuation character (ASCII
 *                    !../:..@[..`{..~ or category P*) is a word of its own
 *   WordPiece        greedy longest match from the left, continuation
 *                    pieces prefixed "##"; a word longer than 100
 *                    characters, or with a remainder that matches nothing,
 *                    becomes [UNK]
 *   post-processor   [CLS] pieces [SEP], truncated to max_length
 * Then the public API for both kinds of tokenizer.
 *
 *   12a. Normalisation
 *   12b. WordPiece
 *   12c. Loading vocab.txt and tokenizer_config.json
 *   12d. The tokenizer API
 */

/* ---- 12a. Normalisation ---------------------------------------------------- */

/* The CJK ideograph blocks of BERT's _is_chinese_char (Hangul and kana are
 * not among them: they stay inside words). */
static int is_cjk_ideograph(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

static int bert_is_punct(uint32_t cp)
{
    return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
           (cp >= 123 && cp <= 126) || (uc_flags(cp) & UC_P);
}

/* Append the canonical decomposition (NFD) of cp, leaving out nonspacing
 * marks: é → e, ῗ → ι, 흉 → ᄒ ᅲ ᆼ. Canonical reordering is not needed:
 * it only moves marks, and the marks are dropped. */
static void strip_accents(uint32_t cp, cpbuf *out, int depth)
{
    if (uc_flags(cp) & UC_MN) return;
    if (cp >= 0xAC00 && cp <= 0xD7A3) {
        /* Hangul syllables decompose by arithmetic (Unicode §3.12). */
        uint32_t s = cp - 0xAC00;
        cpbuf_push(out, 0x1100 + s / 588);
        cpbuf_push(out, 0x1161 + s % 588 / 28);
        if (s % 28) cpbuf_push(out, 0x11A7 + s % 28);
        return;
    }
    uint32_t first, second;
    SC_ASSERT(depth < 8, "decomposition table loops at U+%04X", (unsigned)cp);
    if (uc_decompose(cp, &first, &second)) {
        strip_accents(first, out, depth + 1);
        if (second) strip_accents(second, out, depth + 1);
        return;
    }
    cpbuf_push(out, cp);
}

/* Rust's char::to_lowercase: the simple mapping, and İ → i + U+0307 (no
 * final-sigma rule, unlike Python's str.lower). */
static void bert_lower(uint32_t cp, cpbuf *out)
{
    if (cp == 0x130) {
        cpbuf_push(out, 'i');
        cpbuf_push(out, 0x307);
    } else {
        cpbuf_push(out, uc_lower(cp));
    }
}

/* @book begin bert-normalize */
/* BertNormalizer, one character at a time: in → out (at most 3 code points
 * out per code point in). */
static void bert_normalize(const sc_tokenizer *tok, const cpbuf *in, cpbuf *out)
{
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        unsigned f = uc_flags(c);
        if (c == '\t' || c == '\n' || c == '\r' || (f & (UC_WS | UC_C)) == UC_WS) {
            cpbuf_push(out, ' ');
        } else if (c == 0 || c == 0xFFFD || (f & UC_C)) {
            continue; /* control and format characters vanish */
        } else if (tok->chinese_chars && is_cjk_ideograph(c)) {
            cpbuf_push(out, ' ');
            cpbuf_push(out, c);
            cpbuf_push(out, ' ');
        } else if (tok->strip_accents) {
            size_t from = out->n;
            strip_accents(c, out, 0);
            if (tok->lower_case) {
                uint32_t part[3];
                size_t k = out->n - from;
                memcpy(part, out->v + from, k * sizeof *part);
                out->n = from;
                for (size_t j = 0; j < k; j++) bert_lower(part[j], out);
            }
        } else if (tok->lower_case) {
            bert_lower(c, out);
        } else {
            cpbuf_push(out, c);
        }
    }
}
/* @book end bert-normalize */

/* ---- 12b. WordPiece ------------------------------------------------------- */

#define WORDPIECE_MAX_CHARS 100   /* max_input_chars_per_word */

/* @book begin wordpiece */
/* Append the pieces of one word w[0..n): the longest vocabulary entry that
 * starts the word, then the longest "##" entry that continues it, and so
 * on. If some remainder matches nothing, the whole word is [UNK]. */
static int wordpiece_word(sc_tokenizer *tok, const uint32_t *w, size_t n, FILE *trace)
{
    int32_t piece[WORDPIECE_MAX_CHARS];
    size_t n_pieces = 0;
    if (n <= WORDPIECE_MAX_CHARS) {
        char utf8[4 * WORDPIECE_MAX_CHARS], cand[2 + 4 * WORDPIECE_MAX_CHARS];
        size_t off[WORDPIECE_MAX_CHARS + 1]; /* byte offset of each character */
        off[0] = 0;
        for (size_t i = 0; i < n; i++) off[i + 1] = off[i] + utf8_encode(w[i], utf8 + off[i]);
        for (size_t start = 0; start < n;) {
            size_t prefix = start > 0 ? 2 : 0, end = n;
            int32_t id = -1;
            for (; end > start; end--) {
                size_t len = prefix + off[end] - off[start];
                if (len > tok->max_token_bytes) continue; /* longer than any token */
                memcpy(cand, "##", prefix);
                memcpy(cand + prefix, utf8 + off[start], off[end] - off[start]);
                if ((id = vocab_find(&tok->voc, cand, len)) >= 0) break;
            }
            if (id < 0) {
                n_pieces = 0; /* an unmatched remainder: the word is [UNK] */
                break;
            }
            piece[n_pieces++] = id;
            start = end;
        }
    }
    if (n_pieces == 0) piece[n_pieces++] = tok->unk_id;
    if (trace) {
        trace_text(trace, "  word '", w, n, "'  ->");
        for (size_t i = 0; i < n_pieces; i++) fprintf(trace, "  %s", tok->voc.str[piece[i]]);
        fputc('\n', trace);
    }
    for (size_t i = 0; i < n_pieces && !ids_full(tok); i++)
        if (!ids_push(tok, piece[i])) return 0;
    return 1;
}
/* @book end wordpiece */

/* The content ids of one text (code points in tok->text). */
static int bert_encode(sc_tokenizer *tok, FILE *trace)
{
    bert_normalize(tok, &tok->text, &tok->work);
    const uint32_t *s = tok->work.v;
    size_t n = tok->work.n;
    if (trace) trace_text(trace, "normalized '", s, n, "'\n");
    /* BertPreTokenizer: words end at spaces; punctuation stands alone. */
    size_t start = 0;
    for (size_t i = 0; i <= n && !ids_full(tok); i++) {
        int boundary = i == n || s[i] == ' ' || bert_is_punct(s[i]);
        if (!boundary) continue;
        if (i > start && !wordpiece_word(tok, s + start, i - start, trace)) return 0;
        if (i < n && s[i] != ' ' && !wordpiece_word(tok, s + i, 1, trace)) return 0;
        start = i + 1;
    }
    return 1;
}

/* ---- 12c. Loading vocab.txt and tokenizer_config.json -------------------- */

/* What tokenizer_config.json can change. */
typedef struct {
    int lower_case;        /* do_lower_case, default 1 */
    int strip_accents;     /* strip_accents; -1 (null) = as lower_case */
    int chinese_chars;     /* tokenize_chinese_chars, default 1 */
    const char *special[4]; /* unk_token cls_token sep_token pad_token */
} wp_config;

static const char *const wp_special_key[4] = {"unk_token", "cls_token", "sep_token", "pad_token"};
static const char *const wp_special_default[4] = {"[UNK]", "[CLS]", "[SEP]", "[PAD]"};

static sc_tokenizer *tokenizer_new(sc_tok_kind kind)
{
    sc_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return NULL;
    tok->kind = kind;
    sc_arena_init(&tok->arena, "tokenizer", 1 << 20, 0);
    return tok;
}

/* Check the options against the vocabulary and fill in the defaults. */
static sc_status resolve_options(sc_tokenizer *tok, const sc_tok_options *opt, int64_t default_pad, sc_err *err)
{
    tok->opt = opt ? *opt : sc_tok_defaults();
    if (tok->opt.max_length < 2 || tok->opt.max_length > SC_TOK_MAX_LENGTH)
        return sc_fail(err, SC_EARG, "max length %d is not in 2..%d", tok->opt.max_length, SC_TOK_MAX_LENGTH);
    if (tok->opt.pad_id == -1) tok->opt.pad_id = default_pad;
    if (tok->opt.pad_id < 0 || tok->opt.pad_id >= tok->voc.n)
        return sc_fail(err, SC_EARG, "pad id %lld is not in the vocabulary (0..%lld)",
                       (long long)tok->opt.pad_id, (long long)tok->voc.n - 1);
    return SC_OK;
}

static int ascii_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

/* Fill the vocabulary from vocab.txt: token i is line i (trailing white
 * space removed, as Rust's trim_end does). Empty lines and repeated tokens
 * are errors (Python would silently give a repeated token its last id). */
static sc_status wordpiece_vocab(sc_tokenizer *tok, const char *text, size_t len, const char *what, sc_err *err)
{
    cursor c = cursor_make((const uint8_t *)text, len);
    int64_t n_lines = 0;
    size_t n;
    for (cursor count = c; next_line(&count, &n);) n_lines++;
    if (n_lines == 0) return sc_fail(err, SC_EFORMAT, "%s: empty vocabulary", what);
    if (n_lines > SC_TOK_MAX_VOCAB)
        return sc_fail(err, SC_ERANGE, "%s: more than %d tokens", what, SC_TOK_MAX_VOCAB);
    if (!vocab_init(&tok->voc, &tok->arena, n_lines)) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    const char *line;
    for (int32_t id = 0; (line = next_line(&c, &n)); id++) {
        while (n > 0 && ascii_blank(line[n - 1])) n--;
        if (n == 0) return sc_fail(err, SC_EFORMAT, "%s: line %d is empty", what, (int)id + 1);
        if (n > SC_TOK_MAX_TOKEN)
            return sc_fail(err, SC_ERANGE, "%s: line %d is longer than %d bytes", what, (int)id + 1,
                           SC_TOK_MAX_TOKEN);
        int32_t other;
        sc_status s = vocab_set(&tok->voc, &tok->arena, id, line, n, &other);
        if (s == SC_EFORMAT)
            return sc_fail(err, s, "%s: line %d repeats the token '%s' of line %d", what, (int)id + 1,
                           tok->voc.str[other], (int)other + 1);
        if (s) return sc_fail(err, s, "%s: out of memory", what);
        if (n > tok->max_token_bytes) tok->max_token_bytes = n;
    }
    return SC_OK;
}

static sc_status wordpiece_build(sc_tokenizer **out, const char *text, size_t len, const char *what,
                                 const sc_tok_options *opt, const wp_config *cfg, sc_err *err)
{
    *out = NULL;
    sc_tokenizer *tok = tokenizer_new(SC_TOK_WORDPIECE);
    if (!tok) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    sc_status s = wordpiece_vocab(tok, text, len, what, err);
    int32_t special[4];
    for (int k = 0; k < 4 && !s; k++) {
        const char *name = cfg->special[k];
        special[k] = vocab_find(&tok->voc, name, strlen(name));
        if (special[k] < 0) s = sc_fail(err, SC_EFORMAT, "%s: no %s token in the vocabulary", what, name);
    }
    if (!s) {
        tok->unk_id = special[0];
        tok->begin_id = special[1];
        tok->end_id = special[2];
        tok->lower_case = cfg->lower_case;
        tok->strip_accents = cfg->strip_accents >= 0 ? cfg->strip_accents : cfg->lower_case;
        tok->chinese_chars = cfg->chinese_chars;
        s = resolve_options(tok, opt, special[3], err);
    }
    if (s) {
        sc_tokenizer_free(tok);
        return s;
    }
    *out = tok;
    return SC_OK;
}

/* A special token's name in tokenizer_config.json: a string, or an object
 * with "content" (Hugging Face's AddedToken form). */
static const char *config_token(const sc_json *root, const char *key, const char *dflt)
{
    const sc_json *v = sc_json_get(root, key);
    if (v && v->type == SC_JSON_OBJECT) v = sc_json_get(v, "content");
    return v && v->type == SC_JSON_STRING && v->len > 0 ? v->str : dflt;
}

static int config_bool(const sc_json *root, const char *key, int dflt)
{
    const sc_json *v = sc_json_get(root, key);
    return v && v->type == SC_JSON_BOOL ? v->boolean : dflt;
}

/* ---- 12d. The tokenizer API ----------------------------------------------- */

sc_tok_options sc_tok_defaults(void)
{
    sc_tok_options o;
    o.max_length = 77;
    o.pad_id = -1;
    o.lower_case = -1;
    o.strip_accents = -1;
    return o;
}

sc_status sc_tokenizer_parse_wordpiece(sc_tokenizer **tok, const char *vocab_txt, size_t len, const char *what,
                                       const sc_tok_options *opt, sc_err *err)
{
    wp_config cfg = {1, -1, 1, {NULL, NULL, NULL, NULL}};
    for (int k = 0; k < 4; k++) cfg.special[k] = wp_special_default[k];
    if (opt && opt->lower_case >= 0) cfg.lower_case = opt->lower_case != 0;
    if (opt && opt->strip_accents >= 0) cfg.strip_accents = opt->strip_accents != 0;
    return wordpiece_build(tok, vocab_txt, len, what, opt, &cfg, err);
}

sc_status sc_tokenizer_load_wordpiece(sc_tokenizer **tok, const char *vocab_path, const char *config_path,
                                      const sc_tok_options *opt, sc_err *err)
{
    *tok = NULL;
    wp_config cfg = {1, -1, 1, {NULL, NULL, NULL, NULL}};
    for (int k = 0; k < 4; k++) cfg.special[k] = wp_special_default[k];
    sc_json_doc doc = {0};
    sc_status s;
    if (config_path) {
        if ((s = sc_json_load(&doc, config_path, SC_TOK_MAX_FILE, err))) return s;
        if (!doc.root || doc.root->type != SC_JSON_OBJECT) {
            sc_json_free(&doc);
            return sc_fail(err, SC_EFORMAT, "%s: not a JSON object", config_path);
        }
        cfg.lower_case = config_bool(doc.root, "do_lower_case", 1);
        cfg.strip_accents = config_bool(doc.root, "strip_accents", -1);
        cfg.chinese_chars = config_bool(doc.root, "tokenize_chinese_chars", 1);
        for (int k = 0; k < 4; k++)
            cfg.special[k] = config_token(doc.root, wp_special_key[k], wp_special_default[k]);
    }
    if (opt && opt->lower_case >= 0) cfg.lower_case = opt->lower_case != 0;
    if (opt && opt->strip_accents >= 0) cfg.strip_accents = opt->strip_accents != 0;
    uint8_t *text;
    size_t len;
    if (!(s = sc_read_file(vocab_path, SC_TOK_MAX_FILE, &text, &len, err))) {
        s = wordpiece_build(tok, (const char *)text, len, vocab_path, opt, &cfg, err);
        free(text);
    }
    sc_json_free(&doc);
    return s;
}

static sc_status bpe_build(sc_tokenizer **out, const char *merges, size_t len, int64_t max_merges,
                           const char *what, const sc_json *vocab_json, const char *vocab_what,
                           const sc_tok_options *opt, sc_err *err)
{
    *out = NULL;
    sc_tokenizer *tok = tokenizer_new(SC_TOK_BPE);
    if (!tok) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    merge_line *m = NULL;
    sc_status s = SC_OK;
    int64_t n_merges = split_merges(merges, len, max_merges, what, &m, &tok->arena, err);
    if (n_merges < 0) s = SC_EFORMAT;
    if (!s && vocab_json) s = vocab_from_json(tok, vocab_json, vocab_what, err);
    if (!s && !vocab_json) s = vocab_from_merges(tok, m, n_merges, what, err);
    if (!s) s = bpe_tables(tok, m, n_merges, what, vocab_json ? vocab_what : what, err);
    if (!s) s = resolve_options(tok, opt, 0, err);
    if (s) {
        sc_tokenizer_free(tok);
        return s;
    }
    *out = tok;
    return SC_OK;
}

sc_status sc_tokenizer_parse_bpe(sc_tokenizer **tok, const char *merges, size_t len, int64_t max_merges,
                                 const sc_json *vocab_json, const char *what, const sc_tok_options *opt,
                                 sc_err *err)
{
    return bpe_build(tok, merges, len, max_merges, what, vocab_json, "vocab.json", opt, err);
}

sc_status sc_tokenizer_load_bpe(sc_tokenizer **tok, const char *merges_path, const char *vocab_json_path,
                                const sc_tok_options *opt, sc_err *err)
{
    *tok = NULL;
    uint8_t *text;
    size_t len;
    sc_status s = sc_read_file(merges_path, SC_TOK_MAX_FILE, &text, &len, err);
    if (s) return s;
    int64_t max_merges = -1;
    if (len >= 2 && text[0] == 0x1F && text[1] == 0x8B) {
        /* OpenAI's bpe_simple_vocab_16e6.txt.gz: SimpleTokenizer keeps the
         * first 49152 - 256 - 2 = 48894 merges of its 262144. */
        uint8_t *plain;
        size_t plain_len;
        s = sc_inflate(text, len, SC_INFLATE_GZIP, SC_TOK_MAX_FILE, &plain, &plain_len, err);
        free(text);
        if (s) return s;
        text = plain;
        len = plain_len;
        max_merges = 49152 - 256 - 2;
    }
    sc_json_doc doc = {0};
    if (vocab_json_path) s = sc_json_load(&doc, vocab_json_path, SC_TOK_MAX_FILE, err);
    if (!s)
        s = bpe_build(tok, (const char *)text, len, max_merges, merges_path, vocab_json_path ? doc.root : NULL,
                      vocab_json_path, opt, err);
    sc_json_free(&doc);
    free(text);
    return s;
}

static int file_exists(const char *dir, const char *name, char *path, size_t cap)
{
    int k = snprintf(path, cap, "%s/%s", dir, name);
    return k > 0 && (size_t)k < cap && access(path, R_OK) == 0;
}

sc_status sc_tokenizer_load(sc_tokenizer **tok, const char *dir, const sc_tok_options *opt, sc_err *err)
{
    char merges[4096], vocab_json[4096], gz[4096], vocab_txt[4096], config[4096];
    *tok = NULL;
    int has_merges = file_exists(dir, "merges.txt", merges, sizeof merges);
    int has_json = file_exists(dir, "vocab.json", vocab_json, sizeof vocab_json);
    if (has_merges) return sc_tokenizer_load_bpe(tok, merges, has_json ? vocab_json : NULL, opt, err);
    if (file_exists(dir, "bpe_simple_vocab_16e6.txt.gz", gz, sizeof gz))
        return sc_tokenizer_load_bpe(tok, gz, NULL, opt, err);
    if (file_exists(dir, "vocab.txt", vocab_txt, sizeof vocab_txt)) {
        int has_config = file_exists(dir, "tokenizer_config.json", config, sizeof config);
        return sc_tokenizer_load_wordpiece(tok, vocab_txt, has_config ? config : NULL, opt, err);
    }
    return sc_fail(err, SC_EIO,
                   "%s: no tokenizer files (merges.txt [+ vocab.json], bpe_simple_vocab_16e6.txt.gz "
                   "or vocab.txt)", dir);
}

void sc_tokenizer_free(sc_tokenizer *tok)
{
    if (!tok) return;
    sc_arena_free(&tok->arena);
    free(tok->text.v);
    free(tok->work.v);
    free(tok->bytes);
    free(tok->ids);
    free(tok->sym);
    free(tok);
}

sc_tok_kind sc_tokenizer_kind(const sc_tokenizer *tok)
{
    return tok->kind;
}

int sc_tokenizer_max_length(const sc_tokenizer *tok)
{
    return tok->opt.max_length;
}

int64_t sc_tokenizer_vocab_size(const sc_tokenizer *tok)
{
    return tok->voc.n;
}

const char *sc_tokenizer_token(const sc_tokenizer *tok, int64_t id)
{
    return id >= 0 && id < tok->voc.n ? tok->voc.str[id] : NULL;
}

int64_t sc_tokenizer_id(const sc_tokenizer *tok, const char *token)
{
    return vocab_find(&tok->voc, token, strlen(token));
}

/* The content ids of one text into tok->ids (tok->ids_n of them, at most
 * max_length - 1: enough to know whether the row is truncated). */
static sc_status encode_content(sc_tokenizer *tok, const char *text, size_t len, const char *what, FILE *trace,
                                sc_err *err)
{
    if (len > SC_TOK_MAX_TEXT)
        return sc_fail(err, SC_ERANGE, "%s: %zu bytes, more than the limit of %d", what, len, SC_TOK_MAX_TEXT);
    if (!scratch_reserve(tok, len)) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    const uint8_t *s = (const uint8_t *)text;
    tok->text.n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        if (!utf8_next(s, len, &i, &cp))
            return sc_fail(err, SC_EFORMAT, "%s: invalid UTF-8 at byte %zu (0x%02X)", what, i, s[i]);
        cpbuf_push(&tok->text, cp);
    }
    tok->ids_n = 0;
    int ok = tok->kind == SC_TOK_BPE ? clip_encode(tok, trace) : bert_encode(tok, trace);
    return ok ? SC_OK : sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
}

static sc_status encode_row(sc_tokenizer *tok, const char *text, size_t len, const char *what, int64_t *ids,
                            int64_t *mask, int *n_tokens, int *truncated, sc_err *err)
{
    sc_status s = encode_content(tok, text, len, what, NULL, err);
    if (s) return s;
    int n = frame_row(tok, tok->ids, tok->ids_n, ids, mask);
    if (n_tokens) *n_tokens = n;
    if (truncated) *truncated = tok->ids_n > (size_t)tok->opt.max_length - 2;
    return SC_OK;
}

sc_status sc_tokenizer_encode(sc_tokenizer *tok, const char *text, size_t len, int64_t *ids, int64_t *mask,
                              int *n_tokens, int *truncated, sc_err *err)
{
    return encode_row(tok, text, len, "text", ids, mask, n_tokens, truncated, err);
}

sc_status sc_tokenizer_encode_batch(sc_tokenizer *tok, const char *const *texts, int64_t B, int64_t *ids,
                                    int64_t *mask, sc_err *err)
{
    int64_t T = tok->opt.max_length;
    for (int64_t b = 0; b < B; b++) {
        char what[32];
        snprintf(what, sizeof what, "text %lld", (long long)b);
        sc_status s = encode_row(tok, texts[b], strlen(texts[b]), what, ids + b * T, mask ? mask + b * T : NULL,
                                 NULL, NULL, err);
        if (s) return s;
    }
    return SC_OK;
}

sc_status sc_tokenizer_explain(sc_tokenizer *tok, const char *text, size_t len, FILE *out, sc_err *err)
{
    fprintf(out, "text      '%.*s'\n", (int)(len < 4096 ? len : 4096), text);
    sc_status s = encode_content(tok, text, len, "text", out, err);
    if (s) return s;
    int64_t *row = malloc((size_t)tok->opt.max_length * sizeof *row);
    if (!row) return sc_fail(err, SC_ENOMEM, "text: out of memory");
    int n = frame_row(tok, tok->ids, tok->ids_n, row, NULL);
    fprintf(out, "ids      ");
    for (int t = 0; t < n; t++) fprintf(out, " %lld", (long long)row[t]);
    fprintf(out, "\ntokens   ");
    for (int t = 0; t < n; t++) fprintf(out, " %s", tok->voc.str[row[t]]);
    fprintf(out, "\n");
    free(row);
    return SC_OK;
}

/* ======================================================================== */
/* 13. CSV                                                                   */
/* ======================================================================== */

/* -- a growable text buffer, shared by the CSV and SVG writers -- */

void sc_text_init(sc_text *t)
{
    memset(t, 0, sizeof *t);
}

/* Make room for `more` bytes and the terminating NUL; 0 (and `failed`
 * set) when that cannot be done. */
static int text_reserve(sc_text *t, size_t more)
{
    size_t need;
    if (t->failed) return 0;
    if (!sc_add_ok(t->len, more, &need) || !sc_add_ok(need, 1, &need)) {
        t->failed = 1;
        return 0;
    }
    if (need <= t->cap) return 1;
    size_t cap = t->cap ? t->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *grown = realloc(t->data, cap);
    if (!grown) {
        t->failed = 1;
        return 0;
    }
    t->data = grown;
    t->cap = cap;
    return 1;
}

void sc_text_put(sc_text *t, const char *s, size_t n)
{
    if (!text_reserve(t, n)) return;
    if (n) memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

void sc_text_puts(sc_text *t, const char *s)
{
    sc_text_put(t, s, strlen(s));
}

static void text_vprintf(sc_text *t, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    char small[256];
    int k = vsnprintf(small, sizeof small, fmt, ap);
    if (k < 0) {
        t->failed = 1;
    } else if ((size_t)k < sizeof small) {
        sc_text_put(t, small, (size_t)k);
    } else if (text_reserve(t, (size_t)k)) {
        vsnprintf(t->data + t->len, (size_t)k + 1, fmt, again);
        t->len += (size_t)k;
    }
    va_end(again);
}

void sc_text_printf(sc_text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    text_vprintf(t, fmt, ap);
    va_end(ap);
}

sc_status sc_text_save(const sc_text *t, const char *path, sc_err *err)
{
    if (t->failed) return sc_fail(err, SC_ENOMEM, "%s: out of memory while composing the file", path);
    return sc_write_file_atomic(path, t->data ? t->data : "", t->len, err);
}

void sc_text_free(sc_text *t)
{
    free(t->data);
    sc_text_init(t);
}

/* -- the reader -- */

/* The parser decodes every field into one text buffer (each field followed
 * by a NUL) and records where each field and each record starts. Offsets,
 * not pointers, because the buffer moves as it grows; pointers are made
 * once at the end. */
typedef struct {
    size_t first_field;   /* index into the field list */
    int n_fields;
    int64_t line;
} csv_record;

typedef struct {
    cursor in;
    const char *what;
    char delimiter;
    int64_t line;            /* 1-based line of the cursor */
    sc_csv_options lim;
    sc_text text;            /* decoded fields */
    size_t *field_start;     /* (n_fields) offsets into text */
    size_t n_fields, cap_fields;
    csv_record *record;      /* (n_records), the header first */
    size_t n_records, cap_records;
} csv_parser;

/* Make room for item index n in a malloc'ed array of `size`-byte items. */
static int grow_for(void **items, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return 1;
    size_t new_cap = *cap ? *cap * 2 : 64, bytes;
    if (!sc_mul_ok(new_cap, size, &bytes)) return 0;
    void *grown = realloc(*items, bytes);
    if (!grown) return 0;
    *items = grown;
    *cap = new_cap;
    return 1;
}

static int csv_peek(const cursor *c)
{
    return c->p < c->end ? *c->p : -1;
}

static sc_status csv_error(const csv_parser *ps, sc_err *err, sc_status code, int64_t line, const char *why)
{
    return sc_fail(err, code, "%s:%lld: %s", ps->what, (long long)line, why);
}

/* Consume one line end (CRLF, LF or a lone CR) if the cursor is on one. */
static void csv_skip_line_end(csv_parser *ps)
{
    int b = csv_peek(&ps->in);
    if (b != '\r' && b != '\n') return;
    ps->in.p++;
    if (b == '\r' && csv_peek(&ps->in) == '\n') ps->in.p++;
    ps->line++;
}

/* @book begin csv-quoted-field */
/* The body of a quoted field, the cursor just past the opening quote.
 * Inside quotes everything is data except the quote itself: "" stands for
 * one quote and a lone quote closes the field. Line ends inside are kept
 * verbatim but still counted, so later messages name the right line. */
static sc_status csv_quoted_body(csv_parser *ps, sc_err *err)
{
    cursor *c = &ps->in;
    int64_t open_line = ps->line;
    for (;;) {
        int b = csv_peek(c);
        if (b < 0)
            return csv_error(ps, err, SC_EFORMAT, open_line,
                             "unterminated quoted field (the quote opens on this line)");
        c->p++;
        if (b == '"') {
            if (csv_peek(c) != '"') break; /* the closing quote */
            c->p++;                        /* a doubled quote: keep one */
        } else if (b == '\0') {
            return csv_error(ps, err, SC_EFORMAT, ps->line, "NUL byte inside a quoted field");
        } else if (b == '\n' || (b == '\r' && csv_peek(c) != '\n')) {
            ps->line++;
        }
        char ch = (char)b;
        sc_text_put(&ps->text, &ch, 1);
    }
    int next = csv_peek(c);
    if (next >= 0 && next != ps->delimiter && next != '\r' && next != '\n')
        return csv_error(ps, err, SC_EFORMAT, ps->line,
                         "text after the closing quote of a field (a quote inside a field must be doubled)");
    return SC_OK;
}
/* @book end csv-quoted-field */

/* An unquoted field runs to the delimiter, a line end or the end of input;
 * a quote inside it is an error (RFC 4180 allows quotes only in quoted
 * fields, and guessing what the writer meant hides broken files). */
static sc_status csv_plain_body(csv_parser *ps, sc_err *err)
{
    cursor *c = &ps->in;
    const uint8_t *start = c->p;
    for (;;) {
        int b = csv_peek(c);
        if (b < 0 || b == ps->delimiter || b == '\r' || b == '\n') break;
        if (b == '"')
            return csv_error(ps, err, SC_EFORMAT, ps->line,
                             "a quote inside an unquoted field (quote the whole field and double the quote)");
        if (b == '\0') return csv_error(ps, err, SC_EFORMAT, ps->line, "NUL byte in a field");
        c->p++;
    }
    sc_text_put(&ps->text, (const char *)start, (size_t)(c->p - start));
    return SC_OK;
}

static sc_status csv_field(csv_parser *ps, sc_err *err)
{
    if (!grow_for((void **)&ps->field_start, &ps->cap_fields, ps->n_fields, sizeof(size_t)))
        return sc_fail(err, SC_ENOMEM, "%s: out of memory for the field list", ps->what);
    size_t start = ps->text.len;
    sc_status st;
    if (csv_peek(&ps->in) == '"') {
        ps->in.p++;
        st = csv_quoted_body(ps, err);
    } else {
        st = csv_plain_body(ps, err);
    }
    if (st != SC_OK) return st;
    if (ps->text.len - start > ps->lim.max_field_bytes)
        return sc_fail(err, SC_ENOMEM, "%s:%lld: a field is longer than the limit of %zu bytes", ps->what,
                       (long long)ps->line, ps->lim.max_field_bytes);
    sc_text_put(&ps->text, "", 1);
    if (ps->text.failed) return sc_fail(err, SC_ENOMEM, "%s: out of memory for the field text", ps->what);
    ps->field_start[ps->n_fields++] = start;
    return SC_OK;
}

/* One record: fields separated by the delimiter, up to a line end (which
 * is consumed) or the end of input. */
static sc_status csv_record_parse(csv_parser *ps, sc_err *err)
{
    csv_record rec = {ps->n_fields, 0, ps->line};
    for (;;) {
        if (rec.n_fields == ps->lim.max_fields)
            return sc_fail(err, SC_ENOMEM, "%s:%lld: more than %d fields in one record", ps->what,
                           (long long)rec.line, ps->lim.max_fields);
        sc_status st = csv_field(ps, err);
        if (st != SC_OK) return st;
        rec.n_fields++;
        if (csv_peek(&ps->in) != ps->delimiter) break;
        ps->in.p++;
    }
    csv_skip_line_end(ps);
    if (ps->n_records > 0 && !ps->lim.ragged_ok && rec.n_fields != ps->record[0].n_fields)
        return sc_fail(err, SC_EFORMAT, "%s:%lld: %d fields but the header has %d", ps->what,
                       (long long)rec.line, rec.n_fields, ps->record[0].n_fields);
    if (ps->n_records > (size_t)ps->lim.max_rows)
        return sc_fail(err, SC_ENOMEM, "%s:%lld: more than %lld records", ps->what, (long long)rec.line,
                       (long long)ps->lim.max_rows);
    if (!grow_for((void **)&ps->record, &ps->cap_records, ps->n_records, sizeof(csv_record)))
        return sc_fail(err, SC_ENOMEM, "%s: out of memory for the record list", ps->what);
    ps->record[ps->n_records++] = rec;
    return SC_OK;
}

static sc_csv_options csv_limits(const sc_csv_options *opt)
{
    sc_csv_options o = {0};
    if (opt) o = *opt;
    if (!o.delimiter) o.delimiter = ',';
    if (!o.max_file_bytes) o.max_file_bytes = SC_CSV_MAX_FILE_BYTES;
    if (o.max_rows <= 0) o.max_rows = SC_CSV_MAX_ROWS;
    if (o.max_fields <= 0) o.max_fields = SC_CSV_MAX_FIELDS;
    if (!o.max_field_bytes) o.max_field_bytes = SC_CSV_MAX_FIELD_BYTES;
    return o;
}

/* Turn the parser's offsets into the caller's pointers. */
static sc_status csv_publish(csv_parser *ps, sc_csv *csv, sc_err *err)
{
    size_t n_rows = ps->n_records - 1;
    csv->fields = malloc((ps->n_fields ? ps->n_fields : 1) * sizeof(char *));
    csv->rows = malloc((n_rows ? n_rows : 1) * sizeof(sc_csv_row));
    if (!csv->fields || !csv->rows) return sc_fail(err, SC_ENOMEM, "%s: out of memory for the row list", ps->what);
    csv->text = ps->text.data;
    sc_text_init(&ps->text);
    for (size_t i = 0; i < ps->n_fields; i++) csv->fields[i] = csv->text + ps->field_start[i];
    for (size_t r = 0; r < ps->n_records; r++) {
        const csv_record *rec = &ps->record[r];
        sc_csv_row row = {csv->fields + rec->first_field, rec->n_fields, rec->line};
        if (r == 0)
            csv->header = row;
        else
            csv->rows[r - 1] = row;
    }
    csv->n_rows = (int64_t)n_rows;
    csv->n_cols = csv->header.n_fields;
    return SC_OK;
}

sc_status sc_csv_parse(sc_csv *csv, const char *text, size_t len, const char *what,
                       const sc_csv_options *opt, sc_err *err)
{
    memset(csv, 0, sizeof *csv);
    snprintf(csv->what, sizeof csv->what, "%s", what);
    csv_parser ps = {.in = cursor_make((const uint8_t *)text, len), .what = what, .line = 1,
                     .lim = csv_limits(opt)};
    ps.delimiter = ps.lim.delimiter;
    sc_status st = SC_OK;
    if (len > ps.lim.max_file_bytes)
        st = sc_fail(err, SC_ENOMEM, "%s: larger than the limit of %zu bytes", what, ps.lim.max_file_bytes);
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) ps.in.p += 3; /* UTF-8 byte-order mark */
    while (st == SC_OK && csv_peek(&ps.in) >= 0) {
        int b = csv_peek(&ps.in);
        if (b == '\r' || b == '\n')
            csv_skip_line_end(&ps); /* an empty line holds no record */
        else
            st = csv_record_parse(&ps, err);
    }
    if (st == SC_OK && ps.n_records == 0) st = sc_fail(err, SC_EFORMAT, "%s: no header line (the file is empty)", what);
    if (st == SC_OK) st = csv_publish(&ps, csv, err);
    sc_text_free(&ps.text);
    free(ps.field_start);
    free(ps.record);
    if (st != SC_OK) sc_csv_free(csv);
    return st;
}

sc_status sc_csv_load(sc_csv *csv, const char *path, const sc_csv_options *opt, sc_err *err)
{
    sc_csv_options lim = csv_limits(opt);
    uint8_t *bytes;
    size_t len;
    memset(csv, 0, sizeof *csv);
    sc_status st = sc_read_file(path, lim.max_file_bytes, &bytes, &len, err);
    if (st != SC_OK) return st;
    st = sc_csv_parse(csv, (const char *)bytes, len, path, &lim, err);
    free(bytes);
    return st;
}

void sc_csv_free(sc_csv *csv)
{
    free(csv->text);
    free(csv->fields);
    free(csv->rows);
    csv->text = NULL;
    csv->fields = NULL;
    csv->rows = NULL;
    csv->n_rows = 0;
    csv->n_cols = 0;
    memset(&csv->header, 0, sizeof csv->header);
}

int sc_csv_column(const sc_csv *csv, const char *name)
{
    for (int i = 0; i < csv->header.n_fields; i++)
        if (strcmp(csv->header.field[i], name) == 0) return i;
    return -1;
}

sc_status sc_csv_require_column(const sc_csv *csv, const char *name, int *col, sc_err *err)
{
    *col = sc_csv_column(csv, name);
    if (*col < 0)
        return sc_fail(err, SC_EFORMAT, "%s:%lld: no column '%s' in the header", csv->what,
                       (long long)csv->header.line, name);
    for (int i = *col + 1; i < csv->header.n_fields; i++)
        if (strcmp(csv->header.field[i], name) == 0)
            return sc_fail(err, SC_EFORMAT, "%s:%lld: column '%s' appears twice in the header (columns %d and %d)",
                           csv->what, (long long)csv->header.line, name, *col + 1, i + 1);
    return SC_OK;
}

const char *sc_csv_get(const sc_csv *csv, int64_t row, int col)
{
    SC_ASSERT(row >= 0 && row < csv->n_rows && col >= 0, "row %lld, column %d of a CSV with %lld rows",
              (long long)row, col, (long long)csv->n_rows);
    const sc_csv_row *r = &csv->rows[row];
    return col < r->n_fields ? r->field[col] : "";
}

sc_status sc_csv_fail(sc_err *err, sc_status code, const sc_csv *csv, int64_t row, int col,
                      const char *fmt, ...)
{
    if (!err) return code;
    const sc_csv_row *r = row >= 0 && row < csv->n_rows ? &csv->rows[row] : &csv->header;
    int k;
    if (col >= 0 && col < csv->header.n_fields)
        k = snprintf(err->msg, sizeof err->msg, "%s:%lld: column %s: ", csv->what, (long long)r->line,
                     csv->header.field[col]);
    else
        k = snprintf(err->msg, sizeof err->msg, "%s:%lld: ", csv->what, (long long)r->line);
    if (k < 0 || (size_t)k >= sizeof err->msg) return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg + k, sizeof err->msg - (size_t)k, fmt, ap);
    va_end(ap);
    return code;
}

sc_status sc_csv_get_int(const sc_csv *csv, int64_t row, int col, int64_t *out, sc_err *err)
{
    const char *s = sc_csv_get(csv, row, col);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    /* strtoll skips leading blanks; a field must be the number alone. */
    if (*s == '\0' || *end != '\0' || s[0] == ' ' || s[0] == '\t')
        return sc_csv_fail(err, SC_EFORMAT, csv, row, col, "'%.64s' is not an integer", s);
    if (errno == ERANGE) return sc_csv_fail(err, SC_ERANGE, csv, row, col, "%.64s does not fit in 64 bits", s);
    *out = (int64_t)v;
    return SC_OK;
}

sc_status sc_csv_get_double(const sc_csv *csv, int64_t row, int col, double *out, sc_err *err)
{
    const char *s = sc_csv_get(csv, row, col);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || s[0] == ' ' || s[0] == '\t')
        return sc_csv_fail(err, SC_EFORMAT, csv, row, col, "'%.64s' is not a number", s);
    if (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL))
        return sc_csv_fail(err, SC_ERANGE, csv, row, col, "%.64s is out of the range of a double", s);
    *out = v;
    return SC_OK;
}

/* -- the writer -- */

void sc_csv_writer_init(sc_csv_writer *w)
{
    sc_text_init(&w->out);
    w->fields_in_row = 0;
    w->delimiter = ',';
}

static int csv_needs_quotes(const char *s, char delimiter)
{
    for (; *s; s++)
        if (*s == delimiter || *s == '"' || *s == '\r' || *s == '\n') return 1;
    return 0;
}

void sc_csv_put(sc_csv_writer *w, const char *field)
{
    /* A first field that begins like a byte-order mark would lose it. */
    int starts_like_bom = w->out.len == 0 && strncmp(field, "\xEF\xBB\xBF", 3) == 0;
    if (w->fields_in_row++ > 0) sc_text_put(&w->out, &w->delimiter, 1);
    if (!starts_like_bom && !csv_needs_quotes(field, w->delimiter)) {
        sc_text_puts(&w->out, field);
        return;
    }
    sc_text_put(&w->out, "\"", 1);
    for (const char *q; (q = strchr(field, '"')) != NULL; field = q + 1) {
        sc_text_put(&w->out, field, (size_t)(q - field));
        sc_text_put(&w->out, "\"\"", 2);
    }
    sc_text_puts(&w->out, field);
    sc_text_put(&w->out, "\"", 1);
}

void sc_csv_putf(sc_csv_writer *w, const char *fmt, ...)
{
    sc_text field;
    sc_text_init(&field);
    va_list ap;
    va_start(ap, fmt);
    text_vprintf(&field, fmt, ap);
    va_end(ap);
    if (field.failed) w->out.failed = 1;
    sc_csv_put(w, field.data ? field.data : "");
    sc_text_free(&field);
}

void sc_csv_end_row(sc_csv_writer *w)
{
    SC_ASSERT(w->fields_in_row > 0, "a CSV record needs at least one field");
    /* A record whose one field is empty would be an empty line, which
     * readers skip; "" keeps it. */
    int line_is_empty = w->out.len == 0 || (w->out.data && w->out.data[w->out.len - 1] == '\n');
    if (w->fields_in_row == 1 && line_is_empty) sc_text_put(&w->out, "\"\"", 2);
    sc_text_put(&w->out, "\n", 1);
    w->fields_in_row = 0;
}

sc_status sc_csv_writer_save(sc_csv_writer *w, const char *path, sc_err *err)
{
    SC_ASSERT(w->fields_in_row == 0, "sc_csv_end_row missing before saving %s", path);
    return sc_text_save(&w->out, path, err);
}

void sc_csv_writer_free(sc_csv_writer *w)
{
    sc_text_free(&w->out);
    w->fields_in_row = 0;
}

/* ======================================================================== */
/* 14. SVG                                                                   */
/* ======================================================================== */

/* An SVG file is XML text: elements like <line x1=".." .../> inside one
 * <svg> root. Everything here is written by hand into an sc_text and saved
 * atomically. Class names on the groups (panel, series, errorbar, legend-
 * entry, point) make the files easy to restyle and to test. */

/* Okabe and Ito's eight colours ("Color Universal Design", 2008), ordered
 * so the first few differ most on white. */
static const char *const svg_palette[SC_PLOT_PALETTE] = {
    "#0072B2", /* blue */
    "#D55E00", /* vermillion */
    "#009E73", /* bluish green */
    "#E69F00", /* orange */
    "#CC79A7", /* reddish purple */
    "#56B4E9", /* sky blue */
    "#F0E442", /* yellow */
    "#000000", /* black */
};

enum { SVG_CIRCLE, SVG_SQUARE, SVG_TRIANGLE, SVG_DIAMOND, SVG_SHAPES };

/* -- text -- */

/* Length of the character at s (n bytes left) if XML 1.0 allows it, else
 * 0: valid UTF-8 (section 2's check) minus the C0 controls other than
 * tab, LF and CR, and minus U+FFFE and U+FFFF. */
static size_t xml_char_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x20) return s[0] == '\t' || s[0] == '\n' || s[0] == '\r';
    size_t len = utf8_valid_len(s, n);
    if (len == 3 && s[0] == 0xEF && s[1] == 0xBF && s[2] >= 0xBE) return 0;
    return len;
}

/* @book begin svg-escape */
/* Text and attribute values: the five XML specials become entities and any
 * byte that is not part of an allowed character becomes U+FFFD, so a label
 * read from a Latin-1 file cannot make the whole document unreadable. */
static void svg_escaped(sc_text *t, const char *text)
{
    const unsigned char *s = (const unsigned char *)(text ? text : "");
    for (size_t left = strlen((const char *)s); left > 0;) {
        size_t n = xml_char_len(s, left);
        if (n == 0) {
            sc_text_puts(t, "\xEF\xBF\xBD");
            s++;
            left--;
            continue;
        }
        switch (*s) {
        case '&': sc_text_puts(t, "&amp;"); break;
        case '<': sc_text_puts(t, "&lt;"); break;
        case '>': sc_text_puts(t, "&gt;"); break;
        case '"': sc_text_puts(t, "&quot;"); break;
        case '\'': sc_text_puts(t, "&apos;"); break;
        default: sc_text_put(t, (const char *)s, n);
        }
        s += n;
        left -= n;
    }
}
/* @book end svg-escape */

/* <text> at (x, y); anchor is "start", "middle" or "end". */
static void svg_label(sc_text *t, double x, double y, const char *anchor, const char *cls, const char *text)
{
    sc_text_printf(t, "<text class=\"%s\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"%s\">", cls, x, y, anchor);
    svg_escaped(t, text);
    sc_text_puts(t, "</text>\n");
}

static void svg_title(sc_text *t, double width, const char *title)
{
    sc_text_printf(t, "<text class=\"title\" x=\"%.2f\" y=\"22\" text-anchor=\"middle\" font-size=\"16\">",
                   width / 2);
    svg_escaped(t, title);
    sc_text_puts(t, "</text>\n");
}

static void svg_begin(sc_text *t, double width, double height)
{
    sc_text_puts(t, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    sc_text_printf(t,
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
                   "viewBox=\"0 0 %.0f %.0f\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
                   width, height, width, height);
    sc_text_puts(t, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
}

static void svg_marker(sc_text *t, int shape, double x, double y, double r, const char *color, const char *cls)
{
    switch (shape % SVG_SHAPES) {
    case SVG_CIRCLE:
        sc_text_printf(t, "<circle class=\"%s\" cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" fill=\"%s\"/>\n", cls, x, y, r,
                       color);
        break;
    case SVG_SQUARE:
        sc_text_printf(t, "<rect class=\"%s\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n",
                       cls, x - 0.9 * r, y - 0.9 * r, 1.8 * r, 1.8 * r, color);
        break;
    case SVG_TRIANGLE:
        sc_text_printf(t, "<polygon class=\"%s\" points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f\" fill=\"%s\"/>\n", cls, x,
                       y - 1.2 * r, x - 1.1 * r, y + 0.8 * r, x + 1.1 * r, y + 0.8 * r, color);
        break;
    default:
        sc_text_printf(t, "<polygon class=\"%s\" points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f %.2f,%.2f\" fill=\"%s\"/>\n",
                       cls, x, y - 1.25 * r, x + 1.25 * r, y, x, y + 1.25 * r, x - 1.25 * r, y, color);
    }
}

/* -- axes and nice numbers -- */

/* @book begin nice-number */
/* Heckbert's "nice numbers" (Graphics Gems, 1990): the number of the form
 * {1, 2, 5} × 10^k nearest to x (round = 1) or the smallest one not below
 * x (round = 0). Tick steps built from it read naturally: 0.1, 0.2, 0.5. */
static double nice_number(double x, int round)
{
    double power = pow(10.0, floor(log10(x)));
    double f = x / power; /* in [1, 10) */
    double nice;
    if (round)
        nice = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else
        nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nice * power;
}
/* @book end nice-number */

#define SVG_MAX_TICKS 24

/* One axis: data values lo..hi (log10 of them on a log axis) map linearly
 * to pixels px0..px1. */
typedef struct {
    double lo, hi;
    double px0, px1;
    int log;
    double tick[SVG_MAX_TICKS];
    int n_ticks;
    int decimals;     /* for linear tick labels; log labels use %g */
} svg_axis;

static double svg_map(const svg_axis *a, double v)
{
    double u = a->log ? log10(v) : v;
    return a->px0 + (u - a->lo) / (a->hi - a->lo) * (a->px1 - a->px0);
}

/* Linear axis over [lo, hi]. With `fixed` the range is kept and ticks fall
 * inside it; otherwise it widens to whole tick steps ("loose" labels). */
static void axis_linear(svg_axis *a, double lo, double hi, int fixed)
{
    if (!(hi > lo)) { /* one value: give it some room */
        double pad = lo != 0 ? 0.5 * fabs(lo) : 0.5;
        lo -= pad;
        hi += pad;
    }
    double step = nice_number(nice_number(hi - lo, 0) / 4, 1);
    if (!fixed) {
        lo = floor(lo / step) * step;
        hi = ceil(hi / step) * step;
    }
    a->lo = lo;
    a->hi = hi;
    a->log = 0;
    a->decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    a->n_ticks = 0;
    for (double k = ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step && a->n_ticks < SVG_MAX_TICKS; k++)
        a->tick[a->n_ticks++] = k == 0 ? 0.0 : k * step; /* never print -0 */
}

/* Log axis over the positive range [lo, hi], padded by 5% of its width on
 * each side; ticks at 1, 2, 5 × 10^k (only 10^k when that gives too many). */
static void axis_log(svg_axis *a, double lo, double hi)
{
    double l0 = log10(lo), l1 = log10(hi);
    if (!(l1 > l0)) { /* one value: a decade around it */
        l0 -= 0.5;
        l1 += 0.5;
    }
    double pad = 0.05 * (l1 - l0);
    a->lo = l0 - pad;
    a->hi = l1 + pad;
    a->log = 1;
    static const double mantissa[3] = {1, 2, 5};
    int decades = (int)ceil(a->hi) - (int)floor(a->lo);
    int per_decade = decades > 3 ? 1 : 3;
    a->n_ticks = 0;
    for (int e = (int)floor(a->lo); e <= (int)ceil(a->hi); e++)
        for (int m = 0; m < per_decade; m++) {
            double v = mantissa[m] * pow(10.0, e);
            double u = log10(v);
            if (u >= a->lo && u <= a->hi && a->n_ticks < SVG_MAX_TICKS) a->tick[a->n_ticks++] = v;
        }
}

static void axis_tick_text(const svg_axis *a, double v, char *buf, size_t cap)
{
    if (a->log)
        snprintf(buf, cap, "%g", v);
    else
        snprintf(buf, cap, "%.*f", a->decimals, v);
}

/* -- line charts -- */

/* Panel geometry in pixels. */
#define LINE_PANEL_W 340.0
#define LINE_PANEL_H 270.0
#define LINE_LEFT 58.0
#define LINE_RIGHT 14.0
#define LINE_TOP 30.0
#define LINE_BOTTOM 46.0
#define PLOT_INSET 8.0   /* data never touches the frame */
#define TITLE_BAND 34.0
#define LEGEND_ROW 20.0

static int point_ok(const sc_line_chart *c, const sc_plot_series *s, int i)
{
    double x = s->x[i], y = s->y[i];
    return isfinite(x) && isfinite(y) && (!c->x_log || x > 0);
}

static int error_ok(const sc_plot_series *s, int i)
{
    return s->err && isfinite(s->err[i]) && s->err[i] >= 0;
}

static int series_has_points(const sc_line_chart *c, const sc_plot_series *s)
{
    for (int i = 0; i < s->n; i++)
        if (point_ok(c, s, i)) return 1;
    return 0;
}

static const char *series_color(const sc_plot_series *s, int index)
{
    int k = s->color >= 0 ? s->color : index;
    return svg_palette[k % SC_PLOT_PALETTE];
}

/* The x and y axes of one chart from its drawable points. */
static void line_axes(const sc_line_chart *c, double w, double h, svg_axis *ax, svg_axis *ay)
{
    double x0 = HUGE_VAL, x1 = -HUGE_VAL, y0 = HUGE_VAL, y1 = -HUGE_VAL;
    for (int k = 0; k < c->n_series; k++) {
        const sc_plot_series *s = &c->series[k];
        for (int i = 0; i < s->n; i++) {
            if (!point_ok(c, s, i)) continue;
            double e = error_ok(s, i) ? s->err[i] : 0;
            x0 = fmin(x0, s->x[i]);
            x1 = fmax(x1, s->x[i]);
            y0 = fmin(y0, s->y[i] - e);
            y1 = fmax(y1, s->y[i] + e);
        }
    }
    if (x0 > x1) { /* nothing to draw */
        x0 = c->x_log ? 0.1 : 0;
        x1 = y1 = 1;
        y0 = 0;
    }
    if (c->x_log)
        axis_log(ax, x0, x1);
    else
        axis_linear(ax, x0, x1, 0);
    int fixed_y = c->y_max > c->y_min;
    axis_linear(ay, fixed_y ? c->y_min : y0, fixed_y ? c->y_max : y1, fixed_y);
    if (c->x_ticks && c->n_x_ticks > 0) {
        ax->n_ticks = 0;
        for (int i = 0; i < c->n_x_ticks && ax->n_ticks < SVG_MAX_TICKS; i++) {
            double v = c->x_ticks[i];
            if (!isfinite(v) || (c->x_log && v <= 0)) continue;
            double u = c->x_log ? log10(v) : v;
            if (u >= ax->lo && u <= ax->hi) ax->tick[ax->n_ticks++] = v;
        }
    }
    ax->px0 = LINE_LEFT + PLOT_INSET;
    ax->px1 = w - LINE_RIGHT - PLOT_INSET;
    ay->px0 = h - LINE_BOTTOM - PLOT_INSET;
    ay->px1 = LINE_TOP + PLOT_INSET;
}

/* Frame, grid lines, ticks and their labels, axis titles. */
static void line_frame(sc_text *t, const sc_line_chart *c, const svg_axis *ax, const svg_axis *ay, double w,
                       double h)
{
    double left = LINE_LEFT, right = w - LINE_RIGHT, top = LINE_TOP, bottom = h - LINE_BOTTOM;
    char buf[64];
    sc_text_puts(t, "<g class=\"axes\" stroke=\"#444\" stroke-width=\"1\">\n");
    for (int i = 0; i < ay->n_ticks; i++) {
        double y = svg_map(ay, ay->tick[i]);
        sc_text_printf(t, "<line class=\"grid\" x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#ddd\"/>\n",
                       left, y, right, y);
        sc_text_printf(t, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", left - 5, y, left, y);
    }
    for (int i = 0; i < ax->n_ticks; i++) {
        double x = svg_map(ax, ax->tick[i]);
        sc_text_printf(t, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", x, bottom, x, bottom + 5);
    }
    sc_text_printf(t, "<rect class=\"frame\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\"/>\n",
                   left, top, right - left, bottom - top);
    sc_text_puts(t, "</g>\n");
    for (int i = 0; i < ay->n_ticks; i++) {
        axis_tick_text(ay, ay->tick[i], buf, sizeof buf);
        svg_label(t, left - 8, svg_map(ay, ay->tick[i]) + 4, "end", "tick", buf);
    }
    for (int i = 0; i < ax->n_ticks; i++) {
        axis_tick_text(ax, ax->tick[i], buf, sizeof buf);
        svg_label(t, svg_map(ax, ax->tick[i]), bottom + 18, "middle", "tick", buf);
    }
    if (c->title) svg_label(t, (left + right) / 2, top - 10, "middle", "panel-title", c->title);
    if (c->x_label) svg_label(t, (left + right) / 2, h - 8, "middle", "axis-label", c->x_label);
    if (c->y_label) {
        double cx = 14, cy = (top + bottom) / 2;
        sc_text_printf(t, "<g transform=\"rotate(-90 %.2f %.2f)\">\n", cx, cy);
        svg_label(t, cx, cy, "middle", "axis-label", c->y_label);
        sc_text_puts(t, "</g>\n");
    }
}

/* @book begin svg-series */
/* One method: its line (broken where a point is missing), its error bars
 * (one standard deviation either side of the mean, with caps) and its
 * markers, all in the method's colour. */
static void line_series(sc_text *t, const sc_line_chart *c, int k, const svg_axis *ax, const svg_axis *ay)
{
    const sc_plot_series *s = &c->series[k];
    const char *color = series_color(s, k);
    sc_text_puts(t, "<g class=\"series\">\n<title>");
    svg_escaped(t, s->name);
    sc_text_puts(t, "</title>\n");
    for (int i = 0; i < s->n;) { /* one polyline per run of drawable points */
        if (!point_ok(c, s, i)) {
            i++;
            continue;
        }
        sc_text_printf(t, "<polyline class=\"line\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
                       color, s->dashed ? " stroke-dasharray=\"6 4\"" : "");
        for (; i < s->n && point_ok(c, s, i); i++)
            sc_text_printf(t, "%.2f,%.2f ", svg_map(ax, s->x[i]), svg_map(ay, s->y[i]));
        sc_text_puts(t, "\"/>\n");
    }
    for (int i = 0; i < s->n; i++) {
        if (!point_ok(c, s, i) || !error_ok(s, i)) continue;
        double x = svg_map(ax, s->x[i]);
        double lo = svg_map(ay, s->y[i] - s->err[i]), hi = svg_map(ay, s->y[i] + s->err[i]);
        sc_text_printf(t,
                       "<path class=\"errorbar\" stroke=\"%s\" stroke-width=\"1.2\" fill=\"none\" "
                       "d=\"M%.2f,%.2f V%.2f M%.2f,%.2f H%.2f M%.2f,%.2f H%.2f\"/>\n",
                       color, x, lo, hi, x - 4, lo, x + 4, x - 4, hi, x + 4);
    }
    for (int i = 0; i < s->n; i++)
        if (point_ok(c, s, i)) svg_marker(t, k, svg_map(ax, s->x[i]), svg_map(ay, s->y[i]), 3.5, color, "marker");
    sc_text_puts(t, "</g>\n");
}
/* @book end svg-series */

static void line_panel(sc_text *t, const sc_line_chart *c, double ox, double oy, int id)
{
    svg_axis ax, ay;
    line_axes(c, LINE_PANEL_W, LINE_PANEL_H, &ax, &ay);
    sc_text_printf(t, "<g class=\"panel\" transform=\"translate(%.2f %.2f)\">\n", ox, oy);
    sc_text_printf(t, "<clipPath id=\"plot%d\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/></clipPath>\n",
                   id, LINE_LEFT, LINE_TOP, LINE_PANEL_W - LINE_LEFT - LINE_RIGHT,
                   LINE_PANEL_H - LINE_TOP - LINE_BOTTOM);
    line_frame(t, c, &ax, &ay, LINE_PANEL_W, LINE_PANEL_H);
    sc_text_printf(t, "<g class=\"data\" clip-path=\"url(#plot%d)\">\n", id);
    for (int k = 0; k < c->n_series; k++) line_series(t, c, k, &ax, &ay);
    sc_text_puts(t, "</g>\n</g>\n");
}

/* A legend laid out in equal slots, as many per row as fit in `width`,
 * the block centred. */
typedef struct {
    int n;
    double slot;
    int per_row;
    double left;    /* x of the first slot */
} svg_legend;

static svg_legend legend_layout(const char *const *names, int n, double width)
{
    size_t longest = 0;
    for (int i = 0; i < n; i++)
        if (names[i] && strlen(names[i]) > longest) longest = strlen(names[i]);
    svg_legend g = {n, 7.0 * (double)longest + 56, 1, 10};
    if (g.slot < 120) g.slot = 120;
    if (g.slot > width - 20) g.slot = width - 20;
    g.per_row = (int)((width - 20) / g.slot);
    if (g.per_row < 1) g.per_row = 1;
    int used = n < g.per_row ? n : g.per_row;
    g.left = (width - used * g.slot) / 2;
    return g;
}

static double legend_height(const svg_legend *g)
{
    return g->n ? ((g->n + g->per_row - 1) / g->per_row) * LEGEND_ROW + 12 : 0;
}

/* The top-left corner of entry i, its sample drawn from x to x + 30. */
static void legend_entry_begin(sc_text *t, const svg_legend *g, int i, double ox, double oy)
{
    double x = ox + g->left + (i % g->per_row) * g->slot, y = oy + 6 + (i / g->per_row) * LEGEND_ROW;
    sc_text_printf(t, "<g class=\"legend-entry\" transform=\"translate(%.2f %.2f)\">\n", x, y);
}

static void line_legend(sc_text *t, const sc_line_chart *c, double ox, double oy, double width)
{
    const char *names[256];
    int n = c->n_series < 256 ? c->n_series : 256;
    for (int k = 0; k < n; k++) names[k] = c->series[k].name;
    svg_legend g = legend_layout(names, n, width);
    sc_text_puts(t, "<g class=\"legend\">\n");
    for (int k = 0; k < n; k++) {
        const sc_plot_series *s = &c->series[k];
        const char *color = series_color(s, k);
        legend_entry_begin(t, &g, k, ox, oy);
        sc_text_printf(t, "<line x1=\"0\" y1=\"7\" x2=\"30\" y2=\"7\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", color,
                       s->dashed ? " stroke-dasharray=\"6 4\"" : "");
        svg_marker(t, k, 15, 7, 3.5, color, "marker");
        sc_text_puts(t, "<text class=\"legend-text\" x=\"38\" y=\"11\">");
        svg_escaped(t, s->name);
        if (!series_has_points(c, s)) sc_text_puts(t, " (no data)");
        sc_text_puts(t, "</text>\n</g>\n");
    }
    sc_text_puts(t, "</g>\n");
}

static sc_status line_chart_check(const char *path, const sc_line_chart *c, int index, sc_err *err)
{
    if (c->n_series < 0 || (c->n_series > 0 && !c->series) || c->n_series > 256)
        return sc_fail(err, SC_EARG, "%s: panel %d has %d series (0 to 256 allowed)", path, index + 1, c->n_series);
    for (int k = 0; k < c->n_series; k++) {
        const sc_plot_series *s = &c->series[k];
        if (s->n < 0 || (s->n > 0 && (!s->x || !s->y)))
            return sc_fail(err, SC_EARG, "%s: series '%s' of panel %d has no data arrays for its %d points", path,
                           s->name ? s->name : "", index + 1, s->n);
    }
    return SC_OK;
}

sc_status sc_svg_line_panels(const char *path, const char *title, const sc_line_chart *panels, int n_panels,
                             int n_cols, sc_err *err)
{
    if (!panels || n_panels < 1 || n_panels > 64)
        return sc_fail(err, SC_EARG, "%s: %d panels (1 to 64 allowed)", path, n_panels);
    for (int p = 0; p < n_panels; p++) {
        sc_status st = line_chart_check(path, &panels[p], p, err);
        if (st != SC_OK) return st;
    }
    if (n_cols < 1 || n_cols > n_panels) n_cols = n_panels;
    int n_rows = (n_panels + n_cols - 1) / n_cols;
    double width = n_cols * LINE_PANEL_W, top = title ? TITLE_BAND : 0;
    const char *names[256];
    for (int k = 0; k < panels[0].n_series; k++) names[k] = panels[0].series[k].name;
    svg_legend g = legend_layout(names, panels[0].n_series, width);
    double grid_bottom = top + n_rows * LINE_PANEL_H;

    sc_text t;
    sc_text_init(&t);
    svg_begin(&t, width, grid_bottom + legend_height(&g));
    if (title) svg_title(&t, width, title);
    for (int p = 0; p < n_panels; p++)
        line_panel(&t, &panels[p], (p % n_cols) * LINE_PANEL_W, top + (p / n_cols) * LINE_PANEL_H, p);
    line_legend(&t, &panels[0], 0, grid_bottom, width);
    sc_text_puts(&t, "</svg>\n");
    sc_status st = sc_text_save(&t, path, err);
    sc_text_free(&t);
    return st;
}

sc_status sc_svg_line_chart(const char *path, const sc_line_chart *chart, sc_err *err)
{
    return sc_svg_line_panels(path, NULL, chart, 1, 1, err);
}

/* -- scatter plots -- */

#define SCATTER_SIZE 400.0   /* panel width; the plot area is a square */
#define SCATTER_MARGIN 16.0
#define SCATTER_SIDE (SCATTER_SIZE - 2 * SCATTER_MARGIN)
#define SCATTER_PANEL_H (LINE_TOP + SCATTER_SIDE + SCATTER_MARGIN)

/* The square plot area of a panel and one scale for both axes, chosen so
 * the larger extent of the points fills it. */
static void scatter_scale(const sc_scatter_panel *p, double *scale, double *cx, double *cy)
{
    double x0 = HUGE_VAL, x1 = -HUGE_VAL, y0 = HUGE_VAL, y1 = -HUGE_VAL;
    for (int64_t i = 0; i < p->n; i++) {
        double x = p->xy[2 * i], y = p->xy[2 * i + 1];
        if (!isfinite(x) || !isfinite(y)) continue;
        x0 = fmin(x0, x);
        x1 = fmax(x1, x);
        y0 = fmin(y0, y);
        y1 = fmax(y1, y);
    }
    if (x0 > x1) { /* nothing to draw */
        x0 = y0 = 0;
        x1 = y1 = 1;
    }
    double extent = fmax(fmax(x1 - x0, y1 - y0), 1e-12);
    *scale = (SCATTER_SIDE - 2 * PLOT_INSET) / extent;
    *cx = (x0 + x1) / 2;
    *cy = (y0 + y1) / 2;
}

static void scatter_panel(sc_text *t, const sc_scatter_panel *p, double ox, double oy)
{
    double scale, cx, cy, mid_x = SCATTER_SIZE / 2, mid_y = LINE_TOP + SCATTER_SIDE / 2;
    scatter_scale(p, &scale, &cx, &cy);
    sc_text_printf(t, "<g class=\"panel\" transform=\"translate(%.2f %.2f)\">\n", ox, oy);
    if (p->title) svg_label(t, mid_x, LINE_TOP - 10, "middle", "panel-title", p->title);
    sc_text_printf(t,
                   "<rect class=\"frame\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
                   "stroke=\"#444\"/>\n",
                   SCATTER_MARGIN, LINE_TOP, SCATTER_SIDE, SCATTER_SIDE);
    sc_text_puts(t, "<g class=\"points\" fill-opacity=\"0.8\">\n"); /* overlaps stay visible */
    for (int64_t i = 0; i < p->n; i++) {
        double x = p->xy[2 * i], y = p->xy[2 * i + 1];
        if (!isfinite(x) || !isfinite(y)) continue;
        int c = p->category[i];
        svg_marker(t, c / SC_PLOT_PALETTE, mid_x + (x - cx) * scale, mid_y - (y - cy) * scale, 3.2,
                   svg_palette[c % SC_PLOT_PALETTE], "point");
    }
    sc_text_puts(t, "</g>\n</g>\n");
}

sc_status sc_svg_scatter(const char *path, const char *title, const sc_scatter_panel *panels, int n_panels,
                         const char *const *category_names, int n_categories, sc_err *err)
{
    if (!panels || n_panels < 1 || n_panels > 16)
        return sc_fail(err, SC_EARG, "%s: %d panels (1 to 16 allowed)", path, n_panels);
    if (n_categories < 1 || n_categories > 256 || !category_names)
        return sc_fail(err, SC_EARG, "%s: %d categories (1 to 256 allowed, each named)", path, n_categories);
    for (int p = 0; p < n_panels; p++) {
        if (panels[p].n < 0 || (panels[p].n > 0 && (!panels[p].xy || !panels[p].category)))
            return sc_fail(err, SC_EARG, "%s: panel %d has no data arrays for its points", path, p + 1);
        for (int64_t i = 0; i < panels[p].n; i++)
            if (panels[p].category[i] < 0 || panels[p].category[i] >= n_categories)
                return sc_fail(err, SC_ERANGE, "%s: panel %d, point %lld: category %d is outside [0, %d)", path,
                               p + 1, (long long)i, panels[p].category[i], n_categories);
    }
    double width = n_panels * SCATTER_SIZE, top = title ? TITLE_BAND : 0;
    svg_legend g = legend_layout(category_names, n_categories, width);
    double grid_bottom = top + SCATTER_PANEL_H;

    sc_text t;
    sc_text_init(&t);
    svg_begin(&t, width, grid_bottom + legend_height(&g));
    if (title) svg_title(&t, width, title);
    for (int p = 0; p < n_panels; p++) scatter_panel(&t, &panels[p], p * SCATTER_SIZE, top);
    sc_text_puts(&t, "<g class=\"legend\">\n");
    for (int c = 0; c < n_categories; c++) {
        legend_entry_begin(&t, &g, c, 0, grid_bottom);
        svg_marker(&t, c / SC_PLOT_PALETTE, 15, 7, 4, svg_palette[c % SC_PLOT_PALETTE], "marker");
        svg_label(&t, 38, 11, "start", "legend-text", category_names[c]);
        sc_text_puts(&t, "</g>\n");
    }
    sc_text_puts(&t, "</g>\n</svg>\n");
    sc_status st = sc_text_save(&t, path, err);
    sc_text_free(&t);
    return st;
}

/* ======================================================================== */
/* 15. Hashing (SHA-256)                                                     */
/* ======================================================================== */
/*
 * SHA-256 as FIPS 180-4 defines it, for fingerprints: the embedding cache
 * records the hash of every model and dataset file it was computed from,
 * so that a cache made from other files is recognised and refused.
 *
 * The message is processed in 64-byte blocks. Each block is expanded into
 * 64 words W[t] and mixed into the eight state words by 64 rounds; the
 * message is padded with a 1 bit, zeros, and its length in bits as a
 * big-endian 64-bit number so that it fills whole blocks (FIPS 180-4,
 * sections 5.1.1, 6.2.2).
 */

/* The first 32 bits of the fractional parts of the cube roots of the first
 * 64 primes (FIPS 180-4, 4.2.2). */
static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr32(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

/* @book begin sha256-block */
/* Mix one 64-byte block into the state h[8] (FIPS 180-4, 6.2.2). */
static void sha256_block(uint32_t h[8], const uint8_t *block)
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++) /* the block as 16 big-endian words */
        w[t] = (uint32_t)block[4 * t] << 24 | (uint32_t)block[4 * t + 1] << 16 | (uint32_t)block[4 * t + 2] << 8 |
               block[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr32(w[t - 15], 7) ^ rotr32(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr32(w[t - 2], 17) ^ rotr32(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t sum1 = rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25);
        uint32_t choose = (e & f) ^ (~e & g);
        uint32_t t1 = k + sum1 + choose + sha256_k[t] + w[t];
        uint32_t sum0 = rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22);
        uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = sum0 + majority;
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}
/* @book end sha256-block */

void sc_sha256_init(sc_sha256 *s)
{
    /* The first 32 bits of the fractional parts of the square roots of the
     * first 8 primes (FIPS 180-4, 5.3.3). */
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->bytes = 0;
    s->fill = 0;
}

void sc_sha256_update(sc_sha256 *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->bytes += n;
    if (s->fill) { /* complete the block begun by an earlier call */
        size_t take = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->buf + s->fill, p, take);
        s->fill += take, p += take, n -= take;
        if (s->fill < 64) return;
        sha256_block(s->h, s->buf);
        s->fill = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha256_block(s->h, p);
    memcpy(s->buf, p, n);
    s->fill = n;
}

void sc_sha256_final(sc_sha256 *s, uint8_t digest[32])
{
    uint64_t bits = s->bytes * 8;
    uint8_t pad[72] = {0x80};
    /* 0x80, then zeros up to 56 bytes into a block, then the length */
    size_t n_pad = (s->fill < 56 ? 56 : 120) - s->fill;
    for (int i = 0; i < 8; i++) pad[n_pad + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    sc_sha256_update(s, pad, n_pad + 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
}

void sc_sha256_hex(const uint8_t digest[32], char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = 0;
}

sc_status sc_sha256_file(const char *path, char hex[65], int64_t *bytes, sc_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return sc_fail(err, SC_EIO, "%s: cannot open: %s", path, strerror(errno));
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) {
        fclose(f);
        return sc_fail(err, SC_ENOMEM, "%s: out of memory", path);
    }
    sc_sha256 s;
    sc_sha256_init(&s);
    size_t n;
    while ((n = fread(buf, 1, CHUNK, f)) > 0) sc_sha256_update(&s, buf, n);
    sc_status st = ferror(f) ? sc_fail(err, SC_EIO, "%s: read error: %s", path, strerror(errno)) : SC_OK;
    fclose(f);
    free(buf);
    if (st) return st;
    if (bytes) *bytes = (int64_t)s.bytes;
    uint8_t digest[32];
    sc_sha256_final(&s, digest);
    sc_sha256_hex(digest, hex);
    return SC_OK;
}
