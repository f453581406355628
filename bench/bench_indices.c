/* bench_indices: times the build of a convolution's patch matrix (sbx_conv_indices with weight
 * sharing, one kernel, CSC, no kmap) on the shapes of the original's table and on two larger ones,
 * with 1 and 2 threads.
 *
 * Each figure is the median of repeated builds after one warm-up; the builds go on until they have
 * taken at least MIN_TOTAL_SECONDS and MIN_REPEATS runs. Only the call is timed: the result is freed
 * after the clock stops. Next to each figure:
 *  - ns per stored entry;
 *  - the ratio to a floor: allocating a fresh int64 array of nnz entries and writing every entry
 *    once, timed the same way, the least a build could cost;
 *  - for the table's shapes, the original's time (pure Python) and the speed-up over it.
 * An entry count that differs from the table's is a bug: it is printed and the exit status is 1. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <sparsebox/conv.h>
#include <sparsebox/core.h>
#include <sparsebox/sparse.h>

#define BENCH_NAME "bench_indices"
#include "bench_util.h"

#define MIN_REPEATS 5
#define MIN_TOTAL_SECONDS 0.2
#define MAX_REPEATS 1000000
#define GOAL_NS_PER_ENTRY 5.0
#define GOAL_FLOOR_RATIO 2.0
#define GOAL_SPEEDUP 3000.0
#define NUM_COLUMNS 2

static const int THREADS[NUM_COLUMNS] = {1, 2};

/* One shape to time. Table cases go through sbx_conv_shape_aesara with inshp (channels, h, w);
 * the others through sbx_conv_shape_make. */
typedef struct bench_case {
    const char *name;
    int aesara;
    int ndim;
    int64_t channels;
    int64_t in[3], kernel[3];
    sbx_conv_mode mode;
    int64_t table_nnz; /* the original's entry count; 0 when not in the table */
    double table_ms;   /* the original's time */
} bench_case;

static const bench_case CASES[] = {
    {"(1,28,28) 5x5 valid", 1, 2, 1, {28, 28}, {5, 5}, SBX_CONV_VALID, 14400, 198},
    {"(1,28,28) 5x5 full", 1, 2, 1, {28, 28}, {5, 5}, SBX_CONV_FULL, 19600, 288},
    {"(3,32,32) 3x3 valid", 1, 2, 3, {32, 32}, {3, 3}, SBX_CONV_VALID, 24300, 389},
    {"(1,64,64) 7x7 valid", 1, 2, 1, {64, 64}, {7, 7}, SBX_CONV_VALID, 164836, 2665},
    {"(16,12,12) 5x5 valid", 1, 2, 16, {12, 12}, {5, 5}, SBX_CONV_VALID, 25600, 369},
    {"(1,512,512) 7x7 valid", 1, 2, 1, {512, 512}, {7, 7}, SBX_CONV_VALID, 0, 0},
    {"4 x 32x32x32, 3x3x3 valid", 0, 3, 4, {32, 32, 32}, {3, 3, 3}, SBX_CONV_VALID, 0, 0},
};
#define NUM_CASES (sizeof CASES / sizeof CASES[0])

/* A median and the number of timed runs behind it. */
typedef struct timing {
    double seconds;
    int repeats;
} timing;

/* What one case measured. */
typedef struct case_result {
    int64_t nnz;
    timing floor;
    timing build[NUM_COLUMNS];
    int threads_used[NUM_COLUMNS];
} case_result;

/* One timed run of either kind: fills *seconds. */
typedef sbx_status (*run_fn)(const void *arg, double *seconds);

/* Read back from each floor array, so that its writes cannot be dropped. */
static volatile int64_t sink;

/* Room for the run times, shared by every measurement. */
static double *run_times;

/* ---- errors and formatting ---- */

static int fail(const char *what, sbx_status st) {
    fprintf(stderr, "bench_indices: %s failed: %s: %s\n", what, sbx_status_str(st), sbx_last_error());
    return 1;
}

/* v with a comma every three digits, into buf (32 bytes are enough for any int64). */
static const char *grouped(int64_t v, char buf[32]) {
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%lld", (long long)v), j = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && digits[i - 1] != '-' && (n - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = digits[i];
    }
    buf[j] = '\0';
    return buf;
}

static const char *verdict(int met) { return met ? "met" : "MISSED"; }

/* ---- timing ---- */

/* One warm-up, then timed runs until MIN_REPEATS of them have taken MIN_TOTAL_SECONDS. */
static sbx_status measure(run_fn run, const void *arg, timing *out) {
    double warm_up, total = 0;
    int n = 0;
    sbx_status st = run(arg, &warm_up);
    while (st == SBX_OK && n < MAX_REPEATS && (n < MIN_REPEATS || total < MIN_TOTAL_SECONDS)) {
        st = run(arg, &run_times[n]);
        total += run_times[n++];
    }
    if (st != SBX_OK) return st;
    out->seconds = median(run_times, n);
    out->repeats = n;
    return SBX_OK;
}

/* ---- the two things timed ---- */

/* One build of the patch matrix; the result is freed after the clock stops. */
static sbx_status build_once(const void *arg, double *seconds) {
    sbx_sparse *m = NULL;
    double t0 = now_seconds();
    sbx_status st = sbx_conv_indices(arg, 1, 1, SBX_CSC, &m, NULL);
    *seconds = now_seconds() - t0;
    sbx_sparse_free(m);
    return st;
}

static void write_entries(int64_t *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) v[i] = i;
}

/* The floor: a fresh int64 array of nnz entries, each written once, one read back. */
static sbx_status floor_once(const void *arg, double *seconds) {
    int64_t n = *(const int64_t *)arg;
    sbx_array *a = NULL;
    double t0 = now_seconds();
    sbx_status st = sbx_array_create(SBX_INT64, 1, &n, &a);
    if (st == SBX_OK && n > 0) {
        write_entries(a->data, n);
        sink = ((const int64_t *)a->data)[n / 2];
    }
    *seconds = now_seconds() - t0;
    sbx_array_free(a);
    return st;
}

/* ---- one case ---- */

static sbx_status make_shape(const bench_case *c, sbx_conv_shape *shape) {
    if (!c->aesara) return sbx_conv_shape_make(c->ndim, c->channels, c->in, c->kernel, NULL, c->mode, shape);
    int64_t inshp[3] = {c->channels, c->in[0], c->in[1]};
    return sbx_conv_shape_aesara(3, inshp, c->kernel, NULL, c->mode, shape);
}

/* Builds the matrix once and reports its entry count. */
static sbx_status count_entries(const sbx_conv_shape *shape, int64_t *nnz) {
    sbx_sparse *m = NULL;
    sbx_status st = sbx_conv_indices(shape, 1, 1, SBX_CSC, &m, NULL);
    if (st == SBX_OK) *nnz = m->nnz;
    sbx_sparse_free(m);
    return st;
}

/* 1 when the case is in the table and its entry count differs from the table's. */
static int nnz_mismatch(const bench_case *c, int64_t nnz) {
    char ours[32], theirs[32];
    if (!c->table_nnz || nnz == c->table_nnz) return 0;
    fprintf(stderr, "bench_indices: %s: nnz %s, the table says %s\n", c->name, grouped(nnz, ours),
            grouped(c->table_nnz, theirs));
    return 1;
}

static int time_builds(const bench_case *c, const sbx_conv_shape *shape, case_result *r) {
    for (int k = 0; k < NUM_COLUMNS; k++) {
        sbx_set_num_threads(THREADS[k]);
        r->threads_used[k] = sbx_get_num_threads();
        sbx_status st = measure(build_once, shape, &r->build[k]);
        if (st != SBX_OK) return fail(c->name, st);
    }
    sbx_set_num_threads(0);
    return 0;
}

static int run_case(const bench_case *c, case_result *r) {
    sbx_conv_shape shape;
    sbx_status st = make_shape(c, &shape);
    if (st != SBX_OK) return fail(c->aesara ? "sbx_conv_shape_aesara" : "sbx_conv_shape_make", st);
    st = count_entries(&shape, &r->nnz);
    if (st != SBX_OK) return fail("sbx_conv_indices", st);
    if (nnz_mismatch(c, r->nnz)) return 1;
    st = measure(floor_once, &r->nnz, &r->floor);
    if (st != SBX_OK) return fail("floor (sbx_array_create)", st);
    return time_builds(c, &shape, r);
}

/* ---- output ---- */

static void print_header(void) {
    printf("bench_indices: sbx_conv_indices(shape, weight_sharing 1, nkern 1, SBX_CSC, kmap NULL)\n");
    printf("  median of timed runs after 1 warm-up; runs continue until >= %d and >= %.1f s in total;\n",
           MIN_REPEATS, MIN_TOTAL_SECONDS);
    printf("  the result is freed after the clock stops\n");
    printf("  floor: sbx_array_create(int64, nnz) + writing every entry once, timed the same way\n");
    printf("  goals: <= %.0f ns per stored entry, <= %.0fx the floor, >= %.0fx faster than the original\n",
           GOAL_NS_PER_ENTRY, GOAL_FLOOR_RATIO, GOAL_SPEEDUP);
}

static void print_times(const case_result *r) {
    printf("  %-24s %12s %-8s %12s\n", "", "1 thread", "", "2 threads");
    printf("  %-24s %12d %-8s %12d\n", "threads set", r->threads_used[0], "", r->threads_used[1]);
    printf("  %-24s %12d %-8s %12d\n", "timed runs", r->build[0].repeats, "", r->build[1].repeats);
    printf("  %-24s %12.4f %-8s %12.4f\n", "build, median (ms)", r->build[0].seconds * 1e3, "",
           r->build[1].seconds * 1e3);
}

static void print_per_entry(const case_result *r) {
    double ns[NUM_COLUMNS], ratio[NUM_COLUMNS];
    for (int k = 0; k < NUM_COLUMNS; k++) {
        ns[k] = r->build[k].seconds * 1e9 / (double)r->nnz;
        ratio[k] = r->build[k].seconds / r->floor.seconds;
    }
    printf("  %-24s %12.2f %-8s %12.2f %-8s (goal <= %.0f)\n", "ns per stored entry", ns[0],
           verdict(ns[0] <= GOAL_NS_PER_ENTRY), ns[1], verdict(ns[1] <= GOAL_NS_PER_ENTRY), GOAL_NS_PER_ENTRY);
    printf("  %-24s %11.2fx %-8s %11.2fx %-8s (goal <= %.0fx)\n", "build / floor", ratio[0],
           verdict(ratio[0] <= GOAL_FLOOR_RATIO), ratio[1], verdict(ratio[1] <= GOAL_FLOOR_RATIO), GOAL_FLOOR_RATIO);
}

static void print_speedup(const bench_case *c, const case_result *r) {
    double up[NUM_COLUMNS];
    if (!c->table_nnz) {
        printf("  %-24s %12s %-8s %12s %-8s (not in the table)\n", "speed-up vs original", "-", "", "-", "");
        return;
    }
    for (int k = 0; k < NUM_COLUMNS; k++) up[k] = c->table_ms * 1e-3 / r->build[k].seconds;
    printf("  %-24s %12.0f ms\n", "original (pure Python)", c->table_ms);
    printf("  %-24s %11.0fx %-8s %11.0fx %-8s (goal >= %.0fx)\n", "speed-up vs original", up[0],
           verdict(up[0] >= GOAL_SPEEDUP), up[1], verdict(up[1] >= GOAL_SPEEDUP), GOAL_SPEEDUP);
}

static void print_case(const bench_case *c, const case_result *r) {
    char ours[32], theirs[32];
    printf("\n%s: nnz %s", c->name, grouped(r->nnz, ours));
    if (c->table_nnz) printf(" (table: %s, equal)", grouped(c->table_nnz, theirs));
    printf("\n  floor: %.4f ms, %.2f ns per entry, median of %d runs\n", r->floor.seconds * 1e3,
           r->floor.seconds * 1e9 / (double)r->nnz, r->floor.repeats);
    print_times(r);
    print_per_entry(r);
    print_speedup(c, r);
}

int main(void) {
    int failed = 0;
    run_times = malloc(MAX_REPEATS * sizeof *run_times);
    if (!run_times) {
        fprintf(stderr, "bench_indices: out of memory\n");
        return 1;
    }
    print_header();
    for (size_t i = 0; i < NUM_CASES && !failed; i++) {
        case_result r;
        failed = run_case(&CASES[i], &r);
        if (!failed) print_case(&CASES[i], &r);
        fflush(stdout);
    }
    free(run_times);
    return failed;
}
