/* kvmap.h — a byte-keyed hash map of small records: a commit round's view
 * (direct pairs, cmids), the RocksDB backend's channel cache and the
 * overlay of writes a round must read back.
 *
 * Each entry is one malloc'd block, key bytes then value bytes; a NULL
 * value is a tombstone (deleted). Open addressing with linear probing over
 * an index of entry numbers; entries are only removed all at once
 * (iy_kv_clear), so the index has no tombstone slots. `bytes` counts keys
 * and values held, for a caller's bound. Zero-initialised is empty. Not
 * thread-safe. */
#ifndef IY_KVMAP_H
#define IY_KVMAP_H
#include <stddef.h>
#include <stdint.h>

typedef struct iy_kv_ent {
    uint8_t *p;          /* key bytes, then value bytes */
    uint64_t h;
    uint32_t kl, vl;
    int del;
} iy_kv_ent;

typedef struct iy_kvmap {
    iy_kv_ent *v;
    size_t n, nv;        /* entries used / allocated */
    uint32_t *idx;       /* entry number + 1, 0 = empty; cap slots */
    size_t cap;
    size_t bytes;        /* keys + values held */
} iy_kvmap;

/* 1 with *v and *vl (valid until the next put or clear), 2 if a tombstone, 0 if absent. */
int iy_kv_get(const iy_kvmap *m, const void *k, size_t kl, const uint8_t **v, size_t *vl);

/* Inserts or replaces; v NULL puts a tombstone. */
void iy_kv_put(iy_kvmap *m, const void *k, size_t kl, const void *v, size_t vl);

/* Puts every entry of src whose key keep() accepts into dst. */
void iy_kv_merge(iy_kvmap *dst, const iy_kvmap *src, int (*keep)(const uint8_t *k, size_t kl));

void iy_kv_clear(iy_kvmap *m);   /* empty, keeps the index */
void iy_kv_free(iy_kvmap *m);    /* frees everything; empty afterwards */

#endif
