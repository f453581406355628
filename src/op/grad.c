/* Reverse-mode gradients: each node's grad, from the cost back to the variables asked for. */
#include <string.h>

#include "op/internal.h"

/* What a failed answer names: "Binomial (node 3), input 1 (p)". */
static const char *input_name(const sbx_node *n, int i) {
    return n->in[i]->name ? n->in[i]->name : "unnamed";
}

/* total += g, by an Add node when total already holds a gradient. */
static sbx_status accumulate(sbx_graph *g, const sbx_node *n, int i, sbx_var **total, sbx_var *gin) {
    if (!*total) {
        *total = gin;
        return SBX_OK;
    }
    if (gin->type.kind == SBX_KIND_SPARSE || (*total)->type.kind == SBX_KIND_SPARSE)
        return sbx__error(SBX_ERR_UNSUPPORTED,
                          "sbx_gradient: variable %d (%s) feeds several nodes and its gradient is sparse (through %s, "
                          "node %d): sparse gradients are not summed",
                          n->in[i]->id, input_name(n, i), n->op.cls->name, n->id);
    const sbx_add_props sum = {1.0, 1.0};
    sbx_var *pair[2] = {*total, gin};
    return sbx_apply(g, &sbx_op_add, &sum, 2, pair, total);
}

sbx_status sbx_gradient(sbx_graph *g, sbx_var *cost, int nwrt, sbx_var *const *wrt, unsigned flags,
                        sbx_var **grads) {
    if (!g || !cost || (nwrt > 0 && (!wrt || !grads)) || nwrt < 0)
        return sbx__error(SBX_ERR_ARG, "sbx_gradient: graph, cost, wrt or grads is NULL (or nwrt %d < 0)", nwrt);
    if (cost->graph != g) return sbx__error(SBX_ERR_ARG, "sbx_gradient: cost belongs to another graph");
    if (cost->type.kind != SBX_KIND_DENSE || cost->type.ndim != 0 || !sbx__is_float(cost->type.dtype)) {
        char t[128];
        sbx_type_str(&cost->type, t, sizeof t);
        return sbx__error(SBX_ERR_ARG, "sbx_gradient: cost must be a 0-d float32 or float64 variable, not %s", t);
    }
    for (int k = 0; k < nwrt; k++)
        if (!wrt[k] || wrt[k]->graph != g)
            return sbx__error(SBX_ERR_ARG, "sbx_gradient: wrt[%d] is NULL or belongs to another graph", k);

    const int nvars = g->nvars, nnodes = g->nnodes; /* the nodes added below are never visited */
    unsigned char *leads = NULL; /* per variable: it depends on a wrt */
    sbx_var **total = NULL;      /* per variable: its gradient so far (only variables the cost depends on get one) */
    sbx_status st = sbx__alloc(nvars, 1, &leads, "gradient marks");
    if (st == SBX_OK) st = sbx__alloc(nvars, sizeof(sbx_var *), &total, "gradients");
    if (st != SBX_OK) goto done;
    /* Node ids are a topological order: a node's inputs exist before it. */
    for (int k = 0; k < nwrt; k++) leads[wrt[k]->id] = 1;
    for (int t = 0; t < nnodes; t++) {
        const sbx_node *n = g->nodes[t];
        int any = 0;
        for (int i = 0; i < n->nin; i++) any |= leads[n->in[i]->id];
        for (int j = 0; any && j < n->nout; j++) leads[n->out[j]->id] = 1;
    }
    if (leads[cost->id]) st = sbx_graph_scalar(g, cost->type.dtype, 1.0, &total[cost->id]);

    for (int t = nnodes - 1; st == SBX_OK && t >= 0; t--) {
        const sbx_node *n = g->nodes[t];
        sbx_var *gout[SBX_OP_MAX_OUTPUTS], *gin[SBX_OP_MAX_INPUTS];
        sbx_grad answer[SBX_OP_MAX_INPUTS];
        const char *reason[SBX_OP_MAX_INPUTS];
        int any_out = 0, any_in = 0;
        for (int j = 0; j < n->nout; j++) any_out |= (gout[j] = total[n->out[j]->id]) != NULL;
        for (int i = 0; i < n->nin; i++) any_in |= leads[n->in[i]->id];
        if (!any_out || !any_in) continue;
        st = sbx_node_grad(g, n, gout, gin, answer, reason);
        for (int i = 0; st == SBX_OK && i < n->nin; i++) {
            if (!leads[n->in[i]->id]) continue;
            if (answer[i] == SBX_GRAD_UNDEFINED) {
                st = sbx__error(SBX_ERR_ARG, "sbx_gradient: %s (node %d) has no gradient with respect to input %d (%s): %s",
                                n->op.cls->name, n->id, i, input_name(n, i), reason[i] ? reason[i] : "undefined");
            } else if (answer[i] == SBX_GRAD_DEFINED) {
                const sbx_type *want = &n->in[i]->type, *got = gin[i] ? &gin[i]->type : NULL;
                if (!got || got->kind != want->kind || got->dtype != want->dtype || got->ndim != want->ndim) {
                    char a[128] = "nothing", b[128];
                    if (got) sbx_type_str(got, a, sizeof a);
                    sbx_type_str(want, b, sizeof b);
                    st = sbx__error(SBX_ERR_ARG, "sbx_gradient: %s (node %d) gave a gradient of type %s for input %d (%s) "
                                    "of type %s", n->op.cls->name, n->id, a, i, input_name(n, i), b);
                } else {
                    st = accumulate(g, n, i, &total[n->in[i]->id], gin[i]);
                }
            }
        }
    }
    for (int k = 0; st == SBX_OK && k < nwrt; k++) {
        sbx_var **r = &total[wrt[k]->id];
        if (!*r && !(flags & SBX_GRAD_ALLOW_DISCONNECTED))
            st = sbx__error(SBX_ERR_ARG, "sbx_gradient: the cost does not depend on wrt[%d] (%s) (pass "
                            "SBX_GRAD_ALLOW_DISCONNECTED for a zero gradient)", k,
                            wrt[k]->name ? wrt[k]->name : "unnamed");
        else if (!*r)
            st = sbx_apply(g, &sbx_op_zeros_like, NULL, 1, &wrt[k], r);
    }
    for (int k = 0; st == SBX_OK && k < nwrt; k++) grads[k] = total[wrt[k]->id];
done:
    sbx__free(leads);
    sbx__free(total);
    return st;
}
