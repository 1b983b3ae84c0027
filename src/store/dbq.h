/* dbq.h — the storage thread: one queue of jobs, group commit.
 *
 * I/O threads never touch the store. They submit jobs; the storage thread
 * takes every queued job at once (a "round"):
 *
 *   1. the DBQ_SEND jobs go to the round's commit function (the chat
 *      service's, chat/commit.h): the rules on what the store loaded, one
 *      durable commit for all of them;
 *   2. each send job goes back to its origin thread (ack or error), then
 *      what the commit function returned is published (the committed
 *      messages, to every device);
 *   3. every DBQ_RUN job then runs in submission order, seeing the state
 *      just committed, and goes back to its origin thread.
 *
 * A DBQ_RUN job's `run` does store work only: it reads and writes through
 * the store and leaves its results in its own (typed) job struct; whatever
 * follows — frames, bus notices, presence — happens in `done`, back on the
 * origin I/O thread. So nothing but the store and the commit round runs
 * here, and nothing here depends on the order of the origin's inbox.
 *
 * Every few seconds (also when idle) the thread calls store_heartbeat, which
 * keeps a shared store's node number leased.
 *
 * Overload: a round takes at most DBQ_ROUND_SENDS sends (the rest wait for
 * the next round), so a backlog never becomes one giant batch and jobs
 * queued behind it (auth, reads) keep moving; dbq_backlog() and dbq_wait_ns()
 * let the I/O threads refuse new sends with `unavailable` instead of queueing
 * without bound: past DBQ_SHED_SENDS queued sends, or once the oldest queued
 * job has waited longer than the server allows (--max-queue-ms) while at
 * least DBQ_SHED_MIN_SENDS wait — a bound in time, whatever the commit rate.
 *
 * Jobs are refcounted because a send is referenced by its origin (for the
 * ack) and by the published bus batch (for fan-out); the last unref calls
 * j->free. */
#ifndef IY_DBQ_H
#define IY_DBQ_H
#include <stdatomic.h>
#include <stdint.h>
#include "store.h"

enum dbq_kind { DBQ_SEND = 1, DBQ_RUN = 2 };

#define DBQ_ROUND_SENDS 4096     /* sends committed in one round at most */
#define DBQ_SHED_SENDS 20000     /* default of --max-backlog: queued sends past which new ones are refused */
#define DBQ_SHED_MS 1000         /* default of --max-queue-ms: the oldest job's wait past which sends are refused */
#define DBQ_SHED_MIN_SENDS 512   /* ... but only with this many sends queued (one slow commit is no overload) */

typedef struct dbq_job dbq_job;
struct dbq_job {
    dbq_job *_next;                          /* queue link: the dbq's */
    int kind;                                /* enum dbq_kind */
    atomic_int refs;                         /* set to 1 by dbq_job_init */
    void (*run)(store *s, dbq_job *j);       /* DBQ_RUN: store work on the storage thread */
    void (*read)(store_reader *r, dbq_job *j); /* readq jobs instead: runs on a reader thread */
    void (*done)(dbq_job *j);                /* on the origin thread; must dbq_job_unref(j) */
    void (*free)(dbq_job *j);                /* frees the job's memory */
    void *origin;                            /* the origin I/O thread */
    uint64_t _t_in;                          /* CLOCK_MONOTONIC ns when queued: the dbq's */
    void (*post)(dbq_job *j);                /* if set: hands the finished job back instead of
                                                the dbq's post(origin, j) (e.g. to the push worker) */
    int err;                                 /* result: 0 or an IY_E* code */
    /* DBQ_SEND only: */
    iy_send send;                            /* send.text points to text below */
    char *text;                              /* owned, freed by free */
    uint64_t attachments[IY_ATTACH_PER_MSG]; /* send.attachments points here */
    iy_stored stored;                        /* filled by the store (stored.msg.atts owned: the
                                                job's free frees it) */
    unsigned origin_thread;
    uint64_t origin_conn;                    /* 0 for HTTP */
};

typedef struct dbq dbq;

/* The commit of one round's sends (a list linked by _next, in submission
 * order), provided by the chat service. commit() runs on the storage
 * thread, sets every job's err (0, IY_EEXIST for a duplicate, or an error)
 * and stored, and returns what to publish; publish() is then called with it
 * once every send was handed back (so a sender's ack precedes the fan-out). */
typedef struct dbq_round_fns {
    void *ctx;
    void *(*commit)(void *ctx, store *s, dbq_job *sends);
    void (*publish)(void *ctx, void *what);
} dbq_round_fns;

/* Starts the storage thread over s. post(origin, job) hands a finished job to
 * its origin thread (from the storage thread). Returns NULL if the thread
 * cannot start. */
dbq *dbq_start(store *s, const dbq_round_fns *round, void (*post)(void *origin, dbq_job *j));

/* Queues j. Returns 0, or IY_EUNAVAIL once dbq_stop has begun (then j is untouched). */
int dbq_submit(dbq *q, dbq_job *j);

/* Sends queued and not yet taken into a round (any thread, lock-free). */
size_t dbq_backlog(dbq *q);

/* How long the oldest job still queued has waited at now_ns (CLOCK_MONOTONIC
 * ns, e.g. uv_hrtime()): 0 when nothing waits (any thread, lock-free). */
uint64_t dbq_wait_ns(dbq *q, uint64_t now_ns);

/* Finishes every queued job and stops the thread; later dbq_submit calls
 * return IY_EUNAVAIL. q stays valid until dbq_free. */
void dbq_stop(dbq *q);

/* Frees a stopped q; no thread may use it any more. Accepts NULL. */
void dbq_free(dbq *q);

void dbq_job_init(dbq_job *j, int kind);
void dbq_job_unref(dbq_job *j);

#endif
