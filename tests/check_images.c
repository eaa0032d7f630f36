/* check_images.c — tests for io.c sections 7–9: PNG, JPEG, PPM/PGM.
 *
 * Decoded pixels are compared with tests/golden/io/images (Pillow 9.4 with
 * libjpeg-turbo 2.1.5, cross-checked there with djpeg and libpng). The
 * MANIFEST asks PNG to be exact and allows JPEG max |diff| <= 3, mean <= 0.25;
 * our JPEG decoder follows libjpeg-turbo's integer arithmetic and holds 0.
 * Malformed files are made here from the good ones, or byte by byte.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

#define GOLDEN "tests/golden/io/images/"

static uint8_t *load(const char *rel, size_t *len)
{
    uint8_t *data;
    sc_err err;
    ck_assert_msg(sc_read_file(sc_test_path(rel), 1 << 26, &data, len, &err) == SC_OK, "%s", err.msg);
    return data;
}

static void load_npy(const char *rel, sc_array *a)
{
    sc_err err;
    ck_assert_msg(sc_npy_read(sc_test_path(rel), a, &err) == SC_OK, "%s", err.msg);
}

/* Compare n samples of an image plane with a uint8 or uint16 .npy and
 * return the largest difference; the mean goes to *mean. */
static int plane_diff(const char *name, const void *got, int got16, const sc_array *ref, size_t n, double *mean)
{
    ck_assert_msg(sc_array_numel(ref) == (int64_t)n, "%s: %lld reference samples, decoded %zu", name,
                  (long long)sc_array_numel(ref), n);
    ck_assert_msg(ref->dtype == (got16 ? SC_DT_U16 : SC_DT_U8), "%s: reference dtype %s", name,
                  sc_dtype_name(ref->dtype));
    int max = 0;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        int a = got16 ? ((const uint16_t *)got)[i] : ((const uint8_t *)got)[i];
        int b = got16 ? ((const uint16_t *)ref->data)[i] : ((const uint8_t *)ref->data)[i];
        int d = abs(a - b);
        if (d > max) max = d;
        sum += d;
    }
    *mean = n ? sum / (double)n : 0;
    return max;
}

/* ---- golden images ------------------------------------------------------ */

static const struct {
    const char *stem, *ext;
    int height, width, channels; /* the reference array's shape (channels 1: 2-D) */
    int u16;                     /* the reference is uint16 (16-bit grey) */
    const char *extra;           /* "_index" (palette) or "_u16" (16-bit colour) */
} golden[] = {
    {"lesion_256x192_baseline_444_q75", "jpg", 192, 256, 3, 0, NULL},
    {"lesion_256x192_baseline_422_q75", "jpg", 192, 256, 3, 0, NULL},
    {"lesion_256x192_baseline_420_q75", "jpg", 192, 256, 3, 0, NULL},
    {"lesion_256x192_baseline_420_q50", "jpg", 192, 256, 3, 0, NULL},
    {"lesion_256x192_baseline_444_q95", "jpg", 192, 256, 3, 0, NULL},
    {"lesion_256x192_progressive_420_q75", "jpg", 192, 256, 3, 0, NULL},
    {"lesion_256x192_progressive_444_q90", "jpg", 192, 256, 3, 0, NULL},
    {"lesion_256x192_optimized_420_q75", "jpg", 192, 256, 3, 0, NULL},
    {"lesion_256x192_restart1row_420_q75", "jpg", 192, 256, 3, 0, NULL},
    {"lesion_256x192_restart5mcu_444_q80", "jpg", 192, 256, 3, 0, NULL},
    {"lesion_256x192_baseline_440_q80", "jpg", 192, 256, 3, 0, NULL},
    {"lesion_97x131_baseline_420_q85", "jpg", 131, 97, 3, 0, NULL},
    {"lesion_97x131_progressive_422_q85", "jpg", 131, 97, 3, 0, NULL},
    {"lesion_97x131_restart3mcu_420_q85", "jpg", 131, 97, 3, 0, NULL},
    {"lesion_17x9_baseline_420_q90", "jpg", 9, 17, 3, 0, NULL},
    {"lesion_17x9_baseline_422_q90", "jpg", 9, 17, 3, 0, NULL},
    {"lesion_17x9_baseline_444_q90", "jpg", 9, 17, 3, 0, NULL},
    {"lesion_1x1_baseline_420_q90", "jpg", 1, 1, 3, 0, NULL},
    {"lesion_640x480_baseline_420_q90", "jpg", 480, 640, 3, 0, NULL},
    {"cxr_352x423_gray8_baseline_q85", "jpg", 423, 352, 1, 0, NULL},
    {"cxr_352x423_gray8_progressive_q85", "jpg", 423, 352, 1, 0, NULL},
    {"cxr_352x423_gray8_restart2row_q85", "jpg", 423, 352, 1, 0, NULL},
    {"lesion_97x131_rgb8_c6", "png", 131, 97, 3, 0, NULL},
    {"lesion_97x131_rgb8_c0", "png", 131, 97, 3, 0, NULL},
    {"lesion_97x131_rgb8_c1", "png", 131, 97, 3, 0, NULL},
    {"lesion_97x131_rgb8_c9", "png", 131, 97, 3, 0, NULL},
    {"lesion_97x131_rgb8_optimize", "png", 131, 97, 3, 0, NULL},
    {"lesion_17x9_rgb8", "png", 9, 17, 3, 0, NULL},
    {"lesion_1x1_rgb8", "png", 1, 1, 3, 0, NULL},
    {"lesion_120x90_rgba8", "png", 90, 120, 4, 0, NULL},
    {"cxr_352x423_gray8", "png", 423, 352, 1, 0, NULL},
    {"cxr_352x423_gray16", "png", 423, 352, 1, 1, NULL},
    {"cxr_64x77_la8", "png", 77, 64, 2, 0, NULL},
    {"lesion_97x131_palette64", "png", 131, 97, 3, 0, "_index"},
    {"lesion_97x131_palette16_4bit", "png", 131, 97, 3, 0, "_index"},
    {"lesion_97x131_palette32_trns", "png", 131, 97, 4, 0, "_index"},
    {"lesion_97x131_rgb8_adam7", "png", 131, 97, 3, 0, NULL},
    {"lesion_97x131_rgb8_allfilters_splitidat", "png", 131, 97, 3, 0, NULL},
    {"lesion_17x9_rgb8_adam7", "png", 9, 17, 3, 0, NULL},
    {"lesion_1x1_rgb8_adam7", "png", 1, 1, 3, 0, NULL},
    {"lesion_120x90_rgba8_adam7", "png", 90, 120, 4, 0, NULL},
    {"cxr_352x423_gray16_adam7", "png", 423, 352, 1, 1, NULL},
    {"cxr_352x423_gray8_allfilters", "png", 423, 352, 1, 0, NULL},
    {"lesion_33x21_rgb16", "png", 21, 33, 3, 0, "_u16"},
};
#define N_GOLDEN ((int)(sizeof golden / sizeof golden[0]))

/* The decoded samples as the fixture stores them: uint16 for 16-bit grey,
 * else the 8-bit samples. */
static void check_against_golden(int i, const sc_image *img, const char *label)
{
    char path[256];
    snprintf(path, sizeof path, GOLDEN "%s.npy", golden[i].stem);
    ck_assert_int_eq(img->width, golden[i].width);
    ck_assert_int_eq(img->height, golden[i].height);
    ck_assert_int_eq(img->channels, golden[i].channels);
    sc_array ref;
    load_npy(path, &ref);
    ck_assert_int_eq(ref.ndim, golden[i].channels == 1 ? 2 : 3);
    size_t n = (size_t)img->width * (size_t)img->height * (size_t)img->channels;
    double mean;
    int max = golden[i].u16 ? plane_diff(path, img->pixels16, 1, &ref, n, &mean)
                            : plane_diff(path, img->pixels, 0, &ref, n, &mean);
    /* Stricter than the MANIFEST's JPEG tolerance (3 / 0.25): the integer
     * port reproduces libjpeg-turbo exactly, so any difference is a bug. */
    ck_assert_msg(max == 0, "%s %s: max |diff| %d, mean %.4f", label, golden[i].stem, max, mean);
    sc_array_free(&ref);
}

START_TEST(test_golden_decode)
{
    char path[256];
    snprintf(path, sizeof path, GOLDEN "%s.%s", golden[_i].stem, golden[_i].ext);
    sc_image img;
    sc_err err;
    ck_assert_msg(sc_image_load(sc_test_path(path), &img, &err) == SC_OK, "%s", err.msg);
    check_against_golden(_i, &img, "decode");
    if (golden[_i].extra) {
        snprintf(path, sizeof path, GOLDEN "%s%s.npy", golden[_i].stem, golden[_i].extra);
        sc_array ref;
        load_npy(path, &ref);
        double mean;
        int index = !strcmp(golden[_i].extra, "_index");
        ck_assert_ptr_nonnull(index ? (void *)img.index : (void *)img.pixels16);
        size_t n = (size_t)img.width * (size_t)img.height * (index ? 1 : (size_t)img.channels);
        int max = index ? plane_diff(path, img.index, 0, &ref, n, &mean) : plane_diff(path, img.pixels16, 1, &ref, n, &mean);
        ck_assert_msg(max == 0, "%s: max |diff| %d", path, max);
        sc_array_free(&ref);
    } else {
        ck_assert_ptr_null(img.index);
    }
    ck_assert_int_eq(img.bits, golden[_i].u16 || (golden[_i].extra && !strcmp(golden[_i].extra, "_u16")) ? 16 : 8);
    sc_image_free(&img);
}
END_TEST

/* The writer: decoded golden PNGs, written and read back, still equal the
 * fixture (palette images are written as their expansion). */
START_TEST(test_png_writer_roundtrip)
{
    if (strcmp(golden[_i].ext, "png") != 0) return;
    char path[256];
    snprintf(path, sizeof path, GOLDEN "%s.png", golden[_i].stem);
    sc_image img, back;
    sc_err err;
    ck_assert_msg(sc_image_load(sc_test_path(path), &img, &err) == SC_OK, "%s", err.msg);
    uint8_t *png;
    size_t len;
    ck_assert_msg(sc_png_encode(&img, &png, &len, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_png_decode(png, len, "roundtrip", &back, &err) == SC_OK, "%s", err.msg);
    check_against_golden(_i, &back, "write+read");
    if (img.bits == 16)
        ck_assert(memcmp(img.pixels16, back.pixels16, sizeof(uint16_t) * (size_t)img.width * (size_t)img.height *
                                                           (size_t)img.channels) == 0);
    free(png);
    sc_image_free(&img);
    sc_image_free(&back);
}
END_TEST

START_TEST(test_png_writer_compresses)
{
    /* A plot-like image: 200x100 RGB in four flat rectangles. Stored blocks
     * would take 60 kB; LZ77 with the Up filter leaves a few hundred bytes. */
    sc_image img = {0};
    img.width = 200;
    img.height = 100;
    img.channels = 3;
    img.bits = 8;
    img.pixels = malloc(200 * 100 * 3);
    for (int y = 0; y < 100; y++)
        for (int x = 0; x < 200; x++)
            for (int c = 0; c < 3; c++) img.pixels[(y * 200 + x) * 3 + c] = (uint8_t)((x < 100) * 90 + (y < 50) * 60 + c * 40);
    uint8_t *png;
    size_t len;
    sc_err err;
    ck_assert(sc_png_encode(&img, &png, &len, &err) == SC_OK);
    ck_assert_msg(len < 1000, "PNG of four flat rectangles takes %zu bytes", len);
    sc_image back;
    ck_assert(sc_png_decode(png, len, "plot", &back, &err) == SC_OK);
    ck_assert(memcmp(back.pixels, img.pixels, 200 * 100 * 3) == 0);
    sc_image_free(&back);
    free(png);
    free(img.pixels);
    img.width = 0;
    ck_assert_int_eq(sc_png_encode(&img, &png, &len, &err), SC_EARG);
}
END_TEST

/* ---- PNG built byte by byte ---------------------------------------------- */

typedef struct {
    uint8_t buf[1 << 16];
    size_t len;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
    ck_assert_uint_le(b->len + n, sizeof b->buf);
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

static void put_be32(bytes *b, uint32_t v)
{
    uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, q, 4);
}

static void put_chunk(bytes *b, const char *type, const uint8_t *data, size_t n)
{
    put_be32(b, (uint32_t)n);
    size_t start = b->len;
    put(b, type, 4);
    if (n) put(b, data, n);
    put_be32(b, sc_crc32(0, b->buf + start, 4 + n));
}

/* A zlib stream of stored blocks holding raw[0..n). */
static size_t zlib_stored(const uint8_t *raw, size_t n, uint8_t *out)
{
    size_t k = 0;
    out[k++] = 0x78;
    out[k++] = 0x01;
    size_t at = 0;
    do {
        size_t m = n - at > 65535 ? 65535 : n - at;
        out[k++] = at + m == n;
        out[k++] = (uint8_t)m;
        out[k++] = (uint8_t)(m >> 8);
        out[k++] = (uint8_t)~m;
        out[k++] = (uint8_t)(~m >> 8);
        memcpy(out + k, raw + at, m);
        k += m;
        at += m;
    } while (at < n);
    uint32_t a = sc_adler32(1, raw, n);
    for (int s = 24; s >= 0; s -= 8) out[k++] = (uint8_t)(a >> s);
    return k;
}

static void put_ihdr(bytes *b, uint32_t w, uint32_t h, int depth, int ctype, int interlace)
{
    uint8_t ihdr[13];
    for (int i = 0; i < 4; i++) {
        ihdr[i] = (uint8_t)(w >> (24 - 8 * i));
        ihdr[4 + i] = (uint8_t)(h >> (24 - 8 * i));
    }
    ihdr[8] = (uint8_t)depth;
    ihdr[9] = (uint8_t)ctype;
    ihdr[10] = ihdr[11] = 0;
    ihdr[12] = (uint8_t)interlace;
    put(b, "\x89PNG\r\n\x1a\n", 8);
    put_chunk(b, "IHDR", ihdr, 13);
}

static void put_idat_end(bytes *b, const uint8_t *raw, size_t n)
{
    static uint8_t z[1 << 15];
    size_t zn = zlib_stored(raw, n, z);
    put_chunk(b, "IDAT", z, zn);
    put_chunk(b, "IEND", NULL, 0);
}

static sc_status decode_bytes(const bytes *b, sc_image *img, sc_err *err)
{
    /* An exact-size copy, so AddressSanitizer sees any read past the end. */
    uint8_t *copy = malloc(b->len);
    memcpy(copy, b->buf, b->len);
    sc_status st = sc_image_decode(copy, b->len, "test.png", img, err);
    free(copy);
    return st;
}

START_TEST(test_png_low_bit_depths)
{
    static bytes b;
    sc_image img;
    sc_err err;
    /* 1-bit grey, 10x2: row 0 bits 1011000001 (filter None); row 1 bytes
     * FF 00 under Sub (bpp 1) are FF FF: all white. */
    const uint8_t raw1[] = {0, 0xB0, 0x40, 1, 0xFF, 0x00};
    b.len = 0;
    put_ihdr(&b, 10, 2, 1, 0, 0);
    put_idat_end(&b, raw1, sizeof raw1);
    ck_assert_msg(decode_bytes(&b, &img, &err) == SC_OK, "%s", err.msg);
    const uint8_t want1[20] = {255, 0, 255, 255, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255};
    ck_assert(img.channels == 1 && img.bits == 8 && memcmp(img.pixels, want1, 20) == 0);
    ck_assert_int_eq(img.bilevel, 1); /* Pillow's mode 1 */
    sc_image_free(&img);

    /* 2-bit grey 0 1 2 3 → 0 85 170 255; 4-bit 0 15 7 → 0 255 119. */
    const uint8_t raw2[] = {0, 0x1B};
    b.len = 0;
    put_ihdr(&b, 4, 1, 2, 0, 0);
    put_idat_end(&b, raw2, sizeof raw2);
    ck_assert_msg(decode_bytes(&b, &img, &err) == SC_OK, "%s", err.msg);
    ck_assert(img.pixels[0] == 0 && img.pixels[1] == 85 && img.pixels[2] == 170 && img.pixels[3] == 255);
    ck_assert_int_eq(img.bilevel, 0);
    sc_image_free(&img);
    const uint8_t raw4[] = {0, 0x0F, 0x70};
    b.len = 0;
    put_ihdr(&b, 3, 1, 4, 0, 0);
    put_idat_end(&b, raw4, sizeof raw4);
    ck_assert_msg(decode_bytes(&b, &img, &err) == SC_OK, "%s", err.msg);
    ck_assert(img.pixels[0] == 0 && img.pixels[1] == 255 && img.pixels[2] == 119);
    sc_image_free(&img);
}
END_TEST

START_TEST(test_png_adam7_one_bit)
{
    /* 3x3, 1 bit, Adam7. Image rows: 101 / 010 / 110. Passes present at this
     * size: 1 (0,0), 4 (2,0), 5 (0,2),(2,2), 6 (1,0) and (1,2), 7 row 1. */
    static bytes b;
    const uint8_t raw[] = {0, 0x80, 0, 0x80, 0, 0x80, 0, 0x00, 0, 0x80, 0, 0x40};
    b.len = 0;
    put_ihdr(&b, 3, 3, 1, 0, 1);
    put_idat_end(&b, raw, sizeof raw);
    sc_image img;
    sc_err err;
    ck_assert_msg(decode_bytes(&b, &img, &err) == SC_OK, "%s", err.msg);
    const uint8_t want[9] = {255, 0, 255, 0, 255, 0, 255, 255, 0};
    ck_assert(memcmp(img.pixels, want, 9) == 0);
    sc_image_free(&img);
}
END_TEST

START_TEST(test_png_sixteen_bit_grey_alpha)
{
    static bytes b;
    const uint8_t raw[] = {0, 0x12, 0x34, 0xFF, 0xFF, 0x00, 0x01, 0x80, 0x00};
    b.len = 0;
    put_ihdr(&b, 2, 1, 16, 4, 0);
    put_idat_end(&b, raw, sizeof raw);
    sc_image img;
    sc_err err;
    ck_assert_msg(decode_bytes(&b, &img, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(img.channels, 2);
    ck_assert_int_eq(img.bits, 16);
    const uint16_t want16[4] = {0x1234, 0xFFFF, 0x0001, 0x8000};
    const uint8_t want8[4] = {0x12, 0xFF, 0x00, 0x80};
    ck_assert(memcmp(img.pixels16, want16, sizeof want16) == 0);
    ck_assert(memcmp(img.pixels, want8, 4) == 0);
    sc_image_free(&img);
}
END_TEST

/* Each malformed PNG must fail with this status and message fragment. */
static void expect_png_error(const bytes *b, sc_status want, const char *fragment)
{
    sc_image img;
    sc_err err;
    sc_status st = decode_bytes(b, &img, &err);
    ck_assert_msg(st == want, "expected status %d ('%s'), got %d: %s", want, fragment, st, st ? err.msg : "");
    ck_assert_msg(strstr(err.msg, fragment) != NULL, "message '%s' lacks '%s'", err.msg, fragment);
    ck_assert_msg(strncmp(err.msg, "test.png: ", 10) == 0, "message does not name the file: %s", err.msg);
    ck_assert_ptr_null(img.pixels);
}

START_TEST(test_png_malformed)
{
    static bytes b;
    const uint8_t raw[] = {0, 1, 2, 3, 5, 1, 2, 3}; /* 1x2 RGB, second row filter 5 */
    const uint8_t plte[6] = {0, 0, 0, 255, 255, 255};

    b.len = 0;
    put_ihdr(&b, 1, 2, 8, 2, 0);
    put_idat_end(&b, raw, sizeof raw);
    expect_png_error(&b, SC_EFORMAT, "unknown filter type 5");

    b.len = 0;
    put_ihdr(&b, 1, 2, 8, 2, 0);
    put_idat_end(&b, raw, 4);
    expect_png_error(&b, SC_EFORMAT, "holds 4 bytes but a 1x2 image needs 8");

    const uint8_t more[] = {0, 1, 2, 3, 0, 1, 2, 3, 0};
    b.len = 0;
    put_ihdr(&b, 1, 2, 8, 2, 0);
    put_idat_end(&b, more, sizeof more);
    expect_png_error(&b, SC_ENOMEM, "needs 8 bytes");

    b.len = 0;
    put_ihdr(&b, 0, 2, 8, 2, 0);
    put_idat_end(&b, raw, sizeof raw);
    expect_png_error(&b, SC_EFORMAT, "is empty");

    b.len = 0;
    put_ihdr(&b, 100000, 100000, 8, 2, 0);
    put_idat_end(&b, raw, sizeof raw);
    expect_png_error(&b, SC_ENOMEM, "over the limit");

    b.len = 0;
    put_ihdr(&b, (1u << 24) + 1, 1, 8, 0, 0);
    put_idat_end(&b, raw, sizeof raw);
    expect_png_error(&b, SC_ENOMEM, "over the limit");

    b.len = 0;
    put_ihdr(&b, 1, 2, 4, 2, 0); /* RGB has no 4-bit form */
    put_idat_end(&b, raw, sizeof raw);
    expect_png_error(&b, SC_EFORMAT, "colour type 2 with bit depth 4");

    b.len = 0;
    put_ihdr(&b, 1, 2, 8, 2, 2);
    put_idat_end(&b, raw, sizeof raw);
    expect_png_error(&b, SC_EFORMAT, "interlace 2");

    b.len = 0; /* palette image without PLTE */
    put_ihdr(&b, 1, 1, 8, 3, 0);
    put_idat_end(&b, (const uint8_t[]){0, 0}, 2);
    expect_png_error(&b, SC_EFORMAT, "without PLTE");

    b.len = 0; /* index 2 in a 2-entry palette */
    put_ihdr(&b, 1, 1, 8, 3, 0);
    put_chunk(&b, "PLTE", plte, 6);
    put_idat_end(&b, (const uint8_t[]){0, 2}, 2);
    expect_png_error(&b, SC_EFORMAT, "palette index 2 but the palette has 2 entries");

    b.len = 0; /* tRNS longer than the palette */
    put_ihdr(&b, 1, 1, 8, 3, 0);
    put_chunk(&b, "PLTE", plte, 6);
    put_chunk(&b, "tRNS", (const uint8_t[]){1, 2, 3}, 3);
    put_idat_end(&b, (const uint8_t[]){0, 1}, 2);
    expect_png_error(&b, SC_EFORMAT, "tRNS has 3 entries");

    b.len = 0; /* PLTE in a grey image */
    put_ihdr(&b, 1, 1, 8, 0, 0);
    put_chunk(&b, "PLTE", plte, 6);
    put_idat_end(&b, (const uint8_t[]){0, 1}, 2);
    expect_png_error(&b, SC_EFORMAT, "PLTE chunk in a greyscale image");

    b.len = 0; /* IDAT, something else, IDAT */
    put_ihdr(&b, 1, 1, 8, 0, 0);
    uint8_t z[64];
    size_t zn = zlib_stored((const uint8_t[]){0, 7}, 2, z);
    put_chunk(&b, "IDAT", z, 3);
    put_chunk(&b, "tEXt", (const uint8_t *)"a\0b", 3);
    put_chunk(&b, "IDAT", z + 3, zn - 3);
    put_chunk(&b, "IEND", NULL, 0);
    expect_png_error(&b, SC_EFORMAT, "not consecutive");

    b.len = 0; /* an unknown critical chunk */
    put_ihdr(&b, 1, 1, 8, 0, 0);
    put_chunk(&b, "ABCD", NULL, 0);
    put_idat_end(&b, (const uint8_t[]){0, 7}, 2);
    expect_png_error(&b, SC_EUNSUPPORTED, "unknown critical chunk ABCD");

    b.len = 0; /* ...an unknown ancillary one is skipped */
    put_ihdr(&b, 1, 1, 8, 0, 0);
    put_chunk(&b, "abCD", NULL, 0);
    put_idat_end(&b, (const uint8_t[]){0, 7}, 2);
    sc_image img;
    sc_err err;
    ck_assert_msg(decode_bytes(&b, &img, &err) == SC_OK, "%s", err.msg);
    ck_assert_uint_eq(img.pixels[0], 7);
    sc_image_free(&img);

    b.len = 0; /* no IEND */
    put_ihdr(&b, 1, 1, 8, 0, 0);
    zn = zlib_stored((const uint8_t[]){0, 7}, 2, z);
    put_chunk(&b, "IDAT", z, zn);
    expect_png_error(&b, SC_EFORMAT, "no IEND");

    b.len = 0; /* IHDR not first */
    put(&b, "\x89PNG\r\n\x1a\n", 8);
    put_chunk(&b, "IEND", NULL, 0);
    expect_png_error(&b, SC_EFORMAT, "not IHDR");
}
END_TEST

START_TEST(test_png_wrong_crc)
{
    size_t len;
    uint8_t *png = load(GOLDEN "lesion_17x9_rgb8.png", &len);
    static bytes b;
    /* The IHDR's CRC, then a byte inside IDAT. */
    for (size_t at = 29; at < len; at += len - 29 - 20) {
        b.len = 0;
        put(&b, png, len);
        b.buf[at] ^= 0x10;
        expect_png_error(&b, SC_EFORMAT, "CRC mismatch");
    }
    free(png);
}
END_TEST

/* Cut a PNG at every chunk boundary and at a point inside every chunk. */
START_TEST(test_png_truncated_everywhere)
{
    const char *files[] = {GOLDEN "cxr_352x423_gray8.png", GOLDEN "lesion_97x131_palette32_trns.png",
                           GOLDEN "lesion_97x131_rgb8_allfilters_splitidat.png"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t len;
        uint8_t *png = load(files[f], &len);
        int cuts = 0;
        for (size_t at = 8; at + 12 <= len;) {
            size_t n = (size_t)png[at] << 24 | (size_t)png[at + 1] << 16 | (size_t)png[at + 2] << 8 | png[at + 3];
            size_t points[3] = {at, at + 4 + (n + 8) / 2, at + 12 + n - 1};
            for (int k = 0; k < 3; k++) {
                uint8_t *cut = malloc(points[k]);
                memcpy(cut, png, points[k]);
                sc_image img;
                sc_err err;
                sc_status st = sc_png_decode(cut, points[k], "cut.png", &img, &err);
                ck_assert_msg(st == SC_EFORMAT, "%s cut at %zu: status %d", files[f], points[k], st);
                ck_assert_ptr_null(img.pixels);
                free(cut);
                cuts++;
            }
            at += 12 + n;
        }
        ck_assert_int_ge(cuts, 9);
        free(png);
    }
}
END_TEST

/* ---- JPEG: malformed files derived from good ones ------------------------ */

/* Offset of the first segment with this marker (pointing at 0xFF), or 0. */
static size_t find_marker(const uint8_t *j, size_t len, int marker)
{
    size_t at = 2;
    while (at + 4 <= len && j[at] == 0xFF) {
        if (j[at + 1] == marker) return at;
        if (j[at + 1] == 0xDA) return 0; /* stop at the first scan */
        at += 2 + ((size_t)j[at + 2] << 8 | j[at + 3]);
    }
    return 0;
}

static void expect_jpeg_error(const uint8_t *j, size_t len, sc_status want, const char *fragment)
{
    uint8_t *copy = malloc(len);
    memcpy(copy, j, len);
    sc_image img;
    sc_err err;
    sc_status st = sc_jpeg_decode(copy, len, "test.jpg", &img, &err);
    ck_assert_msg(st == want, "expected %d ('%s'), got %d: %s", want, fragment, st, st ? err.msg : "");
    ck_assert_msg(strstr(err.msg, fragment) != NULL, "message '%s' lacks '%s'", err.msg, fragment);
    ck_assert_msg(strncmp(err.msg, "test.jpg: ", 10) == 0, "message does not name the file: %s", err.msg);
    ck_assert_ptr_null(img.pixels);
    free(copy);
}

START_TEST(test_jpeg_frame_header_errors)
{
    size_t len;
    uint8_t *j = load(GOLDEN "lesion_17x9_baseline_420_q90.jpg", &len);
    size_t sof = find_marker(j, len, 0xC0);
    ck_assert_uint_gt(sof, 0);
    uint8_t *m = malloc(len);
    /* SOF0: FF C0 len(2) precision(1) height(2) width(2) count(1) ... */
    memcpy(m, j, len);
    m[sof + 5] = m[sof + 6] = m[sof + 7] = m[sof + 8] = 0xFF; /* 65535 x 65535 */
    expect_jpeg_error(m, len, SC_ENOMEM, "65535x65535 is over the limit");
    memcpy(m, j, len);
    m[sof + 7] = m[sof + 8] = 0;
    expect_jpeg_error(m, len, SC_EFORMAT, "width 0");
    memcpy(m, j, len);
    m[sof + 5] = m[sof + 6] = 0;
    expect_jpeg_error(m, len, SC_EUNSUPPORTED, "height 0");
    memcpy(m, j, len);
    m[sof + 4] = 12;
    expect_jpeg_error(m, len, SC_EUNSUPPORTED, "12-bit");
    memcpy(m, j, len);
    m[sof + 9] = 4;
    expect_jpeg_error(m, len, SC_EUNSUPPORTED, "CMYK");
    memcpy(m, j, len);
    m[sof + 9] = 2;
    expect_jpeg_error(m, len, SC_EUNSUPPORTED, "1- and 3-component");
    memcpy(m, j, len);
    m[sof + 1] = 0xC3;
    expect_jpeg_error(m, len, SC_EUNSUPPORTED, "lossless");
    memcpy(m, j, len);
    m[sof + 1] = 0xC9;
    expect_jpeg_error(m, len, SC_EUNSUPPORTED, "arithmetic");
    memcpy(m, j, len);
    m[sof + 11] = 0x50; /* first component: h = 5 */
    expect_jpeg_error(m, len, SC_EFORMAT, "bad sampling factor");
    memcpy(m, j, len);
    m[sof + 11] = 0x32; /* h = 3 with the chroma at h = 1: fine; v = 2 and 1: fine */
    m[sof + 14] = 0x21; /* chroma h = 2 does not divide 3 */
    expect_jpeg_error(m, len, SC_EUNSUPPORTED, "fractional sampling");
    free(m);
    free(j);
}
END_TEST

START_TEST(test_jpeg_bad_huffman_table)
{
    size_t len;
    uint8_t *j = load(GOLDEN "lesion_17x9_baseline_420_q90.jpg", &len);
    size_t dht = find_marker(j, len, 0xC4);
    ck_assert_uint_gt(dht, 0);
    uint8_t *m = malloc(len);
    memcpy(m, j, len);
    /* Give the first table two 1-bit codes (taken from its longest length,
     * so the value count stays): 0 and 1 leave no room for longer codes. */
    uint8_t *counts = m + dht + 5;
    int last = 15;
    while (counts[last] < 2) last--;
    counts[last] -= 2;
    counts[0] += 2;
    expect_jpeg_error(m, len, SC_EFORMAT, "more codes than its lengths allow");
    memcpy(m, j, len);
    m[dht + 4] = 0x24; /* class 2 */
    expect_jpeg_error(m, len, SC_EFORMAT, "bad DHT table class");
    free(m);
    free(j);
}
END_TEST

START_TEST(test_jpeg_restart_marker_checked)
{
    size_t len;
    uint8_t *j = load(GOLDEN "lesion_97x131_restart3mcu_420_q85.jpg", &len);
    uint8_t *m = malloc(len);
    memcpy(m, j, len);
    size_t at = len - 2;
    while (at > 0 && !(m[at] == 0xFF && m[at + 1] >= 0xD0 && m[at + 1] <= 0xD7)) at--;
    ck_assert_uint_gt(at, 0);
    m[at + 1] = (uint8_t)(0xD0 + ((m[at + 1] - 0xD0 + 3) & 7)); /* the wrong RSTn */
    expect_jpeg_error(m, len, SC_EFORMAT, "expected restart marker");
    free(m);
    free(j);
}
END_TEST

/* Colour space of three components. Build, from the grey baseline JPEG, a
 * three-component file whose components all carry the grey image (three
 * non-interleaved scans of the same data), without the JFIF marker:
 *   - with an Adobe APP14 marker, transform 0, the components are R, G, B:
 *     every pixel must be the grey fixture value three times;
 *   - with component ids 'R', 'G', 'B' and no marker, the same;
 *   - with ids 1, 2, 3 and no marker they are YCbCr: Cb = Cr = Y is not grey. */
static size_t three_component_jpeg(const uint8_t *j, size_t len, int adobe, const uint8_t ids[3], uint8_t *out)
{
    size_t k = 0, at = 2;
    out[k++] = 0xFF;
    out[k++] = 0xD8;
    if (adobe) {
        const uint8_t app14[16] = {0xFF, 0xEE, 0, 14, 'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, 0};
        memcpy(out + k, app14, 16); /* version 100, flags 0, transform 0 */
        k += 16;
    }
    while (at + 4 <= len && j[at] == 0xFF) {
        int marker = j[at + 1];
        size_t seg = 2 + ((size_t)j[at + 2] << 8 | j[at + 3]);
        if (marker == 0xC0) { /* SOF0 with three copies of the component */
            const uint8_t sof[19] = {0xFF, 0xC0, 0, 17, 8, j[at + 5], j[at + 6], j[at + 7], j[at + 8], 3,
                                     ids[0], 0x11, 0, ids[1], 0x11, 0, ids[2], 0x11, 0};
            memcpy(out + k, sof, 19);
            k += 19;
        } else if (marker == 0xDA) { /* the scan, three times, one per component */
            size_t end = len - 2; /* the data runs to the EOI marker */
            for (int c = 0; c < 3; c++) {
                memcpy(out + k, j + at, seg);
                out[k + 5] = ids[c];
                k += seg;
                memcpy(out + k, j + at + seg, end - at - seg);
                k += end - at - seg;
            }
            out[k++] = 0xFF;
            out[k++] = 0xD9;
            return k;
        } else if (marker != 0xE0) { /* everything but JFIF */
            memcpy(out + k, j + at, seg);
            k += seg;
        }
        at += seg;
    }
    return 0;
}

START_TEST(test_jpeg_rgb_colour_space)
{
    size_t len;
    uint8_t *j = load(GOLDEN "cxr_352x423_gray8_baseline_q85.jpg", &len);
    ck_assert_uint_eq(j[len - 2], 0xFF);
    ck_assert_uint_eq(j[len - 1], 0xD9);
    sc_array ref;
    load_npy(GOLDEN "cxr_352x423_gray8_baseline_q85.npy", &ref);
    const uint8_t *grey = ref.data;
    uint8_t *m = malloc(3 * len + 64);
    const struct { int adobe; uint8_t ids[3]; int rgb; } cases[] = {
        {1, {1, 2, 3}, 1}, {0, {'R', 'G', 'B'}, 1}, {0, {1, 2, 3}, 0}};
    for (int k = 0; k < 3; k++) {
        size_t n = three_component_jpeg(j, len, cases[k].adobe, cases[k].ids, m);
        ck_assert_uint_gt(n, len);
        sc_image img;
        sc_err err;
        ck_assert_msg(sc_jpeg_decode(m, n, "rgb.jpg", &img, &err) == SC_OK, "%s", err.msg);
        ck_assert_int_eq(img.channels, 3);
        size_t same = 0, npix = (size_t)img.width * (size_t)img.height;
        for (size_t p = 0; p < npix; p++)
            same += img.pixels[3 * p] == grey[p] && img.pixels[3 * p + 1] == grey[p] && img.pixels[3 * p + 2] == grey[p];
        if (cases[k].rgb) ck_assert_msg(same == npix, "case %d: %zu of %zu pixels are the grey value", k, same, npix);
        else ck_assert_msg(same < npix / 2, "case %d: YCbCr with Cb = Cr = Y looks grey", k);
        sc_image_free(&img);
    }
    free(m);
    sc_array_free(&ref);
    free(j);
}
END_TEST

/* Cut at every marker and at points inside the entropy-coded data. */
START_TEST(test_jpeg_truncated_everywhere)
{
    const char *files[] = {GOLDEN "lesion_97x131_progressive_422_q85.jpg", GOLDEN "lesion_97x131_restart3mcu_420_q85.jpg",
                           GOLDEN "cxr_352x423_gray8_baseline_q85.jpg"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t len;
        uint8_t *j = load(files[f], &len);
        int cuts = 0;
        for (size_t at = 0; at < len; at++) {
            int boundary = j[at] == 0xFF && at + 1 < len && j[at + 1] != 0 && j[at + 1] != 0xFF;
            if (!boundary && at % 97 != 0) continue;
            uint8_t *cut = malloc(at ? at : 1);
            memcpy(cut, j, at);
            sc_image img;
            sc_err err;
            sc_status st = sc_jpeg_decode(cut, at, "cut.jpg", &img, &err);
            ck_assert_msg(st == SC_EFORMAT, "%s cut at %zu: status %d", files[f], at, st);
            free(cut);
            cuts++;
        }
        ck_assert_int_ge(cuts, 10);
        free(j);
    }
}
END_TEST

/* Flipped bits in the scan data: any status, but no crash, no leak and no
 * read outside the buffer (run under `make asan`). */
START_TEST(test_jpeg_corrupt_data_no_crash)
{
    const char *files[] = {GOLDEN "lesion_97x131_progressive_422_q85.jpg", GOLDEN "lesion_17x9_baseline_420_q90.jpg",
                           GOLDEN "lesion_97x131_restart3mcu_420_q85.jpg"};
    uint64_t state = 88172645463325252ull;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        size_t len;
        uint8_t *j = load(files[f], &len);
        uint8_t *m = malloc(len);
        for (int trial = 0; trial < 60; trial++) {
            memcpy(m, j, len);
            for (int k = 0; k < 4; k++) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                m[100 + state % (len - 100)] ^= (uint8_t)(1u << (state >> 40) % 8);
            }
            sc_image img;
            sc_err err;
            if (sc_jpeg_decode(m, len, "flip.jpg", &img, &err) == SC_OK) sc_image_free(&img);
        }
        free(m);
        free(j);
    }
}
END_TEST

/* ---- PGM/PPM ------------------------------------------------------------ */

START_TEST(test_pnm_read_write)
{
    const char *pgm = "P5\n# a comment\n3 2\n255\n\x01\x02\x03\xfd\xfe\xff";
    sc_image img;
    sc_err err;
    ck_assert_msg(sc_image_decode((const uint8_t *)pgm, strlen(pgm) + 0, "t.pgm", &img, &err) == SC_OK, "%s", err.msg);
    ck_assert(img.width == 3 && img.height == 2 && img.channels == 1 && img.bits == 8);
    ck_assert(memcmp(img.pixels, "\x01\x02\x03\xfd\xfe\xff", 6) == 0);
    sc_image_free(&img);

    const uint8_t ppm16[] = "P6 1 1 65535\n\x12\x34\xAB\xCD\x00\x01";
    ck_assert_msg(sc_image_decode(ppm16, sizeof ppm16 - 1, "t.ppm", &img, &err) == SC_OK, "%s", err.msg);
    ck_assert(img.channels == 3 && img.bits == 16);
    ck_assert(img.pixels16[0] == 0x1234 && img.pixels16[1] == 0xABCD && img.pixels16[2] == 1);
    ck_assert(img.pixels[0] == 0x12 && img.pixels[1] == 0xAB && img.pixels[2] == 0);
    /* write and read back */
    char path[512];
    snprintf(path, sizeof path, "%s/x.ppm", sc_test_tmpdir());
    ck_assert_msg(sc_pnm_write(path, &img, &err) == SC_OK, "%s", err.msg);
    size_t len;
    uint8_t *data;
    ck_assert(sc_read_file(path, 1 << 20, &data, &len, &err) == SC_OK);
    ck_assert_uint_eq(len, 19); /* "P6\n1 1\n65535\n" + 6 */
    ck_assert(memcmp(data, "P6\n1 1\n65535\n\x12\x34\xAB\xCD\x00\x01", 19) == 0);
    free(data);
    sc_image_free(&img);

    const char *bad[] = {"P5 3 2 1023\n......", "P5 3 2 255\n12345", "P5 3", "P5 -3 2 255\n", "P7 1 1 255\n.",
                         "P5 0 1 255\n"};
    const sc_status want[] = {SC_EUNSUPPORTED, SC_EFORMAT, SC_EFORMAT, SC_EFORMAT, SC_EUNSUPPORTED, SC_EFORMAT};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sc_status st = sc_image_decode((const uint8_t *)bad[i], strlen(bad[i]), "bad.pgm", &img, &err);
        ck_assert_msg(st == want[i], "'%s': status %d (%s)", bad[i], st, err.msg);
        ck_assert_ptr_null(img.pixels);
    }
    /* Alpha cannot go into a PPM. */
    sc_image la = {0};
    la.width = la.height = 1;
    la.channels = 2;
    la.bits = 8;
    la.pixels = (uint8_t[]){1, 2};
    ck_assert_int_eq(sc_pnm_write(path, &la, &err), SC_EARG);
}
END_TEST

/* ---- fuzz regressions ---------------------------------------------------- */

/* Empty and absent input is an error for every decoder, never a crash. */
START_TEST(test_empty_input)
{
    sc_image img;
    sc_err err;
    const uint8_t one = 0xFF;
    for (int k = 0; k < 2; k++) {
        const uint8_t *data = k ? &one : NULL;
        size_t len = k ? 1 : 0;
        ck_assert_int_eq(sc_png_decode(data, len, "e", &img, &err), SC_EFORMAT);
        ck_assert_int_eq(sc_jpeg_decode(data, len, "e", &img, &err), SC_EFORMAT);
        ck_assert_int_eq(sc_pnm_decode(data, len, "e", &img, &err), SC_EFORMAT);
        ck_assert_int_eq(sc_image_decode(data, len, "e", &img, &err), SC_EUNSUPPORTED);
        uint8_t *out;
        size_t n;
        ck_assert_int_eq(sc_inflate(data, len, SC_INFLATE_ZLIB, 100, &out, &n, &err), SC_EFORMAT);
    }
}
END_TEST

/* Every input a fuzzer once crashed on is replayed through its decoder. */
static int replay_png(const uint8_t *data, size_t len)
{
    sc_image img;
    sc_err err;
    if (sc_png_decode(data, len, "regress.png", &img, &err) == SC_OK) sc_image_free(&img);
    return 0;
}

static int replay_jpeg(const uint8_t *data, size_t len)
{
    sc_image img;
    sc_err err;
    if (sc_jpeg_decode(data, len, "regress.jpg", &img, &err) == SC_OK) sc_image_free(&img);
    return 0;
}

/* As fuzz_inflate.c: the first byte picks the wrapper, the rest is the stream. */
static int replay_inflate(const uint8_t *data, size_t len)
{
    if (len == 0) return 0;
    uint8_t *out;
    size_t n;
    sc_err err;
    if (sc_inflate(data + 1, len - 1, (sc_inflate_format)(data[0] % 3), 1 << 20, &out, &n, &err) == SC_OK)
        free(out);
    return 0;
}

START_TEST(test_fuzz_regressions)
{
    sc_test_replay_dir("tests/fuzz/regress/png", replay_png, 0);
    sc_test_replay_dir("tests/fuzz/regress/jpeg", replay_jpeg, 0);
    sc_test_replay_dir("tests/fuzz/regress/inflate", replay_inflate, 0);
}
END_TEST

/* A writer error names the output file once, and a NULL err is allowed
 * (the message used to be formatted into itself). */
START_TEST(test_png_write_error_message)
{
    sc_image img;
    memset(&img, 0, sizeof img);
    img.channels = 3;
    img.bits = 8;   /* width 0: nothing to encode */
    char path[512];
    snprintf(path, sizeof path, "%s/empty.png", sc_test_tmpdir());
    sc_err err;
    ck_assert_int_ne(sc_png_write(path, &img, &err), SC_OK);
    ck_assert_msg(strncmp(err.msg, path, strlen(path)) == 0, "%s", err.msg);
    ck_assert_ptr_null(strstr(err.msg + strlen(path), path));
    ck_assert_int_ne(sc_png_write(path, &img, NULL), SC_OK);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_null(f);
}
END_TEST

Suite *suite_images(void)
{
    Suite *s = suite_create("images");
    TCase *tc = tcase_create("golden");
    tcase_add_loop_test(tc, test_golden_decode, 0, N_GOLDEN);
    tcase_add_loop_test(tc, test_png_writer_roundtrip, 0, N_GOLDEN);
    tcase_add_test(tc, test_png_writer_compresses);
    tcase_add_test(tc, test_png_write_error_message);
    suite_add_tcase(s, tc);

    TCase *png = tcase_create("png");
    tcase_add_test(png, test_png_low_bit_depths);
    tcase_add_test(png, test_png_adam7_one_bit);
    tcase_add_test(png, test_png_sixteen_bit_grey_alpha);
    tcase_add_test(png, test_png_malformed);
    tcase_add_test(png, test_png_wrong_crc);
    tcase_add_test(png, test_png_truncated_everywhere);
    suite_add_tcase(s, png);

    TCase *jpeg = tcase_create("jpeg");
    tcase_add_test(jpeg, test_jpeg_frame_header_errors);
    tcase_add_test(jpeg, test_jpeg_bad_huffman_table);
    tcase_add_test(jpeg, test_jpeg_restart_marker_checked);
    tcase_add_test(jpeg, test_jpeg_rgb_colour_space);
    tcase_add_test(jpeg, test_jpeg_truncated_everywhere);
    tcase_add_test(jpeg, test_jpeg_corrupt_data_no_crash);
    tcase_set_timeout(jpeg, 30);
    suite_add_tcase(s, jpeg);

    TCase *pnm = tcase_create("pnm");
    tcase_add_test(pnm, test_pnm_read_write);
    tcase_add_test(pnm, test_empty_input);
    tcase_add_test(pnm, test_fuzz_regressions);
    suite_add_tcase(s, pnm);
    return s;
}
