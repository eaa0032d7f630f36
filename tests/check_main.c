/* check_main.c — the test runner.
 *
 * Every `Suite *suite_NAME(void)` in tests/check_*.c is listed in the
 * generated build/suites.h and run here. Select with Check's own
 * variables: CK_RUN_SUITE=tensor, CK_RUN_CASE=layernorm, CK_TAGS=slow,
 * CK_EXCLUDE_TAGS=slow. The exit status is non-zero when any check fails —
 * unlike llm.c's test, this one can fail CI.
 */
#include <check.h>
#include <stdlib.h>

#define SUITE(name) Suite *name(void);
#include "suites.h"
#undef SUITE

static Suite *(*const all_suites[])(void) = {
#define SUITE(name) name,
#include "suites.h"
#undef SUITE
};

int main(void)
{
    SRunner *sr = srunner_create(NULL);
    for (size_t i = 0; i < sizeof all_suites / sizeof all_suites[0]; i++)
        srunner_add_suite(sr, all_suites[i]());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
