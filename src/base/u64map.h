/* u64map.h — an open-addressing hash map from nonzero uint64_t keys to
 * uint64_t values: per-thread registries (connection id -> connection,
 * user id -> first connection, through the pointer wrappers) and the
 * store's counters (channel -> newest seq). Not thread-safe. Key 0 is
 * reserved (empty slot). Deletion shifts entries back, so there are no
 * tombstones and lookups stay short. A zeroed u64map is an empty map. */
#ifndef IY_U64MAP_H
#define IY_U64MAP_H
#include <stddef.h>
#include <stdint.h>

typedef struct u64map {
    uint64_t *keys;
    uint64_t *vals;
    size_t cap;     /* power of two, or 0 */
    size_t n;
} u64map;

uint64_t *u64map_find(const u64map *m, uint64_t key);       /* the value's slot, or NULL */
void u64map_set(u64map *m, uint64_t key, uint64_t val);     /* insert or replace; key != 0 */
void u64map_clear(u64map *m);                               /* empty, keeps the memory */
void u64map_free(u64map *m);                                /* frees storage; map is empty after */

/* Pointer values. */
void *u64map_get(const u64map *m, uint64_t key);            /* NULL if absent */
void u64map_put(u64map *m, uint64_t key, void *val);        /* insert or replace; key != 0 */
void *u64map_del(u64map *m, uint64_t key);                  /* the removed value, or NULL */

#endif
