/* Argument checks shared by the layer executions, and the typed kernels they dispatch to. */
#ifndef SBX_CONV_LAYERS_H
#define SBX_CONV_LAYERS_H

#include "conv/internal.h"

/* plan is non-NULL and of the kind. */
sbx_status sbx__layer_plan(const sbx_conv_plan *p, sbx__plan_kind kind);
/* a is non-NULL, of the plan's dtype, and rows x cols (rows < 0: any number, returned in *batch);
 * cols < 0 asks for a vector of -cols entries. */
sbx_status sbx__layer_array(const sbx_conv_plan *p, const sbx_array *a, const char *name, int64_t rows, int64_t cols,
                            int64_t *batch);

#endif
