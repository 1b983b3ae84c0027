/* backup.c — taking and restoring backups of an embedded store (backup.h).
 *
 * Everything is built beside its final name and renamed into place once
 * fsynced (a backup: OUT.tmp -> OUT; a restore: DIR.restoring -> DIR), so
 * a crash at any point leaves the old state plus a leftover directory with
 * a telling name, never a half backup or a half data directory under the
 * real name. Files that never change once written (RocksDB's SST files,
 * attachments' blobs) are hard-linked when source and target share a file
 * system; everything else is copied. */
#include "backup.h"
#include "adminsock.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../base/version.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PATH_BUF 4608
#define COPY_PIECE (256u << 10)

typedef struct tally {
    uint64_t files, bytes;
} tally;

/* Formats the reason into msg; returns IY_EIO (for `return fail(...)`). */
static int fail(char *msg, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, n, fmt, ap);
    va_end(ap);
    return IY_EIO;
}

/* snprintf for paths: the inputs are bounded (clean_path leaves room), so a
 * truncation is only ever reported, never silently used: 0, -ENAMETOOLONG. */
static int pathf(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

static int cancelled(const _Atomic int *c) { return c && atomic_load(c); }

/* src into dst (a new file): 0 or -errno. */
static int copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = 0;
    char *buf = NULL;
    if (in < 0) return -errno;
    if ((out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        rc = -errno;
        goto out;
    }
    buf = malloc(COPY_PIECE);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t r = read(in, buf, COPY_PIECE);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = -errno;
            goto out;
        }
        if (r == 0) break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                rc = -errno;
                goto out;
            }
            off += w;
        }
    }
out:
    free(buf);
    if (out >= 0 && close(out) != 0 && rc == 0) rc = -errno;
    close(in);
    return rc;
}

/* A hard link when allowed (immutable files only), else a copy: 0 or -errno. */
static int place_file(const char *src, const char *dst, int may_link)
{
    if (may_link && link(src, dst) == 0) return 0;
    return copy_file(src, dst);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

/* Copies the regular files of the tree src into the new directory dst,
 * linking the names link_suffix ends ("" links all, NULL none); with
 * flat, only src's own files, skipping "tmp" and dot names (a blob
 * directory). 0, or -errno with the failing path in where. */
static int copy_tree(const char *src, const char *dst, const char *link_suffix, int flat,
                     const _Atomic int *cancel, tally *t, char *where, size_t wn)
{
    if (mkdir(dst, 0700) != 0) {
        pathf(where, wn, "%s", dst);
        return -errno;
    }
    DIR *d = opendir(src);
    if (!d) {
        pathf(where, wn, "%s", src);
        return -errno;
    }
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (flat && (e->d_name[0] == '.' || !strcmp(e->d_name, "tmp"))) continue;
        if (cancelled(cancel)) {
            pathf(where, wn, "%s", src);
            rc = -ECANCELED;
            break;
        }
        char s[PATH_BUF], o[PATH_BUF];
        struct stat sb;
        pathf(s, sizeof s, "%s/%s", src, e->d_name);
        pathf(o, sizeof o, "%s/%s", dst, e->d_name);
        if (lstat(s, &sb) != 0) {
            if (errno == ENOENT) continue;   /* removed meanwhile (an old SST, a failed upload) */
            pathf(where, wn, "%s", s);
            rc = -errno;
        } else if (S_ISDIR(sb.st_mode) && !flat) {
            rc = copy_tree(s, o, link_suffix, 0, cancel, t, where, wn);
        } else if (S_ISREG(sb.st_mode)) {
            int may_link = link_suffix && ends_with(e->d_name, link_suffix);
            if ((rc = place_file(s, o, may_link)) != 0) pathf(where, wn, "%s", o);
            t->files++;
            t->bytes += (uint64_t)sb.st_size;
        }
    }
    closedir(d);
    return rc;
}

/* nftw has no context argument: these belong to the one thread walking. */
static _Thread_local tally walk_tally;
static _Thread_local int walk_err;

static int sync_one(const char *path, const struct stat *sb, int type, struct FTW *f)
{
    (void)f;
    if (type != FTW_F && type != FTW_D && type != FTW_DP) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) walk_err = errno;
    if (fd >= 0) close(fd);
    if (type == FTW_F) {
        walk_tally.files++;
        walk_tally.bytes += (uint64_t)sb->st_size;
    }
    return walk_err ? 1 : 0;
}

/* fsyncs every file and directory under dir (directories after their
 * entries); *t gets the files and bytes. 0 or -errno. */
static int sync_tree(const char *dir, tally *t)
{
    memset(&walk_tally, 0, sizeof walk_tally);
    walk_err = 0;
    int rc = nftw(dir, sync_one, 16, FTW_PHYS | FTW_DEPTH);
    if (t) *t = walk_tally;
    if (walk_err) return -walk_err;
    return rc == 0 ? 0 : -EIO;
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *f)
{
    (void)sb;
    (void)type;
    (void)f;
    remove(path);
    return 0;
}

/* Removes a tree this process built (an unfinished backup or restore). */
static void remove_tree(const char *dir)
{
    nftw(dir, remove_one, 16, FTW_PHYS | FTW_DEPTH);
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* The directory holding path (for its fsync after a rename). */
static void parent_of(const char *path, char *out, size_t n)
{
    pathf(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash) pathf(out, n, ".");
    else if (slash == out) out[1] = '\0';
    else *slash = '\0';
}

/* path without trailing slashes, into out: 0, or -ENAMETOOLONG. */
static int clean_path(const char *path, char *out, size_t n, size_t room)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    if (len == 0 || len + room >= n) return -ENAMETOOLONG;
    memcpy(out, path, len);
    out[len] = '\0';
    return 0;
}

/* 0: dir is missing or empty, 1: it has entries, -errno. */
static int dir_state(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : -errno;
    int full = 0;
    for (struct dirent *e; !full && (e = readdir(d));)
        full = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return full;
}

static void mb(char *out, size_t n, uint64_t bytes)
{
    pathf(out, n, "%.1f MB", (double)bytes / 1e6);
}

static void say(const backup_opts *o, const char *fmt, ...)
{
    if (!o->progress) return;
    char line[PATH_BUF + 200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    o->progress(o->ctx, line);
}

/* Tests only: IYAGI_TEST_BACKUP_PAUSE_MS holds a backup, fully written,
 * before its rename (the moment a crash must leave no OUT). */
static void test_pause(void)
{
    const char *v = getenv("IYAGI_TEST_BACKUP_PAUSE_MS");
    long ms = v ? strtol(v, NULL, 10) : 0;
    if (ms > 0 && ms < 600000) {
        struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&t, NULL);
    }
}

static double elapsed_s(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static int write_manifest(const char *path, const store_copy_info *ci, const tally *db, uint64_t index_bytes,
                          const tally *blobs, double seconds)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    FILE *f = fopen(path, "wx");
    if (!f) return -errno;
    fprintf(f,
            "# An iyagi backup (iyagid admin backup); restore it with iyagid admin restore.\n"
            "backup-format = %d\n"
            "iyagid = %s\n"
            "created = %s\n"
            "store = rocksdb\n"
            "data-format = %u\n"
            "db-files = %llu\n"
            "db-bytes = %llu\n"
            "search-index = %s\n"
            "search-index-bytes = %llu\n"
            "blob-files = %llu\n"
            "blob-bytes = %llu\n"
            "seconds = %.3f\n",
            BACKUP_FORMAT, IYAGI_VERSION, when, ci->format, (unsigned long long)db->files,
            (unsigned long long)db->bytes, ci->index ? "yes" : "no", (unsigned long long)index_bytes,
            (unsigned long long)blobs->files, (unsigned long long)blobs->bytes, seconds);
    int rc = fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -errno;
    if (fclose(f) != 0 && rc == 0) rc = -errno;
    return rc;
}

int backup_take(const backup_opts *o, char *msg, size_t n)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char out[PATH_BUF], tmp[PATH_BUF], p[PATH_BUF], q[PATH_BUF], where[PATH_BUF] = "";
    struct stat sb;
    if (clean_path(o->out, out, sizeof out, 64) != 0) return fail(msg, n, "the backup's path is too long");
    if (out[0] != '/') return fail(msg, n, "the backup's path must be absolute: %s", out);
    if (lstat(out, &sb) == 0) return fail(msg, n, "%s exists: a backup never replaces anything; name a new one", out);
    pathf(tmp, sizeof tmp, "%s.tmp", out);
    if (lstat(tmp, &sb) == 0)
        return fail(msg, n, "%s exists (left by a backup that was interrupted): remove it, or name another backup", tmp);
    if (mkdir(tmp, 0700) != 0) return fail(msg, n, "cannot create %s: %s", tmp, strerror(errno));

    int rc;
    say(o, "copying the store: the search index, then a RocksDB checkpoint");
    store_copy_info ci;
    if ((rc = store_copy(o->store, tmp, &ci)) != 0) {
        if (rc == IY_EINVAL) fail(msg, n, "this store is PostgreSQL: back it up with pg_dump (docs/OPERATIONS.md)");
        else fail(msg, n, "copying the store failed (the server's log says why)");
        goto err;
    }
    say(o, "copying the attachments of %s", o->blob_dir);
    tally blobs = { 0, 0 };
    pathf(p, sizeof p, "%s/blobs", tmp);
    if (stat(o->blob_dir, &sb) != 0 && errno == ENOENT) {
        rc = mkdir(p, 0700) == 0 ? 0 : -errno;
        pathf(where, sizeof where, "%s", p);
    } else {
        rc = copy_tree(o->blob_dir, p, "", 1, o->cancel, &blobs, where, sizeof where);
    }
    if (rc == -ECANCELED || cancelled(o->cancel)) {
        fail(msg, n, "the server is stopping: backup abandoned");
        goto err;
    }
    if (rc) {
        fail(msg, n, "copying attachments: %s: %s", where, strerror(-rc));
        goto err;
    }
    /* A Web Push key of an old iyagid, if it was never moved into the store. */
    pathf(p, sizeof p, "%s/vapid.pem", o->data_dir);
    pathf(q, sizeof q, "%s/vapid.pem", tmp);
    if (stat(p, &sb) == 0 && (rc = copy_file(p, q)) != 0) {
        fail(msg, n, "copying %s: %s", p, strerror(-rc));
        goto err;
    }
    say(o, "syncing %s", tmp);
    tally all, db;
    pathf(p, sizeof p, "%s/db", tmp);
    if ((rc = sync_tree(p, &db)) != 0 || (rc = sync_tree(tmp, &all)) != 0) {
        fail(msg, n, "syncing %s: %s", tmp, strerror(-rc));
        goto err;
    }
    uint64_t index_bytes = 0;
    pathf(p, sizeof p, "%s/search.sqlite", tmp);
    if (ci.index && stat(p, &sb) == 0) index_bytes = (uint64_t)sb.st_size;
    double secs = elapsed_s(&t0);
    pathf(p, sizeof p, "%s/manifest", tmp);
    if ((rc = write_manifest(p, &ci, &db, index_bytes, &blobs, secs)) != 0 || (rc = fsync_path(tmp)) != 0) {
        fail(msg, n, "writing %s: %s", p, strerror(-rc));
        goto err;
    }
    test_pause();
    if (cancelled(o->cancel)) {
        fail(msg, n, "the server is stopping: backup abandoned");
        goto err;
    }
    /* RENAME_NOREPLACE: an OUT made meanwhile (an empty directory would be
     * replaced by a plain rename) makes this backup fail instead. */
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_NOREPLACE) != 0) {
        fail(msg, n, "renaming %s to %s: %s", tmp, out, strerror(errno));
        goto err;
    }
    parent_of(out, p, sizeof p);
    if ((rc = fsync_path(p)) != 0) {
        /* Renamed, all of it synced but the rename itself: whole, though a
         * machine crash now could take the name back. */
        fail(msg, n, "%s is complete but syncing %s failed: %s", out, p, strerror(-rc));
        return IY_EIO;
    }
    char dbm[32], ixm[32], blm[32];
    mb(dbm, sizeof dbm, db.bytes);
    mb(ixm, sizeof ixm, index_bytes);
    mb(blm, sizeof blm, blobs.bytes);
    snprintf(msg, n, "%s: store %llu files %s, search index %s, %llu attachment files %s, %.2f s", out,
             (unsigned long long)db.files, dbm, ci.index ? ixm : "none (rebuilt at start)",
             (unsigned long long)blobs.files, blm, elapsed_s(&t0));
    return 0;
err:
    remove_tree(tmp);
    return IY_EIO;
}

/* ---- restore ------------------------------------------------------------------ */

typedef struct manifest {
    long backup_format, data_format;
    char store[32], iyagid[64];
} manifest;

/* 0 with m, -ENOENT (no manifest), -EINVAL (no backup-format line). */
static int read_manifest(const char *path, manifest *m)
{
    memset(m, 0, sizeof *m);
    m->backup_format = m->data_format = -1;
    FILE *f = fopen(path, "r");
    if (!f) return -errno;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char key[64], val[256];
        if (line[0] == '#' || sscanf(line, " %63[^= ] = %255[^\n]", key, val) != 2) continue;
        if (!strcmp(key, "backup-format")) m->backup_format = strtol(val, NULL, 10);
        else if (!strcmp(key, "data-format")) m->data_format = strtol(val, NULL, 10);
        else if (!strcmp(key, "store")) pathf(m->store, sizeof m->store, "%s", val);
        else if (!strcmp(key, "iyagid")) pathf(m->iyagid, sizeof m->iyagid, "%s", val);
    }
    fclose(f);
    return m->backup_format < 1 ? -EINVAL : 0;
}

int backup_dir_in_use(const char *data_dir)
{
    int fd = adminsock_connect(data_dir);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    /* RocksDB locks db/LOCK with fcntl (a process-wide lock): another
     * process holding it shows in F_GETLK. */
    char p[PATH_BUF];
    pathf(p, sizeof p, "%s/db/LOCK", data_dir);
    if ((fd = open(p, O_RDWR | O_CLOEXEC)) < 0) return 0;
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    int held = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    close(fd);
    return held;
}

/* Moves a non-empty dir aside (force) to DIR.replaced-STAMP: 0, or fails. */
static int move_aside(const char *dir, const char *stamp, char *aside, size_t an, char *msg, size_t n)
{
    pathf(aside, an, "%s.replaced-%s", dir, stamp);
    if (renameat2(AT_FDCWD, dir, AT_FDCWD, aside, RENAME_NOREPLACE) != 0)
        return fail(msg, n, "cannot move %s aside to %s: %s", dir, aside, strerror(errno));
    return 0;
}

/* Renames the finished from to dir (empty or moved aside already). */
static int put_in_place(const char *from, const char *dir, char *msg, size_t n)
{
    char p[PATH_BUF];
    if (rmdir(dir) != 0 && errno != ENOENT)
        return fail(msg, n, "cannot replace %s: %s", dir, strerror(errno));
    if (rename(from, dir) != 0) return fail(msg, n, "renaming %s to %s: %s", from, dir, strerror(errno));
    parent_of(dir, p, sizeof p);
    int rc = fsync_path(p);
    return rc ? fail(msg, n, "syncing %s: %s", p, strerror(-rc)) : 0;
}

int backup_restore(const char *backup, const char *data_dir, const char *blob_dir, int force,
                   char *msg, size_t n)
{
    char from[PATH_BUF], dir[PATH_BUF], bdir[PATH_BUF], tmp[PATH_BUF], btmp[PATH_BUF], p[PATH_BUF],
        q[PATH_BUF], where[PATH_BUF] = "", aside[PATH_BUF] = "", baside[PATH_BUF] = "";
    struct stat sb;
    if (clean_path(backup, from, sizeof from, 64) || clean_path(data_dir, dir, sizeof dir, 64) ||
        (blob_dir && clean_path(blob_dir, bdir, sizeof bdir, 64)))
        return fail(msg, n, "a path is too long");
    /* --blob-dir naming DIR/blobs is the default, not a directory of its own. */
    if (blob_dir && pathf(p, sizeof p, "%s/blobs", dir) == 0 && !strcmp(p, bdir)) blob_dir = NULL;
    manifest m;
    pathf(p, sizeof p, "%s/manifest", from);
    int rc = read_manifest(p, &m);
    if (rc == -EINVAL) return fail(msg, n, "%s has no backup-format line: not an iyagi backup", p);
    if (rc) return fail(msg, n, "%s: %s (not an iyagi backup, or an unfinished one)", p, strerror(-rc));
    if (m.backup_format > BACKUP_FORMAT)
        return fail(msg, n, "%s is backup format %ld, newer than this iyagid restores (%d); restore it with "
                    "iyagid %s or newer", from, m.backup_format, BACKUP_FORMAT, m.iyagid[0] ? m.iyagid : "?");
    if (strcmp(m.store, "rocksdb") != 0) return fail(msg, n, "%s: unknown store \"%s\"", from, m.store);
    if (m.data_format < 1 || (unsigned long)m.data_format > store_data_format())
        return fail(msg, n, "%s holds data format %ld, newer than this iyagid opens (%u); restore it with "
                    "iyagid %s or newer", from, m.data_format, store_data_format(), m.iyagid[0] ? m.iyagid : "?");
    pathf(p, sizeof p, "%s/db/CURRENT", from);
    if (stat(p, &sb) != 0) return fail(msg, n, "%s has no db/CURRENT: the backup is damaged", from);
    if (backup_dir_in_use(dir))
        return fail(msg, n, "a server is running on %s: stop it before restoring into it", dir);
    int full = dir_state(dir), bfull = blob_dir ? dir_state(bdir) : 0;
    if (full < 0 || bfull < 0)
        return fail(msg, n, "cannot read %s: %s", full < 0 ? dir : bdir, strerror(-(full < 0 ? full : bfull)));
    if ((full || bfull) && !force)
        return fail(msg, n, "%s is not empty: restore into a new directory, or add --force to move what is "
                    "there aside (nothing is deleted)", full ? dir : bdir);

    pathf(tmp, sizeof tmp, "%s.restoring", dir);
    if (blob_dir) pathf(btmp, sizeof btmp, "%s.restoring", bdir);
    if (lstat(tmp, &sb) == 0 || (blob_dir && lstat(btmp, &sb) == 0))
        return fail(msg, n, "%s exists (left by a restore that was interrupted): remove it first",
                    lstat(tmp, &sb) == 0 ? tmp : btmp);
    if (mkdir(tmp, 0700) != 0) return fail(msg, n, "cannot create %s: %s", tmp, strerror(errno));
    tally db = { 0, 0 }, blobs = { 0, 0 };
    pathf(p, sizeof p, "%s/db", from);
    pathf(q, sizeof q, "%s/db", tmp);
    /* SST files never change: linked. MANIFEST, OPTIONS, CURRENT are
     * rewritten by the restored store, so they are copies (a link would
     * let it append to the backup's own MANIFEST). */
    rc = copy_tree(p, q, ".sst", 0, NULL, &db, where, sizeof where);
    for (const char *f = "search.sqlite"; rc == 0 && f; f = !strcmp(f, "search.sqlite") ? "vapid.pem" : NULL) {
        pathf(p, sizeof p, "%s/%s", from, f);
        pathf(q, sizeof q, "%s/%s", tmp, f);
        if (stat(p, &sb) == 0 && (rc = copy_file(p, q)) != 0) pathf(where, sizeof where, "%s", q);
    }
    pathf(p, sizeof p, "%s/blobs", from);
    if (blob_dir) pathf(q, sizeof q, "%s", btmp);
    else pathf(q, sizeof q, "%s/blobs", tmp);
    if (rc == 0) rc = copy_tree(p, q, "", 1, NULL, &blobs, where, sizeof where);
    if (rc == 0 && (rc = sync_tree(tmp, NULL)) != 0) pathf(where, sizeof where, "%s", tmp);
    if (rc == 0 && blob_dir && (rc = sync_tree(btmp, NULL)) != 0) pathf(where, sizeof where, "%s", btmp);
    if (rc) {
        fail(msg, n, "restoring %s: %s", where, strerror(-rc));
        goto err;
    }
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    if (full && move_aside(dir, stamp, aside, sizeof aside, msg, n) != 0) goto err;
    if (bfull && move_aside(bdir, stamp, baside, sizeof baside, msg, n) != 0) goto err;
    if (put_in_place(tmp, dir, msg, n) != 0) goto err;
    if (blob_dir && put_in_place(btmp, bdir, msg, n) != 0) return IY_EIO;
    char dbm[32], blm[32];
    mb(dbm, sizeof dbm, db.bytes);
    mb(blm, sizeof blm, blobs.bytes);
    int k = snprintf(msg, n, "restored %s into %s: store %llu files %s, %llu attachment files %s%s%s", from,
                     dir, (unsigned long long)db.files, dbm, (unsigned long long)blobs.files, blm,
                     blob_dir ? " into " : "", blob_dir ? bdir : "");
    if (k > 0 && (size_t)k < n && (aside[0] || baside[0]))
        snprintf(msg + k, n - (size_t)k, "; what was there is kept in %s%s%s", aside, aside[0] && baside[0] ? " and " : "",
                 baside);
    return 0;
err:
    remove_tree(tmp);
    if (blob_dir) remove_tree(btmp);
    return IY_EIO;
}
