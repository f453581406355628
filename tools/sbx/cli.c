/* Shared pieces of the sbx subcommands: messages, options, reading and writing files safely. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_usage_error(const char *sub, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "sbx: %s: ", sub);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'sbx %s --help')\n", sub);
    return CLI_USAGE;
}

int cli_fail(const char *sub, sbx_status st) {
    fprintf(stderr, "sbx: %s: %s: %s\n", sub, sbx_status_str(st), sbx_last_error());
    return CLI_FAIL;
}

int cli_opt(int argc, char **argv, int *i, const char *name, const char **value) {
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *value = argv[++*i];
    return 1;
}

int cli_ints(const char *text, int64_t *out, int max) {
    int n = 0;
    const char *s = text;
    for (;;) {
        char *end;
        if (n == max || !(*s == '-' || (*s >= '0' && *s <= '9'))) return 0;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno == ERANGE) return 0;
        out[n++] = v;
        if (*end == '\0') return n;
        if (*end != ',') return 0;
        s = end + 1;
    }
}

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    return 0;
}

cli_file_kind cli_kind(const char *path) {
    size_t n = strlen(path);
    if (n > 4 && strcmp(path + n - 4, ".npy") == 0) return FILE_NPY;
    if (n > 4 && strcmp(path + n - 4, ".mtx") == 0) return FILE_MTX;
    return FILE_OTHER;
}

sbx_status cli_read(const char *path, sbx_format format, cli_matrix *out) {
    out->dense = NULL;
    out->sparse = NULL;
    if (cli_kind(path) == FILE_NPY) return sbx_npy_read(path, &out->dense);
    sbx_mtx_header h;
    sbx_status st = sbx_mtx_read_header(path, &h);
    if (st != SBX_OK) return st;
    return h.coordinate ? sbx_mtx_read(path, format, &out->sparse) : sbx_mtx_read_dense(path, &out->dense);
}

void cli_matrix_free(cli_matrix *m) {
    sbx_array_free(m->dense);
    sbx_sparse_free(m->sparse);
    m->dense = NULL;
    m->sparse = NULL;
}

/* A temporary name beside path, "path.XXXXXX", created empty by mkstemp; NULL on failure (reported). */
static char *temp_name(const char *sub, const char *path) {
    size_t n = strlen(path);
    char *tmp = malloc(n + 8);
    if (!tmp) {
        fprintf(stderr, "sbx: %s: out of memory\n", sub);
        return NULL;
    }
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".XXXXXX", 8);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "sbx: %s: cannot create a temporary file beside '%s': %s\n", sub, path, strerror(errno));
        free(tmp);
        return NULL;
    }
    close(fd);
    return tmp;
}

/* Renames tmp to path after a successful write; removes it otherwise. */
static int finish(const char *sub, const char *path, char *tmp, sbx_status st) {
    int rc = CLI_OK;
    if (st != SBX_OK) {
        rc = cli_fail(sub, st);
    } else if (rename(tmp, path) != 0) {
        fprintf(stderr, "sbx: %s: cannot rename '%s' to '%s': %s\n", sub, tmp, path, strerror(errno));
        rc = CLI_FAIL;
    }
    if (rc != CLI_OK) unlink(tmp);
    free(tmp);
    return rc;
}

int cli_write_npy(const char *sub, const char *path, const sbx_array *a) {
    char *tmp = temp_name(sub, path);
    return tmp ? finish(sub, path, tmp, sbx_npy_write(tmp, a)) : CLI_FAIL;
}

int cli_write_mtx(const char *sub, const char *path, const sbx_sparse *m) {
    char *tmp = temp_name(sub, path);
    return tmp ? finish(sub, path, tmp, sbx_mtx_write(tmp, m)) : CLI_FAIL;
}
