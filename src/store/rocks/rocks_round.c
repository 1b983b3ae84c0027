/* rocks_round.c — the RocksDB backend's commit rounds (store_int.h), its
 * counters, and reading messages back (history, sync, newest message).
 *
 * Counters. The newest committed seq of each channel and pos of each user
 * are cached in two maps, loaded lazily by seeking to the last key of the
 * channel's 'M' range (the user's 'I' range). A round reads them into its
 * view; round.c assigns from there; a successful commit writes the view's
 * final values back into the maps, a failed one leaves them alone. Because
 * a crash loses the whole unsynced round and the counters are recomputed
 * from the database on the next open, seq and pos stay gap-free across
 * failures and crashes.
 *
 * A round commit is ONE WriteBatch written with sync=1: every message ('M'),
 * inbox row ('I'), cmid ('C'), sender read state ('R', once per sender
 * and channel), created direct
 * channel ('c', 'd', 'x'), changed group ('c', 'x' of the subject), push
 * note (rocks_push.c) and the meta record. That one sync per round is the
 * group commit. */
#include "rocks_int.h"
#include "rocks_enc.h"
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include "../../model/rules.h"

/* ---- counters ---------------------------------------------------------- */

/* The last 8 bytes of the newest 17-byte key type+id+n (0 if none). */
int rocks_load_last_v(const rview *rv, int type, uint64_t id, uint64_t *out)
{
    uint8_t lo[9], target[17];
    key1(lo, type, id);
    key2(target, type, id, UINT64_MAX);
    rocksdb_iterator_t *it = rocks_scan_open(rv, lo, 9, NULL, 0);
    rocksdb_iter_seek_for_prev(it, (const char *)target, 17);
    *out = 0;
    if (rocksdb_iter_valid(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl == 17 && memcmp(k, lo, 9) == 0) *out = get64(k + 9);
    }
    return rocks_scan_close(it);
}

int rocks_counter(rocks *s, int type, uint64_t id, uint64_t *out)
{
    u64map *m = type == K_MSG ? &s->seq : &s->pos;
    uint64_t *v = u64map_find(m, id);
    if (v) {
        *out = *v;
        return 0;
    }
    rview rv = rocks_view(s);
    int rc = rocks_load_last_v(&rv, type, id, out);
    if (rc == 0) u64map_set(m, id, *out);
    return rc;
}

/* A connection's auth asks once: what the rounds cached, or the store,
 * without caching it (an idle connection's user needs no counter here;
 * a round that delivers to the user loads it). */
int rocks_user_pos(store *st, uint64_t user, uint64_t *pos)
{
    rocks *s = (rocks *)st;
    const uint64_t *v = u64map_find(&s->pos, user);
    if (v) {
        *pos = *v;
        return 0;
    }
    rview rv = rocks_once_view(s);
    return rocks_load_last_v(&rv, K_INBOX, user, pos);
}

/* ---- rounds -------------------------------------------------------------- */

/* Puts a channel and the inbox heads of its members into the view. */
static int load_channel(rocks *s, store_round *r, uint64_t id)
{
    if (round_chan_get(r, id)) return 0;
    iy_channel *ch = iy_malloc(sizeof *ch);
    uint64_t seq = 0;
    int rc = rocks_channel_load(s, id, ch);
    if (rc == IY_ENOTFOUND) rc = 0, ch->id = 0;   /* not there: the rules answer not_found */
    else if (rc == 0) rc = rocks_counter(s, K_MSG, id, &seq);
    if (rc == 0 && ch->id) {
        round_put_channel(r, ch, seq);
        for (uint32_t i = 0; rc == 0 && i < ch->nmembers; i++) {
            uint64_t pos;
            if (round_user_get(r, ch->members[i])) continue;
            if ((rc = rocks_counter(s, K_INBOX, ch->members[i], &pos)) == 0)
                round_put_user(r, ch->members[i], pos);
        }
    }
    iy_free(ch);
    return rc;
}

int rocks_round_load(store *st, store_round *r)
{
    rocks *s = (rocks *)st;
    rview rv = rocks_view(s);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < r->npair_keys; i++) {
        uint64_t a = r->pair_keys[2 * i], b = r->pair_keys[2 * i + 1], ch;
        rc = rocks_direct_load(s, a, b, &ch);
        if (rc == IY_ENOTFOUND) rc = 0;
        else if (rc == 0) {
            round_put_pair(r, a, b, ch);
            rc = load_channel(s, r, ch);
        }
    }
    for (size_t i = 0; rc == 0 && i < r->nchan_keys; i++) rc = load_channel(s, r, r->chan_keys[i]);
    for (size_t i = 0; rc == 0 && i < r->nuser_keys; i++) {
        uint64_t u = r->user_keys[i], pos;
        iy_user usr;
        if (round_user_get(r, u)) continue;
        rc = rocks_user_load(&rv, u, &usr, NULL);
        if (rc == IY_ENOTFOUND) {
            rc = 0;     /* not put: it does not exist */
            continue;
        }
        if (rc == 0 && (rc = rocks_counter(s, K_INBOX, u, &pos)) == 0) round_put_user(r, u, pos);
    }
    /* cmids: a new one is a Get that the bloom filters (memtable and SST,
     * both in memory) answer without reading a data block. */
    for (size_t i = 0; rc == 0 && i < r->nsends; i++) {
        const iy_send *in = &r->sends[i];
        const char *cmid = rules_send_cmid(in);
        size_t cl = strlen(cmid);
        if (cl == 0 || rules_send_shape(in) != 0) continue;
        uint8_t k[1 + 8 + IY_CMID_MAX];
        char *v;
        size_t vl;
        k[0] = K_CMID;
        put64(k + 1, in->from);
        memcpy(k + 9, cmid, cl);
        rc = rocks_get(s, k, 9 + cl, &v, &vl);
        if (rc <= 0) continue;
        rc = 0;
        if (vl == 32) {
            const uint8_t *p = (const uint8_t *)v;
            round_put_cmid(r, in->from, cmid, cl, get64(p), get64(p + 8), get64(p + 16), get64(p + 24));
        } else {
            rc = rocks_corrupt("cmid");
        }
        rocksdb_free(v);
    }
    return rc < 0 ? rc : 0;
}

/* ---- the sorted part of a round's batch ----------------------------------------
 *
 * A round's appended messages ('M', 'I', 'R', 'x', 'C') are staged, then
 * put into the WriteBatch in key order. RocksDB inserts a batch's keys into
 * its memtable skiplist one by one, reusing the previous insert's position
 * (its "splice") where the new key falls next to it: in message order the
 * keys jump between five key spaces, and every insert searched the
 * skiplist from the top (InlineSkipList::RecomputeSpliceLevels: 30 % of the
 * storage thread at 10,000 msgs/s, perf, issue 15). In key order most
 * inserts land beside the previous one. The sort is stable (ties keep
 * staging order), so two writes of one key (a member added and removed in
 * one round) keep their order, and the staged keys go in as one block, in
 * the same place of the batch as before, so writes of other parts of the
 * round (channels, targets, push) keep their order relative to them. */
typedef struct stage_ent {
    uint32_t ko, kl, vo, vl;   /* key and value: offsets into the arena */
    uint32_t seq;              /* staging order: the tie-break */
    uint32_t del;              /* a delete (no value) */
} stage_ent;

static void stage_add(rocks *s, int del, const uint8_t *k, size_t kl, const void *v1, size_t l1, const void *v2,
                      size_t l2)
{
    if (s->stg_len + kl + l1 + l2 > s->stg_cap) {
        while (s->stg_len + kl + l1 + l2 > s->stg_cap) s->stg_cap = s->stg_cap ? 2 * s->stg_cap : 1u << 16;
        s->stg = iy_realloc(s->stg, s->stg_cap);
    }
    if (s->nents == s->capents) {
        s->capents = s->capents ? 2 * s->capents : 1024;
        s->ents = iy_realloc(s->ents, s->capents * sizeof *s->ents);
    }
    stage_ent *e = &s->ents[s->nents];
    e->seq = (uint32_t)s->nents++;
    e->del = (uint32_t)del;
    e->ko = (uint32_t)s->stg_len;
    e->kl = (uint32_t)kl;
    memcpy(s->stg + s->stg_len, k, kl);
    s->stg_len += kl;
    e->vo = (uint32_t)s->stg_len;
    e->vl = (uint32_t)(l1 + l2);
    if (l1) memcpy(s->stg + s->stg_len, v1, l1);
    if (l2) memcpy(s->stg + s->stg_len + l1, v2, l2);
    s->stg_len += l1 + l2;
}

static int stage_cmp(const void *a, const void *b, void *arena)
{
    const stage_ent *x = a, *y = b;
    const uint8_t *base = arena;
    size_t n = x->kl < y->kl ? x->kl : y->kl;
    int c = memcmp(base + x->ko, base + y->ko, n);
    if (c) return c;
    if (x->kl != y->kl) return x->kl < y->kl ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Puts the staged writes into wb in key order and empties the stage. */
static void stage_flush(rocks *s, rocksdb_writebatch_t *wb)
{
    qsort_r(s->ents, s->nents, sizeof *s->ents, stage_cmp, s->stg);
    for (size_t i = 0; i < s->nents; i++) {
        const stage_ent *e = &s->ents[i];
        const char *k = (const char *)s->stg + e->ko;
        if (e->del) rocksdb_writebatch_delete(wb, k, e->kl);
        else rocksdb_writebatch_put(wb, k, e->kl, (const char *)s->stg + e->vo, e->vl);
    }
    s->nents = 0;
    s->stg_len = 0;
}

/* Writes the 'M' record of m with text: staged, or straight into s->wb. */
static void put_record(rocks *s, int staged, const iy_msg *m, const char *text, size_t text_len)
{
    size_t cl = strlen(m->cmid);
    uint8_t mk[17], hdr[8 + 8 + 1 + IY_CMID_MAX + 1 + 1 + 8 + 16 + 2 + sizeof(iy_reactions) + 2 + IY_ATTS_ENC_MAX +
                        1 + 8 * IY_MENTIONS_MAX];
    wr w = { hdr, 0 };
    int state = m->event == IY_EV_NONE && (m->edited_ms || m->deleted || m->reply_to || m->reactions || m->atts);
    wr_u64(&w, m->id);
    wr_u64(&w, m->from);
    wr_u8(&w, (unsigned)cl | (m->event != IY_EV_NONE || m->nmentions || state ? MSG_F_EVENT : 0));
    wr_mem(&w, m->cmid, cl);
    if (m->event != IY_EV_NONE) {
        wr_u8(&w, (unsigned)m->event);
        wr_u64(&w, m->subject);
    } else if (state) {
        /* Format 4: an edited, deleted or replying message's block: its state, then its mentions. */
        wr_u8(&w, MSG_EV_STATE);
        wr_u8(&w, (m->edited_ms ? MSG_S_EDITED : 0) | (m->deleted ? MSG_S_DELETED : 0) | (m->reply_to ? MSG_S_REPLY : 0) |
                      (m->reactions ? MSG_S_REACTIONS : 0) | (m->atts ? MSG_S_ATTACH : 0));
        if (m->edited_ms) wr_u64(&w, (uint64_t)m->edited_ms);
        if (m->reply_to) {
            wr_u64(&w, m->reply_to);
            wr_u64(&w, m->reply_seq);
        }
        if (m->reactions) {
            size_t rl = iy_reactions_encode(m->reactions, hdr + w.n + 2);
            wr_u16(&w, (unsigned)rl);
            w.n += rl;
        }
        if (m->atts) {
            size_t al = iy_atts_encode(m->atts, hdr + w.n + 2);
            wr_u16(&w, (unsigned)al);
            w.n += al;
        }
        wr_u8(&w, m->nmentions);
        for (uint32_t i = 0; i < m->nmentions; i++) wr_u64(&w, m->mentions[i]);
    } else if (m->nmentions) {
        /* Format 3: the block of a plain message holds its mentions. */
        wr_u8(&w, IY_EV_NONE);
        wr_u8(&w, m->nmentions);
        for (uint32_t i = 0; i < m->nmentions; i++) wr_u64(&w, m->mentions[i]);
    }
    size_t mkl = key2(mk, K_MSG, m->channel, m->seq);
    if (staged) {
        stage_add(s, 0, mk, mkl, hdr, w.n, text, text_len);
        return;
    }
    const char *kp[1] = { (const char *)mk };
    const char *vp[2] = { (const char *)hdr, text };
    size_t kls[1] = { mkl }, vls[2] = { w.n, text_len };
    rocksdb_writebatch_putv(s->wb, 1, kp, kls, 2, vp, vls);   /* the text is not copied twice */
}

/* Stages the writes of one appended message; its sender's 'R' only if
 * write_read (see last_reads). */
static void put_msg(rocks *s, const round_msg *rm, int write_read)
{
    const iy_msg *m = &rm->m;
    size_t cl = strlen(m->cmid);
    uint8_t k[1 + 8 + IY_CMID_MAX];
    put_record(s, 1, m, rm->text, rm->text_len);

    for (uint32_t i = 0; i < rm->n; i++) {
        uint8_t iv[16];
        put64(iv, m->channel);
        put64(iv + 8, m->seq);
        stage_add(s, 0, k, key2(k, K_INBOX, rm->members[i], rm->pos[i]), iv, 16, NULL, 0);
    }
    if (write_read) {
        /* The sender has read its own message. seq is the channel's newest
         * and 'R' never passes the newest, so this only moves forward. */
        uint8_t rv[8];
        put64(rv, m->seq);
        stage_add(s, 0, k, key2(k, K_READ, m->from, m->channel), rv, 8, NULL, 0);
    }
    if (m->event == IY_EV_MEMBER_ADDED)
        stage_add(s, 0, k, key2(k, K_UCHAN, m->subject, m->channel), NULL, 0, NULL, 0);
    else if (m->event == IY_EV_MEMBER_REMOVED)
        stage_add(s, 1, k, key2(k, K_UCHAN, m->subject, m->channel), NULL, 0, NULL, 0);
    if (cl) {
        uint8_t cv[32];
        put64(cv, m->channel);
        put64(cv + 8, m->seq);
        put64(cv + 16, m->id);
        put64(cv + 24, rm->sender_pos);
        k[0] = K_CMID;
        put64(k + 1, m->from);
        memcpy(k + 9, m->cmid, cl);
        stage_add(s, 0, k, 9 + cl, cv, 32, NULL, 0);
    }
}

/* Which of the round's messages move their sender's read seq ('R'): of
 * several by one sender in one channel (pipelined sends, a burst), only
 * the last, which has the highest seq; the others' 'R' puts would be
 * overwritten in the same batch. One put per (sender, channel) and round
 * instead of one per message. Sets write_read[i]. */
static void last_reads(rocks *s, const store_round *r, uint8_t *write_read)
{
    iy_kv_clear(&s->rdup);
    for (size_t i = r->nmsgs; i-- > 0;) {
        const round_msg *rm = &r->msgs[i];
        uint8_t k[16];
        const uint8_t *v;
        size_t vl;
        write_read[i] = 0;
        if (!rm->sender_read || !rm->sender_pos) continue;
        if (r->nmsgs == 1) {
            write_read[i] = 1;
            break;
        }
        put64(k, rm->m.from);
        put64(k + 8, rm->m.channel);
        if (iy_kv_get(&s->rdup, k, 16, &v, &vl) == 1) continue;
        iy_kv_put(&s->rdup, k, 16, "", 0);
        write_read[i] = 1;
    }
}

/* Format 4: the round's plain messages by id, for edits, deletes,
 * reactions and replies: ONE record per round, 'i' + the round's first such
 * id -> (id, channel, seq) * n in id order (appends take ids in order).
 * Its EDITED and DELETED events are in it too (since search): the search
 * indexer follows these records to learn of new and changed texts (the
 * rules never take an event as a target, so locating one is harmless).
 * Rounds never share ids, so the record holding an id is the one with the
 * greatest first id <= it (msg_locate). One key per message cost direct-full
 * ~10 % (A/B in docs/BENCHMARKS.md); one per round costs a copy. */
static void put_id_index(rocksdb_writebatch_t *wb, const store_round *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nmsgs; i++) n += rocks_id_indexed(r->msgs[i].m.event);
    if (n == 0) return;
    uint8_t *v = iy_malloc(24 * n), k[9];
    uint64_t first = 0;
    n = 0;
    for (size_t i = 0; i < r->nmsgs; i++) {
        const iy_msg *m = &r->msgs[i].m;
        if (!rocks_id_indexed(m->event)) continue;
        if (!first) first = m->id;
        put64(v + 24 * n, m->id);
        put64(v + 24 * n + 8, m->channel);
        put64(v + 24 * n + 16, m->seq);
        n++;
    }
    rocksdb_writebatch_put(wb, (const char *)k, key1(k, K_MSGID, first), (const char *)v, 24 * n);
    iy_free(v);
}

/* Created and changed channels into wb (and, once committed, the cache). */
static void put_channels(rocks *s, store_round *r, int cache)
{
    uint8_t k[17], val[CHANNEL_VAL_MAX];
    for (size_t i = 0; i < r->nchans; i++) {
        round_chan *c = &r->chans[i];
        if (!c->created && !c->changed) continue;
        size_t vn = rocks_channel_encode(val, &c->ch);
        size_t kl = key1(k, K_CHANNEL, c->ch.id);
        if (cache) {
            rocks_chcache_put(s, k, kl, val, vn);
        } else {
            rocksdb_writebatch_put(s->wb, (const char *)k, kl, (const char *)val, vn);
        }
        if (!c->created) continue;
        uint8_t chv[8];
        put64(chv, c->ch.id);
        kl = key2(k, K_DIRECT, c->ch.members[0], c->ch.members[1]);
        if (cache) {
            rocks_chcache_put(s, k, kl, chv, 8);
            continue;
        }
        rocksdb_writebatch_put(s->wb, (const char *)k, kl, (const char *)chv, 8);
        for (int m = 0; m < 2; m++)
            rocksdb_writebatch_put(s->wb, (const char *)k, key2(k, K_UCHAN, c->ch.members[m], c->ch.id), "", 0);
    }
}

int rocks_round_commit(store *st, store_round *r)
{
    rocks *s = (rocks *)st;
    int rc = 0;
    rocksdb_writebatch_clear(s->wb);
    iy_kv_clear(&s->ovl);
    put_channels(s, r, 0);
    uint8_t one, *write_read = r->nmsgs > 1 ? iy_malloc(r->nmsgs) : &one;
    last_reads(s, r, write_read);
    for (size_t i = 0; i < r->nmsgs; i++) put_msg(s, &r->msgs[i], write_read[i]);
    stage_flush(s, s->wb);
    if (write_read != &one) iy_free(write_read);
    put_id_index(s->wb, r);
    for (size_t i = 0; i < r->ntargets; i++)
        if (r->targets[i].changed) put_record(s, 0, &r->targets[i].m, r->targets[i].text, r->targets[i].text_len);
    for (size_t i = 0; i < r->natts; i++) {   /* uploads bound to the round's messages */
        if (!r->atts[i].changed) continue;
        uint8_t ak[9], av[IY_ATTACHMENT_ENC_MAX];
        rocksdb_writebatch_put(s->wb, (const char *)ak, key1(ak, K_ATTACH, r->atts[i].id), (const char *)av,
                               iy_attachment_encode(&r->atts[i].a, av));
    }
    for (size_t i = 0; rc == 0 && i < r->npush; i++) {
        const round_msg *rm = &r->msgs[r->push[i].msg];
        rc = rocks_push_queue(s, s->wb, r->push[i].user, &rm->m, rm->text, rm->text_len);
    }
    if (rc) return rc;
    rocks_put_meta(s, s->wb, r->nmsgs);

    if (s->fail_next) {
        s->fail_next = 0;
        rc = IY_EIO;   /* an injected failure (tests) */
    } else {
        rc = rocks_write_guarded(s, s->wopt, s->wb);
    }
    rocksdb_writebatch_clear(s->wb);
    iy_kv_clear(&s->ovl);
    if (rc) return rc;

    /* Committed: the caches follow. */
    put_channels(s, r, 1);
    for (size_t i = 0; i < r->nchans; i++)
        if (r->chans[i].seq != r->chans[i].seq0) u64map_set(&s->seq, r->chans[i].ch.id, r->chans[i].seq);
    for (size_t i = 0; i < r->nusers; i++)
        if (r->users[i].pos != r->users[i].pos0) u64map_set(&s->pos, r->users[i].id, r->users[i].pos);
    s->total_msgs += r->nmsgs;
    return 0;
}

/* ---- reading messages ------------------------------------------------------ */

/* Decodes an 'M' value into m (text copied, NUL-terminated). */
static int msg_decode(const char *v, size_t vl, uint64_t channel, uint64_t seq, iy_msg *m)
{
    rd r = { (const uint8_t *)v, vl, 0 };
    memset(m, 0, sizeof *m);
    m->channel = channel;
    m->seq = seq;
    m->id = rd_u64(&r);
    m->from = rd_u64(&r);
    unsigned flags = rd_u8(&r);
    rd_str(&r, flags & ~MSG_F_EVENT, m->cmid, IY_CMID_MAX);
    if (flags & MSG_F_EVENT) {
        m->event = (int)rd_u8(&r);
        if (m->event == MSG_EV_STATE) {
            m->event = IY_EV_NONE;
            unsigned st = rd_u8(&r);
            if (st & MSG_S_EDITED) m->edited_ms = (int64_t)rd_u64(&r);
            m->deleted = (st & MSG_S_DELETED) != 0;
            if (st & MSG_S_REPLY) {
                m->reply_to = rd_u64(&r);
                m->reply_seq = rd_u64(&r);
            }
            if (st & MSG_S_REACTIONS) {
                size_t rl = rd_u16(&r);
                const uint8_t *rp = rd_mem(&r, rl);
                if (rp) m->reactions = iy_reactions_decode(rp, rl, &r.bad);
            }
            if (st & MSG_S_ATTACH) {
                size_t al = rd_u16(&r);
                const uint8_t *ap = rd_mem(&r, al);
                if (ap) m->atts = iy_atts_decode(ap, al, &r.bad);
            }
        }
        if (m->event != IY_EV_NONE) {
            m->subject = rd_u64(&r);
        } else {
            m->nmentions = rd_u8(&r);
            if (m->nmentions > IY_MENTIONS_MAX) r.bad = 1;
            for (uint32_t i = 0; !r.bad && i < m->nmentions; i++) m->mentions[i] = rd_u64(&r);
        }
    }
    if (r.bad) {
        iy_free(m->reactions);
        m->reactions = NULL;
        iy_free(m->atts);
        m->atts = NULL;
        return rocks_corrupt("message");
    }
    m->ts = iy_id_ts(m->id);
    m->text = iy_strndup((const char *)r.p, r.n);
    m->text_len = r.n;
    return 0;
}

/* A new zeroed element at the end of l, which has room for cap elements. */
static iy_msg *list_push(iy_msg_list *l, size_t *cap)
{
    if (l->n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        l->v = iy_realloc(l->v, *cap * sizeof *l->v);
    }
    iy_msg *m = &l->v[l->n++];
    memset(m, 0, sizeof *m);
    return m;
}

int rocks_history_v(const rview *rv, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                     int limit, iy_msg_list *out)
{
    uint8_t lo[9], hi[9], target[17];
    size_t cap = 0;
    out->v = NULL;
    out->n = 0;
    if (limit <= 0 || (before_seq == 0 && after_seq == UINT64_MAX)) return 0;

    key1(lo, K_MSG, channel);
    rocksdb_iterator_t *it = rocks_scan_open(rv, lo, 9, hi, key1_succ(hi, K_MSG, channel));
    if (before_seq) rocksdb_iter_seek_for_prev(it, (const char *)target,
                                               key2(target, K_MSG, channel, before_seq - 1));
    else rocksdb_iter_seek(it, (const char *)target, key2(target, K_MSG, channel, after_seq + 1));
    int rc = 0;
    while (rc == 0 && out->n < (size_t)limit && rocksdb_iter_valid(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl != 17) {
            rc = rocks_corrupt("message key");
            break;
        }
        iy_msg *m = list_push(out, &cap);
        if ((rc = msg_decode(v, vl, channel, get64(k + 9), m)) != 0) out->n--;
        if (before_seq) rocksdb_iter_prev(it);
        else rocksdb_iter_next(it);
    }
    int rc2 = rocks_scan_close(it);
    if (rc == 0) rc = rc2;
    if (rc) iy_msg_list_clear(out);
    return rc;
}

int rocks_history(store *st, uint64_t channel, uint64_t before_seq, uint64_t after_seq, int limit,
                  iy_msg_list *out)
{
    rview rv = rocks_view((rocks *)st);
    return rocks_history_v(&rv, channel, before_seq, after_seq, limit, out);
}

/* Reads message (channel, seq) into m: 0, IY_EIO (also if it is missing:
 * an inbox entry always has its message). */
int rocks_msg_get(const rview *rv, uint64_t channel, uint64_t seq, iy_msg *m)
{
    uint8_t k[17];
    char *err = NULL;
    rocksdb_pinnableslice_t *ps = rocksdb_get_pinned(rv->db, rv->ropt, (const char *)k,
                                                     key2(k, K_MSG, channel, seq), &err);
    if (err) return rocks_rerr(err, "get");
    if (!ps) return rocks_corrupt("inbox");
    size_t vl;
    const char *v = rocksdb_pinnableslice_value(ps, &vl);
    int rc = msg_decode(v, vl, channel, seq, m);
    rocksdb_pinnableslice_destroy(ps);
    return rc;
}

int rocks_sync_v(const rview *rv, uint64_t user, uint64_t after, int limit, iy_msg_list *out,
                  int *more)
{
    uint8_t lo[9], hi[9], start[17];
    size_t cap = 0;
    out->v = NULL;
    out->n = 0;
    *more = 0;
    if (after == UINT64_MAX) return 0;

    key1(lo, K_INBOX, user);
    rocksdb_iterator_t *it = rocks_scan_open(rv, lo, 9, hi, key1_succ(hi, K_INBOX, user));
    rocksdb_iter_seek(it, (const char *)start, key2(start, K_INBOX, user, after + 1));
    int rc = 0;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        if (out->n >= (size_t)(limit > 0 ? limit : 0)) {
            *more = 1;
            break;
        }
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl != 17 || vl != 16) {
            rc = rocks_corrupt("inbox");
            break;
        }
        iy_msg *m = list_push(out, &cap);
        if ((rc = rocks_msg_get(rv, get64(v), get64(v + 8), m)) != 0) {
            out->n--;
            break;
        }
        m->pos = get64(k + 9);
    }
    int rc2 = rocks_scan_close(it);
    if (rc == 0) rc = rc2;
    if (rc) {
        iy_msg_list_clear(out);
        *more = 0;
    }
    return rc;
}

int rocks_sync(store *st, uint64_t user, uint64_t after, int limit, iy_msg_list *out, int *more)
{
    rview rv = rocks_view((rocks *)st);
    return rocks_sync_v(&rv, user, after, limit, out, more);
}

int rocks_channel_last(store *st, uint64_t channel, iy_msg *out)
{
    rview rv = rocks_view((rocks *)st);
    uint8_t lo[9], target[17];
    key1(lo, K_MSG, channel);
    key2(target, K_MSG, channel, UINT64_MAX);
    rocksdb_iterator_t *it = rocks_scan_open(&rv, lo, 9, NULL, 0);
    rocksdb_iter_seek_for_prev(it, (const char *)target, 17);
    int rc = IY_ENOTFOUND;
    if (rocksdb_iter_valid(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl == 17 && memcmp(k, lo, 9) == 0) rc = msg_decode(v, vl, channel, get64(k + 9), out);
    }
    int rc2 = rocks_scan_close(it);
    if (rc2 && rc == 0) iy_msg_clear(out);
    return rc2 ? rc2 : rc;
}


/* ---- messages by id (edits and deletes) ------------------------------------ */

/* The channel and seq of message id (the 'i' record of its round, found
 * by seeking to the greatest first id <= id, then a binary search in it):
 * 0, IY_ENOTFOUND, IY_EIO. */
int rocks_msg_locate(const rview *rv, uint64_t id, uint64_t *channel, uint64_t *seq)
{
    uint8_t lo[1] = { K_MSGID }, target[9];
    rocksdb_iterator_t *it = rocks_scan_open(rv, lo, 1, NULL, 0);
    rocksdb_iter_seek_for_prev(it, (const char *)target, key1(target, K_MSGID, id));
    int rc = IY_ENOTFOUND;
    if (rocksdb_iter_valid(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl == 9 && k[0] == K_MSGID) {
            if (vl % 24 != 0 || vl == 0) {
                rc = rocks_corrupt("message index");
            } else {
                size_t a = 0, b = vl / 24;
                while (a < b) {
                    size_t mid = a + (b - a) / 2;
                    uint64_t x = get64(v + 24 * mid);
                    if (x == id) {
                        *channel = get64(v + 24 * mid + 8);
                        *seq = get64(v + 24 * mid + 16);
                        rc = 0;
                        break;
                    }
                    if (x < id) a = mid + 1;
                    else b = mid;
                }
            }
        }
    }
    int rc2 = rocks_scan_close(it);
    return rc2 ? rc2 : rc;
}

int rocks_target_locate(store *st, uint64_t id, uint64_t *channel)
{
    uint64_t seq;
    rview rv = rocks_view((rocks *)st);
    return rocks_msg_locate(&rv, id, channel, &seq);
}

int rocks_targets_load(store *st, store_round *r)
{
    rocks *s = (rocks *)st;
    rview rv = rocks_view(s);
    for (size_t i = 0; i < r->ntargets; i++) {
        uint64_t channel, seq;
        iy_msg m;
        if (!r->targets[i].channel) continue;
        int rc = rocks_msg_locate(&rv, r->targets[i].id, &channel, &seq);
        if (rc == IY_ENOTFOUND || (rc == 0 && channel != r->targets[i].channel)) continue;
        if (rc == 0) rc = rocks_msg_get(&rv, channel, seq, &m);
        if (rc) return rc;
        round_put_target(r, i, &m);
    }
    return 0;
}

int rocks_build_msgid_index(rocks *s)
{
    uint8_t lo[1] = { K_MSG }, hi[1] = { K_MSG + 1 };
    rview rv = rocks_view(s);
    rocksdb_iterator_t *it = rocks_scan_open(&rv, lo, 1, hi, 1);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, 1); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        rd r = { (const uint8_t *)rocksdb_iter_value(it, &vl), 0, 0 };
        r.n = vl;
        uint64_t id = rd_u64(&r);
        rd_u64(&r);
        unsigned flags = rd_u8(&r);
        char cmid[IY_CMID_MAX + 1];
        rd_str(&r, flags & ~MSG_F_EVENT, cmid, IY_CMID_MAX);
        unsigned event = flags & MSG_F_EVENT ? rd_u8(&r) : IY_EV_NONE;
        if (kl != 17 || r.bad) {
            rc = rocks_corrupt("message");
            break;
        }
        if (event != IY_EV_NONE) continue;   /* events are never changed */
        uint8_t ik[9], iv[24];   /* a record of one message (see put_id_index) */
        put64(iv, id);
        memcpy(iv + 8, k + 1, 16);
        rocksdb_writebatch_put(wb, (const char *)ik, key1(ik, K_MSGID, id), (const char *)iv, 24);
        if (rocksdb_writebatch_count(wb) >= 10000) {
            if ((rc = rocks_write(s, wb, 0)) != 0) wb = NULL;
            else wb = rocksdb_writebatch_create();
        }
    }
    int rc2 = rocks_scan_close(it);
    if (rc == 0) rc = rc2;
    if (rc) {
        if (wb) rocksdb_writebatch_destroy(wb);
        return rc;
    }
    return rocks_write(s, wb, 1);
}
