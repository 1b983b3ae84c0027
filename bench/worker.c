/* worker.c — one benchmark worker process: an epoll loop over its share of
 * the connections, speaking the contract (shared/PROTOCOL.md) over
 * WebSocket like any client.
 *
 * Connection lifecycle (one bconn; resync reuses a bconn for its reconnect):
 *
 *   IDLE --socket, bind 127.0.x.y, connect--> CONNECTING --writable--> UPGRADING
 *     (GET /v1/ws sent)  --101 + right Sec-WebSocket-Accept--> AUTHING ({"op":"auth"} sent)
 *     --ready--> READY --(server close, EOF, error)--> CLOSED
 *
 * Output is queued per connection and written once per loop turn (like the
 * server, and like a browser's send queue); server frames are parsed here
 * (they are unmasked, which the server-side ws_reader refuses, so this file
 * has its own small parser). Every message text is exactly msg_bytes long and
 * begins "<send ns> <sender slot> <counter> ": the receiver takes the
 * end-to-end latency from the first number and checks from the other two
 * that each sender's messages arrive once each and in order. cmid is
 * "<nonce>.<counter>.<send ns>", unique per device across runs, and the ack
 * echoes it, which gives the ack latency.
 *
 * At a fixed offered rate the send time written in the message is the
 * *scheduled* time, so a server (or client) that falls behind shows it in
 * the latencies instead of hiding it (no coordinated omission). */
#include "bench.h"
#include "base/alloc.h"
#include "base/buf.h"
#include "codec/ws.h"
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE (256u << 10)
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define SETUP_WINDOW 16              /* sends in flight per connection while prefilling */
#define DRAIN_S 10                   /* seconds to wait for the last acks and deliveries */
#define RESYNC_TIMEOUT_S 120
#define SETUP_TIMEOUT_S 180          /* connecting and prefilling, at most */

enum cstate { C_IDLE = 0, C_CONNECTING, C_UPGRADING, C_AUTHING, C_READY, C_CLOSED };
enum { ROLE_SEND = 1, ROLE_RECV = 2, ROLE_DEVICE = 4 };
enum phase { PH_SETUP = 0, PH_WAITGO, PH_RUN, PH_HOLD, PH_DRAIN, PH_DONE };

typedef struct bconn {
    int fd;
    int state;                  /* enum cstate */
    int user;                   /* index into p->users */
    int role;
    int slot;                   /* sender slot in its conversation */
    int fanout;                 /* deliveries expected per acked message */
    uint64_t to;                /* peer user id, or 0 */
    uint64_t channel;           /* group channel, or the channel learned from acks */
    uint32_t *next_ctr;         /* per sender slot: the next counter expected */
    int nslots;
    uint64_t last_seq;
    uint64_t ctr;               /* messages sent by this connection */
    int inflight;
    uint64_t t_start, last_tx;
    uint64_t base_pos, ready_pos, sync_pos, max_seq;
    iy_buf in, out;
    unsigned dirty : 1, want_out : 1, settled : 1, caught : 1;
} bconn;

typedef struct worker {
    const bparams *p;
    int w, to, from;
    int ep;
    bconn *c;
    int nc;
    bconn **dirty;
    int ndirty;
    int *queue;                 /* connections waiting to start connecting */
    int qhead, qlen;
    int connecting, settled;    /* handshakes in progress; connections ready or failed */
    int concurrency;
    uint64_t made;              /* sockets made (source address round robin) */
    struct sockaddr_in srv;
    char accept[29];
    char host_hdr[96];
    uint8_t *rbuf;
    iy_buf scratch;
    uint64_t rng;
    int phase;
    int setup_sending;
    uint64_t go_ns, win_start, win_end, deadline, last_hb_scan;
    long inflight_total;
    /* fixed rate */
    double rate_w;              /* this worker's share of the offered rate, msgs/s */
    uint64_t sched_sent;
    bconn **senders;
    int nsenders, rr;
    int devices, devices_done;
    wreport r;
} worker;

static uint64_t rnd(worker *w)
{
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return w->rng = x;
}

static int in_window(worker *w, uint64_t now)
{
    return w->phase >= PH_RUN && now >= w->win_start && now < w->win_end;
}

/* ---- output ---------------------------------------------------------- */

static void mark_dirty(worker *w, bconn *c)
{
    if (c->dirty) return;
    c->dirty = 1;
    w->dirty[w->ndirty++] = c;
}

static void send_json(worker *w, bconn *c, const char *json, size_t n)
{
    uint64_t m = rnd(w);
    uint8_t mask[4] = { (uint8_t)m, (uint8_t)(m >> 8), (uint8_t)(m >> 16), (uint8_t)(m >> 24) };
    ws_client_frame_append(&c->out, WS_OP_TEXT, 1, json, n, mask);
    c->last_tx = bench_now_ns();
    mark_dirty(w, c);
}

static void conn_close(worker *w, bconn *c, int unexpected);

static void flush_conn(worker *w, bconn *c)
{
    while (c->out.len) {
        ssize_t n = write(c->fd, c->out.data, c->out.len);
        if (n > 0) {
            iy_buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) {
                struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
                epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
                c->want_out = 1;
            }
            return;
        }
        conn_close(w, c, 1);
        return;
    }
    if (c->want_out) {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
}

static void flush_all(worker *w)
{
    for (int i = 0; i < w->ndirty; i++) {
        bconn *c = w->dirty[i];
        c->dirty = 0;
        if (c->state >= C_UPGRADING && c->state != C_CLOSED) flush_conn(w, c);
    }
    w->ndirty = 0;
}

/* ---- requests ---------------------------------------------------------- */

static void send_message(worker *w, bconn *c, uint64_t ts)
{
    const bparams *p = w->p;
    iy_buf *b = &w->scratch;
    char text[4096];
    int n = snprintf(text, sizeof text, "%llu %d %llu ", (unsigned long long)ts, c->slot,
                     (unsigned long long)c->ctr);
    int want = p->msg_bytes < (int)sizeof text ? p->msg_bytes : (int)sizeof text - 1;
    while (n < want) text[n++] = 'x';
    iy_buf_reset(b);
    if (c->to) iy_buf_appendf(b, "{\"op\":\"send\",\"to\":\"%llu\"", (unsigned long long)c->to);
    else iy_buf_appendf(b, "{\"op\":\"send\",\"channel\":\"%llu\"", (unsigned long long)c->channel);
    iy_buf_append_str(b, ",\"text\":\"");
    iy_buf_append(b, text, (size_t)n);
    iy_buf_appendf(b, "\",\"cmid\":\"%llx.%llu.%llu\"}", (unsigned long long)p->nonce,
                   (unsigned long long)c->ctr, (unsigned long long)ts);
    send_json(w, c, b->data, b->len);
    c->ctr++;
    c->inflight++;
    w->inflight_total++;
    w->r.sent++;
}

static void send_history(worker *w, bconn *c)
{
    iy_buf *b = &w->scratch;
    uint64_t top = c->max_seq + 1;               /* before_seq in [2, max_seq + 1] */
    uint64_t before = 2 + rnd(w) % (top > 1 ? top - 1 : 1);
    iy_buf_reset(b);
    iy_buf_appendf(b, "{\"op\":\"history\",\"rid\":\"%llu.%llu\",\"channel\":\"%llu\",\"before_seq\":%llu,\"limit\":%d}",
                   (unsigned long long)bench_now_ns(), (unsigned long long)before,
                   (unsigned long long)c->channel, (unsigned long long)before, w->p->history_limit);
    send_json(w, c, b->data, b->len);
    c->inflight++;
    w->inflight_total++;
}

static void send_sync(worker *w, bconn *c)
{
    iy_buf *b = &w->scratch;
    iy_buf_reset(b);
    iy_buf_appendf(b, "{\"op\":\"sync\",\"rid\":\"s\",\"after\":%llu,\"limit\":500}",
                   (unsigned long long)c->sync_pos);
    send_json(w, c, b->data, b->len);
}

/* ---- connections ------------------------------------------------------- */

static void settle(worker *w, bconn *c, int ok)
{
    if (c->settled) return;
    c->settled = 1;
    w->settled++;
    w->connecting--;
    if (ok) {
        w->r.conns_ok++;
        hist_add(&w->r.h_conn, bench_now_ns() - c->t_start);
    } else {
        w->r.conns_failed++;
    }
}

static void conn_close(worker *w, bconn *c, int unexpected)
{
    if (c->state == C_CLOSED || c->state == C_IDLE) return;
    if (c->state < C_READY) settle(w, c, 0);
    else if (unexpected) w->r.closed_unexpected++;
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = C_CLOSED;
    w->inflight_total -= c->inflight;
    c->inflight = 0;
    iy_buf_reset(&c->in);
    iy_buf_reset(&c->out);
    if ((c->role & ROLE_DEVICE) && w->phase == PH_RUN && !c->caught) {
        c->caught = 1;
        w->devices_done++;
        w->r.catchup_errors++;
    }
}

static void conn_start(worker *w, bconn *c)
{
    const bparams *p = w->p;
    c->t_start = bench_now_ns();
    c->settled = 0;
    c->state = C_CONNECTING;
    w->connecting++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->fd = fd;
    if (fd < 0) goto fail;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Source address 127.0.x.y: addrs_per_worker of them per worker, round robin. */
    unsigned a = (unsigned)(w->w * p->addrs_per_worker) + (unsigned)(w->made++ % (uint64_t)p->addrs_per_worker);
    struct sockaddr_in src = { .sin_family = AF_INET };
    src.sin_addr.s_addr = htonl((127u << 24) | ((1 + a / 250) << 8) | (1 + a % 250));
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) goto fail;
    if (connect(fd, (struct sockaddr *)&w->srv, sizeof w->srv) != 0 && errno != EINPROGRESS) goto fail;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) goto fail;
    c->want_out = 1;
    return;
fail:
    if (fd >= 0) close(fd);
    c->fd = -1;
    c->state = C_CLOSED;
    settle(w, c, 0);
}

static void start_queued(worker *w)
{
    while (w->qhead < w->qlen && w->connecting < w->concurrency) conn_start(w, &w->c[w->queue[w->qhead++]]);
}

static void enqueue(worker *w, int i)
{
    w->queue[w->qlen++] = i;
}

/* ---- JSON field scanning (server frames come from a fixed encoder) ---- */

static const char *find_key(const char *s, size_t n, const char *key)
{
    size_t k = strlen(key);
    const char *f = memmem(s, n, key, k);
    return f ? f + k : NULL;
}

static uint64_t num_at(const char *p, const char *end)
{
    uint64_t v = 0;
    if (p < end && *p == '"') p++;
    while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
    return v;
}

static uint64_t num_field(const char *s, size_t n, const char *key)
{
    const char *f = find_key(s, n, key);
    return f ? num_at(f, s + n) : 0;
}

/* ---- scenario events --------------------------------------------------- */

static void on_ready(worker *w, bconn *c, uint64_t pos)
{
    const bparams *p = w->p;
    c->state = C_READY;
    settle(w, c, 1);
    if (p->scenario == SC_RESYNC && (c->role & ROLE_DEVICE)) {
        if (w->phase == PH_SETUP) {
            /* First connection: note where this device is, then go offline. */
            c->base_pos = pos;
            conn_close(w, c, 0);
        } else {
            c->ready_pos = pos;
            c->sync_pos = c->base_pos;
            send_sync(w, c);
        }
    }
}

static void on_ack(worker *w, bconn *c, const char *s, size_t n, uint64_t now)
{
    const bparams *p = w->p;
    const char *f = find_key(s, n, "\"cmid\":\"");
    uint64_t ts = 0;
    if (f) {
        const char *dot = memchr(f, '.', (size_t)(s + n - f));
        if (dot) dot = memchr(dot + 1, '.', (size_t)(s + n - dot - 1));
        if (dot) ts = num_at(dot + 1, s + n);
    }
    if (c->inflight > 0) {
        c->inflight--;
        w->inflight_total--;
    }
    w->r.acked++;
    w->r.expected_total += (uint64_t)c->fanout;
    if (ts && in_window(w, now)) hist_add(&w->r.h_ack, now - ts);
    uint64_t seq = num_field(s, n, "\"seq\":");
    if (seq > c->max_seq) c->max_seq = seq;
    if (!c->channel || p->scenario == SC_HISTORY) c->channel = num_field(s, n, "\"channel\":");
    if (w->phase == PH_RUN && p->rate == 0 && (c->role & ROLE_SEND) &&
        (p->scenario == SC_DIRECT || p->scenario == SC_GROUP))
        send_message(w, c, now);
    else if (w->phase == PH_SETUP && w->setup_sending) {
        uint64_t target = p->scenario == SC_HISTORY ? (uint64_t)p->prefill : (uint64_t)p->missed;
        if (c->ctr < target) send_message(w, c, now);
    }
}

static void on_msg(worker *w, bconn *c, const char *s, size_t n, uint64_t now)
{
    w->r.delivered_total++;
    int win = in_window(w, now);
    if (win) w->r.delivered_win++;
    const char *end = s + n;
    const char *t = find_key(s, n, "\"text\":\"");
    if (t) {
        uint64_t ts = 0, slot = 0, ctr = 0;
        while (t < end && *t >= '0' && *t <= '9') ts = ts * 10 + (uint64_t)(*t++ - '0');
        if (t < end) t++;
        while (t < end && *t >= '0' && *t <= '9') slot = slot * 10 + (uint64_t)(*t++ - '0');
        if (t < end) t++;
        while (t < end && *t >= '0' && *t <= '9') ctr = ctr * 10 + (uint64_t)(*t++ - '0');
        if (win && ts && ts <= now) hist_add(&w->r.h_e2e, now - ts);
        if (slot < (uint64_t)c->nslots) {
            uint32_t *next = &c->next_ctr[slot];
            if (ctr < *next) w->r.dup_or_reorder++;
            else {
                if (ctr > *next) w->r.missing += ctr - *next; /* a gap: lost or reordered */
                *next = (uint32_t)ctr + 1;
            }
        }
    }
    uint64_t seq = num_field(s, n, "\"seq\":");
    if (seq <= c->last_seq) w->r.seq_order_errors++;
    c->last_seq = seq;
}

static void on_batch(worker *w, bconn *c, const char *s, size_t n, uint64_t now)
{
    const bparams *p = w->p;
    if (p->scenario == SC_HISTORY) {
        const char *rid = find_key(s, n, "\"rid\":\"");
        uint64_t ts = rid ? num_at(rid, s + n) : 0, before = 0;
        if (rid) {
            const char *dot = memchr(rid, '.', (size_t)(s + n - rid));
            if (dot) before = num_at(dot + 1, s + n);
        }
        size_t count = 0;
        for (const char *q = s; (q = find_key(q, (size_t)(s + n - q), "\"seq\":")); ) count++;
        uint64_t want = before - 1 < (uint64_t)p->history_limit ? before - 1 : (uint64_t)p->history_limit;
        if (count != want) w->r.page_errors++;
        if (c->inflight > 0) {
            c->inflight--;
            w->inflight_total--;
        }
        if (in_window(w, now)) {
            w->r.pages++;
            if (ts) hist_add(&w->r.h_req, now - ts);
        }
        if (w->phase == PH_RUN) send_history(w, c);
        return;
    }
    if (p->scenario != SC_RESYNC || !(c->role & ROLE_DEVICE) || c->caught) return;
    /* sync: every message's pos must follow the last one; the top-level pos
     * comes after the messages array. */
    const char *top = memmem(s, n, "],\"pos\":", 8);
    if (!top) {
        w->r.catchup_errors++;
        return;
    }
    for (const char *q = s; (q = find_key(q, (size_t)(top - q), "\"pos\":")); ) {
        uint64_t pos = num_at(q, top);
        if (pos != c->sync_pos + 1) w->r.catchup_errors++;
        c->sync_pos = pos;
        w->r.synced_msgs++;
    }
    uint64_t pos = num_at(top + 8, s + n);
    if (pos > c->sync_pos) c->sync_pos = pos;
    int more = memmem(s, n, "\"more\":true", 11) != NULL;
    if (more || c->sync_pos < c->ready_pos) {
        if (!more) w->r.catchup_errors++; /* the server says done, short of ready.pos */
        else {
            send_sync(w, c);
            return;
        }
    }
    if (c->ready_pos - c->base_pos != (uint64_t)p->missed) w->r.catchup_errors++;
    c->caught = 1;
    w->devices_done++;
    w->r.caught_up++;
    hist_add(&w->r.h_catch, now - w->go_ns);
    if (now > w->r.done_ns) w->r.done_ns = now;
}

static void on_text(worker *w, bconn *c, const char *s, size_t n)
{
    uint64_t now = bench_now_ns();
    if (n < 9 || memcmp(s, "{\"op\":\"", 7) != 0) {
        w->r.proto_errors++;
        return;
    }
    const char *op = s + 7;
    size_t left = n - 7;
#define IS(lit) (left > sizeof(lit) - 1 && !memcmp(op, lit "\"", sizeof(lit)))
    if (IS("msg")) on_msg(w, c, s, n, now);
    else if (IS("ack")) on_ack(w, c, s, n, now);
    else if (IS("batch")) on_batch(w, c, s, n, now);
    else if (IS("ready") && c->state == C_AUTHING) on_ready(w, c, num_field(s, n, "\"pos\":"));
    else if (IS("error")) {
        w->r.server_errors++;
        if (w->r.server_errors <= 5) fprintf(stderr, "iyagi-bench: server error: %.*s\n", (int)n, s);
        if (c->state == C_AUTHING) conn_close(w, c, 0);
        else if (c->inflight > 0) {
            c->inflight--;
            w->inflight_total--;
        }
    }
#undef IS
}

/* ---- input: HTTP upgrade answer, then server frames (unmasked) --------- */

/* Parses what it can of p[0..n); returns the bytes used. */
static size_t parse_input(worker *w, bconn *c, const char *p, size_t n)
{
    size_t off = 0;
    if (c->state == C_UPGRADING) {
        const char *e = memmem(p, n, "\r\n\r\n", 4);
        if (!e) return 0;
        size_t hl = (size_t)(e - p) + 4;
        if (hl < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0 || !memmem(p, hl, w->accept, 28)) {
            w->r.proto_errors++;
            conn_close(w, c, 0);
            return n;
        }
        off = hl;
        c->state = C_AUTHING;
        iy_buf *b = &w->scratch;
        iy_buf_reset(b);
        iy_buf_appendf(b, "{\"op\":\"auth\",\"token\":\"%s\"}", w->p->users[c->user].token);
        send_json(w, c, b->data, b->len);
    }
    while (c->state == C_AUTHING || c->state == C_READY) {
        const uint8_t *q = (const uint8_t *)p + off;
        size_t avail = n - off;
        if (avail < 2) break;
        int fin = q[0] & 0x80, op = q[0] & 0x0f;
        if (q[1] & 0x80) { /* a server frame must not be masked */
            w->r.proto_errors++;
            conn_close(w, c, 1);
            return n;
        }
        uint64_t len = q[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4) break;
            len = (uint64_t)q[2] << 8 | q[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 2; i < 10; i++) len = len << 8 | q[i];
            hl = 10;
        }
        if (avail - hl < len) break;
        const char *payload = p + off + hl;
        off += hl + (size_t)len;
        if (!fin) {
            w->r.proto_errors++; /* the server writes whole messages */
            continue;
        }
        if (op == WS_OP_TEXT) on_text(w, c, payload, (size_t)len);
        else if (op == WS_OP_CLOSE) {
            conn_close(w, c, 1);
            return n;
        } else if (op == WS_OP_PING) {
            uint8_t mask[4] = { 1, 2, 3, 4 };
            ws_client_frame_append(&c->out, WS_OP_PONG, 1, payload, (size_t)len, mask);
            mark_dirty(w, c);
        }
    }
    return c->state == C_CLOSED ? n : off;
}

static void on_readable(worker *w, bconn *c)
{
    for (;;) {
        ssize_t n = read(c->fd, w->rbuf, RBUF_SIZE);
        if (n == 0) {
            conn_close(w, c, 1);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) conn_close(w, c, 1);
            return;
        }
        if (c->in.len) {
            iy_buf_append(&c->in, w->rbuf, (size_t)n);
            size_t used = parse_input(w, c, c->in.data, c->in.len);
            if (c->state == C_CLOSED) return;
            iy_buf_consume(&c->in, used);
        } else {
            size_t used = parse_input(w, c, (const char *)w->rbuf, (size_t)n);
            if (c->state == C_CLOSED) return;
            if (used < (size_t)n) iy_buf_append(&c->in, w->rbuf + used, (size_t)n - used);
        }
        if ((size_t)n < RBUF_SIZE) return;
    }
}

static void on_writable(worker *w, bconn *c)
{
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
            conn_close(w, c, 0);
            return;
        }
        c->state = C_UPGRADING;
        iy_buf_append_str(&c->out, "GET /v1/ws HTTP/1.1\r\nHost: ");
        iy_buf_append_str(&c->out, w->host_hdr);
        iy_buf_append_str(&c->out, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n");
    }
    flush_conn(w, c);
}

/* ---- the share of this worker ------------------------------------------ */

static bconn *add_conn(worker *w, int user, int role)
{
    bconn *c = &w->c[w->nc++];
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->user = user;
    c->role = role;
    return c;
}

static void build_share(worker *w)
{
    const bparams *p = w->p;
    int W = p->workers, me = w->w;
    int cap = p->scenario == SC_GROUP ? 0 : 2 * (p->count / W + 1);
    if (p->scenario == SC_GROUP)
        for (int g = 0; g < p->count; g++) cap += p->groups[g].n;
    w->c = iy_calloc((size_t)cap + 1, sizeof *w->c);
    for (int i = 0; i < p->count; i++) {
        if (i % W != me) continue;
        bconn *a, *b;
        switch (p->scenario) {
        case SC_IDLE:
            add_conn(w, i, 0);
            break;
        case SC_DIRECT:
            a = add_conn(w, 2 * i, ROLE_SEND | ROLE_RECV);
            b = add_conn(w, 2 * i + 1, ROLE_SEND | ROLE_RECV);
            a->to = p->users[2 * i + 1].id;
            b->to = p->users[2 * i].id;
            a->fanout = b->fanout = 1;
            break;
        case SC_GROUP: {
            const bgroup *g = &p->groups[i];
            int senders = p->senders > 0 && p->senders < g->n ? p->senders : g->n;
            for (int k = 0; k < g->n; k++) {
                a = add_conn(w, g->member[k], ROLE_RECV | (k < senders ? ROLE_SEND : 0));
                a->channel = g->channel;
                a->slot = k;
                a->fanout = g->n - 1;
            }
            break;
        }
        case SC_HISTORY:
            a = add_conn(w, 2 * i, ROLE_SEND);
            a->to = p->users[2 * i + 1].id;
            break;
        case SC_RESYNC:
            a = add_conn(w, 2 * i, ROLE_SEND);
            a->to = p->users[2 * i + 1].id;
            b = add_conn(w, 2 * i + 1, ROLE_DEVICE);
            w->devices++;
            break;
        }
    }
    w->dirty = iy_calloc((size_t)w->nc + 1, sizeof *w->dirty);
    w->queue = iy_calloc((size_t)w->nc * 2 + 1, sizeof *w->queue);
    w->senders = iy_calloc((size_t)w->nc + 1, sizeof *w->senders);
    for (int i = 0; i < w->nc; i++) {
        bconn *c = &w->c[i];
        if (c->role & ROLE_RECV) {
            c->nslots = p->scenario == SC_GROUP ? c->fanout + 1 : 1;
            c->next_ctr = iy_calloc((size_t)c->nslots, sizeof *c->next_ctr);
        }
        if (c->role & ROLE_SEND) w->senders[w->nsenders++] = c;
    }
}

/* ---- the phases ---------------------------------------------------------- */

static void report(worker *w, char kind, uint64_t ns)
{
    pmsg m = { .kind = kind, .ns = ns };
    if (bench_write_full(w->to, &m, sizeof m) != 0) exit(1);
}

static void finish(worker *w)
{
    if (w->r.expected_total > w->r.delivered_total && w->r.missing < w->r.expected_total - w->r.delivered_total)
        w->r.missing = w->r.expected_total - w->r.delivered_total;
    report(w, MSG_RESULT, bench_now_ns());
    if (bench_write_full(w->to, &w->r, sizeof w->r) != 0) exit(1);
    w->phase = PH_DONE;
}

static void start_run(worker *w, uint64_t go)
{
    const bparams *p = w->p;
    w->go_ns = go;
    w->win_start = go + (uint64_t)(p->warmup * 1e9);
    w->win_end = w->win_start + (uint64_t)(p->duration * 1e9);
    w->phase = PH_RUN;
    switch (p->scenario) {
    case SC_IDLE:
        for (int i = 0; i < w->nc; i++) enqueue(w, i);
        break;
    case SC_DIRECT:
    case SC_GROUP:
        if (p->rate > 0) break; /* the tick sends on schedule */
        for (int i = 0; i < w->nsenders; i++) {
            bconn *c = w->senders[i];
            for (int k = 0; k < p->window && c->state == C_READY; k++) send_message(w, c, bench_now_ns());
        }
        break;
    case SC_HISTORY:
        for (int i = 0; i < w->nc; i++)
            for (int k = 0; k < p->window && w->c[i].state == C_READY; k++) send_history(w, &w->c[i]);
        break;
    case SC_RESYNC:
        w->concurrency = w->nc; /* every device reconnects at once */
        hist_init(&w->r.h_conn); /* from here on: reconnect + auth */
        w->r.conns_ok = 0;
        for (int i = 0; i < w->nc; i++)
            if (w->c[i].role & ROLE_DEVICE) enqueue(w, i);
        break;
    }
}

static void on_control(worker *w)
{
    pmsg m;
    if (bench_read_full(w->from, &m, sizeof m) != 0) exit(1); /* the coordinator is gone */
    if (m.kind == CMD_GO && w->phase == PH_WAITGO) start_run(w, m.ns);
    else if (m.kind == CMD_STOP && w->phase == PH_HOLD) finish(w);
}

static void fixed_rate_tick(worker *w, uint64_t now)
{
    if (now < w->go_ns || !w->nsenders) return;
    uint64_t due = (uint64_t)((double)(now - w->go_ns) * w->rate_w / 1e9) + 1;
    int budget = 20000;
    while (w->sched_sent < due && budget--) {
        uint64_t ts = w->go_ns + (uint64_t)((double)w->sched_sent * 1e9 / w->rate_w);
        w->sched_sent++;
        bconn *c = w->senders[w->rr++ % w->nsenders];
        if (c->state != C_READY || c->inflight >= BENCH_FIXED_RATE_CAP) {
            w->r.behind++;
            continue;
        }
        send_message(w, c, ts);
    }
}

static void step(worker *w, uint64_t now)
{
    const bparams *p = w->p;
    start_queued(w);
    if (now - w->last_hb_scan > 1000000000ull) {
        w->last_hb_scan = now;
        for (int i = 0; i < w->nc; i++) {
            bconn *c = &w->c[i];
            if (c->state == C_READY && now - c->last_tx > (uint64_t)p->hb_s * 1000000000ull)
                send_json(w, c, "{\"op\":\"hb\"}", 11);
        }
    }
    switch (w->phase) {
    case PH_SETUP:
        if (now > w->deadline) {
            fprintf(stderr, "iyagi-bench: worker %d: set-up not done after %d s (%d of %d connected, %ld requests unanswered)\n",
                    w->w, SETUP_TIMEOUT_S, w->settled, w->nc, w->inflight_total);
            exit(1);
        }
        if (p->scenario == SC_IDLE) {
            report(w, MSG_READY, now);
            w->phase = PH_WAITGO;
            break;
        }
        if (w->settled < w->nc) break;
        if ((p->scenario == SC_HISTORY || p->scenario == SC_RESYNC) && !w->setup_sending) {
            w->setup_sending = 1;
            for (int i = 0; i < w->nsenders; i++)
                for (int k = 0; k < SETUP_WINDOW && w->senders[i]->state == C_READY; k++)
                    send_message(w, w->senders[i], now);
            break;
        }
        if (w->inflight_total > 0) break;
        w->setup_sending = 0;
        w->r.sent = w->r.acked = w->r.expected_total = 0; /* setup traffic is not measured */
        report(w, MSG_READY, now);
        w->phase = PH_WAITGO;
        break;
    case PH_RUN:
        if (p->scenario == SC_IDLE) {
            if (w->settled == w->nc) {
                w->r.all_ready_ns = now;
                report(w, MSG_MARK, now);
                w->phase = PH_HOLD;
            }
        } else if (p->scenario == SC_RESYNC) {
            if (w->devices_done >= w->devices || now > w->go_ns + RESYNC_TIMEOUT_S * 1000000000ull) {
                w->r.catchup_errors += (uint64_t)(w->devices - w->devices_done);
                finish(w);
            }
        } else {
            if (p->rate > 0) fixed_rate_tick(w, now);
            if (now >= w->win_end) {
                w->phase = PH_DRAIN;
                w->deadline = now + DRAIN_S * 1000000000ull;
            }
        }
        break;
    case PH_DRAIN:
        if ((w->inflight_total <= 0 && w->r.delivered_total >= w->r.expected_total) || now > w->deadline)
            finish(w);
        break;
    }
}

static int64_t wait_ns(worker *w, uint64_t now)
{
    const bparams *p = w->p;
    if (w->phase == PH_RUN && p->rate > 0 && (p->scenario == SC_DIRECT || p->scenario == SC_GROUP)) {
        uint64_t next = w->go_ns + (uint64_t)((double)w->sched_sent * 1e9 / w->rate_w);
        return next > now ? (int64_t)(next - now) : 0;
    }
    return 20000000; /* 20 ms: phases, heartbeats, timeouts */
}

int worker_main(const bparams *p, int wi, int to, int from)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    worker *w = iy_calloc(1, sizeof *w);
    w->p = p;
    w->w = wi;
    w->to = to;
    w->from = from;
    w->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)getpid() << 17) ^ bench_now_ns();
    w->concurrency = p->concurrency;
    w->rbuf = iy_malloc(RBUF_SIZE);
    hist_init(&w->r.h_conn);
    hist_init(&w->r.h_ack);
    hist_init(&w->r.h_e2e);
    hist_init(&w->r.h_req);
    hist_init(&w->r.h_catch);
    w->srv.sin_family = AF_INET;
    w->srv.sin_port = htons((uint16_t)p->port);
    w->srv.sin_addr.s_addr = htonl(0x7f000001);
    {
        unsigned a, b, c, d;
        if (sscanf(p->host, "%u.%u.%u.%u", &a, &b, &c, &d) == 4)
            w->srv.sin_addr.s_addr = htonl(a << 24 | b << 16 | c << 8 | d);
    }
    snprintf(w->host_hdr, sizeof w->host_hdr, "%s:%d", p->host, p->port);
    if (ws_accept_key(WS_KEY, strlen(WS_KEY), w->accept) != 0) return 1;
    build_share(w);
    w->deadline = bench_now_ns() + SETUP_TIMEOUT_S * 1000000000ull;
    if (p->rate > 0) w->rate_w = p->rate / p->workers;
    if ((w->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) return 1;
    struct epoll_event cev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(w->ep, EPOLL_CTL_ADD, from, &cev);
    if (p->scenario != SC_IDLE)
        for (int i = 0; i < w->nc; i++) enqueue(w, i);
    struct epoll_event evs[512];
    while (w->phase != PH_DONE) {
        uint64_t now = bench_now_ns();
        int64_t wn = wait_ns(w, now);
        struct timespec ts = { .tv_sec = wn / 1000000000, .tv_nsec = wn % 1000000000 };
        int n = epoll_pwait2(w->ep, evs, 512, &ts, NULL);
        if (n < 0 && errno != EINTR) return 1;
        for (int i = 0; i < n; i++) {
            bconn *c = evs[i].data.ptr;
            if (!c) {
                on_control(w);
                continue;
            }
            if (c->state == C_CLOSED || c->state == C_IDLE) continue;
            if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(w, c);
            if (c->state != C_CLOSED && c->state != C_CONNECTING && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                on_readable(w, c);
        }
        step(w, bench_now_ns());
        flush_all(w);
    }
    return 0;
}
