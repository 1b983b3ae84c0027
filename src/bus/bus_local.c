/* bus_local.c — the single-node bus: every event goes to every I/O thread.
 *
 * With a handful of I/O threads, broadcasting a committed batch costs one
 * queue push per thread; each thread then looks its own connections up by
 * user id, so no thread ever touches another thread's connections. So the
 * subscription counts are not needed here (bus.h). Each post is a push to
 * the thread's FIFO: what one thread publishes arrives in publish order. */
#include "bus.h"
#include "../base/alloc.h"
#include <string.h>

struct bus {
    unsigned n;
    bus_post_fn post;
    void **ctx;
};

bus *bus_local_new(unsigned n, bus_post_fn post, void **ctx)
{
    bus *b = iy_calloc(1, sizeof *b);
    b->n = n;
    b->post = post;
    b->ctx = iy_calloc(n, sizeof *b->ctx);
    memcpy(b->ctx, ctx, n * sizeof *ctx);
    return b;
}

void bus_free(bus *b)
{
    if (!b) return;
    iy_free(b->ctx);
    iy_free(b);
}

void bus_subscribe(bus *b, unsigned i, uint64_t user) { (void)b, (void)i, (void)user; }
void bus_unsubscribe(bus *b, unsigned i, uint64_t user) { (void)b, (void)i, (void)user; }

void bus_publish(bus *b, bus_batch *batch)
{
    atomic_fetch_add(&batch->refs, (int)b->n);
    for (unsigned i = 0; i < b->n; i++) {
        bus_event *ev = iy_calloc(1, sizeof *ev);
        ev->kind = BUS_BATCH;
        ev->batch = batch;
        b->post(b->ctx[i], ev);
    }
    bus_batch_unref(batch);
}

void bus_revoke(bus *b, uint64_t user, const uint8_t session[32])
{
    for (unsigned i = 0; i < b->n; i++) {
        bus_event *ev = iy_calloc(1, sizeof *ev);
        ev->kind = BUS_REVOKE;
        ev->user = user;
        memcpy(ev->session, session, 32);
        b->post(b->ctx[i], ev);
    }
}

void bus_notify(bus *b, bus_notice *notice)
{
    atomic_fetch_add(&notice->refs, (int)b->n);
    for (unsigned i = 0; i < b->n; i++) {
        bus_event *ev = iy_calloc(1, sizeof *ev);
        ev->kind = BUS_NOTICE;
        ev->notice = notice;
        b->post(b->ctx[i], ev);
    }
    bus_notice_unref(notice);
}

