/* A small bitmap font for the pictures' labels: printable ASCII in cells of FONT_W x FONT_H pixels
 * (capitals and digits on rows 0-6, descenders on row 7). */
#ifndef DEMO_FONT_H
#define DEMO_FONT_H

#define FONT_W 5
#define FONT_H 8

/* 1 when pixel (x, y) of c's glyph is ink (0 <= x < FONT_W, 0 <= y < FONT_H); a character outside
 * printable ASCII is drawn as '?'. */
int font_pixel(char c, int x, int y);

#endif
