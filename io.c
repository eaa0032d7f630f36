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
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
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
#define NPY_MAX_DIM ((int64_t)1 << 31)

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
            if (d > NPY_MAX_DIM)
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

/* ======================================================================== */
/* 5. zip archives and PyTorch checkpoints (the pickle subset)               */
/* ======================================================================== */

/* ======================================================================== */
/* 6. inflate (zlib, raw deflate, gzip)                                      */
/* ======================================================================== */

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
