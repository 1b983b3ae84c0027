/* pg_search.c — the PostgreSQL backend's search index (store.h, "search").
 *
 * search_docs (id PK, channel_id, seq, text) holds the current text of
 * every plain message that has one, with a pg_trgm GIN index on text (when
 * the extension could be created: schema version 5) and an index on
 * (channel_id, id). PostgreSQL's own trigram index answers LIKE/ILIKE
 * substring queries for any script; it is built from the text's
 * alphanumeric characters by the database's LC_CTYPE, so a database whose
 * LC_CTYPE is "C" indexes no Korean trigrams (ILIKE still answers, by
 * scanning): docs/DEPLOY.md asks for a UTF-8 ctype.
 *
 * The index is written by each node's indexer (its own connection), never
 * by the commit round. A node follows the messages whose ids carry its own
 * node number, from its row of search_cursors up to committed_id (pg_int.h:
 * every id of the number up to there is committed or never will be), so
 * the scan is the short range of what committed since the last step, and
 * nothing committed late is skipped. Node numbers no live node holds
 * (a node that stopped or died, the admin tool's) are finished by the live
 * node with the smallest number: their last_id in `nodes` is final, so
 * (cursor, last_id] is indexed once. The cursor moves in the transaction
 * that writes the docs, so a crash repeats at most one batch.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include "../../base/u64map.h"
#include "../../base/utf8.h"
#include "pg_int.h"

#define BATCH_MAX 1000

static const char SQL_CURSOR_ADD[] =
    "INSERT INTO search_cursors (node, last_id) VALUES ($1::int4, 0) ON CONFLICT (node) DO NOTHING";
static const char SQL_CURSOR_GET[] = "SELECT last_id FROM search_cursors WHERE node = $1::int4";
/* A node number's new plain messages and edit/delete events in (from, to], by id. */
static const char SQL_NEXT[] =
    "SELECT " PGS_MSG_COLS " FROM messages AS m WHERE m.id > $1::int8 AND m.id <= $4::int8"
    " AND ((m.id >> 12) & 1023) = $2::int8 AND m.event IN (0, 4, 5) ORDER BY m.id LIMIT $3::int4";
/* Node numbers nobody holds with messages not indexed yet, if this node is
 * the live one with the smallest number (it finishes them). */
static const char SQL_ORPHANS[] =
    "SELECT n.num, n.last_id, coalesce(c.last_id, 0) FROM nodes n"
    " LEFT JOIN search_cursors c ON c.node = n.num"
    " WHERE n.lease_until < now() AND n.last_id > coalesce(c.last_id, 0)"
    " AND NOT EXISTS (SELECT 1 FROM nodes o WHERE o.lease_until >= now() AND o.num < $1::int4)"
    " ORDER BY n.num LIMIT 8";
/* The current state of the messages edits and deletes name. */
static const char SQL_TARGETS[] =
    "SELECT " PGS_MSG_COLS " FROM messages AS m WHERE m.id = ANY ($1::int8[])";
static const char SQL_BEGIN[] = "BEGIN";
/* The index is derived data and its cursor moves in the same transaction:
 * a commit lost in a crash is done again, so it need not wait for the WAL
 * flush (PostgreSQL's asynchronous commit loses whole transactions, never
 * part of one). */
static const char SQL_ASYNC[] = "SET LOCAL synchronous_commit TO off";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_DEL[] = "DELETE FROM search_docs WHERE id = ANY ($1::int8[])";
static const char SQL_PUT[] =
    "INSERT INTO search_docs (id, channel_id, seq, text)"
    " SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[])";
static const char SQL_CURSOR_SET[] =
    "INSERT INTO search_cursors AS c (node, last_id) VALUES ($1::int4, $2::int8)"
    " ON CONFLICT (node) DO UPDATE SET last_id = greatest(c.last_id, $2::int8)";

#define ORPHANS_EVERY_MS 5000

typedef struct pgs_indexer {
    store_indexer_base base;
    pgs_store *s;
    int64_t orphans_at;         /* monotonic ms of the next look for orphans */
    pgs_conn conn;
    char *uri;
    char appname[96];
    unsigned node;
    int have_cursor;            /* base.cursor read from search_cursors */
} pgs_indexer;

static void ix_free(store_indexer *sx)
{
    pgs_indexer *x = (pgs_indexer *)sx;
    pgs__conn_close(&x->conn);
    iy_free(x->uri);
    iy_free(x);
}

static int load_cursor(pgs_indexer *x)
{
    pgs_params pp = { 0 };
    PGresult *res = NULL;
    pgs__p_i32(&pp, (int32_t)x->node);
    int rc = pgs__exec(&x->conn, pgs__deadline(), SQL_CURSOR_ADD, &pp, NULL);
    if (rc == 0) rc = pgs__exec_row(&x->conn, SQL_CURSOR_GET, &pp, &res);
    if (rc) return rc == IY_ENOTFOUND ? IY_EIO : rc;
    x->base.cursor = pgs__r_i64(res, 0, 0);
    PQclear(res);
    x->have_cursor = 1;
    return 0;
}

/* A text as PostgreSQL's text type takes it: without NUL bytes. */
static void put_text(pgs_arr *a, const char *t, size_t n)
{
    if (!memchr(t, 0, n)) {
        pgs__arr_bytes(a, t, n);
        return;
    }
    char *c = iy_malloc(n);
    for (size_t i = 0; i < n; i++) c[i] = t[i] ? t[i] : ' ';
    pgs__arr_bytes(a, c, n);
    iy_free(c);
}

/* Indexes node number `node`'s messages in (*cursor, to], a batch at most;
 * moves *cursor (here and in search_cursors) past what it did: to `to`
 * itself once the batch was not full. 0 with *done, or an error. */
static int index_range(pgs_indexer *x, unsigned node, uint64_t *cursor, uint64_t to, size_t *done)
{
    *done = 0;
    if (to <= *cursor) return 0;
    pgs_params pp = { 0 };
    PGresult *res = NULL, *tres = NULL;
    pgs__p_i64(&pp, *cursor);
    pgs__p_i64(&pp, node);
    pgs__p_i32(&pp, BATCH_MAX);
    pgs__p_i64(&pp, to);
    int rc = pgs__exec(&x->conn, pgs__deadline(), SQL_NEXT, &pp, &res);
    if (rc) return rc;
    int rows = PQntuples(res);

    /* Plain messages are read as they are now; an edit or delete names its
     * target, read now too. */
    pgs_arr targets = { 0 };
    pgs__arr_begin(&targets, PGS_OID_INT8);
    uint64_t last = rows < BATCH_MAX ? to : *cursor;
    x->base.full = rows == BATCH_MAX;
    for (int i = 0; i < rows; i++) {
        uint64_t id = pgs__r_i64(res, i, 2);
        if (id > last) last = id;
        if (pgs__r_i16(res, i, 5) != IY_EV_NONE) pgs__arr_i64(&targets, pgs__r_i64(res, i, 4));
    }
    pgs_params tp = { 0 };
    pgs__p_buf(&tp, pgs__arr_end(&targets));
    if ((rc = pgs__exec(&x->conn, pgs__deadline(), SQL_TARGETS, &tp, &tres)) != 0) goto out;

    /* Each id once: drop every one, then insert those with a text. */
    pgs_arr del = { 0 }, ids = { 0 }, chs = { 0 }, seqs = { 0 }, texts = { 0 };
    pgs__arr_begin(&del, PGS_OID_INT8);
    pgs__arr_begin(&ids, PGS_OID_INT8);
    pgs__arr_begin(&chs, PGS_OID_INT8);
    pgs__arr_begin(&seqs, PGS_OID_INT8);
    pgs__arr_begin(&texts, PGS_OID_TEXT);
    u64map seen = { 0 };
    PGresult *sets[2] = { tres, res };
    for (int s = 0; s < 2 && rc == 0; s++) {
        for (int i = 0; i < PQntuples(sets[s]); i++) {
            iy_msg m;
            if (pgs__msg_decode(sets[s], i, 0, &m)) {
                iy_msg_clear(&m);
                rc = IY_EIO;
                break;
            }
            if (m.event == IY_EV_NONE && !u64map_find(&seen, m.id)) {
                u64map_set(&seen, m.id, 1);
                pgs__arr_i64(&del, m.id);
                if (!m.deleted && m.text_len) {
                    pgs__arr_i64(&ids, m.id);
                    pgs__arr_i64(&chs, m.channel);
                    pgs__arr_i64(&seqs, m.seq);
                    put_text(&texts, m.text, m.text_len);
                }
            }
            iy_msg_clear(&m);
        }
    }
    u64map_free(&seen);
    if (rc == 0) {
        pgs_pipe p;
        pgs_params dp = { 0 }, ip = { 0 }, cp = { 0 };
        pgs__p_buf(&dp, pgs__arr_end(&del));
        pgs__p_buf(&ip, pgs__arr_end(&ids));
        pgs__p_buf(&ip, pgs__arr_end(&chs));
        pgs__p_buf(&ip, pgs__arr_end(&seqs));
        pgs__p_buf(&ip, pgs__arr_end(&texts));
        pgs__p_i32(&cp, (int32_t)node);
        pgs__p_i64(&cp, last);
        if ((rc = pgs__pipe_begin(&p, &x->conn, pgs__deadline())) == 0) {
            pgs__pipe_add_once(&p, SQL_BEGIN);
            pgs__pipe_add_once(&p, SQL_ASYNC);
            pgs__pipe_add(&p, SQL_DEL, &dp);
            pgs__pipe_add(&p, SQL_PUT, &ip);
            pgs__pipe_add(&p, SQL_CURSOR_SET, &cp);
            pgs__pipe_add_once(&p, SQL_COMMIT);
            rc = pgs__pipe_run(&p);
            pgs__pipe_end(&p);
            if (rc) pgs__rollback(&x->conn, pgs__now() + 1000);
        }
    }
    pgs__arr_free(&del);
    pgs__arr_free(&ids);
    pgs__arr_free(&chs);
    pgs__arr_free(&seqs);
    pgs__arr_free(&texts);
    if (rc == 0) {
        *cursor = last;
        *done = (size_t)rows;
    }
out:
    pgs__arr_free(&targets);
    PQclear(tres);
    PQclear(res);
    return rc;
}

/* The orphaned node numbers' backlogs, a batch each. */
static int index_orphans(pgs_indexer *x, size_t *done)
{
    PGresult *res;
    pgs_params pp = { 0 };
    pgs__p_i32(&pp, (int32_t)x->node);
    int rc = pgs__exec(&x->conn, pgs__deadline(), SQL_ORPHANS, &pp, &res);
    if (rc) return rc;
    for (int i = 0; i < PQntuples(res) && rc == 0; i++) {
        unsigned node = (unsigned)pgs__r_i32(res, i, 0);
        uint64_t to = pgs__r_i64(res, i, 1), cur = pgs__r_i64(res, i, 2);
        size_t d = 0;
        if (node == x->node) continue;
        rc = index_range(x, node, &cur, to, &d);
        *done += d;
    }
    PQclear(res);
    return rc;
}

static int ix_step(store_indexer *sx, size_t *done)
{
    pgs_indexer *x = (pgs_indexer *)sx;
    *done = 0;
    x->base.full = 0;
    int rc = x->have_cursor ? 0 : load_cursor(x);
    if (rc) return rc;
    rc = index_range(x, x->node, &x->base.cursor, atomic_load(&x->s->committed_id), done);
    if (rc == 0 && *done == 0 && pgs__now() >= x->orphans_at) {
        rc = index_orphans(x, done);
        if (rc == 0 && *done == 0) x->orphans_at = pgs__now() + ORPHANS_EVERY_MS;
        x->base.full = *done > 0;   /* until no orphan is left */
    }
    return rc;
}

store_indexer *pgs__indexer_new(store *st)
{
    pgs_store *s = (pgs_store *)st;
    pgs_indexer *x = iy_calloc(1, sizeof *x);
    x->base.free = ix_free;
    x->base.step = ix_step;
    x->node = store_node(st);
    x->s = s;
    x->uri = iy_strndup(s->uri, strlen(s->uri));
    snprintf(x->appname, sizeof x->appname, "%.61s/i", s->appname);
    pgs__conn_init(&x->conn, x->uri, x->appname, "search indexer");
    load_cursor(x);   /* else at the first step (the database may be away now) */
    return (store_indexer *)x;
}

/* ---- queries (reader threads) ---------------------------------------------- */

/* Newest first (the API ranks the candidates): the planner picks the
 * trigram index for rare texts and the id order for common ones. */
static const char SQL_CUSTOM_PLAN[] = "SET LOCAL plan_cache_mode = force_custom_plan";
static const char SQL_SEARCH[] =
    "SELECT id, channel_id, seq FROM search_docs WHERE channel_id = ANY ($1::int8[])"
    " AND text ILIKE $2::text AND id < $3::int8 ORDER BY id DESC LIMIT $4::int4";

int pgs__search(pgs_conn *pc, const uint64_t *channels, size_t n, const char *q, size_t qlen,
                uint64_t before, int limit, store_hit **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (n == 0 || limit <= 0) return 0;
    PGresult *res;
    int rc;
    pgs_arr chans = { 0 };
    pgs__arr_begin(&chans, PGS_OID_INT8);
    for (size_t i = 0; i < n; i++) pgs__arr_i64(&chans, channels[i]);
    iy_buf pat = { 0 };
    iy_buf_putc(&pat, '%');
    for (size_t i = 0; i < qlen; i++) {
        if (q[i] == '%' || q[i] == '_' || q[i] == '\\') iy_buf_putc(&pat, '\\');
        iy_buf_putc(&pat, q[i]);
    }
    iy_buf_putc(&pat, '%');
    pgs_params pp = { 0 };
    pgs__p_buf(&pp, pgs__arr_end(&chans));
    pgs__p_bytes(&pp, pat.data, pat.len);
    pgs__p_i64(&pp, before && before <= INT64_MAX ? before : (uint64_t)INT64_MAX);
    pgs__p_i32(&pp, limit);
    /* Planned for this pattern each time: a generic plan cannot tell a
     * common text (walk ids backwards, stop at the limit) from a rare one
     * (the trigram index), and picked the index for every text: 400 ms for
     * a common word over 1M messages instead of 1 ms. */
    pgs_pipe p;
    res = NULL;
    if ((rc = pgs__pipe_begin(&p, pc, pgs__deadline())) == 0) {
        pgs__pipe_add_once(&p, SQL_BEGIN);
        pgs__pipe_add_once(&p, SQL_CUSTOM_PLAN);
        int qs = pgs__pipe_add(&p, SQL_SEARCH, &pp);
        pgs__pipe_add_once(&p, SQL_COMMIT);
        rc = pgs__pipe_run(&p);
        if (rc == 0) {
            res = pgs__pipe_res(&p, qs);
            p.res[qs] = NULL;   /* kept past pipe_end */
            if (!res) rc = IY_EIO;
        }
        pgs__pipe_end(&p);
        if (rc) pgs__rollback(pc, pgs__now() + 1000);
    }
    pgs__arr_free(&chans);
    iy_buf_free(&pat);
    if (rc) return rc;
    int rows = PQntuples(res);
    if (rows) {
        *out = iy_malloc((size_t)rows * sizeof **out);
        for (int i = 0; i < rows; i++)
            (*out)[i] = (store_hit){ pgs__r_i64(res, i, 0), pgs__r_i64(res, i, 1), pgs__r_i64(res, i, 2) };
        *nout = (size_t)rows;
    }
    PQclear(res);
    return 0;
}
