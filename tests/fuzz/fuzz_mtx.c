/* The Matrix Market reader on arbitrary files. The first byte picks the format and whether the dense
 * reader runs too; the rest is the file. Checks: the header alone fails exactly when it fails as part
 * of a whole read; a sparse result passes sbx_sparse_validate, and writing it then reading it again
 * gives the same matrix; the dense reader agrees with the sparse one; a refusal leaves a message.
 * Headers asking for more than CAP rows plus columns are skipped (the reader would rightly allocate
 * them: that is no bug, only slow). */
#include <math.h>
#include <string.h>

#include "fuzz.h"

#define CAP 4096

/* Values equal as numbers (NaN equal to NaN: the text "nan(...)" can carry payload bits that the
 * writer does not keep). */
static int same_value(const void *a, const void *b, sbx_dtype dtype, int64_t i) {
    if (dtype == SBX_INT64) return ((const int64_t *)a)[i] == ((const int64_t *)b)[i];
    double x = ((const double *)a)[i], y = ((const double *)b)[i];
    return x == y || (isnan(x) && isnan(y));
}

static void check_round_trip(const sbx_sparse *m, sbx_format format) {
    const char *again = fuzz_path("out.mtx");
    sbx_sparse *r = NULL;
    FUZZ_REQUIRE(sbx_mtx_write(again, m) == SBX_OK, "writing back what was read failed");
    FUZZ_REQUIRE(sbx_mtx_read(again, format, &r) == SBX_OK, "reading back what was written failed");
    FUZZ_REQUIRE(r->format == m->format && r->dtype == m->dtype && r->nrows == m->nrows && r->ncols == m->ncols &&
                     r->nnz == m->nnz, "read, write, read changed the matrix's sizes");
    FUZZ_REQUIRE(!memcmp(r->indptr, m->indptr, (size_t)(sbx_sparse_major(m) + 1) * sizeof(int64_t)) &&
                     (!m->nnz || !memcmp(r->indices, m->indices, (size_t)m->nnz * sizeof(int64_t))),
                 "read, write, read changed the structure");
    for (int64_t p = 0; p < m->nnz; p++)
        FUZZ_REQUIRE(same_value(m->data, r->data, m->dtype, p), "read, write, read changed entry %lld", (long long)p);
    sbx_sparse_free(r);
}

/* The dense reader's array against the sparse matrix made dense. */
static void check_dense(const char *path, const sbx_sparse *m) {
    sbx_array *d = NULL, *e = NULL;
    sbx_status st = sbx_mtx_read_dense(path, &d);
    FUZZ_REQUIRE(st == SBX_OK, "the sparse reader took the file, the dense one did not");
    FUZZ_REQUIRE(sbx_sparse_to_dense(m, &e) == SBX_OK, "sbx_sparse_to_dense");
    FUZZ_REQUIRE(d->dtype == e->dtype && d->ndim == 2 && d->shape[0] == e->shape[0] && d->shape[1] == e->shape[1],
                 "the dense reader's array has another type or shape");
    for (int64_t i = 0; i < sbx_array_numel(d); i++)
        FUZZ_REQUIRE(same_value(d->data, e->data, d->dtype, i), "the dense reader differs at element %lld", (long long)i);
    sbx_array_free(d);
    sbx_array_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *path = fuzz_path("in.mtx");
    sbx_format format = data[0] & 1 ? SBX_CSC : SBX_CSR;
    int dense = (data[0] & 2) != 0;
    fuzz_write(path, data + 1, size - 1);
    sbx_mtx_header h;
    fuzz_clear_error();
    sbx_status hst = sbx_mtx_read_header(path, &h);
    if (hst != SBX_OK) fuzz_check_failure(hst, "sbx_mtx_read_header");
    else if (h.nrows < 0 || h.ncols < 0 || h.nrows > CAP || h.ncols > CAP || h.nrows + h.ncols > CAP ||
             (dense && h.nrows * h.ncols > CAP))
        return 0;
    sbx_sparse *m = NULL;
    fuzz_clear_error();
    sbx_status st = sbx_mtx_read(path, format, &m);
    FUZZ_REQUIRE(hst == SBX_OK || st != SBX_OK, "a file whose header fails read whole");
    if (st != SBX_OK) {
        fuzz_check_failure(st, "sbx_mtx_read");
        FUZZ_REQUIRE(m == NULL, "a failed read set its output");
        if (dense) {
            sbx_array *d = NULL;
            fuzz_clear_error();
            st = sbx_mtx_read_dense(path, &d);
            FUZZ_REQUIRE(st != SBX_OK, "the dense reader took a file the sparse one refused");
            fuzz_check_failure(st, "sbx_mtx_read_dense");
        }
        return 0;
    }
    FUZZ_REQUIRE(sbx_sparse_validate(m) == SBX_OK, "the reader's matrix is malformed");
    FUZZ_REQUIRE(m->format == format && m->nrows == h.nrows && m->ncols == h.ncols, "the matrix is not the header's");
    check_round_trip(m, format);
    if (dense) check_dense(path, m);
    sbx_sparse_free(m);
    return 0;
}
