/* test_store_push.c — push subscriptions and the durable outbox of the
 * RocksDB store (store.h, "push"): subscriptions, queueing in the message
 * batch, collapse, rollback, take/lease, done/retry/dead, counts, reopen,
 * previews. Each test runs in a fresh directory under /tmp. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "t.h"
#include "base/alloc.h"
#include "base/err.h"
#include "store/store.h"
#include "store_fixture.h"

static uint64_t mksub(store *s, uint64_t user, const char *device)
{
    iy_push_sub sub;
    memset(&sub, 0, sizeof sub);
    sub.user = user;
    sub.kind = IY_PUSH_WEBHOOK;
    snprintf(sub.device, sizeof sub.device, "%s", device);
    snprintf(sub.url, sizeof sub.url, "https://hook.example/%s", device);
    memset(sub.secret, 'a', 64);
    CHECK_EQ(store_push_sub_create(s, &sub), 0);
    CHECK(sub.id != 0);
    return sub.id;
}

/* Adds one message from -> to to the open batch b and pushes it to `to`
 * (and to extra, if not 0). Returns the stored message's id (0 on failure). */
static uint64_t add_push(store_batch *b, uint64_t from, uint64_t to, uint64_t extra,
                         const char *text, uint64_t *channel)
{
    iy_send in = { from, 0, to, text, strlen(text), "", 0, 0 };
    iy_stored st;
    int rc = store_batch_add(b, &in, &st);
    CHECK_EQ(rc, 0);
    if (rc) return 0;
    CHECK_EQ(store_batch_push(b, to, &st.msg, text, strlen(text)), 0);
    if (extra) CHECK_EQ(store_batch_push(b, extra, &st.msg, text, strlen(text)), 0);
    if (channel) *channel = st.msg.channel;
    return st.msg.id;
}

/* One message in its own committed batch. */
static uint64_t send_push(store *s, uint64_t from, uint64_t to, const char *text, uint64_t *channel)
{
    store_batch *b = store_batch_begin(s);
    uint64_t id = add_push(b, from, to, 0, text, channel);
    CHECK_EQ(store_batch_commit(b), 0);
    return id;
}

static void check_counts(store *s, uint64_t pending, uint64_t dead)
{
    uint64_t p = 99, d = 99;
    CHECK_EQ(store_push_counts(s, &p, &d), 0);
    CHECK_EQ(p, pending);
    CHECK_EQ(d, dead);
}

/* take(now, lease, max), returning how many; *out freed unless kept. */
static size_t take(store *s, int64_t now, int64_t lease, size_t max, iy_push_note **keep)
{
    iy_push_note *v = NULL;
    size_t n = 12345;
    CHECK_EQ(store_push_take(s, now, lease, max, &v, &n), 0);
    if (keep) *keep = v;
    else iy_free(v);
    return n;
}

static void test_subs(void)
{
    store *s = fresh();
    uint64_t alice = mkuser(s, "alice"), bob = mkuser(s, "bob");

    iy_push_sub a, g;
    memset(&a, 0, sizeof a);
    a.user = alice;
    a.kind = IY_PUSH_WEBPUSH;
    strcpy(a.device, "phone");
    strcpy(a.url, "https://push.example.net/ep/123");
    strcpy(a.p256dh, "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM");
    strcpy(a.auth, "tBHItJI5svbpez7KI4CCXg");
    CHECK_EQ(store_push_sub_create(s, &a), 0);
    CHECK(a.id != 0);
    CHECK_EQ(store_push_sub_get(s, a.id, &g), 0);
    CHECK_EQ(g.id, a.id);
    CHECK_EQ(g.user, alice);
    CHECK_EQ(g.kind, IY_PUSH_WEBPUSH);
    CHECK(strcmp(g.device, "phone") == 0);
    CHECK(strcmp(g.url, a.url) == 0);
    CHECK(strcmp(g.p256dh, a.p256dh) == 0);
    CHECK(strcmp(g.auth, a.auth) == 0);
    CHECK(strcmp(g.secret, "") == 0);

    /* A webhook with a maximal URL and a secret. */
    iy_push_sub h;
    memset(&h, 0, sizeof h);
    h.user = alice;
    h.kind = IY_PUSH_WEBHOOK;
    memset(h.url, 'u', IY_PUSH_URL_MAX);
    memset(h.device, 'd', IY_DEVICE_MAX);
    memset(h.secret, 'f', 64);
    CHECK_EQ(store_push_sub_create(s, &h), 0);
    CHECK(h.id != a.id);
    CHECK_EQ(store_push_sub_get(s, h.id, &g), 0);
    CHECK_EQ(strlen(g.url), IY_PUSH_URL_MAX);
    CHECK_EQ(strlen(g.device), IY_DEVICE_MAX);
    CHECK_EQ(strlen(g.secret), 64);
    CHECK_EQ(g.kind, IY_PUSH_WEBHOOK);

    /* Ownership. */
    CHECK_EQ(store_push_sub_delete(s, bob, a.id), IY_ENOTFOUND);
    CHECK_EQ(store_push_sub_delete(s, alice, 12345), IY_ENOTFOUND);
    CHECK_EQ(store_push_sub_get(s, 12345, &g), IY_ENOTFOUND);
    CHECK_EQ(store_push_sub_delete(s, alice, a.id), 0);
    CHECK_EQ(store_push_sub_get(s, a.id, &g), IY_ENOTFOUND);
    CHECK_EQ(store_push_sub_delete(s, alice, a.id), IY_ENOTFOUND);
    CHECK_EQ(store_push_sub_get(s, h.id, &g), 0);

    /* The limit: 32 per user (alice has 1 now). */
    uint64_t last = 0;
    for (int i = 1; i < 32; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "d%d", i);
        last = mksub(s, alice, dev);
    }
    iy_push_sub x;
    memset(&x, 0, sizeof x);
    x.user = alice;
    x.kind = IY_PUSH_WEBHOOK;
    strcpy(x.url, "https://x");
    CHECK_EQ(store_push_sub_create(s, &x), IY_ETOOBIG);
    x.user = bob;   /* the limit is per user */
    CHECK_EQ(store_push_sub_create(s, &x), 0);
    CHECK_EQ(store_push_sub_delete(s, alice, last), 0);
    x.user = alice;
    CHECK_EQ(store_push_sub_create(s, &x), 0);
    CHECK_EQ(store_push_sub_create(s, &x), IY_ETOOBIG);

    /* Subscriptions survive a reopen, the limit too. */
    s = reopen(s);
    CHECK_EQ(store_push_sub_get(s, h.id, &g), 0);
    CHECK_EQ(g.user, alice);
    CHECK_EQ(store_push_sub_create(s, &x), IY_ETOOBIG);
    done(s);
}

static void test_queue(void)
{
    store *s = fresh();
    uint64_t alice = mkuser(s, "alice"), bob = mkuser(s, "bob"), carol = mkuser(s, "carol");
    uint64_t a1 = mksub(s, alice, "phone"), a2 = mksub(s, alice, "laptop");
    check_counts(s, 0, 0);

    /* bob has no subscription: nothing queued for him. */
    int64_t t0 = now_ms();
    uint64_t ch;
    store_batch *b = store_batch_begin(s);
    uint64_t m1 = add_push(b, bob, alice, bob, "hello alice", &ch);
    CHECK_EQ(store_batch_commit(b), 0);
    int64_t t1 = now_ms();
    check_counts(s, 2, 0);
    CHECK_EQ(send_push(s, alice, carol, "hi carol", NULL) != 0, 1);   /* carol: no subs */
    check_counts(s, 2, 0);

    iy_push_note *v;
    size_t n = take(s, t1, 30000, 10, &v);
    CHECK_EQ(n, 2);
    int seen1 = 0, seen2 = 0;
    for (size_t i = 0; i < n; i++) {
        seen1 += v[i].sub == a1;
        seen2 += v[i].sub == a2;
        CHECK_EQ(v[i].user, alice);
        CHECK_EQ(v[i].channel, ch);
        CHECK_EQ(v[i].message_id, m1);
        CHECK_EQ(v[i].from, bob);
        CHECK(strcmp(v[i].preview, "hello alice") == 0);
        CHECK_EQ(v[i].attempts, 0);
        CHECK(v[i].created_ms >= t0 && v[i].created_ms <= t1);
        CHECK_EQ(v[i].due_ms, t1 + 30000);
    }
    CHECK_EQ(seen1, 1);
    CHECK_EQ(seen2, 1);
    iy_free(v);
    check_counts(s, 2, 0);   /* taken is still pending */
    done(s);
}

static void test_collapse(void)
{
    store *s = fresh();
    uint64_t alice = mkuser(s, "alice"), bob = mkuser(s, "bob"), carol = mkuser(s, "carol");
    uint64_t a1 = mksub(s, alice, "phone");

    /* Within one batch: two messages of bob, one of carol (another channel). */
    uint64_t chb, chc;
    store_batch *b = store_batch_begin(s);
    add_push(b, bob, alice, 0, "first", &chb);
    uint64_t m2 = add_push(b, bob, alice, 0, "second", NULL);
    uint64_t m3 = add_push(b, carol, alice, 0, "from carol", &chc);
    CHECK_EQ(store_batch_commit(b), 0);
    check_counts(s, 2, 0);
    iy_push_note *v;
    size_t n = take(s, now_ms(), 1000, 10, &v);
    CHECK_EQ(n, 2);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(v[i].sub, a1);
        if (v[i].channel == chb) {
            CHECK_EQ(v[i].message_id, m2);
            CHECK(strcmp(v[i].preview, "second") == 0);
        } else {
            CHECK_EQ(v[i].channel, chc);
            CHECK_EQ(v[i].message_id, m3);
            CHECK_EQ(v[i].from, carol);
        }
    }

    /* Across batches: the bob note fails once (attempts 1, due in an hour), then
     * a newer message collapses into it: content replaced, schedule kept (no
     * burst of requests to a failing receiver). */
    iy_push_note nb = v[0].channel == chb ? v[0] : v[1];
    iy_free(v);
    CHECK_EQ(store_push_done(s, &nb, 0, 0, now_ms() + 3600000), 0);
    int64_t t = now_ms();
    CHECK_EQ(take(s, t + 2000, 1000, 10, NULL), 1);   /* the carol note only (lease passed) */
    uint64_t m4 = send_push(s, bob, alice, "third", NULL);
    check_counts(s, 2, 0);
    t = now_ms();
    CHECK_EQ(take(s, t, 1000, 10, NULL), 0);           /* still waiting for its retry */
    n = take(s, t + 3600000 + 60000, 1000, 10, &v);    /* bob's, and carol's whose lease passed */
    CHECK_EQ(n, 2);
    iy_push_note *vb = n == 2 && v[1].channel == chb ? &v[1] : &v[0];
    CHECK_EQ(vb->channel, chb);
    CHECK_EQ(vb->message_id, m4);
    CHECK_EQ(vb->attempts, 1);
    CHECK_EQ(vb->created_ms, nb.created_ms);
    CHECK(strcmp(vb->preview, "third") == 0);
    iy_free(v);

    /* An uncommitted batch leaves nothing (store_free without commit). */
    b = store_batch_begin(s);
    add_push(b, carol, alice, 0, "lost", NULL);
    s = reopen(s);
    check_counts(s, 2, 0);
    n = take(s, INT64_MAX, 0, 10, &v);
    CHECK_EQ(n, 2);
    for (size_t i = 0; i < n; i++) CHECK(strcmp(v[i].preview, "lost") != 0);
    iy_free(v);
    done(s);
}

static void test_take_done(void)
{
    store *s = fresh();
    uint64_t alice = mkuser(s, "alice"), bob = mkuser(s, "bob");
    mksub(s, alice, "phone");
    uint64_t m1 = send_push(s, bob, alice, "one", NULL);

    /* Due and lease. */
    int64_t t = now_ms();
    CHECK_EQ(take(s, t - 60000, 1000, 10, NULL), 0);   /* not due yet */
    CHECK_EQ(take(s, t, 60000, 0, NULL), 0);           /* max 0 */
    iy_push_note *v;
    CHECK_EQ(take(s, t, 60000, 10, &v), 1);
    iy_push_note note = v[0];
    iy_free(v);
    CHECK_EQ(note.message_id, m1);
    CHECK_EQ(take(s, t + 1000, 60000, 10, NULL), 0);   /* leased */
    CHECK_EQ(take(s, t + 59999, 60000, 10, NULL), 0);
    CHECK_EQ(take(s, t + 60000, 1000, 10, &v), 1);     /* the lease passed */
    note = v[0];
    iy_free(v);

    /* Done removes it. */
    CHECK_EQ(store_push_done(s, &note, 1, 0, 0), 0);
    check_counts(s, 0, 0);
    CHECK_EQ(take(s, INT64_MAX, 0, 10, NULL), 0);
    CHECK_EQ(store_push_done(s, &note, 1, 0, 0), 0);   /* gone: nothing */
    check_counts(s, 0, 0);

    /* Done while a newer message collapsed into it: it stays, due now. */
    send_push(s, bob, alice, "two", NULL);
    t = now_ms();
    CHECK_EQ(take(s, t, 60000, 10, &v), 1);
    note = v[0];
    iy_free(v);
    uint64_t m3 = send_push(s, bob, alice, "three", NULL);
    CHECK_EQ(store_push_done(s, &note, 1, 0, 0), 0);
    check_counts(s, 1, 0);
    CHECK_EQ(take(s, now_ms(), 60000, 10, &v), 1);
    CHECK_EQ(v[0].message_id, m3);
    note = v[0];
    iy_free(v);

    /* Retry: attempts + 1, rescheduled. */
    t = now_ms();
    CHECK_EQ(store_push_done(s, &note, 0, 0, t + 5000), 0);
    CHECK_EQ(take(s, t + 4999, 60000, 10, NULL), 0);
    CHECK_EQ(take(s, t + 5000, 60000, 10, &v), 1);
    CHECK_EQ(v[0].attempts, 1);
    CHECK_EQ(v[0].message_id, m3);
    note = v[0];
    iy_free(v);
    CHECK_EQ(store_push_done(s, &note, 0, 0, t + 6000), 0);
    CHECK_EQ(take(s, t + 6000, 60000, 10, &v), 1);
    CHECK_EQ(v[0].attempts, 2);
    note = v[0];
    iy_free(v);
    check_counts(s, 1, 0);

    /* Dead: to the dead letters. */
    CHECK_EQ(store_push_done(s, &note, 0, 1, 0), 0);
    check_counts(s, 0, 1);
    CHECK_EQ(take(s, INT64_MAX, 0, 10, NULL), 0);
    s = reopen(s);
    check_counts(s, 0, 1);

    /* A new message after a dead letter queues a fresh note. */
    send_push(s, bob, alice, "four", NULL);
    check_counts(s, 1, 1);
    CHECK_EQ(take(s, now_ms(), 1000, 10, &v), 1);
    CHECK_EQ(v[0].attempts, 0);
    iy_free(v);
    done(s);
}

static void test_restart_and_delete(void)
{
    store *s = fresh();
    uint64_t alice = mkuser(s, "alice"), bob = mkuser(s, "bob");
    uint64_t a1 = mksub(s, alice, "phone"), a2 = mksub(s, alice, "tablet"), b1 = mksub(s, bob, "pc");
    int64_t t0 = now_ms();
    uint64_t m1 = send_push(s, bob, alice, "for alice", NULL);
    uint64_t m2 = send_push(s, alice, bob, "for bob", NULL);
    check_counts(s, 3, 0);

    /* Taken (leased) and untaken notes all survive a restart. */
    iy_push_note *v;
    CHECK_EQ(take(s, now_ms(), 60000, 1, &v), 1);
    iy_free(v);
    s = reopen(s);
    check_counts(s, 3, 0);
    int64_t t = now_ms();
    CHECK_EQ(take(s, t, 1000, 10, NULL), 2);             /* the leased one waits */
    CHECK_EQ(take(s, t + 120000, 1000, 10, &v), 3);
    for (size_t i = 0; i < 3; i++) {
        CHECK(v[i].created_ms >= t0);
        if (v[i].sub == b1) CHECK_EQ(v[i].message_id, m2);
        else CHECK(v[i].message_id == m1 && (v[i].sub == a1 || v[i].sub == a2));
    }
    iy_free(v);

    /* Deleting a subscription drops its pending notes. */
    CHECK_EQ(store_push_sub_delete(s, alice, a1), 0);
    check_counts(s, 2, 0);
    CHECK_EQ(take(s, INT64_MAX, 0, 10, &v), 2);
    for (size_t i = 0; i < 2; i++) CHECK(v[i].sub != a1);
    iy_free(v);
    CHECK_EQ(store_push_sub_delete(s, alice, a2), 0);
    check_counts(s, 1, 0);
    send_push(s, bob, alice, "nobody listens", NULL);
    check_counts(s, 1, 0);
    s = reopen(s);
    check_counts(s, 1, 0);
    CHECK_EQ(take(s, INT64_MAX, 0, 10, &v), 1);
    CHECK_EQ(v[0].sub, b1);
    iy_free(v);
    done(s);
}

static void test_preview(void)
{
    store *s = fresh();
    uint64_t alice = mkuser(s, "alice"), bob = mkuser(s, "bob");
    mksub(s, alice, "phone");

    /* 150 four-byte characters: 100 of them, 400 bytes. */
    char text[1024];
    size_t len = 0;
    for (int i = 0; i < 150; i++) {
        memcpy(text + len, "\xF0\x9F\x98\x80", 4);   /* U+1F600 */
        len += 4;
    }
    text[len] = '\0';
    send_push(s, bob, alice, text, NULL);
    iy_push_note *v;
    CHECK_EQ(take(s, now_ms(), 1000, 10, &v), 1);
    CHECK_EQ(strlen(v[0].preview), 400);
    CHECK(memcmp(v[0].preview, text, 400) == 0);
    CHECK_EQ(store_push_done(s, &v[0], 1, 0, 0), 0);
    iy_free(v);

    /* Mixed widths: 'a' + 99 two-byte + more: cut after 100 code points. */
    len = 0;
    text[len++] = 'a';
    for (int i = 0; i < 120; i++) {
        memcpy(text + len, "\xC3\xA9", 2);   /* é */
        len += 2;
    }
    text[len] = '\0';
    send_push(s, bob, alice, text, NULL);
    CHECK_EQ(take(s, now_ms(), 1000, 10, &v), 1);
    CHECK_EQ(strlen(v[0].preview), 1 + 99 * 2);
    CHECK(memcmp(v[0].preview, text, 1 + 99 * 2) == 0);
    CHECK_EQ(store_push_done(s, &v[0], 1, 0, 0), 0);
    iy_free(v);

    /* Exactly 100 code points, and a short one. */
    memset(text, 'x', 100);
    text[100] = '\0';
    send_push(s, bob, alice, text, NULL);
    CHECK_EQ(take(s, now_ms(), 1000, 10, &v), 1);
    CHECK_EQ(strlen(v[0].preview), 100);
    CHECK_EQ(store_push_done(s, &v[0], 1, 0, 0), 0);
    iy_free(v);
    check_counts(s, 0, 0);
    done(s);
}

/* Many subscriptions and channels: take is ordered by due and honours max. */
static void test_many(void)
{
    store *s = fresh();
    uint64_t alice = mkuser(s, "alice");
    mksub(s, alice, "phone");
    uint64_t from[20];
    char name[16];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "user%d", i);
        from[i] = mkuser(s, name);
    }
    store_batch *b = store_batch_begin(s);
    for (int i = 0; i < 20; i++) add_push(b, from[i], alice, 0, "x", NULL);
    CHECK_EQ(store_batch_commit(b), 0);
    check_counts(s, 20, 0);
    int64_t t = now_ms();
    iy_push_note *v;
    CHECK_EQ(take(s, t, 1000, 7, &v), 7);
    for (size_t i = 1; i < 7; i++) CHECK(v[i].due_ms >= v[i - 1].due_ms);
    iy_free(v);
    CHECK_EQ(take(s, t, 1000, 100, NULL), 13);
    CHECK_EQ(take(s, t, 1000, 100, NULL), 0);
    CHECK_EQ(take(s, t + 1000, 1000, 100, &v), 20);
    for (size_t i = 0; i < 20; i++) CHECK_EQ(store_push_done(s, &v[i], 0, 1, 0), 0);
    iy_free(v);
    check_counts(s, 0, 20);
    done(s);
}

int main(void)
{
    test_subs();
    test_queue();
    test_collapse();
    test_take_done();
    test_restart_and_delete();
    test_preview();
    test_many();
    return T_DONE("store_push");
}
