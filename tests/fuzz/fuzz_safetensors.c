/* fuzz_safetensors.c — libFuzzer harness for safetensors files read through
 * sc_weights_parse; seeds are safetensors files. The work is in
 * formats_targets.h (shared with fuzz_zip.c and the regression replay). */
#include "formats_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_weights_one(data, size);
}
