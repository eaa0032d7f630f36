/* fuzz_jpeg.c — libFuzzer harness for the JPEG decoder.
 *
 * Looks for crashes, hangs, leaks and reads outside the input; a failure
 * must leave the image empty.
 */
#include <stdlib.h>

#include "scale.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sc_image img;
    sc_err err;
    if (sc_jpeg_decode(data, size, "fuzz.jpg", &img, &err) == SC_OK) {
        if (!img.pixels || img.width < 1 || img.height < 1) abort();
        sc_image_free(&img);
    } else if (img.pixels != NULL) {
        abort();
    }
    return 0;
}
