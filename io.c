/* io.c — every byte from outside enters here.
 *
 * Contents
 *   1. Whole files and the bounded cursor
 *   2. JSON
 *   3. .npy
 *   4. safetensors
 *   5. zip archives and PyTorch checkpoints (the pickle subset)
 *   6. inflate (zlib, raw deflate, gzip)
 *   7. PNG
 *   8. JPEG
 *   9. PPM/PGM
 *  10. Image preprocessing (PIL-exact resampling, the model pipelines)
 *  11. CLIP BPE tokenizer
 *  12. BERT WordPiece tokenizer
 *  13. CSV
 *  14. SVG
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

/* @book begin inflate-api */
sc_status sc_inflate(const uint8_t *in, size_t in_len, sc_inflate_format fmt, size_t max_out,
                     uint8_t **out, size_t *out_len, sc_err *err)
{
    *out = NULL;
    *out_len = 0;
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
/* @book end inflate-api */

/* ======================================================================== */
/* 7. PNG                                                                    */
/* ======================================================================== */

/* ======================================================================== */
/* 8. JPEG                                                                   */
/* ======================================================================== */

/* ======================================================================== */
/* 9. PPM/PGM                                                                */
/* ======================================================================== */

/* ======================================================================== */
/* 10. Image preprocessing                                                   */
/* ======================================================================== */

/* ======================================================================== */
/* 11. CLIP BPE tokenizer                                                    */
/* ======================================================================== */

/* ======================================================================== */
/* 12. BERT WordPiece tokenizer                                              */
/* ======================================================================== */

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

/* Length of the valid UTF-8 sequence at s that XML 1.0 allows as a
 * character, or 0. Rejects overlong forms, surrogates, code points past
 * U+10FFFF, the C0 controls other than tab/LF/CR, and U+FFFE/U+FFFF. */
static size_t xml_char_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80) return c >= 0x20 || c == '\t' || c == '\n' || c == '\r' ? 1 : 0;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0; /* no overlong forms */
        if (c == 0xED) hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90; /* no overlong forms */
        if (c == 0xF4) hi = 0x8F; /* nothing past U+10FFFF */
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi) return 0; /* also stops at the NUL */
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    if (c == 0xEF && s[1] == 0xBF && (s[2] == 0xBE || s[2] == 0xBF)) return 0;
    return len;
}

/* @book begin svg-escape */
/* Text and attribute values: the five XML specials become entities and any
 * byte that is not part of an allowed character becomes U+FFFD, so a label
 * read from a Latin-1 file cannot make the whole document unreadable. */
static void svg_escaped(sc_text *t, const char *text)
{
    const unsigned char *s = (const unsigned char *)(text ? text : "");
    while (*s) {
        size_t n = xml_char_len(s);
        if (n == 0) {
            sc_text_puts(t, "\xEF\xBF\xBD");
            s++;
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
