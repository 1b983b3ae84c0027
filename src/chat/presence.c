/* presence.c — the presence registry (see presence.h).
 *
 * Per user: this node's devices and last sign of life here (the local
 * view), the other nodes whose local view is online, the time until which
 * users of a gone node linger, and the global view last evaluated here.
 *
 *     local   <=>  !gone && now - local_last < timeout
 *     online  <=>  local || some other node says online || now < linger_until
 *
 * where `gone` is set when the last local device closed cleanly and cleared
 * by any new device or life sign. */
#include "presence.h"
#include "../base/alloc.h"
#include "../base/u64map.h"
#include <pthread.h>
#include <string.h>
#include <time.h>

/* Two nodes going offline for one user within this window may each have
 * seen the other online (bus messages cross): the lower number publishes. */
#define RACE_WINDOW_MS 5000

/* In a cluster, an offline this node causes is published this much later,
 * if the user is still offline everywhere then: another node's news of a
 * device that just came up there may be on its way (no flap). */
#define SETTLE_MS 300

/* One per user with a socket here or news from elsewhere: 72 bytes (an
 * 80-byte malloc chunk), one per idle connection's user. */
typedef struct entry {
    uint64_t user;
    int32_t devices;       /* sockets on this node */
    int8_t gone;           /* the last local device closed cleanly */
    int8_t local;          /* the local view, as last announced */
    int8_t online;         /* the global view, as last evaluated here */
    int8_t said;           /* what this node last published: -1 nothing, 0 offline, 1 online */
    int64_t local_last;    /* last sign of life here */
    int64_t remote_last;   /* newest last_active other nodes told */
    int64_t linger_until;  /* a gone node's users stay online until then */
    int64_t local_off_ms;  /* when the local view last went offline (0: never online here) */
    int64_t offline_due;   /* cluster: when a settled offline is published (0: none) */
    uint16_t *remote;      /* nodes whose local view is online */
    uint32_t nremote, capremote;
} entry;

struct presence {
    pthread_mutex_t mu;
    u64map users;          /* user -> entry */
    int64_t timeout_ms;
    unsigned self;
    presence_publish_fn publish;
    presence_announce_fn announce;
    void *ctx;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

presence *presence_new(int timeout_s, unsigned self, presence_publish_fn publish,
                       presence_announce_fn announce, void *ctx)
{
    presence *p = iy_calloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    p->timeout_ms = (int64_t)timeout_s * 1000;
    p->self = self;
    p->publish = publish;
    p->announce = announce;
    p->ctx = ctx;
    return p;
}

void presence_free(presence *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->users.cap; i++) {
        if (!p->users.keys[i]) continue;
        entry *e = (entry *)(uintptr_t)p->users.vals[i];
        iy_free(e->remote);
        iy_free(e);
    }
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
        e->said = -1;
        u64map_put(&p->users, user, e);
    }
    return e;
}

static int64_t last_of(const entry *e) { return e->local_last > e->remote_last ? e->local_last : e->remote_last; }

static int global_of(const entry *e, int64_t now)
{
    return e->local || e->nremote > 0 || now < e->linger_until;
}

static void say(presence *p, entry *e, int online)
{
    e->said = online;
    e->offline_due = 0;
    p->publish(p->ctx, e->user, online, last_of(e));
}

/* Re-evaluates e's global view; publishes a change if may (an offline in a
 * cluster after SETTLE_MS, from the tick). A change this node may not
 * publish still corrects what it said: online again after it said offline. */
static void eval_global(presence *p, entry *e, int64_t now, int may)
{
    int g = global_of(e, now);
    if (g == e->online) return;
    e->online = g;
    if (!may) {
        if (g && e->said == 0) say(p, e, 1);
        return;
    }
    if (!g && p->announce) e->offline_due = now + SETTLE_MS;
    else say(p, e, g);
}

/* Re-evaluates e's local view (announcing a change to the other nodes),
 * then the global view (publishing a change this node caused). Called with
 * the lock held, so that two threads never publish one user's transitions
 * out of order. */
static void evaluate(presence *p, entry *e, int64_t now)
{
    int local = !e->gone && e->local_last > 0 && now - e->local_last < p->timeout_ms;
    if (local != e->local) {
        e->local = local;
        if (!local) e->local_off_ms = now;
        if (p->announce) p->announce(p->ctx, e->user, local, global_of(e, now), e->local_last);
    }
    eval_global(p, e, now, 1);
}

void presence_device_up(presence *p, uint64_t user, int64_t now_ms)
{
    pthread_mutex_lock(&p->mu);
    entry *e = get_or_add(p, user);
    e->devices++;
    e->gone = 0;
    if (now_ms > e->local_last) e->local_last = now_ms;
    evaluate(p, e, wall_ms());
    pthread_mutex_unlock(&p->mu);
}

void presence_device_down(presence *p, uint64_t user, int clean, int64_t last_ms)
{
    pthread_mutex_lock(&p->mu);
    entry *e = get_or_add(p, user);
    if (e->devices > 0) e->devices--;
    if (last_ms > e->local_last) e->local_last = last_ms;
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
        if (ms[i] > e->local_last) e->local_last = ms[i];
        if (e->devices > 0) e->gone = 0;
        evaluate(p, e, now);
    }
    pthread_mutex_unlock(&p->mu);
}

void presence_tick(presence *p, int64_t now_ms, int lead)
{
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->users.cap; i++) {
        if (!p->users.keys[i]) continue;
        entry *e = (entry *)(uintptr_t)p->users.vals[i];
        if (e->local) evaluate(p, e, now_ms);
        if (e->offline_due && now_ms >= e->offline_due) {
            e->offline_due = 0;
            if (!global_of(e, now_ms) && e->said != 0) say(p, e, 0);
        }
        if (e->linger_until && now_ms >= e->linger_until) {
            /* A gone node's users: offline now unless back somewhere; the
             * lead node says so (every node comes to the same view). */
            e->linger_until = 0;
            eval_global(p, e, now_ms, lead);
        }
    }
    pthread_mutex_unlock(&p->mu);
}

static int remote_index(const entry *e, unsigned node)
{
    for (uint32_t i = 0; i < e->nremote; i++)
        if (e->remote[i] == node) return (int)i;
    return -1;
}

static void remote_drop(entry *e, int i)
{
    e->remote[i] = e->remote[--e->nremote];
}

void presence_remote(presence *p, unsigned node, uint64_t user, int online, int global,
                     int64_t last_active_ms)
{
    int64_t now = wall_ms();
    pthread_mutex_lock(&p->mu);
    entry *e = get_or_add(p, user);
    if (last_active_ms > e->remote_last) e->remote_last = last_active_ms;
    int i = remote_index(e, node);
    if (online && i < 0) {
        if (e->nremote == e->capremote) {
            e->capremote = e->capremote ? e->capremote * 2 : 2;
            e->remote = iy_realloc(e->remote, e->capremote * sizeof *e->remote);
        }
        e->remote[e->nremote++] = (uint16_t)node;
    } else if (!online && i >= 0) {
        remote_drop(e, i);
    }
    if (online) e->linger_until = 0;
    /* Back online elsewhere: the node caused it and published if it had to.
     * Offline: if that node published (its global view went offline), so
     * nothing here; if it still saw someone online, and that may have been
     * us (we went offline here moments ago, at the same time), the lower
     * number of the two says so. A node where the user was not just online
     * never speaks for others: their messages may come in any order. */
    int just_off = !e->local && e->local_off_ms && now - e->local_off_ms < RACE_WINDOW_MS;
    int may = !online && global && just_off && p->self < node;
    eval_global(p, e, now, may);
    pthread_mutex_unlock(&p->mu);
}

void presence_node_gone(presence *p, unsigned node, int64_t now_ms)
{
    pthread_mutex_lock(&p->mu);
    for (size_t k = 0; k < p->users.cap; k++) {
        if (!p->users.keys[k]) continue;
        entry *e = (entry *)(uintptr_t)p->users.vals[k];
        int i = remote_index(e, node);
        if (i < 0) continue;
        remote_drop(e, i);
        /* Its users dropped silently: online for the timeout (no flap). */
        if (e->linger_until < now_ms + p->timeout_ms) e->linger_until = now_ms + p->timeout_ms;
    }
    pthread_mutex_unlock(&p->mu);
}

void presence_reannounce(presence *p)
{
    if (!p->announce) return;
    int64_t now = wall_ms();
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->users.cap; i++) {
        if (!p->users.keys[i]) continue;
        entry *e = (entry *)(uintptr_t)p->users.vals[i];
        if (e->local) p->announce(p->ctx, e->user, 1, global_of(e, now), e->local_last);
    }
    pthread_mutex_unlock(&p->mu);
}

int presence_get(presence *p, uint64_t user, int *online, int64_t *last_active_ms)
{
    pthread_mutex_lock(&p->mu);
    entry *e = u64map_get(&p->users, user);
    if (e) {
        *online = global_of(e, wall_ms());
        *last_active_ms = last_of(e);
    }
    pthread_mutex_unlock(&p->mu);
    return e != NULL;
}

int presence_online(presence *p, uint64_t user)
{
    int online = 0;
    int64_t last;
    return presence_get(p, user, &online, &last) && online;
}

int presence_devices(presence *p, uint64_t user)
{
    pthread_mutex_lock(&p->mu);
    entry *e = u64map_get(&p->users, user);
    int n = e ? e->devices : 0;
    pthread_mutex_unlock(&p->mu);
    return n;
}
