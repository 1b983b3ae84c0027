/* test_tokens.c — the valid-token cache (chat/tokens.h): hits and misses,
 * forget, a fill that raced a revocation is refused (the epoch), the
 * capacity bound with eviction, expiry, pause/resume, a zero capacity, the
 * 32-bit times across their wrap (every 49.7 days of uptime), and threads
 * reading, filling and forgetting at once (run under TSan too). */
#include "t.h"
#include "chat/tokens.h"
#include <pthread.h>
#include <stdint.h>
#include <time.h>

static void hash_of(unsigned i, uint8_t h[32])
{
    /* Spread like SHA-256 output: every byte depends on i. */
    uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
    for (int k = 0; k < 32; k++) {
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ull;
        h[k] = (uint8_t)(x >> 32);
    }
}

static void test_basic(void)
{
    tokens *t = tokens_new(1000, 60000);
    uint8_t h[32], h2[32];
    hash_of(1, h);
    hash_of(2, h2);
    uint64_t user = 0;
    char dev[IY_DEVICE_MAX + 1];
    CHECK(!tokens_get(t, h, &user, dev));
    tokens_put(t, h, 42, "phone", tokens_epoch(t, h));
    CHECK(tokens_get(t, h, &user, dev));
    CHECK_EQ(user, 42);
    CHECK(strcmp(dev, "phone") == 0);
    CHECK(!tokens_get(t, h2, &user, dev));
    /* same key bytes, another hash: a miss, not the other session */
    uint8_t h3[32];
    memcpy(h3, h, 32);
    h3[31] ^= 1;
    CHECK(!tokens_get(t, h3, &user, dev));
    tokens_forget(t, h3);                       /* forgetting another hash keeps h */
    CHECK(tokens_get(t, h, &user, dev));
    tokens_forget(t, h);
    CHECK(!tokens_get(t, h, &user, dev));
    /* a device name of the maximum length survives whole */
    char longdev[IY_DEVICE_MAX + 1];
    memset(longdev, 'd', IY_DEVICE_MAX);
    longdev[IY_DEVICE_MAX] = '\0';
    tokens_put(t, h2, 7, longdev, tokens_epoch(t, h2));
    CHECK(tokens_get(t, h2, &user, dev));
    CHECK(strcmp(dev, longdev) == 0);
    tokens_stats st;
    tokens_get_stats(t, &st);
    CHECK_EQ(st.entries, 1);
    CHECK(st.hits >= 3 && st.misses >= 4);
    tokens_free(t);
    tokens_free(NULL);
}

/* A store lookup that began before a revocation must not put the token
 * back after it. */
static void test_epoch_race(void)
{
    tokens *t = tokens_new(1000, 60000);
    uint8_t h[32];
    hash_of(3, h);
    uint64_t user;
    char dev[IY_DEVICE_MAX + 1];
    uint64_t e = tokens_epoch(t, h);   /* the lookup starts */
    tokens_forget(t, h);               /* logout commits meanwhile */
    tokens_put(t, h, 9, "x", e);       /* the lookup's stale answer */
    CHECK(!tokens_get(t, h, &user, dev));
    tokens_put(t, h, 9, "x", tokens_epoch(t, h));
    CHECK(tokens_get(t, h, &user, dev));
    tokens_free(t);
}

static void test_capacity(void)
{
    tokens *t = tokens_new(640, 60000);   /* 10 per stripe */
    uint8_t h[32];
    for (unsigned i = 0; i < 20000; i++) {
        hash_of(100 + i, h);
        tokens_put(t, h, i + 1, "d", tokens_epoch(t, h));
    }
    tokens_stats st;
    tokens_get_stats(t, &st);
    CHECK(st.entries <= 640);
    CHECK(st.entries >= 600);
    /* the newest are there (a put never evicts itself) */
    uint64_t user;
    char dev[IY_DEVICE_MAX + 1];
    hash_of(100 + 19999, h);
    CHECK(tokens_get(t, h, &user, dev));
    CHECK_EQ(user, 20000);
    tokens_free(t);

    tokens *none = tokens_new(0, 60000);
    tokens_put(none, h, 1, "d", tokens_epoch(none, h));
    CHECK(!tokens_get(none, h, &user, dev));
    tokens_free(none);
    CHECK(!tokens_get(NULL, h, &user, dev));
}

static void test_expiry_and_pause(void)
{
    tokens *t = tokens_new(100, 20);
    uint8_t h[32];
    hash_of(5, h);
    uint64_t user;
    char dev[IY_DEVICE_MAX + 1];
    tokens_put(t, h, 1, "d", tokens_epoch(t, h));
    CHECK(tokens_get(t, h, &user, dev));
    struct timespec ts = { 0, 40 * 1000000 };
    nanosleep(&ts, NULL);
    CHECK(!tokens_get(t, h, &user, dev));

    tokens_put(t, h, 1, "d", tokens_epoch(t, h));
    uint64_t e = tokens_epoch(t, h);
    tokens_pause(t);
    CHECK(!tokens_get(t, h, &user, dev));
    tokens_put(t, h, 1, "d", tokens_epoch(t, h));   /* paused: not cached */
    CHECK(!tokens_get(t, h, &user, dev));
    tokens_resume(t);
    tokens_put(t, h, 1, "d", e);                    /* began before the pause */
    CHECK(!tokens_get(t, h, &user, dev));
    tokens_put(t, h, 1, "d", tokens_epoch(t, h));
    CHECK(tokens_get(t, h, &user, dev));
    tokens_free(t);
}

/* The entries keep their times in 32 bits of ms, which wrap every 49.7
 * days: put just before the wrap, a token is still valid just after it
 * and expires a TTL after its put. clock_at sets the cache's clock to
 * wrap + rel ms at the moment of the call (so a slow machine cannot move
 * a step across the wrap or the TTL). */
static int64_t raw_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void clock_at(tokens *t, int64_t wrap, int64_t rel) { tokens_clock_offset(t, wrap + rel - raw_ms()); }

static void test_clock_wrap(void)
{
    tokens *t = tokens_new(64, 1000);
    int64_t wrap = ((raw_ms() >> 32) + 1) << 32;   /* the next ms where (uint32_t)now is 0 */
    uint8_t h[32];
    hash_of(7, h);
    uint64_t user = 0;
    char dev[IY_DEVICE_MAX + 1];
    clock_at(t, wrap, -10);                        /* 10 ms before the wrap */
    CHECK((uint32_t)tokens_clock_ms(t) > UINT32_MAX - 1000);
    tokens_put(t, h, 9, "d", tokens_epoch(t, h));
    clock_at(t, wrap, 500);                        /* past the wrap, within the TTL */
    CHECK((uint32_t)tokens_clock_ms(t) < 1000);
    CHECK(tokens_get(t, h, &user, dev));
    CHECK_EQ(user, 9);
    clock_at(t, wrap, 1200);                       /* past the TTL */
    CHECK(!tokens_get(t, h, &user, dev));
    /* expired just before the wrap: still expired after it (its 32-bit
     * expiry is larger than the wrapped clock) */
    clock_at(t, wrap, -1500);
    tokens_put(t, h, 9, "d", tokens_epoch(t, h));
    CHECK(tokens_get(t, h, &user, dev));
    clock_at(t, wrap, 500);
    CHECK(!tokens_get(t, h, &user, dev));
    tokens_free(t);
}

/* Readers, fillers and forgetters at once; a forgotten token whose
 * forget came after every fill is gone at the end. */
static tokens *shared;
static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    uint8_t h[32];
    uint64_t user;
    char dev[IY_DEVICE_MAX + 1];
    for (unsigned i = 0; i < 20000; i++) {
        hash_of(i % 500, h);
        switch ((i + id) % 4) {
        case 0: tokens_put(shared, h, i % 500 + 1, "w", tokens_epoch(shared, h)); break;
        case 3: tokens_forget(shared, h); break;
        default:
            if (tokens_get(shared, h, &user, dev) && user != i % 500 + 1) return (void *)1;
        }
    }
    return NULL;
}

static void test_threads(void)
{
    shared = tokens_new(256, 60000);
    pthread_t th[4];
    for (uintptr_t i = 0; i < 4; i++) pthread_create(&th[i], NULL, worker, (void *)i);
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        bad += r != NULL;
    }
    CHECK_EQ(bad, 0);
    uint8_t h[32];
    uint64_t user;
    char dev[IY_DEVICE_MAX + 1];
    for (unsigned i = 0; i < 500; i++) {
        hash_of(i, h);
        tokens_forget(shared, h);
        CHECK(!tokens_get(shared, h, &user, dev));
    }
    tokens_free(shared);
}

int main(void)
{
    test_basic();
    test_epoch_race();
    test_capacity();
    test_expiry_and_pause();
    test_clock_wrap();
    test_threads();
    return T_DONE("tokens");
}
