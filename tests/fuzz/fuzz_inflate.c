/* fuzz_inflate.c — libFuzzer harness for sc_inflate.
 *
 * The first byte picks the wrapper (raw, zlib, gzip); the rest is the
 * stream. The output cap is small so decompression bombs stay cheap: the
 * fuzzer looks for crashes, hangs and reads outside the input, and any
 * success must respect the cap.
 */
#include <stdlib.h>

#include "scale.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    sc_inflate_format fmt = (sc_inflate_format)(data[0] % 3);
    uint8_t *out = NULL;
    size_t out_len = 0;
    sc_err err;
    const size_t cap = 1 << 20;
    if (sc_inflate(data + 1, size - 1, fmt, cap, &out, &out_len, &err) == SC_OK) {
        if (out_len > cap) abort();
        free(out);
    } else if (out != NULL) {
        abort(); /* failures must not hand back a buffer */
    }
    return 0;
}
