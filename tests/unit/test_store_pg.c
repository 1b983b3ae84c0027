/* test_store_pg.c — the PostgreSQL backend (store/pg) against the store
 * contract (store.h): users, sessions, settings, groups, friends, read
 * state, commit rounds (seq/pos, direct channels, membership events, cmid
 * idempotency, failed commits), readers, the push outbox with leases
 * across two nodes, node numbers, concurrency of two nodes, the schema
 * version check, a multi-host URI, unavailability (closed port, silent
 * server, server stopped, backend hung) and a throughput print.
 *
 * Needs a PostgreSQL server: IYAGI_TEST_PG_URL (a superuser URL, e.g. from
 * `scripts/pg-throwaway.sh start DIR`); without it the test prints a line
 * and passes. Each case gets a database of its own, dropped at the end.
 * With IYAGI_TEST_PG_DIR (the throwaway's DIR) the outage cases also stop
 * and restart that server (scripts/pg-throwaway.sh down/up; run from the
 * repository root).
 * IYAGI_TEST_PG_ROUNDS sets the rounds of each node in the two-node case
 * (default 2000); IYAGI_TEST_PG_KEEP=1 keeps the databases for a look.
 *
 * The rounds are driven the way the chat core drives them: the rules
 * (model/rules.h) run on the round's view, then store_round_append. */
#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "t.h"
#include "base/alloc.h"
#include "base/err.h"
#include "model/rules.h"
#include "store/store.h"

static const char *base_url;     /* IYAGI_TEST_PG_URL */
static const char *pg_dir;       /* IYAGI_TEST_PG_DIR, or NULL */
static char dbs[32][64];         /* databases made, dropped at the end */
static int ndbs;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the server ------------------------------------------------------------ */

/* A blocking admin connection to url (exits the test if impossible). */
static PGconn *admin(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "test_store_pg: cannot connect to %s: %s", url, PQerrorMessage(c));
        exit(1);
    }
    return c;
}

/* Runs sql on url; returns the first value of the first row as a number (0 if none). */
static long long admin_sql(const char *url, const char *sql)
{
    PGconn *c = admin(url);
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fprintf(stderr, "test_store_pg: %s: %s", sql, PQresultErrorMessage(r));
    long long v = st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)
                      ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    PQfinish(c);
    return v;
}

/* base_url with its database replaced by name, into out. */
static void url_for(char *out, size_t cap, const char *name)
{
    const char *p = strstr(base_url, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    if (!p) {
        snprintf(out, cap, "%s/%s", base_url, name);
        return;
    }
    const char *q = strchr(p, '?');
    snprintf(out, cap, "%.*s/%s%s", (int)(p - base_url), base_url, name, q ? q : "");
}

/* A fresh, empty database: its URL into url[256]. */
static void fresh_db(char url[256])
{
    char sql[128];
    if (ndbs == (int)(sizeof dbs / sizeof dbs[0])) {
        fprintf(stderr, "test_store_pg: too many databases\n");
        exit(1);
    }
    snprintf(dbs[ndbs], sizeof dbs[ndbs], "iyagi_test_%d_%d", (int)getpid(), ndbs);
    snprintf(sql, sizeof sql, "CREATE DATABASE %.63s", dbs[ndbs]);
    admin_sql(base_url, sql);
    url_for(url, 256, dbs[ndbs]);
    ndbs++;
}

static void drop_dbs(void)
{
    for (int i = 0; i < ndbs; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %.63s WITH (FORCE)", dbs[i]);
        admin_sql(base_url, sql);
    }
}

static store *open_node(const char *url, const char *node)
{
    store_config cfg = { url, node, 4, 0, 0 };
    store *s = NULL;
    int rc = store_open(&cfg, &s);
    CHECK_EQ(rc, 0);
    if (rc) {
        fprintf(stderr, "test_store_pg: store_open(%s) failed: %d\n", url, rc);
        exit(1);
    }
    return s;
}

/* Runs scripts/pg-throwaway.sh CMD on pg_dir. */
static void throwaway(const char *cmd)
{
    char line[512];
    snprintf(line, sizeof line, "scripts/pg-throwaway.sh %s '%s'", cmd, pg_dir);
    CHECK_EQ(system(line), 0);
}

/* ---- a little chat core: rules on the round's view ---------------------------- */

static uint64_t mkuser(store *s, const char *name)
{
    iy_user u;
    int rc = store_user_create(s, name, name, "$argon2id$hash", &u);
    CHECK_EQ(rc, 0);
    return rc ? 0 : u.id;
}

static uint64_t mkgroup(store *s, uint64_t owner, const uint64_t *members, size_t n)
{
    uint64_t m[IY_GROUP_MAX];
    uint32_t nm;
    iy_channel c;
    CHECK_EQ(rules_group_members(owner, "g", members, n, m, &nm), 0);
    CHECK_EQ(store_group_create(s, owner, "g", m, nm, &c), 0);
    return c.id;
}

/* One send in an open round, as the core would: the rules' verdict, 0
 * (appended: *out), IY_EEXIST (a duplicate: *out the original) or an
 * error. With push, every other member gets a push notification queued. */
static int round_send(store_round *r, const iy_send *in, iy_stored *out, int push)
{
    iy_channel ch;
    uint64_t members[IY_GROUP_MAX + 1];
    store_append a;
    memset(out, 0, sizeof *out);
    memset(&a, 0, sizeof a);
    int rc = rules_send_shape(in);
    if (rc) return rc;
    const char *cmid = rules_send_cmid(in);
    if (cmid[0] && store_round_cmid(r, in->from, cmid, out) == IY_EEXIST) return IY_EEXIST;
    a.in = in;
    if (in->to) {
        uint64_t x, y, c;
        rules_direct_pair(in->from, in->to, &x, &y);
        if (!store_round_user_exists(r, in->to)) return IY_ENOTFOUND;
        if (store_round_direct(r, x, y, &c) == 0) {
            a.channel = c;
        } else {
            a.pair[0] = x;
            a.pair[1] = y;
        }
        out->members[0] = x;
        out->members[1] = y;
        out->nmembers = 2;
    } else {
        const iy_channel *c = store_round_channel(r, in->channel);
        if (!c) return IY_ENOTFOUND;
        ch = *c;
        int exists = in->event == IY_EV_MEMBER_ADDED && store_round_user_exists(r, in->subject);
        if ((rc = rules_post(&ch, in, exists, out)) != 0) return rc;
        a.channel = in->channel;
        if (in->event) a.changed = &ch;
    }
    memcpy(members, out->members, out->nmembers * sizeof *members);
    a.members = members;
    a.nmembers = out->nmembers;
    a.sender_read = rules_find(members, out->nmembers, in->from) >= 0;
    uint64_t owner = out->owner;
    if ((rc = store_round_append(r, &a, out)) != 0) return rc;
    out->owner = owner;
    for (uint32_t i = 0; push && i < out->nmembers; i++)
        if (rules_push_wanted(&out->msg, out->members[i], 0))
            CHECK_EQ(store_round_push(r, out->members[i]), 0);
    return 0;
}

/* n sends in one round: rcs[i] / outs[i] per send; the commit's result. */
static int send_round(store *s, const iy_send *in, size_t n, iy_stored *outs, int *rcs, int push)
{
    store_round *r;
    int rc = store_round_begin(s, in, n, &r);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) rcs[i] = round_send(r, &in[i], &outs[i], push);
    return store_round_commit(r);
}

static iy_send mksend(uint64_t from, uint64_t channel, uint64_t to, const char *text, const char *cmid)
{
    iy_send in = { from, channel, to, text, strlen(text), cmid, IY_EV_NONE, 0, 0, 0, NULL, 0 };
    return in;
}

/* One send in a round of its own: the send's verdict, or the commit's error. */
static int send1(store *s, uint64_t from, uint64_t channel, uint64_t to, const char *text,
                 const char *cmid, iy_stored *out)
{
    iy_send in = mksend(from, channel, to, text, cmid);
    int rc1 = 0;
    int rc = send_round(s, &in, 1, out, &rc1, 0);
    return rc ? rc : rc1;
}

static int event1(store *s, uint64_t from, uint64_t channel, int ev, uint64_t subject,
                  const char *text, iy_stored *out)
{
    iy_send in = { from, channel, 0, text, strlen(text), "", ev, subject, 0, 0, NULL, 0 };
    int rc1 = 0;
    int rc = send_round(s, &in, 1, out, &rc1, 0);
    return rc ? rc : rc1;
}

/* The user's whole inbox: every pos from 1 to the head, in order, no gap. */
static int inbox_gap_free(store *s, uint64_t user, uint64_t *head)
{
    uint64_t after = 0, pos;
    int more = 1, ok = 1;
    CHECK_EQ(store_user_pos(s, user, &pos), 0);
    while (more) {
        iy_msg_list l;
        if (store_sync(s, user, after, 500, &l, &more) != 0) return 0;
        for (size_t i = 0; i < l.n; i++)
            if (l.v[i].pos != ++after) ok = 0;
        iy_msg_list_clear(&l);
    }
    *head = pos;
    return ok && after == pos;
}

/* The channel's whole history: every seq from 1 to n, no gap. */
static int history_gap_free(store *s, uint64_t channel, uint64_t *n)
{
    uint64_t after = 0;
    int ok = 1;
    for (;;) {
        iy_msg_list l;
        if (store_history(s, channel, 0, after, 200, &l) != 0) return 0;
        size_t got = l.n;
        for (size_t i = 0; i < l.n; i++)
            if (l.v[i].seq != ++after) ok = 0;
        iy_msg_list_clear(&l);
        if (got < 200) break;
    }
    *n = after;
    return ok;
}

/* ---- users, sessions, settings ----------------------------------------------------- */

static void test_users(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "users");
    iy_user u, v;
    char hash[256];
    CHECK(strcmp(store_kind(s), "postgresql") == 0);
    CHECK_EQ(store_user_create(s, "alice", "Alice A", "$argon2id$v=19$abc", &u), 0);
    CHECK(u.id != 0);
    CHECK(strcmp(u.username, "alice") == 0 && strcmp(u.display_name, "Alice A") == 0);
    CHECK_EQ(store_user_create(s, "alice", "Other", "$x", &v), IY_ECONFLICT);
    CHECK_EQ(store_user_create(s, "bob", "", "$y", &v), 0);
    CHECK(v.id > u.id);
    memset(&v, 0, sizeof v);
    CHECK_EQ(store_user_get(s, u.id, &v), 0);
    CHECK(v.id == u.id && strcmp(v.username, "alice") == 0 && strcmp(v.display_name, "Alice A") == 0);
    CHECK_EQ(store_user_get(s, 12345, &v), IY_ENOTFOUND);
    memset(&v, 0, sizeof v);
    CHECK_EQ(store_user_find(s, "alice", &v, hash), 0);
    CHECK(v.id == u.id && strcmp(hash, "$argon2id$v=19$abc") == 0);
    CHECK_EQ(store_user_find(s, "alice", &v, NULL), 0);
    CHECK_EQ(store_user_find(s, "carol", &v, hash), IY_ENOTFOUND);
    CHECK_EQ(store_user_set_display_name(s, u.id, "Alice Z \xea\xb0\x80"), 0);
    CHECK_EQ(store_user_set_display_name(s, 999, "x"), IY_ENOTFOUND);
    uint64_t pos = 7;
    CHECK_EQ(store_user_pos(s, u.id, &pos), 0);
    CHECK_EQ(pos, 0);

    /* A restart: the same node name gets its number back, ids keep growing. */
    unsigned node = store_node(s);
    uint64_t last = store_new_id(s);
    CHECK_EQ(store_heartbeat(s), 0);
    store_free(s);
    s = open_node(url, "users");
    CHECK_EQ(store_node(s), node);
    CHECK(store_new_id(s) > last);
    CHECK_EQ(store_user_get(s, u.id, &v), 0);
    CHECK(strcmp(v.display_name, "Alice Z \xea\xb0\x80") == 0);
    CHECK_EQ(store_user_find(s, "alice", &v, hash), 0);
    CHECK(strcmp(hash, "$argon2id$v=19$abc") == 0);

    /* Another node gets another number; a released number is free again. */
    store *t = open_node(url, "users-2");
    CHECK(store_node(t) != store_node(s));
    iy_user w;
    CHECK_EQ(store_user_create(t, "carol", "", "$z", &w), 0);
    CHECK_EQ(w.id >> 12 & IY_NODE_MAX, store_node(t));
    CHECK_EQ(store_user_find(s, "carol", &v, NULL), 0);   /* shared state */
    unsigned tn = store_node(t);
    store_free(t);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM nodes WHERE num = %u AND lease_until <= now()", tn);
    CHECK_EQ(admin_sql(url, sql), 1);   /* released: another node may take it */
    t = open_node(url, "users-2");      /* a restart under the same name takes it back */
    CHECK_EQ(store_node(t), tn);
    /* A node whose number was taken over (its lease lapsed) learns it at its heartbeat. */
    snprintf(sql, sizeof sql, "UPDATE nodes SET name = 'thief' WHERE num = %u", tn);
    admin_sql(url, sql);
    CHECK_EQ(store_heartbeat(t), IY_ECONFLICT);
    store_free(t);
    store_free(s);
}

static void test_sessions_settings(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "sessions");
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
    CHECK_EQ(store_session_get(s, h2, &user, dev), 0);
    CHECK_EQ(user, 43);
    CHECK(strcmp(dev, "") == 0);
    CHECK_EQ(store_session_delete(s, h1), 0);
    CHECK_EQ(store_session_get(s, h1, &user, dev), IY_ENOTFOUND);
    CHECK_EQ(store_session_delete(s, h1), IY_ENOTFOUND);

    char *v = NULL;
    size_t vl = 0;
    CHECK_EQ(store_setting_get(s, "vapid", &v, &vl), IY_ENOTFOUND);
    CHECK_EQ(store_setting_put_once(s, "vapid", "k1\0x", 4, &v, &vl), 0);
    CHECK(vl == 4 && memcmp(v, "k1\0x", 4) == 0 && v[4] == '\0');
    iy_free(v);
    /* A second first start (another node) gets the first one's value. */
    store *t = open_node(url, "sessions-2");
    CHECK_EQ(store_setting_put_once(t, "vapid", "k2", 2, &v, &vl), 0);
    CHECK(vl == 4 && memcmp(v, "k1\0x", 4) == 0);
    iy_free(v);
    CHECK_EQ(store_setting_get(t, "vapid", &v, &vl), 0);
    CHECK(vl == 4 && memcmp(v, "k1\0x", 4) == 0);
    iy_free(v);
    store_free(t);
    store_free(s);
}

/* ---- groups, friends, read state, presence ------------------------------------------- */

static int has(const uint64_t *v, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x) return 1;
    return 0;
}

static void test_groups_friends(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "social");
    uint64_t a = mkuser(s, "ann"), b = mkuser(s, "ben"), c = mkuser(s, "cat"), d = mkuser(s, "dan");
    iy_channel ch;
    uint64_t m2[3] = { a < b ? a : b, a < b ? b : a, 0 };
    uint64_t bad[2] = { 999, a };
    CHECK_EQ(store_group_create(s, a, "x", bad, 2, &ch), IY_ENOTFOUND);
    CHECK_EQ(store_group_create(s, a, "pair", m2, 2, &ch), 0);
    iy_channel g;
    CHECK_EQ(store_channel_get(s, ch.id, &g), 0);
    CHECK(g.kind == IY_GROUP && g.owner == a && strcmp(g.name, "pair") == 0 && g.nmembers == 2);
    CHECK(g.members[0] == m2[0] && g.members[1] == m2[1]);
    CHECK_EQ(store_channel_get(s, 12345, &g), IY_ENOTFOUND);
    uint64_t *chs;
    size_t n;
    CHECK_EQ(store_user_channels(s, a, &chs, &n), 0);
    CHECK(n == 1 && chs[0] == ch.id);
    iy_free(chs);
    CHECK_EQ(store_user_channels(s, c, &chs, &n), 0);
    CHECK(n == 0);
    iy_free(chs);
    CHECK_EQ(store_share_channel(s, a, b), 1);
    CHECK_EQ(store_share_channel(s, a, c), 0);
    iy_msg last;
    CHECK_EQ(store_channel_last(s, ch.id, &last), IY_ENOTFOUND);

    /* Friends: a compare-and-set on a's side, both sides together. */
    int st = -1;
    CHECK_EQ(store_friend_state(s, a, c, &st), 0);
    CHECK_EQ(st, IY_FRIEND_NONE);
    CHECK_EQ(store_friend_set(s, a, c, IY_FRIEND_NONE, IY_FRIEND_OUTGOING), 0);
    CHECK_EQ(store_friend_set(s, a, c, IY_FRIEND_NONE, IY_FRIEND_OUTGOING), IY_ECONFLICT);
    CHECK_EQ(store_friend_set(s, c, a, IY_FRIEND_NONE, IY_FRIEND_OUTGOING), IY_ECONFLICT);
    CHECK_EQ(store_friend_state(s, c, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_INCOMING);
    CHECK_EQ(store_friend_set(s, c, a, IY_FRIEND_INCOMING, IY_FRIEND_MUTUAL), 0);
    CHECK_EQ(store_friend_state(s, a, c, &st), 0);
    CHECK_EQ(st, IY_FRIEND_MUTUAL);
    CHECK_EQ(store_friend_set(s, a, d, IY_FRIEND_NONE, IY_FRIEND_OUTGOING), 0);
    CHECK_EQ(store_friend_set(s, b, a, IY_FRIEND_NONE, IY_FRIEND_OUTGOING), 0);
    CHECK_EQ(store_friend_set(s, a, 999, IY_FRIEND_NONE, IY_FRIEND_OUTGOING), IY_ENOTFOUND);
    CHECK_EQ(store_friend_set(s, a, a, IY_FRIEND_NONE, IY_FRIEND_OUTGOING), IY_EINVAL);
    uint64_t *f, *in, *out;
    size_t nf, ni, no;
    CHECK_EQ(store_friend_list(s, a, &f, &nf, &in, &ni, &out, &no), 0);
    CHECK(nf == 1 && f[0] == c && ni == 1 && in[0] == b && no == 1 && out[0] == d);
    iy_free(f);
    iy_free(in);
    iy_free(out);
    CHECK_EQ(store_friend_set(s, c, a, IY_FRIEND_OUTGOING, IY_FRIEND_NONE), IY_ECONFLICT);
    CHECK_EQ(store_friend_set(s, c, a, IY_FRIEND_MUTUAL, IY_FRIEND_NONE), 0);
    CHECK_EQ(store_friend_state(s, a, c, &st), 0);
    CHECK_EQ(st, IY_FRIEND_NONE);
    CHECK_EQ(store_friend_state(s, c, a, &st), 0);
    CHECK_EQ(st, IY_FRIEND_NONE);

    /* Read state only moves forward, and never past the channel's newest
     * seq (this group has none yet: nothing moves); last_active persists. */
    uint64_t now = 0, seq = 0;
    CHECK_EQ(store_read_get(s, a, ch.id, &seq), 0);
    CHECK_EQ(seq, 0);
    CHECK_EQ(store_read_set(s, a, ch.id, 5, &now), 0);
    CHECK_EQ(now, 0);
    CHECK_EQ(store_read_get(s, a, ch.id, &seq), 0);
    CHECK_EQ(seq, 0);
    int64_t ms = -1;
    CHECK_EQ(store_last_active_get(s, a, &ms), 0);
    CHECK_EQ(ms, 0);
    CHECK_EQ(store_last_active_set(s, a, 1700000000123LL), 0);
    CHECK_EQ(store_last_active_get(s, a, &ms), 0);
    CHECK_EQ(ms, 1700000000123LL);
    store_free(s);
}

/* ---- rounds ------------------------------------------------------------------------------ */

static void test_round_direct(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "direct");
    uint64_t a = mkuser(s, "aa"), b = mkuser(s, "bb"), c = mkuser(s, "cc");
    iy_stored o[4];
    int rcs[4];

    /* Two messages of one round to a new pair: one channel, made once. */
    iy_send in[4] = { mksend(a, 0, b, "hi", ""), mksend(b, 0, a, "hey", ""),
                      mksend(c, 0, a, "to a", ""), mksend(a, 0, 777, "nobody", "") };
    CHECK_EQ(send_round(s, in, 4, o, rcs, 0), 0);
    CHECK(rcs[0] == 0 && rcs[1] == 0 && rcs[2] == 0 && rcs[3] == IY_ENOTFOUND);
    uint64_t ab = o[0].msg.channel, ac = o[2].msg.channel;
    CHECK(ab != 0 && o[1].msg.channel == ab && ac != ab);
    CHECK(o[0].msg.seq == 1 && o[1].msg.seq == 2 && o[2].msg.seq == 1);
    uint64_t x = a < b ? a : b;
    CHECK(o[0].nmembers == 2 && o[0].members[0] == x);
    CHECK(o[0].pos[0] == 1 && o[0].pos[1] == 1 && o[1].pos[0] == 2 && o[1].pos[1] == 2);
    CHECK_EQ(o[0].msg.pos, 1);
    CHECK_EQ(o[2].msg.pos, 1);                    /* c's first */
    CHECK(o[0].msg.id < o[1].msg.id);
    CHECK_EQ(o[0].msg.ts, iy_id_ts(o[0].msg.id));

    /* The next round finds the channel; a channel send to it continues seq. */
    CHECK_EQ(send1(s, b, 0, a, "again", "", &o[0]), 0);
    CHECK_EQ(o[0].msg.channel, ab);
    CHECK_EQ(o[0].msg.seq, 3);
    CHECK_EQ(send1(s, a, ab, 0, "third", "", &o[0]), 0);
    CHECK_EQ(o[0].msg.seq, 4);
    uint64_t pa, pb, pc;
    CHECK_EQ(store_user_pos(s, a, &pa), 0);
    CHECK_EQ(store_user_pos(s, b, &pb), 0);
    CHECK_EQ(store_user_pos(s, c, &pc), 0);
    CHECK(pa == 5 && pb == 4 && pc == 1);
    CHECK(inbox_gap_free(s, a, &pa) && pa == 5);
    iy_channel ch;
    CHECK_EQ(store_channel_get(s, ab, &ch), 0);
    CHECK(ch.kind == IY_DIRECT && ch.nmembers == 2 && ch.owner == 0 && ch.name[0] == '\0');
    uint64_t *chs;
    size_t n;
    CHECK_EQ(store_user_channels(s, a, &chs, &n), 0);
    CHECK(n == 2 && has(chs, n, ab) && has(chs, n, ac));
    iy_free(chs);
    CHECK_EQ(store_share_channel(s, b, a), 1);
    CHECK_EQ(store_share_channel(s, b, c), 0);
    iy_msg last;
    CHECK_EQ(store_channel_last(s, ab, &last), 0);
    CHECK(last.seq == 4 && last.text_len == 5 && strcmp(last.text, "third") == 0 && last.from == a);
    iy_msg_clear(&last);
    /* The senders read their own messages. */
    uint64_t seq;
    CHECK_EQ(store_read_get(s, a, ab, &seq), 0);
    CHECK_EQ(seq, 4);
    CHECK_EQ(store_read_get(s, b, ab, &seq), 0);
    CHECK_EQ(seq, 3);

    /* Shape and rules errors store nothing. */
    CHECK_EQ(send1(s, a, 0, a, "self", "", &o[0]), IY_EINVAL);
    CHECK_EQ(send1(s, c, ab, 0, "intruder", "", &o[0]), IY_EFORBIDDEN);
    CHECK_EQ(send1(s, a, 888, 0, "no channel", "", &o[0]), IY_ENOTFOUND);
    CHECK_EQ(store_user_pos(s, a, &pa), 0);
    CHECK_EQ(pa, 5);
    CHECK_EQ(store_message_count(s), 5);
    store_free(s);
}

static void test_round_cmid(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "cmid");
    uint64_t a = mkuser(s, "ca"), b = mkuser(s, "cb");
    iy_stored o[3];
    int rcs[3];
    iy_send in[3] = { mksend(a, 0, b, "one", "c-1"), mksend(a, 0, b, "one again", "c-1"),
                      mksend(b, 0, a, "other user, same cmid", "c-1") };
    CHECK_EQ(send_round(s, in, 3, o, rcs, 0), 0);
    CHECK(rcs[0] == 0 && rcs[1] == IY_EEXIST && rcs[2] == 0);
    CHECK(o[1].msg.id == o[0].msg.id && o[1].msg.seq == 1 && o[1].msg.channel == o[0].msg.channel);
    CHECK(o[1].msg.pos == o[0].msg.pos && o[1].nmembers == 0 && strcmp(o[1].msg.cmid, "c-1") == 0);
    CHECK_EQ(o[2].msg.seq, 2);

    /* Across rounds (and across nodes): the original. */
    iy_stored d;
    CHECK_EQ(send1(s, a, 0, b, "resent", "c-1", &d), IY_EEXIST);
    CHECK(d.msg.id == o[0].msg.id && d.msg.seq == 1 && d.msg.pos == o[0].msg.pos && d.msg.from == a);
    store *t = open_node(url, "cmid-2");
    CHECK_EQ(send1(t, a, o[0].msg.channel, 0, "resent elsewhere", "c-1", &d), IY_EEXIST);
    CHECK(d.msg.id == o[0].msg.id && d.msg.channel == o[0].msg.channel);
    store_free(t);
    uint64_t n;
    CHECK(history_gap_free(s, o[0].msg.channel, &n) && n == 2);
    store_free(s);
}

static void test_round_events(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "events");
    uint64_t a = mkuser(s, "ea"), b = mkuser(s, "eb"), c = mkuser(s, "ec"), d = mkuser(s, "ed");
    uint64_t bc[2] = { b, c };
    uint64_t g = mkgroup(s, a, bc, 2);
    iy_stored o;
    CHECK_EQ(send1(s, a, g, 0, "hello group", "g1", &o), 0);
    CHECK(o.msg.seq == 1 && o.nmembers == 3);

    /* Adding d: the channel, the index and d's inbox change with the event. */
    CHECK_EQ(event1(s, b, g, IY_EV_MEMBER_ADDED, d, "", &o), 0);
    CHECK(o.msg.seq == 2 && o.nmembers == 4 && o.msg.event == IY_EV_MEMBER_ADDED && o.msg.subject == d);
    iy_channel ch;
    CHECK_EQ(store_channel_get(s, g, &ch), 0);
    CHECK(ch.nmembers == 4 && rules_is_member(&ch, d));
    uint64_t *chs;
    size_t n;
    CHECK_EQ(store_user_channels(s, d, &chs, &n), 0);
    CHECK(n == 1 && chs[0] == g);
    iy_free(chs);
    CHECK_EQ(event1(s, b, g, IY_EV_MEMBER_ADDED, d, "", &o), IY_ECONFLICT);
    CHECK_EQ(event1(s, b, g, IY_EV_MEMBER_ADDED, 4242, "", &o), IY_ENOTFOUND);
    CHECK_EQ(event1(s, b, g, IY_EV_RENAMED, 0, "nope", &o), IY_EFORBIDDEN);
    CHECK_EQ(event1(s, a, g, IY_EV_RENAMED, 0, "new name", &o), 0);
    CHECK_EQ(store_channel_get(s, g, &ch), 0);
    CHECK(strcmp(ch.name, "new name") == 0);

    /* Several events in one round: the view carries each change to the next. */
    iy_send in[3] = { { a, g, 0, "", 0, "", IY_EV_MEMBER_REMOVED, a, 0, 0, NULL, 0 },      /* the owner leaves */
                      { b < c ? b : c, g, 0, "", 0, "", IY_EV_MEMBER_REMOVED, d, 0, 0, NULL, 0 }, /* the new owner removes d */
                      mksend(d, g, 0, "still here?", "") };
    iy_stored os[3];
    int rcs[3];
    CHECK_EQ(send_round(s, in, 3, os, rcs, 0), 0);
    CHECK(rcs[0] == 0 && rcs[1] == 0 && rcs[2] == IY_EFORBIDDEN);
    CHECK(os[0].nmembers == 4 && os[0].owner == (b < c ? b : c));
    CHECK(os[1].nmembers == 3 && os[1].msg.seq == os[0].msg.seq + 1);
    CHECK_EQ(store_channel_get(s, g, &ch), 0);
    CHECK(ch.nmembers == 2 && ch.owner == (b < c ? b : c) && !rules_is_member(&ch, a) && !rules_is_member(&ch, d));
    CHECK_EQ(store_user_channels(s, d, &chs, &n), 0);
    CHECK(n == 0);
    iy_free(chs);
    CHECK_EQ(store_user_channels(s, a, &chs, &n), 0);
    CHECK(n == 0);
    iy_free(chs);
    /* d's inbox: added, renamed, a's leaving, its own removal; nothing after. */
    iy_msg_list l;
    int more;
    CHECK_EQ(store_sync(s, d, 0, 10, &l, &more), 0);
    CHECK(l.n == 4 && !more);
    if (l.n == 4) {
        CHECK(l.v[0].event == IY_EV_MEMBER_ADDED && l.v[0].subject == d && l.v[0].pos == 1);
        CHECK(l.v[1].event == IY_EV_RENAMED && strcmp(l.v[1].text, "new name") == 0);
        CHECK(l.v[2].event == IY_EV_MEMBER_REMOVED && l.v[2].subject == a && l.v[2].from == a);
        CHECK(l.v[3].event == IY_EV_MEMBER_REMOVED && l.v[3].subject == d && l.v[3].pos == 4);
    }
    iy_msg_list_clear(&l);
    CHECK_EQ(send1(s, b, g, 0, "after", "", &o), 0);
    uint64_t pd;
    CHECK_EQ(store_user_pos(s, d, &pd), 0);
    CHECK_EQ(pd, 4);
    uint64_t last;
    CHECK(history_gap_free(s, g, &last) && last == o.msg.seq);

    /* The last members leave: an empty group without owner. */
    CHECK_EQ(event1(s, c, g, IY_EV_MEMBER_REMOVED, c, "", &o), 0);
    CHECK_EQ(event1(s, b, g, IY_EV_MEMBER_REMOVED, b, "", &o), 0);
    CHECK(o.nmembers == 1 && o.owner == 0);
    CHECK_EQ(store_channel_get(s, g, &ch), 0);
    CHECK(ch.nmembers == 0 && ch.owner == 0 && ch.kind == IY_GROUP);
    CHECK_EQ(store_user_channels(s, b, &chs, &n), 0);
    CHECK(n == 0);
    iy_free(chs);
    store_free(s);
}

/* The backend pid of a node's storage-thread connection, idle in a
 * transaction (an open round), or 0. */
static int backend_of(const char *url, const char *node, const char *state)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT pid FROM pg_stat_activity WHERE application_name = 'iyagi:%s'%s%s%s"
             " AND datname = current_database() ORDER BY backend_start LIMIT 1",
             node, state ? " AND state = '" : "", state ? state : "", state ? "'" : "");
    return (int)admin_sql(url, sql);
}

static void test_round_failure(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "fail");
    uint64_t a = mkuser(s, "fa"), b = mkuser(s, "fb");
    iy_stored o, o2;
    CHECK_EQ(send1(s, a, 0, b, "first", "", &o), 0);
    uint64_t ch = o.msg.channel;

    /* An aborted round leaves nothing; its numbers are assigned again. */
    iy_send in = mksend(a, ch, 0, "aborted", "ab-1");
    store_round *r;
    CHECK_EQ(store_round_begin(s, &in, 1, &r), 0);
    CHECK_EQ(round_send(r, &in, &o, 0), 0);
    CHECK_EQ(o.msg.seq, 2);
    /* Writes outside the round are refused while it is open (they would
     * commit or vanish with it); reads work. */
    iy_user u;
    CHECK_EQ(store_user_create(s, "fc", "", "$h", &u), IY_EINVAL);
    CHECK_EQ(store_user_get(s, a, &u), 0);
    store_round_abort(r);
    CHECK_EQ(store_user_find(s, "fc", &u, NULL), IY_ENOTFOUND);
    CHECK_EQ(send1(s, a, ch, 0, "again", "ab-1", &o2), 0);   /* not a duplicate */
    CHECK_EQ(o2.msg.seq, 2);
    CHECK_EQ(o2.msg.pos, 2);

    /* A commit that fails (the server ends the session between load and
     * commit): IY_EUNAVAIL, nothing stored, the numbers come again. */
    in = mksend(b, ch, 0, "lost", "lost-1");
    CHECK_EQ(store_round_begin(s, &in, 1, &r), 0);
    CHECK_EQ(round_send(r, &in, &o, 0), 0);
    CHECK_EQ(o.msg.seq, 3);
    int pid = backend_of(url, "fail", "idle in transaction");
    CHECK(pid > 0);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", pid);
    admin_sql(url, sql);
    CHECK_EQ(store_round_commit(r), IY_EUNAVAIL);
    /* The next call reconnects by itself. */
    int rc = IY_EUNAVAIL;
    for (int i = 0; i < 50 && rc == IY_EUNAVAIL; i++) {
        rc = send1(s, b, ch, 0, "retried", "lost-1", &o2);
        if (rc == IY_EUNAVAIL) usleep(100 * 1000);
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(o2.msg.seq, 3);
    uint64_t n;
    CHECK(history_gap_free(s, ch, &n) && n == 3);
    CHECK(inbox_gap_free(s, a, &n) && n == 3);
    store_free(s);
}

/* Another session holds a row the round must lock for longer than a
 * statement timeout (hot rows under many nodes' rounds): the load waits its
 * turn again instead of failing, and the send commits once it is free. */
typedef struct lock_holder {
    PGconn *c;
    int ms;
} lock_holder;

static void *release_later(void *arg)
{
    lock_holder *h = arg;
    usleep((useconds_t)h->ms * 1000);
    PQclear(PQexec(h->c, "COMMIT"));
    return NULL;
}

static void test_round_lock_wait(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "lockwait");
    uint64_t a = mkuser(s, "la"), b = mkuser(s, "lb");
    iy_stored o;
    CHECK_EQ(send1(s, a, 0, b, "first", "", &o), 0);
    uint64_t ch = o.msg.channel;

    lock_holder h = { admin(url), 3600 };   /* past the 3 s statement timeout */
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT 1 FROM channels WHERE id = %llu FOR UPDATE", (unsigned long long)ch);
    PQclear(PQexec(h.c, "BEGIN"));
    PGresult *r = PQexec(h.c, sql);
    CHECK_EQ(PQntuples(r), 1);
    PQclear(r);
    pthread_t th;
    pthread_create(&th, NULL, release_later, &h);
    int64_t t0 = mono_ms();
    CHECK_EQ(send1(s, a, ch, 0, "waited", "lw-1", &o), 0);
    int64_t took = mono_ms() - t0;
    CHECK(took >= 3000);
    CHECK(took < 8000);
    CHECK_EQ(o.msg.seq, 2);
    pthread_join(th, NULL);
    PQfinish(h.c);
    uint64_t n;
    CHECK(history_gap_free(s, ch, &n) && n == 2);
    printf("test_store_pg: a round waited %lld ms for a lock held 3.6 s, then committed\n", (long long)took);
    store_free(s);
}

/* ---- readers ---------------------------------------------------------------------------- */

static void test_readers(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "readers");
    uint64_t a = mkuser(s, "ra"), b = mkuser(s, "rb"), c = mkuser(s, "rc");
    store_reader *rd = store_reader_new(s);
    uint64_t pos = 9;
    CHECK_EQ(store_reader_user_pos(rd, a, &pos), 0);
    CHECK_EQ(pos, 0);

    /* Ten messages: one holds a NUL byte (bytea keeps it), one is 300 KB. */
    char *big = iy_malloc(300000);
    memset(big, 'x', 300000);
    iy_stored o;
    uint64_t ch = 0;
    for (int i = 1; i <= 10; i++) {
        char text[32];
        snprintf(text, sizeof text, "m%d", i);
        iy_send in = mksend(i % 2 ? a : b, 0, i % 2 ? b : a, text, "");
        if (i == 4) in.text = "a\0b", in.text_len = 3;
        if (i == 5) in.text = big, in.text_len = 300000;
        int rc1, rc = send_round(s, &in, 1, &o, &rc1, 0);
        CHECK(rc == 0 && rc1 == 0);
        ch = o.msg.channel;
    }
    iy_free(big);

    iy_msg_list l;
    int more;
    CHECK_EQ(store_reader_history(rd, ch, UINT64_MAX, 0, 3, &l), 0);
    CHECK(l.n == 3 && l.v[0].seq == 10 && l.v[1].seq == 9 && l.v[2].seq == 8);
    if (l.n == 3) CHECK(strcmp(l.v[0].text, "m10") == 0 && l.v[0].pos == 0 && l.v[0].from == b);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_reader_history(rd, ch, 8, 0, 100, &l), 0);
    CHECK(l.n == 7 && l.v[0].seq == 7 && l.v[6].seq == 1);
    if (l.n == 7) {
        CHECK(l.v[3].text_len == 3 && memcmp(l.v[3].text, "a\0b", 4) == 0);
        CHECK(l.v[2].text_len == 300000 && l.v[2].text[299999] == 'x' && l.v[2].text[300000] == '\0');
        CHECK(l.v[6].id < l.v[5].id && l.v[6].ts == iy_id_ts(l.v[6].id) && l.v[6].channel == ch);
    }
    iy_msg_list_clear(&l);
    CHECK_EQ(store_reader_history(rd, ch, 0, 0, 4, &l), 0);
    CHECK(l.n == 4 && l.v[0].seq == 1 && l.v[3].seq == 4);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_reader_history(rd, ch, 0, 10, 4, &l), 0);
    CHECK(l.n == 0);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_reader_history(rd, ch, UINT64_MAX, 0, 0, &l), 0);
    CHECK(l.n == 0);
    CHECK_EQ(store_history(s, ch, 3, 0, 10, &l), 0);
    CHECK(l.n == 2 && l.v[0].seq == 2);
    iy_msg_list_clear(&l);

    CHECK_EQ(store_reader_sync(rd, a, 0, 4, &l, &more), 0);
    CHECK(l.n == 4 && more == 1 && l.v[0].pos == 1 && l.v[3].pos == 4 && l.v[3].seq == 4);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_reader_sync(rd, a, 8, 4, &l, &more), 0);
    CHECK(l.n == 2 && more == 0 && l.v[1].pos == 10 && strcmp(l.v[1].text, "m10") == 0);
    iy_msg_list_clear(&l);
    CHECK_EQ(store_reader_sync(rd, a, 10, 4, &l, &more), 0);
    CHECK(l.n == 0 && more == 0);
    CHECK_EQ(store_sync(s, b, 0, 0, &l, &more), 0);
    CHECK(l.n == 0 && more == 1);
    CHECK_EQ(store_reader_user_pos(rd, b, &pos), 0);
    CHECK_EQ(pos, 10);

    /* A reader sees a round once its commit returned. */
    CHECK_EQ(send1(s, a, ch, 0, "fresh", "", &o), 0);
    CHECK_EQ(store_reader_user_pos(rd, b, &pos), 0);
    CHECK_EQ(pos, 11);

    uint8_t h[32];
    memset(h, 7, sizeof h);
    char dev[IY_DEVICE_MAX + 1];
    uint64_t user;
    CHECK_EQ(store_session_create(s, h, a, "laptop"), 0);
    CHECK_EQ(store_reader_session(rd, h, &user, dev), 0);
    CHECK(user == a && strcmp(dev, "laptop") == 0);
    h[0] = 8;
    CHECK_EQ(store_reader_session(rd, h, &user, dev), IY_ENOTFOUND);
    iy_user u;
    CHECK_EQ(store_reader_user_get(rd, b, &u), 0);
    CHECK(u.id == b && strcmp(u.username, "rb") == 0);
    CHECK_EQ(store_reader_user_get(rd, 4711, &u), IY_ENOTFOUND);
    CHECK_EQ(store_reader_is_member(rd, ch, a), 0);
    CHECK_EQ(store_reader_is_member(rd, ch, c), IY_EFORBIDDEN);
    CHECK_EQ(store_reader_is_member(rd, 4711, a), IY_ENOTFOUND);
    store_reader_free(rd);
    store_free(s);
}

/* ---- push --------------------------------------------------------------------------- */

static uint64_t mksub(store *s, uint64_t user, const char *device)
{
    iy_push_sub sub;
    memset(&sub, 0, sizeof sub);
    sub.user = user;
    sub.kind = IY_PUSH_WEBHOOK;
    snprintf(sub.device, sizeof sub.device, "%s", device);
    snprintf(sub.url, sizeof sub.url, "https://hook.example/%s", device);
    memset(sub.secret, 'a', 64);
    int rc = store_push_sub_create(s, &sub);
    CHECK_EQ(rc, 0);
    return rc ? 0 : sub.id;
}

/* One message from -> to, pushed to to; its id. */
static uint64_t send_push(store *s, uint64_t from, uint64_t to, const char *text, uint64_t *channel)
{
    iy_send in = mksend(from, 0, to, text, "");
    iy_stored o;
    int rc1, rc = send_round(s, &in, 1, &o, &rc1, 1);
    CHECK(rc == 0 && rc1 == 0);
    if (channel) *channel = o.msg.channel;
    return o.msg.id;
}

static void check_counts(store *s, uint64_t pending, uint64_t dead)
{
    uint64_t p = 99, d = 99;
    CHECK_EQ(store_push_counts(s, &p, &d), 0);
    CHECK_EQ(p, pending);
    CHECK_EQ(d, dead);
}

static void test_push(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "push-a"), *t = open_node(url, "push-b");
    uint64_t a = mkuser(s, "pa"), b = mkuser(s, "pb"), c = mkuser(s, "pc");

    /* Subscriptions: at most 32 per user. */
    uint64_t ids[IY_PUSH_SUBS_MAX];
    for (int i = 0; i < IY_PUSH_SUBS_MAX; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "d%d", i);
        ids[i] = mksub(s, c, dev);
    }
    iy_push_sub sub;
    memset(&sub, 0, sizeof sub);
    sub.user = c;
    sub.kind = IY_PUSH_WEBPUSH;
    strcpy(sub.url, "https://push.example/x");
    strcpy(sub.p256dh, "BPk");
    strcpy(sub.auth, "au");
    CHECK_EQ(store_push_sub_create(t, &sub), IY_ETOOBIG);
    CHECK_EQ(store_push_sub_delete(s, a, ids[0]), IY_ENOTFOUND);   /* not a's */
    CHECK_EQ(store_push_sub_delete(s, c, ids[0]), 0);
    CHECK_EQ(store_push_sub_delete(s, c, ids[0]), IY_ENOTFOUND);
    CHECK_EQ(store_push_sub_create(t, &sub), 0);
    iy_push_sub got;
    CHECK_EQ(store_push_sub_get(s, sub.id, &got), 0);
    CHECK(got.user == c && got.kind == IY_PUSH_WEBPUSH && strcmp(got.url, sub.url) == 0 &&
          strcmp(got.p256dh, "BPk") == 0 && strcmp(got.auth, "au") == 0);
    CHECK_EQ(store_push_sub_get(s, 4711, &got), IY_ENOTFOUND);

    /* Notes are queued with the round and collapse per (subscription, channel). */
    uint64_t sb1 = mksub(s, b, "phone"), sb2 = mksub(s, b, "laptop");
    check_counts(s, 0, 0);
    uint64_t ch;
    int64_t t0 = wall_ms();
    uint64_t m1 = send_push(s, a, b, "first", &ch);
    check_counts(s, 2, 0);
    uint64_t m2 = send_push(s, a, b, "second \xea\xb0\x80", NULL);
    check_counts(s, 2, 0);
    CHECK(m2 > m1);
    send_push(s, c, a, "nobody subscribed", NULL);
    check_counts(s, 2, 0);

    /* Node A leases them; node B does not get them until the lease expires. */
    iy_push_note *v = NULL, *w = NULL;
    size_t n = 0, nw = 0;
    int64_t now = wall_ms();
    CHECK_EQ(store_push_take(s, now, 1000, 0, 10, &v, &n), 0);
    CHECK_EQ(n, 2);
    for (size_t i = 0; i < n; i++) {
        CHECK(v[i].message_id == m2 && v[i].user == b && v[i].channel == ch && v[i].from == a);
        CHECK(strcmp(v[i].preview, "second \xea\xb0\x80") == 0 && v[i].attempts == 0);
        CHECK(v[i].created_ms >= t0 - 1000 && v[i].created_ms <= now && v[i].due_ms == now + 1000);
        CHECK(v[i].sub == sb1 || v[i].sub == sb2);
    }
    CHECK_EQ(store_push_take(t, now, 1000, 0, 10, &w, &nw), 0);
    CHECK_EQ(nw, 0);
    iy_free(w);
    CHECK_EQ(store_push_take(t, now + 1001, 1000, 0, 10, &w, &nw), 0);
    CHECK_EQ(nw, 2);
    /* A's lease is gone: its outcome settles nothing. */
    CHECK_EQ(store_push_done(s, &v[0], 1, 0, 0), 0);
    check_counts(s, 2, 0);
    iy_free(v);

    /* A newer message collapses into B's leased notes; B's done keeps them, due now. */
    uint64_t m3 = send_push(s, a, b, "third", NULL);
    for (size_t i = 0; i < nw; i++) CHECK_EQ(store_push_done(t, &w[i], 1, 0, 0), 0);
    iy_free(w);
    check_counts(s, 2, 0);
    CHECK_EQ(store_push_take(s, wall_ms(), 60000, 0, 10, &v, &n), 0);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK(v[0].message_id == m3 && v[1].message_id == m3);
        /* One delivered, one retried later, then dead. */
        CHECK_EQ(store_push_done(s, &v[0], 1, 0, 0), 0);
        int64_t later = wall_ms() + 5000;
        CHECK_EQ(store_push_done(s, &v[1], 0, 0, later), 0);
        check_counts(s, 1, 0);
        CHECK_EQ(store_push_take(s, wall_ms(), 1000, 0, 10, &w, &nw), 0);
        CHECK_EQ(nw, 0);
        iy_free(w);
        CHECK_EQ(store_push_take(s, later, 1000, 0, 10, &w, &nw), 0);
        CHECK_EQ(nw, 1);
        if (nw == 1) {
            CHECK(w[0].attempts == 1 && w[0].sub == v[1].sub);
            CHECK_EQ(store_push_done(s, &w[0], 0, 1, 0), 0);
        }
        check_counts(s, 0, 1);
    }
    iy_free(v);
    iy_free(w);
    v = w = NULL;

    /* Two messages to one user in one round: one note, the newer. */
    iy_send two[2] = { mksend(a, 0, b, "r1", ""), mksend(a, 0, b, "r2", "") };
    iy_stored os[2];
    int rcs[2];
    CHECK_EQ(send_round(s, two, 2, os, rcs, 1), 0);
    check_counts(s, 2, 1);

    /* A restarted node resumes its own leases with `all`; others' stay. */
    CHECK_EQ(store_push_take(s, wall_ms(), 600000, 0, 10, &v, &n), 0);
    CHECK_EQ(n, 2);
    if (n == 2) CHECK(v[0].message_id == os[1].msg.id && strcmp(v[0].preview, "r2") == 0);
    iy_free(v);
    unsigned node = store_node(s);
    store_free(s);
    s = open_node(url, "push-a");
    CHECK_EQ(store_node(s), node);
    CHECK_EQ(store_push_take(t, wall_ms(), 1000, 1, 10, &w, &nw), 0);
    CHECK_EQ(nw, 0);
    iy_free(w);
    CHECK_EQ(store_push_take(s, wall_ms(), 1000, 0, 10, &v, &n), 0);
    CHECK_EQ(n, 0);
    iy_free(v);
    CHECK_EQ(store_push_take(s, wall_ms(), 1000, 1, 1, &v, &n), 0);
    CHECK_EQ(n, 1);
    iy_free(v);

    /* Deleting a subscription deletes its notes. */
    CHECK_EQ(store_push_sub_delete(t, b, sb1), 0);
    check_counts(s, 1, 1);
    CHECK_EQ(store_push_sub_delete(t, b, sb2), 0);
    check_counts(s, 0, 1);
    store_free(t);
    store_free(s);
}

/* ---- two nodes at once ----------------------------------------------------------------- */

typedef struct worker {
    store *s;
    int k;                      /* which node: 0 or 1 */
    int rounds;
    uint64_t u[4], g;
    int failed, refused;        /* rounds that did not commit; sends refused by the rules */
} worker;

/* Rounds of a group message, a message of a pair both nodes use (whose
 * direct channel the first rounds of both create at once) and one of a
 * second pair, all to the same channels and users as the other node. */
static void *work(void *arg)
{
    worker *wk = arg;
    for (int i = 0; i < wk->rounds; i++) {
        char cmid[3][32];
        snprintf(cmid[0], sizeof cmid[0], "g-%d-%d", wk->k, i);
        snprintf(cmid[1], sizeof cmid[1], "p-%d-%d", wk->k, i);
        snprintf(cmid[2], sizeof cmid[2], "q-%d-%d", wk->k, i);
        iy_send in[3] = { mksend(wk->u[(i + wk->k) % 4], wk->g, 0, "group", cmid[0]),
                          mksend(wk->u[wk->k], 0, wk->u[1 - wk->k], "pair", cmid[1]),
                          mksend(wk->u[2 + wk->k], 0, wk->u[3 - wk->k], "pair 2", cmid[2]) };
        iy_stored o[3];
        int rcs[3];
        if (send_round(wk->s, in, 3, o, rcs, 0) != 0) wk->failed++;
        for (int j = 0; j < 3; j++)
            if (rcs[j]) wk->refused++;
    }
    return NULL;
}

typedef struct opener {
    const char *url, *node;
    store *s;
    int rc;
} opener;

static void *open_thread(void *arg)
{
    opener *op = arg;
    store_config cfg = { op->url, op->node, 1, 0, 0 };
    op->rc = store_open(&cfg, &op->s);
    return NULL;
}

static void test_two_nodes(void)
{
    char url[256];
    fresh_db(url);
    const char *env = getenv("IYAGI_TEST_PG_ROUNDS");
    int rounds = env && atoi(env) > 0 ? atoi(env) : 2000;
    worker wk[2];
    memset(wk, 0, sizeof wk);
    /* Both nodes start at once on an empty database: one creates the
     * schema, the other waits for it; each gets its own number. */
    pthread_t th[2];
    opener op[2] = { { url, "conc-1", NULL, -1 }, { url, "conc-2", NULL, -1 } };
    for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, open_thread, &op[k]);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    CHECK(op[0].rc == 0 && op[1].rc == 0);
    if (op[0].rc || op[1].rc) exit(1);
    wk[0].s = op[0].s;
    wk[1].s = op[1].s;
    CHECK(store_node(wk[0].s) != store_node(wk[1].s));
    uint64_t u[4] = { mkuser(wk[0].s, "w0"), mkuser(wk[1].s, "w1"), mkuser(wk[0].s, "w2"),
                      mkuser(wk[1].s, "w3") };
    uint64_t g = mkgroup(wk[0].s, u[0], u + 1, 3);
    int64_t t0 = mono_ms();
    for (int k = 0; k < 2; k++) {
        wk[k].k = k;
        wk[k].rounds = rounds;
        wk[k].g = g;
        memcpy(wk[k].u, u, sizeof u);
        pthread_create(&th[k], NULL, work, &wk[k]);
    }
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    int64_t ms = mono_ms() - t0;
    printf("test_store_pg: two nodes, %d rounds of 3 each: %.0f rounds/s (%d not committed)\n",
           2 * rounds, 2000.0 * rounds / (double)(ms ? ms : 1), wk[0].failed + wk[1].failed);
    CHECK_EQ(wk[0].failed + wk[1].failed, 0);
    CHECK_EQ(wk[0].refused + wk[1].refused, 0);

    store *s = wk[0].s;
    uint64_t n, head;
    CHECK(history_gap_free(s, g, &n));
    CHECK_EQ(n, 2 * (uint64_t)rounds);
    /* Each pair has one direct channel, made once, gap-free. */
    for (int p = 0; p < 2; p++) {
        uint64_t *chs;
        size_t nc;
        CHECK_EQ(store_user_channels(s, u[2 * p], &chs, &nc), 0);
        CHECK_EQ(nc, 2);   /* the group and the pair */
        for (size_t i = 0; i < nc; i++)
            if (chs[i] != g) {
                CHECK(history_gap_free(s, chs[i], &n));
                CHECK_EQ(n, 2 * (uint64_t)rounds);
            }
        iy_free(chs);
    }
    /* Every inbox gap-free: the group's messages plus the pair's. */
    for (int i = 0; i < 4; i++) {
        CHECK(inbox_gap_free(s, u[i], &head));
        CHECK_EQ(head, 4 * (uint64_t)rounds);
    }
    store_free(wk[1].s);
    store_free(wk[0].s);
}

/* ---- versions, bad URLs ------------------------------------------------------------------ */

static void test_schema_version(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "schema");
    store_free(s);
    s = open_node(url, "schema");   /* opening again migrates nothing */
    store_free(s);

    /* A database of version 1 (push subscriptions without a session, one of
     * them stored then; no blocks; a message without mentions, edit,
     * reply or reaction state or the index by id) is brought to the newest
     * version at open; the old subscription reads back with no session, and
     * survives any logout; blocks work; the old message reads back unedited,
     * not deleted, replying to nothing, without reactions. */
    admin_sql(url, "DELETE FROM schema_version WHERE version >= 2");
    admin_sql(url, "ALTER TABLE push_subs DROP COLUMN session");
    admin_sql(url, "DROP TABLE blocks");
    admin_sql(url, "DROP INDEX sessions_by_user");
    admin_sql(url, "ALTER TABLE sessions DROP COLUMN created_ms");
    admin_sql(url, "ALTER TABLE channels DROP COLUMN muted");
    admin_sql(url, "ALTER TABLE messages DROP COLUMN mentions");
    admin_sql(url, "DROP INDEX messages_id");
    admin_sql(url, "ALTER TABLE messages DROP COLUMN edited_ms, DROP COLUMN deleted,"
                   " DROP COLUMN reply_to, DROP COLUMN reply_seq, DROP COLUMN reactions,"
                   " DROP COLUMN attachments");
    admin_sql(url, "DROP TABLE search_docs, search_cursors, attachments");
    admin_sql(url, "INSERT INTO messages (channel_id, seq, id, from_id, subject, event, cmid, body)"
                   " VALUES (4343, 1, 4344, 77, 0, 0, 'c1', 'old text')");
    admin_sql(url, "INSERT INTO push_subs (id, user_id, kind, device, url, p256dh, auth, secret)"
                   " VALUES (4242, 77, 1, 'old', 'https://hook.example/old', '', '', '')");
    s = open_node(url, "schema");
    iy_push_sub g;
    uint8_t zero[32] = { 0 }, tok[32];
    memset(tok, 7, sizeof tok);
    CHECK_EQ(store_push_sub_get(s, 4242, &g), 0);
    CHECK(strcmp(g.url, "https://hook.example/old") == 0);
    CHECK(memcmp(g.session, zero, 32) == 0);
    CHECK_EQ(store_session_create(s, tok, 77, "d"), 0);
    CHECK_EQ(store_session_delete(s, tok), 0);
    CHECK_EQ(store_push_sub_get(s, 4242, &g), 0);
    iy_msg_list ml;
    CHECK_EQ(store_history(s, 4343, UINT64_MAX, 0, 10, &ml), 0);
    CHECK(ml.n == 1 && ml.v[0].id == 4344 && strcmp(ml.v[0].text, "old text") == 0);
    CHECK(ml.n == 1 && ml.v[0].edited_ms == 0 && !ml.v[0].deleted && ml.v[0].nmentions == 0);
    CHECK(ml.n == 1 && ml.v[0].reply_to == 0 && ml.v[0].reply_seq == 0 && ml.v[0].reactions == NULL);
    CHECK(ml.n == 1 && ml.v[0].atts == NULL);
    iy_msg_list_clear(&ml);
    CHECK(admin_sql(url, "SELECT count(*) FROM pg_indexes WHERE indexname = 'messages_id'") == 1);
    iy_user ua, ub;
    CHECK_EQ(store_user_create(s, "schema_a", "A", "x", &ua), 0);
    CHECK_EQ(store_user_create(s, "schema_b", "B", "x", &ub), 0);
    CHECK_EQ(store_block_set(s, ua.id, ub.id, 1), 0);
    CHECK_EQ(store_blocked(s, ua.id, ub.id), 1);
    iy_session_info *sl;
    size_t nsl;
    CHECK_EQ(store_session_create(s, tok, ua.id, "after"), 0);
    CHECK_EQ(store_session_list(s, ua.id, &sl, &nsl), 0);
    CHECK(nsl == 1 && sl && strcmp(sl[0].device, "after") == 0 && sl[0].created_ms > 0);
    iy_free(sl);
    store_free(s);

    admin_sql(url, "INSERT INTO schema_version (version) VALUES (99)");
    store_config cfg = { url, "schema", 1, 0, 0 };
    CHECK_EQ(store_open(&cfg, &s), IY_EIO);
    CHECK(s == NULL);
    cfg.where = "postgresql://127.0.0.1/x?nosuchoption=1";
    CHECK_EQ(store_open(&cfg, &s), IY_EIO);
    CHECK(s == NULL);
}

/* ---- unavailability ----------------------------------------------------------------------- */

/* A loopback TCP socket bound to a free port (listening if listen_too). */
static int tcp_socket(int listen_too, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0 || (listen_too && listen(fd, 16) != 0)) {
        perror("socket");
        exit(1);
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A multi-host URI whose first host is dead: libpq moves on to the live one. */
static void test_multi_host(void)
{
    char url[256], multi[512];
    fresh_db(url);
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    const char *host = NULL, *port = "5432", *user = "postgres", *db = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val) continue;
        if (!strcmp(o->keyword, "host")) host = o->val;
        if (!strcmp(o->keyword, "port")) port = o->val;
        if (!strcmp(o->keyword, "user")) user = o->val;
        if (!strcmp(o->keyword, "dbname")) db = o->val;
    }
    if (!host || host[0] == '/' || strchr(host, ',') || !db) {
        printf("test_store_pg: multi-host case skipped (the URL is not one TCP host)\n");
        PQconninfoFree(opts);
        return;
    }
    int dead;
    close(tcp_socket(0, &dead));
    snprintf(multi, sizeof multi, "postgresql://%s@127.0.0.1:%d,%s:%s/%s?target_session_attrs=read-write",
             user, dead, host, port, db);
    PQconninfoFree(opts);
    store *s = open_node(multi, "multi");
    iy_user u;
    CHECK_EQ(store_user_create(s, "mh", "", "$h", &u), 0);
    store_free(s);
}

static void test_unreachable(void)
{
    char url[128];
    int port;
    store *s = NULL;
    store_config cfg = { url, "gone", 1, 0, 0 };

    /* Nothing listens: refused at once. */
    close(tcp_socket(0, &port));
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%d/postgres", port);
    int64_t t0 = mono_ms();
    CHECK_EQ(store_open(&cfg, &s), IY_EUNAVAIL);
    CHECK(mono_ms() - t0 < 5000);

    /* Something accepts and never answers: the deadline. */
    int fd = tcp_socket(1, &port);
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%d/postgres", port);
    t0 = mono_ms();
    CHECK_EQ(store_open(&cfg, &s), IY_EUNAVAIL);
    int64_t ms = mono_ms() - t0;
    CHECK(ms < 5000);
    close(fd);
    printf("test_store_pg: a silent server fails the open in %lld ms\n", (long long)ms);
}

/* Retries call (an expression) into rc while it gives IY_EUNAVAIL, at most 20 s. */
#define UNTIL_BACK(rc, call) do { \
    int64_t t_ = mono_ms(); \
    while (((rc) = (call)) == IY_EUNAVAIL && mono_ms() - t_ < 20000) usleep(50 * 1000); \
} while (0)

static void test_outage(void)
{
    if (!pg_dir) {
        printf("test_store_pg: outage cases skipped (IYAGI_TEST_PG_DIR is not set)\n");
        return;
    }
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "outage");
    store_reader *rd = store_reader_new(s);
    uint64_t a = mkuser(s, "oa"), b = mkuser(s, "ob"), pos;
    iy_stored o;
    iy_user u;
    CHECK_EQ(send1(s, a, 0, b, "before", "o-1", &o), 0);
    CHECK_EQ(store_reader_user_pos(rd, b, &pos), 0);
    uint64_t ch = o.msg.channel;

    /* A round is open when the server goes away: its commit fails. */
    iy_send in = mksend(a, ch, 0, "in flight", "o-2");
    store_round *r;
    CHECK_EQ(store_round_begin(s, &in, 1, &r), 0);
    CHECK_EQ(round_send(r, &in, &o, 0), 0);
    CHECK_EQ(o.msg.seq, 2);
    throwaway("down");
    int64_t t0 = mono_ms();
    CHECK_EQ(store_round_commit(r), IY_EUNAVAIL);
    CHECK(mono_ms() - t0 < 5000);

    /* While it is down, every call fails within the deadline, and quickly
     * once the first has failed (backoff), readers too. */
    t0 = mono_ms();
    CHECK_EQ(store_user_get(s, a, &u), IY_EUNAVAIL);
    CHECK_EQ(store_round_begin(s, &in, 1, &r), IY_EUNAVAIL);
    CHECK_EQ(store_reader_user_pos(rd, b, &pos), IY_EUNAVAIL);
    CHECK_EQ(store_heartbeat(s), IY_EUNAVAIL);
    int64_t ms = mono_ms() - t0;
    CHECK(ms < 5000);
    int64_t t1 = mono_ms();
    for (int i = 0; i < 100; i++) CHECK_EQ(store_user_get(s, a, &u), IY_EUNAVAIL);
    int64_t ms100 = mono_ms() - t1;
    printf("test_store_pg: server down: 4 calls failed in %lld ms, 100 more in %lld ms\n",
           (long long)ms, (long long)ms100);

    /* Back: both recover by themselves; the lost round's numbers come again. */
    throwaway("up");
    int rc;
    UNTIL_BACK(rc, store_user_get(s, a, &u));
    CHECK_EQ(rc, 0);
    UNTIL_BACK(rc, store_reader_user_pos(rd, b, &pos));
    CHECK_EQ(rc, 0);
    CHECK_EQ(pos, 1);
    CHECK_EQ(send1(s, a, ch, 0, "in flight", "o-2", &o), 0);
    CHECK_EQ(o.msg.seq, 2);
    CHECK_EQ(store_heartbeat(s), 0);

    /* A backend that hangs (stopped): the call gives up at the deadline,
     * and the next one works on a new connection. */
    int pid = backend_of(url, "outage", "idle");
    if (pid > 0 && kill(pid, SIGSTOP) == 0) {
        t0 = mono_ms();
        CHECK_EQ(store_user_get(s, a, &u), IY_EUNAVAIL);
        ms = mono_ms() - t0;
        CHECK(ms < 5000);
        kill(pid, SIGCONT);
        UNTIL_BACK(rc, store_user_get(s, a, &u));
        CHECK_EQ(rc, 0);
        printf("test_store_pg: a hung backend fails the call in %lld ms\n", (long long)ms);
    } else {
        printf("test_store_pg: hung-backend case skipped (cannot stop pid %d: %s)\n", pid, strerror(errno));
    }
    uint64_t n;
    CHECK(history_gap_free(s, ch, &n) && n == 2);
    store_reader_free(rd);
    store_free(s);
}

/* ---- throughput (printed, never asserted) --------------------------------------------------- */

static void test_throughput(void)
{
    char url[256];
    fresh_db(url);
    store *s = open_node(url, "perf");
    enum { PAIRS = 100, ROUNDS = 100, GROUPS = 10 };
    uint64_t u[2 * PAIRS];
    for (int i = 0; i < 2 * PAIRS; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        u[i] = mkuser(s, name);
    }
    iy_send *in = iy_calloc(PAIRS, sizeof *in);
    iy_stored *o = iy_malloc(PAIRS * sizeof *o);
    int rcs[PAIRS];
    char (*cmid)[32] = iy_malloc(PAIRS * sizeof *cmid);
    /* 1:1: rounds of 100 messages to 100 pairs (the first round makes the channels). */
    int64_t t0 = 0;
    int bad = 0;
    for (int r = 0; r <= ROUNDS; r++) {
        if (r == 1) t0 = mono_ms();
        for (int i = 0; i < PAIRS; i++) {
            snprintf(cmid[i], sizeof cmid[i], "c%d-%d", r, i);
            in[i] = mksend(u[i], 0, u[PAIRS + i], "a message of ordinary length, say sixty bytes", cmid[i]);
        }
        if (send_round(s, in, PAIRS, o, rcs, 0) != 0) bad++;
    }
    int64_t ms = mono_ms() - t0;
    printf("test_store_pg: 1:1 rounds of %d: %.0f rounds/s, %.0f messages/s\n", PAIRS,
           1000.0 * ROUNDS / (double)(ms ? ms : 1), 1000.0 * ROUNDS * PAIRS / (double)(ms ? ms : 1));

    /* Groups of 100: rounds of 10 messages, one to each of 10 groups. */
    uint64_t g[GROUPS];
    for (int i = 0; i < GROUPS; i++) g[i] = mkgroup(s, u[0], u + 1, 99);
    for (int r = 0; r <= ROUNDS; r++) {
        if (r == 1) t0 = mono_ms();
        for (int i = 0; i < GROUPS; i++) {
            snprintf(cmid[i], sizeof cmid[i], "g%d-%d", r, i);
            in[i] = mksend(u[(r + i) % 100], g[i], 0, "a message of ordinary length, say sixty bytes", cmid[i]);
        }
        if (send_round(s, in, GROUPS, o, rcs, 0) != 0) bad++;
    }
    ms = mono_ms() - t0;
    printf("test_store_pg: group-100 rounds of %d: %.0f rounds/s, %.0f messages/s, %.0f deliveries/s\n",
           GROUPS, 1000.0 * ROUNDS / (double)(ms ? ms : 1), 1000.0 * ROUNDS * GROUPS / (double)(ms ? ms : 1),
           100000.0 * ROUNDS * GROUPS / (double)(ms ? ms : 1));
    CHECK_EQ(bad, 0);
    iy_free(cmid);
    iy_free(o);
    iy_free(in);
    store_free(s);
}

int main(void)
{
    base_url = getenv("IYAGI_TEST_PG_URL");
    if (!base_url || !*base_url) {
        printf("test_store_pg: skipped (IYAGI_TEST_PG_URL is not set)\n");
        return 0;
    }
    pg_dir = getenv("IYAGI_TEST_PG_DIR");
    if (pg_dir && !*pg_dir) pg_dir = NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_users();
    test_sessions_settings();
    test_groups_friends();
    test_round_direct();
    test_round_cmid();
    test_round_events();
    test_round_failure();
    test_round_lock_wait();
    test_readers();
    test_push();
    test_schema_version();
    test_unreachable();
    test_multi_host();
    test_outage();
    test_two_nodes();
    test_throughput();
    if (!getenv("IYAGI_TEST_PG_KEEP")) drop_dbs();
    return T_DONE("test_store_pg");
}
