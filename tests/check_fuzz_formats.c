/* check_fuzz_formats.c — replays the inputs of the format fuzzers (JSON,
 * .npy, safetensors, PyTorch zip): every file under tests/fuzz/regress/NAME/
 * (inputs that once crashed a harness, kept after the fix) and the seed
 * corpora under tests/fuzz/corpus/NAME/, through the same code the
 * harnesses run (tests/fuzz/formats_targets.h). Under `make asan` this is
 * the fuzzers' memory checking, replayed on every commit. */
#define _POSIX_C_SOURCE 200809L /* symlink, unlink, opendir */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "fuzz/formats_targets.h"

/* Run `target` on every regular file of tests/fuzz/DIR/NAME/; returns the count. */
static int replay(const char *dir, const char *name, int (*target)(const uint8_t *, size_t))
{
    char rel[256], path[2048];
    snprintf(rel, sizeof rel, "tests/fuzz/%s/%s", dir, name);
    const char *root = sc_test_path(rel);
    char root_copy[1024];
    snprintf(root_copy, sizeof root_copy, "%s", root);
    DIR *d = opendir(root_copy);
    if (!d) return 0; /* no regressions recorded for this harness */
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", root_copy, e->d_name);
        uint8_t *bytes;
        size_t len;
        sc_err err;
        if (sc_read_file(path, (size_t)1 << 24, &bytes, &len, &err) != SC_OK) continue; /* a directory */
        /* A copy of exactly len bytes, so ASan sees reads past the end. */
        uint8_t *exact = malloc(len ? len : 1);
        memcpy(exact, bytes, len);
        free(bytes);
        target(exact, len);
        free(exact);
        n++;
    }
    closedir(d);
    return n;
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
