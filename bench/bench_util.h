/* What the benchmarks of this folder share: the clock, medians, file paths, and the folder of the
 * peer scripts. A benchmark defines BENCH_NAME (its name, for messages) before including this. */
#ifndef SBX_BENCH_UTIL_H
#define SBX_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int compare_doubles(const void *pa, const void *pb) {
    const double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* Sorts v; the middle value, or the mean of the middle two (as Python's statistics.median). */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* buf = dir/name; 1, with a message, when it does not fit in len bytes. */
static inline int join_path(char *buf, size_t len, const char *dir, const char *name) {
    const int n = snprintf(buf, len, "%s/%s", dir, name);
    if (n >= 0 && (size_t)n < len) return 0;
    fprintf(stderr, "%s: path too long: %s/%s\n", BENCH_NAME, dir, name);
    return 1;
}

/* The folder of the peer scripts: arg when given (not NULL), else $SBX_BENCH_DIR, else the folder of
 * this header as the compiler saw it (the scripts sit next to it). */
static inline void peer_folder(const char *arg, char *dir, size_t len) {
    const char *env = getenv("SBX_BENCH_DIR");
    snprintf(dir, len, "%s", arg ? arg : env && *env ? env : __FILE__);
    if (arg || (env && *env)) return;
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, len, ".");
}

#endif
