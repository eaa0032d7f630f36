/* new_hierarchy.c — checks the exercise new-hierarchy (book/exercises.md).
 *
 * The student writes tests/exercises/chest.hier: one multi-label task
 * "three findings" with the classes atelectasis, consolidation and pleural
 * effusion; atelectasis and consolidation each in the left lower lobe and
 * the right lower lobe, pleural effusion in the left pleural space (the
 * concept named "left pleural"), five combinations in that order. */
#include <stdio.h>

#include "../check_util.h"
#include "exercise.h"

/* Defined by the reference answer only (SOLUTION=1). */
const char *exercise_answer_path(void);
#pragma weak exercise_answer_path

const char exercise_name[] = "new-hierarchy";

static const char *answer(void)
{
    return sc_test_path(exercise_answer_path ? exercise_answer_path() : "tests/exercises/chest.hier");
}

const char *exercise_missing(void)
{
    FILE *f = fopen(answer(), "r");
    if (!f) return "tests/exercises/chest.hier does not exist yet";
    fclose(f);
    return NULL;
}

START_TEST(test_the_file_loads_as_asked)
{
    sc_hier h;
    sc_err err;
    ck_assert_msg(sc_hier_load(&h, answer(), &err) == SC_OK, "%s", err.msg);
    const sc_hier_task *t = sc_hier_task_find(&h, "three findings");
    ck_assert_msg(t != NULL, "no task named 'three findings'");
    ck_assert_msg(t->multilabel, "an X-ray may show several findings: the task must be multi-label");
    ck_assert_int_eq(t->n_classes, 3);
    ck_assert_int_eq(t->n_concepts, 3);
    ck_assert_int_eq(t->n_combos, 5);
    /* The combinations in the order asked for. */
    ck_assert_int_eq(sc_hier_combo_find(t, "atelectasis", "left lower lobe"), 0);
    ck_assert_int_eq(sc_hier_combo_find(t, "atelectasis", "right lower lobe"), 1);
    ck_assert_int_eq(sc_hier_combo_find(t, "consolidation", "left lower lobe"), 2);
    ck_assert_int_eq(sc_hier_combo_find(t, "consolidation", "right lower lobe"), 3);
    ck_assert_int_eq(sc_hier_combo_find(t, "pleural effusion", "left pleural"), 4);
    /* |C_l| = 2 for the lobes: the concept alone no longer names a
     * combination, while "left pleural" still does. */
    ck_assert_int_eq(sc_hier_combo_find(t, NULL, "left lower lobe"), -1);
    ck_assert_int_eq(sc_hier_combo_find(t, NULL, "left pleural"), 4);
    /* C_l and L_c as the arrays give them. */
    ck_assert_int_eq(t->combo_class[3], 1);
    ck_assert_int_eq(t->combo_concept[3], t->combo_concept[1]);
    sc_hier_free(&h);
}
END_TEST

Suite *exercise_suite(void)
{
    Suite *s = suite_create("new-hierarchy");
    TCase *tc = tcase_create("hier");
    tcase_add_test(tc, test_the_file_loads_as_asked);
    suite_add_tcase(s, tc);
    return s;
}
