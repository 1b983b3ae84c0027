/* bus_local.c — the single-node bus: every event goes to every I/O thread.
 *
 * With a handful of I/O threads, broadcasting a committed batch costs one
 * queue push per thread; each thread then looks its own connections up by
 * user id, so no thread ever touches another thread's connections. So the
 * subscription counts are not needed here (bus.h). Each post is a push to
 * the thread's FIFO: what one thread publishes arrives in publish order. */
#include "bus_int.h"
#include "../base/alloc.h"
#include <string.h>

typedef struct local_bus {
    bus base;
    unsigned n;
    bus_post_fn post;
    void **ctx;
} local_bus;

static const bus_ops local_ops;

bus *bus_local_new(unsigned n, bus_post_fn post, void **ctx)
{
    local_bus *b = iy_calloc(1, sizeof *b);
    b->base.ops = &local_ops;
    b->n = n;
    b->post = post;
    b->ctx = iy_calloc(n, sizeof *b->ctx);
    memcpy(b->ctx, ctx, n * sizeof *ctx);
    return &b->base;
}

static void local_free(bus *bb)
{
    local_bus *b = (local_bus *)bb;
    iy_free(b->ctx);
    iy_free(b);
}

/* Every thread gets everything, in publish order: a subscription is active at once. */
static int local_subscribe(bus *b, unsigned i, uint64_t user) { (void)b, (void)i, (void)user; return 1; }
static void local_unsubscribe(bus *b, unsigned i, uint64_t user) { (void)b, (void)i, (void)user; }
static void local_announce_node(bus *b, const struct bus_node_info *n) { (void)b, (void)n; }
static void local_announce_presence(bus *b, const struct bus_presence_info *p) { (void)b, (void)p; }
static void local_stats(bus *b, bus_stats *out) { (void)b; memset(out, 0, sizeof *out); }

static void local_publish(bus *bb, bus_batch *batch)
{
    local_bus *b = (local_bus *)bb;
    atomic_fetch_add(&batch->refs, (int)b->n);
    for (unsigned i = 0; i < b->n; i++) {
        bus_event *ev = iy_calloc(1, sizeof *ev);
        ev->kind = BUS_BATCH;
        ev->batch = batch;
        b->post(b->ctx[i], ev);
    }
    bus_batch_unref(batch);
}

static void local_revoke(bus *bb, uint64_t user, const uint8_t session[32])
{
    local_bus *b = (local_bus *)bb;
    for (unsigned i = 0; i < b->n; i++) {
        bus_event *ev = iy_calloc(1, sizeof *ev);
        ev->kind = BUS_REVOKE;
        ev->user = user;
        memcpy(ev->session, session, 32);
        b->post(b->ctx[i], ev);
    }
}

static void local_notify(bus *bb, bus_notice *notice)
{
    local_bus *b = (local_bus *)bb;
    atomic_fetch_add(&notice->refs, (int)b->n);
    for (unsigned i = 0; i < b->n; i++) {
        bus_event *ev = iy_calloc(1, sizeof *ev);
        ev->kind = BUS_NOTICE;
        ev->notice = notice;
        b->post(b->ctx[i], ev);
    }
    bus_notice_unref(notice);
}


/* Posts ev to subscriber i (the cluster bus's local delivery uses it too). */
void bus_local_post(bus *bb, unsigned i, bus_event *ev)
{
    local_bus *b = (local_bus *)bb;
    b->post(b->ctx[i], ev);
}

unsigned bus_local_count(bus *bb) { return ((local_bus *)bb)->n; }

static const bus_ops local_ops = {
    .free = local_free,
    .subscribe = local_subscribe,
    .unsubscribe = local_unsubscribe,
    .publish = local_publish,
    .revoke = local_revoke,
    .notify = local_notify,
    .announce_node = local_announce_node,
    .announce_presence = local_announce_presence,
    .stats = local_stats,
    .cluster = 0,
};
