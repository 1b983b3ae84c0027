/* test_store_reader.c — the store's readers (store.h, store_reader_*) on
 * every backend: the same answers as the storage thread's reads, committed
 * data only (an open, aborted or discarded round is invisible; a committed
 * one is seen whole), users, and consistent pages while another thread
 * commits (pthread). Runs on RocksDB, and on PostgreSQL when
 * IYAGI_TEST_PG_URL is set (store_fixture.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "t.h"
#include "base/alloc.h"
#include "base/err.h"
#include "store/store.h"
#include "store_fixture.h"

/* Same answers as the storage thread's functions; membership, sessions. */
static void test_basics(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "alice"), b = mkuser(s, "bob"), c = mkuser(s, "carol");
    store_reader *r = store_reader_new(s);

    uint8_t tok[32];
    memset(tok, 7, sizeof tok);
    uint64_t who = 0;
    char dev[IY_DEVICE_MAX + 1];
    CHECK_EQ(store_reader_session(r, tok, &who, dev), IY_ENOTFOUND);
    CHECK_EQ(store_session_create(s, tok, a, "laptop"), 0);
    CHECK_EQ(store_reader_session(r, tok, &who, dev), 0);
    CHECK_EQ(who, a);
    CHECK(strcmp(dev, "laptop") == 0);

    uint64_t pos = 99;
    CHECK_EQ(store_reader_user_pos(r, b, &pos), 0);
    CHECK_EQ(pos, 0);

    /* An open round is invisible to readers until it commits; an aborted
     * one never is. */
    iy_send in[5];
    char text[5][16];
    for (int i = 0; i < 5; i++) {
        snprintf(text[i], sizeof text[i], "m%d", i + 1);
        in[i] = (iy_send){ a, 0, b, text[i], strlen(text[i]), "", 0, 0, 0, 0, NULL, 0 };
    }
    iy_stored st;
    uint64_t ch = 0;
    iy_msg_list l = { 0 };
    int more = 0;
    for (int pass = 0; pass < 2; pass++) {
        store_round *rd = round_of(s, in, 5);
        for (int i = 0; i < 5; i++) {
            CHECK_EQ(post_send(rd, &in[i], &st), 0);
            CHECK_EQ(st.msg.seq, (uint64_t)i + 1);
        }
        ch = st.msg.channel;
        CHECK_EQ(store_reader_is_member(r, ch, a), IY_ENOTFOUND);
        CHECK_EQ(store_reader_history(r, ch, UINT64_MAX, 0, 10, &l), 0);
        CHECK_EQ(l.n, 0);
        iy_msg_list_clear(&l);
        CHECK_EQ(store_reader_sync(r, b, 0, 10, &l, &more), 0);
        CHECK_EQ(l.n, 0);
        iy_msg_list_clear(&l);
        CHECK_EQ(store_reader_user_pos(r, b, &pos), 0);
        CHECK_EQ(pos, 0);
        if (pass == 0) store_round_abort(rd);
        else CHECK_EQ(store_round_commit(rd), 0);
    }

    CHECK_EQ(store_reader_is_member(r, ch, a), 0);
    CHECK_EQ(store_reader_is_member(r, ch, b), 0);
    CHECK_EQ(store_reader_is_member(r, ch, c), IY_EFORBIDDEN);
    CHECK_EQ(store_reader_is_member(r, 12345, a), IY_ENOTFOUND);
    CHECK_EQ(store_reader_user_pos(r, b, &pos), 0);
    CHECK_EQ(pos, 5);

    /* History and sync equal the storage thread's answers. */
    iy_msg_list w = { 0 };
    uint64_t befores[] = { UINT64_MAX, 4, 1 };
    for (size_t k = 0; k < 3; k++) {
        CHECK_EQ(store_reader_history(r, ch, befores[k], 0, 3, &l), 0);
        CHECK_EQ(store_history(s, ch, befores[k], 0, 3, &w), 0);
        CHECK_EQ(l.n, w.n);
        for (size_t i = 0; i < l.n && i < w.n; i++) {
            CHECK_EQ(l.v[i].seq, w.v[i].seq);
            CHECK_EQ(l.v[i].id, w.v[i].id);
            CHECK(strcmp(l.v[i].text, w.v[i].text) == 0);
        }
        iy_msg_list_clear(&l);
        iy_msg_list_clear(&w);
    }
    CHECK_EQ(store_reader_history(r, ch, 0, 2, 10, &l), 0);
    CHECK_EQ(l.n, 3);
    if (l.n == 3) CHECK(l.v[0].seq == 3 && l.v[2].seq == 5 && strcmp(l.v[2].text, "m5") == 0);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_reader_sync(r, b, 1, 3, &l, &more), 0);
    CHECK_EQ(l.n, 3);
    CHECK_EQ(more, 1);
    if (l.n == 3) CHECK(l.v[0].pos == 2 && l.v[2].pos == 4 && l.v[2].seq == 4);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_reader_sync(r, b, 4, 10, &l, &more), 0);
    CHECK_EQ(l.n, 1);
    CHECK_EQ(more, 0);
    iy_msg_list_clear(&l);

    /* Group membership changes are seen once committed. */
    uint64_t mem[] = { b };
    iy_channel g;
    CHECK_EQ(mkgroup(s, a, "g", mem, 1, &g), 0);
    CHECK_EQ(store_reader_is_member(r, g.id, a), 0);
    CHECK_EQ(store_reader_is_member(r, g.id, c), IY_EFORBIDDEN);
    iy_send ev[2] = { { a, g.id, 0, "", 0, "", IY_EV_MEMBER_ADDED, c, 0, 0, NULL, 0 },
                      { c, g.id, 0, "in", 2, "", 0, 0, 0, 0, NULL, 0 } };
    store_round *rd = round_of(s, ev, 2);
    CHECK_EQ(post_send(rd, &ev[0], &st), 0);
    CHECK_EQ(post_send(rd, &ev[1], &st), 0);
    CHECK_EQ(store_reader_is_member(r, g.id, c), IY_EFORBIDDEN);
    CHECK_EQ(store_reader_user_pos(r, c, &pos), 0);
    CHECK_EQ(pos, 0);
    CHECK_EQ(store_round_commit(rd), 0);
    CHECK_EQ(store_reader_is_member(r, g.id, c), 0);
    CHECK_EQ(store_reader_user_pos(r, c, &pos), 0);
    CHECK_EQ(pos, 2);
    CHECK_EQ(store_reader_history(r, g.id, UINT64_MAX, 0, 10, &l), 0);
    CHECK_EQ(l.n, 2);
    if (l.n == 2) CHECK(l.v[0].seq == 2 && l.v[0].from == c && l.v[1].event == IY_EV_MEMBER_ADDED);
    iy_msg_list_clear(&l);

    /* Users: as store_user_get, committed changes included. */
    iy_user u, w2;
    memset(&u, 0, sizeof u);
    CHECK_EQ(store_reader_user_get(r, a, &u), 0);
    CHECK(u.id == a && strcmp(u.username, "alice") == 0 && strcmp(u.display_name, "alice") == 0);
    CHECK_EQ(store_reader_user_get(r, 424242, &u), IY_ENOTFOUND);
    CHECK_EQ(store_user_set_display_name(s, b, "Bob \xea\xb0\x80"), 0);
    CHECK_EQ(store_reader_user_get(r, b, &u), 0);
    CHECK_EQ(store_user_get(s, b, &w2), 0);
    CHECK(u.id == b && strcmp(u.username, "bob") == 0 && strcmp(u.display_name, "Bob \xea\xb0\x80") == 0);
    CHECK(strcmp(u.display_name, w2.display_name) == 0 && strcmp(u.username, w2.username) == 0);
    iy_user d;
    CHECK_EQ(store_user_create(s, "dave", "Dave", "$h", &d), 0);
    CHECK_EQ(store_reader_user_get(r, d.id, &u), 0);
    CHECK(u.id == d.id && strcmp(u.username, "dave") == 0 && strcmp(u.display_name, "Dave") == 0);

    /* Sessions deleted are gone for readers too. */
    CHECK_EQ(store_session_delete(s, tok), 0);
    CHECK_EQ(store_reader_session(r, tok, &who, dev), IY_ENOTFOUND);

    store_reader_free(r);
    store_reader_free(NULL);
    done(s);
}

/* ---- concurrent: one thread commits, readers page meanwhile ---- */

#define ROUNDS 300
#define PER_ROUND 7      /* a round is all-or-nothing: a reader's newest seq is a multiple */

typedef struct rctx {
    store *s;
    uint64_t ch, reader_user;
    atomic_int *stop;
    int bad;              /* inconsistencies seen (CHECK is not thread-safe) */
    long pages;
} rctx;

static int text_ok(const iy_msg *m)
{
    char t[32];
    snprintf(t, sizeof t, "m%llu", (unsigned long long)m->seq);
    return m->text && strcmp(m->text, t) == 0;
}

static void *reader_main(void *arg)
{
    rctx *x = arg;
    store_reader *r = store_reader_new(x->s);
    uint64_t newest_seen = 0, newest_pos = 0;
    for (unsigned iter = 0; !atomic_load(x->stop) || iter < 3; iter++) {
        iy_msg_list l = { 0 };
        int more = 0;
        /* Newest first: consecutive seqs going down, whole rounds only,
         * never older than a page seen before. */
        if (store_reader_history(r, x->ch, UINT64_MAX, 0, 50, &l) != 0) x->bad++;
        for (size_t i = 0; i < l.n; i++) {
            if (i && l.v[i].seq != l.v[i - 1].seq - 1) x->bad++;
            if (!text_ok(&l.v[i])) x->bad++;
        }
        if (l.n) {
            uint64_t top = l.v[0].seq;
            if (top % PER_ROUND != 0 || top < newest_seen) x->bad++;
            newest_seen = top;
        }
        iy_msg_list_clear(&l);
        /* Oldest first from a point: strictly increasing, no gaps. */
        uint64_t from = newest_seen > 60 ? newest_seen - 60 : 0;
        if (store_reader_history(r, x->ch, 0, from, 40, &l) != 0) x->bad++;
        for (size_t i = 0; i < l.n; i++) {
            if (l.v[i].seq != from + 1 + i) x->bad++;
            if (!text_ok(&l.v[i])) x->bad++;
        }
        iy_msg_list_clear(&l);
        /* The inbox: pos strictly increasing by one, each entry its message. */
        uint64_t after = newest_pos > 30 ? newest_pos - 30 : 0;
        if (store_reader_sync(r, x->reader_user, after, 25, &l, &more) != 0) x->bad++;
        for (size_t i = 0; i < l.n; i++) {
            if (l.v[i].pos != after + 1 + i) x->bad++;
            if (l.v[i].channel != x->ch || !text_ok(&l.v[i])) x->bad++;
        }
        if (l.n && l.v[l.n - 1].pos > newest_pos) newest_pos = l.v[l.n - 1].pos;
        iy_msg_list_clear(&l);
        uint64_t pos = 0;
        if (store_reader_user_pos(r, x->reader_user, &pos) != 0 || pos % PER_ROUND != 0) x->bad++;
        if (store_reader_is_member(r, x->ch, x->reader_user) != 0) x->bad++;
        x->pages += 3;
    }
    store_reader_free(r);
    return NULL;
}

/* One round of PER_ROUND messages from a: to b (the first round creates
 * their channel) or to channel ch; texts "m<seq>". Returns the channel. */
static uint64_t commit_round(store *s, uint64_t a, uint64_t b, uint64_t ch, uint64_t *seq)
{
    iy_send in[PER_ROUND];
    char t[PER_ROUND][32];
    iy_stored st;
    memset(&st, 0, sizeof st);
    for (int i = 0; i < PER_ROUND; i++) {
        snprintf(t[i], sizeof t[i], "m%llu", (unsigned long long)++*seq);
        in[i] = (iy_send){ a, ch, ch ? 0 : b, t[i], strlen(t[i]), "", 0, 0, 0, 0, NULL, 0 };
    }
    store_round *r = round_of(s, in, PER_ROUND);
    if (!r) return ch;
    int ok = 1;
    for (int i = 0; i < PER_ROUND; i++) {
        if (post_send(r, &in[i], &st) != 0) ok = 0;
        else if (st.msg.seq != *seq - PER_ROUND + 1 + (uint64_t)i) ok = 0;
    }
    CHECK(ok);
    CHECK_EQ(store_round_commit(r), 0);
    return st.msg.channel;
}

static void test_concurrent(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "alice"), b = mkuser(s, "bob");
    /* The first round creates the channel before the readers start. */
    uint64_t seq = 0;
    uint64_t ch = commit_round(s, a, b, 0, &seq);

    atomic_int stop;
    atomic_init(&stop, 0);
    rctx x[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        x[i] = (rctx){ s, ch, b, &stop, 0, 0 };
        CHECK_EQ(pthread_create(&th[i], NULL, reader_main, &x[i]), 0);
    }
    /* The storage thread's work meanwhile: rounds, plus its own reads. */
    for (int k = 1; k < ROUNDS; k++) {
        commit_round(s, a, b, ch, &seq);
        iy_msg_list l = { 0 };
        CHECK_EQ(store_history(s, ch, UINT64_MAX, 0, 5, &l), 0);
        CHECK(l.n == 5 && l.v[0].seq == seq);
        iy_msg_list_clear(&l);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(x[i].bad, 0);
        CHECK(x[i].pages > 0);
    }

    /* Afterwards a reader sees everything. */
    store_reader *r = store_reader_new(s);
    uint64_t pos = 0;
    CHECK_EQ(store_reader_user_pos(r, b, &pos), 0);
    CHECK_EQ(pos, (uint64_t)ROUNDS * PER_ROUND);
    iy_msg_list l = { 0 };
    CHECK_EQ(store_reader_history(r, ch, UINT64_MAX, 0, 1, &l), 0);
    CHECK(l.n == 1 && l.v[0].seq == (uint64_t)ROUNDS * PER_ROUND);
    iy_msg_list_clear(&l);
    store_reader_free(r);
    done(s);
}

static void suite(void)
{
    test_basics();
    test_concurrent();
}

int main(void)
{
    return fx_run("store_reader", suite);
}
