/* social.c — presence as friends see it (social.h).
 *
 * Transitions of the registry (presence.c) wait in a batch for one storage
 * job, whose run persists their last_active_at (no sync: a heartbeat-driven
 * value) and reads the users' friends, one statement each for the whole
 * batch (a node losing 20,000 sockets at once is two statements, not
 * 40,000 that the commit rounds queue behind); its done, back on an I/O
 * thread, publishes one `presence` notice per transition for the friends'
 * sockets on the bus. Presence is between friends only, pushed and
 * queried: a stranger who sends one direct message, or adds someone to a
 * group, learns nothing of their status or last activity. */
#include "social.h"
#include "presence.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../codec/jsonw.h"
#include "../model/types.h"
#include <pthread.h>
#include <string.h>

/* ---- presence JSON ---- */

void social_presence_fields(iy_buf *b, uint64_t user, int online, int64_t last_active)
{
    iy_buf_append_str(b, "\"user_id\":");
    jw_id(b, user);
    iy_buf_append_str(b, online ? ",\"status\":\"online\",\"last_active_at\":"
                                : ",\"status\":\"offline\",\"last_active_at\":");
    jw_i64(b, last_active);
}

void social_presence_frame(iy_buf *b, uint64_t user, int online, int64_t last_active)
{
    iy_buf_append_str(b, "{\"op\":\"presence\",");
    social_presence_fields(b, user, online, last_active);
    iy_buf_putc(b, '}');
}

void social_presence_of(service *svc, uint64_t user, int64_t stored_last, int *online, int64_t *last)
{
    if (presence_get(svc->presence, user, online, last)) return;
    *online = 0;
    *last = stored_last;
}

void social_presence_list(iy_buf *b, service *svc, const social_seen *v, size_t n)
{
    iy_buf_append_str(b, "\"presence\":[");
    for (size_t i = 0; i < n; i++) {
        int online;
        int64_t last;
        social_presence_of(svc, v[i].user, v[i].stored_last, &online, &last);
        if (i) iy_buf_putc(b, ',');
        iy_buf_putc(b, '{');
        social_presence_fields(b, v[i].user, online, last);
        iy_buf_putc(b, '}');
    }
    iy_buf_putc(b, ']');
}

void social_notify_presence(service *svc, uint64_t user, int64_t stored_last, const uint64_t *to, size_t n)
{
    if (!n) return;
    int online;
    int64_t last;
    social_presence_of(svc, user, stored_last, &online, &last);
    iy_buf f = { 0 };
    social_presence_frame(&f, user, online, last);
    bus_notify(svc->bus, bus_notice_new(to, n, f.data, f.len));
    iy_buf_free(&f);
}

/* ---- who may see whom (storage thread) ---- */

int social_may_see(store *s, uint64_t viewer, uint64_t user)
{
    if (viewer == user) return 1;
    int st = IY_FRIEND_NONE;
    return store_friend_state(s, viewer, user, &st) == 0 && st == IY_FRIEND_MUTUAL;
}

void social_visible(store *s, uint64_t viewer, const uint64_t *ids, size_t n, social_seen **out,
                    size_t *nout)
{
    social_seen *v = iy_calloc(n ? n : 1, sizeof *v);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t k = 0; k < i; k++) dup |= ids[k] == ids[i];
        if (dup || !social_may_see(s, viewer, ids[i])) continue;   /* strangers are omitted */
        v[m].user = ids[i];
        store_last_active_get(s, ids[i], &v[m].stored_last);
        m++;
    }
    *out = v;
    *nout = m;
}

/* ---- publishing transitions ---- */

typedef struct transition {
    uint64_t user;
    int online;
    int64_t last_active;
} transition;

struct social_batch {
    pthread_mutex_t lock;
    transition *v;             /* waiting for the next job */
    size_t n, cap;
    int queued;                /* a job is queued and will take them */
};

struct social_batch *social_batch_new(void)
{
    struct social_batch *b = iy_calloc(1, sizeof *b);
    pthread_mutex_init(&b->lock, NULL);
    return b;
}

void social_batch_free(struct social_batch *b)
{
    if (!b) return;
    pthread_mutex_destroy(&b->lock);
    iy_free(b->v);
    iy_free(b);
}

typedef struct transition_job {
    dbq_job j;
    service *svc;
    transition *v;             /* the batch, in the order the registry made them */
    size_t n;
    uint64_t *pairs;           /* run: (user, friend) pairs, by user */
    size_t npairs;
} transition_job;

static void transition_free(dbq_job *j)
{
    transition_job *p = (transition_job *)j;
    iy_free(p->v);
    iy_free(p->pairs);
    iy_free(j);
}

/* Storage thread: takes every transition waiting, persists their
 * last_active_at (no sync: a heartbeat-driven value) and reads the users'
 * friends, two statements for the whole batch. */
static void transition_run(store *s, dbq_job *j)
{
    transition_job *p = (transition_job *)j;
    struct social_batch *b = p->svc->social;
    pthread_mutex_lock(&b->lock);
    p->v = b->v;
    p->n = b->n;
    b->v = NULL;
    b->n = b->cap = 0;
    b->queued = 0;
    pthread_mutex_unlock(&b->lock);
    if (!p->n) return;
    uint64_t *users = iy_malloc(p->n * sizeof *users);
    int64_t *last = iy_malloc(p->n * sizeof *last);
    for (size_t i = 0; i < p->n; i++) {
        users[i] = p->v[i].user;
        last[i] = p->v[i].last_active;
    }
    store_last_active_set_many(s, users, last, p->n);
    if (store_friends_of(s, users, p->n, &p->pairs, &p->npairs) != 0) p->npairs = 0;
    iy_free(users);
    iy_free(last);
}

/* The first of user's pairs (they are sorted by user). */
static size_t pairs_of(const uint64_t *pairs, size_t n, uint64_t user)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pairs[2 * mid] < user) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* On an I/O thread: each transition as it was, to the friends' sockets. */
static void transition_done(dbq_job *j)
{
    transition_job *p = (transition_job *)j;
    uint64_t *friends = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < p->n && p->npairs; i++) {
        const transition *t = &p->v[i];
        size_t k = pairs_of(p->pairs, p->npairs, t->user), nf = 0;
        for (; k < p->npairs && p->pairs[2 * k] == t->user; k++) {
            if (nf == cap) {
                cap = cap ? cap * 2 : 64;
                friends = iy_realloc(friends, cap * sizeof *friends);
            }
            friends[nf++] = p->pairs[2 * k + 1];
        }
        if (!nf) continue;
        iy_buf f = { 0 };
        social_presence_frame(&f, t->user, t->online, t->last_active);
        bus_notify(p->svc->bus, bus_notice_new(friends, nf, f.data, f.len));
        iy_buf_free(&f);
    }
    iy_free(friends);
    dbq_job_unref(j);
}

void social_publish(void *ctx, uint64_t user, int online, int64_t last_active)
{
    service *svc = ctx;
    struct social_batch *b = svc->social;
    pthread_mutex_lock(&b->lock);
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->v = iy_realloc(b->v, b->cap * sizeof *b->v);
    }
    b->v[b->n++] = (transition){ user, online, last_active };
    int submit = !b->queued;
    b->queued = 1;
    pthread_mutex_unlock(&b->lock);
    if (!submit) return;
    transition_job *p = iy_calloc(1, sizeof *p);
    dbq_job_init(&p->j, DBQ_RUN);
    p->j.run = transition_run;
    p->j.done = transition_done;
    p->j.free = transition_free;
    p->j.origin = svc->threads[0];
    p->svc = svc;
    if (dbq_submit(svc->dbq, &p->j) != 0) {   /* shutting down: the batch is dropped */
        pthread_mutex_lock(&b->lock);
        b->n = 0;
        b->queued = 0;
        pthread_mutex_unlock(&b->lock);
        transition_free(&p->j);
    }
}
