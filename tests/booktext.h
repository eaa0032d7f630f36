/* booktext.h — what the book's tools share: a file as an array of lines,
 * atomic rewriting, and the anchors of markdown headings.
 *
 * Included by tests/booksnip.c (excerpts and worked numbers),
 * tests/bookindex.c (coverage, function index, notation, exercises) and
 * tests/bookhtml.c (the HTML version). Plain C with libc only; every
 * function is static inline because each tool is one translation unit and
 * not every tool uses every helper.
 */
#ifndef BOOKTEXT_H
#define BOOKTEXT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char **line;
    int n, cap;
} lines;

static inline void *book_xrealloc(void *p, size_t bytes)
{
    p = realloc(p, bytes ? bytes : 1);
    if (!p) {
        perror("book");
        exit(2);
    }
    return p;
}

static inline void lines_push(lines *l, const char *s, size_t len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->line = book_xrealloc(l->line, sizeof(char *) * (size_t)l->cap);
    }
    char *c = book_xrealloc(NULL, len + 1);
    memcpy(c, s, len);
    c[len] = 0;
    l->line[l->n++] = c;
}

static inline void lines_free(lines *l)
{
    for (int i = 0; i < l->n; i++) free(l->line[i]);
    free(l->line);
    l->line = NULL;
    l->n = l->cap = 0;
}

/* Read a whole file as lines without their newlines; -1 if unreadable. */
static inline int read_lines(const char *path, lines *out)
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

/* Write lines to path through a temporary file and a rename, so a reader
 * never sees half a file. */
static inline int write_atomic(const char *path, const lines *l)
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

static inline const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static inline int is_fence(const char *s)
{
    return strncmp(s, "```", 3) == 0;
}

/* Heading level of a markdown line ("## 5.3 Title" → 2), 0 if none. The
 * caller skips fenced blocks, where "#define" is not a heading. */
static inline int heading_level(const char *s)
{
    int k = 0;
    while (s[k] == '#') k++;
    return k >= 1 && k <= 6 && s[k] == ' ' ? k : 0;
}

/* Decode one UTF-8 sequence at s; store its length in *len. */
static inline unsigned utf8_decode(const unsigned char *s, int *len)
{
    if (s[0] < 0x80) return *len = 1, s[0];
    if ((s[0] & 0xE0) == 0xC0 && s[1]) return *len = 2, ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu);
    if ((s[0] & 0xF0) == 0xE0 && s[1] && s[2])
        return *len = 3, ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
    if ((s[0] & 0xF8) == 0xF0 && s[1] && s[2] && s[3])
        return *len = 4, ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
    return *len = 1, 0xFFFD;
}

/* Letters outside ASCII that a heading of this book may hold: Latin-1 and
 * Latin Extended letters, Greek. Dashes, ×, … and arrows are punctuation. */
static inline int is_wide_letter(unsigned c)
{
    return (c >= 0xC0 && c <= 0x24F && c != 0xD7 && c != 0xF7) || (c >= 0x370 && c <= 0x3FF);
}

/* The anchor GitHub gives a heading: its text in lower case, punctuation
 * dropped (hyphens and underscores kept), spaces turned into hyphens.
 * "5.3 Supervised contrastive loss (Eq. 2), two readings" →
 * "53-supervised-contrastive-loss-eq-2-two-readings". Backticks and
 * emphasis marks are punctuation, so `.hier` becomes "hier". A repeated
 * heading's anchor gets "-1", "-2"... — see anchor_list_add. */
static inline void heading_anchor(const char *heading, char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)heading;
    while (*s == '#') s++;
    while (*s == ' ') s++;
    size_t n = 0;
    while (*s && n + 5 < cap) {
        int len;
        unsigned c = utf8_decode(s, &len);
        if (c < 0x80) {
            if (c >= 'A' && c <= 'Z') out[n++] = (char)(c - 'A' + 'a');
            else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') out[n++] = (char)c;
            else if (c == ' ') out[n++] = '-';
        } else if (is_wide_letter(c)) {
            /* Lower-case the letters that have a one-byte-shift lower case
             * (Greek capitals Α..Ω, Latin-1 À..Þ); copy the rest as they are. */
            if (c >= 0x391 && c <= 0x3A9) c += 0x20;
            else if (c >= 0xC0 && c <= 0xDE) c += 0x20;
            if (c < 0x800) {
                out[n++] = (char)(0xC0 | (c >> 6));
                out[n++] = (char)(0x80 | (c & 0x3F));
            } else {
                for (int k = 0; k < len; k++) out[n++] = (char)s[k];
            }
        }
        s += len;
    }
    out[n] = 0;
}

/* All anchors of one markdown file, in order, with GitHub's numbering of
 * repeats. */
typedef struct {
    lines anchor;
    lines title;   /* the heading text, for the function index */
    int *line_no;  /* 1-based line of each heading */
} anchor_list;

static inline void anchor_list_add(anchor_list *a, const char *heading, int line_no)
{
    char base[512], name[540];
    heading_anchor(heading, base, sizeof base);
    snprintf(name, sizeof name, "%s", base);
    for (int k = 1;; k++) {
        int taken = 0;
        for (int i = 0; i < a->anchor.n && !taken; i++) taken = !strcmp(a->anchor.line[i], name);
        if (!taken) break;
        snprintf(name, sizeof name, "%s-%d", base, k);
    }
    lines_push(&a->anchor, name, strlen(name));
    const char *t = heading;
    while (*t == '#') t++;
    while (*t == ' ') t++;
    lines_push(&a->title, t, strlen(t));
    a->line_no = book_xrealloc(a->line_no, sizeof(int) * (size_t)a->anchor.cap);
    a->line_no[a->anchor.n - 1] = line_no;
}

/* Collect the headings of a file already read as lines. */
static inline void anchor_list_build(anchor_list *a, const lines *text)
{
    int in_fence = 0;
    for (int i = 0; i < text->n; i++) {
        if (is_fence(text->line[i])) in_fence = !in_fence;
        else if (!in_fence && heading_level(text->line[i])) anchor_list_add(a, text->line[i], i + 1);
    }
}

static inline int anchor_list_has(const anchor_list *a, const char *name)
{
    for (int i = 0; i < a->anchor.n; i++)
        if (!strcmp(a->anchor.line[i], name)) return 1;
    return 0;
}

static inline void anchor_list_free(anchor_list *a)
{
    lines_free(&a->anchor);
    lines_free(&a->title);
    free(a->line_no);
    a->line_no = NULL;
}

#endif
