/* fuzz_png.c — libFuzzer harness for the PNG decoder and writer.
 *
 * CRCs and the Adler-32 stop random mutations at the first chunk they
 * touch, so the harness helps the fuzzer past them (the checks themselves
 * are unit-tested in check_images.c). The first byte picks a mode:
 *   even: the rest is a PNG file; every chunk CRC is recomputed first.
 *   odd:  the rest is a header (width, height: 1 byte each; bit depth,
 *         colour type, interlace) and raw filtered scanlines, which the
 *         harness wraps in a valid PNG (stored zlib, a 256-entry palette),
 *         so the unfiltering and unpacking code sees arbitrary data.
 * A decoded image is then written with sc_png_encode and decoded again:
 * the samples must come back unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "scale.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Recompute the CRC of every whole chunk of a PNG in place. */
static void fix_crcs(uint8_t *p, size_t n)
{
    size_t at = 8;
    while (at + 12 <= n) {
        uint32_t len = (uint32_t)p[at] << 24 | (uint32_t)p[at + 1] << 16 | (uint32_t)p[at + 2] << 8 | p[at + 3];
        if (len > n - at - 12) break;
        put32(p + at + 8 + len, sc_crc32(0, p + at + 4, 4 + (size_t)len));
        at += 12 + (size_t)len;
    }
}

static size_t chunk(uint8_t *out, const char *type, const uint8_t *body, size_t n)
{
    put32(out, (uint32_t)n);
    memcpy(out + 4, type, 4);
    if (n) memcpy(out + 8, body, n);
    put32(out + 8 + n, sc_crc32(0, out + 4, 4 + n));
    return 12 + n;
}

/* A valid PNG around raw scanlines; returns its length (buf is large enough). */
static size_t synthesize(const uint8_t *h, const uint8_t *raw, size_t n, uint8_t *buf)
{
    size_t k = 0;
    memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    k = 8;
    uint8_t ihdr[13] = {0};
    put32(ihdr, 1u + h[0]);
    put32(ihdr + 4, 1u + h[1]);
    ihdr[8] = h[2];
    ihdr[9] = h[3];
    ihdr[12] = h[4] & 1;
    k += chunk(buf + k, "IHDR", ihdr, 13);
    uint8_t plte[768];
    for (int i = 0; i < 768; i++) plte[i] = (uint8_t)(i * 7);
    k += chunk(buf + k, "PLTE", plte, 768);
    k += chunk(buf + k, "tRNS", plte, 100);
    /* zlib with stored blocks around raw */
    uint8_t *z = malloc(n + 16 + 5 * (n / 65535 + 1));
    size_t zn = 0, at = 0;
    z[zn++] = 0x78;
    z[zn++] = 0x01;
    do {
        size_t m = n - at > 65535 ? 65535 : n - at;
        z[zn++] = at + m == n;
        z[zn++] = (uint8_t)m;
        z[zn++] = (uint8_t)(m >> 8);
        z[zn++] = (uint8_t)~m;
        z[zn++] = (uint8_t)(~m >> 8);
        if (m) memcpy(z + zn, raw + at, m);
        zn += m;
        at += m;
    } while (at < n);
    put32(z + zn, sc_adler32(1, raw, n));
    zn += 4;
    k += chunk(buf + k, "IDAT", z, zn);
    free(z);
    k += chunk(buf + k, "IEND", NULL, 0);
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t *png;
    size_t len;
    if (data[0] & 1) {
        if (size < 6) return 0;
        png = malloc(size + 2048);
        len = synthesize(data + 1, data + 6, size - 6, png);
    } else {
        len = size - 1;
        png = malloc(len ? len : 1);
        memcpy(png, data + 1, len);
        fix_crcs(png, len);
    }
    sc_image img, back;
    sc_err err;
    sc_status st = sc_png_decode(png, len, "fuzz.png", &img, &err);
    free(png);
    if (st != SC_OK) {
        if (img.pixels != NULL) abort(); /* failures leave the image empty */
        return 0;
    }
    size_t n = (size_t)img.width * (size_t)img.height * (size_t)img.channels;
    if (n <= (1u << 20)) {
        uint8_t *out;
        if (sc_png_encode(&img, &out, &len, &err) != SC_OK) abort();
        if (sc_png_decode(out, len, "roundtrip.png", &back, &err) != SC_OK) abort();
        if (back.width != img.width || back.height != img.height || back.channels != img.channels ||
            memcmp(back.pixels, img.pixels, n) != 0)
            abort();
        if (img.bits == 16 && memcmp(back.pixels16, img.pixels16, n * sizeof(uint16_t)) != 0) abort();
        sc_image_free(&back);
        free(out);
    }
    sc_image_free(&img);
    return 0;
}
