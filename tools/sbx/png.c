/* PNG pictures for the layer subcommands: a PNG read as a batch of one image (its feature maps), and
 * feature maps written as one grayscale grid. The only file of the tool that uses libpng.
 *
 * libpng reports errors by longjmp. Each use is split in two: a body that does the libpng calls and
 * keeps all its state in a context struct owned by the caller, and a guard holding the setjmp that
 * modifies no local variable of its own, so nothing the body did is lost when libpng jumps back. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define MSG_SIZE 320
#define GRID_COLUMNS 8 /* maps per row of the grid */
#define MID_GRAY 128   /* a constant map */

int cli_is_png(const char *path) {
    size_t n = strlen(path);
    if (n <= 4) return 0;
    const char *e = path + n - 4;
    return e[0] == '.' && (e[1] == 'p' || e[1] == 'P') && (e[2] == 'n' || e[2] == 'N') && (e[3] == 'g' || e[3] == 'G');
}

/* What libpng said: the first error (the reader's own messages are set before png_error, so they win)
 * and the last warning, which often explains a terse error (libpng warns "Invalid color type/bit depth
 * combination in IHDR", then fails with "Invalid IHDR data"). */
typedef struct {
    char error[MSG_SIZE];
    char warning[MSG_SIZE];
} png_messages;

static void on_error(png_structp png, png_const_charp msg) {
    png_messages *m = png_get_error_ptr(png);
    if (m->error[0] == '\0') snprintf(m->error, sizeof m->error, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
    png_messages *m = png_get_error_ptr(png);
    snprintf(m->warning, sizeof m->warning, "%s", msg);
}

/* ---- Reading ---------------------------------------------------------------------------------- */

typedef struct {
    png_messages msg; /* libpng's error pointer */
    FILE *f;
    png_structp png;
    png_infop info;
    png_uint_32 width, height;
    int maps;       /* feature maps: 1 (gray) or 3 (R, G, B) */
    int stride;     /* samples per pixel as decoded (alpha, when present, is skipped) */
    int depth;      /* bits per sample as decoded: 8 or 16 */
    char kind[64];  /* e.g. "8-bit RGB with alpha", for messages */
    png_bytep raw;  /* the decoded rows, one after another */
    png_bytep *rows;
    int own;        /* msg.error is the tool's own sentence, not libpng's words */
} reader;

/* Stops the read with the tool's own message. */
static void reader_fail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void reader_fail(reader *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg.error, sizeof r->msg.error, fmt, ap);
    va_end(ap);
    r->own = 1;
    png_error(r->png, r->msg.error);
}

static void read_data(png_structp png, png_bytep data, size_t n) {
    reader *r = png_get_io_ptr(png);
    if (fread(data, 1, n, r->f) == n) return;
    if (ferror(r->f)) reader_fail(r, "cannot read it: %s", strerror(errno));
    reader_fail(r, "it is truncated: the file ends before the PNG does");
}

static const char *color_name(int type) {
    switch (type) {
    case PNG_COLOR_TYPE_GRAY: return "grayscale";
    case PNG_COLOR_TYPE_GRAY_ALPHA: return "grayscale with alpha";
    case PNG_COLOR_TYPE_RGB: return "RGB";
    case PNG_COLOR_TYPE_RGB_ALPHA: return "RGB with alpha";
    case PNG_COLOR_TYPE_PALETTE: return "palette";
    default: return "unknown colour type";
    }
}

/* The libpng calls of a read; the signature has been read and checked already. */
static void read_body(reader *r) {
    png_set_read_fn(r->png, r, read_data);
    png_set_sig_bytes(r->png, 8);
    png_set_user_limits(r->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX); /* a PNG's own limit, not libpng's 10^6 */
    png_read_info(r->png, r->info);
    int type = png_get_color_type(r->png, r->info), depth = png_get_bit_depth(r->png, r->info);
    r->width = png_get_image_width(r->png, r->info);
    r->height = png_get_image_height(r->png, r->info);
    snprintf(r->kind, sizeof r->kind, "%d-bit %s", depth, color_name(type));
    switch (type) {
    case PNG_COLOR_TYPE_GRAY:
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        r->maps = 1;
        if (depth < 8) png_set_expand_gray_1_2_4_to_8(r->png); /* 0..2^d-1 onto 0..255: the same v/max */
        break;
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA:
        r->maps = 3;
        break;
    case PNG_COLOR_TYPE_PALETTE:
        r->maps = 3;
        png_set_palette_to_rgb(r->png); /* 8-bit RGB, or RGBA when there is a tRNS chunk */
        break;
    default:
        reader_fail(r, "unsupported PNG colour type %d", type);
    }
    png_set_interlace_handling(r->png);
    png_read_update_info(r->png, r->info);
    r->stride = png_get_channels(r->png, r->info);
    r->depth = png_get_bit_depth(r->png, r->info);
    size_t rowbytes = png_get_rowbytes(r->png, r->info);
    if ((r->depth != 8 && r->depth != 16) || r->stride < r->maps ||
        rowbytes / r->width != (size_t)r->stride * (size_t)(r->depth / 8)) {
        reader_fail(r, "unsupported PNG: a %s image decodes to %d samples of %d bits", r->kind, r->stride, r->depth);
    }
    /* deflate packs at most 1032 bytes into one (zlib's technical notes, "maximum compression factor"),
     * so a header asking for more than 1032 times the file's size is damaged: refuse it before the
     * allocation, which it could make as large as 16 GiB from a file of a few bytes. */
    struct stat info;
    if (fstat(fileno(r->f), &info) == 0 && S_ISREG(info.st_mode) &&
        (double)r->height * (double)rowbytes > 1032.0 * (double)info.st_size + 1032.0) {
        reader_fail(r, "damaged: its header's %lu x %lu pixels need more data than a file of %lld bytes can hold",
                    (unsigned long)r->width, (unsigned long)r->height, (long long)info.st_size);
    }
    if (r->height > SIZE_MAX / rowbytes || !(r->raw = malloc((size_t)r->height * rowbytes)) ||
        !(r->rows = malloc((size_t)r->height * sizeof *r->rows))) {
        reader_fail(r, "out of memory for its %lu x %lu pixels", (unsigned long)r->width, (unsigned long)r->height);
    }
    for (png_uint_32 y = 0; y < r->height; y++) r->rows[y] = r->raw + (size_t)y * rowbytes;
    png_read_image(r->png, r->rows);
    png_read_end(r->png, NULL); /* the chunks after the image, up to IEND: a cut file fails here */
}

static int read_guarded(reader *r) {
    if (setjmp(png_jmpbuf(r->png))) return 0;
    read_body(r);
    return 1;
}

/* The image as a float32 array 1 x (maps*H*W), the maps one after another. */
static sbx_status to_array(const reader *r, sbx_array **out) {
    int64_t shape[2] = {1, 0};
    sbx_status st = sbx_mul_i64((int64_t)r->width, (int64_t)r->height, &shape[1]);
    if (st == SBX_OK) st = sbx_mul_i64(shape[1], r->maps, &shape[1]);
    sbx_array *a = NULL;
    if (st == SBX_OK) st = sbx_array_create(SBX_FLOAT32, 2, shape, &a);
    if (st != SBX_OK) return st;
    float *v = a->data;
    const double top = r->depth == 16 ? 65535.0 : 255.0;
    const size_t plane = (size_t)r->width * r->height;
    for (png_uint_32 y = 0; y < r->height; y++) {
        const png_byte *row = r->rows[y];
        for (png_uint_32 x = 0; x < r->width; x++)
            for (int c = 0; c < r->maps; c++) {
                size_t s = (size_t)x * r->stride + c;
                unsigned sample = r->depth == 16 ? (unsigned)row[2 * s] << 8 | row[2 * s + 1] : row[s];
                v[c * plane + (size_t)y * r->width + x] = (float)(sample / top);
            }
    }
    *out = a;
    return SBX_OK;
}

int cli_png_read(const char *sub, const char *flag, const char *path, int64_t chw[3], sbx_array **out) {
    reader r;
    memset(&r, 0, sizeof r);
    png_byte sig[8];
    if (!(r.f = fopen(path, "rb"))) {
        fprintf(stderr, "sbx: %s: %s '%s': cannot open it: %s\n", sub, flag, path, strerror(errno));
        return CLI_FAIL;
    }
    size_t got = fread(sig, 1, sizeof sig, r.f);
    int ok = 0;
    r.own = 1;
    if (ferror(r.f))
        snprintf(r.msg.error, sizeof r.msg.error, "cannot read it: %s", strerror(errno));
    else if (got == 0)
        snprintf(r.msg.error, sizeof r.msg.error, "it is not a PNG file: it is empty");
    else if (png_sig_cmp(sig, 0, got) != 0)
        snprintf(r.msg.error, sizeof r.msg.error, "it is not a PNG file: it does not begin with the PNG signature");
    else if (got < sizeof sig)
        snprintf(r.msg.error, sizeof r.msg.error, "it is truncated: the file ends inside the PNG signature");
    else if (!(r.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r.msg, on_error, on_warning)) ||
             !(r.info = png_create_info_struct(r.png)))
        snprintf(r.msg.error, sizeof r.msg.error, "out of memory");
    else {
        r.own = 0;
        ok = read_guarded(&r);
    }
    if (ok && to_array(&r, out) != SBX_OK) {
        snprintf(r.msg.error, sizeof r.msg.error, "%s", sbx_last_error());
        r.own = 1;
        ok = 0;
    }
    if (ok) {
        chw[0] = r.maps;
        chw[1] = r.height;
        chw[2] = r.width;
    } else if (r.own) {
        fprintf(stderr, "sbx: %s: %s '%s': %s\n", sub, flag, path, r.msg.error);
    } else { /* libpng's words, and its last warning, which often says more */
        fprintf(stderr, "sbx: %s: %s '%s': a damaged or unsupported PNG%s%s%s: %s", sub, flag, path,
                r.kind[0] ? " (" : "", r.kind, r.kind[0] ? ")" : "", r.msg.error);
        if (r.msg.warning[0] && strcmp(r.msg.warning, r.msg.error) != 0)
            fprintf(stderr, " (libpng also warned: %s)", r.msg.warning);
        fputc('\n', stderr);
    }
    png_destroy_read_struct(r.png ? &r.png : NULL, r.info ? &r.info : NULL, NULL);
    free(r.rows);
    free(r.raw);
    fclose(r.f);
    return ok ? CLI_OK : CLI_FAIL;
}

int cli_png_images(const char *sub, const char *path, cli_geometry *g, char *buf, size_t bufsize, int64_t chw[3],
                   sbx_array **out) {
    int64_t given[SBX_MAX_NDIM + 1], kernel[SBX_MAX_NDIM];
    if (!g->kernel) return cli_usage_error(sub, "needs %s", g->kernel_flag);
    int nk = cli_ints(g->kernel, kernel, SBX_MAX_NDIM);
    if (nk != 0 && nk != 2) /* a malformed list is left to cli_geometry_shape's message */
        return cli_usage_error(sub, "the PNG '%s' is a 2-d image: %s must have two entries, not '%s'", path,
                               g->kernel_flag, g->kernel);
    sbx_array *x = NULL;
    int rc = cli_png_read(sub, "--images", path, chw, &x);
    if (rc != CLI_OK) return rc;
    if (g->image) {
        int n = cli_ints(g->image, given, SBX_MAX_NDIM + 1);
        int agree = (n == 3 && given[0] == chw[0] && given[1] == chw[1] && given[2] == chw[2]) ||
                    (n == 2 && chw[0] == 1 && given[0] == chw[1] && given[1] == chw[2]);
        if (n != 0 && !agree) {
            sbx_array_free(x);
            return cli_usage_error(sub, "%s '%s' disagrees with the PNG '%s', whose shape (C,H,W) is %lld,%lld,%lld",
                                   g->image_flag, g->image, path, (long long)chw[0], (long long)chw[1],
                                   (long long)chw[2]);
        }
    } else {
        snprintf(buf, bufsize, "%lld,%lld,%lld", (long long)chw[0], (long long)chw[1], (long long)chw[2]);
        g->image = buf;
    }
    *out = x;
    return CLI_OK;
}

/* ---- Writing ---------------------------------------------------------------------------------- */

typedef struct {
    const char *path; /* the final name, for messages */
    const sbx_array *y;
    int64_t maps, h, w, cols, rows;
    png_uint_32 width, height;
} grid;

typedef struct {
    png_messages msg; /* libpng's error pointer */
    const grid *g;
    FILE *f;
    png_structp png;
    png_infop info;
    double *lo, *hi; /* each map's finite minimum and maximum */
    png_bytep row;
} writer;

static void write_data(png_structp png, png_bytep data, size_t n) {
    writer *w = png_get_io_ptr(png);
    if (fwrite(data, 1, n, w->f) == n) return;
    snprintf(w->msg.error, sizeof w->msg.error, "cannot write it: %s", strerror(errno));
    png_error(png, w->msg.error);
}

static void flush_data(png_structp png) {
    writer *w = png_get_io_ptr(png);
    if (fflush(w->f) == 0) return;
    snprintf(w->msg.error, sizeof w->msg.error, "cannot write it: %s", strerror(errno));
    png_error(png, w->msg.error);
}

static double value(const sbx_array *y, int64_t i) {
    return y->dtype == SBX_FLOAT32 ? (double)((const float *)y->data)[i] : ((const double *)y->data)[i];
}

/* A value of a map whose finite values span lo..hi as a gray level, 0..255. When hi - lo overflows
 * (finite values of both signs near DBL_MAX) the values are halved first. */
static png_byte shade(double v, double lo, double hi) {
    if (isnan(v) || v == -INFINITY) return 0;
    if (v == INFINITY) return 255;
    if (!(hi > lo)) return MID_GRAY;
    double t = isfinite(hi - lo) ? (v - lo) / (hi - lo) : (v * 0.5 - lo * 0.5) / (hi * 0.5 - lo * 0.5);
    if (!(t >= 0.0)) t = 0.0; /* v is within lo..hi: these two only guard the conversion below */
    if (t > 1.0) t = 1.0;
    return (png_byte)floor(t * 255.0 + 0.5);
}

static void write_body(writer *w) {
    const grid *g = w->g;
    png_set_write_fn(w->png, w, write_data, flush_data);
    png_set_user_limits(w->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX); /* libpng's default is 10^6 */
    png_set_IHDR(w->png, w->info, g->width, g->height, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(w->png, w->info);
    const int64_t size = g->h * g->w;
    for (png_uint_32 py = 0; py < g->height; py++) {
        memset(w->row, 0, g->width); /* the gaps, and the cells after the last map */
        int64_t r = py / (g->h + 1), i = py % (g->h + 1);
        if (i < g->h)
            for (int64_t c = 0; c < g->cols; c++) {
                int64_t m = r * g->cols + c;
                if (m >= g->maps) break;
                png_bytep dst = w->row + c * (g->w + 1);
                for (int64_t j = 0; j < g->w; j++) dst[j] = shade(value(g->y, m * size + i * g->w + j), w->lo[m], w->hi[m]);
            }
        png_write_row(w->png, w->row);
    }
    png_write_end(w->png, NULL);
}

static int write_guarded(writer *w) {
    if (setjmp(png_jmpbuf(w->png))) return 0;
    write_body(w);
    return 1;
}

static int write_grid(const char *sub, const char *tmp, const void *arg) {
    const grid *g = arg;
    writer w;
    memset(&w, 0, sizeof w);
    w.g = g;
    int ok = 0;
    if (!(w.lo = malloc((size_t)g->maps * sizeof *w.lo)) || !(w.hi = malloc((size_t)g->maps * sizeof *w.hi)) ||
        !(w.row = malloc(g->width)) ||
        !(w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w.msg, on_error, on_warning)) ||
        !(w.info = png_create_info_struct(w.png))) {
        snprintf(w.msg.error, sizeof w.msg.error, "out of memory");
    } else if (!(w.f = fopen(tmp, "wb"))) {
        snprintf(w.msg.error, sizeof w.msg.error, "cannot open '%s': %s", tmp, strerror(errno));
    } else {
        const int64_t size = g->h * g->w;
        for (int64_t m = 0; m < g->maps; m++) {
            double lo = INFINITY, hi = -INFINITY;
            for (int64_t k = 0; k < size; k++) {
                double v = value(g->y, m * size + k);
                if (isfinite(v)) {
                    if (v < lo) lo = v;
                    if (v > hi) hi = v;
                }
            }
            w.lo[m] = lo;
            w.hi[m] = hi;
        }
        ok = write_guarded(&w);
        if (fclose(w.f) != 0 && ok) {
            snprintf(w.msg.error, sizeof w.msg.error, "cannot write it: %s", strerror(errno));
            ok = 0;
        }
    }
    if (!ok) fprintf(stderr, "sbx: %s: -o '%s': %s\n", sub, g->path, w.msg.error);
    png_destroy_write_struct(w.png ? &w.png : NULL, w.info ? &w.info : NULL);
    free(w.row);
    free(w.hi);
    free(w.lo);
    return ok ? CLI_OK : CLI_FAIL;
}

int cli_png_write_maps(const char *sub, const char *path, const sbx_array *y, int64_t nmaps, int64_t h, int64_t w,
                       int64_t size[2]) {
    grid g = {path, y, nmaps, h, w, 0, 0, 0, 0};
    if (y->dtype != SBX_FLOAT32 && y->dtype != SBX_FLOAT64) {
        fprintf(stderr, "sbx: %s: -o '%s': cannot draw %s feature maps\n", sub, path, sbx_dtype_name(y->dtype));
        return CLI_FAIL;
    }
    if (y->ndim < 1 || y->shape[0] < 1) {
        fprintf(stderr, "sbx: %s: -o '%s': the batch is empty: there is no image to draw\n", sub, path);
        return CLI_FAIL;
    }
    g.cols = nmaps < GRID_COLUMNS ? nmaps : GRID_COLUMNS;
    g.rows = (nmaps + GRID_COLUMNS - 1) / GRID_COLUMNS;
    /* Each extent stays below 2^31 - 1 (a PNG's limit) when these do; no product overflows before. */
    if (h >= PNG_UINT_31_MAX / g.rows || w >= PNG_UINT_31_MAX / g.cols) {
        fprintf(stderr, "sbx: %s: -o '%s': %lld maps of %lld x %lld do not fit in a PNG (at most 2^31 - 1 pixels "
                        "each way)\n",
                sub, path, (long long)nmaps, (long long)h, (long long)w);
        return CLI_FAIL;
    }
    g.width = (png_uint_32)(g.cols * (w + 1) - 1);
    g.height = (png_uint_32)(g.rows * (h + 1) - 1);
    int rc = cli_write_via(sub, path, write_grid, &g);
    if (rc == CLI_OK) {
        size[0] = g.width;
        size[1] = g.height;
    }
    return rc;
}
