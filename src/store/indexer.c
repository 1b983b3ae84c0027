/* indexer.c — the search indexer thread (indexer.h). */
#include "indexer.h"
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdatomic.h>
#include <time.h>
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../base/metrics.h"

/* Between batches that took all there was: what a message waits at most
 * before it can be found, and what makes batches big at moderate rates (an
 * index's cost is mostly per batch: FTS5 writes a segment per transaction,
 * GIN its pending list; at a fixed 5,000 msgs/s, one step per commit round
 * cost as much CPU as the commits themselves, docs/BENCHMARKS.md). */
#define IDLE_MS 250
#define RETRY_MS 1000

struct indexer {
    store_indexer *ix;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;                   /* under mu */
    _Atomic uint64_t cursor;
    _Atomic uint64_t count;
};

/* Waits ms or until stopped: 1 if stopped. */
static int nap(indexer *x, int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&x->mu);
    while (!x->stop && pthread_cond_timedwait(&x->cv, &x->mu, &t) == 0) {}
    int stop = x->stop;
    pthread_mutex_unlock(&x->mu);
    return stop;
}

static void *run(void *arg)
{
    indexer *x = arg;
    pthread_setname_np(pthread_self(), "iyagi-index");
    int failing = 0;
    /* Low priority (nice 10: about a tenth of a busy core's share): a
     * saturated node acks nearly as fast as without search and the index
     * lags instead, catching up when the load drops. Not SCHED_IDLE: a
     * thread that may never run would hold the store's dblock (read) in
     * the middle of a batch for as long as the node is busy, stalling a
     * reopen after a disk error, and would not notice a stop. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        iy_log_warn("search: the indexer runs at normal priority (setpriority refused)");
    for (;;) {
        size_t done = 0;
        int rc = store_indexer_step(x->ix, &done);
        atomic_store(&x->cursor, store_indexer_cursor(x->ix));
        atomic_fetch_add(&x->count, done);
        metrics_add(M_SEARCH_INDEXED, (int64_t)done);
        pthread_mutex_lock(&x->mu);
        int stopping = x->stop;
        pthread_mutex_unlock(&x->mu);
        if (stopping) break;
        if (rc && !failing) iy_log_warn("search: indexing failed (%s); retrying every second", iy_err_code(rc));
        if (!rc && failing) iy_log_info("search: indexing again");
        failing = rc != 0;
        if (rc == 0 && done > 0 && store_indexer_full(x->ix)) {
            pthread_mutex_lock(&x->mu);
            int stop = x->stop;
            pthread_mutex_unlock(&x->mu);
            if (stop) break;
            continue;
        }
        if (nap(x, rc ? RETRY_MS : IDLE_MS)) break;
    }
    return NULL;
}

indexer *indexer_start(store *s)
{
    store_indexer *ix = store_indexer_new(s);
    if (!ix) return NULL;
    indexer *x = iy_calloc(1, sizeof *x);
    x->ix = ix;
    pthread_mutex_init(&x->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&x->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_store(&x->cursor, store_indexer_cursor(ix));
    if (pthread_create(&x->thread, NULL, run, x) != 0) {
        iy_log_error("search: cannot start the indexer thread");
        store_indexer_free(ix);
        pthread_cond_destroy(&x->cv);
        pthread_mutex_destroy(&x->mu);
        iy_free(x);
        return NULL;
    }
    return x;
}

void indexer_stop(indexer *x)
{
    if (!x) return;
    pthread_mutex_lock(&x->mu);
    x->stop = 1;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
    store_indexer_cancel(x->ix);   /* a long batch gives up (it is done again at the next start) */
    pthread_join(x->thread, NULL);
    store_indexer_free(x->ix);
    pthread_cond_destroy(&x->cv);
    pthread_mutex_destroy(&x->mu);
    iy_free(x);
}

uint64_t indexer_cursor(indexer *x) { return x ? atomic_load(&x->cursor) : 0; }
uint64_t indexer_count(indexer *x) { return x ? atomic_load(&x->count) : 0; }
