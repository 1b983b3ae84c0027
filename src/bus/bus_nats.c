/* bus_nats.c — the cluster bus: what one node commits reaches the other
 * nodes over NATS core (libnats, Debian libnats-dev), routed per user.
 *
 * Subjects (a documented namespace):
 *   iyagi.u.<user>     W_MSG, W_NOTICE, W_REVOKE for that user (bus_wire.h);
 *                      a node subscribes while it holds a socket of the user
 *   iyagi.nodes        W_NODE: the registry heartbeats (every node)
 *   iyagi.presence     W_PRESENCE: each node's view of presence changes
 *   iyagi.revoke       W_REVOKE again, for every node: a node caches valid
 *                      tokens (chat/tokens.h) of users it holds no socket of
 *
 * Routing per user, not per node: a group message is one publish per member
 * (with that member's pos) and NATS sends each only to the nodes interested
 * in that member, so what a message costs does not grow with the number of
 * nodes. Publishing is asynchronous (libnats buffers and flushes on its own
 * thread); the node's own sockets get everything through the local bus
 * first, and NATS does not echo a node's publishes back to it (no-echo).
 *
 * Threads. libnats does the socket I/O on its own threads (it never blocks
 * ours) and calls back on its delivery threads (global delivery: a pool,
 * not a thread per subscription). Those callbacks touch no loop state: they
 * decode and hand each event to the I/O threads through the local bus's
 * post (queue + uv_async_send); registry and presence broadcasts go to
 * thread-safe handlers (bus_cluster_fns). One confirmer thread of ours
 * turns new subscriptions into confirmed ones: a FLUSH round trip after the
 * SUB proves the server has it, then BUS_SUBSCRIBED goes to the waiting
 * I/O threads (subscribe, then read: chat.c). Connecting at start may block
 * (libnats connects synchronously once, then retries in the background):
 * server.c creates the bus before the I/O threads run.
 *
 * At most once. NATS core may drop (a disconnect, a slow consumer, an
 * unconfirmed subscription race): every receiver treats the bus as a hint
 * and the store as the truth (chat/deliver.c holds back what arrives ahead
 * of a gap and fills the gap from the store). After a reconnect every I/O
 * thread gets BUS_RESYNC, so sockets compare their pos with the store. */
#include "bus_int.h"
#include "bus_wire.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../base/u64map.h"
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SUBJECT_MAX 48
#define CONFIRM_FLUSH_MS 1000     /* one FLUSH round trip at most */
#define CONFIRM_GIVE_UP_MS 2000   /* unconfirmed this long (NATS away): go on, the store fills gaps */
#define MAX_SERVERS 16

/* One user's subscription on this node, shared by its I/O threads. */
typedef struct sub_ent {
    uint64_t user;
    natsSubscription *sub;
    uint32_t count;               /* bus_subscribe calls minus unsubscribes */
    int active;                   /* confirmed by a FLUSH */
    uint64_t waiting;             /* bit i: thread i waits for BUS_SUBSCRIBED */
    int64_t since_ms;             /* pending since */
    int pending;                  /* in the confirmer's list */
} sub_ent;

typedef struct nats_bus {
    bus base;
    bus *local;                   /* this node's I/O threads */
    unsigned nthreads;
    unsigned node;
    bus_cluster_fns fns;
    natsOptions *opts;
    natsConnection *nc;
    natsSubscription *nodes_sub, *presence_sub, *revoke_sub;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    u64map subs;                  /* user -> sub_ent *, under mu */
    sub_ent **pending;            /* awaiting confirmation, under mu */
    size_t npending, cappending;
    int stopping;                 /* under mu */
    pthread_t confirmer;
    atomic_uint_fast64_t received, lag_ms_sum, publish_errors, reconnects;
    atomic_int connected;
} nats_bus;

static const bus_ops nats_ops;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void user_subject(char s[SUBJECT_MAX], uint64_t user)
{
    snprintf(s, SUBJECT_MAX, "iyagi.u.%llu", (unsigned long long)user);
}

static void publish(nats_bus *b, const char *subject, const iy_buf *msg)
{
    natsStatus st = natsConnection_Publish(b->nc, subject, msg->data, (int)msg->len);
    if (st != NATS_OK) atomic_fetch_add(&b->publish_errors, 1);
}

/* ---- events for the I/O threads ---- */

static void post_all(nats_bus *b, int kind, bus_batch *batch, bus_notice *no, uint64_t user,
                     const uint8_t *session)
{
    unsigned n = b->nthreads;
    if (batch) atomic_fetch_add(&batch->refs, (int)n);
    if (no) atomic_fetch_add(&no->refs, (int)n);
    for (unsigned i = 0; i < n; i++) {
        bus_event *ev = iy_calloc(1, sizeof *ev);
        ev->kind = kind;
        ev->batch = batch;
        ev->notice = no;
        ev->user = user;
        if (session) memcpy(ev->session, session, 32);
        bus_local_post(b->local, i, ev);
    }
    bus_batch_unref(batch);
    bus_notice_unref(no);
}

static void post_one(nats_bus *b, unsigned i, int kind, uint64_t user)
{
    bus_event *ev = iy_calloc(1, sizeof *ev);
    ev->kind = kind;
    ev->user = user;
    bus_local_post(b->local, i, ev);
}

/* ---- receiving (libnats delivery threads) ---- */

static void on_user(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    nats_bus *b = closure;
    bus_wire w;
    if (bus_wire_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &w) == 0) {
        int64_t lag = wall_ms() - w.sent_ms;
        atomic_fetch_add(&b->received, 1);
        if (lag > 0) atomic_fetch_add(&b->lag_ms_sum, (uint64_t)lag);
        if (w.kind == W_MSG) {
            bus_batch *bt = bus_batch_new(1);
            bus_batch_add(bt, &w.msg.m, w.msg.m.text, w.msg.m.text_len, &w.user, &w.pos, 1, w.origin);
            post_all(b, BUS_BATCH, bt, NULL, 0, NULL);
        } else if (w.kind == W_NOTICE) {
            bus_notice *no = bus_notice_new(&w.user, 1, w.frame, w.frame_len);
            no->skip_user = w.skip_user;
            no->origin = w.origin;
            post_all(b, BUS_NOTICE, NULL, no, 0, NULL);
        } else if (w.kind == W_REVOKE) {
            post_all(b, BUS_REVOKE, NULL, NULL, w.user, w.session);
        }
    }
    natsMsg_Destroy(msg);
}

static void on_cluster(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    nats_bus *b = closure;
    bus_wire w;
    if (bus_wire_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &w) == 0) {
        if (w.kind == W_NODE && b->fns.node) b->fns.node(b->fns.ctx, &w.node);
        else if (w.kind == W_PRESENCE && b->fns.presence && w.presence.node != b->node)
            b->fns.presence(b->fns.ctx, &w.presence);
        else if (w.kind == W_REVOKE && b->fns.revoked) b->fns.revoked(b->fns.ctx, w.user, w.session);
    }
    natsMsg_Destroy(msg);
}

/* ---- connection events (libnats threads) ---- */

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    nats_bus *b = closure;
    if (atomic_exchange(&b->connected, 0)) iy_log_warn("bus: disconnected from NATS; reconnecting");
    if (b->fns.cut) b->fns.cut(b->fns.ctx, 1);
}

static void on_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    nats_bus *b = closure;
    atomic_store(&b->connected, 1);
    iy_log_info("bus: connected to NATS");
    if (b->fns.cut) b->fns.cut(b->fns.ctx, 0);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    nats_bus *b = closure;
    atomic_store(&b->connected, 1);
    atomic_fetch_add(&b->reconnects, 1);
    iy_log_info("bus: reconnected to NATS; sockets check their pos against the store");
    if (b->fns.cut) b->fns.cut(b->fns.ctx, 0);
    post_all(b, BUS_RESYNC, NULL, NULL, 0, NULL);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc, (void)sub;
    nats_bus *b = closure;
    atomic_fetch_add(&b->publish_errors, 1);
    static atomic_int logged;
    if (atomic_fetch_add(&logged, 1) < 10) iy_log_warn("bus: NATS error: %s", natsStatus_GetText(err));
}

/* ---- subscriptions ---- */

/* Confirms what is pending: a FLUSH round trip proves the server has every
 * SUB sent before it. Posts BUS_SUBSCRIBED to the waiting threads. */
static void *confirmer_main(void *arg)
{
    nats_bus *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->npending && !b->stopping) pthread_cond_wait(&b->cv, &b->mu);
        if (b->stopping) break;
        size_t n = b->npending;
        int64_t t0 = mono_ms();
        pthread_mutex_unlock(&b->mu);
        natsStatus st = natsConnection_FlushTimeout(b->nc, CONFIRM_FLUSH_MS);
        pthread_mutex_lock(&b->mu);
        if (st != NATS_OK) {
            /* Not connected: entries pending too long go on unconfirmed
             * (the store fills any gap); the others wait for a retry. */
            n = 0;
            for (size_t i = 0; i < b->npending; i++)
                if (t0 - b->pending[i]->since_ms >= CONFIRM_GIVE_UP_MS) n = i + 1;
            if (!n) {
                pthread_mutex_unlock(&b->mu);
                struct timespec d = { 0, 100 * 1000000L };
                nanosleep(&d, NULL);
                pthread_mutex_lock(&b->mu);
                continue;
            }
        }
        /* The first n (oldest) are confirmed: their SUBs preceded the FLUSH. */
        for (size_t i = 0; i < n; i++) {
            sub_ent *e = b->pending[i];
            e->pending = 0;
            e->active = 1;
            for (unsigned t = 0; t < b->nthreads; t++)
                if (e->waiting & ((uint64_t)1 << t)) post_one(b, t, BUS_SUBSCRIBED, e->user);
            e->waiting = 0;
            if (e->count == 0) {   /* everyone left meanwhile */
                if (e->sub) natsSubscription_Unsubscribe(e->sub);
                natsSubscription_Destroy(e->sub);
                u64map_del(&b->subs, e->user);
                iy_free(e);
            }
        }
        memmove(b->pending, b->pending + n, (b->npending - n) * sizeof *b->pending);
        b->npending -= n;
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static int nats_subscribe(bus *bb, unsigned i, uint64_t user)
{
    nats_bus *b = (nats_bus *)bb;
    int active = 1;
    bus_subscribe(b->local, i, user);
    pthread_mutex_lock(&b->mu);
    sub_ent *e = u64map_get(&b->subs, user);
    if (!e) {
        char subject[SUBJECT_MAX];
        user_subject(subject, user);
        e = iy_calloc(1, sizeof *e);
        e->user = user;
        if (natsConnection_Subscribe(&e->sub, b->nc, subject, on_user, b) != NATS_OK) {
            /* Only a closed connection refuses: go on, the store is the truth. */
            e->sub = NULL;
            e->active = 1;
        } else {
            natsSubscription_SetPendingLimits(e->sub, 1 << 20, 1 << 30);
            e->since_ms = mono_ms();
            e->pending = 1;
            if (b->npending == b->cappending) {
                b->cappending = b->cappending ? b->cappending * 2 : 256;
                b->pending = iy_realloc(b->pending, b->cappending * sizeof *b->pending);
            }
            b->pending[b->npending++] = e;
            pthread_cond_signal(&b->cv);
        }
        u64map_put(&b->subs, user, e);
    }
    e->count++;
    if (!e->active) {
        e->waiting |= (uint64_t)1 << i;
        active = 0;
    }
    pthread_mutex_unlock(&b->mu);
    return active;
}

static void nats_unsubscribe(bus *bb, unsigned i, uint64_t user)
{
    nats_bus *b = (nats_bus *)bb;
    bus_unsubscribe(b->local, i, user);
    pthread_mutex_lock(&b->mu);
    sub_ent *e = u64map_get(&b->subs, user);
    if (e && e->count && --e->count == 0 && !e->pending) {
        if (e->sub) natsSubscription_Unsubscribe(e->sub);
        natsSubscription_Destroy(e->sub);
        u64map_del(&b->subs, user);
        iy_free(e);
    }
    pthread_mutex_unlock(&b->mu);
}

/* ---- publishing ---- */

static void nats_publish(bus *bb, bus_batch *batch)
{
    nats_bus *b = (nats_bus *)bb;
    atomic_fetch_add(&batch->refs, 1);
    bus_publish(b->local, batch);           /* this node's sockets first */
    iy_buf w = { 0 };
    char subject[SUBJECT_MAX];
    int64_t now = wall_ms();
    for (size_t k = 0; k < batch->n; k++) {
        const bus_msg *m = &batch->v[k];
        for (uint32_t r = 0; r < m->n; r++) {
            iy_buf_reset(&w);
            bus_wire_msg(&w, now, m, r);
            user_subject(subject, m->members[r]);
            publish(b, subject, &w);
        }
    }
    iy_buf_free(&w);
    bus_batch_unref(batch);
}

static void nats_notify(bus *bb, bus_notice *no)
{
    nats_bus *b = (nats_bus *)bb;
    atomic_fetch_add(&no->refs, 1);
    bus_notify(b->local, no);
    iy_buf w = { 0 };
    char subject[SUBJECT_MAX];
    int64_t now = wall_ms();
    for (size_t k = 0; k < no->n; k++) {
        if (no->users[k] == no->skip_user) continue;
        iy_buf_reset(&w);
        bus_wire_notice(&w, now, no, no->users[k]);
        user_subject(subject, no->users[k]);
        publish(b, subject, &w);
    }
    iy_buf_free(&w);
    bus_notice_unref(no);
}

static void nats_revoke(bus *bb, uint64_t user, const uint8_t session[32])
{
    nats_bus *b = (nats_bus *)bb;
    bus_revoke(b->local, user, session);
    iy_buf w = { 0 };
    char subject[SUBJECT_MAX];
    bus_wire_revoke(&w, wall_ms(), user, session);
    user_subject(subject, user);
    publish(b, subject, &w);
    publish(b, "iyagi.revoke", &w);       /* every node's token cache */
    iy_buf_free(&w);
}

static void nats_announce_node(bus *bb, const bus_node_info *n)
{
    nats_bus *b = (nats_bus *)bb;
    iy_buf w = { 0 };
    bus_wire_node(&w, wall_ms(), n);
    publish(b, "iyagi.nodes", &w);
    iy_buf_free(&w);
}

static void nats_announce_presence(bus *bb, const bus_presence_info *p)
{
    nats_bus *b = (nats_bus *)bb;
    iy_buf w = { 0 };
    bus_wire_presence(&w, wall_ms(), p);
    publish(b, "iyagi.presence", &w);
    iy_buf_free(&w);
}

static void nats_stats(bus *bb, bus_stats *out)
{
    nats_bus *b = (nats_bus *)bb;
    out->received = atomic_load(&b->received);
    out->lag_ms_sum = atomic_load(&b->lag_ms_sum);
    out->publish_errors = atomic_load(&b->publish_errors);
    out->reconnects = atomic_load(&b->reconnects);
    out->connected = atomic_load(&b->connected);
    pthread_mutex_lock(&b->mu);
    out->subscriptions = b->subs.n;
    pthread_mutex_unlock(&b->mu);
}

/* ---- life ---- */

static void nats_free(bus *bb)
{
    nats_bus *b = (nats_bus *)bb;
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->confirmer, NULL);
    if (b->nc) natsConnection_FlushTimeout(b->nc, 1000);   /* the last publishes */
    for (size_t i = 0; i < b->subs.cap; i++) {
        if (!b->subs.keys[i]) continue;
        sub_ent *e = (sub_ent *)(uintptr_t)b->subs.vals[i];
        natsSubscription_Destroy(e->sub);
        iy_free(e);
    }
    u64map_free(&b->subs);
    natsSubscription_Destroy(b->nodes_sub);
    natsSubscription_Destroy(b->presence_sub);
    natsSubscription_Destroy(b->revoke_sub);
    if (b->nc) {
        natsConnection_Close(b->nc);
        natsConnection_Destroy(b->nc);
    }
    natsOptions_Destroy(b->opts);
    nats_CloseAndWait(2000);
    bus_free(b->local);
    iy_free(b->pending);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    iy_free(b);
}

/* servers as a log line may show it: the user and password of a
 * nats://USER:PASS@HOST URL replaced by "***". */
static void redact_urls(const char *servers, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = servers; *p && n + 4 < cap;) {
        const char *at = strchr(p, '@'), *comma = strchr(p, ',');
        const char *scheme = strstr(p, "://");
        if (at && (!comma || at < comma) && scheme && scheme < at) {
            size_t k = (size_t)(scheme + 3 - p);
            if (n + k + 4 >= cap) break;
            memcpy(out + n, p, k);
            memcpy(out + n + k, "***", 3);
            n += k + 3;
            p = at;   /* the '@' and the host follow */
        }
        const char *end = comma ? comma + 1 : p + strlen(p);
        size_t k = (size_t)(end - p);
        if (n + k >= cap) k = cap - n - 1;
        memcpy(out + n, p, k);
        n += k;
        p = end;
    }
    out[n] = '\0';
}

bus *bus_nats_new(const char *servers, unsigned n, bus_post_fn post, void **ctx, unsigned node,
                  const bus_cluster_fns *fns)
{
    char list[4096], *urls[MAX_SERVERS];
    int nurls = 0;
    snprintf(list, sizeof list, "%s", servers);
    for (char *tok = strtok(list, ","); tok && nurls < MAX_SERVERS; tok = strtok(NULL, ",")) {
        if (strncmp(tok, "nats://", 7) != 0 || !tok[7]) {
            iy_log_error("bus: %s is not a nats://HOST:PORT URL", tok);
            return NULL;
        }
        urls[nurls++] = tok;
    }
    if (nurls == 0 || n > 64) {
        iy_log_error("bus: no NATS server given");
        return NULL;
    }
    nats_bus *b = iy_calloc(1, sizeof *b);
    b->base.ops = &nats_ops;
    b->local = bus_local_new(n, post, ctx);
    b->nthreads = n;
    b->node = node;
    if (fns) b->fns = *fns;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);

    natsOptions *o = NULL;
    natsStatus st = natsOptions_Create(&o);
    if (st == NATS_OK) st = natsOptions_SetServers(o, (const char **)urls, nurls);
    if (st == NATS_OK) st = natsOptions_SetNoEcho(o, true);
    if (st == NATS_OK) st = natsOptions_UseGlobalMessageDelivery(o, true);
    if (st == NATS_OK) st = natsOptions_SetMaxReconnect(o, -1);
    if (st == NATS_OK) st = natsOptions_SetReconnectWait(o, 200);
    if (st == NATS_OK) st = natsOptions_SetReconnectBufSize(o, 64 << 20);
    if (st == NATS_OK) st = natsOptions_SetTimeout(o, 2000);
    if (st == NATS_OK) st = natsOptions_SetPingInterval(o, 2000);
    if (st == NATS_OK) st = natsOptions_SetMaxPingsOut(o, 2);
    if (st == NATS_OK) st = natsOptions_SetDisconnectedCB(o, on_disconnected, b);
    if (st == NATS_OK) st = natsOptions_SetReconnectedCB(o, on_reconnected, b);
    if (st == NATS_OK) st = natsOptions_SetErrorHandler(o, on_error, b);
    if (st == NATS_OK) st = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, b);
    b->opts = o;
    if (st == NATS_OK) {
        st = natsConnection_Connect(&b->nc, o);
        if (st == NATS_OK) {
            atomic_store(&b->connected, 1);
        } else if (st == NATS_NOT_YET_CONNECTED) {
            char shown[512];
            redact_urls(servers, shown, sizeof shown);
            iy_log_warn("bus: NATS (%s) not reachable yet; connecting in the background", shown);
            if (b->fns.cut) b->fns.cut(b->fns.ctx, 1);
            st = NATS_OK;
        }
    }
    if (st == NATS_OK) st = natsConnection_Subscribe(&b->nodes_sub, b->nc, "iyagi.nodes", on_cluster, b);
    if (st == NATS_OK) st = natsConnection_Subscribe(&b->presence_sub, b->nc, "iyagi.presence", on_cluster, b);
    if (st == NATS_OK) st = natsConnection_Subscribe(&b->revoke_sub, b->nc, "iyagi.revoke", on_cluster, b);
    if (st == NATS_OK && pthread_create(&b->confirmer, NULL, confirmer_main, b) != 0) st = NATS_ERR;
    if (st != NATS_OK) {
        char shown[512];
        redact_urls(servers, shown, sizeof shown);
        iy_log_error("bus: cannot set up NATS (%s): %s", shown, natsStatus_GetText(st));
        if (b->nc) natsConnection_Destroy(b->nc);
        natsSubscription_Destroy(b->nodes_sub);
        natsSubscription_Destroy(b->presence_sub);
        natsSubscription_Destroy(b->revoke_sub);
        natsOptions_Destroy(o);
        bus_free(b->local);
        iy_free(b);
        return NULL;
    }
    return &b->base;
}

static const bus_ops nats_ops = {
    .free = nats_free,
    .subscribe = nats_subscribe,
    .unsubscribe = nats_unsubscribe,
    .publish = nats_publish,
    .revoke = nats_revoke,
    .notify = nats_notify,
    .announce_node = nats_announce_node,
    .announce_presence = nats_announce_presence,
    .stats = nats_stats,
    .cluster = 1,
};
