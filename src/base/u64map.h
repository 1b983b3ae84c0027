/* u64map.h — an open-addressing hash map from nonzero uint64_t keys to
 * pointers, for per-thread registries (connection id -> connection,
 * user id -> first connection of that user). Not thread-safe. Key 0 is
 * reserved (empty slot). Deletion shifts entries back, so there are no
 * tombstones and lookups stay short. */
#ifndef IY_U64MAP_H
#define IY_U64MAP_H
#include <stddef.h>
#include <stdint.h>

typedef struct u64map {
    uint64_t *keys;
    void **vals;
    size_t cap;     /* power of two, or 0 */
    size_t n;
} u64map;

void *u64map_get(const u64map *m, uint64_t key);            /* NULL if absent */
void u64map_put(u64map *m, uint64_t key, void *val);        /* insert or replace; key != 0 */
void *u64map_del(u64map *m, uint64_t key);                  /* the removed value, or NULL */
void u64map_free(u64map *m);                                /* frees storage; map is empty after */

#endif
