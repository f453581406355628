/* bench_layers: times the layer plans of conv.h against torch in the same run:
 *  - convolution forward and backward (gradients with respect to the images and the kernels in one
 *    sbx_conv_backward call, no bias) on the four configurations a-d of ANCHORS.md (2-d, stride 1,
 *    valid), and on the variants of issue 14: a and b with stride 2 (valid) and in full mode (torch:
 *    padding kernel - 1), and a layer on small maps (batch 64, 16 x 8x8, 32 kernels 3x3);
 *  - local connections (unshared weights: sbx_local_forward, sbx_local_backward, gradients with
 *    respect to the images and the weights, no bias) on a's and b's shapes and on a 1-d and a 3-d
 *    case, stride 1, valid, against what PyTorch users write (pytorch#499):
 *    einsum('blp,pnl->bnp', unfold(x), w) and torch.autograd on it (see peer_torch.py);
 *  - max pooling forward and backward, non-overlapping windows (stride = pool shape, valid);
 *  - the original's numeric path for the convolution forward in float32 on a-d: scipy's CSC patch
 *    matrix (built from sparsebox's own sbx_conv_indices) times the images, then a numpy dot with the
 *    kernels.
 * Every figure is taken in float32 and float64 with 1 and 2 threads: sbx_set_num_threads(n) for
 * sparsebox, torch.set_num_threads(n) for torch, and on both sides openblas_set_num_threads(n) when
 * OpenBLAS is loaded, so that "1 thread" means one core for the BLAS calls too (sbx_set_num_threads
 * alone leaves a BLAS call made outside a team of threads, e.g. for a batch of 1, to OpenMP's
 * default). For torch's float64 convolution and its local connections (both dtypes) with 2 threads
 * OpenBLAS is also tried with 1 thread and the faster figure kept (see peer_torch.py). The "cpu"
 * columns give process CPU time over wall time during the timed runs: the cores actually kept busy.
 *
 * Each figure is the median of at least MIN_REPEATS timed runs after one warm-up; the warm-up's time
 * sets the repeat count so that the timed runs take about BUDGET_SECONDS. Only the call is timed: its
 * results are freed after the clock stops (the peer does the same).
 * The peer stays up for the whole table and answers one figure at a time (see peer_torch.py): each
 * of our figures is followed at once by torch's, ROUNDS times over, and each side keeps its fastest.
 * These VMs have slower phases lasting from seconds to minutes (a neighbour's load: the same
 * binary's medians 1.4x apart); when each side timed its whole table in turn, such a phase fell on
 * one side only. The 1-thread figures run pinned to one CPU, the one bench_layers started on, on
 * both sides (one virtual CPU ran at times 1.5-2x slower than the other for tens of seconds).
 *
 * Checks: the inputs and sparsebox's results go to .npy files in a temporary folder; peer_torch.py
 * loads them, runs torch and compares (forward and both gradients; max |ours - torch| <= 1e-4 *
 * (1 + max |torch|) in float32, 1e-10 * (1 + max |torch|) in float64; pooling must be equal). Our
 * results with 2 threads must also be those with 1, byte for byte (column "bits"). A failed check
 * makes the exit status 1.
 *
 * OpenBLAS reads OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE when it is loaded. The first table is taken
 * with the environment as inherited; then the program runs itself again with both variables removed
 * and SBX_BENCH_CHILD=1 set (the peer it starts inherits that environment), which prints the second
 * table. With SBX_BENCH_CHILD set, only one table is printed.
 *
 * Usage: bench_layers [BENCH_DIR]
 *   BENCH_DIR  folder holding peer_torch.py (default: $SBX_BENCH_DIR, else this file's folder)
 * The peer's interpreter is $SBX_BENCH_PYTHON, else /usr/bin/python3. Without torch the torch columns
 * are skipped (with the reason); without numpy and scipy the original's path is skipped too. */
#define _GNU_SOURCE /* sched_getcpu, sched_setaffinity (bench_util.h) */

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sparsebox/conv.h>
#include <sparsebox/core.h>
#include <sparsebox/io.h>
#include <sparsebox/sparse.h>

#define BENCH_NAME "bench_layers"
#include "bench_util.h"

#define CHILD_VAR "SBX_BENCH_CHILD"
#define DEFAULT_PYTHON "/usr/bin/python3"

#define BUDGET_SECONDS 0.25
#define MIN_REPEATS 5
#define MAX_REPEATS 200
/* A figure whose cores busy fall below BUSY_SHARE x threads did not get its cores (another process
 * had them): it is measured again, at most ATTEMPTS times in all, keeping the attempt with the most. */
#define BUSY_SHARE 0.7
#define ATTEMPTS 3
#define PATH_LEN 4096
#define LINE_LEN 1024
#define MAX_NOTES 64
#define ROUNDS 2 /* each figure taken this many times, ours then torch's; each side keeps its fastest */

/* Goals of ANCHORS.md and issue 14, as the largest ratio ours / torch that meets them. */
#define LAYER_GOAL 1.0
#define LOCAL_GOAL 0.5
#define POOL_FORWARD_GOAL 0.1

#define NUM_THREADS 2
#define NUM_DTYPES 2
enum op { OP_FORWARD = 0, OP_BACKWARD = 1, NUM_OPS = 2 };

static const int THREADS[NUM_THREADS] = {1, 2};
static const sbx_dtype DTYPES[NUM_DTYPES] = {SBX_FLOAT32, SBX_FLOAT64};
static const char *const OP_NAMES[NUM_OPS] = {"forward", "backward"};
static const char *const BLAS_VARS[] = {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"};
#define NUM_BLAS_VARS (sizeof BLAS_VARS / sizeof BLAS_VARS[0])

/* The parts of a table, each with its goals (forward, backward). */
enum section { SEC_CONV, SEC_VARIANTS, SEC_LOCAL, SEC_POOL };
typedef struct section_info {
    const char *title;
    double goal[NUM_OPS];
} section_info;

static const section_info SECTIONS[] = {
    {"convolution, configurations a-d of ANCHORS.md (torch: conv2d)", {LAYER_GOAL, LAYER_GOAL}},
    {"convolution variants (issue 14): a and b with stride 2 and in full mode (torch: padding kernel - 1), "
     "small maps (torch: conv2d)",
     {LAYER_GOAL, LAYER_GOAL}},
    {"local connections, unshared weights (issue 14; torch: einsum('blp,pnl->bnp', unfold(x), w))",
     {LOCAL_GOAL, LOCAL_GOAL}},
    {"max pooling (torch: max_pool2d)", {POOL_FORWARD_GOAL, LAYER_GOAL}},
};

#define MAX_DIMS 3

/* One layer to time: images batch x channels x in[0 .. ndim-1] and
 *  - kind "conv": nkern kernels of shape kernel[], weights shared over the output positions;
 *  - kind "local": nkern kernels of shape kernel[] with weights of their own at each output position;
 *  - kind "pool": a max pool of shape kernel[] (nkern 0);
 * with a stride per dimension (shape order) and a mode. original: the original's path is timed too. */
typedef struct bench_case {
    const char *kind;
    const char *name;
    enum section section;
    int ndim;
    int64_t batch, channels, in[MAX_DIMS];
    int64_t nkern;
    int64_t kernel[MAX_DIMS], stride[MAX_DIMS];
    sbx_conv_mode mode;
    int original;
} bench_case;

static const bench_case CASES[] = {
    {"conv", "a", SEC_CONV, 2, 64, 1, {28, 28}, 32, {5, 5}, {1, 1}, SBX_CONV_VALID, 1},
    {"conv", "b", SEC_CONV, 2, 32, 3, {32, 32}, 64, {3, 3}, {1, 1}, SBX_CONV_VALID, 1},
    {"conv", "c", SEC_CONV, 2, 8, 16, {64, 64}, 32, {5, 5}, {1, 1}, SBX_CONV_VALID, 1},
    {"conv", "d", SEC_CONV, 2, 1, 1, {512, 512}, 8, {7, 7}, {1, 1}, SBX_CONV_VALID, 1},
    {"conv", "a-s2", SEC_VARIANTS, 2, 64, 1, {28, 28}, 32, {5, 5}, {2, 2}, SBX_CONV_VALID, 0},
    {"conv", "b-s2", SEC_VARIANTS, 2, 32, 3, {32, 32}, 64, {3, 3}, {2, 2}, SBX_CONV_VALID, 0},
    {"conv", "a-full", SEC_VARIANTS, 2, 64, 1, {28, 28}, 32, {5, 5}, {1, 1}, SBX_CONV_FULL, 0},
    {"conv", "b-full", SEC_VARIANTS, 2, 32, 3, {32, 32}, 64, {3, 3}, {1, 1}, SBX_CONV_FULL, 0},
    {"conv", "small", SEC_VARIANTS, 2, 64, 16, {8, 8}, 32, {3, 3}, {1, 1}, SBX_CONV_VALID, 0},
    {"local", "a", SEC_LOCAL, 2, 64, 1, {28, 28}, 32, {5, 5}, {1, 1}, SBX_CONV_VALID, 0},
    {"local", "b", SEC_LOCAL, 2, 32, 3, {32, 32}, 64, {3, 3}, {1, 1}, SBX_CONV_VALID, 0},
    {"local", "1d", SEC_LOCAL, 1, 64, 16, {256}, 32, {9}, {1}, SBX_CONV_VALID, 0},
    {"local", "3d", SEC_LOCAL, 3, 8, 4, {16, 16, 16}, 16, {3, 3, 3}, {1, 1, 1}, SBX_CONV_VALID, 0},
    {"pool", "p2", SEC_POOL, 2, 64, 32, {24, 24}, 0, {2, 2}, {2, 2}, SBX_CONV_VALID, 0},
    {"pool", "p3", SEC_POOL, 2, 8, 16, {128, 128}, 0, {3, 3}, {3, 3}, SBX_CONV_VALID, 0},
};
#define NUM_CASES (sizeof CASES / sizeof CASES[0])

/* A median in milliseconds (negative when not measured), the cores kept busy, the timed runs, and
for the peer the OpenBLAS threads of the figure (-1: not pinned). */
typedef struct timing {
    double ms, cores;
    int repeats, blas_threads;
} timing;

/* A check's outcome: not reported, passed, failed. */
enum check { CHECK_NONE = 0, CHECK_OK = 1, CHECK_FAILED = 2 };

/* Everything one table shows. */
typedef struct results {
    timing ours[NUM_CASES][NUM_DTYPES][NUM_OPS][NUM_THREADS];
    timing peer[NUM_CASES][NUM_DTYPES][NUM_OPS][NUM_THREADS];
    timing orig[NUM_CASES];
    enum check check[NUM_CASES][NUM_DTYPES][NUM_OPS];
    enum check bits[NUM_CASES][NUM_DTYPES][NUM_OPS]; /* ours with every thread count, byte for byte */
    enum check orig_check[NUM_CASES];
    int peer_status;                 /* the peer's exit status; -1 while it runs or when it did not start */
    int torch_ok, numpy_ok;          /* what the peer could import */
    int answers;                     /* "time" and "check" lines taken from the peer */
    int peer_failed;                 /* the peer stopped answering, or answered other lines */
    char versions[LINE_LEN];         /* "python 3.11.2, numpy 1.24.2, ..." */
    char torch_skip[LINE_LEN];       /* why torch is skipped */
    char peer_skip[LINE_LEN];        /* why the whole peer is skipped */
    char notes[MAX_NOTES][LINE_LEN]; /* the peer's BLAS lines, failed checks, stray output */
    int num_notes;
} results;

/* The data and plan of one case in one dtype. */
typedef struct layer {
    const bench_case *c;
    sbx_dtype dtype;
    sbx_conv_shape shape;
    sbx_conv_plan *plan;
    sbx_array *x, *k, *g; /* images, kernels or local weights (NULL for pooling), gradient of the output */
    sbx_array *mask;      /* pooling: the forward pass's tap masks, which its backward pass reads */
} layer;

/* The arrays one call returns. */
typedef struct outputs {
    sbx_array *a, *b;
} outputs;

/* ---- small helpers ---- */

static int report(const char *what, sbx_status st) {
    fprintf(stderr, "bench_layers: %s failed: %s: %s\n", what, sbx_status_str(st), sbx_last_error());
    return 1;
}

static int is_pool(const bench_case *c) { return !strcmp(c->kind, "pool"); }
static int is_local(const bench_case *c) { return !strcmp(c->kind, "local"); }

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v ? v : fallback;
}

static void add_note(results *r, const char *text) {
    if (r->num_notes < MAX_NOTES) snprintf(r->notes[r->num_notes++], LINE_LEN, "%s", text);
}

/* ---- clocks and medians ---- */

static double clock_seconds(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double wall_now(void) { return clock_seconds(CLOCK_MONOTONIC); }
static double cpu_now(void) { return clock_seconds(CLOCK_PROCESS_CPUTIME_ID); }

/* Timed runs for a call whose warm-up took `seconds`: about BUDGET_SECONDS in all, within limits. */
static int repeats_for(double seconds) {
    double n = seconds > 0 ? BUDGET_SECONDS / seconds + 1 : MAX_REPEATS;
    if (n < MIN_REPEATS) return MIN_REPEATS;
    return n > MAX_REPEATS ? MAX_REPEATS : (int)n;
}

/* ---- deterministic data ---- */

static void store(sbx_array *a, int64_t i, double v) {
    if (a->dtype == SBX_FLOAT32)
        ((float *)a->data)[i] = (float)v;
    else
        ((double *)a->data)[i] = v;
}

/* An array of the given shape holding uniform values in [-1, 1). */
static sbx_status random_array(sbx_dtype dtype, int ndim, const int64_t *shape, uint64_t seed, sbx_array **out) {
    sbx_status st = sbx_array_create(dtype, ndim, shape, out);
    for (int64_t i = 0; st == SBX_OK && i < sbx_array_numel(*out); i++)
        store(*out, i, (double)(splitmix64(&seed) >> 11) * 0x1.0p-52 - 1.0);
    return st;
}

/* A rows x cols array of distinct values (k - n/2) / 2^22 for a random permutation k of 0 .. n-1,
 * exact in float32 for n < 2^24: no ties, so every pooling window has a single maximum. */
static sbx_status distinct_array(sbx_dtype dtype, int64_t rows, int64_t cols, uint64_t seed, sbx_array **out) {
    int64_t n = rows * cols, shape[2] = {rows, cols};
    int64_t *perm = malloc((size_t)(n > 0 ? n : 1) * sizeof *perm);
    if (!perm) return SBX_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(splitmix64(&seed) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    sbx_status st = sbx_array_create(dtype, 2, shape, out);
    for (int64_t i = 0; st == SBX_OK && i < n; i++) store(*out, i, (double)(perm[i] - n / 2) * 0x1.0p-22);
    free(perm);
    return st;
}

/* ---- layers ---- */

static sbx_status case_shape(const bench_case *c, sbx_conv_shape *s) {
    return sbx_conv_shape_make(c->ndim, c->channels, c->in, c->kernel, c->stride, c->mode, s);
}

/* Output values per image: nkern (or channels) feature maps of out_size positions. */
static int64_t out_width(const layer *l) { return (is_pool(l->c) ? l->c->channels : l->c->nkern) * l->shape.out_size; }

static void layer_close(layer *l) {
    sbx_conv_plan_free(l->plan);
    sbx_array_free(l->x);
    sbx_array_free(l->k);
    sbx_array_free(l->g);
    sbx_array_free(l->mask);
    l->plan = NULL;
    l->x = l->k = l->g = l->mask = NULL;
}

static sbx_status layer_plan(layer *l) {
    if (is_pool(l->c)) return sbx_pool_plan_create(&l->shape, l->dtype, &l->plan);
    if (is_local(l->c)) return sbx_local_plan_create(&l->shape, l->c->nkern, l->dtype, &l->plan);
    return sbx_conv_plan_create(&l->shape, l->c->nkern, l->dtype, &l->plan);
}

static const char *plan_function(const bench_case *c) {
    return is_pool(c) ? "sbx_pool_plan_create" : is_local(c) ? "sbx_local_plan_create" : "sbx_conv_plan_create";
}

/* Images, then the weights: nkern x (channels * kernel_size) for a convolution, the vector of
 * channels * nkern * out_size * kernel_size local weights (conv.h's order), none for pooling. */
static sbx_status layer_data(layer *l, uint64_t seed) {
    const bench_case *c = l->c;
    const int64_t images[2] = {c->batch, l->shape.in_size}, grads[2] = {c->batch, out_width(l)};
    const int64_t kerns[2] = {c->nkern, c->channels * l->shape.kernel_size};
    const int64_t weights = kerns[1] * c->nkern * l->shape.out_size;
    sbx_status st = is_pool(c) ? distinct_array(l->dtype, c->batch, l->shape.in_size, seed, &l->x)
                               : random_array(l->dtype, 2, images, seed, &l->x);
    if (st == SBX_OK && !is_pool(c))
        st = is_local(c) ? random_array(l->dtype, 1, &weights, seed + 1, &l->k)
                         : random_array(l->dtype, 2, kerns, seed + 1, &l->k);
    if (st == SBX_OK) st = random_array(l->dtype, 2, grads, seed + 2, &l->g);
    if (st == SBX_OK && is_pool(c)) { /* the training forward, untimed: torch's backward reads saved indices too */
        sbx_array *y = NULL;
        st = sbx_pool_forward_mask(l->plan, l->x, &y, &l->mask);
        sbx_array_free(y);
    }
    return st;
}

static int layer_open(const bench_case *c, sbx_dtype dtype, uint64_t seed, layer *l) {
    memset(l, 0, sizeof *l);
    l->c = c;
    l->dtype = dtype;
    sbx_status st = case_shape(c, &l->shape);
    if (st != SBX_OK) return report("sbx_conv_shape_make", st);
    st = layer_plan(l);
    if (st != SBX_OK) return report(plan_function(c), st);
    st = layer_data(l, seed);
    if (st != SBX_OK) {
        layer_close(l);
        return report("making the data", st);
    }
    return 0;
}

static sbx_status layer_run(const layer *l, enum op op, outputs *o) {
    o->a = o->b = NULL;
    if (is_pool(l->c) && op == OP_FORWARD) return sbx_pool_forward(l->plan, l->x, &o->a);
    if (is_pool(l->c)) return sbx_pool_backward_mask(l->plan, l->mask, l->g, &o->a);
    if (is_local(l->c) && op == OP_FORWARD) return sbx_local_forward(l->plan, l->x, l->k, NULL, &o->a);
    if (is_local(l->c)) return sbx_local_backward(l->plan, l->x, l->k, l->g, &o->a, &o->b, NULL);
    if (op == OP_FORWARD) return sbx_conv_forward(l->plan, l->x, l->k, NULL, &o->a);
    return sbx_conv_backward(l->plan, l->x, l->k, l->g, &o->a, &o->b, NULL);
}

static void outputs_free(outputs *o) {
    sbx_array_free(o->a);
    sbx_array_free(o->b);
    o->a = o->b = NULL;
}

/* ---- timing ---- */

static int timed_run(const layer *l, enum op op, double *seconds) {
    outputs o;
    double t0 = wall_now();
    sbx_status st = layer_run(l, op, &o);
    *seconds = wall_now() - t0;
    outputs_free(&o);
    return st == SBX_OK ? 0 : report(OP_NAMES[op], st);
}

static int time_once(const layer *l, enum op op, timing *t) {
    double runs[MAX_REPEATS], first;
    if (timed_run(l, op, &first)) return 1;
    t->repeats = repeats_for(first);
    double cpu0 = cpu_now(), wall0 = wall_now();
    for (int r = 0; r < t->repeats; r++)
        if (timed_run(l, op, &runs[r])) return 1;
    t->cores = (cpu_now() - cpu0) / (wall_now() - wall0);
    t->ms = median(runs, t->repeats) * 1e3;
    return 0;
}

static int got_cores(const timing *t, int threads) { return t->cores >= BUSY_SHARE * threads; }

/* time_once, again while the figure did not get its cores; the attempt that got the most is kept. */
static int time_layer(const layer *l, enum op op, int threads, timing *t) {
    timing attempt;
    if (time_once(l, op, t)) return 1;
    for (int a = 1; a < ATTEMPTS && !got_cores(t, threads); a++) {
        if (time_once(l, op, &attempt)) return 1;
        if (attempt.cores > t->cores) *t = attempt;
    }
    return 0;
}

/* ---- files for the peer ---- */

/* DIR/KIND_NAME_DTYPE_PART.npy */
static int save_array(const char *dir, const layer *l, const char *part, const sbx_array *a) {
    char name[256], path[PATH_LEN];
    snprintf(name, sizeof name, "%s_%s_%s_%s.npy", l->c->kind, l->c->name, sbx_dtype_name(l->dtype), part);
    if (join_path(path, sizeof path, dir, name)) return 1;
    sbx_status st = sbx_npy_write(path, a);
    return st == SBX_OK ? 0 : report(path, st);
}

/* 1 when a and b (outputs of one plan) hold the same bytes; two NULLs are the same. */
static int same_bits(const sbx_array *a, const sbx_array *b) {
    if (!a || !b) return a == b;
    const int64_t n = sbx_array_numel(a);
    return sbx_array_numel(b) == n && (n == 0 || !memcmp(a->data, b->data, (size_t)n * sbx_dtype_size(a->dtype)));
}

/* Runs op with each thread count, saves the outputs of the first under the given names, and sets
 * *bits to whether every other thread count gave the same bytes. */
static int save_results(const char *dir, const layer *l, enum op op, const char *name_a, const char *name_b,
                        enum check *bits) {
    outputs first, again;
    set_threads(THREADS[0]);
    sbx_status st = layer_run(l, op, &first);
    *bits = CHECK_OK;
    for (int th = 1; th < NUM_THREADS && st == SBX_OK; th++) {
        set_threads(THREADS[th]);
        st = layer_run(l, op, &again);
        if (st == SBX_OK && !(same_bits(first.a, again.a) && same_bits(first.b, again.b))) *bits = CHECK_FAILED;
        outputs_free(&again);
    }
    set_threads(THREADS[0]);
    int bad = st != SBX_OK ? report(OP_NAMES[op], st)
                           : save_array(dir, l, name_a, first.a) || (first.b && save_array(dir, l, name_b, first.b));
    outputs_free(&first);
    return bad;
}

/* The inputs (x, k, g) and sparsebox's results: y (forward), gx and gk (backward); bits[op] as
 * save_results sets it. */
static int save_layer(const char *dir, const layer *l, enum check bits[NUM_OPS]) {
    return save_array(dir, l, "x", l->x) || (l->k && save_array(dir, l, "k", l->k)) || save_array(dir, l, "g", l->g) ||
           save_results(dir, l, OP_FORWARD, "y", NULL, &bits[OP_FORWARD]) ||
           save_results(dir, l, OP_BACKWARD, "gx", "gk", &bits[OP_BACKWARD]);
}

/* n int64 index values saved as int32, the index type scipy picks for these sizes. */
static int save_index(const char *dir, const layer *l, const char *part, int64_t *values, int64_t n) {
    sbx_array wide = {.dtype = SBX_INT64, .ndim = 1, .shape = {n}, .data = values}, *narrow = NULL;
    sbx_status st = sbx_array_cast(&wide, SBX_INT32, &narrow);
    if (st != SBX_OK) return report("sbx_array_cast to int32", st);
    int bad = save_array(dir, l, part, narrow);
    sbx_array_free(narrow);
    return bad;
}

/* The patch matrix of the original's path, CSC: its indptr and indices. */
static int save_patch_matrix(const char *dir, const layer *l) {
    sbx_sparse *m = NULL;
    sbx_status st = sbx_conv_indices(&l->shape, 1, 1, SBX_CSC, &m, NULL);
    if (st != SBX_OK) return report("sbx_conv_indices", st);
    int bad = save_index(dir, l, "indptr", m->indptr, m->ncols + 1) ||
              save_index(dir, l, "indices", m->indices, m->nnz);
    sbx_sparse_free(m);
    return bad;
}

/* manifest.txt: the timing rule, the thread counts, the dtypes and the cases ("case KIND NAME ORIGINAL
 * NDIM MODE BATCH CHANNELS NKERN", then in[], kernel[] and stride[], ndim values each), for the peer. */
static int write_manifest(const char *dir) {
    char path[PATH_LEN];
    if (join_path(path, sizeof path, dir, "manifest.txt")) return 1;
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench_layers: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "timing %g %d %d %g %d\nthreads %d %d\ndtypes %s %s\n", BUDGET_SECONDS, MIN_REPEATS, MAX_REPEATS,
            BUSY_SHARE, ATTEMPTS, THREADS[0], THREADS[1], sbx_dtype_name(DTYPES[0]), sbx_dtype_name(DTYPES[1]));
    for (size_t i = 0; i < NUM_CASES; i++) {
        const bench_case *c = &CASES[i];
        fprintf(f, "case %s %s %d %d %s %lld %lld %lld", c->kind, c->name, c->original, c->ndim,
                sbx_conv_mode_name(c->mode), (long long)c->batch, (long long)c->channels, (long long)c->nkern);
        const int64_t *lists[3] = {c->in, c->kernel, c->stride};
        for (int li = 0; li < 3; li++)
            for (int d = 0; d < c->ndim; d++) fprintf(f, " %lld", (long long)lists[li][d]);
        fputc('\n', f);
    }
    return fclose(f) == 0 ? 0 : 1;
}

static void remove_dir(const char *dir) {
    char path[PATH_LEN];
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !join_path(path, sizeof path, dir, e->d_name))
            unlink(path);
    if (d) closedir(d);
    if (rmdir(dir) != 0) fprintf(stderr, "bench_layers: cannot remove %s: %s\n", dir, strerror(errno));
}

/* ---- the peer ---- */

static int append(char *buf, size_t len, const char *text) {
    size_t used = strlen(buf), n = strlen(text);
    if (used + n >= len) return 1;
    memcpy(buf + used, text, n + 1);
    return 0;
}

static int find_case(const char *kind, const char *name) {
    for (size_t i = 0; i < NUM_CASES; i++)
        if (!strcmp(CASES[i].kind, kind) && !strcmp(CASES[i].name, name)) return (int)i;
    return -1;
}

static int find_dtype(const char *name) {
    for (int i = 0; i < NUM_DTYPES; i++)
        if (!strcmp(sbx_dtype_name(DTYPES[i]), name)) return i;
    return -1;
}

static int find_op(const char *name) {
    for (int i = 0; i < NUM_OPS; i++)
        if (!strcmp(OP_NAMES[i], name)) return i;
    return -1;
}

static int find_threads(int n) {
    for (int i = 0; i < NUM_THREADS; i++)
        if (THREADS[i] == n) return i;
    return -1;
}

static void keep_faster(timing *best, const timing *t) {
    if (t->ms >= 0 && (best->ms < 0 || t->ms < best->ms)) *best = *t;
}

/* "KIND NAME DTYPE OP THREADS MS CORES REPEATS BLAS_THREADS", kept when faster than that figure's
 * earlier rounds; KIND "orig" is the original's path. */
static int time_line(results *r, const char *value) {
    char kind[16], name[16], dtype[16], op[16];
    int threads, repeats, blas_threads;
    double ms, cores;
    if (sscanf(value, "%15s %15s %15s %15s %d %lf %lf %d %d", kind, name, dtype, op, &threads, &ms, &cores, &repeats,
               &blas_threads) != 9)
        return 0;
    int ci = find_case(strcmp(kind, "orig") ? kind : "conv", name), di = find_dtype(dtype), oi = find_op(op);
    int ti = find_threads(threads);
    if (ci < 0 || di < 0 || oi < 0 || ti < 0) return 0;
    timing t = {ms, cores, repeats, blas_threads};
    keep_faster(!strcmp(kind, "orig") ? &r->orig[ci] : &r->peer[ci][di][oi][ti], &t);
    r->answers++;
    return 1;
}

static enum check worse(enum check a, enum check b) { return a > b ? a : b; }

/* "KIND NAME DTYPE OP ok" or "KIND NAME DTYPE OP FAILED what"; a check failed in any round stays failed. */
static int check_line(results *r, const char *value) {
    char kind[16], name[16], dtype[16], op[16], verdict[16];
    if (sscanf(value, "%15s %15s %15s %15s %15s", kind, name, dtype, op, verdict) != 5) return 0;
    int ci = find_case(strcmp(kind, "orig") ? kind : "conv", name), di = find_dtype(dtype), oi = find_op(op);
    if (ci < 0 || di < 0 || oi < 0) return 0;
    enum check v = strcmp(verdict, "ok") ? CHECK_FAILED : CHECK_OK;
    r->answers++;
    enum check *at = !strcmp(kind, "orig") ? &r->orig_check[ci] : &r->check[ci][di][oi];
    *at = worse(*at, v);
    if (v == CHECK_FAILED) {
        char note[LINE_LEN];
        snprintf(note, sizeof note, "check FAILED: %.1000s", value);
        add_note(r, note);
    }
    return 1;
}

static void add_version(results *r, const char *what, const char *value) {
    char piece[LINE_LEN];
    int n = (int)strcspn(what, "_");
    snprintf(piece, sizeof piece, "%s%.*s %.200s", r->versions[0] ? ", " : "", n < 32 ? n : 32, what, value);
    append(r->versions, sizeof r->versions, piece);
}

/* One line of the peer's output: "key value"; 1 for the "done" that ends its setting or an answer. */
static int peer_line(results *r, char *line) {
    line[strcspn(line, "\r\n")] = '\0';
    if (!strcmp(line, "done")) return 1;
    char *space = strchr(line, ' ');
    const char *value = space ? space + 1 : "";
    if (space) *space = '\0';
    int known = 1;
    if (!strcmp(line, "time"))
        known = time_line(r, value);
    else if (!strcmp(line, "check"))
        known = check_line(r, value);
    else if (strstr(line, "_version"))
        add_version(r, line, value);
    else if (!strcmp(line, "torch_skip"))
        snprintf(r->torch_skip, sizeof r->torch_skip, "%s", value);
    else if (!strcmp(line, "skip"))
        snprintf(r->peer_skip, sizeof r->peer_skip, "%s", value);
    else
        known = 0;
    if (!strcmp(line, "torch_version")) r->torch_ok = 1;
    if (space) *space = ' ';
    if (!known) add_note(r, line); /* also the peer's "blas ..." and "malloc ..." lines */
    return 0;
}

/* A table's run: its results, the peer, the pinning of the 1-thread figures, the folder of the files. */
typedef struct bench {
    results *r;
    peer_process peer; /* bench_util.h; pid 0 when not running */
    pinning pin;
    const char *dir;
} bench;

/* Closes the peer's input (which ends it), takes what it still prints, and waits for it. */
static void stop_peer(bench *b) {
    char line[LINE_LEN];
    if (!b->peer.pid) return;
    fclose(b->peer.to);
    b->peer.to = NULL;
    while (fgets(line, sizeof line, b->peer.from)) peer_line(b->r, line);
    b->r->peer_status = peer_finish_process(&b->peer);
}

/* Takes the peer's lines up to its "done"; 0, or 1 when its output ended first. */
static int peer_answer(bench *b) {
    char line[LINE_LEN];
    while (fgets(line, sizeof line, b->peer.from))
        if (peer_line(b->r, line)) return 0;
    return 1;
}

/* Sends one command and takes the answer, which must hold `lines` "time" and "check" lines; 1 (the
 * peer stopped, with a note saying why) when it did not. The checks it did not answer then fail. */
static int ask_peer(bench *b, const char *command, int lines) {
    results *r = b->r;
    if (!b->peer.pid) return 1;
    const int before = r->answers;
    signal(SIGPIPE, SIG_IGN); /* a peer that ended shows as a failed write, not as our end */
    const int wrote = fprintf(b->peer.to, "%s\n", command) >= 0 && fflush(b->peer.to) == 0;
    signal(SIGPIPE, SIG_DFL);
    const int ended = !wrote || peer_answer(b);
    if (!ended && r->answers - before == lines) return 0;
    char note[LINE_LEN];
    snprintf(note, sizeof note, "the peer %s \"%.200s\"%s; stopped", ended ? "did not answer" : "answered",
             command, ended ? "" : " with other lines than expected");
    add_note(r, note);
    r->peer_failed = 1;
    stop_peer(b);
    return 1;
}

/* Starts the peer on the files in b->dir and takes its setting lines. */
static void start_peer(bench *b, int argc, char **argv) {
    char folder[PATH_LEN], script[PATH_LEN];
    results *r = b->r;
    r->peer_status = -1;
    peer_folder(argc > 1 ? argv[1] : NULL, folder, sizeof folder);
    if (join_path(script, sizeof script, folder, "peer_torch.py")) {
        snprintf(r->peer_skip, sizeof r->peer_skip, "the peer's path is too long");
        return;
    }
    if (peer_start_process(&b->peer, env_or("SBX_BENCH_PYTHON", DEFAULT_PYTHON), script, b->dir, r->peer_skip,
                           sizeof r->peer_skip))
        return;
    if (peer_answer(b) == 0) {
        r->numpy_ok = 1; /* it imports numpy and scipy before its "done" */
        return;
    }
    stop_peer(b); /* a "skip" line, or the reason it failed, is in the notes */
}

/* ---- our side, and torch's figure after each of ours ---- */

/* One figure, ROUNDS times: ours (pinned to one CPU for 1 thread), then torch's, each side's fastest
 * kept. */
static int time_figure(bench *b, const layer *l, size_t ci, int di, enum op op, int ti) {
    const int threads = THREADS[ti], pinned = threads == 1;
    char command[LINE_LEN];
    for (int round = 0; round < ROUNDS; round++) {
        timing t;
        pin_thread(&b->pin, pinned);
        set_threads(threads);
        const int bad = time_layer(l, op, threads, &t);
        set_threads(THREADS[0]);
        pin_thread(&b->pin, 0);
        if (bad) return 1;
        keep_faster(&b->r->ours[ci][di][op][ti], &t);
        snprintf(command, sizeof command, "time %s %s %s %s %d %d", l->c->kind, l->c->name, sbx_dtype_name(l->dtype),
                 OP_NAMES[op], threads, pinned ? b->pin.cpu : -1); /* -1 also once pinning failed */
        if (b->r->torch_ok) ask_peer(b, command, 1);
    }
    return 0;
}

/* One case in one dtype: the files the peer needs (with every thread count, unpinned: the first case
 * starts our thread pool on every CPU), then each figure, torch's check, and the original's path. */
static int bench_layer(bench *b, size_t ci, int di) {
    layer l;
    const bench_case *c = &CASES[ci];
    results *r = b->r;
    char command[LINE_LEN];
    if (layer_open(c, DTYPES[di], 1000 * (uint64_t)(ci + 1), &l)) return 1;
    int bad = save_layer(b->dir, &l, r->bits[ci][di]);
    const int original = c->original && DTYPES[di] == SBX_FLOAT32;
    if (!bad && original) bad = save_patch_matrix(b->dir, &l);
    for (int ti = 0; ti < NUM_THREADS && !bad; ti++)
        for (int op = 0; op < NUM_OPS && !bad; op++) bad = time_figure(b, &l, ci, di, (enum op)op, ti);
    if (!bad && r->torch_ok) {
        snprintf(command, sizeof command, "check %s %s %s", c->kind, c->name, sbx_dtype_name(DTYPES[di]));
        ask_peer(b, command, NUM_OPS);
    }
    if (!bad && original && r->numpy_ok) {
        snprintf(command, sizeof command, "orig %s %d", c->name, b->pin.cpu);
        for (int round = 0; round < ROUNDS && b->peer.pid; round++) ask_peer(b, command, 2);
    }
    layer_close(&l);
    return bad;
}

/* ---- output ---- */

static void print_setting(int child) {
    if (child)
        printf("\n=== table 2 of 2: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (re-executed, %s=1) ===\n",
               CHILD_VAR);
    else
        printf("=== table 1 of 2: the environment as inherited ===\n");
    print_machine();
    for (size_t i = 0; i < NUM_BLAS_VARS; i++) printf("%s=%s\n", BLAS_VARS[i], env_or(BLAS_VARS[i], "(unset)"));
    const char *core = blas_string("openblas_get_corename"), *config = blas_string("openblas_get_config");
    if (core)
        printf("sparsebox's OpenBLAS: core %s (%s)\n", core, config ? config : "?");
    else
        printf("sparsebox's BLAS is not OpenBLAS (no openblas_get_corename); BLAS threads not pinned\n");
}

/* The peer's lines about its setting ("blas ...", "malloc ..."), printed with the header. */
static int is_setting_note(const char *note) { return !strncmp(note, "blas ", 5) || !strncmp(note, "malloc ", 7); }

static void print_peer_info(const results *r) {
    if (r->peer_skip[0])
        printf("peer: skipped (status %d): %s\n", r->peer_status, r->peer_skip);
    else if (r->peer_status != 0)
        printf("peer: exited with status %d; what it said is in the notes below the table\n", r->peer_status);
    if (r->versions[0]) printf("peer: %s\n", r->versions);
    if (r->torch_skip[0]) printf("peer: torch skipped: %s\n", r->torch_skip);
    for (int i = 0; i < r->num_notes; i++)
        if (is_setting_note(r->notes[i])) printf("peer's %s\n", r->notes[i]);
    printf("timing: median of >= %d runs after 1 warm-up, repeats chosen for ~%.2f s per figure; cpu = process "
           "CPU time / wall time (cores busy)\n  a figure with cpu < %.1f x threads (its cores were busy elsewhere) "
           "is taken again, %d attempts at most, keeping the best; '!' marks one that never got them\n",
           MIN_REPEATS, BUDGET_SECONDS, BUSY_SHARE, ATTEMPTS);
    printf("threads: sbx_set_num_threads(n) and openblas_set_num_threads(n) | torch.set_num_threads(n) and "
           "openblas_set_num_threads(n),\n  for torch's float64 conv and its local connections with n = 2 also "
           "(1), the faster kept (torch's threads split the batch\n  and 2 BLAS threads inside each oversubscribe "
           "the 2 cores); column bl = torch's OpenBLAS threads\n");
    printf("torch backward: one forward with requires_grad, then torch.autograd.grad(y, (x, w), g, "
           "retain_graph=True) timed alone (for conv one convolution_backward computing both gradients, as our "
           "one call)\n");
    printf("torch local: einsum('blp,pnl->bnp', unfold(x), w), unfold(x) = F.unfold (2-d), or Tensor.unfold along "
           "each axis reshaped\n  to (batch, channels*taps, positions) (1-d, 3-d); the unfold of x is timed, "
           "our weights' copy into w's layout\n  (positions, nkern, channels*taps) is not; backward: autograd "
           "on that expression, grads of x and w\n");
    printf("bits: our results with %d threads equal to those with %d byte for byte\n", THREADS[1], THREADS[0]);
    printf("pool backward: ours from the tap masks of an untimed sbx_pool_forward_mask (sbx_pool_backward_mask), "
           "torch's from the indices its forward saved\n");
}

static double conv_flops(const bench_case *c, const sbx_conv_shape *s, enum op op) {
    double f = 2.0 * (double)c->batch * (double)c->nkern * (double)s->out_size * (double)c->channels *
               (double)s->kernel_size;
    return op == OP_BACKWARD ? 2 * f : f;
}

/* Bytes a pooling call must move: images read and output written (forward); images and output
 * gradient read and image gradient written (backward). */
static double pool_bytes(const bench_case *c, const sbx_conv_shape *s, sbx_dtype dtype, enum op op) {
    double in = (double)c->batch * (double)s->in_size;
    double out = (double)c->batch * (double)c->channels * (double)s->out_size;
    return (op == OP_FORWARD ? in + out : 2 * in + out) * (double)sbx_dtype_size(dtype);
}

/* GFLOP/s for a convolution, GB/s for pooling; negative when not measured. */
static double rate(const bench_case *c, sbx_dtype dtype, enum op op, double ms) {
    sbx_conv_shape s;
    if (ms <= 0 || case_shape(c, &s) != SBX_OK) return -1;
    double amount = is_pool(c) ? pool_bytes(c, &s, dtype, op) : conv_flops(c, &s, op);
    return amount / (ms * 1e-3) * 1e-9;
}

static double goal_for(const bench_case *c, enum op op) { return SECTIONS[c->section].goal[op]; }

static const char *check_text(enum check v) { return v == CHECK_OK ? "ok" : v == CHECK_FAILED ? "FAILED" : "-"; }

static void print_number(double v, const char *format, int width) {
    if (v < 0)
        printf("%*s", width, "-");
    else
        printf(format, width, v);
}

/* The tally of goals over a table. */
typedef struct tally {
    int met, missed;
    char missed_list[16384];
} tally;

static void count_goal(tally *g, const char *what, double ratio, double goal, int busy) {
    char item[128];
    if (ratio <= goal) {
        g->met++;
        return;
    }
    g->missed++;
    snprintf(item, sizeof item, "  %s  %.2fx (goal <= %.2fx)%s\n", what, ratio, goal, busy ? " cores busy" : "");
    append(g->missed_list, sizeof g->missed_list, item);
}

/* " 1.98 " for a figure that got its cores, " 1.12!" for one that did not, "     - " when missing. */
static void print_cores(const timing *t, int threads) {
    if (t->ms < 0)
        printf(" %4s ", "-");
    else
        printf(" %4.2f%c", t->cores, got_cores(t, threads) ? ' ' : '!');
}

static void print_row(size_t ci, int di, int oi, int ti, const results *r, tally *g) {
    const bench_case *c = &CASES[ci];
    const timing *o = &r->ours[ci][di][oi][ti], *p = &r->peer[ci][di][oi][ti];
    char label[64];
    snprintf(label, sizeof label, "%-5s %-6s %-7s %-8s %dt", c->kind, c->name, sbx_dtype_name(DTYPES[di]),
             OP_NAMES[oi], THREADS[ti]);
    printf("  %-34s", label);
    print_number(o->ms, "%*.3f", 10);
    print_cores(o, THREADS[ti]);
    print_number(p->ms, "%*.3f", 10);
    print_cores(p, THREADS[ti]);
    print_number(p->ms > 0 && p->blas_threads > 0 ? p->blas_threads : -1, "%*.0f", 3);
    double ratio = p->ms > 0 ? o->ms / p->ms : -1, goal = goal_for(c, (enum op)oi);
    print_number(ratio, "%*.3f", 9);
    print_number(rate(c, DTYPES[di], (enum op)oi, o->ms), "%*.1f", 9);
    print_number(rate(c, DTYPES[di], (enum op)oi, p->ms), "%*.1f", 9);
    printf("  %-6s %-6s", check_text(r->check[ci][di][oi]), r->bits[ci][di][oi] == CHECK_FAILED ? "DIFFER" : "same");
    if (ratio < 0) {
        printf("  -\n");
        return;
    }
    int busy = !got_cores(o, THREADS[ti]) || !got_cores(p, THREADS[ti]);
    printf("  <=%.1fx %s%s\n", goal, ratio <= goal ? "met" : "MISSED", busy ? " (cores busy: see !)" : "");
    count_goal(g, label, ratio, goal, busy);
}

/* "28x28" for n extents; "2" for n equal ones when same is set. */
static void extents_text(char *buf, size_t len, int n, const int64_t *v, int same) {
    buf[0] = '\0';
    for (int d = 1; same && d < n; d++)
        if (v[d] != v[0]) same = 0;
    for (int d = 0; d < (same ? 1 : n); d++) {
        char one[32];
        snprintf(one, sizeof one, "%s%lld", d ? "x" : "", (long long)v[d]);
        append(buf, len, one);
    }
}

static void print_case_title(const bench_case *c) {
    char in[96], kernel[96], stride[96], pad[96];
    extents_text(in, sizeof in, c->ndim, c->in, 0);
    extents_text(kernel, sizeof kernel, c->ndim, c->kernel, 0);
    extents_text(stride, sizeof stride, c->ndim, c->stride, 1);
    if (is_pool(c)) {
        printf(" %s %s: max pool, batch %lld x %lld x %s, pool %s, stride = pool, valid\n", c->kind, c->name,
               (long long)c->batch, (long long)c->channels, in, kernel);
        return;
    }
    int64_t padding[MAX_DIMS];
    for (int d = 0; d < c->ndim; d++) padding[d] = c->kernel[d] - 1;
    extents_text(pad, sizeof pad, c->ndim, padding, 1);
    printf(" %s %s: batch %lld, %lldx%s, %lld kernels %s, %s", c->kind, c->name, (long long)c->batch,
           (long long)c->channels, in, (long long)c->nkern, kernel, sbx_conv_mode_name(c->mode));
    if (c->mode == SBX_CONV_FULL) printf(" (torch padding %s)", pad);
    printf(", stride %s", stride);
    sbx_conv_shape s;
    if (is_local(c) && case_shape(c, &s) == SBX_OK)
        printf(", %lld weights", (long long)(c->channels * c->nkern * s.out_size * s.kernel_size));
    printf("\n");
}

static void print_table(const results *r, tally *g) {
    printf("\n  %-34s%10s %4s %10s %4s %3s%9s%9s%9s  %-6s %-6s  %s\n", "layer dtype op threads", "ours ms", "cpu",
           "torch ms", "cpu", "bl", "ours/tch", "ours", "torch", "check", "bits", "goal");
    printf("  %-34s%10s %4s %10s %4s %3s%9s%9s%9s\n", "", "", "", "", "", "", "", "GFLOP/s", "GFLOP/s");
    printf("  %-34s%10s %4s %10s %4s %3s%9s%9s%9s\n", "", "", "", "", "", "", "", "(GB/s)", "(GB/s)");
    for (size_t ci = 0; ci < NUM_CASES; ci++) {
        const section_info *sec = &SECTIONS[CASES[ci].section];
        if (ci == 0 || CASES[ci].section != CASES[ci - 1].section)
            printf("\n -- %s; goal: forward <= %.1fx, backward <= %.1fx torch\n", sec->title, sec->goal[OP_FORWARD],
                   sec->goal[OP_BACKWARD]);
        print_case_title(&CASES[ci]);
        for (int di = 0; di < NUM_DTYPES; di++)
            for (int oi = 0; oi < NUM_OPS; oi++)
                for (int ti = 0; ti < NUM_THREADS; ti++) print_row(ci, di, oi, ti, r, g);
    }
}

static void print_orig(const results *r) {
    printf("\n the original's path, float32 forward, 1 thread: scipy CSC patch matrix (ones) @ images.T, reshape,\n"
           " numpy dot with kerns.T, reorder to batch x (nkern * out_size); numeric part only\n");
    printf("  %-28s%10s %4s %10s %4s %9s  %s\n", "config", "ours ms", "cpu", "orig ms", "cpu", "speed-up", "check");
    for (size_t ci = 0; ci < NUM_CASES; ci++) {
        if (!CASES[ci].original) continue;
        const timing *o = &r->ours[ci][0][OP_FORWARD][0], *p = &r->orig[ci];
        char label[32];
        snprintf(label, sizeof label, "conv %s", CASES[ci].name);
        printf("  %-28s%10.3f", label, o->ms);
        print_cores(o, 1);
        print_number(p->ms, "%*.3f", 10);
        print_cores(p, 1);
        print_number(p->ms > 0 ? p->ms / o->ms : -1, "%*.1fx", 8);
        printf("  %s\n", check_text(r->orig_check[ci]));
    }
}

static void print_notes(const results *r) {
    for (int i = 0; i < r->num_notes; i++)
        if (!is_setting_note(r->notes[i])) printf("peer: %s\n", r->notes[i]);
}

/* ---- checks ---- */

/* A check fails when it says so, or when the peer could run it and it is missing. */
static int check_passes(enum check v, int expected) { return v == CHECK_OK || (v == CHECK_NONE && !expected); }

/* 1 when every check expected from what the peer could run came back ok, and every result was the
 * same with each thread count. */
static int checks_pass(const results *r) {
    int pass = 1;
    for (size_t ci = 0; ci < NUM_CASES; ci++) {
        for (int di = 0; di < NUM_DTYPES; di++)
            for (int oi = 0; oi < NUM_OPS; oi++)
                pass &= check_passes(r->check[ci][di][oi], r->torch_ok) && r->bits[ci][di][oi] == CHECK_OK;
        if (CASES[ci].original) pass &= check_passes(r->orig_check[ci], r->numpy_ok);
    }
    /* a peer that got going must answer every command and end with status 0 */
    return pass && !r->peer_failed && (!r->numpy_ok || r->peer_status == 0);
}

/* ---- one table ---- */

static void clear_results(results *r) {
    memset(r, 0, sizeof *r);
    for (size_t ci = 0; ci < NUM_CASES; ci++) {
        r->orig[ci].ms = -1;
        for (int di = 0; di < NUM_DTYPES; di++)
            for (int oi = 0; oi < NUM_OPS; oi++)
                for (int ti = 0; ti < NUM_THREADS; ti++) r->ours[ci][di][oi][ti].ms = r->peer[ci][di][oi][ti].ms = -1;
    }
}

/* Measures, runs the peer, prints the table. Returns 0, or 1 on an error or a failed check. */
static int run_table(int argc, char **argv, int child, results *r) {
    char dir[] = "/tmp/bench_layers.XXXXXX";
    tally g;
    memset(&g, 0, sizeof g);
    clear_results(r);
    print_setting(child);
    fflush(stdout);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "bench_layers: mkdtemp failed: %s\n", strerror(errno));
        return 1;
    }
    bench b = {.r = r, .dir = dir};
    pinning_init(&b.pin);
    int error = write_manifest(dir);
    if (!error) start_peer(&b, argc, argv);
    printf("timing sparsebox and, after each of its figures, torch's%s...\n",
           b.pin.cpu >= 0 ? " (1-thread figures on one CPU, both sides)" : " (not pinned: sched_getcpu failed)");
    fflush(stdout);
    const int tty = isatty(STDERR_FILENO);
    const double t0 = wall_now();
    for (size_t ci = 0; ci < NUM_CASES && !error; ci++)
        for (int di = 0; di < NUM_DTYPES && !error; di++) {
            /* progress on stderr (the table goes to stdout): a line each, rewritten on a terminal */
            fprintf(stderr, "%sbench_layers: %zu of %zu: %s %s %s (%.0f s so far)%s", tty ? "\r\033[K" : "",
                    ci * NUM_DTYPES + (size_t)di + 1, NUM_CASES * NUM_DTYPES, CASES[ci].kind, CASES[ci].name,
                    sbx_dtype_name(DTYPES[di]), wall_now() - t0, tty ? "" : "\n");
            error = bench_layer(&b, ci, di);
        }
    if (tty) fprintf(stderr, "\r\033[K");
    stop_peer(&b);
    remove_dir(dir);
    if (error) return 1;
    print_peer_info(r);
    print_table(r, &g);
    print_orig(r);
    print_notes(r);
    int pass = checks_pass(r);
    printf("\n goals: %d met, %d missed%s\n%s", g.met, g.missed, g.missed ? ":" : "", g.missed_list);
    printf(" checks: %s\n", pass ? "ok" : "FAILED");
    return !pass;
}

/* ---- the second run, without the OpenBLAS variables ---- */

extern char **environ;

static int is_dropped(const char *entry) {
    for (size_t i = 0; i < NUM_BLAS_VARS; i++) {
        size_t n = strlen(BLAS_VARS[i]);
        if (!strncmp(entry, BLAS_VARS[i], n) && entry[n] == '=') return 1;
    }
    return !strncmp(entry, CHILD_VAR "=", sizeof CHILD_VAR);
}

/* The environment without BLAS_VARS, plus CHILD_VAR=1; a new array of borrowed strings. */
static char **child_environment(void) {
    static char marker[] = CHILD_VAR "=1";
    size_t n = 0, used = 0;
    while (environ[n]) n++;
    char **env = malloc((n + 2) * sizeof *env);
    if (!env) return NULL;
    for (size_t i = 0; i < n; i++)
        if (!is_dropped(environ[i])) env[used++] = environ[i];
    env[used++] = marker;
    env[used] = NULL;
    return env;
}

/* Runs this program again with the child environment and waits for it; its exit status. */
static int rerun_without_blas_vars(char **argv) {
    char **env = child_environment();
    if (!env) return 1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execve("/proc/self/exe", argv, env);
        if (strchr(argv[0], '/')) execve(argv[0], argv, env);
        _exit(127);
    }
    free(env);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        fprintf(stderr, "bench_layers: cannot re-run: %s\n", strerror(errno));
        return 1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) fprintf(stderr, "bench_layers: cannot re-execute itself\n");
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static int blas_vars_set(void) {
    for (size_t i = 0; i < NUM_BLAS_VARS; i++)
        if (getenv(BLAS_VARS[i])) return 1;
    return 0;
}

int main(int argc, char **argv) {
    static results r;
    int child = getenv(CHILD_VAR) != NULL;
    int failed = run_table(argc, argv, child, &r);
    if (child) return failed;
    if (!blas_vars_set()) {
        printf("\nOPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are already unset: the table above is that setting; no "
               "second run\n");
        return failed;
    }
    return rerun_without_blas_vars(argv) || failed ? 1 : 0;
}
