/* bus_int.h — what a bus implementation provides (bus_local.c, bus_nats.c);
 * bus.c dispatches through it, so the bus is chosen at run time. */
#ifndef IY_BUS_INT_H
#define IY_BUS_INT_H
#include "bus.h"

typedef struct bus_ops {
    void (*free)(bus *b);
    int (*subscribe)(bus *b, unsigned i, uint64_t user);
    void (*unsubscribe)(bus *b, unsigned i, uint64_t user);
    void (*publish)(bus *b, bus_batch *batch);
    void (*revoke)(bus *b, uint64_t user, const uint8_t session[32]);
    void (*notify)(bus *b, bus_notice *notice);
    void (*announce_node)(bus *b, const struct bus_node_info *n);
    void (*announce_presence)(bus *b, const struct bus_presence_info *p);
    void (*stats)(bus *b, bus_stats *out);
    int cluster;
} bus_ops;

/* The first member of every implementation's struct. */
struct bus {
    const bus_ops *ops;
};

/* The local bus (bus_local.c), which the cluster bus delivers through on
 * its own node: posts ev to subscriber i; the number of subscribers. */
void bus_local_post(bus *b, unsigned i, bus_event *ev);
unsigned bus_local_count(bus *b);

#endif
