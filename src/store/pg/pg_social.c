/* pg_social.c — the PostgreSQL backend's small records around the chat:
 * read state, friends, and presence persistence (store.h).
 *
 * Read state and last_active move forward only (GREATEST in the upsert),
 * whichever node writes, and are written with synchronous_commit off for
 * that one transaction (set_config(..., true) in the same pipeline): the
 * newest moves may be lost in a crash of the database machine, never
 * reordered, and the call does not wait for a WAL flush.
 *
 * Friends. Each side is one row, (a, b, state from a's side); a pair is
 * written together. store_friend_set is a compare-and-set on a's side:
 *
 *   exchange 1: BEGIN; b exists?; lock the pair's existing rows in (a, b)
 *               order (FOR UPDATE: two writers of one pair never deadlock)
 *   decide:     a's side != expected -> IY_ECONFLICT (rolled back)
 *   exchange 2: the write and COMMIT
 *
 * A pair with no rows has nothing to lock: two writers that both expect
 * NONE both insert, and the second insert fails on the primary key once
 * the first commits, which is the conflict it reports. */
#include "pg_int.h"
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include <string.h>

static const char SQL_LAZY[] = "SELECT set_config('synchronous_commit', 'off', true)";
static const char SQL_READ_SET[] =
    "INSERT INTO reads AS r (user_id, channel_id, seq)"
    " SELECT $1::int8, c.id, LEAST($3::int8, c.seq) FROM channels c WHERE c.id = $2::int8"
    " ON CONFLICT (user_id, channel_id) DO UPDATE SET seq = GREATEST(r.seq, EXCLUDED.seq)"
    " RETURNING r.seq";
static const char SQL_READ_GET[] = "SELECT seq FROM reads WHERE user_id = $1::int8 AND channel_id = $2::int8";
static const char SQL_ACTIVE_SET[] =
    "INSERT INTO presence AS p (user_id, last_active_ms) VALUES ($1::int8, $2::int8)"
    " ON CONFLICT (user_id) DO UPDATE SET last_active_ms = GREATEST(p.last_active_ms, EXCLUDED.last_active_ms)";
/* Rows in user order, so that two nodes' batches never wait on each other in
 * a cycle; one row per user (ON CONFLICT may not touch a row twice). */
static const char SQL_ACTIVE_SET_MANY[] =
    "INSERT INTO presence AS p (user_id, last_active_ms)"
    " SELECT u, max(m) FROM unnest($1::int8[], $2::int8[]) AS t(u, m) GROUP BY u ORDER BY u"
    " ON CONFLICT (user_id) DO UPDATE SET last_active_ms = GREATEST(p.last_active_ms, EXCLUDED.last_active_ms)";
static const char SQL_ACTIVE_GET[] = "SELECT last_active_ms FROM presence WHERE user_id = $1::int8";
static const char SQL_FRIEND_STATE[] = "SELECT state FROM friends WHERE a = $1::int8 AND b = $2::int8";
static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_USER_EXISTS[] = "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1::int8)";
static const char SQL_FRIEND_LOCK[] =
    "SELECT a, state FROM friends WHERE (a = $1::int8 AND b = $2::int8) OR (a = $2::int8 AND b = $1::int8)"
    " ORDER BY a, b FOR UPDATE";
static const char SQL_FRIEND_INSERT[] =
    "INSERT INTO friends (a, b, state) VALUES ($1::int8, $2::int8, $3::int2), ($2::int8, $1::int8, $4::int2)";
static const char SQL_FRIEND_UPSERT[] =
    "INSERT INTO friends (a, b, state) VALUES ($1::int8, $2::int8, $3::int2), ($2::int8, $1::int8, $4::int2)"
    " ON CONFLICT (a, b) DO UPDATE SET state = EXCLUDED.state";
static const char SQL_FRIEND_DELETE[] =
    "DELETE FROM friends WHERE (a = $1::int8 AND b = $2::int8) OR (a = $2::int8 AND b = $1::int8)";
static const char SQL_FRIEND_LIST[] = "SELECT b, state FROM friends WHERE a = $1::int8 ORDER BY b";
static const char SQL_BLOCK_ON[] =
    "INSERT INTO blocks (blocker, blocked) SELECT $1::int8, id FROM users WHERE id = $2::int8"
    " ON CONFLICT DO NOTHING";
static const char SQL_BLOCK_OFF[] = "DELETE FROM blocks WHERE blocker = $1::int8 AND blocked = $2::int8";
static const char SQL_BLOCKED[] =
    "SELECT EXISTS (SELECT 1 FROM blocks WHERE blocker = $1::int8 AND blocked = $2::int8)";
static const char SQL_MUTE_ON[] =
    "UPDATE channels SET muted = array_append(muted, $2::int8) WHERE id = $1::int8 AND NOT $2::int8 = ANY (muted)";
static const char SQL_MUTE_OFF[] =
    "UPDATE channels SET muted = array_remove(muted, $2::int8) WHERE id = $1::int8 AND $2::int8 = ANY (muted)";
static const char SQL_MUTED[] =
    "SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1::int8 AND $2::int8 = ANY (muted))";
static const char SQL_BLOCK_LIST[] = "SELECT blocked FROM blocks WHERE blocker = $1::int8 ORDER BY blocked";
/* state 3: IY_FRIEND_MUTUAL */
static const char SQL_FRIENDS_OF[] =
    "SELECT a, b FROM friends WHERE a = ANY ($1::int8[]) AND state = 3 ORDER BY a, b";

/* ---- read state --------------------------------------------------------------- */

int pgs__read_set(store *st, uint64_t user, uint64_t channel, uint64_t seq, uint64_t *now)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    pgs_pipe p;
    *now = 0;
    int guard = pgs__no_round(s, "store_read_set");
    if (guard) return guard;
    pgs__p_i64(&pp, user);
    pgs__p_i64(&pp, channel);
    pgs__p_i64(&pp, seq);
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    pgs__pipe_add(&p, SQL_LAZY, NULL);
    int q = pgs__pipe_add(&p, SQL_READ_SET, &pp);
    int rc = pgs__pipe_run(&p);
    if (rc == 0 && pgs__pipe_rows(&p, q) == 1) *now = pgs__r_i64(pgs__pipe_res(&p, q), 0, 0);
    pgs__pipe_end(&p);
    return rc;
}

/* A single int8 of row 0 of sql(a, b) (b used if two), or 0 when no row. */
static int get_i64(pgs_store *s, const char *sql, uint64_t a, uint64_t b, int two, uint64_t *v)
{
    pgs_params pp = { 0 };
    PGresult *res;
    *v = 0;
    pgs__p_i64(&pp, a);
    if (two) pgs__p_i64(&pp, b);
    int rc = pgs__exec(&s->conn, pgs__deadline(), sql, &pp, &res);
    if (rc) return rc;
    if (PQntuples(res) == 1) *v = pgs__r_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

int pgs__read_get(store *st, uint64_t user, uint64_t channel, uint64_t *seq)
{
    return get_i64((pgs_store *)st, SQL_READ_GET, user, channel, 1, seq);
}

/* ---- presence persistence ---------------------------------------------------------- */

int pgs__last_active_set(store *st, uint64_t user, int64_t ms)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_last_active_set");
    if (guard) return guard;
    pgs_params pp = { 0 };
    pgs_pipe p;
    pgs__p_i64(&pp, user);
    pgs__p_i64(&pp, (uint64_t)ms);
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    pgs__pipe_add(&p, SQL_LAZY, NULL);
    pgs__pipe_add(&p, SQL_ACTIVE_SET, &pp);
    int rc = pgs__pipe_run(&p);
    pgs__pipe_end(&p);
    return rc;
}

int pgs__last_active_set_many(store *st, const uint64_t *users, const int64_t *ms, size_t n)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_last_active_set_many");
    if (guard || n == 0) return guard;
    pgs_arr au = { 0 }, am = { 0 };
    pgs__arr_begin(&au, PGS_OID_INT8);
    pgs__arr_begin(&am, PGS_OID_INT8);
    for (size_t i = 0; i < n; i++) {
        pgs__arr_i64(&au, users[i]);
        pgs__arr_i64(&am, (uint64_t)ms[i]);
    }
    pgs_params pp = { 0 };
    pgs__p_buf(&pp, pgs__arr_end(&au));
    pgs__p_buf(&pp, pgs__arr_end(&am));
    pgs_pipe p;
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    pgs__pipe_add(&p, SQL_LAZY, NULL);
    pgs__pipe_add(&p, SQL_ACTIVE_SET_MANY, &pp);
    int rc = pgs__pipe_run(&p);
    pgs__pipe_end(&p);
    pgs__arr_free(&au);
    pgs__arr_free(&am);
    return rc;
}

int pgs__last_active_get(store *st, uint64_t user, int64_t *ms)
{
    uint64_t v;
    int rc = get_i64((pgs_store *)st, SQL_ACTIVE_GET, user, 0, 0, &v);
    *ms = rc ? 0 : (int64_t)v;
    return rc;
}

/* ---- friends ----------------------------------------------------------------------- */

static int state_valid(int st) { return st >= IY_FRIEND_NONE && st <= IY_FRIEND_MUTUAL; }

/* b's side of a pair whose a side is st. */
static int mirror(int st)
{
    return st == IY_FRIEND_OUTGOING ? IY_FRIEND_INCOMING : st == IY_FRIEND_INCOMING ? IY_FRIEND_OUTGOING : st;
}

int pgs__friend_state(store *st, uint64_t a, uint64_t b, int *state)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    PGresult *res;
    *state = IY_FRIEND_NONE;
    pgs__p_i64(&pp, a);
    pgs__p_i64(&pp, b);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_FRIEND_STATE, &pp, &res);
    if (rc) return rc;
    if (PQntuples(res) == 1) *state = pgs__r_i16(res, 0, 0);
    PQclear(res);
    if (!state_valid(*state)) {
        iy_log_error("store: postgresql: a friend row with state %d", *state);
        *state = IY_FRIEND_NONE;
        return IY_EIO;
    }
    return 0;
}

int pgs__friend_set(store *st, uint64_t a, uint64_t b, int expect_a, int state_a)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_friend_set");
    if (guard) return guard;
    if (a == b || !state_valid(expect_a) || !state_valid(state_a)) return IY_EINVAL;
    int64_t deadline = pgs__deadline();
    pgs_params ab = { 0 }, bb = { 0 };
    pgs__p_i64(&ab, a);
    pgs__p_i64(&ab, b);
    pgs__p_i64(&bb, b);

    pgs_pipe p;
    pgs__pipe_begin(&p, &s->conn, deadline);
    pgs__pipe_add(&p, SQL_BEGIN, NULL);
    int qe = pgs__pipe_add(&p, SQL_USER_EXISTS, &bb);
    int ql = pgs__pipe_add(&p, SQL_FRIEND_LOCK, &ab);
    int rc = pgs__pipe_run(&p);
    int cur = IY_FRIEND_NONE;
    if (rc == 0 && !(pgs__pipe_rows(&p, qe) == 1 && pgs__r_bool(pgs__pipe_res(&p, qe), 0, 0)))
        rc = IY_ENOTFOUND;
    for (int i = 0; rc == 0 && i < pgs__pipe_rows(&p, ql); i++)
        if (pgs__r_i64(pgs__pipe_res(&p, ql), i, 0) == a) cur = pgs__r_i16(pgs__pipe_res(&p, ql), i, 1);
    pgs__pipe_end(&p);
    if (rc) goto err;
    if (cur != expect_a) {
        rc = IY_ECONFLICT;
        goto err;
    }

    pgs_params w = { 0 };
    pgs__p_i64(&w, a);
    pgs__p_i64(&w, b);
    pgs__pipe_begin(&p, &s->conn, deadline);
    if (state_a == IY_FRIEND_NONE) {
        pgs__pipe_add(&p, SQL_FRIEND_DELETE, &w);
    } else if (state_a != cur) {
        pgs__p_i16(&w, (int16_t)state_a);
        pgs__p_i16(&w, (int16_t)mirror(state_a));
        pgs__pipe_add(&p, cur == IY_FRIEND_NONE ? SQL_FRIEND_INSERT : SQL_FRIEND_UPSERT, &w);
    }
    pgs__pipe_add(&p, SQL_COMMIT, NULL);
    rc = pgs__pipe_run(&p);
    pgs__pipe_end(&p);
    if (rc) goto err;   /* IY_ECONFLICT: another writer inserted the pair first */
    return 0;
err:
    pgs__rollback(&s->conn, pgs__now() + 1000);
    return rc;
}

/* Appends x to the malloc'd array *v of *n elements (capacity *cap). */
static void push_u64(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = iy_realloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = x;
}

int pgs__friends_of(store *st, const uint64_t *users, size_t n, uint64_t **pairs, size_t *np)
{
    pgs_store *s = (pgs_store *)st;
    *pairs = NULL;
    *np = 0;
    if (n == 0) return 0;
    pgs_arr au = { 0 };
    pgs__arr_begin(&au, PGS_OID_INT8);
    for (size_t i = 0; i < n; i++) pgs__arr_i64(&au, users[i]);
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_buf(&pp, pgs__arr_end(&au));
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_FRIENDS_OF, &pp, &res);
    pgs__arr_free(&au);
    if (rc) return rc;
    size_t k = (size_t)PQntuples(res);
    if (k) {
        *pairs = iy_malloc(2 * k * sizeof **pairs);
        for (size_t i = 0; i < k; i++) {
            (*pairs)[2 * i] = pgs__r_i64(res, (int)i, 0);
            (*pairs)[2 * i + 1] = pgs__r_i64(res, (int)i, 1);
        }
        *np = k;
    }
    PQclear(res);
    return 0;
}

int pgs__friend_list(store *st, uint64_t user, uint64_t **f, size_t *nf, uint64_t **in, size_t *ni,
                     uint64_t **out, size_t *no)
{
    pgs_store *s = (pgs_store *)st;
    uint64_t **arr[4] = { NULL, out, in, f };
    size_t *cnt[4] = { NULL, no, ni, nf }, cap[4] = { 0 };
    for (int i = 1; i < 4; i++) {
        *arr[i] = NULL;
        *cnt[i] = 0;
    }
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, user);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_FRIEND_LIST, &pp, &res);
    if (rc) return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        int stt = pgs__r_i16(res, i, 1);
        if (stt < IY_FRIEND_OUTGOING || stt > IY_FRIEND_MUTUAL) {
            iy_log_error("store: postgresql: a friend row with state %d", stt);
            rc = IY_EIO;
            break;
        }
        push_u64(arr[stt], cnt[stt], &cap[stt], pgs__r_i64(res, i, 0));
    }
    PQclear(res);
    if (rc)
        for (int i = 1; i < 4; i++) {
            iy_free(*arr[i]);
            *arr[i] = NULL;
            *cnt[i] = 0;
        }
    return rc;
}

/* ---- blocks ---------------------------------------------------------------------------- */

int pgs__block_set(store *st, uint64_t blocker, uint64_t blocked, int on)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_block_set");
    if (guard) return guard;
    if (blocker == blocked) return IY_EINVAL;
    pgs_params ab = { 0 }, b = { 0 };
    pgs__p_i64(&ab, blocker);
    pgs__p_i64(&ab, blocked);
    pgs__p_i64(&b, blocked);
    pgs_pipe p;
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    int qe = pgs__pipe_add(&p, SQL_USER_EXISTS, &b);
    pgs__pipe_add(&p, on ? SQL_BLOCK_ON : SQL_BLOCK_OFF, &ab);
    int rc = pgs__pipe_run(&p);
    if (rc == 0 && !(pgs__pipe_rows(&p, qe) == 1 && pgs__r_bool(pgs__pipe_res(&p, qe), 0, 0))) rc = IY_ENOTFOUND;
    pgs__pipe_end(&p);
    return rc;
}

int pgs__blocked(store *st, uint64_t blocker, uint64_t blocked)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, blocker);
    pgs__p_i64(&pp, blocked);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_BLOCKED, &pp, &res);
    if (rc) return rc;
    rc = PQntuples(res) == 1 && pgs__r_bool(res, 0, 0);
    PQclear(res);
    return rc;
}

int pgs__block_list(store *st, uint64_t blocker, uint64_t **ids, size_t *n)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    PGresult *res;
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    pgs__p_i64(&pp, blocker);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_BLOCK_LIST, &pp, &res);
    if (rc) return rc;
    for (int i = 0; i < PQntuples(res); i++) push_u64(ids, n, &cap, pgs__r_i64(res, i, 0));
    PQclear(res);
    return 0;
}

/* ---- mutes ------------------------------------------------------------------------------ */

int pgs__mute_set(store *st, uint64_t user, uint64_t channel, int on)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_mute_set");
    if (guard) return guard;
    pgs_params pp = { 0 };
    pgs__p_i64(&pp, channel);
    pgs__p_i64(&pp, user);
    return pgs__exec(&s->conn, pgs__deadline(), on ? SQL_MUTE_ON : SQL_MUTE_OFF, &pp, NULL);
}

int pgs__muted(store *st, uint64_t user, uint64_t channel)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, channel);
    pgs__p_i64(&pp, user);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_MUTED, &pp, &res);
    if (rc) return rc;
    rc = PQntuples(res) == 1 && pgs__r_bool(res, 0, 0);
    PQclear(res);
    return rc;
}

/* ---- the round's @usernames ------------------------------------------------------------ */

/* One more exchange inside the round's transaction, only for rounds whose
 * texts name someone (store_round_name). */
static const char SQL_NAMES[] = "SELECT username, id FROM users WHERE username = ANY ($1::text[])";

int pgs__names_load(store *st, store_round *r)
{
    pgs_store *s = (pgs_store *)st;
    pgs_arr names;
    pgs__arr_begin(&names, PGS_OID_TEXT);
    for (size_t i = 0; i < r->nname_keys; i++) pgs__arr_bytes(&names, r->name_keys[i], strlen(r->name_keys[i]));
    pgs__arr_end(&names);
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_buf(&pp, &names.b);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_NAMES, &pp, &res);
    pgs__arr_free(&names);
    if (rc) return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        char name[IY_USERNAME_MAX + 1];
        if (pgs__r_str(res, i, 0, name, sizeof name) == 0) round_put_name(r, name, pgs__r_i64(res, i, 1));
    }
    PQclear(res);
    return 0;
}
