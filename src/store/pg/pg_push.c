/* pg_push.c — push subscriptions and the durable, leased push outbox of the
 * PostgreSQL backend (store.h, "push"). Notes are queued by the commit
 * round, in its transaction (pg_round.c): they commit or vanish with their
 * message.
 *
 *   push_subs   id PK, user_id (indexed): at most IY_PUSH_SUBS_MAX per user,
 *               counted under a per-user advisory lock so that two nodes
 *               adding at once cannot pass the limit together
 *   push_notes  (sub_id, channel_id) PK: at most one pending note per
 *               subscription and channel (a newer message collapses into
 *               it: message, from, preview change; created, attempts, due
 *               and the lease stay); due_ms indexed
 *   push_dead   dead letters, (sub_id, channel_id, message_id) PK
 *
 * Leases. A note is takeable when due_ms <= now. store_push_take picks the
 * oldest due ones with FOR UPDATE SKIP LOCKED (two nodes taking at once
 * skip each other's rows instead of waiting, and never get the same note),
 * and in the same statement moves due_ms to the lease's end and records the
 * taker in lease_node: nobody takes it again before the lease expires, and
 * after that any node may (the taker died). `all` also takes notes leased
 * by this node number before, due or not (a restarted node resumes its
 * own). store_push_done settles a note only while lease_node is still this
 * node: a note another node took over in the meantime is left to it.
 *
 * Deleting a subscription deletes its pending notes in the same
 * transaction, locking them first in channel order, the order in which a
 * round upserts one subscription's notes (so the two never deadlock). A
 * round that read the subscription just before may still queue a note for
 * it (rounds take no lock on subscriptions, on purpose): such a note names
 * a subscription that store_push_sub_get no longer finds (IY_ENOTFOUND),
 * and the pusher should settle it as dead. */
#include "pg_int.h"
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include <stdlib.h>
#include <string.h>

static const char SQL_SUB_LOCK[] = "SELECT pg_advisory_xact_lock(1769562471, $1::int4)";
static const char SQL_SUB_INSERT[] =
    "INSERT INTO push_subs (id, user_id, kind, device, url, p256dh, auth, secret, session)"
    " SELECT $1::int8, $2::int8, $3::int2, $4::text, $5::text, $6::text, $7::text, $8::text,"
    " $10::bytea WHERE (SELECT count(*) FROM push_subs WHERE user_id = $2::int8) < $9::int4";
static const char SQL_SUB_LOCK_NOTES[] =
    "SELECT 1 FROM push_notes WHERE sub_id = $1::int8"
    " AND EXISTS (SELECT 1 FROM push_subs WHERE id = $1::int8 AND user_id = $2::int8)"
    " ORDER BY channel_id FOR UPDATE";
static const char SQL_SUB_DELETE[] =
    "WITH s AS (DELETE FROM push_subs WHERE id = $1::int8 AND user_id = $2::int8 RETURNING id),"
    " n AS (DELETE FROM push_notes WHERE sub_id IN (SELECT id FROM s))"
    " SELECT count(*)::int4 FROM s";
static const char SQL_SUB_GET[] =
    "SELECT user_id, kind, device, url, p256dh, auth, secret, session FROM push_subs"
    " WHERE id = $1::int8";
#define TAKE_SET \
    " UPDATE push_notes AS p SET due_ms = $3::int8, lease_node = $4::int4" \
    " FROM t WHERE p.sub_id = t.sub_id AND p.channel_id = t.channel_id" \
    " RETURNING p.sub_id, p.user_id, p.channel_id, p.message_id, p.from_id, p.created_ms," \
    " p.attempts, p.preview, t.due_ms"
static const char SQL_TAKE[] =
    "WITH t AS (SELECT sub_id, channel_id, due_ms FROM push_notes WHERE due_ms <= $1::int8"
    " ORDER BY due_ms LIMIT $2::int4 FOR UPDATE SKIP LOCKED)" TAKE_SET;
static const char SQL_TAKE_ALL[] =
    "WITH t AS (SELECT sub_id, channel_id, due_ms FROM push_notes"
    " WHERE due_ms <= $1::int8 OR lease_node = $4::int4"
    " ORDER BY due_ms LIMIT $2::int4 FOR UPDATE SKIP LOCKED)" TAKE_SET;
#define MINE " WHERE sub_id = $1::int8 AND channel_id = $2::int8 AND lease_node = $3::int4"
static const char SQL_DONE_DELETE[] = "DELETE FROM push_notes" MINE " AND message_id = $4::int8";
static const char SQL_DONE_KEEP[] =
    "UPDATE push_notes SET due_ms = LEAST(due_ms, $4::int8), lease_node = NULL" MINE;
static const char SQL_RETRY[] =
    "UPDATE push_notes SET attempts = attempts + 1, due_ms = $4::int8, lease_node = NULL" MINE;
static const char SQL_DEAD[] =
    "WITH d AS (DELETE FROM push_notes" MINE " RETURNING *)"
    " INSERT INTO push_dead (sub_id, channel_id, message_id, user_id, from_id, created_ms, died_ms,"
    " attempts, preview) SELECT sub_id, channel_id, message_id, user_id, from_id, created_ms,"
    " $4::int8, attempts, preview FROM d ON CONFLICT DO NOTHING";
static const char SQL_COUNTS[] =
    "SELECT (SELECT count(*) FROM push_notes), (SELECT count(*) FROM push_dead)";

/* ---- subscriptions ----------------------------------------------------------- */

/* Length of a NUL-terminated field of a fixed array, or SIZE_MAX without a NUL. */
static size_t field_len(const char *f, size_t size)
{
    size_t n = strnlen(f, size);
    return n < size ? n : SIZE_MAX;
}

int pgs__push_sub_create(store *st, iy_push_sub *sub)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_push_sub_create");
    if (guard) return guard;
    if (field_len(sub->device, sizeof sub->device) == SIZE_MAX ||
        field_len(sub->url, sizeof sub->url) == SIZE_MAX ||
        field_len(sub->p256dh, sizeof sub->p256dh) == SIZE_MAX ||
        field_len(sub->auth, sizeof sub->auth) == SIZE_MAX ||
        field_len(sub->secret, sizeof sub->secret) == SIZE_MAX ||
        (sub->kind != IY_PUSH_WEBHOOK && sub->kind != IY_PUSH_WEBPUSH))
        return IY_EINVAL;
    uint64_t id = iy_id_next(&s->base.ids);
    pgs_params lk = { 0 }, ins = { 0 };
    pgs__p_i32(&lk, (int32_t)(uint32_t)(sub->user ^ sub->user >> 32));
    pgs__p_i64(&ins, id);
    pgs__p_i64(&ins, sub->user);
    pgs__p_i16(&ins, (int16_t)sub->kind);
    pgs__p_str(&ins, sub->device);
    pgs__p_str(&ins, sub->url);
    pgs__p_str(&ins, sub->p256dh);
    pgs__p_str(&ins, sub->auth);
    pgs__p_str(&ins, sub->secret);
    pgs__p_i32(&ins, IY_PUSH_SUBS_MAX);
    pgs__p_bytes(&ins, sub->session, sizeof sub->session);
    pgs_pipe p;
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    pgs__pipe_add(&p, SQL_SUB_LOCK, &lk);
    int q = pgs__pipe_add(&p, SQL_SUB_INSERT, &ins);
    pgs__add_last_id(&p, s);
    int rc = pgs__pipe_run(&p);
    if (rc == 0 && atoi(PQcmdTuples(pgs__pipe_res(&p, q))) != 1) rc = IY_ETOOBIG;
    pgs__pipe_end(&p);
    if (rc == 0) sub->id = id;
    return rc == IY_ECONFLICT ? IY_EIO : rc;   /* an id taken twice: should never happen */
}

int pgs__push_sub_delete(store *st, uint64_t user, uint64_t id)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_push_sub_delete");
    if (guard) return guard;
    pgs_params pp = { 0 };
    pgs_pipe p;
    pgs__p_i64(&pp, id);
    pgs__p_i64(&pp, user);
    /* The notes are locked in channel order first, the order in which a
     * round upserts one subscription's notes: the two never deadlock. */
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    pgs__pipe_add(&p, SQL_SUB_LOCK_NOTES, &pp);
    int q = pgs__pipe_add(&p, SQL_SUB_DELETE, &pp);
    int rc = pgs__pipe_run(&p);
    if (rc == 0)
        rc = pgs__pipe_rows(&p, q) == 1 && pgs__r_i32(pgs__pipe_res(&p, q), 0, 0) == 1 ? 0 : IY_ENOTFOUND;
    pgs__pipe_end(&p);
    return rc;
}

int pgs__push_sub_get(store *st, uint64_t id, iy_push_sub *out)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, id);
    int rc = pgs__exec_row(&s->conn, SQL_SUB_GET, &pp, &res);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    out->id = id;
    out->user = pgs__r_i64(res, 0, 0);
    out->kind = pgs__r_i16(res, 0, 1);
    rc = pgs__r_str(res, 0, 2, out->device, sizeof out->device);
    if (rc == 0) rc = pgs__r_str(res, 0, 3, out->url, sizeof out->url);
    if (rc == 0) rc = pgs__r_str(res, 0, 4, out->p256dh, sizeof out->p256dh);
    if (rc == 0) rc = pgs__r_str(res, 0, 5, out->auth, sizeof out->auth);
    if (rc == 0) rc = pgs__r_str(res, 0, 6, out->secret, sizeof out->secret);
    size_t sl = 0;
    const char *sess = PQgetisnull(res, 0, 7) ? NULL : pgs__r_bytes(res, 0, 7, &sl);
    if (rc == 0 && sess && sl == sizeof out->session) memcpy(out->session, sess, sl);
    PQclear(res);
    return rc;
}

/* ---- the outbox --------------------------------------------------------------------- */

typedef struct taken {
    int64_t due;                /* before the take: the order of the answer */
    iy_push_note note;
} taken;

static int cmp_due(const void *x, const void *y)
{
    const taken *a = x, *b = y;
    return a->due < b->due ? -1 : a->due > b->due;
}

int pgs__push_take(store *st, int64_t now_ms, int64_t lease_ms, int all, size_t max,
                   iy_push_note **out, size_t *n)
{
    pgs_store *s = (pgs_store *)st;
    *out = NULL;
    *n = 0;
    int guard = pgs__no_round(s, "store_push_take");
    if (guard) return guard;
    if (max == 0) return 0;
    int64_t until = lease_ms > 0 && now_ms > INT64_MAX - lease_ms ? INT64_MAX : now_ms + lease_ms;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, (uint64_t)now_ms);
    pgs__p_i32(&pp, max > 100000 ? 100000 : (int32_t)max);
    pgs__p_i64(&pp, (uint64_t)until);
    pgs__p_i32(&pp, (int32_t)s->base.ids.node);
    int rc = pgs__exec(&s->conn, pgs__deadline(), all ? SQL_TAKE_ALL : SQL_TAKE, &pp, &res);
    if (rc) return rc;
    int rows = PQntuples(res);
    if (rows == 0) {
        PQclear(res);
        return 0;
    }
    taken *t = iy_calloc((size_t)rows, sizeof *t);
    for (int i = 0; i < rows; i++) {
        iy_push_note *note = &t[i].note;
        size_t pl;
        const char *pv = pgs__r_bytes(res, i, 7, &pl);
        note->sub = pgs__r_i64(res, i, 0);
        note->user = pgs__r_i64(res, i, 1);
        note->channel = pgs__r_i64(res, i, 2);
        note->message_id = pgs__r_i64(res, i, 3);
        note->from = pgs__r_i64(res, i, 4);
        note->created_ms = (int64_t)pgs__r_i64(res, i, 5);
        note->attempts = (uint32_t)pgs__r_i32(res, i, 6);
        if (pl >= sizeof note->preview) pl = sizeof note->preview - 1;
        memcpy(note->preview, pv, pl);
        note->due_ms = until;
        t[i].due = (int64_t)pgs__r_i64(res, i, 8);
    }
    PQclear(res);
    qsort(t, (size_t)rows, sizeof *t, cmp_due);
    iy_push_note *v = iy_malloc((size_t)rows * sizeof *v);
    for (int i = 0; i < rows; i++) v[i] = t[i].note;
    iy_free(t);
    *out = v;
    *n = (size_t)rows;
    return 0;
}

/* The parameters naming a note leased by this node ($1..$3 of MINE) and $4. */
static void mine(pgs_params *pp, pgs_store *s, const iy_push_note *note, uint64_t v4)
{
    memset(pp, 0, sizeof *pp);
    pgs__p_i64(pp, note->sub);
    pgs__p_i64(pp, note->channel);
    pgs__p_i32(pp, (int32_t)s->base.ids.node);
    pgs__p_i64(pp, v4);
}

int pgs__push_done(store *st, const iy_push_note *note, int done, int dead, int64_t retry_ms)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_push_done");
    if (guard) return guard;
    pgs_params a, b;
    pgs_pipe p;
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    if (done) {
        /* Delivered: gone, unless a newer message collapsed into it since the
         * take; then it stays, due now (the delete left it, the update finds it). */
        mine(&a, s, note, note->message_id);
        mine(&b, s, note, (uint64_t)pgs__wall_ms());
        pgs__pipe_add(&p, SQL_DONE_DELETE, &a);
        pgs__pipe_add(&p, SQL_DONE_KEEP, &b);
    } else if (dead) {
        mine(&a, s, note, (uint64_t)pgs__wall_ms());
        pgs__pipe_add(&p, SQL_DEAD, &a);
    } else {
        mine(&a, s, note, (uint64_t)retry_ms);
        pgs__pipe_add(&p, SQL_RETRY, &a);
    }
    int rc = pgs__pipe_run(&p);
    pgs__pipe_end(&p);
    return rc;
}

int pgs__push_counts(store *st, uint64_t *pending, uint64_t *dead)
{
    pgs_store *s = (pgs_store *)st;
    PGresult *res;
    *pending = *dead = 0;
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_COUNTS, NULL, &res);
    if (rc) return rc;
    if (PQntuples(res) == 1) {
        *pending = pgs__r_i64(res, 0, 0);
        *dead = pgs__r_i64(res, 0, 1);
    }
    PQclear(res);
    return 0;
}
