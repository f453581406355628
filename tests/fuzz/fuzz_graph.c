/* Graph building from an arbitrary sequence of op applications. The bytes are a little program: a few
 * starting variables (inputs, shared values, constants, scalars: dense or sparse, small shapes, small
 * integer values), then instructions, each applying one of the library's op classes (sbx_op_classes)
 * with properties built from the bytes (a raw byte copy now and then) to variables made earlier; then
 * perhaps the gradient of a 0-d cost, and a compiled function called on small values. Checks: a
 * refusal anywhere leaves a message and no output; a function called twice from the same seed (the
 * second call after sbx_function_seed, reusing the first call's storage) gives the same bytes;
 * printing the graph works. */
#include <string.h>

#include "fuzz.h"

#define MAX_VARS 48
#define MAX_INPUTS 4
#define MAX_STEPS 12
#define MAX_OUTPUTS 4

typedef struct {
    sbx_graph *g;
    sbx_var *vars[MAX_VARS];
    int nvars;
    sbx_var *inputs[MAX_INPUTS];
    sbx_value values[MAX_INPUTS]; /* one value for each input, of its type */
    int ninputs;
} program;

static void push(program *p, sbx_var *v) {
    if (p->nvars < MAX_VARS) p->vars[p->nvars++] = v;
}

static sbx_dtype pick_dtype(fuzz_bytes *b) {
    static const sbx_dtype common[] = {SBX_FLOAT64, SBX_FLOAT32, SBX_INT64, SBX_FLOAT64};
    uint8_t c = fuzz_u8(b);
    return c < 252 ? common[c % 4] : (sbx_dtype)(c % SBX_NUM_DTYPES);
}

/* A dense array of small integers (0..3 for unsigned and bool dtypes, -2..2 otherwise). */
static sbx_array *small_array(fuzz_bytes *b, sbx_dtype dtype, int ndim, const int64_t *shape) {
    sbx_array *a = NULL, *f = NULL;
    FUZZ_REQUIRE(sbx_array_create(SBX_FLOAT64, ndim, shape, &f) == SBX_OK, "sbx_array_create");
    int unsigned_ = dtype == SBX_BOOL || dtype >= SBX_UINT8;
    for (int64_t i = 0; i < sbx_array_numel(f); i++) {
        int v = unsigned_ ? fuzz_u8(b) % (dtype == SBX_BOOL ? 2 : 4) : fuzz_u8(b) % 5 - 2;
        ((double *)f->data)[i] = v;
    }
    FUZZ_REQUIRE(sbx_array_cast(f, dtype, &a) == SBX_OK, "sbx_array_cast");
    sbx_array_free(f);
    return a;
}

static void start_variable(program *p, fuzz_bytes *b) {
    sbx_dtype dtype = pick_dtype(b);
    int ndim = (int)fuzz_range(b, 0, 3);
    int64_t shape[SBX_MAX_NDIM] = {0}, declared[SBX_MAX_NDIM] = {0};
    for (int d = 0; d < ndim; d++) {
        shape[d] = fuzz_range(b, 1, 4);
        declared[d] = fuzz_u8(b) % 4 == 0 ? -1 : shape[d];
    }
    sbx_var *v = NULL;
    sbx_status st;
    sbx_value value = {0};
    int kind = (int)fuzz_range(b, 0, 4);
    fuzz_clear_error();
    if (kind == 0 && p->ninputs < MAX_INPUTS) {
        sbx_type t = sbx_type_dense(dtype, ndim, declared);
        st = sbx_graph_input(p->g, "x", &t, &v);
        if (st == SBX_OK) {
            p->inputs[p->ninputs] = v;
            p->values[p->ninputs].dense = small_array(b, dtype, ndim, shape);
            p->ninputs++;
        }
    } else if (kind == 4) {
        st = sbx_graph_scalar(p->g, dtype, fuzz_u8(b) % 5 - 2, &v);
    } else {
        value.dense = small_array(b, dtype, ndim, shape);
        if (kind == 3 && ndim == 2) { /* a sparse value */
            sbx_sparse *m = NULL;
            if (sbx_sparse_from_dense(value.dense, fuzz_u8(b) & 1 ? SBX_CSC : SBX_CSR, &m) == SBX_OK) {
                sbx_array_free(value.dense);
                value.dense = NULL;
                value.sparse = m;
            }
        }
        st = kind == 1 ? sbx_graph_shared(p->g, "w", &value, &v) : sbx_graph_constant(p->g, "c", &value, &v);
        if (st == SBX_OK) FUZZ_REQUIRE(!value.dense && !value.sparse, "the graph did not take the value over");
        sbx_value_clear(&value);
    }
    if (st != SBX_OK)
        fuzz_check_failure(st, "making a starting variable");
    else if (v)
        push(p, v);
}

/* A small shape for the layer ops' properties (valid or not: make_node checks). */
static void layer_shape(fuzz_bytes *b, sbx_conv_shape *s) {
    int ndim = (int)fuzz_range(b, 1, 2);
    int64_t in[2], kernel[2], stride[2];
    for (int d = 0; d < 2; d++) {
        in[d] = fuzz_range(b, 1, 5);
        kernel[d] = fuzz_range(b, 1, 3);
        stride[d] = fuzz_range(b, 1, 2);
    }
    if (sbx_conv_shape_make(ndim, fuzz_range(b, 1, 2), in, kernel, stride, (sbx_conv_mode)fuzz_range(b, 0, 1), s) !=
        SBX_OK)
        memset(s, 0, sizeof *s); /* refused by make_node, with a message */
}

static double small_double(fuzz_bytes *b) { return (fuzz_u8(b) % 9 - 4) / 4.0; }

/* The properties of cls from the bytes, into props (zeroed, cls->props_size bytes). */
static void make_props(const sbx_op_class *cls, fuzz_bytes *b, unsigned char *props) {
    const char *n = cls->name;
    if (fuzz_u8(b) == 255) { /* any bytes: make_node must refuse what is out of range */
        for (size_t i = 0; i < cls->props_size; i++) props[i] = fuzz_u8(b);
        return;
    }
    if (!strcmp(n, "Convolve") || !strcmp(n, "ConvBackward") || !strcmp(n, "LocalConnections") ||
        !strcmp(n, "LocalBackward")) {
        sbx_layer_props *q = (sbx_layer_props *)props;
        layer_shape(b, &q->shape);
        q->nkern = fuzz_range(b, 1, 2);
    } else if (!strcmp(n, "MaxPool") || !strcmp(n, "MaxPoolGrad")) {
        layer_shape(b, &((sbx_pool_props *)props)->shape);
    } else if (!strcmp(n, "ConvolutionIndices")) {
        sbx_conv_indices_props *q = (sbx_conv_indices_props *)props;
        layer_shape(b, &q->shape);
        q->weight_sharing = fuzz_u8(b) & 1;
        q->nkern = q->weight_sharing ? 1 : fuzz_range(b, 1, 2);
        q->format = fuzz_u8(b) & 1 ? SBX_CSC : SBX_CSR;
    } else if (!strcmp(n, "Binomial")) {
        sbx_binomial_props *q = (sbx_binomial_props *)props;
        q->format = fuzz_u8(b) & 1 ? SBX_CSC : SBX_CSR;
        q->dtype = pick_dtype(b);
    } else if (!strcmp(n, "StructuredDot")) {
        ((sbx_structured_dot_props *)props)->transpose_sparse = fuzz_u8(b) & 1;
    } else if (!strcmp(n, "SampledDot")) {
        sbx_sampled_dot_props *q = (sbx_sampled_dot_props *)props;
        q->transpose_x = fuzz_u8(b) & 1;
        q->transpose_y = fuzz_u8(b) & 1;
    } else if (!strcmp(n, "SparseFromDense")) {
        ((sbx_format_props *)props)->format = fuzz_u8(b) & 1 ? SBX_CSC : SBX_CSR;
    } else if (!strcmp(n, "Dot")) {
        sbx_dot_props *q = (sbx_dot_props *)props;
        q->transpose_a = fuzz_u8(b) & 1;
        q->transpose_b = fuzz_u8(b) & 1;
    } else if (!strcmp(n, "Add")) {
        sbx_add_props *q = (sbx_add_props *)props;
        q->alpha = small_double(b);
        q->beta = small_double(b);
    } else if (!strcmp(n, "Scale")) {
        ((sbx_scale_props *)props)->c = small_double(b);
    } else if (!strcmp(n, "Reshape")) {
        sbx_reshape_props *q = (sbx_reshape_props *)props;
        q->ndim = (int)fuzz_range(b, 0, 3);
        for (int d = 0; d < q->ndim; d++) q->shape[d] = fuzz_range(b, -1, 6);
    } else if (!strcmp(n, "Sum") || !strcmp(n, "Mean")) {
        ((sbx_reduce_props *)props)->axis = (int)fuzz_range(b, -1, 2);
    } else if (!strcmp(n, "SumTo") || !strcmp(n, "BroadcastLike")) {
        ((sbx_broadcast_props *)props)->mean = fuzz_u8(b) & 1;
    } else if (!strcmp(n, "SgdStep")) {
        ((sbx_sgd_props *)props)->momentum = small_double(b);
    } else if (!strcmp(n, "AdamStep")) {
        sbx_adam_props *q = (sbx_adam_props *)props;
        q->beta1 = 0.9;
        q->beta2 = 0.999;
        q->eps = fuzz_u8(b) & 1 ? 1e-8 : small_double(b);
    } else {
        FUZZ_REQUIRE(cls->props_size == 0, "class %s has properties this fuzzer does not know", n);
    }
}

static void step(program *p, fuzz_bytes *b, const sbx_op_class *const *classes, int nclasses) {
    const sbx_op_class *cls = classes[fuzz_range(b, 0, nclasses - 1)];
    int nin = (int)fuzz_range(b, 0, 6);
    sbx_var *in[SBX_OP_MAX_INPUTS];
    unsigned char props[512] = {0};
    FUZZ_REQUIRE(cls->props_size <= sizeof props, "props of %zu bytes", cls->props_size);
    for (int i = 0; i < nin; i++) in[i] = p->vars[fuzz_range(b, 0, p->nvars - 1)];
    make_props(cls, b, props);
    sbx_var *out = NULL;
    fuzz_clear_error();
    sbx_status st = sbx_apply(p->g, cls, cls->props_size ? props : NULL, nin, in, &out);
    if (st != SBX_OK) {
        fuzz_check_failure(st, cls->name);
        FUZZ_REQUIRE(!out, "a refused apply set its output");
        return;
    }
    sbx_node *node = sbx_var_owner(out);
    FUZZ_REQUIRE(node && sbx_node_ninputs(node) == nin, "the node of an apply");
    for (int j = 0; j < sbx_node_noutputs(node); j++) push(p, sbx_node_output(node, j));
}

static int is_float(const sbx_type *t) { return t->dtype == SBX_FLOAT32 || t->dtype == SBX_FLOAT64; }

/* A copy of a function's output, to compare with a later call's. */
static sbx_value copy_value(const sbx_value *v) {
    sbx_value c = {0};
    if (v->dense) FUZZ_REQUIRE(sbx_array_copy(v->dense, &c.dense) == SBX_OK, "sbx_array_copy");
    if (v->sparse) FUZZ_REQUIRE(sbx_sparse_copy(v->sparse, &c.sparse) == SBX_OK, "sbx_sparse_copy");
    return c;
}

static int values_equal(const sbx_value *a, const sbx_value *b) {
    if (!a->dense != !b->dense || !a->sparse != !b->sparse) return 0;
    if (a->dense) return fuzz_arrays_equal(a->dense, b->dense);
    return !a->sparse || fuzz_sparse_equal(a->sparse, b->sparse, 1);
}

static void compile_and_call(program *p, fuzz_bytes *b, sbx_var *const *outputs, int nout) {
    uint64_t seed = fuzz_u64(b);
    sbx_function *f = NULL;
    sbx_update upd;
    int nupd = 0;
    /* An update now and then: the first shared variable from an output of its type. */
    for (int i = 0; i < p->nvars && fuzz_u8(b) & 1; i++)
        if (sbx_var_value(p->vars[i]) && !sbx_var_owner(p->vars[i])) {
            upd = (sbx_update){p->vars[i], outputs[fuzz_range(b, 0, nout - 1)]};
            nupd = 1;
            break;
        }
    fuzz_clear_error();
    sbx_status st = sbx_function_compile(p->g, p->ninputs, p->inputs, nout, outputs, nupd, &upd, seed, &f);
    if (st != SBX_OK) {
        fuzz_check_failure(st, "sbx_function_compile");
        FUZZ_REQUIRE(!f, "a refused compile set its output");
        return;
    }
    sbx_value out[MAX_OUTPUTS] = {{0}}, first[MAX_OUTPUTS] = {{0}};
    fuzz_clear_error();
    st = sbx_function_call(f, p->values, out);
    if (st != SBX_OK) {
        fuzz_check_failure(st, "sbx_function_call");
    } else if (!nupd) {
        /* Without updates, the same seed gives the same bytes (updates change the shared values). */
        for (int j = 0; j < nout; j++) first[j] = copy_value(&out[j]);
        sbx_function_seed(f, seed);
        FUZZ_REQUIRE(sbx_function_call(f, p->values, out) == SBX_OK, "a second call failed where the first worked");
        for (int j = 0; j < nout; j++) {
            FUZZ_REQUIRE(values_equal(&first[j], &out[j]), "output %d differs between two calls of one seed", j);
            sbx_value_clear(&first[j]);
        }
    }
    sbx_function_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes b = {data, size};
    program p = {0};
    int nclasses = 0;
    const sbx_op_class *const *classes = sbx_op_classes(&nclasses);
    FUZZ_REQUIRE(sbx_graph_create(&p.g) == SBX_OK, "sbx_graph_create");
    int nstart = (int)fuzz_range(&b, 1, 4), nsteps = (int)fuzz_range(&b, 0, MAX_STEPS);
    for (int i = 0; i < nstart; i++) start_variable(&p, &b);
    for (int i = 0; i < nsteps && p.nvars > 0; i++) step(&p, &b, classes, nclasses);
    if (p.nvars == 0) goto done;
    /* Outputs: the last variables made. */
    int nout = (int)fuzz_range(&b, 1, MAX_OUTPUTS);
    sbx_var *outputs[MAX_OUTPUTS + 8];
    if (nout > p.nvars) nout = p.nvars;
    for (int j = 0; j < nout; j++) outputs[j] = p.vars[p.nvars - 1 - j];
    /* The gradient of a 0-d float variable, if there is one, with respect to some earlier variables. */
    if (fuzz_u8(&b) & 1) {
        sbx_var *cost = NULL, *wrt[4], *grads[4] = {0};
        for (int i = p.nvars - 1; i >= 0 && !cost; i--) {
            const sbx_type *t = sbx_var_type(p.vars[i]);
            if (t->kind == SBX_KIND_DENSE && t->ndim == 0 && is_float(t)) cost = p.vars[i];
        }
        int nwrt = (int)fuzz_range(&b, 1, 4);
        for (int i = 0; i < nwrt; i++) wrt[i] = p.vars[fuzz_range(&b, 0, p.nvars - 1)];
        if (cost) {
            fuzz_clear_error();
            sbx_status st = sbx_gradient(p.g, cost, nwrt, wrt, fuzz_u8(&b) & 1 ? SBX_GRAD_ALLOW_DISCONNECTED : 0, grads);
            if (st != SBX_OK) {
                fuzz_check_failure(st, "sbx_gradient");
            } else {
                for (int i = 0; i < nwrt && nout < MAX_OUTPUTS; i++) outputs[nout++] = grads[i];
            }
        }
    }
    FILE *sink = fopen("/dev/null", "w");
    if (sink) {
        FUZZ_REQUIRE(sbx_graph_print(p.g, nout, outputs, sink) == SBX_OK, "sbx_graph_print");
        fclose(sink);
    }
    if (fuzz_u8(&b) % 4 != 0) compile_and_call(&p, &b, outputs, nout);
done:
    for (int i = 0; i < p.ninputs; i++) sbx_value_clear(&p.values[i]);
    sbx_graph_free(p.g);
    return 0;
}
