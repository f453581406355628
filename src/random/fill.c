/* Arrays of draws: element i of the array from position first + i (multinomial: row i), so that an
 * array drawn in pieces equals one drawn whole, at any thread count. */
#include <math.h>

#include "random/internal.h"

double sbx__dtype_exact_max(sbx_dtype dtype) {
    switch (dtype) {
    case SBX_FLOAT32: return 16777216.0;
    case SBX_FLOAT64: return 9007199254740992.0;
    case SBX_INT8: return 127;
    case SBX_INT16: return 32767;
    case SBX_INT32: return 2147483647.0;
    case SBX_UINT8: return 255;
    case SBX_UINT16: return 65535;
    case SBX_UINT32: return 4294967295.0;
    case SBX_BOOL: return 1;
    default: return 9.3e18; /* int64, uint64: any int64 n */
    }
}


/* The checks shared by the three: out, its dtype and size, the positions. */
static sbx_status check_out(const sbx_rng *rng, int64_t first, const sbx_array *out, int64_t *count) {
    if (!rng || !out) return sbx__error(SBX_ERR_ARG, "rng or out is NULL");
    if (!sbx__dtype_valid(out->dtype)) return sbx__error(SBX_ERR_ARG, "out has invalid dtype %d", (int)out->dtype);
    SBX_CHECK(sbx_shape_numel(out->ndim, out->shape, count));
    if (*count > 0 && !out->data)
        return sbx__error(SBX_ERR_ARG, "out has %lld elements but data NULL", (long long)*count);
    int64_t end;
    if (first < 0 || sbx_add_i64(first, *count, &end) != SBX_OK)
        return sbx__error(SBX_ERR_ARG, "first position %lld is negative or first + %lld overflows", (long long)first,
                          (long long)*count);
    return SBX_OK;
}

void sbx__draw(const sbx_rng *rng, const sbx__law *d, int64_t first, int64_t lines, int64_t width, int64_t *values) {
    const int64_t groups = (lines + SBX_RNG_BATCH - 1) / SBX_RNG_BATCH;
    const int nt = lines * width < 8192 ? 1 : sbx__threads();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t g = 0; g < groups; g++) { /* 16 positions at a time: their first blocks in vector lanes */
        sbx_rng_cursor cur[SBX_RNG_BATCH];
        const int64_t i0 = g * SBX_RNG_BATCH;
        const int c = lines - i0 < SBX_RNG_BATCH ? (int)(lines - i0) : SBX_RNG_BATCH;
        sbx__rng_cursors(rng, first + i0, c, d->kind == SBX__MULTINOMIAL ? 2 : 1, cur);
        if (d->kind == SBX__BINOMIAL)
            sbx__binomial_each(cur, c, d->n, d->p, values + i0);
        else if (d->kind == SBX__POISSON)
            sbx__poisson_each(cur, c, d->lam, NULL, values + i0);
        else
            for (int b = 0; b < c; b++) sbx__multinomial_draw(&cur[b], d->n, d->probs, d->k, values + (i0 + b) * width);
    }
}

/* Draws into values (int64), `lines` positions from first, each giving `width` values, then the cast
 * into out on this thread (so that an error's message is this thread's). */
static sbx_status fill(const sbx_rng *rng, const sbx__law *d, int64_t first, int64_t lines, int64_t width,
                       sbx_array *out) {
    int64_t *values = NULL;
    const int64_t count = lines * width;
    if (out->dtype == SBX_INT64)
        values = out->data;
    else
        SBX_CHECK(sbx__alloc_raw(count, sizeof(int64_t), &values, "draws"));
    sbx__draw(rng, d, first, lines, width, values);
    sbx_status st = SBX_OK;
    if (values != out->data) {
        st = sbx__cast(out->data, out->dtype, values, SBX_INT64, count, "draws");
        sbx__free(values);
    }
    return st;
}

sbx_status sbx_binomial_fill(const sbx_rng *rng, int64_t n, double p, int64_t first, sbx_array *out) {
    int64_t count;
    SBX_CHECK(check_out(rng, first, out, &count));
    if (n < 0) return sbx__error(SBX_ERR_ARG, "binomial n = %lld is negative", (long long)n);
    if (!(p >= 0 && p <= 1)) return sbx__error(SBX_ERR_ARG, "binomial p = %g is outside [0, 1]", p);
    if ((double)n > sbx__dtype_exact_max(out->dtype))
        return sbx__error(SBX_ERR_ARG, "binomial n = %lld: draws up to n do not fit %s exactly", (long long)n,
                          sbx_dtype_name(out->dtype));
    const sbx__law d = {.kind = SBX__BINOMIAL, .n = n, .p = p};
    return fill(rng, &d, first, count, 1, out);
}

sbx_status sbx_poisson_fill(const sbx_rng *rng, double lam, int64_t first, sbx_array *out) {
    int64_t count;
    SBX_CHECK(check_out(rng, first, out, &count));
    if (!(lam >= 0 && lam <= SBX_POISSON_MAX_LAM))
        return sbx__error(SBX_ERR_ARG, "Poisson lam = %g is outside [0, %g]", lam, SBX_POISSON_MAX_LAM);
    const sbx__law d = {.kind = SBX__POISSON, .lam = lam};
    return fill(rng, &d, first, count, 1, out);
}

sbx_status sbx_multinomial_fill(const sbx_rng *rng, int64_t n, const double *probs, int64_t k, int renormalize,
                                int64_t first, sbx_array *out) {
    int64_t count;
    SBX_CHECK(check_out(rng, first, out, &count));
    if (out->ndim != 2 || out->shape[1] != k)
        return sbx__error(SBX_ERR_ARG, "out must be rows x k = %lld (it has ndim %d, last extent %lld)", (long long)k,
                          out->ndim, (long long)(out->ndim > 0 ? out->shape[out->ndim - 1] : 0));
    int64_t end; /* positions are rows: with k = 0 there are more rows than elements */
    if (sbx_add_i64(first, out->shape[0], &end) != SBX_OK)
        return sbx__error(SBX_ERR_ARG, "first position %lld + %lld rows overflows", (long long)first,
                          (long long)out->shape[0]);
    if ((double)n > sbx__dtype_exact_max(out->dtype))
        return sbx__error(SBX_ERR_ARG, "multinomial n = %lld: counts up to n do not fit %s exactly", (long long)n,
                          sbx_dtype_name(out->dtype));
    if (out->shape[0] > 0) { /* the parameters' checks, once: sbx_multinomial on a scratch cursor */
        int64_t *scratch = NULL;
        sbx_rng_cursor cur;
        SBX_CHECK(sbx__alloc_raw(k > 0 ? k : 1, sizeof(int64_t), &scratch, "multinomial counts"));
        sbx_rng_cursor_init(rng, 0, &cur);
        const sbx_status st = sbx_multinomial(&cur, n, probs, k, renormalize, scratch);
        sbx__free(scratch);
        SBX_CHECK(st);
    }
    const sbx__law d = {.kind = SBX__MULTINOMIAL, .n = n, .k = k, .probs = probs};
    return fill(rng, &d, first, out->shape[0], k, out);
}
