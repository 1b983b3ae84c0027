/* types.c — the little behaviour of the domain types: freeing messages and
 * the id generator (types.h). */
#include "types.h"
#include "../base/alloc.h"
#include <time.h>

void iy_msg_clear(iy_msg *m)
{
    if (!m) return;
    iy_free(m->text);
    m->text = NULL;
    m->text_len = 0;
}

void iy_msg_list_clear(iy_msg_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) iy_msg_clear(&l->v[i]);
    iy_free(l->v);
    l->v = NULL;
    l->n = 0;
}

uint64_t iy_id_next(iy_idgen *g)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - IY_ID_EPOCH_MS;
    uint64_t ms = now > 0 ? (uint64_t)now : 1, ctr = 0;
    uint64_t last_ms = g->last >> 22;
    if (ms <= last_ms) {
        ms = last_ms;
        ctr = (g->last & 0xfff) + 1;
        if (ctr > 0xfff) {
            ms++;
            ctr = 0;
        }
    }
    uint64_t id = ms << 22 | (g->node & IY_NODE_MAX) << 12 | ctr;
    if (id <= g->last) id = (ms + 1) << 22 | (g->node & IY_NODE_MAX) << 12;  /* node number changed */
    g->last = id;
    return id;
}
