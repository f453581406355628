/* The demo's pictures (see figures.h). */
#include "figures.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "font.h"
#include "png.h"

static const rgb WHITE = {255, 255, 255}, BLACK = {0, 0, 0}, GRAY = {200, 200, 200}, INK = {30, 30, 30};

/* -1 .. 1 to blue .. white .. red. */
static rgb diverging(double t) {
    t = t < -1 ? -1 : t > 1 ? 1 : t;
    uint8_t fade = (uint8_t)lround(255 * (1 - fabs(t)));
    return t >= 0 ? (rgb){255, fade, fade} : (rgb){fade, fade, 255};
}

/* 0 .. 1 to black .. white. */
static rgb gray(double t) {
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    uint8_t v = (uint8_t)lround(255 * t);
    return (rgb){v, v, v};
}

static int out_of_memory(const char *path, char *err, size_t errsize) {
    snprintf(err, errsize, "%s: out of memory for the picture", path);
    return -1;
}

static int finish(const char *path, canvas *c, char *err, size_t errsize) {
    int rc = png_write(path, c, err, errsize);
    canvas_free(c);
    return rc;
}

int figure_filters(const char *path, const char *title, const float *kerns, int nkern, int kh, int kw, char *err,
                   size_t errsize) {
    const int cell = 12, gap = 8, margin = 10, per_row = nkern < 8 ? nkern : 8;
    const int rows = (nkern + per_row - 1) / per_row, fw = kw * cell, fh = kh * cell;
    const int top = margin + 2 * FONT_H + 8;
    int width = 2 * margin + per_row * fw + (per_row - 1) * gap;
    int tw = canvas_text_width(title, 2) + 2 * margin;
    if (tw > width) width = tw;
    const int height = top + rows * (fh + gap) - gap + margin;
    canvas c;
    if (canvas_create(&c, width, height, WHITE) != 0) return out_of_memory(path, err, errsize);
    canvas_text(&c, margin, margin, title, 2, INK, 0);
    for (int k = 0; k < nkern; k++) {
        const float *f = kerns + (size_t)k * (size_t)(kh * kw);
        double big = 0;
        for (int i = 0; i < kh * kw; i++) big = fmax(big, fabs(f[i]));
        const int x0 = margin + (k % per_row) * (fw + gap), y0 = top + (k / per_row) * (fh + gap);
        canvas_rect(&c, x0 - 1, y0 - 1, fw + 2, fh + 2, GRAY);
        for (int y = 0; y < kh; y++)
            for (int x = 0; x < kw; x++)
                canvas_rect(&c, x0 + x * cell, y0 + y * cell, cell, cell, diverging(big > 0 ? f[y * kw + x] / big : 0));
    }
    return finish(path, &c, err, errsize);
}

int figure_maps(const char *path, const uint8_t *image, int side, const char *caption, const figure_layer *layers,
                int nlayers, char *err, size_t errsize) {
    const int margin = 10, gap = 6, tile = 72, per_row = 8, title_h = 2 * FONT_H + 8;
    int width = 2 * margin + per_row * tile + (per_row - 1) * gap;
    const int scale = (4 * side <= width - 2 * margin) ? 4 : 1;
    int height = margin + title_h + side * scale + gap + margin;
    for (int l = 0; l < nlayers; l++) {
        int rows = (layers[l].nmaps + per_row - 1) / per_row;
        height += title_h + rows * (tile + gap);
    }
    int tw = canvas_text_width(caption, 2) + 2 * margin;
    if (tw > width) width = tw;
    canvas c;
    if (canvas_create(&c, width, height, WHITE) != 0) return out_of_memory(path, err, errsize);
    int y = margin;
    canvas_text(&c, margin, y, caption, 2, INK, 0);
    y += title_h;
    for (int j = 0; j < side; j++)
        for (int i = 0; i < side; i++)
            canvas_rect(&c, margin + i * scale, y + j * scale, scale, scale, gray(image[j * side + i] / 255.0));
    y += side * scale + gap + gap;
    for (int l = 0; l < nlayers; l++) {
        const figure_layer *L = &layers[l];
        canvas_text(&c, margin, y, L->title, 2, INK, 0);
        y += title_h;
        double big = 0;
        for (int i = 0; i < L->nmaps * L->h * L->w; i++) big = fmax(big, L->maps[i]);
        /* each map pixel an integer number of canvas pixels, centred in its tile */
        const int px = tile / (L->h > L->w ? L->h : L->w) > 0 ? tile / (L->h > L->w ? L->h : L->w) : 1;
        for (int m = 0; m < L->nmaps; m++) {
            const int x0 = margin + (m % per_row) * (tile + gap) + (tile - px * L->w) / 2;
            const int y0 = y + (m / per_row) * (tile + gap) + (tile - px * L->h) / 2;
            const float *map = L->maps + (size_t)m * (size_t)(L->h * L->w);
            canvas_rect(&c, x0 - 1, y0 - 1, px * L->w + 2, px * L->h + 2, GRAY);
            for (int j = 0; j < L->h; j++)
                for (int i = 0; i < L->w; i++)
                    canvas_rect(&c, x0 + i * px, y0 + j * px, px, px, gray(big > 0 ? map[j * L->w + i] / big : 0));
        }
        y += (L->nmaps + per_row - 1) / per_row * (tile + gap);
    }
    return finish(path, &c, err, errsize);
}

int figure_confusion(const char *path, const char *title, const int64_t *counts, int classes,
                     const char *const *names, char *err, size_t errsize) {
    const int margin = 12, cell = 56, scale = 2, line = FONT_H * scale;
    int label_w = 0;
    for (int k = 0; k < classes; k++) {
        int w = canvas_text_width(names[k], scale);
        if (w > label_w) label_w = w;
    }
    const char *ylabel = "true class", *xlabel = "predicted class";
    /* left: the axis name (vertical), the row names; top: the title, the axis name, the column names */
    const int gx = margin + line + 10 + label_w + 10;
    const int gy = margin + line + 14 + line + 10 + label_w + 10;
    int width = gx + classes * cell + margin;
    int tw = canvas_text_width(title, scale) + 2 * margin;
    if (tw > width) width = tw;
    const int height = gy + classes * cell + margin;
    canvas c;
    if (canvas_create(&c, width, height, WHITE) != 0) return out_of_memory(path, err, errsize);
    canvas_text(&c, margin, margin, title, scale, INK, 0);
    canvas_text(&c, gx + (classes * cell - canvas_text_width(xlabel, scale)) / 2, margin + line + 14, xlabel, scale,
                INK, 0);
    canvas_text(&c, margin, gy + (classes * cell + canvas_text_width(ylabel, scale)) / 2, ylabel, scale, INK, 1);
    for (int k = 0; k < classes; k++) {
        /* row names right-aligned against the grid; column names reading upwards above their column */
        canvas_text(&c, gx - 10 - canvas_text_width(names[k], scale), gy + k * cell + (cell - line) / 2, names[k],
                    scale, INK, 0);
        canvas_text(&c, gx + k * cell + (cell - line) / 2, gy - 10, names[k], scale, INK, 1);
    }
    for (int t = 0; t < classes; t++) {
        int64_t row = 0;
        for (int p = 0; p < classes; p++) row += counts[t * classes + p];
        for (int p = 0; p < classes; p++) {
            const int64_t n = counts[t * classes + p];
            const double share = row > 0 ? (double)n / (double)row : 0;
            /* white to a deep blue, with a square root so that small shares still show */
            const double s = sqrt(share);
            const rgb shade = {(uint8_t)lround(255 - 225 * s), (uint8_t)lround(255 - 175 * s), (uint8_t)lround(255 - 95 * s)};
            const int x0 = gx + p * cell, y0 = gy + t * cell;
            canvas_rect(&c, x0, y0, cell, cell, GRAY);
            canvas_rect(&c, x0 + 1, y0 + 1, cell - 2, cell - 2, shade);
            char num[32];
            snprintf(num, sizeof num, "%lld", (long long)n);
            const int ns = canvas_text_width(num, scale) <= cell - 6 ? scale : 1;
            canvas_text(&c, x0 + (cell - canvas_text_width(num, ns)) / 2, y0 + (cell - FONT_H * ns) / 2, num, ns,
                        s > 0.6 ? WHITE : BLACK, 0);
        }
    }
    return finish(path, &c, err, errsize);
}
