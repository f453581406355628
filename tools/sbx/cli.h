/* Shared pieces of the sbx subcommands. */
#ifndef SBX_CLI_H
#define SBX_CLI_H

#include <sparsebox.h>

/* Exit statuses: 0 success, 1 failure, 2 bad usage. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* One subcommand: its name, a one-line summary, its usage text and its entry point. */
typedef struct {
    const char *name;
    const char *summary;
    const char *usage;
    int (*run)(int argc, char **argv);
} cli_command;

extern const cli_command cli_convert, cli_info, cli_indices, cli_convolve, cli_local, cli_maxpool, cli_sample;

/* "sbx: <sub>: <message>" on stderr; return CLI_USAGE / CLI_FAIL. */
int cli_usage_error(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_fail(const char *sub, sbx_status st);

/* Option scanning: cli_opt(argc, argv, &i, "--name", &value) returns 1 when argv[i] is --name VALUE
 * or --name=VALUE (advancing i past the value), -1 when --name lacks its value, 0 otherwise. */
int cli_opt(int argc, char **argv, int *i, const char *name, const char **value);
/* Parses "a,b,c" (1 to max decimal integers in int64) into out; returns the count, or 0 on bad text. */
int cli_ints(const char *text, int64_t *out, int max);
/* 1 when argv[1..] holds -h or --help. */
int cli_wants_help(int argc, char **argv);

/* The geometry options: an image shape flag (--inshp or --imgshp), a kernel shape flag (--kshp or
 * --poolshp), --step DX,DY (the original's order, 2-d only), --stride (shape order), --mode. */
typedef struct {
    const char *image_flag, *kernel_flag; /* the two shape flags' names */
    const char *image, *kernel, *step, *stride, *mode;
} cli_geometry;
/* Takes argv[*i] when it is one of g's options: 1 taken, -1 missing its value, 0 not one of them. */
int cli_geometry_opt(int argc, char **argv, int *i, cli_geometry *g);
/* The shape the options describe (image: as many entries as the kernel, or one more for the feature
 * maps). Prints a usage error and returns CLI_USAGE when they are wrong; CLI_OK otherwise. */
int cli_geometry_shape(const char *sub, const cli_geometry *g, sbx_conv_shape *s);

/* Reads a .npy array for option `flag`; with cast set, converts it to dtype (sbx_array_cast's rules).
 * Prints any error and returns CLI_OK or CLI_FAIL. */
int cli_load(const char *sub, const char *flag, const char *path, int cast, sbx_dtype dtype, sbx_array **out);

/* The runner of `sbx convolve` (local = 0) and `sbx local` (local = 1), which share their options. */
int cli_run_weighted(const char *sub, int local, int argc, char **argv);

/* The kind of a file by its extension. */
typedef enum { FILE_NPY, FILE_MTX, FILE_OTHER } cli_file_kind;
cli_file_kind cli_kind(const char *path);

/* A dense array or a sparse matrix, whichever a file holds. */
typedef struct {
    sbx_array *dense;
    sbx_sparse *sparse;
} cli_matrix;
sbx_status cli_read(const char *path, sbx_format format, cli_matrix *out);
void cli_matrix_free(cli_matrix *m);

/* Writes through a temporary file in the same folder, renamed to path only on success (at cli_outputs_end
 * when deferred, see below); prints any
 * error and returns CLI_OK or CLI_FAIL. cli_write_via is the general form: write(sub, tmp, arg) fills
 * the temporary file tmp and returns CLI_OK, or prints its error and returns CLI_FAIL. */
typedef int (*cli_writer)(const char *sub, const char *tmp, const void *arg);
int cli_write_via(const char *sub, const char *path, cli_writer write, const void *arg);
int cli_write_npy(const char *sub, const char *path, const sbx_array *a);
/* All or nothing for a command with several outputs: between cli_outputs_begin and cli_outputs_end
 * each write stays in its temporary file; cli_outputs_end(sub, rc) renames them all into place when rc
 * is CLI_OK (removing those already renamed if one rename fails), and otherwise removes them. It
 * returns the final status. */
void cli_outputs_begin(void);
int cli_outputs_end(const char *sub, int rc);
int cli_write_mtx(const char *sub, const char *path, const sbx_sparse *m);

/* PNG pictures (png.c, the tool's only user of libpng), for sbx convolve, local and maxpool. */
/* 1 when path ends in .png (or .PNG). */
int cli_is_png(const char *path);
/* Reads the PNG at path (named in messages as option `flag`) as a float32 batch of one image,
 * 1 x (C*H*W), feature maps one after another: C = 1 for grayscale, 3 (R, G, B) for colour and
 * palette images; alpha and transparency are dropped; samples scaled to [0, 1] (v / 255 or
 * v / 65535), no gamma correction. chw receives (C, H, W). Prints any error; CLI_OK or CLI_FAIL. */
int cli_png_read(const char *sub, const char *flag, const char *path, int64_t chw[3], sbx_array **out);
/* The --images PNG of a layer subcommand: reads it (cli_png_read) and reconciles g with it: the
 * kernel flag, when it parses, must have two entries; --imgshp, when given and parseable, must agree
 * with (C, H, W) (H,W when C = 1), else a usage error naming both shapes; when left out it is set to
 * "C,H,W", written into buf (at least 64 bytes). On success *out is the image and chw its shape. */
int cli_png_images(const char *sub, const char *path, cli_geometry *g, char *buf, size_t bufsize, int64_t chw[3],
                   sbx_array **out);
/* The picture -o Y.png gets: the first image's nmaps feature maps of y (batch x (nmaps*h*w), float32
 * or float64, each map contiguous, h x w in raster order) as one 8-bit grayscale grid, rows of up to
 * 8 maps, a 1-pixel black gap, each map scaled to its own min..max (constant: 128; NaN and -inf 0,
 * +inf 255). Written through a temporary file (cli_write_via); size receives the picture's width and
 * height. Prints any error; CLI_OK or CLI_FAIL. */
int cli_png_write_maps(const char *sub, const char *path, const sbx_array *y, int64_t nmaps, int64_t h, int64_t w,
                       int64_t size[2]);

#endif
