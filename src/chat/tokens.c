/* tokens.c — the valid-token cache (tokens.h).
 *
 * Layout: TOKENS_STRIPES stripes, chosen by the token hash's first byte;
 * each has a mutex, a map from the hash's next 8 bytes to an entry (the
 * full hash is compared on lookup), a count bounded by its share of the
 * capacity and a revocation epoch. The hashes are SHA-256 of random tokens,
 * so stripes fill evenly and no caller can aim at one: only tokens the store
 * accepted are ever inserted.
 *
 * Eviction: a full stripe drops the least recently used of a few entries
 * sampled at random slots (the sampled-LRU of Redis's maxmemory policies),
 * preferring any expired one. Memory is proportional to the entries held
 * (one small allocation each plus the map's slots), not to the capacity.
 *
 * Why a mutex per stripe rather than RCU: a lookup holds the lock for a
 * hash-map probe and a 32-byte compare; with 64 stripes and a handful of
 * threads two lookups rarely meet, and an uncontended lock costs two atomic
 * operations — small beside the SHA-256 the caller already did. */
#include "tokens.h"
#include "../base/alloc.h"
#include "../base/u64map.h"
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define TOKENS_STRIPES 64
#define EVICT_SAMPLES 5

/* One per cached token, one per connection that authenticated with a new
 * one: 48 bytes and the device name (a 64-byte malloc chunk for a name of
 * up to 7 bytes). Times are CLOCK_MONOTONIC ms, wrapping at 32 bits: they
 * are only compared with now, and a live entry is younger than the TTL. */
typedef struct tok_ent {
    uint8_t hash[32];
    uint64_t user;
    uint32_t expires_ms;
    uint32_t used_ms;
    char device[];
} tok_ent;

/* a - b for wrapping ms (|a - b| < 24 days) */
static int32_t ms_diff(uint32_t a, uint32_t b) { return (int32_t)(a - b); }

typedef struct stripe {
    pthread_mutex_t mu;
    u64map map;                  /* key(hash) -> tok_ent* */
    size_t cap;                  /* entries at most */
    uint64_t epoch;              /* bumped by every forget and clear */
    uint64_t hits, misses;
    uint32_t rnd;                /* eviction sampling */
} stripe;

struct tokens {
    int64_t ttl_ms;
    int64_t clock_offset_ms;     /* tokens_clock_offset (tests) */
    atomic_int paused;
    stripe s[TOKENS_STRIPES];
};

static int64_t mono_ms(const tokens *t)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + t->clock_offset_ms;
}

void tokens_clock_offset(tokens *t, int64_t offset_ms) { t->clock_offset_ms = offset_ms; }

int64_t tokens_clock_ms(tokens *t) { return mono_ms(t); }

static stripe *stripe_of(tokens *t, const uint8_t hash[32]) { return &t->s[hash[0] % TOKENS_STRIPES]; }

static uint64_t key_of(const uint8_t hash[32])
{
    uint64_t k;
    memcpy(&k, hash + 1, 8);
    return k ? k : 1;            /* 0 is the map's empty slot */
}

tokens *tokens_new(size_t capacity, int64_t ttl_ms)
{
    tokens *t = iy_calloc(1, sizeof *t);
    t->ttl_ms = ttl_ms;
    for (unsigned i = 0; i < TOKENS_STRIPES; i++) {
        pthread_mutex_init(&t->s[i].mu, NULL);
        t->s[i].cap = (capacity + TOKENS_STRIPES - 1) / TOKENS_STRIPES;
        t->s[i].rnd = 2463534242u + i;
    }
    return t;
}

static void stripe_wipe(stripe *s)
{
    for (size_t i = 0; i < s->map.cap; i++)
        if (s->map.keys[i]) iy_free((void *)(uintptr_t)s->map.vals[i]);
    u64map_free(&s->map);
}

void tokens_free(tokens *t)
{
    if (!t) return;
    for (unsigned i = 0; i < TOKENS_STRIPES; i++) {
        stripe_wipe(&t->s[i]);
        pthread_mutex_destroy(&t->s[i].mu);
    }
    iy_free(t);
}

int tokens_get(tokens *t, const uint8_t hash[32], uint64_t *user, char device[IY_DEVICE_MAX + 1])
{
    if (!t) return 0;
    stripe *s = stripe_of(t, hash);
    int64_t now = mono_ms(t);
    int hit = 0;
    pthread_mutex_lock(&s->mu);
    tok_ent *e = u64map_get(&s->map, key_of(hash));
    if (e && memcmp(e->hash, hash, 32) == 0 && ms_diff(e->expires_ms, (uint32_t)now) > 0) {
        *user = e->user;
        snprintf(device, IY_DEVICE_MAX + 1, "%s", e->device);
        e->used_ms = (uint32_t)now;
        hit = 1;
        s->hits++;
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    return hit;
}

uint64_t tokens_epoch(tokens *t, const uint8_t hash[32])
{
    if (!t) return 0;
    stripe *s = stripe_of(t, hash);
    pthread_mutex_lock(&s->mu);
    uint64_t e = s->epoch;
    pthread_mutex_unlock(&s->mu);
    return e;
}

static uint32_t xorshift(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Under s->mu, s full: drops one entry (an expired one, or the least
 * recently used of EVICT_SAMPLES sampled). */
static void evict_one(stripe *s, int64_t now)
{
    size_t victim = SIZE_MAX;
    int64_t oldest = INT64_MAX;
    for (int k = 0; k < EVICT_SAMPLES; k++) {
        size_t i = xorshift(&s->rnd) & (s->map.cap - 1);
        while (!s->map.keys[i]) i = (i + 1) & (s->map.cap - 1);   /* the map is not empty */
        tok_ent *e = (tok_ent *)(uintptr_t)s->map.vals[i];
        int64_t age = ms_diff(e->expires_ms, (uint32_t)now) <= 0 ? INT64_MIN : ms_diff(e->used_ms, (uint32_t)now);
        if (age < oldest) {
            oldest = age;
            victim = i;
        }
    }
    uint64_t key = s->map.keys[victim];
    iy_free(u64map_del(&s->map, key));
}

void tokens_put(tokens *t, const uint8_t hash[32], uint64_t user, const char *device, uint64_t epoch)
{
    if (!t || atomic_load(&t->paused)) return;
    stripe *s = stripe_of(t, hash);
    if (!s->cap) return;
    size_t dn = strnlen(device, IY_DEVICE_MAX);
    tok_ent *e = iy_malloc(sizeof *e + dn + 1);
    memcpy(e->hash, hash, 32);
    e->user = user;
    memcpy(e->device, device, dn);
    e->device[dn] = '\0';
    int64_t now = mono_ms(t);
    e->used_ms = (uint32_t)now;
    e->expires_ms = (uint32_t)(now + t->ttl_ms);
    uint64_t key = key_of(hash);
    pthread_mutex_lock(&s->mu);
    /* paused is checked again under the lock: tokens_pause clears every
     * stripe under its lock after setting it, so nothing slips in after. */
    if (s->epoch != epoch || atomic_load(&t->paused)) {
        pthread_mutex_unlock(&s->mu);
        iy_free(e);
        return;
    }
    tok_ent *old = u64map_del(&s->map, key);
    if (!old && s->map.n >= s->cap) evict_one(s, now);
    u64map_put(&s->map, key, e);
    pthread_mutex_unlock(&s->mu);
    iy_free(old);
}

void tokens_forget(tokens *t, const uint8_t hash[32])
{
    if (!t) return;
    stripe *s = stripe_of(t, hash);
    pthread_mutex_lock(&s->mu);
    s->epoch++;
    tok_ent *e = u64map_get(&s->map, key_of(hash));
    if (e && memcmp(e->hash, hash, 32) == 0) u64map_del(&s->map, key_of(hash));
    else e = NULL;
    pthread_mutex_unlock(&s->mu);
    iy_free(e);
}

static void clear_all(tokens *t)
{
    for (unsigned i = 0; i < TOKENS_STRIPES; i++) {
        stripe *s = &t->s[i];
        pthread_mutex_lock(&s->mu);
        s->epoch++;
        stripe_wipe(s);
        pthread_mutex_unlock(&s->mu);
    }
}

void tokens_pause(tokens *t)
{
    if (!t) return;
    atomic_store(&t->paused, 1);
    clear_all(t);
}

void tokens_resume(tokens *t)
{
    if (!t) return;
    /* Revocations sent while we were away are lost: start from empty (a
     * put that began before the pause fails its epoch check). */
    clear_all(t);
    atomic_store(&t->paused, 0);
}

void tokens_get_stats(tokens *t, tokens_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!t) return;
    for (unsigned i = 0; i < TOKENS_STRIPES; i++) {
        stripe *s = &t->s[i];
        pthread_mutex_lock(&s->mu);
        out->hits += s->hits;
        out->misses += s->misses;
        out->entries += s->map.n;
        pthread_mutex_unlock(&s->mu);
    }
}
