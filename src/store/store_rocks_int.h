/* store_rocks_int.h — internals of the RocksDB backend shared by its files
 * (store_rocks.c: users, channels, messages; store_rocks_social.c: read
 * state, friends, presence; store_rocks_kv.c: the batch overlay and channel
 * cache map; store_push.c: push subscriptions and the outbox). Not part of the store interface.
 *
 * Key spaces are one-byte prefixes; store_rocks.c documents its own. The
 * push file uses 'S' (subscription), 'U' (user -> subscriptions), 'P'
 * (pending note), 'Q' (due index), 'D' (dead letters), 'N' (counters).
 *
 * These primitives must keep their meaning whatever the backend does
 * inside (e.g. a plain write batch instead of an indexed one): a key written
 * with store__batch_put is visible to store__batch_get in the same open
 * batch, and to everything once the batch commits; a failed commit drops
 * them with the rest of the batch. */
#ifndef IY_STORE_ROCKS_INT_H
#define IY_STORE_ROCKS_INT_H
#include <rocksdb/c.h>
#include <stddef.h>
#include <stdint.h>
#include "store.h"

rocksdb_t *store__db(store *s);
rocksdb_readoptions_t *store__ropt(store *s);          /* point reads, no bounds */
rocksdb_writeoptions_t *store__wopt(store *s, int sync);

/* A fresh id from the store's generator (time-sortable, unique). */
uint64_t store__new_id(store *s);

/* The store an open batch belongs to. */
store *store__batch_store(store_batch *b);

/* Puts (v != NULL) or deletes (v == NULL) a key in the open batch. */
void store__batch_put(store_batch *b, const void *k, size_t kl, const void *v, size_t vl);

/* Reads a key through the open batch: 0 and *v (malloc'd, iy_free) /
 * *vl, IY_ENOTFOUND, IY_EIO. */
int store__batch_get(store_batch *b, const void *k, size_t kl, char **v, size_t *vl);

/* Reads a committed key: 0 and *v (malloc'd, iy_free) / *vl, IY_ENOTFOUND, IY_EIO. */
int store__get(store *s, const void *k, size_t kl, char **v, size_t *vl);


/* ---- shared by store_rocks*.c (the core backend, not the push file) ----- */

/* A byte-keyed map of small records (store_rocks_kv.c): the open batch's
 * readable writes and the committed channel cache. A NULL value is a
 * tombstone. Zero-initialised is empty. */
typedef struct store__kv_ent {
    uint8_t *p;          /* key bytes, then value bytes */
    uint64_t h;
    uint32_t kl, vl;
    int del;
} store__kv_ent;

typedef struct store__kvmap {
    store__kv_ent *v;
    size_t n, nv;        /* entries used / allocated */
    uint32_t *idx;       /* entry number + 1, 0 = empty; cap slots */
    size_t cap;
    size_t bytes;        /* keys + values held */
} store__kvmap;

/* 1 with *v and *vl (valid until the next put or clear), 2 if a tombstone, 0 if absent. */
int store__kv_get(const store__kvmap *m, const void *k, size_t kl, const uint8_t **v, size_t *vl);
void store__kv_put(store__kvmap *m, const void *k, size_t kl, const void *v, size_t vl);
/* Puts every entry of src whose key keep() accepts into dst. */
void store__kv_merge(store__kvmap *dst, const store__kvmap *src,
                     int (*keep)(const uint8_t *k, size_t kl));
void store__kv_clear(store__kvmap *m);
void store__kv_free(store__kvmap *m);

/* store_rocks.c, for store_rocks_social.c. */
int store__rerr(char *err, const char *what);                  /* logs, frees err: IY_EIO */
int store__corrupt(const char *what);                          /* logs: IY_EIO */
int store__write_sync(store *s, rocksdb_writebatch_t *wb);     /* destroys wb */
int store__user_load(store *s, uint64_t id, iy_user *out, char *pwhash);
int store__seq_committed(store *s, uint64_t channel, uint64_t *seq);
/* An iterator over [lo, hi) (bounds valid until closed; one scan at a time),
 * and its close: 0 or IY_EIO if the scan stopped on an error. */
rocksdb_iterator_t *store__scan_open(store *s, const uint8_t *lo, size_t lol,
                                     const uint8_t *hi, size_t hil);
int store__scan_close(rocksdb_iterator_t *it);

/* Tests only: the next store_batch_commit fails as if the write had failed
 * (IY_EIO, nothing stored), to test that a failed commit undoes the batch's
 * in-memory state too. */
void store__fail_next_commit(store *s);

#endif
