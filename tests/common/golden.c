/* Reader of the golden reference files, after FORMAT.md: "key: value" header lines up to an empty
 * line, then arrays ("name N" and N numbers) up to the word "end". */
#define _POSIX_C_SOURCE 200809L
#include "golden.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SBX_GOLDEN_DIR
#error "SBX_GOLDEN_DIR must name the folder of the golden files"
#endif

int golden_read(const char *path, golden_case *g) {
    memset(g, 0, sizeof *g);
    snprintf(g->path, sizeof g->path, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "golden: cannot open %s\n", path);
        return -1;
    }
    char line[1024];
    while (fgets(line, sizeof line, f) && line[0] != '\n') {
        char *colon = strchr(line, ':');
        if (!colon || g->nkeys == GOLDEN_MAX_KEYS) goto bad;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ') v++;
        v[strcspn(v, "\n")] = '\0';
        snprintf(g->key[g->nkeys], sizeof g->key[0], "%.63s", line);
        snprintf(g->value[g->nkeys], sizeof g->value[0], "%.255s", v);
        g->nkeys++;
    }
    char word[64];
    long long n;
    while (fscanf(f, "%63s", word) == 1 && strcmp(word, "end") != 0) {
        if (g->narrays == GOLDEN_MAX_ARRAYS || fscanf(f, "%lld", &n) != 1 || n < 0) goto bad;
        golden_array *a = &g->array[g->narrays++];
        snprintf(a->name, sizeof a->name, "%s", word);
        a->n = n;
        a->v = malloc((size_t)(n ? n : 1) * sizeof(double));
        if (!a->v) goto bad;
        for (long long i = 0; i < n; i++)
            if (fscanf(f, "%lf", &a->v[i]) != 1) goto bad;
    }
    if (strcmp(word, "end") != 0) goto bad;
    fclose(f);
    return 0;
bad:
    fprintf(stderr, "golden: malformed file %s\n", path);
    fclose(f);
    golden_free(g);
    return -1;
}

void golden_free(golden_case *g) {
    for (int i = 0; i < g->narrays; i++) free(g->array[i].v);
    g->narrays = 0;
}

const char *golden_value(const golden_case *g, const char *key) {
    for (int i = 0; i < g->nkeys; i++)
        if (strcmp(g->key[i], key) == 0) return g->value[i];
    return NULL;
}

int golden_ints(const golden_case *g, const char *key, int64_t *out, int max) {
    const char *v = golden_value(g, key);
    int n = 0;
    while (v && n < max) {
        char *end;
        long long x = strtoll(v, &end, 10);
        if (end == v) break;
        out[n++] = x;
        v = end;
    }
    return n;
}

const golden_array *golden_get(const golden_case *g, const char *name) {
    for (int i = 0; i < g->narrays; i++)
        if (strcmp(g->array[i].name, name) == 0) return &g->array[i];
    return NULL;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char **golden_list(const char *prefix, int *count) {
    DIR *dir = opendir(SBX_GOLDEN_DIR);
    char **paths = NULL;
    int n = 0, cap = 0;
    *count = 0;
    if (!dir) return NULL;
    struct dirent *e;
    size_t plen = strlen(prefix);
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, prefix, plen) != 0 || len < 4 || strcmp(e->d_name + len - 4, ".txt") != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **p = realloc(paths, (size_t)cap * sizeof *p);
            if (!p) break;
            paths = p;
        }
        size_t need = strlen(SBX_GOLDEN_DIR) + len + 2;
        paths[n] = malloc(need);
        if (!paths[n]) break;
        snprintf(paths[n], need, "%s/%s", SBX_GOLDEN_DIR, e->d_name);
        n++;
    }
    closedir(dir);
    if (n > 1) qsort(paths, (size_t)n, sizeof *paths, by_name);
    *count = n;
    return paths;
}

void golden_list_free(char **paths, int count) {
    for (int i = 0; i < count; i++) free(paths[i]);
    free(paths);
}
