/* rocks.c — the embedded backend of store.h on RocksDB: opening, the data
 * format, users, sessions, channels, settings, and the ops table. Commit
 * rounds, history and sync are in rocks_round.c; read state and friends in
 * rocks_social.c; push in rocks_push.c.
 *
 * One RocksDB database in DIR/db. Every record lives in the default column
 * family under a one-byte type prefix; integers in keys are big-endian so
 * that byte order is numeric order and a channel's messages (or a user's
 * inbox) are one contiguous, seq-ordered (pos-ordered) key range.
 *
 *   key                                   value
 *   'V'                                   format version u32 (absent: version 1)
 *   'm'                                   last_id u64, msg_count u64
 *   'G' name                              a setting's bytes (the VAPID key)
 *   'u' user                              ulen u8, username, dlen u16, display, hlen u8, pwhash
 *   'n' username                          user u64
 *   's' sha256(token) [32]                user u64, dlen u8, device
 *   'z' user sha256(token) [32]           created ms u64, dlen u8, device   the user -> sessions
 *                                                              index (format 3)
 *   'c' channel                           kind u8, owner u64, nlen u16, name, n u16, members u64*n
 *   'd' min(a,b) max(a,b)                 channel u64
 *   'x' user channel                      (empty)              the user -> channels index
 *   'M' channel seq                       id u64, from u64, flags u8, cmid, [event], text
 *                                         ([event]: event u8 + subject u64, or, format 3,
 *                                         0 + n u8 + n mentioned user ids u64, or, format 4,
 *                                         0xFF + state u8 + [edited ms u64] + [reply_to
 *                                         u64 + reply_seq u64] + n u8 + ids: a message that
 *                                         replies, or was edited or deleted (rewritten in place))
 *   'a' attachment                        iy_attachment_encode (an upload; no format change:
 *                                         a new key space)
 *   'i' first id                          (id u64, channel u64, seq u64) * n: the plain
 *                                         messages of one round by id, in id order (format 4),
 *                                         and its EDITED and DELETED events (since search)
 *   'I' user pos                          channel u64, seq u64 (a reference, never the text)
 *   'C' user cmid                         channel u64, seq u64, id u64, sender pos u64
 *   'R' user channel                      read seq u64
 *   'F' a b                               state u8 (enum iy_friend_state, a's side)
 *   'B' blocker blocked                   (empty)              a block (no format change:
 *                                                              an older binary ignores it)
 *   'X' channel user                      (empty)              a mute (idem)
 *   'L' user                              last_active ms i64
 *   push ('S', 'U', 'P', 'Q', 'D', 'N')   rocks_push.c
 *
 * All values are big-endian too. ts is never stored: it is the id's ms.
 *
 * Format versions. 1: the first layout (no 'V' record). 2: adds 'V' and 'G'
 * (nothing else changed, so a version-1 directory is upgraded by writing
 * 'V'). 3: 'z' and mention blocks. 4: 'i' and the state block (upgrades build
 * 'z' and 'i' from what is there). A directory of a newer version than this
 * binary knows is refused.
 *
 * Message values. flags is the cmid length (0..IY_CMID_MAX < 0x80) with bit
 * 0x80 set when an event block follows the cmid: event u8, subject u64.
 *
 * Friends. A request from a to b is the pair 'F' a b = OUTGOING and
 * 'F' b a = INCOMING; acceptance turns both into MUTUAL; delete removes both.
 * So each side's lists are one scan of its own 'F' range.
 *
 * Channel cache. 'c' and 'd' records are read on every round; committed ones
 * are cached in memory (s->chcache, dropped whole past 32 MiB). Only
 * committed state enters it: a miss loads from the database, and a
 * successful round commit puts the round's created and changed channels in.
 * Exact because this process is the only writer (RocksDB's LOCK file) and
 * every write of those records goes through this file or a round.
 *
 * Read state and last_active are written with sync = 0: the WAL keeps them
 * across a process crash; only a machine crash may lose the newest moves. */
#include "rocks_int.h"
#include "rocks_enc.h"
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/log.h"

#define FORMAT_VERSION ROCKS_FORMAT_VERSION

/* The committed cache of 'c' and 'd' records is dropped whole past this. */
#define CHCACHE_MAX_BYTES (32u << 20)

/* ---- primitives ---------------------------------------------------------- */

int rocks_rerr(char *err, const char *what)
{
    iy_log_error("store: %s: %s", what, err);
    rocksdb_free(err);
    return IY_EIO;
}

static int64_t mono_ms(void);

/* Reads done once for a connection (its auth: the session, the user, the
 * inbox pos), kept by the caller (the token cache, the socket): they fill
 * the block cache only once it is (nearly) full anyway. Below that, their
 * 4 KB blocks would only grow it: ~180 bytes per connection on a small
 * store (sessions are keyed by a token's hash: no two neighbours are read
 * together). Once full they cost no memory, and the index and filter
 * blocks they need must be cached for the next lookup: read uncached,
 * those were read again for every lookup (3x slower connects on a
 * 10M-message store whose cache was full). Storage thread only. */
rview rocks_once_view(rocks *s)
{
    int64_t now = mono_ms();
    if (now - s->once_checked_ms >= 100) {
        s->once_checked_ms = now;
        size_t cap = s->cache ? rocksdb_cache_get_capacity(s->cache) : 0;
        s->once_warm = !s->cache || rocksdb_cache_get_usage(s->cache) >= cap - cap / 8;
    }
    return s->once_warm ? rocks_view(s) : (rview){ s->db, s->ropt_cold, s->ropt_cold_scan };
}

int rocks_corrupt(const char *what)
{
    iy_log_error("store: corrupt %s record", what);
    return IY_EIO;
}

int rocks_get_v(const rview *rv, const uint8_t *k, size_t kl, char **val, size_t *vl)
{
    char *err = NULL;
    *val = rocksdb_get(rv->db, rv->ropt, (const char *)k, kl, vl, &err);
    if (err) return rocks_rerr(err, "get");
    return *val != NULL;
}

int rocks_get(rocks *s, const uint8_t *k, size_t kl, char **val, size_t *vl)
{
    rview rv = rocks_view(s);
    return rocks_get_v(&rv, k, kl, val, vl);
}

int rocks_get_copy(rocks *s, const void *k, size_t kl, char **v, size_t *vl)
{
    char *p;
    size_t n;
    int rc = rocks_get(s, k, kl, &p, &n);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    *v = iy_malloc(n + 1);
    memcpy(*v, p, n);
    (*v)[n] = '\0';
    *vl = n;
    rocksdb_free(p);
    return 0;
}

/* ---- writing, and the disk's reserve ------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_fault(rocks *s, int f)
{
    int was = atomic_exchange(&s->fault, f);
    if (was == f) return;
    if (f == ROCKS_LOW_SPACE)
        iy_log_error("store: %llu MB free on the data directory's disk, below the reserve of %llu MB: refusing writes "
               "until space returns", (unsigned long long)s->free_mb, (unsigned long long)(s->min_free >> 20));
    else if (f == ROCKS_OK)
        iy_log_info("store: writing again (%llu MB free)", (unsigned long long)s->free_mb);
}

/* Bytes free now, as far as we know: a statvfs at most every 250 ms, less
 * what was written since, less what the memtables hold (a flush will
 * write it to the disk while its WAL is still there). */
static uint64_t free_bytes(rocks *s)
{
    int64_t now = mono_ms();
    struct statvfs v;
    if (!s->checked_ms || now - s->checked_ms >= 250 || s->written_since > s->free_at_check / 8) {
        if (statvfs(s->dir, &v) != 0) return UINT64_MAX;   /* cannot tell: do not refuse */
        uint64_t mem = 0;
        char *p = rocksdb_property_value(s->db, "rocksdb.cur-size-all-mem-tables");
        if (p) {
            mem = strtoull(p, NULL, 10);
            rocksdb_free(p);
        }
        uint64_t disk = (uint64_t)v.f_bavail * v.f_frsize;
        s->free_at_check = disk > mem ? disk - mem : 0;
        s->written_since = 0;
        s->checked_ms = now;
        s->free_mb = disk >> 20;
    }
    return s->free_at_check > s->written_since ? s->free_at_check - s->written_since : 0;
}

/* Room for `bytes` above the reserve, for a writer beside RocksDB on
 * another thread (the search indexer): a statvfs of its own (the cache
 * above is the storage thread's). 1: room, or no reserve, or no telling. */
int rocks_room_for(rocks *s, uint64_t bytes)
{
    struct statvfs v;
    if (!s->min_free || statvfs(s->dir, &v) != 0) return 1;
    return (uint64_t)v.f_bavail * v.f_frsize >= s->min_free + bytes;
}

static int load_meta(rocks *s);

static rocksdb_t *open_db(rocks *s, int readonly, char **err)
{
    size_t dl = strlen(s->dir);
    char *path = iy_malloc(dl + 4);
    memcpy(path, s->dir, dl);
    memcpy(path + dl, "/db", 4);
    rocksdb_t *db = readonly ? rocksdb_open_for_read_only(s->opt, path, 0, err) : rocksdb_open(s->opt, path, err);
    iy_free(path);
    return db;
}

/* Whether a small file can be written and synced in the data directory
 * now: a reopen read-write starts a new LOG, and a header write that
 * fails there is the abort described in make_options. */
static int disk_writable(rocks *s)
{
    static const char name[] = "/.write-probe";
    size_t dl = strlen(s->dir);
    char *path = iy_malloc(dl + sizeof name);
    memcpy(path, s->dir, dl);
    memcpy(path + dl, name, sizeof name);
    char block[4096] = { 0 };
    int ok = 0, fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ok = write(fd, block, sizeof block) == (ssize_t)sizeof block && fdatasync(fd) == 0;
        close(fd);
        unlink(path);
    }
    iy_free(path);
    return ok;
}

/* After a failed write (fault ROCKS_WRITE_FAILED), on the storage thread,
 * at most once a second: closes the database and opens it again. RocksDB
 * keeps a write error of its WAL sticky until then (no Resume in its C
 * API), and the reopen replays the WAL, so everything synced before the
 * fault is there. While the disk still fails, the database is opened
 * read-only instead: reads go on, writes are refused, and the next attempt
 * comes a second later. Every cache derived from the database is dropped:
 * a write that failed may still have reached the WAL, and is then in the
 * database after the reopen (never acknowledged: its sender retries with
 * the same cmid and finds it), so counters must be read back, not kept.
 * 0 when the database is writable again, else IY_EUNAVAIL. */
static int rocks_recover(rocks *s)
{
    int64_t now = mono_ms();
    if (now < s->reopen_ms) return IY_EUNAVAIL;
    pthread_rwlock_wrlock(&s->dblock);
    rocksdb_close(s->db);
    char *err = NULL;
    s->readonly = !disk_writable(s);
    if (s->readonly && s->failed_reopens++ == 0)
        iy_log_error("store: the data directory's disk still fails a probe write; reads go on from a read-only "
               "open, writing is tried again every second");
    /* Both opens failing is a database we cannot even read: try for a
     * while (the disk may come back), then give up with a clear message. */
    for (int tries = 0; !(s->db = open_db(s, s->readonly, &err)); ) {
        if (!s->readonly) {
            if (s->failed_reopens++ == 0)
                iy_log_error("store: reopening the database after the write error failed: %s; reads go on from "
                       "a read-only open, writing is tried again every second", err);
            s->readonly = 1;
        } else if (++tries == 150) {
            iy_log_error("store: the database cannot be opened at all: %s; exiting", err);
            _exit(1);
        } else {
            usleep(200 * 1000);
        }
        free(err);
        err = NULL;
    }
    uint64_t ids_last = s->base.ids.last;
    u64map_clear(&s->seq);
    u64map_clear(&s->pos);
    iy_kv_clear(&s->chcache);
    s->checked_ms = 0;
    int rc = load_meta(s) < 0 || rocks_social_counts_load(s) != 0 ? IY_EIO : 0;
    if (s->base.ids.last < ids_last) s->base.ids.last = ids_last;   /* ids never go back */
    pthread_rwlock_unlock(&s->dblock);
    if (s->readonly || rc) {
        s->reopen_ms = mono_ms() + 1000;
        return IY_EUNAVAIL;
    }
    iy_log_info("store: reopened the database after the write error (%llu failed attempts before)",
           (unsigned long long)s->failed_reopens);
    s->failed_reopens = 0;
    set_fault(s, ROCKS_OK);
    return 0;
}

int rocks_write_guarded(rocks *s, rocksdb_writeoptions_t *wo, rocksdb_writebatch_t *wb)
{
    if (atomic_load(&s->fault) == ROCKS_WRITE_FAILED && rocks_recover(s) != 0) return IY_EUNAVAIL;
    size_t size = 0;
    rocksdb_writebatch_data(wb, &size);
    if (s->min_free) {
        uint64_t free = free_bytes(s);
        /* A write's WAL record, and its share of the memtable flush later. */
        if (free < s->min_free + 2 * (uint64_t)size) {
            set_fault(s, ROCKS_LOW_SPACE);
            return IY_EUNAVAIL;
        }
    }
    char *err = NULL;
    rocksdb_write(s->db, wo, wb, &err);
    s->written_since += 2 * (uint64_t)size;
    if (err) {
        iy_log_error("store: a write failed: %s; the database will be reopened", err);
        free(err);
        set_fault(s, ROCKS_WRITE_FAILED);
        s->reopen_ms = mono_ms() + 1000;
        return IY_EUNAVAIL;
    }
    set_fault(s, ROCKS_OK);
    return 0;
}

static int rocks_health(store *st, char *why, size_t n)
{
    rocks *s = (rocks *)st;
    switch (atomic_load(&s->fault)) {
    case ROCKS_LOW_SPACE:
        snprintf(why, n, "storage: %llu MB free, below the reserve of %llu MB: writes refused",
                 (unsigned long long)atomic_load(&s->free_mb), (unsigned long long)(s->min_free >> 20));
        return 1;
    case ROCKS_WRITE_FAILED:
        snprintf(why, n, "storage: writes are failing (see the log)");
        return 1;
    default:
        return 0;
    }
}

/* RocksDB's properties are safe to read from any thread; dblock keeps
 * the database from being reopened under us (rocks_recover). */
static void rocks_metrics(store *st, iy_buf *out)
{
    static const struct {
        const char *prop, *name, *type, *help;
    } props[] = {
        { "rocksdb.is-write-stopped", "iyagi_rocksdb_write_stopped", "gauge",
          "1 while RocksDB stops writes (too many memtables or L0 files, or pending compaction)." },
        { "rocksdb.actual-delayed-write-rate", "iyagi_rocksdb_delayed_write_rate_bytes", "gauge",
          "The rate RocksDB slows writes to, bytes/s (0: writes are not delayed)." },
        { "rocksdb.num-running-compactions", "iyagi_rocksdb_running_compactions", "gauge",
          "Compactions running now." },
        { "rocksdb.total-sst-files-size", "iyagi_rocksdb_sst_files_bytes", "gauge",
          "Size of all SST files, bytes." },
        { "rocksdb.estimate-pending-compaction-bytes", "iyagi_rocksdb_pending_compaction_bytes", "gauge",
          "Bytes compaction estimates it must rewrite to bring every level under its target." },
        { "rocksdb.cur-size-all-mem-tables", "iyagi_rocksdb_memtables_bytes", "gauge",
          "Size of the active and unflushed memtables, bytes." },
    };
    rocks *s = (rocks *)st;
    pthread_rwlock_rdlock(&s->dblock);
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) {
        uint64_t v = 0;
        if (!s->db || rocksdb_property_int(s->db, props[i].prop, &v) != 0) continue;
        iy_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", props[i].name, props[i].help, props[i].name,
                       props[i].type, props[i].name, (unsigned long long)v);
    }
    pthread_rwlock_unlock(&s->dblock);
    iy_buf_appendf(out,
                   "# HELP iyagi_rocksdb_block_cache_bytes Memory the block cache uses, bytes.\n"
                   "# TYPE iyagi_rocksdb_block_cache_bytes gauge\niyagi_rocksdb_block_cache_bytes %llu\n"
                   "# HELP iyagi_rocksdb_block_cache_capacity_bytes The block cache's size (--cache-mb), bytes.\n"
                   "# TYPE iyagi_rocksdb_block_cache_capacity_bytes gauge\n"
                   "iyagi_rocksdb_block_cache_capacity_bytes %llu\n"
                   "# HELP iyagi_store_disk_free_bytes Free space of the data directory's disk at the last check, bytes.\n"
                   "# TYPE iyagi_store_disk_free_bytes gauge\niyagi_store_disk_free_bytes %llu\n"
                   "# HELP iyagi_store_disk_reserve_bytes The reserve (--min-free-mb) below which writes are refused.\n"
                   "# TYPE iyagi_store_disk_reserve_bytes gauge\niyagi_store_disk_reserve_bytes %llu\n"
                   "# HELP iyagi_store_write_fault 1 while the store refuses writes (low space or failing disk).\n"
                   "# TYPE iyagi_store_write_fault gauge\niyagi_store_write_fault %d\n",
                   (unsigned long long)(s->cache ? rocksdb_cache_get_usage(s->cache) : 0),
                   (unsigned long long)(s->cache ? rocksdb_cache_get_capacity(s->cache) : 0),
                   (unsigned long long)atomic_load(&s->free_mb) << 20, (unsigned long long)s->min_free,
                   atomic_load(&s->fault) != ROCKS_OK);
}

int rocks_write(rocks *s, rocksdb_writebatch_t *wb, int sync)
{
    int rc = rocks_write_guarded(s, sync ? s->wopt : s->wopt_lazy, wb);
    rocksdb_writebatch_destroy(wb);
    return rc;
}

int rocks_put_lazy(rocks *s, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, kl, (const char *)v, vl);
    return rocks_write(s, wb, 0);
}

/* The meta record: the newest id handed out and the message count. */
void rocks_put_meta(rocks *s, rocksdb_writebatch_t *wb, uint64_t extra_msgs)
{
    uint8_t k = K_META, v[16];
    put64(v, s->base.ids.last);
    put64(v + 8, s->total_msgs + extra_msgs);
    rocksdb_writebatch_put(wb, (const char *)&k, 1, (const char *)v, 16);
}

rocksdb_iterator_t *rocks_scan_open(const rview *rv, const uint8_t *lo, size_t lol,
                                    const uint8_t *hi, size_t hil)
{
    rocksdb_readoptions_set_iterate_lower_bound(rv->ropt_scan, (const char *)lo, lo ? lol : 0);
    rocksdb_readoptions_set_iterate_upper_bound(rv->ropt_scan, (const char *)hi, hi ? hil : 0);
    return rocksdb_create_iterator(rv->db, rv->ropt_scan);
}

int rocks_scan_close(rocksdb_iterator_t *it)
{
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    return err ? rocks_rerr(err, "scan") : 0;
}

/* ---- open / close ------------------------------------------------------ */

/* Store memory is bounded by cache_mb, whatever the size of the history:
 * the block cache (cache_mb MiB) holds data blocks AND the index and
 * filter blocks, and the memtables together stay under cache_mb / 2 MiB
 * (db_write_buffer_size: RocksDB 7.8's C API cannot charge them to the
 * cache itself). Index and filters are partitioned: a big store's filters
 * do not fit in a small cache, and a monolithic filter block of a 64 MiB
 * file (~2 MiB) would be read whole for one miss; a partition is 4 KiB,
 * and only each file's top-level index stays pinned. */
static rocksdb_options_t *make_options(rocks *s, unsigned cache_mb)
{
    if (!cache_mb) cache_mb = STORE_CACHE_MB_DEFAULT;
    size_t cache = (size_t)cache_mb << 20, mem = cache / 2;
    size_t wbs = mem / 2 < (32u << 20) ? mem / 2 : (32u << 20);
    if (wbs < (2u << 20)) wbs = 2u << 20;
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_max_background_jobs(o, 2);
    rocksdb_options_set_max_open_files(o, 256);   /* sockets share the 20,000 fd cap */
    rocksdb_options_set_write_buffer_size(o, wbs);
    rocksdb_options_set_max_write_buffer_number(o, 3);
    rocksdb_options_set_db_write_buffer_size(o, mem);
    rocksdb_options_set_target_file_size_base(o, 64u << 20);
    rocksdb_options_set_max_bytes_for_level_base(o, 256u << 20);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
    rocksdb_options_set_bytes_per_sync(o, 1u << 20);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    /* RocksDB's LOG file: only what is fatal. A write to it that fails
     * (EIO, a full disk) leaves its file writer in an error state, and the
     * next line logged through it (at the default level, RocksDB's own
     * report of that very error) trips an assertion inside RocksDB
     * (writable_file_writer.h:312, live in Debian's build) that aborts the
     * process. At this level nothing is written after the header that an
     * open writes, and rocks_recover opens read-write only once a probe
     * write has succeeded. What matters of an error, the store logs on
     * stderr itself. */
    rocksdb_options_set_info_log_level(o, 4 /* FATAL_LEVEL */);
    rocksdb_options_set_keep_log_file_num(o, 4);
    rocksdb_options_set_max_log_file_size(o, 8u << 20);
    /* A memtable bloom filter: most point reads of the write path (cmid,
     * direct pair) are misses or hit the memtable. */
    rocksdb_options_set_memtable_whole_key_filtering(o, 1);
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.02);

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
    rocksdb_lru_cache_options_set_capacity(co, cache);
    rocksdb_lru_cache_options_set_num_shard_bits(co, 0);
    s->cache = rocksdb_cache_create_lru_opts(co);
    rocksdb_lru_cache_options_destroy(co);
    rocksdb_block_based_options_set_block_cache(t, s->cache);
    rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_whole_key_filtering(t, 1);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(t, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
    rocksdb_block_based_options_set_index_type(t, rocksdb_block_based_table_index_type_two_level_index_search);
    rocksdb_block_based_options_set_partition_filters(t, 1);
    rocksdb_block_based_options_set_metadata_block_size(t, 4096);
    rocksdb_block_based_options_set_pin_top_level_index_and_filter(t, 1);
    rocksdb_block_based_options_set_format_version(t, 5);
    rocksdb_options_set_block_based_table_factory(o, t);
    rocksdb_block_based_options_destroy(t);
    return o;
}

static int load_meta(rocks *s)
{
    uint8_t k = K_META;
    char *v;
    size_t vl;
    int rc = rocks_get(s, &k, 1, &v, &vl);
    if (rc <= 0) return rc;
    if (vl != 16) {
        rocksdb_free(v);
        return rocks_corrupt("meta");
    }
    s->base.ids.last = get64((const uint8_t *)v);
    s->total_msgs = get64((const uint8_t *)v + 8);
    rocksdb_free(v);
    return 1;
}

static int build_session_index(rocks *s);

/* Checks the format version, upgrading an older one: 0, or IY_EIO (logged). */
static int check_format(rocks *s, const char *dir, int has_meta)
{
    uint8_t k = K_VERSION, v[4];
    char *val;
    size_t vl;
    int rc = rocks_get(s, &k, 1, &val, &vl);
    if (rc < 0) return rc;
    uint32_t version = 1;   /* the first layout had no version record */
    if (rc == 1) {
        rd r = { (const uint8_t *)val, vl, 0 };
        version = vl == 4 ? rd_u32(&r) : 0;
        rocksdb_free(val);
        if (version == 0) return rocks_corrupt("format version");
    }
    if (version > FORMAT_VERSION) {
        iy_log_error("store: %s holds data format %u, newer than this iyagid knows (%u): refusing to open it",
               dir, version, FORMAT_VERSION);
        return IY_EIO;
    }
    if (rc == 1 && version == FORMAT_VERSION) return 0;
    if (has_meta) iy_log_info("store: upgrading %s from data format %u to %u", dir, version, FORMAT_VERSION);
    if (version < 3 && (rc = build_session_index(s)) != 0) return rc;
    if (version < 4 && (rc = rocks_build_msgid_index(s)) != 0) return rc;
    wr w = { v, 0 };
    wr_u32(&w, FORMAT_VERSION);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)&k, 1, (const char *)v, 4);
    return rocks_write(s, wb, 1);
}

static void rocks_free(store *st);
extern const store_ops rocks_ops;

int store_rocks_open(const store_config *cfg, store **out)
{
    *out = NULL;
    const char *dir = cfg->where;
    rocks *s = iy_calloc(1, sizeof *s);
    s->base.ops = &rocks_ops;
    s->base.ids.node = 0;   /* one node owns an embedded store */
    s->opt = make_options(s, cfg->cache_mb);
    s->ropt = rocksdb_readoptions_create();
    s->ropt_scan = rocksdb_readoptions_create();
    /* rocks_once_view's, for reads done once per connection. */
    s->ropt_cold = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(s->ropt_cold, 0);
    s->ropt_cold_scan = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(s->ropt_cold_scan, 0);
    s->wopt = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wopt, 1);
    s->wopt_lazy = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wopt_lazy, 0);
    s->wb = rocksdb_writebatch_create();
    s->dir = iy_strndup(dir, strlen(dir));
    s->min_free = cfg->min_free;

    pthread_rwlock_init(&s->dblock, NULL);
    char *err = NULL;
    s->db = open_db(s, 0, &err);
    int rc;
    if (err) {
        rocks_rerr(err, "open");
        goto err;
    }
    if ((rc = load_meta(s)) < 0 || check_format(s, dir, rc == 1) != 0 || rocks_social_counts_load(s) != 0) goto err;
    *out = (store *)s;
    return 0;
err:
    rocks_free((store *)s);
    return IY_EIO;
}

static void rocks_free(store *st)
{
    rocks *s = (rocks *)st;
    if (!s) return;
    if (s->wb) rocksdb_writebatch_destroy(s->wb);
    iy_kv_free(&s->ovl);
    iy_kv_free(&s->rdup);
    iy_free(s->stg);
    iy_free(s->ents);
    iy_kv_free(&s->chcache);
    if (s->db) rocksdb_close(s->db);
    if (s->wopt_lazy) rocksdb_writeoptions_destroy(s->wopt_lazy);
    if (s->wopt) rocksdb_writeoptions_destroy(s->wopt);
    if (s->ropt_scan) rocksdb_readoptions_destroy(s->ropt_scan);
    if (s->ropt_cold) rocksdb_readoptions_destroy(s->ropt_cold);
    if (s->ropt_cold_scan) rocksdb_readoptions_destroy(s->ropt_cold_scan);
    if (s->ropt) rocksdb_readoptions_destroy(s->ropt);
    if (s->opt) rocksdb_options_destroy(s->opt);
    if (s->cache) rocksdb_cache_destroy(s->cache);
    u64map_free(&s->seq);
    u64map_free(&s->pos);
    u64map_free(&s->blocked_n);
    u64map_free(&s->muted_n);
    pthread_rwlock_destroy(&s->dblock);
    iy_free(s->dir);
    iy_free(s);
}

/* The storage thread's tick (every 2 s): an embedded store has no lease to
 * keep, but a store that cannot write looks again whether it could, so
 * that /healthz turns 200 again without a write to try (a load balancer
 * sends none to a node it finds unhealthy). */
static int rocks_heartbeat(store *st)
{
    rocks *s = (rocks *)st;
    switch (atomic_load(&s->fault)) {
    case ROCKS_WRITE_FAILED:
        rocks_recover(s);
        break;
    case ROCKS_LOW_SPACE:
        s->checked_ms = 0;
        if (free_bytes(s) >= s->min_free) set_fault(s, ROCKS_OK);
        break;
    default:
        break;
    }
    return 0;
}

void store_rocks_fail_next_commit(store *st) { ((rocks *)st)->fail_next = 1; }

/* ---- settings ------------------------------------------------------------ */

#define SETTING_NAME_MAX 64

static size_t setting_key(uint8_t *k, const char *name)
{
    size_t n = strnlen(name, SETTING_NAME_MAX);
    k[0] = K_SETTING;
    memcpy(k + 1, name, n);
    return n + 1;
}

static int rocks_setting_get(store *st, const char *name, char **v, size_t *vl)
{
    uint8_t k[1 + SETTING_NAME_MAX];
    return rocks_get_copy((rocks *)st, k, setting_key(k, name), v, vl);
}

static int rocks_setting_put_once(store *st, const char *name, const char *value, size_t len, char **v,
                                  size_t *vl)
{
    rocks *s = (rocks *)st;
    uint8_t k[1 + SETTING_NAME_MAX];
    size_t kl = setting_key(k, name);
    int rc = rocks_get_copy(s, k, kl, v, vl);
    if (rc != IY_ENOTFOUND) return rc;   /* set already (or an error) */
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, kl, value, len);
    if ((rc = rocks_write(s, wb, 1)) != 0) return rc;
    return rocks_get_copy(s, k, kl, v, vl);
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

int rocks_user_load(const rview *rv, uint64_t id, iy_user *out, char *pwhash)
{
    uint8_t k[9];
    char *v;
    size_t vl;
    int rc = rocks_get_v(rv, k, key1(k, K_USER, id), &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    rd r = { (const uint8_t *)v, vl, 0 };
    char hash[256];
    out->id = id;
    rd_str(&r, rd_u8(&r), out->username, IY_USERNAME_MAX);
    rd_str(&r, rd_u16(&r), out->display_name, IY_DISPLAY_MAX);
    rd_str(&r, rd_u8(&r), hash, 255);
    rocksdb_free(v);
    if (r.bad) return rocks_corrupt("user");
    if (pwhash) memcpy(pwhash, hash, strlen(hash) + 1);
    return 0;
}

static int rocks_user_create(store *st, const char *username, const char *display_name,
                             const char *pwhash, iy_user *out)
{
    rocks *s = (rocks *)st;
    size_t ul = strlen(username), dl = display_name ? strlen(display_name) : 0;
    size_t hl = strlen(pwhash);
    if (ul == 0 || ul > IY_USERNAME_MAX || dl > IY_DISPLAY_MAX || hl > 255) return IY_EINVAL;
    if (!display_name) display_name = "";

    /* Check-then-write is atomic: one thread writes the store. */
    uint8_t nk[1 + IY_USERNAME_MAX];
    nk[0] = K_UNAME;
    memcpy(nk + 1, username, ul);
    char *v;
    size_t vl;
    int rc = rocks_get(s, nk, 1 + ul, &v, &vl);
    if (rc < 0) return rc;
    if (rc) {
        rocksdb_free(v);
        return IY_ECONFLICT;
    }

    uint64_t id = store_new_id(st);
    uint8_t k[9], idv[8], val[USER_VAL_MAX];
    size_t n = user_encode(val, username, ul, display_name, dl, pwhash, hl);
    put64(idv, id);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, key1(k, K_USER, id), (const char *)val, n);
    rocksdb_writebatch_put(wb, (const char *)nk, 1 + ul, (const char *)idv, 8);
    rocks_put_meta(s, wb, 0);
    if ((rc = rocks_write(s, wb, 1)) != 0) return rc;

    out->id = id;
    memcpy(out->username, username, ul + 1);
    memcpy(out->display_name, display_name, dl + 1);
    return 0;
}

static int rocks_user_get(store *st, uint64_t id, iy_user *out)
{
    rview rv = rocks_view((rocks *)st);
    return rocks_user_load(&rv, id, out, NULL);
}

static int rocks_user_get_cold(store *st, uint64_t id, iy_user *out)
{
    rview rv = rocks_once_view((rocks *)st);
    return rocks_user_load(&rv, id, out, NULL);
}

static int rocks_user_find(store *st, const char *username, iy_user *out, char pwhash[256])
{
    rocks *s = (rocks *)st;
    size_t ul = strlen(username);
    if (ul == 0 || ul > IY_USERNAME_MAX) return IY_ENOTFOUND;
    uint8_t nk[1 + IY_USERNAME_MAX];
    nk[0] = K_UNAME;
    memcpy(nk + 1, username, ul);
    char *v;
    size_t vl;
    int rc = rocks_get(s, nk, 1 + ul, &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    uint64_t id = vl == 8 ? get64((const uint8_t *)v) : 0;
    rocksdb_free(v);
    if (vl != 8) return rocks_corrupt("username");
    rview rv = rocks_view(s);
    rc = rocks_user_load(&rv, id, out, pwhash);
    return rc == IY_ENOTFOUND ? rocks_corrupt("username") : rc;   /* index without user */
}

static int rocks_user_set_display_name(store *st, uint64_t id, const char *display_name)
{
    rocks *s = (rocks *)st;
    size_t dl = strlen(display_name);
    if (dl > IY_DISPLAY_MAX) return IY_EINVAL;
    iy_user u;
    char hash[256];
    rview rv = rocks_view(s);
    int rc = rocks_user_load(&rv, id, &u, hash);
    if (rc) return rc;
    uint8_t k[9], val[USER_VAL_MAX];
    size_t n = user_encode(val, u.username, strlen(u.username), display_name, dl, hash, strlen(hash));
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, key1(k, K_USER, id), (const char *)val, n);
    return rocks_write(s, wb, 1);
}

static int rocks_user_set_password(store *st, uint64_t id, const char *pwhash)
{
    rocks *s = (rocks *)st;
    size_t hl = strlen(pwhash);
    if (hl > 255) return IY_EINVAL;
    iy_user u;
    char old[256];
    rview rv = rocks_view(s);
    int rc = rocks_user_load(&rv, id, &u, old);
    if (rc) return rc;
    uint8_t k[9], val[USER_VAL_MAX];
    size_t n = user_encode(val, u.username, strlen(u.username), u.display_name, strlen(u.display_name), pwhash, hl);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, key1(k, K_USER, id), (const char *)val, n);
    return rocks_write(s, wb, 1);
}

static int rocks_user_delete(store *st, uint64_t id)
{
    rocks *s = (rocks *)st;
    iy_user u;
    rview rv = rocks_view(s);
    int rc = rocks_user_load(&rv, id, &u, NULL);
    if (rc) return rc;
    uint8_t k[9], nk[1 + IY_USERNAME_MAX];
    size_t ul = strlen(u.username);
    nk[0] = K_UNAME;
    memcpy(nk + 1, u.username, ul);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_delete(wb, (const char *)k, key1(k, K_USER, id));
    rocksdb_writebatch_delete(wb, (const char *)nk, 1 + ul);
    rocksdb_writebatch_delete(wb, (const char *)k, key1(k, K_ACTIVE, id));
    return rocks_write(s, wb, 1);
}

/* ---- sessions ------------------------------------------------------------ */

static void session_key(uint8_t k[33], const uint8_t token_hash[32])
{
    k[0] = K_SESSION;
    memcpy(k + 1, token_hash, 32);
}

/* 'z' user hash: the user -> sessions index. */
static void usession_key(uint8_t k[41], uint64_t user, const uint8_t token_hash[32])
{
    key1(k, K_USESSION, user);
    memcpy(k + 9, token_hash, 32);
}

/* Puts a session's index record into wb. */
static void usession_put(rocksdb_writebatch_t *wb, uint64_t user, const uint8_t token_hash[32], int64_t created_ms,
                         const char *device, size_t dl)
{
    uint8_t k[41], val[8 + 1 + IY_DEVICE_MAX];
    wr w = { val, 0 };
    usession_key(k, user, token_hash);
    wr_u64(&w, (uint64_t)created_ms);
    wr_u8(&w, (unsigned)dl);
    wr_mem(&w, device, dl);
    rocksdb_writebatch_put(wb, (const char *)k, 41, (const char *)val, w.n);
}

static int rocks_session_create(store *st, const uint8_t token_hash[32], uint64_t user, const char *device)
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
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    usession_put(wb, user, token_hash, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, device, dl);
    return rocks_write((rocks *)st, wb, 1);
}

static int rocks_session_list(store *st, uint64_t user, iy_session_info **out, size_t *n)
{
    uint8_t lo[9], hi[9];
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    key1(lo, K_USESSION, user);
    rview rv = rocks_view((rocks *)st);
    rocksdb_iterator_t *it = rocks_scan_open(&rv, lo, 9, hi, key1_succ(hi, K_USESSION, user));
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, 9); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl != 41) {
            rc = rocks_corrupt("session index");
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *out = iy_realloc(*out, cap * sizeof **out);
        }
        iy_session_info *si = &(*out)[(*n)++];
        memcpy(si->hash, k + 9, 32);
        rd r = { v, vl, 0 };
        si->created_ms = (int64_t)rd_u64(&r);
        rd_str(&r, rd_u8(&r), si->device, IY_DEVICE_MAX);
        if (r.bad) rc = rocks_corrupt("session index");
    }
    int rc2 = rocks_scan_close(it);
    if (rc == 0) rc = rc2;
    if (rc) {
        iy_free(*out);
        *out = NULL;
        *n = 0;
        return rc;
    }
    /* Oldest first (the index is in hash order). */
    for (size_t i = 1; i < *n; i++)
        for (size_t j = i; j > 0 && (*out)[j - 1].created_ms > (*out)[j].created_ms; j--) {
            iy_session_info t = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = t;
        }
    return 0;
}

/* Format 3: the user -> sessions index for the sessions of an older
 * directory (their date unknown: 0). */
static int build_session_index(rocks *s)
{
    uint8_t lo[1] = { K_SESSION }, hi[1] = { K_SESSION + 1 };
    rview rv = rocks_view(s);
    rocksdb_iterator_t *it = rocks_scan_open(&rv, lo, 1, hi, 1);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, 1); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        char device[IY_DEVICE_MAX + 1];
        rd r = { v, vl, 0 };
        uint64_t user = rd_u64(&r);
        rd_str(&r, rd_u8(&r), device, IY_DEVICE_MAX);
        if (kl != 33 || r.bad) rc = rocks_corrupt("session");
        else usession_put(wb, user, k + 1, 0, device, strlen(device));
    }
    int rc2 = rocks_scan_close(it);
    if (rc == 0) rc = rc2;
    if (rc) {
        rocksdb_writebatch_destroy(wb);
        return rc;
    }
    return rocks_write(s, wb, 1);
}

static int session_get_v(const rview *rv, const uint8_t token_hash[32], uint64_t *user,
                         char device[IY_DEVICE_MAX + 1])
{
    uint8_t k[33];
    char *v;
    size_t vl;
    session_key(k, token_hash);
    int rc = rocks_get_v(rv, k, 33, &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    rd r = { (const uint8_t *)v, vl, 0 };
    *user = rd_u64(&r);
    rd_str(&r, rd_u8(&r), device, IY_DEVICE_MAX);
    rocksdb_free(v);
    return r.bad ? rocks_corrupt("session") : 0;
}

static int rocks_session_get(store *st, const uint8_t token_hash[32], uint64_t *user,
                             char device[IY_DEVICE_MAX + 1])
{
    rview rv = rocks_once_view((rocks *)st);
    return session_get_v(&rv, token_hash, user, device);
}

static int rocks_session_delete(store *st, const uint8_t token_hash[32])
{
    rocks *s = (rocks *)st;
    uint8_t k[33];
    char *v;
    size_t vl;
    session_key(k, token_hash);
    int rc = rocks_get(s, k, 33, &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    rd r = { (const uint8_t *)v, vl, 0 };
    uint64_t user = rd_u64(&r);
    rocksdb_free(v);
    if (r.bad) return rocks_corrupt("session");
    /* The session and the push subscriptions it made go in one write. */
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_delete(wb, (const char *)k, 33);
    uint8_t uk[41];
    usession_key(uk, user, token_hash);
    rocksdb_writebatch_delete(wb, (const char *)uk, 41);
    if ((rc = rocks_push_subs_of_session_wb(st, wb, user, token_hash)) != 0) {
        rocksdb_writebatch_destroy(wb);
        return rc;
    }
    return rocks_write(s, wb, 1);
}

/* ---- channels ------------------------------------------------------------ */

size_t rocks_channel_encode(uint8_t *v, const iy_channel *c)
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

int rocks_channel_decode(const uint8_t *v, size_t vl, uint64_t id, iy_channel *out)
{
    rd r = { v, vl, 0 };
    out->id = id;
    out->kind = (int)rd_u8(&r);
    out->owner = rd_u64(&r);
    rd_str(&r, rd_u16(&r), out->name, IY_GROUP_NAME_MAX);
    out->nmembers = rd_u16(&r);
    if (out->nmembers > IY_GROUP_MAX + 1) r.bad = 1;
    for (uint32_t i = 0; !r.bad && i < out->nmembers; i++) out->members[i] = rd_u64(&r);
    return r.bad ? rocks_corrupt("channel") : 0;
}

void rocks_chcache_put(rocks *s, const uint8_t *k, size_t kl, const void *v, size_t vl)
{
    if (s->chcache.bytes > CHCACHE_MAX_BYTES) iy_kv_clear(&s->chcache);
    iy_kv_put(&s->chcache, k, kl, v, vl);
}

/* A committed 'c' or 'd' record through the cache: 1 with *v and *vl (valid
 * until the next store call), 0 if absent, IY_EIO. */
static int cached_get(rocks *s, const uint8_t *k, size_t kl, const uint8_t **v, size_t *vl)
{
    int f = iy_kv_get(&s->chcache, k, kl, v, vl);
    if (f) return f == 1;
    char *val;
    int rc = rocks_get(s, k, kl, &val, vl);
    if (rc <= 0) return rc;
    rocks_chcache_put(s, k, kl, val, *vl);
    rocksdb_free(val);
    return iy_kv_get(&s->chcache, k, kl, v, vl);
}

int rocks_channel_load(rocks *s, uint64_t id, iy_channel *out)
{
    uint8_t k[9];
    const uint8_t *v;
    size_t vl;
    int rc = cached_get(s, k, key1(k, K_CHANNEL, id), &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    return rocks_channel_decode(v, vl, id, out);
}

static int rocks_channel_get(store *st, uint64_t id, iy_channel *out)
{
    return rocks_channel_load((rocks *)st, id, out);
}

int rocks_direct_load(rocks *s, uint64_t a, uint64_t b, uint64_t *channel)
{
    uint8_t k[17];
    const uint8_t *v;
    size_t vl;
    int rc = cached_get(s, k, key2(k, K_DIRECT, a, b), &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    *channel = vl == 8 ? get64(v) : 0;
    return vl == 8 ? 0 : rocks_corrupt("direct");
}

static int rocks_group_create(store *st, uint64_t owner, const char *name, const uint64_t *members,
                              uint32_t n, iy_channel *out)
{
    rocks *s = (rocks *)st;
    size_t nl = name ? strlen(name) : 0;
    if (nl > IY_GROUP_NAME_MAX || n < 1 || n > IY_GROUP_MAX) return IY_EINVAL;
    rview rv = rocks_view(s);
    for (uint32_t i = 0; i < n; i++) {
        iy_user u;
        int rc = rocks_user_load(&rv, members[i], &u, NULL);
        if (rc) return rc;
    }
    memset(out, 0, sizeof *out);
    out->id = store_new_id(st);
    out->kind = IY_GROUP;
    memcpy(out->name, name ? name : "", nl + 1);
    out->owner = owner;
    out->nmembers = n;
    memcpy(out->members, members, n * sizeof *members);

    uint8_t k[17], val[CHANNEL_VAL_MAX];
    size_t vn = rocks_channel_encode(val, out);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, key1(k, K_CHANNEL, out->id), (const char *)val, vn);
    for (uint32_t i = 0; i < n; i++)
        rocksdb_writebatch_put(wb, (const char *)k, key2(k, K_UCHAN, members[i], out->id), "", 0);
    rocks_put_meta(s, wb, 0);
    return rocks_write(s, wb, 1);
}

int rocks_user_channels(store *st, uint64_t user, uint64_t **out, size_t *n)
{
    rview rv = rocks_view((rocks *)st);
    return rocks_user_channels_v(&rv, user, out, n);
}

int rocks_user_channels_v(const rview *rv, uint64_t user, uint64_t **out, size_t *n)
{
    uint8_t lo[9], hi[9];
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    key1(lo, K_UCHAN, user);
    rocksdb_iterator_t *it = rocks_scan_open(rv, lo, 9, hi, key1_succ(hi, K_UCHAN, user));
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
    int rc = rocks_scan_close(it);
    if (rc) {
        iy_free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

/* ---- readers: committed reads from another thread (store.h) --------------- */

/* A reader touches only the database handle (thread-safe in RocksDB) and
 * its own read options; never the store's caches, counters or round. */
typedef struct rocks_reader {
    store_reader_base base;
    rocks *s;
    rview v;
    sqlite3 *search;            /* the search index, opened at the first search */
} rocks_reader;

static store_reader *rocks_reader_new(store *st)
{
    rocks_reader *r = iy_calloc(1, sizeof *r);
    r->base.ops = &rocks_ops;
    r->s = (rocks *)st;
    r->v.ropt = rocksdb_readoptions_create();
    r->v.ropt_scan = rocksdb_readoptions_create();
    return (store_reader *)r;
}

static void rocks_reader_free(store_reader *sr)
{
    rocks_reader *r = (rocks_reader *)sr;
    rocks_search_close(r->search);
    rocksdb_readoptions_destroy(r->v.ropt_scan);
    rocksdb_readoptions_destroy(r->v.ropt);
    iy_free(r);
}

/* Every read holds the store's dblock (read) from its view to its result,
 * so that a reopen (rocks_recover) never closes the handle under it:
 * READ(sr, call using RV(sr)) evaluates the call between the two. */
static rview *reader_view(store_reader *sr)
{
    rocks_reader *r = (rocks_reader *)sr;
    pthread_rwlock_rdlock(&r->s->dblock);
    r->v.db = r->s->db;
    return &r->v;
}

static int reader_done(store_reader *sr, int rc)
{
    pthread_rwlock_unlock(&((rocks_reader *)sr)->s->dblock);
    return rc;
}

#define RV(x) (&((rocks_reader *)(x))->v)
#define READ(sr, call) (reader_view(sr), reader_done((sr), (call)))

static int rocks_reader_history(store_reader *sr, uint64_t channel, uint64_t before_seq,
                                uint64_t after_seq, int limit, iy_msg_list *out)
{
    return READ(sr, rocks_history_v(RV(sr), channel, before_seq, after_seq, limit, out));
}

static int rocks_reader_sync(store_reader *sr, uint64_t user, uint64_t after, int limit,
                             iy_msg_list *out, int *more)
{
    return READ(sr, rocks_sync_v(RV(sr), user, after, limit, out, more));
}

static int rocks_reader_user_pos(store_reader *sr, uint64_t user, uint64_t *pos)
{
    return READ(sr, rocks_load_last_v(RV(sr), K_INBOX, user, pos));
}

static int rocks_reader_session(store_reader *sr, const uint8_t token_hash[32], uint64_t *user,
                                char device[IY_DEVICE_MAX + 1])
{
    return READ(sr, session_get_v(RV(sr), token_hash, user, device));
}

static int rocks_reader_user_get(store_reader *sr, uint64_t id, iy_user *out)
{
    return READ(sr, rocks_user_load(RV(sr), id, out, NULL));
}

static int rocks_reader_is_member(store_reader *sr, uint64_t channel, uint64_t user)
{
    uint8_t k[9];
    char *v;
    size_t vl;
    int rc = READ(sr, rocks_get_v(RV(sr), k, key1(k, K_CHANNEL, channel), &v, &vl));
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    iy_channel *ch = iy_malloc(sizeof *ch);
    rc = rocks_channel_decode((const uint8_t *)v, vl, channel, ch);
    rocksdb_free(v);
    if (rc == 0) {
        rc = IY_EFORBIDDEN;
        for (uint32_t i = 0; i < ch->nmembers; i++)
            if (ch->members[i] == user) rc = 0;
    }
    iy_free(ch);
    return rc;
}

static int rocks_attachment_put(store *st, const iy_attachment *a)
{
    rocks *s = (rocks *)st;
    uint8_t k[9], v[IY_ATTACHMENT_ENC_MAX];
    char *old;
    size_t ol, kl = key1(k, K_ATTACH, a->id);
    int rc = rocks_get(s, k, kl, &old, &ol);
    if (rc < 0) return rc;
    if (rc == 1) {
        rocksdb_free(old);
        return IY_ECONFLICT;
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, kl, (const char *)v, iy_attachment_encode(a, v));
    return rocks_write(s, wb, 1);
}

static int attachment_get_v(const rview *rv, uint64_t id, iy_attachment *out)
{
    uint8_t k[9];
    char *v;
    size_t vl;
    int rc = rocks_get_v(rv, k, key1(k, K_ATTACH, id), &v, &vl);
    if (rc <= 0) return rc ? rc : IY_ENOTFOUND;
    rc = iy_attachment_decode((const uint8_t *)v, vl, id, out) ? rocks_corrupt("attachment") : 0;
    rocksdb_free(v);
    return rc;
}

/* The round's uploads (the storage thread is the only writer: no lock). */
static int rocks_attachments_load(store *st, store_round *r)
{
    rview rv = rocks_view((rocks *)st);
    for (size_t i = 0; i < r->natts; i++) {
        iy_attachment a;
        int rc = attachment_get_v(&rv, r->atts[i].id, &a);
        if (rc == IY_ENOTFOUND) continue;
        if (rc) return rc;
        round_put_attachment(r, i, &a);
    }
    return 0;
}

static int rocks_reader_attachment(store_reader *sr, uint64_t id, iy_attachment *out)
{
    return READ(sr, attachment_get_v(RV(sr), id, out));
}

static int rocks_reader_user_channels(store_reader *sr, uint64_t user, uint64_t **out, size_t *n)
{
    return READ(sr, rocks_user_channels_v(RV(sr), user, out, n));
}

/* The index is SQLite's, not RocksDB's: no dblock. */
static int rocks_reader_search(store_reader *sr, const uint64_t *channels, size_t n, const char *q,
                               size_t qlen, uint64_t before, int limit, store_hit **out, size_t *nout)
{
    rocks_reader *r = (rocks_reader *)sr;
    return rocks_search_v(r->s->dir, &r->search, channels, n, q, qlen, before, limit, out, nout);
}

/* ---- the ops table --------------------------------------------------------- */

const store_ops rocks_ops = {
    .kind = "rocksdb",
    .health = rocks_health,
    .metrics = rocks_metrics,
    .free = rocks_free,
    .heartbeat = rocks_heartbeat,
    .setting_get = rocks_setting_get,
    .setting_put_once = rocks_setting_put_once,
    .user_create = rocks_user_create,
    .user_get = rocks_user_get,
    .user_get_cold = rocks_user_get_cold,
    .user_find = rocks_user_find,
    .user_set_display_name = rocks_user_set_display_name,
    .session_create = rocks_session_create,
    .session_get = rocks_session_get,
    .session_delete = rocks_session_delete,
    .session_list = rocks_session_list,
    .user_set_password = rocks_user_set_password,
    .user_delete = rocks_user_delete,
    .channel_get = rocks_channel_get,
    .group_create = rocks_group_create,
    .user_channels = rocks_user_channels,
    .channel_last = rocks_channel_last,
    .share_channel = rocks_share_channel,
    .round_load = rocks_round_load,
    .round_commit = rocks_round_commit,
    .round_release = NULL,
    .user_pos = rocks_user_pos,
    .history = rocks_history,
    .sync = rocks_sync,
    .read_set = rocks_read_set,
    .read_get = rocks_read_get,
    .friend_state = rocks_friend_state,
    .friend_set = rocks_friend_set,
    .friend_list = rocks_friend_list,
    .block_set = rocks_block_set,
    .blocked = rocks_blocked,
    .block_list = rocks_block_list,
    .blocks_load = rocks_blocks_load,
    .names_load = rocks_names_load,
    .target_locate = rocks_target_locate,
    .targets_load = rocks_targets_load,
    .mute_set = rocks_mute_set,
    .muted = rocks_muted,
    .last_active_set = rocks_last_active_set,
    .last_active_set_many = rocks_last_active_set_many,
    .friends_of = rocks_friends_of,
    .last_active_get = rocks_last_active_get,
    .push_sub_create = rocks_push_sub_create,
    .push_sub_delete = rocks_push_sub_delete,
    .push_sub_get = rocks_push_sub_get,
    .push_take = rocks_push_take,
    .push_done = rocks_push_done,
    .push_counts = rocks_push_counts,
    .reader_new = rocks_reader_new,
    .reader_free = rocks_reader_free,
    .reader_history = rocks_reader_history,
    .reader_sync = rocks_reader_sync,
    .reader_user_pos = rocks_reader_user_pos,
    .reader_session = rocks_reader_session,
    .reader_user_get = rocks_reader_user_get,
    .reader_is_member = rocks_reader_is_member,
    .reader_user_channels = rocks_reader_user_channels,
    .reader_search = rocks_reader_search,
    .indexer_new = rocks_indexer_new,
    .attachment_put = rocks_attachment_put,
    .attachments_load = rocks_attachments_load,
    .reader_attachment = rocks_reader_attachment,
    .copy = rocks_copy,
};
