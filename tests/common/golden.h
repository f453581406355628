/* Reader of the golden reference files (the .txt files of tests/golden; FORMAT.md there describes them). */
#ifndef SBX_TEST_GOLDEN_H
#define SBX_TEST_GOLDEN_H

#include <stdint.h>

#define GOLDEN_MAX_KEYS 64
#define GOLDEN_MAX_ARRAYS 16

typedef struct {
    char name[64];
    int64_t n;
    double *v; /* every number is held exactly: integers below 2^53, floats as written */
} golden_array;

typedef struct {
    char path[1024];
    int nkeys, narrays;
    char key[GOLDEN_MAX_KEYS][64], value[GOLDEN_MAX_KEYS][256];
    golden_array array[GOLDEN_MAX_ARRAYS];
} golden_case;

/* Reads one file; returns 0 on success, -1 (with a message on stderr) on a malformed file. */
int golden_read(const char *path, golden_case *g);
void golden_free(golden_case *g);
/* The header value of key, or NULL. */
const char *golden_value(const golden_case *g, const char *key);
/* Parses up to max integers of key's value into out; returns how many. */
int golden_ints(const golden_case *g, const char *key, int64_t *out, int max);
/* The array called name, or NULL. */
const golden_array *golden_get(const golden_case *g, const char *name);

/* The sorted paths of tests/golden/<prefix>*.txt; *count set. Free with golden_list_free. */
char **golden_list(const char *prefix, int *count);
void golden_list_free(char **paths, int count);

#endif
