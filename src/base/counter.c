/* counter.c — thread-safe keyed counts (counter.h). */
#include "counter.h"
#include "alloc.h"
#include "u64map.h"
#include <pthread.h>

struct counter {
    pthread_mutex_t mu;
    u64map counts;
};

counter *counter_new(void)
{
    counter *c = iy_calloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

void counter_free(counter *c)
{
    if (!c) return;
    u64map_free(&c->counts);
    pthread_mutex_destroy(&c->mu);
    iy_free(c);
}

int counter_inc(counter *c, uint64_t key, uint32_t max)
{
    pthread_mutex_lock(&c->mu);
    uint64_t *v = u64map_find(&c->counts, key);
    int ok = !v || *v < max;
    if (ok && v) (*v)++;
    else if (ok && max > 0) u64map_set(&c->counts, key, 1);
    else ok = 0;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

void counter_dec(counter *c, uint64_t key)
{
    pthread_mutex_lock(&c->mu);
    uint64_t *v = u64map_find(&c->counts, key);
    if (v && *v > 1) (*v)--;
    else if (v) u64map_del(&c->counts, key);
    pthread_mutex_unlock(&c->mu);
}

uint32_t counter_get(counter *c, uint64_t key)
{
    pthread_mutex_lock(&c->mu);
    uint64_t *v = u64map_find(&c->counts, key);
    uint32_t n = v ? (uint32_t)*v : 0;
    pthread_mutex_unlock(&c->mu);
    return n;
}
