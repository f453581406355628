/* bench_random: times sparsebox's samplers and sparse random matrices against numpy and scipy in the
 * same run; bench/peer_numpy.py, started once and then asked for one figure at a time, times the peers.
 *
 *  1. Nanoseconds per draw (per row for a multinomial), 1 thread: sbx_binomial, sbx_poisson and
 *     sbx_multinomial against numpy's Generator (np.random.default_rng(SEED), PCG64) drawing size=N
 *     values in one vectorised call. Ours draws N values in a loop, one cursor per BLOCK draws at
 *     positions 0, 1, 2, ... (sbx_rng_cursor_init is timed too), into an int64 array allocated inside
 *     the timed region as numpy allocates its result (malloc, and from 4 MiB a huge-page hint); every
 *     array is freed after the clock stops.
 *     Each side picks its own N, a multiple of BLOCK, so that one run takes about DRAW_SECONDS of the
 *     thread's CPU time (both sides read that clock), its results at most MAX_BYTES; the figure is
 *     the median of DRAW_REPEATS runs after a warm-up, both sides on one CPU. Goal: ours / numpy <=
 *     DRAW_GOAL.
 *  2. sbx_random_binomial (at densities 76% and 9.6%), sbx_random_poisson and sbx_random_multinomial
 *     with 1 and 2 threads against the original's path (its perform(): the legacy np.random draws,
 *     MT19937, then scipy.sparse) on the same inputs, which are made here
 *     from a fixed-seed splitmix64 generator and handed to the peer as .npy files in a temporary
 *     folder. Goal: original / ours (1 thread) >= SPEEDUP_GOAL. Then a 10^6 x 10^6 Binomial(1, 1e-7),
 *     ours only (the original cannot allocate it); goal: at most HUGE_GOAL_SECONDS.
 *  3. Every sparse result must have the same bytes at 1 and 2 threads; if not, the exit status is 1.
 * The peer stays up for the whole run and times one thing at a time on our command: each timed run
 * of ours in table 1 is followed by one of the peer's, and each op of table 2 by the original's path
 * for it. These VMs have slower phases (a neighbour's load on the core's other hyperthread: the
 * same binary's figures up to 1.5-1.8x apart between minutes), which, when each side ran its whole
 * table in turn, fell on one side only and moved the ratios; alternating, a phase falls on both.
 * Both tables are also taken ROUNDS times, and each figure is its side's fastest round.
 *
 * The peer's interpreter is /usr/bin/python3 when it has numpy and scipy, else python3; without them
 * the peer columns are skipped (with the reason) and only our figures are printed.
 *
 * Usage: bench_random [BENCH_DIR]
 *   BENCH_DIR  folder holding peer_numpy.py (default: $SBX_BENCH_DIR, else this file's folder) */
#define _POSIX_C_SOURCE 200809L
#define _GNU_SOURCE /* madvise, MADV_HUGEPAGE; sched_getcpu, sched_setaffinity */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <sparsebox/core.h>
#include <sparsebox/io.h>
#include <sparsebox/random.h>
#include <sparsebox/sparse.h>

#define BENCH_NAME "bench_random"
#include "bench_util.h"

#define SEED 12345u
#define BLOCK 4096
#define DRAW_SECONDS 0.12
#define CALIBRATE_SECONDS 0.02
#define DRAW_REPEATS 5
/* The most bytes of a result: below glibc's largest mmap threshold (32 MiB), so that after the first
 * runs both sides' arrays come from the heap, faulted once and reused, as numpy's had all along (its
 * slower sampler picks a smaller N). Over it, ours were fresh mappings each run, and their page
 * faults (huge pages, at times compacted first: up to 160 ms of system time in a 0.1 s run, counted
 * by the thread's CPU clock) fell on our side only. */
#define MAX_BYTES (((int64_t)32 << 20) - ((int64_t)64 << 10))
#define MAX_CATEGORIES 100
#define OP_BUDGET 0.25
#define MIN_REPEATS 5
#define MAX_REPEATS 200
#define DRAW_GOAL 1.0
#define SPEEDUP_GOAL 10.0
#define HUGE_GOAL_SECONDS 0.25
#define PATH_LEN 4096
#define LINE_LEN 4096
#define NUM_THREADS 2
#define ROUNDS 2 /* both tables this many times over; each figure its side's fastest round */

static const int THREADS[NUM_THREADS] = {1, 2};

/* ---- what is timed ---- */

enum kind { BINOMIAL, POISSON, MULTINOMIAL };

/* One sampler with fixed parameters. */
typedef struct draw_case {
    const char *label;
    enum kind kind;
    int64_t n;           /* trials of a binomial or multinomial */
    double param;        /* binomial p or Poisson lam */
    int64_t k;           /* categories of a multinomial */
    const double *probs; /* a multinomial's probabilities; NULL: uniform over k */
} draw_case;

static const double FOUR_PROBS[4] = {0.1, 0.2, 0.3, 0.4};

static const draw_case DRAWS[] = {
    {"binomial n=5 p=0.25", BINOMIAL, 5, 0.25, 0, NULL},
    {"binomial n=100 p=0.3", BINOMIAL, 100, 0.3, 0, NULL},
    {"binomial n=1e6 p=0.4", BINOMIAL, 1000000, 0.4, 0, NULL},
    {"poisson lam=0.5", POISSON, 0, 0.5, 0, NULL},
    {"poisson lam=5", POISSON, 0, 5, 0, NULL},
    {"poisson lam=50", POISSON, 0, 50, 0, NULL},
    {"poisson lam=1e4", POISSON, 0, 1e4, 0, NULL},
    {"multinomial n=5, k=4 (row)", MULTINOMIAL, 5, 0, 4, FOUR_PROBS},
    {"multinomial n=1000, k=100 (row)", MULTINOMIAL, 1000, 0, 100, NULL},
};
#define NUM_DRAWS ((int)(sizeof DRAWS / sizeof DRAWS[0]))

/* The sparse ops; the peer times the first NUM_PEER_OPS. */
enum op { OP_BINOMIAL = 0, OP_BINOMIAL_SPARSE = 1, OP_POISSON = 2, OP_MULTINOMIAL = 3, OP_HUGE = 4, NUM_OPS = 5 };
#define NUM_PEER_OPS 4
static const char *const OP_KEYS[NUM_OPS] = {"binomial", "binomial_sparse", "poisson", "multinomial", "huge"};
static const char *const OP_LABELS[NUM_OPS] = {
    "Binomial(5, 0.25) 1000x1000 -> CSR float32",
    "Binomial(5, 0.02) 1000x1000 -> CSR float32",
    "Poisson, 1000x1000 CSR 1%, lam ~ U(0,3)",
    "Multinomial n=5, 10000x100 CSR 10%",
    "Binomial(1, 1e-7) 10^6 x 10^6 -> CSR float32",
};

#define BINOMIAL_N 5
#define BINOMIAL_P 0.25
#define SPARSE_P 0.02 /* density 1 - 0.98^5 = 9.6%: the goal is for density <= 10% */
#define BINOMIAL_SIDE 1000
#define HUGE_SIDE 1000000
#define HUGE_P 1e-7
#define POISSON_SIDE 1000
#define POISSON_PER_ROW 10
#define POISSON_MAX_LAM 3.0
#define MULTI_ROWS 10000
#define MULTI_COLS 100
#define MULTI_PER_ROW 10
#define MULTI_N 5

/* The inputs of the sparse ops. */
typedef struct inputs {
    sbx_rng rng;
    sbx_sparse *lam;   /* Poisson means */
    sbx_sparse *probs; /* multinomial rows, each summing to 1 */
    sbx_array trials;  /* a 0-d int64 array holding MULTI_N */
    int64_t trials_value;
} inputs;

/* ---- results ---- */

typedef struct draw_result {
    double ns, mean, peer_ns; /* peer_ns < 0: not measured */
    int64_t count, peer_count;
} draw_result;

typedef struct op_result {
    double ms[NUM_THREADS], peer_ms; /* peer_ms < 0: not measured */
    int64_t nnz, peer_nnz;
    int same; /* 1: the same bytes at 1 and 2 threads */
} op_result;

/* The Python peer: the running process and its last answer. */
typedef struct peer {
    int available;
    char python[PATH_LEN], script[PATH_LEN];
    char python_version[64], numpy_version[64], scipy_version[64];
    char why[LINE_LEN]; /* why it was skipped or failed */
    peer_process proc;  /* the running peer (bench_util.h); pid 0: not running */
    char answered;      /* 'd' or 'o': a "draw" or an "op" line came since the last command; 0: none */
    int index;          /* a "draw" line's I */
    double ns;          /* a "draw" line's ns per draw */
    int64_t count;      /* its N */
    char key[32];       /* an "op" line's KEY */
    double seconds;     /* its SECONDS */
    int64_t nnz;        /* its NNZ */
} peer;

/* ---- errors, clocks, medians ---- */

static int check(sbx_status st, const char *what) {
    if (st == SBX_OK) return 0;
    fprintf(stderr, "bench_random: %s failed: %s: %s\n", what, sbx_status_str(st), sbx_last_error());
    return 1;
}

/* Timed runs of an op whose warm-up took `seconds`: about OP_BUDGET in all, within limits. */
static int repeats_for(double seconds) {
    const double n = seconds > 0 ? OP_BUDGET / seconds : MAX_REPEATS;
    if (n < MIN_REPEATS) return MIN_REPEATS;
    return n > MAX_REPEATS ? MAX_REPEATS : (int)n;
}

/* Draws for one run of about DRAW_SECONDS, given that `count` draws took `seconds`: whole blocks,
 * at least one, at most `most` (whole blocks). */
static int64_t draws_for(double seconds, int64_t count, int64_t most) {
    const double want = seconds > 0 ? DRAW_SECONDS / seconds * (double)count : (double)most;
    const double blocks = (want + BLOCK - 1) / BLOCK;
    if (blocks < 1) return BLOCK;
    return blocks > (double)(most / BLOCK) ? most : (int64_t)blocks * BLOCK;
}

/* ---- ns per draw ---- */

/* A multinomial's probabilities into buf (k values). */
static void probs_of(const draw_case *c, double *buf) {
    for (int64_t i = 0; i < c->k; i++) buf[i] = c->probs ? c->probs[i] : 1.0 / (double)c->k;
}

/* The exact mean of a draw (a multinomial: of its first category). */
static double exact_mean(const draw_case *c, const double *probs) {
    if (c->kind == BINOMIAL) return (double)c->n * c->param;
    if (c->kind == POISSON) return c->param;
    return (double)c->n * probs[0];
}

/* The end of the block that starts at `start`. */
static int64_t block_end(int64_t start, int64_t count) { return start + BLOCK < count ? start + BLOCK : count; }

static sbx_status fill_binomial(const sbx_rng *rng, const draw_case *c, int64_t count, int64_t *out) {
    for (int64_t start = 0; start < count; start += BLOCK) {
        sbx_rng_cursor cur;
        sbx_status st = sbx_rng_cursor_init(rng, start / BLOCK, &cur);
        for (int64_t i = start, end = block_end(start, count); i < end && st == SBX_OK; i++)
            st = sbx_binomial(&cur, c->n, c->param, &out[i]);
        if (st != SBX_OK) return st;
    }
    return SBX_OK;
}

static sbx_status fill_poisson(const sbx_rng *rng, const draw_case *c, int64_t count, int64_t *out) {
    for (int64_t start = 0; start < count; start += BLOCK) {
        sbx_rng_cursor cur;
        sbx_status st = sbx_rng_cursor_init(rng, start / BLOCK, &cur);
        for (int64_t i = start, end = block_end(start, count); i < end && st == SBX_OK; i++)
            st = sbx_poisson(&cur, c->param, &out[i]);
        if (st != SBX_OK) return st;
    }
    return SBX_OK;
}

/* count rows of k counts each. */
static sbx_status fill_multinomial(const sbx_rng *rng, const draw_case *c, const double *probs, int64_t count,
                                   int64_t *out) {
    for (int64_t start = 0; start < count; start += BLOCK) {
        sbx_rng_cursor cur;
        sbx_status st = sbx_rng_cursor_init(rng, start / BLOCK, &cur);
        for (int64_t i = start, end = block_end(start, count); i < end && st == SBX_OK; i++)
            st = sbx_multinomial(&cur, c->n, probs, c->k, 0, out + i * c->k);
        if (st != SBX_OK) return st;
    }
    return SBX_OK;
}

static sbx_status fill(const sbx_rng *rng, const draw_case *c, const double *probs, int64_t count, int64_t *out) {
    if (c->kind == BINOMIAL) return fill_binomial(rng, c, count, out);
    if (c->kind == POISSON) return fill_poisson(rng, c, count, out);
    return fill_multinomial(rng, c, probs, count, out);
}

/* The mean of out[0], out[width], out[2 width], ... (count values). */
static double column_mean(const int64_t *out, int64_t count, int64_t width) {
    double sum = 0;
    for (int64_t i = 0; i < count; i++) sum += (double)out[i * width];
    return count > 0 ? sum / (double)count : 0;
}

/* This thread's CPU time, in seconds: the draws run on one thread, and on a shared machine the wall
 * clock also counts the time the scheduler gave other processes, which fell on one side or the other
 * and moved the ratios by tens of percent between runs. The peer reads the same clock
 * (time.thread_time). */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A result array allocated as numpy allocates its own (numpy/core/src/multiarray/alloc.c): malloc, and
 * from HUGE_HINT bytes on, madvise(MADV_HUGEPAGE) over its whole pages, so that the kernel fills it
 * with 2 MiB pages. Without the hint, our arrays (over 32 MiB: fresh mappings from glibc each run)
 * took a 4 KiB page fault every 512 draws, at 8-13 us each on these virtual machines: 16-26 ns per
 * draw that numpy's result did not pay, and whether a case paid it depended on where its N fell
 * against glibc's moving mmap threshold (the bimodal Poisson lam=0.5 figure). */
#define HUGE_HINT ((size_t)1 << 22)
static int64_t *result_array(size_t bytes) {
    char *p = malloc(bytes);
#ifdef MADV_HUGEPAGE
    if (p && bytes >= HUGE_HINT) {
        const size_t skip = 4096 - (uintptr_t)p % 4096;
        madvise(p + skip, bytes - skip, MADV_HUGEPAGE); /* a hint: the array works the same without it */
    }
#endif
    return (int64_t *)(void *)p;
}

/* One timed run of count draws into a fresh array; *mean (when not NULL) gets their mean. */
static int draw_run(const sbx_rng *rng, const draw_case *c, const double *probs, int64_t count, double *seconds,
                    double *mean) {
    const int64_t width = c->kind == MULTINOMIAL ? c->k : 1;
    const double t0 = cpu_seconds();
    int64_t *out = result_array((size_t)(count * width) * sizeof(int64_t));
    if (!out) {
        fprintf(stderr, "bench_random: %s: cannot allocate %lld draws\n", c->label, (long long)count);
        return 1;
    }
    const sbx_status st = fill(rng, c, probs, count, out);
    *seconds = cpu_seconds() - t0;
    if (st == SBX_OK && mean) *mean = column_mean(out, count, width);
    free(out);
    return check(st, c->label);
}

/* The most draws of a case whose results fit MAX_BYTES: whole blocks, at least one. */
static int64_t most_draws(const draw_case *c) {
    const int64_t width = c->kind == MULTINOMIAL ? c->k : 1, most = MAX_BYTES / (width * 8) / BLOCK * BLOCK;
    return most > BLOCK ? most : BLOCK;
}

/* Doubles the draws from one block until a run takes CALIBRATE_SECONDS (these runs are the warm-up),
 * then sizes the timed runs from the last one. */
static int calibrate(const sbx_rng *rng, const draw_case *c, const double *probs, int64_t *count) {
    const int64_t most = most_draws(c);
    double seconds;
    int64_t n = BLOCK;
    for (;;) {
        if (draw_run(rng, c, probs, n, &seconds, NULL)) return 1;
        if (seconds >= CALIBRATE_SECONDS || n >= most) break;
        n = 2 * n < most ? 2 * n : most;
    }
    *count = draws_for(seconds, n, most);
    return 0;
}

static int ask_peer(peer *p, const char *command);

/* The peer's answer to "warm I" or "draw I" (when it runs): its ns per draw and N. */
static int peer_draw(peer *p, const char *command, int i, double *ns, int64_t *count) {
    char line[32];
    snprintf(line, sizeof line, "%s %d", command, i);
    if (ask_peer(p, line)) return 1;
    if (p->answered != 'd' || p->index != i) {
        fprintf(stderr, "bench_random: asked the peer \"%s\", it answered for another case or op\n", line);
        return 1;
    }
    *ns = p->ns;
    *count = p->count;
    return 0;
}

/* Case i: a warm-up on each side, then DRAW_REPEATS timed runs of ours, each followed by one of the
 * peer's (when it runs); each side's median. */
static int time_draws(const sbx_rng *rng, peer *p, int i, draw_result *r) {
    const draw_case *c = &DRAWS[i];
    double probs[MAX_CATEGORIES], runs[DRAW_REPEATS], peer_runs[DRAW_REPEATS], seconds;
    probs_of(c, probs);
    if (calibrate(rng, c, probs, &r->count) || draw_run(rng, c, probs, r->count, &seconds, NULL)) return 1;
    if (p->proc.pid && peer_draw(p, "warm", i, &peer_runs[0], &r->peer_count)) return 1;
    for (int k = 0; k < DRAW_REPEATS; k++) {
        if (draw_run(rng, c, probs, r->count, &runs[k], &r->mean)) return 1;
        runs[k] = runs[k] / (double)r->count * 1e9;
        if (p->proc.pid && peer_draw(p, "draw", i, &peer_runs[k], &r->peer_count)) return 1;
    }
    r->ns = median(runs, DRAW_REPEATS);
    r->peer_ns = p->proc.pid ? median(peer_runs, DRAW_REPEATS) : -1;
    return 0;
}

static int bench_draws(const sbx_rng *rng, peer *p, draw_result *results) {
    sbx_set_num_threads(1);
    for (int i = 0; i < NUM_DRAWS; i++)
        if (time_draws(rng, p, i, &results[i])) return 1;
    return 0;
}

/* ---- the inputs of the sparse ops ---- */

/* k distinct columns below ncols, increasing: each new draw goes to its sorted place; a repeat is
 * drawn again. The modulo bias is below ncols / 2^64. */
static void random_columns(uint64_t *state, int64_t ncols, int64_t k, int64_t *cols) {
    int64_t have = 0;
    while (have < k) {
        const int64_t c = (int64_t)(splitmix64(state) % (uint64_t)ncols);
        int64_t at = have;
        while (at > 0 && cols[at - 1] > c) at--;
        if (at > 0 && cols[at - 1] == c) continue;
        memmove(cols + at + 1, cols + at, (size_t)(have - at) * sizeof *cols);
        cols[at] = c;
        have++;
    }
}

/* A float64 CSR matrix with per_row random columns in every row; values uniform in (0, 1]. */
static int random_pattern(int64_t nrows, int64_t ncols, int64_t per_row, uint64_t seed, sbx_sparse **out) {
    sbx_sparse *m;
    uint64_t state = seed;
    if (check(sbx_sparse_create(SBX_CSR, SBX_FLOAT64, nrows, ncols, nrows * per_row, &m), "sbx_sparse_create"))
        return 1;
    double *v = m->data;
    for (int64_t r = 0; r < nrows; r++) {
        random_columns(&state, ncols, per_row, m->indices + r * per_row);
        m->indptr[r + 1] = (r + 1) * per_row;
    }
    for (int64_t k = 0; k < m->nnz; k++) v[k] = 1 - uniform01(&state);
    *out = m;
    return 0;
}

/* Poisson means uniform in [0, POISSON_MAX_LAM). */
static int make_lam(sbx_sparse **out) {
    if (random_pattern(POISSON_SIDE, POISSON_SIDE, POISSON_PER_ROW, 1, out)) return 1;
    double *v = (*out)->data;
    for (int64_t k = 0; k < (*out)->nnz; k++) v[k] = POISSON_MAX_LAM * (1 - v[k]);
    return 0;
}

/* Rows of positive weights, each divided by its sum. */
static int make_probs(sbx_sparse **out) {
    if (random_pattern(MULTI_ROWS, MULTI_COLS, MULTI_PER_ROW, 2, out)) return 1;
    const sbx_sparse *m = *out;
    double *v = m->data;
    for (int64_t r = 0; r < m->nrows; r++) {
        double sum = 0;
        for (int64_t k = m->indptr[r]; k < m->indptr[r + 1]; k++) sum += v[k];
        for (int64_t k = m->indptr[r]; k < m->indptr[r + 1]; k++) v[k] /= sum;
    }
    return 0;
}

static int make_inputs(inputs *in) {
    memset(in, 0, sizeof *in);
    sbx_rng_init(&in->rng, SEED, 0);
    in->trials_value = MULTI_N;
    in->trials.dtype = SBX_INT64;
    in->trials.ndim = 0;
    in->trials.data = &in->trials_value;
    return make_lam(&in->lam) || make_probs(&in->probs);
}

static void free_inputs(inputs *in) {
    sbx_sparse_free(in->lam);
    sbx_sparse_free(in->probs);
}

/* ---- the sparse ops ---- */

static sbx_status run_op(enum op op, const inputs *in, sbx_sparse **out) {
    switch (op) {
    case OP_BINOMIAL:
        return sbx_random_binomial(&in->rng, BINOMIAL_N, BINOMIAL_P, BINOMIAL_SIDE, BINOMIAL_SIDE, SBX_CSR, SBX_FLOAT32,
                                   out);
    case OP_BINOMIAL_SPARSE:
        return sbx_random_binomial(&in->rng, BINOMIAL_N, SPARSE_P, BINOMIAL_SIDE, BINOMIAL_SIDE, SBX_CSR, SBX_FLOAT32,
                                   out);
    case OP_POISSON: return sbx_random_poisson(&in->rng, in->lam, out);
    case OP_MULTINOMIAL: return sbx_random_multinomial(&in->rng, &in->trials, in->probs, 0, out);
    default: return sbx_random_binomial(&in->rng, 1, HUGE_P, HUGE_SIDE, HUGE_SIDE, SBX_CSR, SBX_FLOAT32, out);
    }
}

/* One timed call; the result is freed after the clock stops. */
static int op_once(enum op op, const inputs *in, double *seconds, int64_t *nnz) {
    sbx_sparse *out = NULL;
    const double t0 = now_seconds();
    const sbx_status st = run_op(op, in, &out);
    *seconds = now_seconds() - t0;
    if (st == SBX_OK) *nnz = out->nnz;
    sbx_sparse_free(out);
    return check(st, OP_LABELS[op]);
}

/* A warm-up, then the median of repeats_for(warm-up) calls, in milliseconds. */
static int time_op(enum op op, const inputs *in, double *ms, int64_t *nnz) {
    double runs[MAX_REPEATS], seconds;
    if (op_once(op, in, &seconds, nnz)) return 1;
    const int repeats = repeats_for(seconds);
    for (int i = 0; i < repeats; i++)
        if (op_once(op, in, &runs[i], nnz)) return 1;
    *ms = median(runs, repeats) * 1e3;
    return 0;
}

static int same_bytes(const sbx_sparse *a, const sbx_sparse *b) {
    if (a->format != b->format || a->dtype != b->dtype || a->nrows != b->nrows || a->ncols != b->ncols ||
        a->nnz != b->nnz)
        return 0;
    const size_t lines = (size_t)sbx_sparse_major(a) + 1, nnz = (size_t)a->nnz;
    if (memcmp(a->indptr, b->indptr, lines * sizeof(int64_t))) return 0;
    return nnz == 0 || (!memcmp(a->indices, b->indices, nnz * sizeof(int64_t)) &&
                        !memcmp(a->data, b->data, nnz * sbx_dtype_size(a->dtype)));
}

/* The op at 1 and at 2 threads; *same says whether the results have the same bytes. */
static int compare_threads(enum op op, const inputs *in, int *same) {
    sbx_sparse *one = NULL, *two = NULL;
    sbx_set_num_threads(THREADS[0]);
    sbx_status st = run_op(op, in, &one);
    if (st == SBX_OK) {
        sbx_set_num_threads(THREADS[1]);
        st = run_op(op, in, &two);
    }
    if (st == SBX_OK) *same = same_bytes(one, two);
    sbx_sparse_free(one);
    sbx_sparse_free(two);
    return check(st, OP_LABELS[op]);
}

/* Each op at each thread count, then (when the peer runs) the original's path for it; used[t] gets
 * sbx_get_num_threads() after sbx_set_num_threads(THREADS[t]). */
static int bench_ops(const inputs *in, peer *p, op_result *results, int used[NUM_THREADS]) {
    for (int op = 0; op < NUM_OPS; op++) {
        op_result *r = &results[op];
        for (int t = 0; t < NUM_THREADS; t++) {
            sbx_set_num_threads(THREADS[t]);
            used[t] = sbx_get_num_threads();
            if (time_op((enum op)op, in, &r->ms[t], &r->nnz)) return 1;
        }
        r->peer_ms = -1;
        if (p->proc.pid && op < NUM_PEER_OPS) {
            char line[64];
            snprintf(line, sizeof line, "op %s", OP_KEYS[op]);
            if (ask_peer(p, line)) return 1;
            if (p->answered != 'o' || strcmp(p->key, OP_KEYS[op])) {
                fprintf(stderr, "bench_random: asked the peer for op %s, it answered op %s\n", OP_KEYS[op], p->key);
                return 1;
            }
            r->peer_ms = p->seconds * 1e3;
            r->peer_nnz = p->nnz;
        }
        if (compare_threads((enum op)op, in, &r->same)) return 1;
    }
    sbx_set_num_threads(0);
    return 0;
}

/* ---- files for the peer ---- */

static const char *const FILE_NAMES[] = {
    "cases.txt",         "poisson_indptr.npy",     "poisson_indices.npy",
    "poisson_data.npy",  "multinomial_indptr.npy", "multinomial_indices.npy",
    "multinomial_data.npy",
};
#define NUM_FILES (sizeof FILE_NAMES / sizeof FILE_NAMES[0])

/* n values of a dtype as a 1-d .npy file, through an sbx_array that borrows them. */
static int write_vector(const char *dir, const char *name, sbx_dtype dtype, void *values, int64_t n) {
    char path[PATH_LEN];
    const sbx_array a = {.dtype = dtype, .ndim = 1, .shape = {n}, .data = values};
    if (join_path(path, sizeof path, dir, name)) return 1;
    return check(sbx_npy_write(path, &a), path);
}

/* prefix_indptr.npy, prefix_indices.npy and prefix_data.npy of a float64 CSR matrix. */
static int write_csr(const char *dir, const char *prefix, const sbx_sparse *m) {
    char indptr[64], indices[64], data[64];
    snprintf(indptr, sizeof indptr, "%s_indptr.npy", prefix);
    snprintf(indices, sizeof indices, "%s_indices.npy", prefix);
    snprintf(data, sizeof data, "%s_data.npy", prefix);
    return write_vector(dir, indptr, SBX_INT64, m->indptr, m->nrows + 1) ||
           write_vector(dir, indices, SBX_INT64, m->indices, m->nnz) ||
           write_vector(dir, data, SBX_FLOAT64, m->data, m->nnz);
}

static void write_draw_line(FILE *f, const draw_case *c) {
    double probs[MAX_CATEGORIES];
    if (c->kind == BINOMIAL) {
        fprintf(f, "draw binomial %lld %.17g\n", (long long)c->n, c->param);
    } else if (c->kind == POISSON) {
        fprintf(f, "draw poisson %.17g\n", c->param);
    } else {
        probs_of(c, probs);
        fprintf(f, "draw multinomial %lld ", (long long)c->n);
        for (int64_t i = 0; i < c->k; i++) fprintf(f, "%s%.17g", i ? "," : "", probs[i]);
        fputc('\n', f);
    }
}

/* cases.txt: the settings and cases both sides share, one "key values..." line each. */
static void write_settings(FILE *f) {
    fprintf(f, "seed %u\nblock %d\ndraw_seconds %.17g\ncalibrate_seconds %.17g\n", SEED, BLOCK, DRAW_SECONDS,
            CALIBRATE_SECONDS);
    fprintf(f, "max_bytes %lld\n", (long long)MAX_BYTES);
    fprintf(f, "op_budget %.17g\nmin_repeats %d\nmax_repeats %d\n", OP_BUDGET, MIN_REPEATS, MAX_REPEATS);
    fprintf(f, "binomial_op %d %.17g %d %d\n", BINOMIAL_N, BINOMIAL_P, BINOMIAL_SIDE, BINOMIAL_SIDE);
    fprintf(f, "binomial_sparse_op %d %.17g %d %d\n", BINOMIAL_N, SPARSE_P, BINOMIAL_SIDE, BINOMIAL_SIDE);
    fprintf(f, "poisson_shape %d %d\n", POISSON_SIDE, POISSON_SIDE);
    fprintf(f, "multinomial_shape %d %d\nmultinomial_n %d\n", MULTI_ROWS, MULTI_COLS, MULTI_N);
    for (int i = 0; i < NUM_DRAWS; i++) write_draw_line(f, &DRAWS[i]);
}

static int write_cases(const char *dir) {
    char path[PATH_LEN];
    if (join_path(path, sizeof path, dir, "cases.txt")) return 1;
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench_random: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    write_settings(f);
    const int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "bench_random: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

static int write_inputs(const char *dir, const inputs *in) {
    return write_cases(dir) || write_csr(dir, "poisson", in->lam) || write_csr(dir, "multinomial", in->probs);
}

static void remove_temp_dir(const char *dir) {
    char path[PATH_LEN];
    for (size_t i = 0; i < NUM_FILES; i++)
        if (!join_path(path, sizeof path, dir, FILE_NAMES[i]) && unlink(path) != 0 && errno != ENOENT)
            fprintf(stderr, "bench_random: cannot remove %s: %s\n", path, strerror(errno));
    if (rmdir(dir) != 0) fprintf(stderr, "bench_random: cannot remove %s: %s\n", dir, strerror(errno));
}

/* ---- the peer ---- */

static int copy_text(char *dst, size_t len, const char *value) {
    snprintf(dst, len, "%s", value);
    return 1;
}

/* "draw I NS COUNT" */
static int draw_line(peer *p, const char *value) {
    int i;
    double ns;
    long long count;
    if (sscanf(value, "%d %lf %lld", &i, &ns, &count) != 3 || i < 0 || i >= NUM_DRAWS || count <= 0) return 0;
    p->ns = ns;
    p->count = count;
    p->index = i;
    p->answered = 'd';
    return 1;
}

/* "op KEY SECONDS NNZ" */
static int op_line(peer *p, const char *value) {
    char key[sizeof p->key];
    double seconds;
    long long nnz;
    if (sscanf(value, "%31s %lf %lld", key, &seconds, &nnz) != 3) return 0;
    memcpy(p->key, key, sizeof key);
    p->seconds = seconds;
    p->nnz = nnz;
    p->answered = 'o';
    return 1;
}

/* Takes one "key value" line of the peer; 0 for a line it does not know. */
static int peer_line(peer *p, const char *key, const char *value) {
    if (!strcmp(key, "python_version")) return copy_text(p->python_version, sizeof p->python_version, value);
    if (!strcmp(key, "numpy_version")) return copy_text(p->numpy_version, sizeof p->numpy_version, value);
    if (!strcmp(key, "scipy_version")) return copy_text(p->scipy_version, sizeof p->scipy_version, value);
    if (!strcmp(key, "skip")) return copy_text(p->why, sizeof p->why, value);
    if (!strcmp(key, "draw")) return draw_line(p, value);
    if (!strcmp(key, "op")) return op_line(p, value);
    return 0;
}

/* Splits a line at its first space and hands it to peer_line; other lines are echoed, and the last
 * one kept in p->why to explain a failure. 1 for the "done" line that ends an answer. */
static int take_line(peer *p, char *line) {
    line[strcspn(line, "\r\n")] = '\0';
    if (!strcmp(line, "done")) return 1;
    char *space = strchr(line, ' ');
    if (space) *space = '\0';
    if (peer_line(p, line, space ? space + 1 : "")) return 0;
    if (space) *space = ' ';
    printf("peer: %s\n", line);
    snprintf(p->why, sizeof p->why, "%s", line);
    return 0;
}

/* Starts `python script arg`; 1 (with p->why) when it could not. */
static int start_peer(peer *p, const char *python, const char *arg) {
    return peer_start_process(&p->proc, python, p->script, arg, p->why, sizeof p->why);
}

/* Closes the peer's input (which ends it), reads what it still prints, and waits for it: its exit
 * status, -1 when it did not exit. */
static int stop_peer(peer *p) {
    char line[LINE_LEN];
    if (!p->proc.pid) return -1;
    fclose(p->proc.to);
    p->proc.to = NULL;
    while (fgets(line, sizeof line, p->proc.from)) take_line(p, line);
    return peer_finish_process(&p->proc);
}

/* Sends one command and reads the peer's lines up to its "done"; 1 (after saying why) when the peer
 * ended first or answered without a "draw" or "op" line. */
static int ask_peer(peer *p, const char *command) {
    char line[LINE_LEN];
    p->answered = 0;
    p->why[0] = '\0';
    signal(SIGPIPE, SIG_IGN); /* a peer that ended shows as a failed write, not as our end */
    const int wrote = fprintf(p->proc.to, "%s\n", command) >= 0 && fflush(p->proc.to) == 0;
    signal(SIGPIPE, SIG_DFL);
    if (!wrote) {
        snprintf(p->why, sizeof p->why, "cannot write to the peer: %s", strerror(errno));
    } else {
        while (fgets(line, sizeof line, p->proc.from))
            if (take_line(p, line)) {
                if (p->answered) return 0;
                break;
            }
    }
    char why[LINE_LEN];
    snprintf(why, sizeof why, "%s", p->why[0] ? p->why : "its output ended before \"done\"");
    const int status = stop_peer(p);
    fprintf(stderr, "bench_random: the numpy peer did not answer \"%s\" (exit status %d): %s\n", command, status,
            why);
    return 1;
}

/* 1 when `python peer_numpy.py --versions` finds numpy and scipy. */
static int probe_python(peer *p, const char *python) {
    p->why[0] = p->numpy_version[0] = p->scipy_version[0] = '\0';
    if (start_peer(p, python, "--versions")) return 0;
    const int status = stop_peer(p);
    if (status == 0 && p->numpy_version[0] && p->scipy_version[0]) {
        snprintf(p->python, sizeof p->python, "%s", python);
        return 1;
    }
    if (status == 127) snprintf(p->why, sizeof p->why, "%.200s not found", python);
    else if (!p->why[0]) snprintf(p->why, sizeof p->why, "%.200s exited with status %d", python, status);
    return 0;
}

/* /usr/bin/python3 (Debian's, which sees python3-numpy and python3-scipy) first, then python3. */
static void find_peer(int argc, char **argv, peer *p) {
    char dir[PATH_LEN], first[LINE_LEN] = "";
    memset(p, 0, sizeof *p);
    peer_folder(argc > 1 ? argv[1] : NULL, dir, sizeof dir);
    if (join_path(p->script, sizeof p->script, dir, "peer_numpy.py")) return;
    if (access(p->script, R_OK) != 0) {
        snprintf(p->why, sizeof p->why, "cannot read %.900s: %s", p->script, strerror(errno));
        return;
    }
    if (access("/usr/bin/python3", X_OK) == 0) {
        if ((p->available = probe_python(p, "/usr/bin/python3"))) return;
        snprintf(first, sizeof first, "%.1000s; ", p->why);
    }
    if ((p->available = probe_python(p, "python3"))) return;
    char both[LINE_LEN];
    snprintf(both, sizeof both, "%.1500s%.1500s", first, p->why);
    snprintf(p->why, sizeof p->why, "%s", both);
}

/* ---- output ---- */

static const char *met(int ok) { return ok ? "met" : "MISSED"; }

static void print_header(const peer *p, int pinned) {
    printf("bench_random: seed %u; ours draws from cursors, one per %d draws (rows) at positions 0, 1, 2, ...\n",
           SEED, BLOCK);
    printf("(cursor set-up timed too) into a fresh int64 array; numpy: default_rng(%u) (PCG64), one vectorised\n",
           SEED);
    printf("call of size N. Each side picks N so a run takes ~%.2f s of its thread's CPU time (the clock of\n",
           DRAW_SECONDS);
    printf("table 1 on both sides), its results at most %lld bytes; median of %d runs after a warm-up, each\n",
           (long long)MAX_BYTES, DRAW_REPEATS);
    printf("run of ours followed by one of numpy's, %s.\n", pinned ? "both on one CPU" : "not pinned");
    print_machine();
    if (p->available)
        printf("peer: numpy %s, scipy %s, Python %s (%s)\n", p->numpy_version, p->scipy_version, p->python_version,
               p->python);
    else
        printf("peer: numpy/scipy skipped: %s\n", p->why);
}

/* Prints the draw table; counts goals met and missed. */
static void print_draws(const draw_result *r, int have_peer, int *n_met, int *n_missed) {
    printf("\n1. ns per draw (multinomial: per row), 1 thread; goal ours/numpy <= %.1f\n", DRAW_GOAL);
    printf("  %-32s %9s %9s %10s %-7s %10s %10s %s\n", "draw", "ours", "numpy", "ours/numpy", "goal", "N ours",
           "N numpy", "mean of ours (exact)");
    for (int i = 0; i < NUM_DRAWS; i++) {
        double probs[MAX_CATEGORIES];
        probs_of(&DRAWS[i], probs);
        printf("  %-32s %9.2f", DRAWS[i].label, r[i].ns);
        if (have_peer && r[i].peer_ns > 0) {
            const double ratio = r[i].ns / r[i].peer_ns;
            const int ok = ratio <= DRAW_GOAL;
            *n_met += ok;
            *n_missed += !ok;
            printf(" %9.2f %10.3f %-7s %10lld %10lld", r[i].peer_ns, ratio, met(ok), (long long)r[i].count,
                   (long long)r[i].peer_count);
        } else {
            printf(" %9s %10s %-7s %10lld %10s", "-", "-", "-", (long long)r[i].count, "-");
        }
        printf(" %.4f (%.4f)\n", r[i].mean, exact_mean(&DRAWS[i], probs));
    }
}

static void print_op_row(enum op op, const op_result *r, int have_peer, int *n_met, int *n_missed) {
    printf("  %-46s %10lld %9.3f %9.3f", OP_LABELS[op], (long long)r->nnz, r->ms[0], r->ms[1]);
    if (!have_peer || r->peer_ms < 0) {
        printf(" %10s %10s %8s %8s %s\n", "-", "-", "-", "-", "-");
        return;
    }
    const double speed1 = r->peer_ms / r->ms[0], speed2 = r->peer_ms / r->ms[1];
    const int ok = speed1 >= SPEEDUP_GOAL;
    *n_met += ok;
    *n_missed += !ok;
    printf(" %10.3f %10lld %7.1fx %7.1fx %s\n", r->peer_ms, (long long)r->peer_nnz, speed1, speed2, met(ok));
}

static void print_huge(const op_result *r, int *n_met, int *n_missed) {
    const int ok = r->ms[0] <= HUGE_GOAL_SECONDS * 1e3;
    *n_met += ok;
    *n_missed += !ok;
    printf("  %s (ours only; the original cannot allocate it):\n", OP_LABELS[OP_HUGE]);
    printf("    1 thread %.3f ms, 2 threads %.3f ms, nnz %lld (expected %.0f); goal well under 1 s "
           "(<= %.2f s, 1 thread): %s\n",
           r->ms[0], r->ms[1], (long long)r->nnz, (double)HUGE_SIDE * HUGE_SIDE * HUGE_P, HUGE_GOAL_SECONDS, met(ok));
}

static void print_ops(const op_result *r, const int used[NUM_THREADS], int have_peer, int *n_met, int *n_missed) {
    printf("\n2. Sparse random matrices vs the original's path (its code: the legacy np.random draws, then\n");
    printf("   scipy.sparse), ms; median of\n");
    printf("   >= %d runs after a warm-up; threads used (sbx_get_num_threads()): %d and %d; goal original/ours(1t) "
           ">= %.0fx\n",
           MIN_REPEATS, used[0], used[1], SPEEDUP_GOAL);
    printf("  %-46s %10s %9s %9s %10s %10s %8s %8s %s\n", "op", "nnz ours", "ours 1t", "ours 2t", "original",
           "nnz orig", "x (1t)", "x (2t)", "goal");
    for (int op = 0; op < NUM_PEER_OPS; op++) print_op_row((enum op)op, &r[op], have_peer, n_met, n_missed);
    print_huge(&r[OP_HUGE], n_met, n_missed);
}

/* Prints the identity check; 1 when a result differs. */
static int print_same(const op_result *r) {
    int failed = 0;
    printf("\n3. Same bytes (indptr, indices, data) at %d and %d threads:\n", THREADS[0], THREADS[1]);
    for (int op = 0; op < NUM_OPS; op++) {
        printf("  %-46s %s\n", OP_LABELS[op], r[op].same ? "ok" : "FAILED");
        failed |= !r[op].same;
    }
    return failed;
}

/* ---- main ---- */

/* Writes the inputs into a fresh folder (dir) and starts the peer on them; 1 when that failed. */
static int start_numpy(peer *p, const inputs *in, char *dir) {
    if (!mkdtemp(dir)) {
        fprintf(stderr, "bench_random: mkdtemp failed: %s\n", strerror(errno));
        dir[0] = '\0';
        return 1;
    }
    if (write_inputs(dir, in)) return 1;
    if (!start_peer(p, p->python, dir)) return 0;
    fprintf(stderr, "bench_random: cannot start the numpy peer: %s\n", p->why);
    return 1;
}

/* One round of both tables: ours, and the peer's between our runs when it is up. Table 2 runs on
 * every CPU (it times 2 threads too); the peer stays on the one. */
static int bench_round(const inputs *in, peer *p, pinning *pin, draw_result *draws, op_result *ops,
                       int used[NUM_THREADS]) {
    printf("timing sparsebox%s...\n", p->proc.pid ? " and, alternately, numpy and scipy" : "");
    fflush(stdout);
    pin_thread(pin, 1);
    const int failed = bench_draws(&in->rng, p, draws);
    pin_thread(pin, 0);
    return failed || bench_ops(in, p, ops, used);
}

/* Keeps in best each side's fastest figure of this round (r): a slower phase of the machine that falls
 * on one side in one round only is dropped, on both sides alike. */
static void keep_fastest(draw_result *best, op_result *best_ops, const draw_result *r, const op_result *r_ops,
                         int first) {
    for (int i = 0; i < NUM_DRAWS; i++) {
        draw_result *b = &best[i];
        const draw_result *d = &r[i];
        if (first || d->ns < b->ns) {
            b->ns = d->ns;
            b->mean = d->mean;
            b->count = d->count;
        }
        if (d->peer_ns >= 0 && (first || b->peer_ns < 0 || d->peer_ns < b->peer_ns)) {
            b->peer_ns = d->peer_ns;
            b->peer_count = d->peer_count;
        }
    }
    for (int op = 0; op < NUM_OPS; op++) {
        op_result *b = &best_ops[op];
        const op_result *o = &r_ops[op];
        for (int t = 0; t < NUM_THREADS; t++)
            if (first || o->ms[t] < b->ms[t]) b->ms[t] = o->ms[t];
        if (o->peer_ms >= 0 && (first || b->peer_ms < 0 || o->peer_ms < b->peer_ms)) {
            b->peer_ms = o->peer_ms;
            b->peer_nnz = o->peer_nnz;
        }
        b->nnz = o->nnz;
        b->same = first ? o->same : b->same && o->same;
    }
}

int main(int argc, char **argv) {
    static draw_result draws[NUM_DRAWS], round_draws[NUM_DRAWS];
    static op_result ops[NUM_OPS], round_ops[NUM_OPS];
    peer p;
    inputs in;
    char dir[] = "/tmp/bench_random.XXXXXX";
    int used[NUM_THREADS], n_met = 0, n_missed = 0, failed = 0;
    pinning pin;
    pinning_init(&pin);
    find_peer(argc, argv, &p);
    print_header(&p, pin.cpu >= 0);
    pin_thread(&pin, 1);
    failed = make_inputs(&in) || (p.available && start_numpy(&p, &in, dir));
    pin_thread(&pin, 0);
    for (int round = 0; round < ROUNDS && !failed; round++) {
        printf("round %d of %d: ", round + 1, ROUNDS);
        failed = bench_round(&in, &p, &pin, round_draws, round_ops, used);
        if (!failed) keep_fastest(draws, ops, round_draws, round_ops, round == 0);
    }
    if (p.proc.pid) {
        const int status = stop_peer(&p);
        if (status != 0 && !failed) {
            fprintf(stderr, "bench_random: the numpy peer exited with status %d: %s\n", status, p.why);
            failed = 1;
        }
    }
    if (p.available && dir[0] && strcmp(dir, "/tmp/bench_random.XXXXXX")) remove_temp_dir(dir);
    free_inputs(&in);
    if (failed) return 1;
    print_draws(draws, p.available, &n_met, &n_missed);
    print_ops(ops, used, p.available, &n_met, &n_missed);
    failed = print_same(ops);
    printf("\ngoals: %d met, %d missed%s\n", n_met, n_missed, p.available ? "" : " (numpy/scipy skipped)");
    return failed;
}
