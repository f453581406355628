/* sparsebox Op layer: the original's Op contract (make_node, infer_shape, perform, grad,
 * connection_pattern) in C, and a small graph built on it: variables and apply nodes owned by a graph,
 * reverse-mode gradients, and compiled functions with inputs, outputs, shared variables and updates
 * (Aesara's function(inputs, outputs, updates)). docs/op.md explains the contract and how to add an
 * op class.
 *
 * Determinism. A compiled function carries a 64-bit seed. Random apply node number i of its graph
 * (nodes are numbered in creation order, so the number is the same for every compile of the same
 * graph) draws call k of the function (k = 0 after compiling or reseeding) from
 *     sbx_rng { seed = sbx_op_call_seed(seed, k), stream = i }
 * so a call's bytes depend on (seed, node, k) alone, never on the thread count; sbx_function_seed
 * sets the seed again and rewinds k to 0. Every other op computes each output element in an order
 * fixed by the shapes, so a function's results do not depend on the thread count either. */
#ifndef SPARSEBOX_OP_H
#define SPARSEBOX_OP_H

#include <stdio.h>

#include "sparsebox/conv.h"
#include "sparsebox/core.h"
#include "sparsebox/random.h"
#include "sparsebox/sparse.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SBX_OP_MAX_INPUTS 8
#define SBX_OP_MAX_OUTPUTS 4

/* --- Types and values ------------------------------------------------------------------------ */
typedef enum sbx_kind { SBX_KIND_DENSE = 0, SBX_KIND_SPARSE = 1 } sbx_kind;

/* A variable's type: dense or sparse, a dtype, a rank, a static shape in which an extent may be
 * unknown (-1), and for sparse a format. Sparse types have rank 2. Entries past ndim are 0. */
typedef struct sbx_type {
    sbx_kind kind;
    sbx_dtype dtype;
    sbx_format format; /* sparse only (SBX_CSR in a dense type) */
    int ndim;
    int64_t shape[SBX_MAX_NDIM];
} sbx_type;

/* A value: a dense array or a sparse matrix; at most one of the two is set (both NULL: empty). */
typedef struct sbx_value {
    sbx_array *dense;
    sbx_sparse *sparse;
} sbx_value;

/* Type constructors (shape may be NULL for all unknown). Bad arguments are caught where the type is
 * used (sbx_graph_input and make_node check types). */
SBX_API sbx_type sbx_type_dense(sbx_dtype dtype, int ndim, const int64_t *shape);
SBX_API sbx_type sbx_type_sparse(sbx_format format, sbx_dtype dtype, int64_t nrows, int64_t ncols);
/* SBX_ERR_ARG, naming `what`, unless t is well formed (kind, dtype, format, ndim in range, extents
 * >= -1, zero past ndim, sparse of rank 2). */
SBX_API sbx_status sbx_type_check(const sbx_type *t, const char *what);
/* 1 when a and b are the same type (unknown extents must be unknown in both). */
SBX_API int sbx_type_equal(const sbx_type *a, const sbx_type *b);
/* 1 when the value is of type t: kind, dtype, format and rank equal, every known extent equal. */
SBX_API int sbx_type_accepts(const sbx_type *t, const sbx_value *v);
/* The (fully known) type of a value; SBX_ERR_ARG for an empty or malformed one. */
SBX_API sbx_status sbx_type_of(const sbx_value *v, sbx_type *out);
/* Writes "float32[64,784]" or "csr float64[?,10]" (snprintf's rules); returns snprintf's count. */
SBX_API int sbx_type_str(const sbx_type *t, char *buf, size_t size);
/* Frees what v holds (made by the library) and leaves it empty. */
SBX_API void sbx_value_clear(sbx_value *v);

/* --- Output storage, for perform functions ----------------------------------------------------
 * The original's output_storage: *out may already hold a value from an earlier call. */
/* Makes *out hold a dense array of dtype and shape and sets *array to it: the array it holds is kept
 * when dtype and shape are exactly these (contents left as they are, zeroed when zero is set),
 * otherwise what it holds is freed and a new array made (zeroed when zero is set). */
SBX_API sbx_status sbx_output_dense(sbx_value *out, sbx_dtype dtype, int ndim, const int64_t *shape, int zero,
                                    sbx_array **array);
/* Stores m (taken over) as *out's value. When *out already holds a sparse matrix, that struct is kept
 * (its arrays freed and replaced by m's) so its pointer stays the same; otherwise what *out holds is
 * freed and m itself stored. */
SBX_API void sbx_output_sparse(sbx_value *out, sbx_sparse *m);

/* --- Ops --------------------------------------------------------------------------------------- */
typedef struct sbx_graph sbx_graph;
typedef struct sbx_var sbx_var;
typedef struct sbx_node sbx_node;
typedef struct sbx_op_class sbx_op_class;

/* An op: a class plus properties (a struct of class->props_size bytes; NULL when the size is 0). */
typedef struct sbx_op {
    const sbx_op_class *cls;
    const void *props;
} sbx_op;

/* What perform gets besides its inputs and outputs. */
typedef struct sbx_perform_ctx {
    void **state;   /* the node's own state (a plan), kept between calls; *state is NULL at first.
                       perform may set it; the class's state_free releases it */
    sbx_rng rng;    /* random ops draw from this (see the determinism rule above) */
    unsigned needed; /* bit j set: output j is used; perform may leave the others as they are */
} sbx_perform_ctx;

/* An op class: a const table of functions (Aesara's Op, XNNPACK's operator descriptor). Every entry
 * is set in the library's classes; a user's class needs name, make_node and perform, and may leave
 * infer_shape (then make_node on the values' types), grad (then every input undefined),
 * connection_pattern (then all connected), the props functions (then byte equality and hash) and
 * state_free NULL. docs/op.md has a worked example. Messages name the op, the input by position and
 * name, what was expected and what came. */
struct sbx_op_class {
    const char *name;
    size_t props_size;
    /* Equality and hash of two property structs (sbx_op_equal, sbx_op_hash). */
    int (*props_equal)(const void *a, const void *b);
    uint64_t (*props_hash)(const void *props);
    /* The properties in words, for sbx_graph_print ("shape=(1,28,28) kernel=(5,5) nkern=16"). */
    int (*props_str)(const void *props, char *buf, size_t size);
    /* make_node: checks the input types and gives the output types (their number in *nout, at most
     * SBX_OP_MAX_OUTPUTS). Refuses what would misbehave, with SBX_ERR_ARG. */
    sbx_status (*make_node)(const sbx_op *op, int nin, const sbx_type *in, int *nout, sbx_type *out);
    /* infer_shape: the output types with every extent known, from the input values, without
     * computing the outputs (it reads shapes, and the values of shape-like inputs). */
    sbx_status (*infer_shape)(const sbx_op *op, int nin, const sbx_value *in, int nout, sbx_type *out);
    /* perform: computes the outputs into the output storage out[0..nout-1] (see sbx_output_*). */
    sbx_status (*perform)(const sbx_op *op, sbx_perform_ctx *ctx, int nin, const sbx_value *in, int nout,
                          sbx_value *out);
    /* Releases a state perform made (NULL when the class keeps none). */
    void (*state_free)(void *state);
    /* grad: for each input i, answer[i] = SBX_GRAD_DEFINED with gin[i] a variable of g built from ops
     * (the gradient of the cost with respect to input i, given gout[j], the gradient with respect to
     * output j, or NULL where no gradient reaches output j), or SBX_GRAD_UNDEFINED with reason[i] a
     * static string, or SBX_GRAD_DISCONNECTED. */
    sbx_status (*grad)(sbx_graph *g, const sbx_node *node, sbx_var *const *gout, sbx_var **gin, sbx_grad *answer,
                       const char **reason);
    /* connection_pattern: pattern[i * nout + j] = 1 when output j depends on input i. */
    void (*connection_pattern)(const sbx_op *op, int nin, int nout, int *pattern);
};

/* Equal when the classes are the same and the properties compare equal; equal ops hash equal. */
SBX_API int sbx_op_equal(const sbx_op *a, const sbx_op *b);
SBX_API uint64_t sbx_op_hash(const sbx_op *op);
/* The key of call k's draws (the determinism rule above): the splitmix64 finaliser of
 * seed + 0x9E3779B97F4A7C15 * (k + 1). */
SBX_API uint64_t sbx_op_call_seed(uint64_t seed, int64_t k);

/* --- Graphs ------------------------------------------------------------------------------------
 * A graph owns its variables, apply nodes and the values of its shared variables and constants:
 * sbx_graph_free releases them all. Variables of one graph never feed nodes of another. */
SBX_API sbx_status sbx_graph_create(sbx_graph **out);
SBX_API void sbx_graph_free(sbx_graph *g);
/* A variable given a value at each call. name may be NULL. */
SBX_API sbx_status sbx_graph_input(sbx_graph *g, const char *name, const sbx_type *type, sbx_var **out);
/* A shared variable (a parameter): a value kept by the graph across calls and updated in place by
 * functions with updates. The graph takes over value's contents on success (value is left empty);
 * its type is the value's. A constant is the same without updates. */
SBX_API sbx_status sbx_graph_shared(sbx_graph *g, const char *name, sbx_value *value, sbx_var **out);
SBX_API sbx_status sbx_graph_constant(sbx_graph *g, const char *name, sbx_value *value, sbx_var **out);
/* A 0-d constant of dtype (float32, float64 or an integer type) holding v. */
SBX_API sbx_status sbx_graph_scalar(sbx_graph *g, sbx_dtype dtype, double v, sbx_var **out);
/* Applies op (class cls, properties props copied) to nin inputs: make_node types the outputs; *out
 * (may be NULL) is the first output (sbx_var_owner and sbx_node_output give the others). */
SBX_API sbx_status sbx_apply(sbx_graph *g, const sbx_op_class *cls, const void *props, int nin, sbx_var *const *in,
                             sbx_var **out);

SBX_API const sbx_type *sbx_var_type(const sbx_var *v);
SBX_API const char *sbx_var_name(const sbx_var *v); /* "" when unnamed */
SBX_API sbx_status sbx_var_set_name(sbx_var *v, const char *name);
SBX_API sbx_graph *sbx_var_graph(const sbx_var *v);
/* The node whose output v is (NULL for inputs, shared variables and constants), and which output. */
SBX_API sbx_node *sbx_var_owner(const sbx_var *v);
SBX_API int sbx_var_output_index(const sbx_var *v);
/* The value of a shared variable or constant (NULL for other variables). A shared value may be
 * changed in place between calls (same type); its arrays must stay the library's. */
SBX_API sbx_value *sbx_var_value(sbx_var *v);

SBX_API sbx_op sbx_node_op(const sbx_node *n);
SBX_API int sbx_node_id(const sbx_node *n); /* creation order in its graph, from 0 */
SBX_API int sbx_node_ninputs(const sbx_node *n);
SBX_API sbx_var *sbx_node_input(const sbx_node *n, int i);
SBX_API int sbx_node_noutputs(const sbx_node *n);
SBX_API sbx_var *sbx_node_output(const sbx_node *n, int j);

/* The contract called on one node, as the original's tests do. in: one value per input. */
SBX_API sbx_status sbx_node_infer_shape(const sbx_node *n, const sbx_value *in, sbx_type *out);
/* perform with output storage out[0..noutputs-1] (values made by the library, or empty), every
 * output needed, a state made and freed within the call, and random draws as call 0 of a function
 * with this seed. */
SBX_API sbx_status sbx_node_perform(const sbx_node *n, const sbx_value *in, sbx_value *out, uint64_t seed);
SBX_API sbx_status sbx_node_grad(sbx_graph *g, const sbx_node *n, sbx_var *const *gout, sbx_var **gin,
                                 sbx_grad *answer, const char **reason);
SBX_API void sbx_node_connection_pattern(const sbx_node *n, int *pattern);

/* --- Gradients ---------------------------------------------------------------------------------- */
#define SBX_GRAD_ALLOW_DISCONNECTED 1u
/* grads[i] = d cost / d wrt[i], built into g by reverse mode through each node's grad, summing where
 * a variable feeds several nodes. cost is a 0-d float variable. A gradient through an undefined
 * answer is an error naming the op and its reason. A wrt that cost does not depend on is an error,
 * unless flags has SBX_GRAD_ALLOW_DISCONNECTED, which gives it a zero gradient. */
SBX_API sbx_status sbx_gradient(sbx_graph *g, sbx_var *cost, int nwrt, sbx_var *const *wrt, unsigned flags,
                                sbx_var **grads);

/* --- Functions ---------------------------------------------------------------------------------- */
typedef struct sbx_function sbx_function;
/* shared <- value after each call, all updates at once (each value computed from the old ones). */
typedef struct sbx_update {
    sbx_var *shared;
    sbx_var *value;
} sbx_update;

/* Compiles g into a function of inputs (graph inputs, each listed once; every graph input that an
 * output or update needs must be listed) computing outputs and updates. Orders the nodes, drops
 * those nothing needs, and plans every intermediate value once: after the first call, a call
 * allocates nothing for dense values (a sparse value whose stored count changes may allocate).
 * The graph must outlive the function and must not gain nodes the function uses meanwhile. */
SBX_API sbx_status sbx_function_compile(sbx_graph *g, int nin, sbx_var *const *inputs, int nout,
                                        sbx_var *const *outputs, int nupd, const sbx_update *updates, uint64_t seed,
                                        sbx_function **out);
/* One call: in[i] is input i's value (checked against its type; borrowed); out[j] (out may be NULL)
 * receives output j, owned by the function and valid until the next call or sbx_function_free. */
SBX_API sbx_status sbx_function_call(sbx_function *f, const sbx_value *in, sbx_value *out);
/* Sets the seed and rewinds the call count to 0. */
SBX_API void sbx_function_seed(sbx_function *f, uint64_t seed);
SBX_API void sbx_function_free(sbx_function *f);

/* --- Optimisers: update expressions built from graph ops ---------------------------------------
 * For each parameter (a float shared variable) the gradient of cost is taken and fused step ops
 * (sbx_op_sgd_step, sbx_op_adam_step) applied. lr is a 0-d shared variable of the parameters' dtype
 * (change its value between calls for a schedule). The state (velocities; Adam's moments and step
 * count) is made as new shared variables, zero. updates receives *nupd entries: 2 per parameter for
 * SGD (parameter, velocity), 3 per parameter plus 1 (the step count) for Adam. */
SBX_API sbx_status sbx_sgd(sbx_graph *g, sbx_var *cost, int nparams, sbx_var *const *params, sbx_var *lr,
                           double momentum, sbx_update *updates, int *nupd);
SBX_API sbx_status sbx_adam(sbx_graph *g, sbx_var *cost, int nparams, sbx_var *const *params, sbx_var *lr,
                            double beta1, double beta2, double eps, sbx_update *updates, int *nupd);

/* --- Seeing a graph ------------------------------------------------------------------------------ */
/* One line per apply node needed by outputs (all nodes when nout is 0), in execution order, like the
 * original's debugprint: "%7 = Convolve{...}(%1 images, %5 w1) -> float32[?,9216]". */
SBX_API sbx_status sbx_graph_print(const sbx_graph *g, int nout, sbx_var *const *outputs, FILE *f);
/* The same nodes as a Graphviz digraph. */
SBX_API sbx_status sbx_graph_dot(const sbx_graph *g, int nout, sbx_var *const *outputs, FILE *f);

/* --- The library's op classes and their properties --------------------------------------------
 * Shapes follow conv.h (shape order); images are batch x in_size, as the layer plans take them. */

/* Layers. Convolve: (images, kerns[, bias]) -> output, kerns nkern x (channels * kernel_size).
 * ConvBackward: (images, kerns, grad_out) -> (grad_images, grad_kerns, grad_bias).
 * LocalConnections / LocalBackward: the same with unshared weights (kerns a vector, see
 * sbx_local_plan_create). */
typedef struct sbx_layer_props {
    sbx_conv_shape shape;
    int64_t nkern;
} sbx_layer_props;
SBX_API extern const sbx_op_class sbx_op_convolve, sbx_op_conv_backward;
SBX_API extern const sbx_op_class sbx_op_local_connections, sbx_op_local_backward;
/* MaxPool: (images) -> (output, mask) (sbx_pool_forward_mask); MaxPoolGrad: (mask, grad_out) ->
 * grad_images. */
typedef struct sbx_pool_props {
    sbx_conv_shape shape;
} sbx_pool_props;
SBX_API extern const sbx_op_class sbx_op_max_pool, sbx_op_max_pool_grad;
/* ConvolutionIndices: () -> (matrix[, kmap]): sbx_conv_indices as a sparse int64 value (kmap, an
 * int64 vector, too when weight_sharing is 0). */
typedef struct sbx_conv_indices_props {
    sbx_conv_shape shape;
    int weight_sharing;
    int64_t nkern;
    sbx_format format;
} sbx_conv_indices_props;
SBX_API extern const sbx_op_class sbx_op_convolution_indices;

/* Random. Binomial(format, dtype): (n, p, shape) -> sparse; n a 0-d integer, p a 0-d float, shape an
 * integer vector of 2. Multinomial: (n, p) -> sparse, n a 0-d or 1-d integer, p sparse (csr or csc).
 * Poisson: (x) -> sparse, x sparse. */
typedef struct sbx_binomial_props {
    sbx_format format;
    sbx_dtype dtype;
} sbx_binomial_props;
SBX_API extern const sbx_op_class sbx_op_binomial, sbx_op_multinomial, sbx_op_poisson;

/* Sparse. StructuredDot: (sparse a, dense b) -> dense op(a) b, or (dense a, sparse b) -> dense a op(b),
 * op the transpose with transpose_sparse. Its gradient with respect to the sparse operand is a sparse
 * value with that operand's structure (stored values only, as the original's structured_dot), made by
 * SampledDot: (x, y, pattern) -> sparse with pattern's format and structure, entry (r, c) holding
 * (X Y)[r, c] where X = x or x^T (transpose_x), Y = y or y^T (transpose_y); x, y dense 2-d. */
typedef struct sbx_structured_dot_props {
    int transpose_sparse;
} sbx_structured_dot_props;
typedef struct sbx_sampled_dot_props {
    int transpose_x, transpose_y;
} sbx_sampled_dot_props;
SBX_API extern const sbx_op_class sbx_op_structured_dot, sbx_op_sampled_dot;
/* EliminateZeros: (sparse) -> sparse. DenseFromSparse: (sparse) -> dense. SparseFromDense(format):
 * (2-d dense) -> sparse. SparseLike: (g dense or sparse, x sparse) -> sparse with x's structure and
 * g's values at those positions (zero where a sparse g has no entry). */
typedef struct sbx_format_props {
    sbx_format format;
} sbx_format_props;
SBX_API extern const sbx_op_class sbx_op_eliminate_zeros, sbx_op_dense_from_sparse, sbx_op_sparse_from_dense,
    sbx_op_sparse_like;

/* Dense, float32 or float64 unless said. Dot: (a, b) 2-d -> op(a) op(b). */
typedef struct sbx_dot_props {
    int transpose_a, transpose_b;
} sbx_dot_props;
/* Add: (a, b) -> alpha a + beta b, numpy broadcasting. Scale: (x) -> c x. */
typedef struct sbx_add_props {
    double alpha, beta;
} sbx_add_props;
typedef struct sbx_scale_props {
    double c;
} sbx_scale_props;
/* Transpose: (2-d x) -> x^T. */
SBX_API extern const sbx_op_class sbx_op_transpose;
/* Reshape: (x) -> x with shape[0..ndim-1]; one extent may be -1 (inferred). */
typedef struct sbx_reshape_props {
    int ndim;
    int64_t shape[SBX_MAX_NDIM];
} sbx_reshape_props;
/* Sum, Mean: (x) -> over every element (axis -1: a 0-d result) or along one axis (kept, extent 1). */
typedef struct sbx_reduce_props {
    int axis;
} sbx_reduce_props;
/* SumTo: (x, like) -> x summed over the axes along which like broadcasts to x, like's shape.
 * BroadcastLike: (x, like) -> x broadcast to like's shape. mean: divided by the number of elements
 * summed or repeated (the adjoint pair of Mean). */
typedef struct sbx_broadcast_props {
    int mean;
} sbx_broadcast_props;
/* Mul: (a, b) -> a * b elementwise, broadcasting. Tanh, Relu: (x). ReluGrad: (x, g) -> g where x > 0,
 * else 0. ZerosLike: (x) -> zeros of x's type (a sparse x: its structure, values 0).
 * SoftmaxCrossEntropy: (logits batch x classes, labels of batch integers in [0, classes)) -> 0-d mean
 * over the batch of -log softmax(logits)[label]; SoftmaxCrossEntropyGrad: (logits, labels, g 0-d) ->
 * g (softmax - onehot) / batch. */
SBX_API extern const sbx_op_class sbx_op_dot, sbx_op_add, sbx_op_scale, sbx_op_mul, sbx_op_tanh, sbx_op_relu,
    sbx_op_relu_grad, sbx_op_reshape, sbx_op_sum, sbx_op_mean, sbx_op_sum_to, sbx_op_broadcast_like,
    sbx_op_zeros_like, sbx_op_softmax_cross_entropy, sbx_op_softmax_cross_entropy_grad;

/* Optimiser steps (their grad is undefined). SgdStep(momentum): (w, velocity, g, lr) -> (w', velocity')
 * with velocity' = momentum velocity - lr g, w' = w + velocity'. AdamStep(beta1, beta2, eps): (w, m, v,
 * g, lr, t) -> (w', m', v'), t the 0-d count of steps taken before this one (Kingma & Ba, "Adam: a
 * method for stochastic optimization", ICLR 2015, Algorithm 1, with step t + 1). */
typedef struct sbx_sgd_props {
    double momentum;
} sbx_sgd_props;
typedef struct sbx_adam_props {
    double beta1, beta2, eps;
} sbx_adam_props;
SBX_API extern const sbx_op_class sbx_op_sgd_step, sbx_op_adam_step;

/* Every class above, for testers and bindings: *count set, the list NULL-terminated. */
SBX_API const sbx_op_class *const *sbx_op_classes(int *count);

#ifdef __cplusplus
}
#endif

#endif
