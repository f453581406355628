/* Argument checks shared by the layer executions, the executions into arrays the caller made, and
 * the mask dtype of pooling. */
#ifndef SBX_CONV_LAYERS_H
#define SBX_CONV_LAYERS_H

#include "conv/internal.h"

/* Data read per call beyond which it is taken to stream from memory every call rather than stay
 * cached between calls (the cliff lay between 8 and 12 MiB; L3 32 MiB [Zen 5]): pooling prefetches
 * such images ahead (pool_map), local connections ask for such weights just before their use
 * (lc_ahead). */
#define SBX__STREAM_BYTES (10 << 20)

/* plan is non-NULL and of the kind. */
sbx_status sbx__layer_plan(const sbx_conv_plan *p, sbx__plan_kind kind);
/* a is non-NULL, of the plan's dtype, and rows x cols (rows < 0: any number, returned in *batch);
 * cols < 0 asks for a vector of -cols entries. */
sbx_status sbx__layer_array(const sbx_conv_plan *p, const sbx_array *a, const char *name, int64_t rows, int64_t cols,
                            int64_t *batch);

/* As the public functions of conv.h, but writing into arrays the caller made (for the Op layer, whose
 * perform reuses its output storage), of the plan's dtype and exactly the output shapes the public
 * functions give (checked: SBX_ERR_ARG naming the array otherwise; an output must not share its data
 * with an input or another output); a NULL gradient array is not computed. Contents on entry do not
 * matter: what a kernel adds into is zeroed first. The mask of sbx__pool_forward_mask_into is of
 * sbx__pool_mask_dtype. */
sbx_status sbx__conv_forward_into(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                  const sbx_array *bias, sbx_array *out);
sbx_status sbx__conv_backward_into(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                   const sbx_array *grad_out, sbx_array *grad_images, sbx_array *grad_kerns,
                                   sbx_array *grad_bias);
sbx_status sbx__local_forward_into(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                   const sbx_array *bias, sbx_array *out);
sbx_status sbx__local_backward_into(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                    const sbx_array *grad_out, sbx_array *grad_images, sbx_array *grad_kerns,
                                    sbx_array *grad_bias);
sbx_status sbx__pool_forward_mask_into(const sbx_conv_plan *p, const sbx_array *images, sbx_array *out,
                                       sbx_array *mask);
sbx_status sbx__pool_backward_mask_into(const sbx_conv_plan *p, const sbx_array *mask, const sbx_array *grad_out,
                                        sbx_array *grad_images);

/* The same four for 32-byte vectors (layers_avx2.c, where the compiler targets x86-64-v3: CMake
 * defines SBX_LAYERS_AVX2); the four above call them on CPUs with AVX2 and FMA but not AVX-512. */
#ifdef SBX_LAYERS_AVX2
sbx_status sbx__conv_forward_into_avx2(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                       const sbx_array *bias, sbx_array *out);
sbx_status sbx__conv_backward_into_avx2(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                        const sbx_array *grad_out, sbx_array *grad_images, sbx_array *grad_kerns,
                                        sbx_array *grad_bias);
sbx_status sbx__local_forward_into_avx2(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                        const sbx_array *bias, sbx_array *out);
sbx_status sbx__local_backward_into_avx2(const sbx_conv_plan *p, const sbx_array *images, const sbx_array *kerns,
                                         const sbx_array *grad_out, sbx_array *grad_images, sbx_array *grad_kerns,
                                         sbx_array *grad_bias);
#endif
/* For tests and benchmarks: the vector width of the layer kernels that run, in bytes (64 or 32).
 * bytes 32 or 64 chooses that build from now on (32 only where it exists and the CPU has AVX2 and FMA;
 * otherwise the choice stays as it was), 0 goes back to the choice by the CPU, any other value asks
 * without changing. Not for use while another thread runs a layer. */
int sbx__layers_vector_bytes(int bytes);

/* The dtype of a pooling mask for windows of taps taps (<= 64): the narrowest unsigned integer with a
 * bit per tap. */
sbx_dtype sbx__pool_mask_dtype(int64_t taps);

#endif
