/* sparsebox: convolution, local connections and pooling as sparse-matrix operators, and
 * deterministic sparse random matrices. This umbrella header includes every module header. */
#ifndef SPARSEBOX_H
#define SPARSEBOX_H

#include "sparsebox/core.h"
#include "sparsebox/sparse.h"
#include "sparsebox/io.h"
#include "sparsebox/conv.h"
#include "sparsebox/random.h"
#include "sparsebox/op.h"

#endif
