/* net.h — the transport: I/O threads, their event loops and connections,
 * HTTP/1.1 and WebSocket plumbing, batched output. It knows nothing of
 * chat: complete HTTP requests and WebSocket text frames go up to the
 * service through net_handlers; the service answers with conn_*().
 *
 * Threads (see docs/ARCHITECTURE.md):
 *   - N I/O threads (iothread.c), each with its own libuv loop, its own
 *     SO_REUSEPORT listening socket and the connections it accepted; a
 *     connection never moves and only its thread touches it.
 *   - Other threads reach an I/O thread only through its inbox:
 *     iothread_post() pushes a task and wakes the loop (uv_async_send).
 *
 * Connection lifecycle (conn.c):
 *
 *    accept ──> HTTP ──(GET /v1/ws + Upgrade)──> WS_NEW ──auth──> WS_AUTHING ──ok──> WS_READY
 *                │ ^                               │                  │ bad token
 *                v │ response written              │ auth timeout     v
 *              HTTP busy (a job in flight,         └──────────────> closing ──> freed in the
 *              or long poll waiting)                                 close callback
 *
 *  - HTTP: one request at a time; while it is in flight, input is paused and
 *    unparsed bytes wait in c->rest.
 *  - Input is also paused while a WebSocket authenticates and while too many
 *    of its requests are in flight (back-pressure, no unbounded queue).
 *  - Output is appended to c->out, with references to shared buffers
 *    between its bytes (conn_seg), and flushed once per loop turn (prepare
 *    handle) in one writev, at most one uv_write in flight. A connection whose queued
 *    output passes CONN_OUT_CAP is dropped: everything it missed is durable
 *    and the client catches up with sync.
 *  - TLS (--tls-cert, tls.h) sits between the socket and the codecs: reads
 *    are decrypted before conn_input, c->out holds plaintext until the flush
 *    seals it into ciphertext. The handshake must finish within
 *    --request-timeout; a failed one sends its alert and closes.
 *  - A connection is never freed inside its own callbacks: conn_close()
 *    unregisters it and calls uv_close(); the memory goes in the close
 *    callback. Jobs name their connection by (thread, id), never by pointer.
 *  - Registered: the service put the connection under its user
 *    (iothread_user_add) to receive deliveries; closing unregisters it and
 *    tells the service (net_handlers.unregister). */
#ifndef IY_NET_H
#define IY_NET_H
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include "../base/buf.h"
#include "../base/u64map.h"
#include "../codec/http.h"
#include "../codec/ws.h"
#include "../base/limits.h"

#define CONN_OUT_CAP (16u << 20)        /* queued output past which a slow reader is dropped */
#define CONN_OUT_SLOW (256u << 10)      /* ... or past this, not draining for CONN_OUT_SLOW_MS, */
#define CONN_OUT_SLOW_MS 250            /* while all queues together pass max_output */
#define CONN_MAX_INFLIGHT 128           /* WebSocket requests in flight before input pauses */
#define READ_BUF_SIZE (64u << 10)
#define HTTP_SMALL_REQUEST (16u << 10)  /* an unfinished request this small is never refused for memory */
#define EXIT_GRACE_MS 1000              /* THREAD_EXIT: a close frame's time to leave before the socket goes */

typedef struct iothread iothread;
typedef struct conn_block conn_block;
typedef struct conn conn;
typedef struct net_config net_config;

/* A streamed request body's receiver, or a streamed answer's (chunk
 * NULL): the service's hooks for one request. */
typedef struct net_sink {
    /* Body bytes as they arrive (valid during the call). The sink copies
     * what it keeps; it may conn_pause(c) until it has written them, and
     * conn_resume(c) then. */
    void (*chunk)(conn *c, const char *data, size_t len);
    /* The connection is closing before the request was answered (after
     * this, c is gone: the sink drops its pointer). */
    void (*abort)(conn *c);
} net_sink;

#define NET_MAX_LISTEN 16             /* addresses served (--listen, --admin-listen, resolved) */
#define NET_MAX_TRUST 8               /* --trust-proxy networks */

/* One address to serve on: every I/O thread listens on each. */
typedef struct net_listen {
    struct sockaddr_storage sa;
    socklen_t len;
    int admin;                  /* --admin-listen: its connections are marked admin */
    char text[80];              /* "127.0.0.1:8080", "[::1]:8080" (logs) */
} net_listen;

/* A network: --trust-proxy's proxies. */
typedef struct net_cidr {
    int family;                 /* AF_INET or AF_INET6 */
    uint8_t addr[16];           /* network bytes, masked */
    int bits;
} net_cidr;

/* "A.B.C.D[/N]" or "IPV6[/N]" -> *out. 0, or IY_EINVAL. */
int net_parse_cidr(const char *text, net_cidr *out);
/* 1 if the address (AF_INET/AF_INET6 sockaddr) is in one of the networks. */
int net_cidr_match(const net_cidr *v, unsigned n, const struct sockaddr *sa);
/* "HOST:PORT" or "[IPV6]:PORT" (HOST a name, an IPv4 or IPv6 address, or
 * empty for every address) -> host and port. 0, or IY_EINVAL. */
int net_split_hostport(const char *text, char *host, size_t hostcap, int *port);
/* Resolves "HOST:PORT" and appends every address it names (a name such as
 * localhost may name 127.0.0.1 and ::1) to cfg->listen, skipping ones
 * already there. 0, or IY_EINVAL with why in err. */
int net_add_listen(net_config *cfg, const char *hostport, int admin, char *err, size_t errcap);

/* HOST:PORT as a URL's authority: [::1]:8080 for IPv6; every-interface
 * hosts (empty, 0.0.0.0, ::) as loopback. */
void net_url_host(const char *host, int port, char *out, size_t cap);

/* What the transport needs to know. */
struct net_config {
    char host[64];              /* the first --listen's host and port (URLs of last resort) */
    int port;
    net_listen listen[NET_MAX_LISTEN];
    unsigned nlisten;
    int auth_timeout_s;         /* an unauthenticated WebSocket is closed (1008) after this */
    int idle_timeout_s;         /* a silent WebSocket is closed (1001) after this */
    net_cidr trust[NET_MAX_TRUST];    /* --trust-proxy networks */
    unsigned ntrust;
    uint32_t max_conns;         /* open connections past which a new one is closed at once */
    uint32_t max_per_addr;      /* per client address (0: no cap); a trusted proxy is exempt */
    struct counter *per_addr;   /* live connections per address (NULL: no per-address cap) */
    int request_timeout_s;      /* an HTTP request's head must arrive within this, ... */
    uint32_t min_body_rate;     /* ... its declared body at least this fast (bytes/s) */
    int keepalive_timeout_s;    /* an HTTP connection idle between requests is closed after this */
    size_t max_buffered;        /* bytes of unfinished requests held, all connections together */
    size_t max_output;          /* bytes queued for sockets, all together: past it, slow readers go */
    unsigned ws_route;          /* the route number of GET /v1/ws (metrics_http: the upgrade's 101) */
    int admin_listen_set;       /* an admin listener exists: /metrics only there (conn.admin) */
    struct tls_server *tls;     /* --tls-cert: every connection speaks TLS (tls.h); NULL: plain */
    const char *cors_origins;   /* --cors-origin: origins allowed cross-origin, comma-separated, or "*"; "" : CORS off */
};

/* The service above the transport. Every handler runs on the connection's
 * I/O thread. */
typedef struct net_handlers {
    void (*http)(conn *c, const http_request *req);        /* a request (not the ws upgrade) */
    /* The head of a request with a body, before the body: the service may
     * take the body as a stream (conn_stream_body) or do nothing (it is held
     * as usual and comes whole to `http`). NULL: always held. */
    void (*http_head)(conn *c, const http_request *head);
    void (*ws_text)(conn *c, const char *data, size_t len); /* a complete text message */
    void (*unregister)(conn *c);                           /* a registered connection leaves */
    void (*sweep)(iothread *t, uint64_t now);              /* every 250 ms (loop ms) */
    void (*drain)(conn *c);                                /* THREAD_DRAIN: move it elsewhere */
} net_handlers;

/* A task in an I/O thread's inbox: fn(t, arg) runs on that thread. */
typedef void (*iothread_fn)(iothread *t, void *arg);

/* Control words: stop accepting; drain (stop accepting, and hand every
 * connection to net_handlers.drain: the service closes WebSockets with 1012
 * "service restart" once their requests are answered, so their clients
 * move to another node at once); exit (close everything, end the loop). */
enum { THREAD_STOP_ACCEPT = 1, THREAD_EXIT = 2, THREAD_DRAIN = 3 };

struct iothread {
    unsigned index;
    const net_config *cfg;
    const net_handlers *h;
    void *svc;                  /* the service's state, for its handlers */
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_tcp_t listeners[NET_MAX_LISTEN];   /* one per cfg->listen */
    uv_prepare_t flusher;
    uv_timer_t sweeper;
    uv_timer_t sweep_more;      /* a sweep that hit its budget goes on here, 1 ms later */
    uv_timer_t exit_timer;      /* THREAD_EXIT: force-closes what has not closed by itself */
    uint64_t exit_since;        /* loop ms of THREAD_EXIT */
    int listening;
    pthread_mutex_t mu;
    struct inbox_item *head, *tail;   /* under mu */
    u64map users;               /* user id -> first registered conn of that user */
    conn *all;                  /* every open connection (sweeps, shutdown) */
    conn *flush_list;           /* connections with output to write this turn */
    char *readbuf;              /* one read buffer per thread: reads are sequential */
    iy_buf scratch;             /* frame building */
    int exiting;
    uint64_t refused_logged_ms; /* loop ms of the last "connection refused" log line */
    uint64_t tls_logged_ms;     /* loop ms of the last "TLS failed" log line */
    int trim_pending;           /* big buffers were freed: return memory at the next sweep */
    conn_block **conn_blocks;   /* conn.c: the connections' memory (slots of ids) */
    uint32_t nconn_blocks;
    uint32_t *conn_free;        /* ... its free slots */
    uint32_t nconn_free;
    ws_reader *spare_wr;        /* lent to connections without a reader of their own (ws_input) */
    size_t idle_freed;          /* bytes of connections' buffers freed since the last trim */
    uint64_t idle_trim_ms;      /* loop ms of the last malloc_trim for them */
    uint64_t accepted;          /* connections accepted, ever */
    uint64_t accepted_at_trim;  /* ... at the last malloc_trim */
    int trim_trailing;          /* the last trim was for a wave: one more after it */
};

enum conn_proto { PROTO_HTTP = 1, PROTO_WS = 2 };
enum conn_ws_state { WS_NEW = 0, WS_AUTHING, WS_READY };

/* A held frame: a message that reached a socket before its ready or ahead
 * of a missing pos (chat/deliver.c); len 0: an ack marker (the device has
 * that pos already). */
/* A shared piece of output: bytes that go to many sockets (the common part
 * of a fan-out's `msg` frame, chat/deliver.c), written by reference with
 * vectored I/O, never copied per socket. Refcounted, by one thread (the
 * I/O thread that made it): its maker holds one reference, each socket
 * that queued a piece of it another, dropped once the piece is written or
 * the socket closes. */
typedef struct conn_shared {
    uint32_t refs;
    uint32_t len;
    char data[];
} conn_shared;

/* A reference in a connection's output queue (conn.c): len bytes at p
 * (inside s), written after the first `at` bytes of the buffer it belongs
 * to (c->out, or c->inflight once handed to uv_write). */
typedef struct conn_seg {
    conn_shared *s;
    const char *p;
    uint32_t len;
    uint32_t at;
} conn_seg;

typedef struct conn_held {
    struct conn_held *next;
    uint64_t pos;
    size_t len;
    char frame[];               /* a complete WebSocket frame */
} conn_held;

/* A WebSocket's sequencer state beyond its pos (chat/deliver.c), allocated
 * while it has any (a gap, a check due, sends in flight): most idle
 * connections have none. */
typedef struct conn_seq {
    conn_held *held;            /* what arrived ahead of pos + 1, by pos */
    uint64_t *sending;          /* hashes of the cmids of its sends not yet answered */
    uint32_t nsending, sending_cap;
    uint32_t held_bytes;
    uint64_t held_since_ms;     /* loop ms the oldest gap opened; 0: none */
    uint64_t check_at_ms;       /* loop ms of a due comparison of pos with the store; 0: none */
} conn_seq;

/* What only an HTTP connection needs: the parser, the request being
 * received and answered (for limits, metrics and the access log), a
 * stream, a long poll. Allocated at accept, freed when the connection
 * becomes a WebSocket, so that an idle WebSocket does not carry it. */
typedef struct conn_http {
    http_parser *hp;
    const char *cors;           /* the request's Origin is one of net_config.cors_origins: this entry of it, */
    uint16_t cors_len;          /* echoed in Access-Control-Allow-Origin ("*" for a wildcard); NULL: none */
    /* The request being answered, for metrics and the access log (conn_http_done): */
    uint8_t route;              /* service: its route template number (metrics_route_name); 0 other */
    uint8_t req_method;         /* enum metric_method */
    uint16_t resp_status;       /* the answer's status, once written */
    uint32_t held_in;           /* bytes of the request being received held (counted in M_REQUEST_BUFFERED) */
    uint64_t req_t0_ns;         /* mono ns the request was complete; 0: no request being answered */
    uint64_t resp_bytes;        /* the answer's size, head included */
    uint64_t req_since_ms;      /* loop time the request being received began; 0: none */
    /* ---- owned by the service ---- */
    const net_sink *sink;       /* a streamed request body or answer in progress */
    void *stream;               /* the service's state of it */
    uint64_t wait_after;        /* long poll */
    int wait_limit;
    uint8_t wait_session[32];   /* long poll: its token's hash, for the reads after a wake-up */
    void (*drained)(conn *c);   /* called once when all queued output is written (a download) */
} conn_http;

struct conn {
    uv_tcp_t tcp;               /* first: the handle's data is the conn */
    iothread *t;
    uint64_t id;
    uint8_t proto;              /* enum conn_proto */
    uint8_t ws_state;           /* enum conn_ws_state */
    uint16_t ws_code;           /* WS: the close code sent or echoed; 0 none yet */
    /* One word of flags: the transport's, then the service's (one thread
     * writes them all: the connection's I/O thread). */
    unsigned closing : 1, close_after_flush : 1, draining : 1, writing : 1, paused : 1,
        reading : 1, in_flush_list : 1, http_busy : 1, keep_alive : 1, counted_addr : 1,
        head_seen : 1,          /* the head of the request being received went to http_head */
        registered : 1,         /* service: in the thread's user map */
        counted_user : 1,       /* service: counted in the service's sockets per user */
        clean_close : 1,        /* service: the peer or a logout closed it properly */
        http_waiting : 1,       /* service: a long poll waits for a delivery */
        wait_woken : 1,         /* service: a delivery came while the long poll's read was out */
        fill_inflight : 1,      /* service: a gap fill (a read of the inbox after pos) is out */
        drain_pending : 1,      /* service: draining: closed with 1012 once its requests are answered */
        admin : 1,              /* accepted on an --admin-listen address: /metrics, /healthz only */
        trusted : 1,            /* its peer is a --trust-proxy proxy */
        head_only : 1,          /* the request being answered is a HEAD: its answer's head goes out, no body */
        typed : 1;              /* service: a typing was relayed (last_typing_ms) */
    uint64_t client;            /* the client's address (conn_client) of the last request */
    conn_http *http;            /* HTTP: the request's state; NULL once a WebSocket */
    ws_reader *wr;
    struct tls_conn *tls;       /* TLS state (tls.h); NULL: plaintext, nothing else to pay */
    iy_buf *rest;               /* input not yet processed while paused (NULL: none held) */
    iy_buf out;                 /* queued output */
    conn_seg *segs;             /* shared pieces of the output in order: the first nsegs_in are */
    uint16_t nsegs, nsegs_in;   /* in flight (in wr_async), the rest queued (in c->out); */
    uint16_t segcap;            /* the array goes when the connection is idle (conn_sweep) */
    uint32_t seg_bytes;         /* bytes of all the segs */
    struct conn_wr *wr_async;   /* the uv_write in flight and its bytes (writing), allocated
                                   for it: most flushes finish in uv_try_write and need none */
    uint64_t peer;              /* the client's address as a key: IPv4 (1 << 32 | addr), IPv6
                                   (its /64 prefix, top bit set); 0 unknown (net_addr_text) */
    uint64_t last_rx_ms;        /* loop time of the last input, or of the end of the last
                                   HTTP answer (keep-alive idleness counts from there) */
    uint32_t out_counted;       /* out + inflight bytes counted in M_OUTPUT_BUFFERED (< CONN_OUT_CAP + a frame) */
    int inflight_reqs;          /* service: WebSocket requests submitted, not answered */
    uint64_t out_since_ms;      /* loop ms output began waiting or last drained a bit; 0: none */
    uint64_t opened_ms;
    uint64_t drain_since_ms;
    conn *user_prev, *user_next;
    conn *all_prev, *all_next;
    conn *flush_prev, *flush_next;

    /* ---- owned by the service (chat/, api/; its flags and inflight_reqs are above) ---- */
    uint64_t user;              /* identity once authenticating (WS) or long polling (HTTP) */
    uint64_t session_key;       /* its token hash's first 8 bytes (session_key_of): a logout's
                                   revocation matches it among the user's sockets */
    void *waiting_job;          /* a job waiting for the bus subscription (BUS_SUBSCRIBED) */
    uint64_t pos;               /* WS: every inbox pos up to this one was sent (ready, msg, ack) */
    conn_seq *seq;              /* WS: the rest of the sequencer, on demand (chat/deliver.c) */
    uint64_t wait_deadline_ms;  /* long poll's end; WS: a drain's deadline */
    uint32_t reported_rx_ms;    /* last life sign reported to presence (loop ms, low 32 bits) */
    uint32_t last_typing_ms;    /* the last typing relayed (loop ms, low 32 bits; if typed) */
};


/* ---- iothread.c ---- */

/* Binds thread index's listening socket; the loop does not run yet.
 * Returns 0 and *out, or IY_EIO (logged: the address and why). */
int iothread_new(unsigned index, const net_config *cfg, const net_handlers *h, void *svc,
                 iothread **out);
int iothread_run(iothread *t);                                   /* starts the thread */
void iothread_post(iothread *t, iothread_fn fn, void *arg);      /* any thread */
void iothread_post_ctl(iothread *t, int ctl);
void iothread_join(iothread *t);                                 /* and frees t */
conn *iothread_conn(iothread *t, uint64_t id);                   /* NULL if closed */
void iothread_user_add(iothread *t, conn *c);                    /* c->user must be set */
void iothread_freed(iothread *t, size_t bytes);  /* a connection's buffers freed: a trim is due */
void iothread_user_del(iothread *t, conn *c);
conn *iothread_user_first(iothread *t, uint64_t user);           /* then c->user_next */

/* ---- conn.c ---- */
void conn_accept(iothread *t, uv_stream_t *listener, int admin);
void conn_pool_free(iothread *t);   /* frees the connections' memory: the thread has ended */
void conn_write(conn *c, const void *p, size_t n);        /* queue raw bytes */
void conn_ws_send(conn *c, const char *json, size_t n);   /* queue one text frame */
/* Shared output (conn_shared above). new: a buffer of n bytes (copied
 * from p unless NULL) with one reference, the caller's. unref: drops one
 * (NULL: nothing). conn_write_shared queues n bytes at p inside s by
 * reference (written with vectored I/O; a TLS connection, a piece too
 * small to be worth a reference or a queue already long copies them). */
conn_shared *conn_shared_new(const void *p, size_t n);
void conn_shared_unref(conn_shared *s);
void conn_write_shared(conn *c, conn_shared *s, const char *p, size_t n);
void conn_ws_close(conn *c, uint16_t code, const char *reason); /* close frame, then close */
void conn_close(conn *c);                                  /* immediately */
void conn_flush_all(iothread *t);
void conn_resume(conn *c);                                 /* continue after a pause */
void conn_pause(conn *c);
void conn_http_respond(conn *c, int status, const char *ctype, const char *body, size_t n);
/* An error answer with Retry-After (seconds, rounded up from retry_ms). */
void conn_http_error_retry(conn *c, int err, const char *message, int64_t retry_ms);
/* The client's address as a key (conn.peer's form): the connection's peer,
 * or, when that peer is a trusted proxy (--trust-proxy), the address that
 * proxy appended to X-Forwarded-For (the header's last element; a value
 * that is no address falls back to the peer). */
uint64_t conn_client(const conn *c, const http_request *req);
/* 1 if the client reached a proxy we trust over TLS (X-Forwarded-Proto:
 * https from a --trust-proxy peer). */
int conn_forwarded_tls(const conn *c, const http_request *req);
/* An address key, printable (logs). */
void net_addr_text(uint64_t key, char *out, size_t cap);
/* The same with extra header lines (each ending in CRLF; NULL for none). */
void conn_http_respond_x(conn *c, int status, const char *ctype, const char *extra, const char *body,
                         size_t n);
void conn_http_error(conn *c, int err, const char *message);

/* Streamed bodies (uploads, downloads). From net_handlers.http_head: the
 * body of the request whose head this is goes to sink->chunk as it
 * arrives, never held, at most max bytes (more: 413 and the connection
 * closes); the request then comes to net_handlers.http with streamed = 1.
 * 0, or IY_ETOOBIG (its Content-Length is over max: answered 413 already).
 * c->sink and c->stream stay set until the answer is complete or the
 * connection closes; an answer written while they are set (an error: the
 * service clears them first when it answers normally) or a close calls
 * sink->abort. */
int conn_stream_body(conn *c, uint64_t max, const net_sink *sink, void *stream);
/* A streamed answer: its head (with Content-Length len), then the body
 * with conn_write, in pieces (conn_on_drained tells when the output is
 * written, so that at most one piece is queued), then conn_http_done.
 * sink (chunk NULL) and stream as above: abort if the connection closes
 * first. */
void conn_http_respond_head(conn *c, int status, const char *ctype, const char *extra, uint64_t len,
                            const net_sink *sink, void *stream);
void conn_http_done(conn *c);
/* fn(c) once all of c's queued output is written (at once if none is). */
void conn_on_drained(conn *c, void (*fn)(conn *c));
/* The transport's timeouts: at most `budget` connections closed or
 * answered per call, so that a wave of them (10,000 slow requests that
 * time out together) never holds the loop for long. 1 if it stopped at
 * the budget (call again soon: its work is done from the start of the
 * list, and what it ended is gone from it), else 0. */
int conn_sweep(iothread *t, uint64_t now_ms, int budget);
int64_t conn_wall_ms(conn *c, uint64_t loop_ms);           /* wall-clock ms of a loop time */

/* ---- time ---- */
uint64_t now_ms(void);                                      /* wall clock */
uint64_t mono_ns(void);

#endif
