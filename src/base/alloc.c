/* alloc.c — allocation wrappers that abort on out-of-memory (see alloc.h). */
#include "alloc.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "iyagi: out of memory allocating %zu bytes\n", n);
    abort();
}

void *iy_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *iy_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}

void *iy_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *iy_strndup(const char *s, size_t n)
{
    char *p = iy_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void *iy_try_malloc(size_t n) { return malloc(n ? n : 1); }
void *iy_try_realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
void iy_free(void *p) { free(p); }
