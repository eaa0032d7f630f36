/* booksnip.c — keeps the book's code excerpts equal to the sources.
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
 * unbalanced, or a quote names the wrong file. --update rewrites the blocks
 * from the sources (atomically: temp file, then rename).
 *
 * Plain C with libc only, like the rest of the build.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_REGIONS 4096
#define MAX_NAME 128

typedef struct {
    char **line;
    int n, cap;
} lines;

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

static void lines_push(lines *l, const char *s, size_t len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->line = realloc(l->line, sizeof(char *) * (size_t)l->cap);
        if (!l->line) { perror("booksnip"); exit(2); }
    }
    char *c = malloc(len + 1);
    if (!c) { perror("booksnip"); exit(2); }
    memcpy(c, s, len);
    c[len] = 0;
    l->line[l->n++] = c;
}

/* Read a whole file as lines without their newlines. */
static int read_lines(const char *path, lines *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&buf, &cap, f)) >= 0) {
        size_t len = (size_t)got;
        if (len && buf[len - 1] == '\n') len--;
        if (len && buf[len - 1] == '\r') len--;
        lines_push(out, buf, len);
    }
    free(buf);
    fclose(f);
    return 0;
}

/* If `s` is a marker line "/ * @book KIND NAME * /" (any indentation),
 * store KIND ("begin"/"end") and NAME and return 1. */
static int parse_marker(const char *s, char *kind, char *name)
{
    const char *p = strstr(s, "/* @book ");
    if (!p) return 0;
    for (const char *q = s; q < p; q++)
        if (*q != ' ' && *q != '\t') return 0;
    p += strlen("/* @book ");
    int k = 0;
    while (*p && *p != ' ' && k < 15) kind[k++] = *p++;
    kind[k] = 0;
    while (*p == ' ') p++;
    int n = 0;
    while (*p && *p != ' ' && *p != '*' && n < MAX_NAME - 1) name[n++] = *p++;
    name[n] = 0;
    while (*p == ' ') p++;
    if (strncmp(p, "*/", 2) != 0) return 0;
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
        if (parse_marker(l.line[i], kind, name)) {
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
}

/* "<!-- @code FILE NAME -->" → file, name. */
static int parse_quote(const char *s, char *file, char *name)
{
    const char *p = s;
    while (*p == ' ') p++;
    if (strncmp(p, "<!-- @code ", 11) != 0) return 0;
    p += 11;
    int n = 0;
    while (*p && *p != ' ' && n < 255) file[n++] = *p++;
    file[n] = 0;
    while (*p == ' ') p++;
    n = 0;
    while (*p && *p != ' ' && n < MAX_NAME - 1) name[n++] = *p++;
    name[n] = 0;
    while (*p == ' ') p++;
    return strncmp(p, "-->", 3) == 0 && file[0] && name[0];
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int write_atomic(const char *path, const lines *l)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    for (int i = 0; i < l->n; i++) fprintf(f, "%s\n", l->line[i]);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

/* Check (or rewrite) every quote in one chapter. */
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
        lines_push(&out, l.line[i], strlen(l.line[i]));
        if (!parse_quote(l.line[i], file, name)) continue;
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
        /* The fenced block must start on the next line. */
        if (i + 1 >= l.n || strncmp(l.line[i + 1], "```", 3) != 0) {
            fprintf(stderr, "%s:%d: '@code %s' must be followed by a fenced block\n", path, i + 1, name);
            errors++;
            continue;
        }
        int open = i + 1, close = open + 1;
        while (close < l.n && strncmp(l.line[close], "```", 3) != 0) close++;
        if (close >= l.n) {
            fprintf(stderr, "%s:%d: fenced block for '%s' is not closed\n", path, open + 1, name);
            errors++;
            continue;
        }
        int n_block = close - open - 1;
        int differ = n_block != r->body.n;
        int first = -1;
        for (int k = 0; k < n_block && k < r->body.n; k++)
            if (strcmp(l.line[open + 1 + k], r->body.line[k]) != 0) {
                differ = 1;
                first = k;
                break;
            }
        if (first < 0 && differ) first = n_block < r->body.n ? n_block : r->body.n;
        if (differ && !update) {
            fprintf(stderr, "%s:%d: excerpt '%s' differs from %s (region at line %d), first at excerpt line %d:\n"
                            "    book:   %s\n    source: %s\n",
                    path, open + 2 + first, name, r->file, r->begin_line, first + 1,
                    first < n_block ? l.line[open + 1 + first] : "(end of block)",
                    first < r->body.n ? r->body.line[first] : "(end of region)");
            errors++;
        }
        /* Copy the fence line, then the region (or the book's block). */
        lines_push(&out, l.line[open], strlen(l.line[open]));
        if (update) {
            for (int k = 0; k < r->body.n; k++) lines_push(&out, r->body.line[k], strlen(r->body.line[k]));
            changed |= differ;
        } else {
            for (int k = 0; k < n_block; k++)
                lines_push(&out, l.line[open + 1 + k], strlen(l.line[open + 1 + k]));
        }
        lines_push(&out, l.line[close], strlen(l.line[close]));
        i = close;
    }
    if (update && changed) {
        if (write_atomic(path, &out) != 0) {
            fprintf(stderr, "%s: cannot rewrite\n", path);
            errors++;
        } else {
            printf("booksnip: updated %s\n", path);
        }
    }
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
    printf("booksnip: %d regions, %d quoted, %d chapters: %s\n", n_regions, quoted, n_chapters,
           update ? "updated" : "all excerpts match");
    return 0;
}
