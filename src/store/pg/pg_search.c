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
 * by the commit round: a node follows the messages whose ids carry its own
 * node number, in id order, from its row of search_cursors. One storage
 * thread per node number makes those ids in commit order, so "id > cursor"
 * is exactly what it has not indexed yet, also after a crash (the cursor
 * moves in the transaction that writes the docs). A node number that never
 * comes back leaves at most its last unindexed round unindexed. */
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
/* This node's new plain messages and edit/delete events, by id. */
static const char SQL_NEXT[] =
    "SELECT " PGS_MSG_COLS " FROM messages AS m WHERE m.id > $1::int8"
    " AND ((m.id >> 12) & 1023) = $2::int8 AND m.event IN (0, 4, 5) ORDER BY m.id LIMIT $3::int4";
/* The current state of the messages edits and deletes name. */
static const char SQL_TARGETS[] =
    "SELECT " PGS_MSG_COLS " FROM messages AS m WHERE m.id = ANY ($1::int8[])";
static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_DEL[] = "DELETE FROM search_docs WHERE id = ANY ($1::int8[])";
static const char SQL_PUT[] =
    "INSERT INTO search_docs (id, channel_id, seq, text)"
    " SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[])";
static const char SQL_CURSOR_SET[] =
    "UPDATE search_cursors SET last_id = greatest(last_id, $2::int8) WHERE node = $1::int4";

typedef struct pgs_indexer {
    store_indexer_base base;
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

static int ix_step(store_indexer *sx, size_t *done)
{
    pgs_indexer *x = (pgs_indexer *)sx;
    *done = 0;
    int rc = x->have_cursor ? 0 : load_cursor(x);
    if (rc) return rc;

    pgs_params pp = { 0 };
    PGresult *res = NULL, *tres = NULL;
    pgs__p_i64(&pp, x->base.cursor);
    pgs__p_i64(&pp, x->node);
    pgs__p_i32(&pp, BATCH_MAX);
    if ((rc = pgs__exec(&x->conn, pgs__deadline(), SQL_NEXT, &pp, &res)) != 0) return rc;
    int rows = PQntuples(res);
    if (rows == 0) {
        PQclear(res);
        return 0;
    }

    /* Plain messages are read as they are now; an edit or delete names its
     * target, read now too. */
    pgs_arr targets = { 0 };
    pgs__arr_begin(&targets, PGS_OID_INT8);
    uint64_t last = x->base.cursor;
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
        pgs__p_i32(&cp, (int32_t)x->node);
        pgs__p_i64(&cp, last);
        if ((rc = pgs__pipe_begin(&p, &x->conn, pgs__deadline())) == 0) {
            pgs__pipe_add_once(&p, SQL_BEGIN);
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
        x->base.cursor = last;
        *done = (size_t)rows;
    }
out:
    pgs__arr_free(&targets);
    PQclear(tres);
    PQclear(res);
    return rc;
}

store_indexer *pgs__indexer_new(store *st)
{
    pgs_store *s = (pgs_store *)st;
    pgs_indexer *x = iy_calloc(1, sizeof *x);
    x->base.free = ix_free;
    x->base.step = ix_step;
    x->node = store_node(st);
    x->uri = iy_strndup(s->uri, strlen(s->uri));
    snprintf(x->appname, sizeof x->appname, "%.61s/i", s->appname);
    pgs__conn_init(&x->conn, x->uri, x->appname, "search indexer");
    load_cursor(x);   /* else at the first step (the database may be away now) */
    return (store_indexer *)x;
}

/* ---- queries (reader threads) ---------------------------------------------- */

/* Newest first (the API ranks the candidates): the planner picks the
 * trigram index for rare texts and the id order for common ones. */
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
    rc = pgs__exec(pc, pgs__deadline(), SQL_SEARCH, &pp, &res);
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
