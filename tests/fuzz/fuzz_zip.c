/* fuzz_zip.c — libFuzzer harness for PyTorch zip checkpoints (the zip reader
 * and the pickle machine) read through sc_weights_parse; seeds are small
 * torch.save archives. The work is in formats_targets.h. */
#include "formats_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_weights_one(data, size);
}
