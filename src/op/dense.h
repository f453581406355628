/* What the dense op classes (dense_*.c, optim.c) share, written in dense_common.c: the checks
 * make_node makes and their messages, numpy broadcasting of static and of actual shapes, the thread
 * count of a loop, a scratch buffer kept as a node's state, and building gradients. */
#ifndef SBX_OP_DENSE_H
#define SBX_OP_DENSE_H

#include "op/internal.h"

/* The property functions of SumTo and BroadcastLike (sbx_broadcast_props). */
int sbx__dense_broadcast_equal(const void *a, const void *b);
uint64_t sbx__dense_broadcast_hash(const void *p);
int sbx__dense_broadcast_str(const void *p, char *buf, size_t size);
/* SBX_ERR_ARG unless the op has `want` inputs. */
sbx_status sbx__dense_arity(const sbx_op *op, int nin, int want);
/* Input i a dense float32 or float64 array (of ndim dimensions unless ndim < 0). */
sbx_status sbx__dense_float(const sbx_op *op, const sbx_type *t, int i, const char *name, int ndim);
/* Input i of input j's dtype. */
sbx_status sbx__dense_same_dtype(const sbx_op *op, const sbx_type *in, int i, const char *name, int j,
                                 const char *jname);
/* numpy broadcasting, shapes aligned at the right and a missing extent taken as 1. oneway 0: *out is
 * the shape a and b broadcast to together (an unknown extent is accepted where it could match, and
 * known in the result when the other extent is known and not 1). oneway 1: a must broadcast to b
 * (rank at most b's, each extent 1 or b's) and *out is b's shape, made known where a says what it
 * must be. *out takes a's dtype. Errors name input ia (a) when oneway, else ib (b). */
sbx_status sbx__dense_broadcast(const sbx_op *op, const sbx_type *a, int ia, const char *na, const sbx_type *b, int ib,
                                const char *nb, int oneway, sbx_type *out);
/* 1 when the broadcast of a and b has a's shape for certain (so a's gradient needs no SumTo): a's rank
 * at least b's, and along each axis a's extent known and not 1, or b's extent known as 1 (or missing),
 * or both known and equal. */
int sbx__dense_covers(const sbx_type *a, const sbx_type *b);
/* perform's guard: every input a dense value, the output storage there. The runtime has checked the
 * values against the node's types already; this keeps a caller that has not from crashing. */
sbx_status sbx__dense_values(const sbx_op *op, int nin, const sbx_value *in, int nout, sbx_value *out);
/* Threads for a loop of `tasks` tasks, `work` element operations in all: 1 below the threshold,
 * never more than the tasks. */
int sbx__dense_threads(int64_t work, int64_t tasks);
/* *p: a buffer of at least `bytes`, kept in the node's state (*ctx->state) from call to call, so a
 * compiled function's later calls allocate nothing; state_free is sbx__dense_scratch_free. */
sbx_status sbx__dense_scratch(const sbx_op *op, sbx_perform_ctx *ctx, int64_t bytes, void **p);
void sbx__dense_scratch_free(void *state);
/* cls(props)(a[, b]) in g, for gradients. */
sbx_status sbx__dense_apply(sbx_graph *g, const sbx_op_class *cls, const void *props, sbx_var *a, sbx_var *b,
                            sbx_var **out);
/* v in as few digits as read back as v (%.15g, else %.17g), for props_str; buf holds 32 bytes. */
const char *sbx__dense_num(double v, char *buf);

#endif
