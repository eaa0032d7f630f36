/* check_npy.c — tests for io.c section 3 (.npy): the golden fixtures (all
 * written by numpy) read back with the values an independent reader finds,
 * our writer reproduces numpy's files byte for byte, and malformed files
 * fail with a clear error. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "formats_util.h"

START_TEST(test_npy_golden_int64_ids)
{
    /* clip-tiny token ids: SOT = 510 first, EOT = 511 at length - 1,
     * zero padding after (MANIFEST: lengths 7, 2, 16, 11). */
    sc_array a;
    sc_err err;
    ck_assert_int_eq(sc_npy_read(sc_test_path("tests/golden/clip-tiny/input_ids.npy"), &a, &err), SC_OK);
    ck_assert_int_eq(a.dtype, SC_DT_I64);
    ck_assert_int_eq(a.ndim, 2);
    ck_assert_int_eq(a.shape[0], 4);
    ck_assert_int_eq(a.shape[1], 16);
    ck_assert_uint_eq(a.nbytes, 4 * 16 * 8);
    const int64_t *ids = a.data;
    const int lengths[4] = {7, 2, 16, 11};
    int64_t sum = 0;
    for (int r = 0; r < 4; r++) {
        ck_assert_int_eq(ids[r * 16], 510);
        ck_assert_int_eq(ids[r * 16 + lengths[r] - 1], 511);
        for (int t = lengths[r]; t < 16; t++) ck_assert_int_eq(ids[r * 16 + t], 0);
    }
    for (int i = 0; i < 64; i++) sum += ids[i];
    ck_assert_int_eq(sum, 11115); /* Python's struct.unpack over the same bytes */
    int64_t *copy;
    ck_assert_int_eq(sc_array_to_i64(&a, &copy, &err), SC_OK);
    ck_assert_int_eq(copy[1], 191);
    free(copy);
    sc_array_free(&a);
}
END_TEST

START_TEST(test_npy_golden_float32)
{
    sc_array a;
    sc_err err;
    ck_assert_int_eq(sc_npy_read(sc_test_path("tests/golden/clip-tiny/logit_scale.npy"), &a, &err), SC_OK);
    ck_assert_int_eq(a.dtype, SC_DT_F32);
    ck_assert_int_eq(a.ndim, 1);
    ck_assert_int_eq(a.shape[0], 1);
    ck_assert_float_eq(((float *)a.data)[0], 2.6592600345611572f);
    sc_array_free(&a);

    ck_assert_int_eq(sc_npy_read(sc_test_path("tests/golden/clip-tiny/pixel_values.npy"), &a, &err), SC_OK);
    ck_assert_int_eq(a.ndim, 4);
    ck_assert_int_eq(sc_array_numel(&a), 3 * 3 * 32 * 32);
    const float *x = a.data;
    ck_assert_float_eq(x[0], 0.13666336238384247f);
    ck_assert_float_eq(x[9215], -1.425856590270996f);
    double sum = 0;
    for (int i = 0; i < 9216; i++) sum += x[i];
    ck_assert_double_eq_tol(sum, -149.60205024107563, 1e-9);
    sc_array_free(&a);
}
END_TEST

START_TEST(test_npy_golden_uint8_uint16)
{
    sc_array a;
    sc_err err;
    ck_assert_int_eq(sc_npy_read(sc_test_path("tests/golden/io/images/lesion_17x9_rgb8.npy"), &a, &err), SC_OK);
    ck_assert_int_eq(a.dtype, SC_DT_U8);
    ck_assert_int_eq(a.ndim, 3);
    ck_assert_int_eq(a.shape[0], 9);
    ck_assert_int_eq(a.shape[1], 17);
    ck_assert_int_eq(a.shape[2], 3);
    const uint8_t *p = a.data;
    int64_t sum = 0;
    for (int i = 0; i < 459; i++) sum += p[i];
    ck_assert_int_eq(sum, 62287);
    ck_assert_int_eq(p[0], 188);
    ck_assert_int_eq(p[458], 119);
    float *f;
    ck_assert_int_eq(sc_array_to_f32(&a, &f, &err), SC_OK);
    ck_assert_float_eq(f[1], 140.0f);
    free(f);
    sc_array_free(&a);

    ck_assert_int_eq(sc_npy_read(sc_test_path("tests/golden/io/images/cxr_352x423_gray16.npy"), &a, &err), SC_OK);
    ck_assert_int_eq(a.dtype, SC_DT_U16);
    ck_assert_int_eq(a.shape[0], 423);
    ck_assert_int_eq(a.shape[1], 352);
    const uint16_t *q = a.data;
    sum = 0;
    int max = 0;
    for (int i = 0; i < 423 * 352; i++) {
        sum += q[i];
        if (q[i] > max) max = q[i];
    }
    ck_assert_int_eq(sum, 4121883537LL);
    ck_assert_int_eq(max, 65535);
    ck_assert_int_eq(q[2], 3868);
    sc_array_free(&a);
}
END_TEST

/* Reading a numpy-written file and writing it back must give the same
 * bytes: our header text and padding are numpy's. */
START_TEST(test_npy_rewrite_is_byte_identical)
{
    static const char *files[] = {
        "tests/golden/clip-tiny/text_embeds.npy",          /* <f4, 2-D */
        "tests/golden/clip-tiny/logit_scale.npy",          /* <f4, (1,) */
        "tests/golden/clip-tiny/pixel_values.npy",         /* <f4, 4-D */
        "tests/golden/clip-tiny/input_ids.npy",            /* <i8 */
        "tests/golden/io/images/lesion_17x9_rgb8.npy",     /* |u1 */
        "tests/golden/io/images/cxr_352x423_gray16.npy",   /* <u2 */
    };
    const char *dir = sc_test_tmpdir();
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char src[1024], dst[1024];
        snprintf(src, sizeof src, "%s", sc_test_path(files[i]));
        snprintf(dst, sizeof dst, "%s/copy.npy", dir);
        sc_array a;
        sc_err err;
        ck_assert_int_eq(sc_npy_read(src, &a, &err), SC_OK);
        ck_assert_msg(sc_npy_write(dst, &a, &err) == SC_OK, "%s", err.msg);
        sc_array_free(&a);
        uint8_t *x, *y;
        size_t nx, ny;
        ck_assert_int_eq(sc_read_file(src, 1 << 24, &x, &nx, &err), SC_OK);
        ck_assert_int_eq(sc_read_file(dst, 1 << 24, &y, &ny, &err), SC_OK);
        ck_assert_msg(nx == ny && memcmp(x, y, nx) == 0, "%s: rewritten file differs", files[i]);
        free(x);
        free(y);
    }
}
END_TEST

START_TEST(test_npy_round_trip_every_dtype)
{
    const char *dir = sc_test_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/rt.npy", dir);
    const sc_dtype dts[] = {SC_DT_F32, SC_DT_F64, SC_DT_I64, SC_DT_I32, SC_DT_U8, SC_DT_U16, SC_DT_F16};
    uint8_t bytes[2 * 3 * 8];
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)(i * 37 + 5);
    for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++) {
        sc_array a = {0};
        a.dtype = dts[k];
        a.ndim = 2;
        a.shape[0] = 2;
        a.shape[1] = 3;
        a.data = bytes;
        sc_err err;
        ck_assert_msg(sc_npy_write(path, &a, &err) == SC_OK, "%s", err.msg);
        sc_array b;
        ck_assert_int_eq(sc_npy_read(path, &b, &err), SC_OK);
        ck_assert_int_eq(b.dtype, dts[k]);
        ck_assert_int_eq(b.ndim, 2);
        ck_assert_uint_eq(b.nbytes, 6 * sc_dtype_size(dts[k]));
        ck_assert(memcmp(b.data, bytes, b.nbytes) == 0);
        sc_array_free(&b);
    }
    /* 0-d and empty arrays. */
    float one = 1.5f;
    sc_err err;
    ck_assert_int_eq(sc_npy_write_f32(path, &one, 0, NULL, &err), SC_OK);
    sc_array b;
    ck_assert_int_eq(sc_npy_read(path, &b, &err), SC_OK);
    ck_assert_int_eq(b.ndim, 0);
    ck_assert_int_eq(sc_array_numel(&b), 1);
    ck_assert_float_eq(((float *)b.data)[0], 1.5f);
    sc_array_free(&b);
    int64_t empty_shape[2] = {0, 7};
    ck_assert_int_eq(sc_npy_write_f32(path, NULL, 2, empty_shape, &err), SC_OK);
    ck_assert_int_eq(sc_npy_read(path, &b, &err), SC_OK);
    ck_assert_int_eq(b.shape[1], 7);
    ck_assert_int_eq(sc_array_numel(&b), 0);
    sc_array_free(&b);
    /* bfloat16 has no numpy type. */
    sc_array bf = {0};
    bf.dtype = SC_DT_BF16;
    bf.data = bytes;
    ck_assert_int_eq(sc_npy_write(path, &bf, &err), SC_EUNSUPPORTED);
}
END_TEST

START_TEST(test_npy_half_and_integer_conversions)
{
    /* Half-precision bit patterns and their exact values. */
    const uint16_t h[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x8000, 0x7C00, 0x3555};
    const float want[] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-08f, 6.0975551605224609e-05f, -0.0f,
                          INFINITY, 0.333251953125f};
    sc_array a = {0};
    a.dtype = SC_DT_F16;
    a.ndim = 1;
    a.shape[0] = 8;
    a.data = (void *)h;
    float *f;
    sc_err err;
    ck_assert_int_eq(sc_array_to_f32(&a, &f, &err), SC_OK);
    for (int i = 0; i < 8; i++) ck_assert_msg(f[i] == want[i], "half 0x%04x -> %g", h[i], f[i]);
    ck_assert(signbit(f[5]));
    free(f);

    const double d[] = {3.0, -7.0, 2.5};
    a.dtype = SC_DT_F64;
    a.shape[0] = 2;
    a.data = (void *)d;
    int64_t *ids;
    ck_assert_int_eq(sc_array_to_i64(&a, &ids, &err), SC_OK);
    ck_assert_int_eq(ids[0], 3);
    ck_assert_int_eq(ids[1], -7);
    free(ids);
    a.shape[0] = 3; /* 2.5 is not an integer */
    ck_assert_int_eq(sc_array_to_i64(&a, &ids, &err), SC_ERANGE);
    ck_assert_ptr_null(ids);
}
END_TEST

/* A v1 file with the given header dict and `payload` bytes of zeros. */
static size_t npy_craft(uint8_t *buf, size_t cap, const char *dict, size_t payload)
{
    size_t dl = strlen(dict);
    size_t hl = (10 + dl + 1 + 63) / 64 * 64 - 10;
    ck_assert_uint_le(10 + hl + payload, cap);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(hl & 0xff);
    buf[9] = (uint8_t)(hl >> 8);
    memset(buf + 10, ' ', hl);
    memcpy(buf + 10, dict, dl);
    buf[10 + hl - 1] = '\n';
    memset(buf + 10 + hl, 0, payload);
    return 10 + hl + payload;
}

START_TEST(test_npy_malformed_files)
{
    static const struct {
        const char *dict;
        size_t payload;
        sc_status want;
        const char *says;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24, SC_OK, NULL},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 23, SC_EFORMAT, "needs 24 payload bytes"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 25, SC_EFORMAT, "needs 24 payload bytes"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24, SC_EUNSUPPORTED, "big-endian"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, SC_EUNSUPPORTED, "Fortran-order"},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }", 48, SC_EUNSUPPORTED, "'<c8'"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, SC_EUNSUPPORTED, "structured"},
        {"{'descr': '<f4', 'shape': (2, 3), }", 24, SC_EFORMAT, "lacks"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4, SC_EFORMAT, "repeated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", 24, SC_EFORMAT, "'x'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", 24, SC_EFORMAT, "integers"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4, SC_EUNSUPPORTED,
         "more than 8"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2147483649,), }", 4, SC_EUNSUPPORTED, "2^31"},
        /* 2^31 · 2^31 · 2^31 · 2^31 · 4 overflows 64 bits: refused before any allocation. */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2147483648, 2147483648, 2147483648, 2147483648), }",
         4, SC_ENOMEM, "overflows"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3); }", 24, SC_EFORMAT, "malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } x", 24, SC_EFORMAT, "after"},
        {"['descr']", 0, SC_EFORMAT, "not a dict"},
    };
    uint8_t buf[1024];
    const char *dir = sc_test_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/bad.npy", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = npy_craft(buf, sizeof buf, cases[i].dict, cases[i].payload);
        sc_array a;
        sc_err err = {{0}};
        sc_status s = sc_npy_parse(buf, n, "bad.npy", &a, &err);
        ck_assert_msg(s == cases[i].want, "case %zu: status %d, want %d (%s)", i, s, cases[i].want, err.msg);
        if (s == SC_OK) {
            sc_array_free(&a);
        } else {
            ck_assert_msg(strstr(err.msg, cases[i].says) != NULL, "case %zu: message '%s'", i, err.msg);
            ck_assert_msg(strncmp(err.msg, "bad.npy: ", 9) == 0, "case %zu: message '%s'", i, err.msg);
            ck_assert_ptr_null(a.data);
        }
        /* The file reader agrees with the memory reader. */
        write_bytes(path, buf, n);
        sc_status t = sc_npy_read(path, &a, &err);
        ck_assert_msg(t == s, "case %zu: file status %d, memory %d (%s)", i, t, s, err.msg);
        sc_array_free(&a);
    }
    /* Damaged preambles. */
    sc_array a;
    sc_err err;
    ck_assert_int_eq(sc_npy_parse((const uint8_t *)"\x93NUMPX\x01\x00", 8, "m", &a, &err), SC_EFORMAT);
    ck_assert_int_eq(sc_npy_parse((const uint8_t *)"\x93NUMPY\x01", 7, "m", &a, &err), SC_EFORMAT);
    ck_assert_int_eq(sc_npy_parse((const uint8_t *)"\x93NUMPY\x04\x00\x00\x00", 10, "m", &a, &err), SC_EUNSUPPORTED);
    ck_assert_int_eq(sc_npy_parse((const uint8_t *)"\x93NUMPY\x01\x00\xff\x00{", 11, "m", &a, &err), SC_EFORMAT);
    ck_assert(strstr(err.msg, "truncated") != NULL);
    ck_assert_int_eq(sc_npy_parse((const uint8_t *)"\x93NUMPY\x02\x00\xff\xff\xff\x7f", 12, "m", &a, &err),
                     SC_EFORMAT);
    ck_assert(strstr(err.msg, "implausibly large") != NULL);
    ck_assert_int_eq(sc_npy_read("/nonexistent/x.npy", &a, &err), SC_EIO);
    ck_assert(strstr(err.msg, "/nonexistent/x.npy: cannot open") != NULL);
}
END_TEST

START_TEST(test_npy_version2_header)
{
    /* A v2 file: 4-byte header length. */
    uint8_t buf[256];
    const char *dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }";
    size_t dl = strlen(dict), hl = (12 + dl + 1 + 63) / 64 * 64 - 12;
    memcpy(buf, "\x93NUMPY\x02\x00", 8);
    buf[8] = (uint8_t)hl;
    buf[9] = buf[10] = buf[11] = 0;
    memset(buf + 12, ' ', hl);
    memcpy(buf + 12, dict, dl);
    buf[12 + hl - 1] = '\n';
    const int32_t v[2] = {-5, 1 << 30};
    memcpy(buf + 12 + hl, v, 8);
    sc_array a;
    sc_err err;
    ck_assert_int_eq(sc_npy_parse(buf, 12 + hl + 8, "v2", &a, &err), SC_OK);
    ck_assert_int_eq(a.dtype, SC_DT_I32);
    ck_assert_int_eq(((int32_t *)a.data)[0], -5);
    ck_assert_int_eq(((int32_t *)a.data)[1], 1 << 30);
    sc_array_free(&a);
}
END_TEST

Suite *suite_npy(void)
{
    Suite *s = suite_create("npy");
    TCase *tc = tcase_create("npy");
    tcase_add_test(tc, test_npy_golden_int64_ids);
    tcase_add_test(tc, test_npy_golden_float32);
    tcase_add_test(tc, test_npy_golden_uint8_uint16);
    tcase_add_test(tc, test_npy_rewrite_is_byte_identical);
    tcase_add_test(tc, test_npy_round_trip_every_dtype);
    tcase_add_test(tc, test_npy_half_and_integer_conversions);
    tcase_add_test(tc, test_npy_malformed_files);
    tcase_add_test(tc, test_npy_version2_header);
    suite_add_tcase(s, tc);
    return s;
}
