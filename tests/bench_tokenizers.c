/* bench_tokenizers.c — how fast prompts become ids: loading each kind of
 * tokenizer, then encoding a batch of prompts built from the paper's
 * dermatology template (so the BPE word cache sees realistic reuse) and a
 * batch of distinct words (so it does not). */
#include "bench_util.h"

#include <stdlib.h>
#include <string.h>

#define BENCH_PROMPTS 10000

static const char *const concepts[] = {
    "diffuse regular pigmentation", "atypical pigment network", "blue whitish veil", "irregular streaks",
    "regular dots and globules", "regression structures", "arborizing vessels", "milia-like cysts"};
static const char *const classes[] = {"melanoma", "nevus", "basal cell carcinoma", "seborrheic keratosis"};

static void bench_one(const char *label, const char *dir, sc_tok_options *opt, char **texts, int n)
{
    sc_err err;
    sc_tokenizer *tok;
    double t0 = bench_now();
    if (sc_tokenizer_load(&tok, dir, opt, &err)) {
        printf("bench tokenizer=%s error=\"%s\"\n", label, err.msg);
        return;
    }
    double t1 = bench_now();
    int64_t T = sc_tokenizer_max_length(tok);
    int64_t *ids = malloc((size_t)n * (size_t)T * sizeof *ids);
    if (ids && sc_tokenizer_encode_batch(tok, (const char *const *)texts, n, ids, NULL, &err) == SC_OK) {
        double t2 = bench_now();
        printf("bench tokenizer=%s load_ms=%.1f prompts=%d encode_ms=%.1f prompts_per_s=%.0f\n", label,
               1e3 * (t1 - t0), n, 1e3 * (t2 - t1), n / (t2 - t1));
    }
    free(ids);
    sc_tokenizer_free(tok);
}

void bench_tokenizers(void)
{
    char **prompts = malloc(BENCH_PROMPTS * sizeof *prompts), **words = malloc(BENCH_PROMPTS * sizeof *words);
    for (int i = 0; i < BENCH_PROMPTS; i++) {
        prompts[i] = malloc(160);
        snprintf(prompts[i], 160, "A photo of a skin lesion with %s, which indicates a %s.", concepts[i % 8],
                 classes[i / 8 % 4]);
        /* Distinct pseudo-words: every one misses the cache. */
        words[i] = malloc(64);
        unsigned x = 2654435761u * (unsigned)(i + 1);
        int k = 0;
        for (int w = 0; w < 6; w++, x = x * 1103515245u + 12345u) {
            for (int c = 0; c < 7; c++) words[i][k++] = (char)('a' + (x >> (3 * c)) % 26);
            words[i][k++] = ' ';
        }
        words[i][k - 1] = 0;
    }
    sc_tok_options opt = sc_tok_defaults();
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/golden/io/tokenizer-clip", SC_TEST_ROOT);
    bench_one("clip-template", path, &opt, prompts, BENCH_PROMPTS);
    bench_one("clip-distinct-words", path, &opt, words, BENCH_PROMPTS);
    snprintf(path, sizeof path, "%s/tests/golden/io/tokenizer-bert", SC_TEST_ROOT);
    bench_one("bert-template", path, &opt, prompts, BENCH_PROMPTS);
    bench_one("bert-distinct-words", path, &opt, words, BENCH_PROMPTS);
    for (int i = 0; i < BENCH_PROMPTS; i++) {
        free(prompts[i]);
        free(words[i]);
    }
    free(prompts);
    free(words);
}
