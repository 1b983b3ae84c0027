/* dbq.c — the storage thread and its group commit (see dbq.h). */
#include "dbq.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../base/metrics.h"
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#define HEARTBEAT_MS 2000

struct dbq {
    store *s;
    dbq_round_fns round;
    void (*post)(void *origin, dbq_job *j);
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dbq_job *head, *tail;
    size_t queued_sends;           /* under mu */
    atomic_size_t backlog;         /* = queued_sends, readable without the lock */
    _Atomic uint64_t head_t_in;    /* = head->_t_in, 0 when empty, readable without the lock */
    int stopping;
};

size_t dbq_backlog(dbq *q) { return atomic_load_explicit(&q->backlog, memory_order_relaxed); }

uint64_t dbq_wait_ns(dbq *q, uint64_t now_ns)
{
    uint64_t t = atomic_load_explicit(&q->head_t_in, memory_order_relaxed);
    return t && now_ns > t ? now_ns - t : 0;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Takes the jobs of the next round: everything queued, but at most
 * DBQ_ROUND_SENDS sends. Called with mu held. */
static dbq_job *take_round(dbq *q)
{
    dbq_job *first = q->head, *last = NULL;
    size_t sends = 0;
    for (dbq_job *j = first; j; j = j->_next) {
        if (j->kind == DBQ_SEND && sends == DBQ_ROUND_SENDS) break;
        sends += j->kind == DBQ_SEND;
        last = j;
    }
    if (!last) return NULL;
    q->head = last->_next;
    if (!q->head) q->tail = NULL;
    last->_next = NULL;
    q->queued_sends -= sends;
    atomic_store_explicit(&q->backlog, q->queued_sends, memory_order_relaxed);
    atomic_store_explicit(&q->head_t_in, q->head ? q->head->_t_in : 0, memory_order_relaxed);
    return first;
}

static void hand_back(dbq *q, dbq_job *j)
{
    if (j->post) j->post(j);
    else q->post(j->origin, j);
}

void dbq_job_init(dbq_job *j, int kind)
{
    j->kind = kind;
    atomic_init(&j->refs, 1);
}

void dbq_job_unref(dbq_job *j)
{
    if (j && atomic_fetch_sub(&j->refs, 1) == 1) j->free(j);
}

/* Steps 1 and 2 of a round: the sends. */
static void commit_sends(dbq *q, dbq_job *jobs)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    void *what = q->round.commit(q->round.ctx, q->s, jobs);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    metrics_observe_round_ns((uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec)));
    /* Acks first, then the fan-out: a sending device sees its ack before any
     * later message of the same channel. */
    for (dbq_job *j = jobs, *next; j; j = next) {
        next = j->_next;
        hand_back(q, j);
    }
    if (what) q->round.publish(q->round.ctx, what);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *dbq_main(void *arg)
{
    dbq *q = arg;
    pthread_setname_np(pthread_self(), "iyagi-store");   /* top -H, /proc/PID/task: CPU per thread */
    int64_t next_beat = mono_ms() + HEARTBEAT_MS;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (!q->head && !q->stopping && mono_ms() < next_beat) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&q->cv, &q->mu, &until);
        }
        dbq_job *jobs = take_round(q);
        int stopping = q->stopping;
        pthread_mutex_unlock(&q->mu);
        if (!jobs && stopping) break;
        if (mono_ms() >= next_beat) {
            /* Keeps a shared store's node number leased; failures are logged by
             * the store. A number lost to another node means our ids could
             * collide with its: stop cleanly (SIGTERM) rather than go on. */
            if (store_heartbeat(q->s) == IY_ECONFLICT) {
                iy_log_error("storage: this node's number belongs to another node now; stopping");
                kill(getpid(), SIGTERM);
            }
            next_beat = mono_ms() + HEARTBEAT_MS;
        }

        /* Split before anything is handed back: a posted job may be freed
         * by its origin thread at once. */
        dbq_job *sends = NULL, **st = &sends, *runs = NULL, **rt = &runs;
        for (dbq_job *j = jobs, *next; j; j = next) {
            next = j->_next;
            j->_next = NULL;
            if (j->kind == DBQ_SEND) { *st = j; st = &j->_next; }
            else { *rt = j; rt = &j->_next; }
        }
        if (sends) commit_sends(q, sends);
        /* Step 4: everything else, in order, after the commit. */
        for (dbq_job *j = runs, *next; j; j = next) {
            next = j->_next;
            j->run(q->s, j);
            hand_back(q, j);
        }
    }
    return NULL;
}

dbq *dbq_start(store *s, const dbq_round_fns *round, void (*post)(void *origin, dbq_job *j))
{
    dbq *q = iy_calloc(1, sizeof *q);
    q->s = s;
    q->round = *round;
    q->post = post;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    if (pthread_create(&q->thread, NULL, dbq_main, q) != 0) {
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
        iy_free(q);
        return NULL;
    }
    return q;
}

int dbq_submit(dbq *q, dbq_job *j)
{
    j->_next = NULL;
    j->_t_in = mono_ns();
    pthread_mutex_lock(&q->mu);
    if (q->stopping) {
        pthread_mutex_unlock(&q->mu);
        return IY_EUNAVAIL;
    }
    if (q->tail) q->tail->_next = j;
    else {
        q->head = j;
        atomic_store_explicit(&q->head_t_in, j->_t_in, memory_order_relaxed);
    }
    q->tail = j;
    if (j->kind == DBQ_SEND) {
        q->queued_sends++;
        atomic_store_explicit(&q->backlog, q->queued_sends, memory_order_relaxed);
    }
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

void dbq_stop(dbq *q)
{
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
}

void dbq_free(dbq *q)
{
    if (!q) return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    iy_free(q);
}
