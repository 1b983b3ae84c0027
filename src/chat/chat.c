/* chat.c — the WebSocket ops of the contract on an authenticated socket,
 * and the transport's handlers (service_handlers).
 *
 * Every op that needs the store becomes a typed job: sends join the next
 * commit round (chat/commit.c) and are answered with `ack` only after it;
 * `auth`, `read`, `typing` and `presence` run on the storage thread (store
 * work only) and publish their notices from `done`, back here; `history`
 * and `sync` only read committed data and run on a reader thread
 * (store/readq.h).
 *
 * Auth: subscribe, then read (so ready.pos plus the live stream leave no
 * gap, with any bus, in any order of the threads' inboxes):
 *
 *   auth frame ──token cache, or store──> token -> user ──> register the
 *   socket under the user (AUTHING: deliveries are held, bus_subscribe)
 *   ──store──> token still valid, user, inbox pos P ──> `ready` {pos: P},
 *   then the held messages with pos > P, then the live stream (deliver.c)
 *
 * The token cache (chat/tokens.h) saves the first read: a token revoked
 * is forgotten there before its revocation is published. The second read
 * asks the store in a cluster (another node's delete reaches this node's
 * cache a moment later); on a single node the cache answers it too (see
 * auth_run).
 *
 * A message committed before the second read has pos <= P (sync finds it);
 * one committed after reaches the registered socket, held or live. A logout
 * committed after the second read reaches the registered socket as a revoke;
 * one committed before it fails the read. */
#include "chat.h"
#include "auth.h"
#include "limiter.h"
#include "post.h"
#include "presence.h"
#include "social.h"
#include "tokens.h"
#include "../api/api.h"
#include "../base/alloc.h"
#include "../base/counter.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../base/metrics.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include "../model/rules.h"
#include <string.h>

/* What every WebSocket job carries: its connection and request id. */
typedef struct ws_job {
    dbq_job j;
    uint64_t conn_id;
    uint64_t user;
    char rid[IY_RID_MAX + 1];
    int has_rid;
    uint64_t t0;                      /* receipt of the frame (ns) */
    int op;                           /* enum proto_op (metrics) */
    service *svc;
} ws_job;

/* proto's op numbers as metrics label values (0: a frame that did not parse). */
static const char *const op_names[] = { "invalid", "auth", "send", "sync", "history", "read", "typing",
                                        "presence", "hb", "edit", "delete", "react" };

void chat_metrics_ops(void) { metrics_ws_ops(op_names, sizeof op_names / sizeof op_names[0]); }

/* An op answered at once (no job): its outcome, timed from now. */
static void op_now(int op, int err) { metrics_ws_op((unsigned)op, err, 0); }

static void ws_job_init(ws_job *w, conn *c, const proto_req *req, int kind, void (*free_fn)(dbq_job *))
{
    dbq_job_init(&w->j, kind);
    w->j.free = free_fn;
    w->j.origin = c->t;
    w->conn_id = c->id;
    w->user = c->user;
    w->svc = svc_of(c);
    w->t0 = mono_ns();
    w->op = req ? req->op : 0;
    if (req->has_rid) {
        memcpy(w->rid, req->rid, sizeof w->rid);
        w->has_rid = 1;
    }
}

static const char *rid_of(const ws_job *w) { return w->has_rid ? w->rid : NULL; }

static void send_error_retry(conn *c, const char *rid, int err, const char *message, int64_t retry_ms)
{
    iy_buf b = { 0 };
    proto_write_error_retry(&b, rid, iy_err_code(err), message, retry_ms);
    conn_ws_send(c, b.data, b.len);
    iy_buf_free(&b);
}

static void send_error(conn *c, const char *rid, int err, const char *message)
{
    send_error_retry(c, rid, err, message, 0);
}

/* A user's rate limit l (NULL: off): 0 if allowed, else answers
 * rate_limited with the wait and returns it. */
static int64_t over_limit(conn *c, limiter *l, const proto_req *req, const char *what)
{
    int64_t wait = l ? limiter_take(l, c->user, (int64_t)now_ms()) : 0;
    if (wait) {
        metrics_add(M_RATE_LIMITED, 1);
        op_now(req->op, IY_ERATE);
        send_error_retry(c, req->has_rid ? req->rid : NULL, IY_ERATE, what, wait);
    }
    return wait;
}

/* Starts an object frame {"op":"<op>"[,"rid":"..."] — the caller continues. */
static void frame_begin(iy_buf *b, const char *op, const char *rid)
{
    iy_buf_append_str(b, "{\"op\":\"");
    iy_buf_append_str(b, op);
    iy_buf_putc(b, '"');
    if (rid) {
        iy_buf_putc(b, ',');
        jw_key(b, "rid");
        jw_cstr(b, rid);
    }
}

#define DRAIN_WAIT_MS 2000     /* draining: a socket's requests get this long to be answered */

/* The job's connection, if it is still open; counts the answer. A
 * draining socket closes (1012) after its last answer: what it sent before
 * the drain is acknowledged first. */
static conn *job_conn(ws_job *w)
{
    metrics_ws_op((unsigned)w->op, w->j.err, mono_ns() - w->t0);
    conn *c = iothread_conn(w->j.origin, w->conn_id);
    if (!c || c->closing) return NULL;
    c->inflight_reqs--;
    if (c->paused && c->ws_state == WS_READY && c->inflight_reqs < CONN_MAX_INFLIGHT / 2 && !c->drain_pending)
        conn_resume(c);
    return c;
}

static void drain_check(conn *c)
{
    if (c->drain_pending && c->inflight_reqs <= 0 && !c->closing) conn_ws_close(c, 1012, "service restart");
}

/* To the storage thread, or to a reader thread when w->j.read is set (one
 * connection's reads keep their order there: one key, one thread). Both
 * count toward the connection's requests in flight. */
static int submit(conn *c, ws_job *w)
{
    service *svc = svc_of(c);
    int rc = w->j.read ? readq_submit(svc->readq, &w->j, c->id * 31 + c->t->index)
                       : dbq_submit(svc->dbq, &w->j);
    if (rc != 0) {
        send_error(c, rid_of(w), IY_EUNAVAIL, "server is shutting down");
        dbq_job_unref(&w->j);
        return IY_EUNAVAIL;
    }
    if (++c->inflight_reqs >= CONN_MAX_INFLIGHT) conn_pause(c);
    return 0;
}

static const char *store_error_text(int err)
{
    switch (err) {
    case IY_EFORBIDDEN: return "not a member of this channel";
    case IY_ENOTFOUND: return "no such channel";
    case IY_EUNAVAIL: return "storage unavailable, retry";
    default: return "storage error";
    }
}

/* ---- auth: subscribe, then read ---- */

typedef struct auth_job {
    ws_job w;
    uint8_t session[32];
    int second;                       /* the read after the registration */
    char device[IY_DEVICE_MAX + 1];
    iy_user u;
    uint64_t pos;
} auth_job;

static void auth_free(dbq_job *j) { iy_free(j); }

/* Storage thread: committed reads only (it needs no order against the bus:
 * the second read comes after the subscription). It runs there rather than
 * on a reader thread so that a crowd reconnecting at once is not queued
 * behind its own syncs, which do run on the readers. */
static void auth_run(store *s, dbq_job *j)
{
    auth_job *a = (auth_job *)j;
    tokens *tk = a->w.svc->tokens;
    uint64_t user = 0;
    uint64_t epoch = a->second ? 0 : tokens_epoch(tk, a->session);
    int rc;
    /* The second read's token check is what the revocation race above
     * relies on. On a single node the cache answers it as well as the
     * store: every session delete runs on this thread and forgets the
     * token right after it, so a token still cached here was not deleted
     * before this read. In a cluster another node may have deleted it a
     * moment ago: ask the store. */
    if (a->second && !a->w.svc->cluster && tokens_get(tk, a->session, &user, a->device)) rc = 0;
    else rc = store_session_get(s, a->session, &user, a->device);
    /* The first read of a token not cached: cache it, so that the
     * device's next connection skips this round trip. */
    if (rc == 0 && !a->second) tokens_put(tk, a->session, user, a->device, epoch);
    if (rc == 0 && a->second && user != a->w.user) rc = IY_ENOTFOUND;
    if (rc == 0 && a->second) rc = store_user_get_cold(s, user, &a->u);
    if (rc == 0 && a->second) rc = store_user_pos(s, user, &a->pos);
    a->w.user = user;
    j->err = rc == IY_ENOTFOUND ? IY_EUNAUTH : rc;
}

static void auth_failed(conn *c, auth_job *a)
{
    int unauth = a->w.j.err == IY_EUNAUTH;
    if (unauth && iy_log_allow(&iy_log_auth_budget)) {
        char peer[48];
        net_addr_text(c->client, peer, sizeof peer);
        iy_log_warn("ws auth failed from %s: invalid or revoked token", peer);
    }
    send_error(c, rid_of(&a->w), unauth ? IY_EUNAUTH : a->w.j.err,
               unauth ? "invalid or revoked token" : "storage unavailable, retry");
    conn_ws_close(c, 1008, "authentication failed");
}

static void ready(conn *c, auth_job *a)
{
    iy_buf b = { 0 };
    frame_begin(&b, "ready", rid_of(&a->w));
    iy_buf_putc(&b, ',');
    jw_key(&b, "user");
    proto_write_user(&b, &a->u);
    iy_buf_putc(&b, ',');
    jw_key(&b, "device");
    jw_cstr(&b, a->device);
    iy_buf_putc(&b, ',');
    jw_key(&b, "pos");
    jw_u64(&b, a->pos);
    iy_buf_putc(&b, '}');
    conn_ws_send(c, b.data, b.len);
    iy_buf_free(&b);
    c->ws_state = WS_READY;
    c->reported_rx_ms = (uint32_t)c->last_rx_ms;
    metrics_add(M_WS_CONNECTIONS, 1);
    presence_device_up(svc_of(c)->presence, c->user, (int64_t)now_ms());
    deliver_ready(c, a->pos);          /* the held messages after P, in pos order */
    conn_resume(c);
}

/* The token names a->w.user (the store said so, or the token cache):
 * register the socket under the user, subscribe, then the second read. */
static void auth_register(conn *c, auth_job *a)
{
    /* A cap on one account's sockets here: a user's fan-out multiplies
     * every message by them (and their output buffers). */
    service *svc = svc_of(c);
    if (svc->user_sockets && !counter_inc(svc->user_sockets, a->w.user, svc->cfg.max_user_sockets)) {
        metrics_add(M_RATE_LIMITED, 1);
        send_error(c, rid_of(&a->w), IY_ERATE, "too many connections for this account");
        conn_ws_close(c, 1008, "too many connections for this account");
        dbq_job_unref(&a->w.j);
        return;
    }
    c->counted_user = svc->user_sockets != NULL;
    /* Subscribe: from here on every message for the user reaches this
     * socket (held until ready), then read the inbox pos — at once, or
     * once the bus confirms the subscription (chat_subscribed). */
    c->user = a->w.user;
    c->session_key = session_key_of(a->session);
    c->registered = 1;
    iothread_user_add(c->t, c);
    a->second = 1;
    if (bus_subscribe(svc->bus, c->t->index, c->user)) {
        dbq_job_init(&a->w.j, DBQ_RUN);
        submit(c, &a->w);
    } else {
        c->waiting_job = a;
    }
}

static void auth_done(dbq_job *j)
{
    auth_job *a = (auth_job *)j;
    conn *c = iothread_conn(j->origin, a->w.conn_id);
    if (!c || c->closing) {
        dbq_job_unref(j);
        return;
    }
    c->inflight_reqs--;
    if (j->err || a->second) metrics_ws_op(P_AUTH, j->err, mono_ns() - a->w.t0);
    if (j->err) {
        auth_failed(c, a);
        dbq_job_unref(j);
        return;
    }
    if (!a->second) {
        auth_register(c, a);
        return;
    }
    ready(c, a);
    dbq_job_unref(j);
}

void chat_subscribed(conn *c)
{
    auth_job *a = c->waiting_job;
    c->waiting_job = NULL;
    dbq_job_init(&a->w.j, DBQ_RUN);
    submit(c, &a->w);
}

static void start_auth(conn *c, const proto_req *req)
{
    auth_job *a = iy_calloc(1, sizeof *a);
    ws_job_init(&a->w, c, req, DBQ_RUN, auth_free);
    auth_token_hash(req->token, strlen(req->token), a->session);
    a->w.j.run = auth_run;
    a->w.j.done = auth_done;
    c->ws_state = WS_AUTHING;
    conn_pause(c); /* frames pipelined behind auth wait for the answer */
    /* A cached token skips the first read: one storage round trip, not two. */
    if (tokens_get(svc_of(c)->tokens, a->session, &a->w.user, a->device)) auth_register(c, a);
    else submit(c, &a->w);
}

/* ---- send ---- */

typedef struct send_job {
    ws_job w;
    char cmid[IY_CMID_MAX + 1];
} send_job;

static void send_free(dbq_job *j)
{
    iy_free(j->stored.msg.atts);
    iy_free(j->text);
    iy_free(j);
}

static const char *send_error_text(int err, const iy_send *in)
{
    const char *t = post_error_text(err, in);
    if (t) return t;
    switch (err) {
    case IY_ENOTFOUND: return "no such user or channel";
    case IY_EFORBIDDEN: return "not a member of this channel";
    case IY_EINVAL: return "cannot send a message to yourself";
    case IY_EUNAVAIL: return "storage unavailable, retry with the same cmid";
    case IY_ERATE: return "too many new chats; retry later";
    default: return "internal error";
    }
}

static void send_done(dbq_job *j)
{
    send_job *s = (send_job *)j;
    conn *c = job_conn(&s->w);
    if (c) deliver_answered(c, s->cmid);
    if (c && (j->err == 0 || j->err == IY_EEXIST)) {
        const iy_msg *m = &j->stored.msg;
        iy_buf b = { 0 };
        frame_begin(&b, "ack", rid_of(&s->w));
        if (!j->send.event) {
            iy_buf_putc(&b, ',');
            jw_key(&b, "cmid");
            jw_cstr(&b, s->cmid);
        }
        iy_buf_append_str(&b, ",\"id\":");
        jw_id(&b, m->id);
        iy_buf_append_str(&b, ",\"channel\":");
        jw_id(&b, m->channel);
        iy_buf_append_str(&b, ",\"seq\":");
        jw_u64(&b, m->seq);
        iy_buf_append_str(&b, ",\"pos\":");
        jw_u64(&b, m->pos);
        iy_buf_append_str(&b, ",\"ts\":");
        jw_i64(&b, m->ts);
        iy_buf_putc(&b, '}');
        conn_ws_send(c, b.data, b.len);
        iy_buf_free(&b);
        if (m->pos) deliver_acked(c, m->pos);
        metrics_observe_ack_ns(mono_ns() - s->w.t0);
    } else if (c) {
        send_error(c, rid_of(&s->w), j->err, send_error_text(j->err, &j->send));
    }
    if (c) drain_check(c);
    dbq_job_unref(j);
}

static void start_send(conn *c, proto_req *req)
{
    service *svc = svc_of(c);
    if (over_limit(c, svc->limits ? svc->limits->send_user : NULL, req,
                   "too many messages; retry with the same cmid later"))
        return;
    if (svc_shed_send(svc)) {
        /* Shed load rather than queue without bound; nothing was stored. */
        metrics_add(M_SHED, 1);
        op_now(req->op, IY_EUNAVAIL);
        send_error(c, req->has_rid ? req->rid : NULL, IY_EUNAVAIL, "server busy, retry with the same cmid");
        return;
    }
    send_job *s = iy_calloc(1, sizeof *s);
    ws_job_init(&s->w, c, req, DBQ_SEND, send_free);
    s->w.j.done = send_done;
    s->w.j.text = req->text;
    req->text = NULL;
    if (req->has_cmid) memcpy(s->cmid, req->cmid, sizeof s->cmid);
    if (req->op == P_SEND) {
        memcpy(s->w.j.attachments, req->attachments, sizeof s->w.j.attachments);
        s->w.j.send = (iy_send){ .from = c->user, .channel = req->channel, .to = req->to,
                                 .text = s->w.j.text, .text_len = req->text_len, .cmid = s->cmid,
                                 .reply_to = req->reply_to, .attachments = s->w.j.attachments,
                                 .nattachments = req->nattachments };
    } else {
        /* edit, delete, react: an event of the message's channel (the round finds it) */
        int ev = req->op == P_EDIT ? IY_EV_EDITED : req->op == P_DELETE ? IY_EV_DELETED
                 : req->on ? IY_EV_REACTED : IY_EV_UNREACTED;
        s->w.j.send = (iy_send){ .from = c->user, .target = req->id, .text = s->w.j.text ? s->w.j.text : "",
                                 .text_len = req->text_len, .cmid = s->cmid, .event = ev };
    }
    s->w.j.origin_thread = c->t->index;
    s->w.j.origin_conn = c->id;
    if (submit(c, &s->w) == 0) deliver_sending(c, s->cmid);
}

/* ---- sync and history (reader threads) ---- */

typedef struct read_job {
    ws_job w;
    uint64_t channel, after;          /* sync: after */
    int limit;                        /* sync */
    store_page page;                  /* history */
    iy_buf out;                       /* the answer, built on the reader thread */
} read_job;

static void read_free(dbq_job *j)
{
    iy_buf_free(&((read_job *)j)->out);
    iy_free(j);
}

static void write_messages(iy_buf *b, const iy_msg_list *l)
{
    jw_key(b, "messages");
    iy_buf_putc(b, '[');
    for (size_t i = 0; i < l->n; i++) {
        if (i) iy_buf_putc(b, ',');
        proto_write_message(b, &l->v[i]);
    }
    iy_buf_putc(b, ']');
}

/* Reader thread. Needs no order against the bus: the socket is READY, so
 * registered for live delivery before this request was read; anything
 * committed after the reader's view reaches it live (the client dedups by
 * pos, as it must for any sync). */
static void sync_read(store_reader *r, dbq_job *j)
{
    read_job *w = (read_job *)j;
    iy_msg_list l = { 0 };
    int more = 0;
    uint64_t pos = 0;
    j->err = store_reader_sync(r, w->w.user, w->after, w->limit, &l, &more);
    if (!j->err && l.n) pos = l.v[l.n - 1].pos;
    else if (!j->err) j->err = store_reader_user_pos(r, w->w.user, &pos);
    if (!j->err) {
        if (!l.n && pos > w->after) pos = w->after; /* nothing after `after` yet */
        frame_begin(&w->out, "batch", rid_of(&w->w));
        iy_buf_putc(&w->out, ',');
        write_messages(&w->out, &l);
        iy_buf_append_str(&w->out, ",\"pos\":");
        jw_u64(&w->out, pos);
        iy_buf_append_str(&w->out, more ? ",\"more\":true}" : ",\"more\":false}");
    }
    iy_msg_list_clear(&l);
}

/* Reader thread: membership and the page, both from committed data. */
static void history_read(store_reader *r, dbq_job *j)
{
    read_job *w = (read_job *)j;
    iy_msg_list l = { 0 };
    j->err = store_reader_is_member(r, w->channel, w->w.user);
    if (!j->err)
        j->err = store_reader_page(r, w->channel, &w->page, &l);
    if (!j->err) {
        frame_begin(&w->out, "batch", rid_of(&w->w));
        iy_buf_putc(&w->out, ',');
        write_messages(&w->out, &l);
        iy_buf_putc(&w->out, '}');
    }
    iy_msg_list_clear(&l);
}

static void read_done(dbq_job *j)
{
    read_job *w = (read_job *)j;
    conn *c = job_conn(&w->w);
    if (c && j->err == 0) conn_ws_send(c, w->out.data, w->out.len);
    else if (c) send_error(c, rid_of(&w->w), j->err, store_error_text(j->err));
    if (c) drain_check(c);
    dbq_job_unref(j);
}

static void start_read(conn *c, const proto_req *req, void (*read)(store_reader *, dbq_job *))
{
    read_job *w = iy_calloc(1, sizeof *w);
    ws_job_init(&w->w, c, req, DBQ_RUN, read_free);
    w->w.j.read = read;
    w->w.j.done = read_done;
    w->channel = req->channel;
    w->limit = req->limit;
    if (req->op == P_SYNC) {
        w->after = req->after;
    } else {
        w->page = (store_page){ .before = req->before_seq, .after = req->after_seq, .around = req->around_seq,
                                .has_before = req->has_before, .has_after = req->has_after,
                                .has_around = req->has_around, .limit = req->limit };
    }
    submit(c, &w->w);
}

/* ---- read receipts and typing: store work, then a notice from here ---- */

typedef struct notice_job {
    ws_job w;
    int op;                           /* P_READ or P_TYPING */
    uint64_t channel;
    uint64_t seq;                     /* read: asked; after run: the stored read seq */
    int moved;                        /* read: the stored read seq moved */
    iy_channel *ch;                   /* run: the channel (members) */
} notice_job;

static void notice_free(dbq_job *j)
{
    iy_free(((notice_job *)j)->ch);
    iy_free(j);
}

static void notice_run(store *s, dbq_job *j)
{
    notice_job *n = (notice_job *)j;
    n->ch = iy_malloc(sizeof *n->ch);
    j->err = store_channel_get(s, n->channel, n->ch);
    if (!j->err && !rules_is_member(n->ch, n->w.user)) j->err = IY_EFORBIDDEN;
    if (j->err || n->op != P_READ) return;
    iy_msg last;
    memset(&last, 0, sizeof last);
    uint64_t newest = 0, cur = 0, now = 0;
    int rc = store_channel_last(s, n->channel, &last);
    if (rc == 0) newest = last.seq;
    iy_msg_clear(&last);
    if (rc != 0 && rc != IY_ENOTFOUND) {
        j->err = rc;
        return;
    }
    if ((j->err = store_read_get(s, n->w.user, n->channel, &cur)) != 0) return;
    uint64_t want = rules_read_seq(n->seq, newest, cur);
    if (want > cur && (j->err = store_read_set(s, n->w.user, n->channel, want, &now)) != 0) return;
    n->moved = want > cur;   /* a read that moves nothing tells nobody */
    n->seq = want > cur ? now : cur;
}

static void notice_done(dbq_job *j)
{
    notice_job *n = (notice_job *)j;
    conn *c = job_conn(&n->w);
    if (j->err) {
        if (c) send_error(c, rid_of(&n->w), j->err, store_error_text(j->err));
    } else if (n->op == P_TYPING || n->moved) {
        iy_buf f = { 0 };
        iy_buf_append_str(&f, n->op == P_READ ? "{\"op\":\"receipt\",\"channel\":" : "{\"op\":\"typing\",\"channel\":");
        jw_id(&f, n->channel);
        iy_buf_append_str(&f, ",\"user\":");
        jw_id(&f, n->w.user);
        if (n->op == P_READ) {
            iy_buf_append_str(&f, ",\"seq\":");
            jw_u64(&f, n->seq);
        }
        iy_buf_putc(&f, '}');
        bus_notice *no = bus_notice_new(n->ch->members, n->ch->nmembers, f.data, f.len);
        if (n->op == P_TYPING) {
            no->skip_user = n->w.user;   /* never to any device of the typist */
        } else {
            /* the reader's other devices follow; the reading socket knows */
            no->origin = (bus_origin){ n->w.svc->node, ((iothread *)j->origin)->index, n->w.conn_id };
        }
        bus_notify(n->w.svc->bus, no);
        iy_buf_free(&f);
    }
    if (c) drain_check(c);
    dbq_job_unref(j);
}

static void start_notice(conn *c, const proto_req *req)
{
    notice_job *n = iy_calloc(1, sizeof *n);
    ws_job_init(&n->w, c, req, DBQ_RUN, notice_free);
    n->w.j.run = notice_run;
    n->w.j.done = notice_done;
    n->op = req->op;
    n->channel = req->channel;
    n->seq = req->seq;
    submit(c, &n->w);
}

/* ---- presence query ---- */

typedef struct presence_job {
    ws_job w;
    uint64_t *users;
    size_t nusers;
    social_seen *seen;                /* run: the ones the caller may see */
    size_t nseen;
} presence_job;

static void presence_job_free(dbq_job *j)
{
    presence_job *p = (presence_job *)j;
    iy_free(p->users);
    iy_free(p->seen);
    iy_free(p);
}

static void presence_run(store *s, dbq_job *j)
{
    presence_job *p = (presence_job *)j;
    social_visible(s, p->w.user, p->users, p->nusers, &p->seen, &p->nseen);
}

static void presence_done(dbq_job *j)
{
    presence_job *p = (presence_job *)j;
    conn *c = job_conn(&p->w);
    if (c) {
        iy_buf b = { 0 };
        frame_begin(&b, "presence", rid_of(&p->w));
        iy_buf_putc(&b, ',');
        social_presence_list(&b, p->w.svc, p->seen, p->nseen);
        iy_buf_putc(&b, '}');
        conn_ws_send(c, b.data, b.len);
        iy_buf_free(&b);
        drain_check(c);
    }
    dbq_job_unref(j);
}

static void start_presence(conn *c, proto_req *req)
{
    service_limits *lim = svc_of(c)->limits;
    if (over_limit(c, lim ? lim->presence_user : NULL, req, "too many presence queries")) return;
    presence_job *p = iy_calloc(1, sizeof *p);
    ws_job_init(&p->w, c, req, DBQ_RUN, presence_job_free);
    p->w.j.run = presence_run;
    p->w.j.done = presence_done;
    p->users = req->users;
    p->nusers = req->nusers;
    req->users = NULL;
    req->nusers = 0;
    submit(c, &p->w);
}

/* ---- dispatch ---- */

static void on_ws_text(conn *c, const char *data, size_t len)
{
    proto_req req;
    memset(&req, 0, sizeof req);
    char err[160];
    int rc = proto_parse(data, len, &req, err, sizeof err);
    if (rc) {
        op_now(req.op, rc);   /* 0 ("invalid") when not even the op was read */
        send_error(c, req.has_rid ? req.rid : NULL, rc, err);
        /* Before auth a bad frame is as bad as no auth: the socket goes. */
        if (c->ws_state == WS_NEW) conn_ws_close(c, 1008, "the first frame must be auth");
        proto_req_clear(&req);
        return;
    }
    const char *rid = req.has_rid ? req.rid : NULL;
    if (c->ws_state != WS_READY) {
        if (svc_of(c)->draining) {
            /* This node is leaving: go to another one at once. */
            conn_ws_close(c, 1012, "service restart");
        } else if (req.op == P_AUTH && c->ws_state == WS_NEW) {
            start_auth(c, &req);
        } else {
            op_now(req.op, IY_EUNAUTH);
            send_error(c, rid, IY_EUNAUTH, "the first frame must be auth");
            conn_ws_close(c, 1008, "not authenticated");
        }
        proto_req_clear(&req);
        return;
    }
    switch (req.op) {
    case P_AUTH:
        op_now(P_AUTH, IY_EINVAL);
        send_error(c, rid, IY_EINVAL, "already authenticated");
        break;
    case P_SEND:
    case P_EDIT:
    case P_DELETE:
    case P_REACT:
        start_send(c, &req);
        break;
    case P_SYNC:
        start_read(c, &req, sync_read);
        break;
    case P_HISTORY:
        start_read(c, &req, history_read);
        break;
    case P_READ:
        start_notice(c, &req);
        break;
    case P_TYPING: {
        /* At most one typing per socket per second; extras are dropped. */
        uint64_t now = uv_now(&c->t->loop);
        if (c->typed && (uint32_t)now - c->last_typing_ms < 1000) { op_now(P_TYPING, 0); break; }
        c->typed = 1;
        c->last_typing_ms = (uint32_t)now;
        /* ... and a few per user, whatever its number of sockets. */
        service_limits *lim = svc_of(c)->limits;
        if (lim && limiter_take(lim->typing_user, c->user, (int64_t)now_ms())) { op_now(P_TYPING, IY_ERATE); break; }
        start_notice(c, &req);
        break;
    }
    case P_PRESENCE:
        start_presence(c, &req);
        break;
    case P_HB: {
        op_now(P_HB, 0);
        iy_buf b = { 0 };
        frame_begin(&b, "hb", rid);
        iy_buf_putc(&b, '}');
        conn_ws_send(c, b.data, b.len);
        iy_buf_free(&b);
        break;
    }
    default:
        op_now(0, IY_EINVAL);
        send_error(c, rid, IY_EINVAL, "unknown op");
        break;
    }
    proto_req_clear(&req);
}

/* ---- the transport's handlers ---- */

/* A registered connection leaves: no more deliveries; a ready WebSocket
 * was a device of its user (presence). */
static void on_unregister(conn *c)
{
    service *svc = svc_of(c);
    if (c->counted_user) counter_dec(svc->user_sockets, c->user);
    c->counted_user = 0;
    bus_unsubscribe(svc->bus, c->t->index, c->user);
    if (c->waiting_job) {
        dbq_job_unref(c->waiting_job);
        c->waiting_job = NULL;
    }
    deliver_forget(c);
    if (c->proto == PROTO_WS && c->ws_state == WS_READY) {
        metrics_add(M_WS_CONNECTIONS, -1);
        presence_device_down(svc->presence, c->user, c->clean_close, conn_wall_ms(c, c->last_rx_ms));
    }
}

/* Every 250 ms: life signs of ready WebSockets go to presence once per
 * sweep, not per frame; long polls past their deadline are answered. */
static void on_sweep(iothread *t, uint64_t now)
{
    service *svc = t->svc;
    size_t nalive = 0, cap = 0;
    uint64_t *users = NULL;
    int64_t *when = NULL;
    for (conn *c = t->all, *next; c; c = next) {
        next = c->all_next;
        if (c->closing) continue;
        if (c->drain_pending && now >= c->wait_deadline_ms) {
            conn_ws_close(c, 1012, "service restart");   /* its answers took too long */
            continue;
        }
        deliver_sweep(c, now);
        if (c->proto == PROTO_WS && c->ws_state == WS_READY && (uint32_t)c->last_rx_ms != c->reported_rx_ms) {
            if (nalive == cap) {
                cap = cap ? cap * 2 : 64;
                users = iy_realloc(users, cap * sizeof *users);
                when = iy_realloc(when, cap * sizeof *when);
            }
            users[nalive] = c->user;
            when[nalive++] = conn_wall_ms(c, c->last_rx_ms);
            c->reported_rx_ms = (uint32_t)c->last_rx_ms;
        } else if (c->http_waiting && now >= c->wait_deadline_ms) {
            api_wait_expire(c);
        }
    }
    if (nalive) presence_alive(svc->presence, users, when, nalive);
    iy_free(users);
    iy_free(when);
}

/* Draining: a ready WebSocket stops reading (no new requests), gets the
 * answers of what it asked, then 1012; anything else that is not mid
 * request goes now. HTTP requests in flight finish (keep-alive ends). */
static void on_drain(conn *c)
{
    if (c->proto == PROTO_WS) {
        if (c->ws_state == WS_READY && c->inflight_reqs > 0) {
            conn_pause(c);
            c->drain_pending = 1;
            c->wait_deadline_ms = uv_now(&c->t->loop) + DRAIN_WAIT_MS;
        } else {
            conn_ws_close(c, 1012, "service restart");
        }
    } else {
        c->keep_alive = 0;
        if (!c->http_busy && !c->http_waiting) conn_close(c);
    }
}

const net_handlers service_handlers = {
    .http = api_handle,
    .http_head = api_head,
    .ws_text = on_ws_text,
    .unregister = on_unregister,
    .sweep = on_sweep,
    .drain = on_drain,
};

static void run_done(iothread *t, void *arg)
{
    (void)t;
    dbq_job *j = arg;
    j->done(j);
}

void service_post_job(void *origin, dbq_job *j)
{
    iothread_post(origin, run_done, j);
}
