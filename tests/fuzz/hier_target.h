/* hier_target.h — the fuzz target for the class-concept hierarchy loader
 * (loss.c section 1), shared by tests/fuzz/fuzz_hier.c and the Check
 * replay in tests/check_hier.c.
 *
 * Any bytes must either load or fail with one sentence naming the input;
 * never crash, hang or leak. What loads must hold the promises the loss
 * relies on: every combination points at a declared class and concept,
 * every class and concept has a combination, every combination has a
 * prompt, and an explanation can be written for each. */
#ifndef HIER_TARGET_H
#define HIER_TARGET_H

#include <stdint.h>
#include <string.h>

#include "scale.h"

/* Abort (which the fuzzer and Check both report) when cond is false. */
#define HIER_REQUIRE(cond)                                                     \
    do {                                                                       \
        if (!(cond)) sc__assert_fail(__FILE__, __LINE__, #cond, "fuzz property"); \
    } while (0)

static inline void hier_fuzz_check_task(const sc_hier_task *t)
{
    HIER_REQUIRE(t->n_classes >= 1 && t->n_classes <= SC_HIER_MAX_CLASSES);
    HIER_REQUIRE(t->n_concepts >= 1 && t->n_concepts <= SC_HIER_MAX_CONCEPTS);
    HIER_REQUIRE(t->n_combos >= 1 && t->n_combos <= SC_HIER_MAX_COMBOS);
    int class_used[SC_HIER_MAX_CLASSES] = {0}, concept_used[SC_HIER_MAX_CONCEPTS] = {0};
    for (int h = 0; h < t->n_combos; h++) {
        HIER_REQUIRE(t->combo_class[h] >= 0 && t->combo_class[h] < t->n_classes);
        HIER_REQUIRE(t->combo_concept[h] >= 0 && t->combo_concept[h] < t->n_concepts);
        HIER_REQUIRE(t->combo_prompt[h] != NULL);
        class_used[t->combo_class[h]] = concept_used[t->combo_concept[h]] = 1;
        char buf[256];
        HIER_REQUIRE(strlen(sc_hier_explain(t, h, buf, sizeof buf)) < sizeof buf);
    }
    for (int c = 0; c < t->n_classes; c++) HIER_REQUIRE(class_used[c] && t->classes[c].name[0]);
    for (int l = 0; l < t->n_concepts; l++) HIER_REQUIRE(concept_used[l] && t->concepts[l].phrase[0]);
}

static inline int fuzz_hier_one(const uint8_t *data, size_t size)
{
    sc_hier h;
    sc_err err = {{0}};
    sc_status st = sc_hier_parse(&h, (const char *)data, size, "fuzz.hier", &err);
    if (st == SC_OK) {
        HIER_REQUIRE(h.n_tasks >= 1 && h.n_tasks <= SC_HIER_MAX_TASKS);
        for (int k = 0; k < h.n_tasks; k++) {
            hier_fuzz_check_task(&h.tasks[k]);
            HIER_REQUIRE(sc_hier_task_find(&h, h.tasks[k].name) == &h.tasks[k]);
        }
        sc_hier_free(&h);
    } else {
        HIER_REQUIRE(strncmp(err.msg, "fuzz.hier", 9) == 0);
    }
    return 0;
}

#endif
