/* post.c — one send checked by the rules and appended to a round (post.h). */
#include "post.h"
#include <string.h>
#include "../base/err.h"
#include "../model/rules.h"
#include "limiter.h"

/* The members a message's text names as @username (not its sender), into a. */
static void mentions_of(store_round *r, const iy_send *in, const uint64_t *members, uint32_t n, store_append *a)
{
    char names[IY_MENTIONS_MAX][IY_USERNAME_MAX + 1];
    size_t k = in->event == IY_EV_NONE ? rules_mention_names(in->text, in->text_len, names, IY_MENTIONS_MAX) : 0;
    a->nmentions = 0;
    for (size_t i = 0; i < k; i++) {
        uint64_t u = store_round_name(r, names[i]);
        if (u && u != in->from && rules_find(members, n, u) >= 0) a->mentions[a->nmentions++] = u;
    }
}

/* The uploads a message carries, checked: each the sender's own, not sent
 * yet (in this round either), named once. 0 with *out, or IY_EINVAL. */
static int attachments_of(store_round *r, const iy_send *in, iy_atts *out)
{
    out->n = 0;
    for (uint32_t k = 0; k < in->nattachments; k++) {
        const iy_attachment *x = store_round_attachment(r, in->attachments[k]);
        if (!x || x->uploader != in->from || x->channel != 0) return IY_EINVAL;
        for (uint32_t j = 0; j < k; j++)
            if (in->attachments[j] == in->attachments[k]) return IY_EINVAL;
        iy_att *t = &out->v[out->n++];
        t->id = x->id;
        t->size = x->size;
        t->thumb = x->thumb;
        memcpy(t->type, x->type, sizeof t->type);
        memcpy(t->name, x->name, sizeof t->name);
    }
    return 0;
}

const char *post_error_text(int err, const iy_send *in)
{
    int event = in->event;
    if (err == IY_EINVAL && in->nattachments)
        return "attachments must be your own uploads (POST /v1/uploads), each sent once";
    if (err == IY_EINVAL && in->reply_to) return "reply_to must be a message of this conversation";
    if (!iy_event_changes_message(event)) return NULL;
    switch (err) {
    case IY_ENOTFOUND: return "no such message";
    case IY_EFORBIDDEN: return event == IY_EV_EDITED ? "only its author may edit a message, within 24 hours"
                                                      : "only its author or the group's owner may delete a message";
    case IY_ECONFLICT: return event == IY_EV_REACTED ? "you already reacted with that" : "you have no such reaction";
    case IY_ETOOBIG: return "a message takes at most 20 different reactions, each from at most 100 people";
    default: return NULL;
    }
}

int post_send(store_round *r, const iy_send *in, iy_stored *out)
{
    return post_send_limited(r, in, NULL, 0, out);
}

int post_send_limited(store_round *r, const iy_send *in, limiter *new_directs, int64_t now_ms,
                      iy_stored *out)
{
    iy_channel ch;
    int rc = rules_send_shape(in);
    if (rc) return rc;
    if (iy_event_changes_message(in->event)) {
        /* An edit, a delete or a reaction: an event of the changed message's channel
         * (now_ms 0, post_send: no edit window). */
        const iy_msg *t = store_round_target(r, in->target);
        const iy_channel *tc = t ? store_round_channel(r, t->channel) : NULL;
        if ((rc = rules_change(tc, in, t, now_ms ? now_ms : t ? t->ts : 0, out)) != 0) return rc;
        store_append a = { .in = in, .channel = tc->id, .members = out->members, .nmembers = out->nmembers,
                            .sender_read = 1 };
        uint64_t owner = out->owner, seq = t->seq, author = t->from;
        rc = store_round_append(r, &a, out);
        out->owner = owner;
        out->target_seq = seq;
        out->target_from = author;
        return rc;
    }
    const char *cmid = rules_send_cmid(in);
    if (cmid[0] && store_round_cmid(r, in->from, cmid, out) == IY_EEXIST) return IY_EEXIST;

    /* A blocked user neither starts a direct chat with its blocker nor
     * sends to their direct channel; nothing is stored. */
    uint64_t peer = store_round_direct_peer(r, in);
    if (peer && store_round_blocked(r, peer, in->from)) return IY_EFORBIDDEN;

    store_append a = { .in = in, .sender_read = 1 };
    iy_atts atts;
    if (in->nattachments) {
        if ((rc = attachments_of(r, in, &atts)) != 0) return rc;
        a.atts = &atts;
    }
    uint64_t channel = in->channel;
    if (in->to) {
        rules_direct_pair(in->from, in->to, &a.pair[0], &a.pair[1]);
        if (store_round_direct(r, a.pair[0], a.pair[1], &channel) != 0) {
            /* The first message between them creates their channel (nothing to reply to). */
            if (in->reply_to) return IY_EINVAL;
            if ((rc = store_round_user_live(r, in->to)) != 1) return rc ? rc : IY_ENOTFOUND;
            if (new_directs && limiter_take(new_directs, in->from, now_ms)) return IY_ERATE;
            a.members = a.pair;
            a.nmembers = 2;
            mentions_of(r, in, a.pair, 2, &a);
            out->owner = 0;
            return store_round_append(r, &a, out);
        }
    }
    const iy_channel *c = store_round_channel(r, channel);
    if (!c) return IY_ENOTFOUND;
    if (in->reply_to && rules_is_member(c, in->from) && (rc = rules_reply(channel, store_round_target(r, in->reply_to))))
        return rc;
    ch = *c;
    int subject_exists = in->event == IY_EV_MEMBER_ADDED && store_round_user_exists(r, in->subject);
    if ((rc = rules_post(&ch, in, subject_exists, out)) != 0) return rc;
    a.channel = channel;
    a.changed = in->event != IY_EV_NONE ? &ch : NULL;
    a.members = out->members;
    a.nmembers = out->nmembers;
    mentions_of(r, in, out->members, out->nmembers, &a);
    uint64_t owner = out->owner;
    rc = store_round_append(r, &a, out);
    out->owner = owner;
    return rc;
}

