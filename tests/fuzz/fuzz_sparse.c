/* sbx_sparse_validate and the conversions on arbitrary arrays: the bytes give a format, a dtype, sizes
 * (small), an indptr (mostly non-decreasing, sometimes not), indices (mostly in range, sometimes not)
 * and the data. Checks: validate accepts only what validate_structure accepts; a refusal leaves a
 * message; on a structurally valid matrix the conversions succeed and agree with each other: dense
 * and back gives the matrix without its stored zeros, a format conversion there and back gives it
 * unchanged, the transpose and a cast agree with the dense form, sorting and summing duplicates give a
 * matrix validate accepts with the same dense form (integer dtypes; floats may round differently when
 * summed in another order); the products with a dense matrix run. Bool values are 0 or 1. */
#include <math.h>
#include <string.h>

#include "core/internal.h"
#include "fuzz.h"

#define MAX_SIDE 12
#define MAX_NNZ 64

/* Dense forms equal element for element (floats: as numbers, NaN equal to NaN). */
static int dense_equal(const sbx_array *a, const sbx_array *b) {
    if (a->dtype != b->dtype || a->shape[0] != b->shape[0] || a->shape[1] != b->shape[1]) return 0;
    for (int64_t i = 0; i < sbx_array_numel(a); i++) {
        if (a->dtype == SBX_FLOAT32 || a->dtype == SBX_FLOAT64) {
            double x = sbx__get_f64(a->data, a->dtype, i), y = sbx__get_f64(b->data, b->dtype, i);
            if (!(x == y || (isnan(x) && isnan(y)))) return 0;
        } else {
            size_t es = sbx_dtype_size(a->dtype);
            if (memcmp((const char *)a->data + i * es, (const char *)b->data + i * es, es)) return 0;
        }
    }
    return 1;
}

static sbx_array *to_dense(const sbx_sparse *m) {
    sbx_array *d = NULL;
    FUZZ_REQUIRE(sbx_sparse_to_dense(m, &d) == SBX_OK, "sbx_sparse_to_dense on a valid structure");
    return d;
}

static void check_valid(const sbx_sparse *m, fuzz_bytes *b) {
    sbx_format other = m->format == SBX_CSR ? SBX_CSC : SBX_CSR;
    sbx_array *d = to_dense(m);
    sbx_sparse *c = NULL, *back = NULL, *t = NULL, *e = NULL, *f = NULL;
    /* Dense and back: the matrix without its stored zeros. */
    FUZZ_REQUIRE(sbx_sparse_from_dense(d, m->format, &f) == SBX_OK, "sbx_sparse_from_dense");
    FUZZ_REQUIRE(sbx_sparse_copy(m, &e) == SBX_OK, "sbx_sparse_copy");
    FUZZ_REQUIRE(sbx_sparse_eliminate_zeros(e) == SBX_OK, "sbx_sparse_eliminate_zeros");
    FUZZ_REQUIRE(sbx_sparse_validate(f) == SBX_OK && fuzz_sparse_equal(e, f, 0), "dense and back is not the matrix "
                 "without its zeros");
    /* The other format and back: unchanged. */
    FUZZ_REQUIRE(sbx_sparse_convert(m, other, &c) == SBX_OK, "sbx_sparse_convert");
    FUZZ_REQUIRE(sbx_sparse_validate(c) == SBX_OK, "a conversion of a valid matrix is not valid");
    FUZZ_REQUIRE(sbx_sparse_convert(c, m->format, &back) == SBX_OK && fuzz_sparse_equal(m, back, 1),
                 "converting there and back changed the matrix");
    sbx_array *dc = to_dense(c);
    FUZZ_REQUIRE(dense_equal(d, dc), "the converted matrix has another dense form");
    /* The transpose: the same arrays, the dense form transposed. */
    FUZZ_REQUIRE(sbx_sparse_transpose(m, &t) == SBX_OK, "sbx_sparse_transpose");
    FUZZ_REQUIRE(t->format == other && t->nrows == m->ncols && t->ncols == m->nrows && sbx_sparse_validate(t) == SBX_OK,
                 "the transpose's header");
    sbx_array *dt = to_dense(t);
    size_t es = sbx_dtype_size(m->dtype);
    for (int64_t i = 0; i < m->nrows; i++)
        for (int64_t j = 0; j < m->ncols; j++)
            FUZZ_REQUIRE(!memcmp((char *)d->data + (i * m->ncols + j) * es, (char *)dt->data + (j * m->nrows + i) * es,
                                 es), "the transpose differs at (%lld, %lld)", (long long)i, (long long)j);
    /* A cast: refused with a message, or the dense form cast the same way. */
    sbx_dtype to = (sbx_dtype)fuzz_range(b, 0, SBX_NUM_DTYPES - 1);
    sbx_sparse *k = NULL;
    sbx_array *dk = NULL, *dd = NULL;
    fuzz_clear_error();
    sbx_status st = sbx_sparse_cast(m, to, &k);
    sbx_status dst = sbx_array_cast(d, to, &dd);
    if (st != SBX_OK) {
        fuzz_check_failure(st, "sbx_sparse_cast");
    } else {
        FUZZ_REQUIRE(sbx_sparse_validate(k) == SBX_OK && k->dtype == to, "the cast's header");
        dk = to_dense(k);
        FUZZ_REQUIRE(dst == SBX_OK && dense_equal(dk, dd), "the cast differs from the dense form's cast");
    }
    sbx_array_free(d);
    sbx_array_free(dc);
    sbx_array_free(dt);
    sbx_array_free(dk);
    sbx_array_free(dd);
    sbx_sparse_free(c);
    sbx_sparse_free(back);
    sbx_sparse_free(t);
    sbx_sparse_free(e);
    sbx_sparse_free(f);
    sbx_sparse_free(k);
}

static void check_structure(const sbx_sparse *m, fuzz_bytes *b) {
    sbx_array *d = to_dense(m);
    sbx_sparse *s = NULL, *c = NULL;
    FUZZ_REQUIRE(sbx_sparse_copy(m, &s) == SBX_OK, "sbx_sparse_copy");
    FUZZ_REQUIRE(sbx_sparse_sort_indices(s) == SBX_OK && sbx_sparse_validate_structure(s) == SBX_OK,
                 "sbx_sparse_sort_indices");
    FUZZ_REQUIRE(sbx_sparse_sum_duplicates(s) == SBX_OK && sbx_sparse_validate(s) == SBX_OK,
                 "sbx_sparse_sum_duplicates does not give a valid matrix");
    FUZZ_REQUIRE(sbx_sparse_convert(m, fuzz_u8(b) & 1 ? SBX_CSR : SBX_CSC, &c) == SBX_OK &&
                     sbx_sparse_validate_structure(c) == SBX_OK && c->nnz == m->nnz, "sbx_sparse_convert");
    if (m->dtype != SBX_FLOAT32 && m->dtype != SBX_FLOAT64) {
        sbx_array *ds = to_dense(s), *dc = to_dense(c);
        FUZZ_REQUIRE(dense_equal(d, ds) && dense_equal(d, dc), "summing duplicates changed the dense form");
        sbx_array_free(ds);
        sbx_array_free(dc);
    }
    /* The products with a dense matrix of ones (any values would do: they only have to run). */
    if (m->dtype == SBX_FLOAT32 || m->dtype == SBX_FLOAT64) {
        int64_t n = fuzz_range(b, 0, 3), left[2] = {m->ncols, n}, right[2] = {n, m->nrows};
        sbx_array *x = NULL, *y = NULL, *p = NULL, *q = NULL;
        FUZZ_REQUIRE(sbx_array_create(m->dtype, 2, left, &x) == SBX_OK && sbx_array_create(m->dtype, 2, right, &y) ==
                     SBX_OK, "sbx_array_create");
        FUZZ_REQUIRE(sbx_sparse_dot_dense(m, x, &p) == SBX_OK && sbx_dense_dot_sparse(y, m, &q) == SBX_OK,
                     "a product with a valid structure failed");
        sbx_array_free(x);
        sbx_array_free(y);
        sbx_array_free(p);
        sbx_array_free(q);
    }
    sbx_array_free(d);
    sbx_sparse_free(s);
    sbx_sparse_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes b = {data, size};
    uint8_t flags = fuzz_u8(&b);
    sbx_sparse m = {0};
    m.format = flags & 1 ? SBX_CSC : SBX_CSR;
    m.dtype = (sbx_dtype)fuzz_range(&b, 0, SBX_NUM_DTYPES - 1);
    m.nrows = fuzz_range(&b, 0, MAX_SIDE);
    m.ncols = fuzz_range(&b, 0, MAX_SIDE);
    if (flags & 2) m.nrows = -m.nrows;
    int64_t major = m.format == SBX_CSR ? m.nrows : m.ncols, minor = m.format == SBX_CSR ? m.ncols : m.nrows;
    if (major < 0) major = 0;
    if (minor < 0) minor = 0;
    int64_t indptr[MAX_SIDE + 1], indices[MAX_NNZ];
    uint8_t values[MAX_NNZ * 8];
    /* indptr: steps of 0..3 (or, with flag 4, any small value), the last entry giving nnz. */
    indptr[0] = flags & 8 ? fuzz_range(&b, -1, 1) : 0;
    for (int64_t k = 1; k <= major; k++) {
        int64_t step = flags & 4 ? fuzz_range(&b, -2, 5) : fuzz_range(&b, 0, 3);
        indptr[k] = indptr[k - 1] + step;
        if (indptr[k] > MAX_NNZ) indptr[k] = MAX_NNZ;
        if (indptr[k] < -2) indptr[k] = -2;
    }
    m.nnz = indptr[major];
    if (flags & 16) m.nnz += fuzz_range(&b, -1, 1);
    if (m.nnz > MAX_NNZ) m.nnz = MAX_NNZ;
    /* indices: in [0, minor) unless flag 32, then one past either end too. */
    for (int64_t p = 0; p < MAX_NNZ; p++)
        indices[p] = flags & 32 ? fuzz_range(&b, -1, minor) : minor ? fuzz_range(&b, 0, minor - 1) : 0;
    for (size_t i = 0; i < sizeof values; i++) values[i] = fuzz_u8(&b);
    /* Values that cast and compare: small integers, unless flag 64 leaves the raw bytes. */
    if (!(flags & 64)) {
        size_t es = sbx_dtype_size(m.dtype);
        for (int64_t p = 0; p < MAX_NNZ; p++) {
            int v = values[p * 8] % 5 - 2;
            if (m.dtype == SBX_BOOL || m.dtype >= SBX_UINT8) v = values[p * 8] % 3;
            if (m.dtype == SBX_BOOL) v &= 1;
            double dv = v;
            float fv = (float)v;
            int64_t iv = v;
            if (m.dtype == SBX_FLOAT32) memcpy(values + p * es, &fv, es);
            else if (m.dtype == SBX_FLOAT64) memcpy(values + p * es, &dv, es);
            else sbx__cast(values + p * es, m.dtype, &iv, SBX_INT64, 1, "value");
        }
    }
    /* A bool is stored as 0 or 1 (the library never makes another byte; a caller's other bytes are its own
     * business). */
    if (m.dtype == SBX_BOOL)
        for (int64_t p = 0; p < MAX_NNZ; p++) values[p] &= 1;
    m.indptr = indptr;
    m.indices = indices;
    m.data = values;
    fuzz_clear_error();
    sbx_status st = sbx_sparse_validate_structure(&m), vst = sbx_sparse_validate(&m);
    if (st != SBX_OK) {
        fuzz_check_failure(st, "sbx_sparse_validate_structure");
        FUZZ_REQUIRE(vst != SBX_OK, "validate accepts what validate_structure refuses");
        /* Every function that needs a well-formed matrix refuses it too. */
        sbx_array *d = NULL;
        sbx_sparse *c = NULL;
        fuzz_clear_error();
        st = sbx_sparse_to_dense(&m, &d);
        fuzz_check_failure(st, "sbx_sparse_to_dense");
        fuzz_clear_error();
        st = sbx_sparse_convert(&m, SBX_CSR, &c);
        fuzz_check_failure(st, "sbx_sparse_convert");
        FUZZ_REQUIRE(!d && !c, "a refused call set its output");
        return 0;
    }
    if (vst != SBX_OK) fuzz_check_failure(vst, "sbx_sparse_validate");
    check_structure(&m, &b);
    if (vst == SBX_OK) check_valid(&m, &b);
    return 0;
}
