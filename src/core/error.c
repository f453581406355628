/* Status names and the thread-local last-error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/internal.h"

static _Thread_local char last_error[512];

const char *sbx_status_str(sbx_status status) {
    switch (status) {
    case SBX_OK: return "ok";
    case SBX_ERR_ARG: return "invalid argument";
    case SBX_ERR_NOMEM: return "out of memory";
    case SBX_ERR_OVERFLOW: return "size overflow";
    case SBX_ERR_IO: return "input/output error";
    case SBX_ERR_FORMAT: return "malformed data";
    case SBX_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

const char *sbx_last_error(void) { return last_error; }

sbx_status sbx__error(sbx_status status, const char *fmt, ...) {
    char msg[sizeof last_error]; /* formatted apart first: an argument may be the last message itself */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return status;
}
