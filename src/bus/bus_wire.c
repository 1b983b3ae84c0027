/* bus_wire.c — encoding and decoding the messages between nodes (bus_wire.h). */
#include "bus_wire.h"
#include "../base/alloc.h"
#include "../base/bytes.h"
#include "../base/err.h"
#include <string.h>

/* ---- writing ---- */

static void w8(iy_buf *b, unsigned v)
{
    uint8_t x = (uint8_t)v;
    iy_buf_append(b, &x, 1);
}

static void wn(iy_buf *b, uint64_t v, int bytes)
{
    uint8_t x[8];
    for (int i = bytes - 1; i >= 0; i--, v >>= 8) x[i] = (uint8_t)v;
    iy_buf_append(b, x, (size_t)bytes);
}

static void head(iy_buf *b, int kind, int64_t sent_ms)
{
    w8(b, BUS_WIRE_VERSION);
    w8(b, (unsigned)kind);
    wn(b, (uint64_t)sent_ms, 8);
}

static void origin(iy_buf *b, const bus_origin *o)
{
    wn(b, o->node, 2);
    wn(b, o->thread, 2);
    wn(b, o->conn, 8);
}

void bus_wire_msg(iy_buf *out, int64_t sent_ms, const bus_msg *m, uint32_t k)
{
    size_t cl = strnlen(m->m.cmid, IY_CMID_MAX);
    head(out, W_MSG, sent_ms);
    origin(out, &m->origin);
    wn(out, m->members[k], 8);
    wn(out, m->pos[k], 8);
    wn(out, m->m.id, 8);
    wn(out, m->m.channel, 8);
    wn(out, m->m.seq, 8);
    wn(out, m->m.from, 8);
    w8(out, (unsigned)m->m.event);
    wn(out, m->m.subject, 8);
    w8(out, (unsigned)cl);
    iy_buf_append(out, m->m.cmid, cl);
    wn(out, m->m.text_len, 4);
    iy_buf_append(out, m->m.text, m->m.text_len);
    uint32_t nm = m->m.nmentions > IY_MENTIONS_MAX ? IY_MENTIONS_MAX : m->m.nmentions;
    w8(out, nm);
    for (uint32_t i = 0; i < nm; i++) wn(out, m->m.mentions[i], 8);
    wn(out, m->m.reply_to, 8);
    wn(out, m->m.reply_seq, 8);
    uint8_t ab[IY_ATTS_ENC_MAX];
    size_t al = m->m.atts && m->m.atts->n ? iy_atts_encode(m->m.atts, ab) : 0;
    wn(out, al, 2);
    iy_buf_append(out, ab, al);
}

void bus_wire_notice(iy_buf *out, int64_t sent_ms, const bus_notice *no, uint64_t user)
{
    head(out, W_NOTICE, sent_ms);
    origin(out, &no->origin);
    wn(out, user, 8);
    wn(out, no->skip_user, 8);
    wn(out, no->len, 4);
    iy_buf_append(out, no->frame, no->len);
}

void bus_wire_revoke(iy_buf *out, int64_t sent_ms, uint64_t user, const uint8_t session[32])
{
    head(out, W_REVOKE, sent_ms);
    wn(out, user, 8);
    iy_buf_append(out, session, 32);
}

void bus_wire_node(iy_buf *out, int64_t sent_ms, const bus_node_info *n)
{
    size_t nl = strnlen(n->name, BUS_NODE_NAME_MAX), ul = strnlen(n->ws_url, BUS_WS_URL_MAX);
    head(out, W_NODE, sent_ms);
    wn(out, n->number, 2);
    wn(out, (uint64_t)n->incarnation, 8);
    wn(out, n->connections, 4);
    wn(out, n->capacity, 4);
    w8(out, n->leaving ? 1 : 0);
    w8(out, (unsigned)nl);
    iy_buf_append(out, n->name, nl);
    wn(out, ul, 2);
    iy_buf_append(out, n->ws_url, ul);
}

void bus_wire_presence(iy_buf *out, int64_t sent_ms, const bus_presence_info *p)
{
    head(out, W_PRESENCE, sent_ms);
    wn(out, p->node, 2);
    wn(out, p->user, 8);
    w8(out, p->online ? 1 : 0);
    w8(out, p->global ? 1 : 0);
    wn(out, (uint64_t)p->last_active, 8);
}

/* ---- reading ---- */

static uint64_t rn(rd *r, int bytes)
{
    const uint8_t *p = rd_mem(r, (size_t)bytes);
    uint64_t v = 0;
    for (int i = 0; p && i < bytes; i++) v = v << 8 | p[i];
    return v;
}

/* A string of len bytes into dst (room for max + 1), NUL-terminated; one
 * holding a NUL byte or longer than max is bad. */
static void rstr(rd *r, size_t len, char *dst, size_t max)
{
    const uint8_t *p = len > max ? (r->bad = 1, NULL) : rd_mem(r, len);
    if (!p || memchr(p, 0, len)) {
        r->bad = 1;
        dst[0] = '\0';
        return;
    }
    memcpy(dst, p, len);
    dst[len] = '\0';
}

static void rorigin(rd *r, bus_origin *o)
{
    o->node = (unsigned)rn(r, 2);
    o->thread = (unsigned)rn(r, 2);
    o->conn = rn(r, 8);
}

int bus_wire_decode(const void *data, size_t len, bus_wire *w)
{
    rd r = { data, len, 0 };
    memset(w, 0, sizeof *w);
    if (rn(&r, 1) != BUS_WIRE_VERSION) return IY_EPROTO;
    w->kind = (int)rn(&r, 1);
    w->sent_ms = (int64_t)rn(&r, 8);
    switch (w->kind) {
    case W_MSG: {
        bus_msg *m = &w->msg;
        rorigin(&r, &w->origin);
        w->user = rn(&r, 8);
        w->pos = rn(&r, 8);
        m->m.id = rn(&r, 8);
        m->m.channel = rn(&r, 8);
        m->m.seq = rn(&r, 8);
        m->m.from = rn(&r, 8);
        m->m.event = (int)rn(&r, 1);
        m->m.subject = rn(&r, 8);
        rstr(&r, (size_t)rn(&r, 1), m->m.cmid, IY_CMID_MAX);
        size_t tl = (size_t)rn(&r, 4);
        if (tl > IY_TEXT_MAX_BYTES) r.bad = 1;
        m->m.text = (char *)rd_mem(&r, tl);
        m->m.text_len = tl;
        m->m.nmentions = (uint32_t)rn(&r, 1);
        if (m->m.nmentions > IY_MENTIONS_MAX) r.bad = 1;
        for (uint32_t i = 0; !r.bad && i < m->m.nmentions; i++) m->m.mentions[i] = rn(&r, 8);
        m->m.reply_to = rn(&r, 8);
        m->m.reply_seq = rn(&r, 8);
        size_t al = (size_t)rn(&r, 2);
        const uint8_t *ap = rd_mem(&r, al);
        m->m.atts = NULL;
        if (ap && al) {
            iy_atts *a = iy_atts_decode(ap, al, &r.bad);
            if (a) {
                w->atts = *a;
                iy_free(a);
                m->m.atts = &w->atts;
            }
        }
        m->m.ts = iy_id_ts(m->m.id);
        if (m->m.event < IY_EV_NONE || m->m.event > IY_EV_UNREACTED || !w->user || !w->pos) r.bad = 1;
        m->n = 1;
        m->members = &w->user;
        m->pos = &w->pos;
        m->origin = w->origin;
        break;
    }
    case W_NOTICE:
        rorigin(&r, &w->origin);
        w->user = rn(&r, 8);
        w->skip_user = rn(&r, 8);
        w->frame_len = (size_t)rn(&r, 4);
        if (w->frame_len > IY_JSON_MAX) r.bad = 1;
        w->frame = (const char *)rd_mem(&r, w->frame_len);
        if (!w->user) r.bad = 1;
        break;
    case W_REVOKE: {
        w->user = rn(&r, 8);
        const uint8_t *s = rd_mem(&r, 32);
        if (s) memcpy(w->session, s, 32);
        if (!w->user) r.bad = 1;
        break;
    }
    case W_NODE:
        w->node.number = (unsigned)rn(&r, 2);
        w->node.incarnation = (int64_t)rn(&r, 8);
        w->node.connections = (uint32_t)rn(&r, 4);
        w->node.capacity = (uint32_t)rn(&r, 4);
        w->node.leaving = (int)rn(&r, 1);
        rstr(&r, (size_t)rn(&r, 1), w->node.name, BUS_NODE_NAME_MAX);
        rstr(&r, (size_t)rn(&r, 2), w->node.ws_url, BUS_WS_URL_MAX);
        if (!w->node.name[0] || w->node.leaving > 1 || w->node.number > IY_NODE_MAX) r.bad = 1;
        break;
    case W_PRESENCE:
        w->presence.node = (unsigned)rn(&r, 2);
        w->presence.user = rn(&r, 8);
        w->presence.online = (int)rn(&r, 1);
        w->presence.global = (int)rn(&r, 1);
        w->presence.last_active = (int64_t)rn(&r, 8);
        if (!w->presence.user || w->presence.online > 1 || w->presence.global > 1 ||
            w->presence.node > IY_NODE_MAX)
            r.bad = 1;
        break;
    default:
        return IY_EPROTO;
    }
    return r.bad || r.n ? IY_EPROTO : 0;
}
