/* dbq.c — the storage thread and its group commit (see dbq.h). */
#include "dbq.h"
#include "metrics.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include <pthread.h>

struct dbq {
    store *s;
    bus *b;
    void (*post)(void *origin, dbq_job *j);
    dbq_stored_fn stored;
    dbq_committed_fn committed;
    void *hook_ctx;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dbq_job *head, *tail;
    size_t queued_sends;           /* under mu */
    atomic_size_t backlog;         /* = queued_sends, readable without the lock */
    int stopping;
};

size_t dbq_backlog(dbq *q) { return atomic_load_explicit(&q->backlog, memory_order_relaxed); }

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
    return first;
}

void dbq_set_hooks(dbq *q, dbq_stored_fn stored, dbq_committed_fn committed, void *ctx)
{
    q->stored = stored;
    q->committed = committed;
    q->hook_ctx = ctx;
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

/* The bus batch of one round: references the send jobs it carries. */
typedef struct round_batch {
    bus_batch b;
    dbq_job **jobs;
} round_batch;

static void round_batch_release(bus_batch *bb)
{
    round_batch *rb = (round_batch *)bb;
    for (size_t i = 0; i < bb->n; i++) dbq_job_unref(rb->jobs[i]);
    iy_free(rb->jobs);
    iy_free(bb->v);
    iy_free(rb);
}

/* Steps 1–3 of a round: the sends. */
static void commit_sends(dbq *q, dbq_job *jobs)
{
    size_t nnew = 0;
    store_batch *sb = store_batch_begin(q->s);
    for (dbq_job *j = jobs; j; j = j->_next) {
        j->err = store_batch_add(sb, &j->send, &j->stored);
        if (j->err == 0) {
            nnew++;
            if (q->stored) q->stored(q->hook_ctx, sb, j);
        }
    }
    int rc = store_batch_commit(sb);
    if (rc != 0) {
        metrics_add(M_COMMIT_ERRORS, 1);
        iy_log("storage: group commit of %zu messages failed; answering unavailable", nnew);
        for (dbq_job *j = jobs; j; j = j->_next)
            if (j->err == 0 || j->err == IY_EEXIST) j->err = IY_EUNAVAIL;
        nnew = 0;
    } else if (nnew) {
        metrics_add(M_COMMITS, 1);
        metrics_add(M_MESSAGES_STORED, (int64_t)nnew);
        metrics_observe_batch(nnew);
        if (q->committed) q->committed(q->hook_ctx);
    }

    round_batch *rb = NULL;
    if (nnew) {
        rb = iy_calloc(1, sizeof *rb);
        rb->b.release = round_batch_release;
        rb->b.v = iy_calloc(nnew, sizeof *rb->b.v);
        rb->jobs = iy_calloc(nnew, sizeof *rb->jobs);
        atomic_init(&rb->b.refs, 1);
    }
    /* Acks first, then the fan-out: a sending device sees its ack before any
     * later message of the same channel. */
    for (dbq_job *j = jobs, *next; j; j = next) {
        next = j->_next;
        if (j->err == 0) {
            atomic_fetch_add(&j->refs, 1);
            bus_msg *m = &rb->b.v[rb->b.n];
            m->st = &j->stored;
            m->text = j->text;
            m->text_len = j->send.text_len;
            m->origin_thread = j->origin_thread;
            m->origin_conn = j->origin_conn;
            rb->jobs[rb->b.n++] = j;
        } else if (j->err == IY_EEXIST) {
            metrics_add(M_DUPLICATES, 1);
        }
        hand_back(q, j);
    }
    if (rb) bus_publish(q->b, &rb->b);
}

static void *dbq_main(void *arg)
{
    dbq *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (!q->head && !q->stopping) pthread_cond_wait(&q->cv, &q->mu);
        dbq_job *jobs = take_round(q);
        int stopping = q->stopping;
        pthread_mutex_unlock(&q->mu);
        if (!jobs && stopping) break;

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

dbq *dbq_start(store *s, bus *b, void (*post)(void *origin, dbq_job *j))
{
    dbq *q = iy_calloc(1, sizeof *q);
    q->s = s;
    q->b = b;
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
    pthread_mutex_lock(&q->mu);
    if (q->stopping) {
        pthread_mutex_unlock(&q->mu);
        return IY_EUNAVAIL;
    }
    if (q->tail) q->tail->_next = j;
    else q->head = j;
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
