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
    /* Convolutions in valid mode with stride 1 along the last axis and output rows of half a 64-byte
     * vector or more run a direct kernel: output row q reads, through tap j (feature map c, kernel
     * tap l), the contiguous run that starts at base[q] + taps[j], with taps[j] = c * (pixels per map)
     * + delta[l] (width entries). */
    int64_t *taps;
    /* Convolutions with stride 1 everywhere and 2 or more feature maps, image rows of a vector or
     * more, and no maps_lanes: the image gradient is itself a valid-mode convolution (of the output
     * gradient, padded by kernel - 1 in valid mode, with the kernels flipped and their roles swapped),
     * run by the direct kernel from this plan (no gather table). NULL otherwise. */
    struct sbx_conv_plan *adjoint;
    /* 1 for valid-mode convolutions whose image gradient is summed with the feature maps in the
     * vector lanes (maps_lanes in adjoint_impl.h; plan.c says when), else 0. */
    int maps_lanes;
};

/* The most a thread's buffer holds in the kernels that keep one (kgrad_lanes, maps_lanes): about its
 * L2 cache. */
#define SBX__LANES_BUFFER ((int64_t)1 << 20)

#endif
