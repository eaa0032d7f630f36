/* check_fuzz_formats.c — replays the inputs of the format fuzzers (JSON,
 * .npy, safetensors, PyTorch zip): every file under tests/fuzz/regress/NAME/
 * (inputs that once crashed a harness, kept after the fix) and the seed
 * corpora under tests/fuzz/corpus/NAME/, through the same code the
 * harnesses run (tests/fuzz/formats_targets.h). Under `make asan` this is
 * the fuzzers' memory checking, replayed on every commit. */
#include <stdio.h>

#include "check_util.h"
#include "fuzz/formats_targets.h"

/* Run `target` on every regular file of tests/fuzz/DIR/NAME/; returns the count. */
static int replay(const char *dir, const char *name, int (*target)(const uint8_t *, size_t))
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fuzz/%s/%s", dir, name);
    return sc_test_replay_dir(rel, target, 0);
}

static const struct {
    const char *name;
    int (*target)(const uint8_t *, size_t);
} harnesses[] = {
    {"json", fuzz_json_one},
    {"npy", fuzz_npy_one},
    {"safetensors", fuzz_weights_one},
    {"zip", fuzz_weights_one},
};

START_TEST(test_fuzz_regressions_replay)
{
    for (size_t i = 0; i < sizeof harnesses / sizeof harnesses[0]; i++)
        replay("regress", harnesses[i].name, harnesses[i].target);
}
END_TEST

START_TEST(test_fuzz_seeds_replay)
{
    for (size_t i = 0; i < sizeof harnesses / sizeof harnesses[0]; i++)
        ck_assert_msg(replay("corpus", harnesses[i].name, harnesses[i].target) > 0, "no seeds for fuzz_%s",
                      harnesses[i].name);
}
END_TEST

Suite *suite_fuzz_formats(void)
{
    Suite *s = suite_create("fuzz_formats");
    TCase *tc = tcase_create("fuzz_formats");
    tcase_add_test(tc, test_fuzz_regressions_replay);
    tcase_add_test(tc, test_fuzz_seeds_replay);
    suite_add_tcase(s, tc);
    return s;
}
