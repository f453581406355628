/* Pieces shared by the convolution sources. */
#ifndef SBX_CONV_INTERNAL_H
#define SBX_CONV_INTERNAL_H

#include <stdio.h>

#include "core/internal.h"
#include "sparsebox/conv.h"

/* A shape as sbx_conv_shape_make leaves it: every field in range and consistent. */
sbx_status sbx__conv_shape_check(const sbx_conv_shape *s);

#endif
