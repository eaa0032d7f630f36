/* check_inflate.c — tests for io.c section 6: CRC-32, Adler-32 and inflate.
 *
 * Good streams come from Python's zlib (tests/data/inflate/README.md) and
 * are compared with their original payloads. Malformed streams are built
 * here bit by bit, each next to the error it must produce.
 */
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

#define MiB ((size_t)1 << 20)

static uint8_t *load(const char *rel, size_t *len)
{
    uint8_t *data;
    sc_err err;
    sc_status st = sc_read_file(sc_test_path(rel), 16 * MiB, &data, len, &err);
    ck_assert_msg(st == SC_OK, "%s", err.msg);
    return data;
}

/* ---- checksums: published check values ---------------------------------- */

START_TEST(test_crc32_adler32_check_values)
{
    const uint8_t *digits = (const uint8_t *)"123456789";
    ck_assert_uint_eq(sc_crc32(0, digits, 9), 0xCBF43926u); /* the CRC-32 check value */
    ck_assert_uint_eq(sc_crc32(0, NULL, 0), 0);
    ck_assert_uint_eq(sc_crc32(sc_crc32(0, digits, 4), digits + 4, 5), 0xCBF43926u);
    const uint8_t *wiki = (const uint8_t *)"Wikipedia";
    ck_assert_uint_eq(sc_adler32(1, wiki, 9), 0x11E60398u); /* RFC 1950's example word */
    ck_assert_uint_eq(sc_adler32(1, NULL, 0), 1);
    ck_assert_uint_eq(sc_adler32(sc_adler32(1, wiki, 3), wiki + 3, 6), 0x11E60398u);
    /* Long input crosses the 5552-byte modulo blocks: 100000 bytes of 0xFF,
     * value computed with Python's zlib.adler32(b"\xff" * 100000). */
    uint8_t *ff = malloc(100000);
    memset(ff, 0xFF, 100000);
    ck_assert_uint_eq(sc_adler32(1, ff, 100000), 0x149A302Cu);
    free(ff);
}
END_TEST

/* ---- good streams ------------------------------------------------------- */

static const struct {
    const char *stream;
    sc_inflate_format fmt;
    const char *payload;   /* NULL: two payloads, see two_members */
} streams[] = {
    {"text.zlib", SC_INFLATE_ZLIB, "text.bin"},
    {"text_level1.zlib", SC_INFLATE_ZLIB, "text.bin"},
    {"text_fixed.deflate", SC_INFLATE_RAW, "text.bin"},
    {"text_huffman_only.deflate", SC_INFLATE_RAW, "text.bin"},
    {"text_stored.zlib", SC_INFLATE_ZLIB, "text.bin"},
    {"noise.zlib", SC_INFLATE_ZLIB, "noise.bin"},
    {"far.deflate", SC_INFLATE_RAW, "far.bin"},
    {"run.deflate", SC_INFLATE_RAW, "run.bin"},
    {"run_rle.deflate", SC_INFLATE_RAW, "run.bin"},
    {"text.gz", SC_INFLATE_GZIP, "text.bin"},
    {"text_allflags.gz", SC_INFLATE_GZIP, "text.bin"},
};

START_TEST(test_inflate_streams)
{
    char path[256];
    snprintf(path, sizeof path, "tests/data/inflate/%s", streams[_i].stream);
    size_t n_in, n_want;
    uint8_t *in = load(path, &n_in);
    snprintf(path, sizeof path, "tests/data/inflate/%s", streams[_i].payload);
    uint8_t *want = load(path, &n_want);
    uint8_t *out;
    size_t n_out;
    sc_err err;
    sc_status st = sc_inflate(in, n_in, streams[_i].fmt, 16 * MiB, &out, &n_out, &err);
    ck_assert_msg(st == SC_OK, "%s: %s", streams[_i].stream, err.msg);
    ck_assert_uint_eq(n_out, n_want);
    ck_assert_msg(memcmp(out, want, n_want) == 0, "%s: output differs from %s", streams[_i].stream,
                  streams[_i].payload);
    free(out);
    free(in);
    free(want);
}
END_TEST

START_TEST(test_inflate_gzip_two_members)
{
    size_t n_in, n_text, n_noise, n_out;
    uint8_t *in = load("tests/data/inflate/two_members.gz", &n_in);
    uint8_t *text = load("tests/data/inflate/text.bin", &n_text);
    uint8_t *noise = load("tests/data/inflate/noise.bin", &n_noise);
    uint8_t *out;
    sc_err err;
    ck_assert_msg(sc_inflate(in, n_in, SC_INFLATE_GZIP, 16 * MiB, &out, &n_out, &err) == SC_OK, "%s", err.msg);
    ck_assert_uint_eq(n_out, n_text + n_noise);
    ck_assert(memcmp(out, text, n_text) == 0);
    ck_assert(memcmp(out + n_text, noise, n_noise) == 0);
    free(out);
    free(in);
    free(text);
    free(noise);
}
END_TEST

/* ---- limits ------------------------------------------------------------- */

START_TEST(test_inflate_output_limit)
{
    size_t n_in, n_out;
    uint8_t *in = load("tests/data/inflate/zeros_1mib.zlib", &n_in);
    uint8_t *out = (uint8_t *)1;
    sc_err err;
    /* Exactly the payload size fits... */
    ck_assert_msg(sc_inflate(in, n_in, SC_INFLATE_ZLIB, MiB, &out, &n_out, &err) == SC_OK, "%s", err.msg);
    ck_assert_uint_eq(n_out, MiB);
    for (size_t i = 0; i < n_out; i++) ck_assert_uint_eq(out[i], 0);
    free(out);
    /* ...one byte less, or a small cap (a decompression bomb), does not. */
    ck_assert_int_eq(sc_inflate(in, n_in, SC_INFLATE_ZLIB, MiB - 1, &out, &n_out, &err), SC_ENOMEM);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(sc_inflate(in, n_in, SC_INFLATE_ZLIB, 1000, &out, &n_out, &err), SC_ENOMEM);
    ck_assert_msg(strstr(err.msg, "limit of 1000 bytes") != NULL, "%s", err.msg);
    ck_assert_int_eq(sc_inflate(in, n_in, SC_INFLATE_ZLIB, 0, &out, &n_out, &err), SC_ENOMEM);
    free(in);
}
END_TEST

/* Every proper prefix of a valid stream is an error (never a crash, never
 * success): the reader must notice it ran out inside a header, a block,
 * a stored block or the trailer. */
START_TEST(test_inflate_every_truncation)
{
    static const struct {
        const char *stream;
        sc_inflate_format fmt;
    } cases[] = {
        {"text.zlib", SC_INFLATE_ZLIB},
        {"text_allflags.gz", SC_INFLATE_GZIP},
        {"text_fixed.deflate", SC_INFLATE_RAW},
        {"run.deflate", SC_INFLATE_RAW},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char path[256];
        snprintf(path, sizeof path, "tests/data/inflate/%s", cases[k].stream);
        size_t n_in, n_out;
        uint8_t *in = load(path, &n_in);
        for (size_t cut = 0; cut < n_in; cut++) {
            uint8_t *out;
            sc_err err;
            /* A copy of exactly `cut` bytes, so ASan sees any read past it. */
            uint8_t *prefix = malloc(cut ? cut : 1);
            memcpy(prefix, in, cut);
            sc_status st = sc_inflate(prefix, cut, cases[k].fmt, 16 * MiB, &out, &n_out, &err);
            ck_assert_msg(st == SC_EFORMAT, "%s cut at %zu of %zu: status %d", cases[k].stream, cut, n_in, st);
            free(prefix);
        }
        free(in);
    }
}
END_TEST

/* A stored-block zlib stream cut inside the stored bytes or their header. */
START_TEST(test_inflate_truncated_stored)
{
    size_t n_in, n_out;
    uint8_t *in = load("tests/data/inflate/text_stored.zlib", &n_in);
    const size_t cuts[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 100, n_in / 2, n_in - 5, n_in - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        uint8_t *out;
        sc_err err;
        ck_assert_int_eq(sc_inflate(in, cuts[k], SC_INFLATE_ZLIB, 16 * MiB, &out, &n_out, &err), SC_EFORMAT);
    }
    free(in);
}
END_TEST

/* ---- malformed streams, built by hand ------------------------------------ */

/* A deflate bit writer: fields least-significant bit first; Huffman codes
 * are written most-significant bit first with put_code. */
typedef struct {
    uint8_t buf[512];
    size_t nbits;
} bitwriter;

static void put_bits(bitwriter *w, uint32_t value, int n)
{
    for (int i = 0; i < n; i++, w->nbits++) {
        ck_assert_uint_lt(w->nbits, 8 * sizeof w->buf);
        if (value >> i & 1) w->buf[w->nbits / 8] |= (uint8_t)(1u << (w->nbits % 8));
    }
}

static void put_code(bitwriter *w, uint32_t code, int n)
{
    for (int i = n - 1; i >= 0; i--) put_bits(w, code >> i & 1, 1);
}

static size_t bw_bytes(const bitwriter *w)
{
    return (w->nbits + 7) / 8;
}

static void expect_raw_error(const bitwriter *w, const char *fragment)
{
    uint8_t *out;
    size_t n_out;
    sc_err err;
    sc_status st = sc_inflate(w->buf, bw_bytes(w), SC_INFLATE_RAW, MiB, &out, &n_out, &err);
    ck_assert_msg(st == SC_EFORMAT, "expected an error containing '%s', got status %d", fragment, st);
    ck_assert_msg(strstr(err.msg, fragment) != NULL, "message '%s' lacks '%s'", err.msg, fragment);
    ck_assert_ptr_null(out);
}

/* Start a final dynamic block whose code-length code gives symbol 0 and
 * symbol 8 one bit each (0 → code 0, 8 → code 1), for nlit literal/length
 * and ndist distance lengths. */
static void dynamic_header(bitwriter *w, int nlit, int ndist)
{
    put_bits(w, 1, 1);            /* BFINAL */
    put_bits(w, 2, 2);            /* BTYPE = dynamic */
    put_bits(w, (uint32_t)(nlit - 257), 5);
    put_bits(w, (uint32_t)(ndist - 1), 5);
    put_bits(w, 1, 4);            /* HCLEN: 5 code-length lengths, for 16 17 18 0 8 */
    put_bits(w, 0, 3);
    put_bits(w, 0, 3);
    put_bits(w, 0, 3);
    put_bits(w, 1, 3);            /* symbol 0: length 1 */
    put_bits(w, 1, 3);            /* symbol 8: length 1 */
}

START_TEST(test_inflate_bad_block_type)
{
    bitwriter w = {{0}, 0};
    put_bits(&w, 1, 1);
    put_bits(&w, 3, 2);
    expect_raw_error(&w, "invalid block type 3");
}
END_TEST

START_TEST(test_inflate_stored_length_complement)
{
    const uint8_t bad[] = {0x01, 0x05, 0x00, 0x00, 0x00, 'a', 'b', 'c', 'd', 'e'};
    uint8_t *out;
    size_t n_out;
    sc_err err;
    ck_assert_int_eq(sc_inflate(bad, sizeof bad, SC_INFLATE_RAW, MiB, &out, &n_out, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "complement") != NULL, "%s", err.msg);
    const uint8_t good[] = {0x01, 0x05, 0x00, 0xFA, 0xFF, 'a', 'b', 'c', 'd', 'e'};
    ck_assert_int_eq(sc_inflate(good, sizeof good, SC_INFLATE_RAW, MiB, &out, &n_out, &err), SC_OK);
    ck_assert_uint_eq(n_out, 5);
    ck_assert(memcmp(out, "abcde", 5) == 0);
    free(out);
}
END_TEST

START_TEST(test_inflate_distance_too_far)
{
    /* Fixed block: literal 'a' (0x61 → 8-bit code 0x30 + 0x61), then length 3
     * (symbol 257, 7-bit code 1) at distance 2 (distance symbol 1): only one
     * byte has been written. */
    bitwriter w = {{0}, 0};
    put_bits(&w, 1, 1);
    put_bits(&w, 1, 2);
    put_code(&w, 0x30 + 'a', 8);
    put_code(&w, 1, 7);
    put_code(&w, 1, 5);
    put_code(&w, 0, 7);
    expect_raw_error(&w, "distance 2 reaches before the start");
    /* The same at distance 1 is a valid run: "aaaa". */
    bitwriter ok = {{0}, 0};
    put_bits(&ok, 1, 1);
    put_bits(&ok, 1, 2);
    put_code(&ok, 0x30 + 'a', 8);
    put_code(&ok, 1, 7);
    put_code(&ok, 0, 5);
    put_code(&ok, 0, 7);
    uint8_t *out;
    size_t n_out;
    sc_err err;
    ck_assert_int_eq(sc_inflate(ok.buf, bw_bytes(&ok), SC_INFLATE_RAW, MiB, &out, &n_out, &err), SC_OK);
    ck_assert_uint_eq(n_out, 4);
    ck_assert(memcmp(out, "aaaa", 4) == 0);
    free(out);
}
END_TEST

START_TEST(test_inflate_fixed_invalid_symbols)
{
    /* Length symbol 286 (8-bit code 0xC0 + 6) is in the fixed code but not
     * a valid length. */
    bitwriter w = {{0}, 0};
    put_bits(&w, 1, 1);
    put_bits(&w, 1, 2);
    put_code(&w, 0xC0 + 6, 8);
    expect_raw_error(&w, "invalid length symbol 286");
    /* Distance symbol 30 likewise. */
    bitwriter d = {{0}, 0};
    put_bits(&d, 1, 1);
    put_bits(&d, 1, 2);
    put_code(&d, 0x30 + 'a', 8);
    put_code(&d, 1, 7);
    put_code(&d, 30, 5);
    expect_raw_error(&d, "invalid distance code");
}
END_TEST

START_TEST(test_inflate_oversubscribed_code_lengths)
{
    /* Four code-length symbols of length 1: more codes than 1-bit patterns. */
    bitwriter w = {{0}, 0};
    put_bits(&w, 1, 1);
    put_bits(&w, 2, 2);
    put_bits(&w, 0, 5);
    put_bits(&w, 0, 5);
    put_bits(&w, 0, 4);
    for (int i = 0; i < 4; i++) put_bits(&w, 1, 3);
    expect_raw_error(&w, "over-subscribed");
}
END_TEST

START_TEST(test_inflate_incomplete_code_length_code)
{
    /* One code-length symbol of length 2: the code is incomplete. */
    bitwriter w = {{0}, 0};
    put_bits(&w, 1, 1);
    put_bits(&w, 2, 2);
    put_bits(&w, 0, 5);
    put_bits(&w, 0, 5);
    put_bits(&w, 0, 4);
    put_bits(&w, 2, 3);
    put_bits(&w, 0, 3);
    put_bits(&w, 0, 3);
    put_bits(&w, 0, 3);
    expect_raw_error(&w, "incomplete");
}
END_TEST

START_TEST(test_inflate_literal_code_errors)
{
    /* 257 literal/length codes of 8 bits: one more than 8 bits can hold. */
    bitwriter over = {{0}, 0};
    dynamic_header(&over, 257, 1);
    for (int i = 0; i < 257; i++) put_code(&over, 1, 1);
    put_code(&over, 0, 1);
    expect_raw_error(&over, "literal/length code: over-subscribed");

    /* No length for symbol 256: the block could never end. */
    bitwriter noend = {{0}, 0};
    dynamic_header(&noend, 257, 1);
    for (int i = 0; i < 256; i++) put_code(&noend, 1, 1);
    put_code(&noend, 0, 1);
    put_code(&noend, 0, 1);
    expect_raw_error(&noend, "no end-of-block code");

    /* 100 literals and the end code at 8 bits: incomplete. */
    bitwriter part = {{0}, 0};
    dynamic_header(&part, 257, 1);
    for (int i = 0; i < 257; i++) put_code(&part, i < 100 || i == 256, 1);
    put_code(&part, 0, 1);
    expect_raw_error(&part, "literal/length code: incomplete");
}
END_TEST

START_TEST(test_inflate_bad_repeats)
{
    /* Code-length code {16: 1 bit, 0: 1 bit}: a repeat (16) first. */
    bitwriter w = {{0}, 0};
    put_bits(&w, 1, 1);
    put_bits(&w, 2, 2);
    put_bits(&w, 0, 5);
    put_bits(&w, 0, 5);
    put_bits(&w, 0, 4);           /* 4 lengths: 16 17 18 0 */
    put_bits(&w, 1, 3);
    put_bits(&w, 0, 3);
    put_bits(&w, 0, 3);
    put_bits(&w, 1, 3);
    put_code(&w, 1, 1);           /* symbol 16 (codes: 0 → 0, 16 → 1) */
    put_bits(&w, 0, 2);
    expect_raw_error(&w, "repeat of a code length with none before");

    /* Too many lengths: HLIT 257 + HDIST 1 but a zero-run of 138 twice,
     * then more (symbol 18 via code 1 with {0, 18}). */
    bitwriter r = {{0}, 0};
    put_bits(&r, 1, 1);
    put_bits(&r, 2, 2);
    put_bits(&r, 0, 5);
    put_bits(&r, 0, 5);
    put_bits(&r, 0, 4);
    put_bits(&r, 0, 3);
    put_bits(&r, 0, 3);
    put_bits(&r, 1, 3);           /* 18: 1 bit */
    put_bits(&r, 1, 3);           /* 0: 1 bit */
    put_code(&r, 1, 1);
    put_bits(&r, 127, 7);         /* 138 zeros */
    put_code(&r, 1, 1);
    put_bits(&r, 127, 7);         /* 276 > 258 */
    expect_raw_error(&r, "runs past the 258 lengths");

    /* HLIT field 30 → 287 literal/length codes: more than exist. */
    bitwriter h = {{0}, 0};
    put_bits(&h, 1, 1);
    put_bits(&h, 2, 2);
    put_bits(&h, 30, 5);
    put_bits(&h, 0, 5);
    put_bits(&h, 0, 4);
    expect_raw_error(&h, "too many");
}
END_TEST

START_TEST(test_inflate_wrapper_errors)
{
    size_t n_in, n_out;
    uint8_t *out;
    sc_err err;
    uint8_t *z = load("tests/data/inflate/text.zlib", &n_in);
    z[n_in - 1] ^= 1; /* Adler-32 trailer */
    ck_assert_int_eq(sc_inflate(z, n_in, SC_INFLATE_ZLIB, MiB, &out, &n_out, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "Adler-32 mismatch") != NULL, "%s", err.msg);
    z[n_in - 1] ^= 1;
    z[0] = 0x77; /* compression method 7 */
    ck_assert_int_eq(sc_inflate(z, n_in, SC_INFLATE_ZLIB, MiB, &out, &n_out, &err), SC_EFORMAT);
    z[0] = 0x78;
    z[1] = 0xBB; /* FDICT set, check bits valid: 0x78BB % 31 == 0 */
    ck_assert_int_eq(sc_inflate(z, n_in, SC_INFLATE_ZLIB, MiB, &out, &n_out, &err), SC_EUNSUPPORTED);
    z[1] = 0xDB; /* header check fails */
    ck_assert_int_eq(sc_inflate(z, n_in, SC_INFLATE_ZLIB, MiB, &out, &n_out, &err), SC_EFORMAT);
    free(z);

    uint8_t *g = load("tests/data/inflate/text_allflags.gz", &n_in);
    g[n_in - 5] ^= 0x80; /* CRC-32 */
    ck_assert_int_eq(sc_inflate(g, n_in, SC_INFLATE_GZIP, MiB, &out, &n_out, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "CRC-32 mismatch") != NULL, "%s", err.msg);
    g[n_in - 5] ^= 0x80;
    g[n_in - 1] ^= 0x01; /* ISIZE */
    ck_assert_int_eq(sc_inflate(g, n_in, SC_INFLATE_GZIP, MiB, &out, &n_out, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "size mismatch") != NULL, "%s", err.msg);
    g[n_in - 1] ^= 0x01;
    g[14] ^= 0x01; /* a byte of the FEXTRA field, covered by the header CRC */
    ck_assert_int_eq(sc_inflate(g, n_in, SC_INFLATE_GZIP, MiB, &out, &n_out, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "header CRC") != NULL, "%s", err.msg);
    g[14] ^= 0x01;
    g[3] |= 0x80; /* reserved flag */
    ck_assert_int_eq(sc_inflate(g, n_in, SC_INFLATE_GZIP, MiB, &out, &n_out, &err), SC_EFORMAT);
    g[3] &= 0x7F;
    ck_assert_int_eq(sc_inflate(g, n_in, SC_INFLATE_GZIP, MiB, &out, &n_out, &err), SC_OK);
    free(out);
    /* Trailing zero padding is tolerated, other trailing bytes are not. */
    uint8_t *pad = malloc(n_in + 3);
    memcpy(pad, g, n_in);
    memset(pad + n_in, 0, 3);
    ck_assert_int_eq(sc_inflate(pad, n_in + 3, SC_INFLATE_GZIP, MiB, &out, &n_out, &err), SC_OK);
    free(out);
    pad[n_in + 2] = 'x';
    ck_assert_int_eq(sc_inflate(pad, n_in + 3, SC_INFLATE_GZIP, MiB, &out, &n_out, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "trailing") != NULL, "%s", err.msg);
    free(pad);
    free(g);
}
END_TEST

Suite *suite_inflate(void)
{
    Suite *s = suite_create("inflate");
    TCase *tc = tcase_create("inflate");
    tcase_add_test(tc, test_crc32_adler32_check_values);
    tcase_add_loop_test(tc, test_inflate_streams, 0, (int)(sizeof streams / sizeof streams[0]));
    tcase_add_test(tc, test_inflate_gzip_two_members);
    tcase_add_test(tc, test_inflate_output_limit);
    tcase_add_test(tc, test_inflate_every_truncation);
    tcase_add_test(tc, test_inflate_truncated_stored);
    tcase_add_test(tc, test_inflate_bad_block_type);
    tcase_add_test(tc, test_inflate_stored_length_complement);
    tcase_add_test(tc, test_inflate_distance_too_far);
    tcase_add_test(tc, test_inflate_fixed_invalid_symbols);
    tcase_add_test(tc, test_inflate_oversubscribed_code_lengths);
    tcase_add_test(tc, test_inflate_incomplete_code_length_code);
    tcase_add_test(tc, test_inflate_literal_code_errors);
    tcase_add_test(tc, test_inflate_bad_repeats);
    tcase_add_test(tc, test_inflate_wrapper_errors);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}
