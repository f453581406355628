/* Seeing a graph: one line per apply node (the original's debugprint), or Graphviz dot. */
#include <string.h>

#include "op/internal.h"

/* Marks in keep[] the nodes the outputs need (every node when nout is 0). */
static sbx_status needed_nodes(const sbx_graph *g, int nout, sbx_var *const *outputs, unsigned char **keep) {
    unsigned char *used = NULL, *k = NULL;
    sbx_status st = sbx__alloc(g->nvars, 1, &used, "print marks");
    if (st == SBX_OK) st = sbx__alloc(g->nnodes, 1, &k, "print marks");
    if (st != SBX_OK) {
        sbx__free(used);
        return st;
    }
    for (int j = 0; j < nout; j++) used[outputs[j]->id] = 1;
    for (int t = g->nnodes - 1; t >= 0; t--) {
        const sbx_node *n = g->nodes[t];
        int any = nout == 0;
        for (int j = 0; j < n->nout; j++) any |= used[n->out[j]->id];
        if (!any) continue;
        k[t] = 1;
        for (int i = 0; i < n->nin; i++) used[n->in[i]->id] = 1;
    }
    sbx__free(used);
    *keep = k;
    return SBX_OK;
}

static sbx_status check(const sbx_graph *g, int nout, sbx_var *const *outputs, FILE *f, const char *fn) {
    if (!g || !f || nout < 0 || (nout > 0 && !outputs)) return sbx__error(SBX_ERR_ARG, "%s: NULL argument", fn);
    for (int j = 0; j < nout; j++)
        if (!outputs[j] || outputs[j]->graph != g)
            return sbx__error(SBX_ERR_ARG, "%s: outputs[%d] is NULL or of another graph", fn, j);
    return SBX_OK;
}

static const char *role_name(sbx__var_role r) {
    return r == VAR_INPUT ? "input" : r == VAR_SHARED ? "shared" : r == VAR_CONSTANT ? "constant" : "output";
}

static void props_of(const sbx_node *n, char *buf, size_t size) {
    buf[0] = 0;
    if (n->op.cls->props_size && n->op.cls->props_str) n->op.cls->props_str(n->op.props, buf, size);
}

sbx_status sbx_graph_print(const sbx_graph *g, int nout, sbx_var *const *outputs, FILE *f) {
    unsigned char *keep;
    SBX_CHECK(check(g, nout, outputs, f, "sbx_graph_print"));
    SBX_CHECK(needed_nodes(g, nout, outputs, &keep));
    int bad = 0;
    char type[160], props[512];
    /* The variables without a node first: inputs, shared variables, constants that kept nodes read. */
    for (int i = 0; i < g->nvars; i++) {
        const sbx_var *v = g->vars[i];
        if (v->role == VAR_OUTPUT) continue;
        int read = 0;
        for (int t = 0; t < g->nnodes && !read; t++)
            for (int k = 0; keep[t] && k < g->nodes[t]->nin; k++) read |= g->nodes[t]->in[k] == v;
        for (int j = 0; j < nout; j++) read |= outputs[j] == v;
        if (!read && nout > 0) continue;
        sbx_type_str(&v->type, type, sizeof type);
        bad |= fprintf(f, "%%%d %s: %s %s\n", v->id, v->name ? v->name : "", role_name(v->role), type) < 0;
    }
    for (int t = 0; t < g->nnodes; t++) {
        const sbx_node *n = g->nodes[t];
        if (!keep[t]) continue;
        for (int j = 0; j < n->nout; j++) bad |= fprintf(f, "%s%%%d", j ? ", " : "", n->out[j]->id) < 0;
        props_of(n, props, sizeof props);
        bad |= fprintf(f, " = %s{%s}(", n->op.cls->name, props) < 0;
        for (int i = 0; i < n->nin; i++)
            bad |= fprintf(f, "%s%%%d%s%s", i ? ", " : "", n->in[i]->id, n->in[i]->name ? " " : "",
                           n->in[i]->name ? n->in[i]->name : "") < 0;
        bad |= fprintf(f, ") ->") < 0;
        for (int j = 0; j < n->nout; j++) {
            sbx_type_str(&n->out[j]->type, type, sizeof type);
            bad |= fprintf(f, "%s %s", j ? "," : "", type) < 0;
        }
        bad |= fprintf(f, "   [node %d]\n", n->id) < 0;
    }
    sbx__free(keep);
    return bad ? sbx__error(SBX_ERR_IO, "sbx_graph_print: writing failed") : SBX_OK;
}

/* A label for dot: the quotes and backslashes escaped. */
static void dot_escape(const char *s, char *out, size_t size) {
    size_t w = 0;
    for (; *s && w + 2 < size; s++) {
        if (*s == '"' || *s == '\\') out[w++] = '\\';
        out[w++] = *s;
    }
    out[w] = 0;
}

sbx_status sbx_graph_dot(const sbx_graph *g, int nout, sbx_var *const *outputs, FILE *f) {
    unsigned char *keep;
    SBX_CHECK(check(g, nout, outputs, f, "sbx_graph_dot"));
    SBX_CHECK(needed_nodes(g, nout, outputs, &keep));
    int bad = fprintf(f, "digraph sparsebox {\n  rankdir=TB;\n") < 0;
    char type[160], props[512], label[1024];
    for (int i = 0; i < g->nvars; i++) {
        const sbx_var *v = g->vars[i];
        int shown = nout == 0;
        for (int t = 0; t < g->nnodes && !shown; t++)
            for (int k = 0; keep[t] && k < g->nodes[t]->nin; k++) shown |= g->nodes[t]->in[k] == v;
        for (int j = 0; j < nout; j++) shown |= outputs[j] == v;
        if (v->owner && keep[v->owner->id]) shown = 1;
        if (!shown) continue;
        sbx_type_str(&v->type, type, sizeof type);
        dot_escape(v->name ? v->name : "", label, sizeof label);
        /* dot's \n is a line break */
        bad |= fprintf(f, "  v%d [shape=%s, label=\"%%%d %s\\n%s\"];\n", v->id,
                       v->role == VAR_OUTPUT ? "ellipse" : "note", v->id, label, type) < 0;
    }
    for (int t = 0; t < g->nnodes; t++) {
        const sbx_node *n = g->nodes[t];
        if (!keep[t]) continue;
        props_of(n, props, sizeof props);
        char text[700];
        snprintf(text, sizeof text, "%s{%s}", n->op.cls->name, props);
        dot_escape(text, label, sizeof label);
        bad |= fprintf(f, "  n%d [shape=box, style=filled, fillcolor=lightgrey, label=\"%s\"];\n", n->id, label) < 0;
        for (int i = 0; i < n->nin; i++) bad |= fprintf(f, "  v%d -> n%d [label=\"%d\"];\n", n->in[i]->id, n->id, i) < 0;
        for (int j = 0; j < n->nout; j++) bad |= fprintf(f, "  n%d -> v%d;\n", n->id, n->out[j]->id) < 0;
    }
    bad |= fprintf(f, "}\n") < 0;
    sbx__free(keep);
    return bad ? sbx__error(SBX_ERR_IO, "sbx_graph_dot: writing failed") : SBX_OK;
}
