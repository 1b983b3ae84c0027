/* friends.c — friends (request, accept, end, list) and presence queries.
 *
 * A friendship changes both sides of the pair together; the decision (a
 * request, or the acceptance of the other's request) is the rule
 * rules_friend_put on the state read, written with the store's
 * compare-and-set, retried if another writer moved the pair meanwhile. New
 * friends learn each other's presence at once (a notice each, from the I/O
 * thread after the commit). */
#include "api_int.h"
#include "../chat/limiter.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../chat/social.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include "../model/rules.h"
#include <string.h>

#define CAS_TRIES 8

typedef struct friend_job {
    api_job a;
    int state;                  /* a's side afterwards */
    int64_t last_a, last_b;     /* stored last_active of the caller and the other */
    /* list: */
    uint64_t *f, *in, *out;
    size_t nf, ni, no;
    iy_user *users;             /* f, in, out in that order (id 0: gone) */
    social_seen *seen;          /* presence query */
    size_t nseen;
    uint64_t *ids;              /* presence query: asked */
    size_t nids;
    iy_user me;                 /* put, delete: the caller, for the other's live notice */
} friend_job;

static void friend_free(api_job *a)
{
    friend_job *x = (friend_job *)a;
    iy_free(x->f);
    iy_free(x->in);
    iy_free(x->out);
    iy_free(x->users);
    iy_free(x->seen);
    iy_free(x->ids);
}

static friend_job *friend_job_new(conn *c, const http_request *req, api_handler h, uint64_t id)
{
    friend_job *x = api_job_new(c, req, sizeof *x, h, 1, friend_free);
    x->a.id = id;
    return x;
}

/* Sets a's side from `want(state)` with compare-and-set: 0, or an error. */
int friends_change(store *s, uint64_t a, uint64_t b, int put, int *state)
{
    for (int i = 0; i < CAS_TRIES; i++) {
        int cur = IY_FRIEND_NONE, rc;
        if ((rc = store_friend_state(s, a, b, &cur)) != 0) return rc;
        int next = put ? rules_friend_put(cur) : IY_FRIEND_NONE;
        rc = store_friend_set(s, a, b, cur, next);
        if (rc != IY_ECONFLICT) {
            *state = next;
            return rc;
        }
    }
    return IY_EUNAVAIL;
}

static void friend_put_store(store *s, api_job *a)
{
    friend_job *x = (friend_job *)a;
    if (a->id == a->user) { api_fail(a, IY_EINVAL, "you cannot befriend yourself"); return; }
    /* A blocked user cannot befriend its blocker (nor accept its request). */
    int rc = store_blocked(s, a->id, a->user);
    if (rc < 0) { api_fail(a, rc, "storage error"); return; }
    if (rc == 1) { api_fail(a, IY_EFORBIDDEN, "this user does not accept your requests"); return; }
    rc = friends_change(s, a->user, a->id, 1, &x->state);
    if (rc == IY_ENOTFOUND) { api_fail(a, IY_ENOTFOUND, "no such user"); return; }
    if (rc) { api_fail(a, rc, "storage error"); return; }
    store_last_active_get(s, a->user, &x->last_a);
    store_last_active_get(s, a->id, &x->last_b);
    if (store_user_get(s, a->user, &x->me) != 0) x->me.id = 0;
    iy_buf_append_str(&a->body, x->state == IY_FRIEND_MUTUAL ? "{\"state\":\"friends\"}" : "{\"state\":\"outgoing\"}");
}

/* The other side's sockets learn of the change at once:
 * {"op":"friend","user":{the caller},"state":"incoming"|"friends"|"none"}. */
static void notify_other(api_job *a, const char *state)
{
    friend_job *x = (friend_job *)a;
    if (!x->me.id || a->id == a->user) return;
    iy_buf f = { 0 };
    iy_buf_append_str(&f, "{\"op\":\"friend\",\"user\":");
    proto_write_user(&f, &x->me);
    iy_buf_append_str(&f, ",\"state\":");
    jw_cstr(&f, state);
    iy_buf_putc(&f, '}');
    bus_notify(a->svc->bus, bus_notice_new(&a->id, 1, f.data, f.len));
    iy_buf_free(&f);
}

static void friend_put_done(conn *c, api_job *a)
{
    friend_job *x = (friend_job *)a;
    if (x->state == IY_FRIEND_MUTUAL) {
        /* New friends learn each other's presence at once. */
        social_notify_presence(a->svc, a->user, x->last_a, &a->id, 1);
        social_notify_presence(a->svc, a->id, x->last_b, &a->user, 1);
    }
    notify_other(a, x->state == IY_FRIEND_MUTUAL ? "friends" : "incoming");
    conn_http_respond(c, 200, "application/json", a->body.data, a->body.len);
    api_job_drop(a);
}

void friends_put(conn *c, const http_request *req, uint64_t id)
{
    friend_job *x = friend_job_new(c, req, friend_put_store, id);
    x->a.then = friend_put_done;
    api_submit(c, &x->a);
}

static void friend_delete_store(store *s, api_job *a)
{
    friend_job *x = (friend_job *)a;
    int rc = a->id == a->user ? 0 : friends_change(s, a->user, a->id, 0, &x->state);
    if (rc == 0 && a->id == a->user) {
        iy_user u;
        rc = store_user_get(s, a->id, &u);   /* nothing to end with oneself; the user exists */
    }
    if (rc == IY_ENOTFOUND) api_fail(a, IY_ENOTFOUND, "no such user");
    else if (rc) api_fail(a, rc, "storage error");
    else if (store_user_get(s, a->user, &x->me) != 0) x->me.id = 0;
}

static void friend_delete_done(conn *c, api_job *a)
{
    notify_other(a, "none");
    conn_http_respond(c, 204, "application/json", "", 0);
    api_job_drop(a);
}

void friends_delete(conn *c, const http_request *req, uint64_t id)
{
    friend_job *x = friend_job_new(c, req, friend_delete_store, id);
    x->a.then = friend_delete_done;
    api_submit(c, &x->a);
}

/* ---- blocks: per account, listed and reversible ---- */

static void block_change_store(store *s, api_job *a, int on)
{
    friend_job *x = (friend_job *)a;
    if (a->id == a->user) { api_fail(a, IY_EINVAL, "you cannot block yourself"); return; }
    int rc = store_block_set(s, a->user, a->id, on);
    /* A block ends a friendship (and with it, presence both ways). */
    if (rc == 0 && on) rc = friends_change(s, a->user, a->id, 0, &x->state);
    if (rc == IY_ENOTFOUND) api_fail(a, IY_ENOTFOUND, "no such user");
    else if (rc) api_fail(a, rc, "storage error");
    else a->status = 204;
}

static void block_put_store(store *s, api_job *a) { block_change_store(s, a, 1); }
static void block_delete_store(store *s, api_job *a) { block_change_store(s, a, 0); }

void blocks_put(conn *c, const http_request *req, uint64_t id)
{
    api_submit(c, &friend_job_new(c, req, block_put_store, id)->a);
}

void blocks_delete(conn *c, const http_request *req, uint64_t id)
{
    api_submit(c, &friend_job_new(c, req, block_delete_store, id)->a);
}

static void user_array(iy_buf *b, const iy_user *u, size_t n);

static void blocks_list_store(store *s, api_job *a)
{
    friend_job *x = (friend_job *)a;
    int rc = store_block_list(s, a->user, &x->ids, &x->nids);
    if (rc) { api_fail(a, rc, "storage error"); return; }
    x->users = iy_calloc(x->nids ? x->nids : 1, sizeof *x->users);
    for (size_t i = 0; i < x->nids; i++)
        if (store_user_get(s, x->ids[i], &x->users[i]) != 0) x->users[i].id = 0;
    iy_buf_append_str(&a->body, "{\"blocked\":");
    user_array(&a->body, x->users, x->nids);
    iy_buf_putc(&a->body, '}');
}

void blocks_list(conn *c, const http_request *req)
{
    api_submit(c, &friend_job_new(c, req, blocks_list_store, 0)->a);
}

/* ---- the list ---- */

static void friends_list_store(store *s, api_job *a)
{
    friend_job *x = (friend_job *)a;
    int rc = store_friend_list(s, a->user, &x->f, &x->nf, &x->in, &x->ni, &x->out, &x->no);
    if (rc) { api_fail(a, rc, "storage error"); return; }
    size_t n = x->nf + x->ni + x->no;
    x->users = iy_calloc(n ? n : 1, sizeof *x->users);
    x->seen = iy_calloc(x->nf ? x->nf : 1, sizeof *x->seen);
    const uint64_t *lists[3] = { x->f, x->in, x->out };
    size_t counts[3] = { x->nf, x->ni, x->no }, k = 0;
    for (int l = 0; l < 3; l++)
        for (size_t i = 0; i < counts[l]; i++, k++)
            if (store_user_get(s, lists[l][i], &x->users[k]) != 0) x->users[k].id = 0;
    for (size_t i = 0; i < x->nf; i++) {
        x->seen[i].user = x->f[i];
        store_last_active_get(s, x->f[i], &x->seen[i].stored_last);
    }
}

static void user_array(iy_buf *b, const iy_user *u, size_t n)
{
    iy_buf_putc(b, '[');
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        if (!u[i].id) continue;
        if (!first) iy_buf_putc(b, ',');
        first = 0;
        proto_write_user(b, &u[i]);
    }
    iy_buf_putc(b, ']');
}

/* On the I/O thread: the presence registry says who is online now. */
static void friends_list_done(conn *c, api_job *a)
{
    friend_job *x = (friend_job *)a;
    iy_buf *b = &a->body;
    iy_buf_reset(b);
    iy_buf_append_str(b, "{\"friends\":[");
    int first = 1;
    for (size_t i = 0; i < x->nf; i++) {
        if (!x->users[i].id) continue;
        int online;
        int64_t last;
        social_presence_of(a->svc, x->f[i], x->seen[i].stored_last, &online, &last);
        if (!first) iy_buf_putc(b, ',');
        first = 0;
        iy_buf_append_str(b, "{\"user\":");
        proto_write_user(b, &x->users[i]);
        iy_buf_append_str(b, ",\"presence\":{");
        social_presence_fields(b, x->f[i], online, last);
        iy_buf_append_str(b, "}}");
    }
    iy_buf_append_str(b, "],\"incoming\":");
    user_array(b, x->users + x->nf, x->ni);
    iy_buf_append_str(b, ",\"outgoing\":");
    user_array(b, x->users + x->nf + x->ni, x->no);
    iy_buf_putc(b, '}');
    conn_http_respond(c, 200, "application/json", b->data, b->len);
    api_job_drop(a);
}

void friends_list(conn *c, const http_request *req)
{
    friend_job *x = friend_job_new(c, req, friends_list_store, 0);
    x->a.then = friends_list_done;
    api_submit(c, &x->a);
}

/* ---- presence query ---- */

static void presence_store(store *s, api_job *a)
{
    friend_job *x = (friend_job *)a;
    service_limits *lim = a->svc->limits;
    int64_t wait = lim ? limiter_take(lim->presence_user, a->user, (int64_t)now_ms()) : 0;
    if (wait) {
        api_fail_retry(a, IY_ERATE, "too many presence queries", wait);
        return;
    }
    social_visible(s, a->user, x->ids, x->nids, &x->seen, &x->nseen);
}

static void presence_done(conn *c, api_job *a)
{
    friend_job *x = (friend_job *)a;
    iy_buf *b = &a->body;
    iy_buf_reset(b);
    iy_buf_putc(b, '{');
    social_presence_list(b, a->svc, x->seen, x->nseen);
    iy_buf_putc(b, '}');
    conn_http_respond(c, 200, "application/json", b->data, b->len);
    api_job_drop(a);
}

void friends_presence(conn *c, const http_request *req)
{
    char list[IY_PRESENCE_QUERY_MAX * 21 + 1];
    int rc = http_query_get(req->query, "users", list, sizeof list);
    if (rc != 1 || !list[0]) {
        conn_http_error(c, rc == IY_EINVAL ? IY_ETOOBIG : IY_EINVAL,
                        rc == IY_EINVAL ? "at most 200 users" : "give ?users=ID,ID");
        return;
    }
    friend_job *x = friend_job_new(c, req, presence_store, 0);
    x->a.then = presence_done;
    x->ids = iy_calloc(IY_PRESENCE_QUERY_MAX, sizeof *x->ids);
    for (char *tok = list, *end; tok; tok = end ? end + 1 : NULL) {
        end = strchr(tok, ',');
        size_t n = end ? (size_t)(end - tok) : strlen(tok);
        uint64_t id;
        if (x->nids == IY_PRESENCE_QUERY_MAX || proto_parse_id(tok, n, &id)) {
            conn_http_error(c, x->nids == IY_PRESENCE_QUERY_MAX ? IY_ETOOBIG : IY_EINVAL,
                            x->nids == IY_PRESENCE_QUERY_MAX ? "at most 200 users" : "users must be user ids");
            api_job_drop(&x->a);
            return;
        }
        x->ids[x->nids++] = id;
    }
    api_submit(c, &x->a);
}
