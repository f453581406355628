/* The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/), gzipped as Debian's
 * dataset-fashion-mnist ships it: a big-endian header (the magic number 0x000008NN: unsigned bytes,
 * NN dimensions; then NN 32-bit extents) followed by the bytes in row-major order. The reader checks
 * the magic number, that the extents agree with the bytes the file holds, and (for a data set) that
 * the images and labels agree in number and the labels lie in 0-9. Every failure is a message naming
 * the file, never a crash. */
#ifndef DEMO_IDX_H
#define DEMO_IDX_H

#include <stddef.h>
#include <stdint.h>

/* The Debian package and folder that hold the data. */
#define IDX_PACKAGE "dataset-fashion-mnist"
#define IDX_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

/* One split of the data set: count images of rows x cols bytes (0 black .. 255 white), one label each. */
typedef struct idx_set {
    int64_t count;
    int64_t rows, cols;
    uint8_t *pixels; /* count * rows * cols */
    uint8_t *labels; /* count, each in 0 .. classes - 1 */
} idx_set;

/* Reads DIR/PREFIX-images-idx3-ubyte.gz and DIR/PREFIX-labels-idx1-ubyte.gz (PREFIX "train" or
 * "t10k"), requiring rows x cols images and labels below `classes`. Returns 0, or -1 with a message in
 * err (the package to install when a file is missing). */
int idx_load_set(const char *dir, const char *prefix, int64_t rows, int64_t cols, int classes, idx_set *out,
                 char *err, size_t errsize);
void idx_free_set(idx_set *set);

/* One IDX file of unsigned bytes with ndim dimensions: *dims receives the extents and *data the bytes
 * (malloc'd, the caller frees). Returns 0, or -1 with a message in err. */
int idx_read(const char *path, int ndim, int64_t *dims, uint8_t **data, char *err, size_t errsize);

#endif
