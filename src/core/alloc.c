/* The one allocator: every allocation of the library goes through here, so that sizes are checked in
 * one place and a test can make the k-th allocation fail. */
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

static int64_t fail_at;   /* the allocation number that fails; 0: none */
static int64_t count;     /* allocations since the last sbx__alloc_fail_at call */

int64_t sbx__alloc_fail_at(int64_t k) {
    int64_t n = count;
    count = 0;
    fail_at = k > 0 ? k : 0;
    return n;
}

static sbx_status byte_size(int64_t n, size_t size, size_t *bytes, const char *what) {
    int64_t b;
    if (n < 0) return sbx__error(SBX_ERR_ARG, "%s: negative element count %lld", what, (long long)n);
    if (size > (size_t)INT64_MAX || sbx_mul_i64(n, (int64_t)size, &b) != SBX_OK || (uint64_t)b > SIZE_MAX)
        return sbx__error(SBX_ERR_OVERFLOW, "%s: %lld elements of %zu bytes overflow the address space", what,
                          (long long)n, size);
    *bytes = (size_t)b;
    return SBX_OK;
}

static int injected_failure(void) {
    count++;
    return fail_at > 0 && count == fail_at;
}

sbx_status sbx__alloc(int64_t n, size_t size, void *out_ptr, const char *what) {
    size_t bytes = 0;
    SBX_CHECK(byte_size(n, size, &bytes, what));
    void *p = injected_failure() ? NULL : calloc(bytes ? bytes : 1, 1);
    if (!p) return sbx__error(SBX_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, bytes);
    memcpy(out_ptr, &p, sizeof p);
    return SBX_OK;
}

sbx_status sbx__grow(int64_t n, size_t size, void *inout_ptr, const char *what) {
    size_t bytes = 0;
    void *old;
    SBX_CHECK(byte_size(n, size, &bytes, what));
    memcpy(&old, inout_ptr, sizeof old);
    void *p = injected_failure() ? NULL : realloc(old, bytes ? bytes : 1);
    if (!p) return sbx__error(SBX_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, bytes);
    memcpy(inout_ptr, &p, sizeof p);
    return SBX_OK;
}

void sbx__free(void *p) { free(p); }
