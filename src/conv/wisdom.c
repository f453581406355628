/* Wisdom: the process-wide store of measured plan choices, and its text file (format in conv.h). */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conv/internal.h"

#define VERSION_LINE "sparsebox-wisdom 1"
#define LINE_MAX_CHARS 4096
#define MAX_BATCH ((int64_t)1 << 20) /* as plan.c's */

typedef struct {
    int kind;
    sbx_dtype dtype;
    sbx_conv_shape shape;
    int64_t nkern, batch;
    unsigned flags;
    sbx_algo algo;
    int n;
    sbx_algo candidates[SBX_ALGO_COUNT];
    double seconds[SBX_ALGO_COUNT];
} entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry *store;
static int64_t count;

static const char *const KINDS[] = {"conv", "local", "pool"};

static int same_key(const entry *e, int kind, const sbx_conv_shape *s, int64_t nkern, sbx_dtype dtype, int64_t batch,
                    unsigned flags) {
    if (e->kind != kind || e->dtype != dtype || e->nkern != nkern || e->batch != batch || e->flags != flags ||
        e->shape.ndim != s->ndim || e->shape.channels != s->channels || e->shape.mode != s->mode)
        return 0;
    for (int d = 0; d < s->ndim; d++)
        if (e->shape.in[d] != s->in[d] || e->shape.kernel[d] != s->kernel[d] || e->shape.stride[d] != s->stride[d])
            return 0;
    return 1;
}

/* The index of the entry with e's key in list[0 .. n-1], or -1. */
static int64_t find(const entry *list, int64_t n, const entry *e) {
    for (int64_t i = 0; i < n; i++)
        if (same_key(&list[i], e->kind, &e->shape, e->nkern, e->dtype, e->batch, e->flags)) return i;
    return -1;
}

static int is_candidate(const sbx_conv_plan *p, sbx_algo a) {
    for (int i = 0; i < p->ncandidates; i++)
        if (p->candidates[i] == a) return 1;
    return 0;
}

int sbx__wisdom_lookup(sbx_conv_plan *p) {
    int found = 0;
    pthread_mutex_lock(&lock);
    for (int64_t i = 0; i < count && !found; i++) {
        const entry *e = &store[i];
        if (!same_key(e, (int)p->kind, &p->shape, p->nkern, p->dtype, p->batch, p->flags)) continue;
        /* An entry naming a path this plan cannot take (from another build) is not used. */
        int usable = is_candidate(p, e->algo);
        for (int c = 0; c < e->n; c++) usable &= is_candidate(p, e->candidates[c]);
        if (!usable) break;
        p->algo = e->algo;
        p->ncandidates = e->n;
        memcpy(p->candidates, e->candidates, sizeof e->candidates);
        memcpy(p->seconds, e->seconds, sizeof e->seconds);
        p->from_wisdom = found = 1;
    }
    pthread_mutex_unlock(&lock);
    return found;
}

sbx_status sbx__wisdom_record(const sbx_conv_plan *p) {
    entry e;
    memset(&e, 0, sizeof e);
    e.kind = (int)p->kind;
    e.dtype = p->dtype;
    e.shape = p->shape;
    e.nkern = p->nkern;
    e.batch = p->batch;
    e.flags = p->flags;
    e.algo = p->algo;
    e.n = p->ncandidates;
    memcpy(e.candidates, p->candidates, sizeof e.candidates);
    memcpy(e.seconds, p->seconds, sizeof e.seconds);
    sbx_status st = SBX_OK;
    pthread_mutex_lock(&lock);
    int64_t i = find(store, count, &e);
    if (i < 0) {
        st = sbx__grow(count + 1, sizeof *store, &store, "wisdom");
        if (st == SBX_OK) i = count++;
    }
    if (st == SBX_OK) store[i] = e;
    pthread_mutex_unlock(&lock);
    return st;
}

void sbx_wisdom_forget(void) {
    pthread_mutex_lock(&lock);
    sbx__free(store);
    store = NULL;
    count = 0;
    pthread_mutex_unlock(&lock);
}

int64_t sbx_wisdom_count(void) {
    pthread_mutex_lock(&lock);
    const int64_t n = count;
    pthread_mutex_unlock(&lock);
    return n;
}

static void put_list(FILE *f, const int64_t *v, int n) {
    for (int d = 0; d < n; d++) fprintf(f, "%s%lld", d ? "," : "", (long long)v[d]);
}

/* Times with 17 significant digits: a double read back is the same double, so imported wisdom
 * replays the recorded times exactly. */
static void put_entry(FILE *f, const entry *e) {
    fprintf(f, "%s %s %d %lld ", KINDS[e->kind], sbx_dtype_name(e->dtype), e->shape.ndim,
            (long long)e->shape.channels);
    put_list(f, e->shape.in, e->shape.ndim);
    fputc(' ', f);
    put_list(f, e->shape.kernel, e->shape.ndim);
    fputc(' ', f);
    put_list(f, e->shape.stride, e->shape.ndim);
    fprintf(f, " %s %lld %lld %u %s %d", sbx_conv_mode_name(e->shape.mode), (long long)e->nkern, (long long)e->batch,
            e->flags, sbx__algo_names[e->algo], e->n);
    for (int c = 0; c < e->n; c++) fprintf(f, " %s=%.17g", sbx__algo_names[e->candidates[c]], e->seconds[c]);
    fputc('\n', f);
}

sbx_status sbx_wisdom_export(const char *path) {
    if (!path) return sbx__error(SBX_ERR_ARG, "path is NULL");
    const size_t len = strlen(path);
    char *tmp = NULL;
    SBX_CHECK(sbx__alloc((int64_t)len + 32, 1, &tmp, "wisdom file name"));
    snprintf(tmp, len + 32, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        sbx_status st = sbx__error(SBX_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        sbx__free(tmp);
        return st;
    }
    fprintf(f, "%s\n", VERSION_LINE);
    pthread_mutex_lock(&lock);
    for (int64_t i = 0; i < count; i++) put_entry(f, &store[i]);
    pthread_mutex_unlock(&lock);
    const int bad = ferror(f), closed = fclose(f);
    sbx_status st = SBX_OK;
    if (bad || closed != 0)
        st = sbx__error(SBX_ERR_IO, "cannot write %s", tmp);
    else if (rename(tmp, path) != 0)
        st = sbx__error(SBX_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st != SBX_OK) remove(tmp);
    sbx__free(tmp);
    return st;
}

/* --- import --- */

typedef struct {
    const char *path;
    int64_t line;
    char *at; /* the rest of the line */
} cursor;

/* The next space-separated field of the line into *out, or SBX_ERR_FORMAT naming the missing field. */
static sbx_status field(cursor *c, const char *name, char **out) {
    if (*c->at == '\0')
        return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field %s is missing (truncated entry)", c->path,
                          (long long)c->line, name);
    char *start = c->at, *sp = strchr(start, ' ');
    if (sp) {
        *sp = '\0';
        c->at = sp + 1;
    } else {
        c->at = start + strlen(start);
    }
    if (*start == '\0')
        return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field %s is empty", c->path, (long long)c->line,
                          name);
    *out = start;
    return SBX_OK;
}

/* A decimal int64 in text (all of it), or SBX_ERR_FORMAT naming the field. */
static sbx_status number(const cursor *c, const char *name, const char *text, int64_t *out) {
    char *end;
    errno = 0;
    const long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || !(text[0] == '-' || (text[0] >= '0' && text[0] <= '9')))
        return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field %s '%s' is not an integer", c->path,
                          (long long)c->line, name, text);
    *out = v;
    return SBX_OK;
}

static sbx_status int_field(cursor *c, const char *name, int64_t lo, int64_t hi, int64_t *out) {
    char *t = NULL;
    SBX_CHECK(field(c, name, &t));
    SBX_CHECK(number(c, name, t, out));
    if (*out < lo || *out > hi)
        return sbx__error(SBX_ERR_ARG, "wisdom file %s line %lld: field %s %lld is outside %lld .. %lld", c->path,
                          (long long)c->line, name, (long long)*out, (long long)lo, (long long)hi);
    return SBX_OK;
}

/* ndim comma-separated integers. */
static sbx_status list_field(cursor *c, const char *name, int ndim, int64_t *out) {
    char *t = NULL;
    SBX_CHECK(field(c, name, &t));
    for (int d = 0; d < ndim; d++) {
        char *comma = strchr(t, ',');
        if ((d < ndim - 1) != (comma != NULL))
            return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field %s must hold %d comma-separated "
                              "integers", c->path, (long long)c->line, name, ndim);
        if (comma) *comma = '\0';
        SBX_CHECK(number(c, name, t, &out[d]));
        if (comma) t = comma + 1;
    }
    return SBX_OK;
}

static int kind_takes(int kind, sbx_algo a) {
    return kind == PLAN_CONV ? a <= SBX_ALGO_CSC : kind == PLAN_LOCAL ? a == SBX_ALGO_LOCAL : a == SBX_ALGO_POOL;
}

static sbx_status algo_field(const cursor *c, const char *name, const char *text, int kind, sbx_algo *out) {
    int a = 0;
    while (a < SBX_ALGO_COUNT && strcmp(text, sbx__algo_names[a]) != 0) a++;
    if (a == SBX_ALGO_COUNT)
        return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field %s: unknown path '%s'", c->path,
                          (long long)c->line, name, text);
    if (!kind_takes(kind, (sbx_algo)a))
        return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field %s: path '%s' is not one of a %s plan's",
                          c->path, (long long)c->line, name, text, KINDS[kind]);
    *out = (sbx_algo)a;
    return SBX_OK;
}

/* One entry line (without its newline) into *e. */
static sbx_status parse_entry(cursor *c, entry *e) {
    char *t = NULL;
    int64_t v, in[SBX_MAX_NDIM], kernel[SBX_MAX_NDIM], stride[SBX_MAX_NDIM], channels;
    memset(e, 0, sizeof *e);
    SBX_CHECK(field(c, "KIND", &t));
    e->kind = -1;
    for (int k = 0; k < 3; k++)
        if (strcmp(t, KINDS[k]) == 0) e->kind = k;
    if (e->kind < 0)
        return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field KIND: unknown kind '%s' (conv, local or "
                          "pool)", c->path, (long long)c->line, t);
    SBX_CHECK(field(c, "DTYPE", &t));
    if (strcmp(t, "float32") == 0)
        e->dtype = SBX_FLOAT32;
    else if (strcmp(t, "float64") == 0)
        e->dtype = SBX_FLOAT64;
    else
        return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field DTYPE: '%s' is not float32 or float64",
                          c->path, (long long)c->line, t);
    SBX_CHECK(int_field(c, "NDIM", 1, SBX_MAX_NDIM, &v));
    const int ndim = (int)v;
    SBX_CHECK(int_field(c, "CHANNELS", 1, INT64_MAX, &channels));
    SBX_CHECK(list_field(c, "IN", ndim, in));
    SBX_CHECK(list_field(c, "KERNEL", ndim, kernel));
    SBX_CHECK(list_field(c, "STRIDE", ndim, stride));
    SBX_CHECK(field(c, "MODE", &t));
    sbx_conv_mode mode;
    if (strcmp(t, "valid") == 0)
        mode = SBX_CONV_VALID;
    else if (strcmp(t, "full") == 0)
        mode = SBX_CONV_FULL;
    else
        return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field MODE: '%s' is not valid or full", c->path,
                          (long long)c->line, t);
    if (sbx_conv_shape_make(ndim, channels, in, kernel, stride, mode, &e->shape) != SBX_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", sbx_last_error());
        return sbx__error(SBX_ERR_ARG, "wisdom file %s line %lld: fields IN, KERNEL, STRIDE, MODE: %s", c->path,
                          (long long)c->line, why);
    }
    SBX_CHECK(int_field(c, "NKERN", 1, e->kind == PLAN_POOL ? 1 : INT64_MAX, &e->nkern));
    SBX_CHECK(int_field(c, "BATCH", 1, MAX_BATCH, &e->batch));
    SBX_CHECK(int_field(c, "FLAGS", SBX_PLAN_MEASURE, SBX_PLAN_MEASURE, &v)); /* only MEASURE choices are held */
    e->flags = (unsigned)v;
    SBX_CHECK(field(c, "ALGO", &t));
    SBX_CHECK(algo_field(c, "ALGO", t, e->kind, &e->algo));
    SBX_CHECK(int_field(c, "N", 1, SBX_ALGO_COUNT, &v));
    e->n = (int)v;
    int has_algo = 0;
    for (int i = 0; i < e->n; i++) {
        char name[32];
        snprintf(name, sizeof name, "candidate %d", i + 1);
        SBX_CHECK(field(c, name, &t));
        char *eq = strchr(t, '=');
        if (!eq)
            return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field %s '%s' is not PATH=SECONDS", c->path,
                              (long long)c->line, name, t);
        *eq = '\0';
        SBX_CHECK(algo_field(c, name, t, e->kind, &e->candidates[i]));
        for (int j = 0; j < i; j++)
            if (e->candidates[j] == e->candidates[i])
                return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field %s: path '%s' is listed twice",
                                  c->path, (long long)c->line, name, t);
        char *end;
        errno = 0;
        const double s = strtod(eq + 1, &end);
        if (end == eq + 1 || *end != '\0' || errno == ERANGE)
            return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field %s: seconds '%s' is not a number",
                              c->path, (long long)c->line, name, eq + 1);
        if (!isfinite(s) || s < 0)
            return sbx__error(SBX_ERR_ARG, "wisdom file %s line %lld: field %s: seconds %s must be finite and >= 0",
                              c->path, (long long)c->line, name, eq + 1);
        e->seconds[i] = s;
        has_algo |= e->candidates[i] == e->algo;
    }
    if (*c->at != '\0')
        return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: text after the last field: '%s'", c->path,
                          (long long)c->line, c->at);
    if (!has_algo)
        return sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: field ALGO: '%s' is not among the candidates",
                          c->path, (long long)c->line, sbx__algo_names[e->algo]);
    return SBX_OK;
}

/* Reads every entry of the file at path into *list (n of them). */
static sbx_status read_file(const char *path, entry **list, int64_t *n) {
    FILE *f = fopen(path, "r");
    if (!f) return sbx__error(SBX_ERR_IO, "cannot read wisdom file %s: %s", path, strerror(errno));
    char *buf = NULL;
    sbx_status st = sbx__alloc(LINE_MAX_CHARS + 2, 1, &buf, "wisdom line");
    cursor c = {path, 0, NULL};
    *list = NULL;
    *n = 0;
    while (st == SBX_OK && fgets(buf, LINE_MAX_CHARS + 2, f)) {
        c.line++;
        size_t len = strlen(buf);
        if (len == 0 || buf[len - 1] != '\n') {
            st = sbx__error(SBX_ERR_FORMAT, "wisdom file %s line %lld: %s", path, (long long)c.line,
                            len > LINE_MAX_CHARS ? "longer than 4096 characters" : "truncated (no newline at its end)");
            break;
        }
        buf[--len] = '\0';
        if (c.line == 1) {
            if (strcmp(buf, VERSION_LINE) != 0)
                st = sbx__error(SBX_ERR_FORMAT, "wisdom file %s line 1: version line '%.64s', expected '%s'", path, buf,
                                VERSION_LINE);
            continue;
        }
        if (buf[0] == '#') continue;
        c.at = buf;
        entry e;
        st = parse_entry(&c, &e);
        if (st == SBX_OK) st = sbx__grow(*n + 1, sizeof **list, list, "wisdom entries");
        if (st == SBX_OK) (*list)[(*n)++] = e;
    }
    if (st == SBX_OK && ferror(f)) st = sbx__error(SBX_ERR_IO, "cannot read wisdom file %s", path);
    if (st == SBX_OK && c.line == 0)
        st = sbx__error(SBX_ERR_FORMAT, "wisdom file %s line 1: version line missing (empty file)", path);
    fclose(f);
    sbx__free(buf);
    if (st != SBX_OK) {
        sbx__free(*list);
        *list = NULL;
        *n = 0;
    }
    return st;
}

sbx_status sbx_wisdom_import(const char *path) {
    if (!path) return sbx__error(SBX_ERR_ARG, "path is NULL");
    entry *list, *merged = NULL;
    int64_t n;
    SBX_CHECK(read_file(path, &list, &n));
    /* The merged store is made whole before it replaces the old one, so a failure changes nothing. */
    pthread_mutex_lock(&lock);
    sbx_status st = sbx__alloc(count + n, sizeof *merged, &merged, "wisdom");
    if (st == SBX_OK) {
        int64_t m = count;
        if (count) memcpy(merged, store, (size_t)count * sizeof *store);
        for (int64_t i = 0; i < n; i++) {
            const int64_t at = find(merged, m, &list[i]);
            merged[at < 0 ? m++ : at] = list[i];
        }
        sbx__free(store);
        store = merged;
        count = m;
    }
    pthread_mutex_unlock(&lock);
    sbx__free(list);
    return st;
}
