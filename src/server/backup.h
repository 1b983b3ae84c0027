/* backup.h — backups of an embedded store's data, and their restore.
 *
 * A backup is a directory:
 *   OUT/manifest         "key = value" lines: backup-format, iyagid, created,
 *                        store, data-format, what is inside and its sizes
 *   OUT/db/              a RocksDB checkpoint (store_copy)
 *   OUT/search.sqlite    the search index, if there was one (store_copy)
 *   OUT/blobs/           the attachments' bytes (hard links where the file
 *                        system allows, else copies)
 *   OUT/vapid.pem        only if the data directory still had one (a key of
 *                        an old iyagid, before it moved into the store)
 * built as OUT.tmp and renamed to OUT once every file and directory in it is
 * fsynced: a backup named OUT is always whole. The blobs are copied AFTER
 * the checkpoint: an upload's bytes are durable before its record is
 * written (api/uploads.c), so every attachment record in the checkpoint has
 * its bytes in the backup (a blob uploaded meanwhile may come along without
 * a record: harmless, never served).
 *
 * Who takes it: RocksDB admits one process (its LOCK file), so while a
 * server runs on a data directory the backup is taken by that server (its
 * admin socket, server/adminsock.h), on its admin thread; with no server
 * the `iyagid admin backup` process opens the store itself. */
#ifndef IY_BACKUP_H
#define IY_BACKUP_H
#include <stdatomic.h>
#include <stddef.h>
#include "../store/store.h"

/* The manifest's format this binary writes and the newest it restores. */
#define BACKUP_FORMAT 1

typedef struct backup_opts {
    store *store;               /* open, serving or not */
    const char *data_dir;       /* its data directory */
    const char *blob_dir;       /* the attachments' directory */
    const char *out;            /* the backup's path: absolute, must not exist */
    void (*progress)(void *ctx, const char *line);   /* may be NULL */
    void *ctx;
    const _Atomic int *cancel;  /* nonzero: give up (the server is stopping); may be NULL */
} backup_opts;

/* Takes a backup (above). 0 with a one-line summary in msg; else nonzero
 * with the reason in msg, and neither OUT nor OUT.tmp left behind (OUT.tmp
 * is left only by a process that died in the middle: a next backup to the
 * same OUT refuses until it is removed). */
int backup_take(const backup_opts *o, char *msg, size_t n);

/* Restores backup into data_dir (and its blobs into blob_dir, or
 * data_dir/blobs when NULL). Refuses if a server runs on data_dir, if the
 * manifest is missing, of a newer backup-format or data-format than this
 * binary reads, or if data_dir (or blob_dir) is not empty; with force the
 * old directory is renamed aside (DIR.replaced-YYYYmmddTHHMMSS, named in
 * msg), never deleted. Built in DIR.restoring, fsynced, renamed into place.
 * 0 with a summary in msg; else nonzero with the reason in msg. */
int backup_restore(const char *backup, const char *data_dir, const char *blob_dir, int force,
                   char *msg, size_t n);

/* 1 if a server holds data_dir (its admin socket answers, or RocksDB's LOCK
 * is held by a process), else 0. */
int backup_dir_in_use(const char *data_dir);

#endif
