/* What the benchmarks of this folder share: the clock, medians, file paths, the folder of the peer
 * scripts, starting a peer on two pipes, pinning to one CPU (with _GNU_SOURCE defined), a fixed-seed
 * generator for their data, and OpenBLAS's own functions (looked up at run time, so that any CBLAS
 * still links). A benchmark defines BENCH_NAME (its name, for messages) before including this. */
#ifndef SBX_BENCH_UTIL_H
#define SBX_BENCH_UTIL_H

#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sparsebox.h>

/* splitmix64: the state advanced by a fixed odd constant, then mixed. */
static inline uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) from the top 53 bits. */
static inline double uniform01(uint64_t *state) { return (double)(splitmix64(state) >> 11) * 0x1.0p-53; }

static inline void *blas_symbol(const char *name) {
    static void *self;
    if (!self) self = dlopen(NULL, RTLD_NOW);
    return self ? dlsym(self, name) : NULL;
}

/* openblas_get_corename() or openblas_get_config(); NULL when not OpenBLAS. */
static inline const char *blas_string(const char *name) {
    char *(*fn)(void);
    void *sym = blas_symbol(name);
    if (!sym) return NULL;
    memcpy(&fn, &sym, sizeof fn);
    return fn();
}

/* openblas_set_num_threads(n); 0 when there is no such function. */
static inline int blas_set_threads(int n) {
    void (*fn)(int);
    void *sym = blas_symbol("openblas_set_num_threads");
    if (!sym) return 0;
    memcpy(&fn, &sym, sizeof fn);
    fn(n);
    return 1;
}

/* The library's threads and OpenBLAS's. */
static inline void set_threads(int n) {
    sbx_set_num_threads(n);
    blas_set_threads(n);
}

/* The machine, as the first "model name" line of /proc/cpuinfo, and the vector instructions that pick
 * the library's code paths (its rule: AVX-512F, the 64-byte kernels and samplers; else AVX2, the
 * samplers' 32-byte paths, and with FMA also the layers' 32-byte kernels; else the baseline code;
 * sanitizer builds run the samplers' baseline code everywhere). Figures move with these: the same
 * commit ran some layer figures 33x apart on an AVX-512 and an AVX2-only machine. */
static inline void print_machine(void) {
    char line[512], name[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        for (colon++; *colon == ' ' || *colon == '\t'; colon++) {}
        snprintf(name, sizeof name, "%s", colon);
        name[strcspn(name, "\r\n")] = '\0';
        break;
    }
    if (f) fclose(f);
    const char *path = "the baseline code";
#if defined(__x86_64__)
    const int avx512 = __builtin_cpu_supports("avx512f"), avx2 = __builtin_cpu_supports("avx2"),
              fma = __builtin_cpu_supports("fma");
    if (avx512)
        path = "the 64-byte (AVX-512) kernels and samplers";
    else if (avx2 && fma)
        path = "the 32-byte (AVX2) kernels and samplers";
    else if (avx2)
        path = "the baseline layer kernels and the 32-byte (AVX2) samplers";
#ifdef SBX_SANITIZE
    path = "(a sanitizer build) the baseline samplers; layer kernels by the CPU";
#endif
    printf("machine: %s, %ld cpus online; AVX-512F %s, AVX2 %s, FMA %s: sparsebox runs %s\n", name,
           sysconf(_SC_NPROCESSORS_ONLN), avx512 ? "yes" : "no", avx2 ? "yes" : "no", fma ? "yes" : "no", path);
#else
    printf("machine: %s, %ld cpus online: sparsebox runs %s\n", name, sysconf(_SC_NPROCESSORS_ONLN), path);
#endif
}

/* Seconds on the monotonic clock. */
static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int compare_doubles(const void *pa, const void *pb) {
    const double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* Sorts v; the middle value, or the mean of the middle two (as Python's statistics.median). */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* buf = dir/name; 1, with a message, when it does not fit in len bytes. */
static inline int join_path(char *buf, size_t len, const char *dir, const char *name) {
    const int n = snprintf(buf, len, "%s/%s", dir, name);
    if (n >= 0 && (size_t)n < len) return 0;
    fprintf(stderr, "%s: path too long: %s/%s\n", BENCH_NAME, dir, name);
    return 1;
}

/* The folder of the peer scripts: arg when given (not NULL), else $SBX_BENCH_DIR, else the folder of
 * this header as the compiler saw it (the scripts sit next to it). */
static inline void peer_folder(const char *arg, char *dir, size_t len) {
    const char *env = getenv("SBX_BENCH_DIR");
    snprintf(dir, len, "%s", arg ? arg : env && *env ? env : __FILE__);
    if (arg || (env && *env)) return;
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, len, ".");
}

/* A peer process driven by commands: what is written to `to` is its standard input; its standard
 * output and error come back on `from`. pid 0: not running. */
typedef struct peer_process {
    pid_t pid;
    FILE *to, *from;
} peer_process;

/* Starts `python script arg` as c; 0, or 1 with why (why_len bytes) saying what failed. A python that
 * cannot be executed answers "skip cannot run PYTHON: REASON" on `from` and exits with status 127. */
static inline int peer_start_process(peer_process *c, const char *python, const char *script, const char *arg,
                                     char *why, size_t why_len) {
    int in[2], out[2];
    c->pid = 0;
    c->to = c->from = NULL;
    if (pipe(in) != 0) {
        snprintf(why, why_len, "pipe failed: %s", strerror(errno));
        return 1;
    }
    if (pipe(out) != 0) {
        snprintf(why, why_len, "pipe failed: %s", strerror(errno));
        close(in[0]);
        close(in[1]);
        return 1;
    }
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid == 0) {
        if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0 || dup2(out[1], STDERR_FILENO) < 0)
            _exit(126);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execlp(python, python, script, arg, (char *)NULL);
        printf("skip cannot run %s: %s\n", python, strerror(errno));
        fflush(stdout);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    c->to = pid > 0 ? fdopen(in[1], "w") : NULL;
    c->from = pid > 0 ? fdopen(out[0], "r") : NULL;
    if (pid > 0 && c->to && c->from) {
        c->pid = pid;
        return 0;
    }
    snprintf(why, why_len, "%s failed: %s", pid < 0 ? "fork" : "fdopen", strerror(errno));
    if (c->to)
        fclose(c->to);
    else
        close(in[1]);
    if (c->from)
        fclose(c->from);
    else
        close(out[0]);
    c->to = c->from = NULL;
    if (pid > 0) waitpid(pid, NULL, 0);
    return 1;
}

/* Closes what is still open of c's pipes (closing its input ends a peer that reads commands) and
 * waits for it: its exit status, 128 + the signal that ended it, or -1 when it was not running. */
static inline int peer_finish_process(peer_process *c) {
    if (c->to) fclose(c->to);
    if (c->from) fclose(c->from);
    c->to = c->from = NULL;
    if (c->pid <= 0) return -1;
    int status = 0;
    const pid_t got = waitpid(c->pid, &status, 0);
    c->pid = 0;
    if (got <= 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

#ifdef _GNU_SOURCE
/* Where the single-thread figures run: one CPU, the one main started on, for our thread and the
 * peer's alike. On these VMs one virtual CPU ran at times 1.5-2x slower than the other for tens of
 * seconds (another tenant on its host core, I suppose); with the two sides on different CPUs, even
 * alternating, that fell on one side only. A thread pool made while pinned would inherit the one CPU:
 * start it (run a figure with every thread) before pinning. */
typedef struct pinning {
    cpu_set_t all, one;
    int cpu; /* the one CPU; -1 when sched_getcpu or sched_getaffinity failed: nothing is pinned */
} pinning;

static inline void pinning_init(pinning *pin) {
    pin->cpu = sched_getcpu();
    CPU_ZERO(&pin->one);
    if (pin->cpu < 0 || pin->cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof pin->all, &pin->all) != 0)
        pin->cpu = -1;
    else
        CPU_SET(pin->cpu, &pin->one);
}

/* Pins the calling thread to the one CPU (one = 1) or gives it back all of its CPUs; on a failure it
 * says so and pins nothing from then on. */
static inline void pin_thread(pinning *pin, int one) {
    if (pin->cpu >= 0 && sched_setaffinity(0, sizeof pin->all, one ? &pin->one : &pin->all) != 0) {
        fprintf(stderr, "%s: sched_setaffinity failed (%s): running unpinned\n", BENCH_NAME, strerror(errno));
        pin->cpu = -1;
    }
}
#endif

#endif
