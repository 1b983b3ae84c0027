/* service.h — what every part of the chat service shares: the handles of
 * the storage thread, the readers, the bus, the presence registry and the
 * push worker, and the service's configuration. One per process, built by
 * server/server.c; each I/O thread carries a pointer to it (iothread.svc).
 *
 * The service is split by concern:
 *   chat/commit.c   the commit round: rules on what the store loaded, one
 *                   durable commit, the bus batch (storage thread)
 *   chat/chat.c     the WebSocket ops of the contract (I/O threads)
 *   chat/deliver.c  bus events to this thread's sockets, in pos order
 *   chat/presence.c who is online; chat/social.c presence as friends see it
 *   chat/auth.c     tokens and Argon2id
 *   api/           the HTTP API */
#ifndef IY_CHAT_SERVICE_H
#define IY_CHAT_SERVICE_H
#include <stdint.h>
#include <string.h>
#include "../bus/bus.h"
#include "../net/net.h"
#include "../store/dbq.h"
#include "../store/readq.h"

struct presence;
struct vapid;
struct pushd;
struct registry;
struct service_limits;

typedef struct service_config {
    char public_url[512];       /* what discovery hands out ("" : from the Host header) */
    char node_name[128];        /* this node's name (--node) */
    int presence_timeout_s;
    int push_allow_private;
    int max_backlog;            /* queued sends past which new sends get `unavailable` */
    int max_queue_ms;           /* ... or once the storage queue's oldest job waited this long (0: off) */
    uint32_t capacity;          /* connections this node is meant to hold (--capacity) */
    uint32_t max_user_sockets;  /* authenticated sockets per user on this node (0: no cap) */
    char blob_dir[4096];        /* attachments' bytes (api/uploads.c): DIR/ID, DIR/ID.thumb, DIR/tmp */
    uint64_t max_upload;        /* bytes of one upload */
    char metrics_token[256];    /* /metrics wants "Authorization: Bearer" this ("" : open) */
} service_config;

typedef struct service {
    service_config cfg;
    net_config net;
    unsigned node;              /* the store's node number (ids, bus origins) */
    dbq *dbq;
    readq *readq;
    bus *bus;
    struct presence *presence;
    struct social_batch *social;  /* presence transitions waiting for the storage thread */
    struct vapid *vapid;
    struct pushd *pushd;
    struct indexer *indexer;    /* the search index's (NULL: search unavailable) */
    struct registry *registry;  /* the live nodes (a single node: itself) */
    struct service_limits *limits;  /* rate limits (chat/limiter.h); NULL: --rate-limits off */
    struct tokens *tokens;      /* valid session tokens (chat/tokens.h; never NULL) */
    struct counter *user_sockets;   /* authenticated sockets per user (NULL: no cap) */
    store *store;               /* for its health only (/healthz): it is the storage thread's */
    int cluster;                /* the bus crosses nodes (--bus) */
    _Atomic int draining;       /* SIGTERM: out of discovery, /healthz 503, sockets moved */
    iothread **threads;
    unsigned nthreads;
    uint64_t round_failures;        /* storage thread: rounds failed in a row (logging) */
    int64_t round_failure_logged_ms;
} service;

static inline service *svc_of(const conn *c) { return (service *)c->t->svc; }

/* conn.session_key of a session's token hash. */
static inline uint64_t session_key_of(const uint8_t token_hash[32])
{
    uint64_t k;
    memcpy(&k, token_hash, sizeof k);
    return k;
}

/* Whether a new send must be refused with `unavailable` (overload: see
 * dbq.h): the storage queue holds --max-backlog sends, or its oldest job has
 * waited past --max-queue-ms with DBQ_SHED_MIN_SENDS sends queued. */
static inline int svc_shed_send(const service *svc)
{
    size_t backlog = dbq_backlog(svc->dbq);
    if (backlog >= (size_t)svc->cfg.max_backlog) return 1;
    return svc->cfg.max_queue_ms > 0 && backlog >= DBQ_SHED_MIN_SENDS &&
           dbq_wait_ns(svc->dbq, mono_ns()) > (uint64_t)svc->cfg.max_queue_ms * 1000000u;
}

/* The handlers the transport calls (chat/chat.c). */
extern const net_handlers service_handlers;

/* dbq's and readq's post: a finished job's done() runs on its origin thread. */
void service_post_job(void *origin, dbq_job *j);

/* The bus's post: an event runs chat/deliver.c on the subscriber thread. */
void service_post_event(void *thread, bus_event *ev);

/* The commit round of the storage thread (chat/commit.c), for dbq_start. */
dbq_round_fns commit_round_fns(service *svc);

#endif
