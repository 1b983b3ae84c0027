/* store_fixture.h — a throw-away store for the store's contract tests, on
 * either backend, and the helpers that drive it the way the server does.
 *
 * Backends. fx_run() runs a test file's suite against RocksDB (a store in a
 * fresh temp directory) and then, when IYAGI_TEST_PG_URL is set (an admin
 * URL of a throwaway server, e.g. postgresql://postgres@127.0.0.1:PORT/postgres
 * from scripts/pg-throwaway.sh), again against PostgreSQL (a fresh database
 * per fresh(), made with CREATE DATABASE and dropped by done()). Each pass
 * prints its backend and its own pass/fail counts.
 *
 *   fresh()     opens a store on a new, empty directory or database
 *   reopen(s)   closes s and opens the same one again (the restart case;
 *               a round still open is discarded by store_free)
 *   done(s)     closes s and removes the directory or database
 *
 * Sends go through commit rounds and post_send (chat/post.h), i.e. under the
 * rules the server applies: send1/event1 are one-send rounds; round_*
 * helpers drive a round of several sends in order.
 *
 * Include after t.h. */
#ifndef IY_STORE_FIXTURE_H
#define IY_STORE_FIXTURE_H
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "base/err.h"
#include "chat/post.h"
#include "model/rules.h"
#include "store/store.h"

enum { FX_ROCKS = 1, FX_PG = 2 };

#define FX_NODE "unit"
#define FX_READERS 4

static int fx_backend = FX_ROCKS;
static const char *fx_admin_url;      /* IYAGI_TEST_PG_URL */
static char fx_where[512];            /* the directory or database URL of the current store */
static char fx_db[64];                /* PostgreSQL: the current database's name */
static int fx_ndb;

static inline int fx_is_rocks(void) { return fx_backend == FX_ROCKS; }
static inline int fx_is_pg(void) { return fx_backend == FX_PG; }
static inline const char *fx_name(void) { return fx_is_rocks() ? "rocksdb" : "postgresql"; }

/* Says that a test (or part of one) does not apply to this backend. */
static inline void fx_skip(const char *test, const char *why)
{
    printf("  %s: skipped on %s (%s)\n", test, fx_name(), why);
}

/* ---- PostgreSQL administration (libpq, blocking) -------------------------- */

/* Runs sql on the admin URL; exits the test if the server cannot be used. */
static inline void fx_admin(const char *sql)
{
    PGconn *c = PQconnectdb(fx_admin_url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "store fixture: cannot connect to %s: %s", fx_admin_url, PQerrorMessage(c));
        exit(1);
    }
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "store fixture: %s: %s", sql, PQresultErrorMessage(r));
        exit(1);
    }
    PQclear(r);
    PQfinish(c);
}

/* The admin URL with its database replaced by name, into fx_where. */
static inline void fx_url_for(const char *name)
{
    const char *u = fx_admin_url, *p = strstr(u, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    if (!p) {
        const char *q = strchr(u, '?');
        snprintf(fx_where, sizeof fx_where, "%.*s/%s%s", (int)(q ? q - u : (long)strlen(u)), u,
                 name, q ? q : "");
        return;
    }
    const char *q = strchr(p, '?');
    snprintf(fx_where, sizeof fx_where, "%.*s/%s%s", (int)(p - u), u, name, q ? q : "");
}

/* ---- the store -------------------------------------------------------------- */

/* Opens the current fx_where as node `node`: store_open's result, *out. */
static inline int fx_open(const char *node, store **out)
{
    store_config cfg = { fx_where, node, FX_READERS, 0, 0 };
    return store_open(&cfg, out);
}

static inline store *fresh(void)
{
    if (fx_is_rocks()) {
        strcpy(fx_where, "/tmp/iyagi_store_XXXXXX");
        if (!mkdtemp(fx_where)) {
            perror("mkdtemp");
            exit(1);
        }
    } else {
        char sql[128];
        snprintf(fx_db, sizeof fx_db, "iyagi_unit_%d_%d", (int)getpid(), fx_ndb++);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", fx_db);
        fx_admin(sql);
        fx_url_for(fx_db);
    }
    store *s = NULL;
    int rc = fx_open(FX_NODE, &s);
    CHECK_EQ(rc, 0);
    if (rc) {
        fprintf(stderr, "store fixture: cannot open %s\n", fx_where);
        exit(1);
    }
    CHECK(strcmp(store_kind(s), fx_name()) == 0);
    return s;
}

static inline store *reopen(store *s)
{
    store_free(s);
    s = NULL;
    int rc = fx_open(FX_NODE, &s);
    CHECK_EQ(rc, 0);
    if (rc) exit(1);
    return s;
}

/* Removes what fresh() made (after its stores were freed). */
static inline void fx_remove(void)
{
    if (fx_is_rocks()) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx_where);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", fx_where);
    } else {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", fx_db);
        fx_admin(sql);
    }
}

static inline void done(store *s)
{
    store_free(s);
    fx_remove();
}

/* Runs suite against RocksDB, then against PostgreSQL if IYAGI_TEST_PG_URL
 * is set; prints each pass's backend and counts. Returns the exit status. */
static inline int fx_run(const char *name, void (*suite)(void))
{
    const char *url = getenv("IYAGI_TEST_PG_URL");
    for (int b = FX_ROCKS; b <= FX_PG; b++) {
        if (b == FX_PG && !(url && *url)) {
            printf("%s: postgresql pass skipped (IYAGI_TEST_PG_URL not set)\n", name);
            break;
        }
        fx_backend = b;
        fx_admin_url = url;
        int p0 = t_pass, f0 = t_fail;
        printf("%s: backend %s%s%s\n", name, fx_name(), b == FX_PG ? " at " : "", b == FX_PG ? url : "");
        fflush(stdout);
        suite();
        printf("%s: backend %s: %d passed, %d failed\n", name, fx_name(), t_pass - p0, t_fail - f0);
        fflush(stdout);
    }
    return T_DONE(name);
}

/* ---- helpers ------------------------------------------------------------------ */

static inline int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline uint64_t mkuser(store *s, const char *name)
{
    iy_user u;
    CHECK_EQ(store_user_create(s, name, name, "$argon2id$hash", &u), 0);
    return u.id;
}

/* A group as the API makes one: rules_group_members, then the store. */
static inline int mkgroup(store *s, uint64_t owner, const char *name, const uint64_t *members, size_t n,
                   iy_channel *out)
{
    uint64_t m[IY_GROUP_MAX];
    uint32_t nm = 0;
    int rc = rules_group_members(owner, name, members, n, m, &nm);
    return rc ? rc : store_group_create(s, owner, name, m, nm, out);
}

/* One send in a round of its own, committed: post_send's result. */
static inline int send_in(store *s, const iy_send *in, iy_stored *out)
{
    store_round *r = NULL;
    int rc = store_round_begin(s, in, 1, &r);
    CHECK_EQ(rc, 0);
    if (rc) return rc;
    rc = post_send(r, in, out);
    CHECK_EQ(store_round_commit(r), 0);
    return rc;
}

/* A message (channel or to) in a round of its own. */
static inline int send1(store *s, uint64_t from, uint64_t channel, uint64_t to, const char *text,
                 const char *cmid, iy_stored *out)
{
    iy_send in = { from, channel, to, text, strlen(text), cmid, 0, 0, 0, 0, NULL, 0 };
    return send_in(s, &in, out);
}

/* A membership event in a round of its own. */
static inline int event1(store *s, uint64_t from, uint64_t channel, int event, uint64_t subject,
                  const char *text, iy_stored *out)
{
    iy_send in = { from, channel, 0, text, strlen(text), "", event, subject, 0, 0, NULL, 0 };
    return send_in(s, &in, out);
}

/* Begins a round for sends[0..n): the round, or NULL (a failed CHECK). */
static inline store_round *round_of(store *s, const iy_send *sends, size_t n)
{
    store_round *r = NULL;
    CHECK_EQ(store_round_begin(s, sends, n, &r), 0);
    return r;
}

/* Posts every send of a round in order, each result into rc[i] and out[i]. */
static inline void post_all(store_round *r, const iy_send *sends, size_t n, int *rc, iy_stored *out)
{
    for (size_t i = 0; i < n; i++) rc[i] = post_send(r, &sends[i], &out[i]);
}

/* The inbox pos of user in o, 0 if user is not among o's members. */
static inline uint64_t pos_of(const iy_stored *o, uint64_t user)
{
    for (uint32_t i = 0; i < o->nmembers; i++) if (o->members[i] == user) return o->pos[i];
    return 0;
}

#endif
