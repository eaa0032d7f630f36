/* bookindex.c — checks that the book is whole: every part of the paper and
 * every public function has a chapter, every symbol of the notation page
 * names real code, and every exercise points at a real test.
 *
 *   bookindex --check  --sources SRC... --tests TEST... --book MD...
 *   bookindex --update --sources SRC... --tests TEST... --book MD...
 *   bookindex --exercise NAME book/exercises.md
 *   bookindex --exercise-names book/exercises.md
 *
 * Contents
 *   1. Files and words
 *   2. Public functions of scale.h
 *   3. Where the chapters mention them; book/functions.md
 *   4. The paper's coverage map (book/README.md)
 *   5. Equation numbers cited in the sources
 *   6. The notation page (book/notation.md)
 *   7. Exercises (book/exercises.md) and `make exercise`
 *   8. main
 *
 * Every link between the book's files must resolve, too.
 *
 * --check fails (exit 1) naming what has no home; --update rewrites
 * book/functions.md (wholly generated) and then checks. Plain C, libc only.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "booktext.h"

/* ======================================================================== */
/* 1. Files and words                                                       */
/* ======================================================================== */

typedef struct {
    const char *path;
    lines text;
    anchor_list anchors; /* markdown files only */
} file;

#define MAX_FILES 256

static file sources[MAX_FILES], tests[MAX_FILES], book[MAX_FILES];
static int n_sources, n_tests, n_book;
static int errors = 0;

static void problem(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static void problem(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    errors++;
}

static void load(file *f, const char *path, int markdown)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    if (read_lines(path, &f->text) != 0) {
        problem("%s: cannot read", path);
        return;
    }
    if (markdown) anchor_list_build(&f->anchors, &f->text);
}

static int is_word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Does `word` occur in s as a whole identifier? */
static int has_word(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strstr(s, word); p; p = strstr(p + 1, word))
        if ((p == s || !is_word_char(p[-1])) && !is_word_char(p[n])) return 1;
    return 0;
}

static int file_has_word(const file *f, const char *word)
{
    for (int i = 0; i < f->text.n; i++)
        if (has_word(f->text.line[i], word)) return 1;
    return 0;
}

static const file *book_file(const char *name)
{
    for (int i = 0; i < n_book; i++)
        if (!strcmp(base_name(book[i].path), name)) return &book[i];
    return NULL;
}

/* A chapter is a book file named "NN-topic.md". */
static int is_chapter(const file *f)
{
    const char *b = base_name(f->path);
    return isdigit((unsigned char)b[0]) && isdigit((unsigned char)b[1]) && b[2] == '-';
}

/* Check a link target "file.md#anchor" (or "file.md") against the book;
 * report from `where` when it does not resolve. */
static int check_link(const char *where, const char *target)
{
    char name[512];
    snprintf(name, sizeof name, "%s", target);
    char *hash = strchr(name, '#');
    if (hash) *hash++ = 0;
    const file *f = book_file(name);
    if (!f) {
        problem("%s: link to '%s', which is not a book file", where, target);
        return 0;
    }
    if (hash && !anchor_list_has(&f->anchors, hash)) {
        problem("%s: link to '%s', but %s has no heading with anchor '%s'", where, target, name, hash);
        return 0;
    }
    return 1;
}

/* Every link of the book that stays inside it — "(file.md#anchor)",
 * "(#anchor)" or an image "(img/x.jpg)" — must lead somewhere: a book
 * file, one of its headings, a file next to the book. Links to the web
 * and text inside code blocks and code spans are left alone. */
static void check_book_links(void)
{
    for (int b = 0; b < n_book; b++) {
        const file *f = &book[b];
        int in_fence = 0;
        for (int i = 0; i < f->text.n; i++) {
            const char *s = f->text.line[i];
            if (is_fence(s)) in_fence = !in_fence;
            if (in_fence) continue;
            int in_span = 0;
            for (const char *p = s; *p; p++) {
                if (*p == '`') in_span = !in_span;
                if (in_span || p[0] != ']' || p[1] != '(') continue;
                const char *t = p + 2, *e = strchr(t, ')');
                if (!e || e == t || !strncmp(t, "http://", 7) || !strncmp(t, "https://", 8)) continue;
                char target[512], where[600];
                snprintf(target, sizeof target, "%.*s", (int)(e - t), t);
                snprintf(where, sizeof where, "%s:%d", f->path, i + 1);
                if (target[0] == '#') {
                    if (!anchor_list_has(&f->anchors, target + 1))
                        problem("%s: link to '%s', but the file has no heading with that anchor", where, target);
                } else if (strstr(target, ".md")) {
                    check_link(where, target);
                } else {
                    char path[1200];
                    const char *slash = strrchr(f->path, '/');
                    snprintf(path, sizeof path, "%.*s%s", slash ? (int)(slash - f->path + 1) : 0, f->path, target);
                    FILE *x = fopen(path, "rb");
                    if (!x) problem("%s: link to '%s', which does not exist", where, target);
                    else fclose(x);
                }
                p = e;
            }
        }
    }
}

/* Split a markdown table row "| a | b | c |" into trimmed cells (in place).
 * Returns the number of cells; 0 for a line that is not a row or is the
 * separator row "|---|---|". */
static int table_cells(char *row, char **cell, int max)
{
    char *p = row;
    while (*p == ' ') p++;
    if (*p != '|') return 0;
    p++;
    int n = 0;
    while (*p && n < max) {
        char *start = p;
        int in_code = 0;
        while (*p && (in_code || *p != '|')) {
            if (*p == '`') in_code = !in_code;
            p++;
        }
        if (!*p) break;
        *p++ = 0;
        while (*start == ' ') start++;
        for (size_t len = strlen(start); len && start[len - 1] == ' ';) start[--len] = 0;
        cell[n++] = start;
    }
    if (n && strspn(cell[0], "-: ") == strlen(cell[0]) && cell[0][0]) return 0;
    return n;
}

/* The lines strictly between "<!-- @NAME begin -->" and "<!-- @NAME end -->"
 * of f: store their 0-based range; return 0 when the markers are absent. */
static int marked_region(const file *f, const char *name, int *first, int *end)
{
    char begin_mark[128], end_mark[128];
    snprintf(begin_mark, sizeof begin_mark, "<!-- @%s begin", name);
    snprintf(end_mark, sizeof end_mark, "<!-- @%s end -->", name);
    *first = *end = -1;
    for (int i = 0; i < f->text.n; i++) {
        if (*first < 0 && !strncmp(f->text.line[i], begin_mark, strlen(begin_mark))) *first = i + 1;
        else if (*first >= 0 && !strcmp(f->text.line[i], end_mark)) {
            *end = i;
            return 1;
        }
    }
    return 0;
}

/* ======================================================================== */
/* 2. Public functions of scale.h                                           */
/* ======================================================================== */

#define MAX_FUNCS 2048
#define NAME_MAX_LEN 96

enum { HOME_NONE, HOME_USED, HOME_NAMED, HOME_SHOWN };
static const char *const home_how[] = {"—", "used in an excerpt", "named", "excerpt"};

typedef struct {
    char name[NAME_MAX_LEN];
    char section[128];     /* the scale.h section it is declared in */
    int how;               /* HOME_*: the strongest mention found */
    const file *chapter;   /* where that mention is */
    int heading;           /* index into chapter->anchors, -1 = before any */
} function;

static function funcs[MAX_FUNCS];
static int n_funcs;

static function *find_func(const char *name)
{
    for (int i = 0; i < n_funcs; i++)
        if (!strcmp(funcs[i].name, name)) return &funcs[i];
    return NULL;
}

/* The header without comments and preprocessor lines, as one string; the
 * section headings "/ * ---- io.c: JSON ---- * /" become lines "@section
 * io.c: JSON" so declarations can be filed under them. */
static char *header_code(const file *h)
{
    size_t cap = 1 << 16, n = 0;
    char *out = book_xrealloc(NULL, cap);
    int in_comment = 0, continued = 0, cplusplus = 0;
    for (int i = 0; i < h->text.n; i++) {
        const char *s = h->text.line[i];
        if (n + strlen(s) + 160 > cap) out = book_xrealloc(out, cap = 2 * cap + strlen(s));
        const char *sec = strstr(s, "/* ---- ");
        if (!in_comment && sec && strstr(sec + 8, " ----")) {
            const char *a = sec + 8, *b = strstr(a, " ----");
            n += (size_t)snprintf(out + n, cap - n, "\n@section %.*s\n", (int)(b - a), a);
        }
        const char *t = s;
        while (*t == ' ') t++;
        /* extern "C" { ... } for C++ compilers is not part of the C header. */
        if (!strncmp(t, "#ifdef __cplusplus", 18)) cplusplus = 1;
        if (cplusplus) {
            if (!strncmp(t, "#endif", 6)) cplusplus = 0;
            out[n++] = '\n';
            continue;
        }
        int preprocessor = continued || (!in_comment && *t == '#');
        size_t len = strlen(s);
        continued = preprocessor && len && s[len - 1] == '\\';
        if (preprocessor) {
            out[n++] = '\n';
            continue;
        }
        for (const char *p = s; *p; p++) {
            if (in_comment) {
                if (p[0] == '*' && p[1] == '/') in_comment = 0, p++;
            } else if (p[0] == '/' && p[1] == '*') {
                in_comment = 1, p++;
            } else if (p[0] == '/' && p[1] == '/') {
                break;
            } else {
                out[n++] = *p;
            }
        }
        out[n++] = '\n';
    }
    out[n] = 0;
    return out;
}

/* Every "sc_name(" at brace depth 0 that is not a function-pointer type is
 * a public function declaration (sc__ names are internal). */
static void collect_functions(const file *h)
{
    char *code = header_code(h);
    char section[128] = "";
    int depth = 0;
    for (char *p = code; *p; p++) {
        if (*p == '@' && (p == code || p[-1] == '\n') && !strncmp(p, "@section ", 9)) {
            char *e = strchr(p, '\n');
            snprintf(section, sizeof section, "%.*s", (int)(e - p - 9), p + 9);
            p = e;
            continue;
        }
        if (*p == '{') depth++;
        else if (*p == '}') depth--;
        if (depth != 0 || strncmp(p, "sc_", 3) != 0 || (p > code && is_word_char(p[-1])) || p[3] == '_') continue;
        char *e = p;
        while (is_word_char(*e)) e++;
        char *q = e;
        while (*q == ' ' || *q == '\n') q++;
        /* "(*sc_name)(" declares a function-pointer type, "*sc_name(" a
         * function returning a pointer. */
        char *back = p - 1;
        while (back > code && (*back == ' ' || *back == '\n')) back--;
        int fn_pointer = 0;
        if (*back == '*') {
            char *b2 = back - 1;
            while (b2 > code && (*b2 == ' ' || *b2 == '\n')) b2--;
            fn_pointer = *b2 == '(';
        }
        if (*q == '(' && !fn_pointer && (size_t)(e - p) < NAME_MAX_LEN && n_funcs < MAX_FUNCS) {
            char name[NAME_MAX_LEN];
            snprintf(name, sizeof name, "%.*s", (int)(e - p), p);
            if (!find_func(name)) {
                function *f = &funcs[n_funcs++];
                memset(f, 0, sizeof *f);
                snprintf(f->name, sizeof f->name, "%s", name);
                snprintf(f->section, sizeof f->section, "%s", section);
                f->heading = -1;
            }
        }
        p = e - 1;
    }
    free(code);
}

/* ======================================================================== */
/* 3. Where the chapters mention them; book/functions.md                    */
/* ======================================================================== */

static void note_mention(const char *word, int how, const file *chapter, int heading)
{
    function *f = find_func(word);
    if (!f || how <= f->how) return;
    f->how = how;
    f->chapter = chapter;
    f->heading = heading;
}

/* Report every sc_ identifier in [s, end) to note_mention. In an excerpt a
 * name followed by "(" on a line that starts in column 0 is its definition
 * or declaration (shown); anywhere else in an excerpt it is a use. */
static void scan_words(const char *s, const char *end, int how, int line_starts_code, const file *chapter,
                       int heading)
{
    for (const char *p = s; p < end; p++) {
        if (strncmp(p, "sc_", 3) != 0 || (p > s && is_word_char(p[-1]))) continue;
        const char *e = p;
        while (e < end && is_word_char(*e)) e++;
        char word[NAME_MAX_LEN];
        if ((size_t)(e - p) < sizeof word) {
            snprintf(word, sizeof word, "%.*s", (int)(e - p), p);
            int h = how;
            if (how == HOME_SHOWN) h = line_starts_code && e < end && *e == '(' ? HOME_SHOWN : HOME_USED;
            note_mention(word, h, chapter, heading);
        }
        p = e - 1;
    }
}

static void scan_chapter(const file *c)
{
    int in_fence = 0, excerpt = 0, heading = -1, prev_code_marker = 0, in_span = 0;
    for (int i = 0; i < c->text.n; i++) {
        const char *s = c->text.line[i];
        if (is_fence(s)) {
            if (!in_fence) excerpt = prev_code_marker;
            in_fence = !in_fence;
            prev_code_marker = 0;
            continue;
        }
        prev_code_marker = strstr(s, "<!-- @code ") != NULL;
        if (in_fence) {
            /* Hand-written blocks (usage, commands) count as naming. */
            int col0 = s[0] != ' ' && s[0] != '\t';
            scan_words(s, s + strlen(s), excerpt ? HOME_SHOWN : HOME_NAMED, col0, c, heading);
            continue;
        }
        if (heading_level(s)) {
            heading++;
            in_span = 0;
            continue;
        }
        if (!s[0]) in_span = 0; /* a code span never crosses a paragraph */
        /* Prose: only names inside `code spans`, which may continue on the
         * next line of the paragraph. */
        const char *p = s;
        while (*p) {
            const char *tick = strchr(p, '`');
            const char *stop = tick ? tick : p + strlen(p);
            if (in_span) scan_words(p, stop, HOME_NAMED, 0, c, heading);
            if (!tick) break;
            in_span = !in_span;
            p = tick + 1;
        }
    }
}

static void push_str(lines *out, const char *s)
{
    lines_push(out, s, strlen(s));
}

/* The generated index, from the chapter scan: the whole of book/functions.md. */
static void generate_index(lines *out)
{
    push_str(out, "# Index of public functions");
    push_str(out, "");
    push_str(out, "Every public function of `scale.h`, grouped as the header groups them,");
    push_str(out, "with the section of the book that shows it: **excerpt** — its definition");
    push_str(out, "or declaration is quoted there; **named** — the prose discusses it;");
    push_str(out, "**used in an excerpt** — quoted code calls it. Every public function");
    push_str(out, "must have one of the three: `make book-check` fails, naming it, when a");
    push_str(out, "function has no home in a chapter, and when this page is stale (`make");
    push_str(out, "book` regenerates it; tests/bookindex.c).");
    char last_section[128] = "\x01", line[2048];
    for (int i = 0; i < n_funcs; i++) {
        const function *f = &funcs[i];
        if (strcmp(f->section, last_section) != 0) {
            snprintf(last_section, sizeof last_section, "%s", f->section);
            push_str(out, "");
            snprintf(line, sizeof line, "## %s", f->section[0] ? f->section : "(no section)");
            push_str(out, line);
            push_str(out, "");
            push_str(out, "| function | where | how |");
            push_str(out, "|---|---|---|");
        }
        if (f->how >= HOME_USED) {
            const char *chap = base_name(f->chapter->path);
            if (f->heading >= 0)
                snprintf(line, sizeof line, "| `%s` | [%s](%s#%s) | %s |", f->name,
                         f->chapter->anchors.title.line[f->heading], chap,
                         f->chapter->anchors.anchor.line[f->heading], home_how[f->how]);
            else
                snprintf(line, sizeof line, "| `%s` | [%s](%s) | %s |", f->name, chap, chap, home_how[f->how]);
        } else {
            snprintf(line, sizeof line, "| `%s` | **no home** | — |", f->name);
        }
        push_str(out, line);
    }
}

static void check_functions(int update)
{
    const file *index = book_file("functions.md");
    for (int i = 0; i < n_book; i++)
        if (is_chapter(&book[i])) scan_chapter(&book[i]);
    if (!index) problem("book/functions.md is missing (make book writes it)");
    int homeless = 0;
    for (int i = 0; i < n_funcs; i++)
        if (funcs[i].how < HOME_USED) {
            if (!homeless++) fprintf(stderr, "bookindex: public functions with no home in the book:\n");
            fprintf(stderr, "    %s (scale.h section '%s')\n", funcs[i].name, funcs[i].section);
        }
    if (homeless) {
        problem("bookindex: %d function%s above: name each in a chapter (`%s` in prose or an excerpt)",
                homeless, homeless == 1 ? "" : "s", "sc_name");
    }
    if (!index) return;
    lines want = {0};
    generate_index(&want);
    int differ = want.n != index->text.n, first = -1;
    for (int i = 0; i < want.n && i < index->text.n && first < 0; i++)
        if (strcmp(want.line[i], index->text.line[i]) != 0) first = i;
    if (first < 0 && differ) first = want.n < index->text.n ? want.n : index->text.n;
    if (first >= 0 && update) {
        if (write_atomic(index->path, &want) != 0) problem("%s: cannot rewrite", index->path);
        else printf("bookindex: updated %s\n", index->path);
    } else if (first >= 0) {
        problem("%s:%d: the function index is stale (make book rewrites it):\n    book: %s\n    now:  %s",
                index->path, first + 1, first < index->text.n ? index->text.line[first] : "(end)",
                first < want.n ? want.line[first] : "(end)");
    }
    lines_free(&want);
}

/* ======================================================================== */
/* 4. The paper's coverage map (book/README.md)                             */
/* ======================================================================== */

/* Every numbered part of the paper that a reader must find explained. */
static const char *const paper_items[] = {
    "Eq. 1",     "Eq. 2",      "Eq. 3",      "Q → Z",   "Aggregation", "Sec. 2",  "Sec. 2.1", "Sec. 2.2",
    "Sec. 2.3",  "Sec. 2.3.1", "Sec. 2.3.2", "Table 1", "Fig. 1",      "Fig. 2",  "Fig. 3",   "Fig. 4",
};
#define N_PAPER_ITEMS (int)(sizeof paper_items / sizeof paper_items[0])

static int chapter_carries_equation(const file *c, int eq);

static void check_coverage(void)
{
    const file *readme = book_file("README.md");
    int first, end;
    if (!readme || !marked_region(readme, "coverage", &first, &end)) {
        problem("book/README.md: no '<!-- @coverage begin -->' ... '<!-- @coverage end -->' map of the paper");
        return;
    }
    int found[N_PAPER_ITEMS] = {0};
    for (int i = first; i < end; i++) {
        char row[4096], *cell[8], where[600];
        snprintf(row, sizeof row, "%s", readme->text.line[i]);
        int n = table_cells(row, cell, 8);
        if (n < 2 || !strcmp(cell[0], "paper")) continue;
        snprintf(where, sizeof where, "%s:%d", readme->path, i + 1);
        /* The key may be bold: **Eq. 1**. */
        char key[128];
        snprintf(key, sizeof key, "%s", cell[0] + (strncmp(cell[0], "**", 2) ? 0 : 2));
        char *star = strstr(key, "**");
        if (star) *star = 0;
        int item = -1;
        for (int k = 0; k < N_PAPER_ITEMS; k++)
            if (!strcmp(key, paper_items[k])) item = k;
        if (item >= 0) found[item] = 1;
        /* Every link in the row must resolve; at least one must exist. */
        int links = 0, eq = 0, eq_home = 0;
        sscanf(key, "Eq. %d", &eq);
        for (int c = 1; c < n; c++)
            for (const char *p = strstr(cell[c], "]("); p; p = strstr(p + 1, "](")) {
                const char *q = strchr(p, ')');
                if (!q) break;
                char target[512];
                snprintf(target, sizeof target, "%.*s", (int)(q - p - 2), p + 2);
                if (strstr(target, "://")) continue;
                links++;
                if (check_link(where, target) && eq) {
                    char *h = strchr(target, '#');
                    if (h) *h = 0;
                    eq_home |= chapter_carries_equation(book_file(target), eq);
                }
            }
        if (!links) problem("%s: '%s' has no link to a chapter section", where, key);
        if (eq && links && !eq_home)
            problem("%s: no chapter linked for Eq. %d quotes it with its label '(Eq. %d)' in a block quote",
                    where, eq, eq);
    }
    for (int k = 0; k < N_PAPER_ITEMS; k++)
        if (!found[k]) problem("%s: the coverage map has no row for '%s'", readme->path, paper_items[k]);
}

/* ======================================================================== */
/* 5. Equation numbers cited in the sources                                 */
/* ======================================================================== */

/* A chapter carries equation n when it quotes the paper's equation with its
 * label: a block-quote line holding "(Eq. n)". */
static int chapter_carries_equation(const file *c, int eq)
{
    if (!c) return 0;
    char label[32];
    snprintf(label, sizeof label, "(Eq. %d)", eq);
    for (int i = 0; i < c->text.n; i++)
        if (c->text.line[i][0] == '>' && strstr(c->text.line[i], label)) return 1;
    return 0;
}

/* Every "Eq. n", "Eq. (n)", "Eq. n-m" or "Eq. n–m" in a source names
 * equations that some chapter must carry. */
static void check_equation_citations(void)
{
    for (int s = 0; s < n_sources; s++)
        for (int i = 0; i < sources[s].text.n; i++)
            for (const char *p = strstr(sources[s].text.line[i], "Eq."); p; p = strstr(p + 1, "Eq.")) {
                const char *q = p + 3;
                while (*q == ' ' || *q == '(') q++;
                if (!isdigit((unsigned char)*q)) continue;
                char *after;
                int lo = (int)strtol(q, &after, 10), hi = lo;
                const char *r = after;
                if (*r == '-') r++;
                else if (!strncmp(r, "\xE2\x80\x93", 3)) r += 3; /* en dash */
                if (r != after && isdigit((unsigned char)*r)) hi = (int)strtol(r, NULL, 10);
                for (int eq = lo; eq <= hi && eq < lo + 10; eq++) {
                    int carried = 0;
                    for (int b = 0; b < n_book && !carried; b++)
                        carried = is_chapter(&book[b]) && chapter_carries_equation(&book[b], eq);
                    if (!carried)
                        problem("%s:%d: cites Eq. %d, but no chapter quotes it with the label '(Eq. %d)'",
                                sources[s].path, i + 1, eq, eq);
                }
            }
}

/* ======================================================================== */
/* 6. The notation page (book/notation.md)                                  */
/* ======================================================================== */

/* The body of `struct NAME { ... }` or `typedef struct { ... } NAME;` in
 * any source, as [begin, end) line indices; 0 if there is none. */
static int struct_body(const char *name, const file **where, int *begin, int *end)
{
    char tail[160], head[160];
    snprintf(tail, sizeof tail, "} %s;", name);
    snprintf(head, sizeof head, "struct %s {", name);
    for (int s = 0; s < n_sources; s++) {
        const lines *t = &sources[s].text;
        for (int i = 0; i < t->n; i++) {
            const char *l = t->line[i];
            if (strstr(l, head) && !strchr(l, ';')) {
                int j = i + 1;
                while (j < t->n && t->line[j][0] != '}') j++;
                *where = &sources[s], *begin = i, *end = j;
                return 1;
            }
            const char *e = strstr(l, tail);
            if (e && (e == l || e[-1] == ' ' || l[0] == '}')) {
                int j = i - 1;
                while (j >= 0 && strncmp(t->line[j], "typedef struct", 14) != 0 && strncmp(t->line[j], "struct", 6) != 0)
                    j--;
                if (j < 0) continue;
                *where = &sources[s], *begin = j, *end = i + 1;
                return 1;
            }
        }
    }
    return 0;
}

static int any_source_has_word(const char *word)
{
    for (int s = 0; s < n_sources; s++)
        if (file_has_word(&sources[s], word)) return 1;
    return 0;
}

/* One C name of the notation table: "sc_adapter.alpha" (a field, checked
 * inside its struct), "sc_scale_loss()" or an expression such as
 * "Q[i * M + j]" (each identifier checked in the sources). */
static void check_c_name(const char *where, const char *expr)
{
    const char *dot = strchr(expr, '.');
    const char *arrow = strstr(expr, "->");
    if (dot && (!arrow || dot < arrow) && is_word_char(dot[1])) {
        char type[128], field[128];
        if (sscanf(expr, "%127[A-Za-z0-9_].%127[A-Za-z0-9_]", type, field) == 2) {
            const file *f;
            int b, e, ok = 0;
            if (struct_body(type, &f, &b, &e)) {
                /* Only the code of each line: a comment may use the word. */
                for (int i = b; i < e && !ok; i++) {
                    char code[1024];
                    snprintf(code, sizeof code, "%s", f->text.line[i]);
                    char *comment = strstr(code, "/*");
                    if (comment) *comment = 0;
                    const char *t = code;
                    while (*t == ' ') t++;
                    ok = *t != '*' && has_word(code, field);
                }
                if (!ok) problem("%s: `%s`: struct %s (%s:%d) has no field '%s'", where, expr, type, f->path, b + 1, field);
                return;
            }
        }
    }
    for (const char *p = expr; *p;) {
        if (!isalpha((unsigned char)*p) && *p != '_') {
            p++;
            continue;
        }
        const char *e = p;
        while (is_word_char(*e)) e++;
        char word[128];
        snprintf(word, sizeof word, "%.*s", (int)(e - p), p);
        if (e - p > 1 && !any_source_has_word(word))
            problem("%s: `%s`: no source mentions '%s'", where, expr, word);
        p = e;
    }
}

static void check_notation(void)
{
    const file *page = book_file("notation.md");
    if (!page) {
        problem("book/notation.md is missing");
        return;
    }
    int names = 0, column = -1;
    for (int i = 0; i < page->text.n; i++) {
        char row[4096], *cell[12], where[600];
        snprintf(row, sizeof row, "%s", page->text.line[i]);
        int n = table_cells(row, cell, 12);
        /* The C names sit in the column headed "C name". */
        if (n && !strcmp(cell[0], "paper")) {
            column = -1;
            for (int c = 0; c < n; c++)
                if (!strcmp(cell[c], "C name")) column = c;
            continue;
        }
        if (n <= column || column < 0) continue;
        snprintf(where, sizeof where, "%s:%d", page->path, i + 1);
        for (const char *p = strchr(cell[column], '`'); p; p = strchr(p, '`')) {
            const char *q = strchr(p + 1, '`');
            if (!q) break;
            char expr[256];
            snprintf(expr, sizeof expr, "%.*s", (int)(q - p - 1), p + 1);
            check_c_name(where, expr);
            names++;
            p = q + 1;
        }
    }
    if (!names) problem("%s: no table with a 'C name' column (first column 'paper')", page->path);
}

/* ======================================================================== */
/* 7. Exercises (book/exercises.md) and `make exercise`                     */
/* ======================================================================== */

/* An exercise row: | `name` | [chapter](NN-x.md#anchor) | task | `file.c`: `function` | `check` | */
typedef struct {
    char name[64];
    char chapter[512];
    char file[256];
    char function[128];
    char suite[64], tcase[64], program[256];
} exercise;

/* Read the check cell: "`CK_RUN_SUITE=tensor CK_RUN_CASE=backward`" and/or
 * "`tests/exercises/NAME.c`". */
static void parse_check(exercise *x, const char *cell)
{
    const char *p;
    if ((p = strstr(cell, "CK_RUN_SUITE="))) sscanf(p + 13, "%63[a-z0-9_]", x->suite);
    if ((p = strstr(cell, "CK_RUN_CASE="))) sscanf(p + 12, "%63[a-z0-9_]", x->tcase);
    if ((p = strstr(cell, "tests/exercises/"))) sscanf(p, "%255[a-z0-9_/.-]", x->program);
}

static int read_exercise(const file *f, int i, exercise *x)
{
    char row[4096], *cell[8];
    snprintf(row, sizeof row, "%s", f->text.line[i]);
    memset(x, 0, sizeof *x);
    int n = table_cells(row, cell, 8);
    if (n < 5 || sscanf(cell[0], "`%63[a-z0-9-]`", x->name) != 1) return 0;
    const char *open = strstr(cell[1], "](");
    const char *close = open ? strchr(open, ')') : NULL;
    if (close) snprintf(x->chapter, sizeof x->chapter, "%.*s", (int)(close - open - 2), open + 2);
    sscanf(cell[3], "`%255[A-Za-z0-9_./-]`: `%127[A-Za-z0-9_]", x->file, x->function);
    parse_check(x, cell[4]);
    return 1;
}

/* A case is created as tcase_create("NAME"), or named in a table of cases
 * that a loop hands to tcase_create: {"NAME", {test_a, test_b}}. */
static int test_defines_case(const char *suite, const char *tcase)
{
    char want_suite[96], want_case[96], want_row[96];
    snprintf(want_suite, sizeof want_suite, "suite_create(\"%s\")", suite);
    snprintf(want_case, sizeof want_case, "tcase_create(\"%s\")", tcase);
    snprintf(want_row, sizeof want_row, "{\"%s\", {", tcase);
    for (int t = 0; t < n_tests; t++) {
        int has_suite = 0, has_case = !tcase[0];
        for (int i = 0; i < tests[t].text.n; i++) {
            has_suite |= strstr(tests[t].text.line[i], want_suite) != NULL;
            has_case |= strstr(tests[t].text.line[i], want_case) != NULL || strstr(tests[t].text.line[i], want_row) != NULL;
        }
        if (has_suite && has_case) return 1;
    }
    return 0;
}

static void check_exercises(void)
{
    const file *page = book_file("exercises.md");
    if (!page) {
        problem("book/exercises.md is missing");
        return;
    }
    int per_chapter[100] = {0}, count = 0;
    for (int i = 0; i < page->text.n; i++) {
        exercise x;
        if (!read_exercise(page, i, &x)) continue;
        char where[600];
        snprintf(where, sizeof where, "%s:%d (%s)", page->path, i + 1, x.name);
        count++;
        if (!x.chapter[0] || !check_link(where, x.chapter)) {
            if (!x.chapter[0]) problem("%s: no chapter link", where);
            continue;
        }
        /* The chapter links back to the exercise. */
        char chap[512], back[160];
        snprintf(chap, sizeof chap, "%s", x.chapter);
        char *h = strchr(chap, '#');
        if (h) *h = 0;
        const file *c = book_file(chap);
        snprintf(back, sizeof back, "exercises.md#%s", x.name);
        int linked = 0;
        for (int k = 0; c && k < c->text.n && !linked; k++) linked = strstr(c->text.line[k], back) != NULL;
        if (!linked) problem("%s: %s has no link to %s in its Exercise section", where, chap, back);
        if (isdigit((unsigned char)chap[0])) per_chapter[atoi(chap) % 100]++;
        if (!anchor_list_has(&page->anchors, x.name))
            problem("%s: no heading '### %s' explains the exercise", where, x.name);
        /* The file to edit exists and holds the function (new-code exercises
         * name a function that does not exist yet: they carry a program). */
        const file *src = NULL;
        for (int s = 0; s < n_sources; s++)
            if (!strcmp(sources[s].path, x.file) || !strcmp(base_name(sources[s].path), x.file)) src = &sources[s];
        /* A new-code exercise names a function or file that does not
         * exist yet; a rewrite exercise names one that must. */
        if (!x.program[0] && !src) problem("%s: the file to edit, '%s', is not a source", where, x.file);
        else if (!x.program[0] && (!x.function[0] || !file_has_word(src, x.function)))
            problem("%s: %s has no '%s' to edit", where, x.file, x.function);
        if (!x.suite[0] && !x.program[0]) problem("%s: the check names no CK_RUN_SUITE and no tests/exercises program", where);
        if (x.suite[0] && !test_defines_case(x.suite, x.tcase))
            problem("%s: no test file defines suite '%s'%s%s", where, x.suite, x.tcase[0] ? " with case " : "", x.tcase);
        if (x.program[0]) {
            FILE *f = fopen(x.program, "r");
            if (!f) problem("%s: %s does not exist", where, x.program);
            else fclose(f);
        }
    }
    if (!count) problem("%s: no exercise rows", page->path);
    for (int b = 0; b < n_book; b++) {
        const char *name = base_name(book[b].path);
        if (is_chapter(&book[b]) && !per_chapter[atoi(name) % 100])
            fprintf(stderr, "bookindex: note: %s has no exercise yet\n", name);
    }
}

/* `make exercise NAME=x`: print the shell command that runs x's check
 * (the Makefile sets $make and $variant, "" or "-solution"). With name
 * NULL, print every exercise's name instead. */
static int print_exercise_command(const char *name, const char *path)
{
    file page;
    load(&page, path, 1);
    if (errors) return 2;
    if (!name) {
        for (int i = 0; i < page.text.n; i++) {
            exercise x;
            if (read_exercise(&page, i, &x)) printf("%s\n", x.name);
        }
        return 0;
    }
    for (int i = 0; i < page.text.n; i++) {
        exercise x;
        if (!read_exercise(&page, i, &x) || strcmp(x.name, name) != 0) continue;
        if (x.suite[0])
            printf("CK_RUN_SUITE=%s%s%s ./build/check_runner", x.suite, x.tcase[0] ? " CK_RUN_CASE=" : "", x.tcase);
        if (x.suite[0] && x.program[0]) printf(" && ");
        if (x.program[0]) {
            char stem[256];
            snprintf(stem, sizeof stem, "%s", base_name(x.program));
            char *dot = strrchr(stem, '.');
            if (dot) *dot = 0;
            printf("$make build/exercises/%s$variant && ./build/exercises/%s$variant", stem, stem);
        }
        printf("\n");
        return 0;
    }
    fprintf(stderr, "make exercise: no exercise named '%s' in %s; the names are:\n", name, path);
    for (int i = 0; i < page.text.n; i++) {
        exercise x;
        if (read_exercise(&page, i, &x)) fprintf(stderr, "    %s\n", x.name);
    }
    return 2;
}

/* ======================================================================== */
/* 8. main                                                                  */
/* ======================================================================== */

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--exercise")) return print_exercise_command(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "--exercise-names")) return print_exercise_command(NULL, argv[2]);
    if (argc < 2 || (strcmp(argv[1], "--check") && strcmp(argv[1], "--update"))) {
        fprintf(stderr, "usage: bookindex --check|--update --sources SRC... --tests TEST... --book MD...\n"
                        "       bookindex --exercise NAME book/exercises.md\n"
                        "       bookindex --exercise-names book/exercises.md\n");
        return 2;
    }
    int update = !strcmp(argv[1], "--update"), group = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--sources")) group = 1;
        else if (!strcmp(argv[i], "--tests")) group = 2;
        else if (!strcmp(argv[i], "--book")) group = 3;
        else if (group == 1 && n_sources < MAX_FILES) load(&sources[n_sources++], argv[i], 0);
        else if (group == 2 && n_tests < MAX_FILES) load(&tests[n_tests++], argv[i], 0);
        else if (group == 3 && n_book < MAX_FILES) load(&book[n_book++], argv[i], 1);
        else return fprintf(stderr, "bookindex: unexpected argument '%s'\n", argv[i]), 2;
    }
    const file *header = NULL;
    for (int s = 0; s < n_sources; s++)
        if (!strcmp(base_name(sources[s].path), "scale.h")) header = &sources[s];
    if (!header) return fprintf(stderr, "bookindex: scale.h is not among the sources\n"), 2;
    collect_functions(header);
    check_functions(update);
    check_coverage();
    check_equation_citations();
    check_notation();
    check_exercises();
    check_book_links();
    if (errors) {
        fprintf(stderr, "bookindex: %d problem%s\n", errors, errors == 1 ? "" : "s");
        return 1;
    }
    int shown = 0, named = 0, used = 0;
    for (int i = 0; i < n_funcs; i++) {
        shown += funcs[i].how == HOME_SHOWN;
        named += funcs[i].how == HOME_NAMED;
        used += funcs[i].how == HOME_USED;
    }
    printf("bookindex: %d public functions of scale.h (%d in excerpts, %d named, %d used in excerpts); "
           "paper map, equations, notation and exercises complete\n",
           n_funcs, shown, named, used);
    return 0;
}
