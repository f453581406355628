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

/* Writes through a temporary file in the same folder, renamed to path only on success; prints any
 * error and returns CLI_OK or CLI_FAIL. */
int cli_write_npy(const char *sub, const char *path, const sbx_array *a);
int cli_write_mtx(const char *sub, const char *path, const sbx_sparse *m);

#endif
