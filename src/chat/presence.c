/* presence.c — the presence registry (see presence.h).
 *
 * Per user: connected devices, the last sign of life, and the status last
 * published. The rule, evaluated on every change and every tick:
 *
 *     online  <=>  !gone  &&  now - last_active < timeout
 *
 * where `gone` is set when the last device closed cleanly and cleared by
 * any new device or life sign. */
#include "presence.h"
#include "../base/alloc.h"
#include "../base/u64map.h"
#include <pthread.h>
#include <time.h>

typedef struct entry {
    uint64_t user;
    int devices;
    int gone;
    int online;          /* as last published */
    int64_t last_active;
} entry;

struct presence {
    pthread_mutex_t mu;
    u64map users;        /* user -> entry */
    int64_t timeout_ms;
    presence_publish_fn publish;
    void *ctx;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

presence *presence_new(int timeout_s, presence_publish_fn publish, void *ctx)
{
    presence *p = iy_calloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    p->timeout_ms = (int64_t)timeout_s * 1000;
    p->publish = publish;
    p->ctx = ctx;
    return p;
}

void presence_free(presence *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->users.cap; i++)
        if (p->users.keys[i]) iy_free((void *)(uintptr_t)p->users.vals[i]);
    u64map_free(&p->users);
    pthread_mutex_destroy(&p->mu);
    iy_free(p);
}

static entry *get_or_add(presence *p, uint64_t user)
{
    entry *e = u64map_get(&p->users, user);
    if (!e) {
        e = iy_calloc(1, sizeof *e);
        e->user = user;
        u64map_put(&p->users, user, e);
    }
    return e;
}

/* Re-evaluates e and publishes a change. Called with the lock held, so
 * that two threads can never publish one user's transitions out of order
 * (publish only queues a job: it must not call back into presence). */
static void evaluate(presence *p, entry *e, int64_t now)
{
    int online = !e->gone && now - e->last_active < p->timeout_ms;
    if (online == e->online) return;
    e->online = online;
    p->publish(p->ctx, e->user, online, e->last_active);
}

void presence_device_up(presence *p, uint64_t user, int64_t now_ms)
{
    pthread_mutex_lock(&p->mu);
    entry *e = get_or_add(p, user);
    e->devices++;
    e->gone = 0;
    if (now_ms > e->last_active) e->last_active = now_ms;
    evaluate(p, e, wall_ms());
    pthread_mutex_unlock(&p->mu);
}

void presence_device_down(presence *p, uint64_t user, int clean, int64_t last_ms)
{
    pthread_mutex_lock(&p->mu);
    entry *e = get_or_add(p, user);
    if (e->devices > 0) e->devices--;
    if (last_ms > e->last_active) e->last_active = last_ms;
    if (clean && e->devices == 0) e->gone = 1;
    evaluate(p, e, wall_ms());
    pthread_mutex_unlock(&p->mu);
}

void presence_alive(presence *p, const uint64_t *users, const int64_t *ms, size_t n)
{
    int64_t now = wall_ms();
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < n; i++) {
        entry *e = get_or_add(p, users[i]);
        if (ms[i] > e->last_active) e->last_active = ms[i];
        if (e->devices > 0) e->gone = 0;
        evaluate(p, e, now);
    }
    pthread_mutex_unlock(&p->mu);
}

void presence_tick(presence *p, int64_t now_ms)
{
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->users.cap; i++) {
        if (!p->users.keys[i]) continue;
        entry *e = (entry *)(uintptr_t)p->users.vals[i];
        if (e->online) evaluate(p, e, now_ms);
    }
    pthread_mutex_unlock(&p->mu);
}

int presence_get(presence *p, uint64_t user, int *online, int64_t *last_active_ms)
{
    pthread_mutex_lock(&p->mu);
    entry *e = u64map_get(&p->users, user);
    if (e) {
        *online = e->online;
        *last_active_ms = e->last_active;
    }
    pthread_mutex_unlock(&p->mu);
    return e != NULL;
}

int presence_devices(presence *p, uint64_t user)
{
    pthread_mutex_lock(&p->mu);
    entry *e = u64map_get(&p->users, user);
    int n = e ? e->devices : 0;
    pthread_mutex_unlock(&p->mu);
    return n;
}
