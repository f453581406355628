/* bench_sparse: times CSR -> CSC conversion (sbx_sparse_convert) and CSR x dense
 * (sbx_sparse_dot_dense) on float64 matrices with 1e6 stored entries and a 64-column dense operand,
 * with 1 and 2 threads, against scipy.sparse on the same data in the same run.
 *
 * The data comes from a fixed-seed splitmix64 generator, so every run times the same matrices. The
 * inputs and sparsebox's results go to .npy files in a temporary folder; bench/peer_scipy.py times
 * scipy on the inputs and checks sparsebox's results against its own. A failed check makes the exit
 * status non-zero. When python3, numpy or scipy is missing, the scipy column is skipped.
 *
 * Usage: bench_sparse [REPEATS [BENCH_DIR]]
 *   REPEATS    timed runs per figure, after one warm-up; the median is reported (default 7)
 *   BENCH_DIR  folder holding peer_scipy.py (default: $SBX_BENCH_DIR, else this file's folder) */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sparsebox/core.h>
#include <sparsebox/io.h>
#include <sparsebox/sparse.h>

#define BENCH_NAME "bench_sparse"
#include "bench_util.h"

#define DENSE_COLS 64
#define DEFAULT_REPEATS 7
#define MAX_REPEATS 1000
#define GOAL_RATIO 0.5
#define PATH_LEN 4096
#define LINE_LEN 1024

/* The matrices timed: nrows x ncols with per_row entries in every row. */
typedef struct shape_spec {
    int64_t nrows, ncols, per_row;
    uint64_t seed;
} shape_spec;

static const shape_spec SHAPES[] = {
    {100000, 100000, 10, 1},
    {10000, 10000, 100, 2},
};
#define NUM_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

/* The two operations, timed the same way. */
enum op { OP_CONVERT = 0, OP_DOT = 1, NUM_OPS = 2 };
static const char *const OP_NAMES[NUM_OPS] = {"CSR -> CSC", "CSR x dense(64)"};

/* Thread counts of the two sparsebox columns. */
static const int THREADS[2] = {1, 2};

/* What the scipy peer is and whether it can run. */
typedef struct peer_info {
    int available;
    char python[PATH_LEN];     /* interpreter that has numpy and scipy */
    char script[PATH_LEN];     /* path of peer_scipy.py */
    char python_version[64], numpy_version[64], scipy_version[64];
    char why[LINE_LEN];        /* reason it was skipped, when !available */
} peer_info;

/* What one peer run reported. */
typedef struct peer_result {
    int ran;                   /* 1 when both times and the check line came back */
    double seconds[NUM_OPS];   /* scipy's median times; -1 when missing */
    int check_ok;
    char check[LINE_LEN];      /* the check line's text after "check " */
    char index_dtype[32];      /* scipy's index dtype for the matrix */
} peer_result;

/* ---- errors ---- */

static int report(const char *what, sbx_status st) {
    fprintf(stderr, "bench_sparse: %s failed: %s: %s\n", what, sbx_status_str(st), sbx_last_error());
    return 1;
}

/* ---- deterministic data ---- */

/* Uniform in [-1, 1): the top 53 bits make a double in [0, 1). */
static double uniform_pm1(uint64_t *state) {
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
}

/* Uniform in [0, n); the modulo bias is below n / 2^64, negligible for these sizes. */
static int64_t uniform_below(uint64_t *state, int64_t n) {
    return (int64_t)(splitmix64(state) % (uint64_t)n);
}

/* Fills cols[0 .. k-1] with k distinct random columns in [0, ncols), in increasing order: each draw
 * is inserted at its sorted place, and a draw already present is dropped and drawn again. */
static void random_row(uint64_t *state, int64_t ncols, int64_t k, int64_t *cols) {
    int64_t have = 0;
    while (have < k) {
        int64_t c = uniform_below(state, ncols), pos = have;
        while (pos > 0 && cols[pos - 1] > c) pos--;
        if (pos > 0 && cols[pos - 1] == c) continue;
        memmove(cols + pos + 1, cols + pos, (size_t)(have - pos) * sizeof *cols);
        cols[pos] = c;
        have++;
    }
}

static sbx_status make_csr(const shape_spec *s, sbx_sparse **out) {
    sbx_sparse *m;
    uint64_t state = s->seed;
    sbx_status st = sbx_sparse_create(SBX_CSR, SBX_FLOAT64, s->nrows, s->ncols, s->nrows * s->per_row, &m);
    if (st != SBX_OK) return st;
    double *v = m->data;
    for (int64_t i = 0; i < s->nrows; i++) {
        int64_t start = i * s->per_row;
        random_row(&state, s->ncols, s->per_row, m->indices + start);
        for (int64_t p = start; p < start + s->per_row; p++) v[p] = uniform_pm1(&state);
        m->indptr[i + 1] = start + s->per_row;
    }
    st = sbx_sparse_validate(m);
    if (st != SBX_OK) {
        sbx_sparse_free(m);
        return st;
    }
    *out = m;
    return SBX_OK;
}

static sbx_status make_dense(int64_t nrows, int64_t ncols, uint64_t seed, sbx_array **out) {
    sbx_array *b;
    int64_t shape[2] = {nrows, ncols};
    uint64_t state = seed;
    sbx_status st = sbx_array_create(SBX_FLOAT64, 2, shape, &b);
    if (st != SBX_OK) return st;
    double *v = b->data;
    for (int64_t i = 0; i < nrows * ncols; i++) v[i] = uniform_pm1(&state);
    *out = b;
    return SBX_OK;
}

/* ---- timing ---- */

/* Runs op once and measures only the call: the result is freed after the clock stops, as the
 * Python peer drops its result after reading perf_counter. */
static sbx_status run_once(enum op op, const sbx_sparse *a, const sbx_array *b, double *seconds) {
    sbx_sparse *csc = NULL;
    sbx_array *product = NULL;
    double t0 = now_seconds();
    sbx_status st = op == OP_CONVERT ? sbx_sparse_convert(a, SBX_CSC, &csc) : sbx_sparse_dot_dense(a, b, &product);
    *seconds = now_seconds() - t0;
    sbx_sparse_free(csc);
    sbx_array_free(product);
    return st;
}

/* One warm-up, then the median of `repeats` timed runs, in milliseconds. */
static sbx_status time_op(enum op op, const sbx_sparse *a, const sbx_array *b, int repeats, double *ms) {
    double runs[MAX_REPEATS], t;
    sbx_status st = run_once(op, a, b, &t);
    for (int r = 0; r < repeats && st == SBX_OK; r++) st = run_once(op, a, b, &runs[r]);
    if (st != SBX_OK) {
        report(OP_NAMES[op], st);
        return st;
    }
    *ms = median(runs, repeats) * 1e3;
    return SBX_OK;
}

/* ---- files in the temporary folder ---- */

/* Every file name written into the temporary folder, so that cleanup can remove them. */
static const char *const FILE_NAMES[] = {
    "shape.npy",           "A_indptr.npy",         "A_indices.npy",     "A_data.npy",       "B.npy",
    "ours_csc_indptr.npy", "ours_csc_indices.npy", "ours_csc_data.npy", "ours_product.npy",
};
#define NUM_FILES (sizeof FILE_NAMES / sizeof FILE_NAMES[0])

static int write_npy(const char *dir, const char *name, const sbx_array *a) {
    char path[PATH_LEN];
    if (join_path(path, sizeof path, dir, name)) return 1;
    sbx_status st = sbx_npy_write(path, a);
    return st == SBX_OK ? 0 : report(path, st);
}

/* Writes n int64 values as a 1-d .npy file, through an sbx_array that borrows them. */
static int write_i64(const char *dir, const char *name, int64_t *values, int64_t n) {
    sbx_array a = {.dtype = SBX_INT64, .ndim = 1, .shape = {n}, .data = values};
    return write_npy(dir, name, &a);
}

static int write_f64(const char *dir, const char *name, double *values, int64_t n) {
    sbx_array a = {.dtype = SBX_FLOAT64, .ndim = 1, .shape = {n}, .data = values};
    return write_npy(dir, name, &a);
}

/* The inputs scipy is timed on: the CSR arrays, its shape and the dense operand. */
static int write_inputs(const char *dir, const sbx_sparse *a, const sbx_array *b) {
    int64_t shape[2] = {a->nrows, a->ncols};
    return write_i64(dir, "shape.npy", shape, 2) || write_i64(dir, "A_indptr.npy", a->indptr, a->nrows + 1) ||
           write_i64(dir, "A_indices.npy", a->indices, a->nnz) || write_f64(dir, "A_data.npy", a->data, a->nnz) ||
           write_npy(dir, "B.npy", b);
}

/* sparsebox's results, which the peer checks against scipy's. */
static int write_results(const char *dir, const sbx_sparse *csc, const sbx_array *product) {
    return write_i64(dir, "ours_csc_indptr.npy", csc->indptr, csc->ncols + 1) ||
           write_i64(dir, "ours_csc_indices.npy", csc->indices, csc->nnz) ||
           write_f64(dir, "ours_csc_data.npy", csc->data, csc->nnz) || write_npy(dir, "ours_product.npy", product);
}

static void remove_temp_dir(const char *dir) {
    char path[PATH_LEN];
    for (size_t i = 0; i < NUM_FILES; i++)
        if (!join_path(path, sizeof path, dir, FILE_NAMES[i]) && unlink(path) != 0 && errno != ENOENT)
            fprintf(stderr, "bench_sparse: cannot remove %s: %s\n", path, strerror(errno));
    if (rmdir(dir) != 0) fprintf(stderr, "bench_sparse: cannot remove %s: %s\n", dir, strerror(errno));
}

/* ---- results that must not depend on the thread count ---- */

/* Computes the CSC form and the product with the current thread count. */
static sbx_status compute_results(const sbx_sparse *a, const sbx_array *b, sbx_sparse **csc, sbx_array **product) {
    sbx_status st = sbx_sparse_convert(a, SBX_CSC, csc);
    if (st != SBX_OK) {
        report("sbx_sparse_convert", st);
        return st;
    }
    st = sbx_sparse_dot_dense(a, b, product);
    if (st != SBX_OK) {
        sbx_sparse_free(*csc);
        report("sbx_sparse_dot_dense", st);
    }
    return st;
}

static int same_sparse(const sbx_sparse *x, const sbx_sparse *y) {
    int64_t major = sbx_sparse_major(x);
    return x->nnz == y->nnz && sbx_sparse_major(y) == major &&
           !memcmp(x->indptr, y->indptr, (size_t)(major + 1) * sizeof(int64_t)) &&
           !memcmp(x->indices, y->indices, (size_t)x->nnz * sizeof(int64_t)) &&
           !memcmp(x->data, y->data, (size_t)x->nnz * sizeof(double));
}

static int same_array(const sbx_array *x, const sbx_array *y) {
    int64_t n = sbx_array_numel(x);
    return n == sbx_array_numel(y) && !memcmp(x->data, y->data, (size_t)n * sizeof(double));
}

/* Writes the 1-thread results for the peer to check and compares them bit for bit with the 2-thread
 * ones (the library promises results independent of the thread count). *same is set to 1 or 0. */
static int save_and_compare(const char *dir, const sbx_sparse *a, const sbx_array *b, int *same) {
    sbx_sparse *csc1, *csc2;
    sbx_array *prod1, *prod2;
    sbx_set_num_threads(THREADS[0]);
    if (compute_results(a, b, &csc1, &prod1) != SBX_OK) return 1;
    sbx_set_num_threads(THREADS[1]);
    if (compute_results(a, b, &csc2, &prod2) != SBX_OK) {
        sbx_sparse_free(csc1);
        sbx_array_free(prod1);
        return 1;
    }
    sbx_set_num_threads(0);
    *same = same_sparse(csc1, csc2) && same_array(prod1, prod2);
    int failed = write_results(dir, csc1, prod1);
    sbx_sparse_free(csc1);
    sbx_sparse_free(csc2);
    sbx_array_free(prod1);
    sbx_array_free(prod2);
    return failed;
}

/* ---- the scipy peer ---- */

/* Appends s to the string in buf; 1 when it does not fit. */
static int append(char *buf, size_t len, const char *s) {
    size_t n = strlen(buf), k = strlen(s);
    if (n + k + 1 > len) return 1;
    memcpy(buf + n, s, k + 1);
    return 0;
}

/* Appends s single-quoted for sh: '...', with each ' inside written as '\''. */
static int append_quoted(char *buf, size_t len, const char *s) {
    size_t n = strlen(buf);
    if (n + 4 * strlen(s) + 3 > len) return 1; /* the worst case: every character a quote */
    buf[n++] = '\'';
    for (; *s; s++) {
        if (*s == '\'') {
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else {
            buf[n++] = *s;
        }
    }
    buf[n++] = '\'';
    buf[n] = '\0';
    return 0;
}

/* The shell command: PYTHON SCRIPT ARG1 [ARG2] 2>&1 (stderr too, so errors reach the report). */
static int peer_command(char *cmd, size_t len, const char *python, const char *script, const char *arg1,
                        const char *arg2) {
    cmd[0] = '\0';
    int bad = append_quoted(cmd, len, python) || append(cmd, len, " ") || append_quoted(cmd, len, script) ||
              append(cmd, len, " ") || append_quoted(cmd, len, arg1);
    if (!bad && arg2) bad = append(cmd, len, " ") || append_quoted(cmd, len, arg2);
    return bad || append(cmd, len, " 2>&1");
}

/* Handles one "key value" line of the peer's output; returns 0 for a line it does not know. */
typedef int (*line_handler)(void *ctx, const char *key, const char *value);

/* Runs cmd, hands each output line to handle, and returns the exit status (-1 if it could not run,
 * or was killed). Lines not handled are echoed with a "peer: " prefix; the last of them is kept in
 * last_other, to explain a failure. */
static int run_peer(const char *cmd, line_handler handle, void *ctx, char *last_other, size_t other_len) {
    char line[LINE_LEN];
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(last_other, other_len, "popen failed: %s", strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *space = strchr(line, ' ');
        const char *value = space ? space + 1 : "";
        if (space) *space = '\0';
        if (handle(ctx, line, value)) continue;
        if (space) *space = ' ';
        printf("peer: %s\n", line);
        snprintf(last_other, other_len, "%s", line);
    }
    int status = pclose(p);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int copy_value(char *dst, size_t len, const char *value) {
    snprintf(dst, len, "%s", value);
    return 1;
}

/* Lines of `peer_scipy.py --versions`. */
static int version_line(void *ctx, const char *key, const char *value) {
    peer_info *info = ctx;
    if (!strcmp(key, "python_version")) return copy_value(info->python_version, sizeof info->python_version, value);
    if (!strcmp(key, "numpy_version")) return copy_value(info->numpy_version, sizeof info->numpy_version, value);
    if (!strcmp(key, "scipy_version")) return copy_value(info->scipy_version, sizeof info->scipy_version, value);
    if (!strcmp(key, "skip")) return copy_value(info->why, sizeof info->why, value);
    return 0;
}

/* Tries one interpreter with `--versions`; 1 when it has numpy and scipy. */
static int probe_python(peer_info *info, const char *python) {
    char cmd[3 * PATH_LEN], other[LINE_LEN] = "";
    info->why[0] = info->numpy_version[0] = info->scipy_version[0] = '\0';
    if (peer_command(cmd, sizeof cmd, python, info->script, "--versions", NULL)) {
        snprintf(info->why, sizeof info->why, "command too long");
        return 0;
    }
    int status = run_peer(cmd, version_line, info, other, sizeof other);
    if (status == 0 && info->numpy_version[0] && info->scipy_version[0]) {
        snprintf(info->python, sizeof info->python, "%s", python);
        return 1;
    }
    if (!info->why[0]) {
        if (status == 127)
            snprintf(info->why, sizeof info->why, "%.200s not found", python);
        else
            snprintf(info->why, sizeof info->why, "%.200s exited with status %d: %.700s", python, status, other);
    }
    return 0;
}

/* Finds peer_scipy.py and an interpreter for it: /usr/bin/python3 (Debian's, with numpy and scipy)
 * first, then whatever python3 is on PATH. */
static void find_peer(int argc, char **argv, peer_info *info) {
    char dir[PATH_LEN], why_first[LINE_LEN] = "";
    memset(info, 0, sizeof *info);
    peer_folder(argc > 2 ? argv[2] : NULL, dir, sizeof dir);
    if (join_path(info->script, sizeof info->script, dir, "peer_scipy.py")) return;
    if (access(info->script, R_OK) != 0) {
        snprintf(info->why, sizeof info->why, "cannot read %.800s: %s", info->script, strerror(errno));
        return;
    }
    if (access("/usr/bin/python3", X_OK) == 0) {
        if (probe_python(info, "/usr/bin/python3")) {
            info->available = 1;
            return;
        }
        snprintf(why_first, sizeof why_first, "%s", info->why);
    }
    info->available = probe_python(info, "python3");
    if (!info->available && why_first[0]) {
        char both[LINE_LEN];
        snprintf(both, sizeof both, "/usr/bin/python3: %.400s; python3: %.400s", why_first, info->why);
        snprintf(info->why, sizeof info->why, "%s", both);
    }
}

/* Lines of a timing run. */
static int result_line(void *ctx, const char *key, const char *value) {
    peer_result *r = ctx;
    if (!strcmp(key, "tocsc_seconds")) return sscanf(value, "%lf", &r->seconds[OP_CONVERT]) == 1;
    if (!strcmp(key, "matmul_seconds")) return sscanf(value, "%lf", &r->seconds[OP_DOT]) == 1;
    if (!strcmp(key, "index_dtype")) return copy_value(r->index_dtype, sizeof r->index_dtype, value);
    if (!strcmp(key, "check")) {
        r->check_ok = !strcmp(value, "ok");
        return copy_value(r->check, sizeof r->check, value);
    }
    /* The version lines are already known from the probe. */
    return !strcmp(key, "python_version") || !strcmp(key, "numpy_version") || !strcmp(key, "scipy_version");
}

/* Runs the peer on the files in dir. Returns 0 when it reported both times and a check line. */
static int run_scipy(const peer_info *info, const char *dir, int repeats, peer_result *r) {
    char cmd[3 * PATH_LEN], reps[16], other[LINE_LEN] = "";
    memset(r, 0, sizeof *r);
    r->seconds[OP_CONVERT] = r->seconds[OP_DOT] = -1;
    snprintf(reps, sizeof reps, "%d", repeats);
    if (peer_command(cmd, sizeof cmd, info->python, info->script, dir, reps)) {
        fprintf(stderr, "bench_sparse: peer command too long\n");
        return 1;
    }
    int status = run_peer(cmd, result_line, r, other, sizeof other);
    r->ran = status == 0 && r->seconds[OP_CONVERT] >= 0 && r->seconds[OP_DOT] >= 0 && r->check[0];
    if (!r->ran) fprintf(stderr, "bench_sparse: scipy peer failed (exit status %d): %s\n", status, other);
    return !r->ran;
}

/* ---- output ---- */

static void print_header(const peer_info *info, int repeats) {
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("bench_sparse: float64, dense operand with %d columns, median of %d runs after 1 warm-up\n",
           DENSE_COLS, repeats);
    if (info->available)
        printf("peer: scipy %s, numpy %s, Python %s (%s), single-threaded\n", info->scipy_version,
               info->numpy_version, info->python_version, info->python);
    else
        printf("peer: scipy skipped: %s\n", info->why);
    printf("OPENBLAS_CORETYPE=%s (irrelevant to these sparse ops; printed for the record)\n",
           coretype ? coretype : "(unset)");
}

static void print_table(const shape_spec *s, double ms[2][NUM_OPS], const int used[2], const peer_result *r) {
    printf("\n%lld x %lld, %lld entries per row, nnz %lld; dense operand %lld x %d\n", (long long)s->nrows,
           (long long)s->ncols, (long long)s->per_row, (long long)(s->nrows * s->per_row), (long long)s->ncols,
           DENSE_COLS);
    printf("  threads used (sbx_get_num_threads()): %d and %d\n", used[0], used[1]);
    printf("  %-16s %14s %14s %11s %16s\n", "op", "sbx 1t (ms)", "sbx 2t (ms)", "scipy (ms)", "ours(1t)/scipy");
    for (int op = 0; op < NUM_OPS; op++) {
        printf("  %-16s %14.3f %14.3f", OP_NAMES[op], ms[0][op], ms[1][op]);
        if (r && r->ran) {
            double scipy_ms = r->seconds[op] * 1e3, ratio = ms[0][op] / scipy_ms;
            printf(" %11.3f %11.2fx %s\n", scipy_ms, ratio, ratio <= GOAL_RATIO ? "(goal met)" : "(goal missed)");
        } else {
            printf(" %11s %16s\n", "-", "-");
        }
    }
    if (r && r->ran) printf("  scipy index dtype: %s; check: %s\n", r->index_dtype, r->check);
}

/* ---- one shape ---- */

/* Times sparsebox with each thread count; used[] gets sbx_get_num_threads() for each. */
static int time_sparsebox(const sbx_sparse *a, const sbx_array *b, int repeats, double ms[2][NUM_OPS], int used[2]) {
    for (int t = 0; t < 2; t++) {
        sbx_set_num_threads(THREADS[t]);
        used[t] = sbx_get_num_threads();
        for (int op = 0; op < NUM_OPS; op++)
            if (time_op((enum op)op, a, b, repeats, &ms[t][op]) != SBX_OK) return 1;
    }
    sbx_set_num_threads(0);
    return 0;
}

/* Benchmarks one shape; *check_failed is set when a result did not match. Returns 1 on an error. */
static int bench_shape(const shape_spec *s, const peer_info *info, const char *dir, int repeats, int *check_failed) {
    sbx_sparse *a = NULL;
    sbx_array *b = NULL;
    double ms[2][NUM_OPS];
    int used[2], same = 0, failed = 1;
    peer_result r;
    memset(&r, 0, sizeof r);
    sbx_status st = make_csr(s, &a);
    if (st != SBX_OK) return report("make_csr", st);
    st = make_dense(s->ncols, DENSE_COLS, s->seed + 1000, &b);
    if (st != SBX_OK) {
        sbx_sparse_free(a);
        return report("make_dense", st);
    }
    if (time_sparsebox(a, b, repeats, ms, used) || save_and_compare(dir, a, b, &same)) goto done;
    if (info->available && (write_inputs(dir, a, b) || run_scipy(info, dir, repeats, &r))) goto done;
    print_table(s, ms, used, info->available ? &r : NULL);
    printf("  results with %d threads identical to %d thread: %s\n", THREADS[1], THREADS[0], same ? "yes" : "NO");
    *check_failed |= !same || (info->available && !r.check_ok);
    failed = 0;
done:
    sbx_sparse_free(a);
    sbx_array_free(b);
    return failed;
}

static int parse_repeats(int argc, char **argv, int *repeats) {
    char *end;
    *repeats = DEFAULT_REPEATS;
    if (argc < 2) return 0;
    long v = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || v < 1 || v > MAX_REPEATS) {
        fprintf(stderr, "usage: bench_sparse [REPEATS (1..%d) [BENCH_DIR]]; got REPEATS '%s'\n", MAX_REPEATS,
                argv[1]);
        return 1;
    }
    *repeats = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    int repeats, check_failed = 0, error = 0;
    char dir[] = "/tmp/bench_sparse.XXXXXX";
    peer_info info;
    if (parse_repeats(argc, argv, &repeats)) return 2;
    if (!mkdtemp(dir)) {
        fprintf(stderr, "bench_sparse: mkdtemp failed: %s\n", strerror(errno));
        return 1;
    }
    find_peer(argc, argv, &info);
    print_header(&info, repeats);
    for (size_t i = 0; i < NUM_SHAPES && !error; i++) {
        error = bench_shape(&SHAPES[i], &info, dir, repeats, &check_failed);
        fflush(stdout);
    }
    remove_temp_dir(dir);
    if (check_failed) printf("\nCHECK FAILED: sparsebox's results differ (see above)\n");
    return error || check_failed ? 1 : 0;
}
