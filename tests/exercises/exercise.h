/* exercise.h — what an exercise program of book/exercises.md defines.
 *
 * Exercises that ask for NEW code (a function or a file that does not
 * exist yet) are checked by a program tests/exercises/NAME.c, built only by
 * `make exercise NAME=...`, never by `make check`. The student's function
 * is declared weak in the program, so the program links whether or not it
 * has been written; while it is missing, exercise_missing() says so and
 * the program reports the exercise as skipped instead of failing to build.
 *
 * `make exercise NAME=... SOLUTION=1` links tests/exercises/solutions/NAME.c
 * (the reference answer) instead, to show that the checks pass for a
 * correct answer.
 */
#ifndef EXERCISE_H
#define EXERCISE_H

#include <check.h>

/* The exercise's name, as in book/exercises.md. */
extern const char exercise_name[];
/* NULL when the answer exists; else one sentence saying what to write. */
const char *exercise_missing(void);
/* The checks a correct answer passes. */
Suite *exercise_suite(void);

#endif
