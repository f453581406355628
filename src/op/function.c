/* Compiled functions: a fixed order of the nodes that outputs and updates need, one value slot per
 * variable kept from call to call (perform reuses what a slot holds), each node's state (its plan),
 * and a pool of the blocks its kernels free, so that a call after the first allocates nothing. */
#include <string.h>

#include "op/internal.h"

struct sbx_function {
    sbx_graph *g;
    int nin, nout, nupd, nsteps, nvars;
    sbx_var **inputs, **outputs;
    sbx_update *updates;
    sbx_node **steps;       /* execution order */
    unsigned *needed;       /* per step: which outputs are used */
    void **states;          /* per step */
    sbx_value *slots;       /* per variable id: node outputs owned here; inputs and shared borrowed per call */
    sbx_value *staged;      /* per update whose value is not a node output: a copy made before any update */
    sbx_var **sources;      /* shared variables and constants the steps read */
    int nsources;
    uint64_t seed;
    int64_t calls;
    sbx__pool pool;
};

static const char *name_of(const sbx_var *v) { return v->name ? v->name : "unnamed"; }

void sbx_function_free(sbx_function *f) {
    if (!f) return;
    for (int s = 0; s < f->nsteps; s++)
        if (f->states && f->states[s] && f->steps[s]->op.cls->state_free) f->steps[s]->op.cls->state_free(f->states[s]);
    for (int i = 0; f->slots && i < f->nvars; i++)
        if (f->g->vars[i]->role == VAR_OUTPUT) sbx_value_clear(&f->slots[i]);
    for (int u = 0; f->staged && u < f->nupd; u++) sbx_value_clear(&f->staged[u]);
    sbx__pool_release(&f->pool);
    sbx__free(f->inputs);
    sbx__free(f->outputs);
    sbx__free(f->updates);
    sbx__free(f->steps);
    sbx__free(f->needed);
    sbx__free(f->states);
    sbx__free(f->slots);
    sbx__free(f->staged);
    sbx__free(f->sources);
    sbx__free(f);
}

void sbx_function_seed(sbx_function *f, uint64_t seed) {
    if (!f) return;
    f->seed = seed;
    f->calls = 0;
}

/* The update's value can become shared's: same kind, dtype and rank, and no known extent differs. */
static int update_fits(const sbx_type *shared, const sbx_type *value) {
    if (shared->kind != value->kind || shared->dtype != value->dtype || shared->ndim != value->ndim) return 0;
    if (shared->kind == SBX_KIND_SPARSE && shared->format != value->format) return 0;
    for (int d = 0; d < shared->ndim; d++)
        if (value->shape[d] >= 0 && value->shape[d] != shared->shape[d]) return 0;
    return 1;
}

static sbx_status check_args(sbx_graph *g, int nin, sbx_var *const *inputs, int nout, sbx_var *const *outputs,
                             int nupd, const sbx_update *updates) {
    if (nin < 0 || nout < 0 || nupd < 0 || (nin && !inputs) || (nout && !outputs) || (nupd && !updates))
        return sbx__error(SBX_ERR_ARG, "sbx_function_compile: a negative count or a NULL list (%d inputs, %d outputs, "
                          "%d updates)", nin, nout, nupd);
    for (int i = 0; i < nin; i++) {
        if (!inputs[i] || inputs[i]->graph != g)
            return sbx__error(SBX_ERR_ARG, "sbx_function_compile: inputs[%d] is NULL or of another graph", i);
        if (inputs[i]->role != VAR_INPUT)
            return sbx__error(SBX_ERR_ARG, "sbx_function_compile: inputs[%d] (%s) is not a graph input (shared variables, "
                              "constants and node outputs get no value from the caller)", i, name_of(inputs[i]));
        for (int k = 0; k < i; k++)
            if (inputs[k] == inputs[i])
                return sbx__error(SBX_ERR_ARG, "sbx_function_compile: inputs[%d] and inputs[%d] are the same variable (%s)",
                                  k, i, name_of(inputs[i]));
    }
    for (int j = 0; j < nout; j++)
        if (!outputs[j] || outputs[j]->graph != g)
            return sbx__error(SBX_ERR_ARG, "sbx_function_compile: outputs[%d] is NULL or of another graph", j);
    for (int u = 0; u < nupd; u++) {
        const sbx_var *s = updates[u].shared, *v = updates[u].value;
        if (!s || !v || s->graph != g || v->graph != g)
            return sbx__error(SBX_ERR_ARG, "sbx_function_compile: updates[%d] has a NULL variable or one of another graph", u);
        if (s->role != VAR_SHARED)
            return sbx__error(SBX_ERR_ARG, "sbx_function_compile: updates[%d] assigns to %s, which is not a shared variable",
                              u, name_of(s));
        if (!update_fits(&s->type, &v->type)) {
            char a[128], b[128];
            sbx_type_str(&s->type, a, sizeof a);
            sbx_type_str(&v->type, b, sizeof b);
            return sbx__error(SBX_ERR_ARG, "sbx_function_compile: updates[%d] gives shared %s of type %s a value of type %s",
                              u, name_of(s), a, b);
        }
        for (int k = 0; k < u; k++)
            if (updates[k].shared == s)
                return sbx__error(SBX_ERR_ARG, "sbx_function_compile: updates[%d] and updates[%d] both assign to %s", k, u,
                                  name_of(s));
    }
    return SBX_OK;
}

sbx_status sbx_function_compile(sbx_graph *g, int nin, sbx_var *const *inputs, int nout, sbx_var *const *outputs,
                                int nupd, const sbx_update *updates, uint64_t seed, sbx_function **out) {
    if (!g || !out) return sbx__error(SBX_ERR_ARG, "sbx_function_compile: graph or out is NULL");
    SBX_CHECK(check_args(g, nin, inputs, nout, outputs, nupd, updates));
    sbx_function *f;
    SBX_CHECK(sbx__alloc(1, sizeof *f, &f, "function"));
    f->g = g;
    f->nvars = g->nvars;
    f->seed = seed;
    unsigned char *used = NULL; /* per variable: an output, an update's value, or read by a kept node */
    sbx_status st = sbx__alloc(g->nvars, 1, &used, "function marks");
    if (st == SBX_OK) st = sbx__alloc(nin, sizeof(sbx_var *), &f->inputs, "function inputs");
    if (st == SBX_OK) st = sbx__alloc(nout, sizeof(sbx_var *), &f->outputs, "function outputs");
    if (st == SBX_OK) st = sbx__alloc(nupd, sizeof(sbx_update), &f->updates, "function updates");
    if (st == SBX_OK) st = sbx__alloc(nupd, sizeof(sbx_value), &f->staged, "function updates");
    if (st == SBX_OK) st = sbx__alloc(g->nvars, sizeof(sbx_value), &f->slots, "function values");
    if (st == SBX_OK) st = sbx__alloc(g->nnodes, sizeof(sbx_node *), &f->steps, "function steps");
    if (st == SBX_OK) st = sbx__alloc(g->nnodes, sizeof(unsigned), &f->needed, "function steps");
    if (st == SBX_OK) st = sbx__alloc(g->nnodes, sizeof(void *), &f->states, "function states");
    if (st == SBX_OK) st = sbx__alloc(g->nvars, sizeof(sbx_var *), &f->sources, "function sources");
    if (st != SBX_OK) {
        sbx__free(used);
        sbx_function_free(f);
        return st;
    }
    f->nin = nin;
    f->nout = nout;
    f->nupd = nupd;
    if (nin) memcpy(f->inputs, inputs, (size_t)nin * sizeof *inputs); /* the lists may be NULL when empty */
    if (nout) memcpy(f->outputs, outputs, (size_t)nout * sizeof *outputs);
    if (nupd) memcpy(f->updates, updates, (size_t)nupd * sizeof *updates);
    for (int j = 0; j < nout; j++) used[outputs[j]->id] = 1;
    for (int u = 0; u < nupd; u++) used[updates[u].value->id] = 1;
    /* Backwards through the creation order (a topological order): a node is kept when one of its
     * outputs is used, and then its inputs are. */
    int kept = 0;
    for (int t = g->nnodes - 1; t >= 0; t--) {
        const sbx_node *n = g->nodes[t];
        unsigned need = 0;
        for (int j = 0; j < n->nout; j++)
            if (used[n->out[j]->id]) need |= 1u << j;
        if (!need) continue;
        for (int i = 0; i < n->nin; i++) used[n->in[i]->id] = 1;
        f->needed[kept] = need;
        f->steps[kept++] = g->nodes[t];
    }
    f->nsteps = kept;
    for (int a = 0, b = kept - 1; a < b; a++, b--) { /* into execution order */
        sbx_node *tn = f->steps[a];
        unsigned tu = f->needed[a];
        f->steps[a] = f->steps[b];
        f->needed[a] = f->needed[b];
        f->steps[b] = tn;
        f->needed[b] = tu;
    }
    for (int i = 0; st == SBX_OK && i < g->nvars; i++) {
        sbx_var *v = g->vars[i];
        if (!used[i]) continue;
        if (v->role == VAR_SHARED || v->role == VAR_CONSTANT) f->sources[f->nsources++] = v;
        if (v->role != VAR_INPUT) continue;
        int listed = 0;
        for (int k = 0; k < nin; k++) listed |= inputs[k] == v;
        if (!listed)
            st = sbx__error(SBX_ERR_ARG, "sbx_function_compile: graph input %d (%s) is needed but not among the inputs",
                            v->id, name_of(v));
    }
    sbx__free(used);
    if (st != SBX_OK) {
        sbx_function_free(f);
        return st;
    }
    *out = f;
    return SBX_OK;
}

/* Copies a value into storage (reusing it where it fits). */
static sbx_status stage(const sbx_value *v, sbx_value *storage) {
    if (v->dense) {
        sbx_array *a;
        SBX_CHECK(sbx_output_dense(storage, v->dense->dtype, v->dense->ndim, v->dense->shape, 0, &a));
        int64_t n = sbx_array_numel(a);
        if (n > 0) memcpy(a->data, v->dense->data, (size_t)n * sbx_dtype_size(a->dtype));
        return SBX_OK;
    }
    sbx_sparse *m;
    SBX_CHECK(sbx_sparse_copy(v->sparse, &m));
    sbx_output_sparse(storage, m);
    return SBX_OK;
}

/* The error of step s, with the node named before the op's own message. */
static sbx_status step_error(sbx_status st, const sbx_node *n) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", sbx_last_error());
    return sbx__error(st, "node %d (%s): %s", n->id, n->op.cls->name, msg);
}

static sbx_status run(sbx_function *f, const sbx_value *in) {
    sbx_value *slot = f->slots;
    for (int i = 0; i < f->nin; i++) {
        const sbx_var *v = f->inputs[i];
        if (!sbx_type_accepts(&v->type, &in[i])) {
            char want[128], got[128] = "an empty or malformed value";
            sbx_type t;
            sbx_type_str(&v->type, want, sizeof want);
            if (sbx_type_of(&in[i], &t) == SBX_OK) sbx_type_str(&t, got, sizeof got);
            return sbx__error(SBX_ERR_ARG, "sbx_function_call: input %d (%s): expected %s, got %s", i, name_of(v), want, got);
        }
        slot[v->id] = in[i];
    }
    for (int k = 0; k < f->nsources; k++) {
        const sbx_var *v = f->sources[k];
        if (!sbx_type_accepts(&v->type, &v->value))
            return sbx__error(SBX_ERR_ARG, "sbx_function_call: shared variable or constant %d (%s) no longer holds a value "
                              "of its type", v->id, name_of(v));
        slot[v->id] = v->value;
    }
    for (int s = 0; s < f->nsteps; s++) {
        const sbx_node *n = f->steps[s];
        sbx_value args[SBX_OP_MAX_INPUTS];
        for (int i = 0; i < n->nin; i++) args[i] = slot[n->in[i]->id];
        sbx_perform_ctx ctx;
        ctx.state = &f->states[s];
        ctx.rng.seed = sbx_op_call_seed(f->seed, f->calls);
        ctx.rng.stream = (uint32_t)n->id;
        ctx.needed = f->needed[s];
        sbx_value *res = &slot[n->out[0]->id]; /* a node's outputs are consecutive variables */
        sbx_status st = n->op.cls->perform(&n->op, &ctx, n->nin, args, n->nout, res);
        if (st != SBX_OK) return step_error(st, n);
        for (int j = 0; j < n->nout; j++)
            if ((ctx.needed >> j & 1) && !sbx_type_accepts(&n->out[j]->type, &res[j])) {
                char want[128], got[128] = "an empty or malformed value";
                sbx_type t;
                sbx_type_str(&n->out[j]->type, want, sizeof want);
                if (sbx_type_of(&res[j], &t) == SBX_OK) sbx_type_str(&t, got, sizeof got);
                return sbx__error(SBX_ERR_ARG, "node %d (%s): output %d is %s but make_node typed it %s", n->id,
                                  n->op.cls->name, j, got, want);
            }
    }
    /* Updates at once: values that are not node outputs (a shared variable, an input) are copied
     * first, so that every update reads the old values. */
    for (int u = 0; u < f->nupd; u++) {
        const sbx_update *up = &f->updates[u];
        const sbx_value *v = &slot[up->value->id];
        if (!sbx_type_accepts(&up->shared->type, v))
            return sbx__error(SBX_ERR_ARG, "sbx_function_call: updates[%d]: the value for %s does not have its type", u,
                              name_of(up->shared));
        if (up->value->role != VAR_OUTPUT) SBX_CHECK(stage(v, &f->staged[u]));
    }
    /* The sparse values' copies are made before any update is applied, so that a failed allocation
     * leaves every shared variable as it was. */
    sbx_sparse **copies = NULL;
    int nsparse = 0;
    for (int u = 0; u < f->nupd; u++) nsparse += f->updates[u].shared->type.kind == SBX_KIND_SPARSE;
    if (nsparse > 0) SBX_CHECK(sbx__alloc(f->nupd, sizeof *copies, &copies, "sparse updates"));
    sbx_status st = SBX_OK;
    for (int u = 0; st == SBX_OK && u < f->nupd; u++) {
        const sbx_update *up = &f->updates[u];
        const sbx_value *v = up->value->role == VAR_OUTPUT ? &slot[up->value->id] : &f->staged[u];
        if (v->sparse) st = sbx_sparse_copy(v->sparse, &copies[u]);
    }
    for (int u = 0; st == SBX_OK && u < f->nupd; u++) {
        sbx_update *up = &f->updates[u];
        const sbx_value *v = up->value->role == VAR_OUTPUT ? &slot[up->value->id] : &f->staged[u];
        if (v->dense) {
            sbx_array *dst = up->shared->value.dense;
            int64_t n = sbx_array_numel(dst);
            if (n > 0 && dst->data != v->dense->data) memcpy(dst->data, v->dense->data, (size_t)n * sbx_dtype_size(dst->dtype));
        } else {
            sbx_output_sparse(&up->shared->value, copies[u]);
            copies[u] = NULL;
        }
    }
    for (int u = 0; copies && u < f->nupd; u++) sbx_sparse_free(copies[u]);
    sbx__free(copies);
    return st;
}

sbx_status sbx_function_call(sbx_function *f, const sbx_value *in, sbx_value *out) {
    if (!f || (f->nin > 0 && !in)) return sbx__error(SBX_ERR_ARG, "sbx_function_call: function or inputs are NULL");
    sbx__pool *before = sbx__pool_enter(&f->pool);
    sbx_status st = run(f, in);
    f->pool.serve = 1; /* from the second call on (internal.h says why) */
    sbx__pool_enter(before);
    for (int i = 0; i < f->nin; i++) { /* borrowed: never kept past the call */
        f->slots[f->inputs[i]->id].dense = NULL;
        f->slots[f->inputs[i]->id].sparse = NULL;
    }
    if (st != SBX_OK) return st;
    f->calls++;
    for (int j = 0; out && j < f->nout; j++) {
        const sbx_var *v = f->outputs[j];
        if (v->role == VAR_OUTPUT) {
            out[j] = f->slots[v->id];
        } else if (v->role == VAR_INPUT) {
            for (int i = 0; i < f->nin; i++)
                if (f->inputs[i] == v) out[j] = in[i];
        } else {
            out[j] = v->value; /* after the updates */
        }
    }
    return SBX_OK;
}
