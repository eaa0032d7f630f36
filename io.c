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

/* ======================================================================== */
/* 14. SVG                                                                   */
/* ======================================================================== */
