/* Graphs: the arena of variables and apply nodes, make_node through sbx_apply, and the contract
 * called on one node. */
#include <string.h>

#include "op/internal.h"

sbx_status sbx_graph_create(sbx_graph **out) {
    if (!out) return sbx__error(SBX_ERR_ARG, "sbx_graph_create: out is NULL");
    return sbx__alloc(1, sizeof(sbx_graph), out, "graph");
}

void sbx_graph_free(sbx_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->nvars; i++) {
        sbx_var *v = g->vars[i];
        sbx_value_clear(&v->value);
        sbx__free(v->name);
        sbx__free(v);
    }
    for (int i = 0; i < g->nnodes; i++) {
        sbx__free((void *)g->nodes[i]->op.props);
        sbx__free(g->nodes[i]);
    }
    sbx__free(g->vars);
    sbx__free(g->nodes);
    sbx__free(g);
}

/* Room for one more pointer in *list (count n, capacity *cap). */
static sbx_status reserve(void *list, int n, int *cap, const char *what) {
    if (n < *cap) return SBX_OK;
    if (n >= (1 << 28)) return sbx__error(SBX_ERR_OVERFLOW, "%s: more than 2^28 in one graph", what);
    int c = *cap ? 2 * *cap : 16;
    SBX_CHECK(sbx__grow(c, sizeof(void *), list, what));
    *cap = c;
    return SBX_OK;
}

static sbx_status copy_name(const char *name, char **out) {
    *out = NULL;
    if (!name || !*name) return SBX_OK;
    size_t n = strlen(name);
    if (n > 4096) return sbx__error(SBX_ERR_ARG, "variable name of %zu characters (at most 4096)", n);
    SBX_CHECK(sbx__alloc((int64_t)n + 1, 1, out, "variable name"));
    memcpy(*out, name, n);
    return SBX_OK;
}

static sbx_status new_var(sbx_graph *g, sbx__var_role role, const char *name, const sbx_type *type, sbx_var **out) {
    sbx_var *v;
    SBX_CHECK(reserve(&g->vars, g->nvars, &g->cap_vars, "variables"));
    SBX_CHECK(sbx__alloc(1, sizeof *v, &v, "variable"));
    sbx_status st = copy_name(name, &v->name);
    if (st != SBX_OK) {
        sbx__free(v);
        return st;
    }
    v->graph = g;
    v->id = g->nvars;
    v->role = role;
    v->type = *type;
    v->index = -1;
    g->vars[g->nvars++] = v;
    *out = v;
    return SBX_OK;
}

sbx_status sbx_graph_input(sbx_graph *g, const char *name, const sbx_type *type, sbx_var **out) {
    if (!g || !out) return sbx__error(SBX_ERR_ARG, "sbx_graph_input: graph or out is NULL");
    SBX_CHECK(sbx_type_check(type, "input type"));
    return new_var(g, VAR_INPUT, name, type, out);
}

static sbx_status valued(sbx_graph *g, sbx__var_role role, const char *name, sbx_value *value, sbx_var **out) {
    const char *fn = role == VAR_SHARED ? "sbx_graph_shared" : "sbx_graph_constant";
    sbx_type t;
    if (!g || !out || !value) return sbx__error(SBX_ERR_ARG, "%s: graph, value or out is NULL", fn);
    if (sbx_type_of(value, &t) != SBX_OK) return sbx__error(SBX_ERR_ARG, "%s: %s", fn, sbx_last_error());
    if (value->sparse) SBX_CHECK(sbx_sparse_validate(value->sparse));
    SBX_CHECK(new_var(g, role, name, &t, out));
    (*out)->value = *value;
    value->dense = NULL;
    value->sparse = NULL;
    return SBX_OK;
}

sbx_status sbx_graph_shared(sbx_graph *g, const char *name, sbx_value *value, sbx_var **out) {
    return valued(g, VAR_SHARED, name, value, out);
}

sbx_status sbx_graph_constant(sbx_graph *g, const char *name, sbx_value *value, sbx_var **out) {
    return valued(g, VAR_CONSTANT, name, value, out);
}

sbx_status sbx_graph_scalar(sbx_graph *g, sbx_dtype dtype, double v, sbx_var **out) {
    sbx_array *a;
    if (!g || !out) return sbx__error(SBX_ERR_ARG, "sbx_graph_scalar: graph or out is NULL");
    if (!sbx__dtype_valid(dtype) || dtype == SBX_BOOL)
        return sbx__error(SBX_ERR_ARG, "sbx_graph_scalar: dtype %d is not a number type", (int)dtype);
    SBX_CHECK(sbx_array_create(dtype, 0, NULL, &a));
    sbx_status st = sbx__cast(a->data, dtype, &v, SBX_FLOAT64, 1, "scalar");
    sbx_value val = {a, NULL};
    if (st == SBX_OK) st = sbx_graph_constant(g, NULL, &val, out);
    sbx_value_clear(&val); /* empty on success */
    return st;
}

sbx_status sbx_apply(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, sbx_var *const *in,
                     sbx_var **out) {
    sbx_type tin[SBX_OP_MAX_INPUTS], tout[SBX_OP_MAX_OUTPUTS];
    int nout = 0;
    if (!g || !cls) return sbx__error(SBX_ERR_ARG, "sbx_apply: graph or op class is NULL");
    if (!cls->name || !cls->make_node || !cls->perform)
        return sbx__error(SBX_ERR_ARG, "sbx_apply: an op class needs a name, make_node and perform");
    if (cls->props_size && !props) return sbx__error(SBX_ERR_ARG, "%s: properties are NULL", cls->name);
    if (nin < 0 || nin > SBX_OP_MAX_INPUTS || (nin > 0 && !in))
        return sbx__error(SBX_ERR_ARG, "%s: %d inputs (at most %d)", cls->name, nin, SBX_OP_MAX_INPUTS);
    for (int i = 0; i < nin; i++) {
        if (!in[i]) return sbx__error(SBX_ERR_ARG, "%s: input %d is NULL", cls->name, i);
        if (in[i]->graph != g) return sbx__error(SBX_ERR_ARG, "%s: input %d belongs to another graph", cls->name, i);
        tin[i] = in[i]->type;
    }
    sbx_op op = {cls, props};
    memset(tout, 0, sizeof tout);
    SBX_CHECK(cls->make_node(&op, nin, tin, &nout, tout));
    if (nout < 1 || nout > SBX_OP_MAX_OUTPUTS)
        return sbx__error(SBX_ERR_ARG, "%s: make_node gave %d outputs", cls->name, nout);
    for (int j = 0; j < nout; j++) SBX_CHECK(sbx_type_check(&tout[j], cls->name));

    sbx_node *n;
    SBX_CHECK(reserve(&g->nodes, g->nnodes, &g->cap_nodes, "apply nodes"));
    /* Room for every output variable first, so that a failure leaves the graph as it was. */
    for (int j = 0; j < nout; j++) SBX_CHECK(reserve(&g->vars, g->nvars + j, &g->cap_vars, "variables"));
    SBX_CHECK(sbx__alloc(1, sizeof *n, &n, "apply node"));
    void *copy = NULL;
    sbx_status st = sbx__alloc((int64_t)cls->props_size, 1, &copy, "op properties");
    sbx_var *v[SBX_OP_MAX_OUTPUTS] = {NULL};
    for (int j = 0; st == SBX_OK && j < nout; j++) st = sbx__alloc(1, sizeof(sbx_var), &v[j], "variable");
    if (st != SBX_OK) {
        for (int j = 0; j < nout; j++) sbx__free(v[j]);
        sbx__free(copy);
        sbx__free(n);
        return st;
    }
    if (cls->props_size) memcpy(copy, props, cls->props_size);
    n->graph = g;
    n->id = g->nnodes;
    n->op.cls = cls;
    n->op.props = copy;
    n->nin = nin;
    n->nout = nout;
    for (int i = 0; i < nin; i++) n->in[i] = in[i];
    for (int j = 0; j < nout; j++) {
        v[j]->graph = g;
        v[j]->id = g->nvars;
        v[j]->role = VAR_OUTPUT;
        v[j]->type = tout[j];
        v[j]->owner = n;
        v[j]->index = j;
        g->vars[g->nvars++] = v[j];
        n->out[j] = v[j];
    }
    g->nodes[g->nnodes++] = n;
    if (out) *out = v[0];
    return SBX_OK;
}

/* --- Accessors ------------------------------------------------------------------------------- */
const sbx_type *sbx_var_type(const sbx_var *v) { return v ? &v->type : NULL; }
const char *sbx_var_name(const sbx_var *v) { return v && v->name ? v->name : ""; }
sbx_graph *sbx_var_graph(const sbx_var *v) { return v ? v->graph : NULL; }
sbx_node *sbx_var_owner(const sbx_var *v) { return v ? v->owner : NULL; }
int sbx_var_output_index(const sbx_var *v) { return v ? v->index : -1; }
sbx_value *sbx_var_value(sbx_var *v) {
    return v && (v->role == VAR_SHARED || v->role == VAR_CONSTANT) ? &v->value : NULL;
}

sbx_status sbx_var_set_name(sbx_var *v, const char *name) {
    char *copy;
    if (!v) return sbx__error(SBX_ERR_ARG, "sbx_var_set_name: variable is NULL");
    SBX_CHECK(copy_name(name, &copy));
    sbx__free(v->name);
    v->name = copy;
    return SBX_OK;
}

sbx_op sbx_node_op(const sbx_node *n) {
    sbx_op none = {NULL, NULL};
    return n ? n->op : none;
}
int sbx_node_id(const sbx_node *n) { return n ? n->id : -1; }
int sbx_node_ninputs(const sbx_node *n) { return n ? n->nin : 0; }
sbx_var *sbx_node_input(const sbx_node *n, int i) { return n && i >= 0 && i < n->nin ? n->in[i] : NULL; }
int sbx_node_noutputs(const sbx_node *n) { return n ? n->nout : 0; }
sbx_var *sbx_node_output(const sbx_node *n, int j) { return n && j >= 0 && j < n->nout ? n->out[j] : NULL; }

/* --- Op identity ----------------------------------------------------------------------------- */
int sbx_op_equal(const sbx_op *a, const sbx_op *b) {
    if (!a || !b || !a->cls || a->cls != b->cls) return 0;
    if (a->cls->props_size == 0) return 1;
    if (!a->props || !b->props) return 0;
    return a->cls->props_equal ? a->cls->props_equal(a->props, b->props)
                               : sbx__props_equal_bytes(a->props, b->props, a->cls->props_size);
}

uint64_t sbx_op_hash(const sbx_op *op) {
    if (!op || !op->cls) return 0;
    uint64_t h = sbx__hash_bytes(op->cls->name, strlen(op->cls->name), 0xcbf29ce484222325ull);
    if (op->cls->props_size == 0 || !op->props) return h;
    return op->cls->props_hash ? h ^ op->cls->props_hash(op->props)
                               : sbx__hash_bytes(op->props, op->cls->props_size, h);
}

uint64_t sbx_op_call_seed(uint64_t seed, int64_t k) {
    /* splitmix64's finaliser (Steele, Lea, Flood, "Fast splittable pseudorandom number generators",
     * OOPSLA 2014), on a Weyl sequence step of k + 1 */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(k + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* --- The contract on one node ----------------------------------------------------------------- */
static sbx_status check_inputs(const sbx_node *n, const sbx_value *in) {
    if (n->nin > 0 && !in) return sbx__error(SBX_ERR_ARG, "%s: input values are NULL", n->op.cls->name);
    for (int i = 0; i < n->nin; i++)
        if (!sbx_type_accepts(&n->in[i]->type, &in[i])) {
            char want[128], got[128] = "an empty or malformed value";
            sbx_type t;
            sbx_type_str(&n->in[i]->type, want, sizeof want);
            if (sbx_type_of(&in[i], &t) == SBX_OK) sbx_type_str(&t, got, sizeof got);
            return sbx__op_error(&n->op, i, sbx_var_name(n->in[i])[0] ? n->in[i]->name : "value",
                                 "expected %s, got %s", want, got);
        }
    return SBX_OK;
}

sbx_status sbx_node_infer_shape(const sbx_node *n, const sbx_value *in, sbx_type *out) {
    if (!n || !out) return sbx__error(SBX_ERR_ARG, "sbx_node_infer_shape: node or out is NULL");
    SBX_CHECK(check_inputs(n, in));
    if (!n->op.cls->infer_shape) return sbx__infer_from_types(&n->op, n->nin, in, n->nout, out);
    return n->op.cls->infer_shape(&n->op, n->nin, in, n->nout, out);
}

sbx_status sbx_node_perform(const sbx_node *n, const sbx_value *in, sbx_value *out, uint64_t seed) {
    if (!n || !out) return sbx__error(SBX_ERR_ARG, "sbx_node_perform: node or out is NULL");
    SBX_CHECK(check_inputs(n, in));
    void *state = NULL;
    sbx_perform_ctx ctx;
    ctx.state = &state;
    ctx.rng.seed = sbx_op_call_seed(seed, 0);
    ctx.rng.stream = (uint32_t)n->id;
    ctx.needed = (1u << n->nout) - 1;
    int empty[SBX_OP_MAX_OUTPUTS];
    for (int j = 0; j < n->nout; j++) empty[j] = !out[j].dense && !out[j].sparse;
    sbx_status st = n->op.cls->perform(&n->op, &ctx, n->nin, in, n->nout, out);
    if (state && n->op.cls->state_free) n->op.cls->state_free(state);
    /* A failed perform may have filled some outputs before another failed: storage that came empty
     * goes back empty, so that a failure leaves no half-made result. */
    for (int j = 0; st != SBX_OK && j < n->nout; j++)
        if (empty[j]) sbx_value_clear(&out[j]);
    return st;
}

sbx_status sbx_node_grad(sbx_graph *g, const sbx_node *n, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                         const char **reason) {
    if (!g || !n || !gout || !gin || !answer || !reason)
        return sbx__error(SBX_ERR_ARG, "sbx_node_grad: NULL argument");
    if (n->graph != g) return sbx__error(SBX_ERR_ARG, "%s: the node belongs to another graph", n->op.cls->name);
    /* Answered into locals, copied out on success: a failed grad leaves the caller's arrays as they were. */
    sbx_var *my_gin[SBX_OP_MAX_INPUTS];
    sbx_grad my_answer[SBX_OP_MAX_INPUTS];
    const char *my_reason[SBX_OP_MAX_INPUTS];
    for (int i = 0; i < n->nin; i++) {
        my_gin[i] = NULL;
        my_answer[i] = n->op.cls->grad ? SBX_GRAD_DISCONNECTED : SBX_GRAD_UNDEFINED;
        my_reason[i] = n->op.cls->grad ? NULL : "the op class has no grad"; /* a user's class without one */
    }
    if (n->op.cls->grad) SBX_CHECK(n->op.cls->grad(g, n, gout, my_gin, my_answer, my_reason));
    for (int i = 0; i < n->nin; i++) {
        gin[i] = my_gin[i];
        answer[i] = my_answer[i];
        reason[i] = my_reason[i];
    }
    return SBX_OK;
}

void sbx_node_connection_pattern(const sbx_node *n, int *pattern) {
    if (!n || !pattern) return;
    if (n->op.cls->connection_pattern)
        n->op.cls->connection_pattern(&n->op, n->nin, n->nout, pattern);
    else
        sbx__all_connected(&n->op, n->nin, n->nout, pattern);
}
