/* Pieces shared by the convolution sources. */
#ifndef SBX_CONV_INTERNAL_H
#define SBX_CONV_INTERNAL_H

#include <stdio.h>

#include "core/internal.h"
#include "sparsebox/conv.h"

/* A shape as sbx_conv_shape_make leaves it: every field in range and consistent. */
sbx_status sbx__conv_shape_check(const sbx_conv_shape *s);

/* A layer plan: its geometry, its gather table (out_size x width, width = channels * kernel_size; NULL
 * when copy_runs makes it unnecessary, see plan.c) and what it computes. Never written after
 * creation, so executing it is thread-safe. */
typedef enum { PLAN_CONV, PLAN_LOCAL, PLAN_POOL } sbx__plan_kind;
struct sbx_conv_plan {
    sbx__plan_kind kind;
    sbx_conv_shape shape;
    int64_t nkern;
    sbx_dtype dtype;
    int64_t width;
    int64_t *gather;
    /* The convolution works on tiles of output positions: `tile` positions (whole slices along the
     * first axis, at least kernel[0] of them, so that tiles two apart read disjoint input), `tiles`
     * of them. Fixed by the shape, so results do not depend on the thread count. */
    int64_t tile, tiles;
    /* In valid mode every tap is inside the image: window o of a map starts at base[o] (out_size
     * entries) and tap l is delta[l] (kernel_size entries) further on. NULL in full mode. */
    int64_t *base, *delta;
    /* 1 when the gathers copy runs (base + delta) rather than reading the gather table: measured
     * faster only once the table outgrows the caches (short runs cost more than indexed loads). */
    int copy_runs;
    /* Convolutions in valid mode with stride 1 along the last axis: taps[j] = c * (pixels per map) +
     * delta[l] for tap j (feature map c, kernel tap l; width entries). Where output rows are half a
     * 64-byte vector or more a direct kernel runs: output row q reads, through tap j, the contiguous
     * run that starts at base[q] + taps[j]. Narrower rows have taps for the kernel gradient with the
     * kernels in the lanes (kgrad_lanes) alone. */
    int64_t *taps;
    /* Convolutions with stride 1 everywhere and 2 or more feature maps, image rows of a vector or
     * more, and no maps_lanes: the image gradient is itself a valid-mode convolution (of the output
     * gradient, padded by kernel - 1 in valid mode, with the kernels flipped and their roles swapped),
     * run by the direct kernel from this plan (no gather table). NULL otherwise. */
    struct sbx_conv_plan *adjoint;
    /* Convolutions the direct kernel does not take as they are (full mode, or a stride along the last
     * axis) but would once rearranged (phased.c): the valid-mode plan, stride 1 along the last axis,
     * of the rearranged images, with p's kernels and widths (its taps address the rearranged maps).
     * NULL otherwise. */
    struct sbx_conv_plan *phased;
    /* Valid mode with stride 2 along the last axis and output rows of half a vector to just under one
     * (8-15 float32, 4-7 float64): the taps in the images as they are, c * (pixels per map) + delta[l]
     * (width entries), for the direct kernel's strided loads (a whole vector of the image, its even
     * lanes kept), which take the place of the rearranged images in the forward pass of the 64-byte
     * kernels (the 32-byte ones, layers.c, keep the rearranged images). NULL otherwise. */
    int64_t *taps2;
    /* 1 for valid-mode convolutions whose image gradient is summed with the feature maps in the
     * vector lanes (maps_lanes in adjoint_impl.h; plan.c says when), else 0. */
    int maps_lanes;
    /* The forward pass's path and how it was chosen (conv.h, the planner): the flags and batch the
     * plan was made with, whether MEASURE took the choice from the wisdom, and the candidates' times
     * (0 with ESTIMATE). */
    sbx_algo algo;
    unsigned flags;
    int64_t batch;
    int from_wisdom;
    int ncandidates;
    sbx_algo candidates[SBX_ALGO_COUNT];
    double seconds[SBX_ALGO_COUNT];
    /* SBX_ALGO_CSR / SBX_ALGO_CSC: the transposed patch matrix M^T (in_size x out_size * width, values
     * one), the same arrays as M in the named format, read as the other (CSR's M is CSC's M^T). NULL
     * on the other paths. */
    sbx_sparse *patches;
};

/* base, delta (valid mode) and, with taps set, taps of p, from p->shape (see above). */
sbx_status sbx__direct_tables(sbx_conv_plan *p, int taps);
/* taps[j] = c * (pixels per map) + delta[l] for tap j = (c, l) (width entries; delta already made). */
void sbx__direct_taps(const sbx_conv_plan *p, int64_t *taps);
/* p->phased for a convolution plan p (phased.c), and the rearranged images of batch images x into y
 * (batch x p->phased->shape.in_size elements) on nt threads, or of one image, on the calling thread. */
sbx_status sbx__phased_create(sbx_conv_plan *p);
void sbx__phased_images(const sbx_conv_plan *p, int64_t batch, const void *x, void *y, int nt);
void sbx__phased_image(const sbx_conv_plan *p, const void *x, void *y);

/* The wisdom's key of a plan (its kind, shape, nkern, dtype, batch and flags) and the lookup and
 * record of wisdom.c. lookup: 1 and the entry's choice and times into p when the key is held, else 0.
 * record: stores p's choice and times (replacing an entry of the same key). */
int sbx__wisdom_lookup(sbx_conv_plan *p);
sbx_status sbx__wisdom_record(const sbx_conv_plan *p);
/* The path's name table, for plan.c and wisdom.c. */
extern const char *const sbx__algo_names[SBX_ALGO_COUNT];

/* The most a thread's buffer holds in the kernels that keep one (kgrad_lanes, maps_lanes): about its
 * L2 cache. */
#define SBX__LANES_BUFFER ((int64_t)1 << 20)

#endif
