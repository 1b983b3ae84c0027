/* bus.h — what crosses from the thread that committed something to the
 * threads (and, in a cluster, the nodes) holding the sockets it concerns.
 *
 * Every message kind is a typed, self-contained struct: it owns its bytes
 * and names no job, connection pointer or store record, so the same struct
 * can be handed between threads by reference (bus_local.c) or encoded for
 * the wire between nodes (a later bus_nats.c; the wire form of each kind is
 * documented with it). Handlers must be idempotent: a message may arrive
 * twice or never, the store is the truth (a device missing a pos fetches it
 * with sync).
 *
 *   kind        carries                                        handler (chat/deliver.c)
 *   BUS_BATCH   committed messages, each with its recipients'  one `msg` frame per recipient
 *               inbox pos and where it came from                device, skipping the sender's socket
 *   BUS_NOTICE  one JSON frame and the users whose sockets     the frame to their sockets
 *               get it (presence, receipt, typing, channel)
 *   BUS_REVOKE  a user and a session (token hash)              close that session's sockets
 *
 * Subscriptions. A subscriber (an I/O thread) says which users it holds
 * sockets of (bus_subscribe / bus_unsubscribe, counted); a message for a
 * user reaches at least every subscriber of that user. The local bus ignores
 * the counts and hands every message to every I/O thread (each looks its
 * own sockets up: a handful of threads costs a handful of queue pushes); a
 * cluster bus routes by user, so the cost of a message does not grow with
 * the number of nodes.
 *
 * Order. Messages published from one thread reach each subscriber in
 * publish order (the local bus: a FIFO per thread). Across nodes there is
 * no such promise; receivers order by pos and fill gaps from the store. */
#ifndef IY_BUS_H
#define IY_BUS_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "../model/types.h"

/* Where a message or notice came from: the sender's socket gets an ack
 * instead of the msg (and the reader's socket no receipt of its own). */
typedef struct bus_origin {
    unsigned node;             /* store node number of the committing node */
    unsigned thread;           /* I/O thread index on that node */
    uint64_t conn;             /* connection id on that thread; 0: none (HTTP) */
} bus_origin;

/* One committed message. */
typedef struct bus_msg {
    iy_msg m;                  /* m.text owned; m.pos unused (per recipient below) */
    uint32_t n;
    uint64_t *members;         /* recipients (owned) */
    uint64_t *pos;             /* pos[i]: the new inbox pos of members[i] (owned) */
    bus_origin origin;
} bus_msg;

/* Committed messages, shared read-only by every subscriber. */
typedef struct bus_batch {
    atomic_int refs;
    size_t n;
    bus_msg *v;
} bus_batch;

/* A small notice: one pre-built JSON frame for every socket of a list of
 * users, shared read-only. */
typedef struct bus_notice {
    atomic_int refs;
    uint64_t *users;           /* the users whose sockets get the frame */
    size_t n;
    char *frame;               /* a JSON text, without WebSocket framing */
    size_t len;
    uint64_t skip_user;        /* none of this user's sockets get it (typing); 0: none */
    bus_origin origin;         /* nor does this socket (receipt); origin.conn 0: none */
} bus_notice;

enum bus_kind { BUS_BATCH = 1, BUS_REVOKE = 2, BUS_NOTICE = 3, BUS_SUBSCRIBED = 4, BUS_RESYNC = 5 };

/* An event for a subscriber. */
typedef struct bus_event {
    struct bus_event *next;    /* queue link, owned by the subscriber's queue */
    int kind;
    bus_batch *batch;          /* BUS_BATCH: one reference */
    bus_notice *notice;        /* BUS_NOTICE: one reference */
    uint64_t user;             /* BUS_REVOKE: close this user's sockets of session `session`;
                                  BUS_SUBSCRIBED: the user's subscription is active now */
    uint8_t session[32];
} bus_event;
/* BUS_RESYNC (no fields): the bus was cut off from the other nodes for a
 * while (a NATS reconnect): messages may have been lost, so every ready
 * socket should compare its pos with the store. */

/* A subscriber receives events through post(ctx, ev) (on the publishing
 * thread); it owns ev afterwards and frees it with bus_event_free. */
typedef void (*bus_post_fn)(void *ctx, bus_event *ev);

typedef struct bus bus;

/* The single-node bus for n subscribers (I/O threads); ctx[i] is passed to
 * post for subscriber i. Never fails. */
bus *bus_local_new(unsigned n, bus_post_fn post, void **ctx);
void bus_free(bus *b);                               /* accepts NULL */

/* Subscriber i holds (or no longer holds) a socket of user. Counted: as
 * many unsubscribes as subscribes. Any thread. bus_subscribe returns 1 when
 * every later message for user is sure to reach subscriber i, or 0 when
 * that is confirmed later by a BUS_SUBSCRIBED event for user (a cluster
 * bus waits for the server to acknowledge the subscription: subscribe,
 * THEN read, is what makes ready.pos gap-free). */
int bus_subscribe(bus *b, unsigned i, uint64_t user);
void bus_unsubscribe(bus *b, unsigned i, uint64_t user);

/* ---- the cluster: every node hears these (bus_nats.c; no-ops locally) ---- */

struct bus_node_info;
struct bus_presence_info;

typedef struct bus_cluster_fns {
    void *ctx;
    /* A node's registry entry (another node's heartbeat or leave). Called on
     * a bus thread: must only touch thread-safe state. */
    void (*node)(void *ctx, const struct bus_node_info *n);
    /* Another node's view of a user's presence changed. Same rule. */
    void (*presence)(void *ctx, const struct bus_presence_info *p);
    /* A session was deleted on another node (every node hears every
     * revocation, whether or not it holds the user's sockets: its token
     * cache must forget the token). Same rule; may be NULL. */
    void (*revoked)(void *ctx, uint64_t user, const uint8_t session[32]);
    /* The bus was cut off from NATS (cut = 1: what other nodes publish may
     * be lost until it is back) or is connected again (0). Same rule; may
     * be NULL. */
    void (*cut)(void *ctx, int cut);
} bus_cluster_fns;

/* The cluster bus over NATS (servers: "nats://h:p[,nats://h:p...]") for n
 * subscribers, as bus_local_new plus: node is this node's number (origins
 * of what it publishes); fns receives the cluster broadcasts. It connects
 * in the background and keeps reconnecting: a NATS that is down at start
 * or later pauses what crosses nodes, nothing local. Returns NULL (logged)
 * only for a bad URL list. */
bus *bus_nats_new(const char *servers, unsigned n, bus_post_fn post, void **ctx, unsigned node,
                  const bus_cluster_fns *fns);

/* 1 if this bus crosses nodes. */
int bus_is_cluster(const bus *b);

/* Announces this node's registry entry / a presence change of its own
 * view to every node (no-ops on the local bus). Any thread. */
void bus_announce_node(bus *b, const struct bus_node_info *n);
void bus_announce_presence(bus *b, const struct bus_presence_info *p);

/* Counters for /metrics: messages received from other nodes, their age
 * when received (ms, summed), publishes that failed, reconnects. */
typedef struct bus_stats {
    uint64_t received, lag_ms_sum, publish_errors, reconnects, subscriptions;
    int connected;
} bus_stats;
void bus_get_stats(bus *b, bus_stats *out);

/* Hands batch to the subscribers of its recipients; takes over the
 * caller's reference. */
void bus_publish(bus *b, bus_batch *batch);

/* Tells the subscribers of user that session is revoked. */
void bus_revoke(bus *b, uint64_t user, const uint8_t session[32]);

/* Hands notice to the subscribers of its users; takes over the reference. */
void bus_notify(bus *b, bus_notice *notice);

/* ---- building and releasing (bus.c) ---- */

/* An empty batch with room for n messages, refs = 1. */
bus_batch *bus_batch_new(size_t n);

/* Appends a copy of message m (text[0..text_len) copied) with its
 * recipients to batch (which has room). */
void bus_batch_add(bus_batch *b, const iy_msg *m, const char *text, size_t text_len,
                   const uint64_t *members, const uint64_t *pos, uint32_t n, bus_origin origin);

void bus_batch_unref(bus_batch *batch);              /* accepts NULL */

/* A notice with copies of users[0..n) and frame[0..len), refs = 1. */
bus_notice *bus_notice_new(const uint64_t *users, size_t n, const char *frame, size_t len);
void bus_notice_unref(bus_notice *notice);           /* accepts NULL */

void bus_event_free(bus_event *ev);                  /* drops its reference too */

#endif
