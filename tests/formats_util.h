/* formats_util.h — small helpers shared by the file-format tests
 * (check_npy.c, check_json.c, check_weights.c): writing crafted files and
 * building byte strings. Header-only so the Makefile needs no new rule. */
#ifndef FORMATS_UTIL_H
#define FORMATS_UTIL_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Write n bytes to path, failing the test on any error. */
static inline void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* "DIR/NAME" in a static ring of buffers (like sc_test_path). */
static inline const char *join_path(const char *dir, const char *name)
{
    static char buf[8][1024];
    static int next = 0;
    char *p = buf[next];
    next = (next + 1) % 8;
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

#endif
