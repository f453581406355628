/* The canvas and the PNG files of png.h, through libpng's simplified API. */
#include "png.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "font.h"

int canvas_create(canvas *c, int width, int height, rgb fill) {
    c->width = width;
    c->height = height;
    c->pixels = malloc((size_t)width * (size_t)height * 3 + 1);
    if (!c->pixels) return -1;
    canvas_rect(c, 0, 0, width, height, fill);
    return 0;
}

void canvas_free(canvas *c) {
    free(c->pixels);
    c->pixels = NULL;
}

void canvas_rect(canvas *c, int x, int y, int w, int h, rgb color) {
    int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
    int x1 = x + w > c->width ? c->width : x + w, y1 = y + h > c->height ? c->height : y + h;
    for (int j = y0; j < y1; j++)
        for (int i = x0; i < x1; i++) {
            uint8_t *p = c->pixels + ((size_t)j * (size_t)c->width + (size_t)i) * 3;
            p[0] = color.r;
            p[1] = color.g;
            p[2] = color.b;
        }
}

int canvas_text_width(const char *text, int scale) {
    int n = (int)strlen(text);
    return n ? (n * (FONT_W + 1) - 1) * scale : 0;
}

void canvas_text(canvas *c, int x, int y, const char *text, int scale, rgb color, int vertical) {
    for (int k = 0; text[k]; k++)
        for (int gy = 0; gy < FONT_H; gy++)
            for (int gx = 0; gx < FONT_W; gx++) {
                if (!font_pixel(text[k], gx, gy)) continue;
                int along = (k * (FONT_W + 1) + gx) * scale, across = gy * scale;
                if (vertical) /* the glyph's x runs up the canvas, its y to the right */
                    canvas_rect(c, x + across, y - along - scale, scale, scale, color);
                else
                    canvas_rect(c, x + along, y + across, scale, scale, color);
            }
}

int png_write(const char *path, const canvas *c, char *err, size_t errsize) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)c->width;
    image.height = (png_uint_32)c->height;
    image.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&image, path, 0, c->pixels, 0, NULL)) {
        snprintf(err, errsize, "cannot write %s: %s", path, image.message);
        png_image_free(&image);
        return -1;
    }
    return 0;
}

int png_read_gray(const char *path, int width, int height, uint8_t **gray, char *err, size_t errsize) {
    *gray = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsize, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    fclose(f);
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&image, path)) {
        snprintf(err, errsize, "%s: not a readable PNG file (%s)", path, image.message);
        png_image_free(&image);
        return -1;
    }
    if (image.width != (png_uint_32)width || image.height != (png_uint_32)height) {
        snprintf(err, errsize, "%s is %u x %u pixels (width x height), not %d x %d", path, (unsigned)image.width,
                 (unsigned)image.height, width, height);
        png_image_free(&image);
        return -1;
    }
    image.format = PNG_FORMAT_GRAY;
    size_t size = PNG_IMAGE_SIZE(image);
    uint8_t *buf = calloc(size ? size : 1, 1); /* black under any transparency */
    if (!buf) {
        snprintf(err, errsize, "%s: out of memory for %u x %u pixels", path, (unsigned)image.width,
                 (unsigned)image.height);
        png_image_free(&image);
        return -1;
    }
    if (!png_image_finish_read(&image, NULL, buf, 0, NULL)) {
        snprintf(err, errsize, "%s: %s", path, image.message);
        free(buf);
        png_image_free(&image);
        return -1;
    }
    *gray = buf;
    return 0;
}
