/* Opening and finishing files. */
#define _POSIX_C_SOURCE 200809L /* fileno */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "io/internal.h"

sbx_status sbx__open(const char *path, const char *mode, FILE **out) {
    if (!path) return sbx__error(SBX_ERR_ARG, "path is NULL");
    FILE *f = fopen(path, mode);
    if (!f) return sbx__error(SBX_ERR_IO, "cannot open '%s' for %s: %s", path, mode[0] == 'r' ? "reading" : "writing",
                              strerror(errno));
    /* fopen opens a folder for reading on Linux, and reading it then looks like an empty file. */
    struct stat info;
    if (mode[0] == 'r' && fstat(fileno(f), &info) == 0 && S_ISDIR(info.st_mode)) {
        fclose(f);
        return sbx__error(SBX_ERR_IO, "cannot open '%s' for reading: it is a folder", path);
    }
    *out = f;
    return SBX_OK;
}

sbx_status sbx__finish_write(FILE *f, const char *path, sbx_status st) {
    if (st == SBX_OK && ferror(f)) st = sbx__error(SBX_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    if (fclose(f) != 0 && st == SBX_OK) st = sbx__error(SBX_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    if (st != SBX_OK) remove(path);
    return st;
}
