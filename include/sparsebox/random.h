/* sparsebox random numbers: a counter-based generator whose every value depends only on (seed,
 * stream, position), never on thread count or blocking; exact samplers; sparse random matrices. */
#ifndef SPARSEBOX_RANDOM_H
#define SPARSEBOX_RANDOM_H

#include "sparsebox/core.h"
#include "sparsebox/sparse.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The layout of the counters below and the samplers' use of them; any change that alters an output
 * bumps it. 2: Poisson below 10 by inversion, multinomial trials and the sparse Binomial's tables read
 * one word first. 3: BTRS and PTRS compare pmf ratios rather than their logarithms (a decision can differ
 * only where the two roundings straddle the bound). 4: Poisson inversion's P(0) = exp(-lam) is the
 * library's own exponential (the same bits in vector lanes and scalar code) rather than libm's, which
 * can differ by a unit in the last place. */
#define SBX_RNG_VERSION 4

/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11):
 * the 4 output words for counter ctr under key. */
SBX_API void sbx_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* A generator: a 64-bit seed (the Philox key) and a 32-bit stream. Value number k (k = 0, 1, ...) of
 * position p (an output element, a row: each sampler says which) is word k % 4 of the Philox block
 * with counter (k / 4 as 32 bits, p low 32 bits, p high 32 bits, stream) under key (seed low 32 bits,
 * seed high 32 bits). */
typedef struct sbx_rng {
    uint64_t seed;
    uint32_t stream;
} sbx_rng;

/* Reads values of one position in order (the first three Philox blocks one by one, then 16 at a
 * time: most positions of a sparse matrix need a few words, some need many). */
#define SBX_RNG_BATCH 16
typedef struct sbx_rng_cursor {
    _Alignas(64) uint32_t words[4 * SBX_RNG_BATCH]; /* aligned: made by whole-cache-line vector stores */
    uint32_t key[2], ctr[4];
    int used, have; /* words returned, words made */
} sbx_rng_cursor;

SBX_API void sbx_rng_init(sbx_rng *rng, uint64_t seed, uint32_t stream);
/* A cursor at value 0 of position p (p >= 0; SBX_ERR_ARG otherwise). */
SBX_API sbx_status sbx_rng_cursor_init(const sbx_rng *rng, int64_t position, sbx_rng_cursor *cursor);
/* The next 32-bit word; the next 64-bit word (two words, the first in the low half); the next double
 * in [0, 1) with 53 random bits (from one 64-bit word: (w >> 11) * 2^-53). */
SBX_API uint32_t sbx_rng_u32(sbx_rng_cursor *cursor);
SBX_API uint64_t sbx_rng_u64(sbx_rng_cursor *cursor);
SBX_API double sbx_rng_double(sbx_rng_cursor *cursor);

/* Exact samplers, each drawing from a cursor (so a value depends only on the cursor's position and on
 * the draws made from it before). Bad parameters give SBX_ERR_ARG naming the parameter and value;
 * *out is set only on success.
 * Binomial(n, p): n >= 0, 0 <= p <= 1. p > 1/2 is sampled as n - Binomial(n, 1 - p). With
 * n * min(p, 1-p) < 10: inversion, the chain of pmf ratios from P(0) = exp(n log1p(-p)) (for n <= 16
 * a CDF table, read with one 32-bit word and a second only when the first cannot decide); otherwise
 * Hormann's transformed rejection BTRS ("The generation of binomial random variates", J. Statist.
 * Comput. Simul. 46, 1993) with its Stirling-series acceptance test. */
SBX_API sbx_status sbx_binomial(sbx_rng_cursor *cursor, int64_t n, double p, int64_t *out);
/* Poisson(lam): 0 <= lam <= SBX_POISSON_MAX_LAM. lam < 10: inversion of the CDF built from
 * P(0) = exp(-lam), P(k) = P(k-1) (lam (1/k)) up to k = 64 (the mass above is below 1e-29; a uniform
 * past the rounded CDF is drawn again), with a 53-bit uniform read one 32-bit word first (the second
 * word only when the first leaves the answer open: a CDF value falls within its 2^-32 step, about once
 * in 2^28 draws); otherwise Hormann's PTRS ("The transformed rejection method for generating Poisson random
 * variables", Insurance: Mathematics and Economics 12, 1993). The bound keeps PTRS's acceptance test,
 * a difference of terms near lam log lam, exact to about 1e-5 in the log. */
#define SBX_POISSON_MAX_LAM 1e10
SBX_API sbx_status sbx_poisson(sbx_rng_cursor *cursor, double lam, int64_t *out);
/* Multinomial(n, probs[0..k-1]): for n <= 16, n categorical trials, each a uniform u = U * sum(probs)
 * (U of 53 bits read one word first, as above) inverted over the cumulative masses; otherwise
 * conditional binomials, counts[i] ~ Binomial(n left, probs[i] / mass left), the last category with
 * mass taking the rest. probs >= 0, finite, summing to 1 within 1e-6 (renormalize = 1 accepts any
 * positive finite sum and divides by it). */
SBX_API sbx_status sbx_multinomial(sbx_rng_cursor *cursor, int64_t n, const double *probs, int64_t k, int renormalize,
                                   int64_t *counts);

/* Arrays of draws (numpy's size= argument): element i of out from a cursor at position first + i
 * (multinomial: row i of a rows x k array), so that an array drawn in pieces equals one drawn whole,
 * at any thread count. Any shape; any dtype that holds the draws exactly (checked for n beforehand;
 * a Poisson draw too large for out's dtype is an error). Parameters as for the samplers above. */
SBX_API sbx_status sbx_binomial_fill(const sbx_rng *rng, int64_t n, double p, int64_t first, sbx_array *out);
SBX_API sbx_status sbx_poisson_fill(const sbx_rng *rng, double lam, int64_t first, sbx_array *out);
SBX_API sbx_status sbx_multinomial_fill(const sbx_rng *rng, int64_t n, const double *probs, int64_t k, int renormalize,
                                        int64_t first, sbx_array *out);

/* --- Sparse random matrices (the original's Binomial, Poisson, Multinomial) -------------------------
 * Pure functions of (rng, arguments): the same inputs give the same bytes at any thread count. */

/* An nrows x ncols matrix of Binomial(n, p) draws, only the non-zero ones stored, indices sorted,
 * in time and memory O(nrows + ncols + nnz): along each major line (row of CSR, column of CSC) the
 * gaps between non-zeros are geometric with P(0) = (1-p)^n, and each non-zero is a zero-truncated
 * binomial draw. Line i draws its gaps from position 2i and its values from position 2i + 1; when
 * (1-p)^n < 0.7 and n <= 4096 a line is drawn cell by cell instead, one value per cell from position 2i.
 * Values for n <= 4096 and gaps for (1-p)^n <= 0.998 come from inverting tables of their CDFs (one
 * word first, as sbx_poisson); other gaps are floor(log(1 - U) / log P(0)). dtype: any sbx_dtype
 * whose values hold 0..n exactly (float32: n <= 2^24; bool: n <= 1). */
SBX_API sbx_status sbx_random_binomial(const sbx_rng *rng, int64_t n, double p, int64_t nrows, int64_t ncols,
                                       sbx_format format, sbx_dtype dtype, sbx_sparse **out);
/* x's structure, format and dtype, each stored value replaced by a Poisson draw with that mean
 * (stored entry k draws from position k), then the zeros dropped. Means must be in
 * [0, SBX_POISSON_MAX_LAM]; draws must fit x's dtype exactly. */
SBX_API sbx_status sbx_random_poisson(const sbx_rng *rng, const sbx_sparse *x, sbx_sparse **out);
/* p's structure, format and dtype: each row's stored entries, a probability vector, replaced by the
 * counts of one Multinomial(n_row, row) draw (row r draws from position r; zero counts stay stored,
 * as in the original). n: a 0-d or 1-element array (every row) or nrows values, integer dtype (or
 * float with integral values). A row with a negative, NaN or infinite probability, or whose sum is not 1
 * within 1e-6 (unless renormalize, which divides by any positive sum), or an empty row with n > 0, is
 * an error naming the row. */
SBX_API sbx_status sbx_random_multinomial(const sbx_rng *rng, const sbx_array *n, const sbx_sparse *p, int renormalize,
                                          sbx_sparse **out);

/* --- The original's Op answers for these three ops (infer_shape, grad, connection_pattern) ------------
 * Inputs in the original's order: Binomial (0 n, 1 p, 2 shape), Poisson (0 x), Multinomial (0 n, 1 p). */
typedef enum sbx_random_op {
    SBX_RANDOM_BINOMIAL = 0,
    SBX_RANDOM_POISSON = 1,
    SBX_RANDOM_MULTINOMIAL = 2
} sbx_random_op;

/* The number of inputs of op (3, 1, 2); 0 for a value outside the enum. */
SBX_API int sbx_random_op_inputs(sbx_random_op op);
/* The gradient with respect to input `input`: SBX_GRAD_UNDEFINED for n, p and x (a draw has no
 * derivative in its parameters), SBX_GRAD_DISCONNECTED for Binomial's shape (the original's
 * connection_pattern [[True], [True], [False]]; Poisson and Multinomial: every input connected). */
SBX_API sbx_status sbx_random_op_grad(sbx_random_op op, int input, sbx_grad *out);
/* infer_shape, the output's (rows, cols) without drawing: for Binomial the values of its shape input
 * (`shape`: 2 non-negative integers in a 1-d integer array; `like` is not read), for Poisson and
 * Multinomial the shape of x / p (`like`; `shape` is not read). */
SBX_API sbx_status sbx_random_op_infer_shape(sbx_random_op op, const sbx_array *shape, const sbx_sparse *like,
                                             int64_t out[2]);

#ifdef __cplusplus
}
#endif

#endif
