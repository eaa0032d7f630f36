/* fuzz_bpe.c — libFuzzer harness for the CLIP BPE tokenizer: texts against
 * the golden vocabulary, merges files and vocab.json (see fuzz_tok.h). */
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tok_bpe_one(data, size);
    return 0;
}
