/* types.c — the little behaviour of the domain types: freeing messages and
 * the id generator (types.h). */
#include "types.h"
#include "../base/alloc.h"
#include <string.h>
#include "../base/bytes.h"
#include <time.h>

void iy_msg_clear(iy_msg *m)
{
    if (!m) return;
    iy_free(m->text);
    m->text = NULL;
    m->text_len = 0;
    iy_free(m->reactions);
    m->reactions = NULL;
    iy_free(m->atts);
    m->atts = NULL;
}

size_t iy_reactions_size(const iy_reactions *r)
{
    size_t n = 1;
    for (uint32_t i = 0; r && i < r->n; i++) n += 2 + strlen(r->v[i].emoji) + 8 * (size_t)r->v[i].n;
    return n;
}

size_t iy_reactions_encode(const iy_reactions *r, uint8_t *out)
{
    size_t k = 0;
    out[k++] = (uint8_t)(r ? r->n : 0);
    for (uint32_t i = 0; r && i < r->n; i++) {
        size_t el = strlen(r->v[i].emoji);
        out[k++] = (uint8_t)el;
        memcpy(out + k, r->v[i].emoji, el);
        k += el;
        out[k++] = (uint8_t)r->v[i].n;
        for (uint32_t j = 0; j < r->v[i].n; j++)
            for (int b = 7; b >= 0; b--) out[k++] = (uint8_t)(r->v[i].users[j] >> (8 * b));
    }
    return k;
}

iy_reactions *iy_reactions_decode(const uint8_t *p, size_t n, int *bad)
{
    size_t k = 0;
    if (n == 0 || p[0] == 0) {
        if (n > 1) *bad = 1;
        return NULL;
    }
    iy_reactions *r = iy_calloc(1, sizeof *r);
    r->n = p[k++];
    if (r->n > IY_REACTIONS_MAX) goto fail;
    for (uint32_t i = 0; i < r->n; i++) {
        if (k >= n) goto fail;
        size_t el = p[k++];
        if (el == 0 || el > IY_EMOJI_MAX || k + el + 1 > n) goto fail;
        memcpy(r->v[i].emoji, p + k, el);
        r->v[i].emoji[el] = '\0';
        k += el;
        r->v[i].n = p[k++];
        if (r->v[i].n == 0 || r->v[i].n > IY_REACTORS_MAX || k + 8 * (size_t)r->v[i].n > n) goto fail;
        for (uint32_t j = 0; j < r->v[i].n; j++) {
            uint64_t u = 0;
            for (int b = 0; b < 8; b++) u = u << 8 | p[k++];
            r->v[i].users[j] = u;
        }
    }
    if (k != n) goto fail;
    return r;
fail:
    *bad = 1;
    iy_free(r);
    return NULL;
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

size_t iy_attachment_encode(const iy_attachment *a, uint8_t *out)
{
    wr w = { out, 0 };
    size_t tl = strnlen(a->type, IY_ATTACH_TYPE_MAX), nl = strnlen(a->name, IY_ATTACH_NAME_MAX);
    wr_u8(&w, 1);
    wr_u64(&w, a->uploader);
    wr_u64(&w, a->channel);
    wr_u64(&w, a->message);
    wr_u64(&w, a->size);
    wr_u64(&w, (uint64_t)a->created_ms);
    wr_u8(&w, a->thumb ? 1 : 0);
    wr_u8(&w, (unsigned)tl);
    wr_mem(&w, a->type, tl);
    wr_u16(&w, (unsigned)nl);
    wr_mem(&w, a->name, nl);
    return w.n;
}

int iy_attachment_decode(const uint8_t *p, size_t n, uint64_t id, iy_attachment *a)
{
    rd r = { p, n, 0 };
    memset(a, 0, sizeof *a);
    a->id = id;
    if (rd_u8(&r) != 1) return -1;
    a->uploader = rd_u64(&r);
    a->channel = rd_u64(&r);
    a->message = rd_u64(&r);
    a->size = rd_u64(&r);
    a->created_ms = (int64_t)rd_u64(&r);
    a->thumb = rd_u8(&r) != 0;
    size_t tl = rd_u8(&r);
    rd_str(&r, tl, a->type, IY_ATTACH_TYPE_MAX);
    size_t nl = rd_u16(&r);
    rd_str(&r, nl, a->name, IY_ATTACH_NAME_MAX);
    return r.bad || r.n ? -1 : 0;
}

size_t iy_atts_encode(const iy_atts *a, uint8_t *out)
{
    wr w = { out, 0 };
    wr_u8(&w, a ? a->n : 0);
    for (uint32_t i = 0; a && i < a->n; i++) {
        const iy_att *t = &a->v[i];
        size_t tl = strnlen(t->type, IY_ATTACH_TYPE_MAX), nl = strnlen(t->name, IY_ATTACH_NAME_MAX);
        wr_u64(&w, t->id);
        wr_u64(&w, t->size);
        wr_u8(&w, t->thumb ? 1 : 0);
        wr_u8(&w, (unsigned)tl);
        wr_mem(&w, t->type, tl);
        wr_u16(&w, (unsigned)nl);
        wr_mem(&w, t->name, nl);
    }
    return w.n;
}

iy_atts *iy_atts_decode(const uint8_t *p, size_t n, int *bad)
{
    rd r = { p, n, 0 };
    if (n == 0) return NULL;
    unsigned k = rd_u8(&r);
    if (k == 0 || k > IY_ATTACH_PER_MSG) {   /* none is stored as no bytes at all */
        *bad = 1;
        return NULL;
    }
    iy_atts *a = iy_calloc(1, sizeof *a);
    a->n = k;
    for (uint32_t i = 0; i < k; i++) {
        iy_att *t = &a->v[i];
        t->id = rd_u64(&r);
        t->size = rd_u64(&r);
        unsigned th = rd_u8(&r);
        t->thumb = th == 1;
        size_t tl = rd_u8(&r);
        rd_str(&r, tl, t->type, IY_ATTACH_TYPE_MAX);
        size_t nl = rd_u16(&r);
        rd_str(&r, nl, t->name, IY_ATTACH_NAME_MAX);
        /* Only the form encode writes (what crosses the bus is re-encoded). */
        if (th > 1 || strlen(t->type) != tl || strlen(t->name) != nl) r.bad = 1;
    }
    if (r.bad || r.n) {
        *bad = 1;
        iy_free(a);
        return NULL;
    }
    return a;
}

iy_atts *iy_atts_copy(const iy_atts *a)
{
    if (!a) return NULL;
    iy_atts *c = iy_malloc(sizeof *c);
    *c = *a;
    return c;
}
