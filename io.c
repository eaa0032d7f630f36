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

/* @book begin png-chunks */
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
/* @book end png-chunks */

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
