/* ratelimit.h — token buckets and growing back-off, as pure arithmetic:
 * the caller gives the time and keeps the state (chat/limiter.h keys them
 * by user or address, thread-safely).
 *
 * A bucket holds at most `burst` tokens and refills at `per_s` tokens a
 * second; an action takes one. A back-off counts failures: the first
 * `free_fails` cost nothing, each later one locks the key for twice as long
 * as the one before (base_ms, 2 base_ms, 4 base_ms, ... at most max_ms). */
#ifndef IY_MODEL_RATELIMIT_H
#define IY_MODEL_RATELIMIT_H
#include <stdint.h>

typedef struct iy_rate {
    double per_s;               /* refill, tokens per second (> 0) */
    double burst;               /* capacity, tokens (>= 1) */
} iy_rate;

typedef struct iy_backoff {
    uint32_t free_fails;        /* failures before the first lock */
    int64_t base_ms;            /* the first lock */
    int64_t max_ms;             /* the longest lock */
} iy_backoff;

/* One key's state: a bucket (tokens, at_ms: when they were counted) or a
 * back-off (tokens: failures so far, at_ms: locked until). */
typedef struct iy_bucket {
    double tokens;
    int64_t at_ms;
} iy_bucket;

/* A full bucket at now_ms. */
iy_bucket iy_bucket_full(iy_rate r, int64_t now_ms);

/* Takes one token: 0 if there was one, else the milliseconds until there
 * will be (>= 1; nothing taken). A clock that went back refills nothing. */
int64_t iy_bucket_take(iy_bucket *b, iy_rate r, int64_t now_ms);

/* 1 if the bucket is full again at now_ms: its key can be forgotten. */
int iy_bucket_is_full(const iy_bucket *b, iy_rate r, int64_t now_ms);

/* Milliseconds the back-off still locks the key at now_ms (0: free). */
int64_t iy_backoff_wait(const iy_bucket *b, int64_t now_ms);

/* Counts a failure at now_ms and sets the lock it earns. */
void iy_backoff_fail(iy_bucket *b, iy_backoff c, int64_t now_ms);

#endif
