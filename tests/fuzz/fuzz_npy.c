/* fuzz_npy.c — libFuzzer harness for the npy reader (io.c); the work is in
 * formats_targets.h, which the Check tests also use to replay regressions. */
#include "formats_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_npy_one(data, size);
}
