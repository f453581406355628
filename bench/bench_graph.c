/* bench_graph: the Op layer's own cost on a training step. One step of a small convolutional network,
 *     conv(1->16, 5x5) -> ReLU -> max_pool 2x2 -> conv(16->32, 5x5) -> ReLU -> max_pool 2x2
 *     -> dense(512->10) -> softmax cross-entropy,
 * float32, batch 64, images 28x28 (conv1 16x24x24, pool 16x12x12, conv2 32x8x8, pool 32x4x4 = 512
 * features), conv biases included, the dense layer Dot(features, W) + bias (Add broadcasting), trained
 * by SGD with momentum 0.9, is run two ways in the same process:
 *  - "function": the graph built with sbx_apply, the updates from sbx_sgd (lr a 0-d shared float32),
 *    compiled once with sbx_function_compile; a step is one sbx_function_call;
 *  - "hand": the same computations with the same kernels and no graph: sbx_conv_forward and
 *    sbx_conv_backward on plans made once, sbx_pool_forward_mask and sbx_pool_backward_mask, and for
 *    the dense steps the library's op classes called directly through their perform pointers (Relu,
 *    Dot, Add, SoftmaxCrossEntropy, SoftmaxCrossEntropyGrad, Dot with transposes for the gradients,
 *    SumTo for the bias gradient, ReluGrad, SgdStep), each call site keeping its own state pointer and
 *    its output storage across steps, as the function's value slots do. The parameters and velocities
 *    live in two buffers each that SgdStep writes alternately (the new values into the other buffer),
 *    where the function copies each update into the shared variable's array: that copy is counted as
 *    the function's overhead.
 * The hand version calls the ops the gradient graph holds, in its order (run with -v to see the graph
 * on stderr), so the ratio measures the graph's own cost (ordering, value slots, type checks, the
 * allocation pool, the update copies), not different arithmetic.
 *
 * Checks: both versions start from the same parameters and see the same batches (NBATCHES fixed
 * batches in turn); after CHECK_STEPS steps, and again after everything (both have then taken the same
 * number of steps, at 1 and then 2 threads), the loss and the bytes of every parameter and velocity
 * must be equal. "same results: no" makes the exit status 1.
 *
 * Timing: for 1 and then 2 threads (sbx_set_num_threads(n), and openblas_set_num_threads(n) when
 * OpenBLAS is loaded, as bench_layers does), WARMUP_STEPS steps of each version, then ROUNDS rounds of
 * n steps of each, the two alternated (A B, then B A, ...) so that drift in the machine's speed hits
 * both alike; n (1 to MAX_STEPS_PER_ROUND) is set from the warm-up steps so that the rounds take
 * about ROUND_BUDGET_SECONDS per thread count. A round's figure is its seconds per step; each
 * version's figure is the median over the rounds, and the ratio is function / hand. Goal: at most GOAL (3% more). The "paired" column
 * is the median of the per-round ratios, a second view less sensitive to slow drift; "cpu" is process
 * CPU time over wall time during that version's rounds (the cores actually kept busy).
 *
 * The last line is "graph overhead: R1 (1 thread), R2 (2 threads)".
 *
 * Usage: bench_graph [-v]
 *   -v  print the compiled function's nodes (sbx_graph_print) to stderr first */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sparsebox/conv.h>
#include <sparsebox/core.h>
#include <sparsebox/op.h>

#define BENCH_NAME "bench_graph"
#include "bench_util.h"

#define BATCH 64
#define SIDE 28
#define KSIZE 5
#define MAPS1 16
#define MAPS2 32
#define FEATURES 512
#define CLASSES 10
#define NBATCHES 4
#define LEARNING_RATE 0.01
#define MOMENTUM 0.9

#define CHECK_STEPS 3
#define WARMUP_STEPS 3
#define ROUNDS 15
#define MAX_STEPS_PER_ROUND 20
#ifndef ROUND_BUDGET_SECONDS /* -DROUND_BUDGET_SECONDS=0 for a quick run (one step per round) */
#define ROUND_BUDGET_SECONDS 20.0 /* the timed rounds of both versions, per thread count */
#endif
#define GOAL 1.03

#define NUM_THREADS 2
static const int THREADS[NUM_THREADS] = {1, 2};

/* The parameters, in the order given to sbx_sgd. */
enum { P_K1, P_B1, P_K2, P_B2, P_W, P_WB, NPARAMS };
static const char *const PARAM_NAMES[NPARAMS] = {"k1", "b1", "k2", "b2", "w", "wb"};

enum { V_FUNCTION = 0, V_HAND = 1, NVERSIONS = 2 };

static int report(const char *what, sbx_status st) {
    fprintf(stderr, "%s: %s failed: %s: %s\n", BENCH_NAME, what, sbx_status_str(st), sbx_last_error());
    return 1;
}

/* ---- OpenBLAS threads, looked up at run time so that any CBLAS still links ---- */

/* ---- the data: shapes, batches, initial parameters ---- */

typedef struct net_data {
    sbx_conv_shape conv1, pool1, conv2, pool2;
    sbx_array *images[NBATCHES], *labels[NBATCHES];
    sbx_array *init[NPARAMS];
} net_data;

/* A float32 array of shape[0..ndim-1], uniform in [lo, hi). */
static sbx_status uniform_array(int ndim, const int64_t *shape, double lo, double hi, uint64_t *rng, sbx_array **out) {
    sbx_status st = sbx_array_create(SBX_FLOAT32, ndim, shape, out);
    if (st != SBX_OK) return st;
    float *p = (*out)->data;
    for (int64_t i = 0; i < sbx_array_numel(*out); i++) p[i] = (float)(lo + (hi - lo) * uniform01(rng));
    return SBX_OK;
}

static void data_free(net_data *d) {
    for (int b = 0; b < NBATCHES; b++) {
        sbx_array_free(d->images[b]);
        sbx_array_free(d->labels[b]);
    }
    for (int p = 0; p < NPARAMS; p++) sbx_array_free(d->init[p]);
    memset(d, 0, sizeof *d);
}

static int data_make(net_data *d) {
    memset(d, 0, sizeof *d);
    const int64_t side[2] = {SIDE, SIDE}, kernel[2] = {KSIZE, KSIZE}, window[2] = {2, 2};
    sbx_status st = sbx_conv_shape_make(2, 1, side, kernel, NULL, SBX_CONV_VALID, &d->conv1);
    if (st == SBX_OK) st = sbx_conv_shape_make(2, MAPS1, d->conv1.out, window, window, SBX_CONV_VALID, &d->pool1);
    if (st == SBX_OK) st = sbx_conv_shape_make(2, MAPS1, d->pool1.out, kernel, NULL, SBX_CONV_VALID, &d->conv2);
    if (st == SBX_OK) st = sbx_conv_shape_make(2, MAPS2, d->conv2.out, window, window, SBX_CONV_VALID, &d->pool2);
    if (st != SBX_OK) return report("sbx_conv_shape_make", st);
    if (MAPS2 * d->pool2.out_size != FEATURES) {
        fprintf(stderr, "%s: the second pool gives %lld features, not %d\n", BENCH_NAME,
                (long long)(MAPS2 * d->pool2.out_size), FEATURES);
        return 1;
    }
    uint64_t rng = 20240611u;
    const int64_t ishape[2] = {BATCH, SIDE * SIDE}, lshape[1] = {BATCH};
    for (int b = 0; st == SBX_OK && b < NBATCHES; b++) {
        st = uniform_array(2, ishape, 0.0, 1.0, &rng, &d->images[b]);
        if (st == SBX_OK) st = sbx_array_create(SBX_INT64, 1, lshape, &d->labels[b]);
        for (int64_t i = 0; st == SBX_OK && i < BATCH; i++)
            ((int64_t *)d->labels[b]->data)[i] = (int64_t)(splitmix64(&rng) % CLASSES);
    }
    /* Weights uniform in +-sqrt(3 / fan_in) (variance 1 / fan_in), biases zero; a second extent of 0
     * marks a vector. */
    const int64_t shapes[NPARAMS][2] = {{MAPS1, KSIZE * KSIZE}, {MAPS1, 0},          {MAPS2, MAPS1 * KSIZE * KSIZE},
                                        {MAPS2, 0},             {FEATURES, CLASSES}, {CLASSES, 0}};
    for (int p = 0; st == SBX_OK && p < NPARAMS; p++) {
        const int ndim = shapes[p][1] ? 2 : 1;
        const double a = ndim == 2 ? sqrt(3.0 / (double)(p == P_W ? FEATURES : shapes[p][1])) : 0.0;
        st = uniform_array(ndim, shapes[p], -a, a, &rng, &d->init[p]);
    }
    if (st != SBX_OK) {
        data_free(d);
        return report("making the data", st);
    }
    return 0;
}


/* A 0-d float32 value holding v. */
static sbx_status scalar_value(double v, sbx_value *out) {
    out->sparse = NULL;
    sbx_status st = sbx_array_create(SBX_FLOAT32, 0, NULL, &out->dense);
    if (st == SBX_OK) ((float *)out->dense->data)[0] = (float)v;
    return st;
}

static int same_array(const sbx_array *a, const sbx_array *b) {
    if (!a || !b || a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return !memcmp(a->data, b->data, (size_t)sbx_array_numel(a) * sbx_dtype_size(a->dtype));
}

/* ---- the compiled function ---- */

typedef struct graph_net {
    sbx_graph *g;
    sbx_function *f;
    sbx_var *x, *y, *lr, *loss, *params[NPARAMS], *velocity[NPARAMS];
    sbx_update updates[2 * NPARAMS];
    int nupd;
    int64_t steps;
} graph_net;

static void graph_free(graph_net *gn) {
    sbx_function_free(gn->f);
    sbx_graph_free(gn->g);
    memset(gn, 0, sizeof *gn);
}

/* The network on x, ending in the loss (gn->loss). */
static sbx_status graph_network(graph_net *gn, const net_data *d) {
    sbx_graph *g = gn->g;
    sbx_layer_props conv1, conv2; /* the shapes have padding: zeroed first, as sbx_apply copies the bytes */
    sbx_pool_props pool1, pool2;
    memset(&conv1, 0, sizeof conv1);
    memset(&conv2, 0, sizeof conv2);
    memset(&pool1, 0, sizeof pool1);
    memset(&pool2, 0, sizeof pool2);
    conv1.shape = d->conv1;
    conv1.nkern = MAPS1;
    conv2.shape = d->conv2;
    conv2.nkern = MAPS2;
    pool1.shape = d->pool1;
    pool2.shape = d->pool2;
    const sbx_dot_props nn = {0, 0};
    const sbx_add_props plus = {1.0, 1.0};
    sbx_var *const *p = gn->params;
    sbx_var *c1, *r1, *p1, *c2, *r2, *p2, *dot, *logits;
    sbx_status st = sbx_apply(g, &sbx_op_convolve, &conv1, 3, (sbx_var *[]){gn->x, p[P_K1], p[P_B1]}, &c1);
    if (st == SBX_OK) st = sbx_apply(g, &sbx_op_relu, NULL, 1, &c1, &r1);
    if (st == SBX_OK) st = sbx_apply(g, &sbx_op_max_pool, &pool1, 1, &r1, &p1); /* output 0; the mask is output 1 */
    if (st == SBX_OK) st = sbx_apply(g, &sbx_op_convolve, &conv2, 3, (sbx_var *[]){p1, p[P_K2], p[P_B2]}, &c2);
    if (st == SBX_OK) st = sbx_apply(g, &sbx_op_relu, NULL, 1, &c2, &r2);
    if (st == SBX_OK) st = sbx_apply(g, &sbx_op_max_pool, &pool2, 1, &r2, &p2);
    if (st == SBX_OK) st = sbx_apply(g, &sbx_op_dot, &nn, 2, (sbx_var *[]){p2, p[P_W]}, &dot);
    if (st == SBX_OK) st = sbx_apply(g, &sbx_op_add, &plus, 2, (sbx_var *[]){dot, p[P_WB]}, &logits);
    if (st == SBX_OK)
        st = sbx_apply(g, &sbx_op_softmax_cross_entropy, NULL, 2, (sbx_var *[]){logits, gn->y}, &gn->loss);
    return st;
}

/* The graph, its SGD updates and the compiled function; prints the function's nodes when verbose. */
static int graph_make(graph_net *gn, const net_data *d, int verbose) {
    memset(gn, 0, sizeof *gn);
    sbx_status st = sbx_graph_create(&gn->g);
    if (st != SBX_OK) return report("sbx_graph_create", st);
    const int64_t xshape[2] = {BATCH, SIDE * SIDE}, yshape[1] = {BATCH};
    const sbx_type xt = sbx_type_dense(SBX_FLOAT32, 2, xshape), yt = sbx_type_dense(SBX_INT64, 1, yshape);
    st = sbx_graph_input(gn->g, "images", &xt, &gn->x);
    if (st == SBX_OK) st = sbx_graph_input(gn->g, "labels", &yt, &gn->y);
    for (int p = 0; st == SBX_OK && p < NPARAMS; p++) {
        sbx_value v = {NULL, NULL};
        st = sbx_array_copy(d->init[p], &v.dense);
        if (st == SBX_OK) st = sbx_graph_shared(gn->g, PARAM_NAMES[p], &v, &gn->params[p]);
        sbx_value_clear(&v); /* empty when the graph took it over */
    }
    if (st == SBX_OK) {
        sbx_value v;
        st = scalar_value(LEARNING_RATE, &v);
        if (st == SBX_OK) st = sbx_graph_shared(gn->g, "lr", &v, &gn->lr);
        sbx_value_clear(&v);
    }
    if (st != SBX_OK) {
        graph_free(gn);
        return report("making the graph's variables", st);
    }
    if ((st = graph_network(gn, d)) != SBX_OK) {
        graph_free(gn);
        return report("building the network (sbx_apply)", st);
    }
    if ((st = sbx_sgd(gn->g, gn->loss, NPARAMS, gn->params, gn->lr, MOMENTUM, gn->updates, &gn->nupd)) != SBX_OK) {
        graph_free(gn);
        return report("sbx_sgd", st);
    }
    int layout = gn->nupd == 2 * NPARAMS; /* (parameter, velocity) per parameter, in order */
    for (int p = 0; layout && p < NPARAMS; p++) {
        layout = gn->updates[2 * p].shared == gn->params[p];
        gn->velocity[p] = gn->updates[2 * p + 1].shared;
    }
    if (!layout) {
        fprintf(stderr, "%s: sbx_sgd gave %d updates, not (parameter, velocity) for each of %d parameters\n",
                BENCH_NAME, gn->nupd, NPARAMS);
        graph_free(gn);
        return 1;
    }
    sbx_var *const ins[2] = {gn->x, gn->y};
    if ((st = sbx_function_compile(gn->g, 2, ins, 1, &gn->loss, gn->nupd, gn->updates, 1, &gn->f)) != SBX_OK) {
        graph_free(gn);
        return report("sbx_function_compile", st);
    }
    if (verbose) {
        sbx_var *outs[1 + 2 * NPARAMS];
        outs[0] = gn->loss;
        for (int u = 0; u < gn->nupd; u++) outs[1 + u] = gn->updates[u].value;
        fprintf(stderr, "the compiled function's nodes (the loss and the updates' values):\n");
        if ((st = sbx_graph_print(gn->g, 1 + gn->nupd, outs, stderr)) != SBX_OK) {
            graph_free(gn);
            return report("sbx_graph_print", st);
        }
    }
    return 0;
}

static sbx_status graph_step(graph_net *gn, const net_data *d, float *loss) {
    const int b = (int)(gn->steps % NBATCHES);
    const sbx_value in[2] = {{d->images[b], NULL}, {d->labels[b], NULL}};
    sbx_value out;
    sbx_status st = sbx_function_call(gn->f, in, &out);
    if (st != SBX_OK) return st;
    *loss = ((const float *)out.dense->data)[0];
    gn->steps++;
    return SBX_OK;
}

/* ---- the same step written by hand ---- */

/* A call site of an op class: the op and the state its perform keeps (as a function's node has). */
typedef struct site {
    sbx_op op;
    void *state;
} site;

static const sbx_dot_props DOT_NN = {0, 0}, DOT_TN = {1, 0}, DOT_NT = {0, 1};
static const sbx_add_props ADD_PLUS = {1.0, 1.0};
static const sbx_broadcast_props SUM_TO = {0};
static const sbx_sgd_props SGD = {MOMENTUM};

typedef struct hand_net {
    sbx_conv_plan *conv1, *pool1, *conv2, *pool2;
    /* [parameter][buffer][0: the parameter, 1: its velocity]: SgdStep reads buffer cur and writes
     * the other one, which becomes cur. */
    sbx_value buf[NPARAMS][2][2];
    int cur;
    sbx_value lr, one;
    /* The dense ops' output storage, kept across steps. */
    sbx_value r1, r2, dot, logits, loss, glogits, gwb, gp2, gw, gc2, gc1;
    site relu1, relu2, dot_fwd, add, sce, sce_grad, sum_to_wb, dot_gp2, dot_gw, relu_grad2, relu_grad1;
    site sgd[NPARAMS];
    int64_t steps;
} hand_net;

static void site_init(site *s, const sbx_op_class *cls, const void *props) {
    s->op.cls = cls;
    s->op.props = props;
    s->state = NULL;
}

static void site_free(site *s) {
    if (s->state && s->op.cls && s->op.cls->state_free) s->op.cls->state_free(s->state);
    s->state = NULL;
}

/* perform through the class's pointer, as a function's call does for a node. */
static sbx_status perform(site *s, unsigned needed, int nin, const sbx_value *in, int nout, sbx_value *out) {
    sbx_perform_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.state = &s->state;
    ctx.needed = needed;
    return s->op.cls->perform(&s->op, &ctx, nin, in, nout, out);
}

static void hand_free(hand_net *h) {
    sbx_conv_plan_free(h->conv1);
    sbx_conv_plan_free(h->pool1);
    sbx_conv_plan_free(h->conv2);
    sbx_conv_plan_free(h->pool2);
    for (int p = 0; p < NPARAMS; p++)
        for (int b = 0; b < 2; b++)
            for (int k = 0; k < 2; k++) sbx_value_clear(&h->buf[p][b][k]);
    sbx_value *values[] = {&h->lr, &h->one, &h->r1, &h->r2, &h->dot, &h->logits, &h->loss, &h->glogits,
                           &h->gwb, &h->gp2, &h->gw, &h->gc2, &h->gc1};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) sbx_value_clear(values[i]);
    site *sites[] = {&h->relu1, &h->relu2, &h->dot_fwd, &h->add, &h->sce, &h->sce_grad,
                     &h->sum_to_wb, &h->dot_gp2, &h->dot_gw, &h->relu_grad2, &h->relu_grad1};
    for (size_t i = 0; i < sizeof sites / sizeof sites[0]; i++) site_free(sites[i]);
    for (int p = 0; p < NPARAMS; p++) site_free(&h->sgd[p]);
    memset(h, 0, sizeof *h);
}

static int hand_make(hand_net *h, const net_data *d) {
    memset(h, 0, sizeof *h);
    sbx_status st = sbx_conv_plan_create(&d->conv1, MAPS1, SBX_FLOAT32, &h->conv1);
    if (st == SBX_OK) st = sbx_pool_plan_create(&d->pool1, SBX_FLOAT32, &h->pool1);
    if (st == SBX_OK) st = sbx_conv_plan_create(&d->conv2, MAPS2, SBX_FLOAT32, &h->conv2);
    if (st == SBX_OK) st = sbx_pool_plan_create(&d->pool2, SBX_FLOAT32, &h->pool2);
    for (int p = 0; st == SBX_OK && p < NPARAMS; p++) { /* buffer 1 is made by the first SgdStep */
        st = sbx_array_copy(d->init[p], &h->buf[p][0][0].dense);
        if (st == SBX_OK)
            st = sbx_array_create(SBX_FLOAT32, d->init[p]->ndim, d->init[p]->shape, &h->buf[p][0][1].dense);
    }
    if (st == SBX_OK) st = scalar_value(LEARNING_RATE, &h->lr);
    if (st == SBX_OK) st = scalar_value(1.0, &h->one);
    if (st != SBX_OK) {
        hand_free(h);
        return report("making the hand-written step's plans and parameters", st);
    }
    site_init(&h->relu1, &sbx_op_relu, NULL);
    site_init(&h->relu2, &sbx_op_relu, NULL);
    site_init(&h->dot_fwd, &sbx_op_dot, &DOT_NN);
    site_init(&h->add, &sbx_op_add, &ADD_PLUS);
    site_init(&h->sce, &sbx_op_softmax_cross_entropy, NULL);
    site_init(&h->sce_grad, &sbx_op_softmax_cross_entropy_grad, NULL);
    site_init(&h->sum_to_wb, &sbx_op_sum_to, &SUM_TO);
    site_init(&h->dot_gp2, &sbx_op_dot, &DOT_NT);
    site_init(&h->dot_gw, &sbx_op_dot, &DOT_TN);
    site_init(&h->relu_grad2, &sbx_op_relu_grad, NULL);
    site_init(&h->relu_grad1, &sbx_op_relu_grad, NULL);
    for (int p = 0; p < NPARAMS; p++) site_init(&h->sgd[p], &sbx_op_sgd_step, &SGD);
    return 0;
}

#define TRY(call)                                                                                                    \
    do {                                                                                                             \
        if ((st = (call)) != SBX_OK) goto done;                                                                      \
    } while (0)
#define VAL(a) ((sbx_value){(a), NULL})

/* One training step: the function's nodes in its order, by hand. The layer plans return new arrays
 * (freed at the end of the step); the dense ops write into the storage kept in h. */
static sbx_status hand_step(hand_net *h, const net_data *d, float *loss) {
    const int b = (int)(h->steps % NBATCHES), cur = h->cur;
#define PARAM(p) (h->buf[p][cur][0].dense)
    sbx_array *x = d->images[b];
    const sbx_value y = VAL(d->labels[b]);
    sbx_array *c1 = NULL, *p1 = NULL, *m1 = NULL, *c2 = NULL, *p2 = NULL, *m2 = NULL;
    sbx_array *gr2 = NULL, *gp1 = NULL, *gk2 = NULL, *gb2 = NULL, *gr1 = NULL, *gk1 = NULL, *gb1 = NULL;
    sbx_status st;
    /* forward */
    TRY(sbx_conv_forward(h->conv1, x, PARAM(P_K1), PARAM(P_B1), &c1));
    TRY(perform(&h->relu1, 1u, 1, (sbx_value[]){VAL(c1)}, 1, &h->r1));
    TRY(sbx_pool_forward_mask(h->pool1, h->r1.dense, &p1, &m1));
    TRY(sbx_conv_forward(h->conv2, p1, PARAM(P_K2), PARAM(P_B2), &c2));
    TRY(perform(&h->relu2, 1u, 1, (sbx_value[]){VAL(c2)}, 1, &h->r2));
    TRY(sbx_pool_forward_mask(h->pool2, h->r2.dense, &p2, &m2));
    TRY(perform(&h->dot_fwd, 1u, 2, (sbx_value[]){VAL(p2), VAL(PARAM(P_W))}, 1, &h->dot));
    TRY(perform(&h->add, 1u, 2, (sbx_value[]){h->dot, VAL(PARAM(P_WB))}, 1, &h->logits));
    TRY(perform(&h->sce, 1u, 2, (sbx_value[]){h->logits, y}, 1, &h->loss));
    /* backward */
    TRY(perform(&h->sce_grad, 1u, 3, (sbx_value[]){h->logits, y, h->one}, 1, &h->glogits));
    TRY(perform(&h->sum_to_wb, 1u, 2, (sbx_value[]){h->glogits, VAL(PARAM(P_WB))}, 1, &h->gwb));
    TRY(perform(&h->dot_gp2, 1u, 2, (sbx_value[]){h->glogits, VAL(PARAM(P_W))}, 1, &h->gp2));
    TRY(perform(&h->dot_gw, 1u, 2, (sbx_value[]){VAL(p2), h->glogits}, 1, &h->gw));
    TRY(sbx_pool_backward_mask(h->pool2, m2, h->gp2.dense, &gr2));
    TRY(perform(&h->relu_grad2, 1u, 2, (sbx_value[]){VAL(c2), VAL(gr2)}, 1, &h->gc2));
    TRY(sbx_conv_backward(h->conv2, p1, PARAM(P_K2), h->gc2.dense, &gp1, &gk2, &gb2));
    TRY(sbx_pool_backward_mask(h->pool1, m1, gp1, &gr1));
    TRY(perform(&h->relu_grad1, 1u, 2, (sbx_value[]){VAL(c1), VAL(gr1)}, 1, &h->gc1));
    TRY(sbx_conv_backward(h->conv1, x, PARAM(P_K1), h->gc1.dense, NULL, &gk1, &gb1));
    /* updates */
    sbx_array *const grads[NPARAMS] = {gk1, gb1, gk2, gb2, h->gw.dense, h->gwb.dense};
    for (int p = 0; p < NPARAMS; p++) {
        const sbx_value in[4] = {h->buf[p][cur][0], h->buf[p][cur][1], VAL(grads[p]), h->lr};
        TRY(perform(&h->sgd[p], 3u, 4, in, 2, h->buf[p][1 - cur]));
    }
    *loss = ((const float *)h->loss.dense->data)[0];
    h->cur = 1 - cur;
    h->steps++;
#undef PARAM
done:
    sbx_array_free(c1);
    sbx_array_free(p1);
    sbx_array_free(m1);
    sbx_array_free(c2);
    sbx_array_free(p2);
    sbx_array_free(m2);
    sbx_array_free(gr2);
    sbx_array_free(gp1);
    sbx_array_free(gk2);
    sbx_array_free(gb2);
    sbx_array_free(gr1);
    sbx_array_free(gk1);
    sbx_array_free(gb1);
    return st;
}

/* ---- both ---- */

typedef struct bench {
    net_data data;
    graph_net graph;
    hand_net hand;
    float loss[NVERSIONS]; /* each version's latest loss */
} bench;

static int step(bench *bn, int version) {
    sbx_status st = version == V_FUNCTION ? graph_step(&bn->graph, &bn->data, &bn->loss[V_FUNCTION])
                                          : hand_step(&bn->hand, &bn->data, &bn->loss[V_HAND]);
    return st == SBX_OK ? 0 : report(version == V_FUNCTION ? "sbx_function_call" : "the hand-written step", st);
}

/* Same loss and the same bytes in every parameter and velocity; prints what it found. */
static int same_results(const bench *bn, const char *when) {
    const graph_net *gn = &bn->graph;
    const hand_net *h = &bn->hand;
    int same = gn->steps == h->steps && !memcmp(&bn->loss[V_FUNCTION], &bn->loss[V_HAND], sizeof(float));
    char differ[256] = "";
    for (int p = 0; p < NPARAMS; p++) {
        const sbx_array *gp = sbx_var_value(gn->params[p])->dense, *gv = sbx_var_value(gn->velocity[p])->dense;
        int eq = same_array(gp, h->buf[p][h->cur][0].dense) && same_array(gv, h->buf[p][h->cur][1].dense);
        if (!eq) {
            size_t n = strlen(differ);
            snprintf(differ + n, sizeof differ - n, " %s", PARAM_NAMES[p]);
        }
        same &= eq;
    }
    printf("check %s: %lld steps each, loss %.6f (function) %.6f (hand), parameters and velocities %s%s\n", when,
           (long long)gn->steps, bn->loss[V_FUNCTION], bn->loss[V_HAND], differ[0] ? "differ in" : "equal",
           differ[0] ? differ : "");
    return same;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One thread count's figures: seconds per step (medians over the rounds), cores busy, the median of
 * the per-round ratios function / hand, and the steps per round. */
typedef struct figure {
    double seconds[NVERSIONS], cores[NVERSIONS], paired;
    int steps;
} figure;

/* Steps per round for the rounds of both versions to take about ROUND_BUDGET_SECONDS in all, when a
 * step takes `seconds` (the median of the warm-up steps after each version's first): from 1 to
 * MAX_STEPS_PER_ROUND. */
static int steps_for(double seconds) {
    const double n = seconds > 0 ? ROUND_BUDGET_SECONDS / (NVERSIONS * ROUNDS * seconds) : MAX_STEPS_PER_ROUND;
    return n < 1 ? 1 : n > MAX_STEPS_PER_ROUND ? MAX_STEPS_PER_ROUND : (int)n;
}

static int measure(bench *bn, int threads, figure *fig) {
    double per_step[NVERSIONS][ROUNDS], ratios[ROUNDS], cpu[NVERSIONS] = {0, 0}, wall[NVERSIONS] = {0, 0};
    double warm[NVERSIONS * (WARMUP_STEPS - 1)]; /* the warm-up steps after each version's first */
    int nwarm = 0;
    set_threads(threads);
    for (int v = 0; v < NVERSIONS; v++)
        for (int s = 0; s < WARMUP_STEPS; s++) {
            const double t0 = now_seconds();
            if (step(bn, v)) return 1;
            if (s > 0) warm[nwarm++] = now_seconds() - t0;
        }
    const int steps = fig->steps = steps_for(median(warm, nwarm));
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < NVERSIONS; k++) {
            const int v = k ^ (r & 1); /* A B, then B A */
            const double c0 = cpu_now(), t0 = now_seconds();
            for (int s = 0; s < steps; s++)
                if (step(bn, v)) return 1;
            const double t = now_seconds() - t0;
            cpu[v] += cpu_now() - c0;
            wall[v] += t;
            per_step[v][r] = t / steps;
        }
        ratios[r] = per_step[V_FUNCTION][r] / per_step[V_HAND][r];
    }
    for (int v = 0; v < NVERSIONS; v++) {
        fig->seconds[v] = median(per_step[v], ROUNDS);
        fig->cores[v] = wall[v] > 0 ? cpu[v] / wall[v] : 0;
    }
    fig->paired = median(ratios, ROUNDS);
    return 0;
}

/* ---- output ---- */

static void print_header(void) {
    const char *coretype = getenv("OPENBLAS_CORETYPE"), *core = blas_string("openblas_get_corename");
    printf("bench_graph: one training step as a compiled function (sbx_function_call) against the same plan and "
           "perform calls written by hand\n");
    printf("network: conv(1->%d, %dx%d) -> ReLU -> max_pool 2x2 -> conv(%d->%d, %dx%d) -> ReLU -> max_pool 2x2 -> "
           "dense(%d->%d) -> softmax cross-entropy\n",
           MAPS1, KSIZE, KSIZE, MAPS1, MAPS2, KSIZE, KSIZE, FEATURES, CLASSES);
    printf("         float32, batch %d, images %dx%d, SGD momentum %.1f, lr %.2f, %d fixed batches in turn\n", BATCH,
           SIDE, SIDE, MOMENTUM, LEARNING_RATE, NBATCHES);
    print_machine();
    printf("OPENBLAS_CORETYPE=%s\n", coretype ? coretype : "(unset)");
    if (core)
        printf("OpenBLAS core: %s\n", core);
    else
        printf("BLAS: not OpenBLAS (no openblas_get_corename); BLAS threads not pinned\n");
    printf("timing: per thread count, %d warm-up steps per version, then %d rounds of n steps per version, "
           "alternated (A B, B A, ...),\n  n (1 to %d) set from the warm-up steps for ~%.0f s of rounds; ms = "
           "median over the rounds of the time per step;\n  paired = median of the per-round ratios; cpu = process "
           "CPU time / wall time during the version's rounds (cores busy)\n",
           WARMUP_STEPS, ROUNDS, MAX_STEPS_PER_ROUND, (double)ROUND_BUDGET_SECONDS);
    fflush(stdout);
}

static void print_table(const figure *fig) {
    printf("\n  %7s %3s %12s %5s %12s %5s %14s %8s  %s\n", "threads", "n", "function ms", "cpu", "hand ms", "cpu",
           "function/hand", "paired", "goal");
    for (int t = 0; t < NUM_THREADS; t++) {
        const figure *f = &fig[t];
        const double ratio = f->seconds[V_FUNCTION] / f->seconds[V_HAND];
        printf("  %7d %3d %12.3f %5.2f %12.3f %5.2f %14.3f %8.3f  <= %.2f %s\n", THREADS[t], f->steps,
               f->seconds[V_FUNCTION] * 1e3,
               f->cores[V_FUNCTION], f->seconds[V_HAND] * 1e3, f->cores[V_HAND], ratio, f->paired, GOAL,
               ratio <= GOAL ? "met" : "MISSED");
    }
    printf("\n");
}

int main(int argc, char **argv) {
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v")) {
            verbose = 1;
        } else {
            fprintf(stderr, "usage: %s [-v]\n", argv[0]);
            return 2;
        }
    }
    static bench bn;
    if (data_make(&bn.data)) return 1;
    if (graph_make(&bn.graph, &bn.data, verbose)) {
        data_free(&bn.data);
        return 1;
    }
    if (hand_make(&bn.hand, &bn.data)) {
        graph_free(&bn.graph);
        data_free(&bn.data);
        return 1;
    }
    print_header();
    int failed = 0, same = 1;
    figure fig[NUM_THREADS];
    set_threads(THREADS[0]);
    for (int s = 0; !failed && s < CHECK_STEPS; s++) failed = step(&bn, V_FUNCTION) || step(&bn, V_HAND);
    if (!failed) {
        char when[64];
        snprintf(when, sizeof when, "after %d steps (%d thread)", CHECK_STEPS, THREADS[0]);
        same &= same_results(&bn, when);
    }
    for (int t = 0; !failed && t < NUM_THREADS; t++) failed = measure(&bn, THREADS[t], &fig[t]);
    if (!failed) {
        same &= same_results(&bn, "after the timing (1 and 2 threads)");
        print_table(fig);
        printf("same results: %s\n", same ? "yes" : "no");
        printf("graph overhead: %.3f (1 thread), %.3f (2 threads)\n", fig[0].seconds[V_FUNCTION] / fig[0].seconds[V_HAND],
               fig[1].seconds[V_FUNCTION] / fig[1].seconds[V_HAND]);
    }
    hand_free(&bn.hand);
    graph_free(&bn.graph);
    data_free(&bn.data);
    return failed || !same ? 1 : 0;
}
