/* Internal helpers shared by every module: error reporting, the one allocator, checked sizes.
 * Nothing here is exported from the shared library. */
#ifndef SBX_INTERNAL_H
#define SBX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sparsebox/core.h"

#if defined(__GNUC__)
#define SBX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SBX_PRINTF(f, a)
#endif

/* Sets this thread's message (printf-style) and returns status, so a failure reads
 * `return sbx__error(SBX_ERR_ARG, "nrows %lld is negative", ...)`. */
sbx_status sbx__error(sbx_status status, const char *fmt, ...) SBX_PRINTF(2, 3);

/* The one allocator. sbx__alloc(n, size, &p, what) allocates n * size bytes (zeroed) after checking
 * the product; on failure it sets a message naming `what` and returns SBX_ERR_OVERFLOW or
 * SBX_ERR_NOMEM. n == 0 yields a valid pointer to free. sbx__alloc_raw leaves the block's content
 * unspecified (for arrays the caller fills whole). sbx__grow resizes, keeping the contents; the new
 * part is unspecified. Only sbx__free may release these blocks (they carry a header). */
sbx_status sbx__alloc(int64_t n, size_t size, void *out_ptr, const char *what);
sbx_status sbx__alloc_raw(int64_t n, size_t size, void *out_ptr, const char *what);
sbx_status sbx__grow(int64_t n, size_t size, void *inout_ptr, const char *what);
void sbx__free(void *p);

/* For tests: make the k-th allocation from now fail (k = 1: the next one); k <= 0 turns it off.
 * Returns how many allocations happened since the previous call. */
int64_t sbx__alloc_fail_at(int64_t k);
/* For tests: how many blocks are allocated and not yet freed (blocks held in a pool count), so a test
 * can see that a failed call left nothing behind. */
int64_t sbx__alloc_live(void);

/* A pool of freed blocks, for compiled functions (src/op/function.c), which make the same
 * allocations on every call. While a pool is entered on a thread, blocks that thread frees go into
 * the pool (the oldest of SBX_POOL_SLOTS leaving it when it is full) and, once serve is set, its
 * allocations take the smallest pooled block that fits first; those are not counted by
 * sbx__alloc_fail_at, nor failed by it. A function's first call only fills the pool: served then, the
 * blocks its kernels free could go to the outputs it keeps, and its second call would allocate
 * them again. sbx__pool_enter returns the pool that was entered before (restore it with another
 * enter); release frees every block. */
#define SBX_POOL_SLOTS 64
typedef struct sbx__pool {
    void *blocks[SBX_POOL_SLOTS];
    int n;
    int serve;
} sbx__pool;
sbx__pool *sbx__pool_enter(sbx__pool *pool);
void sbx__pool_release(sbx__pool *pool);

/* Element conversion with the rules of sbx_array_cast. On a value that cannot be represented it
 * returns SBX_ERR_ARG with a message naming `what` and the element's position. */
sbx_status sbx__cast(void *dst, sbx_dtype dst_dtype, const void *src, sbx_dtype src_dtype, int64_t n,
                     const char *what);
/* Element i of data as a double (exact for every integer up to 2^53). */
double sbx__get_f64(const void *data, sbx_dtype dtype, int64_t i);
/* 1 when element i is not zero (NaN counts as not zero). */
int sbx__nonzero(const void *data, sbx_dtype dtype, int64_t i);
/* dst[i] += src[j] in dtype (bool: or). */
void sbx__accumulate(void *dst, int64_t i, const void *src, int64_t j, sbx_dtype dtype);

/* sbx_array_create, leaving the data unfilled when zero is 0 (for outputs written whole). */
sbx_status sbx__array_new(sbx_dtype dtype, int ndim, const int64_t *shape, int zero, sbx_array **out);

/* 1 for a value inside the sbx_dtype enum. */
int sbx__dtype_valid(sbx_dtype dtype);

/* A hot kernel compiled for AVX-512, AVX2 and baseline x86-64, picked when the library loads.
 * Sanitizer builds use the plain version (ifunc resolvers run before the sanitizer is ready), and so
 * does clang: clang 14 names the dispatcher f.ifunc, so a call from another file does not link. */
#if defined(__x86_64__) && !defined(SBX_SANITIZE) && !defined(__clang__)
#define SBX_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
/* For loops whose trip counts are often below 16 floats: 256-bit vectors at most. */
#define SBX_CLONES_256 __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SBX_CLONES
#define SBX_CLONES_256
#endif

/* Threads for parallel loops (sbx_get_num_threads, clamped to at least 1). */
int sbx__threads(void);
/* The calling thread's number in the current parallel region (0 outside one). */
int sbx__thread(void);

#define SBX_CHECK(expr)                        \
    do {                                       \
        sbx_status sbx__st = (expr);           \
        if (sbx__st != SBX_OK) return sbx__st; \
    } while (0)

#endif
