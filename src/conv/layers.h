/* Argument checks shared by the layer executions, the executions into arrays the caller made, and
 * the mask dtype of pooling. */
#ifndef SBX_CONV_LAYERS_H
#define SBX_CONV_LAYERS_H

#include "conv/internal.h"

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

/* The dtype of a pooling mask for windows of taps taps (<= 64): the narrowest unsigned integer with a
 * bit per tap. */
sbx_dtype sbx__pool_mask_dtype(int64_t taps);

#endif
