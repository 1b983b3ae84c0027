/* presence.h — who is online, from WebSocket life signs, on every node.
 *
 * A user is online while at least one of its devices, on any node, has an
 * authenticated socket that showed life (any frame) within the timeout; a
 * clean close of its last socket (close frame, logout) makes it offline at
 * once; a socket that drops silently leaves the user online until the
 * timeout passes, so a device that comes back in time causes no flap.
 *
 * Each node knows its own sockets exactly (the local view) and hears the
 * other nodes' local views over the bus (presence_remote): the user is
 * online (the global view) while any node's local view is. A node that
 * leaves or dies (presence_node_gone) counts as a silent drop of all its
 * users: they stay online for the timeout, unless they came back on another
 * node meanwhile (no flap), then the lead node (the lowest live number)
 * publishes the offline.
 *
 * Two callbacks, both called with the presence lock held (they must only
 * queue work, never call back into presence):
 *   announce  the local view changed: tell the other nodes (with this
 *             node's global view, so they can tell whether it published)
 *   publish   the global view changed here and this node is the one to
 *             say so: persist last_active_at and tell the friends
 * Which node publishes a global change: the node whose local change caused
 * it; when two nodes went offline for a user at the same moment, each
 * seeing the other online (their bus messages crossed), the lower node
 * number. A node where the user was not online never publishes for others.
 *
 * State lives in memory only (heartbeats never touch the disk). I/O
 * threads report life signs in batches (once per sweep, not per frame); the
 * main loop calls presence_tick() to expire silent users. All functions are
 * thread-safe (one mutex, held for map updates only, never around I/O). */
#ifndef IY_PRESENCE_H
#define IY_PRESENCE_H
#include <stddef.h>
#include <stdint.h>

typedef struct presence presence;

typedef void (*presence_publish_fn)(void *ctx, uint64_t user, int online, int64_t last_active_ms);
typedef void (*presence_announce_fn)(void *ctx, uint64_t user, int online, int global, int64_t last_active_ms);

/* announce may be NULL (a single node). self is this node's number. */
presence *presence_new(int timeout_s, unsigned self, presence_publish_fn publish,
                       presence_announce_fn announce, void *ctx);
void presence_free(presence *p);                                   /* accepts NULL */

/* A device of user authenticated here (now: wall-clock ms). */
void presence_device_up(presence *p, uint64_t user, int64_t now_ms);

/* A device of user went away; clean = it closed properly (close frame,
 * logout). last_ms: its last sign of life. */
void presence_device_down(presence *p, uint64_t user, int clean, int64_t last_ms);

/* Life signs: users[i] was active at ms[i]. */
void presence_alive(presence *p, const uint64_t *users, const int64_t *ms, size_t n);

/* Expires silent users and lingering users of gone nodes; lead: this node
 * is the lowest live node number (it publishes what gone nodes leave). */
void presence_tick(presence *p, int64_t now_ms, int lead);

/* Another node's local view of user changed (the bus). global: that node's
 * global view after its change (whether it published). */
void presence_remote(presence *p, unsigned node, uint64_t user, int online, int global,
                     int64_t last_active_ms);

/* A node left or died (or restarted): what it said no longer holds; its
 * online users linger for the timeout from now. */
void presence_node_gone(presence *p, unsigned node, int64_t now_ms);

/* Announces every locally online user again (a node joined: it learns
 * who is online here). */
void presence_reannounce(presence *p);

/* Connected (authenticated) sockets of user on this node; 0 if none. */
int presence_devices(presence *p, uint64_t user);

/* 1 if user is online on any node (the global view). */
int presence_online(presence *p, uint64_t user);

/* 1 with *online (global) and *last_active_ms if user is known, else 0. */
int presence_get(presence *p, uint64_t user, int *online, int64_t *last_active_ms);

#endif
