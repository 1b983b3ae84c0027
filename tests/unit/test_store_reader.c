/* test_store_reader.c — the store's readers (store.h, store_reader_*):
 * the same answers as the storage thread's reads, committed data only, and
 * consistent pages while another thread commits (pthread). */
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

    /* An open batch is invisible to readers until it commits. */
    store_batch *bt = store_batch_begin(s);
    iy_stored st;
    uint64_t ch = 0;
    for (int i = 0; i < 5; i++) {
        char t[16];
        snprintf(t, sizeof t, "m%d", i + 1);
        iy_send in = { a, ch, ch ? 0 : b, t, strlen(t), "", 0, 0 };
        CHECK_EQ(store_batch_add(bt, &in, &st), 0);
        ch = st.msg.channel;
    }
    iy_msg_list l = { 0 };
    int more = 0;
    CHECK_EQ(store_reader_is_member(r, ch, a), IY_ENOTFOUND);
    CHECK_EQ(store_reader_history(r, ch, UINT64_MAX, 0, 10, &l), 0);
    CHECK_EQ(l.n, 0);
    CHECK_EQ(store_reader_sync(r, b, 0, 10, &l, &more), 0);
    CHECK_EQ(l.n, 0);
    CHECK_EQ(store_batch_commit(bt), 0);

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
    uint64_t mem[] = { a, b };
    iy_channel g;
    CHECK_EQ(store_group_create(s, a, "g", mem, 2, &g), 0);
    CHECK_EQ(store_reader_is_member(r, g.id, c), IY_EFORBIDDEN);
    bt = store_batch_begin(s);
    iy_send ev = { a, g.id, 0, "", 0, "", IY_EV_MEMBER_ADDED, c };
    CHECK_EQ(store_batch_add(bt, &ev, &st), 0);
    CHECK_EQ(store_reader_is_member(r, g.id, c), IY_EFORBIDDEN);
    CHECK_EQ(store_batch_commit(bt), 0);
    CHECK_EQ(store_reader_is_member(r, g.id, c), 0);

    store_reader_free(r);
    store_reader_free(NULL);
    done(s);
}

/* ---- concurrent: one thread commits, readers page meanwhile ---- */

#define BATCHES 300
#define PER_BATCH 7      /* a batch is all-or-nothing: a reader's newest seq is a multiple */

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
        /* Newest first: consecutive seqs going down, whole batches only,
         * never older than a page seen before. */
        if (store_reader_history(r, x->ch, UINT64_MAX, 0, 50, &l) != 0) x->bad++;
        for (size_t i = 0; i < l.n; i++) {
            if (i && l.v[i].seq != l.v[i - 1].seq - 1) x->bad++;
            if (!text_ok(&l.v[i])) x->bad++;
        }
        if (l.n) {
            uint64_t top = l.v[0].seq;
            if (top % PER_BATCH != 0 || top < newest_seen) x->bad++;
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
        if (store_reader_user_pos(r, x->reader_user, &pos) != 0 || pos % PER_BATCH != 0) x->bad++;
        if (store_reader_is_member(r, x->ch, x->reader_user) != 0) x->bad++;
        x->pages += 3;
    }
    store_reader_free(r);
    return NULL;
}

static void test_concurrent(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "alice"), b = mkuser(s, "bob");
    iy_stored st;
    /* The first batch creates the channel before the readers start. */
    uint64_t ch = 0;
    uint64_t seq = 0;
    store_batch *bt = store_batch_begin(s);
    for (int i = 0; i < PER_BATCH; i++) {
        char t[32];
        snprintf(t, sizeof t, "m%llu", (unsigned long long)++seq);
        iy_send in = { a, ch, ch ? 0 : b, t, strlen(t), "", 0, 0 };
        CHECK_EQ(store_batch_add(bt, &in, &st), 0);
        ch = st.msg.channel;
    }
    CHECK_EQ(store_batch_commit(bt), 0);

    atomic_int stop;
    atomic_init(&stop, 0);
    rctx x[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        x[i] = (rctx){ s, ch, b, &stop, 0, 0 };
        CHECK_EQ(pthread_create(&th[i], NULL, reader_main, &x[i]), 0);
    }
    /* The storage thread's work meanwhile: batches, plus its own reads. */
    for (int k = 1; k < BATCHES; k++) {
        bt = store_batch_begin(s);
        for (int i = 0; i < PER_BATCH; i++) {
            char t[32];
            snprintf(t, sizeof t, "m%llu", (unsigned long long)++seq);
            iy_send in = { a, ch, 0, t, strlen(t), "", 0, 0 };
            CHECK_EQ(store_batch_add(bt, &in, &st), 0);
        }
        CHECK_EQ(store_batch_commit(bt), 0);
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
    CHECK_EQ(pos, (uint64_t)BATCHES * PER_BATCH);
    iy_msg_list l = { 0 };
    CHECK_EQ(store_reader_history(r, ch, UINT64_MAX, 0, 1, &l), 0);
    CHECK(l.n == 1 && l.v[0].seq == (uint64_t)BATCHES * PER_BATCH);
    iy_msg_list_clear(&l);
    store_reader_free(r);
    done(s);
}

int main(void)
{
    test_basics();
    test_concurrent();
    return T_DONE("store_reader");
}
