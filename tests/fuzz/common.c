/* The shared part of the fuzz targets (fuzz.h). */
#define _POSIX_C_SOURCE 200809L /* getpid */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "fuzz.h"

uint8_t fuzz_u8(fuzz_bytes *b) {
    if (!b->n) return 0;
    b->n--;
    return *b->p++;
}

uint32_t fuzz_u32(fuzz_bytes *b) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)fuzz_u8(b) << (8 * i);
    return v;
}

uint64_t fuzz_u64(fuzz_bytes *b) {
    uint64_t lo = fuzz_u32(b);
    return lo | (uint64_t)fuzz_u32(b) << 32;
}

int64_t fuzz_range(fuzz_bytes *b, int64_t lo, int64_t hi) {
    uint64_t span = (uint64_t)(hi - lo) + 1;
    /* One byte where it is enough, so that small choices take small inputs. */
    uint64_t v = span <= 256 ? fuzz_u8(b) : fuzz_u32(b);
    return lo + (int64_t)(v % span);
}

double fuzz_f64(fuzz_bytes *b) {
    if (fuzz_u8(b) & 1) {
        uint64_t bits = fuzz_u64(b);
        double d;
        memcpy(&d, &bits, sizeof d);
        return d;
    }
    return ((int)fuzz_u8(b) - 128) / 8.0;
}

const char *fuzz_path(const char *tag) {
    enum { TAGS = 4 };
    static char tags[TAGS][16], paths[TAGS][512];
    for (int i = 0; i < TAGS; i++) {
        if (!strcmp(tags[i], tag)) return paths[i];
        if (!tags[i][0]) {
            const char *dir = getenv("TMPDIR");
            if (access("/dev/shm", W_OK) == 0) dir = "/dev/shm";
            if (!dir || !*dir) dir = "/tmp";
            snprintf(tags[i], sizeof tags[i], "%s", tag);
            snprintf(paths[i], sizeof paths[i], "%s/sbx-fuzz-%ld-%s", dir, (long)getpid(), tag);
            return paths[i];
        }
    }
    FUZZ_REQUIRE(0, "more than %d scratch paths", TAGS);
    return NULL;
}

void fuzz_write(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    FUZZ_REQUIRE(f, "cannot write the scratch file %s", path);
    int ok = fwrite(data, 1, size, f) == size;
    ok &= fclose(f) == 0;
    FUZZ_REQUIRE(ok, "cannot write the scratch file %s", path);
}

void fuzz_clear_error(void) { sbx__error(SBX_OK, "%s", ""); }

void fuzz_check_failure(sbx_status st, const char *call) {
    FUZZ_REQUIRE(st > SBX_OK && st <= SBX_ERR_UNSUPPORTED, "%s returned status %d", call, (int)st);
    FUZZ_REQUIRE(sbx_last_error()[0] != '\0', "%s failed (%s) without a message", call, sbx_status_str(st));
}

int fuzz_arrays_equal(const sbx_array *a, const sbx_array *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    for (int d = 0; d < SBX_MAX_NDIM; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    size_t bytes = (size_t)sbx_array_numel(a) * sbx_dtype_size(a->dtype);
    return !bytes || !memcmp(a->data, b->data, bytes);
}

int fuzz_sparse_equal(const sbx_sparse *a, const sbx_sparse *b, int exact) {
    if (a->format != b->format || a->dtype != b->dtype || a->nrows != b->nrows || a->ncols != b->ncols ||
        a->nnz != b->nnz)
        return 0;
    if (memcmp(a->indptr, b->indptr, (size_t)(sbx_sparse_major(a) + 1) * sizeof(int64_t))) return 0;
    if (!a->nnz) return 1;
    if (memcmp(a->indices, b->indices, (size_t)a->nnz * sizeof(int64_t))) return 0;
    if (exact || (a->dtype != SBX_FLOAT32 && a->dtype != SBX_FLOAT64))
        return !memcmp(a->data, b->data, (size_t)a->nnz * sbx_dtype_size(a->dtype));
    for (int64_t p = 0; p < a->nnz; p++) {
        double x = sbx__get_f64(a->data, a->dtype, p), y = sbx__get_f64(b->data, b->dtype, p);
        if (!(x == y || (isnan(x) && isnan(y)))) return 0;
    }
    return 1;
}

/* One thread: the inputs are small, and a run's coverage then does not depend on the scheduler. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    sbx_set_num_threads(1);
    return 0;
}
