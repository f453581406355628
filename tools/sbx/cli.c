/* Shared pieces of the sbx subcommands: messages, options, reading and writing files safely. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int cli_geometry_opt(int argc, char **argv, int *i, cli_geometry *g) {
    int r;
    if ((r = cli_opt(argc, argv, i, g->image_flag, &g->image)) || (r = cli_opt(argc, argv, i, g->kernel_flag, &g->kernel)) ||
        (r = cli_opt(argc, argv, i, "--step", &g->step)) || (r = cli_opt(argc, argv, i, "--stride", &g->stride)) ||
        (r = cli_opt(argc, argv, i, "--mode", &g->mode)))
        return r;
    return 0;
}

int cli_geometry_shape(const char *sub, const cli_geometry *g, sbx_conv_shape *s) {
    int64_t image[SBX_MAX_NDIM + 1], kernel[SBX_MAX_NDIM], stride[SBX_MAX_NDIM];
    int ni, nk;
    sbx_conv_mode mode = SBX_CONV_VALID;
    if (!g->image || !g->kernel) return cli_usage_error(sub, "needs %s and %s", g->image_flag, g->kernel_flag);
    if (!(ni = cli_ints(g->image, image, SBX_MAX_NDIM + 1)))
        return cli_usage_error(sub, "%s '%s' is not a list of up to %d integers", g->image_flag, g->image, SBX_MAX_NDIM + 1);
    if (!(nk = cli_ints(g->kernel, kernel, SBX_MAX_NDIM)))
        return cli_usage_error(sub, "%s '%s' is not a list of up to %d integers", g->kernel_flag, g->kernel, SBX_MAX_NDIM);
    if (ni != nk && ni != nk + 1)
        return cli_usage_error(sub, "%s '%s' must have as many entries as %s '%s', or one more (the feature maps)",
                               g->image_flag, g->image, g->kernel_flag, g->kernel);
    if (g->step && g->stride) return cli_usage_error(sub, "give --step or --stride, not both");
    if (g->step) {
        int64_t step[2];
        if (nk != 2) return cli_usage_error(sub, "--step (dx, dy) is for 2-d kernels; use --stride for %d-d", nk);
        if (cli_ints(g->step, step, 2) != 2) return cli_usage_error(sub, "--step '%s' must be DX,DY", g->step);
        stride[0] = step[1];
        stride[1] = step[0];
    } else if (g->stride) {
        if (cli_ints(g->stride, stride, SBX_MAX_NDIM) != nk)
            return cli_usage_error(sub, "--stride '%s' must have %d entries, one per kernel dimension", g->stride, nk);
    } else {
        for (int d = 0; d < nk; d++) stride[d] = 1;
    }
    if (g->mode && sbx_conv_mode_parse(g->mode, &mode) != SBX_OK) return cli_usage_error(sub, "--mode: %s", sbx_last_error());
    if (sbx_conv_shape_make(nk, ni > nk ? image[0] : 1, image + (ni - nk), kernel, stride, mode, s) != SBX_OK)
        return cli_usage_error(sub, "%s", sbx_last_error());
    return CLI_OK;
}

int cli_load(const char *sub, const char *flag, const char *path, int cast, sbx_dtype dtype, sbx_array **out) {
    sbx_array *a = NULL, *c = NULL;
    if (cli_kind(path) != FILE_NPY) return cli_usage_error(sub, "%s '%s' must be a .npy file", flag, path);
    sbx_status st = sbx_npy_read(path, &a);
    if (st == SBX_OK && cast && a->dtype != dtype) {
        st = sbx_array_cast(a, dtype, &c);
        sbx_array_free(a);
        a = c;
    }
    if (st != SBX_OK) {
        fprintf(stderr, "sbx: %s: %s '%s': %s\n", sub, flag, path, sbx_last_error());
        sbx_array_free(a);
        return CLI_FAIL;
    }
    *out = a;
    return CLI_OK;
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
    /* mkstemp makes the file private (0600); give it the mode any new file gets, 0666 less the umask. */
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0) {
        fprintf(stderr, "sbx: %s: cannot set the mode of '%s': %s\n", sub, tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return NULL;
    }
    close(fd);
    return tmp;
}

/* Outputs written between cli_outputs_begin and cli_outputs_end wait here as temporary files. */
#define MAX_PENDING 8
static struct {
    char *tmp;
    const char *path;
} pending[MAX_PENDING];
static int npending, deferring;

static int rename_into_place(const char *sub, const char *tmp, const char *path) {
    if (rename(tmp, path) == 0) return CLI_OK;
    fprintf(stderr, "sbx: %s: cannot rename '%s' to '%s': %s\n", sub, tmp, path, strerror(errno));
    return CLI_FAIL;
}

int cli_write_via(const char *sub, const char *path, cli_writer write, const void *arg) {
    if (deferring && npending == MAX_PENDING) {
        fprintf(stderr, "sbx: %s: more than %d outputs\n", sub, MAX_PENDING);
        return CLI_FAIL;
    }
    char *tmp = temp_name(sub, path);
    if (!tmp) return CLI_FAIL;
    int rc = write(sub, tmp, arg);
    if (rc == CLI_OK && deferring) {
        pending[npending].tmp = tmp;
        pending[npending++].path = path;
        return CLI_OK;
    }
    if (rc == CLI_OK) rc = rename_into_place(sub, tmp, path);
    if (rc != CLI_OK) unlink(tmp);
    free(tmp);
    return rc;
}

void cli_outputs_begin(void) {
    deferring = 1;
    npending = 0;
}

int cli_outputs_end(const char *sub, int rc) {
    int renamed = 0;
    if (rc == CLI_OK)
        for (; renamed < npending; renamed++)
            if ((rc = rename_into_place(sub, pending[renamed].tmp, pending[renamed].path)) != CLI_OK) break;
    if (rc != CLI_OK)
        for (int i = 0; i < npending; i++) unlink(i < renamed ? pending[i].path : pending[i].tmp);
    for (int i = 0; i < npending; i++) free(pending[i].tmp);
    npending = 0;
    deferring = 0;
    return rc;
}

static int write_npy(const char *sub, const char *tmp, const void *a) {
    sbx_status st = sbx_npy_write(tmp, a);
    return st == SBX_OK ? CLI_OK : cli_fail(sub, st);
}

static int write_mtx(const char *sub, const char *tmp, const void *m) {
    sbx_status st = sbx_mtx_write(tmp, m);
    return st == SBX_OK ? CLI_OK : cli_fail(sub, st);
}

int cli_write_npy(const char *sub, const char *path, const sbx_array *a) { return cli_write_via(sub, path, write_npy, a); }

int cli_write_mtx(const char *sub, const char *path, const sbx_sparse *m) { return cli_write_via(sub, path, write_mtx, m); }
