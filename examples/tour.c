/* A tour of sparsebox without the Op graph, in three parts (the demo, examples/demo/, trains a network
 * through the graph).
 * 1. Sparse matrices: builds the 5-point Laplacian of a grid as a CSR matrix, converts it to CSC,
 *    applies it to a block of smooth fields through both formats and from both sides, writes it as
 *    Matrix Market and .npy, reads both back and checks that nothing changed.
 * 2. Convolution as a sparse operator: draws a ring on a GRID_SIDE x GRID_SIDE image, builds the
 *    original's patch matrix, finds the ring's edges with Sobel kernels both through the patch matrix
 *    (the original's way: sparse product, then the kernels) and through a convolution plan, checks the
 *    two agree, max-pools the edge strength and prints it as a picture, and checks the kernel gradient
 *    against a finite difference.
 * 3. Sparse random matrices: draws a 100000 x 100000 Binomial matrix of about a million entries with
 *    1 and with 2 threads and checks the bytes are the same, replaces its entries by Poisson draws,
 *    and turns the rows of a probability matrix into Multinomial counts that sum to n.
 * Usage: tour [GRID_SIDE] [OUTPUT_DIR]   (defaults: 64 and the current folder) */
#include <math.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sparsebox.h>

static int fail(const char *what, sbx_status st) {
    fprintf(stderr, "tour: %s: %s: %s\n", what, sbx_status_str(st), sbx_last_error());
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

/* Part 2; returns 0 when every check holds. */
static int convolution_demo(int64_t n, const char *dir) {
    int64_t inshp[3] = {1, n, n}, kshp[2] = {3, 3}, pool[2] = {2, 2};
    sbx_conv_shape s, ps;
    sbx_sparse *m = NULL;
    sbx_array *img = NULL, *kerns = NULL, *patches = NULL, *edges = NULL, *mag = NULL, *pooled = NULL, *gk = NULL;
    sbx_conv_plan *conv = NULL, *pooling = NULL;
    sbx_status st;
    int rc = 1;
    if ((st = sbx_conv_shape_aesara(3, inshp, kshp, NULL, SBX_CONV_VALID, &s)) != SBX_OK) return fail("shape", st);
    /* A ring of radius n/3 and width n/8 on a faint horizontal ramp. */
    int64_t ishape[2] = {1, n * n};
    if ((st = sbx_array_create(SBX_FLOAT64, 2, ishape, &img)) != SBX_OK) { rc = fail("image", st); goto done; }
    double *px = img->data, c = (double)(n - 1) / 2;
    for (int64_t y = 0; y < n; y++)
        for (int64_t x = 0; x < n; x++) {
            double r = hypot((double)x - c, (double)y - c);
            px[y * n + x] = (fabs(r - (double)n / 3) < (double)n / 16 ? 1.0 : 0.0) + 0.1 * (double)x / (double)n;
        }
    /* Sobel kernels for d/dx and d/dy, taps in raster order (the layers correlate: no flip). */
    const double sobel[18] = {-1, 0, 1, -2, 0, 2, -1, 0, 1, -1, -2, -1, 0, 0, 0, 1, 2, 1};
    int64_t kshape[2] = {2, 9};
    if ((st = sbx_array_create(SBX_FLOAT64, 2, kshape, &kerns)) != SBX_OK) { rc = fail("kernels", st); goto done; }
    memcpy(kerns->data, sobel, sizeof sobel);

    /* The original's way: M (patch rows x pixels) times the image column gives every patch. */
    if ((st = sbx_conv_indices(&s, 1, 1, SBX_CSR, &m, NULL)) != SBX_OK) { rc = fail("patch matrix", st); goto done; }
    printf("patch matrix of a %lld x %lld image, 3x3 kernel: %lld x %lld, %lld entries (outshp %lld x %lld)\n",
           (long long)n, (long long)n, (long long)m->nrows, (long long)m->ncols, (long long)m->nnz,
           (long long)s.out[0], (long long)s.out[1]);
    sbx_sparse *ones = NULL;
    if ((st = sbx_sparse_cast(m, SBX_FLOAT64, &ones)) != SBX_OK) { rc = fail("cast", st); goto done; }
    for (int64_t p = 0; p < ones->nnz; p++) ((double *)ones->data)[p] = 1.0; /* as convolve does */
    sbx_array column = {SBX_FLOAT64, 2, {n * n, 1}, img->data}; /* the image as one column */
    st = sbx_sparse_dot_dense(ones, &column, &patches);
    sbx_sparse_free(ones);
    if (st != SBX_OK) { rc = fail("patches", st); goto done; }
    if ((st = sbx_conv_plan_create(&s, 2, SBX_FLOAT64, &conv)) != SBX_OK) { rc = fail("plan", st); goto done; }
    if ((st = sbx_conv_forward(conv, img, kerns, NULL, &edges)) != SBX_OK) { rc = fail("convolve", st); goto done; }
    double worst = 0;
    const double *pt = patches->data, *e = edges->data;
    for (int64_t o = 0; o < s.out_size; o++)
        for (int64_t k = 0; k < 2; k++) {
            double acc = 0;
            for (int64_t l = 0; l < 9; l++) acc += pt[o * 9 + l] * sobel[k * 9 + l];
            worst = fmax(worst, fabs(acc - e[k * s.out_size + o]));
        }
    printf("Sobel edges through the patch matrix and through a convolution plan differ by at most %.3g\n", worst);

    /* Edge strength, max-pooled 2x2 (the original's max_pool), drawn in characters. */
    int64_t mshape[2] = {1, s.out_size};
    if ((st = sbx_array_create(SBX_FLOAT64, 2, mshape, &mag)) != SBX_OK) { rc = fail("magnitude", st); goto done; }
    for (int64_t o = 0; o < s.out_size; o++) ((double *)mag->data)[o] = hypot(e[o], e[s.out_size + o]);
    if ((st = sbx_pool_shape_aesara(2, s.out, pool, &ps)) != SBX_OK ||
        (st = sbx_pool_plan_create(&ps, SBX_FLOAT64, &pooling)) != SBX_OK ||
        (st = sbx_pool_forward(pooling, mag, &pooled)) != SBX_OK) { rc = fail("max pool", st); goto done; }
    printf("edge strength, max-pooled 2x2 to %lld x %lld:\n", (long long)ps.out[0], (long long)ps.out[1]);
    const char *shades = " .:-=+*#%@";
    for (int64_t y = 0; y < ps.out[0]; y += 2) { /* every other row: characters are tall */
        printf("  ");
        for (int64_t x = 0; x < ps.out[1]; x++) {
            double v = ((double *)pooled->data)[y * ps.out[1] + x] / 4.0;
            printf("%c", shades[v >= 1 ? 9 : (int)(v * 9.99)]);
        }
        printf("\n");
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/edges.npy", dir);
    if ((st = sbx_npy_write(path, pooled)) != SBX_OK) { rc = fail("write edges", st); goto done; }
    printf("wrote the pooled edge map to %s\n", path);

    /* d/dk of 0.5 * sum(edges^2) is backward(grad_out = edges); check one tap by central difference. */
    if ((st = sbx_conv_backward(conv, img, kerns, edges, NULL, &gk, NULL)) != SBX_OK) { rc = fail("gradient", st); goto done; }
    double h = 1e-4, *kv = kerns->data, lo = 0, hi = 0;
    for (int side = 0; side < 2; side++) {
        sbx_array *y2;
        kv[4] += side ? h : -h;
        if ((st = sbx_conv_forward(conv, img, kerns, NULL, &y2)) != SBX_OK) { rc = fail("convolve", st); goto done; }
        double sum = 0;
        for (int64_t i = 0; i < 2 * s.out_size; i++) sum += 0.5 * ((double *)y2->data)[i] * ((double *)y2->data)[i];
        *(side ? &hi : &lo) = sum;
        kv[4] -= side ? h : -h;
        sbx_array_free(y2);
    }
    double fd = (hi - lo) / (2 * h), an = ((double *)gk->data)[4];
    printf("kernel gradient, centre tap of d/dx: %.6f analytic, %.6f by finite difference\n", an, fd);
    rc = worst < 1e-12 && fabs(fd - an) <= 1e-6 * (1 + fabs(an)) ? 0 : 1;
done:
    sbx_sparse_free(m);
    sbx_array *all[] = {img, kerns, patches, edges, mag, pooled, gk};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sbx_array_free(all[i]);
    sbx_conv_plan_free(conv);
    sbx_conv_plan_free(pooling);
    return rc;
}

/* Part 3; returns 0 when every check holds. */
static int random_demo(void) {
    sbx_rng rng;
    sbx_sparse *a = NULL, *b = NULL, *pois = NULL, *probs = NULL, *counts = NULL;
    sbx_status st;
    int rc = 1;
    sbx_rng_init(&rng, 2026, 0);
    sbx_set_num_threads(1);
    st = sbx_random_binomial(&rng, 3, 4e-5, 100000, 100000, SBX_CSR, SBX_INT32, &a);
    sbx_set_num_threads(2);
    if (st == SBX_OK) st = sbx_random_binomial(&rng, 3, 4e-5, 100000, 100000, SBX_CSR, SBX_INT32, &b);
    sbx_set_num_threads(0);
    if (st != SBX_OK) return fail("random binomial", st);
    int same = a->nnz == b->nnz && memcmp(a->indices, b->indices, (size_t)a->nnz * sizeof(int64_t)) == 0 &&
               memcmp(a->data, b->data, (size_t)a->nnz * sizeof(int32_t)) == 0;
    printf("Binomial(3, 4e-5) over a 100000 x 100000 matrix: %lld entries (expected %.0f), same bytes with 1 and 2 "
           "threads: %s\n", (long long)a->nnz, 1e10 * (1 - pow(1 - 4e-5, 3)), same ? "yes" : "NO");
    if ((st = sbx_sparse_cast(a, SBX_FLOAT64, &probs)) != SBX_OK || (st = sbx_random_poisson(&rng, probs, &pois)) != SBX_OK) {
        rc = fail("random poisson", st);
        goto done;
    }
    printf("each entry replaced by a Poisson draw with that mean, zeros dropped: %lld entries left\n", (long long)pois->nnz);
    /* Rows as probability vectors: each row's entries divided by the row's sum. */
    double *pv = probs->data;
    for (int64_t r = 0; r < probs->nrows; r++) {
        double sum = 0;
        for (int64_t k = probs->indptr[r]; k < probs->indptr[r + 1]; k++) sum += pv[k];
        for (int64_t k = probs->indptr[r]; k < probs->indptr[r + 1]; k++) pv[k] /= sum;
    }
    /* n = 10 for every row with entries; a row with none cannot hold draws. */
    sbx_array *per_row = NULL;
    int64_t rows = probs->nrows;
    if ((st = sbx_array_create(SBX_INT64, 1, &rows, &per_row)) != SBX_OK) {
        rc = fail("n per row", st);
        goto done;
    }
    for (int64_t r = 0; r < rows; r++) ((int64_t *)per_row->data)[r] = probs->indptr[r + 1] > probs->indptr[r] ? 10 : 0;
    st = sbx_random_multinomial(&rng, per_row, probs, 0, &counts);
    sbx_array_free(per_row);
    if (st != SBX_OK) {
        rc = fail("random multinomial", st);
        goto done;
    }
    int64_t bad_rows = 0, full_rows = 0;
    for (int64_t r = 0; r < counts->nrows; r++) {
        double sum = 0;
        for (int64_t k = counts->indptr[r]; k < counts->indptr[r + 1]; k++) sum += ((double *)counts->data)[k];
        full_rows += counts->indptr[r + 1] > counts->indptr[r];
        bad_rows += counts->indptr[r + 1] > counts->indptr[r] && sum != 10;
    }
    printf("Multinomial(10) over the %lld non-empty rows of its row-normalised form: rows not summing to 10: %lld\n",
           (long long)full_rows, (long long)bad_rows);
    rc = same && bad_rows == 0 ? 0 : 1;
done:
    sbx_sparse_free(a);
    sbx_sparse_free(b);
    sbx_sparse_free(pois);
    sbx_sparse_free(probs);
    sbx_sparse_free(counts);
    return rc;
}

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : 64;
    const char *dir = argc > 2 ? argv[2] : ".";
    if (n < 2 || n > 4096) {
        fprintf(stderr, "tour: GRID_SIDE must be in [2, 4096], got '%s'\n", argv[1]);
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
    printf("\n");
    if (convolution_demo(n, dir) != 0) rc = 1;
    printf("\n");
    if (random_demo() != 0) rc = 1;
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
