/* rules.h — who may do what: the business rules of channels, groups,
 * membership events, read state and friends, as pure functions.
 *
 * Nothing here does I/O or keeps state: callers (the chat service's commit
 * round, the API handlers) load what a rule needs through the store, ask
 * the rule, and write what it decided. Storage backends never decide who
 * may do what (store/store.h); they store, and assign order atomically.
 *
 * Every function returns 0 or an IY_E* code of base/err.h, as documented. */
#ifndef IY_MODEL_RULES_H
#define IY_MODEL_RULES_H
#include <stddef.h>
#include <stdint.h>
#include "types.h"

/* The position of x in the ascending array v[0..n), or -1. */
int rules_find(const uint64_t *v, uint32_t n, uint64_t x);

/* 1 if user is a member of c, else 0. */
int rules_is_member(const iy_channel *c, uint64_t user);

/* The shape of a send, before anything is loaded: exactly one of channel and
 * to; not to oneself; cmid at most IY_CMID_MAX bytes; an event value in
 * range, and membership events only to a channel; EDITED and DELETED name a
 * target and neither channel nor to; reply_to only on a plain message.
 * Returns 0 or IY_EINVAL. */
int rules_send_shape(const iy_send *in);

/* The cmid a send is deduplicated by: "" for events (they never use cmid
 * idempotency) and for sends without one. */
const char *rules_send_cmid(const iy_send *in);

/* The direct channel's pair for a send to a user: *a < *b. */
void rules_direct_pair(uint64_t from, uint64_t to, uint64_t *a, uint64_t *b);

/* Adds (on) or removes user's reaction emoji[0..len) on *r, which it
 * allocates for the first and frees (NULL) with the last. Call only what
 * rules_change allowed. */
void rules_react_apply(iy_reactions **r, const char *emoji, size_t len, uint64_t user, int on);

/* May a message of channel `channel` reply to `target` (NULL: no such
 * message)? It must be a plain message of the same channel that was not
 * deleted. Returns 0 or IY_EINVAL (the contract's bad_request). */
int rules_reply(uint64_t channel, const iy_msg *target);

/* May in->from change (EDITED: the text; DELETED) the message `target`, of
 * channel c, as they are now (target NULL: no such message)? On success
 * out->members / nmembers / owner say whose inboxes get the event (every
 * member). Checked in this order:
 *   no such message, or it is an event, or deleted already  -> IY_ENOTFOUND
 *   from not a member of the message's channel             -> IY_ENOTFOUND
 *                                   (a non-member learns nothing of it)
 *   EDITED by anyone but the author, or later than
 *          IY_EDIT_WINDOW_MS after it was sent (now_ms)    -> IY_EFORBIDDEN
 *   DELETED by anyone but the author or a group's owner    -> IY_EFORBIDDEN
 *   REACTED (any member): that reaction of from's exists   -> IY_ECONFLICT,
 *          a new emoji past IY_REACTIONS_MAX, or a user past
 *          IY_REACTORS_MAX on one emoji                    -> IY_ETOOBIG
 *   UNREACTED: no such reaction of from's                  -> IY_ECONFLICT */
int rules_change(const iy_channel *c, const iy_send *in, const iy_msg *target, int64_t now_ms,
                 iy_stored *out);

/* May in->from post in->event (IY_EV_NONE: a message) into channel c, as it
 * is now? On success *c is the channel AFTER the change (events change the
 * membership, the owner or the name), and out->members / out->nmembers /
 * out->owner say whose inboxes get the message: the members after the change,
 * plus the removed user for MEMBER_REMOVED (who learns of its removal and
 * then gets nothing more). subject_exists tells whether in->subject is a user
 * (MEMBER_ADDED only). Checked in this order:
 *   from not a member (in an empty group: everyone)    -> IY_EFORBIDDEN
 *   an event on a channel that is not a group          -> IY_EINVAL
 *   MEMBER_ADDED:   already a member -> IY_ECONFLICT, no such user
 *                   -> IY_ENOTFOUND, IY_GROUP_MAX members -> IY_ETOOBIG
 *   MEMBER_REMOVED: someone else by a non-owner -> IY_EFORBIDDEN,
 *                   not a member -> IY_ENOTFOUND
 *   RENAMED:        by a non-owner -> IY_EFORBIDDEN; a name that is empty,
 *                   longer than IY_GROUP_NAME_MAX or holds a NUL -> IY_EINVAL
 * The owner leaving hands the group to the lowest remaining member id; an
 * empty group has no owner. On failure *c and *out are unspecified. */
int rules_post(iy_channel *c, const iy_send *in, int subject_exists, iy_stored *out);

/* The members of a new group: members[0..n) plus the creator, sorted,
 * without duplicates, into out (room for IY_GROUP_MAX), *nout of them.
 * Returns 0, IY_ETOOBIG (more than IY_GROUP_MAX in all), IY_EINVAL (fewer
 * than 2, or a name longer than IY_GROUP_NAME_MAX). */
int rules_group_members(uint64_t creator, const char *name, const uint64_t *members, size_t n,
                        uint64_t *out, uint32_t *nout);

/* The read seq to store when a member says it has read up to `seq` of a
 * channel whose newest seq is `last`, having read up to `current`: a seq
 * past the newest is clamped to it; the read state only moves forward.
 * Returns the new read seq (== current when nothing moves). */
uint64_t rules_read_seq(uint64_t seq, uint64_t last, uint64_t current);

/* Friend requests: a's PUT toward b, given the state from a's side before.
 * Returns the state from a's side afterwards (OUTGOING, or MUTUAL when b had
 * asked a, or it already was). */
int rules_friend_put(int state_before);

/* Whether a member gets a push notification for a stored message: not the
 * sender, not for membership events, and only with no device online. */
int rules_push_wanted(const iy_msg *m, uint64_t member, int member_online);

/* The @usernames in text: '@' then 3 to 32 of [a-z0-9_.-] (A-Z read as
 * a-z), not preceded by one of those characters (so no e-mail addresses)
 * and not followed by one (so not a longer name). Distinct, in the order
 * found, at most max of them into names; returns how many. */
size_t rules_mention_names(const char *text, size_t len, char (*names)[IY_USERNAME_MAX + 1], size_t max);

/* 1 if m mentions user. */
int rules_mentions(const iy_msg *m, uint64_t user);

#endif
