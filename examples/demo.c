/* The sparsebox demo: builds the 5-point Laplacian of a grid as a CSR matrix, converts it to CSC,
 * applies it to a block of smooth fields through both formats and from both sides, writes it as
 * Matrix Market and .npy, reads both back and checks that nothing changed.
 * Usage: demo [GRID_SIDE] [OUTPUT_DIR]   (defaults: 64 and the current folder) */
#include <math.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sparsebox.h>

static int fail(const char *what, sbx_status st) {
    fprintf(stderr, "demo: %s: %s: %s\n", what, sbx_status_str(st), sbx_last_error());
    return 1;
}

/* The n*n x n*n matrix of -Laplacian on an n x n grid with zero boundary: 4 on the diagonal, -1 for
 * each of the (up to four) neighbours, rows in raster order. */
static sbx_status laplacian(int64_t n, sbx_sparse **out) {
    int64_t cells = n * n, nnz = 5 * cells - 4 * n;
    sbx_sparse *m;
    sbx_status st = sbx_sparse_create(SBX_CSR, SBX_FLOAT64, cells, cells, nnz, &m);
    if (st != SBX_OK) return st;
    double *v = m->data;
    int64_t p = 0;
    for (int64_t y = 0; y < n; y++)
        for (int64_t x = 0; x < n; x++) {
            int64_t r = y * n + x;
            const int64_t nb[5] = {y > 0 ? r - n : -1, x > 0 ? r - 1 : -1, r, x + 1 < n ? r + 1 : -1,
                                   y + 1 < n ? r + n : -1}; /* ascending column order */
            for (int k = 0; k < 5; k++)
                if (nb[k] >= 0) {
                    m->indices[p] = nb[k];
                    v[p++] = nb[k] == r ? 4.0 : -1.0;
                }
            m->indptr[r + 1] = p;
        }
    *out = m;
    return sbx_sparse_validate(m);
}

static double max_abs_diff(const sbx_array *a, const sbx_array *b) {
    double d = 0;
    const double *x = a->data, *y = b->data;
    for (int64_t i = 0; i < sbx_array_numel(a); i++) d = fmax(d, fabs(x[i] - y[i]));
    return d;
}

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : 64;
    const char *dir = argc > 2 ? argv[2] : ".";
    if (n < 2 || n > 4096) {
        fprintf(stderr, "demo: GRID_SIDE must be in [2, 4096], got '%s'\n", argv[1]);
        return 2;
    }
    char mtx_path[4096], npy_path[4096];
    snprintf(mtx_path, sizeof mtx_path, "%s/laplacian.mtx", dir);
    snprintf(npy_path, sizeof npy_path, "%s/fields.npy", dir);

    sbx_sparse *csr = NULL, *csc = NULL, *back = NULL;
    sbx_array *fields = NULL, *y1 = NULL, *y2 = NULL, *ft = NULL, *y3 = NULL, *fields_back = NULL;
    sbx_status st;
    int rc = 1;
    if ((st = laplacian(n, &csr)) != SBX_OK) { rc = fail("build the Laplacian", st); goto done; }
    printf("built the 5-point Laplacian of a %lld x %lld grid: %lld x %lld CSR, %lld stored entries\n",
           (long long)n, (long long)n, (long long)csr->nrows, (long long)csr->ncols, (long long)csr->nnz);
    if ((st = sbx_sparse_convert(csr, SBX_CSC, &csc)) != SBX_OK) { rc = fail("convert to CSC", st); goto done; }
    if ((st = sbx_sparse_validate(csc)) != SBX_OK) { rc = fail("validate the CSC matrix", st); goto done; }
    printf("converted to CSC: %lld column pointers, indices sorted and unique (validated)\n", (long long)(csc->ncols + 1));

    /* 8 smooth fields sin(k pi x) sin(pi y): eigenvectors of the continuous operator. */
    int64_t k = 8, shape[2] = {csr->ncols, k};
    if ((st = sbx_array_create(SBX_FLOAT64, 2, shape, &fields)) != SBX_OK) { rc = fail("allocate the fields", st); goto done; }
    double *f = fields->data;
    for (int64_t y = 0; y < n; y++)
        for (int64_t x = 0; x < n; x++)
            for (int64_t j = 0; j < k; j++)
                f[(y * n + x) * k + j] = sin((double)(j + 1) * M_PI * (double)(x + 1) / (double)(n + 1)) *
                                         sin(M_PI * (double)(y + 1) / (double)(n + 1));
    if ((st = sbx_sparse_dot_dense(csr, fields, &y1)) != SBX_OK) { rc = fail("CSR x dense", st); goto done; }
    if ((st = sbx_sparse_dot_dense(csc, fields, &y2)) != SBX_OK) { rc = fail("CSC x dense", st); goto done; }
    printf("applied it to %lld smooth fields: CSR and CSC products differ by at most %.3g\n", (long long)k,
           max_abs_diff(y1, y2));
    /* The grid Laplacian's eigenvalue for field j is 4 - 2cos((j+1) pi/(n+1)) - 2cos(pi/(n+1)). */
    double worst = 0;
    const double *yv = y1->data;
    for (int64_t i = 0; i < csr->nrows; i++)
        for (int64_t j = 0; j < k; j++) {
            double lam = 4 - 2 * cos((double)(j + 1) * M_PI / (double)(n + 1)) - 2 * cos(M_PI / (double)(n + 1));
            worst = fmax(worst, fabs(yv[i * k + j] - lam * f[i * k + j]));
        }
    printf("each field is an eigenvector: |A f - lambda f| <= %.3g (lambda_1 = %.6f)\n", worst,
           4 - 4 * cos(M_PI / (double)(n + 1)));
    /* From the other side: (F^T A)^T = A^T F = A F, since A is symmetric. */
    int64_t tshape[2] = {k, csr->ncols};
    if ((st = sbx_array_create(SBX_FLOAT64, 2, tshape, &ft)) != SBX_OK) { rc = fail("allocate F^T", st); goto done; }
    for (int64_t i = 0; i < csr->ncols; i++)
        for (int64_t j = 0; j < k; j++) ((double *)ft->data)[j * csr->ncols + i] = f[i * k + j];
    if ((st = sbx_dense_dot_sparse(ft, csc, &y3)) != SBX_OK) { rc = fail("dense x CSC", st); goto done; }
    double side = 0;
    for (int64_t i = 0; i < csr->nrows; i++)
        for (int64_t j = 0; j < k; j++) side = fmax(side, fabs(((double *)y3->data)[j * csr->ncols + i] - yv[i * k + j]));
    printf("dense x sparse from the left agrees: max difference %.3g\n", side);

    if ((st = sbx_mtx_write(mtx_path, csc)) != SBX_OK) { rc = fail("write the .mtx file", st); goto done; }
    if ((st = sbx_mtx_read(mtx_path, SBX_CSC, &back)) != SBX_OK) { rc = fail("read the .mtx file back", st); goto done; }
    int same = back->nnz == csc->nnz && back->nrows == csc->nrows && back->ncols == csc->ncols &&
               memcmp(back->indptr, csc->indptr, (size_t)(csc->ncols + 1) * sizeof(int64_t)) == 0 &&
               memcmp(back->indices, csc->indices, (size_t)csc->nnz * sizeof(int64_t)) == 0 &&
               memcmp(back->data, csc->data, (size_t)csc->nnz * sizeof(double)) == 0;
    printf("wrote %s (column by column) and read it back: %s\n", mtx_path, same ? "identical" : "DIFFERENT");
    if ((st = sbx_npy_write(npy_path, y1)) != SBX_OK) { rc = fail("write the .npy file", st); goto done; }
    if ((st = sbx_npy_read(npy_path, &fields_back)) != SBX_OK) { rc = fail("read the .npy file back", st); goto done; }
    int same_npy = memcmp(fields_back->data, y1->data, (size_t)sbx_array_numel(y1) * sizeof(double)) == 0;
    printf("wrote A*F to %s and read it back: %s\n", npy_path, same_npy ? "identical" : "DIFFERENT");
    rc = same && same_npy && side < 1e-12 && worst < 1e-9 ? 0 : 1;
done:
    sbx_sparse_free(csr);
    sbx_sparse_free(csc);
    sbx_sparse_free(back);
    sbx_array_free(fields);
    sbx_array_free(y1);
    sbx_array_free(y2);
    sbx_array_free(ft);
    sbx_array_free(y3);
    sbx_array_free(fields_back);
    return rc;
}
