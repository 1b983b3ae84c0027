/* deliver.c — committed messages, notices and revocations from the bus to
 * this I/O thread's sockets, each WebSocket's inbox in pos order with no
 * gap and nothing twice.
 *
 * A `msg` frame is encoded once per message on this thread, without its
 * pos, into a buffer the sockets share (shared_msg, net.h conn_shared);
 * each of the recipients' sockets, except the sending one (which got the
 * ack), is offered it at that recipient's pos and queues its own header
 * and pos and a reference to the rest. Each WebSocket is a small sequencer:
 *
 *   pos          every inbox pos up to it was sent (ready.pos, msg, ack)
 *   held         what arrived ahead of pos + 1, sorted by pos (an ack of a
 *                pos ahead is held as a marker: the device has it)
 *
 *   offer(p):  p <= pos      drop (a duplicate, or covered by ready.pos)
 *              p == pos + 1  send; pos = p; release what follows from held
 *              p >  pos + 1  hold; the gap's clock starts
 *
 * A gap open for GAP_WAIT_MS (bus messages from several nodes may arrive
 * out of order, or not at all: NATS core is at most once) is filled from
 * the store: a reader reads the inbox after pos, the messages go out in
 * order, then what was held. The same fill runs as a check when the bus
 * may have lost something with no later message to show the gap: after a
 * NATS reconnect (BUS_RESYNC), and once shortly after a socket's ready in a
 * cluster (a subscription may reach the other NATS servers a moment after
 * our own confirmed it).
 *
 * A fill may read a message of the socket's own before its ack reached the
 * socket (the commit's answer and the reader's are on different threads):
 * the device must get the ack, never a `msg` of what it sent itself, so
 * the fill stops there (the ack's marker then moves pos on). The socket's
 * sends in flight are known by their cmids' hashes (deliver_sending).
 *
 * While a socket authenticates (WS_AUTHING, already registered: chat.c),
 * its messages are held whatever their pos and released by deliver_ready
 * after the `ready` frame. HTTP long polls of a recipient are woken
 * (api/sync.c). Notices reach ready WebSockets only. */
#include "chat.h"
#include "../api/api.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../base/metrics.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include <string.h>

#define HELD_MAX_BYTES (4u << 20)    /* held per socket; past it the socket is dropped (it resyncs) */
#define GAP_WAIT_MS 250              /* a gap this old is filled from the store */
#define FILL_LIMIT 500               /* messages per fill read */
#define READY_CHECK_MS 1000          /* cluster: a check this long after ready */
#define RESYNC_SPREAD_MS 2000        /* BUS_RESYNC: checks spread over this long */

/* Deliveries made on this thread not yet added to M_DELIVERIES: added once
 * per event, not per socket (an atomic add on a counter all threads share). */
static __thread int64_t deliveries;

static void count_deliveries(void)
{
    if (!deliveries) return;
    metrics_add(M_DELIVERIES, deliveries);
    deliveries = 0;
}

static int is_origin(const service *svc, const iothread *t, const conn *c, const bus_origin *o)
{
    return o->conn && o->node == svc->node && o->thread == t->index && o->conn == c->id;
}

/* c's sequencer state, made if it has none. */
static conn_seq *seq_of(conn *c)
{
    if (!c->seq) c->seq = iy_calloc(1, sizeof *c->seq);
    return c->seq;
}

static void drop_held(conn *c)
{
    conn_seq *q = c->seq;
    if (!q) return;
    for (conn_held *h = q->held, *n; h; h = n) {
        n = h->next;
        iy_free(h);
    }
    q->held = NULL;
    q->held_bytes = 0;
    q->held_since_ms = 0;
}

/* Holds frame at pos (len 0: an ack marker), sorted by pos, once per pos. */
static void hold(conn *c, uint64_t pos, const char *frame, size_t len)
{
    conn_seq *q = seq_of(c);
    if (q->held_bytes + len > HELD_MAX_BYTES) {
        iy_log_warn("conn %u/%llu: too much held behind a gap; dropping it (it resyncs)", c->t->index,
               (unsigned long long)c->id);
        drop_held(c);
        conn_close(c);
        return;
    }
    conn_held **at = &q->held;
    while (*at && (*at)->pos < pos) at = &(*at)->next;
    if (*at && (*at)->pos == pos) {
        if ((*at)->len == 0 && len) {   /* the frame of a pos acked already: not needed */
            metrics_add(M_DUPLICATES_DROPPED, 1);
        }
        return;
    }
    conn_held *h = iy_malloc(sizeof *h + len);
    h->pos = pos;
    h->len = len;
    if (len) memcpy(h->frame, frame, len);
    h->next = *at;
    *at = h;
    q->held_bytes += (uint32_t)len;
    if (!q->held_since_ms && c->ws_state == WS_READY) q->held_since_ms = uv_now(&c->t->loop);
}

/* Sends what held has from pos + 1 on, in order; drops what is at or below pos. */
static void release_held(conn *c)
{
    conn_seq *q = c->seq;
    if (!q) return;
    while (q->held && q->held->pos <= c->pos + 1 && !c->closing) {
        conn_held *h = q->held;
        q->held = h->next;
        q->held_bytes -= (uint32_t)h->len;
        if (h->pos == c->pos + 1) {
            c->pos = h->pos;
            if (h->len) {
                conn_write(c, h->frame, h->len);
                deliveries++;
            }
        } else if (h->len) {
            metrics_add(M_DUPLICATES_DROPPED, 1);
        }
        iy_free(h);
    }
    /* What is left waits behind a newer gap: its clock starts now. */
    q->held_since_ms = q->held ? uv_now(&c->t->loop) : 0;
}

/* Forward: the shared frames (below). */
typedef struct shared_msg shared_msg;
static void send_shared(conn *c, const shared_msg *sm, uint64_t pos);
static void flat_frame(iy_buf *f, const shared_msg *sm, uint64_t pos);

/* Holds sm's frame at pos, a copy of its own (NULL: an ack marker). */
static void hold_shared(conn *c, uint64_t pos, const shared_msg *sm)
{
    if (!sm) {
        hold(c, pos, NULL, 0);
        return;
    }
    iy_buf *f = &c->t->scratch;
    flat_frame(f, sm, pos);
    hold(c, pos, f->data, f->len);
}

/* Offers the message (sm: its shared frame; NULL: an ack marker) at pos to
 * a WebSocket: the sequencer above. */
static void offer(conn *c, uint64_t pos, const shared_msg *sm)
{
    if (c->ws_state != WS_READY) {
        hold_shared(c, pos, sm);
        return;
    }
    if (pos <= c->pos) {
        if (sm) metrics_add(M_DUPLICATES_DROPPED, 1);
        return;
    }
    if (pos == c->pos + 1) {
        c->pos = pos;
        if (sm) {
            send_shared(c, sm, pos);
            deliveries++;
        }
        release_held(c);
        return;
    }
    if (sm) metrics_add(M_HELD_BACK, 1);
    hold_shared(c, pos, sm);
}

void deliver_ready(conn *c, uint64_t pos)
{
    c->pos = pos;
    release_held(c);
    count_deliveries();
    if (svc_of(c)->cluster) seq_of(c)->check_at_ms = uv_now(&c->t->loop) + READY_CHECK_MS;
}

void deliver_acked(conn *c, uint64_t pos)
{
    offer(c, pos, NULL);
    count_deliveries();
}

static uint64_t cmid_hash(const char *cmid)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)cmid; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return h;
}

void deliver_sending(conn *c, const char *cmid)
{
    if (!c->registered) return;   /* leaving: nothing will fill it */
    conn_seq *q = seq_of(c);
    if (q->nsending == q->sending_cap) {
        q->sending_cap = q->sending_cap ? q->sending_cap * 2 : 8;
        q->sending = iy_realloc(q->sending, q->sending_cap * sizeof *q->sending);
    }
    q->sending[q->nsending++] = cmid_hash(cmid);
}

void deliver_answered(conn *c, const char *cmid)
{
    conn_seq *q = c->seq;
    if (!q) return;
    uint64_t h = cmid_hash(cmid);
    for (uint32_t i = 0; i < q->nsending; i++)
        if (q->sending[i] == h) {
            q->sending[i] = q->sending[--q->nsending];
            return;
        }
}

/* m (from the store) is a send of this socket's not yet answered. */
static int own_unanswered(const conn *c, const iy_msg *m)
{
    const conn_seq *q = c->seq;
    if (m->from != c->user || !q || !q->nsending) return 0;
    uint64_t h = cmid_hash(m->cmid);
    for (uint32_t i = 0; i < q->nsending; i++)
        if (q->sending[i] == h) return 1;
    return 0;
}

/* The msg frame of m without its pos, in two parts appended to f: the
 * head, `{"op":"msg",...,"pos":` (returned: its length), then the tail,
 * `,"from":...}`. A recipient's frame is its WebSocket header, the head,
 * its pos in decimal, the tail: everything but the pos and the header is
 * the same for every member. text is m's text already JSON-escaped. */
static size_t build_parts(iy_buf *f, const iy_msg *m, const iy_buf *text)
{
    size_t start = f->len;
    iy_buf_reserve(f, text->len + 256);
    iy_buf_append_str(f, "{\"op\":\"msg\",\"id\":");
    jw_id(f, m->id);
    iy_buf_append_str(f, ",\"channel\":");
    jw_id(f, m->channel);
    iy_buf_append_str(f, ",\"seq\":");
    jw_u64(f, m->seq);
    iy_buf_append_str(f, ",\"pos\":");
    size_t head = f->len - start;
    iy_buf_append_str(f, ",\"from\":");
    jw_id(f, m->from);
    iy_buf_append_str(f, ",\"text\":");
    iy_buf_append(f, text->data, text->len);
    iy_buf_append_str(f, ",\"ts\":");
    jw_i64(f, m->ts);
    if (m->cmid[0]) {
        iy_buf_append_str(f, ",\"cmid\":");
        jw_cstr(f, m->cmid);
    }
    proto_write_event_fields(f, m);
    proto_write_mentions(f, m);
    proto_write_state(f, m);
    iy_buf_putc(f, '}');
    return head;
}

/* A message's frame for the members of one I/O thread: the parts of
 * build_parts in one buffer shared by their sockets. */
struct shared_msg {
    const char *data;           /* head then tail */
    conn_shared *s;             /* the buffer data is in, shared; NULL: copied whole into each
                                   socket's buffer (data is the thread's, see deliver_batch) */
    uint32_t head, tail;
};

/* The per-member bytes of sm's frame at pos: the WebSocket header (out,
 * *hn bytes) and the pos in decimal (digits, *dn bytes). */
static void member_bytes(const shared_msg *sm, uint64_t pos, uint8_t out[10], size_t *hn, char digits[20],
                         size_t *dn)
{
    char tmp[20];
    size_t n = 0;
    do tmp[n++] = (char)('0' + pos % 10);
    while ((pos /= 10));
    for (size_t i = 0; i < n; i++) digits[i] = tmp[n - 1 - i];
    *dn = n;
    *hn = ws_frame_header(out, WS_OP_TEXT, sm->head + n + sm->tail);
}

/* Queues sm's frame at pos on c: a few bytes of its own, the rest by
 * reference. The header and the head go out in one iovec when the head is
 * short enough to be copied (conn_write_shared decides). */
static void send_shared(conn *c, const shared_msg *sm, uint64_t pos)
{
    uint8_t hdr[10];
    char digits[20];
    size_t hn, dn;
    if (!sm->s) {
        iy_buf *f = &c->t->scratch;
        flat_frame(f, sm, pos);
        conn_write(c, f->data, f->len);
        return;
    }
    member_bytes(sm, pos, hdr, &hn, digits, &dn);
    conn_write(c, hdr, hn);
    conn_write_shared(c, sm->s, sm->data, sm->head);
    conn_write(c, digits, dn);
    conn_write_shared(c, sm->s, sm->data + sm->head, sm->tail);
}

/* sm's whole frame at pos, contiguous, in f (reset first): to be held. */
static void flat_frame(iy_buf *f, const shared_msg *sm, uint64_t pos)
{
    uint8_t hdr[10];
    char digits[20];
    size_t hn, dn;
    member_bytes(sm, pos, hdr, &hn, digits, &dn);
    iy_buf_reset(f);
    iy_buf_append(f, hdr, hn);
    iy_buf_append(f, sm->data, sm->head);
    iy_buf_append(f, digits, dn);
    iy_buf_append(f, sm->data + sm->head, sm->tail);
}

/* The msg frame of m at pos for one recipient, WebSocket header included,
 * in f (returned: where it starts in f, *len bytes): gap fills. */
static const char *build_frame(iy_buf *f, const iy_msg *m, uint64_t pos, const iy_buf *text, size_t *len)
{
    iy_buf_reset(f);
    f->len = 10;   /* room for the frame header */
    size_t head = build_parts(f, m, text);
    char digits[24];
    int dn = snprintf(digits, sizeof digits, "%llu", (unsigned long long)pos);
    iy_buf_reserve(f, (size_t)dn);
    memmove(f->data + 10 + head + dn, f->data + 10 + head, f->len - 10 - head);
    memcpy(f->data + 10 + head, digits, (size_t)dn);
    f->len += (size_t)dn;
    uint8_t hdr[10];
    size_t hn = ws_frame_header(hdr, WS_OP_TEXT, f->len - 10);
    memcpy(f->data + 10 - hn, hdr, hn);
    *len = f->len - 10 + hn;
    return f->data + 10 - hn;
}

/* Each message is encoded once (build_parts) into a buffer its recipients'
 * sockets share; each socket gets its header and pos of its own and
 * references to the rest. */
static void deliver_batch(iothread *t, const bus_batch *b)
{
    service *svc = t->svc;
    iy_buf *f = &t->scratch;
    iy_buf text = { 0 }, parts = { 0 };   /* parts: a 1:1 message's, reused by the batch */
    for (size_t i = 0; i < b->n; i++) {
        const bus_msg *m = &b->v[i];
        shared_msg sm = { 0 };
        for (uint32_t k = 0; k < m->n; k++) {
            conn *head = iothread_user_first(t, m->members[k]);
            if (!head) continue;
            if (!sm.data) {   /* the first recipient on this thread */
                iy_buf_reset(&text);
                jw_str(&text, m->m.text, m->m.text_len);
                /* A 1:1 message has one recipient: its parts stay in this
                 * thread's buffer and go out copied whole, one contiguous
                 * write (often joined to the ack of the recipient's own
                 * send), cheaper than a shared buffer and its iovecs. */
                iy_buf *pb = m->n <= 2 ? &parts : f;
                iy_buf_reset(pb);
                size_t h = build_parts(pb, &m->m, &text);
                sm.head = (uint32_t)h;
                sm.tail = (uint32_t)(pb->len - h);
                if (pb == f) {
                    sm.s = conn_shared_new(f->data, f->len);
                    sm.data = sm.s->data;
                } else {
                    sm.data = pb->data;
                }
            }
            for (conn *c = head, *next; c; c = next) {
                next = c->user_next;
                if (is_origin(svc, t, c, &m->origin)) continue;
                if (c->proto == PROTO_HTTP) api_wait_wake(c);
                else offer(c, m->pos[k], &sm);
            }
        }
        conn_shared_unref(sm.s);   /* the sockets hold what they still need */
    }
    iy_buf_free(&parts);
    iy_buf_free(&text);
    count_deliveries();
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
        if (c->session_key != session_key_of(session)) continue;
        c->clean_close = 1; /* a logout is a proper goodbye: offline at once */
        if (c->proto == PROTO_WS) conn_ws_close(c, 1008, "logged out");
        else conn_close(c);
    }
}

/* The bus confirmed the user's subscription: whoever waited for it goes on. */
static void deliver_subscribed(iothread *t, uint64_t user)
{
    for (conn *c = iothread_user_first(t, user), *next; c; c = next) {
        next = c->user_next;
        if (!c->waiting_job) continue;
        if (c->proto == PROTO_WS) chat_subscribed(c);
        else api_wait_subscribed(c);
    }
}

/* The bus may have lost messages: every ready socket compares its pos with
 * the store soon (spread out, so that 20,000 sockets are not 20,000 reads
 * at once). */
static void deliver_resync(iothread *t)
{
    uint64_t now = uv_now(&t->loop), k = 0;
    for (conn *c = t->all; c; c = c->all_next, k++)
        if (c->proto == PROTO_WS && c->ws_state == WS_READY)
            seq_of(c)->check_at_ms = now + (k * 7919) % RESYNC_SPREAD_MS;
}

void deliver_event(iothread *t, void *arg)
{
    bus_event *ev = arg;
    switch (ev->kind) {
    case BUS_BATCH: deliver_batch(t, ev->batch); break;
    case BUS_NOTICE: deliver_notice(t, ev->notice); break;
    case BUS_REVOKE: deliver_revoke(t, ev->user, ev->session); break;
    case BUS_SUBSCRIBED: deliver_subscribed(t, ev->user); break;
    case BUS_RESYNC: deliver_resync(t); break;
    default: break;
    }
    bus_event_free(ev);
}

void service_post_event(void *thread, bus_event *ev)
{
    iothread_post(thread, deliver_event, ev);
}

/* ---- filling gaps from the store ---- */

typedef struct fill_job {
    dbq_job j;
    uint64_t conn_id;
    uint64_t user;
    uint64_t after;
    iy_msg_list l;
    int more;
} fill_job;

static void fill_free(dbq_job *j)
{
    iy_msg_list_clear(&((fill_job *)j)->l);
    iy_free(j);
}

static void fill_read(store_reader *r, dbq_job *j)
{
    fill_job *f = (fill_job *)j;
    j->err = store_reader_sync(r, f->user, f->after, FILL_LIMIT, &f->l, &f->more);
}

static void fill_done(dbq_job *j)
{
    fill_job *f = (fill_job *)j;
    conn *c = iothread_conn(j->origin, f->conn_id);
    if (c && !c->closing) {
        c->fill_inflight = 0;
        if (j->err == 0) {
            iothread *t = c->t;
            iy_buf text = { 0 };
            size_t sent = 0;
            int own = 0;
            for (size_t i = 0; i < f->l.n && !c->closing; i++) {
                const iy_msg *m = &f->l.v[i];
                if (m->pos != c->pos + 1) continue;   /* had it; or a newer gap (next fill) */
                if (own_unanswered(c, m)) {
                    own = 1;   /* its ack is on the way and moves pos */
                    break;
                }
                iy_buf_reset(&text);
                jw_str(&text, m->text, m->text_len);
                size_t flen;
                const char *frame = build_frame(&t->scratch, m, m->pos, &text, &flen);
                c->pos = m->pos;
                conn_write(c, frame, flen);
                sent++;
                release_held(c);
            }
            count_deliveries();
            iy_buf_free(&text);
            if (sent) {
                metrics_add(M_GAPS_FILLED, 1);
                metrics_add(M_GAP_MESSAGES, (int64_t)sent);
                metrics_add(M_DELIVERIES, (int64_t)sent);
            }
            if (own)   /* what followed it here is held, or comes with a check after the ack */
                seq_of(c)->check_at_ms = uv_now(&t->loop) + GAP_WAIT_MS;
            else if (f->more)
                seq_of(c)->check_at_ms = uv_now(&t->loop);   /* there is more: go on */
        } else {
            seq_of(c)->check_at_ms = uv_now(&c->t->loop) + GAP_WAIT_MS;   /* the store is away: again later */
        }
    }
    dbq_job_unref(j);
}

static void fill(conn *c)
{
    fill_job *f = iy_calloc(1, sizeof *f);
    dbq_job_init(&f->j, DBQ_RUN);
    f->j.read = fill_read;
    f->j.done = fill_done;
    f->j.free = fill_free;
    f->j.origin = c->t;
    f->conn_id = c->id;
    f->user = c->user;
    f->after = c->pos;
    if (readq_submit(svc_of(c)->readq, &f->j, c->id * 31 + c->t->index) != 0) {
        fill_free(&f->j);
        return;
    }
    c->fill_inflight = 1;
}

void deliver_sweep(conn *c, uint64_t now)
{
    if (c->proto != PROTO_WS || c->ws_state != WS_READY || c->fill_inflight || c->closing) return;
    conn_seq *q = c->seq;
    if (!q) return;
    int gap = q->held_since_ms && now - q->held_since_ms >= GAP_WAIT_MS;
    int check = q->check_at_ms && now >= q->check_at_ms;
    if (!gap && !check) {
        if (!q->held && !q->nsending && !q->check_at_ms) deliver_forget(c);   /* nothing left: idle */
        return;
    }
    q->check_at_ms = 0;
    fill(c);
}

void deliver_forget(conn *c)
{
    drop_held(c);
    if (!c->seq) return;
    iy_free(c->seq->sending);
    iy_free(c->seq);
    c->seq = NULL;
}
