/* The demo's network as an Op graph:
 *   images [batch, 784] float32 -> Convolve(1->16, 5x5, valid, bias) -> Relu -> MaxPool 2x2
 *   -> Convolve(16->32, 5x5, valid, bias) (or LocalConnections of the same shape) -> Relu -> MaxPool 2x2
 *   -> [batch, 512] -> dropout -> Dot W [512, 10] -> Add bias [10] -> logits
 *   -> SoftmaxCrossEntropy with the int64 labels -> loss
 * Dropout multiplies the features by Scale(1/keep)(DenseFromSparse(Binomial{csr, float32}(1, keep,
 * [batch, 512]))), a mask drawn inside the graph at each call. A second path from the same features
 * skips the dropout: its logits are the ones evaluation uses. Adam's updates (sbx_adam) with the
 * learning rate in a 0-d shared variable. */
#ifndef DEMO_NET_H
#define DEMO_NET_H

#include <stddef.h>
#include <stdint.h>

#include <sparsebox.h>

#define NET_SIDE 28
#define NET_PIXELS (NET_SIDE * NET_SIDE)
#define NET_CLASSES 10
#define NET_KSIDE 5
#define NET_MAPS1 16
#define NET_MAPS2 32
#define NET_FEATURES 512 /* 32 maps of 4 x 4 after the second pooling */

enum { NET_K1, NET_B1, NET_K2, NET_B2, NET_W, NET_WB, NET_NPARAMS };

typedef struct net {
    int local;     /* the second layer is LocalConnections */
    int64_t batch; /* the training batch: the dropout mask's rows */
    double keep;   /* 1 - the dropout rate */
    sbx_conv_shape conv1, pool1, conv2, pool2;
    sbx_graph *g;
    sbx_var *images, *labels, *lr;
    sbx_var *params[NET_NPARAMS];
    sbx_var *maps1, *maps2;              /* the convolutions' outputs, after ReLU */
    sbx_var *logits;                     /* without dropout */
    sbx_var *train_logits, *loss;        /* with dropout (NULL unless training) */
    sbx_update updates[3 * NET_NPARAMS + 1];
    int nupd;
} net;

/* Builds the graph. training: also the dropout path, the loss and Adam's updates, for batches of
 * `batch` images with dropout rate 1 - keep (keep 1: no dropout). The weights are drawn by He
 * (Kaiming) uniform initialisation, U(-sqrt(6 / fan_in), sqrt(6 / fan_in)), from sbx_rng stream 1 of
 * seed (parameter i from position i); the biases start at zero. Returns 0, or -1 with a message in
 * err. */
int net_build(net *n, int local, int training, int64_t batch, double keep, uint64_t seed, char *err,
              size_t errsize);
void net_free(net *n);

/* The parameter's name (its shared variable's and its file's: DIR/NAME.npy). */
const char *net_param_name(const net *n, int i);
/* Writes every parameter to DIR/NAME.npy; reads them back, checking each file's dtype and shape.
 * Return 0, or -1 with a message in err. */
int net_save(const net *n, const char *dir, char *err, size_t errsize);
int net_load(net *n, const char *dir, char *err, size_t errsize);
/* The number of trained values. */
int64_t net_param_count(const net *n);
/* Sets the learning rate for the next calls. */
void net_set_lr(net *n, double lr);

#endif
