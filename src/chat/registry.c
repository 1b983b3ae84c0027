/* registry.c — the live nodes and discovery's choice (registry.h). */
#include "registry.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../codec/jsonw.h"
#include <pthread.h>
#include <string.h>
#include <time.h>

#define NODES_MAX 1024

typedef struct node_ent {
    bus_node_info info;
    int64_t heard_ms;              /* monotonic */
} node_ent;

struct registry {
    pthread_mutex_t mu;
    bus_node_info self;
    node_ent *v;                   /* the other live nodes */
    size_t n;
    registry_event_fn on_change;
    void *ctx;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

registry *registry_new(const bus_node_info *self, registry_event_fn on_change, void *ctx)
{
    registry *r = iy_calloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    r->self = *self;
    r->v = iy_calloc(NODES_MAX, sizeof *r->v);
    r->on_change = on_change;
    r->ctx = ctx;
    return r;
}

void registry_free(registry *r)
{
    if (!r) return;
    pthread_mutex_destroy(&r->mu);
    iy_free(r->v);
    iy_free(r);
}

void registry_update_self(registry *r, uint32_t connections, int leaving)
{
    pthread_mutex_lock(&r->mu);
    r->self.connections = connections;
    r->self.leaving = leaving;
    pthread_mutex_unlock(&r->mu);
}

void registry_self(registry *r, bus_node_info *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->self;
    pthread_mutex_unlock(&r->mu);
}

static int find(const registry *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].info.name, name) == 0) return (int)i;
    return -1;
}

void registry_heard(registry *r, const bus_node_info *n)
{
    int event = -1;                       /* -1 none, 1 joined (or restarted), 0 left */
    unsigned number = n->number;
    pthread_mutex_lock(&r->mu);
    if (strcmp(n->name, r->self.name) != 0) {
        int i = find(r, n->name);
        if (n->leaving) {
            if (i >= 0) {
                r->v[i] = r->v[--r->n];
                event = 0;
            }
        } else if (i < 0 && r->n < NODES_MAX) {
            r->v[r->n].info = *n;
            r->v[r->n++].heard_ms = mono_ms();
            event = 1;
        } else if (i >= 0) {
            if (r->v[i].info.incarnation != n->incarnation) event = 1;   /* restarted */
            r->v[i].info = *n;
            r->v[i].heard_ms = mono_ms();
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (event >= 0) {
        iy_log_info("registry: node %s (number %u) %s", n->name, number, event ? "joined" : "left");
        if (r->on_change) r->on_change(r->ctx, number, event);
    }
}

void registry_expire(registry *r)
{
    unsigned gone[NODES_MAX];
    char names[8][BUS_NODE_NAME_MAX + 1];
    size_t ngone = 0;
    int64_t now = mono_ms();
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n;) {
        if (now - r->v[i].heard_ms > REGISTRY_TTL_MS) {
            if (ngone < 8) memcpy(names[ngone], r->v[i].info.name, sizeof names[0]);
            gone[ngone++] = r->v[i].info.number;
            r->v[i] = r->v[--r->n];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < ngone; i++) {
        iy_log_warn("registry: node %s (number %u) silent for %d ms: gone", i < 8 ? names[i] : "?", gone[i],
               REGISTRY_TTL_MS);
        if (r->on_change) r->on_change(r->ctx, gone[i], 0);
    }
}

/* a is better than b: a lower load (connections / capacity), then a lower number. */
static int better(const bus_node_info *a, const bus_node_info *b)
{
    uint64_t la = (uint64_t)a->connections * (b->capacity ? b->capacity : 1);
    uint64_t lb = (uint64_t)b->connections * (a->capacity ? a->capacity : 1);
    return la < lb || (la == lb && a->number < b->number);
}

int registry_best(registry *r, bus_node_info *out)
{
    int found = 0;
    pthread_mutex_lock(&r->mu);
    if (!r->self.leaving) {
        *out = r->self;
        found = 1;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (!found || better(&r->v[i].info, out)) *out = r->v[i].info;
        found = 1;
    }
    pthread_mutex_unlock(&r->mu);
    return found ? 0 : IY_ENOTFOUND;
}

int registry_lead(registry *r)
{
    pthread_mutex_lock(&r->mu);
    int lead = 1;
    for (size_t i = 0; i < r->n; i++) lead &= r->self.number < r->v[i].info.number;
    pthread_mutex_unlock(&r->mu);
    return lead;
}

size_t registry_count(registry *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n + !r->self.leaving;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void node_json(iy_buf *b, const bus_node_info *n)
{
    iy_buf_append_str(b, "{\"node\":");
    jw_cstr(b, n->name);
    iy_buf_append_str(b, ",\"ws_url\":");
    jw_cstr(b, n->ws_url);
    iy_buf_append_str(b, ",\"connections\":");
    jw_u64(b, n->connections);
    iy_buf_append_str(b, ",\"capacity\":");
    jw_u64(b, n->capacity);
    iy_buf_putc(b, '}');
}

void registry_json(registry *r, iy_buf *b)
{
    pthread_mutex_lock(&r->mu);
    iy_buf_append_str(b, "\"nodes\":[");
    int first = 1;
    if (!r->self.leaving) {
        node_json(b, &r->self);
        first = 0;
    }
    for (size_t i = 0; i < r->n; i++) {
        if (!first) iy_buf_putc(b, ',');
        first = 0;
        node_json(b, &r->v[i].info);
    }
    iy_buf_putc(b, ']');
    pthread_mutex_unlock(&r->mu);
}
