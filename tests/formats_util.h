/* formats_util.h — small helpers shared by the file-format tests
 * (check_npy.c, check_json.c, check_weights.c) and the fuzz seeds: writing
 * crafted files, and building byte strings — zip archives, pickles and
 * safetensors headers — independently of the library's readers.
 * Header-only so the Makefile needs no new rule. */
#ifndef FORMATS_UTIL_H
#define FORMATS_UTIL_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Write n bytes to path, failing the test on any error. */
static inline void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* "DIR/NAME" in a static ring of buffers (like sc_test_path). */
static inline const char *join_path(const char *dir, const char *name)
{
    static char buf[8][1024];
    static int next = 0;
    char *p = buf[next];
    next = (next + 1) % 8;
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

/* A growable byte string. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes_t;

static inline void put(bytes_t *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}

static inline void put_u8(bytes_t *b, uint8_t v)
{
    put(b, &v, 1);
}

static inline void put_le(bytes_t *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) put_u8(b, (uint8_t)(v >> (8 * i)));
}

static inline void put_str(bytes_t *b, const char *s)
{
    put(b, s, strlen(s));
}

/* CRC-32 (ISO 3309, reflected 0xEDB88320), bit by bit: slow and obvious. */
static inline uint32_t crc32_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

/* A zip of n files, as the PKWARE APPNOTE lays it out: local header + data
 * per file, the central directory, the end record. Files are stored, or
 * with `deflate` set, wrapped as one deflate "stored" block (RFC 1951
 * 3.2.4: header bits 1 = final, 00 = stored; LEN; NLEN = ~LEN; the bytes),
 * which is method 8 without needing a compressor. */
typedef struct {
    const char *name;
    const void *data;
    size_t len;
    int deflate;
} zip_file;

static inline bytes_t make_zip(const zip_file *files, int n)
{
    bytes_t z = {0}, cd = {0};
    for (int i = 0; i < n; i++) {
        uint32_t crc = crc32_bitwise(files[i].data, files[i].len);
        size_t local = z.len, nlen = strlen(files[i].name);
        bytes_t body = {0};
        if (files[i].deflate) {
            ck_assert_uint_le(files[i].len, 0xFFFF);
            put_u8(&body, 1);
            put_le(&body, files[i].len, 2);
            put_le(&body, ~files[i].len & 0xFFFF, 2);
        }
        put(&body, files[i].data, files[i].len);
        int method = files[i].deflate ? 8 : 0;
        put_le(&z, 0x04034b50, 4);
        put_le(&z, 20, 2); /* version needed */
        put_le(&z, 0, 2);  /* flags */
        put_le(&z, (uint64_t)method, 2);
        put_le(&z, 0, 4);  /* time, date */
        put_le(&z, crc, 4);
        put_le(&z, body.len, 4);
        put_le(&z, files[i].len, 4);
        put_le(&z, nlen, 2);
        put_le(&z, 0, 2);
        put_str(&z, files[i].name);
        put(&z, body.p, body.len);

        put_le(&cd, 0x02014b50, 4);
        put_le(&cd, 20, 2);
        put_le(&cd, 20, 2);
        put_le(&cd, 0, 2);
        put_le(&cd, (uint64_t)method, 2);
        put_le(&cd, 0, 4);
        put_le(&cd, crc, 4);
        put_le(&cd, body.len, 4);
        put_le(&cd, files[i].len, 4);
        put_le(&cd, nlen, 2);
        put_le(&cd, 0, 2); /* extra */
        put_le(&cd, 0, 2); /* comment */
        put_le(&cd, 0, 2); /* disk */
        put_le(&cd, 0, 2); /* internal attributes */
        put_le(&cd, 0, 4); /* external attributes */
        put_le(&cd, local, 4);
        put_str(&cd, files[i].name);
        free(body.p);
    }
    size_t cd_offset = z.len;
    put(&z, cd.p, cd.len);
    put_le(&z, 0x06054b50, 4);
    put_le(&z, 0, 4);
    put_le(&z, (uint64_t)n, 2);
    put_le(&z, (uint64_t)n, 2);
    put_le(&z, cd.len, 4);
    put_le(&z, cd_offset, 4);
    put_le(&z, 0, 2);
    free(cd.p);
    return z;
}

/* ---- pickles, opcode by opcode (protocol 2, as torch.save writes) ---- */

static inline void pk_global_bytes(bytes_t *b, const char *module, const char *name)
{
    put_u8(b, 'c');
    put_str(b, module);
    put_u8(b, '\n');
    put_str(b, name);
    put_u8(b, '\n');
}

static inline void pk_unicode(bytes_t *b, const char *s)
{
    put_u8(b, 'X');
    put_le(b, strlen(s), 4);
    put_str(b, s);
}

static inline void pk_int_bytes(bytes_t *b, int64_t v)
{
    if (v >= 0 && v < 256) {
        put_u8(b, 'K');
        put_u8(b, (uint8_t)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        put_u8(b, 'J');
        put_le(b, (uint64_t)v, 4);
    } else {
        put_u8(b, 0x8a); /* LONG1 */
        put_u8(b, 8);
        put_le(b, (uint64_t)v, 8);
    }
}

static inline void pk_int_tuple(bytes_t *b, int n, const int64_t *v)
{
    put_u8(b, '(');
    for (int i = 0; i < n; i++) pk_int_bytes(b, v[i]);
    put_u8(b, 't');
}

/* The start of a state dict: OrderedDict() then MARK for SETITEMS. */
static inline void pk_begin_state_dict(bytes_t *b)
{
    put_u8(b, 0x80);
    put_u8(b, 2);
    pk_global_bytes(b, "collections", "OrderedDict");
    put_u8(b, ')');
    put_u8(b, 'R');
    put_u8(b, '(');
}

/* key, then _rebuild_tensor_v2((storage pid), offset, size, stride, False, OrderedDict()). */
static inline void pk_tensor_item(bytes_t *b, const char *key, const char *storage_type, const char *storage_key,
                                  int64_t storage_numel, int64_t offset, int ndim, const int64_t *size,
                                  const int64_t *stride)
{
    pk_unicode(b, key);
    pk_global_bytes(b, "torch._utils", "_rebuild_tensor_v2");
    put_u8(b, '(');
    put_u8(b, '(');
    pk_unicode(b, "storage");
    pk_global_bytes(b, "torch", storage_type);
    pk_unicode(b, storage_key);
    pk_unicode(b, "cpu");
    pk_int_bytes(b, storage_numel);
    put_u8(b, 't');
    put_u8(b, 'Q'); /* BINPERSID */
    pk_int_bytes(b, offset);
    pk_int_tuple(b, ndim, size);
    pk_int_tuple(b, ndim, stride);
    put_u8(b, 0x89); /* NEWFALSE */
    pk_global_bytes(b, "collections", "OrderedDict");
    put_u8(b, ')');
    put_u8(b, 'R');
    put_u8(b, 't');
    put_u8(b, 'R');
}

static inline void pk_end_state_dict(bytes_t *b)
{
    put_u8(b, 'u'); /* SETITEMS */
    put_u8(b, '.'); /* STOP */
}

#endif
