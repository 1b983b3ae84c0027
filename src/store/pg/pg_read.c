/* pg_read.c — committed reads of the PostgreSQL backend, and the readers
 * (store.h, "readers").
 *
 * The read functions take a connection, so the storage thread (its own
 * connection) and every reader (one connection each) share them. Each is
 * one statement in its own implicit transaction: it sees what was
 * committed when it started, and a round is one transaction, so a round is
 * seen whole or not at all.
 *
 *   history   messages (channel_id, seq) PK: one range of one partition
 *   sync      inbox (user_id, pos) PK range, each entry joined to its
 *             message by the messages PK (a nested loop of index probes,
 *             the partition chosen per probe at run time)
 *   user_pos  inbox_heads PK
 *
 * Readers. A reader owns a connection to the same URI, made lazily on its
 * first call and remade after a failure (pg_conn.c: same deadlines, same
 * backoff), so store_reader_new never fails and a reader whose database is
 * gone answers IY_EUNAVAIL within the deadline. Readers must read the
 * primary (the same URI as the store): a round is visible to a reader once
 * store_round_commit returned, which an asynchronous standby would not
 * guarantee. */
#include "pg_int.h"
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include <stdio.h>
#include <string.h>

static const char SQL_HISTORY_BEFORE[] =
    "SELECT " PGS_MSG_COLS " FROM messages AS m WHERE m.channel_id = $1::int8 AND m.seq < $2::int8"
    " ORDER BY m.seq DESC LIMIT $3::int4";
static const char SQL_HISTORY_AFTER[] =
    "SELECT " PGS_MSG_COLS " FROM messages AS m WHERE m.channel_id = $1::int8 AND m.seq > $2::int8"
    " ORDER BY m.seq LIMIT $3::int4";
/* LEFT JOIN: an inbox entry without its message is corruption, not a gap to hide. */
static const char SQL_SYNC[] =
    "SELECT i.pos, " PGS_MSG_COLS " FROM inbox AS i"
    " LEFT JOIN messages AS m ON m.channel_id = i.channel_id AND m.seq = i.seq"
    " WHERE i.user_id = $1::int8 AND i.pos > $2::int8 ORDER BY i.pos LIMIT $3::int4";
static const char SQL_USER_POS[] = "SELECT pos FROM inbox_heads WHERE user_id = $1::int8";
static const char SQL_SESSION_GET[] = "SELECT user_id, device FROM sessions WHERE token_hash = $1::bytea";
static const char SQL_USER_GET[] = "SELECT username, display_name, pwhash FROM users WHERE id = $1::int8";
static const char SQL_IS_MEMBER[] = "SELECT $2::int8 = ANY (members) FROM channels WHERE id = $1::int8";

int pgs__msg_decode(const PGresult *r, int row, int col, iy_msg *m)
{
    memset(m, 0, sizeof *m);
    if (pgs__r_null(r, row, col)) {
        iy_log_error("store: postgresql: an inbox entry without its message");
        return IY_EIO;
    }
    m->channel = pgs__r_i64(r, row, col);
    m->seq = pgs__r_i64(r, row, col + 1);
    m->id = pgs__r_i64(r, row, col + 2);
    m->from = pgs__r_i64(r, row, col + 3);
    m->subject = pgs__r_i64(r, row, col + 4);
    m->event = pgs__r_i16(r, row, col + 5);
    m->ts = iy_id_ts(m->id);
    if (pgs__r_str(r, row, col + 6, m->cmid, sizeof m->cmid)) return IY_EIO;
    size_t n;
    const char *body = pgs__r_bytes(r, row, col + 7, &n);
    m->text = iy_malloc(n + 1);
    if (n) memcpy(m->text, body, n);
    m->text[n] = '\0';
    m->text_len = n;
    const uint8_t *ment = (const uint8_t *)pgs__r_bytes(r, row, col + 8, &n);
    if (n % 8 || n / 8 > IY_MENTIONS_MAX) return IY_EIO;
    m->nmentions = (uint32_t)(n / 8);
    for (uint32_t i = 0; i < m->nmentions; i++)
        for (int b = 0; b < 8; b++) m->mentions[i] = m->mentions[i] << 8 | ment[8 * i + (uint32_t)b];
    m->edited_ms = (int64_t)pgs__r_i64(r, row, col + 9);
    m->deleted = pgs__r_bool(r, row, col + 10);
    m->reply_to = pgs__r_i64(r, row, col + 11);
    m->reply_seq = pgs__r_i64(r, row, col + 12);
    const uint8_t *rb = (const uint8_t *)pgs__r_bytes(r, row, col + 13, &n);
    int bad = 0;
    m->reactions = iy_reactions_decode(rb, n, &bad);
    const uint8_t *ab = (const uint8_t *)pgs__r_bytes(r, row, col + 14, &n);
    if (!bad) m->atts = iy_atts_decode(ab, n, &bad);
    if (bad) {
        iy_log_error("store: postgresql: message %llu of channel %llu: malformed reactions (%zu bytes)",
               (unsigned long long)m->id, (unsigned long long)m->channel, n);
        return IY_EIO;
    }
    return 0;
}

/* Decodes rows [0, n) of r into a fresh list (pos from column 0 when
 * with_pos, the message from column with_pos). 0, IY_EIO (list empty). */
static int list_decode(const PGresult *r, int n, int with_pos, iy_msg_list *out)
{
    out->v = n ? iy_calloc((size_t)n, sizeof *out->v) : NULL;
    out->n = 0;
    for (int i = 0; i < n; i++) {
        iy_msg *m = &out->v[out->n];
        if (pgs__msg_decode(r, i, with_pos ? 1 : 0, m)) {
            iy_msg_clear(m);
            iy_msg_list_clear(out);
            return IY_EIO;
        }
        if (with_pos) m->pos = pgs__r_i64(r, i, 0);
        out->n++;
    }
    return 0;
}

static int q_history(pgs_conn *pc, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                     int limit, iy_msg_list *out)
{
    out->v = NULL;
    out->n = 0;
    if (limit <= 0 || (before_seq == 0 && after_seq >= INT64_MAX)) return 0;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, channel);
    pgs__p_i64(&pp, before_seq ? (before_seq > INT64_MAX ? INT64_MAX : before_seq) : after_seq);
    pgs__p_i32(&pp, limit);
    int rc = pgs__exec(pc, pgs__deadline(), before_seq ? SQL_HISTORY_BEFORE : SQL_HISTORY_AFTER, &pp,
                       &res);
    if (rc) return rc;
    rc = list_decode(res, PQntuples(res), 0, out);
    PQclear(res);
    return rc;
}

static int q_sync(pgs_conn *pc, uint64_t user, uint64_t after, int limit, iy_msg_list *out, int *more)
{
    out->v = NULL;
    out->n = 0;
    *more = 0;
    if (after >= INT64_MAX) return 0;
    if (limit < 0) limit = 0;
    if (limit > 1000000) limit = 1000000;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, user);
    pgs__p_i64(&pp, after);
    pgs__p_i32(&pp, limit + 1);   /* one more says whether more remain */
    int rc = pgs__exec(pc, pgs__deadline(), SQL_SYNC, &pp, &res);
    if (rc) return rc;
    int n = PQntuples(res);
    if (n > limit) {
        *more = 1;
        n = limit;
    }
    rc = list_decode(res, n, 1, out);
    if (rc) *more = 0;
    PQclear(res);
    return rc;
}

static int q_user_pos(pgs_conn *pc, uint64_t user, uint64_t *pos)
{
    pgs_params pp = { 0 };
    PGresult *res;
    *pos = 0;
    pgs__p_i64(&pp, user);
    int rc = pgs__exec(pc, pgs__deadline(), SQL_USER_POS, &pp, &res);
    if (rc) return rc;
    if (PQntuples(res) == 1) *pos = pgs__r_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

int pgs__q_session(pgs_conn *pc, const uint8_t h[32], uint64_t *user, char device[IY_DEVICE_MAX + 1])
{
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_bytes(&pp, h, 32);
    int rc = pgs__exec_row(pc, SQL_SESSION_GET, &pp, &res);
    if (rc) return rc;
    *user = pgs__r_i64(res, 0, 0);
    rc = pgs__r_str(res, 0, 1, device, IY_DEVICE_MAX + 1);
    PQclear(res);
    return rc;
}

int pgs__q_user(pgs_conn *pc, uint64_t id, iy_user *out, char *pwhash)
{
    pgs_params pp = { 0 };
    PGresult *res;
    char hash[256];
    pgs__p_i64(&pp, id);
    int rc = pgs__exec_row(pc, SQL_USER_GET, &pp, &res);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    out->id = id;
    rc = pgs__r_str(res, 0, 0, out->username, sizeof out->username);
    if (rc == 0) rc = pgs__r_str(res, 0, 1, out->display_name, sizeof out->display_name);
    if (rc == 0) rc = pgs__r_str(res, 0, 2, hash, sizeof hash);
    if (rc == 0 && pwhash) memcpy(pwhash, hash, strlen(hash) + 1);
    PQclear(res);
    return rc;
}

static int q_is_member(pgs_conn *pc, uint64_t channel, uint64_t user)
{
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, channel);
    pgs__p_i64(&pp, user);
    int rc = pgs__exec_row(pc, SQL_IS_MEMBER, &pp, &res);
    if (rc) return rc;
    if (!pgs__r_bool(res, 0, 0)) rc = IY_EFORBIDDEN;
    PQclear(res);
    return rc;
}

/* ---- through the storage thread's connection ------------------------------------- */

int pgs__history(store *s, uint64_t channel, uint64_t before_seq, uint64_t after_seq, int limit,
                 iy_msg_list *out)
{
    return q_history(&((pgs_store *)s)->conn, channel, before_seq, after_seq, limit, out);
}

int pgs__sync(store *s, uint64_t user, uint64_t after, int limit, iy_msg_list *out, int *more)
{
    return q_sync(&((pgs_store *)s)->conn, user, after, limit, out, more);
}

int pgs__user_pos(store *s, uint64_t user, uint64_t *pos)
{
    return q_user_pos(&((pgs_store *)s)->conn, user, pos);
}

/* ---- readers ---------------------------------------------------------------------- */

typedef struct pgs_reader {
    store_reader_base base;     /* first: store.c dispatches through it */
    pgs_conn conn;
    char *uri;
    char appname[96];
} pgs_reader;

store_reader *pgs__reader_new(store *st)
{
    pgs_store *s = (pgs_store *)st;
    pgs_reader *r = iy_calloc(1, sizeof *r);
    r->base.ops = s->base.ops;
    r->uri = iy_strndup(s->uri, strlen(s->uri));
    snprintf(r->appname, sizeof r->appname, "%.61s/r", s->appname);   /* told apart in pg_stat_activity */
    pgs__conn_init(&r->conn, r->uri, r->appname, "reader");
    return (store_reader *)r;
}

void pgs__reader_free(store_reader *rd)
{
    pgs_reader *r = (pgs_reader *)rd;
    if (!r) return;
    pgs__conn_close(&r->conn);
    iy_free(r->uri);
    iy_free(r);
}

int pgs__reader_history(store_reader *r, uint64_t channel, uint64_t before_seq, uint64_t after_seq,
                        int limit, iy_msg_list *out)
{
    return q_history(&((pgs_reader *)r)->conn, channel, before_seq, after_seq, limit, out);
}

int pgs__reader_sync(store_reader *r, uint64_t user, uint64_t after, int limit, iy_msg_list *out,
                     int *more)
{
    return q_sync(&((pgs_reader *)r)->conn, user, after, limit, out, more);
}

int pgs__reader_user_pos(store_reader *r, uint64_t user, uint64_t *pos)
{
    return q_user_pos(&((pgs_reader *)r)->conn, user, pos);
}

int pgs__reader_session(store_reader *r, const uint8_t h[32], uint64_t *user,
                        char device[IY_DEVICE_MAX + 1])
{
    return pgs__q_session(&((pgs_reader *)r)->conn, h, user, device);
}

int pgs__reader_user_get(store_reader *r, uint64_t id, iy_user *out)
{
    return pgs__q_user(&((pgs_reader *)r)->conn, id, out, NULL);
}

int pgs__reader_is_member(store_reader *r, uint64_t channel, uint64_t user)
{
    return q_is_member(&((pgs_reader *)r)->conn, channel, user);
}

int pgs__reader_user_channels(store_reader *r, uint64_t user, uint64_t **out, size_t *n)
{
    return pgs__q_user_channels(&((pgs_reader *)r)->conn, user, out, n);
}

int pgs__reader_search(store_reader *rd, const uint64_t *channels, size_t n, const char *q, size_t qlen,
                       uint64_t before, int limit, store_hit **out, size_t *nout)
{
    pgs_reader *r = (pgs_reader *)rd;
    return pgs__search(&r->conn, channels, n, q, qlen, before, limit, out, nout);
}

int pgs__reader_attachment(store_reader *r, uint64_t id, iy_attachment *out)
{
    return pgs__q_attachment(&((pgs_reader *)r)->conn, id, out);
}
