/* readq.c — the reader threads (see readq.h). One queue per thread, so a
 * key always meets the same thread and its jobs keep their order. */
#include "readq.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include <pthread.h>

typedef struct reader {
    readq *q;
    store_reader *r;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dbq_job *head, *tail;
    int stopping;
    int started;
} reader;

struct readq {
    void (*post)(void *origin, dbq_job *j);
    unsigned n;
    reader rd[READQ_THREADS_MAX];
};

static void *reader_main(void *arg)
{
    reader *t = arg;
    pthread_setname_np(pthread_self(), "iyagi-reader");
    for (;;) {
        pthread_mutex_lock(&t->mu);
        while (!t->head && !t->stopping) pthread_cond_wait(&t->cv, &t->mu);
        dbq_job *jobs = t->head;
        t->head = t->tail = NULL;
        pthread_mutex_unlock(&t->mu);
        if (!jobs) break; /* stopping and drained */
        for (dbq_job *j = jobs, *next; j; j = next) {
            next = j->_next; /* before the hand-back: the origin may free j at once */
            j->_next = NULL;
            j->read(t->r, j);
            if (j->post) j->post(j);
            else t->q->post(j->origin, j);
        }
    }
    return NULL;
}

readq *readq_start(store *s, unsigned nthreads, void (*post)(void *origin, dbq_job *j))
{
    if (nthreads < 1) nthreads = 1;
    if (nthreads > READQ_THREADS_MAX) nthreads = READQ_THREADS_MAX;
    readq *q = iy_calloc(1, sizeof *q);
    q->post = post;
    for (unsigned i = 0; i < nthreads; i++) {
        reader *t = &q->rd[i];
        t->q = q;
        t->r = store_reader_new(s);
        pthread_mutex_init(&t->mu, NULL);
        pthread_cond_init(&t->cv, NULL);
        q->n = i + 1; /* what readq_stop/readq_free may touch */
        if (pthread_create(&t->thread, NULL, reader_main, t) != 0) goto err;
        t->started = 1;
    }
    return q;
err:
    readq_stop(q);
    readq_free(q);
    return NULL;
}

int readq_submit(readq *q, dbq_job *j, uint64_t key)
{
    reader *t = &q->rd[key % q->n];
    j->_next = NULL;
    pthread_mutex_lock(&t->mu);
    if (t->stopping) {
        pthread_mutex_unlock(&t->mu);
        return IY_EUNAVAIL;
    }
    if (t->tail) t->tail->_next = j;
    else t->head = j;
    t->tail = j;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return 0;
}

void readq_stop(readq *q)
{
    if (!q) return;
    for (unsigned i = 0; i < q->n; i++) {
        reader *t = &q->rd[i];
        pthread_mutex_lock(&t->mu);
        t->stopping = 1;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
    }
    for (unsigned i = 0; i < q->n; i++)
        if (q->rd[i].started) {
            pthread_join(q->rd[i].thread, NULL);
            q->rd[i].started = 0;
        }
}

void readq_free(readq *q)
{
    if (!q) return;
    for (unsigned i = 0; i < q->n; i++) {
        reader *t = &q->rd[i];
        store_reader_free(t->r);
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
    }
    iy_free(q);
}
