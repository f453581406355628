/* Pictures: an RGB canvas with filled rectangles and text in the built-in bitmap font (font.h),
 * written as a PNG file, and PNG files read as 8-bit grayscale (for --classify). libpng does the
 * encoding. */
#ifndef DEMO_PNG_H
#define DEMO_PNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct rgb {
    uint8_t r, g, b;
} rgb;

typedef struct canvas {
    int width, height;
    uint8_t *pixels; /* width * height * 3, rows top to bottom */
} canvas;

/* A canvas filled with one colour; 0, or -1 when out of memory. */
int canvas_create(canvas *c, int width, int height, rgb fill);
void canvas_free(canvas *c);
/* A filled rectangle, clipped to the canvas. */
void canvas_rect(canvas *c, int x, int y, int w, int h, rgb color);
/* Text with its top left corner at (x, y), each font pixel drawn scale x scale. vertical: turned a
 * quarter turn anticlockwise, reading upwards from (x, y), which is then its bottom left corner. */
void canvas_text(canvas *c, int x, int y, const char *text, int scale, rgb color, int vertical);
/* The length of text drawn at scale, along its line (the height across it is FONT_H * scale). */
int canvas_text_width(const char *text, int scale);

/* Writes the canvas as an 8-bit RGB PNG. Returns 0, or -1 with a message in err. */
int png_write(const char *path, const canvas *c, char *err, size_t errsize);
/* Reads a PNG of width x height pixels, any colour type or depth, as 8-bit gray (colour converted to
 * its luminance, transparency composited on black) into *gray (malloc'd, the caller frees). Returns
 * 0, or -1 with a message in err: another size is an error naming the file and its size. */
int png_read_gray(const char *path, int width, int height, uint8_t **gray, char *err, size_t errsize);

#endif
