/* alloc.h — the out-of-memory policy, decided once.
 *
 * iy_malloc and friends abort with a message when memory runs out: a chat
 * server that cannot allocate a few bytes cannot do anything useful, and
 * every durable state is on disk. Where the program must survive a failure
 * (a peer announcing a huge frame), use iy_try_malloc / iy_try_realloc, which
 * return NULL. */
#ifndef IY_ALLOC_H
#define IY_ALLOC_H
#include <stddef.h>

void *iy_malloc(size_t n);
void *iy_calloc(size_t n, size_t size);
void *iy_realloc(void *p, size_t n);
char *iy_strndup(const char *s, size_t n);   /* NUL-terminated copy of n bytes */
void *iy_try_malloc(size_t n);               /* NULL on failure */
void *iy_try_realloc(void *p, size_t n);     /* NULL on failure, p untouched */
void iy_free(void *p);                       /* accepts NULL */

#endif
