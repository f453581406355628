/* The .npy reader on arbitrary files. A file it reads is written back and read again, giving the same
 * array (byte for byte: the writer keeps every bit of every element); a file it refuses leaves a
 * message. */
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path("in.npy"), *again = fuzz_path("out.npy");
    fuzz_write(path, data, size);
    sbx_array *a = NULL, *b = NULL;
    fuzz_clear_error();
    sbx_status st = sbx_npy_read(path, &a);
    if (st != SBX_OK) {
        fuzz_check_failure(st, "sbx_npy_read");
        FUZZ_REQUIRE(a == NULL, "a failed read set its output");
        return 0;
    }
    int64_t n;
    FUZZ_REQUIRE(a->ndim >= 0 && a->ndim <= SBX_MAX_NDIM, "ndim %d", a->ndim);
    FUZZ_REQUIRE(sbx_shape_numel(a->ndim, a->shape, &n) == SBX_OK && n == sbx_array_numel(a), "numel");
    /* The header and the data account for the whole file. */
    FUZZ_REQUIRE((uint64_t)n * sbx_dtype_size(a->dtype) <= size, "%lld elements from %zu bytes", (long long)n, size);
    st = sbx_npy_write(again, a);
    FUZZ_REQUIRE(st == SBX_OK, "writing back what was read failed");
    st = sbx_npy_read(again, &b);
    FUZZ_REQUIRE(st == SBX_OK, "reading back what was written failed");
    FUZZ_REQUIRE(fuzz_arrays_equal(a, b), "read, write, read changed the array");
    sbx_array_free(a);
    sbx_array_free(b);
    return 0;
}
