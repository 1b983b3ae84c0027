/* social.h — presence as friends see it (social.c): publishing the
 * registry's transitions to friends, who may see whose presence, and the
 * presence JSON shared by the WebSocket op, GET /v1/presence and
 * GET /v1/friends. */
#ifndef IY_CHAT_SOCIAL_H
#define IY_CHAT_SOCIAL_H
#include <stdint.h>
#include "service.h"
#include "../base/buf.h"
#include "../store/store.h"

/* A user whose presence a viewer may see, with the last_active_at the
 * store keeps (used when the registry does not know the user). */
typedef struct social_seen {
    uint64_t user;
    int64_t stored_last;
} social_seen;

/* ---- storage thread (store work only) ---- */

/* 1 if viewer may see user's presence: itself or a (mutual) friend; else 0. */
int social_may_see(store *s, uint64_t viewer, uint64_t user);

/* The ids of ids[0..n) viewer may see, without repeats, each with its
 * stored last_active_at: *out malloc'd (iy_free), *nout of them. */
void social_visible(store *s, uint64_t viewer, const uint64_t *ids, size_t n, social_seen **out,
                    size_t *nout);

/* ---- any thread ---- */

/* user's presence now: the registry's, else offline at stored_last. */
void social_presence_of(service *svc, uint64_t user, int64_t stored_last, int *online, int64_t *last);

void social_presence_fields(iy_buf *b, uint64_t user, int online, int64_t last_active);
void social_presence_frame(iy_buf *b, uint64_t user, int online, int64_t last_active);

/* "presence":[{user_id, status, last_active_at}...] for v[0..n). */
void social_presence_list(iy_buf *b, service *svc, const social_seen *v, size_t n);

/* Sends user's current presence to every socket of to[0..n) (a bus notice). */
void social_notify_presence(service *svc, uint64_t user, int64_t stored_last, const uint64_t *to, size_t n);

/* The presence registry's publish function (presence.h): persists
 * last_active_at and tells the user's friends. ctx is the service. Any
 * thread. Transitions are batched: all those that arrive while one storage
 * job is queued go with it (one write and one friends read for the batch). */
void social_publish(void *ctx, uint64_t user, int online, int64_t last_active);

/* The batch of svc->social (before presence starts; after it stopped). */
struct social_batch *social_batch_new(void);
void social_batch_free(struct social_batch *b);

#endif
