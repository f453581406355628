/* The demo's IDX reader (examples/demo/idx.c; the library reads no IDX) on arbitrary files. The first
 * byte gives the number of dimensions (1 to 8) and, in its top bit, whether the rest is written
 * gzipped (so the reader's gzip path sees well-formed streams too; a plain file may hold damaged gzip
 * data). Checks: a read gives the extents' product in bytes, and for a file given as it is, exactly the
 * bytes after the header; the same extents and bytes written as an IDX file read back the same; a
 * refusal leaves a message. */
#include <string.h>

#include <zlib.h>

#include "idx.h"
#include "fuzz.h"

static void write_gzip(const char *path, const uint8_t *data, size_t size) {
    gzFile gz = gzopen(path, "wb");
    FUZZ_REQUIRE(gz, "cannot write %s", path);
    int ok = size == 0 || gzwrite(gz, data, (unsigned)size) == (int)size;
    ok &= gzclose(gz) == Z_OK;
    FUZZ_REQUIRE(ok, "cannot write %s", path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int ndim = 1 + (data[0] & 7), gzipped = (data[0] & 0x80) != 0;
    const uint8_t *file = data + 1;
    size_t len = size - 1;
    const char *path = fuzz_path("in.idx"), *again = fuzz_path("out.idx");
    if (gzipped)
        write_gzip(path, file, len);
    else
        fuzz_write(path, file, len);
    int64_t dims[8];
    uint8_t *bytes = NULL;
    char err[512] = "";
    if (idx_read(path, ndim, dims, &bytes, err, sizeof err) != 0) {
        FUZZ_REQUIRE(err[0] != '\0', "idx_read failed without a message");
        FUZZ_REQUIRE(bytes == NULL, "a failed read set its output");
        return 0;
    }
    size_t header = 4 + 4 * (size_t)ndim, want = 1;
    for (int d = 0; d < ndim; d++) want *= (size_t)dims[d];
    FUZZ_REQUIRE(bytes != NULL, "a read gave no buffer");
    /* The decompressed content is file[0 .. len-1] in both cases: a plain file given to zlib reads as
     * it is, unless it begins with gzip's magic bytes. */
    int plain = gzipped || len < 2 || file[0] != 0x1f || file[1] != 0x8b;
    if (plain) {
        FUZZ_REQUIRE(len == header + want, "%zu bytes in the file, %zu + %zu read", len, header, want);
        FUZZ_REQUIRE(!want || !memcmp(bytes, file + header, want), "the bytes read are not the file's");
    }
    /* Written again from what was read. */
    uint8_t *out = malloc(header + want);
    FUZZ_REQUIRE(out, "out of memory");
    out[0] = out[1] = 0;
    out[2] = 8;
    out[3] = (uint8_t)ndim;
    for (int d = 0; d < ndim; d++)
        for (int k = 0; k < 4; k++) out[4 + 4 * d + k] = (uint8_t)((uint64_t)dims[d] >> (8 * (3 - k)));
    memcpy(out + header, bytes, want);
    fuzz_write(again, out, header + want);
    int64_t dims2[8];
    uint8_t *bytes2 = NULL;
    FUZZ_REQUIRE(idx_read(again, ndim, dims2, &bytes2, err, sizeof err) == 0, "reading back failed: %s", err);
    FUZZ_REQUIRE(!memcmp(dims, dims2, (size_t)ndim * sizeof dims[0]) && !memcmp(bytes, bytes2, want),
                 "read, write, read changed the data");
    free(out);
    free(bytes);
    free(bytes2);
    return 0;
}
