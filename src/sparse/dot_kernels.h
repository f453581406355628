/* Structured dot kernels, included by dot.c once per element type with T (the type) and NAME(x)
 * (a suffixing macro) defined. Each output element is summed in an order that depends only on the
 * matrices, never on the thread count. */

/* C (m x n) = A (CSR, m x k) * B (k x n): row i of C is the sum of v * (row j of B) over A's row i.
 * The rows of B are read in random order: the loop prefetches the row of the entry AHEAD places on. */
SBX_CLONES static void NAME(csr_dense)(const sbx_sparse *a, const T *restrict b, T *restrict c, int64_t n,
                                       int64_t r0, int64_t r1) {
    const int64_t *ip = a->indptr, *ix = a->indices;
    const T *av = a->data;
    const int64_t end = ip[r1], row_bytes = n * (int64_t)sizeof(T);
    for (int64_t i = r0; i < r1; i++) {
        T *restrict ci = c + i * n;
        for (int64_t p = ip[i]; p < ip[i + 1]; p++) {
            if (p + AHEAD < end) prefetch_row(b + ix[p + AHEAD] * n, row_bytes);
            const T v = av[p];
            const T *restrict bj = b + ix[p] * n;
            for (int64_t t = 0; t < n; t++) ci[t] += v * bj[t];
        }
    }
}

/* C (m x n) = A (CSC, m x k) * B (k x n), for C's columns t0 .. t1-1 only: each thread owns a
 * block of columns, so no two threads write the same element. C's rows are updated in random order:
 * the loop prefetches the row of the entry AHEAD places on. */
SBX_CLONES static void NAME(csc_dense)(const sbx_sparse *a, const T *restrict b, T *restrict c, int64_t n,
                                       int64_t t0, int64_t t1) {
    const int64_t *ip = a->indptr, *ix = a->indices;
    const T *av = a->data;
    const int64_t end = ip[a->ncols], row_bytes = (t1 - t0) * (int64_t)sizeof(T);
    for (int64_t j = 0; j < a->ncols; j++) {
        const T *restrict bj = b + j * n;
        for (int64_t p = ip[j]; p < ip[j + 1]; p++) {
            if (p + AHEAD < end) prefetch_row(c + ix[p + AHEAD] * n + t0, row_bytes);
            const T v = av[p];
            T *restrict ci = c + ix[p] * n;
            for (int64_t t = t0; t < t1; t++) ci[t] += v * bj[t];
        }
    }
}

/* C (m x n) = A (m x k dense) * B (CSR, k x n), rows r0 .. r1-1 of C. */
SBX_CLONES static void NAME(dense_csr)(const T *restrict a, const sbx_sparse *b, T *restrict c, int64_t k,
                                       int64_t r0, int64_t r1) {
    const int64_t *ip = b->indptr, *ix = b->indices;
    const T *bv = b->data;
    int64_t n = b->ncols;
    for (int64_t r = r0; r < r1; r++) {
        T *restrict cr = c + r * n;
        const T *restrict ar = a + r * k;
        for (int64_t i = 0; i < k; i++) {
            const T v = ar[i];
            for (int64_t p = ip[i]; p < ip[i + 1]; p++) cr[ix[p]] += v * bv[p];
        }
    }
}

/* C (m x n) = A (m x k dense) * B (CSC, k x n), rows r0 .. r1-1 of C. */
SBX_CLONES static void NAME(dense_csc)(const T *restrict a, const sbx_sparse *b, T *restrict c, int64_t k,
                                       int64_t r0, int64_t r1) {
    const int64_t *ip = b->indptr, *ix = b->indices;
    const T *bv = b->data;
    int64_t n = b->ncols;
    for (int64_t r = r0; r < r1; r++) {
        T *restrict cr = c + r * n;
        const T *restrict ar = a + r * k;
        for (int64_t j = 0; j < n; j++) {
            T s = 0;
            for (int64_t p = ip[j]; p < ip[j + 1]; p++) s += ar[ix[p]] * bv[p];
            cr[j] = s;
        }
    }
}
