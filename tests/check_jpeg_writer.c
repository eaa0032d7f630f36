/* check_jpeg_writer.c — tests for the baseline JPEG writer (io.c section 8):
 * the header bytes equal Pillow's for the same quality and sampling, a
 * hand-computed scan for a flat block, round trips through the decoder on
 * the golden lesion and chest images, and refused inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

/* A decoded golden image as an 8-bit sc_image over the array's data. */
static sc_image image_from_npy(sc_array *a, const char *rel)
{
    sc_err err = {{0}};
    ck_assert_msg(sc_npy_read(sc_test_path(rel), a, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(a->dtype, SC_DT_U8);
    sc_image img = {0};
    img.height = (int)a->shape[0];
    img.width = (int)a->shape[1];
    img.channels = a->ndim == 3 ? (int)a->shape[2] : 1;
    img.bits = 8;
    img.pixels = a->data;
    return img;
}

static size_t find_sos(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (p[i] == 0xFF && p[i + 1] == 0xDA) return i;
    return n;
}

/* Pillow 9.4 wrote lesion_256x192_baseline_444_q95.jpg with quality=95 and
 * subsampling=0; everything before the scan (JFIF header, both scaled
 * quantisation tables in zig-zag order, frame header, the four annex K
 * Huffman tables, scan header) must be the same bytes in our file. */
START_TEST(test_jpeg_writer_headers_match_pillow)
{
    sc_array a;
    sc_image img = image_from_npy(&a, "tests/golden/io/images/lesion_256x192_baseline_444_q95.npy");
    uint8_t *ours, *pillow;
    size_t ours_len, pillow_len;
    sc_err err = {{0}};
    ck_assert_msg(sc_jpeg_encode(&img, 95, &ours, &ours_len, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(sc_read_file(sc_test_path("tests/golden/io/images/lesion_256x192_baseline_444_q95.jpg"),
                                  1 << 20, &pillow, &pillow_len, &err), SC_OK);
    size_t a_sos = find_sos(ours, ours_len), b_sos = find_sos(pillow, pillow_len);
    ck_assert_uint_eq(a_sos, b_sos);
    ck_assert_msg(memcmp(ours, pillow, a_sos + 14) == 0, "headers differ from Pillow's"); /* + SOS segment */
    ck_assert_msg(ours[ours_len - 2] == 0xFF && ours[ours_len - 1] == 0xD9, "no EOI at the end");
    free(ours);
    free(pillow);
    sc_array_free(&a);
}
END_TEST

/* An 8x8 grey block of 200 at quality 50 (the annex tables unscaled): the
 * level-shifted DC is 8·72 = 576, quantised by 16 to 36, category 6 with
 * bits 100100; the luminance DC code of category 6 is 1110; all AC terms are
 * zero, so EOB (1010) follows. 1110 100100 1010 + padding 11 = E9 2B. */
START_TEST(test_jpeg_writer_flat_block_by_hand)
{
    uint8_t px[64];
    memset(px, 200, sizeof px);
    sc_image img = {0};
    img.width = img.height = 8;
    img.channels = 1;
    img.bits = 8;
    img.pixels = px;
    uint8_t *jpg;
    size_t len;
    sc_err err = {{0}};
    ck_assert_msg(sc_jpeg_encode(&img, 50, &jpg, &len, &err) == SC_OK, "%s", err.msg);
    size_t sos = find_sos(jpg, len);
    ck_assert_uint_eq(len, sos + 10 + 2 + 2); /* SOS segment (marker + 8), two data bytes, EOI */
    const uint8_t tail[4] = {0xE9, 0x2B, 0xFF, 0xD9};
    ck_assert_msg(memcmp(jpg + sos + 10, tail, 4) == 0, "scan %02x %02x", jpg[sos + 10], jpg[sos + 11]);
    sc_image back;
    ck_assert_int_eq(sc_image_decode(jpg, len, "flat", &back, &err), SC_OK);
    for (int i = 0; i < 64; i++) ck_assert_int_eq(back.pixels[i], 200);
    sc_image_free(&back);
    free(jpg);
}
END_TEST

/* Encode, decode with our decoder, compare with the source. */
static void round_trip(const char *rel, int quality, int max_err, double min_psnr)
{
    sc_array a;
    sc_image img = image_from_npy(&a, rel);
    uint8_t *jpg;
    size_t len;
    sc_err err = {{0}};
    ck_assert_msg(sc_jpeg_encode(&img, quality, &jpg, &len, &err) == SC_OK, "%s", err.msg);
    sc_image back;
    ck_assert_msg(sc_image_decode(jpg, len, rel, &back, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(back.width, img.width);
    ck_assert_int_eq(back.height, img.height);
    ck_assert_int_eq(back.channels, img.channels);
    size_t n = (size_t)img.width * (size_t)img.height * (size_t)img.channels;
    int worst = 0;
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        int e = abs((int)back.pixels[i] - (int)img.pixels[i]);
        worst = e > worst ? e : worst;
        se += (double)e * e;
    }
    double psnr = 10.0 * log10(255.0 * 255.0 / (se / (double)n));
    ck_assert_msg(worst <= max_err && psnr >= min_psnr, "%s at q%d: max error %d, PSNR %.2f dB", rel, quality,
                  worst, psnr);
    sc_image_free(&back);
    free(jpg);
    sc_array_free(&a);
}

/* Bounds: a decoded JPEG re-encoded with the same tables and sampling is
 * nearly a fixed point (q95, q75 lesions); the lossless chest image at q85
 * stays well above 30 dB, the usual range for such qualities. */
START_TEST(test_jpeg_writer_round_trips)
{
    round_trip("tests/golden/io/images/lesion_256x192_baseline_444_q95.npy", 95, 4, 50.0);
    round_trip("tests/golden/io/images/lesion_256x192_baseline_444_q75.npy", 75, 8, 40.0);
    round_trip("tests/golden/io/images/cxr_352x423_gray8.npy", 85, 24, 37.0);
    round_trip("tests/golden/io/images/lesion_17x9_rgb8.npy", 100, 4, 45.0); /* partial blocks */
    round_trip("tests/golden/io/images/lesion_1x1_rgb8.npy", 90, 2, 40.0);
}
END_TEST

START_TEST(test_jpeg_writer_refuses)
{
    uint16_t px16[4] = {0};
    uint8_t px[16] = {0};
    sc_image img = {0};
    img.width = img.height = 2;
    img.bits = 16;
    img.channels = 1;
    img.pixels = px;
    img.pixels16 = px16;
    uint8_t *jpg = NULL;
    size_t len;
    sc_err err = {{0}};
    ck_assert_int_eq(sc_jpeg_encode(&img, 90, &jpg, &len, &err), SC_EARG); /* 16-bit */
    img.bits = 8;
    img.channels = 4;
    ck_assert_int_eq(sc_jpeg_encode(&img, 90, &jpg, &len, &err), SC_EARG); /* alpha */
    img.channels = 3;
    ck_assert_int_eq(sc_jpeg_encode(&img, 0, &jpg, &len, &err), SC_EARG);
    ck_assert_int_eq(sc_jpeg_encode(&img, 101, &jpg, &len, &err), SC_EARG);
    ck_assert_ptr_null(jpg);
    ck_assert_msg(strstr(err.msg, "quality 101") != NULL, "%s", err.msg);
}
END_TEST

Suite *suite_jpeg_writer(void)
{
    Suite *s = suite_create("jpeg_writer");
    TCase *tc = tcase_create("jpeg_writer");
    tcase_add_test(tc, test_jpeg_writer_headers_match_pillow);
    tcase_add_test(tc, test_jpeg_writer_flat_block_by_hand);
    tcase_add_test(tc, test_jpeg_writer_round_trips);
    tcase_add_test(tc, test_jpeg_writer_refuses);
    suite_add_tcase(s, tc);
    return s;
}
