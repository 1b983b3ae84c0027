/* chat.c — the WebSocket chat service: the ops of the contract on an
 * authenticated socket, and the fan-out of committed messages to this
 * thread's sockets.
 *
 * Every op that needs the store becomes a job (dbq.h); `history` and `sync`
 * only read committed data and run on a reader thread instead (readq.h; why
 * that is safe for sync: docs/ARCHITECTURE.md). Sends join the next
 * group commit and are answered with `ack` only after it; the same commit's
 * bus batch then reaches every I/O thread, which writes one `msg` frame per
 * member (built once, copied to each of that member's devices here). */
#include "core_int.h"
#include "metrics.h"
#include "presence.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include <string.h>

typedef struct ws_job {
    dbq_job j;
    uint64_t conn_id;
    uint64_t user;
    char rid[IY_RID_MAX + 1];
    int has_rid;
    uint64_t t0;                      /* receipt of the frame (ns) */
    char cmid[IY_CMID_MAX + 1];
    uint8_t session[32];              /* auth */
    uint64_t channel, before, after;  /* sync, history */
    int limit, has_before, has_after;
    iy_buf out;                       /* the answer, built on the storage thread */
    iy_user u;                        /* auth result */
    char device[IY_DEVICE_MAX + 1];
    uint64_t seq;                     /* read */
    uint64_t *users;                  /* presence query */
    size_t nusers;
    server *srv;
} ws_job;

static void ws_job_free(dbq_job *j)
{
    ws_job *w = (ws_job *)j;
    iy_free(j->text);
    iy_free(w->users);
    iy_buf_free(&w->out);
    iy_free(w);
}

static ws_job *ws_job_new(conn *c, const proto_req *req, int kind)
{
    ws_job *w = iy_calloc(1, sizeof *w);
    dbq_job_init(&w->j, kind);
    w->j.free = ws_job_free;
    w->j.origin = c->t;
    w->conn_id = c->id;
    w->user = c->user;
    w->srv = c->t->srv;
    w->t0 = mono_ns();
    if (req->has_rid) {
        memcpy(w->rid, req->rid, sizeof w->rid);
        w->has_rid = 1;
    }
    return w;
}

static void send_error(conn *c, const char *rid, int err, const char *message)
{
    iy_buf b = { 0 };
    proto_write_error(&b, rid, iy_err_code(err), message);
    conn_ws_send(c, b.data, b.len);
    iy_buf_free(&b);
}

/* Starts an object frame {"op":"<op>"[,"rid":"..."] — the caller continues. */
static void frame_begin(iy_buf *b, const char *op, const ws_job *w)
{
    iy_buf_append_str(b, "{\"op\":\"");
    iy_buf_append_str(b, op);
    iy_buf_putc(b, '"');
    if (w && w->has_rid) {
        iy_buf_putc(b, ',');
        jw_key(b, "rid");
        jw_cstr(b, w->rid);
    }
}

/* The job's connection, if it is still open; counts the answer. */
static conn *job_conn(ws_job *w)
{
    conn *c = iothread_conn(w->j.origin, w->conn_id);
    if (!c || c->closing) return NULL;
    c->inflight_reqs--;
    if (c->paused && c->ws_state == WS_READY && c->inflight_reqs < CONN_MAX_INFLIGHT / 2)
        conn_resume(c);
    return c;
}

/* To the storage thread, or to a reader thread when w->j.read is set (the
 * connection's reads keep their order there: one key, one thread). Both
 * count toward the connection's requests in flight. */
static int submit(conn *c, ws_job *w)
{
    int rc = w->j.read ? readq_submit(c->t->srv->readq, &w->j, c->id * 31 + c->t->index)
                       : dbq_submit(c->t->srv->dbq, &w->j);
    if (rc != 0) {
        send_error(c, w->has_rid ? w->rid : NULL, IY_EUNAVAIL, "server is shutting down");
        dbq_job_unref(&w->j);
        return IY_EUNAVAIL;
    }
    if (++c->inflight_reqs >= CONN_MAX_INFLIGHT) conn_pause(c);
    return 0;
}

/* ---- auth ---- */

static void auth_run(store *s, dbq_job *j)
{
    ws_job *w = (ws_job *)j;
    uint64_t pos = 0;
    int rc = store_session_get(s, w->session, &w->user, w->device);
    if (rc == 0) rc = store_user_get(s, w->user, &w->u);
    if (rc == 0) rc = store_user_pos(s, w->user, &pos);
    if (rc == IY_ENOTFOUND) rc = IY_EUNAUTH;
    j->err = rc;
    if (rc) return;
    frame_begin(&w->out, "ready", w);
    iy_buf_putc(&w->out, ',');
    jw_key(&w->out, "user");
    proto_write_user(&w->out, &w->u);
    iy_buf_putc(&w->out, ',');
    jw_key(&w->out, "device");
    jw_cstr(&w->out, w->device);
    iy_buf_putc(&w->out, ',');
    jw_key(&w->out, "pos");
    jw_u64(&w->out, pos);
    iy_buf_putc(&w->out, '}');
}

static void auth_done(dbq_job *j)
{
    ws_job *w = (ws_job *)j;
    conn *c = iothread_conn(j->origin, w->conn_id);
    if (c && !c->closing) {
        c->inflight_reqs--;
        if (j->err) {
            send_error(c, w->has_rid ? w->rid : NULL, j->err == IY_EUNAUTH ? IY_EUNAUTH : j->err,
                       j->err == IY_EUNAUTH ? "invalid or revoked token" : "storage unavailable");
            conn_ws_close(c, 1008, "authentication failed");
        } else {
            c->user = w->user;
            memcpy(c->device, w->device, sizeof c->device);
            memcpy(c->session, w->session, 32);
            c->ws_state = WS_READY;
            c->registered = 1;
            c->reported_rx_ms = c->last_rx_ms;
            iothread_user_add(c->t, c);
            metrics_add(M_WS_CONNECTIONS, 1);
            presence_device_up(c->t->srv->presence, c->user, (int64_t)now_ms());
            conn_ws_send(c, w->out.data, w->out.len);
            conn_resume(c);
        }
    }
    dbq_job_unref(j);
}

static void start_auth(conn *c, const proto_req *req)
{
    ws_job *w = ws_job_new(c, req, DBQ_RUN);
    auth_token_hash(req->token, strlen(req->token), w->session);
    w->j.run = auth_run;
    w->j.done = auth_done;
    c->ws_state = WS_AUTHING;
    conn_pause(c); /* frames pipelined behind auth wait for the answer */
    submit(c, w);
}

/* ---- send ---- */

static const char *send_error_text(int err)
{
    switch (err) {
    case IY_ENOTFOUND: return "no such user or channel";
    case IY_EFORBIDDEN: return "not a member of this channel";
    case IY_EINVAL: return "cannot send a message to yourself";
    case IY_EUNAVAIL: return "storage unavailable, retry with the same cmid";
    default: return "internal error";
    }
}

static void send_done(dbq_job *j)
{
    ws_job *w = (ws_job *)j;
    conn *c = job_conn(w);
    if (c) {
        if (j->err == 0 || j->err == IY_EEXIST) {
            const iy_msg *m = &j->stored.msg;
            iy_buf b = { 0 };
            frame_begin(&b, "ack", w);
            iy_buf_putc(&b, ',');
            jw_key(&b, "cmid");
            jw_cstr(&b, w->cmid);
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
            metrics_observe_ack_ns(mono_ns() - w->t0);
        } else {
            send_error(c, w->has_rid ? w->rid : NULL, j->err, send_error_text(j->err));
        }
    }
    dbq_job_unref(j);
}

static void start_send(conn *c, proto_req *req)
{
    if (dbq_backlog(c->t->srv->dbq) >= (size_t)c->t->srv->cfg.max_backlog) {
        /* Shed load rather than queue without bound; nothing was stored. */
        metrics_add(M_SHED, 1);
        send_error(c, req->has_rid ? req->rid : NULL, IY_EUNAVAIL, "server busy, retry with the same cmid");
        return;
    }
    ws_job *w = ws_job_new(c, req, DBQ_SEND);
    w->j.done = send_done;
    w->j.text = req->text;
    req->text = NULL;
    if (req->has_cmid) memcpy(w->cmid, req->cmid, sizeof w->cmid);
    w->j.send = (iy_send){ .from = c->user, .channel = req->channel, .to = req->to,
                           .text = w->j.text, .text_len = req->text_len, .cmid = w->cmid };
    w->j.origin_thread = c->t->index;
    w->j.origin_conn = c->id;
    submit(c, w);
}

/* ---- sync and history ---- */

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

/* Reader thread. Safe off the storage FIFO (unlike auth): the socket is
 * READY, so registered for live delivery before this request was read;
 * anything committed after the reader's view reaches it live. */
static void sync_run(store_reader *r, dbq_job *j)
{
    ws_job *w = (ws_job *)j;
    iy_msg_list l = { 0 };
    int more = 0;
    uint64_t pos = 0;
    j->err = store_reader_sync(r, w->user, w->after, w->limit, &l, &more);
    if (!j->err && l.n) pos = l.v[l.n - 1].pos;
    else if (!j->err) j->err = store_reader_user_pos(r, w->user, &pos);
    if (!j->err) {
        if (!l.n && pos > w->after) pos = w->after; /* nothing after `after` yet */
        frame_begin(&w->out, "batch", w);
        iy_buf_putc(&w->out, ',');
        write_messages(&w->out, &l);
        iy_buf_append_str(&w->out, ",\"pos\":");
        jw_u64(&w->out, pos);
        iy_buf_append_str(&w->out, more ? ",\"more\":true}" : ",\"more\":false}");
    }
    iy_msg_list_clear(&l);
}

/* Reader thread: membership and the page, both from committed data. */
static void history_run(store_reader *r, dbq_job *j)
{
    ws_job *w = (ws_job *)j;
    iy_msg_list l = { 0 };
    j->err = store_reader_is_member(r, w->channel, w->user);
    if (!j->err)
        j->err = store_reader_history(r, w->channel, w->has_after ? 0 : (w->has_before ? w->before : UINT64_MAX),
                               w->has_after ? w->after : 0, w->limit, &l);
    if (!j->err) {
        frame_begin(&w->out, "batch", w);
        iy_buf_putc(&w->out, ',');
        write_messages(&w->out, &l);
        iy_buf_putc(&w->out, '}');
    }
    iy_msg_list_clear(&l);
}

static void answer_done(dbq_job *j)
{
    ws_job *w = (ws_job *)j;
    conn *c = job_conn(w);
    if (c) {
        if (j->err == 0) conn_ws_send(c, w->out.data, w->out.len);
        else send_error(c, w->has_rid ? w->rid : NULL, j->err,
                        j->err == IY_EFORBIDDEN ? "not a member of this channel"
                        : j->err == IY_ENOTFOUND ? "no such channel" : "storage error");
    }
    dbq_job_unref(j);
}

static void start_read_job(conn *c, const proto_req *req, void (*read)(store_reader *, dbq_job *))
{
    ws_job *w = ws_job_new(c, req, DBQ_RUN);
    w->j.read = read;
    w->j.done = answer_done;
    w->channel = req->channel;
    w->limit = req->limit;
    if (req->op == P_SYNC) {
        w->after = req->after;
    } else {
        w->has_before = req->has_before;
        w->before = req->before_seq;
        w->has_after = req->has_after;
        w->after = req->after_seq;
    }
    submit(c, w);
}

/* ---- read receipts, typing, presence ---- */

/* The members of channel if user is one: 0, IY_ENOTFOUND, IY_EFORBIDDEN, IY_EIO. */
static int members_of(store *s, uint64_t channel, uint64_t user, iy_channel *ch)
{
    int rc = store_channel_get(s, channel, ch);
    if (rc) return rc;
    for (uint32_t i = 0; i < ch->nmembers; i++)
        if (ch->members[i] == user) return 0;
    return IY_EFORBIDDEN;
}

static void read_run(store *s, dbq_job *j)
{
    ws_job *w = (ws_job *)j;
    iy_channel *ch = iy_malloc(sizeof *ch);
    iy_msg last;
    memset(&last, 0, sizeof last);
    uint64_t now = 0, before = 0;
    j->err = members_of(s, w->channel, w->user, ch);
    if (!j->err) {
        /* A seq beyond the channel's last is clamped to it. */
        uint64_t seq = w->seq;
        if (store_channel_last(s, w->channel, &last) == 0) { if (seq > last.seq) seq = last.seq; }
        else seq = 0;
        j->err = store_read_get(s, w->user, w->channel, &before);
        if (!j->err) j->err = store_read_set(s, w->user, w->channel, seq, &now);
    }
    if (!j->err && now > before) { /* a read that moves nothing tells nobody */
        iy_buf f = { 0 };
        iy_buf_append_str(&f, "{\"op\":\"receipt\",\"channel\":");
        jw_id(&f, w->channel);
        iy_buf_append_str(&f, ",\"user\":");
        jw_id(&f, w->user);
        iy_buf_append_str(&f, ",\"seq\":");
        jw_u64(&f, now);
        iy_buf_putc(&f, '}');
        bus_notice *no = bus_notice_new(ch->members, ch->nmembers, f.data, f.len);
        no->origin_thread = j->origin_thread;
        no->origin_conn = j->origin_conn;
        bus_notify(w->srv->bus, no);
        iy_buf_free(&f);
    }
    iy_msg_clear(&last);
    iy_free(ch);
}

static void typing_run(store *s, dbq_job *j)
{
    ws_job *w = (ws_job *)j;
    iy_channel *ch = iy_malloc(sizeof *ch);
    j->err = members_of(s, w->channel, w->user, ch);
    if (!j->err) {
        iy_buf f = { 0 };
        iy_buf_append_str(&f, "{\"op\":\"typing\",\"channel\":");
        jw_id(&f, w->channel);
        iy_buf_append_str(&f, ",\"user\":");
        jw_id(&f, w->user);
        iy_buf_putc(&f, '}');
        bus_notice *no = bus_notice_new(ch->members, ch->nmembers, f.data, f.len);
        no->skip_user = w->user; /* never to any device of the typist */
        bus_notify(w->srv->bus, no);
        iy_buf_free(&f);
    }
    iy_free(ch);
}

static void presence_run(store *s, dbq_job *j)
{
    ws_job *w = (ws_job *)j;
    frame_begin(&w->out, "presence", w);
    iy_buf_putc(&w->out, ',');
    social_presence_list(&w->out, w->srv, s, w->user, w->users, w->nusers);
    iy_buf_putc(&w->out, '}');
}

/* Answers only on error (read and typing have no answer of their own). */
static void quiet_done(dbq_job *j)
{
    ws_job *w = (ws_job *)j;
    conn *c = job_conn(w);
    if (c && j->err)
        send_error(c, w->has_rid ? w->rid : NULL, j->err,
                   j->err == IY_EFORBIDDEN ? "not a member of this channel"
                   : j->err == IY_ENOTFOUND ? "no such channel" : "storage error");
    dbq_job_unref(j);
}

static void start_notice_job(conn *c, proto_req *req, void (*run)(store *, dbq_job *))
{
    ws_job *w = ws_job_new(c, req, DBQ_RUN);
    w->j.run = run;
    w->j.done = run == presence_run ? answer_done : quiet_done;
    w->j.origin_thread = c->t->index;
    w->j.origin_conn = c->id;
    w->channel = req->channel;
    w->seq = req->seq;
    w->users = req->users;
    w->nusers = req->nusers;
    req->users = NULL;
    req->nusers = 0;
    submit(c, w);
}

/* ---- dispatch ---- */

void chat_on_text(conn *c, const char *data, size_t len)
{
    proto_req req;
    memset(&req, 0, sizeof req);
    char err[160];
    int rc = proto_parse(data, len, &req, err, sizeof err);
    if (rc) {
        send_error(c, req.has_rid ? req.rid : NULL, rc, err);
        proto_req_clear(&req);
        return;
    }
    const char *rid = req.has_rid ? req.rid : NULL;
    if (c->ws_state != WS_READY) {
        if (req.op == P_AUTH) {
            start_auth(c, &req);
        } else {
            send_error(c, rid, IY_EUNAUTH, "the first frame must be auth");
            conn_ws_close(c, 1008, "not authenticated");
        }
        proto_req_clear(&req);
        return;
    }
    switch (req.op) {
    case P_AUTH:
        send_error(c, rid, IY_EINVAL, "already authenticated");
        break;
    case P_SEND:
        start_send(c, &req);
        break;
    case P_SYNC:
        start_read_job(c, &req, sync_run);
        break;
    case P_HISTORY:
        start_read_job(c, &req, history_run);
        break;
    case P_READ:
        start_notice_job(c, &req, read_run);
        break;
    case P_TYPING: {
        /* At most one typing per socket per second; extras are dropped. */
        uint64_t now = uv_now(&c->t->loop);
        if (c->last_typing_ms && now - c->last_typing_ms < 1000) break;
        c->last_typing_ms = now;
        start_notice_job(c, &req, typing_run);
        break;
    }
    case P_PRESENCE:
        start_notice_job(c, &req, presence_run);
        break;
    case P_HB: {
        iy_buf b = { 0 };
        ws_job w = { .has_rid = req.has_rid };
        memcpy(w.rid, req.rid, sizeof w.rid);
        frame_begin(&b, "hb", &w);
        iy_buf_putc(&b, '}');
        conn_ws_send(c, b.data, b.len);
        iy_buf_free(&b);
        break;
    }
    default:
        send_error(c, rid, IY_EINVAL, "unknown op");
        break;
    }
    proto_req_clear(&req);
}

/* ---- fan-out ---- */

void chat_deliver(iothread *t, const bus_batch *b)
{
    iy_buf *f = &t->scratch;
    iy_buf text = { 0 };
    for (size_t i = 0; i < b->n; i++) {
        const bus_msg *m = &b->v[i];
        const iy_stored *st = m->st;
        int escaped = 0;
        for (uint32_t k = 0; k < st->nmembers; k++) {
            conn *head = u64map_get(&t->users, st->members[k]);
            if (!head) continue;
            if (!escaped) {
                iy_buf_reset(&text);
                jw_str(&text, m->text, m->text_len);
                escaped = 1;
            }
            /* One frame per member (the pos is the member's), shared by all
             * of that member's devices on this thread. */
            iy_buf_reset(f);
            iy_buf_reserve(f, text.len + 256);
            f->len = 10; /* room for the frame header */
            iy_buf_append_str(f, "{\"op\":\"msg\",\"id\":");
            jw_id(f, st->msg.id);
            iy_buf_append_str(f, ",\"channel\":");
            jw_id(f, st->msg.channel);
            iy_buf_append_str(f, ",\"seq\":");
            jw_u64(f, st->msg.seq);
            iy_buf_append_str(f, ",\"pos\":");
            jw_u64(f, st->pos[k]);
            iy_buf_append_str(f, ",\"from\":");
            jw_id(f, st->msg.from);
            iy_buf_append_str(f, ",\"text\":");
            iy_buf_append(f, text.data, text.len);
            iy_buf_append_str(f, ",\"ts\":");
            jw_i64(f, st->msg.ts);
            if (st->msg.cmid[0]) {
                iy_buf_append_str(f, ",\"cmid\":");
                jw_cstr(f, st->msg.cmid);
            }
            proto_write_event_fields(f, st->msg.event, st->msg.subject);
            iy_buf_putc(f, '}');
            uint8_t head10[10];
            size_t hn = ws_frame_header(head10, WS_OP_TEXT, f->len - 10);
            memcpy(f->data + 10 - hn, head10, hn);
            const char *frame = f->data + 10 - hn;
            size_t flen = f->len - 10 + hn;
            for (conn *c = head, *next; c; c = next) {
                next = c->user_next;
                if (c->t->index == m->origin_thread && c->id == m->origin_conn) continue;
                if (c->proto == PROTO_WS) {
                    conn_write(c, frame, flen);
                    metrics_add(M_DELIVERIES, 1);
                } else if (c->http_waiting) {
                    api_wait_wake(c);
                }
            }
        }
    }
    iy_buf_free(&text);
}

void chat_notice(iothread *t, const bus_notice *no)
{
    for (size_t i = 0; i < no->n; i++) {
        if (no->users[i] == no->skip_user) continue;
        for (conn *c = u64map_get(&t->users, no->users[i]), *next; c; c = next) {
            next = c->user_next;
            if (c->proto != PROTO_WS) continue;
            if (no->origin_conn && c->t->index == no->origin_thread && c->id == no->origin_conn) continue;
            conn_ws_send(c, no->frame, no->len);
        }
    }
}

void chat_revoke(iothread *t, const bus_event *ev)
{
    for (conn *c = u64map_get(&t->users, ev->user), *next; c; c = next) {
        next = c->user_next;
        if (memcmp(c->session, ev->session, 32) != 0) continue;
        c->clean_close = 1; /* a logout is a proper goodbye: offline at once */
        if (c->proto == PROTO_WS) conn_ws_close(c, 1008, "logged out");
        else conn_close(c);
    }
}
