/* test_ratelimit.c — token buckets and back-off (model/ratelimit.h) and
 * the keyed limiter over them (chat/limiter.h): bursts, refill, waits,
 * a clock going back, growing locks, forgetting idle keys, the memory
 * bound failing open, and many threads on one key never passing more than
 * the burst. */
#include "t.h"
#include "chat/limiter.h"
#include "model/ratelimit.h"
#include <pthread.h>
#include <stdatomic.h>

static void test_bucket(void)
{
    iy_rate r = { 2, 5 };   /* 2 a second, burst 5 */
    iy_bucket b = iy_bucket_full(r, 1000);
    for (int i = 0; i < 5; i++) CHECK_EQ(iy_bucket_take(&b, r, 1000), 0);
    CHECK_EQ(iy_bucket_take(&b, r, 1000), 500);      /* a token every 500 ms */
    CHECK_EQ(iy_bucket_take(&b, r, 1200), 300);      /* nothing taken by a refusal */
    CHECK_EQ(iy_bucket_take(&b, r, 1500), 0);
    CHECK_EQ(iy_bucket_take(&b, r, 1500), 500);
    CHECK(!iy_bucket_is_full(&b, r, 3000));
    CHECK(iy_bucket_is_full(&b, r, 4000));           /* 2.5 s refill 5 */
    /* a long pause refills to the burst, not beyond */
    for (int i = 0; i < 5; i++) CHECK_EQ(iy_bucket_take(&b, r, 100000), 0);
    CHECK(iy_bucket_take(&b, r, 100000) > 0);
    /* a clock that goes back refills nothing and breaks nothing */
    CHECK(iy_bucket_take(&b, r, 50000) > 0);
    CHECK_EQ(iy_bucket_take(&b, r, 100500), 0);
    /* slow rates: a wait in whole milliseconds, at least 1 */
    iy_rate slow = { 1.0 / 60, 1 };
    iy_bucket s = iy_bucket_full(slow, 0);
    CHECK_EQ(iy_bucket_take(&s, slow, 0), 0);
    CHECK_EQ(iy_bucket_take(&s, slow, 0), 60000);
    CHECK_EQ(iy_bucket_take(&s, slow, 59999), 1);
    CHECK_EQ(iy_bucket_take(&s, slow, 60000), 0);
}

static void test_backoff(void)
{
    iy_backoff c = { 3, 1000, 8000 };
    iy_bucket b = { 0, 0 };
    for (int i = 0; i < 3; i++) {
        iy_backoff_fail(&b, c, 100);
        CHECK_EQ(iy_backoff_wait(&b, 100), 0);        /* free failures */
    }
    iy_backoff_fail(&b, c, 100);
    CHECK_EQ(iy_backoff_wait(&b, 100), 1000);
    CHECK_EQ(iy_backoff_wait(&b, 600), 500);
    CHECK_EQ(iy_backoff_wait(&b, 1100), 0);
    iy_backoff_fail(&b, c, 2000);
    CHECK_EQ(iy_backoff_wait(&b, 2000), 2000);
    iy_backoff_fail(&b, c, 5000);
    CHECK_EQ(iy_backoff_wait(&b, 5000), 4000);
    iy_backoff_fail(&b, c, 10000);
    CHECK_EQ(iy_backoff_wait(&b, 10000), 8000);
    for (int i = 0; i < 100; i++) iy_backoff_fail(&b, c, 20000);   /* capped, no overflow */
    CHECK_EQ(iy_backoff_wait(&b, 20000), 8000);
}

static void test_limiter(void)
{
    limiter *l = limiter_new_rate((iy_rate){ 1, 2 }, 1600);
    CHECK_EQ(limiter_take(l, 7, 0), 0);
    CHECK_EQ(limiter_take(l, 7, 0), 0);
    CHECK_EQ(limiter_take(l, 7, 0), 1000);
    CHECK_EQ(limiter_take(l, 8, 0), 0);                 /* keys are apart */
    CHECK_EQ(limiter_keys(l), 2);
    limiter_sweep(l, 500);                              /* neither is full yet */
    CHECK_EQ(limiter_keys(l), 2);
    limiter_sweep(l, 2000);                             /* both are: forgotten */
    CHECK_EQ(limiter_keys(l), 0);
    CHECK_EQ(limiter_take(l, 7, 2000), 0);
    /* the bound: 1600 keys over 16 shards; more distinct keys never hold
     * more memory, and fresh keys are still served (fail open) */
    for (uint64_t k = 1; k <= 100000; k++) CHECK_EQ(limiter_take(l, k * 7919, 3000), 0);
    CHECK(limiter_keys(l) <= 1600);
    limiter_free(l);

    limiter *f = limiter_new_backoff((iy_backoff){ 1, 500, 2000 }, 100);
    uint64_t k = limiter_key_str("alice");
    CHECK(k != 0 && k != limiter_key_str("alicf"));
    CHECK_EQ(limiter_wait(f, k, 0), 0);
    CHECK_EQ(limiter_keys(f), 0);                       /* a check keeps nothing */
    limiter_fail(f, k, 0);
    CHECK_EQ(limiter_wait(f, k, 0), 0);
    limiter_fail(f, k, 0);
    CHECK_EQ(limiter_wait(f, k, 0), 500);
    limiter_sweep(f, 400);
    CHECK_EQ(limiter_keys(f), 1);                       /* locked: kept */
    limiter_clear(f, k);                                /* a success */
    CHECK_EQ(limiter_wait(f, k, 0), 0);
    limiter_fail(f, k, 0);
    limiter_fail(f, k, 0);
    limiter_sweep(f, 2400);                             /* lock over, but within max_ms: kept */
    CHECK_EQ(limiter_keys(f), 1);
    limiter_sweep(f, 3000);
    CHECK_EQ(limiter_keys(f), 0);
    limiter_free(f);
}

/* Four threads take from one key as fast as they can: together they never
 * get more than the burst (the clock stands still). */
static limiter *shared;
static atomic_int granted;

static void *taker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10000; i++)
        if (limiter_take(shared, 42, 5000) == 0) granted++;
    return NULL;
}

static void test_threads(void)
{
    shared = limiter_new_rate((iy_rate){ 10, 100 }, 1000);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, taker, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK_EQ(granted, 100);
    limiter_free(shared);
}

int main(void)
{
    test_bucket();
    test_backoff();
    test_limiter();
    test_threads();
    return T_DONE("ratelimit");
}
