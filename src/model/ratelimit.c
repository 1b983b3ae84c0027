/* ratelimit.c — token buckets and growing back-off (ratelimit.h). */
#include "ratelimit.h"
#include <math.h>

iy_bucket iy_bucket_full(iy_rate r, int64_t now_ms) { return (iy_bucket){ r.burst, now_ms }; }

static void refill(iy_bucket *b, iy_rate r, int64_t now_ms)
{
    if (now_ms <= b->at_ms) return;
    b->tokens += (double)(now_ms - b->at_ms) * r.per_s / 1000.0;
    if (b->tokens > r.burst) b->tokens = r.burst;
    b->at_ms = now_ms;
}

int64_t iy_bucket_take(iy_bucket *b, iy_rate r, int64_t now_ms)
{
    refill(b, r, now_ms);
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    int64_t wait = (int64_t)ceil((1.0 - b->tokens) * 1000.0 / r.per_s);
    return wait > 0 ? wait : 1;
}

int iy_bucket_is_full(const iy_bucket *b, iy_rate r, int64_t now_ms)
{
    iy_bucket x = *b;
    refill(&x, r, now_ms);
    return x.tokens >= r.burst;
}

int64_t iy_backoff_wait(const iy_bucket *b, int64_t now_ms)
{
    return b->at_ms > now_ms ? b->at_ms - now_ms : 0;
}

void iy_backoff_fail(iy_bucket *b, iy_backoff c, int64_t now_ms)
{
    b->tokens += 1.0;
    if (b->tokens <= (double)c.free_fails) return;
    double steps = b->tokens - (double)c.free_fails - 1.0;   /* 0 for the first lock */
    int64_t lock = c.max_ms;
    if (steps < 40) {
        double ms = (double)c.base_ms * pow(2.0, steps);
        if (ms < (double)c.max_ms) lock = (int64_t)ms;
    }
    b->at_ms = now_ms + lock;
}
