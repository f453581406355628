/* The demo's network as an Op graph (see net.h). */
#include "net.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define TRY(expr)                                                                                                      \
    do {                                                                                                               \
        sbx_status try_st_ = (expr);                                                                                   \
        if (try_st_ != SBX_OK) return try_st_;                                                                         \
    } while (0)

static const char *const CONV_NAMES[NET_NPARAMS] = {"conv1_kernels", "conv1_bias",    "conv2_kernels",
                                                    "conv2_bias",    "dense_weights", "dense_bias"};
static const char *const LOCAL_NAMES[NET_NPARAMS] = {"conv1_kernels", "conv1_bias",    "local2_kernels",
                                                     "local2_bias",   "dense_weights", "dense_bias"};

const char *net_param_name(const net *n, int i) { return (n->local ? LOCAL_NAMES : CONV_NAMES)[i]; }

/* One node; *out its first output. */
static sbx_status node(net *n, const sbx_op_class *cls, const void *props, int nin, sbx_var *const *in,
                       sbx_var **out) {
    return sbx_apply(n->g, cls, props, nin, in, out);
}

/* A float32 parameter of the given shape, He-uniform with fan_in (zero when fan_in is 0), drawn from
 * position `index` of the stream. */
static sbx_status param(net *n, int index, int ndim, const int64_t *shape, int64_t fan_in, const sbx_rng *rng) {
    sbx_array *a;
    TRY(sbx_array_create(SBX_FLOAT32, ndim, shape, &a));
    if (fan_in > 0) {
        sbx_rng_cursor c;
        sbx_status st = sbx_rng_cursor_init(rng, index, &c);
        if (st != SBX_OK) {
            sbx_array_free(a);
            return st;
        }
        const double bound = sqrt(6.0 / (double)fan_in);
        float *w = a->data;
        for (int64_t i = 0; i < sbx_array_numel(a); i++) w[i] = (float)(bound * (2 * sbx_rng_double(&c) - 1));
    }
    sbx_value v = {a, NULL};
    sbx_status st = sbx_graph_shared(n->g, net_param_name(n, index), &v, &n->params[index]);
    sbx_value_clear(&v); /* empty when the graph took it */
    return st;
}

static sbx_status build(net *n, int training, uint64_t seed) {
    const int64_t side[2] = {NET_SIDE, NET_SIDE}, k[2] = {NET_KSIDE, NET_KSIDE}, two[2] = {2, 2};
    TRY(sbx_conv_shape_make(2, 1, side, k, NULL, SBX_CONV_VALID, &n->conv1));
    TRY(sbx_conv_shape_make(2, NET_MAPS1, n->conv1.out, two, two, SBX_CONV_VALID, &n->pool1));
    TRY(sbx_conv_shape_make(2, NET_MAPS1, n->pool1.out, k, NULL, SBX_CONV_VALID, &n->conv2));
    TRY(sbx_conv_shape_make(2, NET_MAPS2, n->conv2.out, two, two, SBX_CONV_VALID, &n->pool2));
    TRY(sbx_graph_create(&n->g));

    const sbx_type xt = sbx_type_dense(SBX_FLOAT32, 2, (const int64_t[]){-1, NET_PIXELS});
    const sbx_type yt = sbx_type_dense(SBX_INT64, 1, (const int64_t[]){-1});
    TRY(sbx_graph_input(n->g, "images", &xt, &n->images));
    TRY(sbx_graph_input(n->g, "labels", &yt, &n->labels));

    sbx_rng rng;
    sbx_rng_init(&rng, seed, 1);
    const int64_t taps1 = n->conv1.kernel_size, taps2 = NET_MAPS1 * n->conv2.kernel_size;
    TRY(param(n, NET_K1, 2, (const int64_t[]){NET_MAPS1, taps1}, taps1, &rng));
    TRY(param(n, NET_B1, 1, (const int64_t[]){NET_MAPS1}, 0, &rng));
    if (n->local) { /* a weight per (map, kernel, position, tap); a bias per output unit */
        TRY(param(n, NET_K2, 1, (const int64_t[]){NET_MAPS2 * n->conv2.out_size * taps2}, taps2, &rng));
        TRY(param(n, NET_B2, 1, (const int64_t[]){NET_MAPS2 * n->conv2.out_size}, 0, &rng));
    } else {
        TRY(param(n, NET_K2, 2, (const int64_t[]){NET_MAPS2, taps2}, taps2, &rng));
        TRY(param(n, NET_B2, 1, (const int64_t[]){NET_MAPS2}, 0, &rng));
    }
    TRY(param(n, NET_W, 2, (const int64_t[]){NET_FEATURES, NET_CLASSES}, NET_FEATURES, &rng));
    TRY(param(n, NET_WB, 1, (const int64_t[]){NET_CLASSES}, 0, &rng));
    {
        sbx_array *a;
        TRY(sbx_array_create(SBX_FLOAT32, 0, NULL, &a));
        sbx_value v = {a, NULL};
        sbx_status st = sbx_graph_shared(n->g, "lr", &v, &n->lr);
        sbx_value_clear(&v);
        TRY(st);
    }

    /* The features, shared by both paths. */
    const sbx_layer_props c1 = {n->conv1, NET_MAPS1}, c2 = {n->conv2, NET_MAPS2};
    const sbx_pool_props p1 = {n->pool1}, p2 = {n->pool2};
    sbx_var *h, *features;
    TRY(node(n, &sbx_op_convolve, &c1, 3, (sbx_var *[]){n->images, n->params[NET_K1], n->params[NET_B1]}, &h));
    TRY(node(n, &sbx_op_relu, NULL, 1, &h, &n->maps1));
    TRY(node(n, &sbx_op_max_pool, &p1, 1, &n->maps1, &h));
    TRY(node(n, n->local ? &sbx_op_local_connections : &sbx_op_convolve, &c2, 3,
             (sbx_var *[]){h, n->params[NET_K2], n->params[NET_B2]}, &h));
    TRY(node(n, &sbx_op_relu, NULL, 1, &h, &n->maps2));
    TRY(node(n, &sbx_op_max_pool, &p2, 1, &n->maps2, &features));

    /* The classifier: the evaluation path, then the training path through dropout. */
    const sbx_dot_props nn = {0, 0};
    const sbx_add_props plus = {1, 1};
    TRY(node(n, &sbx_op_dot, &nn, 2, (sbx_var *[]){features, n->params[NET_W]}, &h));
    TRY(node(n, &sbx_op_add, &plus, 2, (sbx_var *[]){h, n->params[NET_WB]}, &n->logits));
    if (!training) return SBX_OK;

    sbx_var *dropped = features;
    if (n->keep < 1) {
        sbx_var *trials, *p, *shape, *mask;
        TRY(sbx_graph_scalar(n->g, SBX_INT64, 1, &trials));
        TRY(sbx_graph_scalar(n->g, SBX_FLOAT32, n->keep, &p));
        sbx_array *s;
        TRY(sbx_array_create(SBX_INT64, 1, (const int64_t[]){2}, &s));
        ((int64_t *)s->data)[0] = n->batch;
        ((int64_t *)s->data)[1] = NET_FEATURES;
        sbx_value sv = {s, NULL};
        sbx_status st = sbx_graph_constant(n->g, "mask_shape", &sv, &shape);
        sbx_value_clear(&sv);
        TRY(st);
        const sbx_binomial_props bp = {SBX_CSR, SBX_FLOAT32};
        const sbx_scale_props inv = {1 / n->keep};
        TRY(node(n, &sbx_op_binomial, &bp, 3, (sbx_var *[]){trials, p, shape}, &mask));
        TRY(node(n, &sbx_op_dense_from_sparse, NULL, 1, &mask, &mask));
        TRY(node(n, &sbx_op_scale, &inv, 1, &mask, &mask));
        TRY(node(n, &sbx_op_mul, NULL, 2, (sbx_var *[]){features, mask}, &dropped));
        TRY(node(n, &sbx_op_dot, &nn, 2, (sbx_var *[]){dropped, n->params[NET_W]}, &h));
        TRY(node(n, &sbx_op_add, &plus, 2, (sbx_var *[]){h, n->params[NET_WB]}, &n->train_logits));
    } else {
        n->train_logits = n->logits;
    }
    TRY(node(n, &sbx_op_softmax_cross_entropy, NULL, 2, (sbx_var *[]){n->train_logits, n->labels}, &n->loss));
    TRY(sbx_adam(n->g, n->loss, NET_NPARAMS, n->params, n->lr, 0.9, 0.999, 1e-8, n->updates, &n->nupd));
    return SBX_OK;
}

int net_build(net *n, int local, int training, int64_t batch, double keep, uint64_t seed, char *err,
              size_t errsize) {
    memset(n, 0, sizeof *n);
    n->local = local;
    n->batch = batch;
    n->keep = keep;
    sbx_status st = build(n, training, seed);
    if (st != SBX_OK) {
        snprintf(err, errsize, "building the network: %s: %s", sbx_status_str(st), sbx_last_error());
        sbx_graph_free(n->g);
        n->g = NULL;
        return -1;
    }
    return 0;
}

void net_free(net *n) {
    sbx_graph_free(n->g);
    n->g = NULL;
}

int64_t net_param_count(const net *n) {
    int64_t total = 0;
    for (int i = 0; i < NET_NPARAMS; i++) total += sbx_array_numel(sbx_var_value(n->params[i])->dense);
    return total;
}

void net_set_lr(net *n, double lr) { *(float *)sbx_var_value(n->lr)->dense->data = (float)lr; }

static void param_path(const net *n, const char *dir, int i, char *path, size_t size) {
    snprintf(path, size, "%s/%s.npy", dir, net_param_name(n, i));
}

int net_save(const net *n, const char *dir, char *err, size_t errsize) {
    char path[4096];
    for (int i = 0; i < NET_NPARAMS; i++) {
        param_path(n, dir, i, path, sizeof path);
        sbx_status st = sbx_npy_write(path, sbx_var_value(n->params[i])->dense);
        if (st != SBX_OK) {
            snprintf(err, errsize, "cannot write %s: %s", path, sbx_last_error());
            return -1;
        }
    }
    return 0;
}

int net_load(net *n, const char *dir, char *err, size_t errsize) {
    char path[4096];
    for (int i = 0; i < NET_NPARAMS; i++) {
        param_path(n, dir, i, path, sizeof path);
        sbx_array *a;
        if (sbx_npy_read(path, &a) != SBX_OK) {
            snprintf(err, errsize, "cannot load the trained parameter %s: %s", path, sbx_last_error());
            return -1;
        }
        sbx_array *w = sbx_var_value(n->params[i])->dense;
        int same = a->dtype == w->dtype && a->ndim == w->ndim;
        for (int d = 0; same && d < w->ndim; d++) same = a->shape[d] == w->shape[d];
        if (!same) {
            sbx_type ta, tw;
            sbx_value va = {a, NULL}, vw = {w, NULL};
            char sa[128] = "?", sw[128] = "?";
            if (sbx_type_of(&va, &ta) == SBX_OK) sbx_type_str(&ta, sa, sizeof sa);
            if (sbx_type_of(&vw, &tw) == SBX_OK) sbx_type_str(&tw, sw, sizeof sw);
            snprintf(err, errsize, "%s holds %s, but the network's %s is %s", path, sa, net_param_name(n, i), sw);
            sbx_array_free(a);
            return -1;
        }
        memcpy(w->data, a->data, (size_t)sbx_array_numel(w) * sizeof(float));
        sbx_array_free(a);
    }
    return 0;
}
