/* The thread count of the library's OpenMP loops. */
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/internal.h"

static _Atomic int requested; /* 0: the default; atomic, since it may be set while other threads read it */

void sbx_set_num_threads(int n) { requested = n > 0 ? n : 0; }

int sbx_get_num_threads(void) {
    const int r = requested; /* one load: another thread may change it */
    if (r > 0) return r;
    const char *env = getenv("SBX_NUM_THREADS");
    if (env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (end != env && *end == '\0' && v > 0 && v <= 4096) return (int)v;
    }
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int sbx__threads(void) {
    int n = sbx_get_num_threads();
    return n > 0 ? n : 1;
}

int sbx__thread(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
