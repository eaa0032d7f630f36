/* check_hier.c — the class-concept hierarchy files (loss.c section 1):
 * the two shipped files against the paper's tables, and every loader error
 * naming its file and line. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "fuzz/hier_target.h"
#include "golden_util.h"

static void load(sc_hier *h, const char *rel)
{
    sc_err err;
    sc_status st = sc_hier_load(h, sc_test_path(rel), &err);
    ck_assert_msg(st == SC_OK, "%s", err.msg);
}

/* Derm7p: seven criteria, each split by the 7-point scoring rule. */
START_TEST(test_derm7p_file)
{
    sc_hier h;
    load(&h, "data/derm7p.hier");
    ck_assert_int_eq(h.n_tasks, 7);
    /* criterion, meta.csv column, number of values, values scoring > 0 */
    static const struct {
        const char *task, *column;
        int n_concepts, n_melanoma;
    } want[7] = {
        {"pigment network", "pigment_network", 3, 1}, {"streaks", "streaks", 3, 1},
        {"pigmentation", "pigmentation", 5, 2},       {"regression structures", "regression_structures", 4, 3},
        {"dots and globules", "dots_and_globules", 3, 1}, {"blue whitish veil", "blue_whitish_veil", 2, 1},
        {"vascular structures", "vascular_structures", 8, 2},
    };
    for (int i = 0; i < 7; i++) {
        const sc_hier_task *t = sc_hier_task_find(&h, want[i].task);
        ck_assert_msg(t != NULL, "task %s missing", want[i].task);
        ck_assert_str_eq(t->column, want[i].column);
        ck_assert_int_eq(t->n_classes, 2);
        ck_assert_int_eq(t->n_concepts, want[i].n_concepts);
        ck_assert_int_eq(t->n_combos, want[i].n_concepts); /* each value in one class */
        ck_assert_int_eq(t->multilabel, 0);
        int n_mel = 0;
        for (int k = 0; k < t->n_combos; k++) n_mel += t->combo_class[k] == 1;
        ck_assert_int_eq(n_mel, want[i].n_melanoma);
        ck_assert_str_eq(t->classes[1].name, "melanoma-indicative");
    }
    /* Table 1: pigmentation, in the table's order; the same structure as
     * the golden loss case single-rows (CC = 0 0 0 1 1, CL = 0 1 2 3 4). */
    const sc_hier_task *pig = sc_hier_task_find(&h, "pigmentation");
    const int cc[5] = {0, 0, 0, 1, 1}, cl[5] = {0, 1, 2, 3, 4};
    ck_assert_mem_eq(pig->combo_class, cc, sizeof cc);
    ck_assert_mem_eq(pig->combo_concept, cl, sizeof cl);
    ck_assert_str_eq(pig->concepts[4].name, "diffuse irregular");
    ck_assert_str_eq(pig->combo_prompt[4],
                     "A photo of a skin lesion with diffuse irregular pigmentation, which indicates a melanoma.");
    char buf[256];
    ck_assert_str_eq(sc_hier_explain(pig, 4, buf, sizeof buf), "melanoma-indicative: diffuse irregular pigmentation");
    /* Dataset values find their combination without the class. */
    ck_assert_int_eq(sc_hier_combo_find(pig, NULL, "localized irregular"), 3);
    ck_assert_int_eq(sc_hier_combo_find(pig, "benign-indicative", "localized irregular"), -1);
    ck_assert_int_eq(sc_hier_combo_find(pig, NULL, "no such value"), -1);
    const sc_hier_task *bwv = sc_hier_task_find(&h, "blue whitish veil");
    ck_assert_str_eq(bwv->combo_prompt[1], "A photo of a skin lesion with a blue whitish veil, which indicates a melanoma.");
    sc_hier_free(&h);
}
END_TEST

/* PadChest-GR: the paper's tree, 4 classes and 12 combinations, with the
 * structure of the golden loss case multi-cross. */
START_TEST(test_padchest_file)
{
    sc_hier h;
    load(&h, "data/padchest-gr.hier");
    ck_assert_int_eq(h.n_tasks, 1);
    const sc_hier_task *t = &h.tasks[0];
    ck_assert_int_eq(t->multilabel, 1);
    ck_assert_int_eq(t->n_classes, 4);
    ck_assert_int_eq(t->n_concepts, 10);
    ck_assert_int_eq(t->n_combos, 12);
    const int cc[12] = {0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 3, 3};
    const int cl[12] = {0, 1, 2, 3, 0, 2, 4, 5, 6, 7, 8, 9};
    ck_assert_mem_eq(t->combo_class, cc, sizeof cc);
    ck_assert_mem_eq(t->combo_concept, cl, sizeof cl);
    /* "left lower lobe" belongs to two classes, so C_l has two members and
     * the concept alone does not name a combination. */
    ck_assert_int_eq(sc_hier_combo_find(t, NULL, "left lower lobe"), -1);
    ck_assert_int_eq(sc_hier_combo_find(t, "consolidation", "left lower lobe"), 4);
    ck_assert_str_eq(t->combo_prompt[8], "pleural effusion in the left costophrenic angle.");
    char buf[256];
    ck_assert_str_eq(sc_hier_explain(t, 1, buf, sizeof buf), "atelectasis: retrocardiac");
    sc_hier_free(&h);
}
END_TEST

/* `scale hier --prompts` gives the text encoder one prompt per line, in
 * combination order. */
START_TEST(test_hier_command)
{
    char out[8192];
    scale_run(".", "hier data/padchest-gr.hier --prompts", out, sizeof out);
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    ck_assert_int_eq(lines, 12);
    ck_assert_msg(!strncmp(out, "atelectasis in the left lower lobe.\n", 36), "%s", out);
    scale_run(".", "hier data/derm7p.hier --task 'blue whitish veil'", out, sizeof out);
    ck_assert_str_eq(out, "task blue whitish veil: 2 classes, 2 concepts, 2 combinations\n"
                          "  h=0 class=0 (benign-indicative) concept=0 (absent): A photo of a skin lesion with absent "
                          "blue whitish veil, which indicates a nevus.\n"
                          "  h=1 class=1 (melanoma-indicative) concept=1 (present): A photo of a skin lesion with a "
                          "blue whitish veil, which indicates a melanoma.\n");
}
END_TEST

/* What the datasets and the zero-shot baselines read: class prompts,
 * ensembles, the "none" and reference prompts, and raw-string aliases. */
static const char prompts_doc[] =
    "scale-hier 1\n"
    "template {concept} {class}.\n"
    "class-template All {class}.\n"
    "ensemble Ens {concept} of {class} in {task}.\n"
    "reference Ref one\n"
    "task t\n"
    "class a | A\n"
    "class b\n"
    "concept x | X\n"
    "concept y\n"
    "combo a | x\n"
    "combo b | y\n"
    "combo b | x\n"
    "class-alias a | Raw A\n"
    "concept-alias y | up + left\n"
    "concept-alias x | ex\n"
    "task u\n"
    "class-template U {class} of {task}.\n"
    "class-template U2 {class}.\n"
    "class c\n"
    "concept z\n"
    "combo c | z\n"
    "none Nothing at all.\n"
    "reference Ref two\n";

START_TEST(test_prompt_lists)
{
    sc_hier h;
    sc_err err;
    ck_assert_msg(sc_hier_parse(&h, prompts_doc, strlen(prompts_doc), "p.hier", &err) == SC_OK, "%s", err.msg);
    const sc_hier_task *t = &h.tasks[0], *u = &h.tasks[1];
    /* ensemble (n_ensemble, n_combos), phrases filled in */
    ck_assert_int_eq(t->n_ensemble, 1);
    ck_assert_str_eq(t->ensemble_prompt[0], "Ens X of A in t.");
    ck_assert_str_eq(t->ensemble_prompt[2], "Ens X of b in t.");
    /* the file's class template, then a task's own list replacing it */
    ck_assert_int_eq(t->n_class_templates, 1);
    ck_assert_str_eq(t->class_prompt[0], "All A.");
    ck_assert_str_eq(t->class_prompt[1], "All b.");
    ck_assert_int_eq(u->n_class_templates, 2);
    ck_assert_str_eq(u->class_prompt[0], "U c of u.");
    ck_assert_str_eq(u->class_prompt[1], "U2 c.");
    ck_assert_int_eq(u->n_ensemble, 1); /* the file's ensemble reaches every task */
    ck_assert_str_eq(h.none_prompt, "Nothing at all.");
    ck_assert_int_eq(h.n_references, 2);
    ck_assert_str_eq(h.reference_prompts[1], "Ref two");
    /* raw strings: names and aliases, case and outer blanks ignored */
    ck_assert_int_eq(sc_hier_class_of(t, "a"), 0);
    ck_assert_int_eq(sc_hier_class_of(t, "  raw a "), 0);
    ck_assert_int_eq(sc_hier_class_of(t, "B"), 1);
    ck_assert_int_eq(sc_hier_class_of(t, "c"), -1);
    ck_assert_int_eq(sc_hier_concept_of(t, "EX"), 0);
    ck_assert_int_eq(sc_hier_concept_of(t, "y"), 1);
    ck_assert_int_eq(sc_hier_concept_of(t, "up"), -1); /* a two-part alias needs both */
    const char *both[] = {"Left", "middle", "up"}, *one[] = {"up", "right"};
    ck_assert_int_eq(sc_hier_concept_matches(t, 1, both, 3), 1);
    ck_assert_int_eq(sc_hier_concept_matches(t, 1, one, 2), 0);
    ck_assert_int_eq(sc_hier_concept_matches(t, 0, both, 3), 0);
    sc_hier_free(&h);

    /* without class-template or none lines: "{class}." and "No finding." */
    const char *plain = "scale-hier 1\ntemplate {class}\ntask t\nclass k | the k\nconcept c\ncombo k | c\n";
    ck_assert(sc_hier_parse(&h, plain, strlen(plain), "plain.hier", &err) == SC_OK);
    ck_assert_str_eq(h.tasks[0].class_prompt[0], "the k.");
    ck_assert_int_eq(h.tasks[0].n_ensemble, 0);
    ck_assert_str_eq(h.none_prompt, "No finding.");
    ck_assert_int_eq(h.n_references, 0);
    sc_hier_free(&h);
}
END_TEST

/* PadChest-GR's raw locations reach the paper's concepts. */
START_TEST(test_padchest_aliases)
{
    sc_hier h;
    load(&h, "data/padchest-gr.hier");
    const sc_hier_task *t = &h.tasks[0];
    static const struct {
        const char *locations[3];
        const char *concept;
        int want;
    } cases[] = {
        {{"costophrenic angle", "left"}, "left costophrenic angle", 1},
        {{"left costophrenic angle"}, "left costophrenic angle", 1},
        {{"costophrenic angle", "right"}, "left costophrenic angle", 0},
        {{"costophrenic angle", "bilateral"}, "bilateral costophrenic angle", 1},
        {{"lower lung field", "right"}, "right lower lobe", 1},
        {{"Lower Lobe", "left", "pleural"}, "left lower lobe", 1},
        {{"pleural", "left", "costophrenic angle"}, "left pleural", 1},
        {{"cardiac"}, "cardiac", 1},
        {{"retrocardiac"}, "retrocardiac", 1},
        {{"lower lobe"}, "left lower lobe", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = 0;
        while (n < 3 && cases[i].locations[n]) n++;
        int l = 0;
        while (l < t->n_concepts && strcmp(t->concepts[l].name, cases[i].concept)) l++;
        ck_assert_int_lt(l, t->n_concepts);
        ck_assert_msg(sc_hier_concept_matches(t, l, cases[i].locations, n) == cases[i].want, "case %zu", i);
    }
    ck_assert_int_eq(sc_hier_class_of(t, "pleural effusion"), 3);
    ck_assert_int_eq(sc_hier_class_of(t, "laminar atelectasis"), -1);
    ck_assert_str_eq(t->class_prompt[1], "cardiomegaly.");
    sc_hier_free(&h);
}
END_TEST

/* Dropping combinations renumbers classes, concepts, prompts and aliases. */
START_TEST(test_task_keep)
{
    sc_hier h;
    load(&h, "data/padchest-gr.hier");
    sc_hier_task *t = &h.tasks[0];
    /* drop atelectasis retrocardiac (1), cardiomegaly (3) and both
     * consolidations (4, 5): class cardiomegaly and concepts retrocardiac
     * and cardiac disappear */
    uint8_t keep[12] = {1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1};
    int map[12];
    sc_err err;
    ck_assert(sc_hier_task_keep(&h, 0, keep, map, &err) == SC_OK);
    const int want_map[12] = {0, -1, 1, -1, -1, -1, 2, 3, 4, 5, 6, 7};
    ck_assert_mem_eq(map, want_map, sizeof want_map);
    ck_assert_int_eq(t->n_combos, 8);
    ck_assert_int_eq(t->n_classes, 2);
    ck_assert_int_eq(t->n_concepts, 8);
    ck_assert_str_eq(t->classes[1].name, "pleural effusion");
    ck_assert_str_eq(t->concepts[1].name, "right lower lobe");
    const int cc[8] = {0, 0, 1, 1, 1, 1, 1, 1}, cl[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    ck_assert_mem_eq(t->combo_class, cc, sizeof cc);
    ck_assert_mem_eq(t->combo_concept, cl, sizeof cl);
    ck_assert_str_eq(t->combo_prompt[1], "atelectasis in the right lower lobe.");
    ck_assert_str_eq(t->class_prompt[1], "pleural effusion.");
    const char *loc[] = {"costophrenic angle", "left"};
    ck_assert_int_eq(sc_hier_concept_matches(t, 4, loc, 2), 1); /* left costophrenic angle, renumbered */
    ck_assert_int_eq(sc_hier_combo_find(t, "pleural effusion", "left costophrenic angle"), 4);
    /* nothing left: refused, the task unchanged */
    uint8_t none[8] = {0};
    ck_assert_int_eq(sc_hier_task_keep(&h, 0, none, NULL, &err), SC_ERANGE);
    ck_assert_str_eq(err.msg, "task 'lung and heart findings': no combination would be left");
    ck_assert_int_eq(t->n_combos, 8);
    sc_hier_free(&h);
}
END_TEST

/* Each bad document must fail with exactly this sentence. */
static const struct {
    const char *text, *message;
} bad_docs[] = {
    {"task x\n", "bad.hier:1: the first statement must be 'scale-hier 1'"},
    {"scale-hier 2\n", "bad.hier:1: the first statement must be 'scale-hier 1'"},
    {"scale-hier 1\n", "bad.hier: no task lines"},
    {"scale-hier 1\nclass a\n", "bad.hier:2: 'class' before the first task line"},
    {"scale-hier 1\ntask t\nclass a\nconcept b\ncombo a | c\n", "bad.hier:5: combo refers to unknown concept 'c'"},
    {"scale-hier 1\ntask t\nclass a\nconcept b\ncombo z | b\n", "bad.hier:5: combo refers to unknown class 'z'"},
    {"scale-hier 1\ntask t\nclass a\nclass a\n", "bad.hier:4: class 'a' is declared twice"},
    {"scale-hier 1\ntemplate {x}\n", "bad.hier:2: template '{x}' has a placeholder other than {concept}, {class}, {task}"},
    {"scale-hier 1\ntemplate {class}\ntask t\nclass a\nclass b\nconcept c\ncombo a | c\n",
     "bad.hier:5: class 'b' has no combination"},
    {"scale-hier 1\ntemplate {class}\ntask t\nclass a\nconcept c\nconcept d\n\ncombo a | c\n",
     "bad.hier:6: concept 'd' has no combination"},
    {"scale-hier 1\ntask t\nclass a\nconcept c\ncombo a | c\n",
     "bad.hier:2: task 't' has no template and combination 'c' no prompt of its own"},
    {"scale-hier 1\ntemplate {class}\ntask t\nclass a\nconcept c\n", "bad.hier:3: task 't' has no combo lines"},
    {"scale-hier 1\ntemplate {class}\ntask t\nclass a\nconcept c\ncombo a | c\ncombo a | c\n",
     "bad.hier:7: combo 'a | c' is listed twice"},
    {"scale-hier 1\ntask t\nclass a |  | b\n", "bad.hier:3: 'class' has an empty or extra field"},
    {"scale-hier 1\ntask t\ncolor red\n", "bad.hier:3: unknown keyword 'color'"},
    {"scale-hier 1\ntask t\nmultilabel maybe\n", "bad.hier:3: bad value for 'multilabel' (multilabel takes yes or no)"},
    {"scale-hier 1\ntask t\nclass a\x01\n", "bad.hier:3: control character in the text"},
    {"scale-hier 1\ntemplate {class}\ntask t\nclass a\nconcept c\ncombo a | c\ntask t\n",
     "bad.hier:7: task 't' is defined twice"},
    {"scale-hier 1\ntask t\nclass a\nclass-alias b | x\n", "bad.hier:4: class-alias refers to unknown class 'b'"},
    {"scale-hier 1\ntask t\nclass a\nclass-alias a | x + y\n",
     "bad.hier:4: a class-alias names one raw label, without '+'"},
    {"scale-hier 1\ntask t\nconcept c\nconcept-alias c | x +  + y\n",
     "bad.hier:4: concept-alias has an empty raw value"},
    {"scale-hier 1\ntask t\nconcept c\nconcept-alias c\n", "bad.hier:4: a concept-alias line needs 'concept | raw'"},
    {"scale-hier 1\nclass-template {class} {concept}\n",
     "bad.hier:2: class-template '{class} {concept}' uses {concept}; it may use {class} and {task}"},
    {"scale-hier 1\nensemble {klass}\n",
     "bad.hier:2: template '{klass}' has a placeholder other than {concept}, {class}, {task}"},
    {"scale-hier 1\nnone A.\nnone B.\n", "bad.hier:3: a second 'none' line"},
};

START_TEST(test_loader_errors_name_file_and_line)
{
    const char *text = bad_docs[_i].text;
    sc_hier h;
    sc_err err;
    sc_status st = sc_hier_parse(&h, text, strlen(text), "bad.hier", &err);
    ck_assert_msg(st != SC_OK, "case %d parsed", _i);
    ck_assert_str_eq(err.msg, bad_docs[_i].message);
}
END_TEST

/* A line over the cap, and a file with a NUL byte, through the file path. */
START_TEST(test_loader_limits)
{
    char *text = malloc(SC_HIER_MAX_LINE + 64);
    int n = snprintf(text, 64, "scale-hier 1\ntask ");
    memset(text + n, 'x', SC_HIER_MAX_LINE);
    text[n + SC_HIER_MAX_LINE] = 0;
    sc_hier h;
    sc_err err;
    ck_assert_int_eq(sc_hier_parse(&h, text, strlen(text), "long.hier", &err), SC_EFORMAT);
    ck_assert_str_eq(err.msg, "long.hier:2: line longer than 1024 bytes");
    free(text);

    char path[256];
    snprintf(path, sizeof path, "%s/nul.hier", sc_test_tmpdir());
    const char doc[] = "scale-hier 1\ntask t\0x\n";
    ck_assert(sc_write_file_atomic(path, doc, sizeof doc - 1, &err) == SC_OK);
    ck_assert_int_eq(sc_hier_load(&h, path, &err), SC_EFORMAT);
    ck_assert(strstr(err.msg, "nul.hier: contains a NUL byte") != NULL);
    ck_assert_int_eq(sc_hier_load(&h, "/nonexistent/x.hier", &err), SC_EIO);
}
END_TEST

/* Every seed and every crash the fuzzer found goes through the harness
 * again (tests/fuzz/hier_target.h): load, then check the loader's promises. */
START_TEST(test_hier_fuzz_replay)
{
    ck_assert_int_ge(sc_test_replay_dir("tests/fuzz/corpus/hier", fuzz_hier_one, 1), 5);
    sc_test_replay_dir("tests/fuzz/regress/hier", fuzz_hier_one, 1);
}
END_TEST

Suite *suite_hier(void)
{
    Suite *s = suite_create("hier");
    TCase *files = tcase_create("hier_files");
    tcase_add_test(files, test_derm7p_file);
    tcase_add_test(files, test_padchest_file);
    tcase_add_test(files, test_hier_command);
    tcase_add_test(files, test_prompt_lists);
    tcase_add_test(files, test_padchest_aliases);
    tcase_add_test(files, test_task_keep);
    suite_add_tcase(s, files);
    TCase *errors = tcase_create("hier_errors");
    tcase_add_loop_test(errors, test_loader_errors_name_file_and_line, 0,
                        (int)(sizeof bad_docs / sizeof bad_docs[0]));
    tcase_add_test(errors, test_loader_limits);
    tcase_add_test(errors, test_hier_fuzz_replay);
    suite_add_tcase(s, errors);
    return s;
}
