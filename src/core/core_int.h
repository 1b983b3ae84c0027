/* core_int.h — internals shared by the files of the chat core (src/core).
 *
 * Threads (see docs/ARCHITECTURE.md):
 *   - N I/O threads (iothread.c), each with its own libuv loop, its own
 *     SO_REUSEPORT listening socket and the connections it accepted; a
 *     connection never moves and only its thread touches it.
 *   - one storage thread (dbq.c) doing group commit;
 *   - reader threads (readq.c) for history pages and WebSocket sync;
 *   - libuv's thread pool for Argon2id (auth.c).
 * Threads talk only through queues plus a wake-up: iothread_post_*() push to
 * a thread's inbox and uv_async_send() it.
 *
 * Connection lifecycle (conn.c):
 *
 *    accept ──> HTTP ──(GET /v1/ws + Upgrade)──> WS_NEW ──auth──> WS_AUTHING ──ok──> WS_READY
 *                │ ^                               │                  │ bad token
 *                v │ response written              │ auth timeout     v
 *              HTTP busy (a job in flight,         └──────────────> closing ──> freed in the
 *              or long poll waiting for a batch)                     close callback
 *
 *  - HTTP: one request at a time; while it is in flight, input is paused and
 *    unparsed bytes wait in c->rest.
 *  - Input is also paused while a WebSocket authenticates and while too many
 *    of its requests are in flight (back-pressure, no unbounded queue).
 *  - Output is appended to c->out and flushed once per loop turn (prepare
 *    handle), at most one uv_write in flight. A connection whose queued
 *    output passes CONN_OUT_CAP is dropped: everything it missed is durable
 *    and the client catches up with sync.
 *  - A connection is never freed inside its own callbacks: conn_close()
 *    unregisters it and calls uv_close(); the memory goes in the close
 *    callback. Jobs name their connection by id, never by pointer.
 */
#ifndef IY_CORE_INT_H
#define IY_CORE_INT_H
#include <pthread.h>
#include <stdint.h>
#include <uv.h>
#include "dbq.h"
#include "readq.h"
#include "../base/buf.h"
#include "../base/u64map.h"
#include "../bus/bus.h"
#include "../codec/http.h"
#include "../codec/ws.h"
#include "../store/store.h"

#define CONN_OUT_CAP (16u << 20)        /* queued output past which a slow reader is dropped */
#define CONN_MAX_INFLIGHT 128           /* WebSocket requests in flight before input pauses */
#define READ_BUF_SIZE (64u << 10)

typedef struct server_config {
    char listen_host[64];
    int listen_port;
    char data_dir[4096];
    unsigned threads;
    char public_url[512];
    int presence_timeout_s;
    int auth_timeout_s;
    int idle_timeout_s;
    int push_allow_private;
    int max_backlog;            /* queued sends past which new sends get `unavailable` */
    int push_retry_base_ms;     /* first push retry delay */
    int push_give_up_s;         /* age past which a push notification is dead */
} server_config;

typedef struct server server;
typedef struct iothread iothread;
typedef struct conn conn;

struct presence;
struct vapid;
struct pushd;

struct server {
    server_config cfg;
    struct presence *presence;
    struct vapid *vapid;        /* Web Push key pair (DIR/vapid.pem) */
    struct pushd *pushd;        /* the push worker */
    int push_queued;            /* storage thread: notifications queued this round */
    uv_timer_t presence_timer;
    store *store;
    dbq *dbq;
    readq *readq;               /* reader threads: history, WebSocket sync */
    bus *bus;
    iothread **threads;
    unsigned nthreads;
    uv_loop_t main_loop;
    uv_signal_t sigterm, sigint;
    volatile int stopping;
};

/* An item in an I/O thread's inbox. */
typedef struct inbox_item {
    struct inbox_item *next;
    bus_event *ev;              /* one of ev, job */
    dbq_job *job;
    int ctl;                    /* or a control word (THREAD_STOP_ACCEPT, THREAD_EXIT) */
} inbox_item;

enum { THREAD_STOP_ACCEPT = 1, THREAD_EXIT = 2 };

struct iothread {
    server *srv;
    unsigned index;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_tcp_t listener;
    uv_prepare_t flusher;
    uv_timer_t sweeper;
    int listening;
    pthread_mutex_t mu;
    inbox_item *head, *tail;    /* under mu */
    uint64_t next_conn_id;
    u64map conns;               /* conn id -> conn */
    u64map users;               /* user id -> first conn of that user (WS ready or long poll) */
    conn *all;                  /* every open connection (sweeps, shutdown) */
    conn *flush_list;           /* connections with output to write this turn */
    char *readbuf;              /* one read buffer per thread: reads are sequential */
    iy_buf scratch;             /* frame building */
    int exiting;
};

enum conn_proto { PROTO_HTTP = 1, PROTO_WS = 2 };
enum conn_ws_state { WS_NEW = 0, WS_AUTHING, WS_READY };

struct conn {
    uv_tcp_t tcp;               /* first: the handle's data is the conn */
    iothread *t;
    uint64_t id;
    int proto;                  /* enum conn_proto */
    int ws_state;               /* enum conn_ws_state */
    unsigned closing : 1, close_after_flush : 1, draining : 1, writing : 1, paused : 1,
        reading : 1, in_flush_list : 1, http_busy : 1, http_waiting : 1, keep_alive : 1,
        registered : 1;             /* in the thread's user map */
    http_parser *hp;
    ws_reader *wr;
    iy_buf rest;                /* input not yet processed while paused */
    iy_buf out;                 /* queued output */
    iy_buf inflight;            /* bytes handed to uv_write */
    uv_write_t wreq;
    uint64_t last_rx_ms;        /* loop time of the last input */
    uint64_t opened_ms;
    int inflight_reqs;          /* WebSocket requests submitted, not answered */
    /* identity once authenticated (WS) or while long polling (HTTP) */
    uint64_t user;
    char device[IY_DEVICE_MAX + 1];
    uint8_t session[32];
    conn *user_prev, *user_next;
    conn *all_prev, *all_next;
    conn *flush_prev, *flush_next;
    uint64_t drain_since_ms;
    /* long poll */
    uint64_t wait_after;
    uint64_t wait_deadline_ms;
    int wait_limit;
    /* presence and rate limits (WebSocket) */
    uint64_t reported_rx_ms;    /* last life sign reported to presence */
    uint64_t last_typing_ms;
    unsigned clean_close : 1;   /* the peer or a logout closed it properly */
};

/* ---- iothread.c ---- */
int iothread_new(server *srv, unsigned index, iothread **out);  /* binds; does not run yet */
int iothread_run(iothread *t);                                   /* starts the thread */
void iothread_post_job(void *thread, dbq_job *j);         /* dbq's post callback */
void iothread_post_event(void *thread, bus_event *ev);    /* bus's post callback */
void iothread_post_ctl(iothread *t, int ctl);
void iothread_join(iothread *t);
conn *iothread_conn(iothread *t, uint64_t id);            /* NULL if closed */
void iothread_user_add(iothread *t, conn *c);             /* c->user must be set */
void iothread_user_del(iothread *t, conn *c);

/* ---- conn.c ---- */
void conn_accept(iothread *t, uv_stream_t *listener);
void conn_write(conn *c, const void *p, size_t n);        /* queue raw bytes */
void conn_ws_send(conn *c, const char *json, size_t n);   /* queue one text frame */
void conn_ws_close(conn *c, uint16_t code, const char *reason); /* close frame, then close */
void conn_close(conn *c);                                  /* immediately */
void conn_flush_all(iothread *t);
void conn_resume(conn *c);                                 /* continue after a pause */
void conn_pause(conn *c);
void conn_http_respond(conn *c, int status, const char *ctype, const char *body, size_t n);
void conn_http_error(conn *c, int err, const char *message);
void conn_sweep(iothread *t, uint64_t now_ms);

/* ---- api.c: the HTTP API ---- */
void api_handle(conn *c, const http_request *req);
void api_wait_wake(conn *c);                               /* a batch reached a long poller */
void api_wait_expire(conn *c);

/* ---- static.c: the web client ---- */
void static_serve(conn *c, iy_str path);              /* GET of a web client file */

/* ---- chat.c: WebSocket ops ---- */
void chat_on_text(conn *c, const char *data, size_t len);
void chat_deliver(iothread *t, const bus_batch *b);
void chat_revoke(iothread *t, const bus_event *ev);
void chat_notice(iothread *t, const bus_notice *no);

/* ---- auth.c ---- */
void auth_token_new(char out[44], uint8_t hash[32]);           /* random token (base64url) and its SHA-256 */
void auth_token_hash(const char *token, size_t n, uint8_t hash[32]);
void auth_random_hex(char *out, size_t nbytes);                /* 2*nbytes hex chars + NUL */
/* Argon2id on libuv's thread pool: done(ctx, err, ...) on t's loop. */
typedef void (*auth_hash_cb)(void *ctx, int err, const char *encoded);
typedef void (*auth_verify_cb)(void *ctx, int ok);
void auth_hash_password(iothread *t, const char *pw, size_t n, auth_hash_cb cb, void *ctx);
void auth_verify_password(iothread *t, const char *encoded, const char *pw, size_t n,
                          auth_verify_cb cb, void *ctx);

/* ---- social.c: presence as friends see it (storage thread unless noted) ---- */
void social_publish(void *srv, uint64_t user, int online, int64_t last_active); /* any thread */
void social_presence_of(server *srv, store *s, uint64_t user, int *online, int64_t *last_active);
int social_may_see(store *s, uint64_t viewer, uint64_t user);   /* self, friend, or a shared channel */
void social_presence_fields(iy_buf *b, uint64_t user, int online, int64_t last_active);
void social_presence_frame(iy_buf *b, uint64_t user, int online, int64_t last_active);
void social_presence_list(iy_buf *b, server *srv, store *s, uint64_t viewer, const uint64_t *ids, size_t n);
void social_push_presence(server *srv, store *s, uint64_t user, const uint64_t *to, size_t n);

/* ---- util ---- */
uint64_t now_ms(void);                                      /* wall clock */
uint64_t mono_ns(void);

#endif
