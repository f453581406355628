/* The demo's pictures, drawn on a canvas (png.h) and written as PNG files: the first layer's filters
 * as a grid, a test image with its feature maps after each convolution, and the confusion matrix with
 * the class names. Each returns 0, or -1 with a message in err. */
#ifndef DEMO_FIGURES_H
#define DEMO_FIGURES_H

#include <stddef.h>
#include <stdint.h>

/* nkern filters of kh x kw taps (row-major, one after another): red positive, blue negative, each
 * filter scaled to its own largest magnitude. */
int figure_filters(const char *path, const char *title, const float *kerns, int nkern, int kh, int kw, char *err,
                   size_t errsize);

/* A layer's feature maps: nmaps maps of h x w values, one after another. */
typedef struct figure_layer {
    const char *title;
    const float *maps;
    int nmaps, h, w;
} figure_layer;
/* The side x side image (0 black .. 255 white) under its caption, then each layer's maps in rows of 8
 * under its title, black at 0 and white at the layer's largest value. */
int figure_maps(const char *path, const uint8_t *image, int side, const char *caption, const figure_layer *layers,
                int nlayers, char *err, size_t errsize);

/* counts[t * classes + p]: images of true class t predicted as p. Rows are the true classes, columns
 * the predicted ones, each cell shaded by its share of its row and showing its count. */
int figure_confusion(const char *path, const char *title, const int64_t *counts, int classes,
                     const char *const *names, char *err, size_t errsize);

#endif
