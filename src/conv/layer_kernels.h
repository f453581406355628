/* The typed layer kernels, one concept a file, included by layers.c once per element type with T, TI
 * (the integer of T's width), NAME(x) (a suffixing macro), GEMM (cblas_sgemm or cblas_dgemm) and the
 * lane lists (LOW_LANES, HIGH_LANES, EVEN_LANES, EACH_LANE, TRANSPOSE_STAGES, PAIR_LANES, PAIR_BITS) defined;
 * undefined again at the end, ready for the next type. */
#include "conv/vector_impl.h"  /* the vector type, the in-register tile transpose */
#include "conv/gather_impl.h"  /* im2row and its adjoint; the gather + GEMM path */
#include "conv/direct_impl.h"  /* the direct convolution */
#include "conv/kgrad_impl.h"   /* the kernel and bias gradients */
#include "conv/adjoint_impl.h" /* the image gradient without gathering */
#if SBX_VEC_BYTES == 64          /* pooling runs from the 64-byte build only (layers.c) */
#include "conv/pool_impl.h"    /* max pooling */
#endif
#include "conv/local_impl.h"   /* local connections */

#undef LANES_T
#undef T
#undef TI
#undef NAME
#undef GEMM
#undef LOW_LANES
#undef HIGH_LANES
#undef EVEN_LANES
#undef EACH_LANE
#undef TRANSPOSE_STAGES
#undef PAIR_LANES
#undef PAIR_BITS
