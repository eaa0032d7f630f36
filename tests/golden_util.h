/* golden_util.h — running the golden cases of tests/golden/{loss,metrics}
 * (check_loss.c, check_metrics.c). Each case.json holds the expected
 * numbers and the exact `scale ...` command that must reproduce them; the
 * command runs through the real binary in a scratch directory holding
 * copies of the case's inputs, so the fixtures are never written to.
 * Header-only so the Makefile needs no new rule; the including file defines
 * _POSIX_C_SOURCE (for popen) before its first include. */
#ifndef GOLDEN_UTIL_H
#define GOLDEN_UTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check_util.h"

/* The whole of case.json, NUL-terminated (free() it). */
static inline char *golden_case_text(const char *case_dir)
{
    char rel[512];
    snprintf(rel, sizeof rel, "%s/case.json", case_dir);
    /* static: given a local's address, gcc 12 -Wdangling-pointer assumes
     * sc_read_file keeps it and warns at every later call */
    static uint8_t *data;
    size_t len;
    sc_err err;
    ck_assert_msg(sc_read_file(sc_test_path(rel), 1 << 20, &data, &len, &err) == SC_OK, "%s", err.msg);
    char *text = (char *)data;
    data = NULL;
    return text;
}

/* The number after the first `"key":` in a case.json; the cases are flat
 * and every key used here is unique in its file. */
static inline double golden_number(const char *text, const char *key)
{
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *p = strstr(text, pattern);
    ck_assert_msg(p != NULL, "case.json has no %s", key);
    char *end;
    double v = strtod(p + strlen(pattern), &end);
    ck_assert_msg(end != p + strlen(pattern), "case.json: %s is not a number", key);
    return v;
}

/* Run `scale ARGS` with the working directory `dir` (an absolute path, or
 * one under the source tree, where the command must not write) and return
 * its output in out. */
static inline void scale_run(const char *dir, const char *args, char *out, size_t n)
{
    char shell[8192];
    snprintf(shell, sizeof shell, "cd '%s' && '%s' %s", dir[0] == '/' ? dir : sc_test_path(dir), sc_test_path("scale"),
             args);
    FILE *p = popen(shell, "r");
    ck_assert_msg(p != NULL, "cannot run %s", shell);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int status = pclose(p);
    ck_assert_msg(status == 0, "'%s' exited with status %d:\n%s", shell, status, out);
}

/* Run `scale ARGS` in `dir` as scale_run does, with standard error joined
 * to the output, and return its exit status instead of requiring 0. */
static inline int scale_status(const char *dir, const char *args, char *out, size_t n)
{
    char shell[8192];
    snprintf(shell, sizeof shell, "cd '%s' && '%s' %s 2>&1", dir[0] == '/' ? dir : sc_test_path(dir),
             sc_test_path("scale"), args);
    FILE *p = popen(shell, "r");
    ck_assert_msg(p != NULL, "cannot run %s", shell);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = 0;
    int status = pclose(p);
    ck_assert_msg(status != -1 && WIFEXITED(status), "'%s' did not exit normally", shell);
    return WEXITSTATUS(status);
}

/* Copy the named files of a case into a fresh directory, run the case's
 * command there with "scale" replaced by the binary under test, and return
 * the directory; the command's standard output goes to out (n bytes). */
static inline const char *golden_run(const char *case_dir, const char *const *inputs, int n_inputs, char *out,
                                     size_t n)
{
    const char *dir = sc_test_tmpdir();
    char rel[512], dst[1024];
    for (int i = 0; i < n_inputs; i++) {
        uint8_t *data;
        size_t len;
        sc_err err;
        snprintf(rel, sizeof rel, "%s/%s", case_dir, inputs[i]);
        ck_assert_msg(sc_read_file(sc_test_path(rel), 1 << 26, &data, &len, &err) == SC_OK, "%s", err.msg);
        snprintf(dst, sizeof dst, "%s/%s", dir, inputs[i]);
        ck_assert_msg(sc_write_file_atomic(dst, data, len, &err) == SC_OK, "%s", err.msg);
        free(data);
    }
    char *text = golden_case_text(case_dir);
    const char *cmd = strstr(text, "\"command\": \"scale ");
    ck_assert_msg(cmd != NULL, "%s/case.json has no scale command", case_dir);
    cmd += strlen("\"command\": \"scale ");
    const char *end = strchr(cmd, '"');
    ck_assert_ptr_nonnull(end);
    char args[4096];
    snprintf(args, sizeof args, "%.*s", (int)(end - cmd), cmd);
    free(text);
    scale_run(dir, args, out, n);
    return dir;
}

/* The value of a `name=value` line of a command's output. */
static inline double golden_output_value(const char *out, const char *name)
{
    char pattern[128];
    snprintf(pattern, sizeof pattern, "%s=", name);
    for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, pattern, strlen(pattern))) return strtod(p + strlen(pattern), NULL);
    ck_abort_msg("no %s= line in:\n%s", name, out);
    return NAN;
}

/* A .npy file as float32 (free() it), with its element count. */
static inline float *golden_floats(const char *path, int64_t *n)
{
    sc_array a;
    sc_err err;
    float *x;
    ck_assert_msg(sc_npy_read(path, &a, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_array_to_f32(&a, &x, &err) == SC_OK, "%s", err.msg);
    *n = sc_array_numel(&a);
    sc_array_free(&a);
    return x;
}

#endif
