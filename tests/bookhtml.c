/* bookhtml.c — the book as one HTML page: bookhtml OUT.html CHAPTER.md...
 *
 * Converts the markdown subset the book uses: headings, paragraphs, lists
 * (one level, continuation lines indented), tables, fenced code, block
 * quotes, and inline `code`, **strong**, *emphasis*, [links](x.md#a) and
 * images. Mathematics is left as written for MathJax. Each file becomes a
 * <section id="STEM">; a heading's id is STEM--ANCHOR with the anchor
 * GitHub would give it, so links between chapters become links inside the
 * page. HTML comments (the book's @code and @run markers) are dropped.
 * Plain C, libc only.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "booktext.h"

static void put_escaped(FILE *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '<') fputs("&lt;", o);
        else if (s[i] == '>') fputs("&gt;", o);
        else if (s[i] == '&') fputs("&amp;", o);
        else if (s[i] == '"') fputs("&quot;", o);
        else fputc(s[i], o);
    }
}

/* "05-loss.md#51-from-q-to-z" → "#05-loss--51-from-q-to-z"; other links
 * (web addresses, files) are kept. */
static void put_href(FILE *o, const char *s, size_t n)
{
    const char *md = NULL;
    for (size_t i = 0; i + 3 <= n; i++)
        if (!strncmp(s + i, ".md", 3) && (i + 3 == n || s[i + 3] == '#')) md = s + i;
    if (!md || memchr(s, ':', n)) {
        if (n && !memchr(s, ':', n) && s[0] != '#') fputs("../book/", o); /* files beside the chapters */
        put_escaped(o, s, n);
        return;
    }
    fputc('#', o);
    put_escaped(o, s, (size_t)(md - s));
    if (md + 3 < s + n) {
        fputs("--", o);
        put_escaped(o, md + 4, (size_t)(s + n - md - 4));
    }
}

/* Inline markup of one stretch of text. */
static void put_inline(FILE *o, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const char *rest = s + i;
        size_t left = n - i;
        const char *close;
        if (*rest == '`' && (close = memchr(rest + 1, '`', left - 1))) {
            fputs("<code>", o);
            put_escaped(o, rest + 1, (size_t)(close - rest - 1));
            fputs("</code>", o);
            i += (size_t)(close - rest) + 1;
        } else if (*rest == '$' && (close = memchr(rest + 1, '$', left - 1))) {
            /* Mathematics, as written (MathJax reads it). */
            size_t len = (size_t)(close - rest) + 1;
            if (left > 1 && rest[1] == '$' && (close = strstr(rest + 2, "$$")) && close < s + n)
                len = (size_t)(close - rest) + 2;
            put_escaped(o, rest, len);
            i += len;
        } else if (!strncmp(rest, "**", 2) && left > 2 && (close = strstr(rest + 2, "**")) && close < s + n) {
            fputs("<strong>", o);
            put_inline(o, rest + 2, (size_t)(close - rest - 2));
            fputs("</strong>", o);
            i += (size_t)(close - rest) + 2;
        } else if (*rest == '*' && left > 1 && rest[1] != ' ' && (close = memchr(rest + 1, '*', left - 1))) {
            fputs("<em>", o);
            put_inline(o, rest + 1, (size_t)(close - rest - 1));
            fputs("</em>", o);
            i += (size_t)(close - rest) + 1;
        } else if ((*rest == '[' || (*rest == '!' && left > 1 && rest[1] == '['))) {
            int image = *rest == '!';
            const char *text = rest + 1 + image, *mid = NULL, *end = NULL;
            for (const char *p = text; p < s + n && !mid; p++)
                if (p[0] == ']' && p + 1 < s + n && p[1] == '(') mid = p;
            if (mid) end = memchr(mid, ')', (size_t)(s + n - mid));
            if (!end) {
                put_escaped(o, rest, 1);
                i++;
                continue;
            }
            if (image) {
                fputs("<img src=\"", o);
                put_href(o, mid + 2, (size_t)(end - mid - 2));
                fputs("\" alt=\"", o);
                put_escaped(o, text, (size_t)(mid - text));
                fputs("\">", o);
            } else {
                fputs("<a href=\"", o);
                put_href(o, mid + 2, (size_t)(end - mid - 2));
                fputs("\">", o);
                put_inline(o, text, (size_t)(mid - text));
                fputs("</a>", o);
            }
            i += (size_t)(end - rest) + 1;
        } else {
            put_escaped(o, rest, 1);
            i++;
        }
    }
}

static void put_inline_str(FILE *o, const char *s)
{
    put_inline(o, s, strlen(s));
}

static int is_blank(const char *s)
{
    while (*s == ' ') s++;
    return !*s;
}

/* "* item", "- item" or "12. item": the offset of the item's text, else 0. */
static int list_item(const char *s, int *ordered)
{
    if ((s[0] == '*' || s[0] == '-') && s[1] == ' ') return *ordered = 0, 2;
    int k = 0;
    while (isdigit((unsigned char)s[k])) k++;
    if (k && s[k] == '.' && s[k + 1] == ' ') return *ordered = 1, k + 2;
    return 0;
}

static int starts_block(const char *s)
{
    int ordered;
    return heading_level(s) || is_fence(s) || s[0] == '>' || s[0] == '|' || list_item(s, &ordered) ||
           !strncmp(s, "<!--", 4) || !strncmp(s, "$$", 2);
}

/* One table: header, separator, body rows. */
static int put_table(FILE *o, const lines *t, int i)
{
    fputs("<table>\n", o);
    for (int row = 0; i < t->n && t->line[i][0] == '|'; i++, row++) {
        if (row == 1) continue; /* the |---| separator */
        const char *tag = row == 0 ? "th" : "td";
        fputs("<tr>", o);
        const char *p = t->line[i] + 1;
        while (*p) {
            const char *q = p;
            int code = 0;
            while (*q && (code || *q != '|')) {
                if (*q == '`') code = !code;
                q++;
            }
            if (!*q) break;
            const char *a = p, *b = q;
            while (a < b && *a == ' ') a++;
            while (b > a && b[-1] == ' ') b--;
            fprintf(o, "<%s>", tag);
            put_inline(o, a, (size_t)(b - a));
            fprintf(o, "</%s>", tag);
            p = q + 1;
        }
        fputs("</tr>\n", o);
    }
    fputs("</table>\n", o);
    return i;
}

static void put_file(FILE *o, const char *path)
{
    lines t = {0};
    if (read_lines(path, &t) != 0) {
        fprintf(stderr, "bookhtml: cannot read %s\n", path);
        exit(1);
    }
    char stem[256];
    snprintf(stem, sizeof stem, "%s", base_name(path));
    char *dot = strrchr(stem, '.');
    if (dot) *dot = 0;
    fprintf(o, "<section id=\"%s\">\n", stem);
    anchor_list anchors = {0};
    int n_heading = 0;
    anchor_list_build(&anchors, &t);
    for (int i = 0; i < t.n;) {
        const char *s = t.line[i];
        int level = heading_level(s), ordered, off;
        if (is_blank(s)) {
            i++;
        } else if (!strncmp(s, "<!--", 4)) {
            while (i < t.n && !strstr(t.line[i], "-->")) i++;
            i++;
        } else if (is_fence(s)) {
            fputs("<pre><code>", o);
            for (i++; i < t.n && !is_fence(t.line[i]); i++) {
                put_escaped(o, t.line[i], strlen(t.line[i]));
                fputc('\n', o);
            }
            fputs("</code></pre>\n", o);
            i++;
        } else if (!strncmp(s, "$$", 2)) {
            /* Display mathematics, as written, up to the closing $$. */
            fputs("<p>", o);
            int closed = strstr(s + 2, "$$") != NULL;
            for (;;) {
                put_escaped(o, t.line[i], strlen(t.line[i]));
                fputc('\n', o);
                i++;
                if (closed || i >= t.n) break;
                closed = strstr(t.line[i], "$$") != NULL;
            }
            fputs("</p>\n", o);
        } else if (level) {
            fprintf(o, "<h%d id=\"%s--%s\">", level, stem, anchors.anchor.line[n_heading++]);
            put_inline_str(o, s + level + 1);
            fprintf(o, "</h%d>\n", level);
            i++;
        } else if (s[0] == '|') {
            i = put_table(o, &t, i);
        } else if (s[0] == '>') {
            fputs("<blockquote><p>", o);
            for (; i < t.n && t.line[i][0] == '>'; i++) {
                put_inline_str(o, t.line[i] + (t.line[i][1] == ' ' ? 2 : 1));
                fputc('\n', o);
            }
            fputs("</p></blockquote>\n", o);
        } else if ((off = list_item(s, &ordered))) {
            fputs(ordered ? "<ol>\n" : "<ul>\n", o);
            int o2;
            while (i < t.n && (off = list_item(t.line[i], &o2))) {
                fputs("<li>", o);
                put_inline_str(o, t.line[i] + off);
                /* Continuation lines of the item are indented. */
                for (i++; i < t.n && t.line[i][0] == ' ' && !is_blank(t.line[i]); i++) {
                    fputc('\n', o);
                    put_inline_str(o, t.line[i]);
                }
                fputs("</li>\n", o);
                if (i + 1 < t.n && is_blank(t.line[i]) && list_item(t.line[i + 1], &o2)) i++;
            }
            fputs(ordered ? "</ol>\n" : "</ul>\n", o);
        } else {
            /* A paragraph, or a display formula: lines up to a blank line or
             * the start of another block. */
            fputs("<p>", o);
            for (int first = 1; i < t.n && !is_blank(t.line[i]) && (first || !starts_block(t.line[i])); i++) {
                if (!first) fputc('\n', o);
                put_inline_str(o, t.line[i]);
                first = 0;
            }
            fputs("</p>\n", o);
        }
    }
    fputs("</section>\n", o);
    anchor_list_free(&anchors);
    lines_free(&t);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bookhtml OUT.html CHAPTER.md...\n");
        return 2;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    FILE *o = fopen(tmp, "w");
    if (!o) {
        fprintf(stderr, "bookhtml: cannot write %s\n", tmp);
        return 1;
    }
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<title>The scale book</title>\n"
          "<script>MathJax = {tex: {inlineMath: [['$', '$']]}};</script>\n"
          "<script async src=\"https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js\"></script>\n"
          "<style>body{max-width:50em;margin:auto;padding:0 1em;font-family:serif;line-height:1.45}"
          "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}code{font-size:90%}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;vertical-align:top}"
          "blockquote{border-left:3px solid #ccc;margin-left:0;padding-left:1em;color:#333}"
          "section{border-bottom:1px solid #ddd;margin-bottom:2em}</style>\n</head>\n<body>\n",
          o);
    for (int i = 2; i < argc; i++) put_file(o, argv[i]);
    fputs("</body>\n</html>\n", o);
    if (fclose(o) != 0 || rename(tmp, argv[1]) != 0) {
        fprintf(stderr, "bookhtml: cannot write %s\n", argv[1]);
        remove(tmp);
        return 1;
    }
    printf("bookhtml: wrote %s from %d files\n", argv[1], argc - 2);
    return 0;
}
