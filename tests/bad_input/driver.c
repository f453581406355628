/* The C API rows of the bad-input table (c_api.tsv): each row names a call and its arguments, written
 * as text the driver turns into arrays, sparse matrices, types, files and graphs; the call must fail
 * with the row's status, sbx_last_error() must hold the row's fragment, and the call's output must be
 * left as it was. Leaks show under the sanitizer build (LeakSanitizer at exit).
 *
 *   usage: bad_input_c TABLE.tsv SCRATCH_DIR     run the rows
 *          bad_input_c --make SPEC PATH           write the file a spec describes (for the CLI runner)
 *
 * Row: STATUS <TAB> FRAGMENT <TAB> CALL <TAB> ARG <TAB> ARG ...; '#' lines and empty lines are skipped.
 * Argument notation (see c_api.tsv's head for the list of calls):
 *   array    DTYPE[d0,d1,...] (zeros) or DTYPE[d0,...]=v,v,... (strtod's numbers: nan, inf, -1e300),
 *            DTYPE[] a 0-d array; ";ndim=N", ";dtype=N", ";data=null", ";shape=a,b" change the struct
 *            after it is made (a broken array)
 *   sparse   FMT DTYPE[r,c] indptr=.. indices=.. data=..  (a struct of the caller's own arrays);
 *            ";nnz=N" changes nnz after
 *   type     DTYPE[d,...] with ? for unknown, or FMT DTYPE[r,c] (sparse); ";ndim=N" etc. as arrays
 *   file     a spec of files.h, written to SCRATCH_DIR/row-LINE[-K]
 *   path     a path to write, $T standing for SCRATCH_DIR
 *   geometry CHANNELS:IN:KERNEL[:STRIDE[:MODE]], lists of integers (sbx_conv_shape_make) */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sparsebox.h>

#include "files.h"

#define MAX_ARGS 16
#define MAX_OWNED 64

/* What one row made, freed after it runs. */
typedef struct {
    sbx_array *arrays[MAX_OWNED];
    int narrays;
    sbx_sparse *sparse[MAX_OWNED]; /* structs with caller-owned arrays: freed field by field */
    int nsparse;
    sbx_array views[MAX_OWNED]; /* arrays as a row hands them in (maybe broken) */
    int nviews;
    sbx_sparse sviews[MAX_OWNED];
    int nsviews;
    sbx_graph *graph;
    const char *dir;
    int line, nfiles;
    char paths[8][4096];
    char why[512]; /* a row that cannot be run: what is wrong with it */
} row_ctx;

static int bad_row(row_ctx *c, const char *fmt, const char *arg) {
    snprintf(c->why, sizeof c->why, fmt, arg);
    return -1;
}

/* --- parsing ------------------------------------------------------------------------------------- */
static int parse_ints(const char *s, int64_t *out, int max) {
    int n = 0;
    while (*s == ' ') s++;
    if (*s == '\0' || (*s == '-' && s[1] == '\0')) return 0;
    for (;;) {
        char *end;
        if (n == max) return -1;
        out[n++] = strtoll(s, &end, 10);
        if (end == s) return -1;
        if (*end == '\0' || *end == ']') return n;
        if (*end != ',') return -1;
        s = end + 1;
    }
}

static int parse_i64(const char *s, int64_t *v) {
    char *end;
    *v = strtoll(s, &end, 10);
    return end != s && *end == '\0' ? 0 : -1;
}

static int parse_f64(const char *s, double *v) {
    char *end;
    *v = strtod(s, &end);
    return end != s && *end == '\0' ? 0 : -1;
}

/* A dtype by name, or by number (to reach values outside the enum). */
static int parse_dtype(const char *s, sbx_dtype *d) {
    if (*s >= '0' && *s <= '9') {
        *d = (sbx_dtype)atoi(s);
        return 0;
    }
    return sbx_dtype_parse(s, d) == SBX_OK ? 0 : -1;
}

static int parse_format(const char *s, sbx_format *f) {
    if (*s >= '0' && *s <= '9') {
        *f = (sbx_format)atoi(s);
        return 0;
    }
    return sbx_format_parse(s, f) == SBX_OK ? 0 : -1;
}

static int parse_mode(const char *s, sbx_conv_mode *m) {
    if (*s >= '0' && *s <= '9') {
        *m = (sbx_conv_mode)atoi(s);
        return 0;
    }
    return sbx_conv_mode_parse(s, m) == SBX_OK ? 0 : -1;
}

/* Writes v into element i of data, of dtype d. */
static void store(void *data, sbx_dtype d, int64_t i, const char *text) {
    double v = strtod(text, NULL);
    long long iv = strtoll(text, NULL, 10);
    switch (d) {
    case SBX_FLOAT32: ((float *)data)[i] = (float)v; break;
    case SBX_FLOAT64: ((double *)data)[i] = v; break;
    case SBX_INT8: ((int8_t *)data)[i] = (int8_t)iv; break;
    case SBX_INT16: ((int16_t *)data)[i] = (int16_t)iv; break;
    case SBX_INT32: ((int32_t *)data)[i] = (int32_t)iv; break;
    case SBX_INT64: ((int64_t *)data)[i] = iv; break;
    case SBX_UINT8: ((uint8_t *)data)[i] = (uint8_t)iv; break;
    case SBX_UINT16: ((uint16_t *)data)[i] = (uint16_t)iv; break;
    case SBX_UINT32: ((uint32_t *)data)[i] = (uint32_t)iv; break;
    case SBX_UINT64: ((uint64_t *)data)[i] = (uint64_t)iv; break;
    case SBX_BOOL: ((uint8_t *)data)[i] = iv != 0; break;
    }
}

/* Splits "DTYPE[dims]" into the dtype and the dims; *rest is what follows ']'. */
static int parse_head(const char *s, sbx_dtype *d, int *ndim, int64_t *shape, const char **rest, int unknown_ok) {
    const char *lb = strchr(s, '['), *rb = lb ? strchr(lb, ']') : NULL;
    char name[32];
    if (!lb || !rb || (size_t)(lb - s) >= sizeof name) return -1;
    memcpy(name, s, (size_t)(lb - s));
    name[lb - s] = '\0';
    if (parse_dtype(name, d)) return -1;
    *ndim = 0;
    for (const char *p = lb + 1; p < rb;) {
        char *end;
        if (*ndim == SBX_MAX_NDIM) return -1;
        if (*p == '?' && unknown_ok) {
            shape[(*ndim)++] = -1;
            end = (char *)p + 1;
        } else {
            shape[(*ndim)++] = strtoll(p, &end, 10);
            if (end == p) return -1;
        }
        p = *end == ',' ? end + 1 : end;
        if (p != rb && end == p) return -1;
    }
    *rest = rb + 1;
    return 0;
}

/* Applies ";field=value" changes to an array struct or a type. */
static int apply_changes(const char *s, int *ndim, int *dtype, int64_t *shape, void **data, int64_t *nnz) {
    while (s && *s == ';') {
        const char *eq = strchr(s, '='), *next = strchr(s + 1, ';');
        if (!eq) return -1;
        size_t k = (size_t)(eq - s - 1);
        if (!strncmp(s + 1, "ndim", k) && k == 4) *ndim = atoi(eq + 1);
        else if (!strncmp(s + 1, "dtype", k) && k == 5) *dtype = atoi(eq + 1);
        else if (!strncmp(s + 1, "data", k) && k == 4 && data) *data = NULL;
        else if (!strncmp(s + 1, "nnz", k) && k == 3 && nnz) *nnz = strtoll(eq + 1, NULL, 10);
        else if (!strncmp(s + 1, "shape", k) && k == 5) {
            char buf[256];
            size_t n = next ? (size_t)(next - eq - 1) : strlen(eq + 1);
            if (n >= sizeof buf) return -1;
            memcpy(buf, eq + 1, n);
            buf[n] = '\0';
            if (parse_ints(buf, shape, SBX_MAX_NDIM) < 0) return -1;
        } else return -1;
        s = next;
    }
    return 0;
}

static sbx_array *arg_array(row_ctx *c, const char *s) {
    sbx_dtype d;
    int ndim;
    int64_t shape[SBX_MAX_NDIM];
    const char *rest;
    sbx_array *a;
    if (parse_head(s, &d, &ndim, shape, &rest, 0) || c->narrays == MAX_OWNED || c->nviews == MAX_OWNED)
        return bad_row(c, "bad array '%s'", s), NULL;
    if (sbx_array_create(d, ndim, shape, &a) != SBX_OK) return bad_row(c, "cannot make the array '%s'", s), NULL;
    c->arrays[c->narrays++] = a;
    if (*rest == '=') {
        const char *v = rest + 1;
        int64_t n = sbx_array_numel(a), i = 0;
        while (*v && *v != ';') {
            if (i == n) return bad_row(c, "more values than elements in '%s'", s), NULL;
            store(a->data, d, i++, v);
            while (*v && *v != ',' && *v != ';') v++;
            if (*v == ',') v++;
        }
        if (i != n) return bad_row(c, "fewer values than elements in '%s'", s), NULL;
        rest = v;
    }
    sbx_array *view = &c->views[c->nviews++];
    *view = *a;
    int dt = (int)view->dtype;
    if (apply_changes(rest, &view->ndim, &dt, view->shape, &view->data, NULL))
        return bad_row(c, "bad change in '%s'", s), NULL;
    view->dtype = (sbx_dtype)dt;
    return view;
}

/* "name=v,v,..." within s: the values (as text) into a new int64 vector or a dtype vector. */
static void *field(const char *s, const char *name, sbx_dtype d, int64_t *count) {
    char key[16];
    snprintf(key, sizeof key, " %s=", name);
    const char *p = strstr(s, key);
    *count = 0;
    if (!p) return NULL;
    p += strlen(key);
    size_t size = sbx_dtype_size(d) ? sbx_dtype_size(d) : 1;
    int64_t n = 0;
    for (const char *q = p; *q && *q != ' ' && *q != ';'; q++) n += *q == ',';
    if (*p && *p != ' ' && *p != ';') n++;
    void *v = calloc((size_t)(n ? n : 1), size);
    if (!v) return NULL;
    for (int64_t i = 0; i < n; i++) {
        store(v, d, i, p);
        while (*p && *p != ',') p++;
        if (*p) p++;
    }
    *count = n;
    return v;
}

static sbx_sparse *arg_sparse(row_ctx *c, const char *s) {
    sbx_format f;
    char fmt[8];
    const char *sp = strchr(s, ' '), *rest;
    sbx_dtype d;
    int ndim;
    int64_t shape[SBX_MAX_NDIM], n;
    if (!sp || (size_t)(sp - s) >= sizeof fmt || c->nsparse == MAX_OWNED || c->nsviews == MAX_OWNED)
        return bad_row(c, "bad sparse '%s'", s), NULL;
    memcpy(fmt, s, (size_t)(sp - s));
    fmt[sp - s] = '\0';
    if (parse_format(fmt, &f) || parse_head(sp + 1, &d, &ndim, shape, &rest, 0) || ndim != 2)
        return bad_row(c, "bad sparse '%s'", s), NULL;
    sbx_sparse *m = calloc(1, sizeof *m);
    if (!m) return bad_row(c, "out of memory for '%s'", s), NULL;
    c->sparse[c->nsparse++] = m;
    m->format = f;
    m->dtype = d;
    m->nrows = shape[0];
    m->ncols = shape[1];
    m->indptr = field(rest, "indptr", SBX_INT64, &n);
    m->indices = field(rest, "indices", SBX_INT64, &m->nnz);
    m->data = field(rest, "data", d, &n);
    if (!m->indptr) return bad_row(c, "sparse '%s' lacks indptr=", s), NULL;
    sbx_sparse *view = &c->sviews[c->nsviews++];
    *view = *m;
    const char *changes = strchr(rest, ';');
    int nd = 2, dt = (int)d;
    if (changes && apply_changes(changes, &nd, &dt, shape, NULL, &view->nnz))
        return bad_row(c, "bad change in '%s'", s), NULL;
    view->dtype = (sbx_dtype)dt;
    return view;
}

static int arg_type(row_ctx *c, const char *s, sbx_type *t) {
    char fmt[8];
    const char *rest;
    sbx_dtype d;
    int ndim;
    int64_t shape[SBX_MAX_NDIM];
    sbx_format f;
    if (!strncmp(s, "csr ", 4) || !strncmp(s, "csc ", 4)) {
        memcpy(fmt, s, 3);
        fmt[3] = '\0';
        if (parse_format(fmt, &f) || parse_head(s + 4, &d, &ndim, shape, &rest, 1) || ndim != 2)
            return bad_row(c, "bad type '%s'", s);
        *t = sbx_type_sparse(f, d, shape[0], shape[1]);
    } else {
        if (parse_head(s, &d, &ndim, shape, &rest, 1)) return bad_row(c, "bad type '%s'", s);
        *t = sbx_type_dense(d, ndim, shape);
    }
    int dt = (int)t->dtype;
    if (apply_changes(rest, &t->ndim, &dt, t->shape, NULL, NULL)) return bad_row(c, "bad change in '%s'", s);
    t->dtype = (sbx_dtype)dt;
    return 0;
}

static const char *arg_file(row_ctx *c, const char *spec) {
    if (c->nfiles == 8) return bad_row(c, "too many files in a row (%s)", spec), NULL;
    char *p = c->paths[c->nfiles];
    snprintf(p, sizeof c->paths[0], "%s/row-%d-%d", c->dir, c->line, c->nfiles);
    c->nfiles++;
    if (bad_make_file(spec, p, c->why, sizeof c->why)) return NULL;
    return p;
}

static const char *arg_path(row_ctx *c, const char *s) {
    if (c->nfiles == 8) return bad_row(c, "too many files in a row (%s)", s), NULL;
    char *p = c->paths[c->nfiles++];
    if (!strncmp(s, "$T", 2))
        snprintf(p, sizeof c->paths[0], "%s%s", c->dir, s + 2);
    else
        snprintf(p, sizeof c->paths[0], "%s", s);
    return p;
}

static int arg_geometry(row_ctx *c, const char *s, sbx_conv_shape *g) {
    char buf[256], *part[5] = {0};
    int n = 0;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *p = buf; n < 5 && p; n++) {
        part[n] = p;
        p = strchr(p, ':');
        if (p) *p++ = '\0';
    }
    int64_t ch, in[SBX_MAX_NDIM], k[SBX_MAX_NDIM], st[SBX_MAX_NDIM];
    sbx_conv_mode mode = SBX_CONV_VALID;
    int ni, nk;
    if (n < 3 || parse_i64(part[0], &ch) || (ni = parse_ints(part[1], in, SBX_MAX_NDIM)) < 0 ||
        (nk = parse_ints(part[2], k, SBX_MAX_NDIM)) < 0 || (n > 3 && parse_ints(part[3], st, SBX_MAX_NDIM) < 0) ||
        (n > 4 && parse_mode(part[4], &mode)))
        return bad_row(c, "bad geometry '%s'", s);
    if (sbx_conv_shape_make(ni, ch, in, k, n > 3 && strcmp(part[3], "-") ? st : NULL, mode, g) != SBX_OK)
        return bad_row(c, "geometry '%s' is refused", s);
    return 0;
}

/* --- op classes and their properties ----------------------------------------------------------- */
static const sbx_op_class *find_class(const char *name) {
    int n;
    const sbx_op_class *const *all = sbx_op_classes(&n);
    for (int i = 0; i < n; i++)
        if (!strcmp(all[i]->name, name)) return all[i];
    return NULL;
}

typedef union {
    sbx_layer_props layer;
    sbx_pool_props pool;
    sbx_conv_indices_props indices;
    sbx_binomial_props binomial;
    sbx_structured_dot_props sdot;
    sbx_sampled_dot_props sampled;
    sbx_format_props format;
    sbx_dot_props dot;
    sbx_add_props add;
    sbx_scale_props scale;
    sbx_reshape_props reshape;
    sbx_reduce_props reduce;
    sbx_broadcast_props broadcast;
    sbx_sgd_props sgd;
    sbx_adam_props adam;
} any_props;

/* Properties from text, by class: "-" none (zeros), else numbers separated by ','; layer classes take
 * GEOMETRY;NKERN, pooling GEOMETRY, Binomial FORMAT,DTYPE, formats FORMAT. */
static int parse_props(row_ctx *c, const sbx_op_class *cls, const char *s, any_props *p) {
    memset(p, 0, sizeof *p);
    if (!strcmp(s, "-")) return 0;
    const char *n = cls->name;
    double v[8] = {0};
    int nv = 0;
    if (!strcmp(n, "Convolve") || !strcmp(n, "ConvBackward") || !strcmp(n, "LocalConnections") ||
        !strcmp(n, "LocalBackward")) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", s);
        char *semi = strchr(buf, ';');
        if (!semi) return bad_row(c, "layer props '%s' need GEOMETRY;NKERN", s);
        *semi = '\0';
        p->layer.nkern = strtoll(semi + 1, NULL, 10);
        return arg_geometry(c, buf, &p->layer.shape);
    }
    if (!strcmp(n, "MaxPool") || !strcmp(n, "MaxPoolGrad")) return arg_geometry(c, s, &p->pool.shape);
    if (!strcmp(n, "Binomial")) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", s);
        char *comma = strchr(buf, ',');
        if (!comma) return bad_row(c, "Binomial props '%s' need FORMAT,DTYPE", s);
        *comma = '\0';
        return parse_format(buf, &p->binomial.format) || parse_dtype(comma + 1, &p->binomial.dtype)
                   ? bad_row(c, "bad Binomial props '%s'", s)
                   : 0;
    }
    if (!strcmp(n, "SparseFromDense"))
        return parse_format(s, &p->format.format) ? bad_row(c, "bad format '%s'", s) : 0;
    for (const char *q = s; *q && nv < 8;) {
        char *end;
        v[nv++] = strtod(q, &end);
        if (end == q) return bad_row(c, "bad props '%s'", s);
        q = *end == ',' ? end + 1 : end;
    }
    if (!strcmp(n, "Dot")) p->dot = (sbx_dot_props){(int)v[0], (int)v[1]};
    else if (!strcmp(n, "Add")) p->add = (sbx_add_props){v[0], v[1]};
    else if (!strcmp(n, "Scale")) p->scale.c = v[0];
    else if (!strcmp(n, "Sum") || !strcmp(n, "Mean")) p->reduce.axis = (int)v[0];
    else if (!strcmp(n, "StructuredDot")) p->sdot.transpose_sparse = (int)v[0];
    else if (!strcmp(n, "SampledDot")) p->sampled = (sbx_sampled_dot_props){(int)v[0], (int)v[1]};
    else if (!strcmp(n, "SgdStep")) p->sgd.momentum = v[0];
    else if (!strcmp(n, "AdamStep")) p->adam = (sbx_adam_props){v[0], v[1], v[2]};
    else if (!strcmp(n, "Reshape")) {
        p->reshape.ndim = nv;
        for (int i = 0; i < nv; i++) p->reshape.shape[i] = (int64_t)v[i];
    } else return bad_row(c, "no props notation for class %s", n);
    return 0;
}

/* Graph inputs for types args[0..n-1]. */
static int graph_inputs(row_ctx *c, char **args, int n, sbx_var **vars) {
    if (!c->graph && sbx_graph_create(&c->graph) != SBX_OK) return bad_row(c, "%s", "cannot make a graph");
    for (int i = 0; i < n; i++) {
        sbx_type t;
        if (arg_type(c, args[i], &t)) return -1;
        if (sbx_graph_input(c->graph, NULL, &t, &vars[i]) != SBX_OK) return bad_row(c, "input type '%s' refused", args[i]);
    }
    return 0;
}

/* An op applied to typed inputs (args: CLASS PROPS TYPE...), which must succeed. */
static int build(row_ctx *c, char **args, int nargs, sbx_var **in, sbx_var **out) {
    const sbx_op_class *cls = nargs >= 2 ? find_class(args[0]) : NULL;
    any_props p;
    if (!cls) return bad_row(c, "no op class '%s'", nargs ? args[0] : "");
    if (parse_props(c, cls, args[1], &p) || graph_inputs(c, args + 2, nargs - 2, in)) return -1;
    if (sbx_apply(c->graph, cls, cls->props_size ? &p : NULL, nargs - 2, in, out) != SBX_OK)
        return bad_row(c, "the graph of '%s' is refused", args[0]);
    return 0;
}

/* A value from text: a sparse matrix when it begins with a format, else an array. */
static int arg_value(row_ctx *c, const char *s, sbx_value *v) {
    v->dense = NULL;
    v->sparse = NULL;
    if (!strcmp(s, "empty")) return 0;
    if (!strncmp(s, "csr ", 4) || !strncmp(s, "csc ", 4)) return (v->sparse = arg_sparse(c, s)) ? 0 : -1;
    return (v->dense = arg_array(c, s)) ? 0 : -1;
}

/* --- the calls ----------------------------------------------------------------------------------
 * Each returns the call's status, or -1 when the row itself is wrong (c->why says how). A pointer
 * output starts at `untouched`, and a failing call must leave it there. */
static char untouched_target;
#define UNTOUCHED ((void *)&untouched_target)
static int output_changed;

#define NEED(k)                                                                                   \
    do {                                                                                          \
        if (nargs != (k)) return bad_row(c, "this call takes " #k " arguments (%s)", name);       \
    } while (0)
#define OUT_CHECK(p)                                                                              \
    do {                                                                                          \
        if ((void *)(p) != UNTOUCHED) output_changed = 1;                                         \
    } while (0)

static int run_call(row_ctx *c, const char *name, char **args, int nargs) {
    sbx_status st;
    sbx_array *a = UNTOUCHED, *b = UNTOUCHED, *x = NULL;
    sbx_sparse *m = UNTOUCHED, *s = NULL;
    sbx_conv_shape g;
    sbx_conv_plan *plan = UNTOUCHED;
    int64_t i1, i2, i3, v = 12345, ints[SBX_MAX_NDIM + 2];
    double d1;
    sbx_dtype dt;
    sbx_format fmt;
    sbx_conv_mode mode;
    sbx_rng rng;
    sbx_rng_init(&rng, 1, 0);
#define ARR(i) ((x = arg_array(c, args[i])) ? x : NULL)
#define SPA(i) ((s = arg_sparse(c, args[i])) ? s : NULL)
    if (!strcmp(name, "dtype_parse")) {
        NEED(1);
        dt = (sbx_dtype)77;
        st = sbx_dtype_parse(args[0], &dt);
        if (dt != (sbx_dtype)77) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "format_parse")) {
        NEED(1);
        fmt = (sbx_format)77;
        st = sbx_format_parse(args[0], &fmt);
        if (fmt != (sbx_format)77) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "conv_mode_parse")) {
        NEED(1);
        mode = (sbx_conv_mode)77;
        st = sbx_conv_mode_parse(args[0], &mode);
        if (mode != (sbx_conv_mode)77) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "mul_i64") || !strcmp(name, "add_i64")) {
        NEED(2);
        if (parse_i64(args[0], &i1) || parse_i64(args[1], &i2)) return bad_row(c, "bad integers in %s", name);
        st = name[0] == 'm' ? sbx_mul_i64(i1, i2, &v) : sbx_add_i64(i1, i2, &v);
        if (v != 12345) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "shape_numel")) {
        NEED(2);
        int nd = atoi(args[0]);
        if (parse_ints(args[1], ints, SBX_MAX_NDIM + 2) < 0) return bad_row(c, "bad shape '%s'", args[1]);
        st = sbx_shape_numel(nd, ints, &v);
        if (v != 12345) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "array_create")) {
        NEED(3);
        int nd = atoi(args[1]);
        if (parse_dtype(args[0], &dt) || parse_ints(args[2], ints, SBX_MAX_NDIM + 2) < 0)
            return bad_row(c, "bad arguments '%s'", args[0]);
        st = sbx_array_create(dt, nd, ints, &a);
        OUT_CHECK(a);
        return st;
    }
    if (!strcmp(name, "array_cast") || !strcmp(name, "array_copy")) {
        if (!ARR(0)) return -1;
        if (!strcmp(name, "array_cast")) {
            NEED(2);
            if (parse_dtype(args[1], &dt)) return bad_row(c, "bad dtype '%s'", args[1]);
            st = sbx_array_cast(x, dt, &a);
        } else {
            NEED(1);
            st = sbx_array_copy(x, &a);
        }
        OUT_CHECK(a);
        return st;
    }
    if (!strcmp(name, "npy_read")) {
        NEED(1);
        const char *p = strncmp(args[0], "path:", 5) ? arg_file(c, args[0]) : arg_path(c, args[0] + 5);
        if (!p) return -1;
        st = sbx_npy_read(p, &a);
        OUT_CHECK(a);
        return st;
    }
    if (!strcmp(name, "npy_write")) {
        NEED(2);
        const char *p = arg_path(c, args[0]);
        if (!p || !ARR(1)) return -1;
        return sbx_npy_write(p, x);
    }
    if (!strcmp(name, "mtx_read") || !strcmp(name, "mtx_read_dense") || !strcmp(name, "mtx_read_header")) {
        const char *p = strncmp(args[0], "path:", 5) ? arg_file(c, args[0]) : arg_path(c, args[0] + 5);
        if (!p) return -1;
        if (!strcmp(name, "mtx_read")) {
            NEED(2);
            if (parse_format(args[1], &fmt)) return bad_row(c, "bad format '%s'", args[1]);
            st = sbx_mtx_read(p, fmt, &m);
            OUT_CHECK(m);
        } else if (!strcmp(name, "mtx_read_dense")) {
            NEED(1);
            st = sbx_mtx_read_dense(p, &a);
            OUT_CHECK(a);
        } else {
            NEED(1);
            sbx_mtx_header h, h0;
            memset(&h, 0x5A, sizeof h);
            h0 = h;
            st = sbx_mtx_read_header(p, &h);
            if (memcmp(&h, &h0, sizeof h)) output_changed = 1;
        }
        return st;
    }
    if (!strcmp(name, "mtx_write")) {
        NEED(2);
        const char *p = arg_path(c, args[0]);
        if (!p || !SPA(1)) return -1;
        return sbx_mtx_write(p, s);
    }
    if (!strcmp(name, "sparse_create")) {
        NEED(5);
        if (parse_format(args[0], &fmt) || parse_dtype(args[1], &dt) || parse_i64(args[2], &i1) ||
            parse_i64(args[3], &i2) || parse_i64(args[4], &i3))
            return bad_row(c, "bad arguments to %s", name);
        st = sbx_sparse_create(fmt, dt, i1, i2, i3, &m);
        OUT_CHECK(m);
        return st;
    }
    if (!strcmp(name, "sparse_validate") || !strcmp(name, "sparse_validate_structure") ||
        !strcmp(name, "sparse_sort_indices") || !strcmp(name, "sparse_sum_duplicates") ||
        !strcmp(name, "sparse_eliminate_zeros")) {
        NEED(1);
        if (!SPA(0)) return -1;
        if (!strcmp(name, "sparse_validate")) return sbx_sparse_validate(s);
        if (!strcmp(name, "sparse_validate_structure")) return sbx_sparse_validate_structure(s);
        sbx_sparse before = *s;
        st = !strcmp(name, "sparse_sort_indices")     ? sbx_sparse_sort_indices(s)
             : !strcmp(name, "sparse_sum_duplicates") ? sbx_sparse_sum_duplicates(s)
                                                      : sbx_sparse_eliminate_zeros(s);
        if (memcmp(&before, s, sizeof before)) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "sparse_to_dense")) {
        NEED(1);
        if (!SPA(0)) return -1;
        st = sbx_sparse_to_dense(s, &a);
        OUT_CHECK(a);
        return st;
    }
    if (!strcmp(name, "sparse_convert") || !strcmp(name, "sparse_cast") || !strcmp(name, "sparse_transpose")) {
        if (!SPA(0)) return -1;
        if (!strcmp(name, "sparse_transpose")) {
            NEED(1);
            st = sbx_sparse_transpose(s, &m);
        } else if (!strcmp(name, "sparse_cast")) {
            NEED(2);
            if (parse_dtype(args[1], &dt)) return bad_row(c, "bad dtype '%s'", args[1]);
            st = sbx_sparse_cast(s, dt, &m);
        } else {
            NEED(2);
            if (parse_format(args[1], &fmt)) return bad_row(c, "bad format '%s'", args[1]);
            st = sbx_sparse_convert(s, fmt, &m);
        }
        OUT_CHECK(m);
        return st;
    }
    if (!strcmp(name, "sparse_from_dense")) {
        NEED(2);
        if (!ARR(0) || parse_format(args[1], &fmt)) return -1;
        st = sbx_sparse_from_dense(x, fmt, &m);
        OUT_CHECK(m);
        return st;
    }
    if (!strcmp(name, "sparse_dot_dense")) {
        NEED(2);
        if (!SPA(0) || !ARR(1)) return -1;
        st = sbx_sparse_dot_dense(s, x, &a);
        OUT_CHECK(a);
        return st;
    }
    if (!strcmp(name, "dense_dot_sparse")) {
        NEED(2);
        if (!ARR(0) || !SPA(1)) return -1;
        st = sbx_dense_dot_sparse(x, s, &a);
        OUT_CHECK(a);
        return st;
    }
    if (!strcmp(name, "conv_shape_make")) {
        NEED(6);
        int64_t in[SBX_MAX_NDIM + 2], k[SBX_MAX_NDIM + 2], stv[SBX_MAX_NDIM + 2];
        if (parse_i64(args[1], &i1) || parse_ints(args[2], in, SBX_MAX_NDIM + 2) < 0 ||
            parse_ints(args[3], k, SBX_MAX_NDIM + 2) < 0 || parse_ints(args[4], stv, SBX_MAX_NDIM + 2) < 0 ||
            parse_mode(args[5], &mode))
            return bad_row(c, "bad arguments to %s", name);
        memset(&g, 0x5A, sizeof g);
        sbx_conv_shape g0 = g;
        st = sbx_conv_shape_make(atoi(args[0]), i1, in, k, strcmp(args[4], "-") ? stv : NULL, mode, &g);
        if (memcmp(&g, &g0, sizeof g)) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "conv_shape_aesara") || !strcmp(name, "pool_shape_aesara")) {
        int64_t in[4], k[4], step[4];
        int ni = parse_ints(args[0], in, 4);
        if (ni < 0 || parse_ints(args[1], k, 4) < 0) return bad_row(c, "bad arguments to %s", name);
        memset(&g, 0x5A, sizeof g);
        sbx_conv_shape g0 = g;
        if (name[0] == 'c') {
            NEED(4);
            if (parse_ints(args[2], step, 4) < 0 || parse_mode(args[3], &mode)) return bad_row(c, "bad step %s", args[2]);
            st = sbx_conv_shape_aesara(ni, in, k, strcmp(args[2], "-") ? step : NULL, mode, &g);
        } else {
            NEED(2);
            st = sbx_pool_shape_aesara(ni, in, k, &g);
        }
        if (memcmp(&g, &g0, sizeof g)) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "conv_indices")) {
        NEED(4);
        if (arg_geometry(c, args[0], &g) || parse_i64(args[2], &i1) || parse_format(args[3], &fmt)) return -1;
        st = sbx_conv_indices(&g, atoi(args[1]), i1, fmt, &m, &a);
        OUT_CHECK(m);
        OUT_CHECK(a);
        return st;
    }
    if (!strcmp(name, "conv_plan_create") || !strcmp(name, "local_plan_create") || !strcmp(name, "pool_plan_create")) {
        int pool = name[0] == 'p';
        NEED(pool ? 2 : 3);
        if (arg_geometry(c, args[0], &g) || (!pool && parse_i64(args[1], &i1)) || parse_dtype(args[pool ? 1 : 2], &dt))
            return -1;
        st = pool ? sbx_pool_plan_create(&g, dt, &plan)
             : name[0] == 'c' ? sbx_conv_plan_create(&g, i1, dt, &plan)
                              : sbx_local_plan_create(&g, i1, dt, &plan);
        OUT_CHECK(plan);
        return st;
    }
    if (!strcmp(name, "conv_forward") || !strcmp(name, "local_forward") || !strcmp(name, "conv_backward") ||
        !strcmp(name, "pool_forward") || !strcmp(name, "pool_backward")) {
        /* GEOMETRY NKERN DTYPE then the arrays (pool: GEOMETRY DTYPE ...) */
        int pool = name[0] == 'p', k0 = pool ? 2 : 3;
        sbx_array *ar[3] = {NULL, NULL, NULL};
        if (nargs < k0 + 1 || nargs > k0 + 3) return bad_row(c, "wrong argument count (%s)", name);
        if (arg_geometry(c, args[0], &g) || (!pool && parse_i64(args[1], &i1)) || parse_dtype(args[k0 - 1], &dt))
            return -1;
        for (int i = k0; i < nargs; i++)
            if (strcmp(args[i], "-") && !(ar[i - k0] = arg_array(c, args[i]))) return -1;
        st = pool ? sbx_pool_plan_create(&g, dt, &plan)
             : name[0] == 'c' ? sbx_conv_plan_create(&g, i1, dt, &plan)
                              : sbx_local_plan_create(&g, i1, dt, &plan);
        if (st != SBX_OK) return bad_row(c, "the plan of '%s' is refused", args[0]);
        if (!strcmp(name, "conv_forward")) st = sbx_conv_forward(plan, ar[0], ar[1], ar[2], &a);
        else if (!strcmp(name, "local_forward")) st = sbx_local_forward(plan, ar[0], ar[1], ar[2], &a);
        else if (!strcmp(name, "conv_backward")) st = sbx_conv_backward(plan, ar[0], ar[1], ar[2], &a, &b, NULL);
        else if (!strcmp(name, "pool_forward")) st = sbx_pool_forward(plan, ar[0], &a);
        else st = sbx_pool_backward(plan, ar[0], ar[1], &a);
        sbx_conv_plan_free(plan);
        OUT_CHECK(a);
        OUT_CHECK(b);
        return st;
    }
    if (!strcmp(name, "rng_cursor_init")) {
        NEED(1);
        sbx_rng_cursor cur;
        if (parse_i64(args[0], &i1)) return bad_row(c, "bad position '%s'", args[0]);
        return sbx_rng_cursor_init(&rng, i1, &cur);
    }
    if (!strcmp(name, "binomial") || !strcmp(name, "poisson")) {
        sbx_rng_cursor cur;
        sbx_rng_cursor_init(&rng, 0, &cur);
        if (name[0] == 'b') {
            NEED(2);
            if (parse_i64(args[0], &i1) || parse_f64(args[1], &d1)) return bad_row(c, "bad parameters (%s)", name);
            st = sbx_binomial(&cur, i1, d1, &v);
        } else {
            NEED(1);
            if (parse_f64(args[0], &d1)) return bad_row(c, "bad parameter (%s)", name);
            st = sbx_poisson(&cur, d1, &v);
        }
        if (v != 12345) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "multinomial") || !strcmp(name, "multinomial_fill")) {
        /* N PROBS(float64 array, may be broken) K RENORMALIZE [OUT] */
        int fill = strlen(name) > 11;
        NEED(fill ? 5 : 4);
        sbx_array *probs = arg_array(c, args[1]);
        if (!probs || parse_i64(args[0], &i1) || parse_i64(args[2], &i2)) return -1;
        if (fill) {
            sbx_array *out = arg_array(c, args[4]);
            if (!out) return -1;
            return sbx_multinomial_fill(&rng, i1, probs->data, i2, atoi(args[3]), 0, out);
        }
        sbx_rng_cursor cur;
        int64_t counts[16];
        sbx_rng_cursor_init(&rng, 0, &cur);
        if (i2 > 16) return bad_row(c, "k up to 16 here (%s)", name);
        for (int i = 0; i < 16; i++) counts[i] = 12345;
        st = sbx_multinomial(&cur, i1, probs->data, i2, atoi(args[3]), counts);
        for (int i = 0; i < 16; i++)
            if (counts[i] != 12345) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "binomial_fill") || !strcmp(name, "poisson_fill")) {
        int bin = name[0] == 'b';
        NEED(bin ? 3 : 2);
        if (!(x = arg_array(c, args[nargs - 1]))) return -1;
        if (bin) {
            if (parse_i64(args[0], &i1) || parse_f64(args[1], &d1)) return bad_row(c, "bad parameters (%s)", name);
            return sbx_binomial_fill(&rng, i1, d1, 0, x);
        }
        if (parse_f64(args[0], &d1)) return bad_row(c, "bad parameter (%s)", name);
        return sbx_poisson_fill(&rng, d1, 0, x);
    }
    if (!strcmp(name, "random_binomial")) {
        NEED(6);
        if (parse_i64(args[0], &i1) || parse_f64(args[1], &d1) || parse_i64(args[2], &i2) || parse_i64(args[3], &i3) ||
            parse_format(args[4], &fmt) || parse_dtype(args[5], &dt))
            return bad_row(c, "bad arguments to %s", name);
        st = sbx_random_binomial(&rng, i1, d1, i2, i3, fmt, dt, &m);
        OUT_CHECK(m);
        return st;
    }
    if (!strcmp(name, "random_poisson")) {
        NEED(1);
        if (!SPA(0)) return -1;
        st = sbx_random_poisson(&rng, s, &m);
        OUT_CHECK(m);
        return st;
    }
    if (!strcmp(name, "random_multinomial")) {
        NEED(3);
        if (!ARR(0) || !SPA(1)) return -1;
        st = sbx_random_multinomial(&rng, x, s, atoi(args[2]), &m);
        OUT_CHECK(m);
        return st;
    }
    if (!strcmp(name, "random_op_grad")) {
        NEED(2);
        sbx_grad gr = (sbx_grad)77;
        st = sbx_random_op_grad((sbx_random_op)atoi(args[0]), atoi(args[1]), &gr);
        if (gr != (sbx_grad)77) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "random_op_infer_shape")) {
        NEED(3);
        int64_t out[2] = {12345, 12345};
        sbx_array *shape = strcmp(args[1], "-") ? arg_array(c, args[1]) : NULL;
        sbx_sparse *like = strcmp(args[2], "-") ? arg_sparse(c, args[2]) : NULL;
        if (c->why[0]) return -1;
        st = sbx_random_op_infer_shape((sbx_random_op)atoi(args[0]), shape, like, out);
        if (out[0] != 12345 || out[1] != 12345) output_changed = 1;
        return st;
    }
    /* --- the Op layer --- */
    if (!strcmp(name, "type_check")) {
        NEED(1);
        sbx_type t;
        if (arg_type(c, args[0], &t)) return -1;
        return sbx_type_check(&t, "the row's type");
    }
    if (!strcmp(name, "graph_input")) {
        NEED(1);
        sbx_type t;
        sbx_var *var = UNTOUCHED;
        if (arg_type(c, args[0], &t) || sbx_graph_create(&c->graph) != SBX_OK) return -1;
        st = sbx_graph_input(c->graph, "x", &t, &var);
        OUT_CHECK(var);
        return st;
    }
    if (!strcmp(name, "graph_shared") || !strcmp(name, "graph_constant")) {
        /* VALUE: "empty", "both" (an array and a sparse matrix at once) or an array spec whose changes
         * are made to a copy the library allocated (the graph takes over what it accepts) */
        NEED(1);
        sbx_value val = {NULL, NULL};
        sbx_var *var = UNTOUCHED;
        sbx_array saved;
        int64_t one[1] = {1};
        if (sbx_graph_create(&c->graph) != SBX_OK) return -1;
        if (!strcmp(args[0], "both")) {
            if (sbx_array_create(SBX_FLOAT64, 1, one, &val.dense) != SBX_OK ||
                sbx_sparse_create(SBX_CSR, SBX_FLOAT64, 1, 1, 0, &val.sparse) != SBX_OK)
                return bad_row(c, "%s", "cannot make a value");
        } else if (!strncmp(args[0], "csr ", 4) || !strncmp(args[0], "csc ", 4)) {
            sbx_sparse *sv = arg_sparse(c, args[0]);
            if (!sv || sbx_sparse_copy(sv, &val.sparse) != SBX_OK) return c->why[0] ? -1 : bad_row(c, "%s", "cannot copy");
        } else if (strcmp(args[0], "empty")) {
            sbx_array *view = arg_array(c, args[0]);
            if (!view) return -1;
            if (sbx_array_copy(c->arrays[c->narrays - 1], &val.dense) != SBX_OK) return bad_row(c, "%s", "cannot copy");
            saved = *val.dense;
            val.dense->ndim = view->ndim;
            val.dense->dtype = view->dtype;
            memcpy(val.dense->shape, view->shape, sizeof view->shape);
        }
        st = (name[6] == 's' ? sbx_graph_shared : sbx_graph_constant)(c->graph, "w", &val, &var);
        OUT_CHECK(var);
        if (st != SBX_OK) {
            if (val.dense && !val.sparse) *val.dense = saved;
            sbx_value_clear(&val);
        }
        return st;
    }
    if (!strcmp(name, "graph_scalar")) {
        NEED(2);
        sbx_var *var = UNTOUCHED;
        if (parse_dtype(args[0], &dt) || parse_f64(args[1], &d1) || sbx_graph_create(&c->graph) != SBX_OK)
            return bad_row(c, "bad arguments to %s", name);
        st = sbx_graph_scalar(c->graph, dt, d1, &var);
        OUT_CHECK(var);
        return st;
    }
    if (!strcmp(name, "apply")) {
        /* CLASS PROPS TYPE... */
        sbx_var *in[SBX_OP_MAX_INPUTS + 2], *out = UNTOUCHED;
        const sbx_op_class *cls = nargs >= 2 ? find_class(args[0]) : NULL;
        any_props p;
        if (!cls) return bad_row(c, "no op class '%s'", nargs ? args[0] : "");
        if (nargs - 2 > SBX_OP_MAX_INPUTS + 2) return bad_row(c, "too many inputs (%s)", name);
        if (parse_props(c, cls, args[1], &p) || graph_inputs(c, args + 2, nargs - 2, in)) return -1;
        st = sbx_apply(c->graph, cls, cls->props_size ? &p : NULL, nargs - 2, in, &out);
        OUT_CHECK(out);
        return st;
    }
    if (!strcmp(name, "gradient")) {
        /* WRT CLASS PROPS TYPE...: the gradient of the op's first output with respect to input WRT, or
         * to a variable outside the graph of the cost when WRT is "other" */
        sbx_var *in[SBX_OP_MAX_INPUTS], *out, *other, *grad = UNTOUCHED;
        if (nargs < 3 || nargs - 3 > SBX_OP_MAX_INPUTS || build(c, args + 1, nargs - 1, in, &out)) return c->why[0] ? -1 : bad_row(c, "%s", "bad gradient row");
        sbx_var *wrt = in[0];
        if (!strcmp(args[0], "other")) {
            if (graph_inputs(c, args + 3, 1, &other)) return -1;
            wrt = other;
        } else {
            wrt = in[atoi(args[0])];
        }
        st = sbx_gradient(c->graph, out, 1, &wrt, 0, &grad);
        OUT_CHECK(grad);
        return st;
    }
    if (!strcmp(name, "call") || !strcmp(name, "compile")) {
        /* CLASS PROPS TYPE... [=> VALUE...]: compile the inputs to the first output, call with the values.
         * compile: the function is compiled without its inputs listed. */
        int sep = nargs;
        for (int i = 0; i < nargs; i++)
            if (!strcmp(args[i], "=>")) sep = i;
        sbx_var *in[SBX_OP_MAX_INPUTS], *out;
        sbx_function *f = UNTOUCHED;
        if (sep < 2 || sep - 2 > SBX_OP_MAX_INPUTS || build(c, args, sep, in, &out)) return c->why[0] ? -1 : bad_row(c, "%s", "bad call row");
        int nin = sep - 2;
        if (name[1] == 'o') {
            st = sbx_function_compile(c->graph, 0, NULL, 1, &out, 0, NULL, 0, &f);
            OUT_CHECK(f);
            if (st == SBX_OK) sbx_function_free(f);
            return st;
        }
        if (nargs - sep - 1 != nin) return bad_row(c, "a call needs a value per input (%s)", name);
        sbx_value vals[SBX_OP_MAX_INPUTS], res = {UNTOUCHED, UNTOUCHED};
        for (int i = 0; i < nin; i++)
            if (arg_value(c, args[sep + 1 + i], &vals[i])) return -1;
        if (sbx_function_compile(c->graph, nin, in, 1, &out, 0, NULL, 0, &f) != SBX_OK)
            return bad_row(c, "%s", "the function does not compile");
        st = sbx_function_call(f, vals, &res);
        sbx_function_free(f);
        if (res.dense != UNTOUCHED || res.sparse != UNTOUCHED) output_changed = 1;
        return st;
    }
    if (!strcmp(name, "sgd") || !strcmp(name, "adam")) {
        /* HYPER (momentum, or beta1,beta2,eps) LR_DTYPE COST_CLASS PROPS PARAM_VALUE: the parameter a shared
         * variable, the cost the op applied to it, lr a 0-d shared value of LR_DTYPE */
        NEED(5);
        double h[3] = {0, 0, 0};
        int nh = 0;
        for (const char *q = args[0]; *q && nh < 3;) {
            char *end;
            h[nh++] = strtod(q, &end);
            if (end == q) return bad_row(c, "bad hyperparameters '%s'", args[0]);
            q = *end == ',' ? end + 1 : end;
        }
        const sbx_op_class *cls = find_class(args[2]);
        any_props p;
        sbx_value wv, lv = {NULL, NULL};
        sbx_var *w, *lr, *cost;
        sbx_update upd[8];
        int nupd = 77;
        int64_t none[1] = {0};
        if (!cls || parse_props(c, cls, args[3], &p) || arg_value(c, args[4], &wv) || parse_dtype(args[1], &dt) ||
            sbx_graph_create(&c->graph) != SBX_OK)
            return c->why[0] ? -1 : bad_row(c, "bad optimiser row (%s)", args[2]);
        /* the graph takes over what a value holds: hand it copies, not the row's arrays */
        sbx_value wcopy = {NULL, NULL};
        if (sbx_array_copy(wv.dense, &wcopy.dense) != SBX_OK || sbx_array_create(dt, 0, none, &lv.dense) != SBX_OK ||
            sbx_graph_shared(c->graph, "w", &wcopy, &w) != SBX_OK || sbx_graph_shared(c->graph, "lr", &lv, &lr) != SBX_OK ||
            sbx_apply(c->graph, cls, cls->props_size ? &p : NULL, 1, &w, &cost) != SBX_OK) {
            sbx_value_clear(&wcopy);
            sbx_value_clear(&lv);
            return bad_row(c, "%s", "the optimiser's graph is refused");
        }
        st = name[0] == 's' ? sbx_sgd(c->graph, cost, 1, &w, lr, h[0], upd, &nupd)
                            : sbx_adam(c->graph, cost, 1, &w, lr, h[0], h[1], h[2], upd, &nupd);
        if (nupd != 77) output_changed = 1;
        return st;
    }
    return bad_row(c, "unknown call '%s'", name);
#undef ARR
#undef SPA
}

static const char *const status_names[] = {"OK", "ERR_ARG", "ERR_NOMEM", "ERR_OVERFLOW", "ERR_IO", "ERR_FORMAT",
                                           "ERR_UNSUPPORTED"};

static void free_row(row_ctx *c) {
    for (int i = 0; i < c->narrays; i++) sbx_array_free(c->arrays[i]);
    for (int i = 0; i < c->nsparse; i++) {
        free(c->sparse[i]->indptr);
        free(c->sparse[i]->indices);
        free(c->sparse[i]->data);
        free(c->sparse[i]);
    }
    sbx_graph_free(c->graph);
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--make")) {
        char why[512];
        if (bad_make_file(argv[2], argv[3], why, sizeof why) == 0) return 0;
        fprintf(stderr, "bad_input_c: %s\n", why);
        return 1;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: bad_input_c TABLE.tsv SCRATCH_DIR | bad_input_c --make SPEC PATH\n");
        return 2;
    }
    mkdir(argv[2], 0777); /* may exist already */
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        fprintf(stderr, "bad_input_c: cannot open %s\n", argv[1]);
        return 1;
    }
    char line[8192];
    int lineno = 0, passed = 0, failed = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') continue;
        char *field[3 + MAX_ARGS];
        int n = 0;
        for (char *p = line; p && n < 3 + MAX_ARGS; n++) {
            field[n] = p;
            p = strchr(p, '\t');
            if (p) *p++ = '\0';
        }
        row_ctx *c = calloc(1, sizeof *c);
        if (!c) return 1;
        c->dir = argv[2];
        c->line = lineno;
        int want = -1;
        for (int i = 0; i < 7; i++)
            if (n >= 3 && !strcmp(field[0], status_names[i])) want = i;
        output_changed = 0;
        if (getenv("BAD_INPUT_VERBOSE")) fprintf(stderr, "line %d: %s\n", lineno, field[n >= 3 ? 2 : 0]);
        sbx_dtype ignored;
        sbx_dtype_parse("(no message yet)", &ignored); /* so that a call that sets none is seen */
        /* every row is a failure with a message: OK and an empty fragment would check nothing */
        int got = want <= 0 ? bad_row(c, "status '%s' is not an error status", n ? field[0] : "")
                  : n < 3 || !field[1][0] ? bad_row(c, "%s", "a row needs a status, a message fragment and a call")
                                          : run_call(c, field[2], field + 3, n - 3);
        const char *msg = sbx_last_error();
        if (getenv("BAD_INPUT_VERBOSE")) fprintf(stderr, "  -> %s: %s\n", got >= 0 && got < 7 ? status_names[got] : "?", msg);
        if (got < 0) {
            printf("FAIL line %d: the row cannot be run: %s\n", lineno, c->why);
            failed++;
        } else if (got != want) {
            printf("FAIL line %d: %s: status %s (%s), expected %s\n", lineno, field[2], got < 7 ? status_names[got] : "?",
                   got == 0 ? "no error" : msg, status_names[want]);
            failed++;
        } else if (!strstr(msg, field[1])) {
            printf("FAIL line %d: %s: message \"%s\" lacks \"%s\"\n", lineno, field[2], msg, field[1]);
            failed++;
        } else if (output_changed) {
            printf("FAIL line %d: %s: failed but changed its output\n", lineno, field[2]);
            failed++;
        } else {
            passed++;
        }
        free_row(c);
        free(c);
    }
    fclose(f);
    printf("bad_input_c: %d of %d rows passed\n", passed, passed + failed);
    return failed ? 1 : 0;
}
