/* adminsock.c — the admin socket's listener thread (adminsock.h).
 *
 * One thread, blocking I/O: poll() on the listening socket and a wake-up
 * pipe; a connection is read (one line, 5 s at most), served, answered and
 * closed before the next is accepted. A backup runs right here, on this
 * thread: the store's copy (store_copy) takes the store's read lock only
 * for the checkpoint, and the I/O, storage and reader threads go on
 * serving. A stop writes to the pipe and sets `stopping`, which a backup
 * in progress checks between files. */
#include "adminsock.h"
#include "backup.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4200
#define READ_TIMEOUT_S 5

struct adminsock {
    int fd;                     /* listening */
    int wake[2];                /* a pipe: the stop's wake-up */
    _Atomic int stopping;
    pthread_t thread;
    store *store;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char *data_dir, *blob_dir;
};

int adminsock_path(const char *data_dir, char *out, size_t n)
{
    size_t cap = sizeof(((struct sockaddr_un *)0)->sun_path);
    int k = snprintf(out, n, "%s/admin.sock", data_dir);
    return k < 0 || (size_t)k >= n || (size_t)k >= cap ? IY_ETOOBIG : 0;
}

static int unix_addr(const char *data_dir, struct sockaddr_un *a)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    return adminsock_path(data_dir, a->sun_path, sizeof a->sun_path);
}

int adminsock_connect(const char *data_dir)
{
    struct sockaddr_un a;
    if (unix_addr(data_dir, &a) != 0) return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* Writes all of s (a client that went away is ignored: the work goes on). */
static void send_line(int fd, const char *kind, const char *text)
{
    char line[LINE_MAX_BYTES + 256];
    int n = snprintf(line, sizeof line, "%s %s\n", kind, text);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    /* One line, never two: a newline inside the text would end it early. */
    for (size_t i = 0; i + 1 < len; i++)
        if (line[i] == '\n') line[i] = ' ';
    for (size_t off = 0; off < len;) {
        ssize_t w = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        off += (size_t)w;
    }
}

static void on_progress(void *ctx, const char *line)
{
    send_line(*(int *)ctx, "progress", line);
}

/* One line (without its newline) into buf: its length, or -1. */
static ssize_t read_line(int fd, char *buf, size_t n)
{
    size_t len = 0;
    while (len + 1 < n) {
        ssize_t r = recv(fd, buf + len, n - 1 - len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        char *nl = memchr(buf + len, '\n', (size_t)r);
        len += (size_t)r;
        if (nl) {
            *nl = '\0';
            return nl - buf;
        }
    }
    return -1;
}

static void serve(adminsock *a, int c)
{
    struct timeval tv = { READ_TIMEOUT_S, 0 };
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char line[LINE_MAX_BYTES];
    ssize_t len = read_line(c, line, sizeof line);
    if (len < 0) return;
    if (!strcmp(line, "ping")) {
        send_line(c, "ok", "iyagid");
        return;
    }
    if (strncmp(line, "backup ", 7) != 0) {
        send_line(c, "error", "unknown request (backup PATH, ping)");
        return;
    }
    char msg[LINE_MAX_BYTES + 200];
    backup_opts o = { a->store, a->data_dir, a->blob_dir, line + 7, on_progress, &c, &a->stopping };
    iy_log("admin: backup to %s", o.out);
    int rc = backup_take(&o, msg, sizeof msg);
    if (rc) iy_log_error("admin: backup failed: %s", msg);
    else iy_log_info("admin: backup done: %s", msg);
    send_line(c, rc ? "error" : "ok", msg);
}

static void *run(void *arg)
{
    adminsock *a = arg;
    while (!atomic_load(&a->stopping)) {
        struct pollfd p[2] = { { a->fd, POLLIN, 0 }, { a->wake[0], POLLIN, 0 } };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            iy_log_error("admin: poll: %s", strerror(errno));
            break;
        }
        if (p[1].revents) break;
        if (!(p[0].revents & POLLIN)) continue;
        int c = accept4(a->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        serve(a, c);
        close(c);
    }
    return NULL;
}

adminsock *adminsock_start(const char *data_dir, const char *blob_dir, store *st)
{
    struct sockaddr_un addr;
    if (unix_addr(data_dir, &addr) != 0) {
        iy_log_warn("admin: the data directory's path is too long for a Unix socket: no admin socket "
               "(online backups need one)");
        return NULL;
    }
    adminsock *a = iy_calloc(1, sizeof *a);
    a->fd = -1;
    a->wake[0] = a->wake[1] = -1;
    a->store = st;
    snprintf(a->path, sizeof a->path, "%s", addr.sun_path);
    a->data_dir = iy_strndup(data_dir, strlen(data_dir));
    a->blob_dir = iy_strndup(blob_dir, strlen(blob_dir));
    /* The server holds the store's LOCK by now: a socket there is a crashed
     * server's, never a live one's. */
    unlink(a->path);
    if ((a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        bind(a->fd, (struct sockaddr *)&addr, sizeof addr) != 0 || chmod(a->path, 0600) != 0 ||
        listen(a->fd, 8) != 0 || pipe2(a->wake, O_CLOEXEC) != 0) {
        iy_log_warn("admin: cannot listen on %s: %s", a->path, strerror(errno));
        goto err;
    }
    if (pthread_create(&a->thread, NULL, run, a) != 0) {
        iy_log_warn("admin: cannot start the admin thread");
        goto err;
    }
    return a;
err:
    if (a->fd >= 0) {
        close(a->fd);
        unlink(a->path);
    }
    if (a->wake[0] >= 0) close(a->wake[0]);
    if (a->wake[1] >= 0) close(a->wake[1]);
    iy_free(a->data_dir);
    iy_free(a->blob_dir);
    iy_free(a);
    return NULL;
}

void adminsock_stop(adminsock *a)
{
    if (!a) return;
    atomic_store(&a->stopping, 1);
    ssize_t w = write(a->wake[1], "x", 1);
    (void)w;
    pthread_join(a->thread, NULL);
    close(a->fd);
    unlink(a->path);
    close(a->wake[0]);
    close(a->wake[1]);
    iy_free(a->data_dir);
    iy_free(a->blob_dir);
    iy_free(a);
}
