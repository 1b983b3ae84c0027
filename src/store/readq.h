/* readq.h — the reader threads: read-only store work off the storage thread.
 *
 * History pages and WebSocket syncs only read committed data, so they need
 * none of the storage thread's ordering: they run on a small pool of reader
 * threads, each with its own store_reader (store.h), while the storage
 * thread keeps committing. Jobs are dbq_jobs whose `read` runs on a reader
 * thread; `done` runs on the origin I/O thread, handed back by the same
 * post(origin, job) as the storage thread's (iothread_post_job).
 *
 * Only reads whose answer does not have to be ordered against the bus may
 * come here (docs/ARCHITECTURE.md, "Why nothing is missed or shown twice"):
 * WebSocket `history` and `sync` and HTTP history. `auth` and HTTP sync
 * (long polling) stay on the storage thread.
 *
 * Order: jobs submitted with the same key (a connection id) go to the same
 * thread and run in submission order, so one connection's reads are
 * answered in the order asked. Different keys may run in parallel. */
#ifndef IY_READQ_H
#define IY_READQ_H
#include <stdint.h>
#include "dbq.h"

typedef struct readq readq;

#define READQ_THREADS_MAX 8

/* Starts nthreads (1..READQ_THREADS_MAX) reader threads over s.
 * Returns NULL if a thread cannot start (none is left running). */
readq *readq_start(store *s, unsigned nthreads, void (*post)(void *origin, dbq_job *j));

/* Queues j (j->read and j->done set) on the thread of key. Returns 0, or
 * IY_EUNAVAIL once readq_stop has begun (then j is untouched). */
int readq_submit(readq *q, dbq_job *j, uint64_t key);

/* Finishes every queued job and stops the threads; later readq_submit calls
 * return IY_EUNAVAIL. Must run before the I/O threads exit (jobs are posted
 * back to them) and before store_free. Accepts NULL. */
void readq_stop(readq *q);

/* Frees a stopped q (and its readers). Accepts NULL. */
void readq_free(readq *q);

#endif
