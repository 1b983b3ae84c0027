/* round.c — the commit round's view and number assignment, shared by the
 * backends (store_int.h). The backend loads; this file collects the keys,
 * answers the lookups, assigns id, seq and pos, and records the writes. */
#include "store_int.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../model/rules.h"
#include <string.h>

#define CMID_KEY_MAX (8 + IY_CMID_MAX)

static void put64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static uint64_t get64be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

void round_pair_key(uint8_t k[16], uint64_t a, uint64_t b)
{
    put64be(k, a);
    put64be(k + 8, b);
}

static size_t cmid_key(uint8_t *k, uint64_t user, const char *cmid, size_t cl)
{
    put64be(k, user);
    memcpy(k + 8, cmid, cl);
    return 8 + cl;
}

/* Appends x to a growable array of uint64_t unless `seen` has it. */
static void key_add(uint64_t **v, size_t *n, size_t *cap, u64map *seen, uint64_t x)
{
    if (!x || u64map_find(seen, x)) return;
    u64map_set(seen, x, 1);
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = iy_realloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = x;
}

int store_round_begin(store *s, const iy_send *sends, size_t n, store_round **out)
{
    store_base *sb = (store_base *)s;
    if (sb->round) return IY_EINVAL;   /* one round at a time */
    store_round *r = iy_calloc(1, sizeof *r);
    r->s = s;
    r->sends = sends;
    r->nsends = n;
    u64map seen_ch = { 0 }, seen_u = { 0 };
    iy_kvmap seen_p = { 0 };
    size_t capc = 0, capu = 0, capp = 0;
    for (size_t i = 0; i < n; i++) {
        const iy_send *in = &sends[i];
        if (rules_send_shape(in) != 0) continue;   /* refused by the rules later, loads nothing */
        if (in->channel) key_add(&r->chan_keys, &r->nchan_keys, &capc, &seen_ch, in->channel);
        if (in->subject) key_add(&r->user_keys, &r->nuser_keys, &capu, &seen_u, in->subject);
        if (in->to) {
            uint64_t a, b;
            uint8_t k[16];
            const uint8_t *v;
            size_t vl;
            rules_direct_pair(in->from, in->to, &a, &b);
            key_add(&r->user_keys, &r->nuser_keys, &capu, &seen_u, a);
            key_add(&r->user_keys, &r->nuser_keys, &capu, &seen_u, b);
            round_pair_key(k, a, b);
            if (iy_kv_get(&seen_p, k, 16, &v, &vl)) continue;
            iy_kv_put(&seen_p, k, 16, "", 0);
            if (r->npair_keys == capp) {
                capp = capp ? capp * 2 : 16;
                r->pair_keys = iy_realloc(r->pair_keys, 2 * capp * sizeof *r->pair_keys);
            }
            r->pair_keys[2 * r->npair_keys] = a;
            r->pair_keys[2 * r->npair_keys + 1] = b;
            r->npair_keys++;
        }
    }
    /* The @usernames of the texts (mentions), distinct. */
    iy_kvmap seen_n = { 0 };
    size_t capn = 0;
    for (size_t i = 0; i < n; i++) {
        const iy_send *in = &sends[i];
        if (in->event != IY_EV_NONE || rules_send_shape(in) != 0) continue;
        char names[IY_MENTIONS_MAX][IY_USERNAME_MAX + 1];
        size_t k = rules_mention_names(in->text, in->text_len, names, IY_MENTIONS_MAX);
        for (size_t j = 0; j < k; j++) {
            const uint8_t *v;
            size_t vl, nl = strlen(names[j]);
            if (iy_kv_get(&seen_n, names[j], nl, &v, &vl) == 1) continue;
            iy_kv_put(&seen_n, names[j], nl, "", 0);
            if (r->nname_keys == capn) {
                capn = capn ? capn * 2 : 16;
                r->name_keys = iy_realloc(r->name_keys, capn * sizeof *r->name_keys);
            }
            memcpy(r->name_keys[r->nname_keys++], names[j], nl + 1);
        }
    }
    iy_kv_free(&seen_n);
    sb->round = r;
    /* The messages changed (edits, deletes) or replied to: their channels
     * join the load. A changed one is found by its id alone (the index); a
     * reply to a channel names the channel the original must be in, so it
     * is looked for there only (first pass: changes, second: replies). */
    int rc = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; rc == 0 && i < n; i++) {
            const iy_send *in = &sends[i];
            int change = iy_event_changes_message(in->event);
            uint64_t id = change ? in->target : in->reply_to;
            if (!id || change != (pass == 0) || rules_send_shape(in) != 0) continue;
            if (u64map_find(&r->target_idx, id)) continue;
            if (r->ntargets == r->captargets) {
                r->captargets = r->captargets ? r->captargets * 2 : 16;
                r->targets = iy_realloc(r->targets, r->captargets * sizeof *r->targets);
            }
            round_target *t = &r->targets[r->ntargets++];
            u64map_set(&r->target_idx, id, r->ntargets);
            memset(t, 0, sizeof *t);
            t->id = id;
            if (!change && in->channel) t->channel = in->channel;
            else rc = sb->ops->target_locate(s, t->id, &t->channel);
            if (rc == IY_ENOTFOUND) rc = 0, t->channel = 0;
            if (rc == 0 && t->channel) key_add(&r->chan_keys, &r->nchan_keys, &capc, &seen_ch, t->channel);
        }
    }
    /* The uploads the messages carry. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const iy_send *in = &sends[i];
        if (!in->nattachments || rules_send_shape(in) != 0) continue;
        for (uint32_t k = 0; k < in->nattachments; k++) {
            uint64_t id = in->attachments[k];
            if (!id || u64map_find(&r->att_idx, id)) continue;
            if (r->natts == r->capatts) {
                r->capatts = r->capatts ? r->capatts * 2 : 16;
                r->atts = iy_realloc(r->atts, r->capatts * sizeof *r->atts);
            }
            round_att *at = &r->atts[r->natts++];
            memset(at, 0, sizeof *at);
            at->id = id;
            u64map_set(&r->att_idx, id, r->natts);
        }
    }
    u64map_free(&seen_ch);
    u64map_free(&seen_u);
    iy_kv_free(&seen_p);
    if (rc == 0) rc = sb->ops->round_load(s, r);
    if (rc == 0 && r->ntargets) rc = sb->ops->targets_load(s, r);
    if (rc == 0 && sb->ops->blocks_load) rc = sb->ops->blocks_load(s, r);
    if (rc == 0 && r->nname_keys) rc = sb->ops->names_load(s, r);
    if (rc == 0 && r->natts) rc = sb->ops->attachments_load(s, r);
    if (rc) {
        store_round_abort(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* ---- filling the view ---- */

round_chan *round_chan_get(const store_round *r, uint64_t id)
{
    uint64_t *i = id ? u64map_find(&r->chan_idx, id) : NULL;
    return i ? &r->chans[*i - 1] : NULL;
}

round_user *round_user_get(const store_round *r, uint64_t id)
{
    uint64_t *i = id ? u64map_find(&r->user_idx, id) : NULL;
    return i ? &r->users[*i - 1] : NULL;
}

static round_chan *chan_add(store_round *r, uint64_t id)
{
    round_chan *c = round_chan_get(r, id);
    if (c) return c;
    if (r->nchans == r->capchans) {
        r->capchans = r->capchans ? r->capchans * 2 : 16;
        r->chans = iy_realloc(r->chans, r->capchans * sizeof *r->chans);
    }
    c = &r->chans[r->nchans++];
    memset(c, 0, sizeof *c);
    u64map_set(&r->chan_idx, id, r->nchans);
    return c;
}

void round_put_channel(store_round *r, const iy_channel *ch, uint64_t seq)
{
    round_chan *c = chan_add(r, ch->id);
    c->ch = *ch;
    c->seq0 = c->seq = seq;
}

void round_put_pair(store_round *r, uint64_t a, uint64_t b, uint64_t channel)
{
    uint8_t k[16], v[8];
    round_pair_key(k, a, b);
    put64be(v, channel);
    iy_kv_put(&r->pairs, k, 16, v, 8);
}

void round_put_user(store_round *r, uint64_t user, uint64_t pos)
{
    round_user *u = round_user_get(r, user);
    if (!u) {
        if (r->nusers == r->capusers) {
            r->capusers = r->capusers ? r->capusers * 2 : 64;
            r->users = iy_realloc(r->users, r->capusers * sizeof *r->users);
        }
        u = &r->users[r->nusers++];
        u64map_set(&r->user_idx, user, r->nusers);
    }
    u->id = user;
    u->pos0 = u->pos = pos;
}

void round_put_cmid(store_round *r, uint64_t user, const char *cmid, size_t cl, uint64_t channel,
                    uint64_t seq, uint64_t id, uint64_t sender_pos)
{
    uint8_t k[CMID_KEY_MAX], v[32];
    if (cl > IY_CMID_MAX) return;
    put64be(v, channel);
    put64be(v + 8, seq);
    put64be(v + 16, id);
    put64be(v + 24, sender_pos);
    iy_kv_put(&r->cmids, k, cmid_key(k, user, cmid, cl), v, 32);
}

void round_put_block(store_round *r, uint64_t blocker, uint64_t blocked)
{
    uint8_t k[16];
    round_pair_key(k, blocker, blocked);
    iy_kv_put(&r->blocks, k, 16, "", 0);
}

void round_put_name(store_round *r, const char *name, uint64_t user)
{
    uint8_t v[8];
    put64be(v, user);
    iy_kv_put(&r->names, name, strlen(name), v, 8);
}

void round_put_target(store_round *r, size_t i, iy_msg *m)
{
    round_target *t = &r->targets[i];
    iy_msg_clear(&t->m);
    t->m = *m;                  /* the round owns its text and reactions now */
    memset(m, 0, sizeof *m);
    t->text = t->m.text ? t->m.text : "";
    t->text_len = t->m.text_len;
    t->loaded = 1;
}

void round_put_attachment(store_round *r, size_t i, const iy_attachment *a)
{
    r->atts[i].a = *a;
    r->atts[i].loaded = 1;
}

static round_att *att_get(store_round *r, uint64_t id)
{
    uint64_t *i = id ? u64map_find(&r->att_idx, id) : NULL;
    return i && r->atts[*i - 1].loaded ? &r->atts[*i - 1] : NULL;
}

/* ... and nobody fetches them any more: their records are marked in the
 * commit (channel IY_ATTACH_GONE). */
static void atts_gone(store_round *r, const iy_msg *m)
{
    for (uint32_t k = 0; m->atts && k < m->atts->n; k++) {
        const iy_att *x = &m->atts->v[k];
        uint64_t *i = u64map_find(&r->att_idx, x->id);
        round_att *at;
        if (i) {
            at = &r->atts[*i - 1];
        } else {
            if (r->natts == r->capatts) {
                r->capatts = r->capatts ? r->capatts * 2 : 16;
                r->atts = iy_realloc(r->atts, r->capatts * sizeof *r->atts);
            }
            at = &r->atts[r->natts++];
            memset(at, 0, sizeof *at);
            at->id = x->id;
            u64map_set(&r->att_idx, x->id, r->natts);
            at->a.id = x->id;
            at->a.uploader = m->from;
            at->a.size = x->size;
            at->a.thumb = x->thumb;
            memcpy(at->a.type, x->type, sizeof at->a.type);
            memcpy(at->a.name, x->name, sizeof at->a.name);
        }
        at->loaded = 1;
        at->a.channel = IY_ATTACH_GONE;
        at->a.message = m->id;
        at->changed = 1;
    }
}

const iy_attachment *store_round_attachment(store_round *r, uint64_t id)
{
    round_att *at = att_get(r, id);
    return at ? &at->a : NULL;
}

static round_target *target_get(store_round *r, uint64_t id)
{
    uint64_t *i = id ? u64map_find(&r->target_idx, id) : NULL;
    return i && r->targets[*i - 1].loaded ? &r->targets[*i - 1] : NULL;
}

const iy_msg *store_round_target(store_round *r, uint64_t id)
{
    round_target *t = target_get(r, id);
    return t ? &t->m : NULL;
}

uint64_t store_round_name(store_round *r, const char *name)
{
    const uint8_t *v;
    size_t vl;
    if (iy_kv_get(&r->names, name, strlen(name), &v, &vl) != 1 || vl != 8) return 0;
    return get64be(v);
}

void round_put_mute(store_round *r, uint64_t channel, uint64_t user)
{
    uint8_t k[16];
    round_pair_key(k, channel, user);
    iy_kv_put(&r->mutes, k, 16, "", 0);
}

/* ---- lookups ---- */

int store_round_muted(store_round *r, uint64_t user, uint64_t channel)
{
    uint8_t k[16];
    const uint8_t *v;
    size_t vl;
    round_pair_key(k, channel, user);
    return iy_kv_get(&r->mutes, k, 16, &v, &vl) == 1;
}

int store_round_blocked(store_round *r, uint64_t blocker, uint64_t blocked)
{
    uint8_t k[16];
    const uint8_t *v;
    size_t vl;
    round_pair_key(k, blocker, blocked);
    return iy_kv_get(&r->blocks, k, 16, &v, &vl) == 1;
}

uint64_t store_round_direct_peer(store_round *r, const iy_send *in)
{
    if (in->event != IY_EV_NONE || rules_send_shape(in) != 0) return 0;
    if (in->to) return in->to;
    const round_chan *c = round_chan_get(r, in->channel);
    if (!c || c->ch.kind != IY_DIRECT || c->ch.nmembers != 2) return 0;
    if (c->ch.members[0] == in->from) return c->ch.members[1];
    return c->ch.members[1] == in->from ? c->ch.members[0] : 0;
}

const iy_channel *store_round_channel(store_round *r, uint64_t id)
{
    round_chan *c = round_chan_get(r, id);
    return c ? &c->ch : NULL;
}

int store_round_direct(store_round *r, uint64_t a, uint64_t b, uint64_t *channel)
{
    uint8_t k[16];
    const uint8_t *v;
    size_t vl;
    round_pair_key(k, a, b);
    if (iy_kv_get(&r->pairs, k, 16, &v, &vl) != 1 || vl != 8) return IY_ENOTFOUND;
    *channel = get64be(v);
    return 0;
}

int store_round_user_exists(store_round *r, uint64_t user)
{
    return round_user_get(r, user) != NULL;
}

int store_round_user_live(store_round *r, uint64_t user)
{
    iy_user u;
    if (!round_user_get(r, user)) return 0;
    int rc = store_user_get(r->s, user, &u);
    return rc == 0 ? 1 : rc == IY_ENOTFOUND ? 0 : rc;
}

int store_round_cmid(store_round *r, uint64_t user, const char *cmid, iy_stored *orig)
{
    size_t cl = strlen(cmid);
    uint8_t k[CMID_KEY_MAX];
    const uint8_t *v;
    size_t vl;
    if (cl == 0 || cl > IY_CMID_MAX) return 0;
    if (iy_kv_get(&r->cmids, k, cmid_key(k, user, cmid, cl), &v, &vl) != 1 || vl != 32) return 0;
    memset(&orig->msg, 0, sizeof orig->msg);
    orig->msg.channel = get64be(v);
    orig->msg.seq = get64be(v + 8);
    orig->msg.id = get64be(v + 16);
    orig->msg.pos = get64be(v + 24);
    orig->msg.from = user;
    orig->msg.ts = iy_id_ts(orig->msg.id);
    memcpy(orig->msg.cmid, cmid, cl + 1);
    orig->nmembers = 0;
    return IY_EEXIST;
}

/* ---- appending ---- */

int store_round_append(store_round *r, const store_append *a, iy_stored *out)
{
    store_base *sb = (store_base *)r->s;
    const iy_send *in = a->in;
    round_target *t = NULL;
    if (a->nmembers > IY_GROUP_MAX + 1) return IY_EINVAL;
    if (iy_event_changes_message(in->event) && (!(t = target_get(r, in->target)) || t->m.channel != a->channel))
        return IY_ENOTFOUND;
    round_chan *c = a->channel ? round_chan_get(r, a->channel) : NULL;
    if (a->channel && !c) return IY_ENOTFOUND;
    for (uint32_t i = 0; i < a->nmembers; i++)
        if (!round_user_get(r, a->members[i])) return IY_ENOTFOUND;
    /* From here on nothing fails. */

    if (!c) {
        /* The first message of a pair creates its direct channel. */
        iy_channel d;
        memset(&d, 0, sizeof d);
        d.id = iy_id_next(&sb->ids);
        d.kind = IY_DIRECT;
        d.nmembers = 2;
        d.members[0] = a->pair[0];
        d.members[1] = a->pair[1];
        c = chan_add(r, d.id);
        c->ch = d;
        c->created = 1;
        round_put_pair(r, a->pair[0], a->pair[1], d.id);
    }
    if (a->changed) {
        c->ch = *a->changed;
        c->ch.id = c->ch.id ? c->ch.id : a->channel;
        c->changed = 1;
    }

    if (r->nmsgs == r->capmsgs) {
        r->capmsgs = r->capmsgs ? r->capmsgs * 2 : 64;
        r->msgs = iy_realloc(r->msgs, r->capmsgs * sizeof *r->msgs);
    }
    round_msg *rm = &r->msgs[r->nmsgs++];
    memset(rm, 0, sizeof *rm);
    const char *cmid = rules_send_cmid(in);
    size_t cl = strlen(cmid);
    rm->m.id = iy_id_next(&sb->ids);
    rm->m.channel = c->ch.id;
    rm->m.seq = ++c->seq;
    rm->m.from = in->from;
    rm->m.ts = iy_id_ts(rm->m.id);
    memcpy(rm->m.cmid, cmid, cl + 1);
    rm->m.event = in->event;
    rm->m.subject = in->event == IY_EV_MEMBER_ADDED || in->event == IY_EV_MEMBER_REMOVED ? in->subject
                    : t ? in->target : 0;
    if (t) {
        /* The changed message shows its current state from this commit on. */
        t->changed = 1;
        if (in->event == IY_EV_EDITED) {
            t->m.edited_ms = rm->m.ts;
            t->text = in->text;
            t->text_len = in->text_len;
        } else if (in->event == IY_EV_DELETED) {
            t->m.deleted = 1;
            t->m.nmentions = 0;
            iy_free(t->m.reactions);
            t->m.reactions = NULL;
            atts_gone(r, &t->m);     /* a deleted message shows no attachments ... */
            iy_free(t->m.atts);
            t->m.atts = NULL;
            t->text = "";
            t->text_len = 0;
        } else {
            rules_react_apply(&t->m.reactions, in->text, in->text_len, in->from, in->event == IY_EV_REACTED);
        }
    }
    if (in->reply_to && in->event == IY_EV_NONE) {
        round_target *rt = target_get(r, in->reply_to);
        rm->m.reply_to = in->reply_to;
        rm->m.reply_seq = rt ? rt->m.seq : 0;
    }
    rm->m.text_len = in->text_len;
    rm->text = in->text_len ? in->text : "";
    rm->text_len = in->text_len;
    rm->sender_read = a->sender_read;
    rm->m.nmentions = a->nmentions > IY_MENTIONS_MAX ? IY_MENTIONS_MAX : a->nmentions;
    memcpy(rm->m.mentions, a->mentions, rm->m.nmentions * sizeof *rm->m.mentions);
    rm->n = a->nmembers;
    rm->members = iy_malloc((a->nmembers ? a->nmembers : 1) * sizeof *rm->members);
    rm->pos = iy_malloc((a->nmembers ? a->nmembers : 1) * sizeof *rm->pos);
    for (uint32_t i = 0; i < a->nmembers; i++) {
        round_user *u = round_user_get(r, a->members[i]);
        rm->members[i] = a->members[i];
        rm->pos[i] = ++u->pos;
        if (a->members[i] == in->from) rm->sender_pos = rm->pos[i];
    }
    rm->m.pos = rm->sender_pos;
    if (cl) round_put_cmid(r, in->from, cmid, cl, rm->m.channel, rm->m.seq, rm->m.id, rm->sender_pos);

    if (a->atts && a->atts->n && in->event == IY_EV_NONE) {
        rm->m.atts = iy_atts_copy(a->atts);
        for (uint32_t k = 0; k < a->atts->n; k++) {
            round_att *at = att_get(r, a->atts->v[k].id);
            if (!at) continue;
            at->a.channel = rm->m.channel;
            at->a.message = rm->m.id;
            at->changed = 1;
        }
    }
    out->msg = rm->m;
    out->msg.atts = iy_atts_copy(rm->m.atts);   /* the caller's own copy */
    out->nmembers = rm->n;
    memcpy(out->members, rm->members, rm->n * sizeof *rm->members);
    memcpy(out->pos, rm->pos, rm->n * sizeof *rm->pos);
    return 0;
}

int store_round_push(store_round *r, uint64_t user)
{
    if (r->nmsgs == 0) return IY_EINVAL;
    if (r->npush == r->cappush) {
        r->cappush = r->cappush ? r->cappush * 2 : 64;
        r->push = iy_realloc(r->push, r->cappush * sizeof *r->push);
    }
    r->push[r->npush].user = user;
    r->push[r->npush].msg = r->nmsgs - 1;   /* the message appended last */
    r->npush++;
    return 0;
}

size_t store_round_count(const store_round *r) { return r->nmsgs; }

int store_round_commit(store_round *r)
{
    store_base *sb = (store_base *)r->s;
    int rc = 0;
    if (r->nmsgs) rc = sb->ops->round_commit(r->s, r);
    if (rc == 0) sb->msg_count += r->nmsgs;
    store_round_abort(r);
    return rc;
}

void store_round_abort(store_round *r)
{
    if (!r) return;
    store_base *sb = (store_base *)r->s;
    if (sb->ops->round_release) sb->ops->round_release(r->s, r);
    if (sb->round == r) sb->round = NULL;
    for (size_t i = 0; i < r->nmsgs; i++) {
        iy_free(r->msgs[i].members);
        iy_free(r->msgs[i].pos);
        iy_free(r->msgs[i].m.atts);
    }
    iy_free(r->atts);
    u64map_free(&r->att_idx);
    iy_free(r->msgs);
    for (size_t i = 0; i < r->ntargets; i++) iy_msg_clear(&r->targets[i].m);
    iy_free(r->targets);
    u64map_free(&r->target_idx);
    iy_free(r->push);
    iy_free(r->chans);
    iy_free(r->users);
    u64map_free(&r->chan_idx);
    u64map_free(&r->user_idx);
    iy_kv_free(&r->pairs);
    iy_kv_free(&r->cmids);
    iy_kv_free(&r->blocks);
    iy_kv_free(&r->mutes);
    iy_kv_free(&r->names);
    iy_free(r->name_keys);
    iy_free(r->chan_keys);
    iy_free(r->pair_keys);
    iy_free(r->user_keys);
    iy_free(r);
}
