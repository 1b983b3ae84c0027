/* conn.c — the life of one connection: reading, the HTTP -> WebSocket
 * upgrade, pausing input, batched output, and the close handshake.
 * The state diagram and invariants are in net.h. */
#include "net.h"
#include "../base/metrics.h"
#include "../base/alloc.h"
#include "../base/counter.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../codec/proto.h"
#include "tls.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <strings.h>
#include <string.h>

#define DRAIN_MS 2000

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void flush_one(conn *c);
static void call_drained(conn *c);
int conn_forwarded_tls(const conn *c, const http_request *req)
{
    if (!c->trusted || !req) return 0;
    /* A chain of proxies that appends: the first element is the scheme the
     * client used at the front. (Only the URLs we hand out depend on it.) */
    const char *s = req->forwarded_proto.ptr;
    size_t n = req->forwarded_proto.len, i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    size_t e = i;
    while (e < n && s[e] != ',' && s[e] != ' ' && s[e] != '\t') e++;
    return e - i == 5 && !strncasecmp(s + i, "https", 5);
}

static void http_fail(conn *c, int status, const char *code, const char *message);
static void conn_input(conn *c, char *data, size_t len);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = h->data;
    buf->base = c->t->readbuf;
    buf->len = READ_BUF_SIZE;
}

static void start_reading(conn *c)
{
    if (c->reading || uv_is_closing((uv_handle_t *)&c->tcp)) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
}

static void stop_reading(conn *c)
{
    if (!c->reading) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
}

/* ---- connection memory and ids ------------------------------------------
 *
 * Connections live in blocks of CONN_BLOCK per I/O thread, and a closed
 * one's slot goes back to the thread's free list. The slot is the low half
 * of the connection's id and the slot's generation the high half, bumped
 * when the connection closes: iothread_conn finds a connection by its id
 * with two array reads, and a job that comes back for a closed one finds
 * nothing (the generation moved on), where a hash map from ids cost ~35
 * bytes more per connection at 15,000 (docs/BENCHMARKS.md). Blocks are kept
 * until the thread ends (the next wave reuses them). Under ASan a free slot
 * is poisoned, so a use after close is still caught. */
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#define CONN_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define CONN_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define CONN_POISON(p, n) ((void)(p), (void)(n))
#define CONN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif
#define CONN_BLOCK 64

struct conn_block {
    conn c[CONN_BLOCK];
    uint32_t gen[CONN_BLOCK];   /* the slot's generation: the high half of its connection's id */
};

static conn *conn_new(iothread *t)
{
    if (!t->nconn_free) {
        conn_block *b = iy_malloc(sizeof *b);
        uint32_t k = t->nconn_blocks++;
        t->conn_blocks = iy_realloc(t->conn_blocks, t->nconn_blocks * sizeof *t->conn_blocks);
        t->conn_blocks[k] = b;
        t->conn_free = iy_realloc(t->conn_free, (size_t)t->nconn_blocks * CONN_BLOCK * sizeof *t->conn_free);
        for (uint32_t i = CONN_BLOCK; i-- > 0;) {
            b->gen[i] = 1;   /* never 0: an id is never 0 */
            t->conn_free[t->nconn_free++] = k * CONN_BLOCK + i;
        }
        CONN_POISON(b->c, sizeof b->c);
    }
    uint32_t slot = t->conn_free[--t->nconn_free];
    conn_block *b = t->conn_blocks[slot / CONN_BLOCK];
    conn *c = &b->c[slot % CONN_BLOCK];
    CONN_UNPOISON(c, sizeof *c);
    memset(c, 0, sizeof *c);
    c->t = t;
    c->id = (uint64_t)b->gen[slot % CONN_BLOCK] << 32 | slot;
    return c;
}

/* The id stops naming c: iothread_conn finds nothing for it from now on. */
static void conn_unlist(conn *c)
{
    uint32_t slot = (uint32_t)c->id;
    uint32_t *gen = &c->t->conn_blocks[slot / CONN_BLOCK]->gen[slot % CONN_BLOCK];
    if (*gen != (uint32_t)(c->id >> 32)) return;   /* already */
    *gen = *gen + 1 ? *gen + 1 : 1;
}

conn *iothread_conn(iothread *t, uint64_t id)
{
    uint32_t slot = (uint32_t)id, k = slot / CONN_BLOCK;
    if (k >= t->nconn_blocks) return NULL;
    conn_block *b = t->conn_blocks[k];
    return b->gen[slot % CONN_BLOCK] == (uint32_t)(id >> 32) ? &b->c[slot % CONN_BLOCK] : NULL;
}

/* uv_close's callback of every connection handle. */
static void conn_release(uv_handle_t *h)
{
    conn *c = h->data;
    iothread *t = c->t;
    uint32_t slot = (uint32_t)c->id;
    conn_unlist(c);
    CONN_POISON(c, sizeof *c);
    t->conn_free[t->nconn_free++] = slot;
}

void conn_pool_free(iothread *t)
{
    ws_reader_free(t->spare_wr);
    t->spare_wr = NULL;
    for (uint32_t k = 0; k < t->nconn_blocks; k++) {
        CONN_UNPOISON(t->conn_blocks[k]->c, sizeof t->conn_blocks[k]->c);
        iy_free(t->conn_blocks[k]);
    }
    iy_free(t->conn_blocks);
    iy_free(t->conn_free);
    t->conn_blocks = NULL;
    t->conn_free = NULL;
    t->nconn_blocks = t->nconn_free = 0;
}

/* c->rest, input held while paused: made by the first byte held. */
static void rest_append(conn *c, const void *p, size_t n)
{
    if (!c->rest) c->rest = iy_calloc(1, sizeof *c->rest);
    iy_buf_append(c->rest, p, n);
}

static void rest_free(conn *c)
{
    if (!c->rest) return;
    iy_buf_free(c->rest);
    iy_free(c->rest);
    c->rest = NULL;
}

/* A connection refused at accept: closed at once, logged at most once a
 * second per thread. */
static void refuse(iothread *t, conn *c, const char *why)
{
    metrics_add(M_CONNS_REFUSED, 1);
    uint64_t now = uv_now(&t->loop);
    if (now - t->refused_logged_ms >= 1000) {
        char a[48];
        net_addr_text(c->peer, a, sizeof a);
        iy_log_warn("io thread %u: connection from %s refused: %s", t->index, a, why);
        t->refused_logged_ms = now;
    }
    uv_close((uv_handle_t *)&c->tcp, conn_release);
}

void conn_accept(iothread *t, uv_stream_t *listener, int admin)
{
    conn *c = conn_new(t);
    uv_tcp_init(&t->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, conn_release);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            c->peer = UINT64_C(1) << 32 | ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr);
        } else if (ss.ss_family == AF_INET6) {
            const uint8_t *a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
            uint64_t p = 0;
            for (int i = 0; i < 8; i++) p = p << 8 | a[i];
            c->peer = p | UINT64_C(1) << 63;
        }
        c->trusted = net_cidr_match(t->cfg->trust, t->cfg->ntrust, (struct sockaddr *)&ss);
    }
    c->admin = admin != 0;
    const net_config *cfg = t->cfg;
    if (cfg->max_conns && metrics_get(M_CONNECTIONS) >= (int64_t)cfg->max_conns) {
        refuse(t, c, "--max-connections reached");
        return;
    }
    if (cfg->per_addr && c->peer && !c->trusted) {
        if (!counter_inc(cfg->per_addr, c->peer, cfg->max_per_addr)) {
            refuse(t, c, "too many connections from this address (--max-conns-per-address)");
            return;
        }
        c->counted_addr = 1;
    }
    c->t = t;
    c->proto = PROTO_HTTP;
    c->http = iy_calloc(1, sizeof *c->http);
    c->http->hp = http_parser_new(IY_HTTP_HEADER_MAX, IY_JSON_MAX);
    if (t->h->http_head) http_parser_set_head_stop(c->http->hp, 1);
    c->opened_ms = c->last_rx_ms = uv_now(&t->loop);
    if (cfg->tls && !c->admin) c->tls = tls_conn_new(cfg->tls);   /* --admin-listen stays plain */
    c->all_next = t->all;
    if (t->all) t->all->all_prev = c;
    t->all = c;
    metrics_add(M_CONNECTIONS, 1);
    t->accepted++;
    start_reading(c);
}

static void flush_list_del(conn *c)
{
    if (!c->in_flush_list) return;
    if (c->flush_prev) c->flush_prev->flush_next = c->flush_next;
    else c->t->flush_list = c->flush_next;
    if (c->flush_next) c->flush_next->flush_prev = c->flush_prev;
    c->flush_prev = c->flush_next = NULL;
    c->in_flush_list = 0;
}

static void flush_list_add(conn *c)
{
    if (c->in_flush_list) return;
    c->flush_prev = NULL;
    c->flush_next = c->t->flush_list;
    if (c->flush_next) c->flush_next->flush_prev = c;
    c->t->flush_list = c;
    c->in_flush_list = 1;
}

static void http_free(conn *c)
{
    if (!c->http) return;
    http_parser_free(c->http->hp);
    iy_free(c->http);
    c->http = NULL;
}

static void on_close(uv_handle_t *h)
{
    conn *c = h->data;
    flush_list_del(c);
    if (c->seq) {
        for (conn_held *x = c->seq->held, *n; x; x = n) {
            n = x->next;
            iy_free(x);
        }
        iy_free(c->seq->sending);
        iy_free(c->seq);
    }
    http_free(c);
    ws_reader_free(c->wr);
    tls_conn_free(c->tls);
    rest_free(c);
    /* Big output buffers freed: the sweep hands the memory back (malloc_trim). */
    if (c->out.cap > (1u << 20)) c->t->trim_pending = 1;
    iy_buf_free(&c->out);
    for (uint16_t i = 0; i < c->nsegs; i++) conn_shared_unref(c->segs[i].s);
    iy_free(c->segs);
    metrics_add(M_OUTPUT_BUFFERED, -(int64_t)c->out_counted);
    conn_release(h);
}

int64_t conn_wall_ms(conn *c, uint64_t loop_ms)
{
    return (int64_t)now_ms() - (int64_t)(uv_now(&c->t->loop) - loop_ms);
}

/* Leaves the user registry: no more deliveries to this connection. */
static void unregister(conn *c)
{
    if (!c->registered) return;
    iothread_user_del(c->t, c);
    c->registered = 0;
    c->t->h->unregister(c);
}

void conn_close(conn *c)
{
    /* A graceful close in progress (closing, handle still open) may become
     * immediate; a handle already closing is done. */
    if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
    if (c->http && c->http->sink) {   /* a streamed request or answer that will not finish */
        const net_sink *k = c->http->sink;
        c->http->sink = NULL;
        k->abort(c);
        c->http->stream = NULL;
    }
    if (c->http) c->http->drained = NULL;
    if (c->proto == PROTO_WS && iy_access_log_on()) {
        char a[48];
        net_addr_text(c->client, a, sizeof a);
        iy_access_ws(a, "close", c->ws_code ? c->ws_code : 1006,
                     (uv_now(&c->t->loop) - c->opened_ms) * 1000);
    }
    c->closing = 1;
    c->close_after_flush = 0;
    c->draining = 0;
    unregister(c);
    if (c->counted_addr) counter_dec(c->t->cfg->per_addr, c->peer);
    c->counted_addr = 0;
    if (c->http) {
        metrics_add(M_REQUEST_BUFFERED, -(int64_t)c->http->held_in);
        c->http->held_in = 0;
    }
    conn_unlist(c);
    if (c->all_prev) c->all_prev->all_next = c->all_next;
    else c->t->all = c->all_next;
    if (c->all_next) c->all_next->all_prev = c->all_prev;
    c->all_prev = c->all_next = NULL;
    flush_list_del(c);
    stop_reading(c);
    metrics_add(M_CONNECTIONS, -1);
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* Brings c's share of M_REQUEST_BUFFERED to what its parser holds now. */
static void account_held(conn *c)
{
    if (!c->http) return;
    size_t now = c->http->hp && !uv_is_closing((uv_handle_t *)&c->tcp) ? http_parser_buffered(c->http->hp) : 0;
    metrics_add(M_REQUEST_BUFFERED, (int64_t)now - (int64_t)c->http->held_in);
    c->http->held_in = now;
}

/* ---- output ---------------------------------------------------------- */

/* A uv_write in flight: the request and the bytes it writes (c->out's,
 * moved here), both freed when it completes. */
typedef struct conn_wr {
    uv_write_t req;
    iy_buf buf;
} conn_wr;

#define SEG_MAX 128     /* shared pieces queued (not in flight) per connection; more are copied */
#define SEG_MIN 128     /* a shared piece shorter than this is copied: cheaper than an iovec */

/* Output queued or in flight, shared pieces included (a write that went
 * out in part counts whole until it completes). */
static size_t queued(const conn *c)
{
    return c->out.len + (c->wr_async ? c->wr_async->buf.len : 0) + c->seg_bytes;
}

/* Brings c's share of M_OUTPUT_BUFFERED to what it has queued now. Done
 * at each flush and write completion, and on each write while one is in
 * flight (a reader that does not read): not per frame queued, which would
 * be an atomic add on a shared counter per delivery. */
static void account_out(conn *c)
{
    size_t now = queued(c);
    metrics_add(M_OUTPUT_BUFFERED, (int64_t)now - (int64_t)c->out_counted);
    if (!now) c->out_since_ms = 0;
    else if (!c->out_counted || now < c->out_counted || !c->out_since_ms)
        c->out_since_ms = uv_now(&c->t->loop);   /* began waiting, or the reader took some */
    c->out_counted = now;
}

/* A reader that does not keep up: 16 MiB queued, or, while all queues
 * together are over the budget, 256 KiB with nothing taken for 250 ms (a
 * big answer to a reader that reads is no reason: it drains). */
static int too_slow(const conn *c, uint64_t now)
{
    size_t q = queued(c);
    size_t budget = c->t->cfg->max_output;
    if (q > CONN_OUT_CAP) return 1;
    return budget && q > CONN_OUT_SLOW && c->out_since_ms && now - c->out_since_ms > CONN_OUT_SLOW_MS &&
           metrics_get(M_OUTPUT_BUFFERED) > (int64_t)budget;
}

static void drop_slow(conn *c)
{
    iy_log_warn("conn %u/%llu: %zu bytes queued, not read; dropping the slow reader", c->t->index,
           (unsigned long long)c->id, queued(c));
    metrics_add(M_SLOW_CLOSED, 1);
    conn_close(c);
}

/* Output was queued: flushed this loop turn, unless the reader is too slow
 * (the data is durable: a dropped client resyncs from its pos). */
static void queued_more(conn *c)
{
    if (c->writing) account_out(c);
    if (too_slow(c, uv_now(&c->t->loop))) {
        drop_slow(c);
        return;
    }
    flush_list_add(c);
}

void conn_write(conn *c, const void *p, size_t n)
{
    if (c->closing) return;
    iy_buf_append(&c->out, p, n);
    queued_more(c);
}

conn_shared *conn_shared_new(const void *p, size_t n)
{
    conn_shared *s = iy_malloc(sizeof *s + n);
    s->refs = 1;
    s->len = (uint32_t)n;
    if (p && n) memcpy(s->data, p, n);
    return s;
}

void conn_shared_unref(conn_shared *s)
{
    if (s && --s->refs == 0) iy_free(s);
}

void conn_write_shared(conn *c, conn_shared *s, const char *p, size_t n)
{
    if (c->closing || !n) return;
    if (c->tls || n < SEG_MIN || c->nsegs - c->nsegs_in >= SEG_MAX) {
        conn_write(c, p, n);
        return;
    }
    if (c->nsegs == c->segcap) {
        c->segcap = c->segcap ? (uint16_t)(c->segcap * 2) : 8;
        c->segs = iy_realloc(c->segs, c->segcap * sizeof *c->segs);
    }
    s->refs++;
    c->segs[c->nsegs++] = (conn_seg){ s, p, (uint32_t)n, (uint32_t)c->out.len };
    c->seg_bytes += (uint32_t)n;
    queued_more(c);
}

/* Drops the first n segs (written), moving the rest down. */
static void segs_written(conn *c, uint16_t n)
{
    for (uint16_t i = 0; i < n; i++) {
        c->seg_bytes -= c->segs[i].len;
        conn_shared_unref(c->segs[i].s);
    }
    c->nsegs = (uint16_t)(c->nsegs - n);
    if (c->nsegs) memmove(c->segs, c->segs + n, c->nsegs * sizeof *c->segs);
}

void conn_ws_send(conn *c, const char *json, size_t n)
{
    uint8_t head[10];
    size_t hn = ws_frame_header(head, WS_OP_TEXT, n);
    conn_write(c, head, hn);
    conn_write(c, json, n);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    iy_free(req);
}

static void begin_drain(conn *c)
{
    if (c->t->exiting) { /* shutting down: no time to wait for the peer */
        conn_close(c);
        return;
    }
    /* The close frame is out: half-close and read until the peer closes, so
     * that unread input does not turn our close into a reset that would
     * destroy the close frame in flight. */
    c->close_after_flush = 0;
    c->draining = 1;
    c->drain_since_ms = uv_now(&c->t->loop);
    uv_shutdown_t *req = iy_calloc(1, sizeof *req);
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        iy_free(req);
        conn_close(c);
        return;
    }
    c->paused = 0;
    start_reading(c);
}

/* All output written: the one waiting for that goes on. */
static void call_drained(conn *c)
{
    if (!c->http || !c->http->drained || c->out.len || c->nsegs || c->writing || c->closing) return;
    void (*fn)(conn *) = c->http->drained;
    c->http->drained = NULL;
    fn(c);
}

void conn_on_drained(conn *c, void (*fn)(conn *c))
{
    if (!c->http) return;   /* HTTP answers only (net.h) */
    c->http->drained = fn;
    call_drained(c);
}

static void on_write(uv_write_t *req, int status)
{
    conn *c = req->data;
    conn_wr *w = c->wr_async;
    if (w->buf.cap > (1u << 20)) c->t->trim_pending = 1;
    iy_buf_free(&w->buf);
    iy_free(w);
    c->wr_async = NULL;
    c->writing = 0;
    segs_written(c, c->nsegs_in);
    c->nsegs_in = 0;
    account_out(c);
    if (status < 0) {
        if (status != UV_ECANCELED) conn_close(c);
        return;
    }
    if (c->out.len || c->nsegs || c->close_after_flush || (c->tls && tls_pending(c->tls))) {
        if (c->t->exiting) flush_one(c); /* the flusher is gone */
        else flush_list_add(c);
    } else {
        call_drained(c);
    }
}

static void flush_one(conn *c)
{
    if (c->writing || (c->closing && !c->close_after_flush)) return;
    /* TLS: the plaintext queued becomes the ciphertext to write, after the
     * handshake's or alerts' bytes waiting (and a close_notify last). */
    if (c->tls) tls_seal(c->tls, &c->out, c->close_after_flush);   /* (TLS never has segs) */
    if (c->out.len || c->nsegs) {
        /* Everything queued in one writev: c->out's bytes with the shared
         * pieces between them where they were queued. */
        uv_buf_t v[2 * SEG_MAX + 1];
        unsigned nv = 0;
        size_t at = 0, total = c->out.len + c->seg_bytes;
        for (uint16_t i = 0; i < c->nsegs; i++) {
            const conn_seg *g = &c->segs[i];
            if (g->at > at) v[nv++] = uv_buf_init(c->out.data + at, g->at - (unsigned)at);
            at = g->at;
            v[nv++] = uv_buf_init((char *)g->p, g->len);
        }
        if (c->out.len > at) v[nv++] = uv_buf_init(c->out.data + at, (unsigned)(c->out.len - at));
        int n = uv_try_write((uv_stream_t *)&c->tcp, v, nv);
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        if (n < 0) n = 0;
        if ((size_t)n < total) {
            /* The rest goes through one uv_write (which copies the iovecs);
             * the buffer and the pieces stay alive until it completes, and
             * new output meanwhile queues in c->out. */
            unsigned first = 0;
            size_t done = (size_t)n;
            while (done >= v[first].len) done -= v[first++].len;
            v[first].base += done;
            v[first].len -= (unsigned)done;
            conn_wr *w = iy_malloc(sizeof *w);
            w->buf = c->out;
            c->out = (iy_buf){ 0 };
            w->req.data = c;
            c->nsegs_in = c->nsegs;
            if (uv_write(&w->req, (uv_stream_t *)&c->tcp, v + first, nv - first, on_write) != 0) {
                c->out = w->buf;   /* still c's: freed with it */
                iy_free(w);
                conn_close(c);
                return;
            }
            c->wr_async = w;
            c->writing = 1;
            account_out(c);
            return;
        }
        iy_buf_reset(&c->out);
        segs_written(c, c->nsegs);
        account_out(c);
        if (c->out.cap > (64u << 10)) iy_buf_free(&c->out);
    }
    if (c->close_after_flush) begin_drain(c);
    else call_drained(c);
}

void conn_flush_all(iothread *t)
{
    while (t->flush_list) {
        conn *c = t->flush_list;
        flush_list_del(c);
        flush_one(c);
    }
}

/* ---- closing gracefully ------------------------------------------------ */

void conn_ws_close(conn *c, uint16_t code, const char *reason)
{
    if (c->closing) return;
    unregister(c);
    c->ws_code = code;
    iy_buf frame = { 0 };
    ws_close_append(&frame, code, reason);
    conn_write(c, frame.data, frame.len);
    iy_buf_free(&frame);
    if (c->closing) return; /* conn_write dropped it */
    c->closing = 1;
    c->close_after_flush = 1;
    c->paused = 1;
    stop_reading(c);
    flush_list_add(c);
}

void conn_pause(conn *c)
{
    c->paused = 1;
    stop_reading(c);
}

void conn_resume(conn *c)
{
    if (c->closing) return;
    c->paused = 0;
    if (c->rest && c->rest->len) {
        iy_buf *pending = c->rest;
        c->rest = NULL;
        conn_input(c, pending->data, pending->len);
        iy_buf_free(pending);
        iy_free(pending);
    }
    if (!c->paused && !c->closing) start_reading(c);
}

/* ---- HTTP responses ---------------------------------------------------- */

void conn_http_respond(conn *c, int status, const char *ctype, const char *body, size_t n)
{
    conn_http_respond_x(c, status, ctype, NULL, body, n);
}

/* CORS (--cors-origin): the Origin of a request, if it is one of the
 * configured origins (exact, case-sensitive as browsers send it) or the list
 * has "*", is remembered until the answer is written. */
static void cors_pick(conn *c, iy_str origin)
{
    const char *p = c->t->cfg->cors_origins;
    c->http->cors = NULL;
    c->http->cors_len = 0;
    if (!p || !p[0] || !origin.len) return;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ') e++;
        size_t n = (size_t)(e - p);
        if ((n == 1 && *p == '*') || (n == origin.len && n && memcmp(p, origin.ptr, n) == 0)) {
            c->http->cors = p;
            c->http->cors_len = (uint16_t)n;
            return;
        }
        p = e;
    }
}

/* The head of an answer: the caller's extra headers, then CORS's. */
static void write_head(conn *c, int status, const char *ctype, const char *extra, uint64_t len)
{
    iy_buf head = { 0 }, x = { 0 };
    if (c->t->cfg->cors_origins && c->t->cfg->cors_origins[0]) {
        if (extra) iy_buf_append_str(&x, extra);
        /* Retry-After and Content-Disposition are not CORS-safelisted: a page
         * could not read them (a rate limit's wait, a download's name). */
        if (c->http->cors)
            iy_buf_appendf(&x, "Access-Control-Allow-Origin: %.*s\r\nAccess-Control-Expose-Headers: Retry-After, "
                               "Content-Disposition\r\n", (int)c->http->cors_len, c->http->cors);
        iy_buf_append_str(&x, "Vary: Origin\r\n");
        extra = iy_buf_cstr(&x);
    }
    http_response_head(&head, status, ctype, (size_t)len, c->keep_alive, extra);
    c->http->resp_status = (uint16_t)status;
    c->http->resp_bytes = head.len + (c->head_only ? 0 : len);
    conn_write(c, head.data, head.len);
    iy_buf_free(&head);
    iy_buf_free(&x);
}

void conn_http_respond_x(conn *c, int status, const char *ctype, const char *extra, const char *body,
                         size_t n)
{
    write_head(c, status, ctype, extra, n);
    if (!c->head_only) conn_write(c, body, n);   /* HEAD: the same head, Content-Length included */
    conn_http_done(c);
}

void conn_http_respond_head(conn *c, int status, const char *ctype, const char *extra, uint64_t len,
                            const net_sink *sink, void *stream)
{
    write_head(c, status, ctype, extra, len);
    c->http->sink = sink;
    c->http->stream = stream;
}

int conn_stream_body(conn *c, uint64_t max, const net_sink *sink, void *stream)
{
    const http_request *head = http_parser_head(c->http->hp);
    int cont = head && iy_str_ieq(head->expect, "100-continue");
    int rc = http_parser_stream_body(c->http->hp, max);
    if (rc) {
        http_fail(c, 413, "too_large", "the body is larger than allowed");
        return rc;
    }
    /* A client that waits for it before sending a big body (curl does,
     * for a second) may send it now. */
    if (cont) conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->http->sink = sink;
    c->http->stream = stream;
    return 0;
}

/* The answered request in the metrics and the access log. */
static void observe_request(conn *c)
{
    if (!c->http->req_t0_ns) return;
    uint64_t ns = mono_ns() - c->http->req_t0_ns;
    c->http->req_t0_ns = 0;
    metrics_http(c->http->route, c->http->req_method, c->http->resp_status, ns);
    if (iy_access_log_on()) {
        char a[48];
        net_addr_text(c->client, a, sizeof a);
        iy_access_http(a, metrics_method_name(c->http->req_method), metrics_route_name(c->http->route), c->http->resp_status,
                       c->http->resp_bytes, ns / 1000);
    }
}

static int method_index(int m)
{
    switch (m) {
    case HTTP_GET: return MM_GET;
    case HTTP_POST: return MM_POST;
    case HTTP_PUT: return MM_PUT;
    case HTTP_PATCH: return MM_PATCH;
    case HTTP_DELETE: return MM_DELETE;
    default: return MM_OTHER;
    }
}

/* A request (complete, or its head) begins to be answered. */
static void request_begins(conn *c, const http_request *req)
{
    c->http->req_t0_ns = mono_ns();
    c->http->req_method = (uint8_t)method_index(req->method);
    c->http->route = 0;
    c->http->resp_status = 0;
    c->http->resp_bytes = 0;
    c->client = conn_client(c, req);
}

void conn_http_done(conn *c)
{
    observe_request(c);
    c->head_seen = 0;
    if (c->http->sink) {   /* answered (an error) while a stream was still going: it ends here */
        const net_sink *k = c->http->sink;
        c->http->sink = NULL;
        k->abort(c);
    }
    c->http->stream = NULL;
    c->http_busy = 0;
    c->http_waiting = 0;
    c->head_only = 0;
    c->http->cors = NULL;
    c->http->cors_len = 0;
    if (c->http->hp) http_parser_next(c->http->hp);
    account_held(c);
    /* Keep-alive idleness counts from the end of the answer, not from the
     * request: an answer that took longer than --keepalive-timeout (a long
     * poll, a login queued behind many hashes) must not have its connection
     * closed by the next sweep while the client sends its next request on it. */
    c->last_rx_ms = uv_now(&c->t->loop);
    if (c->closing) return;
    if (!c->keep_alive) {
        c->closing = 1;
        c->close_after_flush = 1;
        stop_reading(c);
        flush_list_add(c);
        return;
    }
    if (c->paused) conn_resume(c);
}

void conn_http_error(conn *c, int err, const char *message)
{
    iy_buf body = { 0 };
    proto_write_http_error(&body, iy_err_code(err), message);
    conn_http_respond(c, iy_err_http_status(err), "application/json", body.data, body.len);
    iy_buf_free(&body);
}

void conn_http_error_retry(conn *c, int err, const char *message, int64_t retry_ms)
{
    if (err == IY_ERATE) metrics_add(M_RATE_LIMITED, 1);
    char extra[40];
    snprintf(extra, sizeof extra, "Retry-After: %lld\r\n", (long long)((retry_ms + 999) / 1000));
    iy_buf body = { 0 };
    proto_write_http_error(&body, iy_err_code(err), message);
    conn_http_respond_x(c, iy_err_http_status(err), "application/json", extra, body.data, body.len);
    iy_buf_free(&body);
}

void net_addr_text(uint64_t key, char *out, size_t cap)
{
    if (key >> 63) snprintf(out, cap, "ipv6-prefix-%016llx", (unsigned long long)key);
    else if (key) snprintf(out, cap, "%u.%u.%u.%u", (unsigned)(key >> 24 & 255), (unsigned)(key >> 16 & 255),
                           (unsigned)(key >> 8 & 255), (unsigned)(key & 255));
    else snprintf(out, cap, "unknown");
}

/* The key of an IPv4 or IPv6 address in text, or 0. */
static uint64_t addr_key(const char *p, size_t n)
{
    char tmp[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof tmp) return 0;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, tmp, &a4) == 1) return UINT64_C(1) << 32 | ntohl(a4.s_addr);
    if (inet_pton(AF_INET6, tmp, &a6) != 1) return 0;
    uint64_t k = 0;
    for (int i = 0; i < 8; i++) k = k << 8 | a6.s6_addr[i];
    return k | UINT64_C(1) << 63;
}

uint64_t conn_client(const conn *c, const http_request *req)
{
    if (!c->trusted || !req || !req->forwarded_for.len) return c->peer;
    const char *s = req->forwarded_for.ptr;
    size_t n = req->forwarded_for.len, i = n;
    while (i > 0 && s[i - 1] != ',') i--;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    uint64_t k = addr_key(s + i, n - i);
    return k ? k : c->peer;
}

static void http_fail(conn *c, int status, const char *code, const char *message)
{
    if (!c->http->req_t0_ns) {   /* no request parsed: counted as "other", from the peer's address */
        c->http->req_t0_ns = mono_ns();
        c->http->req_method = MM_OTHER;
        c->http->route = 0;
        c->client = c->peer;
    }
    iy_buf body = { 0 };
    proto_write_http_error(&body, code, message);
    c->keep_alive = 0;
    conn_http_respond(c, status, "application/json", body.data, body.len);
    iy_buf_free(&body);
}

/* ---- input ------------------------------------------------------------- */


static int upgrade(conn *c, const http_request *req)
{
    char accept[29];
    if (!iy_str_eq(req->ws_version, "13")) {
        const char *r = "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
                        "Content-Length: 0\r\nConnection: close\r\n\r\n";
        conn_write(c, r, strlen(r));
        c->http->resp_status = 426;
        c->http->resp_bytes = strlen(r);
        c->http->route = (uint8_t)c->t->cfg->ws_route;
        observe_request(c);
        return IY_EINVAL;
    }
    if (ws_accept_key(req->ws_key.ptr, req->ws_key.len, accept) != 0) {
        http_fail(c, 400, "bad_request", "bad Sec-WebSocket-Key");
        return IY_EINVAL;
    }
    iy_buf r = { 0 };
    iy_buf_appendf(&r, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    conn_write(c, r.data, r.len);
    c->http->resp_bytes = r.len;
    iy_buf_free(&r);
    /* The HTTP side (~1.2 KB) goes: holes between live connections after a
     * wave of upgrades, which the sweep's malloc_trim gives back (~60 bytes
     * per idle connection at 15,000). */
    iothread_freed(c->t, http_parser_mem(c->http->hp) + sizeof *c->http);
    http_parser_free(c->http->hp);
    c->http->hp = NULL;
    account_held(c);
    c->proto = PROTO_WS;
    c->ws_state = WS_NEW;   /* c->wr: the thread's spare, for the first frame (ws_input) */
    c->opened_ms = uv_now(&c->t->loop);
    /* The upgrade is an answered request (101) of its own route. */
    c->http->resp_status = 101;
    c->http->route = (uint8_t)c->t->cfg->ws_route;
    observe_request(c);
    http_free(c);   /* nothing HTTP is left: a WebSocket does not carry it */
    if (iy_access_log_on()) {
        char a[48];
        net_addr_text(c->client, a, sizeof a);
        iy_access_ws(a, "open", 0, 0);
    }
    return 0;
}

/* Feeds HTTP bytes; returns how many were used. Stops at a pause. */
static size_t http_input(conn *c, char *data, size_t len)
{
    size_t used = 0;
    while (used < len && !c->paused && !c->closing && c->proto == PROTO_HTTP) {
        size_t n = 0;
        const http_request *req = NULL;
        if (!c->http->req_since_ms) c->http->req_since_ms = uv_now(&c->t->loop);   /* a request begins */
        int rc = http_parser_feed(c->http->hp, data + used, len - used, &n, &req);
        used += n;
        account_held(c);
        if (rc != 0) {
            int st = http_parser_error_status(c->http->hp);
            http_fail(c, st, st == 400 ? "bad_request" : "too_large",
                      st == 400 ? "malformed HTTP request" : "request too large");
            return len;
        }
        /* Unfinished requests share one memory budget: past it, the big
         * ones are refused (the small ones cannot add up to much). */
        size_t cl;
        const char *chunk = http_parser_body_chunk(c->http->hp, &cl);
        if (chunk && c->http->sink && c->http->sink->chunk) c->http->sink->chunk(c, chunk, cl);
        if (c->closing) return len;
        if (!req) {
            const http_request *head = http_parser_head(c->http->hp);
            if (head && !c->head_seen) {
                c->head_seen = 1;
                request_begins(c, head);
                cors_pick(c, head->origin);
                c->t->h->http_head(c, head);
                if (c->closing) return len;
                if (!c->http->sink) account_held(c);
                continue;   /* the body follows (held, or streamed to the sink) */
            }
        }
        if (!req && c->http->held_in > HTTP_SMALL_REQUEST &&
            metrics_get(M_REQUEST_BUFFERED) > (int64_t)c->t->cfg->max_buffered) {
            metrics_add(M_OVER_BUDGET, 1);
            http_fail(c, 503, "unavailable", "server busy: too many unfinished requests, retry later");
            return len;
        }
        if (!req) break;
        c->http->req_since_ms = 0;
        metrics_add(M_HTTP_REQUESTS, 1);
        if (!c->head_seen) request_begins(c, req);
        c->keep_alive = req->keep_alive != 0;
        if (req->websocket && iy_str_eq(req->path, "/v1/ws")) {
            if (upgrade(c, req) != 0) {
                c->closing = 1;
                c->close_after_flush = 1;
                stop_reading(c);
                flush_list_add(c);
                return len;
            }
            break; /* the rest is WebSocket */
        }
        c->head_only = req->method == HTTP_HEAD;
        cors_pick(c, req->origin);
        c->t->h->http(c, req);
    }
    return used;
}

/* A connection without a reader (an idle one gave its own back) borrows the
 * thread's spare for this input and gives it back if the input ended
 * between messages: an idle connection's heartbeat every 5 s allocates
 * nothing (a reader made and freed per heartbeat left holes between the
 * connections: 50-100 bytes each at 15,000, by when RSS was read). */
static void ws_reader_borrow(conn *c)
{
    iothread *t = c->t;
    c->wr = t->spare_wr ? t->spare_wr : ws_reader_new(IY_JSON_MAX);
    t->spare_wr = NULL;
}

static void ws_reader_return(conn *c)
{
    iothread *t = c->t;
    if (!c->wr || !ws_reader_idle(c->wr)) return;   /* mid-message: it stays the connection's */
    if (t->spare_wr) ws_reader_free(c->wr);        /* another input gave one back meanwhile */
    else t->spare_wr = c->wr;
    c->wr = NULL;
}

static size_t ws_input_frames(conn *c, char *data, size_t len);

static size_t ws_input(conn *c, char *data, size_t len)
{
    if (c->wr) return ws_input_frames(c, data, len);
    ws_reader_borrow(c);
    size_t used = ws_input_frames(c, data, len);
    ws_reader_return(c);
    return used;
}

static size_t ws_input_frames(conn *c, char *data, size_t len)
{
    size_t used = 0;
    while (used < len && !c->paused && !c->closing) {
        size_t n = 0;
        ws_event ev;
        int rc = ws_reader_feed(c->wr, (uint8_t *)data + used, len - used, &n, &ev);
        used += n;
        if (rc != 0) {
            uint16_t code = ws_close_code_for(rc);
            iy_log_info("conn %u/%llu: WebSocket closed with %u (%s)", c->t->index, (unsigned long long)c->id,
                   code, code == 1007 ? "invalid UTF-8" : code == 1009 ? "message too big" : "protocol error");
            conn_ws_close(c, code, code == 1007 ? "invalid UTF-8" : code == 1009 ? "message too big"
                                                                               : "protocol error");
            return len;
        }
        switch (ev.kind) {
        case WS_NONE:
            return used;
        case WS_TEXT:
            metrics_add(M_WS_FRAMES_IN, 1);
            c->t->h->ws_text(c, (const char *)ev.data, ev.len);
            break;
        case WS_BINARY:
            conn_ws_close(c, 1003, "binary frames are not supported");
            return len;
        case WS_PING: {
            iy_buf f = { 0 };
            ws_frame_append(&f, WS_OP_PONG, ev.data, ev.len);
            conn_write(c, f.data, f.len);
            iy_buf_free(&f);
            break;
        }
        case WS_PONG:
            break;
        case WS_CLOSE:
            c->clean_close = 1;
            /* Echo the code (RFC 6455 5.5.1); a close without code gets 1000. */
            conn_ws_close(c, ev.close_code == 1005 ? 1000 : ev.close_code, NULL);
            return len;
        }
    }
    return used;
}

static void conn_input(conn *c, char *data, size_t len)
{
    size_t used = 0;
    while (used < len && !c->closing) {
        if (c->paused) break;
        if (c->proto == PROTO_HTTP) used += http_input(c, data + used, len - used);
        else used += ws_input(c, data + used, len - used);
    }
    if (used < len && !c->closing) rest_append(c, data + used, len - used);
}

/* A TLS connection that failed: the peer's close_notify closes it at once;
 * a failed handshake or a broken record is counted and logged (once a
 * second per thread), and its alert goes out before the socket closes. */
static void tls_fail(conn *c, int rc)
{
    if (rc == IY_EIO || tls_established(c->tls)) {
        if (rc != IY_EIO) metrics_add(M_TLS_FAILED, 1);
        conn_close(c);
        return;
    }
    metrics_add(M_TLS_FAILED, 1);
    iothread *t = c->t;
    uint64_t now = uv_now(&t->loop);
    if (now - t->tls_logged_ms >= 1000) {
        char a[48];
        net_addr_text(c->peer, a, sizeof a);
        iy_log_warn("io thread %u: TLS handshake with %s failed: %s", t->index, a, tls_error(c->tls));
        t->tls_logged_ms = now;
    }
    c->closing = 1;
    c->close_after_flush = 1;
    stop_reading(c);
    flush_list_add(c);
}

/* TLS: ciphertext in; plaintext out to the codecs, or to c->rest while
 * paused (all of it: nothing may wait inside OpenSSL for a read that will
 * not come). The thread's read buffer is reused for the plaintext: the
 * ciphertext was copied into the read BIO. */
static void tls_input(conn *c, const char *data, size_t len)
{
    tls_feed(c->tls, data, len);
    char *plain = c->t->readbuf;
    for (;;) {
        int n = tls_read(c->tls, plain, READ_BUF_SIZE);
        if (n == 0) break;
        if (n < 0) {
            tls_fail(c, n);
            return;
        }
        if (c->paused) {
            rest_append(c, plain, (size_t)n);
            stop_reading(c);
            continue;
        }
        conn_input(c, plain, (size_t)n);
        if (c->closing) break;
    }
    /* Handshake messages, tickets, alerts. */
    if (!uv_is_closing((uv_handle_t *)&c->tcp) && tls_pending(c->tls)) flush_list_add(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0) return;
    c->last_rx_ms = uv_now(&c->t->loop);
    if (c->draining) return; /* discard until the peer closes */
    if (c->tls) {
        tls_input(c, buf->base, (size_t)nread);
        return;
    }
    if (c->paused) {
        rest_append(c, buf->base, (size_t)nread);
        stop_reading(c);
        return;
    }
    conn_input(c, buf->base, (size_t)nread);
}

/* An idle connection keeps no buffers: tens of thousands of them would
 * each hold a few hundred bytes of output and frame buffers they no
 * longer need. Freed at every sweep (a busy connection allocates its
 * buffer again: a few times a second, nothing next to its writes); freed
 * soon, so that a wave of new connections reuses them instead of growing
 * the heap around them. */
static void trim(conn *c)
{
    if (c->writing || c->closing) return;
    size_t freed = 0;
    if (!c->out.len && c->out.cap) {
        freed += c->out.cap;
        iy_buf_free(&c->out);
    }
    if (!c->nsegs && c->segs) {
        freed += c->segcap * sizeof *c->segs;
        iy_free(c->segs);
        c->segs = NULL;
        c->segcap = 0;
    }
    if (c->rest && !c->rest->len) {
        freed += sizeof *c->rest + c->rest->cap;
        rest_free(c);
    }
    if (c->wr && ws_reader_idle(c->wr)) {   /* made again by the next byte (ws_input) */
        freed += ws_reader_mem(c->wr);
        ws_reader_free(c->wr);
        c->wr = NULL;
    }
    iothread_freed(c->t, freed);
}

/* Timeouts of the transport; the service's sweep (life signs, long polls)
 * follows (net_handlers.sweep). Each connection it ends counts against
 * the budget (net.h). */
int conn_sweep(iothread *t, uint64_t now, int budget)
{
    const net_config *cfg = t->cfg;
    int ended = 0;
    for (conn *c = t->all, *next; c; c = next) {
        next = c->all_next;
        if (ended >= budget) return 1;
        trim(c);
        ended++;
        if (c->draining) {
            if (now - c->drain_since_ms > DRAIN_MS) {
                conn_close(c);
                continue;
            }
        } else if (c->out_since_ms && too_slow(c, now)) {
            drop_slow(c);   /* frees the budget even if nothing more is written to it */
            continue;
        } else if (c->closing) {
            /* nothing: it is on its way out */
        } else if (c->tls && !tls_established(c->tls)) {
            /* A handshake has the time of a request head to finish. */
            if (now - c->opened_ms > (uint64_t)cfg->request_timeout_s * 1000) {
                metrics_add(M_TLS_FAILED, 1);
                conn_close(c);
                continue;
            }
        } else if (c->proto == PROTO_WS && c->ws_state != WS_READY) {
            if (now - c->opened_ms > (uint64_t)cfg->auth_timeout_s * 1000) {
                conn_ws_close(c, 1008, "authentication timeout");
                continue;
            }
        } else if (c->proto == PROTO_WS) {
            if (now - c->last_rx_ms > (uint64_t)cfg->idle_timeout_s * 1000) {
                conn_ws_close(c, 1001, "idle timeout");
                continue;
            }
        } else if (c->http && c->http->req_since_ms && !c->http_busy && !c->http_waiting) {
            /* A request being received: its head within the deadline, its
             * declared body at the minimum rate on top (slow senders hold a
             * connection and a buffer; they must finish or go). */
            uint64_t limit = (uint64_t)cfg->request_timeout_s * 1000;
            if (cfg->min_body_rate) limit += (uint64_t)http_parser_declared(c->http->hp) * 1000 / cfg->min_body_rate;
            if (now - c->http->req_since_ms > limit) {
                metrics_add(M_REQUEST_TIMEOUTS, 1);
                http_fail(c, 408, "bad_request", "request not received in time");
                continue;
            }
        } else if (!c->http_busy && !c->http_waiting &&
                   now - c->last_rx_ms > (uint64_t)cfg->keepalive_timeout_s * 1000) {
            conn_close(c);
            continue;
        }
        ended--;   /* nothing ended: it does not count */
    }
    return 0;
}
