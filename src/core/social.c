/* social.c — presence as friends see it: publishing transitions, who may
 * see whose presence, and the presence JSON shared by the WebSocket op,
 * GET /v1/presence and GET /v1/friends.
 *
 * A transition (presence.c) becomes a storage job: it persists
 * last_active_at (no sync: a heartbeat-driven value), reads the user's
 * friends, and publishes one `presence` notice for their sockets on the bus.
 * Only friends get pushed changes; a query may also ask about users who
 * share a channel with the asker. */
#include "core_int.h"
#include "presence.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../codec/jsonw.h"
#include <string.h>

typedef struct presence_job {
    dbq_job j;
    server *srv;
    uint64_t user;
    int online;
    int64_t last_active;
} presence_job;

static void presence_job_free(dbq_job *j) { iy_free(j); }
static void presence_job_done(dbq_job *j) { dbq_job_unref(j); }

void social_presence_frame(iy_buf *b, uint64_t user, int online, int64_t last_active)
{
    iy_buf_append_str(b, "{\"op\":\"presence\",");
    social_presence_fields(b, user, online, last_active);
    iy_buf_putc(b, '}');
}

void social_presence_fields(iy_buf *b, uint64_t user, int online, int64_t last_active)
{
    iy_buf_append_str(b, "\"user_id\":");
    jw_id(b, user);
    iy_buf_append_str(b, online ? ",\"status\":\"online\",\"last_active_at\":"
                                : ",\"status\":\"offline\",\"last_active_at\":");
    jw_i64(b, last_active);
}

/* Sends user's current presence to the sockets of `to`. Storage thread. */
void social_push_presence(server *srv, store *s, uint64_t user, const uint64_t *to, size_t n)
{
    if (!n) return;
    int online = 0;
    int64_t last = 0;
    social_presence_of(srv, s, user, &online, &last);
    iy_buf f = { 0 };
    social_presence_frame(&f, user, online, last);
    bus_notify(srv->bus, bus_notice_new(to, n, f.data, f.len));
    iy_buf_free(&f);
}

static void presence_job_run(store *s, dbq_job *j)
{
    presence_job *p = (presence_job *)j;
    store_last_active_set(s, p->user, p->last_active);
    uint64_t *friends = NULL, *in = NULL, *out = NULL;
    size_t nf = 0, ni = 0, no = 0;
    if (store_friend_list(s, p->user, &friends, &nf, &in, &ni, &out, &no) == 0 && nf) {
        iy_buf f = { 0 };
        social_presence_frame(&f, p->user, p->online, p->last_active);
        bus_notify(p->srv->bus, bus_notice_new(friends, nf, f.data, f.len));
        iy_buf_free(&f);
    }
    iy_free(friends);
    iy_free(in);
    iy_free(out);
}

void social_publish(void *ctx, uint64_t user, int online, int64_t last_active)
{
    server *srv = ctx;
    presence_job *p = iy_calloc(1, sizeof *p);
    dbq_job_init(&p->j, DBQ_RUN);
    p->j.run = presence_job_run;
    p->j.done = presence_job_done;
    p->j.free = presence_job_free;
    p->j.origin = srv->threads[0];
    p->srv = srv;
    p->user = user;
    p->online = online;
    p->last_active = last_active;
    if (dbq_submit(srv->dbq, &p->j) != 0) iy_free(p); /* shutting down */
}

void social_presence_of(server *srv, store *s, uint64_t user, int *online, int64_t *last_active)
{
    if (presence_get(srv->presence, user, online, last_active)) return;
    *online = 0;
    *last_active = 0;
    store_last_active_get(s, user, last_active);
}

int social_may_see(store *s, uint64_t viewer, uint64_t user)
{
    if (viewer == user) return 1;
    int st = IY_FRIEND_NONE;
    if (store_friend_state(s, viewer, user, &st) == 0 && st == IY_FRIEND_MUTUAL) return 1;
    return store_share_channel(s, viewer, user) == 1;
}

void social_presence_list(iy_buf *b, server *srv, store *s, uint64_t viewer, const uint64_t *ids, size_t n)
{
    iy_buf_append_str(b, "\"presence\":[");
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t k = 0; k < i; k++) dup |= ids[k] == ids[i];
        if (dup || !social_may_see(s, viewer, ids[i])) continue; /* strangers are omitted */
        int online;
        int64_t last;
        social_presence_of(srv, s, ids[i], &online, &last);
        if (!first) iy_buf_putc(b, ',');
        first = 0;
        iy_buf_putc(b, '{');
        social_presence_fields(b, ids[i], online, last);
        iy_buf_putc(b, '}');
    }
    iy_buf_putc(b, ']');
}
