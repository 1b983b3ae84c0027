/* store_rocks.c — the embedded backend of store.h on RocksDB.
 *
 * One RocksDB database in DIR/db. Every record lives in the default column
 * family under a one-byte type prefix; integers in keys are big-endian so
 * that byte order is numeric order and a channel's messages (or a user's
 * inbox) are one contiguous, seq-ordered (pos-ordered) key range.
 *
 *   key                                   value
 *   'm'                                   last_id u64, msg_count u64
 *   'u' user                              ulen u8, username, dlen u16, display, hlen u8, pwhash
 *   'n' username                          user u64
 *   's' sha256(token) [32]                user u64, dlen u8, device
 *   'c' channel                           kind u8, owner u64, nlen u16, name, n u16, members u64*n
 *   'd' min(a,b) max(a,b)                 channel u64
 *   'x' user channel                      (empty)              the user -> channels index
 *   'M' channel seq                       id u64, from u64, flags u8, cmid, [event], text
 *   'I' user pos                          channel u64, seq u64 (a reference, never the text)
 *   'C' user cmid                         channel u64, seq u64, id u64, sender pos u64
 *   'R' user channel                      read seq u64
 *   'F' a b                               state u8 (enum iy_friend_state, a's side)
 *   'L' user                              last_active ms i64
 *
 * All values are big-endian too. ts is never stored: it is the id's ms.
 *
 * Message values. flags is the cmid length (0..IY_CMID_MAX < 0x80) with bit
 * 0x80 set when an event block follows the cmid: event u8, subject u64. A
 * user's message never sets the bit, so its record is byte for byte what
 * the first version wrote, and old records read as event 0.
 *
 * Friends. A request from a to b is the pair 'F' a b = OUTGOING and
 * 'F' b a = INCOMING; acceptance turns both into MUTUAL; delete removes both.
 * So each side's lists are one scan of its own 'F' range.
 *
 * Membership events (store_batch_add with iy_send.event) rewrite the 'c'
 * record and the 'x' index inside the open batch, next to their 'M' record:
 * a later add of the same batch reads the channel through the batch's
 * overlay (below) and sees the change, and a failed or dropped batch loses
 * it with the message.
 *
 * Channel cache. 'c' and 'd' records are read on every send; committed
 * ones are cached in memory (s->chcache, dropped whole past 32 MiB). Only
 * committed state enters it: a miss loads from the database, and a
 * successful commit merges the batch's 'c'/'d' writes in. A failed commit
 * never touches it. Nothing else writes those records after creation
 * (store_group_create writes a new id, never cached before).
 *
 * Read state. A message sets its sender's 'R' to its seq in the batch.
 * store_read_set clamps to the channel's committed newest seq, so 'R' never
 * passes the newest seq and a send (always newest + 1) only moves it forward.
 * 'R' and 'L' are written with sync = 0: the WAL keeps them across a
 * process crash; only a machine crash may lose the newest moves.
 *
 * Counters. The newest committed seq of each channel and pos of each user
 * are cached in two open-addressing maps, loaded lazily by seeking to the
 * last key of the channel's 'M' range (the user's 'I' range). A batch keeps
 * its assignments in two "pending" maps of its own, consulted first; a
 * successful commit folds them into the committed maps, a failed or dropped
 * batch just clears them. Because a crash loses the whole unsynced batch
 * and the counters are recomputed from the database on the next open, seq
 * and pos stay gap-free across failures and crashes.
 *
 * Batches. The open batch is a plain WriteBatch plus an "overlay"
 * (store__kvmap) holding the few writes a later add may read back: 'c',
 * 'd', 'C' and the push file's records (store__batch_put). A lookup in the
 * batch path (cmid duplicates, a direct channel created by an earlier
 * message of the same batch, a changed group) reads the overlay, then the
 * committed cache or database. (A WriteBatchWithIndex did this for every
 * key, at ~20% of the storage thread: its skiplist insert per put.) store_batch_add does every read first and writes into
 * the batch only once nothing can fail any more, so a failed add leaves the
 * batch unchanged. Commit appends the meta record and writes with sync=1:
 * one sync per batch, which is the group commit.
 *
 *   closed --begin--> open --add*--> open --commit--> closed
 *                       \                 (ok: pending -> committed;
 *                        \                 EIO: pending dropped)
 *                         store_free: an open batch is discarded.
 */
#include "store.h"
#include "store_rocks_int.h"
#include "store_rocks_enc.h"
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../base/alloc.h"
#include "../base/u64map.h"
#include "../base/err.h"
#include "../base/log.h"

#define EPOCH_MS 1704067200000LL  /* 2024-01-01T00:00:00Z */
#define NODE_MAX 1023u

/* Counters (channel -> seq, user -> pos) live in src/base/u64map; ids are
 * never 0, the one key it reserves. */

static void map_merge(u64map *dst, const u64map *src)
{
    for (size_t i = 0; i < src->cap; i++)
        if (src->keys[i]) u64map_set(dst, src->keys[i], src->vals[i]);
}

/* ---- the store --------------------------------------------------------- */

struct store_batch {
    store *s;
    rocksdb_writebatch_t *wb;
    store__kvmap ovl;    /* the batch's writes it may read back: 'c', 'd', 'C', push */
    u64map seq;          /* channel -> newest seq assigned in this batch */
    u64map pos;          /* user -> newest pos assigned in this batch */
    uint64_t nmsgs;
    int open;
};

struct store {
    rocksdb_t *db;
    rocksdb_options_t *opt;
    rocksdb_cache_t *cache;
    rocksdb_readoptions_t *ropt;       /* point reads */
    rocksdb_readoptions_t *ropt_scan;  /* scans: bounds set per scan */
    rocksdb_writeoptions_t *wopt;      /* sync = 1 */
    rocksdb_writeoptions_t *wopt_lazy; /* sync = 0: read state, last_active */
    uint64_t node;
    uint64_t last_id;                  /* newest id handed out */
    uint64_t msg_count;                /* committed messages */
    u64map seq;                        /* channel -> newest committed seq */
    u64map pos;                        /* user -> newest committed pos */
    store__kvmap chcache;              /* committed 'c' and 'd' records (bounded) */
    int fail_next;                     /* tests: the next commit fails */
    store_batch batch;
};

/* What a read needs: the database and read options of their own (the
 * store's for the storage thread, a reader's for another thread). */
typedef struct rview {
    rocksdb_t *db;
    rocksdb_readoptions_t *ropt;       /* point reads */
    rocksdb_readoptions_t *ropt_scan;  /* scans: bounds set per scan */
} rview;

struct store_reader {
    rview v;
};

static rview store_view(const store *s) { return (rview){ s->db, s->ropt, s->ropt_scan }; }

/* Logs a RocksDB error string once, frees it, returns IY_EIO. */
static int rerr(char *err, const char *what)
{
    iy_log("store: %s: %s", what, err);
    rocksdb_free(err);
    return IY_EIO;
}

static int corrupt(const char *what)
{
    iy_log("store: corrupt %s record", what);
    return IY_EIO;
}

/* Point read of committed state.
 * Returns 1 with *val (free with rocksdb_free) and *vlen, 0 if absent, IY_EIO. */
static int kv_get_v(const rview *rv, const uint8_t *k, size_t kl, char **val, size_t *vlen)
{
    char *err = NULL;
    *val = rocksdb_get(rv->db, rv->ropt, (const char *)k, kl, vlen, &err);
    if (err) return rerr(err, "get");
    return *val != NULL;
}

static int kv_get(store *s, const uint8_t *k, size_t kl, char **val, size_t *vlen)
{
    rview rv = store_view(s);
    return kv_get_v(&rv, k, kl, val, vlen);
}

/* Writes a small batch of non-message records with one sync. */
static int write_sync(store *s, rocksdb_writebatch_t *wb)
{
    char *err = NULL;
    rocksdb_write(s->db, s->wopt, wb, &err);
    rocksdb_writebatch_destroy(wb);
    return err ? rerr(err, "write") : 0;
}

/* The meta record as of now plus extra uncommitted messages. */
static size_t meta_value(const store *s, uint64_t extra, uint8_t v[16])
{
    put64(v, s->last_id);
    put64(v + 8, s->msg_count + extra);
    return 16;
}

static void put_meta(store *s, rocksdb_writebatch_t *wb)
{
    uint8_t k = K_META, v[16];
    rocksdb_writebatch_put(wb, (const char *)&k, 1, (const char *)v, meta_value(s, 0, v));
}

/* The next id: ms since EPOCH_MS << 22 | node << 12 | counter, strictly
 * increasing. When the clock stands still or goes back we continue from the
 * last id's ms; a counter overflow borrows the next ms. */
static uint64_t next_id(store *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - EPOCH_MS;
    uint64_t ms = now > 0 ? (uint64_t)now : 1, ctr = 0;
    uint64_t last_ms = s->last_id >> 22;
    if (ms <= last_ms) {
        ms = last_ms;
        ctr = (s->last_id & 0xfff) + 1;
        if (ctr > 0xfff) {
            ms++;
            ctr = 0;
        }
    }
    uint64_t id = ms << 22 | s->node << 12 | ctr;
    if (id <= s->last_id) id = (ms + 1) << 22 | s->node << 12;  /* node number changed */
    s->last_id = id;
    return id;
}

static int64_t id_ts(uint64_t id) { return (int64_t)(id >> 22) + EPOCH_MS; }

/* ---- open / close ------------------------------------------------------ */

static rocksdb_options_t *make_options(store *s)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_max_background_jobs(o, 2);
    rocksdb_options_set_max_open_files(o, 256);   /* sockets share the 20,000 fd cap */
    rocksdb_options_set_write_buffer_size(o, 32u << 20);
    rocksdb_options_set_max_write_buffer_number(o, 3);
    rocksdb_options_set_target_file_size_base(o, 64u << 20);
    rocksdb_options_set_max_bytes_for_level_base(o, 256u << 20);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
    rocksdb_options_set_bytes_per_sync(o, 1u << 20);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    rocksdb_options_set_keep_log_file_num(o, 4);
    /* A memtable bloom filter: most point reads of the write path (cmid,
     * direct pair) are misses or hit the memtable. */
    rocksdb_options_set_memtable_whole_key_filtering(o, 1);
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.02);
    rocksdb_options_set_max_log_file_size(o, 8u << 20);

    /* Index and filter blocks go through the block cache (memory stays
     * bounded) in high priority, L0's pinned. The cache has ONE shard: by
     * default a 64 MiB LRU cache has 64 shards of 1 MiB, and a filter
     * block larger than its shard is never admitted, so every Get re-read
     * and re-checksummed it from the file (perf: ReadFilterBlock and
     * _copy_to_iter, ~40% of the storage thread, worse as files grew).
     * One thread reads the store, so one shard costs no contention.
     * (Table readers holding them, cache_index_and_filter_blocks = 0, did
     * not help: readers opened without prefetching still re-read the
     * filter on every Get.) */
    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
    rocksdb_lru_cache_options_t *co = rocksdb_lru_cache_options_create();
    rocksdb_lru_cache_options_set_capacity(co, 64u << 20);
    rocksdb_lru_cache_options_set_num_shard_bits(co, 0);
    s->cache = rocksdb_cache_create_lru_opts(co);
    rocksdb_lru_cache_options_destroy(co);
    rocksdb_block_based_options_set_block_cache(t, s->cache);
    rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_whole_key_filtering(t, 1);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(t, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
    rocksdb_block_based_options_set_format_version(t, 5);
    rocksdb_options_set_block_based_table_factory(o, t);
    rocksdb_block_based_options_destroy(t);
    return o;
}

static int load_meta(store *s)
{
    uint8_t k = K_META;
    char *v;
    size_t vl;
    int rc = kv_get(s, &k, 1, &v, &vl);
    if (rc <= 0) return rc;
    if (vl != 16) {
        rocksdb_free(v);
        return corrupt("meta");
    }
    s->last_id = get64((const uint8_t *)v);
    s->msg_count = get64((const uint8_t *)v + 8);
    rocksdb_free(v);
    return 0;
}

int store_open(const char *dir, unsigned node, store **out)
{
    *out = NULL;
    if (node > NODE_MAX) {
        iy_log("store: node %u out of range 0..%u", node, NODE_MAX);
        return IY_EIO;
    }
    store *s = iy_calloc(1, sizeof *s);
    s->node = node;
    s->batch.s = s;
    s->opt = make_options(s);
    s->ropt = rocksdb_readoptions_create();
    s->ropt_scan = rocksdb_readoptions_create();
    s->wopt = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wopt, 1);
    s->wopt_lazy = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wopt_lazy, 0);

    size_t dl = strlen(dir);
    char *path = iy_malloc(dl + 4);
    memcpy(path, dir, dl);
    memcpy(path + dl, "/db", 4);
    char *err = NULL;
    s->db = rocksdb_open(s->opt, path, &err);
    iy_free(path);
    if (err) {
        rerr(err, "open");
        goto err;
    }
    if (load_meta(s) != 0) goto err;
    s->batch.wb = rocksdb_writebatch_create();
    *out = s;
    return 0;
err:
    store_free(s);
    return IY_EIO;
}

void store_free(store *s)
{
    if (!s) return;
    /* An open batch is discarded: nothing of it was written. */
    if (s->batch.wb) rocksdb_writebatch_destroy(s->batch.wb);
    store__kv_free(&s->batch.ovl);
    store__kv_free(&s->chcache);
    u64map_free(&s->batch.seq);
    u64map_free(&s->batch.pos);
    if (s->db) rocksdb_close(s->db);
    if (s->wopt_lazy) rocksdb_writeoptions_destroy(s->wopt_lazy);
    if (s->wopt) rocksdb_writeoptions_destroy(s->wopt);
    if (s->ropt_scan) rocksdb_readoptions_destroy(s->ropt_scan);
    if (s->ropt) rocksdb_readoptions_destroy(s->ropt);
    if (s->opt) rocksdb_options_destroy(s->opt);
    if (s->cache) rocksdb_cache_destroy(s->cache);
    u64map_free(&s->seq);
    u64map_free(&s->pos);
    iy_free(s);
}

/* ---- scans ------------------------------------------------------------- */

/* An iterator over [lo, hi) (either bound may be NULL). The bounds must stay
 * valid until the iterator is destroyed; one scan at a time. */
static rocksdb_iterator_t *scan_open_v(const rview *rv, const uint8_t *lo, size_t lol,
                                       const uint8_t *hi, size_t hil)
{
    rocksdb_readoptions_set_iterate_lower_bound(rv->ropt_scan, (const char *)lo, lo ? lol : 0);
    rocksdb_readoptions_set_iterate_upper_bound(rv->ropt_scan, (const char *)hi, hi ? hil : 0);
    return rocksdb_create_iterator(rv->db, rv->ropt_scan);
}

static rocksdb_iterator_t *scan_open(store *s, const uint8_t *lo, size_t lol, const uint8_t *hi,
                                     size_t hil)
{
    rview rv = store_view(s);
    return scan_open_v(&rv, lo, lol, hi, hil);
}

/* Destroys it; returns 0 or IY_EIO if the scan stopped on an error. */
static int scan_close(rocksdb_iterator_t *it)
{
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    return err ? rerr(err, "scan") : 0;
}

/* The last 8 bytes of the newest 17-byte key type+id+n (0 if none). */
static int load_last_v(const rview *rv, int type, uint64_t id, uint64_t *out)
{
    uint8_t lo[9], target[17];
    key1(lo, type, id);
    key2(target, type, id, UINT64_MAX);
    rocksdb_iterator_t *it = scan_open_v(rv, lo, 9, NULL, 0);
    rocksdb_iter_seek_for_prev(it, (const char *)target, 17);
    *out = 0;
    if (rocksdb_iter_valid(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl == 17 && memcmp(k, lo, 9) == 0) *out = get64(k + 9);
    }
    return scan_close(it);
}

/* The newest committed counter of id in map m (type K_MSG: seq, K_INBOX: pos). */
static int counter_committed(store *s, u64map *m, int type, uint64_t id, uint64_t *out)
{
    uint64_t *v = u64map_find(m, id);
    if (v) {
        *out = *v;
        return 0;
    }
    rview rv = store_view(s);
    int rc = load_last_v(&rv, type, id, out);
    if (rc == 0) u64map_set(m, id, *out);
    return rc;
}

/* The newest counter as the open batch sees it. */
static int counter_pending(store_batch *b, int type, uint64_t id, uint64_t *out)
{
    u64map *pm = type == K_MSG ? &b->seq : &b->pos;
    uint64_t *v = u64map_find(pm, id);
    if (v) {
        *out = *v;
        return 0;
    }
    return counter_committed(b->s, type == K_MSG ? &b->s->seq : &b->s->pos, type, id, out);
}

/* ---- messages: decoding and lists --------------------------------------- */

void iy_msg_clear(iy_msg *m)
{
    if (!m) return;
    iy_free(m->text);
    m->text = NULL;
    m->text_len = 0;
}

void iy_msg_list_clear(iy_msg_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) iy_msg_clear(&l->v[i]);
    iy_free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Decodes an 'M' value into m (text copied, NUL-terminated). */
static int msg_decode(const char *v, size_t vl, uint64_t channel, uint64_t seq, iy_msg *m)
{
    rd r = { (const uint8_t *)v, vl, 0 };
    memset(m, 0, sizeof *m);
    m->channel = channel;
    m->seq = seq;
    m->id = rd_u64(&r);
    m->from = rd_u64(&r);
    unsigned flags = rd_u8(&r);
    rd_str(&r, flags & ~MSG_F_EVENT, m->cmid, IY_CMID_MAX);
    if (flags & MSG_F_EVENT) {
        m->event = (int)rd_u8(&r);
        m->subject = rd_u64(&r);
    }
    if (r.bad) return corrupt("message");
    m->ts = id_ts(m->id);
    m->text = iy_strndup((const char *)r.p, r.n);
    m->text_len = r.n;
    return 0;
}

/* A new zeroed element at the end of l, which has room for cap elements. */
static iy_msg *list_push(iy_msg_list *l, size_t *cap)
{
    if (l->n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        l->v = iy_realloc(l->v, *cap * sizeof *l->v);
    }
    iy_msg *m = &l->v[l->n++];
    memset(m, 0, sizeof *m);
    return m;
}

/* ---- users -------------------------------------------------------------- */

#define USER_VAL_MAX (1 + IY_USERNAME_MAX + 2 + IY_DISPLAY_MAX + 1 + 255)

static size_t user_encode(uint8_t *v, const char *username, size_t ul, const char *display,
                          size_t dl, const char *pwhash, size_t hl)
{
    wr w = { v, 0 };
    wr_u8(&w, (unsigned)ul);
    wr_mem(&w, username, ul);
    wr_u16(&w, (unsigned)dl);
    wr_mem(&w, display, dl);
    wr_u8(&w, (unsigned)hl);
    wr_mem(&w, pwhash, hl);
    return w.n;
}

/* Reads user id; 0 with *out (and pwhash if not NULL), IY_ENOTFOUND, IY_EIO. */
static int user_load(store *s, uint64_t id, iy_user *out, char *pwhash)
{
    uint8_t k[9];
    char *v;
    size_t vl;
    int rc = kv_get(s, k, key1(k, K_USER, id), &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    rd r = { (const uint8_t *)v, vl, 0 };
    char hash[256];
    out->id = id;
    rd_str(&r, rd_u8(&r), out->username, IY_USERNAME_MAX);
    rd_str(&r, rd_u16(&r), out->display_name, IY_DISPLAY_MAX);
    rd_str(&r, rd_u8(&r), hash, 255);
    rocksdb_free(v);
    if (r.bad) return corrupt("user");
    if (pwhash) memcpy(pwhash, hash, strlen(hash) + 1);
    return 0;
}

int store_user_create(store *s, const char *username, const char *display_name,
                      const char *pwhash, iy_user *out)
{
    size_t ul = strlen(username), dl = display_name ? strlen(display_name) : 0;
    size_t hl = strlen(pwhash);
    if (ul == 0 || ul > IY_USERNAME_MAX || dl > IY_DISPLAY_MAX || hl > 255) return IY_EINVAL;
    if (!display_name) display_name = "";

    /* Check-then-write is atomic: one thread calls the store. */
    uint8_t nk[1 + IY_USERNAME_MAX];
    nk[0] = K_UNAME;
    memcpy(nk + 1, username, ul);
    char *v;
    size_t vl;
    int rc = kv_get(s, nk, 1 + ul, &v, &vl);
    if (rc < 0) return rc;
    if (rc) {
        rocksdb_free(v);
        return IY_ECONFLICT;
    }

    uint64_t id = next_id(s);
    uint8_t k[9], idv[8], val[USER_VAL_MAX];
    size_t n = user_encode(val, username, ul, display_name, dl, pwhash, hl);
    put64(idv, id);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, key1(k, K_USER, id), (const char *)val, n);
    rocksdb_writebatch_put(wb, (const char *)nk, 1 + ul, (const char *)idv, 8);
    put_meta(s, wb);
    if ((rc = write_sync(s, wb)) != 0) return rc;

    out->id = id;
    memcpy(out->username, username, ul + 1);
    memcpy(out->display_name, display_name, dl + 1);
    return 0;
}

int store_user_get(store *s, uint64_t id, iy_user *out)
{
    return user_load(s, id, out, NULL);
}

int store_user_find(store *s, const char *username, iy_user *out, char pwhash[256])
{
    size_t ul = strlen(username);
    if (ul == 0 || ul > IY_USERNAME_MAX) return IY_ENOTFOUND;
    uint8_t nk[1 + IY_USERNAME_MAX];
    nk[0] = K_UNAME;
    memcpy(nk + 1, username, ul);
    char *v;
    size_t vl;
    int rc = kv_get(s, nk, 1 + ul, &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    uint64_t id = vl == 8 ? get64((const uint8_t *)v) : 0;
    rocksdb_free(v);
    if (vl != 8) return corrupt("username");
    rc = user_load(s, id, out, pwhash);
    return rc == IY_ENOTFOUND ? corrupt("username") : rc;   /* index without user */
}

int store_user_set_display_name(store *s, uint64_t id, const char *display_name)
{
    size_t dl = strlen(display_name);
    if (dl > IY_DISPLAY_MAX) return IY_EINVAL;
    iy_user u;
    char hash[256];
    int rc = user_load(s, id, &u, hash);
    if (rc) return rc;
    uint8_t k[9], val[USER_VAL_MAX];
    size_t n = user_encode(val, u.username, strlen(u.username), display_name, dl, hash,
                           strlen(hash));
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, key1(k, K_USER, id), (const char *)val, n);
    return write_sync(s, wb);
}

/* ---- sessions ------------------------------------------------------------ */

static void session_key(uint8_t k[33], const uint8_t token_hash[32])
{
    k[0] = K_SESSION;
    memcpy(k + 1, token_hash, 32);
}

int store_session_create(store *s, const uint8_t token_hash[32], uint64_t user, const char *device)
{
    size_t dl = device ? strlen(device) : 0;
    if (dl > IY_DEVICE_MAX) return IY_EINVAL;
    uint8_t k[33], val[8 + 1 + IY_DEVICE_MAX];
    wr w = { val, 0 };
    session_key(k, token_hash);
    wr_u64(&w, user);
    wr_u8(&w, (unsigned)dl);
    wr_mem(&w, device, dl);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, 33, (const char *)val, w.n);
    return write_sync(s, wb);
}

static int session_get_v(const rview *rv, const uint8_t token_hash[32], uint64_t *user,
                         char device[IY_DEVICE_MAX + 1])
{
    uint8_t k[33];
    char *v;
    size_t vl;
    session_key(k, token_hash);
    int rc = kv_get_v(rv, k, 33, &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    rd r = { (const uint8_t *)v, vl, 0 };
    *user = rd_u64(&r);
    rd_str(&r, rd_u8(&r), device, IY_DEVICE_MAX);
    rocksdb_free(v);
    return r.bad ? corrupt("session") : 0;
}

int store_session_get(store *s, const uint8_t token_hash[32], uint64_t *user,
                      char device[IY_DEVICE_MAX + 1])
{
    rview rv = store_view(s);
    return session_get_v(&rv, token_hash, user, device);
}

int store_session_delete(store *s, const uint8_t token_hash[32])
{
    uint8_t k[33];
    char *v;
    size_t vl;
    session_key(k, token_hash);
    int rc = kv_get(s, k, 33, &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    rocksdb_free(v);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_delete(wb, (const char *)k, 33);
    return write_sync(s, wb);
}

/* ---- channels ------------------------------------------------------------ */

#define CHANNEL_VAL_MAX (1 + 8 + 2 + IY_GROUP_NAME_MAX + 2 + 8 * (IY_GROUP_MAX + 1))

static size_t channel_encode(uint8_t *v, const iy_channel *c)
{
    wr w = { v, 0 };
    size_t nl = strlen(c->name);
    wr_u8(&w, (unsigned)c->kind);
    wr_u64(&w, c->owner);
    wr_u16(&w, (unsigned)nl);
    wr_mem(&w, c->name, nl);
    wr_u16(&w, c->nmembers);
    for (uint32_t i = 0; i < c->nmembers; i++) wr_u64(&w, c->members[i]);
    return w.n;
}

/* The committed cache of 'c' and 'd' records is dropped whole past this. */
#define CHCACHE_MAX_BYTES (32u << 20)

static int chcache_keep(const uint8_t *k, size_t kl)
{
    return (kl == 9 && k[0] == K_CHANNEL) || (kl == 17 && k[0] == K_DIRECT);
}

/* A 'c' or 'd' record as the batch b sees it (b NULL: committed): the
 * batch's own writes, else the committed cache, else the database (then
 * cached: only committed state is ever cached, and only commits change
 * these records). 1 with *v and *vl (valid until the next store call), 0 if
 * absent, IY_EIO. */
static int cached_get(store *s, store_batch *b, const uint8_t *k, size_t kl,
                      const uint8_t **v, size_t *vl)
{
    int f = b ? store__kv_get(&b->ovl, k, kl, v, vl) : 0;
    if (f == 0) f = store__kv_get(&s->chcache, k, kl, v, vl);
    if (f) return f == 1;
    char *val;
    int rc = kv_get(s, k, kl, &val, vl);
    if (rc <= 0) return rc;
    if (s->chcache.bytes > CHCACHE_MAX_BYTES) store__kv_clear(&s->chcache);
    store__kv_put(&s->chcache, k, kl, val, *vl);
    rocksdb_free(val);
    return store__kv_get(&s->chcache, k, kl, v, vl);
}

static int channel_decode(const uint8_t *v, size_t vl, uint64_t id, iy_channel *out);

/* Reads channel id as batch b sees it (b NULL: committed): 0, IY_ENOTFOUND, IY_EIO. */
static int channel_load(store *s, store_batch *b, uint64_t id, iy_channel *out)
{
    uint8_t k[9];
    const uint8_t *v;
    size_t vl;
    int rc = cached_get(s, b, k, key1(k, K_CHANNEL, id), &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    return channel_decode(v, vl, id, out);
}

/* Decodes a 'c' value: 0, IY_EIO. */
static int channel_decode(const uint8_t *v, size_t vl, uint64_t id, iy_channel *out)
{
    rd r = { v, vl, 0 };
    out->id = id;
    out->kind = (int)rd_u8(&r);
    out->owner = rd_u64(&r);
    rd_str(&r, rd_u16(&r), out->name, IY_GROUP_NAME_MAX);
    out->nmembers = rd_u16(&r);
    if (out->nmembers > IY_GROUP_MAX + 1) r.bad = 1;
    for (uint32_t i = 0; !r.bad && i < out->nmembers; i++) out->members[i] = rd_u64(&r);
    return r.bad ? corrupt("channel") : 0;
}

int store_channel_get(store *s, uint64_t id, iy_channel *out)
{
    return channel_load(s, NULL, id, out);
}

/* The direct channel of the pair a < b as batch bt sees it (NULL:
 * committed): 0, IY_ENOTFOUND, IY_EIO. */
static int direct_load(store *s, store_batch *bt, uint64_t a, uint64_t b, uint64_t *channel)
{
    uint8_t k[17];
    const uint8_t *v;
    size_t vl;
    int rc = cached_get(s, bt, k, key2(k, K_DIRECT, a, b), &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    *channel = vl == 8 ? get64(v) : 0;
    return vl == 8 ? 0 : corrupt("direct");
}

int store_direct_find(store *s, uint64_t a, uint64_t b, uint64_t *channel)
{
    return direct_load(s, NULL, a < b ? a : b, a < b ? b : a, channel);
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

int store_group_create(store *s, uint64_t creator, const char *name,
                       const uint64_t *members, size_t n, iy_channel *out)
{
    size_t nl = name ? strlen(name) : 0;
    if (nl > IY_GROUP_NAME_MAX) return IY_EINVAL;
    if (n > 4 * IY_GROUP_MAX) return IY_ETOOBIG;   /* bounds the copy below */

    /* Sorted, without duplicates, the creator included. */
    uint64_t *m = iy_malloc((n + 1) * sizeof *m);
    memcpy(m, members, n * sizeof *m);
    m[n] = creator;
    qsort(m, n + 1, sizeof *m, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i <= n; i++)
        if (u == 0 || m[i] != m[u - 1]) m[u++] = m[i];
    int rc = 0;
    if (u > IY_GROUP_MAX) rc = IY_ETOOBIG;
    else if (u < 2) rc = IY_EINVAL;
    for (size_t i = 0; rc == 0 && i < u; i++) {
        uint8_t k[9];
        char *v;
        size_t vl;
        rc = kv_get(s, k, key1(k, K_USER, m[i]), &v, &vl);
        if (rc == 1) rocksdb_free(v);
        rc = rc == 0 ? IY_ENOTFOUND : rc < 0 ? rc : 0;
    }
    if (rc) {
        iy_free(m);
        return rc;
    }

    memset(out, 0, sizeof *out);
    out->id = next_id(s);
    out->kind = IY_GROUP;
    memcpy(out->name, name ? name : "", nl + 1);
    out->owner = creator;
    out->nmembers = (uint32_t)u;
    memcpy(out->members, m, u * sizeof *m);
    iy_free(m);

    uint8_t k[17], val[CHANNEL_VAL_MAX];
    size_t vn = channel_encode(val, out);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, key1(k, K_CHANNEL, out->id), (const char *)val, vn);
    for (size_t i = 0; i < u; i++)
        rocksdb_writebatch_put(wb, (const char *)k, key2(k, K_UCHAN, out->members[i], out->id),
                               "", 0);
    put_meta(s, wb);
    return write_sync(s, wb);
}

int store_user_channels(store *s, uint64_t user, uint64_t **out, size_t *n)
{
    uint8_t lo[9], hi[9];
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    key1(lo, K_UCHAN, user);
    rocksdb_iterator_t *it = scan_open(s, lo, 9, hi, key1_succ(hi, K_UCHAN, user));
    for (rocksdb_iter_seek(it, (const char *)lo, 9); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl != 17) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = iy_realloc(*out, cap * sizeof **out);
        }
        (*out)[(*n)++] = get64(k + 9);
    }
    int rc = scan_close(it);
    if (rc) {
        iy_free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int store_channel_last(store *s, uint64_t channel, iy_msg *out)
{
    uint8_t lo[9], target[17];
    key1(lo, K_MSG, channel);
    key2(target, K_MSG, channel, UINT64_MAX);
    rocksdb_iterator_t *it = scan_open(s, lo, 9, NULL, 0);
    rocksdb_iter_seek_for_prev(it, (const char *)target, 17);
    int rc = IY_ENOTFOUND;
    if (rocksdb_iter_valid(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl == 17 && memcmp(k, lo, 9) == 0) rc = msg_decode(v, vl, channel, get64(k + 9), out);
    }
    int rc2 = scan_close(it);
    if (rc2 && rc == 0) iy_msg_clear(out);
    return rc2 ? rc2 : rc;
}

/* ---- message batches ------------------------------------------------------ */

store_batch *store_batch_begin(store *s)
{
    s->batch.open = 1;
    return &s->batch;
}

/* Drops everything the batch assigned and wrote; it is closed afterwards. */
static void batch_reset(store_batch *b)
{
    rocksdb_writebatch_clear(b->wb);
    store__kv_clear(&b->ovl);
    u64map_clear(&b->seq);
    u64map_clear(&b->pos);
    b->nmsgs = 0;
    b->open = 0;
}

/* The position of x in the ascending array v[0..n), or -1. */
static int find_member(const uint64_t *v, uint32_t n, uint64_t x)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v[mid] == x) return (int)mid;
        if (v[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* A write of the batch that a later add may read back ('c', 'd', 'C'):
 * into the write batch and the batch's overlay. */
static void batch_put_readable(store_batch *b, const uint8_t *k, size_t kl, const void *v,
                               size_t vl)
{
    rocksdb_writebatch_put(b->wb, (const char *)k, kl, (const char *)v, vl);
    store__kv_put(&b->ovl, k, kl, v, vl);
}

/* Looks (from, cmid) up in the batch and the database; on a hit fills out
 * with the original and returns IY_EEXIST; 0 if new; IY_EIO. A cmid of
 * this batch is in its overlay; an older one is a committed 'C' record,
 * and a new cmid is a Get that the bloom filters (memtable and SST, both
 * in memory) answer without reading a data block. */
static int cmid_lookup(store_batch *b, const uint8_t *k, size_t kl, const iy_send *in,
                       size_t cl, iy_stored *out)
{
    const uint8_t *p;
    char *v = NULL;
    size_t vl;
    int rc = store__kv_get(&b->ovl, k, kl, &p, &vl);
    if (rc == 0) {
        if ((rc = kv_get(b->s, k, kl, &v, &vl)) <= 0) return rc;
        p = (const uint8_t *)v;
    }
    if (vl != 32) {
        rocksdb_free(v);
        return corrupt("cmid");
    }
    memset(&out->msg, 0, sizeof out->msg);
    out->msg.channel = get64(p);
    out->msg.seq = get64(p + 8);
    out->msg.id = get64(p + 16);
    out->msg.pos = get64(p + 24);
    out->msg.from = in->from;
    out->msg.ts = id_ts(out->msg.id);
    memcpy(out->msg.cmid, in->cmid, cl + 1);
    out->nmembers = 0;
    rocksdb_free(v);   /* NULL if it came from the overlay */
    return IY_EEXIST;
}

/* Checks the membership event in (from is a member of group c, loaded
 * through the batch) and applies it to c, which then holds the channel
 * after the change. out->members gets everyone concerned: the members
 * after the change, plus the removed user for MEMBER_REMOVED (the members
 * before it, ascending too). Returns 0 or the error of store_batch_add;
 * c is unspecified after an error. */
static int event_apply(store *s, const iy_send *in, iy_channel *c, iy_stored *out)
{
    int rc, i;
    iy_user u;
    switch (in->event) {
    case IY_EV_MEMBER_ADDED:
        if (find_member(c->members, c->nmembers, in->subject) >= 0) return IY_ECONFLICT;
        if ((rc = user_load(s, in->subject, &u, NULL)) != 0) return rc;
        if (c->nmembers >= IY_GROUP_MAX) return IY_ETOOBIG;
        for (i = (int)c->nmembers; i > 0 && c->members[i - 1] > in->subject; i--)
            c->members[i] = c->members[i - 1];
        c->members[i] = in->subject;
        c->nmembers++;
        break;
    case IY_EV_MEMBER_REMOVED:
        if (in->from != in->subject && in->from != c->owner) return IY_EFORBIDDEN;
        if ((i = find_member(c->members, c->nmembers, in->subject)) < 0) return IY_ENOTFOUND;
        out->nmembers = c->nmembers;
        memcpy(out->members, c->members, c->nmembers * sizeof *c->members);
        c->nmembers--;
        memmove(c->members + i, c->members + i + 1,
                (c->nmembers - (uint32_t)i) * sizeof *c->members);
        /* The owner leaving hands the group to the lowest remaining id; an
         * empty group has no owner. */
        if (c->owner == in->subject) c->owner = c->nmembers ? c->members[0] : 0;
        return 0;
    case IY_EV_RENAMED:
        if (in->from != c->owner) return IY_EFORBIDDEN;
        if (in->text_len == 0 || in->text_len > IY_GROUP_NAME_MAX ||
            memchr(in->text, '\0', in->text_len))   /* the name is a C string */
            return IY_EINVAL;
        memcpy(c->name, in->text, in->text_len);
        c->name[in->text_len] = '\0';
        break;
    default:
        return IY_EINVAL;
    }
    out->nmembers = c->nmembers;
    memcpy(out->members, c->members, c->nmembers * sizeof *c->members);
    return 0;
}

int store_batch_add(store_batch *b, const iy_send *in, iy_stored *out)
{
    store *s = b->s;
    int ev = in->event;
    /* Events never use cmid idempotency: their cmid is ignored. */
    size_t cl = ev == IY_EV_NONE && in->cmid ? strlen(in->cmid) : 0;
    if ((in->channel != 0) == (in->to != 0) || in->to == in->from || cl > IY_CMID_MAX ||
        !b->open || ev < IY_EV_NONE || ev > IY_EV_RENAMED || (ev != IY_EV_NONE && in->to))
        return IY_EINVAL;

    /* Reads and checks first: nothing is written to the batch before the
     * last point of failure. */
    uint8_t ck[1 + 8 + IY_CMID_MAX];
    size_t ckl = 0;
    int rc;
    out->owner = 0;
    if (cl) {
        ck[0] = K_CMID;
        put64(ck + 1, in->from);
        memcpy(ck + 9, in->cmid, cl);
        ckl = 9 + cl;
        if ((rc = cmid_lookup(b, ck, ckl, in, cl, out)) != 0) return rc;
    }

    uint64_t ch = 0;
    int create = 0;
    iy_channel *c = NULL;    /* events: the channel after the change */
    if (in->to) {
        uint64_t a = in->from < in->to ? in->from : in->to;
        uint64_t z = in->from < in->to ? in->to : in->from;
        out->nmembers = 2;
        out->members[0] = a;
        out->members[1] = z;
        rc = direct_load(s, b, a, z, &ch);
        if (rc == IY_ENOTFOUND) {
            iy_user u;
            if ((rc = user_load(s, in->to, &u, NULL)) != 0) return rc;
            create = 1;
        } else if (rc) {
            return rc;
        }
    } else {
        c = iy_malloc(sizeof *c);
        ch = in->channel;
        rc = channel_load(s, b, ch, c);
        if (rc == 0 && ev != IY_EV_NONE && c->kind != IY_GROUP) rc = IY_EINVAL;
        if (rc == 0 && find_member(c->members, c->nmembers, in->from) < 0) rc = IY_EFORBIDDEN;
        if (rc == 0 && ev != IY_EV_NONE) {
            rc = event_apply(s, in, c, out);
        } else if (rc == 0) {
            out->nmembers = c->nmembers;
            memcpy(out->members, c->members, c->nmembers * sizeof *c->members);
        }
        if (rc) goto err;
        out->owner = c->owner;
    }

    uint64_t seq = 0;
    if (!create && (rc = counter_pending(b, K_MSG, ch, &seq)) != 0) goto err;
    seq++;
    for (uint32_t i = 0; i < out->nmembers; i++) {
        if ((rc = counter_pending(b, K_INBOX, out->members[i], &out->pos[i])) != 0) goto err;
        out->pos[i]++;
    }

    /* From here on nothing fails. */
    uint8_t k[17], val[CHANNEL_VAL_MAX];
    if (create) {
        iy_channel *d = iy_calloc(1, sizeof *d);
        uint8_t chv[8];
        ch = next_id(s);
        d->id = ch;
        d->kind = IY_DIRECT;
        d->nmembers = 2;
        d->members[0] = out->members[0];
        d->members[1] = out->members[1];
        size_t vn = channel_encode(val, d);
        iy_free(d);
        batch_put_readable(b, k, key1(k, K_CHANNEL, ch), val, vn);
        put64(chv, ch);
        batch_put_readable(b, k, key2(k, K_DIRECT, out->members[0], out->members[1]), chv, 8);
        for (int i = 0; i < 2; i++)
            rocksdb_writebatch_put(b->wb, (const char *)k,
                                   key2(k, K_UCHAN, out->members[i], ch), "", 0);
    }
    if (ev != IY_EV_NONE) {
        /* The membership or name change, atomic with its message. */
        size_t vn = channel_encode(val, c);
        batch_put_readable(b, k, key1(k, K_CHANNEL, ch), val, vn);
        if (ev == IY_EV_MEMBER_ADDED)
            rocksdb_writebatch_put(b->wb, (const char *)k,
                                   key2(k, K_UCHAN, in->subject, ch), "", 0);
        else if (ev == IY_EV_MEMBER_REMOVED)
            rocksdb_writebatch_delete(b->wb, (const char *)k,
                                      key2(k, K_UCHAN, in->subject, ch));
    }
    uint64_t subject = ev == IY_EV_MEMBER_ADDED || ev == IY_EV_MEMBER_REMOVED ? in->subject : 0;

    uint64_t id = next_id(s);
    uint8_t mk[17], hdr[8 + 8 + 1 + IY_CMID_MAX + 1 + 8];
    wr w = { hdr, 0 };
    wr_u64(&w, id);
    wr_u64(&w, in->from);
    wr_u8(&w, (unsigned)cl | (ev != IY_EV_NONE ? MSG_F_EVENT : 0));
    wr_mem(&w, in->cmid, cl);
    if (ev != IY_EV_NONE) {
        wr_u8(&w, (unsigned)ev);
        wr_u64(&w, subject);
    }
    const char *kp[1] = { (const char *)mk };
    const char *vp[2] = { (const char *)hdr, in->text_len ? in->text : "" };
    size_t kls[1] = { key2(mk, K_MSG, ch, seq) }, vls[2] = { w.n, in->text_len };
    rocksdb_writebatch_putv(b->wb, 1, kp, kls, 2, vp, vls);   /* the text is not copied twice */

    uint64_t sender_pos = 0;
    for (uint32_t i = 0; i < out->nmembers; i++) {
        uint8_t ik[17], iv[16];
        put64(iv, ch);
        put64(iv + 8, seq);
        rocksdb_writebatch_put(b->wb, (const char *)ik, key2(ik, K_INBOX, out->members[i],
                                  out->pos[i]), (const char *)iv, 16);
        u64map_set(&b->pos, out->members[i], out->pos[i]);
        if (out->members[i] == in->from) sender_pos = out->pos[i];
    }
    u64map_set(&b->seq, ch, seq);
    if (sender_pos) {
        /* The sender has read their own message (or event: a renamer has no
         * unread rename). seq is the channel's newest
         * and 'R' never passes the newest (store_read_set clamps), so this
         * only moves forward. */
        uint8_t rv[8];
        put64(rv, seq);
        rocksdb_writebatch_put(b->wb, (const char *)k, key2(k, K_READ, in->from, ch),
                                  (const char *)rv, 8);
    }
    if (cl) {
        uint8_t cv[32];
        put64(cv, ch);
        put64(cv + 8, seq);
        put64(cv + 16, id);
        put64(cv + 24, sender_pos);
        batch_put_readable(b, ck, ckl, cv, 32);
    }
    b->nmsgs++;
    iy_free(c);

    memset(&out->msg, 0, sizeof out->msg);
    out->msg.id = id;
    out->msg.channel = ch;
    out->msg.seq = seq;
    out->msg.pos = sender_pos;
    out->msg.from = in->from;
    out->msg.ts = id_ts(id);
    if (cl) memcpy(out->msg.cmid, in->cmid, cl + 1);
    out->msg.text_len = in->text_len;
    out->msg.event = ev;
    out->msg.subject = subject;
    return 0;
err:
    iy_free(c);
    return rc;
}

int store_batch_commit(store_batch *b)
{
    store *s = b->s;
    if (!b->open) return 0;
    if (b->nmsgs == 0) {
        batch_reset(b);
        return 0;
    }
    uint8_t k = K_META, v[16];
    rocksdb_writebatch_put(b->wb, (const char *)&k, 1, (const char *)v,
                           meta_value(s, b->nmsgs, v));
    char *err = NULL;
    if (s->fail_next) {
        s->fail_next = 0;
        err = strdup("injected failure (tests)");
    } else {
        rocksdb_write(s->db, s->wopt, b->wb, &err);
    }
    if (err) {
        batch_reset(b);   /* every seq/pos and overlay record of the batch is dropped */
        return rerr(err, "commit");
    }
    /* The batch's channel and direct-pair records are committed now. */
    if (s->chcache.bytes > CHCACHE_MAX_BYTES) store__kv_clear(&s->chcache);
    store__kv_merge(&s->chcache, &b->ovl, chcache_keep);
    map_merge(&s->seq, &b->seq);
    map_merge(&s->pos, &b->pos);
    s->msg_count += b->nmsgs;
    batch_reset(b);
    return 0;
}

int store_user_pos(store *s, uint64_t user, uint64_t *pos)
{
    return counter_committed(s, &s->pos, K_INBOX, user, pos);
}

uint64_t store_message_count(store *s)
{
    return s->msg_count;
}

/* ---- reading messages ------------------------------------------------------ */

static int history_v(const rview *rv, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                     int limit, iy_msg_list *out)
{
    uint8_t lo[9], hi[9], target[17];
    size_t cap = 0;
    out->v = NULL;
    out->n = 0;
    if (limit <= 0 || (before_seq == 0 && after_seq == UINT64_MAX)) return 0;

    key1(lo, K_MSG, channel);
    rocksdb_iterator_t *it = scan_open_v(rv, lo, 9, hi, key1_succ(hi, K_MSG, channel));
    if (before_seq) rocksdb_iter_seek_for_prev(it, (const char *)target,
                                               key2(target, K_MSG, channel, before_seq - 1));
    else rocksdb_iter_seek(it, (const char *)target, key2(target, K_MSG, channel, after_seq + 1));
    int rc = 0;
    while (rc == 0 && out->n < (size_t)limit && rocksdb_iter_valid(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl != 17) {
            rc = corrupt("message key");
            break;
        }
        iy_msg *m = list_push(out, &cap);
        if ((rc = msg_decode(v, vl, channel, get64(k + 9), m)) != 0) out->n--;
        if (before_seq) rocksdb_iter_prev(it);
        else rocksdb_iter_next(it);
    }
    int rc2 = scan_close(it);
    if (rc == 0) rc = rc2;
    if (rc) iy_msg_list_clear(out);
    return rc;
}

int store_history(store *s, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                  int limit, iy_msg_list *out)
{
    rview rv = store_view(s);
    return history_v(&rv, channel, before_seq, after_seq, limit, out);
}

/* Reads message (channel, seq) into m: 0, IY_EIO (also if it is missing:
 * an inbox entry always has its message). */
static int msg_get(const rview *rv, uint64_t channel, uint64_t seq, iy_msg *m)
{
    uint8_t k[17];
    char *err = NULL;
    rocksdb_pinnableslice_t *ps = rocksdb_get_pinned(rv->db, rv->ropt, (const char *)k,
                                                     key2(k, K_MSG, channel, seq), &err);
    if (err) return rerr(err, "get");
    if (!ps) return corrupt("inbox");
    size_t vl;
    const char *v = rocksdb_pinnableslice_value(ps, &vl);
    int rc = msg_decode(v, vl, channel, seq, m);
    rocksdb_pinnableslice_destroy(ps);
    return rc;
}

static int sync_v(const rview *rv, uint64_t user, uint64_t after, int limit, iy_msg_list *out,
                  int *more)
{
    uint8_t lo[9], hi[9], start[17];
    size_t cap = 0;
    out->v = NULL;
    out->n = 0;
    *more = 0;
    if (after == UINT64_MAX) return 0;

    key1(lo, K_INBOX, user);
    rocksdb_iterator_t *it = scan_open_v(rv, lo, 9, hi, key1_succ(hi, K_INBOX, user));
    rocksdb_iter_seek(it, (const char *)start, key2(start, K_INBOX, user, after + 1));
    int rc = 0;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        if (out->n >= (size_t)(limit > 0 ? limit : 0)) {
            *more = 1;
            break;
        }
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl != 17 || vl != 16) {
            rc = corrupt("inbox");
            break;
        }
        iy_msg *m = list_push(out, &cap);
        if ((rc = msg_get(rv, get64(v), get64(v + 8), m)) != 0) {
            out->n--;
            break;
        }
        m->pos = get64(k + 9);
    }
    int rc2 = scan_close(it);
    if (rc == 0) rc = rc2;
    if (rc) {
        iy_msg_list_clear(out);
        *more = 0;
    }
    return rc;
}

int store_sync(store *s, uint64_t user, uint64_t after, int limit, iy_msg_list *out, int *more)
{
    rview rv = store_view(s);
    return sync_v(&rv, user, after, limit, out, more);
}

/* ---- readers: committed reads from another thread (store.h) --------------- */

/* A reader touches only the database handle (thread-safe in RocksDB) and
 * its own read options; never the store's caches, counters or batch. */
store_reader *store_reader_new(store *s)
{
    store_reader *r = iy_calloc(1, sizeof *r);
    r->v.db = s->db;
    r->v.ropt = rocksdb_readoptions_create();
    r->v.ropt_scan = rocksdb_readoptions_create();
    return r;
}

void store_reader_free(store_reader *r)
{
    if (!r) return;
    rocksdb_readoptions_destroy(r->v.ropt_scan);
    rocksdb_readoptions_destroy(r->v.ropt);
    iy_free(r);
}

int store_reader_history(store_reader *r, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                         int limit, iy_msg_list *out)
{
    return history_v(&r->v, channel, before_seq, after_seq, limit, out);
}

int store_reader_sync(store_reader *r, uint64_t user, uint64_t after, int limit, iy_msg_list *out,
                      int *more)
{
    return sync_v(&r->v, user, after, limit, out, more);
}

int store_reader_user_pos(store_reader *r, uint64_t user, uint64_t *pos)
{
    return load_last_v(&r->v, K_INBOX, user, pos);
}

int store_reader_session(store_reader *r, const uint8_t token_hash[32], uint64_t *user,
                         char device[IY_DEVICE_MAX + 1])
{
    return session_get_v(&r->v, token_hash, user, device);
}

int store_reader_is_member(store_reader *r, uint64_t channel, uint64_t user)
{
    uint8_t k[9];
    char *v;
    size_t vl;
    int rc = kv_get_v(&r->v, k, key1(k, K_CHANNEL, channel), &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    iy_channel *ch = iy_malloc(sizeof *ch);
    rc = channel_decode((const uint8_t *)v, vl, channel, ch);
    rocksdb_free(v);
    if (rc == 0) {
        rc = IY_EFORBIDDEN;
        for (uint32_t i = 0; i < ch->nmembers; i++)
            if (ch->members[i] == user) rc = 0;
    }
    iy_free(ch);
    return rc;
}

/* ---- primitives for the other files of this backend (store_rocks_int.h) ---- */

rocksdb_t *store__db(store *s) { return s->db; }
rocksdb_readoptions_t *store__ropt(store *s) { return s->ropt; }
rocksdb_writeoptions_t *store__wopt(store *s, int sync) { return sync ? s->wopt : s->wopt_lazy; }
uint64_t store__new_id(store *s) { return next_id(s); }
store *store__batch_store(store_batch *b) { return b->s; }

/* The batch is a plain write batch; what it must read back goes into its
 * overlay too (see batch_put_readable). */
void store__batch_put(store_batch *b, const void *k, size_t kl, const void *v, size_t vl)
{
    if (v) rocksdb_writebatch_put(b->wb, k, kl, v, vl);
    else rocksdb_writebatch_delete(b->wb, k, kl);
    store__kv_put(&b->ovl, k, kl, v, vl);
}

int store__batch_get(store_batch *b, const void *k, size_t kl, char **v, size_t *vl)
{
    const uint8_t *p;
    size_t n;
    int f = store__kv_get(&b->ovl, k, kl, &p, &n);
    if (f == 0) return store__get(b->s, k, kl, v, vl);
    if (f == 2) return IY_ENOTFOUND;
    *v = iy_malloc(n ? n : 1);
    if (n) memcpy(*v, p, n);
    *vl = n;
    return 0;
}

int store__get(store *s, const void *k, size_t kl, char **v, size_t *vl)
{
    char *err = NULL;
    size_t n = 0;
    char *p = rocksdb_get(s->db, s->ropt, k, kl, &n, &err);
    if (err) return rerr(err, "get");
    if (!p) return IY_ENOTFOUND;
    *v = iy_malloc(n ? n : 1);
    memcpy(*v, p, n);
    rocksdb_free(p);
    *vl = n;
    return 0;
}

int store__rerr(char *err, const char *what) { return rerr(err, what); }
int store__corrupt(const char *what) { return corrupt(what); }
int store__write_sync(store *s, rocksdb_writebatch_t *wb) { return write_sync(s, wb); }
int store__user_load(store *s, uint64_t id, iy_user *out, char *pwhash)
{
    return user_load(s, id, out, pwhash);
}
int store__seq_committed(store *s, uint64_t channel, uint64_t *seq)
{
    return counter_committed(s, &s->seq, K_MSG, channel, seq);
}
rocksdb_iterator_t *store__scan_open(store *s, const uint8_t *lo, size_t lol,
                                     const uint8_t *hi, size_t hil)
{
    return scan_open(s, lo, lol, hi, hil);
}
int store__scan_close(rocksdb_iterator_t *it) { return scan_close(it); }
void store__fail_next_commit(store *s) { s->fail_next = 1; }
