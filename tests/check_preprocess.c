/* check_preprocess.c — tests for io.c section 10 and the decode/preprocess
 * commands.
 *
 * The fixtures in tests/golden/io/preprocess come from OpenAI CLIP's
 * torchvision transform and MedCLIP's processor and dataset transform,
 * run on Pillow 9.4. The MANIFEST allows max |diff| 0.02 and mean 0.005
 * after normalisation for an implementation of Pillow's resampling that is
 * not exact; we reproduce Pillow's fixed-point arithmetic and hold both the
 * 8-bit intermediates and the float outputs to exact equality.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check_util.h"

#define PRE "tests/golden/io/preprocess/"

static const char *const inputs[] = {
    "lesion_640x480_baseline_420_q90.jpg", "lesion_97x131_rgb8_c6.png", "cxr_352x423_gray8.png",
    "lesion_120x90_rgba8.png",             "lesion_17x9_rgb8.png",      "lesion_97x131_palette64.png",
};
#define N_INPUTS ((int)(sizeof inputs / sizeof inputs[0]))

/* pipeline name → fixture folder, and whether an 8-bit _u8 fixture exists */
static const struct {
    const char *pipeline, *dir;
    int has_u8;
} pipelines[] = {{"clip", "clip", 1}, {"medclip", "medclip_processor", 1}, {"medclip-eval", "medclip_dataset", 0}};

static void stem_of(const char *file, char *stem, size_t n)
{
    snprintf(stem, n, "%s", file);
    char *dot = strrchr(stem, '.');
    if (dot) *dot = 0;
}

static void load_image(const char *file, sc_image *img)
{
    char path[256];
    sc_err err;
    snprintf(path, sizeof path, "tests/golden/io/images/%s", file);
    ck_assert_msg(sc_image_load(sc_test_path(path), img, &err) == SC_OK, "%s", err.msg);
}

static void load_npy(const char *rel, sc_array *a)
{
    sc_err err;
    ck_assert_msg(sc_npy_read(sc_test_path(rel), a, &err) == SC_OK, "%s", err.msg);
}

/* One (input, pipeline) pair: _i = input * 3 + pipeline. */
START_TEST(test_pipeline_fixtures)
{
    int in = _i / 3, k = _i % 3;
    char stem[128], path[256];
    stem_of(inputs[in], stem, sizeof stem);
    sc_image img;
    load_image(inputs[in], &img);
    sc_pipeline p;
    sc_err err;
    ck_assert(sc_pipeline_named(pipelines[k].pipeline, &p, &err) == SC_OK);
    int side = sc_pipeline_side(&p);
    ck_assert_int_eq(side, 224);

    if (pipelines[k].has_u8) {
        sc_image u8;
        sc_array ref;
        snprintf(path, sizeof path, PRE "%s/%s_u8.npy", pipelines[k].dir, stem);
        load_npy(path, &ref);
        ck_assert_msg(sc_pipeline_u8(&p, &img, &u8, &err) == SC_OK, "%s", err.msg);
        ck_assert_int_eq(sc_array_numel(&ref), (int64_t)224 * 224 * p.channels);
        int max = 0;
        for (int64_t i = 0; i < sc_array_numel(&ref); i++) {
            int d = abs((int)u8.pixels[i] - (int)((uint8_t *)ref.data)[i]);
            if (d > max) max = d;
        }
        ck_assert_msg(max == 0, "%s %s: 8-bit image differs by up to %d levels", pipelines[k].pipeline, stem, max);
        sc_image_free(&u8);
        sc_array_free(&ref);
    }

    float *got = malloc(sizeof(float) * 3 * 224 * 224);
    ck_assert_msg(sc_pipeline_run(&p, &img, got, &err) == SC_OK, "%s", err.msg);
    sc_array ref;
    snprintf(path, sizeof path, PRE "%s/%s.npy", pipelines[k].dir, stem);
    load_npy(path, &ref);
    ck_assert_int_eq(ref.ndim, 3);
    ck_assert_int_eq(ref.shape[0], p.channels);
    char name[256];
    snprintf(name, sizeof name, "%s %s", pipelines[k].pipeline, stem);
    /* The MANIFEST's tolerance is 0.02 max / 0.005 mean; we are exact. */
    sc_check_close(name, got, ref.data, sc_array_numel(&ref), 0, 0);
    free(got);
    sc_array_free(&ref);
    sc_image_free(&img);
}
END_TEST

/* Resizing from the fixture's decoded pixels (images/<stem>.npy) gives the
 * same, so a decoding error could not hide a resampling one. */
START_TEST(test_clip_from_decoded_pixels)
{
    sc_array px;
    load_npy("tests/golden/io/images/lesion_640x480_baseline_420_q90.npy", &px);
    sc_image img = {0};
    img.height = (int)px.shape[0];
    img.width = (int)px.shape[1];
    img.channels = 3;
    img.bits = 8;
    img.pixels = px.data;
    sc_pipeline p;
    sc_err err;
    sc_image u8;
    ck_assert(sc_pipeline_named("clip", &p, &err) == SC_OK);
    ck_assert(sc_pipeline_u8(&p, &img, &u8, &err) == SC_OK);
    sc_array ref;
    load_npy(PRE "clip/lesion_640x480_baseline_420_q90_u8.npy", &ref);
    ck_assert(memcmp(u8.pixels, ref.data, 224 * 224 * 3) == 0);
    sc_image_free(&u8);
    sc_array_free(&ref);
    sc_array_free(&px);
}
END_TEST

/* MONET is CLIP's transform with ImageNet statistics (facts.md, MONET
 * section): its input is the CLIP 8-bit fixture normalised with them. */
START_TEST(test_monet_uses_imagenet_statistics)
{
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    sc_image img;
    load_image("lesion_97x131_rgb8_c6.png", &img);
    sc_pipeline p;
    sc_err err;
    ck_assert(sc_pipeline_named("monet", &p, &err) == SC_OK);
    float *got = malloc(sizeof(float) * 3 * 224 * 224), *want = malloc(sizeof(float) * 3 * 224 * 224);
    ck_assert(sc_pipeline_run(&p, &img, got, &err) == SC_OK);
    sc_array u8;
    load_npy(PRE "clip/lesion_97x131_rgb8_c6_u8.npy", &u8);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 224 * 224; i++)
            want[c * 224 * 224 + i] = ((float)((uint8_t *)u8.data)[i * 3 + c] / 255.0f - mean[c]) / std[c];
    sc_check_close("monet", got, want, 3 * 224 * 224, 0, 0);
    free(got);
    free(want);
    sc_array_free(&u8);
    sc_image_free(&img);
}
END_TEST

/* ---- the 8-bit operations, on hand-computed cases ------------------------ */

START_TEST(test_center_crop_rules)
{
    /* (size - crop) odd: the three libraries disagree. 269 - 224 = 45:
     * round(22.5) = 22 (to even), int(46 * 0.5) = 23, 45 // 2 = 22. */
    ck_assert_int_eq(sc_center_crop_offset(269, 224, SC_CROP_TORCHVISION), 22);
    ck_assert_int_eq(sc_center_crop_offset(269, 224, SC_CROP_HF_LEGACY), 23);
    ck_assert_int_eq(sc_center_crop_offset(269, 224, SC_CROP_HF), 22);
    /* 47: round(23.5) = 24 (to even), 24, 23. */
    ck_assert_int_eq(sc_center_crop_offset(271, 224, SC_CROP_TORCHVISION), 24);
    ck_assert_int_eq(sc_center_crop_offset(271, 224, SC_CROP_HF_LEGACY), 24);
    ck_assert_int_eq(sc_center_crop_offset(271, 224, SC_CROP_HF), 23);
    /* even differences agree */
    for (sc_crop_rule r = SC_CROP_TORCHVISION; r <= SC_CROP_HF_LEGACY; r++) {
        ck_assert_int_eq(sc_center_crop_offset(298, 224, r), 37);
        ck_assert_int_eq(sc_center_crop_offset(224, 224, r), 0);
    }
}
END_TEST

static sc_image grey_row(const uint8_t *v, int n)
{
    sc_image img = {0};
    img.width = n;
    img.height = 1;
    img.channels = 1;
    img.bits = 8;
    img.pixels = (uint8_t *)v;
    return img;
}

START_TEST(test_resize_bilinear_by_hand)
{
    /* 4 → 2 samples, bilinear. scale 2 widens the triangle to support 2.
     * Output 0: centre 1.0, inputs 0..2 at distances 0.25, 0.25, 0.75 (in
     * units of 2): weights 0.75, 0.75, 0.25 → /1.75 → 22-bit 1797559,
     * 1797559, 599186; (100·1797559 + 200·599186 + 2^21) >> 22 = 71.
     * Output 1: inputs 1..3 weights 599186, 1797559, 1797559 → 209. */
    const uint8_t row[4] = {0, 100, 200, 255};
    sc_image src = grey_row(row, 4), dst;
    sc_err err;
    ck_assert(sc_image_resize(&src, 2, 1, SC_RESAMPLE_BILINEAR, &dst, &err) == SC_OK);
    ck_assert_uint_eq(dst.pixels[0], 71);
    ck_assert_uint_eq(dst.pixels[1], 209);
    sc_image_free(&dst);
    /* The same size is the identity, also for bicubic. */
    ck_assert(sc_image_resize(&src, 4, 1, SC_RESAMPLE_BICUBIC, &dst, &err) == SC_OK);
    ck_assert(memcmp(dst.pixels, row, 4) == 0);
    sc_image_free(&dst);
    /* 16-bit images must be brought to 8 bits first. */
    src.bits = 16;
    ck_assert_int_eq(sc_image_resize(&src, 2, 1, SC_RESAMPLE_BILINEAR, &dst, &err), SC_EARG);
}
END_TEST

START_TEST(test_resize_rgba_premultiplied)
{
    /* A uniform (200, 100, 50, 128) image keeps its premultiplied value
     * through any resize, so the result is the premultiply/unpremultiply
     * round trip: 200 → (200·128 + 128 + 100) >> 8 = 100 → 255·100/128 = 199,
     * 100 → 50 → 99, 50 → 25 → 49; alpha stays 128. */
    uint8_t px[2 * 2 * 4];
    for (int i = 0; i < 4; i++) memcpy(px + 4 * i, (uint8_t[]){200, 100, 50, 128}, 4);
    sc_image src = {0}, dst;
    src.width = src.height = 2;
    src.channels = 4;
    src.bits = 8;
    src.pixels = px;
    sc_err err;
    ck_assert(sc_image_resize(&src, 3, 3, SC_RESAMPLE_BICUBIC, &dst, &err) == SC_OK);
    for (int i = 0; i < 9; i++) {
        ck_assert_uint_eq(dst.pixels[4 * i + 0], 199);
        ck_assert_uint_eq(dst.pixels[4 * i + 1], 99);
        ck_assert_uint_eq(dst.pixels[4 * i + 2], 49);
        ck_assert_uint_eq(dst.pixels[4 * i + 3], 128);
    }
    sc_image_free(&dst);
}
END_TEST

START_TEST(test_resize_palette_nearest)
{
    /* Pillow resizes palette images with NEAREST whatever is asked: 3 → 2
     * columns read x = 0.75 → 0 and 2.25 → 2. */
    uint8_t index[3] = {0, 1, 2}, pixels[9] = {10, 10, 10, 20, 20, 20, 30, 30, 30};
    sc_image src = {0}, dst;
    src.width = 3;
    src.height = 1;
    src.channels = 3;
    src.bits = 8;
    src.pixels = pixels;
    src.index = index;
    src.palette_size = 3;
    sc_err err;
    ck_assert(sc_image_resize(&src, 2, 1, SC_RESAMPLE_BICUBIC, &dst, &err) == SC_OK);
    ck_assert_ptr_nonnull(dst.index);
    ck_assert(dst.index[0] == 0 && dst.index[1] == 2);
    ck_assert(dst.pixels[0] == 10 && dst.pixels[3] == 30);
    sc_image_free(&dst);
}
END_TEST

START_TEST(test_resize_bilevel_nearest)
{
    /* A 1-bit image (Pillow mode 1) is resized with NEAREST too: 4 → 2
     * columns read x = 1 and 3. Bicubic would give grey levels. */
    const uint8_t row[4] = {0, 255, 0, 255};
    sc_image src = grey_row(row, 4), dst;
    src.bilevel = 1;
    sc_err err;
    ck_assert(sc_image_resize(&src, 2, 1, SC_RESAMPLE_BICUBIC, &dst, &err) == SC_OK);
    ck_assert(dst.pixels[0] == 255 && dst.pixels[1] == 255 && dst.bilevel);
    sc_image_free(&dst);
    src.bilevel = 0;
    ck_assert(sc_image_resize(&src, 2, 1, SC_RESAMPLE_BICUBIC, &dst, &err) == SC_OK);
    ck_assert(dst.pixels[0] > 0 && dst.pixels[0] < 255);
    sc_image_free(&dst);
}
END_TEST

START_TEST(test_convert_and_sixteen_bit_rule)
{
    /* Pillow's L of pure red: (19595·255 + 32768) >> 16 = 76; of white 255. */
    uint8_t rgb[6] = {255, 0, 0, 255, 255, 255};
    sc_image src = {0}, dst;
    src.width = 2;
    src.height = 1;
    src.channels = 3;
    src.bits = 8;
    src.pixels = rgb;
    sc_err err;
    ck_assert(sc_image_convert(&src, 1, &dst, &err) == SC_OK);
    ck_assert(dst.pixels[0] == 76 && dst.pixels[1] == 255);
    sc_image_free(&dst);
    ck_assert_int_eq(sc_image_convert(&src, 2, &dst, &err), SC_EARG);

    /* 16-bit grey: min-max stretch with rounding; (2000 - 1000)·255 / 2000
     * = 127.5 → 128. A constant image becomes 0. Colour keeps high bytes. */
    uint16_t g16[3] = {1000, 2000, 3000};
    uint8_t g8[3] = {3, 7, 11};
    sc_image grey = {0};
    grey.width = 3;
    grey.height = 1;
    grey.channels = 1;
    grey.bits = 16;
    grey.pixels = g8;
    grey.pixels16 = g16;
    ck_assert(sc_image_to_8bit(&grey, &dst, &err) == SC_OK);
    ck_assert(dst.bits == 8 && dst.pixels16 == NULL);
    ck_assert(dst.pixels[0] == 0 && dst.pixels[1] == 128 && dst.pixels[2] == 255);
    sc_image_free(&dst);
    g16[0] = g16[1] = g16[2] = 4095;
    ck_assert(sc_image_to_8bit(&grey, &dst, &err) == SC_OK);
    ck_assert(dst.pixels[0] == 0 && dst.pixels[2] == 0);
    sc_image_free(&dst);
}
END_TEST

START_TEST(test_sixteen_bit_radiograph_through_medclip)
{
    /* The 16-bit radiograph spans most of 0..65535; its min-max 8-bit
     * version is close to (not equal to) the 8-bit PNG of the same image,
     * which was made by >> 8. What MedCLIP's own code would do (clip every
     * value over 255 to 255) would give an almost white square. */
    sc_image img, u8;
    load_image("cxr_352x423_gray16.png", &img);
    sc_pipeline p;
    sc_err err;
    ck_assert(sc_pipeline_named("medclip", &p, &err) == SC_OK);
    ck_assert_msg(sc_pipeline_u8(&p, &img, &u8, &err) == SC_OK, "%s", err.msg);
    ck_assert(u8.width == 224 && u8.height == 224 && u8.channels == 1);
    sc_array ref;
    load_npy(PRE "medclip_processor/cxr_352x423_gray8_u8.npy", &ref);
    double sum = 0;
    for (int i = 0; i < 224 * 224; i++) sum += abs((int)u8.pixels[i] - ((uint8_t *)ref.data)[i]);
    ck_assert_msg(sum / (224 * 224) < 0.5, "mean difference %.2f levels from the 8-bit radiograph", sum / (224 * 224));
    sc_array_free(&ref);
    sc_image_free(&u8);
    sc_image_free(&img);
}
END_TEST

/* ---- pipelines from a model directory ------------------------------------- */

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_pipeline_for_model)
{
    sc_pipeline p;
    sc_err err;
    /* By model type, and at the model's own resolution. */
    const char *dir = sc_test_tmpdir();
    write_text(dir, "config.json", "{\"model_type\": \"medclip\", \"vision_config\": {\"image_size\": 56}}");
    ck_assert_msg(sc_pipeline_for_model(dir, NULL, &p, &err) == SC_OK, "%s", err.msg);
    ck_assert_str_eq(p.name, "medclip");
    ck_assert(p.channels == 1 && p.pad_square && p.size == 56 && sc_pipeline_side(&p) == 56);
    ck_assert_int_eq(sc_pipeline_for_model(sc_test_path("tests/golden/clip-tiny"), NULL, &p, &err), SC_OK);
    ck_assert(!strcmp(p.name, "clip") && sc_pipeline_side(&p) == 32);

    /* A Hugging Face preprocessor_config.json: MONET's statistics. */
    const char *hf = sc_test_tmpdir();
    write_text(hf, "preprocessor_config.json",
               "{\"crop_size\": {\"height\": 224, \"width\": 224}, \"do_center_crop\": true,"
               " \"do_normalize\": true, \"do_resize\": true, \"image_mean\": [0.485, 0.456, 0.406],"
               " \"image_std\": [0.229, 0.224, 0.225], \"resample\": 3, \"size\": {\"shortest_edge\": 224},"
               " \"rescale_factor\": 0.00392156862745098}");
    ck_assert_msg(sc_pipeline_for_model(hf, NULL, &p, &err) == SC_OK, "%s", err.msg);
    ck_assert(p.mean[0] == 0.485f && p.std[2] == 0.225f && p.size == 224 && p.crop == 224);
    ck_assert(p.resample == SC_RESAMPLE_BICUBIC && p.crop_rule == SC_CROP_HF && p.rescale == SC_RESCALE_MUL_F64);
    /* An explicit pipeline keeps its own crop and rescale rules. */
    ck_assert(sc_pipeline_for_model(hf, "clip", &p, &err) == SC_OK);
    ck_assert(p.crop_rule == SC_CROP_TORCHVISION && p.rescale == SC_RESCALE_DIV255 && p.mean[1] == 0.456f);

    write_text(hf, "preprocessor_config.json", "{\"resample\": 1}");
    ck_assert_int_eq(sc_pipeline_for_model(hf, NULL, &p, &err), SC_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "resample 1") != NULL, "%s", err.msg);
    write_text(hf, "preprocessor_config.json", "{\"image_mean\": [0.5, 0.5]}");
    ck_assert_int_eq(sc_pipeline_for_model(hf, NULL, &p, &err), SC_EFORMAT);
    write_text(hf, "preprocessor_config.json", "{\"image_mean\": [0.5,");
    ck_assert_int_eq(sc_pipeline_for_model(hf, NULL, &p, &err), SC_EFORMAT);
    ck_assert_int_eq(sc_pipeline_named("openclip", &p, &err), SC_EARG);
}
END_TEST

/* ---- the commands, end to end ---------------------------------------------- */

START_TEST(test_commands)
{
    const char *tmp = sc_test_tmpdir();
    char args[4096], out[512], index[512];
    snprintf(out, sizeof out, "%s/x.npy", tmp);
    snprintf(index, sizeof index, "%s/i.npy", tmp);
    snprintf(args, sizeof args, "decode %s --out %s --index %s",
             sc_test_path("tests/golden/io/images/lesion_97x131_palette32_trns.png"), out, index);
    ck_assert_int_eq(sc_test_run_scale(NULL, args), 0);
    sc_array got, ref;
    load_npy(PRE "../images/lesion_97x131_palette32_trns.npy", &ref);
    sc_err err;
    ck_assert(sc_npy_read(out, &got, &err) == SC_OK);
    ck_assert(got.dtype == SC_DT_U8 && got.ndim == 3 && got.shape[2] == 4 && memcmp(got.data, ref.data, ref.nbytes) == 0);
    sc_array_free(&got);
    sc_array_free(&ref);

    snprintf(args, sizeof args, "preprocess --pipeline medclip-eval %s %s --out %s",
             sc_test_path("tests/golden/io/images/lesion_17x9_rgb8.png"),
             sc_test_path("tests/golden/io/images/cxr_352x423_gray8.png"), out);
    ck_assert_int_eq(sc_test_run_scale(NULL, args), 0);
    ck_assert(sc_npy_read(out, &got, &err) == SC_OK);
    ck_assert(got.dtype == SC_DT_F32 && got.ndim == 4 && got.shape[0] == 2 && got.shape[1] == 1 && got.shape[3] == 224);
    load_npy(PRE "medclip_dataset/cxr_352x423_gray8.npy", &ref);
    sc_check_close("preprocess command", (float *)got.data + 224 * 224, ref.data, 224 * 224, 0, 0);
    sc_array_free(&got);
    sc_array_free(&ref);

    /* --crop-rule hf-legacy on the radiograph: CLIP's resize leaves 269
     * rows, and the legacy offset is 23 where torchvision's is 22 (see
     * test_center_crop_rules), so row y is torchvision's row y + 1. */
    snprintf(args, sizeof args, "preprocess --pipeline clip --crop-rule hf-legacy %s --out %s",
             sc_test_path("tests/golden/io/images/cxr_352x423_gray8.png"), out);
    ck_assert_int_eq(sc_test_run_scale(NULL, args), 0);
    ck_assert(sc_npy_read(out, &got, &err) == SC_OK);
    load_npy(PRE "clip/cxr_352x423_gray8.npy", &ref);
    ck_assert(got.ndim == 4 && got.shape[1] == 3 && got.shape[2] == 224);
    for (int c = 0; c < 3; c++)
        sc_check_close("crop one row lower", (float *)got.data + c * 224 * 224,
                       (float *)ref.data + c * 224 * 224 + 224, 223 * 224, 0, 0);
    ck_assert(memcmp(got.data, ref.data, 224 * sizeof(float)) != 0);
    sc_array_free(&got);
    sc_array_free(&ref);
    snprintf(args, sizeof args, "preprocess --crop-rule sideways x.png --out %s/y.npy", tmp);
    ck_assert_int_eq(sc_test_run_scale(NULL, args), 2);

    /* usage errors exit 2, failures 1, and no output file is left */
    snprintf(args, sizeof args, "preprocess --pipeline nope x.png --out %s/y.npy", tmp);
    ck_assert_int_eq(sc_test_run_scale(NULL, args), 2);
    ck_assert_int_eq(sc_test_run_scale(NULL, "decode"), 2);
    snprintf(args, sizeof args, "preprocess %s/missing.png --out %s/y.npy", tmp, tmp);
    ck_assert_int_eq(sc_test_run_scale(NULL, args), 1);
    snprintf(out, sizeof out, "%s/y.npy", tmp);
    FILE *f = fopen(out, "rb");
    ck_assert_ptr_null(f);
}
END_TEST

Suite *suite_preprocess(void)
{
    Suite *s = suite_create("preprocess");
    TCase *tc = tcase_create("fixtures");
    tcase_add_loop_test(tc, test_pipeline_fixtures, 0, N_INPUTS * 3);
    tcase_add_test(tc, test_clip_from_decoded_pixels);
    tcase_add_test(tc, test_monet_uses_imagenet_statistics);
    tcase_add_test(tc, test_sixteen_bit_radiograph_through_medclip);
    suite_add_tcase(s, tc);

    TCase *ops = tcase_create("resample");
    tcase_add_test(ops, test_center_crop_rules);
    tcase_add_test(ops, test_resize_bilinear_by_hand);
    tcase_add_test(ops, test_resize_rgba_premultiplied);
    tcase_add_test(ops, test_resize_palette_nearest);
    tcase_add_test(ops, test_resize_bilevel_nearest);
    tcase_add_test(ops, test_convert_and_sixteen_bit_rule);
    tcase_add_test(ops, test_pipeline_for_model);
    suite_add_tcase(s, ops);

    TCase *cmd = tcase_create("commands");
    tcase_add_test(cmd, test_commands);
    tcase_set_timeout(cmd, 30);
    suite_add_tcase(s, cmd);
    return s;
}
