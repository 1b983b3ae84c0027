/* test_store.c — the RocksDB store (store.h): users, sessions, channels,
 * batches (seq/pos assignment, idempotency, rollback), membership events,
 * read state, friends, presence persistence, reads, reopen, and a
 * throughput print. Each test runs in a fresh directory under /tmp. */
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
#include "store/store_rocks_int.h"   /* store__fail_next_commit */

/* Sends one message in its own batch; returns the add's result. */
static int send1(store *s, uint64_t from, uint64_t channel, uint64_t to, const char *text,
                 const char *cmid, iy_stored *out)
{
    store_batch *b = store_batch_begin(s);
    iy_send in = { from, channel, to, text, strlen(text), cmid, 0, 0 };
    int rc = store_batch_add(b, &in, out);
    CHECK_EQ(store_batch_commit(b), 0);
    return rc;
}

static void test_users(void)
{
    store *s = fresh();
    iy_user u, v;
    char hash[256];
    CHECK_EQ(store_user_create(s, "alice", "Alice A", "$argon2id$v=19$abc", &u), 0);
    CHECK(u.id != 0);
    CHECK(strcmp(u.username, "alice") == 0);
    CHECK(strcmp(u.display_name, "Alice A") == 0);
    CHECK_EQ(store_user_create(s, "alice", "Other", "$x", &v), IY_ECONFLICT);
    CHECK_EQ(store_user_create(s, "bob", "", "$y", &v), 0);
    CHECK(v.id > u.id);

    memset(&v, 0, sizeof v);
    CHECK_EQ(store_user_get(s, u.id, &v), 0);
    CHECK(v.id == u.id && strcmp(v.username, "alice") == 0 && strcmp(v.display_name, "Alice A") == 0);
    CHECK_EQ(store_user_get(s, 12345, &v), IY_ENOTFOUND);

    memset(&v, 0, sizeof v);
    CHECK_EQ(store_user_find(s, "alice", &v, hash), 0);
    CHECK(v.id == u.id);
    CHECK(strcmp(hash, "$argon2id$v=19$abc") == 0);
    CHECK_EQ(store_user_find(s, "alice", &v, NULL), 0);
    CHECK_EQ(store_user_find(s, "carol", &v, hash), IY_ENOTFOUND);

    CHECK_EQ(store_user_set_display_name(s, u.id, "Alice Z \xea\xb0\x80"), 0);
    CHECK_EQ(store_user_set_display_name(s, 999, "x"), IY_ENOTFOUND);
    s = reopen(s);
    CHECK_EQ(store_user_get(s, u.id, &v), 0);
    CHECK(strcmp(v.display_name, "Alice Z \xea\xb0\x80") == 0);
    CHECK_EQ(store_user_find(s, "alice", &v, hash), 0);
    CHECK(strcmp(hash, "$argon2id$v=19$abc") == 0);   /* kept by set_display_name */
    CHECK_EQ(store_user_create(s, "alice", "", "$x", &v), IY_ECONFLICT);
    done(s);
}

static void test_sessions(void)
{
    store *s = fresh();
    uint8_t h1[32], h2[32];
    memset(h1, 0xab, sizeof h1);
    memset(h2, 0x00, sizeof h2);
    uint64_t user = 0;
    char dev[IY_DEVICE_MAX + 1];
    CHECK_EQ(store_session_create(s, h1, 42, "phone"), 0);
    CHECK_EQ(store_session_create(s, h2, 43, ""), 0);
    CHECK_EQ(store_session_get(s, h1, &user, dev), 0);
    CHECK_EQ(user, 42);
    CHECK(strcmp(dev, "phone") == 0);
    s = reopen(s);
    CHECK_EQ(store_session_get(s, h2, &user, dev), 0);
    CHECK_EQ(user, 43);
    CHECK(strcmp(dev, "") == 0);
    CHECK_EQ(store_session_delete(s, h1), 0);
    CHECK_EQ(store_session_get(s, h1, &user, dev), IY_ENOTFOUND);
    CHECK_EQ(store_session_delete(s, h1), IY_ENOTFOUND);
    s = reopen(s);
    CHECK_EQ(store_session_get(s, h1, &user, dev), IY_ENOTFOUND);
    CHECK_EQ(store_session_get(s, h2, &user, dev), 0);
    done(s);
}

static void test_direct(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    iy_stored o;
    uint64_t ch, pa = 0, pb = 0;

    CHECK_EQ(store_direct_find(s, a, b, &ch), IY_ENOTFOUND);
    CHECK_EQ(send1(s, a, 0, b, "hi", "", &o), 0);
    ch = o.msg.channel;
    CHECK(ch != 0);
    CHECK_EQ(o.msg.seq, 1);
    CHECK_EQ(o.msg.pos, 1);
    CHECK_EQ(o.nmembers, 2);
    CHECK(o.members[0] == a && o.members[1] == b);
    CHECK(o.pos[0] == 1 && o.pos[1] == 1);
    CHECK(o.msg.text == NULL);
    uint64_t found = 0;
    CHECK_EQ(store_direct_find(s, b, a, &found), 0);
    CHECK(found == ch);

    /* The other direction uses the same channel. */
    CHECK_EQ(send1(s, b, 0, a, "hey", "", &o), 0);
    CHECK(o.msg.channel == ch);
    CHECK_EQ(o.msg.seq, 2);
    CHECK_EQ(o.msg.pos, 2);
    CHECK(o.members[0] == a && o.members[1] == b && o.pos[0] == 2 && o.pos[1] == 2);

    /* A channel send to the direct channel. */
    CHECK_EQ(send1(s, a, ch, 0, "third", "", &o), 0);
    CHECK_EQ(o.msg.seq, 3);
    CHECK(o.pos[0] == 3 && o.pos[1] == 3);

    /* a-c: a's pos continues, c's starts at 1, the channel's seq at 1. */
    CHECK_EQ(send1(s, c, 0, a, "to a", "", &o), 0);
    CHECK(o.msg.channel != ch);
    CHECK_EQ(o.msg.seq, 1);
    CHECK(o.members[0] == a && o.members[1] == c);
    CHECK(o.pos[0] == 4 && o.pos[1] == 1);
    CHECK_EQ(o.msg.pos, 1);   /* the sender is c */

    CHECK_EQ(store_user_pos(s, a, &pa), 0);
    CHECK_EQ(store_user_pos(s, b, &pb), 0);
    CHECK_EQ(pa, 4);
    CHECK_EQ(pb, 3);
    CHECK_EQ(store_user_pos(s, 5555, &pa), 0);   /* no inbox yet */
    CHECK_EQ(pa, 0);

    iy_channel cc;
    CHECK_EQ(store_channel_get(s, ch, &cc), 0);
    CHECK_EQ(cc.kind, IY_DIRECT);
    CHECK_EQ(cc.nmembers, 2);
    CHECK(cc.members[0] == a && cc.members[1] == b && cc.owner == 0 && cc.name[0] == '\0');

    /* Errors. */
    CHECK_EQ(send1(s, a, 0, a, "self", "", &o), IY_EINVAL);
    CHECK_EQ(send1(s, a, ch, b, "both", "", &o), IY_EINVAL);
    CHECK_EQ(send1(s, a, 0, 0, "neither", "", &o), IY_EINVAL);
    CHECK_EQ(send1(s, a, 0, 777, "nobody", "", &o), IY_ENOTFOUND);
    CHECK_EQ(send1(s, c, ch, 0, "intruder", "", &o), IY_EFORBIDDEN);
    CHECK_EQ(send1(s, a, 888, 0, "no channel", "", &o), IY_ENOTFOUND);
    CHECK_EQ(store_message_count(s), 4);

    /* Two messages of a new pair in one batch share one channel. */
    uint64_t d = mkuser(s, "dd");
    store_batch *bt = store_batch_begin(s);
    iy_send in1 = { b, 0, d, "x", 1, "", 0, 0 }, in2 = { d, 0, b, "y", 1, "", 0, 0 };
    iy_stored o2;
    CHECK_EQ(store_batch_add(bt, &in1, &o), 0);
    CHECK_EQ(store_batch_add(bt, &in2, &o2), 0);
    CHECK(o.msg.channel == o2.msg.channel);
    CHECK(o.msg.seq == 1 && o2.msg.seq == 2);
    CHECK(o.members[0] == b && o.members[1] == d);
    CHECK(o.pos[0] == 4 && o.pos[1] == 1 && o2.pos[0] == 5 && o2.pos[1] == 2);
    CHECK_EQ(store_direct_find(s, b, d, &found), IY_ENOTFOUND);   /* not committed yet */
    CHECK_EQ(store_user_pos(s, b, &pb), 0);
    CHECK_EQ(pb, 3);                                              /* committed only */
    CHECK_EQ(store_batch_commit(bt), 0);
    CHECK_EQ(store_direct_find(s, b, d, &found), 0);
    CHECK(found == o.msg.channel);
    CHECK_EQ(store_user_pos(s, b, &pb), 0);
    CHECK_EQ(pb, 5);

    uint64_t *chs = NULL;
    size_t n = 0;
    CHECK_EQ(store_user_channels(s, b, &chs, &n), 0);
    CHECK_EQ(n, 2);
    CHECK(n == 2 && ((chs[0] == ch && chs[1] == found) || (chs[1] == ch && chs[0] == found)));
    iy_free(chs);
    CHECK_EQ(store_user_channels(s, 424242, &chs, &n), 0);
    CHECK_EQ(n, 0);
    iy_free(chs);
    done(s);
}

static void test_cmid(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb");
    iy_stored o, d;

    store_batch *bt = store_batch_begin(s);
    iy_send in = { a, 0, b, "one", 3, "c-1", 0, 0 };
    CHECK_EQ(store_batch_add(bt, &in, &o), 0);
    memset(&d, 0xff, sizeof d);
    CHECK_EQ(store_batch_add(bt, &in, &d), IY_EEXIST);   /* within the batch */
    CHECK(d.msg.id == o.msg.id && d.msg.seq == o.msg.seq && d.msg.channel == o.msg.channel);
    CHECK(d.msg.pos == o.msg.pos && d.msg.ts == o.msg.ts && d.nmembers == 0);
    CHECK(strcmp(d.msg.cmid, "c-1") == 0);
    /* The same cmid of another sender is another message. */
    iy_send other = { b, 0, a, "two", 3, "c-1", 0, 0 };
    CHECK_EQ(store_batch_add(bt, &other, &d), 0);
    CHECK_EQ(d.msg.seq, 2);
    CHECK_EQ(store_batch_commit(bt), 0);

    CHECK_EQ(send1(s, a, 0, b, "one again", "c-1", &d), IY_EEXIST);   /* across batches */
    CHECK(d.msg.id == o.msg.id && d.msg.seq == 1 && d.msg.pos == 1 && d.msg.channel == o.msg.channel);
    CHECK_EQ(send1(s, a, 0, b, "no cmid", "", &d), 0);
    CHECK_EQ(send1(s, a, 0, b, "no cmid", "", &d), 0);   /* empty cmid: no idempotency */
    CHECK_EQ(d.msg.seq, 4);

    s = reopen(s);
    CHECK_EQ(send1(s, a, o.msg.channel, 0, "after reopen", "c-1", &d), IY_EEXIST);
    CHECK(d.msg.id == o.msg.id && d.msg.seq == 1 && d.msg.pos == 1 && d.msg.ts == o.msg.ts);
    CHECK_EQ(store_message_count(s), 4);

    char big[IY_CMID_MAX + 2];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ(send1(s, a, 0, b, "long cmid", big, &d), IY_EINVAL);
    big[IY_CMID_MAX] = '\0';
    CHECK_EQ(send1(s, a, 0, b, "max cmid", big, &d), 0);
    CHECK_EQ(send1(s, a, 0, b, "max cmid", big, &d), IY_EEXIST);
    done(s);
}

static void test_rollback(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    iy_stored o;
    CHECK_EQ(send1(s, a, 0, b, "1", "k1", &o), 0);
    uint64_t ch = o.msg.channel;

    /* A batch never committed: store_free discards it. */
    store_batch *bt = store_batch_begin(s);
    iy_send in = { a, 0, b, "lost", 4, "k2", 0, 0 };
    iy_send in2 = { a, 0, c, "lost too", 8, "k3", 0, 0 };
    CHECK_EQ(store_batch_add(bt, &in, &o), 0);
    CHECK_EQ(o.msg.seq, 2);
    CHECK_EQ(store_batch_add(bt, &in2, &o), 0);
    s = reopen(s);

    uint64_t p, found;
    CHECK_EQ(store_user_pos(s, a, &p), 0);
    CHECK_EQ(p, 1);
    CHECK_EQ(store_direct_find(s, a, c, &found), IY_ENOTFOUND);
    CHECK_EQ(store_message_count(s), 1);
    iy_msg m;
    CHECK_EQ(store_channel_last(s, ch, &m), 0);
    CHECK_EQ(m.seq, 1);
    iy_msg_clear(&m);

    /* The next batch reuses seq 2 / pos 2, and the cmid is free. */
    CHECK_EQ(send1(s, a, 0, b, "kept", "k2", &o), 0);
    CHECK_EQ(o.msg.seq, 2);
    CHECK(o.pos[0] == 2 && o.pos[1] == 2);
    CHECK_EQ(send1(s, a, 0, c, "kept too", "k3", &o), 0);
    CHECK_EQ(o.msg.seq, 1);
    CHECK_EQ(o.msg.pos, 3);

    /* A failed add leaves the batch usable and unchanged. */
    bt = store_batch_begin(s);
    iy_send bad = { c, ch, 0, "x", 1, "k9", 0, 0 }, good = { a, ch, 0, "y", 1, "k9", 0, 0 };
    CHECK_EQ(store_batch_add(bt, &bad, &o), IY_EFORBIDDEN);
    CHECK_EQ(store_batch_add(bt, &good, &o), 0);
    CHECK_EQ(o.msg.seq, 3);
    CHECK_EQ(store_batch_commit(bt), 0);
    /* An empty batch commits. */
    CHECK_EQ(store_batch_commit(store_batch_begin(s)), 0);
    CHECK_EQ(store_message_count(s), 4);
    done(s);
}

static void test_ids(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb");
    iy_stored o;
    uint64_t last = b;
    int ok_inc = 1, ok_ts = 1, ok_add = 1;
    for (int round = 0; round < 2; round++) {
        store_batch *bt = store_batch_begin(s);
        for (int i = 0; i < 5000; i++) {   /* > 4096 per ms possible: counter overflow */
            int64_t t0 = now_ms();
            iy_send in = { a, 0, b, "x", 1, "", 0, 0 };
            if (store_batch_add(bt, &in, &o) != 0) ok_add = 0;
            int64_t t1 = now_ms();
            if (o.msg.id <= last) ok_inc = 0;
            last = o.msg.id;
            /* ts follows the id; a borrowed ms may run up to a few ms ahead. */
            if (o.msg.ts != (int64_t)(o.msg.id >> 22) + 1704067200000LL) ok_ts = 0;
            if (o.msg.ts < t0 - 1 || o.msg.ts > t1 + 50) ok_ts = 0;
        }
        CHECK_EQ(store_batch_commit(bt), 0);
        s = reopen(s);
    }
    CHECK(ok_add);
    CHECK(ok_inc);
    CHECK(ok_ts);
    /* After reopen ids continue above the persisted newest one. */
    iy_user u;
    CHECK_EQ(store_user_create(s, "cc", "", "$h", &u), 0);
    CHECK(u.id > last);
    CHECK_EQ((u.id >> 12) & 0x3ff, 0);
    done(s);

    /* The node number is mixed in. */
    strcpy(dir, "/tmp/iyagi_store_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ(store_open(dir, 5, &s), 0);
    CHECK_EQ(store_user_create(s, "dd", "", "$h", &u), 0);
    CHECK_EQ((u.id >> 12) & 0x3ff, 5);
    done(s);
    store *bad = NULL;
    CHECK_EQ(store_open("/tmp", 1024, &bad), IY_EIO);
    CHECK(bad == NULL);
}

static void test_history_sync(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    iy_stored o;
    char text[32];
    uint64_t ch = 0, ids[11];
    store_batch *bt = store_batch_begin(s);
    for (int i = 1; i <= 10; i++) {
        snprintf(text, sizeof text, "m%d", i);
        iy_send in = { i % 2 ? a : b, 0, i % 2 ? b : a, text, strlen(text), "", 0, 0 };
        CHECK_EQ(store_batch_add(bt, &in, &o), 0);
        ids[i] = o.msg.id;
        ch = o.msg.channel;
        /* Interleave another channel of a's so that a's inbox is not just ch. */
        iy_send other = { c, 0, a, "other", 5, "", 0, 0 };
        CHECK_EQ(store_batch_add(bt, &other, &o), 0);
    }
    CHECK_EQ(store_batch_commit(bt), 0);

    iy_msg_list l;
    CHECK_EQ(store_history(s, ch, UINT64_MAX, 0, 3, &l), 0);   /* newest first */
    CHECK_EQ(l.n, 3);
    if (l.n == 3) {
        CHECK(l.v[0].seq == 10 && l.v[1].seq == 9 && l.v[2].seq == 8);
        CHECK_MEM(l.v[0].text, l.v[0].text_len, "m10");
        CHECK(l.v[0].id == ids[10] && l.v[0].from == b && l.v[0].channel == ch && l.v[0].pos == 0);
        CHECK(l.v[0].ts == (int64_t)(ids[10] >> 22) + 1704067200000LL);
    }
    iy_msg_list_clear(&l);
    CHECK_EQ(store_history(s, ch, 4, 0, 50, &l), 0);
    CHECK_EQ(l.n, 3);
    if (l.n == 3) CHECK(l.v[0].seq == 3 && l.v[2].seq == 1);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_history(s, ch, 1, 0, 50, &l), 0);
    CHECK_EQ(l.n, 0);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_history(s, ch, 0, 0, 4, &l), 0);             /* oldest first */
    CHECK_EQ(l.n, 4);
    if (l.n == 4) {
        CHECK(l.v[0].seq == 1 && l.v[3].seq == 4);
        CHECK_MEM(l.v[0].text, l.v[0].text_len, "m1");
        CHECK(l.v[0].from == a);
    }
    iy_msg_list_clear(&l);
    CHECK_EQ(store_history(s, ch, 0, 7, 50, &l), 0);
    CHECK_EQ(l.n, 3);
    if (l.n == 3) CHECK(l.v[0].seq == 8 && l.v[2].seq == 10);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_history(s, ch, 0, 10, 50, &l), 0);
    CHECK_EQ(l.n, 0);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_history(s, 31337, UINT64_MAX, 0, 50, &l), 0);
    CHECK_EQ(l.n, 0);
    iy_msg_list_clear(&l);

    iy_msg m;
    CHECK_EQ(store_channel_last(s, ch, &m), 0);
    CHECK_EQ(m.seq, 10);
    CHECK_MEM(m.text, m.text_len, "m10");
    iy_msg_clear(&m);
    CHECK_EQ(store_channel_last(s, 31337, &m), IY_ENOTFOUND);

    /* a's inbox: 20 entries, alternating ch and the c channel. */
    int more = -1;
    CHECK_EQ(store_sync(s, a, 0, 7, &l, &more), 0);
    CHECK_EQ(l.n, 7);
    CHECK_EQ(more, 1);
    int ok = 1;
    for (size_t i = 0; i < l.n; i++) {
        if (l.v[i].pos != i + 1) ok = 0;
        if ((i % 2 == 0) != (l.v[i].channel == ch)) ok = 0;
        if (i % 2 == 0 && l.v[i].seq != i / 2 + 1) ok = 0;
    }
    CHECK(ok);
    if (l.n == 7) CHECK_MEM(l.v[2].text, l.v[2].text_len, "m2");
    iy_msg_list_clear(&l);
    CHECK_EQ(store_sync(s, a, 14, 6, &l, &more), 0);
    CHECK_EQ(l.n, 6);
    CHECK_EQ(more, 0);
    if (l.n == 6) CHECK(l.v[0].pos == 15 && l.v[5].pos == 20);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_sync(s, a, 20, 6, &l, &more), 0);
    CHECK_EQ(l.n, 0);
    CHECK_EQ(more, 0);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_sync(s, b, 0, 100, &l, &more), 0);
    CHECK_EQ(l.n, 10);
    CHECK_EQ(more, 0);
    iy_msg_list_clear(&l);
    done(s);
}

static void test_groups(void)
{
    store *s = fresh();
    uint64_t u[IY_GROUP_MAX + 2];
    char name[16];
    for (int i = 0; i < IY_GROUP_MAX + 2; i++) {
        snprintf(name, sizeof name, "user%d", i);
        u[i] = mkuser(s, name);
    }
    iy_channel g;
    CHECK_EQ(store_group_create(s, u[0], "too many", u, IY_GROUP_MAX + 1, &g), IY_ETOOBIG);
    CHECK_EQ(store_group_create(s, u[0], "alone", u, 1, &g), IY_EINVAL);
    uint64_t with_ghost[3] = { u[0], u[1], 999 };
    CHECK_EQ(store_group_create(s, u[0], "ghost", with_ghost, 3, &g), IY_ENOTFOUND);
    /* Exactly 100, given in reverse order with a duplicate. */
    uint64_t mem[IY_GROUP_MAX + 1];
    for (int i = 0; i < IY_GROUP_MAX; i++) mem[i] = u[IY_GROUP_MAX - 1 - i];
    mem[IY_GROUP_MAX] = u[3];
    CHECK_EQ(store_group_create(s, u[0], "big", mem, IY_GROUP_MAX + 1, &g), 0);
    CHECK_EQ(g.nmembers, IY_GROUP_MAX);
    CHECK_EQ(g.kind, IY_GROUP);
    CHECK(g.owner == u[0] && strcmp(g.name, "big") == 0);
    int asc = 1;
    for (uint32_t i = 1; i < g.nmembers; i++) if (g.members[i] <= g.members[i - 1]) asc = 0;
    CHECK(asc);

    iy_channel g2;
    CHECK_EQ(store_channel_get(s, g.id, &g2), 0);
    CHECK(g2.nmembers == g.nmembers && memcmp(g2.members, g.members, g.nmembers * 8) == 0);
    CHECK(strcmp(g2.name, "big") == 0 && g2.owner == u[0] && g2.kind == IY_GROUP);
    CHECK_EQ(store_channel_get(s, 4242, &g2), IY_ENOTFOUND);

    /* A small group: the creator is added if absent. */
    iy_channel small;
    uint64_t two[1] = { u[1] };
    CHECK_EQ(store_group_create(s, u[2], "pair", two, 1, &small), 0);
    CHECK_EQ(small.nmembers, 2);

    /* Sends: per-member pos. u[1] gets pos 1 (big), 2 (small), 3 (big). */
    iy_stored o;
    CHECK_EQ(send1(s, u[5], g.id, 0, "hello all", "g1", &o), 0);
    CHECK_EQ(o.nmembers, IY_GROUP_MAX);
    CHECK(memcmp(o.members, g.members, g.nmembers * 8) == 0);
    int allone = 1;
    for (uint32_t i = 0; i < o.nmembers; i++) if (o.pos[i] != 1) allone = 0;
    CHECK(allone);
    CHECK_EQ(o.msg.seq, 1);
    CHECK_EQ(send1(s, u[1], small.id, 0, "psst", "", &o), 0);
    CHECK_EQ(o.msg.pos, 2);
    CHECK_EQ(send1(s, u[6], g.id, 0, "again", "", &o), 0);
    CHECK_EQ(o.msg.seq, 2);
    uint64_t p1 = 0, p2 = 0, p7 = 0;
    for (uint32_t i = 0; i < o.nmembers; i++) {
        if (o.members[i] == u[1]) p1 = o.pos[i];
        if (o.members[i] == u[2]) p2 = o.pos[i];
        if (o.members[i] == u[7]) p7 = o.pos[i];
    }
    CHECK_EQ(p1, 3);
    CHECK_EQ(p2, 3);
    CHECK_EQ(p7, 2);
    CHECK_EQ(send1(s, u[IY_GROUP_MAX + 1], g.id, 0, "outsider", "", &o), IY_EFORBIDDEN);

    uint64_t *chs;
    size_t n;
    CHECK_EQ(store_user_channels(s, u[1], &chs, &n), 0);
    CHECK_EQ(n, 2);
    iy_free(chs);
    CHECK_EQ(store_user_channels(s, u[IY_GROUP_MAX + 1], &chs, &n), 0);
    CHECK_EQ(n, 0);
    iy_free(chs);
    done(s);
}

static void test_reopen_and_big(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb");
    iy_stored o;
    CHECK_EQ(send1(s, a, 0, b, "1", "", &o), 0);
    CHECK_EQ(send1(s, b, 0, a, "2", "", &o), 0);
    uint64_t ch = o.msg.channel;
    s = reopen(s);

    /* 100,000 bytes with embedded NULs. */
    size_t len = 100000;
    char *big = iy_malloc(len);
    for (size_t i = 0; i < len; i++) big[i] = (char)(i % 7 == 0 ? 0 : 'a' + i % 26);
    store_batch *bt = store_batch_begin(s);
    iy_send in = { a, ch, 0, big, len, "big", 0, 0 };
    CHECK_EQ(store_batch_add(bt, &in, &o), 0);
    CHECK_EQ(store_batch_commit(bt), 0);
    CHECK_EQ(o.msg.seq, 3);
    CHECK(o.pos[0] == 3 && o.pos[1] == 3);
    CHECK_EQ(store_message_count(s), 3);

    s = reopen(s);
    iy_msg m;
    CHECK_EQ(store_channel_last(s, ch, &m), 0);
    CHECK_EQ(m.text_len, len);
    CHECK(m.text_len == len && memcmp(m.text, big, len) == 0 && m.text[len] == '\0');
    CHECK(strcmp(m.cmid, "big") == 0);
    iy_msg_clear(&m);
    iy_msg_list l;
    int more;
    CHECK_EQ(store_sync(s, b, 2, 10, &l, &more), 0);
    CHECK_EQ(l.n, 1);
    if (l.n == 1) CHECK(l.v[0].text_len == len && memcmp(l.v[0].text, big, len) == 0);
    iy_msg_list_clear(&l);
    iy_free(big);

    /* Counters continue without gaps after reopen. */
    CHECK_EQ(send1(s, b, 0, a, "4", "", &o), 0);
    CHECK_EQ(o.msg.seq, 4);
    CHECK(o.pos[0] == 4 && o.pos[1] == 4);
    CHECK_EQ(store_message_count(s), 4);
    iy_user u;
    CHECK_EQ(store_user_get(s, a, &u), 0);
    CHECK(strcmp(u.username, "aa") == 0);
    done(s);
}

/* ---- membership events, read state, friends, presence ------------------- */

/* One event in its own batch; returns the add's result. */
static int event1(store *s, uint64_t from, uint64_t channel, int event, uint64_t subject,
                  const char *text, iy_stored *out)
{
    store_batch *b = store_batch_begin(s);
    iy_send in = { from, channel, 0, text, strlen(text), "", event, subject };
    int rc = store_batch_add(b, &in, out);
    CHECK_EQ(store_batch_commit(b), 0);
    return rc;
}

/* 1 if channel ch is among user's store_user_channels. */
static int has_channel(store *s, uint64_t user, uint64_t ch)
{
    uint64_t *chs = NULL;
    size_t n = 0;
    int found = 0;
    CHECK_EQ(store_user_channels(s, user, &chs, &n), 0);
    for (size_t i = 0; i < n; i++) if (chs[i] == ch) found = 1;
    iy_free(chs);
    return found;
}

/* The inbox pos of user in o, 0 if user is not among o's members. */
static uint64_t pos_of(const iy_stored *o, uint64_t user)
{
    for (uint32_t i = 0; i < o->nmembers; i++) if (o->members[i] == user) return o->pos[i];
    return 0;
}

static void test_events(void)
{
    store *s = fresh();
    /* Ids grow with creation: o < a < b < c < x. */
    uint64_t o = mkuser(s, "oo"), a = mkuser(s, "aa"), b = mkuser(s, "bb");
    uint64_t c = mkuser(s, "cc"), x = mkuser(s, "xx");
    uint64_t three[3] = { o, a, b };
    iy_channel g, cg;
    iy_stored r;
    CHECK_EQ(store_group_create(s, o, "team", three, 3, &g), 0);
    CHECK_EQ(send1(s, a, g.id, 0, "hi", "", &r), 0);

    /* MEMBER_ADDED by any member. */
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_ADDED, c, "", &r), 0);
    CHECK_EQ(r.msg.seq, 2);
    CHECK(r.msg.from == a && r.msg.event == IY_EV_MEMBER_ADDED && r.msg.subject == c);
    CHECK(r.msg.channel == g.id && r.msg.text == NULL && r.msg.text_len == 0);
    CHECK_EQ(r.nmembers, 4);
    CHECK(r.members[0] == o && r.members[1] == a && r.members[2] == b && r.members[3] == c);
    CHECK(r.pos[0] == 2 && r.pos[1] == 2 && r.pos[2] == 2 && r.pos[3] == 1);
    CHECK_EQ(r.msg.pos, 2);
    CHECK(r.owner == o);
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 4 && cg.members[3] == c && cg.owner == o);
    CHECK(has_channel(s, c, g.id));
    CHECK_EQ(send1(s, c, g.id, 0, "thanks", "", &r), 0);   /* the new member may send */
    CHECK_EQ(r.msg.seq, 3);

    /* MEMBER_ADDED errors. */
    CHECK_EQ(event1(s, b, g.id, IY_EV_MEMBER_ADDED, c, "", &r), IY_ECONFLICT);
    CHECK_EQ(event1(s, b, g.id, IY_EV_MEMBER_ADDED, o, "", &r), IY_ECONFLICT);
    CHECK_EQ(event1(s, x, g.id, IY_EV_MEMBER_ADDED, x, "", &r), IY_EFORBIDDEN);
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_ADDED, 999, "", &r), IY_ENOTFOUND);
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_ADDED, 0, "", &r), IY_ENOTFOUND);
    CHECK_EQ(event1(s, a, 4242, IY_EV_MEMBER_ADDED, x, "", &r), IY_ENOTFOUND);

    /* Events on a direct channel, with `to`, or of an unknown kind. */
    CHECK_EQ(send1(s, a, 0, b, "direct", "", &r), 0);
    uint64_t dch = r.msg.channel;
    CHECK_EQ(event1(s, a, dch, IY_EV_MEMBER_ADDED, c, "", &r), IY_EINVAL);
    CHECK_EQ(event1(s, a, dch, IY_EV_MEMBER_REMOVED, b, "", &r), IY_EINVAL);
    CHECK_EQ(event1(s, a, dch, IY_EV_RENAMED, 0, "name", &r), IY_EINVAL);
    CHECK_EQ(event1(s, a, g.id, 7, 0, "", &r), IY_EINVAL);
    CHECK_EQ(event1(s, a, g.id, -1, 0, "", &r), IY_EINVAL);
    store_batch *bt = store_batch_begin(s);
    iy_send withto = { a, 0, b, "", 0, "", IY_EV_MEMBER_ADDED, c };
    CHECK_EQ(store_batch_add(bt, &withto, &r), IY_EINVAL);
    CHECK_EQ(store_batch_commit(bt), 0);

    /* RENAMED: owner only, 1..IY_GROUP_NAME_MAX bytes. */
    char name[IY_GROUP_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    CHECK_EQ(event1(s, a, g.id, IY_EV_RENAMED, 0, "mine now", &r), IY_EFORBIDDEN);
    CHECK_EQ(event1(s, x, g.id, IY_EV_RENAMED, 0, "mine now", &r), IY_EFORBIDDEN);
    CHECK_EQ(event1(s, o, g.id, IY_EV_RENAMED, 0, "", &r), IY_EINVAL);
    CHECK_EQ(event1(s, o, g.id, IY_EV_RENAMED, 0, name, &r), IY_EINVAL);
    bt = store_batch_begin(s);
    iy_send nul = { o, g.id, 0, "a\0b", 3, "", IY_EV_RENAMED, 0 };
    CHECK_EQ(store_batch_add(bt, &nul, &r), IY_EINVAL);
    CHECK_EQ(store_batch_commit(bt), 0);
    name[IY_GROUP_NAME_MAX] = '\0';
    CHECK_EQ(event1(s, o, g.id, IY_EV_RENAMED, 0, name, &r), 0);
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(strcmp(cg.name, name) == 0);
    CHECK_EQ(event1(s, o, g.id, IY_EV_RENAMED, 0, "Team \xea\xb0\x80", &r), 0);
    CHECK_EQ(r.msg.seq, 5);
    CHECK(r.msg.event == IY_EV_RENAMED && r.msg.subject == 0 && r.msg.text_len == 8);
    CHECK(r.nmembers == 4 && r.owner == o);
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(strcmp(cg.name, "Team \xea\xb0\x80") == 0 && cg.nmembers == 4);

    /* MEMBER_REMOVED: errors. */
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_REMOVED, b, "", &r), IY_EFORBIDDEN);
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_REMOVED, o, "", &r), IY_EFORBIDDEN);
    CHECK_EQ(event1(s, x, g.id, IY_EV_MEMBER_REMOVED, x, "", &r), IY_EFORBIDDEN);
    CHECK_EQ(event1(s, o, g.id, IY_EV_MEMBER_REMOVED, x, "", &r), IY_ENOTFOUND);
    CHECK_EQ(event1(s, o, g.id, IY_EV_MEMBER_REMOVED, 999, "", &r), IY_ENOTFOUND);

    /* The owner removes b: b is told, then gets nothing more. */
    CHECK_EQ(event1(s, o, g.id, IY_EV_MEMBER_REMOVED, b, "bye", &r), 0);
    CHECK_EQ(r.msg.seq, 6);
    CHECK(r.msg.event == IY_EV_MEMBER_REMOVED && r.msg.subject == b && r.msg.from == o);
    CHECK_EQ(r.nmembers, 4);
    CHECK(r.members[0] == o && r.members[1] == a && r.members[2] == b && r.members[3] == c);
    CHECK(r.owner == o);
    uint64_t bpos = pos_of(&r, b);
    CHECK(bpos != 0);
    CHECK(!has_channel(s, b, g.id));
    CHECK(has_channel(s, b, dch));
    CHECK_EQ(send1(s, b, g.id, 0, "still here?", "", &r), IY_EFORBIDDEN);
    CHECK_EQ(send1(s, a, g.id, 0, "after b", "", &r), 0);
    CHECK_EQ(r.nmembers, 3);
    CHECK(pos_of(&r, b) == 0);
    uint64_t p = 0;
    CHECK_EQ(store_user_pos(s, b, &p), 0);
    CHECK_EQ(p, bpos);

    /* a leaves by itself. */
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_REMOVED, a, "", &r), 0);
    CHECK(r.nmembers == 3 && r.members[0] == o && r.members[1] == a && r.members[2] == c);
    CHECK(r.owner == o && r.msg.pos == pos_of(&r, a) && r.msg.pos != 0);
    CHECK(!has_channel(s, a, g.id));
    /* A removed user may be added back. */
    CHECK_EQ(event1(s, c, g.id, IY_EV_MEMBER_ADDED, a, "", &r), 0);
    CHECK(has_channel(s, a, g.id));
    CHECK_EQ(r.nmembers, 3);

    /* The owner leaves: the lowest remaining id (a) owns the group. */
    CHECK_EQ(event1(s, o, g.id, IY_EV_MEMBER_REMOVED, o, "", &r), 0);
    CHECK(r.owner == a && r.nmembers == 3 && r.members[0] == o);
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.owner == a && cg.nmembers == 2 && cg.members[0] == a && cg.members[1] == c);
    CHECK_EQ(event1(s, o, g.id, IY_EV_MEMBER_ADDED, o, "", &r), IY_EFORBIDDEN);
    CHECK_EQ(event1(s, c, g.id, IY_EV_RENAMED, 0, "c's", &r), IY_EFORBIDDEN);
    CHECK_EQ(event1(s, a, g.id, IY_EV_RENAMED, 0, "a's", &r), 0);
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_REMOVED, c, "", &r), 0);   /* new owner removes */
    CHECK(r.owner == a && r.nmembers == 2);

    /* The last member leaves: an empty group without owner. */
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_REMOVED, a, "", &r), 0);
    CHECK(r.nmembers == 1 && r.members[0] == a && r.owner == 0 && r.pos[0] != 0);
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 0 && cg.owner == 0 && cg.kind == IY_GROUP);
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_ADDED, a, "", &r), IY_EFORBIDDEN);
    CHECK_EQ(send1(s, a, g.id, 0, "anyone?", "", &r), IY_EFORBIDDEN);
    iy_msg m;
    CHECK_EQ(store_channel_last(s, g.id, &m), 0);
    CHECK(m.event == IY_EV_MEMBER_REMOVED && m.subject == a && m.from == a);
    iy_msg_clear(&m);
    s = reopen(s);
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 0 && cg.owner == 0 && strcmp(cg.name, "a's") == 0);

    /* Events ignore cmid: never EEXIST, and the cmid stays free. */
    CHECK_EQ(store_group_create(s, o, "cmid", three, 3, &g), 0);
    bt = store_batch_begin(s);
    iy_send ev = { o, g.id, 0, "r1", 2, "same", IY_EV_RENAMED, 0 };
    CHECK_EQ(store_batch_add(bt, &ev, &r), 0);
    CHECK(r.msg.cmid[0] == '\0');
    CHECK_EQ(store_batch_add(bt, &ev, &r), 0);
    CHECK_EQ(r.msg.seq, 2);
    CHECK_EQ(store_batch_commit(bt), 0);
    CHECK_EQ(event1(s, o, g.id, IY_EV_RENAMED, 0, "r2", &r), 0);
    CHECK_EQ(send1(s, o, g.id, 0, "msg", "same", &r), 0);
    CHECK_EQ(r.msg.seq, 4);
    done(s);
}

static void test_events_full(void)
{
    store *s = fresh();
    uint64_t u[IY_GROUP_MAX + 1];
    char name[16];
    for (int i = 0; i <= IY_GROUP_MAX; i++) {
        snprintf(name, sizeof name, "u%d", i);
        u[i] = mkuser(s, name);
    }
    iy_channel g;
    iy_stored r;
    CHECK_EQ(store_group_create(s, u[0], "full", u, IY_GROUP_MAX - 1, &g), 0);
    CHECK_EQ(event1(s, u[5], g.id, IY_EV_MEMBER_ADDED, u[IY_GROUP_MAX - 1], "", &r), 0);
    CHECK_EQ(r.nmembers, IY_GROUP_MAX);
    CHECK_EQ(event1(s, u[5], g.id, IY_EV_MEMBER_ADDED, u[IY_GROUP_MAX], "", &r), IY_ETOOBIG);
    CHECK_EQ(event1(s, u[5], g.id, IY_EV_MEMBER_ADDED, u[1], "", &r), IY_ECONFLICT);
    /* Within one batch: a removal makes room for an add. */
    store_batch *bt = store_batch_begin(s);
    iy_send rm = { u[7], g.id, 0, "", 0, NULL, IY_EV_MEMBER_REMOVED, u[7] };
    iy_send add = { u[8], g.id, 0, "", 0, NULL, IY_EV_MEMBER_ADDED, u[IY_GROUP_MAX] };
    CHECK_EQ(store_batch_add(bt, &add, &r), IY_ETOOBIG);
    CHECK_EQ(store_batch_add(bt, &rm, &r), 0);
    CHECK_EQ(store_batch_add(bt, &add, &r), 0);
    CHECK_EQ(r.nmembers, IY_GROUP_MAX);
    CHECK_EQ(store_batch_add(bt, &rm, &r), IY_EFORBIDDEN);   /* u[7] is gone already */
    CHECK_EQ(store_batch_commit(bt), 0);
    CHECK_EQ(store_channel_get(s, g.id, &g), 0);
    CHECK_EQ(g.nmembers, IY_GROUP_MAX);
    CHECK(g.members[IY_GROUP_MAX - 1] == u[IY_GROUP_MAX]);
    done(s);
}

/* Membership changes inside one batch: visible to later adds, undone with it. */
static void test_events_batch(void)
{
    store *s = fresh();
    uint64_t o = mkuser(s, "oo"), a = mkuser(s, "aa"), b = mkuser(s, "bb");
    uint64_t x = mkuser(s, "xx");
    uint64_t three[3] = { o, a, b };
    iy_channel g, cg;
    iy_stored r;
    CHECK_EQ(store_group_create(s, o, "team", three, 3, &g), 0);
    CHECK_EQ(send1(s, o, g.id, 0, "first", "", &r), 0);
    uint64_t px0 = 0;

    /* Uncommitted: add x, x speaks, rename, remove b; then store_free. */
    store_batch *bt = store_batch_begin(s);
    iy_send add = { a, g.id, 0, "", 0, "", IY_EV_MEMBER_ADDED, x };
    iy_send xs = { x, g.id, 0, "hello", 5, "xk", 0, 0 };
    iy_send ren = { o, g.id, 0, "renamed", 7, "", IY_EV_RENAMED, 0 };
    iy_send rm = { o, g.id, 0, "", 0, "", IY_EV_MEMBER_REMOVED, b };
    iy_send bs = { b, g.id, 0, "me?", 3, "", 0, 0 };
    CHECK_EQ(store_batch_add(bt, &xs, &r), IY_EFORBIDDEN);   /* not yet */
    CHECK_EQ(store_batch_add(bt, &add, &r), 0);
    CHECK_EQ(r.msg.seq, 2);
    CHECK_EQ(store_batch_add(bt, &xs, &r), 0);                /* seen at once */
    CHECK_EQ(r.msg.seq, 3);
    CHECK(r.nmembers == 4 && pos_of(&r, x) == 2 && r.msg.pos == 2);
    CHECK_EQ(store_batch_add(bt, &ren, &r), 0);
    CHECK_EQ(store_batch_add(bt, &rm, &r), 0);
    CHECK_EQ(r.msg.seq, 5);
    CHECK(r.nmembers == 4 && pos_of(&r, b) == 5);
    CHECK_EQ(store_batch_add(bt, &bs, &r), IY_EFORBIDDEN);   /* removed just before */
    CHECK_EQ(store_batch_add(bt, &rm, &r), IY_ENOTFOUND);
    /* Committed state is untouched until the commit. */
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && strcmp(cg.name, "team") == 0);
    CHECK(!has_channel(s, x, g.id));
    CHECK(has_channel(s, b, g.id));
    s = reopen(s);   /* discards the open batch */

    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && cg.members[0] == o && cg.members[1] == a && cg.members[2] == b);
    CHECK(strcmp(cg.name, "team") == 0 && cg.owner == o);
    CHECK(!has_channel(s, x, g.id));
    CHECK(has_channel(s, b, g.id));
    CHECK_EQ(store_user_pos(s, x, &px0), 0);
    CHECK_EQ(px0, 0);
    CHECK_EQ(store_message_count(s), 1);
    iy_msg m;
    CHECK_EQ(store_channel_last(s, g.id, &m), 0);
    CHECK(m.seq == 1 && m.event == 0);
    iy_msg_clear(&m);
    CHECK_EQ(send1(s, x, g.id, 0, "hello", "xk", &r), IY_EFORBIDDEN);
    CHECK_EQ(send1(s, b, g.id, 0, "still in", "", &r), 0);
    CHECK_EQ(r.msg.seq, 2);   /* no gap */

    /* The same batch committed. */
    bt = store_batch_begin(s);
    CHECK_EQ(store_batch_add(bt, &add, &r), 0);
    CHECK_EQ(store_batch_add(bt, &xs, &r), 0);
    CHECK_EQ(store_batch_add(bt, &ren, &r), 0);
    CHECK_EQ(store_batch_add(bt, &rm, &r), 0);
    CHECK_EQ(store_batch_add(bt, &bs, &r), IY_EFORBIDDEN);
    CHECK_EQ(store_batch_commit(bt), 0);
    s = reopen(s);
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && cg.members[0] == o && cg.members[1] == a && cg.members[2] == x);
    CHECK(strcmp(cg.name, "renamed") == 0);
    CHECK(has_channel(s, x, g.id));
    CHECK(!has_channel(s, b, g.id));
    CHECK_EQ(store_message_count(s), 6);
    CHECK_EQ(send1(s, x, g.id, 0, "hello", "xk", &r), IY_EEXIST);   /* committed with the batch */
    done(s);
}

/* The in-memory state of a batch (its readable writes: channel records,
 * direct pairs, cmids) and the committed channel cache: a failed commit
 * undoes everything without a reopen, a successful one is seen at once. */
static void test_failed_commit_caches(void)
{
    store *s = fresh();
    uint64_t o = mkuser(s, "oo"), a = mkuser(s, "aa"), b = mkuser(s, "bb");
    uint64_t x = mkuser(s, "xx"), y = mkuser(s, "yy");
    uint64_t three[3] = { o, a, b };
    iy_channel g, cg;
    iy_stored r;
    uint64_t found, p;
    CHECK_EQ(store_group_create(s, o, "team", three, 3, &g), 0);
    CHECK_EQ(send1(s, o, g.id, 0, "first", "", &r), 0);   /* the channel is cached now */
    CHECK_EQ(send1(s, a, 0, b, "ab", "ab1", &r), 0);
    uint64_t ab = r.msg.channel;

    /* A failed commit of events, a new direct channel and cmids. */
    store_batch *bt = store_batch_begin(s);
    iy_send add = { a, g.id, 0, "", 0, "", IY_EV_MEMBER_ADDED, x };
    iy_send xs = { x, g.id, 0, "hello", 5, "xk", 0, 0 };
    iy_send ren = { o, g.id, 0, "renamed", 7, "", IY_EV_RENAMED, 0 };
    iy_send rm = { o, g.id, 0, "", 0, "", IY_EV_MEMBER_REMOVED, b };
    iy_send xy = { x, 0, y, "new pair", 8, "xy1", 0, 0 };
    iy_send ab2 = { a, ab, 0, "again", 5, "ab2", 0, 0 };
    CHECK_EQ(store_batch_add(bt, &add, &r), 0);
    CHECK_EQ(store_batch_add(bt, &xs, &r), 0);
    CHECK_EQ(store_batch_add(bt, &ren, &r), 0);
    CHECK_EQ(store_batch_add(bt, &rm, &r), 0);
    CHECK_EQ(store_batch_add(bt, &xy, &r), 0);
    uint64_t xych = r.msg.channel;
    iy_send xy2 = { y, xych, 0, "reply", 5, "", 0, 0 };
    CHECK_EQ(store_batch_add(bt, &xy2, &r), 0);           /* the new channel, through the batch */
    CHECK_EQ(r.msg.seq, 2);
    CHECK_EQ(store_batch_add(bt, &ab2, &r), 0);
    CHECK_EQ(store_batch_add(bt, &ab2, &r), IY_EEXIST);   /* the batch's own cmid */
    store__fail_next_commit(s);
    CHECK_EQ(store_batch_commit(bt), IY_EIO);

    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && cg.members[2] == b && strcmp(cg.name, "team") == 0);
    CHECK_EQ(store_direct_find(s, x, y, &found), IY_ENOTFOUND);
    CHECK_EQ(store_channel_get(s, xych, &cg), IY_ENOTFOUND);
    CHECK_EQ(store_message_count(s), 2);
    CHECK_EQ(send1(s, x, g.id, 0, "hello", "xk", &r), IY_EFORBIDDEN);
    CHECK_EQ(send1(s, b, g.id, 0, "still in", "", &r), 0);
    CHECK_EQ(r.msg.seq, 2);                                /* no gap */
    CHECK_EQ(send1(s, a, ab, 0, "again", "ab2", &r), 0);   /* the cmid is free again */
    CHECK_EQ(r.msg.seq, 2);
    CHECK_EQ(send1(s, x, 0, y, "new pair", "xy1", &r), 0);
    CHECK(r.msg.channel != xych && r.msg.seq == 1);
    CHECK_EQ(store_user_pos(s, x, &p), 0);
    CHECK_EQ(p, 1);

    /* The same events committed: seen at once, without a reopen. */
    bt = store_batch_begin(s);
    CHECK_EQ(store_batch_add(bt, &add, &r), 0);
    CHECK_EQ(store_batch_add(bt, &ren, &r), 0);
    CHECK_EQ(store_batch_add(bt, &rm, &r), 0);
    CHECK_EQ(store_batch_commit(bt), 0);
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && cg.members[2] == x && strcmp(cg.name, "renamed") == 0);
    CHECK_EQ(send1(s, x, g.id, 0, "hello", "xk", &r), 0);
    CHECK_EQ(send1(s, b, g.id, 0, "out", "", &r), IY_EFORBIDDEN);
    /* A failed commit after a successful one leaves the committed cache. */
    bt = store_batch_begin(s);
    iy_send rmx = { x, g.id, 0, "", 0, "", IY_EV_MEMBER_REMOVED, x };
    CHECK_EQ(store_batch_add(bt, &rmx, &r), 0);
    store__fail_next_commit(s);
    CHECK_EQ(store_batch_commit(bt), IY_EIO);
    CHECK_EQ(send1(s, x, g.id, 0, "still here", "", &r), 0);
    s = reopen(s);
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && cg.members[2] == x && strcmp(cg.name, "renamed") == 0);
    CHECK_EQ(send1(s, a, ab, 0, "again", "ab2", &r), IY_EEXIST);
    done(s);
}

/* event/subject round-trip through history, sync and channel_last, also after reopen. */
static void test_event_fields(void)
{
    store *s = fresh();
    uint64_t o = mkuser(s, "oo"), a = mkuser(s, "aa"), c = mkuser(s, "cc");
    uint64_t two[2] = { o, a };
    iy_channel g;
    iy_stored r;
    CHECK_EQ(store_group_create(s, o, "g", two, 2, &g), 0);
    CHECK_EQ(send1(s, o, g.id, 0, "plain", "k1", &r), 0);
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_ADDED, c, "welcome", &r), 0);
    CHECK_EQ(event1(s, o, g.id, IY_EV_RENAMED, 0, "G2", &r), 0);
    CHECK_EQ(event1(s, o, g.id, IY_EV_MEMBER_REMOVED, c, "", &r), 0);

    for (int round = 0; round < 2; round++) {
        iy_msg_list l;
        CHECK_EQ(store_history(s, g.id, 0, 0, 10, &l), 0);
        CHECK_EQ(l.n, 4);
        if (l.n == 4) {
            CHECK(l.v[0].event == IY_EV_NONE && l.v[0].subject == 0);
            CHECK(strcmp(l.v[0].cmid, "k1") == 0);
            CHECK_MEM(l.v[0].text, l.v[0].text_len, "plain");
            CHECK(l.v[1].event == IY_EV_MEMBER_ADDED && l.v[1].subject == c && l.v[1].from == a);
            CHECK_MEM(l.v[1].text, l.v[1].text_len, "welcome");
            CHECK(l.v[1].cmid[0] == '\0');
            CHECK(l.v[2].event == IY_EV_RENAMED && l.v[2].subject == 0);
            CHECK_MEM(l.v[2].text, l.v[2].text_len, "G2");
            CHECK(l.v[3].event == IY_EV_MEMBER_REMOVED && l.v[3].subject == c);
            CHECK(l.v[3].text_len == 0 && l.v[3].text && l.v[3].text[0] == '\0');
            CHECK(l.v[3].seq == 4 && l.v[3].from == o);
        }
        iy_msg_list_clear(&l);

        /* c's inbox: added, renamed, removed; nothing before or after. */
        int more = -1;
        CHECK_EQ(store_sync(s, c, 0, 10, &l, &more), 0);
        CHECK_EQ(l.n, 3);
        CHECK_EQ(more, 0);
        if (l.n == 3) {
            CHECK(l.v[0].pos == 1 && l.v[0].event == IY_EV_MEMBER_ADDED && l.v[0].subject == c);
            CHECK(l.v[1].event == IY_EV_RENAMED && l.v[2].event == IY_EV_MEMBER_REMOVED);
            CHECK(l.v[2].subject == c && l.v[2].pos == 3 && l.v[2].seq == 4);
        }
        iy_msg_list_clear(&l);

        iy_msg m;
        CHECK_EQ(store_channel_last(s, g.id, &m), 0);
        CHECK(m.seq == 4 && m.event == IY_EV_MEMBER_REMOVED && m.subject == c && m.from == o);
        iy_msg_clear(&m);
        s = reopen(s);
    }
    done(s);
}

static void test_read_state(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    iy_stored r;
    uint64_t seq = 99, now = 99;
    CHECK_EQ(store_read_get(s, a, 12345, &seq), 0);
    CHECK_EQ(seq, 0);

    /* A send sets its sender's read seq, and only the sender's. */
    CHECK_EQ(send1(s, a, 0, b, "1", "", &r), 0);
    uint64_t ch = r.msg.channel;
    CHECK_EQ(store_read_get(s, a, ch, &seq), 0);
    CHECK_EQ(seq, 1);
    CHECK_EQ(store_read_get(s, b, ch, &seq), 0);
    CHECK_EQ(seq, 0);
    CHECK_EQ(send1(s, b, ch, 0, "2", "", &r), 0);
    CHECK_EQ(send1(s, b, ch, 0, "3", "", &r), 0);
    CHECK_EQ(store_read_get(s, b, ch, &seq), 0);
    CHECK_EQ(seq, 3);
    CHECK_EQ(store_read_get(s, a, ch, &seq), 0);
    CHECK_EQ(seq, 1);

    /* Forward only; never past the newest committed seq. */
    CHECK_EQ(store_read_set(s, a, ch, 2, &now), 0);
    CHECK_EQ(now, 2);
    CHECK_EQ(store_read_set(s, a, ch, 1, &now), 0);
    CHECK_EQ(now, 2);
    CHECK_EQ(store_read_get(s, a, ch, &seq), 0);
    CHECK_EQ(seq, 2);
    CHECK_EQ(store_read_set(s, a, ch, 1000, &now), 0);
    CHECK_EQ(now, 3);
    CHECK_EQ(store_read_set(s, a, 777, 5, &now), 0);   /* no messages: nothing to read */
    CHECK_EQ(now, 0);

    /* A send after reading moves it on; a send of a batch not committed does not. */
    CHECK_EQ(send1(s, a, ch, 0, "4", "", &r), 0);
    CHECK_EQ(store_read_get(s, a, ch, &seq), 0);
    CHECK_EQ(seq, 4);
    store_batch *bt = store_batch_begin(s);
    iy_send in = { b, ch, 0, "5", 1, "", 0, 0 };
    CHECK_EQ(store_batch_add(bt, &in, &r), 0);
    s = reopen(s);
    CHECK_EQ(store_read_get(s, b, ch, &seq), 0);
    CHECK_EQ(seq, 3);
    CHECK_EQ(store_read_get(s, a, ch, &seq), 0);
    CHECK_EQ(seq, 4);

    /* Groups: the sender of a group message, and the actor of an event, have read it. */
    uint64_t three[3] = { a, b, c };
    iy_channel g;
    CHECK_EQ(store_group_create(s, a, "g", three, 3, &g), 0);
    CHECK_EQ(send1(s, c, g.id, 0, "g1", "", &r), 0);
    CHECK_EQ(event1(s, a, g.id, IY_EV_RENAMED, 0, "g!", &r), 0);
    CHECK_EQ(store_read_get(s, c, g.id, &seq), 0);
    CHECK_EQ(seq, 1);
    CHECK_EQ(store_read_get(s, a, g.id, &seq), 0);
    CHECK_EQ(seq, 2);
    CHECK_EQ(store_read_set(s, b, g.id, 2, &now), 0);
    CHECK_EQ(now, 2);
    s = reopen(s);
    CHECK_EQ(store_read_get(s, b, g.id, &seq), 0);
    CHECK_EQ(seq, 2);
    done(s);
}

static void test_friends(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    uint64_t d = mkuser(s, "dd");
    int st = -1;
    uint64_t *f, *in, *out;
    size_t nf, ni, no;

    CHECK_EQ(store_friend_state(s, a, b, &st), 0);
    CHECK_EQ(st, IY_FRIEND_NONE);
    CHECK_EQ(store_friend_put(s, a, a, &st), IY_EINVAL);
    CHECK_EQ(store_friend_put(s, a, 999, &st), IY_ENOTFOUND);
    CHECK_EQ(store_friend_delete(s, a, 999), IY_ENOTFOUND);
    CHECK_EQ(store_friend_delete(s, a, b), 0);   /* nothing to end */

    /* a asks b; again is the same; b accepts. */
    CHECK_EQ(store_friend_put(s, a, b, &st), 0);
    CHECK_EQ(st, IY_FRIEND_OUTGOING);
    CHECK_EQ(store_friend_put(s, a, b, &st), 0);
    CHECK_EQ(st, IY_FRIEND_OUTGOING);
    CHECK_EQ(store_friend_state(s, b, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_INCOMING);
    CHECK_EQ(store_friend_list(s, a, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 0 && ni == 0 && no == 1 && f == NULL && in == NULL && out && out[0] == b);
    iy_free(f); iy_free(in); iy_free(out);
    CHECK_EQ(store_friend_list(s, b, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 0 && ni == 1 && no == 0 && in && in[0] == a);
    iy_free(f); iy_free(in); iy_free(out);
    CHECK_EQ(store_friend_put(s, b, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_MUTUAL);
    CHECK_EQ(store_friend_state(s, a, b, &st), 0);
    CHECK_EQ(st, IY_FRIEND_MUTUAL);
    CHECK_EQ(store_friend_put(s, a, b, &st), 0);
    CHECK_EQ(st, IY_FRIEND_MUTUAL);
    CHECK_EQ(store_friend_put(s, b, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_MUTUAL);

    /* More of a's: d asks a, a asks c; lists ascending and kept across reopen. */
    CHECK_EQ(store_friend_put(s, d, a, &st), 0);
    CHECK_EQ(store_friend_put(s, a, c, &st), 0);
    CHECK_EQ(store_friend_put(s, c, d, &st), 0);
    s = reopen(s);
    CHECK_EQ(store_friend_list(s, a, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 1 && f[0] == b);
    CHECK(ni == 1 && in[0] == d);
    CHECK(no == 1 && out[0] == c);
    iy_free(f); iy_free(in); iy_free(out);
    CHECK_EQ(store_friend_list(s, d, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 0 && ni == 1 && in[0] == c && no == 1 && out[0] == a);
    iy_free(f); iy_free(in); iy_free(out);

    /* Delete ends a friendship from either side, for both, idempotently. */
    CHECK_EQ(store_friend_delete(s, b, a), 0);
    CHECK_EQ(store_friend_state(s, a, b, &st), 0);
    CHECK_EQ(st, IY_FRIEND_NONE);
    CHECK_EQ(store_friend_state(s, b, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_NONE);
    CHECK_EQ(store_friend_delete(s, b, a), 0);
    CHECK_EQ(store_friend_delete(s, a, b), 0);
    /* ... and a request: withdrawn by the asker (a -> c), declined by the asked (a <- d). */
    CHECK_EQ(store_friend_delete(s, a, c), 0);
    CHECK_EQ(store_friend_state(s, c, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_NONE);
    CHECK_EQ(store_friend_delete(s, a, d), 0);
    CHECK_EQ(store_friend_state(s, d, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_NONE);
    s = reopen(s);
    CHECK_EQ(store_friend_list(s, a, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 0 && ni == 0 && no == 0 && !f && !in && !out);
    CHECK_EQ(store_friend_state(s, c, d, &st), 0);   /* others untouched */
    CHECK_EQ(st, IY_FRIEND_OUTGOING);
    /* After a delete, a new request starts over. */
    CHECK_EQ(store_friend_put(s, b, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_OUTGOING);
    done(s);
}

static void test_share_and_presence(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    uint64_t d = mkuser(s, "dd");
    iy_stored r;
    CHECK_EQ(store_share_channel(s, a, b), 0);
    CHECK_EQ(send1(s, a, 0, b, "hi", "", &r), 0);
    CHECK_EQ(store_share_channel(s, a, b), 1);
    CHECK_EQ(store_share_channel(s, b, a), 1);
    uint64_t three[3] = { a, c, d };
    iy_channel g;
    CHECK_EQ(store_group_create(s, a, "g", three, 3, &g), 0);
    CHECK_EQ(store_share_channel(s, c, d), 1);
    CHECK_EQ(store_share_channel(s, d, a), 1);
    CHECK_EQ(store_share_channel(s, b, c), 0);
    CHECK_EQ(event1(s, d, g.id, IY_EV_MEMBER_REMOVED, d, "", &r), 0);
    CHECK_EQ(store_share_channel(s, c, d), 0);
    CHECK_EQ(store_share_channel(s, a, c), 1);
    CHECK_EQ(store_share_channel(s, a, 999), 0);

    int64_t ms = -1;
    CHECK_EQ(store_last_active_get(s, a, &ms), 0);
    CHECK_EQ(ms, 0);
    int64_t t = now_ms();
    CHECK_EQ(store_last_active_set(s, a, t), 0);
    CHECK_EQ(store_last_active_set(s, b, t - 5000), 0);
    CHECK_EQ(store_last_active_get(s, a, &ms), 0);
    CHECK_EQ(ms, t);
    s = reopen(s);
    CHECK_EQ(store_last_active_get(s, a, &ms), 0);
    CHECK_EQ(ms, t);
    CHECK_EQ(store_last_active_get(s, b, &ms), 0);
    CHECK_EQ(ms, t - 5000);
    CHECK_EQ(store_last_active_set(s, a, t + 1), 0);
    CHECK_EQ(store_last_active_get(s, a, &ms), 0);
    CHECK_EQ(ms, t + 1);
    done(s);
}

/* Throughput of the steady state: 2,000 established pairs among 1,000
 * users, 200 batches of 100 direct messages of 100 bytes, each with a cmid.
 * Printed, not asserted: the machine is shared. */
static void bench(void)
{
    store *s = fresh();
    enum { USERS = 1000, PAIRS = 2000, BATCHES = 200, PER = 100 };
    uint64_t *u = iy_malloc(USERS * sizeof *u);
    uint64_t (*pair)[2] = iy_malloc(PAIRS * sizeof *pair);
    char name[16], cmid[24], text[100];
    for (int i = 0; i < USERS; i++) {
        snprintf(name, sizeof name, "b%d", i);
        u[i] = mkuser(s, name);
    }
    memset(text, 'x', sizeof text);
    iy_stored *o = iy_malloc(sizeof *o);
    unsigned r = 12345;
    int errs = 0;
    store_batch *bt = store_batch_begin(s);
    for (int i = 0; i < PAIRS; i++) {       /* create the channels, untimed */
        r = r * 1103515245 + 12345;
        int x = (int)(r >> 8) % USERS, y = (x + 1 + (int)(r >> 20) % (USERS - 1)) % USERS;
        pair[i][0] = u[x];
        pair[i][1] = u[y];
        iy_send in = { u[x], 0, u[y], text, sizeof text, "", 0, 0 };
        if (store_batch_add(bt, &in, o) != 0) errs++;
    }
    if (store_batch_commit(bt) != 0) errs++;

    struct timespec t0, t1, t2, c0, c1;
    double secs = 0, commit_secs = 0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    for (int bi = 0; bi < BATCHES; bi++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        bt = store_batch_begin(s);
        for (int i = 0; i < PER; i++) {
            r = r * 1103515245 + 12345;
            int p = (int)(r >> 8) % PAIRS, way = (r >> 4) & 1;
            snprintf(cmid, sizeof cmid, "m%d", bi * PER + i);
            iy_send in = { pair[p][way], 0, pair[p][!way], text, sizeof text, cmid, 0, 0 };
            if (store_batch_add(bt, &in, o) != 0) errs++;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (store_batch_commit(bt) != 0) errs++;
        clock_gettime(CLOCK_MONOTONIC, &t2);
        secs += (double)(t2.tv_sec - t0.tv_sec) + (double)(t2.tv_nsec - t0.tv_nsec) / 1e9;
        commit_secs += (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    CHECK_EQ(errs, 0);
    CHECK_EQ(store_message_count(s), PAIRS + BATCHES * PER);
    printf("store bench: %d direct messages, %d batches: %.0f messages/s "
           "(%.0f%% of the time in commit; %.1f us CPU per message)\n", BATCHES * PER, BATCHES,
           BATCHES * PER / secs, 100 * commit_secs / secs, cpu * 1e6 / (BATCHES * PER));
    iy_free(o);
    iy_free(pair);
    iy_free(u);
    done(s);
}

int main(void)
{
    test_users();
    test_sessions();
    test_direct();
    test_cmid();
    test_rollback();
    test_ids();
    test_history_sync();
    test_groups();
    test_reopen_and_big();
    test_events();
    test_events_full();
    test_events_batch();
    test_failed_commit_caches();
    test_event_fields();
    test_read_state();
    test_friends();
    test_share_and_presence();
    bench();
    return T_DONE("store");
}
