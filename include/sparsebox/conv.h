/* sparsebox convolution geometry and patch matrices: convolution, local connections and pooling as
 * sparse operators, in 1 to 8 spatial dimensions.
 *
 * Two orders of the step, kept apart on purpose:
 *  - the N-d C API (sbx_conv_shape_make) takes every shape and stride in shape order: first the
 *    slowest-varying spatial dimension (height before width);
 *  - the Aesara-compatible entry (sbx_conv_shape_aesara) takes the original's step (dx, dy): dx along
 *    the width, dy along the height, so (1, 2) puts output rows 2 apart. */
#ifndef SPARSEBOX_CONV_H
#define SPARSEBOX_CONV_H

#include "sparsebox/core.h"
#include "sparsebox/sparse.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sbx_conv_mode {
    SBX_CONV_VALID = 0, /* windows entirely inside the image */
    SBX_CONV_FULL = 1   /* every window that overlaps the image; taps outside it read zero */
} sbx_conv_mode;

/* "valid" or "full"; "invalid" otherwise. */
SBX_API const char *sbx_conv_mode_name(sbx_conv_mode mode);
SBX_API sbx_status sbx_conv_mode_parse(const char *name, sbx_conv_mode *out);

/* The geometry of a convolution: an image of `channels` feature maps of shape in[0..ndim-1], a kernel
 * of shape kernel[], a stride, a mode. Output extent along each dimension d:
 *   valid: ceil((in[d] - kernel[d] + 1) / stride[d])      full: ceil((in[d] + kernel[d] - 1) / stride[d])
 * Output position o reads, through tap t, the input coordinate o * stride - pad + t, where pad is 0
 * (valid) or kernel - 1 (full), as the original does (full mode samples from position 0). */
typedef struct sbx_conv_shape {
    int ndim;                          /* spatial dimensions, 1 .. SBX_MAX_NDIM */
    int64_t channels;                  /* input feature maps (the original's nfeatures) */
    int64_t in[SBX_MAX_NDIM];          /* image extent per dimension */
    int64_t kernel[SBX_MAX_NDIM];      /* kernel extent per dimension */
    int64_t stride[SBX_MAX_NDIM];      /* step per dimension, shape order */
    sbx_conv_mode mode;
    int64_t out[SBX_MAX_NDIM];         /* output extent per dimension (computed) */
    int64_t in_size;                   /* channels * prod(in): the image's length, raster order */
    int64_t out_size;                  /* prod(out): output positions per feature map */
    int64_t kernel_size;               /* prod(kernel): taps per feature map */
} sbx_conv_shape;

/* Fills *out. Rules: 1 <= ndim <= SBX_MAX_NDIM; channels, in[d], kernel[d], stride[d] >= 1 (stride
 * may be NULL for all ones); every output extent >= 1 (a valid-mode kernel larger than the image is
 * an error, as in the original); all sizes fit in int64. */
SBX_API sbx_status sbx_conv_shape_make(int ndim, int64_t channels, const int64_t *in, const int64_t *kernel,
                                       const int64_t *stride, sbx_conv_mode mode, sbx_conv_shape *out);
/* The original's arguments: inshp (h, w) or (nfeatures, h, w) (inshp_len 2 or 3), kshp (kh, kw), and
 * step (dx, dy) (NULL for (1, 1)), dx along the width. */
SBX_API sbx_status sbx_conv_shape_aesara(int inshp_len, const int64_t *inshp, const int64_t *kshp, const int64_t *step,
                                         sbx_conv_mode mode, sbx_conv_shape *out);

/* The original's ConvolutionIndices.evaluate: the sparse matrix M whose product with a raster-order
 * image (a column of in_size values, feature maps one after another) gives
 *  - weight_sharing = 1 (convolution): the stack of patches, out_size * channels * kernel_size rows:
 *    row (o * channels + c) * kernel_size + l holds the pixel that tap l of output position o reads in
 *    feature map c; taps outside the image are absent. nkern must be 1.
 *  - weight_sharing = 0 (sparse local connections): nkern * out_size rows, row n * out_size + o
 *    holding every pixel of o's window in every feature map.
 * Stored values are the original's tap numbers, int64: entry (c, n, o, l) holds
 * ((c * nkern + n) * out_size + o) * kernel_size + l + 1, a counter that also counts the taps falling
 * outside the image (so full mode has gaps). Rows are sorted within each column. In CSC form this
 * is the original's matrix entry for entry and in the same order.
 * kmap (may be NULL): a new int64 vector of nnz entries, the stored values minus one in the
 * matrix's storage order: the weight each entry uses, W = matrix with values kerns[kmap]. */
SBX_API sbx_status sbx_conv_indices(const sbx_conv_shape *shape, int weight_sharing, int64_t nkern,
                                    sbx_format format, sbx_sparse **matrix, sbx_array **kmap);

/* The gather table: for each output position o, feature map c and tap l, the input index
 * (c * prod(in) + the pixel's raster index) that tap reads, or -1 where it falls outside the image.
 * A new int64 array of shape (out_size, channels * kernel_size). */
SBX_API sbx_status sbx_conv_gather(const sbx_conv_shape *shape, sbx_array **table);

/* --- Layers: convolution, local connections, max pooling ----------------------------------------
 * Plans, as FFTW's: made once for a geometry, a kernel count and a dtype (float32 or float64), then
 * executed any number of times; executing a plan is thread-safe (a plan is never written after it is
 * made). Arrays are row-major sbx_arrays of the plan's dtype:
 *   images      batch x in_size (raster order, feature maps one after another; batch may be 0)
 *   conv kerns  nkern x (channels * kernel_size), taps in kernel raster order, feature maps one after
 *               another (correlation, as the original: no kernel flip)
 *   conv bias   nkern (or NULL)
 *   conv output batch x (nkern * out_size), each feature map contiguous (the original's layout; its
 *               flatten=False shape batch x nkern x out_size is the same memory)
 * Every output is a new array written to *out; a gradient pointer may be NULL to skip that gradient.
 * The compute paths read the plan's gather table (sbx_conv_gather): patches are gathered into a small
 * workspace and multiplied by the kernels with CBLAS, or summed from contiguous runs by a direct
 * kernel; the patch matrix is materialised only when a MEASURE plan chooses it (the planner, below). */
typedef struct sbx_conv_plan sbx_conv_plan;

/* Convolution with weights shared over positions (the original's convolve). */
SBX_API sbx_status sbx_conv_plan_create(const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype,
                                        sbx_conv_plan **out);
/* Local connections (unshared weights; Theano's applySparseFilter over the ws=0 patch matrix):
 *   kerns   a vector of channels * nkern * out_size * kernel_size weights, indexed by tap number - 1
 *           (kmap): weight ((c * nkern + n) * out_size + o) * kernel_size + l joins pixel tap l of
 *           position o in map c to output unit n * out_size + o
 *   bias    nkern * out_size (or NULL); output batch x (nkern * out_size) */
SBX_API sbx_status sbx_local_plan_create(const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype,
                                         sbx_conv_plan **out);
/* Max pooling over each window (the shape's kernel) per feature map; output batch x (channels *
 * out_size), feature maps contiguous. NaN in a window gives NaN. */
SBX_API sbx_status sbx_pool_plan_create(const sbx_conv_shape *shape, sbx_dtype dtype, sbx_conv_plan **out);
/* The original's max_pool(images, imgshp, maxpoolshp): windows ph x pw placed with the pool shape as
 * its step (dx, dy) = (ph, pw), valid mode: for a non-square pool the window moves pw rows down and ph
 * columns across, as the original does. imgshp is (h, w) or (nfeatures, h, w). */
SBX_API sbx_status sbx_pool_shape_aesara(int imgshp_len, const int64_t *imgshp, const int64_t *maxpoolshp,
                                         sbx_conv_shape *out);
SBX_API void sbx_conv_plan_free(sbx_conv_plan *plan);

/* --- The planner: how a plan chooses its path, and wisdom -------------------------------------
 * The create functions above plan by rules (SBX_PLAN_ESTIMATE). The _flags forms take
 *   SBX_PLAN_ESTIMATE  the rules: the same choice on every machine;
 *   SBX_PLAN_MEASURE   time every candidate of the plan (the forward pass on `batch` images of
 *                      random values, each candidate run after a warm-up; the median of several
 *                      runs) and keep the fastest. The same flags, shape, kernel count, dtype and
 *                      batch found in the wisdom take the recorded choice without timing.
 * What is chosen is the forward pass's path; the backward passes keep their rules.
 *   convolution: SBX_ALGO_DIRECT (the direct kernel, for output rows of half a 64-byte vector or
 *                more; in full mode, or with a stride along the last axis, over a rearranged copy of
 *                the images: zero-padded by kernel - 1, the last axis split into stride phases; NaN
 *                from an infinite image pixel may then also reach outputs beside those whose windows
 *                hold it), SBX_ALGO_GATHER (the taps read through
 *                the gather table: for a batch of a 64-byte vector of images or more, by the register
 *                block of the local connections over the transposed images, else patches gathered a
 *                tile at a time times the kernels by CBLAS), SBX_ALGO_CSR and SBX_ALGO_CSC (the
 *                original's path: the patch matrix M of sbx_conv_indices, values one, held by the
 *                plan in that format, applied to the images by the structured dot of sparse.h,
 *                images . M^T = (M . images^T)^T, then kernels times each image's patches by CBLAS).
 *                The rules take DIRECT where it applies, else GATHER.
 *   local connections and pooling: one path each today (SBX_ALGO_LOCAL, SBX_ALGO_POOL): MEASURE
 *                times it (so that wisdom records it) and keeps it.
 * Every path gives the same results within float rounding; a given path gives the same bits at any
 * thread count. MEASURE costs the candidates' runs and their memory (CSR and CSC hold the patch
 * matrix, out_size * channels * kernel_size entries, and patches for a block of images). */
typedef enum sbx_plan_flags {
    SBX_PLAN_ESTIMATE = 0,
    SBX_PLAN_MEASURE = 1
} sbx_plan_flags;

typedef enum sbx_algo {
    SBX_ALGO_DIRECT = 0,
    SBX_ALGO_GATHER = 1,
    SBX_ALGO_CSR = 2,
    SBX_ALGO_CSC = 3,
    SBX_ALGO_LOCAL = 4,
    SBX_ALGO_POOL = 5
} sbx_algo;
#define SBX_ALGO_COUNT 6

/* "direct", "gather", "csr", "csc", "local", "pool"; "invalid" otherwise. */
SBX_API const char *sbx_algo_name(sbx_algo algo);
SBX_API sbx_status sbx_algo_parse(const char *name, sbx_algo *out);

/* As the create functions above, with flags (SBX_PLAN_ESTIMATE or SBX_PLAN_MEASURE) and the batch
 * MEASURE times (1 .. 2^20; with ESTIMATE it is checked and otherwise unused). */
SBX_API sbx_status sbx_conv_plan_create_flags(const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype,
                                              unsigned flags, int64_t batch, sbx_conv_plan **out);
SBX_API sbx_status sbx_local_plan_create_flags(const sbx_conv_shape *shape, int64_t nkern, sbx_dtype dtype,
                                               unsigned flags, int64_t batch, sbx_conv_plan **out);
SBX_API sbx_status sbx_pool_plan_create_flags(const sbx_conv_shape *shape, sbx_dtype dtype, unsigned flags,
                                              int64_t batch, sbx_conv_plan **out);

/* What a plan runs and how it was chosen. */
typedef struct sbx_plan_info {
    sbx_algo algo;                    /* the forward pass's path */
    unsigned flags;                   /* as created */
    int64_t batch;                    /* as created */
    int from_wisdom;                  /* 1: MEASURE found the choice in the wisdom (nothing was timed) */
    int ncandidates;                  /* the candidates, in the order tried */
    sbx_algo candidates[SBX_ALGO_COUNT];
    double seconds[SBX_ALGO_COUNT];   /* each candidate's median time (MEASURE; from the wisdom when
                                         from_wisdom; 0 with ESTIMATE) */
} sbx_plan_info;
SBX_API sbx_status sbx_conv_plan_info(const sbx_conv_plan *plan, sbx_plan_info *out);

/* Wisdom, as FFTW's: a process-wide store (thread-safe) of measured choices, one per key (kind,
 * shape, nkern, dtype, batch, flags), filled by MEASURE plans. export writes it to a text file
 * (atomically: a temporary file in the same folder, renamed); import adds a file's entries (an entry
 * with a key already held replaces it); forget empties the store. The thread count is not part of
 * the key: a choice measured at one count is replayed at any other. An entry naming a path the plan
 * cannot take (the direct kernel where its conditions fail) is not used: the plan measures. A bad file leaves the store as it
 * was: SBX_ERR_IO when it cannot be read, SBX_ERR_FORMAT (a bad version line, a truncated or
 * malformed entry, an unknown kind, dtype, mode or path) or SBX_ERR_ARG (a field out of its range:
 * a shape sbx_conv_shape_make refuses, a negative or non-finite time), the message naming the line
 * and the field. The format (one entry a line, fields separated by single spaces):
 *   sparsebox-wisdom 1
 *   KIND DTYPE NDIM CHANNELS IN KERNEL STRIDE MODE NKERN BATCH FLAGS ALGO N NAME=SECONDS...
 * KIND conv|local|pool; DTYPE float32|float64; IN, KERNEL, STRIDE comma-separated lists of NDIM
 * extents; MODE valid|full; ALGO the choice; N the candidates timed, then each as name=seconds
 * (%.9g). Lines starting with '#' are comments. */
SBX_API sbx_status sbx_wisdom_export(const char *path);
SBX_API sbx_status sbx_wisdom_import(const char *path);
SBX_API void sbx_wisdom_forget(void);
/* The number of entries held. */
SBX_API int64_t sbx_wisdom_count(void);

SBX_API sbx_status sbx_conv_forward(const sbx_conv_plan *plan, const sbx_array *images, const sbx_array *kerns,
                                    const sbx_array *bias, sbx_array **out);
/* Gradients of sum(output * grad_out) with respect to images, kerns and bias. */
SBX_API sbx_status sbx_conv_backward(const sbx_conv_plan *plan, const sbx_array *images, const sbx_array *kerns,
                                     const sbx_array *grad_out, sbx_array **grad_images, sbx_array **grad_kerns,
                                     sbx_array **grad_bias);
SBX_API sbx_status sbx_local_forward(const sbx_conv_plan *plan, const sbx_array *images, const sbx_array *kerns,
                                     const sbx_array *bias, sbx_array **out);
SBX_API sbx_status sbx_local_backward(const sbx_conv_plan *plan, const sbx_array *images, const sbx_array *kerns,
                                      const sbx_array *grad_out, sbx_array **grad_images, sbx_array **grad_kerns,
                                      sbx_array **grad_bias);
SBX_API sbx_status sbx_pool_forward(const sbx_conv_plan *plan, const sbx_array *images, sbx_array **out);
/* Every input equal to its window's maximum receives the window's output gradient (ties all receive
 * it, as the original's gradient of max), summed over overlapping windows. */
SBX_API sbx_status sbx_pool_backward(const sbx_conv_plan *plan, const sbx_array *images, const sbx_array *grad_out,
                                     sbx_array **grad_images);
/* For training: the forward pass also returns, per window, which taps reach its maximum, so that the
 * backward pass is a scatter instead of a second search. mask: a new array shaped like the output, of
 * the narrowest unsigned type with a bit per tap (uint8 up to 8 taps, uint16 up to 16, uint32 up to
 * 32, uint64 up to 64: a 2x2 window's mask is a byte), bit l of an element set when tap l (kernel
 * raster order) equals the window's maximum (ties all set; none for a NaN maximum). Windows of at most
 * 64 taps (SBX_ERR_UNSUPPORTED otherwise).
 * sbx_pool_backward_mask gives exactly sbx_pool_backward's gradient for the same images. */
SBX_API sbx_status sbx_pool_forward_mask(const sbx_conv_plan *plan, const sbx_array *images, sbx_array **out,
                                         sbx_array **mask);
SBX_API sbx_status sbx_pool_backward_mask(const sbx_conv_plan *plan, const sbx_array *mask, const sbx_array *grad_out,
                                          sbx_array **grad_images);

#ifdef __cplusplus
}
#endif

#endif
