/* limiter.c — rate limits keyed by user or address (limiter.h). */
#include "limiter.h"
#include "../base/alloc.h"
#include "../base/u64map.h"
#include <pthread.h>
#include <string.h>

#define SHARDS 16

typedef struct shard {
    pthread_mutex_t mu;
    u64map keys;                /* key -> iy_bucket * */
} shard;

struct limiter {
    iy_rate rate;
    iy_backoff backoff;
    int is_backoff;
    size_t max_per_shard;
    shard shards[SHARDS];
};

static limiter *make(size_t max_keys)
{
    limiter *l = iy_calloc(1, sizeof *l);
    l->max_per_shard = max_keys / SHARDS ? max_keys / SHARDS : 1;
    for (int i = 0; i < SHARDS; i++) pthread_mutex_init(&l->shards[i].mu, NULL);
    return l;
}

limiter *limiter_new_rate(iy_rate rate, size_t max_keys)
{
    limiter *l = make(max_keys);
    l->rate = rate;
    return l;
}

limiter *limiter_new_backoff(iy_backoff backoff, size_t max_keys)
{
    limiter *l = make(max_keys);
    l->backoff = backoff;
    l->is_backoff = 1;
    return l;
}

static void shard_clear(shard *s)
{
    for (size_t i = 0; i < s->keys.cap; i++)
        if (s->keys.keys[i]) iy_free((void *)(uintptr_t)s->keys.vals[i]);
    u64map_clear(&s->keys);
}

void limiter_free(limiter *l)
{
    if (!l) return;
    for (int i = 0; i < SHARDS; i++) {
        shard_clear(&l->shards[i]);
        u64map_free(&l->shards[i].keys);
        pthread_mutex_destroy(&l->shards[i].mu);
    }
    iy_free(l);
}

static uint64_t mix(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    return k ? k : 1;
}

static int forgettable(const limiter *l, const iy_bucket *b, int64_t now_ms)
{
    return l->is_backoff ? iy_backoff_wait(b, now_ms) == 0 && now_ms - b->at_ms > l->backoff.max_ms
                         : iy_bucket_is_full(b, l->rate, now_ms);
}

static void shard_sweep(limiter *l, shard *s, int64_t now_ms)
{
    size_t n = 0;
    uint64_t *gone = NULL;
    for (size_t i = 0; i < s->keys.cap; i++) {
        if (!s->keys.keys[i] || !forgettable(l, (iy_bucket *)(uintptr_t)s->keys.vals[i], now_ms)) continue;
        if (!gone) gone = iy_malloc(s->keys.n * sizeof *gone);
        gone[n++] = s->keys.keys[i];
    }
    for (size_t i = 0; i < n; i++) iy_free(u64map_del(&s->keys, gone[i]));
    iy_free(gone);
}

/* The shard of key, locked, and key's state in it (created: *fresh). */
static iy_bucket *lookup(limiter *l, uint64_t key, int64_t now_ms, int create, shard **out)
{
    key = mix(key);
    shard *s = &l->shards[key % SHARDS];
    pthread_mutex_lock(&s->mu);
    *out = s;
    iy_bucket *b = u64map_get(&s->keys, key);
    if (b || !create) return b;
    if (s->keys.n >= l->max_per_shard) {
        shard_sweep(l, s, now_ms);
        if (s->keys.n >= l->max_per_shard) shard_clear(s);
    }
    b = iy_malloc(sizeof *b);
    *b = l->is_backoff ? (iy_bucket){ 0, 0 } : iy_bucket_full(l->rate, now_ms);
    u64map_put(&s->keys, key, b);
    return b;
}

int64_t limiter_take(limiter *l, uint64_t key, int64_t now_ms)
{
    shard *s;
    iy_bucket *b = lookup(l, key, now_ms, 1, &s);
    int64_t wait = iy_bucket_take(b, l->rate, now_ms);
    pthread_mutex_unlock(&s->mu);
    return wait;
}

int64_t limiter_wait(limiter *l, uint64_t key, int64_t now_ms)
{
    shard *s;
    iy_bucket *b = lookup(l, key, now_ms, 0, &s);
    int64_t wait = b ? iy_backoff_wait(b, now_ms) : 0;
    pthread_mutex_unlock(&s->mu);
    return wait;
}

void limiter_fail(limiter *l, uint64_t key, int64_t now_ms)
{
    shard *s;
    iy_bucket *b = lookup(l, key, now_ms, 1, &s);
    iy_backoff_fail(b, l->backoff, now_ms);
    pthread_mutex_unlock(&s->mu);
}

void limiter_clear(limiter *l, uint64_t key)
{
    key = mix(key);
    shard *s = &l->shards[key % SHARDS];
    pthread_mutex_lock(&s->mu);
    iy_free(u64map_del(&s->keys, key));
    pthread_mutex_unlock(&s->mu);
}

void limiter_sweep(limiter *l, int64_t now_ms)
{
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&l->shards[i].mu);
        shard_sweep(l, &l->shards[i], now_ms);
        pthread_mutex_unlock(&l->shards[i].mu);
    }
}

size_t limiter_keys(limiter *l)
{
    size_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&l->shards[i].mu);
        n += l->shards[i].keys.n;
        pthread_mutex_unlock(&l->shards[i].mu);
    }
    return n;
}

uint64_t limiter_key_str(const char *s)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (; *s; s++) h = (h ^ (uint8_t)*s) * UINT64_C(0x100000001b3);
    return h ? h : 1;
}

/* ---- the service's limits ---- */

service_limits *service_limits_new(void)
{
    service_limits *l = iy_calloc(1, sizeof *l);
    l->login_addr = limiter_new_rate(LIMIT_LOGIN_ADDR, LIMIT_KEYS);
    l->login_user = limiter_new_backoff(LIMIT_LOGIN_FAILS, LIMIT_KEYS);
    l->signup_addr = limiter_new_rate(LIMIT_SIGNUP_ADDR, LIMIT_KEYS);
    l->send_user = limiter_new_rate(LIMIT_SEND_USER, LIMIT_KEYS);
    l->direct_user = limiter_new_rate(LIMIT_DIRECT_USER, LIMIT_KEYS);
    l->typing_user = limiter_new_rate(LIMIT_TYPING_USER, LIMIT_KEYS);
    l->presence_user = limiter_new_rate(LIMIT_PRESENCE_USER, LIMIT_KEYS);
    return l;
}

/* Every limiter of l, into all[7]. */
static size_t each(const service_limits *l, limiter *all[7])
{
    limiter *v[] = { l->login_addr, l->login_user, l->signup_addr, l->send_user,
                     l->direct_user, l->typing_user, l->presence_user };
    memcpy(all, v, sizeof v);
    return sizeof v / sizeof *v;
}

void service_limits_free(service_limits *l)
{
    if (!l) return;
    limiter *all[7];
    for (size_t i = 0, n = each(l, all); i < n; i++) limiter_free(all[i]);
    iy_free(l);
}

void service_limits_sweep(service_limits *l, int64_t now_ms)
{
    if (!l) return;
    limiter *all[7];
    for (size_t i = 0, n = each(l, all); i < n; i++) limiter_sweep(all[i], now_ms);
}
