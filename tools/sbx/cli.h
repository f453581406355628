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

extern const cli_command cli_convert, cli_info, cli_indices;

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
