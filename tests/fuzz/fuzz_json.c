/* fuzz_json.c — libFuzzer harness for the json reader (io.c); the work is in
 * formats_targets.h, which the Check tests also use to replay regressions. */
#include "formats_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_json_one(data, size);
}
