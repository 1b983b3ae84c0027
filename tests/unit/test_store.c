/* test_store.c — the store contract (store.h) on every backend: users,
 * sessions, settings, ids and node numbers, channels and groups, commit
 * rounds (seq/pos assignment, direct channels, cmid idempotency, several
 * sends per round seeing each other, abort, failed commits), membership
 * events, read state, friends (compare-and-set), presence persistence,
 * history and sync, reopen, the data-format check, and a throughput print.
 *
 * Sends go through post_send on a round (chat/post.h), the rules the server
 * applies; rules that moved out of the store (group members, read-state
 * clamping, friend acceptance) are applied here as the API does. Every test
 * runs on RocksDB, and on PostgreSQL when IYAGI_TEST_PG_URL is set
 * (store_fixture.h); the few that only mean something on one backend say so. */
#include <rocksdb/c.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "t.h"
#include "base/alloc.h"
#include "base/err.h"
#include "store/store.h"
#include "store_fixture.h"
#include "store/rocks/rocks_int.h"   /* store_rocks_fail_next_commit */

/* ---- helpers ---------------------------------------------------------------- */

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

/* How many channels user belongs to. */
static size_t nchannels(store *s, uint64_t user)
{
    uint64_t *chs = NULL;
    size_t n = 0;
    CHECK_EQ(store_user_channels(s, user, &chs, &n), 0);
    iy_free(chs);
    return n;
}

/* The newest seq of a channel (0 if it has no message). */
static uint64_t last_seq(store *s, uint64_t ch)
{
    iy_msg m;
    memset(&m, 0, sizeof m);
    int rc = store_channel_last(s, ch, &m);
    uint64_t seq = rc == 0 ? m.seq : 0;
    if (rc != 0) CHECK_EQ(rc, IY_ENOTFOUND);
    iy_msg_clear(&m);
    return seq;
}

static uint64_t user_pos(store *s, uint64_t user)
{
    uint64_t p = 12345;
    CHECK_EQ(store_user_pos(s, user, &p), 0);
    return p;
}

/* ---- users, sessions, settings, ids ------------------------------------------- */

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

    /* A user's sessions: listed oldest first with device and date, gone
     * from the list when deleted, others' never in it. */
    uint8_t h3[32], h4[32];
    memset(h3, 0x33, sizeof h3);
    memset(h4, 0x11, sizeof h4);   /* sorts before h3 by hash, made after it */
    CHECK_EQ(store_session_create(s, h3, 43, "laptop"), 0);
    usleep(2000);
    CHECK_EQ(store_session_create(s, h4, 43, "tablet"), 0);
    iy_session_info *l;
    size_t n;
    CHECK_EQ(store_session_list(s, 43, &l, &n), 0);
    CHECK_EQ(n, 3);
    if (n == 3) {
        CHECK(memcmp(l[0].hash, h2, 32) == 0 && strcmp(l[0].device, "") == 0);
        CHECK(memcmp(l[1].hash, h3, 32) == 0 && strcmp(l[1].device, "laptop") == 0);
        CHECK(memcmp(l[2].hash, h4, 32) == 0 && strcmp(l[2].device, "tablet") == 0);
        CHECK(l[0].created_ms > 1700000000000LL && l[1].created_ms <= l[2].created_ms);
    }
    iy_free(l);
    CHECK_EQ(store_session_delete(s, h3), 0);
    s = reopen(s);
    CHECK_EQ(store_session_list(s, 43, &l, &n), 0);
    CHECK(n == 2 && memcmp(l[0].hash, h2, 32) == 0 && memcmp(l[1].hash, h4, 32) == 0);
    iy_free(l);
    CHECK_EQ(store_session_list(s, 42, &l, &n), 0);
    CHECK(n == 0 && l == NULL);
    done(s);
}

/* A new password hash replaces the old one; the rest of the user stays. */
static void test_password(void)
{
    store *s = fresh();
    iy_user u, g;
    char hash[256];
    CHECK_EQ(store_user_create(s, "pw_user", "Pat", "$argon2id$old", &u), 0);
    CHECK_EQ(store_user_set_password(s, u.id, "$argon2id$new"), 0);
    CHECK_EQ(store_user_set_password(s, 999, "$argon2id$x"), IY_ENOTFOUND);
    s = reopen(s);
    CHECK_EQ(store_user_find(s, "pw_user", &g, hash), 0);
    CHECK(strcmp(hash, "$argon2id$new") == 0 && g.id == u.id && strcmp(g.display_name, "Pat") == 0);

    /* A deleted user: not found by id or name, its name free again; sends
     * to it answer not found, but the channels it was in go on. */
    uint64_t b = mkuser(s, "bb"), c = mkuser(s, "cc");
    iy_channel gr;
    uint64_t mem[3] = { b, c, u.id };   /* ascending, the owner among them */
    for (int i = 1; i < 3; i++)
        for (int j = i; j > 0 && mem[j - 1] > mem[j]; j--) {
            uint64_t t = mem[j];
            mem[j] = mem[j - 1];
            mem[j - 1] = t;
        }
    CHECK_EQ(store_group_create(s, c, "with pat", mem, 3, &gr), 0);
    iy_stored o;
    CHECK_EQ(send1(s, b, 0, u.id, "hi pat", "d-1", &o), 0);
    uint64_t direct = o.msg.channel;
    CHECK_EQ(store_user_delete(s, u.id), 0);
    CHECK_EQ(store_user_delete(s, u.id), IY_ENOTFOUND);
    CHECK_EQ(store_user_get(s, u.id, &g), IY_ENOTFOUND);
    CHECK_EQ(store_user_find(s, "pw_user", &g, hash), IY_ENOTFOUND);
    s = reopen(s);
    CHECK_EQ(store_user_get(s, u.id, &g), IY_ENOTFOUND);
    CHECK_EQ(send1(s, c, 0, u.id, "hello?", "d-2", &o), IY_ENOTFOUND);
    CHECK_EQ(send1(s, c, gr.id, 0, "to the group", "d-3", &o), 0);
    CHECK_EQ(o.nmembers, 3);
    CHECK_EQ(send1(s, b, direct, 0, "into the void", "d-4", &o), 0);
    iy_user again;
    CHECK_EQ(store_user_create(s, "pw_user", "New Pat", "$argon2id$x", &again), 0);
    CHECK(again.id != u.id);
    done(s);
}

/* Settings: the first value stored wins; a later put_once gets the stored one. */
static void test_settings(void)
{
    store *s = fresh();
    char *v = NULL;
    size_t vl = 99;
    CHECK_EQ(store_setting_get(s, "vapid", &v, &vl), IY_ENOTFOUND);
    CHECK_EQ(store_setting_put_once(s, "vapid", "first\0key", 9, &v, &vl), 0);
    CHECK_MEM(v, vl, "first\0key");                   /* a blob: NUL bytes kept */
    CHECK(v && v[vl] == '\0');
    iy_free(v);
    v = NULL;
    CHECK_EQ(store_setting_put_once(s, "vapid", "second", 6, &v, &vl), 0);
    CHECK_MEM(v, vl, "first\0key");                   /* the stored one, not ours */
    iy_free(v);
    v = NULL;
    CHECK_EQ(store_setting_get(s, "vapid", &v, &vl), 0);
    CHECK_MEM(v, vl, "first\0key");
    iy_free(v);
    v = NULL;
    /* Names are independent; an empty value is a value. */
    CHECK_EQ(store_setting_put_once(s, "other", "x", 1, &v, &vl), 0);
    CHECK_MEM(v, vl, "x");
    iy_free(v);
    v = NULL;
    CHECK_EQ(store_setting_put_once(s, "empty", "", 0, &v, &vl), 0);
    CHECK_EQ(vl, 0);
    CHECK(v && v[0] == '\0');
    iy_free(v);
    v = NULL;
    CHECK_EQ(store_setting_put_once(s, "empty", "late", 4, &v, &vl), 0);
    CHECK_EQ(vl, 0);
    iy_free(v);
    v = NULL;

    s = reopen(s);
    CHECK_EQ(store_setting_get(s, "vapid", &v, &vl), 0);
    CHECK_MEM(v, vl, "first\0key");
    iy_free(v);
    v = NULL;
    CHECK_EQ(store_setting_put_once(s, "vapid", "third", 5, &v, &vl), 0);
    CHECK_MEM(v, vl, "first\0key");
    iy_free(v);
    v = NULL;
    CHECK_EQ(store_setting_get(s, "other", &v, &vl), 0);
    CHECK_MEM(v, vl, "x");
    iy_free(v);
    v = NULL;
    CHECK_EQ(store_setting_get(s, "missing", &v, &vl), IY_ENOTFOUND);
    done(s);
}

static void test_ids(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb");
    enum { N = 5000 };   /* > 4096 per ms possible: counter overflow */
    iy_send *in = iy_malloc(N * sizeof *in);
    for (int i = 0; i < N; i++) in[i] = (iy_send){ a, 0, b, "x", 1, "", 0, 0, 0, 0, NULL, 0 };
    iy_stored *o = iy_malloc(sizeof *o);
    uint64_t last = b;
    int ok_inc = 1, ok_ts = 1, ok_add = 1, ok_seq = 1;
    for (int pass = 0; pass < 2; pass++) {
        store_round *r = round_of(s, in, N);
        if (!r) break;
        for (int i = 0; i < N; i++) {
            int64_t t0 = now_ms();
            if (post_send(r, &in[i], o) != 0) ok_add = 0;
            int64_t t1 = now_ms();
            if (o->msg.id <= last) ok_inc = 0;
            if (o->msg.seq != (uint64_t)pass * N + (uint64_t)i + 1) ok_seq = 0;
            last = o->msg.id;
            /* ts follows the id; a borrowed ms may run up to a few ms ahead. */
            if (o->msg.ts != (int64_t)(o->msg.id >> 22) + IY_ID_EPOCH_MS) ok_ts = 0;
            if (o->msg.ts < t0 - 1 || o->msg.ts > t1 + 50) ok_ts = 0;
        }
        CHECK_EQ(store_round_count(r), N);
        CHECK_EQ(store_round_commit(r), 0);
        s = reopen(s);
    }
    CHECK(ok_add);
    CHECK(ok_inc);
    CHECK(ok_ts);
    CHECK(ok_seq);
    /* After reopen ids continue above the persisted newest one, with this node's number. */
    iy_user u;
    CHECK_EQ(store_user_create(s, "cc", "", "$h", &u), 0);
    CHECK(u.id > last);
    CHECK_EQ((u.id >> 12) & 0x3ff, store_node(s));
    CHECK(store_node(s) <= IY_NODE_MAX);
    uint64_t x = store_new_id(s), y = store_new_id(s);
    CHECK(x > u.id && y > x);
    CHECK_EQ((y >> 12) & 0x3ff, store_node(s));
    iy_free(o);
    iy_free(in);

    if (fx_is_rocks()) {
        /* One node owns an embedded store: node 0, and the directory is locked. */
        CHECK_EQ(store_node(s), 0);
        store *two = (store *)1;
        CHECK_EQ(fx_open("other", &two), IY_EIO);
        CHECK(two == NULL);
    } else {
        /* A second node on the same database claims another number. */
        store *two = NULL;
        CHECK_EQ(fx_open("unit-two", &two), 0);
        if (two) {
            CHECK(store_node(two) != store_node(s));
            CHECK_EQ(store_user_create(two, "dd", "", "$h", &u), 0);
            CHECK_EQ((u.id >> 12) & 0x3ff, store_node(two));
            CHECK_EQ(store_user_get(s, u.id, &u), 0);   /* one shared store */
        }
        store_free(two);
    }
    done(s);

    /* Nothing to open: not a directory / nobody listening. */
    store *bad = (store *)1;
    if (fx_is_rocks()) {
        char file[] = "/tmp/iyagi_notadir_XXXXXX";
        int fd = mkstemp(file);
        CHECK(fd >= 0);
        if (fd >= 0) close(fd);
        store_config cfg = { file, FX_NODE, 1, 0, 0 };
        CHECK_EQ(store_open(&cfg, &bad), IY_EIO);
        unlink(file);
    } else {
        store_config cfg = { "postgresql://postgres@127.0.0.1:1/iyagi?connect_timeout=2", FX_NODE, 1, 0, 0 };
        CHECK_EQ(store_open(&cfg, &bad), IY_EUNAVAIL);
    }
    CHECK(bad == NULL);
}

static int change1(store *s, uint64_t from, int event, uint64_t id, const char *text, iy_stored *out);

/* ---- the data format (RocksDB) -------------------------------------------------- */

/* The data directory's database, opened with librocksdb directly. */
static rocksdb_t *raw_open(const char *dir, rocksdb_options_t **opt)
{
    char path[600], *err = NULL;
    snprintf(path, sizeof path, "%s/db", dir);
    *opt = rocksdb_options_create();
    rocksdb_t *db = rocksdb_open(*opt, path, &err);
    if (err) {
        fprintf(stderr, "raw_open: %s\n", err);
        rocksdb_free(err);
    }
    return db;
}

static void raw_close(rocksdb_t *db, rocksdb_options_t *opt)
{
    if (db) rocksdb_close(db);
    rocksdb_options_destroy(opt);
}

/* The 'V' record: its bytes into v (at most 8), their number, or -1 if absent. */
static int raw_get_v(const char *dir, uint8_t v[8])
{
    rocksdb_options_t *opt;
    rocksdb_t *db = raw_open(dir, &opt);
    int n = -2;
    if (db) {
        rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
        char *err = NULL, *val;
        size_t vl = 0;
        val = rocksdb_get(db, ro, "V", 1, &vl, &err);
        n = err ? -2 : val ? (int)(vl < 8 ? vl : 8) : -1;
        if (val) memcpy(v, val, (size_t)n);
        rocksdb_free(val);
        rocksdb_free(err);
        rocksdb_readoptions_destroy(ro);
    }
    raw_close(db, opt);
    return n;
}

/* Puts the 'V' record (len bytes of v), or deletes it (v NULL). 0 or -1. */
static int raw_put_v(const char *dir, const uint8_t *v, size_t len)
{
    rocksdb_options_t *opt;
    rocksdb_t *db = raw_open(dir, &opt);
    int rc = -1;
    if (db) {
        rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
        rocksdb_writeoptions_set_sync(wo, 1);
        char *err = NULL;
        if (v) rocksdb_put(db, wo, "V", 1, (const char *)v, len, &err);
        else rocksdb_delete(db, wo, "V", 1, &err);
        rc = err ? -1 : 0;
        rocksdb_free(err);
        rocksdb_writeoptions_destroy(wo);
    }
    raw_close(db, opt);
    return rc;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t x)
{
    p[0] = (uint8_t)(x >> 24);
    p[1] = (uint8_t)(x >> 16);
    p[2] = (uint8_t)(x >> 8);
    p[3] = (uint8_t)x;
}

/* A data directory records its format version ('V', 4 bytes big-endian);
 * store_open refuses a newer one (and leaves it alone), upgrades an older
 * one (version 1 had no 'V' record), and refuses a corrupt one. */
static void test_format_version(void)
{
    if (!fx_is_rocks()) {
        fx_skip("test_format_version", "RocksDB only: a data directory's 'V' record; "
                "test_store_pg checks the schema version");
        return;
    }
    store *s = fresh();
    uint64_t a = mkuser(s, "aa");
    store_free(s);
    s = NULL;

    uint8_t v[8];
    CHECK_EQ(raw_get_v(fx_where, v), 4);
    uint32_t cur = be32(v);
    CHECK(cur >= 2);                                 /* 1 is the layout without 'V' */

    /* Newer than this binary: refused, and not rewritten. */
    uint32_t newer[2] = { cur + 1, UINT32_MAX };
    for (int i = 0; i < 2; i++) {
        put_be32(v, newer[i]);
        CHECK_EQ(raw_put_v(fx_where, v, 4), 0);
        s = (store *)1;
        CHECK_EQ(fx_open(FX_NODE, &s), IY_EIO);
        CHECK(s == NULL);
        memset(v, 0, sizeof v);
        CHECK_EQ(raw_get_v(fx_where, v), 4);
        CHECK_EQ(be32(v), newer[i]);
    }
    /* Corrupt (not 4 bytes, or 0): refused. */
    CHECK_EQ(raw_put_v(fx_where, (const uint8_t *)"\0\0\2", 3), 0);
    s = (store *)1;
    CHECK_EQ(fx_open(FX_NODE, &s), IY_EIO);
    CHECK(s == NULL);
    CHECK_EQ(raw_put_v(fx_where, (const uint8_t *)"\0\0\0\0", 4), 0);
    CHECK_EQ(fx_open(FX_NODE, &s), IY_EIO);
    CHECK(s == NULL);

    /* The current version opens, data intact. */
    put_be32(v, cur);
    CHECK_EQ(raw_put_v(fx_where, v, 4), 0);
    CHECK_EQ(fx_open(FX_NODE, &s), 0);
    iy_user u;
    if (s) CHECK_EQ(store_user_get(s, a, &u), 0);
    store_free(s);
    s = NULL;

    /* Version 2 (sessions without the user index 'z'): the index is built. */
    s = NULL;
    CHECK_EQ(fx_open(FX_NODE, &s), 0);
    uint8_t th[32];
    memset(th, 0x5a, sizeof th);
    if (s) CHECK_EQ(store_session_create(s, th, a, "old"), 0);
    store_free(s);
    s = NULL;
    {
        rocksdb_options_t *opt;
        rocksdb_t *db = raw_open(fx_where, &opt);
        uint8_t zk[41];
        zk[0] = 'z';
        for (int i = 0; i < 8; i++) zk[1 + i] = (uint8_t)(a >> (56 - 8 * i));
        memcpy(zk + 9, th, 32);
        rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
        char *err = NULL;
        if (db) rocksdb_delete(db, wo, (const char *)zk, 41, &err);
        CHECK(err == NULL);
        rocksdb_free(err);
        rocksdb_writeoptions_destroy(wo);
        raw_close(db, opt);
    }
    put_be32(v, 2);
    CHECK_EQ(raw_put_v(fx_where, v, 4), 0);
    CHECK_EQ(fx_open(FX_NODE, &s), 0);
    iy_session_info *sl = NULL;
    size_t nsl = 0;
    if (s) CHECK_EQ(store_session_list(s, a, &sl, &nsl), 0);
    CHECK(nsl == 1 && sl && memcmp(sl[0].hash, th, 32) == 0 && sl[0].created_ms == 0 && strcmp(sl[0].device, "old") == 0);
    iy_free(sl);
    store_free(s);
    s = NULL;
    CHECK_EQ(raw_get_v(fx_where, v), 4);
    CHECK_EQ(be32(v), cur);

    /* Version 3 (messages without the by-id index 'i'): the index is built,
     * so an older message can be edited. */
    uint64_t b = 0, mid = 0;
    CHECK_EQ(fx_open(FX_NODE, &s), 0);
    if (s) {
        iy_stored o;
        b = mkuser(s, "bb");
        CHECK_EQ(send1(s, a, 0, b, "before 4", "v3-1", &o), 0);
        mid = o.msg.id;
    }
    store_free(s);
    s = NULL;
    {
        rocksdb_options_t *opt;
        rocksdb_t *db = raw_open(fx_where, &opt);
        uint8_t ik[9];
        ik[0] = 'i';
        for (int i = 0; i < 8; i++) ik[1 + i] = (uint8_t)(mid >> (56 - 8 * i));
        rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
        char *err = NULL;
        if (db) rocksdb_delete(db, wo, (const char *)ik, 9, &err);
        CHECK(err == NULL);
        rocksdb_free(err);
        rocksdb_writeoptions_destroy(wo);
        raw_close(db, opt);
    }
    CHECK_EQ(fx_open(FX_NODE, &s), 0);
    if (s) {
        iy_stored e;
        CHECK_EQ(change1(s, a, IY_EV_EDITED, mid, "not found without the index", &e), IY_ENOTFOUND);
    }
    store_free(s);
    s = NULL;
    put_be32(v, 3);
    CHECK_EQ(raw_put_v(fx_where, v, 4), 0);
    CHECK_EQ(fx_open(FX_NODE, &s), 0);
    if (s) {
        iy_stored e;
        CHECK_EQ(change1(s, a, IY_EV_EDITED, mid, "after 4", &e), 0);
    }
    store_free(s);
    s = NULL;

    /* Version 1 (no 'V'): opened and upgraded to the current version. */
    CHECK_EQ(raw_put_v(fx_where, NULL, 0), 0);
    CHECK_EQ(raw_get_v(fx_where, v), -1);
    CHECK_EQ(fx_open(FX_NODE, &s), 0);
    if (s) CHECK_EQ(store_user_get(s, a, &u), 0);
    store_free(s);
    s = NULL;
    memset(v, 0, sizeof v);
    CHECK_EQ(raw_get_v(fx_where, v), 4);
    CHECK_EQ(be32(v), cur);
    fx_remove();
}

/* ---- direct channels ----------------------------------------------------------- */

static void test_direct(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    iy_stored o;
    uint64_t ch;

    CHECK_EQ(store_share_channel(s, a, b), 0);
    CHECK_EQ(send1(s, a, 0, b, "hi", "", &o), 0);
    ch = o.msg.channel;
    CHECK(ch != 0);
    CHECK_EQ(o.msg.seq, 1);
    CHECK_EQ(o.msg.pos, 1);
    CHECK_EQ(o.nmembers, 2);
    CHECK(o.members[0] == a && o.members[1] == b);
    CHECK(o.pos[0] == 1 && o.pos[1] == 1);
    CHECK(o.msg.text == NULL);
    CHECK_EQ(o.owner, 0);
    CHECK_EQ(store_share_channel(s, b, a), 1);
    CHECK(has_channel(s, a, ch) && has_channel(s, b, ch));

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

    CHECK_EQ(user_pos(s, a), 4);
    CHECK_EQ(user_pos(s, b), 3);
    CHECK_EQ(user_pos(s, 5555), 0);   /* no inbox yet */

    iy_channel cc;
    CHECK_EQ(store_channel_get(s, ch, &cc), 0);
    CHECK_EQ(cc.kind, IY_DIRECT);
    CHECK_EQ(cc.nmembers, 2);
    CHECK(cc.id == ch && cc.members[0] == a && cc.members[1] == b && cc.owner == 0 && cc.name[0] == '\0');

    /* Refused by the rules: nothing stored. */
    CHECK_EQ(send1(s, a, 0, a, "self", "", &o), IY_EINVAL);
    CHECK_EQ(send1(s, a, ch, b, "both", "", &o), IY_EINVAL);
    CHECK_EQ(send1(s, a, 0, 0, "neither", "", &o), IY_EINVAL);
    CHECK_EQ(send1(s, a, 0, 777, "nobody", "", &o), IY_ENOTFOUND);
    CHECK_EQ(send1(s, c, ch, 0, "intruder", "", &o), IY_EFORBIDDEN);
    CHECK_EQ(send1(s, a, 888, 0, "no channel", "", &o), IY_ENOTFOUND);
    CHECK_EQ(store_message_count(s), 4);
    CHECK_EQ(store_share_channel(s, a, 777), 0);
    CHECK_EQ(nchannels(s, a), 2);
    CHECK_EQ(last_seq(s, ch), 3);

    /* One round, a new pair: the first send creates the channel, the later
     * ones (either direction) find it in the round's view: created once. */
    uint64_t d = mkuser(s, "dd");
    iy_send in[3] = { { b, 0, d, "x", 1, "", 0, 0, 0, 0, NULL, 0 }, { d, 0, b, "y", 1, "", 0, 0, 0, 0, NULL, 0 },
                      { b, 0, d, "z", 1, "", 0, 0, 0, 0, NULL, 0 } };
    iy_stored out[3];
    int rc[3];
    store_round *r = round_of(s, in, 3);
    uint64_t found = 0;
    CHECK_EQ(store_round_direct(r, b, d, &found), IY_ENOTFOUND);
    post_all(r, in, 3, rc, out);
    CHECK(rc[0] == 0 && rc[1] == 0 && rc[2] == 0);
    CHECK(out[0].msg.channel == out[1].msg.channel && out[1].msg.channel == out[2].msg.channel);
    CHECK(out[0].msg.seq == 1 && out[1].msg.seq == 2 && out[2].msg.seq == 3);
    CHECK(out[0].members[0] == b && out[0].members[1] == d);
    CHECK(out[0].pos[0] == 4 && out[0].pos[1] == 1 && out[1].pos[0] == 5 && out[1].pos[1] == 2);
    CHECK(out[2].pos[0] == 6 && out[2].pos[1] == 3 && out[1].msg.pos == 2 && out[2].msg.pos == 6);
    CHECK_EQ(store_round_direct(r, b, d, &found), 0);
    CHECK(found == out[0].msg.channel);
    const iy_channel *rv = store_round_channel(r, found);
    CHECK(rv && rv->kind == IY_DIRECT && rv->nmembers == 2 && rv->members[0] == b && rv->members[1] == d);
    CHECK_EQ(store_round_count(r), 3);
    /* Committed state only, until the commit. */
    store_reader *rdr = store_reader_new(s);
    uint64_t p = 99;
    CHECK_EQ(store_reader_user_pos(rdr, b, &p), 0);
    CHECK_EQ(p, 3);
    CHECK_EQ(store_reader_user_pos(rdr, d, &p), 0);
    CHECK_EQ(p, 0);
    CHECK_EQ(store_reader_is_member(rdr, found, d), IY_ENOTFOUND);
    CHECK_EQ(store_round_commit(r), 0);
    CHECK_EQ(store_reader_is_member(rdr, found, d), 0);
    store_reader_free(rdr);
    uint64_t bd = out[0].msg.channel;
    CHECK_EQ(store_share_channel(s, b, d), 1);
    CHECK_EQ(user_pos(s, b), 6);
    CHECK_EQ(user_pos(s, d), 3);
    CHECK_EQ(nchannels(s, d), 1);
    CHECK(has_channel(s, d, bd));
    CHECK_EQ(store_channel_get(s, bd, &cc), 0);
    CHECK(cc.kind == IY_DIRECT && cc.nmembers == 2 && cc.members[0] == b && cc.members[1] == d);
    CHECK_EQ(last_seq(s, bd), 3);
    /* The next round finds it committed. */
    CHECK_EQ(send1(s, d, 0, b, "again", "", &o), 0);
    CHECK(o.msg.channel == bd && o.msg.seq == 4);

    uint64_t *chs = NULL;
    size_t n = 0;
    CHECK_EQ(store_user_channels(s, b, &chs, &n), 0);
    CHECK_EQ(n, 2);
    CHECK(n == 2 && ((chs[0] == ch && chs[1] == bd) || (chs[1] == ch && chs[0] == bd)));
    iy_free(chs);
    CHECK_EQ(store_user_channels(s, 424242, &chs, &n), 0);
    CHECK_EQ(n, 0);
    iy_free(chs);
    done(s);
}

/* ---- cmid idempotency ----------------------------------------------------------- */

static void test_cmid(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb");
    iy_stored o, d;

    /* Within one round: the second use of a cmid returns the original. */
    iy_send in[3] = { { a, 0, b, "one", 3, "c-1", 0, 0, 0, 0, NULL, 0 }, { a, 0, b, "one", 3, "c-1", 0, 0, 0, 0, NULL, 0 },
                      { b, 0, a, "two", 3, "c-1", 0, 0, 0, 0, NULL, 0 } };
    store_round *r = round_of(s, in, 3);
    CHECK_EQ(post_send(r, &in[0], &o), 0);
    memset(&d, 0xff, sizeof d);
    CHECK_EQ(post_send(r, &in[1], &d), IY_EEXIST);
    CHECK(d.msg.id == o.msg.id && d.msg.seq == o.msg.seq && d.msg.channel == o.msg.channel);
    CHECK(d.msg.pos == o.msg.pos && d.msg.ts == o.msg.ts && d.nmembers == 0);
    CHECK(d.msg.from == a && strcmp(d.msg.cmid, "c-1") == 0 && d.msg.text == NULL);
    iy_stored orig;
    CHECK_EQ(store_round_cmid(r, a, "c-1", &orig), IY_EEXIST);
    CHECK(orig.msg.id == o.msg.id && orig.msg.seq == 1);
    CHECK_EQ(store_round_cmid(r, b, "c-1", &orig), 0);
    /* The same cmid of another sender is another message. */
    CHECK_EQ(post_send(r, &in[2], &d), 0);
    CHECK_EQ(d.msg.seq, 2);
    CHECK_EQ(d.msg.pos, 2);
    CHECK_EQ(store_round_count(r), 2);
    CHECK_EQ(store_round_commit(r), 0);

    /* Across rounds, however it is addressed. */
    CHECK_EQ(send1(s, a, 0, b, "one again", "c-1", &d), IY_EEXIST);
    CHECK(d.msg.id == o.msg.id && d.msg.seq == 1 && d.msg.pos == 1 && d.msg.channel == o.msg.channel);
    CHECK(d.msg.from == a && d.nmembers == 0);
    CHECK_EQ(send1(s, a, 0, b, "no cmid", "", &d), 0);
    CHECK_EQ(send1(s, a, 0, b, "no cmid", "", &d), 0);   /* empty cmid: no idempotency */
    CHECK_EQ(d.msg.seq, 4);
    CHECK_EQ(store_message_count(s), 4);

    s = reopen(s);
    CHECK_EQ(send1(s, a, o.msg.channel, 0, "after reopen", "c-1", &d), IY_EEXIST);
    CHECK(d.msg.id == o.msg.id && d.msg.seq == 1 && d.msg.pos == 1 && d.msg.ts == o.msg.ts);
    CHECK_EQ(store_message_count(s), 0);                 /* a duplicate stores nothing */
    CHECK_EQ(last_seq(s, o.msg.channel), 4);
    iy_msg_list l;
    CHECK_EQ(store_history(s, o.msg.channel, 0, 0, 10, &l), 0);
    CHECK_EQ(l.n, 4);
    if (l.n == 4) {
        CHECK(strcmp(l.v[0].cmid, "c-1") == 0 && l.v[0].from == a);
        CHECK_MEM(l.v[0].text, l.v[0].text_len, "one");
        CHECK(strcmp(l.v[1].cmid, "c-1") == 0 && l.v[1].from == b);
    }
    iy_msg_list_clear(&l);

    char big[IY_CMID_MAX + 2];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ(send1(s, a, 0, b, "long cmid", big, &d), IY_EINVAL);
    big[IY_CMID_MAX] = '\0';
    CHECK_EQ(send1(s, a, 0, b, "max cmid", big, &d), 0);
    uint64_t id = d.msg.id;
    CHECK_EQ(send1(s, a, 0, b, "max cmid", big, &d), IY_EEXIST);
    CHECK(d.msg.id == id && strcmp(d.msg.cmid, big) == 0);
    done(s);
}

/* ---- rounds that do not commit ------------------------------------------------- */

static void test_abort(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    iy_stored o, o2;
    CHECK_EQ(send1(s, a, 0, b, "1", "k1", &o), 0);
    uint64_t ch = o.msg.channel;

    /* A round never committed: store_free discards it. */
    iy_send lost[2] = { { a, 0, b, "lost", 4, "k2", 0, 0, 0, 0, NULL, 0 }, { a, 0, c, "lost too", 8, "k3", 0, 0, 0, 0, NULL, 0 } };
    store_round *r = round_of(s, lost, 2);
    CHECK_EQ(post_send(r, &lost[0], &o), 0);
    CHECK_EQ(o.msg.seq, 2);
    CHECK_EQ(post_send(r, &lost[1], &o2), 0);
    CHECK_EQ(o2.msg.pos, 3);
    s = reopen(s);

    CHECK_EQ(user_pos(s, a), 1);
    CHECK_EQ(user_pos(s, c), 0);
    CHECK_EQ(store_share_channel(s, a, c), 0);
    CHECK_EQ(nchannels(s, c), 0);
    CHECK_EQ(store_message_count(s), 0);
    CHECK_EQ(last_seq(s, ch), 1);

    /* The next round reuses seq 2 / pos 2, and the cmids are free. */
    CHECK_EQ(send1(s, a, 0, b, "kept", "k2", &o), 0);
    CHECK_EQ(o.msg.seq, 2);
    CHECK(o.pos[0] == 2 && o.pos[1] == 2);
    CHECK_EQ(send1(s, a, 0, c, "kept too", "k3", &o), 0);
    CHECK_EQ(o.msg.seq, 1);
    CHECK_EQ(o.msg.pos, 3);
    uint64_t ac = o.msg.channel;

    /* store_round_abort: the same, without a restart. */
    iy_send gone[3] = { { b, ch, 0, "gone", 4, "k4", 0, 0, 0, 0, NULL, 0 }, { c, 0, b, "gone too", 8, "k5", 0, 0, 0, 0, NULL, 0 },
                        { a, ac, 0, "gone 3", 6, "", 0, 0, 0, 0, NULL, 0 } };
    r = round_of(s, gone, 3);
    int rc[3];
    iy_stored out[3];
    post_all(r, gone, 3, rc, out);
    CHECK(rc[0] == 0 && rc[1] == 0 && rc[2] == 0);
    CHECK(out[0].msg.seq == 3 && out[1].msg.seq == 1 && out[2].msg.seq == 2);
    uint64_t bc = out[1].msg.channel;
    store_round_abort(r);
    store_round_abort(NULL);
    CHECK_EQ(last_seq(s, ch), 2);
    CHECK_EQ(last_seq(s, ac), 1);
    CHECK_EQ(store_share_channel(s, b, c), 0);
    CHECK_EQ(store_channel_get(s, bc, &(iy_channel){ 0 }), IY_ENOTFOUND);
    CHECK_EQ(user_pos(s, b), 2);
    CHECK_EQ(user_pos(s, c), 1);
    CHECK_EQ(store_message_count(s), 2);
    post_all(r = round_of(s, gone, 3), gone, 3, rc, out);   /* the same numbers again */
    CHECK(rc[0] == 0 && rc[1] == 0 && rc[2] == 0);
    CHECK(out[0].msg.seq == 3 && out[1].msg.seq == 1 && out[2].msg.seq == 2);
    CHECK(out[0].pos[0] == 4 && out[0].pos[1] == 3 && out[1].pos[0] == 4 && out[1].pos[1] == 2);
    CHECK_EQ(store_round_commit(r), 0);
    CHECK_EQ(send1(s, b, ch, 0, "dup", "k4", &o), IY_EEXIST);
    CHECK(o.msg.seq == 3 && o.msg.id == out[0].msg.id);

    /* A refused send leaves the round usable and unchanged (its cmid too). */
    iy_send mixed[2] = { { c, ch, 0, "x", 1, "k9", 0, 0, 0, 0, NULL, 0 }, { a, ch, 0, "y", 1, "k9", 0, 0, 0, 0, NULL, 0 } };
    r = round_of(s, mixed, 2);
    CHECK_EQ(post_send(r, &mixed[0], &o), IY_EFORBIDDEN);
    CHECK_EQ(store_round_count(r), 0);
    CHECK_EQ(post_send(r, &mixed[1], &o), 0);
    CHECK_EQ(o.msg.seq, 4);
    CHECK_EQ(store_round_commit(r), 0);

    /* Empty rounds commit and store nothing: only refused sends, or none posted. */
    uint64_t count = store_message_count(s);
    iy_send bad = { c, ch, 0, "x", 1, "", 0, 0, 0, 0, NULL, 0 };
    r = round_of(s, &bad, 1);
    CHECK_EQ(post_send(r, &bad, &o), IY_EFORBIDDEN);
    CHECK_EQ(store_round_count(r), 0);
    CHECK_EQ(store_round_push(r, a), IY_EINVAL);        /* nothing appended to push */
    CHECK_EQ(store_round_commit(r), 0);
    iy_send unposted = { a, ch, 0, "never", 5, "", 0, 0, 0, 0, NULL, 0 };
    r = round_of(s, &unposted, 1);
    CHECK_EQ(store_round_commit(r), 0);
    CHECK_EQ(store_message_count(s), count);
    CHECK_EQ(last_seq(s, ch), 4);
    done(s);
}

/* A failed commit (the RocksDB test hook) changes nothing: no message,
 * channel, membership, direct pair, cmid or counter; the same round again
 * gets the same seq and pos. Also after a successful commit (the committed
 * caches must not take the failed round's state). */
static void test_failed_commit(void)
{
    if (!fx_is_rocks()) {
        fx_skip("test_failed_commit", "RocksDB only: store_rocks_fail_next_commit; "
                "test_store_pg fails PostgreSQL commits for real");
        return;
    }
    store *s = fresh();
    uint64_t o = mkuser(s, "oo"), a = mkuser(s, "aa"), b = mkuser(s, "bb");
    uint64_t x = mkuser(s, "xx"), y = mkuser(s, "yy");
    uint64_t three[3] = { o, a, b };
    iy_channel g, cg;
    iy_stored r1;
    uint64_t seq;
    CHECK_EQ(mkgroup(s, o, "team", three, 3, &g), 0);
    CHECK_EQ(send1(s, o, g.id, 0, "first", "", &r1), 0);   /* the channel is cached now */
    CHECK_EQ(send1(s, a, 0, b, "ab", "ab1", &r1), 0);
    uint64_t ab = r1.msg.channel;

    /* Events, a new direct channel used twice, cmids (one repeated). */
    enum { N = 8 };
    iy_send in[N] = {
        { a, g.id, 0, "", 0, "", IY_EV_MEMBER_ADDED, x, 0, 0, NULL, 0 },
        { x, g.id, 0, "hello", 5, "xk", 0, 0, 0, 0, NULL, 0 },
        { o, g.id, 0, "renamed", 7, "", IY_EV_RENAMED, 0, 0, 0, NULL, 0 },
        { o, g.id, 0, "", 0, "", IY_EV_MEMBER_REMOVED, b, 0, 0, NULL, 0 },
        { x, 0, y, "new pair", 8, "xy1", 0, 0, 0, 0, NULL, 0 },
        { y, 0, x, "reply", 5, "", 0, 0, 0, 0, NULL, 0 },
        { a, ab, 0, "again", 5, "ab2", 0, 0, 0, 0, NULL, 0 },
        { a, ab, 0, "again", 5, "ab2", 0, 0, 0, 0, NULL, 0 },
    };
    int want[N] = { 0, 0, 0, 0, 0, 0, 0, IY_EEXIST };
    int rc1[N], rc2[N];
    iy_stored *first = iy_calloc(N, sizeof *first), *second = iy_calloc(N, sizeof *second);
    store_round *r = round_of(s, in, N);
    post_all(r, in, N, rc1, first);
    for (int i = 0; i < N; i++) CHECK_EQ(rc1[i], want[i]);
    CHECK(first[1].msg.seq == 3 && first[3].msg.seq == 5);
    CHECK(first[5].msg.channel == first[4].msg.channel && first[5].msg.seq == 2);
    CHECK(first[7].msg.id == first[6].msg.id && first[6].msg.seq == 2);
    uint64_t xych = first[4].msg.channel;
    store_rocks_fail_next_commit(s);
    CHECK_EQ(store_round_commit(r), IY_EIO);

    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && cg.members[2] == b && strcmp(cg.name, "team") == 0 && cg.owner == o);
    CHECK(!has_channel(s, x, g.id) && has_channel(s, b, g.id));
    CHECK_EQ(store_share_channel(s, x, y), 0);
    CHECK_EQ(store_channel_get(s, xych, &cg), IY_ENOTFOUND);
    CHECK_EQ(nchannels(s, x), 0);
    CHECK_EQ(user_pos(s, x), 0);
    CHECK_EQ(user_pos(s, y), 0);
    CHECK_EQ(user_pos(s, b), 2);
    CHECK_EQ(last_seq(s, g.id), 1);
    CHECK_EQ(last_seq(s, ab), 1);
    CHECK_EQ(store_read_get(s, x, g.id, &seq), 0);
    CHECK_EQ(seq, 0);
    CHECK_EQ(store_message_count(s), 2);

    /* The same round again: the same answers, seq and pos (new ids). */
    r = round_of(s, in, N);
    post_all(r, in, N, rc2, second);
    int same = 1;
    for (int i = 0; i < N; i++) {
        if (rc2[i] != rc1[i] || second[i].msg.seq != first[i].msg.seq) same = 0;
        if (second[i].msg.pos != first[i].msg.pos || second[i].nmembers != first[i].nmembers) same = 0;
        if (memcmp(second[i].pos, first[i].pos, first[i].nmembers * sizeof *first[i].pos) != 0) same = 0;
        if (memcmp(second[i].members, first[i].members, first[i].nmembers * 8) != 0) same = 0;
        if (i != 7 && second[i].msg.id <= first[N - 1].msg.id) same = 0;   /* ids never reused */
    }
    CHECK(same);
    CHECK(second[4].msg.channel != xych);                /* a new id for the new channel */
    CHECK_EQ(store_round_commit(r), 0);
    xych = second[4].msg.channel;

    /* Committed: seen at once, without a reopen. */
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && cg.members[2] == x && strcmp(cg.name, "renamed") == 0);
    CHECK(has_channel(s, x, g.id) && !has_channel(s, b, g.id) && has_channel(s, x, xych));
    CHECK_EQ(send1(s, x, g.id, 0, "hello", "xk", &r1), IY_EEXIST);
    CHECK_EQ(r1.msg.id, second[1].msg.id);
    CHECK_EQ(send1(s, b, g.id, 0, "out", "", &r1), IY_EFORBIDDEN);
    CHECK_EQ(store_message_count(s), 2 + N - 1);

    /* A failed commit after a successful one leaves the committed state. */
    iy_send rmx = { x, g.id, 0, "", 0, "", IY_EV_MEMBER_REMOVED, x, 0, 0, NULL, 0 };
    r = round_of(s, &rmx, 1);
    CHECK_EQ(post_send(r, &rmx, &r1), 0);
    CHECK_EQ(r1.msg.seq, 6);
    store_rocks_fail_next_commit(s);
    CHECK_EQ(store_round_commit(r), IY_EIO);
    CHECK_EQ(send1(s, x, g.id, 0, "still here", "", &r1), 0);
    CHECK_EQ(r1.msg.seq, 6);
    s = reopen(s);
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && cg.members[2] == x && strcmp(cg.name, "renamed") == 0);
    CHECK_EQ(send1(s, a, ab, 0, "again", "ab2", &r1), IY_EEXIST);
    CHECK_EQ(last_seq(s, g.id), 6);
    iy_free(first);
    iy_free(second);
    done(s);
}

/* ---- history and sync ------------------------------------------------------------- */

static void test_history_sync(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    iy_stored o;
    char text[10][32];
    uint64_t ch = 0, ids[11];
    /* One round: m1..m10 between a and b, each followed by one of c's to a
     * (so that a's inbox is not just ch). */
    iy_send in[20];
    for (int i = 1; i <= 10; i++) {
        snprintf(text[i - 1], sizeof text[i - 1], "m%d", i);
        in[2 * (i - 1)] = (iy_send){ i % 2 ? a : b, 0, i % 2 ? b : a, text[i - 1],
                                     strlen(text[i - 1]), "", 0, 0, 0, 0, NULL, 0 };
        in[2 * (i - 1) + 1] = (iy_send){ c, 0, a, "other", 5, "", 0, 0, 0, 0, NULL, 0 };
    }
    store_round *r = round_of(s, in, 20);
    for (int i = 0; i < 20; i++) {
        CHECK_EQ(post_send(r, &in[i], &o), 0);
        if (i % 2 == 0) {
            ids[i / 2 + 1] = o.msg.id;
            ch = o.msg.channel;
        }
    }
    CHECK_EQ(store_round_commit(r), 0);

    iy_msg_list l;
    CHECK_EQ(store_history(s, ch, UINT64_MAX, 0, 3, &l), 0);   /* newest first */
    CHECK_EQ(l.n, 3);
    if (l.n == 3) {
        CHECK(l.v[0].seq == 10 && l.v[1].seq == 9 && l.v[2].seq == 8);
        CHECK_MEM(l.v[0].text, l.v[0].text_len, "m10");
        CHECK(l.v[0].id == ids[10] && l.v[0].from == b && l.v[0].channel == ch && l.v[0].pos == 0);
        CHECK(l.v[0].ts == (int64_t)(ids[10] >> 22) + IY_ID_EPOCH_MS);
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
        CHECK(l.v[0].from == a && l.v[0].id == ids[1]);
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

/* ---- groups ------------------------------------------------------------------------- */

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
    char longname[IY_GROUP_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_EQ(mkgroup(s, u[0], "too many", u, IY_GROUP_MAX + 1, &g), IY_ETOOBIG);
    CHECK_EQ(mkgroup(s, u[0], "alone", u, 1, &g), IY_EINVAL);
    CHECK_EQ(mkgroup(s, u[0], longname, u, 3, &g), IY_EINVAL);
    uint64_t with_ghost[3] = { u[0], u[1], 999 };
    CHECK_EQ(mkgroup(s, u[0], "ghost", with_ghost, 3, &g), IY_ENOTFOUND);
    CHECK_EQ(nchannels(s, u[0]), 0);                    /* nothing made */
    /* Exactly 100, given in reverse order with a duplicate. */
    uint64_t mem[IY_GROUP_MAX + 1];
    for (int i = 0; i < IY_GROUP_MAX; i++) mem[i] = u[IY_GROUP_MAX - 1 - i];
    mem[IY_GROUP_MAX] = u[3];
    CHECK_EQ(mkgroup(s, u[0], "big", mem, IY_GROUP_MAX + 1, &g), 0);
    CHECK_EQ(g.nmembers, IY_GROUP_MAX);
    CHECK_EQ(g.kind, IY_GROUP);
    CHECK(g.owner == u[0] && strcmp(g.name, "big") == 0 && g.id != 0);
    int asc = 1;
    for (uint32_t i = 1; i < g.nmembers; i++) if (g.members[i] <= g.members[i - 1]) asc = 0;
    CHECK(asc);

    iy_channel g2;
    CHECK_EQ(store_channel_get(s, g.id, &g2), 0);
    CHECK(g2.nmembers == g.nmembers && memcmp(g2.members, g.members, g.nmembers * 8) == 0);
    CHECK(strcmp(g2.name, "big") == 0 && g2.owner == u[0] && g2.kind == IY_GROUP);
    CHECK_EQ(store_channel_get(s, 4242, &g2), IY_ENOTFOUND);
    CHECK_EQ(last_seq(s, g.id), 0);                    /* seq 0: no message yet */

    /* A small group: the creator is added if absent. */
    iy_channel small;
    uint64_t two[1] = { u[1] };
    CHECK_EQ(mkgroup(s, u[2], "pair", two, 1, &small), 0);
    CHECK_EQ(small.nmembers, 2);
    CHECK(small.members[0] == u[1] && small.members[1] == u[2] && small.owner == u[2]);

    /* Sends: per-member pos. u[1] gets pos 1 (big), 2 (small), 3 (big). */
    iy_stored o;
    CHECK_EQ(send1(s, u[5], g.id, 0, "hello all", "g1", &o), 0);
    CHECK_EQ(o.nmembers, IY_GROUP_MAX);
    CHECK(memcmp(o.members, g.members, g.nmembers * 8) == 0);
    int allone = 1;
    for (uint32_t i = 0; i < o.nmembers; i++) if (o.pos[i] != 1) allone = 0;
    CHECK(allone);
    CHECK_EQ(o.msg.seq, 1);
    CHECK_EQ(o.owner, u[0]);
    CHECK_EQ(send1(s, u[1], small.id, 0, "psst", "", &o), 0);
    CHECK_EQ(o.msg.pos, 2);
    CHECK_EQ(send1(s, u[6], g.id, 0, "again", "", &o), 0);
    CHECK_EQ(o.msg.seq, 2);
    CHECK_EQ(pos_of(&o, u[1]), 3);
    CHECK_EQ(pos_of(&o, u[2]), 3);
    CHECK_EQ(pos_of(&o, u[7]), 2);
    CHECK_EQ(send1(s, u[IY_GROUP_MAX + 1], g.id, 0, "outsider", "", &o), IY_EFORBIDDEN);

    CHECK_EQ(nchannels(s, u[1]), 2);
    CHECK_EQ(nchannels(s, u[IY_GROUP_MAX + 1]), 0);
    CHECK_EQ(store_share_channel(s, u[1], u[IY_GROUP_MAX - 1]), 1);   /* through the group */
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
    iy_send in = { a, ch, 0, big, len, "big", 0, 0, 0, 0, NULL, 0 };
    CHECK_EQ(send_in(s, &in, &o), 0);
    CHECK_EQ(o.msg.seq, 3);
    CHECK(o.pos[0] == 3 && o.pos[1] == 3);
    CHECK_EQ(store_message_count(s), 1);

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
    CHECK_EQ(store_message_count(s), 1);
    iy_user u;
    CHECK_EQ(store_user_get(s, a, &u), 0);
    CHECK(strcmp(u.username, "aa") == 0);
    done(s);
}

/* ---- membership events ---------------------------------------------------------------- */

static void test_events(void)
{
    store *s = fresh();
    /* Ids grow with creation: o < a < b < c < x. */
    uint64_t o = mkuser(s, "oo"), a = mkuser(s, "aa"), b = mkuser(s, "bb");
    uint64_t c = mkuser(s, "cc"), x = mkuser(s, "xx");
    uint64_t three[3] = { o, a, b };
    iy_channel g, cg;
    iy_stored r;
    CHECK_EQ(mkgroup(s, o, "team", three, 3, &g), 0);
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
    iy_send withto = { a, 0, b, "", 0, "", IY_EV_MEMBER_ADDED, c, 0, 0, NULL, 0 };
    CHECK_EQ(send_in(s, &withto, &r), IY_EINVAL);
    CHECK_EQ(store_channel_get(s, dch, &cg), 0);
    CHECK(cg.kind == IY_DIRECT && cg.nmembers == 2);
    CHECK_EQ(last_seq(s, dch), 1);

    /* RENAMED: owner only, 1..IY_GROUP_NAME_MAX bytes. */
    char name[IY_GROUP_NAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    CHECK_EQ(event1(s, a, g.id, IY_EV_RENAMED, 0, "mine now", &r), IY_EFORBIDDEN);
    CHECK_EQ(event1(s, x, g.id, IY_EV_RENAMED, 0, "mine now", &r), IY_EFORBIDDEN);
    CHECK_EQ(event1(s, o, g.id, IY_EV_RENAMED, 0, "", &r), IY_EINVAL);
    CHECK_EQ(event1(s, o, g.id, IY_EV_RENAMED, 0, name, &r), IY_EINVAL);
    iy_send nul = { o, g.id, 0, "a\0b", 3, "", IY_EV_RENAMED, 0, 0, 0, NULL, 0 };
    CHECK_EQ(send_in(s, &nul, &r), IY_EINVAL);
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
    CHECK_EQ(user_pos(s, b), bpos);

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
    CHECK_EQ(mkgroup(s, o, "cmid", three, 3, &g), 0);
    iy_send ev[2] = { { o, g.id, 0, "r1", 2, "same", IY_EV_RENAMED, 0, 0, 0, NULL, 0 },
                      { o, g.id, 0, "r1", 2, "same", IY_EV_RENAMED, 0, 0, 0, NULL, 0 } };
    store_round *rd = round_of(s, ev, 2);
    CHECK_EQ(post_send(rd, &ev[0], &r), 0);
    CHECK(r.msg.cmid[0] == '\0');
    CHECK_EQ(post_send(rd, &ev[1], &r), 0);
    CHECK_EQ(r.msg.seq, 2);
    CHECK_EQ(store_round_commit(rd), 0);
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
    CHECK_EQ(mkgroup(s, u[0], "full", u, IY_GROUP_MAX - 1, &g), 0);
    CHECK_EQ(g.nmembers, IY_GROUP_MAX - 1);
    CHECK_EQ(event1(s, u[5], g.id, IY_EV_MEMBER_ADDED, u[IY_GROUP_MAX - 1], "", &r), 0);
    CHECK_EQ(r.nmembers, IY_GROUP_MAX);
    CHECK_EQ(event1(s, u[5], g.id, IY_EV_MEMBER_ADDED, u[IY_GROUP_MAX], "", &r), IY_ETOOBIG);
    CHECK_EQ(event1(s, u[5], g.id, IY_EV_MEMBER_ADDED, u[1], "", &r), IY_ECONFLICT);
    /* Within one round: a removal makes room for an add, then the removed one is gone. */
    iy_send in[4] = { { u[8], g.id, 0, "", 0, NULL, IY_EV_MEMBER_ADDED, u[IY_GROUP_MAX], 0, 0, NULL, 0 },
                      { u[7], g.id, 0, "", 0, NULL, IY_EV_MEMBER_REMOVED, u[7], 0, 0, NULL, 0 },
                      { u[8], g.id, 0, "", 0, NULL, IY_EV_MEMBER_ADDED, u[IY_GROUP_MAX], 0, 0, NULL, 0 },
                      { u[7], g.id, 0, "", 0, NULL, IY_EV_MEMBER_REMOVED, u[7], 0, 0, NULL, 0 } };
    int rc[4];
    iy_stored out[4];
    store_round *rd = round_of(s, in, 4);
    post_all(rd, in, 4, rc, out);
    CHECK_EQ(rc[0], IY_ETOOBIG);
    CHECK_EQ(rc[1], 0);
    CHECK_EQ(rc[2], 0);
    CHECK_EQ(out[2].nmembers, IY_GROUP_MAX);
    CHECK_EQ(rc[3], IY_EFORBIDDEN);                      /* u[7] is gone already */
    const iy_channel *view = store_round_channel(rd, g.id);
    CHECK(view && view->nmembers == IY_GROUP_MAX && view->members[IY_GROUP_MAX - 1] == u[IY_GROUP_MAX]);
    CHECK_EQ(store_round_commit(rd), 0);
    CHECK_EQ(store_channel_get(s, g.id, &g), 0);
    CHECK_EQ(g.nmembers, IY_GROUP_MAX);
    CHECK(g.members[IY_GROUP_MAX - 1] == u[IY_GROUP_MAX]);
    CHECK(rules_find(g.members, g.nmembers, u[7]) < 0);
    CHECK(has_channel(s, u[IY_GROUP_MAX], g.id) && !has_channel(s, u[7], g.id));
    done(s);
}

/* Membership events and then sends in one round: later sends see earlier
 * changes; nothing is visible (or kept) before the commit. */
static void test_events_round(void)
{
    store *s = fresh();
    uint64_t o = mkuser(s, "oo"), a = mkuser(s, "aa"), b = mkuser(s, "bb");
    uint64_t x = mkuser(s, "xx");
    uint64_t three[3] = { o, a, b };
    iy_channel g, cg;
    iy_stored r;
    CHECK_EQ(mkgroup(s, o, "team", three, 3, &g), 0);
    CHECK_EQ(send1(s, o, g.id, 0, "first", "", &r), 0);

    /* x speaks (not yet), is added, speaks; rename; remove b; b speaks; remove b again. */
    enum { N = 7 };
    iy_send in[N] = {
        { x, g.id, 0, "hello", 5, "xk", 0, 0, 0, 0, NULL, 0 },
        { a, g.id, 0, "", 0, "", IY_EV_MEMBER_ADDED, x, 0, 0, NULL, 0 },
        { x, g.id, 0, "hello", 5, "xk", 0, 0, 0, 0, NULL, 0 },
        { o, g.id, 0, "renamed", 7, "", IY_EV_RENAMED, 0, 0, 0, NULL, 0 },
        { o, g.id, 0, "", 0, "", IY_EV_MEMBER_REMOVED, b, 0, 0, NULL, 0 },
        { b, g.id, 0, "me?", 3, "", 0, 0, 0, 0, NULL, 0 },
        { o, g.id, 0, "", 0, "", IY_EV_MEMBER_REMOVED, b, 0, 0, NULL, 0 },
    };
    int want[N] = { IY_EFORBIDDEN, 0, 0, 0, 0, IY_EFORBIDDEN, IY_ENOTFOUND };
    int rc[N];
    iy_stored *out = iy_calloc(N, sizeof *out);
    store_reader *rdr = store_reader_new(s);
    store_round *rd = round_of(s, in, N);
    post_all(rd, in, N, rc, out);
    for (int i = 0; i < N; i++) CHECK_EQ(rc[i], want[i]);
    CHECK_EQ(out[1].msg.seq, 2);
    CHECK_EQ(out[2].msg.seq, 3);
    CHECK(out[2].nmembers == 4 && pos_of(&out[2], x) == 2 && out[2].msg.pos == 2);
    CHECK_EQ(out[4].msg.seq, 5);
    CHECK(out[4].nmembers == 4 && pos_of(&out[4], b) == 5);
    const iy_channel *view = store_round_channel(rd, g.id);
    CHECK(view && view->nmembers == 3 && view->members[2] == x && strcmp(view->name, "renamed") == 0);
    CHECK_EQ(store_round_count(rd), 4);
    /* Committed state is untouched until the commit (a reader's view). */
    CHECK_EQ(store_reader_is_member(rdr, g.id, x), IY_EFORBIDDEN);
    CHECK_EQ(store_reader_is_member(rdr, g.id, b), 0);
    uint64_t px = 99;
    CHECK_EQ(store_reader_user_pos(rdr, x, &px), 0);
    CHECK_EQ(px, 0);
    store_reader_free(rdr);
    s = reopen(s);   /* discards the open round */

    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && cg.members[0] == o && cg.members[1] == a && cg.members[2] == b);
    CHECK(strcmp(cg.name, "team") == 0 && cg.owner == o);
    CHECK(!has_channel(s, x, g.id));
    CHECK(has_channel(s, b, g.id));
    CHECK_EQ(user_pos(s, x), 0);
    CHECK_EQ(store_message_count(s), 0);
    iy_msg m;
    CHECK_EQ(store_channel_last(s, g.id, &m), 0);
    CHECK(m.seq == 1 && m.event == 0);
    iy_msg_clear(&m);
    CHECK_EQ(send1(s, x, g.id, 0, "hello", "xk", &r), IY_EFORBIDDEN);
    CHECK_EQ(send1(s, b, g.id, 0, "still in", "", &r), 0);
    CHECK_EQ(r.msg.seq, 2);   /* no gap */

    /* The same round committed. */
    rd = round_of(s, in, N);
    post_all(rd, in, N, rc, out);
    for (int i = 0; i < N; i++) CHECK_EQ(rc[i], want[i]);
    CHECK_EQ(out[2].msg.seq, 4);
    CHECK_EQ(store_round_commit(rd), 0);
    s = reopen(s);
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && cg.members[0] == o && cg.members[1] == a && cg.members[2] == x);
    CHECK(strcmp(cg.name, "renamed") == 0);
    CHECK(has_channel(s, x, g.id));
    CHECK(!has_channel(s, b, g.id));
    CHECK_EQ(last_seq(s, g.id), 6);
    iy_msg_list l;
    CHECK_EQ(store_history(s, g.id, 0, 0, 10, &l), 0);
    CHECK_EQ(l.n, 6);
    if (l.n == 6) {
        CHECK(l.v[2].event == IY_EV_MEMBER_ADDED && l.v[2].subject == x);
        CHECK(l.v[3].from == x && strcmp(l.v[3].cmid, "xk") == 0);
        CHECK(l.v[4].event == IY_EV_RENAMED && l.v[5].event == IY_EV_MEMBER_REMOVED);
    }
    iy_msg_list_clear(&l);
    CHECK_EQ(send1(s, x, g.id, 0, "hello", "xk", &r), IY_EEXIST);   /* committed with the round */
    CHECK_EQ(r.msg.seq, 4);

    /* One key written twice in a round ('x' of a member added then removed, and the other way
     * round): the round's writes go in key order, and the later write must still win. */
    iy_send flip[4] = {
        { o, g.id, 0, "", 0, "", IY_EV_MEMBER_ADDED, b, 0, 0, NULL, 0 },
        { o, g.id, 0, "", 0, "", IY_EV_MEMBER_REMOVED, b, 0, 0, NULL, 0 },
        { o, g.id, 0, "", 0, "", IY_EV_MEMBER_REMOVED, x, 0, 0, NULL, 0 },
        { o, g.id, 0, "", 0, "", IY_EV_MEMBER_ADDED, x, 0, 0, NULL, 0 },
    };
    int frc[4];
    rd = round_of(s, flip, 4);
    post_all(rd, flip, 4, frc, out);
    for (int i = 0; i < 4; i++) CHECK_EQ(frc[i], 0);
    CHECK_EQ(store_round_commit(rd), 0);
    s = reopen(s);
    CHECK(!has_channel(s, b, g.id));
    CHECK(has_channel(s, x, g.id));
    CHECK_EQ(store_channel_get(s, g.id, &cg), 0);
    CHECK(cg.nmembers == 3 && cg.members[2] == x);
    iy_free(out);
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
    CHECK_EQ(mkgroup(s, o, "g", two, 2, &g), 0);
    CHECK_EQ(send1(s, o, g.id, 0, "plain", "k1", &r), 0);
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_ADDED, c, "welcome", &r), 0);
    CHECK_EQ(event1(s, o, g.id, IY_EV_RENAMED, 0, "G2", &r), 0);
    CHECK_EQ(event1(s, o, g.id, IY_EV_MEMBER_REMOVED, c, "", &r), 0);

    for (int pass = 0; pass < 2; pass++) {
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

/* ---- read state ---------------------------------------------------------------------------- */

/* A member says it has read up to seq, as the chat service handles it:
 * the rule on the newest seq and the current read state, then the store. */
static uint64_t read_to(store *s, uint64_t user, uint64_t ch, uint64_t seq)
{
    uint64_t cur = 0, now = 0, want;
    CHECK_EQ(store_read_get(s, user, ch, &cur), 0);
    want = rules_read_seq(seq, last_seq(s, ch), cur);
    if (want <= cur) return cur;
    CHECK_EQ(store_read_set(s, user, ch, want, &now), 0);
    return now;
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

    /* The store: forward only. */
    CHECK_EQ(store_read_set(s, a, ch, 2, &now), 0);
    CHECK_EQ(now, 2);
    CHECK_EQ(store_read_set(s, a, ch, 1, &now), 0);
    CHECK_EQ(now, 2);
    CHECK_EQ(store_read_get(s, a, ch, &seq), 0);
    CHECK_EQ(seq, 2);
    /* The rule: never past the newest committed seq, never back. */
    CHECK_EQ(read_to(s, a, ch, 1000), 3);
    CHECK_EQ(store_read_get(s, a, ch, &seq), 0);
    CHECK_EQ(seq, 3);
    CHECK_EQ(read_to(s, a, ch, 1), 3);
    CHECK_EQ(read_to(s, a, 777, 5), 0);                 /* no messages: nothing to read */
    CHECK_EQ(store_read_get(s, a, 777, &seq), 0);
    CHECK_EQ(seq, 0);
    /* The caller decides (rules_read_seq), but the store never keeps a read
     * seq past the channel's newest: a round moves a sender's read seq to
     * its message without reading it first, which is forward only because
     * of this. */
    CHECK_EQ(store_read_set(s, c, 778, 5, &now), 0);
    CHECK_EQ(now, 0);
    CHECK_EQ(store_read_get(s, c, 778, &seq), 0);
    CHECK_EQ(seq, 0);
    CHECK_EQ(store_read_set(s, a, ch, 1000, &now), 0);
    CHECK_EQ(now, 3);

    /* A send after reading moves it on; a send of a round not committed does not. */
    CHECK_EQ(send1(s, a, ch, 0, "4", "", &r), 0);
    CHECK_EQ(store_read_get(s, a, ch, &seq), 0);
    CHECK_EQ(seq, 4);
    iy_send in = { b, ch, 0, "5", 1, "", 0, 0, 0, 0, NULL, 0 };
    store_round *rd = round_of(s, &in, 1);
    CHECK_EQ(post_send(rd, &in, &r), 0);
    s = reopen(s);
    CHECK_EQ(store_read_get(s, b, ch, &seq), 0);
    CHECK_EQ(seq, 3);
    CHECK_EQ(store_read_get(s, a, ch, &seq), 0);
    CHECK_EQ(seq, 4);
    rd = round_of(s, &in, 1);
    CHECK_EQ(post_send(rd, &in, &r), 0);
    store_round_abort(rd);
    CHECK_EQ(store_read_get(s, b, ch, &seq), 0);
    CHECK_EQ(seq, 3);

    /* Groups: the sender of a group message, and the actor of an event, have read it. */
    uint64_t three[3] = { a, b, c };
    iy_channel g;
    CHECK_EQ(mkgroup(s, a, "g", three, 3, &g), 0);
    CHECK_EQ(send1(s, c, g.id, 0, "g1", "", &r), 0);
    CHECK_EQ(event1(s, a, g.id, IY_EV_RENAMED, 0, "g!", &r), 0);
    CHECK_EQ(store_read_get(s, c, g.id, &seq), 0);
    CHECK_EQ(seq, 1);
    CHECK_EQ(store_read_get(s, a, g.id, &seq), 0);
    CHECK_EQ(seq, 2);
    CHECK_EQ(store_read_get(s, b, g.id, &seq), 0);
    CHECK_EQ(seq, 0);
    CHECK_EQ(read_to(s, b, g.id, 2), 2);
    s = reopen(s);
    CHECK_EQ(store_read_get(s, b, g.id, &seq), 0);
    CHECK_EQ(seq, 2);
    CHECK_EQ(store_read_get(s, c, 778, &seq), 0);
    CHECK_EQ(seq, 0);

    /* Several sends of one sender in one channel in one round (pipelined):
     * its read seq is the last one's, whichever order the senders and
     * channels interleave in (the store writes it once per pair). */
    enum { NR = 6 };
    iy_send rin[NR] = {
        { a, ch, 0, "r1", 2, "", 0, 0, 0, 0, NULL, 0 },
        { c, g.id, 0, "r2", 2, "", 0, 0, 0, 0, NULL, 0 },
        { b, ch, 0, "r3", 2, "", 0, 0, 0, 0, NULL, 0 },
        { a, ch, 0, "r4", 2, "", 0, 0, 0, 0, NULL, 0 },
        { c, g.id, 0, "r5", 2, "", 0, 0, 0, 0, NULL, 0 },
        { a, g.id, 0, "r6", 2, "", 0, 0, 0, 0, NULL, 0 },
    };
    int rrc[NR];
    iy_stored *rout = iy_calloc(NR, sizeof *rout);
    rd = round_of(s, rin, NR);
    post_all(rd, rin, NR, rrc, rout);
    CHECK_EQ(store_round_commit(rd), 0);
    for (int i = 0; i < NR; i++) CHECK_EQ(rrc[i], 0);
    s = reopen(s);
    CHECK_EQ(store_read_get(s, a, ch, &seq), 0);
    CHECK_EQ(seq, rout[3].msg.seq);
    CHECK_EQ(store_read_get(s, b, ch, &seq), 0);
    CHECK_EQ(seq, rout[2].msg.seq);
    CHECK_EQ(store_read_get(s, c, g.id, &seq), 0);
    CHECK_EQ(seq, rout[4].msg.seq);
    CHECK_EQ(store_read_get(s, a, g.id, &seq), 0);
    CHECK_EQ(seq, rout[5].msg.seq);
    iy_free(rout);
    done(s);
}

/* ---- friends --------------------------------------------------------------------------------- */

/* A's friend request toward b, as the API makes it: the rule on the state
 * read, written with compare-and-set. The state afterwards into *st. */
static int friend_put(store *s, uint64_t a, uint64_t b, int *st)
{
    int cur = -1, rc = store_friend_state(s, a, b, &cur);
    if (rc) return rc;
    *st = rules_friend_put(cur);
    return store_friend_set(s, a, b, cur, *st);
}

/* Ends a's friendship or request with b (either side's request). */
static int friend_end(store *s, uint64_t a, uint64_t b)
{
    int cur = -1, rc = store_friend_state(s, a, b, &cur);
    return rc ? rc : store_friend_set(s, a, b, cur, IY_FRIEND_NONE);
}

static int fstate(store *s, uint64_t a, uint64_t b)
{
    int st = -1;
    CHECK_EQ(store_friend_state(s, a, b, &st), 0);
    return st;
}

static void test_friends(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    uint64_t d = mkuser(s, "dd");
    int st = -1;
    uint64_t *f, *in, *out;
    size_t nf, ni, no;

    CHECK_EQ(fstate(s, a, b), IY_FRIEND_NONE);
    CHECK(store_friend_set(s, a, a, IY_FRIEND_NONE, IY_FRIEND_OUTGOING) != 0);   /* never with oneself */
    CHECK_EQ(fstate(s, a, a), IY_FRIEND_NONE);
    CHECK_EQ(store_friend_set(s, a, 999, IY_FRIEND_NONE, IY_FRIEND_OUTGOING), IY_ENOTFOUND);
    CHECK_EQ(friend_put(s, a, 999, &st), IY_ENOTFOUND);
    CHECK_EQ(store_friend_set(s, a, 999, IY_FRIEND_NONE, IY_FRIEND_NONE), IY_ENOTFOUND);
    CHECK_EQ(friend_end(s, a, b), 0);                    /* nothing to end */
    CHECK_EQ(fstate(s, a, b), IY_FRIEND_NONE);

    /* a asks b; again is the same; b accepts. */
    CHECK_EQ(friend_put(s, a, b, &st), 0);
    CHECK_EQ(st, IY_FRIEND_OUTGOING);
    CHECK_EQ(friend_put(s, a, b, &st), 0);
    CHECK_EQ(st, IY_FRIEND_OUTGOING);
    CHECK_EQ(fstate(s, a, b), IY_FRIEND_OUTGOING);
    CHECK_EQ(fstate(s, b, a), IY_FRIEND_INCOMING);
    CHECK_EQ(store_friend_list(s, a, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 0 && ni == 0 && no == 1 && f == NULL && in == NULL && out && out[0] == b);
    iy_free(f); iy_free(in); iy_free(out);
    CHECK_EQ(store_friend_list(s, b, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 0 && ni == 1 && no == 0 && in && in[0] == a);
    iy_free(f); iy_free(in); iy_free(out);

    /* Compare-and-set: an expectation another writer made stale is refused,
     * and changes nothing on either side. */
    CHECK_EQ(store_friend_set(s, a, b, IY_FRIEND_NONE, IY_FRIEND_OUTGOING), IY_ECONFLICT);
    CHECK_EQ(store_friend_set(s, b, a, IY_FRIEND_NONE, IY_FRIEND_OUTGOING), IY_ECONFLICT);
    CHECK_EQ(store_friend_set(s, a, b, IY_FRIEND_MUTUAL, IY_FRIEND_NONE), IY_ECONFLICT);
    CHECK_EQ(fstate(s, a, b), IY_FRIEND_OUTGOING);
    CHECK_EQ(fstate(s, b, a), IY_FRIEND_INCOMING);
    CHECK_EQ(store_friend_set(s, a, b, IY_FRIEND_OUTGOING, IY_FRIEND_OUTGOING), 0);   /* no change */

    CHECK_EQ(friend_put(s, b, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_MUTUAL);
    CHECK_EQ(fstate(s, a, b), IY_FRIEND_MUTUAL);
    CHECK_EQ(fstate(s, b, a), IY_FRIEND_MUTUAL);
    CHECK_EQ(friend_put(s, a, b, &st), 0);
    CHECK_EQ(st, IY_FRIEND_MUTUAL);
    CHECK_EQ(friend_put(s, b, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_MUTUAL);
    /* A withdrawal decided on the old state (a's request) loses to the acceptance. */
    CHECK_EQ(store_friend_set(s, a, b, IY_FRIEND_OUTGOING, IY_FRIEND_NONE), IY_ECONFLICT);
    CHECK_EQ(store_friend_set(s, b, a, IY_FRIEND_INCOMING, IY_FRIEND_MUTUAL), IY_ECONFLICT);
    CHECK_EQ(fstate(s, a, b), IY_FRIEND_MUTUAL);

    /* More of a's: d asks a, a asks c; lists ascending and kept across reopen. */
    CHECK_EQ(friend_put(s, d, a, &st), 0);
    CHECK_EQ(friend_put(s, a, c, &st), 0);
    CHECK_EQ(friend_put(s, c, d, &st), 0);
    s = reopen(s);
    CHECK_EQ(store_friend_list(s, a, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 1 && f[0] == b);
    CHECK(ni == 1 && in[0] == d);
    CHECK(no == 1 && out[0] == c);
    iy_free(f); iy_free(in); iy_free(out);
    CHECK_EQ(store_friend_list(s, d, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 0 && ni == 1 && in[0] == c && no == 1 && out[0] == a);
    iy_free(f); iy_free(in); iy_free(out);
    /* Ascending with several. */
    CHECK_EQ(friend_put(s, b, c, &st), 0);
    CHECK_EQ(friend_put(s, b, d, &st), 0);
    CHECK_EQ(store_friend_list(s, b, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 1 && f[0] == a && ni == 0 && no == 2 && out[0] == c && out[1] == d);
    iy_free(f); iy_free(in); iy_free(out);
    CHECK_EQ(friend_end(s, b, c), 0);
    CHECK_EQ(friend_end(s, b, d), 0);

    /* Ending a friendship from either side, for both, idempotently. */
    CHECK_EQ(friend_end(s, b, a), 0);
    CHECK_EQ(fstate(s, a, b), IY_FRIEND_NONE);
    CHECK_EQ(fstate(s, b, a), IY_FRIEND_NONE);
    CHECK_EQ(friend_end(s, b, a), 0);
    CHECK_EQ(friend_end(s, a, b), 0);
    /* ... and a request: withdrawn by the asker (a -> c), declined by the asked (a <- d). */
    CHECK_EQ(friend_end(s, a, c), 0);
    CHECK_EQ(fstate(s, c, a), IY_FRIEND_NONE);
    CHECK_EQ(friend_end(s, a, d), 0);
    CHECK_EQ(fstate(s, d, a), IY_FRIEND_NONE);
    s = reopen(s);
    CHECK_EQ(store_friend_list(s, a, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 0 && ni == 0 && no == 0 && !f && !in && !out);
    CHECK_EQ(fstate(s, c, d), IY_FRIEND_OUTGOING);       /* others untouched */
    CHECK_EQ(fstate(s, d, c), IY_FRIEND_INCOMING);
    /* After an end, a new request starts over. */
    CHECK_EQ(friend_put(s, b, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_OUTGOING);
    CHECK_EQ(fstate(s, a, b), IY_FRIEND_INCOMING);
    done(s);
}

/* ---- blocks -------------------------------------------------------------------------------- */

static void test_blocks(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    uint64_t *ids;
    size_t n;
    iy_stored o;

    CHECK_EQ(store_block_set(s, a, a, 1), IY_EINVAL);
    CHECK_EQ(store_block_set(s, a, 999, 1), IY_ENOTFOUND);
    CHECK_EQ(store_block_set(s, a, 999, 0), IY_ENOTFOUND);
    CHECK_EQ(store_blocked(s, a, b), 0);
    CHECK_EQ(store_block_list(s, a, &ids, &n), 0);
    CHECK(n == 0 && ids == NULL);

    /* b and a talk, then a blocks b: one direction, idempotent. */
    CHECK_EQ(send1(s, b, 0, a, "hi", "b-1", &o), 0);
    uint64_t ch = o.msg.channel;
    CHECK_EQ(store_block_set(s, a, b, 1), 0);
    CHECK_EQ(store_block_set(s, a, b, 1), 0);
    CHECK_EQ(store_blocked(s, a, b), 1);
    CHECK_EQ(store_blocked(s, b, a), 0);
    /* b sends to a neither by user nor by channel; nothing is stored. */
    uint64_t count = store_message_count(s), pos_a = user_pos(s, a);
    CHECK_EQ(send1(s, b, 0, a, "again", "b-2", &o), IY_EFORBIDDEN);
    CHECK_EQ(send1(s, b, ch, 0, "again", "b-3", &o), IY_EFORBIDDEN);
    CHECK_EQ(store_message_count(s), count);
    CHECK_EQ(user_pos(s, a), pos_a);
    /* A cmid stored before the block still answers with the original. */
    CHECK_EQ(send1(s, b, 0, a, "hi", "b-1", &o), IY_EEXIST);
    /* a still writes to b. */
    CHECK_EQ(send1(s, a, ch, 0, "from a", "a-1", &o), 0);
    CHECK_EQ(send1(s, a, 0, b, "from a", "a-2", &o), 0);

    /* c blocks b before they ever talked: b cannot start a direct chat. */
    CHECK_EQ(store_block_set(s, c, b, 1), 0);
    CHECK_EQ(send1(s, b, 0, c, "hello", "b-4", &o), IY_EFORBIDDEN);
    /* In one round, the blocked sends are refused and the others commit. */
    iy_send mixed[3] = { { b, 0, a, "x", 1, "m-1", 0, 0, 0, 0, NULL, 0 }, { c, 0, a, "y", 1, "m-2", 0, 0, 0, 0, NULL, 0 },
                         { b, ch, 0, "z", 1, "m-3", 0, 0, 0, 0, NULL, 0 } };
    store_round *r = round_of(s, mixed, 3);
    CHECK_EQ(post_send(r, &mixed[0], &o), IY_EFORBIDDEN);
    CHECK_EQ(post_send(r, &mixed[1], &o), 0);
    CHECK_EQ(post_send(r, &mixed[2], &o), IY_EFORBIDDEN);
    CHECK_EQ(store_round_count(r), 1);
    CHECK_EQ(store_round_commit(r), 0);

    CHECK_EQ(store_block_list(s, a, &ids, &n), 0);
    CHECK(n == 1 && ids[0] == b);
    iy_free(ids);
    CHECK_EQ(store_block_set(s, a, c, 1), 0);
    CHECK_EQ(store_block_list(s, a, &ids, &n), 0);
    CHECK(n == 2 && ids[0] == (b < c ? b : c) && ids[1] == (b < c ? c : b));
    iy_free(ids);

    /* Kept across a restart; reversible. */
    s = reopen(s);
    CHECK_EQ(store_blocked(s, a, b), 1);
    CHECK_EQ(send1(s, b, ch, 0, "still", "b-5", &o), IY_EFORBIDDEN);
    CHECK_EQ(store_block_set(s, a, b, 0), 0);
    CHECK_EQ(store_block_set(s, a, b, 0), 0);
    CHECK_EQ(store_blocked(s, a, b), 0);
    CHECK_EQ(send1(s, b, ch, 0, "back", "b-6", &o), 0);
    CHECK_EQ(store_block_list(s, a, &ids, &n), 0);
    CHECK(n == 1 && ids[0] == c);
    iy_free(ids);
    done(s);
}

/* Mutes: per member and channel, kept, reversible, and in a round's view. */
static void test_mutes(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb");
    iy_stored o;
    CHECK_EQ(send1(s, a, 0, b, "hi", "m-1", &o), 0);
    uint64_t ch = o.msg.channel;
    CHECK_EQ(store_muted(s, b, ch), 0);
    CHECK_EQ(store_mute_set(s, b, ch, 1), 0);
    CHECK_EQ(store_mute_set(s, b, ch, 1), 0);
    CHECK_EQ(store_muted(s, b, ch), 1);
    CHECK_EQ(store_muted(s, a, ch), 0);
    s = reopen(s);
    CHECK_EQ(store_muted(s, b, ch), 1);
    iy_send in = { a, ch, 0, "again", 5, "m-2", 0, 0, 0, 0, NULL, 0 };
    store_round *r = round_of(s, &in, 1);
    CHECK_EQ(store_round_muted(r, b, ch), 1);
    CHECK_EQ(store_round_muted(r, a, ch), 0);
    CHECK_EQ(post_send(r, &in, &o), 0);
    CHECK_EQ(store_round_commit(r), 0);
    CHECK_EQ(store_mute_set(s, b, ch, 0), 0);
    CHECK_EQ(store_muted(s, b, ch), 0);
    in.cmid = "m-3";
    r = round_of(s, &in, 1);
    CHECK_EQ(store_round_muted(r, b, ch), 0);
    store_round_abort(r);
    done(s);
}

/* Mentions: resolved in the round from the texts' @usernames, members only,
 * never the sender; stored with the message on both backends. */
static void test_mentions(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "ann"), b = mkuser(s, "bob"), c = mkuser(s, "cyd");
    iy_stored o;
    CHECK_EQ(send1(s, a, 0, b, "hey @BOB and @cyd and @ann and @nobody", "t-1", &o), 0);
    CHECK(o.msg.nmentions == 1 && o.msg.mentions[0] == b);   /* cyd is no member; ann sent it */
    uint64_t ch = o.msg.channel;
    CHECK_EQ(send1(s, b, ch, 0, "plain", "t-2", &o), 0);
    CHECK_EQ(o.msg.nmentions, 0);
    s = reopen(s);
    iy_msg_list l = { 0 };
    CHECK_EQ(store_history(s, ch, 0, 0, 10, &l), 0);
    CHECK_EQ(l.n, 2);
    if (l.n == 2) {
        CHECK(l.v[0].nmentions == 1 && l.v[0].mentions[0] == b);
        CHECK_EQ(l.v[1].nmentions, 0);
    }
    iy_msg_list_clear(&l);
    (void)c;
    done(s);
}

/* An edit or delete of message id by from, in a round of its own. */
static int change1(store *s, uint64_t from, int event, uint64_t id, const char *text, iy_stored *out)
{
    iy_send in = { .from = from, .text = text, .text_len = strlen(text), .cmid = "", .event = event, .target = id };
    return send_in(s, &in, out);
}

/* The message of ch at seq, from history: 0 with *m (iy_msg_clear), or an error. */
static int msg_at(store *s, uint64_t ch, uint64_t seq, iy_msg *m)
{
    iy_msg_list l = { 0 };
    int rc = store_history(s, ch, 0, seq - 1, 1, &l);
    if (rc == 0 && (l.n != 1 || l.v[0].seq != seq)) rc = IY_ENOTFOUND;
    if (rc == 0) {
        *m = l.v[0];
        memset(&l.v[0], 0, sizeof l.v[0]);   /* m owns its text and reactions now */
    }
    iy_msg_list_clear(&l);
    return rc;
}

static void test_edit_delete(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "ann"), b = mkuser(s, "bob"), c = mkuser(s, "cyd"), x = mkuser(s, "xen");
    iy_stored o, e;
    iy_msg m;
    CHECK_EQ(send1(s, a, 0, b, "hello @bob", "e-1", &o), 0);
    uint64_t ch = o.msg.channel, id = o.msg.id, pos_b = pos_of(&o, b);

    /* the author edits: an event with the next seq and pos, the message shows the new text */
    CHECK_EQ(change1(s, a, IY_EV_EDITED, id, "hello, Bob", &e), 0);
    CHECK_EQ(e.msg.event, IY_EV_EDITED);
    CHECK_EQ(e.msg.subject, id);
    CHECK_EQ(e.msg.channel, ch);
    CHECK_EQ(e.msg.seq, 2);
    CHECK_EQ(pos_of(&e, b), pos_b + 1);
    CHECK_EQ(e.target_seq, 1);
    CHECK_EQ(e.target_from, a);
    if (msg_at(s, ch, 1, &m) == 0) {
        CHECK_MEM(m.text, m.text_len, "hello, Bob");
        CHECK_EQ(m.edited_ms, e.msg.ts);
        CHECK_EQ(m.deleted, 0);
        CHECK(m.nmentions == 1 && m.mentions[0] == b);   /* an edit keeps the mentions */
        iy_msg_clear(&m);
    } else CHECK(0);
    if (msg_at(s, ch, 2, &m) == 0) {
        CHECK_EQ(m.event, IY_EV_EDITED);
        CHECK_EQ(m.subject, id);
        CHECK_MEM(m.text, m.text_len, "hello, Bob");
        iy_msg_clear(&m);
    } else CHECK(0);

    /* who may: someone else's edit or delete is forbidden, a stranger learns nothing */
    CHECK_EQ(change1(s, b, IY_EV_EDITED, id, "mine now", &e), IY_EFORBIDDEN);
    CHECK_EQ(change1(s, b, IY_EV_DELETED, id, "", &e), IY_EFORBIDDEN);
    CHECK_EQ(change1(s, x, IY_EV_DELETED, id, "", &e), IY_ENOTFOUND);
    CHECK_EQ(change1(s, a, IY_EV_EDITED, 12345, "no such", &e), IY_ENOTFOUND);
    CHECK_EQ(change1(s, a, IY_EV_EDITED, e.msg.id ? e.msg.id : 1, "x", &e), IY_ENOTFOUND);
    /* an event is not a message one can change */
    iy_msg_list l = { 0 };
    CHECK_EQ(store_history(s, ch, 0, 1, 1, &l), 0);
    if (l.n == 1) CHECK_EQ(change1(s, a, IY_EV_DELETED, l.v[0].id, "", &e), IY_ENOTFOUND);
    iy_msg_list_clear(&l);

    /* the edit window, as the rules see it (now_ms given) */
    {
        iy_send in = { .from = a, .text = "late", .text_len = 4, .cmid = "", .event = IY_EV_EDITED, .target = id };
        store_round *r = round_of(s, &in, 1);
        if (r) {
            CHECK_EQ(post_send_limited(r, &in, NULL, iy_id_ts(id) + IY_EDIT_WINDOW_MS + 1, &e), IY_EFORBIDDEN);
            CHECK_EQ(post_send_limited(r, &in, NULL, iy_id_ts(id) + IY_EDIT_WINDOW_MS, &e), 0);
            store_round_abort(r);
        }
    }

    /* delete: a tombstone, an event, and deleting again is not_found; survives a reopen */
    CHECK_EQ(change1(s, a, IY_EV_DELETED, id, "", &e), 0);
    CHECK_EQ(e.msg.event, IY_EV_DELETED);
    CHECK_EQ(e.msg.seq, 3);
    CHECK_EQ(change1(s, a, IY_EV_DELETED, id, "", &e), IY_ENOTFOUND);
    CHECK_EQ(change1(s, a, IY_EV_EDITED, id, "back", &e), IY_ENOTFOUND);
    s = reopen(s);
    if (msg_at(s, ch, 1, &m) == 0) {
        CHECK_EQ(m.text_len, 0);
        CHECK_EQ(m.deleted, 1);
        CHECK_EQ(m.nmentions, 0);
        CHECK(m.edited_ms > 0);
        iy_msg_clear(&m);
    } else CHECK(0);
    /* sync: every change in order, the message itself as it is now */
    iy_msg_list sl = { 0 };
    int more = 0;
    CHECK_EQ(store_sync(s, b, 0, 10, &sl, &more), 0);
    CHECK_EQ(sl.n, 3);
    if (sl.n == 3) {
        CHECK(sl.v[0].deleted && sl.v[0].id == id);
        CHECK(sl.v[1].event == IY_EV_EDITED && sl.v[2].event == IY_EV_DELETED && sl.v[2].subject == id);
    }
    iy_msg_list_clear(&sl);

    /* a group's owner may delete a member's message, not edit it; one round, in order */
    uint64_t three[2] = { b, c };
    iy_channel g;
    CHECK_EQ(mkgroup(s, a, "g", three, 2, &g), 0);
    CHECK_EQ(send1(s, c, g.id, 0, "from cyd", "e-2", &o), 0);
    CHECK_EQ(change1(s, a, IY_EV_EDITED, o.msg.id, "owner edit", &e), IY_EFORBIDDEN);
    CHECK_EQ(change1(s, b, IY_EV_DELETED, o.msg.id, "", &e), IY_EFORBIDDEN);
    iy_send two[3] = {
        { .from = c, .text = "v2", .text_len = 2, .cmid = "", .event = IY_EV_EDITED, .target = o.msg.id },
        { .from = a, .text = "", .text_len = 0, .cmid = "", .event = IY_EV_DELETED, .target = o.msg.id },
        { .from = c, .text = "v3", .text_len = 2, .cmid = "", .event = IY_EV_EDITED, .target = o.msg.id },
    };
    store_round *r = round_of(s, two, 3);
    if (r) {
        int rc[3];
        iy_stored out[3];
        post_all(r, two, 3, rc, out);
        CHECK_EQ(rc[0], 0);
        CHECK_EQ(rc[1], 0);
        CHECK_EQ(rc[2], IY_ENOTFOUND);   /* deleted earlier in the same round */
        CHECK_EQ(out[0].nmembers, 3);
        CHECK_EQ(store_round_commit(r), 0);
    }
    if (msg_at(s, g.id, o.msg.seq, &m) == 0) {
        CHECK(m.deleted && m.text_len == 0 && m.edited_ms > 0);
        iy_msg_clear(&m);
    } else CHECK(0);
    /* every message of a many-message round is found by its id (one index record per round),
     * events of the round in between do not get in the way */
    {
        iy_send many[6] = {
            { .from = a, .to = b, .text = "r1", .text_len = 2, .cmid = "m-1" },
            { .from = c, .channel = g.id, .text = "r2", .text_len = 2, .cmid = "m-2" },
            { .from = a, .channel = g.id, .text = "n", .text_len = 1, .cmid = "", .event = IY_EV_RENAMED },
            { .from = b, .to = a, .text = "r3", .text_len = 2, .cmid = "m-3" },
            { .from = b, .channel = g.id, .text = "r4", .text_len = 2, .cmid = "m-4" },
            { .from = a, .to = c, .text = "r5", .text_len = 2, .cmid = "m-5" },
        };
        store_round *rr = round_of(s, many, 6);
        int rcs[6];
        iy_stored outs[6];
        if (rr) {
            post_all(rr, many, 6, rcs, outs);
            CHECK_EQ(store_round_commit(rr), 0);
            for (int i = 0; i < 6; i++) {
                CHECK_EQ(rcs[i], 0);
                if (i == 2) continue;
                CHECK_EQ(change1(s, many[i].from, IY_EV_EDITED, outs[i].msg.id, "found", &e), 0);
            }
            CHECK_EQ(change1(s, a, IY_EV_EDITED, outs[2].msg.id, "an event", &e), IY_ENOTFOUND);
            CHECK_EQ(change1(s, a, IY_EV_EDITED, outs[5].msg.id + 1, "between", &e), IY_ENOTFOUND);
        }
    }

    /* a removed member can no longer change its messages */
    CHECK_EQ(send1(s, b, g.id, 0, "bob was here", "e-3", &o), 0);
    CHECK_EQ(event1(s, a, g.id, IY_EV_MEMBER_REMOVED, b, "", &e), 0);
    CHECK_EQ(change1(s, b, IY_EV_EDITED, o.msg.id, "after", &e), IY_ENOTFOUND);
    done(s);
}

/* Replies: a message of the same channel, not an event, not deleted; stored
 * with the message (id and seq), kept across a reopen and an edit. */
static void test_reply(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "ann"), b = mkuser(s, "bob"), c = mkuser(s, "cyd");
    iy_stored o, r1, e;
    iy_msg m;
    CHECK_EQ(send1(s, a, 0, b, "question?", "r-1", &o), 0);
    uint64_t ch = o.msg.channel;
    iy_send rep = { .from = b, .channel = ch, .text = "answer", .text_len = 6, .cmid = "r-2", .reply_to = o.msg.id };
    CHECK_EQ(send_in(s, &rep, &r1), 0);
    CHECK(r1.msg.reply_to == o.msg.id && r1.msg.reply_seq == o.msg.seq);
    /* by user, into the existing direct channel */
    iy_send rep2 = { .from = a, .to = b, .text = "thanks", .text_len = 6, .cmid = "r-3", .reply_to = r1.msg.id };
    CHECK_EQ(send_in(s, &rep2, &e), 0);
    CHECK(e.msg.reply_to == r1.msg.id && e.msg.reply_seq == r1.msg.seq && e.msg.channel == ch);
    /* not: another channel's message, an event, a deleted one, no such message, a new direct chat */
    iy_channel g;
    uint64_t two[2] = { b, c };
    CHECK_EQ(mkgroup(s, a, "g", two, 2, &g), 0);
    iy_stored go;
    CHECK_EQ(send1(s, a, g.id, 0, "in the group", "r-4", &go), 0);
    rep.cmid = "r-5", rep.reply_to = go.msg.id;
    CHECK_EQ(send_in(s, &rep, &e), IY_EINVAL);
    CHECK_EQ(event1(s, a, g.id, IY_EV_RENAMED, 0, "g2", &e), 0);
    iy_send rg = { .from = b, .channel = g.id, .text = "x", .text_len = 1, .cmid = "r-6", .reply_to = e.msg.id };
    CHECK_EQ(send_in(s, &rg, &e), IY_EINVAL);
    rg.reply_to = 4242;
    CHECK_EQ(send_in(s, &rg, &e), IY_EINVAL);
    CHECK_EQ(change1(s, a, IY_EV_DELETED, go.msg.id, "", &e), 0);
    rg.reply_to = go.msg.id;
    CHECK_EQ(send_in(s, &rg, &e), IY_EINVAL);
    iy_send fresh_dm = { .from = c, .to = a, .text = "x", .text_len = 1, .cmid = "r-7", .reply_to = o.msg.id };
    CHECK_EQ(send_in(s, &fresh_dm, &e), IY_EINVAL);
    /* a stranger's reply is forbidden, not a lesson about the message */
    rg.from = 999999, rg.channel = ch, rg.reply_to = 4242;
    CHECK(send_in(s, &rg, &e) != 0);
    /* a reply and an edit of it: both kept; across a reopen */
    CHECK_EQ(change1(s, b, IY_EV_EDITED, r1.msg.id, "answer, edited", &e), 0);
    s = reopen(s);
    if (msg_at(s, ch, r1.msg.seq, &m) == 0) {
        CHECK(m.reply_to == o.msg.id && m.reply_seq == o.msg.seq && m.edited_ms > 0);
        CHECK_MEM(m.text, m.text_len, "answer, edited");
        iy_msg_clear(&m);
    } else CHECK(0);
    iy_msg_list sl = { 0 };
    int more = 0;
    CHECK_EQ(store_sync(s, a, 0, 10, &sl, &more), 0);
    CHECK(sl.n >= 3 && sl.v[0].reply_to == 0 && sl.v[1].reply_to == o.msg.id && sl.v[2].reply_to == r1.msg.id);
    iy_msg_list_clear(&sl);
    done(s);
}

/* Reactions: one per user per emoji, counted in order; events like edits;
 * limits; gone with a delete; kept across a reopen and an edit. */
static int react1(store *s, uint64_t from, uint64_t id, const char *emoji, int on, iy_stored *out)
{
    iy_send in = { .from = from, .text = emoji, .text_len = strlen(emoji), .cmid = "",
                   .event = on ? IY_EV_REACTED : IY_EV_UNREACTED, .target = id };
    return send_in(s, &in, out);
}

static void test_reactions(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "ann"), b = mkuser(s, "bob"), c = mkuser(s, "cyd"), x = mkuser(s, "xen");
    iy_channel g;
    uint64_t two[2] = { b, c };
    CHECK_EQ(mkgroup(s, a, "g", two, 2, &g), 0);
    iy_stored o, e;
    iy_msg m;
    CHECK_EQ(send1(s, a, g.id, 0, "lunch at noon", "x-1", &o), 0);
    CHECK_EQ(react1(s, b, o.msg.id, "👍", 1, &e), 0);
    CHECK_EQ(e.msg.event, IY_EV_REACTED);
    CHECK_EQ(e.msg.subject, o.msg.id);
    CHECK_EQ(e.nmembers, 3);
    CHECK_EQ(react1(s, c, o.msg.id, "👍", 1, &e), 0);
    CHECK_EQ(react1(s, a, o.msg.id, "🎉", 1, &e), 0);
    CHECK_EQ(react1(s, b, o.msg.id, "👍", 1, &e), IY_ECONFLICT);     /* once per user per emoji */
    CHECK_EQ(react1(s, b, o.msg.id, "🎉", 0, &e), IY_ECONFLICT);     /* nothing to take back */
    CHECK_EQ(react1(s, x, o.msg.id, "👍", 1, &e), IY_ENOTFOUND);     /* a stranger */
    CHECK_EQ(react1(s, b, 4242, "👍", 1, &e), IY_ENOTFOUND);
    CHECK_EQ(react1(s, b, e.msg.id, "👍", 1, &e), IY_ENOTFOUND);    /* an event */
    s = reopen(s);
    if (msg_at(s, g.id, o.msg.seq, &m) == 0) {
        CHECK(m.reactions && m.reactions->n == 2);
        if (m.reactions && m.reactions->n == 2) {
            CHECK(strcmp(m.reactions->v[0].emoji, "👍") == 0 && m.reactions->v[0].n == 2);
            CHECK(m.reactions->v[0].users[0] == b && m.reactions->v[0].users[1] == c);
            CHECK(strcmp(m.reactions->v[1].emoji, "🎉") == 0 && m.reactions->v[1].n == 1);
        }
        CHECK_MEM(m.text, m.text_len, "lunch at noon");    /* a reaction keeps the text */
        iy_msg_clear(&m);
    } else CHECK(0);
    /* taken back: the last one of an emoji removes it; an edit keeps the rest */
    CHECK_EQ(react1(s, a, o.msg.id, "🎉", 0, &e), 0);
    CHECK_EQ(e.msg.event, IY_EV_UNREACTED);
    CHECK_EQ(react1(s, b, o.msg.id, "👍", 0, &e), 0);
    CHECK_EQ(change1(s, a, IY_EV_EDITED, o.msg.id, "lunch at one", &e), 0);
    if (msg_at(s, g.id, o.msg.seq, &m) == 0) {
        CHECK(m.reactions && m.reactions->n == 1 && m.reactions->v[0].n == 1 && m.reactions->v[0].users[0] == c);
        CHECK_MEM(m.text, m.text_len, "lunch at one");
        iy_msg_clear(&m);
    } else CHECK(0);
    /* limits: 20 different emoji per message */
    char em[IY_REACTIONS_MAX + 1][16];
    int rc = 0;
    for (int i = 1; i < IY_REACTIONS_MAX; i++) {
        snprintf(em[i], sizeof em[i], "e%d", i);
        rc |= react1(s, b, o.msg.id, em[i], 1, &e);
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(react1(s, b, o.msg.id, "one-too-many", 1, &e), IY_ETOOBIG);
    CHECK_EQ(react1(s, c, o.msg.id, "e3", 1, &e), 0);          /* an existing one still takes people */
    /* many in one round, in order; then a delete takes them all */
    iy_send many[3] = {
        { .from = a, .text = "e5", .text_len = 2, .cmid = "", .event = IY_EV_REACTED, .target = o.msg.id },
        { .from = a, .text = "e5", .text_len = 2, .cmid = "", .event = IY_EV_REACTED, .target = o.msg.id },
        { .from = a, .text = "e5", .text_len = 2, .cmid = "", .event = IY_EV_UNREACTED, .target = o.msg.id },
    };
    store_round *r = round_of(s, many, 3);
    if (r) {
        int rcs[3];
        iy_stored outs[3];
        post_all(r, many, 3, rcs, outs);
        CHECK(rcs[0] == 0 && rcs[1] == IY_ECONFLICT && rcs[2] == 0);
        CHECK_EQ(store_round_commit(r), 0);
    }
    CHECK_EQ(change1(s, a, IY_EV_DELETED, o.msg.id, "", &e), 0);
    CHECK_EQ(react1(s, b, o.msg.id, "👍", 1, &e), IY_ENOTFOUND);    /* deleted */
    s = reopen(s);
    if (msg_at(s, g.id, o.msg.seq, &m) == 0) {
        CHECK(m.deleted && m.reactions == NULL);
        iy_msg_clear(&m);
    } else CHECK(0);
    done(s);
}

/* ---- search: the indexer and the index's candidates ---------------------------- */

static void index_all(store_indexer *x)
{
    size_t done = 0;
    int guard = 0;
    do CHECK_EQ(store_indexer_step(x, &done), 0);
    while (done && ++guard < 1000);
}

/* The ids the index proposes for q among chs (at most 8), in its order. */
static size_t found(store_reader *r, const uint64_t *chs, size_t n, const char *q, uint64_t before,
                    uint64_t ids[8])
{
    store_hit *h = NULL;
    size_t nh = 0;
    CHECK_EQ(store_reader_search(r, chs, n, q, strlen(q), before, 8, &h, &nh), 0);
    for (size_t i = 0; i < nh && i < 8; i++) ids[i] = h[i].id;
    iy_free(h);
    return nh;
}

/* SQLite's own check of an FTS5 index against its content table. */
static void fts_integrity(const char *dir)
{
    char path[sizeof fx_where + 16];
    snprintf(path, sizeof path, "%s/search.sqlite", dir);
    sqlite3 *db = NULL;
    CHECK_EQ(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(db, "INSERT INTO fts (fts, rank) VALUES ('integrity-check', 1)", NULL, NULL, &err);
    CHECK_EQ(rc, SQLITE_OK);
    if (err) fprintf(stderr, "fts integrity-check: %s\n", err);
    sqlite3_free(err);
    sqlite3_close(db);
}

/* RocksDB: the index is consistent with its texts, also when batches are
 * done again (a crash after SQLite's commit lost the cursor's move with
 * the newest transactions, synchronous=NORMAL): no hit twice. */
static void search_index_redone(store *s, const uint64_t both[2])
{
    fts_integrity(fx_where);
    char path[sizeof fx_where + 16];
    snprintf(path, sizeof path, "%s/search.sqlite", fx_where);
    sqlite3 *db = NULL;
    CHECK_EQ(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ(sqlite3_exec(db, "UPDATE cursor SET last_id = 0", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    store_indexer *x = store_indexer_new(s);
    CHECK(x != NULL);
    if (!x) return;
    CHECK_EQ(store_indexer_cursor(x), 0);
    index_all(x);
    store_reader *r = store_reader_new(s);
    uint64_t ids[8];
    CHECK_EQ(found(r, both, 2, "hello", 0, ids), 1);   /* the deleted "Hello WORLD" stays out */
    CHECK_EQ(found(r, both, 2, "turtle", 0, ids), 1);
    CHECK_EQ(found(r, both, 2, "final", 0, ids), 1);
    CHECK_EQ(found(r, both, 2, "늦은", 0, ids), 1);
    store_reader_free(r);
    store_indexer_free(x);
    fts_integrity(fx_where);
}

static void test_search(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "ann"), b = mkuser(s, "bob"), c = mkuser(s, "cyd");
    iy_channel g;
    uint64_t two[2] = { b, c }, ids[8];
    CHECK_EQ(mkgroup(s, a, "g", two, 2, &g), 0);
    iy_stored ko, en, dm, fox, pct, e;
    CHECK_EQ(send1(s, a, g.id, 0, "안녕하세요 여러분", "s-1", &ko), 0);
    CHECK_EQ(send1(s, b, g.id, 0, "Hello WORLD", "s-2", &en), 0);
    CHECK_EQ(send1(s, a, 0, c, "hello there, world", "s-3", &dm), 0);
    CHECK_EQ(send1(s, b, g.id, 0, "the quick brown fox", "s-4", &fox), 0);
    CHECK_EQ(send1(s, a, g.id, 0, "100% sure_thing", "s-5", &pct), 0);
    store_indexer *x = store_indexer_new(s);
    CHECK(x != NULL);
    if (!x) { done(s); return; }
    CHECK_EQ(store_indexer_cursor(x), 0);
    index_all(x);
    CHECK_EQ(store_indexer_cursor(x), pct.msg.id);
    store_reader *r = store_reader_new(s);
    uint64_t both[2] = { g.id, dm.msg.channel };
    /* Korean in two code points (no trigram: the scan), inside a word */
    CHECK_EQ(found(r, both, 2, "안녕", 0, ids), 1);
    CHECK_EQ(ids[0], ko.msg.id);
    CHECK_EQ(found(r, both, 2, "하세요", 0, ids), 1);
    /* case-insensitive for Latin letters; only the channels asked */
    CHECK_EQ(found(r, both, 2, "hello", 0, ids), 2);
    CHECK_EQ(found(r, both, 1, "HELLO", 0, ids), 1);
    CHECK_EQ(ids[0], en.msg.id);
    CHECK_EQ(found(r, both, 2, "world", dm.msg.id, ids), 1);   /* before: older only */
    CHECK_EQ(ids[0], en.msg.id);
    CHECK_EQ(found(r, both, 2, "quick brown", 0, ids), 1);
    CHECK_EQ(found(r, both, 2, "brown quick", 0, ids), 0);        /* a substring, not words */
    /* LIKE's and FTS's own syntax is literal text */
    CHECK_EQ(found(r, both, 2, "0%", 0, ids), 1);
    CHECK_EQ(found(r, both, 2, "e_t", 0, ids), 1);
    CHECK_EQ(found(r, both, 2, "%%", 0, ids), 0);
    CHECK_EQ(found(r, both, 2, "\"quick", 0, ids), 0);
    CHECK_EQ(found(r, both, 2, "fox OR hello", 0, ids), 0);
    CHECK_EQ(found(r, NULL, 0, "hello", 0, ids), 0);
    /* an edit re-indexes the new text; a delete drops it; events are not texts */
    CHECK_EQ(change1(s, b, IY_EV_EDITED, fox.msg.id, "the slow green turtle", &e), 0);
    CHECK_EQ(change1(s, b, IY_EV_DELETED, en.msg.id, "", &e), 0);
    CHECK_EQ(event1(s, a, g.id, IY_EV_RENAMED, 0, "hello group", &e), 0);
    index_all(x);
    CHECK_EQ(found(r, both, 2, "quick", 0, ids), 0);
    CHECK_EQ(found(r, both, 2, "turtle", 0, ids), 1);
    CHECK_EQ(ids[0], fox.msg.id);
    CHECK_EQ(found(r, both, 1, "hello", 0, ids), 0);
    /* the cursor survives a restart: only what came after is indexed */
    uint64_t cur = store_indexer_cursor(x);
    store_indexer_free(x);
    store_reader_free(r);
    s = reopen(s);
    iy_stored late;
    CHECK_EQ(send1(s, c, g.id, 0, "late news 늦은 소식", "s-6", &late), 0);
    x = store_indexer_new(s);
    CHECK(x != NULL);
    if (!x) { done(s); return; }
    CHECK_EQ(store_indexer_cursor(x), cur);
    index_all(x);
    CHECK_EQ(store_indexer_cursor(x), late.msg.id);
    r = store_reader_new(s);
    CHECK_EQ(found(r, both, 2, "늦은", 0, ids), 1);
    CHECK_EQ(found(r, both, 2, "turtle", 0, ids), 1);
    /* a message edited before it was indexed is indexed as it is now */
    iy_stored early;
    CHECK_EQ(send1(s, a, g.id, 0, "first draft", "s-7", &early), 0);
    CHECK_EQ(change1(s, a, IY_EV_EDITED, early.msg.id, "final words", &e), 0);
    index_all(x);
    CHECK_EQ(found(r, both, 2, "draft", 0, ids), 0);
    CHECK_EQ(found(r, both, 2, "final", 0, ids), 1);
    store_reader_free(r);
    store_indexer_free(x);
    if (!fx_is_pg()) {
        search_index_redone(s, both);
        done(s);
        return;
    }
    /* PostgreSQL: messages of a node number nobody holds any more (a node
     * gone, the admin tool) are indexed by the live node with the smallest
     * number. */
    store_free(s);
    store *old = NULL, *live = NULL;
    CHECK_EQ(fx_open("gone-node", &old), 0);
    if (!old) return;
    iy_stored o1;
    CHECK_EQ(send1(old, a, g.id, 0, "orphaned words", "s-8", &o1), 0);
    store_free(old);
    CHECK_EQ(fx_open(FX_NODE, &live), 0);
    if (!live) return;
    x = store_indexer_new(live);
    index_all(x);
    r = store_reader_new(live);
    CHECK_EQ(found(r, both, 2, "orphaned", 0, ids), 1);
    store_reader_free(r);
    store_indexer_free(x);
    done(live);
}

/* store_copy (backups): a copy taken while the store is open opens as the
 * store was at that moment; its search index is the one indexed before
 * the copy (never ahead of its messages) and catches up from its cursor;
 * later writes are not in it. A store without an index copies without
 * one. PostgreSQL has nothing to copy (IY_EINVAL: pg_dump). */
static void test_copy(void)
{
    store *s = fresh();
    char dir[600], cmd[700];
    snprintf(dir, sizeof dir, "%s-copy", fx_where);
    store_copy_info info = { 99, 99 };
    if (!fx_is_rocks()) {
        CHECK_EQ(store_copy(s, dir, &info), IY_EINVAL);
        done(s);
        return;
    }
    uint64_t a = mkuser(s, "ann"), b = mkuser(s, "bob");
    iy_stored m1, m2, m3;
    CHECK_EQ(mkdir(dir, 0700), 0);
    CHECK_EQ(store_copy(s, dir, &info), 0);            /* no index yet */
    CHECK_EQ(info.index, 0);
    CHECK_EQ(info.format, store_data_format());
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);

    CHECK_EQ(send1(s, a, 0, b, "indexed before the copy", "c-1", &m1), 0);
    store_indexer *x = store_indexer_new(s);
    CHECK(x != NULL);
    if (!x) { done(s); return; }
    index_all(x);
    CHECK_EQ(send1(s, a, 0, b, "stored, not yet indexed", "c-2", &m2), 0);
    CHECK_EQ(mkdir(dir, 0700), 0);
    CHECK_EQ(store_copy(s, dir, &info), 0);
    CHECK_EQ(info.index, 1);
    CHECK_EQ(send1(s, a, 0, b, "after the copy", "c-3", &m3), 0);
    store_indexer_free(x);

    store_config cc = { dir, FX_NODE, 1, 0, 0 };
    store *c = NULL;
    CHECK_EQ(store_open(&cc, &c), 0);
    if (!c) { done(s); return; }
    iy_msg_list l = { 0 };
    CHECK_EQ(store_history(c, m1.msg.channel, 0, 0, 10, &l), 0);
    CHECK_EQ(l.n, 2);                                  /* m1, m2; not m3 */
    for (size_t i = 0; i < l.n; i++) CHECK(l.v[i].id != m3.msg.id);
    iy_msg_list_clear(&l);
    store_indexer *cx = store_indexer_new(c);
    CHECK(cx != NULL);
    if (cx) {
        CHECK_EQ(store_indexer_cursor(cx), m1.msg.id);  /* the index as it was copied */
        index_all(cx);
        CHECK_EQ(store_indexer_cursor(cx), m2.msg.id);  /* caught up with the copy, no further */
        store_reader *r = store_reader_new(c);
        uint64_t ch = m1.msg.channel, ids[8];
        CHECK_EQ(found(r, &ch, 1, "not yet indexed", 0, ids), 1);
        CHECK_EQ(found(r, &ch, 1, "after the copy", 0, ids), 0);
        store_reader_free(r);
        store_indexer_free(cx);
    }
    store_free(c);
    CHECK_EQ(system(cmd), 0);
    done(s);
}

static void test_attachments(void)
{
    store *s = fresh();
    uint64_t a = mkuser(s, "ann");
    iy_attachment at = { .id = store_new_id(s), .uploader = a, .size = 1234, .created_ms = 1700000000000LL,
                         .thumb = 1 };
    strcpy(at.type, "image/png");
    strcpy(at.name, "사진 1.png");
    CHECK_EQ(store_attachment_put(s, &at), 0);
    CHECK_EQ(store_attachment_put(s, &at), IY_ECONFLICT);
    s = reopen(s);
    store_reader *r = store_reader_new(s);
    iy_attachment got;
    CHECK_EQ(store_reader_attachment(r, at.id, &got), 0);
    CHECK(got.id == at.id && got.uploader == a && got.channel == 0 && got.message == 0);
    CHECK(got.size == 1234 && got.created_ms == at.created_ms && got.thumb == 1);
    CHECK(strcmp(got.type, "image/png") == 0 && strcmp(got.name, "사진 1.png") == 0);
    CHECK_EQ(store_reader_attachment(r, at.id + 1, &got), IY_ENOTFOUND);
    store_reader_free(r);

    /* Sent with a message: bound to it, shown by it, once only, the sender's own. */
    uint64_t b = mkuser(s, "bob"), c = mkuser(s, "cyd");
    iy_channel g;
    uint64_t two[2] = { b, c };
    CHECK_EQ(mkgroup(s, a, "g", two, 2, &g), 0);
    iy_attachment bobs = { .id = store_new_id(s), .uploader = b, .size = 5 };
    strcpy(bobs.type, "text/plain");
    strcpy(bobs.name, "b.txt");
    CHECK_EQ(store_attachment_put(s, &bobs), 0);
    uint64_t one[1] = { at.id }, theirs[1] = { bobs.id }, twice[2] = { at.id, at.id }, none[1] = { 4242 };
    iy_send in = { .from = a, .channel = g.id, .text = "", .text_len = 0, .cmid = "att-1", .attachments = one,
                   .nattachments = 1 };
    iy_stored o, e;
    iy_send bad = in;
    bad.cmid = "att-x";
    bad.attachments = theirs;
    CHECK_EQ(send_in(s, &bad, &e), IY_EINVAL);          /* someone else's upload */
    bad.attachments = none;
    CHECK_EQ(send_in(s, &bad, &e), IY_EINVAL);          /* no such upload */
    bad.attachments = twice;
    bad.nattachments = 2;
    CHECK_EQ(send_in(s, &bad, &e), IY_EINVAL);          /* named twice */
    memset(&o, 0, sizeof o);
    CHECK_EQ(send_in(s, &in, &o), 0);
    CHECK(o.msg.atts && o.msg.atts->n == 1 && o.msg.atts->v[0].id == at.id);
    iy_free(o.msg.atts);
    bad = in;
    bad.cmid = "att-2";
    CHECK_EQ(send_in(s, &bad, &e), IY_EINVAL);          /* sent already */
    /* two sends of one upload in one round: the first takes it */
    iy_attachment at2 = at;
    at2.id = store_new_id(s);
    CHECK_EQ(store_attachment_put(s, &at2), 0);
    uint64_t one2[1] = { at2.id };
    iy_send pair[2] = { in, in };
    pair[0].cmid = "att-3";
    pair[1].cmid = "att-4";
    pair[0].attachments = pair[1].attachments = one2;
    store_round *rd = round_of(s, pair, 2);
    int rcs[2];
    iy_stored outs[2];
    memset(outs, 0, sizeof outs);
    post_all(rd, pair, 2, rcs, outs);
    CHECK_EQ(store_round_commit(rd), 0);
    CHECK_EQ(rcs[0], 0);
    CHECK_EQ(rcs[1], IY_EINVAL);
    iy_free(outs[0].msg.atts);
    iy_free(outs[1].msg.atts);
    s = reopen(s);
    iy_msg m;
    if (msg_at(s, g.id, o.msg.seq, &m) == 0) {
        CHECK(m.atts && m.atts->n == 1);
        if (m.atts && m.atts->n == 1) {
            CHECK(m.atts->v[0].id == at.id && m.atts->v[0].size == 1234 && m.atts->v[0].thumb == 1);
            CHECK(strcmp(m.atts->v[0].type, "image/png") == 0 && strcmp(m.atts->v[0].name, "사진 1.png") == 0);
        }
        CHECK_EQ(m.text_len, 0);
        iy_msg_clear(&m);
    } else CHECK(0);
    r = store_reader_new(s);
    CHECK_EQ(store_reader_attachment(r, at.id, &got), 0);
    CHECK(got.channel == g.id && got.message == o.msg.id);
    store_reader_free(r);
    /* an edit keeps them, a delete takes them away */
    CHECK_EQ(change1(s, a, IY_EV_EDITED, o.msg.id, "a caption", &e), 0);
    if (msg_at(s, g.id, o.msg.seq, &m) == 0) {
        CHECK(m.atts && m.atts->n == 1);
        CHECK_MEM(m.text, m.text_len, "a caption");
        iy_msg_clear(&m);
    } else CHECK(0);
    CHECK_EQ(change1(s, a, IY_EV_DELETED, o.msg.id, "", &e), 0);
    if (msg_at(s, g.id, o.msg.seq, &m) == 0) {
        CHECK(m.atts == NULL && m.deleted);
        iy_msg_clear(&m);
    } else CHECK(0);
    r = store_reader_new(s);
    CHECK_EQ(store_reader_attachment(r, at.id, &got), 0);
    CHECK(got.channel == IY_ATTACH_GONE && got.message == o.msg.id);   /* nobody fetches it any more */
    store_reader_free(r);
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
    CHECK_EQ(mkgroup(s, a, "g", three, 3, &g), 0);
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

    /* A batch (presence transitions of many users): a user may repeat, the
     * newest value stays; an empty batch is nothing. */
    uint64_t bu[4] = { c, a, c, d };
    int64_t bm[4] = { t + 10, t + 20, t + 30, t + 40 };
    CHECK_EQ(store_last_active_set_many(s, bu, bm, 4), 0);
    CHECK_EQ(store_last_active_set_many(s, bu, bm, 0), 0);
    s = reopen(s);
    CHECK_EQ(store_last_active_get(s, a, &ms), 0);
    CHECK_EQ(ms, t + 20);
    CHECK_EQ(store_last_active_get(s, c, &ms), 0);
    CHECK_EQ(ms, t + 30);
    CHECK_EQ(store_last_active_get(s, d, &ms), 0);
    CHECK_EQ(ms, t + 40);
    CHECK_EQ(store_last_active_get(s, b, &ms), 0);
    CHECK_EQ(ms, t - 5000);                          /* not in the batch */

    /* Friends of many at once: mutual ones only, by user then friend, a
     * repeated user once. */
    int st;
    CHECK_EQ(friend_put(s, a, b, &st), 0);
    CHECK_EQ(friend_put(s, b, a, &st), 0);          /* a-b mutual */
    CHECK_EQ(friend_put(s, a, d, &st), 0);
    CHECK_EQ(friend_put(s, d, a, &st), 0);          /* a-d mutual */
    CHECK_EQ(friend_put(s, c, a, &st), 0);          /* c asks a: not a friend yet */
    uint64_t *pairs = (uint64_t *)1;
    size_t np = 9;
    uint64_t who[4] = { d, a, c, a };
    CHECK_EQ(store_friends_of(s, who, 4, &pairs, &np), 0);
    CHECK_EQ(np, 3);
    uint64_t f1 = b < d ? b : d, f2 = b < d ? d : b;   /* a's friends, ascending */
    uint64_t want[6] = { a, f1, a, f2, d, a };
    if (d < a) {   /* ascending by user: d's pair first */
        uint64_t w2[6] = { d, a, a, f1, a, f2 };
        memcpy(want, w2, sizeof want);
    }
    CHECK(pairs && memcmp(pairs, want, sizeof want) == 0);
    iy_free(pairs);
    CHECK_EQ(store_friends_of(s, &c, 1, &pairs, &np), 0);
    CHECK(np == 0 && pairs == NULL);
    CHECK_EQ(store_friends_of(s, who, 0, &pairs, &np), 0);
    CHECK(np == 0 && pairs == NULL);
    done(s);
}

/* Throughput of the steady state: 2,000 established pairs among 1,000
 * users, 200 rounds of 100 direct messages of 100 bytes, each with a cmid.
 * Printed, not asserted: the machine is shared. */
static void bench(void)
{
    store *s = fresh();
    enum { USERS = 1000, PAIRS = 2000, ROUNDS = 200, PER = 100 };
    uint64_t *u = iy_malloc(USERS * sizeof *u);
    uint64_t (*pair)[2] = iy_malloc(PAIRS * sizeof *pair);
    iy_send *in = iy_malloc(PAIRS * sizeof *in);
    char name[16], (*cmid)[24] = iy_malloc(PER * sizeof *cmid), text[100];
    for (int i = 0; i < USERS; i++) {
        snprintf(name, sizeof name, "b%d", i);
        u[i] = mkuser(s, name);
    }
    memset(text, 'x', sizeof text);
    iy_stored *o = iy_malloc(sizeof *o);
    unsigned r = 12345;
    int errs = 0;
    for (int i = 0; i < PAIRS; i++) {       /* create the channels, untimed */
        r = r * 1103515245 + 12345;
        int x = (int)(r >> 8) % USERS, y = (x + 1 + (int)(r >> 20) % (USERS - 1)) % USERS;
        pair[i][0] = u[x];
        pair[i][1] = u[y];
        in[i] = (iy_send){ u[x], 0, u[y], text, sizeof text, "", 0, 0, 0, 0, NULL, 0 };
    }
    store_round *rd = round_of(s, in, PAIRS);
    for (int i = 0; rd && i < PAIRS; i++) if (post_send(rd, &in[i], o) != 0) errs++;
    if (!rd || store_round_commit(rd) != 0) errs++;

    struct timespec t0, t1, t2, c0, c1;
    double secs = 0, commit_secs = 0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    for (int bi = 0; bi < ROUNDS; bi++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < PER; i++) {
            r = r * 1103515245 + 12345;
            int p = (int)(r >> 8) % PAIRS, way = (r >> 4) & 1;
            snprintf(cmid[i], sizeof cmid[i], "m%d", bi * PER + i);
            in[i] = (iy_send){ pair[p][way], 0, pair[p][!way], text, sizeof text, cmid[i], 0, 0, 0, 0, NULL, 0 };
        }
        rd = NULL;
        if (store_round_begin(s, in, PER, &rd) != 0) {
            errs++;
            continue;
        }
        for (int i = 0; i < PER; i++) if (post_send(rd, &in[i], o) != 0) errs++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (store_round_commit(rd) != 0) errs++;
        clock_gettime(CLOCK_MONOTONIC, &t2);
        secs += (double)(t2.tv_sec - t0.tv_sec) + (double)(t2.tv_nsec - t0.tv_nsec) / 1e9;
        commit_secs += (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    CHECK_EQ(errs, 0);
    CHECK_EQ(store_message_count(s), PAIRS + ROUNDS * PER);
    printf("  store bench (%s): %d direct messages, %d rounds: %.0f messages/s "
           "(%.0f%% of the time in commit; %.1f us CPU per message in this process)\n", fx_name(),
           ROUNDS * PER, ROUNDS, ROUNDS * PER / secs, 100 * commit_secs / secs,
           cpu * 1e6 / (ROUNDS * PER));
    iy_free(o);
    iy_free(cmid);
    iy_free(in);
    iy_free(pair);
    iy_free(u);
    done(s);
}

static void suite(void)
{
    test_users();
    test_sessions();
    test_settings();
    test_ids();
    test_format_version();
    test_direct();
    test_cmid();
    test_abort();
    test_failed_commit();
    test_history_sync();
    test_groups();
    test_reopen_and_big();
    test_events();
    test_events_full();
    test_events_round();
    test_event_fields();
    test_read_state();
    test_friends();
    test_password();
    test_blocks();
    test_mutes();
    test_mentions();
    test_edit_delete();
    test_reply();
    test_reactions();
    test_search();
    test_copy();
    test_attachments();
    test_share_and_presence();
    bench();
}

int main(void)
{
    return fx_run("store", suite);
}
