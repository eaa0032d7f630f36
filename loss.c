/* loss.c — the SCALE losses (Eq. 2–3) and the evaluation metrics (Sec. 2.3.2).
 *
 * Contents
 *   1. The class-concept hierarchy
 *   2. From Q to Z and the max aggregation
 *   3. Cross-entropy with probability targets
 *   4. Supervised contrastive loss (Eq. 2), both readings
 *   5. The total loss (Eq. 3)
 *   6. Training SCALE on cached embeddings
 *   7. Prediction and explanation
 *   8. Metrics: accuracy, macro recall, macro F1, ROC AUC
 *   9. Baselines: zero-shot, concept presence, linear probe
 *  10. Embedding maps: exact t-SNE (Fig. 4)
 *  11. Pretraining a CLIP model: the contrastive loss and the training loop
 */
#define _POSIX_C_SOURCE 200809L
#include "scale.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* 1. The class-concept hierarchy                                            */
/* ======================================================================== */

/* A .hier file is plain text, one statement per line (book/03 has the full
 * description):
 *
 *     scale-hier 1
 *     template A photo of a skin lesion with {concept} {task}, which indicates a {class}.
 *     explain {class}: {concept} {task}
 *     task pigmentation
 *     column pigmentation
 *     class benign-indicative | nevus
 *     concept diffuse irregular
 *     combo melanoma-indicative | diffuse irregular
 *
 * "NAME | PHRASE": the name identifies a term (dataset value, label shown
 * to people), the phrase is what prompts say. A combo may end with its own
 * prompt. The parser walks lines bounded by the buffer length, so it never
 * reads past the file; every count is capped, and every error names the
 * file and line.
 *
 * What the datasets and the zero-shot baselines need besides:
 *
 *     class-template A photo of a skin lesion with {task} indicating a {class}.
 *     ensemble This is dermatoscopy of {concept} {task}.
 *     none No finding.
 *     reference This is dermatoscopy
 *     class-alias atelectasis | laminar atelectasis
 *     concept-alias left costophrenic angle | costophrenic angle + left
 *
 * class-template (repeatable) gives class-level prompts ({class}, {task};
 * "{class}." when there is none); ensemble (repeatable) adds templates
 * under which every combination is written again, for prompt ensembles.
 * Like template, both apply to the file when written before the first
 * task and to the current task (replacing the file's list) inside one.
 * none (the two-prompt AUC's "No finding.") and reference (MONET's
 * reference prompts, repeatable) belong to the whole file wherever they
 * are written. The aliases say how a dataset's raw strings map onto the
 * task: a raw label naming a class, or raw values that together (joined
 * by '+') name a concept; a term's own name always matches as well. */

#define HIER_MAX_FIELDS 3

/* Templates or prompts given by repeatable lines, in file order. */
typedef struct {
    const char *item[SC_HIER_MAX_TEMPLATES];
    int n;
} hier_list;

typedef struct {
    sc_hier *h;
    const char *what;      /* file name for messages */
    int line;              /* current line number, 1-based */
    sc_err *err;
    const char *file_template, *file_explain;
    sc_hier_task *task;    /* the task being read, or NULL */
    const char *task_template;
    int *class_line, *concept_line; /* (max) declaration lines of the current task */
    int task_line;
    hier_list file_class_templates, task_class_templates;
    hier_list file_ensemble, task_ensemble;
} hier_parser;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static sc_status hier_fail(hier_parser *ps, sc_status code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sc_fail(ps->err, code, "%s:%d: %s", ps->what, ps->line, msg);
}

static char *hier_strdup(hier_parser *ps, const char *text, size_t len)
{
    char *out = sc_arena_alloc(&ps->h->arena, len + 1);
    if (out) {
        memcpy(out, text, len);
        out[len] = 0;
    }
    return out;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Split "a | b | c" into at most HIER_MAX_FIELDS trimmed fields, written
 * NUL-terminated into the line buffer. Returns the count, or -1 when there
 * are too many fields or one is empty. */
static int split_fields(char *text, char **field)
{
    int n = 0;
    for (char *p = text;;) {
        char *bar = strchr(p, '|');
        if (bar) *bar = 0;
        while (is_blank(*p)) p++;
        char *end = p + strlen(p);
        while (end > p && is_blank(end[-1])) *--end = 0;
        if (n == HIER_MAX_FIELDS || *p == 0) return -1;
        field[n++] = p;
        if (!bar) return n;
        p = bar + 1;
    }
}

/* Fill a template: {concept}, {class} and {task} are replaced by the given
 * strings. Returns 0, or -1 for an unknown placeholder or a result that
 * does not fit in n bytes. */
static int fill_template(char *out, size_t n, const char *tmpl, const char *task, const char *cls,
                         const char *concept)
{
    size_t k = 0;
    for (const char *p = tmpl; *p;) {
        const char *insert = NULL;
        size_t skip = 1;
        if (*p == '{') {
            static const char *const keys[] = {"{concept}", "{class}", "{task}"};
            const char *values[] = {concept, cls, task};
            for (int i = 0; i < 3 && !insert; i++)
                if (!strncmp(p, keys[i], strlen(keys[i]))) {
                    insert = values[i];
                    skip = strlen(keys[i]);
                }
            if (!insert) return -1;
        }
        size_t len = insert ? strlen(insert) : 1;
        if (k + len >= n) return -1;
        memcpy(out + k, insert ? insert : p, len);
        k += len;
        p += skip;
    }
    out[k] = 0;
    return 0;
}

static int find_term(const sc_hier_term *terms, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(terms[i].name, name)) return i;
    return -1;
}

/* A template is checked where it is written, with dummy words. */
static sc_status hier_check_template(hier_parser *ps, const char *tmpl)
{
    char buf[SC_HIER_MAX_LINE * 4];
    if (fill_template(buf, sizeof buf, tmpl, "t", "c", "l") != 0)
        return hier_fail(ps, SC_EFORMAT, "template '%s' has a placeholder other than {concept}, {class}, {task}",
                         tmpl);
    return SC_OK;
}

/* Write a filled template into the arena; NULL when out of memory. */
static const char *hier_fill(hier_parser *ps, const char *tmpl, const sc_hier_task *t, const char *cls,
                             const char *concept)
{
    char buf[SC_HIER_MAX_LINE * 4];
    fill_template(buf, sizeof buf, tmpl, t->name, cls, concept);
    return hier_strdup(ps, buf, strlen(buf));
}

/* The ensemble prompts (n_ensemble, n_combos) and the class prompts
 * (n_class_templates, n_classes) of a finished task, from the task's own
 * lists or else the file's. */
static sc_status hier_fill_lists(hier_parser *ps, sc_hier_task *t)
{
    static const hier_list class_default = {{"{class}."}, 1};
    const hier_list *ens = ps->task_ensemble.n ? &ps->task_ensemble : &ps->file_ensemble;
    const hier_list *ct = ps->task_class_templates.n     ? &ps->task_class_templates
                          : ps->file_class_templates.n ? &ps->file_class_templates
                                                       : &class_default;
    sc_arena *a = &ps->h->arena;
    t->n_ensemble = ens->n;
    t->n_class_templates = ct->n;
    t->ensemble_prompt = sc_arena_calloc(a, (size_t)(ens->n * t->n_combos) + 1, sizeof *t->ensemble_prompt);
    t->class_prompt = sc_arena_calloc(a, (size_t)(ct->n * t->n_classes), sizeof *t->class_prompt);
    int ok = t->ensemble_prompt && t->class_prompt;
    for (int e = 0; ok && e < ens->n; e++)
        for (int h = 0; ok && h < t->n_combos; h++)
            ok = (t->ensemble_prompt[e * t->n_combos + h] =
                      hier_fill(ps, ens->item[e], t, t->classes[t->combo_class[h]].phrase,
                                t->concepts[t->combo_concept[h]].phrase)) != NULL;
    for (int e = 0; ok && e < ct->n; e++)
        for (int c = 0; ok && c < t->n_classes; c++)
            ok = (t->class_prompt[e * t->n_classes + c] = hier_fill(ps, ct->item[e], t, t->classes[c].phrase, ""))
                 != NULL;
    return ok ? SC_OK : sc_fail(ps->err, SC_ENOMEM, "%s: out of memory", ps->what);
}

/* Close the current task: every class and concept must be used by a
 * combination (otherwise the max aggregation of Sec. 2.2 has nothing to
 * take the max of), and every combination gets its canonical prompt. */
static sc_status hier_end_task(hier_parser *ps)
{
    sc_hier_task *t = ps->task;
    if (!t) return SC_OK;
    if (t->n_combos == 0) {
        ps->line = ps->task_line;
        return hier_fail(ps, SC_EFORMAT, "task '%s' has no combo lines", t->name);
    }
    for (int g = 0; g < t->n_classes + t->n_concepts; g++) {
        int is_class = g < t->n_classes, id = is_class ? g : g - t->n_classes, used = 0;
        for (int h = 0; h < t->n_combos && !used; h++)
            used = (is_class ? t->combo_class[h] : t->combo_concept[h]) == id;
        if (!used) {
            ps->line = is_class ? ps->class_line[id] : ps->concept_line[id];
            return hier_fail(ps, SC_EFORMAT, "%s '%s' has no combination", is_class ? "class" : "concept",
                             is_class ? t->classes[id].name : t->concepts[id].name);
        }
    }
    const char *tmpl = ps->task_template ? ps->task_template : ps->file_template;
    for (int h = 0; h < t->n_combos; h++) {
        if (t->combo_prompt[h]) continue;
        if (!tmpl) {
            ps->line = ps->task_line;
            return hier_fail(ps, SC_EFORMAT, "task '%s' has no template and combination '%s' no prompt of its own",
                             t->name, t->concepts[t->combo_concept[h]].name);
        }
        char buf[SC_HIER_MAX_LINE * 4];
        fill_template(buf, sizeof buf, tmpl, t->name, t->classes[t->combo_class[h]].phrase,
                      t->concepts[t->combo_concept[h]].phrase);
        t->combo_prompt[h] = hier_strdup(ps, buf, strlen(buf));
        if (!t->combo_prompt[h]) return sc_fail(ps->err, SC_ENOMEM, "%s: out of memory", ps->what);
    }
    if (!t->explain) t->explain = ps->file_explain ? ps->file_explain : "{class}: {concept}";
    sc_status st = hier_fill_lists(ps, t);
    ps->task = NULL;
    return st;
}

static sc_status hier_begin_task(hier_parser *ps, const char *name)
{
    sc_hier *h = ps->h;
    if (h->n_tasks == SC_HIER_MAX_TASKS)
        return hier_fail(ps, SC_ENOMEM, "more than %d tasks", SC_HIER_MAX_TASKS);
    for (int i = 0; i < h->n_tasks; i++)
        if (!strcmp(h->tasks[i].name, name)) return hier_fail(ps, SC_EFORMAT, "task '%s' is defined twice", name);
    sc_hier_task *t = &h->tasks[h->n_tasks];
    memset(t, 0, sizeof *t);
    sc_arena *a = &h->arena;
    t->name = hier_strdup(ps, name, strlen(name));
    t->classes = sc_arena_calloc(a, SC_HIER_MAX_CLASSES, sizeof *t->classes);
    t->concepts = sc_arena_calloc(a, SC_HIER_MAX_CONCEPTS, sizeof *t->concepts);
    t->combo_class = sc_arena_calloc(a, SC_HIER_MAX_COMBOS, sizeof *t->combo_class);
    t->combo_concept = sc_arena_calloc(a, SC_HIER_MAX_COMBOS, sizeof *t->combo_concept);
    t->combo_prompt = sc_arena_calloc(a, SC_HIER_MAX_COMBOS, sizeof *t->combo_prompt);
    if (!t->name || !t->classes || !t->concepts || !t->combo_class || !t->combo_concept || !t->combo_prompt)
        return sc_fail(ps->err, SC_ENOMEM, "%s: out of memory", ps->what);
    h->n_tasks++;
    ps->task = t;
    ps->task_template = NULL;
    ps->task_class_templates.n = 0;
    ps->task_ensemble.n = 0;
    ps->task_line = ps->line;
    return SC_OK;
}

/* class NAME [| PHRASE]  or  concept NAME [| PHRASE] */
static sc_status hier_term(hier_parser *ps, int is_class, char **field, int n_fields)
{
    sc_hier_task *t = ps->task;
    int *count = is_class ? &t->n_classes : &t->n_concepts;
    sc_hier_term *terms = is_class ? t->classes : t->concepts;
    const char *kind = is_class ? "class" : "concept";
    if (n_fields > 2) return hier_fail(ps, SC_EFORMAT, "a %s line has a name and at most one phrase", kind);
    if (*count == (is_class ? SC_HIER_MAX_CLASSES : SC_HIER_MAX_CONCEPTS))
        return hier_fail(ps, SC_ENOMEM, "too many %s lines in one task", kind);
    if (find_term(terms, *count, field[0]) >= 0) return hier_fail(ps, SC_EFORMAT, "%s '%s' is declared twice", kind, field[0]);
    sc_hier_term *term = &terms[*count];
    term->name = hier_strdup(ps, field[0], strlen(field[0]));
    term->phrase = n_fields == 2 ? hier_strdup(ps, field[1], strlen(field[1])) : term->name;
    if (!term->name || !term->phrase) return sc_fail(ps->err, SC_ENOMEM, "%s: out of memory", ps->what);
    (is_class ? ps->class_line : ps->concept_line)[*count] = ps->line;
    (*count)++;
    return SC_OK;
}

/* combo CLASS | CONCEPT [| PROMPT] */
static sc_status hier_combo(hier_parser *ps, char **field, int n_fields)
{
    sc_hier_task *t = ps->task;
    if (n_fields < 2) return hier_fail(ps, SC_EFORMAT, "a combo line needs 'class | concept'");
    int c = find_term(t->classes, t->n_classes, field[0]);
    int l = find_term(t->concepts, t->n_concepts, field[1]);
    if (c < 0) return hier_fail(ps, SC_EFORMAT, "combo refers to unknown class '%s'", field[0]);
    if (l < 0) return hier_fail(ps, SC_EFORMAT, "combo refers to unknown concept '%s'", field[1]);
    for (int h = 0; h < t->n_combos; h++)
        if (t->combo_class[h] == c && t->combo_concept[h] == l)
            return hier_fail(ps, SC_EFORMAT, "combo '%s | %s' is listed twice", field[0], field[1]);
    if (t->n_combos == SC_HIER_MAX_COMBOS) return hier_fail(ps, SC_ENOMEM, "too many combo lines in one task");
    int h = t->n_combos++;
    t->combo_class[h] = c;
    t->combo_concept[h] = l;
    if (n_fields == 3) {
        t->combo_prompt[h] = hier_strdup(ps, field[2], strlen(field[2]));
        if (!t->combo_prompt[h]) return sc_fail(ps->err, SC_ENOMEM, "%s: out of memory", ps->what);
    }
    return SC_OK;
}

/* class-alias CLASS | RAW  or  concept-alias CONCEPT | RAW [+ RAW ...] */
static sc_status hier_alias(hier_parser *ps, int is_class, char **field, int n_fields)
{
    sc_hier_task *t = ps->task;
    const char *kind = is_class ? "class" : "concept";
    if (n_fields != 2) return hier_fail(ps, SC_EFORMAT, "a %s-alias line needs '%s | raw'", kind, kind);
    int target = is_class ? find_term(t->classes, t->n_classes, field[0])
                          : find_term(t->concepts, t->n_concepts, field[0]);
    if (target < 0) return hier_fail(ps, SC_EFORMAT, "%s-alias refers to unknown %s '%s'", kind, kind, field[0]);
    int *count = is_class ? &t->n_class_aliases : &t->n_concept_aliases;
    sc_hier_alias **list = is_class ? &t->class_aliases : &t->concept_aliases;
    if (*count == SC_HIER_MAX_ALIASES) return hier_fail(ps, SC_ENOMEM, "more than %d %s-alias lines in one task",
                                                        SC_HIER_MAX_ALIASES, kind);
    if (!*list && !(*list = sc_arena_calloc(&ps->h->arena, SC_HIER_MAX_ALIASES, sizeof **list)))
        return sc_fail(ps->err, SC_ENOMEM, "%s: out of memory", ps->what);
    sc_hier_alias *al = &(*list)[*count];
    al->target = target;
    al->part = sc_arena_calloc(&ps->h->arena, SC_HIER_MAX_ALIAS_PARTS, sizeof *al->part);
    if (!al->part) return sc_fail(ps->err, SC_ENOMEM, "%s: out of memory", ps->what);
    al->n_parts = 0;
    for (char *p = field[1];;) { /* "a + b + c": trimmed, none empty */
        char *plus = strchr(p, '+');
        if (plus) *plus = 0;
        while (is_blank(*p)) p++;
        char *end = p + strlen(p);
        while (end > p && is_blank(end[-1])) *--end = 0;
        if (!*p) return hier_fail(ps, SC_EFORMAT, "%s-alias has an empty raw value", kind);
        if (is_class && plus) return hier_fail(ps, SC_EFORMAT, "a class-alias names one raw label, without '+'");
        if (al->n_parts == SC_HIER_MAX_ALIAS_PARTS)
            return hier_fail(ps, SC_EFORMAT, "%s-alias joins more than %d raw values", kind, SC_HIER_MAX_ALIAS_PARTS);
        if (!(al->part[al->n_parts++] = hier_strdup(ps, p, strlen(p))))
            return sc_fail(ps->err, SC_ENOMEM, "%s: out of memory", ps->what);
        if (!plus) break;
        p = plus + 1;
    }
    (*count)++;
    return SC_OK;
}

/* class-template, ensemble and reference lines: append to a list. */
static sc_status hier_list_add(hier_parser *ps, hier_list *list, const char *key, const char *copy)
{
    if (list->n == SC_HIER_MAX_TEMPLATES)
        return hier_fail(ps, SC_ENOMEM, "more than %d '%s' lines in one list", SC_HIER_MAX_TEMPLATES, key);
    list->item[list->n++] = copy;
    return SC_OK;
}

/* The whole-line statements: template, explain, class-template, ensemble,
 * none, reference. Returns 1 when key is one of them. */
static int hier_is_text(const char *key)
{
    static const char *const keys[] = {"template", "explain", "class-template", "ensemble", "none", "reference"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(key, keys[i])) return 1;
    return 0;
}

static sc_status hier_text(hier_parser *ps, const char *key, const char *rest)
{
    int is_template = strcmp(key, "none") && strcmp(key, "reference");
    sc_status st = is_template ? hier_check_template(ps, rest) : SC_OK;
    if (st) return st;
    if (!strcmp(key, "class-template") && strstr(rest, "{concept}"))
        return hier_fail(ps, SC_EFORMAT, "class-template '%s' uses {concept}; it may use {class} and {task}", rest);
    char *copy = hier_strdup(ps, rest, strlen(rest));
    if (!copy) return sc_fail(ps->err, SC_ENOMEM, "%s: out of memory", ps->what);
    sc_hier *h = ps->h;
    if (!strcmp(key, "explain")) *(ps->task ? &ps->task->explain : &ps->file_explain) = copy;
    else if (!strcmp(key, "template")) *(ps->task ? &ps->task_template : &ps->file_template) = copy;
    else if (!strcmp(key, "class-template"))
        return hier_list_add(ps, ps->task ? &ps->task_class_templates : &ps->file_class_templates, key, copy);
    else if (!strcmp(key, "ensemble"))
        return hier_list_add(ps, ps->task ? &ps->task_ensemble : &ps->file_ensemble, key, copy);
    else if (!strcmp(key, "none")) {
        if (h->none_prompt) return hier_fail(ps, SC_EFORMAT, "a second 'none' line");
        h->none_prompt = copy;
    } else {
        if (h->n_references == SC_HIER_MAX_TEMPLATES)
            return hier_fail(ps, SC_ENOMEM, "more than %d 'reference' lines", SC_HIER_MAX_TEMPLATES);
        h->reference_prompts[h->n_references++] = copy;
    }
    return SC_OK;
}

/* One statement: keyword, then the rest of the line. */
static sc_status hier_statement(hier_parser *ps, const char *key, char *rest)
{
    char *field[HIER_MAX_FIELDS];
    int is_text = hier_is_text(key);
    int n = is_text ? 1 : split_fields(rest, field);
    if (is_text) field[0] = rest;
    if (n < 0 || !*rest) return hier_fail(ps, SC_EFORMAT, "'%s' has an empty or extra field", key);
    if (!strcmp(key, "task")) {
        sc_status st = hier_end_task(ps);
        return st ? st : n == 1 ? hier_begin_task(ps, field[0])
                                : hier_fail(ps, SC_EFORMAT, "a task line holds only the task's name");
    }
    if (is_text) return hier_text(ps, key, rest);
    if (!ps->task) return hier_fail(ps, SC_EFORMAT, "'%s' before the first task line", key);
    if (!strcmp(key, "class")) return hier_term(ps, 1, field, n);
    if (!strcmp(key, "concept")) return hier_term(ps, 0, field, n);
    if (!strcmp(key, "combo")) return hier_combo(ps, field, n);
    if (!strcmp(key, "class-alias") || !strcmp(key, "concept-alias")) return hier_alias(ps, key[1] == 'l', field, n);
    if (!strcmp(key, "column") && n == 1) {
        ps->task->column = hier_strdup(ps, field[0], strlen(field[0]));
        return ps->task->column ? SC_OK : sc_fail(ps->err, SC_ENOMEM, "%s: out of memory", ps->what);
    }
    if (!strcmp(key, "multilabel") && n == 1 && (!strcmp(field[0], "yes") || !strcmp(field[0], "no"))) {
        ps->task->multilabel = field[0][0] == 'y';
        return SC_OK;
    }
    if (!strcmp(key, "column") || !strcmp(key, "multilabel"))
        return hier_fail(ps, SC_EFORMAT, "bad value for '%s' (multilabel takes yes or no)", key);
    return hier_fail(ps, SC_EFORMAT, "unknown keyword '%s'", key);
}

/* @book begin hier-parse */
sc_status sc_hier_parse(sc_hier *h, const char *text, size_t len, const char *what, sc_err *err)
{
    memset(h, 0, sizeof *h);
    sc_arena_init(&h->arena, "hierarchy", (size_t)1 << 20, (size_t)64 << 20);
    int class_line[SC_HIER_MAX_CLASSES], concept_line[SC_HIER_MAX_CONCEPTS];
    hier_parser ps = {.h = h, .what = what, .err = err, .class_line = class_line, .concept_line = concept_line};
    h->tasks = sc_arena_calloc(&h->arena, SC_HIER_MAX_TASKS, sizeof *h->tasks);
    h->reference_prompts = sc_arena_calloc(&h->arena, SC_HIER_MAX_TEMPLATES, sizeof *h->reference_prompts);
    sc_status st = h->tasks && h->reference_prompts ? SC_OK : sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    int seen_header = 0;
    for (size_t pos = 0; st == SC_OK && pos < len;) {
        /* One line: [pos, eol), copied so it can be cut into fields. */
        size_t eol = pos;
        while (eol < len && text[eol] != '\n') eol++;
        ps.line++;
        char line[SC_HIER_MAX_LINE + 1];
        size_t n = eol - pos;
        if (n > 0 && text[eol - 1] == '\r') n--;
        if (n > SC_HIER_MAX_LINE) {
            st = hier_fail(&ps, SC_EFORMAT, "line longer than %d bytes", SC_HIER_MAX_LINE);
            break;
        }
        memcpy(line, text + pos, n);
        line[n] = 0;
        pos = eol + 1;
        for (size_t i = 0; i < n && st == SC_OK; i++)
            if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
                st = hier_fail(&ps, SC_EFORMAT, "control character in the text");
        char *p = line;
        while (is_blank(*p)) p++;
        if (st || *p == 0 || *p == '#') continue;
        /* keyword, blanks, rest (trailing blanks removed) */
        char *key = p;
        while (*p && !is_blank(*p)) p++;
        if (*p) *p++ = 0;
        while (is_blank(*p)) p++;
        char *end = p + strlen(p);
        while (end > p && is_blank(end[-1])) *--end = 0;
        if (!seen_header) {
            if (strcmp(key, "scale-hier") || strcmp(p, "1"))
                st = hier_fail(&ps, SC_EFORMAT, "the first statement must be 'scale-hier 1'");
            seen_header = 1;
            continue;
        }
        st = hier_statement(&ps, key, p);
    }
    if (st == SC_OK) st = hier_end_task(&ps);
    if (st == SC_OK && h->n_tasks == 0) st = sc_fail(err, SC_EFORMAT, "%s: no task lines", what);
    if (st == SC_OK && !h->none_prompt) h->none_prompt = "No finding.";
    if (st != SC_OK) sc_hier_free(h);
    return st;
}
/* @book end hier-parse */

sc_status sc_hier_load(sc_hier *h, const char *path, sc_err *err)
{
    uint8_t *data;
    size_t len;
    memset(h, 0, sizeof *h);
    sc_status st = sc_read_file(path, SC_HIER_MAX_BYTES, &data, &len, err);
    if (st) return st;
    if (memchr(data, 0, len)) st = sc_fail(err, SC_EFORMAT, "%s: contains a NUL byte; not a text file", path);
    else st = sc_hier_parse(h, (const char *)data, len, path, err);
    free(data);
    return st;
}

void sc_hier_free(sc_hier *h)
{
    sc_arena_free(&h->arena);
    h->tasks = NULL;
    h->n_tasks = 0;
}

const sc_hier_task *sc_hier_task_find(const sc_hier *h, const char *name)
{
    for (int i = 0; i < h->n_tasks; i++)
        if (!strcmp(h->tasks[i].name, name)) return &h->tasks[i];
    return NULL;
}

int sc_hier_combo_find(const sc_hier_task *t, const char *cls, const char *concept)
{
    int l = find_term(t->concepts, t->n_concepts, concept);
    int c = cls ? find_term(t->classes, t->n_classes, cls) : -1;
    if (l < 0 || (cls && c < 0)) return -1;
    int found = -1;
    for (int h = 0; h < t->n_combos; h++) {
        if (t->combo_concept[h] != l || (cls && t->combo_class[h] != c)) continue;
        if (found >= 0) return -1; /* concept alone is ambiguous */
        found = h;
    }
    return found;
}

char *sc_hier_explain(const sc_hier_task *t, int h, char *buf, size_t n)
{
    SC_ASSERT(h >= 0 && h < t->n_combos, "combination %d of %d", h, t->n_combos);
    if (fill_template(buf, n, t->explain, t->name, t->classes[t->combo_class[h]].name,
                      t->concepts[t->combo_concept[h]].name) != 0)
        snprintf(buf, n, "%s: %s", t->classes[t->combo_class[h]].name, t->concepts[t->combo_concept[h]].name);
    return buf;
}

/* ---- raw dataset strings ---- */

/* a == b ignoring ASCII case and blanks at either end of either string. */
static int raw_equal(const char *a, const char *b)
{
    while (is_blank(*a)) a++;
    while (is_blank(*b)) b++;
    size_t na = strlen(a), nb = strlen(b);
    while (na && is_blank(a[na - 1])) na--;
    while (nb && is_blank(b[nb - 1])) nb--;
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if ((x >= 'A' && x <= 'Z' ? x + 32 : x) != (y >= 'A' && y <= 'Z' ? y + 32 : y)) return 0;
    }
    return 1;
}

static int raw_among(const char *v, const char *const *values, int n)
{
    for (int i = 0; i < n; i++)
        if (raw_equal(v, values[i])) return 1;
    return 0;
}

int sc_hier_class_of(const sc_hier_task *t, const char *raw)
{
    for (int c = 0; c < t->n_classes; c++)
        if (raw_equal(t->classes[c].name, raw)) return c;
    for (int a = 0; a < t->n_class_aliases; a++)
        if (raw_equal(t->class_aliases[a].part[0], raw)) return t->class_aliases[a].target;
    return -1;
}

int sc_hier_concept_matches(const sc_hier_task *t, int l, const char *const *values, int n)
{
    SC_ASSERT(l >= 0 && l < t->n_concepts, "concept %d of %d", l, t->n_concepts);
    if (raw_among(t->concepts[l].name, values, n)) return 1;
    for (int a = 0; a < t->n_concept_aliases; a++) {
        const sc_hier_alias *al = &t->concept_aliases[a];
        int all = al->target == l;
        for (int k = 0; all && k < al->n_parts; k++) all = raw_among(al->part[k], values, n);
        if (all) return 1;
    }
    return 0;
}

int sc_hier_concept_of(const sc_hier_task *t, const char *raw)
{
    for (int l = 0; l < t->n_concepts; l++)
        if (raw_equal(t->concepts[l].name, raw)) return l;
    for (int a = 0; a < t->n_concept_aliases; a++)
        if (t->concept_aliases[a].n_parts == 1 && raw_equal(t->concept_aliases[a].part[0], raw))
            return t->concept_aliases[a].target;
    return -1;
}

/* ---- dropping combinations ---- */

/* Keep aliases whose target survives, renumbered through new_of. */
static void keep_aliases(sc_hier_alias *al, int *n, const int *new_of)
{
    int k = 0;
    for (int a = 0; a < *n; a++)
        if (new_of[al[a].target] >= 0) {
            al[k] = al[a];
            al[k++].target = new_of[al[a].target];
        }
    *n = k;
}

/* Compact a (rows, old_cols) table of prompts to the columns with
 * new_of[j] >= 0, in place (the new table is never larger). */
static void keep_columns(const char **table, int rows, int old_cols, int new_cols, const int *new_of)
{
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < old_cols; j++)
            if (new_of[j] >= 0) table[r * new_cols + new_of[j]] = table[r * old_cols + j];
}

sc_status sc_hier_task_keep(sc_hier *h, int task, const uint8_t *keep, int *old_to_new, sc_err *err)
{
    SC_ASSERT(task >= 0 && task < h->n_tasks, "task %d of %d", task, h->n_tasks);
    sc_hier_task *t = &h->tasks[task];
    int new_combo[SC_HIER_MAX_COMBOS], new_class[SC_HIER_MAX_CLASSES], new_concept[SC_HIER_MAX_CONCEPTS];
    int H = 0, C = 0, L = 0;
    for (int c = 0; c < t->n_classes; c++) new_class[c] = -1;
    for (int l = 0; l < t->n_concepts; l++) new_concept[l] = -1;
    for (int k = 0; k < t->n_combos; k++) {
        new_combo[k] = keep[k] ? H++ : -1;
        if (keep[k]) new_class[t->combo_class[k]] = new_concept[t->combo_concept[k]] = 0;
    }
    if (H == 0) return sc_fail(err, SC_ERANGE, "task '%s': no combination would be left", t->name);
    /* classes and concepts keep their order */
    for (int c = 0; c < t->n_classes; c++)
        if (new_class[c] == 0) new_class[c] = C++;
    for (int l = 0; l < t->n_concepts; l++)
        if (new_concept[l] == 0) new_concept[l] = L++;
    keep_columns(t->ensemble_prompt, t->n_ensemble, t->n_combos, H, new_combo);
    keep_columns(t->class_prompt, t->n_class_templates, t->n_classes, C, new_class);
    for (int k = 0; k < t->n_combos; k++) {
        if (old_to_new) old_to_new[k] = new_combo[k];
        if (new_combo[k] < 0) continue;
        t->combo_class[new_combo[k]] = new_class[t->combo_class[k]];
        t->combo_concept[new_combo[k]] = new_concept[t->combo_concept[k]];
        t->combo_prompt[new_combo[k]] = t->combo_prompt[k];
    }
    for (int c = 0; c < t->n_classes; c++)
        if (new_class[c] >= 0) t->classes[new_class[c]] = t->classes[c];
    for (int l = 0; l < t->n_concepts; l++)
        if (new_concept[l] >= 0) t->concepts[new_concept[l]] = t->concepts[l];
    keep_aliases(t->class_aliases, &t->n_class_aliases, new_class);
    keep_aliases(t->concept_aliases, &t->n_concept_aliases, new_concept);
    t->n_combos = H, t->n_classes = C, t->n_concepts = L;
    return SC_OK;
}

/* ======================================================================== */
/* 2. From Q to Z and the max aggregation                                    */
/* ======================================================================== */

/* Q (N, M) compares every image with every text of the batch. The
 * supervised terms need one score per class-concept combination instead:
 * column h of Z is the (scaled) column of Q of the first text that carries
 * combination h. Training appends one canonical prompt per combination to
 * every batch, so each h has such a column. */

void sc_combo_columns(int64_t *first_col, const int *text_combo, int64_t M, int H)
{
    for (int h = 0; h < H; h++) first_col[h] = -1;
    for (int64_t j = M - 1; j >= 0; j--) first_col[text_combo[j]] = j;
}

/* @book begin q-to-z */
/* z (H) = s · Q[i, k(h)] for one image row q (M). */
static void q_row_to_z(double *z, const float *q, const int64_t *first_col, int H, double s)
{
    for (int h = 0; h < H; h++) z[h] = s * (double)q[first_col[h]];
}

/* agg (G) = the max of z over the combinations of each group (concept or
 * class); argmax (G) remembers which combination won, for the backward
 * pass. group_of (H) maps a combination to its group. */
static void max_aggregate(double *agg, int *argmax, const double *z, const int *group_of, int H, int G)
{
    for (int g = 0; g < G; g++) argmax[g] = -1;
    for (int h = 0; h < H; h++) {
        int g = group_of[h];
        if (argmax[g] < 0 || z[h] > agg[g]) {
            agg[g] = z[h];
            argmax[g] = h;
        }
    }
}

/* The target of a group is 1 when any of the image's combinations lies in
 * it: "this image shows concept l" / "this image is of class c". */
static void aggregate_targets(double *t, const float *g_row, const int *group_of, int H, int G)
{
    for (int g = 0; g < G; g++) t[g] = 0;
    for (int h = 0; h < H; h++)
        if (g_row[h] != 0) t[group_of[h]] = 1;
}
/* @book end q-to-z */

void sc_scale_scores(double *Z, double *z_concept, double *z_class, const float *Q, const sc_loss_problem *p,
                     double logit_scale)
{
    int H = p->H;
    int64_t *first_col = malloc(sizeof(int64_t) * (size_t)H);
    double *z = malloc(sizeof(double) * (size_t)H);
    int *argmax = malloc(sizeof(int) * (size_t)(p->n_concepts + p->n_classes));
    SC_ASSERT(first_col && z && argmax, "no memory for %d combinations", H);
    sc_combo_columns(first_col, p->text_combo, p->M, H);
    for (int64_t i = 0; i < p->N; i++) {
        q_row_to_z(z, Q + i * p->M, first_col, H, logit_scale);
        if (Z) memcpy(Z + i * H, z, sizeof(double) * (size_t)H);
        if (z_concept) max_aggregate(z_concept + i * p->n_concepts, argmax, z, p->combo_concept, H, p->n_concepts);
        if (z_class) max_aggregate(z_class + i * p->n_classes, argmax, z, p->combo_class, H, p->n_classes);
    }
    free(first_col);
    free(z);
    free(argmax);
}

/* ======================================================================== */
/* 3. Cross-entropy with probability targets                                 */
/* ======================================================================== */

/* PyTorch's cross-entropy with probability targets,
 *     CE(t, z) = -sum_j t_j log softmax(z)_j,
 * applied to the targets as given: a multi-hot row is not renormalised, so
 * an image with two combinations pulls on both with full weight. Its
 * gradient is dCE/dz_j = (sum_k t_k) softmax(z)_j - t_j. */

static double log_sum_exp(const double *z, int64_t n)
{
    double m = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        if (z[j] > m) m = z[j];
    double sum = 0;
    for (int64_t j = 0; j < n; j++) sum += exp(z[j] - m);
    return m + log(sum);
}

/* @book begin cross-entropy */
/* Returns CE(t, z) over n entries; when dz is not NULL adds weight · dCE/dz. */
static double cross_entropy(double *dz, const double *t, const double *z, int n, double weight)
{
    double lse = log_sum_exp(z, n), loss = 0, t_sum = 0;
    for (int j = 0; j < n; j++) {
        loss -= t[j] * (z[j] - lse);
        t_sum += t[j];
    }
    if (dz)
        for (int j = 0; j < n; j++) dz[j] += weight * (t_sum * exp(z[j] - lse) - t[j]);
    return loss;
}
/* @book end cross-entropy */

/* ======================================================================== */
/* 4. Supervised contrastive loss (Eq. 2)                                    */
/* ======================================================================== */

/* Eq. 2 contrasts an anchor sample with the other samples of the batch:
 *     L_a = -1/|P(a)| sum_{p in P(a)} log( exp(l_ap) / sum_{s in S(a)} exp(l_as) ).
 * Both readings of the paper reduce to that one formula over a matrix of
 * logits l (A, S) — A anchor samples against S candidates — and differ only
 * in where l comes from:
 *   rows   l = F Fᵀ / τ with F the rows of Q (or of Qᵀ), S(a) = all but a;
 *   cross  l = Q / τ (or Qᵀ / τ), S(a) = every text (or every image).
 * Positives: single-label, the candidates whose label vector equals the
 * anchor's; multi-label (Zhang & Wu), one anchor per label h of the sample,
 * whose positives are the candidates carrying h. Anchors without positives
 * are skipped. supcon_logits returns the summed loss and the anchor count
 * and, when dl is not NULL, adds dLoss/dl (unreduced) into dl. */

static int same_labels(const float *a, const float *b, int H)
{
    for (int h = 0; h < H; h++)
        if ((a[h] != 0) != (b[h] != 0)) return 0;
    return 1;
}

/* Number the distinct label vectors of the anchors and the candidates
 * together: rows with equal labels get equal keys, so that "same labels"
 * is one integer comparison. first (n_a + n_c) is scratch: the first row
 * of each key. */
static void label_keys(int *key_a, int *key_c, const float *labels_a, int64_t n_a, const float *labels_c,
                       int64_t n_c, int H, const float **first)
{
    int n_keys = 0;
    for (int64_t r = 0; r < n_a + n_c; r++) {
        const float *y = r < n_a ? labels_a + r * H : labels_c + (r - n_a) * H;
        int k = 0;
        while (k < n_keys && !same_labels(first[k], y, H)) k++;
        if (k == n_keys) first[n_keys++] = y;
        if (r < n_a) key_a[r] = k;
        else key_c[r - n_a] = k;
    }
}

/* One SupCon problem: A anchors against S candidates. */
typedef struct {
    const double *logit;        /* (A, S) */
    const float *anchor_labels; /* (A, H) */
    const float *cand_labels;   /* (S, H) */
    const int *anchor_key;      /* (A) label_keys of the anchors */
    const int *cand_key;        /* (S) and of the candidates */
    int64_t A, S;
    int H, exclude_self, multilabel;
    double *term;               /* (A, labels) each anchor's mean positive log-share, */
    uint8_t *counted;           /* (A, labels) and whether it had positives at all */
    double *dl;                 /* (A, S) dLoss/dl, or NULL */
    double *scratch;            /* per block of anchors: 2 S doubles, the softmax shares
                                   then the positive flags (S bytes) */
} supcon_problem;

/* Anchors are handled in blocks of this many, the blocks shared out over
 * the threads; each anchor writes only its own row of dl and of term, so
 * the result does not depend on the threads. */
#define SUPCON_BLOCK 8

/* positive[s] = is candidate s a positive of anchor a for label h (h < 0:
 * single-label)? The anchor itself never is in the rows reading. */
static void supcon_positives(uint8_t *positive, const supcon_problem *p, int64_t a, int h)
{
    for (int64_t s = 0; s < p->S; s++)
        positive[s] = !(p->exclude_self && s == a) &&
                      (h < 0 ? p->cand_key[s] == p->anchor_key[a] : p->cand_labels[s * p->H + h] != 0);
}

/* Anchor a (one row of logits): its term of Eq. 2 per label (labels = H in
 * the multi-label case, else 1) and, when p->dl is set, dL/dl for its row.
 * softmax and positive (S each) are the block's scratch. */
/* @book begin supcon-logits */
static void supcon_anchor(const supcon_problem *p, int64_t a, double *softmax, uint8_t *positive)
{
    int64_t S = p->S;
    const double *l = p->logit + a * S;
    const float *la = p->anchor_labels + a * p->H;
    int exclude_self = p->exclude_self, labels = p->multilabel ? p->H : 1;
    /* log of the denominator of Eq. 2: all candidates except the anchor
     * itself in the rows reading; softmax (S) keeps each candidate's share
     * of it for the gradient. */
    double m = -INFINITY, sum = 0;
    for (int64_t s = 0; s < S; s++)
        if (!(exclude_self && s == a) && l[s] > m) m = l[s];
    for (int64_t s = 0; s < S; s++) {
        softmax[s] = exclude_self && s == a ? 0 : exp(l[s] - m);
        sum += softmax[s];
    }
    for (int64_t s = 0; s < S; s++) softmax[s] /= sum;
    double lse = m + log(sum);
    /* One anchor per label in the multi-label case, one in total else. */
    for (int k = 0; k < labels; k++) {
        int h = p->multilabel ? k : -1;
        p->counted[a * labels + k] = 0;
        if (h >= 0 && la[h] == 0) continue;
        supcon_positives(positive, p, a, h);
        int64_t n_pos = 0;
        double pos_sum = 0;
        for (int64_t s = 0; s < S; s++) {
            if (!positive[s]) continue;
            n_pos++;
            pos_sum += l[s] - lse;
        }
        if (n_pos == 0) continue;
        p->term[a * labels + k] = pos_sum / (double)n_pos;
        p->counted[a * labels + k] = 1;
        if (!p->dl) continue;
        /* d/dl_s of -(1/|P|) sum_p (l_p - lse) = softmax_s - [s in P]/|P| */
        for (int64_t s = 0; s < S; s++) {
            if (exclude_self && s == a) continue;
            double g = softmax[s];
            if (positive[s]) g -= 1.0 / (double)n_pos;
            p->dl[a * S + s] += g;
        }
    }
}
/* @book end supcon-logits */

static void supcon_block_task(void *arg, int64_t block)
{
    const supcon_problem *p = arg;
    double *softmax = p->scratch + block * 2 * p->S;
    uint8_t *positive = (uint8_t *)(softmax + p->S);
    int64_t a1 = (block + 1) * SUPCON_BLOCK < p->A ? (block + 1) * SUPCON_BLOCK : p->A;
    for (int64_t a = block * SUPCON_BLOCK; a < a1; a++) supcon_anchor(p, a, softmax, positive);
}

/* @book begin supcon-sum */
static double supcon_logits(double *dl, int64_t *n_anchors, const double *logit, const float *anchor_labels,
                            const float *cand_labels, int64_t A, int64_t S, int H, int exclude_self, int multilabel,
                            sc_arena *scratch)
{
    int labels = multilabel ? H : 1;
    int64_t blocks = (A + SUPCON_BLOCK - 1) / SUPCON_BLOCK;
    sc_arena_mark mark = sc_arena_get_mark(scratch);
    int *anchor_key = sc_arena_alloc(scratch, sizeof(int) * (size_t)A);
    int *cand_key = sc_arena_alloc(scratch, sizeof(int) * (size_t)S);
    const float **first = sc_arena_alloc(scratch, sizeof(float *) * (size_t)(A + S));
    double *term = sc_arena_alloc(scratch, sizeof(double) * (size_t)(A * labels));
    uint8_t *counted = sc_arena_alloc(scratch, (size_t)(A * labels));
    double *work = sc_arena_alloc(scratch, sizeof(double) * (size_t)(blocks * 2 * S));
    SC_ASSERT(anchor_key && cand_key && first && term && counted && work, "scratch arena cannot hold %lld anchors",
              (long long)A);
    label_keys(anchor_key, cand_key, anchor_labels, A, cand_labels, S, H, first);
    supcon_problem p = {logit, anchor_labels, cand_labels, anchor_key, cand_key, A, S, H, exclude_self,
                        multilabel, term, counted, dl, work};
    sc_parallel_for(blocks, supcon_block_task, &p);
    /* The anchors' terms, summed in anchor order whatever the threads. */
    double loss = 0;
    *n_anchors = 0;
    for (int64_t i = 0; i < A * labels; i++)
        if (counted[i]) {
            loss -= term[i];
            (*n_anchors)++;
        }
    sc_arena_rewind(scratch, mark);
    return loss;
}
/* @book end supcon-sum */

/* x · y with four running sums, so that additions do not each wait on
 * the previous one. */
static double dot(const double *x, const double *y, int64_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * y[i];
        s1 += x[i + 1] * y[i + 1];
        s2 += x[i + 2] * y[i + 2];
        s3 += x[i + 3] * y[i + 3];
    }
    for (; i < n; i++) s0 += x[i] * y[i];
    return (s0 + s1) + (s2 + s3);
}

/* logit (A, A) = F Fᵀ / τ for the rows reading, F (A, D) contiguous. */
static void gram_logits(double *logit, const double *F, int64_t A, int64_t D, double tau)
{
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b <= a; b++) logit[a * A + b] = logit[b * A + a] = dot(F + a * D, F + b * D, D) / tau;
}

/* Rows reading backward: l = F Fᵀ / τ gives dF = (W + Wᵀ) F / τ, the
 * factor 1/τ being folded into `scale`. W is symmetrised in place, then
 * dF[a, d] = W[a, :] · FT[d, :] with FT (D, A) the transpose of F. */
static void gram_backward(double *dF, double *W, const double *FT, int64_t A, int64_t D, double scale)
{
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b <= a; b++) W[a * A + b] = W[b * A + a] = scale * (W[a * A + b] + W[b * A + a]);
    for (int64_t a = 0; a < A; a++)
        for (int64_t d = 0; d < D; d++) dF[a * D + d] += dot(W + a * A, FT + d * A, A);
}

/* One SupCon term. Anchors are the rows of Q (transposed = 0: images,
 * labels G) or its columns (transposed = 1: texts, labels GT); F (A, D)
 * holds them as contiguous doubles. Returns the reduced loss and adds
 * weight · dTerm/dQ into dQ when not NULL. */
static double supcon_term(double *dQ, int64_t *n_anchors, const float *Q, const sc_loss_problem *p,
                          const sc_loss_config *cfg, int transposed, double weight, sc_arena *scratch)
{
    int64_t N = p->N, M = p->M;
    int64_t A = transposed ? M : N;            /* anchors */
    int64_t D = transposed ? N : M;            /* length of an anchor's row */
    const float *anchor_labels = transposed ? p->text_labels : p->labels;
    const float *other_labels = transposed ? p->labels : p->text_labels;
    int rows = cfg->supcon == SC_SUPCON_ROWS;
    int64_t S = rows ? A : D;                  /* candidates */

    sc_arena_mark mark = sc_arena_get_mark(scratch);
    double *logit = sc_arena_alloc(scratch, sizeof(double) * (size_t)(A * S));
    double *dl = dQ ? sc_arena_calloc(scratch, (size_t)(A * S), sizeof(double)) : NULL;
    /* The rows reading needs the anchors' rows F (A, D) and their
     * transpose FT for the Gram matrix and its gradient. */
    double *F = rows ? sc_arena_alloc(scratch, sizeof(double) * (size_t)(A * D)) : NULL;
    double *FT = rows ? sc_arena_alloc(scratch, sizeof(double) * (size_t)(A * D)) : NULL;
    double *dF = rows && dQ ? sc_arena_calloc(scratch, (size_t)(A * D), sizeof(double)) : NULL;
    SC_ASSERT(logit && (dl || !dQ) && (!rows || (F && FT && (dF || !dQ))), "scratch arena cannot hold %lld logits",
              (long long)(A * S));
    for (int64_t a = 0; a < A; a++)
        for (int64_t d = 0; d < D; d++) {
            double q = transposed ? Q[d * M + a] : Q[a * M + d];
            if (rows) F[a * D + d] = FT[d * A + a] = q;
            else logit[a * S + d] = q / cfg->tau;
        }
    if (rows) gram_logits(logit, F, A, D, cfg->tau);
    double loss = supcon_logits(dl, n_anchors, logit, anchor_labels, rows ? anchor_labels : other_labels,
                                A, S, p->H, rows, cfg->multilabel, scratch);
    double scale = 1;
    if (cfg->reduction == SC_REDUCE_MEAN) scale = *n_anchors ? 1.0 / (double)*n_anchors : 0;
    if (dQ && *n_anchors) {
        /* cross: dQ = g dl (S = D); rows: through the Gram matrix */
        double g = weight * scale / cfg->tau;
        if (rows) gram_backward(dF, dl, FT, A, D, g);
        for (int64_t a = 0; a < A; a++)
            for (int64_t d = 0; d < D; d++)
                dQ[transposed ? d * M + a : a * M + d] += rows ? dF[a * D + d] : g * dl[a * S + d];
    }
    sc_arena_rewind(scratch, mark);
    return loss * scale;
}

/* ======================================================================== */
/* 5. The total loss (Eq. 3)                                                 */
/* ======================================================================== */

/* Eq. 3 adds the three cross-entropies (combination, concept, class) and
 * the two SupCon terms (images as anchors over Q, texts over Qᵀ):
 *     total = CE_combo + λ1 CE_concept + λ2 CE_class + λ3 SupCon(G, Q) + λ4 SupCon(GT, Qᵀ).
 * With reduction "mean" the CE terms are averaged over the N images and the
 * SupCon terms over their counted anchors; with "sum" everything is summed
 * as the equations are written. */

sc_loss_config sc_loss_defaults(void)
{
    sc_loss_config c;
    c.logit_scale = 100.0;
    c.tau = 0.07;
    c.lambda[0] = c.lambda[1] = c.lambda[2] = c.lambda[3] = 1.0;
    c.supcon = SC_SUPCON_CROSS;
    c.reduction = SC_REDUCE_MEAN;
    c.multilabel = 0;
    return c;
}

sc_status sc_loss_problem_check(const sc_loss_problem *p, const char *what, sc_err *err)
{
    if (p->N < 1 || p->M < 1 || p->H < 1 || p->n_classes < 1 || p->n_concepts < 1)
        return sc_fail(err, SC_ESHAPE, "%s: empty problem (N=%lld M=%lld H=%d classes=%d concepts=%d)", what,
                       (long long)p->N, (long long)p->M, p->H, p->n_classes, p->n_concepts);
    for (int64_t j = 0; j < p->M; j++)
        if (p->text_combo[j] < 0 || p->text_combo[j] >= p->H)
            return sc_fail(err, SC_ERANGE, "%s: text %lld carries combination %d, outside [0, %d)", what,
                           (long long)j, p->text_combo[j], p->H);
    for (int h = 0; h < p->H; h++) {
        if (p->combo_class[h] < 0 || p->combo_class[h] >= p->n_classes)
            return sc_fail(err, SC_ERANGE, "%s: combination %d has class %d, outside [0, %d)", what, h,
                           p->combo_class[h], p->n_classes);
        if (p->combo_concept[h] < 0 || p->combo_concept[h] >= p->n_concepts)
            return sc_fail(err, SC_ERANGE, "%s: combination %d has concept %d, outside [0, %d)", what, h,
                           p->combo_concept[h], p->n_concepts);
        int has_column = 0;
        for (int64_t j = 0; j < p->M && !has_column; j++) has_column = p->text_combo[j] == h;
        if (!has_column)
            return sc_fail(err, SC_ERANGE, "%s: no text carries combination %d, so Z has no column for it", what, h);
    }
    for (int g = 0; g < p->n_classes + p->n_concepts; g++) {
        int is_class = g < p->n_classes, id = is_class ? g : g - p->n_classes, used = 0;
        for (int h = 0; h < p->H && !used; h++)
            used = (is_class ? p->combo_class[h] : p->combo_concept[h]) == id;
        if (!used)
            return sc_fail(err, SC_ERANGE, "%s: %s %d has no combination", what, is_class ? "class" : "concept", id);
    }
    int64_t n_img = p->N * p->H, n_txt = p->M * p->H;
    for (int64_t i = 0; i < n_img + n_txt; i++) {
        float v = i < n_img ? p->labels[i] : p->text_labels[i - n_img];
        if (v != 0 && v != 1)
            return sc_fail(err, SC_ERANGE, "%s: %s label %lld is %g, not 0 or 1", what, i < n_img ? "image" : "text",
                           (long long)(i < n_img ? i : i - n_img), (double)v);
    }
    return SC_OK;
}

/* The three cross-entropies of one image; adds weight · d/dz into dz.
 * work holds 4 blocks of `width` doubles, width >= H, L and C. */
static void image_cross_entropies(double ce[3], double *dz, const double *z, const float *g_row,
                                  const sc_loss_problem *p, const sc_loss_config *cfg, double weight,
                                  double *work, int width)
{
    int H = p->H, L = p->n_concepts, C = p->n_classes;
    double *t = work, *agg = work + width, *dagg = work + 2 * width;
    int *argmax = (int *)(work + 3 * width);
    for (int h = 0; h < H; h++) t[h] = g_row[h];
    ce[0] = cross_entropy(dz, t, z, H, weight);
    for (int level = 0; level < 2; level++) {
        const int *group_of = level == 0 ? p->combo_concept : p->combo_class;
        int G = level == 0 ? L : C;
        double lam = cfg->lambda[level];
        max_aggregate(agg, argmax, z, group_of, H, G);
        aggregate_targets(t, g_row, group_of, H, G);
        for (int g = 0; g < G; g++) dagg[g] = 0;
        ce[1 + level] = cross_entropy(dz ? dagg : NULL, t, agg, G, weight * lam);
        /* The max passes its gradient to the combination that won. */
        if (dz)
            for (int g = 0; g < G; g++) dz[argmax[g]] += dagg[g];
    }
}

/* @book begin scale-loss */
void sc_scale_loss(sc_loss_terms *terms, double *dQ, const float *Q, const sc_loss_problem *p,
                   const sc_loss_config *cfg, sc_arena *scratch)
{
    int64_t N = p->N, M = p->M;
    int H = p->H;
    int G = H > p->n_concepts ? H : p->n_concepts; /* widest of combos, concepts, classes */
    if (G < p->n_classes) G = p->n_classes;
    sc_arena_mark mark = sc_arena_get_mark(scratch);
    int64_t *first_col = sc_arena_alloc(scratch, sizeof(int64_t) * (size_t)H);
    double *z = sc_arena_alloc(scratch, sizeof(double) * (size_t)H);
    double *dz = sc_arena_alloc(scratch, sizeof(double) * (size_t)H);
    double *work = sc_arena_alloc(scratch, sizeof(double) * (size_t)(4 * G));
    SC_ASSERT(first_col && z && dz && work, "scratch arena cannot hold the loss buffers");
    sc_combo_columns(first_col, p->text_combo, M, H);
    if (dQ) memset(dQ, 0, sizeof(double) * (size_t)(N * M));

    /* Cross-entropies, image by image (Eq. 3, first three terms). */
    double ce_weight = cfg->reduction == SC_REDUCE_MEAN ? 1.0 / (double)N : 1.0;
    double ce_sum[3] = {0, 0, 0};
    for (int64_t i = 0; i < N; i++) {
        double ce[3];
        q_row_to_z(z, Q + i * M, first_col, H, cfg->logit_scale);
        for (int h = 0; h < H; h++) dz[h] = 0;
        image_cross_entropies(ce, dQ ? dz : NULL, z, p->labels + i * H, p, cfg, ce_weight, work, G);
        for (int k = 0; k < 3; k++) ce_sum[k] += ce[k];
        /* Z[i, h] = s Q[i, k(h)]: the gradient goes back to column k(h). */
        if (dQ)
            for (int h = 0; h < H; h++) dQ[i * M + first_col[h]] += cfg->logit_scale * dz[h];
    }
    terms->ce_combo = ce_weight * ce_sum[0];
    terms->ce_concept = ce_weight * ce_sum[1];
    terms->ce_class = ce_weight * ce_sum[2];

    /* SupCon with images as anchors (G, Q) and with texts (GT, Qᵀ). */
    terms->supcon_img = supcon_term(dQ, &terms->img_anchors, Q, p, cfg, 0, cfg->lambda[2], scratch);
    terms->supcon_txt = supcon_term(dQ, &terms->txt_anchors, Q, p, cfg, 1, cfg->lambda[3], scratch);

    terms->total = terms->ce_combo + cfg->lambda[0] * terms->ce_concept + cfg->lambda[1] * terms->ce_class +
                   cfg->lambda[2] * terms->supcon_img + cfg->lambda[3] * terms->supcon_txt;
    sc_arena_rewind(scratch, mark);
}
/* @book end scale-loss */

/* The loss as a tape node: the forward pass computes dTotal/dQ at once
 * (it costs little more than the loss) and keeps it; the backward pass
 * scales it by the upstream gradient. */
static void scale_loss_backward(sc_ctx *ctx, sc_node *n)
{
    float *dQ = sc__grad(ctx, n->in[0]);
    if (!dQ) return;
    const float *saved = n->saved;
    float upstream = n->out->grad[0];
    int64_t count = sc_numel(n->in[0]);
    for (int64_t i = 0; i < count; i++) dQ[i] += upstream * saved[i];
}

sc_tensor *sc_scale_loss_op(sc_ctx *ctx, sc_tensor *Q, const sc_loss_problem *p,
                            const sc_loss_config *cfg, sc_loss_terms *terms)
{
    SC_ASSERT(Q->ndim == 2 && Q->shape[0] == p->N && Q->shape[1] == p->M && sc_is_contiguous(Q),
              "Q must be a contiguous (%lld, %lld) tensor", (long long)p->N, (long long)p->M);
    sc_loss_terms local;
    if (!terms) terms = &local;
    int want_grad = ctx->grad_enabled && Q->requires_grad;
    int64_t count = p->N * p->M;
    sc_arena_mark mark = sc_arena_get_mark(&ctx->grad);
    double *dQ = want_grad ? sc_arena_alloc(&ctx->grad, sizeof(double) * (size_t)count) : NULL;
    SC_ASSERT(dQ || !want_grad, "arena '%s' cannot hold dQ", ctx->grad.name);
    sc_scale_loss(terms, dQ, Q->data, p, cfg, &ctx->grad);
    sc_tensor *out = sc_tensor_new(&ctx->act, 1, (int64_t[]){1}, "scale_loss");
    out->data[0] = (float)terms->total;
    float *saved = NULL;
    if (want_grad) {
        saved = sc__act_alloc(ctx, sizeof(float) * (size_t)count);
        for (int64_t i = 0; i < count; i++) saved[i] = (float)dQ[i];
    }
    sc_arena_rewind(&ctx->grad, mark);
    sc_node *n = sc__node_record(ctx, "scale_loss", scale_loss_backward, out, &Q, 1);
    if (n) n->saved = saved;
    return out;
}

/* ======================================================================== */
/* 6. Training SCALE on cached embeddings                                    */
/* ======================================================================== */

/* Training follows Fig. 1 on cached embeddings: a batch of images and the
 * texts paired with them, plus one canonical prompt per combination (so
 * that Z has a column for each, Sec. 2.2), pass through their adapters,
 * are L2-normalised, give Q = X̂ T̂ᵀ, and the loss of Eq. 3 is minimised
 * with Adam (lr 1e-3, 150 epochs, Sec. 2.3). All of it runs on the tape:
 * adapter → normalise → matmul → loss node. */

sc_train_config sc_train_defaults(void)
{
    sc_train_config c;
    c.loss = sc_loss_defaults();
    c.adapter = sc_adapter_defaults();
    c.image_adapter = 1;
    c.text_adapter = 1;
    c.epochs = 150;
    c.lr = 1e-3f;
    c.batch_size = 0;
    c.seed = 0;
    return c;
}

/* @book begin batch-size */
int sc_train_batch_size(int64_t N)
{
    int64_t b = 1;
    while (b * 2 <= N / 4) b *= 2;      /* about four or more steps per epoch */
    if (b < 8) b = 8;                    /* but enough samples to find positives */
    if (b > 64) b = 64;                  /* and no larger than the issue's 64 */
    return (int)(b < N ? b : N);
}
/* @book end batch-size */

sc_status sc_train_data_check(const sc_train_data *d, const char *what, sc_err *err)
{
    if (d->N < 1 || d->C < 1 || d->H < 1)
        return sc_fail(err, SC_ESHAPE, "%s: empty training data (N=%lld C=%lld H=%d)", what, (long long)d->N,
                       (long long)d->C, d->H);
    /* The loss check on the first batch shape covers indices and labels of
     * the combinations; the per-image arrays are checked here. */
    for (int64_t i = 0; i < d->N; i++)
        if (d->text_combo[i] < 0 || d->text_combo[i] >= d->H)
            return sc_fail(err, SC_ERANGE, "%s: text of image %lld carries combination %d, outside [0, %d)", what,
                           (long long)i, d->text_combo[i], d->H);
    int *canonical = malloc(sizeof(int) * (size_t)d->H);
    if (!canonical) return sc_fail(err, SC_ENOMEM, "%s: out of memory", what);
    for (int h = 0; h < d->H; h++) canonical[h] = h;
    sc_loss_problem p = {d->N, d->H, d->H, d->n_classes, d->n_concepts, canonical, d->labels, d->labels,
                         d->combo_class, d->combo_concept};
    sc_status st = sc_loss_problem_check(&p, what, err);
    if (st == SC_OK && d->text_labels) {
        p.labels = d->text_labels;
        st = sc_loss_problem_check(&p, what, err);
    }
    free(canonical);
    return st;
}

sc_status sc_scale_model_init(sc_scale_model *m, int64_t C, const sc_train_config *cfg, sc_err *err)
{
    memset(m, 0, sizeof *m);
    if (!cfg->image_adapter && !cfg->text_adapter)
        return sc_fail(err, SC_EARG, "training needs at least one adapter (image or text)");
    if (cfg->adapter.reduction < 1 || C % cfg->adapter.reduction != 0)
        return sc_fail(err, SC_EARG, "embedding width %lld is not a multiple of the reduction %d", (long long)C,
                       cfg->adapter.reduction);
    if (!(cfg->adapter.alpha_init > 0 && cfg->adapter.alpha_init < 1))
        return sc_fail(err, SC_EARG, "alpha must start inside (0, 1), not %g", (double)cfg->adapter.alpha_init);
    m->cfg = *cfg;
    m->C = C;
    sc_arena_init(&m->weights, "adapter weights", (size_t)4 << 20, 0);
    /* One stream initialises the adapters, a second one shuffles; both
     * follow from the seed. */
    sc_rng init;
    sc_rng_seed(&init, cfg->seed);
    sc_rng_seed(&m->rng, cfg->seed ^ 0x5CA1Eull);
    if (cfg->image_adapter) {
        sc_adapter_init(&m->image, &m->weights, C, cfg->adapter, &init, "image_adapter");
        m->params[m->n_params++] = m->image.w1;
        m->params[m->n_params++] = m->image.w2;
        m->params[m->n_params++] = m->image.alpha;
    }
    if (cfg->text_adapter) {
        sc_adapter_init(&m->text, &m->weights, C, cfg->adapter, &init, "text_adapter");
        m->params[m->n_params++] = m->text.w1;
        m->params[m->n_params++] = m->text.w2;
        m->params[m->n_params++] = m->text.alpha;
    }
    sc_status st = sc_optim_init(&m->opt, sc_opt_defaults(SC_OPT_ADAM, cfg->lr), m->params, m->n_params, err);
    if (st) sc_scale_model_free(m);
    return st;
}

void sc_scale_model_free(sc_scale_model *m)
{
    sc_optim_free(&m->opt);
    sc_arena_free(&m->weights);
    m->n_params = 0;
}

/* Adapt (when that branch has an adapter) and L2-normalise rows x (B, C). */
static sc_tensor *adapt_normalise(sc_ctx *ctx, const sc_adapter *ad, int use, sc_tensor *x)
{
    return sc_l2_normalize(ctx, use ? sc_adapter_apply(ctx, ad, x) : x);
}

/* One batch: the images `index[0..B)`, their paired texts and the H
 * canonical prompts, as the tensors and the loss problem of Sec. 2.2.
 * When the paired texts are themselves canonical prompts (no text_emb),
 * the batch's M = B + H text rows are copies of the H prompt rows: the
 * text adapter then runs on the H prompts only and Q's columns are
 * gathered afterwards (prompt_row, see batch_similarities). */
typedef struct {
    sc_tensor *images;     /* (B, C) */
    sc_tensor *texts;      /* (B + H, C) paired texts, then canonical prompts; NULL when gathered */
    int32_t *prompt_row;   /* (B + H) the prompt each text row copies */
    int *text_combo;       /* (B + H) */
    float *labels;         /* (B, H) */
    float *text_labels;    /* (B + H, H) */
    sc_loss_problem problem;
} train_batch;

static void gather_batch(train_batch *b, sc_ctx *ctx, const sc_train_data *d, const int *index, int64_t B)
{
    int64_t C = d->C, H = d->H, M = B + H;
    b->images = sc_tensor_new(&ctx->act, 2, (int64_t[]){B, C}, "images");
    b->texts = d->text_emb ? sc_tensor_new(&ctx->act, 2, (int64_t[]){M, C}, "texts") : NULL;
    b->prompt_row = sc__act_alloc(ctx, sizeof(int32_t) * (size_t)M);
    b->text_combo = sc__act_alloc(ctx, sizeof(int) * (size_t)M);
    b->labels = sc__act_alloc(ctx, sizeof(float) * (size_t)(B * H));
    b->text_labels = sc__act_alloc(ctx, sizeof(float) * (size_t)(M * H));
    memset(b->text_labels, 0, sizeof(float) * (size_t)(M * H));
    for (int64_t r = 0; r < M; r++) {
        int64_t i = r < B ? index[r] : -1;             /* image row, or a canonical prompt */
        int h = r < B ? d->text_combo[i] : (int)(r - B);
        b->text_combo[r] = h;
        b->prompt_row[r] = h;
        if (b->texts) {
            const float *text = r < B ? d->text_emb + i * C : d->prompt_emb + (int64_t)h * C;
            memcpy(b->texts->data + r * C, text, sizeof(float) * (size_t)C);
        }
        if (r < B && d->text_labels) memcpy(b->text_labels + r * H, d->text_labels + i * H, sizeof(float) * (size_t)H);
        else b->text_labels[r * H + h] = 1;
        if (r < B) {
            memcpy(b->images->data + r * C, d->image_emb + i * C, sizeof(float) * (size_t)C);
            memcpy(b->labels + r * H, d->labels + i * H, sizeof(float) * (size_t)H);
        }
    }
    sc_loss_problem p = {B, M, d->H, d->n_classes, d->n_concepts, b->text_combo, b->labels, b->text_labels,
                         d->combo_class, d->combo_concept};
    b->problem = p;
}

/* Q = x̂ t̂ᵀ of a batch, (B, B + H), from the normalised image rows x̂.
 * When the texts are copies of the H prompts (no text_emb), so are Q's
 * columns: the H distinct ones, û x̂ᵀ as rows of Qᵀ, are computed once and
 * gathered, and the gather's backward adds the copies' gradients together.
 * That is the same Q and the same gradients for H columns of work instead
 * of B + H. */
static sc_tensor *batch_similarities(sc_ctx *ctx, const sc_scale_model *m, const sc_train_data *d,
                                     const train_batch *b, sc_tensor *x)
{
    if (b->texts) return sc_matmul(ctx, x, adapt_normalise(ctx, &m->text, m->cfg.text_adapter, b->texts), 0, 1);
    sc_tensor *prompts = sc_tensor_wrap(&ctx->act, (float *)d->prompt_emb, 2, (int64_t[]){d->H, d->C}, "prompts");
    sc_tensor *unique = adapt_normalise(ctx, &m->text, m->cfg.text_adapter, prompts);
    sc_tensor *distinct = sc_matmul(ctx, unique, x, 0, 1);                     /* (H, B) */
    sc_tensor *Qt = sc_embedding(ctx, distinct, b->prompt_row, b->problem.M);  /* (B + H, B) */
    return sc_contiguous(ctx, sc_transpose(ctx, Qt, 0, 1));
}

/* @book begin batch-loss */
sc_tensor *sc_scale_batch_loss(sc_ctx *ctx, const sc_scale_model *m, const sc_train_data *d, const int *index,
                               int64_t B, sc_loss_terms *terms)
{
    SC_ASSERT(d->C == m->C, "data of width %lld for a model of width %lld", (long long)d->C, (long long)m->C);
    train_batch b;
    gather_batch(&b, ctx, d, index, B);
    sc_tensor *x = adapt_normalise(ctx, &m->image, m->cfg.image_adapter, b.images);
    sc_tensor *Q = batch_similarities(ctx, m, d, &b, x);   /* (B, B + H) */
    return sc_scale_loss_op(ctx, Q, &b.problem, &m->cfg.loss, terms);
}
/* @book end batch-loss */

/* @book begin train-epoch */
double sc_scale_train_epoch(sc_scale_model *m, sc_ctx *ctx, const sc_train_data *d)
{
    int64_t N = d->N, B = m->cfg.batch_size > 0 ? m->cfg.batch_size : sc_train_batch_size(N);
    int *order = malloc(sizeof(int) * (size_t)N);
    SC_ASSERT(order != NULL, "no memory for %lld indices", (long long)N);
    for (int64_t i = 0; i < N; i++) order[i] = (int)i;
    sc_rng_shuffle(&m->rng, order, (int)N);
    double loss_sum = 0;
    int64_t steps = 0;
    sc_optim_zero_grad(&m->opt);   /* then each step leaves them at zero */
    for (int64_t start = 0; start < N; start += B) {
        int64_t size = N - start < B ? N - start : B;    /* the last batch may be short */
        sc_ctx_reset(ctx);
        sc_tensor *loss = sc_scale_batch_loss(ctx, m, d, order + start, size, NULL);
        sc_backward(ctx, loss);
        sc_optim_step_zero_grad(&m->opt);
        if (m->cfg.image_adapter) sc_adapter_project(&m->image);
        if (m->cfg.text_adapter) sc_adapter_project(&m->text);
        loss_sum += loss->data[0];
        steps++;
    }
    sc_ctx_reset(ctx);
    free(order);
    m->epoch++;
    return steps ? loss_sum / (double)steps : 0;
}
/* @book end train-epoch */

/* The loss of one batch without a tape, for finite differences. */
static double batch_total(sc_ctx *ctx, const sc_scale_model *m, const sc_train_data *d, const int *index, int64_t B)
{
    int was = sc_ctx_set_grad(ctx, 0);
    sc_ctx_reset(ctx);
    sc_loss_terms t;
    sc_scale_batch_loss(ctx, m, d, index, B, &t);
    sc_ctx_set_grad(ctx, was);
    return t.total;
}

/* n distinct positions among the `total` entries of all parameters, in
 * increasing order, by Floyd's sampling without replacement (each set of n
 * equally likely; n = total takes them all). Positions go to out[].index. */
static void pick_entries(sc_grad_sample *out, int64_t n, int64_t total, uint64_t seed)
{
    SC_ASSERT(total <= UINT32_MAX, "%lld parameters to sample from", (long long)total);
    uint8_t *taken = calloc((size_t)total, 1);
    SC_ASSERT(taken != NULL, "no memory to sample %lld parameters", (long long)total);
    sc_rng rng;
    sc_rng_seed(&rng, seed);
    for (int64_t j = total - n; j < total; j++) {
        int64_t t = sc_rng_below(&rng, (uint32_t)(j + 1));
        taken[taken[t] ? j : t] = 1;
    }
    for (int64_t pos = 0, s = 0; pos < total; pos++)
        if (taken[pos]) out[s++].index = pos;
    free(taken);
}

/* @book begin grad-check */
int64_t sc_scale_grad_check(sc_grad_sample *out, int64_t n, sc_scale_model *m, sc_ctx *ctx,
                            const sc_train_data *d, const int *index, int64_t B, float step, uint64_t seed)
{
    int64_t total = 0;
    for (int k = 0; k < m->n_params; k++) total += sc_numel(m->params[k]);
    if (n > total) n = total;
    pick_entries(out, n, total, seed);
    for (int64_t s = 0, k = 0, first = 0; s < n; s++) { /* position → (tensor, entry) */
        while (out[s].index >= first + sc_numel(m->params[k])) first += sc_numel(m->params[k++]);
        out[s].param = (int)k;
        out[s].index -= first;
    }
    sc_optim_zero_grad(&m->opt);                           /* the tape's answer */
    sc_ctx_reset(ctx);
    sc_backward(ctx, sc_scale_batch_loss(ctx, m, d, index, B, NULL));
    for (int64_t s = 0; s < n; s++) out[s].tape = m->params[out[s].param]->grad[out[s].index];
    sc_optim_zero_grad(&m->opt);
    for (int64_t s = 0; s < n; s++) {                      /* central differences */
        float *p = &m->params[out[s].param]->data[out[s].index], keep = *p;
        *p = keep + step;
        double p_up = *p, L_up = batch_total(ctx, m, d, index, B);
        *p = keep - step;
        double p_down = *p, L_down = batch_total(ctx, m, d, index, B);
        *p = keep;
        out[s].fd = (L_up - L_down) / (p_up - p_down); /* the steps as rounded to float */
    }
    sc_ctx_reset(ctx);
    return n;
}
/* @book end grad-check */

/* ---- checkpoints ----
 * Everything that decides the next update is saved: the parameters, Adam's
 * moments and step count, the epoch and the shuffling generator. The
 * safetensors writer stores float32 tensors only, so the counters travel
 * in "scale.state" as exact small integers (the generator's 64-bit state
 * in four 16-bit pieces). */

enum {
    STATE_FORMAT, STATE_EPOCH, STATE_ADAM_STEP, STATE_RNG0, STATE_RNG1, STATE_RNG2, STATE_RNG3,
    STATE_ALPHA_MODE, STATE_RELU_AFTER_UP, STATE_REDUCTION, STATE_IMAGE_ADAPTER, STATE_TEXT_ADAPTER,
    STATE_COUNT
};
#define CHECKPOINT_FORMAT 1
#define CHECKPOINT_MAX_COUNT (1 << 24) /* the largest integer every float32 holds */

sc_status sc_scale_model_save(const sc_scale_model *m, const char *path, sc_err *err)
{
    if (m->epoch >= CHECKPOINT_MAX_COUNT || m->opt.step >= CHECKPOINT_MAX_COUNT)
        return sc_fail(err, SC_ERANGE, "%s: too many epochs or steps to record", path);
    sc_arena a;
    sc_arena_init(&a, "checkpoint", (size_t)1 << 20, 0);
    sc_tensor *state = sc_tensor_new(&a, 1, (int64_t[]){STATE_COUNT}, "scale.state");
    float *st = state->data;
    st[STATE_FORMAT] = CHECKPOINT_FORMAT;
    st[STATE_EPOCH] = (float)m->epoch;
    st[STATE_ADAM_STEP] = (float)m->opt.step;
    for (int k = 0; k < 4; k++) st[STATE_RNG0 + k] = (float)((m->rng.state >> (16 * k)) & 0xFFFF);
    st[STATE_ALPHA_MODE] = (float)m->cfg.adapter.alpha_mode;
    st[STATE_RELU_AFTER_UP] = (float)m->cfg.adapter.relu_after_up;
    st[STATE_REDUCTION] = (float)m->cfg.adapter.reduction;
    st[STATE_IMAGE_ADAPTER] = (float)m->cfg.image_adapter;
    st[STATE_TEXT_ADAPTER] = (float)m->cfg.text_adapter;

    /* parameters, then each one's two moments, then the state */
    const char *names[3 * 6 + 1];
    const sc_tensor *tensors[3 * 6 + 1];
    enum { NAME_BYTES = 2 * SC_NAME_MAX };
    char *moment_names = sc_arena_alloc(&a, (size_t)(2 * m->n_params) * NAME_BYTES);
    int n = 0;
    for (int i = 0; i < m->n_params; i++) {
        const sc_tensor *p = m->params[i];
        names[n] = p->name;
        tensors[n++] = p;
        for (int k = 0; k < 2; k++) {
            char *name = moment_names + (2 * i + k) * NAME_BYTES;
            snprintf(name, NAME_BYTES, "adam.%c.%s", k ? 'v' : 'm', p->name);
            sc_tensor *moment = sc_tensor_wrap(&a, k ? m->opt.v[i] : m->opt.m[i], p->ndim, p->shape, name);
            names[n] = name;
            tensors[n++] = moment;
        }
    }
    names[n] = "scale.state";
    tensors[n++] = state;
    sc_status status = sc_safetensors_write(path, names, tensors, n, err);
    sc_arena_free(&a);
    return status;
}

/* Copy tensor `name` of the checkpoint into dst, which must have its shape. */
static sc_status read_exact(const sc_weights *w, const char *path, const char *name, float *dst, int ndim,
                            const int64_t *shape, sc_err *err)
{
    const sc_weight *t = sc_weights_find(w, name);
    if (!t) return sc_fail(err, SC_EFORMAT, "%s: no tensor '%s'; not a SCALE checkpoint of this kind", path, name);
    int same = t->ndim == ndim;
    for (int k = 0; same && k < ndim; k++) same = t->shape[k] == shape[k];
    if (!same) return sc_fail(err, SC_ESHAPE, "%s: tensor '%s' has another shape than the model's", path, name);
    sc_weight_to_f32(t, dst);
    return SC_OK;
}

/* The architecture recorded in "scale.state", checked value by value. */
static sc_status read_state(const sc_weights *w, const char *path, float *st, sc_train_config *cfg, sc_err *err)
{
    sc_status status = read_exact(w, path, "scale.state", st, 1, (int64_t[]){STATE_COUNT}, err);
    if (status) return status;
    for (int k = 0; k < STATE_COUNT; k++)
        if (!(st[k] >= 0 && st[k] < CHECKPOINT_MAX_COUNT && st[k] == floorf(st[k])))
            return sc_fail(err, SC_EFORMAT, "%s: scale.state[%d] is %g, not a count", path, k, (double)st[k]);
    if (st[STATE_FORMAT] != CHECKPOINT_FORMAT)
        return sc_fail(err, SC_EUNSUPPORTED, "%s: checkpoint format %g, this build reads %d", path,
                       (double)st[STATE_FORMAT], CHECKPOINT_FORMAT);
    if (st[STATE_ALPHA_MODE] > SC_ALPHA_RAW || st[STATE_RELU_AFTER_UP] > 1 || st[STATE_REDUCTION] < 1 ||
        st[STATE_IMAGE_ADAPTER] > 1 || st[STATE_TEXT_ADAPTER] > 1 ||
        !(st[STATE_IMAGE_ADAPTER] || st[STATE_TEXT_ADAPTER]) || st[STATE_RNG0] > 0xFFFF ||
        st[STATE_RNG1] > 0xFFFF || st[STATE_RNG2] > 0xFFFF || st[STATE_RNG3] > 0xFFFF)
        return sc_fail(err, SC_EFORMAT, "%s: scale.state holds an impossible configuration", path);
    cfg->adapter.alpha_mode = (sc_alpha_mode)st[STATE_ALPHA_MODE];
    cfg->adapter.relu_after_up = (int)st[STATE_RELU_AFTER_UP];
    cfg->adapter.reduction = (int)st[STATE_REDUCTION];
    cfg->image_adapter = (int)st[STATE_IMAGE_ADAPTER];
    cfg->text_adapter = (int)st[STATE_TEXT_ADAPTER];
    return SC_OK;
}

sc_status sc_scale_model_load(sc_scale_model *m, const char *path, const sc_train_config *base, sc_err *err)
{
    memset(m, 0, sizeof *m);
    sc_weights *w;
    sc_status status = sc_weights_open(&w, path, err);
    if (status) return status;
    float st[STATE_COUNT];
    sc_train_config cfg = *base;
    status = read_state(w, path, st, &cfg, err);
    /* The width C is the second dimension of either adapter's W1 (R, C). */
    const sc_weight *w1 = sc_weights_find(w, cfg.image_adapter ? "image_adapter.w1" : "text_adapter.w1");
    if (!status && (!w1 || w1->ndim != 2 || w1->shape[1] < 1 || w1->shape[1] > (1 << 20)))
        status = sc_fail(err, SC_EFORMAT, "%s: no adapter weight of shape (R, C)", path);
    if (!status) status = sc_scale_model_init(m, w1->shape[1], &cfg, err);
    for (int i = 0; !status && i < m->n_params; i++) {
        sc_tensor *p = m->params[i];
        char name[2 * SC_NAME_MAX];
        status = read_exact(w, path, p->name, p->data, p->ndim, p->shape, err);
        for (int k = 0; !status && k < 2; k++) {
            snprintf(name, sizeof name, "adam.%c.%s", k ? 'v' : 'm', p->name);
            status = read_exact(w, path, name, k ? m->opt.v[i] : m->opt.m[i], p->ndim, p->shape, err);
        }
    }
    if (!status) {
        m->epoch = (int64_t)st[STATE_EPOCH];
        m->opt.step = (int64_t)st[STATE_ADAM_STEP];
        m->rng.state = 0;
        for (int k = 0; k < 4; k++) m->rng.state |= (uint64_t)st[STATE_RNG0 + k] << (16 * k);
        if (m->rng.state == 0) status = sc_fail(err, SC_EFORMAT, "%s: the shuffle generator's state is zero", path);
    }
    if (status && m->n_params) sc_scale_model_free(m);
    sc_weights_close(w);
    return status;
}

/* ======================================================================== */
/* 7. Prediction and explanation                                             */
/* ======================================================================== */

/* At test time each image is compared with the canonical prompt of every
 * combination: Q (N, H), whose scaled columns are Z directly. Classes and
 * concepts are predicted by the same max aggregation as in training
 * (sc_scale_scores), and the top combinations explain the prediction. */

/* Adapt and normalise n rows without recording, into out (n, C). */
static void embed_rows(float *out, const sc_adapter *ad, int use, const float *x, int64_t n, int64_t C)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_ctx_set_grad(&ctx, 0);
    sc_tensor *in = sc_tensor_wrap(&ctx.act, (float *)x, 2, (int64_t[]){n, C}, "rows");
    sc_tensor *y = adapt_normalise(&ctx, ad, use, in);
    memcpy(out, y->data, sizeof(float) * (size_t)(n * C));
    sc_ctx_free(&ctx);
}

void sc_scale_similarity(float *Q, const sc_scale_model *m, const float *image_emb, int64_t N,
                         const float *prompt_emb, int H)
{
    int64_t C = m->C;
    float *x = malloc(sizeof(float) * (size_t)(N * C)), *t = malloc(sizeof(float) * (size_t)H * (size_t)C);
    SC_ASSERT(x && t, "no memory to embed %lld images", (long long)N);
    embed_rows(x, &m->image, m->cfg.image_adapter, image_emb, N, C);
    embed_rows(t, &m->text, m->cfg.text_adapter, prompt_emb, H, C);
    sc_gemm(0, 1, N, H, C, x, C, t, C, Q, H, 0);
    free(x);
    free(t);
}

/* ======================================================================== */
/* 8. Metrics                                                                */
/* ======================================================================== */

/* The paper reports mean accuracy over classes, macro recall, macro F1 and
 * macro AUC (Sec. 2.3.2). Each is computed per class from a one-vs-rest
 * view of (N, K) matrices, then averaged. The conventions follow
 * scikit-learn, whose numbers the tests compare against: a class with no
 * positives has recall 0 and F1 0 (zero_division=0), and the AUC mean runs
 * over the classes where both labels occur. */

/* One (score, label) pair, sorted by score for the rank statistic. */
typedef struct {
    float score;
    uint8_t positive;
} scored_label;

static int compare_score(const void *a, const void *b)
{
    float x = ((const scored_label *)a)->score, y = ((const scored_label *)b)->score;
    return (x > y) - (x < y);
}

/* @book begin roc-auc */
double sc_roc_auc(const float *score, const uint8_t *truth, int64_t n, int64_t stride)
{
    scored_label *items = malloc(sizeof *items * (size_t)(n > 0 ? n : 1));
    SC_ASSERT(items != NULL, "no memory for %lld scores", (long long)n);
    int64_t n_pos = 0;
    for (int64_t i = 0; i < n; i++) {
        items[i].score = score[i * stride];
        /* qsort needs a consistent order, which NaN breaks. */
        SC_ASSERT(!isnan(items[i].score), "score %lld is NaN", (long long)i);
        items[i].positive = truth[i * stride] != 0;
        n_pos += items[i].positive;
    }
    int64_t n_neg = n - n_pos;
    if (n_pos == 0 || n_neg == 0) {
        free(items);
        return NAN;
    }
    qsort(items, (size_t)n, sizeof *items, compare_score);
    /* Ranks 1..n in ascending score; a run of equal scores shares the mean
     * of its ranks, which is what counts a tied (positive, negative) pair
     * as one half. */
    double rank_sum_pos = 0;
    for (int64_t lo = 0; lo < n;) {
        int64_t hi = lo;
        while (hi + 1 < n && items[hi + 1].score == items[lo].score) hi++;
        double mean_rank = 0.5 * (double)(lo + 1 + hi + 1);
        for (int64_t i = lo; i <= hi; i++)
            if (items[i].positive) rank_sum_pos += mean_rank;
        lo = hi + 1;
    }
    free(items);
    /* Mann-Whitney U of the positives, divided by the number of pairs. */
    double u = rank_sum_pos - 0.5 * (double)n_pos * (double)(n_pos + 1);
    return u / ((double)n_pos * (double)n_neg);
}
/* @book end roc-auc */

void sc_predict_argmax(uint8_t *pred, const float *scores, int64_t N, int K)
{
    for (int64_t i = 0; i < N; i++) {
        const float *row = scores + i * K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (row[k] > row[best]) best = k;
        for (int k = 0; k < K; k++) pred[i * K + k] = k == best;
    }
}

void sc_predict_threshold(uint8_t *pred, const float *scores, int64_t N, int K, float threshold)
{
    for (int64_t i = 0; i < N * K; i++) pred[i] = scores[i] >= threshold;
}

/* @book begin metrics-eval */
void sc_metrics_eval(sc_metrics *m, const float *scores, const uint8_t *truth, const uint8_t *pred,
                     int64_t N, int K)
{
    double accuracy = 0, recall = 0, f1 = 0, auc = 0;
    int auc_classes = 0;
    for (int k = 0; k < K; k++) {
        /* The confusion counts of class k against the rest. */
        int64_t tp = 0, fp = 0, fn = 0, tn = 0;
        for (int64_t i = 0; i < N; i++) {
            int y = truth[i * K + k] != 0, p = pred[i * K + k] != 0;
            tp += y && p;
            fp += !y && p;
            fn += y && !p;
            tn += !y && !p;
        }
        accuracy += N ? (double)(tp + tn) / (double)N : 0;
        recall += tp + fn ? (double)tp / (double)(tp + fn) : 0;
        f1 += 2 * tp + fp + fn ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0;
        double a = sc_roc_auc(scores + k, truth + k, N, K);
        if (!isnan(a)) {
            auc += a;
            auc_classes++;
        }
    }
    m->accuracy = K ? accuracy / K : 0;
    m->macro_recall = K ? recall / K : 0;
    m->macro_f1 = K ? f1 / K : 0;
    m->auc = auc_classes ? auc / auc_classes : NAN;
    m->auc_classes = auc_classes;
}
/* @book end metrics-eval */

/* Hamamci et al.'s protocol for a VLM's AUC: a softmax over the two prompt
 * scores, of which the "present" entry is kept. For two entries that softmax
 * is the logistic function of their difference. */
void sc_two_prompt_scores(float *out, const float *sim_present, const float *sim_none, int64_t N,
                          int K, float logit_scale)
{
    for (int64_t i = 0; i < N; i++)
        for (int k = 0; k < K; k++) {
            double d = (double)logit_scale * ((double)sim_present[i * K + k] - (double)sim_none[i]);
            out[i * K + k] = (float)(1.0 / (1.0 + exp(-d)));
        }
}

/* ======================================================================== */
/* 9. Baselines: zero-shot, concept presence, linear probe                   */
/* ======================================================================== */

/* The paper compares SCALE with the frozen VLM used zero-shot, with a
 * linear probe on the frozen image features and with prompt tuning
 * (CoOp, nn.c section 9); Sec. 2.3. Everything here works on cached
 * embeddings (N, E): the encoders ran once. book/17 gives each baseline's
 * equation next to this code. */

void sc_normalize_rows(float *out, const float *x, int64_t n, int64_t E)
{
    for (int64_t i = 0; i < n; i++) {
        double ss = 0;
        for (int64_t j = 0; j < E; j++) ss += (double)x[i * E + j] * x[i * E + j];
        double inv = ss > 0 ? 1.0 / sqrt(ss) : 0;
        for (int64_t j = 0; j < E; j++) out[i * E + j] = (float)(x[i * E + j] * inv);
    }
}

/* @book begin prompt-ensemble */
void sc_prompt_ensemble(float *out, const float *emb, int V, int64_t K, int64_t E)
{
    double *sum = calloc((size_t)E + 1, sizeof(double));
    SC_ASSERT(sum != NULL, "no memory for a prompt ensemble of width %lld", (long long)E);
    for (int64_t k = 0; k < K; k++) {
        memset(sum, 0, sizeof(double) * (size_t)E);
        for (int v = 0; v < V; v++) {
            const float *row = emb + ((int64_t)v * K + k) * E;
            double ss = 0;
            for (int64_t j = 0; j < E; j++) ss += (double)row[j] * row[j];
            double inv = ss > 0 ? 1.0 / sqrt(ss) : 0;      /* each variant counts once */
            for (int64_t j = 0; j < E; j++) sum[j] += row[j] * inv;
        }
        double ss = 0;
        for (int64_t j = 0; j < E; j++) ss += sum[j] * sum[j];
        double inv = ss > 0 ? 1.0 / sqrt(ss) : 0;          /* back onto the sphere */
        for (int64_t j = 0; j < E; j++) out[k * E + j] = (float)(sum[j] * inv);
    }
    free(sum);
}
/* @book end prompt-ensemble */

/* @book begin vlm-scores */
void sc_vlm_scores(float *logits, float *two_prompt, const float *img, int64_t N, const float *prompts, int K,
                   const float *none, int64_t E, float logit_scale)
{
    float *sim = malloc(sizeof(float) * (size_t)(N * K + N) + 1);
    SC_ASSERT(sim != NULL, "no memory for %lld x %d similarities", (long long)N, K);
    float *sim_none = sim + N * K;
    sc_gemm(0, 1, N, K, E, img, E, prompts, E, sim, K, 0);      /* cosines (N, K) */
    if (logits)
        for (int64_t i = 0; i < N * K; i++) logits[i] = logit_scale * sim[i];
    if (two_prompt && none) {
        sc_gemm(0, 1, N, 1, E, img, E, none, E, sim_none, 1, 0);
        sc_two_prompt_scores(two_prompt, sim, sim_none, N, K, logit_scale);
    }
    free(sim);
}
/* @book end vlm-scores */

void sc_group_max(float *out, const float *x, int64_t N, int H, const int *group_of, int G)
{
    for (int64_t i = 0; i < N; i++) {
        for (int g = 0; g < G; g++) out[i * G + g] = -INFINITY;
        for (int h = 0; h < H; h++) {
            float *o = &out[i * G + group_of[h]];
            if (x[i * H + h] > *o) *o = x[i * H + h];
        }
    }
}

/* MONET's concept presence score (Kim et al. 2024, the tutorial's
 * calculate_concept_presence_score with one template group): how much
 * closer the image is to the concept's prompts than to prompts that name
 * no concept at all, as a two-way softmax with MONET's temperature. */
/* @book begin concept-presence */
void sc_concept_presence(float *out, const float *img, int64_t N, const float *targets, int V, int K,
                         const float *refs, int R, int64_t E, double temp)
{
    float *t_sim = malloc(sizeof(float) * (size_t)((int64_t)V * K * N + (int64_t)R * N) + 1);
    SC_ASSERT(t_sim != NULL, "no memory for concept presence scores");
    float *r_sim = t_sim + (int64_t)V * K * N;
    sc_gemm(0, 1, N, (int64_t)V * K, E, img, E, targets, E, t_sim, (int64_t)V * K, 0); /* (N, V·K) */
    sc_gemm(0, 1, N, R, E, img, E, refs, E, r_sim, R, 0);                              /* (N, R) */
    for (int64_t i = 0; i < N; i++) {
        double ref = 0;
        for (int r = 0; r < R; r++) ref += r_sim[i * R + r];
        ref /= R;
        for (int k = 0; k < K; k++) {
            double target = 0;
            for (int v = 0; v < V; v++) target += t_sim[i * V * K + (int64_t)v * K + k];
            target /= V;
            /* softmax([target, ref] / temp)[0] = logistic((target − ref) / temp) */
            out[i * K + k] = (float)(1.0 / (1.0 + exp(-(target - ref) / temp)));
        }
    }
    free(t_sim);
}
/* @book end concept-presence */

/* ---- the linear probe ----
 * Logistic regression on frozen image features x (E): z = W x + b with
 * W (K, E), b (K), one output per combination of every task side by side
 * (tasks are blocks of columns). Two losses:
 *   BCE      every output is its own yes/no problem (the paper: "typically
 *            using the binary cross-entropy loss"); p = σ(z)
 *   softmax  cross-entropy over the outputs of each block (exclusive
 *            labels, as Derm7p's criteria); p = softmax(z_block)
 * plus (λ/2)‖W‖² (the bias is not penalised), minimised by Adam over
 * shuffled mini-batches. Inverse-frequency weighting multiplies every
 * term by the inverse of how often its label occurs in the training set,
 * normalised so that a balanced set gets weight 1. */

sc_probe_config sc_probe_defaults(void)
{
    sc_probe_config c;
    c.loss = SC_PROBE_BCE;
    c.weighted = 0;
    c.epochs = 150;    /* Sec. 2.3: all models, 150 epochs at lr 0.001 */
    c.lr = 1e-3f;
    c.l2 = 1e-4f;
    c.batch_size = 0;
    c.seed = 0;
    return c;
}

void sc_probe_free(sc_probe *p)
{
    sc_optim_free(&p->opt);
    sc_arena_free(&p->arena);
    memset(p, 0, sizeof *p);
}

/* Loss weights from the label counts of the training set (N, K):
 * BCE       w_pos[k] = N / (2 n_k), w_neg[k] = N / (2 (N − n_k))  (each side of
 *           output k carries half the total weight)
 * softmax   w_pos[k] = n_b / (K_b n_k)  for the n_b images labelled in block b
 *           and its K_b labels that occur (scikit-learn's "balanced")
 * and all ones when unweighted or when a side never occurs. */
/* @book begin probe-weights */
static void probe_weights(sc_probe *p, const uint8_t *Y, int64_t N)
{
    int K = p->K;
    for (int k = 0; k < K; k++) p->w_pos[k] = p->w_neg[k] = 1;
    if (!p->cfg.weighted) return;
    for (int b = 0; b < p->n_blocks; b++) {
        int k0 = p->block_offset[b], k1 = p->block_offset[b + 1], present = 0;
        int64_t labelled = 0;
        for (int64_t i = 0; i < N; i++) {
            int any = 0;
            for (int k = k0; k < k1; k++) any |= Y[i * K + k] != 0;
            labelled += any;
        }
        for (int k = k0; k < k1; k++) {
            int64_t n_k = 0;
            for (int64_t i = 0; i < N; i++) n_k += Y[i * K + k] != 0;
            present += n_k > 0;
            p->w_pos[k] = (float)n_k;  /* counts for now */
        }
        for (int k = k0; k < k1; k++) {
            double n_k = p->w_pos[k];
            if (p->cfg.loss == SC_PROBE_BCE) {
                p->w_pos[k] = n_k > 0 && n_k < N ? (float)(N / (2 * n_k)) : 1;
                p->w_neg[k] = n_k > 0 && n_k < N ? (float)(N / (2 * (N - n_k))) : 1;
            } else {
                p->w_pos[k] = n_k > 0 ? (float)(labelled / (present * n_k)) : 1;
            }
        }
    }
}
/* @book end probe-weights */

/* Probabilities from logits z (n, K): σ(z) or the softmax of each block. */
static void probe_probabilities(const sc_probe *p, float *prob, const float *z, int64_t n)
{
    int K = p->K;
    for (int64_t i = 0; i < n; i++) {
        const float *zi = z + i * K;
        float *pi = prob + i * K;
        if (p->cfg.loss == SC_PROBE_BCE) {
            for (int k = 0; k < K; k++) pi[k] = (float)(1.0 / (1.0 + exp(-(double)zi[k])));
            continue;
        }
        for (int b = 0; b < p->n_blocks; b++) {
            int k0 = p->block_offset[b], k1 = p->block_offset[b + 1];
            double m = zi[k0], sum = 0;
            for (int k = k0 + 1; k < k1; k++) m = zi[k] > m ? zi[k] : m;
            for (int k = k0; k < k1; k++) sum += exp(zi[k] - m);
            for (int k = k0; k < k1; k++) pi[k] = (float)(exp(zi[k] - m) / sum);
        }
    }
}

/* dL/dz (n, K) of a mini-batch of n rows from their probabilities, for
 * the mean over the batch; returns the batch's loss. */
/* @book begin probe-gradient */
static double probe_loss_grad(const sc_probe *p, float *dz, const float *prob, const uint8_t *Y, int64_t n)
{
    int K = p->K;
    double loss = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *pi = prob + i * K;
        const uint8_t *yi = Y + i * K;
        float *gi = dz + i * K;
        if (p->cfg.loss == SC_PROBE_BCE) {
            for (int k = 0; k < K; k++) {
                double w = yi[k] ? p->w_pos[k] : p->w_neg[k], q = yi[k] ? pi[k] : 1 - pi[k];
                loss -= w * log(q > 1e-30 ? q : 1e-30);
                gi[k] = (float)(w * (pi[k] - (yi[k] != 0)) / (double)n);   /* w (σ(z) − y) / n */
            }
            continue;
        }
        for (int b = 0; b < p->n_blocks; b++) {
            int k0 = p->block_offset[b], k1 = p->block_offset[b + 1], n_pos = 0;
            double w = 0;
            for (int k = k0; k < k1; k++)
                if (yi[k]) n_pos++, w += p->w_pos[k];
            for (int k = k0; k < k1; k++) gi[k] = 0;
            if (!n_pos) continue;                      /* no label in this block: no term */
            w /= n_pos;                                /* several labels share one target */
            for (int k = k0; k < k1; k++) {
                double t = yi[k] ? 1.0 / n_pos : 0;    /* target distribution */
                if (t > 0) loss -= w * t * log(pi[k] > 1e-30 ? pi[k] : 1e-30);
                gi[k] = (float)(w * (pi[k] - t) / (double)n);           /* w (p − t) / n */
            }
        }
    }
    return loss / (double)n;
}
/* @book end probe-gradient */

sc_status sc_probe_train(sc_probe *p, const float *X, const uint8_t *Y, int64_t N, int64_t E, int K,
                         const int *block_offset, int n_blocks, const sc_probe_config *cfg, sc_err *err)
{
    memset(p, 0, sizeof *p);
    if (N < 1 || E < 1 || K < 1 || n_blocks < 1 || block_offset[0] != 0 || block_offset[n_blocks] != K)
        return sc_fail(err, SC_EARG, "linear probe: %lld images of width %lld, %d outputs in %d blocks", (long long)N,
                       (long long)E, K, n_blocks);
    for (int b = 0; b < n_blocks; b++)
        if (block_offset[b + 1] <= block_offset[b])
            return sc_fail(err, SC_EARG, "linear probe: block %d is empty", b);
    if (cfg->epochs < 1 || !(cfg->lr > 0) || !(cfg->l2 >= 0) || cfg->batch_size < 0)
        return sc_fail(err, SC_EARG, "linear probe: epochs %d, lr %g, l2 %g, batch %d", cfg->epochs, (double)cfg->lr,
                       (double)cfg->l2, cfg->batch_size);
    p->cfg = *cfg;
    p->E = E;
    p->K = K;
    p->n_blocks = n_blocks;
    sc_arena_init(&p->arena, "linear probe", (size_t)1 << 20, 0);
    p->W = sc_param_new(&p->arena, 2, (int64_t[]){K, E}, "probe.W");
    p->b = sc_param_new(&p->arena, 1, (int64_t[]){K}, "probe.b");
    p->block_offset = sc_arena_alloc(&p->arena, sizeof(int) * (size_t)(n_blocks + 1));
    p->w_pos = sc_arena_alloc(&p->arena, sizeof(float) * (size_t)K);
    p->w_neg = sc_arena_alloc(&p->arena, sizeof(float) * (size_t)K);
    if (!p->W || !p->b || !p->block_offset || !p->w_pos || !p->w_neg) {
        sc_probe_free(p);
        return sc_fail(err, SC_ENOMEM, "linear probe: out of memory");
    }
    memcpy(p->block_offset, block_offset, sizeof(int) * (size_t)(n_blocks + 1));
    probe_weights(p, Y, N);
    /* PyTorch's nn.Linear initialisation, seeded; zero bias. */
    sc_rng rng;
    sc_rng_seed(&rng, cfg->seed);
    float bound = 1.0f / sqrtf((float)E);
    for (int64_t i = 0; i < (int64_t)K * E; i++) p->W->data[i] = bound * (2 * sc_rng_uniform(&rng) - 1);
    sc_tensor_fill(p->b, 0);
    sc_tensor *params[2] = {p->W, p->b};
    sc_status st = sc_optim_init(&p->opt, sc_opt_defaults(SC_OPT_ADAM, cfg->lr), params, 2, err);
    if (st) {
        sc_probe_free(p);
        return st;
    }

    int64_t B = cfg->batch_size > 0 ? cfg->batch_size : sc_train_batch_size(N);
    if (B > N) B = N;
    int *order = malloc(sizeof(int) * (size_t)N);
    float *xb = malloc(sizeof(float) * (size_t)(B * E)), *z = malloc(sizeof(float) * (size_t)(B * K) * 3);
    uint8_t *yb = malloc((size_t)(B * K));
    if (!order || !xb || !z || !yb) {
        free(order), free(xb), free(z), free(yb);
        sc_probe_free(p);
        return sc_fail(err, SC_ENOMEM, "linear probe: out of memory for batches of %lld", (long long)B);
    }
    float *prob = z + B * K, *dz = prob + B * K;
    for (int64_t i = 0; i < N; i++) order[i] = (int)i;
    for (int epoch = 0; epoch < cfg->epochs; epoch++) {
        sc_rng_shuffle(&rng, order, (int)N);
        double loss = 0;
        for (int64_t start = 0; start < N; start += B) {
            int64_t n = N - start < B ? N - start : B;
            for (int64_t r = 0; r < n; r++) {
                memcpy(xb + r * E, X + (int64_t)order[start + r] * E, sizeof(float) * (size_t)E);
                memcpy(yb + r * K, Y + (int64_t)order[start + r] * K, (size_t)K);
            }
            sc_probe_logits(p, z, xb, n);
            probe_probabilities(p, prob, z, n);
            loss += probe_loss_grad(p, dz, prob, yb, n) * (double)n;
            /* dW = dzᵀ x + λ W, db = Σ_rows dz */
            memcpy(p->W->grad, p->W->data, sizeof(float) * (size_t)(K * E));
            for (int64_t i = 0; i < (int64_t)K * E; i++) p->W->grad[i] *= cfg->l2;
            sc_gemm(1, 0, K, E, n, dz, K, xb, E, p->W->grad, E, 1);
            for (int k = 0; k < K; k++) {
                double s = 0;
                for (int64_t r = 0; r < n; r++) s += dz[r * K + k];
                p->b->grad[k] = (float)s;
            }
            sc_optim_step(&p->opt);
        }
        p->final_loss = loss / (double)N;
    }
    free(order), free(xb), free(z), free(yb);
    return SC_OK;
}

void sc_probe_logits(const sc_probe *p, float *logits, const float *X, int64_t N)
{
    int K = p->K;
    for (int64_t i = 0; i < N; i++) memcpy(logits + i * K, p->b->data, sizeof(float) * (size_t)K);
    sc_gemm(0, 1, N, K, p->E, X, p->E, p->W->data, p->E, logits, K, 1);
}

void sc_probe_predict(const sc_probe *p, float *logits, float *prob, const float *X, int64_t N)
{
    sc_probe_logits(p, logits, X, N);
    if (prob) probe_probabilities(p, prob, logits, N);
}

/* ======================================================================== */
/* 10. Embedding maps: exact t-SNE (Fig. 4)                                  */
/* ======================================================================== */

/* Fig. 4 of the paper shows text embeddings of reports, zero-shot and after
 * SCALE, as t-SNE maps coloured by concept. t-SNE (van der Maaten and
 * Hinton, JMLR 2008) turns distances into two probability distributions,
 * P over pairs of points in the embedding space and Q over pairs in the
 * map, and moves the map points to make Q like P:
 *
 *   p_{j|i} ∝ exp(−β_i |x_i − x_j|²)   β_i set so row i has the chosen perplexity
 *   p_ij    = (p_{j|i} + p_{i|j}) / 2n
 *   q_ij    = w_ij / Σ_{k≠l} w_kl,      w_ij = (1 + |y_i − y_j|²)⁻¹
 *   C       = KL(P || Q) = Σ_{i≠j} p_ij log(p_ij / q_ij)
 *   ∂C/∂y_i = 4 Σ_j (p_ij − q_ij) w_ij (y_i − y_j)
 *
 * Every matrix here is (n, n), row-major, in double precision; maps are
 * (n, 2). The optimiser follows scikit-learn's exact method (defaults of
 * sklearn.manifold.TSNE): 1000 iterations, the first 250 with P multiplied
 * by 12 ("early exaggeration") and momentum 0.5, then momentum 0.8;
 * learning rate 200; per-coordinate gains as in van der Maaten's reference
 * tsne.py (+0.2 when the gradient keeps its direction against the step,
 * ×0.8 when it turns, at least 0.01), carried across the momentum switch.
 * The map is recentred after every step (as in tsne.py and bhtsne); that
 * moves no point relative to another, so it changes nothing else. */

sc_tsne_config sc_tsne_defaults(void)
{
    sc_tsne_config c = {
        .perplexity = 30,
        .early_exaggeration = 12,
        .exaggeration_iters = 250,
        .learning_rate = 200,
        .iters = 1000,
        .momentum_early = 0.5,
        .momentum_late = 0.8,
        .seed = 0,
    };
    return c;
}

/* Rows are handed to the thread pool in blocks; each row's sums run in a
 * fixed order, so the result does not depend on the number of threads. */
#define TSNE_ROWS_PER_TASK 16

static int64_t row_blocks(int64_t n)
{
    return (n + TSNE_ROWS_PER_TASK - 1) / TSNE_ROWS_PER_TASK;
}

static double sq_dist_f32(const float *a, const float *b, int64_t d)
{
    double s = 0;
    for (int64_t k = 0; k < d; k++) {
        double diff = (double)a[k] - (double)b[k];
        s += diff * diff;
    }
    return s;
}

static double sq_dist_f64(const double *a, const double *b, int64_t d)
{
    double s = 0;
    for (int64_t k = 0; k < d; k++) s += (a[k] - b[k]) * (a[k] - b[k]);
    return s;
}

/* @book begin tsne-perplexity */
/* Row i of P: squared distances in, p_{j|i} out. With δ_j = d²_ij − min_j
 * d²_ij (the shift cancels in the normalisation and keeps exp() from
 * underflowing for far-apart points), S = Σ_j exp(−β δ_j) and
 *   H = −Σ_j p_{j|i} log p_{j|i} = log S + β Σ_j p_{j|i} δ_j   (nats).
 * H falls as β grows, so bisection on β finds H = log(perplexity). */
static void perplexity_row(double *row, int64_t n, int64_t i, double perplexity)
{
    const double target = log(perplexity);
    double dmin = HUGE_VAL;
    for (int64_t j = 0; j < n; j++)
        if (j != i && row[j] < dmin) dmin = row[j];
    double beta = 1, beta_lo = 0, beta_hi = HUGE_VAL;
    for (int step = 0; step < 100; step++) {
        double S = 0, weighted = 0;
        for (int64_t j = 0; j < n; j++) {
            if (j == i) continue;
            double w = exp(-beta * (row[j] - dmin));
            S += w;
            weighted += w * (row[j] - dmin);
        }
        double H = log(S) + beta * weighted / S;
        if (fabs(H - target) < 1e-5) break;
        if (H > target) { /* too flat: sharpen */
            beta_lo = beta;
            beta = beta_hi == HUGE_VAL ? 2 * beta : (beta + beta_hi) / 2;
        } else {          /* too peaked: widen */
            beta_hi = beta;
            beta = (beta + beta_lo) / 2;
        }
    }
    double S = 0;
    for (int64_t j = 0; j < n; j++) {
        row[j] = j == i ? 0 : exp(-beta * (row[j] - dmin));
        S += row[j];
    }
    for (int64_t j = 0; j < n; j++) row[j] /= S;
}
/* @book end tsne-perplexity */

typedef struct {
    double *P;
    const float *X;
    int64_t n, d;
    double perplexity;
} affinity_job;

static void conditional_task(void *arg, int64_t block)
{
    const affinity_job *job = arg;
    int64_t end = (block + 1) * TSNE_ROWS_PER_TASK < job->n ? (block + 1) * TSNE_ROWS_PER_TASK : job->n;
    for (int64_t i = block * TSNE_ROWS_PER_TASK; i < end; i++)
        perplexity_row(job->P + i * job->n, job->n, i, job->perplexity);
}

static void distance_task(void *arg, int64_t block)
{
    const affinity_job *job = arg;
    int64_t end = (block + 1) * TSNE_ROWS_PER_TASK < job->n ? (block + 1) * TSNE_ROWS_PER_TASK : job->n;
    for (int64_t i = block * TSNE_ROWS_PER_TASK; i < end; i++)
        for (int64_t j = 0; j < job->n; j++)
            job->P[i * job->n + j] = sq_dist_f32(job->X + i * job->d, job->X + j * job->d, job->d);
}

void sc_tsne_conditional_p(double *P, int64_t n, double perplexity)
{
    SC_ASSERT(n >= 2 && perplexity > 0, "n = %lld, perplexity %g", (long long)n, perplexity);
    affinity_job job = {P, NULL, n, 0, perplexity};
    sc_parallel_for(row_blocks(n), conditional_task, &job);
}

void sc_tsne_joint_p(double *P, const float *X, int64_t n, int64_t d, double perplexity)
{
    affinity_job job = {P, X, n, d, perplexity};
    sc_parallel_for(row_blocks(n), distance_task, &job);
    sc_tsne_conditional_p(P, n, perplexity);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            double p = (P[i * n + j] + P[j * n + i]) / (2.0 * (double)n);
            P[i * n + j] = P[j * n + i] = p;
        }
}

/* -- the gradient -- */

typedef struct {
    double *grad;
    const double *Y, *P;
    int64_t n;
    double exaggeration;
    double inv_Z;  /* 1 / Σ_{k≠l} w_kl */
} gradient_job;

/* Pass 1: Σ_j w_ij for each row, parked in grad[2i] until pass 2. */
static void row_weight_task(void *arg, int64_t block)
{
    const gradient_job *job = arg;
    int64_t n = job->n, end = (block + 1) * TSNE_ROWS_PER_TASK < n ? (block + 1) * TSNE_ROWS_PER_TASK : n;
    for (int64_t i = block * TSNE_ROWS_PER_TASK; i < end; i++) {
        double s = 0;
        for (int64_t j = 0; j < n; j++)
            if (j != i) s += 1.0 / (1.0 + sq_dist_f64(job->Y + 2 * i, job->Y + 2 * j, 2));
        job->grad[2 * i] = s;
    }
}

/* @book begin tsne-gradient */
/* Pass 2: ∂C/∂y_i = 4 Σ_j (α p_ij − q_ij) w_ij (y_i − y_j), q_ij = w_ij / Z. */
static void gradient_task(void *arg, int64_t block)
{
    const gradient_job *job = arg;
    const double *Y = job->Y;
    int64_t n = job->n, end = (block + 1) * TSNE_ROWS_PER_TASK < n ? (block + 1) * TSNE_ROWS_PER_TASK : n;
    for (int64_t i = block * TSNE_ROWS_PER_TASK; i < end; i++) {
        double g0 = 0, g1 = 0;
        for (int64_t j = 0; j < n; j++) {
            if (j == i) continue;
            double w = 1.0 / (1.0 + sq_dist_f64(Y + 2 * i, Y + 2 * j, 2));
            double pull = (job->exaggeration * job->P[i * n + j] - w * job->inv_Z) * w;
            g0 += pull * (Y[2 * i] - Y[2 * j]);
            g1 += pull * (Y[2 * i + 1] - Y[2 * j + 1]);
        }
        job->grad[2 * i] = 4 * g0;
        job->grad[2 * i + 1] = 4 * g1;
    }
}
/* @book end tsne-gradient */

void sc_tsne_gradient(double *grad, const double *Y, const double *P, int64_t n, double exaggeration)
{
    gradient_job job = {grad, Y, P, n, exaggeration, 0};
    sc_parallel_for(row_blocks(n), row_weight_task, &job);
    double Z = 0;
    for (int64_t i = 0; i < n; i++) Z += grad[2 * i]; /* in row order: deterministic */
    job.inv_Z = 1.0 / Z;
    sc_parallel_for(row_blocks(n), gradient_task, &job);
}

double sc_tsne_kl(const double *Y, const double *P, int64_t n)
{
    double Z = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            if (j != i) Z += 1.0 / (1.0 + sq_dist_f64(Y + 2 * i, Y + 2 * j, 2));
    double kl = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double p = P[i * n + j];
            if (j == i || p <= 0) continue;
            double q = 1.0 / (1.0 + sq_dist_f64(Y + 2 * i, Y + 2 * j, 2)) / Z;
            kl += p * log(p / q);
        }
    return kl;
}

/* -- the optimiser -- */

/* @book begin tsne-step */
/* One step of gradient descent with momentum and per-coordinate gains
 * (Jacobs' delta-bar-delta rule, as in van der Maaten's tsne.py): a
 * coordinate whose gradient still opposes its last step (so the step still
 * goes downhill) speeds up by 0.2; one whose gradient turned slows to 0.8×. */
static void tsne_step(double *Y, double *update, double *gain, const double *grad, int64_t n, double momentum,
                      double learning_rate)
{
    for (int64_t k = 0; k < 2 * n; k++) {
        int turned = (grad[k] > 0) == (update[k] > 0);
        gain[k] = turned ? gain[k] * 0.8 : gain[k] + 0.2;
        if (gain[k] < 0.01) gain[k] = 0.01;
        update[k] = momentum * update[k] - learning_rate * gain[k] * grad[k];
        Y[k] += update[k];
    }
    for (int c = 0; c < 2; c++) { /* recentre */
        double mean = 0;
        for (int64_t i = 0; i < n; i++) mean += Y[2 * i + c];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) Y[2 * i + c] -= mean;
    }
}
/* @book end tsne-step */

static sc_status tsne_check(const float *X, int64_t n, int64_t d, const sc_tsne_config *cfg, sc_err *err)
{
    if (n < 0 || n > SC_TSNE_MAX_POINTS)
        return sc_fail(err, SC_ENOMEM, "t-SNE: %lld points, more than the limit of %d for the exact method",
                       (long long)n, SC_TSNE_MAX_POINTS);
    if (d < 1) return sc_fail(err, SC_EARG, "t-SNE: points of dimension %lld", (long long)d);
    if (!(cfg->perplexity > 0) || !(cfg->early_exaggeration >= 1) || cfg->iters < 0 || cfg->exaggeration_iters < 0 ||
        !isfinite(cfg->learning_rate) || !(cfg->momentum_early >= 0 && cfg->momentum_early < 1) ||
        !(cfg->momentum_late >= 0 && cfg->momentum_late < 1))
        return sc_fail(err, SC_EARG,
                       "t-SNE: bad settings (perplexity %g, exaggeration %g, iterations %d, momentum %g/%g)",
                       cfg->perplexity, cfg->early_exaggeration, cfg->iters, cfg->momentum_early, cfg->momentum_late);
    for (int64_t i = 0; i < n * d; i++)
        if (!isfinite(X[i]))
            return sc_fail(err, SC_ERANGE, "t-SNE: point %lld, dimension %lld is not a finite number",
                           (long long)(i / d), (long long)(i % d));
    return SC_OK;
}

sc_status sc_tsne(double *Y, const float *X, int64_t n, int64_t d, const sc_tsne_config *cfg, double *kl,
                  sc_err *err)
{
    sc_status st = tsne_check(X, n, d, cfg, err);
    if (st != SC_OK) return st;
    if (kl) *kl = 0;
    for (int64_t k = 0; k < 2 * n; k++) Y[k] = 0;
    if (n < 2) return SC_OK; /* one point (or none) maps to the origin */

    size_t cells, bytes;
    if (!sc_mul_ok((size_t)n, (size_t)n, &cells) || !sc_mul_ok(cells, sizeof(double), &bytes))
        return sc_fail(err, SC_ENOMEM, "t-SNE: %lld points overflow the affinity matrix", (long long)n);
    double *P = malloc(bytes);
    double *work = malloc(3 * 2 * (size_t)n * sizeof(double)); /* grad, update, gain: (n, 2) each */
    if (!P || !work) {
        free(P);
        free(work);
        return sc_fail(err, SC_ENOMEM, "t-SNE: out of memory for %lld points (%zu bytes)", (long long)n, bytes);
    }
    double *grad = work, *update = work + 2 * n, *gain = work + 4 * n;

    /* With n - 1 neighbours a row cannot reach a perplexity near n - 1
     * without flattening completely; bhtsne asks for n - 1 >= 3·perplexity. */
    double perplexity = fmin(cfg->perplexity, fmax((double)(n - 1) / 3, 1.0));
    sc_tsne_joint_p(P, X, n, d, perplexity);

    sc_rng rng;
    sc_rng_seed(&rng, cfg->seed);
    for (int64_t k = 0; k < 2 * n; k++) {
        Y[k] = 1e-4 * (double)sc_rng_normal(&rng);
        update[k] = 0;
        gain[k] = 1;
    }
    double lr = cfg->learning_rate > 0 ? cfg->learning_rate : fmax((double)n / cfg->early_exaggeration / 4, 50);
    for (int it = 0; it < cfg->iters; it++) {
        int early = it < cfg->exaggeration_iters;
        sc_tsne_gradient(grad, Y, P, n, early ? cfg->early_exaggeration : 1.0);
        tsne_step(Y, update, gain, grad, n, early ? cfg->momentum_early : cfg->momentum_late, lr);
    }
    if (kl) *kl = sc_tsne_kl(Y, P, n);
    free(P);
    free(work);
    return SC_OK;
}

/* -- neighbourhood preservation -- */

#define KNN_MAX 64

/* The k nearest other points of i in Y (n, e), nearest first, by insertion
 * into a sorted list (ties keep the lower index first). */
static void nearest_k(int64_t *out, const double *Y, int64_t e, int64_t n, int64_t i, int k)
{
    double dist[KNN_MAX];
    int have = 0;
    for (int64_t j = 0; j < n; j++) {
        if (j == i) continue;
        double dj = sq_dist_f64(Y + i * e, Y + j * e, e);
        if (have == k && dj >= dist[k - 1]) continue;
        int pos = have < k ? have++ : k - 1;
        while (pos > 0 && dist[pos - 1] > dj) {
            dist[pos] = dist[pos - 1];
            out[pos] = out[pos - 1];
            pos--;
        }
        dist[pos] = dj;
        out[pos] = j;
    }
}

double sc_knn_accuracy(const double *Y, int64_t e, const int *label, int64_t n, int k)
{
    SC_ASSERT(k >= 1 && k <= KNN_MAX && k < n, "k = %d for %lld points", k, (long long)n);
    int64_t hits = 0, nb[KNN_MAX];
    for (int64_t i = 0; i < n; i++) {
        nearest_k(nb, Y, e, n, i, k);
        int best = -1, best_votes = 0;
        for (int a = 0; a < k; a++) { /* nearest first, so a tie keeps the nearer label */
            int votes = 0;
            for (int b = 0; b < k; b++) votes += label[nb[b]] == label[nb[a]];
            if (votes > best_votes) {
                best_votes = votes;
                best = label[nb[a]];
            }
        }
        hits += best == label[i];
    }
    return (double)hits / (double)n;
}

typedef struct {
    double dist;
    int64_t j;
} ranked;

static int ranked_cmp(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->dist != y->dist) return x->dist < y->dist ? -1 : 1;
    return x->j < y->j ? -1 : x->j > y->j;
}

/* @book begin trustworthiness */
/* T(k) = 1 − 2 / (n k (2n − 3k − 1)) · Σ_i Σ_{j ∈ U_i} (r(i, j) − k), where
 * U_i holds the map's k nearest neighbours of i that are not among its k
 * nearest in X, and r(i, j) is j's rank (1 = nearest) among i's neighbours
 * in X (Venna and Kaski, 2001; as sklearn.manifold.trustworthiness). */
sc_status sc_trustworthiness(const float *X, int64_t d, const double *Y, int64_t e, int64_t n, int k,
                             double *out, sc_err *err)
{
    if (k < 1 || k > KNN_MAX || 2 * (int64_t)k >= n)
        return sc_fail(err, SC_EARG, "trustworthiness: k = %d needs 1 <= k < n / 2 = %lld / 2 and k <= %d", k,
                       (long long)n, KNN_MAX);
    ranked *order = malloc((size_t)n * sizeof *order);
    int64_t *rank = malloc((size_t)n * sizeof *rank);
    if (!order || !rank) {
        free(order);
        free(rank);
        return sc_fail(err, SC_ENOMEM, "trustworthiness: out of memory for %lld points", (long long)n);
    }
    double penalty = 0;
    int64_t nb[KNN_MAX];
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) order[j] = (ranked){j == i ? -1.0 : sq_dist_f32(X + i * d, X + j * d, d), j};
        qsort(order, (size_t)n, sizeof *order, ranked_cmp); /* i itself sorts first, at rank 0 */
        for (int64_t r = 0; r < n; r++) rank[order[r].j] = r;
        nearest_k(nb, Y, e, n, i, k);
        for (int a = 0; a < k; a++)
            if (rank[nb[a]] > k) penalty += (double)(rank[nb[a]] - k);
    }
    free(order);
    free(rank);
    double nk = (double)n * k;
    *out = 1.0 - 2.0 / (nk * (2.0 * (double)n - 3.0 * k - 1.0)) * penalty;
    return SC_OK;
}
/* @book end trustworthiness */


/* ======================================================================== */
/* 11. Pretraining a CLIP model: the contrastive loss and the training loop  */
/* ======================================================================== */

/* The paper starts from a pretrained VLM. The shipped tiny VLM (data/) is
 * pretrained here, from scratch, the way Radford et al. trained CLIP: a
 * batch of N image–caption pairs gives the logits
 *
 *     L = exp(t) · Î T̂ᵀ   (N, N),   Î, T̂ the L2-normalised embeddings,
 *
 * with t a learned log-temperature; row i should pick caption i among the
 * batch's captions, column j image j among its images:
 *
 *     loss = −(1/2N) Σ_i [ log softmax(L[i, :])_i + log softmax(L[:, i])_i ].
 *
 * After every step t is clipped to at most ln 100, so the logits are never
 * scaled by more than 100. */

/* @book begin clip-loss */
sc_tensor *sc_clip_loss(sc_ctx *ctx, sc_tensor *img, sc_tensor *txt, sc_tensor *logit_scale)
{
    SC_ASSERT(img->ndim == 2 && sc_same_shape(img, txt), "CLIP loss needs image and text embeddings (N, E)");
    int64_t N = img->shape[0];
    sc_tensor *cos = sc_matmul(ctx, sc_l2_normalize(ctx, img), sc_l2_normalize(ctx, txt), 0, 1);  /* (N, N) */
    sc_tensor *logits = sc_mul_scalar_t(ctx, cos, sc_exp(ctx, logit_scale));
    sc_tensor *per_image = sc_log_softmax(ctx, logits);                         /* [i, j]: log p(text j | image i) */
    sc_tensor *per_text = sc_log_softmax(ctx, sc_transpose(ctx, logits, 0, 1)); /* [j, i]: log p(image i | text j) */
    sc_tensor *eye = sc_tensor_zeros(&ctx->act, 2, (int64_t[]){N, N}, "identity");
    for (int64_t i = 0; i < N; i++) eye->data[i * N + i] = 1.0f;
    sc_tensor *matched = sc_mul(ctx, sc_add(ctx, per_image, per_text), eye);   /* the true pairs only */
    return sc_scale(ctx, sc_sum_all(ctx, matched), -0.5f / (float)N);
}
/* @book end clip-loss */

sc_pretrain_config sc_pretrain_defaults(void)
{
    sc_pretrain_config c;
    c.steps = 1500;
    c.batch = 128;
    c.warmup = 75;
    c.lr = 1e-3f;
    c.weight_decay = 0.1f;
    c.flip = 1;
    c.seed = 0;
    return c;
}

void sc_pretrainer_free(sc_pretrainer *p)
{
    sc_optim_free(&p->decay);
    sc_optim_free(&p->no_decay);
    free(p->order);
    p->order = NULL;
}

/* @book begin pretrainer-init */
/* AdamW as CLIP uses it (β2 = 0.98, ε = 1e-6), with weight decay on the
 * matrices only: gains, biases, the class embedding and the logit scale
 * (anything with fewer than two dimensions) are not decayed, as in
 * open_clip. */
sc_status sc_pretrainer_init(sc_pretrainer *p, sc_model *m, const sc_pretrain_data *d, const sc_pretrain_config *cfg,
                             sc_err *err)
{
    memset(p, 0, sizeof *p);
    const sc_model_config *mc = sc_model_get_config(m);
    if (!sc_model_is_trainable(m)) return sc_fail(err, SC_EARG, "pretraining needs a trainable model");
    if (d->n < 2 || d->captions < 1 || d->S != mc->vision.image_size || d->T < 2 || d->T > mc->text.context)
        return sc_fail(err, SC_ESHAPE, "pretraining data: %lld images of side %lld, %lld captions of %lld ids each, "
                       "for a model of side %lld and context %lld", (long long)d->n, (long long)d->S,
                       (long long)d->captions, (long long)d->T, (long long)mc->vision.image_size,
                       (long long)mc->text.context);
    for (int64_t i = 0; i < d->n * d->captions * d->T; i++)
        if (d->ids[i] < 0 || d->ids[i] >= mc->text.vocab)
            return sc_fail(err, SC_ERANGE, "pretraining data: token id %lld outside the vocabulary of %lld",
                           (long long)d->ids[i], (long long)mc->text.vocab);
    if (cfg->batch < 2 || cfg->batch > d->n || cfg->steps < 1 || cfg->warmup < 0 || !(cfg->lr > 0))
        return sc_fail(err, SC_EARG, "pretraining: batch %lld of %lld images, %lld steps, warm-up %lld, lr %g",
                       (long long)cfg->batch, (long long)d->n, (long long)cfg->steps, (long long)cfg->warmup,
                       (double)cfg->lr);
    p->cfg = *cfg;
    p->logit_scale = sc_model_param_find(m, "logit_scale");
    p->order = malloc(sizeof(int) * (size_t)d->n);
    int n;
    sc_tensor *const *params = sc_model_params(m, &n);
    sc_tensor **split = malloc(sizeof *split * (size_t)n);
    if (!p->order || !split) {
        free(split);
        sc_pretrainer_free(p);
        return sc_fail(err, SC_ENOMEM, "pretraining: out of memory");
    }
    int n_decay = 0, n_plain = 0;
    for (int i = 0; i < n; i++)   /* matrices first, the rest from the end */
        split[params[i]->ndim >= 2 ? n_decay++ : n - 1 - n_plain++] = params[i];
    sc_opt_config oc = sc_opt_defaults(SC_OPT_ADAMW, cfg->lr);
    oc.beta2 = 0.98f;
    oc.eps = 1e-6f;
    oc.weight_decay = cfg->weight_decay;
    sc_status st = sc_optim_init(&p->decay, oc, split, n_decay, err);
    oc.weight_decay = 0.0f;
    if (!st) st = sc_optim_init(&p->no_decay, oc, split + n_decay, n_plain, err);
    free(split);
    if (st) {
        sc_pretrainer_free(p);
        return st;
    }
    sc_rng_seed(&p->rng, cfg->seed);
    p->next = d->n;   /* the first step shuffles */
    return SC_OK;
}
/* @book end pretrainer-init */

/* The next image of the epoch; a new epoch starts with a fresh shuffle. */
static int next_image(sc_pretrainer *p, int64_t n)
{
    if (p->next == n) {
        for (int64_t i = 0; i < n; i++) p->order[i] = (int)i;
        sc_rng_shuffle(&p->rng, p->order, (int)n);
        p->next = 0;
    }
    return p->order[p->next++];
}

/* Image i of d into dst (3, S, S), mirrored left–right and/or upside down:
 * a skin lesion seen through a dermatoscope has no preferred side. */
static void copy_flipped(float *dst, const sc_pretrain_data *d, int64_t i, int flip_x, int flip_y)
{
    int64_t S = d->S;
    const float *src = d->pixels + i * 3 * S * S;
    for (int64_t c = 0; c < 3; c++)
        for (int64_t y = 0; y < S; y++)
            for (int64_t x = 0; x < S; x++)
                dst[(c * S + y) * S + x] = src[(c * S + (flip_y ? S - 1 - y : y)) * S + (flip_x ? S - 1 - x : x)];
}

/* @book begin pretrain-step */
double sc_pretrainer_step(sc_pretrainer *p, sc_model *m, sc_ctx *ctx, const sc_pretrain_data *d)
{
    int64_t B = p->cfg.batch, S = d->S, T = d->T;
    sc_ctx_reset(ctx);
    sc_tensor *pixels = sc_tensor_new(&ctx->act, 4, (int64_t[]){B, 3, S, S}, "pixels");
    int64_t *ids = sc__act_alloc(ctx, sizeof(int64_t) * (size_t)(B * T));
    for (int64_t b = 0; b < B; b++) {   /* image, which of its captions, which flips: all from the seed */
        int64_t i = next_image(p, d->n), k = sc_rng_below(&p->rng, (uint32_t)d->captions);
        int flip = p->cfg.flip ? (int)sc_rng_below(&p->rng, 4) : 0;
        copy_flipped(pixels->data + b * 3 * S * S, d, i, flip & 1, flip >> 1);
        memcpy(ids + b * T, d->ids + (i * d->captions + k) * T, sizeof(int64_t) * (size_t)T);
    }
    float lr = sc_lr_warmup_cosine(p->cfg.lr, p->step, p->cfg.steps, p->cfg.warmup);
    p->decay.cfg.lr = p->no_decay.cfg.lr = lr;
    sc_tensor *img = sc_clip_image_forward(ctx, m, pixels);
    sc_tensor *txt = sc_clip_text_forward_ids(ctx, m, ids, B, T);
    sc_tensor *loss = sc_clip_loss(ctx, img, txt, p->logit_scale);
    sc_optim_zero_grad(&p->decay);
    sc_optim_zero_grad(&p->no_decay);
    sc_backward(ctx, loss);
    sc_optim_step(&p->decay);
    sc_optim_step(&p->no_decay);
    float *t = p->logit_scale->data;   /* never scale the logits by more than 100 */
    if (*t > 4.6051702f) *t = 4.6051702f;
    if (*t < 0.0f) *t = 0.0f;
    p->step++;
    return loss->data[0];
}
/* @book end pretrain-step */
