/* What every fuzz target shares: the libFuzzer entry point, a reader that turns the input bytes into
 * parameters, a scratch file for the readers that take a path, and the checks. A failed check aborts,
 * which libFuzzer (and replay.c) report as a crash with the input that caused it. */
#ifndef SBX_FUZZ_H
#define SBX_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sparsebox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_REQUIRE(cond, ...)                                                               \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fprintf(stderr, " (last error: '%s')\n", sbx_last_error());                       \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* The input, read front to back; past its end every read gives zeros. */
typedef struct fuzz_bytes {
    const uint8_t *p;
    size_t n;
} fuzz_bytes;

uint8_t fuzz_u8(fuzz_bytes *b);
uint32_t fuzz_u32(fuzz_bytes *b);
uint64_t fuzz_u64(fuzz_bytes *b);
/* A value in [lo, hi] (hi >= lo, hi - lo < 2^32). */
int64_t fuzz_range(fuzz_bytes *b, int64_t lo, int64_t hi);
/* Any double, NaN and infinities included, or (one time in two) a small round number. */
double fuzz_f64(fuzz_bytes *b);

/* A scratch path of this process, one per tag ("/dev/shm/sbx-fuzz-PID-tag" when /dev/shm can be
 * written, else under $TMPDIR or /tmp); the buffer is static per tag. */
const char *fuzz_path(const char *tag);
/* Writes size bytes to path, aborting when that fails (the fuzzer cannot go on without it). */
void fuzz_write(const char *path, const uint8_t *data, size_t size);

/* Empties the last-error message, so that a failure's own message can be seen to be set. */
void fuzz_clear_error(void);
/* A failed call: a status of the enum other than SBX_OK, and a message. */
void fuzz_check_failure(sbx_status st, const char *call);

/* Element-wise equality of two arrays of the same dtype and shape, NaN equal to NaN with the same bits. */
int fuzz_arrays_equal(const sbx_array *a, const sbx_array *b);
/* Equality of two sparse matrices: format, dtype, sizes, indptr, indices, and the data bytes (exact) or
 * the values as numbers (float NaNs equal whatever their bits: arithmetic quiets a signalling NaN). */
int fuzz_sparse_equal(const sbx_sparse *a, const sbx_sparse *b, int exact);

#endif
