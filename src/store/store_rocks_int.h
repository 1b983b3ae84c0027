/* store_rocks_int.h — internals of the RocksDB backend shared by its files
 * (store_rocks.c: users, channels, messages; store_push.c: push
 * subscriptions and the outbox). Not part of the store interface.
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

#endif
