/* bus.c — the bus's dispatch (bus_int.h), and building and releasing its
 * message kinds (bus.h), shared by every implementation. */
#include "bus_int.h"
#include "../base/alloc.h"
#include <string.h>

void bus_free(bus *b)
{
    if (b) b->ops->free(b);
}

int bus_subscribe(bus *b, unsigned i, uint64_t user) { return b->ops->subscribe(b, i, user); }
void bus_unsubscribe(bus *b, unsigned i, uint64_t user) { b->ops->unsubscribe(b, i, user); }
void bus_publish(bus *b, bus_batch *batch) { b->ops->publish(b, batch); }
void bus_revoke(bus *b, uint64_t user, const uint8_t session[32]) { b->ops->revoke(b, user, session); }
void bus_notify(bus *b, bus_notice *notice) { b->ops->notify(b, notice); }
void bus_announce_node(bus *b, const struct bus_node_info *n) { b->ops->announce_node(b, n); }
void bus_announce_presence(bus *b, const struct bus_presence_info *p) { b->ops->announce_presence(b, p); }
void bus_get_stats(bus *b, bus_stats *out) { b->ops->stats(b, out); }
int bus_is_cluster(const bus *b) { return b->ops->cluster; }

bus_batch *bus_batch_new(size_t n)
{
    bus_batch *b = iy_calloc(1, sizeof *b);
    atomic_init(&b->refs, 1);
    b->v = iy_calloc(n ? n : 1, sizeof *b->v);
    return b;
}

static uint64_t *copy_u64(const uint64_t *v, size_t n)
{
    uint64_t *c = iy_malloc((n ? n : 1) * sizeof *c);
    if (n) memcpy(c, v, n * sizeof *c);
    return c;
}

void bus_batch_add(bus_batch *b, const iy_msg *m, const char *text, size_t text_len,
                   const uint64_t *members, const uint64_t *pos, uint32_t n, bus_origin origin)
{
    bus_msg *x = &b->v[b->n++];
    x->m = *m;
    x->m.reactions = NULL;
    x->m.atts = iy_atts_copy(m->atts);   /* the batch's own (iy_msg_clear frees it) */
    x->m.text = iy_malloc(text_len + 1);
    if (text_len) memcpy(x->m.text, text, text_len);
    x->m.text[text_len] = '\0';
    x->m.text_len = text_len;
    x->n = n;
    x->members = copy_u64(members, n);
    x->pos = copy_u64(pos, n);
    x->origin = origin;
}

void bus_batch_unref(bus_batch *b)
{
    if (!b || atomic_fetch_sub(&b->refs, 1) != 1) return;
    for (size_t i = 0; i < b->n; i++) {
        iy_msg_clear(&b->v[i].m);
        iy_free(b->v[i].members);
        iy_free(b->v[i].pos);
    }
    iy_free(b->v);
    iy_free(b);
}

bus_notice *bus_notice_new(const uint64_t *users, size_t n, const char *frame, size_t len)
{
    bus_notice *no = iy_calloc(1, sizeof *no);
    atomic_init(&no->refs, 1);
    no->users = copy_u64(users, n);
    no->n = n;
    no->frame = iy_malloc(len ? len : 1);
    memcpy(no->frame, frame, len);
    no->len = len;
    return no;
}

void bus_notice_unref(bus_notice *no)
{
    if (!no || atomic_fetch_sub(&no->refs, 1) != 1) return;
    iy_free(no->users);
    iy_free(no->frame);
    iy_free(no);
}

void bus_event_free(bus_event *ev)
{
    if (!ev) return;
    if (ev->kind == BUS_BATCH) bus_batch_unref(ev->batch);
    if (ev->kind == BUS_NOTICE) bus_notice_unref(ev->notice);
    iy_free(ev);
}
