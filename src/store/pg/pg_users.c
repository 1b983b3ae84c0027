/* pg_users.c — users, sessions and channels of the PostgreSQL backend
 * (store.h), outside commit rounds.
 *
 * Users. A user is a users row plus its inbox_heads row (pos 0), made in
 * one transaction: the head row is what a round locks. "The user exists"
 * means it has a users row: a deleted user (store_user_delete) keeps its
 * head row for the channels it was in. username is UNIQUE: a taken name
 * is a unique violation, IY_ECONFLICT.
 *
 * Sessions are keyed by the SHA-256 of their token (bytea).
 *
 * Channels. A channel row holds its members as an ascending int8[] (at
 * most IY_GROUP_MAX + 1 ids): a round reads and locks one row per channel.
 * channel_members (user_id, channel_id) is the index the other way, kept
 * in the same transaction as every change of the array (group creation
 * here, direct channels and membership events in pg_round.c). Group
 * creation inserts a new row that nobody references yet, so it needs no
 * lock; it checks in the same statement that every member exists. */
#include "pg_int.h"
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include <stdlib.h>
#include <string.h>

/* ---- users ------------------------------------------------------------------------ */

static const char SQL_USER_INSERT[] =
    "INSERT INTO users (id, username, display_name, pwhash) VALUES ($1::int8, $2::text, $3::text, $4::text)";
static const char SQL_HEAD_INSERT[] = "INSERT INTO inbox_heads (user_id, pos) VALUES ($1::int8, 0)";
static const char SQL_USER_FIND[] =
    "SELECT id, display_name, pwhash FROM users WHERE username = $1::text";
static const char SQL_USER_RENAME[] = "UPDATE users SET display_name = $2::text WHERE id = $1::int8";
static const char SQL_USER_PASSWORD[] = "UPDATE users SET pwhash = $2::text WHERE id = $1::int8";
/* The inbox_heads row stays: the user may still be a member of channels,
 * whose rounds lock every member's head. */
static const char SQL_USER_DELETE[] =
    "WITH p AS (DELETE FROM presence WHERE user_id = $1::int8) DELETE FROM users WHERE id = $1::int8";
static const char SQL_SESSION_LIST[] =
    "SELECT token_hash, device, created_ms FROM sessions WHERE user_id = $1::int8 ORDER BY created_ms, token_hash";

int pgs__user_create(store *st, const char *username, const char *display_name,
                     const char *pwhash, iy_user *out)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_user_create");
    if (guard) return guard;
    size_t ul = strlen(username), dl = display_name ? strlen(display_name) : 0;
    if (ul == 0 || ul > IY_USERNAME_MAX || dl > IY_DISPLAY_MAX || strlen(pwhash) > 255)
        return IY_EINVAL;
    if (!display_name) display_name = "";
    uint64_t id = iy_id_next(&s->base.ids);
    pgs_params u = { 0 }, h = { 0 };
    pgs__p_i64(&u, id);
    pgs__p_str(&u, username);
    pgs__p_str(&u, display_name);
    pgs__p_str(&u, pwhash);
    pgs__p_i64(&h, id);
    pgs_pipe p;
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    pgs__pipe_add(&p, SQL_USER_INSERT, &u);
    pgs__pipe_add(&p, SQL_HEAD_INSERT, &h);
    pgs__add_last_id(&p, s);
    int rc = pgs__pipe_run(&p);
    pgs__pipe_end(&p);
    if (rc) return rc;   /* IY_ECONFLICT: the username is taken */
    memset(out, 0, sizeof *out);
    out->id = id;
    memcpy(out->username, username, ul + 1);
    memcpy(out->display_name, display_name, dl + 1);
    return 0;
}

int pgs__user_get(store *st, uint64_t id, iy_user *out)
{
    return pgs__q_user(&((pgs_store *)st)->conn, id, out, NULL);
}

int pgs__user_find(store *st, const char *username, iy_user *out, char pwhash[256])
{
    pgs_store *s = (pgs_store *)st;
    size_t ul = strlen(username);
    if (ul == 0 || ul > IY_USERNAME_MAX) return IY_ENOTFOUND;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_str(&pp, username);
    int rc = pgs__exec_row(&s->conn, SQL_USER_FIND, &pp, &res);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    out->id = pgs__r_i64(res, 0, 0);
    memcpy(out->username, username, ul + 1);
    char hash[256];
    rc = pgs__r_str(res, 0, 1, out->display_name, sizeof out->display_name);
    if (rc == 0) rc = pgs__r_str(res, 0, 2, hash, sizeof hash);
    if (rc == 0 && pwhash) memcpy(pwhash, hash, strlen(hash) + 1);
    PQclear(res);
    return rc;
}

/* Rows a write touched (PQcmdTuples) of an exec's result, which it frees. */
static int touched(PGresult *res)
{
    int n = atoi(PQcmdTuples(res));
    PQclear(res);
    return n;
}

int pgs__user_set_display_name(store *st, uint64_t id, const char *display_name)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_user_set_display_name");
    if (guard) return guard;
    if (strlen(display_name) > IY_DISPLAY_MAX) return IY_EINVAL;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, id);
    pgs__p_str(&pp, display_name);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_USER_RENAME, &pp, &res);
    if (rc) return rc;
    return touched(res) ? 0 : IY_ENOTFOUND;
}

int pgs__user_set_password(store *st, uint64_t id, const char *pwhash)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_user_set_password");
    if (guard) return guard;
    if (strlen(pwhash) > 255) return IY_EINVAL;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, id);
    pgs__p_str(&pp, pwhash);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_USER_PASSWORD, &pp, &res);
    if (rc) return rc;
    return touched(res) ? 0 : IY_ENOTFOUND;
}

int pgs__user_delete(store *st, uint64_t id)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_user_delete");
    if (guard) return guard;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, id);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_USER_DELETE, &pp, &res);
    if (rc) return rc;
    return touched(res) ? 0 : IY_ENOTFOUND;
}

/* ---- sessions ------------------------------------------------------------------------ */

int pgs__session_list(store *st, uint64_t user, iy_session_info **out, size_t *n)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    PGresult *res;
    *out = NULL;
    *n = 0;
    pgs__p_i64(&pp, user);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_SESSION_LIST, &pp, &res);
    if (rc) return rc;
    int rows = PQntuples(res);
    if (rows) *out = iy_calloc((size_t)rows, sizeof **out);
    for (int i = 0; rc == 0 && i < rows; i++) {
        size_t hl;
        const char *h = pgs__r_bytes(res, i, 0, &hl);
        iy_session_info *si = &(*out)[i];
        if (hl != 32 || pgs__r_str(res, i, 1, si->device, sizeof si->device) != 0) rc = IY_EIO;
        else memcpy(si->hash, h, 32);
        si->created_ms = (int64_t)pgs__r_i64(res, i, 2);
    }
    PQclear(res);
    if (rc) {
        iy_free(*out);
        *out = NULL;
        return rc;
    }
    *n = (size_t)rows;
    return 0;
}

static const char SQL_SESSION_PUT[] =
    "INSERT INTO sessions (token_hash, user_id, device, created_ms) VALUES ($1::bytea, $2::int8, $3::text,"
    " (extract(epoch FROM clock_timestamp()) * 1000)::int8)"
    " ON CONFLICT (token_hash) DO UPDATE SET user_id = EXCLUDED.user_id, device = EXCLUDED.device,"
    " created_ms = EXCLUDED.created_ms";
/* The session and the push subscriptions it made, with their pending
 * notes, in one transaction; the notes are locked first in (channel, sub)
 * order, the order in which a round upserts them (pg_push.c). */
#define SESSION_SUBS                                                                  \
    "SELECT id FROM push_subs WHERE session = $1::bytea AND user_id ="                \
    " (SELECT user_id FROM sessions WHERE token_hash = $1::bytea)"
static const char SQL_SESSION_LOCK_NOTES[] =
    "SELECT 1 FROM push_notes WHERE sub_id IN (" SESSION_SUBS ")"
    " ORDER BY channel_id, sub_id FOR UPDATE";
static const char SQL_SESSION_DELETE[] =
    "WITH s AS (DELETE FROM push_subs WHERE id IN (" SESSION_SUBS ") RETURNING id),"
    " n AS (DELETE FROM push_notes WHERE sub_id IN (SELECT id FROM s))"
    " DELETE FROM sessions WHERE token_hash = $1::bytea";

int pgs__session_create(store *st, const uint8_t h[32], uint64_t user, const char *device)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_session_create");
    if (guard) return guard;
    if (device && strlen(device) > IY_DEVICE_MAX) return IY_EINVAL;
    pgs_params pp = { 0 };
    pgs__p_bytes(&pp, h, 32);
    pgs__p_i64(&pp, user);
    pgs__p_str(&pp, device ? device : "");
    return pgs__exec(&s->conn, pgs__deadline(), SQL_SESSION_PUT, &pp, NULL);
}

int pgs__session_get(store *st, const uint8_t h[32], uint64_t *user,
                        char device[IY_DEVICE_MAX + 1])
{
    return pgs__q_session(&((pgs_store *)st)->conn, h, user, device);
}

int pgs__session_delete(store *st, const uint8_t h[32])
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_session_delete");
    if (guard) return guard;
    pgs_params pp = { 0 };
    pgs_pipe p;
    pgs__p_bytes(&pp, h, 32);
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    pgs__pipe_add(&p, SQL_SESSION_LOCK_NOTES, &pp);
    int q = pgs__pipe_add(&p, SQL_SESSION_DELETE, &pp);
    int rc = pgs__pipe_run(&p);
    if (rc == 0 && atoi(PQcmdTuples(pgs__pipe_res(&p, q))) != 1) rc = IY_ENOTFOUND;
    pgs__pipe_end(&p);
    return rc;
}

/* ---- channels ------------------------------------------------------------------ */

static const char SQL_CHAN_GET[] =
    "SELECT kind, owner, name, members FROM channels WHERE id = $1::int8";
static const char SQL_GROUP_INSERT[] =
    "INSERT INTO channels (id, kind, owner, seq, name, members)"
    " SELECT $1::int8, 2, $2::int8, 0, $3::text, $4::int8[]"
    " WHERE (SELECT count(*) FROM users WHERE id = ANY ($4::int8[])) = $5::int4";
static const char SQL_GROUP_INDEX[] =
    "INSERT INTO channel_members (user_id, channel_id)"
    " SELECT u, $1::int8 FROM unnest($2::int8[]) AS u"
    " WHERE EXISTS (SELECT 1 FROM channels WHERE id = $1::int8)";
static const char SQL_USER_CHANNELS[] = "SELECT channel_id FROM channel_members WHERE user_id = $1::int8";
static const char SQL_CHAN_LAST[] =
    "SELECT " PGS_MSG_COLS " FROM messages AS m WHERE m.channel_id = $1::int8 ORDER BY m.seq DESC LIMIT 1";
static const char SQL_SHARE[] =
    "SELECT EXISTS (SELECT 1 FROM channel_members AS x JOIN channel_members AS y"
    " ON y.user_id = $2::int8 AND y.channel_id = x.channel_id WHERE x.user_id = $1::int8)";

int pgs__channel_get(store *st, uint64_t id, iy_channel *out)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, id);
    int rc = pgs__exec_row(&s->conn, SQL_CHAN_GET, &pp, &res);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    out->id = id;
    out->kind = pgs__r_i16(res, 0, 0);
    out->owner = pgs__r_i64(res, 0, 1);
    rc = pgs__r_str(res, 0, 2, out->name, sizeof out->name);
    if (rc == 0) rc = pgs__r_arr_i64(res, 0, 3, out->members, IY_GROUP_MAX + 1, &out->nmembers);
    PQclear(res);
    return rc;
}

int pgs__group_create(store *st, uint64_t owner, const char *name, const uint64_t *members,
                      uint32_t n, iy_channel *out)
{
    pgs_store *s = (pgs_store *)st;
    int guard = pgs__no_round(s, "store_group_create");
    if (guard) return guard;
    size_t nl = name ? strlen(name) : 0;
    if (nl > IY_GROUP_NAME_MAX || n < 2) return IY_EINVAL;
    if (n > IY_GROUP_MAX) return IY_ETOOBIG;
    for (uint32_t i = 1; i < n; i++)
        if (members[i] <= members[i - 1]) return IY_EINVAL;   /* ascending, no duplicates */

    uint64_t id = iy_id_next(&s->base.ids);
    pgs_arr arr = { 0 };
    pgs__arr_begin(&arr, PGS_OID_INT8);
    for (uint32_t i = 0; i < n; i++) pgs__arr_i64(&arr, members[i]);
    const iy_buf *mv = pgs__arr_end(&arr);
    pgs_params ins = { 0 }, idx = { 0 };
    pgs__p_i64(&ins, id);
    pgs__p_i64(&ins, owner);
    pgs__p_str(&ins, name ? name : "");
    pgs__p_buf(&ins, mv);
    pgs__p_i32(&ins, (int32_t)n);
    pgs__p_i64(&idx, id);
    pgs__p_buf(&idx, mv);

    pgs_pipe p;
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    int q = pgs__pipe_add(&p, SQL_GROUP_INSERT, &ins);
    pgs__pipe_add(&p, SQL_GROUP_INDEX, &idx);
    pgs__add_last_id(&p, s);
    int rc = pgs__pipe_run(&p);
    if (rc == 0 && atoi(PQcmdTuples(pgs__pipe_res(&p, q))) != 1) rc = IY_ENOTFOUND;   /* a member is missing */
    pgs__pipe_end(&p);
    pgs__arr_free(&arr);
    if (rc) return rc;

    memset(out, 0, sizeof *out);
    out->id = id;
    out->kind = IY_GROUP;
    memcpy(out->name, name ? name : "", nl + 1);
    out->owner = owner;
    out->nmembers = n;
    memcpy(out->members, members, n * sizeof *members);
    return 0;
}

int pgs__user_channels(store *st, uint64_t user, uint64_t **out, size_t *n)
{
    return pgs__q_user_channels(&((pgs_store *)st)->conn, user, out, n);
}

int pgs__q_user_channels(pgs_conn *pc, uint64_t user, uint64_t **out, size_t *n)
{
    pgs_params pp = { 0 };
    PGresult *res;
    *out = NULL;
    *n = 0;
    pgs__p_i64(&pp, user);
    int rc = pgs__exec(pc, pgs__deadline(), SQL_USER_CHANNELS, &pp, &res);
    if (rc) return rc;
    int rows = PQntuples(res);
    if (rows) {
        *out = iy_malloc((size_t)rows * sizeof **out);
        for (int i = 0; i < rows; i++) (*out)[i] = pgs__r_i64(res, i, 0);
        *n = (size_t)rows;
    }
    PQclear(res);
    return 0;
}

int pgs__channel_last(store *st, uint64_t channel, iy_msg *out)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, channel);
    int rc = pgs__exec_row(&s->conn, SQL_CHAN_LAST, &pp, &res);
    if (rc) return rc;
    if ((rc = pgs__msg_decode(res, 0, 0, out)) != 0) iy_msg_clear(out);
    PQclear(res);
    return rc;
}

int pgs__share_channel(store *st, uint64_t a, uint64_t b)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, a);
    pgs__p_i64(&pp, b);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_SHARE, &pp, &res);
    if (rc) return rc;
    rc = PQntuples(res) == 1 && pgs__r_bool(res, 0, 0);
    PQclear(res);
    return rc;
}
