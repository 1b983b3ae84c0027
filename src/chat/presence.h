/* presence.h — who is online, from WebSocket life signs.
 *
 * A user is online while at least one of its devices has an authenticated
 * socket that showed life (any frame) within the timeout; a clean close of
 * its last socket (close frame, logout) makes it offline at once; a socket
 * that drops silently leaves the user online until the timeout passes, so a
 * device that comes back in time causes no flap.
 *
 * State lives in memory only (heartbeats never touch the disk); transitions
 * are handed to `publish`, which persists last_active_at and tells friends.
 * I/O threads report life signs in batches (once per sweep, not per frame);
 * the main loop calls presence_tick() to expire silent users. All functions
 * are thread-safe (one mutex, held for map updates only, never around I/O). */
#ifndef IY_PRESENCE_H
#define IY_PRESENCE_H
#include <stddef.h>
#include <stdint.h>

typedef struct presence presence;

/* Called once per transition, with the presence lock held: it must only
 * queue work (a storage job), never call back into presence. */
typedef void (*presence_publish_fn)(void *ctx, uint64_t user, int online, int64_t last_active_ms);

presence *presence_new(int timeout_s, presence_publish_fn publish, void *ctx);
void presence_free(presence *p);                                   /* accepts NULL */

/* A device of user authenticated (now: wall-clock ms). */
void presence_device_up(presence *p, uint64_t user, int64_t now_ms);

/* A device of user went away; clean = it closed properly (close frame,
 * logout). last_ms: its last sign of life. */
void presence_device_down(presence *p, uint64_t user, int clean, int64_t last_ms);

/* Life signs: users[i] was active at ms[i]. */
void presence_alive(presence *p, const uint64_t *users, const int64_t *ms, size_t n);

/* Expires users silent for longer than the timeout. */
void presence_tick(presence *p, int64_t now_ms);

/* Connected (authenticated) sockets of user right now; 0 if unknown. */
int presence_devices(presence *p, uint64_t user);

/* 1 with *online and *last_active_ms if user is known in memory, else 0. */
int presence_get(presence *p, uint64_t user, int *online, int64_t *last_active_ms);

#endif
