/* The one allocator: every allocation of the library goes through here, so that sizes are checked in
 * one place and a test can make the k-th allocation fail.
 *
 * Blocks of MAPPED bytes and up are mapped directly, and from HUGE_MIN on aligned to 2 MiB and
 * marked for transparent huge pages: filling a fresh 16 MB array then takes 8 page faults instead of
 * 4096, which on these machines was half the time of a format conversion. Every block starts with a small header saying
 * how it was obtained, so sbx__free and sbx__grow need only the pointer.
 *
 * Like malloc's own free lists, a few freed mapped blocks are kept (at most CACHE_SLOTS blocks and
 * CACHE_BYTES in all) and handed out again, so a loop that makes and frees the same big arrays does
 * not pay the kernel's page faults and zeroing each time. Sanitizer builds use calloc for every
 * block, so that AddressSanitizer sees every access. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, madvise */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/internal.h"

#define HEADER 64                    /* keeps the returned pointer 64-byte aligned for large blocks */
#define HUGE_PAGE ((size_t)2 << 20)
#define PAGE ((size_t)4096)
#ifdef SBX_SANITIZE
#define MAPPED SIZE_MAX
#else
#define MAPPED ((size_t)64 << 10) /* from here on, blocks are mapped and cached (docs/design.md: why 64 KiB) */
#endif
#define HUGE_MIN ((size_t)1 << 20) /* from here on, mapped blocks use huge pages */
#define CACHE_SLOTS 16
#define CACHE_BYTES ((size_t)256 << 20)

typedef struct {
    size_t capacity; /* usable bytes after the header */
    int mapped;      /* 1: from mmap (capacity + HEADER bytes, huge-page aligned); 0: from calloc */
} header;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static header *cache[CACHE_SLOTS];
static uint64_t cache_stamp[CACHE_SLOTS], cache_clock; /* when each block came in: the oldest goes first */
static size_t cache_total;

/* The test hook's state; atomic, since callers may allocate from several threads at once. */
static _Atomic int64_t fail_at; /* the allocation number that fails; 0: none */
static _Atomic int64_t count;   /* allocations since the last sbx__alloc_fail_at call */
static _Atomic int64_t live;    /* blocks obtained and not yet freed (pooled blocks count as live) */

int64_t sbx__alloc_fail_at(int64_t k) {
    int64_t n = atomic_exchange(&count, 0);
    atomic_store(&fail_at, k > 0 ? k : 0);
    return n;
}

int64_t sbx__alloc_live(void) { return atomic_load(&live); }

static sbx_status byte_size(int64_t n, size_t size, size_t *bytes, const char *what) {
    int64_t b;
    if (n < 0) return sbx__error(SBX_ERR_ARG, "%s: negative element count %lld", what, (long long)n);
    if (size > (size_t)INT64_MAX || sbx_mul_i64(n, (int64_t)size, &b) != SBX_OK ||
        (uint64_t)b > SIZE_MAX - 2 * HUGE_PAGE)
        return sbx__error(SBX_ERR_OVERFLOW, "%s: %lld elements of %zu bytes overflow the address space", what,
                          (long long)n, size);
    *bytes = (size_t)b;
    return SBX_OK;
}

/* The smallest cached block of at least `bytes` (and not wastefully more), or NULL. */
static header *from_cache(size_t bytes) {
    header *h = NULL;
    int best = -1;
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache[i] && cache[i]->capacity >= bytes && cache[i]->capacity <= 2 * bytes + 2 * PAGE &&
            (best < 0 || cache[i]->capacity < cache[best]->capacity))
            best = i;
    if (best >= 0) {
        h = cache[best];
        cache[best] = NULL;
        cache_total -= h->capacity;
    }
    pthread_mutex_unlock(&cache_lock);
    return h;
}

/* The machine's memory in bytes (0 if unknown). No single block may be larger: with the kernel's
 * overcommit, such a request could succeed and then get the process killed when touched. */
static pthread_once_t ram_once = PTHREAD_ONCE_INIT;
static size_t ram_bytes;
static void read_ram(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    ram_bytes = pages > 0 && size > 0 ? (size_t)pages * (size_t)size : 0;
}
static size_t physical_memory(void) {
    pthread_once(&ram_once, read_ram); /* sysconf makes a system call: once is enough */
    return ram_bytes;
}

static header *header_of(void *p) { return (header *)((char *)p - HEADER); }

/* The pool entered on this thread (internal.h), or NULL. */
static _Thread_local sbx__pool *pool_now;

sbx__pool *sbx__pool_enter(sbx__pool *pool) {
    sbx__pool *before = pool_now;
    pool_now = pool;
    return before;
}

/* The smallest pooled block of at least `bytes` (and at most twice that and a page), taken out of
 * the pool, or NULL. */
static void *from_pool(size_t bytes) {
    sbx__pool *p = pool_now;
    int best = -1;
    for (int i = 0; i < p->n; i++) {
        size_t c = header_of(p->blocks[i])->capacity;
        if (c >= bytes && c <= 2 * bytes + PAGE && (best < 0 || c < header_of(p->blocks[best])->capacity)) best = i;
    }
    if (best < 0) return NULL;
    void *b = p->blocks[best];
    memmove(&p->blocks[best], &p->blocks[best + 1], (size_t)(--p->n - best) * sizeof b); /* keeps the age order */
    return b;
}

void sbx__pool_release(sbx__pool *pool) {
    if (!pool) return;
    sbx__pool *before = sbx__pool_enter(NULL);
    for (int i = 0; i < pool->n; i++) sbx__free(pool->blocks[i]);
    pool->n = 0;
    sbx__pool_enter(before == pool ? NULL : before);
}

/* A fresh block (from malloc, the cache or mmap) of `bytes` usable bytes, zeroed when `zero` is set,
 * or NULL. */
static void *obtain_fresh(size_t bytes, int zero) {
    const int64_t number = atomic_fetch_add_explicit(&count, 1, memory_order_relaxed) + 1;
    const int64_t failing = atomic_load_explicit(&fail_at, memory_order_relaxed);
    if (failing > 0 && number == failing) return NULL;
    size_t ram = physical_memory();
    if (ram && bytes > ram) return NULL;
    header *h;
    if (bytes < MAPPED) {
        h = zero ? calloc(1, HEADER + bytes) : malloc(HEADER + bytes);
        if (!h) return NULL;
        h->capacity = bytes;
        h->mapped = 0;
        return (char *)h + HEADER;
    }
    if ((h = from_cache(bytes)) != NULL) {
        if (zero) memset((char *)h + HEADER, 0, bytes);
        return (char *)h + HEADER;
    }
    /* Fresh pages are zero. For huge pages, map one huge page more than needed, then unmap the
     * unaligned head and the tail. */
    size_t align = bytes >= HUGE_MIN ? HUGE_PAGE : PAGE, extra = align > PAGE ? align : 0;
    size_t len = (bytes + HEADER + align - 1) / align * align;
    char *raw = mmap(NULL, len + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *start = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
    if (start > raw) munmap(raw, (size_t)(start - raw));
    if (raw + len + extra > start + len) munmap(start + len, (size_t)(raw + len + extra - (start + len)));
    if (align == HUGE_PAGE) madvise(start, len, MADV_HUGEPAGE); /* a hint: without it the block works the same */
    h = (header *)start;
    h->capacity = len - HEADER;
    h->mapped = 1;
    return start + HEADER;
}

/* A block of `bytes` usable bytes, zeroed when `zero` is set, or NULL: a pooled one when the pool
 * serves, else a fresh one. */
static void *obtain(size_t bytes, int zero) {
    if (pool_now && pool_now->serve) {
        void *b = from_pool(bytes);
        if (b) {
            if (zero) memset(b, 0, bytes);
            return b;
        }
    }
    void *b = obtain_fresh(bytes, zero);
    if (b) atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
    return b;
}

void sbx__free(void *p) {
    if (!p) return;
    if (pool_now) { /* into the pool; when it is full the oldest block (one not asked for since) leaves it */
        sbx__pool *pool = pool_now;
        void *oldest = NULL;
        if (pool->n == SBX_POOL_SLOTS) {
            oldest = pool->blocks[0];
            memmove(&pool->blocks[0], &pool->blocks[1], (size_t)--pool->n * sizeof p);
        }
        pool->blocks[pool->n++] = p;
        if (!oldest) return;
        pool_now = NULL;
        sbx__free(oldest);
        pool_now = pool;
        return;
    }
    atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
    header *h = header_of(p);
    if (!h->mapped) {
        free(h);
        return;
    }
    header *evicted[CACHE_SLOTS];
    int n_evicted = 0;
    if (h->capacity > CACHE_BYTES) {
        munmap(h, h->capacity + HEADER);
        return;
    }
    pthread_mutex_lock(&cache_lock);
    for (;;) { /* the block takes a free slot, the oldest blocks making room when needed */
        int free_slot = -1, oldest = -1;
        for (int i = 0; i < CACHE_SLOTS; i++) {
            if (!cache[i])
                free_slot = i;
            else if (oldest < 0 || cache_stamp[i] < cache_stamp[oldest])
                oldest = i;
        }
        if (free_slot >= 0 && cache_total + h->capacity <= CACHE_BYTES) {
            cache[free_slot] = h;
            cache_stamp[free_slot] = ++cache_clock;
            cache_total += h->capacity;
            break;
        }
        evicted[n_evicted++] = cache[oldest];
        cache_total -= cache[oldest]->capacity;
        cache[oldest] = NULL;
    }
    pthread_mutex_unlock(&cache_lock);
    for (int i = 0; i < n_evicted; i++) munmap(evicted[i], evicted[i]->capacity + HEADER);
}

static sbx_status allocate(int64_t n, size_t size, void *out_ptr, const char *what, int zero) {
    size_t bytes = 0;
    SBX_CHECK(byte_size(n, size, &bytes, what));
    void *p = obtain(bytes, zero);
    if (!p) return sbx__error(SBX_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, bytes);
    memcpy(out_ptr, &p, sizeof p);
    return SBX_OK;
}

sbx_status sbx__alloc(int64_t n, size_t size, void *out_ptr, const char *what) {
    return allocate(n, size, out_ptr, what, 1);
}

sbx_status sbx__alloc_raw(int64_t n, size_t size, void *out_ptr, const char *what) {
    return allocate(n, size, out_ptr, what, 0);
}

sbx_status sbx__grow(int64_t n, size_t size, void *inout_ptr, const char *what) {
    size_t bytes = 0;
    void *old, *p;
    SBX_CHECK(byte_size(n, size, &bytes, what));
    memcpy(&old, inout_ptr, sizeof old);
    if (old && header_of(old)->capacity >= bytes) return SBX_OK;
    p = obtain(bytes, 0);
    if (!p) return sbx__error(SBX_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, bytes);
    if (old) {
        memcpy(p, old, header_of(old)->capacity);
        sbx__free(old);
    }
    memcpy(inout_ptr, &p, sizeof p);
    return SBX_OK;
}
