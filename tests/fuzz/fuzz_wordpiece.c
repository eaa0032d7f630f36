/* fuzz_wordpiece.c — libFuzzer harness for the BERT WordPiece tokenizer:
 * texts against Bio_ClinicalBERT's vocabulary and vocab.txt files (see
 * fuzz_tok.h). */
#include "fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tok_wordpiece_one(data, size);
    return 0;
}
