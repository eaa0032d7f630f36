/* booksnip.c — keeps the book's code excerpts equal to the sources, and its
 * worked numbers equal to what `scale` prints.
 *
 *   booksnip --check  SOURCE... -- CHAPTER...
 *   booksnip --update SOURCE... -- CHAPTER...
 *
 * A source marks a region with two comment lines:
 *     / * @book begin NAME * /   ...   / * @book end NAME * /
 * (written without the spaces). A chapter quotes it with the line
 *     <!-- @code FILE NAME -->
 * immediately followed by a fenced block (```c ... ```) holding the region's
 * lines verbatim, marker lines of other regions left out.
 *
 * --check fails (exit 1), naming chapter and line, when a block differs from
 * its region, a name is unknown or defined twice, a region's markers are
 * unbalanced, a quote names the wrong file, or a line that opens a marker
 * cannot be read as one (section "markers"; tests/data/booksnip is the
 * self-test, `make book-selftest`). --update rewrites the blocks
 * from the sources (atomically: temp file, then rename).
 *
 * A chapter also marks worked examples with "<!-- @run ... scale ARGS -->"
 * followed by a ```text block (section "worked numbers" below): --update
 * runs ./scale and writes its output into the block, --check runs it again
 * and fails on any difference.
 *
 * Plain C with libc only, like the rest of the build.
 */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "booktext.h"

#define MAX_REGIONS 4096
#define MAX_NAME 128

typedef struct {
    char name[MAX_NAME];
    const char *file;
    int begin_line;   /* 1-based line of the begin marker */
    lines body;
    int open;         /* begin seen, end not yet */
    int quoted;       /* used by a chapter */
} region;

static region regions[MAX_REGIONS];
static int n_regions = 0;
static int errors = 0;

/* ---- markers ------------------------------------------------------------ */

/* Every line that opens a marker must parse as one. A marker with a typo or
 * an extra word is an error naming the file and line, never a region or a
 * block that silently goes unchecked.
 *
 * opens_marker: does `s` hold `opener`, blanks, then `keyword` as a whole
 * word? In a chapter (anywhere = 0) only blanks may come before the opener;
 * in a source (anywhere = 1) it is looked for along the whole line, and
 * *alone says whether only blanks came before it. Returns the text after
 * the keyword, or NULL when the line is no marker at all. */
static const char *opens_marker(const char *s, const char *opener, const char *keyword, int anywhere, int *alone)
{
    size_t n_open = strlen(opener), n_key = strlen(keyword);
    for (const char *o = s; (o = strstr(o, opener)) != NULL; o += n_open) {
        const char *p = o + n_open;
        while (*p == ' ' || *p == '\t') p++;
        const char *e = p + n_key;
        if (strncmp(p, keyword, n_key) != 0 ||
            !(*e == 0 || *e == ' ' || *e == '\t' || !strncmp(e, "*/", 2) || !strncmp(e, "-->", 3))) {
            if (!anywhere) return NULL;
            continue;
        }
        int blanks_before = 1;
        for (const char *q = s; q < o; q++)
            if (*q != ' ' && *q != '\t') blanks_before = 0;
        if (!anywhere && !blanks_before) return NULL;
        if (alone) *alone = blanks_before;
        return p + n_key;
    }
    return NULL;
}

/* Split the text up to `closer` into at most `max` blank-separated words of
 * fewer than `size` characters each. Returns the number of words, or -1 when
 * the closer is missing, a word is too long or there are more words, or
 * anything but blanks follows the closer. */
static int marker_words(const char *p, const char *closer, char *words, int max, size_t size)
{
    size_t n_close = strlen(closer);
    int n = 0;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) return -1;
        if (!strncmp(p, closer, n_close)) break;
        if (n == max) return -1;
        size_t k = 0;
        while (*p && *p != ' ' && *p != '\t' && strncmp(p, closer, n_close) != 0) {
            if (k + 1 == size) return -1;
            words[(size_t)n * size + k++] = *p++;
        }
        words[(size_t)n * size + k] = 0;
        n++;
    }
    for (p += n_close; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r') return -1;
    return n;
}

/* "/ * @book KIND NAME * /" alone on its line (any indentation) → KIND and
 * NAME, 1. Not a marker → 0. Opens one but is malformed → -1. */
static int parse_marker(const char *s, char *kind, char *name)
{
    int alone = 0;
    const char *p = opens_marker(s, "/*", "@book", 1, &alone);
    if (!p) return 0;
    char words[2][MAX_NAME];
    if (!alone || marker_words(p, "*/", &words[0][0], 2, MAX_NAME) != 2 || strlen(words[0]) >= 16) return -1;
    strcpy(kind, words[0]);
    strcpy(name, words[1]);
    return 1;
}

static region *find_region(const char *name)
{
    for (int i = 0; i < n_regions; i++)
        if (!strcmp(regions[i].name, name)) return &regions[i];
    return NULL;
}

static void scan_source(const char *path)
{
    lines l = {0};
    if (read_lines(path, &l) != 0) {
        fprintf(stderr, "%s: cannot read\n", path);
        errors++;
        return;
    }
    for (int i = 0; i < l.n; i++) {
        char kind[16], name[MAX_NAME];
        int marker = parse_marker(l.line[i], kind, name);
        if (marker < 0) {
            fprintf(stderr, "%s:%d: cannot read the @book marker; it stands alone on its line as "
                            "'/* @book begin NAME */' or '/* @book end NAME */'\n", path, i + 1);
            errors++;
            continue;
        }
        if (marker) {
            region *r = find_region(name);
            if (!strcmp(kind, "begin")) {
                if (r) {
                    fprintf(stderr, "%s:%d: region '%s' already defined at %s:%d\n", path, i + 1,
                            name, r->file, r->begin_line);
                    errors++;
                    continue;
                }
                if (n_regions == MAX_REGIONS) {
                    fprintf(stderr, "%s:%d: too many regions\n", path, i + 1);
                    exit(2);
                }
                r = &regions[n_regions++];
                memset(r, 0, sizeof *r);
                snprintf(r->name, sizeof r->name, "%s", name);
                r->file = path;
                r->begin_line = i + 1;
                r->open = 1;
            } else if (!strcmp(kind, "end")) {
                if (!r || !r->open || strcmp(r->file, path) != 0) {
                    fprintf(stderr, "%s:%d: '@book end %s' without a matching begin\n", path, i + 1, name);
                    errors++;
                    continue;
                }
                r->open = 0;
            } else {
                fprintf(stderr, "%s:%d: unknown marker '@book %s'\n", path, i + 1, kind);
                errors++;
            }
            continue;
        }
        /* An ordinary line belongs to every region open in this file. */
        for (int k = 0; k < n_regions; k++)
            if (regions[k].open && regions[k].file == path)
                lines_push(&regions[k].body, l.line[i], strlen(l.line[i]));
    }
    for (int k = 0; k < n_regions; k++)
        if (regions[k].open && regions[k].file == path) {
            fprintf(stderr, "%s:%d: region '%s' has no '@book end'\n", path, regions[k].begin_line,
                    regions[k].name);
            errors++;
            regions[k].open = 0;
        }
    lines_free(&l);
}

/* "<!-- @code FILE NAME -->" → FILE and NAME, 1. Not a quote → 0.
 * Opens one but is malformed → -1. */
static int parse_quote(const char *s, char *file, char *name)
{
    const char *p = opens_marker(s, "<!--", "@code", 0, NULL);
    if (!p) return 0;
    char words[2][256];
    if (marker_words(p, "-->", &words[0][0], 2, sizeof words[0]) != 2 || strlen(words[1]) >= MAX_NAME) return -1;
    strcpy(file, words[0]);
    strcpy(name, words[1]);
    return 1;
}

/* ---- worked numbers: <!-- @run ... --> ---------------------------------- */

/* A worked example whose numbers come from running `scale`:
 *     <!-- @run [-C DIR] [--clean PATH] [--head N] [--tail N] [--fail] scale ARGS... -->
 * followed by a ```text block. The block holds the command as a reader
 * would type it ("$ cd DIR", "$ ../../scale ARGS", wrapped with "\") and
 * then everything the command printed, stdout and stderr. --head/--tail
 * keep the first/last N lines of a long output with "..." between; --fail
 * says the command is expected to exit non-zero (an error message is the
 * example). --clean removes PATH, a file or folder under build/, before the
 * command runs, for commands that refuse to overwrite their output (scale
 * embed, scale experiment); an earlier block may have left inputs there.
 * Commands run from the repository root with SCALE_THREADS=1, so a number
 * never depends on the machine's core count. */
typedef struct {
    char dir[512];   /* "" = the repository root */
    char clean[512]; /* "" = nothing to remove */
    int head, tail;  /* 0 = all */
    int fail;
    const char *args; /* after "scale " (points into the marker line copy) */
    char buf[4096];
} run_spec;

static int parse_run(const char *s, run_spec *r)
{
    const char *p = opens_marker(s, "<!--", "@run", 0, NULL);
    if (!p) return 0;
    const char *end = strstr(p, "-->");
    if (!end || (size_t)(end - p) >= sizeof r->buf) return -1;
    for (const char *t = end + 3; *t; t++)
        if (*t != ' ' && *t != '\t' && *t != '\r') return -1;
    memset(r, 0, offsetof(run_spec, buf));
    memcpy(r->buf, p, (size_t)(end - p));
    r->buf[end - p] = 0;
    for (size_t n = strlen(r->buf); n && (r->buf[n - 1] == ' ' || r->buf[n - 1] == '\t');) r->buf[--n] = 0;
    char *q = r->buf;
    for (;;) {
        while (*q == ' ') q++;
        char *word = q;
        while (*q && *q != ' ') q++;
        if (*q) *q++ = 0;
        if (!strcmp(word, "-C") || !strcmp(word, "--clean")) {
            char *dst = word[1] == 'C' ? r->dir : r->clean;
            while (*q == ' ') q++;
            int n = 0;
            while (*q && *q != ' ' && n < (int)sizeof r->dir - 1) dst[n++] = *q++;
            dst[n] = 0;
            /* Only a plain relative path under build/ may be removed. */
            if (dst == r->clean && (strncmp(dst, "build/", 6) != 0 || strstr(dst, "..") || strpbrk(dst, "'\"\\$`")))
                return -1;
        } else if (!strcmp(word, "--head") || !strcmp(word, "--tail")) {
            int v = (int)strtol(q, &q, 10);
            if (v <= 0) return -1;
            *(word[2] == 'h' ? &r->head : &r->tail) = v;
        } else if (!strcmp(word, "--fail")) {
            r->fail = 1;
        } else if (!strcmp(word, "scale")) {
            while (*q == ' ') q++;
            r->args = q;
            return 1;
        } else {
            return -1;
        }
    }
}

/* Split a shell command line into words, a quoted stretch counting as part
 * of its word, and wrap it at 94 columns with " \" continuations. */
static void push_wrapped_command(lines *out, const char *prefix, const char *cmd)
{
    char line[8192];
    int n = snprintf(line, sizeof line, "$ %s", prefix);
    const char *p = cmd;
    while (*p) {
        while (*p == ' ') p++;
        const char *w = p;
        char quote = 0;
        while (*p && (quote || *p != ' ')) {
            if (quote && *p == quote) quote = 0;
            else if (!quote && (*p == '\'' || *p == '"')) quote = *p;
            p++;
        }
        /* An option and its value stay on one line: "--tau 0.5". */
        const char *next = p;
        while (*next == ' ') next++;
        if (w[0] == '-' && *next && *next != '-') {
            p = next;
            while (*p && (quote || *p != ' ')) {
                if (quote && *p == quote) quote = 0;
                else if (!quote && (*p == '\'' || *p == '"')) quote = *p;
                p++;
            }
        }
        int wlen = (int)(p - w);
        if (!wlen) break;
        if (n > 8 && n + 1 + wlen > 94) {
            lines_push(out, line, (size_t)n);
            out->line[out->n - 1] = book_xrealloc(out->line[out->n - 1], (size_t)n + 3);
            strcat(out->line[out->n - 1], " \\");
            n = snprintf(line, sizeof line, "     ");
        }
        if (n + 1 + wlen >= (int)sizeof line - 4) break;
        line[n++] = ' ';
        memcpy(line + n, w, (size_t)wlen);
        n += wlen;
        line[n] = 0;
    }
    lines_push(out, line, (size_t)n);
}

/* Run one @run command; fill `got` with the block's lines. Returns 0, or
 * -1 after printing why the command could not be used. */
static int run_command(const char *chapter, int line_no, const run_spec *r, lines *got)
{
    char root[4096], cmd[16384];
    if (!getcwd(root, sizeof root)) return fprintf(stderr, "booksnip: getcwd failed\n"), -1;
    /* "../" once per component of DIR, to show the path a reader in DIR types. */
    char up[1024] = "./";
    if (r->dir[0]) {
        up[0] = 0;
        for (const char *c = r->dir; *c; c++)
            if (c == r->dir || c[-1] == '/') strcat(up, "../");
        char cd[600];
        snprintf(cd, sizeof cd, "$ cd %s", r->dir);
        lines_push(got, cd, strlen(cd));
    }
    char shown[1100];
    snprintf(shown, sizeof shown, "%sscale", up);
    push_wrapped_command(got, shown, r->args);
    char clean[4700] = "";
    if (r->clean[0]) snprintf(clean, sizeof clean, "rm -rf '%s/%s' && ", root, r->clean);
    snprintf(cmd, sizeof cmd, "%scd '%s/%s' && SCALE_THREADS=1 '%s/scale' %s 2>&1", clean, root, r->dir, root, r->args);
    FILE *f = popen(cmd, "r");
    if (!f) return fprintf(stderr, "%s:%d: cannot run '%s'\n", chapter, line_no, r->args), -1;
    lines output = {0};
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&buf, &cap, f)) >= 0) {
        if (len && buf[len - 1] == '\n') len--;
        lines_push(&output, buf, (size_t)len);
    }
    free(buf);
    int status = pclose(f);
    int code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if ((code != 0) != r->fail) {
        fprintf(stderr, "%s:%d: 'scale %s' exited with %d%s\n", chapter, line_no, r->args, code,
                r->fail ? " (expected a failure)" : "");
        for (int k = 0; k < output.n && k < 5; k++) fprintf(stderr, "    %s\n", output.line[k]);
        lines_free(&output);
        return -1;
    }
    int elide = (r->head || r->tail) && output.n > r->head + r->tail;
    for (int k = 0; k < output.n; k++) {
        if (elide && k == r->head) {
            lines_push(got, "...", 3);
            k = output.n - r->tail - 1;
            continue;
        }
        lines_push(got, output.line[k], strlen(output.line[k]));
    }
    lines_free(&output);
    return 0;
}

/* ---- chapters ------------------------------------------------------------ */

/* A line "<!-- @WORD ..." for a WORD other than code and run must be one of
 * bookindex's section fences, "<!-- @WORD begin -->" or "<!-- @WORD end -->";
 * anything else (a misspelt "@code", say) is reported, not skipped. */
static int is_unknown_directive(const char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    if (strncmp(s, "<!--", 4) != 0) return 0;
    s += 4;
    while (*s == ' ' || *s == '\t') s++;
    if (*s != '@') return 0;
    size_t kw = strcspn(s, " \t");
    if ((kw == 5 && !strncmp(s, "@code", 5)) || (kw == 4 && !strncmp(s, "@run", 4))) return 0;
    char words[2][MAX_NAME];
    int n = marker_words(s, "-->", &words[0][0], 2, MAX_NAME);
    return !(n == 2 && (!strcmp(words[1], "begin") || !strcmp(words[1], "end")));
}

/* The fenced block opening on line `open` (0-based) of l: index of its
 * closing fence, or -1 after reporting. */
static int block_close(const char *path, const lines *l, int marker, const char *what)
{
    int open = marker + 1;
    if (open >= l->n || !is_fence(l->line[open])) {
        fprintf(stderr, "%s:%d: '%s' must be followed by a fenced block\n", path, marker + 1, what);
        errors++;
        return -1;
    }
    int close = open + 1;
    while (close < l->n && !is_fence(l->line[close])) close++;
    if (close >= l->n) {
        fprintf(stderr, "%s:%d: fenced block for '%s' is not closed\n", path, open + 1, what);
        errors++;
        return -1;
    }
    return close;
}

/* Compare the block between fences open and close with `want`; report the
 * first difference in check mode. Copy the new or the old block to out.
 * Returns 1 when they differ. */
static int replace_block(const char *path, const lines *l, int open, int close, const lines *want, lines *out,
                         int update, const char *what, const char *source)
{
    int n_block = close - open - 1, first = -1;
    for (int k = 0; k < n_block && k < want->n && first < 0; k++)
        if (strcmp(l->line[open + 1 + k], want->line[k]) != 0) first = k;
    if (first < 0 && n_block != want->n) first = n_block < want->n ? n_block : want->n;
    if (first >= 0 && !update) {
        fprintf(stderr, "%s:%d: %s differs from %s, first at block line %d:\n    book:   %s\n    now:    %s\n",
                path, open + 2 + first, what, source, first + 1,
                first < n_block ? l->line[open + 1 + first] : "(end of block)",
                first < want->n ? want->line[first] : "(end)");
        errors++;
    }
    lines_push(out, l->line[open], strlen(l->line[open]));
    const lines *src = update ? want : NULL;
    if (src)
        for (int k = 0; k < src->n; k++) lines_push(out, src->line[k], strlen(src->line[k]));
    else
        for (int k = 0; k < n_block; k++) lines_push(out, l->line[open + 1 + k], strlen(l->line[open + 1 + k]));
    lines_push(out, l->line[close], strlen(l->line[close]));
    return first >= 0;
}

static int n_runs = 0;

/* Check (or rewrite) every @code quote and @run block in one chapter. */
static void process_chapter(const char *path, int update)
{
    lines l = {0}, out = {0};
    if (read_lines(path, &l) != 0) {
        fprintf(stderr, "%s: cannot read\n", path);
        errors++;
        return;
    }
    int changed = 0;
    for (int i = 0; i < l.n; i++) {
        char file[256], name[MAX_NAME];
        run_spec run;
        lines_push(&out, l.line[i], strlen(l.line[i]));
        int quote = parse_quote(l.line[i], file, name);
        if (quote < 0) {
            fprintf(stderr, "%s:%d: cannot read the @code line; it is '<!-- @code FILE NAME -->'\n", path, i + 1);
            errors++;
            continue;
        }
        if (is_unknown_directive(l.line[i])) {
            fprintf(stderr, "%s:%d: unknown marker; the book's markers are '<!-- @code ... -->', "
                            "'<!-- @run ... -->' and '<!-- @SECTION begin|end -->'\n", path, i + 1);
            errors++;
            continue;
        }
        if (quote) {
            region *r = find_region(name);
            if (!r) {
                fprintf(stderr, "%s:%d: unknown region '%s'\n", path, i + 1, name);
                errors++;
                continue;
            }
            r->quoted = 1;
            if (strcmp(base_name(r->file), base_name(file)) != 0) {
                fprintf(stderr, "%s:%d: region '%s' is in %s, not %s\n", path, i + 1, name, r->file, file);
                errors++;
            }
            int close = block_close(path, &l, i, name);
            if (close < 0) continue;
            char what[256], source[600];
            snprintf(what, sizeof what, "excerpt '%s'", name);
            snprintf(source, sizeof source, "%s (region at line %d)", r->file, r->begin_line);
            changed |= replace_block(path, &l, i + 1, close, &r->body, &out, update, what, source);
            i = close;
        } else {
            int kind = parse_run(l.line[i], &run);
            if (kind == 0) continue;
            if (kind < 0) {
                fprintf(stderr, "%s:%d: cannot read the @run line; it is "
                                "'<!-- @run [-C DIR] [--clean build/PATH] [--head N] [--tail N] [--fail] scale ARGS -->'\n",
                        path, i + 1);
                errors++;
                continue;
            }
            int close = block_close(path, &l, i, "@run");
            if (close < 0) continue;
            lines got = {0};
            n_runs++;
            if (run_command(path, i + 1, &run, &got) != 0) {
                errors++;
                got.n = 0;
                for (int k = i + 2; k < close; k++) lines_push(&got, l.line[k], strlen(l.line[k]));
            }
            changed |= replace_block(path, &l, i + 1, close, &got, &out, update, "worked output",
                                     "what the command prints now (make book rewrites it)");
            lines_free(&got);
            i = close;
        }
    }
    if (update && changed) {
        if (write_atomic(path, &out) != 0) {
            fprintf(stderr, "%s: cannot rewrite\n", path);
            errors++;
        } else {
            printf("booksnip: updated %s\n", path);
        }
    }
    lines_free(&l);
    lines_free(&out);
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "--check") && strcmp(argv[1], "--update"))) {
        fprintf(stderr, "usage: booksnip --check|--update SOURCE... -- CHAPTER...\n");
        return 2;
    }
    int update = !strcmp(argv[1], "--update");
    int i = 2;
    for (; i < argc && strcmp(argv[i], "--"); i++) scan_source(argv[i]);
    if (i < argc) i++;
    int n_chapters = 0;
    for (; i < argc; i++, n_chapters++) process_chapter(argv[i], update);
    if (errors) {
        fprintf(stderr, "booksnip: %d problem%s\n", errors, errors == 1 ? "" : "s");
        return 1;
    }
    int quoted = 0;
    for (int k = 0; k < n_regions; k++) quoted += regions[k].quoted;
    printf("booksnip: %d regions, %d quoted, %d commands run, %d chapters: %s\n", n_regions, quoted, n_runs,
           n_chapters, update ? "updated" : "all excerpts and worked outputs match");
    return 0;
}
