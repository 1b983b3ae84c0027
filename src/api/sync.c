/* sync.c — GET /v1/sync and long polling, on the reader threads.
 *
 * Subscribe, then read (as a WebSocket's auth does, chat/chat.c):
 *
 *   read 1: token, inbox after `after` ──> something, or no wait: answer
 *        └─ nothing and wait > 0: register the connection under its user
 *           (deliveries now wake it) ──> read 2 ──> something: answer
 *                                            └─ nothing: wait (http_waiting)
 *   a delivery while waiting ──> read again; while a read is out ──> woken:
 *   read again when it comes back empty; the deadline (sweep) ──> the
 *   empty answer.
 *
 * A message committed before read 2 is in its answer; one committed after
 * it reaches the registered connection and wakes it. */
#include "api_int.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include <string.h>

typedef struct sync_job {
    api_job a;
    uint64_t after;
    int limit, wait;
    int empty;                 /* nothing after `after` yet */
} sync_job;

static void sync_read(store_reader *r, dbq_job *j)
{
    sync_job *x = (sync_job *)j;
    api_job *a = &x->a;
    iy_msg_list l = { 0 };
    int more = 0;
    uint64_t pos = 0;
    iy_buf_reset(&a->body);
    a->status = 200;
    int rc = store_reader_session(r, a->token, &a->user, a->device);
    if (rc == IY_ENOTFOUND) { api_fail(a, IY_EUNAUTH, "invalid or revoked token"); return; }
    if (rc == 0) rc = store_reader_sync(r, a->user, x->after, x->limit, &l, &more);
    if (rc == 0 && l.n) pos = l.v[l.n - 1].pos;
    else if (rc == 0) rc = store_reader_user_pos(r, a->user, &pos);
    if (rc) {
        api_fail(a, rc, "storage error");
        iy_msg_list_clear(&l);
        return;
    }
    if (!l.n && pos > x->after) pos = x->after;
    iy_buf_putc(&a->body, '{');
    api_write_messages(&a->body, &l);
    iy_buf_append_str(&a->body, ",\"pos\":");
    jw_u64(&a->body, pos);
    iy_buf_append_str(&a->body, more ? ",\"more\":true}" : ",\"more\":false}");
    x->empty = l.n == 0;
    iy_msg_list_clear(&l);
}

static void unwait(conn *c)
{
    if (c->registered) {
        iothread_user_del(c->t, c);
        c->registered = 0;
        bus_unsubscribe(svc_of(c)->bus, c->t->index, c->user);
    }
    c->http_waiting = 0;
    c->wait_woken = 0;
}

static void submit_read(conn *c, sync_job *x)
{
    c->wait_woken = 0;
    api_submit_read(c, &x->a);
}

static void sync_answered(conn *c, api_job *a);

static sync_job *sync_job_new(conn *c, const http_request *req, uint64_t after, int limit, int wait)
{
    sync_job *x = api_job_new(c, req, sizeof *x, NULL, 1, NULL);
    x->a.j.read = sync_read;
    x->after = after;
    x->limit = limit;
    x->wait = wait;
    return x;
}

static void sync_answered(conn *c, api_job *a)
{
    sync_job *x = (sync_job *)a;
    int waiting = x->empty && x->wait > 0 && uv_now(&c->t->loop) < c->wait_deadline_ms;
    if (waiting && !c->registered) {
        /* Subscribe, then read again (once the bus confirms: api_wait_subscribed). */
        c->user = a->user;
        c->session_key = session_key_of(a->token);
        memcpy(c->http->wait_session, a->token, 32);
        c->registered = 1;
        iothread_user_add(c->t, c);
        sync_job *y = sync_job_new(c, NULL, x->after, x->limit, x->wait);
        memcpy(y->a.token, a->token, 32);
        y->a.then = sync_answered;
        api_job_drop(a);
        if (bus_subscribe(svc_of(c)->bus, c->t->index, c->user)) submit_read(c, y);
        else c->waiting_job = y;
        return;
    }
    if (waiting && c->wait_woken) {
        sync_job *y = sync_job_new(c, NULL, x->after, x->limit, x->wait);
        memcpy(y->a.token, a->token, 32);
        y->a.then = sync_answered;
        api_job_drop(a);
        submit_read(c, y);
        return;
    }
    if (waiting) {
        c->http_waiting = 1;
        c->http->wait_after = x->after;
        c->http->wait_limit = x->limit;
        api_job_drop(a);
        return;
    }
    unwait(c);
    conn_http_respond(c, 200, "application/json", a->body.data, a->body.len);
    api_job_drop(a);
}

void sync_request(conn *c, const http_request *req)
{
    uint64_t after = 0, limit = IY_SYNC_DEFAULT, wait = 0;
    int p;
    if (api_query_num(c, req, "after", 0, PROTO_INT_MAX, &after, &p) ||
        api_query_num(c, req, "limit", 1, IY_SYNC_MAX, &limit, &p) ||
        api_query_num(c, req, "wait", 0, IY_WAIT_MAX, &wait, &p))
        return;
    sync_job *x = sync_job_new(c, req, after, (int)limit, (int)wait);
    c->wait_deadline_ms = uv_now(&c->t->loop) + wait * 1000;
    x->a.then = sync_answered;
    api_submit_read(c, &x->a);
}

void api_wait_wake(conn *c)
{
    if (!c->registered) return;
    if (!c->http_waiting) {
        c->wait_woken = 1;   /* a read is out: it reads again if it comes back empty */
        return;
    }
    c->http_waiting = 0;
    sync_job *y = sync_job_new(c, NULL, c->http->wait_after, c->http->wait_limit, 1);
    memcpy(y->a.token, c->http->wait_session, 32);
    y->a.then = sync_answered;
    submit_read(c, y);
}

void api_wait_subscribed(conn *c)
{
    sync_job *y = c->waiting_job;
    c->waiting_job = NULL;
    submit_read(c, y);
}

void api_wait_expire(conn *c)
{
    if (!c->http_waiting) return;
    unwait(c);
    iy_buf b = { 0 };
    iy_buf_append_str(&b, "{\"messages\":[],\"pos\":");
    jw_u64(&b, c->http->wait_after);
    iy_buf_append_str(&b, ",\"more\":false}");
    conn_http_respond(c, 200, "application/json", b.data, b.len);
    iy_buf_free(&b);
}
