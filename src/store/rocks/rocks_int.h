/* rocks_int.h — internals of the RocksDB backend shared by its files:
 * rocks.c (open, format, users, sessions, channels, settings, the ops
 * table), rocks_round.c (commit rounds, counters, history, sync, readers),
 * rocks_social.c (read state, friends, last_active), rocks_push.c (push
 * subscriptions and the outbox). Not part of the store interface.
 *
 * Key spaces are one-byte prefixes (rocks.c documents them). One process
 * owns the database (RocksDB's LOCK file), and in it one thread, the
 * storage thread, writes: so the caches below (channel records, counters)
 * are exact, since nothing else writes those records. */
#ifndef IY_ROCKS_INT_H
#define IY_ROCKS_INT_H
#include <pthread.h>
#include <rocksdb/c.h>
#include <stddef.h>
#include <stdint.h>
#include "../store_int.h"

/* The data format this binary writes ('V'; rocks.c lists the versions). */
#define ROCKS_FORMAT_VERSION 4u

typedef struct rocks {
    store_base base;                   /* first: the seam's dispatch */
    rocksdb_t *db;
    rocksdb_options_t *opt;
    rocksdb_cache_t *cache;
    rocksdb_readoptions_t *ropt;       /* point reads */
    rocksdb_readoptions_t *ropt_scan;  /* scans: bounds set per scan */
    rocksdb_readoptions_t *ropt_cold;  /* point reads not worth a cache block: fill_cache = 0 */
    rocksdb_readoptions_t *ropt_cold_scan; /* ... and scans */
    int64_t once_checked_ms;           /* rocks_once_view: when the cache's fill was last read */
    int once_warm;                     /* ... and whether it was (nearly) full */
    rocksdb_writeoptions_t *wopt;      /* sync = 1 */
    rocksdb_writeoptions_t *wopt_lazy; /* sync = 0: read state, last_active, leases */
    uint64_t total_msgs;               /* messages in the database (meta record) */
    u64map seq;                        /* channel -> newest committed seq */
    u64map pos;                        /* user -> newest committed pos */
    iy_kvmap chcache;                  /* committed 'c' and 'd' records (bounded) */
    rocksdb_writebatch_t *wb;          /* a round's writes, reused */
    iy_kvmap ovl;                      /* what a round's commit must read back (push notes) */
    iy_kvmap rdup;                     /* a round's (sender, channel) pairs whose 'R' is written */
    uint8_t *stg;                      /* a round's staged keys and values (rocks_round.c) */
    size_t stg_len, stg_cap;
    struct stage_ent *ents;            /* the staged writes, sorted by key before the batch */
    size_t nents, capents;
    int fail_next;                     /* tests: the next round commit fails */
    /* Disk space (storage thread; fault and free_mb also read by /healthz): */
    char *dir;                         /* the data directory, for statvfs */
    uint64_t min_free;                 /* the reserve, bytes */
    uint64_t free_at_check;            /* bytes free at the last statvfs */
    uint64_t written_since;            /* bytes handed to RocksDB since */
    int64_t checked_ms;                /* monotonic ms of the last statvfs; 0: never */
    _Atomic int fault;                 /* ROCKS_OK, ROCKS_LOW_SPACE, ROCKS_WRITE_FAILED */
    _Atomic uint64_t free_mb;
    /* Recovery from a failed write (EIO, ENOSPC inside RocksDB): RocksDB
     * keeps such an error sticky until the database is opened again, so
     * the storage thread closes and reopens it (rocks_recover). Readers on
     * other threads hold dblock (read) while they use db; the reopen holds
     * it (write). While the disk still fails, db is open read-only. */
    pthread_rwlock_t dblock;
    /* Exact counts (the storage thread is the only writer), so that a round
     * reads blocks and mutes only where there are some: */
    u64map blocked_n;                  /* user -> blocks against it ('B' records) */
    u64map muted_n;                    /* channel -> mutes of it ('X' records) */
    int readonly;                      /* db is open read-only, writes refused */
    int64_t reopen_ms;                 /* monotonic ms of the next reopen attempt */
    uint64_t failed_reopens;           /* since the write error, for the log */
} rocks;

enum { ROCKS_OK = 0, ROCKS_LOW_SPACE = 1, ROCKS_WRITE_FAILED = 2 };

/* What a read needs: the database and read options of its own (the
 * store's for the storage thread, a reader's for another thread). */
typedef struct rview {
    rocksdb_t *db;
    rocksdb_readoptions_t *ropt;
    rocksdb_readoptions_t *ropt_scan;
} rview;

static inline rview rocks_view(const rocks *s) { return (rview){ s->db, s->ropt, s->ropt_scan }; }

/* rocks.c */
int rocks_rerr(char *err, const char *what);                /* logs, frees err: IY_EIO */
rview rocks_once_view(rocks *s);                            /* reads done once per connection */
int rocks_corrupt(const char *what);                        /* logs: IY_EIO */
/* Point read: 1 with *val (rocksdb_free) and *vl, 0 if absent, IY_EIO. */
int rocks_get_v(const rview *rv, const uint8_t *k, size_t kl, char **val, size_t *vl);
int rocks_get(rocks *s, const uint8_t *k, size_t kl, char **val, size_t *vl);
/* Point read into a malloc'd copy: 0 (iy_free), IY_ENOTFOUND, IY_EIO. */
int rocks_get_copy(rocks *s, const void *k, size_t kl, char **v, size_t *vl);
int rocks_write(rocks *s, rocksdb_writebatch_t *wb, int sync);   /* destroys wb */
/* Every write goes through here: refused (IY_EUNAVAIL, nothing written)
 * when it would take the disk below the reserve; a failed write is
 * IY_EUNAVAIL too, and marks the store unhealthy until a write succeeds. */
int rocks_write_guarded(rocks *s, rocksdb_writeoptions_t *wo, rocksdb_writebatch_t *wb);
int rocks_room_for(rocks *s, uint64_t bytes);                 /* 1: the disk has room above the reserve */
int rocks_put_lazy(rocks *s, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl);
int rocks_user_load(const rview *rv, uint64_t id, iy_user *out, char *pwhash);
int rocks_channel_load(rocks *s, uint64_t id, iy_channel *out);   /* committed, cached */
int rocks_channel_decode(const uint8_t *v, size_t vl, uint64_t id, iy_channel *out);
size_t rocks_channel_encode(uint8_t *v, const iy_channel *c);
int rocks_direct_load(rocks *s, uint64_t a, uint64_t b, uint64_t *channel);  /* cached */
void rocks_chcache_put(rocks *s, const uint8_t *k, size_t kl, const void *v, size_t vl);
void rocks_put_meta(rocks *s, rocksdb_writebatch_t *wb, uint64_t extra_msgs);
/* An iterator over [lo, hi) (bounds valid until closed; one scan at a time
 * per view), and its close: 0 or IY_EIO if the scan stopped on an error. */
rocksdb_iterator_t *rocks_scan_open(const rview *rv, const uint8_t *lo, size_t lol,
                                    const uint8_t *hi, size_t hil);
int rocks_scan_close(rocksdb_iterator_t *it);
int rocks_user_channels(store *s, uint64_t user, uint64_t **out, size_t *n);
int rocks_user_channels_v(const rview *rv, uint64_t user, uint64_t **out, size_t *n);

/* rocks_search.c: the search index (store.h, "search") */
store_indexer *rocks_indexer_new(store *s);
/* A reader's search connection (opened at its first search; NULL: none yet). */
typedef struct sqlite3 sqlite3;
int rocks_search_v(const char *dir, sqlite3 **db, const uint64_t *channels, size_t n, const char *q,
                   size_t qlen, uint64_t before, int limit, store_hit **out, size_t *nout);
void rocks_search_close(sqlite3 *db);

#define CHANNEL_VAL_MAX (1 + 8 + 2 + IY_GROUP_NAME_MAX + 2 + 8 * (IY_GROUP_MAX + 1))

/* rocks_copy.c: store_copy */
int rocks_copy(store *s, const char *dir, store_copy_info *info);

/* rocks_round.c */
int rocks_round_load(store *s, store_round *r);
int rocks_round_commit(store *s, store_round *r);
int rocks_target_locate(store *s, uint64_t id, uint64_t *channel);   /* 'i' */
int rocks_targets_load(store *s, store_round *r);
int rocks_build_msgid_index(rocks *s);                                /* format 4 upgrade */
/* The messages an 'i' record lists: plain ones, and the events that change one. */
static inline int rocks_id_indexed(int event)
{
    return event == IY_EV_NONE || event == IY_EV_EDITED || event == IY_EV_DELETED;
}
/* The channel and seq of message id ('i'): 0, IY_ENOTFOUND, IY_EIO. */
int rocks_msg_locate(const rview *rv, uint64_t id, uint64_t *channel, uint64_t *seq);
/* Message (channel, seq), which must exist: 0, IY_EIO. */
int rocks_msg_get(const rview *rv, uint64_t channel, uint64_t seq, iy_msg *m);
int rocks_counter(rocks *s, int type, uint64_t id, uint64_t *out);   /* committed seq / pos */
int rocks_load_last_v(const rview *rv, int type, uint64_t id, uint64_t *out);
int rocks_user_pos(store *s, uint64_t user, uint64_t *pos);
int rocks_history(store *s, uint64_t channel, uint64_t before_seq, uint64_t after_seq, int limit,
                  iy_msg_list *out);
int rocks_sync(store *s, uint64_t user, uint64_t after, int limit, iy_msg_list *out, int *more);
int rocks_channel_last(store *s, uint64_t channel, iy_msg *out);
int rocks_history_v(const rview *rv, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                    int limit, iy_msg_list *out);
int rocks_sync_v(const rview *rv, uint64_t user, uint64_t after, int limit, iy_msg_list *out,
                 int *more);

/* rocks_social.c */
int rocks_read_set(store *s, uint64_t user, uint64_t channel, uint64_t seq, uint64_t *now);
int rocks_read_get(store *s, uint64_t user, uint64_t channel, uint64_t *seq);
int rocks_friend_state(store *s, uint64_t a, uint64_t b, int *state);
int rocks_block_set(store *s, uint64_t blocker, uint64_t blocked, int on);
int rocks_blocked(store *s, uint64_t blocker, uint64_t blocked);
int rocks_block_list(store *s, uint64_t blocker, uint64_t **ids, size_t *n);
int rocks_blocks_load(store *s, store_round *r);
int rocks_names_load(store *s, store_round *r);
int rocks_mute_set(store *s, uint64_t user, uint64_t channel, int on);
int rocks_social_counts_load(rocks *s);   /* blocked_n, muted_n from the database: 0, IY_EIO */
int rocks_muted(store *s, uint64_t user, uint64_t channel);
int rocks_friend_set(store *s, uint64_t a, uint64_t b, int expect_a, int state_a);
int rocks_friend_list(store *s, uint64_t user, uint64_t **f, size_t *nf, uint64_t **in, size_t *ni,
                      uint64_t **out, size_t *no);
int rocks_share_channel(store *s, uint64_t a, uint64_t b);
int rocks_last_active_set(store *s, uint64_t user, int64_t ms);
int rocks_last_active_set_many(store *s, const uint64_t *users, const int64_t *ms, size_t n);
int rocks_friends_of(store *s, const uint64_t *users, size_t n, uint64_t **pairs, size_t *np);
int rocks_last_active_get(store *s, uint64_t user, int64_t *ms);

/* rocks_push.c */
int rocks_push_sub_create(store *s, iy_push_sub *sub);
int rocks_push_sub_delete(store *s, uint64_t user, uint64_t id);
int rocks_push_sub_get(store *s, uint64_t id, iy_push_sub *out);
/* Into wb: deletes user's subscriptions made by the session token_hash,
 * with their pending notes (store_session_delete). */
int rocks_push_subs_of_session_wb(store *s, rocksdb_writebatch_t *wb, uint64_t user,
                                  const uint8_t token_hash[32]);
/* In a round's commit: queues the notes of the message m (text) for user
 * into wb, reading pending notes through s->ovl. */
int rocks_push_queue(rocks *s, rocksdb_writebatch_t *wb, uint64_t user, const iy_msg *m,
                     const char *text, size_t text_len);
int rocks_push_take(store *s, int64_t now_ms, int64_t lease_ms, int all, size_t max,
                    iy_push_note **out, size_t *n);
int rocks_push_done(store *s, const iy_push_note *note, int done, int dead, int64_t retry_ms);
int rocks_push_counts(store *s, uint64_t *pending, uint64_t *dead);

/* Tests only: the next round commit fails as if the write had failed
 * (IY_EIO, nothing stored), to test that a failed commit changes nothing. */
void store_rocks_fail_next_commit(store *s);

#endif
