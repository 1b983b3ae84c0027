/* deliver.c — committed messages, notices and revocations from the bus to
 * this I/O thread's sockets.
 *
 * A `msg` frame is built once per recipient (the pos is the recipient's)
 * and appended to each of that recipient's sockets here, except the sending
 * socket (which got the ack). Each WebSocket remembers the highest inbox pos
 * it was sent (ready or msg: conn.pos) and drops a message at or below it,
 * so a message that arrives twice, or that the ready's pos already covers,
 * is sent once. (Acks do not move it: an ack may overtake messages of the
 * same round with a lower pos, which must still go out.) While a socket authenticates (WS_AUTHING, already
 * registered: chat.c), its messages are held, in arrival order, and
 * released by deliver_ready after the `ready` frame. HTTP long polls of a
 * recipient are woken (api/sync.c). Notices reach ready WebSockets only. */
#include "chat.h"
#include "../api/api.h"
#include "../base/alloc.h"
#include "../base/log.h"
#include "../base/metrics.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include <string.h>

#define HELD_MAX_BYTES (4u << 20)    /* held before ready; past it the socket is dropped (it resyncs) */

static int is_origin(const service *svc, const iothread *t, const conn *c, const bus_origin *o)
{
    return o->conn && o->node == svc->node && o->thread == t->index && o->conn == c->id;
}

/* Holds frame (pos) for a socket that is not ready yet. */
static void hold(conn *c, uint64_t pos, const char *frame, size_t len)
{
    if (c->held_bytes + len > HELD_MAX_BYTES) {
        iy_log("conn %u/%llu: too much arrived before ready; dropping it", c->t->index,
               (unsigned long long)c->id);
        conn_close(c);
        return;
    }
    conn_held *h = iy_malloc(sizeof *h + len);
    h->next = NULL;
    h->pos = pos;
    h->len = len;
    memcpy(h->frame, frame, len);
    if (!c->held) c->held_tail = &c->held;
    *c->held_tail = h;
    c->held_tail = &h->next;
    c->held_bytes += len;
}

/* Sends one msg frame unless the device has it already. */
static void send_msg(conn *c, uint64_t pos, const char *frame, size_t len)
{
    if (pos <= c->pos) return;
    c->pos = pos;
    conn_write(c, frame, len);
    metrics_add(M_DELIVERIES, 1);
}

void deliver_ready(conn *c, uint64_t pos)
{
    if (pos > c->pos) c->pos = pos;
    conn_held *h = c->held;
    c->held = NULL;
    c->held_tail = NULL;
    c->held_bytes = 0;
    while (h) {
        conn_held *next = h->next;
        if (!c->closing) send_msg(c, h->pos, h->frame, h->len);
        iy_free(h);
        h = next;
    }
}

/* The msg frame of m for the recipient at pos, WebSocket header included,
 * built in f (returned: where it starts in f, *len bytes); text is m's text
 * already JSON-escaped. */
static const char *build_frame(iy_buf *f, const bus_msg *m, uint64_t pos, const iy_buf *text, size_t *len)
{
    iy_buf_reset(f);
    iy_buf_reserve(f, text->len + 256);
    f->len = 10; /* room for the frame header */
    iy_buf_append_str(f, "{\"op\":\"msg\",\"id\":");
    jw_id(f, m->m.id);
    iy_buf_append_str(f, ",\"channel\":");
    jw_id(f, m->m.channel);
    iy_buf_append_str(f, ",\"seq\":");
    jw_u64(f, m->m.seq);
    iy_buf_append_str(f, ",\"pos\":");
    jw_u64(f, pos);
    iy_buf_append_str(f, ",\"from\":");
    jw_id(f, m->m.from);
    iy_buf_append_str(f, ",\"text\":");
    iy_buf_append(f, text->data, text->len);
    iy_buf_append_str(f, ",\"ts\":");
    jw_i64(f, m->m.ts);
    if (m->m.cmid[0]) {
        iy_buf_append_str(f, ",\"cmid\":");
        jw_cstr(f, m->m.cmid);
    }
    proto_write_event_fields(f, m->m.event, m->m.subject);
    iy_buf_putc(f, '}');
    uint8_t head[10];
    size_t hn = ws_frame_header(head, WS_OP_TEXT, f->len - 10);
    memcpy(f->data + 10 - hn, head, hn);
    *len = f->len - 10 + hn;
    return f->data + 10 - hn;
}

static void deliver_batch(iothread *t, const bus_batch *b)
{
    service *svc = t->svc;
    iy_buf *f = &t->scratch;
    iy_buf text = { 0 };
    for (size_t i = 0; i < b->n; i++) {
        const bus_msg *m = &b->v[i];
        int escaped = 0;
        for (uint32_t k = 0; k < m->n; k++) {
            conn *head = iothread_user_first(t, m->members[k]);
            if (!head) continue;
            if (!escaped) {
                iy_buf_reset(&text);
                jw_str(&text, m->m.text, m->m.text_len);
                escaped = 1;
            }
            /* One frame per recipient, shared by all of its devices here. */
            size_t flen;
            const char *frame = build_frame(f, m, m->pos[k], &text, &flen);
            for (conn *c = head, *next; c; c = next) {
                next = c->user_next;
                if (is_origin(svc, t, c, &m->origin)) continue;
                if (c->proto == PROTO_HTTP) {
                    if (c->http_waiting || c->http_busy) api_wait_wake(c);
                } else if (c->ws_state == WS_READY) {
                    send_msg(c, m->pos[k], frame, flen);
                } else {
                    hold(c, m->pos[k], frame, flen);
                }
            }
        }
    }
    iy_buf_free(&text);
}

static void deliver_notice(iothread *t, const bus_notice *no)
{
    service *svc = t->svc;
    for (size_t i = 0; i < no->n; i++) {
        if (no->users[i] == no->skip_user) continue;
        for (conn *c = iothread_user_first(t, no->users[i]), *next; c; c = next) {
            next = c->user_next;
            if (c->proto != PROTO_WS || c->ws_state != WS_READY) continue;
            if (is_origin(svc, t, c, &no->origin)) continue;
            conn_ws_send(c, no->frame, no->len);
        }
    }
}

static void deliver_revoke(iothread *t, uint64_t user, const uint8_t session[32])
{
    for (conn *c = iothread_user_first(t, user), *next; c; c = next) {
        next = c->user_next;
        if (memcmp(c->session, session, 32) != 0) continue;
        c->clean_close = 1; /* a logout is a proper goodbye: offline at once */
        if (c->proto == PROTO_WS) conn_ws_close(c, 1008, "logged out");
        else conn_close(c);
    }
}

void deliver_event(iothread *t, void *arg)
{
    bus_event *ev = arg;
    if (ev->kind == BUS_BATCH) deliver_batch(t, ev->batch);
    else if (ev->kind == BUS_NOTICE) deliver_notice(t, ev->notice);
    else if (ev->kind == BUS_REVOKE) deliver_revoke(t, ev->user, ev->session);
    bus_event_free(ev);
}

void service_post_event(void *thread, bus_event *ev)
{
    iothread_post(thread, deliver_event, ev);
}
