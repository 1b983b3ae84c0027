/* admin_backup.c — the command line of backups and restores.
 *
 *   iyagid admin backup  [--data DIR] [--blob-dir DIR] OUT
 *   iyagid admin restore BACKUP [--data DIR] [--blob-dir DIR] [--force]
 *
 * A backup of a data directory a server runs on is taken by that server:
 * this process connects to DIR/admin.sock (adminsock.h), sends the request
 * and relays the server's progress and answer. With no server (no socket,
 * or a stale one nobody listens on) it opens the store itself, which also
 * keeps a server from starting on DIR meanwhile (RocksDB's LOCK). */
#include "admin_backup.h"
#include "adminsock.h"
#include "backup.h"
#include "../base/err.h"
#include "../store/store.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MSG_MAX 9000

static void backup_usage(FILE *f)
{
    fprintf(f,
            "usage: iyagid admin backup [--data DIR] [--blob-dir DIR] OUT\n"
            "  (--data, --blob-dir and --store default to $IYAGI_DATA, $IYAGI_BLOB_DIR, $IYAGI_STORE)\n"
            "  Writes a consistent backup of the embedded store in DIR (default ./data) to the new\n"
            "  directory OUT (refused if it exists): the store, its search index, the attachments\n"
            "  (from --blob-dir, default DIR/blobs) and a manifest. While iyagid runs on DIR, the\n"
            "  server takes it and keeps serving; otherwise this command opens the store itself.\n"
            "  A PostgreSQL store (--store URL) is backed up with pg_dump instead.\n");
}

static void restore_usage(FILE *f)
{
    fprintf(f,
            "usage: iyagid admin restore BACKUP [--data DIR] [--blob-dir DIR] [--force]\n"
            "  (--data, --blob-dir and --store default to $IYAGI_DATA, $IYAGI_BLOB_DIR, $IYAGI_STORE)\n"
            "  Puts the backup BACKUP in place as the data directory DIR (default ./data) and the\n"
            "  attachments in --blob-dir (default DIR/blobs). Refused while a server runs on DIR,\n"
            "  and if DIR is not empty unless --force, which moves the old contents aside to\n"
            "  DIR.replaced-TIME (never deletes them). Then start iyagid --data DIR as usual.\n");
}

/* The server's variables (IYAGI_DATA, IYAGI_BLOB_DIR, IYAGI_STORE) stand in for options
 * not given, as they do for the server; the config file is the server's own. */
static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

static void progress(void *ctx, const char *line)
{
    (void)ctx;
    printf("iyagid admin backup: %s\n", line);
    fflush(stdout);
}

/* OUT made absolute (the server resolves it, not this process's cwd). */
static int absolute(const char *path, char *out, size_t n)
{
    if (path[0] == '/') return snprintf(out, n, "%s", path) < (int)n ? 0 : -1;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return -1;
    int k = snprintf(out, n, "%s/%s", cwd, path);
    return k > 0 && (size_t)k < n ? 0 : -1;
}

/* Over the admin socket: 0, or 1 (failed, or no answer). */
static int backup_online(int fd, const char *out)
{
    char req[PATH_MAX + 16];
    int n = snprintf(req, sizeof req, "backup %s\n", out);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {   /* a server gone meanwhile: no SIGPIPE */
        fprintf(stderr, "iyagid admin backup: the server's admin socket refused the request: %s\n", strerror(errno));
        close(fd);
        return 1;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return -1;
    }
    char line[MSG_MAX];
    int rc = -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "progress ", 9)) {
            progress(NULL, line + 9);
        } else if (!strncmp(line, "ok ", 3)) {
            printf("iyagid admin backup: done (by the running server): %s\n", line + 3);
            rc = 0;
            break;
        } else if (!strncmp(line, "error ", 6)) {
            fprintf(stderr, "iyagid admin backup: %s\n", line + 6);
            rc = 1;
            break;
        }
    }
    fclose(f);
    if (rc < 0) fprintf(stderr, "iyagid admin backup: the server closed the admin socket without an answer "
                                "(did it stop?); no backup was made\n");
    return rc < 0 ? 1 : rc;
}

static int backup_offline(const char *dir, const char *blob_dir, const char *out)
{
    char p[PATH_MAX + 32], blobs[PATH_MAX + 32], msg[MSG_MAX];
    struct stat sb;
    snprintf(p, sizeof p, "%s/db/CURRENT", dir);
    if (stat(p, &sb) != 0) {
        fprintf(stderr, "iyagid admin backup: %s holds no iyagi store (no db/CURRENT)\n", dir);
        return 1;
    }
    store *s = NULL;
    store_config sc = { dir, "admin", 0, 0, 0 };
    if (store_open(&sc, &s) != 0) {
        fprintf(stderr, "iyagid admin backup: cannot open the store in %s: a server holds it without an admin "
                        "socket to ask (starting, or its path is too long for one: its log says), or the store is "
                        "damaged (above)\n", dir);
        return 1;
    }
    if (blob_dir) snprintf(blobs, sizeof blobs, "%s", blob_dir);
    else snprintf(blobs, sizeof blobs, "%s/blobs", dir);
    backup_opts o = { s, dir, blobs, out, progress, NULL, NULL };
    int rc = backup_take(&o, msg, sizeof msg);
    store_free(s);
    if (rc) {
        fprintf(stderr, "iyagid admin backup: %s\n", msg);
        return 1;
    }
    printf("iyagid admin backup: done (no server was running): %s\n", msg);
    return 0;
}

static int pg_refusal(const char *cmd, const char *url)
{
    if (!strcmp(cmd, "backup"))
        fprintf(stderr,
                "iyagid admin backup: a PostgreSQL store is backed up with PostgreSQL's own tools, while the\n"
                "nodes keep running. Run:\n"
                "  pg_dump --format=custom --file=iyagi.dump '%s'\n"
                "and copy the shared --blob-dir after it (see docs/OPERATIONS.md, \"Backup and restore\").\n",
                url);
    else
        fprintf(stderr,
                "iyagid admin restore: a PostgreSQL store is restored with pg_restore, nodes stopped:\n"
                "  pg_restore --clean --if-exists --no-owner --dbname='%s' iyagi.dump\n"
                "and the --blob-dir copied back (see docs/OPERATIONS.md, \"Backup and restore\").\n",
                url);
    return 2;
}

/* The admin commands' arguments: --data, --blob-dir, --store, one
 * positional (what: its name in messages), and --force where force is
 * given. -1 to go on, else the exit status (--help, a mistake). */
static int parse_args(const char *cmd, const char *what, int argc, char **argv, void (*usage)(FILE *),
                      const char **dir, const char **blob_dir, const char **url, const char **pos, int *force)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (force && !strcmp(a, "--force")) {
            *force = 1;
        } else if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) {
                fprintf(stderr, "iyagid admin %s: %s needs a value\n", cmd, a);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--data")) *dir = v;
            else if (!strcmp(a, "--blob-dir")) *blob_dir = v;
            else if (!strcmp(a, "--store")) *url = v;
            else {
                fprintf(stderr, "iyagid admin %s: unknown option %s\n", cmd, a);
                usage(stderr);
                return 2;
            }
        } else if (!*pos) {
            *pos = a;
        } else {
            fprintf(stderr, "iyagid admin %s: one %s only (%s and %s)\n", cmd, what, *pos, a);
            return 2;
        }
    }
    return -1;
}

int admin_backup_main(int argc, char **argv)
{
    const char *dir = env_or("IYAGI_DATA", "data"), *blob_dir = env_or("IYAGI_BLOB_DIR", NULL),
               *url = env_or("IYAGI_STORE", NULL),
               *out = NULL;
    int rc = parse_args("backup", "OUT", argc, argv, backup_usage, &dir, &blob_dir, &url, &out, NULL);
    if (rc >= 0) return rc;
    if (url) return pg_refusal("backup", url);
    if (!out) {
        backup_usage(stderr);
        return 2;
    }
    char abs_out[PATH_MAX];
    struct stat sb;
    if (absolute(out, abs_out, sizeof abs_out) != 0) {
        fprintf(stderr, "iyagid admin backup: %s: path too long\n", out);
        return 2;
    }
    if (lstat(abs_out, &sb) == 0) {
        fprintf(stderr, "iyagid admin backup: %s exists: a backup never replaces anything; name a new one\n",
                abs_out);
        return 1;
    }
    int fd = adminsock_connect(dir);
    if (fd >= 0) return backup_online(fd, abs_out);
    /* No socket, a stale one, or a directory whose path is too long for
     * one: no server to ask; the store's LOCK tells whether one runs. */
    if (fd != -ENOENT && fd != -ECONNREFUSED && fd != -ENAMETOOLONG) {
        fprintf(stderr, "iyagid admin backup: cannot reach the admin socket of %s: %s\n", dir, strerror(-fd));
        return 1;
    }
    return backup_offline(dir, blob_dir, abs_out);
}

int admin_restore_main(int argc, char **argv)
{
    const char *dir = env_or("IYAGI_DATA", "data"), *blob_dir = env_or("IYAGI_BLOB_DIR", NULL),
               *url = env_or("IYAGI_STORE", NULL),
               *from = NULL;
    int force = 0;
    int rc = parse_args("restore", "BACKUP", argc, argv, restore_usage, &dir, &blob_dir, &url, &from, &force);
    if (rc >= 0) return rc;
    if (url) return pg_refusal("restore", url);
    if (!from) {
        restore_usage(stderr);
        return 2;
    }
    char msg[MSG_MAX];
    if (backup_restore(from, dir, blob_dir, force, msg, sizeof msg) != 0) {
        fprintf(stderr, "iyagid admin restore: %s\n", msg);
        return 1;
    }
    printf("iyagid admin restore: %s\n", msg);
    if (geteuid() == 0)
        printf("iyagid admin restore: what was copied belongs to root now: give it to the server's user "
               "before starting it (chown -R USER: %s%s%s)\n", dir, blob_dir ? " " : "", blob_dir ? blob_dir : "");
    return 0;
}
