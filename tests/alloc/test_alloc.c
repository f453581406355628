/* Allocation failure through every public entry point (issue 15, point 1), as SQLite's and CSparse's
 * tests do: with the allocator's hook (src/core/alloc.c) making allocation k of a call fail, for
 * k = 1, 2, ... up to the number of allocations the call makes, each call must
 *  - answer SBX_ERR_NOMEM (or, where the library tolerates that allocation, succeed all the same);
 *  - leave nothing allocated (the allocator's live-block count, and LeakSanitizer in the ASan build);
 *  - leave its outputs as they were: an output pointer keeps the value passed in, an in/out array its
 *    bytes, a file is not left behind, a function's shared variables keep their values;
 *  - and then, called again with the hook off on the same objects, give the bytes of a reference call.
 * Each walk prints its entry point's number of failure points.
 *
 * Not failable, so not walked: allocations a compiled function serves from its pool (src/core/alloc.c,
 * sbx__pool_enter), which from its second call on is all of a dense graph's (the "call 2" walks show
 * it). Not here because the library has none: an IDX reader (the demo's, examples/demo/idx.c, uses the C
 * library's malloc) and wisdom import (plans choose by rules only so far). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/internal.h"
#include "sparsebox.h"

#define OK(expr)                                                                       \
    do {                                                                               \
        sbx_status ok_st_ = (expr);                                                    \
        if (ok_st_ != SBX_OK) fail_msg("%s: status %d: %s", #expr, (int)ok_st_, sbx_last_error()); \
    } while (0)

/* What an untouched output pointer holds: an address no allocation can return. */
static char sentinel_byte;
#define SENT ((void *)&sentinel_byte)

/* --- Results as bytes (in the C library's memory, which the hook does not see) -------------------- */
typedef struct bytes {
    unsigned char *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (n == 0) return;
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) fail_msg("out of memory in the test itself");
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_array(bytes *b, const sbx_array *a) {
    put(b, &a->dtype, sizeof a->dtype);
    put(b, &a->ndim, sizeof a->ndim);
    put(b, a->shape, sizeof a->shape);
    if (a->data) put(b, a->data, (size_t)sbx_array_numel(a) * sbx_dtype_size(a->dtype));
}

static void put_sparse(bytes *b, const sbx_sparse *m) {
    put(b, &m->format, sizeof m->format);
    put(b, &m->dtype, sizeof m->dtype);
    put(b, &m->nrows, 3 * sizeof m->nrows);
    put(b, m->indptr, (size_t)(sbx_sparse_major(m) + 1) * sizeof(int64_t));
    if (m->nnz > 0) {
        put(b, m->indices, (size_t)m->nnz * sizeof(int64_t));
        put(b, m->data, (size_t)m->nnz * sbx_dtype_size(m->dtype));
    }
}

static void put_value(bytes *b, const sbx_value *v) {
    if (v->dense) put_array(b, v->dense);
    if (v->sparse) put_sparse(b, v->sparse);
}

static void put_file(bytes *b, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot read back %s", path);
    unsigned char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) put(b, buf, n);
    fclose(f);
}

/* --- The hook ------------------------------------------------------------------------------------
 * An entry point's walk may make several hooked calls (one per input file, geometry, format); each
 * has allocation k fail, so the walk runs k up to the largest count among them, and the failure points
 * of an entry point are the sum of its calls' counts. */
static int64_t made_max, made_sum; /* over the hooked calls since the walker reset them */
static int64_t tolerated;          /* hooked calls that reached the failing allocation and succeeded */
static char failed_msg[512];       /* the message of the last hooked call that failed */

/* st = expr with the k-th allocation failing (k = 0: none): out of memory when that allocation was
 * made (or success, where the library does without the block), success otherwise. */
#define HOOK(k, st, expr)                                                                                     \
    do {                                                                                                      \
        sbx__alloc_fail_at(k);                                                                                \
        st = (expr);                                                                                          \
        const int64_t n_ = sbx__alloc_fail_at(0);                                                             \
        if ((k) == 0) {                                                                                       \
            made_sum += n_;                                                                                   \
            if (n_ > made_max) made_max = n_;                                                                 \
        }                                                                                                     \
        if (st != SBX_OK) snprintf(failed_msg, sizeof failed_msg, "%s", sbx_last_error());                   \
        if ((k) > 0 && (k) <= n_ && st == SBX_OK) tolerated++;                                                \
        if (st != SBX_OK && ((k) == 0 || (k) > n_))                                                           \
            fail_msg("%s: fails with no allocation failing (k %lld, %lld made): %s", #expr, (long long)(k),  \
                     (long long)n_, failed_msg);                                                              \
        if (st != SBX_OK && st != SBX_ERR_NOMEM)                                                              \
            fail_msg("%s: allocation %lld of %lld failing: status '%s', not out of memory: %s", #expr,       \
                     (long long)(k), (long long)n_, sbx_status_str(st), failed_msg);                          \
        if (st == SBX_ERR_NOMEM && !strstr(failed_msg, "allocate"))                                           \
            fail_msg("%s: allocation %lld failing: the message does not say so: %s", #expr, (long long)(k),  \
                     failed_msg);                                                                             \
    } while (0)

/* The hooked call of an entry point: on failure its outputs must be untouched (`untouched` holds),
 * and the same call with the hook off must then succeed. */
#define CALL(k, st, expr, untouched)                                                                   \
    do {                                                                                               \
        HOOK(k, st, expr);                                                                             \
        if (st != SBX_OK) {                                                                            \
            if (!(untouched))                                                                          \
                fail_msg("%s: allocation %lld failing: outputs written (%s does not hold)", #expr,    \
                         (long long)(k), #untouched);                                                  \
            sbx_status again_ = (expr);                                                                \
            if (again_ != SBX_OK)                                                                      \
                fail_msg("%s: after allocation %lld failed, fails again with the hook off: %s", #expr, \
                         (long long)(k), sbx_last_error());                                            \
        }                                                                                              \
    } while (0)

/* An entry point's walk: call(k, got) makes what the entry point needs with the hook off, calls it
 * hooked (CALL), appends the result of the successful call to got, frees everything, and returns the
 * hooked calls' first failing status. */
typedef sbx_status (*entry_fn)(int64_t k, bytes *got);

static void walk(const char *name, entry_fn call) {
    bytes ref = {0}, got = {0};
    const int64_t live = sbx__alloc_live();
    made_max = made_sum = tolerated = 0;
    if (call(0, &ref) != SBX_OK) fail_msg("%s: the reference call failed: %s", name, failed_msg);
    if (sbx__alloc_live() != live)
        fail_msg("%s: the reference call left %lld blocks allocated", name, (long long)(sbx__alloc_live() - live));
    const int64_t total = made_sum, longest = made_max;
    for (int64_t k = 1; k <= longest; k++) {
        got.n = 0;
        call(k, &got);
        if (sbx__alloc_live() != live)
            fail_msg("%s: allocation %lld failing: %lld blocks left allocated (%s)", name, (long long)k,
                     (long long)(sbx__alloc_live() - live), failed_msg);
        if (got.n != ref.n || (ref.n > 0 && memcmp(got.p, ref.p, ref.n) != 0))
            fail_msg("%s: allocation %lld failing: the result then differs from the reference", name, (long long)k);
    }
    if (tolerated)
        print_message("%-36s %5lld failure points (%lld tolerated: the call does without that block)\n", name,
                      (long long)total, (long long)tolerated);
    else
        print_message("%-36s %5lld failure points\n", name, (long long)total);
    free(ref.p);
    free(got.p);
}

#define WALK(fn) walk(#fn, fn)

/* --- Inputs -------------------------------------------------------------------------------------- */
static double value_at(uint32_t seed, int64_t i) { /* a fixed, irregular value in [-1, 1) */
    uint32_t h = seed * 2654435761u ^ (uint32_t)i * 40503u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return (double)(h % 2000) / 1000.0 - 1.0;
}

static sbx_array *array_of(sbx_dtype dtype, int ndim, const int64_t *shape, uint32_t seed) {
    sbx_array *a;
    OK(sbx_array_create(dtype, ndim, shape, &a));
    for (int64_t i = 0, n = sbx_array_numel(a); i < n; i++) {
        double v = value_at(seed, i);
        if (dtype == SBX_FLOAT32) ((float *)a->data)[i] = (float)v;
        if (dtype == SBX_FLOAT64) ((double *)a->data)[i] = v;
        if (dtype == SBX_INT64) ((int64_t *)a->data)[i] = (int64_t)(v * 10);
    }
    return a;
}

/* A 4 x 5 CSR matrix, the test's own arrays: rows unsorted, a duplicate and a stored zero. */
static const int64_t U_IP[5] = {0, 3, 4, 4, 7}, U_IX[7] = {3, 1, 3, 0, 4, 2, 4};
static const double U_V[7] = {1, 2, -1, 3, 4, 0, 5};
/* A sorted, unique one. */
static const int64_t S_IP[5] = {0, 2, 3, 3, 6}, S_IX[6] = {1, 3, 0, 0, 2, 4};
static const double S_V[6] = {0.5, -2, 3, 1.5, 0.25, 4};

static sbx_sparse sorted_csr(void) {
    sbx_sparse m = {SBX_CSR, SBX_FLOAT64, 4, 5, 6, (int64_t *)S_IP, (int64_t *)S_IX, (double *)S_V};
    return m;
}

/* --- core.h --------------------------------------------------------------------------------------- */
static sbx_status array_create(int64_t k, bytes *got) {
    sbx_array *o = SENT;
    sbx_status st;
    CALL(k, st, sbx_array_create(SBX_FLOAT32, 2, (int64_t[]){3, 4}, &o), o == SENT);
    put_array(got, o);
    sbx_array_free(o);
    return st;
}

static sbx_status array_copy(int64_t k, bytes *got) {
    sbx_array *a = array_of(SBX_FLOAT64, 2, (int64_t[]){3, 4}, 1), *o = SENT;
    sbx_status st;
    CALL(k, st, sbx_array_copy(a, &o), o == SENT);
    put_array(got, o);
    sbx_array_free(o);
    sbx_array_free(a);
    return st;
}

static sbx_status array_cast(int64_t k, bytes *got) {
    sbx_array *a = array_of(SBX_FLOAT64, 2, (int64_t[]){3, 4}, 2), *o = SENT;
    sbx_status st;
    CALL(k, st, sbx_array_cast(a, SBX_FLOAT32, &o), o == SENT);
    put_array(got, o);
    sbx_array_free(o);
    sbx_array_free(a);
    return st;
}

/* --- sparse.h ------------------------------------------------------------------------------------- */
static sbx_status sparse_create(int64_t k, bytes *got) {
    sbx_sparse *o = SENT;
    sbx_status st;
    CALL(k, st, sbx_sparse_create(SBX_CSC, SBX_FLOAT32, 3, 4, 5, &o), o == SENT);
    put_sparse(got, o);
    sbx_sparse_free(o);
    return st;
}

/* One function of a matrix giving a new matrix. */
static sbx_status sparse_to_sparse(int64_t k, bytes *got, int which) {
    sbx_sparse m = {SBX_CSR, SBX_FLOAT64, 4, 5, 7, (int64_t *)U_IP, (int64_t *)U_IX, (double *)U_V}, *o = SENT;
    sbx_status st;
    switch (which) {
    case 0: CALL(k, st, sbx_sparse_copy(&m, &o), o == SENT); break;
    case 1: CALL(k, st, sbx_sparse_convert(&m, SBX_CSC, &o), o == SENT); break;
    case 2: CALL(k, st, sbx_sparse_convert(&m, SBX_CSR, &o), o == SENT); break;
    case 3: CALL(k, st, sbx_sparse_transpose(&m, &o), o == SENT); break;
    default: CALL(k, st, sbx_sparse_cast(&m, SBX_FLOAT32, &o), o == SENT); break;
    }
    put_sparse(got, o);
    sbx_sparse_free(o);
    return st;
}
static sbx_status sparse_copy(int64_t k, bytes *got) { return sparse_to_sparse(k, got, 0); }
static sbx_status sparse_convert_csr_to_csc(int64_t k, bytes *got) { return sparse_to_sparse(k, got, 1); }
static sbx_status sparse_convert_sorted_copy(int64_t k, bytes *got) { return sparse_to_sparse(k, got, 2); }
static sbx_status sparse_transpose(int64_t k, bytes *got) { return sparse_to_sparse(k, got, 3); }
static sbx_status sparse_cast(int64_t k, bytes *got) { return sparse_to_sparse(k, got, 4); }

static sbx_status sparse_from_dense(int64_t k, bytes *got) {
    sbx_sparse m = sorted_csr(), *o = SENT, *o2 = SENT;
    sbx_array *a;
    sbx_status st, st2;
    OK(sbx_sparse_to_dense(&m, &a));
    CALL(k, st, sbx_sparse_from_dense(a, SBX_CSR, &o), o == SENT);
    CALL(k, st2, sbx_sparse_from_dense(a, SBX_CSC, &o2), o2 == SENT);
    put_sparse(got, o);
    put_sparse(got, o2);
    sbx_sparse_free(o);
    sbx_sparse_free(o2);
    sbx_array_free(a);
    return st != SBX_OK ? st : st2;
}

static sbx_status sparse_to_dense(int64_t k, bytes *got) {
    sbx_sparse m = {SBX_CSC, SBX_FLOAT64, 5, 4, 7, (int64_t *)U_IP, (int64_t *)U_IX, (double *)U_V};
    sbx_array *o = SENT;
    sbx_status st;
    CALL(k, st, sbx_sparse_to_dense(&m, &o), o == SENT);
    put_array(got, o);
    sbx_array_free(o);
    return st;
}

/* The in-place functions on the test's own copy of the unsorted matrix: its bytes stay on failure. */
static sbx_status sparse_in_place(int64_t k, bytes *got, sbx_status (*fn)(sbx_sparse *)) {
    int64_t ip[5], ix[7];
    double v[7];
    memcpy(ip, U_IP, sizeof ip);
    memcpy(ix, U_IX, sizeof ix);
    memcpy(v, U_V, sizeof v);
    sbx_sparse m = {SBX_CSR, SBX_FLOAT64, 4, 5, 7, ip, ix, v};
    sbx_status st;
    CALL(k, st, fn(&m),
         m.nnz == 7 && !memcmp(ip, U_IP, sizeof ip) && !memcmp(ix, U_IX, sizeof ix) && !memcmp(v, U_V, sizeof v));
    put_sparse(got, &m);
    return st;
}
static sbx_status sparse_sort_indices(int64_t k, bytes *got) { return sparse_in_place(k, got, sbx_sparse_sort_indices); }
static sbx_status sparse_sum_duplicates(int64_t k, bytes *got) {
    return sparse_in_place(k, got, sbx_sparse_sum_duplicates);
}
static sbx_status sparse_eliminate_zeros(int64_t k, bytes *got) {
    return sparse_in_place(k, got, sbx_sparse_eliminate_zeros);
}

static sbx_status sparse_validate(int64_t k, bytes *got) {
    sbx_sparse m = sorted_csr(), u = {SBX_CSR, SBX_FLOAT64, 4, 5, 7, (int64_t *)U_IP, (int64_t *)U_IX, (double *)U_V};
    sbx_status st, s2;
    CALL(k, st, sbx_sparse_validate(&m), 1);
    CALL(k, s2, sbx_sparse_validate_structure(&u), 1);
    put(got, &st, sizeof st);
    put(got, &s2, sizeof s2);
    return st != SBX_OK ? st : s2;
}

/* The products, both formats, both dtypes. */
static sbx_status sparse_dots(int64_t k, bytes *got, int dense_first) {
    sbx_sparse csr = sorted_csr(), *m[4];
    sbx_status st = SBX_OK, s;
    OK(sbx_sparse_convert(&csr, SBX_CSC, &m[1]));
    OK(sbx_sparse_copy(&csr, &m[0]));
    OK(sbx_sparse_cast(m[0], SBX_FLOAT32, &m[2]));
    OK(sbx_sparse_cast(m[1], SBX_FLOAT32, &m[3]));
    for (int i = 0; i < 4; i++) {
        sbx_dtype dt = i < 2 ? SBX_FLOAT64 : SBX_FLOAT32;
        sbx_array *b = dense_first ? array_of(dt, 2, (int64_t[]){3, 4}, 3) : array_of(dt, 2, (int64_t[]){5, 3}, 3);
        sbx_array *o = SENT;
        if (dense_first)
            CALL(k, s, sbx_dense_dot_sparse(b, m[i], &o), o == SENT);
        else
            CALL(k, s, sbx_sparse_dot_dense(m[i], b, &o), o == SENT);
        if (st == SBX_OK) st = s;
        put_array(got, o);
        sbx_array_free(o);
        sbx_array_free(b);
        sbx_sparse_free(m[i]);
    }
    return st;
}
static sbx_status sparse_dot_dense(int64_t k, bytes *got) { return sparse_dots(k, got, 0); }
static sbx_status dense_dot_sparse(int64_t k, bytes *got) { return sparse_dots(k, got, 1); }

/* --- io.h ----------------------------------------------------------------------------------------- */
static char tmpdir[400];
static const char *path_of(const char *name) {
    static char buf[4][512];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void write_text(const char *name, const char *text) {
    FILE *f = fopen(path_of(name), "wb");
    if (!f) fail_msg("cannot write %s", name);
    fputs(text, f);
    fclose(f);
}

/* An .npy file of 2 x 3 float64 with the given header dictionary. */
static void write_npy(const char *name, const char *dict, const unsigned char *body, size_t n) {
    char header[128];
    size_t len = strlen(dict), total = (10 + len + 1 + 63) / 64 * 64;
    memset(header, ' ', sizeof header);
    memcpy(header, dict, len);
    header[total - 10 - 1] = '\n';
    FILE *f = fopen(path_of(name), "wb");
    if (!f) fail_msg("cannot write %s", name);
    unsigned char magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)((total - 10) & 255),
                               (unsigned char)((total - 10) >> 8)};
    fwrite(magic, 1, 10, f);
    fwrite(header, 1, total - 10, f);
    fwrite(body, 1, n, f);
    fclose(f);
}

static void write_files(void) {
    double v[6] = {1.5, -2, 0, 4, 5.25, -6};
    unsigned char be[48];
    for (int i = 0; i < 6; i++)
        for (int b = 0; b < 8; b++) be[i * 8 + b] = ((unsigned char *)&v[i])[7 - b];
    write_npy("c.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", (unsigned char *)v, sizeof v);
    write_npy("f.npy", "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", (unsigned char *)v, sizeof v);
    write_npy("be.npy", "{'descr': '>f8', 'fortran_order': False, 'shape': (3, 2), }", be, sizeof be);
    write_text("general.mtx", "%%MatrixMarket matrix coordinate real general\n% a comment\n3 4 6\n1 1 1.5\n3 4 -2\n"
                              "2 2 7\n1 1 0.5\n3 1 2\n2 4 -1\n");
    write_text("symmetric.mtx", "%%MatrixMarket matrix coordinate integer symmetric\n3 3 4\n1 1 2\n2 1 -3\n3 1 4\n"
                                "3 3 5\n");
    write_text("skew.mtx", "%%MatrixMarket matrix coordinate real skew-symmetric\n3 3 2\n2 1 1.5\n3 2 -2\n");
    write_text("pattern.mtx", "%%MatrixMarket matrix coordinate pattern general\n2 3 3\n1 2\n2 1\n2 3\n");
    write_text("array.mtx", "%%MatrixMarket matrix array real general\n2 3\n1\n0\n-2\n3.5\n0\n6\n");
}

static sbx_status npy_read(int64_t k, bytes *got) {
    static const char *const files[] = {"c.npy", "f.npy", "be.npy"};
    sbx_status st = SBX_OK, s;
    for (int i = 0; i < 3; i++) {
        sbx_array *o = SENT;
        CALL(k, s, sbx_npy_read(path_of(files[i]), &o), o == SENT);
        if (st == SBX_OK) st = s;
        put_array(got, o);
        sbx_array_free(o);
    }
    return st;
}

static sbx_status npy_write(int64_t k, bytes *got) {
    sbx_array *a = array_of(SBX_FLOAT32, 3, (int64_t[]){2, 3, 2}, 4);
    const char *p = path_of("w.npy");
    sbx_status st;
    remove(p);
    CALL(k, st, sbx_npy_write(p, a), access(p, F_OK) != 0);
    put_file(got, p);
    sbx_array_free(a);
    return st;
}

static sbx_status mtx_read(int64_t k, bytes *got) {
    static const char *const files[] = {"general.mtx", "symmetric.mtx", "skew.mtx", "pattern.mtx", "array.mtx"};
    sbx_status st = SBX_OK, s;
    for (int i = 0; i < 5; i++)
        for (int f = 0; f < 2; f++) {
            sbx_sparse *o = SENT;
            CALL(k, s, sbx_mtx_read(path_of(files[i]), f ? SBX_CSC : SBX_CSR, &o), o == SENT);
            if (st == SBX_OK) st = s;
            put_sparse(got, o);
            sbx_sparse_free(o);
        }
    return st;
}

static sbx_status mtx_read_dense(int64_t k, bytes *got) {
    static const char *const files[] = {"general.mtx", "symmetric.mtx", "array.mtx"};
    sbx_status st = SBX_OK, s;
    for (int i = 0; i < 3; i++) {
        sbx_array *o = SENT;
        CALL(k, s, sbx_mtx_read_dense(path_of(files[i]), &o), o == SENT);
        if (st == SBX_OK) st = s;
        put_array(got, o);
        sbx_array_free(o);
    }
    return st;
}

static sbx_status mtx_read_header(int64_t k, bytes *got) {
    sbx_mtx_header h, before;
    memset(&h, 0x5a, sizeof h);
    before = h;
    sbx_status st;
    CALL(k, st, sbx_mtx_read_header(path_of("general.mtx"), &h), !memcmp(&h, &before, sizeof h));
    /* Field by field: the padding after symmetry is whatever the library's copy left there. */
    const int64_t fields[] = {h.coordinate, h.field, h.symmetry, h.nrows, h.ncols, h.entries};
    put(got, fields, sizeof fields);
    return st;
}

static sbx_status mtx_write(int64_t k, bytes *got) {
    sbx_sparse m = sorted_csr();
    const char *p = path_of("w.mtx");
    sbx_status st;
    remove(p);
    CALL(k, st, sbx_mtx_write(p, &m), access(p, F_OK) != 0);
    put_file(got, p);
    return st;
}

/* --- conv.h: the patch matrix ---------------------------------------------------------------------- */
static sbx_conv_shape shape2d(int64_t channels, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                              sbx_conv_mode mode) {
    sbx_conv_shape s;
    OK(sbx_conv_shape_make(2, channels, (int64_t[]){h, w}, (int64_t[]){kh, kw}, (int64_t[]){sh, sw}, mode, &s));
    return s;
}

static sbx_status conv_indices(int64_t k, bytes *got) {
    const sbx_conv_shape s[2] = {shape2d(2, 4, 5, 2, 3, 1, 2, SBX_CONV_VALID), shape2d(1, 3, 3, 2, 2, 2, 1, SBX_CONV_FULL)};
    sbx_status st = SBX_OK, r;
    for (int i = 0; i < 2; i++)
        for (int ws = 0; ws < 2; ws++)
            for (int f = 0; f < 2; f++) {
                sbx_sparse *m = SENT;
                sbx_array *kmap = SENT;
                const int with_kmap = ws == 0 || f == 1;
                CALL(k, r, sbx_conv_indices(&s[i], ws, ws ? 1 : 3, f ? SBX_CSC : SBX_CSR, &m, with_kmap ? &kmap : NULL),
                     m == SENT && kmap == SENT);
                if (st == SBX_OK) st = r;
                put_sparse(got, m);
                if (with_kmap) put_array(got, kmap);
                sbx_sparse_free(m);
                if (with_kmap) sbx_array_free(kmap);
            }
    return st;
}

static sbx_status conv_gather(int64_t k, bytes *got) {
    const sbx_conv_shape s = shape2d(2, 4, 5, 2, 3, 2, 1, SBX_CONV_FULL);
    sbx_array *t = SENT;
    sbx_status st;
    CALL(k, st, sbx_conv_gather(&s, &t), t == SENT);
    put_array(got, t);
    sbx_array_free(t);
    return st;
}

/* --- conv.h: plans --------------------------------------------------------------------------------
 * Geometries chosen to take each of the plan's paths (src/conv/plan.c): the gather path (full mode,
 * strided), the direct kernel (valid, stride 1, output rows of half a vector or more), the adjoint
 * image gradient (2 maps or more, image rows of a vector), the maps-in-lanes image gradient (8
 * float32 maps), the kernel gradient's flat stretch (image rows of whole vectors). The copy_runs path (patch tables over 16 MB) needs shapes too large for this walk. */
typedef struct geometry {
    sbx_conv_shape shape;
    int64_t nkern;
    sbx_dtype dtype;
} geometry;

static int geometries(geometry *g) {
    g[0] = (geometry){shape2d(1, 5, 6, 3, 2, 2, 1, SBX_CONV_FULL), 2, SBX_FLOAT64};
    g[1] = (geometry){shape2d(2, 6, 10, 3, 3, 1, 1, SBX_CONV_VALID), 3, SBX_FLOAT64};
    g[2] = (geometry){shape2d(2, 4, 17, 2, 2, 1, 1, SBX_CONV_VALID), 2, SBX_FLOAT32};
    g[3] = (geometry){shape2d(8, 5, 5, 3, 3, 1, 1, SBX_CONV_VALID), 2, SBX_FLOAT32};
    g[4] = (geometry){shape2d(1, 4, 32, 2, 3, 1, 1, SBX_CONV_VALID), 2, SBX_FLOAT32};
    return 5;
}

enum { CONV, LOCAL, POOL };

static sbx_status make_plan(int kind, const geometry *g, sbx_conv_plan **p) {
    if (kind == CONV) return sbx_conv_plan_create(&g->shape, g->nkern, g->dtype, p);
    if (kind == LOCAL) return sbx_local_plan_create(&g->shape, g->nkern, g->dtype, p);
    return sbx_pool_plan_create(&g->shape, g->dtype, p);
}

/* The operands of a plan's executions, batch 2. */
typedef struct operands {
    sbx_array *images, *kerns, *bias, *grad_out;
} operands;

static operands operands_of(int kind, const geometry *g) {
    const sbx_conv_shape *s = &g->shape;
    operands o = {NULL, NULL, NULL, NULL};
    o.images = array_of(g->dtype, 2, (int64_t[]){2, s->in_size}, 11);
    int64_t units = kind == POOL ? s->channels * s->out_size : g->nkern * s->out_size;
    o.grad_out = array_of(g->dtype, 2, (int64_t[]){2, units}, 12);
    if (kind == CONV) {
        o.kerns = array_of(g->dtype, 2, (int64_t[]){g->nkern, s->channels * s->kernel_size}, 13);
        o.bias = array_of(g->dtype, 1, (int64_t[]){g->nkern}, 14);
    } else if (kind == LOCAL) {
        o.kerns = array_of(g->dtype, 1, (int64_t[]){s->channels * g->nkern * s->out_size * s->kernel_size}, 13);
        o.bias = array_of(g->dtype, 1, (int64_t[]){g->nkern * s->out_size}, 14);
    }
    return o;
}

static void operands_free(operands *o) {
    sbx_array_free(o->images);
    sbx_array_free(o->kerns);
    sbx_array_free(o->bias);
    sbx_array_free(o->grad_out);
}

/* Plan creation: the result is the forward pass of the plan made. */
static sbx_status plan_creates(int64_t k, bytes *got, int kind) {
    geometry g[5];
    sbx_status st = SBX_OK, s;
    for (int i = 0, n = geometries(g); i < n; i++) {
        sbx_conv_plan *p = SENT;
        CALL(k, s, make_plan(kind, &g[i], &p), p == SENT);
        if (st == SBX_OK) st = s;
        operands o = operands_of(kind, &g[i]);
        sbx_array *y;
        if (kind == CONV) OK(sbx_conv_forward(p, o.images, o.kerns, o.bias, &y));
        if (kind == LOCAL) OK(sbx_local_forward(p, o.images, o.kerns, o.bias, &y));
        if (kind == POOL) OK(sbx_pool_forward(p, o.images, &y));
        put_array(got, y);
        sbx_array_free(y);
        operands_free(&o);
        sbx_conv_plan_free(p);
    }
    return st;
}
static sbx_status conv_plan_create(int64_t k, bytes *got) { return plan_creates(k, got, CONV); }
static sbx_status local_plan_create(int64_t k, bytes *got) { return plan_creates(k, got, LOCAL); }
static sbx_status pool_plan_create(int64_t k, bytes *got) { return plan_creates(k, got, POOL); }

/* The planner's wisdom file, read into an empty store: on failure the store stays empty. The result
 * is the store exported again (with the hook off). */
static sbx_status wisdom_import(int64_t k, bytes *got) {
    write_text("w.wisdom", "sparsebox-wisdom 1\n# two entries\n"
                           "conv float32 2 2 14,20 3,3 1,1 valid 4 4 1 gather 2 gather=0.25 csr=0.5\n"
                           "pool float64 1 3 16 2 2 valid 1 8 1 pool 1 pool=1e-05\n");
    sbx_status st;
    sbx_wisdom_forget();
    CALL(k, st, sbx_wisdom_import(path_of("w.wisdom")), sbx_wisdom_count() == 0);
    OK(sbx_wisdom_export(path_of("w2.wisdom")));
    put_file(got, path_of("w2.wisdom"));
    sbx_wisdom_forget();
    return st;
}

/* A MEASURE plan that takes the patch-matrix paths from the wisdom (no timing: the walk is the same
 * every run), and its forward pass; the result is the output of each. */
static sbx_status plan_from_wisdom(int64_t k, bytes *got) {
    static const char *const paths[] = {"csr", "csc"};
    const int64_t in[2] = {14, 20}, kern[2] = {3, 3};
    sbx_conv_shape s;
    OK(sbx_conv_shape_make(2, 2, in, kern, NULL, SBX_CONV_VALID, &s));
    sbx_array *x = array_of(SBX_FLOAT32, 2, (int64_t[]){4, s.in_size}, 21);
    sbx_array *kerns = array_of(SBX_FLOAT32, 2, (int64_t[]){4, 2 * s.kernel_size}, 22);
    sbx_status st = SBX_OK, r;
    for (int i = 0; i < 2; i++) {
        char text[200];
        snprintf(text, sizeof text, "sparsebox-wisdom 1\nconv float32 2 2 14,20 3,3 1,1 valid 4 4 1 %s 1 %s=0.25\n",
                 paths[i], paths[i]);
        write_text("p.wisdom", text);
        sbx_wisdom_forget();
        OK(sbx_wisdom_import(path_of("p.wisdom")));
        sbx_conv_plan *p = SENT;
        CALL(k, r, sbx_conv_plan_create_flags(&s, 4, SBX_FLOAT32, SBX_PLAN_MEASURE, 4, &p), p == SENT);
        if (st == SBX_OK) st = r;
        sbx_array *y = SENT;
        CALL(k, r, sbx_conv_forward(p, x, kerns, NULL, &y), y == SENT);
        if (st == SBX_OK) st = r;
        put_array(got, y);
        sbx_array_free(y);
        sbx_conv_plan_free(p);
        sbx_wisdom_forget();
    }
    sbx_array_free(x);
    sbx_array_free(kerns);
    return st;
}

/* One execution over every geometry: which = 0 forward, 1 backward (every gradient), 2 backward (the
 * image gradient alone), 3 backward (the kernel gradient alone), 4 pooling's forward with mask, 5 its
 * backward from the mask. */
static sbx_status executes(int64_t k, bytes *got, int kind, int which) {
    geometry g[5];
    sbx_status st = SBX_OK, s = SBX_OK;
    for (int i = 0, n = geometries(g); i < n; i++) {
        sbx_conv_plan *p;
        OK(make_plan(kind, &g[i], &p));
        operands o = operands_of(kind, &g[i]);
        sbx_array *r[3] = {SENT, SENT, SENT}, *mask = NULL;
        const int f = kind == CONV ? 0 : kind == LOCAL ? 1 : 2;
        if (which == 0) {
            if (f == 0) CALL(k, s, sbx_conv_forward(p, o.images, o.kerns, o.bias, &r[0]), r[0] == SENT);
            if (f == 1) CALL(k, s, sbx_local_forward(p, o.images, o.kerns, o.bias, &r[0]), r[0] == SENT);
            if (f == 2) CALL(k, s, sbx_pool_forward(p, o.images, &r[0]), r[0] == SENT);
        } else if (which >= 1 && which <= 3 && f < 2) {
            sbx_array **gi = which != 3 ? &r[0] : NULL, **gk = which != 2 ? &r[1] : NULL, **gb = which == 1 ? &r[2] : NULL;
            sbx_status (*bw)(const sbx_conv_plan *, const sbx_array *, const sbx_array *, const sbx_array *,
                             sbx_array **, sbx_array **, sbx_array **) = f == 0 ? sbx_conv_backward : sbx_local_backward;
            CALL(k, s, bw(p, o.images, o.kerns, o.grad_out, gi, gk, gb), r[0] == SENT && r[1] == SENT && r[2] == SENT);
        } else if (which == 1) {
            CALL(k, s, sbx_pool_backward(p, o.images, o.grad_out, &r[0]), r[0] == SENT);
        } else if (which == 4) {
            CALL(k, s, sbx_pool_forward_mask(p, o.images, &r[0], &r[1]), r[0] == SENT && r[1] == SENT);
        } else if (which == 5) {
            sbx_array *y;
            OK(sbx_pool_forward_mask(p, o.images, &y, &mask));
            sbx_array_free(y);
            CALL(k, s, sbx_pool_backward_mask(p, mask, o.grad_out, &r[0]), r[0] == SENT);
        }
        if (st == SBX_OK) st = s;
        for (int j = 0; j < 3; j++)
            if (r[j] != SENT) {
                put_array(got, r[j]);
                sbx_array_free(r[j]);
            }
        sbx_array_free(mask);
        operands_free(&o);
        sbx_conv_plan_free(p);
    }
    return st;
}
static sbx_status conv_forward(int64_t k, bytes *got) { return executes(k, got, CONV, 0); }
static sbx_status conv_backward(int64_t k, bytes *got) { return executes(k, got, CONV, 1); }
static sbx_status conv_backward_images(int64_t k, bytes *got) { return executes(k, got, CONV, 2); }
static sbx_status conv_backward_kerns(int64_t k, bytes *got) { return executes(k, got, CONV, 3); }
static sbx_status local_forward(int64_t k, bytes *got) { return executes(k, got, LOCAL, 0); }
static sbx_status local_backward(int64_t k, bytes *got) { return executes(k, got, LOCAL, 1); }
static sbx_status local_backward_images(int64_t k, bytes *got) { return executes(k, got, LOCAL, 2); }
static sbx_status local_backward_kerns(int64_t k, bytes *got) { return executes(k, got, LOCAL, 3); }
static sbx_status pool_forward(int64_t k, bytes *got) { return executes(k, got, POOL, 0); }
static sbx_status pool_backward(int64_t k, bytes *got) { return executes(k, got, POOL, 1); }
static sbx_status pool_forward_mask(int64_t k, bytes *got) { return executes(k, got, POOL, 4); }
static sbx_status pool_backward_mask(int64_t k, bytes *got) { return executes(k, got, POOL, 5); }

/* --- random.h ------------------------------------------------------------------------------------- */
/* 1 when a's bytes are b's. */
static int array_is(const sbx_array *a, const bytes *b) {
    bytes now = {0};
    put_array(&now, a);
    int same = now.n == b->n && (now.n == 0 || !memcmp(now.p, b->p, now.n));
    free(now.p);
    return same;
}

/* The samplers into an array the caller made: its bytes stay on failure. */
static sbx_status random_fills(int64_t k, bytes *got) {
    sbx_rng rng;
    sbx_rng_init(&rng, 77, 3);
    sbx_array *a[3] = {array_of(SBX_INT64, 2, (int64_t[]){3, 5}, 5), array_of(SBX_FLOAT64, 1, (int64_t[]){40}, 6),
                       array_of(SBX_INT32, 2, (int64_t[]){4, 3}, 7)};
    bytes before[3] = {{0}, {0}, {0}};
    for (int i = 0; i < 3; i++) put_array(&before[i], a[i]);
    const double probs[3] = {0.2, 0.5, 0.3};
    sbx_status st = SBX_OK, s;
    CALL(k, s, sbx_binomial_fill(&rng, 30, 0.3, 2, a[0]), array_is(a[0], &before[0]));
    if (st == SBX_OK) st = s;
    CALL(k, s, sbx_poisson_fill(&rng, 25.5, 0, a[1]), array_is(a[1], &before[1]));
    if (st == SBX_OK) st = s;
    CALL(k, s, sbx_multinomial_fill(&rng, 20, probs, 3, 0, 1, a[2]), array_is(a[2], &before[2]));
    if (st == SBX_OK) st = s;
    for (int i = 0; i < 3; i++) {
        put_array(got, a[i]);
        sbx_array_free(a[i]);
        free(before[i].p);
    }
    return st;
}

static sbx_status samplers(int64_t k, bytes *got) {
    sbx_rng rng;
    sbx_rng_cursor c;
    sbx_rng_init(&rng, 5, 1);
    OK(sbx_rng_cursor_init(&rng, 9, &c));
    int64_t draws[5] = {-1, -1, -1, -1, -1}, counts[3] = {-1, -1, -1};
    const double probs[3] = {0.25, 0.25, 0.5};
    sbx_status st = SBX_OK, s;
    CALL(k, s, sbx_binomial(&c, 12, 0.4, &draws[0]), draws[0] == -1);
    if (st == SBX_OK) st = s;
    CALL(k, s, sbx_binomial(&c, 500, 0.3, &draws[1]), draws[1] == -1);
    if (st == SBX_OK) st = s;
    CALL(k, s, sbx_poisson(&c, 3.5, &draws[2]), draws[2] == -1);
    if (st == SBX_OK) st = s;
    CALL(k, s, sbx_poisson(&c, 80, &draws[3]), draws[3] == -1);
    if (st == SBX_OK) st = s;
    CALL(k, s, sbx_multinomial(&c, 40, probs, 3, 0, counts), counts[0] == -1);
    if (st == SBX_OK) st = s;
    put(got, draws, sizeof draws);
    put(got, counts, sizeof counts);
    return st;
}

static sbx_status random_binomial(int64_t k, bytes *got) {
    sbx_rng rng;
    sbx_rng_init(&rng, 123, 0);
    /* sparse lines by gaps (small p) and cell by cell (large p), both formats, a float and a bool dtype;
     * the last with more entries than a thread's first piece holds (4096) */
    const struct { int64_t n; double p; sbx_format f; sbx_dtype dt; int64_t rows, cols; } c[5] = {
        {3, 0.05, SBX_CSR, SBX_FLOAT32, 9, 13}, {1, 0.6, SBX_CSC, SBX_BOOL, 9, 13},
        {5000, 1e-5, SBX_CSR, SBX_FLOAT64, 9, 13}, {7, 0.3, SBX_CSC, SBX_INT64, 9, 13},
        {1, 0.25, SBX_CSR, SBX_FLOAT32, 100, 200}};
    sbx_status st = SBX_OK, s;
    for (int i = 0; i < 5; i++) {
        sbx_sparse *o = SENT;
        CALL(k, s, sbx_random_binomial(&rng, c[i].n, c[i].p, c[i].rows, c[i].cols, c[i].f, c[i].dt, &o), o == SENT);
        if (st == SBX_OK) st = s;
        put_sparse(got, o);
        sbx_sparse_free(o);
    }
    return st;
}

static sbx_status random_poisson(int64_t k, bytes *got) {
    sbx_rng rng;
    sbx_rng_init(&rng, 321, 2);
    double v[6] = {0.5, 20, 1e-9, 3, 0, 150};
    sbx_sparse x = {SBX_CSR, SBX_FLOAT64, 4, 5, 6, (int64_t *)S_IP, (int64_t *)S_IX, v}, *o = SENT;
    sbx_status st;
    CALL(k, st, sbx_random_poisson(&rng, &x, &o), o == SENT);
    put_sparse(got, o);
    sbx_sparse_free(o);
    return st;
}

static sbx_status random_multinomial(int64_t k, bytes *got) {
    sbx_rng rng;
    sbx_rng_init(&rng, 99, 4);
    /* rows 0, 2, 3 have mass (rows must not be empty with n > 0: row 2 gets n = 0) */
    static const int64_t ip[5] = {0, 2, 3, 3, 6}, ix[6] = {1, 3, 0, 0, 2, 4};
    double v[6] = {0.25, 0.75, 1, 0.5, 0.25, 0.25};
    sbx_sparse p = {SBX_CSR, SBX_FLOAT64, 4, 5, 6, (int64_t *)ip, (int64_t *)ix, v}, *o = SENT;
    sbx_array *n;
    OK(sbx_array_create(SBX_INT64, 1, (int64_t[]){4}, &n));
    int64_t *nv = n->data;
    nv[0] = 10, nv[1] = 30, nv[2] = 0, nv[3] = 7;
    sbx_sparse *p32 = NULL, *pcsc = NULL, *o2 = SENT, *o3 = SENT;
    OK(sbx_sparse_cast(&p, SBX_FLOAT32, &p32)); /* probabilities not float64: converted first */
    OK(sbx_sparse_convert(&p, SBX_CSC, &pcsc)); /* CSC: drawn by rows, then converted back */
    sbx_status st, s2, s3;
    CALL(k, st, sbx_random_multinomial(&rng, n, &p, 0, &o), o == SENT);
    CALL(k, s2, sbx_random_multinomial(&rng, n, p32, 1, &o2), o2 == SENT);
    CALL(k, s3, sbx_random_multinomial(&rng, n, pcsc, 0, &o3), o3 == SENT);
    put_sparse(got, o);
    put_sparse(got, o2);
    put_sparse(got, o3);
    sbx_sparse_free(o);
    sbx_sparse_free(o2);
    sbx_sparse_free(o3);
    sbx_sparse_free(p32);
    sbx_sparse_free(pcsc);
    sbx_array_free(n);
    return st != SBX_OK ? st : s2 != SBX_OK ? s2 : s3;
}

/* --- op.h: a small graph of each op family, walked through building, gradient, compile and call --- */
typedef struct family {
    sbx_graph *g;
    int nin, nout, nwrt;
    unsigned flags; /* for sbx_gradient */
    sbx_var *in[4], *out[8], *wrt[4], *grads[4], *lr;
    sbx_value inv[4];
    sbx_update up[16];
    int nupd;
    sbx_function *f;
} family;

#define TRY(e) \
    if (st == SBX_OK) st = (e)

/* A shared variable made from a test value (the value freed here when the graph did not take it). */
static sbx_status shared_of(sbx_graph *g, const char *name, sbx_array *a, int constant, sbx_var **out) {
    sbx_value v = {a, NULL};
    sbx_status st = constant ? sbx_graph_constant(g, name, &v, out) : sbx_graph_shared(g, name, &v, out);
    sbx_value_clear(&v);
    return st;
}
static sbx_status sparse_shared_of(sbx_graph *g, const char *name, sbx_sparse *m, sbx_var **out) {
    sbx_value v = {NULL, m};
    sbx_status st = sbx_graph_constant(g, name, &v, out);
    sbx_value_clear(&v);
    return st;
}

/* Arrays the builders take over are made with the hook on (their allocations are building's too). */
static sbx_status new_array(sbx_dtype dt, int ndim, const int64_t *shape, uint32_t seed, sbx_array **out) {
    SBX_CHECK(sbx_array_create(dt, ndim, shape, out));
    for (int64_t i = 0, n = sbx_array_numel(*out); i < n; i++) {
        if (dt == SBX_FLOAT64) ((double *)(*out)->data)[i] = value_at(seed, i);
        if (dt == SBX_FLOAT32) ((float *)(*out)->data)[i] = (float)value_at(seed, i);
    }
    return SBX_OK;
}

static sbx_status ap(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, sbx_var **in, sbx_var **out) {
    return sbx_apply(g, cls, props, nin, in, out);
}

/* Layers: Convolve with bias, Relu, MaxPool, LocalConnections, ConvolutionIndices, Tanh, Sum. */
static sbx_status build_layers(family *F) {
    const sbx_conv_shape cs = shape2d(1, 6, 6, 3, 3, 1, 1, SBX_CONV_VALID), ps = shape2d(2, 4, 4, 2, 2, 2, 2, SBX_CONV_VALID),
                         ls = shape2d(2, 2, 2, 2, 2, 1, 1, SBX_CONV_VALID);
    const sbx_layer_props conv = {cs, 2}, local = {ls, 3};
    const sbx_pool_props pool = {ps};
    const sbx_conv_indices_props ci = {cs, 0, 2, SBX_CSR};
    const sbx_reduce_props all = {-1};
    sbx_array *k = NULL, *kb = NULL, *lk = NULL;
    sbx_var *x, *kv, *kbv, *lkv, *h, *pooled, *lo, *cost, *mat;
    sbx_status st = sbx_graph_create(&F->g);
    sbx_type xt = sbx_type_dense(SBX_FLOAT64, 2, (int64_t[]){-1, 36});
    TRY(sbx_graph_input(F->g, "x", &xt, &x));
    TRY(new_array(SBX_FLOAT64, 2, (int64_t[]){2, 9}, 21, &k));
    TRY(shared_of(F->g, "k", k, 0, &kv));
    TRY(new_array(SBX_FLOAT64, 1, (int64_t[]){2}, 22, &kb));
    TRY(shared_of(F->g, "kb", kb, 0, &kbv));
    TRY(new_array(SBX_FLOAT64, 1, (int64_t[]){24}, 23, &lk));
    TRY(shared_of(F->g, "lk", lk, 0, &lkv));
    TRY(ap(F->g, &sbx_op_convolve, &conv, 3, (sbx_var *[]){x, kv, kbv}, &h));
    TRY(ap(F->g, &sbx_op_relu, NULL, 1, &h, &h));
    TRY(ap(F->g, &sbx_op_max_pool, &pool, 1, &h, &pooled));
    TRY(ap(F->g, &sbx_op_local_connections, &local, 2, (sbx_var *[]){pooled, lkv}, &lo));
    TRY(ap(F->g, &sbx_op_tanh, NULL, 1, &lo, &lo));
    TRY(ap(F->g, &sbx_op_sum, &all, 1, &lo, &cost));
    TRY(ap(F->g, &sbx_op_convolution_indices, &ci, 0, NULL, &mat));
    if (st != SBX_OK) return st;
    F->nin = 1, F->in[0] = x;
    F->nout = 3, F->out[0] = cost, F->out[1] = lo, F->out[2] = mat;
    F->nwrt = 3, F->wrt[0] = kv, F->wrt[1] = kbv, F->wrt[2] = lkv;
    return SBX_OK;
}
static void inputs_layers(family *F) { F->inv[0].dense = array_of(SBX_FLOAT64, 2, (int64_t[]){2, 36}, 24); }

/* Sparse: StructuredDot, SparseFromDense, EliminateZeros, DenseFromSparse, SparseLike (of a dense and of
 * a sparse g), ZerosLike of a sparse value, Mul, Mean; the
 * gradient with respect to the sparse input goes through SampledDot. */
static sbx_status build_sparse(family *F) {
    const sbx_structured_dot_props sd = {0};
    const sbx_format_props csc = {SBX_CSC};
    const sbx_reduce_props all = {-1};
    sbx_array *w = NULL;
    sbx_var *s, *wv, *a, *b, *c, *d, *e, *cost, *sc, *sl, *zl;
    sbx_status st = sbx_graph_create(&F->g);
    sbx_type t = sbx_type_sparse(SBX_CSR, SBX_FLOAT64, 4, 5);
    TRY(sbx_graph_input(F->g, "s", &t, &s));
    TRY(new_array(SBX_FLOAT64, 2, (int64_t[]){5, 3}, 31, &w));
    TRY(shared_of(F->g, "w", w, 0, &wv));
    TRY(ap(F->g, &sbx_op_structured_dot, &sd, 2, (sbx_var *[]){s, wv}, &a));
    TRY(ap(F->g, &sbx_op_sparse_from_dense, &csc, 1, &a, &b));
    TRY(ap(F->g, &sbx_op_eliminate_zeros, NULL, 1, &b, &c));
    TRY(ap(F->g, &sbx_op_dense_from_sparse, NULL, 1, &c, &d));
    TRY(ap(F->g, &sbx_op_sparse_like, NULL, 2, (sbx_var *[]){d, b}, &e));
    TRY(ap(F->g, &sbx_op_dense_from_sparse, NULL, 1, &s, &sc));
    TRY(ap(F->g, &sbx_op_sparse_from_dense, &csc, 1, &sc, &sc));
    TRY(ap(F->g, &sbx_op_sparse_like, NULL, 2, (sbx_var *[]){sc, s}, &sl)); /* g sparse, in the other format */
    TRY(ap(F->g, &sbx_op_zeros_like, NULL, 1, &s, &zl));
    TRY(ap(F->g, &sbx_op_mul, NULL, 2, (sbx_var *[]){d, a}, &d));
    TRY(ap(F->g, &sbx_op_mean, &all, 1, &d, &cost));
    if (st != SBX_OK) return st;
    F->nin = 1, F->in[0] = s;
    F->nout = 4, F->out[0] = cost, F->out[1] = e, F->out[2] = sl, F->out[3] = zl;
    F->nwrt = 2, F->wrt[0] = s, F->wrt[1] = wv;
    return SBX_OK;
}
static void inputs_sparse(family *F) {
    sbx_sparse m = sorted_csr();
    OK(sbx_sparse_copy(&m, &F->inv[0].sparse));
}

/* Random: Binomial, Poisson, Multinomial (constants as their parameters), DenseFromSparse, Mul, Sum;
 * the gradient also with respect to a variable the cost does not depend on. */
static sbx_status build_random(family *F) {
    const sbx_binomial_props bp = {SBX_CSR, SBX_FLOAT64};
    const sbx_reduce_props all = {-1};
    sbx_array *shape = NULL, *nm = NULL, *unused = NULL;
    sbx_sparse *lam = NULL, *probs = NULL;
    sbx_var *x, *n, *p, *sh, *b, *bd, *y, *cost, *lv, *po, *nmv, *pv, *mu, *uv;
    sbx_status st = sbx_graph_create(&F->g);
    sbx_type xt = sbx_type_dense(SBX_FLOAT64, 2, (int64_t[]){3, 4});
    TRY(sbx_graph_input(F->g, "x", &xt, &x));
    TRY(sbx_graph_scalar(F->g, SBX_INT64, 3, &n));
    TRY(sbx_graph_scalar(F->g, SBX_FLOAT64, 0.4, &p));
    TRY(sbx_array_create(SBX_INT64, 1, (int64_t[]){2}, &shape));
    if (st == SBX_OK) ((int64_t *)shape->data)[0] = 3, ((int64_t *)shape->data)[1] = 4;
    TRY(shared_of(F->g, "shape", shape, 1, &sh));
    TRY(ap(F->g, &sbx_op_binomial, &bp, 3, (sbx_var *[]){n, p, sh}, &b));
    TRY(ap(F->g, &sbx_op_dense_from_sparse, NULL, 1, &b, &bd));
    TRY(ap(F->g, &sbx_op_mul, NULL, 2, (sbx_var *[]){bd, x}, &y));
    TRY(ap(F->g, &sbx_op_sum, &all, 1, &y, &cost));
    sbx_sparse m = sorted_csr();
    TRY(sbx_sparse_copy(&m, &lam));
    if (st == SBX_OK)
        for (int i = 0; i < 6; i++) ((double *)lam->data)[i] = 2.5 * (i + 1);
    TRY(sparse_shared_of(F->g, "lam", lam, &lv));
    TRY(ap(F->g, &sbx_op_poisson, NULL, 1, &lv, &po));
    TRY(sbx_sparse_copy(&m, &probs));
    if (st == SBX_OK) {
        const double pr[6] = {0.5, 0.5, 1, 0.25, 0.25, 0.5};
        memcpy(probs->data, pr, sizeof pr);
    }
    TRY(sparse_shared_of(F->g, "probs", probs, &pv));
    TRY(sbx_array_create(SBX_INT64, 1, (int64_t[]){4}, &nm));
    if (st == SBX_OK) ((int64_t *)nm->data)[0] = 5, ((int64_t *)nm->data)[1] = 9, ((int64_t *)nm->data)[3] = 11;
    TRY(shared_of(F->g, "nm", nm, 1, &nmv));
    TRY(ap(F->g, &sbx_op_multinomial, NULL, 2, (sbx_var *[]){nmv, pv}, &mu));
    TRY(new_array(SBX_FLOAT64, 1, (int64_t[]){2}, 42, &unused));
    TRY(shared_of(F->g, "unused", unused, 0, &uv));
    if (st != SBX_OK) return st;
    F->nin = 1, F->in[0] = x;
    F->nout = 4, F->out[0] = cost, F->out[1] = b, F->out[2] = po, F->out[3] = mu;
    F->nwrt = 2, F->wrt[0] = x, F->wrt[1] = uv; /* the cost does not depend on uv: a zero gradient */
    F->flags = SBX_GRAD_ALLOW_DISCONNECTED;
    return SBX_OK;
}
static void inputs_random(family *F) { F->inv[0].dense = array_of(SBX_FLOAT64, 2, (int64_t[]){3, 4}, 41); }

/* Dense: Dot, Add (broadcasting), Tanh, Scale, Mul, Transpose, Reshape, Relu, Sum along an axis,
 * ZerosLike, SoftmaxCrossEntropy, Mean; differentiated and updated by Adam (adam) or SGD. */
static sbx_status build_dense(family *F) {
    const sbx_dot_props nn = {0, 0};
    const sbx_add_props plus = {1, 1};
    const sbx_scale_props half = {0.5};
    const sbx_reshape_props rs = {2, {3, 5}};
    const sbx_reduce_props all = {-1}, rows = {1};
    sbx_array *w = NULL, *b = NULL, *lr = NULL;
    sbx_var *x, *y, *wv, *bv, *h, *t, *m, *tr, *r, *loss, *extra, *cost, *srow, *z;
    sbx_status st = sbx_graph_create(&F->g);
    sbx_type xt = sbx_type_dense(SBX_FLOAT64, 2, (int64_t[]){3, 4}), yt = sbx_type_dense(SBX_INT64, 1, (int64_t[]){3});
    TRY(sbx_graph_input(F->g, "x", &xt, &x));
    TRY(sbx_graph_input(F->g, "y", &yt, &y));
    TRY(new_array(SBX_FLOAT64, 2, (int64_t[]){4, 5}, 51, &w));
    TRY(shared_of(F->g, "w", w, 0, &wv));
    TRY(new_array(SBX_FLOAT64, 1, (int64_t[]){5}, 52, &b));
    TRY(shared_of(F->g, "b", b, 0, &bv));
    TRY(sbx_array_create(SBX_FLOAT64, 0, NULL, &lr));
    if (st == SBX_OK) ((double *)lr->data)[0] = 0.05;
    TRY(shared_of(F->g, "lr", lr, 0, &F->lr));
    TRY(ap(F->g, &sbx_op_dot, &nn, 2, (sbx_var *[]){x, wv}, &h));
    TRY(ap(F->g, &sbx_op_add, &plus, 2, (sbx_var *[]){h, bv}, &h));
    TRY(ap(F->g, &sbx_op_tanh, NULL, 1, &h, &t));
    TRY(ap(F->g, &sbx_op_scale, &half, 1, &t, &t));
    TRY(ap(F->g, &sbx_op_mul, NULL, 2, (sbx_var *[]){t, h}, &m));
    TRY(ap(F->g, &sbx_op_transpose, NULL, 1, &m, &tr));
    TRY(ap(F->g, &sbx_op_reshape, &rs, 1, &tr, &r));
    TRY(ap(F->g, &sbx_op_softmax_cross_entropy, NULL, 2, (sbx_var *[]){r, y}, &loss));
    TRY(ap(F->g, &sbx_op_relu, NULL, 1, &h, &extra));
    TRY(ap(F->g, &sbx_op_mean, &all, 1, &extra, &extra));
    TRY(ap(F->g, &sbx_op_add, &plus, 2, (sbx_var *[]){loss, extra}, &cost));
    TRY(ap(F->g, &sbx_op_sum, &rows, 1, &m, &srow));
    TRY(ap(F->g, &sbx_op_zeros_like, NULL, 1, &x, &z));
    if (st != SBX_OK) return st;
    F->nin = 2, F->in[0] = x, F->in[1] = y;
    F->nout = 3, F->out[0] = cost, F->out[1] = srow, F->out[2] = z;
    F->nwrt = 2, F->wrt[0] = wv, F->wrt[1] = bv;
    return SBX_OK;
}
static void inputs_dense(family *F) {
    F->inv[0].dense = array_of(SBX_FLOAT64, 2, (int64_t[]){3, 4}, 53);
    OK(sbx_array_create(SBX_INT64, 1, (int64_t[]){3}, &F->inv[1].dense));
    int64_t *lab = F->inv[1].dense->data;
    lab[0] = 4, lab[1] = 0, lab[2] = 2;
}

/* Updates of every kind (src/op/function.c): a dense shared variable from a node output, one from
 * another shared variable and one from an input (both copied before any update), a sparse one from a
 * node output and one from a sparse input. A failed call must leave them all as they were. */
static sbx_status build_updates(family *F) {
    const sbx_add_props plus = {1, 1};
    sbx_array *a = NULL, *b = NULL;
    sbx_sparse *m = NULL, *m2 = NULL;
    sbx_var *x, *sx, *av, *bv, *mv, *m2v, *y, *z;
    sbx_status st = sbx_graph_create(&F->g);
    sbx_type xt = sbx_type_dense(SBX_FLOAT64, 2, (int64_t[]){2, 3}), st_ = sbx_type_sparse(SBX_CSR, SBX_FLOAT64, 4, 5);
    TRY(sbx_graph_input(F->g, "x", &xt, &x));
    TRY(sbx_graph_input(F->g, "sx", &st_, &sx));
    TRY(new_array(SBX_FLOAT64, 2, (int64_t[]){2, 3}, 71, &a));
    TRY(shared_of(F->g, "a", a, 0, &av));
    TRY(new_array(SBX_FLOAT64, 2, (int64_t[]){2, 3}, 72, &b));
    TRY(shared_of(F->g, "b", b, 0, &bv));
    sbx_sparse fix = sorted_csr();
    TRY(sbx_sparse_copy(&fix, &m));
    if (st == SBX_OK) {
        sbx_value v = {NULL, m};
        st = sbx_graph_shared(F->g, "m", &v, &mv);
        sbx_value_clear(&v);
    }
    TRY(sbx_sparse_copy(&fix, &m2));
    if (st == SBX_OK) {
        sbx_value v = {NULL, m2};
        st = sbx_graph_shared(F->g, "m2", &v, &m2v);
        sbx_value_clear(&v);
    }
    TRY(ap(F->g, &sbx_op_add, &plus, 2, (sbx_var *[]){x, av}, &y));
    TRY(ap(F->g, &sbx_op_zeros_like, NULL, 1, &mv, &z));
    if (st != SBX_OK) return st;
    F->nin = 2, F->in[0] = x, F->in[1] = sx;
    F->nout = 1, F->out[0] = y;
    F->nupd = 4;
    F->up[0] = (sbx_update){av, y};
    F->up[1] = (sbx_update){bv, av};
    F->up[2] = (sbx_update){mv, z};
    F->up[3] = (sbx_update){m2v, sx};
    return SBX_OK;
}
static void inputs_updates(family *F) {
    F->inv[0].dense = array_of(SBX_FLOAT64, 2, (int64_t[]){2, 3}, 73);
    sbx_sparse m = {SBX_CSR, SBX_FLOAT64, 4, 5, 7, (int64_t *)U_IP, (int64_t *)U_IX, (double *)U_V};
    OK(sbx_sparse_copy(&m, &F->inv[1].sparse));
}

typedef struct recipe {
    sbx_status (*build)(family *);
    void (*inputs)(family *);
    int optimiser; /* 0: sbx_gradient; 1: sbx_sgd; 2: sbx_adam; 3: none, the builder's updates */
} recipe;

static sbx_status differentiate(family *F, int optimiser) {
    if (optimiser == 0) return sbx_gradient(F->g, F->out[0], F->nwrt, F->wrt, F->flags, F->grads);
    if (optimiser == 3) return SBX_OK; /* the builder made the updates */
    if (optimiser == 1) return sbx_sgd(F->g, F->out[0], F->nwrt, F->wrt, F->lr, 0.9, F->up, &F->nupd);
    return sbx_adam(F->g, F->out[0], F->nwrt, F->wrt, F->lr, 0.9, 0.999, 1e-8, F->up, &F->nupd);
}

static sbx_status compile(family *F, int optimiser) {
    sbx_var *outs[12];
    int n = 0;
    for (int j = 0; j < F->nout; j++) outs[n++] = F->out[j];
    for (int j = 0; optimiser == 0 && j < F->nwrt; j++) outs[n++] = F->grads[j];
    return sbx_function_compile(F->g, F->nin, F->in, n, outs, optimiser ? F->nupd : 0, F->up, 17, &F->f);
}

static int noutputs(const family *F, int optimiser) { return F->nout + (optimiser == 0 ? F->nwrt : 0); }

/* The shared variables' values (the parameters and, with an optimiser, its state). */
static void put_shared(bytes *b, family *F) {
    for (int j = 0; j < F->nwrt; j++)
        if (sbx_var_value(F->wrt[j])) put_value(b, sbx_var_value(F->wrt[j]));
    for (int u = 0; u < F->nupd; u++) put_value(b, sbx_var_value(F->up[u].shared));
}

static int outputs_untouched(const sbx_value *out, int n) {
    for (int j = 0; j < n; j++)
        if (out[j].dense != SENT || out[j].sparse != SENT) return 0;
    return 1;
}

static int same_bytes(bytes *before, family *F) {
    bytes now = {0};
    put_shared(&now, F);
    int same = now.n == before->n && (now.n == 0 || !memcmp(now.p, before->p, now.n));
    free(now.p);
    return same;
}

/* stage: 0 building, 1 the gradient (or optimiser), 2 compiling, 3 the first call, 4 the second call;
 * the stages before it are run with the hook off, the stage hooked, the rest with the hook off; the
 * result is the outputs of the last call and the shared values after it. */
static sbx_status family_stage(const recipe *R, int stage, int64_t k, bytes *got) {
    family F;
    memset(&F, 0, sizeof F);
    R->inputs(&F);
    sbx_status st = SBX_OK, hooked = SBX_OK;
    if (stage == 0) {
        HOOK(k, hooked, R->build(&F));
        if (hooked != SBX_OK) { /* what was built goes; building again must work */
            sbx_graph_free(F.g);
            F.g = NULL;
        }
    }
    if (!F.g) OK(R->build(&F));
    if (stage == 1) {
        for (int j = 0; j < 4; j++) F.grads[j] = SENT;
        F.up[0].shared = SENT;
        F.nupd = -1;
        CALL(k, hooked, differentiate(&F, R->optimiser),
             F.grads[0] == SENT && F.grads[F.nwrt - 1] == SENT && F.nupd == -1 && F.up[0].shared == SENT);
    } else {
        OK(differentiate(&F, R->optimiser));
    }
    if (stage == 2) {
        F.f = SENT;
        CALL(k, hooked, compile(&F, R->optimiser), F.f == SENT);
    } else {
        OK(compile(&F, R->optimiser));
    }
    sbx_value out[12];
    const int n = noutputs(&F, R->optimiser);
    for (int call = 3; call <= 4; call++) {
        for (int j = 0; j < n; j++) out[j].dense = SENT, out[j].sparse = SENT;
        if (stage == call) {
            bytes before = {0};
            put_shared(&before, &F);
            CALL(k, hooked, sbx_function_call(F.f, F.inv, out), outputs_untouched(out, n) && same_bytes(&before, &F));
            free(before.p);
        } else {
            OK(sbx_function_call(F.f, F.inv, out));
        }
        if (call == 3 && stage < 4) break;
    }
    for (int j = 0; j < n; j++) put_value(got, &out[j]);
    put_shared(got, &F);
    sbx_function_free(F.f);
    sbx_graph_free(F.g);
    for (int i = 0; i < F.nin; i++) sbx_value_clear(&F.inv[i]);
    return st != SBX_OK ? st : hooked;
}

static const recipe layers = {build_layers, inputs_layers, 0}, sparse_ops = {build_sparse, inputs_sparse, 0},
                    random_ops = {build_random, inputs_random, 0}, dense_sgd = {build_dense, inputs_dense, 1},
                    dense_adam = {build_dense, inputs_dense, 2}, updates = {build_updates, inputs_updates, 3};

#define FAMILY(fam)                                                                                            \
    static sbx_status fam##_build(int64_t k, bytes *got) { return family_stage(&fam, 0, k, got); }         \
    static sbx_status fam##_gradient(int64_t k, bytes *got) { return family_stage(&fam, 1, k, got); }      \
    static sbx_status fam##_compile(int64_t k, bytes *got) { return family_stage(&fam, 2, k, got); }       \
    static sbx_status fam##_call_1(int64_t k, bytes *got) { return family_stage(&fam, 3, k, got); }        \
    static sbx_status fam##_call_2(int64_t k, bytes *got) { return family_stage(&fam, 4, k, got); }        \
    static void test_graph_##fam(void **state) {                                                           \
        (void)state;                                                                                       \
        WALK(fam##_build);                                                                                 \
        WALK(fam##_gradient);                                                                              \
        WALK(fam##_compile);                                                                               \
        WALK(fam##_call_1);                                                                                \
        WALK(fam##_call_2);                                                                                \
    }
FAMILY(layers)
FAMILY(sparse_ops)
FAMILY(random_ops)
FAMILY(dense_sgd)
FAMILY(dense_adam)

static sbx_status updates_build(int64_t k, bytes *got) { return family_stage(&updates, 0, k, got); }
static sbx_status updates_compile(int64_t k, bytes *got) { return family_stage(&updates, 2, k, got); }
static sbx_status updates_call_1(int64_t k, bytes *got) { return family_stage(&updates, 3, k, got); }
static sbx_status updates_call_2(int64_t k, bytes *got) { return family_stage(&updates, 4, k, got); }
static void test_graph_updates(void **state) {
    (void)state;
    WALK(updates_build);
    WALK(updates_compile);
    WALK(updates_call_1);
    WALK(updates_call_2);
}

/* The contract on one node: perform with empty output storage, and the graph's printers. */
static sbx_status node_perform(int64_t k, bytes *got) {
    family F;
    memset(&F, 0, sizeof F);
    OK(build_layers(&F));
    sbx_node *n = sbx_var_owner(F.out[1]); /* the Tanh after the local connections */
    n = sbx_var_owner(sbx_node_input(n, 0)); /* LocalConnections */
    n = sbx_var_owner(sbx_node_input(n, 0)); /* MaxPool: two outputs */
    sbx_value in[1] = {{array_of(SBX_FLOAT64, 2, (int64_t[]){3, 32}, 61), NULL}}, out[2] = {{NULL, NULL}, {NULL, NULL}};
    sbx_status st;
    CALL(k, st, sbx_node_perform(n, in, out, 5), !out[0].dense && !out[1].dense);
    put_value(got, &out[0]);
    put_value(got, &out[1]);
    sbx_value_clear(&out[0]);
    sbx_value_clear(&out[1]);
    sbx_value_clear(&in[0]);
    sbx_graph_free(F.g);
    return st;
}

/* A node's gradient (sbx_node_grad), given gradient variables for the outputs in `given` (bit j: output
 * j): of the Convolve node, and of the ConvBackward and LocalBackward nodes of the layers' gradient
 * (bilinear: their gradient builds forward and backward ops, or a broadcast bias with Gb alone). */
static sbx_status node_grad_of(int64_t k, bytes *got, const sbx_op_class *cls, unsigned given) {
    family F;
    memset(&F, 0, sizeof F);
    OK(build_layers(&F));
    OK(differentiate(&F, 0));
    sbx_node *n = NULL;
    if (cls == &sbx_op_convolve) {
        n = sbx_var_owner(F.out[1]);
        while (sbx_node_op(n).cls != cls) n = sbx_var_owner(sbx_node_input(n, 0));
    } else {
        n = sbx_var_owner(F.grads[cls == &sbx_op_conv_backward ? 0 : 2]);
    }
    assert_true(sbx_node_op(n).cls == cls);
    sbx_var *gout[SBX_OP_MAX_OUTPUTS] = {NULL}, *gin[SBX_OP_MAX_INPUTS], *ins[1 + SBX_OP_MAX_OUTPUTS];
    sbx_grad answer[SBX_OP_MAX_INPUTS];
    const char *reason[SBX_OP_MAX_INPUTS];
    sbx_value in[1 + SBX_OP_MAX_OUTPUTS], out[SBX_OP_MAX_INPUTS];
    int nin = 0;
    ins[nin] = F.in[0];
    in[nin].sparse = NULL;
    in[nin++].dense = array_of(SBX_FLOAT64, 2, (int64_t[]){2, 36}, 62);
    for (int j = 0; j < sbx_node_noutputs(n); j++) {
        if (!(given >> j & 1)) continue;
        sbx_type t = *sbx_var_type(sbx_node_output(n, j));
        for (int d = 0; d < t.ndim; d++)
            if (t.shape[d] < 0) t.shape[d] = 2; /* the batch */
        OK(sbx_graph_input(F.g, NULL, &t, &gout[j]));
        ins[nin] = gout[j];
        in[nin].sparse = NULL;
        in[nin++].dense = array_of(SBX_FLOAT64, t.ndim, t.shape, 63 + (uint32_t)j);
    }
    for (int i = 0; i < SBX_OP_MAX_INPUTS; i++) gin[i] = SENT, answer[i] = (sbx_grad)-1, reason[i] = SENT;
    sbx_status st;
    CALL(k, st, sbx_node_grad(F.g, n, gout, gin, answer, reason),
         gin[0] == SENT && gin[sbx_node_ninputs(n) - 1] == SENT && answer[0] == (sbx_grad)-1 && reason[0] == SENT);
    put(got, answer, (size_t)sbx_node_ninputs(n) * sizeof answer[0]);
    /* the gradients' values */
    sbx_var *defined[SBX_OP_MAX_INPUTS];
    int nd = 0;
    for (int i = 0; i < sbx_node_ninputs(n); i++)
        if (answer[i] == SBX_GRAD_DEFINED) defined[nd++] = gin[i];
    assert_true(nd > 0);
    sbx_function *f;
    OK(sbx_function_compile(F.g, nin, ins, nd, defined, 0, NULL, 1, &f));
    OK(sbx_function_call(f, in, out));
    for (int i = 0; i < nd; i++) put_value(got, &out[i]);
    sbx_function_free(f);
    for (int i = 0; i < nin; i++) sbx_value_clear(&in[i]);
    sbx_graph_free(F.g);
    return st;
}
static sbx_status node_grad_convolve(int64_t k, bytes *got) { return node_grad_of(k, got, &sbx_op_convolve, 1); }
static sbx_status node_grad_conv_backward(int64_t k, bytes *got) {
    return node_grad_of(k, got, &sbx_op_conv_backward, 7);
}
static sbx_status node_grad_conv_backward_bias(int64_t k, bytes *got) {
    return node_grad_of(k, got, &sbx_op_conv_backward, 4);
}
static sbx_status node_grad_local_backward(int64_t k, bytes *got) {
    return node_grad_of(k, got, &sbx_op_local_backward, 3);
}

/* infer_shape on the layers' nodes, from their input values (shapes only). */
static sbx_status node_infer_shape(int64_t k, bytes *got) {
    family F;
    memset(&F, 0, sizeof F);
    OK(build_layers(&F));
    sbx_node *n = sbx_var_owner(F.out[1]);
    sbx_status st = SBX_OK, s;
    while (n) {
        sbx_value in[SBX_OP_MAX_INPUTS];
        for (int i = 0; i < sbx_node_ninputs(n); i++) {
            sbx_var *v = sbx_node_input(n, i);
            in[i].sparse = NULL;
            in[i].dense = sbx_var_value(v) ? sbx_var_value(v)->dense : NULL;
            if (!in[i].dense) {
                sbx_type t = *sbx_var_type(v);
                for (int d = 0; d < t.ndim; d++)
                    if (t.shape[d] < 0) t.shape[d] = 2;
                OK(sbx_array_create(t.dtype, t.ndim, t.shape, &in[i].dense));
            }
        }
        sbx_type out[SBX_OP_MAX_OUTPUTS];
        memset(out, 0x5a, sizeof out);
        unsigned char before[sizeof out];
        memcpy(before, out, sizeof out);
        CALL(k, s, sbx_node_infer_shape(n, in, out), !memcmp(out, before, sizeof out));
        if (st == SBX_OK) st = s;
        put(got, out, (size_t)sbx_node_noutputs(n) * sizeof out[0]);
        sbx_var *next = sbx_node_input(n, 0);
        for (int i = 0; i < sbx_node_ninputs(n); i++)
            if (!sbx_var_value(sbx_node_input(n, i))) sbx_array_free(in[i].dense);
        n = next ? sbx_var_owner(next) : NULL;
    }
    sbx_graph_free(F.g);
    return st;
}

/* The random ops' Op answers. */
static sbx_status random_op_answers(int64_t k, bytes *got) {
    sbx_array *shape;
    OK(sbx_array_create(SBX_INT64, 1, (int64_t[]){2}, &shape));
    ((int64_t *)shape->data)[0] = 3, ((int64_t *)shape->data)[1] = 8;
    sbx_sparse like = sorted_csr();
    int64_t rc[2][2] = {{-1, -1}, {-1, -1}};
    sbx_grad answer = (sbx_grad)-1;
    sbx_status st, s2, s3;
    CALL(k, st, sbx_random_op_infer_shape(SBX_RANDOM_BINOMIAL, shape, NULL, rc[0]), rc[0][0] == -1);
    CALL(k, s2, sbx_random_op_infer_shape(SBX_RANDOM_POISSON, NULL, &like, rc[1]), rc[1][0] == -1);
    CALL(k, s3, sbx_random_op_grad(SBX_RANDOM_BINOMIAL, 2, &answer), answer == (sbx_grad)-1);
    put(got, rc, sizeof rc);
    put(got, &answer, sizeof answer);
    sbx_array_free(shape);
    return st != SBX_OK ? st : s2 != SBX_OK ? s2 : s3;
}

/* Output storage for perform functions: a value of another shape is replaced, and kept on failure. */
static sbx_status output_dense(int64_t k, bytes *got) {
    sbx_value v = {array_of(SBX_FLOAT32, 1, (int64_t[]){3}, 63), NULL};
    sbx_array *old = v.dense, *a = SENT;
    sbx_status st;
    CALL(k, st, sbx_output_dense(&v, SBX_FLOAT64, 2, (int64_t[]){2, 2}, 1, &a),
         a == SENT && v.dense == old && !v.sparse);
    put_array(got, a);
    put(got, &(int){a == v.dense}, sizeof(int));
    sbx_value_clear(&v);
    return st;
}

static sbx_status var_set_name(int64_t k, bytes *got) {
    sbx_graph *g;
    sbx_var *x;
    sbx_type t = sbx_type_dense(SBX_FLOAT32, 1, (int64_t[]){2});
    OK(sbx_graph_create(&g));
    OK(sbx_graph_input(g, "before", &t, &x));
    sbx_status st;
    CALL(k, st, sbx_var_set_name(x, "after"), !strcmp(sbx_var_name(x), "before"));
    put(got, sbx_var_name(x), strlen(sbx_var_name(x)));
    sbx_graph_free(g);
    return st;
}

static sbx_status graph_print(int64_t k, bytes *got) {
    family F;
    memset(&F, 0, sizeof F);
    OK(build_dense(&F));
    sbx_status st = SBX_OK, s;
    for (int dot = 0; dot < 2; dot++) {
        const char *p = path_of(dot ? "g.dot" : "g.txt");
        FILE *f = fopen(p, "w");
        if (!f) fail_msg("cannot write %s", p);
        if (dot)
            CALL(k, s, sbx_graph_dot(F.g, F.nout, F.out, f), 1);
        else
            CALL(k, s, sbx_graph_print(F.g, F.nout, F.out, f), 1);
        if (st == SBX_OK) st = s;
        fclose(f);
        if (s != SBX_OK) { /* the failed call's lines go: the result is the successful call's */
            f = fopen(p, "w");
            OK(dot ? sbx_graph_dot(F.g, F.nout, F.out, f) : sbx_graph_print(F.g, F.nout, F.out, f));
            fclose(f);
        }
        put_file(got, p);
    }
    sbx_graph_free(F.g);
    return st;
}

/* --- The tests ------------------------------------------------------------------------------------ */
static void test_core(void **state) {
    (void)state;
    WALK(array_create);
    WALK(array_copy);
    WALK(array_cast);
}

static void test_sparse(void **state) {
    (void)state;
    WALK(sparse_create);
    WALK(sparse_copy);
    WALK(sparse_cast);
    WALK(sparse_transpose);
    WALK(sparse_convert_csr_to_csc);
    WALK(sparse_convert_sorted_copy);
    WALK(sparse_from_dense);
    WALK(sparse_to_dense);
    WALK(sparse_sort_indices);
    WALK(sparse_sum_duplicates);
    WALK(sparse_eliminate_zeros);
    WALK(sparse_validate);
    WALK(sparse_dot_dense);
    WALK(dense_dot_sparse);
}

static void test_io(void **state) {
    (void)state;
    write_files();
    WALK(npy_read);
    WALK(npy_write);
    WALK(mtx_read_header);
    WALK(mtx_read);
    WALK(mtx_read_dense);
    WALK(mtx_write);
}

static void test_patch_matrix(void **state) {
    (void)state;
    WALK(conv_indices);
    WALK(conv_gather);
}

static void test_plans(void **state) {
    (void)state;
    WALK(conv_plan_create);
    WALK(local_plan_create);
    WALK(pool_plan_create);
    WALK(wisdom_import);
    WALK(plan_from_wisdom);
    WALK(conv_forward);
    WALK(conv_backward);
    WALK(conv_backward_images);
    WALK(conv_backward_kerns);
    WALK(local_forward);
    WALK(local_backward);
    WALK(local_backward_images);
    WALK(local_backward_kerns);
    WALK(pool_forward);
    WALK(pool_backward);
    WALK(pool_forward_mask);
    WALK(pool_backward_mask);
}

static void test_random(void **state) {
    (void)state;
    WALK(samplers);
    WALK(random_fills);
    WALK(random_binomial);
    WALK(random_poisson);
    WALK(random_multinomial);
    WALK(random_op_answers);
}

static void test_node_and_printing(void **state) {
    (void)state;
    WALK(node_perform);
    WALK(node_infer_shape);
    WALK(node_grad_convolve);
    WALK(node_grad_conv_backward);
    WALK(node_grad_conv_backward_bias);
    WALK(node_grad_local_backward);
    WALK(output_dense);
    WALK(var_set_name);
    WALK(graph_print);
}

int main(void) {
    const char *base = getenv("SBX_TEST_TMP");
    snprintf(tmpdir, sizeof tmpdir, "%s/alloc-%d", base ? base : "/tmp", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmpdir);
    if (system(cmd) != 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_core),           cmocka_unit_test(test_sparse),
        cmocka_unit_test(test_io),             cmocka_unit_test(test_patch_matrix),
        cmocka_unit_test(test_plans),          cmocka_unit_test(test_random),
        cmocka_unit_test(test_graph_layers),   cmocka_unit_test(test_graph_sparse_ops),
        cmocka_unit_test(test_graph_random_ops), cmocka_unit_test(test_graph_dense_sgd),
        cmocka_unit_test(test_graph_dense_adam), cmocka_unit_test(test_graph_updates),
        cmocka_unit_test(test_node_and_printing),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) return 1;
    return failed;
}
