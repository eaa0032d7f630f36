/* check_util.c — see check_util.h. */
#define _POSIX_C_SOURCE 200809L
#include "check_util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#ifndef SC_TEST_ROOT
#define SC_TEST_ROOT "."
#endif

const char *sc_test_path(const char *rel)
{
    static char ring[8][4096];
    static int next = 0;
    char *buf = ring[next];
    next = (next + 1) % 8;
    /* Under `make asan` the tests run the sanitized command, so its own
     * code (error and cleanup paths included) is checked as well. */
    if (strcmp(rel, "scale") == 0 && getenv("SCALE_ASAN")) rel = "build/asan/scale";
    snprintf(buf, sizeof ring[0], "%s/%s", SC_TEST_ROOT, rel);
    return buf;
}

double sc_max_abs(const float *x, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)x[i]) > m) m = fabs((double)x[i]);
    return m;
}

static void report(const char *name, const double *got, const double *ref, int64_t n,
                   double atol, double rtol)
{
    double max_abs = 0, max_rel = 0, se = 0, sr = 0;
    int64_t first_bad = -1, n_bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i];
        int bad;
        if (isnan(r) || isnan(g)) {
            bad = !(isnan(r) && isnan(g));
        } else if (isinf(r) || isinf(g)) {
            bad = g != r;
        } else {
            double d = fabs(g - r);
            if (d > max_abs) max_abs = d;
            if (r != 0 && d / fabs(r) > max_rel) max_rel = d / fabs(r);
            se += d * d;
            sr += r * r;
            bad = d > atol + rtol * fabs(r);
        }
        if (bad) {
            n_bad++;
            if (first_bad < 0) first_bad = i;
        }
    }
    if (n_bad == 0) return;
    char pairs[512];
    size_t k = 0;
    for (int64_t i = first_bad; i < n && i < first_bad + 5 && k < sizeof pairs; i++)
        k += (size_t)snprintf(pairs + k, sizeof pairs - k, " [%lld] %.8g vs %.8g;", (long long)i,
                              got[i], ref[i]);
    ck_abort_msg("%s: %lld of %lld values differ (atol %g, rtol %g): max abs err %.3g, "
                 "max rel err %.3g, NMSE %.3g, first at index %lld:%s",
                 name, (long long)n_bad, (long long)n, atol, rtol, max_abs, max_rel,
                 sr > 0 ? se / sr : se, (long long)first_bad, pairs);
}

void sc_check_close_d(const char *name, const double *got, const double *ref, int64_t n,
                      double atol, double rtol)
{
    report(name, got, ref, n, atol, rtol);
}

void sc_check_close(const char *name, const float *got, const float *ref, int64_t n,
                    double atol, double rtol)
{
    double *g = malloc(sizeof(double) * (size_t)(n ? n : 1));
    double *r = malloc(sizeof(double) * (size_t)(n ? n : 1));
    ck_assert_ptr_nonnull(g);
    ck_assert_ptr_nonnull(r);
    for (int64_t i = 0; i < n; i++) {
        g[i] = got[i];
        r[i] = ref[i];
    }
    report(name, g, r, n, atol, rtol);
    free(g);
    free(r);
}

void sc_fill_normal(float *x, int64_t n, uint64_t seed, float scale)
{
    sc_rng r;
    sc_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = scale * sc_rng_normal(&r);
}

const char *sc_test_tmpdir(void)
{
    static char buf[8][64];
    static int next = 0;
    char *p = buf[next];
    next = (next + 1) % 8;
    snprintf(p, sizeof buf[0], "/tmp/scale-test-XXXXXX");
    if (!mkdtemp(p)) ck_abort_msg("mkdtemp failed");
    return p;
}

int sc_test_run_scale(const char *dir, const char *args)
{
    char cmd[8192];
    if (dir) snprintf(cmd, sizeof cmd, "%s %s >%s/stdout 2>%s/stderr", sc_test_path("scale"), args, dir, dir);
    else snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>&1", sc_test_path("scale"), args);
    int rc = system(cmd);
    ck_assert_msg(rc != -1 && WIFEXITED(rc), "could not run: %s", cmd);
    return WEXITSTATUS(rc);
}

int sc_test_replay_dir(const char *rel_dir, int (*target)(const uint8_t *, size_t), int required)
{
    char dir[4096]; /* a copy: target may use sc_test_path's ring too */
    snprintf(dir, sizeof dir, "%s", sc_test_path(rel_dir));
    DIR *d = opendir(dir);
    if (!d) {
        ck_assert_msg(!required, "cannot open %s", dir);
        return 0; /* e.g. no crash recorded yet for this harness */
    }
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "README") == 0) continue;
        char path[sizeof dir + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat info;
        if (stat(path, &info) == 0 && !S_ISREG(info.st_mode)) continue;
        uint8_t *bytes;
        size_t len;
        sc_err err;
        ck_assert_msg(sc_read_file(path, (size_t)16 << 20, &bytes, &len, &err) == SC_OK, "%s", err.msg);
        /* A copy of exactly len bytes, so ASan sees any read past the end. */
        uint8_t *exact = malloc(len ? len : 1);
        ck_assert_ptr_nonnull(exact);
        if (len) memcpy(exact, bytes, len);
        free(bytes);
        target(exact, len);
        free(exact);
        n++;
    }
    closedir(d);
    return n;
}
