/* adminsock.h — the running server's admin socket: DATA/admin.sock.
 *
 * A Unix stream socket in the data directory (mode 0600: the owner of the
 * data alone), served by a thread of its own, never an I/O thread. It
 * exists because RocksDB admits one process: `iyagid admin backup` cannot
 * open a store a server holds, so it asks that server. One request per
 * connection, one line each way, then progress lines:
 *
 *   client: "backup /ABS/PATH\n"       server: "progress TEXT\n" ...
 *                                              "ok SUMMARY\n" | "error REASON\n"
 *   client: "ping\n"                   server: "ok iyagid\n"
 *
 * Requests are served one at a time (a second backup waits for the first).
 * A socket left by a crash is replaced at start (the server holds the
 * store's LOCK by then, so no other server can be behind it); a clean stop
 * removes it. */
#ifndef IY_ADMINSOCK_H
#define IY_ADMINSOCK_H
#include <stddef.h>
#include "../store/store.h"

typedef struct adminsock adminsock;

/* DATA/admin.sock into out: 0, or IY_ETOOBIG if it does not fit a Unix
 * socket's address (108 bytes). */
int adminsock_path(const char *data_dir, char *out, size_t n);

/* Listens on data_dir's admin socket and starts its thread; backups copy
 * st (store_copy: any thread) and blob_dir. NULL if it cannot (logged: the
 * server runs on, without online backups). */
adminsock *adminsock_start(const char *data_dir, const char *blob_dir, store *st);

/* Stops the thread (a backup in progress gives up at its next file and
 * leaves nothing named OUT), removes the socket. Before store_free. Accepts
 * NULL. */
void adminsock_stop(adminsock *a);

/* A client's connection to data_dir's admin socket: a file descriptor, or
 * -errno (-ENOENT: no socket, -ECONNREFUSED: a stale one, no server). */
int adminsock_connect(const char *data_dir);

#endif
