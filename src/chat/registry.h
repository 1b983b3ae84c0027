/* registry.h — the live nodes of the cluster and the choice discovery makes.
 *
 * Every node announces itself (bus_node_info: name, number, ws_url,
 * connections, capacity) on the bus every REGISTRY_BEAT_MS and hears the
 * others. Heartbeat subjects on NATS core rather than a JetStream KV
 * bucket: nothing needs to survive a restart of NATS (a node that is alive
 * says so again within a beat), a killed node is noticed by its silence
 * (REGISTRY_TTL_MS, well within the contract's 10 s) without a second
 * storage system, and a draining node removes itself at once with a
 * `leaving` beat. A node is live from its first beat until its TTL passes
 * or it leaves; this node is always in its own list unless it drains.
 *
 * Discovery: the live node with the most spare capacity, i.e. the lowest
 * connections / capacity (ties: the lower node number). Thread-safe. */
#ifndef IY_CHAT_REGISTRY_H
#define IY_CHAT_REGISTRY_H
#include <stddef.h>
#include <stdint.h>
#include "../base/buf.h"
#include "../bus/bus_wire.h"

#define REGISTRY_BEAT_MS 1000
#define REGISTRY_TTL_MS 4000

typedef struct registry registry;

/* What a node did that the rest of the service must follow. */
typedef void (*registry_event_fn)(void *ctx, unsigned node, int joined);

/* A registry whose own entry is self; on_change(ctx, node, joined) is
 * called (with no lock held) when another node joins or restarts (joined
 * 1) or leaves or dies (joined 0). */
registry *registry_new(const bus_node_info *self, registry_event_fn on_change, void *ctx);
void registry_free(registry *r);                           /* accepts NULL */

/* This node's entry now (connections; leaving once it drains). */
void registry_update_self(registry *r, uint32_t connections, int leaving);
void registry_self(registry *r, bus_node_info *out);

/* A beat heard from another node (the bus). */
void registry_heard(registry *r, const bus_node_info *n);

/* Forgets nodes silent past the TTL (calls on_change for each). */
void registry_expire(registry *r);

/* The best node for a new client: 0 and *out, IY_ENOTFOUND (none live:
 * this node drains and no other is known). */
int registry_best(registry *r, bus_node_info *out);

/* 1 if this node has the lowest number among the live nodes. */
int registry_lead(registry *r);

/* Appends "nodes":[{node, ws_url, connections, capacity}...] of the live nodes. */
void registry_json(registry *r, iy_buf *b);

/* The number of live nodes (self included unless it drains). */
size_t registry_count(registry *r);

#endif
