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
#include <pthread.h>
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

/* ======================================================================== */
/* 14. SVG                                                                   */
/* ======================================================================== */
