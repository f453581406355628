/* The vector type of the layer kernels (SBX_VEC_BYTES, layers.c: 64 or 32 bytes) and an
 * in-register transpose of a square tile of them. Included first by layer_kernels.h, once per element
 * type; LANES_T stays defined for the kernels that follow (layer_kernels.h undefines it). */
typedef T NAME(vec) __attribute__((vector_size(SBX_VEC_BYTES)));
typedef TI NAME(ivec) __attribute__((vector_size(SBX_VEC_BYTES)));

#define LANES_T ((int64_t)(SBX_VEC_BYTES / sizeof(T)))
#define SWAP_A(h, i) (((i) & (h)) ? LANES_T + (i) - (h) : (i)) /* row r: its lanes i & h from row r + h */
#define SWAP_B(h, i) (((i) & (h)) ? LANES_T + (i) : (i) + (h)) /* row r + h: its lanes !(i & h) from row r */
#define TRANSPOSE_STAGE(h)                                                             \
    for (int r = 0; r < LANES_T; r++)                                                  \
        if (!(r & (h))) {                                                              \
            const NAME(vec) a = v[r], b = v[r + (h)];                                  \
            v[r] = __builtin_shufflevector(a, b, EACH_LANE(SWAP_A, h));                \
            v[r + (h)] = __builtin_shufflevector(a, b, EACH_LANE(SWAP_B, h));          \
        }

/* An L x L tile transposed in registers: lane i of v[r] to lane r of v[i]. */
__attribute__((always_inline)) static inline void NAME(transpose_tile)(NAME(vec) *v) {
    TRANSPOSE_STAGES(TRANSPOSE_STAGE)
}
#undef TRANSPOSE_STAGE
#undef SWAP_A
#undef SWAP_B
