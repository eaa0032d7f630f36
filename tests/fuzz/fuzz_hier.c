/* fuzz_hier.c — libFuzzer harness for the class-concept hierarchy loader
 * (loss.c section 1); the work is in hier_target.h, which the Check tests
 * also use to replay the seeds and saved crashes. */
#include "hier_target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_hier_one(data, size);
}
