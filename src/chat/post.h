/* post.h — one send checked by the rules and appended to a commit round.
 *
 * The use case between the rules (model/rules.h) and the store's round
 * (store/store.h): the commit round (commit.c) calls it for every send,
 * and the store's contract tests drive the store through it, so the
 * backends are tested under exactly the rules the server applies. */
#ifndef IY_CHAT_POST_H
#define IY_CHAT_POST_H
#include "../model/types.h"
#include "../store/store.h"

/* Checks in against the round's view and appends it: the shape of the send;
 * a (from, cmid) seen before -> IY_EEXIST with *out the original; a send to
 * a user uses (or, for the first message between them, creates) their
 * direct channel; a channel must exist and rules_post must allow it (events
 * change the channel for the sends after it). Returns 0 (appended: *out
 * filled, owner included), IY_EEXIST, or the rule's error (nothing
 * appended). */
int post_send(store_round *r, const iy_send *in, iy_stored *out);

/* As post_send; a send that would create a direct channel first takes a
 * token of its sender from new_directs (NULL: no limit): IY_ERATE if there
 * is none, nothing appended. now_ms (wall clock) bounds edits to
 * IY_EDIT_WINDOW_MS after the message; post_send (now_ms 0) does not. */
struct limiter;
int post_send_limited(store_round *r, const iy_send *in, struct limiter *new_directs, int64_t now_ms,
                      iy_stored *out);

/* The error message of a send that failed with err when it is particular
 * to edits, deletes or replies, else NULL. */
const char *post_error_text(int err, const iy_send *in);

#endif
