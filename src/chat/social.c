/* social.c — presence as friends see it (social.h).
 *
 * A transition of the registry (presence.c) becomes a storage job whose run
 * persists last_active_at (no sync: a heartbeat-driven value) and reads the
 * user's friends; its done, back on an I/O thread, publishes one `presence`
 * notice for their sockets on the bus. Only friends get pushed changes; a
 * query may also ask about users who share a channel with the asker. */
#include "social.h"
#include "presence.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../codec/jsonw.h"
#include "../model/types.h"
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
    if (store_friend_state(s, viewer, user, &st) == 0 && st == IY_FRIEND_MUTUAL) return 1;
    return store_share_channel(s, viewer, user) == 1;
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

typedef struct transition_job {
    dbq_job j;
    service *svc;
    uint64_t user;
    int online;
    int64_t last_active;
    uint64_t *friends;         /* run: the user's friends */
    size_t nfriends;
} transition_job;

static void transition_free(dbq_job *j)
{
    iy_free(((transition_job *)j)->friends);
    iy_free(j);
}

static void transition_run(store *s, dbq_job *j)
{
    transition_job *p = (transition_job *)j;
    uint64_t *in = NULL, *out = NULL;
    size_t ni = 0, no = 0;
    store_last_active_set(s, p->user, p->last_active);
    if (store_friend_list(s, p->user, &p->friends, &p->nfriends, &in, &ni, &out, &no) != 0) p->nfriends = 0;
    iy_free(in);
    iy_free(out);
}

/* On an I/O thread: the transition as it was, to the friends' sockets. */
static void transition_done(dbq_job *j)
{
    transition_job *p = (transition_job *)j;
    if (p->nfriends) {
        iy_buf f = { 0 };
        social_presence_frame(&f, p->user, p->online, p->last_active);
        bus_notify(p->svc->bus, bus_notice_new(p->friends, p->nfriends, f.data, f.len));
        iy_buf_free(&f);
    }
    dbq_job_unref(j);
}

void social_publish(void *ctx, uint64_t user, int online, int64_t last_active)
{
    service *svc = ctx;
    transition_job *p = iy_calloc(1, sizeof *p);
    dbq_job_init(&p->j, DBQ_RUN);
    p->j.run = transition_run;
    p->j.done = transition_done;
    p->j.free = transition_free;
    p->j.origin = svc->threads[0];
    p->svc = svc;
    p->user = user;
    p->online = online;
    p->last_active = last_active;
    if (dbq_submit(svc->dbq, &p->j) != 0) transition_free(&p->j);   /* shutting down */
}
