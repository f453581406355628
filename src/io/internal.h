/* Helpers shared by the file readers and writers. */
#ifndef SBX_IO_INTERNAL_H
#define SBX_IO_INTERNAL_H

#include <stdio.h>

#include "core/internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "sparsebox's file formats are written for little-endian hosts"
#endif

/* Opens path, setting a message naming it on failure. */
sbx_status sbx__open(const char *path, const char *mode, FILE **out);
/* Closes a file being written; on any earlier or closing error removes it, so no partial file is
 * left. `st` is the status so far; the result is the final status. */
sbx_status sbx__finish_write(FILE *f, const char *path, sbx_status st);

#endif
