/* server.h — the whole iyagid server: configuration and the run loop. */
#ifndef IY_SERVER_H
#define IY_SERVER_H
#include "core_int.h"

/* Fills cfg with the defaults (127.0.0.1:8080, ./data, one I/O thread per core). */
void server_config_defaults(server_config *cfg);

/* Opens the store, starts the storage thread and the I/O threads, serves
 * until SIGTERM or SIGINT, then stops in order: stop accepting, commit and
 * answer everything queued, close the sockets, close the store.
 * Returns 0 after a clean stop, IY_EIO if it could not start. */
int server_run(const server_config *cfg);

#endif
