/* bench_images.c — decoding and preprocessing throughput (io.c 6–10).
 *
 *   bench op=png_encode w=... h=... bytes=... seconds=... mpix_per_s=...
 *   bench op=png_decode w=... h=... seconds=... mpix_per_s=... inflate_mb_per_s=...
 *   bench op=jpeg_decode file=... reps=... seconds=... mpix_per_s=...
 *   bench op=preprocess pipeline=... w=... h=... ms_per_image=...
 *
 * A dataset pass decodes and preprocesses every image once: Derm7p has about
 * 2000 images, PadChest-GR several thousand radiographs of 2-3 Mpixel. */
#include "bench_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <stdlib.h>
#include <string.h>

/* A smooth RGB image with some noise, like a photograph: (h, w, 3). */
static sc_image synthetic_photo(int w, int h)
{
    sc_image img = {0};
    img.width = w;
    img.height = h;
    img.channels = 3;
    img.bits = 8;
    img.pixels = malloc((size_t)w * (size_t)h * 3);
    sc_rng rng;
    sc_rng_seed(&rng, 7);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                img.pixels[((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)c] =
                    (uint8_t)((x * (c + 1) / 9 + y / 7 + (int)sc_rng_below(&rng, 6)) & 255);
    return img;
}

static void bench_png(int w, int h)
{
    sc_image img = synthetic_photo(w, h), back;
    sc_err err;
    uint8_t *png;
    size_t len;
    double t0 = bench_now();
    sc_status st = sc_png_encode(&img, &png, &len, &err);
    double t_enc = bench_now() - t0;
    if (st != SC_OK) {
        printf("bench op=png_encode error=\"%s\"\n", err.msg);
        free(img.pixels);
        return;
    }
    t0 = bench_now();
    st = sc_png_decode(png, len, "bench.png", &back, &err);
    double t_dec = bench_now() - t0;
    double mpix = (double)w * h / 1e6;
    printf("bench op=png_encode w=%d h=%d bytes=%zu seconds=%.3f mpix_per_s=%.1f\n", w, h, len, t_enc, mpix / t_enc);
    if (st == SC_OK)
        printf("bench op=png_decode w=%d h=%d seconds=%.3f mpix_per_s=%.1f inflate_mb_per_s=%.1f\n", w, h, t_dec,
               mpix / t_dec, (double)w * h * 3 / 1e6 / t_dec);
    fflush(stdout);
    sc_image_free(&back);
    free(png);
    free(img.pixels);
}

static void bench_jpeg(const char *rel, int reps)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", SC_TEST_ROOT, rel);
    uint8_t *data;
    size_t len;
    sc_err err;
    if (sc_read_file(path, 1 << 26, &data, &len, &err) != SC_OK) {
        printf("bench op=jpeg_decode error=\"%s\"\n", err.msg);
        return;
    }
    sc_image img;
    double pixels = 0, t0 = bench_now();
    for (int r = 0; r < reps; r++) {
        if (sc_jpeg_decode(data, len, path, &img, &err) != SC_OK) break;
        pixels += (double)img.width * img.height;
        sc_image_free(&img);
    }
    double t = bench_now() - t0;
    printf("bench op=jpeg_decode file=%s reps=%d seconds=%.3f mpix_per_s=%.1f\n", strrchr(rel, '/') + 1, reps, t,
           pixels / 1e6 / t);
    fflush(stdout);
    free(data);
}

static void bench_preprocess(const char *name, int w, int h)
{
    sc_image img = synthetic_photo(w, h);
    sc_pipeline p;
    sc_err err;
    sc_pipeline_named(name, &p, &err);
    int side = sc_pipeline_side(&p);
    float *out = malloc(sizeof(float) * 3 * (size_t)side * (size_t)side);
    int reps = 5;
    double t0 = bench_now();
    for (int r = 0; r < reps; r++) sc_pipeline_run(&p, &img, out, &err);
    double t = bench_now() - t0;
    printf("bench op=preprocess pipeline=%s w=%d h=%d ms_per_image=%.2f\n", name, w, h, 1e3 * t / reps);
    fflush(stdout);
    free(out);
    free(img.pixels);
}

void bench_images(void)
{
    bench_png(2048, 2048);
    bench_jpeg("tests/golden/io/images/lesion_640x480_baseline_420_q90.jpg", 50);
    bench_jpeg("tests/golden/io/images/lesion_256x192_progressive_444_q90.jpg", 200);
    bench_preprocess("clip", 1024, 768);
    bench_preprocess("medclip", 2048, 2500);
    bench_preprocess("medclip-eval", 2048, 2500);
}
