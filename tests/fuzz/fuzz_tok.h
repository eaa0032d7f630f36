/* fuzz_tok.h — the bodies of the tokenizer fuzz harnesses, shared by
 * tests/fuzz/fuzz_{bpe,wordpiece}.c (libFuzzer) and check_tokenizers.c,
 * which replays the saved crash inputs of tests/fuzz/regress/ through the
 * very same code.
 *
 * The first byte of an input chooses what is fuzzed; the rest is the data:
 *   BPE        0–3  a text for the CLIP tokenizer (golden vocabulary, loaded
 *                   once), with max_length 77, 2, 5 or 300;
 *              4    a text explained (every merge traced to /dev/null);
 *              5    a merges file; when it loads, the file itself is also
 *                   encoded as a text;
 *              6    a merges file and a vocab.json, split at the first NUL.
 *   WordPiece  0–3  a text for Bio_ClinicalBERT's vocabulary, lower case or
 *                   cased, max_length 77 or 3;
 *              4    a text explained;
 *              5    a vocab.txt; when it loads, the file is also encoded.
 * Paths are relative to FUZZ_TOK_ROOT (the repository; `make fuzz` runs
 * there). Loading a golden vocabulary must succeed, or the harness aborts.
 */
#ifndef FUZZ_TOK_H
#define FUZZ_TOK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scale.h"

#ifndef FUZZ_TOK_ROOT
#ifdef SC_TEST_ROOT
#define FUZZ_TOK_ROOT SC_TEST_ROOT
#else
#define FUZZ_TOK_ROOT "."
#endif
#endif

static sc_tokenizer *fuzz_tok_golden[2][4]; /* [bpe, wordpiece][mode 0..3] */
static FILE *fuzz_tok_null;

static sc_tokenizer *fuzz_tok_get(int wordpiece, int mode)
{
    sc_tokenizer **slot = &fuzz_tok_golden[wordpiece][mode];
    if (*slot) return *slot;
    static const int bpe_length[4] = {77, 2, 5, 300};
    sc_tok_options opt = sc_tok_defaults();
    sc_err err;
    sc_status s;
    if (wordpiece) {
        opt.lower_case = mode % 2 == 0;
        opt.max_length = mode < 2 ? 77 : 3;
        s = sc_tokenizer_load_wordpiece(slot, FUZZ_TOK_ROOT "/tests/golden/io/tokenizer-bert/vocab.txt", NULL,
                                        &opt, &err);
    } else {
        opt.max_length = bpe_length[mode];
        s = sc_tokenizer_load_bpe(slot, FUZZ_TOK_ROOT "/tests/golden/io/tokenizer-clip/merges.txt", NULL, &opt,
                                  &err);
    }
    if (s) {
        fprintf(stderr, "fuzz_tok: %s\n", err.msg);
        abort();
    }
    return *slot;
}

/* Encode data as one text; any status is fine, a crash is not. */
static void fuzz_tok_encode(sc_tokenizer *tok, const uint8_t *data, size_t size)
{
    int T = sc_tokenizer_max_length(tok);
    int64_t *ids = malloc((size_t)T * sizeof *ids), *mask = malloc((size_t)T * sizeof *mask);
    sc_err err;
    int n = 0, trunc = 0;
    sc_status s = ids && mask ? sc_tokenizer_encode(tok, (const char *)data, size, ids, mask, &n, &trunc, &err)
                              : SC_ENOMEM;
    if (s == SC_OK) {
        /* Invariants of every row: a begin token, an end token, ids in range. */
        if (n < 2 || n > T || mask[0] != 1 || mask[n - 1] != 1 || (n < T && mask[n] != 0)) abort();
        for (int t = 0; t < T; t++)
            if (ids[t] < 0 || ids[t] >= sc_tokenizer_vocab_size(tok)) abort();
    }
    free(ids);
    free(mask);
}

static void fuzz_tok_explain(sc_tokenizer *tok, const uint8_t *data, size_t size)
{
    sc_err err;
    if (!fuzz_tok_null) fuzz_tok_null = fopen("/dev/null", "w");
    if (fuzz_tok_null) sc_tokenizer_explain(tok, (const char *)data, size, fuzz_tok_null, &err);
}

static void fuzz_tok_bpe_one(const uint8_t *data, size_t size)
{
    if (size == 0) return;
    int mode = data[0] % 7;
    data++;
    size--;
    sc_err err;
    sc_tokenizer *tok = NULL;
    if (mode < 4) {
        fuzz_tok_encode(fuzz_tok_get(0, mode), data, size);
    } else if (mode == 4) {
        fuzz_tok_explain(fuzz_tok_get(0, 0), data, size);
    } else if (mode == 5) {
        if (sc_tokenizer_parse_bpe(&tok, (const char *)data, size, -1, NULL, "fuzz", NULL, &err) == SC_OK)
            fuzz_tok_encode(tok, data, size);
    } else {
        const uint8_t *nul = memchr(data, 0, size);
        size_t merges_len = nul ? (size_t)(nul - data) : size;
        sc_json_doc doc;
        const char *json = nul ? (const char *)nul + 1 : "";
        size_t json_len = nul ? size - merges_len - 1 : 0;
        if (sc_json_parse(&doc, json, json_len, "fuzz.json", &err) == SC_OK) {
            sc_status s = sc_tokenizer_parse_bpe(&tok, (const char *)data, merges_len, -1, doc.root, "fuzz",
                                                 NULL, &err);
            if (s == SC_OK) fuzz_tok_encode(tok, data, merges_len);
            sc_json_free(&doc);
        }
    }
    sc_tokenizer_free(tok);
}

static void fuzz_tok_wordpiece_one(const uint8_t *data, size_t size)
{
    if (size == 0) return;
    int mode = data[0] % 6;
    data++;
    size--;
    sc_err err;
    sc_tokenizer *tok = NULL;
    if (mode < 4) {
        fuzz_tok_encode(fuzz_tok_get(1, mode), data, size);
    } else if (mode == 4) {
        fuzz_tok_explain(fuzz_tok_get(1, 0), data, size);
    } else if (sc_tokenizer_parse_wordpiece(&tok, (const char *)data, size, "fuzz", NULL, &err) == SC_OK) {
        fuzz_tok_encode(tok, data, size);
    }
    sc_tokenizer_free(tok);
}

static void fuzz_tok_cleanup(void)
{
    for (int k = 0; k < 2; k++)
        for (int m = 0; m < 4; m++) {
            sc_tokenizer_free(fuzz_tok_golden[k][m]);
            fuzz_tok_golden[k][m] = NULL;
        }
    if (fuzz_tok_null) fclose(fuzz_tok_null);
    fuzz_tok_null = NULL;
}

#endif
