/* exercise_main.c — the runner of one exercise program (see exercise.h).
 * Exit status: 0 when every check passed or the answer is not written yet
 * (skipped, with a message saying what to write), 1 when a check failed. */
#include <stdio.h>
#include <stdlib.h>

#include "exercise.h"

int main(void)
{
    const char *missing = exercise_missing();
    if (missing) {
        printf("exercise %s: skipped, nothing to check yet: %s\n", exercise_name, missing);
        printf("(book/exercises.md#%s says what to write)\n", exercise_name);
        return EXIT_SUCCESS;
    }
    SRunner *sr = srunner_create(exercise_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    printf("exercise %s: %s\n", exercise_name, failed ? "not yet right" : "passed");
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
