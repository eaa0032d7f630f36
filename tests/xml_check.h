/* xml_check.h — a small XML checker for the SVG files the tests write
 * (check_svg.c, check_experiment.c): one root element, balanced and
 * properly nested tags, attribute values quoted, text and attributes free
 * of raw '<' and of '&' outside the five named entities and character
 * references, valid UTF-8 throughout. It also counts elements by name and
 * by class, so a test can ask "one polyline per series, one error bar per
 * point, one legend entry per method". Header-only. */
#ifndef XML_CHECK_H
#define XML_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

#define XML_MAX_KEYS 64
typedef struct {
    char key[XML_MAX_KEYS][40];   /* "polyline" or "class=errorbar" */
    int count[XML_MAX_KEYS];
    int n_keys;
    char why[200];                /* the first problem found */
} xml_stats;

static inline void xml_count(xml_stats *st, const char *key, size_t len)
{
    if (len >= sizeof st->key[0]) len = sizeof st->key[0] - 1;
    for (int i = 0; i < st->n_keys; i++)
        if (strlen(st->key[i]) == len && memcmp(st->key[i], key, len) == 0) {
            st->count[i]++;
            return;
        }
    if (st->n_keys == XML_MAX_KEYS) return;
    memcpy(st->key[st->n_keys], key, len);
    st->key[st->n_keys][len] = '\0';
    st->count[st->n_keys++] = 1;
}

static inline int xml_get(const xml_stats *st, const char *key)
{
    for (int i = 0; i < st->n_keys; i++)
        if (strcmp(st->key[i], key) == 0) return st->count[i];
    return 0;
}

static inline int xml_fail(xml_stats *st, const char *p, const char *why)
{
    snprintf(st->why, sizeof st->why, "%s at \"%.30s\"", why, p);
    return 0;
}

static inline int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == ':' || c == '.';
}

/* Character data up to `stop` (exclusive): no '<', entities well formed. */
static inline int xml_chars(xml_stats *st, const char *p, const char *stop)
{
    static const char *const entities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    while (p < stop) {
        if (*p == '<') return xml_fail(st, p, "raw '<' in text or attribute");
        if (*p == '&') {
            size_t n = 0;
            for (size_t e = 0; e < 5; e++)
                if (strncmp(p, entities[e], strlen(entities[e])) == 0) n = strlen(entities[e]);
            if (n == 0 && p[1] == '#') {
                const char *q = p + 2 + (p[2] == 'x');
                while (q < stop && (q[0] >= '0' && q[0] <= '9')) q++;
                if (q < stop && *q == ';' && q > p + 2) n = (size_t)(q - p) + 1;
            }
            if (n == 0) return xml_fail(st, p, "'&' that starts no entity");
            p += n;
        } else {
            p++;
        }
    }
    return 1;
}

/* UTF-8 validity (a browser refuses an XML file with a bad byte). */
static inline int xml_utf8(xml_stats *st, const unsigned char *s)
{
    while (*s) {
        int n = *s < 0x80 ? 1 : (*s >> 5) == 6 ? 2 : (*s >> 4) == 14 ? 3 : (*s >> 3) == 30 ? 4 : 0;
        if (n == 0) return xml_fail(st, (const char *)s, "invalid UTF-8 lead byte");
        for (int i = 1; i < n; i++)
            if ((s[i] >> 6) != 2) return xml_fail(st, (const char *)s, "invalid UTF-8 continuation");
        s += n;
    }
    return 1;
}

/* One start or empty-element tag at p (just past '<'). Returns the end
 * (past '>'), sets *self_closing, and the name span. */
static inline const char *xml_tag(xml_stats *st, const char *p, const char **name, size_t *name_len, int *self_closing)
{
    *name = p;
    while (is_name_char(*p)) p++;
    *name_len = (size_t)(p - *name);
    if (*name_len == 0) return xml_fail(st, p, "tag without a name"), NULL;
    xml_count(st, *name, *name_len);
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\t') p++;
        if (*p == '>') {
            *self_closing = 0;
            return p + 1;
        }
        if (p[0] == '/' && p[1] == '>') {
            *self_closing = 1;
            return p + 2;
        }
        const char *attr = p;
        while (is_name_char(*p)) p++;
        size_t attr_len = (size_t)(p - attr);
        if (attr_len == 0 || p[0] != '=' || (p[1] != '"' && p[1] != '\''))
            return xml_fail(st, attr, "attribute without a quoted value"), NULL;
        char quote = p[1];
        const char *value = p + 2, *end = strchr(value, quote);
        if (!end) return xml_fail(st, value, "unterminated attribute value"), NULL;
        if (!xml_chars(st, value, end)) return NULL;
        if (attr_len == 5 && memcmp(attr, "class", 5) == 0) {
            char key[64];
            snprintf(key, sizeof key, "class=%.*s", (int)(end - value), value);
            xml_count(st, key, strlen(key));
        }
        if (attr_len == 16 && memcmp(attr, "stroke-dasharray", 16) == 0) xml_count(st, "dashed", 6);
        p = end + 1;
        if (*p != ' ' && *p != '\n' && *p != '>' && *p != '/') return xml_fail(st, p, "no space after attribute"), NULL;
    }
}

/* 1 when doc is a well-formed XML document with an <svg> root. */
static inline int xml_well_formed(const char *doc, xml_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!xml_utf8(st, (const unsigned char *)doc)) return 0;
    const char *p = doc;
    if (strncmp(p, "<?xml ", 6) == 0) {
        p = strstr(p, "?>");
        if (!p) return xml_fail(st, doc, "unterminated XML declaration");
        p += 2;
    }
    const char *stack[64];
    size_t stack_len[64];
    int depth = 0, roots = 0;
    while (*p) {
        const char *lt = strchr(p, '<');
        const char *text_end = lt ? lt : p + strlen(p);
        if (depth == 0) {
            for (const char *q = p; q < text_end; q++)
                if (*q != ' ' && *q != '\n') return xml_fail(st, q, "text outside the root element");
        } else if (!xml_chars(st, p, text_end)) {
            return 0;
        }
        if (!lt) break;
        p = lt + 1;
        if (*p == '/') {
            const char *name = ++p;
            while (is_name_char(*p)) p++;
            size_t len = (size_t)(p - name);
            if (depth == 0 || len != stack_len[depth - 1] || memcmp(name, stack[depth - 1], len) != 0)
                return xml_fail(st, name, "end tag does not match the open element");
            if (*p != '>') return xml_fail(st, p, "junk in an end tag");
            p++;
            depth--;
            continue;
        }
        const char *name;
        size_t len;
        int self_closing;
        if (depth == 0 && roots++ > 0) return xml_fail(st, p, "a second root element");
        p = xml_tag(st, p, &name, &len, &self_closing);
        if (!p) return 0;
        if (!self_closing) {
            if (depth == 64) return xml_fail(st, name, "nesting too deep");
            stack[depth] = name;
            stack_len[depth++] = len;
        }
    }
    if (depth != 0) return xml_fail(st, p, "elements left open at the end");
    if (roots != 1 || xml_get(st, "svg") != 1) return xml_fail(st, doc, "no single <svg> root");
    return 1;
}

/* Read a written SVG file, check it and count its elements. */
static inline char *read_svg(const char *path, xml_stats *st)
{
    uint8_t *bytes;
    size_t len;
    sc_err err;
    ck_assert_msg(sc_read_file(path, 1 << 24, &bytes, &len, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(xml_well_formed((const char *)bytes, st), "%s is not well-formed XML: %s", path, st->why);
    return (char *)bytes;
}

#endif
