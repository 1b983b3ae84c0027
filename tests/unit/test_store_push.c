/* test_store_push.c — push subscriptions and the durable outbox of the
 * store (store.h, "push") on every backend: subscriptions, notes queued in
 * a commit round (store_round_push), collapse, rounds that do not commit
 * (discarded, aborted, failed), take/lease (and `all`: a restarted node
 * resumes its own leases), done/retry/dead, counts, reopen, previews.
 * Runs on RocksDB, and on PostgreSQL when IYAGI_TEST_PG_URL is set
 * (store_fixture.h). */
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
#include "store/rocks/rocks_int.h"   /* store_rocks_fail_next_commit */

/* A webhook subscription of user for device, made by session (NULL: none). */
static uint64_t mksub_of(store *s, uint64_t user, const char *device, const uint8_t *session)
{
    iy_push_sub sub;
    memset(&sub, 0, sizeof sub);
    sub.user = user;
    sub.kind = IY_PUSH_WEBHOOK;
    snprintf(sub.device, sizeof sub.device, "%s", device);
    snprintf(sub.url, sizeof sub.url, "https://hook.example/%s", device);
    memset(sub.secret, 'a', 64);
    if (session) memcpy(sub.session, session, sizeof sub.session);
    CHECK_EQ(store_push_sub_create(s, &sub), 0);
    CHECK(sub.id != 0);
    return sub.id;
}

static uint64_t mksub(store *s, uint64_t user, const char *device) { return mksub_of(s, user, device, NULL); }

/* store_push_sub_create's answer for one more minimal subscription of user. */
static int try_sub(store *s, uint64_t user)
{
    iy_push_sub x;
    memset(&x, 0, sizeof x);
    x.user = user;
    x.kind = IY_PUSH_WEBHOOK;
    strcpy(x.url, "https://x");
    return store_push_sub_create(s, &x);
}

/* Posts in (a message to a user) into the open round r and pushes it to
 * in->to (and to extra, if not 0). Returns the stored message's id (0 on
 * failure); its channel into *channel. */
static uint64_t post_push(store_round *r, const iy_send *in, uint64_t extra, uint64_t *channel)
{
    iy_stored st;
    int rc = post_send(r, in, &st);
    CHECK_EQ(rc, 0);
    if (rc) return 0;
    CHECK_EQ(store_round_push(r, in->to), 0);
    if (extra) CHECK_EQ(store_round_push(r, extra), 0);
    if (channel) *channel = st.msg.channel;
    return st.msg.id;
}

/* One message from -> to in a committed round of its own, pushed to `to`. */
static uint64_t send_push(store *s, uint64_t from, uint64_t to, const char *text, uint64_t *channel)
{
    iy_send in = { from, 0, to, text, strlen(text), "", 0, 0, 0, 0, NULL, 0 };
    store_round *r = round_of(s, &in, 1);
    if (!r) return 0;
    uint64_t id = post_push(r, &in, 0, channel);
    CHECK_EQ(store_round_commit(r), 0);
    return id;
}

static void check_counts(store *s, uint64_t pending, uint64_t dead)
{
    uint64_t p = 99, d = 99;
    CHECK_EQ(store_push_counts(s, &p, &d), 0);
    CHECK_EQ(p, pending);
    CHECK_EQ(d, dead);
}

/* take(now, lease, all, max), returning how many. With keep: *keep gets a
 * copy with room for max notes (the ones not taken zeroed, so that a test
 * reading past a short answer fails its checks instead of crashing; iy_free). */
static size_t take(store *s, int64_t now, int64_t lease, int all, size_t max, iy_push_note **keep)
{
    iy_push_note *v = NULL;
    size_t n = 12345;
    int rc = store_push_take(s, now, lease, all, max, &v, &n);
    CHECK_EQ(rc, 0);
    if (rc || n > max) n = 0;
    if (keep) {
        *keep = iy_calloc(max ? max : 1, sizeof **keep);
        if (n) memcpy(*keep, v, n * sizeof *v);
    }
    iy_free(v);
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
    for (int i = 1; i < IY_PUSH_SUBS_MAX; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "d%d", i);
        last = mksub(s, alice, dev);
    }
    CHECK_EQ(try_sub(s, alice), IY_ETOOBIG);
    CHECK_EQ(try_sub(s, bob), 0);   /* the limit is per user */
    CHECK_EQ(store_push_sub_delete(s, alice, last), 0);
    CHECK_EQ(try_sub(s, alice), 0);
    CHECK_EQ(try_sub(s, alice), IY_ETOOBIG);

    /* Subscriptions survive a reopen, the limit too. */
    s = reopen(s);
    CHECK_EQ(store_push_sub_get(s, h.id, &g), 0);
    CHECK_EQ(g.user, alice);
    CHECK_EQ(try_sub(s, alice), IY_ETOOBIG);
    done(s);
}

static void test_queue(void)
{
    store *s = fresh();
    uint64_t alice = mkuser(s, "alice"), bob = mkuser(s, "bob"), carol = mkuser(s, "carol");
    uint64_t a1 = mksub(s, alice, "phone"), a2 = mksub(s, alice, "laptop");
    check_counts(s, 0, 0);

    /* Nothing appended yet: nothing to push. */
    iy_send in = { bob, 0, alice, "hello alice", 11, "", 0, 0, 0, 0, NULL, 0 };
    store_round *r = round_of(s, &in, 1);
    CHECK_EQ(store_round_push(r, alice), IY_EINVAL);

    /* bob has no subscription: nothing queued for him. */
    int64_t t0 = now_ms();
    uint64_t ch = 0;
    uint64_t m1 = post_push(r, &in, bob, &ch);
    CHECK_EQ(store_round_commit(r), 0);
    int64_t t1 = now_ms();
    check_counts(s, 2, 0);
    CHECK_EQ(send_push(s, alice, carol, "hi carol", NULL) != 0, 1);   /* carol: no subs */
    check_counts(s, 2, 0);

    iy_push_note *v;
    size_t n = take(s, t1, 30000, 0, 10, &v);
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

    /* Within one round: two messages of bob, one of carol (another channel). */
    uint64_t chb = 0, chc = 0;
    iy_send in[3] = { { bob, 0, alice, "first", 5, "", 0, 0, 0, 0, NULL, 0 }, { bob, 0, alice, "second", 6, "", 0, 0, 0, 0, NULL, 0 },
                      { carol, 0, alice, "from carol", 10, "", 0, 0, 0, 0, NULL, 0 } };
    store_round *r = round_of(s, in, 3);
    post_push(r, &in[0], 0, &chb);
    uint64_t m2 = post_push(r, &in[1], 0, NULL);
    uint64_t m3 = post_push(r, &in[2], 0, &chc);
    CHECK_EQ(store_round_commit(r), 0);
    check_counts(s, 2, 0);
    iy_push_note *v;
    size_t n = take(s, now_ms(), 1000, 0, 10, &v);
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

    /* Across rounds: the bob note fails once (attempts 1, due in an hour), then
     * a newer message collapses into it: content replaced, schedule kept (no
     * burst of requests to a failing receiver). */
    iy_push_note nb = n == 2 && v[1].channel == chb ? v[1] : v[0];
    iy_free(v);
    CHECK_EQ(store_push_done(s, &nb, 0, 0, now_ms() + 3600000), 0);
    int64_t t = now_ms();
    CHECK_EQ(take(s, t + 2000, 1000, 0, 10, NULL), 1);  /* the carol note only (lease passed) */
    uint64_t m4 = send_push(s, bob, alice, "third", NULL);
    check_counts(s, 2, 0);
    t = now_ms();
    CHECK_EQ(take(s, t, 1000, 0, 10, NULL), 0);        /* still waiting for its retry */
    n = take(s, t + 3600000 + 60000, 1000, 0, 10, &v); /* bob's, and carol's whose lease passed */
    CHECK_EQ(n, 2);
    iy_push_note *vb = n == 2 && v[1].channel == chb ? &v[1] : &v[0];
    CHECK_EQ(vb->channel, chb);
    CHECK_EQ(vb->message_id, m4);
    CHECK_EQ(vb->attempts, 1);
    CHECK_EQ(vb->created_ms, nb.created_ms);
    CHECK(strcmp(vb->preview, "third") == 0);
    iy_free(v);

    /* Rounds that do not commit leave nothing: discarded by store_free, or
     * aborted, with a new note and a collapsing one. */
    uint64_t dave = mkuser(s, "dave");
    iy_send lost[2] = { { carol, 0, alice, "lost", 4, "", 0, 0, 0, 0, NULL, 0 }, { dave, 0, alice, "lost", 4, "", 0, 0, 0, 0, NULL, 0 } };
    r = round_of(s, lost, 2);
    post_push(r, &lost[0], 0, NULL);
    post_push(r, &lost[1], 0, NULL);
    s = reopen(s);
    r = round_of(s, lost, 2);
    post_push(r, &lost[0], 0, NULL);
    post_push(r, &lost[1], 0, NULL);
    store_round_abort(r);
    check_counts(s, 2, 0);
    n = take(s, INT64_MAX, 0, 0, 10, &v);
    CHECK_EQ(n, 2);
    for (size_t i = 0; i < n; i++) CHECK(strcmp(v[i].preview, "lost") != 0 && v[i].from != dave);
    iy_free(v);
    done(s);
}

/* A failed commit (the RocksDB hook) queues nothing; the outbox and its
 * counts are as before, and the next round queues normally. */
static void test_failed_commit(void)
{
    if (!fx_is_rocks()) {
        fx_skip("test_failed_commit", "RocksDB only: store_rocks_fail_next_commit");
        return;
    }
    store *s = fresh();
    uint64_t alice = mkuser(s, "alice"), bob = mkuser(s, "bob"), carol = mkuser(s, "carol");
    mksub(s, alice, "phone");
    uint64_t m1 = send_push(s, bob, alice, "kept", NULL);
    check_counts(s, 1, 0);

    iy_send in[2] = { { bob, 0, alice, "lost", 4, "", 0, 0, 0, 0, NULL, 0 }, { carol, 0, alice, "lost", 4, "", 0, 0, 0, 0, NULL, 0 } };
    store_round *r = round_of(s, in, 2);
    post_push(r, &in[0], 0, NULL);                       /* would collapse into m1's note */
    post_push(r, &in[1], 0, NULL);                       /* would be a new note */
    store_rocks_fail_next_commit(s);
    CHECK_EQ(store_round_commit(r), IY_EIO);
    check_counts(s, 1, 0);
    iy_push_note *v;
    CHECK_EQ(take(s, now_ms(), 1000, 0, 10, &v), 1);
    CHECK_EQ(v[0].message_id, m1);
    CHECK(strcmp(v[0].preview, "kept") == 0);
    CHECK_EQ(store_push_done(s, &v[0], 1, 0, 0), 0);
    iy_free(v);
    check_counts(s, 0, 0);

    uint64_t m2 = send_push(s, carol, alice, "after", NULL);
    check_counts(s, 1, 0);
    CHECK_EQ(take(s, now_ms(), 1000, 0, 10, &v), 1);
    CHECK_EQ(v[0].message_id, m2);
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
    CHECK_EQ(take(s, t - 60000, 1000, 0, 10, NULL), 0);   /* not due yet */
    CHECK_EQ(take(s, t, 60000, 0, 0, NULL), 0);           /* max 0 */
    iy_push_note *v;
    CHECK_EQ(take(s, t, 60000, 0, 10, &v), 1);
    iy_push_note note = v[0];
    iy_free(v);
    CHECK_EQ(note.message_id, m1);
    CHECK_EQ(note.due_ms, t + 60000);
    CHECK_EQ(take(s, t + 1000, 60000, 0, 10, NULL), 0);   /* leased */
    CHECK_EQ(take(s, t + 59999, 60000, 0, 10, NULL), 0);
    CHECK_EQ(take(s, t + 60000, 1000, 0, 10, &v), 1);     /* the lease passed */
    note = v[0];
    iy_free(v);

    /* Done removes it. */
    CHECK_EQ(store_push_done(s, &note, 1, 0, 0), 0);
    check_counts(s, 0, 0);
    CHECK_EQ(take(s, INT64_MAX, 0, 0, 10, NULL), 0);
    CHECK_EQ(store_push_done(s, &note, 1, 0, 0), 0);   /* gone: nothing */
    check_counts(s, 0, 0);

    /* Done while a newer message collapsed into it: it stays, due now. */
    send_push(s, bob, alice, "two", NULL);
    t = now_ms();
    CHECK_EQ(take(s, t, 60000, 0, 10, &v), 1);
    note = v[0];
    iy_free(v);
    uint64_t m3 = send_push(s, bob, alice, "three", NULL);
    CHECK_EQ(store_push_done(s, &note, 1, 0, 0), 0);
    check_counts(s, 1, 0);
    CHECK_EQ(take(s, now_ms(), 60000, 0, 10, &v), 1);
    CHECK_EQ(v[0].message_id, m3);
    CHECK(strcmp(v[0].preview, "three") == 0);
    note = v[0];
    iy_free(v);

    /* Retry: attempts + 1, rescheduled. */
    t = now_ms();
    CHECK_EQ(store_push_done(s, &note, 0, 0, t + 5000), 0);
    CHECK_EQ(take(s, t + 4999, 60000, 0, 10, NULL), 0);
    CHECK_EQ(take(s, t + 5000, 60000, 0, 10, &v), 1);
    CHECK_EQ(v[0].attempts, 1);
    CHECK_EQ(v[0].message_id, m3);
    note = v[0];
    iy_free(v);
    CHECK_EQ(store_push_done(s, &note, 0, 0, t + 6000), 0);
    CHECK_EQ(take(s, t + 6000, 60000, 0, 10, &v), 1);
    CHECK_EQ(v[0].attempts, 2);
    note = v[0];
    iy_free(v);
    check_counts(s, 1, 0);

    /* Dead: to the dead letters. */
    CHECK_EQ(store_push_done(s, &note, 0, 1, 0), 0);
    check_counts(s, 0, 1);
    CHECK_EQ(take(s, INT64_MAX, 0, 0, 10, NULL), 0);
    s = reopen(s);
    check_counts(s, 0, 1);

    /* A new message after a dead letter queues a fresh note. */
    send_push(s, bob, alice, "four", NULL);
    check_counts(s, 1, 1);
    CHECK_EQ(take(s, now_ms(), 1000, 0, 10, &v), 1);
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
    CHECK_EQ(take(s, now_ms(), 60000, 0, 1, &v), 1);
    iy_push_note leased = v[0];
    iy_free(v);
    s = reopen(s);
    check_counts(s, 3, 0);
    int64_t t = now_ms();
    CHECK_EQ(take(s, t, 1000, 0, 10, NULL), 2);           /* the leased one waits */
    CHECK_EQ(take(s, t, 1000, 0, 10, NULL), 0);           /* all leased now */
    /* `all` (the first take after a restart, same lease as before): the node
     * resumes what it leased before, due or not. */
    CHECK_EQ(take(s, t, 60000, 1, 10, &v), 3);
    int resumed = 0;
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ(v[i].due_ms, t + 60000);
        if (v[i].sub == leased.sub && v[i].channel == leased.channel) resumed = 1;
    }
    CHECK(resumed);
    iy_free(v);
    CHECK_EQ(take(s, t + 59999, 1000, 0, 10, NULL), 0);
    CHECK_EQ(take(s, t + 120000, 1000, 0, 10, &v), 3);
    for (size_t i = 0; i < 3; i++) {
        CHECK(v[i].created_ms >= t0);
        if (v[i].sub == b1) CHECK_EQ(v[i].message_id, m2);
        else CHECK(v[i].message_id == m1 && (v[i].sub == a1 || v[i].sub == a2));
    }
    /* ... but never a note that waits for its retry past the lease. */
    for (size_t i = 0; i < 3; i++) CHECK_EQ(store_push_done(s, &v[i], 0, 0, t + 3600000), 0);
    iy_free(v);
    CHECK_EQ(take(s, t + 120000, 1000, 1, 10, NULL), 0);
    CHECK_EQ(take(s, t + 3600000, 1000, 0, 10, NULL), 3);

    /* Deleting a subscription drops its pending notes. */
    CHECK_EQ(store_push_sub_delete(s, alice, a1), 0);
    check_counts(s, 2, 0);
    CHECK_EQ(take(s, INT64_MAX, 0, 0, 10, &v), 2);
    for (size_t i = 0; i < 2; i++) CHECK(v[i].sub != a1);
    iy_free(v);
    CHECK_EQ(store_push_sub_delete(s, alice, a2), 0);
    check_counts(s, 1, 0);
    send_push(s, bob, alice, "nobody listens", NULL);
    check_counts(s, 1, 0);
    s = reopen(s);
    check_counts(s, 1, 0);
    CHECK_EQ(take(s, INT64_MAX, 0, 0, 10, &v), 1);
    CHECK_EQ(v[0].sub, b1);
    iy_free(v);
    done(s);
}

/* A subscription ends with the session that made it: store_session_delete
 * takes the session's subscriptions and their pending notes along, and
 * leaves the user's other sessions' subscriptions (and older ones without
 * a session) alone. */
static void test_session_ends_subs(void)
{
    store *s = fresh();
    uint64_t alice = mkuser(s, "alice"), bob = mkuser(s, "bob");
    uint8_t phone[32], laptop[32], zero[32] = { 0 };
    memset(phone, 0x11, 32);
    memset(laptop, 0x22, 32);
    CHECK_EQ(store_session_create(s, phone, alice, "phone"), 0);
    CHECK_EQ(store_session_create(s, laptop, alice, "laptop"), 0);
    uint64_t id[4];
    const uint8_t *made_by[4] = { phone, phone, laptop, zero };
    for (int i = 0; i < 4; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "d%d", i);
        id[i] = mksub_of(s, alice, dev, made_by[i]);
        iy_push_sub g;
        CHECK_EQ(store_push_sub_get(s, id[i], &g), 0);
        CHECK(memcmp(g.session, made_by[i], 32) == 0);
    }
    send_push(s, bob, alice, "one note per subscription", NULL);
    check_counts(s, 4, 0);

    CHECK_EQ(store_session_delete(s, phone), 0);
    iy_push_sub g;
    CHECK_EQ(store_push_sub_get(s, id[0], &g), IY_ENOTFOUND);
    CHECK_EQ(store_push_sub_get(s, id[1], &g), IY_ENOTFOUND);
    CHECK_EQ(store_push_sub_get(s, id[2], &g), 0);
    CHECK_EQ(store_push_sub_get(s, id[3], &g), 0);
    check_counts(s, 2, 0);
    CHECK_EQ(store_session_delete(s, phone), IY_ENOTFOUND);
    /* the user's list follows: two deleted, so two more fit again up to the limit */
    for (int i = 2; i < IY_PUSH_SUBS_MAX; i++) mksub(s, alice, "more");
    CHECK_EQ(try_sub(s, alice), IY_ETOOBIG);

    s = reopen(s);
    CHECK_EQ(store_push_sub_get(s, id[2], &g), 0);
    CHECK(memcmp(g.session, laptop, 32) == 0);
    iy_push_note *v;
    CHECK_EQ(take(s, INT64_MAX, 0, 0, 10, &v), 2);
    for (size_t i = 0; i < 2; i++) CHECK(v[i].sub == id[2] || v[i].sub == id[3]);
    iy_free(v);
    CHECK_EQ(store_session_delete(s, laptop), 0);
    CHECK_EQ(store_push_sub_get(s, id[2], &g), IY_ENOTFOUND);
    CHECK_EQ(store_push_sub_get(s, id[3], &g), 0);
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
    CHECK_EQ(take(s, now_ms(), 1000, 0, 10, &v), 1);
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
    CHECK_EQ(take(s, now_ms(), 1000, 0, 10, &v), 1);
    CHECK_EQ(strlen(v[0].preview), 1 + 99 * 2);
    CHECK(memcmp(v[0].preview, text, 1 + 99 * 2) == 0);
    CHECK_EQ(store_push_done(s, &v[0], 1, 0, 0), 0);
    iy_free(v);

    /* Exactly 100 code points, and a short one. */
    memset(text, 'x', 100);
    text[100] = '\0';
    send_push(s, bob, alice, text, NULL);
    CHECK_EQ(take(s, now_ms(), 1000, 0, 10, &v), 1);
    CHECK_EQ(strlen(v[0].preview), 100);
    CHECK_EQ(store_push_done(s, &v[0], 1, 0, 0), 0);
    iy_free(v);
    send_push(s, bob, alice, "hi", NULL);
    CHECK_EQ(take(s, now_ms(), 1000, 0, 10, &v), 1);
    CHECK(strcmp(v[0].preview, "hi") == 0);
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
    iy_send in[20];
    char name[16];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "user%d", i);
        from[i] = mkuser(s, name);
        in[i] = (iy_send){ from[i], 0, alice, "x", 1, "", 0, 0, 0, 0, NULL, 0 };
    }
    store_round *r = round_of(s, in, 20);
    for (int i = 0; i < 20; i++) post_push(r, &in[i], 0, NULL);
    CHECK_EQ(store_round_commit(r), 0);
    check_counts(s, 20, 0);
    int64_t t = now_ms();
    iy_push_note *v;
    CHECK_EQ(take(s, t, 1000, 0, 7, &v), 7);
    for (size_t i = 1; i < 7; i++) CHECK(v[i].due_ms >= v[i - 1].due_ms);
    iy_free(v);
    CHECK_EQ(take(s, t, 1000, 0, 100, NULL), 13);
    CHECK_EQ(take(s, t, 1000, 0, 100, NULL), 0);
    CHECK_EQ(take(s, t + 1000, 1000, 0, 100, &v), 20);
    int distinct = 1;
    for (size_t i = 0; i < 20; i++)
        for (size_t j = 0; j < i; j++) if (v[i].channel == v[j].channel) distinct = 0;
    CHECK(distinct);
    for (size_t i = 0; i < 20; i++) CHECK_EQ(store_push_done(s, &v[i], 0, 1, 0), 0);
    iy_free(v);
    check_counts(s, 0, 20);
    done(s);
}

/* `all` after a restart takes this node's leased notes whatever their
 * lease's length, and never a note waiting for its retry. */
static void test_take_all(void)
{
    store *s = fresh();
    uint64_t alice = mkuser(s, "alice"), bob = mkuser(s, "bob");
    mksub(s, alice, "phone");
    send_push(s, bob, alice, "one", NULL);
    int64_t t = now_ms();
    iy_push_note *v;
    /* Taken, then settled as a retry 10 s later: after a restart it waits. */
    CHECK_EQ(take(s, t, 30000, 0, 10, &v), 1);
    CHECK_EQ(store_push_done(s, &v[0], 0, 0, t + 10000), 0);
    iy_free(v);
    s = reopen(s);
    CHECK_EQ(take(s, t, 30000, 1, 10, NULL), 0);
    CHECK_EQ(take(s, t + 10000, 30000, 0, 10, &v), 1);        /* due: taken, leased 30 s */
    iy_free(v);
    /* Leased for longer than the lease of the take after the restart: resumed. */
    s = reopen(s);
    CHECK_EQ(take(s, t + 10000, 5000, 1, 10, &v), 1);
    CHECK_EQ(v[0].due_ms, t + 15000);
    iy_free(v);
    done(s);
}

static void suite(void)
{
    test_subs();
    test_queue();
    test_collapse();
    test_failed_commit();
    test_take_done();
    test_restart_and_delete();
    test_session_ends_subs();
    test_take_all();
    test_preview();
    test_many();
}

int main(void)
{
    return fx_run("store_push", suite);
}
