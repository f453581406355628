/* The list of the library's op classes, for testers and bindings. */
#include "op/internal.h"

static const sbx_op_class *const all[] = {
    &sbx_op_convolve, &sbx_op_conv_backward, &sbx_op_local_connections, &sbx_op_local_backward, &sbx_op_max_pool,
    &sbx_op_max_pool_grad, &sbx_op_convolution_indices, &sbx_op_binomial, &sbx_op_multinomial, &sbx_op_poisson,
    &sbx_op_structured_dot, &sbx_op_sampled_dot, &sbx_op_eliminate_zeros, &sbx_op_dense_from_sparse,
    &sbx_op_sparse_from_dense, &sbx_op_sparse_like, &sbx_op_transpose, &sbx_op_dot, &sbx_op_add, &sbx_op_scale,
    &sbx_op_mul, &sbx_op_tanh, &sbx_op_relu, &sbx_op_relu_grad, &sbx_op_reshape, &sbx_op_sum, &sbx_op_mean,
    &sbx_op_sum_to, &sbx_op_broadcast_like, &sbx_op_zeros_like, &sbx_op_softmax_cross_entropy,
    &sbx_op_softmax_cross_entropy_grad, &sbx_op_sgd_step, &sbx_op_adam_step, NULL};

const sbx_op_class *const *sbx_op_classes(int *count) {
    if (count) *count = (int)(sizeof all / sizeof all[0]) - 1;
    return all;
}
