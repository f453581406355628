/* A stand-in for libFuzzer where it cannot be linked (gcc): runs the target on every file given (or
 * every file of each folder given), then on `-runs=N` deterministic mutations of them (a fixed
 * xorshift sequence: bit flips, byte sets, inserts, deletes, copies, truncation, splices of two files),
 * so the same command always runs the same inputs. A crash or a failed check aborts the process; the
 * input being run is written to the file named by -artifact_prefix= (default "./") + "crash-replay"
 * first, so it can be replayed. Exit status 0 when every input ran. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#define MAX_FILES 256
#define MAX_LEN 4096

typedef struct {
    uint8_t *data;
    size_t size;
} input;

static input files[MAX_FILES];
static int nfiles;
static char artifact[1024] = "./crash-replay";

static void load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        exit(2);
    }
    if (nfiles == MAX_FILES) {
        fprintf(stderr, "replay: more than %d inputs\n", MAX_FILES);
        exit(2);
    }
    uint8_t *buf = malloc(MAX_LEN);
    size_t n = buf ? fread(buf, 1, MAX_LEN, f) : 0;
    fclose(f);
    if (!buf) exit(2);
    files[nfiles++] = (input){buf, n};
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A folder's files in name order, so the run does not depend on the order readdir gives. */
static void load_dir(const char *dir) {
    DIR *d = opendir(dir);
    char *names[MAX_FILES];
    int n = 0;
    struct dirent *e;
    if (!d) {
        fprintf(stderr, "replay: cannot open the folder %s\n", dir);
        exit(2);
    }
    while ((e = readdir(d)) && n < MAX_FILES) {
        if (e->d_name[0] == '.') continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        names[n] = malloc(len);
        if (!names[n]) exit(2);
        snprintf(names[n], len, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], by_name);
    for (int i = 0; i < n; i++) {
        struct stat sb;
        if (stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode)) load(names[i]);
        free(names[i]);
    }
}

static uint64_t state = 0x9E3779B97F4A7C15u;
static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static void run(const uint8_t *data, size_t size) {
    /* Written before the run: a crash leaves no chance to write it after. Overwritten by the next. */
    FILE *f = fopen(artifact, "wb");
    if (f) {
        fwrite(data, 1, size, f);
        fclose(f);
    }
    /* A copy of exactly size bytes, so that ASan sees a read past the end. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) exit(2);
    memcpy(copy, data, size);
    LLVMFuzzerTestOneInput(copy, size);
    free(copy);
}

static size_t mutate(uint8_t *buf, size_t size) {
    static const uint8_t special[] = {0, 1, 0x7f, 0x80, 0xff, '0', '9', ' ', '\n', '-', '.', 'e'};
    int steps = 1 + (int)(next() % 4);
    for (int s = 0; s < steps; s++) {
        size_t pos = size ? (size_t)(next() % size) : 0;
        switch (next() % 8) {
        case 0:
            if (size) buf[pos] ^= (uint8_t)(1u << (next() % 8));
            break;
        case 1:
            if (size) buf[pos] = (uint8_t)next();
            break;
        case 2:
            if (size) buf[pos] = special[next() % sizeof special];
            break;
        case 3: /* insert a byte */
            if (size < MAX_LEN) {
                memmove(buf + pos + 1, buf + pos, size - pos);
                buf[pos] = (uint8_t)next();
                size++;
            }
            break;
        case 4: /* delete up to 4 bytes */
            if (size) {
                size_t k = 1 + (size_t)(next() % 4);
                if (k > size - pos) k = size - pos;
                memmove(buf + pos, buf + pos + k, size - pos - k);
                size -= k;
            }
            break;
        case 5: /* copy a piece over another place */
            if (size) {
                size_t from = (size_t)(next() % size), k = 1 + (size_t)(next() % 8);
                if (k > size - from) k = size - from;
                if (k > size - pos) k = size - pos;
                memmove(buf + pos, buf + from, k);
            }
            break;
        case 6:
            size = pos;
            break;
        default: { /* splice: the tail of another input from pos on */
            const input *o = &files[next() % (uint64_t)nfiles];
            size_t from = o->size ? (size_t)(next() % o->size) : 0, k = o->size - from;
            if (k > MAX_LEN - pos) k = MAX_LEN - pos;
            memcpy(buf + pos, o->data + from, k);
            size = pos + k;
            break;
        }
        }
    }
    return size;
}

int main(int argc, char **argv) {
    long runs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "-runs=", 6)) {
            runs = strtol(argv[i] + 6, NULL, 10);
        } else if (!strncmp(argv[i], "-artifact_prefix=", 17)) {
            snprintf(artifact, sizeof artifact, "%scrash-replay", argv[i] + 17);
        } else if (argv[i][0] == '-') {
            continue; /* libFuzzer's other flags mean nothing here */
        } else {
            struct stat sb;
            if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode))
                load_dir(argv[i]);
            else
                load(argv[i]);
        }
    }
    if (!nfiles) {
        fprintf(stderr, "usage: %s [-runs=N] [-artifact_prefix=P] FILE|FOLDER...\n", argv[0]);
        return 2;
    }
    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 0; i < nfiles; i++) run(files[i].data, files[i].size);
    uint8_t *buf = malloc(MAX_LEN);
    if (!buf) return 2;
    for (long r = 0; r < runs; r++) {
        const input *in = &files[r % nfiles];
        memcpy(buf, in->data, in->size);
        run(buf, mutate(buf, in->size));
    }
    free(buf);
    remove(artifact);
    printf("replay: %d inputs and %ld mutations ran\n", nfiles, runs);
    return 0;
}
