/* rocks_copy.c — store_copy for the embedded store: a consistent copy of a
 * data directory while the server keeps serving (store.h, "a copy for
 * backups"; server/backup.c wraps it into a backup).
 *
 * Two parts, in this order:
 *   search.sqlite  VACUUM INTO on a connection of its own: one read
 *                  transaction of the WAL-mode index, so the indexer keeps
 *                  writing meanwhile; the output is compact, with no WAL.
 *   db/            a RocksDB checkpoint: memtables flushed (so the copy
 *                  needs no WAL), then the live SST files hard-linked (they
 *                  are immutable: RocksDB only ever deletes them) or copied
 *                  across file systems, MANIFEST, CURRENT and OPTIONS
 *                  copied. It is a point in time: every write acknowledged
 *                  before it started is in it.
 * Why a checkpoint and not RocksDB's BackupEngine: a checkpoint is a plain
 * database directory that iyagid opens as it is (a restore is a copy, and a
 * backup can be inspected by starting a server on a copy of it); the
 * engine's incremental, checksummed layout needs the engine again to
 * restore, and iyagi's backups are whole directories an operator moves
 * elsewhere with ordinary tools.
 *
 * The index goes first: whatever it holds was committed before the
 * checkpoint, so the copy's index trails its messages and its indexer
 * catches up from the cursor, as after a crash. (The other order could hold
 * index rows of messages the checkpoint lacks, with a cursor past ids the
 * restored store will never have.)
 *
 * The storage thread may close and reopen the database after a failed
 * write (rocks.c, rocks_recover): the checkpoint holds dblock (read) like
 * any reader, so it never meets a closed handle. */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include "rocks_int.h"

uint32_t store_data_format(void) { return ROCKS_FORMAT_VERSION; }

/* dir/search.sqlite from the live index: 1 copied, 0 no index, IY_EIO. */
static int copy_index(const char *from_dir, const char *dir)
{
    size_t n = strlen(from_dir) + strlen(dir) + 32;
    char *src = iy_malloc(n), *dst = iy_malloc(n);
    snprintf(src, n, "%s/search.sqlite", from_dir);
    snprintf(dst, n, "%s/search.sqlite", dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = 0;
    struct stat sb;
    if (stat(src, &sb) != 0) goto out;   /* no index yet: the copy rebuilds it */
    /* Read-write without CREATE: a read-only open of a WAL database needs
     * its -shm to exist, which a stopped server does not leave. */
    if (sqlite3_open_v2(src, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        iy_log_error("store: copying the search index: cannot open %s: %s", src, db ? sqlite3_errmsg(db) : "?");
        rc = IY_EIO;
        goto out;
    }
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_prepare_v2(db, "VACUUM INTO ?1", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, dst, -1, SQLITE_STATIC) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE) {
        iy_log_error("store: copying the search index into %s: %s", dst, sqlite3_errmsg(db));
        rc = IY_EIO;
        goto out;
    }
    rc = 1;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    iy_free(src);
    iy_free(dst);
    return rc;
}

int rocks_copy(store *st, const char *dir, store_copy_info *info)
{
    rocks *s = (rocks *)st;
    memset(info, 0, sizeof *info);
    int rc = copy_index(s->dir, dir);
    if (rc < 0) return rc;
    info->index = rc;
    info->format = ROCKS_FORMAT_VERSION;   /* store_open upgraded it, if it was older */

    size_t n = strlen(dir) + 4;
    char *path = iy_malloc(n);
    snprintf(path, n, "%s/db", dir);
    char *err = NULL;
    pthread_rwlock_rdlock(&s->dblock);
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(s->db, &err);
    /* log_size_for_flush 0: always flush first, so the copy is SST files
     * and a MANIFEST, with no WAL to replay. */
    if (!err) rocksdb_checkpoint_create(cp, path, 0, &err);
    if (cp) rocksdb_checkpoint_object_destroy(cp);
    pthread_rwlock_unlock(&s->dblock);
    iy_free(path);
    return err ? rocks_rerr(err, "checkpoint") : 0;
}
