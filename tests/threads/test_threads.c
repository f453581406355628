/* The library used from several threads at once gives the bytes of serial runs (docs/op.md, "Threads",
 * says what may be shared):
 *  - layers: one plan of each kind (convolution in float32 and float64, local connections, pooling),
 *    forward and backward, executed by every thread at once on the same input arrays;
 *  - functions: one graph from which every thread compiles a function of its own (a function is called
 *    from one thread at a time: it keeps values, plans and a pool from call to call) and calls it, and
 *    one graph per thread trained with Adam (updates write the graph's shared variables in place);
 *  - generators: the samplers, the fills and the sparse random matrices, each thread drawing from its
 *    own stream, in an order of its own (the samplers' per-thread caches then differ from the serial
 *    run's) and reading the same parameter matrices.
 * The serial answers are computed first on the main thread. Then the threads start together at a
 * barrier and each repeats its work ROUNDS times; they record the first difference or error, and the
 * main thread asserts (cmocka's assertions jump, which only the main thread may do). The library's
 * own threads run inside each user thread as the environment says (SBX_NUM_THREADS; the test
 * registration sets 2). In the -DSBX_TSAN=ON build ThreadSanitizer watches the same runs
 * (tests/threads/CMakeLists.txt says how OpenMP and OpenBLAS are made visible to it). */
#define _POSIX_C_SOURCE 200809L /* pthread_barrier_t */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "sparsebox.h"

#define NTHREADS 4
#define ROUNDS 3
#define ERR 512

#define OK(expr)                                                                                                   \
    do {                                                                                                           \
        sbx_status st_ = (expr);                                                                                   \
        if (st_ != SBX_OK) fail_msg("%s: %s", #expr, sbx_last_error());                                           \
    } while (0)

/* --- What the workers share: a start barrier, and a place for the first failure --------------------- */
static pthread_barrier_t start;

typedef struct worker {
    int id;
    char err[ERR]; /* empty: no failure */
} worker;

/* Records the first failure; returns 0 (not the same, or failed). */
static int note(char *err, const char *fmt, ...) {
    if (!err[0]) {
        va_list a;
        va_start(a, fmt);
        vsnprintf(err, ERR, fmt, a);
        va_end(a);
    }
    return 0;
}

/* In a worker: records a failed call with the library's message (this thread's) and returns. */
#define TRY(err, expr)                                                                                             \
    do {                                                                                                           \
        sbx_status st_ = (expr);                                                                                   \
        if (st_ != SBX_OK) {                                                                                       \
            note(err, "%s: %s", #expr, sbx_last_error());                                                          \
            goto done;                                                                                             \
        }                                                                                                          \
    } while (0)

static int same_array(char *err, const char *what, const sbx_array *got, const sbx_array *want) {
    if (!got || !want) return note(err, "%s: an array is missing", what);
    if (got->dtype != want->dtype || got->ndim != want->ndim || memcmp(got->shape, want->shape, sizeof got->shape))
        return note(err, "%s: dtype or shape differs from the serial run", what);
    size_t bytes = (size_t)sbx_array_numel(got) * sbx_dtype_size(got->dtype);
    if (bytes && memcmp(got->data, want->data, bytes)) return note(err, "%s: bytes differ from the serial run", what);
    return 1;
}

static int same_sparse(char *err, const char *what, const sbx_sparse *got, const sbx_sparse *want) {
    if (!got || !want) return note(err, "%s: a matrix is missing", what);
    if (got->format != want->format || got->dtype != want->dtype || got->nrows != want->nrows ||
        got->ncols != want->ncols || got->nnz != want->nnz)
        return note(err, "%s: format, dtype, shape or nnz differs from the serial run", what);
    size_t major = (size_t)sbx_sparse_major(got) + 1, nnz = (size_t)got->nnz;
    if (memcmp(got->indptr, want->indptr, major * sizeof(int64_t)) ||
        (nnz && (memcmp(got->indices, want->indices, nnz * sizeof(int64_t)) ||
                 memcmp(got->data, want->data, nnz * sbx_dtype_size(got->dtype)))))
        return note(err, "%s: bytes differ from the serial run", what);
    return 1;
}

/* Runs fn(worker) on NTHREADS threads at once and fails with the first failure any of them recorded.
 * With retune set, the main thread meanwhile changes the library's thread count back and forth (results
 * never depend on it, and it may be changed while other threads run the library). */
static void run_workers(void *(*fn)(void *), int retune) {
    pthread_t th[NTHREADS];
    worker w[NTHREADS];
    assert_int_equal(pthread_barrier_init(&start, NULL, NTHREADS), 0);
    for (int t = 0; t < NTHREADS; t++) {
        w[t].id = t;
        w[t].err[0] = '\0';
        assert_int_equal(pthread_create(&th[t], NULL, fn, &w[t]), 0);
    }
    for (int k = 0; retune && k < 200; k++) {
        sbx_set_num_threads(k % 3); /* 0: the default again */
        nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    sbx_set_num_threads(0);
    for (int t = 0; t < NTHREADS; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
    pthread_barrier_destroy(&start);
    for (int t = 0; t < NTHREADS; t++)
        if (w[t].err[0]) fail_msg("thread %d: %s", t, w[t].err);
}

/* Values in [-1, 1) in steps of 1/8 (ties, for max pooling's masks), from the generator's stream. */
static sbx_array *filled(sbx_dtype dtype, int ndim, const int64_t *shape, uint32_t stream) {
    sbx_array *a;
    sbx_rng rng;
    sbx_rng_cursor c;
    OK(sbx_array_create(dtype, ndim, shape, &a));
    sbx_rng_init(&rng, 2026, stream);
    OK(sbx_rng_cursor_init(&rng, 0, &c));
    for (int64_t i = 0; i < sbx_array_numel(a); i++) {
        double v = (double)(int)(sbx_rng_double(&c) * 16) / 8 - 1;
        if (dtype == SBX_FLOAT32) ((float *)a->data)[i] = (float)v;
        if (dtype == SBX_FLOAT64) ((double *)a->data)[i] = v;
    }
    return a;
}

static sbx_array *vector(sbx_dtype dtype, int64_t n, uint32_t stream) { return filled(dtype, 1, &n, stream); }
static sbx_array *matrix(sbx_dtype dtype, int64_t rows, int64_t cols, uint32_t stream) {
    return filled(dtype, 2, (int64_t[]){rows, cols}, stream);
}

/* --- Layers ------------------------------------------------------------------------------------------ */
typedef enum { CONV, LOCAL, POOL } layer_kind;
#define LAYER_OUTS 5
#define NLAYERS 4
typedef struct layer {
    const char *name;
    layer_kind kind;
    sbx_conv_plan *plan;
    sbx_array *images, *kerns, *bias, *gout;
    sbx_array *want[LAYER_OUTS]; /* the serial run's */
} layer;
static layer layers[NLAYERS];

/* Forward and backward through the layer's plan: out[] (NULL on entry) gets up to LAYER_OUTS new arrays. */
static sbx_status run_layer(const layer *l, sbx_array **out) {
    sbx_status st;
    switch (l->kind) {
    case CONV:
        st = sbx_conv_forward(l->plan, l->images, l->kerns, l->bias, &out[0]);
        if (st == SBX_OK) st = sbx_conv_backward(l->plan, l->images, l->kerns, l->gout, &out[1], &out[2], &out[3]);
        return st;
    case LOCAL:
        st = sbx_local_forward(l->plan, l->images, l->kerns, l->bias, &out[0]);
        if (st == SBX_OK) st = sbx_local_backward(l->plan, l->images, l->kerns, l->gout, &out[1], &out[2], &out[3]);
        return st;
    default:
        st = sbx_pool_forward(l->plan, l->images, &out[0]);
        if (st == SBX_OK) st = sbx_pool_backward(l->plan, l->images, l->gout, &out[1]);
        if (st == SBX_OK) st = sbx_pool_forward_mask(l->plan, l->images, &out[2], &out[3]);
        if (st == SBX_OK) st = sbx_pool_backward_mask(l->plan, out[3], l->gout, &out[4]);
        return st;
    }
}

static void layer_make(layer *l, const char *name, layer_kind kind, sbx_dtype dtype, int64_t channels, int64_t h,
                       int64_t w, int64_t kh, int64_t kw, const int64_t *stride, sbx_conv_mode mode, int64_t nkern,
                       int64_t batch, uint32_t stream) {
    sbx_conv_shape s;
    OK(sbx_conv_shape_make(2, channels, (int64_t[]){h, w}, (int64_t[]){kh, kw}, stride, mode, &s));
    l->name = name;
    l->kind = kind;
    l->images = matrix(dtype, batch, s.in_size, stream);
    if (kind == CONV) {
        OK(sbx_conv_plan_create(&s, nkern, dtype, &l->plan));
        l->kerns = matrix(dtype, nkern, channels * s.kernel_size, stream + 1);
        l->bias = vector(dtype, nkern, stream + 2);
        l->gout = matrix(dtype, batch, nkern * s.out_size, stream + 3);
    } else if (kind == LOCAL) {
        OK(sbx_local_plan_create(&s, nkern, dtype, &l->plan));
        l->kerns = vector(dtype, channels * nkern * s.out_size * s.kernel_size, stream + 1);
        l->bias = vector(dtype, nkern * s.out_size, stream + 2);
        l->gout = matrix(dtype, batch, nkern * s.out_size, stream + 3);
    } else {
        OK(sbx_pool_plan_create(&s, dtype, &l->plan));
        l->gout = matrix(dtype, batch, channels * s.out_size, stream + 3);
    }
    memset(l->want, 0, sizeof l->want);
    OK(run_layer(l, l->want));
}

static void layer_free(layer *l) {
    sbx_conv_plan_free(l->plan);
    sbx_array_free(l->images);
    sbx_array_free(l->kerns);
    sbx_array_free(l->bias);
    sbx_array_free(l->gout);
    for (int j = 0; j < LAYER_OUTS; j++) sbx_array_free(l->want[j]);
}

static void *layers_worker(void *arg) {
    worker *w = arg;
    pthread_barrier_wait(&start);
    for (int r = 0; r < ROUNDS && !w->err[0]; r++)
        for (int i = 0; i < NLAYERS && !w->err[0]; i++) {
            const layer *l = &layers[(i + w->id + r) % NLAYERS]; /* the threads on different layers at first */
            sbx_array *out[LAYER_OUTS] = {0};
            sbx_status st = run_layer(l, out);
            if (st != SBX_OK) note(w->err, "%s: %s", l->name, sbx_last_error());
            for (int j = 0; st == SBX_OK && j < LAYER_OUTS; j++) {
                char what[64];
                snprintf(what, sizeof what, "%s output %d", l->name, j);
                if (l->want[j] && !same_array(w->err, what, out[j], l->want[j])) break;
            }
            for (int j = 0; j < LAYER_OUTS; j++) sbx_array_free(out[j]);
        }
    return NULL;
}

/* Every thread executes the same plans on the same arrays at once. */
static void test_plans(void **state) {
    (void)state;
    layer_make(&layers[0], "conv float32", CONV, SBX_FLOAT32, 3, 14, 14, 3, 3, NULL, SBX_CONV_VALID, 8, 6, 10);
    layer_make(&layers[1], "conv float64", CONV, SBX_FLOAT64, 2, 9, 11, 4, 3, (int64_t[]){2, 1}, SBX_CONV_FULL, 5, 3,
               20);
    layer_make(&layers[2], "local float64", LOCAL, SBX_FLOAT64, 2, 10, 10, 3, 3, (int64_t[]){2, 2}, SBX_CONV_VALID, 3,
               4, 30);
    layer_make(&layers[3], "pool float32", POOL, SBX_FLOAT32, 4, 12, 12, 2, 2, (int64_t[]){2, 2}, SBX_CONV_VALID, 1,
               5, 40);
    run_workers(layers_worker, 1);
    for (int i = 0; i < NLAYERS; i++) layer_free(&layers[i]);
}

/* --- Functions --------------------------------------------------------------------------------------- */
/* conv(1->4, 3x3) -> ReLU -> max_pool 2x2 -> dense(36->2) -> softmax cross-entropy on 8x8 images, and a
 * Binomial draw (a random node: its bytes depend on the function's seed and call number). */
#define SIDE 8
#define BATCH 32
#define CALLS 3  /* calls per function, compared call for call */
#define STEPS 20 /* Adam steps per training */
typedef struct net {
    sbx_graph *g;
    sbx_var *x, *y, *params[4], *loss, *draw;
    sbx_var *outs[6]; /* loss, the 4 gradients, the draw */
    sbx_update up[13];
    int nupd;
} net;

static sbx_status shared_param(sbx_graph *g, const char *name, int ndim, const int64_t *shape, uint32_t stream,
                               sbx_var **out) {
    sbx_value v = {filled(SBX_FLOAT32, ndim, shape, stream), NULL};
    float *d = v.dense->data;
    for (int64_t i = 0; i < sbx_array_numel(v.dense); i++) d[i] *= 0.5f;
    sbx_status st = sbx_graph_shared(g, name, &v, out);
    sbx_value_clear(&v); /* empty on success */
    return st;
}

static sbx_status apply(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, sbx_var *const *in,
                        sbx_var **out) {
    return sbx_apply(g, cls, props, nin, in, out);
}

/* The graph into n->g (freed by the caller, also on failure): with adam, Adam's updates of the four
 * parameters; without, the gradients as outputs. Made by the workers too, so it reports a status. */
static sbx_status net_build(net *n, int adam) {
    memset(n, 0, sizeof *n);
    sbx_status st = sbx_graph_create(&n->g);
    sbx_graph *g = n->g;
    sbx_conv_shape cs, ps;
    sbx_type xt = sbx_type_dense(SBX_FLOAT32, 2, (int64_t[]){-1, SIDE * SIDE}), yt = sbx_type_dense(SBX_INT64, 1, NULL);
    sbx_var *h, *pooled, *logits, *lr, *bn, *bp, *bshape;
    if (st == SBX_OK) st = sbx_conv_shape_make(2, 1, (int64_t[]){SIDE, SIDE}, (int64_t[]){3, 3}, NULL, SBX_CONV_VALID, &cs);
    if (st == SBX_OK) st = sbx_conv_shape_make(2, 4, cs.out, (int64_t[]){2, 2}, (int64_t[]){2, 2}, SBX_CONV_VALID, &ps);
    if (st != SBX_OK) return st;
    const int64_t feat = 4 * ps.out_size;
    const sbx_layer_props conv = {cs, 4};
    const sbx_pool_props pool = {ps};
    const sbx_dot_props nn = {0, 0};
    const sbx_add_props plus = {1, 1};
    const sbx_binomial_props binomial = {SBX_CSR, SBX_FLOAT32};
    if (st == SBX_OK) st = sbx_graph_input(g, "images", &xt, &n->x);
    if (st == SBX_OK) st = sbx_graph_input(g, "labels", &yt, &n->y);
    if (st == SBX_OK) st = shared_param(g, "k", 2, (int64_t[]){4, 9}, 50, &n->params[0]);
    if (st == SBX_OK) st = shared_param(g, "kb", 1, (int64_t[]){4}, 51, &n->params[1]);
    if (st == SBX_OK) st = shared_param(g, "w", 2, (int64_t[]){feat, 2}, 52, &n->params[2]);
    if (st == SBX_OK) st = shared_param(g, "wb", 1, (int64_t[]){2}, 53, &n->params[3]);
    if (st == SBX_OK) st = apply(g, &sbx_op_convolve, &conv, 3, (sbx_var *[]){n->x, n->params[0], n->params[1]}, &h);
    if (st == SBX_OK) st = apply(g, &sbx_op_relu, NULL, 1, &h, &h);
    if (st == SBX_OK) st = apply(g, &sbx_op_max_pool, &pool, 1, &h, &pooled);
    if (st == SBX_OK) st = apply(g, &sbx_op_dot, &nn, 2, (sbx_var *[]){pooled, n->params[2]}, &logits);
    if (st == SBX_OK) st = apply(g, &sbx_op_add, &plus, 2, (sbx_var *[]){logits, n->params[3]}, &logits);
    if (st == SBX_OK) st = apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, (sbx_var *[]){logits, n->y}, &n->loss);
    if (st == SBX_OK) st = sbx_graph_scalar(g, SBX_INT64, 3, &bn);
    if (st == SBX_OK) st = sbx_graph_scalar(g, SBX_FLOAT64, 0.2, &bp);
    if (st == SBX_OK) {
        sbx_array *a;
        st = sbx_array_create(SBX_INT64, 1, (int64_t[]){2}, &a);
        if (st == SBX_OK) {
            ((int64_t *)a->data)[0] = 70;
            ((int64_t *)a->data)[1] = 90;
            sbx_value v = {a, NULL};
            st = sbx_graph_constant(g, "shape", &v, &bshape);
            sbx_value_clear(&v);
        }
    }
    if (st == SBX_OK) st = apply(g, &sbx_op_binomial, &binomial, 3, (sbx_var *[]){bn, bp, bshape}, &n->draw);
    if (st != SBX_OK) return st;
    n->outs[0] = n->loss;
    n->outs[5] = n->draw;
    if (!adam) return sbx_gradient(g, n->loss, 4, n->params, 0, &n->outs[1]);
    sbx_value lv = {NULL, NULL};
    st = sbx_array_create(SBX_FLOAT32, 0, NULL, &lv.dense);
    if (st == SBX_OK) {
        *(float *)lv.dense->data = 0.02f;
        st = sbx_graph_shared(g, "lr", &lv, &lr);
    }
    sbx_value_clear(&lv);
    if (st == SBX_OK) st = sbx_adam(g, n->loss, 4, n->params, lr, 0.9, 0.999, 1e-8, n->up, &n->nupd);
    return st;
}

/* The inputs every function reads (shared by the threads: a call only borrows them). */
static sbx_value inputs[2];
static net common;                                /* the graph the threads compile from */
static sbx_value want_outs[CALLS][6];             /* the serial function's outputs, call by call (copies) */
static sbx_array *want_params[4], *want_loss;     /* after the serial training */

static sbx_status copy_value(const sbx_value *v, sbx_value *out) {
    out->dense = NULL;
    out->sparse = NULL;
    return v->dense ? sbx_array_copy(v->dense, &out->dense) : sbx_sparse_copy(v->sparse, &out->sparse);
}

static int same_value(char *err, const char *what, const sbx_value *got, const sbx_value *want) {
    if (want->dense) return same_array(err, what, got->dense, want->dense);
    return same_sparse(err, what, got->sparse, want->sparse);
}

/* Compiles a function of `common` on this thread and checks CALLS calls against the serial ones. */
static void *compile_worker(void *arg) {
    worker *w = arg;
    sbx_function *f = NULL;
    pthread_barrier_wait(&start);
    for (int r = 0; r < ROUNDS && !w->err[0]; r++) {
        TRY(w->err, sbx_function_compile(common.g, 2, (sbx_var *[]){common.x, common.y}, 6, common.outs, 0, NULL, 5, &f));
        for (int k = 0; k < CALLS; k++) {
            sbx_value out[6];
            TRY(w->err, sbx_function_call(f, inputs, out));
            for (int j = 0; j < 6; j++) {
                char what[64];
                snprintf(what, sizeof what, "call %d output %d", k, j);
                if (!same_value(w->err, what, &out[j], &want_outs[k][j])) goto done;
            }
        }
        sbx_function_free(f);
        f = NULL;
    }
done:
    sbx_function_free(f);
    return NULL;
}

/* Trains a graph of its own (the updates write its shared variables) and checks the parameters. */
static void *train_worker(void *arg) {
    worker *w = arg;
    net n = {0};
    sbx_function *f = NULL;
    pthread_barrier_wait(&start);
    TRY(w->err, net_build(&n, 1));
    TRY(w->err, sbx_function_compile(n.g, 2, (sbx_var *[]){n.x, n.y}, 1, &n.loss, n.nupd, n.up, 9, &f));
    sbx_value loss;
    for (int s = 0; s < STEPS; s++) TRY(w->err, sbx_function_call(f, inputs, &loss));
    if (!same_array(w->err, "the last loss", loss.dense, want_loss)) goto done;
    for (int i = 0; i < 4; i++)
        if (!same_array(w->err, sbx_var_name(n.params[i]), sbx_var_value(n.params[i])->dense, want_params[i])) break;
done:
    sbx_function_free(f);
    sbx_graph_free(n.g);
    return NULL;
}

static void test_functions(void **state) {
    (void)state;
    inputs[0].dense = matrix(SBX_FLOAT32, BATCH, SIDE * SIDE, 60);
    OK(sbx_array_create(SBX_INT64, 1, (int64_t[]){BATCH}, &inputs[1].dense));
    for (int b = 0; b < BATCH; b++) ((int64_t *)inputs[1].dense->data)[b] = b % 3 == 0;
    /* The serial answers: a function of the common graph, then a training of another graph. */
    OK(net_build(&common, 0));
    sbx_function *f;
    sbx_value out[6];
    OK(sbx_function_compile(common.g, 2, (sbx_var *[]){common.x, common.y}, 6, common.outs, 0, NULL, 5, &f));
    for (int k = 0; k < CALLS; k++) {
        OK(sbx_function_call(f, inputs, out));
        for (int j = 0; j < 6; j++) OK(copy_value(&out[j], &want_outs[k][j]));
    }
    sbx_function_free(f);
    /* Each call draws anew: a function that kept reusing call 0's key would go unnoticed otherwise. */
    assert_true(want_outs[0][5].sparse->nnz != want_outs[1][5].sparse->nnz ||
                memcmp(want_outs[0][5].sparse->indices, want_outs[1][5].sparse->indices,
                       (size_t)want_outs[0][5].sparse->nnz * sizeof(int64_t)) != 0);
    net trained;
    OK(net_build(&trained, 1));
    OK(sbx_function_compile(trained.g, 2, (sbx_var *[]){trained.x, trained.y}, 1, &trained.loss, trained.nupd,
                            trained.up, 9, &f));
    for (int s = 0; s < STEPS; s++) OK(sbx_function_call(f, inputs, out));
    OK(sbx_array_copy(out[0].dense, &want_loss));
    for (int i = 0; i < 4; i++) OK(sbx_array_copy(sbx_var_value(trained.params[i])->dense, &want_params[i]));
    sbx_function_free(f);
    sbx_graph_free(trained.g);

    run_workers(compile_worker, 0);
    run_workers(train_worker, 0);

    for (int k = 0; k < CALLS; k++)
        for (int j = 0; j < 6; j++) sbx_value_clear(&want_outs[k][j]);
    for (int i = 0; i < 4; i++) sbx_array_free(want_params[i]);
    sbx_array_free(want_loss);
    sbx_graph_free(common.g);
    sbx_value_clear(&inputs[0]);
    sbx_value_clear(&inputs[1]);
}

/* --- Generators -------------------------------------------------------------------------------------- */
enum { BIN_SMALL, BIN_LARGE, POISSON, MULTINOMIAL, BIN_FILL, POISSON_FILL, MULTI_FILL, SCALARS, NDRAWS };
static const char *const draw_names[NDRAWS] = {"sbx_random_binomial (inversion)", "sbx_random_binomial (BTRS)",
                                               "sbx_random_poisson", "sbx_random_multinomial", "sbx_binomial_fill",
                                               "sbx_poisson_fill", "sbx_multinomial_fill", "the scalar samplers"};
typedef struct draws {
    sbx_sparse *m[NDRAWS]; /* the sparse ones */
    sbx_array *a[NDRAWS];  /* the dense ones */
} draws;

static sbx_sparse *means;   /* Poisson's means and Multinomial's weights, read by every thread */
static sbx_array *trials;   /* Multinomial's n per row */
static draws want_draws[NTHREADS];

/* Draw `which` from stream `stream` into d. */
static sbx_status draw(int which, uint32_t stream, draws *d) {
    sbx_rng rng;
    sbx_rng_init(&rng, 31337, stream);
    static const double probs[6] = {0.05, 0.3, 0.15, 0.2, 0.1, 0.2};
    sbx_status st = SBX_OK;
    switch (which) {
    case BIN_SMALL: return sbx_random_binomial(&rng, 5, 0.02, 300, 200, SBX_CSR, SBX_FLOAT32, &d->m[which]);
    case BIN_LARGE: return sbx_random_binomial(&rng, 1000, 0.3, 40, 70, SBX_CSC, SBX_FLOAT64, &d->m[which]);
    case POISSON: return sbx_random_poisson(&rng, means, &d->m[which]);
    case MULTINOMIAL: return sbx_random_multinomial(&rng, trials, means, 1, &d->m[which]);
    case BIN_FILL:
        st = sbx_array_create(SBX_INT32, 1, (int64_t[]){12000}, &d->a[which]);
        return st == SBX_OK ? sbx_binomial_fill(&rng, 40, 0.3, 0, d->a[which]) : st;
    case POISSON_FILL: /* inversion below 10, PTRS above: one array of each, side by side */
        st = sbx_array_create(SBX_FLOAT64, 2, (int64_t[]){2, 5000}, &d->a[which]);
        if (st == SBX_OK) {
            sbx_array half = *d->a[which];
            half.ndim = 1;
            half.shape[0] = 5000;
            half.shape[1] = 0;
            st = sbx_poisson_fill(&rng, 3.5, 0, &half);
            half.data = (double *)half.data + 5000;
            if (st == SBX_OK) st = sbx_poisson_fill(&rng, 250.0, 5000, &half);
        }
        return st;
    case MULTI_FILL:
        st = sbx_array_create(SBX_INT64, 2, (int64_t[]){600, 6}, &d->a[which]);
        return st == SBX_OK ? sbx_multinomial_fill(&rng, 20, probs, 6, 0, 0, d->a[which]) : st;
    default: { /* parameters that change draw by draw, so the samplers' per-thread caches fill and evict */
        enum { N = 3000 };
        sbx_rng_cursor c;
        st = sbx_array_create(SBX_INT64, 1, (int64_t[]){N}, &d->a[which]);
        for (int64_t i = 0; st == SBX_OK && i < N; i++) {
            int64_t *v = (int64_t *)d->a[which]->data + i;
            st = sbx_rng_cursor_init(&rng, i, &c);
            if (st == SBX_OK && i % 3 == 0) st = sbx_binomial(&c, 10 + i % 7 * 60, 0.05 + (double)(i % 5) / 10, v);
            if (st == SBX_OK && i % 3 == 1) st = sbx_poisson(&c, 0.5 + (double)(i % 11) * 4, v);
            if (st == SBX_OK && i % 3 == 2) {
                int64_t counts[6];
                st = sbx_multinomial(&c, 5 + i % 30, probs, 6, 0, counts);
                *v = counts[0] * 1000 + counts[3];
            }
        }
        return st;
    }
    }
}

static void draws_free(draws *d) {
    for (int k = 0; k < NDRAWS; k++) {
        sbx_sparse_free(d->m[k]);
        sbx_array_free(d->a[k]);
    }
    memset(d, 0, sizeof *d);
}

static void *draw_worker(void *arg) {
    worker *w = arg;
    pthread_barrier_wait(&start);
    for (int r = 0; r < ROUNDS && !w->err[0]; r++) {
        draws d = {0};
        for (int i = 0; i < NDRAWS && !w->err[0]; i++) {
            int k = (i + w->id + 1 + r) % NDRAWS; /* not the serial run's order */
            if (draw(k, (uint32_t)w->id, &d) != SBX_OK)
                note(w->err, "%s: %s", draw_names[k], sbx_last_error());
            else if (d.m[k])
                same_sparse(w->err, draw_names[k], d.m[k], want_draws[w->id].m[k]);
            else
                same_array(w->err, draw_names[k], d.a[k], want_draws[w->id].a[k]);
        }
        draws_free(&d);
    }
    return NULL;
}

/* Every thread draws from its own stream at once; the parameter matrices are shared. */
static void test_generators(void **state) {
    (void)state;
    sbx_rng rng;
    sbx_rng_init(&rng, 4, 4);
    OK(sbx_random_binomial(&rng, 30, 0.05, 120, 80, SBX_CSR, SBX_FLOAT64, &means));
    double *mu = means->data;
    for (int64_t k = 0; k < means->nnz; k++) mu[k] *= k % 3 == 0 ? 10 : 1; /* means from 1 to 90 */
    OK(sbx_array_create(SBX_INT64, 1, (int64_t[]){means->nrows}, &trials));
    for (int64_t r = 0; r < means->nrows; r++) /* an empty row must have n = 0 */
        ((int64_t *)trials->data)[r] = means->indptr[r + 1] > means->indptr[r] ? 5 + r % 20 : 0;
    for (int t = 0; t < NTHREADS; t++)
        for (int k = 0; k < NDRAWS; k++) OK(draw(k, (uint32_t)t, &want_draws[t]));
    run_workers(draw_worker, 1);
    for (int t = 0; t < NTHREADS; t++) draws_free(&want_draws[t]);
    sbx_sparse_free(means);
    sbx_array_free(trials);
}

int main(void) {
    print_message("%d user threads; the library's own threads in each: %d\n", NTHREADS, sbx_get_num_threads());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plans),
        cmocka_unit_test(test_functions),
        cmocka_unit_test(test_generators),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
