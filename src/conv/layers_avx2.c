/* The convolution and local-connection kernels for 32-byte vectors and 16 registers: layers.c
 * compiled again, with -march=x86-64-v3 (CMakeLists.txt), its entry points named _avx2 (layers.h).
 * Built where the compiler targets x86-64-v3 (SBX_LAYERS_AVX2); elsewhere this file is empty. */
#ifdef SBX_LAYERS_AVX2
#define SBX_VEC_BYTES 32
#include "conv/layers.c"
#else
typedef int sbx__layers_avx2_absent; /* ISO C wants a declaration in every file */
#endif
