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
void sc_weight_to_f32(const sc_weight *t, float *dst)
{
    if (weight_is_contiguous(t)) {
        convert_to_f32(dst, t->data, t->dtype, (size_t)t->numel);
        return;
    }
    /* A strided view: walk the index (i0, .., ik) like an odometer, moving
     * the storage offset by stride[j] per step of digit j. */
    size_t size = sc_dtype_size(t->dtype);
    int64_t idx[SC_ARRAY_MAX_DIMS] = {0};
    int64_t off = 0;
    for (int64_t n = 0; n < t->numel; n++) {
        convert_to_f32(dst + n, t->data + (size_t)off * size, t->dtype, 1);
        for (int j = t->ndim - 1; j >= 0; j--) {
            off += t->stride[j];
            if (++idx[j] < t->shape[j]) break;
            off -= t->stride[j] * t->shape[j];
            idx[j] = 0;
        }
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
    /* Gather through the float path's odometer would lose int64 precision,
     * so walk the elements here with the same index arithmetic. */
    size_t size = sc_dtype_size(t->dtype);
    int64_t idx[SC_ARRAY_MAX_DIMS] = {0};
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *p = t->data + (size_t)off * size;
        int64_t v = 0;
        if (t->dtype == SC_DT_I64) memcpy(&v, p, 8);
        else v = (int64_t)element_as_double(p, t->dtype); /* 32-bit and smaller: exact */
        dst[i] = v;
        for (int j = t->ndim - 1; j >= 0; j--) {
            off += t->stride[j];
            if (++idx[j] < t->shape[j]) break;
            off -= t->stride[j] * t->shape[j];
            idx[j] = 0;
        }
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

typedef struct {
    const char *name;       /* NUL-terminated copy */
    int method;             /* 0 stored, 8 deflate */
    uint32_t crc;
    uint64_t csize, usize;  /* compressed and uncompressed bytes */
    uint64_t local;         /* offset of the local header */
    const uint8_t *data;    /* the compressed bytes, inside the archive */
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

static const zip_entry *zip_find(const zip_archive *z, const char *name, size_t len)
{
    for (size_t i = 0; i < z->n; i++)
        if (strlen(z->entries[i].name) == len && memcmp(z->entries[i].name, name, len) == 0) return &z->entries[i];
    return NULL;
}

/* The uncompressed bytes of an entry: in place when stored, else
 * inflated into memory owned by w. */
static sc_status zip_entry_bytes(sc_weights *w, const zip_entry *e, const char *what, const uint8_t **out,
                                 sc_err *err)
{
    (void)w;
    if (e->method == 0) {
        *out = e->data;
        return SC_OK;
    }
    return sc_fail(err, SC_EUNSUPPORTED, "%s: zip entry '%s' is deflate-compressed; not supported yet", what,
                   e->name);
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
    pk_value *const *items = vm->stack + base;
    size_t n = vm->sp - base;
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
    const zip_entry *e = zip_find(vm->zip, entry, (size_t)k);
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
    int empty = 0;
    for (size_t d = 0; d < ndim; d++) {
        const pk_value *sz = a[2]->u.seq.items[d], *st = a[3]->u.seq.items[d];
        if (!pk_is_int(sz) || !pk_is_int(st) || sz->u.i < 0 || sz->u.i > ARRAY_MAX_DIM || st->u.i < 0)
            return pk_fail(vm, "tensor size or stride is not a small non-negative integer");
        t->shape[d] = sz->u.i;
        t->stride[d] = st->u.i;
        size_t reach;
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
static sc_status torch_find_pickle(const zip_archive *z, const char *what, const zip_entry **pkl, sc_err *err)
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
    const zip_entry *pkl = NULL;
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
#define LZ_CHAIN 32     /* candidates tried per position: speed vs ratio */

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
            long sum = 0;
            for (size_t k = 0; k < row_bytes; k++) {
                int a = k >= bpp ? line[k - bpp] : 0, b = prev[k], c = k >= bpp ? prev[k - bpp] : 0;
                int pred = f == 0 ? 0 : f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) >> 1 : paeth(a, b, c);
                trial[k] = (uint8_t)(line[k] - pred);
                sum += trial[k] < 128 ? trial[k] : 256 - trial[k];
            }
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
    sc_status st = sc_png_encode(img, &png, &len, err);
    if (st != SC_OK) return sc_fail(err, st, "%s: %s", path, err->msg);
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
    /* Pillow resizes palette images with NEAREST whatever is asked: the
     * indices cannot be averaged. */
    if (src->index || filter == SC_RESAMPLE_NEAREST) {
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
