/* bench_main.c — runs the benchmark groups.
 *
 * Each tests/bench_<group>.c defines `void bench_<group>(void)` which prints
 * one line per figure:  bench key=value key=value ...
 * `./build/bench gemm` (or `make bench BENCH=gemm`) runs one group.
 */
#include <stdio.h>
#include <string.h>

#define BENCH_GROUP(name) void name(void);
#include "benches.h"
#undef BENCH_GROUP

static const struct {
    const char *name;
    void (*run)(void);
} groups[] = {
#define BENCH_GROUP(name) {#name, name},
#include "benches.h"
#undef BENCH_GROUP
};

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    int ran = 0;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        const char *g = groups[i].name + strlen("bench_");
        if (only && *only && strcmp(only, g) != 0) continue;
        groups[i].run();
        ran++;
    }
    if (!ran) {
        fprintf(stderr, "bench: no group named '%s'; groups:", only ? only : "");
        for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
            fprintf(stderr, " %s", groups[i].name + strlen("bench_"));
        fprintf(stderr, "\n");
        return 2;
    }
    return 0;
}
