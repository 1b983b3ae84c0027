/* bus.h — the hand-off of committed messages to the threads (later: the
 * nodes) that hold the members' sockets.
 *
 * Single node (bus_local.c): the storage thread publishes each committed
 * batch once; the bus hands one reference of it to every I/O thread, which
 * delivers it to its own connections. Cluster (later): a NATS implementation
 * publishes per-user subjects and each node subscribes for its users; the
 * functions below are the whole seam.
 *
 * Ordering: bus_publish() calls from one thread reach every subscriber in
 * call order, and after any bus_post() made earlier by the same thread —
 * this is what makes `ready.pos` plus the live stream gap-free. */
#ifndef IY_BUS_H
#define IY_BUS_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "../store/store.h"

/* One committed message as the bus carries it. */
typedef struct bus_msg {
    const iy_stored *st;       /* members and their pos; st->msg without text */
    const char *text;
    size_t text_len;
    unsigned origin_thread;    /* the sending connection, which gets an ack instead of a msg */
    uint64_t origin_conn;      /* 0 for HTTP sends */
} bus_msg;

/* A committed batch, shared read-only by every subscriber. */
typedef struct bus_batch {
    atomic_int refs;
    size_t n;
    bus_msg *v;
    void (*release)(struct bus_batch *b);   /* called once when the last reference goes */
} bus_batch;

/* A small notice (presence change, read receipt, typing): one pre-built
 * JSON frame for every socket of a list of users, shared read-only. */
typedef struct bus_notice {
    atomic_int refs;
    uint64_t *users;           /* the users whose sockets get the frame */
    size_t n;
    char *frame;               /* a JSON text, without WebSocket framing */
    size_t len;
    uint64_t skip_user;        /* none of this user's sockets get it (typing); 0: none */
    unsigned origin_thread;    /* nor does this socket (receipt); origin_conn 0: none */
    uint64_t origin_conn;
} bus_notice;

/* An event for a subscriber (an I/O thread). */
enum bus_kind { BUS_BATCH = 1, BUS_REVOKE = 2, BUS_NOTICE = 3 };
typedef struct bus_event {
    struct bus_event *next;    /* queue link, owned by the subscriber's queue */
    int kind;
    bus_batch *batch;          /* BUS_BATCH: one reference, dropped with bus_batch_unref */
    uint64_t user;             /* BUS_REVOKE: close this user's sockets of session `session` */
    uint8_t session[32];
    bus_notice *notice;        /* BUS_NOTICE: one reference */
} bus_event;

/* A subscriber receives events through post(ctx, ev); it owns ev afterwards
 * and frees it with bus_event_free. */
typedef void (*bus_post_fn)(void *ctx, bus_event *ev);

typedef struct bus bus;

/* A bus for n subscribers; ctx[i] is passed to post for subscriber i. Never fails. */
bus *bus_local_new(unsigned n, bus_post_fn post, void **ctx);
void bus_free(bus *b);                               /* accepts NULL */

/* Hands batch to every subscriber; takes over the caller's reference. */
void bus_publish(bus *b, bus_batch *batch);

/* Tells every subscriber that session (of user) is revoked. */
void bus_revoke(bus *b, uint64_t user, const uint8_t session[32]);

/* Hands notice to every subscriber; takes over the caller's reference. */
void bus_notify(bus *b, bus_notice *notice);

/* A notice with copies of users[0..n) and frame[0..len), refs = 1. */
bus_notice *bus_notice_new(const uint64_t *users, size_t n, const char *frame, size_t len);
void bus_notice_unref(bus_notice *notice);           /* accepts NULL */

void bus_batch_unref(bus_batch *batch);              /* accepts NULL */
void bus_event_free(bus_event *ev);                  /* drops the batch reference too */

#endif
