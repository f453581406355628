/* The Op layer's structures and the helpers its op classes share. */
#ifndef SBX_OP_INTERNAL_H
#define SBX_OP_INTERNAL_H

#include "core/internal.h"
#include "sparsebox/op.h"

typedef enum { VAR_INPUT, VAR_SHARED, VAR_CONSTANT, VAR_OUTPUT } sbx__var_role;

struct sbx_var {
    sbx_graph *graph;
    int id; /* creation order among the graph's variables */
    sbx__var_role role;
    sbx_type type;
    char *name;       /* NULL: unnamed */
    sbx_node *owner;  /* VAR_OUTPUT: the node, and which of its outputs */
    int index;
    sbx_value value;  /* VAR_SHARED, VAR_CONSTANT */
};

struct sbx_node {
    sbx_graph *graph;
    int id; /* creation order among the graph's nodes: also the stream of a random node */
    sbx_op op; /* op.props points into the node's own copy */
    int nin, nout;
    sbx_var *in[SBX_OP_MAX_INPUTS];
    sbx_var *out[SBX_OP_MAX_OUTPUTS];
};

struct sbx_graph {
    sbx_var **vars;
    int nvars, cap_vars;
    sbx_node **nodes;
    int nnodes, cap_nodes;
};

/* An error about input i (its name `name`) of op: "Convolve: input 1 (kerns): <message>". */
sbx_status sbx__op_error(const sbx_op *op, int i, const char *name, const char *fmt, ...) SBX_PRINTF(4, 5);
/* An error about the op itself: "Convolve: <message>". */
sbx_status sbx__op_fail(const sbx_op *op, sbx_status st, const char *fmt, ...) SBX_PRINTF(3, 4);

/* infer_shape for classes whose output types follow from the input types alone: make_node on the
 * values' own (fully known) types. */
sbx_status sbx__infer_from_types(const sbx_op *op, int nin, const sbx_value *in, int nout, sbx_type *out);
/* connection_pattern with every output depending on every input. */
void sbx__all_connected(const sbx_op *op, int nin, int nout, int *pattern);
/* The property functions of a class without properties: every op of it is the same op. */
int sbx__noprops_equal(const void *a, const void *b);
uint64_t sbx__noprops_hash(const void *props);
int sbx__noprops_str(const void *props, char *buf, size_t size);
/* The error just set said again with the op's name in front (status kept). */
sbx_status sbx__op_again(const sbx_op *op, sbx_status st);
/* Byte equality and a hash of the bytes (FNV-1a), for property structs without padding. */
int sbx__props_equal_bytes(const void *a, const void *b, size_t size);
uint64_t sbx__hash_bytes(const void *p, size_t size, uint64_t h);
/* Field-by-field equality, hash and words of a convolution shape (it has padding). */
int sbx__conv_shape_equal(const sbx_conv_shape *a, const sbx_conv_shape *b);
uint64_t sbx__conv_shape_hash(const sbx_conv_shape *s, uint64_t h);
int sbx__conv_shape_str(const sbx_conv_shape *s, char *buf, size_t size);

/* 1 for float32 and float64. */
int sbx__is_float(sbx_dtype dtype);
/* 1 for the integer dtypes (not bool). */
int sbx__is_integer(sbx_dtype dtype);
/* 1 when a and b have the same rank and the same extents, unknown ones included. */
int sbx__same_shape(const sbx_type *a, const sbx_type *b);

/* A copy of a type with every extent known from a value (no check). */
sbx_type sbx__type_of_dense(const sbx_array *a);

#endif
