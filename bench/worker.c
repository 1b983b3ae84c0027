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
 * the latencies instead of hiding it (no coordinated omission).
 *
 * Nodes. Each connection has a node (an entry of w->nodes: the answer of
 * discovery, or --host/--port alone). When spreading, the set-up assigns
 * nodes by smooth weighted round robin on spare capacity, so the two sides
 * of a pair, or consecutive members of a group, land on different nodes.
 *
 * Reconnects (--reconnect), per connection:
 *
 *   READY --drop (EOF, error, close frame)--> WAIT   t_due = now + back-off:
 *        0 after close 1012 on a ready socket, else 250 ms x 2^attempt
 *        (<= 10 s), +-30 % jitter
 *   WAIT --t_due passed, and a discovery answer asked after the drop is in
 *        (one request in flight per worker serves every waiting connection;
 *        if discovery fails, the table it had)--> pick a node: weighted
 *        round robin over the listed nodes, skipping nodes that refused us
 *        or sent 1012 in the last 10 s --> CONNECTING ... AUTHING
 *   AUTHING --ready--> READY: sync after the highest contiguous pos seen
 *        (paging while `more`; live msg frames are held meanwhile, then
 *        replayed, each pos taken once), resend every unacknowledged send
 *        byte for byte (same cmid: the server answers with the original
 *        ack), refill the window
 *   CONNECTING..AUTHING --failure or 10 s--> WAIT (attempt + 1)
 *
 * Invariants: a connection is in w->recon from its drop until it is ready
 * again (`recon`); the time in between is its time without a socket; acks
 * and pos are counted once however often a send went out. */
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
#define RECON_MIN_NS 250000000ull    /* --reconnect: first back-off, doubling... */
#define RECON_MAX_NS 10000000000ull  /* ...up to this */
#define RECON_JITTER 0.3
#define HANDSHAKE_NS 10000000000ull  /* a reconnect not ready after this has failed */
#define DISCO_TIMEOUT_NS 3000000000ull
#define NODE_DOWN_NS 10000000000ull  /* a node that refused us or drained is skipped this long */
#define PEND_RING 512                /* unacknowledged sends remembered per connection */
#define POSW_WORDS 16                /* pos seen past the contiguous base: 1,024 of them */

enum cstate { C_IDLE = 0, C_CONNECTING, C_UPGRADING, C_AUTHING, C_READY, C_CLOSED };
enum { ROLE_SEND = 1, ROLE_RECV = 2, ROLE_DEVICE = 4 };
enum phase { PH_SETUP = 0, PH_WAITGO, PH_RUN, PH_HOLD, PH_DRAIN, PH_DONE };

/* The inbox positions a connection has seen: every pos <= base, and
 * base + 1 + i for each bit i set. base is where a resume syncs from. */
typedef struct posw {
    uint64_t base;
    uint64_t bits[POSW_WORDS];
} posw;

typedef struct pend {
    uint64_t ctr, ts;           /* ts 0: a free slot */
} pend;

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
    /* nodes and --reconnect */
    unsigned recon : 1, listed : 1, resyncing : 1;
    int node;                   /* index into w->nodes */
    int attempt;                /* reconnect attempts since it was last ready */
    int close_code;             /* of the server's close frame, until the reconnect is scheduled */
    uint64_t t_lost, t_due, t_need;   /* dropped; next attempt; discovery must be newer than this */
    uint64_t resumed_to;        /* highest pos a resume's sync returned */
    posw *pw;
    pend *pend;                 /* senders: sends not acknowledged yet, by ctr % PEND_RING */
    iy_buf held;                /* live msg frames (4-byte length + bytes) held while resyncing */
    uint64_t *shed;             /* fixed rate: counters of the sends the server refused (busy), ascending */
    size_t nshed, shed_cap;
} bconn;

/* A node as this worker sees it. */
typedef struct wnode {
    bnode b;
    int listed;                 /* in the last discovery answer */
    uint64_t down_until;        /* refused a connection or drained: skipped until then */
    uint64_t connects, failed, dropped;
} wnode;

/* The worker's discovery request (one at a time, shared by every reconnect). */
typedef struct wdisc {
    int fd;
    int busy;
    int sent;
    uint64_t started;           /* when the request in flight was made */
    uint64_t answered;          /* `started` of the last request that ended, well or not */
    iy_buf out, in;
    bdisco answer;
} wdisc;

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
    struct sockaddr_in entry;   /* --host:--port, where discovery is asked */
    char accept[29];
    wnode nodes[BENCH_MAX_NODES];
    int nn;
    double weight[BENCH_MAX_NODES], cur[BENCH_MAX_NODES];   /* weighted round robin */
    wdisc disc;
    bconn **recon;              /* connections between a drop and ready again (--reconnect) */
    int nrecon, recon_live;
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

/* The send of message ctr, written at ts: its text and cmid follow from
 * (ctr, ts), so a resend is the first send byte for byte. With --reconnect it
 * carries rid "c<ctr>", so that an error answer frees its resend slot. */
static void send_frame(worker *w, bconn *c, uint64_t ctr, uint64_t ts)
{
    const bparams *p = w->p;
    iy_buf *b = &w->scratch;
    char text[4096];
    int n = snprintf(text, sizeof text, "%llu %d %llu ", (unsigned long long)ts, c->slot,
                     (unsigned long long)ctr);
    int want = p->msg_bytes < (int)sizeof text ? p->msg_bytes : (int)sizeof text - 1;
    while (n < want) text[n++] = 'x';
    iy_buf_reset(b);
    if (c->to) iy_buf_appendf(b, "{\"op\":\"send\",\"to\":\"%llu\"", (unsigned long long)c->to);
    else iy_buf_appendf(b, "{\"op\":\"send\",\"channel\":\"%llu\"", (unsigned long long)c->channel);
    if (c->pend || p->rate > 0) iy_buf_appendf(b, ",\"rid\":\"c%llu\"", (unsigned long long)ctr);
    iy_buf_append_str(b, ",\"text\":\"");
    iy_buf_append(b, text, (size_t)n);
    iy_buf_appendf(b, "\",\"cmid\":\"%llx.%llu.%llu\"}", (unsigned long long)p->nonce,
                   (unsigned long long)ctr, (unsigned long long)ts);
    send_json(w, c, b->data, b->len);
}

static void send_message(worker *w, bconn *c, uint64_t ts)
{
    send_frame(w, c, c->ctr, ts);
    if (c->pend) c->pend[c->ctr % PEND_RING] = (pend){ .ctr = c->ctr, .ts = ts };
    c->ctr++;
    c->inflight++;
    w->inflight_total++;
    w->r.sent++;
}

static void pend_done(bconn *c, uint64_t ctr)
{
    pend *e = &c->pend[ctr % PEND_RING];
    if (e->ts && e->ctr == ctr) e->ts = 0;
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

/* rid "s": the resync scenario's catch-up; "rs": a resume after a reconnect. */
static void send_sync(worker *w, bconn *c, const char *rid)
{
    iy_buf *b = &w->scratch;
    iy_buf_reset(b);
    iy_buf_appendf(b, "{\"op\":\"sync\",\"rid\":\"%s\",\"after\":%llu,\"limit\":500}", rid,
                   (unsigned long long)c->sync_pos);
    send_json(w, c, b->data, b->len);
}

/* ---- positions seen ----------------------------------------------------- */

static void posw_advance(posw *pw, uint64_t n)
{
    pw->base += n;
    if (n >= POSW_WORDS * 64) {
        memset(pw->bits, 0, sizeof pw->bits);
        return;
    }
    unsigned q = (unsigned)(n / 64), r = (unsigned)(n % 64);
    for (unsigned i = 0; i < POSW_WORDS; i++) {
        uint64_t lo = i + q < POSW_WORDS ? pw->bits[i + q] : 0;
        uint64_t hi = i + q + 1 < POSW_WORDS ? pw->bits[i + q + 1] : 0;
        pw->bits[i] = r ? (lo >> r) | (hi << (64 - r)) : lo;
    }
}

/* Notes pos as seen: 1 if it was new, 0 if seen before (or 0). A pos more
 * than the window ahead of the base gives up the oldest holes. */
static int posw_mark(posw *pw, uint64_t pos)
{
    if (pos <= pw->base) return 0;
    uint64_t off = pos - pw->base - 1;
    if (off >= POSW_WORDS * 64) {
        posw_advance(pw, off - POSW_WORDS * 64 + 1);
        off = POSW_WORDS * 64 - 1;
    }
    uint64_t bit = 1ull << (off % 64);
    if (pw->bits[off / 64] & bit) return 0;
    pw->bits[off / 64] |= bit;
    uint64_t run = 0;
    for (unsigned i = 0; i < POSW_WORDS; i++) {
        if (pw->bits[i] == ~0ull) {
            run += 64;
            continue;
        }
        run += (uint64_t)__builtin_ctzll(~pw->bits[i]);
        break;
    }
    if (run) posw_advance(pw, run);
    return 1;
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
        w->nodes[c->node].connects++;
        hist_add(&w->r.h_conn, bench_now_ns() - c->t_start);
    } else {
        w->r.conns_failed++;
        w->nodes[c->node].failed++;
    }
}

static void recon_schedule(worker *w, bconn *c);

/* A reconnect attempt failed: the node is skipped for a while, and the
 * connection waits for its next attempt. */
static void recon_failed(worker *w, bconn *c)
{
    w->connecting--;
    w->r.reconnect_failures++;
    w->nodes[c->node].failed++;
    w->nodes[c->node].down_until = bench_now_ns() + NODE_DOWN_NS;
}

static void conn_close(worker *w, bconn *c, int unexpected)
{
    if (c->state == C_CLOSED || c->state == C_IDLE) return;
    int dropped = c->state == C_READY && unexpected;
    if (c->state < C_READY) {
        if (c->recon) recon_failed(w, c);
        else settle(w, c, 0);
    } else if (unexpected) {
        w->r.closed_unexpected++;
        w->nodes[c->node].dropped++;
    }
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = C_CLOSED;
    w->inflight_total -= c->inflight;
    c->inflight = 0;
    iy_buf_reset(&c->in);
    iy_buf_reset(&c->out);
    iy_buf_reset(&c->held);
    c->resyncing = 0;
    if ((c->role & ROLE_DEVICE) && w->phase == PH_RUN && !c->caught) {
        c->caught = 1;
        w->devices_done++;
        w->r.catchup_errors++;
    }
    if (w->p->reconnect && w->phase != PH_DONE && (c->recon || dropped)) recon_schedule(w, c);
}

static void conn_start(worker *w, bconn *c)
{
    const bparams *p = w->p;
    const wnode *nd = &w->nodes[c->node];
    c->t_start = bench_now_ns();
    if (!c->recon) c->settled = 0;
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
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)nd->b.port),
                               .sin_addr.s_addr = htonl(nd->b.addr) };
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS) goto fail;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) goto fail;
    c->want_out = 1;
    return;
fail:
    if (fd >= 0) close(fd);
    c->fd = -1;
    c->state = C_CLOSED;
    if (c->recon) {
        recon_failed(w, c);
        recon_schedule(w, c);
    } else {
        settle(w, c, 0);
    }
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

static void recon_ready(worker *w, bconn *c, uint64_t pos);

static void on_ready(worker *w, bconn *c, uint64_t pos)
{
    const bparams *p = w->p;
    c->state = C_READY;
    if (c->recon) {
        recon_ready(w, c, pos);
        return;
    }
    settle(w, c, 1);
    if (p->reconnect && !c->pw) {
        c->pw = iy_calloc(1, sizeof *c->pw);
        c->pw->base = pos; /* what came before this device's first ready is history, not a gap */
    }
    if (p->scenario == SC_RESYNC && (c->role & ROLE_DEVICE)) {
        if (w->phase == PH_SETUP) {
            /* First connection: note where this device is, then go offline. */
            c->base_pos = pos;
            conn_close(w, c, 0);
        } else {
            c->ready_pos = pos;
            c->sync_pos = c->base_pos;
            send_sync(w, c, "s");
        }
    }
}

static void on_ack(worker *w, bconn *c, const char *s, size_t n, uint64_t now)
{
    const bparams *p = w->p;
    const char *f = find_key(s, n, "\"cmid\":\"");
    uint64_t ts = 0, ctr = 0;
    if (f) {
        const char *dot = memchr(f, '.', (size_t)(s + n - f));
        if (dot) ctr = num_at(dot + 1, s + n);
        if (dot) dot = memchr(dot + 1, '.', (size_t)(s + n - dot - 1));
        if (dot) ts = num_at(dot + 1, s + n);
    }
    if (c->pend && f) pend_done(c, ctr);
    if (c->pw) posw_mark(c->pw, num_field(s, n, "\"pos\":"));
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

/* One message delivered to c (a msg frame, or a message object of a resume
 * sync): latency, and each sender's messages once each and in order. */
static void deliver(worker *w, bconn *c, const char *s, size_t n, uint64_t now)
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

static void on_msg(worker *w, bconn *c, const char *s, size_t n, uint64_t now)
{
    if (c->pw) {
        if (c->resyncing) {
            /* after the resume's sync: the sync may return this one too */
            uint32_t len = (uint32_t)n;
            iy_buf_append(&c->held, &len, sizeof len);
            iy_buf_append(&c->held, s, n);
            return;
        }
        /* The resume's sync read what was committed, and a message it
         * returned may still be on its way here live: that one is no repeat. */
        uint64_t pos = num_field(s, n, "\"pos\":");
        if (!posw_mark(c->pw, pos) && pos <= c->resumed_to) return;
        /* Our own message, sent on the socket this one replaced while the
         * server still held it (to the server, another socket of the
         * sender): its ack, or the resend's, counts it. */
        if (num_field(s, n, "\"from\":") == w->p->users[c->user].id) return;
    }
    deliver(w, c, s, n, now);
}

/* A page of a resume's sync: each message of the connection's channel not
 * seen yet is delivered (its own messages are counted by their acks; other
 * channels' messages are not this run's traffic); then the next page, or the
 * live frames held meanwhile, each pos once. */
static void on_resume_batch(worker *w, bconn *c, const char *s, size_t n, uint64_t now)
{
    const char *e = s + n;
    const char *arr = find_key(s, n, "\"messages\":[");
    const char *top = memmem(s, n, "],\"pos\":", 8);
    if (!arr || !top || top < arr || !c->pw) {
        w->r.proto_errors++;
        return;
    }
    uint64_t self = w->p->users[c->user].id;
    for (const char *q = arr; q < top; ) {
        if (*q != '{') {
            q++;
            continue;
        }
        const char *end = bench_json_skip(q, top + 1);
        if (!end) {
            w->r.proto_errors++;
            break;
        }
        size_t len = (size_t)(end - q);
        uint64_t pos = num_field(q, len, "\"pos\":");
        if (pos > c->sync_pos) c->sync_pos = pos;
        if (pos > c->resumed_to) c->resumed_to = pos;
        if (posw_mark(c->pw, pos) && num_field(q, len, "\"from\":") != self && c->channel &&
            num_field(q, len, "\"channel\":") == c->channel)
            deliver(w, c, q, len, now);
        q = end;
    }
    uint64_t pos = num_at(top + 8, e);
    if (pos > c->sync_pos) c->sync_pos = pos;
    if (memmem(s, n, "\"more\":true", 11)) {
        send_sync(w, c, "rs");
        return;
    }
    c->resyncing = 0;
    for (size_t off = 0; off + 4 <= c->held.len; ) {
        uint32_t len;
        memcpy(&len, c->held.data + off, sizeof len);
        const char *m = c->held.data + off + 4;
        if (posw_mark(c->pw, num_field(m, len, "\"pos\":")) && num_field(m, len, "\"from\":") != self)
            deliver(w, c, m, len, now);
        off += 4 + len;
    }
    iy_buf_reset(&c->held);
}

static void on_batch(worker *w, bconn *c, const char *s, size_t n, uint64_t now)
{
    const bparams *p = w->p;
    if (c->resyncing && find_key(s, n, "\"rid\":\"rs\"")) {
        on_resume_batch(w, c, s, n, now);
        return;
    }
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
            send_sync(w, c, "s");
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
        const char *rid = c->pend || w->p->rate > 0 ? find_key(s, n, "\"rid\":\"c") : NULL;
        if (rid && w->p->rate > 0 && find_key(s, n, "\"code\":\"unavailable\"") &&
            find_key(s, n, "\"message\":\"server busy")) {
            /* Shed: the server was busy and stored nothing (a client would
             * send it again later; at a fixed rate the next send is due
             * anyway). Not an error; finish() excuses its gap. */
            w->r.shed++;
            if (c->nshed == c->shed_cap) {
                c->shed_cap = c->shed_cap ? 2 * c->shed_cap : 64;
                c->shed = iy_realloc(c->shed, c->shed_cap * sizeof *c->shed);
            }
            c->shed[c->nshed++] = num_at(rid, s + n);
        } else {
            w->r.server_errors++;
            if (w->r.server_errors <= 5) fprintf(stderr, "iyagi-bench: server error: %.*s\n", (int)n, s);
        }
        if (rid && c->pend) pend_done(c, num_at(rid, s + n)); /* not stored: nothing to resend */
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
            c->close_code = len >= 2 ? (uint8_t)payload[0] << 8 | (uint8_t)payload[1] : 1005;
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
        const wnode *nd = &w->nodes[c->node];
        c->state = C_UPGRADING;
        iy_buf_appendf(&c->out, "GET %s HTTP/1.1\r\nHost: ", nd->b.path);
        iy_buf_append_str(&c->out, nd->b.host_hdr);
        iy_buf_append_str(&c->out, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n");
    }
    flush_conn(w, c);
}

/* ---- nodes and discovery ------------------------------------------------ */

/* Takes a discovery answer: nodes are matched by name (new ones added, the
 * ones not in it no longer chosen); weights are their spare capacity. */
static void nodes_update(worker *w, const bdisco *d)
{
    double wt[BENCH_MAX_NODES];
    disco_weights(d, wt);
    for (int i = 0; i < w->nn; i++) w->nodes[i].listed = 0;
    for (int k = 0; k < d->n; k++) {
        int i = 0;
        while (i < w->nn && strcmp(w->nodes[i].b.name, d->node[k].name) != 0) i++;
        if (i == w->nn) {
            if (w->nn == BENCH_MAX_NODES) continue;
            memset(&w->nodes[i], 0, sizeof w->nodes[i]);
            w->cur[i] = 0;
            w->nn++;
        }
        w->nodes[i].b = d->node[k];
        w->nodes[i].listed = 1;
        w->weight[i] = wt[k];
    }
}

/* The node for a new connection: weighted round robin over the listed
 * nodes that did not fail us lately; else over the listed ones; else any. */
static int pick_node(worker *w, uint64_t now)
{
    int ok[BENCH_MAX_NODES], any = 0;
    for (int pass = 0; pass < 3 && !any; pass++)
        for (int i = 0; i < w->nn; i++) {
            ok[i] = pass == 2 || (w->nodes[i].listed && (pass == 1 || w->nodes[i].down_until <= now));
            any |= ok[i];
        }
    int i = disco_wrr_pick(w->cur, w->weight, ok, w->nn);
    return i < 0 ? 0 : i;
}

static void disc_end(worker *w, int ok)
{
    wdisc *d = &w->disc;
    if (d->fd >= 0) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, d->fd, NULL);
        close(d->fd);
        d->fd = -1;
    }
    d->busy = 0;
    d->answered = d->started;
    if (ok) nodes_update(w, &d->answer);
}

/* GET /v1/discovery on --host:--port, from this worker's loop. */
static void disc_start(worker *w, uint64_t now)
{
    wdisc *d = &w->disc;
    d->busy = 1;
    d->sent = 0;
    d->started = now;
    iy_buf_reset(&d->in);
    iy_buf_reset(&d->out);
    disco_request(&d->out, w->p->host, w->p->port);
    d->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = d };
    if (d->fd < 0 ||
        (connect(d->fd, (struct sockaddr *)&w->entry, sizeof w->entry) != 0 && errno != EINPROGRESS) ||
        epoll_ctl(w->ep, EPOLL_CTL_ADD, d->fd, &ev) != 0)
        disc_end(w, 0);
}

static void disc_event(worker *w, uint32_t events)
{
    wdisc *d = &w->disc;
    if (!d->busy) return;
    if (!d->sent && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
            disc_end(w, 0);
            return;
        }
        ssize_t n = write(d->fd, d->out.data, d->out.len); /* ~100 bytes: one write */
        if (n != (ssize_t)d->out.len) {
            disc_end(w, 0);
            return;
        }
        d->sent = 1;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = d };
        epoll_ctl(w->ep, EPOLL_CTL_MOD, d->fd, &ev);
        return;
    }
    for (;;) {
        char buf[8192];
        ssize_t n = read(d->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n > 0) iy_buf_append(&d->in, buf, (size_t)n);
        int r = disco_parse_http(d->in.data, d->in.len, n <= 0, &d->answer);
        if (r <= 0 || d->in.len > (1u << 20)) {
            disc_end(w, r == 0);
            return;
        }
    }
}

/* ---- reconnects (--reconnect; the diagram at the top) --------------------- */

static void recon_schedule(worker *w, bconn *c)
{
    uint64_t now = bench_now_ns(), delay = 0;
    if (c->close_code == 1012) w->nodes[c->node].down_until = now + NODE_DOWN_NS;
    if (c->close_code != 1012 || c->attempt > 0) {
        uint64_t base = RECON_MIN_NS << (c->attempt < 6 ? c->attempt : 6);
        if (base > RECON_MAX_NS) base = RECON_MAX_NS;
        double f = 1 - RECON_JITTER + 2 * RECON_JITTER * (double)(rnd(w) % 1000001) / 1e6;
        delay = (uint64_t)((double)base * f);
    }
    c->attempt++;
    c->close_code = 0;
    c->t_due = now + delay;
    c->t_need = now;
    if (!c->recon) {
        c->recon = 1;
        c->t_lost = now;
    }
    if (!c->listed) {
        c->listed = 1;
        w->recon[w->nrecon++] = c;
    }
}

/* Keeps the connection's share of the load going after a reconnect. */
static void refill(worker *w, bconn *c, uint64_t now)
{
    const bparams *p = w->p;
    if (w->phase == PH_RUN && p->rate == 0 && (c->role & ROLE_SEND) &&
        (p->scenario == SC_DIRECT || p->scenario == SC_GROUP)) {
        while (c->inflight < p->window) send_message(w, c, now);
    } else if (w->phase == PH_RUN && p->scenario == SC_HISTORY) {
        while (c->inflight < p->window) send_history(w, c);
    } else if (w->phase == PH_SETUP && w->setup_sending && (c->role & ROLE_SEND)) {
        uint64_t target = p->scenario == SC_HISTORY ? (uint64_t)p->prefill : (uint64_t)p->missed;
        while (c->inflight < SETUP_WINDOW && c->ctr < target) send_message(w, c, now);
    }
}

static void recon_ready(worker *w, bconn *c, uint64_t pos)
{
    uint64_t now = bench_now_ns();
    w->connecting--;
    c->recon = 0;
    c->attempt = 0;
    w->nodes[c->node].connects++;
    w->r.reconnects++;
    w->r.offline_ns += now - c->t_lost;
    hist_add(&w->r.h_gap, now - c->t_lost);
    c->ready_pos = pos;
    if (c->pw && pos > c->pw->base) {
        c->resyncing = 1;
        c->sync_pos = c->pw->base;
        send_sync(w, c, "rs");
    }
    if (c->pend) {
        for (uint64_t k = c->ctr > PEND_RING ? c->ctr - PEND_RING : 0; k < c->ctr; k++) {
            const pend *e = &c->pend[k % PEND_RING];
            if (!e->ts || e->ctr != k) continue;
            send_frame(w, c, k, e->ts);
            c->inflight++;
            w->inflight_total++;
            w->r.resent++;
        }
    }
    refill(w, c, now);
}

static void recon_step(worker *w, uint64_t now)
{
    const bparams *p = w->p;
    int need_disc = 0, k = 0;
    for (int i = 0; i < w->nrecon; i++) {
        bconn *c = w->recon[i];
        if (!c->recon) {
            c->listed = 0; /* ready again */
            continue;
        }
        w->recon[k++] = c;
        if (c->state != C_CLOSED) {
            if (now - c->t_start > HANDSHAKE_NS) conn_close(w, c, 1);
            continue;
        }
        if (now < c->t_due) continue;
        if (p->discovery != DISCO_OFF && w->disc.answered < c->t_need) {
            need_disc = 1;
            continue;
        }
        if (w->connecting >= w->concurrency) continue;
        c->node = pick_node(w, now);
        conn_start(w, c);
    }
    w->nrecon = k;
    w->recon_live = k;
    if (need_disc && !w->disc.busy) disc_start(w, now);
    if (w->disc.busy && now - w->disc.started > DISCO_TIMEOUT_NS) disc_end(w, 0);
}

/* ---- the share of this worker ------------------------------------------ */

static bconn *add_conn(worker *w, int user, int role)
{
    bconn *c = &w->c[w->nc++];
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->user = user;
    c->role = role;
    c->node = w->p->spread ? pick_node(w, 0) : 0;
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
        if ((c->role & ROLE_SEND) && p->reconnect) c->pend = iy_calloc(PEND_RING, sizeof *c->pend);
    }
    if (p->reconnect) w->recon = iy_calloc((size_t)w->nc + 1, sizeof *w->recon);
}

/* ---- the phases ---------------------------------------------------------- */

static void report(worker *w, char kind, uint64_t ns)
{
    pmsg m = { .kind = kind, .ns = ns };
    if (bench_write_full(w->to, &m, sizeof m) != 0) exit(1);
}

/* The sender of a receiver's slot: in a pair the other connection (pairs
 * are added together, a at an even index), in a group the member of that
 * slot (members are added in slot order). */
static const bconn *sender_of(const worker *w, const bconn *c, int slot)
{
    ptrdiff_t i = c - w->c;
    if (w->p->scenario == SC_GROUP) return &w->c[i - c->slot + slot];
    return &w->c[i ^ 1];
}

/* Sends the server refused never arrive: the gaps they left in what each
 * receiver saw are no loss. Those below where the receiver ended. */
static void excuse_shed(worker *w)
{
    for (int i = 0; i < w->nc; i++) {
        const bconn *c = &w->c[i];
        for (int s = 0; s < c->nslots; s++) {
            const bconn *from = sender_of(w, c, s);
            if (from == c) continue;
            size_t k = 0;
            while (k < from->nshed && from->shed[k] < c->next_ctr[s]) k++;
            w->r.missing -= k < w->r.missing ? k : w->r.missing;
        }
    }
}

static void finish(worker *w)
{
    excuse_shed(w);
    if (w->r.expected_total > w->r.delivered_total && w->r.missing < w->r.expected_total - w->r.delivered_total)
        w->r.missing = w->r.expected_total - w->r.delivered_total;
    w->r.nnodes = w->nn;
    for (int i = 0; i < w->nn; i++) {
        nreport *n = &w->r.node[i];
        /* (memcpy: n and the source both live in *w, which snprintf's restrict forbids) */
        size_t nl = strnlen(w->nodes[i].b.name, sizeof n->name - 1), ul = strnlen(w->nodes[i].b.url, sizeof n->url - 1);
        memcpy(n->name, w->nodes[i].b.name, nl);
        n->name[nl] = '\0';
        memcpy(n->url, w->nodes[i].b.url, ul);
        n->url[ul] = '\0';
        n->connects = w->nodes[i].connects;
        n->failed = w->nodes[i].failed;
        n->dropped = w->nodes[i].dropped;
    }
    for (int i = 0; i < w->nc; i++) {
        if (w->c[i].state == C_READY) w->r.node[w->c[i].node].ready++;
        if (w->c[i].recon) w->r.still_offline++;
    }
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
    if (w->nrecon) recon_step(w, now);
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
        if ((w->inflight_total <= 0 && w->r.delivered_total >= w->r.expected_total && !w->recon_live) ||
            now > w->deadline)
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
    hist_init(&w->r.h_gap);
    w->disc.fd = -1;
    w->entry.sin_family = AF_INET;
    w->entry.sin_port = htons((uint16_t)p->port);
    w->entry.sin_addr.s_addr = htonl(0x7f000001);
    {
        unsigned a, b, c, d;
        if (sscanf(p->host, "%u.%u.%u.%u", &a, &b, &c, &d) == 4)
            w->entry.sin_addr.s_addr = htonl(a << 24 | b << 16 | c << 8 | d);
    }
    if (p->spread) {
        nodes_update(w, &p->disco);
        for (int i = 0; i < w->w % w->nn; i++) pick_node(w, 0); /* workers start at different nodes */
    } else {
        /* --host:--port, as it always was */
        wnode *nd = &w->nodes[w->nn++];
        nd->listed = 1;
        w->weight[0] = 1;
        nd->b.addr = ntohl(w->entry.sin_addr.s_addr);
        nd->b.port = p->port;
        char hh[sizeof nd->b.host_hdr];
        snprintf(hh, sizeof hh, "%s:%d", p->host, p->port);
        memcpy(nd->b.host_hdr, hh, sizeof hh);
        memcpy(nd->b.name, hh, sizeof hh);
        snprintf(nd->b.url, sizeof nd->b.url, "ws://%s/v1/ws", hh);
        snprintf(nd->b.path, sizeof nd->b.path, "/v1/ws");
    }
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
            if ((void *)c == (void *)&w->disc) {
                disc_event(w, evs[i].events);
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
