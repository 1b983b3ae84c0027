/* rules.c — the business rules (see rules.h). Pure functions. */
#include "rules.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include <stdlib.h>
#include <string.h>

int rules_find(const uint64_t *v, uint32_t n, uint64_t x)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v[mid] == x) return (int)mid;
        if (v[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

int rules_is_member(const iy_channel *c, uint64_t user)
{
    return rules_find(c->members, c->nmembers, user) >= 0;
}

const char *rules_send_cmid(const iy_send *in)
{
    return in->event == IY_EV_NONE && in->cmid ? in->cmid : "";
}

int rules_send_shape(const iy_send *in)
{
    int ev = in->event;
    if (in->from == 0) return IY_EINVAL;
    if (iy_event_changes_message(ev)) {
        if (!in->target || in->channel || in->to || in->reply_to) return IY_EINVAL;
        if (ev == IY_EV_REACTED || ev == IY_EV_UNREACTED)
            return in->text_len >= 1 && in->text_len <= IY_EMOJI_MAX && !memchr(in->text, '\0', in->text_len) ? 0 : IY_EINVAL;
        return 0;
    }
    if (in->target || (in->channel != 0) == (in->to != 0)) return IY_EINVAL;
    if (in->reply_to && ev != IY_EV_NONE) return IY_EINVAL;
    if (in->nattachments && (ev != IY_EV_NONE || in->nattachments > IY_ATTACH_PER_MSG || !in->attachments))
        return IY_EINVAL;
    if (in->to == in->from) return IY_EINVAL;
    if (strlen(rules_send_cmid(in)) > IY_CMID_MAX) return IY_EINVAL;
    if (ev < IY_EV_NONE || ev > IY_EV_DELETED) return IY_EINVAL;
    if (ev != IY_EV_NONE && in->to) return IY_EINVAL;
    return 0;
}

void rules_direct_pair(uint64_t from, uint64_t to, uint64_t *a, uint64_t *b)
{
    *a = from < to ? from : to;
    *b = from < to ? to : from;
}

static void members_to(iy_stored *out, const iy_channel *c)
{
    out->nmembers = c->nmembers;
    memcpy(out->members, c->members, c->nmembers * sizeof *c->members);
}

int rules_reply(uint64_t channel, const iy_msg *target)
{
    if (!target || target->channel != channel || target->event != IY_EV_NONE || target->deleted) return IY_EINVAL;
    return 0;
}

/* The index of emoji in r, or -1. */
static int reaction_find(const iy_reactions *r, const char *emoji, size_t len)
{
    for (uint32_t i = 0; r && i < r->n; i++)
        if (strlen(r->v[i].emoji) == len && memcmp(r->v[i].emoji, emoji, len) == 0) return (int)i;
    return -1;
}

static int reaction_has(const iy_reaction *x, uint64_t user)
{
    for (uint32_t j = 0; j < x->n; j++)
        if (x->users[j] == user) return (int)j;
    return -1;
}

static int react_check(const iy_reactions *r, const iy_send *in)
{
    int i = reaction_find(r, in->text, in->text_len);
    int has = i >= 0 && reaction_has(&r->v[i], in->from) >= 0;
    if (in->event == IY_EV_UNREACTED) return has ? 0 : IY_ECONFLICT;
    if (has) return IY_ECONFLICT;
    if (i < 0) return r && r->n >= IY_REACTIONS_MAX ? IY_ETOOBIG : 0;
    return r->v[i].n >= IY_REACTORS_MAX ? IY_ETOOBIG : 0;
}

void rules_react_apply(iy_reactions **rp, const char *emoji, size_t len, uint64_t user, int on)
{
    iy_reactions *r = *rp;
    int i = reaction_find(r, emoji, len);
    if (on) {
        if (!r) r = *rp = iy_calloc(1, sizeof *r);
        if (i < 0) {
            if (r->n >= IY_REACTIONS_MAX || len > IY_EMOJI_MAX) return;
            i = (int)r->n++;
            memset(&r->v[i], 0, sizeof r->v[i]);
            memcpy(r->v[i].emoji, emoji, len);
        }
        if (reaction_has(&r->v[i], user) < 0 && r->v[i].n < IY_REACTORS_MAX) r->v[i].users[r->v[i].n++] = user;
        return;
    }
    if (i < 0) return;
    iy_reaction *x = &r->v[i];
    int j = reaction_has(x, user);
    if (j < 0) return;
    memmove(x->users + j, x->users + j + 1, (x->n - (uint32_t)j - 1) * sizeof *x->users);
    if (--x->n == 0) {
        memmove(r->v + i, r->v + i + 1, (r->n - (uint32_t)i - 1) * sizeof *r->v);
        r->n--;
    }
    if (r->n == 0) {
        iy_free(r);
        *rp = NULL;
    }
}

int rules_change(const iy_channel *c, const iy_send *in, const iy_msg *target, int64_t now_ms,
                 iy_stored *out)
{
    if (!target || target->event != IY_EV_NONE || target->deleted || !c || target->channel != c->id)
        return IY_ENOTFOUND;
    if (!rules_is_member(c, in->from)) return IY_ENOTFOUND;
    if (in->event == IY_EV_EDITED) {
        if (in->from != target->from || now_ms - target->ts > IY_EDIT_WINDOW_MS) return IY_EFORBIDDEN;
    } else if (in->event == IY_EV_DELETED) {
        if (in->from != target->from && !(c->kind == IY_GROUP && in->from == c->owner)) return IY_EFORBIDDEN;
    } else if (in->event == IY_EV_REACTED || in->event == IY_EV_UNREACTED) {
        int rc = react_check(target->reactions, in);
        if (rc) return rc;
    } else {
        return IY_EINVAL;
    }
    members_to(out, c);
    out->owner = c->owner;
    return 0;
}

int rules_post(iy_channel *c, const iy_send *in, int subject_exists, iy_stored *out)
{
    int ev = in->event, i;
    /* Membership first: a non-member learns nothing of the channel, not
     * even that it is a direct one. */
    if (!rules_is_member(c, in->from)) return IY_EFORBIDDEN;
    if (ev != IY_EV_NONE && c->kind != IY_GROUP) return IY_EINVAL;
    switch (ev) {
    case IY_EV_NONE:
        break;
    case IY_EV_MEMBER_ADDED:
        if (rules_is_member(c, in->subject)) return IY_ECONFLICT;
        if (!subject_exists) return IY_ENOTFOUND;
        if (c->nmembers >= IY_GROUP_MAX) return IY_ETOOBIG;
        for (i = (int)c->nmembers; i > 0 && c->members[i - 1] > in->subject; i--)
            c->members[i] = c->members[i - 1];
        c->members[i] = in->subject;
        c->nmembers++;
        break;
    case IY_EV_MEMBER_REMOVED:
        if (in->from != in->subject && in->from != c->owner) return IY_EFORBIDDEN;
        if ((i = rules_find(c->members, c->nmembers, in->subject)) < 0) return IY_ENOTFOUND;
        members_to(out, c);   /* the removed member learns of it too */
        c->nmembers--;
        memmove(c->members + i, c->members + i + 1, (c->nmembers - (uint32_t)i) * sizeof *c->members);
        if (c->owner == in->subject) c->owner = c->nmembers ? c->members[0] : 0;
        out->owner = c->owner;
        return 0;
    case IY_EV_RENAMED:
        if (in->from != c->owner) return IY_EFORBIDDEN;
        if (in->text_len == 0 || in->text_len > IY_GROUP_NAME_MAX || memchr(in->text, '\0', in->text_len))
            return IY_EINVAL;
        memcpy(c->name, in->text, in->text_len);
        c->name[in->text_len] = '\0';
        break;
    default:
        return IY_EINVAL;
    }
    members_to(out, c);
    out->owner = c->owner;
    return 0;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

int rules_group_members(uint64_t creator, const char *name, const uint64_t *members, size_t n,
                        uint64_t *out, uint32_t *nout)
{
    *nout = 0;
    if (name && strlen(name) > IY_GROUP_NAME_MAX) return IY_EINVAL;
    if (n > 4 * IY_GROUP_MAX) return IY_ETOOBIG;   /* bounds the work below */
    uint64_t m[4 * IY_GROUP_MAX + 1];
    memcpy(m, members, n * sizeof *m);
    m[n] = creator;
    qsort(m, n + 1, sizeof *m, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i <= n; i++)
        if (m[i] != 0 && (u == 0 || m[i] != m[u - 1])) m[u++] = m[i];
    if (u > IY_GROUP_MAX) return IY_ETOOBIG;
    if (u < 2) return IY_EINVAL;
    memcpy(out, m, u * sizeof *m);
    *nout = (uint32_t)u;
    return 0;
}

uint64_t rules_read_seq(uint64_t seq, uint64_t last, uint64_t current)
{
    if (seq > last) seq = last;
    return seq > current ? seq : current;
}

int rules_friend_put(int state_before)
{
    return state_before == IY_FRIEND_INCOMING || state_before == IY_FRIEND_MUTUAL ? IY_FRIEND_MUTUAL
                                                                                 : IY_FRIEND_OUTGOING;
}

int rules_push_wanted(const iy_msg *m, uint64_t member, int member_online)
{
    return m->event == IY_EV_NONE && member != m->from && !member_online;
}

static int name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
}

size_t rules_mention_names(const char *text, size_t len, char (*names)[IY_USERNAME_MAX + 1], size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n < max; i++) {
        if (text[i] != '@' || (i > 0 && (name_char((unsigned char)text[i - 1]) || text[i - 1] == '@'))) continue;
        size_t j = i + 1;
        while (j < len && name_char((unsigned char)text[j])) j++;
        size_t nl = j - i - 1;
        /* A name ends before a final full stop (end of the sentence). */
        while (nl > 0 && text[i + nl] == '.') nl--;
        if (nl < IY_USERNAME_MIN || nl > IY_USERNAME_MAX) {
            i = j - 1;
            continue;
        }
        char name[IY_USERNAME_MAX + 1];
        for (size_t k = 0; k < nl; k++) {
            char c = text[i + 1 + k];
            name[k] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
        name[nl] = '\0';
        int dup = 0;
        for (size_t k = 0; k < n && !dup; k++) dup = strcmp(names[k], name) == 0;
        if (!dup) memcpy(names[n++], name, nl + 1);
        i = j - 1;
    }
    return n;
}

int rules_mentions(const iy_msg *m, uint64_t user)
{
    for (uint32_t i = 0; i < m->nmentions; i++)
        if (m->mentions[i] == user) return 1;
    return 0;
}
