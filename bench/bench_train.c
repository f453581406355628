/* bench_train: one training epoch of the demo's network on the real Fashion-MNIST, with sparsebox's Op
 * graph and with PyTorch, in the same run:
 *     conv(1->16, 5x5, valid, bias) -> ReLU -> max_pool 2x2 -> conv(16->32, 5x5, valid, bias) -> ReLU
 *     -> max_pool 2x2 -> dropout 0.25 -> dense(512->10) -> softmax cross-entropy,
 * float32, batch 64, Adam (lr 2e-3, betas 0.9 and 0.999, eps 1e-8), the 60,000 training images in file
 * order with the last partial batch dropped (937 steps), then the test pass over the 10,000 test images
 * (no dropout, batches of 1000) and its accuracy.
 *
 * Ours: one graph. The images input is float32[?, 784]; the training path drops features with the
 * library's own Binomial op inside the graph,
 *     Mul(features, Scale(1/keep)(DenseFromSparse(Binomial{csr, float32}(1, keep, [64, 512])))),
 * n an int64 0-d constant, p a float32 0-d constant, the shape an int64 constant; sbx_adam builds the
 * updates, and sbx_function_compile makes the training step (images, labels) -> loss. The test path
 * (the same features, no dropout) is a second compiled function, images -> logits.
 * Torch (peer_torch_train.py): torch.nn.functional conv2d / relu / max_pool2d / dropout / linear /
 * cross_entropy and torch.optim.Adam, the test pass under torch.no_grad() with dropout off.
 *
 * The same start: the initial parameters are drawn here (torch's own default rule: weights and biases
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in))) and handed to the peer as .npy files; the peer reads the same gz
 * files with numpy, in the same order, pixels / 255 in float32. Each timed epoch starts again from
 * those parameters with a zero optimiser state (ours: the shared variables reset and the function's
 * seed rewound, so every epoch of ours draws the same masks); the dropout masks of the two sides
 * differ (each draws from its own generator).
 *
 * Timing: the data is in memory beforehand; first WARMUP_STEPS untimed steps of each side at each
 * thread count (plans, caches, thread teams), then for each repeat: ours 1 thread, torch 1 thread,
 * ours 2 threads, torch 2 threads, each a full epoch timed on the wall clock followed by the timed
 * test pass. The peer is one process started once, idle (blocked on a pipe) while ours runs and the
 * other way round, so the two never share the cores. Threads: sbx_set_num_threads(n) and
 * openblas_set_num_threads(n) | torch.set_num_threads(n) and openblas_set_num_threads(n) on every
 * OpenBLAS loaded in the peer. A figure is the median over the repeats; "cpu" is process CPU time over
 * wall time during the epoch (the cores actually kept busy; '!' when below 0.7 x threads: other work
 * had the cores).
 *
 * Goal: ours at most GOAL (0.8) x torch's seconds per epoch at 1 and at 2 threads.
 * Checks (exit status 1 when one fails): every epoch of ours ends with the same parameter bytes (any
 * thread count, any repeat: the library's determinism rule); in a full run, both sides' test accuracy
 * at least ACC_FLOOR and within ACC_GAP of each other. A missed goal does not change the exit status.
 *
 * OpenBLAS reads OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE when it is loaded (ANCHORS.md's trap: with
 * OPENBLAS_CORETYPE=Haswell it runs AVX2 kernels at about half speed); both are printed as inherited,
 * with the kernel each side's OpenBLAS chose. Our convolutions multiply with sgemm, so run once more
 * under `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` to see the other setting.
 *
 * Usage: bench_train [--quick] [--repeat N] [--data DIR] [BENCH_DIR]
 *   --quick     QUICK_IMAGES training and test images (31 steps): a smoke run, no accuracy check
 *   --repeat N  N rounds of the four epochs (default 1; an epoch takes about 5-10 s)
 *   --data DIR  the folder of the gzipped IDX files (default: Debian's dataset-fashion-mnist)
 *   BENCH_DIR   folder holding peer_torch_train.py (default: $SBX_BENCH_DIR, else this file's folder)
 * The peer's interpreter is $SBX_BENCH_PYTHON, else /usr/bin/python3. Without torch (or numpy) the
 * torch columns are skipped with the reason, and ours still runs. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include <sparsebox/conv.h>
#include <sparsebox/core.h>
#include <sparsebox/io.h>
#include <sparsebox/op.h>

#define BENCH_NAME "bench_train"
#include "bench_util.h"

#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"
#define DATA_PACKAGE "dataset-fashion-mnist"
#define DEFAULT_PYTHON "/usr/bin/python3"
#define PEER_SCRIPT "peer_torch_train.py"

/* The network. */
#define SIDE 28
#define PIXELS (SIDE * SIDE)
#define CLASSES 10
#define KSIZE 5
#define MAPS1 16
#define MAPS2 32
#define FEATURES 512 /* 32 maps of 4 x 4 after the second pooling */
#define BATCH 64
#define TEST_BATCH 1000
#define KEEP 0.75 /* dropout 0.25 */
#define LEARNING_RATE 2e-3
#define BETA1 0.9
#define BETA2 0.999
#define ADAM_EPS 1e-8
#define SEED 20261204u /* the initial parameters and the function's draws */

/* The run. */
#define QUICK_IMAGES 2000
#define WARMUP_STEPS 5
#define LOSS_TAIL 100 /* the training loss reported: the mean over the epoch's last LOSS_TAIL steps */
#define MAX_REPEAT 50
#define NUM_THREADS 2
#define BUSY_SHARE 0.7
#define GOAL 0.8
#define ACC_FLOOR 0.80
#define ACC_GAP 0.03
#define LINE_LEN 1024
#define PATH_LEN 4096
#define MAX_NOTES 64

static const int THREADS[NUM_THREADS] = {1, 2};
static const char *const BLAS_VARS[] = {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"};
#define NUM_BLAS_VARS (sizeof BLAS_VARS / sizeof BLAS_VARS[0])

enum { P_K1, P_B1, P_K2, P_B2, P_W, P_WB, NPARAMS };
static const char *const PARAM_NAMES[NPARAMS] = {"k1", "b1", "k2", "b2", "w", "wb"};

/* Returns the status of expr from the calling function unless it is SBX_OK. */
#define TRY(expr)                                                                                                     \
    do {                                                                                                               \
        const sbx_status try_status_ = (expr);                                                                         \
        if (try_status_ != SBX_OK) return try_status_;                                                                 \
    } while (0)

static int report(const char *what, sbx_status st) {
    fprintf(stderr, "%s: %s failed: %s: %s\n", BENCH_NAME, what, sbx_status_str(st), sbx_last_error());
    return 1;
}

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v ? v : fallback;
}

static double clock_seconds(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_now(void) { return clock_seconds(CLOCK_PROCESS_CPUTIME_ID); }

/* ---- the data: gzipped IDX files (big-endian header: magic 0x000008NN, NN extents of 32 bits) ---- */

typedef struct dataset {
    int64_t count;
    float *images;   /* count x PIXELS, pixel / 255 */
    int64_t *labels; /* count, in 0 .. CLASSES - 1 */
} dataset;

static void dataset_free(dataset *d) {
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

/* Reads exactly n bytes; 0, or 1 with a message. */
static int gz_read_all(gzFile f, const char *path, void *buf, size_t n) {
    unsigned char *p = buf;
    while (n > 0) {
        const unsigned chunk = n > (1u << 30) ? 1u << 30 : (unsigned)n;
        const int got = gzread(f, p, chunk);
        if (got <= 0) {
            int zerr = 0;
            const char *msg = got < 0 ? gzerror(f, &zerr) : "the file ends early";
            fprintf(stderr, "%s: %s: %s\n", BENCH_NAME, path, msg);
            return 1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

/* One IDX file of unsigned bytes with ndim dimensions: dims[] and the malloc'd bytes. */
static int idx_read(const char *path, int ndim, int64_t *dims, uint8_t **bytes) {
    *bytes = NULL;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open %s: %s (Debian: apt-get install %s)\n", BENCH_NAME, path,
                errno ? strerror(errno) : "gzopen failed", DATA_PACKAGE);
        return 1;
    }
    unsigned char head[4 + 4 * 3];
    int bad = gz_read_all(f, path, head, (size_t)(4 + 4 * ndim));
    const uint32_t magic = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
    if (!bad && magic != (0x800u | (uint32_t)ndim)) {
        fprintf(stderr, "%s: %s: magic number 0x%08x, expected 0x%08x (unsigned bytes, %d dimensions)\n",
                BENCH_NAME, path, magic, 0x800u | (uint32_t)ndim, ndim);
        bad = 1;
    }
    int64_t total = 1;
    for (int d = 0; !bad && d < ndim; d++) {
        const unsigned char *e = head + 4 + 4 * d;
        dims[d] = (int64_t)((uint32_t)e[0] << 24 | (uint32_t)e[1] << 16 | (uint32_t)e[2] << 8 | e[3]);
        total *= dims[d];
    }
    if (!bad && !(*bytes = malloc((size_t)(total > 0 ? total : 1)))) {
        fprintf(stderr, "%s: %s: out of memory for %lld bytes\n", BENCH_NAME, path, (long long)total);
        bad = 1;
    }
    if (!bad) bad = gz_read_all(f, path, *bytes, (size_t)total);
    unsigned char extra;
    if (!bad && gzread(f, &extra, 1) != 0) {
        fprintf(stderr, "%s: %s: bytes past the extents of its header\n", BENCH_NAME, path);
        bad = 1;
    }
    gzclose(f);
    if (bad) {
        free(*bytes);
        *bytes = NULL;
    }
    return bad;
}

/* DIR/PREFIX-images-idx3-ubyte.gz and DIR/PREFIX-labels-idx1-ubyte.gz; the first `limit` images (all
 * when limit is 0 or more than the file holds). */
static int dataset_load(const char *dir, const char *prefix, int64_t limit, dataset *d) {
    char name[64], ipath[PATH_LEN], lpath[PATH_LEN];
    int64_t idims[3], ldims[1];
    uint8_t *pixels = NULL, *labels = NULL;
    memset(d, 0, sizeof *d);
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", prefix);
    if (join_path(ipath, sizeof ipath, dir, name)) return 1;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", prefix);
    if (join_path(lpath, sizeof lpath, dir, name)) return 1;
    int bad = idx_read(ipath, 3, idims, &pixels) || idx_read(lpath, 1, ldims, &labels);
    if (!bad && (idims[1] != SIDE || idims[2] != SIDE)) {
        fprintf(stderr, "%s: %s: images of %lld x %lld, expected %d x %d\n", BENCH_NAME, ipath,
                (long long)idims[1], (long long)idims[2], SIDE, SIDE);
        bad = 1;
    }
    if (!bad && idims[0] != ldims[0]) {
        fprintf(stderr, "%s: %lld images in %s but %lld labels in %s\n", BENCH_NAME, (long long)idims[0], ipath,
                (long long)ldims[0], lpath);
        bad = 1;
    }
    if (!bad) {
        d->count = limit > 0 && limit < idims[0] ? limit : idims[0];
        d->images = malloc((size_t)(d->count > 0 ? d->count : 1) * PIXELS * sizeof(float));
        d->labels = malloc((size_t)(d->count > 0 ? d->count : 1) * sizeof(int64_t));
        if (!d->images || !d->labels) {
            fprintf(stderr, "%s: out of memory for %lld images\n", BENCH_NAME, (long long)d->count);
            bad = 1;
        }
    }
    for (int64_t i = 0; !bad && i < d->count * PIXELS; i++) d->images[i] = (float)pixels[i] / 255.0f;
    for (int64_t i = 0; !bad && i < d->count; i++) {
        if (labels[i] >= CLASSES) {
            fprintf(stderr, "%s: %s: label %d at %lld, expected 0 .. %d\n", BENCH_NAME, lpath, labels[i],
                    (long long)i, CLASSES - 1);
            bad = 1;
        }
        d->labels[i] = labels[i];
    }
    free(pixels);
    free(labels);
    if (bad) dataset_free(d);
    return bad;
}

/* ---- ours: the graph, its two functions, the reset between epochs ---- */

typedef struct trainer {
    sbx_conv_shape conv1, pool1, conv2, pool2;
    sbx_graph *g;
    sbx_var *x, *y, *lr, *params[NPARAMS];
    sbx_var *loss, *logits;
    sbx_update updates[3 * NPARAMS + 1];
    int nupd;
    sbx_function *step, *eval;
    sbx_array *init[NPARAMS];
} trainer;

static void trainer_free(trainer *t) {
    sbx_function_free(t->step);
    sbx_function_free(t->eval);
    sbx_graph_free(t->g);
    for (int p = 0; p < NPARAMS; p++) sbx_array_free(t->init[p]);
    memset(t, 0, sizeof *t);
}

/* torch's default for Conv2d and Linear (kaiming_uniform with a = sqrt(5) for the weights, and the
 * biases alike): U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static sbx_status init_params(trainer *t) {
    const int64_t shapes[NPARAMS][2] = {{MAPS1, KSIZE * KSIZE}, {MAPS1, 0}, {MAPS2, MAPS1 * KSIZE * KSIZE},
                                        {MAPS2, 0},             {FEATURES, CLASSES}, {CLASSES, 0}};
    const double fan_in[NPARAMS] = {KSIZE * KSIZE, KSIZE * KSIZE, MAPS1 * KSIZE * KSIZE, MAPS1 * KSIZE * KSIZE,
                                    FEATURES, FEATURES};
    uint64_t rng = SEED;
    sbx_status st = SBX_OK;
    for (int p = 0; st == SBX_OK && p < NPARAMS; p++) {
        st = sbx_array_create(SBX_FLOAT32, shapes[p][1] ? 2 : 1, shapes[p], &t->init[p]);
        if (st != SBX_OK) break;
        const double bound = 1.0 / sqrt(fan_in[p]);
        float *v = t->init[p]->data;
        for (int64_t i = 0; i < sbx_array_numel(t->init[p]); i++)
            v[i] = (float)(bound * (2.0 * (uniform01(&rng)) - 1.0));
    }
    return st;
}

static sbx_status apply(trainer *t, const sbx_op_class *cls, const void *props, int nin, sbx_var *const *in,
                        sbx_var **out) {
    return sbx_apply(t->g, cls, props, nin, in, out);
}

/* The dropout mask's constants: n = 1 (int64 0-d), p = keep (float32 0-d), shape = [BATCH, FEATURES]. */
static sbx_status mask_inputs(trainer *t, sbx_var **n, sbx_var **p, sbx_var **shape) {
    TRY(sbx_graph_scalar(t->g, SBX_INT64, 1, n));
    TRY(sbx_graph_scalar(t->g, SBX_FLOAT32, KEEP, p));
    const int64_t extent[1] = {2};
    sbx_value v = {NULL, NULL};
    TRY(sbx_array_create(SBX_INT64, 1, extent, &v.dense));
    ((int64_t *)v.dense->data)[0] = BATCH;
    ((int64_t *)v.dense->data)[1] = FEATURES;
    sbx_status st = sbx_graph_constant(t->g, "mask_shape", &v, shape);
    sbx_value_clear(&v); /* empty when the graph took it over */
    return st;
}

/* The network on t->x: the test logits (no dropout) and the training loss (with dropout). */
static sbx_status build_network(trainer *t) {
    sbx_layer_props conv1, conv2; /* zeroed first: the shapes have padding and sbx_apply copies the bytes */
    sbx_pool_props pool1, pool2;
    memset(&conv1, 0, sizeof conv1);
    memset(&conv2, 0, sizeof conv2);
    memset(&pool1, 0, sizeof pool1);
    memset(&pool2, 0, sizeof pool2);
    conv1.shape = t->conv1;
    conv1.nkern = MAPS1;
    conv2.shape = t->conv2;
    conv2.nkern = MAPS2;
    pool1.shape = t->pool1;
    pool2.shape = t->pool2;
    const sbx_dot_props nn = {0, 0};
    const sbx_add_props plus = {1.0, 1.0};
    const sbx_binomial_props bp = {SBX_CSR, SBX_FLOAT32};
    const sbx_scale_props inverse_keep = {1.0 / KEEP};
    sbx_var *const *w = t->params;
    sbx_var *h, *features, *n, *p, *shape, *mask, *dropped, *train_logits;
    TRY(apply(t, &sbx_op_convolve, &conv1, 3, (sbx_var *[]){t->x, w[P_K1], w[P_B1]}, &h));
    TRY(apply(t, &sbx_op_relu, NULL, 1, &h, &h));
    TRY(apply(t, &sbx_op_max_pool, &pool1, 1, &h, &h)); /* output 0; the tap mask is output 1 */
    TRY(apply(t, &sbx_op_convolve, &conv2, 3, (sbx_var *[]){h, w[P_K2], w[P_B2]}, &h));
    TRY(apply(t, &sbx_op_relu, NULL, 1, &h, &h));
    TRY(apply(t, &sbx_op_max_pool, &pool2, 1, &h, &features));
    /* The test path. */
    TRY(apply(t, &sbx_op_dot, &nn, 2, (sbx_var *[]){features, w[P_W]}, &h));
    TRY(apply(t, &sbx_op_add, &plus, 2, (sbx_var *[]){h, w[P_WB]}, &t->logits));
    /* The training path: the mask drawn in the graph at each call. */
    TRY(mask_inputs(t, &n, &p, &shape));
    TRY(apply(t, &sbx_op_binomial, &bp, 3, (sbx_var *[]){n, p, shape}, &mask));
    TRY(apply(t, &sbx_op_dense_from_sparse, NULL, 1, &mask, &mask));
    TRY(apply(t, &sbx_op_scale, &inverse_keep, 1, &mask, &mask));
    TRY(apply(t, &sbx_op_mul, NULL, 2, (sbx_var *[]){features, mask}, &dropped));
    TRY(apply(t, &sbx_op_dot, &nn, 2, (sbx_var *[]){dropped, w[P_W]}, &h));
    TRY(apply(t, &sbx_op_add, &plus, 2, (sbx_var *[]){h, w[P_WB]}, &train_logits));
    return apply(t, &sbx_op_softmax_cross_entropy, NULL, 2, (sbx_var *[]){train_logits, t->y}, &t->loss);
}

static sbx_status build_variables(trainer *t) {
    const int64_t xshape[2] = {-1, PIXELS}, yshape[1] = {-1};
    const sbx_type xt = sbx_type_dense(SBX_FLOAT32, 2, xshape), yt = sbx_type_dense(SBX_INT64, 1, yshape);
    TRY(sbx_graph_input(t->g, "images", &xt, &t->x));
    TRY(sbx_graph_input(t->g, "labels", &yt, &t->y));
    for (int p = 0; p < NPARAMS; p++) {
        sbx_value v = {NULL, NULL};
        sbx_status st = sbx_array_copy(t->init[p], &v.dense);
        if (st == SBX_OK) st = sbx_graph_shared(t->g, PARAM_NAMES[p], &v, &t->params[p]);
        sbx_value_clear(&v);
        TRY(st);
    }
    sbx_value lr = {NULL, NULL};
    TRY(sbx_array_create(SBX_FLOAT32, 0, NULL, &lr.dense));
    ((float *)lr.dense->data)[0] = (float)LEARNING_RATE;
    sbx_status st = sbx_graph_shared(t->g, "lr", &lr, &t->lr);
    sbx_value_clear(&lr);
    return st;
}

static int trainer_make(trainer *t) {
    memset(t, 0, sizeof *t);
    const int64_t side[2] = {SIDE, SIDE}, kernel[2] = {KSIZE, KSIZE}, window[2] = {2, 2};
    sbx_status st = sbx_conv_shape_make(2, 1, side, kernel, NULL, SBX_CONV_VALID, &t->conv1);
    if (st == SBX_OK) st = sbx_conv_shape_make(2, MAPS1, t->conv1.out, window, window, SBX_CONV_VALID, &t->pool1);
    if (st == SBX_OK) st = sbx_conv_shape_make(2, MAPS1, t->pool1.out, kernel, NULL, SBX_CONV_VALID, &t->conv2);
    if (st == SBX_OK) st = sbx_conv_shape_make(2, MAPS2, t->conv2.out, window, window, SBX_CONV_VALID, &t->pool2);
    if (st != SBX_OK) return report("sbx_conv_shape_make", st);
    if (MAPS2 * t->pool2.out_size != FEATURES) {
        fprintf(stderr, "%s: the second pooling gives %lld features, not %d\n", BENCH_NAME,
                (long long)(MAPS2 * t->pool2.out_size), FEATURES);
        return 1;
    }
    const char *what = "drawing the initial parameters";
    st = init_params(t);
    if (st == SBX_OK) st = sbx_graph_create(&t->g), what = "sbx_graph_create";
    if (st == SBX_OK) st = build_variables(t), what = "making the graph's variables";
    if (st == SBX_OK) st = build_network(t), what = "building the network (sbx_apply)";
    if (st == SBX_OK)
        st = sbx_adam(t->g, t->loss, NPARAMS, t->params, t->lr, BETA1, BETA2, ADAM_EPS, t->updates, &t->nupd),
        what = "sbx_adam";
    if (st == SBX_OK)
        st = sbx_function_compile(t->g, 2, (sbx_var *[]){t->x, t->y}, 1, &t->loss, t->nupd, t->updates, SEED,
                                  &t->step),
        what = "sbx_function_compile (the training step)";
    if (st == SBX_OK)
        st = sbx_function_compile(t->g, 1, &t->x, 1, &t->logits, 0, NULL, SEED, &t->eval),
        what = "sbx_function_compile (the test pass)";
    if (st != SBX_OK) {
        trainer_free(t);
        return report(what, st);
    }
    return 0;
}

/* Back to the start: the parameters from init, the optimiser's state (every other shared variable the
 * updates write: the moments and the step count) zero, the draws rewound. */
static void trainer_reset(trainer *t) {
    for (int u = 0; u < t->nupd; u++) {
        sbx_array *a = sbx_var_value(t->updates[u].shared)->dense;
        int p = 0;
        while (p < NPARAMS && t->params[p] != t->updates[u].shared) p++;
        if (p < NPARAMS)
            memcpy(a->data, t->init[p]->data, (size_t)sbx_array_numel(a) * sizeof(float));
        else
            memset(a->data, 0, (size_t)sbx_array_numel(a) * sbx_dtype_size(a->dtype));
    }
    sbx_function_seed(t->step, SEED);
}

/* FNV-1a over the parameters' bytes. */
static uint64_t params_hash(trainer *t) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int p = 0; p < NPARAMS; p++) {
        const sbx_array *a = sbx_var_value(t->params[p])->dense;
        const unsigned char *b = a->data;
        for (size_t i = 0; i < (size_t)sbx_array_numel(a) * sizeof(float); i++) h = (h ^ b[i]) * 0x100000001b3ull;
    }
    return h;
}

/* A borrowed view of rows [first, first + rows) of a row-major float or int64 buffer. */
static sbx_array view(sbx_dtype dtype, void *base, int64_t first, int64_t rows, int64_t cols) {
    sbx_array a;
    memset(&a, 0, sizeof a);
    a.dtype = dtype;
    a.ndim = cols ? 2 : 1;
    a.shape[0] = rows;
    if (cols) a.shape[1] = cols;
    a.data = (char *)base + (size_t)(first * (cols ? cols : 1)) * sbx_dtype_size(dtype);
    return a;
}

/* One epoch, or its first `limit` steps when limit > 0; *loss_tail the mean loss of its last
 * LOSS_TAIL steps (fewer when it has fewer). */
static int train_steps(trainer *t, const dataset *train, int64_t limit, double *loss_tail, int64_t *nsteps) {
    int64_t steps = train->count / BATCH;
    if (limit > 0 && limit < steps) steps = limit;
    double tail = 0;
    for (int64_t s = 0; s < steps; s++) {
        sbx_array x = view(SBX_FLOAT32, train->images, s * BATCH, BATCH, PIXELS);
        sbx_array y = view(SBX_INT64, train->labels, s * BATCH, BATCH, 0);
        const sbx_value in[2] = {{&x, NULL}, {&y, NULL}};
        sbx_value out;
        sbx_status st = sbx_function_call(t->step, in, &out);
        if (st != SBX_OK) return report("sbx_function_call (the training step)", st);
        if (s >= steps - LOSS_TAIL) tail += ((const float *)out.dense->data)[0];
    }
    *loss_tail = tail / (double)(steps < LOSS_TAIL ? (steps > 0 ? steps : 1) : LOSS_TAIL);
    *nsteps = steps;
    return 0;
}

/* The test pass: the fraction of test images whose largest logit is at their label. */
static int test_pass(trainer *t, const dataset *test, double *accuracy) {
    int64_t right = 0;
    for (int64_t first = 0; first < test->count; first += TEST_BATCH) {
        const int64_t rows = test->count - first < TEST_BATCH ? test->count - first : TEST_BATCH;
        sbx_array x = view(SBX_FLOAT32, test->images, first, rows, PIXELS);
        const sbx_value in[1] = {{&x, NULL}};
        sbx_value out;
        sbx_status st = sbx_function_call(t->eval, in, &out);
        if (st != SBX_OK) return report("sbx_function_call (the test pass)", st);
        const float *logits = out.dense->data;
        for (int64_t i = 0; i < rows; i++) {
            int best = 0;
            for (int c = 1; c < CLASSES; c++)
                if (logits[i * CLASSES + c] > logits[i * CLASSES + best]) best = c;
            right += best == test->labels[first + i];
        }
    }
    *accuracy = test->count ? (double)right / (double)test->count : 0;
    return 0;
}

/* ---- what an epoch gives ---- */

typedef struct run {
    double train_s, train_cores, test_s, test_cores, loss, accuracy;
    int64_t steps;
    uint64_t hash; /* ours: the parameters' bytes after the epoch */
} run;

typedef struct results {
    run ours[NUM_THREADS][MAX_REPEAT], torch[NUM_THREADS][MAX_REPEAT];
    int nours[NUM_THREADS], ntorch[NUM_THREADS];
    int peer_status;             /* the peer's exit status; -1 while it runs or when it did not start */
    int torch_ok;                /* the peer said ready */
    char versions[LINE_LEN];     /* "python 3.11.2, numpy 1.24.2, torch 1.13.1" */
    char peer_skip[LINE_LEN];    /* why torch is skipped */
    char notes[MAX_NOTES][LINE_LEN];
    int num_notes;
} results;

static void add_note(results *r, const char *text) {
    if (r->num_notes < MAX_NOTES) snprintf(r->notes[r->num_notes++], LINE_LEN, "%s", text);
}

static int append(char *buf, size_t len, const char *text) {
    size_t used = strlen(buf), n = strlen(text);
    if (used + n >= len) return 1;
    memcpy(buf + used, text, n + 1);
    return 0;
}

static int ours_epoch(trainer *t, const dataset *train, const dataset *test, int threads, run *r) {
    set_threads(threads);
    trainer_reset(t);
    double cpu0 = cpu_now(), wall0 = now_seconds();
    if (train_steps(t, train, 0, &r->loss, &r->steps)) return 1;
    r->train_s = now_seconds() - wall0;
    r->train_cores = (cpu_now() - cpu0) / r->train_s;
    r->hash = params_hash(t);
    cpu0 = cpu_now();
    wall0 = now_seconds();
    if (test_pass(t, test, &r->accuracy)) return 1;
    r->test_s = now_seconds() - wall0;
    r->test_cores = (cpu_now() - cpu0) / r->test_s;
    return 0;
}

/* WARMUP_STEPS steps and a test pass at each thread count, untimed. */
static int ours_warmup(trainer *t, const dataset *train, const dataset *test) {
    for (int th = 0; th < NUM_THREADS; th++) {
        double loss, accuracy;
        int64_t steps;
        set_threads(THREADS[th]);
        trainer_reset(t);
        if (train_steps(t, train, WARMUP_STEPS, &loss, &steps) || test_pass(t, test, &accuracy)) return 1;
    }
    return 0;
}

/* ---- files for the peer: the initial parameters and a manifest ---- */

static int write_peer_files(const char *dir, const trainer *t, const char *data_dir, int64_t ntrain, int64_t ntest) {
    char path[PATH_LEN], name[64];
    for (int p = 0; p < NPARAMS; p++) {
        snprintf(name, sizeof name, "%s.npy", PARAM_NAMES[p]);
        if (join_path(path, sizeof path, dir, name)) return 1;
        sbx_status st = sbx_npy_write(path, t->init[p]);
        if (st != SBX_OK) return report(path, st);
    }
    if (join_path(path, sizeof path, dir, "manifest.txt")) return 1;
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "%s: cannot write %s: %s\n", BENCH_NAME, path, strerror(errno));
        return 1;
    }
    fprintf(f, "data %s\ntrain %lld\ntest %lld\nbatch %d\ntest_batch %d\nkeep %.17g\nlr %.17g\nbetas %.17g %.17g\n"
               "eps %.17g\nwarmup %d\nloss_tail %d\n",
            data_dir, (long long)ntrain, (long long)ntest, BATCH, TEST_BATCH, KEEP, LEARNING_RATE, BETA1, BETA2,
            ADAM_EPS, WARMUP_STEPS, LOSS_TAIL);
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
    if (rmdir(dir) != 0) fprintf(stderr, "%s: cannot remove %s: %s\n", BENCH_NAME, dir, strerror(errno));
}

/* ---- the peer: one process, driven by commands on its standard input ---- */

/* Starts PYTHON SCRIPT DIR (a peer_process of bench_util.h, pid 0 when not running); 0, or 1 with
 * r->peer_skip set. */
static int peer_start(const char *script, const char *dir, peer_process *p, results *r) {
    if (access(script, R_OK) != 0) {
        p->pid = 0;
        p->to = p->from = NULL;
        snprintf(r->peer_skip, sizeof r->peer_skip,
                 "no peer script at %.900s (give its folder as BENCH_DIR or in $SBX_BENCH_DIR)", script);
        return 1;
    }
    return peer_start_process(p, env_or("SBX_BENCH_PYTHON", DEFAULT_PYTHON), script, dir, r->peer_skip,
                              sizeof r->peer_skip);
}

/* Closes the pipes and waits; the exit status goes to r->peer_status. */
static void peer_stop(peer_process *p, results *r) {
    const int was_running = p->pid > 0, status = peer_finish_process(p);
    if (was_running) r->peer_status = status;
}

static int find_threads(int n) {
    for (int i = 0; i < NUM_THREADS; i++)
        if (THREADS[i] == n) return i;
    return -1;
}

static void add_version(results *r, const char *what, const char *value) {
    char piece[LINE_LEN];
    int n = (int)strcspn(what, "_");
    snprintf(piece, sizeof piece, "%s%.*s %.200s", r->versions[0] ? ", " : "", n < 32 ? n : 32, what, value);
    append(r->versions, sizeof r->versions, piece);
}

/* "train THREADS SECONDS CORES LOSS STEPS" or "test THREADS SECONDS CORES ACCURACY": into the torch run
 * being filled for that thread count. */
static int run_line(results *r, const char *kind, const char *value) {
    int threads;
    double seconds, cores, v;
    long long steps = 0;
    int fields = sscanf(value, "%d %lf %lf %lf %lld", &threads, &seconds, &cores, &v, &steps);
    const int ti = find_threads(threads);
    if (fields < 4 || ti < 0 || r->ntorch[ti] >= MAX_REPEAT) return 0;
    run *x = &r->torch[ti][r->ntorch[ti]];
    if (!strcmp(kind, "train")) {
        if (fields != 5) return 0;
        x->train_s = seconds;
        x->train_cores = cores;
        x->loss = v;
        x->steps = steps;
    } else {
        x->test_s = seconds;
        x->test_cores = cores;
        x->accuracy = v;
        r->ntorch[ti]++; /* the test line closes an epoch */
    }
    return 1;
}

/* One line of the peer: "key value". Returns 1 for the line that ends a reply ("ready", "done"). */
static int peer_line(results *r, char *line) {
    char *space = strchr(line, ' ');
    const char *value = space ? space + 1 : "";
    if (space) *space = '\0';
    int known = 1, end = 0;
    if (!strcmp(line, "ready"))
        end = r->torch_ok = 1;
    else if (!strcmp(line, "done"))
        end = 1;
    else if (!strcmp(line, "train") || !strcmp(line, "test"))
        known = run_line(r, line, value);
    else if (strstr(line, "_version") && !strchr(line, ':'))
        add_version(r, line, value);
    else if (!strcmp(line, "skip"))
        snprintf(r->peer_skip, sizeof r->peer_skip, "%s", value);
    else
        known = 0;
    if (space) *space = ' ';
    if (!known) add_note(r, line); /* the peer's "blas", "malloc", "torch_config" lines, and stray output */
    return end;
}

/* Reads the peer's lines up to the one that ends a reply; 0, or 1 when the peer went away. */
static int peer_reply(peer_process *p, results *r) {
    char line[LINE_LEN];
    while (p->from && fgets(line, sizeof line, p->from)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (peer_line(r, line)) return 0;
    }
    peer_stop(p, r);
    r->torch_ok = 0;
    if (!r->peer_skip[0]) snprintf(r->peer_skip, sizeof r->peer_skip, "the peer ended (status %d)", r->peer_status);
    return 1;
}

/* Sends one command and reads its reply; 0, or 1 when the peer is gone. */
static int peer_command(peer_process *p, results *r, const char *command) {
    if (!r->torch_ok || !p->to) return 1;
    if (fprintf(p->to, "%s\n", command) < 0 || fflush(p->to) != 0) {
        peer_stop(p, r);
        r->torch_ok = 0;
        if (!r->peer_skip[0]) snprintf(r->peer_skip, sizeof r->peer_skip, "the peer ended (status %d)", r->peer_status);
        return 1;
    }
    return peer_reply(p, r);
}

/* ---- output ---- */

static void print_header(const char *data_dir, const dataset *train, const dataset *test, int quick, int repeat) {
    printf("%s: one training epoch of the demo's network, sparsebox's Op graph against PyTorch in the same run%s\n",
           BENCH_NAME, quick ? " (--quick: a smoke run on a subset)" : "");
    print_machine();
    printf("data: %s: %lld training images (%lld steps of %d, the last %lld dropped), %lld test images (batches "
           "of %d)\n",
           data_dir, (long long)train->count, (long long)(train->count / BATCH), BATCH,
           (long long)(train->count % BATCH), (long long)test->count, TEST_BATCH);
    printf("network: conv(1->%d, %dx%d, valid, bias) -> ReLU -> max_pool 2x2 -> conv(%d->%d, %dx%d, bias) -> ReLU "
           "-> max_pool 2x2\n  -> dropout %.2f -> dense(%d->%d) -> softmax cross-entropy; Adam lr %g (betas %g, %g, "
           "eps %g); float32; the same initial parameters\n",
           MAPS1, KSIZE, KSIZE, MAPS1, MAPS2, KSIZE, KSIZE, 1 - KEEP, FEATURES, CLASSES, LEARNING_RATE, BETA1, BETA2,
           ADAM_EPS);
    printf("ours: dropout = Mul(features, Scale(1/%.2f)(DenseFromSparse(Binomial{csr, float32}(1, %.2f, [%d, %d]))))"
           " in the graph\n",
           KEEP, KEEP, BATCH, FEATURES);
    for (size_t i = 0; i < NUM_BLAS_VARS; i++) printf("%s=%s\n", BLAS_VARS[i], env_or(BLAS_VARS[i], "(unset)"));
    const char *core = blas_string("openblas_get_corename"), *config = blas_string("openblas_get_config");
    if (core)
        printf("sparsebox's OpenBLAS: core %s (%s)\n", core, config ? config : "?");
    else
        printf("sparsebox's BLAS is not OpenBLAS (no openblas_get_corename); BLAS threads not pinned\n");
    if (getenv("OPENBLAS_CORETYPE"))
        printf("  OPENBLAS_CORETYPE is set (ANCHORS.md's trap): run again under env -u OPENBLAS_CORETYPE -u "
               "OPENBLAS_L2_SIZE for the other setting\n");
    printf("timing: %d repeat%s of ours 1t, torch 1t, ours 2t, torch 2t, after %d untimed warm-up steps of each; "
           "wall clock per epoch, median over the repeats\n",
           repeat, repeat == 1 ? "" : "s", WARMUP_STEPS);
    fflush(stdout);
}

static int is_setting_note(const char *note) {
    return !strncmp(note, "blas ", 5) || !strncmp(note, "malloc ", 7) || !strncmp(note, "torch_config ", 13);
}

static void print_peer(const results *r) {
    if (r->versions[0]) printf("peer: %s\n", r->versions);
    for (int i = 0; i < r->num_notes; i++)
        if (is_setting_note(r->notes[i])) printf("peer's %s\n", r->notes[i]);
    if (r->peer_skip[0]) printf("peer: torch skipped: %s\n", r->peer_skip);
}

/* The figures of a run, by name. */
enum field { F_TRAIN, F_TRAIN_CORES, F_TEST, F_TEST_CORES, F_LOSS, F_ACCURACY };

static double get(const run *x, enum field f) {
    switch (f) {
    case F_TRAIN: return x->train_s;
    case F_TRAIN_CORES: return x->train_cores;
    case F_TEST: return x->test_s;
    case F_TEST_CORES: return x->test_cores;
    case F_LOSS: return x->loss;
    default: return x->accuracy;
    }
}

/* The median of field f over n runs (-1 for none). */
static double median_of(const run *runs, int n, enum field f) {
    double v[MAX_REPEAT];
    if (n <= 0) return -1;
    for (int i = 0; i < n; i++) v[i] = get(&runs[i], f);
    return median(v, n);
}

static void range_of(const run *runs, int n, enum field f, double *lo, double *hi) {
    *lo = *hi = n > 0 ? get(&runs[0], f) : -1;
    for (int i = 1; i < n; i++) {
        const double v = get(&runs[i], f);
        if (v < *lo) *lo = v;
        if (v > *hi) *hi = v;
    }
}

/* "   5.123 0.99 " or "       - " */
static void print_figure(const run *runs, int n, enum field f, enum field cores, int threads, int repeat) {
    if (n <= 0) {
        printf(" %9s %5s", "-", "");
        if (repeat > 1) printf(" %15s", "");
        return;
    }
    const double c = median_of(runs, n, cores);
    printf(" %9.3f %4.2f%c", median_of(runs, n, f), c, c >= BUSY_SHARE * threads ? ' ' : '!');
    if (repeat > 1) {
        double lo, hi;
        range_of(runs, n, f, &lo, &hi);
        printf(" [%6.3f-%6.3f]", lo, hi);
    }
}

static void print_table(const results *r, int repeat, int *goals_met, int *goals_missed) {
    printf("\n one epoch (training):\n  %-7s %9s %5s", "threads", "ours s", "cpu");
    if (repeat > 1) printf(" %15s", "ours range");
    printf(" %9s %5s", "torch s", "cpu");
    if (repeat > 1) printf(" %15s", "torch range");
    printf(" %10s  %s\n", "ours/torch", "goal");
    for (int ti = 0; ti < NUM_THREADS; ti++) {
        printf("  %-7d", THREADS[ti]);
        print_figure(r->ours[ti], r->nours[ti], F_TRAIN, F_TRAIN_CORES, THREADS[ti], repeat);
        print_figure(r->torch[ti], r->ntorch[ti], F_TRAIN, F_TRAIN_CORES, THREADS[ti], repeat);
        const double o = median_of(r->ours[ti], r->nours[ti], F_TRAIN);
        const double p = median_of(r->torch[ti], r->ntorch[ti], F_TRAIN);
        if (o > 0 && p > 0) {
            const double ratio = o / p;
            printf(" %10.3f  <=%.1fx %s\n", ratio, GOAL, ratio <= GOAL ? "met" : "MISSED");
            ratio <= GOAL ? (*goals_met)++ : (*goals_missed)++;
        } else {
            printf(" %10s  -\n", "-");
        }
    }
    printf("\n the test pass (%s images, batches of %d, no dropout, no gradient):\n  %-7s %9s %5s", "all the test",
           TEST_BATCH, "threads", "ours s", "cpu");
    if (repeat > 1) printf(" %15s", "ours range");
    printf(" %9s %5s", "torch s", "cpu");
    if (repeat > 1) printf(" %15s", "torch range");
    printf(" %10s\n", "ours/torch");
    for (int ti = 0; ti < NUM_THREADS; ti++) {
        printf("  %-7d", THREADS[ti]);
        print_figure(r->ours[ti], r->nours[ti], F_TEST, F_TEST_CORES, THREADS[ti], repeat);
        print_figure(r->torch[ti], r->ntorch[ti], F_TEST, F_TEST_CORES, THREADS[ti], repeat);
        const double o = median_of(r->ours[ti], r->nours[ti], F_TEST);
        const double p = median_of(r->torch[ti], r->ntorch[ti], F_TEST);
        if (o > 0 && p > 0)
            printf(" %10.3f\n", o / p);
        else
            printf(" %10s\n", "-");
    }
}

/* One figure of a run (accuracy in percent), or "-" when there is no run. */
static void print_value(const run *x, enum field f, int width) {
    const int percent = f == F_ACCURACY;
    if (x)
        printf(" %*.*f%s", width - percent, percent ? 2 : 4, percent ? 100 * get(x, f) : get(x, f), percent ? "%" : "");
    else
        printf(" %*s", width, "-");
}

/* The sanity figures and the checks; returns 1 when a check fails. */
static int print_checks(const results *r, int quick) {
    printf("\n after one epoch (sanity; training loss = mean over the last %d steps):\n  %-7s %11s %11s %10s %10s\n",
           LOSS_TAIL, "threads", "ours loss", "torch loss", "ours acc", "torch acc");
    int failed = 0;
    for (int ti = 0; ti < NUM_THREADS; ti++)
        for (int k = 0; k < (r->nours[ti] > r->ntorch[ti] ? r->nours[ti] : r->ntorch[ti]); k++) {
            const run *o = k < r->nours[ti] ? &r->ours[ti][k] : NULL, *p = k < r->ntorch[ti] ? &r->torch[ti][k] : NULL;
            printf("  %-7d", THREADS[ti]);
            print_value(o, F_LOSS, 11);
            print_value(p, F_LOSS, 11);
            print_value(o, F_ACCURACY, 10);
            print_value(p, F_ACCURACY, 10);
            printf("\n");
            if (!quick && o && o->accuracy < ACC_FLOOR) failed = 1;
            if (!quick && p && p->accuracy < ACC_FLOOR) failed = 1;
            if (!quick && o && p && fabs(o->accuracy - p->accuracy) > ACC_GAP) failed = 1;
        }
    int same = 1, any = 0;
    uint64_t first = 0;
    for (int ti = 0; ti < NUM_THREADS; ti++)
        for (int k = 0; k < r->nours[ti]; k++) {
            if (!any) first = r->ours[ti][k].hash;
            same &= r->ours[ti][k].hash == first;
            any = 1;
        }
    printf(" ours: the same parameter bytes after every epoch (1 and 2 threads, every repeat): %s\n",
           same ? "yes" : "NO");
    if (quick)
        printf(" accuracy check: not in a --quick run\n");
    else
        printf(" accuracy check (both >= %.0f%%, within %.0f points): %s\n", 100 * ACC_FLOOR, 100 * ACC_GAP,
               failed ? "FAILED" : "ok");
    return failed || !same;
}

static void print_notes(const results *r) {
    for (int i = 0; i < r->num_notes; i++)
        if (!is_setting_note(r->notes[i])) printf("peer: %s\n", r->notes[i]);
}

/* ---- main ---- */

typedef struct options {
    int quick, repeat;
    const char *data_dir, *bench_dir;
} options;

static int usage(void) {
    fprintf(stderr, "usage: %s [--quick] [--repeat N] [--data DIR] [BENCH_DIR]\n", BENCH_NAME);
    return 2;
}

static int parse_options(int argc, char **argv, options *o) {
    o->quick = 0;
    o->repeat = 1;
    o->data_dir = DEFAULT_DATA_DIR;
    o->bench_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            o->quick = 1;
        } else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > MAX_REPEAT) {
                fprintf(stderr, "%s: --repeat takes 1 to %d, not %s\n", BENCH_NAME, MAX_REPEAT, argv[i]);
                return 1;
            }
            o->repeat = (int)n;
        } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            o->data_dir = argv[++i];
        } else if (argv[i][0] != '-' && !o->bench_dir) {
            o->bench_dir = argv[i];
        } else {
            return 1;
        }
    }
    return 0;
}

/* The interleaved epochs: for each repeat, ours then torch at each thread count. */
static int run_epochs(trainer *t, const dataset *train, const dataset *test, peer_process *p, int repeat,
                      results *r) {
    for (int k = 0; k < repeat; k++)
        for (int ti = 0; ti < NUM_THREADS; ti++) {
            run *o = &r->ours[ti][r->nours[ti]];
            if (ours_epoch(t, train, test, THREADS[ti], o)) return 1;
            r->nours[ti]++;
            printf("  [%d/%d] ours  %dt: %.3f s epoch, %.3f s test, accuracy %.2f%%\n", k + 1, repeat, THREADS[ti],
                   o->train_s, o->test_s, 100 * o->accuracy);
            fflush(stdout);
            char command[64];
            snprintf(command, sizeof command, "epoch %d", THREADS[ti]);
            const int before = r->ntorch[ti];
            if (r->torch_ok && peer_command(p, r, command) == 0 && r->ntorch[ti] > before) {
                const run *x = &r->torch[ti][r->ntorch[ti] - 1];
                printf("  [%d/%d] torch %dt: %.3f s epoch, %.3f s test, accuracy %.2f%%\n", k + 1, repeat,
                       THREADS[ti], x->train_s, x->test_s, 100 * x->accuracy);
                fflush(stdout);
            }
        }
    return 0;
}

int main(int argc, char **argv) {
    static results r;
    options o;
    if (parse_options(argc, argv, &o)) return usage();
    signal(SIGPIPE, SIG_IGN); /* a peer that dies shows as a failed write, not as our death */
    memset(&r, 0, sizeof r);
    r.peer_status = -1;

    dataset train, test;
    const int64_t limit = o.quick ? QUICK_IMAGES : 0;
    if (dataset_load(o.data_dir, "train", limit, &train)) return 1;
    if (dataset_load(o.data_dir, "t10k", limit, &test)) {
        dataset_free(&train);
        return 1;
    }
    print_header(o.data_dir, &train, &test, o.quick, o.repeat);

    trainer t;
    if (trainer_make(&t)) {
        dataset_free(&train);
        dataset_free(&test);
        return 1;
    }
    char dir[] = "/tmp/bench_train.XXXXXX", folder[PATH_LEN], script[PATH_LEN];
    peer_process p = {0, NULL, NULL};
    int error = 0, have_dir = mkdtemp(dir) != NULL;
    if (!have_dir) {
        fprintf(stderr, "%s: mkdtemp failed: %s\n", BENCH_NAME, strerror(errno));
        error = 1;
    }
    if (!error) error = write_peer_files(dir, &t, o.data_dir, train.count, test.count);
    peer_folder(o.bench_dir, folder, sizeof folder);
    if (!error && !join_path(script, sizeof script, folder, PEER_SCRIPT) && peer_start(script, dir, &p, &r) == 0)
        peer_reply(&p, &r); /* its versions and setting, then "ready" (or a skip line and the end) */
    if (!error) error = ours_warmup(&t, &train, &test);
    if (!error && r.torch_ok) peer_command(&p, &r, "warmup");
    if (!error) {
        print_peer(&r);
        printf("\n");
        error = run_epochs(&t, &train, &test, &p, o.repeat, &r);
    }
    if (r.torch_ok) {
        fprintf(p.to, "quit\n");
        fflush(p.to);
    }
    peer_stop(&p, &r);
    if (have_dir) remove_dir(dir);
    int failed = error;
    if (!error) {
        int met = 0, missed = 0;
        print_table(&r, o.repeat, &met, &missed);
        failed = print_checks(&r, o.quick);
        print_notes(&r);
        printf("\n goals: %d met, %d missed (ours <= %.1fx torch's seconds per epoch)\n", met, missed, GOAL);
        printf(" checks: %s\n", failed ? "FAILED" : "ok");
    }
    trainer_free(&t);
    dataset_free(&train);
    dataset_free(&test);
    return failed ? 1 : 0;
}
